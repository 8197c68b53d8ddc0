//! The sync_client planner and executor through the C ABI, against a mock
//! target (Rust functions in the C callback table).
//!
//! Expected call sequences are derived by hand from Cyrus's
//! `sync_do_reader` (imap/sync_support.c, 3.6.1 = 3.12.4): item loop,
//! "Optimise out redundant clauses", then cohorts, QUOTA, ANNOTATION, SEEN,
//! SUB, UNMAILBOX, META, USER (+RESTART), UNUSER.

use std::ptr;

use cyrsync_abi_tests::*;

#[path = "syncclient_mock.rs"]
mod mock;
use mock::*;

fn calls(m: &Mock) -> Vec<&str> {
    m.calls.iter().map(String::as_str).collect()
}

fn free(cfg: *mut cyrsync_syncclient_config) {
    unsafe { cyrsync_syncclient_config_free(cfg) };
}

#[test]
fn plan_order_dedup_and_redundancy_are_cs() {
    let mut m = Mock::default();
    m.history
        .insert("user.u2".into(), vec!["user.u2old".into()]);
    let cfg = config(&mut m, CYRSYNC_LOCK_POLICY_DEFER);
    let log = "\
SEEN u2 user.u2.x
USER u1
MAILBOX user.u1.a
APPEND user.u2
META u1
SUB u1 user.u1.b
QUOTA user.u3
MAILBOX shared.x
ANNOTATION user.u2
UNMAILBOX user.u4.old
UNSUB u2 shared.x
MAILBOX user.u1.a
SIEVE u3
UNUSER u5
USER u5
META u5
BOGUS x
SEEN u3 user.u3
RENAME user.u1.c user.u6.c
DOUBLEMAILBOX user.u2.y shared.z
SEEN u9
";
    let res = execute(&mut m, cfg, log, None, None);
    assert_eq!(
        calls(&m),
        [
            // cohorts in first-seen order; RENAME puts both names in both
            // users' cohorts; DOUBLEMAILBOX's second name joins the first's
            // cohort; former names follow their mailbox
            "MAILBOXES user.u1.a user.u1.c user.u6.c",
            "RESTART",
            "MAILBOXES user.u2 user.u2old user.u2.y shared.z",
            "RESTART",
            "MAILBOXES shared.x",
            "RESTART",
            "MAILBOXES user.u1.c user.u6.c",
            "RESTART",
            "QUOTA user.u3",
            "ANNOTATION user.u2",
            // SEEN u3 removed by META u3 (SIEVE)
            "SEEN u2 user.u2.x",
            // SUB u1 removed by USER u1
            "SUB u2 shared.x",
            "UNMAILBOX user.u4.old",
            // META u1 removed by USER u1, META u5 by USER/UNUSER u5
            "META u3",
            "USER u1",
            "RESTART",
            // USER u5 removed by UNUSER u5
            "UNUSER u5",
        ]
    );
    assert_eq!(res.items, 21);
    assert_eq!(res.skipped, 2, "BOGUS and SEEN without mailbox");
    assert!(!res.bailed);
    assert_eq!(res.cyrus_error, 0);
    // 10 mailbox names in cohorts, 8 single items
    assert_eq!(res.done, 18);
    free(cfg);
}

#[test]
fn reactivation_follows_cs_first_match() {
    // USER u1 is added, then UNUSER u1 deactivates it even though a later
    // USER u1 re-activated the same entry (C's loop order).
    let mut m = Mock::default();
    let cfg = config(&mut m, CYRSYNC_LOCK_POLICY_DEFER);
    let log = "USER u1\nUNUSER u1\nUSER u1\nMAILBOX user.a.1\nMAILBOX user.a.2\nMAILBOX user.a.1\nSEEN u2 m\nSEEN u2 m\nSEEN u2 n\n";
    execute(&mut m, cfg, log, None, None);
    assert_eq!(
        calls(&m),
        [
            "MAILBOXES user.a.1 user.a.2",
            "RESTART",
            "SEEN u2 m",
            "SEEN u2 n",
            "UNUSER u1"
        ]
    );
    free(cfg);
}

#[test]
fn promotions_follow_cs_rules() {
    let mut m = Mock::default();
    for line in [
        "MAILBOXES user.a.x",
        "QUOTA user.b",
        "SEEN c user.c",
        "SEEN d user.c.shared",
        "SUB e user.e.f",
        "META f",
    ] {
        m.fail
            .insert(line.into(), (CYRSYNC_REPLY_ERROR, ERROR_CODE));
    }
    let cfg = config(&mut m, CYRSYNC_LOCK_POLICY_DEFER);
    let log = "MAILBOX user.a.x\nMAILBOX shared.ok\nQUOTA user.b\nSEEN c user.c\nSEEN d user.c.shared\nSUB e user.e.f\nMETA f\n";
    let res = execute(&mut m, cfg, log, None, None);
    assert_eq!(
        calls(&m),
        [
            "MAILBOXES user.a.x", // fails: personal -> USER a
            "RESTART",
            "MAILBOXES shared.ok",
            "RESTART",
            "QUOTA user.b",         // -> USER (owner of user.b)
            "SEEN c user.c",        // own INBOX -> USER c
            "SEEN d user.c.shared", // -> META d
            "SUB e user.e.f",       // -> META e
            "META f",               // -> USER f
            "META d",
            "META e",
            "USER a",
            "RESTART",
            "USER b",
            "RESTART",
            "USER c",
            "RESTART",
            "USER f",
            "RESTART",
        ]
    );
    assert_eq!(res.promoted, 6);
    assert!(!res.bailed);
    assert_eq!(res.cyrus_error, 0);
    free(cfg);
}

