//! The write side: C's `sync_log_init`, `sync_log`, `sync_log_channel` and
//! `sync_log_base`.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use super::commit::GroupCell;
use super::{check_channel, format_record, log_path, Error, RecordKind, LOCK_RETRIES};

/// When a record is made durable relative to the file lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushMode {
    /// Group commit (see [`super::GroupCommit`]): after the lock is released,
    /// one writer flushes for every record written so far and the others
    /// wait for that flush instead of making their own. The default.
    #[default]
    Group,
    /// Write under the lock, release it, then `fdatasync` this writer's own
    /// record (what [`FlushMode::Group`] falls back to).
    AfterUnlock,
    /// Write, `fsync` and only then release the lock, exactly as C does.
    /// Kept to compare against in the benchmark.
    UnderLock,
}

/// What `sync_log_init` reads from imapd.conf, passed explicitly.
#[derive(Debug, Clone)]
pub struct Config {
    /// Cyrus's `configdirectory`.
    pub config_dir: PathBuf,
    /// The channels `sync_log` appends to; `None` is the default channel.
    pub channels: Vec<Option<Vec<u8>>>,
    /// Channel names of the configuration that were refused (they would
    /// escape the sync directory): records meant for them are dropped, with
    /// a rate-limited `SYNCERROR`.
    pub refused: Vec<Vec<u8>>,
    /// Channels still written after `suppress` (`None`: the default one).
    pub unsuppressable: Vec<Option<Vec<u8>>>,
    /// The `sync_log` switch: when off, `sync_log` writes to no channel.
    pub enabled: bool,
    /// `sync_rightnow_channel` is set: keep every `sync_log` line in memory.
    pub rightnow: bool,
    pub flush: FlushMode,
}

/// Split an option value as C's `strarray_split(value, " ", 0)`: on runs of
/// spaces; the first `""` means the default channel (later ones stay
/// literal, as in C).
fn split_channels(value: &[u8]) -> Vec<Option<Vec<u8>>> {
    let mut list: Vec<Option<Vec<u8>>> = value
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .map(|w| Some(w.to_vec()))
        .collect();
    if let Some(first) = list.iter().position(|c| c.as_deref() == Some(b"\"\"")) {
        list[first] = None;
    }
    list
}

/// Keep the valid channel names of `list`; log and return the others.
fn refuse_invalid(option: &str, list: &mut Vec<Option<Vec<u8>>>) -> Vec<Vec<u8>> {
    let mut refused = Vec::new();
    list.retain(|c| match c {
        Some(name) if check_channel(name).is_err() => {
            log::error!(
                "SYNCERROR: {option}: invalid channel name refused, the other channels are \
                 logged channel=<{}>",
                name.escape_ascii()
            );
            refused.push(name.clone());
            false
        }
        _ => true,
    });
    refused
}

impl Config {
    /// Build a configuration from the raw imapd.conf values, as
    /// `sync_log_init` does: `channels` is `sync_log_channels` (unset means
    /// the default channel only), `unsuppressable` is
    /// `sync_log_unsuppressable_channels`.
    ///
    /// An invalid channel name (one that would escape the sync directory) is
    /// refused alone, with a `SYNCERROR` line, and listed in `refused`; the
    /// valid channels keep working. (C validates nothing here and later
    /// writes outside the sync directory.)
    pub fn from_options(
        config_dir: impl Into<PathBuf>,
        channels: Option<&[u8]>,
        unsuppressable: Option<&[u8]>,
        enabled: bool,
        rightnow: bool,
    ) -> Result<Self, Error> {
        let mut channels = split_channels(channels.unwrap_or(b"\"\""));
        let refused = refuse_invalid("sync_log_channels", &mut channels);
        let mut unsuppressable = unsuppressable.map(split_channels).unwrap_or_default();
        refuse_invalid("sync_log_unsuppressable_channels", &mut unsuppressable);
        Ok(Config {
            config_dir: config_dir.into(),
            channels,
            refused,
            unsuppressable,
            enabled,
            rightnow,
            flush: FlushMode::default(),
        })
    }
}

