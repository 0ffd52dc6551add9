//! NATS JetStream KV: bucket `b` is the JetStream KV bucket `b`, created (one revision of history)
//! when missing, as wasmCloud's NATS key-value backend does. Increments are compare-and-set on the
//! entry's revision, so they are atomic across every host sharing the bucket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::TryStreamExt;

use super::{Bucket, KeyPage, KeyValueStore, KvError, add_counter, check_bucket_name, page, parse_counter};
use crate::backend::BoxFuture;

/// Compare-and-set attempts of one increment before it gives up (each lost race means another
/// writer made progress).
const INCREMENT_ATTEMPTS: usize = 64;

/// The NATS JetStream KV backend.
pub struct NatsKeyValue {
    jetstream: jetstream::Context,
    buckets: Mutex<HashMap<String, kv::Store>>,
}

impl std::fmt::Debug for NatsKeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsKeyValue").finish_non_exhaustive()
    }
}

impl NatsKeyValue {
    /// A store on the JetStream of `client`'s account.
    pub fn new(client: async_nats::Client) -> Self {
        Self {
            jetstream: jetstream::new(client),
            buckets: Mutex::default(),
        }
    }

    async fn store(&self, bucket: &str) -> Result<kv::Store, KvError> {
        if let Some(store) = self.buckets.lock().expect("kv bucket map").get(bucket) {
            return Ok(store.clone());
        }
        let store = match self.jetstream.get_key_value(bucket).await {
            Ok(store) => store,
            Err(get_error) => self
                .jetstream
                .create_key_value(kv::Config {
                    bucket: bucket.to_string(),
                    history: 1,
                    ..Default::default()
                })
                .await
                .map_err(|create_error| {
                    KvError::Other(format!(
                        "opening JetStream KV bucket {bucket:?}: {get_error}; creating it: {create_error}"
                    ))
                })?,
        };
        self.buckets
            .lock()
            .expect("kv bucket map")
            .insert(bucket.to_string(), store.clone());
        Ok(store)
    }
}

impl KeyValueStore for NatsKeyValue {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn open(&self, bucket: &str) -> BoxFuture<'_, Result<Arc<dyn Bucket>, KvError>> {
        let bucket = bucket.to_string();
        Box::pin(async move {
            check_bucket_name(&bucket)?;
            let store = self.store(&bucket).await?;
            Ok(Arc::new(NatsBucket { store }) as Arc<dyn Bucket>)
        })
    }
}

struct NatsBucket {
    store: kv::Store,
}

fn other(what: &str, key: &str, e: impl std::fmt::Display) -> KvError {
    KvError::Other(format!("{what} {key:?}: {e}"))
}

impl Bucket for NatsBucket {
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<Vec<u8>>, KvError>> {
        let key = key.to_string();
        Box::pin(async move {
            let value = self
                .store
                .get(key.as_str())
                .await
                .map_err(|e| other("get", &key, e))?;
            Ok(value.map(|b| b.to_vec()))
        })
    }

    fn set(&self, key: &str, value: Vec<u8>) -> BoxFuture<'_, Result<(), KvError>> {
        let key = key.to_string();
        Box::pin(async move {
            self.store
                .put(key.as_str(), Bytes::from(value))
                .await
                .map_err(|e| other("set", &key, e))?;
            Ok(())
        })
    }

    fn delete(&self, key: &str) -> BoxFuture<'_, Result<(), KvError>> {
        let key = key.to_string();
        Box::pin(async move {
            self.store
                .delete(key.as_str())
                .await
                .map_err(|e| other("delete", &key, e))
        })
    }

    fn list_keys(&self, cursor: Option<u64>) -> BoxFuture<'_, Result<KeyPage, KvError>> {
        Box::pin(async move {
            let keys: Vec<String> = self
                .store
                .keys()
                .await
                .map_err(|e| other("list", "keys", e))?
                .try_collect()
                .await
                .map_err(|e| other("list", "keys", e))?;
            Ok(page(keys, cursor))
        })
    }

    fn increment(&self, key: &str, delta: u64) -> BoxFuture<'_, Result<u64, KvError>> {
        let key = key.to_string();
        Box::pin(async move {
            for _ in 0..INCREMENT_ATTEMPTS {
                let entry = self
                    .store
                    .entry(key.as_str())
                    .await
                    .map_err(|e| other("increment", &key, e))?;
                let live = entry.filter(|e| e.operation == kv::Operation::Put);
                let next = match &live {
                    Some(entry) => add_counter(&key, parse_counter(&key, &entry.value)?, delta)?,
                    None => delta,
                };
                let value = Bytes::from(next.to_string());
                let written = match &live {
                    Some(entry) => self
                        .store
                        .update(key.as_str(), value, entry.revision)
                        .await
                        .map_err(|e| (e.kind() == kv::UpdateErrorKind::WrongLastRevision, e.to_string())),
                    None => self
                        .store
                        .create(key.as_str(), value)
                        .await
                        .map_err(|e| (e.kind() == kv::CreateErrorKind::AlreadyExists, e.to_string())),
                };
                match written {
                    Ok(_) => return Ok(next),
                    // Another writer got there first: read again.
                    Err((true, _)) => continue,
                    Err((false, e)) => return Err(other("increment", &key, e)),
                }
            }
            Err(KvError::Other(format!(
                "increment {key:?}: lost {INCREMENT_ATTEMPTS} compare-and-set races in a row"
            )))
        })
    }
}
