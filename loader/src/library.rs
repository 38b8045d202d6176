//! From a file to a checked plugin library: shadow copy, dlopen, interface and layout checks,
//! panic-strategy marker, manifest.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use abi_stable::library::{lib_header_from_path, LibraryError};
use plugin_api::{Manifest, PluginModRef, API_VERSION};

use crate::{error::LoadError, preflight};

/// A plugin library that passed every check and whose manifest has been read. No plugin code
/// beyond the manifest function has run yet.
#[derive(Clone)]
pub struct PluginLibrary {
    /// The file in the plugins folder (or `static:<name>` for compiled-in plugins).
    pub source: PathBuf,
    /// The root module.
    pub module: PluginModRef,
    /// The manifest, with the version checked to be semver.
    pub manifest: Manifest,
    /// The parsed plugin version.
    pub version: semver::Version,
    /// SHA-256 of the bytes that were loaded (empty for compiled-in plugins).
    pub sha256: String,
}

impl std::fmt::Debug for PluginLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginLibrary")
            .field("source", &self.source)
            .field("name", &self.manifest.name)
            .field("version", &self.version)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

static GENERATION: AtomicU64 = AtomicU64::new(0);
static IMAGES_MAPPED: AtomicU64 = AtomicU64::new(0);

/// How many plugin libraries this process has mapped (none is ever unmapped).
pub fn images_mapped() -> u64 {
    IMAGES_MAPPED.load(Ordering::Relaxed)
}

/// A fresh, never-used path in `shadow_dir` for a copy of `source`.
///
/// dlopen matches libraries by path (and by device+inode), so opening the same path twice
/// returns the first image even after the file changed; a unique name per load avoids that.
fn shadow_path(source: &Path, shadow_dir: &Path) -> PathBuf {
    let stem = source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_owned());
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
    shadow_dir.join(format!(
        "{stem}-{}-{generation}{}",
        std::process::id(),
        std::env::consts::DLL_SUFFIX
    ))
}

/// Loads the plugin in `path`: permission checks on the original, a unique shadow copy, ELF and
/// allowlist checks on that copy, dlopen of the copy, abi_stable's interface-version and layout
/// checks, the panic-strategy marker, and the manifest.
///
/// The library is never unloaded (see the crate docs). On Unix the shadow copy is unlinked once
/// it is mapped, so nothing is left behind.
///
/// # Errors
/// Every [`LoadError`] variant about files and libraries, naming `path`.
pub fn load_library(
    path: &Path,
    shadow_dir: &Path,
    allowlist: Option<&HashSet<String>>,
) -> Result<PluginLibrary, LoadError> {
    // One read: the checks (permissions, ELF, allowlist) run on these bytes, and exactly these
    // bytes are written to the private copy that is opened, so the file in the folder may change
    // at any time without affecting what was checked and loaded.
    let (facts, bytes) = preflight::read_checked(path, allowlist)?;
    load_checked(path, shadow_dir, facts, bytes)
}

/// The second half of [`load_library`]: writes bytes that passed [`preflight::read_checked`]
/// to a fresh shadow copy and opens it.
pub(crate) fn load_checked(
    path: &Path,
    shadow_dir: &Path,
    facts: preflight::Preflight,
    bytes: Vec<u8>,
) -> Result<PluginLibrary, LoadError> {
    std::fs::create_dir_all(shadow_dir).map_err(|source| LoadError::Io {
        path: shadow_dir.to_owned(),
        source,
    })?;
    let shadow = shadow_path(path, shadow_dir);
    std::fs::write(&shadow, &bytes).map_err(|source| LoadError::Io {
        path: shadow.clone(),
        source,
    })?;
    drop(bytes);
    let result = open_shadow(path, &shadow, facts.sha256);
    // The mapping (if any) keeps the code alive; the name is no longer needed. On platforms that
    // forbid removing a mapped file this fails quietly and the copy stays in the shadow folder.
    let _ = std::fs::remove_file(&shadow);
    result
}

fn open_shadow(path: &Path, shadow: &Path, sha256: String) -> Result<PluginLibrary, LoadError> {
    let header = lib_header_from_path(shadow).map_err(|e| library_error(path, e))?;
    IMAGES_MAPPED.fetch_add(1, Ordering::Relaxed);
    let module = header
        .init_root_module::<PluginModRef>()
        .map_err(|e| library_error(path, e))?;
    let mut library = checked_module(path.to_owned(), module)?;
    library.sha256 = sha256;
    Ok(library)
}

/// Checks a root module (from a file or compiled in) and reads its manifest.
///
/// # Errors
/// [`LoadError::PanicAbort`], [`LoadError::Manifest`], [`LoadError::BadVersion`].
pub fn checked_module(source: PathBuf, module: PluginModRef) -> Result<PluginLibrary, LoadError> {
    if !module.panic_unwinds() {
        return Err(LoadError::PanicAbort { path: source });
    }
    let json = (module.manifest())()
        .into_result()
        .map_err(|e| LoadError::Manifest {
            path: source.clone(),
            message: e.to_string(),
        })?;
    let manifest = Manifest::from_json(json.as_str()).map_err(|e| LoadError::Manifest {
        path: source.clone(),
        message: e.to_string(),
    })?;
    validate_name(&manifest.name).map_err(|message| LoadError::Manifest {
        path: source.clone(),
        message,
    })?;
    let version = semver::Version::parse(&manifest.version).map_err(|e| LoadError::BadVersion {
        path: source.clone(),
        plugin: manifest.name.clone(),
        version: manifest.version.clone(),
        message: e.to_string(),
    })?;
    Ok(PluginLibrary {
        source,
        module,
        manifest,
        version,
        sha256: String::new(),
    })
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

fn library_error(path: &Path, error: LibraryError) -> LoadError {
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
        LibraryError::AbiInstability(e) => LoadError::AbiMismatch {
            path,
            message: first_lines(&e.to_string(), 12),
        },
        other => LoadError::AbiMismatch {
            path,
            message: first_lines(&other.to_string(), 12),
        },
    }
}

/// abi_stable's layout reports can run to hundreds of lines; keep the head.
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
    fn shadow_paths_are_unique() {
        let a = shadow_path(Path::new("/p/libx.so"), Path::new("/s"));
        let b = shadow_path(Path::new("/p/libx.so"), Path::new("/s"));
        assert_ne!(a, b);
    }
}
