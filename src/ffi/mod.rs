//! The C boundary: the only place with `extern "C"`.
//!
//! Conventions shared by every area (modelled on rustls-ffi):
//!
//! * every exported body is wrapped in [`ffi_boundary!`], which catches a
//!   panic, logs it and returns the type's "panicked" value
//!   ([`FfiDefault::panicked`]): `CYRSYNC_STATUS_PANIC`, NULL, 0 or false;
//! * pointer arguments are checked with [`try_ref!`], [`try_mut!`] and
//!   [`try_bytes!`], which return the type's "null parameter" value;
//! * opaque handles are `Box`ed Rust values behind a zero-sized C type
//!   ([`Handle`]); `_free(NULL)` is a no-op;
//! * integers that mean an enum are taken as `u32` and converted, never
//!   transmuted;
//! * out-parameters are written only on success.
//!
//! Exported functions take raw pointers without being `unsafe fn`: C cannot
//! honour a Rust safety contract, so each one checks what it can (NULL) and
//! documents the rest in the header.

#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::ffi::{c_char, CStr};

pub mod barrier;
pub mod log;
pub mod status;
pub mod syncclient;
pub mod synclog;

pub use status::cyrsync_status;

/// What an exported function returns when a panic was caught or a required
/// pointer was NULL.
pub(crate) trait FfiDefault {
    fn panicked() -> Self;
    fn null_parameter() -> Self;
}

impl FfiDefault for cyrsync_status {
    fn panicked() -> Self {
        cyrsync_status::Panic
    }
    fn null_parameter() -> Self {
        cyrsync_status::NullParameter
    }
}

impl<T> FfiDefault for *mut T {
    fn panicked() -> Self {
        std::ptr::null_mut()
    }
    fn null_parameter() -> Self {
        std::ptr::null_mut()
    }
}

impl<T> FfiDefault for *const T {
    fn panicked() -> Self {
        std::ptr::null()
    }
    fn null_parameter() -> Self {
        std::ptr::null()
    }
}

macro_rules! impl_ffi_default_zero {
    ($($t:ty),*) => {$(
        impl FfiDefault for $t {
            fn panicked() -> Self { Default::default() }
            fn null_parameter() -> Self { Default::default() }
        }
    )*};
}
impl_ffi_default_zero!((), bool, u32, i32, u64, i64, usize);

/// Log the payload of a caught panic.
pub(crate) fn report_panic(payload: Box<dyn std::any::Any + Send>, function: &str) {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)");
    ::log::error!("IOERROR: cyrsync panicked in {function}: {message}");
}

/// Run an exported function's body, turning a panic into the return type's
/// "panicked" value. Wraps the body, not the signature, so cbindgen still
/// sees the function.
macro_rules! ffi_boundary {
    ($name:literal, $body:block) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(value) => value,
            Err(payload) => {
                $crate::ffi::report_panic(payload, $name);
                $crate::ffi::FfiDefault::panicked()
            }
        }
    };
}
pub(crate) use ffi_boundary;

/// Borrow a handle or return the "null parameter" value.
macro_rules! try_ref {
    ($ptr:expr) => {
        match unsafe { $crate::ffi::handle_ref($ptr) } {
            Some(r) => r,
            None => return $crate::ffi::null_parameter(stringify!($ptr)),
        }
    };
}
pub(crate) use try_ref;

/// Mutably borrow a handle or return the "null parameter" value.
macro_rules! try_mut {
    ($ptr:expr) => {
        match unsafe { $crate::ffi::handle_mut($ptr) } {
            Some(r) => r,
            None => return $crate::ffi::null_parameter(stringify!($ptr)),
        }
    };
}
pub(crate) use try_mut;

/// Borrow a NUL-terminated byte string (without its NUL) or return the
/// "null parameter" value.
macro_rules! try_bytes {
    ($ptr:expr) => {
        match unsafe { $crate::ffi::c_bytes($ptr) } {
            Some(b) => b,
            None => return $crate::ffi::null_parameter(stringify!($ptr)),
        }
    };
}
pub(crate) use try_bytes;

/// Log that a required argument was NULL and return the matching value.
pub(crate) fn null_parameter<T: FfiDefault>(what: &str) -> T {
    ::log::error!("IOERROR: cyrsync: required argument is NULL: {what}");
    T::null_parameter()
}

/// An opaque C type standing for a boxed Rust value.
///
/// # Safety
/// Implementors must be zero-sized, never constructed, and used only through
/// the functions below, so that a `*mut Self` is always a `Box<Inner>`.
pub(crate) unsafe trait Handle {
    type Inner;
}

/// Box a value and hand it to C.
pub(crate) fn into_handle<H: Handle>(value: H::Inner) -> *mut H {
    Box::into_raw(Box::new(value)).cast()
}

/// # Safety
/// `ptr` is NULL or came from [`into_handle`] and was not freed.
pub(crate) unsafe fn handle_ref<'a, H: Handle>(ptr: *const H) -> Option<&'a H::Inner> {
    unsafe { ptr.cast::<H::Inner>().as_ref() }
}

