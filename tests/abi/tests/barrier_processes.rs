//! The barrier with real processes, through the C ABI: writers and freezers
//! are forked children, some are SIGKILLed, and they report through a shared
//! anonymous mapping.
//!
//! One test in this binary that runs the scenarios in turn, so that fork()
//! happens with no other test threads running.

use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cyrsync_abi_tests::*;

/// A `MAP_SHARED | MAP_ANONYMOUS` array of u64 counters visible to children.
struct Shared {
    ptr: *mut libc::c_void,
    words: usize,
}

impl Shared {
    fn new(words: usize) -> Shared {
        let ptr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                words * 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        Shared { ptr, words }
    }
    fn at(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.words);
        unsafe { &*(self.ptr as *const AtomicU64).add(i) }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.ptr, self.words * 8) };
    }
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn kill_and_reap(pid: libc::pid_t) {
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let mut status = 0;
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

fn open(dir: &TempDir, max_ms: u32) -> *mut cyrsync_barrier {
    let mut b = ptr::null_mut();
    let r = unsafe { cyrsync_barrier_open(dir.c().as_ptr(), max_ms, &mut b) };
    assert_eq!(r, CYRSYNC_STATUS_OK);
    b
}

fn wait_for(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn status(b: *const cyrsync_barrier) -> cyrsync_barrier_state {
    let mut st: cyrsync_barrier_state = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { cyrsync_barrier_status(b, &mut st) },
        CYRSYNC_STATUS_OK
    );
    st
}

fn spin_for(ns: u64) {
    let end = now_ns() + ns;
    while now_ns() < end {
        std::hint::spin_loop();
    }
}

#[test]
fn barrier_with_real_processes() {
    let scenarios: [(&str, fn()); 8] = [
        (
            "no writer inside a consistent freeze",
            no_writer_inside_a_consistent_freeze,
        ),
        (
            "no writer thread inside a consistent freeze",
            no_thread_inside_a_consistent_freeze,
        ),
        (
            "freeze gets in under 16 tight writers",
            freeze_gets_in_under_tight_writers,
        ),
        (
            "bound respected when the freezer oversleeps",
            bound_respected_when_freezer_oversleeps,
        ),
        ("writer SIGKILLed inside", writer_killed_inside),
        (
            "freezer SIGKILLed while frozen",
            freezer_killed_while_frozen,
        ),
        ("fork inside a held barrier", fork_inside_held_barrier),
        (
            "parent killed inside, forked child lives on",
            parent_killed_child_lives_on,
        ),
    ];
    for (name, run) in scenarios {
        let start = Instant::now();
        run();
        eprintln!(
            "barrier scenario ok in {:>6} ms: {name}",
            start.elapsed().as_millis()
        );
    }
}

/// Writers record [entered, leaving] intervals; the freezer records
/// [frozen, thawing]; no writer interval may overlap a consistent freeze.
fn no_writer_inside_a_consistent_freeze() {
    overlap(6, 1);
}

/// The same with several threads per writer process sharing one handle (the
/// depth is per process: threads race to be the one that enters).
fn no_thread_inside_a_consistent_freeze() {
    overlap(2, 3);
}

fn writer_lane(b: *const cyrsync_barrier, sh: &Shared, base: usize, maxrec: usize) -> i32 {
    let mut n = 0usize;
    while sh.at(0).load(SeqCst) == 0 {
        if unsafe { cyrsync_barrier_enter(b) } != CYRSYNC_STATUS_OK {
            return 2;
        }
        let t0 = now_ns();
        // Nested enters, as Cyrus takes several locks.
        if n.is_multiple_of(3) {
            unsafe { cyrsync_barrier_enter(b) };
            unsafe { cyrsync_barrier_leave(b) };
        }
        spin_for(5_000);
        let t1 = now_ns();
        if unsafe { cyrsync_barrier_leave(b) } != CYRSYNC_STATUS_OK {
            return 3;
        }
        if n < maxrec {
            sh.at(base + 1 + 2 * n).store(t0, SeqCst);
            sh.at(base + 2 + 2 * n).store(t1, SeqCst);
            sh.at(base).store(n as u64 + 1, SeqCst);
        }
        n += 1;
    }
    0
}

fn overlap(processes: usize, threads: usize) {
    let lanes = processes * threads;
    const MAXREC: usize = 60_000;
    const FREEZES: usize = 6;
    let dir = TempDir::new("barrier-overlap");
    let stride = 1 + 2 * MAXREC;
    // [0] stop, [1] ready, then per lane (writer thread): count, records.
    let sh = Shared::new(2 + lanes * stride);
    let pids: Vec<_> = (0..processes)
        .map(|p| {
            let (sh, dir) = (&sh, &dir);
            fork_child(move || {
                let b = open(dir, 30_000);
                let (bb, shp) = (b as usize, sh as *const Shared as usize);
                let others: Vec<_> = (1..threads)
                    .map(|t| {
                        let base = 2 + (p * threads + t) * stride;
                        std::thread::spawn(move || {
                            // SAFETY: the mapping outlives the joined threads.
                            let sh = unsafe { &*(shp as *const Shared) };
                            writer_lane(bb as *const cyrsync_barrier, sh, base, MAXREC)
                        })
                    })
                    .collect();
                sh.at(1).fetch_add(1, SeqCst);
                let mut code = writer_lane(b, sh, 2 + p * threads * stride, MAXREC);
                for t in others {
                    code = code.max(t.join().unwrap_or(101));
                }
                unsafe { cyrsync_barrier_free(b) };
                code
            })
        })
        .collect();
    wait_for("writers ready", Duration::from_secs(10), || {
        sh.at(1).load(SeqCst) == processes as u64
    });
    let freezer = open(&dir, 0);
    let mut freezes = Vec::new();
    for _ in 0..FREEZES {
        std::thread::sleep(Duration::from_millis(60));
        let mut f = ptr::null_mut();
        let start = Instant::now();
        assert_eq!(
            unsafe { cyrsync_barrier_freeze(freezer, 30_000, &mut f) },
            CYRSYNC_STATUS_OK
        );
        // The freezer has priority, over other threads of a process inside
        // too (generous: the machine is shared).
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "freeze took {:?}",
            start.elapsed()
        );
        let f0 = now_ns();
        std::thread::sleep(Duration::from_millis(30));
        let f1 = now_ns();
        assert_eq!(
            unsafe { cyrsync_barrier_thaw(freezer, f) },
            CYRSYNC_STATUS_OK
        );
        freezes.push((f0, f1));
    }
    std::thread::sleep(Duration::from_millis(30));
    sh.at(0).store(1, SeqCst);
    for pid in pids {
        wait_ok(pid, "overlap writer");
    }
    let mut intervals = 0;
    for w in 0..lanes {
        let base = 2 + w * stride;
        let n = sh.at(base).load(SeqCst) as usize;
        assert!(n > 0, "writer {w} never got in");
        for i in 0..n {
            let (t0, t1) = (
                sh.at(base + 1 + 2 * i).load(SeqCst),
                sh.at(base + 2 + 2 * i).load(SeqCst),
            );
            for &(f0, f1) in &freezes {
                assert!(
                    t1 < f0 || t0 > f1,
                    "writer {w} was inside [{t0}, {t1}] during the freeze [{f0}, {f1}]"
                );
            }
        }
        intervals += n;
    }
    // Writers ran between the freezes, not only before the first.
    let after_first = (0..lanes)
        .flat_map(|w| {
            let base = 2 + w * stride;
            let n = sh.at(base).load(SeqCst) as usize;
            (0..n).map(move |i| base + 1 + 2 * i)
        })
        .filter(|&i| sh.at(i).load(SeqCst) > freezes[0].1)
        .count();
    assert!(after_first > 0, "no writer got in after the first thaw");
    eprintln!(
        "  {intervals} intervals of {processes} processes x {threads} threads checked against {FREEZES} freezes"
    );
    unsafe { cyrsync_barrier_free(freezer) };
}

