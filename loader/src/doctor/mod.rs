//! A preflight report of a plugins folder that activates nothing and runs none of a plugin
//! author's code in the host: what `demo-app doctor` prints.
//!
//! # What runs where
//!
//! - **In the host process, from the file's bytes only:** the checks of a first load that need
//!   no opening (regular file, permissions, this platform's format, complete segments and
//!   sections, this processor, the root symbol exported, the allowlist), the SHA-256, and what
//!   the bytes say ([`ImageFacts`]: format, architecture, segments, exports, and abi_stable's
//!   header read at the root symbol, whose version is checked here too). Nothing is opened.
//! - **In a worker process, one per plugin file:** everything that needs the library mapped,
//!   so runs its code: opening a private copy with every symbol bound, abi_stable's interface
//!   version and layout checks (they follow pointers that exist only once the image is
//!   relocated), the panic-strategy marker, and `manifest()`. The worker is the host's own
//!   executable re-run with a hidden argument (see `loader::worker`; a host that wants
//!   `diagnose` calls `loader::worker::run_if_worker()` first in `main`, or names
//!   another program that does with
//!   [`HostBuilder::worker_program`](crate::HostBuilder::worker_program)). The worker opens the
//!   file exactly as a first load does and refuses bytes other than those the doctor examined.
//!   It is killed when it has answered, or at the deadline (the host config's
//!   `activation_timeout_ms`, counted from the worker's hello, so it covers opening the copy
//!   too). A manifest that hangs, or a plugin that crashes or exits the worker, is a finding for
//!   its file (`manifest() did not return within 10 s; the reader was killed`, `the manifest
//!   reader ended with signal 11 (SIGSEGV)`); the host is untouched.
//! - **In the host again, on data:** the manifests the workers sent go through the same
//!   admission as a real load (`plan::admit`: duplicates, the host config, host requirements,
//!   dependencies, providers), so "would it load" is answered by the code that decides it.
//!
//! When the worker program does not speak the loader's worker protocol (its `main` does not
//! call `run_if_worker`), the report says so once ([`DoctorReport::manifest_reader`]) and no
//! manifest is read; the byte-level findings are still there. There is no in-process fallback:
//! the doctor never opens a plugin in the host.

use std::path::{Path, PathBuf};

use abi_stable::library::AbiHeader;
use object::{Object, ObjectSection};
use plugin_api::Manifest;
use serde::{Deserialize, Serialize};

pub(crate) mod reader;

use self::reader::{Outcome, Request};
use crate::{
    config::{HostConfig, HOST_VERSION},
    error::LoadError,
    load::{
        discover, image, layout, library, preflight,
        progress::{LoadStage, ProgressHook},
    },
    plan::admit::{self, Proposal, World},
    source::PluginSource,
};

/// One problem and how to fix it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Problem {
    /// What is wrong.
    pub error: String,
    /// What to do about it.
    pub fix: String,
    /// The long form, when there is one (abi_stable's full layout report).
    #[serde(default)]
    pub detail: Option<String>,
}

/// What the doctor found about one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileDiagnosis {
    /// The file.
    pub file: PathBuf,
    /// Whether it is a loadable plugin library at all.
    pub is_plugin: bool,
    /// Plugin name, if the manifest was read (`plugin` in JSON, as in every other report).
    #[serde(rename = "plugin")]
    pub name: Option<String>,
    /// Plugin version.
    pub version: Option<String>,
    /// plugin-api version it was built against.
    pub api_version: Option<String>,
    /// SHA-256 of the file.
    pub sha256: Option<String>,
    /// What the file's bytes say it is, when they can be read as a library of any format.
    pub image: Option<ImageFacts>,
    /// Dependencies with their ranges.
    pub dependencies: Vec<String>,
    /// Capabilities the manifest declares.
    pub declared: Vec<String>,
    /// Capabilities the host config grants.
    pub granted: Vec<String>,
    /// Problems, each with a fix; empty when the plugin would activate.
    pub problems: Vec<Problem>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// The folder examined.
    pub folder: PathBuf,
    /// The host version plugins are checked against.
    pub host_version: String,
    /// The plugin-api version of the host.
    pub api_version: String,
    /// One entry per candidate file.
    pub files: Vec<FileDiagnosis>,
    /// Plugins in the order they would be activated.
    pub activation_order: Vec<String>,
    /// Why no manifest could be read, said once for the whole folder (the worker program
    /// cannot be started or is not a loader worker); `None` when the manifest reader works.
    pub manifest_reader: Option<String>,
}

