//! The barrier file: its layout, its creation (fully allocated, then linked
//! into place whole) and its validation.
//!
//! A barrier file is only ever created complete: it is built under a
//! temporary name, its blocks allocated (`posix_fallocate`: a store to a
//! slot page can then never need a block a full disk no longer has, which
//! would be a SIGBUS), its header written, and only then linked to
//! `cyrsync-barrier` (`link(2)` fails if another process got there first).
//! So an existing file that does not validate is never "a creation that died
//! half-way": it is damaged, foreign or of another version, and other
//! processes may have it mapped. It is never truncated or rewritten in
//! place: open refuses it (with the file and the fix in the error), and
//! [`reset`] replaces it, only when nobody uses it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use super::kernel::{self, FileId};
use super::BarrierError;

pub(crate) const MAGIC: u64 = u64::from_ne_bytes(*b"CYRSBAR1");
pub(crate) const VERSION: u32 = 1;
pub(crate) const HEADER_SIZE: usize = 4096;
pub(crate) const SLOT_SIZE: usize = 64;
/// Slots in a newly created file: the number of processes that can have the
/// barrier open at once with a slot of their own (more use the overflow
/// path). The geometry of an existing file is kept.
pub(crate) const DEFAULT_SLOTS: u32 = 16384;
/// The most slots a file may have (64 MiB).
pub(crate) const MAX_SLOTS: u32 = 1 << 20;

pub(crate) const OFF_MAGIC: usize = 0;
pub(crate) const OFF_VERSION: usize = 8;
pub(crate) const OFF_SLOT_COUNT: usize = 12;
pub(crate) const OFF_SLOT_SIZE: usize = 16;
pub(crate) const OFF_HEADER_SIZE: usize = 20;
pub(crate) const OFF_HIGH_WATER: usize = 24;
pub(crate) const OFF_FREEZE_WORD: usize = 64;
pub(crate) const OFF_DRAIN_WORD: usize = 128;
pub(crate) const OFF_FREEZER_PID: usize = 192;
pub(crate) const OFF_FREEZE_START: usize = 200;
pub(crate) const OFF_DEADLINE: usize = 208;
pub(crate) const OFF_BREACHES: usize = 216;
pub(crate) const OFF_FREEZES: usize = 224;
/// Processes without a slot that are inside (the overflow path).
pub(crate) const OFF_OVERFLOW: usize = 256;
/// Freezes by verdict (cumulative), one u64 each in [`super::VerdictKind`] order,
/// on a cache line of their own: only freezers write them, after a freeze
/// (never a writer's fast path).
pub(crate) const OFF_VERDICTS: usize = 320;
/// The longest a writer waited for a freeze, in ns (cumulative maximum;
/// written by writers that waited, with `fetch_max`).
pub(crate) const OFF_WRITER_WAIT_MAX: usize = 368;

/// Within a slot: the word (HELD | depth), the owner's pid, its start time.
pub(crate) const SLOT_WORD: usize = 0;
pub(crate) const SLOT_PID: usize = 4;
pub(crate) const SLOT_START: usize = 8;

/// Byte locks (OFD, on the file, not touching its data).
pub(crate) const LOCK_FREEZER: u64 = 1;
/// Read-locked by every overflow process while it is inside.
pub(crate) const LOCK_OVERFLOW: u64 = 2;
/// Read-locked by every overflow process for as long as it has the barrier
/// open (so that, like a slot's lock, it shows in /proc/locks).
pub(crate) const LOCK_OVERFLOW_MEMBER: u64 = 3;

/// The hint every "bad file" error carries.
pub(crate) const RESET_HINT: &str =
    "stop Cyrus, then run `cyrsync barrier reset` (it refuses while any process uses the file)";

pub(crate) fn file_len(slots: u32) -> usize {
    HEADER_SIZE + slots as usize * SLOT_SIZE
}

