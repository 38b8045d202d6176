//! Plugin storage: a key-value store with one namespace per plugin, one shared namespace and a
//! byte quota for each.
//!
//! # Why composite keys
//!
//! Every entry lives in one redb table whose key is the tuple `(namespace, key)`. redb encodes
//! the tuple with a length prefix on the namespace, so the namespace is a separate field rather
//! than a prefix of a string: no key text (`..`, `../other/x`, `plugin:other:x`, a NUL byte…)
//! can ever name an entry of another namespace, and reads, scans and writes cannot cross over by
//! construction. Keys are still validated ([`validate_key`]) so that plugins get a clear error
//! for keys that are empty, huge or contain control characters; `/`, `:` and `.` are ordinary
//! characters with no meaning.
//!
//! # Quota semantics
//!
//! Each namespace (every plugin's, and the shared one) may hold at most [`Store::quota`] bytes,
//! counted as the sum over its entries of the key length plus the stored value length (the codec
//! tag byte plus the payload bytes). A write or batch is judged by its net growth, so an
//! overwrite counts only the difference and a write that shrinks a namespace is always allowed,
//! even one already above a quota that was lowered since the data was written. A write that would
//! end above the quota writes nothing and returns [`StorageError::QuotaExceeded`].
//!
//! Usage is cached per namespace, computed by a scan the first time the namespace is touched
//! (so a restart starts from what is on disk) and updated after each commit. All writes go
//! through one lock held for the whole transaction, so the quota check and the write are atomic
//! with respect to other writers; redb allows only one writer at a time anyway. Reads take no
//! lock.

use std::collections::HashMap;
use std::fmt;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use plugin_api::{Codec, Payload, RVec};
use redb::backends::InMemoryBackend;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::StorageError;

/// The single table holding every namespace: `(namespace, key) -> codec tag byte ++ bytes`.
const ENTRIES: TableDefinition<'static, (&'static str, &'static str), &'static [u8]> =
    TableDefinition::new("entries");

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 512;

/// How many characters of a refused key an error shows.
const KEY_DISPLAY_CHARS: usize = 64;

/// Whose data an operation touches.
///
/// Displays as `plugin:<name>` or `shared`, which is also the name used in quota errors.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// The private namespace of the named plugin.
    Plugin(String),
    /// The namespace every plugin with the shared-storage capability can use.
    Shared,
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Namespace::Plugin(name) => write!(f, "plugin:{name}"),
            Namespace::Shared => f.write_str("shared"),
        }
    }
}

/// Checks that `key` may be used as a storage key.
///
/// # Errors
/// [`StorageError::InvalidKey`] when the key is empty, longer than [`MAX_KEY_LEN`] bytes, or
/// contains a control character (NUL, newline, escape…).
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    let reason = if key.is_empty() {
        "empty"
    } else if key.len() > MAX_KEY_LEN {
        "longer than 512 bytes"
    } else if key.chars().any(char::is_control) {
        "contains a control character"
    } else {
        return Ok(());
    };
    Err(StorageError::InvalidKey {
        key: display_key(key),
        reason,
    })
}

/// Shortens a key for error messages, so a megabyte key does not become a megabyte log line.
fn display_key(key: &str) -> String {
    let mut shown: String = key.chars().take(KEY_DISPLAY_CHARS).collect();
    if shown.len() < key.len() {
        shown.push('…');
    }
    shown
}