impl DoctorReport {
    /// Whether every file would load and activate (activation itself is not tried); never when
    /// the manifests could not be read.
    pub fn is_healthy(&self) -> bool {
        self.manifest_reader.is_none() && self.files.iter().all(|f| f.problems.is_empty())
    }
}

/// What a library file's bytes say, read without opening it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageFacts {
    /// The format: `ELF`, `PE (Windows)`, `Mach-O (macOS)`.
    pub format: String,
    /// The processor it was built for, as Rust names it (`x86_64`, `aarch64`).
    pub architecture: String,
    /// How many loadable segments it has.
    pub segments: usize,
    /// How many symbols it exports.
    pub exports: usize,
    /// Whether one of them is abi_stable's root module ([`ROOT_SYMBOL`](crate::ROOT_SYMBOL)).
    pub exports_root: bool,
    /// abi_stable's ABI version in the header at the root symbol (`0.11`), when it could be
    /// read from the bytes; `unknown header` when the bytes there are not abi_stable's.
    pub abi_stable: Option<String>,
}

/// The advice that goes with an error.
pub fn fix_for(error: &LoadError) -> String {
    match error {
        LoadError::Io { .. } => "check that the file exists and is readable by the host".into(),
        LoadError::NotRegularFile { .. } => "put the library itself in the folder, not a link or folder".into(),
        LoadError::WorldWritable { path, .. } => format!("chmod o-w {}", path.display()),
        LoadError::BadLibrary { .. } => "rebuild the plugin or copy it again completely (the file is truncated or not a shared library)".into(),
        LoadError::NotAllowed { sha256, .. } => format!("add {sha256} to the allowlist in the host config if you trust this build"),
        LoadError::Open { .. } => "rebuild the plugin for this platform; remove files that are not plugins from the folder".into(),
        LoadError::NotAPlugin { .. } => "remove the file from the plugins folder, or add `export_plugin!(YourPlugin);` to the crate".into(),
        LoadError::WrongArchitecture { host, .. } => format!("rebuild the plugin for {host}"),
        LoadError::UnresolvedSymbol { symbol, .. } => format!("link the plugin against the library that defines {symbol}, or stop using it"),
        LoadError::UnsafeShadowDir { path, .. } => format!("make {} a folder of the host's user with mode 0700 (or remove it: the host creates it)", path.display()),
        LoadError::CopyReplaced { .. } => "find out what writes into the host's shadow folder; load again".into(),
        LoadError::ManifestTimeout { .. } => "fix the plugin's manifest(): it must return at once".into(),
        LoadError::ManifestInWorker { .. } => "see the worker's finding; `doctor` shows the file's problems in full, and the worker program must call loader::worker::run_if_worker() first in main".into(),
        LoadError::InterfaceVersion { host, .. } => format!("rebuild the plugin against plugin-api {host}"),
        LoadError::AbiMismatch { .. } => "rebuild the plugin against this host's plugin-api".into(),
        LoadError::PanicAbort { .. } => "remove `panic = \"abort\"` from the plugin's build profile".into(),
        LoadError::Manifest { .. } => "fix the plugin's manifest (name: a-z, 0-9, '-', '_')".into(),
        LoadError::BadVersion { .. } => "give the plugin a semver version (for example 0.1.0)".into(),
        LoadError::HostRequirement { host, .. } => format!("use a plugin build whose host requirement accepts {host}"),
        LoadError::Duplicate { origin, existing: PluginSource::File(_), .. } if origin.file().is_some() => format!("remove one of the two files ({origin})"),
        LoadError::Duplicate { existing: PluginSource::CompiledIn, .. } => "rename or remove the file: a plugin compiled into the application has its name".into(),
        LoadError::Duplicate { existing, .. } => format!("remove {existing}, or do not register the compiled-in plugin of the same name"),
        LoadError::AlreadyLoaded { .. } => "nothing to do".into(),
        LoadError::MissingDependency { dependency, requirement, .. } => format!("add plugin {dependency} {requirement} to the folder"),
        LoadError::IncompatibleDependency { dependency, requirement, .. } => format!("install a version of {dependency} matching {requirement}"),
        LoadError::DependencyFailed { dependency, .. } => format!("fix plugin {dependency} first"),
        LoadError::Cycle { .. } => "break the dependency cycle: one of these plugins must not depend on the other".into(),
        LoadError::Activation { .. } => "see the plugin's own error; its activate failed".into(),
        LoadError::Disabled { plugin } => format!("set enabled = true under [plugins.{plugin}] in the host config"),
        LoadError::WildcardRefused { plugin } => format!("declare what plugin {plugin} needs instead of \"*\", or set allow_wildcard = true in the host config"),
        LoadError::Quarantined { plugin, .. } => format!("fix the plugin, then re-enable {plugin}"),
        LoadError::UnknownPlugin { .. } => "check the plugin name".into(),
        LoadError::BlockedByDependent { dependent, .. } => format!("upgrade {dependent} first, or keep a compatible version"),
        LoadError::NoPluginsFolder => "pass --plugins <folder> or set plugins_dir in the host config".into(),
        LoadError::ProviderConflict { plugin, provider, .. } => format!("give {plugin}'s provider {provider} a different priority, or remove one of the two plugins"),
        LoadError::BadRequirement { .. } => "use a semver range like \"^0.1\" or \"*\"".into(),
    }
}

