//! Storage through real plugins: scoped namespaces against escape attempts, key validation,
//! shared storage and its capabilities, scans and atomic batches behind `database`, quotas, and
//! durability across host restarts (in process and through the demo app's command line).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use loader::{Host, Namespace};
use plugin_api::{ErrorKind, PluginError};
use serde_json::json as value;
use tests::{assert_permission_denied, cargo_program, json, json_payload, to_json, PluginDir};

/// Writes `key` through `<plugin>:<command>` (`put`: its own storage, `shared-put`: shared).
fn write(
    host: &Host,
    plugin: &str,
    command: &str,
    key: &str,
    value: &str,
) -> Result<(), PluginError> {
    host.execute(
        &format!("{plugin}:{command}"),
        json_payload(&value!({"key": key, "value": value})),
    )
    .map(|_| ())
}

/// Reads `key` through `<plugin>:<command>` (`get`: its own storage, `shared-get`: shared).
fn read(
    host: &Host,
    plugin: &str,
    command: &str,
    key: &str,
) -> Result<Option<String>, PluginError> {
    host.execute(
        &format!("{plugin}:{command}"),
        json_payload(&value!({ "key": key })),
    )
    .map(|answer| serde_json::from_value(to_json(&answer)).expect("a string or null"))
}

fn put(host: &Host, plugin: &str, key: &str, value: &str) -> Result<(), PluginError> {
    write(host, plugin, "put", key, value)
}

fn get(host: &Host, plugin: &str, key: &str) -> Result<Option<String>, PluginError> {
    read(host, plugin, "get", key)
}

fn shared_put(host: &Host, plugin: &str, key: &str, value: &str) -> Result<(), PluginError> {
    write(host, plugin, "shared-put", key, value)
}

fn shared_get(host: &Host, plugin: &str, key: &str) -> Result<Option<String>, PluginError> {
    read(host, plugin, "shared-get", key)
}

fn scan(host: &Host, plugin: &str, prefix: &str) -> Result<Vec<(String, String)>, PluginError> {
    host.execute(
        &format!("{plugin}:scan"),
        json_payload(&value!({ "prefix": prefix })),
    )
    .map(|answer| serde_json::from_value(to_json(&answer)).expect("a list of pairs"))
}

/// Runs `<plugin>:batch`: `Some` writes the key, `None` deletes it.
fn batch(host: &Host, plugin: &str, ops: &[(&str, Option<&str>)]) -> Result<(), PluginError> {
    let ops: Vec<serde_json::Value> = ops
        .iter()
        .map(|(key, value)| value!({"key": key, "value": value}))
        .collect();
    host.execute(
        &format!("{plugin}:batch"),
        json_payload(&value!({ "ops": ops })),
    )
    .map(|_| ())
}

/// Every key in `plugin`'s namespace, read by the host from the store itself.
fn stored_keys(host: &Host, plugin: &str) -> Vec<String> {
    host.store()
        .scan(&Namespace::Plugin(plugin.to_owned()), "", "", 0)
        .expect("the host scans the store")
        .into_iter()
        .map(|(key, _)| key)
        .collect()
}

/// A plugins folder with both builds of the storage fixture.
fn store_dir() -> PluginDir {
    PluginDir::with_fixtures(&["store-a", "store-b"])
}

// ---- scoped storage -----------------------------------------------------------------------

