//! A loaded host: settings resolved from flags and config, plugins folder loaded.

use std::path::PathBuf;

use loader::{Host, HostConfig, LoadReport};
use plugin_api::ErrorKind;

use crate::{cli::GlobalArgs, error::AppError, staging};

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

impl Session {
    /// Reads the config file (if any), applies the flags over it, builds the host and loads
    /// the plugins folder.
    ///
    /// Without `--plugins` or a `plugins_dir` in the config, the folder is `plugins/` beside the
    /// executable, and the example plugins are staged into it first.
    ///
    /// # Errors
    /// The config file cannot be read or parsed, the data folder or database cannot be opened,
    /// or the plugins folder cannot be listed. Plugins that fail to load are not errors here:
    /// they are in [`Session::report`] and in `host.plugins()`.
    pub fn open(args: &GlobalArgs) -> Result<Session, AppError> {
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
        let report = host.load_dir().map_err(|e| AppError::from_error(&e))?;
        for entry in report.entries.iter().filter(|e| e.error.is_none()) {
            log::debug!(
                "loaded {} from {}",
                entry.plugin.as_deref().unwrap_or("?"),
                entry.file.display()
            );
        }
        Ok(Session {
            host,
            report,
            plugins_dir,
            data_dir,
        })
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
