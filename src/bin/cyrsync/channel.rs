//! `cyrsync channel`: inspect a sync log channel; dry-run a log's plan.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cyrsync::syncclient::plan::{default_mboxname_to_userid, Plan, Skipped, Step};
use cyrsync::syncclient::state::{
    channel_dir, skipped_users, ChannelState, QUARANTINE_FILE, STATE_FILE,
};
use cyrsync::syncclient::ReasonKind;
use cyrsync::synclog::{bad_path, push_quoted, Begun, Reader};

const USAGE: &str = "usage:
  cyrsync channel show [--json] [-C IMAPD_CONF | --config-dir DIR] [CHANNEL]
      pending log (size, items), log-run left by a failed run, deferred
      items with their ages and counts, failing items, quarantine, lines
      set aside unparsed (log-bad), skipped users
  cyrsync channel show [--json] --all [-C IMAPD_CONF]
      the same for every channel of sync_log_channels
  cyrsync channel plan [--json] FILE
      dry run: parse a sync log file and print the plan sync_client would
      run (what, in which order, after redundancy removal); mailbox owners
      follow Cyrus's default namespace (user.NAME, DOMAIN!user.NAME)
  cyrsync channel check [-C IMAPD_CONF | --config-dir DIR] [THRESHOLDS] [CHANNEL...]
      monitoring plugin (Nagios/Icinga): see `cyrsync channel check --help`

--json prints one JSON document (schema: cyrsync-json.md and
cyrsync-json.schema.json in cyrsync's documentation, share/doc/cyrsync).

CHANNEL is a sync_log_channels name; without it, the default channel.
The config directory is imapd.conf's configdirectory (default -C
/etc/imapd.conf).";

