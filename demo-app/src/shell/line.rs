//! Splitting a typed shell line into a command.
//!
//! Shell words are not enough here: a JSON argument contains spaces and quotes, so after the
//! command name (and the target, for `call` and `emit`) the rest of the line is taken as it is.

use plugin_api::ErrorKind;

use crate::{error::AppError, suggest};

/// The shell's command names, for `help` and completion.
pub const COMMAND_NAMES: [&str; 14] = [
    "call",
    "emit",
    "list",
    "describe",
    "watch",
    "trace",
    "stats",
    "dead-letters",
    "doctor",
    "reenable",
    "clear",
    "help",
    "quit",
    "exit",
];

/// One line of shell input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellCommand<'a> {
    /// `call <plugin:command> [JSON]`
    Call {
        /// `<plugin>:<command>`.
        command: &'a str,
        /// The JSON arguments (`{}` when none were typed).
        args: &'a str,
    },
    /// `emit <type> [--collect] [JSON]` (`--collect` may also come last).
    Emit {
        /// The event type.
        event_type: &'a str,
        /// The JSON data (`{}` when none was typed).
        data: &'a str,
        /// Whether to wait for the subscribers' answers.
        collect: bool,
    },
    /// `list [--json]`
    List {
        /// JSON instead of a table (on a terminal; piped output is always JSON).
        json: bool,
    },
    /// `describe <plugin> [--json]`
    Describe {
        /// The plugin name.
        plugin: &'a str,
        /// JSON instead of text (on a terminal).
        json: bool,
    },
    /// `watch on|off`, or `watch` for the current setting.
    Watch {
        /// Start (`Some(true)`) or stop (`Some(false)`) the background watcher.
        switch: Option<bool>,
    },
    /// `trace [--json]`, `trace clear`, `trace on|off`
    Trace(TraceAction),
    /// `stats [--json]`
    Stats {
        /// JSON instead of a table (on a terminal).
        json: bool,
    },
    /// `dead-letters [--json]`
    DeadLetters {
        /// JSON instead of a table (on a terminal).
        json: bool,
    },
    /// `doctor [--json]`
    Doctor {
        /// JSON instead of text (on a terminal).
        json: bool,
    },
    /// `reenable <plugin>`
    Reenable {
        /// The plugin name.
        plugin: &'a str,
    },
    /// `help [command]`
    Help {
        /// The command to explain; every command when absent.
        topic: Option<&'a str>,
    },
    /// `clear`: empty the screen (on a terminal).
    Clear,
    /// `quit` or `exit`
    Quit,
}

/// What `trace` does in the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceAction {
    /// Show every record so far.
    Show {
        /// JSON instead of a tree (on a terminal).
        json: bool,
    },
    /// Empty the flight recorder.
    Clear,
    /// Switch recording on or off.
    Record(bool),
}

/// What `help` prints: each command's synopsis and what it does.
pub const HELP: [(&str, &str); 13] = [
    (
        "call <plugin:command> [JSON]",
        "run a command; JSON is the rest of the line (default {})",
    ),
    (
        "emit <type> [JSON] [--collect]",
        "publish an event; --collect waits for every subscriber's answer",
    ),
    (
        "list [--json]",
        "every plugin file with its state and any error",
    ),
    (
        "describe <plugin> [--json]",
        "a plugin's manifest and capabilities",
    ),
    (
        "watch [on|off]",
        "reload changed plugin files in the background (on a terminal, print lifecycle events)",
    ),
    (
        "trace [--json] | trace clear | trace on|off",
        "the flight recorder as a causal tree; empty it; switch it",
    ),
    (
        "stats [--json]",
        "per-plugin counters, queue depths and latencies",
    ),
    (
        "dead-letters [--json]",
        "events and messages that could not be delivered",
    ),
    (
        "doctor [--json]",
        "examine the plugins folder again, activating nothing",
    ),
    (
        "reenable <plugin>",
        "bring back a quarantined or deactivated plugin",
    ),
    ("clear", "empty the screen"),
    ("help [command]", "this list, or one command's"),
    ("quit | exit", "leave the shell (end of input also does)"),
];

