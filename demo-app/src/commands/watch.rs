//! `watch`: load the folder, show its state, then apply every change to it and print each
//! lifecycle event as it happens. The shell's `watch on` runs the same loop in the background.
//!
//! Two sources feed the output: a host subscription to `plugin:*` (loads, reloads, errors,
//! quarantines...) and the watcher's callback, for changes it could not apply. One loop prints
//! both, so lines never interleave mid-line and a refused reload shows up even when no event
//! explains it.

mod lines;

pub use lines::{ApplyFailure, ImageCounts, LifecycleLine, WatchLine};

use std::{
    io::{self, Write as _},
    path::PathBuf,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crossbeam_channel::{never, select, unbounded, Receiver, Sender};
use loader::{ChangeCallback, FolderWatcher, Host, Subscription};
use plugin_api::{ErrorKind, Event};
use serde::Serialize;

use super::{list, render_list, ListRow};
use crate::{cli::WatchArgs, clock, error::AppError, json, session::Session, stop};

/// Events the subscription holds before the oldest are dropped.
const EVENT_BACKLOG: usize = 1024;

/// The first JSON line of `watch --json`: the state before any change.
#[derive(Debug, Serialize)]
struct Watching<'a> {
    event: &'static str,
    folder: &'a PathBuf,
    debounce_ms: u64,
    polling: bool,
    plugins: &'a [ListRow],
    timestamp_ms: u64,
}

/// Runs `watch` on a loaded session until `--for-ms` passes or a signal comes.
///
/// # Errors
/// The folder cannot be watched (exit 1), or stdout is closed.
pub fn run(session: &Session, args: &WatchArgs) -> Result<(), AppError> {
    let host = &session.host;
    let events = host.subscribe("plugin:*", EVENT_BACKLOG);
    let (failures_tx, failures) = unbounded();
    let debounce = Duration::from_millis(args.debounce_ms);
    let watcher = start_watcher(host, debounce, failures_tx)?;
    let rows = list(session);
    let mut out = io::stdout().lock();
    if args.json {
        let watching = Watching {
            event: "watching",
            folder: &session.plugins_dir,
            debounce_ms: args.debounce_ms,
            polling: watcher.polling,
            plugins: &rows,
            timestamp_ms: clock::now_ms(),
        };
        writeln!(out, "{}", json::to_text(&watching, false)?)?;
    } else {
        write!(out, "{}", render_list(&rows, &session.plugins_dir))?;
        if !crate::output::quiet() {
            let until = args.for_ms.map_or_else(
                || "until interrupted (Ctrl-C)".to_owned(),
                |ms| format!("for {ms} ms"),
            );
            writeln!(
                out,
                "watching {} {until}; changes apply after {} ms unchanged{}",
                session.plugins_dir.display(),
                args.debounce_ms,
                if watcher.polling { " (polling)" } else { "" }
            )?;
        }
    }
    out.flush()?;
    drop(out);
    let deadline = args
        .for_ms
        .map(|ms| Instant::now() + Duration::from_millis(ms));
    let json = args.json;
    // Ctrl-C and SIGTERM end the loop; `main` then reports the signal's exit code.
    let result = pump(
        host,
        &events,
        &failures,
        &stop::receiver(),
        deadline,
        |line| {
            let text = if json {
                json::to_text(line, false)?
            } else {
                line.human()
            };
            let mut out = io::stdout().lock();
            writeln!(out, "{text}")?;
            // Flushed per line: whoever reads the pipe sees each change as it happens.
            out.flush()?;
            Ok(())
        },
    );
    drop(watcher);
    result
}

/// Starts the folder watcher; its callback forwards what it could not apply to `failures`.
fn start_watcher(
    host: &Host,
    debounce: Duration,
    failures: Sender<ApplyFailure>,
) -> Result<FolderWatcher, AppError> {
    let on_change: ChangeCallback = Box::new(move |_path, outcome| {
        for failure in lines::failures(outcome, clock::now_ms()) {
            // The receiver goes away only when the watch is stopping.
            let _ = failures.send(failure);
        }
    });
    host.watch(debounce, on_change)
        .map_err(|e| AppError::from_error(&e))
}

