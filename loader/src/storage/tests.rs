//! Unit tests of the store: keys, quotas, scans, batches, persistence.

use super::*;
use proptest::prelude::*;

fn json(text: &str) -> Payload {
    Payload::from_json_str(text).unwrap()
}

fn plugin(name: &str) -> Namespace {
    Namespace::Plugin(name.to_owned())
}

fn size_of(key: &str, value: &Payload) -> u64 {
    (key.len() + 1 + value.bytes.len()) as u64
}

fn assert_round_trip(store: &Store) {
    let ns = plugin("a");
    let values = [
        Payload::empty(),
        Payload::encode(&("x", 7u32)).unwrap(),
        json(r#"{"k":[1,2,3]}"#),
    ];
    for (i, value) in values.iter().enumerate() {
        let key = format!("k{i}");
        store.set(&ns, &key, value).unwrap();
        assert_eq!(store.get(&ns, &key).unwrap().as_ref(), Some(value));
    }
    assert_eq!(store.get(&ns, "missing").unwrap(), None);
    assert!(store.delete(&ns, "k1").unwrap());
    assert!(!store.delete(&ns, "k1").unwrap());
    assert_eq!(store.get(&ns, "k1").unwrap(), None);
}

#[test]
fn namespace_display() {
    assert_eq!(plugin("greeter").to_string(), "plugin:greeter");
    assert_eq!(Namespace::Shared.to_string(), "shared");
}

#[test]
fn round_trip_in_memory() {
    assert_round_trip(&Store::in_memory(1 << 20).unwrap());
}

#[test]
fn round_trip_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    assert_round_trip(&Store::open(&dir.path().join("store.redb"), 1 << 20).unwrap());
}

#[test]
fn open_creates_parent_folders() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/store.redb");
    Store::open(&path, 100).unwrap();
    assert!(path.is_file());
}

