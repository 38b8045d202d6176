//! What loading runs, and when. A file is refused from its bytes, before any of its code runs,
//! when it is not a plugin, truncated or built for another processor; every symbol is bound when
//! the library is opened; the shadow folder must be the host user's alone; a layout refusal
//! names what differs; a `manifest()` that does not return fails only its own file.
//!
//! The C libraries come from `tests/c/` ([`tests::c_libs`]); their constructors leave a mark in
//! a folder of this test process when they run. Control runs open the same libraries the
//! ordinary way in a child process, to show that the marks (and the crash) are real.

use std::{fs, path::Path, time::Duration};

use loader::{Host, LoadError, LoadOptions};
use tests::{
    assert_greeter_serves, assert_names_file, error_for, library_file_name, load_beside_greeter,
    set_mode, temp_dir, PluginDir,
};
#[cfg(target_os = "linux")]
use tests::{example_lib, ROOT_SYMBOL};

/// The SHA-256 of a file, as allowlists hold it.
#[cfg(target_os = "linux")]
fn sha256_of(path: &Path) -> String {
    loader::sha256_hex(&fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())))
}

#[cfg(target_os = "linux")]
#[test]
fn a_library_that_is_not_a_plugin_never_runs_its_constructor() {
    use tests::c_libs::{c_libs, marks_in};

    let libs = c_libs();
    let control = temp_dir("marks-");
    let (status, _, stderr) = libs.open_in_child("lazy", &libs.not_a_plugin(), control.path());
    assert!(status.success(), "control open failed: {stderr}");
    assert_eq!(
        marks_in(control.path()),
        ["not-a-plugin"],
        "opened the ordinary way, the library runs its constructor"
    );

    let bytes = fs::read(libs.not_a_plugin()).expect("read the C library");
    let dir = PluginDir::with_examples(&["greeter"]);
    let bad = dir.add_file(&library_file_name("c-not-a-plugin"), &bytes);
    let assert_not_a_plugin = |error: &LoadError| {
        match error {
            LoadError::NotAPlugin { path, symbol } => {
                assert_eq!(path, &bad);
                assert_eq!(symbol, ROOT_SYMBOL);
            }
            other => panic!("expected NotAPlugin, got {other:?}"),
        }
        let text = error.to_string();
        assert!(
            text.contains("no root module") && text.contains(ROOT_SYMBOL),
            "{text}"
        );
        assert_names_file(error, &bad);
    };

    let (host, report) = dir.load();
    assert_not_a_plugin(error_for(&report, &bad));
    assert_greeter_serves(&host);

    // The doctor reads manifests in a worker process; a test binary cannot be one.
    let doctor = dir
        .host_with_worker(env!("CARGO_BIN_EXE_worker-host"), |_| {})
        .diagnose(None)
        .expect("the doctor reads the folder");
    let diagnosis = doctor
        .files
        .iter()
        .find(|f| f.file == bad)
        .expect("the doctor lists the file");
    assert!(!diagnosis.is_plugin);
    assert!(
        diagnosis
            .problems
            .iter()
            .any(|p| p.error.contains("no root module")),
        "{:?}",
        diagnosis.problems
    );

    // A host with an allowlist, even one that lists this very file: the export check comes
    // first, so the file is still never opened.
    let allowlist = vec![
        sha256_of(&dir.file(&library_file_name("greeter"))),
        sha256_of(&bad),
    ];
    let (allowing, report) = dir.load_with(|c| c.allowlist = allowlist);
    assert_not_a_plugin(error_for(&report, &bad));
    assert_greeter_serves(&allowing);

    // The reload path checks the same way.
    let reloading = dir.host();
    match reloading.apply_file(&bad) {
        Ok(loader::FileChange::Loaded(report)) => assert_not_a_plugin(error_for(&report, &bad)),
        Err(error) => assert_not_a_plugin(&error),
        Ok(other) => panic!("expected the file to be refused, got {other:?}"),
    }

    assert!(
        !libs.marks().contains(&"not-a-plugin".to_owned()),
        "the constructor of a library that is not a plugin ran in the host: {:?}",
        libs.marks()
    );
}

