//! Where component bytes come from: OCI registries, `file://` and `http(s)://`, with a local
//! content-addressed cache and Kubernetes pull-policy semantics.
//!
//! Cache layout under the cache directory:
//! - `blobs/sha256/<hex>`: component bytes, stored under their verified digest;
//! - `refs/<sha256 of the reference>`: the digest a reference (tag, URL) last resolved to, used by
//!   `IfNotPresent` and `Never`.
//!
//! Every download is size-limited while streaming and hashed; a digest named by the reference or the
//! manifest must match what arrives. Content that is not a WebAssembly component is rejected.

mod client;
mod oci;
pub mod reference;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use reference::{Digest, OciRef, SourceRef};

use crate::error::FetchError;
use crate::metrics::{FetchResult, RuntimeMetrics};
use crate::spec::{ComponentSource, PullPolicy};

/// Settings of a [`Fetcher`].
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    /// Cache directory (shared with the compiled-artifact cache).
    pub cache_dir: PathBuf,
    /// Largest component accepted.
    pub max_size: u64,
    /// Timeout for one whole fetch.
    pub timeout: Duration,
    /// Registries reached over plain HTTP (`host[:port]`, or `*` for all), besides loopback ones.
    pub insecure_registries: Vec<String>,
}

/// A component's bytes, available locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Content digest of the component.
    pub digest: Digest,
    /// Where the bytes are (in the blob cache).
    pub path: PathBuf,
    /// Whether the source was not contacted.
    pub from_cache: bool,
}

/// Fetches components into the local cache.
#[derive(Clone)]
pub struct Fetcher {
    config: FetcherConfig,
    client: client::HttpClient,
    metrics: RuntimeMetrics,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").field("config", &self.config).finish()
    }
}

impl Fetcher {
    /// Creates a fetcher; creates the cache directories.
    pub fn new(config: FetcherConfig, metrics: RuntimeMetrics) -> Result<Self, FetchError> {
        for dir in ["blobs/sha256", "refs", "tmp"] {
            let path = config.cache_dir.join(dir);
            std::fs::create_dir_all(&path).map_err(|source| FetchError::Io { path, source })?;
        }
        Ok(Self {
            client: client::HttpClient::new(),
            config,
            metrics,
        })
    }

