//! Unit tests of the protocol within one process (multi-process tests are
//! in tests/abi).

use super::*;

fn tmpdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cyrsync-barrier-unit-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn nesting_and_depth() {
    let dir = tmpdir("nest");
    let b = Barrier::open(&dir, DEFAULT_MAX_FREEZE).unwrap();
    assert_eq!(b.depth(), 0);
    assert!(matches!(b.leave(), Err(BarrierError::NotHeld)));
    assert_eq!(b.enter().unwrap(), Entered::Entered);
    assert_eq!(b.enter().unwrap(), Entered::Nested);
    assert_eq!(b.depth(), 2);
    b.leave().unwrap();
    b.leave().unwrap();
    assert_eq!(b.depth(), 0);
    assert!(matches!(b.leave(), Err(BarrierError::NotHeld)));
}

#[test]
fn two_handles_take_two_slots_and_freeze_waits() {
    let dir = tmpdir("two");
    let a = Barrier::open(&dir, DEFAULT_MAX_FREEZE).unwrap();
    let f = Barrier::open(&dir, DEFAULT_MAX_FREEZE).unwrap();
    a.enter().unwrap();
    match f.freeze(Duration::from_millis(100)) {
        Err(BarrierError::DrainTimeout { busy, .. }) => assert_eq!(busy.len(), 1),
        other => panic!("expected a drain timeout, got {other:?}"),
    }
    a.leave().unwrap();
    let token = f.freeze(Duration::from_secs(5)).unwrap();
    assert!(matches!(
        f.freeze(Duration::from_secs(1)),
        Err(BarrierError::AlreadyFrozen { .. })
    ));
    let st = f.status().unwrap();
    assert!(st.frozen && st.freezer_alive);
    let v = f.thaw(token).unwrap();
    assert!(v.consistent(), "{v:?}");
    assert!(!f.status().unwrap().frozen);
}

#[test]
fn freezer_inside_is_refused() {
    let dir = tmpdir("held");
    let b = Barrier::open(&dir, DEFAULT_MAX_FREEZE).unwrap();
    b.enter().unwrap();
    assert!(matches!(
        b.freeze(Duration::from_secs(1)),
        Err(BarrierError::Held { depth: 1 })
    ));
    b.leave().unwrap();
}

#[test]
fn writer_breaches_after_its_bound_and_verdict_says_so() {
    let dir = tmpdir("bound");
    let w = std::sync::Arc::new(Barrier::open(&dir, Duration::from_millis(200)).unwrap());
    let f = Barrier::open(&dir, DEFAULT_MAX_FREEZE).unwrap();
    // The writer's bound runs from the moment the freeze began, which is
    // before freeze() returns (it may still look for replaced files, which
    // takes a while when other barrier files are in use on the machine).
    let start = std::time::Instant::now();
    let token = f.freeze(Duration::from_secs(10)).unwrap();
    let w2 = w.clone();
    let t = std::thread::spawn(move || {
        let e = w2.enter().unwrap();
        w2.leave().unwrap();
        (e, start.elapsed())
    });
    let (e, waited) = t.join().unwrap();
    assert_eq!(e, Entered::Breached);
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    let v = f.thaw(token).unwrap();
    assert!(!v.consistent());
    assert_eq!(v.breaches, 1);
}

#[test]
fn one_freeze_per_handle_even_when_threads_race() {
    let dir = tmpdir("race");
    let b = Barrier::open(&dir, DEFAULT_MAX_FREEZE).unwrap();
    for _ in 0..50 {
        let results: Vec<_> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| s.spawn(|| b.freeze(Duration::from_secs(5)).ok()))
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let mut won: Vec<_> = results.into_iter().flatten().collect();
        assert_eq!(won.len(), 1);
        assert!(b.thaw(won.pop().unwrap()).unwrap().consistent());
    }
}

#[test]
fn a_holding_thread_nests_through_a_draining_freeze() {
    let dir = tmpdir("nestfreeze");
    let w = Barrier::open(&dir, Duration::from_secs(20)).unwrap();
    let f = Barrier::open(&dir, DEFAULT_MAX_FREEZE).unwrap();
    w.enter().unwrap();
    std::thread::scope(|s| {
        let freezer = s.spawn(|| f.freeze(Duration::from_secs(20)));
        // Wait until the freeze is on (draining: we are inside).
        while !w.status().unwrap().frozen {
            std::thread::sleep(Duration::from_millis(1));
        }
        let start = std::time::Instant::now();
        assert_eq!(w.enter().unwrap(), Entered::Nested);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "a holder waited for the freeze"
        );
        w.leave().unwrap();
        w.leave().unwrap();
        let token = freezer.join().unwrap().unwrap();
        assert!(f.thaw(token).unwrap().consistent());
    });
}

