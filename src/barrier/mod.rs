//! The global write barrier.
//!
//! Every Cyrus process that takes an exclusive lock first *enters* the
//! barrier (shared) and *leaves* it when its last lock is released; a
//! snapshot tool *freezes* it (exclusive): the freeze waits for the writers
//! inside to drain, and while it holds no writer enters. The freeze is
//! bounded: no writer waits longer than the bound, and [`Barrier::thaw`]
//! tells the tool whether the freeze held for its whole run.
//!
//! # Shared state
//!
//! One file per instance, `<lock_dir>/cyrsync-barrier` (Cyrus:
//! `<configdirectory>/lock/cyrsync-barrier`), mapped `MAP_SHARED` by every
//! process. All multi-byte fields are native-endian and only accessed as
//! atomics. Layout, version 1 (`layout.rs`):
//!
//! ```text
//! offset  size  header field (page 0, HEADER_SIZE = 4096 bytes)
//!      0     8  magic "CYRSBAR1"
//!      8     4  version (1)
//!     12     4  slot_count
//!     16     4  slot_size (64)
//!     20     4  header_size (4096)
//!     24     4  high_water: 1 + highest slot index ever taken
//!     64     4  freeze word (futex): bit 0 FROZEN, bit 1 EXPIRED,
//!               bits 2..32 generation (bumped by every freeze and thaw)
//!    128     4  drain word (futex): bumped by writers that leave or back off
//!               while FROZEN; the draining freezer sleeps on it
//!    192     4  freezer pid (informational)
//!    200     8  freeze start, CLOCK_MONOTONIC ns
//!    208     8  freeze deadline, CLOCK_MONOTONIC ns
//!    216     8  breaches: writers that went in past the bound (cumulative)
//!    224     8  freezes: completed freeze() calls (cumulative)
//!    256     4  overflow: processes without a slot that are inside
//!   4096 + 64*i slot i:
//!      +0     4  word: bit 31 HELD, bits 0..31 depth; depth 1 without HELD
//!                 is a thread of that process in the middle of entering
//!      +4     4  owner pid
//!      +8     8  owner start time (/proc/PID/stat field 22; 0 if unknown)
//! ```
//!
//! The file is created complete or not at all: built under a temporary
//! name, its blocks allocated (`posix_fallocate`, so no store through the
//! mapping can ever SIGBUS on a full disk), its header written, then
//! `link`ed into place. An existing file that does not validate (short,
//! garbage, foreign version, wrong size) is never truncated or rewritten:
//! others may have it mapped. Open refuses it (the error names the file and
//! the fix), and [`reset`] (`cyrsync barrier reset`) replaces it only while
//! no process locks or maps it.
//!
//! Byte-range locks (open-file-description locks, F_OFD_SETLK, on the file;
//! they do not touch the data): byte 1 is held by the live freezer for the
//! length of its freeze; byte 2 is read-locked by each slotless process
//! while it is inside; the first byte of slot i is held by the process
//! owning slot i for as long as it has the barrier open. The kernel drops
//! them when the process dies. A host may also drop them by closing our
//! descriptor (closefrom): so a slot whose lock is free but whose pid and
//! start time still name a running process is that process's, never
//! reclaimed nor re-used; the owner notices the closed descriptor (fstat
//! identity) on its next freeze, thaw or status and takes its lock back.
//! Locks are taken through a descriptor of their own, never through the
//! description the mapping was made from: a mapping pins its description
//! (and so its OFD locks) for as long as anyone, e.g. a forked child, still
//! has it mapped.
//!
//! # More processes than slots
//!
//! A process that finds every slot owned by a live process still opens:
//! its depth lives in a word of its own, and its outermost enter takes a
//! read lock on byte 2 and then increments the shared overflow count
//! (SeqCst, the Dekker pair with the freeze flag, as a slot word); its
//! outermost leave decrements and unlocks. The freezer waits for the count
//! to be 0; a count with nobody holding byte 2 is what dead processes left,
//! and is reclaimed. Two system calls per outermost enter/leave: slower,
//! but correct.
//!
//! # A removed or replaced file
//!
//! Writers never look at the path (their fast path makes no system call).
//! The freezer does: as it sets FROZEN, it reads /proc/locks (every barrier
//! process holds an OFD lock on the file it uses: a slot's, or byte 3 for
//! a slotless one); only if some process locks another barrier-like file
//! does it scan /proc/*/maps for processes that map that inode as
//! `<this path> (deleted)` or under this path (a removed or replaced file
//! they still write through; inodes found under other paths, other
//! instances, are remembered and not scanned for again). At the thaw it
//! checks the path still names the file it froze. Either gives the verdict
//! "not consistent", with the reason.
//!
//! # Protocol
//!
//! Writer, outermost enter: CAS its slot word 0 -> 1 (SeqCst), then load the
//! freeze word (SeqCst). Not frozen: mark HELD and go (no system call).
//! Frozen: put the word back to 0, bump the drain word, wake the freezer and
//! futex-wait on the freeze word until thawed or the deadline. The freezer
//! sets FROZEN (SeqCst) and then reads every slot (SeqCst): Dekker's
//! argument says at least one of them sees the other, so a writer and a
//! freezer never both proceed. Nested enters and other threads of a process
//! already inside just bump the depth: the process is inside, the freezer is
//! still waiting for it.
//!
//! Bound: a waiting writer gives up at min(deadline, freeze start + its own
//! bound, its wait start + its own bound); the first to give up marks the
//! freeze EXPIRED, and every writer that goes in during a FROZEN|EXPIRED
//! freeze adds one to `breaches`. A dead freezer's freeze therefore ends at
//! its deadline; the writer that marks it expired also checks the freezer
//! lock byte and, if the freezer is dead, thaws on its behalf, and a new
//! freezer takes over a dead freezer's freeze at once.
//!
//! Draining: the freezer waits (futex on the drain word, re-scanning at least
//! every 50 ms) until every slot word is 0, its own included (another thread
//! of its process may be inside), and the overflow count is 0. A nonzero
//! slot whose lock byte it can take, and whose pid and start time no longer
//! name a running process, belongs to a dead process: the freezer zeroes it
//! (reclaim).
//!
//! # Fork and threads
//!
//! The depth is per process: all threads of a process share its slot, and a
//! thread may leave what another entered (Cyrus's lock list is per process).
//! Each thread also counts its own enters minus leaves (one thread-local
//! counter over all handles, no system call): a thread that holds the
//! barrier nests at once, but a thread
//! that holds nothing waits during a freeze even while other threads of its
//! process are inside, so the freezer keeps its priority over a
//! multi-threaded writer.
//! A forked child never shares its parent's slot: a pthread_atfork handler
//! bumps a generation counter and closes the parent's descriptors in the
//! child (so the child does not keep the parent's slot lock alive); on first
//! use the child opens the file itself and takes a fresh slot. A child forked
//! while its parent is inside does *not* hold the barrier: its depth is 0,
//! the parent still holds it (and the freezer waits for the parent), and a
//! `leave` in the child without its own `enter` fails with
//! [`BarrierError::NotHeld`]. Descriptors are close-on-exec, so exec'd
//! programs inherit nothing. The child's state is chained after its
//! parent's (`process.rs`: set once with a compare-and-swap, never a lock a
//! fork could catch half-held) and freed with the barrier.
//!
//! A freeze token borrows its barrier: dropped without [`Barrier::thaw`], it
//! thaws (logged, verdict lost); a thaw refuses a token of another barrier
//! before consuming anything (C: the freeze stays valid for its own handle).
//!
//! # Files
//!
//! `layout.rs`: the file, its creation, validation and [`reset`];
//! `process.rs`: per-process state, liveness and fork; `kernel.rs`: the
//! system calls; this file: the enter/leave/freeze/thaw protocol.

