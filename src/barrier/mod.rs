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
//! atomics. Layout, version 1:
//!
//! ```text
//! offset  size  header field (page 0, HEADER_SIZE = 4096 bytes)
//!      0     8  magic "CYRSBAR1" (written last at creation)
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
//!   4096 + 64*i slot i:
//!      +0     4  word: bit 31 HELD, bits 0..31 depth; depth 1 without HELD
//!                 is a thread of that process in the middle of entering
//!      +4     4  owner pid (informational; liveness is the lock below)
//! ```
//!
//! Byte-range locks (open-file-description locks, F_OFD_SETLK, on the file;
//! they do not touch the data): byte 0 serialises creation; byte 1 is held by
//! the live freezer for the length of its freeze; the first byte of slot i is
//! held by the process owning slot i for as long as it has the barrier open.
//! The kernel drops them when the process dies, so liveness needs no pid and
//! has no pid-reuse race. They are taken through a descriptor of their own,
//! never through the description the mapping was made from: a mapping pins
//! its description (and so its OFD locks) for as long as anyone, e.g. a
//! forked child, still has it mapped.
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
//! every 50 ms) until every slot word is 0. A nonzero slot whose lock byte it
//! can take belongs to a dead process: the freezer zeroes it (reclaim).
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
//! programs inherit nothing.

pub(crate) mod kernel;

use std::cell::Cell;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering::*};
use std::time::Duration;

use kernel::Mapping;

/// Name of the barrier file inside the lock directory.
pub const FILE_NAME: &str = "cyrsync-barrier";
/// The default freeze bound.
pub const DEFAULT_MAX_FREEZE: Duration = Duration::from_secs(5);

const MAGIC: u64 = u64::from_ne_bytes(*b"CYRSBAR1");
const VERSION: u32 = 1;
const HEADER_SIZE: usize = 4096;
const SLOT_SIZE: usize = 64;
/// Slots in a newly created file: the number of processes that can have the
/// barrier open at once (1 MiB file; the geometry of an existing file is
/// kept, so changing this needs the file removed while Cyrus is down).
pub(crate) const DEFAULT_SLOTS: u32 = 16384;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_SLOT_COUNT: usize = 12;
const OFF_SLOT_SIZE: usize = 16;
const OFF_HEADER_SIZE: usize = 20;
const OFF_HIGH_WATER: usize = 24;
const OFF_FREEZE_WORD: usize = 64;
const OFF_DRAIN_WORD: usize = 128;
const OFF_FREEZER_PID: usize = 192;
const OFF_FREEZE_START: usize = 200;
const OFF_DEADLINE: usize = 208;
const OFF_BREACHES: usize = 216;
const OFF_FREEZES: usize = 224;

const LOCK_INIT: u64 = 0;
const LOCK_FREEZER: u64 = 1;

const FROZEN: u32 = 1;
const EXPIRED: u32 = 2;
const GEN_ONE: u32 = 4;

/// `my_freeze` while a freeze through the handle is being set up (never a
/// freeze word: those have bits 0..2 = FROZEN).
const CLAIMING: u32 = 2;

const HELD: u32 = 1 << 31;
const DEPTH_MASK: u32 = HELD - 1;

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
    /// The file exists but is not a barrier file this version understands.
    BadFile { path: PathBuf, why: String },
    /// Every slot is owned by a live process.
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
    /// `thaw` with a token from another barrier.
    ForeignToken,
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
            BarrierError::BadFile { path, why } => {
                write!(
                    f,
                    "not a usable barrier file: path=<{}> why=<{why}>",
                    path.display()
                )
            }
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
            BarrierError::ForeignToken => write!(f, "thaw with a freeze from another barrier"),
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

/// One slot as seen by [`Barrier::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub index: u32,
    /// Last owner's pid (0 if reclaimed).
    pub pid: u32,
    /// Depth (0 when not inside); a thread mid-enter counts 1.
    pub depth: u32,
    /// Whether the owning process is alive (its slot lock is held).
    pub alive: bool,
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
    /// Slots owned by a live process, or holding a nonzero depth.
    pub slots: Vec<SlotInfo>,
}

/// Proof of a freeze, consumed by [`Barrier::thaw`].
#[derive(Debug)]
#[must_use = "a freeze must be thawed, or writers wait until its deadline"]
pub struct FreezeToken {
    barrier_id: usize,
    generation_word: u32,
    started_ns: u64,
    deadline_ns: u64,
    breaches_at_start: u64,
    drained_ns: u64,
}

