//! C API of the sync log (see [`crate::synclog`]).
//!
//! Two handle types:
//!
//! * `cyrsync_synclog` — a writer configured like Cyrus's `sync_log_init`.
//!   Created by `cyrsync_synclog_new`, owned by the caller, freed with
//!   `cyrsync_synclog_free`. Thread-safe: any thread may log through it at
//!   once, except that the rightnow functions must not race with logging on
//!   the same handle.
//! * `cyrsync_synclog_reader` — a reader as `sync_log_reader_*`. Owned by the
//!   caller, freed with `cyrsync_synclog_reader_free`. Not thread-safe: use
//!   it from one thread at a time.

use std::ffi::{c_char, c_int, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{
    cyrsync_status, ffi_boundary, free_handle, into_handle, set_out, try_bytes, try_mut, try_ref,
    Handle,
};
use crate::synclog::{self, Begun, Config, Entry, Error, FmtArg, Reader, RecordKind, Writer};

/// `sync_log` is on (imapd.conf `sync_log`); without it
/// `cyrsync_synclog_log` writes to no channel (but still fills the rightnow
/// buffer), as in Cyrus.
pub const CYRSYNC_SYNCLOG_ENABLED: u32 = 1;
/// `sync_rightnow_channel` is set: keep every `cyrsync_synclog_log` line in
/// memory for `cyrsync_synclog_rightnow`.
pub const CYRSYNC_SYNCLOG_RIGHTNOW: u32 = 2;
/// Hold the file lock until the record is on disk, exactly as Cyrus's C
/// code does (slower under concurrency; for comparison).
pub const CYRSYNC_SYNCLOG_FLUSH_UNDER_LOCK: u32 = 4;

/// Record kinds for `cyrsync_synclog_record` (the `sync_log_*` macros);
/// the values of `synclog::RecordKind`, checked by a test.
pub const CYRSYNC_RECORD_USER: u32 = 1;
pub const CYRSYNC_RECORD_UNUSER: u32 = 2;
pub const CYRSYNC_RECORD_META: u32 = 3;
pub const CYRSYNC_RECORD_APPEND: u32 = 4;
pub const CYRSYNC_RECORD_MAILBOX: u32 = 5;
pub const CYRSYNC_RECORD_UNMAILBOX: u32 = 6;
pub const CYRSYNC_RECORD_DOUBLEMAILBOX: u32 = 7;
pub const CYRSYNC_RECORD_RENAME: u32 = 8;
pub const CYRSYNC_RECORD_QUOTA: u32 = 9;
pub const CYRSYNC_RECORD_ANNOTATION: u32 = 10;
pub const CYRSYNC_RECORD_SEEN: u32 = 11;
pub const CYRSYNC_RECORD_SUB: u32 = 12;
pub const CYRSYNC_RECORD_UNSUB: u32 = 13;

/// Argument kinds of `cyrsync_fmt_arg`.
pub const CYRSYNC_FMT_ARG_STR: u32 = 1;
pub const CYRSYNC_FMT_ARG_INT: u32 = 2;
/// Most arguments one format may use.
pub const CYRSYNC_FMT_MAX_ARGS: usize = 16;

/// One argument of a printf-style record, for the non-variadic
/// `cyrsync_synclog_log_argv`: `kind` is `CYRSYNC_FMT_ARG_STR` (`str`, a
/// NUL-terminated name; NULL is written as `""`, as in Cyrus) or
/// `CYRSYNC_FMT_ARG_INT` (`integer`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cyrsync_fmt_arg {
    pub kind: u32,
    pub integer: c_int,
    pub str: *const c_char,
}

/// A record returned by `cyrsync_synclog_reader_next`. Every pointer is
/// NUL-terminated, `*_len` excludes the NUL; `arg2` is NULL when the record
/// has one argument. Valid until the next call on the same reader.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cyrsync_synclog_item {
    pub r#type: *const c_char,
    pub type_len: usize,
    pub arg1: *const c_char,
    pub arg1_len: usize,
    pub arg2: *const c_char,
    pub arg2_len: usize,
}

