//! The small unsafe kernel under the barrier: the shared mapping and typed
//! atomic views into it, futex wait/wake on words of the mapping, OFD
//! byte-range locks, the monotonic clock and the fork generation.
//!
//! Everything else in `crate::barrier` is safe Rust built on these functions.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::Once;
use std::time::Duration;

use memmap2::{MmapOptions, MmapRaw};

/// A `MAP_SHARED` read-write mapping of the whole barrier file.
///
/// Only atomics are ever read or written through it, so concurrent access by
/// any number of threads and processes is sound.
pub(crate) struct Mapping {
    raw: MmapRaw,
}

impl Mapping {
    /// Map the first `len` bytes of `file` shared, read-write. The file must
    /// be at least `len` bytes long and must never be truncated below it
    /// (the barrier file only ever grows at creation, under the init lock).
    pub(crate) fn new(file: &File, len: usize) -> io::Result<Self> {
        let raw = MmapOptions::new().len(len).map_raw(file)?;
        Ok(Mapping { raw })
    }

    /// Map the first `len` bytes of `file` shared, read-only (for
    /// `cyrsync barrier status`, which must not need write access). Only
    /// loads may go through such a mapping: a store would fault.
    pub(crate) fn new_read_only(file: &File, len: usize) -> io::Result<Self> {
        let raw = MmapOptions::new().len(len).map_raw_read_only(file)?;
        Ok(Mapping { raw })
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }

    /// The `AtomicU32` at byte `offset`.
    ///
    /// Panics (a bug, caught at the C boundary) if the word is out of bounds
    /// or misaligned.
    #[inline]
    pub(crate) fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(
            offset % 4 == 0 && offset + 4 <= self.len(),
            "bad u32 offset {offset}"
        );
        // SAFETY: in bounds and aligned (the mapping is page-aligned); the
        // mapping lives as long as `self`; every access to the shared bytes
        // is atomic, so other threads and processes writing them is no data
        // race.
        unsafe { &*self.raw.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// The `AtomicU64` at byte `offset` (8-aligned).
    #[inline]
    pub(crate) fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(
            offset % 8 == 0 && offset + 8 <= self.len(),
            "bad u64 offset {offset}"
        );
        // SAFETY: as in `u32_at`.
        unsafe { &*self.raw.as_ptr().add(offset).cast::<AtomicU64>() }
    }
}

/// Sleep while `*word == expected`, at most `timeout`. Spurious wake-ups,
/// EINTR, EAGAIN (the value already changed) all just return: callers loop
/// and re-check their condition.
///
/// The word lives in a `MAP_SHARED` file mapping, so this is a shared
/// (non-private) futex: waiters and wakers in different processes meet on
/// the same inode and offset.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: the word is a valid aligned u32 for the call; FUTEX_WAIT takes
    // a relative timeout and does not write through any pointer.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wake every waiter (in any process) sleeping on `word`.
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: as in `futex_wait`; FUTEX_WAKE only reads the address.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

fn flock(kind: libc::c_short, offset: u64) -> libc::flock {
    // SAFETY: flock is plain old data; all-zero is a valid value (and OFD
    // locks require l_pid == 0).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = offset as libc::off_t;
    fl.l_len = 1;
    fl
}

/// Try to take an open-file-description write lock on the byte at `offset`.
/// `Ok(false)` if another open file description holds a conflicting lock.
///
/// OFD locks belong to the open file description, not the process: closing
/// another descriptor of the same file does not drop them, and a lock held
/// through this description does not conflict with itself.
pub(crate) fn ofd_try_lock(fd: RawFd, offset: u64) -> io::Result<bool> {
    ofd_try(fd, libc::F_WRLCK, offset)
}

/// An OFD lock of `kind` (F_WRLCK, F_RDLCK) on the byte at `offset`,
/// without waiting: `Ok(false)` when a conflicting lock is held.
fn ofd_try(fd: RawFd, kind: libc::c_int, offset: u64) -> io::Result<bool> {
    let fl = flock(kind as libc::c_short, offset);
    // SAFETY: fd is a descriptor we own; fl is a valid flock.
    if unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &fl) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(err),
    }
}

/// Release this description's lock on the byte at `offset`.
pub(crate) fn ofd_unlock(fd: RawFd, offset: u64) -> io::Result<()> {
    let fl = flock(libc::F_UNLCK as libc::c_short, offset);
    // SAFETY: as in `ofd_try_lock`.
    if unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &fl) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Is the byte at `offset` locked by an open file description other than
/// `fd`'s? (F_OFD_GETLK; never changes any lock.)
pub(crate) fn ofd_is_locked(fd: RawFd, offset: u64) -> io::Result<bool> {
    let mut fl = flock(libc::F_WRLCK as libc::c_short, offset);
    // SAFETY: as in `ofd_try_lock`; the kernel writes into fl.
    if unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut fl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// CLOCK_MONOTONIC in nanoseconds. The clock is system-wide, so values
/// written into the mapping by one process are meaningful to all others
/// (processes in different time namespaces must not share a barrier).
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The calling process's pid.
pub(crate) fn getpid() -> u32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() as u32 }
}

