//! How plugins enter and leave the host: activation, deactivation, hot reload, and the
//! supervisor that restarts or quarantines a faulting plugin.
//!
//! 1. [`activate`]: loading files and compiled-in modules, admission, activation.
//! 2. [`deactivate`]: stopping a plugin (dependents first) and shutdown.
//! 3. [`reload`]: the swap protocol for a changed file.
//! 4. [`supervisor`]: the restart policy (plain state) and the thread that applies it.
//! 5. [`registry`]: what the host knows about each plugin and each failed file.
//! 6. [`open`]: a file opened in the host, or (for a plugin that may run isolated) read by a
//!    worker process first.
//!
//! Every change of what runs happens under one [`Turn`]: the lock is a value the operations
//! take as a parameter, so an operation that needs it cannot be called without it.

mod activate;
mod deactivate;
mod open;
pub(crate) mod registry;
pub(crate) mod reload;
pub(crate) mod supervisor;

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::{atomic::AtomicU64, Arc},
};

use abi_stable::sabi_trait::TD_Opaque;
use crossbeam_channel::Sender;
use parking_lot::{Mutex, MutexGuard, RwLock};
use plugin_api::{abi::HostContext_TO, HostContextBox, Payload};

pub use self::activate::{LoadEntry, LoadReport};
use self::registry::Registry;
pub use crate::observe::event::LifecycleEvent;
use crate::{
    config::HostConfig,
    context::PluginContext,
    dispatch::{Caller, Dispatcher},
    isolate::{wire::Start, Children, Spec},
    load::{library::PluginLibrary, progress::ProgressHook},
    runtime::slot::{Fault, Fresh, MakeRemote, Seal, Slot},
};

/// The right to change what runs. Only [`Lifecycle::turn`] makes one, and only one exists at a
/// time; it is never held while dispatching.
pub(crate) struct Turn<'a>(#[allow(dead_code, reason = "held for its guard")] MutexGuard<'a, ()>);

/// Activation, deactivation, reload and restarts.
pub(crate) struct Lifecycle {
    config: Arc<HostConfig>,
    dispatcher: Arc<Dispatcher>,
    registry: RwLock<Registry>,
    serial: Mutex<()>,
    faults: Sender<Fault>,
    detached: Arc<AtomicU64>,
    host_version: semver::Version,
    shadow_dir: PathBuf,
    allowlist: Option<HashSet<String>>,
    /// The child processes of isolated plugins.
    children: Arc<Children>,
    /// The application's progress callback ([`crate::HostBuilder::on_progress`]).
    progress: ProgressHook,
}

impl Lifecycle {
    /// A lifecycle for `dispatcher`'s plugins, with the supervisor's fault channel.
    pub fn new(
        config: Arc<HostConfig>,
        dispatcher: Arc<Dispatcher>,
        shadow_dir: PathBuf,
        faults: Sender<Fault>,
        progress: ProgressHook,
    ) -> Arc<Lifecycle> {
        let host_version =
            semver::Version::parse(crate::HOST_VERSION).unwrap_or(semver::Version::new(0, 0, 0));
        Arc::new(Lifecycle {
            allowlist: config.allowlist_set(),
            children: Children::new(config.worker_program.clone(), &dispatcher),
            config,
            dispatcher,
            registry: RwLock::new(Registry::default()),
            serial: Mutex::new(()),
            faults,
            detached: Arc::new(AtomicU64::new(0)),
            host_version,
            shadow_dir,
            progress,
        })
    }

    /// Waits for the right to change what runs.
    pub fn turn(&self) -> Turn<'_> {
        Turn(self.serial.lock())
    }

    /// What the host knows about its plugins (read it briefly: lifecycle operations write it).
    pub fn registry(&self) -> &RwLock<Registry> {
        &self.registry
    }

    pub fn shadow_dir(&self) -> &std::path::Path {
        &self.shadow_dir
    }

    /// The application's progress callback.
    pub fn progress(&self) -> &ProgressHook {
        &self.progress
    }

    /// Plugin threads left behind in plugin code.
    pub fn detached(&self) -> u64 {
        self.detached.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The context for a new instance of `name`, retired through `seal`.
    ///
    /// `owner` is the slot and manifest of the instance, if it has them: a context without
    /// them cannot register anything at run time.
    pub(crate) fn context_for(
        &self,
        name: &str,
        granted: &Arc<[String]>,
        seal: &Seal,
        owner: Option<(&Arc<Slot>, &plugin_api::Manifest)>,
    ) -> HostContextBox {
        let settings = self.config.plugin(name);
        let config = Payload::json(&settings.config_json()).unwrap_or_default();
        HostContext_TO::from_value(
            PluginContext {
                dispatcher: Arc::downgrade(&self.dispatcher),
                name: Arc::from(name),
                granted: granted.clone(),
                config,
                seal: seal.clone(),
                owner: owner.map(|(slot, manifest)| crate::context::Owner {
                    slot: Arc::downgrade(slot),
                    manifest: Arc::new(manifest.clone()),
                }),
            },
            TD_Opaque,
        )
    }

    /// What a new instance of `lib` is made from, for `slot`: its context, sealed by `seal`,
    /// and, when the plugin is isolated, what its child process needs.
    pub(crate) fn fresh(
        &self,
        lib: &PluginLibrary,
        granted: &Arc<[String]>,
        seal: &Seal,
        slot: &Arc<Slot>,
    ) -> Fresh {
        let name = &lib.manifest.name;
        let context = self.context_for(name, granted, seal, Some((slot, &lib.manifest)));
        // A compiled-in module has no file for a child process to open: it runs in process.
        let isolated = self.config.isolation_of(name) == crate::Isolation::Process;
        let remote = lib.source.file().filter(|_| isolated).map(|file| {
            let settings = self.config.plugin(name);
            Spec {
                start: Start {
                    plugin: name.clone(),
                    file: file.to_owned(),
                    fingerprint: lib.fingerprint.clone(),
                    config: Payload::json(&settings.config_json()).unwrap_or_default(),
                    log_level: log::max_level() as u8,
                    memory_limit_mb: settings.memory_limit_mb,
                    manifest_deadline_ms: self.config.activation_timeout_ms,
                },
                version: lib.manifest.version.clone(),
                activation_deadline: self.activation_deadline(),
                grace: self.grace(),
                frame_limit: self.config.max_payload_bytes.saturating_mul(2) + (1 << 20),
                slot: Arc::downgrade(slot),
                children: self.children.clone(),
            }
        });
        Fresh {
            module: lib.module,
            context,
            seal: seal.clone(),
            remote: remote.map(|spec| -> MakeRemote {
                Box::new(move |context| crate::isolate::instantiate(spec, context))
            }),
        }
    }

    /// The child processes of isolated plugins.
    pub fn children(&self) -> &Children {
        &self.children
    }

    /// Publishes a lifecycle event from the host.
    fn announce(&self, event: LifecycleEvent) {
        let _ = self
            .dispatcher
            .emit(&Caller::host(), event.event_type(), event.payload());
    }

    /// The version of plugin `name`, if the host knows it.
    fn version_of(&self, name: &str) -> Option<String> {
        self.registry
            .read()
            .get(name)
            .map(|e| e.version().to_string())
    }
}

pub(crate) use crate::error::error_chain;
