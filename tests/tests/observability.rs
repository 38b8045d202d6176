//! The flight recorder, metrics, the doctor report, and static plugins.

use std::time::Duration;

use loader::{Host, PluginState, RecordKind};
use plugin_api::{ErrorKind, Payload};
use tests::{json, to_json, wait_until, PluginDir};

#[test]
fn trace_links_a_command_to_the_event_it_emits_and_its_deliveries() {
    let dir = PluginDir::with_examples(&["greeter", "audit-log"]);
    let host = dir.load_ok();
    host.clear_trace();
    host.execute("greeter:greet", json(r#"{"name":"Ada"}"#))
        .unwrap();
    // audit-log handles greeter:greeted asynchronously: wait for its delivery record.
    wait_until("audit-log handled greeter:greeted", || {
        host.trace().iter().any(|r| {
            r.kind == RecordKind::Delivery
                && &*r.name == "greeter:greeted"
                && &*r.plugin == "audit-log"
        })
    });
    let records = host.trace();
    let command = records
        .iter()
        .find(|r| r.kind == RecordKind::Command && &*r.name == "greeter:greet")
        .expect("the command is recorded");
    assert_eq!(&*command.caller, "host");
    assert_eq!(&*command.plugin, "greeter");
    assert_eq!(command.outcome, loader::TraceOutcome::Ok);
    assert!(command.started_us >= command.queued_us && command.finished_us >= command.started_us);
    let event = records
        .iter()
        .find(|r| r.kind == RecordKind::Event && &*r.name == "greeter:greeted")
        .expect("the event is recorded");
    assert_eq!(
        event.parent, command.id,
        "the event is a child of the command that emitted it"
    );
    assert_eq!(&*event.caller, "greeter");
    let delivery = records
        .iter()
        .find(|r| {
            r.kind == RecordKind::Delivery
                && &*r.name == "greeter:greeted"
                && &*r.plugin == "audit-log"
        })
        .expect("the delivery is recorded");
    assert_eq!(
        delivery.parent, event.id,
        "the delivery is a child of the event"
    );
    let tree = loader::render_tree(&records);
    let command_line = tree
        .lines()
        .position(|l| l.contains("greeter:greet ("))
        .expect("command in tree");
    let event_line = tree
        .lines()
        .position(|l| l.contains("Event greeter:greeted"))
        .expect("event in tree");
    assert!(event_line > command_line, "{tree}");
    assert!(
        tree.lines()
            .nth(event_line)
            .is_some_and(|l| l.starts_with("  ")),
        "the event is indented under the command:\n{tree}"
    );
}

#[test]
fn the_recorder_keeps_only_the_most_recent_records_and_can_be_switched_off() {
    let dir = PluginDir::with_examples(&["echo"]);
    let (host, _) = dir.load_with(|c| c.recorder_capacity = 16);
    for i in 0..100 {
        host.call(
            "echo",
            "reverse",
            Payload::encode(&format!("{i}")).unwrap(),
            None,
        )
        .unwrap();
    }
    let records = host.trace();
    assert_eq!(records.len(), 16, "the ring is bounded");
    assert!(records.iter().all(|r| r.kind == RecordKind::Rpc));
    let newest = records.last().unwrap().id;
    host.set_recording(false);
    host.call("echo", "reverse", Payload::encode("x").unwrap(), None)
        .unwrap();
    assert_eq!(
        host.trace().last().unwrap().id,
        newest,
        "nothing recorded while off"
    );
}

#[test]
fn metrics_count_what_a_scripted_run_did() {
    let dir = PluginDir::with_examples(&["greeter", "audit-log", "echo"]);
    let (host, _) = dir.load();
    for name in ["Ada", "Grace", "Alan"] {
        host.execute("greeter:greet", json(&format!(r#"{{"name":"{name}"}}"#)))
            .unwrap();
    }
    let err = host
        .execute("greeter:greet", json(r#"{"name":""}"#))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    host.call("echo", "reverse", Payload::encode("abc").unwrap(), None)
        .unwrap();
    wait_until("audit-log saw the three greetings", || {
        tests::metrics(&host, "audit-log").events_handled >= 3 + 3
    });
    let greeter = tests::metrics(&host, "greeter");
    // Four greet calls, each also wrapped by audit-log's middleware (which runs on audit-log).
    assert_eq!(greeter.calls_served, 4);
    assert_eq!(greeter.errors, 1);
    assert_eq!(greeter.panics, 0);
    assert_eq!(greeter.timeouts, 0);
    assert!(greeter.latency_p50_us > 0 && greeter.latency_p99_us >= greeter.latency_p50_us);
    let audit = tests::metrics(&host, "audit-log");
    // before + after for each of the 5 commands and calls... RPC is not a command: 4 commands.
    assert_eq!(audit.calls_served, 8);
    assert_eq!(audit.events_dropped, 0);
    assert_eq!(tests::metrics(&host, "echo").calls_served, 1);
}

#[test]
fn doctor_reports_each_file_with_a_fix_and_the_activation_order_without_activating() {
    let dir = PluginDir::with_examples(&["greeter", "welcome"]);
    dir.add_example("notes"); // needs validator, which is missing
    dir.add_file(&loader::library_file_name("junk"), b"not a library");
    // The doctor reads manifests in a worker process; a test binary cannot be one.
    let host = dir.host_with_worker(env!("CARGO_BIN_EXE_worker-host"), |_| {});
    let report = host.diagnose(None).unwrap();
    assert!(!report.is_healthy());
    assert_eq!(
        report.activation_order,
        vec!["greeter".to_owned(), "welcome".to_owned()]
    );
    let by_file = |name: &str| {
        report
            .files
            .iter()
            .find(|f| f.file.file_name().is_some_and(|n| n == name))
            .unwrap_or_else(|| panic!("{name} in the report"))
    };
    let greeter = by_file(&loader::library_file_name("greeter"));
    assert!(greeter.is_plugin && greeter.problems.is_empty());
    assert_eq!(greeter.version.as_deref(), Some("0.1.0"));
    assert_eq!(
        greeter.api_version.as_deref(),
        Some(plugin_api::API_VERSION)
    );
    assert!(greeter
        .declared
        .contains(&"emit:greeter:greeted".to_owned()));
    assert_eq!(greeter.declared, greeter.granted);
    // Without an allowlist the doctor still shows the checksum one would need.
    let greeter_bytes = std::fs::read(&greeter.file).expect("read greeter");
    assert_eq!(
        greeter.sha256.as_deref(),
        Some(loader::sha256_hex(&greeter_bytes).as_str())
    );
    let notes = by_file(&loader::library_file_name("notes"));
    assert!(
        notes.problems[0].error.contains("validator"),
        "{:?}",
        notes.problems
    );
    assert!(
        notes.problems[0].fix.contains("add plugin validator"),
        "{:?}",
        notes.problems
    );
    let junk = by_file(&loader::library_file_name("junk"));
    assert!(!junk.is_plugin);
    assert!(!junk.problems[0].fix.is_empty());
    // Nothing was activated.
    assert!(host
        .plugins()
        .iter()
        .all(|p| p.state != PluginState::Active));
    assert!(host.commands().is_empty());
}

#[test]
fn a_static_plugin_behaves_like_the_same_plugin_loaded_from_its_library() {
    fn exercise(host: &Host) -> Vec<String> {
        let mut seen = Vec::new();
        let reply = host
            .request(
                "echo",
                Payload::encode("ping").unwrap(),
                Some(Duration::from_secs(5)),
            )
            .unwrap();
        seen.push(reply.decode::<String>().unwrap());
        for method in ["reverse", "upper"] {
            let out = host
                .call("echo", method, Payload::encode("Abc").unwrap(), None)
                .unwrap();
            seen.push(out.decode::<String>().unwrap());
        }
        let json_reply = host.execute("echo:reverse", json(r#""xyz""#)).unwrap();
        seen.push(to_json(&json_reply).to_string());
        let err = host
            .call("echo", "nope", Payload::empty(), None)
            .unwrap_err();
        seen.push(format!("{:?}: {}", err.kind, err.message()));
        let info = host.plugin("echo").unwrap();
        seen.push(format!(
            "{} {} {}",
            info.name,
            info.version.unwrap_or_default(),
            info.state
        ));
        seen
    }
    let dir = PluginDir::with_examples(&["echo"]);
    let (dynamic, _) = dir.load();
    let from_library = exercise(&dynamic);

    let builtin = Host::builder().in_memory_storage().build().unwrap();
    let name = builtin
        .register_static(plugin_api::static_plugin!(echo::Echo))
        .unwrap();
    assert_eq!(name, "echo");
    let compiled_in = exercise(&builtin);
    assert_eq!(from_library, compiled_in);
    // A compiled-in plugin has no file, and is not given a made-up one.
    assert_eq!(builtin.plugin("echo").unwrap().file, None);
}
