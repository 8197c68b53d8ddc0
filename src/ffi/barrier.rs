//! C API of the global write barrier (see `crate::barrier`).
//!
//! Two ways to use it:
//!
//! * a handle: `cyrsync_barrier_open` ... `cyrsync_barrier_free`;
//! * the process-global barrier, for code that cannot pass a handle around
//!   (Cyrus's `mboxname_lock`): `cyrsync_barrier_global_init` once, then
//!   `cyrsync_barrier_global_enter` / `_leave` / `_depth`; and
//!   `cyrsync_barrier_global()` for the freeze and status calls.
//!
//! A patched Cyrus calls `cyrsync_barrier_global_enter` in `mboxname_lock`
//! where it took the shared `$GLOBAL` lock, `cyrsync_barrier_global_leave`
//! in `mboxname_release` where it dropped it, and in
//! `mboxname_run_with_lock` `cyrsync_barrier_freeze` / `cyrsync_barrier_thaw`
//! on `cyrsync_barrier_global()`.

// C types keep C names; exported functions take raw pointers by design (the
// checks are the try_* macros), as in the other ffi modules.
#![allow(non_camel_case_types, clippy::not_unsafe_ptr_arg_deref)]

use std::ffi::{c_char, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use super::{ffi_boundary, free_handle, into_handle, set_out, try_bytes, try_ref, Handle};
use crate::barrier::{Barrier, BarrierError, Entered, FreezeToken, DEFAULT_MAX_FREEZE};
use crate::ffi::cyrsync_status;

/// A process's handle on an instance's global write barrier (opaque).
///
/// Created by `cyrsync_barrier_open`, freed by `cyrsync_barrier_free`.
/// Thread-safe: one handle may be used by any number of threads at once;
/// the enter depth is per process, shared by its threads (a thread may leave
/// what another entered). A thread that holds the barrier nests at once; a
/// thread that holds nothing waits during a freeze even if other threads of
/// its process are inside. After fork(2) the child may keep using the handle:
/// it takes its own slot on first use and starts with depth 0 (it does not
/// hold what its parent holds).
pub struct cyrsync_barrier {
    _private: [u8; 0],
}

// SAFETY: zero-sized, never constructed; pointers to it are Box<Barrier>.
unsafe impl Handle for cyrsync_barrier {
    type Inner = Barrier;
}

/// A freeze in progress (opaque), from `cyrsync_barrier_freeze`; consumed by
/// `cyrsync_barrier_thaw`. Not freed any other way.
pub struct cyrsync_barrier_frozen {
    _private: [u8; 0],
}

// SAFETY: zero-sized, never constructed; pointers to it are
// Box<FreezeToken<'static>> (the handle outlives it by contract).
unsafe impl Handle for cyrsync_barrier_frozen {
    type Inner = FreezeToken<'static>;
}

/// The barrier's shared state, filled by `cyrsync_barrier_status`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct cyrsync_barrier_state {
    /// A freeze is in force (possibly expired).
    pub frozen: bool,
    /// The current freeze outlived its bound: writers go in.
    pub expired: bool,
    /// A live process holds the freeze.
    pub freezer_alive: bool,
    /// Pid of the last freezer.
    pub freezer_pid: u32,
    /// Milliseconds since the freeze started (0 if not frozen).
    pub frozen_for_ms: u64,
    /// Milliseconds left before the freeze's deadline (0 if not frozen).
    pub remaining_ms: u64,
    /// Writers that went in past a freeze's bound, ever.
    pub breaches: u64,
    /// Successful freezes, ever.
    pub freezes: u64,
    /// Slots in the file (processes that can have it open at once).
    pub slot_count: u32,
    /// Slots owned by a live process.
    pub live_slots: u32,
    /// Slots whose process is inside the barrier (depth > 0).
    pub inside_slots: u32,
    /// Processes without a slot of their own (all were taken when they
    /// opened) that are inside the barrier.
    pub overflow_inside: u32,
}

