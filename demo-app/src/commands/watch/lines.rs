//! What `watch` prints, one line per happening: lifecycle events, changes the watcher could not
//! apply, and the image counts after a reload. Pure formatting, no I/O.

use std::path::PathBuf;

use loader::{FileChange, LifecycleEvent, LoadError};
use plugin_api::Event;
use serde::Serialize;

use crate::{error::error_chain, safe};

/// Width of the first column of the text lines; fits `deactivated` and `quarantined`.
const VERB_WIDTH: usize = 12;

/// One line of `watch` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum WatchLine {
    /// A `plugin:*` event from the host.
    Lifecycle(LifecycleLine),
    /// A change the watcher could not apply (a refused reload, a new file that failed).
    Failed(ApplyFailure),
    /// Libraries mapped in this process, after a reload.
    Images(ImageCounts),
}

/// A lifecycle event: `{"event": "plugin:reloaded", "kind": "reloaded", "plugin", "version",
/// "old_version", "new_version", "timestamp_ms"}`: the event type, the host's
/// [`LifecycleEvent`] with all of its fields, and when it was emitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LifecycleLine {
    /// The event type, `plugin:<what>`.
    pub event: &'static str,
    /// What happened.
    #[serde(flatten)]
    pub what: LifecycleEvent,
    /// When the host emitted it, ms since the Unix epoch.
    pub timestamp_ms: u64,
}

/// A change the watcher could not apply: `{"event": "watch:error", "plugin", "file", "error",
/// "timestamp_ms"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplyFailure {
    /// Always `watch:error`.
    pub event: &'static str,
    /// The plugin, when its manifest was read (`null` otherwise).
    pub plugin: Option<String>,
    /// The plugin file.
    pub file: PathBuf,
    /// Why, with its source chain.
    pub error: String,
    /// When it was reported, ms since the Unix epoch.
    pub timestamp_ms: u64,
}

/// `{"event": "watch:images", "mapped", "retired", "timestamp_ms"}` ([`loader::Host::mapped_images`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageCounts {
    /// Always `watch:images`.
    pub event: &'static str,
    /// Libraries mapped by this process.
    pub mapped: u64,
    /// How many of them serve no plugin any more (they are never unmapped).
    pub retired: u64,
    /// When they were counted, ms since the Unix epoch.
    pub timestamp_ms: u64,
}

impl LifecycleLine {
    /// The line for a `plugin:*` event from the host; `None` for any other event.
    pub fn from_event(event: &Event) -> Option<LifecycleLine> {
        let what = LifecycleEvent::from_event(event)?;
        Some(LifecycleLine {
            event: what.event_type(),
            what,
            timestamp_ms: event.timestamp_ms,
        })
    }

    /// Whether this is a successful reload (after which the image counts are shown).
    pub fn is_reload(&self) -> bool {
        matches!(self.what, LifecycleEvent::Reloaded { .. })
    }
}

impl ImageCounts {
    /// The counts `(mapped, retired)` as returned by `Host::mapped_images`.
    pub fn new((mapped, retired): (u64, u64), timestamp: u64) -> ImageCounts {
        ImageCounts {
            event: "watch:images",
            mapped,
            retired,
            timestamp_ms: timestamp,
        }
    }
}

impl WatchLine {
    /// The line as text for people (no trailing newline), e.g.
    /// `reloaded    greeter 0.1.0 -> 0.2.0`; terminal-safe ([`safe::text`]), since names,
    /// versions and reasons come from plugins.
    pub fn human(&self) -> String {
        safe::text(&self.raw_human()).into_owned()
    }

