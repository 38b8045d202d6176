//! The shell on a terminal: rustyline with history and tab completion.

use std::{
    io::Write as _,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use loader::Host;
use plugin_api::ErrorKind;
use rustyline::{
    completion::{Completer, Pair},
    error::ReadlineError,
    highlight::Highlighter,
    hint::Hinter,
    history::FileHistory,
    validate::Validator,
    CompletionType, Config, Context, Editor, ExternalPrinter, Helper,
};

use super::{human_answer, line, line::ShellCommand, Shell, SinkFactory};
use crate::{
    commands::print_line, commands::watch::LineSink, error::AppError, output, session::Session,
    stop,
};

const PROMPT: &str = "demo> ";

/// History file name inside the data folder.
const HISTORY_FILE: &str = "shell_history";

/// Runs the interactive shell until `quit`, `exit` or Ctrl-D.
///
/// # Errors
/// The terminal cannot be set up or read, or stdout is closed.
pub fn run(session: &Session, quiet: bool) -> Result<(), AppError> {
    let config = Config::builder()
        .auto_add_history(true)
        .completion_type(CompletionType::List)
        .build();
    let mut editor: Editor<ShellHelper, FileHistory> =
        Editor::with_config(config).map_err(readline_error)?;
    editor.set_helper(Some(ShellHelper {
        host: session.host.clone(),
    }));
    let history = history_file(session);
    if let Some(path) = history.as_ref().filter(|p| p.exists()) {
        if let Err(e) = editor.load_history(path) {
            log::warn!("cannot read shell history {}: {e}", path.display());
        }
    }
    if !quiet {
        let active = session.active_plugin_names().len();
        print_line(&format!(
            "demo-app shell: {active} plugin{} active from {}. Type help, or quit to leave.",
            if active == 1 { "" } else { "s" },
            session.plugins_dir.display()
        ))?;
    }
    // Lines from `watch on` go through rustyline's printer, which redraws the prompt and the
    // half-typed line below them.
    let (sinks, printer) = match editor.create_external_printer() {
        Ok(printer) => (printer_sinks(printer), true),
        Err(e) => {
            log::debug!("no external printer ({e}); watch lines go straight to stdout");
            (stdout_sinks(), false)
        }
    };
    // Log records too, while the editor runs; then back to stderr.
    if printer {
        output::set_log_printer(Some(sinks()));
    }
    let mut shell = Shell::new(session, Some(sinks));
    let result = read_eval_print(&mut shell, &mut editor, history.as_deref());
    output::set_log_printer(None);
    result
}

/// Where the history is kept: `<data>/shell_history` with `--data`, else in the user's data
/// folder (`$XDG_DATA_HOME/native-plugins/` or `~/.local/share/native-plugins/` on Linux,
/// `~/Library/Application Support/native-plugins/` on macOS, `%APPDATA%\native-plugins\data\`
/// on Windows), created when missing. None when there is no home folder.
fn history_file(session: &Session) -> Option<PathBuf> {
    let dir = match &session.data_dir {
        Some(data) => data.clone(),
        None => directories::ProjectDirs::from("", "", "native-plugins")?
            .data_dir()
            .to_owned(),
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        log::warn!("no shell history: cannot create {}: {e}", dir.display());
        return None;
    }
    Some(dir.join(HISTORY_FILE))
}

/// Sinks that share one rustyline printer.
fn printer_sinks<P: ExternalPrinter + Send + 'static>(printer: P) -> SinkFactory {
    let printer = Arc::new(Mutex::new(printer));
    Box::new(move || -> LineSink {
        let printer = printer.clone();
        Box::new(move |line: String| {
            if let Ok(mut printer) = printer.lock() {
                // Outside of readline the printer writes as is: the newline is ours to add.
                let _ = printer.print(line + "\n");
            }
        })
    })
}

/// Sinks that print to stdout, when the terminal gave no printer.
fn stdout_sinks() -> SinkFactory {
    Box::new(|| -> LineSink {
        Box::new(|line: String| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        })
    })
}

fn read_eval_print(
    shell: &mut Shell<'_>,
    editor: &mut Editor<ShellHelper, FileHistory>,
    history: Option<&std::path::Path>,
) -> Result<(), AppError> {
    let mut history_failed = false;
    loop {
        let typed = match stop::at_prompt(|| editor.readline(PROMPT)) {
            Ok(typed) => typed,
            // Ctrl-C abandons the line being typed, as in other shells; Ctrl-D leaves.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => return Ok(()),
            Err(e) => return Err(readline_error(e)),
        };
        // Each line is added to the file as it is entered, so a signal or a crash at the next
        // prompt loses none of them. One warning if the file cannot be written.
        if let Some(path) = history.filter(|_| !history_failed) {
            if let Err(e) = editor.append_history(path) {
                log::warn!("cannot save shell history {}: {e}", path.display());
                history_failed = true;
            }
        }
        match line::parse(&typed) {
            Ok(None) => {}
            Ok(Some(ShellCommand::Quit)) => return Ok(()),
            Ok(Some(ShellCommand::Clear)) => {
                if let Err(e) = editor.clear_screen() {
                    output::error(&format!("cannot clear the screen: {e}"));
                }
            }
            Ok(Some(command)) => match human_answer(shell, &command) {
                Ok(text) => print_answer(&text)?,
                Err(e @ AppError::Closed) => return Err(e),
                Err(e) => output::error(&e.to_string()),
            },
            Err(e) => output::error(&e.to_string()),
        }
    }
}

