//! The executor: the second half of C's `sync_do_reader`, with lock
//! policies.
//!
//! Order of execution, promotions and bail-outs are C's
//! (`imap/sync_support.c`, identical in 3.6.1 and 3.12.4):
//!
//! 1. mailbox cohorts, each one `sync_do_mailboxes` call with the names from
//!    the log plus their former names, then RESTART if it succeeded. LOCKED
//!    with a channel defers the names not marked done; another error (not
//!    BYE) promotes each personal mailbox not done to USER of its owner. As
//!    in C, only the result of the *last* cohort decides whether the run
//!    bails out (C overwrites `smrock->r` per cohort);
//! 2. QUOTA (error: promote to USER; BYE: bail);
//! 3. ANNOTATION (same; errors of the server annotation `""` are ignored);
//! 4. SEEN (error: USER if the mailbox is the user's own INBOX, else META);
//! 5. SUB/UNSUB (error: META);
//! 6. UNMAILBOX (any error bails);
//! 7. META (INVALID_USER or BYE bail; other errors promote to USER);
//! 8. USER, each followed by RESTART (any error bails);
//! 9. UNUSER (any error bails).
//!
//! The value the run returns is C's variable `r` at `cleanup:`, quirks
//! included: it is the result of the last call, so a run whose last action
//! was deferred returns LOCKED even though nothing bailed. [`RunReport`]
//! gives both that value (`c_result`) and whether the run really bailed out.
//!
//! What differs from C is only what happens on LOCKED when running for a
//! channel, chosen by [`LockPolicy`], and the quarantine of items that make
//! run after run bail out (see [`ChannelSink`]). Retries (policies B, C, A)
//! run after C's order has moved on: their outcome becomes the run's `r`,
//! and a retried item that fails with another error than LOCKED is
//! deferred (its list has already run, so C's promotion cannot apply; the
//! next run applies it). QUOTA/ANNOTATION promotion resolves the owner
//! (see `promote_name`) where C would call `sync_do_user(NULL)`.

use std::collections::HashSet;
use std::time::Duration;

use super::list::ActionList;
use super::plan::{Kind, Plan};
use super::record::Record;

/// What a sync operation answered. The `i32` is the host's original error
/// code (a Cyrus `IMAP_*` value), kept for messages and for the run's
/// result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Ok,
    /// IMAP_MAILBOX_LOCKED: the target (or our own sync lock) is busy.
    Locked(i32),
    /// IMAP_BYE_LOGOUT: the connection is gone.
    Bye(i32),
    /// IMAP_INVALID_USER.
    InvalidUser(i32),
    /// Any other error.
    Error(i32),
}

impl Reply {
    pub fn is_ok(self) -> bool {
        self == Reply::Ok
    }
    pub fn is_locked(self) -> bool {
        matches!(self, Reply::Locked(_))
    }
    pub fn is_bye(self) -> bool {
        matches!(self, Reply::Bye(_))
    }
    /// The host's error code (0 for OK).
    pub fn code(self) -> i32 {
        match self {
            Reply::Ok => 0,
            Reply::Locked(c) | Reply::Bye(c) | Reply::InvalidUser(c) | Reply::Error(c) => c,
        }
    }
}

/// The sync target and the host's mailbox database: one method per C
/// function `sync_do_reader` calls.
pub trait Target {
    /// `sync_do_mailboxes` for one cohort. Set `done[i]` for every name
    /// that was synced (C's `mark`), also when returning an error.
    fn mailboxes(&mut self, names: &[&[u8]], done: &mut [bool]) -> Reply;
    fn quota(&mut self, root: &[u8]) -> Reply;
    fn annotation(&mut self, name: &[u8]) -> Reply;
    fn seen(&mut self, user: &[u8], mailbox: &[u8]) -> Reply;
    /// `user_sub`: SUB and UNSUB alike (the target checks the state).
    fn sub(&mut self, user: &[u8], mailbox: &[u8]) -> Reply;
    fn unmailbox(&mut self, name: &[u8]) -> Reply;
    fn meta(&mut self, user: &[u8]) -> Reply;
    fn user(&mut self, user: &[u8]) -> Reply;
    fn unuser(&mut self, user: &[u8]) -> Reply;
    /// `sync_do_restart`.
    fn restart(&mut self) -> Reply;
    /// `mboxname_to_userid`.
    fn mboxname_to_userid(&mut self, name: &[u8]) -> Option<Vec<u8>> {
        super::plan::default_mboxname_to_userid(name)
    }
    /// `mboxname_isusermailbox(name, 1) != NULL`.
    fn is_user_inbox(&mut self, name: &[u8]) -> bool {
        super::plan::default_is_user_inbox(name)
    }
    /// Former names of a mailbox (`mbentry->name_history`), appended to
    /// `out`.
    fn name_history(&mut self, _name: &[u8], _out: &mut Vec<Vec<u8>>) {}
    /// Text for an error code (`error_message`).
    fn describe(&mut self, code: i32) -> String {
        format!("error code {code}")
    }
}

