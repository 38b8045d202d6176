//! Registration at run time (plugin-api 1.1) across dlopen: commands, hooks and providers a
//! plugin registers through its context, within the patterns of its manifest, and that end when
//! the handle is disposed or dropped, or when the instance ends (deactivation, reload).
//! `isolated_registration.rs` runs the same tests with every plugin in a process of its own.

use loader::{FileChange, Host, LoadError};
use plugin_api::{ErrorKind, PluginError, RegistrationDecl};
use serde_json::json as value;
use tests::{fixture, json, replace_by_rename, to_json, wait_until, Lifecycle, PluginDir};

fn registrar() -> (PluginDir, Host) {
    let dir = PluginDir::with_fixtures(&["registrar"]);
    let host = dir.load_ok();
    (dir, host)
}

fn add(
    host: &Host,
    kind: &str,
    name: &str,
    priority: i32,
    reply: &str,
) -> Result<u64, PluginError> {
    let args = value!({"kind": kind, "name": name, "priority": priority, "reply": reply});
    host.execute("registrar:add", json(&args.to_string()))
        .map(|id| to_json(&id).as_u64().expect("an id"))
}

fn handle(host: &Host, what: &str, kind: &str, name: &str) -> Result<(), PluginError> {
    let args = value!({"kind": kind, "name": name}).to_string();
    host.execute(&format!("registrar:{what}"), json(&args))
        .map(|_| ())
}

/// The names of `plugin`'s registrations in force, as `<kind> <name>`.
fn in_force(host: &Host, plugin: &str) -> Vec<String> {
    host.registrations(Some(plugin))
        .iter()
        .map(|r| format!("{} {}", r.decl.kind(), r.decl.name()))
        .collect()
}

#[test]
fn a_registered_command_answers_until_it_is_disposed_or_dropped() {
    let (_dir, host) = registrar();
    let id = add(&host, "command", "dyn-a", 0, "from a").expect("within dyn-*");
    let reply = host
        .execute("registrar:dyn-a", json("null"))
        .expect("routed");
    assert_eq!(to_json(&reply), "from a");
    let infos = host.registrations(Some("registrar"));
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].id, id);
    assert_eq!(infos[0].pattern, "dyn-*");
    assert!(
        matches!(&infos[0].decl, RegistrationDecl::Command(c) if c.description == "answers its reply")
    );
    assert!(host.commands().contains(&"registrar:dyn-a".to_owned()));

    handle(&host, "dispose", "command", "dyn-a").expect("disposed");
    let gone = host
        .execute("registrar:dyn-a", json("null"))
        .expect_err("disposed");
    assert_eq!(gone.kind, ErrorKind::NotFound, "{gone}");
    assert!(in_force(&host, "registrar").is_empty());

    add(&host, "command", "dyn-b", 0, "from b").expect("within dyn-*");
    assert_eq!(
        to_json(
            &host
                .execute("registrar:dyn-b", json("null"))
                .expect("routed")
        ),
        "from b"
    );
    handle(&host, "drop", "command", "dyn-b").expect("dropped");
    let gone = host
        .execute("registrar:dyn-b", json("null"))
        .expect_err("dropping the handle unregisters");
    assert_eq!(gone.kind, ErrorKind::NotFound, "{gone}");
    assert!(in_force(&host, "registrar").is_empty());
}

#[test]
fn names_outside_the_declared_patterns_are_refused_naming_plugin_name_and_patterns() {
    let (_dir, host) = registrar();
    let e = add(&host, "command", "deploy", 0, "").expect_err("outside dyn-*");
    assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}");
    for part in ["registrar", "command deploy", "dyn-*"] {
        assert!(e.message().contains(part), "{e}");
    }
    let e = add(&host, "hook", "before:save", 0, "").expect_err("outside trail");
    assert!(
        e.message().contains("hook before:save") && e.message().contains("trail"),
        "{e}"
    );
    let e = add(&host, "provider", "cache", 0, "").expect_err("outside svc-*, users");
    assert!(e.message().contains("svc-*, users"), "{e}");
    assert!(host
        .execute("registrar:deploy", json("null"))
        .is_err_and(|e| e.kind == ErrorKind::NotFound));
    assert!(in_force(&host, "registrar").is_empty());
}

