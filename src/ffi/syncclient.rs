//! C API of the sync_client planner and executor (see
//! [`crate::syncclient`]).
//!
//! What a patched Cyrus `sync_do_reader(sync_cs, slr)` does with it:
//!
//! 1. once per process: `cyrsync_syncclient_config_new`, then the
//!    `_set_*` functions from imapd.conf (lock policy, backoff bounds,
//!    quarantine threshold);
//! 2. per run: `cyrsync_syncclient_plan_new`, one
//!    `cyrsync_syncclient_plan_add` per `sync_log_reader_getitem` item,
//!    `cyrsync_syncclient_execute` with a `cyrsync_syncclient_callbacks`
//!    table whose functions wrap `sync_do_mailboxes`, `sync_do_quota`, ...,
//!    `cyrsync_syncclient_plan_free`, and return `results.cyrus_error` (0
//!    unless the run bailed out; an I/O error when `results.io_error` is
//!    set).
//!
//! `cyrsync_syncclient_run_channel` does the whole cycle for a channel
//! (read its log with cyrsync's reader, plan, execute, end the reader) for
//! hosts that do not keep their own reader.
//!
//! Handles:
//!
//! * `cyrsync_syncclient_config` — settings; owned by the caller, freed with
//!   `cyrsync_syncclient_config_free`; may be shared by threads for reading
//!   (execute), but the setters must not race with anything.
//! * `cyrsync_syncclient_plan` — one run's plan; owned by the caller, freed
//!   with `cyrsync_syncclient_plan_free`; used by one thread at a time;
//!   executed at most once.
//!
//! Callbacks are called only during the cyrsync call that was given the
//! table, on the calling thread, one at a time. Names passed to them are
//! NUL-terminated byte strings with their length (without the NUL), valid
//! only during the call.
//!
//! Sketch of the Cyrus side (imap/sync_support.c), for the patch:
//!
//! ```c
//! static uint32_t cs_reply(int r, int *error)
//! {
//!     *error = r;
//!     if (!r) return CYRSYNC_REPLY_OK;
//!     if (r == IMAP_MAILBOX_LOCKED) return CYRSYNC_REPLY_LOCKED;
//!     if (r == IMAP_BYE_LOGOUT) return CYRSYNC_REPLY_BYE;
//!     if (r == IMAP_INVALID_USER) return CYRSYNC_REPLY_INVALID_USER;
//!     return CYRSYNC_REPLY_ERROR;
//! }
//!
//! static uint32_t cs_mailboxes(void *rock, const cyrsync_name *names,
//!                              size_t n, uint8_t *done, int *error)
//! {
//!     struct sync_client_state *sync_cs = rock;
//!     struct sync_name_list *list = sync_name_list_create();
//!     size_t i;
//!     for (i = 0; i < n; i++) sync_name_list_add(list, names[i].name);
//!     int r = sync_do_mailboxes(sync_cs, list, NULL, sync_cs->flags);
//!     for (i = 0; i < n; i++) {
//!         /* #sieve mailboxes are dropped from the list: they count as done */
//!         struct sync_name *item = sync_name_lookup(list, names[i].name);
//!         done[i] = !item || item->mark;
//!     }
//!     sync_name_list_free(&list);
//!     return cs_reply(r, error);
//! }
//!
//! static uint32_t cs_user(void *rock, const char *userid, size_t len, int *error)
//! {
//!     (void)len;
//!     return cs_reply(sync_do_user(rock, userid, NULL), error);
//! }
//! /* likewise: quota -> sync_do_quota, annotation -> sync_do_annotation,
//!  * unmailbox -> do_unmailbox, meta -> sync_do_meta, unuser -> do_unuser,
//!  * seen -> sync_do_seen(rock, user, mbox), sub -> user_sub(rock, user, mbox),
//!  * restart -> sync_do_restart(rock), mboxname_to_userid -> itself,
//!  * is_user_inbox -> mboxname_isusermailbox(name, 1) != NULL,
//!  * name_history -> split_user_mailboxes' mboxlist lookups calling add(),
//!  * error_message -> error_message(code) */
//!
//! int sync_do_reader(struct sync_client_state *sync_cs, sync_log_reader_t *slr)
//! {
//!     struct cyrsync_syncclient_callbacks cbs = {
//!         .userdata = sync_cs, .mailboxes = cs_mailboxes, .user = cs_user, ...
//!     };
//!     cyrsync_syncclient_plan *plan = NULL;
//!     struct cyrsync_syncclient_results res;
//!     const char *args[3];
//!     int r;
//!
//!     if (cyrsync_syncclient_plan_new(&plan)) return IMAP_INTERNAL;
//!     while (sync_log_reader_getitem(slr, args) != EOF)
//!         cyrsync_syncclient_plan_add(plan, &cbs, args[0], args[1], args[2]);
//!     /* config: made once from imapd.conf; channel as C tests it */
//!     if (cyrsync_syncclient_execute(plan, config, &cbs, config_dir,
//!                                    sync_cs->channel, &res))
//!         r = IMAP_INTERNAL;
//!     else if (res.io_error)
//!         r = IMAP_IOERROR;
//!     else
//!         r = res.cyrus_error;  /* 0 unless the run bailed out */
//!     cyrsync_syncclient_plan_free(plan);
//!     return r;
//! }
//! ```

use std::ffi::{c_char, c_int, c_void, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    cyrsync_status, ffi_boundary, free_handle, into_handle, set_out, try_bytes, try_mut, try_ref,
    Handle,
};
use crate::syncclient::run::{run_plan, ChannelRun};
use crate::syncclient::state::{channel_dir, DeferLog};
use crate::syncclient::{
    Clock, CohortOrder, Config, Kind, LockPolicy, Outcome, Plan, Record, Reply, RunReport,
    SystemClock, Target,
};
use crate::synclog::{self, Begun, Reader, RecordKind, Writer};