#[test]
fn scoped_keys_never_reach_another_plugins_storage() {
    let dir = store_dir();
    let host = dir.load_ok();
    let victim_keys = ["x", "k", "other/x", "store-a:x", "shared"];
    for key in victim_keys {
        put(&host, "store-b", key, "b's secret").expect("store-b writes its own storage");
    }
    shared_put(&host, "store-b", "x", "shared secret").expect("store-b may write shared");

    let attempts = [
        "..",
        "../store-b/x",
        "../store-b",
        "../other/x",
        "a/b",
        "/store-b/x",
        "store-b/x",
        "a/../../store-b/x",
        "plugin:store-b:x",
        "plugin:other:x",
        "plugin:store-b",
        "store-b:x",
        ":x",
        "shared:x",
        "../shared/x",
        "%2e%2e/store-b/x",
    ];
    for key in attempts {
        assert_eq!(
            get(&host, "store-a", key).expect("a valid key"),
            None,
            "{key}"
        );
        put(&host, "store-a", key, "a's").expect("a valid key");
        assert_eq!(
            get(&host, "store-a", key).expect("a valid key").as_deref(),
            Some("a's"),
            "{key}"
        );
    }

    for key in victim_keys {
        assert_eq!(
            get(&host, "store-b", key).expect("read").as_deref(),
            Some("b's secret"),
            "{key}"
        );
    }
    for key in attempts {
        assert_eq!(get(&host, "store-b", key).expect("read"), None, "{key}");
    }
    assert_eq!(
        shared_get(&host, "store-b", "x").expect("read").as_deref(),
        Some("shared secret")
    );
    let mut expected: Vec<String> = victim_keys.iter().map(|k| (*k).to_owned()).collect();
    expected.sort();
    assert_eq!(stored_keys(&host, "store-b"), expected);
    assert_eq!(stored_keys(&host, "store-a").len(), attempts.len());
}

#[test]
fn invalid_keys_are_refused_naming_the_key_and_nothing_is_written() {
    let dir = store_dir();
    let host = dir.load_ok();
    put(&host, "store-b", "x", "b's").expect("write");
    let huge = "x".repeat(10 * 1024);
    let cases = [
        ("", "empty"),
        ("\0", "contains a control character"),
        ("a\0b", "contains a control character"),
        ("\0plugin:store-b:x", "contains a control character"),
        ("line\nbreak", "contains a control character"),
        (huge.as_str(), "longer than 512 bytes"),
    ];
    for (key, reason) in cases {
        // The error shows the key, cut to 64 characters and an ellipsis when longer.
        let mut shown: String = key.chars().take(64).collect();
        if shown.len() < key.len() {
            shown.push('…');
        }
        let named = format!("invalid storage key {shown:?}");
        for result in [
            put(&host, "store-a", key, "a's").map(|()| None),
            get(&host, "store-a", key),
            shared_put(&host, "store-a", key, "a's").map(|()| None),
        ] {
            let err = result.expect_err("an invalid key");
            assert_eq!(err.kind, ErrorKind::InvalidInput, "{key:?}: {err}");
            assert!(err.message().contains(&named), "{key:?}: {err}");
            assert!(err.message().contains(reason), "{key:?}: {err}");
            assert!(err.message().len() < 300, "{err}");
        }
    }
    assert!(stored_keys(&host, "store-a").is_empty());
    assert_eq!(stored_keys(&host, "store-b"), ["x"]);
    let shared = host
        .store()
        .scan(&Namespace::Shared, "", "", 0)
        .expect("scan");
    assert!(shared.is_empty(), "{shared:?}");
}

// ---- shared storage -----------------------------------------------------------------------

#[test]
fn shared_storage_without_the_capability_is_denied_naming_it() {
    let dir = PluginDir::with_fixtures(&["overreach"]);
    let host = dir.load_ok();
    assert_permission_denied(
        host.execute("overreach:shared-read", json("null")),
        "lacks capability storage:shared:read",
    );
    assert_permission_denied(
        host.execute("overreach:shared-write", json("null")),
        "lacks capability storage:shared:write",
    );
    let shared = host
        .store()
        .scan(&Namespace::Shared, "", "", 0)
        .expect("scan");
    assert!(shared.is_empty(), "{shared:?}");
}

#[test]
fn shared_storage_with_only_read_granted_refuses_writes() {
    let dir = store_dir();
    let (host, report) = dir.load_with_config(
        r#"
        [plugins.store-b]
        revoke = ["storage:shared:write"]
        "#,
    );
    assert!(report.is_ok(), "{report:?}");
    shared_put(&host, "store-a", "note", "from a").expect("store-a may write");
    assert_permission_denied(
        shared_put(&host, "store-b", "note", "from b"),
        "lacks capability storage:shared:write",
    );
    assert_eq!(
        shared_get(&host, "store-b", "note").expect("read is granted"),
        Some("from a".to_owned())
    );
}

