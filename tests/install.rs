//! The install step: scripts/install.sh into a temporary prefix (and a
//! DESTDIR), then a C program compiled with
//! `pkg-config --cflags --libs --static cyrsync` links and runs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A target directory of its own, shared with tests/abi's archive builds
/// (same `cargo rustc` arguments, so one build serves both): the outer
/// `cargo test` may hold the lock of the workspace's own.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().join("c-archive")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn install(prefix: &Path, destdir: Option<&Path>) {
    let mut cmd = Command::new("sh");
    cmd.arg(repo().join("scripts/install.sh"))
        .args(["--debug", prefix.to_str().unwrap()])
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("DESTDIR");
    if let Some(d) = destdir {
        cmd.env("DESTDIR", d);
    }
    run(&mut cmd);
}

const PROGRAM: &str = r#"
#include <stdio.h>
#include <string.h>
#include <cyrsync.h>

int main(int argc, char **argv)
{
    struct cyrsync_barrier *b = NULL;
    (void)argc;
    if (strcmp(cyrsync_version(), CYRSYNC_VERSION) != 0) return 1;
    /* something that needs the native libraries: a barrier in argv[1] */
    if (cyrsync_barrier_open(argv[1], 1000, &b) != CYRSYNC_STATUS_OK) return 2;
    if (cyrsync_barrier_enter(b) != CYRSYNC_STATUS_OK) return 3;
    if (cyrsync_barrier_leave(b) != CYRSYNC_STATUS_OK) return 4;
    cyrsync_barrier_free(b);
    printf("cyrsync %s\n", cyrsync_version());
    return 0;
}
"#;

#[test]
fn installs_under_a_prefix_and_links_with_pkg_config() {
    let tmp = std::env::temp_dir().join(format!("cyrsync-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let prefix = tmp.join("prefix");
    install(&prefix, None);
    for f in [
        "include/cyrsync.h",
        "lib/libcyrsync.a",
        "lib/native-static-libs",
        "lib/pkgconfig/cyrsync.pc",
        "bin/cyrsync",
        "share/man/man1/cyrsync.1",
        "share/man/man1/cyrsync-channel.1",
        "share/doc/cyrsync/cyrsync-json.schema.json",
    ] {
        assert!(prefix.join(f).is_file(), "{f} not installed");
    }
    let pc = std::fs::read_to_string(prefix.join("lib/pkgconfig/cyrsync.pc")).unwrap();
    assert!(
        pc.contains(&format!("prefix={}\n", prefix.display())),
        "{pc}"
    );
    assert!(
        pc.contains(&format!("Version: {}\n", env!("CARGO_PKG_VERSION"))),
        "{pc}"
    );
    let private = pc
        .lines()
        .find_map(|l| l.strip_prefix("Libs.private: "))
        .expect("Libs.private");
    assert!(private.contains("-lpthread"), "{private}");

    let pkgconfig = |args: &[&str]| {
        run(Command::new("pkg-config")
            .args(args)
            .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")))
    };
    assert_eq!(
        pkgconfig(&["--modversion", "cyrsync"]).trim(),
        env!("CARGO_PKG_VERSION")
    );
    let flags = pkgconfig(&["--cflags", "--libs", "--static", "cyrsync"]);
    assert!(flags.contains(private.trim()), "{flags}");

    let src = tmp.join("prog.c");
    std::fs::write(&src, PROGRAM).unwrap();
    let exe = tmp.join("prog");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    run(Command::new(&cc)
        .args(["-std=c99", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .args(flags.split_whitespace()));
    let lock = tmp.join("lock");
    std::fs::create_dir_all(&lock).unwrap();
    let out = run(Command::new(&exe).arg(&lock));
    assert_eq!(out, format!("cyrsync {}\n", env!("CARGO_PKG_VERSION")));

    // the installed command runs
    let out = run(Command::new(prefix.join("bin/cyrsync")).arg("--help"));
    assert!(out.contains("metrics"), "{out}");

    // DESTDIR stages the same tree, with the final prefix in the .pc file
    let stage = tmp.join("stage");
    install(Path::new("/usr/local"), Some(&stage));
    let pc = std::fs::read_to_string(stage.join("usr/local/lib/pkgconfig/cyrsync.pc")).unwrap();
    assert!(pc.starts_with("prefix=/usr/local\n"), "{pc}");
    assert!(stage.join("usr/local/lib/libcyrsync.a").is_file());

    // usage errors
    let out = Command::new("sh")
        .arg(repo().join("scripts/install.sh"))
        .arg("relative/prefix")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absolute"));
    std::fs::remove_dir_all(&tmp).unwrap();
}