/// Replies of the sync callbacks (the `uint32_t` they return).
/// The operation succeeded (Cyrus `r == 0`).
pub const CYRSYNC_REPLY_OK: u32 = 0;
/// `IMAP_MAILBOX_LOCKED`.
pub const CYRSYNC_REPLY_LOCKED: u32 = 1;
/// `IMAP_BYE_LOGOUT`.
pub const CYRSYNC_REPLY_BYE: u32 = 2;
/// `IMAP_INVALID_USER`.
pub const CYRSYNC_REPLY_INVALID_USER: u32 = 3;
/// Any other error. An unknown reply value is taken as this.
pub const CYRSYNC_REPLY_ERROR: u32 = 4;

/// Lock policies for `cyrsync_syncclient_config_set_policy`.
/// D: defer a LOCKED item to the channel's log at once (Cyrus's behaviour;
/// the default).
pub const CYRSYNC_LOCK_POLICY_DEFER: u32 = 0;
/// B: retry in the same run with exponential backoff and full jitter, then
/// defer.
pub const CYRSYNC_LOCK_POLICY_BACKOFF: u32 = 1;
/// C: one retry after the rest of the run, then defer.
pub const CYRSYNC_LOCK_POLICY_RETRY_LATER: u32 = 2;
/// A: retry with backoff, then fail the run (the log is kept).
pub const CYRSYNC_LOCK_POLICY_ABORT: u32 = 3;

/// Cohort orders for `cyrsync_syncclient_config_set_cohort_order`.
/// Cohorts (the mailboxes of one user) run in the order their first item
/// appears in the log. The default.
pub const CYRSYNC_COHORT_ORDER_FIRST_SEEN: u32 = 0;
/// Cohorts run in Cyrus's `hash_enumerate` order for `sync_do_reader`'s
/// 1024-bucket table with the given seed (Cyrus seeds it from `rand()`,
/// so a real sync_client's order varies between processes). For
/// differential tests against C.
pub const CYRSYNC_COHORT_ORDER_CYRUS_HASH: u32 = 1;

/// A name passed to the `mailboxes` callback: NUL-terminated, `len` bytes
/// without the NUL.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cyrsync_name {
    pub name: *const c_char,
    pub len: usize,
}

/// Given to the `name_history` callback: call it once per former name of
/// the mailbox, with the `ctx` received. `former` need not be
/// NUL-terminated; it is copied.
#[allow(non_camel_case_types)]
pub type cyrsync_name_history_add =
    Option<unsafe extern "C" fn(ctx: *mut c_void, former: *const c_char, len: usize)>;

/// A single-name sync operation: `sync_do_quota(root)`,
/// `sync_do_annotation(name)`, `do_unmailbox(name)`, `sync_do_meta(user)`,
/// `sync_do_user(user)`, `do_unuser(user)`. Returns a `CYRSYNC_REPLY_*`;
/// on anything but OK, stores the host's own error code (Cyrus `r`) in
/// `*error` (never NULL).
#[allow(non_camel_case_types)]
pub type cyrsync_sync_one_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        name: *const c_char,
        len: usize,
        error: *mut c_int,
    ) -> u32,
>;

/// A two-name sync operation: `sync_do_seen(user, mailbox)`,
/// `user_sub(user, mailbox)`. As `cyrsync_sync_one_fn`.
#[allow(non_camel_case_types)]
pub type cyrsync_sync_two_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        user: *const c_char,
        user_len: usize,
        mailbox: *const c_char,
        mailbox_len: usize,
        error: *mut c_int,
    ) -> u32,
>;

/// The host's side of a run: one function per operation of Cyrus's
/// `sync_do_reader`, and `userdata` passed back to each.
///
/// Required: `mailboxes`, `quota`, `annotation`, `seen`, `sub`,
/// `unmailbox`, `meta`, `user`, `unuser`, `restart`. Optional (NULL):
/// `mboxname_to_userid`, `is_user_inbox` (cyrsync then uses Cyrus's default
/// namespace rules: `[domain!]user.<name>...`), `name_history` (no former
/// names), `error_message` (codes shown as numbers).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cyrsync_syncclient_callbacks {
    pub userdata: *mut c_void,
    /// `sync_do_mailboxes` for one cohort of `count` names. Set `done[i]`
    /// to 1 for each name synced (Cyrus's `mark`), also when failing; names
    /// the host handles otherwise (e.g. `#sieve` mailboxes that
    /// `sync_do_mailboxes` drops from its list) count as done.
    pub mailboxes: Option<
        unsafe extern "C" fn(
            userdata: *mut c_void,
            names: *const cyrsync_name,
            count: usize,
            done: *mut u8,
            error: *mut c_int,
        ) -> u32,
    >,
    pub quota: cyrsync_sync_one_fn,
    pub annotation: cyrsync_sync_one_fn,
    pub seen: cyrsync_sync_two_fn,
    /// `user_sub`: SUB and UNSUB records alike.
    pub sub: cyrsync_sync_two_fn,
    pub unmailbox: cyrsync_sync_one_fn,
    pub meta: cyrsync_sync_one_fn,
    pub user: cyrsync_sync_one_fn,
    pub unuser: cyrsync_sync_one_fn,
    /// `sync_do_restart`.
    pub restart: Option<unsafe extern "C" fn(userdata: *mut c_void, error: *mut c_int) -> u32>,
    /// `mboxname_to_userid`: a userid in memory from malloc(3), which
    /// cyrsync frees with free(3), or NULL for a non-user mailbox.
    pub mboxname_to_userid: Option<
        unsafe extern "C" fn(userdata: *mut c_void, name: *const c_char, len: usize) -> *mut c_char,
    >,
    /// Non-zero if `name` is a user's INBOX (`mboxname_isusermailbox(name,
    /// 1) != NULL`).
    pub is_user_inbox: Option<
        unsafe extern "C" fn(userdata: *mut c_void, name: *const c_char, len: usize) -> c_int,
    >,
    /// Report the former names of a mailbox (its `name_history`) by calling
    /// `add(ctx, former, len)` for each.
    pub name_history: Option<
        unsafe extern "C" fn(
            userdata: *mut c_void,
            name: *const c_char,
            len: usize,
            add: cyrsync_name_history_add,
            ctx: *mut c_void,
        ),
    >,
    /// `error_message(code)`: a NUL-terminated string cyrsync only reads
    /// during the call (it copies it).
    pub error_message:
        Option<unsafe extern "C" fn(userdata: *mut c_void, code: c_int) -> *const c_char>,
}

