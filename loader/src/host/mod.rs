//! The host: the one public handle on the loader. [`Host`] and [`HostBuilder`] are the only
//! `impl` blocks of the host; what they do is done by the dispatcher (calls and events), the
//! lifecycle (what runs) and the store.
//!
//! 1. this file: [`Host`] and host subscriptions;
//! 2. [`builder`]: [`HostBuilder`], which makes a host's parts in order;
//! 3. [`report`]: [`PluginInfo`], what the host knows about each plugin and failed file.

mod builder;
mod report;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use crossbeam_channel::{bounded, Receiver};
use plugin_api::{Payload, PluginError, PluginModRef};

pub use self::{builder::HostBuilder, report::PluginInfo};
use crate::{
    config::HostConfig,
    dispatch::{
        routes::{HostCommand, HostSubscriber},
        Caller, CollectedResults, Dispatcher, RegistrationInfo, TableSizes,
    },
    error::LoadError,
    lifecycle::{reload::FileChange, supervisor::SupervisorHandle, Lifecycle, LoadReport},
    observe::{deadletter::DeadLetter, recorder::TraceRecord},
    runtime::timer::TimerInfo,
    storage::Store,
};

struct HostInner {
    dispatcher: Arc<Dispatcher>,
    lifecycle: Arc<Lifecycle>,
    _supervisor: Option<SupervisorHandle>,
    /// The private temporary shadow folder, removed with the host or by [`Host::close`] (none
    /// with a data folder).
    shadow: parking_lot::Mutex<Option<crate::load::shadow::ShadowDir>>,
}

/// A plugin host. Cheap to clone; all clones are the same host. Dropping the last clone shuts
/// the plugins down.
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("plugins_dir", &self.config().plugins_dir)
            .finish_non_exhaustive()
    }
}

/// A host-side event subscription; events arrive on [`Subscription::receiver`]. Dropping it
/// unsubscribes.
pub struct Subscription {
    host: Weak<Dispatcher>,
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
        if let Some(dispatcher) = self.host.upgrade() {
            dispatcher.unsubscribe_host(self.id);
        }
    }
}

