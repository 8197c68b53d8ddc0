//! The man pages: they render without a warning, are installed by
//! scripts/install.sh, and document every option the commands' --help
//! texts list.

use std::path::{Path, PathBuf};
use std::process::Command;

fn pages() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/man");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "1"))
        .collect();
    v.sort();
    v
}

#[test]
fn man_pages_render_without_warnings() {
    if Command::new("groff").arg("-v").output().is_err() {
        eprintln!("SKIP: groff is not installed");
        return;
    }
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        if let Some(so) = text.strip_prefix(".so ") {
            let target = so.trim().trim_start_matches("man1/");
            assert!(page.with_file_name(target).exists(), "{}", page.display());
            continue;
        }
        let out = Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(&page)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", page.display());
        assert!(
            out.stderr.is_empty(),
            "{}: {}",
            page.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_option_of_every_command_is_documented() {
    let man: String = pages()
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap().replace("\\-", "-"))
        .collect();
    for cmd in [
        &["--help"][..],
        &["channel", "--help"],
        &["channel", "check", "--help"],
        &["metrics", "--help"],
        &["withlock", "--help"],
        &["barrier", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cyrsync"))
            .args(cmd)
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        let mut options: Vec<&str> = help
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .collect();
        options.sort();
        options.dedup();
        for o in options {
            assert!(
                man.contains(o),
                "{o} (from cyrsync {cmd:?}) is not in docs/man"
            );
        }
        // and every command word of the top-level help has a page mention
        for line in help.lines() {
            if let Some(word) = line
                .strip_prefix("  ")
                .and_then(|l| l.split_whitespace().next())
            {
                if cmd == ["--help"] {
                    assert!(man.contains(&format!("cyrsync {word}")), "command {word}");
                }
            }
        }
    }
}
