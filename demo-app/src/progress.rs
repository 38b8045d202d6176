//! Progress for people: an indicatif bar or spinner on stderr while something slow runs, with
//! counts and the time so far, cleared when done.
//!
//! Only when stderr is a terminal and `--quiet` is off, so pipes, files and `--json` readers
//! never see it; stdout is never touched. indicatif redraws the line itself (Windows consoles
//! included) and ticks on its own thread, so the time moves while a step blocks.

use std::{
    io::{self, IsTerminal},
    sync::Mutex,
    time::Duration,
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The line that the loader's progress reports move ([`on_load`]) while a
/// [`Progress::follow_loads`] lives; none otherwise (the watcher's reloads draw nothing).
static LOAD_LINE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// How often the line is redrawn while nothing else changes it (the elapsed time moves).
const TICK: Duration = Duration::from_millis(120);

/// A progress line shown on stderr until dropped, then erased.
#[must_use = "the line is erased when the value is dropped"]
pub struct Progress {
    bar: ProgressBar,
    /// Whether this is the line [`on_load`] moves.
    follows_loads: bool,
}

impl Progress {
    /// Whether progress is drawn at all: stderr is a terminal and `--quiet` is off.
    pub fn visible() -> bool {
        !crate::output::quiet() && io::stderr().is_terminal()
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
        Progress {
            bar,
            follows_loads: false,
        }
    }

    /// A spinner with `message` that the host's progress reports ([`on_load`]) turn into a
    /// count per file and per plugin: `loading 37/100 [=====>    ] 3s`, `activating 12/98`,
    /// `examining 5/100`. One at a time; the line stops following the loads when dropped.
    pub fn follow_loads(message: &str) -> Progress {
        let mut progress = Progress::spinner(message);
        if let Ok(mut line) = LOAD_LINE.lock() {
            *line = Some(progress.bar.clone());
            progress.follows_loads = true;
        }
        progress
    }

    /// A count towards `total` with a verb: `activating 37/100 [=====>    ] 3s`.
    pub fn counter(verb: &str, total: u64) -> Progress {
        let bar = Self::hidden_unless_visible(ProgressBar::new(total));
        let progress = Progress {
            bar,
            follows_loads: false,
        };
        progress.count(verb, total);
        progress.bar.enable_steady_tick(TICK);
        progress
    }

    /// Turns this line (a spinner, say) into a count towards `total` with a verb.
    pub fn count(&self, verb: &str, total: u64) {
        count_on(&self.bar, verb, total);
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

fn count_on(bar: &ProgressBar, verb: &str, total: u64) {
    bar.set_length(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} {pos}/{len} [{bar:30}] {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(verb.to_owned());
}

/// The host's progress callback (`HostBuilder::on_progress`): moves the line of
/// [`Progress::follow_loads`] when there is one, and does nothing otherwise. Runs on the
/// loading thread, between files, so it only updates the bar (indicatif draws it).
pub fn on_load(report: loader::LoadProgress) {
    let Ok(line) = LOAD_LINE.lock() else { return };
    let Some(bar) = line.as_ref() else { return };
    let verb = report.stage.as_str();
    let total = report.total as u64;
    if bar.message() != verb || bar.length() != Some(total) {
        count_on(bar, verb, total);
    }
    bar.set_position((report.done as u64).min(total));
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.follows_loads {
            if let Ok(mut line) = LOAD_LINE.lock() {
                line.take();
            }
        }
        self.bar.finish_and_clear();
    }
}
