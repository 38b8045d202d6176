//! The host: owns the plugins, their threads, the routing tables and the store.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{atomic::AtomicU64, Arc, Weak},
    thread::JoinHandle,
    time::Duration,
};

use abi_stable::sabi_trait::TD_Opaque;
use crossbeam_channel::{bounded, Receiver};
use parking_lot::{Mutex, RwLock};
use plugin_api::{abi::HostContext_TO, Manifest, Payload, PluginError, PluginModRef};
use serde::Serialize;

use crate::{
    config::HostConfig,
    context::PluginContext,
    deadletter::{DeadLetter, DeadLetters},
    dispatch::{Caller, CollectedResults},
    error::{LoadError, StorageError},
    library::{self, PluginLibrary},
    metrics::PluginMetrics,
    pattern,
    recorder::{Recorder, TraceRecord},
    resolve::{self, Node},
    routes::{HostCommand, HostSubscriber, Route, Routes, Target},
    slot::{self, Control, Fault, PluginState, Slot},
    storage::Store,
    supervisor::{self, SupervisorHandle},
};

/// The host's own version, which plugins' `host_requirement` is checked against.
pub const HOST_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A loaded plugin, as the host keeps it.
pub(crate) struct SlotEntry {
    pub slot: Arc<Slot>,
    /// What it was loaded from, for restarts and re-enabling.
    pub library: PluginLibrary,
    pub manifest: Manifest,
    pub version: semver::Version,
    pub file: PathBuf,
    pub sha256: String,
    pub granted: Arc<[String]>,
    pub worker: Option<JoinHandle<()>>,
}

/// A file that did not become a plugin.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    plugin: Option<String>,
    version: Option<String>,
    error: String,
}

#[derive(Default)]
pub(crate) struct State {
    pub slots: BTreeMap<String, SlotEntry>,
    pub failures: BTreeMap<PathBuf, Failure>,
    /// Activation order, for shutdown in reverse.
    pub order: Vec<String>,
    pub routes: Routes,
}

pub(crate) struct HostInner {
    pub config: HostConfig,
    pub host_version: semver::Version,
    pub plugins_dir: Option<PathBuf>,
    pub shadow_dir: PathBuf,
    pub store: Store,
    pub state: RwLock<State>,
    pub recorder: Arc<Recorder>,
    pub dead_letters: DeadLetters,
    pub faults: crossbeam_channel::Sender<Fault>,
    pub detached: AtomicU64,
    supervisor: Mutex<Option<SupervisorHandle>>,
    weak: Weak<HostInner>,
    pub(crate) allowlist: Option<HashSet<String>>,
    /// Serializes loads, deactivations and reloads (never held while dispatching).
    pub(crate) lifecycle: Mutex<()>,
    temp_dir: Option<PathBuf>,
}

/// One line of a [`LoadReport`].
#[derive(Debug)]
pub struct LoadEntry {
    /// The file (or `static:<name>`).
    pub file: PathBuf,
    /// The plugin name, once the manifest was read.
    pub plugin: Option<String>,
    /// The plugin version, once the manifest was read.
    pub version: Option<String>,
    /// Why it is not active; `None` when it was activated.
    pub error: Option<LoadError>,
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
            .and_then(|e| e.error.as_ref())
    }

    /// The error for plugin `name`, if it failed after its manifest was read.
    pub fn error_for_plugin(&self, name: &str) -> Option<&LoadError> {
        self.entries
            .iter()
            .filter(|e| e.plugin.as_deref() == Some(name))
            .find_map(|e| e.error.as_ref())
    }

    /// Whether every file became an active plugin.
    pub fn is_ok(&self) -> bool {
        self.entries.iter().all(|e| e.error.is_none())
    }
}

/// What the host knows about one plugin file: active plugins and failures alike.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    /// Plugin name (the file name when the manifest could not be read).
    pub name: String,
    /// Plugin version, if known.
    pub version: Option<String>,
    /// Lifecycle state.
    pub state: PluginState,
    /// The file it came from.
    pub file: PathBuf,
    /// The last error, if any.
    pub error: Option<String>,
    /// SHA-256 of the loaded bytes.
    pub sha256: Option<String>,
    /// The manifest, if it was read.
    pub manifest: Option<Manifest>,
    /// Capabilities declared in the manifest.
    pub declared: Vec<String>,
    /// Capabilities granted after the host config.
    pub granted: Vec<String>,
    /// Counters.
    pub metrics: PluginMetrics,
}