pub(crate) mod kernel;
mod layout;
mod process;

use std::cell::Cell;
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering::*};
use std::time::Duration;

use kernel::{FileId, Mapping};
use layout::*;
pub use layout::{reset, ResetOutcome};
use process::ProcState;

/// Name of the barrier file inside the lock directory.
pub const FILE_NAME: &str = "cyrsync-barrier";
/// The default freeze bound.
pub const DEFAULT_MAX_FREEZE: Duration = Duration::from_secs(5);
/// The most slots a barrier file may have.
pub(crate) const MAX_SLOT_COUNT: u32 = MAX_SLOTS;

const FROZEN: u32 = 1;
const EXPIRED: u32 = 2;
const GEN_ONE: u32 = 4;

/// `my_freeze` while a freeze through the handle is being set up (never a
/// freeze word: those have bits 0..2 = FROZEN).
const CLAIMING: u32 = 2;

const HELD: u32 = 1 << 31;
const DEPTH_MASK: u32 = HELD - 1;

/// [`SlotInfo::index`] of the entry that stands for the overflow path.
pub(crate) const OVERFLOW_INDEX: u32 = u32::MAX;

/// How often a draining freezer re-scans even without a wake-up (to notice
/// writers that died inside the barrier).
const DRAIN_RESCAN: Duration = Duration::from_millis(50);

/// Why a barrier call failed.
#[derive(Debug)]
pub enum BarrierError {
    /// An I/O error on the barrier file (`what` says which operation).
    Io {
        what: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    /// The barrier file could not be allocated (disk full, quota): nothing
    /// was created.
    NoSpace {
        path: PathBuf,
        bytes: u64,
        error: io::Error,
    },
    /// The file exists but is not a barrier file this version understands;
    /// it is left untouched (see [`reset`]).
    BadFile { path: PathBuf, why: String },
    /// [`reset`]: the file is in use (locked or mapped by live processes).
    InUse { path: PathBuf, pids: Vec<u32> },
    /// The barrier file this process mapped was removed or replaced.
    Replaced { path: PathBuf, why: String },
    /// Every slot is owned by a live process (no longer returned: such
    /// processes take the overflow path).
    NoSlot { slots: u32 },
    /// `leave` without a matching `enter` in this process.
    NotHeld,
    /// Nesting deeper than 2^31-1.
    TooDeep,
    /// `freeze` by a process that is itself inside the barrier (it would
    /// wait for itself).
    Held { depth: u32 },
    /// Another live process holds the freeze.
    AlreadyFrozen { pid: u32 },
    /// Writers did not drain before the deadline; the freeze was undone.
    DrainTimeout {
        waited: Duration,
        busy: Vec<SlotInfo>,
    },
    /// `thaw` with a token from another barrier (the token's own barrier
    /// was thawed).
    ForeignToken,
    /// [`Barrier::enter_timeout`]: still frozen when the timeout ran out;
    /// the caller is not inside.
    Frozen { waited: Duration },
}

impl fmt::Display for BarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BarrierError::Io { what, path, error } => {
                write!(
                    f,
                    "{what} failed: path=<{}> error=<{error}>",
                    path.display()
                )
            }
            BarrierError::NoSpace { path, bytes, error } => write!(
                f,
                "cannot allocate the barrier file (free space or quota on its file system): \
                 path=<{}> bytes=<{bytes}> error=<{error}>",
                path.display()
            ),
            BarrierError::BadFile { path, why } => {
                write!(
                    f,
                    "not a usable barrier file, left untouched: path=<{}> why=<{why}> fix=<{RESET_HINT}>",
                    path.display()
                )
            }
            BarrierError::InUse { path, pids } => {
                let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
                write!(
                    f,
                    "the barrier file is in use (a process holds a lock on it or maps it), \
                     stop Cyrus first: path=<{}> pids=<{}>",
                    path.display(),
                    pids.join(",")
                )
            }
            BarrierError::Replaced { path, why } => write!(
                f,
                "the barrier file was removed or replaced: path=<{}> why=<{why}>",
                path.display()
            ),
            BarrierError::NoSlot { slots } => {
                write!(f, "all barrier slots in use: slots=<{slots}>")
            }
            BarrierError::NotHeld => write!(f, "barrier leave without enter"),
            BarrierError::TooDeep => write!(f, "barrier nested too deep"),
            BarrierError::Held { depth } => {
                write!(
                    f,
                    "cannot freeze while this process is inside the barrier: depth=<{depth}>"
                )
            }
            BarrierError::AlreadyFrozen { pid } => {
                write!(f, "barrier already frozen: freezer_pid=<{pid}>")
            }
            BarrierError::DrainTimeout { waited, busy } => {
                let pids: Vec<String> = busy.iter().map(|s| s.pid.to_string()).collect();
                write!(
                    f,
                    "writers did not drain before the freeze deadline: waited_ms=<{}> writer_pids=<{}>",
                    waited.as_millis(),
                    pids.join(",")
                )
            }
            BarrierError::ForeignToken => write!(
                f,
                "thaw with a freeze from another barrier (that barrier was thawed, verdict lost)"
            ),
            BarrierError::Frozen { waited } => write!(
                f,
                "barrier frozen, not entered within the timeout: waited_ms=<{}>",
                waited.as_millis()
            ),
        }
    }
}

impl std::error::Error for BarrierError {}

