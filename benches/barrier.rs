//! `cargo bench --bench barrier`: the cyrsync barrier next to what upstream
//! Cyrus 3.12.4 does (a `$GLOBAL` lock file, opened once, `F_SETLKW` shared
//! lock + unlock around each outermost lock cycle; the freezer takes it
//! exclusive with `F_SETLKW`), in the same run, as a table.
//!
//! 1. ns per enter+leave (and enter_timeout(0)+leave, the same fast path)
//!    with 0, 16, 128, 512, 1000 other processes holding the barrier (forked
//!    children that enter, take the shared fcntl lock, and sleep);
//! 2. freeze latency p50/p99 under 16 writer processes in a tight
//!    enter/leave loop; the fcntl freezer gives up after a timeout per
//!    attempt ("did not get in").

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cyrsync::barrier::Barrier;

const HOLDER_LEVELS: [usize; 5] = [0, 16, 128, 512, 1000];
const TIGHT_WRITERS: usize = 16;
const FREEZES: usize = 40;
const FCNTL_ATTEMPTS: usize = 5;
const FCNTL_TIMEOUT: Duration = Duration::from_secs(1);

fn lock_file(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open lock file")
}

/// Upstream's lock_setlock/lock_unlock: whole-file fcntl lock, F_SETLKW.
/// Returns false if interrupted (EINTR: the freezer's timeout).
fn fcntl_lock(file: &File, kind: i32, wait: bool) -> bool {
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    let cmd = if wait { libc::F_SETLKW } else { libc::F_SETLK };
    unsafe { libc::fcntl(file.as_raw_fd(), cmd, &fl) == 0 }
}

/// A shared anonymous mapping of u64s (stop flags, counters).
struct Shared(*mut AtomicU64);

impl Shared {
    fn new(words: usize) -> Shared {
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                words * 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Shared(p.cast())
    }
    fn at(&self, i: usize) -> &AtomicU64 {
        unsafe { &*self.0.add(i) }
    }
}

fn fork(body: impl FnOnce()) -> libc::pid_t {
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
        unsafe { libc::_exit(0) };
    }
    pid
}

