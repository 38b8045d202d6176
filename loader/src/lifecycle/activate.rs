//! Loading and activation: files become checked libraries (`load`), admission decides which
//! may run (`plan::admit`), and each admitted plugin gets its slot, its thread and its context.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use crossbeam_channel::bounded;
use plugin_api::{ErrorKind, PluginError, PluginModRef};

use super::{registry::Failure, registry::SlotEntry, Lifecycle, LifecycleEvent, Turn};
use crate::{
    error::LoadError,
    load::{
        library::{self, PluginLibrary, ShadowCopy},
        progress::LoadStage,
    },
    plan::admit::{self, Proposal, World},
    runtime::{
        serve,
        slot::{Control, PluginState, Seal, Slot},
    },
    source::PluginSource,
};

/// One line of a [`LoadReport`].
#[derive(Debug, Clone)]
pub struct LoadEntry {
    /// The file.
    pub file: PathBuf,
    /// The plugin name, once the manifest was read.
    pub plugin: Option<String>,
    /// The plugin version, once the manifest was read.
    pub version: Option<String>,
    /// Why it is not active; `None` when it was activated. Shared with the host's record of
    /// the failure ([`PluginInfo::load_error`](crate::PluginInfo::load_error)).
    pub error: Option<Arc<LoadError>>,
}

/// What happened to each file of a load.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// One entry per file, in the order they were tried.
    pub entries: Vec<LoadEntry>,
}

impl LoadReport {
    /// Names of the plugins activated by this load, in activation order.
    pub fn activated(&self) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|e| e.error.is_none())
            .filter_map(|e| e.plugin.as_deref())
            .collect()
    }

    /// The error for the file whose name is `file_name`, if it failed.
    pub fn error_for(&self, file_name: &str) -> Option<&LoadError> {
        self.entries
            .iter()
            .find(|e| e.file.file_name().is_some_and(|n| n == file_name))
            .and_then(|e| e.error.as_deref())
    }

    /// The error for plugin `name`, if it failed after its manifest was read.
    pub fn error_for_plugin(&self, name: &str) -> Option<&LoadError> {
        self.entries
            .iter()
            .filter(|e| e.plugin.as_deref() == Some(name))
            .find_map(|e| e.error.as_deref())
    }

    /// Whether every file became an active plugin.
    pub fn is_ok(&self) -> bool {
        self.entries.iter().all(|e| e.error.is_none())
    }
}

fn entry(file: &Path, lib: &PluginLibrary, error: Option<LoadError>) -> LoadEntry {
    LoadEntry {
        file: file.to_owned(),
        plugin: Some(lib.manifest.name.clone()),
        version: Some(lib.manifest.version.clone()),
        error: error.map(Arc::new),
    }
}

/// How many files the copier may have copied and checked ahead of the thread that opens them.
const COPY_AHEAD: usize = 4;

/// A file made ready to open: a checked private copy, unless its plugin already serves from it.
enum Prepared {
    Serving(String),
    Copied(Result<ShadowCopy, LoadError>),
}

impl Lifecycle {
    /// What [`Lifecycle::load_files`] opens for `file`.
    fn prepare(&self, file: &Path) -> Prepared {
        match self.registry.read().serving_from(file) {
            Some(plugin) => Prepared::Serving(plugin),
            None => Prepared::Copied(self.copy_checked(file)),
        }
    }

    /// Loads the given plugin files (already-loaded files are reported, not loaded twice) and
    /// activates what admission allows, in dependency order.
    pub fn load_files(&self, turn: &Turn<'_>, files: &[PathBuf]) -> LoadReport {
        // Each opened library with the file it came from.
        let mut opened_from: Vec<&PathBuf> = Vec::new();
        let mut libraries = Vec::new();
        let mut report = LoadReport::default();
        // Copying and checking the next files (a pure step per file) runs on a second thread
        // while this one opens the ones before, in order: with two CPUs a folder loads in
        // about the time of the longer of the two steps instead of their sum.
        std::thread::scope(|scope| {
            let (copied_tx, copied) = crossbeam_channel::bounded(COPY_AHEAD);
            let copier = (files.len() > 1).then(|| {
                scope.spawn(move || {
                    for file in files {
                        if copied_tx.send(self.prepare(file)).is_err() {
                            return;
                        }
                    }
                })
            });
            for (done, file) in files.iter().enumerate() {
                self.progress.report(LoadStage::Loading, done, files.len());
                let prepared = match &copier {
                    Some(_) => copied.recv().unwrap_or_else(|_| self.prepare(file)),
                    None => self.prepare(file),
                };
                let opened = match prepared {
                    Prepared::Serving(plugin) => Err((
                        Some(plugin.clone()),
                        LoadError::AlreadyLoaded {
                            path: file.clone(),
                            plugin,
                        },
                    )),
                    Prepared::Copied(copy) => copy
                        .and_then(|copy| self.open_copy(copy))
                        .map_err(|e| (None, e)),
                };
                match opened {
                    Ok(lib) => {
                        opened_from.push(file);
                        libraries.push(lib);
                    }
                    Err((plugin, error)) => report.entries.push(LoadEntry {
                        file: file.clone(),
                        plugin,
                        version: None,
                        error: Some(Arc::new(error)),
                    }),
                }
            }
        });
        self.progress
            .report(LoadStage::Loading, files.len(), files.len());
        for (i, error) in self.activate_all(turn, &libraries) {
            report
                .entries
                .push(entry(opened_from[i], &libraries[i], error));
        }
        self.record_failures(&report);
        report
    }