impl FreezeToken {
    /// How long draining the writers took.
    pub fn drain_time(&self) -> Duration {
        Duration::from_nanos(self.drained_ns - self.started_ns)
    }
    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        Duration::from_nanos(self.deadline_ns.saturating_sub(kernel::monotonic_ns()))
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
    /// From the freeze start to the thaw.
    pub frozen_for: Duration,
    /// From the freeze start to "all writers out".
    pub drain_time: Duration,
}

impl Verdict {
    /// No writer went in and the bound held: the snapshot is consistent.
    pub fn consistent(&self) -> bool {
        !self.expired && self.breaches == 0 && !self.lost
    }

    /// Why the freeze is inconsistent, in a few words (None if consistent).
    pub fn reason(&self) -> Option<&'static str> {
        if self.lost {
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

/// Per-process state: the descriptor holding this process's slot lock.
/// Replaced (never mutated) after a fork.
struct ProcState {
    fork_generation: u64,
    fd: RawFd,
    slot: u32,
    registry: Option<usize>,
    /// The state of an earlier fork generation this one replaced: kept
    /// (other threads may still read it) and freed with the barrier.
    replaced: *mut ProcState,
}

/// A handle on an instance's barrier. `Send + Sync`: share it between
/// threads; the depth is per process (see the module docs).
pub struct Barrier {
    map: Mapping,
    path: PathBuf,
    max_freeze: Duration,
    slot_count: u32,
    /// Current `ProcState`; states of earlier fork generations are leaked
    /// (never freed while the barrier lives), so references stay valid.
    state: AtomicPtr<ProcState>,
    /// The freeze word of the freeze this handle holds, 0 if none (the OFD
    /// freezer lock cannot conflict with itself, so a second freeze through
    /// the same handle is caught here).
    my_freeze: AtomicU32,
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

fn open_file(path: &Path) -> Result<File, BarrierError> {
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o660)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
    };
    match open() {
        // A missing lock directory is created, as Cyrus's cyrus_mkdir does
        // for its lock files.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir)
                    .map_err(io_err("mkdir", dir))?;
            }
            open().map_err(io_err("open", path))
        }
        other => other.map_err(io_err("open", path)),
    }
    .inspect(|file| give_to_lock_dir_owner(file, path))
}

/// A barrier file created by root (`cyrsync withlock` run before any Cyrus
/// process opened it) would be `root:root` and unusable by the `cyrus` user
/// every daemon runs as: give it to the owner of the lock directory, as if
/// that user had created it.
fn give_to_lock_dir_owner(file: &File, path: &Path) {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let (Ok(meta), Some(Ok(dir))) = (file.metadata(), path.parent().map(std::fs::metadata)) else {
        return;
    };
    if meta.uid() == 0 && dir.uid() != 0 {
        if let Err(e) = std::os::unix::fs::fchown(file, Some(dir.uid()), Some(dir.gid())) {
            log::error!(
                "IOERROR: barrier: cannot give file=<{}> to the lock directory's owner uid=<{}> error=<{e}>",
                path.display(),
                dir.uid()
            );
        }
    }
}

impl Barrier {
    /// Open (creating it, and `lock_dir`, if needed) the barrier file in
    /// `lock_dir` and take a
    /// slot for this process. `max_freeze` is this process's bound: it never
    /// waits longer than that for a freeze, whatever the freezer asked.
    pub fn open(lock_dir: &Path, max_freeze: Duration) -> Result<Barrier, BarrierError> {
        let path = lock_dir.join(FILE_NAME);
        let file = open_file(&path)?;
        let fd = file.as_raw_fd();
        kernel::ofd_lock_wait(fd, LOCK_INIT).map_err(io_err("lock (init)", &path))?;
        let init = Self::init_file(&file, &path);
        let _ = kernel::ofd_unlock(fd, LOCK_INIT);
        let (slot_count, len) = init?;
        // The mapping keeps its open file description alive for as long as
        // any process (a forked child, too) has it mapped, and OFD locks live
        // as long as their description: so the mapping's description must
        // never hold a lock (the init lock is released above), and the slot
        // lock is taken through a second, separate open.
        let map = Mapping::new(&file, len).map_err(io_err("mmap", &path))?;
        drop(file);
        let file = open_file(&path)?;
        let barrier = Barrier {
            map,
            path,
            max_freeze,
            slot_count,
            state: AtomicPtr::new(std::ptr::null_mut()),
            my_freeze: AtomicU32::new(0),
        };
        let state = barrier.take_slot(file)?;
        barrier.state.store(Box::into_raw(Box::new(state)), Release);
        Ok(barrier)
    }

