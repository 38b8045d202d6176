//! Loading, activation and deactivation: how plugins enter and leave the host.

pub(crate) mod reload;
pub(crate) mod supervisor;

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::Arc,
    time::Duration,
};

use abi_stable::sabi_trait::TD_Opaque;
use crossbeam_channel::bounded;
use plugin_api::{abi::HostContext_TO, Manifest, Payload, PluginError};

use crate::{
    context::PluginContext,
    dispatch::routes::{Route, Routes, Target},
    dispatch::Caller,
    error::LoadError,
    host::{Failure, HostInner, LoadEntry, LoadReport, SlotEntry},
    load::library::PluginLibrary,
    plan::capability,
    plan::resolve::{self, Node},
    runtime::slot::{self, Control, PluginState, Slot},
};

pub(crate) fn lifecycle_data(
    plugin: &str,
    version: Option<&str>,
    extra: Option<(&str, &str)>,
) -> Payload {
    let mut map = serde_json::Map::new();
    map.insert("plugin".into(), plugin.into());
    if let Some(v) = version {
        map.insert("version".into(), v.into());
    }
    if let Some((k, v)) = extra {
        map.insert(k.into(), v.into());
    }
    Payload::json(&serde_json::Value::Object(map)).unwrap_or_default()
}

impl HostInner {
    /// The version of plugin `name`, if the host knows it.
    pub(crate) fn version_of(&self, name: &str) -> Option<String> {
        self.state
            .read()
            .slots
            .get(name)
            .map(|e| e.version.to_string())
    }

    pub(crate) fn plugin_for_file(&self, file: &Path) -> Option<String> {
        let state = self.state.read();
        state
            .slots
            .iter()
            .find(|(_, e)| e.file == file && e.slot.state().is_serving())
            .map(|(n, _)| n.clone())
    }

    pub(crate) fn lifecycle_event(
        &self,
        kind: &str,
        plugin: &str,
        version: Option<&str>,
        extra: Option<(&str, &str)>,
    ) {
        let _ = self.emit(
            &Caller::host(),
            kind,
            lifecycle_data(plugin, version, extra),
        );
    }

    pub(crate) fn record_failures(&self, report: &LoadReport) {
        let mut state = self.state.write();
        for e in &report.entries {
            match &e.error {
                Some(LoadError::AlreadyLoaded { .. }) => {}
                Some(error) => {
                    state.failures.insert(
                        e.file.clone(),
                        Failure {
                            plugin: e.plugin.clone(),
                            version: e.version.clone(),
                            error: error_chain(error),
                        },
                    );
                }
                None => {
                    state.failures.remove(&e.file);
                }
            }
        }
    }