    fn raw_human(&self) -> String {
        match self {
            WatchLine::Lifecycle(l) => {
                let verb = l.event.strip_prefix("plugin:").unwrap_or(l.event);
                let (plugin, version, why) = match &l.what {
                    LifecycleEvent::Reloaded {
                        plugin,
                        old_version,
                        new_version,
                        ..
                    } => {
                        return format!(
                            "{verb:<VERB_WIDTH$}{plugin} {old_version} -> {new_version}"
                        )
                    }
                    LifecycleEvent::Loaded {
                        plugin, version, ..
                    }
                    | LifecycleEvent::Activated { plugin, version } => {
                        (plugin, Some(version), None)
                    }
                    LifecycleEvent::Deactivated {
                        plugin,
                        version,
                        reason,
                    } => {
                        // A plain request or shutdown needs no reason on the line.
                        let why = (reason != "requested" && reason != "shutdown").then_some(reason);
                        (plugin, Some(version), why)
                    }
                    LifecycleEvent::Restarted {
                        plugin,
                        version,
                        reason,
                    }
                    | LifecycleEvent::Quarantined {
                        plugin,
                        version,
                        reason,
                        ..
                    } => (plugin, Some(version), Some(reason)),
                    LifecycleEvent::Error {
                        plugin,
                        version,
                        error,
                    } => (plugin, version.as_ref(), Some(error)),
                };
                let who = match version {
                    Some(version) if !version.is_empty() => format!("{plugin} {version}"),
                    _ => plugin.clone(),
                };
                match why {
                    Some(why) => format!("{verb:<VERB_WIDTH$}{who}: {why}"),
                    None => format!("{verb:<VERB_WIDTH$}{who}"),
                }
            }
            WatchLine::Failed(f) => {
                let file = f.file.file_name().map_or_else(
                    || f.file.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                format!("{:<VERB_WIDTH$}{file}: {}", "watch error", f.error)
            }
            WatchLine::Images(i) => format!(
                "{:<VERB_WIDTH$}{} mapped, {} retired (never unmapped)",
                "images", i.mapped, i.retired
            ),
        }
    }
}

/// The errors in what the watcher reports for one applied change that no lifecycle event
/// reports already (one failure, one line).
///
/// A new file that failed shows up inside `Ok(Loaded(report))`, and only here. A refused
/// reload (the `Err`) and an activation failure are left out: the host announces both as
/// `plugin:error` events, and a plugin disabled in the config is no failure at all.
pub fn failures(outcome: &Result<FileChange, LoadError>, timestamp: u64) -> Vec<ApplyFailure> {
    let failure = |entry: &loader::LoadEntry, error: &LoadError| ApplyFailure {
        event: "watch:error",
        plugin: entry.plugin.clone(),
        file: entry.file.clone(),
        error: error_chain(error),
        timestamp_ms: timestamp,
    };
    match outcome {
        Err(_) => Vec::new(),
        Ok(FileChange::Loaded(report)) => report
            .entries
            .iter()
            .filter_map(|e| e.error.as_deref().map(|error| (e, error)))
            .filter(|(_, error)| {
                !matches!(
                    error,
                    LoadError::Activation { .. }
                        | LoadError::Disabled { .. }
                        | LoadError::AlreadyLoaded { .. }
                )
            })
            .map(|(entry, error)| failure(entry, error))
            .collect(),
        Ok(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;
    use loader::{LoadEntry, LoadReport};
    use plugin_api::Payload;

    fn line(what: LifecycleEvent) -> WatchLine {
        let event = Event {
            id: 1,
            parent: 0,
            event_type: what.event_type().into(),
            source: "host".into(),
            timestamp_ms: 1_700_000_000_000,
            data: what.payload(),
        };
        WatchLine::Lifecycle(LifecycleLine::from_event(&event).expect("a lifecycle event"))
    }

    #[test]
    fn reloaded_shows_both_versions() {
        let l = line(LifecycleEvent::Reloaded {
            plugin: "greeter".into(),
            version: "0.2.0".into(),
            old_version: "0.1.0".into(),
            new_version: "0.2.0".into(),
        });
        assert_eq!(l.human(), "reloaded    greeter 0.1.0 -> 0.2.0");
        assert_eq!(
            json::to_text(&l, false).expect("json"),
            r#"{"event":"plugin:reloaded","kind":"reloaded","plugin":"greeter","version":"0.2.0","old_version":"0.1.0","new_version":"0.2.0","timestamp_ms":1700000000000}"#
        );
    }

    #[test]
    fn plain_events_show_name_and_version() {
        let (plugin, version) = ("echo".to_owned(), "0.1.0".to_owned());
        let loaded = line(LifecycleEvent::Loaded {
            plugin: plugin.clone(),
            version: version.clone(),
            file: Some("plugins/libecho.so".into()),
        });
        assert_eq!(loaded.human(), "loaded      echo 0.1.0");
        let activated = line(LifecycleEvent::Activated {
            plugin: plugin.clone(),
            version: version.clone(),
        });
        assert_eq!(activated.human(), "activated   echo 0.1.0");
        let deactivated = line(LifecycleEvent::Deactivated {
            plugin,
            version,
            reason: "requested".into(),
        });
        assert_eq!(deactivated.human(), "deactivated echo 0.1.0");
        assert!(json::to_text(&loaded, false)
            .expect("json")
            .contains(r#""file":"plugins/libecho.so""#));
    }

    #[test]
    fn errors_and_reasons_follow_a_colon() {
        let error = line(LifecycleEvent::Error {
            plugin: "greeter".into(),
            version: Some("0.1.0".into()),
            error: "reload refused: bad library".into(),
        });
        assert_eq!(
            error.human(),
            "error       greeter 0.1.0: reload refused: bad library"
        );
        let quarantined = line(LifecycleEvent::Quarantined {
            plugin: "faulty".into(),
            version: "1.0.0".into(),
            reason: "a handler panicked".into(),
            max_restarts: 3,
            window_ms: 300_000,
        });
        assert_eq!(
            quarantined.human(),
            "quarantined faulty 1.0.0: a handler panicked"
        );
        let restarted = line(LifecycleEvent::Restarted {
            plugin: "faulty".into(),
            version: "1.0.0".into(),
            reason: "timeout".into(),
        });
        assert_eq!(restarted.human(), "restarted   faulty 1.0.0: timeout");
        assert!(json::to_text(&restarted, false)
            .expect("json")
            .contains(r#""reason":"timeout""#));
    }

    #[test]
    fn other_events_are_not_lifecycle_lines() {
        let event = Event {
            id: 1,
            parent: 0,
            event_type: "plugin:loaded".into(),
            source: "greeter".into(),
            timestamp_ms: 0,
            data: Payload::empty(),
        };
        assert!(LifecycleLine::from_event(&event).is_none());
    }

    #[test]
    fn images_and_failures() {
        let images = WatchLine::Images(ImageCounts::new((10, 2), 5));
        assert_eq!(
            images.human(),
            "images      10 mapped, 2 retired (never unmapped)"
        );
        assert_eq!(
            json::to_text(&images, false).expect("json"),
            r#"{"event":"watch:images","mapped":10,"retired":2,"timestamp_ms":5}"#
        );
        let refused: Result<FileChange, LoadError> = Err(LoadError::Cycle {
            cycle: "a -> b -> a".to_owned(),
        });
        assert!(
            failures(&refused, 9).is_empty(),
            "a refused reload is a plugin:error event already"
        );
        let report = LoadReport {
            entries: vec![LoadEntry {
                file: PathBuf::from("/p/liba.so"),
                plugin: None,
                version: None,
                error: Some(std::sync::Arc::new(LoadError::Cycle {
                    cycle: "a -> b -> a".to_owned(),
                })),
            }],
        };
        let found = failures(&Ok(FileChange::Loaded(report)), 9);
        assert_eq!(found.len(), 1);
        let failed = WatchLine::Failed(found[0].clone());
        assert_eq!(
            failed.human(),
            "watch error liba.so: dependency cycle: a -> b -> a"
        );
        assert_eq!(
            json::to_text(&failed, false).expect("json"),
            r#"{"event":"watch:error","plugin":null,"file":"/p/liba.so","error":"dependency cycle: a -> b -> a","timestamp_ms":9}"#
        );
    }

    #[test]
    fn failures_skip_what_events_already_say() {
        let entry = |file: &str, error: Option<LoadError>| LoadEntry {
            file: PathBuf::from(file),
            plugin: None,
            version: None,
            error: error.map(std::sync::Arc::new),
        };
        let report = LoadReport {
            entries: vec![
                entry("/p/libok.so", None),
                entry(
                    "/p/liboff.so",
                    Some(LoadError::Disabled {
                        plugin: "off".to_owned(),
                    }),
                ),
                entry(
                    "/p/libc.so",
                    Some(LoadError::Cycle {
                        cycle: "c -> c".to_owned(),
                    }),
                ),
            ],
        };
        let found = failures(&Ok(FileChange::Loaded(report)), 0);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].file, PathBuf::from("/p/libc.so"));
        let unchanged = Ok(FileChange::Unchanged {
            plugin: "x".to_owned(),
        });
        assert!(failures(&unchanged, 0).is_empty());
    }
}
