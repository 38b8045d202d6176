//! The stable-ABI contract between a native plugin host and its plugins.
//!
//! Plugins are `cdylib` crates that implement [`Plugin`] and call [`export_plugin!`] once. The
//! host (the `loader` crate) loads each library, reads its [`Manifest`] before activation, and
//! hands the plugin a [`Context`]: a vtable through which the plugin emits and subscribes to
//! events, runs commands, sends messages, makes RPC calls, runs hooks, calls providers, reads
//! and writes storage, reads its configuration and logs.
//!
//! Only types from this crate cross the boundary: `#[repr(C)]` + [`abi_stable::StableAbi`]
//! structs, R-types, and data as [`Payload`] bytes tagged with their [`Codec`]. Every entry
//! point into plugin code runs inside a `catch_unwind` fence, so a panic comes back to the host
//! as an [`ErrorKind::Panicked`] error instead of aborting it.
//!
//! # A complete plugin
//!
//! ```
//! use plugin_api::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Greet { name: String }
//! #[derive(Serialize)]
//! struct Greeting { message: String }
//!
//! #[derive(Default)]
//! struct Greeter;
//!
//! impl Greeter {
//!     fn greet(&mut self, ctx: &Context, Greet { name }: Greet) -> PluginResult<Greeting> {
//!         ctx.emit("greeter:greeted", &name)?;
//!         Ok(Greeting { message: format!("Hello, {name}!") })
//!     }
//! }
//!
//! impl Plugin for Greeter {
//!     fn manifest() -> Manifest {
//!         Manifest::new("greeter").emits("greeter:greeted")
//!     }
//!
//!     // Each command named once, with its help and its handler (see `Registrar`).
//!     fn register(api: &mut Registrar<Self>) {
//!         api.command("greet", r#"greets {"name": ...}"#, Self::greet);
//!     }
//! }
//!
//! export_plugin!(Greeter);
//! # fn main() {}
//! ```
//!
//! The smallest plugin, as in the README, registers a closure:
//!
//! ```
//! use plugin_api::prelude::*;
//!
//! #[derive(Default)]
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn manifest() -> Manifest { Manifest::new("hello") }
//!     fn register(api: &mut Registrar<Self>) {
//!         api.command("hi", "greets a name", |_, _, name: String| Ok(format!("hello, {name}")));
//!     }
//! }
//! export_plugin!(Hello);
//! # fn main() {}
//! ```
//!
//! Overriding [`Plugin::handle_command`] and the other string-based methods instead still works
//! (it is how plugins built against 1.0 are written); they serve whatever is not registered.
//!
//! # What a plugin crate depends on
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib", "rlib"]   # cdylib: the plugin file; rlib: unit tests in process
//!
//! [dependencies]
//! plugin-api = { path = "../plugin-api" }
//! serde = { version = "1", features = ["derive"] }   # argument and answer types
//! log = "0.4"                                         # optional: or use plugin_api::log
//!
//! [dev-dependencies]
//! loader = { path = "../loader", features = ["testing"] }   # the test harness
//! ```
//!
//! `serde` is a dependency of the plugin's own, not re-exported: its derive macros name the
//! `serde` crate, so a type that derives `Serialize` needs `serde` among the plugin's
//! dependencies anyway. `log` is re-exported as [`plugin_api::log`](crate::log): a plugin may
//! use it, or depend on `log` 0.4 itself (cargo then links one copy of it, the one whose
//! records [`export_plugin!`] forwards to the host).
//!
//! # Testing a plugin
//! The `loader` crate's feature `testing` has [`loader::testing::Harness`](../loader/testing/struct.Harness.html):
//! it runs one plugin compiled into the test binary (`static_plugin!(MyPlugin)`) in a real
//! in-process host, where a test calls its commands, emits events to it, and reads what it
//! emitted and stored. The example plugins' `tests/harness.rs` use it.
//!
//! # Registration at run time (added in 1.1)
//! Besides what [`Plugin::register`] and the manifest declare, a plugin may add commands, hooks
//! and providers while it runs, within name patterns its manifest declares
//! ([`Manifest::commands_matching`], [`Manifest::hooks_matching`],
//! [`Manifest::providers_matching`]). [`Context::register_command`],
//! [`Context::register_hook`] and [`Context::register_provider`] return a [`Registration`]:
//! dropping it, or calling [`Registration::dispose`], unregisters. The handlers run on the
//! plugin's thread like every other handler; they reach plugin state through what the closure
//! captures.
//!
//! - A name outside the patterns is refused (permission denied, naming the plugin, the name
//!   and the patterns), and so is a name the manifest declares itself, or one already
//!   registered. A provider follows the rules of declared providers: the higher priority
//!   serves, an equal priority to another plugin's is refused naming both.
//! - Everything an instance registered ends with it: deactivation removes it all, and a
//!   reloaded or restarted plugin's new instance starts with none (it registers again, in
//!   `activate` typically). Handles the plugin still holds then unregister nothing.
//! - `describe` lists the registrations in force with the pattern that allows each.
//!
//! ```
//! use plugin_api::prelude::*;
//!
//! #[derive(Default)]
//! struct Endpoints { registered: Vec<Registration> }
//!
//! impl Plugin for Endpoints {
//!     fn manifest() -> Manifest { Manifest::new("endpoints").commands_matching("ping-*") }
//!     fn activate(&mut self, ctx: &Context) -> PluginResult<()> {
//!         for host in ["eu", "us"] {
//!             let answer = format!("pong from {host}");
//!             self.registered.push(ctx.register_command(
//!                 &format!("ping-{host}"),
//!                 "answers pong",
//!                 move |_, _: NoArgs| Ok(answer.clone()),
//!             )?);
//!         }
//!         Ok(())
//!     }
//! }
//! export_plugin!(Endpoints);
//! # fn main() {}
//! ```
//!
//! # Names and keys
//! - **Plugin names** (from [`Manifest::new`]) are 1 to 64 characters of `a-z`, `0-9`, `-`
//!   and `_`; `host` and `plugin` are reserved. A name is the plugin's command namespace
//!   (`<name>:<command>`) and its storage scope. The host refuses any other name at load,
//!   naming the file.
//! - **Command names** are short names without the `<plugin>:` prefix; a command registered at
//!   run time is not empty and has no whitespace.
//! - **Storage keys** are 1 to 512 bytes of UTF-8 with no control character (no NUL, newline,
//!   tab or escape). Any other character is allowed, `:` and `/` included, so `note:42` and
//!   `cache/eu/1` are keys. A bad key is refused with
//!   [`ErrorKind::InvalidInput`] naming the key (shortened to 64 characters).
//!
//! # Lifecycle events
//! The host publishes a `plugin:*` event when something happens to a plugin; only the host may
//! emit `plugin:*`, so a plugin that subscribes (`Manifest::subscribes("plugin:*")`) can trust
//! them. The payload is JSON: an object whose `kind` names the event, with these fields:
//!
//! | event type | `kind` | fields |
//! |---|---|---|
//! | `plugin:loaded` | `loaded` | `plugin`, `version`, `file` (the plugin file; `null` for a plugin compiled into the host) |
//! | `plugin:activated` | `activated` | `plugin`, `version` |
//! | `plugin:deactivated` | `deactivated` | `plugin`, `version`, `reason`: `requested`, `shutdown`, `quarantined`, `dependency <name> deactivated`, `its file <path> was removed`, `its file now holds another plugin` |
//! | `plugin:reloaded` | `reloaded` | `plugin`, `version` (the new one), `old_version`, `new_version` |
//! | `plugin:restarted` | `restarted` | `plugin`, `version`, `reason` (the fault) |
//! | `plugin:quarantined` | `quarantined` | `plugin`, `version`, `reason` (the last fault), `max_restarts`, `window_ms` |
//! | `plugin:error` | `error` | `plugin`, `version` (or `null` when unknown), `error` (what failed, with its causes) |
//!
//! ```
//! # use plugin_api::{Event, PluginResult};
//! #[derive(serde::Deserialize)]
//! struct Lifecycle { kind: String, plugin: String }
//! fn on_lifecycle(event: &Event) -> PluginResult<()> {
//!     let what: Lifecycle = event.data.decode()?;
//!     plugin_api::log::info!("{} {}", what.plugin, what.kind);
//!     Ok(())
//! }
//! ```
//!
//! The host application reads them typed with `loader::LifecycleEvent::from_event`.
//! # Who is calling, cancellation and timers (added in 1.1)
//!
//! During a handler, [`Context::caller`] says who made the call (a plugin's name, or `host`)
//! and its id (the id of its record in the host's trace). The host stamps both; a plugin cannot
//! set them. [`Context::is_cancelled`] turns true when the caller stopped waiting (its deadline
//! passed, or the call it came from was cancelled) or the plugin is being deactivated: a long
//! handler checks it and returns early. [`Context::cancellation`] hands out the same as a
//! [`CancellationToken`] for other threads. What a cancelled handler returns is dropped, and
//! not counted against the plugin as a late reply.
//!
//! [`Context::every`] and [`Context::after`] start a host timer that delivers a private event to
//! the plugin's own `on_event`, on its own thread; the returned [`Timer`] stops it when dropped,
//! and every timer stops when the plugin is deactivated.
//!
//! ```
//! use std::time::Duration;
//! use plugin_api::{prelude::*, Timer};
//!
//! #[derive(Default)]
//! struct Poller { timer: Option<Timer>, polls: u64 }
//!
//! impl Plugin for Poller {
//!     fn manifest() -> Manifest { Manifest::new("poller") }
//!     fn register(api: &mut Registrar<Self>) {
//!         api.command("crunch", "works until done or cancelled", |_, ctx, NoArgs| {
//!             let mut steps = 0u64;
//!             while steps < 1_000 && !ctx.is_cancelled() {
//!                 steps += 1;
//!             }
//!             Ok(steps)
//!         });
//!     }
//!     fn activate(&mut self, ctx: &Context) -> PluginResult<()> {
//!         self.timer = Some(ctx.every(Duration::from_secs(30), "poll")?);
//!         Ok(())
//!     }
//!     fn on_event(&mut self, ctx: &Context, event: &Event) -> PluginResult<Option<Payload>> {
//!         if event.event_type.as_str() == "poll" {
//!             self.polls += 1;
//!             log::debug!("poll #{} (from {:?})", self.polls, ctx.caller().map(|c| c.id()));
//!         }
//!         Ok(None)
//!     }
//! }
//! export_plugin!(Poller);
//! # fn main() {}
//! ```
//!
//! A plugin built against 1.1 refuses a host of 1.0 when it is instantiated, naming both
//! versions; a plugin built against 1.0 works in a host of 1.1 (see [`abi`]).
//!
//! # Capabilities
//! A plugin declares in its manifest what it uses; the host refuses anything else with a
//! permission-denied error naming the capability:
//!
//! | capability | grants |
//! |---|---|
//! | `emit:<pattern>` (from [`Manifest::emits`]) | emitting matching event types |
//! | `subscribe:<pattern>` (from [`Manifest::subscribes`]) | subscribing to the pattern |
//! | `call:<pattern>` ([`Manifest::calls`]) | executing matching commands |
//! | `message:<plugin>` ([`Manifest::messages`]) | direct messages, request-reply and RPC to that plugin |
//! | `hook:run:<name>` ([`Manifest::runs_hook`]) | running a hook |
//! | `provider:<name>` ([`Manifest::uses_provider`]) | calling a provider |
//! | `storage:shared:read`, `storage:shared:write` | the shared namespace |
//! | `database` | scans and atomic batches |
//! | `middleware` (from [`Manifest::middleware`]) | wrapping command execution |
//!
//! | `*` | every capability above: a plugin that declares it may do anything a plugin can |
//!
//! A plugin's own storage namespace, its configuration and logging need no capability.
//! Patterns accept a trailing `*` (`call:greeter:*`, `emit:data:*`, `*`). [`Capability`] is the
//! typed form, with `Display` and `FromStr` for the strings above; the host refuses a manifest
//! that declares a string of no known form, and a host may refuse `*` altogether.
//!
//! # Logging
//! Plugins use the ordinary `log` macros. The export macro installs a logger in the plugin's
//! copy of `log` that forwards records to the host, which logs them with the plugin's name as
//! target (`RUST_LOG=greeter=debug`).
#![allow(
    unsafe_code,
    reason = "abi_stable's derive, sabi_trait and library-header constructor expand to unsafe code"
)]
#![allow(
    non_local_definitions,
    reason = "#[sabi_trait] expands to impls inside functions"
)]

