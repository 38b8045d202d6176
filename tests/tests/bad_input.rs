//! Bad plugin files next to a good one: each must get its own precise error, naming the file,
//! the plugin or the versions involved, while the good plugin (greeter) still activates and
//! serves, and the host process survives.

use loader::{Host, LoadError, LoadReport, PluginSource, PluginState};
use plugin_api::ErrorKind;
use tests::{
    assert_bad_library, assert_greeted_ada, assert_names_file, error_for, example_lib, info, json,
    load_beside_greeter, set_mode, to_json, PluginDir, ROOT_SYMBOL,
};

/// Greeter activated and answers (within the host's own call deadline), whatever else was in
/// the folder.
fn assert_greeter_survives(host: &Host, report: &LoadReport) {
    assert!(
        report.activated().contains(&"greeter"),
        "greeter did not activate: {report:?}"
    );
    assert_greeted_ada(
        host,
        host.execute("greeter:greet", json(r#"{"name":"Ada"}"#)),
    );
}

#[test]
fn text_file_named_like_a_library_is_refused_and_the_good_plugin_loads() {
    let (_dir, host, report, bad) = load_beside_greeter(|d| {
        d.add_file(
            &loader::library_file_name("notes"),
            b"shopping: milk, eggs\n",
        )
    });
    assert_bad_library(&report, &bad, tests::NOT_A_LIBRARY);
    // The failure is listed with the plugins, by file name.
    let listed = info(&host, &loader::library_file_name("notes"));
    assert_eq!(listed.state, PluginState::Failed);
    assert_eq!(listed.file, Some(bad));
    assert_greeter_survives(&host, &report);
}

#[test]
fn empty_file_is_refused() {
    let (_dir, host, report, bad) =
        load_beside_greeter(|d| d.add_file(&loader::library_file_name("empty"), b""));
    assert_bad_library(&report, &bad, "empty");
    assert_greeter_survives(&host, &report);
}

/// dlopen of such a file dies with SIGBUS: this test passing means the process survived. The
/// file is cut by its ELF program headers.
#[cfg(target_os = "linux")]
#[test]
fn library_truncated_inside_a_load_segment_is_refused_before_dlopen() {
    let real = std::fs::read(example_lib("echo")).expect("read echo");
    let cut = tests::truncated_inside_pt_load(&real);
    let (_dir, host, report, bad) =
        load_beside_greeter(|d| d.add_file(&loader::library_file_name("echo"), &cut));
    assert_bad_library(&report, &bad, "PT_LOAD");
    assert_greeter_survives(&host, &report);
}

#[test]
fn library_without_the_root_symbol_is_not_a_plugin() {
    let (_dir, host, report, bad) = load_beside_greeter(|d| d.add_fixture("not-a-plugin"));
    match error_for(&report, &bad) {
        LoadError::NotAPlugin { path, symbol } => {
            assert_eq!(path, &bad);
            assert_eq!(symbol, ROOT_SYMBOL);
        }
        other => panic!("expected NotAPlugin, got {other:?}"),
    }
    let text = error_for(&report, &bad).to_string();
    assert!(text.contains(ROOT_SYMBOL), "{text}");
    assert_names_file(error_for(&report, &bad), &bad);
    assert_greeter_survives(&host, &report);
}

#[test]
fn incompatible_interface_version_names_both_versions() {
    let (_dir, host, report, bad) = load_beside_greeter(|d| d.add_fixture("bad-interface"));
    match error_for(&report, &bad) {
        LoadError::InterfaceVersion {
            path,
            plugin,
            host: host_version,
        } => {
            assert_eq!(path, &bad);
            assert_eq!(plugin, "2.0.0");
            assert_eq!(host_version, plugin_api::API_VERSION);
        }
        other => panic!("expected InterfaceVersion, got {other:?}"),
    }
    let text = error_for(&report, &bad).to_string();
    assert!(
        text.contains("2.0.0") && text.contains(plugin_api::API_VERSION),
        "{text}"
    );
    assert_names_file(error_for(&report, &bad), &bad);
    assert_greeter_survives(&host, &report);
}

#[test]
fn incompatible_layout_is_an_abi_error() {
    let (_dir, host, report, bad) = load_beside_greeter(|d| d.add_fixture("bad-layout"));
    match error_for(&report, &bad) {
        LoadError::AbiMismatch { path, message, .. } => {
            assert_eq!(path, &bad);
            // The fixture changed the type of `panic_unwinds` from bool to u64.
            assert!(
                message.contains("PluginMod.panic_unwinds") && message.contains("u64"),
                "the difference is named: {message}"
            );
        }
        other => panic!("expected AbiMismatch, got {other:?}"),
    }
    assert_names_file(error_for(&report, &bad), &bad);
    assert_greeter_survives(&host, &report);
}

#[test]
fn activation_error_is_reported_with_the_plugin_name_and_nothing_is_registered() {
    let (_dir, host, report, bad) = load_beside_greeter(|d| d.add_fixture("activate-fails"));
    match error_for(&report, &bad) {
        LoadError::Activation { plugin, error } => {
            assert_eq!(plugin, "activate-fails");
            assert_eq!(error.kind, ErrorKind::Failed);
            assert_eq!(error.message(), "database unreachable");
        }
        other => panic!("expected Activation, got {other:?}"),
    }
    let text = error_for(&report, &bad).to_string();
    assert!(
        text.contains("activate-fails") && text.contains("database unreachable"),
        "{text}"
    );
    assert_eq!(info(&host, "activate-fails").state, PluginState::Failed);
    assert!(!host
        .commands()
        .iter()
        .any(|c| c.starts_with("activate-fails:")));
    let err = host
        .execute("activate-fails:never", json("null"))
        .expect_err("an inactive plugin's commands are not registered");
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_greeter_survives(&host, &report);
}

#[test]
fn activation_panic_is_caught_and_reported() {
    let (_dir, host, report, bad) = load_beside_greeter(|d| d.add_fixture("activate-panics"));
    match error_for(&report, &bad) {
        LoadError::Activation { plugin, error } => {
            assert_eq!(plugin, "activate-panics");
            assert_eq!(error.kind, ErrorKind::Panicked);
            assert!(
                error.message().contains("activation exploded on purpose"),
                "{error}"
            );
        }
        other => panic!("expected Activation, got {other:?}"),
    }
    assert_eq!(info(&host, "activate-panics").state, PluginState::Failed);
    assert_greeter_survives(&host, &report);
}

#[test]
fn two_files_with_the_same_plugin_name_keep_the_first() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let first = dir.add_fixture("dup-a");
    let second = dir.add_fixture("dup-b");
    let (host, report) = dir.load();
    assert!(
        report
            .error_for(&loader::library_file_name("fixture_dup_a"))
            .is_none(),
        "{report:?}"
    );
    match error_for(&report, &second) {
        LoadError::Duplicate {
            plugin,
            origin,
            existing,
        } => {
            assert_eq!(plugin, "duplicate");
            assert_eq!(origin, &second);
            assert_eq!(existing, &first);
        }
        other => panic!("expected Duplicate, got {other:?}"),
    }
    let text = error_for(&report, &second).to_string();
    assert!(
        text.contains(&first.display().to_string()) && text.contains(&second.display().to_string()),
        "{text}"
    );
    let which = host
        .execute("duplicate:which", json("null"))
        .expect("the first file's plugin serves");
    assert_eq!(to_json(&which), "a");
    assert_greeter_survives(&host, &report);
}

/// A plugin compiled into the application has no file: errors name it as a compiled-in
/// module, never by a made-up path, whether it is the one refused or the one a file clashes
/// with, and the host's report gives it no file.
#[test]
fn a_compiled_in_module_is_named_as_such_in_errors_never_by_a_made_up_path() {
    #[derive(Default)]
    struct Misnamed;
    impl plugin_api::Plugin for Misnamed {
        fn manifest() -> plugin_api::Manifest {
            plugin_api::Manifest::new("Not A Name")
        }
    }
    let dir = PluginDir::with_examples(&["greeter", "echo"]);
    // Every plugin is to run in a child process; one compiled into the host cannot.
    let host = dir.host_with(|c| tests::isolate(c, &["*"]));
    let loaded = host.subscribe("plugin:loaded", 16);
    host.register_static(plugin_api::static_plugin!(echo::Echo))
        .expect("a compiled-in echo");
    let event = loaded
        .receiver()
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("plugin:loaded for the compiled-in echo");
    assert_eq!(
        loader::LifecycleEvent::from_event(&event),
        Some(loader::LifecycleEvent::Loaded {
            plugin: "echo".to_owned(),
            version: "0.1.0".to_owned(),
            file: None,
        })
    );
    let error = host
        .register_static(plugin_api::static_plugin!(Misnamed))
        .expect_err("an invalid plugin name");
    assert!(
        matches!(&error, LoadError::Manifest { origin: PluginSource::CompiledIn, message } if message.contains("Not A Name")),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("compiled-in module: invalid manifest:"),
        "{error}"
    );

    // The folder's echo clashes with the compiled-in one, which keeps serving.
    let report = host.load_dir().expect("the plugins folder can be listed");
    let echo_file = dir.file(&loader::library_file_name("echo"));
    match error_for(&report, &echo_file) {
        LoadError::Duplicate {
            plugin,
            origin,
            existing,
        } => {
            assert_eq!(plugin, "echo");
            assert_eq!(origin, &echo_file);
            assert_eq!(existing, &PluginSource::CompiledIn);
        }
        other => panic!("expected Duplicate, got {other:?}"),
    }
    let text = error_for(&report, &echo_file).to_string();
    assert!(
        text.contains(&echo_file.display().to_string())
            && text.ends_with(" and compiled-in module"),
        "{text}"
    );
    let fix = loader::fix_for(error_for(&report, &echo_file));
    assert!(fix.contains("compiled into the application"), "{fix}");
    let listed = host.plugins();
    let serving = listed
        .iter()
        .find(|p| p.name == "echo" && p.state == PluginState::Active)
        .expect("the compiled-in echo serves");
    assert_eq!(serving.file, None);
    assert!(
        listed.iter().all(|p| p
            .file
            .as_ref()
            .is_none_or(|f| !f.to_string_lossy().contains("static"))),
        "{listed:?}"
    );
    assert_eq!(serving.isolation, loader::Isolation::InProcess);
    assert_eq!(serving.process_id, None);
    assert_greeter_survives(&host, &report);
}

#[test]
fn missing_dependency_is_named() {
    let (_dir, host, report, bad) = load_beside_greeter(|d| d.add_fixture("missing-dep"));
    match error_for(&report, &bad) {
        LoadError::MissingDependency {
            plugin,
            dependency,
            requirement,
        } => {
            assert_eq!(plugin, "missing-dep");
            assert_eq!(dependency, "nowhere");
            assert_eq!(requirement, "^1");
        }
        other => panic!("expected MissingDependency, got {other:?}"),
    }
    let text = error_for(&report, &bad).to_string();
    assert!(
        text.contains("missing-dep") && text.contains("nowhere"),
        "{text}"
    );
    assert_greeter_survives(&host, &report);
}

#[test]
fn dependency_cycle_is_named_for_both_plugins() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let a = dir.add_fixture("cycle-a");
    let b = dir.add_fixture("cycle-b");
    let (host, report) = dir.load();
    for file in [&a, &b] {
        match error_for(&report, file) {
            LoadError::Cycle { cycle } => {
                assert!(
                    cycle == "cycle-a -> cycle-b -> cycle-a"
                        || cycle == "cycle-b -> cycle-a -> cycle-b",
                    "{cycle}"
                );
            }
            other => panic!("expected Cycle for {}, got {other:?}", file.display()),
        }
    }
    assert_greeter_survives(&host, &report);
}

