/* printf-style entry points of cyrsync (stable Rust cannot define C variadic
 * functions). */
#include "cyrsync.h"
