//! Error types, one per concern.

use std::path::PathBuf;

use plugin_api::PluginError;

use crate::source::PluginSource;

/// Why a plugin file could not become an active plugin.
///
/// Every variant names the file or the plugin involved, and version errors carry both sides.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file or folder could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The path is not a regular file.
    #[error("{path} is not a regular file")]
    NotRegularFile {
        /// The path.
        path: PathBuf,
    },
    /// The file or its folder can be written by any user, so anyone could swap the code.
    #[error("{path} is world-writable (mode {mode:o}); refusing to load code anyone can replace")]
    WorldWritable {
        /// The file or folder.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a complete shared library of this platform's format (checked from its
    /// bytes before it is opened: dlopen would crash on a truncated one).
    #[error("{path} is not a loadable library: {reason}")]
    BadLibrary {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An allowlist is configured and the file's SHA-256 is not in it.
    #[error("{path} has sha256 {sha256}, which is not in the allowlist")]
    NotAllowed {
        /// The file.
        path: PathBuf,
        /// Its SHA-256, hex.
        sha256: String,
    },
    /// The dynamic linker refused the file.
    #[error("cannot open {path}: {message}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The dynamic linker's message.
        message: String,
    },
    /// The library does not export the plugin root symbol (checked from its bytes: it is never
    /// opened, so none of its code runs).
    #[error("{path} is not a plugin: no root module (symbol {symbol} is not exported)")]
    NotAPlugin {
        /// The file.
        path: PathBuf,
        /// The missing symbol.
        symbol: String,
    },
    /// The library was built for another processor (checked from its bytes before opening).
    #[error("{path} was built for {found}, this host is {host}")]
    WrongArchitecture {
        /// The file.
        path: PathBuf,
        /// The file's architecture (`aarch64`, `x86_64`, `x86`...).
        found: String,
        /// The host's.
        host: String,
    },
    /// The library needs a symbol that neither it nor the libraries it links to define (found
    /// when it is opened: every symbol is bound then, none on first call).
    #[error("{path} needs symbol {symbol}, which is not defined by it or the libraries it links")]
    UnresolvedSymbol {
        /// The file.
        path: PathBuf,
        /// The undefined symbol.
        symbol: String,
    },
    /// The shadow folder is not private to this host's user: whoever can write it could swap
    /// the code about to run.
    #[error("shadow folder {path} {problem}; refusing to copy plugins into it")]
    UnsafeShadowDir {
        /// The folder.
        path: PathBuf,
        /// Its owner's uid (Unix).
        owner: Option<u32>,
        /// Its permission bits (Unix).
        mode: Option<u32>,
        /// What is wrong, with the owner or mode involved.
        problem: String,
    },
    /// The checked copy was replaced between its check and its opening.
    #[error("{path}: its checked copy {copy} was replaced before it was opened; refusing it")]
    CopyReplaced {
        /// The file in the plugins folder.
        path: PathBuf,
        /// The copy in the shadow folder.
        copy: PathBuf,
    },
    /// The plugin was built against an incompatible plugin-api version.
    #[error("{path} was built against plugin-api {plugin}, which this host (plugin-api {host}) cannot load")]
    InterfaceVersion {
        /// The file.
        path: PathBuf,
        /// plugin-api version in the plugin.
        plugin: String,
        /// plugin-api version in the host.
        host: String,
    },
    /// The plugin's types do not have the layout the host expects, or it was built with an
    /// incompatible abi_stable.
    #[error("{path} has an incompatible ABI layout: {message}")]
    AbiMismatch {
        /// The file.
        path: PathBuf,
        /// What differs, in a few lines: the type and field, expected and found.
        message: String,
        /// abi_stable's whole report (often hundreds of lines); see [`LoadError::full_report`].
        full_report: String,
    },
    /// The plugin was built with `panic = "abort"` and could not contain its own panics.
    #[error("{origin} was built with panic = \"abort\"; plugins must unwind so their panics can be caught")]
    PanicAbort {
        /// The file, or the compiled-in module.
        origin: PluginSource,
    },
    /// The plugin's `manifest()` did not return in time; the thread calling it was abandoned.
    #[error("{origin}: manifest() did not return within {deadline_ms} ms; its reader thread was abandoned")]
    ManifestTimeout {
        /// The file, or the compiled-in module.
        origin: PluginSource,
        /// The deadline.
        deadline_ms: u64,
    },
    /// A plugin that may run isolated is never opened in the host before a worker process has
    /// read its manifest; that worker refused the file, ended, or could not be started.
    #[error("{path}: a worker process could not read its manifest: {message}")]
    ManifestInWorker {
        /// The plugin file.
        path: PathBuf,
        /// What the worker found or how it ended.
        message: String,
    },
    /// The manifest could not be read.
    #[error("{origin}: invalid manifest: {message}")]
    Manifest {
        /// The file, or the compiled-in module.
        origin: PluginSource,
        /// What is wrong.
        message: String,
    },
    /// The plugin's version is not semver.
    #[error("plugin {plugin} ({origin}): version {version:?} is not semver: {message}")]
    BadVersion {
        /// The file, or the compiled-in module.
        origin: PluginSource,
        /// The plugin name.
        plugin: String,
        /// The version text.
        version: String,
        /// The parser's message.
        message: String,
    },
    /// The plugin requires a different host version.
    #[error("plugin {plugin} requires host {requirement}, but this host is {host}")]
    HostRequirement {
        /// The plugin name.
        plugin: String,
        /// Its requirement.
        requirement: String,
        /// The host's version.
        host: String,
    },
    /// Two files provide a plugin of the same name.
    #[error("duplicate plugin {plugin:?}: {origin} and {existing}")]
    Duplicate {
        /// The plugin name.
        plugin: String,
        /// The file (or compiled-in module) refused.
        origin: PluginSource,
        /// The file (or compiled-in module) that already provides it.
        existing: PluginSource,
    },
    /// The same file is already loaded.
    #[error("{path} is already loaded as plugin {plugin}")]
    AlreadyLoaded {
        /// The file.
        path: PathBuf,
        /// The plugin it provides.
        plugin: String,
    },
    /// A dependency is not present.
    #[error("plugin {plugin} depends on {dependency} {requirement}, which is not loaded")]
    MissingDependency {
        /// The plugin name.
        plugin: String,
        /// The dependency's name.
        dependency: String,
        /// The required version range.
        requirement: String,
    },
    /// A dependency's version is outside the required range.
    #[error("plugin {plugin} depends on {dependency} {requirement}, but {dependency} is {found}")]
    IncompatibleDependency {
        /// The plugin name.
        plugin: String,
        /// The dependency's name.
        dependency: String,
        /// The required version range.
        requirement: String,
        /// The version present.
        found: String,
    },
    /// A dependency failed to load or activate.
    #[error("plugin {plugin} was not activated because its dependency {dependency} failed")]
    DependencyFailed {
        /// The plugin name.
        plugin: String,
        /// The dependency that failed.
        dependency: String,
    },
    /// Plugins depend on each other in a cycle.
    #[error("dependency cycle: {cycle}")]
    Cycle {
        /// The cycle, as `a -> b -> a`.
        cycle: String,
    },
    /// The plugin's `activate` returned an error or panicked.
    #[error("plugin {plugin} failed to activate: {error}")]
    Activation {
        /// The plugin name.
        plugin: String,
        /// What the plugin reported.
        error: PluginError,
    },
    /// The plugin is disabled in the host config.
    #[error("plugin {plugin} is disabled in the host config")]
    Disabled {
        /// The plugin name.
        plugin: String,
    },
    /// The plugin declares capability `*` and the host config has `allow_wildcard = false`.
    #[error("plugin {plugin} declares capability \"*\" (every capability), which this host refuses (allow_wildcard = false in the host config)")]
    WildcardRefused {
        /// The plugin name.
        plugin: String,
    },
    /// The plugin is quarantined after repeated faults.
    #[error("plugin {plugin} is quarantined: {reason}")]
    Quarantined {
        /// The plugin name.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// No plugins folder was given (neither in the config nor to the call).
    #[error("no plugins folder configured (set plugins_dir in the config or pass a folder)")]
    NoPluginsFolder,
    /// No plugin of that name.
    #[error("no plugin named {plugin}")]
    UnknownPlugin {
        /// The name asked for.
        plugin: String,
    },
    /// An upgrade would break a dependent's requirement.
    #[error(
        "cannot replace {plugin} {old} with {new}: {dependent} requires {plugin} {requirement}"
    )]
    BlockedByDependent {
        /// The plugin being replaced.
        plugin: String,
        /// Its running version.
        old: String,
        /// The new version.
        new: String,
        /// The dependent that blocks it.
        dependent: String,
        /// The dependent's requirement.
        requirement: String,
    },
    /// Two plugins provide the same service at the same priority.
    #[error("plugin {plugin} provides {provider} at priority {priority}, which {other} already provides at the same priority (give one a different priority)")]
    ProviderConflict {
        /// The plugin refused.
        plugin: String,
        /// The provider name.
        provider: String,
        /// The priority both declare.
        priority: i32,
        /// The plugin that provides it already.
        other: String,
    },
    /// A dependency's version requirement is not a semver range.
    #[error("plugin {plugin} has an invalid version requirement {requirement:?} for dependency {dependency}: {message}")]
    BadRequirement {
        /// The plugin.
        plugin: String,
        /// The dependency.
        dependency: String,
        /// The requirement as written.
        requirement: String,
        /// What is wrong with it.
        message: String,
    },
}

