//! Shared helpers for the integration tests in `tests/tests/`, which load real plugin libraries.
//!
//! - [`example_lib`]: the `.so` of an example plugin, which cargo builds next to the test binaries
//!   because this crate dev-depends on every example plugin crate.
//! - [`fixture`]: the `.so` of a fixture plugin from the separate workspace in `tests/fixtures/`
//!   (plugins that fail on purpose), built on first use, once per test process.
//! - [`PluginDir`]: a private temporary plugins folder to copy libraries and junk into, and a
//!   host for it.
//! - [`wait_until`]: polls a condition with a generous bound; tests never assert on time.
//!
//! ```no_run
//! use tests::{json, PluginDir};
//!
//! let dir = PluginDir::new();
//! dir.add_example("greeter");
//! dir.add_fixture("activate-fails");
//! let (host, report) = dir.load();
//! assert!(report.error_for("libfixture_activate_fails.so").is_some());
//! let reply = host.execute("greeter:greet", json(r#"{"name":"Ada"}"#)).unwrap();
//! assert_eq!(tests::to_json(&reply)["message"], "Hello, Ada!");
//! ```
//!
//! (`no_run`: the helpers find the libraries from the running test binary's location, which a
//! doctest does not share.)
#![forbid(unsafe_code)]

use std::{
    env::consts::{DLL_PREFIX, DLL_SUFFIX},
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use loader::{Host, HostConfig, LoadReport, PluginInfo, PluginMetrics};
use plugin_api::Payload;
use tempfile::TempDir;

/// How long [`wait_until`] waits before it gives up: far beyond anything a passing test needs,
/// so a slow machine never fails a test, while a hang still ends.
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// The file name cargo gives the cdylib of crate `crate_name` on this platform
/// (`libgreeter.so`, `libaudit_log.so`).
pub fn library_file_name(crate_name: &str) -> String {
    format!("{DLL_PREFIX}{}{DLL_SUFFIX}", crate_name.replace('-', "_"))
}

/// The folder of the running test binary: `target/<profile>/deps`, where cargo also puts the
/// cdylibs of the example plugins this crate dev-depends on.
fn deps_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test binary");
    exe.parent()
        .expect("the test binary lives in a folder")
        .to_path_buf()
}

/// The main workspace's target folder (`target/`, or `target/<triple>/` when cross-building),
/// found from the running test binary in `<it>/<profile>/deps/`.
pub fn target_dir() -> PathBuf {
    let deps = deps_dir();
    deps.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not <target>/<profile>/deps", deps.display()))
        .to_path_buf()
}

/// The example plugin library of crate `crate_name` (for example `"audit-log"`), as cargo built
/// it for this test run.
///
/// # Panics
/// If the library is missing: the crate is not a dev-dependency of the `tests` crate.
pub fn example_lib(crate_name: &str) -> PathBuf {
    let path = deps_dir().join(library_file_name(crate_name));
    assert!(
        path.is_file(),
        "{} not found: is {crate_name} a dev-dependency of the tests crate?",
        path.display()
    );
    path
}

static FIXTURES: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Builds the fixtures workspace (once per process) and returns the folder holding its
/// libraries.
///
/// Cargo's own lock and fingerprints make this cheap when nothing changed and safe when several
/// test binaries build at once. The fixtures go to `<target>/fixtures`, not the main target
/// folder, so this never waits on (or invalidates) the build that runs the tests.
///
/// # Panics
/// If cargo fails; the message holds the command and cargo's full output.
pub fn fixtures_dir() -> &'static Path {
    match FIXTURES.get_or_init(build_fixtures) {
        Ok(dir) => dir,
        Err(message) => panic!("{message}"),
    }
}

