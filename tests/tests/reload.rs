//! Hot reload: files added, replaced (in place and by rename) and removed while a folder watcher
//! runs; files still being written; new versions that fail or break a dependent, which leave the
//! old version serving; state handoff; reloads under continuous traffic; and a long run of
//! reloads of one plugin.
//!
//! Two builds of one plugin come from the fixtures: `counter-v2` is the example counter's source
//! as version 0.2.0, `greeter-v011` and `greeter-v2` are greeter as 0.1.1 and 2.0.0, and
//! `counter-broken` is a plugin named counter (0.3.0) whose `activate` fails.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{self, Receiver},
    },
    thread,
    time::Duration,
};

use loader::{FileChange, FolderWatcher, Host, LoadError, PluginState};
use plugin_api::ErrorKind;
use tests::{
    example_lib, fixture, info, json, library_file_name, metrics, replace_by_rename,
    replace_with_bytes, set_mode, to_json, truncated_inside_pt_load, wait_until, Lifecycle,
    PluginDir, WAIT_LIMIT,
};

/// How long the test watchers wait after a file's last change before applying it: short, so the
/// tests run quickly.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// What the activation of `counter-broken` reports.
const BROKEN_WHY: &str = "counter 0.3.0 cannot reach its database";

/// One change a watcher applied, in a form tests can compare.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Applied {
    /// A load: the plugins activated and the errors of the files that did not become plugins.
    Loaded {
        activated: Vec<String>,
        errors: Vec<String>,
    },
    Reloaded {
        plugin: String,
        old_version: String,
        new_version: String,
    },
    Unchanged(String),
    Removed(String),
    Ignored,
    /// `apply_file` failed (a refused reload): the error message.
    Refused(String),
}

impl Applied {
    fn of(outcome: &Result<FileChange, LoadError>) -> Self {
        match outcome {
            Ok(FileChange::Loaded(report)) => Applied::Loaded {
                activated: report.activated().into_iter().map(str::to_owned).collect(),
                errors: report
                    .entries
                    .iter()
                    .filter_map(|e| e.error.as_ref())
                    .map(ToString::to_string)
                    .collect(),
            },
            Ok(FileChange::Reloaded {
                plugin,
                old_version,
                new_version,
            }) => Applied::Reloaded {
                plugin: plugin.clone(),
                old_version: old_version.clone(),
                new_version: new_version.clone(),
            },
            Ok(FileChange::Unchanged { plugin }) => Applied::Unchanged(plugin.clone()),
            Ok(FileChange::Removed { plugin }) => Applied::Removed(plugin.clone()),
            Ok(FileChange::Ignored) => Applied::Ignored,
            Err(error) => Applied::Refused(error.to_string()),
        }
    }

    fn loaded(plugin: &str) -> Self {
        Applied::Loaded {
            activated: vec![plugin.to_owned()],
            errors: Vec::new(),
        }
    }

    fn reloaded(plugin: &str, old_version: &str, new_version: &str) -> Self {
        Applied::Reloaded {
            plugin: plugin.to_owned(),
            old_version: old_version.to_owned(),
            new_version: new_version.to_owned(),
        }
    }

    /// Whether this change activated a plugin.
    fn activated_any(&self) -> bool {
        matches!(self, Applied::Loaded { activated, .. } if !activated.is_empty())
            || matches!(self, Applied::Reloaded { .. })
    }
}

/// Watches `host`'s plugins folder; what the watcher applies arrives on the receiver, in order.
fn watch(host: &Host) -> (FolderWatcher, Receiver<(PathBuf, Applied)>) {
    let (tx, rx) = mpsc::channel();
    let watcher = host
        .watch(
            DEBOUNCE,
            Box::new(move |path, outcome| {
                let _ = tx.send((path.to_owned(), Applied::of(outcome)));
            }),
        )
        .expect("the plugins folder can be watched");
    (watcher, rx)
}

/// The next change the watcher applied, skipping files it found unchanged.
fn next_change(applied: &Receiver<(PathBuf, Applied)>) -> (PathBuf, Applied) {
    loop {
        let change = applied
            .recv_timeout(WAIT_LIMIT)
            .unwrap_or_else(|e| panic!("the watcher applied no change within {WAIT_LIMIT:?}: {e}"));
        if !matches!(change.1, Applied::Unchanged(_)) {
            return change;
        }
    }
}

