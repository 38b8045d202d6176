//! The private folder that shadow copies are made in, and the copies' names.
//!
//! Every load opens a fresh copy of the plugin file (the same path would return the old image;
//! overwriting a mapped file crashes the host). Whoever can write that folder can swap the code
//! the host is about to run, so the folder must be the host user's alone:
//!
//! - [`ShadowDir::private`] makes a new folder with a random name (`native-plugins-XXXXXXXXXXXX`
//!   in the temporary folder) and mode 0700, for hosts without a data folder;
//! - [`ShadowDir::at`] uses a given folder (a data folder's `shadow/`), creating it with mode 0700
//!   if missing, and [`ensure_private`] refuses one that is a symlink, is owned by another user
//!   or is writable by group or others; the loader runs that check before every copy;
//! - copy names carry random characters ([`new_copy`]), never the process id: Wine gives the
//!   first process the same pid on every run, and a Windows copy that is still mapped cannot be
//!   deleted, so pid-based names collide with the last run's leftovers;
//! - [`remove_stale`] deletes `native-plugins-*` folders whose host is gone (Windows cannot
//!   delete a mapped DLL, so a host leaves its copies behind). A host holds a lock on the
//!   folder's marker file for as long as it lives; a folder whose marker can be locked belongs to
//!   a dead process. Folders without a marker are never touched, and a folder is removed marker
//!   last ([`remove_all_but_marker`]): one whose copies cannot all be deleted yet keeps its
//!   marker, so that a later host removes it.

use std::{
    env::consts::DLL_SUFFIX,
    fs::{self, File},
    io::Write as _,
    path::{Path, PathBuf},
};

use tempfile::TempPath;

use crate::error::LoadError;

/// Name prefix of the folders [`ShadowDir::private`] creates (and [`remove_stale`] looks at).
pub const SHADOW_PREFIX: &str = "native-plugins-";

/// The marker file in a private shadow folder: holds the owner's pid (for people) and is locked
/// by the owner while it lives (for [`remove_stale`]).
const MARKER: &str = ".owner";

/// Random characters in folder and copy names.
const RANDOM_CHARS: usize = 12;

/// A shadow folder checked to be private to this host's user: a new one with a random name and
/// mode 0700 ([`ShadowDir::private`]), or a given one checked by [`ensure_private`]
/// ([`ShadowDir::at`]). Copies in it get random names; [`remove_stale`] removes the folders of
/// hosts that are gone.
///
/// A folder made by [`ShadowDir::private`] is removed when this is dropped. On Windows a copy
/// that is still mapped cannot be deleted: the folder then stays with its marker, and
/// [`remove_stale`] in a later host removes it once this process is gone.
#[derive(Debug)]
pub struct ShadowDir {
    path: PathBuf,
    /// For a private folder: the marker file, locked while this host lives.
    marker: Option<File>,
}

impl ShadowDir {
    /// Creates a new private shadow folder in the system's temporary folder (see
    /// [`ShadowDir::private_in`]).
    ///
    /// # Errors
    /// As [`ShadowDir::private_in`].
    pub fn private() -> Result<ShadowDir, LoadError> {
        ShadowDir::private_in(&std::env::temp_dir())
    }

