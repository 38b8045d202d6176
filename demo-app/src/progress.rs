//! Progress notes for people: one transient line on stderr while something slow runs.
//!
//! Only when stderr is a terminal, so pipes, files and `--json` readers never see them; stdout is
//! never touched.

use std::io::{self, IsTerminal, Write};

/// A progress line shown on stderr until dropped, then erased.
#[must_use = "the line is erased when the value is dropped"]
pub struct Progress {
    shown: bool,
}

impl Progress {
    /// Shows `message` (for example `loading 8 plugins…`) when stderr is a terminal.
    pub fn show(message: &str) -> Progress {
        let stderr = io::stderr();
        if !stderr.is_terminal() {
            return Progress { shown: false };
        }
        let mut err = stderr.lock();
        // Best effort: a terminal that cannot take a progress note loses nothing else.
        let shown = write!(err, "{message}").and_then(|()| err.flush()).is_ok();
        Progress { shown }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.shown {
            // Carriage return, then ANSI "erase line": the next output starts on a clean line.
            let mut err = io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}
