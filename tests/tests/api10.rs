//! ABI evolution, proven both ways across dlopen.
//!
//! - Plugins built against plugin-api 1.0.0 (the vendored `tests/fixtures/plugin-api-1.0`,
//!   with the example plugins greeter, notes and echo as they were then) load in today's host
//!   and work beside 1.1 plugins: commands, events, a provider, hooks, storage, messages, RPC.
//!   (`isolated_api10.rs` runs them again in worker processes.)
//! - A 1.1 plugin in a host of 1.0 (the `host-1-0` fixture program, built against the vendored
//!   1.0.0) is refused when it is instantiated, with both versions named.

use std::process::Command;

use loader::RecordKind;
use serde_json::json as value;
use tests::{fixture, fixtures_dir, info, json, to_json, wait_until, PluginDir};

fn api_version(host: &loader::Host, plugin: &str) -> String {
    info(host, plugin)
        .manifest
        .map(|m| m.api_version)
        .unwrap_or_default()
}

fn old_plugins() -> PluginDir {
    let dir = PluginDir::with_fixtures(&["api10-greeter", "api10-notes", "api10-echo"]);
    // Today's plugins, which the old ones call.
    dir.add_example("users");
    dir.add_example("validator");
    dir
}

#[test]
fn plugins_built_against_plugin_api_1_0_load_and_work_in_this_host() {
    let dir = old_plugins();
    let host = dir.load_ok();
    for plugin in ["greeter", "notes", "echo"] {
        assert_eq!(
            api_version(&host, plugin),
            "1.0.0",
            "{plugin} was built against plugin-api 1.0.0"
        );
    }
    assert_eq!(api_version(&host, "users"), plugin_api::API_VERSION);

    // Commands, and an event the 1.0 plugin emits.
    let watcher = host.subscribe("greeter:*", 16);
    let reply = host
        .execute("greeter:greet", json(r#"{"name":"Ada"}"#))
        .expect("greet");
    assert_eq!(to_json(&reply), value!({"message": "Hello, Ada!"}));
    let event = watcher
        .receiver()
        .recv_timeout(tests::WAIT_LIMIT)
        .expect("greeter:greeted");
    assert_eq!(event.source.as_str(), "greeter");

    // A 1.0 plugin calling a 1.1 provider.
    let reply = host
        .execute("greeter:greet-user", json(r#"{"id":2}"#))
        .expect("greet-user");
    assert_eq!(to_json(&reply), value!({"message": "Hello, Grace Hopper!"}));

    // Hooks (served by the 1.1 validator) and storage.
    let saved = host
        .execute("notes:save", json(r#"{"title":"  x ","body":"b"}"#))
        .expect("save");
    assert_eq!(to_json(&saved), value!({"id": 1, "title": "x"}));
    let list = host.execute("notes:list", json("null")).expect("list");
    assert_eq!(
        to_json(&list),
        value!({"notes": [{"id": 1, "title": "x", "body": "b"}]})
    );

    // Messages and RPC.
    let back = host
        .request("echo", json(r#"{"hi":1}"#), None)
        .expect("request");
    assert_eq!(to_json(&back), value!({"hi": 1}));
    let reversed = host
        .call("echo", "reverse", json(r#""abc""#), None)
        .expect("rpc");
    assert_eq!(to_json(&reversed), value!("cba"));

    // The host stamps and traces the old plugins' calls like any other.
    wait_until("the save is traced", || {
        host.trace()
            .iter()
            .any(|r| r.kind == RecordKind::Command && &*r.name == "notes:save" && r.outcome.is_ok())
    });
}

#[test]
fn a_1_1_plugin_refuses_a_1_0_host_naming_both_versions() {
    let host = fixtures_dir().join(format!("host-1-0{}", std::env::consts::EXE_SUFFIX));
    let run = |plugin: &str| {
        let out = Command::new(&host)
            .arg(fixture(plugin))
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", host.display()));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };

    // The 1.0 host itself works: it runs a plugin of its own version.
    let (code, out) = run("api10-echo");
    assert_eq!((code, out.trim()), (Some(0), "instantiated echo"));

    // abi_stable lets the 1.1 library through (same major version); the plugin's own check
    // refuses the older host's context, without calling anything the host lacks.
    let (code, out) = run("callers");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "plugin callers needs plugin-api {}, the host provides 1.0",
            plugin_api::API_VERSION
        )),
        "{out}"
    );
}
