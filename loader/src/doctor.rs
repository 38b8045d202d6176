//! A preflight report of a plugins folder that activates nothing: what `demo-app doctor` prints.
//!
//! Each file goes through the same checks as a real load (including dlopen of a shadow copy and
//! reading the manifest), then the set goes through the same admission as a real load
//! (`plan::admit`: duplicates, the host config, host requirements, dependencies, providers), so
//! "would it load" is answered by the code that decides it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{
    config::{HostConfig, HOST_VERSION},
    error::LoadError,
    load::discover,
    load::library::{self, PluginLibrary},
    load::preflight::Checksum,
    plan::admit::{self, Proposal, World},
};

/// One problem and how to fix it.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// What is wrong.
    pub error: String,
    /// What to do about it.
    pub fix: String,
    /// The long form, when there is one (abi_stable's full layout report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What the doctor found about one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileDiagnosis {
    /// The file.
    pub file: PathBuf,
    /// Whether it is a loadable plugin library at all.
    pub is_plugin: bool,
    /// Plugin name, if the manifest was read.
    pub name: Option<String>,
    /// Plugin version.
    pub version: Option<String>,
    /// plugin-api version it was built against.
    pub api_version: Option<String>,
    /// SHA-256 of the file.
    pub sha256: Option<String>,
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
}

impl DoctorReport {
    /// Whether every file would load and activate (activation itself is not tried).
    pub fn is_healthy(&self) -> bool {
        self.files.iter().all(|f| f.problems.is_empty())
    }
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
        LoadError::InterfaceVersion { host, .. } => format!("rebuild the plugin against plugin-api {host}"),
        LoadError::AbiMismatch { .. } => "rebuild the plugin against this host's plugin-api".into(),
        LoadError::PanicAbort { .. } => "remove `panic = \"abort\"` from the plugin's build profile".into(),
        LoadError::Manifest { .. } => "fix the plugin's manifest (name: a-z, 0-9, '-', '_')".into(),
        LoadError::BadVersion { .. } => "give the plugin a semver version (for example 0.1.0)".into(),
        LoadError::HostRequirement { host, .. } => format!("use a plugin build whose host requirement accepts {host}"),
        LoadError::Duplicate { path, .. } => format!("remove one of the two files ({})", path.display()),
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

fn problem(error: &LoadError) -> Problem {
    Problem {
        error: error.to_string(),
        fix: fix_for(error),
        detail: match error {
            LoadError::AbiMismatch { full_report, .. } => Some(full_report.clone()),
            _ => None,
        },
    }
}

/// Examines every candidate file in `dir` under `config`, activating nothing.
///
/// # Errors
/// Only when `dir` cannot be listed.
pub fn diagnose(
    dir: &Path,
    config: &HostConfig,
    shadow_dir: &Path,
) -> Result<DoctorReport, LoadError> {
    let files = discover::discover(dir)?;
    let allowlist = config.allowlist_set();
    let host_version =
        semver::Version::parse(HOST_VERSION).unwrap_or(semver::Version::new(0, 0, 0));
    let manifest_deadline = std::time::Duration::from_millis(config.activation_timeout_ms.max(1));
    let mut out: Vec<FileDiagnosis> = Vec::new();
    let mut libs: Vec<(usize, PluginLibrary)> = Vec::new();
    for file in files {
        let mut d = FileDiagnosis {
            file: file.clone(),
            is_plugin: false,
            name: None,
            version: None,
            api_version: None,
            sha256: None,
            dependencies: Vec::new(),
            declared: Vec::new(),
            granted: Vec::new(),
            problems: Vec::new(),
        };
        // The doctor always shows the checksum an allowlist would need.
        let loaded =
            library::ShadowCopy::make(&file, shadow_dir, allowlist.as_ref(), Checksum::Always)
                .and_then(|copy| copy.open_with(manifest_deadline));
        match loaded {
            Ok(lib) => {
                let m = &lib.manifest;
                d.is_plugin = true;
                d.name = Some(m.name.clone());
                d.version = Some(m.version.clone());
                d.api_version = Some(m.api_version.clone());
                d.sha256 = lib.sha256.clone();
                d.dependencies = m
                    .dependencies
                    .iter()
                    .map(|x| format!("{} {}", x.name, x.requirement))
                    .collect();
                d.declared = m.declared_capabilities();
                let settings = config.plugin(&m.name);
                d.granted = settings.grant(&d.declared);
                for missing in d.declared.iter().filter(|c| !d.granted.contains(c)) {
                    d.problems.push(Problem {
                        detail: None,
                        error: format!("capability {missing} is declared but not granted by the host config"),
                        fix: format!("grant it under [plugins.{}] or accept that the plugin gets permission-denied errors when it uses it", m.name),
                    });
                }
                libs.push((out.len(), lib));
            }
            Err(error) => {
                d.is_plugin = !matches!(
                    error,
                    LoadError::NotAPlugin { .. }
                        | LoadError::Open { .. }
                        | LoadError::BadLibrary { .. }
                );
                d.problems.push(problem(&error));
            }
        }
        out.push(d);
    }
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
        };
        let proposals: Vec<Proposal<'_>> = libs
            .iter()
            .map(|(_, l)| Proposal {
                source: &l.source,
                manifest: &l.manifest,
                version: &l.version,
            })
            .collect();
        admit::admit(&world, &proposals)
    };
    for (k, error) in &admission.refused {
        out[libs[*k].0].problems.push(problem(error));
    }
    let activation_order = admission
        .order
        .iter()
        .map(|&k| libs[k].1.manifest.name.clone())
        .collect();
    Ok(DoctorReport {
        folder: dir.to_owned(),
        host_version: host_version.to_string(),
        api_version: plugin_api::API_VERSION.to_owned(),
        files: out,
        activation_order,
    })
}
