//! sync_client lock handling: planner and executor.
//!
//! A port of Cyrus's `sync_do_reader` (`imap/sync_support.c`) in two safe
//! halves with no C types:
//!
//! * [`plan`]: a sync log's items in, C's action lists out (same kinds,
//!   order, dedup and redundancy rules), in linear time ([`list`]);
//! * [`exec`]: the lists run against a [`exec::Target`] (the host's
//!   `sync_do_*` functions) in C's order with C's promotions and bail-outs,
//!   and a per-channel [`exec::LockPolicy`] for LOCKED answers;
//! * [`state`]: the per-channel state file (deferral ages and counts,
//!   consecutive failures) and the quarantine file, and
//!   [`state::ChannelFiles`], the [`exec::ChannelSink`] that ties them to the
//!   channel's log.
//!
//! `crate::ffi::syncclient` is the C API over this module.

pub mod exec;
pub mod list;
pub mod plan;
pub mod record;
pub mod run;
pub mod state;

pub use crate::synclog::RecordKind;
pub use exec::{
    execute, ChannelSink, Clock, Config, Counters, LockPolicy, Outcome, Reason, ReasonKind, Reply,
    RunReport, SleepClock, SystemClock, Target,
};
pub use list::{Action, ActionList};
pub use plan::{plan_items, CohortOrder, Plan, Step};
pub use record::Record;
pub use run::{execute_plan, run_channel, Channel, Pass, Settings};
