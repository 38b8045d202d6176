//! Checks made on a file before it is ever handed to the dynamic linker.
//!
//! dlopen runs the library's initialisers, and on a truncated ELF whose program headers are
//! intact but whose `PT_LOAD` data is cut off it kills the whole process with SIGBUS. So before a
//! file is opened as a library, [`preflight`] checks, in this order, that:
//!
//! 1. it is a regular file (not a symlink, folder, FIFO or device);
//! 2. on unix, neither the file nor its folder is world-writable;
//! 3. its bytes are a complete shared library of this platform's format and processor that
//!    exports the plugin root symbol ([`check_image`]);
//! 4. when an allowlist is configured, the SHA-256 of its contents is in it.
//!
//! The size, hashes and image checks all describe the same bytes. When the host loads a plugin
//! reads the file once, checks those bytes, and writes exactly them to a private copy in its
//! shadow folder, through the handle the copy is then opened by ([`copy_checked`]): the file
//! in the watched folder may still change after the check, and the copy's path could be
//! renamed, but the checked bytes are the mapped bytes. The SHA-256 is computed only when an allowlist asks for
//! it: on a release library that hash costs as much as the dlopen itself. A cheap 128-bit
//! [`fingerprint`] tells builds apart (hot reload skips a file whose contents did not change).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};
use tempfile::TempPath;

use crate::load::{
    image::{check_image, ImageProblem},
    shadow,
};

/// SHA-256 of `bytes`, lower-case hex (the form allowlists use).
pub fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// A 128-bit fingerprint of `bytes` (XXH3), lower-case hex: tells two builds of a plugin apart
/// at a small fraction of the cost of SHA-256. Not a security checksum: the allowlist uses
/// SHA-256.
pub fn fingerprint(bytes: &[u8]) -> String {
    to_hex(&xxhash_rust::xxh3::xxh3_128(bytes).to_be_bytes())
}

use crate::error::LoadError;

/// What preflight learned about a file that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preflight {
    /// File size in bytes (the number of bytes read, checked and hashed).
    pub size: u64,
    /// SHA-256 of the contents, lower-case hex.
    pub sha256: String,
}

/// Upper bound on what is reserved up front from the size the file system reports, so a bogus
/// size cannot make us allocate more than the file really holds; reading grows past it if needed.
const MAX_PREALLOCATION: usize = 64 << 20;

/// Checks `path` before it is dlopened and returns its size and SHA-256.
///
/// It checks, in this order: a regular file (not a symlink, folder, FIFO or device); on unix,
/// neither the file nor its folder world-writable; [`check_image`]; the allowlist.
/// `allowlist`, when given, holds SHA-256 hashes in hex; case is ignored.
///
/// # Errors
///
/// - [`LoadError::Io`] if the file or its folder cannot be read, or the file was replaced by
///   another one while it was being checked;
/// - [`LoadError::NotRegularFile`] for a symlink, folder, FIFO, socket or device;
/// - [`LoadError::WorldWritable`] naming the file or its folder, with its mode (unix only);
/// - [`LoadError::BadLibrary`] for an empty file, a truncated one or one that is not a shared
///   library of this platform's format, [`LoadError::WrongArchitecture`] for one built for
///   another processor, [`LoadError::NotAPlugin`] for one without the root symbol (see
///   [`check_image`]);
/// - [`LoadError::NotAllowed`] if `allowlist` is `Some` and does not contain the file's hash.
///
/// # Platform-specific behaviour
///
/// The world-writable checks run on unix only. The image format checked is ELF, PE or Mach-O
/// as the platform uses (see [`check_image`]).
pub fn preflight(path: &Path, allowlist: Option<&HashSet<String>>) -> Result<Preflight, LoadError> {
    read_checked(path, allowlist).map(|(facts, _)| facts)
}

