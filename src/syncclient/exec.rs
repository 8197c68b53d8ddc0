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
//! How the run ended is decided once, as an [`Outcome`]: completed (every
//! item synced, deferred, promoted or quarantined) or bailed out (keep the
//! log). Deliberately not C's `r` at `cleanup:`, the result of the last
//! call: a run whose last action was deferred returned LOCKED there, and
//! rolling mode reprocessed the same log at once, hundreds of times a
//! second.
//!
//! What differs from C is what happens on LOCKED when running for a
//! channel, chosen by [`LockPolicy`] and decided in one place
//! (`Executor::on_locked`), and the quarantine of items that make run after
//! run bail out (see [`ChannelSink`]). Retries (policies B, C, A) run after
//! C's order has moved on: a retried item that fails with another error
//! than LOCKED is deferred (its list has already run, so C's promotion
//! cannot apply; the next run applies it). Policy A fails the run only
//! after the rest of it ran. QUOTA/ANNOTATION promotion resolves the owner
//! (see `promote_name`) where C would call `sync_do_user(NULL)`.

use std::collections::HashSet;
use std::time::Duration;

use super::list::ActionList;
use super::plan::Plan;
use super::record::Record;
use crate::synclog::RecordKind as Kind;

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

/// A clock whose sleeps go through a function: a host that keeps its
/// connection alive while the backoff waits, or virtual time in tests. Its
/// time is the larger of the real time and the time it was asked to
/// sleep, right for either.
pub struct SleepClock<F: FnMut(Duration)> {
    sleep: F,
    rng: SystemClock,
    start: std::time::Instant,
    slept: Duration,
}

impl<F: FnMut(Duration)> SleepClock<F> {
    /// With jitter from `seed` (repeatable), or from the time and pid.
    pub fn new(sleep: F, seed: Option<u64>) -> Self {
        SleepClock {
            sleep,
            rng: seed.map_or_else(SystemClock::default, SystemClock::with_seed),
            start: std::time::Instant::now(),
            slept: Duration::ZERO,
        }
    }
}

impl<F: FnMut(Duration)> Clock for SleepClock<F> {
    fn now(&mut self) -> Duration {
        self.start.elapsed().max(self.slept)
    }
    fn sleep(&mut self, duration: Duration) {
        self.slept += duration;
        (self.sleep)(duration);
    }
    fn jitter(&mut self, max: Duration) -> Duration {
        self.rng.jitter(max)
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
    /// Whether the admin told sync_client to skip this user on this
    /// channel (Cyrus 3.12's `skipuser-<user>` file): its LOCKED items are
    /// deferred at once, under every policy, and never count as failures.
    fn is_skipped(&mut self, _user: &[u8]) -> bool {
        false
    }
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
    /// Items deferred because their user is skipped (`skipuser-<user>`);
    /// also counted in `deferred`.
    pub skipped: u64,
}

/// How a run ended, decided once when it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Outcome {
    /// Every item was synced, deferred to the channel's log, promoted or
    /// quarantined: the log is done with (the reader may end it). A run
    /// that deferred items is complete: they are in the next log.
    #[default]
    Completed,
    /// The run stopped early (C's "bailing out!") on this reply: keep the
    /// log and run it again.
    Bailed(Reply),
    /// A deferral or quarantine write failed: the run stopped so that the
    /// item is not lost. Keep the log.
    IoError,
}

impl Outcome {
    /// Whether the log must be kept (the run did not complete).
    pub fn keeps_log(self) -> bool {
        self != Outcome::Completed
    }
    /// The reply the run stopped on (`Reply::Ok` when it completed,
    /// `Reply::Error(0)` for an I/O error).
    pub fn reply(self) -> Reply {
        match self {
            Outcome::Completed => Reply::Ok,
            Outcome::Bailed(r) => r,
            Outcome::IoError => Reply::Error(0),
        }
    }
}

/// Why an item was quarantined: what the target answered in the run
/// that set it aside (after `sync_quarantine_after` runs bailed out on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReasonKind {
    /// The target stayed LOCKED through the lock policy's retries (policy
    /// A, `fail`), run after run.
    Locked,
    /// IMAP_INVALID_USER.
    InvalidUser,
    /// Another error of the target (see the code and its text).
    Error,
    /// A USER item with no user that could not be resolved to one: it can
    /// never be synced.
    NotUserMailbox,
    /// Not known: quarantined by a cyrsync that did not record reasons.
    FailedRuns,
}

