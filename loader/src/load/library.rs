//! From a file to a checked plugin library: private shadow copy, checks of its bytes, opening
//! it, abi_stable's interface and layout checks, panic-strategy marker, manifest.

use std::{
    collections::HashSet,
    fs::File,
    path::{Path, PathBuf},
    time::Duration,
};

use abi_stable::library::{LibHeader, LibraryError};
use plugin_api::{Capability, Manifest, PluginModRef, API_VERSION};
use tempfile::TempPath;

use crate::{
    error::LoadError,
    load::{
        layout,
        manifest::{self, ReadError, DEFAULT_MANIFEST_DEADLINE},
        open::{self, OpenFailure},
        preflight::{self, Checksum},
    },
    source::PluginSource,
};

/// A plugin library that passed every check and whose manifest has been read. No plugin code
/// beyond its initialisers, abi_stable's set-up and the manifest function has run yet.
#[derive(Clone)]
pub struct PluginLibrary {
    /// Where it came from: the file in the plugins folder, or a compiled-in module.
    pub source: PluginSource,
    /// The root module; `None` for a plugin that runs isolated, whose library the host never
    /// opened (a worker process read its manifest, and another one runs it).
    pub module: Option<PluginModRef>,
    /// The manifest, with the version checked to be semver.
    pub manifest: Manifest,
    /// The parsed plugin version.
    pub version: semver::Version,
    /// [`fingerprint`](crate::fingerprint) of the bytes that were loaded (empty for
    /// compiled-in plugins): tells builds apart.
    pub fingerprint: String,
    /// SHA-256 of the bytes that were loaded, when the host checks an allowlist (it is computed
    /// only then: on a release library it costs about as much as the dlopen).
    pub sha256: Option<String>,
}

impl std::fmt::Debug for PluginLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginLibrary")
            .field("source", &self.source)
            .field("name", &self.manifest.name)
            .field("version", &self.version)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// How many plugin libraries this process has mapped (none is ever unmapped).
pub fn images_mapped() -> u64 {
    open::images_mapped()
}

/// What [`load_library_with`] needs besides the file.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions<'a> {
    /// The folder for shadow copies: private to the host's user (see
    /// [`ShadowDir`](crate::ShadowDir)); created with mode 0700 if missing.
    pub shadow_dir: &'a Path,
    /// SHA-256 hashes (hex, any case) a file must have to be opened; `None` accepts any build.
    pub allowlist: Option<&'a HashSet<String>>,
    /// How long the plugin's `manifest()` may take ([`DEFAULT_MANIFEST_DEADLINE`] by default).
    pub manifest_deadline: Duration,
}

impl<'a> LoadOptions<'a> {
    /// Copies into `shadow_dir`, no allowlist, the default manifest deadline.
    pub fn new(shadow_dir: &'a Path) -> Self {
        LoadOptions {
            shadow_dir,
            allowlist: None,
            manifest_deadline: DEFAULT_MANIFEST_DEADLINE,
        }
    }

    /// Only files whose SHA-256 is in `allowlist` are opened (when it is `Some`).
    pub fn allowlist(mut self, allowlist: Option<&'a HashSet<String>>) -> Self {
        self.allowlist = allowlist;
        self
    }

    /// Sets how long `manifest()` may take.
    pub fn manifest_deadline(mut self, deadline: Duration) -> Self {
        self.manifest_deadline = deadline;
        self
    }
}

/// Loads the plugin in `path` with the default manifest deadline: [`load_library_with`].
///
/// # Loading runs the plugin's initialisers
///
/// Opening a library runs its constructors inside the host before any of abi_stable's checks
/// can look at it. Everything that can be decided from the file's bytes is decided before: a
/// file that is not a plugin (no root symbol), a truncated file, a library for another
/// processor or format, and (with an allowlist) an unknown build are refused without a byte of
/// them running. A library that needs a symbol nothing defines is refused while it is opened,
/// before its initialisers run (every symbol is bound then). A file that exports the root
/// symbol but was built against another interface
/// version or layout is refused after its initialisers ran: Rust plugins normally have none
/// beyond abi_stable's, but nothing stops a library from adding some. Only the allowlist keeps
/// such a build from running.
///
/// # Errors
/// As [`load_library_with`].
pub fn load_library(
    path: &Path,
    shadow_dir: &Path,
    allowlist: Option<&HashSet<String>>,
) -> Result<PluginLibrary, LoadError> {
    load_library_with(path, &LoadOptions::new(shadow_dir).allowlist(allowlist))
}

