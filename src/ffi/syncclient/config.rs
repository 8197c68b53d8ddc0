//! `cyrsync_syncclient_config`: the executor's settings, made once per
//! process from imapd.conf.

use std::ffi::{c_char, c_void};
use std::time::Duration;

use super::super::{
    cyrsync_status, ffi_boundary, free_handle, into_handle, set_out, try_bytes, try_mut, Handle,
};
use crate::syncclient::{
    Clock, CohortOrder, Config, LockPolicy, Settings, SleepClock, SystemClock,
};

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

/// Executor settings (opaque).
#[allow(non_camel_case_types)]
pub struct cyrsync_syncclient_config {
    _private: [u8; 0],
}

pub(crate) struct ConfigState {
    config: Config,
    cohort_order: CohortOrder,
    sleep: Option<(unsafe extern "C" fn(*mut c_void, u64), *mut c_void)>,
    seed: Option<u64>,
}

impl ConfigState {
    pub(crate) fn settings(&self) -> Settings {
        Settings {
            config: self.config,
            cohort_order: self.cohort_order,
        }
    }

    /// The clock of a run: the host's sleep if it set one, the real one
    /// otherwise; jitter from the seed if set.
    pub(crate) fn clock(&self) -> Box<dyn Clock> {
        match (self.sleep, self.seed) {
            (Some((f, userdata)), seed) => Box::new(SleepClock::new(
                move |d: Duration| {
                    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
                    // SAFETY: the host registered this function for these calls.
                    unsafe { f(userdata, micros) }
                },
                seed,
            )),
            (None, Some(seed)) => Box::new(SleepClock::new(std::thread::sleep, Some(seed))),
            (None, None) => Box::new(SystemClock::default()),
        }
    }
}

// SAFETY: zero-sized, never constructed, only used through the handle helpers.
unsafe impl Handle for cyrsync_syncclient_config {
    type Inner = ConfigState;
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
            return super::super::null_parameter("out");
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