/// Parses one line. Blank lines and `#` comments give `Ok(None)`.
///
/// # Errors
/// An unknown command name, a missing argument or unexpected words: a usage error whose
/// message shows the expected form.
pub fn parse(line: &str) -> Result<Option<ShellCommand<'_>>, AppError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (name, rest) = split_word(line);
    let command = match name {
        "call" => {
            let (command, args) = split_word(rest);
            if command.is_empty() {
                return Err(usage("call <plugin:command> [JSON]"));
            }
            ShellCommand::Call {
                command,
                args: or_empty_object(args),
            }
        }
        "emit" => {
            let (event_type, rest) = split_word(rest);
            if event_type.is_empty() || event_type == "--collect" {
                return Err(usage("emit <type> [JSON] [--collect]"));
            }
            let (data, collect) = strip_flag(rest, "--collect");
            ShellCommand::Emit {
                event_type,
                data: or_empty_object(data),
                collect,
            }
        }
        "list" => {
            let (rest, json) = strip_flag(rest, "--json");
            no_more(rest, "list [--json]")?;
            ShellCommand::List { json }
        }
        "describe" => {
            let (rest, json) = strip_flag(rest, "--json");
            let (plugin, rest) = split_word(rest);
            if plugin.is_empty() {
                return Err(usage("describe <plugin> [--json]"));
            }
            no_more(rest, "describe <plugin> [--json]")?;
            ShellCommand::Describe { plugin, json }
        }
        "watch" => ShellCommand::Watch {
            switch: match rest {
                "" => None,
                "on" => Some(true),
                "off" => Some(false),
                _ => return Err(usage("watch [on|off]")),
            },
        },
        "trace" => ShellCommand::Trace(match rest {
            "" => TraceAction::Show { json: false },
            "--json" => TraceAction::Show { json: true },
            "clear" => TraceAction::Clear,
            "on" => TraceAction::Record(true),
            "off" => TraceAction::Record(false),
            _ => return Err(usage("trace [--json] | trace clear | trace on|off")),
        }),
        "stats" => ShellCommand::Stats {
            json: json_flag_only(rest, "stats [--json]")?,
        },
        "dead-letters" => ShellCommand::DeadLetters {
            json: json_flag_only(rest, "dead-letters [--json]")?,
        },
        "doctor" => ShellCommand::Doctor {
            json: json_flag_only(rest, "doctor [--json]")?,
        },
        "reenable" => {
            let (plugin, rest) = split_word(rest);
            if plugin.is_empty() || !rest.is_empty() {
                return Err(usage("reenable <plugin>"));
            }
            ShellCommand::Reenable { plugin }
        }
        "help" => {
            let (topic, rest) = split_word(rest);
            no_more(rest, "help [command]")?;
            if !topic.is_empty() && !COMMAND_NAMES.contains(&topic) {
                return Err(unknown_command(topic));
            }
            ShellCommand::Help {
                topic: (!topic.is_empty()).then_some(topic),
            }
        }
        "clear" => {
            no_more(rest, "clear")?;
            ShellCommand::Clear
        }
        "quit" | "exit" => ShellCommand::Quit,
        other => return Err(unknown_command(other)),
    };
    Ok(Some(command))
}

/// The help entries of `topic` (`quit` and `exit` share one), or all of them.
pub fn help_entries(topic: Option<&str>) -> Vec<(&'static str, &'static str)> {
    HELP.iter()
        .copied()
        .filter(|(usage, _)| {
            topic.is_none_or(|topic| {
                let name = if topic == "exit" { "quit" } else { topic };
                usage.split_whitespace().next() == Some(name)
            })
        })
        .collect()
}

/// An unknown command name, with the closest known one or the list of all.
fn unknown_command(typed: &str) -> AppError {
    let message = match suggest::closest(typed, COMMAND_NAMES) {
        Some(best) => format!("unknown command {typed:?}: did you mean {best}? (help lists all)"),
        None => format!(
            "unknown command {typed:?} (commands: {})",
            COMMAND_NAMES.join(", ")
        ),
    };
    AppError::usage(ErrorKind::InvalidInput, message)
}

/// The first whitespace-separated word of `text` and the trimmed rest.
pub fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(end) => (&text[..end], text[end..].trim()),
        None => (text, ""),
    }
}

/// Removes `flag` when it is the first or the last word of `text`. Only whole words count, so a
/// JSON string that merely contains the flag's text is left alone.
fn strip_flag<'a>(text: &'a str, flag: &str) -> (&'a str, bool) {
    let (first, rest) = split_word(text);
    if first == flag {
        return (rest, true);
    }
    if let Some(before) = text.strip_suffix(flag) {
        if before.is_empty() || before.ends_with(char::is_whitespace) {
            return (before.trim_end(), true);
        }
    }
    (text, false)
}

/// `rest` must be nothing or `--json`; returns which.
fn json_flag_only(rest: &str, synopsis: &str) -> Result<bool, AppError> {
    let (rest, json) = strip_flag(rest, "--json");
    no_more(rest, synopsis)?;
    Ok(json)
}

fn or_empty_object(json: &str) -> &str {
    if json.is_empty() {
        "{}"
    } else {
        json
    }
}

fn no_more(rest: &str, synopsis: &str) -> Result<(), AppError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(AppError::usage(
            ErrorKind::InvalidInput,
            format!("unexpected {rest:?}; usage: {synopsis}"),
        ))
    }
}

