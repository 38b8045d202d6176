//! An in-process test harness for plugin authors (feature `testing`): a real [`Host`] with
//! in-memory storage running one plugin compiled into the test binary.
//!
//! ```
//! use loader::testing::Harness;
//! use plugin_api::prelude::*;
//!
//! #[derive(Default)]
//! struct Shout;
//! impl Plugin for Shout {
//!     fn manifest() -> Manifest { Manifest::new("shout").command("shout").emits("shout:done") }
//!     fn handle_command(&mut self, ctx: &Context, _: &str, args: &Payload) -> PluginResult<Payload> {
//!         let text: String = args.decode()?;
//!         ctx.storage().set("last", &text)?;
//!         ctx.emit("shout:done", &text)?;
//!         args.reply_with(&text.to_uppercase())
//!     }
//! }
//!
//! let harness = Harness::new(plugin_api::static_plugin!(Shout)).unwrap();
//! let loud: String = harness.execute("shout", &"hi").unwrap();
//! assert_eq!(loud, "HI");
//! assert_eq!(harness.stored::<String>("last").unwrap().as_deref(), Some("hi"));
//! let event = harness.wait_for_event("shout:done").unwrap();
//! assert_eq!(event.source.as_str(), "shout");
//! ```

use std::{sync::Arc, time::Duration};

use parking_lot::Mutex;
use plugin_api::{Event, Payload, PluginModRef, PluginResult};
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    config::HostConfig,
    error::{BuildError, LoadError},
    host::Host,
    storage::Namespace,
    Subscription,
};

/// Why a [`Harness`] could not start its plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// The host could not be built.
    #[error("the test host could not be built")]
    Build(#[from] BuildError),
    /// The plugin did not become active.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// A host running one plugin, recording every event on the bus.
pub struct Harness {
    host: Host,
    plugin: String,
    events: Subscription,
    seen: Mutex<Vec<Arc<Event>>>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

impl Harness {
    /// Starts a host with in-memory storage and activates the plugin (use
    /// `plugin_api::static_plugin!(YourPlugin)`).
    ///
    /// # Errors
    /// Why the host could not be built, or why the plugin did not activate.
    pub fn new(module: PluginModRef) -> Result<Self, HarnessError> {
        Self::with_config(module, |_| {})
    }

    /// As [`Harness::new`], after `configure` changed the host settings.
    ///
    /// # Errors
    /// Why the host could not be built, or why the plugin did not activate.
    pub fn with_config(
        module: PluginModRef,
        configure: impl FnOnce(&mut HostConfig),
    ) -> Result<Self, HarnessError> {
        let host = Host::builder()
            .in_memory_storage()
            .configure(configure)
            .build()?;
        let events = host.subscribe("*", 100_000);
        let plugin = host.register_static(module)?;
        Ok(Harness {
            host,
            plugin,
            events,
            seen: Mutex::new(Vec::new()),
        })
    }

    /// The host, for everything not wrapped here.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Runs the plugin's command `command` (short name) with bincode-encoded `args`.
    ///
    /// # Errors
    /// The command's error.
    pub fn execute<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        command: &str,
        args: &A,
    ) -> PluginResult<R> {
        self.host
            .execute(
                &format!("{}:{command}", self.plugin),
                Payload::encode(args)?,
            )?
            .decode()
    }

    /// Runs a command with JSON arguments, as the CLI would, and returns the JSON answer.
    ///
    /// # Errors
    /// Invalid JSON or the command's error.
    pub fn execute_json(&self, command: &str, json: &str) -> PluginResult<serde_json::Value> {
        let reply = self.host.execute(
            &format!("{}:{command}", self.plugin),
            Payload::from_json_str(json)?,
        )?;
        reply.decode()
    }

    /// Emits an event from the host (bincode data).
    ///
    /// # Errors
    /// Encoding failure.
    pub fn emit<T: Serialize + ?Sized>(&self, event_type: &str, data: &T) -> PluginResult<u64> {
        self.host.emit(event_type, Payload::encode(data)?)
    }

    /// Every event seen on the bus so far (lifecycle events included), oldest first.
    pub fn events(&self) -> Vec<Arc<Event>> {
        let mut seen = self.seen.lock();
        seen.extend(self.events.receiver().try_iter());
        seen.clone()
    }

    /// The events the plugin itself emitted so far.
    pub fn emitted(&self) -> Vec<Arc<Event>> {
        self.events()
            .into_iter()
            .filter(|e| e.source.as_str() == self.plugin)
            .collect()
    }

    /// Waits up to 5 s for an event of `event_type` and returns the first one seen.
    pub fn wait_for_event(&self, event_type: &str) -> Option<Arc<Event>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(e) = self
                .events()
                .into_iter()
                .find(|e| e.event_type.as_str() == event_type)
            {
                return Some(e);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            if let Ok(e) = self.events.receiver().recv_timeout(left) {
                self.seen.lock().push(e);
            }
        }
    }

    /// Reads `key` from the plugin's own storage.
    ///
    /// # Errors
    /// A storage or decoding failure.
    pub fn stored<T: DeserializeOwned>(&self, key: &str) -> PluginResult<Option<T>> {
        let value = self
            .host
            .store()
            .get(&Namespace::Plugin(self.plugin.clone()), key)
            .map_err(|e| {
                plugin_api::PluginError::new(plugin_api::ErrorKind::Storage, e.to_string())
            })?;
        value.map(|v| v.decode()).transpose()
    }
}