fn build_fixtures() -> Result<PathBuf, String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("Cargo.toml");
    let target = target_dir().join("fixtures");
    // Every fixture but `panic-abort` as usual; then that one alone with panic = "abort" (only
    // the final crate: its unwinding dependencies link into it fine).
    cargo(
        &manifest,
        &target,
        &["build", "--workspace", "--exclude", "fixture-panic-abort"],
    )?;
    cargo(
        &manifest,
        &target,
        &[
            "rustc",
            "-p",
            "fixture-panic-abort",
            "--",
            "-C",
            "panic=abort",
        ],
    )?;
    Ok(target.join("debug"))
}

fn cargo(manifest: &Path, target: &Path, args: &[&str]) -> Result<(), String> {
    let program: OsString = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(OsString::from))
        .unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&program);
    command
        .arg(args[0])
        .arg("--manifest-path")
        .arg(manifest)
        .args(&args[1..])
        .env("CARGO_TARGET_DIR", target)
        // The fixtures are found in `<target>/debug`: no cross target.
        .env_remove("CARGO_BUILD_TARGET");
    let shown = format!("{command:?}");
    let output = command
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "building the test fixtures failed ({}): {shown}\n--- stderr ---\n{}\n--- stdout ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        ))
    }
}

/// The library of fixture `name` from `tests/fixtures/` (for example `"activate-fails"`, which
/// is crate `fixture-activate-fails`), building the fixtures first if this process has not yet.
///
/// A fixture whose library keeps the default name is `libfixture_<name>.so`; one that sets its
/// own `[lib] name` is found by that name (`"greeter-v2"` → `libgreeter_v2.so`).
///
/// # Panics
/// If the build fails (with cargo's output) or there is no such fixture.
pub fn fixture(name: &str) -> PathBuf {
    let dir = fixtures_dir();
    let candidates = [
        library_file_name(&format!("fixture-{name}")),
        library_file_name(name),
    ];
    candidates
        .iter()
        .map(|file| dir.join(file))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "fixture {name}: none of {candidates:?} in {}: is it a member of tests/fixtures/Cargo.toml?",
                dir.display()
            )
        })
}

/// A private, temporary plugins folder (mode 0700: the loader refuses world-writable folders),
/// with its own data folder for the host. Both are removed on drop.
#[derive(Debug)]
pub struct PluginDir {
    plugins: TempDir,
    data: TempDir,
}

impl Default for PluginDir {
    fn default() -> Self {
        Self::new()
    }
}

impl PluginDir {
    /// An empty plugins folder.
    ///
    /// # Panics
    /// If the temporary folders cannot be created.
    pub fn new() -> Self {
        let plugins = tempfile::Builder::new()
            .prefix("plugins-")
            .tempdir()
            .expect("temporary plugins folder");
        let data = tempfile::Builder::new()
            .prefix("host-data-")
            .tempdir()
            .expect("temporary data folder");
        set_mode(plugins.path(), 0o700);
        PluginDir { plugins, data }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.plugins.path()
    }

    /// The path a file named `name` has in the folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// Copies the example plugin of crate `crate_name` into the folder under its usual name
    /// (`libgreeter.so`); returns the copy.
    pub fn add_example(&self, crate_name: &str) -> PathBuf {
        self.copy_in(&example_lib(crate_name), &library_file_name(crate_name))
    }

    /// Copies the example plugin of crate `crate_name` into the folder as `file_name`.
    pub fn add_example_as(&self, crate_name: &str, file_name: &str) -> PathBuf {
        self.copy_in(&example_lib(crate_name), file_name)
    }

    /// Copies fixture `name` into the folder under its library name
    /// (`libfixture_activate_fails.so`); returns the copy.
    pub fn add_fixture(&self, name: &str) -> PathBuf {
        let source = fixture(name);
        let file_name = source
            .file_name()
            .expect("a library file has a name")
            .to_string_lossy()
            .into_owned();
        self.copy_in(&source, &file_name)
    }

