//! Stopping plugins: dependents first, registrations removed at once, queued work cancelled,
//! `deactivate` on the plugin's thread within the shutdown grace.

use crossbeam_channel::bounded;

use super::{Lifecycle, LifecycleEvent, Turn};
use crate::{
    error::LoadError,
    runtime::{
        instance::wait_done,
        slot::{Control, PluginState},
    },
};

impl Lifecycle {
    /// Deactivates `plugin`, and first every serving plugin that depends on it.
    pub fn deactivate(&self, turn: &Turn<'_>, plugin: &str, why: &str) -> Result<(), LoadError> {
        if self.registry.read().get(plugin).is_none() {
            return Err(LoadError::UnknownPlugin {
                plugin: plugin.to_owned(),
            });
        }
        let dependents = self.registry.read().dependents(plugin);
        for dependent in dependents {
            log::info!("deactivating {dependent} first: it depends on {plugin}, which is being deactivated ({why})");
            self.deactivate(
                turn,
                &dependent,
                &format!("dependency {plugin} deactivated"),
            )?;
            if let Some(entry) = self.registry.write().get_mut(&dependent) {
                entry.stopped_with = Some(plugin.to_owned());
            }
        }
        self.deactivate_one(turn, plugin, why);
        Ok(())
    }

    /// Stops one plugin.
    pub(super) fn deactivate_one(&self, _turn: &Turn<'_>, plugin: &str, why: &str) {
        let (slot, version, worker, seal) = {
            let mut registry = self.registry.write();
            let Some(entry) = registry.get_mut(plugin) else {
                return;
            };
            // A plugin being quarantined is marked so before it is stopped (supervisor.rs).
            let state = entry.slot.state();
            if !state.is_serving() && state != PluginState::Quarantined {
                return;
            }
            (
                entry.slot.clone(),
                entry.version().to_string(),
                entry.worker.take(),
                entry.seal.clone(),
            )
        };
        self.dispatcher.remove(plugin);
        slot.close();
        let (done_tx, done_rx) = bounded(1);
        let grace = self.grace();
        let result = if slot.control.send(Control::Stop { done: done_tx }).is_ok() {
            wait_done(&done_rx, grace)
        } else {
            Ok(())
        };
        {
            let mut state = slot.state.write();
            if *state != PluginState::Quarantined {
                *state = PluginState::Deactivated;
            }
        }
        // The context dies with the instance, whether deactivate returned or not; anything it
        // registered meanwhile goes too.
        seal.retire();
        self.dispatcher.drop_registrations(plugin, None);
        match result {
            Ok(()) => {
                // The thread exits right after answering; never wait on one unboundedly (a
                // handle can belong to a thread a restart left behind in plugin code).
                if let Some(w) = worker {
                    let until = std::time::Instant::now() + grace;
                    while !w.is_finished() && std::time::Instant::now() < until {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    if w.is_finished() {
                        let _ = w.join();
                    }
                }
                if why != "requested" && why != "shutdown" {
                    *slot.last_error.lock() = Some(format!("deactivated: {why}"));
                }
            }
            Err(e) => {
                // The thread's own errors name the entry point; a missed grace does not.
                let text = if e.kind == plugin_api::ErrorKind::Timeout {
                    slot.detach();
                    format!("plugin {plugin}: deactivate {e}")
                } else {
                    format!("plugin {plugin}: deactivate: {e}")
                };
                log::warn!("{text}");
                *slot.last_error.lock() = Some(text);
            }
        }
        log::info!("plugin {plugin} deactivated ({why})");
        self.announce(LifecycleEvent::Deactivated {
            plugin: plugin.to_owned(),
            version,
            reason: why.to_owned(),
        });
    }

    /// Deactivates every plugin, in reverse activation order.
    pub fn shutdown(&self, turn: &Turn<'_>) {
        let order: Vec<String> = self.registry.read().order().to_vec();
        for name in order.iter().rev() {
            self.deactivate_one(turn, name, "shutdown");
        }
    }
}
