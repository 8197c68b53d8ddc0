//! The fault-injection harness shared by every area's tests.
//!
//! Two ways to make a file system call fail:
//!
//! - [`Interposer`]: `tests/c/faultinject.c` built as an `LD_PRELOAD` library.
//!   A child process (usually a C driver linked with libcyrsync.a, so the
//!   fault goes through the C ABI) runs one operation; the interposer counts
//!   its calls on the paths of a scope and fails the Nth call of a function
//!   with an errno, makes it short, or SIGKILLs the process right there.
//!   [`Interposer::calls`] lists an operation's calls from a clean run, and
//!   [`Interposer::at_every_call`] injects the same fault at each of them in
//!   turn: every index, not a sample.
//! - [`tiny_tmpfs`]: a real full file system, a small tmpfs mounted in a
//!   private mount namespace (`unshare -m`), for the faults a real kernel
//!   gives (ENOSPC at the block the write needs, not at a call we chose).
//!   Needs root; tests skip with a message when it is not available.
//!
//! See the top of `tests/c/faultinject.c` for the exact grammar of a fault.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::sync::OnceLock;

use crate::cprog;

/// One counted call from a trace: the function (`write`, `open`, ...,
/// aliases folded: `pwrite64` counts as `write`), its ordinal among the calls
/// of that function, and the path it was on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub func: String,
    pub nth: u32,
    pub path: String,
}

/// A fault: at the `nth` call of `func` (`"*"`: the nth call of any
/// function), do `action` (an errno name, `short`, `short+ERRNO` or `kill`);
/// with `repeat`, at every later call too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub func: String,
    pub nth: u32,
    pub action: String,
    pub repeat: bool,
}

impl Fault {
    pub fn new(func: &str, nth: u32, action: &str) -> Fault {
        Fault {
            func: func.into(),
            nth,
            action: action.into(),
            repeat: false,
        }
    }

    /// The same fault at this call and at every later one (a disk that
    /// stays full).
    pub fn from_then_on(mut self) -> Fault {
        self.repeat = true;
        self
    }

    fn spec(&self) -> String {
        let dots = if self.repeat { ".." } else { "" };
        format!("{}@{}{}={}", self.func, self.nth, dots, self.action)
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.spec())
    }
}

/// What a child run under faults did.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Whether the interposer injected a fault (the trace has a FAULT line).
    pub injected: bool,
}

impl Run {
    /// The signal that ended the process, if any.
    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }

    /// Killed by the injected SIGKILL.
    pub fn killed(&self) -> bool {
        self.signal() == Some(libc::SIGKILL)
    }

    /// Assert that no signal other than an injected SIGKILL ended it.
    pub fn assert_no_signal(&self, what: &str) {
        if let Some(sig) = self.signal() {
            assert!(
                sig == libc::SIGKILL && self.injected,
                "{what}: died of signal {sig}\nstdout:\n{}\nstderr:\n{}",
                self.stdout,
                self.stderr
            );
        }
    }

    /// Lines of stdout.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.stdout.lines()
    }
}

/// The interposer library, built once per test run.
pub struct Interposer {
    so: PathBuf,
}