/// 16 writer processes enter and leave in a tight loop; every freeze gets
/// in (the freezer has priority) and is consistent.
fn freeze_gets_in_under_tight_writers() {
    const WRITERS: usize = 16;
    let dir = TempDir::new("barrier-tight");
    let sh = Shared::new(2 + WRITERS);
    let pids: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (sh, dir) = (&sh, &dir);
            fork_child(move || {
                let b = open(dir, 30_000);
                sh.at(1).fetch_add(1, SeqCst);
                let mut n = 0u64;
                while sh.at(0).load(SeqCst) == 0 {
                    unsafe { cyrsync_barrier_enter(b) };
                    unsafe { cyrsync_barrier_leave(b) };
                    n += 1;
                }
                sh.at(2 + w).store(n, SeqCst);
                0
            })
        })
        .collect();
    wait_for("writers ready", Duration::from_secs(10), || {
        sh.at(1).load(SeqCst) == WRITERS as u64
    });
    let freezer = open(&dir, 0);
    let mut latencies = Vec::new();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        let mut f = ptr::null_mut();
        assert_eq!(
            unsafe { cyrsync_barrier_freeze(freezer, 20_000, &mut f) },
            CYRSYNC_STATUS_OK
        );
        latencies.push(start.elapsed());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            unsafe { cyrsync_barrier_thaw(freezer, f) },
            CYRSYNC_STATUS_OK
        );
    }
    sh.at(0).store(1, SeqCst);
    for pid in pids {
        wait_ok(pid, "tight writer");
    }
    let cycles: u64 = (0..WRITERS).map(|w| sh.at(2 + w).load(SeqCst)).sum();
    eprintln!("  freeze latencies {latencies:?}; {cycles} writer cycles");
    unsafe { cyrsync_barrier_free(freezer) };
}

