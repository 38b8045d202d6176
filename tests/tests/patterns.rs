//! Integration patterns through real plugins: hooks (waterfall order, changes, vetoes, failing
//! and panicking handlers), middleware (order, short-circuit, answer changes, failures, the
//! audit-log example) and providers (calls, priorities, refusal of equal priorities, removal).

use loader::{Host, LoadError, PluginState};
use plugin_api::{ErrorKind, Payload, PluginError};
use serde_json::json as value;
use tests::{info, json, json_payload, metrics, to_json, wait_until, PluginDir};

/// The `trail` list of a JSON answer.
fn trail(payload: &Payload) -> Vec<String> {
    serde_json::from_value(to_json(payload)["trail"].clone()).expect("a trail of strings")
}

/// A host with the three `trail` hook handlers: `hook-b` (-10), `hook-c` (20), `hook-a` (30).
fn hook_host(dir: &PluginDir) -> Host {
    for name in ["hook-a", "hook-b", "hook-c"] {
        dir.add_fixture(name);
    }
    dir.load_ok()
}

fn hook_runs(host: &Host, plugin: &str) -> u64 {
    let runs = host
        .execute(&format!("{plugin}:runs"), json("null"))
        .unwrap_or_else(|e| panic!("{plugin}:runs: {e}"));
    to_json(&runs).as_u64().expect("a count")
}

/// Whether `plugin` serves again (after a restart, for instance).
fn is_active(host: &Host, plugin: &str) -> bool {
    info(host, plugin).state == PluginState::Active
}

// ---- hooks --------------------------------------------------------------------------------