/// What an `enter` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entered {
    /// Outermost enter, no freeze in the way (or waited for a thaw).
    Entered,
    /// The process was already inside; only the depth grew.
    Nested,
    /// A freeze outlived its bound and the writer went in anyway; the freeze
    /// will be reported inconsistent.
    Breached,
}

/// How a writer's wait for a thaw ended.
enum Waited {
    /// Woken (thawed, or a new freeze generation): look again.
    Woken,
    /// The freeze's bound ran out: the freeze is marked expired, go in.
    BoundRanOut,
    /// The caller's own timeout ran out first ([`Barrier::enter_timeout`]).
    TimedOut(Duration),
}

/// One slot as seen by [`Barrier::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// The slot, or `u32::MAX` for the processes without one (see
    /// [`SlotInfo::is_overflow`]).
    pub index: u32,
    /// Last owner's pid (0 if reclaimed; 0 for the overflow entry).
    pub pid: u32,
    /// Depth (0 when not inside); a thread mid-enter counts 1. For the
    /// overflow entry: how many slotless processes are inside.
    pub depth: u32,
    /// Whether the owning process is alive (its slot lock is held, or its
    /// pid and start time still name a running process).
    pub alive: bool,
}

impl SlotInfo {
    /// Whether this entry stands for the processes without a slot (then
    /// `index` is `u32::MAX` and `depth` how many of them are inside).
    pub fn is_overflow(&self) -> bool {
        self.index == OVERFLOW_INDEX
    }
}

/// A snapshot of the shared state.
#[derive(Debug, Clone)]
pub struct Status {
    pub frozen: bool,
    pub expired: bool,
    pub generation: u32,
    pub freezer_pid: u32,
    /// Whether a live process holds the freezer lock byte.
    pub freezer_alive: bool,
    /// Time since the current freeze started (if frozen).
    pub frozen_for: Option<Duration>,
    /// Time left before the deadline (if frozen; zero once past).
    pub remaining: Option<Duration>,
    pub breaches: u64,
    pub freezes: u64,
    pub slot_count: u32,
    /// Processes without a slot (overflow path) inside now.
    pub overflow_inside: u32,
    /// Slots owned by a live process, or holding a nonzero depth.
    pub slots: Vec<SlotInfo>,
}

/// What a freeze recorded, for its verdict.
#[derive(Debug)]
struct FreezeData {
    generation_word: u32,
    started_ns: u64,
    deadline_ns: u64,
    breaches_at_start: u64,
    drained_ns: u64,
    /// Writers seen on another barrier file when the freeze began.
    replaced: Option<String>,
}

/// Proof of a freeze, consumed by [`Barrier::thaw`] (or
/// [`FreezeToken::thaw`]). Dropped without a thaw, it thaws (logged; the
/// verdict is lost).
#[derive(Debug)]
#[must_use = "a freeze must be thawed to learn whether it held"]
pub struct FreezeToken<'a> {
    barrier: &'a Barrier,
    data: Option<FreezeData>,
}

impl<'a> FreezeToken<'a> {
    /// How long draining the writers took.
    pub fn drain_time(&self) -> Duration {
        self.data.as_ref().map_or(Duration::ZERO, |d| {
            Duration::from_nanos(d.drained_ns - d.started_ns)
        })
    }
    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.data.as_ref().map_or(Duration::ZERO, |d| {
            Duration::from_nanos(d.deadline_ns.saturating_sub(kernel::monotonic_ns()))
        })
    }
    /// The barrier this freeze is on.
    pub fn barrier(&self) -> &'a Barrier {
        self.barrier
    }
    /// End the freeze and say whether it held.
    pub fn thaw(mut self) -> Verdict {
        let data = self.data.take().expect("a token is thawed once");
        self.barrier.finish(data)
    }
}

impl Drop for FreezeToken<'_> {
    fn drop(&mut self) {
        if let Some(data) = self.data.take() {
            let v = self.barrier.finish(data);
            log::error!(
                "IOERROR: cyrsync barrier: a freeze was dropped without a thaw; thawed, verdict lost: \
                 path=<{}> consistent=<{}>",
                self.barrier.path.display(),
                v.consistent()
            );
        }
    }
}

/// The outcome of a freeze, from [`Barrier::thaw`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The deadline passed before the thaw (writers were free to go in).
    pub expired: bool,
    /// Writers that went in during the freeze (after their bound).
    pub breaches: u64,
    /// The freeze was taken over or cleared by someone else meanwhile.
    pub lost: bool,
    /// The barrier file was removed or replaced: writers may have used
    /// another file the freeze did not stop (why, if so).
    pub replaced: Option<String>,
    /// From the freeze start to the thaw.
    pub frozen_for: Duration,
    /// From the freeze start to "all writers out".
    pub drain_time: Duration,
}

impl Verdict {
    /// No writer went in and the bound held: the snapshot is consistent.
    pub fn consistent(&self) -> bool {
        !self.expired && self.breaches == 0 && !self.lost && self.replaced.is_none()
    }

    /// Why the freeze is inconsistent, in a few words (None if consistent).
    pub fn reason(&self) -> Option<&str> {
        if let Some(why) = &self.replaced {
            Some(why)
        } else if self.lost {
            Some("freeze taken over by another freezer")
        } else if self.breaches > 0 {
            Some("writers went in during the freeze (bound exceeded)")
        } else if self.expired {
            Some("freeze held past its bound")
        } else {
            None
        }
    }
}

/// A handle on an instance's barrier. `Send + Sync`: share it between
/// threads; the depth is per process (see the module docs).
pub struct Barrier {
    table: Table,
    path: PathBuf,
    /// The path with symbolic links resolved, as /proc/*/maps names it.
    canonical: PathBuf,
    /// The file we mapped.
    file_id: FileId,
    max_freeze: Duration,
    /// The state this process took at open; a forked child that uses the
    /// barrier chains its own after its parent's (`ProcState::next`), and
    /// the last one is the current process's. Set once at open, never
    /// removed while the barrier lives, so references stay valid.
    root: ProcState,
    /// Inodes of other barrier files (other instances) a freeze found mapped
    /// under other paths only: not scanned for again. A lock a fork could
    /// catch held is only ever tried, never waited for.
    foreign: std::sync::Mutex<Vec<u64>>,
    /// /proc/locks, for the freezer (see `proc_locks`).
    proc_locks: process::OnceBox<std::fs::File>,
    /// The freeze word of the freeze this handle holds, 0 if none (the OFD
    /// freezer lock cannot conflict with itself, so a second freeze through
    /// the same handle is caught here).
    my_freeze: AtomicU32,
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier").field("path", &self.path).finish()
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BarrierError + 'a {
    move |error| BarrierError::Io {
        what,
        path: path.to_path_buf(),
        error,
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128 / 4) as u64
}

