//! cyrsync: Rust replacements for three pieces of Cyrus IMAP's C code, behind
//! a C header (`include/cyrsync.h`).
//!
//! * [`synclog`] — the replication log every Cyrus daemon appends to, and the
//!   reader sync_client consumes; byte-compatible with `imap/sync_log.c`.
//! * [`syncclient`] — turning a log into a plan of sync actions and running
//!   it, with per-channel policies for targets that answer
//!   `NO IMAP_MAILBOX_LOCKED`.
//! * [`barrier`] — the global write barrier that a snapshot tool freezes.
//!
//! The core modules are safe Rust with no C types; `ffi` is the only place
//! with `extern "C"` (see its docs for the conventions every function keeps).

pub mod barrier;
pub mod ffi;
pub mod syncclient;
pub mod synclog;
