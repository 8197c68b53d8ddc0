//! The admin tooling run as the built binary: `channel show --json` and
//! `channel plan --json` validated against docs/cyrsync-json.schema.json,
//! `channel check`'s exit statuses for every threshold, `metrics` parsed as
//! the Prometheus text format.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cyrsync::barrier::Barrier;
use serde_json::Value;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("cyrsync-admin-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cyrsync<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cyrsync"))
        .args(args)
        .output()
        .expect("run cyrsync")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("UTF-8 output")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------
// A JSON Schema validator for the keywords the schema uses ($ref to $defs,
// oneOf, allOf, type, const, enum, properties, required,
// additionalProperties: false, items, minimum, maximum, minItems,
// maxItems, boolean schemas).

fn schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cyrsync-json.schema.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn validate(root: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let obj = match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return Err(format!("{at}: not allowed")),
        Value::Object(o) => o,
        _ => panic!("bad schema at {at}"),
    };
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/$defs/").expect("local $ref");
        validate(root, &root["$defs"][name], v, at)?;
    }
    if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
        for s in all {
            validate(root, s, v, at)?;
        }
    }
    if let Some(one) = obj.get("oneOf").and_then(Value::as_array) {
        let ok = one
            .iter()
            .filter(|s| validate(root, s, v, at).is_ok())
            .count();
        if ok != 1 {
            let why: Vec<_> = one
                .iter()
                .filter_map(|s| validate(root, s, v, at).err())
                .collect();
            return Err(format!("{at}: {ok} of oneOf match: {why:?}"));
        }
    }
    if let Some(t) = obj.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => panic!("type {t}"),
        };
        if !ok {
            return Err(format!("{at}: {v} is not {t}"));
        }
    }
    if let Some(c) = obj.get("const") {
        if c != v {
            return Err(format!("{at}: {v} != {c}"));
        }
    }
    if let Some(e) = obj.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return Err(format!("{at}: {v} not in {e:?}"));
        }
    }
    if let Some(n) = v.as_i64() {
        if obj
            .get("minimum")
            .and_then(Value::as_i64)
            .is_some_and(|m| n < m)
            || obj
                .get("maximum")
                .and_then(Value::as_i64)
                .is_some_and(|m| n > m)
        {
            return Err(format!("{at}: {n} out of range"));
        }
    }
    if let Some(map) = v.as_object() {
        let props = obj.get("properties").and_then(Value::as_object);
        for req in obj
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let k = req.as_str().unwrap();
            if !map.contains_key(k) {
                return Err(format!("{at}: missing {k}"));
            }
        }
        for (k, val) in map {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate(root, s, val, &format!("{at}.{k}"))?,
                None if obj.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: undocumented field {k}"))
                }
                None => {}
            }
        }
    }
    if let Some(items) = v.as_array() {
        let len = items.len() as u64;
        if obj
            .get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
            || obj
                .get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
        {
            return Err(format!("{at}: {len} items"));
        }
        if let Some(s) = obj.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate(root, s, item, &format!("{at}[{i}]"))?;
            }
        }
    }
    Ok(())
}

fn check_schema(doc: &Value) {
    let s = schema();
    if let Err(e) = validate(&s, &s, doc, "$") {
        panic!("output does not match the schema: {e}\n{doc:#}");
    }
}

// ---------------------------------------------------------------------------

/// A config directory with channel `ch` (log, log-run, state, quarantine,
/// log-bad) and an empty default channel; imapd.conf lists both.
struct Setup {
    _t: TempDir,
    root: PathBuf,
    conf: PathBuf,
    ch: PathBuf,
}

