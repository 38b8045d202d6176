//! From a file to a checked library: nothing here starts a thread (beyond the reused manifest
//! readers) or touches host state.
//!
//! 1. [`discover`]: which files in a folder are plugin candidates.
//! 2. [`shadow`]: the private folder copies are made in, and their random names.
//! 3. [`preflight`]: checks on the file and its private copy before anything is opened
//!    (regular file, permissions, the copy's bytes, allowlist digest).
//! 4. [`image`]: what the copy's bytes are (format, processor, complete, exports the root
//!    symbol), read with the `object` crate.
//! 5. [`open`]: opening the checked copy, binding every symbol now: the loader's only `unsafe`.
//! 6. [`layout`]: what differs when abi_stable refuses the layout.
//! 7. [`manifest`]: the manifest read on a reused reader thread, within a deadline.
//! 8. [`library`]: the pipeline from file to [`library::PluginLibrary`].
//! 9. [`progress`]: how far a load has got, for the application's progress bar.
pub(crate) mod discover;
pub(crate) mod image;
pub(crate) mod layout;
pub(crate) mod library;
pub(crate) mod manifest;
pub(crate) mod open;
pub(crate) mod preflight;
pub(crate) mod progress;
pub(crate) mod shadow;

/// Real libraries for unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::{path::PathBuf, sync::OnceLock};

    /// The bytes of the greeter example plugin, which cargo builds into the folder of this test
    /// binary (`target/<profile>/deps`) because loader dev-depends on it.
    pub fn plugin_bytes() -> &'static [u8] {
        static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
        BYTES.get_or_init(|| {
            let path = plugin_path();
            std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        })
    }

    /// Where [`plugin_bytes`] come from.
    pub fn plugin_path() -> PathBuf {
        let exe = std::env::current_exe().expect("the test binary's path");
        exe.parent()
            .expect("the test binary's folder")
            .join(super::discover::library_file_name("greeter"))
    }

    /// A shared library of this system that is not a plugin (libm), if there is one.
    pub fn system_library() -> Option<&'static (PathBuf, Vec<u8>)> {
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
                    .flat_map(|name| dirs.iter().map(move |dir| PathBuf::from(dir).join(name)))
                    .find_map(|path| {
                        let bytes = std::fs::read(&path).ok()?;
                        bytes.starts_with(b"\x7fELF").then_some((path, bytes))
                    });
                if found.is_none() {
                    eprintln!("no system libm.so.6 or libc.so.6: skipping checks that need one");
                }
                found
            })
            .as_ref()
    }
}