/// The finding for `error`, with its fix (and abi_stable's full report as the detail).
pub(crate) fn problem(error: &LoadError) -> Problem {
    Problem {
        error: error.to_string(),
        fix: fix_for(error),
        detail: match error {
            LoadError::AbiMismatch { full_report, .. } => Some(full_report.clone()),
            _ => None,
        },
    }
}

/// Whether a file refused with `error` is a plugin at all (it claims to be one: it exports the
/// root symbol and is a library of this platform).
pub(crate) fn is_plugin_error(error: &LoadError) -> bool {
    !matches!(
        error,
        LoadError::NotAPlugin { .. }
            | LoadError::Open { .. }
            | LoadError::BadLibrary { .. }
            | LoadError::WrongArchitecture { .. }
            | LoadError::NotRegularFile { .. }
    )
}

/// Examines every candidate file in `dir` under `config`, activating nothing and running no
/// plugin code in this process (see the [module docs](self)). `worker_program` is the program
/// started to read manifests (`None`: this executable).
///
/// # Errors
/// Only when `dir` cannot be listed.
pub(crate) fn diagnose(
    dir: &Path,
    config: &HostConfig,
    shadow_dir: &Path,
    worker_program: Option<&Path>,
    progress: &ProgressHook,
) -> Result<DoctorReport, LoadError> {
    let files = discover::discover(dir)?;
    let total = files.len();
    let allowlist = config.allowlist_set();
    let host_version =
        semver::Version::parse(HOST_VERSION).unwrap_or(semver::Version::new(0, 0, 0));
    let deadline = std::time::Duration::from_millis(config.activation_timeout_ms.max(1));
    let mut out: Vec<FileDiagnosis> = Vec::new();
    // The files whose manifest was read: (index in `out`, manifest, version).
    let mut read: Vec<(usize, Manifest, semver::Version)> = Vec::new();
    let mut manifest_reader: Option<String> = None;
    for (done, file) in files.into_iter().enumerate() {
        progress.report(LoadStage::Examining, done, total);
        let mut d = FileDiagnosis {
            file: file.clone(),
            is_plugin: false,
            name: None,
            version: None,
            api_version: None,
            sha256: None,
            image: None,
            dependencies: Vec::new(),
            declared: Vec::new(),
            granted: Vec::new(),
            problems: Vec::new(),
        };
        // The checks of a first load that need only the bytes; the doctor always computes the
        // checksum an allowlist would need.
        let bytes = match preflight::read_checked(&file, allowlist.as_ref()) {
            Ok((facts, bytes)) => {
                d.sha256 = Some(facts.sha256);
                bytes
            }
            Err(error) => {
                d.is_plugin = is_plugin_error(&error);
                if let LoadError::NotAllowed { sha256, .. } = &error {
                    d.sha256 = Some(sha256.clone());
                }
                if matches!(
                    error,
                    LoadError::BadLibrary { .. }
                        | LoadError::WrongArchitecture { .. }
                        | LoadError::NotAPlugin { .. }
                        | LoadError::NotAllowed { .. }
                ) {
                    // A regular file (the checks before these found so): say what it is.
                    d.image = std::fs::read(&file)
                        .ok()
                        .and_then(|bytes| read_image(&bytes).0);
                }
                d.problems.push(problem(&error));
                out.push(d);
                continue;
            }
        };
        d.is_plugin = true;
        let (facts, header) = read_image(&bytes);
        d.image = facts;
        drop(bytes);
        if let Some(found) = header.filter(|h| !h.is_valid()) {
            // abi_stable would refuse it after opening it: refuse it without.
            let message = layout::header_mismatch(&found);
            d.problems.push(problem(&LoadError::AbiMismatch {
                path: file.clone(),
                full_report: message.clone(),
                message,
            }));
            out.push(d);
            continue;
        }
        if manifest_reader.is_some() {
            // Said once in the report; nothing more to learn per file.
            out.push(d);
            continue;
        }
        let sha256 = d.sha256.clone().unwrap_or_default();
        let origin = PluginSource::File(file.clone());
        let outcome = reader::read_in_child(&Request {
            program: worker_program,
            file: &file,
            shadow_dir,
            sha256: &sha256,
            deadline,
        });
        match outcome {
            Err(unavailable) => manifest_reader = Some(unavailable.to_string()),
            Ok(Outcome::Manifest(json)) => match library::parse_manifest(&origin, &json) {
                Ok((manifest, version)) => {
                    d.name = Some(manifest.name.clone());
                    d.version = Some(manifest.version.clone());
                    d.api_version = Some(manifest.api_version.clone());
                    d.dependencies = manifest
                        .dependencies
                        .iter()
                        .map(|x| format!("{} {}", x.name, x.requirement))
                        .collect();
                    d.declared = manifest.declared_capabilities();
                    d.granted = config.plugin(&manifest.name).grant(&d.declared);
                    for missing in d.declared.iter().filter(|c| !d.granted.contains(c)) {
                        d.problems.push(Problem {
                            detail: None,
                            error: format!("capability {missing} is declared but not granted by the host config"),
                            fix: format!("grant it under [plugins.{}] or accept that the plugin gets permission-denied errors when it uses it", manifest.name),
                        });
                    }
                    read.push((out.len(), manifest, version));
                }
                Err(error) => d.problems.push(problem(&error)),
            },
            Ok(Outcome::Refused { problem, is_plugin }) => {
                d.is_plugin = is_plugin;
                d.problems.push(problem);
            }
            Ok(Outcome::Changed) => d.problems.push(Problem {
                error: format!(
                    "{} changed while the doctor examined it; its manifest was not read",
                    file.display()
                ),
                fix: "run the doctor again once the file is complete".to_owned(),
                detail: None,
            }),
            Ok(Outcome::TimedOut) => d.problems.push(Problem {
                error: format!(
                    "{}: manifest() did not return within {}; the reader was killed",
                    file.display(),
                    reader::seconds(deadline)
                ),
                fix: "fix the plugin's manifest(): it must return at once (a host loading it \
                      would give up on it at its deadline and leave a thread stuck in it)"
                    .to_owned(),
                detail: None,
            }),
            Ok(Outcome::Ended { how, stderr }) => d.problems.push(Problem {
                error: format!("{}: the manifest reader {how}", file.display()),
                fix: "fix or remove the plugin: opening it or calling its manifest() ends the \
                      process, and loading it would end the host the same way"
                    .to_owned(),
                detail: (!stderr.is_empty()).then_some(stderr),
            }),
        }
        out.push(d);
    }
    progress.report(LoadStage::Examining, total, total);
    // Would they load together? The same admission as a real load, from an empty host.
    let admission = {
        let disabled = |name: &str| !config.plugin(name).enabled;
        let world = World {
            host_version: &host_version,
            running: &[],
            quarantined: &[],
            disabled: &disabled,
            allow_wildcard: config.allow_wildcard,
            replacing: None,
            registered_providers: &[],
        };
        let sources: Vec<PluginSource> = read
            .iter()
            .map(|(k, _, _)| out[*k].file.clone().into())
            .collect();
        let proposals: Vec<Proposal<'_>> = read
            .iter()
            .zip(&sources)
            .map(|((_, manifest, version), source)| Proposal {
                source,
                manifest,
                version,
            })
            .collect();
        admit::admit(&world, &proposals)
    };
    for (k, error) in &admission.refused {
        out[read[*k].0].problems.push(problem(error));
    }
    let activation_order = admission
        .order
        .iter()
        .map(|&k| read[k].1.name.clone())
        .collect();
    Ok(DoctorReport {
        folder: dir.to_owned(),
        host_version: host_version.to_string(),
        api_version: plugin_api::API_VERSION.to_owned(),
        files: out,
        activation_order,
        manifest_reader,
    })
}