/// A sync log writer (opaque), configured like Cyrus's `sync_log_init`.
///
/// Created by `cyrsync_synclog_new`; the caller owns it and frees it with
/// `cyrsync_synclog_free`. Thread-safe: any number of threads may log
/// through one writer at once (each append opens, locks and closes the log
/// file itself, so processes and threads never interleave records), except
/// that `cyrsync_synclog_rightnow`'s pointer must not be used while another
/// thread logs or resets. Fork-safe: a child may keep using its copy.
#[allow(non_camel_case_types)]
pub struct cyrsync_synclog {
    _private: [u8; 0],
}

/// A sync log reader (opaque), as Cyrus's `sync_log_reader_t`.
///
/// Created by one of the `cyrsync_synclog_reader_new_*` functions; the
/// caller owns it and frees it with `cyrsync_synclog_reader_free`. Not
/// thread-safe: use it from one thread at a time. Items it returns point
/// into it and are valid until the next call on it.
#[allow(non_camel_case_types)]
pub struct cyrsync_synclog_reader {
    _private: [u8; 0],
}

/// The reader plus NUL-terminated copies of the current item's fields.
pub(crate) struct ReaderState {
    reader: Reader,
    item: [Vec<u8>; 3],
    work_file: Option<std::ffi::CString>,
}

// SAFETY: zero-sized, never constructed, only used through the handle helpers.
unsafe impl Handle for cyrsync_synclog {
    type Inner = Writer;
}
// SAFETY: as above.
unsafe impl Handle for cyrsync_synclog_reader {
    type Inner = ReaderState;
}

/// The status of an error.
fn status_of_error(e: &Error) -> cyrsync_status {
    match e {
        Error::NameHasLineBreak => cyrsync_status::NameHasLineBreak,
        Error::NameHasNul | Error::BadFormat(_) => cyrsync_status::InvalidArgument,
        Error::NameTooLong { .. } => cyrsync_status::NameTooLong,
        Error::BadChannel(_) => cyrsync_status::BadChannel,
        Error::Io { .. } => cyrsync_status::IoError,
        Error::LockRetries { .. } => cyrsync_status::LockFailed,
        Error::BadState(_) => cyrsync_status::BadState,
        Error::Busy { .. } => cyrsync_status::Busy,
        Error::Kept { .. } => cyrsync_status::Kept,
        Error::Append { cause, .. } => status_of_error(cause),
    }
}

/// Map an error to a status, logging it in Cyrus's vocabulary.
fn report(context: &str, e: &Error) -> cyrsync_status {
    match e {
        // not a failure of the caller's: the next run reads it again
        Error::Kept { .. } => log::warn!("{context}: {e}"),
        // the reader says it once per wait
        Error::Busy { .. } => log::debug!("{context}: {e}"),
        _ => log::error!("IOERROR: {context}: {e}"),
    }
    status_of_error(e)
}

fn status_of(context: &str, r: Result<(), Error>) -> cyrsync_status {
    match r {
        Ok(()) => cyrsync_status::Ok,
        Err(e) => report(context, &e),
    }
}

/// `NULL` or a NUL-terminated name.
unsafe fn opt_bytes<'a>(p: *const c_char) -> Option<&'a [u8]> {
    unsafe { super::c_bytes(p) }
}

