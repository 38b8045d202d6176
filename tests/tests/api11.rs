//! plugin-api 1.1 at run time, across dlopen: every handler learns its caller from the host,
//! a call whose caller stopped waiting (or whose plugin is deactivated) is cancelled and the
//! handler sees it, and timers deliver private events on the plugin's thread.
//! (`isolated_api11.rs` runs the same tests with every plugin in a worker process.)

use std::time::Duration;

use loader::{Host, PluginState, RecordKind, TimerInfo, TraceOutcome};
use plugin_api::ErrorKind;
use serde::Deserialize;
use tests::{info, json, json_payload, metrics, temp_dir, wait_until, PluginDir, WAIT_LIMIT};

#[derive(Debug, Deserialize, PartialEq)]
struct Who {
    caller: String,
    id: u64,
}

#[derive(Debug, Deserialize)]
struct Seen {
    what: String,
    caller: String,
    id: u64,
}

#[derive(Debug, Deserialize)]
struct Timers {
    ticks: u64,
    woke: u64,
    callers: Vec<String>,
}

fn who(host: &Host, command: &str) -> Who {
    host.execute_with_timeout(command, json("null"), WAIT_LIMIT)
        .unwrap_or_else(|e| panic!("{command}: {e}"))
        .decode()
        .expect("a Who")
}

fn seen(host: &Host) -> Vec<Seen> {
    host.execute("callers:seen", json("null"))
        .expect("callers:seen")
        .decode()
        .expect("records")
}

fn timers(host: &Host) -> Timers {
    host.execute("callers:timers", json("null"))
        .expect("callers:timers")
        .decode()
        .expect("timer counts")
}

fn saw(host: &Host, what: &str, caller: &str) -> bool {
    seen(host)
        .iter()
        .any(|s| s.what == what && s.caller == caller)
}

#[test]
fn every_handler_learns_from_the_host_who_called_and_the_calls_id() {
    let dir = PluginDir::with_fixtures(&["callers", "asker"]);
    let host = dir.load_ok();

    // The host application calls: the id is the call's record in the trace.
    let me = who(&host, "callers:whoami");
    assert_eq!(me.caller, "host");
    let record = host
        .trace()
        .into_iter()
        .find(|r| r.id == me.id)
        .expect("the call's id names its trace record");
    assert_eq!(
        (record.kind, &*record.name),
        (RecordKind::Command, "callers:whoami")
    );

    // Another plugin calls, through every pattern: the host stamps its name.
    for command in [
        "asker:command",
        "asker:rpc",
        "asker:request",
        "asker:provider",
    ] {
        let them = who(&host, command);
        assert_eq!(them.caller, "asker", "{command}");
        assert_ne!(them.id, me.id, "{command}: every call has an id of its own");
    }
    host.execute("asker:hook", json("null"))
        .expect("asker:hook");
    assert!(saw(&host, "hook", "asker"), "{:?}", seen(&host));
    host.execute("asker:emit", json("null"))
        .expect("asker:emit");
    wait_until("callers handled asker:ping", || {
        saw(&host, "event:asker:ping", "asker")
    });
    // Middleware learns the command's caller: the host for asker's commands, asker for the
    // commands asker executes.
    assert!(saw(&host, "middleware:asker:command", "host"));
    assert!(saw(&host, "middleware:callers:whoami", "asker"));
    assert!(saw(&host, "middleware:callers:whoami", "host"));
}

#[test]
fn events_handled_back_to_back_each_learn_their_own_source_and_id() {
    let dir = PluginDir::with_fixtures(&["callers", "asker"]);
    let host = dir.load_ok();
    // callers' thread is held in a call, so the events below wait in its queue and are then
    // handled one after another in a single run.
    let control = temp_dir("held");
    let args = json_payload(&serde_json::json!({ "dir": control.path() }));
    let held = {
        let host = host.clone();
        std::thread::spawn(move || {
            host.execute_with_timeout("callers:spin", args, Duration::from_millis(500))
        })
    };
    wait_until("callers is held in a call", || {
        control.path().join("started").exists()
    });
    let first = host.emit("asker:first", json("null")).expect("emit");
    // asker publishes asker:ping from its own thread, on a message (a command would wait for
    // callers, the middleware of every command).
    host.request("asker", json("null"), Some(WAIT_LIMIT))
        .expect("asker emits on a message");
    let last = host.emit("asker:last", json("null")).expect("emit");
    let spun = held.join().expect("the held call's thread");
    assert_eq!(
        spun.expect_err("held past its deadline").kind,
        ErrorKind::Timeout
    );

    // Waiting on the metrics sends callers no call that could come between the events.
    wait_until("callers handled the three events", || {
        metrics(&host, "callers").events_handled >= 3
    });
    let events: Vec<Seen> = seen(&host)
        .into_iter()
        .filter(|s| s.what.starts_with("event:"))
        .collect();
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|s| (s.what.as_str(), s.caller.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("event:asker:first", "host"),
            ("event:asker:ping", "asker"),
            ("event:asker:last", "host"),
        ],
        "each event's handler learns that event's source"
    );
    // An event's id, as its handler learns it, is the event's own.
    assert_eq!(events[0].id, first);
    assert!(first < events[1].id && events[1].id < last, "{events:?}");
    assert_eq!(events[2].id, last);
    // The calls after the run learn their own callers, not the last event's.
    assert_eq!(who(&host, "callers:whoami").caller, "host");
    assert_eq!(who(&host, "asker:command").caller, "asker");
}