/// What `bytes` say as a library of any format (`None` when they are none), and the abi_stable
/// header at the root symbol when it can be read from them.
fn read_image(bytes: &[u8]) -> (Option<ImageFacts>, Option<AbiHeader>) {
    let Ok(file) = object::File::parse(bytes) else {
        return (None, None);
    };
    let exports: Vec<object::Export<'_>> = file
        .exports()
        .map(|all| all.filter_map(Result::ok).collect())
        .unwrap_or_default();
    let root = exports.iter().find(|export| {
        let root = image::ROOT_SYMBOL.as_bytes();
        matches!(export.name(), object::NameOrOrdinal::Name(name)
            if name == root || name.strip_prefix(b"_") == Some(root))
    });
    let header = root.and_then(|export| match export.target() {
        object::ExportTarget::Address { address } => header_at(&file, address),
        _ => None,
    });
    let facts = ImageFacts {
        format: image::format_name(file.format()).to_owned(),
        architecture: image::architecture_name(file.architecture()),
        segments: file.segments().count(),
        exports: exports.len(),
        exports_root: root.is_some(),
        abi_stable: header.map(|h| {
            if h.magic_string == AbiHeader::VALUE.magic_string {
                format!("{}.{}", h.abi_major, h.abi_minor)
            } else {
                "unknown header".to_owned()
            }
        }),
    };
    (Some(facts), header)
}

