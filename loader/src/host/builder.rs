//! [`HostBuilder`]: a host's configuration, and the order in which its parts are made (the
//! shadow folder, the store, the dispatcher, the lifecycle, the supervisor).

use std::{path::PathBuf, sync::Arc};

use super::{Host, HostInner};
use crate::{
    config::HostConfig,
    dispatch::Dispatcher,
    error::BuildError,
    lifecycle::{supervisor, Lifecycle},
    load::progress::{LoadProgress, ProgressHook},
    storage::Store,
};

/// Builds a [`Host`].
#[derive(Debug, Default)]
pub struct HostBuilder {
    config: HostConfig,
    in_memory: bool,
    progress: ProgressHook,
}

impl HostBuilder {
    /// Uses `config` (plugin folder, data folder, deadlines, queue bounds, per-plugin settings).
    pub fn config(mut self, config: HostConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the plugins folder.
    pub fn plugins_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.plugins_dir = Some(dir.into());
        self
    }

    /// Sets the data folder (database and shadow copies).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.data_dir = Some(dir.into());
        self
    }

    /// Calls `callback` as a load goes on, for a progress bar: before each file of a load is
    /// taken up, before each plugin is activated, before each file [`Host::diagnose`]
    /// examines, and once at the end of each of these stages ([`LoadProgress`]). It is called
    /// for every load the host makes, the watcher's included.
    ///
    /// The callback runs on the loading thread while the host holds its lifecycle lock: keep it
    /// short (update a counter, redraw a line) and do not call the host from it, or the load
    /// waits for itself.
    ///
    /// ```
    /// use std::sync::{atomic::{AtomicUsize, Ordering}, Arc};
    /// use loader::{Host, LoadStage};
    ///
    /// let files = Arc::new(AtomicUsize::new(0));
    /// let seen = files.clone();
    /// let host = Host::builder()
    ///     .in_memory_storage()
    ///     .on_progress(move |p| {
    ///         if p.stage == LoadStage::Loading {
    ///             seen.store(p.total, Ordering::Relaxed);
    ///         }
    ///     })
    ///     .build()?;
    /// host.load_files(&[]);
    /// assert_eq!(files.load(Ordering::Relaxed), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_progress(mut self, callback: impl Fn(LoadProgress) + Send + Sync + 'static) -> Self {
        self.progress = ProgressHook::new(callback);
        self
    }

    /// Keeps storage in memory instead of a database file (for tests).
    pub fn in_memory_storage(mut self) -> Self {
        self.in_memory = true;
        self
    }

    /// Runs plugin `plugin` in a child process of its own (process isolation), whatever the
    /// host-wide default is.
    pub fn isolate(mut self, plugin: &str) -> Self {
        self.config
            .plugins
            .entry(plugin.to_owned())
            .or_default()
            .isolation = Some(crate::Isolation::Process);
        self
    }

    /// Where plugins run unless their own settings say otherwise ([`HostConfig::isolation`]):
    /// `Isolation::Process` isolates every plugin.
    pub fn isolation(mut self, default: crate::Isolation) -> Self {
        self.config.isolation = default;
        self
    }

    /// The program started for worker processes (isolated plugins, [`Host::diagnose`]'s
    /// manifest reader; [`HostConfig::worker_program`]) instead of this executable. The program
    /// must call [`run_if_worker`](crate::worker::run_if_worker) first in `main`; name one when
    /// this executable does not (a test binary, say).
    pub fn worker_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.config.worker_program = Some(program.into());
        self
    }

    /// Changes the configuration in place.
    pub fn configure(mut self, f: impl FnOnce(&mut HostConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Creates the host; no plugin is loaded yet.
    ///
    /// # Errors
    /// The data folder, the private folder for shadow copies or the database cannot be created
    /// or opened.
    pub fn build(self) -> Result<Host, BuildError> {
        // Shadow copies go into a folder private to this user: a random one under the
        // temporary folder, or the data folder's `shadow/`, which every load checks (and refuses
        // if someone else owns it or can write to it).
        let (data_dir, (shadow_dir, shadow)) = match &self.config.data_dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|source| BuildError::DataDir {
                    path: d.clone(),
                    source,
                })?;
                let shadow = d.join("shadow");
                // Copies earlier runs could not delete (Windows keeps mapped files) go now. A
                // folder that is not private is refused here and by every load, naming it.
                #[cfg(windows)]
                if let Err(e) = crate::load::shadow::ShadowDir::at(&shadow) {
                    log::warn!("{e}");
                }
                (Some(d.clone()), (shadow, None))
            }
            None => {
                // Copies a host could not delete (Windows keeps mapped files) go once their
                // process is gone.
                crate::load::shadow::remove_stale(&std::env::temp_dir());
                let shadow = crate::load::shadow::ShadowDir::private()
                    .map_err(|e| BuildError::ShadowDir(Box::new(e)))?;
                (None, (shadow.path().to_owned(), Some(shadow)))
            }
        };
        let store = match (&data_dir, self.in_memory) {
            (Some(d), false) => {
                Store::open(&d.join("storage.redb"), self.config.storage_quota_bytes)?
            }
            _ => Store::in_memory(self.config.storage_quota_bytes)?,
        };
        let config = Arc::new(self.config);
        let (faults_tx, faults_rx) = crossbeam_channel::unbounded();
        let dispatcher = Arc::new(Dispatcher::new(config.clone(), store));
        let lifecycle = Lifecycle::new(
            config,
            dispatcher.clone(),
            shadow_dir,
            faults_tx,
            self.progress,
        );
        let supervisor = supervisor::start(&lifecycle, faults_rx);
        Ok(Host {
            inner: Arc::new(HostInner {
                dispatcher,
                lifecycle,
                _supervisor: supervisor,
                shadow: parking_lot::Mutex::new(shadow),
            }),
        })
    }
}