/// [`preflight`], also returning the bytes it checked, so a caller can write exactly those bytes
/// to the copy it opens (one read of the file instead of two).
///
/// # Errors
/// As [`preflight`].
pub fn read_checked(
    path: &Path,
    allowlist: Option<&HashSet<String>>,
) -> Result<(Preflight, Vec<u8>), LoadError> {
    let (mut file, len) = open_checked(path)?;
    let mut bytes = Vec::with_capacity(reserve(len));
    file.read_to_end(&mut bytes).map_err(io_error(path))?;
    check_bytes(path, &bytes)?;
    let sha256 = sha256_hex(&bytes);
    check_allowlist(path, allowlist, &sha256)?;
    Ok((
        Preflight {
            size: bytes.len() as u64,
            sha256,
        },
        bytes,
    ))
}

/// When [`copy_checked`] computes the SHA-256 of a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checksum {
    /// Only to check it against an allowlist (loading: it costs about as much as the dlopen).
    IfAllowlisted,
    /// Always (the doctor shows it, so it can be added to an allowlist).
    Always,
}

/// What the loader learned about the private copy of a plugin file that passed every check.
#[derive(Debug, Clone)]
pub(crate) struct CopyFacts {
    /// [`fingerprint`] of the copy.
    pub fingerprint: String,
    /// SHA-256 of the copy, as [`Checksum`] asked.
    pub sha256: Option<String>,
}

/// A checked private copy of a plugin file: its path (removed when this is dropped) and an open
/// handle to the very file whose bytes were checked.
#[derive(Debug)]
pub(crate) struct CheckedCopy {
    /// The copy's path in the shadow folder.
    pub path: TempPath,
    /// The copy, open: what gets mapped (see [`open_image`](crate::load::open::open_image)).
    pub file: File,
    /// What the checks found.
    pub facts: CopyFacts,
}

/// The checks of [`preflight`], made on the bytes a private copy is written from: checks the
/// file in `path` (type, permissions) and that `shadow_dir` is private
/// ([`shadow::ensure_private`]), reads the file once, checks those bytes ([`check_image`],
/// allowlist) and fingerprints them, and only then writes exactly those bytes to a new file
/// with a random name there, through the handle the copy will be opened by. A file that fails
/// a check is never copied.
///
/// On Windows the copy is then reopened with share mode `FILE_SHARE_READ`, so nobody can
/// write, rename or delete it until it is mapped, and read back through that handle: the bytes
/// that will be mapped must be the bytes checked, and before the reopen another process of the
/// same user could have written to the copy.
///
/// # Errors
/// As [`preflight`], naming `path` (the copy is an implementation detail), plus
/// [`LoadError::UnsafeShadowDir`] and [`LoadError::Io`] for the shadow folder or the copy. A
/// partial copy is removed.
pub(crate) fn copy_checked(
    path: &Path,
    shadow_dir: &Path,
    allowlist: Option<&HashSet<String>>,
    checksum: Checksum,
) -> Result<CheckedCopy, LoadError> {
    let (mut source, len) = open_checked(path)?;
    shadow::ensure_private(shadow_dir)?;
    with_buffer(|bytes| {
        bytes.reserve(reserve(len));
        source.read_to_end(bytes).map_err(io_error(path))?;
        check_bytes(path, bytes)?;
        let sha256 = if allowlist.is_some() || checksum == Checksum::Always {
            let sha256 = sha256_hex(bytes);
            check_allowlist(path, allowlist, &sha256)?;
            Some(sha256)
        } else {
            None
        };
        let facts = CopyFacts {
            fingerprint: fingerprint(bytes),
            sha256,
        };
        let (mut file, copy) = shadow::new_copy(shadow_dir, path)?;
        file.write_all(bytes).map_err(io_error(&copy))?;
        let file = seal(file, &copy, bytes)?;
        Ok(CheckedCopy {
            path: copy,
            file,
            facts,
        })
    })
}

/// The most a thread keeps of its read buffer between two copies.
const KEPT_BUFFER: usize = 32 << 20;