    /// Create or validate the file; returns (slot count, mapping length).
    /// Called with the init lock held.
    fn init_file(file: &File, path: &Path) -> Result<(u32, usize), BarrierError> {
        use std::os::unix::fs::FileExt;
        let size = file.metadata().map_err(io_err("fstat", path))?.len();
        let mut head = [0u8; 24];
        if size >= HEADER_SIZE as u64 {
            file.read_exact_at(&mut head, 0)
                .map_err(io_err("read", path))?;
        }
        let field = |o: usize| u32::from_ne_bytes(head[o..o + 4].try_into().unwrap());
        let magic = u64::from_ne_bytes(head[0..8].try_into().unwrap());
        if magic == MAGIC {
            let bad = |why: String| BarrierError::BadFile {
                path: path.to_path_buf(),
                why,
            };
            if field(OFF_VERSION) != VERSION {
                return Err(bad(format!(
                    "version {} (want {VERSION})",
                    field(OFF_VERSION)
                )));
            }
            let slots = field(OFF_SLOT_COUNT);
            if field(OFF_SLOT_SIZE) as usize != SLOT_SIZE
                || field(OFF_HEADER_SIZE) as usize != HEADER_SIZE
                || slots == 0
                || slots > 1 << 20
            {
                return Err(bad("bad geometry".into()));
            }
            let len = HEADER_SIZE + slots as usize * SLOT_SIZE;
            if size < len as u64 {
                return Err(bad(format!("file is {size} bytes, want {len}")));
            }
            return Ok((slots, len));
        }
        // New (or a creation that died half-way: magic is written last).
        let slots = DEFAULT_SLOTS;
        let len = HEADER_SIZE + slots as usize * SLOT_SIZE;
        file.set_len(0).map_err(io_err("ftruncate", path))?;
        file.set_len(len as u64)
            .map_err(io_err("ftruncate", path))?;
        let mut hdr = [0u8; 24];
        hdr[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&VERSION.to_ne_bytes());
        hdr[OFF_SLOT_COUNT..OFF_SLOT_COUNT + 4].copy_from_slice(&slots.to_ne_bytes());
        hdr[OFF_SLOT_SIZE..OFF_SLOT_SIZE + 4].copy_from_slice(&(SLOT_SIZE as u32).to_ne_bytes());
        hdr[OFF_HEADER_SIZE..OFF_HEADER_SIZE + 4]
            .copy_from_slice(&(HEADER_SIZE as u32).to_ne_bytes());
        file.write_all_at(&hdr, 0).map_err(io_err("write", path))?;
        file.write_all_at(&MAGIC.to_ne_bytes(), OFF_MAGIC as u64)
            .map_err(io_err("write", path))?;
        Ok((slots, len))
    }

    /// The barrier file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This process's bound on waiting for a freeze.
    pub fn max_freeze(&self) -> Duration {
        self.max_freeze
    }

    fn slot_offset(index: u32) -> usize {
        HEADER_SIZE + index as usize * SLOT_SIZE
    }
    fn slot_word(&self, index: u32) -> &AtomicU32 {
        self.map.u32_at(Self::slot_offset(index))
    }
    fn slot_pid(&self, index: u32) -> &AtomicU32 {
        self.map.u32_at(Self::slot_offset(index) + 4)
    }
    fn freeze_word(&self) -> &AtomicU32 {
        self.map.u32_at(OFF_FREEZE_WORD)
    }
    fn drain_word(&self) -> &AtomicU32 {
        self.map.u32_at(OFF_DRAIN_WORD)
    }
    fn high_water(&self) -> u32 {
        self.map
            .u32_at(OFF_HIGH_WATER)
            .load(SeqCst)
            .min(self.slot_count)
    }
    fn hdr64(&self, offset: usize) -> &AtomicU64 {
        self.map.u64_at(offset)
    }

