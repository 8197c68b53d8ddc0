//! Forwarding of the `log` crate to a callback the C host registers.
//!
//! Until a callback is registered cyrsync is silent: it installs its logger
//! only when asked, and if the process already has a `log` logger (a Rust
//! host) that one keeps receiving cyrsync's messages.

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

use super::{cyrsync_status, ffi_boundary};

/// syslog(3) priorities, the levels the callback receives.
pub const CYRSYNC_LOG_ERR: c_int = 3;
pub const CYRSYNC_LOG_WARNING: c_int = 4;
pub const CYRSYNC_LOG_NOTICE: c_int = 5;
pub const CYRSYNC_LOG_INFO: c_int = 6;
pub const CYRSYNC_LOG_DEBUG: c_int = 7;

/// A log callback: `level` is a syslog(3) priority (LOG_ERR = 3 ... LOG_DEBUG
/// = 7), `message` is NUL-terminated, `len` bytes long without the NUL, and
/// valid only during the call. It may be called from any thread that calls
/// into cyrsync, and must not call `cyrsync_set_log_callback`.
#[allow(non_camel_case_types)]
pub type cyrsync_log_callback = Option<
    unsafe extern "C" fn(userdata: *mut c_void, level: c_int, message: *const c_char, len: usize),
>;

struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, c_int, *const c_char, usize),
    userdata: *mut c_void,
}

/// The registered sink. Swapped atomically and never freed (a callback is set
/// a handful of times per process), so logging takes no lock and is safe in a
/// forked child.
static SINK: AtomicPtr<Sink> = AtomicPtr::new(std::ptr::null_mut());

struct CallbackLogger;

static LOGGER: CallbackLogger = CallbackLogger;

fn syslog_priority(level: log::Level) -> c_int {
    match level {
        log::Level::Error => CYRSYNC_LOG_ERR,
        log::Level::Warn => CYRSYNC_LOG_WARNING,
        // Cyrus logs its SYNCNOTICE and "Reprocessing" lines at LOG_NOTICE.
        log::Level::Info => CYRSYNC_LOG_NOTICE,
        log::Level::Debug => CYRSYNC_LOG_INFO,
        log::Level::Trace => CYRSYNC_LOG_DEBUG,
    }
}

fn level_filter(max_priority: c_int) -> log::LevelFilter {
    match max_priority {
        i32::MIN..=2 => log::LevelFilter::Off,
        3 => log::LevelFilter::Error,
        4 => log::LevelFilter::Warn,
        5 => log::LevelFilter::Info,
        6 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

impl log::Log for CallbackLogger {
    fn enabled(&self, _metadata: &log::Metadata) -> bool {
        !SINK.load(Ordering::Acquire).is_null()
    }

    fn log(&self, record: &log::Record) {
        let sink = SINK.load(Ordering::Acquire);
        // SAFETY: a published sink is never freed.
        let Some(sink) = (unsafe { sink.as_ref() }) else {
            return;
        };
        let text = record.args().to_string();
        // A NUL inside the message would cut it short in C: show it instead.
        let message = CString::new(text.replace('\0', "\\0")).unwrap_or_default();
        let len = message.as_bytes().len();
        // SAFETY: the host registered this callback for exactly this call.
        unsafe {
            (sink.callback)(
                sink.userdata,
                syslog_priority(record.level()),
                message.as_ptr(),
                len,
            )
        };
    }

    fn flush(&self) {}
}

/// Register (or, with a NULL `callback`, remove) the function that receives
/// cyrsync's log messages, with `userdata` passed back on every call.
/// Messages less severe than `max_level` (a syslog priority, e.g. LOG_INFO =
/// 6) are not formatted at all.
///
/// The first registration installs cyrsync's logger for the Rust `log`
/// facade; if another Rust component of the process already installed one,
/// cyrsync's messages go to that logger instead and this call still returns
/// OK. Thread-safe; meant to be called at start-up.
#[no_mangle]
pub extern "C" fn cyrsync_set_log_callback(
    callback: cyrsync_log_callback,
    userdata: *mut c_void,
    max_level: c_int,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_set_log_callback", {
        let new = match callback {
            Some(callback) => Box::into_raw(Box::new(Sink { callback, userdata })),
            None => std::ptr::null_mut(),
        };
        // The old sink is deliberately leaked: another thread may be using it.
        SINK.store(new, Ordering::Release);
        // Fails only when a logger is already installed; then that one
        // receives our messages (what a Rust host wants) and keeps its own
        // level, which is not ours to change.
        static OURS: OnceLock<bool> = OnceLock::new();
        if *OURS.get_or_init(|| log::set_logger(&LOGGER).is_ok()) {
            log::set_max_level(if new.is_null() {
                log::LevelFilter::Off
            } else {
                level_filter(max_level)
            });
        }
        cyrsync_status::Ok
    })
}
