//! tests/c/barrier_client.c, a C caller of the barrier the way a patched
//! Cyrus uses it, compiled with `cc -Werror` against include/cyrsync.h and
//! linked with the link line README.md documents.

use std::process::Command;

use cyrsync_abi_tests::cprog::{compile, under_valgrind};
use cyrsync_abi_tests::TempDir;

#[test]
fn c_client_uses_the_barrier_like_cyrus() {
    let dir = TempDir::new("barrier-c");
    let exe = dir.path().join("barrier_client");
    compile("barrier_client.c", &["-D_POSIX_C_SOURCE=200809L"], &exe);
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
    let lockdir = dir.path().join("lock-vg");
    std::fs::create_dir_all(&lockdir).unwrap();
    under_valgrind(&exe, &[lockdir.as_os_str()]);
}