/// The shared state of the barrier in `lock_dir`, read without writing
/// anything: no directory, file or slot is created, the file is opened and
/// mapped read-only (works on a read-only file system and for any user who
/// can read the file). For `cyrsync barrier status`.
pub fn inspect(lock_dir: &Path) -> Result<Status, BarrierError> {
    let path = lock_dir.join(FILE_NAME);
    let file = layout::open_existing(&path, false).map_err(io_err("open", &path))?;
    let slot_count = layout::validate(&file, &path)?;
    let map = Mapping::new_read_only(&file, file_len(slot_count)).map_err(io_err("mmap", &path))?;
    let table = Table { map, slot_count };
    status_of(&table, file.as_raw_fd(), None, false, &path)
}

/// The status of `t`, probing locks through `fd` (whose own locks, and the
/// slot `own`, are this process's).
fn status_of(
    t: &Table,
    fd: RawFd,
    own: Option<u32>,
    own_freeze: bool,
    path: &Path,
) -> Result<Status, BarrierError> {
    let word = t.freeze_word().load(SeqCst);
    let frozen = word & FROZEN != 0;
    let now = kernel::monotonic_ns();
    let start = t.hdr64(OFF_FREEZE_START).load(SeqCst);
    let deadline = t.hdr64(OFF_DEADLINE).load(SeqCst);
    // Our own description's locks never conflict with us: ask ourselves.
    let freezer_alive = own_freeze
        || kernel::ofd_is_locked(fd, LOCK_FREEZER).map_err(io_err("lock probe", path))?;
    let mut slots = Vec::new();
    for index in 0..t.high_water() {
        let w = t.slot_word(index).load(SeqCst);
        let pid = t.slot_pid(index).load(SeqCst);
        let alive = Some(index) == own
            || kernel::ofd_is_locked(fd, slot_offset(index) as u64)
                .map_err(io_err("lock probe", path))?
            || (pid != 0 && t.owner_alive(index));
        if alive || w != 0 {
            slots.push(SlotInfo {
                index,
                pid,
                depth: w & DEPTH_MASK,
                alive,
            });
        }
    }
    let overflow_inside = t.overflow().load(SeqCst);
    if overflow_inside != 0 {
        slots.push(SlotInfo {
            index: OVERFLOW_INDEX,
            pid: 0,
            depth: overflow_inside,
            alive: kernel::ofd_is_locked(fd, LOCK_OVERFLOW).unwrap_or(true),
        });
    }
    Ok(Status {
        frozen,
        expired: frozen && word & EXPIRED != 0,
        generation: word >> 2,
        freezer_pid: t.freezer_pid().load(SeqCst),
        freezer_alive,
        frozen_for: frozen.then(|| Duration::from_nanos(now.saturating_sub(start))),
        remaining: frozen.then(|| Duration::from_nanos(deadline.saturating_sub(now))),
        breaches: t.hdr64(OFF_BREACHES).load(SeqCst),
        freezes: t.hdr64(OFF_FREEZES).load(SeqCst),
        slot_count: t.slot_count,
        overflow_inside,
        slots,
    })
}

impl Barrier {
    /// Open (creating it, and `lock_dir`, if needed) the barrier file in
    /// `lock_dir` and take a slot for this process. `max_freeze` is this
    /// process's bound: it never waits longer than that for a freeze,
    /// whatever the freezer asked.
    pub fn open(lock_dir: &Path, max_freeze: Duration) -> Result<Barrier, BarrierError> {
        Self::open_with_slots(lock_dir, max_freeze, DEFAULT_SLOTS)
    }

    /// [`Barrier::open`], creating a missing file with `slots` slots (0: the
    /// default); an existing file keeps its own count.
    pub fn open_with_slots(
        lock_dir: &Path,
        max_freeze: Duration,
        slots: u32,
    ) -> Result<Barrier, BarrierError> {
        let path = lock_dir.join(FILE_NAME);
        let (file, slot_count) = layout::open_or_create(&path, slots)?;
        let file_id = kernel::file_id(file.as_raw_fd()).map_err(io_err("fstat", &path))?;
        // The mapping keeps its open file description alive for as long as
        // any process (a forked child, too) has it mapped, and OFD locks live
        // as long as their description: so the mapping's description must
        // never hold a lock, and the slot lock is taken through a second,
        // separate open of the same file.
        let map = Mapping::new(&file, file_len(slot_count)).map_err(io_err("mmap", &path))?;
        let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        drop(file);
        let table = Table { map, slot_count };
        let file = layout::open_existing(&path, true).map_err(io_err("open", &path))?;
        if kernel::file_id(file.as_raw_fd()).ok() != Some(file_id) {
            return Err(BarrierError::Replaced {
                path,
                why: "replaced while being opened".into(),
            });
        }
        let root = Self::take_slot(&table, &path, file_id, file)?;
        Ok(Barrier {
            table,
            path,
            canonical,
            file_id,
            max_freeze,
            root,
            foreign: std::sync::Mutex::new(Vec::new()),
            proc_locks: process::OnceBox::new(),
            my_freeze: AtomicU32::new(0),
        })
    }

    /// The barrier file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This process's bound on waiting for a freeze.
    pub fn max_freeze(&self) -> Duration {
        self.max_freeze
    }

    /// Whether this process has a slot of its own (false: every slot was
    /// taken when it opened, and it uses the overflow path).
    pub fn has_slot(&self) -> bool {
        self.state().is_ok_and(|s| s.slot.is_some())
    }

    /// This process's depth word: its slot's, or its private one.
    #[inline]
    fn word<'s>(&'s self, state: &'s ProcState) -> &'s AtomicU32 {
        match state.slot {
            Some(index) => self.table.slot_word(index),
            None => &state.private_word,
        }
    }

    #[cold]
    #[inline(never)]
    fn bump_drain(&self) {
        self.table.drain_word().fetch_add(1, SeqCst);
        kernel::futex_wake_all(self.table.drain_word());
    }

    /// Overflow path, outermost enter: be counted (read lock for liveness
    /// first, then the shared count).
    #[cold]
    fn overflow_in(&self, state: &ProcState) -> Result<(), BarrierError> {
        let fd = self.own_fd(state)?;
        match kernel::ofd_try_read_lock(fd, LOCK_OVERFLOW) {
            Ok(true) => {}
            Ok(false) => {
                return Err(io_err("lock (overflow)", &self.path)(io::Error::other(
                    "overflow byte write-locked",
                )))
            }
            Err(e) => return Err(io_err("lock (overflow)", &self.path)(e)),
        }
        self.table.overflow().fetch_add(1, SeqCst);
        Ok(())
    }

