//! Hot reload: replace a running plugin with a new build of it, keeping its queues, so nothing
//! addressed to it is lost or failed.
//!
//! Protocol, for a file whose plugin is running:
//! 1. load the new file from a fresh shadow copy, with every check of a first load;
//! 2. ask admission (`plan::admit`, with the running plugin as the one replaced): the reload is
//!    refused (the old version keeps running, `plugin:error` says why) if the new build fails a
//!    check, would break a running dependent's requirement, lacks its own dependencies, or
//!    conflicts with another provider;
//! 3. hand the new build to the plugin's thread, which finishes the job in progress, makes the
//!    new instance, moves the old instance's `save_state` into the new one's `restore_state`,
//!    activates it and retires the old one (its `deactivate` gets the shutdown grace; one that
//!    never returns is left behind and counted); work that arrives meanwhile waits in the same
//!    queues and goes to the new instance;
//! 4. re-register what the new manifest declares and emit `plugin:reloaded`.
//!
//! The old library stays mapped (it is never `dlclose`d).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use crossbeam_channel::bounded;
use plugin_api::{ErrorKind, PluginError};

use super::{Lifecycle, LifecycleEvent, LoadReport, Turn};
use crate::{
    error::LoadError,
    load::library::{self, PluginLibrary},
    plan::admit::{self, Proposal, World},
    runtime::slot::{not_serving, Control, Seal},
};

/// What [`Host::apply_file`](crate::Host::apply_file) did.
#[derive(Debug)]
pub enum FileChange {
    /// A new plugin was loaded (see the report for its outcome).
    Loaded(LoadReport),
    /// A running plugin was replaced.
    Reloaded {
        /// Plugin name.
        plugin: String,
        /// The version that was running.
        old_version: String,
        /// The version now running.
        new_version: String,
    },
    /// The file has the same contents as the running plugin: nothing to do.
    Unchanged {
        /// Plugin name.
        plugin: String,
    },
    /// The file is gone and its plugin was deactivated (dependents first).
    Removed {
        /// Plugin name.
        plugin: String,
    },
    /// The file is gone and no plugin came from it.
    Ignored,
}

impl Lifecycle {
    /// Applies the current contents of `path`; see [`Host::apply_file`](crate::Host::apply_file).
    pub fn apply_file(&self, path: &Path) -> Result<FileChange, LoadError> {
        let turn = self.turn();
        let existing = self.registry.read().serving_from(path);
        if !path.exists() {
            return match existing {
                Some(plugin) => {
                    log::info!(
                        "{} was removed: deactivating plugin {plugin}",
                        path.display()
                    );
                    self.deactivate(
                        &turn,
                        &plugin,
                        &format!("its file {} was removed", path.display()),
                    )?;
                    Ok(FileChange::Removed { plugin })
                }
                None => Ok(FileChange::Ignored),
            };
        }
        let Some(plugin) = existing else {
            let report = self.load_files(&turn, &[path.to_owned()]);
            let activated: Vec<String> =
                report.activated().into_iter().map(str::to_owned).collect();
            for name in &activated {
                self.restore_dependents(&turn, name);
            }
            self.retry_waiting(&turn, activated);
            return Ok(FileChange::Loaded(report));
        };
        let copied = self.copy_checked(path);
        let copy = match copied {
            Ok(copy) => copy,
            Err(error) => return Err(self.refuse_reload(&plugin, error)),
        };
        // Same bytes as the running plugin: nothing to do, and nothing new gets mapped.
        let same = self
            .registry
            .read()
            .get(&plugin)
            .is_some_and(|e| e.library.fingerprint == copy.facts.fingerprint);
        if same {
            return Ok(FileChange::Unchanged { plugin });
        }
        let lib = match self.open_copy(copy) {
            Ok(lib) => lib,
            Err(error) => return Err(self.refuse_reload(&plugin, error)),
        };
        if lib.manifest.name != plugin {
            // The file now holds another plugin: retire the old one, load the new one.
            self.deactivate(&turn, &plugin, "its file now holds another plugin")?;
            return Ok(FileChange::Loaded(
                self.load_files(&turn, &[path.to_owned()]),
            ));
        }
        self.reload(&turn, lib)
            .map_err(|e| self.refuse_reload(&plugin, e))
    }