fn setup(tag: &str) -> Setup {
    let t = TempDir::new(tag);
    let root = t.0.clone();
    let ch = root.join("sync/ch");
    std::fs::create_dir_all(&ch).unwrap();
    std::fs::create_dir_all(root.join("lock")).unwrap();
    let conf = root.join("imapd.conf");
    let mut text = b"configdirectory: ".to_vec();
    text.extend_from_slice(root.as_os_str().as_bytes());
    text.extend_from_slice(b"\nsync_log_channels: ch \"\"\n");
    std::fs::write(&conf, text).unwrap();
    Setup {
        _t: t,
        root,
        conf,
        ch,
    }
}

impl Setup {
    fn conf(&self) -> &str {
        self.conf.to_str().unwrap()
    }
    fn write(&self, file: &str, data: &[u8]) {
        std::fs::write(self.ch.join(file), data).unwrap();
    }
}

#[test]
fn show_json_matches_the_schema_and_the_files() {
    let s = setup("show");
    let t = now();
    s.write("log", b"USER a\nMAILBOX user.a.x\n");
    s.write("log-run", b"USER b\n");
    // a user whose name is not UTF-8 (Latin-1 e-acute)
    let mut state = format!(
        "# state\ndeferred {} {} 3 SEEN a \"user.a.my box\"\ndeferred {} {} 1 USER caf",
        t - 600,
        t - 60,
        t - 100,
        t - 100
    )
    .into_bytes();
    state.push(0xe9);
    state.extend_from_slice(
        format!(
            "\nfailed 2 UNMAILBOX shared.bad\nquarantined {} USER z\n\
             quarantine-reason {} locked -1904 Mailbox%20is%20locked USER z\n\
             quarantined {} USER y\nruns 7 2 40 4 1 3 1\nlast-run {} 0 0 5 1 0 2 0\n",
            t - 300,
            t - 300,
            t - 200,
            t - 60
        )
        .as_bytes(),
    );
    s.write("log-state", &state);
    s.write("log-quarantine", b"USER z\nUSER y\n");
    s.write("log-bad", b"USER \"torn\n");

    let o = cyrsync(&["channel", "show", "--json", "--all", "-C", s.conf()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let doc: Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    check_schema(&doc);
    assert_eq!(doc["schema"], "cyrsync-channel-show");
    assert_eq!(doc["version"], 1);
    let chans = doc["channels"].as_array().unwrap();
    assert_eq!(chans.len(), 2);
    let c = &chans[0];
    assert_eq!(c["name"], "ch");
    assert_eq!(c["pending"]["log"]["items"], 2);
    assert_eq!(c["pending"]["log"]["bytes"], 24);
    assert_eq!(c["pending"]["log_run"]["items"], 1);
    assert_eq!(c["pending"]["items"], 3);
    assert!(c["pending"]["oldest_age_seconds"].as_u64().unwrap() < 120);
    let d = c["deferred"].as_array().unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0]["record"], "SEEN a \"user.a.my box\"");
    assert_eq!(d[0]["type"], "SEEN");
    assert_eq!(d[0]["args"], serde_json::json!(["a", "user.a.my box"]));
    assert_eq!(d[0]["count"], 3);
    assert_eq!(d[0]["first"], t - 600);
    assert!(d[0]["age_seconds"].as_u64().unwrap() >= 600);
    // bytes that are not UTF-8: an array of byte values
    assert_eq!(d[1]["args"], serde_json::json!([[99, 97, 102, 0xe9]]));
    assert!(c["oldest_deferred_age_seconds"].as_u64().unwrap() >= 600);
    assert_eq!(c["failing"][0]["failed_runs"], 2);
    assert_eq!(c["failing"][0]["args"][0], "shared.bad");
    assert_eq!(c["quarantine"]["items"], 2);
    assert_eq!(c["quarantine"]["recent"][0]["record"], "USER z");
    assert_eq!(c["quarantine"]["recent"][0]["time"], t - 300);
    // why: the executor's reason, code and text; y's state predates reasons
    let z = &c["quarantine"]["recent"][0];
    assert_eq!(
        (&z["reason"], &z["error"], &z["error_text"]),
        (
            &Value::from("locked"),
            &Value::from(-1904),
            &Value::from("Mailbox is locked")
        )
    );
    let y = &c["quarantine"]["recent"][1];
    assert_eq!(
        (&y["reason"], &y["error"], &y["error_text"]),
        (&Value::from("failed_runs"), &Value::from(0), &Value::Null)
    );
    assert_eq!(
        c["quarantine"]["by_reason"],
        serde_json::json!({"locked": 1, "failed_runs": 1})
    );
    assert_eq!(c["set_aside"]["lines"], 1);
    assert_eq!(c["skipped_users"], serde_json::json!([]));
    assert_eq!(c["last_run"]["completed"], true);
    assert_eq!(c["last_run"]["retried"], 2);
    assert_eq!(c["totals"]["runs"], 7);
    assert_eq!(c["totals"]["bailed"], 2);
    assert_eq!(c["totals"]["done"], 40);
    let def = &chans[1];
    assert_eq!(def["name"], Value::Null);
    assert_eq!(def["pending"]["log"], Value::Null);
    assert_eq!(def["pending"]["oldest_age_seconds"], Value::Null);
    assert_eq!(def["last_run"], Value::Null);

    // The text form of --all: every channel, in sync_log_channels' order.
    let o = cyrsync(&["channel", "show", "--all", "-C", s.conf()]);
    assert_eq!(code(&o), 0);
    let text = stdout(&o);
    let ch_at = text.find("channel ch: ").expect("channel ch");
    let def_at = text.find("channel (default): ").expect("default channel");
    assert!(ch_at < def_at, "{text}");
    assert!(text.contains("deferred items: 2"), "{text}");

    // One channel by name, through --config-dir.
    let o = cyrsync(&[
        "channel",
        "show",
        "--json",
        "--config-dir",
        s.root.to_str().unwrap(),
        "ch",
    ]);
    assert_eq!(code(&o), 0);
    let one: Value = serde_json::from_slice(&o.stdout).unwrap();
    check_schema(&one);
    assert_eq!(one["channels"].as_array().unwrap().len(), 1);

    // The validator is not vacuous: an undocumented or mistyped field fails.
    let sch = schema();
    let mut bad = doc.clone();
    bad["channels"][0]["surprise"] = Value::from(1);
    assert!(validate(&sch, &sch, &bad, "$").is_err());
    let mut bad = doc.clone();
    bad["channels"][0]["pending"]["items"] = Value::from("3");
    assert!(validate(&sch, &sch, &bad, "$").is_err());
    let mut bad = doc.clone();
    bad["channels"][0]["quarantine"]["recent"][0]["reason"] = Value::from("cosmic_rays");
    assert!(validate(&sch, &sch, &bad, "$").is_err());
    let mut bad = doc;
    bad["version"] = Value::from(2);
    assert!(validate(&sch, &sch, &bad, "$").is_err());

    // An unreadable state is an error, not an empty report.
    std::fs::remove_file(s.ch.join("log-state")).unwrap();
    std::fs::create_dir(s.ch.join("log-state")).unwrap();
    let o = cyrsync(&["channel", "show", "--json", "--all", "-C", s.conf()]);
    assert_eq!(code(&o), 1);
    assert!(o.stdout.is_empty());
}