#[test]
fn shared_storage_is_shared_between_plugins_with_the_capability() {
    let dir = store_dir();
    let host = dir.load_ok();
    shared_put(&host, "store-a", "greeting", "hello from a").expect("write shared");
    assert_eq!(
        shared_get(&host, "store-b", "greeting").expect("read shared"),
        Some("hello from a".to_owned())
    );
    shared_put(&host, "store-b", "greeting", "hello from b").expect("overwrite shared");
    assert_eq!(
        shared_get(&host, "store-a", "greeting").expect("read shared"),
        Some("hello from b".to_owned())
    );
    // The shared namespace is not either plugin's own.
    assert_eq!(get(&host, "store-a", "greeting").expect("read"), None);
    assert_eq!(get(&host, "store-b", "greeting").expect("read"), None);
}

// ---- database -----------------------------------------------------------------------------

#[test]
fn scans_and_batches_need_the_database_capability() {
    let dir = store_dir();
    let (host, report) = dir.load_with_config(
        r#"
        [plugins.store-a]
        revoke = ["database"]
        "#,
    );
    assert!(report.is_ok(), "{report:?}");
    put(&host, "store-a", "k", "v").expect("own storage needs no capability");
    assert_permission_denied(scan(&host, "store-a", ""), "lacks capability database");
    assert_permission_denied(
        batch(&host, "store-a", &[("n", Some("1"))]),
        "lacks capability database",
    );
    assert_eq!(stored_keys(&host, "store-a"), ["k"]);
    // store-b keeps its grant.
    batch(&host, "store-b", &[("n", Some("1"))]).expect("store-b may batch");
    assert_eq!(
        scan(&host, "store-b", "").expect("store-b may scan"),
        [("n".to_owned(), "1".to_owned())]
    );
}

#[test]
fn a_prefix_scan_lists_the_plugins_own_matching_keys_in_order() {
    let dir = store_dir();
    let host = dir.load_ok();
    batch(
        &host,
        "store-a",
        &[
            ("user/2", Some("Grace")),
            ("user/1", Some("Ada")),
            ("user0", Some("not a user")),
            ("users", Some("not a user either")),
            ("a", Some("first")),
        ],
    )
    .expect("batch");
    put(&host, "store-b", "user/9", "b's user").expect("write");

    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    assert_eq!(
        scan(&host, "store-a", "user/").expect("scan"),
        pairs(&[("user/1", "Ada"), ("user/2", "Grace")])
    );
    assert_eq!(
        scan(&host, "store-a", "").expect("scan").len(),
        5,
        "only store-a's own keys"
    );
    assert_eq!(
        scan(&host, "store-b", "user").expect("scan"),
        pairs(&[("user/9", "b's user")])
    );
}

