//! A mock sync target behind the C callback table, shared by the
//! syncclient tests (included with `#[path]`; as a test target of its own it
//! has no tests).
//!
//! Every call is recorded as a line (`USER u1`, `MAILBOXES user.u1
//! user.u1.x`, `RESTART`); a call takes 10 ms of virtual time, the backoff
//! sleeps through the config's sleep callback advance the same clock. A
//! user can be LOCKED until a virtual time; single operations can be made
//! to fail with a chosen reply.

#![allow(dead_code)]
// Test helpers over raw handles made by the tests themselves.
#![allow(clippy::not_unsafe_ptr_arg_deref, clippy::missing_safety_doc)]

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr;

use cyrsync_abi_tests::*;

pub const LOCKED_CODE: c_int = -1904;
pub const BYE_CODE: c_int = -1905;
pub const INVALID_USER_CODE: c_int = -1906;
pub const ERROR_CODE: c_int = -1907;

#[derive(Default)]
pub struct Mock {
    /// Every call, in order.
    pub calls: Vec<String>,
    /// Successful syncs per item (`USER u1`, `MAILBOX user.u1.x`, ...).
    pub synced: HashMap<String, u32>,
    /// Virtual time in microseconds.
    pub now_us: u64,
    /// user -> locked until this virtual time (u64::MAX: for ever).
    pub locked_until: HashMap<String, u64>,
    /// call line -> (reply, code) answered instead of OK.
    pub fail: HashMap<String, (u32, c_int)>,
    /// mailbox -> former names.
    pub history: HashMap<String, Vec<String>>,
    pub sleeps: Vec<u64>,
    /// Every operation answers LOCKED (names need not be UTF-8).
    pub locked_all: bool,
}

pub fn userid_of(name: &str) -> Option<String> {
    // Cyrus's default namespace: [domain!]user.<local>[.sub]
    let (domain, rest) = match name.split_once('!') {
        Some((d, r)) => (Some(d), r),
        None => (None, name),
    };
    let rest = rest.strip_prefix("DELETED.").unwrap_or(rest);
    let local = rest.strip_prefix("user.")?.split('.').next()?;
    if local.is_empty() {
        return None;
    }
    let local = local.replace('^', ".");
    Some(match domain {
        Some(d) => format!("{local}@{d}"),
        None => local,
    })
}

impl Mock {
    fn is_locked(&self, user: &str) -> bool {
        self.locked_until
            .get(user)
            .is_some_and(|&until| self.now_us < until)
    }

    /// Answer a single operation on behalf of `user`.
    fn answer(&mut self, line: String, user: Option<String>, item: String) -> (u32, c_int) {
        self.now_us += 10_000;
        self.calls.push(line.clone());
        if let Some(&(reply, code)) = self.fail.get(&line) {
            return (reply, code);
        }
        if self.locked_all {
            return (CYRSYNC_REPLY_LOCKED, LOCKED_CODE);
        }
        if user.as_deref().is_some_and(|u| self.is_locked(u)) {
            return (CYRSYNC_REPLY_LOCKED, LOCKED_CODE);
        }
        *self.synced.entry(item).or_default() += 1;
        (CYRSYNC_REPLY_OK, 0)
    }
}

/// A name from cyrsync as text (names are bytes: non-UTF-8 is shown
/// lossily, which is enough to recognise users here).
unsafe fn s(p: *const c_char, len: usize) -> String {
    let b = unsafe { CStr::from_ptr(p) }.to_bytes();
    assert_eq!(b.len(), len, "length matches the NUL-terminated string");
    String::from_utf8_lossy(b).into_owned()
}

unsafe fn mock<'a>(ud: *mut c_void) -> &'a mut Mock {
    unsafe { &mut *ud.cast::<Mock>() }
}

unsafe extern "C" fn mailboxes(
    ud: *mut c_void,
    names: *const cyrsync_name,
    count: usize,
    done: *mut u8,
    error: *mut c_int,
) -> u32 {
    let m = unsafe { mock(ud) };
    let names: Vec<String> = (0..count)
        .map(|i| {
            let n = unsafe { *names.add(i) };
            unsafe { s(n.name, n.len) }
        })
        .collect();
    m.now_us += 10_000;
    let line = format!("MAILBOXES {}", names.join(" "));
    m.calls.push(line.clone());
    if let Some(&(reply, code)) = m.fail.get(&line) {
        unsafe { *error = code };
        return reply;
    }
    // like sync_do_mailboxes: lock every user first, all or nothing
    if m.locked_all
        || names
            .iter()
            .filter_map(|n| userid_of(n))
            .any(|u| m.is_locked(&u))
    {
        unsafe { *error = LOCKED_CODE };
        return CYRSYNC_REPLY_LOCKED;
    }
    for (i, n) in names.iter().enumerate() {
        *m.synced.entry(format!("MAILBOX {n}")).or_default() += 1;
        unsafe { *done.add(i) = 1 };
    }
    CYRSYNC_REPLY_OK
}

