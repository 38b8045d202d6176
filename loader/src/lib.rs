//! Loads native plugins (cdylib files) from a folder and dispatches their events, commands,
//! messages, RPC, hooks, middleware and provider calls.
//!
//! ```no_run
//! use loader::Host;
//! use plugin_api::Payload;
//!
//! let host = Host::builder().plugins_dir("target/debug").build()?;
//! let report = host.load_dir()?;
//! for entry in &report.entries {
//!     if let Some(error) = &entry.error {
//!         eprintln!("{}: {error}", entry.file.display());
//!     }
//! }
//! let args = Payload::from_json_str(r#"{"name":"Ada"}"#)?;
//! let reply = host.execute("greeter:greet", args)?;
//! println!("{}", reply.to_json_string()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
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
//! killed: it is detached and counted.
//!
//! # Unsafe code
//! The crate denies `unsafe_code` and allows it in one function only: the one that opens a
//! checked copy and reads its root symbol (`load/open.rs`, `open_image`), whose docs say why
//! each `unsafe` block is sound and what no check can make safe.
#![deny(unsafe_code)]

#[cfg(feature = "bench")]
pub mod bench;
mod config;
mod context;
mod dispatch;
mod doctor;
mod error;
mod host;
mod lifecycle;
mod load;
mod observe;
mod plan;
mod runtime;
mod storage;
#[cfg(feature = "testing")]
pub mod testing;
mod watch;

pub use config::{HostConfig, PluginSettings};
pub use dispatch::CollectedResults;
pub use doctor::{fix_for, DoctorReport, FileDiagnosis, Problem};
pub use error::{ConfigError, LoadError, StorageError};
pub use host::{Host, HostBuilder, LoadEntry, LoadReport, PluginInfo, Subscription, HOST_VERSION};
pub use lifecycle::reload::FileChange;
pub use load::discover::{discover, is_candidate, library_file_name};
pub use load::image::{check_image, ImageProblem, ROOT_SYMBOL};
pub use load::library::{load_library, load_library_with, LoadOptions, PluginLibrary};
pub use load::manifest::{
    detached_manifest_readers, manifest_readers_started, DEFAULT_MANIFEST_DEADLINE,
};
pub use load::preflight::{
    check_permissions, fingerprint, preflight, read_checked, sha256_hex, Preflight,
};
pub use load::shadow::{
    ensure_private as ensure_private_shadow_dir, remove_leftover_copies, remove_stale, ShadowDir,
    SHADOW_PREFIX,
};
pub use observe::deadletter::DeadLetter;
pub use observe::metrics::PluginMetrics;
pub use observe::recorder::{render_tree, RecordKind, TraceRecord};
pub use plan::capability::matches as pattern_matches;
pub use runtime::slot::PluginState;
pub use storage::{Namespace, Store};
pub use watch::{ChangeCallback, FolderWatcher, WatchError};
