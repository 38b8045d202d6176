//! What the host tells about its plugins: one [`PluginInfo`] per plugin and per failed file.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use plugin_api::Manifest;
use serde::Serialize;

use crate::{
    config::{HostConfig, Isolation},
    error::LoadError,
    isolate::Children,
    lifecycle::{error_chain, registry::Registry},
    observe::metrics::PluginMetrics,
    runtime::slot::PluginState,
};

/// What the host knows about one plugin file: active plugins and failures alike.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    /// Plugin name; for a file whose manifest could not be read, the file name.
    pub name: String,
    /// Plugin version, if known.
    pub version: Option<String>,
    /// Lifecycle state (`disabled` for a plugin the host config switches off).
    pub state: PluginState,
    /// The file it came from; `None` for a plugin compiled into the application
    /// ([`Host::register_static`](crate::Host::register_static)), which has none.
    pub file: Option<PathBuf>,
    /// The last error with its causes, as one line, if any.
    pub error: Option<String>,
    /// The load error itself, with its sources, when the file did not become a plugin.
    #[serde(skip)]
    pub load_error: Option<Arc<LoadError>>,
    /// [`fingerprint`](crate::fingerprint) of the loaded bytes: tells builds apart (none for
    /// compiled-in plugins).
    pub fingerprint: Option<String>,
    /// SHA-256 of the loaded bytes, when the host checks an allowlist (computed only then).
    pub sha256: Option<String>,
    /// The manifest, if it was read.
    pub manifest: Option<Manifest>,
    /// Capabilities declared in the manifest.
    pub declared: Vec<String>,
    /// Capabilities granted after the host config.
    pub granted: Vec<String>,
    /// Counters.
    pub metrics: PluginMetrics,
    /// Where it runs: in the host's process or in a child process of its own.
    pub isolation: Isolation,
    /// The id of its child process, when it runs isolated and the process is alive.
    pub process_id: Option<u32>,
}

/// Fills in where each plugin runs: what the config says (compiled-in plugins always run in
/// process), and the child process that serves it now.
pub(super) fn add_isolation(plugins: &mut [PluginInfo], config: &HostConfig, children: &Children) {
    for info in plugins {
        if info.file.is_some() {
            info.isolation = config.isolation_of(&info.name);
        }
        if info.isolation == Isolation::Process && info.state.is_serving() {
            info.process_id = children.pid_of(&info.name);
        }
    }
}

/// Every plugin and failed file of `registry`.
pub(super) fn plugins(registry: &Registry) -> Vec<PluginInfo> {
    let mut out: Vec<PluginInfo> = registry
        .entries()
        .map(|(name, e)| PluginInfo {
            name: name.clone(),
            version: Some(e.version().to_string()),
            state: e.slot.state(),
            file: e.file().map(Path::to_owned),
            error: e.slot.last_error.lock().clone(),
            load_error: None,
            fingerprint: (!e.library.fingerprint.is_empty()).then(|| e.library.fingerprint.clone()),
            sha256: e.library.sha256.clone(),
            manifest: Some(e.manifest().clone()),
            declared: e.manifest().declared_capabilities(),
            granted: e.granted.to_vec(),
            metrics: e.slot.metrics.snapshot(e.slot.queue_depth()),
            isolation: Isolation::InProcess,
            process_id: None,
        })
        .collect();
    for (file, f) in registry.failures() {
        // A failure superseded by a later successful load of the same file is not shown.
        if registry.entries().any(|(_, e)| e.file() == Some(file)) {
            continue;
        }
        let disabled = matches!(*f.error, LoadError::Disabled { .. });
        out.push(PluginInfo {
            name: f.plugin.clone().unwrap_or_else(|| {
                file.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            }),
            version: f.version.clone(),
            state: if disabled {
                PluginState::Disabled
            } else {
                PluginState::Failed
            },
            file: Some(file.clone()),
            error: Some(error_chain(&*f.error)),
            load_error: Some(f.error.clone()),
            fingerprint: None,
            sha256: None,
            manifest: None,
            declared: Vec::new(),
            granted: Vec::new(),
            metrics: PluginMetrics::default(),
            isolation: Isolation::InProcess,
            process_id: None,
        });
    }
    out
}