impl Host {
    /// Starts building a host.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    fn dispatch(&self) -> &Dispatcher {
        &self.inner.dispatcher
    }

    fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    /// The configuration in force.
    pub fn config(&self) -> &HostConfig {
        self.dispatch().config()
    }

    /// The storage backend (for host-side inspection and tests).
    pub fn store(&self) -> &Store {
        self.dispatch().store()
    }

    fn plugins_folder(&self, dir: Option<&Path>) -> Result<PathBuf, LoadError> {
        dir.map(Path::to_path_buf)
            .or_else(|| self.config().plugins_dir.clone())
            .ok_or(LoadError::NoPluginsFolder)
    }

    /// Loads every plugin file in the configured plugins folder and activates them in
    /// dependency order. One bad file never stops the others.
    ///
    /// # Loading runs plugin code
    /// Opening a library runs its initialisers, and activation runs the plugin's `activate`:
    /// only files that passed every check before opening are opened (see the crate docs).
    ///
    /// # Errors
    /// Only when the folder itself cannot be listed; per-file problems are in the report.
    pub fn load_dir(&self) -> Result<LoadReport, LoadError> {
        let dir = self.plugins_folder(None)?;
        self.load_dir_from(&dir)
    }

    /// Loads every plugin file in `dir` (see [`Host::load_dir`]).
    ///
    /// # Errors
    /// Only when `dir` cannot be listed.
    pub fn load_dir_from(&self, dir: &Path) -> Result<LoadReport, LoadError> {
        let files = crate::load::discover::discover(dir)?;
        Ok(self.load_files(&files))
    }

    /// Loads the given plugin files (already-loaded files are reported, not loaded twice).
    pub fn load_files(&self, files: &[PathBuf]) -> LoadReport {
        let lifecycle = self.lifecycle();
        let turn = lifecycle.turn();
        lifecycle.load_files(&turn, files)
    }

    /// Registers a plugin compiled into the application (see `plugin_api::static_plugin!`):
    /// same checks, activation and dispatch as a loaded library, without dlopen.
    ///
    /// # Errors
    /// The same checks as for files (manifest, versions, dependencies, activation).
    pub fn register_static(&self, module: PluginModRef) -> Result<String, LoadError> {
        let lifecycle = self.lifecycle();
        let turn = lifecycle.turn();
        lifecycle.register_static(&turn, module)
    }

    /// Applies the current contents of `path` (a file in the plugins folder): loads it if no
    /// plugin came from it (and brings back the plugins that were waiting for it), reloads the
    /// plugin if its contents changed, deactivates the plugin if the file is gone.
    ///
    /// # Errors
    /// Why a reload was refused; the old version keeps running.
    pub fn apply_file(&self, path: &Path) -> Result<FileChange, LoadError> {
        self.lifecycle().apply_file(path)
    }

    /// Every plugin the host knows: active, stopped and failed (failed files included).
    pub fn plugins(&self) -> Vec<PluginInfo> {
        let mut plugins = report::plugins(&self.lifecycle().registry().read());
        report::add_isolation(&mut plugins, self.config(), self.lifecycle().children());
        plugins
    }

    /// One plugin's information.
    pub fn plugin(&self, name: &str) -> Option<PluginInfo> {
        self.plugins().into_iter().find(|p| p.name == name)
    }

    /// The run-time registrations in force (plugin-api 1.1: commands, hooks and providers a
    /// plugin registered through its context within its manifest's patterns), of `plugin` or of
    /// every plugin, oldest first. They end with the instance that made them: a deactivated
    /// plugin has none, and a reloaded or restarted one only what its new instance registered.
    pub fn registrations(&self, plugin: Option<&str>) -> Vec<RegistrationInfo> {
        self.dispatch().registrations(plugin)
    }

    /// Every registered command (`<plugin>:<command>` and `host:<command>`), sorted.
    pub fn commands(&self) -> Vec<String> {
        self.dispatch().command_names()
    }

    /// Runs command `<plugin>:<command>` with the configured default deadline.
    ///
    /// # Errors
    /// `command not found: <name>` at once for unknown commands; timeout, cancelled, queue
    /// full, middleware and handler errors otherwise.
    pub fn execute(&self, command: &str, args: Payload) -> Result<Payload, PluginError> {
        self.dispatch()
            .execute(&Caller::host(), command, args, None)
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
        self.dispatch()
            .execute(&Caller::host(), command, args, Some(timeout))
    }

    /// Publishes an event from the host (source `host`). Returns its id.
    ///
    /// # Errors
    /// An empty or malformed type (spaces, control characters) or an oversized payload.
    pub fn emit(&self, event_type: &str, data: Payload) -> Result<u64, PluginError> {
        self.dispatch().emit(&Caller::host(), event_type, data)
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
        self.dispatch()
            .emit_and_collect(&Caller::host(), event_type, data, timeout)
    }

    /// Sends a direct message to `plugin` without waiting.
    ///
    /// # Errors
    /// Unknown or inactive plugin, plugin not accepting messages, queue full.
    pub fn send_to(&self, plugin: &str, message: Payload) -> Result<(), PluginError> {
        self.dispatch()
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
        self.dispatch()
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
        self.dispatch()
            .message(&Caller::host(), plugin, method, args, Some(timeout))
    }

    /// Runs hook `name` over `data`.
    ///
    /// # Errors
    /// A veto or a failing handler, naming the plugin.
    pub fn run_hook(&self, name: &str, data: Payload) -> Result<Payload, PluginError> {
        self.dispatch().run_hook(&Caller::host(), name, data)
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
        self.dispatch()
            .provider_call(&Caller::host(), provider, method, args, None)
    }

    /// Registers a host command, callable as `host:<name>` by plugins (with capability
    /// `call:host:<name>`) and by the application. It runs on the caller's thread.
    pub fn register_command<F>(&self, name: &str, handler: F)
    where
        F: Fn(&plugin_api::CommandRequest) -> Result<Payload, PluginError> + Send + Sync + 'static,
    {
        let handler: HostCommand = Arc::new(handler);
        self.dispatch().register_host_command(name, handler);
    }

    /// Subscribes the application to `pattern`; at most `capacity` events wait (oldest dropped
    /// beyond that).
    pub fn subscribe(&self, pattern: &str, capacity: usize) -> Subscription {
        let (tx, rx) = bounded(capacity.max(1));
        let id = self.dispatch().next_id();
        self.dispatch().subscribe_host(
            pattern,
            HostSubscriber {
                id,
                tx,
                rx: rx.clone(),
            },
        );
        Subscription {
            host: Arc::downgrade(&self.inner.dispatcher),
            id,
            rx,
        }
    }

    /// Deactivates `plugin` (and, first, every active plugin that depends on it). Its commands
    /// disappear at once; queued calls resolve as cancelled; its context is retired.
    ///
    /// # Errors
    /// [`LoadError::UnknownPlugin`].
    pub fn deactivate(&self, plugin: &str) -> Result<(), LoadError> {
        let lifecycle = self.lifecycle();
        let turn = lifecycle.turn();
        lifecycle.deactivate(&turn, plugin, "requested")
    }

    /// Brings a quarantined (or deactivated) plugin back: a fresh instance of the library it was
    /// loaded from, activated like a first load.
    ///
    /// # Errors
    /// [`LoadError::UnknownPlugin`], or why activation failed.
    pub fn reenable(&self, plugin: &str) -> Result<(), LoadError> {
        let lifecycle = self.lifecycle();
        let turn = lifecycle.turn();
        lifecycle.reenable(&turn, plugin)
    }

    /// Plugin threads left behind by restarts and missed deadlines (threads cannot be
    /// killed): this host's, plus the threads this process left in a `manifest()` that never
    /// returned.
    pub fn detached_threads(&self) -> u64 {
        self.lifecycle().detached() + crate::load::manifest::detached_manifest_readers()
    }

    /// Child processes of isolated plugins that the host killed (a call or `deactivate` missed
    /// its deadline, or a child would not exit).
    pub fn killed_processes(&self) -> u64 {
        self.lifecycle().children().kills()
    }

    /// Process ids of the isolated plugins' child processes alive now.
    pub fn worker_processes(&self) -> Vec<u32> {
        self.lifecycle().children().pids()
    }

    /// Libraries this process has mapped and how many of them no longer serve a plugin
    /// (retired by reloads, deactivation or failed checks). They are never unmapped.
    pub fn mapped_images(&self) -> (u64, u64) {
        self.lifecycle().mapped_images()
    }

    /// Events and messages that could not be delivered (most recent `dead_letter_capacity`),
    /// oldest first, and how many there were in all.
    pub fn dead_letters(&self) -> (Vec<DeadLetter>, u64) {
        let letters = self.dispatch().dead_letters();
        (letters.snapshot(), letters.total())
    }

    /// The sizes of the tables that grow with what plugins send; each is bounded by a setting
    /// of the config.
    pub fn table_sizes(&self) -> TableSizes {
        self.dispatch().table_sizes()
    }

    /// Waits until no plugin has a call or event queued or running, or `deadline` passes.
    /// Returns whether the host went idle. Work started from outside the plugins (the
    /// application, or a thread a plugin started) can begin again at any time after.
    pub fn wait_idle(&self, deadline: Instant) -> bool {
        let mut last: Option<u64> = None;
        loop {
            let (idle, done) = self.dispatch().idle_reading();
            if idle && last == Some(done) {
                return true;
            }
            last = idle.then_some(done);
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A preflight report of the plugins folder (or `dir`) under this host's config, activating
    /// nothing and running no plugin code in this process.
    ///
    /// What the files' bytes tell is read here; each plugin file is then opened and its
    /// manifest read in a worker process (this executable re-run, or the
    /// [`worker_program`](HostBuilder::worker_program)), killed at the deadline
    /// (`activation_timeout_ms`). A manifest that hangs, or a plugin that crashes its worker,
    /// is a finding for its file. The host's `main` must call
    /// [`run_if_worker`](crate::worker::run_if_worker) first; otherwise the report says, once,
    /// that no manifest could be read ([`DoctorReport::manifest_reader`](crate::DoctorReport)).
    ///
    /// # Errors
    /// The folder cannot be listed.
    pub fn diagnose(&self, dir: Option<&Path>) -> Result<crate::DoctorReport, LoadError> {
        let dir = self.plugins_folder(dir)?;
        crate::doctor::diagnose(
            &dir,
            self.config(),
            self.lifecycle().shadow_dir(),
            self.config().worker_program.as_deref(),
            self.lifecycle().progress(),
        )
    }

    /// The flight recorder's records, oldest first.
    pub fn trace(&self) -> Vec<TraceRecord> {
        self.dispatch().recorder().snapshot()
    }

    /// Switches the flight recorder on or off (it stays off when `recorder_capacity` is 0).
    pub fn set_recording(&self, on: bool) {
        self.dispatch().recorder().set_enabled(on);
    }

    /// Empties the flight recorder.
    pub fn clear_trace(&self) {
        self.dispatch().recorder().clear();
    }

    /// Watches the plugins folder and applies every settled change with
    /// [`Host::apply_file`]: new files load (in dependency order when several arrive
    /// together), changed files reload, removed files deactivate. `on_change` is told about
    /// each (lifecycle events are emitted as usual).
    ///
    /// # Errors
    /// No plugins folder configured, or neither the OS watcher nor polling can watch it.
    pub fn watch(
        &self,
        debounce: Duration,
        on_change: crate::ChangeCallback,
    ) -> Result<crate::FolderWatcher, crate::WatchError> {
        let dir = self.plugins_folder(None).map_err(|e| crate::WatchError {
            path: None,
            message: e.to_string(),
        })?;
        crate::watch::watch(&self.inner.lifecycle, dir, debounce, on_change)
    }

    /// A context bound to this host for a plugin instance that the application makes and
    /// drives itself, on its own thread (the benchmarks' direct vtable calls do): its calls
    /// reach the host as plugin `plugin` with no capability granted, so it can log, read its
    /// empty config and use its own storage namespace, and nothing else.
    pub fn standalone_context(&self, plugin: &str) -> plugin_api::HostContextBox {
        let granted: Arc<[String]> = Arc::from(Vec::new());
        self.lifecycle().context_for(
            plugin,
            &granted,
            &crate::runtime::slot::Seal::default(),
            None,
        )
    }

    /// The timers (`Context::every`, `Context::after`) that `plugin`'s current instance
    /// started and that have not ended, by event name; empty for an unknown plugin.
    pub fn timers(&self, plugin: &str) -> Vec<TimerInfo> {
        self.inner.dispatcher.timers().of(plugin)
    }

    /// How many plugin timers (`Context::every`, `Context::after`) run now. A deactivated
    /// plugin's timers are dropped, unfired, when they are next due.
    pub fn timers_running(&self) -> usize {
        self.inner.dispatcher.timers().running()
    }

    /// Deactivates every plugin, in reverse activation order.
    pub fn shutdown(&self) {
        let lifecycle = self.lifecycle();
        let turn = lifecycle.turn();
        lifecycle.shutdown(&turn);
    }

    /// Deactivates every plugin ([`Host::shutdown`]), then removes the host's private temporary
    /// shadow folder at once instead of when the last clone is dropped: for a process that is
    /// about to exit while a clone is still held elsewhere (a signal handler whose main thread
    /// waits in a read it cannot leave, say). The libraries stay mapped; only their copies'
    /// names go (on Windows, where a mapped file cannot be deleted, the folder stays until a
    /// later host removes it). A host with a data folder keeps its `shadow/` there.
    ///
    /// The host is finished afterwards: a load after `close` fails, since there is no folder to
    /// copy into.
    pub fn close(&self) {
        self.shutdown();
        let shadow = self.inner.shadow.lock().take();
        drop(shadow);
    }
}

impl Drop for HostInner {
    fn drop(&mut self) {
        let turn = self.lifecycle.turn();
        self.lifecycle.shutdown(&turn);
        drop(turn);
    }
}
