//! Opening a plugin file for the host: in this process, or, when the plugin may run isolated,
//! no further than its bytes, with its manifest read by a worker process.
//!
//! A plugin that runs in a worker process must not run anything in the host either: opening a
//! library runs its initialisers, and reading its manifest runs `manifest()`. So while any
//! plugin is configured to run isolated, every file's manifest is read by a worker (the
//! doctor's manifest reader, `doctor/reader.rs`), since the plugin a file holds is known only
//! from it; the file is then opened in the host only if that plugin runs in process. This costs
//! one short-lived process per file, and only in hosts that isolate something.

use std::path::Path;

use super::Lifecycle;
use crate::{
    config::Isolation,
    doctor::reader::{self, Outcome, Request},
    error::LoadError,
    load::{
        library::{self, PluginLibrary, ShadowCopy},
        preflight::Checksum,
    },
    source::PluginSource,
};

impl Lifecycle {
    /// Whether any plugin may run isolated (the host-wide default, or any plugin's settings).
    fn may_isolate(&self) -> bool {
        self.config.isolation == Isolation::Process
            || self
                .config
                .plugins
                .values()
                .any(|p| p.isolation == Some(Isolation::Process))
    }

    /// The checked private copy of `path` (with its SHA-256 when a worker is to read it).
    ///
    /// # Errors
    /// As [`ShadowCopy::make`].
    pub(super) fn copy_checked(&self, path: &Path) -> Result<ShadowCopy, LoadError> {
        let checksum = if self.may_isolate() {
            Checksum::Always
        } else {
            Checksum::IfAllowlisted
        };
        ShadowCopy::make(path, &self.shadow_dir, self.allowlist.as_ref(), checksum)
    }

    /// Opens a checked copy in this process; or, while any plugin may run isolated, has a
    /// worker read its manifest first, and opens it here only if the plugin it holds runs in
    /// process.
    ///
    /// # Errors
    /// As [`ShadowCopy::open_with`]; [`LoadError::ManifestInWorker`] when the worker refused
    /// the file, ended or could not start; [`LoadError::ManifestTimeout`] when it took too long.
    pub(super) fn open_copy(&self, copy: ShadowCopy) -> Result<PluginLibrary, LoadError> {
        let deadline = self.activation_deadline();
        if !self.may_isolate() {
            return copy.open_with(deadline);
        }
        let source = copy.source().to_owned();
        let in_worker = |message: String| LoadError::ManifestInWorker {
            path: source.clone(),
            message,
        };
        let sha256 = copy.facts.sha256.clone().unwrap_or_default();
        let outcome = reader::read_in_child(&Request {
            program: self.children.program.as_deref(),
            file: &source,
            shadow_dir: &self.shadow_dir,
            sha256: &sha256,
            deadline,
        })
        .map_err(|e| in_worker(e.to_string()))?;
        let json =
            match outcome {
                Outcome::Manifest(json) => json,
                Outcome::Refused { problem, .. } => return Err(in_worker(problem.error)),
                Outcome::Changed => return Err(in_worker(
                    "the file changed while it was being read; it is read again when it settles"
                        .to_owned(),
                )),
                Outcome::TimedOut => {
                    return Err(LoadError::ManifestTimeout {
                        origin: source.into(),
                        deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
                    })
                }
                Outcome::Ended { how, stderr } => {
                    let said = stderr.lines().rev().find(|l| !l.trim().is_empty());
                    return Err(in_worker(match said {
                        Some(line) => format!("the manifest reader {how} ({})", line.trim()),
                        None => format!("the manifest reader {how}"),
                    }));
                }
            };
        let origin = PluginSource::File(source);
        let (manifest, version) = library::parse_manifest(&origin, &json)?;
        if self.config.isolation_of(&manifest.name) == Isolation::Process {
            Ok(library::unopened_library(
                origin,
                manifest,
                version,
                copy.into_facts(),
            ))
        } else {
            copy.open_with(deadline)
        }
    }
}
