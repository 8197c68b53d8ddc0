/*
 * faultinject.so -- an LD_PRELOAD interposer that injects faults into the
 * file system calls a process makes on chosen paths.  Built and driven by
 * tests/abi/src/fault.rs; usable by hand too:
 *
 *   CYRSYNC_FAULT_SCOPE=/tmp/t1:/tmp/t2      colon-separated path prefixes;
 *                                            only calls on files below them
 *                                            are counted (fd calls are
 *                                            resolved through /proc/self/fd)
 *   CYRSYNC_FAULT=write@2=ENOSPC,fdatasync@1..=EIO
 *                                            FUNC@N=ACTION: at the Nth counted
 *                                            call of FUNC (1-based; FUNC '*'
 *                                            counts every call), do ACTION;
 *                                            'N..' repeats it at every later
 *                                            call too (a disk that stays full)
 *   CYRSYNC_FAULT_TRACE=/tmp/trace           append "SEQ FUNC NTH PATH" per
 *                                            counted call (and "FAULT ..."
 *                                            lines), for enumerating an
 *                                            operation's calls
 *
 * ACTION is an errno name (ENOSPC, EIO, EDQUOT, EINTR, EACCES, EROFS, EAGAIN,
 * ENOENT, EBADF, EFBIG, ENOMEM, EPERM, ESTALE), 'short' (a write or read
 * moves half of what was asked, at least one byte less, and succeeds),
 * 'short+ERRNO' (the short write, then ERRNO at every later call of the
 * same function: a disk that fills mid-write), or 'kill' (SIGKILL before
 * the call: a crash at exactly this point).
 *
 * Counters are per process (a forked child inherits their values).  The
 * interposer's own calls (tracing, path resolution) are not counted.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* a path longer than PATH_MAX is cut when resolved; it then only matches a
 * scope less well, which is fine for a test tool */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#define MAX_SCOPES 8
#define MAX_RULES 16

struct rule {
    char func[32];
    unsigned long nth;
    int repeat;          /* N..: every call from the Nth on */
    int err;             /* errno to fail with, 0 for none */
    int shorten;         /* make the call short */
    int kill;            /* SIGKILL before the call */
    int err_after_short; /* short+ERRNO: fail later calls of func */
    int shorted;         /* the short call happened */
};

static char scopes[MAX_SCOPES][PATH_MAX];
static size_t nscopes;
static struct rule rules[MAX_RULES];
static size_t nrules;
static int trace_fd = -1;
static int initialised;
static unsigned long seq;             /* every counted call */
static __thread int inside;           /* our own calls are not counted */

/* per-function counters, by name */
#define MAX_FUNCS 64
static struct { char name[32]; unsigned long n; } counters[MAX_FUNCS];

static const struct { const char *name; int value; } errnos[] = {
    {"ENOSPC", ENOSPC}, {"EIO", EIO}, {"EDQUOT", EDQUOT}, {"EINTR", EINTR},
    {"EACCES", EACCES}, {"EROFS", EROFS}, {"EAGAIN", EAGAIN},
    {"ENOENT", ENOENT}, {"EBADF", EBADF}, {"EFBIG", EFBIG},
    {"ENOMEM", ENOMEM}, {"EPERM", EPERM}, {"ESTALE", ESTALE},
};

static void die(const char *what)
{
    static const char pre[] = "faultinject: bad CYRSYNC_FAULT: ";
    (void)!syscall(SYS_write, 2, pre, sizeof pre - 1);
    (void)!syscall(SYS_write, 2, what, strlen(what));
    (void)!syscall(SYS_write, 2, "\n", 1);
    _exit(97);
}

static int errno_of(const char *s)
{
    for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
        if (!strcmp(errnos[i].name, s)) return errnos[i].value;
    die(s);
    return 0;
}

static void parse_rule(char *spec)
{
    if (nrules == MAX_RULES) die("too many rules");
    struct rule *r = &rules[nrules++];
    memset(r, 0, sizeof *r);
    char *at = strchr(spec, '@'), *eq = strchr(spec, '=');
    if (!at || !eq || eq < at || (size_t)(at - spec) >= sizeof r->func) die(spec);
    memcpy(r->func, spec, at - spec);
    char *end;
    r->nth = strtoul(at + 1, &end, 10);
    if (end == at + 1 || r->nth == 0) die(spec);
    if (!strncmp(end, "..", 2)) { r->repeat = 1; end += 2; }
    if (end != eq) die(spec);
    const char *action = eq + 1;
    if (!strcmp(action, "kill")) r->kill = 1;
    else if (!strcmp(action, "short")) r->shorten = 1;
    else if (!strncmp(action, "short+", 6)) { r->shorten = 1; r->err_after_short = errno_of(action + 6); }
    else r->err = errno_of(action);
}

