//! The host configuration file (TOML).
//!
//! ```toml
//! plugins_dir = "plugins"
//! data_dir = "data"
//! call_timeout_ms = 5000
//! event_queue = 1024
//!
//! [plugins.greeter]
//! enabled = true
//! capabilities = ["emit:greeter:*"]   # grant only these (of what the plugin declares)
//! revoke = []                         # or take some away
//! [plugins.greeter.config]
//! salutation = "Hello"
//!
//! [plugins.untrusted]
//! isolation = "process"               # run it in a child process of its own
//! memory_limit_mb = 256               # and limit that process's address space (Unix)
//! ```

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// The host's own version, which plugins' `host_requirement` is checked against.
pub const HOST_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Host-wide settings, with the defaults a host gets without a config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// Folder scanned for plugin libraries.
    pub plugins_dir: Option<PathBuf>,
    /// Folder for the database and shadow copies.
    pub data_dir: Option<PathBuf>,
    /// Default deadline of commands, requests, RPC and provider calls.
    pub call_timeout_ms: u64,
    /// Deadline of a plugin's `activate`.
    pub activation_timeout_ms: u64,
    /// How long deactivation waits for work in flight.
    pub shutdown_grace_ms: u64,
    /// Per-plugin event queue bound; when full the oldest event is dropped and counted.
    pub event_queue: usize,
    /// Per-plugin request queue bound (commands, messages, hooks...); when full callers get a
    /// queue-full error.
    pub request_queue: usize,
    /// Per-namespace storage quota in bytes.
    pub storage_quota_bytes: u64,
    /// Largest payload accepted at the boundary, in bytes.
    pub max_payload_bytes: usize,
    /// When non-empty, only files whose SHA-256 (hex) is listed are loaded.
    pub allowlist: Vec<String>,
    /// Restarts allowed within `restart_window_ms` before a faulting plugin is quarantined.
    pub max_restarts: u32,
    /// The window for `max_restarts`.
    pub restart_window_ms: u64,
    /// Records kept by the flight recorder (0 switches it off).
    pub recorder_capacity: usize,
    /// Dead letters kept.
    pub dead_letter_capacity: usize,
    /// Event types whose subscribers are cached at most (event types come from plugins: the
    /// cache starts over rather than grow past this).
    pub route_cache_capacity: usize,
    /// Subscriptions one plugin may hold at most; more are refused with an error.
    pub max_subscriptions_per_plugin: usize,
    /// Timers (`Context::every`, `Context::after`) one plugin's instance may run at once; more
    /// are refused with an error.
    pub max_timers_per_plugin: usize,
    /// Whether a plugin may declare capability `*` (every capability). `false` refuses such
    /// plugins at load, naming them; the default is `true`, as in plugin-api 1.0.
    pub allow_wildcard: bool,
    /// Per-plugin settings, by plugin name.
    pub plugins: BTreeMap<String, PluginSettings>,
    /// Where plugins run unless their own settings say otherwise.
    pub isolation: Isolation,
    /// The program started as an isolated plugin's worker process; by default the host's own
    /// executable, which must then call `loader::worker::run_if_worker()`
    /// first in `main`.
    pub worker_program: Option<PathBuf>,
}

/// Where a plugin's code runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// In the host's process, on a thread of its own (the fastest; a crash of the plugin is a
    /// crash of the host).
    #[default]
    InProcess,
    /// In a child process of its own, which the host survives whatever the plugin does; every
    /// call and context call crosses a pipe.
    Process,
}

impl Isolation {
    /// The name used in config files and reports (`in-process`, `process`).
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::InProcess => "in-process",
            Isolation::Process => "process",
        }
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings of one plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginSettings {
    /// Whether the plugin may be activated.
    pub enabled: bool,
    /// If set, only these of the declared capabilities are granted.
    pub capabilities: Option<Vec<String>>,
    /// Declared capabilities taken away.
    pub revoke: Vec<String>,
    /// The table the plugin reads through `Context::config`.
    pub config: toml::Table,
    /// Where the plugin runs; `None`: the host-wide [`HostConfig::isolation`].
    pub isolation: Option<Isolation>,
    /// Address-space limit of the plugin's process in MiB, when it runs isolated (Unix only:
    /// `RLIMIT_AS`). A plugin that exceeds it is reported as such and restarted.
    pub memory_limit_mb: Option<u64>,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            enabled: true,
            capabilities: None,
            revoke: Vec::new(),
            config: toml::Table::new(),
            isolation: None,
            memory_limit_mb: None,
        }
    }
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            plugins_dir: None,
            data_dir: None,
            call_timeout_ms: 5_000,
            activation_timeout_ms: 10_000,
            shutdown_grace_ms: 2_000,
            event_queue: 1024,
            request_queue: 256,
            storage_quota_bytes: 1024 * 1024,
            max_payload_bytes: 4 * 1024 * 1024,
            route_cache_capacity: 4096,
            max_subscriptions_per_plugin: 1024,
            max_timers_per_plugin: 256,
            allowlist: Vec::new(),
            max_restarts: 3,
            restart_window_ms: 5 * 60 * 1000,
            recorder_capacity: 4096,
            dead_letter_capacity: 1024,
            allow_wildcard: true,
            plugins: BTreeMap::new(),
            isolation: Isolation::InProcess,
            worker_program: None,
        }
    }
}

