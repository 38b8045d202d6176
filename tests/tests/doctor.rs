//! The doctor runs none of a plugin author's code in the host: what the bytes tell is read in
//! this process, and each plugin is opened and its manifest read in a worker process (this
//! crate's `worker-host` binary), killed at the deadline. Hostile manifests (panicking,
//! hanging, aborting, segfaulting, exiting) become findings for their file while this process,
//! the host, goes on.
//!
//! No test in this file opens a library in this process, so process-wide counters (images
//! mapped, manifest readers detached) must stay at zero here.

use std::path::Path;

use loader::{DoctorReport, FileDiagnosis};
use tests::PluginDir;

/// The program the doctor starts as its manifest reader.
const WORKER: &str = env!("CARGO_BIN_EXE_worker-host");

/// Diagnoses `dir` with the worker-host as manifest reader and a manifest deadline of
/// `deadline_ms`.
fn diagnose(dir: &PluginDir, deadline_ms: u64) -> DoctorReport {
    let host = dir.host_with_worker(WORKER, |c| c.activation_timeout_ms = deadline_ms);
    let report = host.diagnose(None).expect("the folder can be listed");
    assert_eq!(
        host.mapped_images().0,
        0,
        "the doctor mapped a library in the host process"
    );
    assert_eq!(
        loader::detached_manifest_readers(),
        0,
        "a manifest reader thread of the host process was left behind"
    );
    report
}

/// The report's entry for `file`.
#[track_caller]
fn entry<'r>(report: &'r DoctorReport, file: &Path) -> &'r FileDiagnosis {
    report
        .files
        .iter()
        .find(|f| f.file == file)
        .unwrap_or_else(|| panic!("no entry for {} in {report:#?}", file.display()))
}

/// The one problem of `file`, which names the file; its text and its detail.
#[track_caller]
fn only_problem(report: &DoctorReport, file: &Path) -> (String, Option<String>) {
    let entry = entry(report, file);
    assert_eq!(entry.problems.len(), 1, "{entry:#?}");
    let problem = &entry.problems[0];
    assert!(
        problem.error.contains(&file.display().to_string()),
        "the finding names the file: {problem:?}"
    );
    assert!(!problem.fix.is_empty(), "{problem:?}");
    (problem.error.clone(), problem.detail.clone())
}

/// `greeter` in the same folder is still read and healthy.
#[track_caller]
fn assert_greeter_fine(report: &DoctorReport, dir: &PluginDir) {
    let greeter = entry(report, &dir.file(&loader::library_file_name("greeter")));
    assert_eq!(greeter.name.as_deref(), Some("greeter"), "{greeter:#?}");
    assert!(greeter.problems.is_empty(), "{greeter:#?}");
    assert_eq!(report.activation_order, ["greeter"]);
}

#[test]
fn a_healthy_folder_is_read_through_the_worker() {
    let dir = PluginDir::with_examples(&["greeter", "welcome", "users"]);
    let report = diagnose(&dir, 10_000);
    assert!(report.is_healthy(), "{report:#?}");
    assert_eq!(report.manifest_reader, None);
    assert_eq!(report.activation_order.len(), 3, "{report:#?}");
    let welcome = entry(&report, &dir.file(&loader::library_file_name("welcome")));
    assert_eq!(welcome.name.as_deref(), Some("welcome"));
    assert_eq!(welcome.dependencies, ["greeter ^0.1"]);
    assert!(welcome.sha256.as_ref().is_some_and(|s| s.len() == 64));
    // What the bytes say, read in this process.
    let image = welcome.image.as_ref().expect("image facts");
    assert!(image.exports_root, "{image:?}");
    assert_eq!(image.architecture, std::env::consts::ARCH);
    assert!(image.abi_stable.is_some(), "{image:?}");
    let position = |name: &str| report.activation_order.iter().position(|n| n == name);
    assert!(position("greeter") < position("welcome"), "{report:#?}");
}

#[test]
fn a_manifest_that_panics_is_a_finding() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let file = dir.add_fixture("panic-manifest");
    let report = diagnose(&dir, 10_000);
    let (error, _) = only_problem(&report, &file);
    assert!(
        error.contains("panic-manifest refuses to describe itself"),
        "{error}"
    );
    assert!(entry(&report, &file).is_plugin);
    assert!(!report.is_healthy());
    assert_greeter_fine(&report, &dir);
}

#[test]
fn a_manifest_that_hangs_is_killed_at_the_deadline() {
    // Short, so the test is quick; no plugin that should answer shares it (on a busy machine
    // one might not within a second), only a file examined after it from its bytes alone.
    let dir = PluginDir::new();
    let file = dir.add_fixture("hang-manifest");
    let junk = dir.add_file(&loader::library_file_name("junk"), b"not a library\n");
    let report = diagnose(&dir, 1_000);
    let (error, _) = only_problem(&report, &file);
    assert!(
        error.ends_with("manifest() did not return within 1 s; the reader was killed"),
        "{error}"
    );
    assert!(entry(&report, &file).is_plugin);
    let (error, _) = only_problem(&report, &junk);
    assert!(error.contains("is not a loadable library"), "{error}");
}