pub mod abi;
mod call;
mod capability;
mod context;
mod dynamic;
mod error;
mod export;
mod manifest;
mod payload;
mod plugin;
mod register;
mod types;

pub use abi::{HostContext, HostContextBox, PluginInstanceBox, PluginModRef, API_VERSION};
pub use abi_stable::std_types::{RResult, RStr, RString, RVec};
pub use call::{CallStamp, Caller, CancellationToken, Timer};
pub use capability::{Capability, UnknownCapability};
pub use context::{Context, Storage};
pub use dynamic::{ProviderMethods, Registration, RegistrationDecl, RegistrationKind};
pub use error::{ErrorKind, PluginError, PluginResult};
/// The `log` crate the plugin's records are forwarded from (see "What a plugin crate depends
/// on"): `plugin_api::log::info!(...)` needs no dependency of the plugin's own.
pub use log;
pub use manifest::{
    CommandDecl, Dependency, HookDecl, Manifest, MethodDecl, MiddlewareDecl, ProviderDecl,
    RegistrationPatterns,
};
pub use payload::{Codec, Payload, MAX_DECODE_BYTES};
pub use plugin::Plugin;
pub use register::{manifest_of, NoArgs, ProviderRegistrar, Registrar};
pub use types::{
    BatchOp, CollectedReply, CommandRequest, Entry, Event, HookOutcome, Message, MiddlewareAction,
    StorageScope,
};

/// Everything a plugin author needs: `use plugin_api::prelude::*;`.
pub mod prelude {
    pub use crate::{
        export_plugin, CancellationToken, CommandRequest, Context, ErrorKind, Event, HookOutcome,
        Manifest, Message, MiddlewareAction, NoArgs, Payload, Plugin, PluginError, PluginResult,
        ProviderMethods, Registrar, Registration,
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::export::{lib_header, static_root_module, BuildInfo};
    pub use abi_stable::library::LibHeader;
}

#[cfg(test)]
mod tests {
    #[test]
    fn exported_symbol_name_matches_abi_stable() {
        // The export macro spells the symbol out (macro_rules cannot compute an identifier);
        // this keeps it in step with abi_stable.
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }
}
