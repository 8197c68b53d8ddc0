//! Property: any byte name the writer accepts comes back identical from
//! the reader; any name it refuses has a reason, and nothing is written.

use std::ffi::CString;
use std::ptr;

use cyrsync_abi_tests::*;
use proptest::prelude::*;

fn name() -> impl Strategy<Value = Vec<u8>> {
    // Bytes that matter to the grammar, mixed with anything else but NUL
    // (C strings cannot carry NUL).
    let special = prop::sample::select(vec![
        b' ', b'\t', b'"', b'\\', b'{', b'}', b'(', b')', b'\r', b'\n', 0x0b, 0x0c, b'%', b'+',
        b'0', b'3', 0xff, 0x80,
    ]);
    let any = 1u8..=255;
    let byte = prop_oneof![special, any];
    prop_oneof![
        8 => prop::collection::vec(byte.clone(), 0..40),
        1 => prop::collection::vec(byte, 1000..1030),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn accepted_names_round_trip(a in name(), b in name(), two in any::<bool>()) {
        let dir = TempDir::new("prop");
        let mut w = ptr::null_mut();
        prop_assert_eq!(unsafe { cyrsync_synclog_new(dir.c().as_ptr(), ptr::null(), ptr::null(), CYRSYNC_SYNCLOG_ENABLED, &mut w) }, CYRSYNC_STATUS_OK);
        let (ca, cb) = (CString::new(a.clone()).unwrap(), CString::new(b.clone()).unwrap());
        let (kind, name2) = if two { (CYRSYNC_RECORD_SEEN, cb.as_ptr()) } else { (CYRSYNC_RECORD_MAILBOX, ptr::null()) };
        let status = unsafe { cyrsync_synclog_record(w, kind, ca.as_ptr(), name2) };
        unsafe { cyrsync_synclog_free(w) };

        let log = dir.path().join("sync/log");
        let names: Vec<&Vec<u8>> = if two { vec![&a, &b] } else { vec![&a] };
        if status != CYRSYNC_STATUS_OK {
            prop_assert!(!log.exists(), "a refused record wrote something");
            let breaks = names.iter().any(|n| n.contains(&b'\r') || n.contains(&b'\n'));
            let long = names.iter().any(|n| n.len() + n.iter().filter(|c| b"\\\"{}".contains(c)).count() + 1 > 1024);
            prop_assert!(
                (status == CYRSYNC_STATUS_NAME_HAS_LINE_BREAK && breaks) || (status == CYRSYNC_STATUS_NAME_TOO_LONG && long),
                "unexpected refusal {}", status
            );
            return Ok(());
        }
        let mut r = ptr::null_mut();
        let path = cpath(&log);
        unsafe { cyrsync_synclog_reader_new_file(path.as_ptr(), &mut r) };
        prop_assert_eq!(unsafe { cyrsync_synclog_reader_begin(r) }, CYRSYNC_STATUS_OK);
        let items = drain(r);
        unsafe { cyrsync_synclog_reader_free(r) };
        prop_assert_eq!(items.len(), 1);
        prop_assert_eq!(&items[0].arg1, &a);
        prop_assert_eq!(items[0].arg2.as_ref(), two.then_some(&b));
    }
}