/// The lines one lifecycle event produces: the event, and after a reload the image counts.
fn lines_for(host: &Host, event: &Event) -> Vec<WatchLine> {
    let Some(line) = LifecycleLine::from_event(event) else {
        return Vec::new();
    };
    let reloaded = line.is_reload();
    let mut lines = vec![WatchLine::Lifecycle(line)];
    if reloaded {
        lines.push(WatchLine::Images(ImageCounts::new(
            host.mapped_images(),
            clock::now_ms(),
        )));
    }
    lines
}

/// Hands every line to `emit` as events and failures arrive, until `stop` fires or
/// disconnects, or `deadline` passes.
///
/// # Errors
/// The first error `emit` returns.
fn pump(
    host: &Host,
    events: &Subscription,
    failures: &Receiver<ApplyFailure>,
    stop: &Receiver<()>,
    deadline: Option<Instant>,
    mut emit: impl FnMut(&WatchLine) -> Result<(), AppError>,
) -> Result<(), AppError> {
    let timeout = deadline.map_or_else(never, crossbeam_channel::at);
    let mut failures = failures.clone();
    loop {
        select! {
            recv(stop) -> _ => return Ok(()),
            recv(timeout) -> _ => return Ok(()),
            recv(events.receiver()) -> event => match event {
                Ok(event) => {
                    for line in lines_for(host, &event) {
                        emit(&line)?;
                    }
                }
                // The host is gone: nothing more will happen.
                Err(_) => return Ok(()),
            },
            recv(failures) -> failure => match failure {
                Ok(failure) => emit(&WatchLine::Failed(failure))?,
                // The watcher stopped; keep reporting events until told to stop.
                Err(_) => failures = never(),
            },
        }
    }
}

/// Where the shell's background watch sends its lines (as text for people).
pub type LineSink = Box<dyn FnMut(String) + Send>;

/// A folder watcher running behind the shell: `watch on` starts one, `watch off` drops it.
pub struct Background {
    watcher: Option<FolderWatcher>,
    stop: Option<Sender<()>>,
    printer: Option<JoinHandle<()>>,
}

impl Background {
    /// Starts watching `host`'s plugins folder. With a `sink`, every lifecycle line is handed
    /// to it from a background thread; without one (scripted mode, where only answers may
    /// reach stdout) changes are applied silently — the host still logs failures.
    ///
    /// # Errors
    /// The folder cannot be watched, or the printing thread cannot start.
    pub fn start(
        host: &Host,
        debounce: Duration,
        sink: Option<LineSink>,
    ) -> Result<Background, AppError> {
        let Some(mut sink) = sink else {
            let watcher = host
                .watch(debounce, Box::new(|_, _| {}))
                .map_err(|e| AppError::from_error(&e))?;
            return Ok(Background {
                watcher: Some(watcher),
                stop: None,
                printer: None,
            });
        };
        let events = host.subscribe("plugin:*", EVENT_BACKLOG);
        let (failures_tx, failures) = unbounded();
        let watcher = start_watcher(host, debounce, failures_tx)?;
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread_host = host.clone();
        let printer = std::thread::Builder::new()
            .name("shell-watch".into())
            .spawn(move || {
                let _ = pump(&thread_host, &events, &failures, &stopped, None, |line| {
                    sink(line.human());
                    Ok(())
                });
            })
            .map_err(|e| {
                AppError::failed(
                    ErrorKind::Failed,
                    format!("cannot start the watch thread: {e}"),
                )
            })?;
        Ok(Background {
            watcher: Some(watcher),
            stop: Some(stop),
            printer: Some(printer),
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Watcher first, so no change is applied after `watch off` answered; then the printer,
        // which may still print what that last change did.
        self.watcher.take();
        self.stop.take();
        if let Some(printer) = self.printer.take() {
            let _ = printer.join();
        }
    }
}
