//! The sync log through the C ABI: writer and reader round trips, bad input,
//! the log callback and the reader modes.

use std::ffi::CString;
use std::ptr;

use cyrsync_abi_tests::*;

fn writer(dir: &TempDir, channels: Option<&str>, flags: u32) -> *mut cyrsync_synclog {
    let channels = channels.map(|c| cs(c.as_bytes()));
    let mut w = ptr::null_mut();
    let r = unsafe {
        cyrsync_synclog_new(
            dir.c().as_ptr(),
            channels.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
            ptr::null(),
            flags,
            &mut w,
        )
    };
    assert_eq!(r, CYRSYNC_STATUS_OK);
    assert!(!w.is_null());
    w
}

fn read_channel(dir: &TempDir, channel: Option<&str>) -> Vec<OwnedItem> {
    let channel = channel.map(|c| cs(c.as_bytes()));
    let mut r = ptr::null_mut();
    let st = unsafe {
        cyrsync_synclog_reader_new_channel(
            dir.c().as_ptr(),
            channel.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
            &mut r,
        )
    };
    assert_eq!(st, CYRSYNC_STATUS_OK);
    let begun = unsafe { cyrsync_synclog_reader_begin(r) };
    let items = if begun == CYRSYNC_STATUS_AGAIN {
        vec![]
    } else {
        assert_eq!(begun, CYRSYNC_STATUS_OK);
        drain(r)
    };
    assert_eq!(unsafe { cyrsync_synclog_reader_end(r) }, CYRSYNC_STATUS_OK);
    unsafe { cyrsync_synclog_reader_free(r) };
    items
}

fn item(kind: &str, a1: &[u8], a2: Option<&[u8]>) -> OwnedItem {
    OwnedItem {
        kind: kind.as_bytes().to_vec(),
        arg1: a1.to_vec(),
        arg2: a2.map(<[u8]>::to_vec),
    }
}

#[test]
fn every_record_kind_round_trips_byte_exact() {
    let dir = TempDir::new("kinds");
    let w = writer(&dir, None, CYRSYNC_SYNCLOG_ENABLED);
    let n = |s: &[u8]| cs(s);
    type Case<'a> = (u32, &'a [u8], Option<&'a [u8]>);
    let cases: &[Case] = &[
        (CYRSYNC_RECORD_USER, b"fred", None),
        (CYRSYNC_RECORD_UNUSER, b"fred@example.com", None),
        (CYRSYNC_RECORD_META, b"fred", None),
        (CYRSYNC_RECORD_APPEND, b"user.fred", None),
        (CYRSYNC_RECORD_MAILBOX, b"user.fred.Sent Items", None),
        (CYRSYNC_RECORD_UNMAILBOX, b"user.fred.{x}", None),
        (CYRSYNC_RECORD_DOUBLEMAILBOX, b"a", Some(b"b\\c")),
        (CYRSYNC_RECORD_RENAME, b"user.a", Some(b"user.\"b\"")),
        (CYRSYNC_RECORD_QUOTA, b"user.fred", None),
        (CYRSYNC_RECORD_ANNOTATION, b"", None),
        (CYRSYNC_RECORD_SEEN, b"fred", Some(b"user.fred.caf\xe9")),
        (CYRSYNC_RECORD_SUB, b"fred", Some(b"(x)")),
        (CYRSYNC_RECORD_UNSUB, b"fred", Some(b"tab\there")),
    ];
    for (kind, a, b) in cases {
        let (a, b) = (n(a), b.map(n));
        let r = unsafe {
            cyrsync_synclog_record(
                w,
                *kind,
                a.as_ptr(),
                b.as_ref().map_or(ptr::null(), |b| b.as_ptr()),
            )
        };
        assert_eq!(r, CYRSYNC_STATUS_OK);
    }
    let text = std::fs::read(dir.path().join("sync/log")).unwrap();
    let expected: &[u8] = b"USER fred\n\
UNUSER fred@example.com\n\
META fred\n\
APPEND user.fred\n\
MAILBOX \"user.fred.Sent Items\"\n\
UNMAILBOX \"user.fred.\\{x\\}\"\n\
DOUBLEMAILBOX a \"b\\\\c\"\n\
RENAME user.a \"user.\\\"b\\\"\"\n\
MAILBOX user.a\n\
MAILBOX \"user.\\\"b\\\"\"\n\
QUOTA user.fred\n\
ANNOTATION \"\"\n\
SEEN fred user.fred.caf\xe9\n\
SUB fred \"(x)\"\n\
UNSUB fred \"tab\there\"\n";
    assert_eq!(
        text.escape_ascii().to_string(),
        expected.escape_ascii().to_string()
    );

    let items = read_channel(&dir, None);
    assert_eq!(items.len(), 15);
    assert_eq!(items[5], item("UNMAILBOX", b"user.fred.{x}", None));
    assert_eq!(items[7], item("RENAME", b"user.a", Some(b"user.\"b\"")));
    assert_eq!(items[9], item("MAILBOX", b"user.\"b\"", None));
    assert_eq!(items[11], item("ANNOTATION", b"", None));
    assert_eq!(items[12], item("SEEN", b"fred", Some(b"user.fred.caf\xe9")));
    // The reader consumed the log: nothing left, nothing to reprocess.
    assert!(!dir.path().join("sync/log").exists());
    assert!(!dir.path().join("sync/log-run").exists());
    assert_eq!(read_channel(&dir, None), vec![]);
    unsafe { cyrsync_synclog_free(w) };
}