    /// Checks names, host requirements and dependencies of freshly loaded libraries, then
    /// activates them in dependency order.
    pub(crate) fn activate_all(&self, libraries: Vec<PluginLibrary>, report: &mut LoadReport) {
        let running: HashMap<String, semver::Version> = self
            .state
            .read()
            .slots
            .iter()
            .filter(|(_, e)| e.slot.state().is_serving())
            .map(|(n, e)| (n.clone(), e.version.clone()))
            .collect();
        // Names: first file wins, later ones are duplicates; running plugins win over new files.
        let mut accepted: Vec<PluginLibrary> = Vec::new();
        for lib in libraries {
            let name = lib.manifest.name.clone();
            let existing = accepted
                .iter()
                .find(|l| l.manifest.name == name)
                .map(|l| l.source.clone())
                .or_else(|| {
                    running.contains_key(&name).then(|| {
                        self.state
                            .read()
                            .slots
                            .get(&name)
                            .map(|e| e.file.clone())
                            .unwrap_or_default()
                    })
                });
            let quarantined = self.state.read().slots.get(&name).and_then(|e| {
                (e.slot.state() == PluginState::Quarantined)
                    .then(|| e.slot.last_error.lock().clone().unwrap_or_default())
            });
            let error = if let Some(existing) = existing {
                Some(LoadError::Duplicate {
                    plugin: name.clone(),
                    path: lib.source.clone(),
                    existing,
                })
            } else if let Some(reason) = quarantined {
                Some(LoadError::Quarantined {
                    plugin: name.clone(),
                    reason,
                })
            } else {
                self.check_host_requirement(&lib).err()
            };
            match error {
                Some(error) => {
                    log::error!("{error}");
                    report.entries.push(entry(&lib, Some(error)));
                }
                None => accepted.push(lib),
            }
        }
        let nodes: Vec<Node<'_>> = accepted
            .iter()
            .map(|l| Node {
                name: &l.manifest.name,
                version: &l.version,
                dependencies: &l.manifest.dependencies,
            })
            .collect();
        let resolution = resolve::resolve(&nodes, &running);
        let mut failed_names: HashSet<String> = HashSet::new();
        for (i, error) in resolution.failed {
            log::error!("{error}");
            failed_names.insert(accepted[i].manifest.name.clone());
            report.entries.push(entry(&accepted[i], Some(error)));
        }
        for i in resolution.order {
            let lib = &accepted[i];
            if let Some(dep) = lib
                .manifest
                .dependencies
                .iter()
                .find(|d| failed_names.contains(&d.name))
            {
                let error = LoadError::DependencyFailed {
                    plugin: lib.manifest.name.clone(),
                    dependency: dep.name.clone(),
                };
                log::error!("{error}");
                failed_names.insert(lib.manifest.name.clone());
                report.entries.push(entry(lib, Some(error)));
                continue;
            }
            match self.activate(lib.clone()) {
                Ok(()) => report.entries.push(entry(lib, None)),
                Err(error) => {
                    log::error!("{error}");
                    self.lifecycle_event(
                        "plugin:error",
                        &lib.manifest.name,
                        Some(&lib.manifest.version),
                        Some(("error", &error.to_string())),
                    );
                    failed_names.insert(lib.manifest.name.clone());
                    report.entries.push(entry(lib, Some(error)));
                }
            }
        }
    }

    pub(crate) fn check_host_requirement(&self, lib: &PluginLibrary) -> Result<(), LoadError> {
        let req_text = if lib.manifest.host_requirement.is_empty() {
            "*"
        } else {
            &lib.manifest.host_requirement
        };
        let req = semver::VersionReq::parse(req_text).map_err(|e| LoadError::Manifest {
            path: lib.source.clone(),
            message: format!("host requirement {req_text:?} is not a semver range: {e}"),
        })?;
        if !req.matches(&self.host_version) {
            return Err(LoadError::HostRequirement {
                plugin: lib.manifest.name.clone(),
                requirement: req_text.to_owned(),
                host: self.host_version.to_string(),
            });
        }
        Ok(())
    }

    pub(crate) fn context_for(
        &self,
        name: &str,
        granted: &Arc<[String]>,
    ) -> plugin_api::HostContextBox {
        let settings = self.config.plugin(name);
        let config = Payload::json(&settings.config_json()).unwrap_or_default();
        HostContext_TO::from_value(
            PluginContext {
                host: self.weak.clone(),
                name: Arc::from(name),
                granted: granted.clone(),
                config,
            },
            TD_Opaque,
        )
    }

