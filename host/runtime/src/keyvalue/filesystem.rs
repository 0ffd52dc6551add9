//! A key-value store in a directory: bucket `b` is `<root>/b/`, key `k` the file `<root>/b/<k encoded>`
//! (bytes outside `A-Z a-z 0-9 _ -` percent-encoded, so any key is one safe file name). Writes go to a
//! temporary file renamed over the old one; increments are atomic within this host (one lock per
//! bucket). Meant for local and single-host use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Bucket, KeyPage, KeyValueStore, KvError, add_counter, check_bucket_name, page, parse_counter};
use crate::backend::BoxFuture;

/// The longest encoded key (file names are limited to 255 bytes; room is left for the temp suffix).
const MAX_ENCODED_KEY: usize = 200;

/// The filesystem key-value backend.
#[derive(Debug)]
pub struct FilesystemKeyValue {
    root: PathBuf,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl FilesystemKeyValue {
    /// A store under `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            locks: Mutex::default(),
        }
    }

    /// The directory the buckets live in.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl KeyValueStore for FilesystemKeyValue {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn open(&self, bucket: &str) -> BoxFuture<'_, Result<Arc<dyn Bucket>, KvError>> {
        let bucket = bucket.to_string();
        Box::pin(async move {
            check_bucket_name(&bucket)?;
            let dir = self.root.join(&bucket);
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| io_error(&format!("creating {}", dir.display()), e))?;
            let lock = self
                .locks
                .lock()
                .expect("keyvalue lock map")
                .entry(bucket)
                .or_default()
                .clone();
            Ok(Arc::new(DirBucket { dir, lock }) as Arc<dyn Bucket>)
        })
    }
}

struct DirBucket {
    dir: PathBuf,
    /// Serialises increments (read-modify-write) in this bucket.
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl DirBucket {
    fn path(&self, key: &str) -> Result<PathBuf, KvError> {
        Ok(self.dir.join(encode_key(key)?))
    }

    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&format!("reading {}", path.display()), e)),
        }
    }

    async fn write(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        let path = self.path(key)?;
        let tmp = path.with_file_name(format!(".{}.tmp-{}", encode_key(key)?, uuid_like_suffix()));
        tokio::fs::write(&tmp, value)
            .await
            .map_err(|e| io_error(&format!("writing {}", tmp.display()), e))?;
        if let Err(e) = tokio::fs::rename(&tmp, &path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(io_error(&format!("renaming {}", tmp.display()), e));
        }
        Ok(())
    }
}

impl Bucket for DirBucket {
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<Vec<u8>>, KvError>> {
        let key = key.to_string();
        Box::pin(async move { self.read(&key).await })
    }

    fn set(&self, key: &str, value: Vec<u8>) -> BoxFuture<'_, Result<(), KvError>> {
        let key = key.to_string();
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            self.write(&key, &value).await
        })
    }

    fn delete(&self, key: &str) -> BoxFuture<'_, Result<(), KvError>> {
        let key = key.to_string();
        Box::pin(async move {
            let path = self.path(&key)?;
            let _guard = self.lock.lock().await;
            match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_error(&format!("deleting {}", path.display()), e)),
            }
        })
    }

    fn list_keys(&self, cursor: Option<u64>) -> BoxFuture<'_, Result<KeyPage, KvError>> {
        Box::pin(async move {
            let mut entries = tokio::fs::read_dir(&self.dir)
                .await
                .map_err(|e| io_error(&format!("listing {}", self.dir.display()), e))?;
            let mut keys = Vec::new();
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(|e| io_error(&format!("listing {}", self.dir.display()), e))?
            {
                let name = entry.file_name();
                // Temporary files start with '.', which encoded keys never do.
                if let Some(key) = name.to_str().and_then(decode_key) {
                    keys.push(key);
                }
            }
            Ok(page(keys, cursor))
        })
    }

    fn increment(&self, key: &str, delta: u64) -> BoxFuture<'_, Result<u64, KvError>> {
        let key = key.to_string();
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            let current = match self.read(&key).await? {
                Some(value) => parse_counter(&key, &value)?,
                None => 0,
            };
            let next = add_counter(&key, current, delta)?;
            self.write(&key, next.to_string().as_bytes()).await?;
            Ok(next)
        })
    }
}

fn io_error(what: &str, e: std::io::Error) -> KvError {
    KvError::Other(format!("{what}: {e}"))
}

fn uuid_like_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A key as a file name: `A-Z a-z 0-9 _ -` kept, every other byte `%XX`.
pub(crate) fn encode_key(key: &str) -> Result<String, KvError> {
    if key.is_empty() {
        return Err(KvError::Other("the key is empty".into()));
    }
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > MAX_ENCODED_KEY {
        return Err(KvError::Other(format!(
            "the key is too long for the filesystem backend ({} bytes encoded, at most {MAX_ENCODED_KEY})",
            out.len()
        )));
    }
    Ok(out)
}

/// The key a file name encodes; `None` for names [`encode_key`] never produces.
pub(crate) fn decode_key(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = name.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    if out.is_empty() {
        return None;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_file_names() {
        for key in [
            "plain",
            "a/b",
            "../../etc/passwd",
            ".hidden",
            "ünï cødé",
            "%41",
            "x.y",
        ] {
            let name = encode_key(key).unwrap();
            assert!(!name.contains('/') && !name.starts_with('.'), "{name}");
            assert_eq!(decode_key(&name).as_deref(), Some(key), "{name}");
        }
        assert!(encode_key("").is_err());
        assert!(encode_key(&"/".repeat(100)).is_err());
        assert_eq!(decode_key(".k.tmp-1-2"), None);
        assert_eq!(decode_key("%4"), None);
    }

    #[tokio::test]
    async fn a_bucket_stores_lists_counts_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = FilesystemKeyValue::new(dir.path());
        let bucket = store.open("b1").await.unwrap();
        assert_eq!(bucket.get("k").await.unwrap(), None);
        bucket.set("k", b"v".to_vec()).await.unwrap();
        bucket.set("a/b", b"w".to_vec()).await.unwrap();
        assert_eq!(bucket.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
        assert!(bucket.exists("a/b").await.unwrap());
        assert_eq!(bucket.list_keys(None).await.unwrap().keys, ["a/b", "k"]);
        // Another open of the same name sees the same data (and the data is on disk).
        let again = store.open("b1").await.unwrap();
        assert_eq!(again.get("a/b").await.unwrap().as_deref(), Some(&b"w"[..]));
        assert!(dir.path().join("b1").join("a%2Fb").is_file());
        bucket.delete("k").await.unwrap();
        bucket.delete("k").await.unwrap();
        assert!(!bucket.exists("k").await.unwrap());
        assert!(store.open("../x").await.is_err());
    }

    #[tokio::test]
    async fn concurrent_increments_are_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FilesystemKeyValue::new(dir.path()));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let bucket = store.open("counters").await.unwrap();
                for _ in 0..25 {
                    bucket.increment("hits", 2).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let bucket = store.open("counters").await.unwrap();
        assert_eq!(bucket.get("hits").await.unwrap().as_deref(), Some(&b"400"[..]));
        bucket.set("text", b"nope".to_vec()).await.unwrap();
        assert!(bucket.increment("text", 1).await.is_err());
    }
}