    /// Creates a new folder in `parent` named [`SHADOW_PREFIX`] and random characters, with
    /// mode 0700, checks that it is owned by this process's user and private, and locks a marker
    /// file in it that says the folder is in use.
    ///
    /// # Errors
    /// [`LoadError::Io`] if the folder or its marker cannot be created;
    /// [`LoadError::UnsafeShadowDir`] if the new folder is somehow not private (a file system
    /// that ignores the mode, for example).
    pub fn private_in(parent: &Path) -> Result<ShadowDir, LoadError> {
        let mut builder = tempfile::Builder::new();
        builder.prefix(SHADOW_PREFIX).rand_bytes(RANDOM_CHARS);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(fs::Permissions::from_mode(0o700));
        }
        let temp = builder.tempdir_in(parent).map_err(|source| LoadError::Io {
            path: parent.to_owned(),
            source,
        })?;
        ensure_private(temp.path())?;
        let marker = lock_marker(temp.path())?;
        // From here on `Drop for ShadowDir` removes the folder, marker last (`TempDir` would
        // delete the marker even when mapped copies keep the folder alive).
        Ok(ShadowDir {
            path: temp.keep(),
            marker: Some(marker),
        })
    }

    /// Uses `dir` (for example `<data>/shadow`), creating it (and missing parents) with mode
    /// 0700 if it does not exist, after [`ensure_private`]. The folder is kept when this is
    /// dropped.
    ///
    /// # Errors
    /// As [`ensure_private`].
    ///
    /// # Platform-specific behaviour
    /// On Windows it also removes the copies earlier runs left in it
    /// ([`remove_leftover_copies`]): a copy another process still maps cannot be deleted and
    /// stays, one being checked is held open without delete sharing and stays too.
    pub fn at(dir: &Path) -> Result<ShadowDir, LoadError> {
        ensure_private(dir)?;
        #[cfg(windows)]
        remove_leftover_copies(dir);
        Ok(ShadowDir {
            path: dir.to_owned(),
            marker: None,
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ShadowDir {
    fn drop(&mut self) {
        let Some(marker) = self.marker.take() else {
            return;
        };
        // The copies go while the marker is still locked, so no other host looks at the folder
        // meanwhile; the handle is closed before the marker itself is deleted.
        let copies = remove_all_but_marker(&self.path);
        drop(marker);
        if let Err(e) = copies.and_then(|()| fs::remove_dir_all(&self.path)) {
            log::debug!(
                "shadow folder {} stays until a later host removes it: {e}",
                self.path.display()
            );
        }
    }
}

/// Removes everything in a private shadow folder but its marker, so that a folder that keeps a
/// copy (mapped by a live process, on Windows) keeps its marker too and [`remove_stale`] can
/// recognise it later. The caller removes the folder, marker included, only after this
/// succeeded.
///
/// # Errors
/// The first entry that could not be removed (the others are still tried).
fn remove_all_but_marker(dir: &Path) -> std::io::Result<()> {
    let mut first_error = None;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == MARKER {
            continue;
        }
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(entry.path()),
            _ => fs::remove_file(entry.path()),
        };
        if let Err(e) = removed {
            first_error.get_or_insert(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", entry.path().display()),
            ));
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Creates `dir` with mode 0700 if it does not exist, then refuses it unless it is a real folder
/// (not a symlink) owned by this process's effective user and not writable by group or others.
///
/// Cheap (one `lstat`), so the loader runs it before every copy.
///
/// # Errors
/// [`LoadError::UnsafeShadowDir`] naming the folder, its owner uid and mode;
/// [`LoadError::Io`] if it cannot be created or inspected.
///
/// # Platform-specific behaviour
/// On Windows only "is a folder, not a link" is checked: the folder's ACL is not read.
pub fn ensure_private(dir: &Path) -> Result<(), LoadError> {
    let io_error = |source| LoadError::Io {
        path: dir.to_owned(),
        source,
    };
    let meta = match fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                builder.mode(0o700);
            }
            builder.create(dir).map_err(io_error)?;
            fs::symlink_metadata(dir).map_err(io_error)?
        }
        Err(e) => return Err(io_error(e)),
    };
    check_private(dir, &meta)
}

fn check_private(dir: &Path, meta: &fs::Metadata) -> Result<(), LoadError> {
    #[cfg(unix)]
    let (owner, mode) = {
        use std::os::unix::fs::MetadataExt;
        (Some(meta.uid()), Some(meta.mode() & 0o7777))
    };
    #[cfg(not(unix))]
    let (owner, mode) = (None, None);
    let refuse = |problem: String| LoadError::UnsafeShadowDir {
        path: dir.to_owned(),
        owner,
        mode,
        problem,
    };
    if meta.file_type().is_symlink() {
        return Err(refuse("is a symbolic link".to_owned()));
    }
    if !meta.is_dir() {
        return Err(refuse("is not a folder".to_owned()));
    }
    #[cfg(unix)]
    {
        let host_uid = rustix::process::geteuid().as_raw();
        if let (Some(owner), Some(mode)) = (owner, mode) {
            if owner != host_uid {
                return Err(refuse(format!(
                    "is owned by uid {owner}, not by this host's uid {host_uid} (mode {mode:o})"
                )));
            }
            if mode & 0o022 != 0 {
                return Err(refuse(format!(
                    "is writable by {} (owner uid {owner}, mode {mode:o})",
                    if mode & 0o002 != 0 {
                        "others"
                    } else {
                        "its group"
                    }
                )));
            }
        }
    }
    Ok(())
}

