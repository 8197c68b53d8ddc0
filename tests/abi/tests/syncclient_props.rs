//! Property test through the C ABI: under every lock policy, on random logs
//! with random users locked for random (virtual) times, every planned item
//! is either synced exactly once or deferred to the next log exactly once —
//! nothing lost, nothing duplicated. Policy A may instead fail the run, and
//! then nothing is deferred and the log is kept.

use std::collections::HashMap;

use cyrsync_abi_tests::*;
use proptest::prelude::*;

#[path = "syncclient_mock.rs"]
mod mock;
use mock::*;

fn line(kind: u8, user: u8, sub: u8) -> String {
    let u = format!("u{user}");
    let mbox = if sub == 0 {
        format!("user.{u}")
    } else {
        format!("user.{u}.f{sub}")
    };
    match kind {
        0 => format!("MAILBOX {mbox}"),
        1 => format!("APPEND {mbox}"),
        2 => format!("SEEN {u} {mbox}"),
        3 => format!("SUB {u} {mbox}"),
        4 => format!("QUOTA user.{u}"),
        5 => format!("META {u}"),
        6 => format!("USER {u}"),
        7 => format!("ANNOTATION {mbox}"),
        _ => format!("UNMAILBOX {mbox}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn nothing_lost_nothing_duplicated(
        items in proptest::collection::vec((0u8..9, 0u8..5, 0u8..3), 1..40),
        locks in proptest::collection::vec((0u8..5, 0u64..4), 0..4),
        policy in 0u32..4,
    ) {
        let log: String = items.iter().map(|&(k, u, s)| line(k, u, s) + "\n").collect();
        let dir = TempDir::new("sc-prop");
        let mut m = Mock::default();
        for (user, span) in locks {
            // locked for 0.1 s, 0.5 s, 3 s or for ever (virtual time)
            let until = [100_000, 500_000, 3_000_000, u64::MAX][span as usize];
            m.locked_until.insert(format!("u{user}"), until);
        }
        let cfg = config(&mut m, policy);
        unsafe { cyrsync_syncclient_config_set_backoff(cfg, 50, 800, 6, 2_000) };
        let res = execute(&mut m, cfg, &log, Some(&dir), Some("ch"));
        unsafe { cyrsync_syncclient_config_free(cfg) };

        // every item the executor tried
        let mut planned: Vec<String> = Vec::new();
        for call in &m.calls {
            if let Some(names) = call.strip_prefix("MAILBOXES ") {
                planned.extend(names.split(' ').map(|n| format!("MAILBOX {n}")));
            } else if call != "RESTART" {
                planned.push(call.clone());
            }
        }
        planned.sort();
        planned.dedup();
        let next_log = read(&dir, "ch", "log");
        let mut deferred: HashMap<&str, u32> = HashMap::new();
        for l in next_log.lines() {
            *deferred.entry(l).or_default() += 1;
        }
        if res.bailed {
            // only policy A fails a run on a lock; the log is kept whole
            prop_assert_eq!(policy, CYRSYNC_LOCK_POLICY_ABORT);
            prop_assert!(next_log.is_empty());
            return Ok(());
        }
        for item in &planned {
            let synced = m.synced.get(item).copied().unwrap_or(0);
            let later = deferred.get(item.as_str()).copied().unwrap_or(0);
            prop_assert_eq!(synced + later, 1, "{}: synced {}, deferred {}\nlog:\n{}", item, synced, later, log);
        }
        prop_assert_eq!(deferred.values().sum::<u32>() as u64, res.deferred);
        prop_assert!(deferred.keys().all(|k| planned.iter().any(|p| p == k)));
        if policy != CYRSYNC_LOCK_POLICY_DEFER {
            prop_assert_eq!(res.cyrus_error, 0);
        }
    }
}

/// A record as (type, arg1, arg2).
type Triple = (Vec<u8>, Vec<u8>, Option<Vec<u8>>);

/// Names the sync log writer accepts: any bytes but CR, LF and NUL,
/// weighted toward the ones quoting cares about.
fn name() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => proptest::sample::select(b"user.ab x\"\\{}()\t\x0b\x0c%*~".to_vec()),
        1 => (1u8..=255).prop_filter("no line break", |b| *b != b'\r' && *b != b'\n'),
    ];
    proptest::collection::vec(byte, 0..24)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A name the writer accepts, deferred (to the channel's log), then
    /// quarantined (to log-quarantine), then replayed through the reader
    /// (what `sync_client -f log-quarantine` does) comes back byte for byte.
    #[test]
    fn deferred_then_quarantined_names_replay_byte_for_byte(
        records in proptest::collection::vec((0u8..3, name(), name()), 1..6),
    ) {
        let dir = TempDir::new("sc-replay");
        let chans = cs(b"ch");
        let mut w = std::ptr::null_mut();
        prop_assert_eq!(
            unsafe {
                cyrsync_synclog_new(dir.c().as_ptr(), chans.as_ptr(), std::ptr::null(),
                                    CYRSYNC_SYNCLOG_ENABLED, &mut w)
            },
            CYRSYNC_STATUS_OK
        );
        // what the writer accepted, as (type, arg1, arg2)
        let mut written: Vec<Triple> = Vec::new();
        for (k, a, b) in &records {
            let (kind, word, two) = match k {
                0 => (CYRSYNC_RECORD_QUOTA, &b"QUOTA"[..], false),
                1 => (CYRSYNC_RECORD_SEEN, &b"SEEN"[..], true),
                _ => (CYRSYNC_RECORD_UNMAILBOX, &b"UNMAILBOX"[..], false),
            };
            let (ca, cb) = (cs(a), cs(b));
            let r = unsafe {
                cyrsync_synclog_record_channel(w, chans.as_ptr(), kind, ca.as_ptr(),
                                               if two { cb.as_ptr() } else { std::ptr::null() })
            };
            if r == CYRSYNC_STATUS_OK {
                let item = (word.to_vec(), a.clone(), two.then(|| b.clone()));
                if !written.contains(&item) {
                    written.push(item);
                }
            }
        }
        unsafe { cyrsync_synclog_free(w) };
        prop_assume!(!written.is_empty());

        // Run 1, policy D: everything is locked and deferred to the log.
        let mut m = Mock { locked_all: true, ..Mock::default() };
        let cfg = config(&mut m, CYRSYNC_LOCK_POLICY_DEFER);
        let res = run_channel(&mut m, cfg, &dir, "ch").unwrap();
        prop_assert!(!res.bailed);
        prop_assert_eq!(res.deferred as usize, written.len());
        // Run 2, policy A with quarantine after one failed run: every item
        // is set aside.
        unsafe {
            cyrsync_syncclient_config_set_policy(cfg, CYRSYNC_LOCK_POLICY_ABORT);
            cyrsync_syncclient_config_set_backoff(cfg, 0, 0, 0, 0);
            cyrsync_syncclient_config_set_quarantine_after(cfg, 1);
        }
        let res = run_channel(&mut m, cfg, &dir, "ch").unwrap();
        unsafe { cyrsync_syncclient_config_free(cfg) };
        prop_assert!(!res.bailed);
        prop_assert_eq!(res.quarantined as usize, written.len());

        // Replay: the quarantine file through the reader, as `-f` does.
        let path = cs(channel_dir(&dir, "ch").join("log-quarantine").as_os_str().as_encoded_bytes());
        let mut reader = std::ptr::null_mut();
        prop_assert_eq!(unsafe { cyrsync_synclog_reader_new_file(path.as_ptr(), &mut reader) },
                        CYRSYNC_STATUS_OK);
        prop_assert_eq!(unsafe { cyrsync_synclog_reader_begin(reader) }, CYRSYNC_STATUS_OK);
        let mut replayed: Vec<_> = drain(reader)
            .into_iter()
            .map(|i| (i.kind, i.arg1, i.arg2))
            .collect();
        unsafe { cyrsync_synclog_reader_free(reader) };
        let mut want = written.clone();
        want.sort();
        replayed.sort();
        prop_assert_eq!(replayed, want);
    }
}
