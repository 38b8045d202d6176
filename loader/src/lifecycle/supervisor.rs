//! The misbehaviour policy: a plugin that faults (a handler panics, or misses a deadline the
//! host set) gets a fresh instance on a fresh thread, at most `max_restarts` times within
//! `restart_window_ms`; one more fault and it is quarantined — deactivated, its registrations
//! removed, `plugin:quarantined` emitted — until [`Host::reenable`] is called.
//!
//! The supervisor is one thread blocked on the fault channel: it costs nothing while plugins
//! behave. A thread stuck in plugin code cannot be killed; a restart leaves it behind (it exits
//! by itself if the plugin code ever returns) and counts it.

use std::{
    collections::{HashMap, VecDeque},
    sync::{atomic::Ordering, Arc, Weak},
    time::{Duration, Instant},
};

use crossbeam_channel::{bounded, select, Receiver};
use plugin_api::PluginError;

use crate::{
    error::LoadError,
    host::{Host, HostInner},
    runtime::slot::{self, Control, Fault, PluginState},
};

/// Runs until the host is dropped (its `stop` sender goes away).
pub(crate) fn supervise(host: Weak<HostInner>, faults: Receiver<Fault>, stop: Receiver<()>) {
    let mut history: HashMap<String, VecDeque<Instant>> = HashMap::new();
    loop {
        select! {
            recv(stop) -> _ => return,
            recv(faults) -> fault => {
                let Ok(fault) = fault else { return };
                let Some(host) = host.upgrade() else { return };
                let window = Duration::from_millis(host.config.restart_window_ms);
                let now = Instant::now();
                let restarts = history.entry(fault.plugin.clone()).or_default();
                while restarts.front().is_some_and(|t| now.duration_since(*t) > window) {
                    restarts.pop_front();
                }
                if restarts.len() >= host.config.max_restarts as usize {
                    restarts.clear();
                    host.quarantine(&fault.plugin, &fault.reason);
                } else {
                    restarts.push_back(now);
                    host.restart(&fault);
                }
            }
        }
    }
}

impl HostInner {
    /// Replaces a faulted plugin's instance with a fresh one (no state handoff: the old state
    /// may be what faulted) on a new thread serving the same queues.
    fn restart(&self, fault: &Fault) {
        let (plugin, reason) = (fault.plugin.as_str(), fault.reason.as_str());
        let _guard = self.lifecycle.lock();
        let (slot, library, granted, version) = {
            let state = self.state.read();
            let Some(entry) = state.slots.get(plugin) else {
                return;
            };
            if !entry.slot.state().is_serving() {
                return;
            }
            (
                entry.slot.clone(),
                entry.library.clone(),
                entry.granted.clone(),
                entry.version.to_string(),
            )
        };
        log::warn!("plugin {plugin} faulted ({reason}): restarting it with a fresh instance");
        let context = self.context_for(plugin, &granted);
        let instance = match (library.module.instantiate())(context).into_result() {
            Ok(i) => i,
            Err(e) => {
                drop(_guard);
                self.quarantine(plugin, &format!("restart failed: {e}"));
                return;
            }
        };
        let deadline = Duration::from_millis(self.config.activation_timeout_ms.max(1));
        let activated = if fault.stuck {
            // The old thread may never come back from plugin code: leave it behind (it exits if
            // it ever returns) and serve the same queues from a new thread.
            slot.generation.fetch_add(1, Ordering::AcqRel);
            self.detached.fetch_add(1, Ordering::Relaxed);
            let (ready_tx, ready_rx) = bounded::<Result<(), PluginError>>(1);
            let thread_slot = slot.clone();
            let recorder = self.recorder.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("plugin-{plugin}"))
                .spawn(move || {
                    let mut instance = instance;
                    let activated = instance.activate().into_result();
                    let ok = activated.is_ok();
                    let _ = ready_tx.send(activated);
                    if ok {
                        slot::run(thread_slot, instance, recorder);
                    }
                });
            match spawned {
                Ok(_) => ready_rx
                    .recv_timeout(deadline)
                    .unwrap_or_else(|_| Err(PluginError::failed("activate missed its deadline"))),
                Err(e) => Err(PluginError::failed(format!("cannot start its thread: {e}"))),
            }
        } else {
            // The thread is alive (the panic was caught): it swaps the instance itself, before
            // it takes any further work, so nothing reaches the faulted instance again.
            let (done_tx, done_rx) = bounded(1);
            match slot.control.send(Control::Restart {
                next: Box::new(instance),
                done: done_tx,
            }) {
                Ok(()) => done_rx
                    .recv_timeout(deadline)
                    .unwrap_or_else(|_| Err(PluginError::failed("restart missed its deadline"))),
                Err(_) => Err(crate::runtime::slot::not_serving(plugin)),
            }
        };
        match activated {
            Ok(()) => {
                *slot.state.write() = PluginState::Active;
                self.lifecycle_event(
                    "plugin:restarted",
                    plugin,
                    Some(&version),
                    Some(("reason", reason)),
                );
            }
            Err(e) => {
                drop(_guard);
                self.quarantine(plugin, &format!("restart failed: {e}"));
            }
        }
    }

    /// Takes a plugin that keeps faulting out of service until it is re-enabled.
    pub(crate) fn quarantine(&self, plugin: &str, reason: &str) {
        let _guard = self.lifecycle.lock();
        log::error!("plugin {plugin} quarantined after repeated faults (last: {reason}); re-enable it to try again");
        let version = self.version_of(plugin);
        if self
            .deactivate_with_dependents(plugin, "quarantined")
            .is_err()
        {
            return;
        }
        if let Some(entry) = self.state.read().slots.get(plugin) {
            *entry.slot.state.write() = PluginState::Quarantined;
            *entry.slot.last_error.lock() =
                Some(format!("quarantined after repeated faults; last: {reason}"));
        }
        self.lifecycle_event(
            "plugin:quarantined",
            plugin,
            version.as_deref(),
            Some(("reason", reason)),
        );
    }
}

impl Host {
    /// Brings a quarantined (or deactivated) plugin back: a fresh instance of the library it was
    /// loaded from, activated like a first load.
    ///
    /// # Errors
    /// [`LoadError::UnknownPlugin`], or why activation failed.
    pub fn reenable(&self, plugin: &str) -> Result<(), LoadError> {
        let _guard = self.inner.lifecycle.lock();
        let library = {
            let state = self.inner.state.read();
            let entry = state
                .slots
                .get(plugin)
                .ok_or_else(|| LoadError::UnknownPlugin {
                    plugin: plugin.to_owned(),
                })?;
            if entry.slot.state().is_serving() {
                return Ok(());
            }
            entry.library.clone()
        };
        self.inner.activate(library)
    }

    /// Plugin threads left behind by restarts and missed deadlines (threads cannot be killed).
    pub fn detached_threads(&self) -> u64 {
        self.inner.detached.load(Ordering::Relaxed)
    }
}

/// Keeps the supervisor's stop channel alive as long as the host.
pub(crate) struct SupervisorHandle {
    pub _stop: crossbeam_channel::Sender<()>,
}

pub(crate) fn start(host: &Arc<HostInner>, faults: Receiver<Fault>) -> Option<SupervisorHandle> {
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let weak = Arc::downgrade(host);
    std::thread::Builder::new()
        .name("plugin-supervisor".into())
        .spawn(move || supervise(weak, faults, stop_rx))
        .ok()
        .map(|_| SupervisorHandle { _stop: stop_tx })
}
