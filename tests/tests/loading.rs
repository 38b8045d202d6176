//! Loading the example plugins from a folder: activation order, identity of each library,
//! the plugin list, and shutdown.

use loader::PluginState;
use tests::{info, json, library_file_name, to_json, PluginDir, EXAMPLES};

#[test]
fn every_example_plugin_loads_and_activates() {
    let dir = PluginDir::with_examples(&EXAMPLES);
    let (host, report) = dir.load();
    assert!(report.is_ok(), "{report:?}");
    let mut activated = report.activated();
    activated.sort_unstable();
    let mut expected = EXAMPLES.to_vec();
    expected.sort_unstable();
    assert_eq!(activated, expected);
    for name in EXAMPLES {
        assert_eq!(info(&host, name).state, PluginState::Active, "{name}");
    }
}

#[test]
fn dependencies_activate_first_whatever_the_file_order() {
    // welcome depends on greeter; name the files so that welcome's sorts first.
    let dir = PluginDir::new();
    dir.add_example_as("welcome", &library_file_name("a-welcome"));
    dir.add_example_as("greeter", &library_file_name("z-greeter"));
    let host = dir.host();
    let lifecycle = host.subscribe("plugin:activated", 64);
    let report = host.load_dir().expect("list the folder");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.activated(), ["greeter", "welcome"]);
    let order: Vec<String> = lifecycle
        .receiver()
        .try_iter()
        .map(|e| {
            to_json(&e.data)["plugin"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(order, ["greeter", "welcome"]);

    // welcome runs greeter's command: the dependency is really there.
    let reply = host
        .execute("welcome:welcome", json(r#"{"name":"Ada"}"#))
        .expect("welcome answers");
    assert_eq!(to_json(&reply)["message"], "Hello, Ada! Welcome aboard.");
}

/// Guards against abi_stable's `RootModule::load_from*`, which caches one module per root
/// module type: a second plugin file would silently be the first plugin again.
#[test]
fn two_libraries_of_the_same_interface_are_two_different_plugins() {
    let dir = PluginDir::with_examples(&["greeter", "echo"]);
    let host = dir.load_ok();

    let greeting = host
        .execute("greeter:greet", json(r#"{"name":"Ada"}"#))
        .expect("greeter answers");
    assert_eq!(to_json(&greeting)["message"], "Hello, Ada!");
    let reversed = host
        .execute("echo:reverse", json(r#""abc""#))
        .expect("echo answers");
    assert_eq!(to_json(&reversed), "cba");

    let greeter = info(&host, "greeter");
    let echo = info(&host, "echo");
    assert_ne!(greeter.fingerprint, echo.fingerprint);
    assert_eq!(greeter.manifest.map(|m| m.name).as_deref(), Some("greeter"));
    assert_eq!(echo.manifest.map(|m| m.name).as_deref(), Some("echo"));
    let commands = host.commands();
    for command in ["greeter:greet", "greeter:greet-user", "echo:reverse"] {
        assert!(commands.iter().any(|c| c == command), "{commands:?}");
    }
}

#[test]
fn plugins_lists_name_version_state_and_file() {
    let dir = PluginDir::new();
    let greeter = dir.add_example("greeter");
    let echo = dir.add_example("echo");
    let host = dir.load_ok();

    let plugins = host.plugins();
    let mut names: Vec<&str> = plugins.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["echo", "greeter"]);
    for (name, file) in [("greeter", &greeter), ("echo", &echo)] {
        let p = info(&host, name);
        assert_eq!(p.version.as_deref(), Some("0.1.0"), "{name}");
        assert_eq!(p.state, PluginState::Active, "{name}");
        assert_eq!(p.file.as_ref(), Some(file), "{name}");
        assert!(p.error.is_none(), "{name}: {:?}", p.error);
        let bytes = std::fs::read(file).expect("read the plugin file");
        assert_eq!(p.fingerprint, Some(loader::fingerprint(&bytes)), "{name}");
        // Without an allowlist the host does not spend a SHA-256 on every load.
        assert_eq!(p.sha256, None, "{name}");
    }
    let greeter = info(&host, "greeter");
    assert!(greeter.granted.contains(&"emit:greeter:greeted".to_owned()));
}

#[test]
fn shutdown_deactivates_in_reverse_activation_order() {
    let dir = PluginDir::with_examples(&EXAMPLES);
    let (host, report) = dir.load();
    assert!(report.is_ok(), "{report:?}");
    let activated: Vec<String> = report.activated().iter().map(|s| (*s).to_owned()).collect();
    let deactivated = host.subscribe("plugin:deactivated", 64);

    host.shutdown();

    let order: Vec<String> = deactivated
        .receiver()
        .try_iter()
        .map(|e| {
            assert_eq!(e.source.as_str(), "host");
            to_json(&e.data)["plugin"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let mut expected = activated;
    expected.reverse();
    assert_eq!(order, expected);
    for name in EXAMPLES {
        assert_eq!(info(&host, name).state, PluginState::Deactivated, "{name}");
    }
    let err = host
        .execute("greeter:greet", json(r#"{"name":"Ada"}"#))
        .expect_err("a stopped plugin serves nothing");
    assert_eq!(err.kind, plugin_api::ErrorKind::NotFound);
}

#[test]
fn a_list_of_files_gets_one_entry_per_file_whatever_each_one_holds() {
    // The files are copied and checked on a second thread ahead of their opening: every file
    // still gets exactly one entry, and a file that is already serving is reported as such.
    let dir = PluginDir::new();
    let echo = dir.add_example("echo");
    let junk = dir.add_file(&library_file_name("junk"), b"not a library at all");
    let greeter = dir.add_example("greeter");
    let counter = dir.add_example("counter");
    let host = dir.host();
    let first = host.load_files(std::slice::from_ref(&echo));
    assert_eq!(first.activated(), vec!["echo"], "{first:?}");
    let files = vec![greeter.clone(), junk.clone(), echo.clone(), counter.clone()];
    let report = host.load_files(&files);
    let mut reported: Vec<_> = report.entries.iter().map(|e| e.file.clone()).collect();
    reported.sort_unstable();
    let mut expected = files.clone();
    expected.sort_unstable();
    assert_eq!(reported, expected, "{report:?}");
    let mut activated = report.activated();
    activated.sort_unstable();
    assert_eq!(activated, vec!["counter", "greeter"], "{report:?}");
    assert!(
        matches!(
            tests::error_for(&report, &echo),
            loader::LoadError::AlreadyLoaded { plugin, .. } if plugin == "echo"
        ),
        "{report:?}"
    );
    tests::assert_names_file(tests::error_for(&report, &junk), &junk);
}