#[test]
fn a_batch_applies_all_its_writes_and_deletes_or_none() {
    let dir = store_dir();
    let host = dir.load_ok();
    batch(
        &host,
        "store-a",
        &[("keep", Some("1")), ("drop", Some("2"))],
    )
    .expect("batch");
    let before = scan(&host, "store-a", "").expect("scan");

    let err = batch(
        &host,
        "store-a",
        &[("new", Some("3")), ("drop", None), ("bad\0key", Some("4"))],
    )
    .expect_err("one key is invalid");
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains(r#""bad\0key""#), "{err}");
    assert_eq!(scan(&host, "store-a", "").expect("scan"), before);

    batch(&host, "store-a", &[("new", Some("3")), ("drop", None)]).expect("a valid batch");
    assert_eq!(
        scan(&host, "store-a", "").expect("scan"),
        [
            ("keep".to_owned(), "1".to_owned()),
            ("new".to_owned(), "3".to_owned())
        ]
    );
}

// ---- quota --------------------------------------------------------------------------------

#[test]
fn a_write_over_the_quota_fails_and_writes_nothing() {
    let dir = store_dir();
    let host = dir.load_ok_with(|config| config.storage_quota_bytes = 64);
    put(&host, "store-a", "k", "small").expect("fits");
    let big = "y".repeat(100);

    let err = put(&host, "store-a", "k", &big).expect_err("over the quota");
    assert_eq!(err.kind, ErrorKind::QuotaExceeded, "{err}");
    assert!(err.message().contains("plugin:store-a"), "{err}");
    assert!(err.message().contains("nothing written"), "{err}");
    assert_eq!(
        get(&host, "store-a", "k").expect("read").as_deref(),
        Some("small"),
        "the value is unchanged"
    );

    let err = put(&host, "store-a", "big", &big).expect_err("over the quota");
    assert_eq!(err.kind, ErrorKind::QuotaExceeded, "{err}");
    assert_eq!(get(&host, "store-a", "big").expect("read"), None);

    let err = batch(&host, "store-a", &[("k", None), ("b1", Some(&big))])
        .expect_err("the batch's net growth is over the quota");
    assert_eq!(err.kind, ErrorKind::QuotaExceeded, "{err}");
    assert_eq!(stored_keys(&host, "store-a"), ["k"]);

    // Each plugin has its own quota.
    put(&host, "store-b", "k", "small").expect("store-b's quota is its own");
}

// ---- durability ---------------------------------------------------------------------------

/// `counter:increment` once in a fresh host on durable storage in `data`; the host is dropped
/// before returning.
fn increment_in_new_host(plugins: &Path, data: &Path) -> serde_json::Value {
    let host = Host::builder()
        .plugins_dir(plugins)
        .data_dir(data)
        .build()
        .expect("a host on durable storage");
    let report = host.load_dir().expect("list the plugins folder");
    assert!(report.is_ok(), "{report:?}");
    let answer = host
        .execute("counter:increment", json("{}"))
        .expect("increment");
    to_json(&answer)
}

#[test]
fn a_data_folder_that_cannot_be_made_fails_the_build_naming_it() {
    let parent = tempfile::tempdir().expect("temp folder");
    let file = parent.path().join("not-a-folder");
    std::fs::write(&file, b"a file").expect("write");
    let data = file.join("data");
    let error = Host::builder()
        .data_dir(&data)
        .build()
        .expect_err("a data folder under a file cannot be made");
    match &error {
        loader::BuildError::DataDir { path, .. } => assert_eq!(path, &data),
        other => panic!("expected the data folder's error, got {other:?}"),
    }
    assert!(
        error.to_string().contains(&data.display().to_string()),
        "{error}"
    );
}

#[test]
fn storage_survives_a_host_restart() {
    let dir = PluginDir::with_examples(&["counter"]);
    let data = tempfile::tempdir().expect("data folder");
    let first = increment_in_new_host(dir.path(), data.path());
    assert_eq!(first["value"], 1, "{first}");
    assert!(data.path().join("storage.redb").is_file());
    let second = increment_in_new_host(dir.path(), data.path());
    assert_eq!(second["value"], 2, "{second}");
    // The in-memory tally starts over with each host; the stored total does not.
    assert_eq!(second["session"], 1, "{second}");
}

/// The demo app's executable: the one cargo built beside the test binaries, or else one built
/// now. It is built into a target folder of its own, because the running `cargo test` holds the
/// lock on the main one.
fn demo_app() -> PathBuf {
    let file = format!("demo-app{}", std::env::consts::EXE_SUFFIX);
    let exe = std::env::current_exe().expect("the path of the running test binary");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary is in <target>/<profile>/deps");
    let built = profile_dir.join(&file);
    if built.is_file() {
        return built;
    }
    let target = tests::target_dir().join("demo-app");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let output = Command::new(cargo_program())
        .args(["build", "-p", "demo-app", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "cargo build -p demo-app failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = target.join("debug").join(&file);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

#[test]
fn the_demo_app_counter_survives_a_process_restart() {
    let dir = PluginDir::with_examples(&["counter"]);
    let data = tempfile::tempdir().expect("data folder");
    let demo = demo_app();
    for expected in [1, 2] {
        let output = Command::new(&demo)
            .arg("--plugins")
            .arg(dir.path())
            .arg("--data")
            .arg(data.path())
            .args(["call", "counter:increment"])
            .output()
            .expect("run the demo app");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}: {}\n{stdout}{}",
            demo.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let answer: serde_json::Value =
            serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        assert_eq!(answer["value"], expected, "{answer}");
    }
}