#[inline]
pub(crate) fn slot_offset(index: u32) -> usize {
    HEADER_SIZE + index as usize * SLOT_SIZE
}

use super::io_err;

fn bad(path: &Path, why: String) -> BarrierError {
    BarrierError::BadFile {
        path: path.to_path_buf(),
        why,
    }
}

/// Check an open barrier file; returns its slot count.
pub(crate) fn validate(file: &File, path: &Path) -> Result<u32, BarrierError> {
    let size = file.metadata().map_err(io_err("fstat", path))?.len();
    if size < HEADER_SIZE as u64 {
        return Err(bad(
            path,
            format!("file is {size} bytes, shorter than a barrier header"),
        ));
    }
    let mut head = [0u8; 24];
    file.read_exact_at(&mut head, 0)
        .map_err(io_err("read", path))?;
    let field = |o: usize| u32::from_ne_bytes(head[o..o + 4].try_into().unwrap());
    if u64::from_ne_bytes(head[0..8].try_into().unwrap()) != MAGIC {
        return Err(bad(
            path,
            "no barrier magic (foreign or damaged file)".into(),
        ));
    }
    if field(OFF_VERSION) != VERSION {
        return Err(bad(
            path,
            format!(
                "version {} (this cyrsync reads {VERSION})",
                field(OFF_VERSION)
            ),
        ));
    }
    let slots = field(OFF_SLOT_COUNT);
    if field(OFF_SLOT_SIZE) as usize != SLOT_SIZE
        || field(OFF_HEADER_SIZE) as usize != HEADER_SIZE
        || slots == 0
        || slots > MAX_SLOTS
    {
        return Err(bad(path, "bad geometry".into()));
    }
    let len = file_len(slots) as u64;
    if size != len {
        return Err(bad(
            path,
            format!("file is {size} bytes, its header says {len}"),
        ));
    }
    Ok(slots)
}

/// Open an existing barrier file (no creation).
pub(crate) fn open_existing(path: &Path, write: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// Open the barrier file at `path`, creating it complete (and its
/// directory) if it does not exist. Returns the file and its slot count.
pub(crate) fn open_or_create(path: &Path, slots: u32) -> Result<(File, u32), BarrierError> {
    for _ in 0..8 {
        match open_existing(path, true) {
            Ok(file) => {
                let slots = validate(&file, path)?;
                return Ok((file, slots));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    if !dir.exists() {
                        // As Cyrus's cyrus_mkdir does for its lock files.
                        std::fs::DirBuilder::new()
                            .recursive(true)
                            .mode(0o755)
                            .create(dir)
                            .map_err(io_err("mkdir", dir))?;
                    }
                }
                // Lost a race with another creator: open theirs.
                create(path, slots, false)?;
            }
            Err(e) => return Err(io_err("open", path)(e)),
        }
    }
    Err(io_err("open", path)(io::Error::other(
        "the file keeps disappearing",
    )))
}

/// Build a complete barrier file with `slots` slots under a temporary name
/// and move it into place: `link` (fails if a file is there: returns false)
/// or, for [`reset`], `rename` over the old one.
fn create(path: &Path, slots: u32, replace: bool) -> Result<bool, BarrierError> {
    static N: AtomicU32 = AtomicU32::new(0);
    let slots = if slots == 0 { DEFAULT_SLOTS } else { slots };
    if slots > MAX_SLOTS {
        return Err(bad(
            path,
            format!("{slots} slots asked, at most {MAX_SLOTS}"),
        ));
    }
    let tmp = PathBuf::from(format!(
        "{}.new.{}.{}",
        path.display(),
        kernel::getpid(),
        N.fetch_add(1, Relaxed)
    ));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o660)
        .custom_flags(libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    let built = build(&file, &tmp, slots);
    give_to_lock_dir_owner(&file, path);
    drop(file);
    let placed = built.and_then(|()| {
        if replace {
            std::fs::rename(&tmp, path)
                .map(|()| true)
                .map_err(io_err("rename", path))
        } else {
            match std::fs::hard_link(&tmp, path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(io_err("link", path)(e)),
            }
        }
    });
    let _ = std::fs::remove_file(&tmp);
    placed
}

