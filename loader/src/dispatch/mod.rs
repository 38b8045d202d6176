//! The caller side of every pattern: the operations of the context API, shared by plugins
//! (through their context) and the host application (through [`Host`](crate::Host)).
//! Capability checks, cycle checks, routing, queueing and deadlines are decided here.
//!
//! 1. [`caller`]: who is asking, and what they may do.
//! 2. [`routes`]: the tables (commands, plugins, subscriptions, hooks, providers, middleware).
//! 3. [`command`]: commands through the middleware chain.
//! 4. [`events`]: publication, collection and dead letters.
//! 5. [`messages`]: direct messages, request-reply and RPC.
//! 6. [`hooks`]: hooks and providers.
//! 7. [`registrations`]: commands, hooks and providers registered at run time within the
//!    manifest's patterns, held under the instance that made them.
//!
//! The [`Dispatcher`] owns the routing tables behind one lock (never held while plugin code
//! runs) and the storage the context API reaches.

pub(crate) mod caller;
mod command;
mod events;
mod hooks;
mod messages;
mod registrations;
pub(crate) mod routes;

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use parking_lot::RwLock;
use plugin_api::{CancellationToken, ErrorKind, Manifest, Payload, PluginError};

pub(crate) use self::caller::Caller;
pub use self::events::CollectedResults;
pub(crate) use self::registrations::Registrant;
pub use self::registrations::RegistrationInfo;
use self::routes::{HostCommand, HostSubscriber, Route, Routes, Target};
use crate::{
    config::HostConfig,
    observe::{
        deadletter::{DeadLetter, DeadLetters},
        recorder::{Label, RecordKind, Recorder},
    },
    plan::capability,
    runtime::{
        call::{Answer, Call},
        clock::Clock,
        kind_word,
        reply::{Waited, Waiter},
        slot::{Job, Slot},
        stamp,
        timer::Timers,
    },
    storage::Store,
};

/// How long a caller of a plugin in a child process polls for the answer before it sleeps:
/// such a call takes 10–30 µs, and a caller woken from sleep on an idle CPU pays several times
/// that (BENCHMARKS.md, process isolation). Only calls that take longer pay for the polling,
/// with at most this much CPU time, offered to other threads between looks.
const REMOTE_PATIENCE: Duration = Duration::from_micros(200);

/// The sizes of the tables that grow with what plugins send (see [`Host::table_sizes`]).
///
/// [`Host::table_sizes`]: crate::Host::table_sizes
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableSizes {
    /// Event types whose subscribers are cached (at most `route_cache_capacity`).
    pub cached_event_routes: usize,
    /// Subscriptions of plugins and the host (at most `max_subscriptions_per_plugin` each).
    pub subscriptions: usize,
    /// Dead letters kept (at most `dead_letter_capacity`).
    pub dead_letters: usize,
    /// Flight-recorder records held (each of the recorder's rings holds at most
    /// `recorder_capacity`; a trace returns the newest `recorder_capacity`).
    pub trace_records: usize,
}

/// Routes calls and events between the host application and plugin instances.
pub(crate) struct Dispatcher {
    config: Arc<HostConfig>,
    routes: RwLock<Routes>,
    recorder: Arc<Recorder>,
    clock: Arc<Clock>,
    dead_letters: DeadLetters,
    store: Store,
    /// Why each quarantined plugin is out of service, so that a call to it says so instead of
    /// "not found" (its routes are gone). Read only on that cold path.
    quarantined: parking_lot::Mutex<std::collections::HashMap<String, String>>,
    /// Plugins' timers (one thread, started on the first timer).
    timers: Timers,
}