#[test]
fn plan_json_matches_the_schema() {
    let t = TempDir::new("plan");
    let log = t.0.join("log");
    std::fs::write(
        &log,
        "USER u1\nMETA u1\nMAILBOX user.u1.a\nSEEN u2 \"user.u2.my folder\"\nSUB u2 user.u2.x\n\
         APPEND user.u2\nMAILBOX shared.x\nQUOTA user.u3\nANNOTATION user.u3\nUNMAILBOX user.u4.gone\n\
         META u5\nBOGUS x\nSEEN u6\nUNUSER u3\nUSER u3\n",
    )
    .unwrap();
    let o = cyrsync(&["channel", "plan", "--json", log.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    check_schema(&doc);
    assert_eq!(doc["schema"], "cyrsync-channel-plan");
    assert_eq!(doc["items"], 15);
    let skipped = doc["skipped"].as_array().unwrap();
    assert!(skipped.contains(&serde_json::json!({"reason": "unknown_type", "type": "BOGUS"})));
    assert!(skipped.contains(&serde_json::json!({"reason": "missing_argument", "type": "SEEN"})));
    let steps = doc["steps"].as_array().unwrap();
    let actions: Vec<&str> = steps
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    for a in [
        "MAILBOXES",
        "QUOTA",
        "ANNOTATION",
        "SEEN",
        "SUB",
        "UNMAILBOX",
        "META",
        "USER",
        "UNUSER",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    // the non-user cohort has a null userid
    assert!(steps.iter().any(|s| s["action"] == "MAILBOXES"
        && s["userid"].is_null()
        && s["args"][0] == "shared.x"));
    // the text and JSON plans agree on the number of steps
    let text = stdout(&cyrsync(&["channel", "plan", log.to_str().unwrap()]));
    assert!(text.contains(&format!("{} steps:", steps.len())), "{text}");
}

// ---------------------------------------------------------------------------

/// `channel check` with extra arguments: (exit status, output line).
fn check(s: &Setup, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["channel", "check", "-C", s.conf()];
    args.extend_from_slice(extra);
    let o = cyrsync(&args);
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "one line: {out:?}");
    (code(&o), out.trim_end().to_string())
}

/// The performance data after `|`: (label, value, uom, warn, crit).
fn perfdata(line: &str) -> Vec<(String, u64, String, String, String)> {
    let (_, perf) = line.split_once(" | ").expect("perfdata");
    perf.split(' ')
        .map(|item| {
            let rest = item.strip_prefix('\'').expect("quoted label");
            let (label, rest) = rest.split_once("'=").expect("label'=");
            let fields: Vec<&str> = rest.split(';').collect();
            assert!(fields.len() >= 3 && fields.len() <= 5, "{item}");
            let i = fields[0]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(fields[0].len());
            let (v, uom) = fields[0].split_at(i);
            assert!(["", "s", "B"].contains(&uom), "{item}");
            (
                label.to_string(),
                v.parse().expect("value"),
                uom.to_string(),
                fields[1].to_string(),
                fields[2].to_string(),
            )
        })
        .collect()
}

#[test]
fn check_exit_statuses_for_each_threshold() {
    let s = setup("check");
    // Nothing anywhere: OK.
    let (c, line) = check(&s, &[]);
    assert_eq!(c, 0, "{line}");
    assert!(line.starts_with("CYRSYNC OK - 2 channel(s)"), "{line}");
    let perf = perfdata(&line);
    assert_eq!(perf.len(), 10);
    assert!(perf.contains(&(
        "ch_oldest_age".into(),
        0,
        "s".into(),
        "900".into(),
        "3600".into()
    )));

    // Age of the oldest deferral: 20 minutes warns, 2 hours is critical
    // (defaults 15m/1h), and the thresholds move it.
    let t = now();
    let defer = |age: u64| {
        s.write(
            "log-state",
            format!("deferred {} {} 1 USER a\n", t - age, t - 10).as_bytes(),
        )
    };
    defer(20 * 60);
    let (c, line) = check(&s, &[]);
    assert_eq!(c, 1, "{line}");
    assert!(
        line.starts_with("CYRSYNC WARNING - ch: oldest item 20m > 15m"),
        "{line}"
    );
    assert_eq!(check(&s, &["--warn-age", "30m"]).0, 0);
    assert_eq!(check(&s, &["--crit-age", "10m"]).0, 2);
    defer(2 * 3600);
    let (c, line) = check(&s, &[]);
    assert_eq!(c, 2, "{line}");
    assert!(
        line.contains("CRITICAL - ch: oldest item 2h > 1h"),
        "{line}"
    );
    assert_eq!(check(&s, &["--crit-age", "none"]).0, 1);
    assert_eq!(check(&s, &["--crit-age", "none", "--warn-age", "1d"]).0, 0);
    // ... the state rewritten by a run that synced it: OK again.
    s.write("log-state", b"");
    assert_eq!(check(&s, &[]).0, 0);

    // Quarantined items: any warns by default; --crit-quarantined N. The
    // line says why (z's reason is in the state, y's is not recorded).
    s.write("log-quarantine", b"USER z\nUSER y\n");
    s.write(
        "log-state",
        format!(
            "quarantined {t} USER z\nquarantine-reason {t} locked -1904 Mailbox%20is%20locked USER z\n"
        )
        .as_bytes(),
    );
    let (c, line) = check(&s, &[]);
    assert_eq!(c, 1, "{line}");
    assert!(
        line.contains("ch: quarantined 2 > 0 (locked 1, failed_runs 1)"),
        "{line}"
    );
    assert!(perfdata(&line).contains(&(
        "ch_quarantined".into(),
        2,
        "".into(),
        "0".into(),
        "".into()
    )));
    assert_eq!(check(&s, &["--crit-quarantined", "1"]).0, 2);
    assert_eq!(check(&s, &["--crit-quarantined", "2"]).0, 1);
    assert_eq!(check(&s, &["--warn-quarantined", "5"]).0, 0);
    // the admin replayed and removed the quarantine: OK
    std::fs::remove_file(s.ch.join("log-quarantine")).unwrap();
    assert_eq!(check(&s, &[]).0, 0);

    // Size of log + log-run.
    s.write("log", &b"USER a\n".repeat(200)); // 1400 bytes
    s.write("log-run", b"USER b\n");
    assert_eq!(check(&s, &[]).0, 0, "no size threshold by default");
    let (c, line) = check(&s, &["--warn-size", "1k"]);
    assert_eq!(c, 1, "{line}");
    assert!(line.contains("ch: log 1407 B > 1024 B"), "{line}");
    assert_eq!(
        check(&s, &["--warn-size", "1k", "--crit-size", "1400"]).0,
        2
    );
    assert_eq!(check(&s, &["--warn-size", "2k", "--crit-size", "1M"]).0, 0);
    let perf = perfdata(&check(&s, &["--warn-size", "2k"]).1);
    assert!(perf.contains(&(
        "ch_log_bytes".into(),
        1407,
        "B".into(),
        "2048".into(),
        "".into()
    )));
    assert!(perf.contains(&(
        "ch_pending_items".into(),
        201,
        "".into(),
        "".into(),
        "".into()
    )));

    // Named channels only; "" is the default channel.
    assert_eq!(check(&s, &["--warn-size", "1k", "\"\""]).0, 0);
    assert_eq!(check(&s, &["--warn-size", "1k", "ch"]).0, 1);

    // UNKNOWN: bad arguments, a missing imapd.conf, an unreadable state, a
    // bad channel name. The worst state wins over the others.
    assert_eq!(check(&s, &["--warn-age", "soon"]).0, 3);
    assert_eq!(check(&s, &["--bogus"]).0, 3);
    assert_eq!(check(&s, &["--warn-age"]).0, 3);
    assert_eq!(check(&s, &["../x"]).0, 3);
    let o = cyrsync(&["channel", "check", "-C", "/nonexistent/imapd.conf"]);
    assert_eq!(code(&o), 3);
    assert!(stdout(&o).starts_with("CYRSYNC UNKNOWN - "));
    std::fs::create_dir(s.ch.join("log-state-dir")).unwrap();
    std::fs::remove_file(s.ch.join("log-state")).unwrap();
    std::fs::rename(s.ch.join("log-state-dir"), s.ch.join("log-state")).unwrap();
    let (c, line) = check(&s, &["--crit-size", "1"]);
    assert_eq!(c, 3, "{line}");
    assert!(line.starts_with("CYRSYNC UNKNOWN - ch: "), "{line}");

    let o = cyrsync(&["channel", "check", "--help"]);
    assert_eq!(code(&o), 0);
}

// ---------------------------------------------------------------------------

/// Parse with a Prometheus text-format parser, and check what it is
/// lenient about: every line is a HELP, a TYPE or a sample it understood;
/// each family has one HELP and one TYPE, before its samples.
fn parse_metrics(text: &str) -> prometheus_parse::Scrape {
    let lines: Vec<std::io::Result<String>> = text.lines().map(|l| Ok(l.to_string())).collect();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).expect("parses");
    let mut samples = 0;
    let mut typed = std::collections::HashMap::new();
    let mut helped = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helped.insert(name.to_string()), "HELP twice: {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["gauge", "counter"].contains(&kind), "{line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{line}");
            }
            assert!(
                typed.insert(name.to_string(), kind).is_none(),
                "TYPE twice: {name}"
            );
        } else {
            samples += 1;
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(name.starts_with("cyrus_"), "{line}");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            assert!(typed.contains_key(name), "sample before its TYPE: {line}");
            assert!(helped.contains(name), "sample without HELP: {line}");
        }
    }
    assert_eq!(
        scrape.samples.len(),
        samples,
        "the parser skipped lines:\n{text}"
    );
    for s in &scrape.samples {
        let kind = typed[&s.metric];
        match (&s.value, kind) {
            (prometheus_parse::Value::Gauge(_), "gauge") => {}
            (prometheus_parse::Value::Counter(_), "counter") => {}
            (v, k) => panic!("{} is {v:?}, declared {k}", s.metric),
        }
    }
    scrape
}

