//! `cyrsync_syncclient_results`: what a run did, as C reads it.

use std::ffi::c_int;

use super::callbacks::*;
use crate::syncclient::{Outcome, Plan, Reply, RunReport};

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

pub(crate) fn results_of(plan: &Plan, report: &RunReport) -> cyrsync_syncclient_results {
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
