//! Commands, request-reply and RPC through real plugins: not-found, deadlines and late replies,
//! call cycles, cancellation at deactivation, queue bounds, host commands, capabilities.

use std::time::Duration;

use loader::Host;
use plugin_api::{ErrorKind, Payload, PluginError};
use tests::{
    assert_undeclared_capabilities_denied, deactivate_slow_while_calls_wait,
    hold_slow_with_queued_calls, json, metrics, release_holding, to_json, wait_until, PluginDir,
    WAIT_LIMIT,
};

/// Runs `command` (waiting up to [`WAIT_LIMIT`]) and asserts that it fails fast with a cycle
/// error naming `cycle`.
fn assert_cycle(host: &Host, command: &str, cycle: &str) {
    let err = host
        .execute_with_timeout(command, json("null"), WAIT_LIMIT)
        .expect_err(cycle);
    assert_eq!(err.kind, ErrorKind::Cycle, "{err}");
    assert!(err.message().contains(cycle), "{err}");
}

#[test]
fn unknown_command_is_not_found_at_once_and_says_so() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let host = dir.load_ok();
    for command in [
        "nope:nothing",
        "greeter:nothing",
        "host:nothing",
        "no-colon",
    ] {
        let err = host
            .execute(command, json("null"))
            .expect_err("no such command");
        assert_eq!(err.kind, ErrorKind::NotFound, "{command}: {err}");
        assert_eq!(err.message(), format!("command not found: {command}"));
    }
    assert_eq!(metrics(&host, "greeter").timeouts, 0);
}

