//! `cyrsync_syncclient_plan`: one run's plan, built from log items and
//! executed once.

use std::ffi::{c_char, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::super::{
    cyrsync_status, ffi_boundary, free_handle, into_handle, set_out, try_bytes, try_mut, try_ref,
    Handle,
};
use super::{
    callbacks::table, cyrsync_syncclient_callbacks, cyrsync_syncclient_config,
    cyrsync_syncclient_results, results::results_of, synclog_error, Host,
};
use crate::syncclient::{execute_plan, Channel, Plan, Target};

/// One run's plan (opaque).
#[allow(non_camel_case_types)]
pub struct cyrsync_syncclient_plan {
    _private: [u8; 0],
}

pub(crate) struct PlanState {
    plan: Plan,
    executed: bool,
}

// SAFETY: as above.
unsafe impl Handle for cyrsync_syncclient_plan {
    type Inner = PlanState;
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
            return super::super::null_parameter("out");
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
        let cbs = match table(callbacks, false) {
            Ok(c) => c,
            Err(s) => return s,
        };
        let kind = try_bytes!(r#type);
        let arg1 = try_bytes!(arg1);
        let arg2 = unsafe { super::super::c_bytes(arg2) };
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
/// `*items` (if not NULL) receives the number of items added. Lines the
/// reader sets aside (`CYRSYNC_STATUS_SET_ASIDE`) are stepped over; a read
/// error stops with the reader's status, the items read so far staying in
/// the plan.
///
/// One thread at a time per plan and per reader.
#[no_mangle]
pub extern "C" fn cyrsync_syncclient_plan_add_reader(
    plan: *mut cyrsync_syncclient_plan,
    callbacks: *const cyrsync_syncclient_callbacks,
    reader: *mut super::super::synclog::cyrsync_synclog_reader,
    items: *mut u64,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_syncclient_plan_add_reader", {
        let state = try_mut!(plan);
        let cbs = match table(callbacks, false) {
            Ok(c) => c,
            Err(s) => return s,
        };
        if reader.is_null() {
            return super::super::null_parameter("reader");
        }
        if state.executed {
            log::error!("IOERROR: cyrsync_syncclient_plan_add_reader: plan already executed");
            return cyrsync_status::BadState;
        }
        let mut host = Host::new(cbs);
        let mut n = 0u64;
        loop {
            let mut item = super::super::synclog::cyrsync_synclog_item {
                r#type: std::ptr::null(),
                type_len: 0,
                arg1: std::ptr::null(),
                arg1_len: 0,
                arg2: std::ptr::null(),
                arg2_len: 0,
            };
            match super::super::synclog::cyrsync_synclog_reader_next(reader, &mut item) {
                cyrsync_status::Ok => {}
                cyrsync_status::Eof => break,
                // a bad line, set aside by the reader (log-bad): go on
                cyrsync_status::SetAside => continue,
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
        let cbs = match table(callbacks, true) {
            Ok(c) => c,
            Err(s) => return s,
        };
        let channel = unsafe { super::super::c_bytes(channel) };
        let config_dir = unsafe { super::super::c_bytes(config_dir) };
        if channel.is_some() && config_dir.is_none() {
            return super::super::null_parameter("config_dir");
        }
        if let (Some(_), Some(dir)) = (channel, config_dir) {
            if let Err(status) = super::super::config_dir_path(dir, "cyrsync_syncclient_execute") {
                return status;
            }
        }
        if state.executed {
            log::error!("IOERROR: cyrsync_syncclient_execute: plan already executed");
            return cyrsync_status::BadState;
        }
        let config_dir = Path::new(OsStr::from_bytes(config_dir.unwrap_or_default()));
        let channel = channel.map(|name| Channel::new(config_dir, name));
        let mut host = Host::new(cbs);
        let mut clock = config.clock();
        // refused (a bad channel): the plan stays unexecuted, for a retry
        let report = match execute_plan(
            &mut state.plan,
            &mut host,
            clock.as_mut(),
            config.settings(),
            channel,
        ) {
            Ok(r) => r,
            Err(e) => return synclog_error("cyrsync_syncclient_execute", &e),
        };
        state.executed = true;
        unsafe { set_out(results, results_of(&state.plan, &report)) };
        cyrsync_status::Ok
    })
}