/// A sync log writer: the per-process state of C's `sync_log.c`.
///
/// Thread-safe: every append opens, locks and closes the file on its own,
/// so any number of threads and processes may append at once.
#[derive(Debug)]
pub struct Writer {
    config: Config,
    paths: Vec<PathBuf>,
    /// Group commit state of each channel in `paths`.
    groups: Vec<GroupCell>,
    suppressed: AtomicBool,
    rightnow: Mutex<Vec<u8>>,
    /// When a record was last reported dropped for a refused channel
    /// (seconds since the epoch), to say it once a minute, not per record.
    refused_said: AtomicU64,
}

/// How often a record dropped for a refused channel is reported.
const REFUSED_REPORT_SECS: u64 = 60;

impl Writer {
    pub fn new(config: Config) -> Result<Self, Error> {
        let paths: Vec<PathBuf> = config
            .channels
            .iter()
            .map(|c| log_path(&config.config_dir, c.as_deref()))
            .collect::<Result<_, _>>()?;
        Ok(Writer {
            groups: paths.iter().map(|_| GroupCell::new()).collect(),
            config,
            paths,
            suppressed: AtomicBool::new(false),
            rightnow: Mutex::new(Vec::new()),
            refused_said: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `sync_log_suppress`: from now on `log_all` writes only to the
    /// unsuppressable channels.
    pub fn suppress(&self) {
        self.suppressed.store(true, Ordering::Relaxed);
    }

    fn enabled(&self, channel: Option<&[u8]>) -> bool {
        self.config.enabled
            && (!self.suppressed.load(Ordering::Relaxed)
                || self
                    .config
                    .unsuppressable
                    .iter()
                    .any(|u| u.as_deref() == channel))
    }

    /// `sync_log`: keep the line for the rightnow channel, then append it to
    /// every enabled channel. A failing channel does not stop the others;
    /// the first error is returned after all were tried.
    pub fn log_all(&self, line: &[u8]) -> Result<(), Error> {
        if self.config.rightnow {
            lock_ignoring_poison(&self.rightnow).extend_from_slice(line);
        }
        if !self.config.refused.is_empty() && self.config.enabled {
            self.report_refused(line);
        }
        let mut first_error = None;
        for ((channel, path), group) in self
            .config
            .channels
            .iter()
            .zip(&self.paths)
            .zip(&self.groups)
        {
            if self.enabled(channel.as_deref()) {
                if let Err(e) = append_with(path, line, self.config.flush, Some(group)) {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Say, at most once a minute, that records are being dropped for the
    /// refused channels (the valid ones got them).
    fn report_refused(&self, line: &[u8]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.refused_said.load(Ordering::Relaxed);
        if now < last + REFUSED_REPORT_SECS
            || self
                .refused_said
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let names: Vec<String> = self
            .config
            .refused
            .iter()
            .map(|c| c.escape_ascii().to_string())
            .collect();
        log::error!(
            "SYNCERROR: sync_log: record not logged to invalid channels (once a minute) \
             channels=<{}> record=<{}>",
            names.join(" "),
            line.strip_suffix(b"\n").unwrap_or(line).escape_ascii()
        );
    }

    /// `sync_log_channel`: append to one channel (`None`: the default one),
    /// whether or not the log is enabled or suppressed, as in C.
    pub fn log_channel(&self, channel: Option<&[u8]>, line: &[u8]) -> Result<(), Error> {
        let path = log_path(&self.config.config_dir, channel)?;
        let group = self
            .paths
            .iter()
            .position(|p| *p == path)
            .map(|i| &self.groups[i]);
        append_with(&path, line, self.config.flush, group)
    }

    /// Append a typed record to every enabled channel (`sync_log_user` ...).
    pub fn record_all(
        &self,
        kind: RecordKind,
        name1: &[u8],
        name2: Option<&[u8]>,
    ) -> Result<(), Error> {
        self.log_all(&format_record(kind, name1, name2)?)
    }

    /// Append a typed record to one channel (`sync_log_channel_user` ...).
    pub fn append(
        &self,
        channel: Option<&[u8]>,
        kind: RecordKind,
        name1: &[u8],
        name2: Option<&[u8]>,
    ) -> Result<(), Error> {
        self.log_channel(channel, &format_record(kind, name1, name2)?)
    }

    /// Run `f` on the rightnow buffer (empty when rightnow is off).
    pub fn with_rightnow<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(&lock_ignoring_poison(&self.rightnow))
    }

    /// `sync_log_reset`: drop the rightnow buffer's content, returning it.
    pub fn take_rightnow(&self) -> Vec<u8> {
        std::mem::take(&mut *lock_ignoring_poison(&self.rightnow))
    }
}

fn lock_ignoring_poison<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The buffer stays valid whatever a panicking holder did to it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Take (`F_WRLCK`) or release (`F_UNLCK`) a whole-file lock, blocking.
///
/// Open-file-description locks conflict with the classic POSIX locks C's
/// `lock_blocking` takes, so C and cyrsync exclude each other; unlike classic
/// locks they also exclude two threads of one process.
pub(crate) fn whole_file_lock(file: &File, kind: libc::c_int) -> io::Result<()> {
    // SAFETY: a zeroed flock is a valid value; we set the fields we use.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    loop {
        // SAFETY: valid fd and a pointer to a properly initialised flock.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLKW, &fl) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Opened for reading too (C opens write-only): a writer reads the log's
/// last byte to see whether someone's record was torn.
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// Open the log for appending, creating it (and its directories, 0755, as
/// `cyrus_mkdir`) if needed.
fn open_creating(path: &Path) -> Result<File, Error> {
    match open_append(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir)
                    .map_err(|e| Error::io("mkdir", dir, e))?;
            }
            open_append(path).map_err(|e| Error::io("open", path, e))
        }
        other => other.map_err(|e| Error::io("open", path, e)),
    }
}

/// Open and lock the log file that is at `path` right now: C's loop of
/// open, lock, and inode check against a reader's concurrent rename.
/// Returns the file, its size under the lock and its inode.
fn open_locked(path: &Path) -> Result<(File, u64, u64), Error> {
    for _ in 0..LOCK_RETRIES {
        let file = open_creating(path)?;
        whole_file_lock(&file, libc::F_WRLCK).map_err(|e| Error::io("lock", path, e))?;
        let opened = file.metadata().map_err(|e| Error::io("fstat", path, e))?;
        match std::fs::metadata(path) {
            Ok(now) if now.ino() == opened.ino() && now.dev() == opened.dev() => {
                return Ok((file, opened.len(), opened.ino()))
            }
            // Renamed (or renamed and not yet recreated) after our open: the
            // reader owns that inode now. Closing drops our lock.
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("stat", path, e)),
        }
    }
    Err(Error::LockRetries {
        path: path.to_path_buf(),
    })
}

/// Whether a log of `size` bytes ends in the middle of a line: someone's
/// write failed half-way (a C writer leaves it so; we truncate back, but
/// that may fail too). Unreadable counts as torn: a spare newline is only a
/// blank line to every reader.
fn ends_torn(file: &File, size: u64) -> bool {
    if size == 0 {
        return false;
    }
    let mut last = [0u8; 1];
    !matches!(file.read_at(&mut last, size - 1), Ok(1) if last[0] == b'\n')
}

/// Append `line` (one or more complete records) to the log at `path`: C's
/// `sync_log_base`. The whole line is written with one `write` under an
/// exclusive lock, and is on disk before this returns.
///
/// Never leaves part of a record in the log: if the write fails after
/// writing some of it (a full disk, an I/O error), the file is truncated
/// back to where the record started; and a record always starts on a fresh
/// line, after a newline of its own if the log ends in someone's torn
/// record. Every error names the record ([`Error::Append`]).
///
/// `FlushMode::Group` needs a [`GroupCell`] to share flushes through: here
/// it flushes its own record, as `AfterUnlock`.
pub fn append_line(path: &Path, line: &[u8], flush: FlushMode) -> Result<(), Error> {
    append_with(path, line, flush, None)
}

/// [`append_line`] with group commit through `group` (the same cell for
/// every append to this log by this process).
pub fn append_line_grouped(path: &Path, line: &[u8], group: &GroupCell) -> Result<(), Error> {
    append_with(path, line, FlushMode::Group, Some(group))
}

fn append_with(
    path: &Path,
    line: &[u8],
    flush: FlushMode,
    group: Option<&GroupCell>,
) -> Result<(), Error> {
    write_locked(path, line, flush, group).map_err(|cause| Error::Append {
        line: line.to_vec(),
        cause: Box::new(cause),
    })
}

fn write_locked(
    path: &Path,
    line: &[u8],
    flush: FlushMode,
    group: Option<&GroupCell>,
) -> Result<(), Error> {
    let (mut file, size, ino) = open_locked(path)?;
    // O_APPEND under the lock: one write, and if the kernel takes only part
    // of it the rest still lands right after, before anyone else's.
    let written = if ends_torn(&file, size) {
        let mut fresh = Vec::with_capacity(line.len() + 1);
        fresh.push(b'\n');
        fresh.extend_from_slice(line);
        file.write_all(&fresh)
    } else {
        file.write_all(line)
    };
    if let Err(e) = written {
        if let Err(t) = file.set_len(size) {
            log::error!(
                "IOERROR: sync log: could not remove a partial record, the next record starts \
                 on a new line file=<{}> offset=<{size}> error=<{t}>",
                path.display()
            );
        }
        return Err(Error::io("write", path, e));
    }
    let synced = match flush {
        FlushMode::UnderLock => {
            let r = file.sync_all();
            whole_file_lock(&file, libc::F_UNLCK).map_err(|e| Error::io("unlock", path, e))?;
            r
        }
        FlushMode::AfterUnlock | FlushMode::Group => {
            // The reader only needs the bytes to be in the file before it
            // gets the lock; durability can be shared with other writers.
            // The ticket is taken under the lock, after the write returned.
            let grouped = match (flush, group) {
                (FlushMode::Group, Some(cell)) => {
                    cell.get(path).and_then(|g| g.ticket(ino).map(|t| (g, t)))
                }
                _ => None,
            };
            whole_file_lock(&file, libc::F_UNLCK).map_err(|e| Error::io("unlock", path, e))?;
            match grouped {
                Some((g, ticket)) => g.wait(ticket, || file.sync_data()),
                None => file.sync_data(),
            }
        }
    };
    synced.map_err(|e| Error::io("fdatasync", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_option_splitting_is_strarray_split() {
        assert_eq!(split_channels(b"\"\""), vec![None]);
        assert_eq!(
            split_channels(b"  a \"\"  b \"\" "),
            vec![
                Some(b"a".to_vec()),
                None,
                Some(b"b".to_vec()),
                Some(b"\"\"".to_vec())
            ]
        );
        assert_eq!(split_channels(b""), Vec::<Option<Vec<u8>>>::new());
    }

    #[test]
    fn config_refuses_escaping_channels_alone() {
        let c =
            Config::from_options("/x", Some(b"ok ../evil \"\" a/b"), None, true, false).unwrap();
        assert_eq!(c.channels, vec![Some(b"ok".to_vec()), None]);
        assert_eq!(c.refused, vec![b"../evil".to_vec(), b"a/b".to_vec()]);
        let c = Config::from_options("/x", None, None, true, false).unwrap();
        assert_eq!(c.channels, vec![None]);
        assert!(c.refused.is_empty());
    }
}
