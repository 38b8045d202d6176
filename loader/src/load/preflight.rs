//! Checks made on a file before it is ever handed to the dynamic linker.
//!
//! dlopen runs the library's initialisers, and on a truncated ELF whose program headers are
//! intact but whose `PT_LOAD` data is cut off it kills the whole process with SIGBUS. So before a
//! file is opened as a library, [`preflight`] checks, in this order, that:
//!
//! 1. it is a regular file (not a symlink, folder, FIFO or device);
//! 2. on unix, neither the file nor its folder is world-writable;
//! 3. it is not empty and, on ELF platforms, its ELF headers describe a complete shared library
//!    ([`check_elf`]);
//! 4. when an allowlist is configured, the SHA-256 of its contents is in it.
//!
//! The size, hashes and ELF check all describe the same bytes. When the host loads a plugin it
//! checks the private copy it is about to dlopen (the file in the watched folder may still
//! change after the check), and it computes the SHA-256 only when an allowlist asks for it: on
//! a release library that hash costs as much as the dlopen itself. A cheap 128-bit
//! [`fingerprint`] tells builds apart (hot reload skips a file whose contents did not change).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

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

/// Whether this platform's libraries are ELF files, so that [`check_elf`] applies to them.
const ELF_PLATFORM: bool = cfg!(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "solaris",
    target_os = "illumos",
    target_os = "fuchsia",
    target_os = "haiku",
    target_os = "redox",
));

/// Upper bound on what is reserved up front from the size the file system reports, so a bogus
/// size cannot make us allocate more than the file really holds; reading grows past it if needed.
const MAX_PREALLOCATION: usize = 64 << 20;

/// Checks `path` before it is dlopened and returns its size and SHA-256.
///
/// The checks and their order are listed in the [module docs](self). `allowlist`, when given,
/// holds SHA-256 hashes in hex; case is ignored.
///
/// # Errors
///
/// - [`LoadError::Io`] if the file or its folder cannot be read, or the file was replaced by
///   another one while it was being checked;
/// - [`LoadError::NotRegularFile`] for a symlink, folder, FIFO, socket or device;
/// - [`LoadError::WorldWritable`] naming the file or its folder, with its mode (unix only);
/// - [`LoadError::BadLibrary`] for an empty file or, on ELF platforms, one that [`check_elf`]
///   refuses;
/// - [`LoadError::NotAllowed`] if `allowlist` is `Some` and does not contain the file's hash.
///
/// # Platform-specific behaviour
///
/// The world-writable checks run on unix only; the ELF checks on ELF platforms only (not on
/// macOS or Windows).
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