#[test]
fn bail_outs_are_cs() {
    // BYE on a SEEN stops the run at once.
    let mut m = Mock::default();
    m.fail
        .insert("SEEN a user.a".into(), (CYRSYNC_REPLY_BYE, BYE_CODE));
    let cfg = config(&mut m, CYRSYNC_LOCK_POLICY_DEFER);
    let res = execute(&mut m, cfg, "SEEN a user.a\nUSER z\n", None, None);
    assert_eq!(calls(&m), ["SEEN a user.a"]);
    assert!(res.bailed);
    assert_eq!(res.reply, CYRSYNC_REPLY_BYE);
    assert_eq!(res.cyrus_error, BYE_CODE);

    // A failing QUOTA of a shared root cannot be promoted to USER (C would
    // call sync_do_user(NULL)): the run bails on it.
    let mut m = Mock::default();
    m.fail
        .insert("QUOTA shared".into(), (CYRSYNC_REPLY_ERROR, ERROR_CODE));
    let res = execute(
        &mut m,
        cfg,
        "QUOTA shared\nQUOTA user.q\nUSER z\n",
        None,
        None,
    );
    assert_eq!(calls(&m), ["QUOTA shared"]);
    assert!(res.bailed);
    assert_eq!(res.cyrus_error, ERROR_CODE);

    // INVALID_USER on META bails; other META errors promote.
    let mut m = Mock::default();
    m.fail.insert(
        "META x".into(),
        (CYRSYNC_REPLY_INVALID_USER, INVALID_USER_CODE),
    );
    let res = execute(&mut m, cfg, "META x\nUSER z\n", None, None);
    assert_eq!(calls(&m), ["META x"]);
    assert!(res.bailed);
    assert_eq!(res.cyrus_error, INVALID_USER_CODE);

    // A failing non-user mailbox bails only if its cohort is the last one
    // (C overwrites the cohort result); here it is.
    let mut m = Mock::default();
    m.fail.insert(
        "MAILBOXES shared.x".into(),
        (CYRSYNC_REPLY_ERROR, ERROR_CODE),
    );
    let res = execute(
        &mut m,
        cfg,
        "MAILBOX user.a\nMAILBOX shared.x\nUSER z\n",
        None,
        None,
    );
    assert_eq!(
        calls(&m),
        ["MAILBOXES user.a", "RESTART", "MAILBOXES shared.x"]
    );
    assert!(res.bailed);
    // ... and here it is not: the run goes on.
    let mut m = Mock::default();
    m.fail.insert(
        "MAILBOXES shared.x".into(),
        (CYRSYNC_REPLY_ERROR, ERROR_CODE),
    );
    let res = execute(
        &mut m,
        cfg,
        "MAILBOX shared.x\nMAILBOX user.a\nUSER z\n",
        None,
        None,
    );
    assert_eq!(
        calls(&m),
        [
            "MAILBOXES shared.x",
            "MAILBOXES user.a",
            "RESTART",
            "USER z",
            "RESTART"
        ]
    );
    assert!(!res.bailed);
    free(cfg);
}

#[test]
fn without_channel_locked_is_an_error_as_in_c() {
    let mut m = Mock::default();
    m.locked_until.insert("a".into(), u64::MAX);
    let cfg = config(&mut m, CYRSYNC_LOCK_POLICY_BACKOFF);
    let res = execute(&mut m, cfg, "MAILBOX user.a.x\nUSER b\n", None, None);
    // no retries, no deferral: promoted to USER a, which bails
    assert_eq!(
        calls(&m),
        [
            "MAILBOXES user.a.x",
            "RESTART",
            "USER b",
            "RESTART",
            "USER a"
        ]
    );
    assert!(res.bailed);
    assert_eq!(res.reply, CYRSYNC_REPLY_LOCKED);
    assert_eq!(res.cyrus_error, LOCKED_CODE);
    assert_eq!((res.retried, res.deferred), (0, 0));
    free(cfg);
}

/// Ten users with a mailbox, a sub-folder, a SEEN and a SUB each, plus a
/// QUOTA for u3 and a META for u7 (which removes u7's SEEN and SUB).
fn workload() -> String {
    let mut log = String::new();
    for n in 0..10 {
        log += &format!(
            "MAILBOX user.u{n}\nMAILBOX user.u{n}.Sent\nSEEN u{n} user.u{n}.Sent\nSUB u{n} user.u{n}.Sent\n"
        );
    }
    log += "QUOTA user.u3\nMETA u7\n";
    log
}

/// Everything the workload syncs when all goes well, one entry per item.
fn workload_items() -> Vec<String> {
    let mut v = Vec::new();
    for n in 0..10 {
        v.push(format!("MAILBOX user.u{n}"));
        v.push(format!("MAILBOX user.u{n}.Sent"));
        if n != 7 {
            v.push(format!("SEEN u{n} user.u{n}.Sent"));
            v.push(format!("SUB u{n} user.u{n}.Sent"));
        }
    }
    v.push("QUOTA user.u3".into());
    v.push("META u7".into());
    v
}

fn u3_items() -> Vec<String> {
    workload_items()
        .into_iter()
        .filter(|i| i.contains("u3"))
        .collect()
}

