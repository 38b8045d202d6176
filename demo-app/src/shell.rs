//! `shell`: commands typed one per line against a host that stays loaded.
//!
//! On a terminal it is an editor with history and completion that prints tables and text (see
//! `editor.rs`); `watch on` prints lifecycle events above the prompt as they happen. Otherwise
//! it reads one command per line and prints exactly one JSON value per command line, so scripts
//! and tests can drive a long-lived host through a pipe; nothing asynchronous is printed there.

mod editor;
pub mod line;

use std::{
    io::{self, BufRead, IsTerminal, Write},
    time::Duration,
};

use crossbeam_channel::{select, Receiver};
use loader::LoadError;
use plugin_api::ErrorKind;
use serde::Serialize;

use crate::{
    commands::{self, doctor, watch::Background, watch::LineSink},
    error::AppError,
    json,
    session::Session,
    stop,
};
use line::{ShellCommand, TraceAction};

/// How long a changed file must stay unchanged before `watch on` applies it (as `watch`).
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Makes the sink each `watch on` prints through (the editor's printer, on a terminal).
type SinkFactory = Box<dyn Fn() -> LineSink>;

/// Runs the shell until `quit`, `exit` or the end of input.
///
/// # Errors
/// Only when stdin or stdout fails; a failing command prints its error and the shell goes on.
pub fn run(session: &Session, quiet: bool) -> Result<(), AppError> {
    if io::stdin().is_terminal() {
        editor::run(session, quiet)
    } else {
        let mut shell = Shell::new(session, None);
        run_lines(&mut shell, stdin_lines(), io::stdout().lock())
    }
}

/// The lines of stdin, read on a thread of their own so that the shell can also wait for a
/// signal (a read from stdin cannot be woken). The channel disconnects at the end of input;
/// a read error ends it too, after being sent.
fn stdin_lines() -> Receiver<io::Result<Vec<u8>>> {
    let (lines, receiver) = crossbeam_channel::bounded(0);
    let reader = std::thread::Builder::new()
        .name("shell-stdin".into())
        .spawn(move || {
            let mut input = io::stdin().lock();
            loop {
                let mut buf = Vec::new();
                match input.read_until(b'\n', &mut buf) {
                    Ok(0) => return,
                    Ok(_) => {
                        if lines.send(Ok(buf)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = lines.send(Err(e));
                        return;
                    }
                }
            }
        });
    if let Err(e) = reader {
        log::error!("cannot start the thread that reads stdin: {e}");
    }
    receiver
}

/// What the shell keeps from one line to the next besides the host: the background watcher.
pub struct Shell<'s> {
    session: &'s Session,
    watching: Option<Background>,
    /// Present on a terminal only: scripted output must stay one answer per line.
    sinks: Option<SinkFactory>,
}

impl<'s> Shell<'s> {
    fn new(session: &'s Session, sinks: Option<SinkFactory>) -> Self {
        Shell {
            session,
            watching: None,
            sinks,
        }
    }

    /// Starts or stops the background watcher; returns whether it runs now.
    fn watch(&mut self, switch: Option<bool>) -> Result<bool, AppError> {
        match switch {
            Some(true) if self.watching.is_none() => {
                let sink = self.sinks.as_ref().map(|make| make());
                self.watching = Some(Background::start(&self.session.host, DEBOUNCE, sink)?);
            }
            Some(false) => self.watching = None,
            _ => {}
        }
        Ok(self.watching.is_some())
    }

    /// Switches the flight recorder; returns whether it records now (never with
    /// `recorder_capacity = 0`).
    fn record(&self, on: bool) -> bool {
        self.session.host.set_recording(on);
        on && self.session.host.config().recorder_capacity > 0
    }

    fn reenable(&self, plugin: &str) -> Result<Reenabled, AppError> {
        let host = &self.session.host;
        host.reenable(plugin).map_err(|e| match e {
            LoadError::UnknownPlugin { .. } => AppError::failed(ErrorKind::NotFound, e.to_string()),
            e => AppError::from_error(&e),
        })?;
        let state = host
            .plugin(plugin)
            .map_or("unknown", |p| p.state.as_str())
            .to_owned();
        Ok(Reenabled {
            plugin: plugin.to_owned(),
            state,
        })
    }

    fn doctor(&self) -> Result<loader::DoctorReport, AppError> {
        doctor::diagnose(&self.session.host, &self.session.plugins_dir)
    }
}

/// The answer of `reenable`: `{"plugin": ..., "state": ...}`.
#[derive(Serialize)]
struct Reenabled {
    plugin: String,
    state: String,
}

/// The JSON-lines shell: for each line that is not blank or a comment, one JSON value on one
/// line, either the command's answer or `{"error": ..., "kind": ...}`.
fn run_lines(
    shell: &mut Shell<'_>,
    input: Receiver<io::Result<Vec<u8>>>,
    mut out: impl Write,
) -> Result<(), AppError> {
    let stop = stop::receiver();
    loop {
        let buf = select! {
            recv(input) -> line => match line {
                Ok(line) => line?,
                // The end of input.
                Err(_) => return Ok(()),
            },
            // Ctrl-C or SIGTERM: `main` reports it.
            recv(stop) -> _ => return Ok(()),
        };
        let (answer, quit) = match std::str::from_utf8(&buf) {
            Ok(text) => match line::parse(text) {
                Ok(None) => continue,
                Ok(Some(command)) => (json_answer(shell, &command), command == ShellCommand::Quit),
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
fn json_answer(shell: &mut Shell<'_>, command: &ShellCommand<'_>) -> Result<String, AppError> {
    let session = shell.session;
    let host = &session.host;
    match command {
        ShellCommand::Call { command, args } => {
            json::to_text(&commands::call(host, command, args)?, false)
        }
        ShellCommand::Emit {
            event_type,
            data,
            collect,
        } => json::to_text(&commands::emit(host, event_type, data, *collect)?, false),
        ShellCommand::List { .. } => json::to_text(&commands::list(session), false),
        ShellCommand::Describe { plugin, .. } => {
            json::to_text(&commands::describe(session, plugin)?, false)
        }
        ShellCommand::Watch { switch } => {
            Ok(format!(r#"{{"watching":{}}}"#, shell.watch(*switch)?))
        }
        ShellCommand::Trace(TraceAction::Show { .. }) => json::to_text(&host.trace(), false),
        ShellCommand::Trace(TraceAction::Clear) => {
            host.clear_trace();
            Ok(r#"{"cleared":true}"#.to_owned())
        }
        ShellCommand::Trace(TraceAction::Record(on)) => {
            Ok(format!(r#"{{"recording":{}}}"#, shell.record(*on)))
        }
        ShellCommand::Stats { .. } => json::to_text(&commands::stats(host), false),
        ShellCommand::DeadLetters { .. } => json::to_text(&commands::dead_letters(host), false),
        ShellCommand::Doctor { .. } => json::to_text(&shell.doctor()?, false),
        ShellCommand::Reenable { plugin } => json::to_text(&shell.reenable(plugin)?, false),
        ShellCommand::Help { topic } => json::to_text(&help_json(*topic), false),
        ShellCommand::Clear => Ok(r#"{"cleared":false}"#.to_owned()),
        // Still one value per command line, so a reader counting answers is not left waiting.
        ShellCommand::Quit => Ok(r#"{"quit":true}"#.to_owned()),
    }
}

/// A command's answer as text for a person at a terminal (no trailing newline).
fn human_answer(shell: &mut Shell<'_>, command: &ShellCommand<'_>) -> Result<String, AppError> {
    let session = shell.session;
    let host = &session.host;
    let text = match command {
        ShellCommand::Call { command, args } => {
            json::to_text(&commands::call(host, command, args)?, true)?
        }
        ShellCommand::Emit {
            event_type,
            data,
            collect,
        } => json::to_text(&commands::emit(host, event_type, data, *collect)?, true)?,
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
        ShellCommand::Watch { switch } => {
            let was = shell.watching.is_some();
            let now = shell.watch(*switch)?;
            let dir = session.plugins_dir.display();
            match (was, now, switch) {
                (false, true, _) => format!(
                    "watching {dir}: changed files are applied after {} ms unchanged; \
                     lifecycle events are printed as they happen (watch off stops)",
                    DEBOUNCE.as_millis()
                ),
                (true, false, _) => "stopped watching".to_owned(),
                (true, true, _) => format!("watching {dir}"),
                (false, false, _) => "not watching (watch on starts)".to_owned(),
            }
        }
        ShellCommand::Trace(TraceAction::Show { json: true }) => {
            json::to_text(&host.trace(), true)?
        }
        ShellCommand::Trace(TraceAction::Show { json: false }) => {
            let recording = host.config().recorder_capacity > 0;
            commands::render_trace(&host.trace(), recording)
        }
        ShellCommand::Trace(TraceAction::Clear) => {
            host.clear_trace();
            "flight recorder emptied".to_owned()
        }
        ShellCommand::Trace(TraceAction::Record(on)) => match (on, shell.record(*on)) {
            (_, true) => "recording on".to_owned(),
            (false, false) => "recording off".to_owned(),
            (true, false) => "recording stays off: recorder_capacity is 0".to_owned(),
        },
        ShellCommand::Stats { json: true } => json::to_text(&commands::stats(host), true)?,
        ShellCommand::Stats { json: false } => commands::render_stats(&commands::stats(host)),
        ShellCommand::DeadLetters { json: true } => {
            json::to_text(&commands::dead_letters(host), true)?
        }
        ShellCommand::DeadLetters { json: false } => {
            commands::render_dead_letters(&commands::dead_letters(host))
        }
        ShellCommand::Doctor { json: true } => json::to_text(&shell.doctor()?, true)?,
        ShellCommand::Doctor { json: false } => doctor::render_doctor(&shell.doctor()?, false),
        ShellCommand::Reenable { plugin } => {
            let done = shell.reenable(plugin)?;
            format!("{} re-enabled: {}", done.plugin, done.state)
        }
        ShellCommand::Help { topic } => help_text(*topic),
        // The editor clears the screen itself before asking for an answer.
        ShellCommand::Clear => String::new(),
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

fn help_json(topic: Option<&str>) -> Help {
    Help {
        commands: line::help_entries(topic)
            .into_iter()
            .map(|(usage, about)| HelpEntry { usage, about })
            .collect(),
    }
}

fn help_text(topic: Option<&str>) -> String {
    let entries = line::help_entries(topic);
    let width = entries.iter().map(|(u, _)| u.len()).max().unwrap_or(0);
    let mut text: String = entries
        .iter()
        .map(|(usage, about)| format!("  {usage:<width$}  {about}\n"))
        .collect();
    if topic.is_none() {
        text.push_str("Tab completes command names, plugin names and registered commands; help <command> shows one.");
    }
    text
}