/// The checks of [`preflight`], made on a copy: checks the file in `path` (type, permissions),
/// copies it to `copy` (a new file, in the kernel where the platform can), then checks the bytes
/// of the copy (ELF, allowlist) and fingerprints them. Those bytes are what gets dlopened.
///
/// On error `copy` may exist; the caller removes it.
pub(crate) fn copy_checked(
    path: &Path,
    copy: &Path,
    allowlist: Option<&HashSet<String>>,
    checksum: Checksum,
) -> Result<CopyFacts, LoadError> {
    let (mut file, len) = open_checked(path)?;
    let mut target = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(copy)
        .map_err(io_error(copy))?;
    std::io::copy(&mut file, &mut target).map_err(io_error(copy))?;
    target.seek(SeekFrom::Start(0)).map_err(io_error(copy))?;
    let mut bytes = Vec::with_capacity(reserve(len));
    target.read_to_end(&mut bytes).map_err(io_error(copy))?;
    // Errors name the file in the plugins folder: the copy is an implementation detail.
    check_bytes(path, &bytes)?;
    let sha256 = if allowlist.is_some() || checksum == Checksum::Always {
        let sha256 = sha256_hex(&bytes);
        check_allowlist(path, allowlist, &sha256)?;
        Some(sha256)
    } else {
        None
    };
    Ok(CopyFacts {
        fingerprint: fingerprint(&bytes),
        sha256,
    })
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

/// Check 3: not empty and, on ELF platforms, a complete ELF image.
fn check_bytes(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    let bad_library = |reason: String| LoadError::BadLibrary {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.is_empty() {
        return Err(bad_library("empty file".to_owned()));
    }
    if ELF_PLATFORM {
        check_elf(bytes).map_err(bad_library)?;
    }
    Ok(())
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

const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ELFDATA2MSB: u8 = 2;
const EV_CURRENT: u8 = 1;
const ET_DYN: u16 = 3;
const PT_LOAD: u32 = 1;
const PN_XNUM: u16 = 0xffff;

/// Where the fields this parser reads sit, for one ELF class.
struct Layout {
    bits: u8,
    ehdr_size: u64,
    phdr_size: u64,
    e_phoff: (u64, Width),
    e_phentsize: u64,
    e_phnum: u64,
    shdr_size: u64,
    e_shoff: (u64, Width),
    e_shentsize: u64,
    e_shnum: u64,
    p_offset: (u64, Width),
    p_filesz: (u64, Width),
}

#[derive(Clone, Copy)]
enum Width {
    Four,
    Eight,
}

const ELF32: Layout = Layout {
    bits: 32,
    ehdr_size: 52,
    phdr_size: 32,
    e_phoff: (28, Width::Four),
    e_phentsize: 42,
    e_phnum: 44,
    shdr_size: 40,
    e_shoff: (32, Width::Four),
    e_shentsize: 46,
    e_shnum: 48,
    p_offset: (4, Width::Four),
    p_filesz: (16, Width::Four),
};

const ELF64: Layout = Layout {
    bits: 64,
    ehdr_size: 64,
    phdr_size: 56,
    e_phoff: (32, Width::Eight),
    e_phentsize: 54,
    e_phnum: 56,
    shdr_size: 64,
    e_shoff: (40, Width::Eight),
    e_shentsize: 58,
    e_shnum: 60,
    p_offset: (8, Width::Eight),
    p_filesz: (32, Width::Eight),
};

/// Bounds-checked reads of fixed-size integers in one byte order.
struct Reader<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl Reader<'_> {
    fn array<const N: usize>(&self, at: u64) -> Result<[u8; N], String> {
        usize::try_from(at)
            .ok()
            .and_then(|start| self.bytes.get(start..start.checked_add(N)?))
            .and_then(|slice| <[u8; N]>::try_from(slice).ok())
            .ok_or_else(|| {
                format!(
                    "truncated: reading {N} bytes at byte {at} but the file has {} bytes",
                    self.bytes.len()
                )
            })
    }

    fn u16(&self, at: u64) -> Result<u16, String> {
        let raw = self.array(at)?;
        Ok(if self.big_endian {
            u16::from_be_bytes(raw)
        } else {
            u16::from_le_bytes(raw)
        })
    }

    fn u32(&self, at: u64) -> Result<u32, String> {
        let raw = self.array(at)?;
        Ok(if self.big_endian {
            u32::from_be_bytes(raw)
        } else {
            u32::from_le_bytes(raw)
        })
    }

    fn u64(&self, at: u64) -> Result<u64, String> {
        let raw = self.array(at)?;
        Ok(if self.big_endian {
            u64::from_be_bytes(raw)
        } else {
            u64::from_le_bytes(raw)
        })
    }

    fn word(&self, (at, width): (u64, Width)) -> Result<u64, String> {
        match width {
            Width::Four => self.u32(at).map(u64::from),
            Width::Eight => self.u64(at),
        }
    }
}

/// Checks that `bytes` hold a complete ELF shared library, as far as loading it goes.
///
/// Checks the magic, class (32/64-bit), byte order and version, that the type is `ET_DYN`, that
/// the program header table lies inside the file with entries of the standard size, and that
/// every `PT_LOAD` segment's file data (`p_offset + p_filesz`) lies inside the file, which is
/// what dlopen would otherwise fault on, and that the section header table (which linkers write
/// last) lies inside the file, so a copy cut anywhere is refused. Extended program header numbering (`e_phnum == PN_XNUM`) is refused, as the
/// dynamic linker does not support it. The machine type is not checked; dlopen refuses a library
/// for another machine with a clean error.
///
/// Pure and total: no `unsafe`, no panics, and no allocation that depends on the input (except
/// for the error message).
///
/// # Errors
///
/// A lower-case message saying what is wrong, such as `"not an ELF file (bad magic)"` or
/// `"PT_LOAD segment 2 ends at byte 912344 but the file has 40960 bytes (truncated?)"`, where
/// segments are numbered by their index in the program header table (as `readelf -l` does).
pub fn check_elf(bytes: &[u8]) -> Result<(), String> {
    let len = bytes.len() as u64;
    let magic_len = bytes.len().min(ELF_MAGIC.len());
    if bytes.get(..magic_len) != ELF_MAGIC.get(..magic_len) {
        return Err("not an ELF file (bad magic)".to_owned());
    }
    if bytes.is_empty() {
        return Err("empty file".to_owned());
    }
    let ident = |i: usize| bytes.get(i).copied();
    let truncated_header = || format!("truncated ELF header: the file has {len} bytes");
    let layout = match ident(4).ok_or_else(truncated_header)? {
        ELFCLASS32 => &ELF32,
        ELFCLASS64 => &ELF64,
        class => return Err(format!("unsupported ELF class {class} (expected 1 or 2)")),
    };
    let big_endian = match ident(5).ok_or_else(truncated_header)? {
        ELFDATA2LSB => false,
        ELFDATA2MSB => true,
        data => {
            return Err(format!(
                "unsupported ELF byte order {data} (expected 1 or 2)"
            ))
        }
    };
    match ident(6).ok_or_else(truncated_header)? {
        EV_CURRENT => {}
        version => return Err(format!("unsupported ELF version {version} (expected 1)")),
    }
    if len < layout.ehdr_size {
        return Err(format!(
            "truncated ELF header: the file has {len} bytes, a {}-bit header needs {}",
            layout.bits, layout.ehdr_size
        ));
    }

    let read = Reader { bytes, big_endian };
    let e_type = read.u16(16)?;
    if e_type != ET_DYN {
        let kind = match e_type {
            0 => "no file type",
            1 => "a relocatable object",
            2 => "an executable",
            4 => "a core dump",
            _ => "an unknown type",
        };
        return Err(format!("not a shared library (e_type {e_type}, {kind})"));
    }

    let phoff = read.word(layout.e_phoff)?;
    let phentsize = u64::from(read.u16(layout.e_phentsize)?);
    let phnum = read.u16(layout.e_phnum)?;
    if phnum == PN_XNUM {
        return Err(
            "uses extended program header numbering (PN_XNUM), which dynamic linkers do not support"
                .to_owned(),
        );
    }
    let phnum = u64::from(phnum);
    if phnum == 0 {
        return Err("no program headers".to_owned());
    }
    if phentsize != layout.phdr_size {
        return Err(format!(
            "program header entry size is {phentsize} bytes, a {}-bit ELF file needs {}",
            layout.bits, layout.phdr_size
        ));
    }
    // phnum < 2^16 and phentsize < 2^16, so the product cannot overflow; the sum can.
    let table_end = phoff
        .checked_add(phnum * phentsize)
        .ok_or_else(|| format!("program header table offset {phoff} overflows"))?;
    if table_end > len {
        return Err(format!(
            "program header table ({phnum} entries at byte {phoff}) ends at byte {table_end} \
             but the file has {len} bytes (truncated?)"
        ));
    }

    let mut loads = 0_u64;
    for index in 0..phnum {
        let base = phoff + index * phentsize;
        if read.u32(base)? != PT_LOAD {
            continue;
        }
        loads += 1;
        let (offset_at, width) = layout.p_offset;
        let offset = read.word((base + offset_at, width))?;
        let (filesz_at, width) = layout.p_filesz;
        let filesz = read.word((base + filesz_at, width))?;
        let end = offset.checked_add(filesz).ok_or_else(|| {
            format!("PT_LOAD segment {index} has offset {offset} and size {filesz}, which overflow")
        })?;
        if end > len {
            return Err(format!(
                "PT_LOAD segment {index} ends at byte {end} but the file has {len} bytes (truncated?)"
            ));
        }
    }
    if loads == 0 {
        return Err("no PT_LOAD segment".to_owned());
    }

    // Linkers write the section header table last, so it tells whether the whole file arrived
    // (a copy cut after the code but inside the debug information passes the checks above).
    let shoff = read.word(layout.e_shoff)?;
    if shoff != 0 {
        let shentsize = u64::from(read.u16(layout.e_shentsize)?);
        if shentsize != layout.shdr_size {
            return Err(format!(
                "section header entry size is {shentsize} bytes, a {}-bit ELF file needs {}",
                layout.bits, layout.shdr_size
            ));
        }
        // e_shnum 0 with a table means extended numbering: entry 0 holds the count; it must fit.
        let shnum = u64::from(read.u16(layout.e_shnum)?).max(1);
        let end = shoff
            .checked_add(shnum * shentsize)
            .ok_or_else(|| format!("section header table offset {shoff} overflows"))?;
        if end > len {
            return Err(format!(
                "section header table ({shnum} entries at byte {shoff}) ends at byte {end} \
                 but the file has {len} bytes (truncated?)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::OnceLock;

    use proptest::prelude::*;
    use tempfile::TempDir;

    use super::*;

    /// A shared library that exists on this machine, or `None` (tests that need it then skip).
    fn system_library() -> Option<&'static (PathBuf, Vec<u8>)> {
        static FOUND: OnceLock<Option<(PathBuf, Vec<u8>)>> = OnceLock::new();
        FOUND
            .get_or_init(|| {
                let dirs = [
                    "/lib/x86_64-linux-gnu",
                    "/usr/lib/x86_64-linux-gnu",
                    "/lib/aarch64-linux-gnu",
                    "/usr/lib/aarch64-linux-gnu",
                    "/lib64",
                    "/usr/lib64",
                    "/lib",
                    "/usr/lib",
                ];
                let found = ["libm.so.6", "libc.so.6"]
                    .iter()
                    .flat_map(|name| dirs.iter().map(move |dir| Path::new(dir).join(name)))
                    .find_map(|path| {
                        let bytes = fs::read(&path).ok()?;
                        bytes.starts_with(&ELF_MAGIC).then_some((path, bytes))
                    });
                if found.is_none() {
                    eprintln!(
                        "no system libm.so.6 or libc.so.6 found: skipping real-library checks"
                    );
                }
                found
            })
            .as_ref()
    }

    /// A minimal ELF file: header, then the program headers `(p_type, p_offset, p_filesz)`,
    /// padded with zeros to `len` bytes.
    fn synth(is64: bool, big_endian: bool, phdrs: &[(u32, u64, u64)], len: usize) -> Vec<u8> {
        let layout = if is64 { &ELF64 } else { &ELF32 };
        let mut out = vec![0_u8; len];
        let mut put = |at: u64, value: u64, width: usize| {
            let bytes = if big_endian {
                value.to_be_bytes()
            } else {
                value.to_le_bytes()
            };
            let at = usize::try_from(at).expect("offset");
            let src = if big_endian {
                &bytes[8 - width..]
            } else {
                &bytes[..width]
            };
            out[at..at + width].copy_from_slice(src);
        };
        let word = if is64 { 8 } else { 4 };
        put(16, u64::from(ET_DYN), 2);
        put(20, 1, 4);
        put(layout.e_phoff.0, layout.ehdr_size, word);
        put(layout.e_phentsize, layout.phdr_size, 2);
        put(layout.e_phnum, phdrs.len() as u64, 2);
        for (i, &(p_type, offset, filesz)) in phdrs.iter().enumerate() {
            let base = layout.ehdr_size + i as u64 * layout.phdr_size;
            put(base, u64::from(p_type), 4);
            put(base + layout.p_offset.0, offset, word);
            put(base + layout.p_filesz.0, filesz, word);
        }
        out[..4].copy_from_slice(&ELF_MAGIC);
        out[4] = if is64 { ELFCLASS64 } else { ELFCLASS32 };
        out[5] = if big_endian { ELFDATA2MSB } else { ELFDATA2LSB };
        out[6] = EV_CURRENT;
        out
    }

    /// A small valid 64-bit little-endian shared library image.
    fn small_elf() -> Vec<u8> {
        synth(true, false, &[(PT_LOAD, 0, 4096), (2, 4096, 100)], 8192)
    }

    /// `bytes` as `libplugin.so` in a fresh private (0700) folder, mode 0644.
    fn private_copy(bytes: &[u8]) -> (TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("libplugin.so");
        fs::write(&path, bytes).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        (dir, path)
    }

    fn bad_reason(result: Result<Preflight, LoadError>) -> String {
        match result {
            Err(LoadError::BadLibrary { reason, .. }) => reason,
            other => panic!("expected BadLibrary, got {other:?}"),
        }
    }

    /// The shortest prefix of `bytes` that `check_elf` accepts (acceptance is monotonic in length).
    fn shortest_valid_prefix(bytes: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, bytes.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if check_elf(&bytes[..mid]).is_ok() {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
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
        let bytes = small_elf();
        let (dir, source) = private_copy(&bytes);
        let copy = dir.path().join("copy-1.so");
        let facts =
            copy_checked(&source, &copy, None, Checksum::IfAllowlisted).expect("a valid image");
        assert_eq!(fs::read(&copy).expect("the copy"), bytes);
        assert_eq!(facts.fingerprint, fingerprint(&bytes));
        assert_eq!(facts.sha256, None, "no allowlist, no SHA-256");
        let copy = dir.path().join("copy-always.so");
        let facts = copy_checked(&source, &copy, None, Checksum::Always).expect("a valid image");
        assert_eq!(facts.sha256, Some(sha256_hex(&bytes)), "asked for");

        let sha = sha256_hex(&bytes);
        let allowed: HashSet<String> = [sha.to_uppercase()].into_iter().collect();
        let copy = dir.path().join("copy-2.so");
        let facts =
            copy_checked(&source, &copy, Some(&allowed), Checksum::IfAllowlisted).expect("listed");
        assert_eq!(facts.sha256.as_deref(), Some(sha.as_str()));

        let other: HashSet<String> = [sha256_hex(b"other")].into_iter().collect();
        let copy = dir.path().join("copy-3.so");
        match copy_checked(&source, &copy, Some(&other), Checksum::IfAllowlisted) {
            Err(LoadError::NotAllowed { path, sha256 }) => {
                assert_eq!((path, sha256), (source.clone(), sha));
            }
            other => panic!("expected NotAllowed, got {other:?}"),
        }
    }

    #[test]
    fn a_copy_of_a_truncated_image_is_refused_naming_the_original() {
        let bytes = small_elf();
        let (dir, source) = private_copy(&bytes[..3000]);
        let copy = dir.path().join("copy.so");
        match copy_checked(&source, &copy, None, Checksum::IfAllowlisted) {
            Err(LoadError::BadLibrary { path, .. }) => assert_eq!(path, source),
            other => panic!("expected BadLibrary, got {other:?}"),
        }
        // An existing copy path is never overwritten (each load uses a fresh name).
        assert!(matches!(
            copy_checked(&source, &copy, None, Checksum::IfAllowlisted),
            Err(LoadError::Io { path, .. }) if path == copy
        ));
    }

    #[test]
    fn real_library_passes() {
        let Some((path, bytes)) = system_library() else {
            return;
        };
        assert_eq!(check_elf(bytes), Ok(()), "{}", path.display());
        let (_dir, copy) = private_copy(bytes);
        let checked = preflight(&copy, None).expect("preflight");
        assert_eq!(checked.size, bytes.len() as u64);
        assert_eq!(checked.sha256, to_hex(&Sha256::digest(bytes)));
        assert_eq!(checked.sha256.len(), 64);
        assert!(checked
            .sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn truncated_real_library_fails() {
        let Some((_, bytes)) = system_library() else {
            return;
        };
        let full = shortest_valid_prefix(bytes);
        assert_eq!(full, bytes.len(), "the section header table ends the file");
        for cut in [full - 1, full - full / 4, full / 2, 4096] {
            let err = check_elf(&bytes[..cut]).expect_err("truncated copy accepted");
            assert!(
                (err.starts_with("PT_LOAD segment ") || err.starts_with("section header table"))
                    && err.ends_with(&format!("but the file has {cut} bytes (truncated?)")),
                "cut at {cut}: {err}"
            );
        }
        for cut in [1, 10, 40] {
            let err = check_elf(&bytes[..cut]).expect_err("header-only copy accepted");
            assert!(
                err.starts_with("truncated ELF header"),
                "cut at {cut}: {err}"
            );
        }
        let (_dir, copy) = private_copy(&bytes[..full / 2]);
        if ELF_PLATFORM {
            assert!(bad_reason(preflight(&copy, None)).contains("(truncated?)"));
        }
    }

    #[test]
    fn text_and_empty_files_fail() {
        assert_eq!(
            check_elf(b"hello, plugin\n"),
            Err("not an ELF file (bad magic)".to_owned())
        );
        assert_eq!(
            check_elf(b"\x7fELx"),
            Err("not an ELF file (bad magic)".to_owned())
        );
        assert_eq!(check_elf(b""), Err("empty file".to_owned()));
        let (_dir, empty) = private_copy(b"");
        assert_eq!(bad_reason(preflight(&empty, None)), "empty file");
        if ELF_PLATFORM {
            let (_dir, text) = private_copy(b"INPUT(libc.so.6)\n");
            assert_eq!(
                bad_reason(preflight(&text, None)),
                "not an ELF file (bad magic)"
            );
        }
    }

    #[test]
    fn synthetic_libraries() {
        assert_eq!(check_elf(&small_elf()), Ok(()));
        for (is64, big_endian) in [(false, false), (false, true), (true, true)] {
            let elf = synth(is64, big_endian, &[(PT_LOAD, 0, 512)], 512);
            assert_eq!(
                check_elf(&elf),
                Ok(()),
                "is64 {is64}, big endian {big_endian}"
            );
            assert!(check_elf(&elf[..511]).is_err());
        }
    }

    #[test]
    fn segment_messages_name_the_header_index() {
        let elf = synth(
            true,
            false,
            &[(PT_LOAD, 0, 100), (2, 0, 0), (PT_LOAD, 4096, 908_248)],
            40960,
        );
        assert_eq!(
            check_elf(&elf),
            Err(
                "PT_LOAD segment 2 ends at byte 912344 but the file has 40960 bytes (truncated?)"
                    .to_owned()
            )
        );
        let elf = synth(true, false, &[(PT_LOAD, u64::MAX, 2)], 4096);
        assert_eq!(
            check_elf(&elf),
            Err(format!(
                "PT_LOAD segment 0 has offset {} and size 2, which overflow",
                u64::MAX
            ))
        );
        let elf = synth(true, false, &[(2, 0, 100)], 4096);
        assert_eq!(check_elf(&elf), Err("no PT_LOAD segment".to_owned()));
        let elf = synth(true, false, &[], 4096);
        assert_eq!(check_elf(&elf), Err("no program headers".to_owned()));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let with = |at: usize, value: &[u8]| {
            let mut elf = small_elf();
            elf[at..at + value.len()].copy_from_slice(value);
            check_elf(&elf).expect_err("malformed header accepted")
        };
        assert_eq!(with(4, &[3]), "unsupported ELF class 3 (expected 1 or 2)");
        assert_eq!(
            with(5, &[0]),
            "unsupported ELF byte order 0 (expected 1 or 2)"
        );
        assert_eq!(with(6, &[2]), "unsupported ELF version 2 (expected 1)");
        assert_eq!(
            with(16, &[2, 0]),
            "not a shared library (e_type 2, an executable)"
        );
        assert_eq!(
            with(16, &[1, 0]),
            "not a shared library (e_type 1, a relocatable object)"
        );
        assert!(with(56, &[0xff, 0xff]).contains("PN_XNUM"));
        assert_eq!(
            with(54, &[32, 0]),
            "program header entry size is 32 bytes, a 64-bit ELF file needs 56"
        );
        assert_eq!(
            with(32, &[0xf0, 0x1f, 0, 0, 0, 0, 0, 0]),
            "program header table (2 entries at byte 8176) ends at byte 8288 \
             but the file has 8192 bytes (truncated?)"
        );
        assert_eq!(
            with(32, &[0xff; 8]),
            format!("program header table offset {} overflows", u64::MAX)
        );
        assert_eq!(
            check_elf(&small_elf()[..63]),
            Err("truncated ELF header: the file has 63 bytes, a 64-bit header needs 64".to_owned())
        );
    }

    #[test]
    fn not_regular_files_are_refused() {
        let (dir, file) = private_copy(&small_elf());
        let folder = dir.path().join("libfolder.so");
        fs::create_dir(&folder).expect("mkdir");
        assert!(matches!(
            preflight(&folder, None),
            Err(LoadError::NotRegularFile { path }) if path == folder
        ));
        #[cfg(unix)]
        {
            let link = dir.path().join("liblink.so");
            std::os::unix::fs::symlink(&file, &link).expect("symlink");
            assert!(matches!(
                preflight(&link, None),
                Err(LoadError::NotRegularFile { path }) if path == link
            ));
        }
        let missing = dir.path().join("libmissing.so");
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
        let (dir, file) = private_copy(&small_elf());
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
        let elf = small_elf();
        let (_dir, file) = private_copy(&elf);
        let sha = to_hex(&Sha256::digest(&elf));
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
                size: elf.len() as u64,
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

    /// The bytes the mutation properties start from: a real library, or a synthetic one.
    fn mutation_base() -> &'static [u8] {
        static SMALL: OnceLock<Vec<u8>> = OnceLock::new();
        match system_library() {
            Some((_, bytes)) => bytes,
            None => SMALL.get_or_init(small_elf),
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let result = check_elf(&bytes);
            if !bytes.starts_with(&ELF_MAGIC) {
                prop_assert!(result.is_err());
            }
        }

        #[test]
        fn arbitrary_bytes_after_a_valid_ident_never_panic(
            class in 0_u8..4,
            data in 0_u8..4,
            rest in proptest::collection::vec(any::<u8>(), 0..1024),
        ) {
            let mut bytes = vec![0x7f, b'E', b'L', b'F', class, data, EV_CURRENT];
            bytes.extend_from_slice(&rest);
            let _ = check_elf(&bytes);
        }

        #[test]
        fn mutated_real_headers_never_panic(
            bytes in proptest::collection::vec((0_usize..1024, any::<u8>()), 0..16),
            words in proptest::collection::vec((0_usize..1024, any::<u64>()), 0..4),
            cut in proptest::option::of(any::<proptest::sample::Index>()),
        ) {
            let mut elf = mutation_base().to_vec();
            for (at, value) in bytes {
                if let Some(byte) = elf.get_mut(at) {
                    *byte = value;
                }
            }
            for (at, value) in words {
                if let Some(slot) = elf.get_mut(at..at + 8) {
                    slot.copy_from_slice(&value.to_le_bytes());
                }
            }
            let len = cut.map_or(elf.len(), |cut| cut.index(elf.len() + 1));
            let _ = check_elf(&elf[..len]);
        }

        #[test]
        fn real_prefix_passes_exactly_when_all_segments_fit(cut in any::<proptest::sample::Index>()) {
            let elf = mutation_base();
            let full = shortest_valid_prefix(elf);
            let len = cut.index(elf.len() + 1);
            prop_assert_eq!(check_elf(&elf[..len]).is_ok(), len >= full);
        }
    }
}
