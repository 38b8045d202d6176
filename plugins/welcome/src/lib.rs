//! Example plugin: welcomes people by running another plugin's command, and listens to
//! lifecycle events.
//!
//! | command | arguments | answer |
//! |---|---|---|
//! | `welcome:welcome` | `{"name": "Ada"}` | `{"message": "Hello, Ada! Welcome aboard."}` |
//! | `welcome:seen` | none | `{"activated": ["greeter", ...]}` |
//!
//! `welcome` executes `greeter:greet` (so the plugin depends on `greeter ^0.1`); `seen` lists the
//! plugins whose `plugin:activated` event this plugin received, oldest first.
//!
//! ```
//! assert_eq!(welcome::welcome_message("Hello, Ada!"), "Hello, Ada! Welcome aboard.");
//! ```
#![forbid(unsafe_code)]

use std::collections::VecDeque;

use plugin_api::prelude::*;
use serde::{Deserialize, Serialize};

/// How many activations `seen` remembers; older ones are forgotten (hot reloads repeat them).
pub const SEEN_CAPACITY: usize = 1000;

/// Arguments of `welcome:welcome`, passed on unchanged to `greeter:greet`.
///
/// Rust plugins exchange bincode, which has no field names: this must stay field for field the
/// same as greeter's own `Greet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Greet {
    /// Who to welcome.
    pub name: String,
}

/// The answer of `greeter:greet` and of `welcome:welcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Greeting {
    /// The text.
    pub message: String,
}

/// The data of the host's lifecycle events (`plugin:activated`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    /// The plugin's name.
    pub plugin: String,
    /// The plugin's version.
    pub version: String,
}

/// The answer of `welcome:seen`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Names of the plugins seen activating, oldest first; a plugin activated twice (a hot
    /// reload) is listed twice.
    pub activated: Vec<String>,
}

/// The welcome built on a greeting.
pub fn welcome_message(greeting: &str) -> String {
    format!("{greeting} Welcome aboard.")
}

/// The welcome plugin: remembers which plugins it saw activate.
#[derive(Debug, Default)]
pub struct Welcome {
    activated: VecDeque<String>,
}

impl Welcome {
    /// Records that `plugin` was activated, forgetting the oldest record beyond
    /// [`SEEN_CAPACITY`].
    pub fn record_activation(&mut self, plugin: String) {
        if self.activated.len() == SEEN_CAPACITY {
            self.activated.pop_front();
        }
        self.activated.push_back(plugin);
    }

    /// The plugins seen activating, oldest first.
    pub fn seen(&self) -> Seen {
        Seen {
            activated: self.activated.iter().cloned().collect(),
        }
    }
}

impl Welcome {
    fn welcome(&mut self, ctx: &Context, greet: Greet) -> PluginResult<Greeting> {
        let greeting: Greeting = ctx.execute("greeter:greet", &greet)?;
        Ok(Greeting {
            message: welcome_message(&greeting.message),
        })
    }

    fn list_seen(&mut self, _: &Context, _: NoArgs) -> PluginResult<Seen> {
        Ok(self.seen())
    }

    fn activated(&mut self, _: &Context, event: &Event) -> PluginResult<Option<Payload>> {
        // Lifecycle events come from the host; one we cannot read is not this plugin's
        // failure, so it is skipped rather than reported back.
        match event.data.decode::<Lifecycle>() {
            Ok(lifecycle) => self.record_activation(lifecycle.plugin),
            Err(e) => log::debug!(
                "ignoring unreadable plugin:activated event {}: {e}",
                event.id
            ),
        }
        Ok(None)
    }
}

impl Plugin for Welcome {
    fn manifest() -> Manifest {
        Manifest::new("welcome")
            .version("0.1.0")
            .depends_on("greeter", "^0.1")
            .calls("greeter:*")
    }

    fn register(api: &mut Registrar<Self>) {
        api.command(
            "welcome",
            r#"welcomes {"name": ...} with greeter's greeting"#,
            Self::welcome,
        )
        .command("seen", "lists the plugins seen activating", Self::list_seen)
        .on_event("plugin:activated", Self::activated);
    }
}

export_plugin!(Welcome);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welcome_follows_the_greeting() {
        assert_eq!(
            welcome_message("Hello, Ada!"),
            "Hello, Ada! Welcome aboard."
        );
    }

    #[test]
    fn lifecycle_json_decodes() -> PluginResult<()> {
        let data = Payload::from_json_str(r#"{"plugin":"greeter","version":"0.1.0"}"#)?;
        assert_eq!(data.decode::<Lifecycle>()?.plugin, "greeter");
        Ok(())
    }

    #[test]
    fn activations_are_bounded_and_in_order() {
        let mut welcome = Welcome::default();
        for i in 0..SEEN_CAPACITY + 2 {
            welcome.record_activation(format!("p{i}"));
        }
        let seen = welcome.seen().activated;
        assert_eq!(seen.len(), SEEN_CAPACITY);
        assert_eq!(seen.first().map(String::as_str), Some("p2"));
        assert_eq!(seen.last(), Some(&format!("p{}", SEEN_CAPACITY + 1)));
    }

    #[test]
    fn manifest_declares_dependency_and_capabilities() {
        let m = plugin_api::manifest_of::<Welcome>();
        assert_eq!(m.version, "0.1.0");
        assert_eq!(m.dependencies[0].name, "greeter");
        assert_eq!(m.dependencies[0].requirement, "^0.1");
        let caps = m.declared_capabilities();
        assert!(caps.contains(&"call:greeter:*".to_owned()));
        assert!(caps.contains(&"subscribe:plugin:activated".to_owned()));
    }
}
