//! `cyrsync channel`.

use std::ffi::OsString;
use std::process::ExitCode;

pub fn main(_args: Vec<OsString>) -> ExitCode {
    eprintln!("cyrsync channel: not implemented yet");
    ExitCode::from(2)
}