/// Map an error to its status and log it in Cyrus's vocabulary.
fn report(function: &str, error: &BarrierError) -> cyrsync_status {
    use cyrsync_status as S;
    let status = match error {
        BarrierError::Io { .. } => S::IoError,
        BarrierError::BadFile { .. } => S::BarrierBadFile,
        BarrierError::NoSpace { .. } => S::BarrierNoSpace,
        BarrierError::InUse { .. } => S::BadState,
        BarrierError::Replaced { .. } => S::BarrierReplaced,
        BarrierError::NoSlot { .. } => S::BarrierNoSlot,
        BarrierError::NotHeld => S::BarrierNotHeld,
        BarrierError::TooDeep => S::InvalidArgument,
        BarrierError::Held { .. } => S::BarrierHeld,
        BarrierError::AlreadyFrozen { .. } => S::BarrierAlreadyFrozen,
        BarrierError::DrainTimeout { .. } => S::BarrierDrainTimeout,
        BarrierError::ForeignToken => S::InvalidArgument,
        BarrierError::Frozen { .. } => {
            // The answer the caller asked for, not a failure: no IOERROR.
            log::debug!("{function}: {error}");
            return S::BarrierFrozen;
        }
    };
    log::error!("IOERROR: {function}: {error}");
    status
}

fn max_from_ms(ms: u32) -> Duration {
    if ms == 0 {
        DEFAULT_MAX_FREEZE
    } else {
        Duration::from_millis(ms.into())
    }
}

fn open_dir(
    function: &str,
    dir: &[u8],
    max_freeze_ms: u32,
    slots: u32,
) -> Result<Barrier, cyrsync_status> {
    if dir.is_empty() {
        log::error!("IOERROR: {function}: empty lock directory");
        return Err(cyrsync_status::InvalidArgument);
    }
    Barrier::open_with_slots(
        Path::new(OsStr::from_bytes(dir)),
        max_from_ms(max_freeze_ms),
        slots,
    )
    .map_err(|e| report(function, &e))
}

/// Open the barrier of the instance whose lock directory is `lock_dir`
/// (Cyrus: `<configdirectory>/lock`; the directory and the file
/// `cyrsync-barrier` in it are created if missing) and take a slot for this
/// process.
///
/// `max_freeze_ms` bounds how long this process ever waits for a freeze
/// (0 means the default, 5000). On success `*out` receives a handle the
/// caller owns and frees with `cyrsync_barrier_free`. `lock_dir` is
/// borrowed for the call only. Thread-safe.
///
/// A missing file is created complete, its blocks allocated, so that no
/// later store to it can fail (SIGBUS) on a full disk: if they cannot be
/// allocated, BARRIER_NO_SPACE and no file. An existing file that is not a
/// valid barrier (short, damaged, foreign, another version, wrong size) is
/// never rewritten: BARRIER_BAD_FILE, logged with the file and the fix
/// (`cyrsync barrier reset`, with Cyrus stopped). With every slot taken by
/// live processes, this process still opens and works, through a slower
/// path (two system calls per outermost enter/leave).
///
/// Returns OK, NULL_PARAMETER, INVALID_ARGUMENT (empty path), IO_ERROR,
/// BARRIER_NO_SPACE or BARRIER_BAD_FILE.
#[no_mangle]
pub extern "C" fn cyrsync_barrier_open(
    lock_dir: *const c_char,
    max_freeze_ms: u32,
    out: *mut *mut cyrsync_barrier,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_barrier_open", {
        cyrsync_barrier_open_slots(lock_dir, max_freeze_ms, 0, out)
    })
}

/// `cyrsync_barrier_open`, creating a missing barrier file with
/// `slot_count` slots (0: the default, 16384; at most 1048576, else
/// INVALID_ARGUMENT): the number
/// of processes that can have the barrier open with a slot of their own
/// (more still work, through the overflow path). An existing file keeps
/// its own count (change it with `cyrsync barrier reset --slots`).
#[no_mangle]
pub extern "C" fn cyrsync_barrier_open_slots(
    lock_dir: *const c_char,
    max_freeze_ms: u32,
    slot_count: u32,
    out: *mut *mut cyrsync_barrier,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_barrier_open_slots", {
        let dir = try_bytes!(lock_dir);
        if out.is_null() {
            return super::null_parameter("out");
        }
        if slot_count > crate::barrier::MAX_SLOT_COUNT {
            log::error!(
                "IOERROR: cyrsync_barrier_open_slots: too many slots: slot_count=<{slot_count}> max=<{}>",
                crate::barrier::MAX_SLOT_COUNT
            );
            return cyrsync_status::InvalidArgument;
        }
        match open_dir("cyrsync_barrier_open", dir, max_freeze_ms, slot_count) {
            Ok(barrier) => {
                // SAFETY: checked non-NULL; the caller gave a writable pointer.
                unsafe { set_out(out, into_handle::<cyrsync_barrier>(barrier)) };
                cyrsync_status::Ok
            }
            Err(status) => status,
        }
    })
}