fn build(file: &File, tmp: &Path, slots: u32) -> Result<(), BarrierError> {
    let len = file_len(slots) as u64;
    kernel::allocate(file, len).map_err(|error| match error.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG) => BarrierError::NoSpace {
            path: tmp.to_path_buf(),
            bytes: len,
            error,
        },
        _ => io_err("fallocate", tmp)(error),
    })?;
    let mut hdr = [0u8; 24];
    hdr[OFF_MAGIC..OFF_MAGIC + 8].copy_from_slice(&MAGIC.to_ne_bytes());
    hdr[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&VERSION.to_ne_bytes());
    hdr[OFF_SLOT_COUNT..OFF_SLOT_COUNT + 4].copy_from_slice(&slots.to_ne_bytes());
    hdr[OFF_SLOT_SIZE..OFF_SLOT_SIZE + 4].copy_from_slice(&(SLOT_SIZE as u32).to_ne_bytes());
    hdr[OFF_HEADER_SIZE..OFF_HEADER_SIZE + 4].copy_from_slice(&(HEADER_SIZE as u32).to_ne_bytes());
    file.write_all_at(&hdr, 0).map_err(io_err("write", tmp))?;
    Ok(())
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

/// Inodes of files other than `ours` on which some process holds a lock
/// like a barrier process's (an OFD lock on a slot's first byte, or on the
/// overflow bytes): from /proc/locks, one small read for the whole system.
/// Every process with a barrier open holds one, so an empty answer means no
/// process uses another barrier file (here or in another instance): the
/// costly /proc/*/maps scan is only needed for the inodes listed. None if
/// /proc/locks cannot be read (then scan everything).
pub(crate) fn other_barrier_lock_inodes(locks: &File, ours: FileId) -> Option<Vec<u64>> {
    // One pread from 0 (it is a seq_file: each read from 0 is a fresh
    // listing); more only for a very long list.
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0;
    loop {
        let n = locks.read_at(&mut buf[len..], len as u64).ok()?;
        len += n;
        if n == 0 || len < buf.len() {
            break;
        }
        buf.resize(buf.len() * 2, 0);
    }
    let text = String::from_utf8_lossy(&buf[..len]);
    let mut inodes = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // "1: OFDLCK ADVISORY WRITE -1 08:01:123 4160 4160" (waiters: "->")
        if f.len() != 8 || f[1] != "OFDLCK" {
            continue;
        }
        let Some(ino) = f[5].rsplit(':').next().and_then(|i| i.parse::<u64>().ok()) else {
            continue;
        };
        let (Ok(start), Ok(end)) = (f[6].parse::<u64>(), f[7].parse::<u64>()) else {
            continue;
        };
        let barrier_like = start == end
            && ((f[3] == "WRITE"
                && start >= HEADER_SIZE as u64
                && (start - HEADER_SIZE as u64) % SLOT_SIZE as u64 == 0)
                || (f[3] == "READ" && (start == LOCK_OVERFLOW || start == LOCK_OVERFLOW_MEMBER)));
        if barrier_like && ino != ours.ino && !inodes.contains(&ino) {
            inodes.push(ino);
        }
    }
    Some(inodes)
}

/// What a /proc/*/maps scan found about some inodes.
#[derive(Debug, Default)]
pub(crate) struct MapsScan {
    /// Processes (other than this one) that map one of the inodes under our
    /// path (or `path (deleted)`, or another name in our directory): writers
    /// on a removed, replaced or renamed file.
    pub(crate) ours_old: Vec<u32>,
    /// Inodes seen mapped under another path only (another instance).
    pub(crate) foreign: Vec<u64>,
}