#[cfg(unix)]
#[test]
fn world_writable_plugin_file_is_refused_with_path_and_mode() {
    let (_dir, host, report, bad) = load_beside_greeter(|d| {
        let echo = d.add_example("echo");
        set_mode(&echo, 0o666);
        echo
    });
    match error_for(&report, &bad) {
        LoadError::WorldWritable { path, mode } => {
            assert_eq!(path, &bad);
            assert_eq!(*mode, 0o666);
        }
        other => panic!("expected WorldWritable, got {other:?}"),
    }
    let text = error_for(&report, &bad).to_string();
    assert!(text.contains("666"), "{text}");
    assert_names_file(error_for(&report, &bad), &bad);
    assert!(!host.commands().iter().any(|c| c.starts_with("echo:")));
    assert_greeter_survives(&host, &report);
}

#[test]
fn plugin_built_with_panic_abort_is_refused() {
    let (_dir, host, report, bad) = load_beside_greeter(|d| d.add_fixture("panic-abort"));
    match error_for(&report, &bad) {
        LoadError::PanicAbort { origin } => assert_eq!(origin, &bad),
        other => panic!("expected PanicAbort, got {other:?}"),
    }
    let text = error_for(&report, &bad).to_string();
    assert!(text.contains("panic = \"abort\""), "{text}");
    assert_names_file(error_for(&report, &bad), &bad);
    assert!(!host
        .commands()
        .iter()
        .any(|c| c.starts_with("panic-abort:")));
    assert_greeter_survives(&host, &report);
}

#[test]
fn same_file_loaded_twice_is_already_loaded_and_activates_once() {
    let dir = PluginDir::new();
    let greeter = dir.add_example("greeter");
    let host = dir.host();
    let activations = host.subscribe("plugin:activated", 64);
    let first = host.load_dir().expect("list the folder");
    assert_greeter_survives(&host, &first);

    let again = host.load_files(std::slice::from_ref(&greeter));
    let by_dir = host.load_dir().expect("list the folder");
    for report in [&again, &by_dir] {
        match error_for(report, &greeter) {
            LoadError::AlreadyLoaded { path, plugin } => {
                assert_eq!(path, &greeter);
                assert_eq!(plugin, "greeter");
            }
            other => panic!("expected AlreadyLoaded, got {other:?}"),
        }
        assert!(report.activated().is_empty(), "{report:?}");
    }

    let greeter_activations = activations
        .receiver()
        .try_iter()
        .filter(|e| to_json(&e.data)["plugin"] == "greeter")
        .count();
    assert_eq!(
        greeter_activations, 1,
        "greeter was activated more than once"
    );
    assert_greeter_survives(&host, &first);
}