    /// Overflow path, outermost leave (or backing off): no longer counted.
    #[cold]
    fn overflow_out(&self, state: &ProcState) {
        self.table.overflow().fetch_sub(1, SeqCst);
        let _ = kernel::ofd_unlock(state.fd.load(SeqCst), LOCK_OVERFLOW);
    }

    /// Enter the barrier (shared). Nestable; the depth is per process.
    ///
    /// Fast path (no freeze): a few atomic operations and no system call
    /// (a process without a slot of its own takes and drops a read lock).
    /// During a freeze, waits on a futex until the thaw, or until the bound:
    /// then goes in anyway and the freeze is recorded as breached.
    ///
    /// A thread that already holds the barrier (its own enters exceed its
    /// own leaves) always nests at once: it must not wait for a freeze that
    /// waits for it. A thread that holds nothing waits during a freeze even
    /// if other threads of its process are inside, so the freezer keeps
    /// priority over a multi-threaded writer.
    #[inline]
    pub fn enter(&self) -> Result<Entered, BarrierError> {
        match self.enter_fast() {
            Some(entered) => Ok(entered),
            None => self.enter_slow(None),
        }
    }

    /// [`Barrier::enter`], but waiting at most `timeout` for a freeze to end
    /// (zero: not at all): then [`BarrierError::Frozen`], and the caller is
    /// not inside (nothing to leave). If the freeze's own bound runs out
    /// first, goes in as `enter` does ([`Entered::Breached`]). A thread that
    /// already holds the barrier nests at once. Same fast path as `enter`.
    ///
    /// For a locker that must not block (Cyrus: a non-blocking lock, or a
    /// replica that answers LOCKED after a bounded wait).
    #[inline]
    pub fn enter_timeout(&self, timeout: Duration) -> Result<Entered, BarrierError> {
        match self.enter_fast() {
            Some(entered) => Ok(entered),
            None => self.enter_slow(Some(timeout)),
        }
    }

    /// The outermost enter of a process with a slot while nothing is
    /// frozen: one compare-and-swap, one load, one store. `None`: take the
    /// slow path, which starts over (nested, slotless, forked child, frozen).
    #[inline(always)]
    fn enter_fast(&self) -> Option<Entered> {
        let state = self.current();
        if state.fork_generation != kernel::fork_generation_cached() {
            return None;
        }
        let word = self.table.slot_word(state.slot?);
        if word.compare_exchange(0, 1, SeqCst, Relaxed).is_err() {
            return None;
        }
        // Dekker: our SeqCst compare-and-swap, then the freeze flag.
        if self.table.freeze_word().load(SeqCst) & FROZEN == 0 {
            // Release is enough: the Dekker pair is the SeqCst CAS and load
            // above; the freezer treats any nonzero word as busy, tentative
            // (1) or held (HELD | 1) alike.
            word.store(HELD | 1, Release);
            thread_held_add(1);
            return Some(Entered::Entered);
        }
        // Frozen: step back out (the freezer may have seen us) and wait in
        // the slow path.
        word.store(0, SeqCst);
        self.bump_drain();
        None
    }

    #[cold]
    #[inline(never)]
    fn enter_slow(&self, limit: Option<Duration>) -> Result<Entered, BarrierError> {
        let state = self.state()?;
        let slot = self.word(state);
        let mut wait_start: Option<u64> = None;
        let mut gave_up_on: Option<u32> = None;
        loop {
            let cur = slot.load(Acquire);
            if cur & HELD != 0 {
                if cur & DEPTH_MASK == DEPTH_MASK {
                    return Err(BarrierError::TooDeep);
                }
                if thread_held() == 0 {
                    let freeze = self.table.freeze_word().load(SeqCst);
                    if freeze & (FROZEN | EXPIRED) == FROZEN && gave_up_on != Some(freeze) {
                        // Not a breach if we go in now: our process is
                        // inside, so the freezer has not drained yet.
                        match self.wait_frozen(freeze, &mut wait_start, limit) {
                            Waited::Woken => {}
                            Waited::BoundRanOut => gave_up_on = Some(freeze),
                            Waited::TimedOut(waited) => {
                                return Err(BarrierError::Frozen { waited })
                            }
                        }
                        continue;
                    }
                }
                if slot
                    .compare_exchange_weak(cur, cur + 1, SeqCst, Relaxed)
                    .is_ok()
                {
                    thread_held_add(1);
                    return Ok(Entered::Nested);
                }
                continue;
            }
            if cur != 0 {
                // Another thread of this process is entering or leaving; it
                // settles in a few instructions (or backs off to 0 and waits).
                std::thread::yield_now();
                continue;
            }
            if slot.compare_exchange(0, 1, SeqCst, Relaxed).is_err() {
                continue;
            }
            if state.slot.is_none() {
                if let Err(e) = self.overflow_in(state) {
                    slot.store(0, SeqCst);
                    return Err(e);
                }
            }
            // Dekker: our SeqCst increment above (of the slot word, or of the
            // overflow count), then the freeze flag.
            let freeze = self.table.freeze_word().load(SeqCst);
            if freeze & FROZEN == 0 {
                slot.store(HELD | 1, Release);
                thread_held_add(1);
                return Ok(Entered::Entered);
            }
            if freeze & EXPIRED != 0 || gave_up_on == Some(freeze & !EXPIRED) {
                self.table.hdr64(OFF_BREACHES).fetch_add(1, SeqCst);
                slot.store(HELD | 1, Release);
                thread_held_add(1);
                return Ok(Entered::Breached);
            }
            // Frozen: step back out, tell the freezer, wait.
            if state.slot.is_none() {
                self.overflow_out(state);
            }
            slot.store(0, SeqCst);
            self.bump_drain();
            match self.wait_frozen(freeze, &mut wait_start, limit) {
                Waited::Woken => {}
                Waited::BoundRanOut => gave_up_on = Some(freeze & !EXPIRED),
                Waited::TimedOut(waited) => return Err(BarrierError::Frozen { waited }),
            }
        }
    }