macro_rules! one {
    ($fname:ident, $word:literal, $user:expr) => {
        unsafe extern "C" fn $fname(
            ud: *mut c_void,
            name: *const c_char,
            len: usize,
            error: *mut c_int,
        ) -> u32 {
            let m = unsafe { mock(ud) };
            let name = unsafe { s(name, len) };
            let user: fn(&str) -> Option<String> = $user;
            let line = format!("{} {}", $word, name);
            let (r, code) = m.answer(line.clone(), user(&name), line);
            if r != CYRSYNC_REPLY_OK {
                unsafe { *error = code };
            }
            r
        }
    };
}

one!(quota, "QUOTA", userid_of);
one!(annotation, "ANNOTATION", userid_of);
one!(unmailbox, "UNMAILBOX", userid_of);
one!(meta, "META", |u| Some(u.to_owned()));
one!(user, "USER", |u| Some(u.to_owned()));
one!(unuser, "UNUSER", |u| Some(u.to_owned()));

macro_rules! two {
    ($fname:ident, $word:literal) => {
        unsafe extern "C" fn $fname(
            ud: *mut c_void,
            user: *const c_char,
            ulen: usize,
            mbox: *const c_char,
            mlen: usize,
            error: *mut c_int,
        ) -> u32 {
            let m = unsafe { mock(ud) };
            let user = unsafe { s(user, ulen) };
            let mbox = unsafe { s(mbox, mlen) };
            let line = format!("{} {} {}", $word, user, mbox);
            let (r, code) = m.answer(line.clone(), Some(user), line);
            if r != CYRSYNC_REPLY_OK {
                unsafe { *error = code };
            }
            r
        }
    };
}

two!(seen, "SEEN");
two!(sub, "SUB");

unsafe extern "C" fn restart(ud: *mut c_void, _error: *mut c_int) -> u32 {
    let m = unsafe { mock(ud) };
    m.calls.push("RESTART".into());
    CYRSYNC_REPLY_OK
}

unsafe extern "C" fn to_userid(_ud: *mut c_void, name: *const c_char, len: usize) -> *mut c_char {
    match userid_of(&unsafe { s(name, len) }) {
        Some(u) => {
            let c = CString::new(u).unwrap();
            // cyrsync frees it with free(3)
            unsafe { libc::strdup(c.as_ptr()) }
        }
        None => ptr::null_mut(),
    }
}

unsafe extern "C" fn name_history(
    ud: *mut c_void,
    name: *const c_char,
    len: usize,
    add: cyrsync_name_history_add,
    ctx: *mut c_void,
) {
    let m = unsafe { mock(ud) };
    let name = unsafe { s(name, len) };
    if let Some(former) = m.history.get(&name) {
        for f in former {
            unsafe { add.unwrap()(ctx, f.as_ptr().cast(), f.len()) };
        }
    }
}

unsafe extern "C" fn error_message(_ud: *mut c_void, code: c_int) -> *const c_char {
    match code {
        LOCKED_CODE => c"Mailbox is locked".as_ptr(),
        BYE_CODE => c"Connection closed".as_ptr(),
        _ => ptr::null(),
    }
}

pub unsafe extern "C" fn virtual_sleep(ud: *mut c_void, micros: u64) {
    let m = unsafe { mock(ud) };
    m.now_us += micros;
    m.sleeps.push(micros);
}

/// The callback table for `mock` (which must outlive its use).
pub fn callbacks(mock: &mut Mock) -> cyrsync_syncclient_callbacks {
    cyrsync_syncclient_callbacks {
        version: CYRSYNC_SYNCCLIENT_CALLBACKS_VERSION,
        userdata: (mock as *mut Mock).cast(),
        mailboxes: Some(mailboxes),
        quota: Some(quota),
        annotation: Some(annotation),
        seen: Some(seen),
        sub: Some(sub),
        unmailbox: Some(unmailbox),
        meta: Some(meta),
        user: Some(user),
        unuser: Some(unuser),
        restart: Some(restart),
        mboxname_to_userid: Some(to_userid),
        is_user_inbox: None,
        name_history: Some(name_history),
        error_message: Some(error_message),
    }
}

