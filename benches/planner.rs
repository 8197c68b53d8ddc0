//! Planner benchmark: cyrsync's hash-based planner beside a faithful Rust
//! port of Cyrus's linear-scan `sync_action_list_add` / `remove_meta` path
//! (quadratic), on the same item streams, in one run, with ratios.
//!
//! Two workloads of n log lines:
//!
//! * `mailboxes`: n distinct `MAILBOX shared.fN` lines, one cohort (the
//!   worst case for C: every add scans the whole cohort list);
//! * `mixed`: distinct users, four lines each: `USER uN`, `META uN`,
//!   `SEEN uN user.uN`, `MAILBOX user.uN.Sent` (C's user, meta and seen
//!   lists grow with n, and `remove_meta` scans a list per user).
//!
//! The quadratic port runs for 1e4 and 1e5 lines only: at 1e6 it would take
//! about 100 times its 1e5 time (printed as an estimate, not measured).
//! The last line measures cyrsync end to end (sync log parse + plan) for
//! 1e6 lines.
//!
//!     cargo bench --bench planner

use std::time::{Duration, Instant};

use cyrsync::syncclient::plan::reference::LinearPlan;
use cyrsync::syncclient::plan::{default_mboxname_to_userid, Plan};
use cyrsync::synclog::Reader;

type Item = (Vec<u8>, Vec<u8>, Option<Vec<u8>>);

fn workload(kind: &str, n: usize) -> Vec<Item> {
    let mut items = Vec::with_capacity(n);
    for i in 0..n {
        let item: Item = match kind {
            "mailboxes" => (
                b"MAILBOX".to_vec(),
                format!("shared.f{i}").into_bytes(),
                None,
            ),
            _ => {
                let u = i / 4;
                match i % 4 {
                    0 => (b"USER".to_vec(), format!("u{u}").into_bytes(), None),
                    1 => (b"META".to_vec(), format!("u{u}").into_bytes(), None),
                    2 => (
                        b"SEEN".to_vec(),
                        format!("u{u}").into_bytes(),
                        Some(format!("user.u{u}").into_bytes()),
                    ),
                    _ => (
                        b"MAILBOX".to_vec(),
                        format!("user.u{u}.Sent").into_bytes(),
                        None,
                    ),
                }
            }
        };
        items.push(item);
    }
    items
}

fn plan_fast(items: &[Item]) -> (Duration, usize) {
    let start = Instant::now();
    let mut plan = Plan::new();
    let mut f = default_mboxname_to_userid;
    for (k, a1, a2) in items {
        plan.add_item(k, a1, a2.as_deref(), &mut f);
    }
    plan.optimise();
    let took = start.elapsed();
    (took, plan.steps().len())
}

fn plan_linear(items: &[Item]) -> (Duration, usize) {
    let start = Instant::now();
    let mut plan = LinearPlan::default();
    let mut f = default_mboxname_to_userid;
    for (k, a1, a2) in items {
        plan.add_item(k, a1, a2.as_deref(), &mut f);
    }
    plan.optimise();
    let took = start.elapsed();
    (took, plan.steps().len())
}

fn secs(d: Duration) -> String {
    format!("{:.4} s", d.as_secs_f64())
}

fn main() {
    println!("planner benchmark: cyrsync (hash) vs a Rust port of C's linear-scan lists");
    println!(
        "{:<10} {:>9} {:>12} {:>14} {:>10}",
        "workload", "lines", "cyrsync", "C-style port", "ratio"
    );
    for kind in ["mailboxes", "mixed"] {
        let mut linear_1e5 = None;
        for n in [10_000usize, 100_000, 1_000_000] {
            let items = workload(kind, n);
            // best of 3 for the fast planner
            let (mut fast, mut steps) = plan_fast(&items);
            for _ in 0..2 {
                let (t, s) = plan_fast(&items);
                fast = fast.min(t);
                steps = s;
            }
            if n <= 100_000 {
                let (slow, slow_steps) = plan_linear(&items);
                assert_eq!(steps, slow_steps, "same plan size");
                if n == 100_000 {
                    linear_1e5 = Some(slow);
                }
                println!(
                    "{kind:<10} {n:>9} {:>12} {:>14} {:>9.0}x",
                    secs(fast),
                    secs(slow),
                    slow.as_secs_f64() / fast.as_secs_f64()
                );
            } else {
                let est = linear_1e5.map_or(f64::NAN, |d| d.as_secs_f64() * 100.0);
                println!(
                    "{kind:<10} {n:>9} {:>12} {:>14} {:>10}",
                    secs(fast),
                    format!("~{est:.0} s est."),
                    "(skipped)"
                );
            }
        }
    }

    // End to end: parse a 1e6-line sync log and plan it.
    let mut text = Vec::new();
    for i in 0..1_000_000 {
        text.extend_from_slice(format!("MAILBOX user.u{}.f{i}\n", i % 1000).as_bytes());
    }
    let start = Instant::now();
    let mut reader = Reader::for_content(text);
    reader.begin().unwrap();
    let mut plan = Plan::new();
    let mut f = default_mboxname_to_userid;
    while let Some(item) = reader.next_item() {
        plan.add_item(item.kind, item.arg1, item.arg2, &mut f);
    }
    plan.optimise();
    let took = start.elapsed();
    println!(
        "end to end: parse + plan 1e6 distinct MAILBOX lines of 1000 users: {} ({} cohorts)",
        secs(took),
        plan.cohorts.len()
    );
}
