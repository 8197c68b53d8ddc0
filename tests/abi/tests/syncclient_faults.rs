//! A sync_client pass under crashes and full disks: `tests/c/fault_syncclient.c`
//! runs one `cyrsync_syncclient_run_channel` cycle (reader begin, plan,
//! execute with deferrals and a quarantine, state, reader end) against a
//! scripted mock target, through the C ABI, with the fault interposer.
//!
//! Killed at every system call it makes on the channel's directory, and
//! failed with ENOSPC at every one:
//!
//! - afterwards every item of the log is replicated (per the mock's
//!   record), in the channel's log, in log-run or in log-quarantine — never
//!   nowhere;
//! - log-state and log-quarantine are whole (old or new), and a full disk
//!   leaves no temporary file;
//! - no quarantine decision is lost: the next passes, without faults, set
//!   the failing item aside (once) without bailing, replicate every
//!   unlocked item and leave each locked item in the log exactly once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use cyrsync_abi_tests::cprog::compile;
use cyrsync_abi_tests::fault::{Call, Interposer, Run};
use cyrsync_abi_tests::TempDir;

const LOG: &str = "\
MAILBOX user.a
MAILBOX user.locked
USER b
QUOTA user.locked
SEEN c user.c
UNMAILBOX shared.bad
MAILBOX user.d
SEEN locked user.locked.x
";
const LOCKED: [&str; 3] = [
    "MAILBOX user.locked",
    "QUOTA user.locked",
    "SEEN locked user.locked.x",
];
const BAD: &str = "UNMAILBOX shared.bad";
/// The failing item has made one run bail already: this pass quarantines it
/// (sync_quarantine_after 2).
const STATE: &str = "failed 1 UNMAILBOX shared.bad\n";

struct Scene {
    _dir: TempDir,
    conf: PathBuf,
    chan: PathBuf,
    replica: PathBuf,
    exe: PathBuf,
}

impl Scene {
    fn new(tag: &str) -> Scene {
        let dir = TempDir::new(tag);
        let exe = dir.path().join("fault_syncclient");
        compile("fault_syncclient.c", &[], &exe);
        let conf = dir.path().join("conf");
        let chan = conf.join("sync/ch");
        let replica = dir.path().join("replica");
        Scene {
            conf,
            chan,
            replica,
            exe,
            _dir: dir,
        }
    }

    /// The starting state: the log, one earlier failure, nothing else.
    fn setup(&self) {
        let _ = std::fs::remove_dir_all(&self.conf);
        std::fs::create_dir_all(&self.chan).unwrap();
        std::fs::write(self.chan.join("log"), LOG).unwrap();
        std::fs::write(self.chan.join("log-state"), STATE).unwrap();
        let _ = std::fs::remove_file(&self.replica);
    }

    fn pass(&self, policy: &str) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg(&self.conf)
            .arg("ch")
            .arg(&self.replica)
            .arg(policy)
            .arg("2");
        c
    }

    fn lines(&self, file: &str) -> Vec<String> {
        let path = if file == "replica" {
            self.replica.clone()
        } else {
            self.chan.join(file)
        };
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Every item is somewhere; the files are whole.
    fn assert_nothing_lost(&self, what: &str) {
        let mut places = BTreeSet::new();
        for f in ["replica", "log", "log-run", "log-quarantine"] {
            places.extend(self.lines(f));
        }
        for item in LOG.lines() {
            assert!(
                places.contains(item),
                "{what}: {item} is nowhere: {places:?}"
            );
        }
        for line in self.lines("log-state") {
            assert!(
                line.starts_with('#')
                    || [
                        "deferred ",
                        "failed ",
                        "quarantined ",
                        "quarantine-reason ",
                        "runs ",
                        "last-run ",
                    ]
                    .iter()
                    .any(|t| line.starts_with(t)),
                "{what}: log-state has a broken line {line:?}"
            );
        }
        for line in self.lines("log-quarantine") {
            assert!(
                LOG.lines().any(|l| l == line),
                "{what}: quarantine {line:?}"
            );
        }
    }

    /// Recovery: two passes without faults, then the promised end state.
    fn assert_recovers(&self, policy: &str, what: &str) {
        for n in 0..2 {
            let out = self.pass(policy).output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{what}: recovery pass {n}: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                stdout.contains("bailed=0"),
                "{what}: recovery pass {n} bailed (quarantine decision lost?): {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(self.lines("log-quarantine"), [BAD], "{what}");
        let replica = self.lines("replica");
        for item in LOG.lines() {
            if LOCKED.contains(&item) || item == BAD {
                assert!(!replica.iter().any(|r| r == item), "{what}: {item}");
            } else {
                assert!(
                    replica.iter().any(|r| r == item),
                    "{what}: {item} not replicated"
                );
            }
        }
        let mut log = self.lines("log");
        log.sort();
        assert_eq!(log, LOCKED, "{what}: each locked item once in the next log");
        assert!(!self.chan.join("log-run").exists(), "{what}");
        for tmp in ["log-state.tmp", "log-quarantine.tmp"] {
            assert!(!self.chan.join(tmp).exists(), "{what}: {tmp} left");
        }
    }
}

fn check_policy(policy: &str) {
    let scene = Scene::new(&format!("scf-{policy}"));
    let ip = Interposer::get();
    let scope: [&Path; 1] = [&scene.chan];

    // a clean pass: the baseline the faults are measured against
    scene.setup();
    scene.assert_recovers(policy, "clean");

    let mut kills = 0;
    let tried = ip.at_every_call(
        &scope,
        || scene.setup(),
        || scene.pass(policy),
        |_| true,
        "kill",
        |call: &Call, run: &Run| {
            let what = format!(
                "policy {policy}, kill at {} #{} {}",
                call.func, call.nth, call.path
            );
            run.assert_no_signal(&what);
            assert!(run.killed(), "{what}: not killed: {}", run.stdout);
            kills += 1;
            scene.assert_nothing_lost(&what);
            scene.assert_recovers(policy, &what);
        },
    );
    assert!(tried >= 20, "a pass makes more calls than {tried}");
    assert_eq!(kills, tried);

    let mut failed = 0;
    let tried = ip.at_every_call(
        &scope,
        || scene.setup(),
        || scene.pass(policy),
        |c| {
            ["write", "fsync", "fdatasync", "rename", "open", "ftruncate"]
                .contains(&c.func.as_str())
        },
        "ENOSPC",
        |call: &Call, run: &Run| {
            let what = format!(
                "policy {policy}, ENOSPC at {} #{} {}",
                call.func, call.nth, call.path
            );
            run.assert_no_signal(&what);
            if !run.status.success() || run.stdout.contains("bailed=1") {
                failed += 1;
            }
            for tmp in ["log-state.tmp", "log-quarantine.tmp"] {
                assert!(!scene.chan.join(tmp).exists(), "{what}: {tmp} left");
            }
            scene.assert_nothing_lost(&what);
            scene.assert_recovers(policy, &what);
        },
    );
    eprintln!("policy {policy}: {kills} kill points, {tried} ENOSPC points ({failed} failed the pass), items lost 0");
}

#[test]
fn a_pass_killed_or_out_of_space_at_every_call_loses_nothing_policy_d() {
    check_policy("D");
}

#[test]
fn a_pass_killed_or_out_of_space_at_every_call_loses_nothing_policy_b() {
    check_policy("B");
}

#[test]
fn a_pass_killed_or_out_of_space_at_every_call_loses_nothing_policy_c() {
    check_policy("C");
}