fn enter(function: &str, barrier: &Barrier) -> cyrsync_status {
    match barrier.enter() {
        Ok(Entered::Entered | Entered::Nested | Entered::Breached) => cyrsync_status::Ok,
        Err(e) => report(function, &e),
    }
}

fn enter_timeout(function: &str, barrier: &Barrier, timeout_ms: u32) -> cyrsync_status {
    match barrier.enter_timeout(Duration::from_millis(timeout_ms.into())) {
        Ok(Entered::Entered | Entered::Nested | Entered::Breached) => cyrsync_status::Ok,
        Err(e) => report(function, &e),
    }
}

fn leave(function: &str, barrier: &Barrier) -> cyrsync_status {
    match barrier.leave() {
        Ok(()) => cyrsync_status::Ok,
        Err(e) => report(function, &e),
    }
}

/// Enter the barrier (take it shared). Nestable: every enter needs one
/// `cyrsync_barrier_leave`. Without a freeze this costs a few atomic
/// operations and no system call. During a freeze it waits until the thaw,
/// but never longer than the handle's bound: then it goes in anyway (logged;
/// the freezer's verdict becomes BARRIER_BREACHED) and still returns OK.
/// Thread-safe.
///
/// Returns OK, NULL_PARAMETER, INVALID_ARGUMENT (nested 2^31 deep), or
/// IO_ERROR / BARRIER_NO_SLOT (only in a forked child taking its slot).
#[no_mangle]
pub extern "C" fn cyrsync_barrier_enter(barrier: *const cyrsync_barrier) -> cyrsync_status {
    ffi_boundary!("cyrsync_barrier_enter", {
        let barrier = try_ref!(barrier);
        enter("cyrsync_barrier_enter", barrier)
    })
}

/// `cyrsync_barrier_enter`, but waiting at most `timeout_ms` for a freeze
/// to end (0: not at all). Same fast path when nothing is frozen. If the
/// barrier is still frozen when the timeout runs out, returns BARRIER_FROZEN
/// and the caller is NOT inside (nothing to leave); if the freeze's own
/// bound runs out first, goes in as `cyrsync_barrier_enter` does and returns
/// OK. A thread that already holds the barrier nests at once. For lockers
/// that must not block: a non-blocking lock (timeout 0), a replica that
/// answers LOCKED after a bounded wait. Thread-safe.
///
/// Returns OK, BARRIER_FROZEN, NULL_PARAMETER, INVALID_ARGUMENT (nested 2^31
/// deep), or IO_ERROR / BARRIER_NO_SLOT (only in a forked child taking its
/// slot).
#[no_mangle]
pub extern "C" fn cyrsync_barrier_enter_timeout(
    barrier: *const cyrsync_barrier,
    timeout_ms: u32,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_barrier_enter_timeout", {
        let barrier = try_ref!(barrier);
        enter_timeout("cyrsync_barrier_enter_timeout", barrier, timeout_ms)
    })
}

/// Leave the barrier once. Returns OK, NULL_PARAMETER, or BARRIER_NOT_HELD
/// if this process is not inside (including a forked child whose parent
/// was). Thread-safe.
#[no_mangle]
pub extern "C" fn cyrsync_barrier_leave(barrier: *const cyrsync_barrier) -> cyrsync_status {
    ffi_boundary!("cyrsync_barrier_leave", {
        let barrier = try_ref!(barrier);
        leave("cyrsync_barrier_leave", barrier)
    })
}

/// This process's enter depth: 0 when not inside (what a daemon asserts at
/// the top of its command loop). 0 for NULL. No system call. Thread-safe.
#[no_mangle]
pub extern "C" fn cyrsync_barrier_depth(barrier: *const cyrsync_barrier) -> u32 {
    ffi_boundary!("cyrsync_barrier_depth", {
        let barrier = try_ref!(barrier);
        barrier.depth()
    })
}

