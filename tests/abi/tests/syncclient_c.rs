//! A C host of the sync_client executor (tests/c/syncclient_client.c),
//! compiled with `cc` against include/cyrsync.h and linked with the link
//! line README.md documents: proves the callback table and the run API are
//! usable from C as a patched Cyrus will use them.

use std::path::{Path, PathBuf};
use std::process::Command;

use cyrsync_abi_tests::TempDir;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn link_line() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.trim_start().starts_with("-lcyrsync "))
        .expect("README.md documents a link line starting with -lcyrsync");
    line.split_whitespace().map(str::to_owned).collect()
}

/// The static archive, built as c_programs.rs builds it (same directory,
/// so the second build is a cache hit).
fn build_archive() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target_dir = exe.ancestors().nth(3).unwrap().join("c-archive");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(repo())
        .args([
            "rustc",
            "-p",
            "cyrsync",
            "--lib",
            "--crate-type",
            "staticlib",
            "--target-dir",
        ])
        .arg(&target_dir)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo rustc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target_dir.join("debug")
}

#[test]
fn c_host_runs_a_plan_with_deferral() {
    let lib_dir = build_archive();
    let dir = TempDir::new("sc-cprog");
    let exe = dir.path().join("syncclient_client");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-g"])
        .arg("-I")
        .arg(repo().join("include"))
        .arg(repo().join("tests/c/syncclient_client.c"))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&lib_dir)
        .args(link_line())
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed");
    let conf = dir.path().join("conf");
    let out = Command::new(&exe).arg(&conf).arg("D").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "C host failed:\n{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "MAILBOXES user.u2.Sent\n\
         RESTART\n\
         MAILBOXES user.u3\n\
         RESTART\n\
         QUOTA user.u2\n\
         SEEN u3 user.u3.x\n\
         SUB u2 user.u2.Sent\n\
         USER u1\n\
         RESTART\n\
         done=4 deferred=2 promoted=0 bailed=0 cyrus_error=0 calls=6\n"
    );
    assert_eq!(
        std::fs::read_to_string(conf.join("sync/ch/log")).unwrap(),
        "MAILBOX user.u3\nSEEN u3 user.u3.x\n"
    );
    assert!(
        stderr.contains("SYNCNOTICE: sync run finished channel=<ch> policy=<D>"),
        "{stderr}"
    );
}