pub fn main(args: Vec<OsString>) -> ExitCode {
    let mut args = args.into_iter();
    match args.next().as_ref().and_then(|a| a.to_str()) {
        Some("show") => show(args.collect()),
        Some("plan") => plan(args.collect()),
        Some("check") => crate::check::main(args.collect()),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// `configdirectory` from an imapd.conf (`key: value` lines, `#`
/// comments).
/// `<[u8]>::trim_ascii` (stable only since Rust 1.80, after our MSRV).
fn trim(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if !first.is_ascii_whitespace() {
            break;
        }
        b = rest;
    }
    while let [rest @ .., last] = b {
        if !last.is_ascii_whitespace() {
            break;
        }
        b = rest;
    }
    b
}

fn config_directory(conf: &Path) -> Result<PathBuf, String> {
    let text = std::fs::read(conf).map_err(|e| format!("{}: {e}", conf.display()))?;
    for line in text.split(|&b| b == b'\n') {
        let line = trim(line);
        if let Some(rest) = line.strip_prefix(b"configdirectory") {
            if let Some(value) = trim(rest).strip_prefix(b":") {
                return Ok(PathBuf::from(std::ffi::OsStr::from_bytes(trim(value))));
            }
        }
    }
    Err(format!("{}: no configdirectory", conf.display()))
}

fn show(args: Vec<OsString>) -> ExitCode {
    let mut conf: Option<PathBuf> = None;
    let mut config_dir: Option<PathBuf> = None;
    let mut channel: Option<OsString> = None;
    let (mut json, mut all) = (false, false);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("-C") => conf = it.next().map(PathBuf::from),
            Some("--config-dir") => config_dir = it.next().map(PathBuf::from),
            Some("--json") => json = true,
            Some("--all") => all = true,
            Some("-h" | "--help") => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Some(s) if s.starts_with('-') => {
                eprintln!("cyrsync channel show: unknown option {s}\n\n{USAGE}");
                return ExitCode::from(2);
            }
            _ if channel.is_none() => channel = Some(a),
            _ => {
                eprintln!("cyrsync channel show: too many arguments\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    if json || all {
        let source = crate::conf::Source { conf, config_dir };
        return show_many(&source, channel, all, json);
    }
    let config_dir = match config_dir {
        Some(d) => d,
        None => match config_directory(conf.as_deref().unwrap_or(Path::new("/etc/imapd.conf"))) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("cyrsync channel show: {e}");
                return ExitCode::from(1);
            }
        },
    };
    let name = channel.as_ref().map(|c| c.as_bytes());
    if let Some(n) = name {
        if let Err(e) = cyrsync::synclog::check_channel(n) {
            eprintln!("cyrsync channel show: {e}");
            return ExitCode::from(2);
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match render_show(&config_dir, name, now) {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("cyrsync channel show: {e}");
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

/// The `show` report of a channel at time `now` (seconds since the epoch).
fn render_show(config_dir: &Path, name: Option<&[u8]>, now: u64) -> Result<String, String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let dir = channel_dir(config_dir, name);
    let label = name.map_or_else(|| "(default)".to_string(), printable);
    let _ = writeln!(out, "channel {label}: {}", dir.display());
    for (file, what) in [
        ("log", "pending log"),
        ("log-run", "log-run (being run, or kept by a failed run)"),
    ] {
        let path = dir.join(file);
        let _ = match count_items(&path) {
            Ok(Some((bytes, items))) => writeln!(out, "  {what}: {bytes} bytes, {items} items"),
            Ok(None) => writeln!(out, "  {what}: none"),
            Err(e) => writeln!(out, "  {what}: unreadable: {e}"),
        };
    }
    let state_path = dir.join(STATE_FILE);
    let state =
        ChannelState::load(&state_path).map_err(|e| format!("{}: {e}", state_path.display()))?;
    let mut deferred: Vec<_> = state.deferred.iter().collect();
    deferred.sort_by(|a, b| (a.1.first, a.0).cmp(&(b.1.first, b.0)));
    let _ = writeln!(out, "  deferred items: {}", deferred.len());
    for (line, d) in deferred {
        let _ = writeln!(
            out,
            "    {}  first {} ago, last {} ago, deferred {} time(s)",
            printable(line),
            age(now.saturating_sub(d.first)),
            age(now.saturating_sub(d.last)),
            d.count
        );
    }
    let mut failed: Vec<_> = state.failed.iter().collect();
    failed.sort();
    let _ = writeln!(out, "  items failing runs: {}", failed.len());
    for (line, n) in failed {
        let _ = writeln!(
            out,
            "    {}  {n} consecutive failed run(s)",
            printable(line)
        );
    }
    let quarantine = dir.join(QUARANTINE_FILE);
    match std::fs::read(&quarantine) {
        Ok(data) => {
            let lines = data
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count();
            let _ = writeln!(
                out,
                "  quarantine: {lines} item(s) in {} (replay with sync_client -f)",
                quarantine.display()
            );
            for q in &state.quarantined {
                let r = &q.reason;
                let why = match r.kind {
                    ReasonKind::FailedRuns => "(not recorded)".to_string(),
                    _ if r.text.is_empty() => format!("(code {})", r.code),
                    _ => format!("(code {}: {})", r.code, printable(r.text.as_bytes())),
                };
                let _ = writeln!(
                    out,
                    "    {}  quarantined {} ago, reason {} {why}",
                    printable(&q.record),
                    age(now.saturating_sub(q.time)),
                    r.kind.word()
                );
            }
        }
        Err(_) => {
            let _ = writeln!(out, "  quarantine: none");
        }
    }
    // lines the reader could not parse, kept whole for the admin
    let bad = bad_path(&dir.join("log"));
    match std::fs::read(&bad) {
        Ok(data) => {
            let lines: Vec<&[u8]> = data
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            let _ = writeln!(
                out,
                "  set aside (did not parse): {} line(s) in {}",
                lines.len(),
                bad.display()
            );
            for line in lines.iter().rev().take(5).rev() {
                let _ = writeln!(out, "    {}", printable(line));
            }
        }
        Err(_) => {
            let _ = writeln!(out, "  set aside (did not parse): none");
        }
    }
    let skipped = skipped_users(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let _ = writeln!(
        out,
        "  skipped users (skipuser-<user> files; their items are deferred): {}",
        skipped.len()
    );
    for (user, since) in skipped {
        let _ = writeln!(
            out,
            "    {}  since {} ago",
            printable(&user),
            age(now.saturating_sub(since))
        );
    }
    Ok(out)
}

/// Bytes as text, non-printable ones as `\xNN`.
fn printable(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x20..0x7f).contains(&b) {
            s.push(b as char);
        } else {
            s += &format!("\\x{b:02x}");
        }
    }
    s
}

fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// (bytes, items) of a log file, None if it does not exist.
fn count_items(path: &Path) -> Result<Option<(u64, u64)>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut reader = Reader::for_file(path);
    match reader.begin() {
        Ok(Begun::Ready) => {}
        Ok(Begun::NoLog) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let mut n = 0;
    while reader.next_item().is_some() {
        n += 1;
    }
    let _ = reader.end();
    Ok(Some((meta.len(), n)))
}

fn plan(mut args: Vec<OsString>) -> ExitCode {
    let json = args.first().is_some_and(|a| a == "--json");
    if json {
        args.remove(0);
    }
    let [file] = args.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut reader = Reader::for_file(PathBuf::from(file));
    if let Err(e) = reader.begin() {
        eprintln!("cyrsync channel plan: {e}");
        return ExitCode::from(1);
    }
    let mut plan = Plan::new();
    let mut to_userid = default_mboxname_to_userid;
    while let Some(item) = reader.next_item() {
        plan.add_item(item.kind, item.arg1, item.arg2, &mut to_userid);
    }
    let _ = reader.end();
    plan.optimise();
    if json {
        let redundant = redundant(&plan);
        print!(
            "{}",
            crate::report::plan_json(Path::new(file), &plan, redundant, crate::now())
        );
    } else {
        print!("{}", render(&plan));
    }
    ExitCode::SUCCESS
}

/// `show --json` (one document) and `show --all`: the channel given
/// (default: the default channel), or with `all` every channel of
/// sync_log_channels.
fn show_many(
    source: &crate::conf::Source,
    channel: Option<OsString>,
    all: bool,
    json: bool,
) -> ExitCode {
    let conf = match source.conf() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cyrsync channel show: {e}");
            return ExitCode::from(1);
        }
    };
    let config_dir = match source.config_dir(conf.as_ref()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cyrsync channel show: {e}");
            return ExitCode::from(1);
        }
    };
    let names = match (all, channel) {
        (true, Some(_)) => {
            eprintln!("cyrsync channel show: --all and a CHANNEL\n\n{USAGE}");
            return ExitCode::from(2);
        }
        (true, None) => conf.as_ref().map_or_else(|| vec![None], |c| c.channels()),
        (false, c) => vec![c.map(|c| c.as_bytes().to_vec())],
    };
    let now = crate::now();
    if !json {
        for n in &names {
            if let Some(n) = n {
                if let Err(e) = cyrsync::synclog::check_channel(n) {
                    eprintln!("cyrsync channel show: {e}");
                    return ExitCode::from(1);
                }
            }
            match render_show(&config_dir, n.as_deref(), now) {
                Ok(text) => print!("{text}"),
                Err(e) => {
                    eprintln!("cyrsync channel show: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    let mut reports = Vec::new();
    for n in names {
        match crate::report::ChannelReport::gather(&config_dir, n.as_deref(), now) {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("cyrsync channel show: {e}");
                return ExitCode::from(1);
            }
        }
    }
    print!("{}", crate::report::show_json(&config_dir, &reports, now));
    ExitCode::SUCCESS
}

/// Actions the planner removed as redundant.
fn redundant(plan: &Plan) -> usize {
    let lists = [
        &plan.users,
        &plan.unusers,
        &plan.metas,
        &plan.unmailboxes,
        &plan.quotas,
        &plan.annotations,
        &plan.seens,
        &plan.subs,
    ];
    lists
        .iter()
        .map(|l| l.iter().filter(|a| !a.active).count())
        .sum()
}

/// The dry-run text: a summary, then one numbered step a line.
fn render(plan: &Plan) -> String {
    let steps = plan.steps();
    let redundant = redundant(plan);
    let mut out = format!(
        "{} items, {} skipped, {} removed as redundant, {} steps:\n",
        plan.items,
        plan.skipped.len(),
        redundant,
        steps.len()
    );
    for skipped in &plan.skipped {
        out += &match skipped {
            Skipped::UnknownType(t) => {
                format!("  skipped: unknown action type {}\n", t.escape_ascii())
            }
            Skipped::MissingArgument(t) => format!(
                "  skipped: {} without its second argument\n",
                t.escape_ascii()
            ),
        };
    }
    // names quoted as in a sync log, non-printable bytes escaped
    let e = |b: &[u8]| {
        let mut q = Vec::new();
        match push_quoted(&mut q, b) {
            Ok(()) => printable(&q),
            // a name no log can hold: shown escaped
            Err(_) => printable(b),
        }
    };
    for (i, step) in steps.iter().enumerate() {
        let text = match step {
            Step::Mailboxes { userid, names } => format!(
                "MAILBOXES [{}] {}",
                if userid.is_empty() {
                    "non-user".to_string()
                } else {
                    printable(userid)
                },
                names.iter().map(|n| e(n)).collect::<Vec<_>>().join(" ")
            ),
            Step::Quota(n) => format!("QUOTA {}", e(n)),
            Step::Annotation(n) => format!("ANNOTATION {}", e(n)),
            Step::Seen { user, mailbox } => format!("SEEN {} {}", e(user), e(mailbox)),
            Step::Sub { user, mailbox } => format!("SUB {} {}", e(user), e(mailbox)),
            Step::Unmailbox(n) => format!("UNMAILBOX {}", e(n)),
            Step::Meta(u) => format!("META {}", e(u)),
            Step::User(u) => format!("USER {}", e(u)),
            Step::Unuser(u) => format!("UNUSER {}", e(u)),
        };
        out += &format!("{:>6}. {text}\n", i + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_prints_cs_plan() {
        type Item<'a> = (&'a [u8], &'a [u8], Option<&'a [u8]>);
        let log: &[Item] = &[
            (b"USER", b"u1", None),
            (b"META", b"u1", None),
            (b"MAILBOX", b"user.u1.a", None),
            (b"SEEN", b"u2", Some(b"user.u2.my folder")),
            (b"APPEND", b"user.u2", None),
            (b"BOGUS", b"x", None),
            (b"UNUSER", b"u3", None),
            (b"USER", b"u3", None),
        ];
        let plan =
            cyrsync::syncclient::plan_items(log.iter().copied(), &mut default_mboxname_to_userid);
        assert_eq!(
            render(&plan),
            "8 items, 1 skipped, 2 removed as redundant, 5 steps:
  skipped: unknown action type BOGUS
     1. MAILBOXES [u1] user.u1.a
     2. MAILBOXES [u2] user.u2
     3. SEEN u2 \"user.u2.my folder\"
     4. USER u1
     5. UNUSER u3
"
        );
    }

    #[test]
    fn show_reports_log_deferrals_failures_and_quarantine() {
        let dir = std::env::temp_dir().join(format!("cyrsync-cli-show-{}", std::process::id()));
        let ch = dir.join("sync/ch");
        std::fs::create_dir_all(&ch).unwrap();
        std::fs::write(ch.join("log"), "USER a\nMAILBOX user.a.x\n").unwrap();
        std::fs::write(
            ch.join(STATE_FILE),
            "deferred 1000 1900 3 SEEN a \"user.a.my box\"\nfailed 2 UNMAILBOX shared.bad\nquarantined 1500 USER z\n\
             quarantined 1600 USER y\nquarantine-reason 1600 locked -1904 Mailbox%20is%20locked USER y\n",
        )
        .unwrap();
        std::fs::write(ch.join(QUARANTINE_FILE), "USER z\nUSER y\n").unwrap();
        std::fs::write(ch.join("log-bad"), "MAILBOX \"user.torn\n").unwrap();
        std::fs::File::create(ch.join("skipuser-bob"))
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1910))
            .unwrap();
        let text = render_show(&dir, Some(b"ch"), 2000).unwrap();
        let expected = format!(
            "channel ch: {d}
  pending log: 24 bytes, 2 items
  log-run (being run, or kept by a failed run): none
  deferred items: 1
    SEEN a \"user.a.my box\"  first 16m ago, last 100s ago, deferred 3 time(s)
  items failing runs: 1
    UNMAILBOX shared.bad  2 consecutive failed run(s)
  quarantine: 2 item(s) in {d}/log-quarantine (replay with sync_client -f)
    USER z  quarantined 8m ago, reason failed_runs (not recorded)
    USER y  quarantined 6m ago, reason locked (code -1904: Mailbox is locked)
  set aside (did not parse): 1 line(s) in {d}/log-bad
    MAILBOX \"user.torn
  skipped users (skipuser-<user> files; their items are deferred): 1
    bob  since 90s ago
",
            d = ch.display()
        );
        assert_eq!(text, expected);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_configdirectory() {
        let dir = std::env::temp_dir().join(format!("cyrsync-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("imapd.conf");
        std::fs::write(
            &conf,
            "# x\nconfigdirectory:   /var/lib/imap \nsync_log: 1\n",
        )
        .unwrap();
        assert_eq!(
            config_directory(&conf).unwrap(),
            PathBuf::from("/var/lib/imap")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
