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
