//! 16 writer processes append 10,000 records each while another process
//! repeatedly begins, reads and ends the channel: every record must be read
//! exactly once, whole, and in each writer's order.
//!
//! One test in this binary, so that fork() happens with no other test
//! threads running.

use std::collections::HashMap;
use std::ptr;
use std::time::{Duration, Instant};

use cyrsync_abi_tests::*;

const WRITERS: usize = 16;
const RECORDS: usize = 10_000;

fn writer(dir: &TempDir, w: usize) -> i32 {
    let mut log = ptr::null_mut();
    let chan = cs(b"replica");
    if unsafe {
        cyrsync_synclog_new(
            dir.c().as_ptr(),
            chan.as_ptr(),
            ptr::null(),
            CYRSYNC_SYNCLOG_ENABLED,
            &mut log,
        )
    } != CYRSYNC_STATUS_OK
    {
        return 2;
    }
    for j in 0..RECORDS {
        // Alternate atoms and quoted names so torn records would show.
        let name = if j % 2 == 0 {
            format!("user.w{w}.m{j}")
        } else {
            format!("user.w{w}.Sent Items {j}")
        };
        let name = cs(name.as_bytes());
        if unsafe { cyrsync_synclog_record(log, CYRSYNC_RECORD_APPEND, name.as_ptr(), ptr::null()) }
            != CYRSYNC_STATUS_OK
        {
            return 3;
        }
    }
    unsafe { cyrsync_synclog_free(log) };
    0
}

fn reader(dir: &TempDir, out: &std::path::Path, done: &std::path::Path) -> i32 {
    let chan = cs(b"replica");
    let mut r = ptr::null_mut();
    unsafe { cyrsync_synclog_reader_new_channel(dir.c().as_ptr(), chan.as_ptr(), &mut r) };
    let mut lines = Vec::new();
    let mut runs = 0u32;
    loop {
        // Check "done" before begin: a begin that then finds no log means
        // every writer's record has been consumed.
        let finished = done.exists();
        match unsafe { cyrsync_synclog_reader_begin(r) } {
            s if s == CYRSYNC_STATUS_AGAIN => {
                if finished {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            s if s == CYRSYNC_STATUS_OK => {}
            _ => return 4,
        }
        runs += 1;
        for item in drain(r) {
            if item.kind != b"APPEND" || item.arg2.is_some() {
                return 5;
            }
            lines.push(item.arg1);
        }
        if unsafe { cyrsync_synclog_reader_end(r) } != CYRSYNC_STATUS_OK {
            return 6;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    unsafe { cyrsync_synclog_reader_free(r) };
    let mut text = format!("runs {runs}\n").into_bytes();
    for l in lines {
        text.extend_from_slice(&l);
        text.push(b'\n');
    }
    std::fs::write(out, text).map_or(7, |_| 0)
}

#[test]
fn concurrent_writers_and_reader_lose_and_duplicate_nothing() {
    let dir = TempDir::new("procs");
    let out = dir.path().join("reader.out");
    let done = dir.path().join("writers.done");
    let started = Instant::now();
    let reader_pid = fork_child(|| reader(&dir, &out, &done));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| fork_child(|| writer(&dir, w)))
        .collect();
    for (w, pid) in writers.into_iter().enumerate() {
        wait_ok(pid, &format!("writer {w}"));
    }
    std::fs::write(&done, b"").unwrap();
    wait_ok(reader_pid, "reader");
    let elapsed = started.elapsed();

    let text = std::fs::read(&out).unwrap();
    let mut lines = text.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    let runs = lines.next().unwrap();
    let mut next_expected: HashMap<usize, usize> = HashMap::new();
    let mut total = 0;
    for line in lines {
        let line = std::str::from_utf8(line).unwrap();
        let rest = line
            .strip_prefix("user.w")
            .unwrap_or_else(|| panic!("torn record {line:?}"));
        let (w, tail) = rest.split_once('.').unwrap();
        let w: usize = w.parse().unwrap();
        let j: usize = tail
            .strip_prefix('m')
            .or_else(|| tail.strip_prefix("Sent Items "))
            .unwrap_or_else(|| panic!("torn record {line:?}"))
            .parse()
            .unwrap();
        let expected = next_expected.entry(w).or_insert(0);
        assert_eq!(
            j, *expected,
            "writer {w}: record out of order, lost or duplicated"
        );
        *expected += 1;
        total += 1;
    }
    assert_eq!(total, WRITERS * RECORDS);
    assert!((0..WRITERS).all(|w| next_expected[&w] == RECORDS));
    assert!(!dir.path().join("sync/replica/log").exists());
    assert!(!dir.path().join("sync/replica/log-run").exists());
    eprintln!(
        "{} records from {WRITERS} processes read exactly once in {:?} ({})",
        total,
        elapsed,
        String::from_utf8_lossy(runs)
    );
}