thread_local! {
    /// The buffer a copy's bytes are read into for their checks, kept between copies: a fresh
    /// one would cost the kernel a page fault per 4 KiB of every library loaded.
    static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's empty read buffer (or a fresh one, if `f` runs inside itself).
fn with_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    BUFFER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bytes) => {
            bytes.clear();
            let r = f(&mut bytes);
            bytes.clear();
            if bytes.capacity() > KEPT_BUFFER {
                bytes.shrink_to(KEPT_BUFFER);
            }
            r
        }
        Err(_) => f(&mut Vec::new()),
    })
}

/// The handle the copy is opened by, once `bytes` are written to it: the same handle, at
/// offset 0.
#[cfg(not(windows))]
fn seal(mut file: File, copy: &Path, _bytes: &[u8]) -> Result<File, LoadError> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0)).map_err(io_error(copy))?;
    Ok(file)
}

/// The handle the copy is opened by, once `bytes` are written to it: read-only, sharing only
/// reads, so the file cannot change or move until it is mapped; what it holds is read back
/// through it and must be `bytes`.
#[cfg(windows)]
fn seal(file: File, copy: &Path, bytes: &[u8]) -> Result<File, LoadError> {
    use std::os::windows::fs::OpenOptionsExt;
    const FILE_SHARE_READ: u32 = 0x1;
    drop(file);
    let mut file = fs::OpenOptions::new()
        .read(true)
        .share_mode(FILE_SHARE_READ)
        .open(copy)
        .map_err(io_error(copy))?;
    let mut held = Vec::with_capacity(bytes.len());
    file.read_to_end(&mut held).map_err(io_error(copy))?;
    if held != bytes {
        return Err(io_error(copy)(std::io::Error::other(
            "the private copy changed between its write and its reopening",
        )));
    }
    Ok(file)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How much to reserve for a file the file system says has `len` bytes.
fn reserve(len: u64) -> usize {
    usize::try_from(len)
        .unwrap_or(MAX_PREALLOCATION)
        .min(MAX_PREALLOCATION)
}

/// Checks 1 and 2 of the [module docs](self) and opens the file; returns it and its size.
fn open_checked(path: &Path) -> Result<(File, u64), LoadError> {
    let not_regular = || LoadError::NotRegularFile {
        path: path.to_path_buf(),
    };
    // Not followed: a symlink could be pointed elsewhere between this check and dlopen.
    let linked = fs::symlink_metadata(path).map_err(io_error(path))?;
    if !linked.file_type().is_file() {
        return Err(not_regular());
    }
    let file = File::open(path).map_err(io_error(path))?;
    let opened = file.metadata().map_err(io_error(path))?;
    if !opened.is_file() {
        return Err(not_regular());
    }
    check_same_file(path, &linked, &opened)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        refuse_world_writable(path, opened.permissions().mode())?;
        check_parent(path)?;
    }
    Ok((file, opened.len()))
}

/// Check 3: a complete shared library of this platform that exports the root symbol.
fn check_bytes(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    check_image(bytes).map_err(|problem| image_error(path, problem))
}

/// The [`LoadError`] for an [`ImageProblem`] of the file in `path`.
pub(crate) fn image_error(path: &Path, problem: ImageProblem) -> LoadError {
    let path = path.to_path_buf();
    match problem {
        ImageProblem::WrongArchitecture { found, host } => {
            LoadError::WrongArchitecture { path, found, host }
        }
        ImageProblem::NoRootModule { symbol } => LoadError::NotAPlugin { path, symbol },
        ImageProblem::Empty | ImageProblem::Malformed { .. } => LoadError::BadLibrary {
            path,
            reason: problem.to_string(),
        },
    }
}