/// Each item synced exactly once, except `missing`, synced never.
fn assert_synced_once_except(m: &Mock, missing: &[String]) {
    for item in workload_items() {
        let n = m.synced.get(&item).copied().unwrap_or(0);
        let want = u32::from(!missing.contains(&item));
        assert_eq!(n, want, "{item} synced {n} times");
    }
    assert_eq!(m.synced.len() + missing.len(), workload_items().len());
}

fn next_log(dir: &TempDir, ch: &str) -> Vec<String> {
    read(dir, ch, "log").lines().map(str::to_owned).collect()
}

#[test]
fn policy_d_defers_locked_items_to_the_next_log() {
    let dir = TempDir::new("sc-d");
    let mut m = Mock::default();
    m.locked_until.insert("u3".into(), u64::MAX);
    let cfg = config(&mut m, CYRSYNC_LOCK_POLICY_DEFER);
    write_log(&dir, "ch", &workload());
    let res = run_channel(&mut m, cfg, &dir, "ch").unwrap();
    assert_synced_once_except(&m, &u3_items());
    assert_eq!(
        next_log(&dir, "ch"),
        [
            "MAILBOX user.u3",
            "MAILBOX user.u3.Sent",
            "QUOTA user.u3",
            "SEEN u3 user.u3.Sent",
            "SUB u3 user.u3.Sent"
        ]
    );
    assert_eq!((res.deferred, res.retried, res.bailed), (5, 0, false));
    assert!(!channel_dir(&dir, "ch").join("log-run").exists());
    let state = read(&dir, "ch", "log-state");
    assert_eq!(
        state.lines().filter(|l| l.starts_with("deferred ")).count(),
        5
    );
    assert!(state.contains(" 1 SEEN u3 user.u3.Sent"), "{state}");

    // The next run defers them again: counts go up, first time stays.
    let res = run_channel(&mut m, cfg, &dir, "ch").unwrap();
    assert_eq!(res.deferred, 5);
    let state = read(&dir, "ch", "log-state");
    assert!(state.contains(" 2 SEEN u3 user.u3.Sent"), "{state}");

    // Unlocked: synced, state cleared, nothing left.
    m.locked_until.clear();
    let res = run_channel(&mut m, cfg, &dir, "ch").unwrap();
    assert_eq!(res.deferred, 0);
    assert_synced_once_except(&m, &[]);
    assert!(!read(&dir, "ch", "log-state").contains("deferred "));
    assert_eq!(
        run_channel(&mut m, cfg, &dir, "ch").unwrap_err(),
        CYRSYNC_STATUS_AGAIN
    );
    free(cfg);
}

fn set_backoff(cfg: *mut cyrsync_syncclient_config) {
    let r = unsafe { cyrsync_syncclient_config_set_backoff(cfg, 100, 1000, 10, 5000) };
    assert_eq!(r, CYRSYNC_STATUS_OK);
}

#[test]
fn policy_b_retries_short_locks_within_the_run() {
    let dir = TempDir::new("sc-b");
    let mut m = Mock::default();
    m.locked_until.insert("u3".into(), 300_000); // 300 ms of virtual time
    let cfg = config(&mut m, CYRSYNC_LOCK_POLICY_BACKOFF);
    set_backoff(cfg);
    write_log(&dir, "", &workload());
    let res = run_channel(&mut m, cfg, &dir, "").unwrap();
    assert_synced_once_except(&m, &[]);
    assert_eq!((res.deferred, res.bailed), (0, false));
    assert!(res.retried > 0);
    // retried and synced: no LOCKED lingers in C's result
    assert_eq!(res.cyrus_error, 0);
    assert!(next_log(&dir, "").is_empty());
    // full jitter: each sleep is within its exponential bound
    for (k, s) in m.sleeps.iter().enumerate() {
        assert!(*s <= 1_000_000, "sleep {k} = {s}us");
    }
    free(cfg);
}

#[test]
fn policy_b_defers_long_locks_within_bounds() {
    let dir = TempDir::new("sc-b2");
    let mut m = Mock::default();
    m.locked_until.insert("u3".into(), u64::MAX);
    let cfg = config(&mut m, CYRSYNC_LOCK_POLICY_BACKOFF);
    set_backoff(cfg);
    write_log(&dir, "ch", &workload());
    let res = run_channel(&mut m, cfg, &dir, "ch").unwrap();
    assert_synced_once_except(&m, &u3_items());
    assert_eq!(next_log(&dir, "ch").len(), 5);
    assert_eq!(res.deferred, 5);
    // at most 10 retries per locked item (5 items), and the items wait side
    // by side: the run sleeps about 5 s (the per-item bound) in all, not
    // 5 x 5 s
    assert!(res.retried <= 50, "{}", res.retried);
    let slept: u64 = m.sleeps.iter().sum();
    assert!(slept <= 5_000_000 + 100_000, "slept {slept} us");
    assert!(slept >= 1_000_000, "slept {slept} us");
    // the other users were not held up: every non-u3 call came before the
    // first retry
    let first_retry = m
        .calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.contains("u3"))
        .nth(4) // after the 4 first tries (cohort, QUOTA, SEEN, SUB)
        .map(|(i, _)| i)
        .unwrap();
    assert!(m.calls[first_retry..]
        .iter()
        .all(|c| c.contains("u3") || c == "RESTART"));
    free(cfg);
}