fn usage(synopsis: &str) -> AppError {
    AppError::usage(ErrorKind::InvalidInput, format!("usage: {synopsis}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> ShellCommand<'_> {
        parse(line).expect("parses").expect("a command")
    }

    #[test]
    fn blank_lines_and_comments_are_skipped() {
        assert_eq!(parse("").expect("ok"), None);
        assert_eq!(parse("   \t").expect("ok"), None);
        assert_eq!(parse("# call greeter:greet").expect("ok"), None);
    }

    #[test]
    fn call_keeps_the_rest_of_the_line_as_json() {
        assert_eq!(
            ok(r#"call greeter:greet {"name": "Ada Lovelace"}"#),
            ShellCommand::Call {
                command: "greeter:greet",
                args: r#"{"name": "Ada Lovelace"}"#,
            }
        );
        assert_eq!(
            ok("  call   counter:increment  "),
            ShellCommand::Call {
                command: "counter:increment",
                args: "{}",
            }
        );
    }

    #[test]
    fn call_without_target_is_usage() {
        let err = parse("call").expect_err("usage");
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("call <plugin:command>"), "{err}");
    }

    #[test]
    fn emit_collect_first_or_last() {
        let expected = ShellCommand::Emit {
            event_type: "data:changed",
            data: r#"{"a": 1}"#,
            collect: true,
        };
        assert_eq!(ok(r#"emit data:changed --collect {"a": 1}"#), expected);
        assert_eq!(ok(r#"emit data:changed {"a": 1} --collect"#), expected);
        assert_eq!(
            ok("emit data:changed --collect"),
            ShellCommand::Emit {
                event_type: "data:changed",
                data: "{}",
                collect: true,
            }
        );
    }

    #[test]
    fn flag_text_inside_json_is_data() {
        assert_eq!(
            ok(r#"emit note {"text": "x --collect"}"#),
            ShellCommand::Emit {
                event_type: "note",
                data: r#"{"text": "x --collect"}"#,
                collect: false,
            }
        );
        assert_eq!(
            ok(r#"emit note "a--collect""#),
            ShellCommand::Emit {
                event_type: "note",
                data: r#""a--collect""#,
                collect: false,
            }
        );
    }

    #[test]
    fn list_describe_help_quit() {
        assert_eq!(ok("list"), ShellCommand::List { json: false });
        assert_eq!(ok("list --json"), ShellCommand::List { json: true });
        assert_eq!(
            ok("describe greeter --json"),
            ShellCommand::Describe {
                plugin: "greeter",
                json: true,
            }
        );
        assert_eq!(ok("help"), ShellCommand::Help { topic: None });
        assert_eq!(
            ok("help call"),
            ShellCommand::Help {
                topic: Some("call")
            }
        );
        assert_eq!(ok("clear"), ShellCommand::Clear);
        let err = parse("help cal").expect_err("unknown topic");
        assert!(err.to_string().contains("did you mean call?"), "{err}");
        assert_eq!(help_entries(Some("call")).len(), 1);
        assert!(help_entries(Some("call"))[0].0.starts_with("call "));
        assert!(help_entries(Some("exit"))[0].0.starts_with("quit"));
        assert!(help_entries(Some("trace"))[0].0.starts_with("trace"));
        assert_eq!(help_entries(None).len(), HELP.len());
        assert_eq!(ok("quit"), ShellCommand::Quit);
        assert_eq!(ok("exit"), ShellCommand::Quit);
        assert!(parse("list everything").is_err());
        assert!(parse("describe").is_err());
        assert!(parse("describe a b").is_err());
    }

    #[test]
    fn watch_trace_stats_and_friends() {
        assert_eq!(ok("watch"), ShellCommand::Watch { switch: None });
        assert_eq!(ok("watch on"), ShellCommand::Watch { switch: Some(true) });
        assert_eq!(
            ok("watch off"),
            ShellCommand::Watch {
                switch: Some(false)
            }
        );
        assert!(parse("watch maybe").is_err());
        assert_eq!(
            ok("trace"),
            ShellCommand::Trace(TraceAction::Show { json: false })
        );
        assert_eq!(
            ok("trace --json"),
            ShellCommand::Trace(TraceAction::Show { json: true })
        );
        assert_eq!(ok("trace clear"), ShellCommand::Trace(TraceAction::Clear));
        assert_eq!(
            ok("trace off"),
            ShellCommand::Trace(TraceAction::Record(false))
        );
        assert!(parse("trace call x:y").is_err());
        assert_eq!(ok("stats --json"), ShellCommand::Stats { json: true });
        assert_eq!(
            ok("dead-letters"),
            ShellCommand::DeadLetters { json: false }
        );
        assert_eq!(ok("doctor"), ShellCommand::Doctor { json: false });
        assert!(parse("stats greeter").is_err());
        assert_eq!(
            ok("reenable faulty"),
            ShellCommand::Reenable { plugin: "faulty" }
        );
        assert!(parse("reenable").is_err());
        assert!(parse("reenable a b").is_err());
    }

    #[test]
    fn unknown_command_names_the_known_ones() {
        let err = parse("cal greeter:greet").expect_err("unknown");
        assert!(err.to_string().contains("\"cal\""), "{err}");
        assert!(err.to_string().contains("did you mean call?"), "{err}");
        assert!(matches!(err, AppError::Usage { .. }));
        let err = parse("zzzz").expect_err("unknown");
        assert!(err.to_string().contains("call, emit"), "{err}");
    }

    #[test]
    fn split_word_trims() {
        assert_eq!(split_word("  a  b c "), ("a", "b c"));
        assert_eq!(split_word("a"), ("a", ""));
        assert_eq!(split_word(""), ("", ""));
    }
}
