//! The barrier's C API in one process: arguments, statuses, nesting, the
//! freeze/thaw cycle and the process-global convenience. Multi-process
//! behaviour is in `barrier_processes.rs`.

use std::ffi::CStr;
use std::ptr;

use cyrsync_abi_tests::*;

fn open(dir: &TempDir, max_ms: u32) -> *mut cyrsync_barrier {
    let mut b = ptr::null_mut();
    let r = unsafe { cyrsync_barrier_open(dir.c().as_ptr(), max_ms, &mut b) };
    assert_eq!(r, CYRSYNC_STATUS_OK);
    assert!(!b.is_null());
    b
}

#[test]
fn null_and_bad_arguments_give_statuses_and_log() {
    capture_log();
    let dir = TempDir::new("barrier-args");
    let mut b = ptr::null_mut();
    unsafe {
        assert_eq!(
            cyrsync_barrier_open(ptr::null(), 0, &mut b),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        assert_eq!(
            cyrsync_barrier_open(dir.c().as_ptr(), 0, ptr::null_mut()),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        assert_eq!(
            cyrsync_barrier_open(cs(b"").as_ptr(), 0, &mut b),
            CYRSYNC_STATUS_INVALID_ARGUMENT
        );
        assert!(b.is_null(), "out written on failure");
        // A lock directory that cannot exist (under a regular file).
        std::fs::write(dir.path().join("file"), b"").unwrap();
        let bad = cpath(&dir.path().join("file/lock"));
        assert_eq!(
            cyrsync_barrier_open(bad.as_ptr(), 0, &mut b),
            CYRSYNC_STATUS_IO_ERROR
        );
        assert!(logged("IOERROR: cyrsync_barrier_open: open failed"));
        assert!(b.is_null());
        // A missing one is created, as Cyrus does for its lock files.
        let missing = cpath(&dir.path().join("config/lock"));
        assert_eq!(
            cyrsync_barrier_open(missing.as_ptr(), 0, &mut b),
            CYRSYNC_STATUS_OK
        );
        assert!(dir.path().join("config/lock/cyrsync-barrier").exists());
        cyrsync_barrier_free(b);
        assert_eq!(
            cyrsync_barrier_enter(ptr::null()),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        assert_eq!(
            cyrsync_barrier_leave(ptr::null()),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        assert_eq!(cyrsync_barrier_depth(ptr::null()), 0);
        let mut f = ptr::null_mut();
        assert_eq!(
            cyrsync_barrier_freeze(ptr::null(), 0, &mut f),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        assert_eq!(
            cyrsync_barrier_thaw(ptr::null(), ptr::null_mut()),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        let mut st: cyrsync_barrier_state = std::mem::zeroed();
        assert_eq!(
            cyrsync_barrier_status(ptr::null(), &mut st),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        cyrsync_barrier_free(ptr::null_mut());
    }
}

#[test]
fn a_file_that_is_not_a_barrier_is_refused() {
    let dir = TempDir::new("barrier-badfile");
    let mut junk = vec![0u8; 8192];
    junk[..8].copy_from_slice(b"CYRSBAR1");
    junk[8] = 99; // version
    std::fs::write(dir.path().join("cyrsync-barrier"), &junk).unwrap();
    let mut b = ptr::null_mut();
    let r = unsafe { cyrsync_barrier_open(dir.c().as_ptr(), 0, &mut b) };
    assert_eq!(r, CYRSYNC_STATUS_BARRIER_BAD_FILE);
    assert!(b.is_null());
}

#[test]
fn barrier_statuses_have_descriptions() {
    for s in 200..=210u32 {
        let text = unsafe { CStr::from_ptr(cyrsync_status_str(s)) }
            .to_str()
            .unwrap();
        assert_ne!(text, "unknown status", "status {s}");
    }
    assert_eq!(CYRSYNC_STATUS_BARRIER_EXPIRED, 200);
    assert_eq!(CYRSYNC_STATUS_BARRIER_LOST, 208);
    assert_eq!(CYRSYNC_STATUS_BARRIER_NO_SPACE, 209);
    assert_eq!(CYRSYNC_STATUS_BARRIER_REPLACED, 210);
}

#[test]
fn nesting_depth_and_not_held() {
    let dir = TempDir::new("barrier-nest");
    let b = open(&dir, 0);
    unsafe {
        assert_eq!(cyrsync_barrier_depth(b), 0);
        assert_eq!(cyrsync_barrier_leave(b), CYRSYNC_STATUS_BARRIER_NOT_HELD);
        for d in 1..=3 {
            assert_eq!(cyrsync_barrier_enter(b), CYRSYNC_STATUS_OK);
            assert_eq!(cyrsync_barrier_depth(b), d);
        }
        for d in (0..3).rev() {
            assert_eq!(cyrsync_barrier_leave(b), CYRSYNC_STATUS_OK);
            assert_eq!(cyrsync_barrier_depth(b), d);
        }
        assert_eq!(cyrsync_barrier_leave(b), CYRSYNC_STATUS_BARRIER_NOT_HELD);
        cyrsync_barrier_free(b);
    }
}

#[test]
fn freeze_thaw_cycle_and_refusals() {
    let dir = TempDir::new("barrier-cycle");
    let writer = open(&dir, 0);
    let freezer = open(&dir, 0);
    let other = open(&dir, 0);
    unsafe {
        // A writer inside and a short bound: the drain times out, nothing
        // stays frozen.
        assert_eq!(cyrsync_barrier_enter(writer), CYRSYNC_STATUS_OK);
        let mut f = ptr::null_mut();
        assert_eq!(
            cyrsync_barrier_freeze(freezer, 100, &mut f),
            CYRSYNC_STATUS_BARRIER_DRAIN_TIMEOUT
        );
        assert!(f.is_null());
        // The freezer may not be inside itself.
        assert_eq!(
            cyrsync_barrier_freeze(writer, 100, &mut f),
            CYRSYNC_STATUS_BARRIER_HELD
        );
        assert_eq!(cyrsync_barrier_leave(writer), CYRSYNC_STATUS_OK);

        assert_eq!(
            cyrsync_barrier_freeze(freezer, 5000, &mut f),
            CYRSYNC_STATUS_OK
        );
        assert!(!f.is_null());
        let mut f2 = ptr::null_mut();
        assert_eq!(
            cyrsync_barrier_freeze(other, 5000, &mut f2),
            CYRSYNC_STATUS_BARRIER_ALREADY_FROZEN
        );
        assert_eq!(
            cyrsync_barrier_freeze(freezer, 5000, &mut f2),
            CYRSYNC_STATUS_BARRIER_ALREADY_FROZEN
        );
        let mut st: cyrsync_barrier_state = std::mem::zeroed();
        assert_eq!(cyrsync_barrier_status(other, &mut st), CYRSYNC_STATUS_OK);
        assert!(st.frozen && st.freezer_alive && !st.expired);
        assert_eq!(st.freezer_pid, std::process::id());
        assert_eq!(st.live_slots, 3);
        assert_eq!(st.inside_slots, 0);
        assert!(st.remaining_ms > 0 && st.remaining_ms <= 5000);
        assert_eq!(cyrsync_barrier_thaw(freezer, f), CYRSYNC_STATUS_OK);

        assert_eq!(cyrsync_barrier_status(other, &mut st), CYRSYNC_STATUS_OK);
        assert!(!st.frozen && !st.freezer_alive);
        assert!(st.freezes >= 1);

        // A freeze held past its bound is inconsistent.
        assert_eq!(
            cyrsync_barrier_freeze(freezer, 50, &mut f),
            CYRSYNC_STATUS_OK
        );
        std::thread::sleep(std::time::Duration::from_millis(120));
        assert_eq!(
            cyrsync_barrier_thaw(freezer, f),
            CYRSYNC_STATUS_BARRIER_EXPIRED
        );

        // A freeze thawed through another handle is refused (and consumed).
        assert_eq!(
            cyrsync_barrier_freeze(freezer, 5000, &mut f),
            CYRSYNC_STATUS_OK
        );
        assert_eq!(
            cyrsync_barrier_thaw(other, f),
            CYRSYNC_STATUS_INVALID_ARGUMENT
        );
        // Freeing the freezer's handle thaws what it held.
        cyrsync_barrier_free(freezer);
        assert_eq!(cyrsync_barrier_status(other, &mut st), CYRSYNC_STATUS_OK);
        assert!(!st.frozen);
        assert_eq!(cyrsync_barrier_enter(writer), CYRSYNC_STATUS_OK);
        assert_eq!(cyrsync_barrier_leave(writer), CYRSYNC_STATUS_OK);
        cyrsync_barrier_free(writer);
        cyrsync_barrier_free(other);
    }
}

#[test]
fn writer_waits_for_the_thaw_then_enters() {
    let dir = TempDir::new("barrier-wait");
    let writer = open(&dir, 10_000) as usize;
    let freezer = open(&dir, 0);
    let mut f = ptr::null_mut();
    unsafe {
        assert_eq!(
            cyrsync_barrier_freeze(freezer, 10_000, &mut f),
            CYRSYNC_STATUS_OK
        );
    }
    let start = std::time::Instant::now();
    let t = std::thread::spawn(move || {
        let w = writer as *const cyrsync_barrier;
        let r = unsafe { cyrsync_barrier_enter(w) };
        let waited = start.elapsed();
        assert_eq!(unsafe { cyrsync_barrier_leave(w) }, CYRSYNC_STATUS_OK);
        (r, waited)
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        unsafe { cyrsync_barrier_thaw(freezer, f) },
        CYRSYNC_STATUS_OK
    );
    let (r, waited) = t.join().unwrap();
    assert_eq!(r, CYRSYNC_STATUS_OK);
    assert!(
        waited >= std::time::Duration::from_millis(250),
        "{waited:?}"
    );
    unsafe {
        cyrsync_barrier_free(writer as *mut cyrsync_barrier);
        cyrsync_barrier_free(freezer);
    }
}

#[test]
fn process_global_barrier() {
    capture_log();
    let dir = TempDir::new("barrier-global");
    let other = TempDir::new("barrier-global2");
    unsafe {
        // Before init.
        assert!(cyrsync_barrier_global().is_null());
        assert_eq!(cyrsync_barrier_global_enter(), CYRSYNC_STATUS_BAD_STATE);
        assert_eq!(
            cyrsync_barrier_global_enter_timeout(0),
            CYRSYNC_STATUS_BAD_STATE
        );
        assert_eq!(cyrsync_barrier_global_leave(), CYRSYNC_STATUS_BAD_STATE);
        assert_eq!(cyrsync_barrier_global_depth(), 0);
        assert_eq!(
            cyrsync_barrier_global_init(ptr::null(), 0),
            CYRSYNC_STATUS_NULL_PARAMETER
        );

        assert_eq!(
            cyrsync_barrier_global_init(dir.c().as_ptr(), 0),
            CYRSYNC_STATUS_OK
        );
        assert_eq!(
            cyrsync_barrier_global_init(dir.c().as_ptr(), 0),
            CYRSYNC_STATUS_OK
        );
        assert_eq!(
            cyrsync_barrier_global_init(other.c().as_ptr(), 0),
            CYRSYNC_STATUS_BAD_STATE
        );
        assert_eq!(cyrsync_barrier_global_enter(), CYRSYNC_STATUS_OK);
        assert_eq!(cyrsync_barrier_global_enter(), CYRSYNC_STATUS_OK);
        assert_eq!(cyrsync_barrier_global_depth(), 2);
        let g = cyrsync_barrier_global();
        assert!(!g.is_null());
        assert_eq!(cyrsync_barrier_depth(g), 2);
        assert_eq!(cyrsync_barrier_global_leave(), CYRSYNC_STATUS_OK);
        assert_eq!(cyrsync_barrier_global_leave(), CYRSYNC_STATUS_OK);
        assert_eq!(
            cyrsync_barrier_global_leave(),
            CYRSYNC_STATUS_BARRIER_NOT_HELD
        );

        // With a timeout: nests and leaves like enter; while another handle
        // holds a freeze, gives up without going in.
        assert_eq!(cyrsync_barrier_global_enter_timeout(0), CYRSYNC_STATUS_OK);
        assert_eq!(cyrsync_barrier_global_enter_timeout(0), CYRSYNC_STATUS_OK);
        assert_eq!(cyrsync_barrier_global_depth(), 2);
        assert_eq!(cyrsync_barrier_global_leave(), CYRSYNC_STATUS_OK);
        assert_eq!(cyrsync_barrier_global_leave(), CYRSYNC_STATUS_OK);
        let mut freezer = ptr::null_mut();
        assert_eq!(
            cyrsync_barrier_open(dir.c().as_ptr(), 0, &mut freezer),
            CYRSYNC_STATUS_OK
        );
        let mut f = ptr::null_mut();
        assert_eq!(
            cyrsync_barrier_freeze(freezer, 1000, &mut f),
            CYRSYNC_STATUS_OK
        );
        assert_eq!(
            cyrsync_barrier_global_enter_timeout(20),
            CYRSYNC_STATUS_BARRIER_FROZEN
        );
        assert_eq!(cyrsync_barrier_global_depth(), 0);
        assert_eq!(cyrsync_barrier_thaw(freezer, f), CYRSYNC_STATUS_OK);
        cyrsync_barrier_free(freezer);
        assert!(
            !logged("IOERROR: cyrsync_barrier_global_enter_timeout: barrier frozen"),
            "a timeout is an answer, not an I/O error"
        );
        assert!(logged(
            "cyrsync_barrier_global_enter_timeout: barrier frozen, not entered"
        ));

        // Freeze and thaw through the global handle.
        let mut f = ptr::null_mut();
        assert_eq!(cyrsync_barrier_freeze(g, 1000, &mut f), CYRSYNC_STATUS_OK);
        assert_eq!(cyrsync_barrier_thaw(g, f), CYRSYNC_STATUS_OK);

        // The global handle cannot be freed.
        cyrsync_barrier_free(g as *mut cyrsync_barrier);
        assert!(logged("the global barrier cannot be freed"));
        assert_eq!(cyrsync_barrier_global_enter(), CYRSYNC_STATUS_OK);
        assert_eq!(cyrsync_barrier_global_leave(), CYRSYNC_STATUS_OK);
    }
}
