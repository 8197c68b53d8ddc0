//! `cyrsync`: the admin command line.
//!
//! ```text
//! cyrsync channel ...     inspect a sync log channel, dry-run a log's plan
//! cyrsync withlock ...    freeze the server, run a snapshot command, thaw
//! cyrsync barrier ...     show the global barrier's state
//! cyrsync metrics ...     channel and barrier figures for Prometheus
//! ```

use std::ffi::OsString;
use std::process::ExitCode;

mod barrier;
mod channel;
mod check;
mod conf;
mod json;
mod metrics;
mod report;

const USAGE: &str = "usage: cyrsync <command> [args]

commands:
  channel    inspect a sync log channel; dry-run the plan of a log file
  withlock   freeze writers, run a command on a consistent disk, thaw
  barrier    show the global barrier's state
  metrics    channel and barrier figures in the Prometheus text format

Run `cyrsync <command> --help` for a command's options.";

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let command = args.remove(0);
    match command.to_str() {
        Some("channel") => channel::main(args),
        Some("withlock") => barrier::withlock_main(args),
        Some("barrier") => barrier::main(args),
        Some("metrics") => metrics::main(args),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("cyrsync: unknown command {command:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Seconds since the epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
