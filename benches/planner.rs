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
//!
//! If `cc` is found, a third column times C itself: a tiny harness (the C
//! source is below, written out and compiled with `cc -O2` at run time) with
//! re-typed copies of just `sync_action_list_add`, `remove_meta`, Cyrus's
//! `hash_insert`/`hash_lookup` (sorted bucket chains, djb2, the 1024 buckets
//! `sync_do_reader` asks for) and `sync_do_reader`'s item and redundancy
//! loops; `mboxname_to_userid` is a simple stand-in (Cyrus's real one,
//! which parses into an `mbname_t`, costs more).
//! The last line measures cyrsync end to end (sync log parse + plan) for
//! 1e6 lines.
//!
//!     cargo bench --bench planner [-- --cyrsync-only]
//!
//! `--cyrsync-only` skips the quadratic columns (seconds instead of
//! minutes).

use std::path::{Path, PathBuf};
use std::process::Command;
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

/// The C harness: Cyrus's list and hash logic, re-typed, no Cyrus file.
const C_HARNESS: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sync_action { struct sync_action *next; int active; char *name; char *user; };
struct sync_action_list { struct sync_action *head, *tail; unsigned long count; };

static struct sync_action_list *list_create(void) { return calloc(1, sizeof(struct sync_action_list)); }

/* sync_action_list_add, as imap/sync_support.c */
static void list_add(struct sync_action_list *l, const char *name, const char *user)
{
    struct sync_action *current;
    if (!name && !user) return;
    for (current = l->head; current; current = current->next) {
        if ((!name || (current->name && !strcmp(current->name, name))) &&
            (!user || (current->user && !strcmp(current->user, user)))) {
            current->active = 1;
            return;
        }
    }
    current = calloc(1, sizeof(struct sync_action));
    current->name = name ? strdup(name) : NULL;
    current->user = user ? strdup(user) : NULL;
    current->active = 1;
    if (l->tail) l->tail = l->tail->next = current;
    else l->head = l->tail = current;
    l->count++;
}

/* remove_meta */
static void remove_meta(const char *user, struct sync_action_list *list)
{
    struct sync_action *action;
    for (action = list->head; action; action = action->next)
        if (!strcmp(user, action->user)) action->active = 0;
}

/* lib/hash.c: sorted chains, strhash_seeded_djb2 with seed 0 */
typedef struct bucket { char *key; void *data; struct bucket *next; } bucket;
#define HSIZE 1024
static bucket *table[HSIZE];
static unsigned djb2(const char *s)
{
    unsigned h = 5381; int c;
    while ((c = (unsigned char)*s++)) h = ((h << 5) + h) ^ c;
    return h;
}
static void *hash_lookup(const char *key)
{
    bucket *p;
    for (p = table[djb2(key) % HSIZE]; p; p = p->next) {
        int cmp = strcmp(key, p->key);
        if (!cmp) return p->data;
        if (cmp < 0) return NULL;
    }
    return NULL;
}
static void hash_insert(const char *key, void *data)
{
    bucket **prev = &table[djb2(key) % HSIZE], *p;
    for (p = *prev; p; prev = &p->next, p = p->next) {
        int cmp = strcmp(key, p->key);
        if (!cmp) { p->data = data; return; }
        if (cmp < 0) break;
    }
    bucket *n = malloc(sizeof *n);
    n->key = strdup(key); n->data = data; n->next = p; *prev = n;
}

/* stand-in for mboxname_to_userid: "user.NAME[.sub]" -> NAME */
static char *to_userid(const char *name)
{
    if (strncmp(name, "user.", 5)) return NULL;
    size_t n = strcspn(name + 5, ".");
    char *u = malloc(n + 1);
    memcpy(u, name + 5, n); u[n] = 0;
    return u;
}