impl HostConfig {
    /// Reads a config file. Relative folders in it are taken relative to the file's folder.
    ///
    /// # Errors
    /// [`ConfigError::Io`] or [`ConfigError::Parse`] naming the file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::from_toml_str(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        for dir in [&mut config.plugins_dir, &mut config.data_dir]
            .into_iter()
            .flatten()
        {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
        Ok(config)
    }

    /// Parses config text.
    ///
    /// # Errors
    /// The TOML parser's message (with line and column) when the text is invalid or has
    /// unknown keys or wrong types.
    pub fn from_toml_str(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The default call deadline.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms.max(1))
    }

    /// Settings of `plugin` (defaults if the file does not mention it).
    pub fn plugin(&self, plugin: &str) -> PluginSettings {
        self.plugins.get(plugin).cloned().unwrap_or_default()
    }

    /// The `[plugins.<name>]` tables whose name is none of `known` (the plugins the host found),
    /// sorted: most likely a typo, since such settings apply to nothing.
    pub fn unknown_plugins<'a>(&'a self, known: &[&str]) -> Vec<&'a str> {
        self.plugins
            .keys()
            .map(String::as_str)
            .filter(|name| !known.contains(name))
            .collect()
    }

    /// Where `plugin` runs: its own setting, else the host-wide default.
    pub fn isolation_of(&self, plugin: &str) -> Isolation {
        self.plugins
            .get(plugin)
            .and_then(|s| s.isolation)
            .unwrap_or(self.isolation)
    }

    /// The allowlist as a set, or `None` when no allowlist is configured.
    pub fn allowlist_set(&self) -> Option<HashSet<String>> {
        (!self.allowlist.is_empty()).then(|| {
            self.allowlist
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect()
        })
    }
}

impl PluginSettings {
    /// The capabilities granted out of `declared`.
    pub fn grant(&self, declared: &[String]) -> Vec<String> {
        declared
            .iter()
            .filter(|c| {
                self.capabilities
                    .as_ref()
                    .is_none_or(|allowed| allowed.iter().any(|a| a == *c))
            })
            .filter(|c| !self.revoke.iter().any(|r| r == *c))
            .cloned()
            .collect()
    }

    /// The plugin's config table as JSON.
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_of_plugins_not_found_are_named() {
        let c = HostConfig::from_toml_str(
            "[plugins.greeter]\nenabled = false\n[plugins.nosuch]\n[plugins.alpha.config]\nx = 1\n",
        )
        .expect("valid");
        assert_eq!(c.unknown_plugins(&["greeter", "echo"]), ["alpha", "nosuch"]);
        assert!(c
            .unknown_plugins(&["alpha", "greeter", "nosuch"])
            .is_empty());
    }

    #[test]
    fn defaults_without_file() {
        let c = HostConfig::from_toml_str("").expect("empty config");
        assert_eq!(c.call_timeout_ms, 5_000);
        assert_eq!(c.storage_quota_bytes, 1024 * 1024);
        assert!(c.plugin("x").enabled);
    }

    #[test]
    fn per_plugin_grants_and_config() {
        let c = HostConfig::from_toml_str(
            r#"
            call_timeout_ms = 100
            [plugins.greeter]
            capabilities = ["emit:greeter:*", "call:x"]
            revoke = ["call:x"]
            [plugins.greeter.config]
            salutation = "Hi"
            "#,
        )
        .expect("valid config");
        let s = c.plugin("greeter");
        let declared = vec![
            "emit:greeter:*".to_owned(),
            "call:x".to_owned(),
            "database".to_owned(),
        ];
        assert_eq!(s.grant(&declared), vec!["emit:greeter:*".to_owned()]);
        assert_eq!(s.config_json()["salutation"], "Hi");
    }

    #[test]
    fn isolation_per_plugin_and_host_wide() {
        let c = HostConfig::from_toml_str(
            r#"
            [plugins.untrusted]
            isolation = "process"
            memory_limit_mb = 64
            [plugins.trusted]
            isolation = "in-process"
            "#,
        )
        .expect("valid config");
        assert_eq!(c.isolation_of("untrusted"), Isolation::Process);
        assert_eq!(c.isolation_of("other"), Isolation::InProcess);
        assert_eq!(c.plugin("untrusted").memory_limit_mb, Some(64));
        let c = HostConfig::from_toml_str(
            "isolation = \"process\"\n[plugins.trusted]\nisolation = \"in-process\"",
        )
        .expect("valid config");
        assert_eq!(c.isolation_of("other"), Isolation::Process);
        assert_eq!(c.isolation_of("trusted"), Isolation::InProcess);
        let err = HostConfig::from_toml_str("isolation = \"sandbox\"").expect_err("unknown mode");
        assert!(err.contains("sandbox"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors_with_position() {
        let err = HostConfig::from_toml_str("call_timeout = 5").expect_err("unknown key");
        assert!(err.contains("call_timeout"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn config_parser_never_panics(text in ".{0,300}") {
            let _ = HostConfig::from_toml_str(&text);
        }

        #[test]
        fn config_values_of_the_wrong_type_are_errors(key in "[a-z_]{1,20}", value in "[0-9a-z\\[\\]\"]{0,10}") {
            let _ = HostConfig::from_toml_str(&format!("{key} = {value}"));
        }
    }
}
