//! Progress for people: an indicatif bar or spinner on stderr while something slow runs, with
//! counts and the time so far, cleared when done.
//!
//! Only when stderr is a terminal and `--quiet` is off, so pipes, files and `--json` readers
//! never see it; stdout is never touched. indicatif redraws the line itself (Windows consoles
//! included) and ticks on its own thread, so the time moves while a step blocks.

use std::{
    io::{self, IsTerminal},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `--quiet`: no progress at all.
static QUIET: AtomicBool = AtomicBool::new(false);

/// How often the line is redrawn while nothing else changes it (the elapsed time moves).
const TICK: Duration = Duration::from_millis(120);

/// Switches progress off for the whole process (`--quiet`).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// A progress line shown on stderr until dropped, then erased.
#[must_use = "the line is erased when the value is dropped"]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// Whether progress is drawn at all: stderr is a terminal and `--quiet` is off.
    pub fn visible() -> bool {
        !QUIET.load(Ordering::Relaxed) && io::stderr().is_terminal()
    }

    /// A spinner with `message` and the time so far: `⠙ examining 100 files (3s)`.
    pub fn spinner(message: &str) -> Progress {
        let bar = Self::hidden_unless_visible(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(TICK);
        Progress { bar }
    }

    /// A count towards `total` with a verb: `activating 37/100 [=====>    ] 3s`.
    pub fn counter(verb: &str, total: u64) -> Progress {
        let bar = Self::hidden_unless_visible(ProgressBar::new(total));
        let progress = Progress { bar };
        progress.count(verb, total);
        progress.bar.enable_steady_tick(TICK);
        progress
    }

    /// Turns this line (a spinner, say) into a count towards `total` with a verb.
    pub fn count(&self, verb: &str, total: u64) {
        self.bar.set_length(total);
        self.bar.set_style(
            ProgressStyle::with_template("{msg} {pos}/{len} [{bar:30}] {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        self.bar.set_message(verb.to_owned());
    }

    /// Replaces the message (the verb of a counter).
    pub fn set_message(&self, message: &str) {
        self.bar.set_message(message.to_owned());
    }

    /// Moves the count to `position` (never past the total).
    pub fn set_position(&self, position: u64) {
        let total = self.bar.length().unwrap_or(position);
        self.bar.set_position(position.min(total));
    }

    fn hidden_unless_visible(bar: ProgressBar) -> ProgressBar {
        let target = if Self::visible() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        bar.set_draw_target(target);
        bar
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
