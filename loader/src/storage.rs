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
    /// [`StorageError::InvalidKey`] for an empty key, one over 512 bytes or one with a control
    /// character; [`StorageError::Backend`] if the database fails or holds a value this version
    /// cannot decode.
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
    /// [`StorageError::InvalidKey`] for an empty key, one over 512 bytes or one with a control
    /// character; [`StorageError::QuotaExceeded`] if the namespace would grow past the quota (nothing is
    /// written); [`StorageError::Backend`] if the database fails.
    pub fn set(&self, ns: &Namespace, key: &str, value: &Payload) -> Result<(), StorageError> {
        self.write(ns, &[(key, Some(value))])
    }

    /// Removes `key` from `ns`; returns whether it existed.
    ///
    /// Always allowed, whatever the quota: deleting is how a namespace gets back under it.
    ///
    /// # Errors
    /// [`StorageError::InvalidKey`] for an empty key, one over 512 bytes or one with a control
    /// character; [`StorageError::Backend`] if the database fails.
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
mod tests;