#[test]
fn threads_share_the_process_depth() {
    let dir = tmpdir("threads");
    let b = std::sync::Arc::new(Barrier::open(&dir, DEFAULT_MAX_FREEZE).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    b.enter().unwrap();
                    assert!(b.depth() >= 1);
                    b.leave().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(b.depth(), 0);
}

#[test]
fn root_creates_the_file_for_the_lock_directory_owner() {
    use std::os::unix::fs::MetadataExt;
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = std::env::temp_dir().join(format!("cyrsync-barrier-owner-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // 65534 is "nobody" on Debian; any non-root id will do.
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let barrier = Barrier::open(&dir, Duration::from_secs(1)).unwrap();
    let meta = std::fs::metadata(dir.join(FILE_NAME)).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    drop(barrier);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn freezes_are_counted_by_verdict_and_the_longest_writer_wait_is_kept() {
    use std::sync::{mpsc, Arc};
    let dir = tmpdir("verdicts");
    let w = Arc::new(Barrier::open(&dir, Duration::from_secs(5)).unwrap());
    let f = Barrier::open(&dir, DEFAULT_MAX_FREEZE).unwrap();
    let st = inspect(&dir).unwrap();
    assert_eq!(st.verdicts, VerdictCounts::default());
    assert_eq!(st.writer_wait_max, Duration::ZERO);
    // No freeze: the fast path records nothing.
    w.enter().unwrap();
    w.leave().unwrap();
    assert_eq!(inspect(&dir).unwrap().writer_wait_max, Duration::ZERO);

    // Consistent, a writer waiting for the thaw meanwhile.
    let token = f.freeze(Duration::from_secs(10)).unwrap();
    let (tx, rx) = mpsc::channel();
    let w2 = w.clone();
    let writer = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        tx.send(()).unwrap();
        let e = w2.enter().unwrap();
        w2.leave().unwrap();
        (e, start.elapsed())
    });
    rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let v = f.thaw(token).unwrap();
    let (entered, took) = writer.join().unwrap();
    assert!(v.consistent(), "{v:?}");
    assert_eq!(
        (v.kind(), entered),
        (VerdictKind::Consistent, Entered::Entered)
    );
    let st = inspect(&dir).unwrap();
    assert_eq!(st.verdicts.get(VerdictKind::Consistent), 1);
    assert!(
        st.writer_wait_max >= Duration::from_millis(100) && st.writer_wait_max <= took,
        "{:?} (the writer took {took:?})",
        st.writer_wait_max
    );
    let first_wait = st.writer_wait_max;

    // Breached: a writer with a 300 ms bound goes in during a long freeze;
    // its wait (its bound) is the new longest.
    let short = Barrier::open(&dir, Duration::from_millis(300)).unwrap();
    let token = f.freeze(Duration::from_secs(10)).unwrap();
    assert_eq!(short.enter().unwrap(), Entered::Breached);
    short.leave().unwrap();
    let v = f.thaw(token).unwrap();
    assert_eq!(v.kind(), VerdictKind::Breached);
    let st = inspect(&dir).unwrap();
    assert!(st.writer_wait_max >= first_wait.max(Duration::from_millis(250)));

    // Expired: held past its bound, nobody went in.
    let token = f.freeze(Duration::from_millis(30)).unwrap();
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(f.thaw(token).unwrap().kind(), VerdictKind::Expired);

    // Drain timeout: a writer inside that does not leave in time.
    w.enter().unwrap();
    assert!(matches!(
        f.freeze(Duration::from_millis(50)),
        Err(BarrierError::DrainTimeout { .. })
    ));
    w.leave().unwrap();

    let st = inspect(&dir).unwrap();
    let counts: Vec<(&str, u64)> = st.verdicts.iter().map(|(k, n)| (k.word(), n)).collect();
    assert_eq!(
        counts,
        [
            ("consistent", 1),
            ("breached", 1),
            ("expired", 1),
            ("lost", 0),
            ("replaced", 0),
            ("drain_timeout", 1)
        ]
    );
    assert_eq!(st.freezes, 3, "drained freezes");

    // Replaced: the file removed under the freeze (counted in the file the
    // freeze is on: this handle's status still reads it).
    let token = f.freeze(Duration::from_secs(10)).unwrap();
    std::fs::rename(f.path(), dir.join("old-barrier")).unwrap();
    assert_eq!(f.thaw(token).unwrap().kind(), VerdictKind::Replaced);
    assert_eq!(f.status().unwrap().verdicts.get(VerdictKind::Replaced), 1);

    // Lost ranks after replaced and before breached and expired.
    let lost = Verdict {
        expired: true,
        breaches: 2,
        lost: true,
        replaced: None,
        frozen_for: Duration::ZERO,
        drain_time: Duration::ZERO,
    };
    assert_eq!(lost.kind(), VerdictKind::Lost);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_writer_that_gives_up_on_a_freeze_records_its_wait() {
    let dir = tmpdir("waitgiveup");
    let w = Barrier::open(&dir, Duration::from_secs(5)).unwrap();
    let f = Barrier::open(&dir, DEFAULT_MAX_FREEZE).unwrap();
    let token = f.freeze(Duration::from_secs(10)).unwrap();
    // Zero: does not wait at all, records nothing.
    assert!(matches!(
        w.enter_timeout(Duration::ZERO),
        Err(BarrierError::Frozen { .. })
    ));
    assert_eq!(f.status().unwrap().writer_wait_max, Duration::ZERO);
    assert!(matches!(
        w.enter_timeout(Duration::from_millis(80)),
        Err(BarrierError::Frozen { .. })
    ));
    let waited = f.status().unwrap().writer_wait_max;
    assert!(
        waited >= Duration::from_millis(80) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert!(f.thaw(token).unwrap().consistent());
    let _ = std::fs::remove_dir_all(&dir);
}
