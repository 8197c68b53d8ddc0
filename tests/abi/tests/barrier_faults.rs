//! The barrier under faults, damage and careless hosts (issue 10), through
//! the C ABI: tests/c/fault_barrier.c runs as real processes, under the
//! fault interposer or on a small real tmpfs. Every case ends in a status
//! or a "not consistent" verdict; no process dies of a signal; no freeze is
//! called consistent while a writer was inside.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cyrsync_abi_tests::cprog::compile;
use cyrsync_abi_tests::fault::{tiny_tmpfs, Fault, Interposer};
use cyrsync_abi_tests::*;

const OK: u32 = CYRSYNC_STATUS_OK;

fn driver() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.ancestors().nth(3).unwrap().join("c-fault");
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join(format!("fault_barrier-{}", std::process::id()));
        compile("fault_barrier.c", &[], &out);
        out
    })
}

fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(driver());
    c.args(args);
    c
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `key=<n>` from the driver's output.
fn field(out: &str, key: &str) -> u32 {
    let pat = format!("{key}=");
    let at = out
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key}= in {out:?}"));
    out[at + pat.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn run(args: &[&str]) -> (String, String) {
    let out = cmd(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.signal(),
        None,
        "{args:?} died of a signal\n{stdout}\n{stderr}"
    );
    assert!(out.status.success(), "{args:?} failed\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// A driver process that answers line by line.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut child = cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Proc {
            child,
            stdin,
            stdout,
        }
    }
    fn line(&mut self) -> String {
        let mut l = String::new();
        self.stdout.read_line(&mut l).unwrap();
        l
    }
    fn tell(&mut self) {
        let w = self.stdin.as_mut().unwrap();
        writeln!(w, "go").unwrap();
        w.flush().unwrap();
    }
    fn finish(mut self) {
        drop(self.stdin.take());
        let st = self.child.wait().unwrap();
        assert_eq!(st.signal(), None, "driver died of a signal");
        assert!(st.success(), "driver failed: {st:?}");
    }
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn barrier_file(dir: &Path) -> PathBuf {
    dir.join("cyrsync-barrier")
}

// ---- 1. allocation: a full disk is a status at open, never a SIGBUS ------

#[test]
fn full_tmpfs_at_creation_and_at_every_slot_page() {
    let dir = TempDir::new("bf-tmpfs");
    let mnt = dir.path().join("mnt");
    let (d, m) = (driver().display().to_string(), mnt.display().to_string());
    // 512 KiB cannot hold a 1 MiB barrier: a status, and no file.
    let script = format!("mkdir {m}/a; {d} open {m}/a; echo rc=$?; ls -a {m}/a | wc -l");
    let Some(out) = tiny_tmpfs("512k", &mnt, &script) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            format!("open={CYRSYNC_STATUS_BARRIER_NO_SPACE}").as_str(),
            "rc=0",
            "2"
        ],
        "a status and no half-made file\n{text}\n{err}"
    );
    assert!(err.contains("cannot allocate the barrier file"), "{err}");

    // A file with 640 slots (10 slot pages), then the disk filled: the first
    // store to every slot page (640 handles) needs no new block. Then a
    // default file (16384 slots), the disk filled, and the file used.
    let script = format!(
        "mkdir {m}/b; {d} open {m}/b 640; echo rc=$?
         dd if=/dev/zero of={m}/fill bs=4k count=100000 2>/dev/null
         {d} pages {m}/b 640; echo rc=$?
         rm -f {m}/fill
         mkdir {m}/c; {d} open {m}/c; echo rc=$?
         dd if=/dev/zero of={m}/fill bs=4k count=100000 2>/dev/null
         {d} pages {m}/c 3; echo rc=$?"
    );
    let Some(out) = tiny_tmpfs("1200k", &mnt, &script) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "open=0",
            "rc=0",
            "pages=0 n=640",
            "rc=0",
            "open=0",
            "rc=0",
            "pages=0 n=3",
            "rc=0"
        ],
        "no SIGBUS on a full disk\n{text}\n{err}"
    );
}

