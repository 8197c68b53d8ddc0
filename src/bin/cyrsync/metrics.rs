//! `cyrsync metrics`: the Prometheus text exposition format (version
//! 0.0.4), for node_exporter's textfile collector.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::conf::Source;
use crate::report::ChannelReport;

pub const USAGE: &str = "usage: cyrsync metrics [-C IMAPD_CONF | --config-dir DIR] [--lock-dir DIR]
                       [CHANNEL...]

Print the sync log channels' and the global barrier's figures in the
Prometheus text format: every channel of imapd.conf's sync_log_channels
(default -C /etc/imapd.conf; with --config-dir alone, the default channel),
or the CHANNELs given (\"\" is the default channel). The barrier is read from
mboxname_lockpath (else <configdirectory>/lock) or --lock-dir, and only if
its file exists. Nothing is written.

For node_exporter's textfile collector, from cron (as the cyrus user):

  * * * * * cyrsync metrics -C /etc/imapd.conf > DIR/cyrsync.prom.tmp && mv DIR/cyrsync.prom.tmp DIR/cyrsync.prom

where DIR is node_exporter's --collector.textfile.directory.

exit status: 0, also when a channel cannot be read (then
cyrus_sync_channel_readable is 0); 1 when imapd.conf cannot be read; 2
usage error.";

/// A Prometheus label value: `\`, `"` and newline escaped; bytes that are
/// not UTF-8 written as `\\xNN` (a backslash, `x`, two hex digits).
fn label_value(b: &[u8]) -> String {
    let mut s = String::new();
    let mut rest = b;
    while !rest.is_empty() {
        // `<[u8]>::utf8_chunks` is stable only since Rust 1.79 (MSRV 1.77)
        let (valid, invalid) = match std::str::from_utf8(rest) {
            Ok(v) => (v, 0),
            Err(e) => (
                std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or_default(),
                e.error_len().unwrap_or(rest.len() - e.valid_up_to()),
            ),
        };
        for c in valid.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        let bad = &rest[valid.len()..valid.len() + invalid];
        for &x in bad {
            let _ = write!(s, "\\\\x{x:02x}");
        }
        rest = &rest[valid.len() + invalid..];
    }
    s
}

/// The `channel` label: the name, or `(default)`.
fn channel_label(name: Option<&[u8]>) -> String {
    name.map_or_else(|| "(default)".into(), label_value)
}

/// Metric families, each written once with its HELP and TYPE lines.
#[derive(Default)]
pub struct Exposition {
    families: Vec<(&'static str, &'static str, &'static str, Vec<String>)>,
}

impl Exposition {
    /// A sample of family `name` (`kind` "gauge" or "counter") with
    /// `labels` already formatted (`a="x",b="y"`), or none.
    pub fn sample(
        &mut self,
        name: &'static str,
        kind: &'static str,
        help: &'static str,
        labels: &str,
        value: u64,
    ) {
        self.push(name, kind, help, labels, value.to_string());
    }

    /// [`Self::sample`] with a value that is not a whole number (seconds).
    pub fn sample_f64(
        &mut self,
        name: &'static str,
        kind: &'static str,
        help: &'static str,
        labels: &str,
        value: f64,
    ) {
        self.push(name, kind, help, labels, value.to_string());
    }

    fn push(
        &mut self,
        name: &'static str,
        kind: &'static str,
        help: &'static str,
        labels: &str,
        value: String,
    ) {
        let line = if labels.is_empty() {
            format!("{name} {value}")
        } else {
            format!("{name}{{{labels}}} {value}")
        };
        match self.families.iter_mut().find(|f| f.0 == name) {
            Some(f) => f.3.push(line),
            None => self.families.push((name, kind, help, vec![line])),
        }
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        for (name, kind, help, lines) in &self.families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for l in lines {
                out += l;
                out.push('\n');
            }
        }
        out
    }
}

/// A channel's samples; a channel that cannot be read has only
/// `cyrus_sync_channel_readable 0`.
pub fn channel_metrics(m: &mut Exposition, name: Option<&[u8]>, r: Result<&ChannelReport, &str>) {
    let ch = format!("channel=\"{}\"", channel_label(name));
    m.sample(
        "cyrus_sync_channel_readable",
        "gauge",
        "1 if the channel's files could be read (0: the other figures of the channel are missing).",
        &ch,
        u64::from(r.is_ok()),
    );
    let Ok(r) = r else { return };
    for (file, f) in [("log", &r.log), ("log-run", &r.log_run)] {
        let l = format!("{ch},file=\"{file}\"");
        m.sample(
            "cyrus_sync_pending_items",
            "gauge",
            "Sync log records waiting in the channel's log and log-run.",
            &l,
            f.map_or(0, |f| f.items),
        );
        m.sample(
            "cyrus_sync_pending_bytes",
            "gauge",
            "Size of the channel's log and log-run in bytes.",
            &l,
            f.map_or(0, |f| f.bytes),
        );
    }
    let gauges: [(&'static str, &'static str, u64); 6] = [
        (
            "cyrus_sync_oldest_pending_age_seconds",
            "Age of the oldest record in log or log-run (0: none pending).",
            r.oldest_pending_age().unwrap_or(0),
        ),
        (
            "cyrus_sync_deferred_items",
            "Items deferred to the next run because the target answered LOCKED.",
            r.state.deferred.len() as u64,
        ),
        (
            "cyrus_sync_oldest_deferred_age_seconds",
            "Time since the oldest deferred item was first deferred (0: none).",
            r.oldest_deferred_age().unwrap_or(0),
        ),
        (
            "cyrus_sync_failing_items",
            "Items that made the latest runs bail out (quarantined when it goes on).",
            r.state.failed.len() as u64,
        ),
        (
            "cyrus_sync_quarantined_items",
            "Items in the channel's log-quarantine file, waiting for the admin.",
            r.quarantined,
        ),
        (
            "cyrus_sync_set_aside_lines",
            "Unparsable sync log lines kept in the channel's log-bad file.",
            r.set_aside,
        ),
    ];
    for (name, help, v) in gauges {
        m.sample(name, "gauge", help, &ch, v);
    }
    for (kind, n) in &r.quarantine_reasons {
        m.sample(
            "cyrus_sync_quarantined_items_by_reason",
            "gauge",
            "Items in log-quarantine by why they were set aside (locked, invalid_user, error, not_user_mailbox; failed_runs: not recorded). Reasons with no item are left out.",
            &format!("{ch},reason=\"{}\"", kind.word()),
            *n,
        );
    }
    let t = &r.state.totals;
    let counters: [(&'static str, &'static str, u64); 7] = [
        (
            "cyrus_sync_runs_total",
            "sync_client runs on the channel.",
            t.runs,
        ),
        (
            "cyrus_sync_bailouts_total",
            "Runs that stopped early (the log was kept for the next run).",
            t.bailed,
        ),
        (
            "cyrus_sync_items_synced_total",
            "Items synced.",
            t.counters.done,
        ),
        (
            "cyrus_sync_deferrals_total",
            "Items deferred to the channel's log.",
            t.counters.deferred,
        ),
        (
            "cyrus_sync_promotions_total",
            "Items promoted to a USER or META sync after an error.",
            t.counters.promoted,
        ),
        (
            "cyrus_sync_retries_total",
            "Retries after a LOCKED answer (lock policies backoff, retry_later, fail).",
            t.counters.retried,
        ),
        (
            "cyrus_sync_quarantines_total",
            "Items set aside in log-quarantine.",
            t.counters.quarantined,
        ),
    ];
    for (name, help, v) in counters {
        m.sample(name, "counter", help, &ch, v);
    }
    if let Some(last) = &r.state.last_run {
        m.sample(
            "cyrus_sync_last_run_timestamp_seconds",
            "gauge",
            "When the latest sync_client run on the channel ended (seconds since the epoch).",
            &ch,
            last.time,
        );
        m.sample(
            "cyrus_sync_last_run_completed",
            "gauge",
            "1 if the latest run completed, 0 if it bailed out.",
            &ch,
            u64::from(!last.bailed),
        );
    }
}

/// The barrier's samples: whether its file could be read, frozen or not,
/// live slots (processes that have it open), freezes by verdict and
/// writers that went in past the bound since the file was created, and the
/// longest a writer waited for a freeze.
///
/// Kept to the barrier's public read-only API (`barrier::inspect`: no
/// slot taken, nothing created), in this one function.
pub fn barrier_metrics(m: &mut Exposition, lock_dir: &Path) {
    let status = cyrsync::barrier::inspect(lock_dir).ok();
    m.sample(
        "cyrus_barrier_readable",
        "gauge",
        "1 if the global barrier's file exists and could be read.",
        "",
        u64::from(status.is_some()),
    );
    let Some(st) = status else { return };
    m.sample(
        "cyrus_barrier_frozen",
        "gauge",
        "1 while a snapshot tool holds the global barrier frozen.",
        "",
        u64::from(st.frozen),
    );
    m.sample(
        "cyrus_barrier_live_slots",
        "gauge",
        "Processes that have the global barrier open.",
        "",
        st.slots
            .iter()
            .filter(|s| !s.is_overflow() && s.alive)
            .count() as u64,
    );
    for (verdict, n) in st.verdicts.iter() {
        m.sample(
            "cyrus_barrier_freezes_total",
            "counter",
            "Freezes of the global barrier (cyrsync withlock, cyr_withlock_run) by verdict: consistent (the snapshot can be trusted), breached (writers went in past the bound), expired (thawed past the bound), lost (taken over or cleared before the thaw), replaced (the barrier file was removed or replaced), drain_timeout (writers did not leave in time: not frozen).",
            &format!("verdict=\"{}\"", verdict.word()),
            n,
        );
    }
    m.sample(
        "cyrus_barrier_breaches_total",
        "counter",
        "Writers that went in during a freeze, past the bound (each makes its freeze inconsistent).",
        "",
        st.breaches,
    );
    m.sample_f64(
        "cyrus_barrier_writer_wait_max_seconds",
        "gauge",
        "The longest any writer waited for a freeze to end (since the barrier file was created).",
        "",
        st.writer_wait_max.as_secs_f64(),
    );
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let mut source = Source::default();
    let mut lock_dir: Option<PathBuf> = None;
    let mut names: Vec<Option<Vec<u8>>> = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let s = a.to_str().unwrap_or("");
        match source.take(s, &mut it) {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => {
                eprintln!("cyrsync metrics: {e}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
        match s {
            "--lock-dir" => match it.next() {
                Some(d) => lock_dir = Some(d.into()),
                None => {
                    eprintln!("cyrsync metrics: --lock-dir needs a value\n\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "\"\"" => names.push(None),
            "" if a.is_empty() => names.push(None),
            s if s.starts_with('-') => {
                eprintln!("cyrsync metrics: unknown option {s}\n\n{USAGE}");
                return ExitCode::from(2);
            }
            _ => names.push(Some(a.as_bytes().to_vec())),
        }
    }
    let conf = match source.conf() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cyrsync metrics: {e}");
            return ExitCode::from(1);
        }
    };
    let config_dir = match source.config_dir(conf.as_ref()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cyrsync metrics: {e}");
            return ExitCode::from(1);
        }
    };
    if names.is_empty() {
        names = conf.as_ref().map_or_else(|| vec![None], |c| c.channels());
    }
    crate::conf::dedup(&mut names);
    let now = crate::now();
    let mut m = Exposition::default();
    for n in &names {
        let r = ChannelReport::gather(&config_dir, n.as_deref(), now);
        if let Err(e) = &r {
            eprintln!(
                "cyrsync metrics: channel {}: {e}",
                channel_label(n.as_deref())
            );
        }
        channel_metrics(&mut m, n.as_deref(), r.as_ref().map_err(String::as_str));
    }
    let lock_dir = lock_dir.or_else(|| conf.as_ref().and_then(|c| c.lock_directory().ok()));
    if let Some(dir) = lock_dir {
        barrier_metrics(&mut m, &dir);
    }
    print!("{}", m.text());
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value(b"a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(label_value(b"x\xffy"), "x\\\\xffy");
        assert_eq!(channel_label(None), "(default)");
    }
}