/// Check 4: `sha256` is in `allowlist`, if there is one.
fn check_allowlist(
    path: &Path,
    allowlist: Option<&HashSet<String>>,
    sha256: &str,
) -> Result<(), LoadError> {
    if let Some(allowed) = allowlist {
        let listed =
            allowed.contains(sha256) || allowed.iter().any(|h| h.eq_ignore_ascii_case(sha256));
        if !listed {
            return Err(LoadError::NotAllowed {
                path: path.to_path_buf(),
                sha256: sha256.to_owned(),
            });
        }
    }
    Ok(())
}

/// Refuses `path` if it or its parent folder is world-writable.
///
/// Anyone who can write the file, or rename entries in its folder, could swap the code that is
/// about to run. Folders with the sticky bit (like `/tmp`) are refused too: anyone can still add
/// files there. `path` is followed if it is a symlink (a symlink's own mode means nothing);
/// [`preflight`] refuses symlinks before it gets here.
///
/// # Errors
///
/// [`LoadError::WorldWritable`] naming the file or folder that is world-writable and its mode
/// (permission bits, including setuid/setgid/sticky); [`LoadError::Io`] if either cannot be
/// inspected.
///
/// # Platform-specific behaviour
///
/// On platforms other than unix there is no world-writable bit: this always returns `Ok(())`.
pub fn check_permissions(path: &Path) -> Result<(), LoadError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        refuse_world_writable(path, meta.permissions().mode())?;
        check_parent(path)?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(unix)]
fn check_parent(path: &Path) -> Result<(), LoadError> {
    use std::os::unix::fs::PermissionsExt;
    let parent = match path.parent() {
        // "." in an error message names nothing; say which folder it is.
        Some(parent) if parent.as_os_str().is_empty() => {
            fs::canonicalize(".").unwrap_or_else(|_| ".".into())
        }
        Some(parent) => parent.to_path_buf(),
        None => return Ok(()),
    };
    let meta = fs::metadata(&parent).map_err(|source| LoadError::Io {
        path: parent.clone(),
        source,
    })?;
    refuse_world_writable(&parent, meta.permissions().mode())
}