/// Builds a [`Host`].
#[derive(Debug, Default)]
pub struct HostBuilder {
    config: HostConfig,
    in_memory: bool,
}

impl HostBuilder {
    /// Uses `config` (plugin folder, data folder, deadlines, queue bounds, per-plugin settings).
    pub fn config(mut self, config: HostConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the plugins folder.
    pub fn plugins_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.plugins_dir = Some(dir.into());
        self
    }

    /// Sets the data folder (database and shadow copies).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.data_dir = Some(dir.into());
        self
    }

    /// Keeps storage in memory instead of a database file (for tests).
    pub fn in_memory_storage(mut self) -> Self {
        self.in_memory = true;
        self
    }

    /// Changes the configuration in place.
    pub fn configure(mut self, f: impl FnOnce(&mut HostConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Creates the host; no plugin is loaded yet.
    ///
    /// # Errors
    /// The data folder or database cannot be created or opened.
    pub fn build(self) -> Result<Host, StorageError> {
        let (data_dir, temp_dir) = match &self.config.data_dir {
            Some(d) => (d.clone(), None),
            None => {
                let d = std::env::temp_dir().join(format!(
                    "native-plugins-{}-{}",
                    std::process::id(),
                    NEXT_HOST.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ));
                (d.clone(), Some(d))
            }
        };
        let backend_error = |e: std::io::Error| StorageError::Backend {
            path: data_dir.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(&data_dir).map_err(backend_error)?;
        let shadow_dir = data_dir.join("shadow");
        let store = if self.in_memory || temp_dir.is_some() {
            Store::in_memory(self.config.storage_quota_bytes)?
        } else {
            Store::open(
                &data_dir.join("storage.redb"),
                self.config.storage_quota_bytes,
            )?
        };
        let allowlist = self.config.allowlist_set();
        let host_version =
            semver::Version::parse(HOST_VERSION).unwrap_or(semver::Version::new(0, 0, 0));
        let recorder = Arc::new(Recorder::new(self.config.recorder_capacity));
        let dead_letters = DeadLetters::new(self.config.dead_letter_capacity);
        let (faults_tx, faults_rx) = crossbeam_channel::unbounded();
        let inner = Arc::new_cyclic(|weak| HostInner {
            plugins_dir: self.config.plugins_dir.clone(),
            config: self.config,
            host_version,
            shadow_dir,
            store,
            state: RwLock::new(State::default()),
            recorder,
            dead_letters,
            faults: faults_tx,
            detached: AtomicU64::new(0),
            supervisor: Mutex::new(None),
            weak: weak.clone(),
            allowlist,
            lifecycle: Mutex::new(()),
            temp_dir,
        });
        *inner.supervisor.lock() = supervisor::start(&inner, faults_rx);
        Ok(Host { inner })
    }
}

static NEXT_HOST: AtomicU64 = AtomicU64::new(0);

/// A plugin host. Cheap to clone; all clones are the same host. Dropping the last clone shuts
/// the plugins down.
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<HostInner>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("plugins_dir", &self.inner.plugins_dir)
            .finish_non_exhaustive()
    }
}

/// A host-side event subscription; events arrive on [`Subscription::receiver`]. Dropping it
/// unsubscribes.
pub struct Subscription {
    host: Weak<HostInner>,
    id: u64,
    rx: Receiver<Arc<plugin_api::Event>>,
}

impl Subscription {
    /// The events, in emission order. When the receiver falls behind its bound, the oldest are
    /// dropped.
    pub fn receiver(&self) -> &Receiver<Arc<plugin_api::Event>> {
        &self.rx
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(host) = self.host.upgrade() {
            host.state.write().routes.unsubscribe_host(self.id);
        }
    }
}