#[test]
fn hook_handlers_run_by_priority_each_getting_the_previous_ones_data() {
    let dir = PluginDir::new();
    let host = hook_host(&dir);
    let out = host
        .run_hook("trail", json(r#"{"trail":["host"]}"#))
        .expect("no handler objects");
    assert_eq!(trail(&out), ["host", "hook-b", "hook-c", "hook-a"]);
}

#[test]
fn the_validator_hook_trims_the_title_notes_saves() {
    let dir = PluginDir::with_examples(&["notes", "validator"]);
    let host = dir.load_ok();
    let saved = host
        .execute("notes:save", json(r#"{"title":"  x ","body":" b "}"#))
        .expect("a titled note is saved");
    assert_eq!(to_json(&saved), value!({"id": 1, "title": "x"}));
    let list = host.execute("notes:list", json("null")).expect("list");
    assert_eq!(
        to_json(&list),
        value!({"notes": [{"id": 1, "title": "x", "body": " b "}]})
    );
}

#[test]
fn an_empty_title_is_vetoed_naming_the_validator_and_nothing_is_saved() {
    let dir = PluginDir::with_examples(&["notes", "validator"]);
    let host = dir.load_ok();
    for title in ["", "   "] {
        let err = host
            .execute(
                "notes:save",
                json_payload(&value!({"title": title, "body": "b"})),
            )
            .expect_err("a blank title is vetoed");
        assert_eq!(err.kind, ErrorKind::Vetoed, "{err}");
        assert_eq!(
            err.message(),
            "hook before:save vetoed by validator: title must not be empty"
        );
    }
    let list = host.execute("notes:list", json("null")).expect("list");
    assert_eq!(to_json(&list), value!({"notes": []}));
}

#[test]
fn a_veto_stops_the_run_naming_the_plugin() {
    let dir = PluginDir::new();
    let host = hook_host(&dir);
    let err = host
        .run_hook("trail", json(r#"{"trail":[],"veto_in":"hook-c"}"#))
        .expect_err("hook-c vetoes");
    assert_eq!(err.kind, ErrorKind::Vetoed, "{err}");
    assert_eq!(
        err.message(),
        "hook trail vetoed by hook-c: vetoed on purpose"
    );
    // hook-b ran before the veto; hook-a, after it in priority, never did.
    assert_eq!(hook_runs(&host, "hook-b"), 1);
    assert_eq!(hook_runs(&host, "hook-c"), 1);
    assert_eq!(hook_runs(&host, "hook-a"), 0);
}

#[test]
fn a_failing_hook_handler_fails_the_run_naming_the_plugin() {
    let dir = PluginDir::new();
    let host = hook_host(&dir);
    let err = host
        .run_hook("trail", json(r#"{"trail":[],"fail_in":"hook-c"}"#))
        .expect_err("hook-c fails");
    assert_eq!(err.kind, ErrorKind::Failed, "{err}");
    assert!(
        err.message().contains("hook trail failed in plugin hook-c"),
        "{err}"
    );
    assert!(err.message().contains("failing on purpose"), "{err}");
    assert_eq!(hook_runs(&host, "hook-a"), 0);
    // The failure was the handler's answer, not a fault: the run works again at once.
    let out = host
        .run_hook("trail", json(r#"{"trail":[]}"#))
        .expect("no handler objects");
    assert_eq!(trail(&out), ["hook-b", "hook-c", "hook-a"]);
}

#[test]
fn a_panicking_hook_handler_fails_the_run_naming_the_plugin_and_the_host_goes_on() {
    let dir = PluginDir::new();
    let host = hook_host(&dir);
    let err = host
        .run_hook("trail", json(r#"{"trail":[],"panic_in":"hook-c"}"#))
        .expect_err("hook-c panics");
    assert_eq!(err.kind, ErrorKind::Panicked, "{err}");
    assert!(
        err.message().contains("hook trail failed in plugin hook-c"),
        "{err}"
    );
    wait_until("the panic is counted", || {
        metrics(&host, "hook-c").panics == 1
    });
    assert_eq!(hook_runs(&host, "hook-a"), 0);

    wait_until("hook-c serves again", || is_active(&host, "hook-c"));
    let out = host
        .run_hook("trail", json(r#"{"trail":[]}"#))
        .expect("every handler serves again");
    assert_eq!(trail(&out), ["hook-b", "hook-c", "hook-a"]);
}

// ---- middleware ---------------------------------------------------------------------------

/// Runs `<plugin>:echo` with `args` (a trail) and returns the answer's trail.
fn echo(host: &Host, plugin: &str, args: &serde_json::Value) -> Result<Vec<String>, PluginError> {
    host.execute(&format!("{plugin}:echo"), json_payload(args))
        .map(|answer| trail(&answer))
}

fn echoes(host: &Host, plugin: &str) -> u64 {
    let count = host
        .execute(&format!("{plugin}:echoes"), json("null"))
        .unwrap_or_else(|e| panic!("{plugin}:echoes: {e}"));
    to_json(&count).as_u64().expect("a count")
}

/// A host with middleware `mw-b` (priority -5) outside `mw-a` (priority 10).
fn middleware_host(dir: &PluginDir) -> Host {
    dir.add_fixture("mw-a");
    dir.add_fixture("mw-b");
    dir.load_ok()
}

#[test]
fn middleware_wraps_commands_by_priority_changing_request_and_answer() {
    let dir = PluginDir::new();
    let host = middleware_host(&dir);
    // The command echoes the request as the `before`s left it; the `after`s then change the
    // answer, innermost first.
    let seen = echo(&host, "mw-a", &value!({"trail": ["host"]})).expect("echo");
    assert_eq!(
        seen,
        [
            "host",
            "before mw-b",
            "before mw-a",
            "after mw-a",
            "after mw-b"
        ]
    );
    assert_eq!(echoes(&host, "mw-a"), 1);
}

#[test]
fn middleware_of_equal_priority_runs_in_registration_order() {
    let dir = PluginDir::new();
    let a = dir.add_fixture("mw-a");
    let c = dir.add_fixture("mw-c");
    for (first, second, outer, inner) in [(&c, &a, "mw-c", "mw-a"), (&a, &c, "mw-a", "mw-c")] {
        let host = dir.host();
        for file in [first, second] {
            let report = host.load_files(std::slice::from_ref(file));
            assert!(report.is_ok(), "{report:?}");
        }
        let seen = echo(&host, "mw-a", &value!({"trail": []})).expect("echo");
        assert_eq!(
            seen,
            [
                format!("before {outer}"),
                format!("before {inner}"),
                format!("after {inner}"),
                format!("after {outer}"),
            ]
        );
    }
}

#[test]
fn a_middleware_can_answer_for_a_command_which_then_never_runs() {
    let dir = PluginDir::new();
    let host = middleware_host(&dir);
    let seen =
        echo(&host, "mw-a", &value!({"trail": [], "respond_in": "mw-a"})).expect("mw-a answers");
    // The outer middleware still sees the answer on its way back.
    assert_eq!(seen, ["before mw-b", "answered by mw-a", "after mw-b"]);
    assert_eq!(echoes(&host, "mw-a"), 0);
}

#[test]
fn a_middleware_failing_before_the_command_fails_it_naming_the_middleware() {
    let dir = PluginDir::new();
    let host = middleware_host(&dir);
    let err = echo(
        &host,
        "mw-a",
        &value!({"trail": [], "fail_before_in": "mw-a"}),
    )
    .expect_err("mw-a refuses the request");
    assert_eq!(err.kind, ErrorKind::Failed, "{err}");
    assert!(
        err.message()
            .contains("middleware mw-a failed before mw-a:echo"),
        "{err}"
    );
    assert!(
        err.message().contains("refusing the request on purpose"),
        "{err}"
    );
    assert_eq!(echoes(&host, "mw-a"), 0);
}

#[test]
fn a_middleware_failing_after_the_command_fails_it_naming_the_middleware() {
    let dir = PluginDir::new();
    let host = middleware_host(&dir);
    let err = echo(
        &host,
        "mw-a",
        &value!({"trail": [], "fail_after_in": "mw-a"}),
    )
    .expect_err("mw-a refuses the answer");
    assert_eq!(err.kind, ErrorKind::Failed, "{err}");
    assert!(
        err.message().contains("refusing the answer on purpose"),
        "{err}"
    );
    assert!(err.message().contains("middleware mw-a"), "{err}");
    assert_eq!(echoes(&host, "mw-a"), 1);
}

#[test]
fn a_middleware_panicking_after_the_command_fails_it_naming_the_middleware_and_is_restarted() {
    let dir = PluginDir::new();
    let host = middleware_host(&dir);
    let err = echo(
        &host,
        "mw-a",
        &value!({"trail": [], "panic_after_in": "mw-a"}),
    )
    .expect_err("mw-a panics after the command");
    assert_eq!(err.kind, ErrorKind::Panicked, "{err}");
    assert!(err.message().contains("middleware mw-a"), "{err}");
    // A panic is a fault wherever it happens: counted, and the plugin gets a fresh instance.
    wait_until("the panic is counted", || {
        metrics(&host, "mw-a").panics == 1
    });
    wait_until("mw-a serves again", || is_active(&host, "mw-a"));
    let seen = echo(&host, "mw-a", &value!({"trail": []})).expect("echo");
    assert_eq!(
        seen,
        ["before mw-b", "before mw-a", "after mw-a", "after mw-b"]
    );
}

#[test]
fn audit_log_records_each_command_with_its_caller_and_duration() {
    let dir = PluginDir::new();
    for name in ["audit-log", "greeter", "welcome"] {
        dir.add_example(name);
    }
    let host = dir.load_ok();
    host.execute("welcome:welcome", json(r#"{"name":"Ada"}"#))
        .expect("welcome");
    host.execute("greeter:greet", json(r#"{"name":" "}"#))
        .expect_err("a blank name is refused");

    let answer = host
        .execute("audit-log:commands", json(r#"{"limit":10}"#))
        .expect("the audit trail");
    let commands = to_json(&answer)["commands"]
        .as_array()
        .expect("a list of commands")
        .clone();
    let seen: Vec<(&str, &str, bool)> = commands
        .iter()
        .map(|c| {
            (
                c["command"].as_str().expect("command"),
                c["caller"].as_str().expect("caller"),
                c["ok"].as_bool().expect("ok"),
            )
        })
        .collect();
    // Newest first; welcome's own call to greeter is recorded with welcome as the caller.
    assert_eq!(
        seen,
        [
            ("greeter:greet", "host", false),
            ("welcome:welcome", "host", true),
            ("greeter:greet", "welcome", true),
        ]
    );
    for command in &commands {
        assert!(command["duration_us"].is_u64(), "{command}");
    }
    assert!(
        commands[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("name must be a non-empty string")),
        "{}",
        commands[0]
    );
}

// ---- providers ----------------------------------------------------------------------------

fn greet_user(host: &Host, id: u64) -> Result<String, PluginError> {
    host.execute("greeter:greet-user", json_payload(&value!({ "id": id })))
        .map(|answer| {
            to_json(&answer)["message"]
                .as_str()
                .expect("a message")
                .to_owned()
        })
}

#[test]
fn greet_user_greets_through_the_users_provider() {
    let dir = PluginDir::with_examples(&["greeter", "users"]);
    let host = dir.load_ok();
    assert_eq!(
        greet_user(&host, 1).expect("user 1"),
        "Hello, Ada Lovelace!"
    );
    let user = host
        .provider_call("users", "get", json(r#"{"id":2}"#))
        .expect("the host calls providers too");
    assert_eq!(to_json(&user), value!({"id": 2, "name": "Grace Hopper"}));
    let err = greet_user(&host, 7).expect_err("no user 7");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
}

#[test]
fn calling_an_unknown_provider_is_not_found() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let host = dir.load_ok();
    let err = host
        .provider_call("nobody", "get", json("null"))
        .expect_err("nobody provides it");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert_eq!(err.message(), "provider not found: nobody");
    // Without the users plugin, greeter's provider call finds nobody either.
    let err = greet_user(&host, 1).expect_err("no users provider");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("provider not found: users"), "{err}");
}

#[test]
fn a_second_provider_at_equal_priority_is_refused_at_activation_naming_both() {
    let dir = PluginDir::new();
    let users = dir.add_example("users");
    let twin = dir.add_fixture("users-twin");
    let greeter = dir.add_example("greeter");
    let host = dir.host();
    let report = host.load_files(&[users, greeter]);
    assert!(report.is_ok(), "{report:?}");

    let report = host.load_files(&[twin]);
    let err = report
        .error_for_plugin("users-twin")
        .expect("the twin is refused");
    assert!(
        matches!(err, LoadError::ProviderConflict { provider, other, .. } if provider == "users" && other == "users"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("plugin users-twin"), "{message}");
    assert!(
        message.contains("provides users at priority 0, which users already provides"),
        "{message}"
    );
    assert_ne!(info(&host, "users-twin").state, PluginState::Active);
    // The first provider still serves.
    assert_eq!(
        greet_user(&host, 1).expect("user 1"),
        "Hello, Ada Lovelace!"
    );
}

#[test]
fn of_two_providers_at_equal_priority_loaded_together_one_is_refused_naming_both() {
    let dir = PluginDir::new();
    dir.add_example("users");
    dir.add_fixture("users-twin");
    let (host, report) = dir.load();
    let refused: Vec<(&str, &str)> = [("users", "users-twin"), ("users-twin", "users")]
        .into_iter()
        .filter(|(plugin, _)| report.error_for_plugin(plugin).is_some())
        .collect();
    let [(plugin, other)] = refused[..] else {
        panic!("exactly one of the two is refused: {report:?}");
    };
    let message = report
        .error_for_plugin(plugin)
        .expect("refused")
        .to_string();
    assert!(message.contains(&format!("plugin {plugin} ")), "{message}");
    assert!(
        message.contains(&format!(
            "provides users at priority 0, which {other} already provides"
        )),
        "{message}"
    );
    assert!(host
        .provider_call("users", "get", json(r#"{"id":1}"#))
        .is_ok());
}

#[test]
fn the_higher_priority_provider_serves_and_the_lower_one_takes_over_when_it_goes() {
    let dir = PluginDir::new();
    dir.add_example("greeter");
    dir.add_example("users");
    dir.add_fixture("users-high");
    let host = dir.load_ok();
    assert_eq!(
        greet_user(&host, 1).expect("user 1"),
        "Hello, User 1 of users-high!"
    );
    host.deactivate("users-high")
        .expect("deactivate users-high");
    assert_eq!(
        greet_user(&host, 1).expect("user 1"),
        "Hello, Ada Lovelace!"
    );
}

#[test]
fn a_provider_disappears_with_its_plugin() {
    let dir = PluginDir::with_examples(&["greeter", "users"]);
    let host = dir.load_ok();
    assert_eq!(
        greet_user(&host, 1).expect("user 1"),
        "Hello, Ada Lovelace!"
    );

    host.deactivate("users").expect("deactivate users");
    let err = greet_user(&host, 1).expect_err("the provider went with its plugin");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("provider not found: users"), "{err}");
    let err = host
        .provider_call("users", "get", json(r#"{"id":1}"#))
        .expect_err("gone for the host too");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
}