#[test]
fn open_refuses_a_file_that_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.redb");
    std::fs::write(&path, vec![0xAB; 8192]).unwrap();
    match Store::open(&path, 100) {
        Err(StorageError::Backend { path: shown, .. }) => {
            assert_eq!(shown, path.display().to_string());
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[test]
fn durable_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let value = json(r#""kept""#);
    {
        let store = Store::open(&path, 1000).unwrap();
        store.set(&plugin("a"), "k", &value).unwrap();
        store.set(&Namespace::Shared, "s", &value).unwrap();
    }
    let store = Store::open(&path, 1000).unwrap();
    assert_eq!(store.get(&plugin("a"), "k").unwrap(), Some(value.clone()));
    assert_eq!(
        store.get(&Namespace::Shared, "s").unwrap(),
        Some(value.clone())
    );
    // The usage cache starts empty after a restart and must be rebuilt from disk.
    assert_eq!(store.usage(&plugin("a")).unwrap(), size_of("k", &value));
}

#[test]
fn invalid_keys_are_refused_with_reasons() {
    let store = Store::in_memory(1 << 20).unwrap();
    let ns = plugin("a");
    let huge = "x".repeat(MAX_KEY_LEN + 1);
    let cases = [
        ("", "empty"),
        ("\0", "contains a control character"),
        ("a\0b", "contains a control character"),
        ("line\nbreak", "contains a control character"),
        ("\u{1b}[31m", "contains a control character"),
        ("\u{7f}", "contains a control character"),
        (huge.as_str(), "longer than 512 bytes"),
    ];
    for (key, expected) in cases {
        for result in [
            store.set(&ns, key, &Payload::empty()).map(|_| ()),
            store.get(&ns, key).map(|_| ()),
            store.delete(&ns, key).map(|_| ()),
        ] {
            match result {
                Err(StorageError::InvalidKey { reason, .. }) => assert_eq!(reason, expected),
                other => panic!("key {key:?}: expected InvalidKey, got {other:?}"),
            }
        }
    }
    assert_eq!(store.usage(&ns).unwrap(), 0);
    validate_key(&"x".repeat(MAX_KEY_LEN)).unwrap();
    for fine in ["..", "../other/x", "a/b", "plugin:other:x", "./.", "ü", " "] {
        validate_key(fine).unwrap();
    }
}

#[test]
fn refused_key_is_truncated_in_the_error() {
    let key = format!("{}\0", "y".repeat(10_000));
    let err = validate_key(&key).unwrap_err();
    let StorageError::InvalidKey { key: shown, .. } = &err else {
        panic!("expected InvalidKey, got {err:?}");
    };
    assert_eq!(shown.chars().count(), KEY_DISPLAY_CHARS + 1);
    assert!(err.to_string().len() < 200);
}

#[test]
fn namespaces_are_isolated_against_escape_attempts() {
    let store = Store::in_memory(1 << 20).unwrap();
    let secret = json(r#""secret of b""#);
    let b = plugin("b");
    for key in ["x", "k", "other/x", "b:x"] {
        store.set(&b, key, &secret).unwrap();
    }
    store.set(&Namespace::Shared, "x", &secret).unwrap();

    let a = plugin("a");
    let attempts = [
        "..",
        "../b/x",
        "../b",
        "/b/x",
        "b/x",
        "a/../b/x",
        "plugin:b:x",
        "plugin:b",
        ":x",
        "shared:x",
        "../shared/x",
        "%2e%2e/b/x",
    ];
    for key in attempts {
        assert_eq!(store.get(&a, key).unwrap(), None, "{key}");
    }
    assert!(store.scan(&a, "", "", 0).unwrap().is_empty());
    for bad in ["", "\0", "b\0x", "\0plugin:b"] {
        assert!(store.get(&a, bad).is_err());
    }

    // Writing with those keys stays inside `a`.
    let mine = json(r#""a's""#);
    for key in attempts {
        store.set(&a, key, &mine).unwrap();
    }
    for key in ["x", "k", "other/x", "b:x"] {
        assert_eq!(store.get(&b, key).unwrap(), Some(secret.clone()));
    }
    assert_eq!(
        store.get(&Namespace::Shared, "x").unwrap(),
        Some(secret.clone())
    );
    assert_eq!(store.scan(&b, "", "", 0).unwrap().len(), 4);
    assert_eq!(store.scan(&a, "", "", 0).unwrap().len(), attempts.len());

    // A plugin named like the shared namespace or like a prefixed label is still its own.
    for name in ["shared", "plugin:b", "b\0", ""] {
        assert!(
            store.scan(&plugin(name), "", "", 0).unwrap().is_empty(),
            "{name:?}"
        );
        assert_eq!(store.get(&plugin(name), "x").unwrap(), None, "{name:?}");
    }
}

#[test]
fn quota_refusal_on_set_writes_nothing() {
    let store = Store::in_memory(20).unwrap();
    let ns = plugin("a");
    let small = json("1");
    store.set(&ns, "k", &small).unwrap();
    let used = store.usage(&ns).unwrap();
    assert_eq!(used, size_of("k", &small));

    let big = json(r#""0123456789abcdef""#);
    match store.set(&ns, "big", &big) {
        Err(StorageError::QuotaExceeded {
            namespace,
            used: reported,
            needed,
            limit,
        }) => {
            assert_eq!(namespace, "plugin:a");
            assert_eq!(reported, used);
            assert_eq!(needed, size_of("big", &big));
            assert_eq!(limit, 20);
        }
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    assert_eq!(store.get(&ns, "big").unwrap(), None);
    assert_eq!(store.usage(&ns).unwrap(), used);
    // Other namespaces have their own quota.
    store
        .set(&plugin("b"), "k", &json(r#""0123456789""#))
        .unwrap();
    store
        .set(&Namespace::Shared, "k", &json(r#""0123456789""#))
        .unwrap();
}

#[test]
fn quota_refusal_on_batch_writes_nothing() {
    let store = Store::in_memory(29).unwrap();
    let ns = plugin("a");
    let value = json(r#""12345""#); // 8 bytes stored
    store.set(&ns, "keep", &value).unwrap();
    let before = store.scan(&ns, "", "", 0).unwrap();
    let used = store.usage(&ns).unwrap();
    let ops = vec![
        ("keep".to_owned(), None),
        ("n1".to_owned(), Some(value.clone())),
        ("n2".to_owned(), Some(value.clone())),
        ("n3".to_owned(), Some(value.clone())),
    ];
    match store.batch(&ns, &ops) {
        Err(StorageError::QuotaExceeded { needed, .. }) => {
            assert_eq!(needed, 3 * size_of("n1", &value) - size_of("keep", &value));
        }
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    assert_eq!(store.scan(&ns, "", "", 0).unwrap(), before);
    assert_eq!(store.usage(&ns).unwrap(), used);
    // The same batch less one write fits.
    store.batch(&ns, &ops[..3]).unwrap();
    assert_eq!(store.usage(&ns).unwrap(), 2 * size_of("n1", &value));
}

#[test]
fn overwrite_counts_the_net_difference() {
    let store = Store::in_memory(40).unwrap();
    let ns = plugin("a");
    let v10 = json(r#""12345678""#); // 10 bytes + tag
    store.set(&ns, "k", &v10).unwrap();
    assert_eq!(store.usage(&ns).unwrap(), 12);
    // 12 + 30 would not fit, but replacing "k" grows by the difference only.
    let v30 = json(&format!("\"{}\"", "z".repeat(36)));
    store.set(&ns, "k", &v30).unwrap();
    assert_eq!(store.usage(&ns).unwrap(), size_of("k", &v30));
    store.set(&ns, "k", &Payload::empty()).unwrap();
    assert_eq!(store.usage(&ns).unwrap(), 2);
    // Writing the same key twice in a batch counts only what remains.
    let ops = vec![
        ("k".to_owned(), Some(v30.clone())),
        ("k".to_owned(), Some(v10.clone())),
    ];
    store.batch(&ns, &ops).unwrap();
    assert_eq!(store.usage(&ns).unwrap(), 12);
}

#[test]
fn delete_frees_quota() {
    let store = Store::in_memory(25).unwrap();
    let ns = plugin("a");
    let value = json(r#""0123456789""#);
    store.set(&ns, "one", &value).unwrap();
    assert!(store.set(&ns, "two", &value).is_err());
    assert!(store.delete(&ns, "one").unwrap());
    assert_eq!(store.usage(&ns).unwrap(), 0);
    store.set(&ns, "two", &value).unwrap();
    // A batch delete frees quota within the same batch.
    let ops = vec![
        ("two".to_owned(), None),
        ("three".to_owned(), Some(value.clone())),
    ];
    store.batch(&ns, &ops).unwrap();
    assert_eq!(store.usage(&ns).unwrap(), size_of("three", &value));
}

#[test]
fn shrinking_writes_are_allowed_above_a_lowered_quota() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let ns = plugin("a");
    let big = json(&format!("\"{}\"", "q".repeat(50)));
    Store::open(&path, 1000)
        .unwrap()
        .set(&ns, "k", &big)
        .unwrap();
    let store = Store::open(&path, 10).unwrap();
    assert!(store.usage(&ns).unwrap() > store.quota());
    assert!(store.set(&ns, "other", &json("1")).is_err());
    store.set(&ns, "k", &json(r#""short""#)).unwrap();
    assert_eq!(store.usage(&ns).unwrap(), size_of("k", &json(r#""short""#)));
}

#[test]
fn batch_is_atomic_when_one_key_is_invalid() {
    let store = Store::in_memory(1 << 20).unwrap();
    let ns = plugin("a");
    store.set(&ns, "old", &json("0")).unwrap();
    let ops = vec![
        ("fine".to_owned(), Some(json("1"))),
        ("old".to_owned(), None),
        ("bad\0key".to_owned(), Some(json("2"))),
    ];
    assert!(matches!(
        store.batch(&ns, &ops),
        Err(StorageError::InvalidKey { .. })
    ));
    assert_eq!(store.get(&ns, "fine").unwrap(), None);
    assert_eq!(store.get(&ns, "old").unwrap(), Some(json("0")));
    assert_eq!(store.usage(&ns).unwrap(), size_of("old", &json("0")));
}

#[test]
fn batch_applies_ops_in_order() {
    let store = Store::in_memory(1 << 20).unwrap();
    let ns = Namespace::Shared;
    let ops = vec![
        ("a".to_owned(), Some(json("1"))),
        ("a".to_owned(), None),
        ("b".to_owned(), None),
        ("c".to_owned(), Some(json("1"))),
        ("c".to_owned(), Some(json("2"))),
    ];
    store.batch(&ns, &ops).unwrap();
    assert_eq!(store.get(&ns, "a").unwrap(), None);
    assert_eq!(store.get(&ns, "c").unwrap(), Some(json("2")));
    assert_eq!(store.usage(&ns).unwrap(), 3);
    store.batch(&ns, &[]).unwrap();
}

#[test]
fn scan_ranges_limit_and_prefix() {
    let store = Store::in_memory(1 << 20).unwrap();
    let ns = plugin("a");
    for key in [
        "user/1", "user/2", "user/3", "users", "video/1", "a", "user0",
    ] {
        store.set(&ns, key, &json(&format!("{key:?}"))).unwrap();
    }
    store.set(&plugin("b"), "user/9", &json("0")).unwrap();
    store.set(&plugin("a2"), "user/9", &json("0")).unwrap();
    let keys = |start: &str, end: &str, limit: u32| -> Vec<String> {
        store
            .scan(&ns, start, end, limit)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(
        keys("", "", 0),
        ["a", "user/1", "user/2", "user/3", "user0", "users", "video/1"]
    );
    // A prefix scan: "user/" up to the next character after '/'.
    assert_eq!(keys("user/", "user0", 0), ["user/1", "user/2", "user/3"]);
    assert_eq!(keys("user/", "user0", 2), ["user/1", "user/2"]);
    assert_eq!(
        keys("user/2", "", 0),
        ["user/2", "user/3", "user0", "users", "video/1"]
    );
    assert_eq!(keys("user/2", "", 1), ["user/2"]);
    assert_eq!(keys("v", "", 0), ["video/1"]);
    assert_eq!(keys("z", "", 0), Vec::<String>::new());
    assert_eq!(keys("user/3", "user/3", 0), Vec::<String>::new());
    assert_eq!(keys("users", "a", 0), Vec::<String>::new());
    let (key, value) = &store.scan(&ns, "a", "b", 0).unwrap()[0];
    assert_eq!((key.as_str(), value), ("a", &json(r#""a""#)));
}

#[test]
fn unknown_codec_tag_is_a_backend_error() {
    let store = Store::in_memory(1 << 20).unwrap();
    let txn = store.inner.db.begin_write().unwrap();
    {
        let mut table = txn.open_table(ENTRIES).unwrap();
        table.insert(("shared", "odd"), &[9u8, 1, 2][..]).unwrap();
        table.insert(("shared", "none"), &[][..]).unwrap();
    }
    txn.commit().unwrap();
    for key in ["odd", "none"] {
        assert!(matches!(
            store.get(&Namespace::Shared, key),
            Err(StorageError::Backend { ref path, .. }) if path == "memory"
        ));
    }
    assert!(store.scan(&Namespace::Shared, "", "", 0).is_err());
}

#[test]
fn concurrent_writers_never_exceed_the_quota() {
    let store = Store::in_memory(500).unwrap();
    let ns = Namespace::Shared;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            let ns = ns.clone();
            std::thread::spawn(move || {
                for i in 0..40 {
                    let _ = store.set(&ns, &format!("t{t}/{i}"), &json("12345"));
                    if i % 7 == 0 {
                        let _ = store.delete(&ns, &format!("t{t}/{}", i / 2));
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let cached = store.usage(&ns).unwrap();
    let txn = store.inner.db.begin_read().unwrap();
    let table = txn.open_table(ENTRIES).unwrap();
    assert_eq!(count_usage(&table, "shared").unwrap(), cached);
    assert!(cached <= store.quota());
}

fn tricky_key() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[./:a\\x00\\n]{0,12}",
        "(\\.\\./)*(plugin:|shared|b)[:/]?x?",
        ".{500,520}",
    ]
}

proptest! {
    #[test]
    fn arbitrary_keys_never_panic_or_cross_namespaces(
        key in tricky_key(),
        name in tricky_key(),
    ) {
        let store = Store::in_memory(1 << 20).unwrap();
        let secret = json(r#""secret""#);
        let victim = plugin("victim");
        let victim_keys = ["x", "b", "victim", "plugin:victim:x", "../x"];
        for k in victim_keys {
            store.set(&victim, k, &secret).unwrap();
        }
        store.set(&Namespace::Shared, "x", &secret).unwrap();

        let name = if name == "victim" { format!("{name}2") } else { name };
        let attacker = plugin(&name);
        let mine = json(r#""mine""#);
        let valid = validate_key(&key).is_ok();

        prop_assert_eq!(store.get(&attacker, &key).ok().flatten(), None);
        prop_assert_eq!(store.set(&attacker, &key, &mine).is_ok(), valid);
        prop_assert_eq!(store.get(&attacker, &key).ok().flatten(), valid.then(|| mine.clone()));
        let seen = store.scan(&attacker, "", "", 0).unwrap();
        prop_assert!(seen.iter().all(|(_, v)| v == &mine));
        let seen = store.scan(&attacker, &key, "", 0).unwrap();
        prop_assert!(seen.iter().all(|(_, v)| v == &mine));
        prop_assert_eq!(store.delete(&attacker, &key).unwrap_or(false), valid);

        // The victim's data is untouched.
        for k in victim_keys {
            prop_assert_eq!(store.get(&victim, k).unwrap(), Some(secret.clone()));
        }
        prop_assert_eq!(store.scan(&victim, "", "", 0).unwrap().len(), victim_keys.len());
        prop_assert_eq!(store.get(&Namespace::Shared, "x").unwrap(), Some(secret.clone()));
        prop_assert_eq!(store.usage(&attacker).unwrap(), 0);
    }
}