/// The snapshot holder sleeps past the bound: writers resume within the
/// bound (plus slack) while it still sleeps, and the verdict is
/// inconsistent.
fn bound_respected_when_freezer_oversleeps() {
    const WRITERS: usize = 4;
    let dir = TempDir::new("barrier-bound");
    // [0] stop, [1] ready, then per writer: max wait ns, entries.
    let sh = Shared::new(2 + 2 * WRITERS);
    let pids: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (sh, dir) = (&sh, &dir);
            fork_child(move || {
                let b = open(dir, 500);
                sh.at(1).fetch_add(1, SeqCst);
                while sh.at(0).load(SeqCst) == 0 {
                    let t = now_ns();
                    if unsafe { cyrsync_barrier_enter(b) } != CYRSYNC_STATUS_OK {
                        return 2;
                    }
                    sh.at(2 + 2 * w).fetch_max(now_ns() - t, SeqCst);
                    sh.at(3 + 2 * w).fetch_add(1, SeqCst);
                    unsafe { cyrsync_barrier_leave(b) };
                    std::thread::sleep(Duration::from_millis(1));
                }
                0
            })
        })
        .collect();
    wait_for("writers ready", Duration::from_secs(10), || {
        sh.at(1).load(SeqCst) == WRITERS as u64
    });
    let freezer = open(&dir, 0);
    let mut f = ptr::null_mut();
    assert_eq!(
        unsafe { cyrsync_barrier_freeze(freezer, 500, &mut f) },
        CYRSYNC_STATUS_OK
    );
    let entries_at_freeze: u64 = (0..WRITERS).map(|w| sh.at(3 + 2 * w).load(SeqCst)).sum();
    std::thread::sleep(Duration::from_millis(2500));
    let entries_before_thaw: u64 = (0..WRITERS).map(|w| sh.at(3 + 2 * w).load(SeqCst)).sum();
    let st = status(freezer);
    assert!(st.frozen && st.expired, "{st:?}");
    let verdict = unsafe { cyrsync_barrier_thaw(freezer, f) };
    assert!(
        verdict == CYRSYNC_STATUS_BARRIER_BREACHED || verdict == CYRSYNC_STATUS_BARRIER_EXPIRED,
        "verdict {verdict}"
    );
    sh.at(0).store(1, SeqCst);
    for pid in pids {
        wait_ok(pid, "bound writer");
    }
    let max_wait = (0..WRITERS)
        .map(|w| sh.at(2 + 2 * w).load(SeqCst))
        .max()
        .unwrap();
    eprintln!(
        "  verdict {verdict}, longest writer wait {} ms, {} entries while frozen past the bound",
        max_wait / 1_000_000,
        entries_before_thaw - entries_at_freeze
    );
    assert!(
        max_wait < 2_000_000_000,
        "a writer waited {max_wait} ns (bound 500 ms)"
    );
    assert!(
        entries_before_thaw > entries_at_freeze,
        "writers did not resume before the thaw"
    );
    unsafe { cyrsync_barrier_free(freezer) };
}

