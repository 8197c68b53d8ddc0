//! `cyrsync withlock` and `cyrsync barrier status`, run as the built binary:
//! exit statuses, the environment the command gets, -C.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use cyrsync::barrier::Barrier;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("cyrsync-cli-{tag}-{}", std::process::id()));
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

fn cyrsync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cyrsync"))
        .args(args)
        .output()
        .expect("run cyrsync")
}

fn withlock(dir: &Path, extra: &[&str]) -> Output {
    let d = dir.to_str().unwrap();
    let mut args = vec!["withlock", "--lock-dir", d];
    args.extend_from_slice(extra);
    cyrsync(&args)
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn withlock_exit_statuses() {
    let t = TempDir::new("withlock");
    let dir = t.0.as_path();
    let d = dir.to_str().unwrap();

    let o = withlock(dir, &["--sync", d, "--", "true"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("consistent"));
    assert_eq!(code(&withlock(dir, &["--", "false"])), 1);
    // The command gets CYRUS_HAVELOCK_GLOBAL=1 and is searched in PATH.
    let o = withlock(
        dir,
        &["--", "sh", "-c", "test \"$CYRUS_HAVELOCK_GLOBAL\" = 1"],
    );
    assert_eq!(code(&o), 0);
    // Usage errors.
    assert_eq!(code(&withlock(dir, &[])), 2);
    assert_eq!(
        code(&withlock(dir, &["--max-freeze", "soon", "--", "true"])),
        2
    );
    assert_eq!(code(&cyrsync(&["withlock", "--help"])), 0);
    // A command that cannot be started.
    assert_eq!(
        code(&withlock(dir, &["--", "/nonexistent/cyrsync-test"])),
        5
    );
    // The command outlives the bound: inconsistent, whatever it returns.
    let o = withlock(dir, &["--max-freeze", "200ms", "--", "sleep", "0.6"]);
    assert_eq!(code(&o), 4, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("NOT consistent"));

    // Could not freeze: a writer inside that does not leave in time...
    let writer = Barrier::open(dir, Duration::from_secs(5)).unwrap();
    writer.enter().unwrap();
    let o = withlock(dir, &["--max-freeze", "200ms", "--", "true"]);
    assert_eq!(code(&o), 3, "{}", String::from_utf8_lossy(&o.stderr));
    writer.leave().unwrap();
    // ... or another freeze in force.
    let token = writer.freeze(Duration::from_secs(10)).unwrap();
    let o = withlock(dir, &["--", "true"]);
    assert_eq!(code(&o), 3);
    assert!(String::from_utf8_lossy(&o.stderr).contains("already frozen"));
    // And the status shows it.
    let o = cyrsync(&["barrier", "status", "--lock-dir", d]);
    assert_eq!(code(&o), 0);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("frozen by pid {} (alive)", std::process::id())),
        "{out}"
    );
    assert!(writer.thaw(token).unwrap().consistent());
}

#[test]
fn config_file_and_status() {
    let t = TempDir::new("conf");
    let confdir = t.0.join("config");
    std::fs::create_dir_all(confdir.join("lock")).unwrap();
    let conf = t.0.join("imapd.conf");
    std::fs::write(
        &conf,
        format!(
            "# test\nconfigdirectory: {}\npartition-default: /tmp\n",
            confdir.display()
        ),
    )
    .unwrap();
    let c = conf.to_str().unwrap();
    let o = cyrsync(&["withlock", "-C", c, "--", "true"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(confdir.join("lock/cyrsync-barrier").exists());

    let writer = Barrier::open(&confdir.join("lock"), Duration::from_secs(5)).unwrap();
    writer.enter().unwrap();
    writer.enter().unwrap();
    let o = cyrsync(&["barrier", "status", "-C", c]);
    assert_eq!(code(&o), 0);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("state: not frozen"), "{out}");
    assert!(out.contains("1 live") && out.contains("1 inside"), "{out}");
    writer.leave().unwrap();
    writer.leave().unwrap();

    // A config without configdirectory cannot be used.
    std::fs::write(&conf, "partition-default: /tmp\n").unwrap();
    assert_eq!(code(&cyrsync(&["withlock", "-C", c, "--", "true"])), 3);
    assert_eq!(code(&cyrsync(&["barrier", "bogus"])), 2);
}

#[test]
fn status_only_reads_and_speaks_json() {
    let t = TempDir::new("status-ro");
    let lock = t.0.join("lock");
    let l = lock.to_str().unwrap();
    // Nothing there: an error, and nothing created.
    let o = cyrsync(&["barrier", "status", "--lock-dir", l]);
    assert_eq!(code(&o), 1);
    assert!(!lock.exists(), "status created the lock directory");
    std::fs::create_dir_all(&lock).unwrap();
    let o = cyrsync(&["barrier", "status", "--lock-dir", l, "--json"]);
    assert_eq!(code(&o), 1);
    assert!(
        !lock.join("cyrsync-barrier").exists(),
        "status created the file"
    );

    let writer = Barrier::open(&lock, Duration::from_secs(5)).unwrap();
    writer.enter().unwrap();
    let o = cyrsync(&["barrier", "status", "--lock-dir", l, "--json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let me = std::process::id();
    assert!(
        out.starts_with('{') && out.trim_end().ends_with('}'),
        "{out}"
    );
    assert!(out.contains("\"frozen\":false"), "{out}");
    assert!(out.contains("\"slot_count\":16384"), "{out}");
    assert!(
        out.contains(&format!(
            "{{\"slot\":0,\"pid\":{me},\"depth\":1,\"alive\":true}}"
        )),
        "{out}"
    );
    // Exactly one slot: the status command took none.
    assert_eq!(out.matches("\"slot\":").count(), 1, "{out}");
    writer.leave().unwrap();
}

#[test]
fn reset_repairs_a_damaged_file_and_refuses_while_it_is_used() {
    let t = TempDir::new("reset");
    let lock = t.0.join("lock");
    let l = lock.to_str().unwrap();
    std::fs::create_dir_all(&lock).unwrap();
    let file = lock.join("cyrsync-barrier");
    std::fs::write(&file, b"garbage").unwrap();
    let e = Barrier::open(&lock, Duration::from_secs(1)).unwrap_err();
    assert!(e.to_string().contains("cyrsync barrier reset"), "{e}");
    assert_eq!(std::fs::read(&file).unwrap(), b"garbage");
    let o = cyrsync(&["barrier", "reset", "--lock-dir", l, "--slots", "128"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("replaced"));
    let b = Barrier::open(&lock, Duration::from_secs(1)).unwrap();
    let o = cyrsync(&["barrier", "status", "--lock-dir", l, "--json"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"slot_count\":128"));
    // valid: left alone
    let o = cyrsync(&["barrier", "reset", "--lock-dir", l]);
    assert_eq!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("left as it is"));
    // damaged while a process uses it: refused
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        f.write_all_at(&7u32.to_ne_bytes(), 8).unwrap();
    }
    let o = cyrsync(&["barrier", "reset", "--lock-dir", l]);
    assert_eq!(code(&o), 1);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    drop(b);
    // (a child another test forks holds copies of our descriptors and
    // mapping until it execs: a moment)
    let mut o = cyrsync(&["barrier", "reset", "--lock-dir", l]);
    for _ in 0..50 {
        if code(&o) == 0 || !String::from_utf8_lossy(&o.stderr).contains("in use") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        o = cyrsync(&["barrier", "reset", "--lock-dir", l]);
    }
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        code(&cyrsync(&["barrier", "reset", "--lock-dir", l, "--json"])),
        2
    );
}