/// Counters and outcome of one run, written by the run functions.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct cyrsync_syncclient_results {
    /// Items read from the log.
    pub items: u64,
    /// Items not planned (unknown type, missing argument).
    pub skipped: u64,
    /// Items synced (each mailbox of a cohort counts).
    pub done: u64,
    /// Items appended to the channel's log.
    pub deferred: u64,
    /// Items promoted to USER or META.
    pub promoted: u64,
    /// Retries after LOCKED.
    pub retried: u64,
    /// Items set aside in the channel's quarantine file.
    pub quarantined: u64,
    /// The run stopped early (Cyrus's "bailing out"): keep the log.
    pub bailed: bool,
    /// A deferral or quarantine write failed (see the log): the run bailed,
    /// keep the log.
    pub io_error: bool,
    /// What `sync_do_reader` returns for this run: 0 when the run
    /// completed (every item synced, deferred, promoted or quarantined),
    /// otherwise the host's error code the run bailed out on (0 with an
    /// I/O error: see `io_error`). Deliberately not Cyrus's quirk of
    /// returning the last call's result: a run whose last action was
    /// deferred returned IMAP_MAILBOX_LOCKED, and rolling mode then
    /// reprocessed the same log at once, hundreds of times a second.
    pub cyrus_error: c_int,
    /// `cyrus_error` as a `CYRSYNC_REPLY_*`.
    pub reply: u32,
}

/// Executor settings (opaque).
#[allow(non_camel_case_types)]
pub struct cyrsync_syncclient_config {
    _private: [u8; 0],
}

/// One run's plan (opaque).
#[allow(non_camel_case_types)]
pub struct cyrsync_syncclient_plan {
    _private: [u8; 0],
}

pub(crate) struct ConfigState {
    config: Config,
    cohort_order: CohortOrder,
    sleep: Option<(unsafe extern "C" fn(*mut c_void, u64), *mut c_void)>,
    seed: Option<u64>,
}

pub(crate) struct PlanState {
    plan: Plan,
    executed: bool,
}

// SAFETY: zero-sized, never constructed, only used through the handle helpers.
unsafe impl Handle for cyrsync_syncclient_config {
    type Inner = ConfigState;
}
// SAFETY: as above.
unsafe impl Handle for cyrsync_syncclient_plan {
    type Inner = PlanState;
}

/// Create a configuration with the defaults: policy D, backoff from 100 ms
/// doubling to 5 s, at most 5 retries and 30 s per item, quarantine after 5
/// consecutive failed runs. `*out` owns it; free with
/// `cyrsync_syncclient_config_free`.
///
/// Thread-safe (each call makes a new object).
#[no_mangle]
pub extern "C" fn cyrsync_syncclient_config_new(
    out: *mut *mut cyrsync_syncclient_config,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_syncclient_config_new", {
        if out.is_null() {
            return super::null_parameter("out");
        }
        let state = ConfigState {
            config: Config::default(),
            cohort_order: CohortOrder::FirstSeen,
            sleep: None,
            seed: None,
        };
        unsafe { set_out(out, into_handle(state)) };
        cyrsync_status::Ok
    })
}

/// Free a configuration. NULL is a no-op.
///
/// The configuration must not be in use by another thread.
#[no_mangle]
pub extern "C" fn cyrsync_syncclient_config_free(config: *mut cyrsync_syncclient_config) {
    ffi_boundary!("cyrsync_syncclient_config_free", {
        unsafe { free_handle(config) }
    })
}

/// Set the lock policy: a `CYRSYNC_LOCK_POLICY_*` value; anything else is
/// INVALID_ARGUMENT and leaves the policy unchanged.
///
/// The setters must not run while another thread uses the configuration.
#[no_mangle]
pub extern "C" fn cyrsync_syncclient_config_set_policy(
    config: *mut cyrsync_syncclient_config,
    policy: u32,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_syncclient_config_set_policy", {
        let state = try_mut!(config);
        let p = match policy {
            CYRSYNC_LOCK_POLICY_DEFER => LockPolicy::Defer,
            CYRSYNC_LOCK_POLICY_BACKOFF => LockPolicy::Backoff,
            CYRSYNC_LOCK_POLICY_RETRY_LATER => LockPolicy::RetryLater,
            CYRSYNC_LOCK_POLICY_ABORT => LockPolicy::Abort,
            _ => {
                log::error!("IOERROR: cyrsync: unknown lock policy policy=<{policy}>");
                return cyrsync_status::InvalidArgument;
            }
        };
        state.config.policy = p;
        cyrsync_status::Ok
    })
}

