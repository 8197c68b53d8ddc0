//! The sync log: the replication log every Cyrus daemon appends to when it
//! changes something, and the reader sync_client consumes.
//!
//! Byte-compatible with Cyrus's `imap/sync_log.c` (3.6 and 3.12 alike): a log
//! written here is read identically by the C reader and vice versa, and both
//! may work concurrently on the same files, because both take the same
//! whole-file `fcntl` write lock and both re-check the inode after locking.
//!
//! Files: `<configdir>/sync/log` for the default channel and
//! `<configdir>/sync/<channel>/log` for a named one; the reader renames `log`
//! to `log-run` and works on that.
//!
//! Where cyrsync deliberately differs from the C code (documented at each
//! place): bad input is an error, never a `fatal()` exit; a formatted record
//! is never truncated at 4096 bytes; names containing a vertical tab or form
//! feed are quoted (C writes them bare and its own reader then splits them);
//! the record is made durable after the lock is released so that concurrent
//! writers share flushes; a reader created on a file descriptor works (C's
//! fails in `begin`).
//!
//! And where C loses data or dies, cyrsync does not: a write that fails
//! leaves no partial record (the writer truncates back, and starts on a
//! fresh line after anyone else's partial one); an invalid channel in the
//! configuration is refused alone, the valid ones keep logging; the reader
//! sets a bad line aside (`log-bad`) and reads on, keeps a `log-run` it did
//! not finish, never maps its input (no SIGBUS), and lets one reader at a
//! time work on a channel.

mod commit;
mod format;
mod reader;
mod writer;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use commit::{GroupCell, GroupCommit, Ticket, LEADER_STALE, WAIT_BOUND};
pub use format::{format_line, format_record, push_quoted, FmtArg, RecordKind};
pub use reader::{Begun, Entry, Item, Reader};
pub use writer::{append_line, append_line_grouped, Config, FlushMode, Writer};

/// Cyrus's `MAX_MAILBOX_BUFFER`: a quoted name (with its opening quote and
/// escapes) may not be longer than this.
pub const MAX_MAILBOX_BUFFER: usize = 1024;

/// Cyrus's `SYNC_LOG_RETRIES`: how often a writer re-opens a log that was
/// renamed between its open and its lock.
pub const LOCK_RETRIES: u32 = 64;

/// What can go wrong in the sync log.
#[derive(Debug)]
pub enum Error {
    /// A name contains CR or LF (C calls `fatal()`).
    NameHasLineBreak,
    /// A name contains a NUL byte (impossible from C strings).
    NameHasNul,
    /// A quoted name would exceed [`MAX_MAILBOX_BUFFER`] (C calls `fatal()`).
    NameTooLong { len: usize },
    /// A channel name that would escape the sync directory or is empty.
    BadChannel(Vec<u8>),
    /// A format string cyrsync cannot expand (empty, unknown argument, ...).
    BadFormat(&'static str),
    /// A system call failed.
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The log kept being renamed between open and lock.
    LockRetries { path: PathBuf },
    /// The reader was used out of order.
    BadState(&'static str),
    /// Another reader works on this channel (the directory is locked).
    Busy { path: PathBuf },
    /// `end` kept the work file for the next run instead of unlinking it.
    Kept { path: PathBuf, why: &'static str },
    /// An append failed: the record (`line`) is not in the log, or (when the
    /// flush failed) not known to be on disk.
    Append { line: Vec<u8>, cause: Box<Error> },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NameHasLineBreak => write!(f, "illegal line break in name"),
            Error::NameHasNul => write!(f, "NUL byte in name"),
            Error::NameTooLong { len } => {
                write!(f, "name too long len=<{len}> max=<{MAX_MAILBOX_BUFFER}>")
            }
            Error::BadChannel(c) => {
                write!(f, "invalid channel name channel=<{}>", c.escape_ascii())
            }
            Error::BadFormat(why) => write!(f, "invalid format: {why}"),
            Error::Io { op, path, source } => {
                write!(f, "{op} failed file=<{}> error=<{source}>", path.display())
            }
            Error::LockRetries { path } => write!(
                f,
                "log renamed under us {LOCK_RETRIES} times file=<{}>",
                path.display()
            ),
            Error::BadState(why) => write!(f, "{why}"),
            Error::Busy { path } => write!(
                f,
                "another reader is working on this channel dir=<{}>",
                path.display()
            ),
            Error::Kept { path, why } => write!(
                f,
                "work file kept for the next run: {why} file=<{}>",
                path.display()
            ),
            Error::Append { line, cause } => {
                let line = line.strip_suffix(b"\n").unwrap_or(line);
                write!(f, "{cause} record=<{}>", line.escape_ascii())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Append { cause, .. } => Some(cause),
            _ => None,
        }
    }
}

/// Check a channel name: it becomes a directory under `<configdir>/sync`.
pub fn check_channel(channel: &[u8]) -> Result<(), Error> {
    let bad = channel.is_empty()
        || channel == b"."
        || channel == b".."
        || channel.contains(&b'/')
        || channel.contains(&0);
    if bad {
        Err(Error::BadChannel(channel.to_vec()))
    } else {
        Ok(())
    }
}

/// `<configdir>/sync/log` or `<configdir>/sync/<channel>/log`, as C's
/// `sync_log_fname`.
pub fn log_path(config_dir: &Path, channel: Option<&[u8]>) -> Result<PathBuf, Error> {
    use std::os::unix::ffi::OsStrExt;
    let mut path = config_dir.join("sync");
    if let Some(channel) = channel {
        check_channel(channel)?;
        path.push(std::ffi::OsStr::from_bytes(channel));
    }
    path.push("log");
    Ok(path)
}

/// The work file a channel reader renames its log to: `<log>-run`.
pub fn work_path(log: &Path) -> PathBuf {
    sibling(log, "-run")
}

/// Where a channel reader keeps the lines it could not parse: `<log>-bad`.
pub fn bad_path(log: &Path) -> PathBuf {
    sibling(log, "-bad")
}

fn sibling(log: &Path, suffix: &str) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_c() {
        let dir = Path::new("/var/lib/imap");
        assert_eq!(
            log_path(dir, None).unwrap(),
            Path::new("/var/lib/imap/sync/log")
        );
        assert_eq!(
            log_path(dir, Some(b"replica")).unwrap(),
            Path::new("/var/lib/imap/sync/replica/log")
        );
        assert_eq!(
            work_path(&log_path(dir, None).unwrap()),
            Path::new("/var/lib/imap/sync/log-run")
        );
    }

    #[test]
    fn channels_cannot_escape() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"../x", b"a\0b"] {
            assert!(
                matches!(check_channel(bad), Err(Error::BadChannel(_))),
                "{bad:?}"
            );
        }
        for good in [&b"replica"[..], b"squatter", b"\xe9t\xe9", b"..x", b"\"\""] {
            check_channel(good).unwrap();
        }
    }
}
