//! `cyrsync_syncclient_run_channel`: the rolling-mode cycle for hosts
//! without a reader of their own (the Rust API's
//! [`crate::syncclient::run_channel`]).

use std::ffi::c_char;

use super::super::{cyrsync_status, ffi_boundary, set_out, try_bytes, try_ref};
use super::{
    callbacks::table, cyrsync_syncclient_callbacks, cyrsync_syncclient_config,
    cyrsync_syncclient_results, results::results_of, synclog_error, Host,
};
use crate::syncclient::{run_channel, Channel, Pass};

/// The whole rolling-mode cycle for one channel with cyrsync's own reader:
/// take the channel's log (`log` renamed to `log-run`, or a `log-run` left
/// by an earlier run), plan its items, execute them, and unlink `log-run`
/// unless the run bailed out (then it is reprocessed next time, as in
/// Cyrus). `channel` NULL or `""` is the default channel. Returns AGAIN
/// when the channel has no log (nothing to do), BUSY when another reader
/// holds the channel, KEPT when the log could not be read to the end (it
/// is kept for the next run; the items read were run), IO_ERROR when the
/// log cannot be taken or removed; otherwise OK with `*results` written
/// (`results->bailed`: the log was kept).
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
        let cbs = match table(callbacks, true) {
            Ok(c) => c,
            Err(s) => return s,
        };
        let config_dir = try_bytes!(config_dir);
        let config_dir =
            match super::super::config_dir_path(config_dir, "cyrsync_syncclient_run_channel") {
                Ok(dir) => dir,
                Err(status) => return status,
            };
        let channel = unsafe { super::super::c_bytes(channel) }.unwrap_or(b"");
        let channel = Channel::new(config_dir, channel);
        let mut host = Host::new(cbs);
        let mut clock = config.clock();
        match run_channel(channel, &mut host, clock.as_mut(), config.settings()) {
            Ok(Pass::NoLog) => cyrsync_status::Again,
            Ok(Pass::Ran { plan, report }) => {
                unsafe { set_out(results, results_of(&plan, &report)) };
                cyrsync_status::Ok
            }
            Err(e) => synclog_error("cyrsync_syncclient_run_channel", &e),
        }
    })
}