static void init(void)
{
    if (initialised) return;
    initialised = 1;
    inside++;
    const char *s = getenv("CYRSYNC_FAULT_SCOPE");
    if (s) {
        char buf[MAX_SCOPES * PATH_MAX];
        snprintf(buf, sizeof buf, "%s", s);
        for (char *save, *p = strtok_r(buf, ":", &save); p && nscopes < MAX_SCOPES;
             p = strtok_r(NULL, ":", &save))
            snprintf(scopes[nscopes++], PATH_MAX, "%s", p);
    }
    const char *f = getenv("CYRSYNC_FAULT");
    if (f && *f) {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", f);
        for (char *save, *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save))
            parse_rule(p);
    }
    const char *t = getenv("CYRSYNC_FAULT_TRACE");
    if (t && *t) {
        /* kept out of the low numbers a program may expect to be free */
        int fd = (int)syscall(SYS_openat, AT_FDCWD, t, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            trace_fd = (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 900);
            syscall(SYS_close, fd);
        }
    }
    inside--;
}

static int in_scope(const char *path)
{
    for (size_t i = 0; i < nscopes; i++) {
        size_t n = strlen(scopes[i]);
        if (!strncmp(path, scopes[i], n) && (path[n] == '\0' || path[n] == '/')) return 1;
    }
    return 0;
}

static void fd_path(int fd, char *out, size_t size)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, size - 1);
    out[n > 0 ? (size_t)n : 0] = '\0';
}

static void at_path(int dirfd, const char *path, char *out, size_t size)
{
    if (!path) { out[0] = '\0'; return; }
    if (path[0] == '/' || dirfd == AT_FDCWD) {
        if (path[0] == '/') snprintf(out, size, "%s", path);
        else {
            char cwd[PATH_MAX];
            if (!getcwd(cwd, sizeof cwd)) cwd[0] = '\0';
            snprintf(out, size, "%s/%s", cwd, path);
        }
        return;
    }
    char dir[PATH_MAX];
    fd_path(dirfd, dir, sizeof dir);
    snprintf(out, size, "%s/%s", dir, path);
}