impl Dispatcher {
    pub fn new(config: Arc<HostConfig>, store: Store) -> Self {
        let clock: Arc<Clock> = Arc::default();
        let recorder = Arc::new(Recorder::new(config.recorder_capacity, clock.epoch()));
        Dispatcher {
            routes: RwLock::new(Routes::new(
                config.route_cache_capacity,
                config.max_subscriptions_per_plugin,
            )),
            timers: Timers::new(
                recorder.clone(),
                clock.clone(),
                config.max_timers_per_plugin,
            ),
            recorder,
            clock,
            dead_letters: DeadLetters::new(config.dead_letter_capacity),
            store,
            config,
            quarantined: parking_lot::Mutex::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// The storage plugins reach through their context.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The flight recorder.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    /// Undeliverable events and messages.
    pub fn dead_letters(&self) -> &DeadLetters {
        &self.dead_letters
    }

    /// Plugins' timers.
    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    /// The host's ids and wall clock.
    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    pub fn next_id(&self) -> u64 {
        self.clock.next_id()
    }

    fn timeout(&self, requested: Option<Duration>) -> Duration {
        requested.unwrap_or_else(|| self.config.call_timeout())
    }

    fn check_size(&self, what: &str, payload: &Payload) -> Result<(), PluginError> {
        if payload.len() > self.config.max_payload_bytes {
            return Err(PluginError::invalid(format!(
                "{what}: payload of {} bytes exceeds the limit of {} bytes",
                payload.len(),
                self.config.max_payload_bytes
            )));
        }
        Ok(())
    }

    // ---- tables, for the lifecycle and the host --------------------------------------------

    /// Makes what `manifest` declares reachable through `slot`.
    pub fn install(&self, manifest: &Manifest, granted: &[String], slot: &Arc<Slot>) {
        self.quarantined.lock().remove(&manifest.name);
        self.routes.write().install(manifest, granted, slot);
    }

    /// Records that `plugin` is quarantined and why (`message`, a whole sentence for the
    /// caller); the note goes when the plugin is installed again.
    pub fn set_quarantined(&self, plugin: &str, message: String) {
        self.quarantined.lock().insert(plugin.to_owned(), message);
    }

    /// The error for a call to `plugin` that found no route: why it is quarantined, if it is.
    pub fn quarantined(&self, plugin: &str) -> Option<PluginError> {
        self.quarantined
            .lock()
            .get(plugin)
            .map(|message| PluginError::not_found(message.clone()))
    }

    /// Replaces what `manifest`'s plugin registered with what `manifest` declares, in one step
    /// (no call sees the plugin missing in between). The run-time registrations of instance
    /// `keep` (the new one, which made them while activating) stay; the others go.
    pub fn reinstall(&self, manifest: &Manifest, granted: &[String], slot: &Arc<Slot>, keep: u64) {
        self.quarantined.lock().remove(&manifest.name);
        let mut routes = self.routes.write();
        routes.remove_plugin_keeping(&manifest.name, Some(keep));
        routes.install(manifest, granted, slot);
    }

    /// Removes everything `plugin` registered: its commands and subscriptions go at once.
    pub fn remove(&self, plugin: &str) {
        self.routes.write().remove_plugin(plugin);
    }

    /// Every registered command name, sorted.
    pub fn command_names(&self) -> Vec<String> {
        self.routes.read().command_names()
    }

    /// Registers a host command, `host:<name>`.
    pub fn register_host_command(&self, name: &str, handler: HostCommand) {
        self.routes
            .write()
            .commands
            .insert(format!("host:{name}"), Route::Host(handler));
    }

    /// Subscribes a host-side queue.
    pub fn subscribe_host(&self, pattern: &str, subscriber: HostSubscriber) {
        // Only plugins' subscriptions are bounded.
        let _ = self
            .routes
            .write()
            .subscribe(pattern, Target::Host(subscriber));
    }

    /// Removes a host-side subscription.
    pub fn unsubscribe_host(&self, id: u64) {
        self.routes.write().unsubscribe_host(id);
    }

    /// A plugin subscribes at run time.
    pub fn subscribe_plugin(&self, caller: &Caller<'_>, pattern: &str) -> Result<(), PluginError> {
        let Some(granted) = caller.granted else {
            return Err(PluginError::invalid(
                "the host subscribes with Host::subscribe",
            ));
        };
        if !capability::allows_pattern(granted, "subscribe", pattern) {
            return Err(PluginError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "permission denied: plugin {} lacks capability subscribe:{pattern}",
                    caller.name
                ),
            ));
        }
        let mut routes = self.routes.write();
        let slot = routes
            .plugins
            .get(caller.name)
            .map(|r| r.slot.clone())
            .ok_or_else(|| PluginError::not_found(format!("plugin not found: {}", caller.name)))?;
        routes.subscribe(pattern, Target::Plugin(slot))
    }

    /// A plugin drops one of its subscriptions.
    pub fn unsubscribe_plugin(
        &self,
        caller: &Caller<'_>,
        pattern: &str,
    ) -> Result<(), PluginError> {
        if self.routes.write().unsubscribe(caller.name, pattern) {
            Ok(())
        } else {
            Err(PluginError::not_found(format!(
                "plugin {} has no subscription {pattern}",
                caller.name
            )))
        }
    }

