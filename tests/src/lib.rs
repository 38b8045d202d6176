//! Shared helpers for the integration tests in `tests/tests/`, which load real plugin libraries.
//!
//! - [`example_lib`]: the `.so` of an example plugin, which cargo builds next to the test binaries
//!   because this crate dev-depends on every example plugin crate.
//! - [`fixture`]: the `.so` of a fixture plugin from the separate workspace in `tests/fixtures/`
//!   (plugins that fail on purpose), built on first use, once per test process.
//! - [`PluginDir`]: a private temporary plugins folder to copy libraries and junk into, and a
//!   host for it (with [`PluginDir::host_with_worker`], one whose workers run the `worker-host`
//!   binary of this crate).
//! - [`c_libs`]: C libraries compiled once per test process, for what loading runs.
//! - [`wait_until`]: polls a condition with a generous bound; tests never assert on time.
//! - Checks and steps several test files share: the error a [`LoadReport`] has for a file
//!   ([`error_for`], [`assert_names_file`], [`assert_bad_library`]), greeter still serving
//!   ([`assert_greeter_serves`]), capability refusals ([`assert_permission_denied`]), the host's
//!   lifecycle events ([`Lifecycle`]), replacing a plugin file atomically ([`replace_by_rename`])
//!   and the `slow` fixture held busy with calls queued behind it ([`hold_slow_with_queued_calls`]).
//!
//! ```no_run
//! use tests::{json, PluginDir};
//!
//! let dir = PluginDir::new();
//! dir.add_example("greeter");
//! dir.add_fixture("activate-fails");
//! let (host, report) = dir.load();
//! assert!(report.error_for(&loader::library_file_name("fixture_activate_fails")).is_some());
//! let reply = host.execute("greeter:greet", json(r#"{"name":"Ada"}"#)).unwrap();
//! assert_eq!(tests::to_json(&reply)["message"], "Hello, Ada!");
//! ```
//!
//! (`no_run`: the helpers find the libraries from the running test binary's location, which a
//! doctest does not share.)
#![forbid(unsafe_code)]

#[cfg(unix)]
pub mod c_libs;