    /// Lock a free slot with `file`'s description and make it ours.
    fn take_slot(&self, file: File) -> Result<ProcState, BarrierError> {
        let fork_generation = kernel::fork_generation();
        let fd = file.as_raw_fd();
        for index in 0..self.slot_count {
            let locked = kernel::ofd_try_lock(fd, Self::slot_offset(index) as u64)
                .map_err(io_err("lock (slot)", &self.path))?;
            if locked {
                // Whatever a dead owner left is void.
                self.slot_word(index).store(0, SeqCst);
                self.slot_pid(index).store(kernel::getpid(), SeqCst);
                self.map.u32_at(OFF_HIGH_WATER).fetch_max(index + 1, SeqCst);
                let fd = file.into_raw_fd();
                let registry = kernel::register_fd(fd);
                if registry.is_none() {
                    log::warn!(
                        "cyrsync barrier: too many barriers open in one process; forked children keep \
                         this slot alive until they exit: path=<{}>",
                        self.path.display()
                    );
                }
                return Ok(ProcState {
                    fork_generation,
                    fd,
                    slot: index,
                    registry,
                    replaced: std::ptr::null_mut(),
                });
            }
        }
        Err(BarrierError::NoSlot {
            slots: self.slot_count,
        })
    }

    /// This process's state, taking a fresh slot first if we are a forked
    /// child that has not used the barrier yet.
    fn state(&self) -> Result<&ProcState, BarrierError> {
        let ptr = self.state.load(Acquire);
        // SAFETY: published states are never freed while `self` lives.
        let current = unsafe { &*ptr };
        if current.fork_generation == kernel::fork_generation() {
            return Ok(current);
        }
        self.reslot(ptr)
    }

    #[cold]
    fn reslot(&self, old: *mut ProcState) -> Result<&ProcState, BarrierError> {
        // The parent's descriptor was closed by the atfork handler if it was
        // registered; if not, the thread that installs the new state closes
        // our copy (the parent keeps its own).
        // SAFETY: `old` is a live published state.
        let old_state = unsafe { &*old };
        let file = open_file(&self.path)?;
        let new = Box::into_raw(Box::new(ProcState {
            replaced: old,
            ..self.take_slot(file)?
        }));
        match self.state.compare_exchange(old, new, AcqRel, Acquire) {
            Ok(_) => {
                if old_state.registry.is_none() {
                    // SAFETY: the inherited copy of the parent's descriptor;
                    // nothing in this process uses it any more.
                    unsafe { libc::close(old_state.fd) };
                }
                // `old` stays allocated (other threads may still read it),
                // chained from `new`, and is freed with the barrier.
                // SAFETY: just published, never freed while `self` lives.
                Ok(unsafe { &*new })
            }
            Err(winner) => {
                // SAFETY: `new` is ours alone; release its slot.
                let mine = unsafe { Box::from_raw(new) };
                self.release(&mine);
                // SAFETY: as above.
                Ok(unsafe { &*winner })
            }
        }
    }

    fn release(&self, state: &ProcState) {
        self.slot_word(state.slot).store(0, SeqCst);
        self.slot_pid(state.slot).store(0, SeqCst);
        if self.freeze_word().load(SeqCst) & FROZEN != 0 {
            self.bump_drain();
        }
        if let Some(index) = state.registry {
            kernel::unregister_fd(index, state.fd);
        }
        // SAFETY: the descriptor belongs to this state; closing it drops the
        // slot lock.
        drop(unsafe { File::from_raw_fd(state.fd) });
    }

    fn bump_drain(&self) {
        self.drain_word().fetch_add(1, SeqCst);
        kernel::futex_wake_all(self.drain_word());
    }

