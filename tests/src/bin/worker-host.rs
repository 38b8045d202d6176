//! The smallest host that can run loader workers: its `main` calls
//! `loader::worker::run_if_worker()` and nothing else.
//!
//! Test binaries are libtest's, which do not call `run_if_worker`, so integration tests name
//! this program with `HostBuilder::worker_program(env!("CARGO_BIN_EXE_worker-host"))` wherever
//! the loader starts a worker (the doctor's manifest reader, for one).
#![forbid(unsafe_code)]

fn main() {
    loader::worker::run_if_worker();
    eprintln!("worker-host runs only as a loader worker (started by the loader)");
    std::process::exit(2);
}
