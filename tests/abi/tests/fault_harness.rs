//! The fault-injection harness tests itself on a plain shell (no cyrsync
//! involved), so that a harness bug cannot pass for a cyrsync property:
//! an injected errno reaches the program, `kill` kills at that call, the
//! trace lists the calls in scope only, and the tiny tmpfs really fills.

use std::process::Command;

use cyrsync_abi_tests::fault::{tiny_tmpfs, Fault, Interposer};
use cyrsync_abi_tests::TempDir;

fn sh(script: &str) -> Command {
    let mut c = Command::new("/bin/sh");
    c.args(["-c", script]);
    c
}

#[test]
fn injected_errno_reaches_the_program() {
    let dir = TempDir::new("fh-errno");
    let file = dir.path().join("f");
    let script = format!("printf hello > '{}'", file.display());
    let ip = Interposer::get();

    let run = ip.run(sh(&script), &[dir.path()], &[]);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(std::fs::read(&file).unwrap(), b"hello");

    let run = ip.run(
        sh(&script),
        &[dir.path()],
        &[Fault::new("write", 1, "ENOSPC")],
    );
    assert!(run.injected);
    assert!(!run.status.success());
    // dash's printf reports any failed write as "I/O error"
    assert!(run.stderr.contains("error"), "{}", run.stderr);
    assert!(std::fs::read(&file).unwrap().is_empty());
}

#[test]
fn the_program_sees_exactly_the_injected_errno_once() {
    let dir = TempDir::new("fh-once");
    let file = dir.path().join("f");
    std::fs::write(&file, b"content").unwrap();
    // cat reports strerror(errno): the errno must survive the interposer,
    // and a call must be counted once (the second open is not faulted)
    let script = format!("cat '{0}' '{0}'", file.display());
    let run = Interposer::get().run(
        sh(&script),
        &[dir.path()],
        &[Fault::new("open", 1, "EDQUOT")],
    );
    assert!(run.stderr.contains("Disk quota exceeded"), "{}", run.stderr);
    assert_eq!(run.stdout, "content");
    let (_, calls) = Interposer::get().calls(sh(&script), &[dir.path()]);
    let opens: Vec<u32> = calls
        .iter()
        .filter(|c| c.func == "open")
        .map(|c| c.nth)
        .collect();
    assert_eq!(opens, vec![1, 2]);
}

#[test]
fn short_write_and_kill() {
    let dir = TempDir::new("fh-short");
    let file = dir.path().join("f");
    let ip = Interposer::get();
    // printf(1) writes once; a short write makes it write the rest after
    let script = format!("printf 0123456789 > '{}'", file.display());
    let run = ip.run(
        sh(&script),
        &[dir.path()],
        &[Fault::new("write", 1, "short")],
    );
    assert!(run.injected);
    let got = std::fs::read(&file).unwrap();
    assert!(got.len() < 10 || got == b"0123456789", "{got:?}");

    let run = ip.run(sh(&script), &[dir.path()], &[Fault::new("open", 1, "kill")]);
    assert!(run.killed(), "{:?}", run.status);
    run.assert_no_signal("an injected kill is not a failure");
}

#[test]
fn trace_lists_calls_in_scope_only() {
    let inside = TempDir::new("fh-in");
    let outside = TempDir::new("fh-out");
    let script = format!(
        "echo a > '{}/x'; echo b > '{}/y'; cat '{}/x' > /dev/null",
        inside.path().display(),
        outside.path().display(),
        inside.path().display()
    );
    let (run, calls) = Interposer::get().calls(sh(&script), &[inside.path()]);
    assert!(run.status.success());
    assert!(calls
        .iter()
        .all(|c| c.path.starts_with(inside.path().to_str().unwrap())));
    assert!(calls.iter().any(|c| c.func == "open"), "{calls:?}");
    assert!(calls.iter().any(|c| c.func == "write"), "{calls:?}");

    // every call can be the faulted one, and the fault lands there
    let mut tried = 0;
    let n = Interposer::get().at_every_call(
        &[inside.path()],
        || {},
        || sh(&script),
        |_| true,
        "EIO",
        |_, run| {
            assert!(run.injected);
            run.assert_no_signal("EIO");
            tried += 1;
        },
    );
    assert_eq!(n, calls.len());
    assert_eq!(tried, n);
}

#[test]
fn tiny_tmpfs_fills_up() {
    let dir = TempDir::new("fh-tmpfs");
    let mnt = dir.path().join("mnt");
    let Some(out) = tiny_tmpfs(
        "64k",
        &mnt,
        &format!(
            "dd if=/dev/zero of='{0}/fill' bs=4k count=100 2>&1; echo dd=$?; \
             rm '{0}/fill'; echo ok > '{0}/after' && cat '{0}/after'",
            mnt.display()
        ),
    ) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("No space left on device"), "{text}");
    assert!(text.contains("dd=1"), "{text}");
    assert!(text.trim_end().ends_with("ok"), "{text}");
    // the mount was private: nothing is left on the host side
    assert!(!mnt.join("after").exists());
}
