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
