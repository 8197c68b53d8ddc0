//! Per-channel state and quarantine files, beside the channel's log.
//!
//! For the default channel the directory is `<config_dir>/sync/`, for
//! channel `X` it is `<config_dir>/sync/X/` (where the sync log writer puts
//! `log` and the reader `log-run`). cyrsync adds:
//!
//! * `log-state`: a small text file rewritten (tmp + fsync + rename +
//!   directory fsync, see [`replace_file`]) after every
//!   run: per deferred item the time it was first and last deferred and how
//!   many runs deferred it; per item that made runs bail out, how many
//!   consecutive runs did; per quarantined item, when and why. One entry a
//!   line:
//!
//!   ```text
//!   deferred <first-epoch> <last-epoch> <count> <record>
//!   failed <consecutive-runs> <record>
//!   quarantined <epoch> <record>
//!   quarantine-reason <epoch> <reason> <code> <text> <record>
//!   runs <runs> <bailed> <done> <deferred> <promoted> <retried> <quarantined>
//!   last-run <epoch> <bailed> <error> <done> <deferred> <promoted> <retried> <quarantined>
//!   ```
//!
//!   where `<record>` is a sync log line (`USER foo`, `SEEN foo user.foo`).
//!   `runs` holds counters summed over every run since the file was
//!   created (what `cyrsync metrics` exports as counters); `last-run` the
//!   latest run's, whether it bailed out (1) or completed (0), and the
//!   Cyrus error code it stopped on (0 if none). A
//!   reader that does not know a line skips it, so older versions read the
//!   file.
//!
//!   `quarantine-reason` follows the `quarantined` line of the same epoch
//!   and record (kept apart so that a version without reasons still reads
//!   every quarantine): `<reason>` is a [`ReasonKind`] word (`locked`,
//!   `invalid_user`, `error`, `not_user_mailbox`), `<code>` the Cyrus error
//!   code, `<text>` its message with bytes outside `!`..`~` and `%`
//!   written `%XX` (`-` for none). A quarantine without one (a file of an
//!   older version) has the reason `failed_runs`: not known.
//! * `log-quarantine`: items set aside because run after run bailed out on
//!   them, in sync log format (one record a line, nothing else), so an admin
//!   can replay them with `sync_client -f <file>` once the cause is fixed.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::exec::{ChannelSink, Counters, Outcome, Reason, ReasonKind, RunReport};
use super::record::Record;

/// The directory of a channel's log files: `<config_dir>/sync[/<channel>]`.
pub fn channel_dir(config_dir: &Path, channel: Option<&[u8]>) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let mut dir = config_dir.join("sync");
    if let Some(c) = channel {
        dir.push(std::ffi::OsStr::from_bytes(c));
    }
    dir
}

/// File names inside the channel directory.
pub const STATE_FILE: &str = "log-state";
pub const QUARANTINE_FILE: &str = "log-quarantine";

/// How many quarantine times `log-state` remembers (the quarantine file
/// itself keeps every item).
pub const MAX_QUARANTINED_KEPT: usize = 1000;

/// Cyrus 3.12's admin touch file: `<channel dir>/skipuser-<user>` makes
/// sync_client skip the user (its sync lock fails, so its items answer
/// LOCKED) on every run.
pub const SKIPUSER_PREFIX: &str = "skipuser-";

/// Whether `<dir>/skipuser-<user>` exists (C's `sync_skipuser`).
pub fn is_skipped(dir: &Path, user: &[u8]) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let mut name = SKIPUSER_PREFIX.as_bytes().to_vec();
    name.extend_from_slice(user);
    fs::symlink_metadata(dir.join(std::ffi::OsStr::from_bytes(&name))).is_ok()
}

/// The users skipped on a channel, with the modification time of their
/// file (seconds since the epoch), sorted by user.
pub fn skipped_users(dir: &Path) -> io::Result<Vec<(Vec<u8>, u64)>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(user) = name.as_bytes().strip_prefix(SKIPUSER_PREFIX.as_bytes()) else {
            continue;
        };
        let since = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        out.push((user.to_vec(), since));
    }
    out.sort();
    Ok(out)
}

/// How often and since when an item has been deferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deferral {
    pub first: u64,
    pub last: u64,
    pub count: u64,
}

