//! Worker processes: the host's own executable, re-run with a hidden first argument, doing one
//! job for the host in a process of its own.
//!
//! A host opts in by calling [`run_if_worker`] first thing in `main`. In a normal run it
//! returns at once; in a process the loader started as a worker it does the worker's job and
//! exits, so the rest of `main` never runs there. Re-running the host's own binary (rather
//! than shipping a separate `plugin-worker` executable beside it) means there is nothing extra
//! to build, install or find, and the worker is always the same build as the host that
//! started it: a mismatch between the two cannot happen by accident.
//!
//! The modes:
//!
//! 1. `manifest`: opens one plugin file and reads its manifest, for the doctor (which runs
//!    none of the author's code in the host). It lives with the doctor (`doctor/reader.rs`),
//!    both of its ends in one file.
//! 2. `serve` (`serve.rs`): the child process of one isolated plugin (process isolation).
//!
//! The host's side starts workers through `launch.rs`, which knows only the command line.

mod serve;

use std::ffi::OsStr;

pub use crate::launch::WORKER_ARG;

/// The version of the protocol between a host and its worker processes. Both must speak the
/// same: each refuses the other otherwise, naming both versions.
pub const PROTOCOL_VERSION: u32 = crate::isolate::wire::PROTOCOL;

/// Runs the worker and exits the process if this process was started as a loader worker;
/// returns at once otherwise.
///
/// Call it first in `main`, before parsing arguments or setting up logging, in every host that
/// uses a feature that starts workers. A host that does not call it cannot use those features:
/// the loader notices (the worker's handshake never comes) and reports it.
///
/// ```no_run
/// fn main() {
///     loader::worker::run_if_worker();
///     run_the_host();
/// }
/// # fn run_the_host() {}
/// ```
#[allow(
    clippy::needless_doctest_main,
    reason = "the example is about what goes first in `main`"
)]
pub fn run_if_worker() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(WORKER_ARG)) {
        return;
    }
    let mode = args.next();
    let code = match mode.as_deref().and_then(OsStr::to_str) {
        Some(crate::doctor::reader::MODE) => crate::doctor::reader::run(args),
        Some("serve") => serve::serve(),
        Some(other) => {
            eprintln!("loader worker: unknown mode {other:?}");
            2
        }
        None => {
            eprintln!("loader worker: no mode given after {WORKER_ARG}");
            2
        }
    };
    std::process::exit(code);
}