#[test]
fn a_call_whose_caller_gave_up_is_cancelled_and_its_handler_sees_it() {
    let dir = PluginDir::with_fixtures(&["callers"]);
    let host = dir.load_ok();
    let control = temp_dir("spin");
    let args = json_payload(&serde_json::json!({ "dir": control.path() }));

    // A deadline of the caller's own, shorter than the host's: not a fault of the plugin.
    let err = host
        .execute_with_timeout("callers:spin", args, Duration::from_millis(300))
        .expect_err("the handler spins past the deadline");
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");

    wait_until("the handler saw its call cancelled", || {
        control.path().join("saw-cancel").exists()
    });
    wait_until("a thread holding the call's token saw it too", || {
        control.path().join("token-saw-cancel").exists()
    });
    // callers is also a middleware of its own commands: its `after` ran past the deadline
    // too. Every answer that came after its caller gave up was a cancelled one.
    wait_until("the handler's answer was dropped as cancelled", || {
        metrics(&host, "callers").cancelled_replies >= 1
    });
    assert!(host.wait_idle(std::time::Instant::now() + WAIT_LIMIT));
    let m = metrics(&host, "callers");
    assert_eq!(
        (m.cancelled_replies, m.late_replies),
        (m.timeouts, 0),
        "a cancelled handler's answer is not a late reply: {m:?}"
    );
    assert_eq!(info(&host, "callers").state, PluginState::Active);

    let spin = host
        .trace()
        .into_iter()
        .find(|r| r.kind == RecordKind::Command && &*r.name == "callers:spin")
        .expect("the cancelled call is in the trace");
    assert!(
        matches!(spin.outcome, TraceOutcome::Cancelled { .. }),
        "{:?}",
        spin.outcome
    );
    let shown = spin.outcome.to_string();
    assert!(
        shown.starts_with("cancelled after ") && shown.ends_with(" ms"),
        "{shown}"
    );
    assert_eq!(who(&host, "callers:whoami").caller, "host", "it goes on");
}

#[test]
fn the_calls_a_cancelled_handler_made_are_cancelled_with_it() {
    let dir = PluginDir::with_fixtures(&["callers", "asker"]);
    let host = dir.load_ok();
    let control = temp_dir("spin");
    let args = json_payload(&serde_json::json!({ "dir": control.path() }));

    // asker waits on callers:spin with a deadline of 30 s; the host gives up on asker first.
    let err = host
        .execute_with_timeout("asker:spin", args, Duration::from_millis(300))
        .expect_err("asker:spin outlives its caller's deadline");
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    wait_until("callers saw the call it serves for asker cancelled", || {
        control.path().join("saw-cancel").exists()
    });
    assert!(saw(&host, "spin", "asker"), "{:?}", seen(&host));
}

#[test]
fn deactivating_a_plugin_cancels_the_call_it_is_running() {
    let dir = PluginDir::with_fixtures(&["callers"]);
    let host = dir.load_ok();
    let control = temp_dir("spin");
    let args = json_payload(&serde_json::json!({ "dir": control.path() }));
    let spinning = tests::execute_in_thread(&host, "callers:spin", args);
    wait_until("callers is spinning", || {
        control.path().join("started").exists()
    });

    host.deactivate("callers").expect("deactivate");
    assert!(
        control.path().join("saw-cancel").exists(),
        "deactivate returned after the handler saw its cancellation"
    );
    let answer = spinning.join().expect("the caller's thread");
    let err = answer.expect_err("a cancelled spin answers an error");
    assert_eq!(err.kind, ErrorKind::Cancelled, "{err}");
    assert_eq!(info(&host, "callers").state, PluginState::Deactivated);
}