/// Freeze the barrier: stop new writers, then wait until the writers inside
/// have left, at most `max_freeze_ms` (0: 5000). The freeze ends by itself
/// that long after it started: writers go in and the thaw reports it. Each
/// writer process also applies its own bound.
///
/// On success `*out` receives the freeze, which the caller must pass to
/// `cyrsync_barrier_thaw` on the same handle (it cannot be freed otherwise).
/// The calling process must not be inside the barrier, through this handle
/// (BARRIER_HELD) or another one (the drain would wait for itself until
/// BARRIER_DRAIN_TIMEOUT). Thread-safe, but one handle holds at most one
/// freeze. If the freezer dies, writers go in at the deadline and the next
/// freeze takes over at once.
///
/// Returns OK, NULL_PARAMETER, BARRIER_HELD (this process is inside),
/// BARRIER_ALREADY_FROZEN (another live freezer), BARRIER_DRAIN_TIMEOUT
/// (writers did not leave in time; nothing is frozen), IO_ERROR.
#[no_mangle]
pub extern "C" fn cyrsync_barrier_freeze(
    barrier: *const cyrsync_barrier,
    max_freeze_ms: u32,
    out: *mut *mut cyrsync_barrier_frozen,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_barrier_freeze", {
        let barrier = try_ref!(barrier);
        if out.is_null() {
            return super::null_parameter("out");
        }
        match barrier.freeze(max_from_ms(max_freeze_ms)) {
            Ok(token) => {
                // SAFETY: checked non-NULL.
                unsafe { set_out(out, into_handle::<cyrsync_barrier_frozen>(token)) };
                cyrsync_status::Ok
            }
            Err(e) => report("cyrsync_barrier_freeze", &e),
        }
    })
}

/// End a freeze and return its verdict. `freeze` must come from
/// `cyrsync_barrier_freeze` on the same `barrier`; it is consumed (do not use
/// it again) unless the call returns NULL_PARAMETER or INVALID_ARGUMENT: a
/// NULL `barrier` or a handle other than the freeze's is refused before
/// anything is consumed, and the freeze can still be thawed with the right
/// handle.
///
/// Returns OK if the freeze was consistent (no writer went in, the bound was
/// not exceeded, the barrier file is still the one every writer uses: the
/// snapshot taken under it is good); otherwise the barrier is thawed all the
/// same and the status says why the snapshot is NOT consistent:
/// BARRIER_REPLACED, BARRIER_LOST, BARRIER_BREACHED or BARRIER_EXPIRED (also
/// logged). NULL_PARAMETER, INVALID_ARGUMENT (freeze of another handle).
#[no_mangle]
pub extern "C" fn cyrsync_barrier_thaw(
    barrier: *const cyrsync_barrier,
    freeze: *mut cyrsync_barrier_frozen,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_barrier_thaw", {
        let barrier = try_ref!(barrier);
        if freeze.is_null() {
            return super::null_parameter("freeze");
        }
        // SAFETY: non-NULL and, by contract, from cyrsync_barrier_freeze and
        // not yet consumed.
        let owner = unsafe { &*freeze.cast::<FreezeToken<'static>>() }.barrier();
        if !std::ptr::eq(owner, barrier) {
            log::error!(
                "IOERROR: cyrsync_barrier_thaw: the freeze belongs to another barrier handle; \
                 not consumed, thaw it with its own handle: path=<{}>",
                owner.path().display()
            );
            return cyrsync_status::InvalidArgument;
        }
        // SAFETY: as above; ownership passes to us here.
        let token = unsafe { Box::from_raw(freeze.cast::<FreezeToken<'static>>()) };
        let verdict = token.thaw();
        if verdict.consistent() {
            return cyrsync_status::Ok;
        }
        log::warn!(
            "cyrsync_barrier_thaw: inconsistent freeze: why=<{}> breaches=<{}> frozen_ms=<{}>",
            verdict.reason().unwrap_or("?"),
            verdict.breaches,
            verdict.frozen_for.as_millis()
        );
        if verdict.replaced.is_some() {
            cyrsync_status::BarrierReplaced
        } else if verdict.lost {
            cyrsync_status::BarrierLost
        } else if verdict.breaches > 0 {
            cyrsync_status::BarrierBreached
        } else {
            cyrsync_status::BarrierExpired
        }
    })
}

/// Fill `*out` with the barrier's shared state (probes every slot: a few
/// system calls per process; meant for monitoring, not hot paths).
/// Thread-safe. Returns OK, NULL_PARAMETER or IO_ERROR.
#[no_mangle]
pub extern "C" fn cyrsync_barrier_status(
    barrier: *const cyrsync_barrier,
    out: *mut cyrsync_barrier_state,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_barrier_status", {
        let barrier = try_ref!(barrier);
        if out.is_null() {
            return super::null_parameter("out");
        }
        match barrier.status() {
            Ok(s) => {
                // SAFETY: checked non-NULL.
                unsafe { set_out(out, c_state(&s)) };
                cyrsync_status::Ok
            }
            Err(e) => report("cyrsync_barrier_status", &e),
        }
    })
}

