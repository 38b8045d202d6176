//! Watching the plugins folder: debounced, settle-checked, off the dispatch path.
//!
//! File-system notifications (the `notify` crate; a polling watcher when the platform's
//! notification API is unavailable) only mark a path as *pending*. A pending path is applied
//! once its size and modification time have stayed the same for one debounce interval, so a
//! file still being copied is never opened. The watcher thread blocks while nothing is pending:
//! an idle host uses no CPU.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};
use notify::{RecursiveMode, Watcher as _};

use std::sync::{Arc, Weak};

use crate::{
    lifecycle::{reload::FileChange, Lifecycle},
    load::discover,
};

/// Why the folder cannot be watched.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {}: {message}", folder(.path))]
pub struct WatchError {
    /// The folder; `None` when no plugins folder is configured.
    pub path: Option<PathBuf>,
    /// The watcher's message.
    pub message: String,
}

fn folder(path: &Option<PathBuf>) -> String {
    path.as_ref().map_or_else(
        || "the plugins folder".to_owned(),
        |p| p.display().to_string(),
    )
}

/// A running folder watcher; dropping it stops the watcher thread.
pub struct FolderWatcher {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _watcher: Box<dyn notify::Watcher + Send>,
    /// Whether notifications come from polling (the fallback) rather than the OS.
    pub polling: bool,
}

impl std::fmt::Debug for FolderWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderWatcher")
            .field("polling", &self.polling)
            .finish_non_exhaustive()
    }
}

impl Drop for FolderWatcher {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the watcher reports for each change it applied.
pub type ChangeCallback = Box<dyn Fn(&Path, &Result<FileChange, crate::LoadError>) + Send>;

#[derive(PartialEq, Clone, Copy)]
struct Fingerprint {
    size: u64,
    modified: Option<SystemTime>,
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    std::fs::metadata(path).ok().map(|m| Fingerprint {
        size: m.len(),
        modified: m.modified().ok(),
    })
}

struct Pending {
    seen: Option<Fingerprint>,
    since: Instant,
}

/// Watches `dir`, the host's plugins folder; see [`Host::watch`](crate::Host::watch). The
/// watcher stops applying changes once the host is gone.
pub(crate) fn watch(
    lifecycle: &Arc<Lifecycle>,
    dir: PathBuf,
    debounce: Duration,
    on_change: ChangeCallback,
) -> Result<FolderWatcher, WatchError> {
    {
        let (tx, rx) = unbounded::<Seen>();
        // Some watchers (FSEvents on macOS) report canonical paths (`/private/tmp/...`) while
        // the host knows its plugins by the folder as configured (relative, or through a
        // symlink): events are mapped back onto the configured folder.
        let canonical = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        let handler = {
            let tx = tx.clone();
            let dir = dir.clone();
            move |event: notify::Result<notify::Event>| match event {
                // Reading a file (the host's own shadow copy does) is not a change.
                Ok(event) if matches!(event.kind, notify::EventKind::Access(_)) => {}
                Ok(event) => {
                    for p in event.paths {
                        let _ = tx.send(Seen::Path(onto_folder(&p, &dir, &canonical)));
                    }
                }
                // Overflow or error: rescan the folder.
                Err(_) => {
                    let _ = tx.send(Seen::Rescan);
                }
            }
        };
        let (watcher, polling): (Box<dyn notify::Watcher + Send>, bool) =
            match notify::recommended_watcher(handler.clone()) {
                Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
                    Ok(()) => (Box::new(w), false),
                    Err(e) => {
                        log::warn!(
                            "native file watching failed ({e}); polling {} instead",
                            dir.display()
                        );
                        (poll_watcher(&dir, debounce, handler)?, true)
                    }
                },
                Err(e) => {
                    log::warn!(
                        "native file watching unavailable ({e}); polling {} instead",
                        dir.display()
                    );
                    (poll_watcher(&dir, debounce, handler)?, true)
                }
            };
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let host = Arc::downgrade(lifecycle);
        let thread_dir = dir.clone();
        let thread = std::thread::Builder::new()
            .name("plugin-watcher".into())
            .spawn(move || watch_loop(host, thread_dir, debounce, rx, stop_rx, on_change))
            .map_err(|e| WatchError {
                path: Some(dir.clone()),
                message: format!("cannot start the watcher thread: {e}"),
            })?;
        drop(tx);
        Ok(FolderWatcher {
            stop: Some(stop_tx),
            thread: Some(thread),
            _watcher: watcher,
            polling,
        })
    }
}