#[test]
fn fallocate_enospc_and_a_fault_at_every_call_of_open() {
    let dir = TempDir::new("bf-inject");
    let lock = dir.path().join("lock");
    std::fs::create_dir_all(&lock).unwrap();
    let ip = Interposer::get();

    let r = ip.run(
        cmd(&["open", s(&lock)]),
        &[&lock],
        &[Fault::new("fallocate", 1, "ENOSPC")],
    );
    r.assert_no_signal("fallocate ENOSPC");
    assert!(r.injected, "{}", r.stderr);
    assert_eq!(
        field(&r.stdout, "open"),
        CYRSYNC_STATUS_BARRIER_NO_SPACE,
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("path=<"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&lock).unwrap().count(), 0, "nothing left");

    // Every call the open makes, on a fresh directory and on an existing
    // file: fail it; the open gives a status, no signal, and leaves a
    // directory a clean open then uses.
    for existing in [false, true] {
        let mut points = 0;
        for action in ["EIO", "ENOSPC", "kill"] {
            let n = ip.at_every_call(
                &[&lock],
                || {
                    let _ = std::fs::remove_dir_all(&lock);
                    std::fs::create_dir_all(&lock).unwrap();
                    if existing {
                        run(&["open", s(&lock)]);
                    }
                },
                || cmd(&["open", s(&lock)]),
                |_| true,
                action,
                |call, r| {
                    r.assert_no_signal(&format!("{action} at {call:?}"));
                    if !r.killed() {
                        assert!(
                            r.status.success(),
                            "{action} at {call:?}: {}\n{}",
                            r.stdout,
                            r.stderr
                        );
                        let st = field(&r.stdout, "open");
                        assert!(
                            [OK, CYRSYNC_STATUS_IO_ERROR, CYRSYNC_STATUS_BARRIER_NO_SPACE]
                                .contains(&st),
                            "{action} at {call:?}: status {st}\n{}",
                            r.stderr
                        );
                    }
                    let (out, err) = run(&["open", s(&lock)]);
                    assert_eq!(field(&out, "open"), OK, "after {action} at {call:?}: {err}");
                },
            );
            points += n;
        }
        assert!(points >= 6, "{points} fault points");
    }
}

// ---- 2. damaged files are refused and left alone ---------------------------

fn header(version: u32, slots: u32) -> Vec<u8> {
    let mut h = vec![0u8; 4096 + slots as usize * 64];
    h[..8].copy_from_slice(b"CYRSBAR1");
    h[8..12].copy_from_slice(&version.to_ne_bytes());
    h[12..16].copy_from_slice(&slots.to_ne_bytes());
    h[16..20].copy_from_slice(&64u32.to_ne_bytes());
    h[20..24].copy_from_slice(&4096u32.to_ne_bytes());
    h
}

