//! Sync log benchmark: appends/s and latency with 1, 4 and 16 writer
//! processes, cyrsync's writer (each record flushed by its writer after the
//! unlock, and with group commit, the default) beside (a) a bare
//! open/write/fsync/close loop with no lock and (b) the same writer holding
//! the lock across the flush, as Cyrus's C code does; then the reader's
//! parse rate. All in one run, so the ratios compare like with like on a
//! noisy machine.
//!
//!     cargo bench --bench synclog [-- SECONDS_PER_CELL]

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cyrsync::synclog::{append_line, append_line_grouped, FlushMode, GroupCell, Reader};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Raw,
    CLike,
    Cyrsync,
    Group,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Raw => "(a) open/write/fsync/close, no lock",
            Mode::CLike => "(b) lock held across fsync (as C)",
            Mode::Cyrsync => "cyrsync, own flush after unlock",
            Mode::Group => "cyrsync, group commit (default)",
        }
    }
}

fn append(mode: Mode, path: &Path, line: &[u8], group: &GroupCell) {
    match mode {
        Mode::Raw => {
            let mut f = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .open(path)
                .unwrap();
            f.write_all(line).unwrap();
            f.sync_all().unwrap();
        }
        Mode::CLike => append_line(path, line, FlushMode::UnderLock).unwrap(),
        Mode::Cyrsync => append_line(path, line, FlushMode::AfterUnlock).unwrap(),
        Mode::Group => append_line_grouped(path, line, group).unwrap(),
    }
}

struct Cell {
    appends: usize,
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

fn run_cell(dir: &Path, mode: Mode, writers: usize, secs: f64) -> Cell {
    let log = dir.join("sync/log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(log.with_file_name("log-commit"));
    let start = Instant::now() + Duration::from_millis(50);
    let deadline = start + Duration::from_secs_f64(secs);
    let mut pids = Vec::new();
    for w in 0..writers {
        let out = dir.join(format!("lat.{w}"));
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let mut lat = Vec::new();
            let group = GroupCell::new();
            while Instant::now() < start {}
            let mut j = 0u64;
            while Instant::now() < deadline {
                let line = format!("APPEND user.bench{w}.folder{j}\n");
                let t = Instant::now();
                append(mode, &log, line.as_bytes(), &group);
                lat.extend_from_slice(&(t.elapsed().as_nanos() as u64).to_le_bytes());
                j += 1;
            }
            std::fs::write(out, lat).unwrap();
            unsafe { libc::_exit(0) };
        }
        pids.push(pid);
    }
    for pid in pids {
        let mut st = 0;
        unsafe { libc::waitpid(pid, &mut st, 0) };
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0);
    }
    let mut lat: Vec<u64> = Vec::new();
    for w in 0..writers {
        let bytes = std::fs::read(dir.join(format!("lat.{w}"))).unwrap();
        lat.extend(
            bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap())),
        );
    }
    let lines = std::fs::read(&log)
        .unwrap()
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    assert_eq!(lines, lat.len(), "every append is in the log");
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    Cell {
        appends: lat.len(),
        per_sec: lat.len() as f64 / secs,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

fn parse_rate(dir: &Path) -> (f64, usize, f64) {
    // ~100 MB of typical records: atoms, quoted names, two-argument lines.
    let path = dir.join("big.log");
    let mut text = Vec::with_capacity(110 << 20);
    let mut i = 0u64;
    while text.len() < 100 << 20 {
        match i % 4 {
            0 => text.extend_from_slice(
                format!("APPEND user.someone{i}.INBOX.Archive.2024\n").as_bytes(),
            ),
            1 => text
                .extend_from_slice(format!("MAILBOX \"user.someone{i}.Sent Items\"\n").as_bytes()),
            2 => text.extend_from_slice(
                format!("SEEN someone{i}@example.com user.someone{i}\n").as_bytes(),
            ),
            _ => text.extend_from_slice(format!("USER someone{i}@example.com\n").as_bytes()),
        }
        i += 1;
    }
    std::fs::write(&path, &text).unwrap();
    let mut best = f64::MAX;
    let mut items = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let mut r = Reader::for_file(&path);
        r.begin().unwrap();
        items = 0;
        let mut bytes = 0usize;
        while let Some(item) = r.next_item() {
            bytes += item.arg1.len();
            items += 1;
        }
        std::hint::black_box(bytes);
        r.end().unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    (text.len() as f64 / best / 1e6, items, best)
}

fn main() {
    let secs: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2.0);
    let base = std::env::var_os("CYRSYNC_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = base.join(format!("cyrsync-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    println!(
        "sync log appends, {secs} s per cell, log on {}",
        dir.display()
    );
    println!(
        "{:>7}  {:<38} {:>9} {:>10} {:>9} {:>9}  {:>8} {:>8} {:>8}",
        "writers", "mode", "appends", "appends/s", "p50 µs", "p99 µs", "vs (a)", "vs (b)", "vs own"
    );
    for writers in [1, 4, 16] {
        let raw = run_cell(&dir, Mode::Raw, writers, secs);
        let clike = run_cell(&dir, Mode::CLike, writers, secs);
        let ours = run_cell(&dir, Mode::Cyrsync, writers, secs);
        let group = run_cell(&dir, Mode::Group, writers, secs);
        for (mode, c) in [
            (Mode::Raw, &raw),
            (Mode::CLike, &clike),
            (Mode::Cyrsync, &ours),
            (Mode::Group, &group),
        ] {
            println!(
                "{:>7}  {:<38} {:>9} {:>10.0} {:>9.0} {:>9.0}  {:>7.2}x {:>7.2}x {:>7.2}x",
                writers,
                mode.name(),
                c.appends,
                c.per_sec,
                c.p50_us,
                c.p99_us,
                c.per_sec / raw.per_sec,
                c.per_sec / clike.per_sec,
                c.per_sec / ours.per_sec
            );
        }
    }
    let (mbps, items, secs) = parse_rate(&dir);
    println!(
        "\nreader: {items} items from a 100 MB log in {secs:.3} s = {mbps:.0} MB/s (best of 3)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
