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
//! Exit codes: 0 success, 1 failed operation, 2 bad usage, 130/143 stopped by SIGINT/SIGTERM.
//! Errors are one line on stderr,
//! `error: <message>`; logs go to stderr too (`-v`, `RUST_LOG`).
//!
//! Progress bars ("loading 37/100") go to stderr, and only when it is a terminal.
//!
//! Everything a plugin wrote (names, descriptions, errors, log messages) is printed
//! terminal-safe (`safe`). A closed stdout or stderr ends the process quietly with status 0.
//! Ctrl-C and SIGTERM deactivate the plugins and remove the temporary folder before the exit
//! with 130 or 143 (`stop`).
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
mod output;
mod progress;
mod safe;
mod session;
mod shell;
mod staging;
mod stop;
mod suggest;

use std::process::ExitCode;

use clap::CommandFactory;

use crate::{
    cli::{Cli, ColorWhen, Command},
    error::AppError,
    session::{Session, Unloaded},
};

fn main() -> ExitCode {
    // A worker process the loader started (doctor's manifest reader, an isolated plugin) does
    // its job and exits here.
    loader::worker::run_if_worker();
    let cli = Cli::parse_args();
    anstream::ColorChoice::write_global(match cli.global.color {
        ColorWhen::Auto => anstream::ColorChoice::Auto,
        ColorWhen::Always => anstream::ColorChoice::Always,
        ColorWhen::Never => anstream::ColorChoice::Never,
    });
    output::init_logging(cli.global.verbose, cli.global.quiet);
    output::set_quiet(cli.global.quiet);
    stop::install();
    let result = run(&cli);
    // After a signal the command's own outcome (often a cancelled call) is not news: the
    // plugins were shut down on purpose.
    let result = match stop::interrupted() {
        Some(code) => Err(AppError::Interrupted { code }),
        None => result,
    };
    stop::finish();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error @ (AppError::Closed | AppError::Interrupted { .. })) => error.exit_code(),
        Err(error) => {
            output::error(&error.to_string());
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
        Command::Completions(args) => {
            let mut out = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "demo-app", &mut out);
            commands::print_text(&String::from_utf8_lossy(&out))
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut out)?;
            commands::print_text(&String::from_utf8_lossy(&out))
        }
        Command::Shell => shell::run(&Session::open(&cli.global)?, cli.global.quiet),
        command => commands::run(&Session::open(&cli.global)?, command),
    }
}