/// Set the lock policy from its letter as written in imapd.conf: "D", "B",
/// "C" or "A" (any case, surrounding blanks ignored). Anything else is
/// INVALID_ARGUMENT and leaves the policy unchanged.
///
/// `name` is only read during the call. Not concurrently with other use of
/// the configuration.
#[no_mangle]
pub extern "C" fn cyrsync_syncclient_config_set_policy_name(
    config: *mut cyrsync_syncclient_config,
    name: *const c_char,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_syncclient_config_set_policy_name", {
        let state = try_mut!(config);
        let name = try_bytes!(name);
        match std::str::from_utf8(name)
            .ok()
            .and_then(LockPolicy::from_letter)
        {
            Some(p) => {
                state.config.policy = p;
                cyrsync_status::Ok
            }
            None => {
                log::error!(
                    "IOERROR: cyrsync: unknown lock policy policy=<{}>",
                    name.escape_ascii()
                );
                cyrsync_status::InvalidArgument
            }
        }
    })
}

/// Set the backoff bounds of policies B and A: the first delay bound
/// `base_ms` (doubling per retry up to `max_delay_ms`; each delay is uniform
/// in [0, bound]), at most `max_attempts` retries per item, none later than
/// `max_total_ms` after the item was first LOCKED. A waiting item does not
/// hold up the others: the run goes on and retries it when due, and waits
/// at its end for the last ones. `base_ms` > `max_delay_ms` is
/// INVALID_ARGUMENT.
///
/// Not concurrently with other use of the configuration.
#[no_mangle]
pub extern "C" fn cyrsync_syncclient_config_set_backoff(
    config: *mut cyrsync_syncclient_config,
    base_ms: u64,
    max_delay_ms: u64,
    max_attempts: u32,
    max_total_ms: u64,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_syncclient_config_set_backoff", {
        let state = try_mut!(config);
        if base_ms > max_delay_ms {
            log::error!("IOERROR: cyrsync: backoff base=<{base_ms}> exceeds max=<{max_delay_ms}>");
            return cyrsync_status::InvalidArgument;
        }
        state.config.base_delay = Duration::from_millis(base_ms);
        state.config.max_delay = Duration::from_millis(max_delay_ms);
        state.config.max_attempts = max_attempts;
        state.config.max_total_wait = Duration::from_millis(max_total_ms);
        cyrsync_status::Ok
    })
}

/// Quarantine items that made `runs` consecutive runs of a channel bail
/// out, instead of bailing again; 0 turns quarantine off.
///
/// Not concurrently with other use of the configuration.
#[no_mangle]
pub extern "C" fn cyrsync_syncclient_config_set_quarantine_after(
    config: *mut cyrsync_syncclient_config,
    runs: u32,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_syncclient_config_set_quarantine_after", {
        try_mut!(config).config.quarantine_after = runs;
        cyrsync_status::Ok
    })
}

/// Replace the backoff's sleep: cyrsync calls `sleep(userdata,
/// microseconds)` instead of sleeping itself (a host may keep its
/// connection alive meanwhile; tests make time virtual). NULL restores
/// the real sleep.
///
/// `sleep` is called on the thread running the plan, with `userdata`,
/// which must stay valid while the configuration may be used. Not
/// concurrently with other use of the configuration.
#[no_mangle]
pub extern "C" fn cyrsync_syncclient_config_set_sleep(
    config: *mut cyrsync_syncclient_config,
    sleep: Option<unsafe extern "C" fn(userdata: *mut c_void, microseconds: u64)>,
    userdata: *mut c_void,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_syncclient_config_set_sleep", {
        try_mut!(config).sleep = sleep.map(|f| (f, userdata));
        cyrsync_status::Ok
    })
}

/// Seed the backoff's jitter, making runs repeatable (tests). Without it
/// the seed comes from the clock and the process id.
///
/// Not concurrently with other use of the configuration.
#[no_mangle]
pub extern "C" fn cyrsync_syncclient_config_set_jitter_seed(
    config: *mut cyrsync_syncclient_config,
    seed: u64,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_syncclient_config_set_jitter_seed", {
        try_mut!(config).seed = Some(seed);
        cyrsync_status::Ok
    })
}

/// Set the order of mailbox cohorts: `CYRSYNC_COHORT_ORDER_FIRST_SEEN`
/// (`seed` ignored) or `CYRSYNC_COHORT_ORDER_CYRUS_HASH` with the hash
/// table's seed; anything else is INVALID_ARGUMENT. Not concurrently with
/// other use of the configuration.
#[no_mangle]
pub extern "C" fn cyrsync_syncclient_config_set_cohort_order(
    config: *mut cyrsync_syncclient_config,
    order: u32,
    seed: u32,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_syncclient_config_set_cohort_order", {
        let state = try_mut!(config);
        state.cohort_order = match order {
            CYRSYNC_COHORT_ORDER_FIRST_SEEN => CohortOrder::FirstSeen,
            CYRSYNC_COHORT_ORDER_CYRUS_HASH => CohortOrder::CyrusHash { seed, size: 1024 },
            _ => {
                log::error!("IOERROR: cyrsync: unknown cohort order order=<{order}>");
                return cyrsync_status::InvalidArgument;
            }
        };
        cyrsync_status::Ok
    })
}

/// Create an empty plan. `*out` owns it; free with
/// `cyrsync_syncclient_plan_free`.
///
/// Thread-safe (each call makes a new object).
#[no_mangle]
pub extern "C" fn cyrsync_syncclient_plan_new(
    out: *mut *mut cyrsync_syncclient_plan,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_syncclient_plan_new", {
        if out.is_null() {
            return super::null_parameter("out");
        }
        let state = PlanState {
            plan: Plan::new(),
            executed: false,
        };
        unsafe { set_out(out, into_handle(state)) };
        cyrsync_status::Ok
    })
}