/// Prints an answer through anstream, which keeps its colour only on a terminal that wants it
/// (`NO_COLOR`, `--color`); JSON answers get their keys painted.
fn print_answer(text: &str) -> Result<(), AppError> {
    let painted = if text.starts_with(['{', '[']) {
        output::paint_json_keys(text)
    } else {
        text.to_owned()
    };
    let mut out = anstream::stdout().lock();
    writeln!(out, "{painted}")?;
    out.flush()?;
    Ok(())
}

fn readline_error(error: ReadlineError) -> AppError {
    AppError::failed(ErrorKind::Failed, format!("terminal: {error}"))
}

/// Completion from the live host, so plugins and commands are offered as they are now.
struct ShellHelper {
    host: Host,
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let plugins = self.host.plugins();
        let names: Vec<String> = plugins.iter().map(|p| p.name.clone()).collect();
        // Event types that plugins declare they emit; patterns are not event types.
        let events: Vec<String> = plugins
            .iter()
            .filter_map(|p| p.manifest.as_ref())
            .flat_map(|m| m.emits.iter())
            .filter(|e| !e.contains('*'))
            .cloned()
            .collect();
        let words = Words {
            plugins: &names,
            commands: &self.host.commands(),
            events: &events,
        };
        let (start, candidates) = complete(&line[..pos], &words);
        let pairs = candidates
            .into_iter()
            .map(|c| Pair {
                replacement: format!("{c} "),
                display: c,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

/// What can be completed besides the shell's own command names.
struct Words<'a> {
    plugins: &'a [String],
    commands: &'a [String],
    events: &'a [String],
}

/// Completes the word ending at the end of `before` (the line up to the cursor). Returns where
/// that word starts and the sorted candidates.
fn complete(before: &str, words: &Words<'_>) -> (usize, Vec<String>) {
    let start = before.rfind(char::is_whitespace).map_or(0, |i| {
        i + before[i..].chars().next().map_or(1, char::len_utf8)
    });
    let partial = &before[start..];
    let previous: Vec<&str> = before[..start].split_whitespace().collect();
    let pool: Vec<&str> = match previous.as_slice() {
        [] => line::COMMAND_NAMES.to_vec(),
        ["call"] => words.commands.iter().map(String::as_str).collect(),
        ["describe"] | ["reenable"] => words.plugins.iter().map(String::as_str).collect(),
        ["describe", _] | ["list"] | ["stats"] | ["dead-letters"] | ["doctor"] => vec!["--json"],
        ["watch"] => vec!["on", "off"],
        ["trace"] => vec!["--json", "clear", "on", "off"],
        ["emit"] => words.events.iter().map(String::as_str).collect(),
        ["emit", _, ..] => vec!["--collect"],
        _ => Vec::new(),
    };
    let mut candidates: Vec<String> = pool
        .into_iter()
        .filter(|c| c.starts_with(partial))
        .map(str::to_owned)
        .collect();
    candidates.sort();
    candidates.dedup();
    (start, candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn with_words<T>(f: impl FnOnce(&Words<'_>) -> T) -> T {
        let plugins = strings(&["greeter", "notes"]);
        let commands = strings(&["greeter:greet", "greeter:greet-user", "notes:save"]);
        let events = strings(&["greeter:greeted"]);
        f(&Words {
            plugins: &plugins,
            commands: &commands,
            events: &events,
        })
    }

    #[test]
    fn completes_shell_commands_first() {
        with_words(|w| {
            assert_eq!(complete("", w).1.len(), line::COMMAND_NAMES.len());
            assert_eq!(
                complete("d", w),
                (0, strings(&["dead-letters", "describe", "doctor"]))
            );
            assert_eq!(complete("des", w), (0, strings(&["describe"])));
            assert_eq!(complete("e", w), (0, strings(&["emit", "exit"])));
            assert_eq!(complete("wa", w), (0, strings(&["watch"])));
            assert_eq!(complete("watch o", w), (6, strings(&["off", "on"])));
            assert_eq!(complete("trace c", w), (6, strings(&["clear"])));
            assert_eq!(complete("reenable g", w), (9, strings(&["greeter"])));
        });
    }

    #[test]
    fn completes_commands_plugins_and_events() {
        with_words(|w| {
            assert_eq!(
                complete("call greeter:g", w),
                (5, strings(&["greeter:greet", "greeter:greet-user"]))
            );
            assert_eq!(complete("describe n", w), (9, strings(&["notes"])));
            assert_eq!(complete("emit gr", w), (5, strings(&["greeter:greeted"])));
            assert_eq!(
                complete("emit greeter:greeted {} --c", w),
                (24, strings(&["--collect"]))
            );
        });
    }

    #[test]
    fn nothing_to_complete_inside_json() {
        with_words(|w| {
            assert!(complete(r#"call greeter:greet {"na"#, w).1.is_empty());
        });
    }
}
