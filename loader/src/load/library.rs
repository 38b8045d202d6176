//! From a file to a checked plugin library: shadow copy, dlopen, interface and layout checks,
//! panic-strategy marker, manifest.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use abi_stable::{
    library::{lib_header_from_path, LibraryError},
    StableAbi,
};
use plugin_api::{Manifest, PluginModRef, API_VERSION};

use crate::{
    error::LoadError,
    load::{
        manifest,
        preflight::{self, Checksum},
    },
};

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
    load_library_within(path, shadow_dir, allowlist, DEFAULT_MANIFEST_DEADLINE)
}

/// How long [`load_library`] waits for a plugin's `manifest()`.
pub const DEFAULT_MANIFEST_DEADLINE: Duration = Duration::from_secs(10);

/// [`load_library`] with the deadline for the plugin's `manifest()`: one that does not return
/// in time fails this file with [`LoadError::Deadline`] (its thread is left behind).
///
/// # Errors
/// As [`load_library`].
pub fn load_library_within(
    path: &Path,
    shadow_dir: &Path,
    allowlist: Option<&HashSet<String>>,
    manifest_deadline: Duration,
) -> Result<PluginLibrary, LoadError> {
    ShadowCopy::make(path, shadow_dir, allowlist, Checksum::IfAllowlisted)?.open(manifest_deadline)
}

/// A checked private copy of a plugin file, about to be opened; removed when dropped (once
/// mapped, the image no longer needs the name).
pub(crate) struct ShadowCopy {
    source: PathBuf,
    copy: PathBuf,
    /// What the checks of the copy found.
    pub facts: preflight::CopyFacts,
}

impl ShadowCopy {
    /// Copies `path` to a fresh path in `shadow_dir` and checks the copy
    /// ([`preflight::copy_checked`]): the bytes checked are the bytes that will be opened, and
    /// the file in the plugins folder may change at any time without affecting either.
    pub fn make(
        path: &Path,
        shadow_dir: &Path,
        allowlist: Option<&HashSet<String>>,
        checksum: Checksum,
    ) -> Result<ShadowCopy, LoadError> {
        std::fs::create_dir_all(shadow_dir).map_err(|source| LoadError::Io {
            path: shadow_dir.to_owned(),
            source,
        })?;
        let copy = shadow_path(path, shadow_dir);
        // Made before the copy exists, so a failed check removes a partial copy too.
        let mut shadow = ShadowCopy {
            source: path.to_owned(),
            copy,
            facts: preflight::CopyFacts {
                fingerprint: String::new(),
                sha256: None,
            },
        };
        shadow.facts = preflight::copy_checked(path, &shadow.copy, allowlist, checksum)?;
        Ok(shadow)
    }

    /// dlopens the copy and runs abi_stable's and the plugin's checks, waiting at most
    /// `manifest_deadline` for the manifest.
    pub fn open(self, manifest_deadline: Duration) -> Result<PluginLibrary, LoadError> {
        let path = &self.source;
        let header = lib_header_from_path(&self.copy).map_err(|e| library_error(path, e))?;
        IMAGES_MAPPED.fetch_add(1, Ordering::Relaxed);
        let module = header
            .init_root_module::<PluginModRef>()
            .map_err(|e| match e {
                LibraryError::AbiInstability(report) => {
                    let report = report.to_string();
                    let summary = header.layout().and_then(|found| {
                        super::layout::summarize(<PluginModRef as StableAbi>::LAYOUT, found)
                    });
                    LoadError::AbiMismatch {
                        path: path.clone(),
                        message: summary.unwrap_or_else(|| first_lines(&report, 12)),
                        report,
                    }
                }
                other => library_error(path, other),
            })?;
        let mut library = checked_module_within(path.clone(), module, manifest_deadline)?;
        library.fingerprint = self.facts.fingerprint.clone();
        library.sha256 = self.facts.sha256.clone();
        Ok(library)
    }
}

impl Drop for ShadowCopy {
    fn drop(&mut self) {
        // On platforms that forbid removing a mapped file this fails quietly and the copy stays
        // in the shadow folder.
        let _ = std::fs::remove_file(&self.copy);
    }
}

/// Checks a root module (from a file or compiled in) and reads its manifest.
///
/// # Errors
/// [`LoadError::PanicAbort`], [`LoadError::Manifest`], [`LoadError::BadVersion`].
pub fn checked_module(source: PathBuf, module: PluginModRef) -> Result<PluginLibrary, LoadError> {
    checked_module_within(source, module, DEFAULT_MANIFEST_DEADLINE)
}

/// [`checked_module`] with the deadline for `manifest()`.
///
/// # Errors
/// As [`checked_module`], and [`LoadError::Deadline`] when `manifest()` does not return within
/// `deadline`.
pub fn checked_module_within(
    source: PathBuf,
    module: PluginModRef,
    deadline: Duration,
) -> Result<PluginLibrary, LoadError> {
    if !module.panic_unwinds() {
        return Err(LoadError::PanicAbort { path: source });
    }
    let json = match manifest::read(module, deadline) {
        Ok(answer) => answer.map_err(|e| LoadError::Manifest {
            path: source.clone(),
            message: e.to_string(),
        })?,
        Err(manifest::Missed::Deadline) => {
            return Err(LoadError::ManifestDeadline {
                path: source,
                ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
            })
        }
        Err(manifest::Missed::NoThread(e)) => {
            return Err(LoadError::Manifest {
                path: source,
                message: format!("cannot start a thread to read the manifest: {e}"),
            })
        }
    };
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
        fingerprint: String::new(),
        sha256: None,
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
        LibraryError::AbiInstability(e) => {
            let report = e.to_string();
            LoadError::AbiMismatch {
                path,
                message: first_lines(&report, 12),
                report,
            }
        }
        other => {
            let report = other.to_string();
            LoadError::AbiMismatch {
                path,
                message: first_lines(&report, 12),
                report,
            }
        }
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