/// Free a plan. NULL is a no-op.
///
/// The plan must not be in use by another thread.
#[no_mangle]
pub extern "C" fn cyrsync_syncclient_plan_free(plan: *mut cyrsync_syncclient_plan) {
    ffi_boundary!("cyrsync_syncclient_plan_free", {
        unsafe { free_handle(plan) }
    })
}

/// Add one sync log item, as returned by `sync_log_reader_getitem`: `type`
/// (upper-case, e.g. "MAILBOX"), `arg1` (required), `arg2` (NULL when the
/// record has one argument). Unknown types and missing second arguments
/// are logged and skipped, as Cyrus does; that is still OK.
/// `callbacks->mboxname_to_userid` is called for mailbox items (the rest of
/// the table is not used here and may be incomplete). BAD_STATE after the
/// plan was executed.
///
/// The strings are copied; they need only live during the call. One
/// thread at a time per plan.
#[no_mangle]
pub extern "C" fn cyrsync_syncclient_plan_add(
    plan: *mut cyrsync_syncclient_plan,
    callbacks: *const cyrsync_syncclient_callbacks,
    r#type: *const c_char,
    arg1: *const c_char,
    arg2: *const c_char,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_syncclient_plan_add", {
        let state = try_mut!(plan);
        let cbs = match unsafe { callbacks.as_ref() } {
            Some(c) => *c,
            None => return super::null_parameter("callbacks"),
        };
        let kind = try_bytes!(r#type);
        let arg1 = try_bytes!(arg1);
        let arg2 = unsafe { super::c_bytes(arg2) };
        if state.executed {
            log::error!("IOERROR: cyrsync_syncclient_plan_add: plan already executed");
            return cyrsync_status::BadState;
        }
        let mut host = Host::new(cbs);
        state
            .plan
            .add_item(kind, arg1, arg2, &mut |n| host.mboxname_to_userid(n));
        cyrsync_status::Ok
    })
}

/// Add every remaining item of a cyrsync sync log reader (created with
/// `cyrsync_synclog_reader_new_*` and begun with
/// `cyrsync_synclog_reader_begin`) to the plan, as
/// `cyrsync_syncclient_plan_add` would one by one. The reader stays the
/// caller's (to `_end` after a run that did not bail out, and to free).
/// `*items` (if not NULL) receives the number of items added.
///
/// One thread at a time per plan and per reader.
#[no_mangle]
pub extern "C" fn cyrsync_syncclient_plan_add_reader(
    plan: *mut cyrsync_syncclient_plan,
    callbacks: *const cyrsync_syncclient_callbacks,
    reader: *mut super::synclog::cyrsync_synclog_reader,
    items: *mut u64,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_syncclient_plan_add_reader", {
        let state = try_mut!(plan);
        let cbs = match unsafe { callbacks.as_ref() } {
            Some(c) => *c,
            None => return super::null_parameter("callbacks"),
        };
        if reader.is_null() {
            return super::null_parameter("reader");
        }
        if state.executed {
            log::error!("IOERROR: cyrsync_syncclient_plan_add_reader: plan already executed");
            return cyrsync_status::BadState;
        }
        let mut host = Host::new(cbs);
        let mut n = 0u64;
        loop {
            let mut item = super::synclog::cyrsync_synclog_item {
                r#type: std::ptr::null(),
                type_len: 0,
                arg1: std::ptr::null(),
                arg1_len: 0,
                arg2: std::ptr::null(),
                arg2_len: 0,
            };
            match super::synclog::cyrsync_synclog_reader_next(reader, &mut item) {
                cyrsync_status::Ok => {}
                cyrsync_status::Eof => break,
                other => return other,
            }
            // SAFETY: the reader's item fields are valid until the next call.
            let bytes = |p: *const c_char, len: usize| unsafe {
                std::slice::from_raw_parts(p.cast::<u8>(), len)
            };
            let kind = bytes(item.r#type, item.type_len);
            let arg1 = bytes(item.arg1, item.arg1_len);
            let arg2 = (!item.arg2.is_null()).then(|| bytes(item.arg2, item.arg2_len));
            state
                .plan
                .add_item(kind, arg1, arg2, &mut |n| host.mboxname_to_userid(n));
            n += 1;
        }
        unsafe { set_out(items, n) };
        cyrsync_status::Ok
    })
}

/// Execute a plan (once; BAD_STATE the second time), calling the
/// callbacks in Cyrus's order.
///
/// * `config_dir`: imapd.conf `configdirectory`; with `channel`, where the
///   channel's log, state and quarantine files are. May be NULL when
///   `channel` is NULL.
/// * `channel`: NULL for Cyrus's one-shot modes (no deferral: LOCKED is an
///   error like any other, exactly as `sync_cs->channel == NULL` in Cyrus);
///   otherwise the channel whose log receives deferred items, `""` being
///   the default channel.
///
/// On OK, `*results` (if not NULL) holds the counters and outcome; a run
/// that bailed out is still OK here: see `results->bailed`.
///
/// The callbacks are called on this thread, during this call only; the
/// strings are only read during the call. One thread at a time per plan;
/// the configuration may be shared by concurrent runs. Two runs for the
/// same channel must not overlap (as two sync_clients on one channel).
#[no_mangle]
pub extern "C" fn cyrsync_syncclient_execute(
    plan: *mut cyrsync_syncclient_plan,
    config: *const cyrsync_syncclient_config,
    callbacks: *const cyrsync_syncclient_callbacks,
    config_dir: *const c_char,
    channel: *const c_char,
    results: *mut cyrsync_syncclient_results,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_syncclient_execute", {
        let state = try_mut!(plan);
        let config = try_ref!(config);
        let cbs = match check_callbacks(callbacks) {
            Ok(c) => c,
            Err(s) => return s,
        };
        let channel = unsafe { super::c_bytes(channel) };
        let config_dir = unsafe { super::c_bytes(config_dir) };
        if channel.is_some() && config_dir.is_none() {
            return super::null_parameter("config_dir");
        }
        if state.executed {
            log::error!("IOERROR: cyrsync_syncclient_execute: plan already executed");
            return cyrsync_status::BadState;
        }
        state.executed = true;
        let mut host = Host::new(cbs);
        let report = match run(&mut state.plan, config, &mut host, config_dir, channel) {
            Ok(r) => r,
            Err(s) => return s,
        };
        unsafe { set_out(results, results_of(&state.plan, &report)) };
        cyrsync_status::Ok
    })
}