/// Loads the plugin in `path`, in this order: permission checks on the original; a private
/// copy with a random name in `options.shadow_dir` (refused unless that folder is the host
/// user's alone); checks of the copy's bytes (complete image of this platform's format and
/// processor, abi_stable's root symbol exported, allowlist); opening the copy with every symbol
/// bound now; abi_stable's header, interface-version and layout checks; the panic-strategy
/// marker; the manifest, read within `options.manifest_deadline`.
///
/// The library is never unloaded (see the crate docs). On Unix the shadow copy is unlinked once
/// it is mapped, so nothing is left behind.
///
/// # Loading runs the plugin's initialisers
///
/// As for [`load_library`].
///
/// # Errors
/// Every [`LoadError`] variant about files and libraries, naming `path`:
/// [`LoadError::NotAPlugin`], [`LoadError::BadLibrary`], [`LoadError::WrongArchitecture`],
/// [`LoadError::NotAllowed`], [`LoadError::UnsafeShadowDir`] before opening;
/// [`LoadError::Open`], [`LoadError::UnresolvedSymbol`], [`LoadError::CopyReplaced`] when
/// opening; [`LoadError::InterfaceVersion`], [`LoadError::AbiMismatch`],
/// [`LoadError::PanicAbort`], [`LoadError::ManifestTimeout`], [`LoadError::Manifest`],
/// [`LoadError::BadVersion`] after.
pub fn load_library_with(
    path: &Path,
    options: &LoadOptions<'_>,
) -> Result<PluginLibrary, LoadError> {
    ShadowCopy::make(
        path,
        options.shadow_dir,
        options.allowlist,
        Checksum::IfAllowlisted,
    )?
    .open_with(options.manifest_deadline)
}

/// A checked private copy of a plugin file, about to be opened; its path is removed when this is
/// dropped (once mapped, the image no longer needs the name).
pub(crate) struct ShadowCopy {
    source: PathBuf,
    copy: TempPath,
    file: File,
    /// What the checks of the copy found.
    pub facts: preflight::CopyFacts,
}

impl ShadowCopy {
    /// Copies `path` into `shadow_dir` and checks the copy ([`preflight::copy_checked`]): the
    /// bytes checked are the bytes that will be opened, and the file in the plugins folder may
    /// change at any time without affecting either.
    pub fn make(
        path: &Path,
        shadow_dir: &Path,
        allowlist: Option<&HashSet<String>>,
        checksum: Checksum,
    ) -> Result<ShadowCopy, LoadError> {
        let checked = preflight::copy_checked(path, shadow_dir, allowlist, checksum)?;
        Ok(ShadowCopy {
            source: path.to_owned(),
            copy: checked.path,
            file: checked.file,
            facts: checked.facts,
        })
    }

    /// The file the copy was made from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The copy's facts, without opening it (a plugin that runs isolated is never opened in
    /// the host); the copy is removed.
    pub fn into_facts(self) -> preflight::CopyFacts {
        self.facts
    }

    /// Opens the copy ([`open::open_image`]) and runs abi_stable's and the plugin's checks.
    pub fn open_with(self, manifest_deadline: Duration) -> Result<PluginLibrary, LoadError> {
        let ShadowCopy {
            source,
            copy,
            file,
            facts,
        } = self;
        let module =
            open::open_image(&copy, file, layout::only_older_context).map_err(|failure| {
                match failure {
                    OpenFailure::Open(message) => open_error(&source, message),
                    OpenFailure::NoRootSymbol => LoadError::NotAPlugin {
                        path: source.clone(),
                        symbol: crate::load::image::ROOT_SYMBOL.to_owned(),
                    },
                    #[cfg(unix)]
                    OpenFailure::Replaced => LoadError::CopyReplaced {
                        path: source.clone(),
                        copy: copy.to_path_buf(),
                    },
                    OpenFailure::Library { error, header } => library_error(&source, error, header),
                }
            })?;
        let mut library = checked_module_with(source.into(), module, manifest_deadline)?;
        library.fingerprint = facts.fingerprint;
        library.sha256 = facts.sha256;
        Ok(library)
    }
}

