//! Hot reload: replace a running plugin with a new build of it, keeping its queues, so nothing
//! addressed to it is lost or failed.
//!
//! Protocol, for a file whose plugin is running:
//! 1. load the new file from a fresh shadow copy, with every check of a first load;
//! 2. refuse it (the old version keeps running, `plugin:error` says why) if any check fails,
//!    if the new version breaks a running dependent's requirement, or if its own dependencies
//!    are not met;
//! 3. create the new instance and hand it to the plugin's dispatcher thread, which finishes the
//!    job in progress, moves the old instance's `save_state` into the new one's
//!    `restore_state`, activates it and deactivates the old one; work that arrives meanwhile
//!    waits in the same queues and goes to the new instance;
//! 4. re-register what the new manifest declares and emit `plugin:reloaded`.
//!
//! The old library stays mapped (it is never `dlclose`d); [`Host::mapped_images`] counts them.

use std::{path::Path, sync::Arc, time::Duration};

use crossbeam_channel::bounded;
use plugin_api::{ErrorKind, PluginError};

use crate::{
    error::LoadError,
    host::{Host, HostInner, LoadReport},
    lifecycle::register,
    load::library::{self, PluginLibrary},
    load::preflight::Checksum,
    runtime::slot::{self, Control},
};

/// What [`Host::apply_file`] did.
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

impl Host {
    /// Applies the current contents of `path` (a file in the plugins folder): loads it if no
    /// plugin came from it, reloads the plugin if its contents changed, deactivates the plugin
    /// if the file is gone.
    ///
    /// # Errors
    /// Why a reload was refused; the old version keeps running.
    pub fn apply_file(&self, path: &Path) -> Result<FileChange, LoadError> {
        let existing = self.inner.running_from_file(path);
        if !path.exists() {
            return match existing {
                Some(plugin) => {
                    let _guard = self.inner.lifecycle.lock();
                    log::info!(
                        "{} was removed: deactivating plugin {plugin}",
                        path.display()
                    );
                    self.inner.deactivate_with_dependents(
                        &plugin,
                        &format!("its file {} was removed", path.display()),
                    )?;
                    Ok(FileChange::Removed { plugin })
                }
                None => Ok(FileChange::Ignored),
            };
        }
        let Some(plugin) = existing else {
            return Ok(FileChange::Loaded(self.load_files(&[path.to_owned()])));
        };
        let _guard = self.inner.lifecycle.lock();
        let copied = library::ShadowCopy::make(
            path,
            &self.inner.shadow_dir,
            self.inner.allowlist.as_ref(),
            Checksum::IfAllowlisted,
        );
        let copy = match copied {
            Ok(copy) => copy,
            Err(error) => return Err(self.inner.refuse_reload(&plugin, error)),
        };
        // Same bytes as the running plugin: nothing to do, and nothing new gets mapped.
        if self.inner.same_contents(&plugin, &copy.facts.fingerprint) {
            return Ok(FileChange::Unchanged { plugin });
        }
        let lib = match copy.open() {
            Ok(lib) => lib,
            Err(error) => return Err(self.inner.refuse_reload(&plugin, error)),
        };
        if lib.manifest.name != plugin {
            // The file now holds another plugin: retire the old one, load the new one.
            self.inner
                .deactivate_with_dependents(&plugin, "its file now holds another plugin")?;
            drop(_guard);
            return Ok(FileChange::Loaded(self.load_files(&[path.to_owned()])));
        }
        self.inner
            .reload(lib)
            .map_err(|e| self.inner.refuse_reload(&plugin, e))
    }

    /// Libraries this process has mapped and how many of them no longer serve a plugin
    /// (retired by reloads, deactivation or failed checks). They are never unmapped.
    pub fn mapped_images(&self) -> (u64, u64) {
        let total = library::images_mapped();
        let serving = self
            .inner
            .state
            .read()
            .slots
            .values()
            .filter(|e| e.slot.state().is_serving() && !e.library.fingerprint.is_empty())
            .count() as u64;
        (total, total.saturating_sub(serving))
    }
}

impl HostInner {
    fn running_from_file(&self, path: &Path) -> Option<String> {
        let state = self.state.read();
        state
            .slots
            .iter()
            .find(|(_, e)| e.file == path && e.slot.state().is_serving())
            .map(|(n, _)| n.clone())
    }

    fn same_contents(&self, plugin: &str, fingerprint: &str) -> bool {
        self.state
            .read()
            .slots
            .get(plugin)
            .is_some_and(|e| e.library.fingerprint == fingerprint)
    }

    /// Logs and announces a refused reload; the old version keeps running.
    fn refuse_reload(&self, plugin: &str, error: LoadError) -> LoadError {
        log::error!("reload of {plugin} refused, the running version stays: {error}");
        let version = self.version_of(plugin);
        self.lifecycle_event(
            "plugin:error",
            plugin,
            version.as_deref(),
            Some(("error", &format!("reload refused: {error}"))),
        );
        error
    }

