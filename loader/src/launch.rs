//! Starting worker processes (the host's side): the command line that makes a program run
//! `loader::worker::run_if_worker()`'s mode `mode`. The worker's side is
//! `worker/`; each feature that starts workers (the doctor, process isolation) adds its own
//! arguments and stdio.

use std::{path::Path, process::Command};

/// The hidden argument that marks a worker process. It is followed by the mode's name and the
/// mode's own arguments.
pub const WORKER_ARG: &str = "--native-plugins-worker";

/// A command that starts `program` (or, when `None`, this executable) as a worker in `mode`.
/// Hosts whose own `main` cannot call `loader::worker::run_if_worker()` (test binaries) name a small program
/// that does.
///
/// # Errors
/// `program` is `None` and the path of the running executable cannot be found.
pub(crate) fn command_at(program: Option<&Path>, mode: &str) -> std::io::Result<Command> {
    let mut command = match program {
        Some(program) => Command::new(program),
        None => Command::new(std::env::current_exe()?),
    };
    command.arg(WORKER_ARG).arg(mode);
    Ok(command)
}
