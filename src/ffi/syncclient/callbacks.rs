//! `cyrsync_syncclient_callbacks`: the host's sync operations, and the
//! replies they return; [`Host`] makes a table a [`Target`].

use std::ffi::{c_char, c_int, c_void, CStr};

use super::super::cyrsync_status;
use crate::syncclient::{Reply, Target};

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

/// The layout of `cyrsync_syncclient_callbacks` this header describes: put
/// it in the table's `version` field.
pub const CYRSYNC_SYNCCLIENT_CALLBACKS_VERSION: u32 = 1;

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
/// Set `version` to `CYRSYNC_SYNCCLIENT_CALLBACKS_VERSION`. Required:
/// `mailboxes`, `quota`, `annotation`, `seen`, `sub`,
/// `unmailbox`, `meta`, `user`, `unuser`, `restart`. Optional (NULL):
/// `mboxname_to_userid`, `is_user_inbox` (cyrsync then uses Cyrus's default
/// namespace rules: `[domain!]user.<name>...`), `name_history` (no former
/// names), `error_message` (codes shown as numbers).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cyrsync_syncclient_callbacks {
    /// `CYRSYNC_SYNCCLIENT_CALLBACKS_VERSION` of the header the host was
    /// compiled with. cyrsync refuses a version it does not know
    /// (`CYRSYNC_STATUS_BAD_VERSION`), so a table laid out for another
    /// header is never misread.
    pub version: u32,
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

/// The host's table, checked: its version known, and with `ops` its
/// required operations present.
pub(crate) fn table(
    callbacks: *const cyrsync_syncclient_callbacks,
    ops: bool,
) -> Result<cyrsync_syncclient_callbacks, cyrsync_status> {
    let Some(cbs) = (unsafe { callbacks.as_ref() }) else {
        return Err(super::super::null_parameter("callbacks"));
    };
    if cbs.version != CYRSYNC_SYNCCLIENT_CALLBACKS_VERSION {
        log::error!(
            "IOERROR: cyrsync: unknown callbacks version version=<{}> expected=<{}>",
            cbs.version,
            CYRSYNC_SYNCCLIENT_CALLBACKS_VERSION
        );
        return Err(cyrsync_status::BadVersion);
    }
    if !ops {
        return Ok(*cbs);
    }
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
            return Err(super::super::null_parameter(&format!("callbacks->{name}")));
        }
    }
    Ok(*cbs)
}

/// The callback table as a [`Target`].
pub(crate) struct Host {
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
    pub(crate) fn new(cbs: cyrsync_syncclient_callbacks) -> Self {
        Host {
            cbs,
            buf1: Vec::new(),
            buf2: Vec::new(),
        }
    }

    fn one(&mut self, f: cyrsync_sync_one_fn, name: &[u8]) -> Reply {
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