#[test]
fn a_command_past_its_deadline_times_out_and_its_late_reply_is_dropped() {
    let dir = PluginDir::with_fixtures(&["slow"]);
    let host = dir.load_ok();

    let err = host
        .execute_with_timeout(
            "slow:sleep",
            json(r#"{"ms":500}"#),
            Duration::from_millis(100),
        )
        .expect_err("the deadline passes first");
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert!(err.message().contains("slow:sleep"), "{err}");
    assert_eq!(metrics(&host, "slow").timeouts, 1);

    // The caller's deadline cancelled the call: its answer is dropped, counted as cancelled
    // (not as a late reply).
    wait_until("the cancelled reply was counted", || {
        metrics(&host, "slow").cancelled_replies == 1
    });
    let reply = host
        .execute("slow:sleep", json(r#"{"ms":0}"#))
        .expect("the plugin and the host go on");
    assert_eq!(to_json(&reply), serde_json::json!({"ms": 0}));
    let m = metrics(&host, "slow");
    assert_eq!((m.cancelled_replies, m.late_replies), (1, 0), "{m:?}");
}

#[test]
fn a_call_cycle_between_two_plugins_fails_fast_naming_the_cycle() {
    let dir = PluginDir::with_fixtures(&["pinger", "ponger"]);
    let host = dir.load_ok();
    // A deadlock would end in a timeout, not a cycle error.
    assert_cycle(&host, "pinger:start", "pinger -> ponger -> pinger");
    // Both plugins are still free.
    assert_cycle(&host, "ponger:bounce", "ponger -> pinger -> ponger");
}

#[test]
fn a_plugin_calling_itself_fails_fast_naming_the_cycle() {
    let dir = PluginDir::with_fixtures(&["pinger", "ponger"]);
    let host = dir.load_ok();
    assert_cycle(&host, "pinger:self", "pinger -> pinger");
}

/// One round of: slow busy, three calls queued, slow deactivated. Returns the queued calls'
/// results.
fn deactivate_with_calls_queued() -> Vec<Result<Payload, PluginError>> {
    const QUEUED: usize = 3;
    let (_dir, host, queued) = deactivate_slow_while_calls_wait(QUEUED);
    let err = host
        .execute("slow:sleep", json(r#"{"ms":1}"#))
        .expect_err("slow is gone");
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(err.message(), "command not found: slow:sleep");
    queued
        .into_iter()
        .map(|t| t.join().expect("a queued caller"))
        .collect()
}

#[test]
fn calls_queued_when_a_plugin_is_deactivated_resolve_as_cancelled() {
    // The plugin thread picks its next message at random among its ready queues, so one round
    // can pass by luck: a few rounds make a wrong pick (running queued work after the stop order
    // arrived) show up reliably.
    for round in 0..5 {
        for result in deactivate_with_calls_queued() {
            let err = result.expect_err(&format!(
                "round {round}: a call still queued at deactivation must not run"
            ));
            assert_eq!(err.kind, ErrorKind::Cancelled, "round {round}: {err}");
            assert!(err.message().contains("slow"), "{err}");
        }
    }
}

#[test]
fn a_full_request_queue_refuses_new_calls_at_once() {
    let dir = PluginDir::with_fixtures(&["slow"]);
    let host = dir.load_ok_with(|c| c.request_queue = 2);
    let control = tempfile::tempdir().expect("control folder");
    let (held, queued) = hold_slow_with_queued_calls(&host, control.path(), 2);

    let err = host
        .execute_with_timeout("slow:sleep", json(r#"{"ms":1}"#), WAIT_LIMIT)
        .expect_err("no room");
    assert_eq!(err.kind, ErrorKind::QueueFull, "{err}");
    assert!(err.message().contains("slow"), "{err}");
    assert_eq!(metrics(&host, "slow").queue_full, 1);

    release_holding(control.path());
    held.join()
        .expect("the held caller")
        .expect("the held call completes");
    for t in queued {
        t.join()
            .expect("a queued caller")
            .expect("queued calls run once there is room");
    }
    host.execute("slow:sleep", json(r#"{"ms":1}"#))
        .expect("calls are accepted again");
}

#[test]
fn a_plugin_can_call_a_host_registered_command() {
    let dir = PluginDir::with_fixtures(&["host-caller"]);
    let host = dir.load_ok();
    host.register_command("time", |request| {
        Payload::json(&serde_json::json!({
            "now": 1_700_000_000_u64,
            "caller": request.caller.as_str(),
            "command": request.command.as_str(),
        }))
    });
    assert!(host.commands().iter().any(|c| c == "host:time"));

    let reply = host
        .execute("host-caller:go", json("null"))
        .expect("host-caller answers with host:time's answer");
    assert_eq!(
        to_json(&reply),
        serde_json::json!({"now": 1_700_000_000_u64, "caller": "host-caller", "command": "host:time"})
    );
}

#[test]
fn request_reply_and_rpc_with_echo() {
    let dir = PluginDir::with_examples(&["echo"]);
    let host = dir.load_ok();

    let message = json(r#"{"hello":["world",1,2.5,null]}"#);
    let reply = host
        .request("echo", message.clone(), None)
        .expect("echo replies");
    assert_eq!(reply, message);

    let reversed = host
        .call("echo", "reverse", json(r#""abc""#), None)
        .expect("reverse");
    assert_eq!(to_json(&reversed), "cba");
    let upper: String = host
        .call(
            "echo",
            "upper",
            Payload::encode("abc").expect("bincode"),
            None,
        )
        .expect("upper")
        .decode()
        .expect("a string");
    assert_eq!(upper, "ABC");

    let err = host
        .call("echo", "shout", json(r#""abc""#), None)
        .expect_err("no such method");
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(err.message().contains("shout"), "{err}");

    let err = host
        .request("nobody", json("1"), None)
        .expect_err("no such plugin");
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(err.message().contains("nobody"), "{err}");
}

#[test]
fn capabilities_a_plugin_did_not_declare_are_denied_by_name() {
    let dir = PluginDir::with_fixtures(&["undeclared"]);
    dir.add_example("echo");
    let host = dir.load_ok();
    let events = host.subscribe("undeclared:*", 16);
    assert_undeclared_capabilities_denied(&host);
    assert!(events.receiver().try_recv().is_err(), "nothing was emitted");
    assert_eq!(
        metrics(&host, "echo").calls_served,
        0,
        "echo was never reached"
    );
}