#[test]
fn policy_c_retries_after_the_rest_of_the_run() {
    let dir = TempDir::new("sc-c");
    let mut m = Mock::default();
    // Each call takes 10 ms: u3's items are first tried at 40 ms (cohort),
    // 110 ms (QUOTA), 150 ms (SEEN) and 240 ms (SUB); the run's other calls
    // end after 300 ms, so the second tries find u3 unlocked.
    m.locked_until.insert("u3".into(), 260_000);
    let cfg = config(&mut m, CYRSYNC_LOCK_POLICY_RETRY_LATER);
    write_log(&dir, "ch", &workload());
    let res = run_channel(&mut m, cfg, &dir, "ch").unwrap();
    assert_synced_once_except(&m, &[]);
    assert_eq!((res.deferred, res.retried, res.bailed), (0, 4, false));
    assert!(m.sleeps.is_empty(), "policy C never sleeps");
    // the u3 items come after everything else
    let last4: Vec<&str> = m
        .calls
        .iter()
        .rev()
        .filter(|c| *c != "RESTART")
        .take(4)
        .map(String::as_str)
        .collect();
    assert!(last4.iter().all(|c| c.contains("u3")), "{last4:?}");

    // Locked for longer: deferred after the one retry.
    let mut m = Mock::default();
    m.locked_until.insert("u3".into(), u64::MAX);
    write_log(&dir, "ch", &workload());
    let res = run_channel(&mut m, cfg, &dir, "ch").unwrap();
    assert_synced_once_except(&m, &u3_items());
    assert_eq!((res.deferred, res.retried), (5, 4));
    assert_eq!(next_log(&dir, "ch").len(), 5);
    free(cfg);
}

#[test]
fn policy_a_retries_then_fails_the_run_and_keeps_the_log() {
    let dir = TempDir::new("sc-a");
    let mut m = Mock::default();
    m.locked_until.insert("u3".into(), 300_000);
    let cfg = config(&mut m, CYRSYNC_LOCK_POLICY_ABORT);
    set_backoff(cfg);
    write_log(&dir, "ch", &workload());
    let res = run_channel(&mut m, cfg, &dir, "ch").unwrap();
    assert_synced_once_except(&m, &[]);
    assert!(!res.bailed);

    // Locked for good: the run fails, nothing is deferred, log-run stays.
    let mut m = Mock::default();
    m.locked_until.insert("u3".into(), u64::MAX);
    write_log(&dir, "ch", &workload());
    let res = run_channel(&mut m, cfg, &dir, "ch").unwrap();
    assert!(res.bailed);
    assert_eq!(res.reply, CYRSYNC_REPLY_LOCKED);
    assert_eq!(res.deferred, 0);
    assert!(channel_dir(&dir, "ch").join("log-run").exists());
    assert!(next_log(&dir, "ch").is_empty());
    assert!(!m.synced.keys().any(|k| k.contains("u3")));

    // Unlocked: the kept log is reprocessed and everything is synced.
    m.locked_until.clear();
    m.synced.clear();
    let res = run_channel(&mut m, cfg, &dir, "ch").unwrap();
    assert!(!res.bailed);
    assert_synced_once_except(&m, &[]);
    assert!(!channel_dir(&dir, "ch").join("log-run").exists());
    free(cfg);
}

#[test]
fn failing_items_are_quarantined_after_n_runs() {
    capture_log();
    let dir = TempDir::new("sc-q");
    let mut m = Mock::default();
    m.fail.insert(
        "UNMAILBOX shared.bad".into(),
        (CYRSYNC_REPLY_ERROR, ERROR_CODE),
    );
    let cfg = config(&mut m, CYRSYNC_LOCK_POLICY_DEFER);
    assert_eq!(
        unsafe { cyrsync_syncclient_config_set_quarantine_after(cfg, 3) },
        CYRSYNC_STATUS_OK
    );
    write_log(&dir, "q", "MAILBOX user.a\nUNMAILBOX shared.bad\nUSER b\n");
    for run in 1..=2 {
        let res = run_channel(&mut m, cfg, &dir, "q").unwrap();
        assert!(res.bailed, "run {run}");
        assert_eq!(res.cyrus_error, ERROR_CODE);
        assert!(channel_dir(&dir, "q").join("log-run").exists());
    }
    assert!(read(&dir, "q", "log-state").contains("failed 2 UNMAILBOX shared.bad"));
    let res = run_channel(&mut m, cfg, &dir, "q").unwrap();
    assert!(!res.bailed);
    assert_eq!(res.quarantined, 1);
    assert_eq!(read(&dir, "q", "log-quarantine"), "UNMAILBOX shared.bad\n");
    assert!(logged(
        "SYNCERROR: quarantined item=<UNMAILBOX shared.bad> failed_runs=<3> reason=<error>"
    ));
    assert!(!channel_dir(&dir, "q").join("log-run").exists());
    assert_eq!(m.synced.get("USER b"), Some(&1));
    assert_eq!(m.synced.get("MAILBOX user.a"), Some(&3), "replayed as in C");
    let state = read(&dir, "q", "log-state");
    assert!(
        state.contains("quarantined ") && !state.contains("failed "),
        "{state}"
    );
    // the reason is the error the item failed with, code and text
    assert!(
        state.contains(&format!(
            " error {ERROR_CODE} error%20code%20{ERROR_CODE} UNMAILBOX shared.bad\n"
        )),
        "{state}"
    );
    assert_eq!(
        run_channel(&mut m, cfg, &dir, "q").unwrap_err(),
        CYRSYNC_STATUS_AGAIN
    );

    // With quarantine off the log is replayed for ever, as in C.
    unsafe { cyrsync_syncclient_config_set_quarantine_after(cfg, 0) };
    write_log(&dir, "q", "UNMAILBOX shared.bad\n");
    for _ in 0..5 {
        assert!(run_channel(&mut m, cfg, &dir, "q").unwrap().bailed);
    }
    free(cfg);
}