/// What to do when the target answers LOCKED while running for a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockPolicy {
    /// D: defer at once to the channel's log (C's behaviour).
    #[default]
    Defer,
    /// B: retry later in the same run with exponential backoff and full
    /// jitter, bounded attempts and total wait, then defer. The run goes on
    /// while an item waits; at its end the run waits for the last retries
    /// (so locked items wait side by side, not one after another).
    Backoff,
    /// C: one retry after the rest of the run, then defer.
    RetryLater,
    /// A: retry with backoff, then fail the run (the log is kept).
    Abort,
}

impl LockPolicy {
    /// From the letter used in configuration (`D`, `B`, `C`, `A`, any case).
    pub fn from_letter(letter: &str) -> Option<Self> {
        Some(match letter.trim() {
            "D" | "d" => LockPolicy::Defer,
            "B" | "b" => LockPolicy::Backoff,
            "C" | "c" => LockPolicy::RetryLater,
            "A" | "a" => LockPolicy::Abort,
            _ => return None,
        })
    }
    pub fn letter(self) -> char {
        match self {
            LockPolicy::Defer => 'D',
            LockPolicy::Backoff => 'B',
            LockPolicy::RetryLater => 'C',
            LockPolicy::Abort => 'A',
        }
    }
}

/// Executor settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub policy: LockPolicy,
    /// Backoff: first delay bound; doubles per attempt up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Backoff: retries after the first LOCKED answer.
    pub max_attempts: u32,
    /// Backoff: how long after an item was first LOCKED its last retry
    /// may start.
    pub max_total_wait: Duration,
    /// Items that made this many consecutive runs bail out are quarantined
    /// instead of bailing again; 0 disables quarantine.
    pub quarantine_after: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            policy: LockPolicy::Defer,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            max_attempts: 5,
            max_total_wait: Duration::from_secs(30),
            quarantine_after: 5,
        }
    }
}

/// Time and randomness, injectable so tests are fast and deterministic.
pub trait Clock {
    /// Monotonic time since an arbitrary origin.
    fn now(&mut self) -> Duration;
    fn sleep(&mut self, duration: Duration);
    /// Uniform in `[0, max]` (full jitter).
    fn jitter(&mut self, max: Duration) -> Duration;
}

/// The real clock: `std::thread::sleep` and a xorshift generator seeded
/// from the time and the process id.
pub struct SystemClock {
    state: u64,
    start: std::time::Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        SystemClock {
            state: (nanos ^ (u64::from(std::process::id()) << 32)) | 1,
            start: std::time::Instant::now(),
        }
    }
}

impl SystemClock {
    /// A generator with a fixed seed (repeatable jitter).
    pub fn with_seed(seed: u64) -> Self {
        SystemClock {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            start: std::time::Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&mut self) -> Duration {
        self.start.elapsed()
    }
    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
    fn jitter(&mut self, max: Duration) -> Duration {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        let nanos = max.as_nanos().min(u128::from(u64::MAX)) as u64;
        Duration::from_nanos(if nanos == 0 { 0 } else { x % (nanos + 1) })
    }
}

/// Where deferred and quarantined items go when running for a channel.
pub trait ChannelSink {
    /// Append the record to the channel's log (C's `sync_log_channel_*`).
    fn defer(&mut self, record: &Record) -> Result<(), String>;
    /// How many consecutive earlier runs bailed out on this record.
    fn prior_failures(&mut self, record: &Record) -> u32;
    /// Set the record aside in the quarantine file.
    fn quarantine(&mut self, record: &Record) -> Result<(), String>;
}

/// Counters of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Items synced (each mailbox of a cohort counts).
    pub done: u64,
    /// Items appended to the channel's log.
    pub deferred: u64,
    /// Items promoted to USER or META.
    pub promoted: u64,
    /// Retries after LOCKED (policies B, C, A).
    pub retried: u64,
    /// Items set aside in the quarantine file.
    pub quarantined: u64,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub counters: Counters,
    /// What C's `sync_do_reader` would return: its `r` at `cleanup:`.
    pub c_result: Option<Reply>,
    /// Set when the run stopped early (C's `goto cleanup`), with the reply
    /// that stopped it. Then the log must be kept and run again.
    pub bailed: Option<Reply>,
    /// Records deferred to the channel's log, in order.
    pub deferred: Vec<Record>,
    /// Records the run bailed out on (candidates for quarantine).
    pub failed: Vec<Record>,
    /// Records set aside in the quarantine file this run.
    pub quarantined: Vec<Record>,
    /// A deferral or quarantine write failed (the run then bailed out).
    pub io_error: bool,
}

impl RunReport {
    /// C's result as an integer error code (0 = OK).
    pub fn c_code(&self) -> i32 {
        self.c_result.map_or(0, Reply::code)
    }
}

