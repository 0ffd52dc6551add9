//! `wasi:keyvalue@0.2.0-draft` (`store`, `atomics`, `batch`) for components, served by the workload's
//! [`KeyValueStore`](crate::keyvalue::KeyValueStore). Errors of the store become the interface's
//! `error` values; nothing here traps the guest.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, Resource};

use super::state::InstanceState;
use crate::keyvalue::{Bucket, Counted, KvError};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "weft:runtime/keyvalue",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::BucketHandle,
        },
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

/// An open bucket in a store's resource table (public only because generated bindings name it).
pub struct BucketHandle {
    bucket: Arc<dyn Bucket>,
}

/// Adds the three interfaces to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    store::add_to_linker::<InstanceState, HasSelf<InstanceState>>(linker, |s| s)?;
    atomics::add_to_linker::<InstanceState, HasSelf<InstanceState>>(linker, |s| s)?;
    batch::add_to_linker::<InstanceState, HasSelf<InstanceState>>(linker, |s| s)?;
    Ok(())
}

fn to_wit(err: KvError) -> store::Error {
    match err {
        KvError::NoSuchStore => store::Error::NoSuchStore,
        KvError::AccessDenied => store::Error::AccessDenied,
        KvError::Other(message) => store::Error::Other(message),
    }
}

type KvResult<T> = wasmtime::Result<Result<T, store::Error>>;

impl InstanceState {
    fn keyvalue(&self) -> Result<Arc<Counted>, store::Error> {
        self.keyvalue.clone().ok_or_else(|| {
            store::Error::Other("this host has no wasi:keyvalue backend configured".to_string())
        })
    }

    fn bucket(&self, handle: &Resource<BucketHandle>) -> wasmtime::Result<Arc<dyn Bucket>> {
        Ok(self.table.get(handle)?.bucket.clone())
    }

    /// Runs one bucket operation, counting it.
    async fn on_bucket<T, F>(
        &mut self,
        handle: &Resource<BucketHandle>,
        operation: &'static str,
        f: impl FnOnce(Arc<dyn Bucket>) -> F,
    ) -> KvResult<T>
    where
        F: Future<Output = Result<T, KvError>>,
    {
        let bucket = self.bucket(handle)?;
        let counted = match self.keyvalue() {
            Ok(counted) => counted,
            Err(e) => return Ok(Err(e)),
        };
        Ok(counted.count(operation, f(bucket).await).map_err(to_wit))
    }
}

impl store::Host for InstanceState {
    async fn open(&mut self, identifier: String) -> KvResult<Resource<BucketHandle>> {
        let counted = match self.keyvalue() {
            Ok(counted) => counted,
            Err(e) => return Ok(Err(e)),
        };
        match counted.count("open", counted.store.open(&identifier).await) {
            Ok(bucket) => Ok(Ok(self.table.push(BucketHandle { bucket })?)),
            Err(e) => Ok(Err(to_wit(e))),
        }
    }
}

impl store::HostBucket for InstanceState {
    async fn get(&mut self, bucket: Resource<BucketHandle>, key: String) -> KvResult<Option<Vec<u8>>> {
        self.on_bucket(&bucket, "get", |b| async move { b.get(&key).await })
            .await
    }

    async fn set(&mut self, bucket: Resource<BucketHandle>, key: String, value: Vec<u8>) -> KvResult<()> {
        self.on_bucket(&bucket, "set", |b| async move { b.set(&key, value).await })
            .await
    }

    async fn delete(&mut self, bucket: Resource<BucketHandle>, key: String) -> KvResult<()> {
        self.on_bucket(&bucket, "delete", |b| async move { b.delete(&key).await })
            .await
    }

    async fn exists(&mut self, bucket: Resource<BucketHandle>, key: String) -> KvResult<bool> {
        self.on_bucket(&bucket, "exists", |b| async move { b.exists(&key).await })
            .await
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<BucketHandle>,
        cursor: Option<u64>,
    ) -> KvResult<store::KeyResponse> {
        self.on_bucket(&bucket, "list_keys", |b| async move {
            let page = b.list_keys(cursor).await?;
            Ok(store::KeyResponse {
                keys: page.keys,
                cursor: page.cursor,
            })
        })
        .await
    }

    async fn drop(&mut self, bucket: Resource<BucketHandle>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for InstanceState {
    async fn increment(&mut self, bucket: Resource<BucketHandle>, key: String, delta: u64) -> KvResult<u64> {
        self.on_bucket(
            &bucket,
            "increment",
            |b| async move { b.increment(&key, delta).await },
        )
        .await
    }
}

/// A key and its value.
type Pair = (String, Vec<u8>);

impl batch::Host for InstanceState {
    async fn get_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        keys: Vec<String>,
    ) -> KvResult<Vec<Option<Pair>>> {
        self.on_bucket(&bucket, "get_many", |b| async move {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                let value = b.get(&key).await?;
                out.push(value.map(|v| (key, v)));
            }
            Ok(out)
        })
        .await
    }

    async fn set_many(&mut self, bucket: Resource<BucketHandle>, key_values: Vec<Pair>) -> KvResult<()> {
        self.on_bucket(&bucket, "set_many", |b| async move {
            for (key, value) in key_values {
                b.set(&key, value).await?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_many(&mut self, bucket: Resource<BucketHandle>, keys: Vec<String>) -> KvResult<()> {
        self.on_bucket(&bucket, "delete_many", |b| async move {
            for key in keys {
                b.delete(&key).await?;
            }
            Ok(())
        })
        .await
    }
}
