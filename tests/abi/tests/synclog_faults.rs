//! The sync log under faults, through the C ABI: a C driver
//! (tests/c/fault_synclog.c) runs one operation while the interposer fails
//! one of its system calls — every call of the operation in turn — with an
//! errno, a short write or read, or SIGKILL; and a real full tmpfs.
//!
//! The promises checked after every fault: the log holds only whole records
//! (the reader sets nothing aside), every record an append acknowledged is
//! read exactly once, nothing a reader did not finish is unlinked, and no
//! process dies of a signal other than the injected SIGKILL.
//!
//! Each test prints a line per (operation, fault) for the table in the
//! closing note: `cargo test --test synclog_faults -- --nocapture`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr;
use std::sync::OnceLock;

use cyrsync_abi_tests::fault::{tiny_tmpfs, Call, Interposer, Run};
use cyrsync_abi_tests::*;

fn driver() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let out = exe
            .parent()
            .unwrap()
            .join(format!("fault_synclog-{}", std::process::id()));
        cprog::compile("fault_synclog.c", &[], &out);
        out
    })
}

fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(driver());
    c.args(args);
    c
}

/// The record names the driver writes for `count` records of `prefix`.
fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            if i % 2 == 1 {
                format!("{prefix} {i}")
            } else {
                format!("{prefix}.{i}")
            }
        })
        .collect()
}

/// The record line cyrsync writes for an APPEND of `name`.
fn record(name: &str) -> String {
    if name.contains(' ') {
        format!("APPEND \"{name}\"\n")
    } else {
        format!("APPEND {name}\n")
    }
}

/// Acknowledged indices of an append run.
fn acked(run: &Run) -> Vec<usize> {
    run.lines()
        .filter_map(|l| l.strip_prefix("ACK "))
        .map(|n| n.parse().unwrap())
        .collect()
}

/// Parse `bytes` through the C reader: the APPEND names and how many lines
/// were set aside.
fn parse(bytes: &[u8]) -> (Vec<String>, usize) {
    let mut r = ptr::null_mut();
    assert_eq!(
        unsafe { cyrsync_synclog_reader_new_content(bytes.as_ptr().cast(), bytes.len(), &mut r) },
        CYRSYNC_STATUS_OK
    );
    assert_eq!(
        unsafe { cyrsync_synclog_reader_begin(r) },
        CYRSYNC_STATUS_OK
    );
    let (mut names, mut aside) = (Vec::new(), 0);
    loop {
        let mut item: cyrsync_synclog_item = unsafe { std::mem::zeroed() };
        match unsafe { cyrsync_synclog_reader_next(r, &mut item) } {
            CYRSYNC_STATUS_OK => {
                let arg = unsafe { std::ffi::CStr::from_ptr(item.arg1) };
                names.push(arg.to_string_lossy().into_owned());
            }
            CYRSYNC_STATUS_SET_ASIDE => aside += 1,
            CYRSYNC_STATUS_EOF => break,
            other => panic!("reader status {other}"),
        }
    }
    unsafe { cyrsync_synclog_reader_free(r) };
    (names, aside)
}

fn count_of<'a>(names: impl IntoIterator<Item = &'a String>) -> BTreeMap<&'a str, usize> {
    let mut m = BTreeMap::new();
    for n in names {
        *m.entry(n.as_str()).or_insert(0) += 1;
    }
    m
}

/// One line of the closing note's table.
fn table_row(op: &str, fault: &str, points: usize, lost: usize, signals: usize) {
    eprintln!(
        "TABLE | {op:<28} | {fault:<12} | {points:>5} points | lost {lost} | signals {signals} |"
    );
}

const FAULTS: &[&str] = &[
    "ENOSPC",
    "EIO",
    "EDQUOT",
    "EINTR",
    "short",
    "short+ENOSPC",
    "kill",
];