#[test]
fn channels_suppression_and_rightnow() {
    let dir = TempDir::new("channels");
    // "" is the default channel; duplicates of spaces are ignored.
    let chans = cs(b"replica  \"\" squat");
    let unsup = cs(b"squat");
    let mut w = ptr::null_mut();
    let r = unsafe {
        cyrsync_synclog_new(
            dir.c().as_ptr(),
            chans.as_ptr(),
            unsup.as_ptr(),
            CYRSYNC_SYNCLOG_ENABLED | CYRSYNC_SYNCLOG_RIGHTNOW,
            &mut w,
        )
    };
    assert_eq!(r, CYRSYNC_STATUS_OK);
    let name = cs(b"user.a");
    assert_eq!(
        unsafe { cyrsync_synclog_record(w, CYRSYNC_RECORD_MAILBOX, name.as_ptr(), ptr::null()) },
        CYRSYNC_STATUS_OK
    );
    assert_eq!(unsafe { cyrsync_synclog_suppress(w) }, CYRSYNC_STATUS_OK);
    let name2 = cs(b"user.b");
    assert_eq!(
        unsafe { cyrsync_synclog_record(w, CYRSYNC_RECORD_MAILBOX, name2.as_ptr(), ptr::null()) },
        CYRSYNC_STATUS_OK
    );
    // an explicit channel ignores suppression, as sync_log_channel does
    let other = cs(b"other");
    assert_eq!(
        unsafe {
            cyrsync_synclog_record_channel(
                w,
                other.as_ptr(),
                CYRSYNC_RECORD_USER,
                name.as_ptr(),
                ptr::null(),
            )
        },
        CYRSYNC_STATUS_OK
    );
    assert_eq!(
        read_channel(&dir, Some("replica")),
        vec![item("MAILBOX", b"user.a", None)]
    );
    assert_eq!(
        read_channel(&dir, None),
        vec![item("MAILBOX", b"user.a", None)]
    );
    assert_eq!(
        read_channel(&dir, Some("squat")),
        vec![
            item("MAILBOX", b"user.a", None),
            item("MAILBOX", b"user.b", None)
        ]
    );
    assert_eq!(
        read_channel(&dir, Some("other")),
        vec![item("USER", b"user.a", None)]
    );

    let mut p = ptr::null();
    let mut len = 0usize;
    assert_eq!(
        unsafe { cyrsync_synclog_rightnow(w, &mut p, &mut len) },
        CYRSYNC_STATUS_OK
    );
    let rightnow = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) };
    assert_eq!(rightnow, b"MAILBOX user.a\nMAILBOX user.b\n");
    assert_eq!(
        unsafe { cyrsync_synclog_rightnow_reset(w) },
        CYRSYNC_STATUS_OK
    );
    assert_eq!(
        unsafe { cyrsync_synclog_rightnow(w, &mut p, &mut len) },
        CYRSYNC_STATUS_OK
    );
    assert_eq!(len, 0);
    unsafe { cyrsync_synclog_free(w) };
}