/// Scan /proc/*/maps for mappings of `inodes` (None: of any file other
/// than `ours`) named `path` or something else. Processes whose maps this
/// process may not read are not seen (run the freezer as root or as the
/// Cyrus user).
pub(crate) fn scan_maps(path: &Path, ours: FileId, inodes: Option<&[u64]>) -> MapsScan {
    let mut out = MapsScan::default();
    let Some(name) = path.to_str() else {
        return out;
    };
    let mut at_our_path: Vec<u64> = Vec::new();
    let mut elsewhere: Vec<u64> = Vec::new();
    for (pid, maps) in maps_naming(super::FILE_NAME.as_bytes()) {
        let maps = String::from_utf8_lossy(&maps);
        let mut old = false;
        for line in maps.lines() {
            // address perms offset dev inode pathname
            let mut f = line.splitn(6, ' ');
            let (Some(_), Some(_), Some(_), Some(_), Some(ino), Some(rest)) =
                (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            let Ok(ino) = ino.parse::<u64>() else {
                continue;
            };
            if ino == ours.ino || inodes.is_some_and(|set| !set.contains(&ino)) {
                continue;
            }
            let file = rest.trim_start();
            let file = file.strip_suffix(" (deleted)").unwrap_or(file);
            // Our path, or renamed away within our lock directory (another
            // instance has its own directory).
            if file == name || Path::new(file).parent() == path.parent() {
                old = true;
                at_our_path.push(ino);
            } else if file.ends_with(super::FILE_NAME) {
                elsewhere.push(ino);
            }
        }
        if old {
            out.ours_old.push(pid);
        }
    }
    elsewhere.retain(|i| !at_our_path.contains(i));
    elsewhere.sort_unstable();
    elsewhere.dedup();
    out.foreign = elsewhere;
    out
}

/// Processes (other than this one) that map the file `id` named `path`.
fn mappers_of(path: &Path, id: FileId) -> Vec<u32> {
    let Some(name) = path.to_str() else {
        return Vec::new();
    };
    maps_naming(name.as_bytes())
        .filter(|(_, maps)| {
            String::from_utf8_lossy(maps).lines().any(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                f.len() >= 6 && f[5] == name && f[4].parse::<u64>().ok() == Some(id.ino)
            })
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// The `/proc/<pid>/maps` of every other process this one may read whose
/// maps mention `needle` (most processes map no barrier at all: a byte
/// search skips them cheaply).
fn maps_naming(needle: &[u8]) -> impl Iterator<Item = (u32, Vec<u8>)> + '_ {
    let me = kernel::getpid();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(move |&pid| pid != me)
        .filter_map(|pid| Some((pid, std::fs::read(format!("/proc/{pid}/maps")).ok()?)))
        .filter(move |(_, maps)| maps.windows(needle.len()).any(|w| w == needle))
}

/// What [`reset`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetOutcome {
    /// There was no file; a new one was created.
    Created,
    /// The file was valid and nobody used it: left as it is.
    AlreadyValid,
    /// A damaged, foreign or other-version file was replaced.
    Replaced { why: String },
}

/// Repair the barrier file in `lock_dir` (`cyrsync barrier reset`): a file
/// that does not validate is replaced by a new one with `slots` slots (0:
/// the default), atomically (rename), and only if no process has it open as
/// a barrier (holds a lock on it) or maps it. A valid file is left alone.
pub fn reset(lock_dir: &Path, slots: u32) -> Result<ResetOutcome, BarrierError> {
    let path = lock_dir.join(super::FILE_NAME);
    let file = match open_existing(&path, false) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return match create(&path, slots, false)? {
                true => Ok(ResetOutcome::Created),
                false => Ok(ResetOutcome::AlreadyValid),
            };
        }
        Err(e) => return Err(io_err("open", &path)(e)),
    };
    let why = match validate(&file, &path) {
        Ok(_) => return Ok(ResetOutcome::AlreadyValid),
        Err(BarrierError::BadFile { why, .. }) => why,
        Err(e) => return Err(e),
    };
    let id = kernel::file_id(file.as_raw_fd()).map_err(io_err("fstat", &path))?;
    let locked = kernel::any_lock(file.as_raw_fd()).map_err(io_err("lock probe", &path))?;
    let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
    let pids = mappers_of(&canonical, id);
    if locked || !pids.is_empty() {
        return Err(BarrierError::InUse {
            path,
            pids: pids.clone(),
        });
    }
    create(&path, slots, true)?;
    log::warn!(
        "cyrsync barrier: replaced a damaged barrier file: path=<{}> why=<{why}>",
        path.display()
    );
    Ok(ResetOutcome::Replaced { why })
}