/// The error for a library the dynamic linker refused: [`LoadError::UnresolvedSymbol`] when its
/// message names an undefined symbol, else [`LoadError::Open`].
fn open_error(path: &Path, message: String) -> LoadError {
    match undefined_symbol(&message) {
        Some(symbol) => LoadError::UnresolvedSymbol {
            path: path.to_owned(),
            symbol,
        },
        None => LoadError::Open {
            path: path.to_owned(),
            message,
        },
    }
}

/// The symbol in a dynamic linker's "undefined symbol" message (glibc, musl, macOS dyld).
fn undefined_symbol(message: &str) -> Option<String> {
    let symbol = if let Some((_, rest)) = message.split_once("undefined symbol: ") {
        // glibc: "undefined symbol: name" or "undefined symbol: name, version V".
        rest.split(',').next()
    } else if let Some((_, rest)) = message.split_once("symbol not found in flat namespace '") {
        // macOS: "symbol not found in flat namespace '_name'".
        rest.split('\'').next()
    } else if let Some((head, _)) = message.split_once(": symbol not found") {
        // musl: "Error relocating <file>: name: symbol not found".
        head.rsplit(": ").next()
    } else {
        None
    }?;
    let symbol = symbol.trim();
    (!symbol.is_empty()).then(|| symbol.to_owned())
}

/// Checks a root module (from a file or compiled in) and reads its manifest within
/// [`DEFAULT_MANIFEST_DEADLINE`]: [`checked_module_with`].
///
/// # Errors
/// As [`checked_module_with`].
pub fn checked_module(
    source: PluginSource,
    module: PluginModRef,
) -> Result<PluginLibrary, LoadError> {
    checked_module_with(source, module, DEFAULT_MANIFEST_DEADLINE)
}

/// Checks a root module (from a file or compiled in) and reads its manifest, waiting at most
/// `manifest_deadline` for the plugin's `manifest()` (on a reused reader thread; see
/// [`detached_manifest_readers`](crate::load::manifest::detached_manifest_readers)).
///
/// # Errors
/// [`LoadError::PanicAbort`], [`LoadError::ManifestTimeout`], [`LoadError::Manifest`],
/// [`LoadError::BadVersion`].
pub fn checked_module_with(
    source: PluginSource,
    module: PluginModRef,
    manifest_deadline: Duration,
) -> Result<PluginLibrary, LoadError> {
    if !module.panic_unwinds() {
        return Err(LoadError::PanicAbort { origin: source });
    }
    let json =
        manifest::read_manifest(module.manifest(), manifest_deadline).map_err(|e| match e {
            ReadError::Plugin(message) => LoadError::Manifest {
                origin: source.clone(),
                message,
            },
            ReadError::TimedOut => LoadError::ManifestTimeout {
                origin: source.clone(),
                deadline_ms: u64::try_from(manifest_deadline.as_millis()).unwrap_or(u64::MAX),
            },
            ReadError::NoThread(message) => LoadError::Manifest {
                origin: source.clone(),
                message: format!("cannot start a thread to read it: {message}"),
            },
        })?;
    let (manifest, version) = parse_manifest(&source, &json)?;
    Ok(PluginLibrary {
        source,
        module: Some(module),
        manifest,
        version,
        fingerprint: String::new(),
        sha256: None,
    })
}

/// The manifest `json` that the plugin in `source` returned, checked as every load checks it:
/// its name, its capabilities and its version.
///
/// # Errors
/// [`LoadError::Manifest`], [`LoadError::BadVersion`].
pub(crate) fn parse_manifest(
    source: &PluginSource,
    json: &str,
) -> Result<(Manifest, semver::Version), LoadError> {
    let invalid = |message: String| LoadError::Manifest {
        origin: source.clone(),
        message,
    };
    let manifest = Manifest::from_json(json).map_err(|e| invalid(e.to_string()))?;
    validate_name(&manifest.name).map_err(invalid)?;
    validate_capabilities(&manifest).map_err(invalid)?;
    let version = semver::Version::parse(&manifest.version).map_err(|e| LoadError::BadVersion {
        origin: source.clone(),
        plugin: manifest.name.clone(),
        version: manifest.version.clone(),
        message: e.to_string(),
    })?;
    Ok((manifest, version))
}

/// A plugin the host knows only from its checked copy's `facts` and the manifest a worker
/// process read from it (checked by [`parse_manifest`]): nothing of the file was opened in this
/// process (the plugin runs isolated).
pub(crate) fn unopened_library(
    source: PluginSource,
    manifest: Manifest,
    version: semver::Version,
    facts: preflight::CopyFacts,
) -> PluginLibrary {
    PluginLibrary {
        source,
        module: None,
        manifest,
        version,
        fingerprint: facts.fingerprint,
        sha256: facts.sha256,
    }
}