/// Create a sync log writer configured as Cyrus's `sync_log_init`.
///
/// * `config_dir`: imapd.conf `configdirectory` (required);
/// * `channels`: the raw `sync_log_channels` value, split on spaces, where
///   `""` stands for the default channel; NULL means the default channel
///   only;
/// * `unsuppressable`: the raw `sync_log_unsuppressable_channels` value, or
///   NULL;
/// * `flags`: `CYRSYNC_SYNCLOG_*` bits.
///
/// On success `*out` owns a new writer, to be freed with
/// `cyrsync_synclog_free`. Unknown flag bits or a channel name with `/`, or
/// equal to `.` or `..`, are refused.
#[no_mangle]
pub extern "C" fn cyrsync_synclog_new(
    config_dir: *const c_char,
    channels: *const c_char,
    unsuppressable: *const c_char,
    flags: u32,
    out: *mut *mut cyrsync_synclog,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_synclog_new", {
        let config_dir = try_bytes!(config_dir);
        if out.is_null() {
            return super::null_parameter("out");
        }
        let known =
            CYRSYNC_SYNCLOG_ENABLED | CYRSYNC_SYNCLOG_RIGHTNOW | CYRSYNC_SYNCLOG_FLUSH_UNDER_LOCK;
        if flags & !known != 0 {
            log::error!("IOERROR: cyrsync_synclog_new: unknown flags flags=<{flags:#x}>");
            return cyrsync_status::InvalidArgument;
        }
        let config_dir = match super::config_dir_path(config_dir, "cyrsync_synclog_new") {
            Ok(dir) => dir,
            Err(status) => return status,
        };
        let config = Config::from_options(
            config_dir,
            unsafe { opt_bytes(channels) },
            unsafe { opt_bytes(unsuppressable) },
            flags & CYRSYNC_SYNCLOG_ENABLED != 0,
            flags & CYRSYNC_SYNCLOG_RIGHTNOW != 0,
        )
        .map(|mut c| {
            if flags & CYRSYNC_SYNCLOG_FLUSH_UNDER_LOCK != 0 {
                c.flush = synclog::FlushMode::UnderLock;
            }
            c
        })
        .and_then(Writer::new);
        match config {
            Ok(writer) => {
                unsafe { set_out(out, into_handle(writer)) };
                cyrsync_status::Ok
            }
            Err(e) => report("cyrsync_synclog_new", &e),
        }
    })
}

/// Free a writer. NULL is a no-op; the handle must not be used afterwards.
#[no_mangle]
pub extern "C" fn cyrsync_synclog_free(log: *mut cyrsync_synclog) {
    ffi_boundary!("cyrsync_synclog_free", { unsafe { free_handle(log) } })
}

/// `sync_log_suppress`: from now on `cyrsync_synclog_log` writes only to
/// the unsuppressable channels. Thread-safe.
#[no_mangle]
pub extern "C" fn cyrsync_synclog_suppress(log: *const cyrsync_synclog) -> cyrsync_status {
    ffi_boundary!("cyrsync_synclog_suppress", {
        try_ref!(log).suppress();
        cyrsync_status::Ok
    })
}

/// Expand a format and its arguments into the line(s) to write.
unsafe fn expand(fmt: &[u8], args: *const cyrsync_fmt_arg, nargs: usize) -> Result<Vec<u8>, Error> {
    if nargs > CYRSYNC_FMT_MAX_ARGS {
        return Err(Error::BadFormat("too many arguments"));
    }
    debug_assert!(nargs == 0 || !args.is_null(), "checked by the callers");
    let raw = if nargs == 0 {
        &[][..]
    } else {
        unsafe { std::slice::from_raw_parts(args, nargs) }
    };
    let mut converted = Vec::with_capacity(nargs);
    for a in raw {
        converted.push(match a.kind {
            CYRSYNC_FMT_ARG_STR => FmtArg::Str(unsafe { opt_bytes(a.str) }),
            CYRSYNC_FMT_ARG_INT => FmtArg::Int(a.integer),
            _ => return Err(Error::BadFormat("unknown argument kind")),
        });
    }
    synclog::format_line(fmt, &converted)
}

/// `sync_log(fmt, ...)` without varargs: append to every enabled channel
/// (and the rightnow buffer). `%s` takes a `CYRSYNC_FMT_ARG_STR` (quoted as
/// Cyrus quotes names), `%d` a `CYRSYNC_FMT_ARG_INT`; a missing final
/// newline is added. Nothing is written when the format or a name is bad.
/// When one channel fails the others are still written, and the first
/// failure is returned. The record is on disk when this returns OK.
#[no_mangle]
pub extern "C" fn cyrsync_synclog_log_argv(
    log: *const cyrsync_synclog,
    fmt: *const c_char,
    args: *const cyrsync_fmt_arg,
    nargs: usize,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_synclog_log_argv", {
        let writer = try_ref!(log);
        let fmt = try_bytes!(fmt);
        if nargs > 0 && args.is_null() {
            return super::null_parameter("args");
        }
        status_of(
            "sync_log",
            unsafe { expand(fmt, args, nargs) }.and_then(|line| writer.log_all(&line)),
        )
    })
}