impl ReasonKind {
    /// Every kind, in the order reports list them. (A function, not an
    /// associated const: cbindgen would put the type in the C header.)
    pub fn all() -> [ReasonKind; 5] {
        [
            ReasonKind::Locked,
            ReasonKind::InvalidUser,
            ReasonKind::Error,
            ReasonKind::NotUserMailbox,
            ReasonKind::FailedRuns,
        ]
    }

    /// The word in `log-state`, JSON and metrics labels.
    pub fn word(self) -> &'static str {
        match self {
            ReasonKind::Locked => "locked",
            ReasonKind::InvalidUser => "invalid_user",
            ReasonKind::Error => "error",
            ReasonKind::NotUserMailbox => "not_user_mailbox",
            ReasonKind::FailedRuns => "failed_runs",
        }
    }

    pub fn from_word(word: &str) -> Option<Self> {
        ReasonKind::all().into_iter().find(|k| k.word() == word)
    }

    /// The kind of a failed reply (BYE never quarantines: it counts as an
    /// error here).
    pub fn of(reply: Reply) -> Self {
        match reply {
            Reply::Locked(_) => ReasonKind::Locked,
            Reply::InvalidUser(_) => ReasonKind::InvalidUser,
            Reply::Ok | Reply::Bye(_) | Reply::Error(_) => ReasonKind::Error,
        }
    }
}

/// Why an item was quarantined, as the executor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub kind: ReasonKind,
    /// The host's error code (a Cyrus `IMAP_*` value; 0 if none).
    pub code: i32,
    /// The host's text for it (Cyrus's `error_message`), or cyrsync's.
    pub text: String,
}