use std::{
    env::consts::{DLL_PREFIX, DLL_SUFFIX},
    ffi::OsString,
    fmt::Debug,
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use loader::{
    Host, HostConfig, LoadError, LoadReport, PluginInfo, PluginMetrics, PluginState, Subscription,
};
use plugin_api::{ErrorKind, Payload, PluginError};
use serde::Serialize;
use tempfile::TempDir;

/// How long [`wait_until`] waits before it gives up: far beyond anything a passing test needs,
/// so a slow machine never fails a test, while a hang still ends.
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// The example plugins the `tests` crate dev-depends on (and `demo-app` stages into its default
/// plugins folder), by crate name.
pub const EXAMPLES: [&str; 9] = [
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

/// The symbol every plugin library exports (abi_stable's `ROOT_MODULE_LOADER_NAME`).
pub const ROOT_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// What the image check says of a file that is no library at all, on this platform (part of
/// [`LoadError::BadLibrary`]'s reason).
pub const NOT_A_LIBRARY: &str = if cfg!(windows) {
    "not a PE (Windows) library"
} else if cfg!(target_vendor = "apple") {
    "not a Mach-O (macOS) library"
} else {
    "not an ELF file"
};

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

/// The worker program of these tests' hosts (isolated plugins, the doctor's manifest reader):
/// the `worker-host` binary of this crate, which cargo builds before the integration tests.
pub fn worker_program() -> PathBuf {
    let name = format!("worker-host{}", std::env::consts::EXE_SUFFIX);
    let path = deps_dir()
        .parent()
        .unwrap_or_else(|| panic!("{} has no parent", deps_dir().display()))
        .join(name);
    assert!(path.is_file(), "{} not found", path.display());
    path
}

/// Asserts that this test binary is one of the `isolated_*.rs` ones and that its plugins really
/// run in processes of their own (an example plugin loaded here reports a worker process).
#[track_caller]
pub fn assert_isolated_binary() {
    assert!(isolates_everything());
    let dir = PluginDir::with_examples(&["echo"]);
    let host = dir.load_ok();
    let echo = info(&host, "echo");
    assert_eq!(echo.isolation, loader::Isolation::Process);
    assert!(echo.process_id.is_some(), "echo reports no worker process");
}

/// Whether this test binary runs every plugin isolated: the test files named `isolated_*.rs`
/// re-run the tests of other files (included as `#[path]` modules) that way, so the same
/// assertions hold in both modes.
pub fn isolates_everything() -> bool {
    static ISOLATED: OnceLock<bool> = OnceLock::new();
    *ISOLATED.get_or_init(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
            .is_some_and(|name| name.starts_with("isolated_"))
    })
}

/// Runs `plugins` (or, with `["*"]`, every plugin) in child processes of their own, started
/// from [`worker_program`].
pub fn isolate(config: &mut HostConfig, plugins: &[&str]) {
    config.worker_program = Some(worker_program());
    for plugin in plugins {
        if *plugin == "*" {
            config.isolation = loader::Isolation::Process;
        } else {
            config
                .plugins
                .entry((*plugin).to_owned())
                .or_default()
                .isolation = Some(loader::Isolation::Process);
        }
    }
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

/// The `cargo` running these tests: `$CARGO` at run time, else at build time, else `cargo`.
pub fn cargo_program() -> OsString {
    std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(OsString::from))
        .unwrap_or_else(|| "cargo".into())
}

fn cargo(manifest: &Path, target: &Path, args: &[&str]) -> Result<(), String> {
    let mut command = Command::new(cargo_program());
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

/// A new, empty, private (mode 0700) temporary folder whose name starts with `prefix`, for
/// data, configs or scaffolds; removed on drop.
///
/// # Panics
/// If the folder cannot be created.
pub fn temp_dir(prefix: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap_or_else(|e| panic!("temporary folder {prefix}...: {e}"));
    set_mode(dir.path(), 0o700);
    dir
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
        PluginDir {
            plugins: temp_dir("plugins-"),
            data: temp_dir("host-data-"),
        }
    }

    /// A plugins folder holding the example plugins of the given crates (see [`EXAMPLES`]).
    pub fn with_examples(crate_names: &[&str]) -> Self {
        let dir = Self::new();
        for crate_name in crate_names {
            dir.add_example(crate_name);
        }
        dir
    }

    /// A plugins folder holding the given fixtures (see [`PluginDir::add_fixture`]).
    pub fn with_fixtures(names: &[&str]) -> Self {
        let dir = Self::new();
        for name in names {
            dir.add_fixture(name);
        }
        dir
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
    ///
    /// In a test binary that [`isolates_everything`], every plugin runs in a child process of
    /// its own (unless the test's config says otherwise for a plugin).
    pub fn host_with(&self, configure: impl FnOnce(&mut HostConfig)) -> Host {
        Host::builder()
            .plugins_dir(self.path())
            .data_dir(self.data.path())
            .in_memory_storage()
            .configure(configure)
            .configure(|config| {
                if isolates_everything() {
                    config.isolation = loader::Isolation::Process;
                    config.worker_program.get_or_insert_with(worker_program);
                }
            })
            .build()
            .expect("an in-memory host builds")
    }

    /// [`PluginDir::host_with`], with worker processes (the doctor's manifest reader) started
    /// from `worker`: a test binary is no host that calls `loader::worker::run_if_worker`, so
    /// integration tests pass `env!("CARGO_BIN_EXE_worker-host")` (`src/bin/worker-host.rs`).
    pub fn host_with_worker(
        &self,
        worker: impl AsRef<Path>,
        configure: impl FnOnce(&mut HostConfig),
    ) -> Host {
        Host::builder()
            .plugins_dir(self.path())
            .data_dir(self.data.path())
            .in_memory_storage()
            .worker_program(worker.as_ref())
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

    /// [`PluginDir::load`], asserting that every file loaded and activated; returns the host.
    #[track_caller]
    pub fn load_ok(&self) -> Host {
        self.load_ok_with(|_| {})
    }

    /// [`PluginDir::load_with`], asserting that every file loaded and activated; returns the
    /// host.
    #[track_caller]
    pub fn load_ok_with(&self, configure: impl FnOnce(&mut HostConfig)) -> Host {
        let (host, report) = self.load_with(configure);
        assert!(report.is_ok(), "{report:?}");
        host
    }

    /// Loads the folder under the host config `toml` (its plugins and data folders stay this
    /// folder's).
    ///
    /// # Panics
    /// If `toml` is not a valid host config.
    pub fn load_with_config(&self, toml: &str) -> (Host, LoadReport) {
        let parsed = HostConfig::from_toml_str(toml).expect("a valid config");
        self.load_with(|config| {
            let (plugins_dir, data_dir) = (config.plugins_dir.take(), config.data_dir.take());
            *config = parsed;
            config.plugins_dir = plugins_dir;
            config.data_dir = data_dir;
        })
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

/// A JSON payload holding `value`.
///
/// # Panics
/// If `value` cannot be written as JSON.
pub fn json_payload<T: Serialize + ?Sized>(value: &T) -> Payload {
    Payload::json(value).expect("json")
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

// ---- load reports ---------------------------------------------------------------------------

/// A folder with greeter and whatever `add` puts in (returning the bad file), loaded. Returns
/// the folder (keep it until the end of the test), the host, its load report and the bad file.
pub fn load_beside_greeter(
    add: impl FnOnce(&PluginDir) -> PathBuf,
) -> (PluginDir, Host, LoadReport, PathBuf) {
    let dir = PluginDir::new();
    dir.add_example("greeter");
    let bad = add(&dir);
    let (host, report) = dir.load();
    (dir, host, report, bad)
}

/// The error `report` has for `file`, which must exist.
///
/// # Panics
/// If the report has no error for the file.
#[track_caller]
pub fn error_for<'r>(report: &'r LoadReport, file: &Path) -> &'r LoadError {
    let name = file
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    report
        .error_for(&name)
        .unwrap_or_else(|| panic!("no error reported for {name}: {report:?}"))
}

/// Asserts that the error's message names `file` (by its full path).
#[track_caller]
pub fn assert_names_file(error: &LoadError, file: &Path) {
    let text = error.to_string();
    assert!(
        text.contains(&file.display().to_string()),
        "{text:?} does not name {}",
        file.display()
    );
}

/// Asserts that `report` refused `file` as a bad library ([`LoadError::BadLibrary`] for that
/// path) for a reason containing `reason_part`, in a message that names the file.
#[track_caller]
pub fn assert_bad_library(report: &LoadReport, file: &Path, reason_part: &str) {
    let error = error_for(report, file);
    match error {
        LoadError::BadLibrary { path, reason } => {
            assert_eq!(path, file);
            assert!(reason.contains(reason_part), "{reason}");
        }
        other => panic!("expected BadLibrary, got {other:?}"),
    }
    assert_names_file(error, file);
}

// ---- greeter --------------------------------------------------------------------------------

/// Asserts that `reply` is greeter's answer to `greeter:greet` for Ada (`Hello, Ada!`) and that
/// greeter is still active.
#[track_caller]
pub fn assert_greeted_ada(host: &Host, reply: Result<Payload, PluginError>) {
    let reply = reply.expect("greeter still answers");
    assert_eq!(to_json(&reply)["message"], "Hello, Ada!");
    assert_eq!(info(host, "greeter").state, PluginState::Active);
}

/// Greeter is active and greets Ada, answering within [`WAIT_LIMIT`] whatever call deadline the
/// host is configured with.
#[track_caller]
pub fn assert_greeter_serves(host: &Host) {
    let reply = host.execute_with_timeout("greeter:greet", json(r#"{"name":"Ada"}"#), WAIT_LIMIT);
    assert_greeted_ada(host, reply);
}

// ---- capabilities ---------------------------------------------------------------------------

/// Asserts that `result` is a permission-denied error whose message contains `message_part`
/// (for example `plugin greeter lacks capability provider:users`).
#[track_caller]
pub fn assert_permission_denied(result: Result<impl Debug, PluginError>, message_part: &str) {
    let err = result.expect_err("the capability is missing");
    assert_eq!(
        err.kind,
        ErrorKind::PermissionDenied,
        "{message_part}: {err}"
    );
    assert!(
        err.message().contains(message_part),
        "{message_part}: {err}"
    );
}

/// Asserts that each command of the `undeclared` fixture, which uses a capability the plugin did
/// not declare, is denied naming the capability and the plugin.
#[track_caller]
pub fn assert_undeclared_capabilities_denied(host: &Host) {
    for (command, capability) in [
        ("undeclared:emit", "emit:undeclared:thing"),
        ("undeclared:execute", "call:echo:reverse"),
        ("undeclared:message", "message:echo"),
    ] {
        let err = host.execute(command, json("null")).expect_err("denied");
        assert_eq!(err.kind, ErrorKind::PermissionDenied, "{command}: {err}");
        assert!(
            err.message().contains(capability) && err.message().contains("undeclared"),
            "{command}: {err}"
        );
    }
}

// ---- lifecycle events -----------------------------------------------------------------------

/// The host's lifecycle events (`plugin:*`), remembered as they are read: counted, searched, or
/// waited for one after the other.
pub struct Lifecycle {
    subscription: Subscription,
    seen: Vec<(String, serde_json::Value)>,
    /// Where [`Lifecycle::wait_for_next`] looks from.
    next: usize,
}

impl Lifecycle {
    /// Subscribes to `host`'s lifecycle events (room for 4096 unread ones).
    pub fn new(host: &Host) -> Self {
        Lifecycle {
            subscription: host.subscribe("plugin:*", 4096),
            seen: Vec::new(),
            next: 0,
        }
    }

    fn pull(&mut self) {
        self.seen.extend(
            self.subscription
                .receiver()
                .try_iter()
                .map(|e| (e.event_type.as_str().to_owned(), to_json(&e.data))),
        );
    }

    /// How many `kind` events about `plugin` arrived so far.
    pub fn count(&mut self, kind: &str, plugin: &str) -> usize {
        self.pull();
        self.seen
            .iter()
            .filter(|(k, data)| k == kind && data["plugin"] == plugin)
            .count()
    }

    /// Waits until at least `n` `kind` events about `plugin` arrived in all.
    #[track_caller]
    pub fn wait_for_count(&mut self, kind: &str, plugin: &str, n: usize) {
        wait_until(&format!("{n} {kind} events for {plugin}"), || {
            self.count(kind, plugin) >= n
        });
    }

    /// The data of the last `kind` event about `plugin` so far.
    ///
    /// # Panics
    /// If there is none.
    #[track_caller]
    pub fn last(&mut self, kind: &str, plugin: &str) -> serde_json::Value {
        self.pull();
        self.seen
            .iter()
            .rev()
            .find(|(k, data)| k == kind && data["plugin"] == plugin)
            .map(|(_, data)| data.clone())
            .unwrap_or_else(|| panic!("no {kind} event for {plugin}: {:?}", self.seen))
    }

    /// Waits for the next `kind` event about `plugin` after the one this method returned last
    /// (the first such event at the first call); returns its data.
    #[track_caller]
    pub fn wait_for_next(&mut self, kind: &str, plugin: &str) -> serde_json::Value {
        let mut found = None;
        wait_until(&format!("{kind} for {plugin}"), || {
            self.pull();
            found = self.seen[self.next..]
                .iter()
                .position(|(k, data)| k == kind && data["plugin"] == plugin)
                .map(|i| i + self.next);
            found.is_some()
        });
        let index = found.expect("wait_until returned, so it was found");
        self.next = index + 1;
        self.seen[index].1.clone()
    }

    /// The plugins named by every `kind` event seen so far, in order.
    pub fn plugins(&mut self, kind: &str) -> Vec<String> {
        self.pull();
        self.seen
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, data)| data["plugin"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

// ---- plugin files ---------------------------------------------------------------------------

/// Replaces `target` with `bytes` the way installers do: writes a hidden temporary file in the
/// same folder (plugin discovery skips dot files), then renames it over `target`.
///
/// # Panics
/// If a step fails.
pub fn replace_with_bytes(bytes: &[u8], target: &Path) {
    let name = target
        .file_name()
        .expect("a plugin file has a name")
        .to_string_lossy();
    let temporary = target.with_file_name(format!(".{name}.partial"));
    fs::write(&temporary, bytes).unwrap_or_else(|e| panic!("write {}: {e}", temporary.display()));
    set_mode(&temporary, 0o755);
    fs::rename(&temporary, target).unwrap_or_else(|e| {
        panic!(
            "rename {} over {}: {e}",
            temporary.display(),
            target.display()
        )
    });
}

/// [`replace_with_bytes`] with the contents of `source`: a new build put in place atomically.
///
/// # Panics
/// If a step fails.
pub fn replace_by_rename(source: &Path, target: &Path) {
    let bytes = fs::read(source).unwrap_or_else(|e| panic!("read {}: {e}", source.display()));
    replace_with_bytes(&bytes, target);
}

// ---- the slow fixture -----------------------------------------------------------------------

/// A call in progress on another thread.
pub type CallInThread = JoinHandle<Result<Payload, PluginError>>;

/// Runs `command` on another thread, waiting up to [`WAIT_LIMIT`] for its answer.
pub fn execute_in_thread(host: &Host, command: &str, args: Payload) -> CallInThread {
    let host = host.clone();
    let command = command.to_owned();
    thread::spawn(move || host.execute_with_timeout(&command, args, WAIT_LIMIT))
}

/// Starts `slow:hold` on another thread and waits until slow's thread is inside it (so the
/// request queue is empty and every later request waits in it). The call creates
/// `<control>/started`, then answers `"released"` once [`release_holding`] created
/// `<control>/release`.
pub fn start_holding(host: &Host, control: &Path) -> CallInThread {
    let args = json_payload(&serde_json::json!({ "dir": control }));
    let held = execute_in_thread(host, "slow:hold", args);
    wait_until("slow is holding", || control.join("started").exists());
    held
}

/// Lets the `slow:hold` call of [`start_holding`] with the same `control` folder answer.
///
/// # Panics
/// If the release file cannot be written.
pub fn release_holding(control: &Path) {
    fs::write(control.join("release"), b"").expect("write the release file");
}

/// [`start_holding`], then `queued` calls of `slow:sleep` (1 ms each) on other threads, waiting
/// until all of them wait in slow's request queue. Returns the held call and the queued ones.
pub fn hold_slow_with_queued_calls(
    host: &Host,
    control: &Path,
    queued: usize,
) -> (CallInThread, Vec<CallInThread>) {
    let held = start_holding(host, control);
    let calls: Vec<_> = (0..queued)
        .map(|_| execute_in_thread(host, "slow:sleep", json(r#"{"ms":1}"#)))
        .collect();
    wait_until(&format!("{queued} calls wait in slow's queue"), || {
        metrics(host, "slow").queued_requests == queued
    });
    (held, calls)
}

/// Loads the `slow` fixture (with a long shutdown grace), keeps it busy with `queued` calls
/// waiting behind that ([`hold_slow_with_queued_calls`]), and deactivates it while they wait.
/// Asserts that the call in progress completes and the deactivation succeeds. Returns the folder
/// (keep it until the end of the test), the host and the queued calls, not yet joined.
#[track_caller]
pub fn deactivate_slow_while_calls_wait(queued: usize) -> (PluginDir, Host, Vec<CallInThread>) {
    let dir = PluginDir::with_fixtures(&["slow"]);
    let host = dir.load_ok_with(|c| c.shutdown_grace_ms = 30_000);
    let control = tempfile::tempdir().expect("control folder");
    let (held, queued) = hold_slow_with_queued_calls(&host, control.path(), queued);

    let stopper = {
        let host = host.clone();
        thread::spawn(move || host.deactivate("slow"))
    };
    wait_until("slow's commands are unregistered", || {
        !host.commands().iter().any(|c| c.starts_with("slow:"))
    });
    // Deactivation sends its stop order right after unregistering; give that a moment before
    // the held call returns (ordering only: nothing below depends on how long this takes).
    thread::sleep(Duration::from_millis(50));
    release_holding(control.path());

    let held = held.join().expect("the held caller");
    assert_eq!(
        held.map(|p| to_json(&p)),
        Ok(serde_json::json!("released")),
        "the call in progress completes"
    );
    stopper
        .join()
        .expect("the deactivating thread")
        .expect("slow is known");
    (dir, host, queued)
}