/// Every change the watcher applies, up to and including the first one `last` accepts.
fn changes_until(
    applied: &Receiver<(PathBuf, Applied)>,
    mut last: impl FnMut(&Applied) -> bool,
) -> Vec<(PathBuf, Applied)> {
    let mut changes = Vec::new();
    loop {
        let change = next_change(applied);
        let done = last(&change.1);
        changes.push(change);
        if done {
            return changes;
        }
    }
}

/// Overwrites `target` in place with the contents of `source`, as `cp` does: same file,
/// truncated and written again.
fn overwrite_in_place(source: &Path, target: &Path) {
    let bytes = fs::read(source).unwrap_or_else(|e| panic!("read {}: {e}", source.display()));
    fs::write(target, bytes).unwrap_or_else(|e| panic!("write {}: {e}", target.display()));
}

/// The fingerprint the host records for the library file `path`.
fn fingerprint_of(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    loader::fingerprint(&bytes)
}

/// Runs `counter:<command>`; returns its `(value, session)`.
fn counter(host: &Host, command: &str) -> (u64, u64) {
    let reply = host
        .execute(&format!("counter:{command}"), json("{}"))
        .unwrap_or_else(|e| panic!("counter:{command}: {e}"));
    let reply = to_json(&reply);
    (
        reply["value"].as_u64().expect("counter answers a value"),
        reply["session"]
            .as_u64()
            .expect("counter answers a session"),
    )
}