/// # Safety
/// As [`handle_ref`], and no other reference to the value is live.
pub(crate) unsafe fn handle_mut<'a, H: Handle>(ptr: *mut H) -> Option<&'a mut H::Inner> {
    unsafe { ptr.cast::<H::Inner>().as_mut() }
}

/// Free a handle; NULL is a no-op.
///
/// # Safety
/// As [`handle_mut`]; the handle is not used afterwards.
pub(crate) unsafe fn free_handle<H: Handle>(ptr: *mut H) {
    if !ptr.is_null() {
        drop(unsafe { Box::from_raw(ptr.cast::<H::Inner>()) });
    }
}

/// Borrow a C string's bytes; `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn c_bytes<'a>(ptr: *const c_char) -> Option<&'a [u8]> {
    if ptr.is_null() {
        None
    } else {
        Some(unsafe { CStr::from_ptr(ptr) }.to_bytes())
    }
}

/// Write an out-parameter if the caller gave one.
///
/// # Safety
/// `out` is NULL or valid for a write of `T`.
pub(crate) unsafe fn set_out<T>(out: *mut T, value: T) {
    if !out.is_null() {
        unsafe { out.write(value) };
    }
}

/// The library's version, "MAJOR.MINOR.PATCH", the same as the header's
/// `CYRSYNC_VERSION`. Static string, never NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn cyrsync_version() -> *const c_char {
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

/// `configdirectory` as a path: it must not be empty (an empty string
/// would silently mean the current directory). Every entry point that
/// takes one refuses it the same way.
pub(crate) fn config_dir_path<'a>(
    dir: &'a [u8],
    context: &str,
) -> Result<&'a std::path::Path, cyrsync_status> {
    use std::os::unix::ffi::OsStrExt;
    if dir.is_empty() {
        ::log::error!("IOERROR: {context}: empty configdirectory");
        return Err(cyrsync_status::InvalidArgument);
    }
    Ok(std::path::Path::new(std::ffi::OsStr::from_bytes(dir)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_turns_panics_into_values() {
        let status: cyrsync_status = ffi_boundary!("test", { panic!("boom") });
        assert_eq!(status, cyrsync_status::Panic);
        let ptr: *mut u8 = ffi_boundary!("test", { panic!("boom") });
        assert!(ptr.is_null());
        let ok: cyrsync_status = ffi_boundary!("test", { cyrsync_status::Ok });
        assert_eq!(ok, cyrsync_status::Ok);
    }

    #[test]
    fn every_status_round_trips_and_has_text() {
        for v in 0..300 {
            if let Some(s) = cyrsync_status::from_u32(v) {
                assert_eq!(s as u32, v);
                assert!(!s.as_cstr().to_bytes().is_empty());
            }
        }
    }

    /// Every name the header gives C carries cyrsync's prefix: a host
    /// includes it beside its own headers (Cyrus has a MAX_MAILBOX_BUFFER
    /// of its own).
    #[test]
    fn every_exported_name_is_prefixed() {
        fn ident(s: &str) -> &str {
            let s = s.trim_start_matches(['*', ' ']);
            let end = s
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(s.len());
            &s[..end]
        }
        let header = include_str!("../../include/cyrsync.h");
        let mut names = Vec::new();
        for line in header.lines() {
            let t = line.trim();
            if t.is_empty() || t.starts_with("/*") || t.starts_with('*') || t.starts_with("//") {
                continue;
            }
            if let Some(rest) = t.strip_prefix("#define ") {
                names.push(ident(rest));
            } else if t.starts_with('#') || t.starts_with("extern \"C\"") {
            } else if let Some(rest) = t.strip_prefix('}') {
                names.push(ident(rest.trim_start()));
            } else if !line.starts_with(' ') {
                // a declaration: the name before its '(' (or inside "(*name)")
                let head = t.split('(').next().unwrap_or("");
                let tail = t.split_once("(*").map(|(_, r)| r).unwrap_or("");
                let last = head.split_whitespace().last().unwrap_or("");
                names.push(if t.contains("(*") {
                    ident(tail)
                } else {
                    ident(last)
                });
                for word in ["struct ", "enum "] {
                    if let Some((_, r)) = t.split_once(word) {
                        names.push(ident(r));
                    }
                }
            } else if t.starts_with(|c: char| c.is_ascii_uppercase()) {
                names.push(ident(t)); // an enum variant
            }
        }
        let bad: Vec<_> = names
            .into_iter()
            .filter(|n| !n.is_empty())
            .filter(|n| !n.starts_with("cyrsync_") && !n.starts_with("CYRSYNC_"))
            .collect();
        assert!(
            bad.is_empty(),
            "unprefixed names in include/cyrsync.h: {bad:?}"
        );
    }

    #[test]
    fn committed_header_matches_generated() {
        let generated = include_str!(env!("CYRSYNC_GENERATED_HEADER"));
        let committed = include_str!("../../include/cyrsync.h");
        assert!(
            generated == committed,
            "include/cyrsync.h is stale: regenerate it with \
             `CYRSYNC_BLESS_HEADER=1 cargo build` and commit it"
        );
    }
}