/// A writer dies inside (SIGKILL) while a freeze drains: the freeze gets in
/// well within the bound and the dead slot is reclaimed.
fn writer_killed_inside() {
    let dir = TempDir::new("barrier-killw");
    let sh = Shared::new(1);
    let pid = {
        let (sh, dir) = (&sh, &dir);
        fork_child(move || {
            let b = open(dir, 0);
            unsafe { cyrsync_barrier_enter(b) };
            unsafe { cyrsync_barrier_enter(b) };
            sh.at(0).store(1, SeqCst);
            std::thread::sleep(Duration::from_secs(60));
            0
        })
    };
    wait_for("writer inside", Duration::from_secs(10), || {
        sh.at(0).load(SeqCst) == 1
    });
    let freezer = open(&dir, 0);
    assert_eq!(status(freezer).inside_slots, 1);
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        kill_and_reap(pid);
    });
    let start = Instant::now();
    let mut f = ptr::null_mut();
    assert_eq!(
        unsafe { cyrsync_barrier_freeze(freezer, 5000, &mut f) },
        CYRSYNC_STATUS_OK
    );
    let took = start.elapsed();
    killer.join().unwrap();
    eprintln!(
        "  freeze got in {} ms after the start (writer killed at 300 ms)",
        took.as_millis()
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(4),
        "{took:?}"
    );
    let st = status(freezer);
    assert_eq!(st.inside_slots, 0, "dead slot not reclaimed: {st:?}");
    assert_eq!(st.live_slots, 1);
    assert_eq!(
        unsafe { cyrsync_barrier_thaw(freezer, f) },
        CYRSYNC_STATUS_OK
    );
    unsafe { cyrsync_barrier_free(freezer) };
}

