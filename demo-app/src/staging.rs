//! Copying the example plugins into the default plugins folder.
//!
//! Cargo builds the example plugins (dependencies of this crate) into `<exe dir>/deps`, next to
//! libraries that are not plugins (proc macros). Loading `deps/` directly would report those as
//! failures, so the demo copies just the example plugins into `<exe dir>/plugins` and loads that:
//! `cargo run -p demo-app -- list` then works on a fresh clone with no flags.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::SystemTime,
};

use loader::library_file_name;

/// The example plugin crates this binary depends on.
pub const EXAMPLE_PLUGINS: [&str; 9] = [
    "greeter",
    "welcome",
    "audit-log",
    "echo",
    "counter",
    "notes",
    "validator",
    "users",
    "scripts",
];

/// The default plugins folder: `plugins/` beside the running executable.
///
/// # Errors
/// The executable's path cannot be found.
pub fn default_plugins_dir() -> io::Result<PathBuf> {
    Ok(exe_dir()?.join("plugins"))
}

/// Copies each example plugin from `<exe dir>/deps` into `plugins_dir` when it is missing there
/// or the build output differs (size, or a newer modification time). Returns the file names
/// copied.
///
/// A plugin missing from `deps/` (the binary was installed without its build tree) or one that
/// cannot be copied is logged and skipped: the folder is then loaded with what it has.
///
/// # Errors
/// `plugins_dir` cannot be created.
pub fn stage_examples(plugins_dir: &Path) -> io::Result<Vec<String>> {
    let deps = exe_dir()?.join("deps");
    fs::create_dir_all(plugins_dir)?;
    if !deps.is_dir() {
        log::info!(
            "no build folder {}: the example plugins are not staged",
            deps.display()
        );
        return Ok(Vec::new());
    }
    let mut copied = Vec::new();
    for crate_name in EXAMPLE_PLUGINS {
        let file_name = library_file_name(crate_name);
        let from = deps.join(&file_name);
        let to = plugins_dir.join(&file_name);
        match stage_one(&from, &to) {
            Ok(true) => {
                log::info!("staged {} into {}", file_name, plugins_dir.display());
                copied.push(file_name);
            }
            Ok(false) => {}
            Err(e) => log::warn!("cannot stage example plugin {}: {e}", from.display()),
        }
    }
    Ok(copied)
}

fn exe_dir() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent().map(Path::to_path_buf).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("executable {} has no parent folder", exe.display()),
        )
    })
}

/// Copies `from` to `to` if needed; returns whether it copied.
fn stage_one(from: &Path, to: &Path) -> io::Result<bool> {
    let source = fs::metadata(from)?;
    if let Ok(target) = fs::metadata(to) {
        if !needs_copy(
            source.len(),
            source.modified().ok(),
            target.len(),
            target.modified().ok(),
        ) {
            return Ok(false);
        }
    }
    // Write under a temporary name, then rename over the target: a host loading the folder at
    // the same time sees the old file or the new one, never half a library. The leading dot
    // keeps the temporary file out of plugin discovery.
    let file_name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = to.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = copy_then_rename(from, &temp, to, source.modified().ok());
    if result.is_err() {
        // Best effort: the temporary name is ours alone, and a leftover is harmless anyway
        // because discovery skips dot files.
        let _ = fs::remove_file(&temp);
    }
    result.map(|()| true)
}

fn copy_then_rename(
    from: &Path,
    temp: &Path,
    to: &Path,
    modified: Option<SystemTime>,
) -> io::Result<()> {
    fs::copy(from, temp)?;
    if let Some(modified) = modified {
        // The copy gets the build's time, so "deps is newer" means exactly "rebuilt since".
        fs::File::options()
            .write(true)
            .open(temp)?
            .set_modified(modified)?;
    }
    fs::rename(temp, to)
}

/// Whether the staged copy is out of date: a different size, or an older modification time
/// than the build output. Unknown times count as up to date when the sizes match, so a file
/// system without mtimes does not copy on every run.
fn needs_copy(
    source_len: u64,
    source_modified: Option<SystemTime>,
    target_len: u64,
    target_modified: Option<SystemTime>,
) -> bool {
    if source_len != target_len {
        return true;
    }
    match (source_modified, target_modified) {
        (Some(source), Some(target)) => source > target,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn copy_when_size_differs_or_source_is_newer() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let t1 = t0 + Duration::from_secs(1);
        assert!(needs_copy(10, Some(t0), 11, Some(t0)));
        assert!(needs_copy(10, Some(t1), 10, Some(t0)));
        assert!(!needs_copy(10, Some(t0), 10, Some(t0)));
        assert!(!needs_copy(10, Some(t0), 10, Some(t1)));
        assert!(!needs_copy(10, None, 10, Some(t1)));
    }

    #[test]
    fn stage_one_copies_then_skips() {
        let dir = std::env::temp_dir().join(format!("demo-app-stage-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let from = dir.join("src.bin");
        let to = dir.join("dst.bin");
        fs::write(&from, b"library").expect("write");
        assert!(stage_one(&from, &to).expect("first copy"));
        assert_eq!(fs::read(&to).expect("read"), b"library");
        assert!(!stage_one(&from, &to).expect("up to date"));
        fs::write(&from, b"library v2").expect("rewrite");
        assert!(stage_one(&from, &to).expect("changed size"));
        assert_eq!(fs::read(&to).expect("read"), b"library v2");
        let leftovers = fs::read_dir(&dir)
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count();
        assert_eq!(leftovers, 0);
        let _ = fs::remove_dir_all(&dir);
    }
}