#[test]
fn append_at_every_call_leaves_whole_records_and_loses_nothing_acknowledged() {
    let ip = Interposer::get();
    let dir = TempDir::new("sf-append");
    let log = dir.path().join("sync/chan/log");
    let before = names("user.before", 2);
    let prefix = "user.x";
    let expected = names(prefix, 3);
    let d = dir.path().to_str().unwrap().to_owned();
    let setup = || {
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        // every run creates the group-commit file anew: its creation is
        // part of the calls faulted
        let _ = std::fs::remove_file(log.with_file_name("log-commit"));
        let seed: String = before.iter().map(|n| record(n)).collect();
        std::fs::write(&log, seed).unwrap();
    };
    for &action in FAULTS {
        let (mut lost, mut signals) = (0, 0);
        let points = ip.at_every_call(
            &[dir.path()],
            setup,
            || cmd(&["append", &d, "chan", "3", prefix]),
            |_| true,
            action,
            |call: &Call, run: &Run| {
                let what = format!("append, {action} at {} #{}", call.func, call.nth);
                run.assert_no_signal(&what);
                if run.signal().is_some_and(|s| s != libc::SIGKILL) {
                    signals += 1;
                }
                let bytes = std::fs::read(&log).unwrap();
                let (got, aside) = parse(&bytes);
                assert_eq!(
                    aside,
                    0,
                    "{what}: a partial record:\n{}",
                    bytes.escape_ascii()
                );
                let counts = count_of(&got);
                for n in &before {
                    assert_eq!(counts.get(n.as_str()), Some(&1), "{what}: lost {n}");
                }
                for i in acked(run) {
                    let n = &expected[i];
                    if counts.get(n.as_str()) != Some(&1) {
                        lost += 1;
                    }
                    assert_eq!(counts.get(n.as_str()), Some(&1), "{what}: acked {n}");
                }
                if action == "EINTR" || action == "short" {
                    // retried or completed: nothing may fail
                    assert_eq!(acked(run).len(), 3, "{what}: {}", run.stdout);
                } else if !run.killed() {
                    // a refused record gets a status and a log line naming it
                    for l in run.lines().filter(|l| l.starts_with("NAK ")) {
                        let i: usize = l.split(' ').nth(1).unwrap().parse().unwrap();
                        let shown = record(&expected[i]).trim_end().escape_default().to_string();
                        assert!(
                            run.stderr.contains("IOERROR") && run.stderr.contains(&expected[i]),
                            "{what}: no log line naming {shown}:\n{}",
                            run.stderr
                        );
                    }
                }
                // after the fault, the next append works and the log reads
                // cleanly
                let after = Interposer::get().run(
                    cmd(&["append", &d, "chan", "1", "user.after"]),
                    &[],
                    &[],
                );
                assert_eq!(acked(&after), vec![0], "{what}: {}", after.stdout);
                let (got, aside) = parse(&std::fs::read(&log).unwrap());
                assert_eq!(aside, 0, "{what}: after recovery");
                assert_eq!(got.last().map(String::as_str), Some("user.after.0"));
            },
        );
        assert!(points >= 15, "only {points} calls in three appends?");
        table_row("append (3 records)", action, points, lost, signals);
    }
}

/// A channel log of good records with one torn line in the middle (as a
/// C writer that hit ENOSPC leaves it).
fn reader_log(records: &[String]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (i, n) in records.iter().enumerate() {
        bytes.extend_from_slice(record(n).as_bytes());
        if i == 1 {
            bytes.extend_from_slice(b"APPEND \"user.torn\n");
        }
    }
    bytes
}

/// Items of a read cycle, and its END status (None: no END line).
fn cycle(run: &Run) -> (Vec<String>, Option<i32>, Option<i32>) {
    let items = run
        .lines()
        .filter_map(|l| l.strip_prefix("ITEM APPEND\t"))
        .map(str::to_owned)
        .collect();
    let status = |tag: &str| {
        run.lines()
            .find_map(|l| l.strip_prefix(tag))
            .map(|s| s.parse().unwrap())
    };
    (items, status("BEGIN "), status("END "))
}