/// A config with `policy`, fast virtual backoff, and the mock's clock.
pub fn config(mock: &mut Mock, policy: u32) -> *mut cyrsync_syncclient_config {
    let mut cfg = ptr::null_mut();
    assert_eq!(
        unsafe { cyrsync_syncclient_config_new(&mut cfg) },
        CYRSYNC_STATUS_OK
    );
    unsafe {
        assert_eq!(
            cyrsync_syncclient_config_set_policy(cfg, policy),
            CYRSYNC_STATUS_OK
        );
        assert_eq!(
            cyrsync_syncclient_config_set_sleep(
                cfg,
                Some(virtual_sleep),
                (mock as *mut Mock).cast()
            ),
            CYRSYNC_STATUS_OK
        );
        assert_eq!(
            cyrsync_syncclient_config_set_jitter_seed(cfg, 42),
            CYRSYNC_STATUS_OK
        );
    }
    cfg
}

/// Parse a log text into (type, arg1, arg2) lines (atoms only).
pub fn items(log: &str) -> Vec<(String, String, Option<String>)> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut w = l.split_whitespace().map(str::to_owned);
            (w.next().unwrap(), w.next().unwrap(), w.next())
        })
        .collect()
}

/// Plan `log` and execute it against `mock` (one-shot when `channel` is
/// None).
pub fn execute(
    mock: &mut Mock,
    cfg: *mut cyrsync_syncclient_config,
    log: &str,
    dir: Option<&TempDir>,
    channel: Option<&str>,
) -> cyrsync_syncclient_results {
    let cbs = callbacks(mock);
    let mut plan = ptr::null_mut();
    assert_eq!(
        unsafe { cyrsync_syncclient_plan_new(&mut plan) },
        CYRSYNC_STATUS_OK
    );
    for (t, a1, a2) in items(log) {
        let (t, a1, a2) = (
            cs(t.as_bytes()),
            cs(a1.as_bytes()),
            a2.map(|a| cs(a.as_bytes())),
        );
        let r = unsafe {
            cyrsync_syncclient_plan_add(
                plan,
                &cbs,
                t.as_ptr(),
                a1.as_ptr(),
                a2.as_ref().map_or(ptr::null(), |a| a.as_ptr()),
            )
        };
        assert_eq!(r, CYRSYNC_STATUS_OK);
    }
    let dir_c = dir.map(|d| d.c());
    let ch = channel.map(|c| cs(c.as_bytes()));
    let mut results: cyrsync_syncclient_results = unsafe { std::mem::zeroed() };
    let r = unsafe {
        cyrsync_syncclient_execute(
            plan,
            cfg,
            &cbs,
            dir_c.as_ref().map_or(ptr::null(), |d| d.as_ptr()),
            ch.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
            &mut results,
        )
    };
    assert_eq!(r, CYRSYNC_STATUS_OK);
    unsafe { cyrsync_syncclient_plan_free(plan) };
    results
}

/// Run a channel's log through `cyrsync_syncclient_run_channel`.
pub fn run_channel(
    mock: &mut Mock,
    cfg: *mut cyrsync_syncclient_config,
    dir: &TempDir,
    channel: &str,
) -> Result<cyrsync_syncclient_results, cyrsync_status> {
    let cbs = callbacks(mock);
    let ch = cs(channel.as_bytes());
    let mut results: cyrsync_syncclient_results = unsafe { std::mem::zeroed() };
    let r = unsafe {
        cyrsync_syncclient_run_channel(cfg, &cbs, dir.c().as_ptr(), ch.as_ptr(), &mut results)
    };
    if r == CYRSYNC_STATUS_OK {
        Ok(results)
    } else {
        Err(r)
    }
}

/// The channel directory: `<dir>/sync[/<channel>]`.
pub fn channel_dir(dir: &TempDir, channel: &str) -> std::path::PathBuf {
    let d = dir.path().join("sync");
    if channel.is_empty() {
        d
    } else {
        d.join(channel)
    }
}

/// Write a channel's log file.
pub fn write_log(dir: &TempDir, channel: &str, text: &str) {
    let d = channel_dir(dir, channel);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("log"), text).unwrap();
}

/// Read a file of the channel directory ("" if missing).
pub fn read(dir: &TempDir, channel: &str, file: &str) -> String {
    std::fs::read_to_string(channel_dir(dir, channel).join(file)).unwrap_or_default()
}
