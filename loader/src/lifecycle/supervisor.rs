//! The misbehaviour policy: a plugin that faults (a handler panics, or misses a deadline the
//! host set) gets a fresh instance, at most `max_restarts` times within `restart_window_ms`;
//! one more fault and it is quarantined (deactivated, its registrations removed,
//! `plugin:quarantined` emitted) until it is re-enabled.
//!
//! [`RestartPolicy`] is the decision as plain state with no side effects; the supervisor thread
//! around it is a short receive loop that upgrades its `Weak` only to act. It blocks on the
//! fault channel: it costs nothing while plugins behave. A thread stuck in plugin code cannot be
//! killed; a restart leaves it behind (it exits by itself if the plugin code ever returns) and
//! counts it.

use std::{
    collections::{HashMap, VecDeque},
    sync::{atomic::Ordering, Arc, Weak},
    time::{Duration, Instant},
};

use crossbeam_channel::{bounded, select_biased, Receiver, Sender};
use plugin_api::PluginError;

use super::{Lifecycle, LifecycleEvent, Turn};
use crate::runtime::{
    serve,
    slot::{not_serving, Control, Fault, PluginState, Seal},
};

/// How long an isolated plugin's process may still answer after it missed a deadline, before
/// it is killed.
const KILL_GRACE: Duration = Duration::from_millis(200);

/// What to do about a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Give the plugin a fresh instance.
    Restart,
    /// Take it out of service: it restarted `max_restarts` times within the window already.
    Quarantine,
}

/// Restarts per plugin within a sliding window.
#[derive(Debug)]
pub(crate) struct RestartPolicy {
    max_restarts: usize,
    window: Duration,
    history: HashMap<String, VecDeque<Instant>>,
}

impl RestartPolicy {
    pub fn new(max_restarts: u32, window: Duration) -> Self {
        RestartPolicy {
            max_restarts: max_restarts as usize,
            window,
            history: HashMap::new(),
        }
    }

    /// Decides about a fault of `plugin` at `now`, and remembers the restart it allows.
    pub fn on_fault(&mut self, plugin: &str, now: Instant) -> Verdict {
        let restarts = self.history.entry(plugin.to_owned()).or_default();
        while restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            restarts.pop_front();
        }
        if restarts.len() >= self.max_restarts {
            self.history.remove(plugin);
            Verdict::Quarantine
        } else {
            restarts.push_back(now);
            Verdict::Restart
        }
    }
}

/// A restart window for people: `5 min`, `90 s`, `250 ms`.
fn window_text(ms: u64) -> String {
    match ms {
        ms if ms >= 60_000 && ms.is_multiple_of(60_000) => format!("{} min", ms / 60_000),
        ms if ms >= 1000 && ms.is_multiple_of(1000) => format!("{} s", ms / 1000),
        ms => format!("{ms} ms"),
    }
}

/// Keeps the supervisor thread alive as long as the host.
pub(crate) struct SupervisorHandle {
    _stop: Sender<()>,
}

/// Starts the supervisor thread for `lifecycle`'s plugins.
pub(crate) fn start(
    lifecycle: &Arc<Lifecycle>,
    faults: Receiver<Fault>,
) -> Option<SupervisorHandle> {
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let weak = Arc::downgrade(lifecycle);
    let config = &lifecycle.config;
    let policy = RestartPolicy::new(
        config.max_restarts,
        Duration::from_millis(config.restart_window_ms),
    );
    std::thread::Builder::new()
        .name("plugin-supervisor".into())
        .spawn(move || supervise(weak, policy, faults, stop_rx))
        .ok()
        .map(|_| SupervisorHandle { _stop: stop_tx })
}

/// Runs until the host is dropped (its `stop` sender goes away).
fn supervise(
    lifecycle: Weak<Lifecycle>,
    mut policy: RestartPolicy,
    faults: Receiver<Fault>,
    stop: Receiver<()>,
) {
    loop {
        select_biased! {
            recv(stop) -> _ => return,
            recv(faults) -> fault => {
                let Ok(fault) = fault else { return };
                let Some(lifecycle) = lifecycle.upgrade() else { return };
                let turn = lifecycle.turn();
                match policy.on_fault(&fault.plugin, Instant::now()) {
                    Verdict::Restart => lifecycle.restart(&turn, &fault),
                    Verdict::Quarantine => lifecycle.quarantine(&turn, &fault.plugin, &fault.reason),
                }
            }
        }
    }
}