    /// Enter the barrier (shared). Nestable; the depth is per process.
    ///
    /// Fast path (no freeze): a few atomic operations and no system call.
    /// During a freeze, waits on a futex until the thaw, or until the bound:
    /// then goes in anyway and the freeze is recorded as breached.
    ///
    /// A thread that already holds the barrier (its own enters exceed its
    /// own leaves) always nests at once: it must not wait for a freeze that
    /// waits for it. A thread that holds nothing waits during a freeze even
    /// if other threads of its process are inside, so the freezer keeps
    /// priority over a multi-threaded writer.
    pub fn enter(&self) -> Result<Entered, BarrierError> {
        let state = self.state()?;
        let slot = self.slot_word(state.slot);
        let mut wait_start: Option<u64> = None;
        let mut gave_up_on: Option<u32> = None;
        loop {
            let cur = slot.load(Acquire);
            if cur & HELD != 0 {
                if cur & DEPTH_MASK == DEPTH_MASK {
                    return Err(BarrierError::TooDeep);
                }
                if thread_held() == 0 {
                    let freeze = self.freeze_word().load(SeqCst);
                    if freeze & (FROZEN | EXPIRED) == FROZEN && gave_up_on != Some(freeze) {
                        // Not a breach if we go in now: our process is
                        // inside, so the freezer has not drained yet.
                        if self.wait_frozen(freeze, &mut wait_start) {
                            gave_up_on = Some(freeze);
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
                // Another thread of this process is entering; it settles in a
                // few instructions (or backs off to 0 and waits).
                std::thread::yield_now();
                continue;
            }
            if slot.compare_exchange(0, 1, SeqCst, Relaxed).is_err() {
                continue;
            }
            // Dekker: our SeqCst increment above, then the freeze flag.
            let freeze = self.freeze_word().load(SeqCst);
            if freeze & FROZEN == 0 {
                // Release is enough: the Dekker pair is the SeqCst CAS and
                // load above; the freezer treats any nonzero word as busy,
                // tentative (1) or held (HELD | 1) alike.
                slot.store(HELD | 1, Release);
                thread_held_add(1);
                return Ok(Entered::Entered);
            }
            if freeze & EXPIRED != 0 || gave_up_on == Some(freeze & !EXPIRED) {
                self.hdr64(OFF_BREACHES).fetch_add(1, SeqCst);
                slot.store(HELD | 1, Release);
                thread_held_add(1);
                return Ok(Entered::Breached);
            }
            // Frozen: step back out, tell the freezer, wait.
            slot.store(0, SeqCst);
            self.bump_drain();
            if self.wait_frozen(freeze, &mut wait_start) {
                gave_up_on = Some(freeze & !EXPIRED);
            }
        }
    }

    /// Sleep while the freeze word is `freeze`, at most until this writer's
    /// bound. Returns true when the bound ran out (the freeze is then marked
    /// expired and the caller goes in).
    fn wait_frozen(&self, freeze: u32, wait_start: &mut Option<u64>) -> bool {
        let now = kernel::monotonic_ns();
        let start = *wait_start.get_or_insert(now);
        let own = nanos(self.max_freeze);
        let deadline = self
            .hdr64(OFF_DEADLINE)
            .load(SeqCst)
            .min(
                self.hdr64(OFF_FREEZE_START)
                    .load(SeqCst)
                    .saturating_add(own),
            )
            .min(start.saturating_add(own));
        if now >= deadline {
            self.expire(freeze, start, now);
            return true;
        }
        kernel::futex_wait(
            self.freeze_word(),
            freeze,
            Duration::from_nanos(deadline - now),
        );
        false
    }

    /// A writer's bound ran out during freeze `freeze`: mark it expired so
    /// nobody else waits, and thaw on behalf of a dead freezer.
    #[cold]
    fn expire(&self, freeze: u32, wait_start: u64, now: u64) {
        let word = self.freeze_word();
        let pid = self.map.u32_at(OFF_FREEZER_PID).load(SeqCst);
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
        if let Ok(state) = self.state() {
            if let Ok(false) = kernel::ofd_is_locked(state.fd, LOCK_FREEZER) {
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
    }

    /// Leave the barrier once. [`BarrierError::NotHeld`] if this process is
    /// not inside.
    pub fn leave(&self) -> Result<(), BarrierError> {
        let state = self.state()?;
        let slot = self.slot_word(state.slot);
        let mut cur = slot.load(Acquire);
        loop {
            if cur & HELD == 0 || cur & DEPTH_MASK == 0 {
                return Err(BarrierError::NotHeld);
            }
            let new = if cur & DEPTH_MASK == 1 { 0 } else { cur - 1 };
            match slot.compare_exchange_weak(cur, new, SeqCst, Acquire) {
                Ok(_) => {
                    // Never below 0: a thread may leave what another
                    // entered (the other's count then stays high, which only
                    // lets it nest while its process is inside: safe).
                    thread_held_add(-1);
                    // Dekker again: our SeqCst store, then the freeze flag;
                    // the freezer sets the flag, then reads the drain word.
                    if new == 0 && self.freeze_word().load(SeqCst) & FROZEN != 0 {
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
        let ptr = self.state.load(Acquire);
        // SAFETY: as in `state`.
        let state = unsafe { &*ptr };
        if state.fork_generation != kernel::fork_generation() {
            return 0;
        }
        let word = self.slot_word(state.slot).load(Acquire);
        if word & HELD != 0 {
            word & DEPTH_MASK
        } else {
            0
        }
    }

    /// Freeze: stop new writers, wait for those inside to leave (at most
    /// `max`), and return the token to thaw with. The freeze ends by itself
    /// `max` after it started (writers go in, the verdict says so); each
    /// writer also applies its own bound.
    pub fn freeze(&self, max: Duration) -> Result<FreezeToken, BarrierError> {
        let state = self.state()?;
        let own = self.slot_word(state.slot).load(SeqCst);
        if own != 0 {
            return Err(BarrierError::Held {
                depth: own & DEPTH_MASK,
            });
        }
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
        let got = match kernel::ofd_try_lock(state.fd, LOCK_FREEZER) {
            Ok(got) => got,
            Err(e) => {
                self.my_freeze.store(0, SeqCst);
                return Err(io_err("lock (freezer)", &self.path)(e));
            }
        };
        if !got {
            self.my_freeze.store(0, SeqCst);
            return Err(BarrierError::AlreadyFrozen {
                pid: self.map.u32_at(OFF_FREEZER_PID).load(SeqCst),
            });
        }
        let word = self.freeze_word();
        let old = word.load(SeqCst);
        if old & FROZEN != 0 {
            log::warn!(
                "cyrsync barrier: taking over the freeze of a dead freezer: freezer_pid=<{}>",
                self.map.u32_at(OFF_FREEZER_PID).load(SeqCst)
            );
        }
        let start = kernel::monotonic_ns();
        let deadline = start.saturating_add(nanos(max));
        self.map
            .u32_at(OFF_FREEZER_PID)
            .store(kernel::getpid(), SeqCst);
        self.hdr64(OFF_FREEZE_START).store(start, SeqCst);
        self.hdr64(OFF_DEADLINE).store(deadline, SeqCst);
        let breaches_at_start = self.hdr64(OFF_BREACHES).load(SeqCst);
        let frozen = next_generation(old) | FROZEN;
        self.my_freeze.store(frozen, SeqCst);
        word.store(frozen, SeqCst);
        // Writers waiting on a dead freezer's word see the new deadline.
        kernel::futex_wake_all(word);

        loop {
            let seen = self.drain_word().load(SeqCst);
            let busy = self.busy_slots(state);
            let now = kernel::monotonic_ns();
            if busy.is_empty() {
                self.hdr64(OFF_FREEZES).fetch_add(1, SeqCst);
                return Ok(FreezeToken {
                    barrier_id: self as *const Barrier as usize,
                    generation_word: frozen,
                    started_ns: start,
                    deadline_ns: deadline,
                    breaches_at_start,
                    drained_ns: now,
                });
            }
            if now >= deadline {
                self.unfreeze(frozen);
                self.my_freeze.store(0, SeqCst);
                let _ = kernel::ofd_unlock(state.fd, LOCK_FREEZER);
                return Err(BarrierError::DrainTimeout {
                    waited: Duration::from_nanos(now - start),
                    busy,
                });
            }
            let wait = Duration::from_nanos(deadline - now).min(DRAIN_RESCAN);
            kernel::futex_wait(self.drain_word(), seen, wait);
        }
    }

    /// Slots of live processes with a nonzero word; dead ones are reclaimed.
    fn busy_slots(&self, me: &ProcState) -> Vec<SlotInfo> {
        let mut busy = Vec::new();
        for index in 0..self.high_water() {
            let word = self.slot_word(index).load(SeqCst);
            if word == 0 || index == me.slot {
                continue;
            }
            let offset = Self::slot_offset(index) as u64;
            match kernel::ofd_try_lock(me.fd, offset) {
                Ok(true) => {
                    // Dead owner (or it just closed): reclaim.
                    let pid = self.slot_pid(index).swap(0, SeqCst);
                    if self.slot_word(index).swap(0, SeqCst) != 0 {
                        log::warn!(
                            "cyrsync barrier: reclaimed the slot of a writer that died inside: pid=<{pid}> slot=<{index}>"
                        );
                    }
                    let _ = kernel::ofd_unlock(me.fd, offset);
                }
                Ok(false) => busy.push(SlotInfo {
                    index,
                    pid: self.slot_pid(index).load(Relaxed),
                    depth: word & DEPTH_MASK,
                    alive: true,
                }),
                Err(error) => {
                    log::error!(
                        "IOERROR: cyrsync barrier: probing a slot failed: path=<{}> slot=<{index}> error=<{error}>",
                        self.path.display()
                    );
                    busy.push(SlotInfo {
                        index,
                        pid: self.slot_pid(index).load(Relaxed),
                        depth: word,
                        alive: true,
                    });
                }
            }
        }
        busy
    }

    fn unfreeze(&self, frozen: u32) -> bool {
        let word = self.freeze_word();
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
    /// not pass and no writer went in.
    pub fn thaw(&self, token: FreezeToken) -> Result<Verdict, BarrierError> {
        if token.barrier_id != self as *const Barrier as usize {
            return Err(BarrierError::ForeignToken);
        }
        let now = kernel::monotonic_ns();
        let word = self.freeze_word().load(SeqCst);
        let breaches = self
            .hdr64(OFF_BREACHES)
            .load(SeqCst)
            .wrapping_sub(token.breaches_at_start);
        let expired = now > token.deadline_ns
            || (word & !EXPIRED == token.generation_word && word & EXPIRED != 0);
        let lost = !self.unfreeze(token.generation_word);
        self.my_freeze.store(0, SeqCst);
        if let Ok(state) = self.state() {
            let _ = kernel::ofd_unlock(state.fd, LOCK_FREEZER);
        }
        Ok(Verdict {
            expired,
            breaches,
            lost,
            frozen_for: Duration::from_nanos(now - token.started_ns),
            drain_time: token.drain_time(),
        })
    }

    /// The shared state, for `cyrsync barrier status` and monitoring.
    pub fn status(&self) -> Result<Status, BarrierError> {
        let state = self.state()?;
        let word = self.freeze_word().load(SeqCst);
        let frozen = word & FROZEN != 0;
        let now = kernel::monotonic_ns();
        let start = self.hdr64(OFF_FREEZE_START).load(SeqCst);
        let deadline = self.hdr64(OFF_DEADLINE).load(SeqCst);
        // Our own description's locks never conflict with us: ask ourselves.
        let freezer_alive = self.my_freeze.load(SeqCst) != 0
            || kernel::ofd_is_locked(state.fd, LOCK_FREEZER)
                .map_err(io_err("lock probe", &self.path))?;
        let mut slots = Vec::new();
        for index in 0..self.high_water() {
            let w = self.slot_word(index).load(SeqCst);
            let alive = index == state.slot
                || kernel::ofd_is_locked(state.fd, Self::slot_offset(index) as u64)
                    .map_err(io_err("lock probe", &self.path))?;
            if alive || w != 0 {
                slots.push(SlotInfo {
                    index,
                    pid: self.slot_pid(index).load(SeqCst),
                    depth: w & DEPTH_MASK,
                    alive,
                });
            }
        }
        Ok(Status {
            frozen,
            expired: frozen && word & EXPIRED != 0,
            generation: word >> 2,
            freezer_pid: self.map.u32_at(OFF_FREEZER_PID).load(SeqCst),
            freezer_alive,
            frozen_for: frozen.then(|| Duration::from_nanos(now.saturating_sub(start))),
            remaining: frozen.then(|| Duration::from_nanos(deadline.saturating_sub(now))),
            breaches: self.hdr64(OFF_BREACHES).load(SeqCst),
            freezes: self.hdr64(OFF_FREEZES).load(SeqCst),
            slot_count: self.slot_count,
            slots,
        })
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
        let ptr = *self.state.get_mut();
        // SAFETY: the current state; no other thread can use `self` now.
        let state = unsafe { &*ptr };
        if state.fork_generation != kernel::fork_generation() {
            // A forked child that never used the barrier: the descriptor is
            // the parent's copy (closed by the atfork handler if registered).
            if state.registry.is_none() {
                // SAFETY: our inherited copy; the parent keeps its own.
                unsafe { libc::close(state.fd) };
            }
        } else {
            self.close_current(state);
        }
        // Free the current state and those it replaced.
        let mut next = ptr;
        while !next.is_null() {
            // SAFETY: each came from Box::into_raw, is reachable only
            // through this chain, and is freed once.
            let state = unsafe { Box::from_raw(next) };
            next = state.replaced;
        }
    }
}

impl Barrier {
    /// Drop-time work for a state of this fork generation.
    fn close_current(&mut self, state: &ProcState) {
        let frozen = *self.my_freeze.get_mut();
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
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cyrsync-barrier-unit-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn nesting_and_depth() {
        let dir = tmpdir("nest");
        let b = Barrier::open(&dir, DEFAULT_MAX_FREEZE).unwrap();
        assert_eq!(b.depth(), 0);
        assert!(matches!(b.leave(), Err(BarrierError::NotHeld)));
        assert_eq!(b.enter().unwrap(), Entered::Entered);
        assert_eq!(b.enter().unwrap(), Entered::Nested);
        assert_eq!(b.depth(), 2);
        b.leave().unwrap();
        b.leave().unwrap();
        assert_eq!(b.depth(), 0);
        assert!(matches!(b.leave(), Err(BarrierError::NotHeld)));
    }

    #[test]
    fn two_handles_take_two_slots_and_freeze_waits() {
        let dir = tmpdir("two");
        let a = Barrier::open(&dir, DEFAULT_MAX_FREEZE).unwrap();
        let f = Barrier::open(&dir, DEFAULT_MAX_FREEZE).unwrap();
        a.enter().unwrap();
        match f.freeze(Duration::from_millis(100)) {
            Err(BarrierError::DrainTimeout { busy, .. }) => assert_eq!(busy.len(), 1),
            other => panic!("expected a drain timeout, got {other:?}"),
        }
        a.leave().unwrap();
        let token = f.freeze(Duration::from_secs(5)).unwrap();
        assert!(matches!(
            f.freeze(Duration::from_secs(1)),
            Err(BarrierError::AlreadyFrozen { .. })
        ));
        let st = f.status().unwrap();
        assert!(st.frozen && st.freezer_alive);
        let v = f.thaw(token).unwrap();
        assert!(v.consistent(), "{v:?}");
        assert!(!f.status().unwrap().frozen);
    }

    #[test]
    fn freezer_inside_is_refused() {
        let dir = tmpdir("held");
        let b = Barrier::open(&dir, DEFAULT_MAX_FREEZE).unwrap();
        b.enter().unwrap();
        assert!(matches!(
            b.freeze(Duration::from_secs(1)),
            Err(BarrierError::Held { depth: 1 })
        ));
        b.leave().unwrap();
    }

    #[test]
    fn writer_breaches_after_its_bound_and_verdict_says_so() {
        let dir = tmpdir("bound");
        let w = std::sync::Arc::new(Barrier::open(&dir, Duration::from_millis(200)).unwrap());
        let f = Barrier::open(&dir, DEFAULT_MAX_FREEZE).unwrap();
        let token = f.freeze(Duration::from_secs(10)).unwrap();
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let e = w2.enter().unwrap();
            w2.leave().unwrap();
            (e, start.elapsed())
        });
        let (e, waited) = t.join().unwrap();
        assert_eq!(e, Entered::Breached);
        assert!(
            waited >= Duration::from_millis(150) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        let v = f.thaw(token).unwrap();
        assert!(!v.consistent());
        assert_eq!(v.breaches, 1);
    }

    #[test]
    fn one_freeze_per_handle_even_when_threads_race() {
        let dir = tmpdir("race");
        let b = std::sync::Arc::new(Barrier::open(&dir, DEFAULT_MAX_FREEZE).unwrap());
        for _ in 0..50 {
            let results: Vec<_> = (0..4)
                .map(|_| {
                    let b = b.clone();
                    std::thread::spawn(move || b.freeze(Duration::from_secs(5)).ok())
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect();
            let mut won: Vec<_> = results.into_iter().flatten().collect();
            assert_eq!(won.len(), 1);
            assert!(b.thaw(won.pop().unwrap()).unwrap().consistent());
        }
    }

    #[test]
    fn a_holding_thread_nests_through_a_draining_freeze() {
        let dir = tmpdir("nestfreeze");
        let w = Barrier::open(&dir, Duration::from_secs(20)).unwrap();
        let f = std::sync::Arc::new(Barrier::open(&dir, DEFAULT_MAX_FREEZE).unwrap());
        w.enter().unwrap();
        let f2 = f.clone();
        let freezer = std::thread::spawn(move || f2.freeze(Duration::from_secs(20)));
        // Wait until the freeze is on (draining: we are inside).
        while !w.status().unwrap().frozen {
            std::thread::sleep(Duration::from_millis(1));
        }
        let start = std::time::Instant::now();
        assert_eq!(w.enter().unwrap(), Entered::Nested);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "a holder waited for the freeze"
        );
        w.leave().unwrap();
        w.leave().unwrap();
        let token = freezer.join().unwrap().unwrap();
        assert!(f.thaw(token).unwrap().consistent());
    }

    #[test]
    fn threads_share_the_process_depth() {
        let dir = tmpdir("threads");
        let b = std::sync::Arc::new(Barrier::open(&dir, DEFAULT_MAX_FREEZE).unwrap());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        b.enter().unwrap();
                        assert!(b.depth() >= 1);
                        b.leave().unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(b.depth(), 0);
    }

    #[test]
    fn root_creates_the_file_for_the_lock_directory_owner() {
        use std::os::unix::fs::MetadataExt;
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let dir =
            std::env::temp_dir().join(format!("cyrsync-barrier-owner-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // 65534 is "nobody" on Debian; any non-root id will do.
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        let barrier = Barrier::open(&dir, Duration::from_secs(1)).unwrap();
        let meta = std::fs::metadata(dir.join(FILE_NAME)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
        drop(barrier);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
