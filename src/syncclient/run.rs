//! Running a plan for a channel: state in, execute, state out, counters to
//! the log. The sync log reader and writer are wired in by the callers
//! (`crate::ffi::syncclient`, the tests).

use std::path::Path;

use super::exec::{execute, Clock, Config, RunReport, Target};
use super::plan::Plan;
use super::state::{ChannelFiles, ChannelState, DeferLog, QUARANTINE_FILE, STATE_FILE};

/// Build a plan from any source of items, asking the target for
/// `mboxname_to_userid`.
pub fn plan_with<'i, I>(items: I, target: &mut dyn Target) -> Plan
where
    I: IntoIterator<Item = (&'i [u8], &'i [u8], Option<&'i [u8]>)>,
{
    let mut plan = Plan::new();
    for (kind, a1, a2) in items {
        plan.add_item(kind, a1, a2, &mut |n| target.mboxname_to_userid(n));
    }
    plan.optimise();
    plan
}

/// A channel to run for: its directory (`<config_dir>/sync[/<name>]`), its
/// name for messages (`None` for the default channel) and where deferred
/// records are appended.
pub struct ChannelRun<'a> {
    pub dir: &'a Path,
    pub name: Option<&'a [u8]>,
    pub log: &'a mut dyn DeferLog,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Execute a plan. With a channel: failure counts come from its state
/// file, deferrals go to its log, quarantined items to its quarantine file,
/// and the state file is updated afterwards. Logs the run's counters in
/// Cyrus's `SYNCNOTICE:` style.
pub fn run_plan(
    plan: &mut Plan,
    target: &mut dyn Target,
    channel: Option<ChannelRun<'_>>,
    clock: &mut dyn Clock,
    config: Config,
) -> RunReport {
    let report;
    let label;
    match channel {
        None => {
            label = "-".to_string();
            report = execute(plan, target, None, clock, config);
        }
        Some(ch) => {
            label = ch
                .name
                .map_or_else(|| "\"\"".to_string(), |n| n.escape_ascii().to_string());
            let state_path = ch.dir.join(STATE_FILE);
            let mut state = ChannelState::load(&state_path).unwrap_or_else(|e| {
                log::error!(
                    "IOERROR: cannot read sync state file={} error=<{e}>",
                    state_path.display()
                );
                ChannelState::default()
            });
            let mut files = ChannelFiles {
                log: ch.log,
                state: &state,
                quarantine_path: ch.dir.join(QUARANTINE_FILE),
            };
            report = execute(plan, target, Some(&mut files), clock, config);
            state.update(&report, now());
            if let Err(e) = state.save(&state_path) {
                log::error!(
                    "IOERROR: cannot write sync state file={} error=<{e}>",
                    state_path.display()
                );
            }
        }
    }
    let c = report.counters;
    log::info!(
        "SYNCNOTICE: sync run finished channel=<{label}> policy=<{}> items=<{}> done=<{}> deferred=<{}> promoted=<{}> retried=<{}> quarantined=<{}> bailed=<{}>",
        config.policy.letter(),
        plan.items,
        c.done,
        c.deferred,
        c.promoted,
        c.retried,
        c.quarantined,
        report.outcome.reply().code(),
    );
    report
}
