//! Opening a checked copy: the loader's only `unsafe` code, in one function.

use std::{
    fs::File,
    mem::ManuallyDrop,
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
};

use abi_stable::library::{
    AbiHeaderRef, LibHeader, LibraryError, ROOT_MODULE_LOADER_NAME_WITH_NUL,
};
use plugin_api::PluginModRef;

static IMAGES_MAPPED: AtomicU64 = AtomicU64::new(0);

/// How many libraries [`open_image`] has mapped in this process (none is ever unmapped).
pub(crate) fn images_mapped() -> u64 {
    IMAGES_MAPPED.load(Ordering::Relaxed)
}

/// Why [`open_image`] has no header.
pub(crate) enum OpenFailure {
    /// The dynamic linker refused the file; its message, without the name it was opened by.
    Open(String),
    /// The root symbol was not found (the export check said it is there: a linker surprise).
    NoRootSymbol,
    /// The file at the copy's path is not the file that was checked (non-Linux Unix).
    #[cfg(unix)]
    Replaced,
    /// abi_stable refused the library's header or root module (interface version, layout);
    /// the header, when its layout can be described.
    Library {
        error: LibraryError,
        header: Option<&'static LibHeader>,
    },
}

/// Maps the checked copy of a plugin and returns its root module after abi_stable's checks,
/// leaking the library so that the `'static` module stays valid. A layout that differs from
/// the host's is accepted only when `accept_older` says the plugin was built against an older
/// minor plugin-api (its host context vtable is shorter, nothing else differs).
///
/// `copy` is the copy's path and `file` an open handle to the very file whose bytes were
/// checked (see [`crate::load::preflight`]).
///
/// # Loading runs the plugin's initialisers
///
/// Opening a library runs its constructors (`.init_array`, `DllMain`, Rust statics with
/// initialisers) with the host's rights before this function returns. Call it only for a file
/// whose bytes passed [`check_image`](crate::load::image::check_image) (and the allowlist, when
/// there is one): then non-plugins, truncated files and foreign libraries were refused without
/// running anything, and what runs is code that claims to be a plugin.
///
/// # Safety
///
/// This function is safe to call: it holds the loader's only `unsafe` blocks, each sound for
/// the reasons written beside it. What no Rust check can give is trust in the plugin: code
/// that runs inside the host can do anything the host can. The loader's checks stop accidents
/// (wrong files, broken builds, other interface versions and layouts); only an allowlist stops
/// unknown builds from running.
///
/// # Platform-specific behaviour
///
/// - Linux: opened as `/proc/self/fd/<n>` of `file`, so what is mapped is the checked file
///   even if its path is renamed or replaced in between; `dlopen` with
///   `RTLD_NOW | RTLD_LOCAL`, so a symbol the library needs and nothing defines refuses it
///   now, not with a `symbol lookup error` exit on first call. The descriptor stays open for
///   as long as the image is mapped (forever): glibc matches libraries by the name they were
///   opened by, so that name must never be reused for another file.
/// - Other Unix: `dlopen(copy, RTLD_NOW | RTLD_LOCAL)`, then the device and inode now at
///   `copy` are compared with `file`'s; a mismatch is [`OpenFailure::Replaced`] (the image
///   stays mapped but is never used).
/// - Windows: `LoadLibraryExW(copy, 0)` while `file` is held open with share mode
///   `FILE_SHARE_READ` (no writer, no rename, no delete meanwhile). Windows binds imports at
///   load; there is no lazy binding to turn off.
///
/// The library is never closed (see the crate docs): the header, the root module and the
/// vtables it hands out point into it.
#[allow(
    unsafe_code,
    reason = "opening a native library and reading its root symbol cannot be done in safe Rust"
)]
pub(crate) fn open_image(
    copy: &Path,
    file: File,
    accept_older: impl FnOnce(&LibHeader) -> bool,
) -> Result<PluginModRef, OpenFailure> {
    #[cfg(unix)]
    let library = {
        use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
        let name = opened_name(copy, &file);
        // SAFETY: dlopen has no memory-safety preconditions of its own; it runs the library's
        // initialisers, which is what the caller checked the file for (see `# Safety`).
        let opened = unsafe { Library::open(Some(name.as_os_str()), RTLD_NOW | RTLD_LOCAL) };
        let library = opened.map_err(|e| OpenFailure::Open(dl_message(&e, &name)))?;
        // Never closed, whatever happens next: code, statics and vtables of it may be in use.
        let library = ManuallyDrop::new(library);
        IMAGES_MAPPED.fetch_add(1, Ordering::Relaxed);
        if name.as_path() != copy {
            // Opened through the descriptor: keep it for as long as the image is mapped.
            std::mem::forget(file);
        } else if !same_file(copy, &file) {
            return Err(OpenFailure::Replaced);
        }
        library
    };
    #[cfg(windows)]
    let library = {
        use libloading::os::windows::Library;
        // SAFETY: as for dlopen above: LoadLibraryExW runs the DLL's initialisers, which the
        // caller checked the file for. `file` denies writers, renames and deletes until the
        // DLL is mapped.
        let opened = unsafe { Library::new(copy) };
        let library = opened.map_err(|e| OpenFailure::Open(dl_message(&e, copy)))?;
        drop(file);
        IMAGES_MAPPED.fetch_add(1, Ordering::Relaxed);
        ManuallyDrop::new(library)
    };
    // SAFETY: abi_stable's `export_root_module` defines the root symbol as a `static` whose
    // address is the library's `AbiHeader` (the start of its `LibHeader`); `AbiHeaderRef` is a
    // `repr(transparent)` reference to it, and libloading hands back the symbol's address as
    // the value of a pointer-sized `T`, as abi_stable's own loader reads it. The reference is
    // `'static` because the library is never closed. `upgrade` checks the header's magic and
    // version before anything else is read through it (on ELF the image check made sure the
    // symbol is at least an `AbiHeader` long; PE and Mach-O record no symbol sizes).
    let header =
        unsafe { library.get::<AbiHeaderRef>(ROOT_MODULE_LOADER_NAME_WITH_NUL.as_bytes()) }
            .map(|symbol| *symbol)
            .map_err(|_| OpenFailure::NoRootSymbol)?;
    let header = header.upgrade().map_err(|error| OpenFailure::Library {
        error,
        header: None,
    })?;
    match header.init_root_module::<PluginModRef>() {
        Ok(module) => Ok(module),
        Err(LibraryError::AbiInstability(_)) if accept_older(header) => {
            // SAFETY: abi_stable's layout checker ran on this library and `accept_older` found
            // that its only finding is a plugin copy of the host context vtable with fewer
            // entries than the host's (see `layout::only_older_context`): every type, field and
            // entry both know is the same. The host's longer vtable keeps those entries where
            // the plugin expects them (a prefix type only grows at its end), and the plugin
            // reads no entry it does not know. Everything the host reads from the plugin (the
            // root module, the instance vtable) has the host's layout exactly.
            unsafe { header.init_root_module_with_unchecked_layout::<PluginModRef>() }.map_err(
                |error| OpenFailure::Library {
                    error,
                    header: None,
                },
            )
        }
        Err(error) => Err(OpenFailure::Library {
            error,
            header: Some(header),
        }),
    }
}

/// The name `copy` is opened by: `/proc/self/fd/<n>` where procfs is there (Linux).
#[cfg(unix)]
fn opened_name(copy: &Path, file: &File) -> std::path::PathBuf {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let by_fd = std::path::PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        if by_fd.exists() {
            return by_fd;
        }
    }
    let _ = file;
    copy.to_owned()
}

/// Whether `copy` still names the file behind `file` (same device and inode).
#[cfg(unix)]
fn same_file(copy: &Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(copy), file.metadata()) {
        (Ok(now), Ok(checked)) => (now.dev(), now.ino()) == (checked.dev(), checked.ino()),
        _ => false,
    }
}

/// The dynamic linker's message, without the name the file was opened by (errors name the
/// plugin file themselves; `/proc/self/fd/7` would only confuse).
fn dl_message(error: &libloading::Error, opened_as: &Path) -> String {
    let text = std::error::Error::source(error)
        .map(ToString::to_string)
        .unwrap_or_else(|| error.to_string());
    let prefix = format!("{}: ", opened_as.display());
    text.strip_prefix(&prefix).unwrap_or(&text).to_owned()
}