#[cfg(target_os = "linux")]
#[test]
fn an_undefined_symbol_is_refused_at_load_naming_it() {
    use tests::c_libs::{c_libs, marks_in, MISSING_FUNCTION};

    let libs = c_libs();
    let library = libs.lazy_undefined();
    // Control: a lazy open succeeds, and the first call kills the process.
    let control = temp_dir("marks-");
    let (status, stdout, stderr) = libs.open_in_child("lazy", &library, control.path());
    assert!(status.success() && stdout.contains("opened"), "{stderr}");
    let (status, stdout, stderr) = libs.open_in_child("lazy-call", &library, control.path());
    assert!(
        !status.success()
            && stdout.contains("opened")
            && !stdout.contains("called")
            && stderr.contains("symbol lookup error")
            && stderr.contains(MISSING_FUNCTION),
        "{status}: {stdout} / {stderr}"
    );
    assert_eq!(marks_in(control.path()), ["lazy-undefined"]);
    let (status, _, stderr) = libs.open_in_child("now", &library, control.path());
    assert!(
        !status.success() && stderr.contains(MISSING_FUNCTION),
        "{stderr}"
    );

    let bytes = fs::read(&library).expect("read the C library");
    let (_dir, host, report, bad) =
        load_beside_greeter(|d| d.add_file(&library_file_name("c-lazy-undefined"), &bytes));
    let error = error_for(&report, &bad);
    match error {
        LoadError::UnresolvedSymbol { path, symbol } => {
            assert_eq!(path, &bad);
            assert_eq!(symbol, MISSING_FUNCTION);
        }
        other => panic!("expected UnresolvedSymbol, got {other:?}"),
    }
    assert!(error.to_string().contains(MISSING_FUNCTION), "{error}");
    assert_names_file(error, &bad);
    assert_greeter_serves(&host);
    // Binding fails before initialisers run: the refused library ran nothing.
    assert!(
        !libs.marks().contains(&"lazy-undefined".to_owned()),
        "{:?}",
        libs.marks()
    );
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn a_library_for_another_processor_is_refused_from_its_bytes() {
    const EM_AARCH64: u16 = 183;
    let mut bytes = fs::read(example_lib("echo")).expect("read echo");
    bytes[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
    let (_dir, host, report, bad) =
        load_beside_greeter(|d| d.add_file(&library_file_name("echo"), &bytes));
    let error = error_for(&report, &bad);
    match error {
        LoadError::WrongArchitecture { path, found, host } => {
            assert_eq!(path, &bad);
            assert_eq!((found.as_str(), host.as_str()), ("aarch64", "x86_64"));
        }
        other => panic!("expected WrongArchitecture, got {other:?}"),
    }
    assert!(
        error
            .to_string()
            .contains("built for aarch64, this host is x86_64"),
        "{error}"
    );
    assert_names_file(error, &bad);
    assert_greeter_serves(&host);
}

/// A host for `plugins` whose data folder is `data` (so its shadow folder is `data/shadow`).
fn host_with_data(plugins: &PluginDir, data: &Path) -> Host {
    Host::builder()
        .plugins_dir(plugins.path())
        .data_dir(data)
        .in_memory_storage()
        .build()
        .expect("an in-memory host builds")
}

#[cfg(unix)]
#[test]
fn a_shadow_folder_someone_else_can_write_is_refused() {
    use std::os::unix::fs::MetadataExt;

    let plugins = PluginDir::with_examples(&["greeter"]);
    let greeter = plugins.file(&library_file_name("greeter"));
    let data = temp_dir("host-data-");
    let shadow = data.path().join("shadow");
    fs::create_dir(&shadow).expect("mkdir shadow");
    set_mode(&shadow, 0o777);
    let me = fs::metadata(data.path()).expect("stat").uid();

    let report = host_with_data(&plugins, data.path())
        .load_dir()
        .expect("list the folder");
    let error = error_for(&report, &greeter);
    match error {
        LoadError::UnsafeShadowDir {
            path, owner, mode, ..
        } => {
            assert_eq!(path, &shadow);
            assert_eq!((*owner, *mode), (Some(me), Some(0o777)));
        }
        other => panic!("expected UnsafeShadowDir, got {other:?}"),
    }
    let text = error.to_string();
    assert!(
        text.contains(&shadow.display().to_string())
            && text.contains("777")
            && text.contains(&format!("uid {me}")),
        "{text}"
    );
    assert!(report.activated().is_empty(), "{report:?}");
    assert_eq!(
        fs::read_dir(&shadow).expect("list shadow").count(),
        0,
        "nothing was copied into it"
    );

    if me != 0 {
        eprintln!("not running as root: skipping the shadow folder owned by another user");
        return;
    }
    const OTHER_UID: u32 = 4242;
    set_mode(&shadow, 0o700);
    std::os::unix::fs::chown(&shadow, Some(OTHER_UID), Some(OTHER_UID)).expect("chown");
    let report = host_with_data(&plugins, data.path())
        .load_dir()
        .expect("list the folder");
    let error = error_for(&report, &greeter);
    match error {
        LoadError::UnsafeShadowDir {
            path, owner, mode, ..
        } => {
            assert_eq!(path, &shadow);
            assert_eq!((*owner, *mode), (Some(OTHER_UID), Some(0o700)));
        }
        other => panic!("expected UnsafeShadowDir, got {other:?}"),
    }
    let text = error.to_string();
    assert!(
        text.contains(&shadow.display().to_string())
            && text.contains(&format!("owned by uid {OTHER_UID}"))
            && text.contains("700"),
        "{text}"
    );
    assert!(report.activated().is_empty(), "{report:?}");
}

#[test]
fn leftover_shadow_files_do_not_break_loading() {
    let plugins = PluginDir::with_examples(&["greeter", "echo"]);
    let data = temp_dir("host-data-");
    let shadow = data.path().join("shadow");
    fs::create_dir(&shadow).expect("mkdir shadow");
    set_mode(&shadow, 0o700);
    // What a crashed host of the old naming scheme (`<stem>-<pid>-<generation>`) leaves behind,
    // for this very pid, as Wine hands out the same pid every run; read-only, as a mapped copy
    // on Windows cannot be removed either; and a folder where a copy's name could be.
    let pid = std::process::id();
    let mut leftovers = Vec::new();
    for stem in ["libgreeter", "libecho"] {
        for generation in 0..32 {
            let name = format!("{stem}-{pid}-{generation}{}", std::env::consts::DLL_SUFFIX);
            let path = shadow.join(name);
            fs::write(&path, b"left over").expect("write a leftover");
            set_mode(&path, 0o400);
            leftovers.push(path);
        }
    }
    fs::create_dir(shadow.join(format!(
        "libgreeter-{pid}-32{}",
        std::env::consts::DLL_SUFFIX
    )))
    .expect("mkdir");

    let host = host_with_data(&plugins, data.path());
    let report = host.load_dir().expect("list the folder");
    assert!(report.is_ok(), "{report:?}");
    assert_greeter_serves(&host);
    for leftover in &leftovers {
        assert_eq!(fs::read(leftover).expect("still there"), b"left over");
    }
    if cfg!(unix) {
        // Copies are unlinked once mapped: only the leftovers remain.
        assert_eq!(
            fs::read_dir(&shadow).expect("list shadow").count(),
            leftovers.len() + 1
        );
    }
}

#[test]
fn a_layout_mismatch_names_the_type_and_fields_that_differ() {
    let (_dir, host, report, bad) = load_beside_greeter(|d| d.add_fixture("bad-layout"));
    let error = error_for(&report, &bad);
    let LoadError::AbiMismatch {
        path,
        message,
        full_report,
    } = error
    else {
        panic!("expected AbiMismatch, got {error:?}");
    };
    assert_eq!(path, &bad);
    for part in [
        "PluginMod: package: expected plugin-api",
        "found fixture-bad-layout",
        "PluginMod.panic_unwinds: expected bool (size 1), found u64 (size 8)",
        "PluginMod.manifest: expected fn() -> RResult, found fn() -> RString",
        "PluginMod.instantiate:",
        "found fn(u32) -> u32",
    ] {
        assert!(message.contains(part), "{part:?} not in:\n{message}");
    }
    assert!(message.lines().count() <= 8, "a few lines:\n{message}");
    assert!(
        full_report.lines().count() > 2 * message.lines().count(),
        "{full_report}"
    );
    assert_eq!(error.full_report(), Some(full_report.as_str()));
    assert_names_file(error, &bad);
    assert_greeter_serves(&host);
}

/// The layout of a root module can only be checked once its library is open, and opening a
/// library runs its constructors. This test documents that limit: the host refuses the
/// library, after its constructor ran; an allowlist keeps it from running at all.
#[cfg(target_os = "linux")]
#[test]
fn a_layout_refusal_comes_after_the_constructors_so_only_an_allowlist_stops_them() {
    let marker = std::env::temp_dir().join(format!(
        "trusted-loading-layout-ctor-{}",
        std::process::id()
    ));
    let _ = fs::remove_file(&marker);
    let dir = PluginDir::with_examples(&["greeter"]);
    let bad = dir.add_fixture("layout-ctor");

    let allowlist = vec![sha256_of(&dir.file(&library_file_name("greeter")))];
    let (host, report) = dir.load_with(|c| c.allowlist = allowlist);
    assert!(
        matches!(error_for(&report, &bad), LoadError::NotAllowed { path, .. } if path == &bad),
        "{report:?}"
    );
    assert_greeter_serves(&host);
    assert!(!marker.exists(), "an unlisted build ran its constructor");

    let (host, report) = dir.load();
    match error_for(&report, &bad) {
        LoadError::AbiMismatch { path, message, .. } => {
            assert_eq!(path, &bad);
            assert!(message.contains("PluginMod.panic_unwinds"), "{message}");
        }
        other => panic!("expected AbiMismatch, got {other:?}"),
    }
    assert_greeter_serves(&host);
    assert!(
        marker.exists(),
        "without an allowlist the constructor runs before the layout can be checked"
    );
    let _ = fs::remove_file(&marker);
}

#[test]
fn a_manifest_that_does_not_return_fails_only_its_file() {
    let dir = PluginDir::new();
    let slow = dir.add_fixture("slow-manifest");
    let greeter = dir.add_example("greeter");
    let shadow = temp_dir("shadow-");
    let deadline = Duration::from_millis(200);
    let options = LoadOptions::new(shadow.path()).manifest_deadline(deadline);

    let detached = loader::detached_manifest_readers();
    let error = loader::load_library_with(&slow, &options).expect_err("the manifest is late");
    match &error {
        LoadError::ManifestTimeout {
            origin,
            deadline_ms,
        } => {
            assert_eq!((origin.file(), *deadline_ms), (Some(slow.as_path()), 200));
        }
        other => panic!("expected ManifestTimeout, got {other:?}"),
    }
    let text = error.to_string();
    assert!(
        text.contains("manifest") && text.contains("did not return within 200 ms"),
        "{text}"
    );
    assert!(loader::detached_manifest_readers() > detached);

    // The next file gets another reader and loads.
    let library = loader::load_library_with(&greeter, &options).expect("greeter loads");
    assert_eq!(library.manifest.name, "greeter");
    let library = loader::load_library(&greeter, shadow.path(), None).expect("greeter loads");
    assert_eq!(library.manifest.name, "greeter");
}
