//! `cyrsync withlock` and `cyrsync barrier`.

use std::ffi::OsString;
use std::process::ExitCode;

pub fn withlock_main(_args: Vec<OsString>) -> ExitCode {
    eprintln!("cyrsync withlock: not implemented yet");
    ExitCode::from(2)
}

pub fn main(_args: Vec<OsString>) -> ExitCode {
    eprintln!("cyrsync barrier: not implemented yet");
    ExitCode::from(2)
}
