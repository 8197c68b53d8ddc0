/*
 * varargs.c -- the printf-style entry points of cyrsync.
 *
 * Stable Rust cannot define C variadic functions, so these few live in C:
 * they walk the format exactly as cyrsync's formatter does, collect the
 * %s and %d arguments, and call the non-variadic cyrsync_synclog_*_argv.
 */
#include <stddef.h>

#include "cyrsync.h"

/* Collect the arguments `fmt` uses. Returns the count, or
 * CYRSYNC_FMT_MAX_ARGS + 1 when there are too many (refused by Rust). */
static size_t collect(const char *fmt, va_list ap, cyrsync_fmt_arg *args)
{
    size_t n = 0;
    const char *p;

    if (!fmt) return 0;
    for (p = fmt; *p; p++) {
        if (*p != '%') continue;
        if (p[1] != 's' && p[1] != 'd') {
            /* "%x" stands for "x"; a lone final '%' is refused by Rust */
            if (p[1]) p++;
            continue;
        }
        p++;
        if (n == CYRSYNC_FMT_MAX_ARGS) return CYRSYNC_FMT_MAX_ARGS + 1;
        args[n].str = NULL;
        args[n].integer = 0;
        if (*p == 's') {
            args[n].kind = CYRSYNC_FMT_ARG_STR;
            args[n].str = va_arg(ap, const char *);
        }
        else {
            args[n].kind = CYRSYNC_FMT_ARG_INT;
            args[n].integer = va_arg(ap, int);
        }
        n++;
    }
    return n;
}

cyrsync_status cyrsync_synclog_vlog(const cyrsync_synclog *log,
                                    const char *fmt, va_list ap)
{
    cyrsync_fmt_arg args[CYRSYNC_FMT_MAX_ARGS];
    size_t n = collect(fmt, ap, args);
    return cyrsync_synclog_log_argv(log, fmt, args, n);
}

cyrsync_status cyrsync_synclog_vlog_channel(const cyrsync_synclog *log,
                                            const char *channel,
                                            const char *fmt, va_list ap)
{
    cyrsync_fmt_arg args[CYRSYNC_FMT_MAX_ARGS];
    size_t n = collect(fmt, ap, args);
    return cyrsync_synclog_log_channel_argv(log, channel, fmt, args, n);
}

cyrsync_status cyrsync_synclog_log(const cyrsync_synclog *log,
                                   const char *fmt, ...)
{
    cyrsync_status r;
    va_list ap;

    va_start(ap, fmt);
    r = cyrsync_synclog_vlog(log, fmt, ap);
    va_end(ap);
    return r;
}

cyrsync_status cyrsync_synclog_log_channel(const cyrsync_synclog *log,
                                           const char *channel,
                                           const char *fmt, ...)
{
    cyrsync_status r;
    va_list ap;

    va_start(ap, fmt);
    r = cyrsync_synclog_vlog_channel(log, channel, fmt, ap);
    va_end(ap);
    return r;
}