/// One single-item operation (owned, so the plan's lists can grow while it
/// runs).
#[derive(Debug, Clone)]
enum Op {
    Quota(Vec<u8>),
    Annotation(Vec<u8>),
    Seen(Vec<u8>, Vec<u8>),
    Sub(Vec<u8>, Vec<u8>),
    Unmailbox(Vec<u8>),
    Meta(Vec<u8>),
    User(Vec<u8>),
    Unuser(Vec<u8>),
}

impl Op {
    fn record(&self) -> Record {
        let (kind, a1, a2) = match self {
            Op::Quota(n) => (Kind::Quota, n, None),
            Op::Annotation(n) => (Kind::Annotation, n, None),
            Op::Seen(u, m) => (Kind::Seen, u, Some(m)),
            Op::Sub(u, m) => (Kind::Sub, u, Some(m)),
            Op::Unmailbox(n) => (Kind::Unmailbox, n, None),
            Op::Meta(u) => (Kind::Meta, u, None),
            Op::User(u) => (Kind::User, u, None),
            Op::Unuser(u) => (Kind::Unuser, u, None),
        };
        Record::new(kind, a1, a2.map(Vec::as_slice))
    }
}

/// What became of a single-item call after the lock policy.
enum After {
    Done,
    /// Deferred to the log or queued for policy C (or quarantined): C's
    /// `r` stays this LOCKED reply.
    Handled(Reply),
    /// An answer for C's rules (never LOCKED with a channel, except that
    /// policy A turns it into `Bail`).
    Err(Reply),
    /// Stop the run now.
    Bail(Reply),
}

/// A LOCKED item waiting for its next try (policies B and A).
struct Pending {
    due: Duration,
    seq: u64,
    item: Later,
    /// Retries scheduled so far.
    attempts: u32,
    /// When it was first found LOCKED.
    first: Duration,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    /// Reversed: the earliest due is the greatest, for `BinaryHeap`.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// Queued for policy C's retry after the rest of the run, or for a
/// backoff retry.
enum Later {
    Cohort(Vec<Vec<u8>>),
    Single(Op),
}

struct Executor<'a> {
    target: &'a mut dyn Target,
    channel: Option<&'a mut dyn ChannelSink>,
    clock: &'a mut dyn Clock,
    config: Config,
    report: RunReport,
    later: Vec<Later>,
    /// Policies B and A: LOCKED items waiting for their next try.
    retry: std::collections::BinaryHeap<Pending>,
    seq: u64,
    /// Set when a retry (B, A, C) resolved an item (synced or deferred):
    /// retries come after C's own last action, so the run's `r` is then OK.
    retry_r: Option<Reply>,
}

/// Run a plan against a target. `channel` is `None` in the one-shot modes
/// (`sync_client -u/-m/-f ...`), where LOCKED is an error like any other,
/// as in C.
pub fn execute<'a>(
    plan: &mut Plan,
    target: &'a mut dyn Target,
    channel: Option<&'a mut dyn ChannelSink>,
    clock: &'a mut dyn Clock,
    config: Config,
) -> RunReport {
    let mut ex = Executor {
        target,
        channel,
        clock,
        config,
        report: RunReport::default(),
        later: Vec::new(),
        retry: std::collections::BinaryHeap::new(),
        seq: 0,
        retry_r: None,
    };
    plan.optimise();
    let r = ex.run(plan);
    let mut report = ex.report;
    report.c_result = Some(r);
    if !r.is_ok() && !r.is_bye() {
        log::error!(
            "Error in do_sync(): bailing out! {}",
            ex.target.describe(r.code())
        );
    }
    report
}

