//! Key-value stores behind `wasi:keyvalue`: a backend-independent contract and two real backends,
//! NATS JetStream KV ([`NatsKeyValue`]) and a directory tree ([`FilesystemKeyValue`]).
//!
//! A component opens a bucket by name (`wasi:keyvalue/store.open`); what the name means is the
//! backend's: a JetStream KV bucket of that name (created when missing, as wasmCloud's NATS backend
//! does), or a directory `<root>/<bucket>/`. Counters written by `atomics.increment` are decimal text in
//! both backends; an existing 8-byte big-endian value (how wasmCloud's NATS backend stores counters) is
//! read as a counter too.

mod filesystem;
mod nats;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use filesystem::FilesystemKeyValue;
pub use nats::NatsKeyValue;

use crate::backend::BoxFuture;
use crate::metrics::RuntimeMetrics;

/// Why a key-value operation failed (the `wasi:keyvalue/store.error` variants).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The backend does not know the bucket.
    #[error("no such store")]
    NoSuchStore,
    /// The caller may not use the bucket.
    #[error("access denied")]
    AccessDenied,
    /// Anything else (I/O, the server, an invalid key), with a message for the component.
    #[error("{0}")]
    Other(String),
}

/// One page of keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPage {
    /// Keys of this page.
    pub keys: Vec<String>,
    /// Cursor of the next page; `None` on the last.
    pub cursor: Option<u64>,
}

/// Keys returned per `list-keys` page.
pub const KEYS_PER_PAGE: usize = 1000;

/// A key-value store: opens buckets.
pub trait KeyValueStore: Send + Sync {
    /// The backend's name (`nats`, `filesystem`) for logs, metrics and host-interface config.
    fn name(&self) -> &'static str;

    /// Opens (creating if the backend does so) the bucket named `bucket`.
    fn open(&self, bucket: &str) -> BoxFuture<'_, Result<Arc<dyn Bucket>, KvError>>;
}

/// An open bucket.
pub trait Bucket: Send + Sync {
    /// The value of `key`, if set.
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<Vec<u8>>, KvError>>;
    /// Sets `key` to `value`.
    fn set(&self, key: &str, value: Vec<u8>) -> BoxFuture<'_, Result<(), KvError>>;
    /// Deletes `key` (nothing when absent).
    fn delete(&self, key: &str) -> BoxFuture<'_, Result<(), KvError>>;
    /// Whether `key` is set.
    fn exists(&self, key: &str) -> BoxFuture<'_, Result<bool, KvError>> {
        let get = self.get(key);
        Box::pin(async move { Ok(get.await?.is_some()) })
    }
    /// The page of keys starting at `cursor` (an offset into the sorted key list).
    fn list_keys(&self, cursor: Option<u64>) -> BoxFuture<'_, Result<KeyPage, KvError>>;
    /// Atomically adds `delta` to the counter at `key` (absent = 0) and returns the new value.
    fn increment(&self, key: &str, delta: u64) -> BoxFuture<'_, Result<u64, KvError>>;
}

impl fmt::Debug for dyn KeyValueStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValueStore")
            .field("name", &self.name())
            .finish()
    }
}

/// The key-value backends a host offers: the default (used when a workload's `wasi:keyvalue` host
/// interface names no `backend`) and every backend by name.
#[derive(Clone, Default)]
pub struct KeyValueBackends {
    default: Option<Arc<dyn KeyValueStore>>,
    by_name: BTreeMap<&'static str, Arc<dyn KeyValueStore>>,
}

impl fmt::Debug for KeyValueBackends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValueBackends")
            .field("default", &self.default.as_ref().map(|d| d.name()))
            .field("backends", &self.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeyValueBackends {
    /// Adds `store`; the first added is the default unless [`KeyValueBackends::set_default`] says
    /// otherwise.
    pub fn add(&mut self, store: Arc<dyn KeyValueStore>) {
        if self.default.is_none() {
            self.default = Some(store.clone());
        }
        self.by_name.insert(store.name(), store);
    }

    /// Makes the backend called `name` the default.
    pub fn set_default(&mut self, name: &str) -> Result<(), String> {
        let store = self
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| self.unknown(name))?;
        self.default = Some(store);
        Ok(())
    }

    /// Leaves the workloads that name no backend without one.
    pub fn clear_default(&mut self) {
        self.default = None;
    }

    /// Names of the backends.
    pub fn names(&self) -> Vec<&'static str> {
        self.by_name.keys().copied().collect()
    }

    /// Whether there is no backend at all.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The backend a workload gets: the one its config names, else the default.
    pub fn select(&self, requested: Option<&str>) -> Result<Option<Arc<dyn KeyValueStore>>, String> {
        match requested {
            None => Ok(self.default.clone()),
            Some(name) => self
                .by_name
                .get(name)
                .cloned()
                .map(Some)
                .ok_or_else(|| self.unknown(name)),
        }
    }

    fn unknown(&self, name: &str) -> String {
        let names = self.names();
        if names.is_empty() {
            format!("wasi:keyvalue backend {name:?} is not available: this host has no key-value backend")
        } else {
            format!(
                "wasi:keyvalue backend {name:?} is not available on this host (it has: {})",
                names.join(", ")
            )
        }
    }
}