/// Writes this process's id to the marker file of a new private folder and locks it.
fn lock_marker(dir: &Path) -> Result<File, LoadError> {
    let path = dir.join(MARKER);
    let io_error = |source| LoadError::Io {
        path: path.clone(),
        source,
    };
    let mut marker = File::create_new(&path).map_err(io_error)?;
    writeln!(marker, "{}", std::process::id()).map_err(io_error)?;
    // A file system without locks leaves the folder unlocked: `remove_stale` then cannot lock
    // it either (it gets an error, not a lock) and leaves it alone.
    if let Err(e) = marker.try_lock() {
        log::debug!("cannot lock {}: {e}", path.display());
    }
    Ok(marker)
}

/// Removes the private shadow folders in `parent` (the system's temporary folder, for hosts
/// that use [`ShadowDir::private`]) whose host process is gone, and returns them.
///
/// A folder is removed only when its name starts with [`SHADOW_PREFIX`], it is a real folder,
/// it holds a marker file, and that marker can be locked (its host holds the lock while it
/// lives; the system drops it when the process ends, however it ends). On Unix the folder must
/// also be owned by this process's user. Anything that cannot be removed is left (a copy another
/// process still maps, on Windows) and tried again next time. Never fails: cleanup must not stop
/// a host from starting.
pub fn remove_stale(parent: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(SHADOW_PREFIX) {
            continue;
        }
        let dir = entry.path();
        let Ok(meta) = fs::symlink_metadata(&dir) else {
            continue;
        };
        if check_private(&dir, &meta).is_err() {
            continue;
        }
        let Ok(marker) = File::open(dir.join(MARKER)) else {
            continue;
        };
        if marker.try_lock().is_err() {
            // Held by a live host, or a file system without locks: leave it.
            continue;
        }
        let copies = remove_all_but_marker(&dir);
        drop(marker);
        match copies.and_then(|()| fs::remove_dir_all(&dir)) {
            Ok(()) => removed.push(dir),
            Err(e) => log::debug!("cannot remove stale shadow folder {}: {e}", dir.display()),
        }
    }
    removed
}

