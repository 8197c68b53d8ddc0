//! The figures of a sync log channel, read from its files, for
//! `channel show --json`, `channel check` and `metrics`; and the JSON
//! forms of `channel show` and `channel plan` (schema: docs/cyrsync-json.md).
//!
//! Everything is read, nothing is written or locked: a report can run
//! beside sync_client and every Cyrus daemon.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use cyrsync::syncclient::plan::{Plan, Skipped, Step};
use cyrsync::syncclient::state::{channel_dir, ChannelState, QUARANTINE_FILE, STATE_FILE};
use cyrsync::syncclient::ReasonKind;
use cyrsync::synclog::{Begun, Reader};

use crate::json::Json;

/// The version of the JSON documents; raised only for changes that break a
/// reader (a field removed, renamed or retyped), never for added fields.
pub const SCHEMA_VERSION: u64 = 1;

/// A log file's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogFile {
    pub bytes: u64,
    pub items: u64,
    /// When its oldest line was written, as near as the file system tells:
    /// the file's birth time where it has one (the first line was
    /// appended when the file was created), else its modification time (a
    /// lower bound on the oldest line's age).
    pub since: u64,
    pub since_birth: bool,
}

/// Everything a report says about one channel.
#[derive(Debug)]
pub struct ChannelReport {
    /// `None`: the default channel.
    pub name: Option<Vec<u8>>,
    pub dir: PathBuf,
    pub log: Option<LogFile>,
    pub log_run: Option<LogFile>,
    pub state: ChannelState,
    /// Items in `log-quarantine` (every item ever set aside and not yet
    /// cleared by the admin; the state keeps the latest 1000 with times).
    pub quarantined: u64,
    /// The items of `log-quarantine` counted by why they were quarantined
    /// (the reason of their latest quarantine in the state; `failed_runs`
    /// when the state does not know it), in [`ReasonKind::all`]'s order,
    /// reasons with no item left out.
    pub quarantine_reasons: Vec<(ReasonKind, u64)>,
    /// Lines in `log-bad` (sync log lines that did not parse).
    pub set_aside: u64,
    /// Users sync_client skips on every run (Cyrus 3.12's
    /// `skipuser-<user>` files), with the time each was skipped since.
    /// Filled when the executor knows them; empty until then.
    pub skipped_users: Vec<(Vec<u8>, u64)>,
    pub now: u64,
}

fn epoch(t: std::io::Result<std::time::SystemTime>) -> Option<u64> {
    t.ok()?.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// Figures of a log file, `None` if it does not exist.
pub fn log_file(path: &Path) -> Result<Option<LogFile>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut reader = Reader::for_file(path);
    match reader.begin() {
        Ok(Begun::Ready) => {}
        Ok(Begun::NoLog) => return Ok(None),
        Err(e) if !path.exists() => {
            // renamed to log-run or unlinked by sync_client meanwhile
            let _ = e;
            return Ok(None);
        }
        Err(e) => return Err(e.to_string()),
    }
    let mut items = 0;
    while reader.next_item().is_some() {
        items += 1;
    }
    let _ = reader.end();
    let (since, since_birth) = match epoch(meta.created()) {
        Some(t) => (t, true),
        None => (epoch(meta.modified()).unwrap_or(0), false),
    };
    Ok(Some(LogFile {
        bytes: meta.len(),
        items,
        since,
        since_birth,
    }))
}

