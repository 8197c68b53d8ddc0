//! `cyrsync withlock` and `cyrsync barrier`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use cyrsync::barrier::{self, Barrier, BarrierError, DEFAULT_MAX_FREEZE};

/// Exit statuses of `cyrsync withlock` (documented in its usage text).
const EXIT_OK: u8 = 0;
const EXIT_COMMAND_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_NOT_FROZEN: u8 = 3;
const EXIT_INCONSISTENT: u8 = 4;
const EXIT_NOT_STARTED: u8 = 5;

const WITHLOCK_USAGE: &str =
    "usage: cyrsync withlock [-C imapd.conf | --lock-dir DIR] [--max-freeze DURATION]
                        [--sync PATH]... -- COMMAND [ARGS...]

Freeze the global write barrier (every writer holding it has left and no new
writer enters), syncfs(2) the file systems of the --sync paths, run COMMAND
(searched in PATH, with CYRUS_HAVELOCK_GLOBAL=1 in its environment), thaw,
and report whether the freeze held for the whole run.

  -C FILE            imapd.conf to read the lock directory from (default
                     /etc/imapd.conf): mboxname_lockpath if set, else
                     <configdirectory>/lock, as Cyrus does
  --lock-dir DIR     the lock directory itself (instead of -C)
  --max-freeze D     bound on the freeze, e.g. 5s, 500ms, 2m (default 5s): writers
                     never wait longer; past it they go in and the freeze is
                     reported inconsistent
  --sync PATH        syncfs(2) PATH's file system once writers are out (repeatable;
                     several paths may follow one --sync)

exit status:
  0  the freeze was consistent and COMMAND exited 0
  1  the freeze was consistent but COMMAND failed (non-zero exit or signal)
  2  usage error
  3  could not freeze (another freeze is active, writers did not drain in
     time, syncfs or I/O error); COMMAND was not run
  4  the freeze was NOT consistent (bound exceeded or writers went in):
     COMMAND ran, its result must not be trusted as a snapshot
  5  COMMAND could not be started (the freeze was released)";

const BARRIER_USAGE: &str =
    "usage: cyrsync barrier status [-C imapd.conf | --lock-dir DIR] [--json]
       cyrsync barrier reset [-C imapd.conf | --lock-dir DIR] [--slots N]

status  Show the global write barrier: whether it is frozen, by which pid, the
        time left before the freeze's deadline, the live slots (processes
        that have it open) with their depth (> 0: inside), freezes by verdict
        and the longest writer wait since the file was created. Only reads: creates
        nothing, works on a read-only file system and as any user who can read
        the file. --json: one JSON object instead of the table.
reset   Repair a barrier file Cyrus refuses (damaged, foreign, another version,
        wrong size): replace it with a new one (N slots, default 16384). Refuses
        while any process has the file open or mapped (stop Cyrus first). A
        valid file is left alone; a missing one is created.

exit status: 0 done, 1 failed (see the message), 2 usage error";

/// Where the barrier lives.
enum Location {
    Config(PathBuf),
    LockDir(PathBuf),
}

impl Location {
    fn lock_dir(&self) -> Result<PathBuf, String> {
        match self {
            Location::LockDir(dir) => Ok(dir.clone()),
            Location::Config(conf) => {
                let text = std::fs::read_to_string(conf)
                    .map_err(|e| format!("cannot read {}: {e}", conf.display()))?;
                // As mboxname_lockpath(): mboxname_lockpath, else
                // <configdirectory>/lock.
                if let Some(dir) = conf_value(&text, "mboxname_lockpath") {
                    return Ok(PathBuf::from(dir));
                }
                let dir = conf_value(&text, "configdirectory")
                    .ok_or_else(|| format!("no configdirectory in {}", conf.display()))?;
                Ok(Path::new(&dir).join("lock"))
            }
        }
    }
}

/// An option's value from imapd.conf text (`key: value` lines, `#`
/// comments).
fn conf_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// "5s", "500ms", "2m", or a bare number of seconds.
fn parse_duration(s: &str) -> Option<Duration> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        _ => return None,
    };
    (!d.is_zero()).then_some(d)
}

struct Options {
    location: Location,
    max_freeze: Duration,
    sync: Vec<PathBuf>,
    command: Vec<OsString>,
    json: bool,
    slots: u32,
}

