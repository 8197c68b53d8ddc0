//! tests/c/barrier_client.c, a C caller of the barrier the way a patched
//! Cyrus uses it, compiled with `cc -Werror` against include/cyrsync.h and
//! linked with the link line README.md documents.

use std::path::{Path, PathBuf};
use std::process::Command;

use cyrsync_abi_tests::TempDir;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn documented_link_line() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.trim_start().starts_with("-lcyrsync "))
        .expect("README.md documents a link line starting with -lcyrsync");
    line.split_whitespace().map(str::to_owned).collect()
}

/// Build the static archive in its own target directory (the outer `cargo
/// test` may hold the workspace's lock); shared with c_programs.rs, so it is
/// built once.
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
fn c_client_uses_the_barrier_like_cyrus() {
    let lib_dir = build_archive();
    let dir = TempDir::new("barrier-c");
    let exe = dir.path().join("barrier_client");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args([
            "-std=c99",
            "-D_POSIX_C_SOURCE=200809L",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-g",
        ])
        .arg("-I")
        .arg(repo().join("include"))
        .arg(repo().join("tests/c/barrier_client.c"))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&lib_dir)
        .args(documented_link_line())
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed for barrier_client.c");
    let lockdir = dir.path().join("lock");
    std::fs::create_dir_all(&lockdir).unwrap();
    let out = Command::new(&exe).arg(&lockdir).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "C client failed:\n{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    assert!(
        stderr.contains("writers did not drain"),
        "the refused freeze was logged:\n{stderr}"
    );

    // Again under valgrind where it is installed (CI installs it): no
    // invalid access, no definite leak, in the parent or the forked child.
    if Command::new("valgrind").arg("--version").output().is_ok() {
        let lockdir = dir.path().join("lock-vg");
        std::fs::create_dir_all(&lockdir).unwrap();
        let out = Command::new("valgrind")
            .args([
                "--error-exitcode=99",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
            ])
            .arg(&exe)
            .arg(&lockdir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "C client failed under valgrind:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
