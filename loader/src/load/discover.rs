//! Finding candidate plugin files in a folder.
//!
//! A candidate is any entry whose name looks like a shared library of this platform
//! (`lib*.so` on Linux, `lib*.dylib` on macOS, `*.dll` on Windows). Discovery only looks at names:
//! symlinks, folders and other odd entries with such a name are returned too, so that
//! [`preflight`](crate::load::preflight::preflight) refuses them with an error the user can see instead
//! of the file being skipped without a word.

use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::error::LoadError;

/// Candidate plugin files directly in `dir` (not in sub-folders), sorted by file name.
///
/// A name is a candidate when [`is_candidate`] accepts it. Entries are not opened or stat'ed, so
/// symlinks and non-regular entries with a library name are included; preflight refuses them.
///
/// # Errors
///
/// [`LoadError::Io`] naming `dir` if the folder cannot be listed.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let io_error = |source| LoadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        if is_candidate_name(&entry.file_name()) {
            found.push(entry.path());
        }
    }
    // Load order must not depend on the order the file system happens to list entries in.
    found.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(found)
}

/// Whether `path`'s file name looks like a plugin library of this platform.
///
/// Used by [`discover`] and by the folder watcher. Accepts names that start with
/// [`DLL_PREFIX`] and end with [`DLL_SUFFIX`] with something in between, and refuses hidden files
/// (leading `.`) and editor or download leftovers (leading `#` or `~`, trailing `~` or `#`).
/// Only the name is looked at; the file need not exist.
pub fn is_candidate(path: &Path) -> bool {
    path.file_name().is_some_and(is_candidate_name)
}

/// The file name cargo gives the cdylib of crate `crate_name` on this platform.
///
/// Dashes become underscores, as cargo does: `"hello-world"` gives `libhello_world.so` on Linux,
/// `libhello_world.dylib` on macOS and `hello_world.dll` on Windows.
pub fn library_file_name(crate_name: &str) -> String {
    format!("{DLL_PREFIX}{}{DLL_SUFFIX}", crate_name.replace('-', "_"))
}

fn is_candidate_name(name: &OsStr) -> bool {
    // Prefix and suffix are ASCII, so comparing the encoded bytes is exact on every platform and
    // does not drop names that are not UTF-8.
    let name = name.as_encoded_bytes();
    let (prefix, suffix) = (DLL_PREFIX.as_bytes(), DLL_SUFFIX.as_bytes());
    if name.len() <= prefix.len() + suffix.len() || !name.starts_with(prefix) {
        return false;
    }
    let (stem, tail) = name.split_at(name.len() - suffix.len());
    // Windows and macOS file systems usually ignore case; `Greeter.DLL` is the same library.
    let suffix_matches = if cfg!(any(windows, target_os = "macos")) {
        tail.eq_ignore_ascii_case(suffix)
    } else {
        tail == suffix
    };
    let leftover = matches!(name.first(), Some(b'.' | b'#' | b'~'))
        || matches!(stem.last(), Some(b'~' | b'#'));
    suffix_matches && !leftover
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn lib(name: &str) -> String {
        format!("{DLL_PREFIX}{name}{DLL_SUFFIX}")
    }

    #[test]
    fn library_file_name_follows_cargo() {
        assert_eq!(library_file_name("greeter"), lib("greeter"));
        assert_eq!(library_file_name("hello-big-world"), lib("hello_big_world"));
        #[cfg(target_os = "linux")]
        assert_eq!(library_file_name("greeter"), "libgreeter.so");
    }

    #[test]
    fn candidate_names() {
        assert!(is_candidate(Path::new(&lib("a"))));
        assert!(is_candidate(&Path::new("/some/dir").join(lib("greeter"))));
        for name in [
            "notes.txt".to_owned(),
            lib(""),
            format!(".{}", lib("hidden")),
            format!(".#{}", lib("emacs_lock")),
            format!("#{}#", lib("emacs_autosave")),
            format!("{}~", lib("backup")),
            format!("{}.swp", lib("vim")),
            format!("{}.part", lib("download")),
            format!("{DLL_PREFIX}tilde~{DLL_SUFFIX}"),
            format!("{}.1", lib("versioned")),
        ] {
            assert!(!is_candidate(Path::new(&name)), "{name} accepted");
        }
        assert!(!is_candidate(Path::new("/")));
        assert!(!is_candidate(Path::new("")));
    }

    #[test]
    fn discover_sorts_and_filters() {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in [
            lib("zeta"),
            lib("alpha"),
            lib("mid-dle"),
            "readme.md".to_owned(),
            format!(".{}", lib("hidden")),
            format!("{}~", lib("alpha")),
            format!("{}.tmp", lib("beta")),
        ] {
            fs::write(dir.path().join(name), b"x").expect("write");
        }
        // A folder with a library name is reported (preflight refuses it); its contents are not.
        let nested = dir.path().join(lib("folder"));
        fs::create_dir(&nested).expect("mkdir");
        fs::write(nested.join(lib("inner")), b"x").expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join(lib("alpha")), dir.path().join(lib("link")))
            .expect("symlink");

        let found = discover(dir.path()).expect("discover");
        let names: Vec<String> = found
            .iter()
            .map(|p| {
                assert_eq!(p.parent(), Some(dir.path()));
                p.file_name()
                    .expect("file name")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let mut expected = vec![lib("alpha"), lib("folder"), lib("mid-dle"), lib("zeta")];
        if cfg!(unix) {
            expected.push(lib("link"));
        }
        expected.sort();
        assert_eq!(names, expected);
    }

    #[test]
    fn discover_empty_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(discover(dir.path()).expect("discover").is_empty());
    }

    #[test]
    fn discover_missing_folder_names_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nope");
        match discover(&missing) {
            Err(LoadError::Io { path, source }) => {
                assert_eq!(path, missing);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected LoadError::Io, got {other:?}"),
        }
    }

    #[test]
    fn discover_a_file_is_an_io_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("file");
        fs::write(&file, b"x").expect("write");
        assert!(matches!(discover(&file), Err(LoadError::Io { path, .. }) if path == file));
    }
}