/// Typed views into a mapped barrier file (shared by the read-write
/// [`super::Barrier`] and the read-only [`super::inspect`]).
pub(crate) struct Table {
    pub(crate) map: super::kernel::Mapping,
    pub(crate) slot_count: u32,
}

impl Table {
    #[inline]
    pub(crate) fn slot_word(&self, index: u32) -> &std::sync::atomic::AtomicU32 {
        self.map.u32_at(slot_offset(index) + SLOT_WORD)
    }
    #[inline]
    pub(crate) fn slot_pid(&self, index: u32) -> &std::sync::atomic::AtomicU32 {
        self.map.u32_at(slot_offset(index) + SLOT_PID)
    }
    #[inline]
    pub(crate) fn slot_start(&self, index: u32) -> &std::sync::atomic::AtomicU64 {
        self.map.u64_at(slot_offset(index) + SLOT_START)
    }
    #[inline]
    pub(crate) fn freeze_word(&self) -> &std::sync::atomic::AtomicU32 {
        self.map.u32_at(OFF_FREEZE_WORD)
    }
    #[inline]
    pub(crate) fn drain_word(&self) -> &std::sync::atomic::AtomicU32 {
        self.map.u32_at(OFF_DRAIN_WORD)
    }
    #[inline]
    pub(crate) fn overflow(&self) -> &std::sync::atomic::AtomicU32 {
        self.map.u32_at(OFF_OVERFLOW)
    }
    #[inline]
    pub(crate) fn freezer_pid(&self) -> &std::sync::atomic::AtomicU32 {
        self.map.u32_at(OFF_FREEZER_PID)
    }
    #[inline]
    pub(crate) fn high_water_word(&self) -> &std::sync::atomic::AtomicU32 {
        self.map.u32_at(OFF_HIGH_WATER)
    }
    #[inline]
    pub(crate) fn high_water(&self) -> u32 {
        self.high_water_word()
            .load(std::sync::atomic::Ordering::SeqCst)
            .min(self.slot_count)
    }
    #[inline]
    pub(crate) fn hdr64(&self, offset: usize) -> &std::sync::atomic::AtomicU64 {
        self.map.u64_at(offset)
    }
    /// The count of freezes with verdict `v`.
    pub(crate) fn verdict_count(&self, v: super::VerdictKind) -> &std::sync::atomic::AtomicU64 {
        self.map.u64_at(OFF_VERDICTS + 8 * v as usize)
    }
    /// The longest writer wait so far, in ns.
    pub(crate) fn writer_wait_max(&self) -> &std::sync::atomic::AtomicU64 {
        self.map.u64_at(OFF_WRITER_WAIT_MAX)
    }

    /// Whether the process recorded in slot `index` (pid and start time) is
    /// still alive, whatever its slot lock says: a host that closed the
    /// descriptor holding the lock (closefrom) must not make a live writer
    /// look dead.
    pub(crate) fn owner_alive(&self, index: u32) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let pid = self.slot_pid(index).load(SeqCst);
        if pid == 0 {
            return false;
        }
        let start = self.slot_start(index).load(SeqCst);
        match kernel::start_time(pid) {
            Some(t) => start == 0 || t == start,
            None => false,
        }
    }
}