/// A freezer dies (SIGKILL) while frozen: writers resume at its deadline, the
/// barrier is thawed for it, and new freezes work, including one that
/// takes over a dead freezer's freeze at once.
fn freezer_killed_while_frozen() {
    let dir = TempDir::new("barrier-killf");
    let sh = Shared::new(2);
    let spawn_freezer = |max_ms: u32| {
        let (sh, dir) = (&sh, &dir);
        sh.at(0).store(0, SeqCst);
        fork_child(move || {
            let b = open(dir, 0);
            let mut f = ptr::null_mut();
            if unsafe { cyrsync_barrier_freeze(b, max_ms, &mut f) } != CYRSYNC_STATUS_OK {
                return 2;
            }
            sh.at(1).store(now_ns(), SeqCst);
            sh.at(0).store(1, SeqCst);
            std::thread::sleep(Duration::from_secs(60));
            0
        })
    };
    let writer = open(&dir, 30_000);

    // 1. Writers resume at the dead freezer's deadline.
    let pid = spawn_freezer(1000);
    wait_for("frozen", Duration::from_secs(10), || {
        sh.at(0).load(SeqCst) == 1
    });
    kill_and_reap(pid);
    let frozen_at = sh.at(1).load(SeqCst);
    assert_eq!(unsafe { cyrsync_barrier_enter(writer) }, CYRSYNC_STATUS_OK);
    let waited = now_ns() - frozen_at;
    assert_eq!(unsafe { cyrsync_barrier_leave(writer) }, CYRSYNC_STATUS_OK);
    eprintln!(
        "  writer went in {} ms after the dead freezer's freeze (bound 1000 ms)",
        waited / 1_000_000
    );
    assert!(
        (900_000_000..3_000_000_000).contains(&waited),
        "{waited} ns"
    );
    let st = status(writer);
    assert!(
        !st.frozen,
        "a dead freezer's freeze was not cleared: {st:?}"
    );
    assert_eq!(unsafe { cyrsync_barrier_enter(writer) }, CYRSYNC_STATUS_OK);
    assert_eq!(unsafe { cyrsync_barrier_leave(writer) }, CYRSYNC_STATUS_OK);

    // 2. A new freezer takes over a dead freezer's freeze at once.
    let pid = spawn_freezer(30_000);
    wait_for("frozen", Duration::from_secs(10), || {
        sh.at(0).load(SeqCst) == 1
    });
    kill_and_reap(pid);
    let st = status(writer);
    assert!(st.frozen && !st.freezer_alive, "{st:?}");
    let freezer = open(&dir, 0);
    let mut f = ptr::null_mut();
    let start = Instant::now();
    assert_eq!(
        unsafe { cyrsync_barrier_freeze(freezer, 5000, &mut f) },
        CYRSYNC_STATUS_OK
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(
        unsafe { cyrsync_barrier_thaw(freezer, f) },
        CYRSYNC_STATUS_OK
    );
    let start = Instant::now();
    assert_eq!(unsafe { cyrsync_barrier_enter(writer) }, CYRSYNC_STATUS_OK);
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(unsafe { cyrsync_barrier_leave(writer) }, CYRSYNC_STATUS_OK);
    unsafe { cyrsync_barrier_free(freezer) };
    unsafe { cyrsync_barrier_free(writer) };
}

/// A child forked while its parent is inside does not hold the barrier: its
/// depth is 0, leave fails, and its own enter/leave use its own slot; the
/// parent still holds (a freeze waits for it).
fn fork_inside_held_barrier() {
    let dir = TempDir::new("barrier-fork");
    let b = open(&dir, 0);
    assert_eq!(unsafe { cyrsync_barrier_enter(b) }, CYRSYNC_STATUS_OK);
    let bb = b as usize;
    let child = fork_child(move || {
        let b = bb as *const cyrsync_barrier;
        let checks = unsafe {
            [
                cyrsync_barrier_depth(b) == 0,
                cyrsync_barrier_leave(b) == CYRSYNC_STATUS_BARRIER_NOT_HELD,
                cyrsync_barrier_enter(b) == CYRSYNC_STATUS_OK,
                cyrsync_barrier_depth(b) == 1,
                cyrsync_barrier_leave(b) == CYRSYNC_STATUS_OK,
                cyrsync_barrier_depth(b) == 0,
            ]
        };
        match checks.iter().position(|ok| !ok) {
            None => {
                unsafe { cyrsync_barrier_free(bb as *mut cyrsync_barrier) };
                0
            }
            Some(i) => 10 + i as i32,
        }
    });
    wait_ok(child, "forked child");
    assert_eq!(unsafe { cyrsync_barrier_depth(b) }, 1);
    // The parent still holds: a freeze cannot drain.
    let freezer = open(&dir, 0);
    let mut f = ptr::null_mut();
    assert_eq!(
        unsafe { cyrsync_barrier_freeze(freezer, 200, &mut f) },
        CYRSYNC_STATUS_BARRIER_DRAIN_TIMEOUT
    );
    assert_eq!(unsafe { cyrsync_barrier_leave(b) }, CYRSYNC_STATUS_OK);
    assert_eq!(
        unsafe { cyrsync_barrier_freeze(freezer, 2000, &mut f) },
        CYRSYNC_STATUS_OK
    );
    assert_eq!(
        unsafe { cyrsync_barrier_thaw(freezer, f) },
        CYRSYNC_STATUS_OK
    );
    unsafe { cyrsync_barrier_free(freezer) };
    unsafe { cyrsync_barrier_free(b) };
}

/// A process inside the barrier forks a child that never touches the
/// barrier, then is SIGKILLed: the child must not keep the dead parent's
/// slot alive (its inherited descriptor is closed at fork).
fn parent_killed_child_lives_on() {
    let dir = TempDir::new("barrier-orphan");
    let sh = Shared::new(2);
    let pid = {
        let (sh, dir) = (&sh, &dir);
        fork_child(move || {
            let b = open(dir, 0);
            unsafe { cyrsync_barrier_enter(b) };
            let grandchild = unsafe { libc::fork() };
            if grandchild == 0 {
                std::thread::sleep(Duration::from_secs(60));
                unsafe { libc::_exit(0) };
            }
            sh.at(1).store(grandchild as u64, SeqCst);
            sh.at(0).store(1, SeqCst);
            std::thread::sleep(Duration::from_secs(60));
            0
        })
    };
    wait_for("inside and forked", Duration::from_secs(10), || {
        sh.at(0).load(SeqCst) == 1
    });
    kill_and_reap(pid);
    let grandchild = sh.at(1).load(SeqCst) as libc::pid_t;
    let freezer = open(&dir, 0);
    let mut f = ptr::null_mut();
    let r = unsafe { cyrsync_barrier_freeze(freezer, 2000, &mut f) };
    unsafe { libc::kill(grandchild, libc::SIGKILL) };
    assert_eq!(
        r, CYRSYNC_STATUS_OK,
        "the orphaned child kept the dead parent's slot alive"
    );
    assert_eq!(
        unsafe { cyrsync_barrier_thaw(freezer, f) },
        CYRSYNC_STATUS_OK
    );
    unsafe { cyrsync_barrier_free(freezer) };
}

/// `cyrsync_barrier_enter_timeout` with real processes, a slotted writer and
/// a slotless (overflow) one: a timed-out enter returns BARRIER_FROZEN after
/// its timeout, leaves nothing behind (not inside, the freeze stays
/// consistent), a timeout of 0 never sleeps, and a long enough timeout goes
/// in at the thaw.
#[test]
fn enter_timeout_gives_up_and_leaves_nothing() {
    let dir = TempDir::new("barrier-timeout");
    // Two slots: the freezer (this process) and writer 0; writer 1 is
    // slotless.
    let mut freezer = ptr::null_mut();
    assert_eq!(
        unsafe { cyrsync_barrier_open_slots(dir.c().as_ptr(), 5000, 2, &mut freezer) },
        CYRSYNC_STATUS_OK
    );
    // [0] frozen, [1] thaw stamp, [2] ready, then per writer: timed-out
    // wait ns, zero-timeout wait ns, entry stamp.
    let sh = Shared::new(3 + 3 * 2);
    let mut pids = Vec::new();
    for w in 0..2 {
        let (sh, dir) = (&sh, &dir);
        pids.push(fork_child(move || {
            let b = open(dir, 5000);
            sh.at(2).fetch_add(1, SeqCst);
            while sh.at(0).load(SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let t = now_ns();
            if unsafe { cyrsync_barrier_enter_timeout(b, 200) } != CYRSYNC_STATUS_BARRIER_FROZEN {
                return 2;
            }
            sh.at(3 + 3 * w).store(now_ns() - t, SeqCst);
            if unsafe { cyrsync_barrier_depth(b) } != 0
                || unsafe { cyrsync_barrier_leave(b) } != CYRSYNC_STATUS_BARRIER_NOT_HELD
            {
                return 3;
            }
            let t = now_ns();
            if unsafe { cyrsync_barrier_enter_timeout(b, 0) } != CYRSYNC_STATUS_BARRIER_FROZEN {
                return 4;
            }
            sh.at(4 + 3 * w).store(now_ns() - t, SeqCst);
            if unsafe { cyrsync_barrier_enter_timeout(b, 20_000) } != CYRSYNC_STATUS_OK {
                return 5;
            }
            sh.at(5 + 3 * w).store(now_ns(), SeqCst);
            if unsafe { cyrsync_barrier_leave(b) } != CYRSYNC_STATUS_OK {
                return 6;
            }
            0
        }));
        // One at a time, so writer 0 takes the last slot.
        wait_for("writer ready", Duration::from_secs(10), || {
            sh.at(2).load(SeqCst) == w as u64 + 1
        });
    }
    let mut f = ptr::null_mut();
    assert_eq!(
        unsafe { cyrsync_barrier_freeze(freezer, 5000, &mut f) },
        CYRSYNC_STATUS_OK
    );
    sh.at(0).store(1, SeqCst);
    std::thread::sleep(Duration::from_millis(1200));
    sh.at(1).store(now_ns(), SeqCst);
    let verdict = unsafe { cyrsync_barrier_thaw(freezer, f) };
    for pid in pids {
        wait_ok(pid, "enter_timeout writer");
    }
    assert_eq!(
        verdict, CYRSYNC_STATUS_OK,
        "a timed-out enter must leave the freeze consistent"
    );
    for w in 0..2 {
        let (timed_out, zero, entry) = (
            sh.at(3 + 3 * w).load(SeqCst),
            sh.at(4 + 3 * w).load(SeqCst),
            sh.at(5 + 3 * w).load(SeqCst),
        );
        eprintln!(
            "  writer {w}: timeout 200 ms gave up after {} ms, timeout 0 after {} µs, \
             went in {} ms after the thaw stamp",
            timed_out / 1_000_000,
            zero / 1000,
            entry.saturating_sub(sh.at(1).load(SeqCst)) / 1_000_000
        );
        assert!(
            (200_000_000..1_000_000_000).contains(&timed_out),
            "writer {w}: a 200 ms timeout gave up after {timed_out} ns"
        );
        assert!(zero < 50_000_000, "writer {w}: a 0 timeout slept {zero} ns");
        assert!(
            entry >= sh.at(1).load(SeqCst),
            "writer {w} went in before the thaw"
        );
    }
    assert_eq!(status(freezer).breaches, 0);
    unsafe { cyrsync_barrier_free(freezer) };
}

/// The freeze's own bound runs out before a longer timeout: the writer goes
/// in as a plain enter would (OK) and the verdict says not consistent. And a
/// process that already holds the barrier nests at once while a freeze
/// drains, even with a timeout of 0.
#[test]
fn enter_timeout_bound_and_nesting() {
    let dir = TempDir::new("barrier-timeout-bound");
    let freezer = open(&dir, 0);
    // [0] frozen, [1] ready, [2] wait ns
    let sh = Shared::new(3);
    let pid = {
        let (sh, dir) = (&sh, &dir);
        fork_child(move || {
            let b = open(dir, 300);
            sh.at(1).store(1, SeqCst);
            while sh.at(0).load(SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let t = now_ns();
            if unsafe { cyrsync_barrier_enter_timeout(b, 20_000) } != CYRSYNC_STATUS_OK {
                return 2;
            }
            sh.at(2).store(now_ns() - t, SeqCst);
            unsafe { cyrsync_barrier_leave(b) };
            0
        })
    };
    wait_for("writer ready", Duration::from_secs(10), || {
        sh.at(1).load(SeqCst) == 1
    });
    let mut f = ptr::null_mut();
    assert_eq!(
        unsafe { cyrsync_barrier_freeze(freezer, 5000, &mut f) },
        CYRSYNC_STATUS_OK
    );
    sh.at(0).store(1, SeqCst);
    wait_ok(pid, "bounded writer");
    let verdict = unsafe { cyrsync_barrier_thaw(freezer, f) };
    let waited = sh.at(2).load(SeqCst);
    eprintln!(
        "  own bound 300 ms, timeout 20 s: went in after {} ms, verdict {verdict}",
        waited / 1_000_000
    );
    assert!(
        (250_000_000..3_000_000_000).contains(&waited),
        "waited {waited} ns"
    );
    assert!(
        verdict == CYRSYNC_STATUS_BARRIER_BREACHED || verdict == CYRSYNC_STATUS_BARRIER_EXPIRED,
        "verdict {verdict}"
    );

    // Nesting while a freeze drains: the child holds the barrier, the
    // freeze waits for it; its enter_timeout(0) must nest, not give up.
    sh.at(0).store(0, SeqCst);
    sh.at(1).store(0, SeqCst);
    let pid = {
        let (sh, dir) = (&sh, &dir);
        fork_child(move || {
            let b = open(dir, 5000);
            if unsafe { cyrsync_barrier_enter(b) } != CYRSYNC_STATUS_OK {
                return 2;
            }
            sh.at(1).store(1, SeqCst);
            wait_for(
                "the freeze to start draining",
                Duration::from_secs(10),
                || status(b).frozen,
            );
            if unsafe { cyrsync_barrier_enter_timeout(b, 0) } != CYRSYNC_STATUS_OK
                || unsafe { cyrsync_barrier_depth(b) } != 2
            {
                return 3;
            }
            unsafe { cyrsync_barrier_leave(b) };
            unsafe { cyrsync_barrier_leave(b) };
            0
        })
    };
    wait_for("writer inside", Duration::from_secs(10), || {
        sh.at(1).load(SeqCst) == 1
    });
    let mut f = ptr::null_mut();
    assert_eq!(
        unsafe { cyrsync_barrier_freeze(freezer, 5000, &mut f) },
        CYRSYNC_STATUS_OK
    );
    wait_ok(pid, "nesting writer");
    assert_eq!(
        unsafe { cyrsync_barrier_thaw(freezer, f) },
        CYRSYNC_STATUS_OK
    );
    unsafe { cyrsync_barrier_free(freezer) };
}