/// abi_stable's `AbiHeader` (a 32-byte magic string and two `u32`, `repr(C)`) as stored at
/// `address` in the file: plain bytes, which the dynamic linker does not relocate.
fn header_at(file: &object::File<'_>, address: u64) -> Option<AbiHeader> {
    const MAGIC: usize = 32;
    let size = (MAGIC + 8) as u64;
    let data = file.sections().find_map(|section| {
        let start = section.address();
        let inside = address >= start && address.checked_add(size)? <= start + section.size();
        inside.then(|| section.data_range(address, size).ok().flatten())?
    })?;
    let word = |at: usize| -> Option<u32> {
        let four: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
        Some(if file.is_little_endian() {
            u32::from_le_bytes(four)
        } else {
            u32::from_be_bytes(four)
        })
    };
    let mut header = AbiHeader::VALUE;
    header.magic_string.copy_from_slice(data.get(..MAGIC)?);
    header.abi_major = word(MAGIC)?;
    header.abi_minor = word(MAGIC + 4)?;
    Some(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::test_support;

    #[test]
    fn a_plugin_s_bytes_show_its_format_exports_and_abi_stable_header() {
        let (facts, header) = read_image(test_support::plugin_bytes());
        let facts = facts.expect("a library");
        let header = header.expect("the header at the root symbol");
        assert!(header.is_valid(), "{header:?}");
        assert!(facts.exports_root, "{facts:?}");
        assert!(facts.segments > 0 && facts.exports > 0, "{facts:?}");
        assert_eq!(facts.architecture, std::env::consts::ARCH);
        let host = AbiHeader::VALUE;
        assert_eq!(
            facts.abi_stable,
            Some(format!("{}.{}", host.abi_major, host.abi_minor))
        );
    }

    #[test]
    fn a_library_without_the_root_symbol_has_no_header() {
        let Some((_, bytes)) = test_support::system_library() else {
            return;
        };
        let (facts, header) = read_image(bytes);
        let facts = facts.expect("a library");
        assert!(
            !facts.exports_root && facts.abi_stable.is_none(),
            "{facts:?}"
        );
        assert!(header.is_none());
    }

    #[test]
    fn text_is_no_image() {
        let (facts, header) = read_image(b"not a library\n");
        assert!(facts.is_none() && header.is_none());
    }
}