    /// Registers a plugin compiled into the application.
    pub fn register_static(
        &self,
        turn: &Turn<'_>,
        module: PluginModRef,
    ) -> Result<String, LoadError> {
        let lib = library::checked_module(PluginSource::CompiledIn, module)?;
        let name = lib.manifest.name.clone();
        // The caller gets the error itself; the registry keeps no failure for a module that
        // has no file.
        match self
            .activate_all(turn, std::slice::from_ref(&lib))
            .into_iter()
            .find_map(|(_, error)| error)
        {
            Some(error) => Err(error),
            None => Ok(name),
        }
    }

    fn record_failures(&self, report: &LoadReport) {
        let mut registry = self.registry.write();
        for e in &report.entries {
            match &e.error {
                Some(error) if matches!(**error, LoadError::AlreadyLoaded { .. }) => {}
                Some(error) => {
                    log::debug!("{}", super::error_chain(&**error));
                    registry.record_failure(
                        &e.file,
                        Failure {
                            plugin: e.plugin.clone(),
                            version: e.version.clone(),
                            error: error.clone(),
                        },
                    );
                }
                None => registry.clear_failure(&e.file),
            }
        }
    }

    /// Asks admission which of `libraries` may run, then activates those in order. Returns each
    /// library's index with why it is not active (`None`: activated): the refused first, then
    /// the rest in activation order.
    fn activate_all(
        &self,
        turn: &Turn<'_>,
        libraries: &[PluginLibrary],
    ) -> Vec<(usize, Option<LoadError>)> {
        let mut outcomes = Vec::with_capacity(libraries.len());
        let registered = self.dispatcher.registered_providers();
        let admission = {
            let registry = self.registry.read();
            let running = registry.running();
            let quarantined = registry.quarantined();
            let quarantined: Vec<(&str, &str)> = quarantined
                .iter()
                .map(|(n, r)| (n.as_str(), r.as_str()))
                .collect();
            let disabled = |name: &str| !self.config.plugin(name).enabled;
            let world = World {
                host_version: &self.host_version,
                running: &running,
                quarantined: &quarantined,
                disabled: &disabled,
                allow_wildcard: self.config.allow_wildcard,
                replacing: None,
                registered_providers: &registered,
            };
            let proposals: Vec<Proposal<'_>> = libraries
                .iter()
                .map(|l| Proposal {
                    source: &l.source,
                    manifest: &l.manifest,
                    version: &l.version,
                })
                .collect();
            admit::admit(&world, &proposals)
        };
        for (i, error) in admission.refused {
            outcomes.push((i, Some(error)));
        }
        let mut failed: Vec<String> = Vec::new();
        let total = admission.order.len();
        for (done, i) in admission.order.into_iter().enumerate() {
            self.progress.report(LoadStage::Activating, done, total);
            let lib = &libraries[i];
            // Admission ordered dependencies first; one that failed to activate takes its
            // dependents with it.
            if let Some(dep) = lib
                .manifest
                .dependencies
                .iter()
                .find(|d| failed.contains(&d.name))
            {
                failed.push(lib.manifest.name.clone());
                let error = LoadError::DependencyFailed {
                    plugin: lib.manifest.name.clone(),
                    dependency: dep.name.clone(),
                };
                outcomes.push((i, Some(error)));
                continue;
            }
            match self.activate(turn, lib.clone()) {
                Ok(()) => outcomes.push((i, None)),
                Err(error) => {
                    self.announce(LifecycleEvent::Error {
                        plugin: lib.manifest.name.clone(),
                        version: Some(lib.manifest.version.clone()),
                        error: super::error_chain(&error),
                    });
                    failed.push(lib.manifest.name.clone());
                    outcomes.push((i, Some(error)));
                }
            }
        }
        self.progress.report(LoadStage::Activating, total, total);
        outcomes
    }

