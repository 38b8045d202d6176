//! The `plugin:*` events the host publishes about its plugins, as one typed value.

use plugin_api::{Event, Payload};
use serde::{Deserialize, Serialize};

/// What happened to a plugin, published by the host as a `plugin:*` event whose payload is
/// this value as JSON (with `kind` naming the variant). Plugins subscribe to `plugin:*` to
/// hear of them; the host application reads them back with [`LifecycleEvent::from_event`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LifecycleEvent {
    /// `plugin:loaded`: the library was checked and its instance made.
    Loaded {
        /// Plugin name.
        plugin: String,
        /// Its version.
        version: String,
        /// The file it came from; `None` (JSON `null`) for a module compiled into the
        /// application.
        file: Option<String>,
    },
    /// `plugin:activated`: the plugin serves.
    Activated {
        /// Plugin name.
        plugin: String,
        /// Its version.
        version: String,
    },
    /// `plugin:deactivated`: the plugin stopped (requested, shutdown, removed, a dependency
    /// went, quarantine).
    Deactivated {
        /// Plugin name.
        plugin: String,
        /// Its version.
        version: String,
        /// Why.
        reason: String,
    },
    /// `plugin:reloaded`: a new build replaced the running one, state handed over.
    Reloaded {
        /// Plugin name.
        plugin: String,
        /// The version now running (same as `new_version`).
        version: String,
        /// The version that ran before.
        old_version: String,
        /// The version now running.
        new_version: String,
    },
    /// `plugin:restarted`: a faulted plugin got a fresh instance.
    Restarted {
        /// Plugin name.
        plugin: String,
        /// Its version.
        version: String,
        /// The fault.
        reason: String,
    },
    /// `plugin:quarantined`: the plugin faulted too often and stays off until re-enabled.
    Quarantined {
        /// Plugin name.
        plugin: String,
        /// Its version.
        version: String,
        /// The last fault.
        reason: String,
        /// Restarts allowed within the window.
        max_restarts: u32,
        /// The window, in ms.
        window_ms: u64,
    },
    /// `plugin:error`: activation failed, or a reload was refused (the old version goes on).
    Error {
        /// Plugin name.
        plugin: String,
        /// Its version, when known.
        version: Option<String>,
        /// What went wrong, with its causes.
        error: String,
    },
}

impl LifecycleEvent {
    /// The event type it is published as.
    pub fn event_type(&self) -> &'static str {
        match self {
            LifecycleEvent::Loaded { .. } => "plugin:loaded",
            LifecycleEvent::Activated { .. } => "plugin:activated",
            LifecycleEvent::Deactivated { .. } => "plugin:deactivated",
            LifecycleEvent::Reloaded { .. } => "plugin:reloaded",
            LifecycleEvent::Restarted { .. } => "plugin:restarted",
            LifecycleEvent::Quarantined { .. } => "plugin:quarantined",
            LifecycleEvent::Error { .. } => "plugin:error",
        }
    }

    /// The plugin it is about.
    pub fn plugin(&self) -> &str {
        match self {
            LifecycleEvent::Loaded { plugin, .. }
            | LifecycleEvent::Activated { plugin, .. }
            | LifecycleEvent::Deactivated { plugin, .. }
            | LifecycleEvent::Reloaded { plugin, .. }
            | LifecycleEvent::Restarted { plugin, .. }
            | LifecycleEvent::Quarantined { plugin, .. }
            | LifecycleEvent::Error { plugin, .. } => plugin,
        }
    }

    /// The payload it is published with (JSON).
    pub fn payload(&self) -> Payload {
        Payload::json(self).unwrap_or_default()
    }

    /// Reads a `plugin:*` event published by the host back into a value; `None` for other
    /// events, or for a payload that is not one (only the host publishes `plugin:*`).
    pub fn from_event(event: &Event) -> Option<LifecycleEvent> {
        if !event.event_type.starts_with("plugin:") || event.source.as_str() != "host" {
            return None;
        }
        let value: LifecycleEvent = event.data.decode().ok()?;
        (value.event_type() == event.event_type.as_str()).then_some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_keeps_the_field_names_plugins_read() {
        let e = LifecycleEvent::Reloaded {
            plugin: "greeter".into(),
            version: "0.2.0".into(),
            old_version: "0.1.0".into(),
            new_version: "0.2.0".into(),
        };
        let json: serde_json::Value = e.payload().decode().expect("json");
        assert_eq!(json["plugin"], "greeter");
        assert_eq!(json["old_version"], "0.1.0");
        assert_eq!(json["kind"], "reloaded");
        let event = Event {
            id: 1,
            parent: 0,
            event_type: e.event_type().into(),
            source: "host".into(),
            timestamp_ms: 0,
            data: e.payload(),
        };
        assert_eq!(LifecycleEvent::from_event(&event), Some(e));
    }
}