#[test]
fn timers_deliver_private_events_on_the_plugins_thread_until_dropped() {
    let dir = PluginDir::with_fixtures(&["callers", "asker"]);
    let host = dir.load_ok();
    let watcher = host.subscribe("*", 1024);

    host.execute("callers:tick-start", json(r#"{"ms": 10}"#))
        .expect("tick-start");
    wait_until("three ticks", || timers(&host).ticks >= 3);
    assert_eq!(host.timers_running(), 1);
    let tick = TimerInfo {
        event: "tick".to_owned(),
        repeats: true,
        interval_ms: 10,
    };
    assert_eq!(host.timers("callers"), [tick], "the host lists it");
    assert!(host.timers("asker").is_empty(), "as callers' only");
    let t = timers(&host);
    assert!(
        t.callers.iter().all(|c| c == "host"),
        "a timer's event comes from the host: {:?}",
        t.callers
    );
    let trace = host.trace();
    let tick = trace
        .iter()
        .find(|r| r.kind == RecordKind::Event && &*r.name == "tick")
        .expect("the tick is in the trace as an event");
    assert_eq!(&*tick.caller, "host");
    assert!(
        trace.iter().any(|r| r.kind == RecordKind::Delivery
            && &*r.name == "tick"
            && &*r.plugin == "callers"),
        "and its delivery to callers"
    );

    // Dropping the handle stops the timer.
    host.execute("callers:tick-stop", json("null"))
        .expect("tick-stop");
    wait_until("the timer is gone", || host.timers_running() == 0);
    assert!(
        host.timers("callers").is_empty(),
        "a stopped timer is not listed"
    );
    assert!(host.wait_idle(std::time::Instant::now() + WAIT_LIMIT));
    let stopped_at = timers(&host).ticks;
    // A one-shot timer of 50 ms: the ticker, had it still run, would have ticked meanwhile.
    host.execute("callers:wake", json(r#"{"ms": 50}"#))
        .expect("wake");
    let listed = host.timers("callers");
    assert!(
        timers(&host).woke == 1
            || listed
                == [TimerInfo {
                    event: "wake".to_owned(),
                    repeats: false,
                    interval_ms: 50,
                }],
        "a one-shot timer is listed until it fires: {listed:?}"
    );
    wait_until("the wake-up", || timers(&host).woke == 1);
    assert!(host.wait_idle(std::time::Instant::now() + WAIT_LIMIT));
    assert_eq!(timers(&host).ticks, stopped_at, "no tick after the drop");
    wait_until("the one-shot timer ended", || host.timers_running() == 0);
    assert!(
        host.timers("callers").is_empty(),
        "a fired one-shot timer is not listed"
    );

    // Private: nobody else, not even a `*` subscriber, saw a timer's event.
    let leaked: Vec<String> = watcher
        .receiver()
        .try_iter()
        .map(|e| e.event_type.to_string())
        .filter(|t| t == "tick" || t == "wake")
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
}

#[test]
fn a_deactivated_plugins_timers_stop() {
    let dir = PluginDir::with_fixtures(&["callers"]);
    let host = dir.load_ok();
    host.execute("callers:tick-start", json(r#"{"ms": 10}"#))
        .expect("tick-start");
    wait_until("a tick", || timers(&host).ticks >= 1);
    assert_eq!(host.timers("callers").len(), 1);
    host.deactivate("callers").expect("deactivate");
    assert!(
        host.timers("callers").is_empty(),
        "a deactivated instance's timers are not listed, even before they are dropped"
    );
    wait_until("the deactivated plugin's timer is dropped", || {
        host.timers_running() == 0
    });
}

#[test]
fn a_plugin_that_hoards_timers_is_refused_past_its_limit() {
    #[derive(Deserialize)]
    struct Hoarded {
        started: usize,
        refused: Option<String>,
    }
    let dir = PluginDir::with_fixtures(&["callers"]);
    let host = dir.load_ok_with(|c| c.max_timers_per_plugin = 5);
    let hoarded: Hoarded = host
        .execute("callers:hoard", json(r#"{"n": 8}"#))
        .expect("callers:hoard")
        .decode()
        .expect("a count");
    assert_eq!(hoarded.started, 5);
    let refused = hoarded.refused.expect("the sixth timer is refused");
    for part in ["callers", "max_timers_per_plugin", "hoard-5"] {
        assert!(refused.contains(part), "{part} in: {refused}");
    }
    assert_eq!(host.timers("callers").len(), 5);
    assert_eq!(host.timers_running(), 5);
    // The host goes on serving it, and the limit counts only timers that run.
    assert_eq!(who(&host, "callers:whoami").caller, "host");
    host.deactivate("callers").expect("deactivate");
    host.reenable("callers").expect("activate again");
    let again: Hoarded = host
        .execute("callers:hoard", json(r#"{"n": 5}"#))
        .expect("callers:hoard")
        .decode()
        .expect("a count");
    assert_eq!(
        (again.started, again.refused),
        (5, None),
        "a new instance is not charged with its predecessor's timers"
    );
}

#[test]
fn the_plugin_learns_the_hosts_api_version() {
    let dir = PluginDir::with_fixtures(&["callers"]);
    let host = dir.load_ok();
    let api: String = host
        .execute("callers:api", json("null"))
        .expect("callers:api")
        .decode()
        .expect("a version");
    assert_eq!(api, plugin_api::API_VERSION);
}
