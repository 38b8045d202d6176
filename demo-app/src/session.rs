//! A host built from flags and config ([`Unloaded`]), then with its plugins folder loaded
//! ([`Session`]).

use std::path::PathBuf;

use loader::{Host, HostConfig, LoadReport};
use plugin_api::ErrorKind;

use crate::{cli::GlobalArgs, error::AppError, progress::Progress, staging};

/// The host with its plugins loaded, and what the load reported.
///
/// Every subcommand works on one; the shell keeps one for its whole run, so plugin state
/// (events seen, counters, subscriptions) carries from one typed command to the next.
pub struct Session {
    /// The host; dropping the session shuts the plugins down.
    pub host: Host,
    /// The report of the initial load, which keeps each failure's full error.
    pub report: LoadReport,
    /// The folder the plugins were loaded from.
    pub plugins_dir: PathBuf,
    /// The data folder, when storage is durable.
    pub data_dir: Option<PathBuf>,
}

/// A host built from the flags and config, with nothing loaded yet: what `doctor` examines
/// the folder with, and what [`Session::open`] loads.
pub struct Unloaded {
    /// The host, no plugin active.
    pub host: Host,
    /// The folder the plugins are (to be) loaded from.
    pub plugins_dir: PathBuf,
    /// The data folder, when storage is durable.
    pub data_dir: Option<PathBuf>,
}

impl Unloaded {
    /// Reads the config file (if any), applies the flags over it and builds the host.
    ///
    /// Without `--plugins` or a `plugins_dir` in the config, the folder is `plugins/` beside the
    /// executable, and the example plugins are staged into it first.
    ///
    /// # Errors
    /// The config file cannot be read or parsed, or the data folder or database cannot be
    /// opened.
    pub fn build(args: &GlobalArgs) -> Result<Unloaded, AppError> {
        let mut config = match &args.config {
            Some(file) => HostConfig::from_file(file).map_err(|e| AppError::from_error(&e))?,
            None => HostConfig::default(),
        };
        if let Some(dir) = &args.plugins {
            config.plugins_dir = Some(dir.clone());
        }
        if let Some(dir) = &args.data {
            config.data_dir = Some(dir.clone());
        }
        for plugin in &args.isolate {
            if plugin == "all" {
                config.isolation = loader::Isolation::Process;
            } else {
                config.plugins.entry(plugin.clone()).or_default().isolation =
                    Some(loader::Isolation::Process);
            }
        }
        let plugins_dir = match &config.plugins_dir {
            // A folder the user named is theirs: never write into it.
            Some(dir) => dir.clone(),
            None => {
                let dir = staging::default_plugins_dir()?;
                staging::stage_examples(&dir).map_err(|e| {
                    AppError::failed(
                        ErrorKind::Failed,
                        format!("cannot stage example plugins into {}: {e}", dir.display()),
                    )
                })?;
                dir
            }
        };
        config.plugins_dir = Some(plugins_dir.clone());
        let data_dir = config.data_dir.clone();
        // Without a data folder the builder keeps storage in memory, for this process only.
        let host = Host::builder()
            .config(config)
            .build()
            .map_err(|e| AppError::from_error(&e))?;
        Ok(Unloaded {
            host,
            plugins_dir,
            data_dir,
        })
    }

    /// Loads and activates the plugins folder.
    ///
    /// # Errors
    /// The plugins folder cannot be listed. Plugins that fail to load are not errors here:
    /// they are in [`Session::report`] and in `host.plugins()`.
    pub fn load(self) -> Result<Session, AppError> {
        // 0 when the folder cannot be listed: the load reports that properly.
        let count = loader::discover(&self.plugins_dir).map_or(0, |files| files.len());
        let progress = Progress::show(&format!(
            "loading {count} plugin{}…",
            if count == 1 { "" } else { "s" }
        ));
        let report = self.host.load_dir().map_err(|e| AppError::from_error(&e));
        drop(progress);
        let report = report?;
        for entry in report.entries.iter().filter(|e| e.error.is_none()) {
            log::debug!(
                "loaded {} from {}",
                entry.plugin.as_deref().unwrap_or("?"),
                entry.file.display()
            );
        }
        Ok(Session {
            host: self.host,
            report,
            plugins_dir: self.plugins_dir,
            data_dir: self.data_dir,
        })
    }
}

impl Session {
    /// Builds the host ([`Unloaded::build`]) and loads the plugins folder ([`Unloaded::load`]).
    ///
    /// # Errors
    /// The config file cannot be read or parsed, the data folder or database cannot be opened,
    /// or the plugins folder cannot be listed. Plugins that fail to load are not errors here:
    /// they are in [`Session::report`] and in `host.plugins()`.
    pub fn open(args: &GlobalArgs) -> Result<Session, AppError> {
        Unloaded::build(args)?.load()
    }

    /// Names of the plugins that are serving, sorted.
    pub fn active_plugin_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .host
            .plugins()
            .into_iter()
            .filter(|p| p.state.is_serving())
            .map(|p| p.name)
            .collect();
        names.sort();
        names
    }
}