/// syncfs(2) on the file system holding `file`.
pub(crate) fn syncfs(file: &File) -> io::Result<()> {
    // SAFETY: a valid descriptor.
    if unsafe { libc::syncfs(file.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

// ---- fork detection -------------------------------------------------------

/// Bumped in every child created by fork(2) (pthread_atfork child handler).
/// A barrier compares it with the value it recorded when it took its slot:
/// one relaxed load, no getpid() system call on the writer's fast path.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Descriptors whose OFD slot locks a forked child must not keep alive.
/// The atfork child handler closes them (close(2) is async-signal-safe), so a
/// parent that dies while its child lives on is still seen as dead.
const FD_REGISTRY_LEN: usize = 64;
static FD_REGISTRY: [AtomicI32; FD_REGISTRY_LEN] = [const { AtomicI32::new(-1) }; FD_REGISTRY_LEN];
/// The inode each registered descriptor was open on: a host that closed our
/// descriptor (closefrom) may have reused its number for a file of its own,
/// which the child handler must then leave alone.
static FD_INODE: [AtomicU64; FD_REGISTRY_LEN] = [const { AtomicU64::new(0) }; FD_REGISTRY_LEN];

extern "C" fn atfork_child() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
    for (entry, inode) in FD_REGISTRY.iter().zip(&FD_INODE) {
        let fd = entry.swap(-1, Ordering::Relaxed);
        if fd >= 0 && fd_inode(fd) == Some(inode.load(Ordering::Relaxed)) {
            // SAFETY: the fd was registered by a barrier of the parent, still
            // names the barrier file (fstat is async-signal-safe), and is a
            // copy in this child that nothing else in the child uses: the
            // barrier re-opens the file on first use after a fork.
            unsafe { libc::close(fd) };
        }
    }
}

/// The inode `fd` is open on (None if it is not open). Async-signal-safe.
fn fd_inode(fd: RawFd) -> Option<u64> {
    file_id(fd).ok().map(|id| id.ino)
}

/// The current fork generation (installs the atfork handler on first use).
#[inline]
pub(crate) fn fork_generation() -> u64 {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: registering a handler that only touches atomics and close().
        unsafe { libc::pthread_atfork(None, None, Some(atfork_child)) };
    });
    FORK_GENERATION.load(Ordering::Relaxed)
}

/// [`fork_generation`] without the check that the atfork handler is
/// installed: for the fast paths of a barrier, whose opening installed it.
#[inline(always)]
pub(crate) fn fork_generation_cached() -> u64 {
    FORK_GENERATION.load(Ordering::Relaxed)
}

/// Register `fd` to be closed in forked children. `None` if the registry is
/// full (the child then keeps the parent's slot lock alive until it first
/// uses the barrier or exits; see the module docs).
pub(crate) fn register_fd(fd: RawFd, ino: u64) -> Option<usize> {
    let index = FD_REGISTRY.iter().position(|e| {
        e.compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })?;
    FD_INODE[index].store(ino, Ordering::Relaxed);
    Some(index)
}

/// Undo `register_fd` (before closing the descriptor in this process).
pub(crate) fn unregister_fd(index: usize, fd: RawFd) {
    let _ = FD_REGISTRY[index].compare_exchange(fd, -1, Ordering::AcqRel, Ordering::Relaxed);
}

// ---- files, identities, processes ------------------------------------------

/// A file's identity (device and inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

/// fstat(2) identity of an open descriptor. Async-signal-safe.
pub(crate) fn file_id(fd: RawFd) -> io::Result<FileId> {
    // SAFETY: stat is plain old data; fstat fills it or fails.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid out-pointer; a bad fd is just EBADF.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(FileId {
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// Allocate the blocks of `file`'s first `len` bytes (posix_fallocate: a
/// later store through a mapping can then never need a block the disk no
/// longer has, which would be a SIGBUS).
pub(crate) fn allocate(file: &File, len: u64) -> io::Result<()> {
    // SAFETY: a valid descriptor; posix_fallocate returns the error number.
    let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

/// Take a shared (read) OFD lock on the byte at `offset`, without waiting.
pub(crate) fn ofd_try_read_lock(fd: RawFd, offset: u64) -> io::Result<bool> {
    ofd_try(fd, libc::F_RDLCK, offset)
}

/// Whether any lock (OFD or POSIX, any byte) is held on the file by an open
/// file description other than `fd`'s: someone has the file open as a
/// barrier. Works on a read-only descriptor.
pub(crate) fn any_lock(fd: RawFd) -> io::Result<bool> {
    let mut fl = flock(libc::F_WRLCK as libc::c_short, 0);
    fl.l_len = 0; // to the end of the file, and beyond
                  // SAFETY: as in `ofd_is_locked`.
    if unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut fl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// When process `pid` started (field 22 of /proc/PID/stat, clock ticks since
/// boot); None if there is no such process (or /proc is not readable).
/// With the pid, it names one process for good: a recycled pid has a later
/// start time.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) may hold spaces and parentheses: count after the last ')'
    let mut fields = text[text.rfind(')')? + 1..].split_whitespace();
    // field 3, the state: a zombie (or dying) process is dead to us, even
    // before its parent reaps it
    if matches!(fields.next()?, "Z" | "X" | "x") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Point registry entry `index` at a new descriptor (ours was closed by the
/// host and re-opened).
pub(crate) fn reregister_fd(index: usize, fd: RawFd, ino: u64) {
    FD_INODE[index].store(ino, Ordering::Relaxed);
    FD_REGISTRY[index].store(fd, Ordering::Release);
}
