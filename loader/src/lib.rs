//! Loads native plugins (cdylib files) from a folder and dispatches their events, commands,
//! messages, RPC, hooks, middleware and provider calls between them and the application.
//!
//! # Hello, plugin
//! A plugin is a type that implements [`plugin_api::Plugin`]; shipped as a library it ends with
//! `export_plugin!(Type)`. The same type can be compiled into the application with
//! `static_plugin!`, which is what these examples do so that they run as they are:
//!
//! ```
//! use loader::Host;
//! use plugin_api::prelude::*;
//!
//! #[derive(Default)]
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn manifest() -> Manifest {
//!         Manifest::new("hello").command_with_help("greet", "says hello")
//!     }
//!     fn handle_command(&mut self, _: &Context, command: &str, args: &Payload) -> PluginResult<Payload> {
//!         match command {
//!             "greet" => args.reply_with(&"hello!"),
//!             other => Err(PluginError::not_found(format!("no command {other}"))),
//!         }
//!     }
//! }
//!
//! let host = Host::builder().in_memory_storage().build()?;
//! host.register_static(plugin_api::static_plugin!(Hello))?;
//! let reply = host.execute("hello:greet", Payload::empty())?;
//! assert_eq!(reply.decode::<String>()?, "hello!");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # A folder of plugins
//! [`Host::load_dir`] loads every candidate file of the plugins folder; one bad file never
//! stops the others, and the report says what happened to each:
//!
//! ```no_run
//! use loader::Host;
//!
//! let host = Host::builder().plugins_dir("plugins").build()?;
//! for entry in host.load_dir()?.entries {
//!     match &entry.error {
//!         None => println!("{} active", entry.plugin.unwrap_or_default()),
//!         Some(error) => eprintln!("{}: {error}", entry.file.display()),
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Events
//! Plugins publish and subscribe through their context; the application does the same through
//! the host. Every `plugin:*` lifecycle event reads back as a [`LifecycleEvent`]:
//!
//! ```
//! use loader::{Host, LifecycleEvent};
//! use plugin_api::prelude::*;
//!
//! #[derive(Default)]
//! struct Quiet;
//! impl Plugin for Quiet {
//!     fn manifest() -> Manifest { Manifest::new("quiet") }
//! }
//!
//! let host = Host::builder().in_memory_storage().build()?;
//! let events = host.subscribe("plugin:*", 16);
//! host.register_static(plugin_api::static_plugin!(Quiet))?;
//! let first = events.receiver().recv()?;
//! assert!(matches!(
//!     LifecycleEvent::from_event(&first),
//!     Some(LifecycleEvent::Loaded { plugin, .. }) if plugin == "quiet"
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How the loader is built
//! The folders follow a plugin from its file to the running host; each depends only on the
//! ones before it:
//! 1. `load`: file → checked library (discovery, checks on the bytes, shadow copy, opening,
//!    abi_stable's checks, the manifest). No threads, no host state.
//! 2. `plan`: pure decisions over manifests: admission (which plugins may run, and why not),
//!    dependency order, capabilities.
//! 3. `runtime`: one running instance: its queues, its thread, the wait chain, and `invoke`,
//!    the one function that enters plugin code (with the cycle check, the reply size limit,
//!    metrics, records and the panic fence), over calls and answers that are plain data.
//! 4. `dispatch`: the caller side of every pattern (commands and middleware, events, messages
//!    and RPC, hooks and providers), with capability checks and deadlines.
//! 5. `lifecycle`: activation, deactivation, hot reload and the supervisor's restart policy.
//! 6. `observe`: flight recorder, metrics, dead letters.
//! 7. `context` (what plugins call), `source` (a file, or a module compiled in), `storage`,
//!    `watch`, `doctor`, `wait` (bounded waits that look for another thread's answer briefly
//!    before they sleep), and `host`: the [`Host`] handle itself.
//!
//! # What a load does
//! Each file is checked (regular file, not world-writable) and copied, under a random name, into
//! a shadow folder that must be private to the host's user. The copy's bytes are checked before
//! anything opens it, because opening a library runs its initialisers: this platform's format,
//! complete (no segment cut off), built for this processor, exporting abi_stable's root symbol
//! (a library without it is "not a plugin" and never opened), and in the SHA-256 allowlist when
//! one is configured. The checked copy is then opened with every symbol bound at once (the same
//! path would return the old image; overwriting a mapped file would crash), checked by
//! abi_stable (header, interface version and type layout), refused if built with
//! `panic = "abort"`, and its manifest read within a deadline. Plugins are then checked for
//! duplicate names, host requirements and dependencies, and activated in dependency order, each
//! on its own thread. `SECURITY.md` lists what runs before which check, per platform.
//!
//! # Honest limits
//! Plugins are native code running with the host's rights: the checks and the capability
//! broker guard the API, not the process. Libraries are never unloaded (`dlclose` is unsound
//! for Rust code); a retired plugin stays mapped. A thread stuck in plugin code cannot be
//! killed: it is detached and counted, and its context is retired.
//!
//! # Unsafe code
//! The crate denies `unsafe_code` and allows it in one function only: the one that opens a
//! checked copy and reads its root symbol (`load/open.rs`, `open_image`), whose docs say why
//! each `unsafe` block is sound and what no check can make safe.
#![deny(unsafe_code)]

mod config;
mod context;
mod dispatch;
mod doctor;
mod error;
mod host;
mod isolate;
mod launch;
mod lifecycle;
mod load;
mod observe;
mod plan;
mod runtime;
mod source;
mod storage;
#[cfg(feature = "testing")]
pub mod testing;
mod wait;
mod watch;
pub mod worker;

pub use config::{HostConfig, Isolation, PluginSettings, HOST_VERSION};
pub use dispatch::{CollectedResults, RegistrationInfo, TableSizes};
pub use doctor::{fix_for, DoctorReport, FileDiagnosis, ImageFacts, Problem};
pub use error::{BuildError, ConfigError, LoadError, StorageError};
pub use host::{Host, HostBuilder, PluginInfo, Subscription};
pub use lifecycle::reload::FileChange;
pub use lifecycle::{LifecycleEvent, LoadEntry, LoadReport};
pub use load::discover::{discover, is_candidate, library_file_name};
pub use load::image::{check_image, ImageProblem, ROOT_SYMBOL};
pub use load::library::{load_library, load_library_with, LoadOptions, PluginLibrary};
pub use load::manifest::{
    detached_manifest_readers, manifest_readers_started, DEFAULT_MANIFEST_DEADLINE,
};
pub use load::preflight::{
    check_permissions, fingerprint, preflight, read_checked, sha256_hex, Preflight,
};
pub use load::progress::{LoadProgress, LoadStage};
pub use load::shadow::{
    ensure_private as ensure_private_shadow_dir, remove_leftover_copies, remove_stale, ShadowDir,
    SHADOW_PREFIX,
};
pub use observe::deadletter::DeadLetter;
pub use observe::metrics::PluginMetrics;
pub use observe::recorder::{render_tree, RecordKind, TraceOutcome, TraceRecord};
pub use plan::capability::matches as pattern_matches;
pub use runtime::slot::PluginState;
pub use runtime::timer::TimerInfo;
pub use source::PluginSource;
pub use storage::{Namespace, Store};
pub use watch::{ChangeCallback, FolderWatcher, WatchError};
