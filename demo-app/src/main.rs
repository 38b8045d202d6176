//! `demo-app`: the reference host for native plugins, meant to be copied from.
//!
//! ```text
//! demo-app [--plugins DIR] [--data DIR] [--config FILE] [-v] <COMMAND>
//!
//!   list [--json]                       every plugin file, its state and any error
//!   describe <plugin> [--json]          manifest, capabilities declared and granted
//!   call <plugin:command> [JSON]        run a command, print its JSON result (--pretty)
//!   emit <type> [JSON] [--collect]      publish an event (and collect the answers)
//!   shell                               the same commands at a prompt, host kept loaded
//!   watch [--json] [--debounce-ms N] [--for-ms N]
//!                                       reload changed files, print lifecycle events live
//!   trace [--json] [call ...|emit ...]  the flight recorder as a causal tree
//!   stats [--json] [call ...|emit ...]  per-plugin counters, queues and latencies
//!   doctor [--json]                     examine the folder without activating; exit 1 on
//!                                       problems
//!   dead-letters [--json]               events and messages that could not be delivered
//!   new-plugin <name> [--path DIR] [--api-path PATH]
//!                                       scaffold a plugin crate
//!   bench [--json] [--quick]            the benchmark suite: ours against the raw baseline
//!                                       in the same run (use a release build)
//! ```
//!
//! Without `--plugins` (or `plugins_dir` in the config), the example plugins that cargo built
//! next to this binary are copied into `plugins/` beside it and loaded from there, so
//! `cargo run -p demo-app -- list` works on a fresh clone.
//!
//! Exit codes: 0 success, 1 failed operation, 2 bad usage. Errors are one line on stderr,
//! `error: <message>`; logs go to stderr too (`-v`, `RUST_LOG`).
//!
//! Progress notes ("loading 8 plugins…") go to stderr, and only when it is a terminal.
//!
//! How the pieces fit: `cli` is the command line, `session` resolves settings and loads the
//! host, `staging` fills the default plugins folder, `commands` computes and prints each
//! subcommand's answer (one module each), `shell` runs the same commands in a loop.
#![forbid(unsafe_code)]

mod cli;
mod clock;
mod commands;
mod error;
mod json;
mod progress;
mod session;
mod shell;
mod staging;

use std::process::ExitCode;

use clap::Parser;

use crate::{
    cli::{Cli, Command},
    error::AppError,
    session::{Session, Unloaded},
};

fn main() -> ExitCode {
    // A worker process the loader started (doctor's manifest reader, an isolated plugin) does
    // its job and exits here.
    loader::worker::run_if_worker();
    let cli = Cli::parse();
    init_logging(cli.global.verbose);
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_code()
        }
    }
}

fn run(cli: &Cli) -> Result<(), AppError> {
    commands::check_usage(&cli.command)?;
    match &cli.command {
        // Needs no host at all.
        Command::NewPlugin(args) => commands::new_plugin::run(args),
        // Builds its own hosts over scratch folders, in this fresh process.
        Command::Bench(args) => commands::bench::run(args),
        // Must not activate anything: a host is built, the folder is not loaded.
        Command::Doctor(args) => {
            let unloaded = Unloaded::build(&cli.global)?;
            let report = commands::doctor::diagnose(&unloaded.host, &unloaded.plugins_dir)?;
            if args.json {
                commands::print_line(&json::to_text(&report, false)?)?;
            } else {
                commands::print_text(&commands::doctor::render_doctor(
                    &report,
                    cli.global.verbose > 0,
                ))?;
            }
            commands::doctor::unhealthy(&report).map_or(Ok(()), Err)
        }
        Command::Shell => shell::run(&Session::open(&cli.global)?),
        command => commands::run(&Session::open(&cli.global)?, command),
    }
}

/// Warnings by default, info with `-v`, debug with `-vv`; `RUST_LOG` directives are applied on
/// top, so `RUST_LOG=greeter=debug` adds one plugin's detail without silencing the rest.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .parse_default_env()
        .init();
}
