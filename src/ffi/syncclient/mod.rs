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
//! One file per C type: [`callbacks`] (the host's table and the replies),
//! [`config`], [`plan`] (and `execute`), [`results`], [`channel`] (the
//! rolling-mode cycle). Each calls the Rust API in [`crate::syncclient`]
//! (`execute_plan`, `run_channel`) and converts at the boundary only.
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
//!         .version = CYRSYNC_SYNCCLIENT_CALLBACKS_VERSION,
//!         .userdata = sync_cs, .mailboxes = cs_mailboxes, .user = cs_user, ...
//!     };
//!     cyrsync_syncclient_plan *plan = NULL;
//!     struct cyrsync_syncclient_results res;
//!     const char *args[3];
//!     int r, g;
//!
//!     if (cyrsync_syncclient_plan_new(&plan)) return IMAP_INTERNAL;
//!     /* every status: 0 an item, EOF the end, anything else a read error
//!      * (stop: args is not set; the reader keeps the log) */
//!     while ((g = sync_log_reader_getitem(slr, args)) == 0)
//!         cyrsync_syncclient_plan_add(plan, &cbs, args[0], args[1], args[2]);
//!     /* config: made once from imapd.conf; channel as C tests it */
//!     if (cyrsync_syncclient_execute(plan, config, &cbs, config_dir,
//!                                    sync_cs->channel, &res))
//!         r = IMAP_INTERNAL;
//!     else if (res.io_error)
//!         r = IMAP_IOERROR;
//!     else
//!         r = res.cyrus_error;  /* 0 unless the run bailed out */
//!     if (!r && g != EOF) r = g;   /* the items read ran; report the rest */
//!     cyrsync_syncclient_plan_free(plan);
//!     return r;
//! }
//! ```

pub mod callbacks;
pub mod channel;
pub mod config;
pub mod plan;
pub mod results;

pub use callbacks::*;
pub use channel::*;
pub use config::*;
pub use plan::*;
pub use results::*;

use crate::synclog;

use super::cyrsync_status;

/// Log a sync log error met by a sync_client call and give its status.
fn synclog_error(context: &str, e: &synclog::Error) -> cyrsync_status {
    let status = match e {
        synclog::Error::BadChannel(_) => cyrsync_status::BadChannel,
        synclog::Error::LockRetries { .. } => cyrsync_status::LockFailed,
        synclog::Error::Busy { .. } => cyrsync_status::Busy,
        synclog::Error::Kept { .. } => cyrsync_status::Kept,
        _ => cyrsync_status::IoError,
    };
    match status {
        cyrsync_status::Kept => log::warn!("{context}: {e}"),
        cyrsync_status::Busy => log::error!("SYNCERROR: {context}: {e}"),
        _ => log::error!("IOERROR: {context}: {e}"),
    }
    status
}
