//! A host built from flags and config ([`Unloaded`]), then with its plugins folder loaded
//! ([`Session`]).

use std::path::PathBuf;

use loader::{Host, HostConfig, LoadReport};
use plugin_api::ErrorKind;

use crate::{cli::GlobalArgs, error::AppError, progress::Progress, staging, stop};

/// The host with its plugins loaded, and what the load reported.
///
/// Every subcommand works on one; the shell keeps one for its whole run, so plugin state
/// (events seen, counters, subscriptions) carries from one typed command to the next.
pub struct Session {
    /// Shuts the host down on Ctrl-C or SIGTERM. Declared first, so it is dropped before the
    /// host and the host's last clone is this session's.
    _stop: stop::Registration,
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
    /// Shuts the host down on Ctrl-C or SIGTERM (before the host is dropped).
    _stop: stop::Registration,
    /// `--quiet`: no progress bar, no warnings.
    quiet: bool,
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
            Some(dir) => {
                check_plugins_dir(dir, args)?;
                dir.clone()
            }
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
            .on_progress(crate::progress::on_load)
            .build()
            .map_err(|e| AppError::from_error(&e))?;
        Ok(Unloaded {
            _stop: stop::register(&host),
            quiet: args.quiet,
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
        let report = load_with_progress(&self.host, &self.plugins_dir)?;
        // A signal during the load shut the host down: there is nothing left to run on.
        stop::check()?;
        if !self.quiet {
            warn_unknown_plugins(&self.host, &self.plugins_dir);
        }
        for entry in report.entries.iter().filter(|e| e.error.is_none()) {
            log::debug!(
                "loaded {} from {}",
                entry.plugin.as_deref().unwrap_or("?"),
                entry.file.display()
            );
        }
        Ok(Session {
            _stop: self._stop,
            host: self.host,
            report,
            plugins_dir: self.plugins_dir,
            data_dir: self.data_dir,
        })
    }
}

/// Loads the folder; on a terminal with a progress line that the host moves per file and per
/// plugin (`loading 37/100`, then `activating 12/98`).
fn load_with_progress(host: &Host, plugins_dir: &std::path::Path) -> Result<LoadReport, AppError> {
    let _progress = Progress::follow_loads(&format!("loading {}", plugins_dir.display()));
    host.load_dir().map_err(|e| AppError::from_error(&e))
}

/// Warns about each `[plugins.<name>]` table of the config that names no plugin of the folder:
/// its settings apply to nothing, which is most likely a typo.
fn warn_unknown_plugins(host: &Host, plugins_dir: &std::path::Path) {
    let plugins = host.plugins();
    let known: Vec<&str> = plugins.iter().map(|p| p.name.as_str()).collect();
    for name in host.config().unknown_plugins(&known) {
        let hint = strsim_hint(name, &known);
        crate::output::warning(&format!(
            "the host config has [plugins.{name}], but no plugin in {} is named {name}{hint}",
            plugins_dir.display()
        ));
    }
}

/// `" (did you mean greeter?)"` for the known name closest to `name`, if one is close.
fn strsim_hint(name: &str, known: &[&str]) -> String {
    crate::suggest::closest(name, known.iter().copied())
        .map(|best| format!(" (did you mean {best}?)"))
        .unwrap_or_default()
}

/// Refuses a plugins folder that is missing or not a folder, saying that it is the plugins
/// folder and where it was named (the loader's own error names only the path).
fn check_plugins_dir(dir: &std::path::Path, args: &GlobalArgs) -> Result<(), AppError> {
    let named = if args.plugins.is_some() {
        "--plugins".to_owned()
    } else {
        args.config.as_ref().map_or_else(
            || "the config".to_owned(),
            |c| format!("plugins_dir in {}", c.display()),
        )
    };
    let problem = match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => "is not a folder".to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_owned(),
        Err(e) => format!("cannot be read: {e}"),
    };
    Err(AppError::failed(
        ErrorKind::NotFound,
        format!(
            "plugins folder {} {problem} (named by {named})",
            dir.display()
        ),
    ))
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