    /// Writes `bytes` into the folder as `name` (mode 0644); returns the path.
    pub fn add_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.file(name);
        fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        set_mode(&path, 0o644);
        path
    }

    fn copy_in(&self, source: &Path, file_name: &str) -> PathBuf {
        let path = self.file(file_name);
        fs::copy(source, &path)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", source.display(), path.display()));
        // Whatever the build's umask was, the copy must not be world-writable.
        set_mode(&path, 0o755);
        path
    }

    /// A host for this folder with in-memory storage and default settings; nothing loaded yet.
    pub fn host(&self) -> Host {
        self.host_with(|_| {})
    }

    /// A host for this folder with in-memory storage, after `configure` changed its settings
    /// (queue bounds, deadlines...); nothing loaded yet.
    pub fn host_with(&self, configure: impl FnOnce(&mut HostConfig)) -> Host {
        Host::builder()
            .plugins_dir(self.path())
            .data_dir(self.data.path())
            .in_memory_storage()
            .configure(configure)
            .build()
            .expect("an in-memory host builds")
    }

    /// [`PluginDir::host`], then [`Host::load_dir`].
    pub fn load(&self) -> (Host, LoadReport) {
        self.load_with(|_| {})
    }

    /// [`PluginDir::host_with`], then [`Host::load_dir`].
    pub fn load_with(&self, configure: impl FnOnce(&mut HostConfig)) -> (Host, LoadReport) {
        let host = self.host_with(configure);
        let report = host.load_dir().expect("the plugins folder can be listed");
        (host, report)
    }
}

/// Sets the permission bits of `path` (Unix only; a no-op elsewhere).
pub fn set_mode(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

/// A JSON payload from JSON text.
///
/// # Panics
/// If `text` is not JSON.
pub fn json(text: &str) -> Payload {
    Payload::from_json_str(text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
}

/// A JSON payload's value.
///
/// # Panics
/// If the payload is not JSON (or empty, which reads as `null`).
pub fn to_json(payload: &Payload) -> serde_json::Value {
    let text = payload
        .to_json_string()
        .unwrap_or_else(|e| panic!("payload is not JSON: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("invalid JSON {text:?}: {e}"))
}

/// Polls `condition` every few milliseconds until it holds, for at most [`WAIT_LIMIT`].
///
/// # Panics
/// When the limit passes, saying what was awaited.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_LIMIT;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "gave up after {WAIT_LIMIT:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What the host says about plugin `name`.
///
/// # Panics
/// If the host does not know the plugin.
pub fn info(host: &Host, name: &str) -> PluginInfo {
    host.plugin(name)
        .unwrap_or_else(|| panic!("the host does not know plugin {name}"))
}

/// Plugin `name`'s counters now.
///
/// # Panics
/// If the host does not know the plugin.
pub fn metrics(host: &Host, name: &str) -> PluginMetrics {
    info(host, name).metrics
}

/// A copy of the ELF library `bytes` cut in the middle of a `PT_LOAD` segment that lies after
/// the program header table: the headers are intact but the segment's data is not all there,
/// which makes dlopen fault (SIGBUS) unless the loader checks first.
///
/// # Panics
/// If `bytes` is not a 64-bit little-endian ELF file with such a segment.
pub fn truncated_inside_pt_load(bytes: &[u8]) -> Vec<u8> {
    const PT_LOAD: u32 = 1;
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| {
        let raw = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        usize::try_from(raw).expect("offset fits in usize")
    };
    assert!(
        bytes.len() > 64 && bytes[..4] == *b"\x7fELF" && bytes[4] == 2 && bytes[5] == 1,
        "not a 64-bit little-endian ELF file"
    );
    let phoff = u64_at(32);
    let phentsize = usize::from(u16_at(54));
    let phnum = usize::from(u16_at(56));
    let table_end = phoff + phentsize * phnum;
    let (offset, size) = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .filter(|&ph| u32_at(ph) == PT_LOAD)
        .map(|ph| (u64_at(ph + 8), u64_at(ph + 32)))
        .filter(|&(offset, size)| offset >= table_end && size > 1)
        .max_by_key(|&(_, size)| size)
        .expect("a PT_LOAD segment with data after the program headers");
    let cut = offset + size / 2;
    assert!(cut < bytes.len(), "the segment lies inside the file");
    bytes[..cut].to_vec()
}