/// A store whose operations are counted in `weft_runtime_keyvalue_operations_total`.
pub(crate) struct Counted {
    pub(crate) store: Arc<dyn KeyValueStore>,
    pub(crate) metrics: RuntimeMetrics,
}

impl Counted {
    /// Counts one operation's result and passes it on.
    pub(crate) fn count<T>(&self, operation: &'static str, result: Result<T, KvError>) -> Result<T, KvError> {
        self.metrics
            .count_keyvalue(self.store.name(), operation, result.is_ok());
        result
    }
}

/// Parses a counter value: decimal text, or 8 bytes big-endian.
pub(crate) fn parse_counter(key: &str, value: &[u8]) -> Result<u64, KvError> {
    if let Ok(text) = std::str::from_utf8(value)
        && let Ok(n) = text.trim().parse::<u64>()
    {
        return Ok(n);
    }
    if let Ok(bytes) = <[u8; 8]>::try_from(value) {
        return Ok(u64::from_be_bytes(bytes));
    }
    Err(KvError::Other(format!(
        "cannot increment {key:?}: its value is not a number ({} bytes)",
        value.len()
    )))
}

/// Adds `delta` to `current`, failing on overflow.
pub(crate) fn add_counter(key: &str, current: u64, delta: u64) -> Result<u64, KvError> {
    current
        .checked_add(delta)
        .ok_or_else(|| KvError::Other(format!("incrementing {key:?} by {delta} overflows u64")))
}

/// Bucket names both backends accept: 1–255 of `A-Z a-z 0-9 _ -` (JetStream's rule; it also keeps a
/// bucket a single safe directory name).
pub(crate) fn check_bucket_name(bucket: &str) -> Result<(), KvError> {
    if bucket.is_empty()
        || bucket.len() > 255
        || !bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(KvError::Other(format!(
            "invalid bucket name {bucket:?}: use 1-255 characters of A-Z, a-z, 0-9, '_' and '-'"
        )));
    }
    Ok(())
}

/// The page of `keys` (sorted here) that starts at `cursor`.
pub(crate) fn page(mut keys: Vec<String>, cursor: Option<u64>) -> KeyPage {
    keys.sort();
    let start = cursor.unwrap_or(0).min(keys.len() as u64) as usize;
    let end = (start + KEYS_PER_PAGE).min(keys.len());
    KeyPage {
        cursor: (end < keys.len()).then_some(end as u64),
        keys: keys.drain(start..end).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_decimal_text_or_big_endian_u64() {
        assert_eq!(parse_counter("k", b"41"), Ok(41));
        assert_eq!(parse_counter("k", b" 7\n"), Ok(7));
        assert_eq!(parse_counter("k", &9u64.to_be_bytes()), Ok(9));
        let err = parse_counter("k", b"abc").unwrap_err();
        assert!(err.to_string().contains("not a number"), "{err}");
        assert!(add_counter("k", u64::MAX, 1).is_err());
        assert_eq!(add_counter("k", 1, 2), Ok(3));
    }

    #[test]
    fn bucket_names_are_checked() {
        assert!(check_bucket_name("my-bucket_1").is_ok());
        for bad in ["", "a/b", "..", "a.b", "with space", &"x".repeat(256)] {
            assert!(check_bucket_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_are_paged_in_order_with_a_cursor() {
        let keys: Vec<String> = (0..2500).rev().map(|i| format!("k{i:05}")).collect();
        let first = page(keys.clone(), None);
        assert_eq!(first.keys.len(), KEYS_PER_PAGE);
        assert_eq!(first.keys[0], "k00000");
        assert_eq!(first.cursor, Some(1000));
        let last = page(keys.clone(), Some(2000));
        assert_eq!(last.keys.len(), 500);
        assert_eq!(last.cursor, None);
        assert_eq!(page(keys, Some(9999)), KeyPage::default());
    }

    #[test]
    fn backends_select_by_name_or_default() {
        let dir = tempfile::tempdir().unwrap();
        let mut backends = KeyValueBackends::default();
        assert!(backends.select(None).unwrap().is_none());
        let err = backends.select(Some("nats")).unwrap_err();
        assert!(err.contains("no key-value backend"), "{err}");
        backends.add(Arc::new(FilesystemKeyValue::new(dir.path())));
        assert_eq!(backends.select(None).unwrap().unwrap().name(), "filesystem");
        assert_eq!(
            backends.select(Some("filesystem")).unwrap().unwrap().name(),
            "filesystem"
        );
        let err = backends.select(Some("redis")).unwrap_err();
        assert!(err.contains("(it has: filesystem)"), "{err}");
    }
}