#[test]
fn disabled_log_writes_no_channel_but_keeps_rightnow() {
    let dir = TempDir::new("disabled");
    let w = writer(&dir, None, CYRSYNC_SYNCLOG_RIGHTNOW);
    let name = cs(b"fred");
    assert_eq!(
        unsafe { cyrsync_synclog_record(w, CYRSYNC_RECORD_USER, name.as_ptr(), ptr::null()) },
        CYRSYNC_STATUS_OK
    );
    assert!(!dir.path().join("sync").exists());
    let (mut p, mut len) = (ptr::null(), 0usize);
    unsafe { cyrsync_synclog_rightnow(w, &mut p, &mut len) };
    assert_eq!(len, b"USER fred\n".len());
    unsafe { cyrsync_synclog_free(w) };
}

#[test]
fn bad_input_gets_a_status_a_message_and_writes_nothing() {
    capture_log();
    let dir = TempDir::new("bad");
    let w = writer(&dir, None, CYRSYNC_SYNCLOG_ENABLED);
    let log = dir.path().join("sync/log");
    let ok = cs(b"user.ok");
    let record = |kind: u32, a: &[u8], b: Option<&[u8]>| {
        let a = CString::new(a).unwrap();
        let b = b.map(|b| CString::new(b).unwrap());
        unsafe {
            cyrsync_synclog_record(
                w,
                kind,
                a.as_ptr(),
                b.as_ref().map_or(ptr::null(), |b| b.as_ptr()),
            )
        }
    };
    assert_eq!(
        record(CYRSYNC_RECORD_MAILBOX, b"user.a\nUSER evil", None),
        CYRSYNC_STATUS_NAME_HAS_LINE_BREAK
    );
    assert_eq!(
        record(CYRSYNC_RECORD_SEEN, b"fred", Some(b"x\ry")),
        CYRSYNC_STATUS_NAME_HAS_LINE_BREAK
    );
    assert!(logged("illegal line break"));
    assert_eq!(
        record(CYRSYNC_RECORD_MAILBOX, &[b'a'; 1024], None),
        CYRSYNC_STATUS_NAME_TOO_LONG
    );
    assert!(logged("name too long"));
    // one past the limit only because of escaping
    let mut escaped = vec![b'a'; 1022];
    escaped.push(b'{');
    assert_eq!(
        record(CYRSYNC_RECORD_MAILBOX, &escaped, None),
        CYRSYNC_STATUS_NAME_TOO_LONG
    );
    assert_eq!(
        record(CYRSYNC_RECORD_SEEN, b"fred", None),
        CYRSYNC_STATUS_INVALID_ARGUMENT
    );
    assert_eq!(
        record(CYRSYNC_RECORD_USER, b"fred", Some(b"x")),
        CYRSYNC_STATUS_INVALID_ARGUMENT
    );
    assert_eq!(record(99, b"fred", None), CYRSYNC_STATUS_INVALID_ARGUMENT);
    assert_eq!(
        unsafe { cyrsync_synclog_record(w, CYRSYNC_RECORD_USER, ptr::null(), ptr::null()) },
        CYRSYNC_STATUS_NULL_PARAMETER
    );
    assert!(logged("required argument is NULL"));
    assert_eq!(
        unsafe {
            cyrsync_synclog_record(ptr::null(), CYRSYNC_RECORD_USER, ok.as_ptr(), ptr::null())
        },
        CYRSYNC_STATUS_NULL_PARAMETER
    );
    for bad in [&b"../../etc"[..], b"a/b", b"..", b"."] {
        let c = CString::new(bad).unwrap();
        let r = unsafe {
            cyrsync_synclog_record_channel(
                w,
                c.as_ptr(),
                CYRSYNC_RECORD_USER,
                ok.as_ptr(),
                ptr::null(),
            )
        };
        assert_eq!(r, CYRSYNC_STATUS_BAD_CHANNEL, "{bad:?}");
    }
    assert!(logged("invalid channel name"));
    assert!(!log.exists(), "nothing may be written by a refused record");
    assert!(!dir.path().join("etc").exists());

    // Accepted data is kept when a later call fails.
    assert_eq!(
        record(CYRSYNC_RECORD_USER, b"kept", None),
        CYRSYNC_STATUS_OK
    );
    assert_eq!(
        record(CYRSYNC_RECORD_USER, b"bad\n", None),
        CYRSYNC_STATUS_NAME_HAS_LINE_BREAK
    );
    assert_eq!(std::fs::read(&log).unwrap(), b"USER kept\n");

    // Bad configurations. An invalid channel is refused alone: the valid
    // one keeps logging (C would write outside the sync directory; before,
    // cyrsync refused the whole writer and Cyrus then logged nothing).
    let mut out = ptr::null_mut();
    let evil = cs(b"good ../evil");
    assert_eq!(
        unsafe { cyrsync_synclog_new(dir.c().as_ptr(), evil.as_ptr(), ptr::null(), 1, &mut out) },
        CYRSYNC_STATUS_OK
    );
    assert!(logged(
        "SYNCERROR: sync_log_channels: invalid channel name refused"
    ));
    let name = cs(b"user.partial");
    for _ in 0..3 {
        assert_eq!(
            unsafe {
                cyrsync_synclog_record(out, CYRSYNC_RECORD_MAILBOX, name.as_ptr(), ptr::null())
            },
            CYRSYNC_STATUS_OK
        );
    }
    let dropped = LOGGED
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, m)| m.contains("record not logged to invalid channels"))
        .count();
    assert_eq!(
        dropped, 1,
        "the drop is reported once a minute, not per record"
    );
    assert_eq!(
        std::fs::read(dir.path().join("sync/good/log")).unwrap(),
        b"MAILBOX user.partial\nMAILBOX user.partial\nMAILBOX user.partial\n"
    );
    assert!(!dir.path().join("evil").exists());
    unsafe { cyrsync_synclog_free(out) };
    out = ptr::null_mut();
    // An empty configdirectory would mean the current directory: refused.
    let empty = cs(b"");
    assert_eq!(
        unsafe { cyrsync_synclog_new(empty.as_ptr(), ptr::null(), ptr::null(), 1, &mut out) },
        CYRSYNC_STATUS_INVALID_ARGUMENT
    );
    let mut reader = ptr::null_mut();
    assert_eq!(
        unsafe { cyrsync_synclog_reader_new_channel(empty.as_ptr(), ptr::null(), &mut reader) },
        CYRSYNC_STATUS_INVALID_ARGUMENT
    );
    assert!(out.is_null() && reader.is_null());
    assert_eq!(
        unsafe { cyrsync_synclog_new(ptr::null(), ptr::null(), ptr::null(), 1, &mut out) },
        CYRSYNC_STATUS_NULL_PARAMETER
    );
    assert_eq!(
        unsafe {
            cyrsync_synclog_new(
                dir.c().as_ptr(),
                ptr::null(),
                ptr::null(),
                1 << 20,
                &mut out,
            )
        },
        CYRSYNC_STATUS_INVALID_ARGUMENT
    );
    assert_eq!(
        unsafe {
            cyrsync_synclog_new(
                dir.c().as_ptr(),
                ptr::null(),
                ptr::null(),
                1,
                ptr::null_mut(),
            )
        },
        CYRSYNC_STATUS_NULL_PARAMETER
    );

    // NULL handles are harmless everywhere.
    unsafe {
        cyrsync_synclog_free(ptr::null_mut());
        cyrsync_synclog_reader_free(ptr::null_mut());
        assert_eq!(
            cyrsync_synclog_reader_begin(ptr::null_mut()),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        assert_eq!(
            cyrsync_synclog_reader_next(ptr::null_mut(), ptr::null_mut()),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        assert_eq!(
            cyrsync_synclog_reader_end(ptr::null_mut()),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        assert!(cyrsync_synclog_reader_work_file(ptr::null()).is_null());
        assert_eq!(
            cyrsync_synclog_suppress(ptr::null()),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        assert_eq!(
            cyrsync_synclog_rightnow_reset(ptr::null()),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
    }
    unsafe { cyrsync_synclog_free(w) };
}

#[test]
fn argv_format_entry_point() {
    let dir = TempDir::new("argv");
    let w = writer(&dir, Some("\"\""), CYRSYNC_SYNCLOG_ENABLED);
    let fmt = cs(b"SEEN %s %s");
    let a = cs(b"fred");
    let args = [
        cyrsync_fmt_arg {
            kind: CYRSYNC_FMT_ARG_STR,
            integer: 0,
            str_: a.as_ptr(),
        },
        cyrsync_fmt_arg {
            kind: CYRSYNC_FMT_ARG_STR,
            integer: 0,
            str_: ptr::null(),
        },
    ];
    assert_eq!(
        unsafe { cyrsync_synclog_log_argv(w, fmt.as_ptr(), args.as_ptr(), 2) },
        CYRSYNC_STATUS_OK
    );
    assert_eq!(
        unsafe { cyrsync_synclog_log_argv(w, fmt.as_ptr(), args.as_ptr(), 1) },
        CYRSYNC_STATUS_INVALID_ARGUMENT
    );
    assert_eq!(
        unsafe { cyrsync_synclog_log_argv(w, fmt.as_ptr(), ptr::null(), 2) },
        CYRSYNC_STATUS_NULL_PARAMETER
    );
    assert_eq!(
        unsafe { cyrsync_synclog_log_argv(w, fmt.as_ptr(), args.as_ptr(), 17) },
        CYRSYNC_STATUS_INVALID_ARGUMENT
    );
    let bad_kind = [cyrsync_fmt_arg {
        kind: 7,
        integer: 0,
        str_: ptr::null(),
    }];
    let fmt1 = cs(b"USER %s");
    assert_eq!(
        unsafe { cyrsync_synclog_log_argv(w, fmt1.as_ptr(), bad_kind.as_ptr(), 1) },
        CYRSYNC_STATUS_INVALID_ARGUMENT
    );
    let int_fmt = cs(b"X %d");
    let int_arg = [cyrsync_fmt_arg {
        kind: CYRSYNC_FMT_ARG_INT,
        integer: -42,
        str_: ptr::null(),
    }];
    let chan = cs(b"c1");
    assert_eq!(
        unsafe {
            cyrsync_synclog_log_channel_argv(
                w,
                chan.as_ptr(),
                int_fmt.as_ptr(),
                int_arg.as_ptr(),
                1,
            )
        },
        CYRSYNC_STATUS_OK
    );
    assert_eq!(
        std::fs::read(dir.path().join("sync/log")).unwrap(),
        b"SEEN fred \"\"\n"
    );
    assert_eq!(
        std::fs::read(dir.path().join("sync/c1/log")).unwrap(),
        b"X -42\n"
    );
    unsafe { cyrsync_synclog_free(w) };
}

#[test]
fn reader_modes_file_fd_content_and_reprocessing() {
    let dir = TempDir::new("modes");
    let content = b"USER a\nMAILBOX \"b c\"\nSEEN u {3+}\r\nx y\n";
    let expect = vec![
        item("USER", b"a", None),
        item("MAILBOX", b"b c", None),
        item("SEEN", b"u", Some(b"x y")),
    ];

    // -f FILE: read, never unlinked, work_file is the file
    let file = dir.path().join("saved");
    std::fs::write(&file, content).unwrap();
    let mut r = ptr::null_mut();
    assert_eq!(
        unsafe { cyrsync_synclog_reader_new_file(cpath(&file).as_ptr(), &mut r) },
        CYRSYNC_STATUS_OK
    );
    let wf = unsafe { std::ffi::CStr::from_ptr(cyrsync_synclog_reader_work_file(r)) };
    assert_eq!(wf.to_bytes(), cpath(&file).as_bytes());
    assert_eq!(
        unsafe { cyrsync_synclog_reader_begin(r) },
        CYRSYNC_STATUS_OK
    );
    assert_eq!(drain(r), expect);
    assert_eq!(unsafe { cyrsync_synclog_reader_end(r) }, CYRSYNC_STATUS_OK);
    assert!(file.exists());
    unsafe { cyrsync_synclog_reader_free(r) };

    // a missing file is an I/O error
    let mut r = ptr::null_mut();
    let missing = cpath(&dir.path().join("missing"));
    unsafe { cyrsync_synclog_reader_new_file(missing.as_ptr(), &mut r) };
    assert_eq!(
        unsafe { cyrsync_synclog_reader_begin(r) },
        CYRSYNC_STATUS_IO_ERROR
    );
    unsafe { cyrsync_synclog_reader_free(r) };

    // fd: a pipe, left open
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    assert_eq!(
        unsafe { libc::write(fds[1], content.as_ptr().cast(), content.len()) },
        content.len() as isize
    );
    unsafe { libc::close(fds[1]) };
    let mut r = ptr::null_mut();
    assert_eq!(
        unsafe { cyrsync_synclog_reader_new_fd(fds[0], &mut r) },
        CYRSYNC_STATUS_OK
    );
    assert!(unsafe { cyrsync_synclog_reader_work_file(r) }.is_null());
    assert_eq!(
        unsafe { cyrsync_synclog_reader_begin(r) },
        CYRSYNC_STATUS_OK
    );
    assert_eq!(drain(r), expect);
    unsafe { cyrsync_synclog_reader_free(r) };
    assert_eq!(
        unsafe { libc::close(fds[0]) },
        0,
        "the fd stays the caller's"
    );

    // content is copied
    let mut r = ptr::null_mut();
    let owned = content.to_vec();
    assert_eq!(
        unsafe { cyrsync_synclog_reader_new_content(owned.as_ptr().cast(), owned.len(), &mut r) },
        CYRSYNC_STATUS_OK
    );
    drop(owned);
    assert_eq!(
        unsafe { cyrsync_synclog_reader_begin(r) },
        CYRSYNC_STATUS_OK
    );
    assert_eq!(drain(r), expect);
    unsafe { cyrsync_synclog_reader_free(r) };

    // channel: a log-run left by a crashed run is reprocessed first, and
    // freeing without end keeps it.
    let sync = dir.path().join("sync/ch");
    std::fs::create_dir_all(&sync).unwrap();
    std::fs::write(sync.join("log-run"), b"USER old\n").unwrap();
    std::fs::write(sync.join("log"), b"USER new\n").unwrap();
    let chan = cs(b"ch");
    let mut r = ptr::null_mut();
    unsafe { cyrsync_synclog_reader_new_channel(dir.c().as_ptr(), chan.as_ptr(), &mut r) };
    assert_eq!(
        unsafe { cyrsync_synclog_reader_begin(r) },
        CYRSYNC_STATUS_OK
    );
    assert_eq!(drain(r), vec![item("USER", b"old", None)]);
    assert_eq!(unsafe { cyrsync_synclog_reader_end(r) }, CYRSYNC_STATUS_OK);
    assert_eq!(
        unsafe { cyrsync_synclog_reader_begin(r) },
        CYRSYNC_STATUS_OK
    );
    assert_eq!(drain(r), vec![item("USER", b"new", None)]);
    unsafe { cyrsync_synclog_reader_free(r) };
    assert!(
        sync.join("log-run").exists(),
        "free without end keeps the work file"
    );
    assert_eq!(
        read_channel(&dir, Some("ch")),
        vec![item("USER", b"new", None)]
    );
    assert_eq!(read_channel(&dir, Some("ch")), vec![], "AGAIN: no log");
}

#[test]
fn status_strings_and_version() {
    for s in 0..12u32 {
        let text = unsafe { std::ffi::CStr::from_ptr(cyrsync_status_str(s)) };
        assert_ne!(text.to_bytes(), b"unknown status", "status {s}");
    }
    let unknown = unsafe { std::ffi::CStr::from_ptr(cyrsync_status_str(9999)) };
    assert_eq!(unknown.to_bytes(), b"unknown status");
    let version = unsafe { std::ffi::CStr::from_ptr(cyrsync_version()) }
        .to_str()
        .unwrap();
    let header_version =
        std::str::from_utf8(&CYRSYNC_VERSION[..CYRSYNC_VERSION.len() - 1]).unwrap();
    assert_eq!(version, header_version);
    let cargo_toml =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml")).unwrap();
    let declared = cargo_toml
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    assert_eq!(version, declared);
    assert_eq!(
        format!("{CYRSYNC_VERSION_MAJOR}.{CYRSYNC_VERSION_MINOR}.{CYRSYNC_VERSION_PATCH}"),
        declared
    );
}
