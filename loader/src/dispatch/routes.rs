//! The routing tables: who serves which command, event pattern, hook, provider and middleware.

use std::{collections::BTreeMap, sync::Arc};

use crossbeam_channel::{Receiver, Sender};
use plugin_api::{CommandRequest, Event, Payload, PluginError};

use crate::{plan::capability, runtime::slot::Slot};

/// A command handler registered by the host application.
pub type HostCommand = Arc<dyn Fn(&CommandRequest) -> Result<Payload, PluginError> + Send + Sync>;

/// Who serves a command.
#[derive(Clone)]
pub(crate) enum Route {
    Plugin {
        slot: Arc<Slot>,
        /// The name the plugin declared.
        short: Arc<str>,
        /// `<plugin>:<command>`, shared by every call's records and messages.
        full: Arc<str>,
    },
    Host(HostCommand),
}

/// An event consumer.
#[derive(Clone)]
pub(crate) enum Target {
    Plugin(Arc<Slot>),
    Host(HostSubscriber),
}

/// A host-side subscription: a bounded queue with the same drop-oldest policy as plugins.
#[derive(Clone)]
pub(crate) struct HostSubscriber {
    pub id: u64,
    pub tx: Sender<Arc<Event>>,
    pub rx: Receiver<Arc<Event>>,
}

pub(crate) struct Subscription {
    pub pattern: String,
    pub target: Target,
}

#[derive(Clone)]
pub(crate) struct Ranked {
    pub priority: i32,
    pub seq: u64,
    pub slot: Arc<Slot>,
}

/// Commands and event types are looked up on every call and every publication: a fast hash
/// (FxHash) instead of SipHash, whose protection against chosen keys buys nothing here (the
/// names come from the host application and its plugins, which run with the host's rights).
type FastMap<V> = rustc_hash::FxHashMap<String, V>;

#[derive(Default)]
pub(crate) struct Routes {
    pub commands: FastMap<Route>,
    pub subscriptions: Vec<Subscription>,
    resolved: FastMap<Arc<[Target]>>,
    pub hooks: BTreeMap<String, Vec<Ranked>>,
    pub providers: BTreeMap<String, Vec<Ranked>>,
    pub middleware: Vec<Ranked>,
    seq: u64,
}

fn target_name(t: &Target) -> Option<&str> {
    match t {
        Target::Plugin(s) => Some(&s.name),
        Target::Host(_) => None,
    }
}

impl Routes {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Subscribers of `event_type`, cached until subscriptions change. Each plugin appears once
    /// even if several of its patterns match.
    pub fn targets(&self, event_type: &str) -> Option<Arc<[Target]>> {
        self.resolved.get(event_type).cloned()
    }

    pub fn resolve_targets(&mut self, event_type: &str) -> Arc<[Target]> {
        if let Some(t) = self.resolved.get(event_type) {
            return t.clone();
        }
        let mut out: Vec<Target> = Vec::new();
        for sub in &self.subscriptions {
            if !capability::matches(&sub.pattern, event_type) {
                continue;
            }
            let dup = match &sub.target {
                Target::Plugin(s) => out.iter().any(|t| target_name(t) == Some(&s.name)),
                Target::Host(h) => out
                    .iter()
                    .any(|t| matches!(t, Target::Host(o) if o.id == h.id)),
            };
            if !dup {
                out.push(sub.target.clone());
            }
        }
        let out: Arc<[Target]> = out.into();
        self.resolved.insert(event_type.to_owned(), out.clone());
        out
    }

    pub fn subscribe(&mut self, pattern: &str, target: Target) {
        self.subscriptions.push(Subscription {
            pattern: pattern.to_owned(),
            target,
        });
        self.resolved.clear();
    }

    /// Removes one plugin's subscription to `pattern`; returns whether it existed.
    pub fn unsubscribe(&mut self, plugin: &str, pattern: &str) -> bool {
        let before = self.subscriptions.len();
        self.subscriptions
            .retain(|s| !(s.pattern == pattern && target_name(&s.target) == Some(plugin)));
        self.resolved.clear();
        before != self.subscriptions.len()
    }

    pub fn unsubscribe_host(&mut self, id: u64) {
        self.subscriptions
            .retain(|s| !matches!(&s.target, Target::Host(h) if h.id == id));
        self.resolved.clear();
    }

    pub fn add_hook(&mut self, name: &str, priority: i32, slot: Arc<Slot>) {
        let seq = self.next_seq();
        let list = self.hooks.entry(name.to_owned()).or_default();
        list.push(Ranked {
            priority,
            seq,
            slot,
        });
        list.sort_by_key(|r| (r.priority, r.seq));
    }

    pub fn add_provider(&mut self, name: &str, priority: i32, slot: Arc<Slot>) {
        let seq = self.next_seq();
        let list = self.providers.entry(name.to_owned()).or_default();
        list.push(Ranked {
            priority,
            seq,
            slot,
        });
        // Highest priority first.
        list.sort_by_key(|r| (std::cmp::Reverse(r.priority), r.seq));
    }

    /// The plugin already providing `name` at `priority`, if any (equal priorities are refused).
    pub fn provider_conflict(&self, name: &str, priority: i32, plugin: &str) -> Option<Arc<str>> {
        self.providers.get(name).and_then(|list| {
            list.iter()
                .find(|r| r.priority == priority && &*r.slot.name != plugin)
                .map(|r| r.slot.name.clone())
        })
    }

    pub fn add_middleware(&mut self, priority: i32, slot: Arc<Slot>) {
        let seq = self.next_seq();
        self.middleware.push(Ranked {
            priority,
            seq,
            slot,
        });
        self.middleware.sort_by_key(|r| (r.priority, r.seq));
    }

    /// Removes everything registered by `plugin`.
    pub fn remove_plugin(&mut self, plugin: &str) {
        self.commands
            .retain(|_, r| !matches!(r, Route::Plugin { slot, .. } if &*slot.name == plugin));
        self.subscriptions
            .retain(|s| target_name(&s.target) != Some(plugin));
        self.resolved.clear();
        for list in self.hooks.values_mut() {
            list.retain(|r| &*r.slot.name != plugin);
        }
        self.hooks.retain(|_, l| !l.is_empty());
        for list in self.providers.values_mut() {
            list.retain(|r| &*r.slot.name != plugin);
        }
        self.providers.retain(|_, l| !l.is_empty());
        self.middleware.retain(|r| &*r.slot.name != plugin);
    }

    /// Every registered command name, sorted.
    pub fn command_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.commands.keys().cloned().collect();
        names.sort();
        names
    }
}