    /// Creates the plugin's slot and thread, instantiates and activates it there (under the
    /// activation deadline), then makes what its manifest declares reachable.
    pub(super) fn activate(&self, _turn: &Turn<'_>, lib: PluginLibrary) -> Result<(), LoadError> {
        let name = lib.manifest.name.clone();
        let settings = self.config.plugin(&name);
        if !settings.enabled {
            return Err(LoadError::Disabled { plugin: name });
        }
        let granted: Arc<[String]> = settings.grant(&lib.manifest.declared_capabilities()).into();
        let seal = Seal::default();
        let slot = Slot::new(
            &name,
            self.config.request_queue,
            self.config.event_queue,
            (
                self.faults.clone(),
                self.detached.clone(),
                self.dispatcher.clock().clone(),
            ),
            self.config.max_payload_bytes,
        );
        let (ready_tx, ready_rx) = bounded::<Result<(), PluginError>>(1);
        let fresh = self.fresh(&lib, &granted, &seal, &slot);
        let worker = serve::spawn(
            slot.clone(),
            self.dispatcher.recorder().clone(),
            fresh,
            ready_tx,
            self.grace(),
        )
        .map_err(|e| LoadError::Activation {
            plugin: name.clone(),
            error: PluginError::failed(format!("cannot start its thread: {e}")),
        })?;
        let deadline = self.activation_deadline();
        let activated = match crate::wait::recv_patiently(
            &ready_rx,
            deadline,
            crate::wait::PATIENCE,
        ) {
            Ok(r) => r,
            Err(_) => {
                slot.detach();
                seal.retire();
                Err(PluginError::new(
                    ErrorKind::Timeout,
                    format!("activate did not return within {} ms; its thread is left running (threads cannot be killed)", deadline.as_millis()),
                ))
            }
        };
        drop(ready_rx);
        if let Err(error) = activated {
            slot.close();
            self.dispatcher.drop_registrations(&name, None);
            // If activation ever returns, the thread finds this order and deactivates.
            let (done, _) = bounded(1);
            let _ = slot.control.try_send(Control::Stop { done });
            *slot.state.write() = PluginState::Failed;
            return Err(LoadError::Activation {
                plugin: name,
                error,
            });
        }
        let version = lib.manifest.version.clone();
        let file = lib.source.file().map(|f| f.display().to_string());
        self.dispatcher.install(&lib.manifest, &granted, &slot);
        *slot.state.write() = PluginState::Active;
        self.registry.write().insert(
            &name,
            SlotEntry {
                slot,
                library: lib,
                granted,
                worker: Some(worker),
                seal,
                stopped_with: None,
            },
        );
        log::info!("plugin {name} {version} activated");
        self.announce(LifecycleEvent::Loaded {
            plugin: name.clone(),
            version: version.clone(),
            file,
        });
        self.announce(LifecycleEvent::Activated {
            plugin: name,
            version,
        });
        Ok(())
    }

    /// Brings a quarantined or deactivated plugin back: a fresh instance of the library it was
    /// loaded from, activated like a first load.
    pub fn reenable(&self, turn: &Turn<'_>, plugin: &str) -> Result<(), LoadError> {
        let library = {
            let registry = self.registry.read();
            let entry = registry
                .get(plugin)
                .ok_or_else(|| LoadError::UnknownPlugin {
                    plugin: plugin.to_owned(),
                })?;
            if entry.slot.state().is_serving() {
                return Ok(());
            }
            entry.library.clone()
        };
        self.activate(turn, library)
    }

    /// Brings back the plugins deactivated only because `plugin` went away (now that it is
    /// back), dependencies first.
    pub(super) fn restore_dependents(&self, turn: &Turn<'_>, plugin: &str) {
        let waiting = self.registry.read().waiting_for(plugin);
        for name in waiting {
            if let Err(e) = self.reenable(turn, &name) {
                log::warn!("plugin {name} could not come back after {plugin} returned: {e}");
            } else {
                self.restore_dependents(turn, &name);
            }
        }
    }

    pub(super) fn activation_deadline(&self) -> Duration {
        Duration::from_millis(self.config.activation_timeout_ms.max(1))
    }

    pub(super) fn grace(&self) -> Duration {
        Duration::from_millis(self.config.shutdown_grace_ms.max(1))
    }
}