fn parse(args: Vec<OsString>, want_command: bool) -> Result<Options, String> {
    let mut location = None;
    let mut max_freeze = DEFAULT_MAX_FREEZE;
    let mut sync = Vec::new();
    let mut command = Vec::new();
    let mut json = false;
    let mut slots = 0;
    let mut it = args.into_iter().peekable();
    let value = |it: &mut std::iter::Peekable<std::vec::IntoIter<OsString>>, opt: &str| {
        it.next().ok_or_else(|| format!("{opt} needs a value"))
    };
    while let Some(arg) = it.next() {
        match arg.to_str() {
            Some("--") if want_command => {
                command.extend(it.by_ref());
                break;
            }
            Some("-C") => {
                let v = value(&mut it, "-C")?;
                if location.replace(Location::Config(v.into())).is_some() {
                    return Err("give one of -C and --lock-dir, once".into());
                }
            }
            Some("--lock-dir") => {
                let v = value(&mut it, "--lock-dir")?;
                if location.replace(Location::LockDir(v.into())).is_some() {
                    return Err("give one of -C and --lock-dir, once".into());
                }
            }
            Some("--max-freeze") if want_command => {
                let v = value(&mut it, "--max-freeze")?;
                max_freeze = v
                    .to_str()
                    .and_then(parse_duration)
                    .ok_or_else(|| format!("bad --max-freeze {v:?} (e.g. 5s, 500ms, 2m)"))?;
            }
            Some("--sync") if want_command => {
                sync.push(value(&mut it, "--sync")?.into());
                while let Some(next) = it.peek() {
                    if next.to_str().is_some_and(|s| s.starts_with('-')) {
                        break;
                    }
                    sync.push(it.next().unwrap().into());
                }
            }
            Some("--json") if !want_command => json = true,
            Some("--slots") if !want_command => {
                let v = value(&mut it, "--slots")?;
                slots = v
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                    .filter(|n| (1..=1 << 20).contains(n))
                    .ok_or_else(|| format!("bad --slots {v:?} (1 to 1048576)"))?;
            }
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    if want_command && command.is_empty() {
        return Err("no command given (put it after --)".into());
    }
    Ok(Options {
        location: location.unwrap_or(Location::Config("/etc/imapd.conf".into())),
        max_freeze,
        sync,
        command,
        json,
        slots,
    })
}

fn wants_help(args: &[OsString]) -> bool {
    args.iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "-h" || a == "--help")
}

fn open(location: &Location, max_freeze: Duration) -> Result<Barrier, String> {
    let dir = location.lock_dir()?;
    Barrier::open(&dir, max_freeze).map_err(|e| e.to_string())
}

pub fn withlock_main(args: Vec<OsString>) -> ExitCode {
    if wants_help(&args) {
        println!("{WITHLOCK_USAGE}");
        return ExitCode::SUCCESS;
    }
    let opts = match parse(args, true) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cyrsync withlock: {e}\n\n{WITHLOCK_USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let barrier = match open(&opts.location, opts.max_freeze) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cyrsync withlock: cannot open the barrier: {e}");
            return ExitCode::from(EXIT_NOT_FROZEN);
        }
    };
    let token = match barrier.freeze(opts.max_freeze) {
        Ok(t) => t,
        Err(e) => {
            let hint = match e {
                BarrierError::AlreadyFrozen { .. } => " (see `cyrsync barrier status`)",
                _ => "",
            };
            eprintln!("cyrsync withlock: could not freeze: {e}{hint}");
            return ExitCode::from(EXIT_NOT_FROZEN);
        }
    };
    eprintln!(
        "cyrsync withlock: frozen (writers drained in {} ms, bound {} ms)",
        token.drain_time().as_millis(),
        opts.max_freeze.as_millis()
    );
    for path in &opts.sync {
        if let Err(e) = barrier::syncfs(path) {
            eprintln!("cyrsync withlock: syncfs {} failed: {e}", path.display());
            report_verdict(&barrier, token);
            return ExitCode::from(EXIT_NOT_FROZEN);
        }
    }
    let status = Command::new(&opts.command[0])
        .args(&opts.command[1..])
        .env("CYRUS_HAVELOCK_GLOBAL", "1")
        .status();
    let consistent = report_verdict(&barrier, token);
    match status {
        Err(e) => {
            eprintln!("cyrsync withlock: cannot run {:?}: {e}", opts.command[0]);
            ExitCode::from(EXIT_NOT_STARTED)
        }
        Ok(_) if !consistent => ExitCode::from(EXIT_INCONSISTENT),
        Ok(s) if s.success() => ExitCode::from(EXIT_OK),
        Ok(s) => {
            eprintln!("cyrsync withlock: command failed: {s}");
            ExitCode::from(EXIT_COMMAND_FAILED)
        }
    }
}

