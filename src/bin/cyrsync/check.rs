//! `cyrsync channel check`: a monitoring plugin with the Nagios/Icinga
//! conventions — exit 0/1/2/3 for OK/WARNING/CRITICAL/UNKNOWN, one status
//! line on stdout, performance data after `|`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use crate::conf::Source;
use crate::report::ChannelReport;

pub const USAGE: &str = "usage: cyrsync channel check [-C IMAPD_CONF | --config-dir DIR]
           [--warn-age D] [--crit-age D] [--warn-quarantined N] [--crit-quarantined N]
           [--warn-size S] [--crit-size S] [CHANNEL...]

A monitoring plugin (Nagios/Icinga conventions): one status line, with
performance data after `|`, and the exit status

  0 OK   1 WARNING   2 CRITICAL   3 UNKNOWN (bad arguments, unreadable files)

Checks every channel of imapd.conf's sync_log_channels (default -C
/etc/imapd.conf; with --config-dir alone, the default channel), or the
CHANNELs given (\"\" is the default channel). A threshold is exceeded when the
value is greater than it:

  --warn-age D, --crit-age D      age of the oldest item pending in log or
                                  log-run, or of the oldest deferral
                                  (default 15m and 1h; units s m h d)
  --warn-quarantined N, --crit-quarantined N
                                  items in log-quarantine (default 0: any
                                  quarantined item warns; no critical)
  --warn-size S, --crit-size S    bytes in log and log-run (units k M G;
                                  default none)

A threshold given as `none` is switched off.";

/// Nagios plugin states, in order of severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }
}

/// A warning and a critical bound; `None` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub warn: Option<u64>,
    pub crit: Option<u64>,
}

impl Bounds {
    fn state(&self, value: u64) -> State {
        if self.crit.is_some_and(|c| value > c) {
            State::Critical
        } else if self.warn.is_some_and(|w| value > w) {
            State::Warning
        } else {
            State::Ok
        }
    }

    fn perf(&self) -> String {
        let f = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
        format!("{};{}", f(self.warn), f(self.crit))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub age: Bounds,
    pub quarantined: Bounds,
    pub size: Bounds,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            age: Bounds {
                warn: Some(15 * 60),
                crit: Some(3600),
            },
            quarantined: Bounds {
                warn: Some(0),
                crit: None,
            },
            size: Bounds {
                warn: None,
                crit: None,
            },
        }
    }
}

/// "90", "90s", "15m", "2h", "1d" in seconds.
pub fn parse_age(s: &str) -> Option<u64> {
    let (num, mult) = split_unit(s, &[("s", 1), ("m", 60), ("h", 3600), ("d", 86400)])?;
    num.checked_mul(mult)
}

/// "1000", "10k", "5M", "1G" in bytes (powers of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = split_unit(
        s,
        &[
            ("k", 1 << 10),
            ("K", 1 << 10),
            ("M", 1 << 20),
            ("G", 1 << 30),
        ],
    )?;
    num.checked_mul(mult)
}

fn split_unit(s: &str, units: &[(&str, u64)]) -> Option<(u64, u64)> {
    let i = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(i);
    let n = num.parse().ok()?;
    if unit.is_empty() {
        return Some((n, 1));
    }
    units.iter().find(|(u, _)| *u == unit).map(|&(_, m)| (n, m))
}