/// The contents of `log-state`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelState {
    /// Keyed by the record's sync log line; in first-deferred order when
    /// written.
    pub deferred: HashMap<Vec<u8>, Deferral>,
    pub failed: HashMap<Vec<u8>, u32>,
    /// Oldest first.
    pub quarantined: Vec<Quarantined>,
    /// Counters summed over every run this file has seen.
    pub totals: RunTotals,
    /// The latest run, if any.
    pub last_run: Option<LastRun>,
}

/// A quarantined item (`quarantined` and `quarantine-reason` lines of
/// `log-state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// When (seconds since the epoch).
    pub time: u64,
    /// The record's sync log line.
    pub record: Vec<u8>,
    /// Why ([`Reason::unknown`] for a file written without reasons).
    pub reason: Reason,
}

/// `<text>` of a `quarantine-reason` line: one field, no spaces.
fn encode_text(text: &str) -> String {
    if text.is_empty() {
        return "-".into();
    }
    let mut out = String::new();
    for &b in text.as_bytes() {
        if b.is_ascii_graphic() && b != b'%' && !(text == "-" && b == b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode_text(field: &[u8]) -> Option<String> {
    if field == b"-" {
        return Some(String::new());
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'%' {
            let hex = std::str::from_utf8(field.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Counters summed over runs (`runs` line of `log-state`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunTotals {
    pub runs: u64,
    /// Runs that stopped early (the log was kept).
    pub bailed: u64,
    pub counters: Counters,
}

/// The latest run (`last-run` line of `log-state`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LastRun {
    /// When it ended (seconds since the epoch).
    pub time: u64,
    /// It stopped early: the log was kept for the next run.
    pub bailed: bool,
    /// The Cyrus error code it stopped on (0 when it completed, or for a
    /// local I/O error).
    pub error: i32,
    pub counters: Counters,
}

fn counters_text(c: &Counters) -> String {
    format!(
        "{} {} {} {} {}",
        c.done, c.deferred, c.promoted, c.retried, c.quarantined
    )
}

// `..Counters::default()`: counters added to the executor later read as 0
// from an older file.
#[allow(clippy::needless_update)]
fn parse_counters(fields: &[&[u8]]) -> Option<Counters> {
    let [done, deferred, promoted, retried, quarantined] = fields else {
        return None;
    };
    Some(Counters {
        done: number(done)?,
        deferred: number(deferred)?,
        promoted: number(promoted)?,
        retried: number(retried)?,
        quarantined: number(quarantined)?,
        ..Counters::default()
    })
}

fn split_field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = line.iter().position(|&b| b == b' ')?;
    Some((&line[..i], &line[i + 1..]))
}

fn number(field: &[u8]) -> Option<u64> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

impl ChannelState {
    /// Read a state file; a missing file is an empty state, unreadable
    /// lines are skipped with a log message.
    pub fn load(path: &Path) -> io::Result<Self> {
        let data = match fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e),
        };
        let mut state = Self::default();
        for line in data.split(|&b| b == b'\n') {
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            if !state.parse_line(line) {
                log::warn!(
                    "cyrsync: skipping bad line in {}: {}",
                    path.display(),
                    line.escape_ascii()
                );
            }
        }
        Ok(state)
    }

    fn parse_line(&mut self, line: &[u8]) -> bool {
        let mut parse = || -> Option<()> {
            let (tag, rest) = split_field(line)?;
            match tag {
                b"deferred" => {
                    let (first, rest) = split_field(rest)?;
                    let (last, rest) = split_field(rest)?;
                    let (count, record) = split_field(rest)?;
                    Record::parse_line(record)?;
                    let d = Deferral {
                        first: number(first)?,
                        last: number(last)?,
                        count: number(count)?,
                    };
                    self.deferred.insert(record.to_vec(), d);
                }
                b"failed" => {
                    let (count, record) = split_field(rest)?;
                    Record::parse_line(record)?;
                    self.failed.insert(record.to_vec(), number(count)? as u32);
                }
                b"quarantined" => {
                    let (when, record) = split_field(rest)?;
                    Record::parse_line(record)?;
                    self.quarantined.push(Quarantined {
                        time: number(when)?,
                        record: record.to_vec(),
                        reason: Reason::unknown(),
                    });
                }
                b"quarantine-reason" => {
                    let (when, rest) = split_field(rest)?;
                    let (kind, rest) = split_field(rest)?;
                    let (code, rest) = split_field(rest)?;
                    let (text, record) = split_field(rest)?;
                    Record::parse_line(record)?;
                    let time = number(when)?;
                    let reason = Reason {
                        kind: ReasonKind::from_word(std::str::from_utf8(kind).ok()?)?,
                        code: std::str::from_utf8(code).ok()?.parse().ok()?,
                        text: decode_text(text)?,
                    };
                    // the latest quarantine of this record at that time (a
                    // reason without its quarantine line is ignored)
                    if let Some(q) = self
                        .quarantined
                        .iter_mut()
                        .rev()
                        .find(|q| q.time == time && q.record == record)
                    {
                        q.reason = reason;
                    }
                }
                b"runs" => {
                    let f: Vec<&[u8]> = rest.split(|&b| b == b' ').collect();
                    let [runs, bailed, counters @ ..] = f.as_slice() else {
                        return None;
                    };
                    self.totals = RunTotals {
                        runs: number(runs)?,
                        bailed: number(bailed)?,
                        counters: parse_counters(counters)?,
                    };
                }
                b"last-run" => {
                    let f: Vec<&[u8]> = rest.split(|&b| b == b' ').collect();
                    let [time, bailed, error, counters @ ..] = f.as_slice() else {
                        return None;
                    };
                    self.last_run = Some(LastRun {
                        time: number(time)?,
                        bailed: match *bailed {
                            b"0" => false,
                            b"1" => true,
                            _ => return None,
                        },
                        error: std::str::from_utf8(error).ok()?.parse().ok()?,
                        counters: parse_counters(counters)?,
                    });
                }
                _ => return None,
            }
            Some(())
        };
        parse().is_some()
    }

    /// Write the state file crash-safely ([`replace_file`]), mode 0640.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut out = b"# cyrsync sync_client channel state (rewritten after every run)\n".to_vec();
        let mut deferred: Vec<_> = self.deferred.iter().collect();
        deferred.sort_by(|a, b| (a.1.first, a.0).cmp(&(b.1.first, b.0)));
        for (line, d) in deferred {
            out.extend_from_slice(
                format!("deferred {} {} {} ", d.first, d.last, d.count).as_bytes(),
            );
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        let mut failed: Vec<_> = self.failed.iter().collect();
        failed.sort();
        for (line, n) in failed {
            out.extend_from_slice(format!("failed {n} ").as_bytes());
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        for q in &self.quarantined {
            out.extend_from_slice(format!("quarantined {} ", q.time).as_bytes());
            out.extend_from_slice(&q.record);
            out.push(b'\n');
            let r = &q.reason;
            if r.kind != ReasonKind::FailedRuns {
                out.extend_from_slice(
                    format!(
                        "quarantine-reason {} {} {} {} ",
                        q.time,
                        r.kind.word(),
                        r.code,
                        encode_text(&r.text)
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(&q.record);
                out.push(b'\n');
            }
        }
        if self.totals.runs > 0 {
            let t = &self.totals;
            out.extend_from_slice(
                format!(
                    "runs {} {} {}\n",
                    t.runs,
                    t.bailed,
                    counters_text(&t.counters)
                )
                .as_bytes(),
            );
        }
        if let Some(r) = &self.last_run {
            out.extend_from_slice(
                format!(
                    "last-run {} {} {} {}\n",
                    r.time,
                    u8::from(r.bailed),
                    r.error,
                    counters_text(&r.counters)
                )
                .as_bytes(),
            );
        }
        replace_file(path, &out)
    }

    /// Fold a run's outcome in. Deferrals: a run that completed replaces
    /// the set (every deferred item comes back in the next log, so what was
    /// not deferred again is resolved); a run that bailed only adds.
    /// Failures count the bailed runs per item since the last run that
    /// completed (which clears them); a run stopped by an I/O error counts
    /// for no item.
    pub fn update(&mut self, report: &RunReport, now: u64) {
        let old = if report.bailed() {
            self.deferred.clone()
        } else {
            std::mem::take(&mut self.deferred)
        };
        for rec in &report.deferred {
            let line = rec.to_line();
            let prev = old.get(&line).copied();
            let entry = self.deferred.entry(line).or_insert(Deferral {
                first: prev.map_or(now, |p| p.first),
                last: now,
                count: prev.map_or(0, |p| p.count),
            });
            entry.last = now;
            entry.count += 1;
        }
        match report.outcome {
            Outcome::Completed => self.failed.clear(),
            // a full disk or a lost connection is not the items' fault
            Outcome::IoError => {}
            Outcome::Bailed(_) => {
                // the items blamed count one more run; the others keep
                // their counts (a run that stopped early did not try them)
                for rec in &report.failed {
                    let n = self.failed.entry(rec.to_line()).or_insert(0);
                    *n = n.saturating_add(1);
                }
            }
        }
        for (rec, reason) in &report.quarantined {
            let line = rec.to_line();
            self.failed.remove(&line);
            self.deferred.remove(&line);
            self.quarantined.push(Quarantined {
                time: now,
                record: line,
                reason: reason.clone(),
            });
        }
        // the quarantine file keeps every item; the state only the latest
        let excess = self.quarantined.len().saturating_sub(MAX_QUARANTINED_KEPT);
        self.quarantined.drain(..excess);
        let error = report.outcome.reply().code();
        self.count_run(&report.counters, report.bailed(), error, now);
    }

    /// Add a run's counters to the totals and make it the last run:
    /// whether it `bailed` out, and the Cyrus error code it stopped on.
    pub fn count_run(&mut self, counters: &Counters, bailed: bool, error: i32, now: u64) {
        let t = &mut self.totals;
        t.runs += 1;
        t.bailed += u64::from(bailed);
        let (a, b) = (&mut t.counters, counters);
        a.done += b.done;
        a.deferred += b.deferred;
        a.promoted += b.promoted;
        a.retried += b.retried;
        a.quarantined += b.quarantined;
        self.last_run = Some(LastRun {
            time: now,
            bailed,
            error,
            counters: *counters,
        });
    }
}

/// Where deferred records go: the channel's sync log (through the sync
/// log writer in production, a vector in tests).
pub trait DeferLog {
    fn append(&mut self, record: &Record) -> Result<(), String>;
}

/// Replace `path` with `data` so that a crash or a full disk leaves
/// either the old file or the new one, whole: write `<path>.tmp` beside
/// it (mode 0640), fsync it, rename it over `path`, fsync the directory.
/// On an error the temporary file is removed (nothing is left behind on
/// ENOSPC); a process killed part-way may leave it, and the next call
/// overwrites it (one sync_client per channel: the name is fixed).
pub fn replace_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // the rename is durable once the directory is
    fs::File::open(dir)?.sync_all()
}

/// Add a record to a quarantine file, crash-safely: the file is rewritten
/// whole with [`replace_file`], so it is always a sequence of whole
/// records, readable by `sync_client -f`. A record already in it is not
/// added again (a run replayed after a crash quarantines it again). Errors
/// for a record no sync log can hold.
pub fn append_quarantine(path: &Path, record: &Record) -> io::Result<()> {
    let line = record
        .try_line()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let present = data
        .split_inclusive(|&b| b == b'\n')
        .any(|l| l == line.as_slice());
    if present {
        return Ok(());
    }
    if !data.is_empty() && data.last() != Some(&b'\n') {
        data.push(b'\n');
    }
    data.extend_from_slice(&line);
    replace_file(path, &data)
}

/// The [`ChannelSink`] of a channel: deferrals to its log, failure counts
/// from its state, quarantine to its quarantine file.
pub struct ChannelFiles<'a> {
    pub log: &'a mut dyn DeferLog,
    pub state: &'a ChannelState,
    pub quarantine_path: PathBuf,
    /// The channel's directory, where `skipuser-<user>` files are.
    pub dir: PathBuf,
}

impl ChannelSink for ChannelFiles<'_> {
    fn defer(&mut self, record: &Record) -> Result<(), String> {
        self.log.append(record)
    }
    /// A record the state lists as quarantined counts as having failed
    /// for ever: after a crash between the quarantine and the end of the
    /// run, the replayed log sets it aside again at once instead of
    /// bailing (the quarantine decision is not lost).
    fn prior_failures(&mut self, record: &Record) -> u32 {
        let line = record.to_line();
        if self.state.quarantined.iter().any(|q| q.record == line) {
            return u32::MAX;
        }
        self.state.failed.get(&line).copied().unwrap_or(0)
    }
    fn is_skipped(&mut self, user: &[u8]) -> bool {
        is_skipped(&self.dir, user)
    }
    fn quarantine(&mut self, record: &Record) -> Result<(), String> {
        append_quarantine(&self.quarantine_path, record)
            .map_err(|e| format!("{}: {e}", self.quarantine_path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synclog::RecordKind as Kind;

    #[test]
    fn state_round_trips_and_ages() {
        let dir = std::env::temp_dir().join(format!("cyrsync-state-{}", std::process::id()));
        let path = dir.join(STATE_FILE);
        let user = Record::new(Kind::User, b"a b", None);
        let seen = Record::new(Kind::Seen, b"foo", Some(b"user.foo"));
        let mut st = ChannelState::default();
        let run1 = RunReport {
            deferred: vec![user.clone(), seen.clone()],
            ..Default::default()
        };
        st.update(&run1, 100);
        let run2 = RunReport {
            deferred: vec![user.clone()],
            ..Default::default()
        };
        st.update(&run2, 160);
        assert_eq!(
            st.deferred.get(&user.to_line()),
            Some(&Deferral {
                first: 100,
                last: 160,
                count: 2
            })
        );
        assert!(!st.deferred.contains_key(&seen.to_line()));
        let bailed = RunReport {
            outcome: super::super::exec::Outcome::Bailed(super::super::Reply::Error(1)),
            failed: vec![seen.clone()],
            ..Default::default()
        };
        st.update(&bailed, 200);
        st.update(&bailed, 210);
        assert_eq!(st.failed.get(&seen.to_line()), Some(&2));
        assert_eq!((st.totals.runs, st.totals.bailed), (4, 2));
        assert_eq!(st.totals.counters, Counters::default());
        assert_eq!(
            st.last_run.map(|r| (r.time, r.bailed, r.error)),
            Some((210, true, 1))
        );
        // the deferral survives bailed runs
        assert!(st.deferred.contains_key(&user.to_line()));
        st.save(&path).unwrap();
        assert_eq!(ChannelState::load(&path).unwrap(), st);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn quarantine_reasons_round_trip_and_old_files_load() {
        let dir = std::env::temp_dir().join(format!("cyrsync-reason-{}", std::process::id()));
        let path = dir.join(STATE_FILE);
        let locked = Record::new(Kind::Mailbox, b"user.a b", None);
        let broken = Record::new(Kind::Unmailbox, b"shared.x", None);
        let why_locked = Reason {
            kind: ReasonKind::Locked,
            code: -1904,
            text: "Mailbox is locked".into(),
        };
        let why_broken = Reason {
            kind: ReasonKind::Error,
            code: 7,
            text: "100% \"odd\"\ntext".into(),
        };
        let mut st = ChannelState::default();
        let run = RunReport {
            quarantined: vec![
                (locked.clone(), why_locked.clone()),
                (broken.clone(), why_broken.clone()),
            ],
            ..Default::default()
        };
        st.update(&run, 50);
        st.save(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(
                "quarantined 50 MAILBOX \"user.a b\"\n\
                 quarantine-reason 50 locked -1904 Mailbox%20is%20locked MAILBOX \"user.a b\"\n"
            ),
            "{text}"
        );
        let back = ChannelState::load(&path).unwrap();
        assert_eq!(back, st);
        assert_eq!(back.quarantined[1].reason, why_broken);
        for t in ["", "-", "a-b", "%", "é"] {
            assert_eq!(decode_text(encode_text(t).as_bytes()).as_deref(), Some(t));
        }
        // a file written before reasons were kept: the quarantine loads,
        // its reason unknown; a stray reason line is ignored
        fs::write(
            &path,
            "quarantined 40 USER z\nquarantine-reason 41 locked 1 - USER z\n",
        )
        .unwrap();
        let old = ChannelState::load(&path).unwrap();
        assert_eq!(old.quarantined.len(), 1);
        assert_eq!(old.quarantined[0].reason, Reason::unknown());
        assert_eq!(old.quarantined[0].reason.kind.word(), "failed_runs");
        fs::remove_dir_all(&dir).unwrap();
    }
}