/// The whole rolling-mode cycle for one channel with cyrsync's own reader:
/// take the channel's log (`log` renamed to `log-run`, or a `log-run` left
/// by an earlier run), plan its items, execute them, and unlink `log-run`
/// unless the run bailed out (then it is reprocessed next time, as in
/// Cyrus). `channel` NULL or `""` is the default channel. Returns AGAIN
/// when the channel has no log (nothing to do), IO_ERROR when the log
/// cannot be taken or removed; otherwise OK with `*results` written.
///
/// Threading as `cyrsync_syncclient_execute`.
#[no_mangle]
pub extern "C" fn cyrsync_syncclient_run_channel(
    config: *const cyrsync_syncclient_config,
    callbacks: *const cyrsync_syncclient_callbacks,
    config_dir: *const c_char,
    channel: *const c_char,
    results: *mut cyrsync_syncclient_results,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_syncclient_run_channel", {
        let config = try_ref!(config);
        let cbs = match check_callbacks(callbacks) {
            Ok(c) => c,
            Err(s) => return s,
        };
        let config_dir = try_bytes!(config_dir);
        let channel = unsafe { super::c_bytes(channel) }.unwrap_or(b"");
        let dir_path = Path::new(OsStr::from_bytes(config_dir));
        let name = (!channel.is_empty()).then_some(channel);
        let mut reader = match Reader::for_channel(dir_path, name) {
            Ok(r) => r,
            Err(e) => return synclog_error("cyrsync_syncclient_run_channel", &e),
        };
        match reader.begin() {
            Ok(Begun::Ready) => {}
            Ok(Begun::NoLog) => return cyrsync_status::Again,
            Err(e) => return synclog_error("sync_log_reader_begin", &e),
        }
        let mut host = Host::new(cbs);
        let mut plan = Plan::new();
        while let Some(item) = reader.next_item() {
            plan.add_item(item.kind, item.arg1, item.arg2, &mut |n| {
                host.mboxname_to_userid(n)
            });
        }
        let report = match run(
            &mut plan,
            config,
            &mut host,
            Some(config_dir),
            Some(channel),
        ) {
            Ok(r) => r,
            Err(s) => return s,
        };
        if !report.bailed() {
            if let Err(e) = reader.end() {
                return synclog_error("sync_log_reader_end", &e);
            }
        } else {
            log::error!(
                "Processing sync log file {} failed: {}",
                reader
                    .work_file()
                    .map_or_else(String::new, |p| p.display().to_string()),
                host.describe(report.outcome.reply().code())
            );
        }
        unsafe { set_out(results, results_of(&plan, &report)) };
        cyrsync_status::Ok
    })
}

fn synclog_error(context: &str, e: &synclog::Error) -> cyrsync_status {
    log::error!("IOERROR: {context}: {e}");
    match e {
        synclog::Error::BadChannel(_) => cyrsync_status::BadChannel,
        synclog::Error::LockRetries { .. } => cyrsync_status::LockFailed,
        _ => cyrsync_status::IoError,
    }
}

fn check_callbacks(
    callbacks: *const cyrsync_syncclient_callbacks,
) -> Result<cyrsync_syncclient_callbacks, cyrsync_status> {
    let Some(cbs) = (unsafe { callbacks.as_ref() }) else {
        return Err(super::null_parameter("callbacks"));
    };
    let missing = [
        ("mailboxes", cbs.mailboxes.is_none()),
        ("quota", cbs.quota.is_none()),
        ("annotation", cbs.annotation.is_none()),
        ("seen", cbs.seen.is_none()),
        ("sub", cbs.sub.is_none()),
        ("unmailbox", cbs.unmailbox.is_none()),
        ("meta", cbs.meta.is_none()),
        ("user", cbs.user.is_none()),
        ("unuser", cbs.unuser.is_none()),
        ("restart", cbs.restart.is_none()),
    ];
    for (name, none) in missing {
        if none {
            return Err(super::null_parameter(&format!("callbacks->{name}")));
        }
    }
    Ok(*cbs)
}

