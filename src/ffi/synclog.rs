//! synclog ffi
