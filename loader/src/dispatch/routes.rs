//! The routing tables: who serves which command, event pattern, hook, provider and middleware.

use std::{collections::BTreeMap, sync::Arc};

use crossbeam_channel::{Receiver, Sender};
use plugin_api::{CommandRequest, Event, Manifest, Payload, PluginError};

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

struct Subscription {
    pattern: String,
    target: Target,
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

/// A plugin that can be addressed by name (direct messages, RPC, its own subscriptions).
#[derive(Clone)]
pub(crate) struct Reach {
    pub slot: Arc<Slot>,
    /// Its manifest says `accepts_messages`.
    pub accepts_messages: bool,
}

/// Every table the dispatcher reads on a call or a publication, behind the dispatcher's one
/// lock.
pub(crate) struct Routes {
    pub commands: FastMap<Route>,
    pub plugins: FastMap<Reach>,
    subscriptions: Vec<Subscription>,
    /// Subscribers by event type, cached; at most `cache_capacity` types (the types come from
    /// plugins, so an unbounded cache would let one grow the host without end).
    resolved: FastMap<Arc<[Target]>>,
    cache_capacity: usize,
    /// Patterns one plugin may subscribe to at most.
    subscription_limit: usize,
    pub hooks: BTreeMap<String, Vec<Ranked>>,
    pub providers: BTreeMap<String, Vec<Ranked>>,
    pub middleware: Vec<Ranked>,
    seq: u64,
    /// What plugins registered at run time (see `registrations.rs`), in registration order.
    pub(super) registrations: Vec<super::registrations::Registered>,
}

impl Default for Routes {
    fn default() -> Self {
        Routes::new(4096, 1024)
    }
}

fn target_name(t: &Target) -> Option<&str> {
    match t {
        Target::Plugin(s) => Some(&s.name),
        Target::Host(_) => None,
    }
}

impl Routes {
    /// Empty tables with the given bounds.
    pub fn new(cache_capacity: usize, subscription_limit: usize) -> Self {
        Routes {
            commands: FastMap::default(),
            plugins: FastMap::default(),
            subscriptions: Vec::new(),
            resolved: FastMap::default(),
            cache_capacity: cache_capacity.max(1),
            subscription_limit: subscription_limit.max(1),
            hooks: BTreeMap::new(),
            providers: BTreeMap::new(),
            middleware: Vec::new(),
            seq: 0,
            registrations: Vec::new(),
        }
    }

    /// How many event types have their subscribers cached.
    pub fn cached(&self) -> usize {
        self.resolved.len()
    }

