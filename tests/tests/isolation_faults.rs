//! Process isolation against plugins that end their process or never return: for each, the
//! host survives, the call fails at once naming the plugin and how its process ended,
//! `plugin:error` and `plugin:restarted` are published, a bystander and the restarted plugin
//! answer the next call, and what the plugin stored before is still there.

use loader::{Host, HostConfig, PluginState};
use plugin_api::ErrorKind;
use tests::{info, isolate, json, to_json, wait_until, Lifecycle, PluginDir};

/// A host with the `crasher` fixture and the greeter example, both isolated; crasher has
/// stored 42 before anything happens.
fn crasher_host(dir: &PluginDir, configure: impl FnOnce(&mut HostConfig)) -> Host {
    dir.add_fixture("crasher");
    dir.add_example("greeter");
    let host = dir.load_ok_with(|c| {
        isolate(c, &["crasher", "greeter"]);
        configure(c);
    });
    let kept = host.execute("crasher:keep", json("42")).expect("keep");
    assert_eq!(to_json(&kept), 42);
    host
}

fn crasher_pid(host: &Host) -> u64 {
    let pid = host.execute("crasher:pid", json("null")).expect("pid");
    to_json(&pid).as_u64().expect("a pid")
}

/// Runs `crasher:<command>`, expects it to fail with `plugin crasher's process <ended>`,
/// then checks everything the host must still do.
#[track_caller]
fn survives(command: &str, ended: &str, configure: impl FnOnce(&mut HostConfig)) -> Host {
    let dir = PluginDir::new();
    let host = crasher_host(&dir, configure);
    let mut events = Lifecycle::new(&host);
    let before = crasher_pid(&host);
    let err = host
        .execute(&format!("crasher:{command}"), json("null"))
        .expect_err("the process ended");
    assert_eq!(
        err.message(),
        format!("plugin crasher's process {ended}"),
        "{err}"
    );
    let error = events.wait_for_next("plugin:error", "crasher");
    assert_eq!(
        error["error"],
        format!("plugin crasher's process {ended}"),
        "{error}"
    );
    events.wait_for_next("plugin:restarted", "crasher");
    wait_until("crasher is active again", || {
        info(&host, "crasher").state == PluginState::Active
    });
    let pong = host.execute("crasher:ping", json("null")).expect("ping");
    assert_eq!(to_json(&pong), "pong");
    assert_ne!(crasher_pid(&host), before, "a new process serves");
    let kept = host.execute("crasher:kept", json("null")).expect("kept");
    assert_eq!(to_json(&kept), 42, "what was stored is kept");
    let hello = host
        .execute("greeter:greet", json(r#"{"name":"Ada"}"#))
        .expect("the bystander serves");
    assert_eq!(to_json(&hello)["message"], "Hello, Ada!");
    host
}

#[test]
fn exit_zero_in_a_handler_is_survived_and_reported_as_such() {
    survives("exit", "ended: exited with status 0", |_| {});
}

#[cfg(unix)]
#[test]
fn abort_is_survived_naming_sigabrt() {
    survives("abort", "ended: signal 6 (SIGABRT)", |_| {});
}

#[cfg(unix)]
#[test]
fn a_null_pointer_write_is_survived_naming_sigsegv() {
    survives("segfault", "ended: signal 11 (SIGSEGV)", |_| {});
}

#[cfg(unix)]
#[test]
fn a_stack_overflow_is_survived_and_named() {
    survives(
        "overflow",
        "ended: signal 6 (SIGABRT) after a stack overflow",
        |_| {},
    );
}

#[cfg(unix)]
#[test]
fn a_double_panic_is_survived() {
    survives("double-panic", "ended: signal 6 (SIGABRT)", |_| {});
}

#[cfg(unix)]
#[test]
fn unbounded_allocation_under_a_memory_limit_is_reported_as_exceeding_it() {
    survives(
        "allocate",
        "exceeded its memory limit of 256 MiB (signal 6 (SIGABRT))",
        |c| {
            c.plugins
                .entry("crasher".into())
                .or_default()
                .memory_limit_mb = Some(256);
        },
    );
}

#[test]
fn a_handler_that_never_returns_misses_its_deadline_and_its_process_is_killed() {
    let dir = PluginDir::new();
    let host = crasher_host(&dir, |c| c.call_timeout_ms = 300);
    let mut events = Lifecycle::new(&host);
    let before = crasher_pid(&host);
    let err = host
        .execute("crasher:hang", json("null"))
        .expect_err("deadline");
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    events.wait_for_next("plugin:restarted", "crasher");
    wait_until("crasher is active again", || {
        info(&host, "crasher").state == PluginState::Active
    });
    let pong = host.execute("crasher:ping", json("null")).expect("ping");
    assert_eq!(to_json(&pong), "pong");
    assert_ne!(crasher_pid(&host), before);
    assert_eq!(host.killed_processes(), 1);
    assert_eq!(host.detached_threads(), 0, "no thread is left behind");
    let kept = host.execute("crasher:kept", json("null")).expect("kept");
    assert_eq!(to_json(&kept), 42);
    let hello = host
        .execute("greeter:greet", json(r#"{"name":"Ada"}"#))
        .expect("the bystander serves");
    assert_eq!(to_json(&hello)["message"], "Hello, Ada!");
}

#[test]
fn what_a_plugin_prints_to_stdout_does_not_break_the_protocol() {
    let dir = PluginDir::new();
    let host = crasher_host(&dir, |_| {});
    let printed = host.execute("crasher:print", json("null")).expect("print");
    assert_eq!(to_json(&printed), "printed");
    assert_eq!(
        to_json(&host.execute("crasher:ping", json("null")).expect("ping")),
        "pong"
    );
}

#[test]
fn a_plugin_that_keeps_crashing_is_quarantined_under_the_restart_limit() {
    let dir = PluginDir::new();
    let host = crasher_host(&dir, |c| c.max_restarts = 1);
    let mut events = Lifecycle::new(&host);
    let _ = host.execute("crasher:exit", json("null"));
    events.wait_for_next("plugin:restarted", "crasher");
    wait_until("crasher is active again", || {
        info(&host, "crasher").state == PluginState::Active
    });
    let _ = host.execute("crasher:exit", json("null"));
    events.wait_for_next("plugin:quarantined", "crasher");
    assert_eq!(info(&host, "crasher").state, PluginState::Quarantined);
    let hello = host
        .execute("greeter:greet", json(r#"{"name":"Ada"}"#))
        .expect("the bystander serves");
    assert_eq!(to_json(&hello)["message"], "Hello, Ada!");
}

#[test]
fn a_worker_speaking_another_protocol_version_is_refused_naming_both() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let (host, report) = dir.load_with(|c| {
        isolate(c, &["greeter"]);
        c.worker_program = Some(env!("CARGO_BIN_EXE_old-worker").into());
    });
    let err = report
        .error_for_plugin("greeter")
        .expect("greeter is refused")
        .to_string();
    let api = plugin_api::API_VERSION;
    let ours = loader::HOST_VERSION;
    assert!(
        err.contains(&format!(
            "its worker process speaks protocol 0, plugin-api {api}, host {ours}; this host speaks protocol 2, plugin-api {api}, host {ours}: refused"
        )),
        "{err}"
    );
    assert!(host.worker_processes().is_empty());
}

#[cfg(unix)]
#[test]
fn a_worker_program_that_is_not_a_worker_is_reported_with_how_it_ended() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let (_host, report) = dir.load_with(|c| {
        isolate(c, &["greeter"]);
        c.worker_program = Some("/bin/true".into());
    });
    let err = report
        .error_for_plugin("greeter")
        .expect("greeter is refused")
        .to_string();
    assert!(
        err.contains("its worker process ended: exited with status 0"),
        "{err}"
    );
}