fn kill_all(pids: &mut Vec<libc::pid_t>) {
    for &pid in pids.iter() {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for pid in pids.drain(..) {
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
}

fn ns_per_cycle(iterations: u64, mut cycle: impl FnMut()) -> f64 {
    // Best of 3 runs: the machine is shared.
    (0..3)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                cycle();
            }
            start.elapsed().as_nanos() as f64 / iterations as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

fn enter_leave_table(dir: &Path, lockpath: &Path) {
    let barrier = Barrier::open(dir, Duration::from_secs(5)).unwrap();
    let lockfile = lock_file(lockpath);
    let ready = Shared::new(1);
    let mut holders = Vec::new();
    println!("enter+leave, one outermost cycle, ns (best of 3 runs), other processes holding it:");
    println!(
        "{:>8} {:>12} {:>14} {:>12} {:>8}",
        "holders", "cyrsync ns", "timeout(0) ns", "fcntl ns", "ratio"
    );
    for &level in &HOLDER_LEVELS {
        while holders.len() < level {
            let ready = &ready;
            holders.push(fork(|| {
                let b = Barrier::open(dir, Duration::from_secs(5)).unwrap();
                b.enter().unwrap();
                let f = lock_file(lockpath);
                assert!(fcntl_lock(&f, libc::F_RDLCK, true));
                ready.at(0).fetch_add(1, SeqCst);
                loop {
                    unsafe { libc::pause() };
                }
            }));
        }
        while ready.at(0).load(SeqCst) < level as u64 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let ours = ns_per_cycle(2_000_000, || {
            barrier.enter().unwrap();
            barrier.leave().unwrap();
        });
        // enter_timeout shares enter's fast path: its row must match.
        let timeout = ns_per_cycle(2_000_000, || {
            barrier.enter_timeout(Duration::ZERO).unwrap();
            barrier.leave().unwrap();
        });
        let fcntl = ns_per_cycle(100_000, || {
            fcntl_lock(&lockfile, libc::F_RDLCK, true);
            fcntl_lock(&lockfile, libc::F_UNLCK, false);
        });
        println!(
            "{:>8} {:>12.1} {:>14.1} {:>12.1} {:>7.0}x",
            level,
            ours,
            timeout,
            fcntl,
            fcntl / ours
        );
    }
    kill_all(&mut holders);
}

extern "C" fn on_alarm(_: libc::c_int) {}

fn freeze_table(dir: &Path, lockpath: &Path) {
    println!();
    println!("freeze latency under {TIGHT_WRITERS} writer processes in a tight enter/leave loop:");
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>12}",
        "", "got in", "p50", "p99", "max"
    );

    // cyrsync
    let sh = Shared::new(2);
    let mut writers: Vec<_> = (0..TIGHT_WRITERS)
        .map(|_| {
            let sh = &sh;
            fork(move || {
                let b = Barrier::open(dir, Duration::from_secs(30)).unwrap();
                sh.at(1).fetch_add(1, SeqCst);
                while sh.at(0).load(SeqCst) == 0 {
                    b.enter().unwrap();
                    b.leave().unwrap();
                }
            })
        })
        .collect();
    while sh.at(1).load(SeqCst) < TIGHT_WRITERS as u64 {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    let freezer = Barrier::open(dir, Duration::from_secs(5)).unwrap();
    let mut lat = Vec::new();
    let mut consistent = 0;
    for _ in 0..FREEZES {
        std::thread::sleep(Duration::from_millis(10));
        let start = Instant::now();
        let token = freezer.freeze(Duration::from_secs(5)).unwrap();
        lat.push(start.elapsed());
        std::thread::sleep(Duration::from_millis(1));
        consistent += freezer.thaw(token).unwrap().consistent() as usize;
    }
    sh.at(0).store(1, SeqCst);
    kill_all(&mut writers);
    lat.sort();
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>12}   ({consistent}/{FREEZES} consistent)",
        "cyrsync",
        format!("{}/{}", lat.len(), FREEZES),
        fmt(percentile(&lat, 0.5)),
        fmt(percentile(&lat, 0.99)),
        fmt(*lat.last().unwrap())
    );

    // fcntl, as upstream: writers F_SETLKW shared + unlock; freezer F_SETLKW
    // exclusive, interrupted by SIGALRM after FCNTL_TIMEOUT.
    let sh = Shared::new(2);
    let mut writers: Vec<_> = (0..TIGHT_WRITERS)
        .map(|_| {
            let sh = &sh;
            fork(move || {
                let f = lock_file(lockpath);
                sh.at(1).fetch_add(1, SeqCst);
                while sh.at(0).load(SeqCst) == 0 {
                    fcntl_lock(&f, libc::F_RDLCK, true);
                    fcntl_lock(&f, libc::F_UNLCK, false);
                }
            })
        })
        .collect();
    while sh.at(1).load(SeqCst) < TIGHT_WRITERS as u64 {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as *const () as usize;
        sa.sa_flags = 0; // no SA_RESTART: fcntl returns EINTR
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
    }
    let f = lock_file(lockpath);
    let mut lat = Vec::new();
    for _ in 0..FCNTL_ATTEMPTS {
        std::thread::sleep(Duration::from_millis(10));
        let timer = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            it_value: libc::timeval {
                tv_sec: FCNTL_TIMEOUT.as_secs() as libc::time_t,
                tv_usec: 0,
            },
        };
        unsafe { libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) };
        let start = Instant::now();
        let got = fcntl_lock(&f, libc::F_WRLCK, true);
        let took = start.elapsed();
        let off = unsafe { std::mem::zeroed::<libc::itimerval>() };
        unsafe { libc::setitimer(libc::ITIMER_REAL, &off, std::ptr::null_mut()) };
        if got {
            lat.push(took);
            std::thread::sleep(Duration::from_millis(1));
            fcntl_lock(&f, libc::F_UNLCK, false);
        }
    }
    sh.at(0).store(1, SeqCst);
    kill_all(&mut writers);
    lat.sort();
    if lat.is_empty() {
        println!(
            "{:>8} {:>10}   did not get in ({FCNTL_ATTEMPTS} attempts, gave up after {} s each)",
            "fcntl",
            format!("0/{FCNTL_ATTEMPTS}"),
            FCNTL_TIMEOUT.as_secs()
        );
    } else {
        println!(
            "{:>8} {:>10} {:>10} {:>10} {:>12}   (gave up after {} s per attempt)",
            "fcntl",
            format!("{}/{}", lat.len(), FCNTL_ATTEMPTS),
            fmt(percentile(&lat, 0.5)),
            fmt(percentile(&lat, 0.99)),
            fmt(*lat.last().unwrap()),
            FCNTL_TIMEOUT.as_secs()
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // that asks for a real run: do a quick smoke run then.
    let dir: PathBuf =
        std::env::temp_dir().join(format!("cyrsync-bench-barrier-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let lockpath = dir.join("$GLOBAL.lock");
    if !std::env::args().any(|a| a == "--bench") {
        println!("barrier bench: not run (use cargo bench --bench barrier)");
        return;
    }
    // `cargo bench --bench barrier -- enter` (or `freeze`): one table only.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    if wanted("enter") {
        enter_leave_table(&dir, &lockpath);
    }
    if wanted("freeze") {
        freeze_table(&dir, &lockpath);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