fn c_state(s: &crate::barrier::Status) -> cyrsync_barrier_state {
    use crate::barrier::OVERFLOW_INDEX;
    cyrsync_barrier_state {
        frozen: s.frozen,
        expired: s.expired,
        freezer_alive: s.freezer_alive,
        freezer_pid: s.freezer_pid,
        frozen_for_ms: s.frozen_for.map_or(0, |d| d.as_millis() as u64),
        remaining_ms: s.remaining.map_or(0, |d| d.as_millis() as u64),
        breaches: s.breaches,
        freezes: s.freezes,
        slot_count: s.slot_count,
        live_slots: s
            .slots
            .iter()
            .filter(|x| x.alive && x.index != OVERFLOW_INDEX)
            .count() as u32,
        inside_slots: s
            .slots
            .iter()
            .filter(|x| x.depth > 0 && x.index != OVERFLOW_INDEX)
            .count() as u32,
        overflow_inside: s.overflow_inside,
    }
}

/// Fill `*out` with the shared state of the barrier in `lock_dir` without
/// opening it as a barrier: nothing is created or written (no directory, no
/// file, no slot), the file is opened and mapped read-only, so it works on a
/// read-only file system and for any user who can read the file. For
/// monitoring. Returns OK, NULL_PARAMETER, INVALID_ARGUMENT (empty path),
/// IO_ERROR (no such file, not readable) or BARRIER_BAD_FILE.
#[no_mangle]
pub extern "C" fn cyrsync_barrier_inspect(
    lock_dir: *const c_char,
    out: *mut cyrsync_barrier_state,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_barrier_inspect", {
        let dir = try_bytes!(lock_dir);
        if out.is_null() {
            return super::null_parameter("out");
        }
        if dir.is_empty() {
            log::error!("IOERROR: cyrsync_barrier_inspect: empty lock directory");
            return cyrsync_status::InvalidArgument;
        }
        match crate::barrier::inspect(Path::new(OsStr::from_bytes(dir))) {
            Ok(s) => {
                // SAFETY: checked non-NULL.
                unsafe { set_out(out, c_state(&s)) };
                cyrsync_status::Ok
            }
            Err(e) => report("cyrsync_barrier_inspect", &e),
        }
    })
}

/// Free a handle from `cyrsync_barrier_open`: releases this process's slot
/// (if the process is still inside, that is logged and its depth dropped;
/// a freeze still held through the handle is thawed, and its
/// `cyrsync_barrier_frozen` must not be used afterwards). NULL is a no-op;
/// the pointer from `cyrsync_barrier_global()` is refused (logged). Must
/// not race with other calls on the same handle.
#[no_mangle]
pub extern "C" fn cyrsync_barrier_free(barrier: *mut cyrsync_barrier) {
    ffi_boundary!("cyrsync_barrier_free", {
        if let Some(global) = GLOBAL.get() {
            if std::ptr::eq(barrier.cast::<Barrier>(), global) {
                log::error!("IOERROR: cyrsync_barrier_free: the global barrier cannot be freed");
                return;
            }
        }
        // SAFETY: by contract NULL or a live handle from cyrsync_barrier_open.
        unsafe { free_handle(barrier) }
    })
}

// ---- the process-global barrier ----------------------------------------

static GLOBAL: OnceLock<Barrier> = OnceLock::new();