    /// The sizes of the tables that grow with what plugins send.
    pub fn table_sizes(&self) -> TableSizes {
        let routes = self.routes.read();
        TableSizes {
            cached_event_routes: routes.cached(),
            subscriptions: routes.subscription_count(),
            dead_letters: self.dead_letters.len(),
            trace_records: self.recorder.len(),
        }
    }

    /// Whether no plugin has work queued or running, and how much work they have finished:
    /// two readings that are both idle with the same total saw no work in between (work can
    /// only start from work, or from outside the plugins).
    pub fn idle_reading(&self) -> (bool, u64) {
        let routes = self.routes.read();
        let idle = routes.plugins.values().all(|r| r.slot.is_idle());
        let done = routes.plugins.values().map(|r| r.slot.work_done()).sum();
        (idle, done)
    }

    // ---- calls ---------------------------------------------------------------------------

    fn plugin_slot(&self, plugin: &str) -> Result<routes::Reach, PluginError> {
        match self.routes.read().plugins.get(plugin) {
            Some(reach) if reach.slot.state().is_serving() => Ok(reach.clone()),
            Some(reach) => Err(PluginError::not_found(format!(
                "plugin {plugin} is not active (state {})",
                reach.slot.state()
            ))),
            None => Err(self
                .quarantined(plugin)
                .unwrap_or_else(|| PluginError::not_found(format!("plugin not found: {plugin}")))),
        }
    }

    /// Runs `call` on `slot`'s thread and waits for its answer until `timeout`. `queued` is a
    /// clock reading the caller already took, if any.
    fn call_slot(
        &self,
        caller: &Caller<'_>,
        slot: &Arc<Slot>,
        (kind, name): (RecordKind, &str),
        (timeout, queued): (Duration, Option<Instant>),
        call: Call,
    ) -> Result<Answer, PluginError> {
        caller.cycle_to(&slot.name)?;
        let work = self.next_id();
        let waiter = Waiter::new(work);
        let recorder = &self.recorder;
        let deadline = queued.unwrap_or_else(Instant::now) + timeout;
        // What only this side knows of the record; the plugin's thread writes the rest (its own
        // copy of the plugin's name, the times), so little crosses between the CPUs.
        let record = recorder.enabled().then(|| {
            (
                caller.work,
                Label::new(caller.name),
                queued.map_or_else(|| recorder.now(), |at| recorder.micros(at)),
            )
        });
        // Cancelled when this caller stops waiting, and with the call this one is made from.
        let cancel = match stamp::inherited() {
            Some(parent) => CancellationToken::new().joined(&parent),
            None => CancellationToken::new(),
        };
        slot.submit(Job {
            chain: caller.chain.clone(),
            work,
            call,
            kind,
            name: Label::new(name),
            record,
            reply: Some(waiter.reply_to()),
            caller: Label::new(caller.name),
            cancel: cancel.clone(),
        })?;
        let patience = if slot.is_remote() {
            REMOTE_PATIENCE
        } else {
            Duration::ZERO
        };
        match waiter.wait(deadline, patience) {
            Waited::Answer(result) => result,
            Waited::TimedOut => {
                // Before the waiter goes: a handler that returns from now on sees itself
                // cancelled, and its reply is not counted as late.
                cancel.cancel();
                drop(waiter);
                let what = format!("{} {name}", kind_word(kind));
                slot.metrics.timeouts.fetch_add(1, Ordering::Relaxed);
                // Missing the host's own deadline is a fault; a caller's shorter one is not.
                if timeout >= self.config.call_timeout() {
                    slot.mark_faulted(
                        format!("{what} missed its {} ms deadline", timeout.as_millis()),
                        true,
                    );
                }
                Err(PluginError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{what} timed out after {} ms (plugin {})",
                        timeout.as_millis(),
                        slot.name
                    ),
                ))
            }
            Waited::Cancelled => Err(PluginError::new(
                ErrorKind::Cancelled,
                format!(
                    "{} {name} cancelled: plugin {} was deactivated before answering",
                    kind_word(kind),
                    slot.name
                ),
            )),
        }
    }

    /// Records an undeliverable event or message.
    pub(crate) fn dead_letter(&self, letter: DeadLetter) {
        self.dead_letters.push(letter);
    }
}