impl LoadError {
    /// The long form of this error, when there is one: abi_stable's whole layout report for
    /// [`LoadError::AbiMismatch`] (what `-v` and the doctor can show).
    pub fn full_report(&self) -> Option<&str> {
        match self {
            LoadError::AbiMismatch { full_report, .. } if !full_report.is_empty() => {
                Some(full_report)
            }
            _ => None,
        }
    }
}

/// Why [`HostBuilder::build`](crate::HostBuilder::build) could not make a host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The configured data folder could not be created.
    #[error("cannot create data folder {path}")]
    DataDir {
        /// The data folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// No private folder for the plugins' shadow copies could be made under the temporary
    /// folder (the source names the folder and what is wrong with it).
    #[error("cannot make a private folder for plugin copies")]
    ShadowDir(#[source] Box<LoadError>),
    /// The storage database could not be opened.
    #[error("cannot open storage")]
    Storage(#[from] StorageError),
}

/// Why the host configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}")]
    Io {
        /// The config file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
}

/// Why the storage backend failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The key is empty, too long, or contains characters that are not allowed.
    #[error("invalid storage key {key:?}: {reason}")]
    InvalidKey {
        /// The key (truncated for display when huge).
        key: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The write would take the namespace over its quota; nothing was written.
    #[error("storage quota exceeded for {namespace}: {used} + {needed} bytes > {limit} bytes; nothing written")]
    QuotaExceeded {
        /// The namespace (`plugin:<name>` or `shared`).
        namespace: String,
        /// Bytes in use before the write.
        used: u64,
        /// Bytes the write adds.
        needed: u64,
        /// The quota.
        limit: u64,
    },
    /// The database failed.
    #[error("storage backend failed ({path}): {message}")]
    Backend {
        /// The database file, or `memory`.
        path: String,
        /// The database's message.
        message: String,
    },
}

/// An error with its sources, as one line (`cannot read x: permission denied`).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