#[test]
fn a_manifest_that_aborts_is_a_finding_with_its_last_words() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let file = dir.add_fixture("abort-manifest");
    let report = diagnose(&dir, 10_000);
    let (error, detail) = only_problem(&report, &file);
    #[cfg(unix)]
    assert!(
        error.ends_with("the manifest reader ended with signal 6 (SIGABRT)"),
        "{error}"
    );
    #[cfg(not(unix))]
    assert!(error.contains("the manifest reader ended with"), "{error}");
    // What the worker wrote on stderr comes along.
    assert!(
        detail
            .as_deref()
            .is_some_and(|d| d.contains("abort-manifest: aborting the process")),
        "{detail:?}"
    );
    assert_greeter_fine(&report, &dir);
}

#[cfg(unix)]
#[test]
fn a_manifest_that_segfaults_is_a_finding() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let file = dir.add_fixture("segv-manifest");
    let report = diagnose(&dir, 10_000);
    let (error, _) = only_problem(&report, &file);
    assert!(
        error.ends_with("the manifest reader ended with signal 11 (SIGSEGV)"),
        "{error}"
    );
    assert_greeter_fine(&report, &dir);
}

#[test]
fn a_manifest_that_exits_is_a_finding() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let file = dir.add_fixture("exit-manifest");
    let report = diagnose(&dir, 10_000);
    let (error, _) = only_problem(&report, &file);
    assert!(
        error.ends_with("the manifest reader exited with status 3"),
        "{error}"
    );
    assert_greeter_fine(&report, &dir);
}

/// The layout check needs the library open, so it happens in the worker: the library's
/// constructor runs there, never here.
#[test]
fn a_layout_mismatch_is_found_in_the_worker_and_its_constructor_never_runs_here() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let file = dir.add_fixture("layout-ctor");
    let ours = std::env::temp_dir().join(format!(
        "trusted-loading-layout-ctor-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&ours);
    let report = diagnose(&dir, 10_000);
    let (error, detail) = only_problem(&report, &file);
    assert!(error.contains("incompatible ABI layout"), "{error}");
    assert!(detail.is_some(), "abi_stable's full report comes along");
    assert!(
        !ours.exists(),
        "the library's constructor ran in the host process ({})",
        ours.display()
    );
    assert_greeter_fine(&report, &dir);
}

/// Files that fail a check of their bytes are never opened, by this process or a worker: their
/// constructors leave no mark anywhere (the C libraries' mark folder is baked into them). One has
/// no root symbol; the other exports one whose bytes are no abi_stable header, which the doctor
/// reads from the file.
#[cfg(unix)]
#[test]
fn libraries_refused_by_their_bytes_run_nothing_anywhere() {
    let libs = tests::c_libs::c_libs();
    let dir = PluginDir::with_examples(&["greeter"]);
    let not_a_plugin = dir.add_file(
        &loader::library_file_name("c-not-a-plugin"),
        &std::fs::read(libs.not_a_plugin()).expect("the C library"),
    );
    let fake_root = dir.add_file(
        &loader::library_file_name("c-lazy-undefined"),
        &std::fs::read(libs.lazy_undefined()).expect("the C library"),
    );
    let report = diagnose(&dir, 10_000);
    let (error, _) = only_problem(&report, &not_a_plugin);
    assert!(error.contains("is not a plugin"), "{error}");
    let facts = entry(&report, &not_a_plugin)
        .image
        .as_ref()
        .expect("its bytes are still described");
    assert!(!facts.exports_root, "{facts:?}");
    let (error, _) = only_problem(&report, &fake_root);
    assert!(
        error.contains("its abi_stable header is not one this host knows"),
        "{error}"
    );
    let facts = entry(&report, &fake_root).image.as_ref().expect("facts");
    assert_eq!(facts.abi_stable.as_deref(), Some("unknown header"));
    assert_eq!(libs.marks(), Vec::<String>::new(), "a constructor ran");
    assert_greeter_fine(&report, &dir);
}

/// A test binary does not call `run_if_worker`: named as the worker (the default, this
/// executable), it does not speak the protocol, and the report says so once.
#[test]
fn a_worker_program_that_does_not_speak_the_protocol_is_reported_once() {
    let dir = PluginDir::with_examples(&["greeter", "users"]);
    let host = dir.host();
    let report = host.diagnose(None).expect("the folder can be listed");
    let reason = report
        .manifest_reader
        .as_deref()
        .expect("the report says why no manifest was read");
    let this = std::env::current_exe().expect("this test binary");
    assert!(
        reason.contains(&this.display().to_string())
            && reason.contains("does not speak the loader's worker protocol"),
        "{reason}"
    );
    assert!(!report.is_healthy());
    for file in &report.files {
        // Said once for the report, not once per file; the bytes are still described.
        assert!(file.problems.is_empty(), "{file:#?}");
        assert!(file.name.is_none() && file.is_plugin, "{file:#?}");
        assert!(file.image.as_ref().is_some_and(|i| i.exports_root));
    }
    assert!(report.activation_order.is_empty());
}

#[test]
fn a_missing_worker_program_is_reported_once() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let missing = dir.path().join("no-such-worker");
    let host = dir.host_with_worker(&missing, |_| {});
    let report = host.diagnose(None).expect("the folder can be listed");
    let reason = report.manifest_reader.expect("no manifest was read");
    assert!(
        reason.starts_with(&format!(
            "cannot start the manifest reader {}",
            missing.display()
        )),
        "{reason}"
    );
}
