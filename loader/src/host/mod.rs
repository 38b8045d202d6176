//! The host: owns the plugins, their threads, the routing tables and the store.

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    sync::{atomic::AtomicU64, Arc, Weak},
    thread::JoinHandle,
    time::Duration,
};

use crossbeam_channel::{bounded, Receiver};
use parking_lot::{Mutex, RwLock};
use plugin_api::{Manifest, Payload, PluginError, PluginModRef};
use serde::Serialize;

use crate::{
    config::HostConfig,
    dispatch::routes::{HostCommand, HostSubscriber, Route, Routes, Target},
    dispatch::{Caller, CollectedResults},
    error::{LoadError, StorageError},
    lifecycle::supervisor::{self, SupervisorHandle},
    load::library::{self, PluginLibrary},
    observe::deadletter::{DeadLetter, DeadLetters},
    observe::metrics::PluginMetrics,
    observe::recorder::{Recorder, TraceRecord},
    runtime::slot::{Fault, PluginState, Slot},
    storage::Store,
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
    pub granted: Arc<[String]>,
    pub worker: Option<JoinHandle<()>>,
}

/// A file that did not become a plugin.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub plugin: Option<String>,
    pub version: Option<String>,
    pub error: String,
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
    pub(crate) weak: Weak<HostInner>,
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
    /// [`fingerprint`](crate::fingerprint) of the loaded bytes: tells builds apart (none for
    /// compiled-in plugins).
    pub fingerprint: Option<String>,
    /// SHA-256 of the loaded bytes, when the host checks an allowlist (computed only then).
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
        let files = crate::load::discover::discover(dir)?;
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
                fingerprint: (!e.library.fingerprint.is_empty())
                    .then(|| e.library.fingerprint.clone()),
                sha256: e.library.sha256.clone(),
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
                fingerprint: None,
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