    /// Applies several settled changes: files that are new to the host load as one batch (so
    /// admission orders them by dependency), the rest one by one. Plugins that failed only for
    /// want of a dependency are tried again when it arrives.
    pub fn apply_files(&self, paths: &[PathBuf]) -> Vec<(PathBuf, Result<FileChange, LoadError>)> {
        let (new, known): (Vec<PathBuf>, Vec<PathBuf>) = paths
            .iter()
            .cloned()
            .partition(|p| p.exists() && self.registry.read().serving_from(p).is_none());
        let mut out: Vec<(PathBuf, Result<FileChange, LoadError>)> = Vec::new();
        for path in known {
            let outcome = self.apply_file(&path);
            out.push((path, outcome));
        }
        if !new.is_empty() {
            let turn = self.turn();
            let report = self.load_files(&turn, &new);
            let activated: Vec<String> =
                report.activated().into_iter().map(str::to_owned).collect();
            for name in &activated {
                self.restore_dependents(&turn, name);
            }
            let retried = self.retry_waiting(&turn, activated);
            drop(turn);
            for path in new {
                let entries = report
                    .entries
                    .iter()
                    .filter(|e| e.file == path)
                    .cloned()
                    .collect();
                out.push((path, Ok(FileChange::Loaded(LoadReport { entries }))));
            }
            out.extend(
                retried
                    .into_iter()
                    .map(|(path, r)| (path, Ok(FileChange::Loaded(r)))),
            );
        }
        out
    }

    /// Loads again the failed files that waited only for one of `arrived`; repeats for what
    /// those bring. One report per file, with the file.
    fn retry_waiting(
        &self,
        turn: &Turn<'_>,
        mut arrived: Vec<String>,
    ) -> Vec<(PathBuf, LoadReport)> {
        let mut reports = Vec::new();
        while !arrived.is_empty() {
            let files: Vec<PathBuf> = self
                .registry
                .read()
                .failures()
                .filter(|(_, f)| match &*f.error {
                    LoadError::MissingDependency { dependency, .. }
                    | LoadError::DependencyFailed { dependency, .. } => {
                        arrived.contains(dependency)
                    }
                    _ => false,
                })
                .map(|(file, _)| file.clone())
                .collect();
            if files.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for file in files {
                let report = self.load_files(turn, std::slice::from_ref(&file));
                next.extend(report.activated().into_iter().map(str::to_owned));
                reports.push((file, report));
            }
            arrived = next;
        }
        reports
    }

    /// Logs and announces a refused reload; the old version keeps running.
    fn refuse_reload(&self, plugin: &str, error: LoadError) -> LoadError {
        log::debug!("reload of {plugin} refused, the running version stays: {error}");
        self.announce(LifecycleEvent::Error {
            plugin: plugin.to_owned(),
            version: self.version_of(plugin),
            error: format!("reload refused: {}", super::error_chain(&error)),
        });
        error
    }

    /// What admission says about `lib` replacing the running plugin of its name.
    fn admit_reload(&self, lib: &PluginLibrary) -> Result<(), LoadError> {
        let registered = self.dispatcher.registered_providers();
        let registry = self.registry.read();
        let running = registry.running();
        let disabled = |_: &str| false;
        let world = World {
            host_version: &self.host_version,
            running: &running,
            quarantined: &[],
            disabled: &disabled,
            allow_wildcard: self.config.allow_wildcard,
            replacing: Some(&lib.manifest.name),
            registered_providers: &registered,
        };
        let proposal = Proposal {
            source: &lib.source,
            manifest: &lib.manifest,
            version: &lib.version,
        };
        match admit::admit(&world, &[proposal]).refused.pop() {
            Some((_, error)) => Err(error),
            None => Ok(()),
        }
    }