impl Interposer {
    /// Build `tests/c/faultinject.c` (once per target directory and source).
    pub fn get() -> &'static Interposer {
        static SO: OnceLock<Interposer> = OnceLock::new();
        SO.get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let dir = exe.ancestors().nth(3).unwrap().join("c-fault");
            std::fs::create_dir_all(&dir).unwrap();
            // One file per process: test binaries build it concurrently.
            let so = dir.join(format!("faultinject-{}.so", std::process::id()));
            let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
                .args(["-shared", "-fPIC", "-O1", "-g", "-Wall", "-Werror", "-o"])
                .arg(&so)
                .arg(cprog::repo().join("tests/c/faultinject.c"))
                .arg("-ldl")
                .output()
                .expect("run cc");
            assert!(
                status.status.success(),
                "cc failed for faultinject.c:\n{}",
                String::from_utf8_lossy(&status.stderr)
            );
            Interposer { so }
        })
    }

    /// Run `cmd` with `faults` injected into its calls on paths below
    /// `scope`.
    pub fn run(&self, mut cmd: Command, scope: &[&Path], faults: &[Fault]) -> Run {
        let trace = scratch_file("trace");
        let spec: Vec<String> = faults.iter().map(Fault::spec).collect();
        let out = cmd
            .env("LD_PRELOAD", &self.so)
            .env("CYRSYNC_FAULT_SCOPE", join_scope(scope))
            .env("CYRSYNC_FAULT", spec.join(","))
            .env("CYRSYNC_FAULT_TRACE", &trace)
            .output()
            .expect("spawn the child");
        let injected = std::fs::read_to_string(&trace)
            .map(|t| t.lines().any(|l| l.starts_with("FAULT ")))
            .unwrap_or(false);
        let _ = std::fs::remove_file(&trace);
        run_of(out, injected)
    }

    /// The counted calls a clean run of `cmd` makes on `scope`, in order.
    pub fn calls(&self, mut cmd: Command, scope: &[&Path]) -> (Run, Vec<Call>) {
        let trace = scratch_file("trace");
        let out = cmd
            .env("LD_PRELOAD", &self.so)
            .env("CYRSYNC_FAULT_SCOPE", join_scope(scope))
            .env("CYRSYNC_FAULT", "")
            .env("CYRSYNC_FAULT_TRACE", &trace)
            .output()
            .expect("spawn the child");
        let text = std::fs::read_to_string(&trace).unwrap_or_default();
        let _ = std::fs::remove_file(&trace);
        let calls = text
            .lines()
            .filter(|l| !l.starts_with("FAULT "))
            .filter_map(|l| {
                let mut f = l.splitn(4, ' ');
                let _seq = f.next()?;
                Some(Call {
                    func: f.next()?.to_owned(),
                    nth: f.next()?.parse().ok()?,
                    path: f.next().unwrap_or("").to_owned(),
                })
            })
            .collect();
        (run_of(out, false), calls)
    }

    /// Enumerate the calls of one operation from a clean run of `make()`
    /// (after `setup()`), then, for each call `select` keeps, run `setup()`
    /// and `make()` again with `action` injected at exactly that call and
    /// hand the outcome to `check`. Returns how many points were tried.
    ///
    /// `setup` must bring the files back to the same starting state, so
    /// that every run makes the same calls up to the fault.
    pub fn at_every_call(
        &self,
        scope: &[&Path],
        mut setup: impl FnMut(),
        make: impl Fn() -> Command,
        select: impl Fn(&Call) -> bool,
        action: &str,
        mut check: impl FnMut(&Call, &Run),
    ) -> usize {
        setup();
        let (clean, calls) = self.calls(make(), scope);
        clean.assert_no_signal("the clean run");
        assert!(
            clean.status.success(),
            "the clean run failed: {}\n{}",
            clean.stdout,
            clean.stderr
        );
        let mut tried = 0;
        for call in calls.iter().filter(|c| select(c)) {
            setup();
            let run = self.run(make(), scope, &[Fault::new(&call.func, call.nth, action)]);
            check(call, &run);
            tried += 1;
        }
        tried
    }
}

fn join_scope(scope: &[&Path]) -> String {
    scope
        .iter()
        .map(|p| p.to_str().expect("scope paths are UTF-8").to_owned())
        .collect::<Vec<_>>()
        .join(":")
}

fn scratch_file(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("cyrsync-fault-{tag}-{}-{n}", std::process::id()))
}

fn run_of(out: Output, injected: bool) -> Run {
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        injected,
    }
}

/// Whether this process may mount a tmpfs in a private mount namespace.
pub fn can_mount_tmpfs() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs \"$d\" && umount \"$d\" && rmdir \"$d\"")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

/// Run the shell `script` in a private mount namespace where `mountpoint`
/// (created if missing) is a fresh tmpfs of `size` (mount's syntax: `64k`,
/// `1m`). The tmpfs, and everything written to it, is gone when the script
/// ends; the script prints what the test needs to see. `None`, after a
/// message on stderr, where this process cannot mount (not root, no
/// unshare): the caller skips.
pub fn tiny_tmpfs(size: &str, mountpoint: &Path, script: &str) -> Option<Output> {
    if !can_mount_tmpfs() {
        eprintln!(
            "SKIP: a real full file system needs root and unshare -m (mount a tmpfs in a \
             private namespace); not available here"
        );
        return None;
    }
    std::fs::create_dir_all(mountpoint).unwrap();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "set -e; mount -t tmpfs -o size={size},mode=0755 tmpfs '{}'; set +e\n{script}",
            mountpoint.display()
        ))
        .output()
        .expect("run unshare");
    Some(out)
}