#[test]
fn a_deferred_last_action_does_not_fail_the_run() {
    // Deliberately not Cyrus's quirk: C returns the last call's result, so
    // a run whose last action was deferred returned IMAP_MAILBOX_LOCKED and
    // rolling mode reprocessed log-run at once, hundreds of times a second.
    // A deferred item is handled: the run completes under every policy.
    let dir = TempDir::new("sc-noquirk");
    let mut m = Mock::default();
    m.locked_until.insert("u1".into(), u64::MAX);
    for policy in [
        CYRSYNC_LOCK_POLICY_DEFER,
        CYRSYNC_LOCK_POLICY_BACKOFF,
        CYRSYNC_LOCK_POLICY_RETRY_LATER,
    ] {
        let cfg = config(&mut m, policy);
        set_backoff(cfg);
        for log in ["SEEN u1 user.u1.x\n", "USER u2\nQUOTA user.u1\n"] {
            let res = execute(&mut m, cfg, log, Some(&dir), Some("ch"));
            assert_eq!((res.deferred, res.bailed), (1, false), "{policy} {log}");
            assert_eq!((res.reply, res.cyrus_error), (CYRSYNC_REPLY_OK, 0));
        }
        free(cfg);
    }
}

/// The rolling loop of a patched sync_client (`do_daemon_work`): take the
/// log, run it, end the reader unless the run bailed; `passes` times.
/// Returns the results of each pass.
fn rolling(
    m: &mut Mock,
    cfg: *mut cyrsync_syncclient_config,
    dir: &TempDir,
    ch: &str,
    passes: usize,
) -> Vec<cyrsync_syncclient_results> {
    (0..passes)
        .map(|_| run_channel(m, cfg, dir, ch).expect("a log to run"))
        .collect()
}

#[test]
fn a_locked_quota_last_in_the_run_never_loops() {
    // The measured loop: a locked user's QUOTA last in the run. Under every
    // policy and on a named and the default channel, the others are synced
    // on the first pass, the run completes (or, under A, fails on the
    // locked item alone), and the locked item is in the next log once per
    // pass, never more.
    for ch in ["ch", ""] {
        for policy in [
            CYRSYNC_LOCK_POLICY_DEFER,
            CYRSYNC_LOCK_POLICY_BACKOFF,
            CYRSYNC_LOCK_POLICY_RETRY_LATER,
            CYRSYNC_LOCK_POLICY_ABORT,
        ] {
            let dir = TempDir::new("sc-noloop");
            let mut m = Mock::default();
            m.locked_until.insert("u1".into(), u64::MAX);
            let cfg = config(&mut m, policy);
            set_backoff(cfg);
            unsafe { cyrsync_syncclient_config_set_quarantine_after(cfg, 3) };
            write_log(
                &dir,
                ch,
                "MAILBOX user.u2\nUSER u3\nMAILBOX user.u1\nQUOTA user.u1\n",
            );
            let what = format!("channel <{ch}> policy {policy}");
            let passes = rolling(&mut m, cfg, &dir, ch, 1);
            let first = passes[0];
            assert_eq!(m.synced.get("MAILBOX user.u2"), Some(&1), "{what}");
            assert_eq!(m.synced.get("USER u3"), Some(&1), "{what}");
            assert!(!m.synced.keys().any(|k| k.contains("u1")), "{what}");
            if policy == CYRSYNC_LOCK_POLICY_ABORT {
                // A fails the run on the locked items, after syncing the
                // others: the log is kept and run again (each pass waits
                // out its backoff first); after sync_quarantine_after runs
                // the items are set aside.
                assert!(first.bailed, "{what}");
                assert_eq!(first.reply, CYRSYNC_REPLY_LOCKED, "{what}");
                assert!(first.retried >= 1, "{what}");
                let mut quarantined = 0;
                let mut passes = 1;
                loop {
                    let res = rolling(&mut m, cfg, &dir, ch, 1)[0];
                    passes += 1;
                    quarantined += res.quarantined;
                    if !res.bailed {
                        break;
                    }
                    assert!(
                        passes < 10,
                        "{what}: A never gives up: {res:?} {}",
                        read(&dir, ch, "log-state")
                    );
                }
                // both locked items fail each run: quarantined together,
                // the reason the lock policy's failure
                assert_eq!((passes, quarantined), (3, 2), "{what}");
                assert_eq!(read(&dir, ch, "log-quarantine").lines().count(), 2);
                let state = read(&dir, ch, "log-state");
                for item in ["MAILBOX user.u1", "QUOTA user.u1"] {
                    assert!(
                        state.contains(&format!(
                            " locked {LOCKED_CODE} Mailbox%20is%20locked {item}\n"
                        )),
                        "{what}: {state}"
                    );
                }
                assert!(!channel_dir(&dir, ch).join("log-run").exists());
                // a failed run's log is replayed whole, as in C
                assert_eq!(m.synced.get("MAILBOX user.u2"), Some(&3), "{what}");
                free(cfg);
                continue;
            }
            assert!(!first.bailed, "{what}");
            assert_eq!((first.reply, first.cyrus_error), (CYRSYNC_REPLY_OK, 0));
            assert_eq!(first.deferred, 2, "{what}");
            assert!(!channel_dir(&dir, ch).join("log-run").exists(), "{what}");
            let mut next = next_log(&dir, ch);
            next.sort();
            assert_eq!(next, ["MAILBOX user.u1", "QUOTA user.u1"], "{what}");
            // Each later pass runs only the deferred items and defers them
            // once more: the log never grows.
            for res in rolling(&mut m, cfg, &dir, ch, 5) {
                assert!(!res.bailed, "{what}");
                assert_eq!((res.items, res.deferred, res.cyrus_error), (2, 2, 0));
                assert_eq!(next_log(&dir, ch).len(), 2, "{what}");
            }
            assert_eq!(m.synced.get("MAILBOX user.u2"), Some(&1), "{what}");
            assert_eq!(m.synced.get("USER u3"), Some(&1), "{what}");
            // Released: the next pass syncs it and the channel is idle.
            m.locked_until.clear();
            let res = rolling(&mut m, cfg, &dir, ch, 1)[0];
            assert_eq!((res.deferred, res.bailed), (0, false), "{what}");
            assert_eq!(m.synced.get("QUOTA user.u1"), Some(&1), "{what}");
            assert_eq!(
                run_channel(&mut m, cfg, &dir, ch).unwrap_err(),
                CYRSYNC_STATUS_AGAIN
            );
            free(cfg);
        }
    }
}