fn run(
    plan: &mut Plan,
    config: &ConfigState,
    host: &mut Host,
    config_dir: Option<&[u8]>,
    channel: Option<&[u8]>,
) -> Result<RunReport, cyrsync_status> {
    let mut clock: Box<dyn Clock> = match (config.sleep, config.seed) {
        (Some((f, ud)), seed) => Box::new(HostClock {
            sleep: f,
            userdata: ud,
            rng: SystemClock::default(),
            seed,
            start: std::time::Instant::now(),
            slept: Duration::ZERO,
        }),
        (None, Some(seed)) => Box::new(HostClock {
            sleep: real_sleep,
            userdata: std::ptr::null_mut(),
            rng: SystemClock::default(),
            seed: Some(seed),
            start: std::time::Instant::now(),
            slept: Duration::ZERO,
        }),
        (None, None) => Box::new(SystemClock::default()),
    };
    plan.order_cohorts(config.cohort_order);
    let Some(channel) = channel else {
        return Ok(run_plan(plan, host, None, clock.as_mut(), config.config));
    };
    let config_dir = PathBuf::from(OsStr::from_bytes(config_dir.unwrap_or_default()));
    let name = (!channel.is_empty()).then_some(channel);
    if let Some(n) = name {
        if let Err(e) = synclog::check_channel(n) {
            return Err(synclog_error("cyrsync_syncclient_execute", &e));
        }
    }
    let writer = synclog::Config::from_options(&config_dir, None, None, true, false)
        .and_then(Writer::new)
        .map_err(|e| synclog_error("cyrsync_syncclient_execute", &e))?;
    let mut log = WriterLog {
        writer: &writer,
        channel: name,
    };
    let dir = channel_dir(&config_dir, name);
    let ch = ChannelRun {
        dir: &dir,
        name,
        log: &mut log,
    };
    Ok(run_plan(
        plan,
        host,
        Some(ch),
        clock.as_mut(),
        config.config,
    ))
}

unsafe extern "C" fn real_sleep(_: *mut c_void, micros: u64) {
    std::thread::sleep(Duration::from_micros(micros));
}

struct HostClock {
    sleep: unsafe extern "C" fn(*mut c_void, u64),
    userdata: *mut c_void,
    rng: SystemClock,
    seed: Option<u64>,
    start: std::time::Instant,
    slept: Duration,
}

impl Clock for HostClock {
    /// The larger of the real time and the time the host was asked to
    /// sleep: right for a host that sleeps, and for one whose time is
    /// virtual (tests).
    fn now(&mut self) -> Duration {
        self.start.elapsed().max(self.slept)
    }
    fn sleep(&mut self, duration: Duration) {
        self.slept += duration;
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        // SAFETY: the host registered this function for these calls.
        unsafe { (self.sleep)(self.userdata, micros) }
    }
    fn jitter(&mut self, max: Duration) -> Duration {
        if let Some(seed) = self.seed.take() {
            self.rng = SystemClock::with_seed(seed);
        }
        self.rng.jitter(max)
    }
}

/// Deferrals through the sync log writer, to one channel.
struct WriterLog<'a> {
    writer: &'a Writer,
    channel: Option<&'a [u8]>,
}

impl DeferLog for WriterLog<'_> {
    fn append(&mut self, record: &Record) -> Result<(), String> {
        let kind = match record.kind {
            Kind::Mailbox => RecordKind::Mailbox,
            Kind::Quota => RecordKind::Quota,
            Kind::Annotation => RecordKind::Annotation,
            Kind::Seen => RecordKind::Seen,
            Kind::Sub => RecordKind::Sub,
            Kind::Unmailbox => RecordKind::Unmailbox,
            Kind::Meta => RecordKind::Meta,
            Kind::User => RecordKind::User,
            Kind::Unuser => RecordKind::Unuser,
        };
        self.writer
            .append(self.channel, kind, &record.arg1, record.arg2.as_deref())
            .map_err(|e| e.to_string())
    }
}

fn results_of(plan: &Plan, report: &RunReport) -> cyrsync_syncclient_results {
    let c = report.counters;
    let r = report.outcome.reply();
    cyrsync_syncclient_results {
        items: plan.items,
        skipped: plan.skipped.len() as u64,
        done: c.done,
        deferred: c.deferred,
        promoted: c.promoted,
        retried: c.retried,
        quarantined: c.quarantined,
        bailed: report.bailed(),
        io_error: report.outcome == Outcome::IoError,
        cyrus_error: r.code(),
        reply: match r {
            Reply::Ok => CYRSYNC_REPLY_OK,
            Reply::Locked(_) => CYRSYNC_REPLY_LOCKED,
            Reply::Bye(_) => CYRSYNC_REPLY_BYE,
            Reply::InvalidUser(_) => CYRSYNC_REPLY_INVALID_USER,
            Reply::Error(_) => CYRSYNC_REPLY_ERROR,
        },
    }
}

/// The callback table as a [`Target`].
struct Host {
    cbs: cyrsync_syncclient_callbacks,
    buf1: Vec<u8>,
    buf2: Vec<u8>,
}

/// Copy `name` with a NUL into `buf`, returning (pointer, length).
fn c_name(buf: &mut Vec<u8>, name: &[u8]) -> (*const c_char, usize) {
    buf.clear();
    buf.extend_from_slice(name);
    buf.push(0);
    (buf.as_ptr().cast(), name.len())
}

fn reply_of(value: u32, error: c_int) -> Reply {
    match value {
        CYRSYNC_REPLY_OK => Reply::Ok,
        CYRSYNC_REPLY_LOCKED => Reply::Locked(error),
        CYRSYNC_REPLY_BYE => Reply::Bye(error),
        CYRSYNC_REPLY_INVALID_USER => Reply::InvalidUser(error),
        CYRSYNC_REPLY_ERROR => Reply::Error(error),
        other => {
            log::error!(
                "IOERROR: cyrsync: sync callback returned an unknown reply reply=<{other}>"
            );
            Reply::Error(error)
        }
    }
}

impl Host {
    fn new(cbs: cyrsync_syncclient_callbacks) -> Self {
        Host {
            cbs,
            buf1: Vec::new(),
            buf2: Vec::new(),
        }
    }