    /// Sleep while the freeze word is `freeze`, at most until this writer's
    /// bound (or the caller's `limit`, counted from the first wait).
    fn wait_frozen(
        &self,
        freeze: u32,
        wait_start: &mut Option<u64>,
        limit: Option<Duration>,
    ) -> Waited {
        let t = &self.table;
        let now = kernel::monotonic_ns();
        let start = *wait_start.get_or_insert(now);
        let own = nanos(self.max_freeze);
        let deadline = t
            .hdr64(OFF_DEADLINE)
            .load(SeqCst)
            .min(t.hdr64(OFF_FREEZE_START).load(SeqCst).saturating_add(own))
            .min(start.saturating_add(own));
        if now >= deadline {
            self.expire(freeze, start, now);
            return Waited::BoundRanOut;
        }
        let mut until = deadline;
        if let Some(limit) = limit {
            let mine = start.saturating_add(nanos(limit));
            if now >= mine {
                return Waited::TimedOut(Duration::from_nanos(now - start));
            }
            until = until.min(mine);
        }
        kernel::futex_wait(t.freeze_word(), freeze, Duration::from_nanos(until - now));
        Waited::Woken
    }

    /// A writer's bound ran out during freeze `freeze`: mark it expired so
    /// nobody else waits, and thaw on behalf of a dead freezer.
    #[cold]
    fn expire(&self, freeze: u32, wait_start: u64, now: u64) {
        let word = self.table.freeze_word();
        let pid = self.table.freezer_pid().load(SeqCst);
        if word
            .compare_exchange(freeze, freeze | EXPIRED, SeqCst, Relaxed)
            .is_ok()
        {
            log::warn!(
                "cyrsync barrier: freeze exceeded its bound, writers proceed: freezer_pid=<{pid}> waited_ms=<{}>",
                (now - wait_start) / 1_000_000
            );
            kernel::futex_wake_all(word);
        }
        // A dead freezer never thaws: do it for it, so writers stop counting
        // breaches. (A live one gets an inconsistent verdict at its thaw.)
        if self.my_freeze.load(SeqCst) != 0 {
            return; // we are the freezer (our own lock would look free)
        }
        let Ok(fd) = self.state().and_then(|s| self.own_fd(s)) else {
            return;
        };
        if let Ok(false) = kernel::ofd_is_locked(fd, LOCK_FREEZER) {
            let cur = word.load(SeqCst);
            if cur & FROZEN != 0
                && (cur & !(FROZEN | EXPIRED)) == (freeze & !(FROZEN | EXPIRED))
                && word
                    .compare_exchange(cur, next_generation(cur), SeqCst, Relaxed)
                    .is_ok()
            {
                log::warn!("cyrsync barrier: freezer died while frozen, barrier thawed: freezer_pid=<{pid}>");
                kernel::futex_wake_all(word);
            }
        }
    }

    /// Leave the barrier once. [`BarrierError::NotHeld`] if this process is
    /// not inside.
    #[inline]
    pub fn leave(&self) -> Result<(), BarrierError> {
        if self.leave_fast() {
            return Ok(());
        }
        self.leave_slow()
    }

    /// The outermost leave of a process with a slot: one compare-and-swap
    /// and one load. False: take the slow path (nested, slotless, forked
    /// child, another thread of ours in the middle, not held).
    #[inline(always)]
    fn leave_fast(&self) -> bool {
        let state = self.current();
        if state.fork_generation != kernel::fork_generation_cached() {
            return false;
        }
        let Some(index) = state.slot else {
            return false;
        };
        let word = self.table.slot_word(index);
        if word.compare_exchange(HELD | 1, 0, SeqCst, Relaxed).is_err() {
            return false;
        }
        thread_held_add(-1);
        // Dekker again: our SeqCst store, then the freeze flag; the freezer
        // sets the flag, then reads the drain word.
        if self.table.freeze_word().load(SeqCst) & FROZEN != 0 {
            self.bump_drain();
        }
        true
    }