/// Removes the files in `dir` named like the private copies this module makes (`<stem>-<random>` and
/// this platform's library suffix) and returns them; files that cannot be removed (mapped by a
/// live process, on Windows) and other files are left. Never fails.
///
/// On Windows [`ShadowDir::at`] runs it. Elsewhere a copy is unlinked as soon as it is mapped,
/// so only a host that crashed between copying and opening leaves one; on macOS removing a copy
/// another host is about to open by path would fail that load, so it is not run there.
pub fn remove_leftover_copies(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(stem) = name.strip_suffix(DLL_SUFFIX) else {
            continue;
        };
        let looks_like_a_copy = stem
            .rsplit_once('-')
            .is_some_and(|(_, random)| random.chars().count() == RANDOM_CHARS);
        if !looks_like_a_copy || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// A new, empty file in `dir` for a copy of `source`: `<stem>-<random><DLL_SUFFIX>`, created
/// exclusively (never an existing file, never through a symlink), mode 0600 on Unix. The path
/// is removed when the returned [`TempPath`] is dropped.
///
/// # Errors
/// [`LoadError::Io`] naming `dir`.
pub(crate) fn new_copy(dir: &Path, source: &Path) -> Result<(File, TempPath), LoadError> {
    let stem = source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_owned());
    tempfile::Builder::new()
        .prefix(&format!("{stem}-"))
        .suffix(DLL_SUFFIX)
        .rand_bytes(RANDOM_CHARS)
        .tempfile_in(dir)
        .map(tempfile::NamedTempFile::into_parts)
        .map_err(|source| LoadError::Io {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_folders_are_random_private_and_removed_on_drop() {
        let parent = tempfile::tempdir().expect("temp dir");
        let a = ShadowDir::private_in(parent.path()).expect("private folder");
        let b = ShadowDir::private_in(parent.path()).expect("private folder");
        assert_ne!(a.path(), b.path());
        let name = a
            .path()
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with(SHADOW_PREFIX), "{name}");
        assert_eq!(name.len(), SHADOW_PREFIX.len() + RANDOM_CHARS);
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let meta = fs::metadata(a.path()).expect("stat");
            assert_eq!(meta.mode() & 0o7777, 0o700);
            assert_eq!(meta.uid(), rustix::process::geteuid().as_raw());
        }
        let pid = fs::read_to_string(a.path().join(MARKER)).expect("marker");
        assert_eq!(pid.trim(), std::process::id().to_string());
        let path = a.path().to_owned();
        drop(a);
        assert!(!path.exists());
        assert!(b.path().exists());
    }

    #[test]
    fn live_folders_are_kept_and_dead_ones_removed() {
        let parent = tempfile::tempdir().expect("temp dir");
        let live = ShadowDir::private_in(parent.path()).expect("private folder");
        // A folder left by a host that is gone: same layout, marker not locked.
        let dead = parent.path().join(format!("{SHADOW_PREFIX}deadbeef0000"));
        fs::create_dir(&dead).expect("mkdir");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&dead, fs::Permissions::from_mode(0o700)).expect("chmod");
        }
        fs::write(dead.join(MARKER), "4242\n").expect("marker");
        fs::write(dead.join("libleft-over.so"), b"x").expect("copy");
        // Not ours to judge: no marker, or another name.
        let unmarked = parent.path().join(format!("{SHADOW_PREFIX}1234-0"));
        fs::create_dir(&unmarked).expect("mkdir");
        let other = parent.path().join("something-else");
        fs::create_dir(&other).expect("mkdir");
        fs::write(other.join(MARKER), "1\n").expect("marker");

        let removed = remove_stale(parent.path());
        assert_eq!(removed, vec![dead.clone()]);
        assert!(!dead.exists());
        assert!(live.path().exists(), "a live host's folder is kept");
        assert!(unmarked.exists() && other.exists());
        assert!(remove_stale(parent.path()).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn shared_or_linked_folders_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().expect("temp dir");
        let dir = parent.path().join("shadow");
        ensure_private(&dir).expect("created");
        let meta = fs::metadata(&dir).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        ensure_private(&dir).expect("still private");
        for (mode, word) in [(0o777, "others"), (0o770, "group"), (0o702, "others")] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).expect("chmod");
            match ensure_private(&dir) {
                Err(e @ LoadError::UnsafeShadowDir { .. }) => {
                    let text = e.to_string();
                    assert!(
                        text.contains(&dir.display().to_string())
                            && text.contains(&format!("{mode:o}"))
                            && text.contains(word)
                            && text.contains("uid"),
                        "{text}"
                    );
                }
                other => panic!("mode {mode:o}: expected UnsafeShadowDir, got {other:?}"),
            }
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod");
        let link = parent.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).expect("symlink");
        assert!(matches!(
            ensure_private(&link),
            Err(LoadError::UnsafeShadowDir { problem, .. }) if problem.contains("symbolic link")
        ));
    }

    #[test]
    fn leftover_copies_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = Path::new("/plugins").join(format!("libx{DLL_SUFFIX}"));
        let (_, copy) = new_copy(dir.path(), &source).expect("copy");
        let copy = copy.keep().expect("keep the copy");
        let others = [
            format!("libx-1234-0{DLL_SUFFIX}"),
            "notes.txt".to_owned(),
            format!("libx{DLL_SUFFIX}"),
        ];
        for other in &others {
            fs::write(dir.path().join(other), b"x").expect("write");
        }
        assert_eq!(remove_leftover_copies(dir.path()), vec![copy.clone()]);
        assert!(!copy.exists());
        for other in &others {
            assert!(dir.path().join(other).exists(), "{other}");
        }
    }

    #[test]
    fn copies_get_fresh_random_names() {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = Path::new("/plugins").join(format!("libx{DLL_SUFFIX}"));
        let (_, a) = new_copy(dir.path(), &source).expect("copy");
        let (_, b) = new_copy(dir.path(), &source).expect("copy");
        assert_ne!(a.to_path_buf(), b.to_path_buf());
        let name = a.file_name().expect("name").to_string_lossy().into_owned();
        assert!(
            name.starts_with("libx-") && name.ends_with(DLL_SUFFIX),
            "{name}"
        );
        let path = a.to_path_buf();
        drop(a);
        assert!(!path.exists(), "removed with its TempPath");
    }
}