    /// The blob-cache path of `digest`.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.config.cache_dir.join("blobs/sha256").join(digest.hex())
    }

    /// Makes the component named by `source` available locally, honouring its pull policy.
    pub async fn fetch(&self, source: &ComponentSource) -> Result<Fetched, FetchError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.config.timeout, self.fetch_inner(source)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Network {
                reference: source.image.clone(),
                detail: format!("timed out after {:?}", self.config.timeout),
            }),
        };
        match &result {
            Ok(fetched) if fetched.from_cache => self.metrics.observe_fetch(FetchResult::Cached, None),
            Ok(_) => self
                .metrics
                .observe_fetch(FetchResult::Fetched, Some(started.elapsed().as_secs_f64())),
            Err(_) => self.metrics.observe_fetch(FetchResult::Error, None),
        }
        result
    }

    async fn fetch_inner(&self, source: &ComponentSource) -> Result<Fetched, FetchError> {
        let reference = reference::parse(&source.image)?;
        match &reference {
            SourceRef::File(path) => self.fetch_file(&source.image, path).await,
            SourceRef::Http(uri) => {
                let key = uri.to_string();
                if let Some(cached) = self.cached(&key, source.pull_policy)? {
                    return Ok(cached);
                }
                let limit = self.config.max_size;
                let (digest, tmp) = self
                    .client
                    .download(&source.image, uri, None, limit, &self.tmp_path())
                    .await?;
                let fetched = self.store(&source.image, tmp, digest)?;
                self.remember(&key, &fetched.digest)?;
                Ok(fetched)
            }
            SourceRef::Oci(oci_ref) => {
                let key = oci_ref.to_string();
                if let Some(cached) = self.cached(&key, source.pull_policy)? {
                    return Ok(cached);
                }
                let insecure = self.is_insecure(oci_ref);
                let puller = oci::Puller {
                    client: &self.client,
                    reference: oci_ref,
                    original: &source.image,
                    credentials: source.credentials.as_ref(),
                    plain_http: insecure,
                    max_size: self.config.max_size,
                };
                let layer = puller.resolve_layer().await?;
                let path = self.blob_path(&layer.digest);
                let fetched = if path.is_file() {
                    Fetched {
                        digest: layer.digest,
                        path,
                        from_cache: false,
                    }
                } else {
                    let tmp = puller.download_blob(&layer, &self.tmp_path()).await?;
                    self.store(&source.image, tmp, layer.digest)?
                };
                self.remember(&key, &fetched.digest)?;
                Ok(fetched)
            }
        }
    }

    /// The cached content for `key` if the policy allows using it; an error for `Never` without one.
    fn cached(&self, key: &str, policy: PullPolicy) -> Result<Option<Fetched>, FetchError> {
        if policy == PullPolicy::Always {
            return Ok(None);
        }
        let recorded = std::fs::read_to_string(self.ref_path(key))
            .ok()
            .and_then(|d| Digest::parse(d.trim()).ok());
        if let Some(digest) = recorded {
            let path = self.blob_path(&digest);
            if path.is_file() {
                return Ok(Some(Fetched {
                    digest,
                    path,
                    from_cache: true,
                }));
            }
        }
        if policy == PullPolicy::Never {
            return Err(FetchError::NotCached {
                reference: key.to_string(),
            });
        }
        Ok(None)
    }

    async fn fetch_file(&self, original: &str, path: &Path) -> Result<Fetched, FetchError> {
        let io = |source: std::io::Error| FetchError::Io {
            path: path.to_path_buf(),
            source,
        };
        let metadata = tokio::fs::metadata(path)
            .await
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => FetchError::NotFound {
                    reference: original.to_string(),
                    detail: format!("no file at {}", path.display()),
                },
                _ => io(source),
            })?;
        if metadata.len() > self.config.max_size {
            return Err(FetchError::TooLarge {
                reference: original.to_string(),
                size: metadata.len(),
                limit: self.config.max_size,
            });
        }
        let bytes = tokio::fs::read(path).await.map_err(io)?;
        check_component(original, &bytes)?;
        let digest = Digest::of(&bytes);
        let blob = self.blob_path(&digest);
        if !blob.is_file() {
            let tmp = self.tmp_path();
            std::fs::write(&tmp, &bytes).map_err(|source| FetchError::Io {
                path: tmp.clone(),
                source,
            })?;
            std::fs::rename(&tmp, &blob).map_err(|source| FetchError::Io {
                path: blob.clone(),
                source,
            })?;
        }
        // A local file is always read: `from_cache` is false so the fetch is counted as a fetch.
        Ok(Fetched {
            digest,
            path: blob,
            from_cache: false,
        })
    }

    /// Moves a verified download into the blob cache after checking it is a component.
    fn store(&self, original: &str, tmp: PathBuf, digest: Digest) -> Result<Fetched, FetchError> {
        let cleanup = |e: FetchError| {
            let _ = std::fs::remove_file(&tmp);
            e
        };
        let mut head = [0_u8; 8];
        let read = std::fs::File::open(&tmp)
            .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
            .map_err(|source| {
                cleanup(FetchError::Io {
                    path: tmp.clone(),
                    source,
                })
            })?;
        check_component(original, &head[..read]).map_err(cleanup)?;
        let path = self.blob_path(&digest);
        std::fs::rename(&tmp, &path).map_err(|source| {
            cleanup(FetchError::Io {
                path: path.clone(),
                source,
            })
        })?;
        Ok(Fetched {
            digest,
            path,
            from_cache: false,
        })
    }

    fn remember(&self, key: &str, digest: &Digest) -> Result<(), FetchError> {
        let path = self.ref_path(key);
        let tmp = self.tmp_path();
        std::fs::write(&tmp, digest.as_str()).map_err(|source| FetchError::Io {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &path).map_err(|source| FetchError::Io { path, source })
    }

    fn ref_path(&self, key: &str) -> PathBuf {
        self.config
            .cache_dir
            .join("refs")
            .join(Digest::of(key.as_bytes()).hex())
    }

    fn tmp_path(&self) -> PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        self.config
            .cache_dir
            .join("tmp")
            .join(format!("{}-{n}", std::process::id()))
    }

    fn is_insecure(&self, reference: &OciRef) -> bool {
        let host = reference.registry.as_str();
        let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
        matches!(name, "localhost" | "127.0.0.1" | "[::1]")
            || self
                .config
                .insecure_registries
                .iter()
                .any(|r| r == "*" || r.eq_ignore_ascii_case(host) || r.eq_ignore_ascii_case(name))
    }
}

/// Checks the WebAssembly header: a component has version 0x0d and layer 1; a core module version 1.
pub(crate) fn check_component(reference: &str, head: &[u8]) -> Result<(), FetchError> {
    let not = |detail: &str| FetchError::NotAComponent {
        reference: reference.to_string(),
        detail: detail.to_string(),
    };
    if head.len() < 8 || &head[..4] != b"\0asm" {
        return Err(not("the content does not start with the WebAssembly magic bytes"));
    }
    match head[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(not(
            "it is a core WebAssembly module; build it as a component (wasm32-wasip2)",
        )),
        _ => Err(not("unknown WebAssembly version or layer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_tells_modules_from_components() {
        assert!(check_component("x", b"\0asm\x0d\x00\x01\x00rest").is_ok());
        let module = check_component("x", b"\0asm\x01\x00\x00\x00")
            .unwrap_err()
            .to_string();
        assert!(module.contains("core WebAssembly module"), "{module}");
        let text = check_component("x", b"<html>").unwrap_err().to_string();
        assert!(text.contains("magic bytes"), "{text}");
    }
}