/// Thaw and print the verdict; true if the freeze was consistent.
fn report_verdict(barrier: &Barrier, token: barrier::FreezeToken) -> bool {
    match barrier.thaw(token) {
        Ok(v) if v.consistent() => {
            eprintln!(
                "cyrsync withlock: thawed, consistent (frozen {} ms)",
                v.frozen_for.as_millis()
            );
            true
        }
        Ok(v) => {
            eprintln!(
                "cyrsync withlock: thawed, NOT consistent: {} (frozen {} ms, breaches {})",
                v.reason().unwrap_or("?"),
                v.frozen_for.as_millis(),
                v.breaches
            );
            false
        }
        Err(e) => {
            eprintln!("cyrsync withlock: thaw failed: {e}");
            false
        }
    }
}

pub fn main(mut args: Vec<OsString>) -> ExitCode {
    if args.is_empty() || wants_help(&args) {
        println!("{BARRIER_USAGE}");
        return if args.is_empty() {
            ExitCode::from(EXIT_USAGE)
        } else {
            ExitCode::SUCCESS
        };
    }
    let sub = args.remove(0);
    if sub != "status" && sub != "reset" {
        eprintln!("{BARRIER_USAGE}");
        return ExitCode::from(EXIT_USAGE);
    }
    let opts = match parse(args, false) {
        Ok(o) if sub == "status" && o.slots != 0 => {
            eprintln!("cyrsync barrier: --slots is for reset\n\n{BARRIER_USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
        Ok(o) if sub == "reset" && o.json => {
            eprintln!("cyrsync barrier: --json is for status\n\n{BARRIER_USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
        Ok(o) => o,
        Err(e) => {
            eprintln!("cyrsync barrier: {e}\n\n{BARRIER_USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let dir = match opts.location.lock_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cyrsync barrier: {e}");
            return ExitCode::from(1);
        }
    };
    if sub == "reset" {
        return match barrier::reset(&dir, opts.slots) {
            Ok(barrier::ResetOutcome::Created) => {
                println!("created {}", dir.join(barrier::FILE_NAME).display());
                ExitCode::SUCCESS
            }
            Ok(barrier::ResetOutcome::AlreadyValid) => {
                println!(
                    "{} is a valid barrier file: left as it is",
                    dir.join(barrier::FILE_NAME).display()
                );
                ExitCode::SUCCESS
            }
            Ok(barrier::ResetOutcome::Replaced { why }) => {
                println!(
                    "replaced {} ({why})",
                    dir.join(barrier::FILE_NAME).display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cyrsync barrier reset: {e}");
                ExitCode::from(1)
            }
        };
    }
    let st = match barrier::inspect(&dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cyrsync barrier: {e}");
            return ExitCode::from(1);
        }
    };
    let path = dir.join(barrier::FILE_NAME);
    if opts.json {
        println!("{}", status_json(&path, &st));
        return ExitCode::SUCCESS;
    }
    println!("barrier: {}", path.display());
    if st.frozen {
        println!(
            "state: frozen{} by pid {} ({}), for {} ms, deadline in {} ms",
            if st.expired {
                " (EXPIRED: writers go in)"
            } else {
                ""
            },
            st.freezer_pid,
            if st.freezer_alive { "alive" } else { "dead" },
            st.frozen_for.unwrap_or_default().as_millis(),
            st.remaining.unwrap_or_default().as_millis()
        );
    } else {
        println!("state: not frozen");
    }
    let slots = || st.slots.iter().filter(|s| !s.is_overflow());
    let live = slots().filter(|s| s.alive).count();
    let inside = slots().filter(|s| s.depth > 0).count();
    println!(
        "generation: {}  freezes: {}  breaches: {}",
        st.generation, st.freezes, st.breaches
    );
    let verdicts: Vec<String> = st
        .verdicts
        .iter()
        .map(|(k, n)| format!("{} {n}", k.word()))
        .collect();
    println!("verdicts: {}", verdicts.join(", "));
    println!("longest writer wait: {} ms", wait_ms(st.writer_wait_max));
    println!(
        "slots: {} in file, {live} live, {inside} inside; without a slot: {} inside",
        st.slot_count, st.overflow_inside
    );
    println!("{:>6} {:>8} {:>6} alive", "slot", "pid", "depth");
    for s in slots() {
        println!(
            "{:>6} {:>8} {:>6} {}",
            s.index,
            s.pid,
            s.depth,
            if s.alive { "yes" } else { "no" }
        );
    }
    ExitCode::SUCCESS
}

/// A JSON string (the path is the only free text).
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A writer wait in whole milliseconds, rounded up: a wait shows as at
/// least 1 ms, and 0 means no writer ever waited.
fn wait_ms(d: Duration) -> u128 {
    d.as_nanos().div_ceil(1_000_000)
}

/// `cyrsync barrier status --json`: one object, hand-written (no serde in
/// cyrsync). Schema `cyrsync-barrier-status` in docs/cyrsync-json.md.
fn status_json(path: &Path, st: &barrier::Status) -> String {
    let ms = |d: Option<Duration>| d.map_or("null".to_string(), |d| d.as_millis().to_string());
    let slots: Vec<String> = st
        .slots
        .iter()
        .filter(|s| !s.is_overflow())
        .map(|s| {
            format!(
                "{{\"slot\":{},\"pid\":{},\"depth\":{},\"alive\":{}}}",
                s.index, s.pid, s.depth, s.alive
            )
        })
        .collect();
    let verdicts: Vec<String> = st
        .verdicts
        .iter()
        .map(|(k, n)| format!("\"{}\":{n}", k.word()))
        .collect();
    format!(
        "{{\"schema\":\"cyrsync-barrier-status\",\"version\":{},\"generated_at\":{},\
         \"path\":{},\"frozen\":{},\"expired\":{},\"generation\":{},\"freezer_pid\":{},\
         \"freezer_alive\":{},\"frozen_for_ms\":{},\"remaining_ms\":{},\"freezes\":{},\
         \"breaches\":{},\"verdicts\":{{{}}},\"writer_wait_max_ms\":{},\
         \"slot_count\":{},\"overflow_inside\":{},\"slots\":[{}]}}",
        crate::report::SCHEMA_VERSION,
        crate::now(),
        json_str(&path.to_string_lossy()),
        st.frozen,
        st.expired,
        st.generation,
        st.freezer_pid,
        st.freezer_alive,
        ms(st.frozen_for),
        ms(st.remaining),
        st.freezes,
        st.breaches,
        verdicts.join(","),
        wait_ms(st.writer_wait_max),
        st.slot_count,
        st.overflow_inside,
        slots.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("5h"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn imapd_conf() {
        let text =
            "# comment\nconfigdirectory: /var/lib/imap \npartition-default: /var/spool/imap\n";
        assert_eq!(
            conf_value(text, "configdirectory").as_deref(),
            Some("/var/lib/imap")
        );
        assert_eq!(
            conf_value("#configdirectory: /x\n", "configdirectory"),
            None
        );
        assert_eq!(conf_value(text, "mboxname_lockpath"), None);
    }

    #[test]
    fn arguments() {
        let a = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let o = parse(
            a(&[
                "--lock-dir",
                "/l",
                "--sync",
                "/a",
                "/b",
                "--max-freeze",
                "2s",
                "--",
                "tar",
                "-c",
            ]),
            true,
        )
        .unwrap();
        assert!(matches!(o.location, Location::LockDir(ref p) if p == Path::new("/l")));
        assert_eq!(o.sync, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(o.max_freeze, Duration::from_secs(2));
        assert_eq!(o.command, a(&["tar", "-c"]));
        assert!(parse(a(&["--lock-dir", "/l"]), true).is_err());
        assert!(parse(a(&["-C", "/c", "--lock-dir", "/l", "--", "x"]), true).is_err());
        assert!(parse(a(&["--max-freeze", "soon", "--", "x"]), true).is_err());
        assert!(parse(a(&["--json"]), false).unwrap().json);
        assert_eq!(parse(a(&["--slots", "64"]), false).unwrap().slots, 64);
        assert!(parse(a(&["--slots", "0"]), false).is_err());
        assert!(parse(a(&["--json", "--", "x"]), true).is_err());
    }
}