/// `sync_log_channel(channel, fmt, ...)` without varargs: append to one
/// channel (NULL: the default channel), whether or not the log is enabled
/// or suppressed, as in Cyrus. Arguments as `cyrsync_synclog_log_argv`.
#[no_mangle]
pub extern "C" fn cyrsync_synclog_log_channel_argv(
    log: *const cyrsync_synclog,
    channel: *const c_char,
    fmt: *const c_char,
    args: *const cyrsync_fmt_arg,
    nargs: usize,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_synclog_log_channel_argv", {
        let writer = try_ref!(log);
        let fmt = try_bytes!(fmt);
        if nargs > 0 && args.is_null() {
            return super::null_parameter("args");
        }
        let channel = unsafe { opt_bytes(channel) };
        status_of(
            "sync_log_channel",
            unsafe { expand(fmt, args, nargs) }.and_then(|line| writer.log_channel(channel, &line)),
        )
    })
}

fn record_kind(kind: u32) -> Result<RecordKind, Error> {
    RecordKind::from_u32(kind).ok_or(Error::BadFormat("unknown record kind"))
}

/// Append a typed record (`CYRSYNC_RECORD_*`) to every enabled channel, as
/// the `sync_log_user`, `sync_log_mailbox`, ... macros do. `name2` is
/// required for DOUBLEMAILBOX, RENAME, SEEN, SUB and UNSUB and must be NULL
/// otherwise. RENAME writes `RENAME a b`, `MAILBOX a`, `MAILBOX b` in one
/// write. Nothing is written when a name is bad.
#[no_mangle]
pub extern "C" fn cyrsync_synclog_record(
    log: *const cyrsync_synclog,
    kind: u32,
    name1: *const c_char,
    name2: *const c_char,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_synclog_record", {
        let writer = try_ref!(log);
        let name1 = try_bytes!(name1);
        let name2 = unsafe { opt_bytes(name2) };
        status_of(
            "sync_log",
            record_kind(kind).and_then(|k| writer.record_all(k, name1, name2)),
        )
    })
}

/// As `cyrsync_synclog_record`, to one channel (NULL: the default channel),
/// as the `sync_log_channel_*` macros do.
#[no_mangle]
pub extern "C" fn cyrsync_synclog_record_channel(
    log: *const cyrsync_synclog,
    channel: *const c_char,
    kind: u32,
    name1: *const c_char,
    name2: *const c_char,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_synclog_record_channel", {
        let writer = try_ref!(log);
        let name1 = try_bytes!(name1);
        let name2 = unsafe { opt_bytes(name2) };
        let channel = unsafe { opt_bytes(channel) };
        status_of(
            "sync_log_channel",
            record_kind(kind).and_then(|k| writer.append(channel, k, name1, name2)),
        )
    })
}

/// The rightnow buffer: every line `cyrsync_synclog_log` wrote since the
/// last reset (empty, with `*len` = 0, when there is none or the
/// `CYRSYNC_SYNCLOG_RIGHTNOW` flag is off). `*out` points into the writer
/// and stays valid until the next log, record or reset call on this handle,
/// or its free; it is not NUL-terminated.
#[no_mangle]
pub extern "C" fn cyrsync_synclog_rightnow(
    log: *const cyrsync_synclog,
    out: *mut *const c_char,
    len: *mut usize,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_synclog_rightnow", {
        let writer = try_ref!(log);
        if out.is_null() || len.is_null() {
            return super::null_parameter("out/len");
        }
        writer.with_rightnow(|bytes| unsafe {
            set_out(out, bytes.as_ptr().cast());
            set_out(len, bytes.len());
        });
        cyrsync_status::Ok
    })
}

/// Empty the rightnow buffer (what `sync_log_reset` does to it). Logs
/// nothing: whether the content "leaked" is for the caller to say, since a
/// host that copies the buffer out after every record (Cyrus's shim) drains
/// it here on purpose.
#[no_mangle]
pub extern "C" fn cyrsync_synclog_rightnow_reset(log: *const cyrsync_synclog) -> cyrsync_status {
    ffi_boundary!("cyrsync_synclog_rightnow_reset", {
        try_ref!(log).take_rightnow();
        cyrsync_status::Ok
    })
}