#[test]
fn reader_cycle_at_every_call_never_unlinks_what_it_did_not_finish() {
    let ip = Interposer::get();
    let dir = TempDir::new("sf-read");
    let chan = dir.path().join("sync/chan");
    let records = names("user.r", 5);
    let content = reader_log(&records);
    let d = dir.path().to_str().unwrap().to_owned();
    let setup = || {
        let _ = std::fs::remove_dir_all(&chan);
        std::fs::create_dir_all(&chan).unwrap();
        std::fs::write(chan.join("log"), &content).unwrap();
    };
    for &action in FAULTS {
        let (mut lost, mut signals) = (0, 0);
        let points = ip.at_every_call(
            &[dir.path()],
            setup,
            || cmd(&["read", &d, "chan"]),
            |_| true,
            action,
            |call: &Call, run: &Run| {
                let what = format!("read cycle, {action} at {} #{}", call.func, call.nth);
                run.assert_no_signal(&what);
                if run.signal().is_some_and(|s| s != libc::SIGKILL) {
                    signals += 1;
                }
                let (items, _, end) = cycle(run);
                // what the next sync_client run finds
                let next = ip.run(cmd(&["read", &d, "chan"]), &[], &[]);
                let (again, next_begin, next_end) = cycle(&next);
                if end == Some(CYRSYNC_STATUS_OK as i32) {
                    // finished: every record delivered once, nothing left
                    assert_eq!(items, records, "{what}: {}", run.stdout);
                    assert_eq!(next_begin, Some(CYRSYNC_STATUS_AGAIN as i32), "{what}");
                } else {
                    // unfinished: the next run gets every record
                    if again != records {
                        lost += 1;
                    }
                    assert_eq!(
                        again, records,
                        "{what}:\n{}\nthen:\n{}",
                        run.stdout, next.stdout
                    );
                    assert_eq!(next_end, Some(CYRSYNC_STATUS_OK as i32), "{what}");
                }
                // the torn line is kept for the admin, whole
                let bad = std::fs::read(chan.join("log-bad")).unwrap_or_default();
                assert!(
                    bad.windows(18).any(|w| w == b"APPEND \"user.torn\n"),
                    "{what}: log-bad is {:?}",
                    bad.escape_ascii().to_string()
                );
                assert_eq!(
                    parse(&bad).0.len(),
                    0,
                    "{what}: log-bad holds only the bad line"
                );
            },
        );
        assert!(points >= 8, "only {points} calls in a read cycle?");
        table_row("reader begin/next/end", action, points, lost, signals);
    }
}

#[test]
fn file_truncated_while_read_is_a_status_not_sigbus() {
    // Bigger than one read chunk, so the reader has not seen it all when
    // the file shrinks under it (a mapped reader dies of SIGBUS here).
    let dir = TempDir::new("sf-trunc");
    let file = dir.path().join("sync/log-run");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let records = names("user.t", 200_000);
    let content: String = records.iter().map(|n| record(n)).collect();
    assert!(content.len() > 2 << 20);
    std::fs::write(&file, &content).unwrap();
    let fork_reader = |truncate_to: u64| {
        let file = file.clone();
        fork_child(move || {
            let mut r = ptr::null_mut();
            let path = cpath(&file);
            unsafe { cyrsync_synclog_reader_new_file(path.as_ptr(), &mut r) };
            assert_eq!(
                unsafe { cyrsync_synclog_reader_begin(r) },
                CYRSYNC_STATUS_OK
            );
            let mut item: cyrsync_synclog_item = unsafe { std::mem::zeroed() };
            for _ in 0..10 {
                assert_eq!(
                    unsafe { cyrsync_synclog_reader_next(r, &mut item) },
                    CYRSYNC_STATUS_OK
                );
            }
            std::fs::OpenOptions::new()
                .write(true)
                .open(&file)
                .unwrap()
                .set_len(truncate_to)
                .unwrap();
            let mut n = 10;
            let last = loop {
                match unsafe { cyrsync_synclog_reader_next(r, &mut item) } {
                    CYRSYNC_STATUS_OK => n += 1,
                    other => break other,
                }
            };
            unsafe { cyrsync_synclog_reader_free(r) };
            // the first chunk was read before the cut; the rest is missing,
            // and that is an I/O error, not a quiet end
            if last == CYRSYNC_STATUS_IO_ERROR && n < 200_000 {
                0
            } else {
                eprintln!("last status {last} after {n} items");
                1
            }
        })
    };
    for cut in [0, 100, 1 << 20] {
        std::fs::write(&file, &content).unwrap();
        wait_ok(
            fork_reader(cut),
            &format!("reader of a file cut to {cut} bytes"),
        );
    }
}