int main(int argc, char **argv)
{
    const char *kind = argv[1];
    long n = atol(argv[2]), i;
    char **a0 = malloc(n * sizeof *a0), **a1 = malloc(n * sizeof *a1), **a2 = malloc(n * sizeof *a2);
    char buf[64];
    (void)argc;
    for (i = 0; i < n; i++) {
        a2[i] = NULL;
        if (!strcmp(kind, "mailboxes")) {
            a0[i] = "MAILBOX"; snprintf(buf, sizeof buf, "shared.f%ld", i); a1[i] = strdup(buf);
        } else {
            long u = i / 4;
            static char *k[] = { "USER", "META", "SEEN", "MAILBOX" };
            a0[i] = k[i % 4];
            if (i % 4 == 3) snprintf(buf, sizeof buf, "user.u%ld.Sent", u);
            else snprintf(buf, sizeof buf, "u%ld", u);
            a1[i] = strdup(buf);
            if (i % 4 == 2) { snprintf(buf, sizeof buf, "user.u%ld", u); a2[i] = strdup(buf); }
        }
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct sync_action_list *user_list = list_create(), *unuser_list = list_create(),
        *meta_list = list_create(), *unmailbox_list = list_create(), *quota_list = list_create(),
        *annot_list = list_create(), *seen_list = list_create(), *sub_list = list_create();
    struct sync_action *action;
    for (i = 0; i < n; i++) {
        const char *args[3] = { a0[i], a1[i], a2[i] };
        if (!strcmp(args[0], "USER")) list_add(user_list, NULL, args[1]);
        else if (!strcmp(args[0], "UNUSER")) list_add(unuser_list, NULL, args[1]);
        else if (!strcmp(args[0], "META")) list_add(meta_list, NULL, args[1]);
        else if (!strcmp(args[0], "MAILBOX")) {
            char *freeme = to_userid(args[1]);
            const char *userid = freeme ? freeme : "";
            struct sync_action_list *ml = hash_lookup(userid);
            if (!ml) { ml = list_create(); hash_insert(userid, ml); }
            list_add(ml, args[1], NULL);
            if (args[2]) list_add(ml, args[2], NULL);
            free(freeme);
        }
        else if (!strcmp(args[0], "UNMAILBOX")) list_add(unmailbox_list, args[1], NULL);
        else if (!strcmp(args[0], "QUOTA")) list_add(quota_list, args[1], NULL);
        else if (!strcmp(args[0], "ANNOTATION")) list_add(annot_list, args[1], NULL);
        else if (!strcmp(args[0], "SEEN")) list_add(seen_list, args[2], args[1]);
        else if (!strcmp(args[0], "SUB")) list_add(sub_list, args[2], args[1]);
    }
    for (action = user_list->head; action; action = action->next) {
        remove_meta(action->user, meta_list);
        remove_meta(action->user, seen_list);
        remove_meta(action->user, sub_list);
    }
    for (action = unuser_list->head; action; action = action->next) {
        remove_meta(action->user, meta_list);
        remove_meta(action->user, seen_list);
        remove_meta(action->user, sub_list);
        remove_meta(action->user, user_list);
    }
    for (action = meta_list->head; action; action = action->next) {
        remove_meta(action->user, seen_list);
        remove_meta(action->user, sub_list);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.6f\n", (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
"#;

/// Compile the C harness; None if no C compiler works.
fn build_c_harness() -> Option<PathBuf> {
    let dir = std::env::temp_dir().join(format!("cyrsync-planner-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let src = dir.join("harness.c");
    std::fs::write(&src, C_HARNESS).ok()?;
    let exe = dir.join("harness");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let ok = Command::new(cc)
        .args(["-O2", "-std=c99", "-D_POSIX_C_SOURCE=200809L", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then_some(exe)
}

fn run_c(exe: &Path, kind: &str, n: usize) -> Option<Duration> {
    let out = Command::new(exe)
        .arg(kind)
        .arg(n.to_string())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse::<f64>().ok().map(Duration::from_secs_f64)
}

fn secs(d: Duration) -> String {
    format!("{:.4} s", d.as_secs_f64())
}

fn main() {
    println!("planner benchmark: cyrsync (hash) vs a Rust port of C's linear-scan lists");
    let cyrsync_only = std::env::args().any(|a| a == "--cyrsync-only");
    let harness = if cyrsync_only {
        None
    } else {
        build_c_harness()
    };
    if harness.is_none() && !cyrsync_only {
        println!("(no working `cc`: the C column is skipped)");
    }
    println!(
        "{:<10} {:>9} {:>12} {:>14} {:>10} {:>12} {:>10}",
        "workload", "lines", "cyrsync", "C-style port", "ratio", "C (cc -O2)", "ratio"
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
            if n <= 100_000 && !cyrsync_only {
                let (slow, slow_steps) = plan_linear(&items);
                assert_eq!(steps, slow_steps, "same plan size");
                if n == 100_000 {
                    linear_1e5 = Some(slow);
                }
                let c = harness.as_deref().and_then(|h| run_c(h, kind, n));
                println!(
                    "{kind:<10} {n:>9} {:>12} {:>14} {:>9.0}x {:>12} {:>10}",
                    secs(fast),
                    secs(slow),
                    slow.as_secs_f64() / fast.as_secs_f64(),
                    c.map_or("-".into(), secs),
                    c.map_or("-".into(), |c| format!(
                        "{:.0}x",
                        c.as_secs_f64() / fast.as_secs_f64()
                    )),
                );
            } else {
                let est = match (n, linear_1e5) {
                    (1_000_000, Some(d)) => format!("~{:.0} s est.", d.as_secs_f64() * 100.0),
                    _ => "-".into(),
                };
                println!(
                    "{kind:<10} {n:>9} {:>12} {:>14} {:>10} {:>12} {:>10}",
                    secs(fast),
                    est,
                    "(skipped)",
                    "(skipped)",
                    ""
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
    if let Some(h) = harness {
        let _ = std::fs::remove_dir_all(h.parent().unwrap());
    }
}