#[cfg(unix)]
fn refuse_world_writable(path: &Path, mode: u32) -> Result<(), LoadError> {
    const WORLD_WRITABLE: u32 = 0o002;
    if mode & WORLD_WRITABLE != 0 {
        return Err(LoadError::WorldWritable {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

/// Refuses the file if the path was swapped (e.g. for a symlink) between the type check and open.
fn check_same_file(
    path: &Path,
    linked: &fs::Metadata,
    opened: &fs::Metadata,
) -> Result<(), LoadError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if (linked.dev(), linked.ino()) != (opened.dev(), opened.ino()) {
            return Err(LoadError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other("the file was replaced while it was being checked"),
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, linked, opened);
    Ok(())
}

fn to_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use tempfile::TempDir;

    use super::*;
    use crate::load::{
        discover::library_file_name,
        test_support::{plugin_bytes, system_library},
    };

    /// `bytes` as the library file of a plugin named `plugin` (`libplugin.so` on Linux) in a
    /// fresh private (0700) folder, mode 0644, and a shadow folder beside it.
    fn private_copy(bytes: &[u8]) -> (TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(library_file_name("plugin"));
        fs::write(&path, bytes).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        (dir, path)
    }

    fn shadow_of(dir: &TempDir) -> PathBuf {
        dir.path().join("shadow")
    }

    fn entries(dir: &Path) -> usize {
        fs::read_dir(dir).map_or(0, |entries| entries.count())
    }

    fn bad_reason(result: Result<Preflight, LoadError>) -> String {
        match result {
            Err(LoadError::BadLibrary { reason, .. }) => reason,
            other => panic!("expected BadLibrary, got {other:?}"),
        }
    }

    #[test]
    fn hex_is_lower_case_sha256() {
        assert_eq!(
            to_hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn fingerprints_are_128_bit_hex_and_tell_contents_apart() {
        let a = fingerprint(b"build one");
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(a, fingerprint(b"build one"));
        assert_ne!(a, fingerprint(b"build two"));
    }

    #[test]
    fn a_checked_copy_holds_the_checked_bytes_and_hashes_only_for_an_allowlist() {
        let bytes = plugin_bytes();
        let (dir, source) = private_copy(bytes);
        let shadow = shadow_of(&dir);
        let checked =
            copy_checked(&source, &shadow, None, Checksum::IfAllowlisted).expect("a plugin");
        assert_eq!(fs::read(&checked.path).expect("the copy"), bytes);
        assert_eq!(checked.path.parent(), Some(shadow.as_path()));
        assert_eq!(checked.facts.fingerprint, fingerprint(bytes));
        assert_eq!(checked.facts.sha256, None, "no allowlist, no SHA-256");
        let always = copy_checked(&source, &shadow, None, Checksum::Always).expect("a plugin");
        assert_ne!(always.path.to_path_buf(), checked.path.to_path_buf());
        assert_eq!(always.facts.sha256, Some(sha256_hex(bytes)), "asked for");

        let sha = sha256_hex(bytes);
        let allowed: HashSet<String> = [sha.to_uppercase()].into_iter().collect();
        let listed = copy_checked(&source, &shadow, Some(&allowed), Checksum::IfAllowlisted)
            .expect("listed");
        assert_eq!(listed.facts.sha256.as_deref(), Some(sha.as_str()));
        drop((checked, always, listed));
        assert_eq!(
            entries(&shadow),
            0,
            "copies are removed with their CheckedCopy"
        );

        let other: HashSet<String> = [sha256_hex(b"other")].into_iter().collect();
        match copy_checked(&source, &shadow, Some(&other), Checksum::IfAllowlisted) {
            Err(LoadError::NotAllowed { path, sha256 }) => {
                assert_eq!((path, sha256), (source.clone(), sha));
            }
            other => panic!("expected NotAllowed, got {other:?}"),
        }
        assert_eq!(entries(&shadow), 0, "a refused copy is removed");
    }

    #[test]
    fn a_copy_of_a_truncated_image_is_refused_naming_the_original() {
        let bytes = plugin_bytes();
        let (dir, source) = private_copy(&bytes[..bytes.len() / 2]);
        let shadow = shadow_of(&dir);
        match copy_checked(&source, &shadow, None, Checksum::IfAllowlisted) {
            Err(LoadError::BadLibrary { path, reason }) => {
                assert_eq!(path, source);
                assert!(reason.ends_with("(truncated?)"), "{reason}");
            }
            other => panic!("expected BadLibrary, got {other:?}"),
        }
        assert_eq!(entries(&shadow), 0, "the partial copy is removed");
    }

    #[cfg(unix)]
    #[test]
    fn a_shared_shadow_folder_gets_no_copy() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, source) = private_copy(plugin_bytes());
        let shadow = shadow_of(&dir);
        fs::create_dir(&shadow).expect("mkdir");
        fs::set_permissions(&shadow, fs::Permissions::from_mode(0o777)).expect("chmod");
        match copy_checked(&source, &shadow, None, Checksum::IfAllowlisted) {
            Err(LoadError::UnsafeShadowDir { path, mode, .. }) => {
                assert_eq!((path, mode), (shadow.clone(), Some(0o777)));
            }
            other => panic!("expected UnsafeShadowDir, got {other:?}"),
        }
        assert_eq!(entries(&shadow), 0);
    }

    #[test]
    fn a_library_without_the_root_symbol_is_not_a_plugin() {
        let Some((_, bytes)) = system_library() else {
            return;
        };
        let (_dir, file) = private_copy(bytes);
        match preflight(&file, None) {
            Err(LoadError::NotAPlugin { path, symbol }) => {
                assert_eq!(path, file);
                assert_eq!(symbol, crate::load::image::ROOT_SYMBOL);
            }
            other => panic!("expected NotAPlugin, got {other:?}"),
        }
    }

    #[test]
    fn a_plugin_passes_and_is_hashed() {
        let bytes = plugin_bytes();
        let (_dir, copy) = private_copy(bytes);
        let checked = preflight(&copy, None).expect("preflight");
        assert_eq!(checked.size, bytes.len() as u64);
        assert_eq!(checked.sha256, to_hex(&Sha256::digest(bytes)));
    }

    #[test]
    fn text_and_empty_files_fail() {
        let (_dir, empty) = private_copy(b"");
        assert_eq!(bad_reason(preflight(&empty, None)), "empty file");
        if cfg!(target_os = "linux") {
            let (_dir, text) = private_copy(b"INPUT(libc.so.6)\n");
            assert_eq!(
                bad_reason(preflight(&text, None)),
                "not an ELF file (bad magic)"
            );
        }
    }

    #[test]
    fn not_regular_files_are_refused() {
        let (dir, file) = private_copy(plugin_bytes());
        let folder = dir.path().join(library_file_name("folder"));
        fs::create_dir(&folder).expect("mkdir");
        assert!(matches!(
            preflight(&folder, None),
            Err(LoadError::NotRegularFile { path }) if path == folder
        ));
        #[cfg(unix)]
        {
            let link = dir.path().join(library_file_name("link"));
            std::os::unix::fs::symlink(&file, &link).expect("symlink");
            assert!(matches!(
                preflight(&link, None),
                Err(LoadError::NotRegularFile { path }) if path == link
            ));
        }
        let missing = dir.path().join(library_file_name("missing"));
        assert!(
            matches!(preflight(&missing, None), Err(LoadError::Io { path, .. }) if path == missing)
        );
        assert!(preflight(&file, None).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn world_writable_file_and_folder_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let chmod = |path: &Path, mode: u32| {
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
        };
        let (dir, file) = private_copy(plugin_bytes());
        chmod(&file, 0o666);
        for result in [preflight(&file, None).map(drop), check_permissions(&file)] {
            match result {
                Err(LoadError::WorldWritable { path, mode }) => {
                    assert_eq!((path, mode), (file.clone(), 0o666));
                }
                other => panic!("expected WorldWritable, got {other:?}"),
            }
        }
        chmod(&file, 0o644);
        for folder_mode in [0o777, 0o1777, 0o703] {
            chmod(dir.path(), folder_mode);
            for result in [preflight(&file, None).map(drop), check_permissions(&file)] {
                match result {
                    Err(LoadError::WorldWritable { path, mode }) => {
                        assert_eq!((path.as_path(), mode), (dir.path(), folder_mode));
                    }
                    other => panic!("expected WorldWritable for the folder, got {other:?}"),
                }
            }
        }
        chmod(dir.path(), 0o755);
        assert!(check_permissions(&file).is_ok());
        assert!(preflight(&file, None).is_ok());
    }

    #[test]
    fn allowlist_accepts_and_refuses() {
        let bytes = plugin_bytes();
        let (_dir, file) = private_copy(bytes);
        let sha = to_hex(&Sha256::digest(bytes));
        let set = |hashes: &[&str]| {
            hashes
                .iter()
                .map(|h| (*h).to_owned())
                .collect::<HashSet<_>>()
        };

        let ok = preflight(&file, Some(&set(&[&sha]))).expect("listed hash refused");
        assert_eq!(
            ok,
            Preflight {
                size: bytes.len() as u64,
                sha256: sha.clone()
            }
        );
        assert!(preflight(&file, Some(&set(&[&sha.to_ascii_uppercase()]))).is_ok());
        assert!(preflight(&file, None).is_ok());
        for list in [set(&[]), set(&[&"0".repeat(64)])] {
            match preflight(&file, Some(&list)) {
                Err(LoadError::NotAllowed { path, sha256 }) => {
                    assert_eq!((path, sha256), (file.clone(), sha.clone()))
                }
                other => panic!("expected NotAllowed, got {other:?}"),
            }
        }
    }
}