    /// How many subscriptions there are (plugins' and the host's).
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.len()
    }

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
        if self.resolved.len() >= self.cache_capacity {
            // Ever-new event types: start the cache over rather than grow it.
            self.resolved.clear();
        }
        self.resolved.insert(event_type.to_owned(), out.clone());
        out
    }

    /// Adds a subscription. A plugin's subscriptions are bounded: past the limit the subscription
    /// is refused with the plugin's name and the limit.
    pub fn subscribe(&mut self, pattern: &str, target: Target) -> Result<(), PluginError> {
        if let Target::Plugin(slot) = &target {
            let name = &slot.name;
            if self
                .subscriptions
                .iter()
                .any(|s| s.pattern == pattern && target_name(&s.target) == Some(name))
            {
                return Ok(());
            }
            let mine = self
                .subscriptions
                .iter()
                .filter(|s| target_name(&s.target) == Some(name))
                .count();
            if mine >= self.subscription_limit {
                return Err(PluginError::new(
                    plugin_api::ErrorKind::QuotaExceeded,
                    format!(
                        "plugin {name} has reached its limit of {} subscriptions (max_subscriptions_per_plugin); cannot subscribe to {pattern}",
                        self.subscription_limit
                    ),
                ));
            }
        }
        self.subscriptions.push(Subscription {
            pattern: pattern.to_owned(),
            target,
        });
        self.resolved.clear();
        Ok(())
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

    /// Adds a hook handler; returns its sequence number.
    pub fn add_hook(&mut self, name: &str, priority: i32, slot: Arc<Slot>) -> u64 {
        let seq = self.next_seq();
        let list = self.hooks.entry(name.to_owned()).or_default();
        list.push(Ranked {
            priority,
            seq,
            slot,
        });
        list.sort_by_key(|r| (r.priority, r.seq));
        seq
    }

    /// Adds a provider; returns its sequence number.
    pub fn add_provider(&mut self, name: &str, priority: i32, slot: Arc<Slot>) -> u64 {
        let seq = self.next_seq();
        let list = self.providers.entry(name.to_owned()).or_default();
        list.push(Ranked {
            priority,
            seq,
            slot,
        });
        // Highest priority first.
        list.sort_by_key(|r| (std::cmp::Reverse(r.priority), r.seq));
        seq
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

    /// Registers what a manifest declares, within what was granted.
    pub fn install(&mut self, manifest: &Manifest, granted: &[String], slot: &Arc<Slot>) {
        self.plugins.insert(
            manifest.name.clone(),
            Reach {
                slot: slot.clone(),
                accepts_messages: manifest.accepts_messages,
            },
        );
        for c in &manifest.commands {
            let full = format!("{}:{}", manifest.name, c.name);
            self.commands.insert(
                full.clone(),
                Route::Plugin {
                    slot: slot.clone(),
                    short: Arc::from(c.name.as_str()),
                    full: Arc::from(full),
                },
            );
        }
        for p in &manifest.subscribes {
            if !capability::allows_pattern(granted, "subscribe", p) {
                log::warn!(
                    "plugin {}: subscription {p} revoked by the host config",
                    manifest.name
                );
            } else if let Err(e) = self.subscribe(p, Target::Plugin(slot.clone())) {
                log::warn!("{e}");
            }
        }
        for h in &manifest.hooks {
            let _ = self.add_hook(&h.name, h.priority, slot.clone());
        }
        for p in &manifest.providers {
            let _ = self.add_provider(&p.name, p.priority, slot.clone());
        }
        if let Some(m) = &manifest.middleware {
            if capability::allows(granted, "middleware") {
                self.add_middleware(m.priority, slot.clone());
            } else {
                log::warn!(
                    "plugin {}: middleware revoked by the host config",
                    manifest.name
                );
            }
        }
    }

    /// Removes everything registered by `plugin`, declared or made at run time.
    pub fn remove_plugin(&mut self, plugin: &str) {
        self.remove_plugin_keeping(plugin, None);
    }

    /// Removes everything registered by `plugin`, except the run-time registrations of
    /// instance `keep` (a reload's new instance made them while activating).
    pub fn remove_plugin_keeping(&mut self, plugin: &str, keep: Option<u64>) {
        let (kept_commands, kept_seqs) = keep.map(|k| self.kept_by(plugin, k)).unwrap_or_default();
        self.drop_registrations(plugin, keep);
        self.plugins.remove(plugin);
        self.commands.retain(|name, r| {
            !matches!(r, Route::Plugin { slot, .. } if &*slot.name == plugin)
                || kept_commands.contains(name)
        });
        self.subscriptions
            .retain(|s| target_name(&s.target) != Some(plugin));
        self.resolved.clear();
        for list in self.hooks.values_mut() {
            list.retain(|r| &*r.slot.name != plugin || kept_seqs.contains(&r.seq));
        }
        self.hooks.retain(|_, l| !l.is_empty());
        for list in self.providers.values_mut() {
            list.retain(|r| &*r.slot.name != plugin || kept_seqs.contains(&r.seq));
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    fn slot(name: &str) -> Arc<Slot> {
        let (faults, _) = crossbeam_channel::unbounded();
        Slot::new(
            name,
            4,
            4,
            (faults, Arc::new(AtomicU64::new(0)), Arc::default()),
            1024,
        )
    }

    fn names(targets: &[Target]) -> Vec<&str> {
        targets.iter().filter_map(target_name).collect()
    }

    #[test]
    fn a_plugin_matching_twice_gets_an_event_once() {
        let mut routes = Routes::new(16, 16);
        let a = slot("a");
        routes
            .subscribe("user:*", Target::Plugin(a.clone()))
            .expect("room");
        routes
            .subscribe("user:created", Target::Plugin(a))
            .expect("room");
        routes
            .subscribe("other", Target::Plugin(slot("b")))
            .expect("room");
        assert_eq!(names(&routes.resolve_targets("user:created")), ["a"]);
        assert!(routes.resolve_targets("nothing").is_empty());
    }

    #[test]
    fn the_route_cache_stays_bounded() {
        let mut routes = Routes::new(8, 16);
        routes
            .subscribe("*", Target::Plugin(slot("a")))
            .expect("room");
        for i in 0..100 {
            assert_eq!(names(&routes.resolve_targets(&format!("t:{i}"))), ["a"]);
            assert!(routes.cached() <= 8);
        }
    }

    #[test]
    fn subscriptions_per_plugin_are_bounded_and_named() {
        let mut routes = Routes::new(8, 2);
        let a = slot("spammer");
        routes
            .subscribe("a", Target::Plugin(a.clone()))
            .expect("room");
        routes
            .subscribe("b", Target::Plugin(a.clone()))
            .expect("room");
        routes
            .subscribe("a", Target::Plugin(a.clone()))
            .expect("a repeat is free");
        let e = routes
            .subscribe("c", Target::Plugin(a))
            .expect_err("over the limit");
        assert!(e.message().contains("spammer") && e.message().contains("limit of 2"));
        routes
            .subscribe("c", Target::Plugin(slot("other")))
            .expect("others are not affected");
    }

    #[test]
    fn providers_rank_highest_first() {
        let mut routes = Routes::new(8, 8);
        routes.add_provider("users", 1, slot("low"));
        routes.add_provider("users", 5, slot("high"));
        let first = routes
            .providers
            .get("users")
            .and_then(|l| l.first())
            .map(|r| r.slot.name.clone());
        assert_eq!(first.as_deref(), Some("high"));
        routes.remove_plugin("high");
        let first = routes
            .providers
            .get("users")
            .and_then(|l| l.first())
            .map(|r| r.slot.name.clone());
        assert_eq!(first.as_deref(), Some("low"));
    }
}