    #[cold]
    #[inline(never)]
    fn leave_slow(&self) -> Result<(), BarrierError> {
        let state = self.state()?;
        let slot = self.word(state);
        let overflow = state.slot.is_none();
        let mut cur = slot.load(Acquire);
        loop {
            if cur & HELD == 0 || cur & DEPTH_MASK == 0 {
                return Err(BarrierError::NotHeld);
            }
            // Overflow path, outermost leave: through the tentative state
            // (1: other threads of ours wait) until we are no longer counted.
            let new = match cur & DEPTH_MASK {
                1 if overflow => 1,
                1 => 0,
                _ => cur - 1,
            };
            match slot.compare_exchange_weak(cur, new, SeqCst, Acquire) {
                Ok(_) => {
                    if new == 1 {
                        self.overflow_out(state);
                        slot.store(0, SeqCst);
                    }
                    // Never below 0: a thread may leave what another
                    // entered (the other's count then stays high, which only
                    // lets it nest while its process is inside: safe).
                    thread_held_add(-1);
                    // Dekker again: our SeqCst store, then the freeze flag;
                    // the freezer sets the flag, then reads the drain word.
                    if (new == 0 || new == 1) && self.table.freeze_word().load(SeqCst) & FROZEN != 0
                    {
                        self.bump_drain();
                    }
                    return Ok(());
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// This process's depth (0 when not inside). No system call.
    pub fn depth(&self) -> u32 {
        let state = self.current();
        if state.fork_generation != kernel::fork_generation() {
            return 0;
        }
        let word = self.word(state).load(Acquire);
        if word & HELD != 0 {
            word & DEPTH_MASK
        } else {
            0
        }
    }

    /// Why the freeze cannot trust this file: the path no longer names the
    /// file we mapped, or other processes map another `cyrsync-barrier` at
    /// this path (a removed or replaced file they still write through).
    fn replaced_reason(&self, scan: bool) -> Option<String> {
        if scan {
            // At the freeze: is any process on another barrier file? (The
            // path is checked at the thaw: a file replaced before or during
            // the freeze is still replaced then.)
            return self.other_file_users();
        }
        match std::fs::metadata(&self.path) {
            Err(e) => {
                return Some(format!(
                    "barrier file removed: path=<{}> error=<{e}>",
                    self.path.display()
                ))
            }
            Ok(meta) => {
                use std::os::unix::fs::MetadataExt;
                if meta.dev() != self.file_id.dev || meta.ino() != self.file_id.ino {
                    return Some(format!(
                        "barrier file replaced: path=<{}> now inode=<{}>, the freeze is on inode=<{}>",
                        self.path.display(),
                        meta.ino(),
                        self.file_id.ino
                    ));
                }
            }
        }
        None
    }

    /// Processes on a removed or replaced barrier file, as a reason.
    fn other_file_users(&self) -> Option<String> {
        // Which other barrier files are in use at all (cheap), then, for
        // those not known to be another instance's, who maps them.
        let candidates = self
            .proc_locks()
            .and_then(|f| layout::other_barrier_lock_inodes(f, self.file_id));
        let known: Vec<u64> = match self.foreign.try_lock() {
            Ok(known) => known.clone(),
            Err(_) => Vec::new(),
        };
        let fresh: Option<Vec<u64>> =
            candidates.map(|c| c.into_iter().filter(|i| !known.contains(i)).collect());
        if fresh.as_ref().is_some_and(Vec::is_empty) {
            return None;
        }
        let found = layout::scan_maps(&self.canonical, self.file_id, fresh.as_deref());
        if !found.ours_old.is_empty() {
            let pids: Vec<String> = found.ours_old.iter().map(u32::to_string).collect();
            return Some(format!(
                "processes still use a removed or replaced barrier file: path=<{}> pids=<{}>",
                self.path.display(),
                pids.join(",")
            ));
        }
        if let Ok(mut known) = self.foreign.try_lock() {
            for ino in found.foreign {
                if !known.contains(&ino) {
                    known.push(ino);
                }
            }
        }
        None
    }

    /// /proc/locks, opened once (by the first freeze: other processes never
    /// hold it) and read with one pread per freeze: fewer system calls while
    /// the writers wait.
    fn proc_locks(&self) -> Option<&std::fs::File> {
        if let Some(f) = self.proc_locks.get() {
            return Some(f);
        }
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/proc/locks")
            .ok()?;
        let _ = self.proc_locks.set(Box::new(f));
        self.proc_locks.get()
    }

    /// Freeze: stop new writers, wait for those inside to leave (at most
    /// `max`), and return the token to thaw with. The freeze ends by itself
    /// `max` after it started (writers go in, the verdict says so); each
    /// writer also applies its own bound.
    ///
    /// If the barrier file was removed or replaced (writers may be using
    /// another one), the freeze still happens but its verdict says not
    /// consistent, with the reason.
    pub fn freeze(&self, max: Duration) -> Result<FreezeToken<'_>, BarrierError> {
        let state = self.state()?;
        let own = self.word(state).load(SeqCst);
        if own != 0 {
            return Err(BarrierError::Held {
                depth: own & DEPTH_MASK,
            });
        }
        let fd = self.own_fd(state)?;
        // Claim the handle first: the OFD freezer lock does not conflict
        // with itself, so two threads of ours would both get it.
        if self
            .my_freeze
            .compare_exchange(0, CLAIMING, SeqCst, SeqCst)
            .is_err()
        {
            return Err(BarrierError::AlreadyFrozen {
                pid: kernel::getpid(),
            });
        }
        let got = match kernel::ofd_try_lock(fd, LOCK_FREEZER) {
            Ok(got) => got,
            Err(e) => {
                self.my_freeze.store(0, SeqCst);
                return Err(io_err("lock (freezer)", &self.path)(e));
            }
        };
        let t = &self.table;
        if !got {
            self.my_freeze.store(0, SeqCst);
            return Err(BarrierError::AlreadyFrozen {
                pid: t.freezer_pid().load(SeqCst),
            });
        }
        let word = t.freeze_word();
        let old = word.load(SeqCst);
        if old & FROZEN != 0 {
            log::warn!(
                "cyrsync barrier: taking over the freeze of a dead freezer: freezer_pid=<{}>",
                t.freezer_pid().load(SeqCst)
            );
        }
        let start = kernel::monotonic_ns();
        let deadline = start.saturating_add(nanos(max));
        t.freezer_pid().store(kernel::getpid(), SeqCst);
        t.hdr64(OFF_FREEZE_START).store(start, SeqCst);
        t.hdr64(OFF_DEADLINE).store(deadline, SeqCst);
        let breaches_at_start = t.hdr64(OFF_BREACHES).load(SeqCst);
        let frozen = next_generation(old) | FROZEN;
        self.my_freeze.store(frozen, SeqCst);
        word.store(frozen, SeqCst);
        // Writers waiting on a dead freezer's word see the new deadline.
        kernel::futex_wake_all(word);
        // Is any process on a removed or replaced barrier file? (One pread
        // of /proc/locks; the maps scan only for unknown barrier-like
        // locks.) The set of such processes only shrinks, so this sees every
        // one that can write during this freeze but one that exits in the
        // microseconds since FROZEN was set. Not before setting it: under
        // tight writers, each system call there waits for a CPU (freeze p50
        // 12 ms instead of 1); now they are backing off to sleep. A file
        // replaced later shows at the thaw's path check.
        let replaced = self.replaced_reason(true);

        loop {
            let seen = t.drain_word().load(SeqCst);
            let busy = self.busy_slots(state, fd);
            let now = kernel::monotonic_ns();
            if busy.is_empty() {
                t.hdr64(OFF_FREEZES).fetch_add(1, SeqCst);
                return Ok(FreezeToken {
                    barrier: self,
                    data: Some(FreezeData {
                        generation_word: frozen,
                        started_ns: start,
                        deadline_ns: deadline,
                        breaches_at_start,
                        drained_ns: now,
                        replaced,
                    }),
                });
            }
            if now >= deadline {
                self.unfreeze(frozen);
                self.my_freeze.store(0, SeqCst);
                let _ = kernel::ofd_unlock(fd, LOCK_FREEZER);
                return Err(BarrierError::DrainTimeout {
                    waited: Duration::from_nanos(now - start),
                    busy,
                });
            }
            let wait = Duration::from_nanos(deadline - now).min(DRAIN_RESCAN);
            kernel::futex_wait(t.drain_word(), seen, wait);
        }
    }

    /// Slots of live processes with a nonzero word, our own included (other
    /// threads of ours may be inside); dead ones are reclaimed.
    fn busy_slots(&self, me: &ProcState, fd: RawFd) -> Vec<SlotInfo> {
        let t = &self.table;
        let mut busy = Vec::new();
        for index in 0..t.high_water() {
            let word = t.slot_word(index).load(SeqCst);
            if word == 0 {
                continue;
            }
            let info = |alive| SlotInfo {
                index,
                pid: t.slot_pid(index).load(Relaxed),
                depth: word & DEPTH_MASK,
                alive,
            };
            if Some(index) == me.slot {
                // Our own lock would look free to us: another thread of
                // this process is inside (or entering).
                busy.push(info(true));
                continue;
            }
            let offset = slot_offset(index) as u64;
            match kernel::ofd_try_lock(fd, offset) {
                Ok(true) if t.owner_alive(index) => {
                    // The lock is gone but the process lives (its host
                    // closed the descriptor): still a writer.
                    let _ = kernel::ofd_unlock(fd, offset);
                    busy.push(info(true));
                }
                Ok(true) => {
                    // Dead owner (or it just closed): reclaim.
                    let pid = t.slot_pid(index).swap(0, SeqCst);
                    if t.slot_word(index).swap(0, SeqCst) != 0 {
                        log::warn!(
                            "cyrsync barrier: reclaimed the slot of a writer that died inside: pid=<{pid}> slot=<{index}>"
                        );
                    }
                    let _ = kernel::ofd_unlock(fd, offset);
                }
                Ok(false) => busy.push(info(true)),
                Err(error) => {
                    log::error!(
                        "IOERROR: cyrsync barrier: probing a slot failed: path=<{}> slot=<{index}> error=<{error}>",
                        self.path.display()
                    );
                    busy.push(info(true));
                }
            }
        }
        // Processes without a slot: a count, and a read lock each holds
        // while inside. Read the count first, then the lock: a count with no
        // lock behind it is what dead processes left (a live one locks
        // before it counts, and unlocks after it stops counting).
        let n = t.overflow().load(SeqCst);
        if n != 0 {
            let ours = me.slot.is_none() && me.private_word.load(SeqCst) != 0;
            let locked = ours || kernel::ofd_is_locked(fd, LOCK_OVERFLOW).unwrap_or(true);
            if locked {
                busy.push(SlotInfo {
                    index: OVERFLOW_INDEX,
                    pid: 0,
                    depth: n,
                    alive: true,
                });
            } else if t.overflow().compare_exchange(n, 0, SeqCst, SeqCst).is_ok() {
                log::warn!(
                    "cyrsync barrier: reclaimed the overflow count of writers that died inside: count=<{n}>"
                );
            } else {
                busy.push(SlotInfo {
                    index: OVERFLOW_INDEX,
                    pid: 0,
                    depth: n,
                    alive: true,
                });
            }
        }
        busy
    }

    fn unfreeze(&self, frozen: u32) -> bool {
        let word = self.table.freeze_word();
        let mut cur = word.load(SeqCst);
        loop {
            if cur & !EXPIRED != frozen {
                return false;
            }
            match word.compare_exchange(cur, next_generation(cur), SeqCst, SeqCst) {
                Ok(_) => {
                    kernel::futex_wake_all(word);
                    return true;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// End a freeze and say whether it held: consistent if the deadline did
    /// not pass, no writer went in and the barrier file is still the one
    /// every writer uses. A token of another barrier is refused
    /// ([`BarrierError::ForeignToken`]), and thaws its own barrier.
    pub fn thaw(&self, mut token: FreezeToken<'_>) -> Result<Verdict, BarrierError> {
        if !std::ptr::eq(token.barrier, self) {
            return Err(BarrierError::ForeignToken);
        }
        let data = token.data.take().expect("a token is thawed once");
        Ok(self.finish(data))
    }

    fn finish(&self, data: FreezeData) -> Verdict {
        let now = kernel::monotonic_ns();
        let t = &self.table;
        let word = t.freeze_word().load(SeqCst);
        let breaches = t
            .hdr64(OFF_BREACHES)
            .load(SeqCst)
            .wrapping_sub(data.breaches_at_start);
        let expired = now > data.deadline_ns
            || (word & !EXPIRED == data.generation_word && word & EXPIRED != 0);
        let replaced = data.replaced.or_else(|| self.replaced_reason(false));
        let lost = !self.unfreeze(data.generation_word);
        self.my_freeze.store(0, SeqCst);
        if let Ok(fd) = self.state().and_then(|s| self.own_fd(s)) {
            let _ = kernel::ofd_unlock(fd, LOCK_FREEZER);
        }
        Verdict {
            expired,
            breaches,
            lost,
            replaced,
            frozen_for: Duration::from_nanos(now - data.started_ns),
            drain_time: Duration::from_nanos(data.drained_ns - data.started_ns),
        }
    }

    /// The shared state, for `cyrsync barrier status` and monitoring.
    pub fn status(&self) -> Result<Status, BarrierError> {
        let state = self.state()?;
        let fd = self.own_fd(state)?;
        status_of(
            &self.table,
            fd,
            state.slot,
            self.my_freeze.load(SeqCst) != 0,
            &self.path,
        )
    }
}

/// syncfs(2) the file system holding `path` (a file or directory), so a
/// snapshot taken under a freeze sees everything written before it.
pub fn syncfs(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    kernel::syncfs(&file)
}

thread_local! {
    /// This thread's enters minus its leaves, over all barrier handles
    /// (never below 0). Only read when the thread's process is already
    /// inside and a freeze is on: nonzero means "this thread holds, nest at
    /// once". Counting all handles together can only let a thread nest
    /// where it could have waited, and only while its process is inside
    /// (the freezer waits for it anyway): priority, not safety. A plain
    /// const-initialised cell: no lazy init, no destructor.
    static THREAD_HELD: Cell<u32> = const { Cell::new(0) };
}

#[inline]
fn thread_held() -> u32 {
    THREAD_HELD.with(Cell::get)
}

#[inline]
fn thread_held_add(delta: i32) {
    THREAD_HELD.with(|c| c.set(c.get().saturating_add_signed(delta)));
}

fn next_generation(word: u32) -> u32 {
    (word & !(FROZEN | EXPIRED)).wrapping_add(GEN_ONE)
}

impl Drop for Barrier {
    fn drop(&mut self) {
        let state = self.current();
        if state.fork_generation != kernel::fork_generation() {
            // A forked child that never used the barrier: the descriptor is
            // the parent's copy (closed by the atfork handler if registered).
            let fd = state.fd.load(SeqCst);
            if state.registry.is_none() && self.is_ours(fd) {
                // SAFETY: our inherited copy; the parent keeps its own.
                unsafe { libc::close(fd) };
            }
        } else {
            self.close_current(state);
        }
        // The chain of states is freed with `root`.
    }
}

impl Barrier {
    /// Drop-time work for a state of this fork generation.
    fn close_current(&self, state: &ProcState) {
        let frozen = self.my_freeze.load(SeqCst);
        if frozen != 0 {
            log::error!(
                "IOERROR: cyrsync barrier closed while frozen, thawing (verdict lost): path=<{}>",
                self.path.display()
            );
            self.unfreeze(frozen);
        }
        let depth = self.depth();
        if depth != 0 {
            log::error!(
                "IOERROR: cyrsync barrier closed while inside: path=<{}> depth=<{depth}>",
                self.path.display()
            );
        }
        self.release(state);
    }
}

#[cfg(test)]
mod tests;