/// Open the process-global barrier (see `cyrsync_barrier_open` for the
/// arguments). Call once at start-up (Cyrus: in `cyrus_init` when
/// `global_lock` is on and CYRUS_HAVELOCK_GLOBAL is not set). A second call
/// with the same directory is a no-op returning OK; with another directory
/// it returns BAD_STATE. It lives until the process exits and survives
/// fork (the child takes its own slot on first use). Thread-safe.
#[no_mangle]
pub extern "C" fn cyrsync_barrier_global_init(
    lock_dir: *const c_char,
    max_freeze_ms: u32,
) -> cyrsync_status {
    ffi_boundary!("cyrsync_barrier_global_init", {
        let dir = try_bytes!(lock_dir);
        let wanted = Path::new(OsStr::from_bytes(dir)).join(crate::barrier::FILE_NAME);
        if let Some(existing) = GLOBAL.get() {
            return same_global(existing, &wanted);
        }
        let barrier = match open_dir("cyrsync_barrier_global_init", dir, max_freeze_ms, 0) {
            Ok(b) => b,
            Err(status) => return status,
        };
        match GLOBAL.set(barrier) {
            Ok(()) => cyrsync_status::Ok,
            // Another thread won the race; ours is dropped (slot released).
            Err(_ours) => same_global(GLOBAL.get().expect("set"), &wanted),
        }
    })
}

fn same_global(existing: &Barrier, wanted: &Path) -> cyrsync_status {
    if existing.path() == wanted {
        cyrsync_status::Ok
    } else {
        log::error!(
            "IOERROR: cyrsync_barrier_global_init: already initialised with another directory: \
             path=<{}> wanted=<{}>",
            existing.path().display(),
            wanted.display()
        );
        cyrsync_status::BadState
    }
}

fn global(function: &str) -> Result<&'static Barrier, cyrsync_status> {
    GLOBAL.get().ok_or_else(|| {
        log::error!("IOERROR: {function}: cyrsync_barrier_global_init was not called");
        cyrsync_status::BadState
    })
}

/// The process-global barrier as a handle for `cyrsync_barrier_freeze`,
/// `_thaw`, `_status`, `_enter`, ...; NULL before
/// `cyrsync_barrier_global_init`. Borrowed: never pass it to
/// `cyrsync_barrier_free`. Thread-safe.
#[no_mangle]
pub extern "C" fn cyrsync_barrier_global() -> *const cyrsync_barrier {
    ffi_boundary!("cyrsync_barrier_global", {
        match GLOBAL.get() {
            Some(b) => (b as *const Barrier).cast(),
            None => std::ptr::null(),
        }
    })
}

/// `cyrsync_barrier_enter` on the process-global barrier; BAD_STATE before
/// `cyrsync_barrier_global_init`.
#[no_mangle]
pub extern "C" fn cyrsync_barrier_global_enter() -> cyrsync_status {
    ffi_boundary!("cyrsync_barrier_global_enter", {
        match global("cyrsync_barrier_global_enter") {
            Ok(b) => enter("cyrsync_barrier_global_enter", b),
            Err(status) => status,
        }
    })
}

/// `cyrsync_barrier_enter_timeout` on the process-global barrier; BAD_STATE
/// before `cyrsync_barrier_global_init`.
#[no_mangle]
pub extern "C" fn cyrsync_barrier_global_enter_timeout(timeout_ms: u32) -> cyrsync_status {
    ffi_boundary!("cyrsync_barrier_global_enter_timeout", {
        match global("cyrsync_barrier_global_enter_timeout") {
            Ok(b) => enter_timeout("cyrsync_barrier_global_enter_timeout", b, timeout_ms),
            Err(status) => status,
        }
    })
}

/// `cyrsync_barrier_leave` on the process-global barrier; BAD_STATE before
/// `cyrsync_barrier_global_init`.
#[no_mangle]
pub extern "C" fn cyrsync_barrier_global_leave() -> cyrsync_status {
    ffi_boundary!("cyrsync_barrier_global_leave", {
        match global("cyrsync_barrier_global_leave") {
            Ok(b) => leave("cyrsync_barrier_global_leave", b),
            Err(status) => status,
        }
    })
}

/// `cyrsync_barrier_depth` on the process-global barrier; 0 before
/// `cyrsync_barrier_global_init`.
#[no_mangle]
pub extern "C" fn cyrsync_barrier_global_depth() -> u32 {
    ffi_boundary!("cyrsync_barrier_global_depth", {
        GLOBAL.get().map_or(0, Barrier::depth)
    })
}