    fn reload(&self, _turn: &Turn<'_>, lib: PluginLibrary) -> Result<FileChange, LoadError> {
        let name = lib.manifest.name.clone();
        self.admit_reload(&lib)?;
        let (slot, old_version) = {
            let registry = self.registry.read();
            let entry = registry
                .get(&name)
                .ok_or_else(|| LoadError::UnknownPlugin {
                    plugin: name.clone(),
                })?;
            (entry.slot.clone(), entry.version().to_string())
        };
        let granted: Arc<[String]> = self
            .config
            .plugin(&name)
            .grant(&lib.manifest.declared_capabilities())
            .into();
        let seal = Seal::default();
        let fresh = self.fresh(&lib, &granted, &seal, &slot);
        let (done_tx, done_rx) = bounded(1);
        slot.control
            .send(Control::Swap {
                next: Box::new(fresh),
                from_version: old_version.clone(),
                done: done_tx,
            })
            .map_err(|_| LoadError::Activation {
                plugin: name.clone(),
                error: not_serving(&name),
            })?;
        // The thread may first finish a call in progress, then runs save_state, restore_state
        // and activate, then gives the old instance its grace.
        let deadline = self.activation_deadline()
            + Duration::from_millis(self.config.call_timeout_ms)
            + self.grace();
        let swapped = done_rx.recv_timeout(deadline).unwrap_or_else(|_| {
            // Stuck in the old instance's save_state or in a call: the supervisor gives the
            // plugin a fresh thread.
            seal.retire();
            slot.mark_faulted(
                format!(
                    "the reload's state handoff did not finish within {} ms",
                    deadline.as_millis()
                ),
                true,
            );
            Err(PluginError::new(
                ErrorKind::Timeout,
                format!(
                    "the swap (save_state, restore_state, activate) did not finish within {} ms",
                    deadline.as_millis()
                ),
            ))
        });
        if swapped.is_err() {
            // What the new instance registered before its activation failed goes with it.
            self.dispatcher
                .drop_instance_registrations(&name, seal.id());
        }
        swapped.map_err(|error| LoadError::Activation {
            plugin: name.clone(),
            error,
        })?;
        let new_version = lib.manifest.version.clone();
        self.dispatcher
            .reinstall(&lib.manifest, &granted, &slot, seal.id());
        if let Some(entry) = self.registry.write().get_mut(&name) {
            // Restarts and re-enabling use the build that is running now.
            entry.library = lib;
            entry.granted = granted;
            entry.seal = seal;
        }
        let mapped = library::images_mapped();
        log::info!("plugin {name} reloaded: {old_version} -> {new_version}; {mapped} libraries mapped in this process (retired ones are never unmapped)");
        self.announce(LifecycleEvent::Reloaded {
            plugin: name.clone(),
            version: new_version.clone(),
            old_version: old_version.clone(),
            new_version: new_version.clone(),
        });
        Ok(FileChange::Reloaded {
            plugin: name,
            old_version,
            new_version,
        })
    }

    /// Every file a plugin or a failure came from.
    pub fn known_files(&self) -> Vec<PathBuf> {
        let registry = self.registry.read();
        registry
            .entries()
            .filter_map(|(_, e)| e.file().map(Path::to_owned))
            .chain(registry.failures().map(|(f, _)| f.clone()))
            .collect()
    }

    /// Libraries this process has mapped, and how many of them no longer serve a plugin.
    pub fn mapped_images(&self) -> (u64, u64) {
        let total = library::images_mapped();
        let serving = self
            .registry
            .read()
            .entries()
            .filter(|(_, e)| {
                e.slot.state().is_serving()
                    && !e.library.fingerprint.is_empty()
                    && e.library.module.is_some()
            })
            .count() as u64;
        (total, total.saturating_sub(serving))
    }
}