impl Reason {
    /// The reason of a quarantine recorded without one (an older state).
    pub fn unknown() -> Self {
        Reason {
            kind: ReasonKind::FailedRuns,
            code: 0,
            text: String::new(),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub counters: Counters,
    pub outcome: Outcome,
    /// Records deferred to the channel's log, in order.
    pub deferred: Vec<Record>,
    /// Records the run bailed out on (candidates for quarantine).
    pub failed: Vec<Record>,
    /// Records set aside in the quarantine file this run, and why.
    pub quarantined: Vec<(Record, Reason)>,
}

impl RunReport {
    /// Whether the run stopped early (the log must be kept).
    pub fn bailed(&self) -> bool {
        self.outcome.keeps_log()
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

/// The single-item action lists in C's order of execution (after the
/// mailbox cohorts).
#[derive(Debug, Clone, Copy)]
enum List {
    Quota,
    Annotation,
    Seen,
    Sub,
    Unmailbox,
    Meta,
    User,
    Unuser,
}

const LISTS: [List; 8] = [
    List::Quota,
    List::Annotation,
    List::Seen,
    List::Sub,
    List::Unmailbox,
    List::Meta,
    List::User,
    List::Unuser,
];

impl List {
    fn of(self, plan: &Plan) -> &ActionList {
        match self {
            List::Quota => &plan.quotas,
            List::Annotation => &plan.annotations,
            List::Seen => &plan.seens,
            List::Sub => &plan.subs,
            List::Unmailbox => &plan.unmailboxes,
            List::Meta => &plan.metas,
            List::User => &plan.users,
            List::Unuser => &plan.unusers,
        }
    }
}

/// Something the target answered LOCKED for: a single item or what was
/// left of a mailbox cohort.
#[derive(Debug, Clone)]
enum Locked {
    Cohort(Vec<Vec<u8>>),
    Single(Op),
}

impl Locked {
    fn records(&self) -> Vec<Record> {
        match self {
            Locked::Cohort(names) => names
                .iter()
                .map(|n| Record::new(Kind::Mailbox, n, None))
                .collect(),
            Locked::Single(op) => vec![op.record()],
        }
    }
}

/// Where in the run a LOCKED answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// In C's order.
    First,
    /// A backoff retry (policies B and A).
    Backoff,
    /// Policy C's retry after the rest of the run.
    Later,
}

/// What to do with a LOCKED item next: the lock policy as one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Try again after this delay, the run going on meanwhile (B, A).
    RetryIn(Duration),
    /// Try again once after the rest of the run (C).
    RetryAfterRun,
    /// Append it to the channel's log (D; B and C once out of retries).
    Defer,
    /// Fail the run on it (A once out of retries; quarantine may apply).
    Fail,
}

/// A LOCKED item waiting for its next try (policies B and A).
struct Pending {
    due: Duration,
    seq: u64,
    item: Locked,
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

struct Executor<'a> {
    target: &'a mut dyn Target,
    channel: Option<&'a mut dyn ChannelSink>,
    clock: &'a mut dyn Clock,
    config: Config,
    report: RunReport,
    /// Policy C: LOCKED items for one more try after the run.
    later: Vec<Locked>,
    /// Policies B and A: LOCKED items waiting for their next try.
    retry: std::collections::BinaryHeap<Pending>,
    seq: u64,
    /// A deferral or quarantine write failed.
    io_error: bool,
    /// Policy A: an item stayed LOCKED through its retries. The run goes
    /// on (every other item is synced and every locked item counted
    /// toward quarantine alike), then fails with this.
    fail_at_end: Option<Reply>,
    /// Skipped users already logged this run.
    skipped_logged: HashSet<Vec<u8>>,
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
        io_error: false,
        fail_at_end: None,
        skipped_logged: HashSet::new(),
    };
    plan.optimise();
    let outcome = match ex.run(plan) {
        Ok(()) => Outcome::Completed,
        Err(_) if ex.io_error => Outcome::IoError,
        Err(r) => Outcome::Bailed(r),
    };
    if outcome.keeps_log() {
        // A run that bails keeps its whole log (log-run), which is run
        // again: what still waits for a retry is in it.
        ex.later.clear();
        ex.retry.clear();
        let r = outcome.reply();
        if !r.is_bye() {
            log::error!(
                "Error in do_sync(): bailing out! {}",
                ex.target.describe(r.code())
            );
        }
    }
    let mut report = ex.report;
    report.outcome = outcome;
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

    /// The whole run: C's order, then the retries. `Err` is the reply the
    /// run bails out with.
    fn run(&mut self, plan: &mut Plan) -> Result<(), Reply> {
        self.cohorts(plan)?;
        for list in LISTS {
            let mut i = 0;
            while i < list.of(plan).len() {
                self.poll(false)?;
                let a = list.of(plan).get(i).clone();
                i += 1;
                if a.active {
                    self.action(plan, list, &a)?;
                }
            }
        }
        // Policies B and A: wait for the remaining backoff retries.
        self.poll(true)?;
        // Policy C: one more try for what was LOCKED, then defer.
        self.run_later()?;
        self.fail_at_end.map_or(Ok(()), Err)
    }

    /// The lock policy: what to do with an item found LOCKED (while
    /// running for a channel) after `attempts` retries, first LOCKED at
    /// `first`.
    fn on_locked(&mut self, phase: Phase, attempts: u32, first: Duration, now: Duration) -> Next {
        match (self.config.policy, phase) {
            (LockPolicy::Defer, _) | (LockPolicy::RetryLater, Phase::Later) => Next::Defer,
            (LockPolicy::RetryLater, _) => Next::RetryAfterRun,
            (LockPolicy::Backoff | LockPolicy::Abort, _) => {
                // full-jitter exponential delay: attempt n waits up to
                // base * 2^n, capped by max_delay and by what is left of
                // max_total_wait since the item was first LOCKED
                let waited = now.saturating_sub(first);
                if attempts >= self.config.max_attempts || waited >= self.config.max_total_wait {
                    return if self.config.policy == LockPolicy::Abort {
                        Next::Fail
                    } else {
                        Next::Defer
                    };
                }
                let cap = self
                    .config
                    .base_delay
                    .saturating_mul(1u32.checked_shl(attempts).unwrap_or(u32::MAX))
                    .min(self.config.max_delay)
                    .min(self.config.max_total_wait - waited);
                Next::RetryIn(self.clock.jitter(cap).min(cap))
            }
        }
    }

    /// Apply the lock policy to an item the target answered LOCKED for.
    /// `Err`: bail out with this.
    fn locked(
        &mut self,
        item: Locked,
        reply: Reply,
        phase: Phase,
        attempts: u32,
        first: Duration,
    ) -> Result<(), Reply> {
        if self.skipped(&item) {
            self.report.counters.skipped += item.records().len() as u64;
            for rec in item.records() {
                self.defer(rec)?;
            }
            return Ok(());
        }
        let now = self.clock.now();
        match self.on_locked(phase, attempts, first, now) {
            Next::RetryIn(delay) => {
                self.seq += 1;
                self.retry.push(Pending {
                    due: now + delay,
                    seq: self.seq,
                    item,
                    attempts: attempts + 1,
                    first,
                });
            }
            Next::RetryAfterRun => self.later.push(item),
            Next::Defer => {
                for rec in item.records() {
                    self.defer(rec)?;
                }
            }
            Next::Fail => {
                if self.bail_or_quarantine(item.records(), reply) {
                    if self.io_error {
                        return Err(reply);
                    }
                    self.fail_at_end = self.fail_at_end.or(Some(reply));
                }
            }
        }
        Ok(())
    }

    /// Whether a LOCKED item belongs to a user the admin skips on this
    /// channel (for a cohort: any of its mailboxes' owners, as C's
    /// `sync_do_mailboxes` fails when any user's sync lock does). Logged
    /// once per user and run.
    fn skipped(&mut self, item: &Locked) -> bool {
        if self.channel.is_none() {
            return false;
        }
        let users: Vec<Vec<u8>> = match item {
            Locked::Cohort(names) => names
                .iter()
                .filter_map(|n| self.target.mboxname_to_userid(n))
                .collect(),
            Locked::Single(op) => match op {
                Op::Quota(n) | Op::Annotation(n) | Op::Unmailbox(n) => {
                    self.target.mboxname_to_userid(n).into_iter().collect()
                }
                Op::Seen(u, _) | Op::Sub(u, _) | Op::Meta(u) | Op::User(u) | Op::Unuser(u) => {
                    vec![u.clone()]
                }
            },
        };
        let sink = self.channel.as_deref_mut().expect("checked");
        let Some(user) = users.into_iter().find(|u| sink.is_skipped(u)) else {
            return false;
        };
        if self.skipped_logged.insert(user.clone()) {
            log::info!(
                "SYNCNOTICE: user skipped by its skipuser file, deferring its items user=<{}>",
                user.escape_ascii()
            );
        }
        true
    }

    /// Run the backoff retries that are due; with `wait`, sleep until every
    /// one has been run. A retry that succeeds is done; one still LOCKED
    /// goes back to the lock policy; another error defers it (the next run
    /// applies C's full rules: its list has already run here). Err: bail
    /// out with this.
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
                self.clock.sleep(top.due - now);
                continue;
            }
            let p = self.retry.pop().expect("peeked");
            self.report.counters.retried += 1;
            self.retry_item(p.item, Phase::Backoff, p.attempts, p.first)?;
        }
    }

    /// Policy C's second chance. Anything that still fails is deferred
    /// (whatever the error: the next run applies C's full rules to it).
    /// Once the connection is lost the rest is deferred untried, then the
    /// run bails out.
    fn run_later(&mut self) -> Result<(), Reply> {
        let mut lost: Option<Reply> = None;
        for item in std::mem::take(&mut self.later) {
            if lost.is_some() {
                for rec in item.records() {
                    self.defer(rec)?;
                }
                continue;
            }
            self.report.counters.retried += 1;
            let now = self.clock.now();
            if let Err(e) = self.retry_item(item, Phase::Later, 0, now) {
                if self.io_error {
                    return Err(e);
                }
                lost = Some(e);
            }
        }
        lost.map_or(Ok(()), Err)
    }

    /// One retry of a LOCKED item (backoff or policy C).
    fn retry_item(
        &mut self,
        item: Locked,
        phase: Phase,
        attempts: u32,
        first: Duration,
    ) -> Result<(), Reply> {
        let (r, rest) = match &item {
            Locked::Single(op) => {
                let r = self.call(op);
                if r.is_ok() {
                    self.report.counters.done += 1;
                }
                (r, item)
            }
            Locked::Cohort(names) => {
                let mut done = vec![false; names.len()];
                let r = self.call_mailboxes(names, &mut done);
                (r, Locked::Cohort(unmarked(names, &done)))
            }
        };
        if r.is_ok() {
            if matches!(rest, Locked::Cohort(_) | Locked::Single(Op::User(_))) {
                let r2 = self.target.restart();
                if !r2.is_ok() {
                    return Err(r2);
                }
            }
            return Ok(());
        }
        if r.is_bye() {
            // the item itself is in the kept log (or deferred by the caller)
            if phase == Phase::Later {
                for rec in rest.records() {
                    self.defer(rec)?;
                }
            }
            return Err(r);
        }
        if r.is_locked() {
            return self.locked(rest, r, phase, attempts, first);
        }
        for rec in rest.records() {
            self.defer(rec)?;
        }
        Ok(())
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
                self.io_error = true;
                self.report.failed.push(record);
                Err(Reply::Error(0))
            }
        }
    }

    /// One active entry of a single-item list: the call, the lock policy
    /// on LOCKED (with a channel), C's rules for the list on other errors,
    /// and the RESTART after USER.
    fn action(
        &mut self,
        plan: &mut Plan,
        list: List,
        a: &super::list::Action,
    ) -> Result<(), Reply> {
        let op = match list {
            List::Quota => Op::Quota(a.name_bytes().to_vec()),
            List::Annotation => Op::Annotation(a.name_bytes().to_vec()),
            List::Seen => Op::Seen(a.user_bytes().to_vec(), a.name_bytes().to_vec()),
            List::Sub => Op::Sub(a.user_bytes().to_vec(), a.name_bytes().to_vec()),
            List::Unmailbox => Op::Unmailbox(a.name_bytes().to_vec()),
            List::Meta => Op::Meta(a.user_bytes().to_vec()),
            List::Unuser => Op::Unuser(a.user_bytes().to_vec()),
            List::User => match self.user_of(a) {
                Some(user) => Op::User(user),
                None => {
                    let rec = Record::new(Kind::User, a.name_bytes(), None);
                    let e = Reply::Error(0);
                    let why = Reason {
                        kind: ReasonKind::NotUserMailbox,
                        code: 0,
                        text: "not a user mailbox".into(),
                    };
                    return match self.bail_or_quarantine_for(vec![rec], why) {
                        true => Err(e),
                        false => Ok(()),
                    };
                }
            },
        };
        if let Op::Annotation(name) = &op {
            if name.is_empty() {
                // the server annotation: result ignored, never deferred
                if self.call(&op).is_ok() {
                    self.report.counters.done += 1;
                }
                return Ok(());
            }
        }
        let r = self.call(&op);
        if r.is_ok() {
            self.report.counters.done += 1;
        } else if r.is_locked() && self.channel.is_some() {
            let now = self.clock.now();
            self.locked(Locked::Single(op.clone()), r, Phase::First, 0, now)?;
        } else {
            self.c_rules(plan, &op, r)?;
        }
        if matches!(op, Op::User(_)) {
            let r = self.target.restart();
            if !r.is_ok() {
                return Err(r);
            }
        }
        Ok(())
    }

    /// C's handling of an error of a single item (its "Promoting:" rules
    /// and bail-outs). `Err`: bail out with this.
    fn c_rules(&mut self, plan: &mut Plan, op: &Op, e: Reply) -> Result<(), Reply> {
        if e.is_bye() {
            return Err(e);
        }
        let bail_unless_quarantined =
            |ex: &mut Self| match ex.bail_or_quarantine(vec![op.record()], e) {
                true => Err(e),
                false => Ok(()),
            };
        match op {
            Op::Quota(_) | Op::Annotation(_) => match self.promote_name(plan, op, e) {
                true => Ok(()),
                false => Err(e),
            },
            Op::Seen(user, mailbox) => {
                let owner = self.target.mboxname_to_userid(mailbox);
                let own_inbox =
                    owner.as_deref() == Some(user.as_slice()) && self.target.is_user_inbox(mailbox);
                if own_inbox {
                    self.promote(true, &mut plan.users, user, &op.record());
                } else {
                    self.promote(false, &mut plan.metas, user, &op.record());
                }
                Ok(())
            }
            Op::Sub(user, _) => {
                self.promote(false, &mut plan.metas, user, &op.record());
                Ok(())
            }
            Op::Meta(user) if !matches!(e, Reply::InvalidUser(_)) => {
                self.promote(true, &mut plan.users, user, &op.record());
                Ok(())
            }
            Op::Meta(_) | Op::Unmailbox(_) | Op::User(_) | Op::Unuser(_) => {
                bail_unless_quarantined(self)
            }
        }
    }

    /// C's `goto cleanup` for an item that is not a connection loss: if
    /// the item made enough earlier runs bail, quarantine it and go on
    /// (returns false); otherwise remember it and bail (returns true).
    fn bail_or_quarantine(&mut self, records: Vec<Record>, r: Reply) -> bool {
        let why = Reason {
            kind: ReasonKind::of(r),
            code: r.code(),
            text: self.target.describe(r.code()),
        };
        self.bail_or_quarantine_for(records, why)
    }

    /// [`Self::bail_or_quarantine`] with the reason a quarantine records.
    fn bail_or_quarantine_for(&mut self, records: Vec<Record>, why: Reason) -> bool {
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
                        self.io_error = true;
                        self.report.failed.extend(records);
                        return true;
                    }
                }
                for rec in records {
                    log::error!(
                        "SYNCERROR: quarantined item=<{rec}> failed_runs=<{threshold}> reason=<{}> error=<{}>",
                        why.kind.word(),
                        why.text
                    );
                    self.report.counters.quarantined += 1;
                    self.report.quarantined.push((rec, why.clone()));
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

    /// The mailbox cohorts. C keeps only the *last* cohort's result
    /// (`smrock->r` is overwritten per cohort): an earlier cohort's error
    /// does not bail the run.
    fn cohorts(&mut self, plan: &mut Plan) -> Result<(), Reply> {
        let mut last: Option<(Reply, Vec<Record>)> = None;
        for i in 0..plan.cohorts.len() {
            self.poll(false)?;
            if let Some(result) = self.cohort(plan, i)? {
                last = Some(result);
            }
        }
        if let Some((r, failed)) = last {
            if !r.is_ok() && (r.is_bye() || failed.is_empty() || self.bail_or_quarantine(failed, r))
            {
                return Err(r);
            }
        }
        Ok(())
    }

    /// One cohort: C's `split_user_mailboxes` + `do_mailboxes` + RESTART.
    /// Returns C's `smrock->r` and the records that failed (`None`: an
    /// empty cohort); `Err` bails out at once (a lock policy's failure, a
    /// failed deferral).
    fn cohort(
        &mut self,
        plan: &mut Plan,
        index: usize,
    ) -> Result<Option<(Reply, Vec<Record>)>, Reply> {
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
            return Ok(None);
        }
        log::trace!("sync_mailboxes: doing {}", names.len());
        let mut done = vec![false; names.len()];
        let r = self.call_mailboxes(&names, &mut done);
        if r.is_locked() && self.channel.is_some() {
            // handled by the lock policy: as after C's deferral, r is 0
            // and RESTART follows
            let now = self.clock.now();
            let rest = Locked::Cohort(unmarked(&names, &done));
            self.locked(rest, r, Phase::First, 0, now)?;
            return Ok(Some(self.restart_after(Reply::Ok, Vec::new())));
        }
        if r.is_ok() {
            return Ok(Some(self.restart_after(r, Vec::new())));
        }
        if r.is_bye() {
            return Ok(Some((r, Vec::new())));
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
            Ok(Some(self.restart_after(Reply::Ok, Vec::new())))
        } else {
            Ok(Some((r, nonuser)))
        }
    }

    /// C: `if (!smrock->r) smrock->r = sync_do_restart(...)`.
    fn restart_after(&mut self, r: Reply, failed: Vec<Record>) -> (Reply, Vec<Record>) {
        if r.is_ok() {
            (self.target.restart(), failed)
        } else {
            (r, failed)
        }
    }

    /// Call `mailboxes` with `names`; marks of synced names go to `done`.
    fn call_mailboxes(&mut self, names: &[Vec<u8>], done: &mut [bool]) -> Reply {
        let refs: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        let mut marks = vec![false; refs.len()];
        let r = self.target.mailboxes(&refs, &mut marks);
        let mut newly = 0;
        for (d, m) in done.iter_mut().zip(&marks) {
            // an OK call synced every name it was given
            if (*m || r.is_ok()) && !*d {
                *d = true;
                newly += 1;
            }
        }
        self.report.counters.done += newly;
        r
    }

    /// QUOTA/ANNOTATION promotion. C adds `(name, NULL)` to the USER list
    /// and later calls `sync_do_user(NULL)`, which is undefined; cyrsync
    /// promotes to USER of the name's owner, which also dedups with the
    /// USER entries of the log. A name with no owner (a shared quota root or
    /// mailbox) cannot be promoted: the item fails the run (and is
    /// quarantined after enough runs). Returns false to bail out.
    fn promote_name(&mut self, plan: &mut Plan, op: &Op, e: Reply) -> bool {
        let name = match op {
            Op::Quota(n) | Op::Annotation(n) => n.as_slice(),
            _ => b"",
        };
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
}

fn unmarked(names: &[Vec<u8>], done: &[bool]) -> Vec<Vec<u8>> {
    names
        .iter()
        .zip(done)
        .filter(|(_, d)| !**d)
        .map(|(n, _)| n.clone())
        .collect()
}