/// Non-empty lines of a file; none if it does not exist.
fn lines(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    match std::fs::read(path) {
        Ok(data) => Ok(data
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Why each item still in the quarantine file was set aside, counted.
fn reasons(items: &[Vec<u8>], state: &ChannelState) -> Vec<(ReasonKind, u64)> {
    let mut counts = std::collections::HashMap::new();
    for item in items {
        let kind = state
            .quarantined
            .iter()
            .rev()
            .find(|q| q.record == *item)
            .map_or(ReasonKind::FailedRuns, |q| q.reason.kind);
        *counts.entry(kind).or_insert(0u64) += 1;
    }
    ReasonKind::all()
        .into_iter()
        .filter_map(|k| Some((k, *counts.get(&k)?)))
        .collect()
}

impl ChannelReport {
    /// Read a channel's files at time `now` (seconds since the epoch).
    pub fn gather(config_dir: &Path, name: Option<&[u8]>, now: u64) -> Result<Self, String> {
        if let Some(n) = name {
            cyrsync::synclog::check_channel(n).map_err(|e| e.to_string())?;
        }
        let dir = channel_dir(config_dir, name);
        let state_path = dir.join(STATE_FILE);
        let state = ChannelState::load(&state_path)
            .map_err(|e| format!("{}: {e}", state_path.display()))?;
        let quarantine = lines(&dir.join(QUARANTINE_FILE))?;
        Ok(ChannelReport {
            name: name.map(<[u8]>::to_vec),
            log: log_file(&dir.join("log"))?,
            log_run: log_file(&dir.join("log-run"))?,
            quarantined: quarantine.len() as u64,
            quarantine_reasons: reasons(&quarantine, &state),
            set_aside: lines(&dir.join("log-bad"))?.len() as u64,
            skipped_users: cyrsync::syncclient::state::skipped_users(&dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?,
            dir,
            state,
            now,
        })
    }

    pub fn pending_items(&self) -> u64 {
        self.log.map_or(0, |f| f.items) + self.log_run.map_or(0, |f| f.items)
    }

    pub fn pending_bytes(&self) -> u64 {
        self.log.map_or(0, |f| f.bytes) + self.log_run.map_or(0, |f| f.bytes)
    }

    /// Age in seconds of the oldest line in log or log-run; `None` when
    /// nothing is pending.
    pub fn oldest_pending_age(&self) -> Option<u64> {
        [self.log, self.log_run]
            .into_iter()
            .flatten()
            .filter(|f| f.items > 0)
            .map(|f| self.now.saturating_sub(f.since))
            .max()
    }

    /// Age in seconds since the oldest deferred item was first deferred.
    pub fn oldest_deferred_age(&self) -> Option<u64> {
        self.state
            .deferred
            .values()
            .map(|d| self.now.saturating_sub(d.first))
            .max()
    }

    /// The older of the two ages above.
    pub fn oldest_age(&self) -> Option<u64> {
        self.oldest_pending_age().max(self.oldest_deferred_age())
    }

    /// This channel as a JSON object (docs/cyrsync-json.md, "channel").
    pub fn write_json(&self, j: &mut Json) {
        j.begin_object();
        j.key("name");
        match &self.name {
            Some(n) => j.bytes(n),
            None => j.null(),
        };
        j.key("directory").bytes(self.dir.as_os_str().as_bytes());
        j.key("pending").begin_object();
        for (key, file) in [("log", &self.log), ("log_run", &self.log_run)] {
            j.key(key);
            match file {
                None => j.null(),
                Some(f) => j
                    .begin_object()
                    .key("bytes")
                    .u64(f.bytes)
                    .key("items")
                    .u64(f.items)
                    .key("since")
                    .u64(f.since)
                    .key("since_source")
                    .str(if f.since_birth { "birth" } else { "mtime" })
                    .end_object(),
            };
        }
        j.key("items").u64(self.pending_items());
        j.key("bytes").u64(self.pending_bytes());
        j.opt_u64("oldest_age_seconds", self.oldest_pending_age());
        j.end_object();

        let mut deferred: Vec<_> = self.state.deferred.iter().collect();
        deferred.sort_by(|a, b| (a.1.first, a.0).cmp(&(b.1.first, b.0)));
        j.key("deferred").begin_array();
        for (line, d) in deferred {
            j.begin_object();
            write_record(j, line);
            j.key("first").u64(d.first);
            j.key("last").u64(d.last);
            j.key("count").u64(d.count);
            j.key("age_seconds").u64(self.now.saturating_sub(d.first));
            j.end_object();
        }
        j.end_array();
        j.opt_u64("oldest_deferred_age_seconds", self.oldest_deferred_age());

        let mut failing: Vec<_> = self.state.failed.iter().collect();
        failing.sort();
        j.key("failing").begin_array();
        for (line, n) in failing {
            j.begin_object();
            write_record(j, line);
            j.key("failed_runs").u64(u64::from(*n));
            j.end_object();
        }
        j.end_array();

        j.key("quarantine").begin_object();
        j.key("file")
            .bytes(self.dir.join(QUARANTINE_FILE).as_os_str().as_bytes());
        j.key("items").u64(self.quarantined);
        j.key("by_reason").begin_object();
        for (kind, n) in &self.quarantine_reasons {
            j.key(kind.word()).u64(*n);
        }
        j.end_object();
        j.key("recent").begin_array();
        for q in &self.state.quarantined {
            j.begin_object();
            write_record(j, &q.record);
            j.key("time").u64(q.time);
            j.key("age_seconds").u64(self.now.saturating_sub(q.time));
            j.key("reason").str(q.reason.kind.word());
            j.key("error").i64(q.reason.code.into());
            j.key("error_text");
            if q.reason.text.is_empty() {
                j.null();
            } else {
                j.str(&q.reason.text);
            }
            j.end_object();
        }
        j.end_array();
        j.end_object();

        j.key("set_aside").begin_object();
        j.key("file")
            .bytes(self.dir.join("log-bad").as_os_str().as_bytes());
        j.key("lines").u64(self.set_aside);
        j.end_object();

        j.key("skipped_users").begin_array();
        for (user, since) in &self.skipped_users {
            j.begin_object();
            j.key("user").bytes(user);
            j.key("since").u64(*since);
            j.end_object();
        }
        j.end_array();

        j.key("last_run");
        match &self.state.last_run {
            None => j.null(),
            Some(r) => {
                j.begin_object();
                j.key("time").u64(r.time);
                j.key("completed").bool(!r.bailed);
                j.key("error").i64(r.error.into());
                write_counters(j, &r.counters);
                j.end_object()
            }
        };
        let t = &self.state.totals;
        j.key("totals").begin_object();
        j.key("runs").u64(t.runs);
        j.key("bailed").u64(t.bailed);
        write_counters(j, &t.counters);
        j.end_object();
        j.end_object();
    }
}

fn write_counters(j: &mut Json, c: &cyrsync::syncclient::Counters) {
    j.key("done").u64(c.done);
    j.key("deferred").u64(c.deferred);
    j.key("promoted").u64(c.promoted);
    j.key("retried").u64(c.retried);
    j.key("quarantined").u64(c.quarantined);
}

/// `"record"`, `"type"` and `"args"` of a sync log line.
fn write_record(j: &mut Json, line: &[u8]) {
    j.key("record").bytes(line);
    let mut content = line.to_vec();
    content.push(b'\n');
    let mut reader = Reader::for_content(content);
    let _ = reader.begin();
    match reader.next_item() {
        Some(item) => {
            j.key("type").bytes(item.kind);
            j.key("args").begin_array();
            j.bytes(item.arg1);
            if let Some(a2) = item.arg2 {
                j.bytes(a2);
            }
            j.end_array();
        }
        None => {
            j.key("type").null();
            j.key("args").begin_array().end_array();
        }
    }
}

/// The head of every document: schema name and version, and when.
pub fn begin_document(j: &mut Json, schema: &str, now: u64) {
    j.begin_object();
    j.key("schema").str(schema);
    j.key("version").u64(SCHEMA_VERSION);
    j.key("generated_at").u64(now);
}

/// `channel show --json`.
pub fn show_json(config_dir: &Path, channels: &[ChannelReport], now: u64) -> String {
    let mut j = Json::new();
    begin_document(&mut j, "cyrsync-channel-show", now);
    j.key("config_directory")
        .bytes(config_dir.as_os_str().as_bytes());
    j.key("channels").begin_array();
    for c in channels {
        c.write_json(&mut j);
    }
    j.end_array();
    j.end_object();
    j.finish()
}

/// `channel plan --json`.
pub fn plan_json(file: &Path, plan: &Plan, redundant: usize, now: u64) -> String {
    let mut j = Json::new();
    begin_document(&mut j, "cyrsync-channel-plan", now);
    j.key("file").bytes(file.as_os_str().as_bytes());
    j.key("items").u64(plan.items);
    j.key("redundant").u64(redundant as u64);
    j.key("skipped").begin_array();
    for s in &plan.skipped {
        let (reason, t) = match s {
            Skipped::UnknownType(t) => ("unknown_type", t),
            Skipped::MissingArgument(t) => ("missing_argument", t),
        };
        j.begin_object()
            .key("reason")
            .str(reason)
            .key("type")
            .bytes(t)
            .end_object();
    }
    j.end_array();
    j.key("steps").begin_array();
    for step in plan.steps() {
        j.begin_object();
        let (action, args): (&str, Vec<&[u8]>) = match &step {
            Step::Mailboxes { userid, names } => {
                j.key("action").str("MAILBOXES");
                j.key("userid");
                if userid.is_empty() {
                    j.null();
                } else {
                    j.bytes(userid);
                }
                j.key("args").begin_array();
                for n in names.iter() {
                    j.bytes(n);
                }
                j.end_array();
                j.end_object();
                continue;
            }
            Step::Quota(n) => ("QUOTA", vec![n]),
            Step::Annotation(n) => ("ANNOTATION", vec![n]),
            Step::Seen { user, mailbox } => ("SEEN", vec![user, mailbox]),
            Step::Sub { user, mailbox } => ("SUB", vec![user, mailbox]),
            Step::Unmailbox(n) => ("UNMAILBOX", vec![n]),
            Step::Meta(u) => ("META", vec![u]),
            Step::User(u) => ("USER", vec![u]),
            Step::Unuser(u) => ("UNUSER", vec![u]),
        };
        j.key("action").str(action);
        j.key("args").begin_array();
        for a in args {
            j.bytes(a);
        }
        j.end_array();
        j.end_object();
    }
    j.end_array();
    j.end_object();
    j.finish()
}