fn new_reader(reader: Reader, out: *mut *mut cyrsync_synclog_reader) -> cyrsync_status {
    let work_file = reader
        .work_file()
        .map(|p| std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap_or_default());
    let state = ReaderState {
        reader,
        item: Default::default(),
        work_file,
    };
    unsafe { set_out(out, into_handle(state)) };
    cyrsync_status::Ok
}

/// A reader for a channel's log (`channel` NULL: the default channel), as
/// `sync_log_reader_create_with_channel`. Free with
/// `cyrsync_synclog_reader_free`.
#[no_mangle]
pub extern "C" fn cyrsync_synclog_reader_new_channel(
    config_dir: *const c_char,
    channel: *const c_char,
    out: *mut *mut cyrsync_synclog_reader,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_synclog_reader_new_channel", {
        let config_dir = try_bytes!(config_dir);
        if out.is_null() {
            return super::null_parameter("out");
        }
        let config_dir =
            match super::config_dir_path(config_dir, "cyrsync_synclog_reader_new_channel") {
                Ok(dir) => dir,
                Err(status) => return status,
            };
        let channel = unsafe { opt_bytes(channel) };
        match Reader::for_channel(config_dir, channel) {
            Ok(r) => new_reader(r, out),
            Err(e) => report("cyrsync_synclog_reader_new_channel", &e),
        }
    })
}

/// A reader for a saved log file (`sync_client -f`), as
/// `sync_log_reader_create_with_filename`; the file is never unlinked.
#[no_mangle]
pub extern "C" fn cyrsync_synclog_reader_new_file(
    path: *const c_char,
    out: *mut *mut cyrsync_synclog_reader,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_synclog_reader_new_file", {
        let path = try_bytes!(path);
        if out.is_null() {
            return super::null_parameter("out");
        }
        new_reader(Reader::for_file(Path::new(OsStr::from_bytes(path))), out)
    })
}

/// A reader for an open descriptor (a file or a pipe), which stays the
/// caller's: never closed by cyrsync. Unlike Cyrus's C reader, whose `begin`
/// fails on such a reader, this one works.
#[no_mangle]
pub extern "C" fn cyrsync_synclog_reader_new_fd(
    fd: c_int,
    out: *mut *mut cyrsync_synclog_reader,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_synclog_reader_new_fd", {
        if out.is_null() {
            return super::null_parameter("out");
        }
        if fd < 0 {
            log::error!("IOERROR: cyrsync_synclog_reader_new_fd: bad descriptor fd=<{fd}>");
            return cyrsync_status::InvalidArgument;
        }
        new_reader(Reader::for_fd(fd), out)
    })
}

/// A reader over `len` bytes at `content`, which are copied (the caller
/// may free them at once), as `sync_log_reader_create_with_content`.
#[no_mangle]
pub extern "C" fn cyrsync_synclog_reader_new_content(
    content: *const c_char,
    len: usize,
    out: *mut *mut cyrsync_synclog_reader,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_synclog_reader_new_content", {
        if out.is_null() || (content.is_null() && len > 0) {
            return super::null_parameter("content/out");
        }
        let bytes = if len == 0 {
            Vec::new()
        } else {
            unsafe { std::slice::from_raw_parts(content.cast::<u8>(), len) }.to_vec()
        };
        new_reader(Reader::for_content(bytes), out)
    })
}

/// Free a reader without unlinking anything (a channel's `log-run` stays to
/// be reprocessed). NULL is a no-op.
#[no_mangle]
pub extern "C" fn cyrsync_synclog_reader_free(reader: *mut cyrsync_synclog_reader) {
    ffi_boundary!("cyrsync_synclog_reader_free", {
        unsafe { free_handle(reader) }
    })
}

