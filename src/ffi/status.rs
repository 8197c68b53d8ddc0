//! The status every exported function returns.

use std::ffi::c_char;

/// Result of a cyrsync call.
///
/// Values are explicit and are never renumbered or reused: C callers may
/// store them, and a patched Cyrus built against an older header must keep
/// meaning the same thing. Ranges: 0-99 general and sync log, 100-199
/// sync_client, 200-299 barrier.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cyrsync_status {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullParameter = 1,
    /// An argument was out of range or malformed (see the log message).
    InvalidArgument = 2,
    /// cyrsync panicked (a bug); the call had no effect that can be relied on.
    Panic = 3,
    /// An I/O error (open, lock, write, rename, unlink, ...), see the log.
    IoError = 4,
    /// Nothing to do yet: the channel has no log file (Cyrus IMAP_AGAIN).
    Again = 5,
    /// The reader has no more items.
    Eof = 6,
    /// A name is longer than Cyrus allows in a sync log record.
    NameTooLong = 7,
    /// A name contains CR or LF, which a sync log record cannot carry.
    NameHasLineBreak = 8,
    /// A channel name is empty, contains '/' or is "." or "..".
    BadChannel = 9,
    /// The log file could not be locked (or kept being renamed under us).
    LockFailed = 10,
    /// The call is not valid in the object's current state.
    BadState = 11,
    /// Reader next: a line that does not parse was set aside (logged, and
    /// for a channel saved to `log-bad` beside the log); no item. Call next
    /// again: the items after it follow.
    SetAside = 12,
    /// Reader begin: another reader is working on this channel (one reader
    /// per channel); nothing was touched.
    Busy = 13,
    /// Reader end: the work file was kept for the next run (it was not read
    /// to the end, or a line set aside could not be saved); see the log.
    Kept = 14,
    /// A versioned struct from the caller (`cyrsync_syncclient_callbacks`)
    /// has a `version` this library does not know.
    BadVersion = 30,
    /// Barrier thaw: the freeze outlived its bound (writers were free to go
    /// in): the snapshot is NOT consistent.
    BarrierExpired = 200,
    /// Barrier thaw: writers went in during the freeze after their bound:
    /// the snapshot is NOT consistent.
    BarrierBreached = 201,
    /// Barrier freeze: the writers inside did not leave before the bound;
    /// the freeze was undone (nothing to thaw).
    BarrierDrainTimeout = 202,
    /// Barrier leave without a matching enter in this process.
    BarrierNotHeld = 203,
    /// Barrier freeze: another live process (or this handle) already holds
    /// the freeze.
    BarrierAlreadyFrozen = 204,
    /// Barrier freeze by a process that is itself inside the barrier (it
    /// would wait for itself; Cyrus: IMAP_MAILBOX_LOCKED).
    BarrierHeld = 205,
    /// Barrier open: every slot is owned by a live process.
    BarrierNoSlot = 206,
    /// Barrier open: the barrier file is not one this version understands.
    BarrierBadFile = 207,
    /// Barrier thaw: the freeze had been cleared or taken over by another
    /// process: the snapshot is NOT consistent.
    BarrierLost = 208,
    /// Barrier open: the barrier file could not be allocated (its file
    /// system is full or over quota); nothing was created.
    BarrierNoSpace = 209,
    /// Barrier thaw: the barrier file was removed or replaced while writers
    /// had it open (they may have written through another file): the
    /// snapshot is NOT consistent. Barrier calls of a process whose file was
    /// replaced also return it where they cannot go on.
    BarrierReplaced = 210,
    /// Barrier enter with a timeout: the barrier stayed frozen for the whole
    /// timeout; the caller is NOT inside (nothing to leave). Cyrus:
    /// IMAP_MAILBOX_LOCKED.
    BarrierFrozen = 211,
}

impl cyrsync_status {
    /// Convert an integer that came in from C; unknown values give `None`.
    pub fn from_u32(value: u32) -> Option<Self> {
        use cyrsync_status::*;
        Some(match value {
            0 => Ok,
            1 => NullParameter,
            2 => InvalidArgument,
            3 => Panic,
            4 => IoError,
            5 => Again,
            6 => Eof,
            7 => NameTooLong,
            8 => NameHasLineBreak,
            9 => BadChannel,
            10 => LockFailed,
            11 => BadState,
            12 => SetAside,
            13 => Busy,
            14 => Kept,
            30 => BadVersion,
            200 => BarrierExpired,
            201 => BarrierBreached,
            202 => BarrierDrainTimeout,
            203 => BarrierNotHeld,
            204 => BarrierAlreadyFrozen,
            205 => BarrierHeld,
            206 => BarrierNoSlot,
            207 => BarrierBadFile,
            208 => BarrierLost,
            209 => BarrierNoSpace,
            210 => BarrierReplaced,
            211 => BarrierFrozen,
            _ => return None,
        })
    }

    /// A static, NUL-terminated description.
    pub fn as_cstr(self) -> &'static std::ffi::CStr {
        use cyrsync_status::*;
        match self {
            Ok => c"ok",
            NullParameter => c"a required pointer argument was NULL",
            InvalidArgument => c"invalid argument",
            Panic => c"internal error (panic caught at the C boundary)",
            IoError => c"I/O error",
            Again => c"no log to process yet",
            Eof => c"end of log",
            NameTooLong => c"name too long for a sync log record",
            NameHasLineBreak => c"name contains a line break",
            BadChannel => c"invalid sync log channel name",
            LockFailed => c"could not lock the log file",
            BadState => c"call not valid in the current state",
            SetAside => c"a line that does not parse was set aside",
            Busy => c"another reader is working on this channel",
            Kept => c"the work file was kept for the next run",
            BadVersion => c"unknown version of a struct passed in",
            BarrierExpired => c"inconsistent freeze: the freeze outlived its bound",
            BarrierBreached => c"inconsistent freeze: writers went in during the freeze",
            BarrierDrainTimeout => c"could not freeze: writers did not drain within the bound",
            BarrierNotHeld => c"barrier not held by this process",
            BarrierAlreadyFrozen => c"barrier already frozen",
            BarrierHeld => c"cannot freeze while inside the barrier",
            BarrierNoSlot => c"no free barrier slot",
            BarrierBadFile => c"not a usable barrier file",
            BarrierLost => c"inconsistent freeze: the freeze was taken over",
            BarrierNoSpace => c"cannot allocate the barrier file: file system full or over quota",
            BarrierReplaced => {
                c"inconsistent freeze: the barrier file was removed or replaced under its writers"
            }
            BarrierFrozen => c"barrier frozen: not entered within the timeout",
        }
    }
}

/// Describe a status as a static NUL-terminated string.
///
/// `status` is taken as an integer so that any value C passes is safe; an
/// unknown value gives "unknown status". The returned pointer is never NULL
/// and stays valid for the life of the process. Thread-safe.
#[no_mangle]
pub extern "C" fn cyrsync_status_str(status: u32) -> *const c_char {
    match cyrsync_status::from_u32(status) {
        Some(s) => s.as_cstr().as_ptr(),
        None => c"unknown status".as_ptr(),
    }
}