    fn reload(&self, lib: PluginLibrary) -> Result<FileChange, LoadError> {
        let name = lib.manifest.name.clone();
        self.check_reload(&lib)?;
        let (slot, old_version) = {
            let state = self.state.read();
            let entry = state
                .slots
                .get(&name)
                .ok_or_else(|| LoadError::UnknownPlugin {
                    plugin: name.clone(),
                })?;
            (entry.slot.clone(), entry.version.to_string())
        };
        let granted: Arc<[String]> = self
            .config
            .plugin(&name)
            .grant(&lib.manifest.declared_capabilities())
            .into();
        let context = self.context_for(&name, &granted);
        let next = (lib.module.instantiate())(context)
            .into_result()
            .map_err(|error| LoadError::Activation {
                plugin: name.clone(),
                error,
            })?;
        let (done_tx, done_rx) = bounded(1);
        slot.control
            .send(Control::Swap {
                next: Box::new(next),
                from_version: old_version.clone(),
                done: done_tx,
            })
            .map_err(|_| LoadError::Activation {
                plugin: name.clone(),
                error: slot::not_serving(&name),
            })?;
        let deadline = Duration::from_millis(
            self.config.activation_timeout_ms.max(1) + self.config.call_timeout_ms,
        );
        let swapped = done_rx.recv_timeout(deadline).unwrap_or_else(|_| {
            Err(PluginError::new(
                ErrorKind::Timeout,
                format!("the swap did not finish within {} ms", deadline.as_millis()),
            ))
        });
        swapped.map_err(|error| LoadError::Activation {
            plugin: name.clone(),
            error,
        })?;
        let new_version = lib.manifest.version.clone();
        {
            let mut state = self.state.write();
            let state = &mut *state;
            state.routes.remove_plugin(&name);
            register(&mut state.routes, &lib.manifest, &granted, &slot);
            if let Some(entry) = state.slots.get_mut(&name) {
                // Restarts and re-enabling use the build that is running now.
                entry.library = lib.clone();
                entry.manifest = lib.manifest;
                entry.version = lib.version;
                entry.file = lib.source;
                entry.granted = granted;
            }
        }
        let mapped = library::images_mapped();
        log::info!("plugin {name} reloaded: {old_version} -> {new_version}; {mapped} libraries mapped in this process (retired ones are never unmapped)");
        self.lifecycle_event_pair(&name, &old_version, &new_version);
        Ok(FileChange::Reloaded {
            plugin: name,
            old_version,
            new_version,
        })
    }

    /// The checks a reload needs beyond those of loading a library.
    fn check_reload(&self, lib: &PluginLibrary) -> Result<(), LoadError> {
        let name = &lib.manifest.name;
        self.check_host_requirement(lib)?;
        let state = self.state.read();
        let old = state
            .slots
            .get(name)
            .map(|e| e.version.to_string())
            .unwrap_or_default();
        for (dependent, entry) in &state.slots {
            if !entry.slot.state().is_serving() {
                continue;
            }
            for dep in entry
                .manifest
                .dependencies
                .iter()
                .filter(|d| &d.name == name)
            {
                let ok = semver::VersionReq::parse(&dep.requirement)
                    .is_ok_and(|r| r.matches(&lib.version));
                if !ok {
                    return Err(LoadError::BlockedByDependent {
                        plugin: name.clone(),
                        old,
                        new: lib.manifest.version.clone(),
                        dependent: dependent.clone(),
                        requirement: dep.requirement.clone(),
                    });
                }
            }
        }
        for dep in &lib.manifest.dependencies {
            let found = state
                .slots
                .get(&dep.name)
                .filter(|e| e.slot.state().is_serving());
            match found {
                None => {
                    return Err(LoadError::MissingDependency {
                        plugin: name.clone(),
                        dependency: dep.name.clone(),
                        requirement: dep.requirement.clone(),
                    })
                }
                Some(e) => {
                    if !semver::VersionReq::parse(&dep.requirement)
                        .is_ok_and(|r| r.matches(&e.version))
                    {
                        return Err(LoadError::IncompatibleDependency {
                            plugin: name.clone(),
                            dependency: dep.name.clone(),
                            requirement: dep.requirement.clone(),
                            found: e.version.to_string(),
                        });
                    }
                }
            }
        }
        for p in &lib.manifest.providers {
            if let Some(other) = state.routes.provider_conflict(&p.name, p.priority, name) {
                return Err(LoadError::Activation {
                    plugin: name.clone(),
                    error: PluginError::new(
                        ErrorKind::InvalidInput,
                        format!(
                            "provider {} is already provided by {other} at the same priority {}",
                            p.name, p.priority
                        ),
                    ),
                });
            }
        }
        Ok(())
    }

    fn lifecycle_event_pair(&self, plugin: &str, old: &str, new: &str) {
        let data = serde_json::json!({ "plugin": plugin, "version": new, "old_version": old, "new_version": new });
        let payload = plugin_api::Payload::json(&data).unwrap_or_default();
        let _ = self.emit(&crate::dispatch::Caller::host(), "plugin:reloaded", payload);
    }
}