#[test]
fn damaged_files_are_refused_untouched_and_reset_repairs_them() {
    let mut wrong_size = header(1, 64);
    wrong_size.truncate(4096 + 10 * 64);
    let mut longer = header(1, 64);
    longer.extend_from_slice(&[0; 4096]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "garbage 28 bytes",
            b"this is not a barrier file\n\0".to_vec(),
        ),
        ("empty", Vec::new()),
        ("zeros", vec![0; 1 << 20]),
        ("foreign version", header(2, 64)),
        ("short", wrong_size),
        ("long", longer),
    ];
    for (what, bytes) in cases {
        let dir = TempDir::new("bf-damaged");
        let file = barrier_file(dir.path());
        std::fs::write(&file, &bytes).unwrap();
        let (out, err) = run(&["open", s(dir.path())]);
        assert_eq!(
            field(&out, "open"),
            CYRSYNC_STATUS_BARRIER_BAD_FILE,
            "{what}: {err}"
        );
        assert!(
            err.contains(&format!("path=<{}>", file.display()))
                && err.contains("cyrsync barrier reset"),
            "{what}: the log names the file and the fix: {err}"
        );
        assert_eq!(std::fs::read(&file).unwrap(), bytes, "{what}: untouched");

        // reset refuses while a process still has it open...
        let holder = std::fs::File::open(&file).unwrap();
        let fl = libc::flock {
            l_type: libc::F_RDLCK as i16,
            l_whence: libc::SEEK_SET as i16,
            l_start: 1,
            l_len: 1,
            l_pid: 0,
        };
        let locked = unsafe {
            use std::os::fd::AsRawFd;
            libc::fcntl(holder.as_raw_fd(), libc::F_OFD_SETLK, &fl)
        } == 0;
        if locked && !bytes.is_empty() {
            match cyrsync::barrier::reset(dir.path(), 0) {
                Err(e) => assert!(e.to_string().contains("in use"), "{what}: {e}"),
                Ok(o) => panic!("{what}: reset while in use: {o:?}"),
            }
            assert_eq!(std::fs::read(&file).unwrap(), bytes, "{what}: untouched");
        }
        drop(holder);
        // ... and repairs it once nobody does. (A child another test forks
        // holds a copy of our descriptor, and so the lock, until it execs:
        // a moment.)
        let mut tries = 0;
        let o = loop {
            match cyrsync::barrier::reset(dir.path(), 0) {
                Err(cyrsync::barrier::BarrierError::InUse { .. }) if tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other.unwrap(),
            }
        };
        assert!(
            matches!(o, cyrsync::barrier::ResetOutcome::Replaced { .. }),
            "{what}: {o:?}"
        );
        let (out, err) = run(&["open", s(dir.path())]);
        assert_eq!(field(&out, "open"), OK, "{what} after reset: {err}");
    }
}

#[test]
fn reset_refuses_while_a_live_process_uses_the_file() {
    let dir = TempDir::new("bf-reset-live");
    let file = barrier_file(dir.path());
    let mut holder = Proc::spawn(&["hold", s(dir.path())]);
    assert_eq!(field(&holder.line(), "inside"), OK);
    // Damage it under the holder (an admin's mistake): version 9.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        f.write_all_at(&9u32.to_ne_bytes(), 8).unwrap();
    }
    let before = std::fs::read(&file).unwrap();
    let e = cyrsync::barrier::reset(dir.path(), 0).unwrap_err();
    assert!(e.to_string().contains("in use"), "{e}");
    assert_eq!(std::fs::read(&file).unwrap(), before, "untouched");
    holder.tell();
    assert_eq!(field(&holder.line(), "left"), OK);
    holder.finish();
    assert!(matches!(
        cyrsync::barrier::reset(dir.path(), 0).unwrap(),
        cyrsync::barrier::ResetOutcome::Replaced { .. }
    ));
}

// ---- 3. a removed or replaced file: never a consistent verdict -----------

#[test]
fn removed_and_recreated_under_live_writers_is_not_consistent() {
    let dir = TempDir::new("bf-removed");
    let file = barrier_file(dir.path());
    // Writers on the original file.
    let mut writers: Vec<Proc> = (0..2)
        .map(|_| Proc::spawn(&["write", s(dir.path())]))
        .collect();
    for w in &mut writers {
        assert_eq!(w.line().trim(), "writing");
    }
    // A tmpfiles cleaner removes it; a new process re-creates it.
    std::fs::remove_file(&file).unwrap();
    let (out, err) = run(&["freeze", s(dir.path()), "50"]);
    assert_eq!(field(&out, "freeze"), OK, "{err}");
    assert_eq!(
        field(&out, "thaw"),
        CYRSYNC_STATUS_BARRIER_REPLACED,
        "a freeze on the new file while writers use the old one: {err}"
    );
    assert!(err.contains("removed or replaced"), "{err}");

    // A freezer on the old file while the path is replaced during its freeze.
    let old_freezer = {
        let mut b = std::ptr::null_mut();
        let c = dir.c();
        assert_eq!(unsafe { cyrsync_barrier_open(c.as_ptr(), 0, &mut b) }, OK);
        b
    };
    for w in writers {
        w.kill();
    }
    let mut f = std::ptr::null_mut();
    assert_eq!(
        unsafe { cyrsync_barrier_freeze(old_freezer, 5000, &mut f) },
        OK
    );
    std::fs::remove_file(&file).unwrap();
    let mut w = Proc::spawn(&["write", s(dir.path())]);
    assert_eq!(w.line().trim(), "writing");
    assert_eq!(
        unsafe { cyrsync_barrier_thaw(old_freezer, f) },
        CYRSYNC_STATUS_BARRIER_REPLACED
    );
    w.kill();
    unsafe { cyrsync_barrier_free(old_freezer) };
}

