//! Where stderr goes: the `error:` line, log records, and colour.
//!
//! - Nothing here panics on a closed stderr (`eprintln!` would): a failed write is dropped.
//! - Colour comes from anstream, which writes it only to a terminal, honours `NO_COLOR` and
//!   `CLICOLOR_FORCE`, and translates it for older Windows consoles; `--color` overrides.
//! - Log records are written terminal-safe ([`safe::text`]: a plugin chooses its log messages)
//!   and, while the interactive shell runs, through the line editor's printer, so they appear
//!   above the prompt instead of over it ([`set_log_printer`]).

use std::{
    io::{self, Write},
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
};

use anstyle::{AnsiColor, Style};

use crate::safe::{self, Safe};

/// Style of the `error:` prefix.
pub const ERROR: Style = AnsiColor::Red.on_default().bold();
/// Style of the `warning:` prefix and of hints.
pub const WARNING: Style = AnsiColor::Yellow.on_default().bold();
/// Style of JSON keys and other emphasis.
pub const KEY: Style = AnsiColor::Cyan.on_default();

/// Something that prints one line above the interactive shell's prompt.
pub type LinePrinter = Box<dyn FnMut(String) + Send>;

/// The printer log records go through instead of stderr, while the shell runs.
static LOG_PRINTER: Mutex<Option<LinePrinter>> = Mutex::new(None);

/// `--quiet`: results and errors only.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Sets `--quiet` for the whole process: no warnings, no progress, no summary or banner lines;
/// results and `error:` lines are printed as ever.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether `--quiet` was given: what is not a result (a summary line, a banner, a hint, a
/// warning) is left out.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Prints `error: <message>` on stderr, the message terminal-safe.
pub fn error(message: &str) {
    let mut err = anstream::stderr().lock();
    let _ = writeln!(err, "{ERROR}error:{ERROR:#} {}", Safe(message));
    let _ = err.flush();
}

/// Prints `warning: <message>` on stderr, the message terminal-safe; nothing with `--quiet`.
pub fn warning(message: &str) {
    if quiet() {
        return;
    }
    let mut err = anstream::stderr().lock();
    let _ = writeln!(err, "{WARNING}warning:{WARNING:#} {}", Safe(message));
    let _ = err.flush();
}

/// Pretty-printed JSON (serde_json's layout: one key per line) with its keys styled [`KEY`].
/// The styles reach the terminal only when it takes colour: print it through `anstream`.
pub fn paint_json_keys(pretty: &str) -> String {
    let mut out = String::with_capacity(pretty.len() + pretty.len() / 4);
    for (i, line) in pretty.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        match key_end(body) {
            Some(end) => {
                out.push_str(indent);
                out.push_str(&format!("{KEY}{}{KEY:#}", &body[..end]));
                out.push_str(&body[end..]);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Where the JSON string that starts `text` ends (after its closing quote), when a `:` follows
/// it, which makes it a key.
fn key_end(text: &str) -> Option<usize> {
    let rest = text.strip_prefix('"')?;
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => {
                let end = i + 2;
                return text[end..].starts_with(':').then_some(end);
            }
            _ => {}
        }
    }
    None
}

/// Sends log records through `printer` from now on (`None`: back to stderr).
pub fn set_log_printer(printer: Option<LinePrinter>) {
    if let Ok(mut slot) = LOG_PRINTER.lock() {
        *slot = printer;
    }
}

/// Logging: `quiet` keeps errors only, 0 warnings, `-v` info, `-vv` debug; `RUST_LOG`
/// directives are applied on top, so `RUST_LOG=greeter=debug` adds one plugin's detail without
/// silencing the rest. Each record is one line, `LEVEL target: message`.
///
/// By default the loader's own warnings are left out: each of them (a refused reload, a
/// restart, a failed handler) is already in what the demo prints — the `error:` line, the
/// `list` table, a `watch` line — and one failure should be reported once. `-v` shows them.
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => log::LevelFilter::Error,
        (false, 0) => log::LevelFilter::Warn,
        (false, 1) => log::LevelFilter::Info,
        (false, _) => log::LevelFilter::Debug,
    };
    let colour = anstream::AutoStream::choice(&io::stderr()) != anstream::ColorChoice::Never;
    let loader_level = if verbose == 0 {
        log::LevelFilter::Error
    } else {
        level
    };
    env_logger::Builder::new()
        .filter_level(level)
        .filter_module("loader", loader_level)
        .parse_default_env()
        .target(env_logger::Target::Pipe(Box::new(LogWriter)))
        // The writer is not a terminal to env_logger, so it is told whether stderr is.
        .write_style(if colour {
            env_logger::WriteStyle::Always
        } else {
            env_logger::WriteStyle::Never
        })
        .format(move |buf, record| {
            let style = buf.default_level_style(record.level());
            writeln!(
                buf,
                "{style}{:<5}{style:#} {}: {}",
                record.level(),
                Safe(record.target()),
                safe::text(&record.args().to_string())
            )
        })
        .init();
}

/// Where env_logger writes each formatted record (one `write_all` per record): the shell's
/// printer when one is set, else stderr.
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Ok(mut slot) = LOG_PRINTER.lock() {
            if let Some(printer) = slot.as_mut() {
                // The printer ends the line itself.
                let text = String::from_utf8_lossy(buf);
                printer(text.trim_end_matches('\n').to_owned());
                return Ok(buf.len());
            }
        }
        // A closed stderr loses the record, nothing else.
        let _ = io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_are_painted() {
        let pretty = "{\n  \"a\\\"b\": \"x: y\",\n  \"n\": [\n    \"k\"\n  ]\n}";
        let painted = paint_json_keys(pretty);
        let key = |k: &str| format!("{KEY}{k}{KEY:#}");
        assert_eq!(
            painted,
            format!(
                "{{\n  {}: \"x: y\",\n  {}: [\n    \"k\"\n  ]\n}}",
                key("\"a\\\"b\""),
                key("\"n\"")
            )
        );
        assert_eq!(paint_json_keys("\"plain\""), "\"plain\"");
    }
}
