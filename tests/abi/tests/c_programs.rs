//! C programs in tests/c, compiled with `cc` against include/cyrsync.h and
//! linked with exactly the link line README.md documents, which must also be
//! what rustc prints for the static archive's native libraries.

use std::path::{Path, PathBuf};
use std::process::Command;

use cyrsync_abi_tests::TempDir;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The link line between the README's markers.
fn documented_link_line() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.trim_start().starts_with("-lcyrsync "))
        .expect("README.md documents a link line starting with -lcyrsync");
    line.split_whitespace().map(str::to_owned).collect()
}

/// Build the static archive with the same cargo and report the native
/// libraries rustc says it needs.
fn build_archive(target_dir: &Path) -> (PathBuf, Vec<String>) {
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
        .arg(target_dir)
        .args(["--", "--print", "native-static-libs"])
        .output()
        .expect("run cargo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo rustc failed:\n{stderr}");
    let libs = stderr
        .lines()
        .find_map(|l| {
            l.split_once("native-static-libs: ")
                .map(|(_, libs)| libs.to_owned())
        })
        .expect("rustc printed native-static-libs");
    (
        target_dir.join("debug"),
        libs.split_whitespace().map(str::to_owned).collect(),
    )
}

fn target_dir() -> PathBuf {
    // Its own directory: the outer `cargo test` may still hold the lock on
    // the workspace's.
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().join("c-archive")
}

fn compile(source: &str, lib_dir: &Path, link: &[String], out: &Path) {
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-g"])
        .arg("-I")
        .arg(repo().join("include"))
        .arg(repo().join("tests/c").join(source))
        .arg("-o")
        .arg(out)
        .arg("-L")
        .arg(lib_dir)
        .args(link)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed for {source}");
}

#[test]
fn documented_link_line_builds_and_runs_a_c_client() {
    let (lib_dir, native) = build_archive(&target_dir());
    let link = documented_link_line();
    assert_eq!(link[0], "-lcyrsync");
    assert_eq!(
        link[1..],
        native[..],
        "README's link line differs from rustc's native-static-libs"
    );

    let dir = TempDir::new("cprog");
    let exe = dir.path().join("synclog_client");
    compile("synclog_client.c", &lib_dir, &link, &exe);
    let config = dir.path().join("conf");
    let out = Command::new(&exe).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "C client failed:\n{stderr}");
    assert!(
        stderr.contains("illegal line break"),
        "log callback got the refusal:\n{stderr}"
    );
    let expected: &[u8] = b"USER|fred|-\n\
MAILBOX|user.fred.Sent Items|-\n\
RENAME|user.a|user.b\\c\n\
MAILBOX|user.a|-\n\
MAILBOX|user.b\\c|-\n\
SEEN|fred|user.fred.caf\xe9\n\
QUOTA||-\n\
SUB|fred|{x}\n\
UNUSER|gone|-\n";
    assert_eq!(
        out.stdout.escape_ascii().to_string(),
        expected.escape_ascii().to_string()
    );
}