impl Host {
    /// Starts building a host.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// The configuration in force.
    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    /// The storage backend (for host-side inspection and tests).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Loads every plugin file in the configured plugins folder and activates them in
    /// dependency order. One bad file never stops the others.
    ///
    /// # Errors
    /// Only when the folder itself cannot be listed; per-file problems are in the report.
    pub fn load_dir(&self) -> Result<LoadReport, LoadError> {
        let dir = self
            .inner
            .plugins_dir
            .clone()
            .ok_or_else(|| LoadError::Io {
                path: PathBuf::from("<plugins folder>"),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no plugins folder configured",
                ),
            })?;
        self.load_dir_from(&dir)
    }

    /// Loads every plugin file in `dir`.
    ///
    /// # Errors
    /// Only when `dir` cannot be listed.
    pub fn load_dir_from(&self, dir: &Path) -> Result<LoadReport, LoadError> {
        let files = crate::discover::discover(dir)?;
        Ok(self.load_files(&files))
    }

    /// Loads the given plugin files (already-loaded files are reported, not loaded twice).
    pub fn load_files(&self, files: &[PathBuf]) -> LoadReport {
        let _guard = self.inner.lifecycle.lock();
        let mut libraries = Vec::new();
        let mut report = LoadReport::default();
        for file in files {
            if let Some(plugin) = self.inner.plugin_for_file(file) {
                report.entries.push(LoadEntry {
                    file: file.clone(),
                    plugin: Some(plugin.clone()),
                    version: None,
                    error: Some(LoadError::AlreadyLoaded {
                        path: file.clone(),
                        plugin,
                    }),
                });
                continue;
            }
            match library::load_library(file, &self.inner.shadow_dir, self.inner.allowlist.as_ref())
            {
                Ok(lib) => libraries.push(lib),
                Err(error) => {
                    log::error!("{error}");
                    report.entries.push(LoadEntry {
                        file: file.clone(),
                        plugin: None,
                        version: None,
                        error: Some(error),
                    })
                }
            }
        }
        self.inner.activate_all(libraries, &mut report);
        self.inner.record_failures(&report);
        report
    }

    /// Registers a plugin compiled into the application (see `plugin_api::static_plugin!`):
    /// same checks, activation and dispatch as a loaded library, without dlopen.
    ///
    /// # Errors
    /// The same checks as for files (manifest, versions, dependencies, activation).
    pub fn register_static(&self, module: PluginModRef) -> Result<String, LoadError> {
        let _guard = self.inner.lifecycle.lock();
        let mut report = LoadReport::default();
        let lib = library::checked_module(PathBuf::from("static"), module)?;
        let name = lib.manifest.name.clone();
        let mut lib = lib;
        lib.source = PathBuf::from(format!("static:{name}"));
        self.inner.activate_all(vec![lib], &mut report);
        self.inner.record_failures(&report);
        match report.entries.into_iter().find_map(|e| e.error) {
            Some(e) => Err(e),
            None => Ok(name),
        }
    }

    /// Every plugin the host knows: active, stopped and failed (failed files included).
    pub fn plugins(&self) -> Vec<PluginInfo> {
        let state = self.inner.state.read();
        let mut out: Vec<PluginInfo> = state
            .slots
            .iter()
            .map(|(name, e)| PluginInfo {
                name: name.clone(),
                version: Some(e.version.to_string()),
                state: e.slot.state(),
                file: e.file.clone(),
                error: e.slot.last_error.lock().clone(),
                sha256: (!e.sha256.is_empty()).then(|| e.sha256.clone()),
                manifest: Some(e.manifest.clone()),
                declared: e.manifest.declared_capabilities(),
                granted: e.granted.to_vec(),
                metrics: e.slot.metrics.snapshot(e.slot.queue_depth()),
            })
            .collect();
        for (file, f) in &state.failures {
            // A failure superseded by a later successful load of the same file is not shown.
            if state.slots.values().any(|e| &e.file == file) {
                continue;
            }
            out.push(PluginInfo {
                name: f.plugin.clone().unwrap_or_else(|| {
                    file.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                }),
                version: f.version.clone(),
                state: PluginState::Failed,
                file: file.clone(),
                error: Some(f.error.clone()),
                sha256: None,
                manifest: None,
                declared: Vec::new(),
                granted: Vec::new(),
                metrics: PluginMetrics::default(),
            });
        }
        out
    }

    /// One plugin's information.
    pub fn plugin(&self, name: &str) -> Option<PluginInfo> {
        self.plugins().into_iter().find(|p| p.name == name)
    }

    /// Every registered command (`<plugin>:<command>` and `host:<command>`), sorted.
    pub fn commands(&self) -> Vec<String> {
        self.inner.state.read().routes.command_names()
    }

    /// Runs command `<plugin>:<command>` with the configured default deadline.
    ///
    /// # Errors
    /// `command not found: <name>` at once for unknown commands; timeout, cancelled, queue
    /// full, middleware and handler errors otherwise.
    pub fn execute(&self, command: &str, args: Payload) -> Result<Payload, PluginError> {
        self.inner.execute(&Caller::host(), command, args, None)
    }

    /// Runs a command with an explicit deadline.
    ///
    /// # Errors
    /// As [`Host::execute`].
    pub fn execute_with_timeout(
        &self,
        command: &str,
        args: Payload,
        timeout: Duration,
    ) -> Result<Payload, PluginError> {
        self.inner
            .execute(&Caller::host(), command, args, Some(timeout))
    }

    /// Publishes an event from the host (source `host`). Returns its id.
    ///
    /// # Errors
    /// An empty type or an oversized payload.
    pub fn emit(&self, event_type: &str, data: Payload) -> Result<u64, PluginError> {
        self.inner.emit(&Caller::host(), event_type, data)
    }

    /// Publishes an event and collects every plugin subscriber's answer, by plugin name.
    ///
    /// # Errors
    /// As [`Host::emit`]; subscriber failures are in the list.
    pub fn emit_and_collect(
        &self,
        event_type: &str,
        data: Payload,
        timeout: Option<Duration>,
    ) -> Result<CollectedResults, PluginError> {
        self.inner
            .emit_and_collect(&Caller::host(), event_type, data, timeout)
    }

    /// Sends a direct message to `plugin` without waiting.
    ///
    /// # Errors
    /// Unknown or inactive plugin, plugin not accepting messages, queue full.
    pub fn send_to(&self, plugin: &str, message: Payload) -> Result<(), PluginError> {
        self.inner
            .message(&Caller::host(), plugin, "", message, None)
            .map(|_| ())
    }

    /// Sends a message to `plugin` and waits for its reply.
    ///
    /// # Errors
    /// As [`Host::send_to`], plus timeout and the handler's error.
    pub fn request(
        &self,
        plugin: &str,
        message: Payload,
        timeout: Option<Duration>,
    ) -> Result<Payload, PluginError> {
        self.inner
            .message(&Caller::host(), plugin, "", message, Some(timeout))
    }

    /// Calls RPC `method` on `plugin`.
    ///
    /// # Errors
    /// As [`Host::request`].
    pub fn call(
        &self,
        plugin: &str,
        method: &str,
        args: Payload,
        timeout: Option<Duration>,
    ) -> Result<Payload, PluginError> {
        if method.is_empty() {
            return Err(PluginError::invalid("rpc method name must not be empty"));
        }
        self.inner
            .message(&Caller::host(), plugin, method, args, Some(timeout))
    }

    /// Runs hook `name` over `data`.
    ///
    /// # Errors
    /// A veto or a failing handler, naming the plugin.
    pub fn run_hook(&self, name: &str, data: Payload) -> Result<Payload, PluginError> {
        self.inner.run_hook(&Caller::host(), name, data)
    }

    /// Calls `method` of provider `provider`.
    ///
    /// # Errors
    /// No such provider, or the provider's error.
    pub fn provider_call(
        &self,
        provider: &str,
        method: &str,
        args: Payload,
    ) -> Result<Payload, PluginError> {
        self.inner
            .provider_call(&Caller::host(), provider, method, args, None)
    }

    /// Registers a host command, callable as `host:<name>` by plugins (with capability
    /// `call:host:<name>`) and by the application. It runs on the caller's thread.
    pub fn register_command<F>(&self, name: &str, handler: F)
    where
        F: Fn(&plugin_api::CommandRequest) -> Result<Payload, PluginError> + Send + Sync + 'static,
    {
        let handler: HostCommand = Arc::new(handler);
        self.inner
            .state
            .write()
            .routes
            .commands
            .insert(format!("host:{name}"), Route::Host(handler));
    }

    /// Subscribes the application to `pattern`; at most `capacity` events wait (oldest dropped
    /// beyond that).
    pub fn subscribe(&self, pattern: &str, capacity: usize) -> Subscription {
        let (tx, rx) = bounded(capacity.max(1));
        let id = self.inner.next_id();
        let sub = HostSubscriber {
            id,
            tx,
            rx: rx.clone(),
        };
        self.inner
            .state
            .write()
            .routes
            .subscribe(pattern, Target::Host(sub));
        Subscription {
            host: Arc::downgrade(&self.inner),
            id,
            rx,
        }
    }

    /// Deactivates `plugin` (and, first, every active plugin that depends on it). Its commands
    /// disappear at once; queued calls resolve as cancelled.
    ///
    /// # Errors
    /// [`LoadError::UnknownPlugin`].
    pub fn deactivate(&self, plugin: &str) -> Result<(), LoadError> {
        let _guard = self.inner.lifecycle.lock();
        self.inner.deactivate_with_dependents(plugin, "requested")
    }

    /// Events and messages that could not be delivered (most recent `dead_letter_capacity`),
    /// oldest first, and how many there were in all.
    pub fn dead_letters(&self) -> (Vec<DeadLetter>, u64) {
        (
            self.inner.dead_letters.snapshot(),
            self.inner.dead_letters.total(),
        )
    }

    /// A preflight report of the plugins folder (or `dir`) under this host's config, activating
    /// nothing.
    ///
    /// # Errors
    /// The folder cannot be listed.
    pub fn diagnose(&self, dir: Option<&Path>) -> Result<crate::DoctorReport, LoadError> {
        let dir = dir
            .map(Path::to_path_buf)
            .or_else(|| self.inner.plugins_dir.clone())
            .ok_or_else(|| LoadError::Io {
                path: PathBuf::from("<plugins folder>"),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no plugins folder configured",
                ),
            })?;
        crate::doctor::diagnose(&dir, &self.inner.config, &self.inner.shadow_dir)
    }

    /// The flight recorder's records, oldest first.
    pub fn trace(&self) -> Vec<TraceRecord> {
        self.inner.recorder.snapshot()
    }

    /// Switches the flight recorder on or off (it stays off when `recorder_capacity` is 0).
    pub fn set_recording(&self, on: bool) {
        self.inner.recorder.set_enabled(on);
    }

    /// Empties the flight recorder.
    pub fn clear_trace(&self) {
        self.inner.recorder.clear();
    }

    /// Deactivates every plugin, in reverse activation order.
    pub fn shutdown(&self) {
        let _guard = self.inner.lifecycle.lock();
        self.inner.shutdown_all();
    }
}

impl Drop for HostInner {
    fn drop(&mut self) {
        self.shutdown_all();
        if let Some(dir) = &self.temp_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn lifecycle_data(plugin: &str, version: Option<&str>, extra: Option<(&str, &str)>) -> Payload {
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

    fn plugin_for_file(&self, file: &Path) -> Option<String> {
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

    fn record_failures(&self, report: &LoadReport) {
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
    fn activate_all(&self, libraries: Vec<PluginLibrary>, report: &mut LoadReport) {
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
                    sha256: lib.sha256,
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
    fn dependents(&self, plugin: &str) -> Vec<String> {
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
    fn deactivate_one(&self, plugin: &str, why: &str) {
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

    fn shutdown_all(&self) {
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
        if !pattern::allows_pattern(granted, "subscribe", pattern_text) {
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

fn entry(lib: &PluginLibrary, error: Option<LoadError>) -> LoadEntry {
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
        if pattern::allows_pattern(granted, "subscribe", p) {
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
        if pattern::allows(granted, "middleware") {
            routes.add_middleware(m.priority, slot.clone());
        } else {
            log::warn!(
                "plugin {}: middleware revoked by the host config",
                manifest.name
            );
        }
    }
}
