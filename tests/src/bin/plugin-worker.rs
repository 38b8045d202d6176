//! The worker program of the integration tests' isolated plugins: test binaries are not hosts
//! whose `main` calls `loader::worker::run_if_worker`, so their hosts name this program
//! instead (`HostBuilder::worker_program`).
#![forbid(unsafe_code)]

fn main() {
    loader::worker::run_if_worker();
    eprintln!("plugin-worker: run by the loader only (with its hidden worker argument)");
    std::process::exit(2);
}