impl Lifecycle {
    /// Replaces a faulted plugin's instance with a fresh one (no state handoff: the old state
    /// may be what faulted).
    fn restart(&self, turn: &Turn<'_>, fault: &Fault) {
        let (plugin, reason) = (fault.plugin.as_str(), fault.reason.as_str());
        let (slot, library, granted, version, old_seal) = {
            let registry = self.registry.read();
            let Some(entry) = registry.get(plugin) else {
                return;
            };
            if !entry.slot.state().is_serving() {
                return;
            }
            (
                entry.slot.clone(),
                entry.library.clone(),
                entry.granted.clone(),
                entry.version().to_string(),
                entry.seal.clone(),
            )
        };
        log::warn!("plugin {plugin} faulted ({reason}): restarting it with a fresh instance");
        let seal = Seal::default();
        let fresh = self.fresh(&library, &granted, &seal, &slot);
        let deadline = self.activation_deadline();
        let mut new_worker = None;
        // An isolated plugin's stuck call ends when its process is killed (after a short
        // grace, so an answer already on its way is not cut off): its thread is then free to
        // take the restart order like after a panic, and no thread is left behind.
        let stuck = fault.stuck
            && !self
                .children()
                .kill_stuck(plugin, reason, KILL_GRACE.min(self.grace()));
        let activated = if stuck {
            // The old thread may never come back from plugin code: leave it behind (it exits if
            // it ever returns) and serve the same queues from a new thread.
            old_seal.retire();
            slot.generation.fetch_add(1, Ordering::AcqRel);
            slot.detach();
            let (ready_tx, ready_rx) = bounded::<Result<(), PluginError>>(1);
            match serve::spawn(
                slot.clone(),
                self.dispatcher.recorder().clone(),
                fresh,
                ready_tx,
                self.grace(),
            ) {
                Ok(handle) => {
                    new_worker = Some(handle);
                    ready_rx.recv_timeout(deadline).unwrap_or_else(|_| {
                        Err(PluginError::failed("activate missed its deadline"))
                    })
                }
                Err(e) => Err(PluginError::failed(format!("cannot start its thread: {e}"))),
            }
        } else {
            // The thread is alive (the panic was caught): it swaps the instance itself, before
            // it takes any further work, so nothing reaches the faulted instance again.
            let (done_tx, done_rx) = bounded(1);
            match slot.control.send(Control::Restart {
                next: Box::new(fresh),
                done: done_tx,
            }) {
                Ok(()) => done_rx
                    .recv_timeout(deadline + self.grace())
                    .unwrap_or_else(|_| Err(PluginError::failed("restart missed its deadline"))),
                Err(_) => Err(not_serving(plugin)),
            }
        };
        match activated {
            Ok(()) => {
                // The faulted instance's run-time registrations end with it.
                self.dispatcher.drop_registrations(plugin, Some(seal.id()));
                *slot.state.write() = PluginState::Active;
                if let Some(entry) = self.registry.write().get_mut(plugin) {
                    entry.seal = seal;
                    if new_worker.is_some() {
                        // The old thread is left behind; the new one is the plugin's now.
                        entry.worker = new_worker;
                    }
                }
                self.announce(LifecycleEvent::Restarted {
                    plugin: plugin.to_owned(),
                    version,
                    reason: reason.to_owned(),
                });
            }
            Err(e) => {
                seal.retire();
                self.dispatcher.drop_registrations(plugin, None);
                self.quarantine(turn, plugin, &format!("restart failed: {e}"));
            }
        }
    }

    /// Takes a plugin that keeps faulting out of service until it is re-enabled.
    ///
    /// The plugin reads as quarantined from the start, before its `deactivate` has run: `list`
    /// never shows it active meanwhile, and a call to it says why it cannot be served instead
    /// of "not found".
    fn quarantine(&self, turn: &Turn<'_>, plugin: &str, reason: &str) {
        let version = self.version_of(plugin).unwrap_or_default();
        let (max_restarts, window_ms) = (self.config.max_restarts, self.config.restart_window_ms);
        let window = window_text(window_ms);
        log::error!("plugin {plugin} quarantined after {max_restarts} restarts in {window} (last fault: {reason}); re-enable it to try again");
        let slot = match self.registry.read().get(plugin) {
            Some(entry) if entry.slot.state().is_serving() => entry.slot.clone(),
            _ => return,
        };
        self.dispatcher.set_quarantined(
            plugin,
            format!("plugin {plugin} is quarantined after {max_restarts} restarts in {window}: reenable it with 'reenable {plugin}'"),
        );
        *slot.last_error.lock() = Some(format!(
            "quarantined after {max_restarts} restarts in {window}; last fault: {reason}"
        ));
        *slot.state.write() = PluginState::Quarantined;
        if self.deactivate(turn, plugin, "quarantined").is_err() {
            return;
        }
        self.announce(LifecycleEvent::Quarantined {
            plugin: plugin.to_owned(),
            version,
            reason: reason.to_owned(),
            max_restarts,
            window_ms,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_within_the_window_then_quarantine() {
        let mut policy = RestartPolicy::new(3, Duration::from_secs(300));
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(
                policy.on_fault("p", t0 + Duration::from_secs(i)),
                Verdict::Restart
            );
        }
        assert_eq!(
            policy.on_fault("p", t0 + Duration::from_secs(4)),
            Verdict::Quarantine
        );
        // Quarantine starts the count over, and other plugins have their own.
        assert_eq!(
            policy.on_fault("p", t0 + Duration::from_secs(5)),
            Verdict::Restart
        );
        assert_eq!(
            policy.on_fault("q", t0 + Duration::from_secs(5)),
            Verdict::Restart
        );
    }

    #[test]
    fn old_restarts_slide_out_of_the_window() {
        let mut policy = RestartPolicy::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let verdicts: Vec<Verdict> = [0, 1, 12, 13, 14]
            .into_iter()
            .map(|s| policy.on_fault("p", at(s)))
            .collect();
        use Verdict::{Quarantine as Q, Restart as R};
        // At 12 s the restarts at 0 and 1 s are out of the window; at 14 s two are in it.
        assert_eq!(verdicts, [R, R, R, R, Q]);
    }

    #[test]
    fn windows_read_in_the_largest_whole_unit() {
        assert_eq!(window_text(300_000), "5 min");
        assert_eq!(window_text(90_000), "90 s");
        assert_eq!(window_text(250), "250 ms");
    }

    #[test]
    fn no_restarts_allowed_quarantines_at_once() {
        let mut policy = RestartPolicy::new(0, Duration::from_secs(10));
        assert_eq!(policy.on_fault("p", Instant::now()), Verdict::Quarantine);
    }
}
