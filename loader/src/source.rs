//! Where a plugin's code comes from: a library file, or a module compiled into the application.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// Where a plugin's code comes from. Errors and reports name it, so a plugin compiled into the
/// application ([`Host::register_static`](crate::Host::register_static)) is told apart from a
/// file by its type, not by a made-up path.
///
/// ```
/// use loader::PluginSource;
/// use std::path::Path;
///
/// let file = PluginSource::from(Path::new("plugins/libgreeter.so"));
/// assert_eq!(file.file(), Some(Path::new("plugins/libgreeter.so")));
/// assert_eq!(file.to_string(), "plugins/libgreeter.so");
/// assert_eq!(PluginSource::CompiledIn.file(), None);
/// assert_eq!(PluginSource::CompiledIn.to_string(), "compiled-in module");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginSource {
    /// A library file: the file in the plugins folder, not the private copy that was opened.
    File(PathBuf),
    /// A module compiled into the application; it has no file.
    CompiledIn,
}

impl PluginSource {
    /// The file, for a plugin loaded from one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            PluginSource::File(path) => Some(path),
            PluginSource::CompiledIn => None,
        }
    }
}

impl fmt::Display for PluginSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginSource::File(path) => path.display().fmt(f),
            PluginSource::CompiledIn => f.write_str("compiled-in module"),
        }
    }
}

impl From<PathBuf> for PluginSource {
    fn from(path: PathBuf) -> Self {
        PluginSource::File(path)
    }
}

impl From<&Path> for PluginSource {
    fn from(path: &Path) -> Self {
        PluginSource::File(path.to_owned())
    }
}

/// A source equals a path when it is that file.
impl PartialEq<Path> for PluginSource {
    fn eq(&self, other: &Path) -> bool {
        self.file() == Some(other)
    }
}

/// A source equals a path when it is that file.
impl PartialEq<PathBuf> for PluginSource {
    fn eq(&self, other: &PathBuf) -> bool {
        self.file() == Some(other.as_path())
    }
}