#[test]
fn counters_are_logged_in_cyrus_style() {
    capture_log();
    let mut m = Mock::default();
    let cfg = config(&mut m, CYRSYNC_LOCK_POLICY_DEFER);
    execute(&mut m, cfg, "USER counted\n", None, None);
    assert!(logged(
        "SYNCNOTICE: sync run finished channel=<-> policy=<D> items=<1> done=<1> deferred=<0> promoted=<0> retried=<0> quarantined=<0>"
    ));
    free(cfg);
}

#[test]
fn bad_input_gives_a_status_not_a_crash() {
    let mut m = Mock::default();
    let cfg = config(&mut m, CYRSYNC_LOCK_POLICY_DEFER);
    let mut cbs = callbacks(&mut m);
    let mut plan = ptr::null_mut();
    unsafe {
        assert_eq!(
            cyrsync_syncclient_config_new(ptr::null_mut()),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        assert_eq!(
            cyrsync_syncclient_config_set_policy(cfg, 9),
            CYRSYNC_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            cyrsync_syncclient_config_set_policy(ptr::null_mut(), 0),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        for (name, want) in [
            (&b"b\0"[..], CYRSYNC_STATUS_OK),
            (b" C \0", CYRSYNC_STATUS_OK),
            (b"X\0", CYRSYNC_STATUS_INVALID_ARGUMENT),
            (b"DB\0", CYRSYNC_STATUS_INVALID_ARGUMENT),
        ] {
            assert_eq!(
                cyrsync_syncclient_config_set_policy_name(cfg, name.as_ptr().cast()),
                want
            );
        }
        assert_eq!(
            cyrsync_syncclient_config_set_backoff(cfg, 10, 5, 1, 1),
            CYRSYNC_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(cyrsync_syncclient_plan_new(&mut plan), CYRSYNC_STATUS_OK);
        let t = cs(b"USER");
        let a = cs(b"x");
        assert_eq!(
            cyrsync_syncclient_plan_add(plan, ptr::null(), t.as_ptr(), a.as_ptr(), ptr::null()),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        assert_eq!(
            cyrsync_syncclient_plan_add(plan, &cbs, t.as_ptr(), ptr::null(), ptr::null()),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        assert_eq!(
            cyrsync_syncclient_plan_add(plan, &cbs, t.as_ptr(), a.as_ptr(), ptr::null()),
            CYRSYNC_STATUS_OK
        );
        let mut res: cyrsync_syncclient_results = std::mem::zeroed();
        // a required callback missing
        let saved = cbs.restart.take();
        assert_eq!(
            cyrsync_syncclient_execute(plan, cfg, &cbs, ptr::null(), ptr::null(), &mut res),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        cbs.restart = saved;
        // a channel needs the config directory
        let ch = cs(b"ch");
        assert_eq!(
            cyrsync_syncclient_execute(plan, cfg, &cbs, ptr::null(), ch.as_ptr(), &mut res),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        // an empty configdirectory would mean the current directory
        let empty = cs(b"");
        assert_eq!(
            cyrsync_syncclient_execute(plan, cfg, &cbs, empty.as_ptr(), ch.as_ptr(), &mut res),
            CYRSYNC_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            cyrsync_syncclient_run_channel(cfg, &cbs, empty.as_ptr(), ch.as_ptr(), &mut res),
            CYRSYNC_STATUS_INVALID_ARGUMENT
        );
        // a bad channel name
        let dir = TempDir::new("sc-bad");
        let bad = cs(b"a/b");
        assert_eq!(
            cyrsync_syncclient_execute(plan, cfg, &cbs, dir.c().as_ptr(), bad.as_ptr(), &mut res),
            CYRSYNC_STATUS_BAD_CHANNEL
        );
        // a refused run leaves the plan usable: the retry runs it
        let good = cs(b"ch");
        assert_eq!(
            cyrsync_syncclient_execute(plan, cfg, &cbs, dir.c().as_ptr(), good.as_ptr(), &mut res),
            CYRSYNC_STATUS_OK
        );
        assert_eq!((res.items, res.done), (1, 1));
        // a callbacks table of another header version is refused
        for version in [0, CYRSYNC_SYNCCLIENT_CALLBACKS_VERSION + 1] {
            let mut other = cbs;
            other.version = version;
            let mut p3 = ptr::null_mut();
            assert_eq!(cyrsync_syncclient_plan_new(&mut p3), CYRSYNC_STATUS_OK);
            assert_eq!(
                cyrsync_syncclient_plan_add(p3, &other, t.as_ptr(), a.as_ptr(), ptr::null()),
                CYRSYNC_STATUS_BAD_VERSION
            );
            assert_eq!(
                cyrsync_syncclient_execute(p3, cfg, &other, ptr::null(), ptr::null(), &mut res),
                CYRSYNC_STATUS_BAD_VERSION
            );
            assert_eq!(
                cyrsync_syncclient_run_channel(
                    cfg,
                    &other,
                    dir.c().as_ptr(),
                    ptr::null(),
                    &mut res
                ),
                CYRSYNC_STATUS_BAD_VERSION
            );
            cyrsync_syncclient_plan_free(p3);
        }
        // plans run once
        let mut plan2 = ptr::null_mut();
        assert_eq!(cyrsync_syncclient_plan_new(&mut plan2), CYRSYNC_STATUS_OK);
        assert_eq!(
            cyrsync_syncclient_execute(plan2, cfg, &cbs, ptr::null(), ptr::null(), &mut res),
            CYRSYNC_STATUS_OK
        );
        assert_eq!(
            cyrsync_syncclient_execute(plan2, cfg, &cbs, ptr::null(), ptr::null(), &mut res),
            CYRSYNC_STATUS_BAD_STATE
        );
        assert_eq!(
            cyrsync_syncclient_plan_add(plan2, &cbs, t.as_ptr(), a.as_ptr(), ptr::null()),
            CYRSYNC_STATUS_BAD_STATE
        );
        assert_eq!(
            cyrsync_syncclient_run_channel(cfg, &cbs, ptr::null(), ptr::null(), &mut res),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        cyrsync_syncclient_plan_free(plan2);
        cyrsync_syncclient_plan_free(plan);
        cyrsync_syncclient_plan_free(ptr::null_mut());
        cyrsync_syncclient_config_free(ptr::null_mut());
    }
    free(cfg);
}

#[test]
fn plan_from_a_cyrsync_reader() {
    let mut m = Mock::default();
    let cfg = config(&mut m, CYRSYNC_LOCK_POLICY_DEFER);
    let cbs = callbacks(&mut m);
    // the line with an unterminated string is set aside by the reader and
    // stepped over: the items after it are planned
    let content = b"USER u1\nSEEN u2 \"user.u2.my folder\"\nMAILBOX \"user.u2.oops\nMAILBOX {9+}\r\nuser.u2.x\n";
    unsafe {
        let mut reader = ptr::null_mut();
        assert_eq!(
            cyrsync_synclog_reader_new_content(content.as_ptr().cast(), content.len(), &mut reader),
            CYRSYNC_STATUS_OK
        );
        assert_eq!(cyrsync_synclog_reader_begin(reader), CYRSYNC_STATUS_OK);
        let mut plan = ptr::null_mut();
        assert_eq!(cyrsync_syncclient_plan_new(&mut plan), CYRSYNC_STATUS_OK);
        let mut n = 0u64;
        assert_eq!(
            cyrsync_syncclient_plan_add_reader(plan, &cbs, reader, &mut n),
            CYRSYNC_STATUS_OK
        );
        assert_eq!(n, 3);
        assert_eq!(
            cyrsync_syncclient_plan_add_reader(plan, &cbs, ptr::null_mut(), &mut n),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        let mut res: cyrsync_syncclient_results = std::mem::zeroed();
        assert_eq!(
            cyrsync_syncclient_execute(plan, cfg, &cbs, ptr::null(), ptr::null(), &mut res),
            CYRSYNC_STATUS_OK
        );
        assert_eq!(res.items, 3);
        cyrsync_syncclient_plan_free(plan);
        assert_eq!(cyrsync_synclog_reader_end(reader), CYRSYNC_STATUS_OK);
        cyrsync_synclog_reader_free(reader);
    }
    assert_eq!(
        calls(&m),
        [
            "MAILBOXES user.u2.x",
            "RESTART",
            "SEEN u2 user.u2.my folder",
            "USER u1",
            "RESTART"
        ]
    );
    free(cfg);
}

#[test]
fn names_are_bytes_through_deferral() {
    // 8-bit and quoted names go to the next log byte for byte and come
    // back through the sync log reader unchanged.
    let dir = TempDir::new("sc-bytes");
    let mut m = Mock::default();
    m.locked_until.insert("fred".into(), u64::MAX);
    let cfg = config(&mut m, CYRSYNC_LOCK_POLICY_DEFER);
    let cbs = callbacks(&mut m);
    let names: [&[u8]; 3] = [b"user.fred.caf\xe9", b"user.fred.a b", b"user.fred.q\"{x}"];
    unsafe {
        let mut plan = ptr::null_mut();
        assert_eq!(cyrsync_syncclient_plan_new(&mut plan), CYRSYNC_STATUS_OK);
        let t = cs(b"MAILBOX");
        for n in names {
            let n = cs(n);
            assert_eq!(
                cyrsync_syncclient_plan_add(plan, &cbs, t.as_ptr(), n.as_ptr(), ptr::null()),
                CYRSYNC_STATUS_OK
            );
        }
        let ch = cs(b"bytes");
        let mut res: cyrsync_syncclient_results = std::mem::zeroed();
        assert_eq!(
            cyrsync_syncclient_execute(plan, cfg, &cbs, dir.c().as_ptr(), ch.as_ptr(), &mut res),
            CYRSYNC_STATUS_OK
        );
        assert_eq!(res.deferred, 3);
        cyrsync_syncclient_plan_free(plan);

        let mut reader = ptr::null_mut();
        assert_eq!(
            cyrsync_synclog_reader_new_channel(dir.c().as_ptr(), ch.as_ptr(), &mut reader),
            CYRSYNC_STATUS_OK
        );
        assert_eq!(cyrsync_synclog_reader_begin(reader), CYRSYNC_STATUS_OK);
        let items = drain(reader);
        assert_eq!(cyrsync_synclog_reader_end(reader), CYRSYNC_STATUS_OK);
        cyrsync_synclog_reader_free(reader);
        let got: Vec<&[u8]> = items.iter().map(|i| i.arg1.as_slice()).collect();
        assert_eq!(got, names);
        assert!(items
            .iter()
            .all(|i| i.kind == b"MAILBOX" && i.arg2.is_none()));
    }
    free(cfg);
}

#[test]
fn skipped_users_are_deferred_at_once_and_never_quarantined() {
    // Cyrus 3.12's skipuser-<user> file makes the user's sync lock fail on
    // every run: its items answer LOCKED for ever. They are deferred at
    // once under every policy (no backoff wasted on them), never count as
    // failures (policy A does not fail the run, nothing is quarantined),
    // and the others are synced.
    capture_log();
    for ch in ["ch", ""] {
        for policy in [
            CYRSYNC_LOCK_POLICY_DEFER,
            CYRSYNC_LOCK_POLICY_BACKOFF,
            CYRSYNC_LOCK_POLICY_RETRY_LATER,
            CYRSYNC_LOCK_POLICY_ABORT,
        ] {
            let what = format!("channel <{ch}> policy {policy}");
            let dir = TempDir::new("sc-skip");
            let mut m = Mock::default();
            m.locked_until.insert("sk".into(), u64::MAX);
            let cfg = config(&mut m, policy);
            set_backoff(cfg);
            unsafe { cyrsync_syncclient_config_set_quarantine_after(cfg, 1) };
            std::fs::create_dir_all(channel_dir(&dir, ch)).unwrap();
            std::fs::write(channel_dir(&dir, ch).join("skipuser-sk"), "").unwrap();
            for pass in 0..3 {
                if pass == 0 {
                    write_log(
                        &dir,
                        ch,
                        "MAILBOX user.sk\nUSER a\nQUOTA user.sk\nSEEN sk user.sk.x\n",
                    );
                }
                let res = run_channel(&mut m, cfg, &dir, ch).unwrap();
                assert!(!res.bailed, "{what} pass {pass}");
                assert_eq!((res.deferred, res.retried), (3, 0), "{what}");
                assert_eq!(res.quarantined, 0, "{what}");
                assert_eq!(next_log(&dir, ch).len(), 3, "{what}");
                assert!(!read(&dir, ch, "log-state").contains("failed "), "{what}");
            }
            assert_eq!(m.synced.get("USER a"), Some(&1), "{what}");
            assert!(read(&dir, ch, "log-quarantine").is_empty(), "{what}");
            assert!(logged(
                "SYNCNOTICE: user skipped by its skipuser file, deferring its items user=<sk>"
            ));
            // the file removed: the next pass runs the items again
            std::fs::remove_file(channel_dir(&dir, ch).join("skipuser-sk")).unwrap();
            m.locked_until.clear();
            let res = run_channel(&mut m, cfg, &dir, ch).unwrap();
            assert_eq!((res.deferred, res.bailed), (0, false), "{what}");
            assert_eq!(m.synced.get("QUOTA user.sk"), Some(&1), "{what}");
            free(cfg);
        }
    }
}

#[test]
fn run_channel_on_a_busy_channel_touches_nothing() {
    // Another reader holds the channel (a second sync_client): the pass is
    // refused with BUSY and the other's log-run and the new log are intact.
    let dir = TempDir::new("sc-busy");
    let mut m = Mock::default();
    let cfg = config(&mut m, CYRSYNC_LOCK_POLICY_DEFER);
    write_log(&dir, "ch", "USER a\n");
    let ch = cs(b"ch");
    unsafe {
        let mut other = ptr::null_mut();
        assert_eq!(
            cyrsync_synclog_reader_new_channel(dir.c().as_ptr(), ch.as_ptr(), &mut other),
            CYRSYNC_STATUS_OK
        );
        assert_eq!(cyrsync_synclog_reader_begin(other), CYRSYNC_STATUS_OK);
        write_log(&dir, "ch", "USER b\n");
        assert_eq!(
            run_channel(&mut m, cfg, &dir, "ch").unwrap_err(),
            CYRSYNC_STATUS_BUSY
        );
        assert!(m.calls.is_empty());
        assert_eq!(read(&dir, "ch", "log-run"), "USER a\n");
        assert_eq!(read(&dir, "ch", "log"), "USER b\n");
        cyrsync_synclog_reader_free(other);
    }
    let res = run_channel(&mut m, cfg, &dir, "ch").unwrap();
    assert_eq!((res.items, res.done), (1, 1), "the kept log-run first");
    free(cfg);
}