/// Start reading, as `sync_log_reader_begin`: OK; AGAIN when a channel has
/// no log yet (Cyrus's `IMAP_AGAIN`); IO_ERROR (Cyrus's `IMAP_IOERROR`).
/// A channel reader reprocesses a `log-run` left by an earlier run before it
/// takes the next `log`.
#[no_mangle]
pub extern "C" fn cyrsync_synclog_reader_begin(
    reader: *mut cyrsync_synclog_reader,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_synclog_reader_begin", {
        let state = try_mut!(reader);
        match state.reader.begin() {
            Ok(Begun::Ready) => cyrsync_status::Ok,
            Ok(Begun::NoLog) => cyrsync_status::Again,
            Err(e) => report("sync_log_reader_begin", &e),
        }
    })
}

/// The next record into `*item`: OK, or EOF when there are no more (also
/// when `begin` was not called). The item's pointers stay valid until the
/// next call on this reader.
#[no_mangle]
pub extern "C" fn cyrsync_synclog_reader_next(
    reader: *mut cyrsync_synclog_reader,
    item: *mut cyrsync_synclog_item,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_synclog_reader_next", {
        let state = try_mut!(reader);
        if item.is_null() {
            return super::null_parameter("item");
        }
        let next = match state.reader.next_entry() {
            Ok(Some(Entry::Item(item))) => item,
            Ok(Some(Entry::SetAside { .. })) => return cyrsync_status::SetAside,
            Ok(None) => return cyrsync_status::Eof,
            Err(e) => return report("sync_log_reader_getitem", &e),
        };
        let has2 = next.arg2.is_some();
        for (buf, field) in
            state
                .item
                .iter_mut()
                .zip([next.kind, next.arg1, next.arg2.unwrap_or_default()])
        {
            buf.clear();
            buf.extend_from_slice(field);
            buf.push(0);
        }
        let [t, a1, a2] = &state.item;
        let out = cyrsync_synclog_item {
            r#type: t.as_ptr().cast(),
            type_len: t.len() - 1,
            arg1: a1.as_ptr().cast(),
            arg1_len: a1.len() - 1,
            arg2: if has2 {
                a2.as_ptr().cast()
            } else {
                std::ptr::null()
            },
            arg2_len: if has2 { a2.len() - 1 } else { 0 },
        };
        unsafe { set_out(item, out) };
        cyrsync_status::Ok
    })
}

/// Finish reading, as `sync_log_reader_end`: close the file and, for a
/// channel reader, unlink `log-run`. OK when not begun.
#[no_mangle]
pub extern "C" fn cyrsync_synclog_reader_end(
    reader: *mut cyrsync_synclog_reader,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_synclog_reader_end", {
        status_of("sync_log_reader_end", try_mut!(reader).reader.end())
    })
}

/// The file the reader reads: a channel's `log-run` or the file given;
/// NULL for descriptor and memory readers. Valid as long as the reader.
#[no_mangle]
pub extern "C" fn cyrsync_synclog_reader_work_file(
    reader: *const cyrsync_synclog_reader,
) -> *const c_char {
    ffi_boundary!("cyrsync_synclog_reader_work_file", {
        let state = try_ref!(reader);
        state
            .work_file
            .as_ref()
            .map_or(std::ptr::null(), |c| c.as_ptr())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_constants_match_kinds() {
        let constants = [
            CYRSYNC_RECORD_USER,
            CYRSYNC_RECORD_UNUSER,
            CYRSYNC_RECORD_META,
            CYRSYNC_RECORD_APPEND,
            CYRSYNC_RECORD_MAILBOX,
            CYRSYNC_RECORD_UNMAILBOX,
            CYRSYNC_RECORD_DOUBLEMAILBOX,
            CYRSYNC_RECORD_RENAME,
            CYRSYNC_RECORD_QUOTA,
            CYRSYNC_RECORD_ANNOTATION,
            CYRSYNC_RECORD_SEEN,
            CYRSYNC_RECORD_SUB,
            CYRSYNC_RECORD_UNSUB,
        ];
        for c in constants {
            let kind = RecordKind::from_u32(c).unwrap();
            assert_eq!(kind as u32, c);
        }
        assert_eq!(CYRSYNC_RECORD_USER, RecordKind::User as u32);
        assert_eq!(CYRSYNC_RECORD_UNSUB, RecordKind::Unsub as u32);
    }
}