#[test]
fn a_second_reader_of_a_channel_is_refused_and_touches_nothing() {
    let dir = TempDir::new("sf-busy");
    let chan = dir.path().join("sync/chan");
    std::fs::create_dir_all(&chan).unwrap();
    std::fs::write(chan.join("log"), record("user.first")).unwrap();
    let mut first = ptr::null_mut();
    let c = cs(b"chan");
    unsafe { cyrsync_synclog_reader_new_channel(dir.c().as_ptr(), c.as_ptr(), &mut first) };
    assert_eq!(
        unsafe { cyrsync_synclog_reader_begin(first) },
        CYRSYNC_STATUS_OK
    );
    // meanwhile a writer starts the next log
    std::fs::write(chan.join("log"), record("user.second")).unwrap();
    let d = dir.path().to_str().unwrap();
    let second = Interposer::get().run(cmd(&["read", d, "chan"]), &[], &[]);
    assert!(
        second
            .stdout
            .contains(&format!("BEGIN {}", CYRSYNC_STATUS_BUSY)),
        "{}\n{}",
        second.stdout,
        second.stderr
    );
    assert!(second
        .stderr
        .contains("another reader is working on this channel"));
    assert_eq!(
        std::fs::read(chan.join("log-run")).unwrap(),
        record("user.first").as_bytes()
    );
    assert_eq!(
        std::fs::read(chan.join("log")).unwrap(),
        record("user.second").as_bytes()
    );
    let items = drain(first);
    assert_eq!(items.len(), 1);
    assert_eq!(
        unsafe { cyrsync_synclog_reader_end(first) },
        CYRSYNC_STATUS_OK
    );
    unsafe { cyrsync_synclog_reader_free(first) };
    // once the first is gone the second gets the channel
    let second = Interposer::get().run(cmd(&["read", d, "chan"]), &[], &[]);
    assert_eq!(
        cycle(&second).0,
        vec!["user.second".to_owned()],
        "{}",
        second.stdout
    );
}

#[test]
fn real_full_filesystem() {
    let dir = TempDir::new("sf-tmpfs");
    let mnt = dir.path().join("cfg");
    let drv = driver().display().to_string();
    // Long names: a record crosses a page boundary, so the kernel takes part
    // of it and then says ENOSPC.
    let long = format!("user.{}", "n".repeat(700));
    let script = format!(
        r#"
m='{mnt}'
mkdir -p "$m/sync/chan"
'{drv}' append "$m" chan 4 user.before
# fill the file system, leaving a little room
dd if=/dev/zero of="$m/filler" bs=1k count=1000 2>/dev/null
echo "=== during"
'{drv}' append "$m" chan 12 '{long}'
echo "=== freed"
rm -f "$m/filler"
'{drv}' append "$m" chan 3 user.after
echo "=== read"
'{drv}' read "$m" chan
"#,
        mnt = mnt.display()
    );
    let Some(out) = tiny_tmpfs("96k", &mnt, &script) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let errs = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.signal_free(), "a process died: {text}\n{errs}");
    let section = |name: &str| -> String {
        text.split(&format!("=== {name}\n"))
            .nth(1)
            .unwrap_or("")
            .split("=== ")
            .next()
            .unwrap()
            .to_owned()
    };
    let during = section("during");
    let acks = |s: &str| -> Vec<usize> {
        s.lines()
            .filter_map(|l| l.strip_prefix("ACK "))
            .map(|n| n.parse().unwrap())
            .collect()
    };
    let naks = during.lines().filter(|l| l.starts_with("NAK ")).count();
    assert!(naks > 0, "the disk never filled:\n{text}");
    assert!(errs.contains("No space left on device"), "{errs}");
    assert_eq!(acks(&section("freed")), vec![0, 1, 2], "{text}");
    let read = section("read");
    let items: Vec<&str> = read
        .lines()
        .filter_map(|l| l.strip_prefix("ITEM APPEND\t"))
        .collect();
    assert!(
        !read.contains("NEXT "),
        "a partial record was set aside:\n{read}"
    );
    let mut want: Vec<String> = names("user.before", 4);
    want.extend(
        acks(&during)
            .into_iter()
            .map(|i| names(&long, 12)[i].clone()),
    );
    want.extend(names("user.after", 3));
    assert_eq!(items, want, "{text}");
    table_row(
        "append on a full tmpfs",
        "real ENOSPC",
        12,
        want.len() - items.len(),
        0,
    );
    eprintln!(
        "full tmpfs: {} of 12 appends refused while full, {} acknowledged, all read back",
        naks,
        acks(&during).len()
    );
}