/// Every capability a manifest declares must be one of the known forms ([`Capability`]): a
/// misspelt one would otherwise never be granted, and the plugin fail later with a permission
/// error that hides the typo.
pub(crate) fn validate_capabilities(manifest: &Manifest) -> Result<(), String> {
    for declared in &manifest.capabilities {
        if let Err(e) = declared.parse::<Capability>() {
            return Err(format!("plugin {} declares an {e}", manifest.name));
        }
    }
    Ok(())
}

/// Plugin names are command namespaces and storage scopes: keep them plain.
pub(crate) fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("plugin name {name:?} must be 1 to 64 characters"));
    }
    if name == "host" || name == "plugin" {
        return Err(format!("plugin name {name:?} is reserved"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(format!(
            "plugin name {name:?} may only contain a-z, 0-9, '-' and '_'"
        ));
    }
    Ok(())
}

/// The [`LoadError`] for one of abi_stable's errors about the library in `path`; `header`, when
/// the header was read, lets a layout mismatch be described field by field.
fn library_error(path: &Path, error: LibraryError, header: Option<&LibHeader>) -> LoadError {
    let path = path.to_owned();
    match error {
        LibraryError::OpenError { err, .. } => LoadError::Open {
            path,
            message: err.to_string(),
        },
        LibraryError::GetSymbolError { symbol, .. } => LoadError::NotAPlugin {
            path,
            symbol: String::from_utf8_lossy(&symbol)
                .trim_end_matches('\0')
                .to_owned(),
        },
        LibraryError::IncompatibleVersionNumber { actual_version, .. } => {
            LoadError::InterfaceVersion {
                path,
                plugin: actual_version.to_string(),
                host: API_VERSION.to_owned(),
            }
        }
        LibraryError::ParseVersionError(e) => LoadError::InterfaceVersion {
            path,
            plugin: format!("unparseable ({e})"),
            host: API_VERSION.to_owned(),
        },
        LibraryError::InvalidAbiHeader(found) => LoadError::AbiMismatch {
            path,
            message: layout::header_mismatch(&found),
            full_report: LibraryError::InvalidAbiHeader(found).to_string(),
        },
        LibraryError::AbiInstability(e) => {
            let full_report = e.to_string();
            LoadError::AbiMismatch {
                path,
                message: header
                    .and_then(layout::describe)
                    .unwrap_or_else(|| first_lines(&full_report, 12)),
                full_report,
            }
        }
        other => {
            let full_report = other.to_string();
            LoadError::AbiMismatch {
                path,
                message: first_lines(&full_report, 12),
                full_report,
            }
        }
    }
}

/// The head of a long report, when nothing better can be said.
fn first_lines(text: &str, n: usize) -> String {
    let mut lines: Vec<&str> = text.lines().take(n + 1).collect();
    if lines.len() > n {
        lines.truncate(n);
        lines.push("…");
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain() {
        assert!(validate_name("audit-log").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("host").is_err());
        assert!(validate_name("a:b").is_err());
        assert!(validate_name("../x").is_err());
    }

    #[test]
    fn undefined_symbols_are_found_in_linker_messages() {
        for (message, symbol) in [
            (
                "undefined symbol: missing_function",
                Some("missing_function"),
            ),
            (
                "/tmp/x.so: undefined symbol: versioned, version GLIBC_9.9",
                Some("versioned"),
            ),
            (
                "Error relocating /tmp/x.so: musl_missing: symbol not found",
                Some("musl_missing"),
            ),
            (
                "dlopen(x.dylib, 0x0002): symbol not found in flat namespace '_mac_missing'",
                Some("_mac_missing"),
            ),
            ("file too short", None),
            ("undefined symbol: ", None),
        ] {
            assert_eq!(undefined_symbol(message).as_deref(), symbol, "{message}");
        }
        assert!(matches!(
            open_error(Path::new("/p/libx.so"), "undefined symbol: f".to_owned()),
            LoadError::UnresolvedSymbol { symbol, .. } if symbol == "f"
        ));
        assert!(matches!(
            open_error(Path::new("/p/libx.so"), "file too short".to_owned()),
            LoadError::Open { message, .. } if message == "file too short"
        ));
    }
}