/// The plugin host's key-value store.
///
/// Cheap to clone: clones share one database and one usage cache. Open a file once per process
/// and clone the [`Store`]; redb refuses a second open of the same file.
///
/// # Examples
///
/// ```ignore
/// use loader::{Namespace, Store};
/// use plugin_api::Payload;
///
/// let store = Store::in_memory(1024).unwrap();
/// let ns = Namespace::Plugin("greeter".into());
/// store.set(&ns, "visits", &Payload::json(&3).unwrap()).unwrap();
/// assert_eq!(store.get(&ns, "visits").unwrap(), Some(Payload::json(&3).unwrap()));
/// assert_eq!(store.get(&Namespace::Shared, "visits").unwrap(), None);
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    /// The file path, or `memory`, for error messages.
    location: String,
    quota: u64,
    /// Bytes used per namespace label. Held for the whole of every write transaction: that is
    /// what makes check-then-write atomic.
    usage: Mutex<HashMap<String, u64>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.inner.location)
            .field("quota", &self.inner.quota)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the database file at `path`, creating it and its parent folders if absent.
    ///
    /// Each namespace may hold `quota_bytes` bytes (see the module docs for what counts).
    ///
    /// # Errors
    /// [`StorageError::Backend`] when the folders cannot be created, the file is not a redb
    /// database, or it is already open (in this or another process).
    pub fn open(path: &Path, quota_bytes: u64) -> Result<Store, StorageError> {
        let location = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StorageError::Backend {
                path: location.clone(),
                message: format!("cannot create folder {}: {e}", parent.display()),
            })?;
        }
        match Database::create(path) {
            Ok(db) => Store::init(db, location, quota_bytes),
            Err(e) => Err(StorageError::Backend {
                path: location,
                message: e.to_string(),
            }),
        }
    }

    /// Creates an empty store held in memory, gone when the last clone is dropped.
    ///
    /// # Errors
    /// [`StorageError::Backend`] if redb cannot initialise the database.
    pub fn in_memory(quota_bytes: u64) -> Result<Store, StorageError> {
        let location = "memory".to_owned();
        match Database::builder().create_with_backend(InMemoryBackend::new()) {
            Ok(db) => Store::init(db, location, quota_bytes),
            Err(e) => Err(StorageError::Backend {
                path: location,
                message: e.to_string(),
            }),
        }
    }

    fn init(db: Database, location: String, quota: u64) -> Result<Store, StorageError> {
        let store = Store {
            inner: Arc::new(Inner {
                db,
                location,
                quota,
                usage: Mutex::new(HashMap::new()),
            }),
        };
        // Created up front so that readers never meet a missing table.
        let txn = store.inner.db.begin_write().map_err(|e| store.backend(e))?;
        txn.open_table(ENTRIES).map_err(|e| store.backend(e))?;
        txn.commit().map_err(|e| store.backend(e))?;
        Ok(store)
    }

    /// The byte limit of each namespace.
    pub fn quota(&self) -> u64 {
        self.inner.quota
    }

    /// Reads `key` in `ns`.
    ///
    /// # Errors
    /// [`StorageError::InvalidKey`] for a key [`validate_key`] refuses; [`StorageError::Backend`]
    /// if the database fails or holds a value this version cannot decode.
    pub fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Payload>, StorageError> {
        validate_key(key)?;
        let label = ns.to_string();
        let txn = self.inner.db.begin_read().map_err(|e| self.backend(e))?;
        let table = txn.open_table(ENTRIES).map_err(|e| self.backend(e))?;
        let stored = table
            .get((label.as_str(), key))
            .map_err(|e| self.backend(e))?;
        match stored {
            Some(value) => self.decode(key, value.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Writes `value` under `key` in `ns`, replacing any previous value.
    ///
    /// # Errors
    /// [`StorageError::InvalidKey`] for a key [`validate_key`] refuses;
    /// [`StorageError::QuotaExceeded`] if the namespace would grow past the quota (nothing is
    /// written); [`StorageError::Backend`] if the database fails.
    pub fn set(&self, ns: &Namespace, key: &str, value: &Payload) -> Result<(), StorageError> {
        self.write(ns, &[(key, Some(value))])
    }

    /// Removes `key` from `ns`; returns whether it existed.
    ///
    /// Always allowed, whatever the quota: deleting is how a namespace gets back under it.
    ///
    /// # Errors
    /// [`StorageError::InvalidKey`] for a key [`validate_key`] refuses; [`StorageError::Backend`]
    /// if the database fails.
    pub fn delete(&self, ns: &Namespace, key: &str) -> Result<bool, StorageError> {
        validate_key(key)?;
        let label = ns.to_string();
        let mut usage = self.inner.usage.lock();
        let txn = self.inner.db.begin_write().map_err(|e| self.backend(e))?;
        let (used, freed) = {
            let mut table = txn.open_table(ENTRIES).map_err(|e| self.backend(e))?;
            let used = self.cached_usage(&usage, &table, &label)?;
            let removed = table
                .remove((label.as_str(), key))
                .map_err(|e| self.backend(e))?;
            (used, removed.map(|old| entry_size(key, old.value())))
        };
        let Some(freed) = freed else {
            // Nothing was removed, so there is nothing to commit; the scan is still worth keeping.
            usage.insert(label, used);
            txn.abort().map_err(|e| self.backend(e))?;
            return Ok(false);
        };
        if let Err(e) = txn.commit() {
            // The outcome of a failed commit is not known here: recount on next use.
            usage.remove(&label);
            return Err(self.backend(e));
        }
        usage.insert(label, used.saturating_sub(freed));
        Ok(true)
    }

    /// Lists the entries of `ns` with `start <= key < end`, in key order (byte-wise).
    ///
    /// An empty `end` means no upper bound, and a `limit` of 0 means no limit. The bounds are
    /// not validated as keys: `""` is a fine `start`. A range whose `end` is not above `start`
    /// is empty.
    ///
    /// # Errors
    /// [`StorageError::Backend`] if the database fails or holds a value this version cannot
    /// decode.
    pub fn scan(
        &self,
        ns: &Namespace,
        start: &str,
        end: &str,
        limit: u32,
    ) -> Result<Vec<(String, Payload)>, StorageError> {
        if !end.is_empty() && end <= start {
            return Ok(Vec::new());
        }
        let limit = match limit {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let label = ns.to_string();
        let lower = Bound::Included((label.as_str(), start));
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded((label.as_str(), end))
        };
        let txn = self.inner.db.begin_read().map_err(|e| self.backend(e))?;
        let table = txn.open_table(ENTRIES).map_err(|e| self.backend(e))?;
        let range = table
            .range::<(&str, &str)>((lower, upper))
            .map_err(|e| self.backend(e))?;
        let mut entries = Vec::new();
        for item in range {
            if entries.len() >= limit {
                break;
            }
            let (stored_key, stored_value) = item.map_err(|e| self.backend(e))?;
            let (entry_ns, key) = stored_key.value();
            // Tuples order by namespace first, so an unbounded range runs into the next
            // namespace right after this one ends.
            if entry_ns != label {
                break;
            }
            let payload = self.decode(key, stored_value.value())?;
            entries.push((key.to_owned(), payload));
        }
        Ok(entries)
    }

    /// Applies `ops` to `ns` in order, atomically: all of them or none. `Some` writes the
    /// value, `None` deletes the key (deleting an absent key is not an error).
    ///
    /// The quota is checked against the net growth of the whole batch.
    ///
    /// # Errors
    /// [`StorageError::InvalidKey`] if any key is refused (nothing is written);
    /// [`StorageError::QuotaExceeded`] if the namespace would end above the quota (nothing is
    /// written); [`StorageError::Backend`] if the database fails.
    pub fn batch(
        &self,
        ns: &Namespace,
        ops: &[(String, Option<Payload>)],
    ) -> Result<(), StorageError> {
        let ops: Vec<(&str, Option<&Payload>)> = ops
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_ref()))
            .collect();
        self.write(ns, &ops)
    }

    /// The bytes `ns` holds, as counted against the quota.
    ///
    /// # Errors
    /// [`StorageError::Backend`] if the database fails while counting.
    pub fn usage(&self, ns: &Namespace) -> Result<u64, StorageError> {
        let label = ns.to_string();
        // Held while counting so that no commit lands between the count and the cache entry.
        let mut usage = self.inner.usage.lock();
        if let Some(&used) = usage.get(&label) {
            return Ok(used);
        }
        let txn = self.inner.db.begin_read().map_err(|e| self.backend(e))?;
        let table = txn.open_table(ENTRIES).map_err(|e| self.backend(e))?;
        let used = count_usage(&table, &label).map_err(|e| self.backend(e))?;
        usage.insert(label, used);
        Ok(used)
    }

    /// The write path shared by `set` and `batch`.
    fn write(&self, ns: &Namespace, ops: &[(&str, Option<&Payload>)]) -> Result<(), StorageError> {
        for (key, _) in ops {
            validate_key(key)?;
        }
        // Encoded before taking the lock, to keep other writers waiting as briefly as possible.
        let encoded: Vec<Option<Vec<u8>>> =
            ops.iter().map(|(_, value)| value.map(encode)).collect();
        let label = ns.to_string();
        let mut usage = self.inner.usage.lock();
        let txn = self.inner.db.begin_write().map_err(|e| self.backend(e))?;
        let new_used = {
            let mut table = txn.open_table(ENTRIES).map_err(|e| self.backend(e))?;
            let used = self.cached_usage(&usage, &table, &label)?;

            // Sizes are tracked per key through the batch, so that writing a key twice or writing
            // then deleting it counts what the batch really leaves behind.
            let mut sizes: HashMap<&str, u64> = HashMap::new();
            let mut growth: i128 = 0;
            for ((key, _), value) in ops.iter().zip(&encoded) {
                let before = match sizes.get(key) {
                    Some(&size) => size,
                    None => table
                        .get((label.as_str(), *key))
                        .map_err(|e| self.backend(e))?
                        .map_or(0, |old| entry_size(key, old.value())),
                };
                let after = value.as_deref().map_or(0, |v| entry_size(key, v));
                growth += i128::from(after) - i128::from(before);
                sizes.insert(key, after);
            }
            let new_used = u64::try_from(i128::from(used) + growth).unwrap_or(u64::MAX);
            if growth > 0 && new_used > self.inner.quota {
                drop(table);
                // Nothing was written yet; the abort only releases the write slot, and the quota
                // error is the one worth reporting even if the abort itself fails.
                let _ = txn.abort();
                usage.insert(label.clone(), used);
                return Err(StorageError::QuotaExceeded {
                    namespace: label,
                    used,
                    needed: u64::try_from(growth).unwrap_or(u64::MAX),
                    limit: self.inner.quota,
                });
            }

            for ((key, _), value) in ops.iter().zip(&encoded) {
                match value {
                    Some(bytes) => {
                        table
                            .insert((label.as_str(), *key), bytes.as_slice())
                            .map_err(|e| self.backend(e))?;
                    }
                    None => {
                        table
                            .remove((label.as_str(), *key))
                            .map_err(|e| self.backend(e))?;
                    }
                }
            }
            new_used
        };
        if let Err(e) = txn.commit() {
            // The outcome of a failed commit is not known here: recount on next use.
            usage.remove(&label);
            return Err(self.backend(e));
        }
        usage.insert(label, new_used);
        Ok(())
    }

    /// The cached usage of `label`, or a fresh count from `table` (the caller caches it once
    /// its transaction has settled).
    fn cached_usage(
        &self,
        usage: &HashMap<String, u64>,
        table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
        label: &str,
    ) -> Result<u64, StorageError> {
        match usage.get(label) {
            Some(&used) => Ok(used),
            None => count_usage(table, label).map_err(|e| self.backend(e)),
        }
    }

    fn decode(&self, key: &str, stored: &[u8]) -> Result<Payload, StorageError> {
        let Some((&tag, bytes)) = stored.split_first() else {
            return Err(self.backend(format!(
                "value of key {:?} has no codec tag",
                display_key(key)
            )));
        };
        let codec = match tag {
            0 => Codec::Empty,
            1 => Codec::Bincode,
            2 => Codec::Json,
            other => {
                return Err(self.backend(format!(
                    "value of key {:?} has unknown codec tag {other}",
                    display_key(key)
                )))
            }
        };
        Ok(Payload {
            codec,
            bytes: RVec::from(bytes.to_vec()),
        })
    }

    fn backend(&self, error: impl fmt::Display) -> StorageError {
        StorageError::Backend {
            path: self.inner.location.clone(),
            message: error.to_string(),
        }
    }
}

/// The stored form of a payload: its codec tag byte, then its bytes.
fn encode(value: &Payload) -> Vec<u8> {
    let mut stored = Vec::with_capacity(1 + value.bytes.len());
    stored.push(value.codec as u8);
    stored.extend_from_slice(&value.bytes);
    stored
}

/// What one entry counts against the quota.
fn entry_size(key: &str, stored: &[u8]) -> u64 {
    // usize is at most 64 bits on every target Rust supports, so these never truncate.
    key.len() as u64 + stored.len() as u64
}

/// Sums the entries of one namespace.
fn count_usage(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    label: &str,
) -> Result<u64, redb::StorageError> {
    let mut used: u64 = 0;
    for item in table.range::<(&str, &str)>((label, "")..)? {
        let (stored_key, stored_value) = item?;
        let (entry_ns, key) = stored_key.value();
        if entry_ns != label {
            break;
        }
        used = used.saturating_add(entry_size(key, stored_value.value()));
    }
    Ok(used)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test should stop at the first unexpected error, with its message"
)]
mod tests {
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
}