trait SignalFree {
    fn signal_free(&self) -> bool;
}

impl SignalFree for std::process::ExitStatus {
    fn signal_free(&self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        self.signal().is_none()
    }
}

/// Group commit across processes: writers append at once while one of them
/// is killed (or fails) at its first `fdatasync` — when it flushes, it flushes
/// as the leader for the others. Nobody waits forever, every acknowledged
/// record is in the log exactly once, the log parses cleanly.
#[test]
fn group_commit_survives_its_leader() {
    let ip = Interposer::get();
    for action in ["kill", "EIO"] {
        let dir = TempDir::new("sf-leader");
        let d = dir.path().to_str().unwrap().to_owned();
        std::fs::create_dir_all(dir.path().join("sync/chan")).unwrap();
        // the group-commit file exists before the writers start
        let first = ip.run(cmd(&["append", &d, "chan", "1", "user.first"]), &[], &[]);
        assert_eq!(acked(&first), vec![0]);
        let started = std::time::Instant::now();
        let writers: Vec<_> = (0..6)
            .map(|w| {
                let d = d.clone();
                std::thread::spawn(move || {
                    let prefix = format!("user.w{w}");
                    let faults = if w == 0 {
                        vec![cyrsync_abi_tests::fault::Fault::new("fdatasync", 1, action)
                            .from_then_on()]
                    } else {
                        vec![]
                    };
                    let scope = std::path::PathBuf::from(&d);
                    let run = Interposer::get().run(
                        cmd(&["append", &d, "chan", "200", &prefix]),
                        &[scope.as_path()],
                        &faults,
                    );
                    (prefix, run)
                })
            })
            .collect();
        let runs: Vec<(String, Run)> = writers.into_iter().map(|h| h.join().unwrap()).collect();
        let took = started.elapsed();
        let (got, aside) = parse(&std::fs::read(dir.path().join("sync/chan/log")).unwrap());
        assert_eq!(aside, 0);
        let counts = count_of(&got);
        let mut acks = 0;
        for (prefix, run) in &runs {
            run.assert_no_signal(&format!("{action}: writer {prefix}"));
            let expected = names(prefix, 200);
            for i in acked(run) {
                assert_eq!(
                    counts.get(expected[i].as_str()),
                    Some(&1),
                    "{action}: {prefix} #{i}"
                );
                acks += 1;
            }
            if !prefix.ends_with("w0") {
                // the others are never made to fail by the leader's death
                if action == "kill" {
                    assert_eq!(acked(run).len(), 200, "{}", run.stdout);
                }
            }
        }
        let victim = &runs[0].1;
        if action == "kill" {
            assert!(victim.killed() || acked(victim).len() == 200);
        } else if victim.injected {
            // a flush that failed as leader fails the records it was to
            // cover (its own and those of the writers waiting on it): some
            // append said so; records covered by others' flushes are fine
            let naks: usize = runs
                .iter()
                .map(|(_, r)| r.lines().filter(|l| l.starts_with("NAK ")).count())
                .sum();
            assert!(naks > 0, "a failed flush was reported to nobody");
            assert!(
                victim.stderr.contains("fdatasync failed"),
                "{}",
                victim.stderr
            );
        }
        // bounded: a dead leader costs the others one takeover
        assert!(took < std::time::Duration::from_secs(60), "{took:?}");
        eprintln!(
            "group commit, leader {action} at its first fdatasync: {acks} acknowledged, all in \
             the log once, {took:?}"
        );
    }
}
