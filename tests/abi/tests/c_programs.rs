//! C programs in tests/c, compiled with `cc` against include/cyrsync.h and
//! linked with exactly the link line README.md documents, which must also be
//! what rustc prints for the static archive's native libraries.

use std::process::Command;

use cyrsync_abi_tests::cprog::{build_archive, compile, documented_link_line, under_valgrind};
use cyrsync_abi_tests::TempDir;

#[test]
fn documented_link_line_builds_and_runs_a_c_client() {
    let (_, native) = build_archive();
    let link = documented_link_line();
    assert_eq!(link[0], "-lcyrsync");
    assert_eq!(
        link[1..],
        native[..],
        "README's link line differs from rustc's native-static-libs"
    );

    let dir = TempDir::new("cprog");
    let exe = dir.path().join("synclog_client");
    compile("synclog_client.c", &[], &exe);
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

    // Under valgrind, where it is installed: no invalid access, no leak.
    let config = dir.path().join("conf-valgrind");
    if let Some(out) = under_valgrind(&exe, &[config.as_os_str()]) {
        assert_eq!(out.stdout, expected);
    }
}