fn age_text(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// A threshold as given: the largest unit that divides it.
fn exact_age_text(secs: u64) -> String {
    match secs {
        0 => "0s".into(),
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A perfdata label: quoted, `'` doubled, `=` and non-printables escaped.
fn perf_label(channel: &str, what: &str) -> String {
    let mut s = String::from("'");
    for c in format!("{channel}_{what}").chars() {
        match c {
            '\'' => s.push_str("''"),
            '=' => s.push_str("\\x3d"),
            c => s.push(c),
        }
    }
    s.push('\'');
    s
}

/// How a figure is shown in the status line.
type Shown = dyn Fn(u64) -> String;

/// The plugin's output line and state for these reports (an `Err` is a
/// channel that could not be read).
pub fn evaluate(
    reports: &[(String, Result<ChannelReport, String>)],
    t: &Thresholds,
) -> (State, String) {
    let mut state = State::Ok;
    let mut problems = Vec::new();
    let mut perf = Vec::new();
    let (mut oldest, mut quarantined, mut bytes) = (0u64, 0u64, 0u64);
    for (label, report) in reports {
        let r = match report {
            Ok(r) => r,
            Err(e) => {
                state = state.max(State::Unknown);
                problems.push(format!("{label}: {e}"));
                continue;
            }
        };
        let age = r.oldest_age().unwrap_or(0);
        let bytes_text = |b: u64| format!("{b} B");
        let count_text = |n: u64| n.to_string();
        let checks: [(&str, u64, Bounds, &Shown); 3] = [
            ("oldest item", age, t.age, &age_text),
            ("quarantined", r.quarantined, t.quarantined, &count_text),
            ("log", r.pending_bytes(), t.size, &bytes_text),
        ];
        let mut bad = Vec::new();
        for (what, value, bounds, text) in checks {
            let s = bounds.state(value);
            if s > State::Ok {
                let limit = if s == State::Critical {
                    bounds.crit
                } else {
                    bounds.warn
                };
                let limit = limit.unwrap_or(0);
                let limit = if what == "oldest item" {
                    exact_age_text(limit)
                } else {
                    text(limit)
                };
                let mut line = format!("{what} {} > {limit}", text(value));
                if what == "quarantined" && !r.quarantine_reasons.is_empty() {
                    // why, e.g. "(locked 2, error 1)"
                    let why: Vec<String> = r
                        .quarantine_reasons
                        .iter()
                        .map(|(k, n)| format!("{} {n}", k.word()))
                        .collect();
                    line += &format!(" ({})", why.join(", "));
                }
                bad.push(line);
                state = state.max(s);
            }
        }
        if !bad.is_empty() {
            problems.push(format!("{label}: {}", bad.join(", ")));
        }
        oldest = oldest.max(age);
        quarantined += r.quarantined;
        bytes += r.pending_bytes();
        perf.push(format!(
            "{}={age}s;{};0",
            perf_label(label, "oldest_age"),
            t.age.perf()
        ));
        perf.push(format!(
            "{}={};{};0",
            perf_label(label, "quarantined"),
            r.quarantined,
            t.quarantined.perf()
        ));
        perf.push(format!(
            "{}={}B;{};0",
            perf_label(label, "log_bytes"),
            r.pending_bytes(),
            t.size.perf()
        ));
        perf.push(format!(
            "{}={};;;0",
            perf_label(label, "pending_items"),
            r.pending_items()
        ));
        perf.push(format!(
            "{}={};;;0",
            perf_label(label, "deferred"),
            r.state.deferred.len()
        ));
    }
    let summary = if problems.is_empty() {
        format!(
            "{} channel(s), oldest item {}, {quarantined} quarantined, log {bytes} B",
            reports.len(),
            age_text(oldest)
        )
    } else {
        problems.join("; ")
    };
    let mut line = format!("CYRSYNC {} - {summary}", state.word());
    if !perf.is_empty() {
        line += " | ";
        line += &perf.join(" ");
    }
    (state, line)
}

fn unknown(msg: &str) -> ExitCode {
    println!("CYRSYNC UNKNOWN - {msg}");
    ExitCode::from(State::Unknown as u8)
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let mut source = Source::default();
    let mut t = Thresholds::default();
    let mut names: Vec<Option<Vec<u8>>> = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let Some(s) = a.to_str() else {
            names.push(Some(a.as_bytes().to_vec()));
            continue;
        };
        match source.take(s, &mut it) {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => return unknown(&e),
        }
        let bound = match s {
            "--warn-age" | "--crit-age" => Some((&mut t.age, parse_age as fn(&str) -> Option<u64>)),
            "--warn-quarantined" | "--crit-quarantined" => Some((
                &mut t.quarantined,
                (|v: &str| v.parse().ok()) as fn(&str) -> Option<u64>,
            )),
            "--warn-size" | "--crit-size" => {
                Some((&mut t.size, parse_size as fn(&str) -> Option<u64>))
            }
            _ => None,
        };
        if let Some((bounds, parse)) = bound {
            let Some(v) = it.next().and_then(|v| v.into_string().ok()) else {
                return unknown(&format!("{s} needs a value"));
            };
            let value = if v == "none" {
                None
            } else {
                match parse(&v) {
                    Some(n) => Some(n),
                    None => return unknown(&format!("bad value for {s}: {v:?}")),
                }
            };
            if s.starts_with("--warn") {
                bounds.warn = value;
            } else {
                bounds.crit = value;
            }
            continue;
        }
        match s {
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "\"\"" | "" => names.push(None),
            s if s.starts_with('-') => return unknown(&format!("unknown option {s}")),
            s => names.push(Some(s.as_bytes().to_vec())),
        }
    }
    let conf = match source.conf() {
        Ok(c) => c,
        Err(e) => return unknown(&e),
    };
    let config_dir = match source.config_dir(conf.as_ref()) {
        Ok(d) => d,
        Err(e) => return unknown(&e),
    };
    if names.is_empty() {
        names = conf.as_ref().map_or_else(|| vec![None], |c| c.channels());
    }
    crate::conf::dedup(&mut names);
    let now = crate::now();
    let reports: Vec<_> = names
        .iter()
        .map(|n| {
            let label = n
                .as_deref()
                .map_or_else(|| "(default)".into(), |n| n.escape_ascii().to_string());
            (label, ChannelReport::gather(&config_dir, n.as_deref(), now))
        })
        .collect();
    let (state, line) = evaluate(&reports, &t);
    println!("{line}");
    ExitCode::from(state as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_age("90"), Some(90));
        assert_eq!(parse_age("15m"), Some(900));
        assert_eq!(parse_age("2h"), Some(7200));
        assert_eq!(parse_age("1d"), Some(86400));
        assert_eq!(parse_age("1w"), None);
        assert_eq!(parse_age("m"), None);
        assert_eq!(parse_size("10k"), Some(10240));
        assert_eq!(parse_size("5M"), Some(5 << 20));
        assert_eq!(parse_size("7"), Some(7));
        assert_eq!(parse_size("7x"), None);
    }

    #[test]
    fn bounds_are_exceeded_when_greater() {
        let b = Bounds {
            warn: Some(0),
            crit: Some(10),
        };
        assert_eq!(b.state(0), State::Ok);
        assert_eq!(b.state(1), State::Warning);
        assert_eq!(b.state(10), State::Warning);
        assert_eq!(b.state(11), State::Critical);
        assert_eq!(perf_label("a'b=c", "x"), "'a''b\\x3dc_x'");
    }
}