fn welcome_ada(host: &Host) -> String {
    let reply = host
        .execute("welcome:welcome", json(r#"{"name":"Ada"}"#))
        .unwrap_or_else(|e| panic!("welcome:welcome: {e}"));
    to_json(&reply)["message"]
        .as_str()
        .expect("a message")
        .to_owned()
}

fn assert_command_gone(host: &Host, command: &str) {
    let err = host
        .execute(command, json("{}"))
        .expect_err("the command is gone");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("command not found"), "{err}");
    assert!(!host.commands().iter().any(|c| c == command));
}

#[test]
fn a_plugin_copied_into_a_watched_folder_is_loaded() {
    let dir = PluginDir::new();
    let host = dir.host();
    let mut lifecycle = Lifecycle::new(&host);
    let (_watcher, applied) = watch(&host);

    let file = dir.add_example("counter");

    let activated = lifecycle.wait_for_next("plugin:activated", "counter");
    assert_eq!(activated["version"], "0.1.0");
    assert_eq!(
        next_change(&applied),
        (file.clone(), Applied::loaded("counter"))
    );
    let counter_info = info(&host, "counter");
    assert_eq!(counter_info.state, PluginState::Active);
    assert_eq!(counter_info.file, Some(file));
    assert_eq!(counter(&host, "increment"), (1, 1));
}

/// Loads counter 0.1.0, starts a watcher, lets `replace` put counter 0.2.0 in its file, and
/// checks the watcher reloads it.
fn assert_replacing_the_file_reloads(replace: impl FnOnce(&Path, &Path)) {
    let dir = PluginDir::new();
    let file = dir.add_example("counter");
    let host = dir.load_ok();
    let mut lifecycle = Lifecycle::new(&host);
    let (_watcher, applied) = watch(&host);
    assert_eq!(counter(&host, "increment"), (1, 1));
    let v2 = fixture("counter-v2");

    replace(&v2, &file);

    let reloaded = lifecycle.wait_for_next("plugin:reloaded", "counter");
    assert_eq!(reloaded["old_version"], "0.1.0");
    assert_eq!(reloaded["new_version"], "0.2.0");
    assert_eq!(
        next_change(&applied),
        (file.clone(), Applied::reloaded("counter", "0.1.0", "0.2.0"))
    );
    let counter_info = info(&host, "counter");
    assert_eq!(counter_info.version.as_deref(), Some("0.2.0"));
    assert_eq!(counter_info.state, PluginState::Active);
    assert_eq!(counter_info.file, Some(file));
    assert_eq!(counter_info.fingerprint, Some(fingerprint_of(&v2)));
    // The new version serves, with the old one's tally and the stored total.
    assert_eq!(counter(&host, "get"), (1, 1));
    assert_eq!(counter(&host, "increment"), (2, 2));
    assert!(lifecycle.plugins("plugin:error").is_empty());
}

#[test]
fn overwriting_a_plugin_file_in_place_reloads_the_new_version() {
    assert_replacing_the_file_reloads(overwrite_in_place);
}

#[test]
fn renaming_a_new_build_over_a_plugin_file_reloads_the_new_version() {
    assert_replacing_the_file_reloads(replace_by_rename);
}

#[test]
fn removing_a_file_deactivates_its_plugin_and_adding_it_back_loads_it_again() {
    let dir = PluginDir::new();
    let file = dir.add_example("counter");
    let host = dir.load_ok();
    let mut lifecycle = Lifecycle::new(&host);
    let (_watcher, applied) = watch(&host);
    assert_eq!(counter(&host, "increment"), (1, 1));

    fs::remove_file(&file).expect("remove the plugin file");

    lifecycle.wait_for_next("plugin:deactivated", "counter");
    assert_eq!(
        next_change(&applied),
        (file.clone(), Applied::Removed("counter".into()))
    );
    assert_eq!(info(&host, "counter").state, PluginState::Deactivated);
    assert_command_gone(&host, "counter:get");
    assert_command_gone(&host, "counter:increment");

    dir.add_example("counter");

    let activated = lifecycle.wait_for_next("plugin:activated", "counter");
    assert_eq!(activated["version"], "0.1.0");
    assert_eq!(next_change(&applied), (file, Applied::loaded("counter")));
    assert_eq!(info(&host, "counter").state, PluginState::Active);
    // The stored total outlives the plugin; the session tally of a deactivated plugin does not.
    assert_eq!(counter(&host, "get").0, 1);
    assert_eq!(counter(&host, "increment").0, 2);
}

#[test]
fn removing_a_dependency_deactivates_its_dependent_first() {
    let dir = PluginDir::new();
    let greeter = dir.add_example("greeter");
    dir.add_example("welcome");
    let host = dir.load_ok();
    let mut lifecycle = Lifecycle::new(&host);
    let (_watcher, applied) = watch(&host);
    assert_eq!(welcome_ada(&host), "Hello, Ada! Welcome aboard.");

    fs::remove_file(&greeter).expect("remove greeter's file");

    lifecycle.wait_for_next("plugin:deactivated", "greeter");
    assert_eq!(
        lifecycle.plugins("plugin:deactivated"),
        ["welcome", "greeter"]
    );
    assert_eq!(
        next_change(&applied),
        (greeter, Applied::Removed("greeter".into()))
    );
    for plugin in ["welcome", "greeter"] {
        assert_eq!(
            info(&host, plugin).state,
            PluginState::Deactivated,
            "{plugin}"
        );
    }
    assert_command_gone(&host, "welcome:welcome");
    assert_command_gone(&host, "greeter:greet");
}

/// The prefixes are cut by the file's ELF program headers.
#[cfg(target_os = "linux")]
#[test]
fn a_file_still_being_copied_is_not_loaded_until_it_is_complete() {
    let dir = PluginDir::with_examples(&["greeter"]);
    let host = dir.load_ok();
    let mut lifecycle = Lifecycle::new(&host);
    let (_watcher, applied) = watch(&host);
    let source = example_lib("counter");
    let bytes = fs::read(&source).expect("read the counter library");
    // A prefix that ends inside a loadable segment: the code is not all there yet.
    let cut = truncated_inside_pt_load(&bytes).len();
    let file = dir.file(&library_file_name("counter"));
    let mut copy = fs::File::create(&file).expect("create the plugin file");
    set_mode(&file, 0o755);

    // The copy makes progress well within each debounce interval, for several intervals...
    let pieces = 12;
    for piece in bytes[..cut].chunks(cut.div_ceil(pieces)) {
        copy.write_all(piece).expect("write");
        copy.flush().expect("flush");
        thread::sleep(DEBOUNCE / 4);
    }
    // ...then stalls: the watcher sees a settled file and tries it; the preflight refuses it.
    let stalled = changes_until(&applied, |_| true);
    // ...and completes.
    copy.write_all(&bytes[cut..]).expect("write the rest");
    drop(copy);

    lifecycle.wait_for_next("plugin:activated", "counter");
    let completed = changes_until(&applied, Applied::activated_any);
    let (last, before) = completed.split_last().expect("at least the load");
    assert_eq!(*last, (file.clone(), Applied::loaded("counter")));
    // Whatever the watcher tried before the copy completed, it refused: nothing half-written
    // was loaded (a stalled copy is tried once it settles).
    for (path, change) in stalled.iter().chain(before) {
        assert_eq!(path, &file);
        match change {
            Applied::Loaded { activated, errors } => {
                assert!(activated.is_empty(), "{change:?}");
                assert!(
                    errors.len() == 1 && errors[0].contains("truncated"),
                    "{change:?}"
                );
            }
            other => panic!("a partial file was applied as {other:?}"),
        }
    }
    println!(
        "the watcher tried the partial file {} time(s) and refused it",
        stalled.len() + before.len()
    );
    assert_eq!(lifecycle.plugins("plugin:activated"), ["counter"]);
    assert_eq!(
        info(&host, "counter").fingerprint,
        Some(fingerprint_of(&source))
    );
    assert_eq!(counter(&host, "increment"), (1, 1));
    host.execute("greeter:greet", json(r#"{"name":"Ada"}"#))
        .expect("the host kept serving");
}

#[test]
fn a_copy_that_stalls_after_the_code_segments_is_not_loaded() {
    let dir = PluginDir::new();
    let host = dir.host();
    let mut lifecycle = Lifecycle::new(&host);
    let (_watcher, applied) = watch(&host);
    let source = example_lib("counter");
    let bytes = fs::read(&source).expect("read the counter library");
    // A debug library is mostly debug information after its loadable segments: its first half
    // holds all the code, but not the rest of the file (section headers included).
    let half = bytes.len() / 2;
    let file = dir.file(&library_file_name("counter"));
    let mut copy = fs::File::create(&file).expect("create the plugin file");
    set_mode(&file, 0o755);
    copy.write_all(&bytes[..half])
        .expect("write the first half");
    copy.flush().expect("flush");

    // The copy stalls for longer than the debounce interval: the watcher tries the file.
    let (path, tried) = next_change(&applied);
    assert_eq!(path, file);
    assert!(
        !tried.activated_any(),
        "the first half of {} (cut at byte {half} of {}) was loaded as a plugin: {tried:?}",
        source.display(),
        bytes.len()
    );

    copy.write_all(&bytes[half..]).expect("write the rest");
    drop(copy);
    lifecycle.wait_for_next("plugin:activated", "counter");
    assert_eq!(counter(&host, "increment"), (1, 1));
}

/// Whether a refused reload of the given file failed for the expected reason.
type ExpectedError = fn(&LoadError, &Path) -> bool;

#[test]
fn a_new_version_that_fails_leaves_the_old_one_serving() {
    let dir = PluginDir::new();
    let file = dir.add_example("counter");
    let host = dir.load_ok();
    let mut lifecycle = Lifecycle::new(&host);
    let fingerprint = info(&host, "counter").fingerprint;
    counter(&host, "increment");
    assert_eq!(counter(&host, "increment"), (2, 2));
    let v2 = fs::read(fixture("counter-v2")).expect("read counter 0.2.0");

    let cases: [(&str, Vec<u8>, ExpectedError); 4] = [
        (
            "a build whose activate fails",
            fs::read(fixture("counter-broken")).expect("read counter-broken"),
            |e, _| {
                matches!(e, LoadError::Activation { plugin, error }
                    if plugin == "counter" && error.message().contains(BROKEN_WHY))
            },
        ),
        (
            "a truncated build",
            // Cut inside a loadable segment where the ELF program headers say where that is;
            // elsewhere, in half (the headers then promise more than the file holds).
            if cfg!(target_os = "linux") {
                truncated_inside_pt_load(&v2)
            } else {
                v2[..v2.len() / 2].to_vec()
            },
            |e, file| {
                matches!(e, LoadError::BadLibrary { path, reason }
                    if path == file && reason.contains("truncated"))
            },
        ),
        (
            "a library that is not a plugin",
            fs::read(fixture("not-a-plugin")).expect("read not-a-plugin"),
            |e, file| matches!(e, LoadError::NotAPlugin { path, .. } if path == file),
        ),
        (
            "a text file",
            b"not a library\n".to_vec(),
            |e, file| matches!(e, LoadError::BadLibrary { path, .. } if path == file),
        ),
    ];
    for (what, bytes, expected) in cases {
        replace_with_bytes(&bytes, &file);

        let err = host
            .apply_file(&file)
            .err()
            .unwrap_or_else(|| panic!("{what} was accepted"));

        assert!(expected(&err, &file), "{what}: {err:?}");
        let error = lifecycle.wait_for_next("plugin:error", "counter");
        assert_eq!(error["version"], "0.1.0", "{what}");
        let reason = error["error"].as_str().unwrap_or_default();
        assert!(
            reason.contains("reload refused") && reason.contains(&err.to_string()),
            "{what}: {reason:?}"
        );
        let counter_info = info(&host, "counter");
        assert_eq!(counter_info.version.as_deref(), Some("0.1.0"), "{what}");
        assert_eq!(counter_info.state, PluginState::Active, "{what}");
        assert_eq!(counter_info.fingerprint, fingerprint, "{what}");
        assert_eq!(counter(&host, "get"), (2, 2), "{what}");
    }

    // A good build is still accepted after all that.
    replace_with_bytes(&v2, &file);
    assert_eq!(
        Applied::of(&host.apply_file(&file)),
        Applied::reloaded("counter", "0.1.0", "0.2.0")
    );
    assert_eq!(counter(&host, "increment"), (3, 3));
    assert!(lifecycle.plugins("plugin:deactivated").is_empty());
}

#[test]
fn a_reload_hands_the_session_tally_to_the_new_version() {
    let dir = PluginDir::new();
    let file = dir.add_example("counter");
    let host = dir.load_ok();
    for _ in 0..5 {
        counter(&host, "increment");
    }
    assert_eq!(counter(&host, "get"), (5, 5));

    replace_by_rename(&fixture("counter-v2"), &file);
    assert_eq!(
        Applied::of(&host.apply_file(&file)),
        Applied::reloaded("counter", "0.1.0", "0.2.0")
    );

    assert_eq!(info(&host, "counter").version.as_deref(), Some("0.2.0"));
    assert_eq!(counter(&host, "get"), (5, 5));
    assert_eq!(counter(&host, "increment"), (6, 6));

    // And back: a downgrade hands the state over too.
    replace_by_rename(&example_lib("counter"), &file);
    assert_eq!(
        Applied::of(&host.apply_file(&file)),
        Applied::reloaded("counter", "0.2.0", "0.1.0")
    );
    assert_eq!(counter(&host, "get"), (6, 6));
}

#[test]
fn an_upgrade_that_breaks_a_dependent_is_refused_and_a_compatible_one_is_accepted() {
    let dir = PluginDir::new();
    let greeter = dir.add_example("greeter");
    dir.add_example("welcome");
    let host = dir.load_ok();
    let mut lifecycle = Lifecycle::new(&host);

    replace_by_rename(&fixture("greeter-v2"), &greeter);
    let err = host
        .apply_file(&greeter)
        .expect_err("greeter 2.0.0 breaks welcome's ^0.1");

    match &err {
        LoadError::BlockedByDependent {
            plugin,
            old,
            new,
            dependent,
            requirement,
        } => assert_eq!(
            (
                plugin.as_str(),
                old.as_str(),
                new.as_str(),
                dependent.as_str(),
                requirement.as_str()
            ),
            ("greeter", "0.1.0", "2.0.0", "welcome", "^0.1")
        ),
        other => panic!("expected BlockedByDependent, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "cannot replace greeter 0.1.0 with 2.0.0: welcome requires greeter ^0.1"
    );
    let error = lifecycle.wait_for_next("plugin:error", "greeter");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("welcome requires greeter ^0.1")),
        "{error}"
    );
    assert_eq!(info(&host, "greeter").version.as_deref(), Some("0.1.0"));
    assert_eq!(info(&host, "welcome").state, PluginState::Active);
    assert_eq!(welcome_ada(&host), "Hello, Ada! Welcome aboard.");

    replace_by_rename(&fixture("greeter-v011"), &greeter);
    assert_eq!(
        Applied::of(&host.apply_file(&greeter)),
        Applied::reloaded("greeter", "0.1.0", "0.1.1")
    );
    assert_eq!(info(&host, "greeter").version.as_deref(), Some("0.1.1"));
    assert_eq!(info(&host, "welcome").state, PluginState::Active);
    assert_eq!(welcome_ada(&host), "Hello, Ada! Welcome aboard.");
    assert!(lifecycle.plugins("plugin:deactivated").is_empty());
}

/// Sets its flag when dropped, so threads waiting on it stop even if the test panics.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Emits `marker` and waits until audit-log has handled it; returns audit-log's count of
/// handled events then. Each plugin handles its events in order, so every event emitted before
/// the marker is counted.
fn audit_log_handled_through(host: &Host, marker: &str) -> u64 {
    host.emit(marker, json("{}")).expect("emit the marker");
    wait_until(&format!("audit-log handled {marker}"), || {
        let recent = host
            .execute("audit-log:recent", json(r#"{"limit":1000}"#))
            .expect("audit-log answers");
        to_json(&recent)["events"]
            .as_array()
            .is_some_and(|events| events.iter().any(|e| e["type"] == marker))
    });
    metrics(host, "audit-log").events_handled
}

#[test]
fn reloads_under_continuous_traffic_lose_and_fail_nothing() {
    const CALLERS: usize = 3;
    /// Each caller's minimum: 10,200 commands and as many events in all.
    const CALLS_EACH: usize = 3_400;
    const RELOADS: usize = 10;
    /// Calls that go through between two reloads, at least.
    const CALLS_BETWEEN: u64 = 900;

    let dir = PluginDir::new();
    let file = dir.add_example("counter");
    dir.add_example("audit-log");
    // Queues far larger than the traffic, so the subscriber that is not reloaded never drops.
    let host = dir.load_ok_with(|config| config.event_queue = 1 << 17);
    let v1 = example_lib("counter");
    let v2 = fixture("counter-v2");
    let bus = host.subscribe("*", 1 << 17);
    let before = audit_log_handled_through(&host, "traffic:start");

    let done = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let (callers, reloads) = thread::scope(|s| {
        let stop = SetOnDrop(&done);
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                s.spawn(|| {
                    let (mut values, mut failures, mut emitted) = (Vec::new(), Vec::new(), 0_u64);
                    while values.len() < CALLS_EACH || !done.load(Ordering::SeqCst) {
                        match host.execute("counter:increment", json("{}")) {
                            Ok(reply) => {
                                values.push(to_json(&reply)["value"].as_u64().unwrap_or(0));
                                calls.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => failures.push(format!("counter:increment: {e}")),
                        }
                        match host.emit("traffic:tick", json("{}")) {
                            Ok(_) => emitted += 1,
                            Err(e) => failures.push(format!("emit traffic:tick: {e}")),
                        }
                        if failures.len() > 100 {
                            break;
                        }
                    }
                    (values, failures, emitted)
                })
            })
            .collect();
        let mut reloads = Vec::new();
        for i in 0..RELOADS {
            let seen = calls.load(Ordering::SeqCst);
            wait_until("more calls went through", || {
                calls.load(Ordering::SeqCst) >= seen + CALLS_BETWEEN
            });
            replace_by_rename(if i % 2 == 0 { &v2 } else { &v1 }, &file);
            reloads.push(Applied::of(&host.apply_file(&file)));
        }
        drop(stop);
        let callers: Vec<_> = callers
            .into_iter()
            .map(|c| c.join().expect("a caller thread panicked"))
            .collect();
        (callers, reloads)
    });
    let after = audit_log_handled_through(&host, "traffic:end");

    // Every reload went through, alternating versions.
    for (i, reload) in reloads.iter().enumerate() {
        let (old, new) = if i % 2 == 0 {
            ("0.1.0", "0.2.0")
        } else {
            ("0.2.0", "0.1.0")
        };
        assert_eq!(
            *reload,
            Applied::reloaded("counter", old, new),
            "reload {i}"
        );
    }
    // Zero failed calls.
    let failures: Vec<&String> = callers.iter().flat_map(|(_, f, _)| f).collect();
    assert!(
        failures.is_empty(),
        "{} failures: {failures:?}",
        failures.len()
    );
    // Zero lost or repeated increments: the answers are exactly 1..=n, and the total and the
    // tally (handed over at every reload) are n.
    let mut values: Vec<u64> = callers
        .iter()
        .flat_map(|(v, _, _)| v.iter().copied())
        .collect();
    let n = values.len() as u64;
    assert!(n >= 10_000, "{n} commands");
    values.sort_unstable();
    assert!(
        values.iter().copied().eq(1..=n),
        "increments lost or repeated"
    );
    assert_eq!(counter(&host, "get"), (n, n));
    let counter_metrics = metrics(&host, "counter");
    assert_eq!(
        (
            counter_metrics.errors,
            counter_metrics.timeouts,
            counter_metrics.queue_full
        ),
        (0, 0, 0)
    );
    // Zero lost events: the host saw every tick, and audit-log (not reloaded) handled every
    // event on the bus between the markers, reload announcements included.
    let emitted: u64 = callers.iter().map(|(_, _, e)| e).sum();
    assert!(emitted >= 10_000, "{emitted} events");
    let on_bus: Vec<String> = bus
        .receiver()
        .try_iter()
        .map(|e| e.event_type.as_str().to_owned())
        .skip_while(|t| t != "traffic:start")
        .skip(1)
        .collect();
    assert_eq!(on_bus.last().map(String::as_str), Some("traffic:end"));
    let ticks = on_bus.iter().filter(|t| *t == "traffic:tick").count() as u64;
    let reloaded = on_bus.iter().filter(|t| *t == "plugin:reloaded").count();
    assert_eq!(ticks, emitted);
    assert_eq!(reloaded, RELOADS);
    let audit = metrics(&host, "audit-log");
    assert_eq!(after - before, on_bus.len() as u64);
    assert_eq!((audit.events_dropped, audit.errors), (0, 0));
    println!(
        "{n} commands and {emitted} events during {RELOADS} reloads; audit-log handled {} events",
        after - before
    );
}

#[test]
fn a_hundred_reloads_of_one_plugin_keep_the_host_healthy() {
    // Isolated, each reload starts two processes (the manifest reader and the new worker):
    // twenty show as well that every replaced one is gone.
    let reloads: usize = if tests::isolates_everything() {
        20
    } else {
        100
    };
    let dir = PluginDir::new();
    let file = dir.add_example("counter");
    let host = dir.load_ok();
    let builds = [
        fs::read(fixture("counter-v2")).expect("read counter 0.2.0"),
        fs::read(example_lib("counter")).expect("read counter 0.1.0"),
    ];

    for i in 0..reloads {
        counter(&host, "increment");
        replace_with_bytes(&builds[i % 2], &file);
        let expected = if i % 2 == 0 {
            Applied::reloaded("counter", "0.1.0", "0.2.0")
        } else {
            Applied::reloaded("counter", "0.2.0", "0.1.0")
        };
        assert_eq!(Applied::of(&host.apply_file(&file)), expected, "reload {i}");
    }

    let n = reloads as u64;
    assert_eq!(counter(&host, "get"), (n, n));
    let counters: Vec<_> = host
        .plugins()
        .into_iter()
        .filter(|p| p.name == "counter")
        .collect();
    assert_eq!(counters.len(), 1, "{counters:?}");
    assert_eq!(counters[0].state, PluginState::Active);
    assert_eq!(counters[0].version.as_deref(), Some("0.1.0"));
    let commands = host.commands();
    assert!(
        commands.iter().any(|c| c == "counter:increment"),
        "{commands:?}"
    );
    let (mapped, retired) = host.mapped_images();
    println!(
        "after {reloads} reloads: {mapped} plugin libraries mapped in this test process, {retired} retired (never unmapped)"
    );
    if tests::isolates_everything() {
        // Every build ran in a worker process of its own, and each replaced one is gone.
        assert_eq!(
            host.worker_processes().len(),
            1,
            "{:?}",
            host.worker_processes()
        );
    } else {
        assert!(retired >= n, "{retired} retired images");
    }
}

#[test]
fn plugins_copied_into_a_watched_folder_together_all_activate_in_any_order() {
    // welcome depends on greeter; users stands alone.
    let orders: [[&str; 3]; 6] = [
        ["greeter", "welcome", "users"],
        ["greeter", "users", "welcome"],
        ["welcome", "greeter", "users"],
        ["welcome", "users", "greeter"],
        ["users", "greeter", "welcome"],
        ["users", "welcome", "greeter"],
    ];
    for order in orders {
        let dir = PluginDir::new();
        let host = dir.host();
        let (_watcher, _applied) = watch(&host);
        for name in order {
            dir.add_example(name);
        }
        wait_until(&format!("{order:?} all active"), || {
            ["greeter", "welcome", "users"].iter().all(|name| {
                host.plugin(name)
                    .is_some_and(|p| p.state == PluginState::Active)
            })
        });
    }
}

#[test]
fn dependents_deactivated_with_a_removed_plugin_come_back_with_it() {
    let dir = PluginDir::new();
    let greeter = dir.add_example("greeter");
    dir.add_example("welcome");
    let host = dir.load_ok();
    let saved = fs::read(&greeter).expect("read");
    fs::remove_file(&greeter).expect("remove");
    host.apply_file(&greeter).expect("removed");
    assert_eq!(info(&host, "welcome").state, PluginState::Deactivated);
    fs::write(&greeter, saved).expect("write back");
    set_mode(&greeter, 0o755);
    host.apply_file(&greeter).expect("loaded");
    assert_eq!(info(&host, "greeter").state, PluginState::Active);
    assert_eq!(info(&host, "welcome").state, PluginState::Active);
}

/// A dependent whose `deactivate` fails (its last error is then that failure) still comes back
/// with the dependency it was stopped for.
#[test]
fn a_dependent_whose_deactivate_failed_still_comes_back_with_its_dependency() {
    let dir = PluginDir::new();
    let greeter = dir.add_example("greeter");
    dir.add_fixture("grudging");
    let host = dir.load_ok();
    let saved = fs::read(&greeter).expect("read");
    fs::remove_file(&greeter).expect("remove");
    host.apply_file(&greeter).expect("removed");
    let stopped = info(&host, "grudging");
    assert_eq!(stopped.state, PluginState::Deactivated);
    let why = stopped.error.unwrap_or_default();
    assert!(why.contains("does not stop cleanly"), "{why}");
    fs::write(&greeter, saved).expect("write back");
    set_mode(&greeter, 0o755);
    host.apply_file(&greeter).expect("loaded");
    assert_eq!(info(&host, "grudging").state, PluginState::Active);
}

/// `path` relative to the current folder (through `..` when it is not inside it).
fn relative_to_current_dir(path: &Path) -> PathBuf {
    let here = std::env::current_dir()
        .and_then(fs::canonicalize)
        .expect("the current folder");
    let there = fs::canonicalize(path).expect("the folder");
    let common = here
        .components()
        .zip(there.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut relative = PathBuf::new();
    for _ in here.components().skip(common) {
        relative.push("..");
    }
    for part in there.components().skip(common) {
        relative.push(part);
    }
    relative
}

/// A plugins folder configured as a relative path (`--plugins plugins`) is watched like any
/// other: the watcher compares event paths with the canonical folder (FSEvents on macOS
/// reports canonical paths only), and a changed file is reloaded under the name the host knows.
#[test]
fn a_watched_folder_given_as_a_relative_path_reloads_a_changed_file() {
    // The current folder belongs to every test thread of this process: it is not changed. The
    // plugins folder is a private folder under the target folder, named relative to it.
    let parent = tests::target_dir().join("relative-watch");
    fs::create_dir_all(&parent).expect("create the parent folder");
    let plugins = tempfile::Builder::new()
        .prefix("plugins-")
        .tempdir_in(&parent)
        .expect("a private plugins folder");
    let relative = relative_to_current_dir(plugins.path());
    assert!(relative.is_relative(), "{}", relative.display());
    let file = relative.join(library_file_name("counter"));
    fs::copy(example_lib("counter"), &file).expect("copy counter in");
    set_mode(&file, 0o755);
    let data = tests::temp_dir("relative-watch-data-");
    let host = Host::builder()
        .plugins_dir(&relative)
        .data_dir(data.path())
        .in_memory_storage()
        .build()
        .expect("a host");
    let report = host.load_dir().expect("the relative folder is listed");
    assert_eq!(report.activated(), ["counter"], "{report:?}");
    let mut lifecycle = Lifecycle::new(&host);
    let (_watcher, applied) = watch(&host);
    assert_eq!(counter(&host, "increment"), (1, 1));

    replace_by_rename(&fixture("counter-v2"), &file);

    let reloaded = lifecycle.wait_for_next("plugin:reloaded", "counter");
    assert_eq!(reloaded["new_version"], "0.2.0");
    assert_eq!(
        next_change(&applied),
        (file.clone(), Applied::reloaded("counter", "0.1.0", "0.2.0"))
    );
    let counter_info = info(&host, "counter");
    assert_eq!(counter_info.version.as_deref(), Some("0.2.0"));
    assert_eq!(counter_info.file, Some(file));
    assert_eq!(counter(&host, "increment"), (2, 2));
}