static void trace(const char *tag, const char *func, unsigned long nth, const char *path)
{
    if (trace_fd < 0) return;
    char line[PATH_MAX + 128];
    int n = snprintf(line, sizeof line, "%s%lu %s %lu %s\n", tag, seq, func, nth, path);
    if (n > 0) (void)!syscall(SYS_write, trace_fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static unsigned long bump(const char *func)
{
    for (size_t i = 0; i < MAX_FUNCS; i++) {
        if (counters[i].name[0] == '\0') snprintf(counters[i].name, sizeof counters[i].name, "%s", func);
        if (!strcmp(counters[i].name, func)) return __atomic_add_fetch(&counters[i].n, 1, __ATOMIC_SEQ_CST);
    }
    return 0;
}

/* What to do with this call. */
struct verdict { int err; int shorten; };

static struct verdict decide(const char *func, const char *path)
{
    struct verdict v = {0, 0};
    init();
    if (inside || !path[0] || !in_scope(path)) return v;
    inside++;
    unsigned long all = __atomic_add_fetch(&seq, 1, __ATOMIC_SEQ_CST);
    unsigned long nth = bump(func);
    trace("", func, nth, path);
    for (size_t i = 0; i < nrules; i++) {
        struct rule *r = &rules[i];
        int any = !strcmp(r->func, "*");
        if (!any && strcmp(r->func, func)) continue;
        unsigned long n = any ? all : nth;
        if (r->err_after_short && r->shorted) { v.err = r->err_after_short; break; }
        if (n != r->nth && !(r->repeat && n > r->nth)) continue;
        trace("FAULT ", func, nth, path);
        if (r->kill) { (void)!syscall(SYS_kill, getpid(), SIGKILL); }
        if (r->shorten) { v.shorten = 1; r->shorted = 1; }
        else v.err = r->err;
        break;
    }
    inside--;
    return v;
}

#define REAL(ret, name, ...) \
    static ret (*real_##name)(__VA_ARGS__); \
    if (!real_##name) real_##name = (ret (*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name)

/* evaluates `v` (a decision, which counts the call) exactly once */
#define FAIL_IF(v, failret) do { struct verdict v_ = (v); \
    if (v_.err) { errno = v_.err; return failret; } } while (0)

static struct verdict on_fd(const char *func, int fd)
{
    if (inside || fd < 0) return (struct verdict){0, 0};
    init();
    if (!nscopes) return (struct verdict){0, 0};
    char path[PATH_MAX];
    inside++;
    fd_path(fd, path, sizeof path);
    inside--;
    return decide(func, path);
}

static struct verdict on_path(const char *func, int dirfd, const char *p)
{
    if (inside) return (struct verdict){0, 0};
    init();
    if (!nscopes) return (struct verdict){0, 0};
    char path[PATH_MAX];
    inside++;
    at_path(dirfd, p, path, sizeof path);
    inside--;
    return decide(func, path);
}

static size_t shortened(size_t n) { return n > 1 ? n / 2 : n; }

/* ---- opens ---- */

#define OPEN_MODE(flags, mode) \
    mode_t mode = 0; \
    if ((flags) & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); }

int open(const char *path, int flags, ...)
{
    OPEN_MODE(flags, mode);
    REAL(int, open, const char *, int, ...);
    FAIL_IF(on_path("open", AT_FDCWD, path), -1);
    return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    OPEN_MODE(flags, mode);
    REAL(int, open64, const char *, int, ...);
    FAIL_IF(on_path("open", AT_FDCWD, path), -1);
    return real_open64(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    OPEN_MODE(flags, mode);
    REAL(int, openat, int, const char *, int, ...);
    FAIL_IF(on_path("open", dirfd, path), -1);
    return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    OPEN_MODE(flags, mode);
    REAL(int, openat64, int, const char *, int, ...);
    FAIL_IF(on_path("open", dirfd, path), -1);
    return real_openat64(dirfd, path, flags, mode);
}

/* ---- reads and writes ---- */

ssize_t write(int fd, const void *buf, size_t n)
{
    REAL(ssize_t, write, int, const void *, size_t);
    struct verdict v = on_fd("write", fd);
    FAIL_IF(v, -1);
    return real_write(fd, buf, v.shorten ? shortened(n) : n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
    struct verdict v = on_fd("write", fd);
    FAIL_IF(v, -1);
    return real_pwrite(fd, buf, v.shorten ? shortened(n) : n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    REAL(ssize_t, pwrite64, int, const void *, size_t, off_t);
    struct verdict v = on_fd("write", fd);
    FAIL_IF(v, -1);
    return real_pwrite64(fd, buf, v.shorten ? shortened(n) : n, off);
}

ssize_t read(int fd, void *buf, size_t n)
{
    REAL(ssize_t, read, int, void *, size_t);
    struct verdict v = on_fd("read", fd);
    FAIL_IF(v, -1);
    return real_read(fd, buf, v.shorten ? shortened(n) : n);
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    REAL(ssize_t, pread, int, void *, size_t, off_t);
    struct verdict v = on_fd("read", fd);
    FAIL_IF(v, -1);
    return real_pread(fd, buf, v.shorten ? shortened(n) : n, off);
}

ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
    REAL(ssize_t, pread64, int, void *, size_t, off_t);
    struct verdict v = on_fd("read", fd);
    FAIL_IF(v, -1);
    return real_pread64(fd, buf, v.shorten ? shortened(n) : n, off);
}

/* ---- durability, size, layout ---- */

int fsync(int fd)
{
    REAL(int, fsync, int);
    FAIL_IF(on_fd("fsync", fd), -1);
    return real_fsync(fd);
}

int fdatasync(int fd)
{
    REAL(int, fdatasync, int);
    FAIL_IF(on_fd("fdatasync", fd), -1);
    return real_fdatasync(fd);
}

int ftruncate(int fd, off_t len)
{
    REAL(int, ftruncate, int, off_t);
    FAIL_IF(on_fd("ftruncate", fd), -1);
    return real_ftruncate(fd, len);
}

int ftruncate64(int fd, off_t len)
{
    REAL(int, ftruncate64, int, off_t);
    FAIL_IF(on_fd("ftruncate", fd), -1);
    return real_ftruncate64(fd, len);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
    REAL(int, fallocate, int, int, off_t, off_t);
    FAIL_IF(on_fd("fallocate", fd), -1);
    return real_fallocate(fd, mode, off, len);
}

int fallocate64(int fd, int mode, off_t off, off_t len)
{
    REAL(int, fallocate64, int, int, off_t, off_t);
    FAIL_IF(on_fd("fallocate", fd), -1);
    return real_fallocate64(fd, mode, off, len);
}

/* posix_fallocate returns the error instead of setting errno */
int posix_fallocate(int fd, off_t off, off_t len)
{
    REAL(int, posix_fallocate, int, off_t, off_t);
    struct verdict v = on_fd("fallocate", fd);
    if (v.err) return v.err;
    return real_posix_fallocate(fd, off, len);
}

int posix_fallocate64(int fd, off_t off, off_t len)
{
    REAL(int, posix_fallocate64, int, off_t, off_t);
    struct verdict v = on_fd("fallocate", fd);
    if (v.err) return v.err;
    return real_posix_fallocate64(fd, off, len);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    REAL(void *, mmap, void *, size_t, int, int, int, off_t);
    FAIL_IF(on_fd("mmap", fd), MAP_FAILED);
    return real_mmap(addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    REAL(void *, mmap64, void *, size_t, int, int, int, off_t);
    FAIL_IF(on_fd("mmap", fd), MAP_FAILED);
    return real_mmap64(addr, len, prot, flags, fd, off);
}

/* ---- locks ---- */

static int fcntl_common(const char *name, int fd, int cmd, void *arg,
                        int (*real)(int, int, ...))
{
    /* only the locking commands are fault points */
    if (cmd == F_SETLK || cmd == F_SETLKW || cmd == F_OFD_SETLK || cmd == F_OFD_SETLKW
        || cmd == F_GETLK || cmd == F_OFD_GETLK)
        FAIL_IF(on_fd("fcntl", fd), -1);
    (void)name;
    return real(fd, cmd, arg);
}

int fcntl(int fd, int cmd, ...)
{
    va_list ap; va_start(ap, cmd); void *arg = va_arg(ap, void *); va_end(ap);
    REAL(int, fcntl, int, int, ...);
    return fcntl_common("fcntl", fd, cmd, arg, real_fcntl);
}

int fcntl64(int fd, int cmd, ...)
{
    va_list ap; va_start(ap, cmd); void *arg = va_arg(ap, void *); va_end(ap);
    REAL(int, fcntl64, int, int, ...);
    return fcntl_common("fcntl", fd, cmd, arg, real_fcntl64);
}

int flock(int fd, int op)
{
    REAL(int, flock, int, int);
    FAIL_IF(on_fd("flock", fd), -1);
    return real_flock(fd, op);
}

/* ---- names ---- */

int rename(const char *from, const char *to)
{
    REAL(int, rename, const char *, const char *);
    FAIL_IF(on_path("rename", AT_FDCWD, from), -1);
    return real_rename(from, to);
}

int renameat(int fd1, const char *from, int fd2, const char *to)
{
    REAL(int, renameat, int, const char *, int, const char *);
    FAIL_IF(on_path("rename", fd1, from), -1);
    return real_renameat(fd1, from, fd2, to);
}

int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned flags)
{
    REAL(int, renameat2, int, const char *, int, const char *, unsigned);
    FAIL_IF(on_path("rename", fd1, from), -1);
    return real_renameat2(fd1, from, fd2, to, flags);
}

int unlink(const char *path)
{
    REAL(int, unlink, const char *);
    FAIL_IF(on_path("unlink", AT_FDCWD, path), -1);
    return real_unlink(path);
}

int unlinkat(int dirfd, const char *path, int flags)
{
    REAL(int, unlinkat, int, const char *, int);
    FAIL_IF(on_path("unlink", dirfd, path), -1);
    return real_unlinkat(dirfd, path, flags);
}

int mkdir(const char *path, mode_t mode)
{
    REAL(int, mkdir, const char *, mode_t);
    FAIL_IF(on_path("mkdir", AT_FDCWD, path), -1);
    return real_mkdir(path, mode);
}

int mkdirat(int dirfd, const char *path, mode_t mode)
{
    REAL(int, mkdirat, int, const char *, mode_t);
    FAIL_IF(on_path("mkdir", dirfd, path), -1);
    return real_mkdirat(dirfd, path, mode);
}

int close(int fd)
{
    REAL(int, close, int);
    struct verdict v = on_fd("close", fd);
    if (v.err) {
        /* as Linux does: the descriptor is released even when close fails */
        real_close(fd);
        errno = v.err;
        return -1;
    }
    return real_close(fd);
}