// ---- 4. threads -----------------------------------------------------------

#[test]
fn the_freezers_own_slot_counts_during_the_freeze() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
    let dir = TempDir::new("bf-ownslot");
    let b = cyrsync::barrier::Barrier::open(dir.path(), Duration::from_secs(10)).unwrap();
    let inside = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let violations = AtomicU32::new(0);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            while !stop.load(SeqCst) {
                b.enter().unwrap();
                inside.store(true, SeqCst);
                for _ in 0..2000 {
                    std::hint::spin_loop();
                }
                inside.store(false, SeqCst);
                b.leave().unwrap();
            }
        });
        let mut frozen = 0;
        let start = Instant::now();
        while frozen < 300 && start.elapsed() < Duration::from_secs(20) {
            match b.freeze(Duration::from_secs(5)) {
                Ok(token) => {
                    frozen += 1;
                    for _ in 0..50 {
                        if inside.load(SeqCst) {
                            violations.fetch_add(1, SeqCst);
                            break;
                        }
                    }
                    assert!(b.thaw(token).unwrap().consistent());
                }
                Err(cyrsync::barrier::BarrierError::Held { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        stop.store(true, SeqCst);
        assert!(frozen > 10, "{frozen} freezes");
    });
    assert_eq!(
        violations.load(SeqCst),
        0,
        "a thread of the freezer's process was inside a consistent freeze"
    );
}

#[test]
fn thaw_validates_the_handle_before_consuming_and_a_dropped_token_thaws() {
    let dir = TempDir::new("bf-thaw");
    let c = dir.c();
    let (mut a, mut other) = (std::ptr::null_mut(), std::ptr::null_mut());
    unsafe {
        assert_eq!(cyrsync_barrier_open(c.as_ptr(), 0, &mut a), OK);
        assert_eq!(cyrsync_barrier_open(c.as_ptr(), 0, &mut other), OK);
        let mut f = std::ptr::null_mut();
        assert_eq!(cyrsync_barrier_freeze(a, 5000, &mut f), OK);
        assert_eq!(
            cyrsync_barrier_thaw(std::ptr::null(), f),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        assert_eq!(
            cyrsync_barrier_thaw(other, f),
            CYRSYNC_STATUS_INVALID_ARGUMENT
        );
        // not consumed: still frozen, and the right handle thaws it
        let mut st: cyrsync_barrier_state = std::mem::zeroed();
        assert_eq!(cyrsync_barrier_status(other, &mut st), OK);
        assert!(st.frozen);
        assert_eq!(cyrsync_barrier_thaw(a, f), OK);
        assert_eq!(cyrsync_barrier_status(other, &mut st), OK);
        assert!(!st.frozen);
        // and a later freeze is not refused
        assert_eq!(cyrsync_barrier_freeze(other, 5000, &mut f), OK);
        assert_eq!(cyrsync_barrier_thaw(other, f), OK);
        cyrsync_barrier_free(a);
        cyrsync_barrier_free(other);
    }

    let b = cyrsync::barrier::Barrier::open(dir.path(), Duration::from_secs(5)).unwrap();
    let w = cyrsync::barrier::Barrier::open(dir.path(), Duration::from_secs(5)).unwrap();
    {
        let _token = b.freeze(Duration::from_secs(30)).unwrap();
        assert!(w.status().unwrap().frozen);
    }
    assert!(!w.status().unwrap().frozen, "a dropped token thaws");
    let start = Instant::now();
    w.enter().unwrap();
    w.leave().unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
    let t = w.freeze(Duration::from_secs(5)).unwrap();
    // a token of another barrier: refused, and its own barrier thawed
    assert!(matches!(
        b.thaw(t),
        Err(cyrsync::barrier::BarrierError::ForeignToken)
    ));
    assert!(!b.status().unwrap().frozen);
}

// ---- 5. more processes than slots -----------------------------------------

#[test]
fn more_processes_than_slots_still_work_and_are_frozen_out() {
    let dir = TempDir::new("bf-slots");
    // 4 slots: the first opener creates the file with that count.
    let mut holders: Vec<Proc> = (0..7)
        .map(|_| Proc::spawn(&["hold", s(dir.path()), "4"]))
        .collect();
    for h in &mut holders {
        assert_eq!(field(&h.line(), "inside"), OK);
    }
    let mut st: cyrsync_barrier_state = unsafe { std::mem::zeroed() };
    let c = dir.c();
    assert_eq!(unsafe { cyrsync_barrier_inspect(c.as_ptr(), &mut st) }, OK);
    assert_eq!(st.slot_count, 4);
    assert_eq!(st.inside_slots, 4);
    assert_eq!(st.overflow_inside, 3);

    // The freeze waits for all seven: the ones in slots and the others.
    let f = cyrsync::barrier::Barrier::open(dir.path(), Duration::from_secs(5)).unwrap();
    for (i, h) in holders.iter_mut().enumerate() {
        match f.freeze(Duration::from_millis(200)) {
            Err(cyrsync::barrier::BarrierError::DrainTimeout { .. }) => {}
            other => panic!("with {} writers inside: {other:?}", 7 - i),
        }
        h.tell();
        assert_eq!(field(&h.line(), "left"), OK);
    }
    let token = f.freeze(Duration::from_secs(5)).unwrap();
    assert!(f.thaw(token).unwrap().consistent());

    // A slotless writer killed inside: its count is reclaimed.
    let mut h = Proc::spawn(&["hold", s(dir.path()), "4"]);
    assert_eq!(field(&h.line(), "inside"), OK);
    h.kill();
    for h in holders {
        h.finish();
    }
    let token = f.freeze(Duration::from_secs(5)).unwrap();
    assert!(f.thaw(token).unwrap().consistent());
}

// ---- 6. a host that closes every descriptor --------------------------------

#[test]
fn a_host_closing_all_fds_does_not_make_a_live_writer_look_dead() {
    let dir = TempDir::new("bf-closefrom");
    let mut p = Proc::spawn(&["closefrom", s(dir.path())]);
    assert_eq!(p.line().trim(), "closed");
    let f = cyrsync::barrier::Barrier::open(dir.path(), Duration::from_secs(5)).unwrap();
    match f.freeze(Duration::from_millis(300)) {
        Err(cyrsync::barrier::BarrierError::DrainTimeout { busy, .. }) => {
            assert_eq!(busy.len(), 1, "{busy:?}")
        }
        Ok(t) => panic!("freeze with a live writer inside: {:?}", f.thaw(t).unwrap()),
        Err(e) => panic!("{e}"),
    }
    p.tell();
    let line = p.line();
    assert_eq!(
        line.trim(),
        "after leave=0 freeze=0 thaw=0 reused=ok",
        "the writer carries on after the host closed its fds"
    );
    p.finish();
    let token = f.freeze(Duration::from_secs(5)).unwrap();
    assert!(f.thaw(token).unwrap().consistent());
}

// ---- 7. status only reads --------------------------------------------------

#[test]
fn inspect_creates_nothing_and_works_read_only() {
    let dir = TempDir::new("bf-inspect");
    let missing = dir.path().join("no-such-lock-dir");
    let (out, _) = run(&["inspect", s(&missing)]);
    assert_eq!(field(&out, "inspect"), CYRSYNC_STATUS_IO_ERROR);
    assert!(!missing.exists(), "no directory created");
    let (out, _) = run(&["inspect", s(dir.path())]);
    assert_eq!(field(&out, "inspect"), CYRSYNC_STATUS_IO_ERROR);
    assert!(!barrier_file(dir.path()).exists(), "no file created");

    let mnt = dir.path().join("mnt");
    let d = driver().display().to_string();
    let m = mnt.display();
    let script = format!(
        "mkdir {m}/l && {d} open {m}/l 64 >/dev/null && chmod 0644 {m}/l/cyrsync-barrier && \
         mount -o remount,ro {m} && {d} inspect {m}/l && {d} setuid 65534 inspect {m}/l"
    );
    let Some(out) = tiny_tmpfs("1m", &mnt, &script) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["inspect=0 slots=64 live=0", "inspect=0 slots=64 live=0"],
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_writer_killed_inside_and_not_yet_reaped_is_dead() {
    let dir = TempDir::new("bf-zombie");
    let mut p = Proc::spawn(&["hold", s(dir.path())]);
    assert_eq!(field(&p.line(), "inside"), OK);
    // SIGKILL without waiting: a zombie until reaped, with its pid and start
    // time still in /proc
    unsafe { libc::kill(p.child.id() as i32, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(100));
    let f = cyrsync::barrier::Barrier::open(dir.path(), Duration::from_secs(5)).unwrap();
    let token = f
        .freeze(Duration::from_secs(2))
        .expect("the dead writer's slot is reclaimed");
    assert!(f.thaw(token).unwrap().consistent());
    p.kill();
}

#[test]
fn bad_arguments_of_the_new_calls_give_statuses() {
    capture_log();
    let dir = TempDir::new("bf-args");
    let c = dir.c();
    let mut b = std::ptr::null_mut();
    unsafe {
        assert_eq!(
            cyrsync_barrier_open_slots(c.as_ptr(), 0, (1 << 20) + 1, &mut b),
            CYRSYNC_STATUS_INVALID_ARGUMENT
        );
        assert!(b.is_null());
        assert_eq!(
            cyrsync_barrier_open_slots(std::ptr::null(), 0, 8, &mut b),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        let mut st: cyrsync_barrier_state = std::mem::zeroed();
        assert_eq!(
            cyrsync_barrier_inspect(std::ptr::null(), &mut st),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        assert_eq!(
            cyrsync_barrier_inspect(c.as_ptr(), std::ptr::null_mut()),
            CYRSYNC_STATUS_NULL_PARAMETER
        );
        let empty = cs(b"");
        assert_eq!(
            cyrsync_barrier_inspect(empty.as_ptr(), &mut st),
            CYRSYNC_STATUS_INVALID_ARGUMENT
        );
    }
    assert!(logged("too many slots"));
    assert!(logged("empty lock directory"));
}

#[test]
fn another_instances_barrier_is_not_a_replaced_file() {
    let a = TempDir::new("bf-inst-a");
    let b = TempDir::new("bf-inst-b");
    // A process of another instance, inside its own barrier.
    let mut other = Proc::spawn(&["hold", s(a.path())]);
    assert_eq!(field(&other.line(), "inside"), OK);
    let f = cyrsync::barrier::Barrier::open(b.path(), Duration::from_secs(5)).unwrap();
    for _ in 0..3 {
        let token = f.freeze(Duration::from_secs(5)).unwrap();
        let v = f.thaw(token).unwrap();
        assert!(v.consistent(), "{v:?}");
    }
    other.tell();
    assert_eq!(field(&other.line(), "left"), OK);
    other.finish();
}

#[test]
fn renamed_away_under_live_writers_is_not_consistent() {
    let dir = TempDir::new("bf-renamed");
    let file = barrier_file(dir.path());
    let mut w = Proc::spawn(&["write", s(dir.path())]);
    assert_eq!(w.line().trim(), "writing");
    std::fs::rename(&file, dir.path().join("cyrsync-barrier.old")).unwrap();
    let (out, err) = run(&["freeze", s(dir.path()), "20"]);
    assert_eq!(field(&out, "freeze"), OK, "{err}");
    assert_eq!(
        field(&out, "thaw"),
        CYRSYNC_STATUS_BARRIER_REPLACED,
        "writers on the renamed file: {err}"
    );
    w.kill();
}
