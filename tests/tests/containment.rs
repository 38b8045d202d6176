//! Containment: what a hostile plugin cannot do to the host, each shown with a plugin that
//! really does it (the `stubborn`, `borrower` and `hang-manifest` fixtures).
//!
//! 1. A context dies with its instance: after deactivation, removal, reload or restart, every
//!    call through the old context fails at once, from a thread the plugin started and from a
//!    plugin the context was handed to.
//! 2. Every entry into plugin code has a deadline: `manifest()`, `deactivate` (also during a
//!    reload's swap and at shutdown), `save_state`.
//! 3. Call cycles are refused from `activate` too, on first load and during a reload.
//! 4. The reply size limit applies to every kind of answer.
//! 5. A panic in a plugin's `Drop` is caught and named.
//! 6. Nothing a plugin sends grows the host's tables without bound.

use std::{
    fs,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use loader::{FileChange, Host, LoadError, Namespace, PluginInfo, PluginState};
use plugin_api::{ErrorKind, Payload};
use tests::{
    assert_greeter_serves, fixture, info, json, replace_by_rename, temp_dir, to_json, wait_until,
    PluginDir,
};

/// Host settings that keep the deadlines of these tests short.
const QUICK: &str = r#"
call_timeout_ms = 3000
activation_timeout_ms = 1500
shutdown_grace_ms = 300
"#;

fn config(extra: &str) -> String {
    format!("{QUICK}\n{extra}")
}

fn error_text(info: &PluginInfo) -> String {
    info.error.clone().unwrap_or_default()
}

fn stored_ticks(host: &Host) -> Option<u64> {
    host.store()
        .get(&Namespace::Plugin("stubborn".into()), "ticks")
        .expect("the store answers")
        .map(|p| p.decode::<u64>().expect("a counter"))
}

/// A folder with `stubborn` (and greeter), loaded under `extra` config.
fn stubborn(extra: &str) -> (PluginDir, Host, PathBuf) {
    let dir = PluginDir::new();
    dir.add_example("greeter");
    let file = dir.add_fixture("stubborn");
    let (host, report) = dir.load_with_config(&config(extra));
    assert!(report.is_ok(), "{report:?}");
    (dir, host, file)
}

/// Waits until the lingering thread of version `version` reports a retired context, then
/// checks that its ticks stopped reaching the host.
fn assert_lingerer_retired(host: &Host, report: &Path, version: &str) {
    let report = PathBuf::from(format!("{}-{version}", report.display()));
    wait_until("the lingering thread's calls are refused", || {
        fs::read_to_string(&report).is_ok_and(|t| t.contains("retired"))
    });
    let text = fs::read_to_string(&report).expect("report");
    assert!(text.contains("plugin stubborn"), "{text}");
    // Nothing it writes goes through any more.
    let before = stored_ticks(host);
    thread::sleep(Duration::from_millis(60));
    assert_eq!(
        stored_ticks(host),
        before,
        "the retired context still writes"
    );
}

#[test]
fn a_thread_the_plugin_started_cannot_use_its_context_after_deactivation() {
    let data = temp_dir("linger");
    let report = data.path().join("report");
    let (_dir, host, _) = stubborn(&format!(
        "[plugins.stubborn.config]\nlinger = \"*\"\nhang_deactivate = \"*\"\nreport = {:?}\n",
        report.display().to_string()
    ));
    let ticks = host.subscribe("stubborn:tick", 1024);
    wait_until("the thread ticks", || stored_ticks(&host).is_some());
    host.deactivate("stubborn").expect("known");
    assert_lingerer_retired(&host, &report, "0.1.0");
    // No tick is published after the retirement.
    while ticks.receiver().try_recv().is_ok() {}
    thread::sleep(Duration::from_millis(60));
    assert!(
        ticks.receiver().try_recv().is_err(),
        "a retired context emitted"
    );
    assert_greeter_serves(&host);
}

#[test]
fn a_removed_plugins_thread_cannot_use_its_context() {
    let data = temp_dir("linger");
    let report = data.path().join("report");
    let (_dir, host, file) = stubborn(&format!(
        "[plugins.stubborn.config]\nlinger = \"*\"\nhang_deactivate = \"*\"\nreport = {:?}\n",
        report.display().to_string()
    ));
    wait_until("the thread ticks", || stored_ticks(&host).is_some());
    fs::remove_file(&file).expect("remove");
    assert!(matches!(
        host.apply_file(&file),
        Ok(FileChange::Removed { .. })
    ));
    assert_lingerer_retired(&host, &report, "0.1.0");
}

#[test]
fn after_a_reload_the_old_instances_context_is_retired_and_the_new_one_serves() {
    let data = temp_dir("linger");
    let report = data.path().join("report");
    let (_dir, host, file) = stubborn(&format!(
        "[plugins.stubborn.config]\nlinger = \"0.1.0\"\nhang_deactivate = \"0.1.0\"\nreport = {:?}\n",
        report.display().to_string()
    ));
    wait_until("the thread ticks", || stored_ticks(&host).is_some());
    replace_by_rename(&fixture("stubborn-v2"), &file);
    let change = host.apply_file(&file).expect("the reload completes");
    assert!(
        matches!(change, FileChange::Reloaded { ref new_version, .. } if new_version == "0.2.0"),
        "{change:?}"
    );
    assert_lingerer_retired(&host, &report, "0.1.0");
    let version = host
        .execute("stubborn:version", Payload::empty())
        .expect("v2 serves");
    assert_eq!(version.decode::<String>().expect("text"), "0.2.0");
}

#[test]
fn after_a_restart_the_faulted_instances_context_is_retired() {
    let data = temp_dir("linger");
    let report = data.path().join("report");
    let (_dir, host, _) = stubborn(&format!(
        "[plugins.stubborn.config]\nlinger = \"*\"\nhang_deactivate = \"*\"\nreport = {:?}\n",
        report.display().to_string()
    ));
    let mut lifecycle = tests::Lifecycle::new(&host);
    wait_until("the thread ticks", || stored_ticks(&host).is_some());
    host.execute("stubborn:panic", Payload::empty())
        .expect_err("the handler panics");
    lifecycle.wait_for_count("plugin:restarted", "stubborn", 1);
    // Both instances linger (the config says so); the report is the first one's, and it
    // says its context was retired, while the fresh instance serves.
    wait_until("the faulted instance's calls are refused", || {
        fs::read_to_string(format!("{}-0.1.0", report.display()))
            .is_ok_and(|t| t.contains("retired"))
    });
    let pong = host
        .execute("stubborn:ping", Payload::empty())
        .expect("the new one serves");
    assert_eq!(pong.decode::<String>().expect("text"), "pong");
}

#[test]
fn a_context_handed_to_another_plugin_dies_with_its_instance() {
    let dir = PluginDir::new();
    dir.add_fixture("stubborn");
    dir.add_fixture("borrower");
    let (host, report) = dir.load_with_config(&config(
        "[plugins.stubborn.config]\nhang_deactivate = \"*\"\n",
    ));
    assert!(report.is_ok(), "{report:?}");
    let addr: usize = host
        .execute("stubborn:lend", Payload::empty())
        .expect("lend")
        .decode()
        .expect("an address");
    host.execute(
        "borrower:keep",
        tests::json_payload(&serde_json::json!({ "addr": addr })),
    )
    .expect("kept");
    // While its instance lives, the borrowed context works (as stubborn).
    host.execute("borrower:use", Payload::empty())
        .expect("works while alive");
    host.deactivate("stubborn").expect("known");
    let e = host
        .execute("borrower:use", Payload::empty())
        .expect_err("the borrowed context is retired");
    assert_eq!(e.kind, ErrorKind::Cancelled, "{e}");
    assert!(
        e.message().contains("plugin stubborn") && e.message().contains("retired"),
        "{e}"
    );
}

#[test]
fn a_manifest_that_never_returns_fails_only_its_file() {
    let dir = PluginDir::new();
    dir.add_example("greeter");
    let hang = dir.add_fixture("hang-manifest");
    let (host, report) = dir.load_with_config(QUICK);
    let error = report
        .error_for(&file_name(&hang))
        .expect("the hanging file fails");
    let text = error.to_string();
    assert!(
        matches!(error, LoadError::ManifestTimeout { .. }),
        "{error:?}"
    );
    assert!(
        text.contains("manifest") && text.contains("did not return within"),
        "{text}"
    );
    assert_greeter_serves(&host);
    // Listing and diagnosing finish too (the doctor reads manifests in a worker process).
    assert!(host
        .plugins()
        .iter()
        .any(|p| p.file.as_ref() == Some(&hang)));
    let doctor = dir
        .host_with_worker(env!("CARGO_BIN_EXE_worker-host"), |c| {
            c.activation_timeout_ms = 1500;
        })
        .diagnose(None)
        .expect("doctor finishes");
    assert!(doctor.files.iter().any(|f| f.file == hang
        && f.problems
            .iter()
            .any(|p| p.error.contains("did not return"))));
    assert!(host.detached_threads() >= 1);
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("a file")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_reload_completes_although_the_old_deactivate_never_returns() {
    let (_dir, host, file) = stubborn("[plugins.stubborn.config]\nhang_deactivate = \"0.1.0\"\n");
    for _ in 0..3 {
        host.execute("stubborn:count", Payload::empty())
            .expect("count");
    }
    let detached = host.detached_threads();
    replace_by_rename(&fixture("stubborn-v2"), &file);
    // A call made during the reload waits in the queue and is answered by the new build.
    let during = {
        let host = host.clone();
        thread::spawn(move || host.execute("stubborn:version", Payload::empty()))
    };
    let change = host.apply_file(&file).expect("the reload completes");
    assert!(matches!(change, FileChange::Reloaded { .. }), "{change:?}");
    during
        .join()
        .expect("thread")
        .expect("the call made during the reload succeeds");
    // The state handed over is kept: the counter goes on from 3.
    let next: u64 = host
        .execute("stubborn:count", Payload::empty())
        .expect("count")
        .decode()
        .expect("a number");
    assert_eq!(next, 4);
    assert!(
        host.detached_threads() > detached,
        "the stuck thread is counted"
    );
}

#[test]
fn deactivation_and_shutdown_return_although_deactivate_never_does() {
    let (_dir, host, _) = stubborn("[plugins.stubborn.config]\nhang_deactivate = \"*\"\n");
    let detached = host.detached_threads();
    host.deactivate("stubborn").expect("returns at the grace");
    assert_eq!(info(&host, "stubborn").state, PluginState::Deactivated);
    assert!(host.detached_threads() > detached);
    assert!(error_text(&info(&host, "stubborn")).contains("deactivate"));
    host.reenable("stubborn").expect("a fresh instance");
    let started = Instant::now();
    drop(host);
    // Shutdown got past the second stuck deactivate (only a wait bound, not a timing claim).
    assert!(started.elapsed() < tests::WAIT_LIMIT);
}

#[test]
fn a_reload_whose_save_state_never_returns_is_refused_and_others_go_on() {
    let (_dir, host, file) = stubborn("[plugins.stubborn.config]\nhang_save_state = \"0.1.0\"\n");
    replace_by_rename(&fixture("stubborn-v2"), &file);
    let error = host.apply_file(&file).expect_err("refused");
    let text = error.to_string();
    assert!(
        text.contains("save_state") && text.contains("did not finish within"),
        "{text}"
    );
    assert_greeter_serves(&host);
}

#[test]
fn an_activate_that_calls_its_own_command_gets_a_cycle_error() {
    let dir = PluginDir::new();
    let file = dir.add_fixture("stubborn");
    let (_host, report) =
        dir.load_with_config(&config("[plugins.stubborn.config]\ncall_self_in = \"*\"\n"));
    let error = report.error_for(&file_name(&file)).expect("refused");
    match error {
        LoadError::Activation { error, .. } => {
            assert_eq!(error.kind, ErrorKind::Cycle, "{error}");
            assert!(error.message().contains("call cycle"), "{error}");
            assert!(!error.message().contains("timed out"), "{error}");
        }
        other => panic!("expected an activation error, got {other:?}"),
    }
}

#[test]
fn a_reload_whose_activate_calls_itself_is_refused_with_a_cycle_and_the_old_version_stays() {
    let (_dir, host, file) = stubborn("[plugins.stubborn.config]\ncall_self_in = \"0.2.0\"\n");
    replace_by_rename(&fixture("stubborn-v2"), &file);
    let error = host.apply_file(&file).expect_err("refused");
    assert!(error.to_string().contains("call cycle"), "{error}");
    let version = host
        .execute("stubborn:version", Payload::empty())
        .expect("v1 serves");
    assert_eq!(version.decode::<String>().expect("text"), "0.1.0");
}

#[test]
fn every_kind_of_answer_is_held_to_the_reply_size_limit() {
    let (_dir, host, _) = stubborn("max_payload_bytes = 4096\n");
    let limit = "exceeds the limit of 4096 bytes";
    let check = |what: &str, result: Result<Payload, plugin_api::PluginError>| {
        let e = result.expect_err(what);
        assert!(e.message().contains(limit), "{what}: {e}");
    };
    check("command", host.execute("stubborn:big", Payload::empty()));
    check("rpc", host.call("stubborn", "big", Payload::empty(), None));
    check("request", host.request("stubborn", Payload::empty(), None));
    check("hook", host.run_hook("big", Payload::empty()));
    check(
        "provider",
        host.provider_call("big", "get", Payload::empty()),
    );
    let collected = host
        .emit_and_collect("big:one", Payload::empty(), None)
        .expect("published");
    let (_, answer) = collected
        .into_iter()
        .find(|(p, _)| p == "stubborn")
        .expect("stubborn answered");
    check("collect", answer);
    // The plugin itself keeps serving small answers.
    let pong = host
        .execute("stubborn:ping", Payload::empty())
        .expect("pong");
    assert_eq!(pong.decode::<String>().expect("text"), "pong");
}

#[test]
fn a_panic_in_drop_is_caught_and_names_the_plugin() {
    let (_dir, host, file) = stubborn("[plugins.stubborn.config]\npanic_on_drop = true\n");
    host.deactivate("stubborn").expect("known");
    let text = error_text(&info(&host, "stubborn"));
    assert!(
        text.contains("stubborn") && text.contains("panicked while being dropped"),
        "{text}"
    );
    assert_greeter_serves(&host);
    // On reload too: the old instance's panic is reported, the new one serves.
    host.reenable("stubborn").expect("back");
    replace_by_rename(&fixture("stubborn-v2"), &file);
    assert!(matches!(
        host.apply_file(&file),
        Ok(FileChange::Reloaded { .. })
    ));
    let text = error_text(&info(&host, "stubborn"));
    assert!(
        text.contains("stubborn") && text.contains("panicked while being dropped"),
        "{text}"
    );
    assert_greeter_serves(&host);
}

#[test]
fn ever_new_event_types_and_subscriptions_do_not_grow_the_host() {
    let (_dir, host, _) = stubborn(
        "route_cache_capacity = 64\nmax_subscriptions_per_plugin = 32\ndead_letter_capacity = 16\nrecorder_capacity = 128\n",
    );
    let spam = host.subscribe("spam:*", 4096);
    let answer = host
        .execute("stubborn:spam", json(r#"{"n": 1000}"#))
        .expect("spam");
    let answer = to_json(&answer);
    let refused = answer["subscribe_error"]
        .as_str()
        .expect("subscriptions were refused");
    assert!(
        refused.contains("stubborn") && refused.contains("limit"),
        "{refused}"
    );
    let sizes = host.table_sizes();
    assert!(sizes.cached_event_routes <= 64, "{sizes:?}");
    // greeter's and stubborn's declared subscriptions, the host's, and 32 at run time at most.
    assert!(sizes.subscriptions <= 32 + 8, "{sizes:?}");
    assert!(sizes.dead_letters <= 16, "{sizes:?}");
    // The recorder keeps up to `recorder_capacity` per ring, in at most 8 rings.
    assert!(sizes.trace_records <= 128 * 8, "{sizes:?}");
    // Events still reach a subscriber.
    wait_until("the host subscription got events", || {
        spam.receiver().len() >= 1000
    });
}

#[test]
fn refused_emits_of_ever_new_types_leave_the_route_cache_alone() {
    let dir = PluginDir::with_fixtures(&["flood"]);
    // flood declares `emit:*`; the host takes it back.
    let (host, report) = dir.load_with_config("[plugins.flood]\nrevoke = [\"emit:*\"]\n");
    assert_eq!(report.activated().len(), 1, "{report:?}");
    let before = host.table_sizes().cached_event_routes;
    for i in 0..50 {
        let args = json(&format!(r#"{{"type": "denied:{i}", "count": 1}}"#));
        let err = host
            .execute("flood:burst", args)
            .expect_err("flood may not emit");
        assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
        assert!(
            err.message().contains("flood") && err.message().contains(&format!("denied:{i}")),
            "{err}"
        );
    }
    assert_eq!(
        host.table_sizes().cached_event_routes,
        before,
        "a refused emit resolves no route"
    );
}

#[test]
fn a_layout_mismatch_says_what_differs_in_a_few_lines() {
    let dir = PluginDir::new();
    let bad = dir.add_fixture("bad-layout");
    let (_host, report) = dir.load();
    let error = report.error_for(&file_name(&bad)).expect("refused");
    let LoadError::AbiMismatch {
        message,
        full_report: report,
        ..
    } = error
    else {
        panic!("expected a layout mismatch, got {error:?}");
    };
    assert!(error.to_string().lines().count() <= 10, "{error}");
    // The fixture's `PluginMod` comes from another package: the first difference abi_stable
    // finds, named with the type and field it is in.
    assert!(
        message.contains("PluginMod") && message.contains("package"),
        "{message}"
    );
    assert!(message.contains("fixture-bad-layout"), "{message}");
    assert!(
        message.contains("expected") && message.contains("found"),
        "{message}"
    );
    // The full report stays available.
    assert!(report.lines().count() > 10);
}