impl Executor<'_> {
    fn call(&mut self, op: &Op) -> Reply {
        match op {
            Op::Quota(n) => self.target.quota(n),
            Op::Annotation(n) => self.target.annotation(n),
            Op::Seen(u, m) => self.target.seen(u, m),
            Op::Sub(u, m) => self.target.sub(u, m),
            Op::Unmailbox(n) => self.target.unmailbox(n),
            Op::Meta(u) => self.target.meta(u),
            Op::User(u) => self.target.user(u),
            Op::Unuser(u) => self.target.unuser(u),
        }
    }

    /// Policies B and A: schedule the next try of a LOCKED item after a
    /// full-jitter exponential delay (attempt n waits up to `base * 2^n`,
    /// capped by `max_delay` and by what is left of `max_total_wait` since
    /// the item was first LOCKED). The run goes on meanwhile. Gives the
    /// item back when it has used its attempts or its time.
    fn schedule(&mut self, item: Later, attempts: u32, first: Duration) -> Result<(), Later> {
        let now = self.clock.now();
        let waited = now.saturating_sub(first);
        if attempts >= self.config.max_attempts || waited >= self.config.max_total_wait {
            return Err(item);
        }
        let cap = self
            .config
            .base_delay
            .saturating_mul(1u32.checked_shl(attempts).unwrap_or(u32::MAX))
            .min(self.config.max_delay)
            .min(self.config.max_total_wait - waited);
        let delay = self.clock.jitter(cap).min(cap);
        self.seq += 1;
        self.retry.push(Pending {
            due: now + delay,
            seq: self.seq,
            item,
            attempts: attempts + 1,
            first,
        });
        Ok(())
    }

    /// Run the backoff retries that are due; with `wait`, sleep until every
    /// one has been run. A retry that succeeds is done; one still LOCKED is
    /// scheduled again, or when out of attempts deferred (B) or fails the
    /// run (A); another error defers it (the next run applies C's full
    /// rules: its list has already run here). Err: bail out with this.
    fn poll(&mut self, wait: bool) -> Result<(), Reply> {
        loop {
            let Some(top) = self.retry.peek() else {
                return Ok(());
            };
            let now = self.clock.now();
            if top.due > now {
                if !wait {
                    return Ok(());
                }
                let d = top.due - now;
                self.clock.sleep(d);
                continue;
            }
            let p = self.retry.pop().expect("peeked");
            self.report.counters.retried += 1;
            // each arm gives the retry's reply once the item is resolved
            // (synced or deferred); `continue` when it is not
            let _reply = match p.item {
                Later::Single(op) => {
                    let r = self.call(&op);
                    if r.is_ok() {
                        self.report.counters.done += 1;
                        if matches!(op, Op::User(_)) {
                            let r2 = self.target.restart();
                            if !r2.is_ok() {
                                return Err(r2);
                            }
                        }
                    } else if r.is_bye() {
                        return Err(r);
                    } else if r.is_locked() {
                        match self.schedule(Later::Single(op), p.attempts, p.first) {
                            Ok(()) => continue,
                            Err(Later::Single(op)) => {
                                if self.config.policy == LockPolicy::Abort {
                                    if self.bail_or_quarantine(vec![op.record()], r) {
                                        return Err(r);
                                    }
                                    continue;
                                }
                                self.defer(op.record())?;
                            }
                            Err(Later::Cohort(_)) => unreachable!("scheduled a single item"),
                        }
                    } else {
                        self.defer(op.record())?;
                    }
                    r
                }
                Later::Cohort(names) => {
                    let mut done = vec![false; names.len()];
                    let r = self.call_mailboxes(&names, &mut done, None);
                    if r.is_ok() {
                        let r2 = self.target.restart();
                        if !r2.is_ok() {
                            return Err(r2);
                        }
                    } else if r.is_bye() {
                        return Err(r);
                    } else {
                        let rest = unmarked(&names, &done);
                        let rest = if r.is_locked() {
                            match self.schedule(Later::Cohort(rest), p.attempts, p.first) {
                                Ok(()) => continue,
                                Err(Later::Cohort(rest)) => rest,
                                Err(Later::Single(_)) => unreachable!("scheduled a cohort"),
                            }
                        } else {
                            rest
                        };
                        if r.is_locked() && self.config.policy == LockPolicy::Abort {
                            let records = rest
                                .iter()
                                .map(|n| Record::new(Kind::Mailbox, n, None))
                                .collect();
                            if self.bail_or_quarantine(records, r) {
                                return Err(r);
                            }
                            continue;
                        }
                        for name in rest {
                            self.defer(Record::new(Kind::Mailbox, &name, None))?;
                        }
                    }
                    r
                }
            };
            self.retry_r = Some(Reply::Ok);
        }
    }

    fn defer(&mut self, record: Record) -> Result<(), Reply> {
        let Some(sink) = self.channel.as_deref_mut() else {
            unreachable!("defer without a channel");
        };
        match sink.defer(&record) {
            Ok(()) => {
                log::debug!("  Deferred: {record}");
                self.report.counters.deferred += 1;
                self.report.deferred.push(record);
                Ok(())
            }
            Err(e) => {
                // The item would be lost: fail the run so the log is kept.
                log::error!("SYNCERROR: cannot defer item=<{record}> error=<{e}>");
                self.report.io_error = true;
                self.report.failed.push(record);
                Err(Reply::Error(0))
            }
        }
    }

    fn single(&mut self, op: &Op) -> After {
        let r = self.call(op);
        if r.is_locked() && self.channel.is_some() {
            // Under D a deferred item leaves LOCKED in C's `r` (C's quirk,
            // kept); the other policies count a handled item as OK.
            let handled = if self.config.policy == LockPolicy::Defer {
                r
            } else {
                Reply::Ok
            };
            match self.config.policy {
                LockPolicy::Defer => {}
                LockPolicy::Backoff | LockPolicy::Abort => {
                    let now = self.clock.now();
                    if self.schedule(Later::Single(op.clone()), 0, now).is_ok() {
                        return After::Handled(handled);
                    }
                }
                LockPolicy::RetryLater => {
                    self.later.push(Later::Single(op.clone()));
                    return After::Handled(handled);
                }
            }
            // D, or B/A allowed no retry at all
            if self.config.policy == LockPolicy::Abort {
                return match self.bail_or_quarantine(vec![op.record()], r) {
                    true => After::Bail(r),
                    false => After::Handled(Reply::Ok),
                };
            }
            return match self.defer(op.record()) {
                Ok(()) => After::Handled(handled),
                Err(e) => After::Bail(e),
            };
        }
        if r.is_ok() {
            self.report.counters.done += 1;
            After::Done
        } else {
            After::Err(r)
        }
    }

    /// C's `goto cleanup` for an item that is not a connection loss: if
    /// the item made enough earlier runs bail, quarantine it and go on
    /// (returns false); otherwise remember it and bail (returns true).
    fn bail_or_quarantine(&mut self, records: Vec<Record>, r: Reply) -> bool {
        let threshold = self.config.quarantine_after;
        if let (Some(sink), true) = (self.channel.as_deref_mut(), threshold > 0) {
            let ripe = !records.is_empty()
                && records
                    .iter()
                    .all(|rec| sink.prior_failures(rec).saturating_add(1) >= threshold);
            if ripe {
                for rec in &records {
                    if let Err(e) = sink.quarantine(rec) {
                        log::error!("SYNCERROR: cannot quarantine item=<{rec}> error=<{e}>");
                        self.report.io_error = true;
                        self.report.failed.extend(records);
                        return true;
                    }
                }
                for rec in records {
                    log::error!(
                        "SYNCERROR: quarantined item=<{rec}> failed_runs=<{threshold}> error=<{}>",
                        self.target.describe(r.code())
                    );
                    self.report.counters.quarantined += 1;
                    self.report.quarantined.push(rec);
                }
                return false;
            }
        }
        self.report.failed.extend(records);
        true
    }

    fn promote(
        &mut self,
        list_is_user: bool,
        plan_list: &mut ActionList,
        user: &[u8],
        from: &Record,
    ) {
        plan_list.add(None, Some(user));
        self.report.counters.promoted += 1;
        log::debug!(
            "  Promoting: {from} -> {} {}",
            if list_is_user { "USER" } else { "META" },
            user.escape_ascii()
        );
    }

    /// One cohort: C's `split_user_mailboxes` + `do_mailboxes` + RESTART.
    /// Returns C's `smrock->r` and the records that failed.
    fn cohort(&mut self, plan: &mut Plan, index: usize) -> Option<(Reply, Vec<Record>)> {
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut history = Vec::new();
        for a in plan.cohorts[index].mailboxes.active() {
            let name = a.name_bytes();
            if seen.insert(name.to_vec()) {
                names.push(name.to_vec());
            }
            history.clear();
            self.target.name_history(name, &mut history);
            for former in history.drain(..) {
                if seen.insert(former.clone()) {
                    names.push(former);
                }
            }
        }
        if names.is_empty() {
            return None;
        }
        log::trace!("sync_mailboxes: doing {}", names.len());
        let mut done = vec![false; names.len()];
        let mut r = self.call_mailboxes(&names, &mut done, None);
        if r.is_locked() && self.channel.is_some() {
            match self.config.policy {
                LockPolicy::Defer => {}
                LockPolicy::Backoff | LockPolicy::Abort => {
                    let now = self.clock.now();
                    let rest = unmarked(&names, &done);
                    if self.schedule(Later::Cohort(rest), 0, now).is_ok() {
                        // as after a deferral: C's r is 0, so RESTART follows
                        return Some(self.restart_after((Reply::Ok, Vec::new())));
                    }
                }
                LockPolicy::RetryLater => {
                    let rest = unmarked(&names, &done);
                    self.later.push(Later::Cohort(rest));
                    // as after a deferral: C's r is 0, so RESTART follows
                    return Some(self.restart_after((Reply::Ok, Vec::new())));
                }
            }
            if r.is_locked() {
                let rest = unmarked(&names, &done);
                if self.config.policy == LockPolicy::Abort {
                    let records = rest
                        .iter()
                        .map(|n| Record::new(Kind::Mailbox, n, None))
                        .collect();
                    return Some((Reply::Locked(r.code()), records));
                }
                for name in rest {
                    if let Err(e) = self.defer(Record::new(Kind::Mailbox, &name, None)) {
                        return Some((e, Vec::new()));
                    }
                }
                r = Reply::Ok;
                return Some(self.restart_after((r, Vec::new())));
            }
        }
        if r.is_ok() {
            return Some(self.restart_after((r, Vec::new())));
        }
        if r.is_bye() {
            return Some((r, Vec::new()));
        }
        // promote failed personal mailboxes to USER
        let mut nonuser = Vec::new();
        for (name, done) in names.iter().zip(done.iter_mut()) {
            if *done {
                continue;
            }
            match self.target.mboxname_to_userid(name) {
                Some(userid) => {
                    *done = true;
                    let from = Record::new(Kind::Mailbox, name, None);
                    self.promote(true, &mut plan.users, &userid, &from);
                }
                None => nonuser.push(Record::new(Kind::Mailbox, name, None)),
            }
        }
        if nonuser.is_empty() {
            Some(self.restart_after((Reply::Ok, Vec::new())))
        } else {
            Some((r, nonuser))
        }
    }

    /// C: `if (!smrock->r) smrock->r = sync_do_restart(...)`.
    fn restart_after(&mut self, (r, failed): (Reply, Vec<Record>)) -> (Reply, Vec<Record>) {
        if r.is_ok() {
            (self.target.restart(), failed)
        } else {
            (r, failed)
        }
    }

    /// Call `mailboxes` with the names not yet done; on a retry (`retry`
    /// set) only those, keeping the marks of earlier attempts.
    fn call_mailboxes(&mut self, names: &[Vec<u8>], done: &mut [bool], retry: Option<()>) -> Reply {
        let (idx, refs): (Vec<usize>, Vec<&[u8]>) = names
            .iter()
            .enumerate()
            .filter(|(i, _)| retry.is_none() || !done[*i])
            .map(|(i, n)| (i, n.as_slice()))
            .unzip();
        let mut marks = vec![false; refs.len()];
        let r = self.target.mailboxes(&refs, &mut marks);
        let mut newly = 0;
        for (k, &i) in idx.iter().enumerate() {
            if marks[k] && !done[i] {
                done[i] = true;
                newly += 1;
            }
        }
        if r.is_ok() {
            // an OK call synced every name it was given
            for &i in &idx {
                if !done[i] {
                    done[i] = true;
                    newly += 1;
                }
            }
        }
        self.report.counters.done += newly;
        r
    }

    fn run(&mut self, plan: &mut Plan) -> Reply {
        let mut r = Reply::Ok;

        // 1. mailbox cohorts; C keeps only the last cohort's result
        let mut last: Option<(Reply, Vec<Record>)> = None;
        for i in 0..plan.cohorts.len() {
            if let Err(e) = self.poll(false) {
                return self.bail(e);
            }
            if let Some(result) = self.cohort(plan, i) {
                let stop = self.config.policy == LockPolicy::Abort && result.0.is_locked();
                last = Some(result);
                if stop {
                    break;
                }
            }
        }
        if let Some((cr, failed)) = last {
            r = cr;
            if !r.is_ok() {
                if r.is_bye() || failed.is_empty() || self.bail_or_quarantine(failed, r) {
                    self.report.bailed = Some(r);
                    return r;
                }
                r = Reply::Ok;
            }
        }

        // 2. QUOTA
        let mut i = 0;
        while i < plan.quotas.len() {
            if let Err(e) = self.poll(false) {
                return self.bail(e);
            }
            let a = plan.quotas.get(i);
            i += 1;
            if !a.active {
                continue;
            }
            let op = Op::Quota(a.name_bytes().to_vec());
            let after = self.single(&op);
            match self.settle_promotable(plan, &op, after) {
                Ok(x) => r = x,
                Err(e) => return self.bail(e),
            }
        }

        // 3. ANNOTATION
        let mut i = 0;
        while i < plan.annotations.len() {
            if let Err(e) = self.poll(false) {
                return self.bail(e);
            }
            let a = plan.annotations.get(i);
            i += 1;
            if !a.active {
                continue;
            }
            let op = Op::Annotation(a.name_bytes().to_vec());
            let server = a.name_bytes().is_empty();
            let after = if server {
                // the server annotation: result ignored, never deferred
                let x = self.call(&op);
                if x.is_ok() {
                    self.report.counters.done += 1;
                }
                r = x;
                continue;
            } else {
                self.single(&op)
            };
            match self.settle_promotable(plan, &op, after) {
                Ok(x) => r = x,
                Err(e) => return self.bail(e),
            }
        }

        // 4. SEEN
        let mut i = 0;
        while i < plan.seens.len() {
            if let Err(e) = self.poll(false) {
                return self.bail(e);
            }
            let a = plan.seens.get(i);
            i += 1;
            if !a.active {
                continue;
            }
            let (user, mailbox) = (a.user_bytes().to_vec(), a.name_bytes().to_vec());
            let op = Op::Seen(user.clone(), mailbox.clone());
            match self.single(&op) {
                After::Done => r = Reply::Ok,
                After::Handled(x) => r = x,
                After::Bail(e) => return self.bail(e),
                After::Err(e) if e.is_bye() => return self.bail(e),
                After::Err(e) => {
                    r = e;
                    let owner = self.target.mboxname_to_userid(&mailbox);
                    let own_inbox = owner.as_deref() == Some(user.as_slice())
                        && self.target.is_user_inbox(&mailbox);
                    if own_inbox {
                        self.promote(true, &mut plan.users, &user, &op.record());
                    } else {
                        self.promote(false, &mut plan.metas, &user, &op.record());
                    }
                }
            }
        }

        // 5. SUB / UNSUB
        let mut i = 0;
        while i < plan.subs.len() {
            if let Err(e) = self.poll(false) {
                return self.bail(e);
            }
            let a = plan.subs.get(i);
            i += 1;
            if !a.active {
                continue;
            }
            let user = a.user_bytes().to_vec();
            let op = Op::Sub(user.clone(), a.name_bytes().to_vec());
            match self.single(&op) {
                After::Done => r = Reply::Ok,
                After::Handled(x) => r = x,
                After::Bail(e) => return self.bail(e),
                After::Err(e) if e.is_bye() => return self.bail(e),
                After::Err(e) => {
                    r = e;
                    self.promote(false, &mut plan.metas, &user, &op.record());
                }
            }
        }

        // 6. UNMAILBOX
        let mut i = 0;
        while i < plan.unmailboxes.len() {
            if let Err(e) = self.poll(false) {
                return self.bail(e);
            }
            let a = plan.unmailboxes.get(i);
            i += 1;
            if !a.active {
                continue;
            }
            let op = Op::Unmailbox(a.name_bytes().to_vec());
            match self.single(&op) {
                After::Done => r = Reply::Ok,
                After::Handled(x) => r = x,
                After::Bail(e) => return self.bail(e),
                After::Err(e) => {
                    if e.is_bye() || self.bail_or_quarantine(vec![op.record()], e) {
                        return self.bail(e);
                    }
                    r = Reply::Ok;
                }
            }
        }

        // 7. META
        let mut i = 0;
        while i < plan.metas.len() {
            if let Err(e) = self.poll(false) {
                return self.bail(e);
            }
            let a = plan.metas.get(i);
            i += 1;
            if !a.active {
                continue;
            }
            let user = a.user_bytes().to_vec();
            let op = Op::Meta(user.clone());
            match self.single(&op) {
                After::Done => r = Reply::Ok,
                After::Handled(x) => r = x,
                After::Bail(e) => return self.bail(e),
                After::Err(e @ Reply::Bye(_)) => return self.bail(e),
                After::Err(e @ Reply::InvalidUser(_)) => {
                    if self.bail_or_quarantine(vec![op.record()], e) {
                        return self.bail(e);
                    }
                    r = Reply::Ok;
                }
                After::Err(e) => {
                    r = e;
                    self.promote(true, &mut plan.users, &user, &op.record());
                }
            }
        }

        // 8. USER, each followed by RESTART
        let mut i = 0;
        while i < plan.users.len() {
            if let Err(e) = self.poll(false) {
                return self.bail(e);
            }
            let a = plan.users.get(i).clone();
            i += 1;
            if !a.active {
                continue;
            }
            let Some(user) = self.user_of(&a) else {
                let rec = Record::new(Kind::User, a.name_bytes(), None);
                let e = Reply::Error(0);
                if self.bail_or_quarantine(vec![rec], e) {
                    return self.bail(e);
                }
                r = Reply::Ok;
                continue;
            };
            let op = Op::User(user);
            match self.single(&op) {
                After::Done | After::Handled(_) => {}
                After::Bail(e) => return self.bail(e),
                After::Err(e) => {
                    if e.is_bye() || self.bail_or_quarantine(vec![op.record()], e) {
                        return self.bail(e);
                    }
                }
            }
            r = self.target.restart();
            if !r.is_ok() {
                return self.bail(r);
            }
        }

        // 9. UNUSER
        let mut i = 0;
        while i < plan.unusers.len() {
            if let Err(e) = self.poll(false) {
                return self.bail(e);
            }
            let a = plan.unusers.get(i);
            i += 1;
            if !a.active {
                continue;
            }
            let op = Op::Unuser(a.user_bytes().to_vec());
            match self.single(&op) {
                After::Done => r = Reply::Ok,
                After::Handled(x) => r = x,
                After::Bail(e) => return self.bail(e),
                After::Err(e) => {
                    if e.is_bye() || self.bail_or_quarantine(vec![op.record()], e) {
                        return self.bail(e);
                    }
                    r = Reply::Ok;
                }
            }
        }

        // Policies B and A: wait for the remaining backoff retries.
        if let Err(e) = self.poll(true) {
            return self.bail(e);
        }
        // Policy C: one more try for what was LOCKED, then defer.
        if !self.later.is_empty() {
            if let Some(e) = self.run_later() {
                return self.bail(e);
            }
        }
        // The retries ran after C's last action and resolved their items:
        // no LOCKED lingers in the run's `r` (that quirk is D's alone).
        self.retry_r.unwrap_or(r)
    }

    /// Policy C's second chance. Anything that still fails is deferred
    /// (whatever the error: the next run applies C's full rules to it).
    /// Returns a reply to bail with if the connection is lost or a deferral
    /// fails; the remaining items are then deferred first.
    fn run_later(&mut self) -> Option<Reply> {
        let later = std::mem::take(&mut self.later);
        let mut lost: Option<Reply> = None;
        for item in later {
            match item {
                Later::Cohort(names) => {
                    let mut done = vec![false; names.len()];
                    let r = if lost.is_some() {
                        Reply::Locked(0)
                    } else {
                        self.report.counters.retried += 1;
                        self.call_mailboxes(&names, &mut done, None)
                    };
                    self.retry_r = Some(Reply::Ok);
                    if r.is_ok() {
                        let r2 = self.target.restart();
                        if !r2.is_ok() {
                            lost = lost.or(Some(r2));
                        }
                        continue;
                    }
                    if r.is_bye() {
                        lost = lost.or(Some(r));
                    }
                    for name in unmarked(&names, &done) {
                        if let Err(e) = self.defer(Record::new(Kind::Mailbox, &name, None)) {
                            return Some(e);
                        }
                    }
                }
                Later::Single(op) => {
                    let r = if lost.is_some() {
                        Reply::Locked(0)
                    } else {
                        self.report.counters.retried += 1;
                        self.call(&op)
                    };
                    self.retry_r = Some(Reply::Ok);
                    if r.is_ok() {
                        self.report.counters.done += 1;
                        if matches!(op, Op::User(_)) {
                            let r2 = self.target.restart();
                            if !r2.is_ok() {
                                lost = lost.or(Some(r2));
                            }
                        }
                        continue;
                    }
                    if r.is_bye() {
                        lost = lost.or(Some(r));
                    }
                    if let Err(e) = self.defer(op.record()) {
                        return Some(e);
                    }
                }
            }
        }
        lost
    }

    /// QUOTA/ANNOTATION promotion. C adds `(name, NULL)` to the USER list
    /// and later calls `sync_do_user(NULL)`, which is undefined; cyrsync
    /// promotes to USER of the name's owner, which also dedups with the
    /// USER entries of the log. A name with no owner (a shared quota root or
    /// mailbox) cannot be promoted: the item fails the run (and is
    /// quarantined after enough runs). Returns false to bail out.
    fn promote_name(&mut self, plan: &mut Plan, op: &Op, e: Reply) -> bool {
        let name = a_name(op);
        match self.target.mboxname_to_userid(name) {
            Some(owner) => {
                self.promote(true, &mut plan.users, &owner, &op.record());
                true
            }
            None => {
                log::error!(
                    "SYNCERROR: cannot promote to USER, not a user mailbox item=<{}> error=<{}>",
                    op.record(),
                    self.target.describe(e.code())
                );
                !self.bail_or_quarantine(vec![op.record()], e)
            }
        }
    }

    /// The user of a USER entry. Every entry cyrsync adds has one (see
    /// [`Self::promote_name`]); a name-only entry is resolved to its owner,
    /// defensively.
    fn user_of(&mut self, a: &super::list::Action) -> Option<Vec<u8>> {
        match &a.user {
            Some(u) => Some(u.to_vec()),
            None => {
                let name = a.name_bytes();
                let owner = self.target.mboxname_to_userid(name);
                if owner.is_none() {
                    log::error!(
                        "SYNCERROR: cannot promote to USER, not a user mailbox: mailbox=<{}>",
                        name.escape_ascii()
                    );
                }
                owner
            }
        }
    }

    /// C's handling of a QUOTA or ANNOTATION result: the run's new `r`, or
    /// the reply to bail out with (BYE, a bail-out, or an error that cannot
    /// be promoted to the owner's USER).
    fn settle_promotable(
        &mut self,
        plan: &mut Plan,
        op: &Op,
        after: After,
    ) -> Result<Reply, Reply> {
        match after {
            After::Done => Ok(Reply::Ok),
            After::Handled(x) => Ok(x),
            After::Bail(e) => Err(e),
            After::Err(e) if e.is_bye() => Err(e),
            After::Err(e) if self.promote_name(plan, op, e) => Ok(e),
            After::Err(e) => Err(e),
        }
    }

    fn bail(&mut self, r: Reply) -> Reply {
        // Policy C's queue is dropped, not deferred: a run that bails keeps
        // its whole log (log-run), which is run again, so deferring would
        // only duplicate the items.
        self.later.clear();
        self.retry.clear();
        self.report.bailed = Some(r);
        r
    }
}

fn a_name(op: &Op) -> &[u8] {
    match op {
        Op::Quota(n) | Op::Annotation(n) => n,
        _ => b"",
    }
}

fn unmarked(names: &[Vec<u8>], done: &[bool]) -> Vec<Vec<u8>> {
    names
        .iter()
        .zip(done)
        .filter(|(_, d)| !**d)
        .map(|(n, _)| n.clone())
        .collect()
}
