//! The registry: every plugin the host knows (running, stopped, quarantined) with what it was
//! loaded from, every file that did not become a plugin, and the activation order.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    thread::JoinHandle,
};

use plugin_api::Manifest;

use crate::{
    error::LoadError,
    load::library::PluginLibrary,
    plan::admit::Running,
    runtime::slot::{PluginState, Seal, Slot},
};

/// A plugin as the host keeps it.
pub(crate) struct SlotEntry {
    pub slot: Arc<Slot>,
    /// What it was loaded from, for restarts and re-enabling.
    pub library: PluginLibrary,
    pub granted: Arc<[String]>,
    pub worker: Option<JoinHandle<()>>,
    /// Retires the running instance's context.
    pub seal: Seal,
    /// The dependency whose deactivation stopped this plugin: it comes back when that one
    /// does. Kept apart from the last error, which a slow `deactivate` may overwrite.
    pub stopped_with: Option<String>,
}

impl SlotEntry {
    pub fn manifest(&self) -> &Manifest {
        &self.library.manifest
    }

    pub fn version(&self) -> &semver::Version {
        &self.library.version
    }

    /// The file it was loaded from; `None` for a compiled-in module.
    pub fn file(&self) -> Option<&Path> {
        self.library.source.file()
    }
}

/// A file that did not become a plugin.
#[derive(Clone)]
pub(crate) struct Failure {
    pub plugin: Option<String>,
    pub version: Option<String>,
    pub error: Arc<LoadError>,
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct Registry {
    entries: BTreeMap<String, SlotEntry>,
    failures: BTreeMap<PathBuf, Failure>,
    /// Activation order, for shutdown in reverse.
    order: Vec<String>,
}

impl Registry {
    pub fn get(&self, plugin: &str) -> Option<&SlotEntry> {
        self.entries.get(plugin)
    }

    pub fn get_mut(&mut self, plugin: &str) -> Option<&mut SlotEntry> {
        self.entries.get_mut(plugin)
    }

    pub fn entries(&self) -> impl Iterator<Item = (&String, &SlotEntry)> {
        self.entries.iter()
    }

    pub fn failures(&self) -> impl Iterator<Item = (&PathBuf, &Failure)> {
        self.failures.iter()
    }

    /// Activation order.
    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// Records a plugin that now serves.
    pub fn insert(&mut self, name: &str, entry: SlotEntry) {
        if let Some(file) = entry.file() {
            self.failures.remove(file);
        }
        self.order.retain(|n| n != name);
        self.order.push(name.to_owned());
        self.entries.insert(name.to_owned(), entry);
    }

    pub fn record_failure(&mut self, file: &Path, failure: Failure) {
        self.failures.insert(file.to_owned(), failure);
    }

    pub fn clear_failure(&mut self, file: &Path) {
        self.failures.remove(file);
    }

    /// The serving plugin that came from `file`.
    pub fn serving_from(&self, file: &Path) -> Option<String> {
        self.entries
            .iter()
            .find(|(_, e)| e.file() == Some(file) && e.slot.state().is_serving())
            .map(|(n, _)| n.clone())
    }

    /// Serving plugins that depend on `plugin`, in activation order.
    pub fn dependents(&self, plugin: &str) -> Vec<String> {
        self.order
            .iter()
            .filter(|n| {
                self.entries.get(*n).is_some_and(|e| {
                    e.slot.state().is_serving()
                        && e.manifest().dependencies.iter().any(|d| d.name == plugin)
                })
            })
            .cloned()
            .collect()
    }

    /// Plugins that are not serving but were deactivated only because `plugin` went: they
    /// come back when it does.
    pub fn waiting_for(&self, plugin: &str) -> Vec<String> {
        self.order
            .iter()
            .filter(|n| {
                self.entries.get(*n).is_some_and(|e| {
                    e.slot.state() == PluginState::Deactivated
                        && e.stopped_with.as_deref() == Some(plugin)
                })
            })
            .cloned()
            .collect()
    }

    /// What admission sees as running.
    pub fn running(&self) -> Vec<Running<'_>> {
        self.entries
            .values()
            .filter(|e| e.slot.state().is_serving())
            .map(|e| Running {
                source: &e.library.source,
                manifest: e.manifest(),
                version: e.version(),
            })
            .collect()
    }

    /// Quarantined plugins and why.
    pub fn quarantined(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .filter(|(_, e)| e.slot.state() == PluginState::Quarantined)
            .map(|(n, e)| {
                (
                    n.clone(),
                    e.slot.last_error.lock().clone().unwrap_or_default(),
                )
            })
            .collect()
    }
}