fn poll_watcher<H: notify::EventHandler>(
    dir: &Path,
    interval: Duration,
    handler: H,
) -> Result<Box<dyn notify::Watcher + Send>, WatchError> {
    let error = |e: notify::Error| WatchError {
        path: Some(dir.to_owned()),
        message: e.to_string(),
    };
    let config =
        notify::Config::default().with_poll_interval(interval.max(Duration::from_millis(50)));
    let mut w = notify::PollWatcher::new(handler, config).map_err(error)?;
    w.watch(dir, RecursiveMode::NonRecursive).map_err(error)?;
    Ok(Box::new(w))
}

/// What the file watcher saw.
enum Seen {
    /// A change to this path (mapped onto the folder as configured).
    Path(PathBuf),
    /// Events were lost (an overflow or a watcher error): look at the whole folder again.
    Rescan,
}

fn watch_loop(
    host: Weak<Lifecycle>,
    dir: PathBuf,
    debounce: Duration,
    changes: Receiver<Seen>,
    stop: Receiver<()>,
    on_change: ChangeCallback,
) {
    let mut pending: HashMap<PathBuf, Pending> = HashMap::new();
    loop {
        // Block while nothing is pending; otherwise wake up once per debounce interval.
        let timeout = if pending.is_empty() {
            None
        } else {
            Some(debounce)
        };
        let tick = timeout.map_or_else(crossbeam_channel::never, crossbeam_channel::after);
        select! {
            recv(stop) -> _ => return,
            recv(changes) -> seen => match seen {
                Ok(Seen::Rescan) => {
                    // Rescan: every candidate, plus every file a plugin came from.
                    let mut all = discover::discover(&dir).unwrap_or_default();
                    if let Some(host) = host.upgrade() {
                        all.extend(host.known_files().into_iter().filter(|f| f.starts_with(&dir)));
                    }
                    for p in all {
                        mark(&mut pending, p);
                    }
                }
                Ok(Seen::Path(path)) => {
                    if path.parent() == Some(dir.as_path()) && discover::is_candidate(&path) {
                        mark(&mut pending, path);
                    }
                }
                Err(_) => return,
            },
            recv(tick) -> _ => {
                let now = Instant::now();
                let mut ready = Vec::new();
                for (path, p) in pending.iter_mut() {
                    let current = fingerprint(path);
                    if current != p.seen {
                        p.seen = current;
                        p.since = now;
                    } else if now.duration_since(p.since) >= debounce {
                        ready.push(path.clone());
                    }
                }
                for path in &ready {
                    pending.remove(path);
                }
                let Some(host) = host.upgrade() else { return };
                // Settled together, applied together: new files load as one batch, in
                // dependency order.
                ready.sort();
                for (path, outcome) in host.apply_files(&ready) {
                    on_change(&path, &outcome);
                }
            },
        }
    }
}

fn mark(pending: &mut HashMap<PathBuf, Pending>, path: PathBuf) {
    let seen = fingerprint(&path);
    let entry = pending.entry(path).or_insert(Pending {
        seen,
        since: Instant::now(),
    });
    // Any new notification restarts the settle period.
    entry.seen = seen;
    entry.since = Instant::now();
}

/// `path` as a path in `dir` when it names a file of `dir` (whose canonical form is
/// `canonical`), whatever form the watcher reported it in.
fn onto_folder(path: &Path, dir: &Path, canonical: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if parent != dir => {
            let parent = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_owned());
            if parent == canonical {
                dir.join(name)
            } else {
                path.to_owned()
            }
        }
        _ => path.to_owned(),
    }
}