#[test]
fn a_second_registration_of_one_name_is_refused_while_the_first_is_in_force() {
    let (_dir, host) = registrar();
    let first = add(&host, "command", "dyn-a", 0, "one").expect("first");
    let e = add(&host, "command", "dyn-a", 0, "two").expect_err("in force");
    assert!(
        e.message().contains("already registered command dyn-a")
            && e.message().contains(&first.to_string()),
        "{e}"
    );
    assert_eq!(
        to_json(
            &host
                .execute("registrar:dyn-a", json("null"))
                .expect("first")
        ),
        "one"
    );
}

#[test]
fn registered_hooks_and_providers_serve_until_disposed() {
    let (_dir, host) = registrar();
    add(&host, "hook", "trail", 5, "registrar").expect("within trail");
    let out = host
        .run_hook("trail", json(r#"{"trail":["host"]}"#))
        .expect("runs");
    assert_eq!(to_json(&out)["trail"], value!(["host", "registrar"]));

    add(&host, "provider", "svc-time", 0, "noon").expect("within svc-*");
    let now = host
        .provider_call("svc-time", "get", json("null"))
        .expect("served");
    assert_eq!(to_json(&now), "noon");
    let e = host
        .provider_call("svc-time", "set", json("null"))
        .expect_err("no such method");
    assert!(
        e.message().contains("provider svc-time has no method set"),
        "{e}"
    );
    assert_eq!(
        in_force(&host, "registrar"),
        ["hook trail", "provider svc-time"]
    );

    handle(&host, "dispose", "hook", "trail").expect("disposed");
    handle(&host, "dispose", "provider", "svc-time").expect("disposed");
    let out = host
        .run_hook("trail", json(r#"{"trail":["host"]}"#))
        .expect("no handlers");
    assert_eq!(to_json(&out)["trail"], value!(["host"]));
    assert!(host
        .provider_call("svc-time", "get", json("null"))
        .is_err_and(|e| e.kind == ErrorKind::NotFound));
}

#[test]
fn a_registered_provider_follows_the_rules_of_declared_ones() {
    let dir = PluginDir::with_fixtures(&["registrar"]);
    dir.add_example("users");
    let host = dir.load_ok();
    // users declares provider `users` at priority 0.
    let e = add(&host, "provider", "users", 0, "shadow").expect_err("equal priority");
    for part in ["registrar", "users", "priority 0"] {
        assert!(e.message().contains(part), "{e}");
    }
    add(&host, "provider", "users", 10, "shadow").expect("a higher priority");
    let got = host
        .provider_call("users", "get", json("null"))
        .expect("the higher serves");
    assert_eq!(to_json(&got), "shadow");
    handle(&host, "dispose", "provider", "users").expect("disposed");
    let got = host
        .provider_call("users", "get", json(r#"{"id":1}"#))
        .expect("users serves again");
    assert_eq!(to_json(&got)["name"], "Ada Lovelace", "{got:?}");
}

#[test]
fn a_plugin_declaring_a_registered_provider_at_its_priority_is_refused_naming_both() {
    let (dir, host) = registrar();
    add(&host, "provider", "users", 0, "mine").expect("nobody provides users yet");
    let file = dir.add_example("users");
    let report = host.load_dir().expect("the folder lists");
    let error = report
        .entries
        .iter()
        .find(|e| e.file == file)
        .and_then(|e| e.error.clone())
        .unwrap_or_else(|| panic!("users was admitted: {report:?}"));
    assert!(
        matches!(&*error, LoadError::ProviderConflict { plugin, other, priority: 0, .. } if plugin == "users" && other == "registrar"),
        "{error:?}"
    );
    let got = host
        .provider_call("users", "get", json("null"))
        .expect("the registered one serves");
    assert_eq!(to_json(&got), "mine");
}

#[test]
fn deactivation_removes_every_registration_and_a_new_instance_starts_with_none() {
    let (_dir, host) = registrar();
    add(&host, "command", "dyn-a", 0, "a").expect("registered");
    add(&host, "hook", "trail", 0, "registrar").expect("registered");
    add(&host, "provider", "svc-a", 0, "a").expect("registered");
    assert_eq!(in_force(&host, "registrar").len(), 3);

    host.deactivate("registrar").expect("deactivates");
    assert!(in_force(&host, "registrar").is_empty());
    assert!(host.execute("registrar:dyn-a", json("null")).is_err());
    let out = host
        .run_hook("trail", json(r#"{"trail":[]}"#))
        .expect("no handlers");
    assert_eq!(to_json(&out)["trail"], value!([]));
    assert!(host.provider_call("svc-a", "get", json("null")).is_err());

    host.reenable("registrar").expect("a fresh instance");
    assert!(in_force(&host, "registrar").is_empty());
    let held = host
        .execute("registrar:held", json("null"))
        .expect("serves");
    assert_eq!(to_json(&held), 0);
    add(&host, "command", "dyn-a", 0, "again").expect("the name is free again");
}

#[test]
fn a_restarted_plugin_starts_with_no_registrations() {
    let (_dir, host) = registrar();
    let mut lifecycle = Lifecycle::new(&host);
    add(&host, "command", "dyn-a", 0, "a").expect("registered");
    add(&host, "provider", "svc-a", 0, "a").expect("registered");
    let e = host
        .execute("registrar:panic", json("null"))
        .expect_err("panics");
    assert_eq!(e.kind, ErrorKind::Panicked, "{e}");
    lifecycle.wait_for_count("plugin:restarted", "registrar", 1);
    assert!(in_force(&host, "registrar").is_empty());
    assert!(host
        .execute("registrar:dyn-a", json("null"))
        .is_err_and(|e| e.kind == ErrorKind::NotFound));
    assert_eq!(
        to_json(
            &host
                .execute("registrar:held", json("null"))
                .expect("a fresh instance")
        ),
        0
    );
    add(&host, "command", "dyn-a", 0, "again").expect("the name is free again");
    assert_eq!(
        to_json(
            &host
                .execute("registrar:dyn-a", json("null"))
                .expect("routed")
        ),
        "again"
    );
}

#[test]
fn the_scripts_example_registers_its_configured_scripts_at_activation() {
    let dir = PluginDir::with_examples(&["scripts"]);
    let (host, report) = dir.load_with_config(
        "[plugins.scripts.config]\nscripts = { hello = \"hello, {name}!\", shout = \"{text}!!!\" }\nreport_ms = 20\n",
    );
    assert!(report.is_ok(), "{report:?}");
    let out = host
        .execute("scripts:script-hello", json(r#"{"name":"Ada"}"#))
        .expect("registered at activation");
    assert_eq!(to_json(&out)["output"], "hello, Ada!");
    // Its report timer fires on the plugin's own thread, with no thread of the plugin's.
    let stats = || to_json(&host.execute("scripts:stats", json("null")).expect("stats"));
    assert_eq!(stats()["runs"], 1);
    wait_until("the report timer fired twice", || {
        stats()["reports"].as_u64().is_some_and(|n| n >= 2)
    });
    assert_eq!(host.timers_running(), 1);
    assert_eq!(
        in_force(&host, "scripts"),
        ["command script-hello", "command script-shout"]
    );
    assert!(host
        .registrations(None)
        .iter()
        .all(|r| r.pattern == "script-*" && r.plugin == "scripts"));
    host.deactivate("scripts").expect("deactivated");
    wait_until("the report timer stopped with the plugin", || {
        host.timers_running() == 0
    });
}

#[test]
fn a_reloaded_instance_registers_its_own_and_the_old_ones_are_gone() {
    let dir = PluginDir::new();
    let file = dir.add_example("scripts");
    let host = dir.load_ok();
    host.execute(
        "scripts:define",
        json(r#"{"name":"extra","template":"more"}"#),
    )
    .expect("defined");
    assert_eq!(
        in_force(&host, "scripts"),
        ["command script-hello", "command script-extra"]
    );
    let before: Vec<u64> = host.registrations(None).iter().map(|r| r.id).collect();
    replace_by_rename(&fixture("scripts-v2"), &file);
    let change = host.apply_file(&file).expect("reloads");
    assert!(matches!(change, FileChange::Reloaded { .. }), "{change:?}");
    // The new instance registered its config's script again; `extra` went with the old one.
    assert_eq!(in_force(&host, "scripts"), ["command script-hello"]);
    let now = host.registrations(None);
    assert!(
        !before.contains(&now[0].id),
        "a new registration, not the old one"
    );
    let out = host
        .execute("scripts:script-hello", json(r#"{"name":"Bo"}"#))
        .expect("served by the new instance");
    assert_eq!(to_json(&out)["output"], "hello, Bo!");
    assert!(host
        .execute("scripts:script-extra", json("null"))
        .is_err_and(|e| e.kind == ErrorKind::NotFound));
}
