//! A C host of the sync_client executor (tests/c/syncclient_client.c),
//! compiled with `cc` against include/cyrsync.h and linked with the link
//! line README.md documents: proves the callback table and the run API are
//! usable from C as a patched Cyrus will use them. And a differential test:
//! Cyrus's planner in C (tests/c/syncclient_cplan.c, its list, hash and
//! planning functions re-typed) against cyrsync's on random logs.

use std::process::Command;

use cyrsync_abi_tests::cprog::{compile, repo};
use cyrsync_abi_tests::*;

#[path = "syncclient_mock.rs"]
mod mock;

#[test]
fn c_host_runs_a_plan_with_deferral() {
    let dir = TempDir::new("sc-cprog");
    let exe = dir.path().join("syncclient_client");
    compile("syncclient_client.c", &[], &exe);
    let conf = dir.path().join("conf");
    let out = Command::new(&exe).arg(&conf).arg("D").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "C host failed:\n{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "MAILBOXES user.u2.Sent\n\
         RESTART\n\
         MAILBOXES user.u3\n\
         RESTART\n\
         QUOTA user.u2\n\
         SEEN u3 user.u3.x\n\
         SUB u2 user.u2.Sent\n\
         USER u1\n\
         RESTART\n\
         done=4 deferred=2 promoted=0 bailed=0 cyrus_error=0 calls=6\n"
    );
    assert_eq!(
        std::fs::read_to_string(conf.join("sync/ch/log")).unwrap(),
        "MAILBOX user.u3\nSEEN u3 user.u3.x\n"
    );
    assert!(
        stderr.contains("SYNCNOTICE: sync run finished channel=<ch> policy=<D>"),
        "{stderr}"
    );
}

/// A tiny deterministic generator (no dependency, same logs every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn random_log(rng: &mut Lcg) -> String {
    const KINDS: [&str; 14] = [
        "USER",
        "UNUSER",
        "META",
        "SIEVE",
        "APPEND",
        "MAILBOX",
        "DOUBLEMAILBOX",
        "RENAME",
        "UNMAILBOX",
        "QUOTA",
        "ANNOTATION",
        "SEEN",
        "SUB",
        "UNSUB",
    ];
    let mut log = String::new();
    let lines = 1 + rng.next(80);
    for _ in 0..lines {
        let kind = KINDS[rng.next(14) as usize];
        let user = format!("u{}", rng.next(6));
        let mbox = |rng: &mut Lcg| match rng.next(7) {
            0 => format!("shared.s{}", rng.next(3)),
            u => {
                let sub = rng.next(3);
                if sub == 0 {
                    format!("user.u{}", u - 1)
                } else {
                    format!("user.u{}.f{sub}", u - 1)
                }
            }
        };
        let line = match kind {
            "USER" | "UNUSER" | "META" | "SIEVE" => format!("{kind} {user}"),
            "SEEN" | "SUB" | "UNSUB" => format!("{kind} {user} {}", mbox(rng)),
            "RENAME" | "DOUBLEMAILBOX" => format!("{kind} {} {}", mbox(rng), mbox(rng)),
            "APPEND" | "MAILBOX" if rng.next(4) == 0 => {
                format!("{kind} {} {}", mbox(rng), mbox(rng))
            }
            _ => format!("{kind} {}", mbox(rng)),
        };
        log += &line;
        log.push('\n');
    }
    log
}

#[test]
fn plans_equal_cs_planner_on_random_logs() {
    let dir = TempDir::new("sc-cplan");
    let exe = dir.path().join("syncclient_cplan");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-g"])
        .arg(repo().join("tests/c/syncclient_cplan.c"))
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed");

    let mut rng = Lcg(20261122);
    let logs: Vec<String> = (0..400).map(|_| random_log(&mut rng)).collect();
    let mut input = String::new();
    for log in &logs {
        input += log;
        input += "---\n";
    }
    for seed in [0u32, 1804289383] {
        let mut child = Command::new(&exe)
            .arg(seed.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // feed stdin from a thread: the output would fill the pipe first
        let mut stdin = child.stdin.take().unwrap();
        let feed = input.clone();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            stdin.write_all(feed.as_bytes()).unwrap();
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let c_plans: Vec<&str> = text.split("---\n").collect();
        assert_eq!(c_plans.len(), logs.len() + 1);
        // not vacuous: thousands of steps, many multi-cohort plans
        assert!(text.lines().count() > 4000, "{}", text.lines().count());
        let multi = c_plans
            .iter()
            .filter(|p| p.matches("MAILBOXES").count() > 2)
            .count();
        assert!(multi > 100, "{multi}");

        for (log, c_plan) in logs.iter().zip(&c_plans) {
            let mut m = mock::Mock::default();
            let cfg = mock::config(&mut m, CYRSYNC_LOCK_POLICY_DEFER);
            let r = unsafe {
                cyrsync_syncclient_config_set_cohort_order(
                    cfg,
                    CYRSYNC_COHORT_ORDER_CYRUS_HASH,
                    seed,
                )
            };
            assert_eq!(r, CYRSYNC_STATUS_OK);
            mock::execute(&mut m, cfg, log, None, None);
            unsafe { cyrsync_syncclient_config_free(cfg) };
            let ours: Vec<&str> = m
                .calls
                .iter()
                .map(String::as_str)
                .filter(|c| *c != "RESTART")
                .collect();
            let theirs: Vec<&str> = c_plan.lines().collect();
            assert_eq!(ours, theirs, "seed {seed}, log:\n{log}");
        }
    }
}