    fn one(&mut self, f: super::syncclient::cyrsync_sync_one_fn, name: &[u8]) -> Reply {
        let f = f.expect("checked by check_callbacks");
        let (p, n) = c_name(&mut self.buf1, name);
        let mut error: c_int = 0;
        // SAFETY: the host's function, called as documented.
        let r = unsafe { f(self.cbs.userdata, p, n, &mut error) };
        reply_of(r, error)
    }

    fn two(&mut self, f: cyrsync_sync_two_fn, user: &[u8], mailbox: &[u8]) -> Reply {
        let f = f.expect("checked by check_callbacks");
        let (p1, n1) = c_name(&mut self.buf1, user);
        let (p2, n2) = c_name(&mut self.buf2, mailbox);
        let mut error: c_int = 0;
        // SAFETY: as above.
        let r = unsafe { f(self.cbs.userdata, p1, n1, p2, n2, &mut error) };
        reply_of(r, error)
    }
}

unsafe extern "C" fn history_add(ctx: *mut c_void, former: *const c_char, len: usize) {
    // Called by C during name_history; must not unwind into C.
    let _ = std::panic::catch_unwind(|| {
        if ctx.is_null() || former.is_null() {
            return;
        }
        // SAFETY: ctx is the Vec we passed; former has len bytes.
        let out = unsafe { &mut *ctx.cast::<Vec<Vec<u8>>>() };
        out.push(unsafe { std::slice::from_raw_parts(former.cast::<u8>(), len) }.to_vec());
    });
}

impl Target for Host {
    fn mailboxes(&mut self, names: &[&[u8]], done: &mut [bool]) -> Reply {
        let f = self.cbs.mailboxes.expect("checked by check_callbacks");
        let owned: Vec<Vec<u8>> = names
            .iter()
            .map(|n| {
                let mut v = n.to_vec();
                v.push(0);
                v
            })
            .collect();
        let list: Vec<cyrsync_name> = owned
            .iter()
            .map(|v| cyrsync_name {
                name: v.as_ptr().cast(),
                len: v.len() - 1,
            })
            .collect();
        let mut marks = vec![0u8; names.len()];
        let mut error: c_int = 0;
        // SAFETY: as documented for `mailboxes`.
        let r = unsafe {
            f(
                self.cbs.userdata,
                list.as_ptr(),
                list.len(),
                marks.as_mut_ptr(),
                &mut error,
            )
        };
        for (d, m) in done.iter_mut().zip(&marks) {
            *d = *m != 0;
        }
        reply_of(r, error)
    }
    fn quota(&mut self, root: &[u8]) -> Reply {
        self.one(self.cbs.quota, root)
    }
    fn annotation(&mut self, name: &[u8]) -> Reply {
        self.one(self.cbs.annotation, name)
    }
    fn seen(&mut self, user: &[u8], mailbox: &[u8]) -> Reply {
        self.two(self.cbs.seen, user, mailbox)
    }
    fn sub(&mut self, user: &[u8], mailbox: &[u8]) -> Reply {
        self.two(self.cbs.sub, user, mailbox)
    }
    fn unmailbox(&mut self, name: &[u8]) -> Reply {
        self.one(self.cbs.unmailbox, name)
    }
    fn meta(&mut self, user: &[u8]) -> Reply {
        self.one(self.cbs.meta, user)
    }
    fn user(&mut self, user: &[u8]) -> Reply {
        self.one(self.cbs.user, user)
    }
    fn unuser(&mut self, user: &[u8]) -> Reply {
        self.one(self.cbs.unuser, user)
    }
    fn restart(&mut self) -> Reply {
        let f = self.cbs.restart.expect("checked by check_callbacks");
        let mut error: c_int = 0;
        // SAFETY: as documented for `restart`.
        let r = unsafe { f(self.cbs.userdata, &mut error) };
        reply_of(r, error)
    }
    fn mboxname_to_userid(&mut self, name: &[u8]) -> Option<Vec<u8>> {
        let Some(f) = self.cbs.mboxname_to_userid else {
            return crate::syncclient::plan::default_mboxname_to_userid(name);
        };
        let (p, n) = c_name(&mut self.buf1, name);
        // SAFETY: as documented; the result is malloc'ed or NULL.
        let userid = unsafe { f(self.cbs.userdata, p, n) };
        if userid.is_null() {
            return None;
        }
        let bytes = unsafe { CStr::from_ptr(userid) }.to_bytes().to_vec();
        unsafe { libc::free(userid.cast()) };
        Some(bytes)
    }
    fn is_user_inbox(&mut self, name: &[u8]) -> bool {
        let Some(f) = self.cbs.is_user_inbox else {
            return crate::syncclient::plan::default_is_user_inbox(name);
        };
        let (p, n) = c_name(&mut self.buf1, name);
        // SAFETY: as documented.
        unsafe { f(self.cbs.userdata, p, n) != 0 }
    }
    fn name_history(&mut self, name: &[u8], out: &mut Vec<Vec<u8>>) {
        let Some(f) = self.cbs.name_history else {
            return;
        };
        let (p, n) = c_name(&mut self.buf1, name);
        let ctx: *mut Vec<Vec<u8>> = out;
        // SAFETY: as documented; `history_add` only touches `out`.
        unsafe { f(self.cbs.userdata, p, n, Some(history_add), ctx.cast()) };
    }
    fn describe(&mut self, code: c_int) -> String {
        if let Some(f) = self.cbs.error_message {
            // SAFETY: as documented; a NUL-terminated string or NULL.
            let s = unsafe { f(self.cbs.userdata, code) };
            if !s.is_null() {
                return unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
            }
        }
        format!("error code {code}")
    }
}