/// The value of a sample with these labels.
fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Counter(v) => v,
            _ => f64::NAN,
        })
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let s = setup("metrics");
    let t = now();
    s.write("log", b"USER a\nMAILBOX user.a.x\n");
    s.write(
        "log-state",
        format!(
            "deferred {} {} 2 USER a\nfailed 1 USER b\nruns 9 3 50 6 2 4 1\nlast-run {} 0 0 5 1 0 2 0\n",
            t - 500,
            t - 30,
            t - 30
        )
        .as_bytes(),
    );
    s.write("log-quarantine", b"USER z\n");
    std::fs::write(
        s.ch.join("log-state"),
        format!(
            "{}quarantined {t} USER z\nquarantine-reason {t} error -1907 - USER z\n",
            std::fs::read_to_string(s.ch.join("log-state")).unwrap()
        ),
    )
    .unwrap();
    // a channel whose name needs escaping in a label value
    let odd = s.root.join("sync/o\"d\\d");
    std::fs::create_dir_all(&odd).unwrap();

    let o = cyrsync(&["metrics", "-C", s.conf()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    let m = parse_metrics(&text);
    let ch = [("channel", "ch")];
    assert_eq!(value(&m, "cyrus_sync_channel_readable", &ch), Some(1.0));
    assert_eq!(
        value(
            &m,
            "cyrus_sync_pending_items",
            &[("channel", "ch"), ("file", "log")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &m,
            "cyrus_sync_pending_bytes",
            &[("channel", "ch"), ("file", "log")]
        ),
        Some(24.0)
    );
    assert_eq!(value(&m, "cyrus_sync_deferred_items", &ch), Some(1.0));
    assert!(value(&m, "cyrus_sync_oldest_deferred_age_seconds", &ch).unwrap() >= 500.0);
    assert_eq!(value(&m, "cyrus_sync_failing_items", &ch), Some(1.0));
    assert_eq!(value(&m, "cyrus_sync_quarantined_items", &ch), Some(1.0));
    assert_eq!(
        value(
            &m,
            "cyrus_sync_quarantined_items_by_reason",
            &[("channel", "ch"), ("reason", "error")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            "cyrus_sync_quarantined_items_by_reason",
            &[("channel", "ch"), ("reason", "locked")]
        ),
        None
    );
    assert_eq!(value(&m, "cyrus_sync_runs_total", &ch), Some(9.0));
    assert_eq!(value(&m, "cyrus_sync_bailouts_total", &ch), Some(3.0));
    assert_eq!(value(&m, "cyrus_sync_items_synced_total", &ch), Some(50.0));
    assert_eq!(value(&m, "cyrus_sync_deferrals_total", &ch), Some(6.0));
    assert_eq!(value(&m, "cyrus_sync_promotions_total", &ch), Some(2.0));
    assert_eq!(value(&m, "cyrus_sync_retries_total", &ch), Some(4.0));
    assert_eq!(value(&m, "cyrus_sync_quarantines_total", &ch), Some(1.0));
    assert_eq!(
        value(&m, "cyrus_sync_last_run_timestamp_seconds", &ch),
        Some((t - 30) as f64)
    );
    assert_eq!(value(&m, "cyrus_sync_last_run_completed", &ch), Some(1.0));
    // a run that bailed out on IMAP_MAILBOX_LOCKED's code
    let state = std::fs::read_to_string(s.ch.join("log-state")).unwrap();
    s.write(
        "log-state",
        state
            .replace(" 0 0 5 1 0 2 0\n", " 1 -1234 5 1 0 2 0\n")
            .as_bytes(),
    );
    let m = parse_metrics(&stdout(&cyrsync(&["metrics", "-C", s.conf()])));
    assert_eq!(value(&m, "cyrus_sync_last_run_completed", &ch), Some(0.0));
    let doc: Value = serde_json::from_slice(
        &cyrsync(&["channel", "show", "--json", "-C", s.conf(), "ch"]).stdout,
    )
    .unwrap();
    check_schema(&doc);
    assert_eq!(doc["channels"][0]["last_run"]["completed"], false);
    assert_eq!(doc["channels"][0]["last_run"]["error"], -1234);
    let def = [("channel", "(default)")];
    assert_eq!(value(&m, "cyrus_sync_runs_total", &def), Some(0.0));
    assert_eq!(value(&m, "cyrus_sync_last_run_completed", &def), None);
    // no barrier file yet: not created by metrics
    assert_eq!(value(&m, "cyrus_barrier_readable", &[]), Some(0.0));
    assert!(!s.root.join("lock/cyrsync-barrier").exists());

    // A barrier with a writer inside, then frozen.
    let b = Barrier::open(&s.root.join("lock"), Duration::from_secs(5)).unwrap();
    let m = parse_metrics(&stdout(&cyrsync(&["metrics", "-C", s.conf()])));
    assert_eq!(value(&m, "cyrus_barrier_readable", &[]), Some(1.0));
    assert_eq!(value(&m, "cyrus_barrier_frozen", &[]), Some(0.0));
    assert_eq!(value(&m, "cyrus_barrier_live_slots", &[]), Some(1.0));
    for verdict in [
        "consistent",
        "breached",
        "expired",
        "lost",
        "replaced",
        "drain_timeout",
    ] {
        let v = [("verdict", verdict)];
        assert_eq!(value(&m, "cyrus_barrier_freezes_total", &v), Some(0.0));
    }
    assert_eq!(
        value(&m, "cyrus_barrier_writer_wait_max_seconds", &[]),
        Some(0.0)
    );
    let token = b.freeze(Duration::from_secs(10)).unwrap();
    let m = parse_metrics(&stdout(&cyrsync(&["metrics", "-C", s.conf()])));
    assert_eq!(value(&m, "cyrus_barrier_frozen", &[]), Some(1.0));
    assert!(b.thaw(token).unwrap().consistent());
    let m = parse_metrics(&stdout(&cyrsync(&["metrics", "-C", s.conf()])));
    assert_eq!(value(&m, "cyrus_barrier_frozen", &[]), Some(0.0));
    let consistent = [("verdict", "consistent")];
    assert_eq!(
        value(&m, "cyrus_barrier_freezes_total", &consistent),
        Some(1.0)
    );
    assert_eq!(value(&m, "cyrus_barrier_breaches_total", &[]), Some(0.0));

    // A freeze a writer waits for (another handle: another slot), and one
    // writers do not drain for.
    let lock = s.root.join("lock");
    let writer = Barrier::open(&lock, Duration::from_secs(5)).unwrap();
    let token = b.freeze(Duration::from_secs(10)).unwrap();
    let writer = &writer;
    std::thread::scope(|sc| {
        let (tx, rx) = std::sync::mpsc::channel();
        let w = sc.spawn(move || {
            tx.send(()).unwrap();
            writer.enter().unwrap();
            writer.leave().unwrap();
        });
        rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(150));
        assert!(b.thaw(token).unwrap().consistent());
        w.join().unwrap();
    });
    writer.enter().unwrap();
    assert!(b.freeze(Duration::from_millis(50)).is_err());
    writer.leave().unwrap();
    let m = parse_metrics(&stdout(&cyrsync(&["metrics", "-C", s.conf()])));
    assert_eq!(
        value(&m, "cyrus_barrier_freezes_total", &consistent),
        Some(2.0)
    );
    assert_eq!(
        value(
            &m,
            "cyrus_barrier_freezes_total",
            &[("verdict", "drain_timeout")]
        ),
        Some(1.0)
    );
    let wait = value(&m, "cyrus_barrier_writer_wait_max_seconds", &[]).unwrap();
    assert!((0.1..10.0).contains(&wait), "{wait}");
    // ... and barrier status --json, against the schema.
    let o = cyrsync(&["barrier", "status", "-C", s.conf(), "--json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let doc: Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    check_schema(&doc);
    assert_eq!(doc["schema"], "cyrsync-barrier-status");
    assert_eq!(
        doc["verdicts"],
        serde_json::json!({"consistent": 2, "breached": 0, "expired": 0, "lost": 0,
                           "replaced": 0, "drain_timeout": 1})
    );
    assert_eq!(doc["freezes"], 2);
    let ms = doc["writer_wait_max_ms"].as_u64().unwrap();
    assert!(ms >= 100 && ms as f64 >= wait * 1000.0, "{ms} {wait}");
    let text = stdout(&cyrsync(&["barrier", "status", "-C", s.conf()]));
    assert!(
        text.contains(
            "verdicts: consistent 2, breached 0, expired 0, lost 0, replaced 0, drain_timeout 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!("longest writer wait: {ms} ms")),
        "{text}"
    );

    // Named channels, one with quotes and backslashes, and one unreadable.
    std::fs::create_dir(s.root.join("sync/bad")).unwrap();
    std::fs::create_dir(s.root.join("sync/bad/log-state")).unwrap();
    let o = cyrsync(&[
        "metrics",
        "--config-dir",
        s.root.to_str().unwrap(),
        "o\"d\\d",
        "bad",
        "bad",
    ]);
    assert_eq!(code(&o), 0);
    let text = stdout(&o);
    assert!(text.contains("{channel=\"o\\\"d\\\\d\"}"), "{text}");
    assert_eq!(
        text.matches("cyrus_sync_channel_readable{channel=\"bad\"}")
            .count(),
        1,
        "a channel named twice is reported once"
    );
    let m = parse_metrics(&text);
    assert_eq!(
        value(&m, "cyrus_sync_channel_readable", &[("channel", "bad")]),
        Some(0.0)
    );
    assert_eq!(
        value(&m, "cyrus_sync_runs_total", &[("channel", "bad")]),
        None
    );
    assert!(!text.contains("cyrus_barrier_"), "no lock dir without -C");

    assert_eq!(
        code(&cyrsync(&["metrics", "-C", "/nonexistent/imapd.conf"])),
        1
    );
    assert_eq!(code(&cyrsync(&["metrics", "--bogus"])), 2);
}
