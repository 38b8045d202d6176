//! The subcommands `list`, `describe`, `call` and `emit`: what each computes, and how it is
//! shown as a table, as text or as JSON. The shell runs the same functions.
//!
//! `list` and `describe` have the most to show and live in their own files; `call` and `emit`
//! hand back the plugins' JSON.

mod describe;
mod list;

pub use describe::{describe, render_description};
pub use list::{list, render_list};

use std::{
    io::{self, Write as _},
    path::Path,
};

use loader::Host;
use plugin_api::{ErrorKind, Payload};
use serde::Serialize;

use crate::{
    cli::Command,
    error::{error_chain, AppError},
    json::{self, RawJson},
    session::Session,
};

/// Runs a one-shot subcommand on a loaded session and prints its result on stdout.
///
/// # Errors
/// The operation failed (exit 1) or its input was malformed (exit 2); nothing was printed on
/// stdout then.
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
        // The shell owns its own loop; main hands it over before getting here.
        Command::Shell => Err(AppError::usage(
            ErrorKind::InvalidInput,
            "the shell cannot run inside another command",
        )),
    }
}

/// Checks what can be checked before the plugins are loaded (the JSON arguments), so a typo
/// is reported at once instead of after every plugin has been activated.
///
/// # Errors
/// A usage error (exit 2) for malformed JSON.
pub fn check_usage(command: &Command) -> Result<(), AppError> {
    match command {
        Command::Call(args) => parse_json(&args.args).map(drop),
        Command::Emit(args) => parse_json(&args.event_data).map(drop),
        Command::List(_) | Command::Describe(_) | Command::Shell => Ok(()),
    }
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
fn print_text(text: &str) -> Result<(), AppError> {
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
    Payload::from_json_str(text).map_err(|e| AppError::usage(e.kind, e.message.as_str()))
}

/// The full reason a file failed, from the load report: the report keeps the error value with
/// its source chain, while `Host::plugins` keeps only its top line and drops the operating
/// system's reason.
fn report_error(session: &Session, file: &Path) -> Option<String> {
    session
        .report
        .entries
        .iter()
        .filter(|e| e.file == file)
        .find_map(|e| e.error.as_ref())
        .map(|e| error_chain(e))
}

/// Runs `command` (`<plugin>:<command>`) with JSON arguments and returns its JSON reply.
///
/// # Errors
/// Malformed JSON (usage, exit 2); an unknown command, a timeout or the handler's error
/// (exit 1); a reply that is not JSON.
pub fn call(host: &Host, command: &str, args_json: &str) -> Result<RawJson, AppError> {
    let args = parse_json(args_json)?;
    let reply = host.execute(command, args)?;
    RawJson::from_payload(&reply)
}

/// What `emit` prints: the event id, or every subscriber's answer.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum EmitOutcome {
    /// `{"id": N}`
    Sent {
        /// The event id.
        id: u64,
    },
    /// `[{"plugin", "ok", "error"}, ...]`
    Collected(Vec<CollectedRow>),
}

/// One subscriber's answer to `emit --collect`.
#[derive(Debug, Clone, Serialize)]
pub struct CollectedRow {
    /// The subscriber.
    pub plugin: String,
    /// Its reply as JSON, when it succeeded (`null` when it returned nothing).
    pub ok: Option<RawJson>,
    /// Its error message, when it failed.
    pub error: Option<String>,
}

/// Publishes `event_type` with JSON data from the host; with `collect`, waits for every plugin
/// subscriber's answer.
///
/// # Errors
/// Malformed JSON (usage, exit 2); an empty event type or an oversized payload (exit 1).
/// Subscriber failures are not errors: they are rows of the answer.
pub fn emit(
    host: &Host,
    event_type: &str,
    data_json: &str,
    collect: bool,
) -> Result<EmitOutcome, AppError> {
    let data = parse_json(data_json)?;
    if !collect {
        return Ok(EmitOutcome::Sent {
            id: host.emit(event_type, data)?,
        });
    }
    let rows = host
        .emit_and_collect(event_type, data, None)?
        .into_iter()
        .map(|(plugin, result)| {
            let (ok, error) = match result
                .map_err(AppError::from)
                .and_then(|p| RawJson::from_payload(&p))
            {
                Ok(reply) => (Some(reply), None),
                Err(e) => (None, Some(e.to_string())),
            };
            CollectedRow { plugin, ok, error }
        })
        .collect();
    Ok(EmitOutcome::Collected(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_outcomes_serialize_as_documented() {
        let sent = json::to_text(&EmitOutcome::Sent { id: 7 }, false).expect("json");
        assert_eq!(sent, r#"{"id":7}"#);
        let collected = EmitOutcome::Collected(vec![CollectedRow {
            plugin: "p".to_owned(),
            ok: None,
            error: Some("boom".to_owned()),
        }]);
        assert_eq!(
            json::to_text(&collected, false).expect("json"),
            r#"[{"plugin":"p","ok":null,"error":"boom"}]"#
        );
    }

    #[test]
    fn bad_json_is_a_usage_error() {
        let err = parse_json("{name").expect_err("invalid");
        assert!(matches!(err, AppError::Usage { .. }));
        assert!(err.to_string().starts_with("invalid json"), "{err}");
    }
}
