//! Process isolation: example plugins, the same unchanged libraries, run in child processes of
//! their own, and everything they do (commands, events, middleware, storage, context calls)
//! works as in process.

use serde_json::json as value;
use tests::{isolate, json, to_json, wait_until, PluginDir};

#[test]
fn isolated_examples_serve_commands_events_middleware_and_storage_from_their_own_processes() {
    let dir = PluginDir::with_examples(&["greeter", "audit-log", "counter"]);
    let host = dir.load_ok_with(|c| isolate(c, &["greeter", "audit-log", "counter"]));
    let pids = host.worker_processes();
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert!(!pids.contains(&std::process::id()));

    let reply = host
        .execute("greeter:greet", json(r#"{"name":"Ada"}"#))
        .expect("greet");
    assert_eq!(to_json(&reply)["message"], "Hello, Ada!");
    // greeter's emit went through the host, which stamped the source; audit-log, in another
    // process, got the event.
    wait_until("audit-log saw greeter:greeted", || {
        let recent = host
            .execute("audit-log:recent", json(r#"{"limit":50}"#))
            .expect("recent");
        to_json(&recent)["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["type"] == "greeter:greeted" && e["source"] == "greeter")
    });
    // audit-log's middleware saw the command.
    let commands = host
        .execute("audit-log:commands", json(r#"{"limit":50}"#))
        .expect("commands");
    assert!(
        to_json(&commands)["commands"]
            .as_array()
            .expect("commands")
            .iter()
            .any(|c| c["command"] == "greeter:greet" && c["ok"] == true),
        "{}",
        to_json(&commands)
    );
    // counter's storage lives in the host.
    for expected in 1..=2u64 {
        let count = host
            .execute("counter:increment", json(r#"{"by":1}"#))
            .expect("increment");
        assert_eq!(
            to_json(&count),
            value!({"value": expected, "session": expected})
        );
    }
    let stored: Option<u64> = host
        .store()
        .get(&loader::Namespace::Plugin("counter".into()), "total")
        .expect("read")
        .map(|p| p.decode().expect("a number"));
    assert_eq!(stored, Some(2));
}

#[test]
fn isolated_hooks_providers_and_vetoes_answer_as_in_process() {
    let dir = PluginDir::with_examples(&["greeter", "users", "notes", "validator"]);
    let host = dir.load_ok_with(|c| isolate(c, &["*"]));
    assert_eq!(host.worker_processes().len(), 4);
    // greeter (a child) asks the host for the users provider (another child).
    let reply = host
        .execute("greeter:greet-user", json(r#"{"id":1}"#))
        .expect("greet-user");
    assert!(
        to_json(&reply)["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Hello, ")),
        "{}",
        to_json(&reply)
    );
    // notes runs validator's hook through the host: the same veto, word for word.
    let err = host
        .execute("notes:save", json(r#"{"title":"  ","body":"b"}"#))
        .expect_err("a blank title is vetoed");
    assert_eq!(
        err.message(),
        "hook before:save vetoed by validator: title must not be empty"
    );
    let saved = host
        .execute("notes:save", json(r#"{"title":" x ","body":"b"}"#))
        .expect("saved");
    assert_eq!(to_json(&saved), value!({"id": 1, "title": "x"}));
}

/// Whether process `pid` exists (a zombie counts: it was not reaped).
#[cfg(target_os = "linux")]
fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(target_os = "linux")]
#[test]
fn shutdown_deactivates_and_reaps_every_child() {
    let dir = PluginDir::with_examples(&["greeter", "counter"]);
    let host = dir.load_ok_with(|c| isolate(c, &["*"]));
    let pids = host.worker_processes();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|&pid| process_exists(pid)));
    host.shutdown();
    for pid in pids {
        assert!(
            !process_exists(pid),
            "worker {pid} is still there after shutdown"
        );
    }
    assert!(host.worker_processes().is_empty());
    assert_eq!(host.killed_processes(), 0);
}

/// A hot reload of an isolated plugin starts a new process for the new build, hands the state
/// over through both processes' pipes, and stops and reaps the old process: unlike an
/// in-process reload, nothing of the old image is left.
#[cfg(target_os = "linux")]
#[test]
fn an_isolated_reload_moves_the_state_to_a_new_process_and_reaps_the_old_one() {
    let dir = PluginDir::with_examples(&["counter"]);
    let host = dir.load_ok_with(|c| isolate(c, &["counter"]));
    let increment = |host: &loader::Host| {
        to_json(
            &host
                .execute("counter:increment", json(r#"{"by":1}"#))
                .expect("increment"),
        )
    };
    for expected in 1..=3u64 {
        assert_eq!(increment(&host)["session"], expected);
    }
    let old = tests::info(&host, "counter")
        .process_id
        .expect("counter has a process");
    let file = dir.path().join(tests::library_file_name("counter"));
    tests::replace_by_rename(&tests::fixture("counter-v2"), &file);
    host.apply_file(&file).expect("reloaded");
    let reloaded = tests::info(&host, "counter");
    assert_eq!(reloaded.version.as_deref(), Some("0.2.0"));
    assert_eq!(reloaded.state, loader::PluginState::Active);
    let new = reloaded.process_id.expect("the new build has a process");
    assert_ne!(new, old);
    assert!(process_exists(new));
    assert!(
        !process_exists(old),
        "the old worker {old} is still there after the reload"
    );
    assert_eq!(host.worker_processes(), vec![new]);
    // The session count (in-memory state) came over from the old process.
    assert_eq!(increment(&host), value!({"value": 4, "session": 4}));
    assert_eq!(host.killed_processes(), 0);
}

#[test]
fn the_builder_isolates_named_plugins_and_the_host_reports_where_each_runs() {
    let dir = PluginDir::with_examples(&["greeter", "echo"]);
    let host = loader::Host::builder()
        .plugins_dir(dir.path())
        .in_memory_storage()
        .worker_program(tests::worker_program())
        .isolate("greeter")
        .build()
        .expect("host");
    let report = host.load_dir().expect("load");
    assert!(report.is_ok(), "{report:?}");
    let greeter = tests::info(&host, "greeter");
    assert_eq!(greeter.isolation, loader::Isolation::Process);
    let pid = greeter.process_id.expect("greeter has a process");
    assert_eq!(host.worker_processes(), vec![pid]);
    let echo = tests::info(&host, "echo");
    assert_eq!(echo.isolation, loader::Isolation::InProcess);
    assert_eq!(echo.process_id, None);
    // And host-wide, from the config file.
    let dir = PluginDir::with_examples(&["greeter", "echo"]);
    let (host, report) = dir.load_with_config(&format!(
        "isolation = \"process\"\nworker_program = {:?}\n[plugins.echo]\nisolation = \"in-process\"\n",
        tests::worker_program()
    ));
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(
        tests::info(&host, "greeter").isolation,
        loader::Isolation::Process
    );
    assert_eq!(
        tests::info(&host, "echo").isolation,
        loader::Isolation::InProcess
    );
    assert_eq!(host.worker_processes().len(), 1);
}
