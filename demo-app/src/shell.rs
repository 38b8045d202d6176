//! `shell`: commands typed one per line against a host that stays loaded.
//!
//! On a terminal it is an editor with history and completion that prints tables and text (see
//! `editor.rs`). Otherwise it reads one command per line and prints exactly one JSON value per
//! command line, so scripts and tests can drive a long-lived host through a pipe.

mod editor;
mod line;

use std::io::{self, BufRead, IsTerminal, Write};

use plugin_api::ErrorKind;
use serde::Serialize;

use crate::{commands, error::AppError, json, session::Session};
use line::ShellCommand;

/// Runs the shell until `quit`, `exit` or the end of input.
///
/// # Errors
/// Only when stdin or stdout fails; a failing command prints its error and the shell goes on.
pub fn run(session: &Session) -> Result<(), AppError> {
    if io::stdin().is_terminal() {
        editor::run(session)
    } else {
        run_lines(session, io::stdin().lock(), io::stdout().lock())
    }
}

/// The JSON-lines shell: for each line that is not blank or a comment, one JSON value on one
/// line, either the command's answer or `{"error": ..., "kind": ...}`.
fn run_lines(
    session: &Session,
    mut input: impl BufRead,
    mut out: impl Write,
) -> Result<(), AppError> {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        let (answer, quit) = match std::str::from_utf8(&buf) {
            Ok(text) => match line::parse(text) {
                Ok(None) => continue,
                Ok(Some(command)) => (
                    json_answer(session, &command),
                    command == ShellCommand::Quit,
                ),
                Err(e) => (Err(e), false),
            },
            // Reported like any bad line rather than ending the session: one stray byte in a
            // script should not lose the host's state.
            Err(e) => (
                Err(AppError::usage(
                    ErrorKind::InvalidInput,
                    format!("input line is not utf-8: {e}"),
                )),
                false,
            ),
        };
        let text = match answer {
            Ok(text) => text,
            Err(error) => error.to_json().to_string(),
        };
        writeln!(out, "{text}")?;
        // Flushed per line: the reader of a pipe waits for each answer before sending more.
        out.flush()?;
        if quit {
            return Ok(());
        }
    }
}

/// A command's answer as one line of JSON.
fn json_answer(session: &Session, command: &ShellCommand<'_>) -> Result<String, AppError> {
    match command {
        ShellCommand::Call { command, args } => {
            json::to_text(&commands::call(&session.host, command, args)?, false)
        }
        ShellCommand::Emit {
            event_type,
            data,
            collect,
        } => json::to_text(
            &commands::emit(&session.host, event_type, data, *collect)?,
            false,
        ),
        ShellCommand::List { .. } => json::to_text(&commands::list(session), false),
        ShellCommand::Describe { plugin, .. } => {
            json::to_text(&commands::describe(session, plugin)?, false)
        }
        ShellCommand::Help => json::to_text(&help_json(), false),
        // Still one value per command line, so a reader counting answers is not left waiting.
        ShellCommand::Quit => Ok(r#"{"quit":true}"#.to_owned()),
    }
}

/// A command's answer as text for a person at a terminal (no trailing newline).
fn human_answer(session: &Session, command: &ShellCommand<'_>) -> Result<String, AppError> {
    let text = match command {
        ShellCommand::Call { command, args } => {
            json::to_text(&commands::call(&session.host, command, args)?, true)?
        }
        ShellCommand::Emit {
            event_type,
            data,
            collect,
        } => json::to_text(
            &commands::emit(&session.host, event_type, data, *collect)?,
            true,
        )?,
        ShellCommand::List { json: true } => json::to_text(&commands::list(session), true)?,
        ShellCommand::List { json: false } => {
            commands::render_list(&commands::list(session), &session.plugins_dir)
        }
        ShellCommand::Describe { plugin, json } => {
            let description = commands::describe(session, plugin)?;
            if *json {
                json::to_text(&description, true)?
            } else {
                commands::render_description(&description)
            }
        }
        ShellCommand::Help => help_text(),
        ShellCommand::Quit => String::new(),
    };
    Ok(text.trim_end().to_owned())
}

/// `help` in JSON-lines mode: `{"commands": [{"usage": ..., "about": ...}, ...]}`.
#[derive(Serialize)]
struct Help {
    commands: Vec<HelpEntry>,
}

#[derive(Serialize)]
struct HelpEntry {
    usage: &'static str,
    about: &'static str,
}

fn help_json() -> Help {
    Help {
        commands: line::HELP
            .iter()
            .map(|&(usage, about)| HelpEntry { usage, about })
            .collect(),
    }
}

fn help_text() -> String {
    let width = line::HELP.iter().map(|(u, _)| u.len()).max().unwrap_or(0);
    let mut text: String = line::HELP
        .iter()
        .map(|(usage, about)| format!("  {usage:<width$}  {about}\n"))
        .collect();
    text.push_str("Tab completes command names, plugin names and registered commands.");
    text
}
