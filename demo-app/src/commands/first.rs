//! The command `trace` and `stats` may run first (`demo-app trace call greeter:greet {}`), so a
//! one-shot host has done something worth looking at besides loading.

use std::time::{Duration, Instant};

use loader::Host;
use plugin_api::ErrorKind;

use crate::{
    error::AppError,
    session::Session,
    shell::line::{self, ShellCommand},
};

/// What may run first: the shell commands that make plugins do work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstCommand {
    /// `call <plugin:command> [JSON]`
    Call {
        /// `<plugin>:<command>`.
        command: String,
        /// JSON arguments.
        args: String,
    },
    /// `emit <type> [JSON] [--collect]`
    Emit {
        /// Event type.
        event_type: String,
        /// JSON data.
        data: String,
        /// Whether to wait for the subscribers' answers.
        collect: bool,
    },
}

/// How long to wait at most for the work a command set off (event deliveries are
/// asynchronous) to finish before showing what it did.
const SETTLE_LIMIT: Duration = Duration::from_secs(2);

impl FirstCommand {
    /// Parses the words after `trace`/`stats` as one shell line; no words, no command.
    ///
    /// # Errors
    /// A usage error for anything but a well-formed `call` or `emit` (bad JSON included).
    pub fn parse(words: &[String], subcommand: &str) -> Result<Option<FirstCommand>, AppError> {
        if words.is_empty() {
            return Ok(None);
        }
        let text = words.join(" ");
        let only_these = || {
            AppError::usage(
                ErrorKind::InvalidInput,
                format!(
                    "{subcommand} can run first `call <plugin:command> [JSON]` or \
                     `emit <type> [JSON] [--collect]`, not {text:?}"
                ),
            )
        };
        let first = match line::parse(&text)? {
            Some(ShellCommand::Call { command, args }) => FirstCommand::Call {
                command: command.to_owned(),
                args: args.to_owned(),
            },
            Some(ShellCommand::Emit {
                event_type,
                data,
                collect,
            }) => FirstCommand::Emit {
                event_type: event_type.to_owned(),
                data: data.to_owned(),
                collect,
            },
            _ => return Err(only_these()),
        };
        // Checked now, before the plugins are loaded, like `call` and `emit` themselves.
        match &first {
            FirstCommand::Call { args, .. } => super::parse_json(args)?,
            FirstCommand::Emit { data, .. } => super::parse_json(data)?,
        };
        Ok(Some(first))
    }

    /// Runs the command and waits (up to a limit) for the work it set off to finish. Its answer
    /// is not shown: stdout belongs to the trace or the stats.
    ///
    /// # Errors
    /// The command's own error, after the wait.
    pub fn run(&self, session: &Session) -> Result<(), AppError> {
        let outcome = match self {
            FirstCommand::Call { command, args } => {
                super::call(&session.host, command, args).map(drop)
            }
            FirstCommand::Emit {
                event_type,
                data,
                collect,
            } => super::emit(&session.host, event_type, data, *collect).map(drop),
        };
        // Let the work the command caused finish before the trace or stats are read.
        session.host.wait_idle(Instant::now() + SETTLE_LIMIT);
        outcome
    }
}

/// The largest id in the flight recorder now: what came before a command.
pub fn trace_mark(host: &Host) -> u64 {
    host.trace().iter().map(|r| r.id).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn call_words_become_one_line() {
        let first = FirstCommand::parse(
            &words(&["call", "greeter:greet", r#"{"name": "Ada"}"#]),
            "trace",
        )
        .expect("valid");
        assert_eq!(
            first,
            Some(FirstCommand::Call {
                command: "greeter:greet".to_owned(),
                args: r#"{"name": "Ada"}"#.to_owned(),
            })
        );
        assert_eq!(FirstCommand::parse(&[], "trace").expect("valid"), None);
    }

    #[test]
    fn other_commands_and_bad_json_are_usage_errors() {
        let err = FirstCommand::parse(&words(&["list"]), "stats").expect_err("refused");
        assert!(matches!(err, AppError::Usage { .. }));
        assert!(err.to_string().starts_with("stats can run first"), "{err}");
        let err = FirstCommand::parse(&words(&["call", "greeter:greet", "{x"]), "trace")
            .expect_err("bad json");
        assert!(matches!(err, AppError::Usage { .. }));
        let err = FirstCommand::parse(&words(&["frobnicate"]), "trace").expect_err("unknown");
        assert!(matches!(err, AppError::Usage { .. }));
    }
}