    /// Creates the plugin's thread, instantiates and activates it there (under the activation
    /// deadline), then registers what its manifest declares.
    pub(crate) fn activate(&self, lib: PluginLibrary) -> Result<(), LoadError> {
        let name = lib.manifest.name.clone();
        let settings = self.config.plugin(&name);
        if !settings.enabled {
            return Err(LoadError::Disabled { plugin: name });
        }
        {
            let state = self.state.read();
            for p in &lib.manifest.providers {
                if let Some(other) = state.routes.provider_conflict(&p.name, p.priority, &name) {
                    return Err(LoadError::Activation {
                        plugin: name.clone(),
                        error: PluginError::new(
                            plugin_api::ErrorKind::InvalidInput,
                            format!("provider {} is already provided by {other} at the same priority {} (give one a different priority)", p.name, p.priority),
                        ),
                    });
                }
            }
        }
        let granted: Arc<[String]> = settings.grant(&lib.manifest.declared_capabilities()).into();
        let context = self.context_for(&name, &granted);
        let slot = Slot::new(
            &name,
            self.config.request_queue,
            self.config.event_queue,
            self.faults.clone(),
        );
        let module = lib.module;
        let (ready_tx, ready_rx) = bounded::<Result<(), PluginError>>(1);
        let thread_slot = slot.clone();
        let recorder = self.recorder.clone();
        let worker = std::thread::Builder::new()
            .name(format!("plugin-{name}"))
            .spawn(move || {
                let instance = match (module.instantiate())(context).into_result() {
                    Ok(i) => i,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let mut instance = instance;
                let activated = instance.activate().into_result();
                let ok = activated.is_ok();
                let delivered = ready_tx.send(activated).is_ok();
                if ok && delivered && !thread_slot.is_closed() {
                    slot::run(thread_slot, instance, recorder);
                } else if ok {
                    // The host gave up on this activation (deadline): undo it.
                    let _ = instance.deactivate();
                }
            })
            .map_err(|e| LoadError::Activation {
                plugin: name.clone(),
                error: PluginError::failed(format!("cannot start its thread: {e}")),
            })?;
        let deadline = Duration::from_millis(self.config.activation_timeout_ms.max(1));
        let activated = match ready_rx.recv_timeout(deadline) {
            Ok(r) => r,
            Err(_) => {
                self.detached
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(PluginError::new(
                    plugin_api::ErrorKind::Timeout,
                    format!("activate did not return within {} ms; its thread is left running (threads cannot be killed)", deadline.as_millis()),
                ))
            }
        };
        drop(ready_rx);
        if let Err(error) = activated {
            slot.close();
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
        {
            let mut state = self.state.write();
            register(&mut state.routes, &lib.manifest, &granted, &slot);
            *slot.state.write() = PluginState::Active;
            state.order.retain(|n| n != &name);
            state.order.push(name.clone());
            state.failures.remove(&lib.source);
            state.slots.insert(
                name.clone(),
                SlotEntry {
                    library: lib.clone(),
                    slot,
                    manifest: lib.manifest,
                    version: lib.version,
                    file: lib.source,
                    granted,
                    worker: Some(worker),
                },
            );
        }
        log::info!("plugin {name} {version} activated");
        self.lifecycle_event("plugin:loaded", &name, Some(&version), None);
        self.lifecycle_event("plugin:activated", &name, Some(&version), None);
        Ok(())
    }

    /// Active plugins that depend on `plugin`.
    pub(crate) fn dependents(&self, plugin: &str) -> Vec<String> {
        let state = self.state.read();
        state
            .order
            .iter()
            .filter(|n| {
                state.slots.get(*n).is_some_and(|e| {
                    e.slot.state().is_serving()
                        && e.manifest.dependencies.iter().any(|d| d.name == plugin)
                })
            })
            .cloned()
            .collect()
    }

    pub(crate) fn deactivate_with_dependents(
        &self,
        plugin: &str,
        why: &str,
    ) -> Result<(), LoadError> {
        if !self.state.read().slots.contains_key(plugin) {
            return Err(LoadError::UnknownPlugin {
                plugin: plugin.to_owned(),
            });
        }
        for dependent in self.dependents(plugin) {
            log::warn!("deactivating {dependent} first: it depends on {plugin}, which is being deactivated ({why})");
            self.deactivate_with_dependents(
                &dependent,
                &format!("dependency {plugin} deactivated"),
            )?;
        }
        self.deactivate_one(plugin, why);
        Ok(())
    }

    /// Stops one plugin: its registrations go at once, queued work is cancelled, `deactivate`
    /// runs on its thread within the shutdown grace.
    pub(crate) fn deactivate_one(&self, plugin: &str, why: &str) {
        let (slot, version, worker) = {
            let mut state = self.state.write();
            let Some(entry) = state.slots.get_mut(plugin) else {
                return;
            };
            if !entry.slot.state().is_serving() {
                return;
            }
            let slot = entry.slot.clone();
            let version = entry.version.to_string();
            let worker = entry.worker.take();
            state.routes.remove_plugin(plugin);
            (slot, version, worker)
        };
        slot.close();
        let (done_tx, done_rx) = bounded(1);
        let grace = Duration::from_millis(self.config.shutdown_grace_ms.max(1));
        let result = if slot.control.send(Control::Stop { done: done_tx }).is_ok() {
            slot::wait_done(&done_rx, grace)
        } else {
            Ok(())
        };
        *slot.state.write() = PluginState::Deactivated;
        match result {
            Ok(()) => {
                if let Some(w) = worker {
                    let _ = w.join();
                }
            }
            Err(e) => {
                log::warn!("plugin {plugin}: deactivate: {e}");
                *slot.last_error.lock() = Some(format!("deactivate: {e}"));
            }
        }
        log::info!("plugin {plugin} deactivated");
        if why != "requested" && why != "shutdown" {
            let mut last = slot.last_error.lock();
            if last.is_none() {
                *last = Some(format!("deactivated: {why}"));
            }
        }
        self.lifecycle_event(
            "plugin:deactivated",
            plugin,
            Some(&version),
            Some(("reason", why)),
        );
    }

    pub(crate) fn shutdown_all(&self) {
        let order: Vec<String> = self.state.read().order.clone();
        for name in order.iter().rev() {
            self.deactivate_one(name, "shutdown");
        }
    }

    pub(crate) fn subscribe_plugin(
        &self,
        caller: &Caller<'_>,
        pattern_text: &str,
    ) -> Result<(), PluginError> {
        let Some(granted) = caller.granted else {
            return Err(PluginError::invalid(
                "the host subscribes with Host::subscribe",
            ));
        };
        if !capability::allows_pattern(granted, "subscribe", pattern_text) {
            return Err(PluginError::new(
                plugin_api::ErrorKind::PermissionDenied,
                format!(
                    "permission denied: plugin {} lacks capability subscribe:{pattern_text}",
                    caller.name
                ),
            ));
        }
        let mut state = self.state.write();
        let slot = state
            .slots
            .get(caller.name)
            .map(|e| e.slot.clone())
            .ok_or_else(|| PluginError::not_found(format!("plugin not found: {}", caller.name)))?;
        state.routes.subscribe(pattern_text, Target::Plugin(slot));
        Ok(())
    }

    pub(crate) fn unsubscribe_plugin(
        &self,
        caller: &Caller<'_>,
        pattern_text: &str,
    ) -> Result<(), PluginError> {
        if self
            .state
            .write()
            .routes
            .unsubscribe(caller.name, pattern_text)
        {
            Ok(())
        } else {
            Err(PluginError::not_found(format!(
                "plugin {} has no subscription {pattern_text}",
                caller.name
            )))
        }
    }
}

/// An error with its sources, as one line (`cannot read x: permission denied`).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub(crate) fn entry(lib: &PluginLibrary, error: Option<LoadError>) -> LoadEntry {
    LoadEntry {
        file: lib.source.clone(),
        plugin: Some(lib.manifest.name.clone()),
        version: Some(lib.manifest.version.clone()),
        error,
    }
}

/// Registers what a manifest declares, within what was granted.
pub(crate) fn register(
    routes: &mut Routes,
    manifest: &Manifest,
    granted: &[String],
    slot: &Arc<Slot>,
) {
    for c in &manifest.commands {
        let full = format!("{}:{}", manifest.name, c.name);
        routes.commands.insert(
            full.clone(),
            Route::Plugin {
                slot: slot.clone(),
                short: Arc::from(c.name.as_str()),
                full: Arc::from(full),
            },
        );
    }
    for p in &manifest.subscribes {
        if capability::allows_pattern(granted, "subscribe", p) {
            routes.subscribe(p, Target::Plugin(slot.clone()));
        } else {
            log::warn!(
                "plugin {}: subscription {p} revoked by the host config",
                manifest.name
            );
        }
    }
    for h in &manifest.hooks {
        routes.add_hook(&h.name, h.priority, slot.clone());
    }
    for p in &manifest.providers {
        routes.add_provider(&p.name, p.priority, slot.clone());
    }
    if let Some(m) = &manifest.middleware {
        if capability::allows(granted, "middleware") {
            routes.add_middleware(m.priority, slot.clone());
        } else {
            log::warn!(
                "plugin {}: middleware revoked by the host config",
                manifest.name
            );
        }
    }
}
