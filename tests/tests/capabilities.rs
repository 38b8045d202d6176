//! The host config and the capability broker through real plugins: revoking and restricting
//! capabilities, disabling plugins, per-plugin config tables, every undeclared capability
//! denied by name, and what `PluginInfo` says was declared and granted.

use loader::LoadError;
use plugin_api::ErrorKind;
use serde_json::json as value;
use tests::{assert_permission_denied, info, json, to_json, PluginDir};

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn a_capability_revoked_in_the_config_is_denied_naming_it() {
    let dir = PluginDir::with_examples(&["greeter", "users"]);
    let (host, report) = dir.load_with_config(
        r#"
        [plugins.greeter]
        revoke = ["emit:greeter:greeted"]
        "#,
    );
    assert!(report.is_ok(), "{report:?}");
    assert_permission_denied(
        host.execute("greeter:greet", json(r#"{"name":"Ada"}"#)),
        "plugin greeter lacks capability emit:greeter:greeted",
    );
    // What was not revoked still works.
    let answer = host
        .execute("greeter:greet-user", json(r#"{"id":1}"#))
        .expect("provider:users is still granted");
    assert_eq!(
        to_json(&answer),
        value!({"message": "Hello, Ada Lovelace!"})
    );

    let greeter = info(&host, "greeter");
    assert_eq!(
        greeter.declared,
        strings(&["emit:greeter:greeted", "provider:users"])
    );
    assert_eq!(greeter.granted, strings(&["provider:users"]));
}

#[test]
fn a_capabilities_list_in_the_config_grants_only_those_of_the_declared_ones() {
    let dir = PluginDir::with_examples(&["greeter", "users"]);
    let (host, report) = dir.load_with_config(
        r#"
        [plugins.greeter]
        capabilities = ["emit:greeter:greeted", "database", "call:*"]
        "#,
    );
    assert!(report.is_ok(), "{report:?}");
    let answer = host
        .execute("greeter:greet", json(r#"{"name":"Ada"}"#))
        .expect("emit:greeter:greeted is granted");
    assert_eq!(to_json(&answer), value!({"message": "Hello, Ada!"}));
    assert_permission_denied(
        host.execute("greeter:greet-user", json(r#"{"id":1}"#)),
        "plugin greeter lacks capability provider:users",
    );
    // Listing a capability the plugin did not declare does not grant it.
    assert_eq!(
        info(&host, "greeter").granted,
        strings(&["emit:greeter:greeted"])
    );
}

#[test]
fn without_config_a_plugin_is_granted_what_it_declares() {
    let dir = PluginDir::with_examples(&["greeter", "users"]);
    dir.add_example("audit-log");
    let host = dir.load_ok();
    let greeter = info(&host, "greeter");
    assert_eq!(greeter.granted, greeter.declared);
    let audit = info(&host, "audit-log");
    assert_eq!(audit.declared, strings(&["subscribe:*", "middleware"]));
    assert_eq!(audit.granted, audit.declared);
    let users = info(&host, "users");
    assert!(users.declared.is_empty(), "{:?}", users.declared);
    assert!(users.granted.is_empty(), "{:?}", users.granted);
}

#[test]
fn revoked_middleware_is_not_installed() {
    let dir = PluginDir::with_fixtures(&["mw-a", "mw-b"]);
    let (host, report) = dir.load_with_config(
        r#"
        [plugins.mw-b]
        revoke = ["middleware"]
        "#,
    );
    assert!(report.is_ok(), "{report:?}");
    let answer = host
        .execute("mw-b:echo", json(r#"{"trail":[]}"#))
        .expect("echo");
    assert_eq!(
        to_json(&answer),
        value!({
            "trail": ["before mw-a", "after mw-a"],
            "respond_in": null,
            "fail_before_in": null,
            "fail_after_in": null,
            "panic_after_in": null,
        })
    );
    assert!(info(&host, "mw-b").granted.is_empty());
}

#[test]
fn a_disabled_plugin_is_not_loaded() {
    let dir = PluginDir::with_examples(&["greeter", "users"]);
    let (host, report) = dir.load_with_config(
        r#"
        [plugins.greeter]
        enabled = false
        "#,
    );
    let err = report
        .error_for_plugin("greeter")
        .expect("greeter is refused");
    assert!(
        matches!(err, LoadError::Disabled { plugin } if plugin == "greeter"),
        "{err:?}"
    );
    assert_eq!(report.activated(), ["users"]);
    let err = host
        .execute("greeter:greet", json(r#"{"name":"Ada"}"#))
        .expect_err("greeter is not loaded");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
}

#[test]
fn a_plugin_reads_its_config_table() {
    let dir = PluginDir::with_fixtures(&["configured"]);
    let (host, report) = dir.load_with_config(
        r#"
        [plugins.configured.config]
        greeting = "Howdy"
        repeat = 3
        tags = ["a", "b"]

        [plugins.other.config]
        greeting = "not mine"
        "#,
    );
    assert!(report.is_ok(), "{report:?}");
    let answer = host
        .execute("configured:config", json("null"))
        .expect("config");
    assert_eq!(
        to_json(&answer),
        value!({"greeting": "Howdy", "repeat": 3, "tags": ["a", "b"]})
    );
}

#[test]
fn a_plugin_without_a_config_table_reads_an_empty_one() {
    let dir = PluginDir::with_fixtures(&["configured"]);
    let host = dir.load_ok();
    let answer = host
        .execute("configured:config", json("null"))
        .expect("config");
    assert_eq!(
        to_json(&answer),
        value!({"greeting": "", "repeat": 0, "tags": []})
    );
}

#[test]
fn every_undeclared_capability_is_denied_naming_it() {
    let dir = PluginDir::with_fixtures(&["overreach"]);
    // The targets exist, so only the capability check stands in the way.
    for example in ["greeter", "echo", "notes", "validator", "users"] {
        dir.add_example(example);
    }
    let host = dir.load_ok();
    assert!(info(&host, "overreach").declared.is_empty());
    for (command, capability) in [
        ("emit", "emit:overreach:thing"),
        ("subscribe", "subscribe:news:*"),
        ("call", "call:greeter:greet"),
        ("message", "message:echo"),
        ("hook", "hook:run:before:save"),
        ("provider", "provider:users"),
        ("shared-read", "storage:shared:read"),
        ("shared-write", "storage:shared:write"),
        ("scan", "database"),
        ("batch", "database"),
    ] {
        assert_permission_denied(
            host.execute(&format!("overreach:{command}"), json("null")),
            &format!("plugin overreach lacks capability {capability}"),
        );
    }
    // Nothing got through: no shared data, no own data from the batch.
    let store = host.store();
    assert!(store
        .scan(&loader::Namespace::Shared, "", "", 0)
        .expect("scan")
        .is_empty());
    assert!(store
        .scan(&loader::Namespace::Plugin("overreach".into()), "", "", 0)
        .expect("scan")
        .is_empty());
}

#[test]
fn a_wildcard_grants_everything_unless_the_host_config_refuses_it() {
    let dir = PluginDir::with_fixtures(&["greedy"]);
    let host = dir.load_ok();
    host.execute("greedy:emit", json("null"))
        .expect("\"*\" allows an event type declared nowhere");
    drop(host);
    let (host, report) = dir.load_with_config("allow_wildcard = false");
    let err = report
        .error_for_plugin("greedy")
        .expect("greedy is refused");
    assert!(
        matches!(err, LoadError::WildcardRefused { plugin } if plugin == "greedy"),
        "{err:?}"
    );
    assert!(err.to_string().contains("allow_wildcard = false"), "{err}");
    assert!(host.execute("greedy:emit", json("null")).is_err());
}

#[test]
fn a_misspelt_capability_refuses_the_plugin_naming_it() {
    let dir = PluginDir::with_fixtures(&["typo-cap"]);
    let (_host, report) = dir.load();
    assert!(report.activated().is_empty());
    let entry = &report.entries[0];
    let err = entry.error.as_deref().expect("typo-cap is refused");
    let text = err.to_string();
    assert!(
        text.contains("plugin typo-cap declares an unknown capability \"storage:shared:reed\""),
        "{text}"
    );
}
