//! Running a plan for a channel: state in, execute, state out, counters to
//! the log; and the whole rolling-mode cycle ([`run_channel`]): the sync
//! log reader, the planner, the executor and the sync log writer for
//! deferrals, wired together. This is the Rust API the C API
//! (`crate::ffi::syncclient`) calls.

use std::path::{Path, PathBuf};

use super::exec::{execute, Clock, Config, RunReport, Target};
use super::plan::{CohortOrder, Plan};
use super::record::Record;
use super::state::{
    channel_dir, ChannelFiles, ChannelState, DeferLog, QUARANTINE_FILE, STATE_FILE,
};
use crate::synclog::{self, Begun, Reader, Writer};

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
                dir: ch.dir.to_path_buf(),
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
        "SYNCNOTICE: sync run finished channel=<{label}> policy=<{}> items=<{}> done=<{}> deferred=<{}> promoted=<{}> retried=<{}> quarantined=<{}> skipped=<{}> bailed=<{}>",
        config.policy.letter(),
        plan.items,
        c.done,
        c.deferred,
        c.promoted,
        c.retried,
        c.quarantined,
        c.skipped,
        report.outcome.reply().code(),
    );
    report
}

/// Settings of a run: the executor's and the order of mailbox cohorts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    pub config: Config,
    pub cohort_order: CohortOrder,
}

/// A sync log channel: imapd.conf's `configdirectory` and the channel's
/// name (`None`: the default channel).
#[derive(Debug, Clone, Copy)]
pub struct Channel<'a> {
    pub config_dir: &'a Path,
    pub name: Option<&'a [u8]>,
}

impl<'a> Channel<'a> {
    /// The channel `name`, `""` being the default channel.
    pub fn new(config_dir: &'a Path, name: &'a [u8]) -> Self {
        Channel {
            config_dir,
            name: (!name.is_empty()).then_some(name),
        }
    }
    /// `<config_dir>/sync[/<name>]`.
    pub fn dir(&self) -> PathBuf {
        channel_dir(self.config_dir, self.name)
    }
}

/// Deferrals through the sync log writer, to one channel.
pub struct WriterLog<'a> {
    pub writer: &'a Writer,
    pub channel: Option<&'a [u8]>,
}

impl DeferLog for WriterLog<'_> {
    fn append(&mut self, record: &Record) -> Result<(), String> {
        self.writer
            .append(
                self.channel,
                record.kind,
                &record.arg1,
                record.arg2.as_deref(),
            )
            .map_err(|e| e.to_string())
    }
}

/// Execute a plan with its cohorts in `settings`' order: one-shot without
/// a channel (LOCKED is an error, as in C), or deferring to the channel's
/// log through the sync log writer, with its state and quarantine files.
/// An error only when the channel is unusable (bad name, writer refused);
/// the plan is then untouched and may be executed again.
pub fn execute_plan(
    plan: &mut Plan,
    target: &mut dyn Target,
    clock: &mut dyn Clock,
    settings: Settings,
    channel: Option<Channel<'_>>,
) -> Result<RunReport, synclog::Error> {
    let Some(channel) = channel else {
        plan.order_cohorts(settings.cohort_order);
        return Ok(run_plan(plan, target, None, clock, settings.config));
    };
    if let Some(n) = channel.name {
        synclog::check_channel(n)?;
    }
    let writer = synclog::Config::from_options(channel.config_dir, None, None, true, false)
        .and_then(Writer::new)?;
    let mut log = WriterLog {
        writer: &writer,
        channel: channel.name,
    };
    let dir = channel.dir();
    plan.order_cohorts(settings.cohort_order);
    let run = ChannelRun {
        dir: &dir,
        name: channel.name,
        log: &mut log,
    };
    Ok(run_plan(plan, target, Some(run), clock, settings.config))
}

/// What one pass of [`run_channel`] did.
#[derive(Debug)]
pub enum Pass {
    /// The channel had no log: nothing to do (C's `IMAP_AGAIN`).
    NoLog,
    /// The log was run; `report.bailed()` says whether it was kept for the
    /// next pass.
    Ran { plan: Box<Plan>, report: RunReport },
}

/// The whole rolling-mode cycle for one channel with cyrsync's reader:
/// take the channel's log (`log` renamed to `log-run`, or a `log-run` left
/// by an earlier pass), plan its items, execute them, and end the reader
/// (unlinking `log-run`) unless the run bailed out (then it is reprocessed
/// next time, as in Cyrus). Errors: the channel is busy (another reader),
/// unusable, or the log could not be taken or ended (`Error::Kept` when it
/// was not read to the end: it is kept for the next pass).
pub fn run_channel(
    channel: Channel<'_>,
    target: &mut dyn Target,
    clock: &mut dyn Clock,
    settings: Settings,
) -> Result<Pass, synclog::Error> {
    let mut reader = Reader::for_channel(channel.config_dir, channel.name)?;
    if reader.begin()? == Begun::NoLog {
        return Ok(Pass::NoLog);
    }
    let mut plan = Plan::new();
    while let Some(item) = reader.next_item() {
        plan.add_item(item.kind, item.arg1, item.arg2, &mut |n| {
            target.mboxname_to_userid(n)
        });
    }
    let report = execute_plan(&mut plan, target, clock, settings, Some(channel))?;
    if report.bailed() {
        log::error!(
            "Processing sync log file {} failed: {}",
            reader
                .work_file()
                .map_or_else(String::new, |p| p.display().to_string()),
            target.describe(report.outcome.reply().code())
        );
    } else {
        reader.end()?;
    }
    Ok(Pass::Ran {
        plan: Box::new(plan),
        report,
    })
}
