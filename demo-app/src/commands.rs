//! The subcommands: what each computes, and how it is shown as a table, as text or as JSON.
//! One module per subcommand; the shell runs the same functions.

pub mod bench;
mod call;
mod dead_letters;
mod describe;
pub mod doctor;
mod emit;
mod first;
mod list;
pub mod new_plugin;
mod stats;
mod table;
mod trace;
pub mod watch;

pub use call::call;
pub use dead_letters::{dead_letters, render_dead_letters};
pub use describe::{describe, render_description};
pub use emit::emit;
pub use list::{list, render_list, ListRow};
pub use stats::{render_stats, stats};
pub use trace::render_trace;

use std::io::{self, Write as _};

use plugin_api::{ErrorKind, Payload};

use crate::{
    cli::{Command, ObserveArgs},
    error::AppError,
    json,
    session::Session,
};
use first::FirstCommand;

/// Runs a one-shot subcommand on a loaded session and prints its result on stdout.
///
/// # Errors
/// The operation failed (exit 1) or its input was malformed (exit 2); nothing was printed on
/// stdout then, except by `trace` and `stats`, which print what the failed command did.
pub fn run(session: &Session, command: &Command) -> Result<(), AppError> {
    match command {
        Command::List(args) => {
            let rows = list(session);
            if args.json {
                print_line(&json::to_text(&rows, false)?)
            } else {
                print_text(&render_list(&rows, &session.plugins_dir))
            }
        }
        Command::Describe(args) => {
            let description = describe(session, &args.plugin)?;
            if args.json {
                print_line(&json::to_text(&description, false)?)
            } else {
                print_text(&render_description(&description))
            }
        }
        Command::Call(args) => {
            let reply = call(&session.host, &args.command, &args.args)?;
            print_line(&json::to_text(&reply, args.pretty)?)
        }
        Command::Emit(args) => {
            let outcome = emit(
                &session.host,
                &args.event_type,
                &args.event_data,
                args.collect,
            )?;
            print_line(&json::to_text(&outcome, false)?)
        }
        Command::Watch(args) => watch::run(session, args),
        Command::Trace(args) => run_trace(session, args),
        Command::Stats(args) => run_stats(session, args),
        Command::DeadLetters(args) => {
            let letters = dead_letters(&session.host);
            if args.json {
                print_line(&json::to_text(&letters, false)?)
            } else {
                print_text(&render_dead_letters(&letters))
            }
        }
        // These never load the folder; main hands them over before getting here.
        Command::Shell
        | Command::Doctor(_)
        | Command::NewPlugin(_)
        | Command::Bench(_)
        | Command::Completions(_)
        | Command::Man => Err(AppError::usage(
            ErrorKind::InvalidInput,
            "this command does not run on a loaded host",
        )),
    }
}

/// Checks what can be checked before the plugins are loaded (JSON arguments, the command
/// `trace` and `stats` run first, a new plugin's name), so a typo is reported at once instead
/// of after every plugin has been activated.
///
/// # Errors
/// A usage error (exit 2).
pub fn check_usage(command: &Command) -> Result<(), AppError> {
    match command {
        Command::Call(args) => parse_json(&args.args).map(drop),
        Command::Emit(args) => parse_json(&args.event_data).map(drop),
        Command::Trace(args) => FirstCommand::parse(&args.command, "trace").map(drop),
        Command::Stats(args) => FirstCommand::parse(&args.command, "stats").map(drop),
        Command::NewPlugin(args) => new_plugin::check_usage(args),
        Command::List(_)
        | Command::Describe(_)
        | Command::Shell
        | Command::Watch(_)
        | Command::Doctor(_)
        | Command::DeadLetters(_)
        | Command::Bench(_)
        | Command::Completions(_)
        | Command::Man => Ok(()),
    }
}

/// `trace`: runs the optional command, then prints the records it caused (all records when
/// there was no command) as a tree, or one JSON object per line.
fn run_trace(session: &Session, args: &ObserveArgs) -> Result<(), AppError> {
    let first = FirstCommand::parse(&args.command, "trace")?;
    let host = &session.host;
    let mark = first::trace_mark(host);
    let outcome = first.as_ref().map(|f| f.run(session));
    let mut records = host.trace();
    if first.is_some() {
        records = trace::since(records, mark);
    }
    if args.json {
        print_text(&trace::json_lines(&records)?)?;
    } else {
        let recording = host.config().recorder_capacity > 0;
        print_text(&render_trace(&records, recording))?;
    }
    outcome.transpose().map(drop)
}

/// `stats`: runs the optional command, then prints every plugin's metrics.
fn run_stats(session: &Session, args: &ObserveArgs) -> Result<(), AppError> {
    let first = FirstCommand::parse(&args.command, "stats")?;
    let outcome = first.as_ref().map(|f| f.run(session));
    let rows = stats(&session.host);
    if args.json {
        print_line(&json::to_text(&rows, false)?)?;
    } else {
        print_text(&render_stats(&rows))?;
    }
    outcome.transpose().map(drop)
}

/// Writes `text` and a newline to stdout.
///
/// # Errors
/// stdout is closed (for example a pipe whose reader exited).
pub fn print_line(text: &str) -> Result<(), AppError> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// Writes `text`, which already ends with a newline, to stdout.
///
/// # Errors
/// stdout is closed.
pub fn print_text(text: &str) -> Result<(), AppError> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Parses a JSON argument typed by the user.
///
/// # Errors
/// A usage error (exit 2) with the parser's message and position.
pub fn parse_json(text: &str) -> Result<Payload, AppError> {
    Payload::from_json_str(text).map_err(|e| {
        // A bare word (`call echo:reverse abc`) is the usual slip: JSON wants it quoted.
        let bare = text
            .trim_start()
            .starts_with(|c: char| c.is_alphabetic() || c == '\'')
            && !["true", "false", "null"].contains(&text.trim());
        let hint = if bare {
            "; to pass a string, quote it: \"abc\" (on a command line '\"abc\"')"
        } else {
            ""
        };
        AppError::usage(e.kind, format!("{}{hint}", e.message))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_json_is_a_usage_error() {
        let err = parse_json("{name").expect_err("invalid");
        assert!(matches!(err, AppError::Usage { .. }));
        assert!(err.to_string().starts_with("invalid json"), "{err}");
        assert!(!err.to_string().contains("quoted"), "{err}");
        let err = parse_json("abc").expect_err("a bare word");
        assert!(err.to_string().contains("quote it"), "{err}");
        assert!(parse_json("\"abc\"").is_ok());
    }
}
