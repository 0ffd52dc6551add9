//! Helpers shared by the runtime's integration tests: a backend in a temporary cache directory,
//! requests against workloads, a real local HTTP server, and pushing components to a registry.

#![allow(dead_code)] // each test file uses a different subset

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sha2::Digest as _;
use weft_runtime::backend::body;
use weft_runtime::{
    ComponentSource, ComponentSpec, LocalResources, RuntimeBackend, RuntimeMetrics, WasmtimeBackend,
    WasmtimeConfig, Workload, WorkloadSpec,
};

/// A backend with a private cache directory.
pub struct TestBackend {
    pub backend: WasmtimeBackend,
    pub metrics: RuntimeMetrics,
    pub dir: tempfile::TempDir,
}

/// Test defaults: a small pool and short limits so limit tests finish quickly.
pub fn test_config(dir: &std::path::Path) -> WasmtimeConfig {
    WasmtimeConfig {
        cache_dir: dir.to_path_buf(),
        max_instances: 64,
        cpu_time_limit: Duration::from_millis(300),
        wall_time_limit: Duration::from_secs(20),
        default_memory_limit: 32 << 20,
        inherit_stdio: false,
        ..WasmtimeConfig::default()
    }
}

impl TestBackend {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    pub fn with(tweak: impl FnOnce(&mut WasmtimeConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::in_dir(dir, tweak)
    }

    /// A backend using an existing cache directory (e.g. to test the on-disk compile cache).
    pub fn in_dir(dir: tempfile::TempDir, tweak: impl FnOnce(&mut WasmtimeConfig)) -> Self {
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let metrics = RuntimeMetrics::default();
        let backend = WasmtimeBackend::new(config, metrics.clone()).expect("create the wasmtime backend");
        Self {
            backend,
            metrics,
            dir,
        }
    }

    pub async fn start(&self, spec: WorkloadSpec) -> Arc<dyn Workload> {
        let id = spec.id.clone();
        self.backend
            .start(spec)
            .await
            .unwrap_or_else(|e| panic!("start {id}: {e}"))
    }
}

/// A file:// reference to a test component.
pub fn file_ref(path: &str) -> String {
    format!("file://{path}")
}

/// A one-component workload.
pub fn spec(id: &str, image: &str, resources: LocalResources) -> WorkloadSpec {
    WorkloadSpec {
        id: id.to_string(),
        namespace: "test".into(),
        name: id.to_string(),
        components: vec![ComponentSpec {
            name: "main".into(),
            source: ComponentSource::new(image),
            local_resources: resources,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A response with its body read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// Sends a request to a workload directly through the backend trait.
pub async fn call(
    workload: &Arc<dyn Workload>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "app.test");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(body::full(body.to_string())).expect("request");
    let response = workload.handle(request).await;
    read(response).await
}

pub async fn get(workload: &Arc<dyn Workload>, path: &str) -> Reply {
    call(workload, "GET", path, &[], "").await
}

pub async fn read(response: Response<weft_runtime::ResponseBody>) -> Reply {
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Polls `condition` every few milliseconds until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    condition()
}

/// A real HTTP/1.1 server on 127.0.0.1 that serves fixed routes and counts requests.
pub struct LocalServer {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl LocalServer {
    /// Serves `routes` (path → body); other paths get 404.
    pub async fn start(routes: Vec<(&'static str, Bytes)>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let routes = Arc::new(routes);
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let routes = routes.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let found = routes
                            .iter()
                            .find(|(p, _)| *p == request.uri().path())
                            .map(|(_, b)| b.clone());
                        async move {
                            let response = match found {
                                Some(bytes) => Response::new(Full::new(bytes)),
                                None => {
                                    let mut r = Response::new(Full::new(Bytes::from_static(b"no such path")));
                                    *r.status_mut() = StatusCode::NOT_FOUND;
                                    r
                                }
                            };
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, hits, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Pushes `wasm` to `registry` as `repository:tag` the way `wkg`/wash publish components (config
/// `application/vnd.wasm.config.v0+json`, one `application/wasm` layer). Returns the manifest digest.
pub async fn push_component(registry: &str, repository: &str, tag: &str, wasm: &[u8]) -> String {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let layer_digest = sha256(wasm);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest],
    }))
    .unwrap();
    let config_digest = sha256(&config);
    for (bytes, digest) in [
        (wasm.to_vec(), layer_digest.clone()),
        (config.clone(), config_digest.clone()),
    ] {
        let start = Request::post(format!("http://{registry}/v2/{repository}/blobs/uploads/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client.request(start).await.expect("start upload");
        assert_eq!(response.status(), StatusCode::ACCEPTED, "start upload");
        let location = response.headers()["location"].to_str().unwrap().to_string();
        let location = if location.starts_with('/') {
            format!("http://{registry}{location}")
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = Request::put(format!("{location}{separator}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(Full::new(Bytes::from(bytes)))
            .unwrap();
        let response = client.request(put).await.expect("upload blob");
        assert_eq!(response.status(), StatusCode::CREATED, "upload blob {digest}");
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/wasm", "digest": layer_digest, "size": wasm.len()}],
    }))
    .unwrap();
    let put = Request::put(format!("http://{registry}/v2/{repository}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(Full::new(Bytes::from(manifest.clone())))
        .unwrap();
    let response = client.request(put).await.expect("put manifest");
    assert_eq!(response.status(), StatusCode::CREATED, "put manifest");
    sha256(&manifest)
}
