//! The Wasmtime backend: `wasi:http` components, one fresh instance per request, pooled.
//!
//! One `Engine` (pooling allocator, epoch interruption) and one `Linker` serve every workload.
//! Components are fetched into the content-addressed cache, compiled once per digest and engine
//! (artifacts on disk), and pre-instantiated once per digest; a request then costs a `Store` and an
//! instantiation from a warm pool slot (a few microseconds).
//!
//! Per request: a memory limit (the component's or the backend default), a CPU-time budget counted in
//! epoch ticks (the component also yields every tick so it cannot monopolise a thread), a wall-clock
//! limit, a per-workload concurrency cap and a backend-wide instance cap (both answer `503` with
//! `Retry-After` instead of queueing), and an outgoing-HTTP allowlist that fails closed.

mod compile;
mod config;
mod state;
mod workload;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use config::{PagemapScan, WasmtimeConfig};
use tokio::sync::Semaphore;
use wasmtime::Engine;

use self::compile::{CompileCache, PrepareError};
use self::state::OutgoingPolicy;
use self::workload::{Preopen, Shared, WasmtimeWorkload, WorkloadParts};
use crate::allowlist::AllowedHosts;
use crate::backend::{BackendHealth, BoxFuture, RuntimeBackend, Workload};
use crate::error::RuntimeError;
use crate::metrics::{OutgoingResult, RuntimeMetrics};
use crate::source::{Fetcher, FetcherConfig};
use crate::spec::{ComponentSpec, VolumeKind, WorkloadSpec};

const BACKEND: &str = "wasmtime";

/// The Wasmtime runtime backend.
pub struct WasmtimeBackend {
    config: WasmtimeConfig,
    engine: Engine,
    pooling: bool,
    compiled: Arc<CompileCache>,
    fetcher: Fetcher,
    shared: Arc<Shared>,
    ticker_stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for WasmtimeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmtimeBackend")
            .field("config", &self.config)
            .field("pooling", &self.pooling)
            .finish()
    }
}

impl WasmtimeBackend {
    /// Creates the engine (falling back to on-demand allocation if the pool cannot be reserved), the
    /// caches and the epoch ticker thread.
    pub fn new(config: WasmtimeConfig, metrics: RuntimeMetrics) -> Result<Self, RuntimeError> {
        let io = |what: String| move |source| RuntimeError::Io { what, source };
        std::fs::create_dir_all(&config.cache_dir)
            .map_err(io(format!("creating {}", config.cache_dir.display())))?;
        let engine_error = |e: wasmtime::Error| RuntimeError::Io {
            what: "creating the Wasmtime engine".into(),
            source: std::io::Error::other(format!("{e:#}")),
        };
        let (engine, pooling) = match Engine::new(&config.engine_config(config.pooling)) {
            Ok(engine) => (engine, config.pooling),
            Err(err) if config.pooling => {
                tracing::warn!(error = %format!("{err:#}"), "pooling allocator unavailable; allocating instances on demand");
                (
                    Engine::new(&config.engine_config(false)).map_err(engine_error)?,
                    false,
                )
            }
            Err(err) => return Err(engine_error(err)),
        };
        let linker = state::linker(&engine).map_err(engine_error)?;
        let compiled = Arc::new(CompileCache::new(
            engine.clone(),
            linker,
            &config.cache_dir,
            metrics.clone(),
        ));
        let fetcher = Fetcher::new(
            FetcherConfig {
                cache_dir: config.cache_dir.clone(),
                max_size: config.max_component_size,
                timeout: config.fetch_timeout,
                insecure_registries: config.insecure_registries.clone(),
            },
            metrics.clone(),
        )
        .map_err(|e| RuntimeError::Io {
            what: "preparing the component cache".into(),
            source: std::io::Error::other(e),
        })?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.clone(), config.epoch_tick, ticker_stop.clone())
            .map_err(io("starting the epoch ticker thread".into()))?;
        let shared = Arc::new(Shared {
            instances: Arc::new(Semaphore::new(config.max_instances as usize)),
            metrics,
        });
        tracing::info!(
            pooling,
            max_instances = config.max_instances,
            cache = %config.cache_dir.display(),
            "wasmtime backend ready"
        );
        Ok(Self {
            config,
            engine,
            pooling,
            compiled,
            fetcher,
            shared,
            ticker_stop,
        })
    }

    /// Whether instances come from the pooling allocator.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// The engine (for tools that precompile with identical settings).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Where the precompiled artifact of a component with this digest is cached.
    pub fn artifact_path(&self, digest: &crate::source::Digest) -> PathBuf {
        self.compiled.artifact_path(digest)
    }

    /// The fetcher (shares the backend's cache and metrics).
    pub fn fetcher(&self) -> &Fetcher {
        &self.fetcher
    }

    async fn start_workload(&self, spec: WorkloadSpec) -> Result<Arc<dyn Workload>, RuntimeError> {
        validate(&spec, &self.config)?;
        let prepared = futures::future::try_join_all(spec.components.iter().map(|c| self.prepare(c))).await?;
        let mut leases = Vec::new();
        let mut http = Vec::new();
        let mut missing = Vec::new();
        for (component, (prepared, lease)) in spec.components.iter().zip(prepared) {
            leases.push(lease);
            match (&prepared.proxy, &prepared.proxy_error) {
                (Some(proxy), _) => http.push((component, proxy.clone())),
                (None, error) => {
                    missing.push(format!("{}: {}", component.name, error.as_deref().unwrap_or("-")))
                }
            }
        }
        let (component, proxy) = match http.len() {
            1 => http.pop().expect("one element"),
            0 => {
                return Err(RuntimeError::Link {
                    component: spec
                        .components
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    message: format!(
                        "no component exports wasi:http/incoming-handler, so the workload cannot serve requests ({})",
                        missing.join("; ")
                    ),
                });
            }
            _ => {
                return Err(RuntimeError::InvalidSpec(format!(
                    "more than one component exports wasi:http/incoming-handler ({}); a workload serves HTTP through exactly one",
                    http.iter()
                        .map(|(c, _)| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };
        let resources = &component.local_resources;
        let allowed_hosts = AllowedHosts::parse(&resources.allowed_hosts)
            .map_err(|errors| RuntimeError::InvalidSpec(errors.join("; ")))?;
        let (preopens, scratch_dirs) = self.volumes(&spec, component)?;
        let memory_limit = resources
            .memory_limit_bytes
            .unwrap_or(self.config.default_memory_limit);
        let max_concurrency = if component.max_concurrency > 0 {
            component
                .max_concurrency
                .saturating_mul(component.pool_size.max(1))
        } else {
            self.config.default_max_concurrency
        };
        let parts = WorkloadParts {
            id: spec.id.clone(),
            engine: self.engine.clone(),
            proxy,
            _leases: leases,
            environment: resources
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            config: Arc::new(resources.config.clone()),
            outgoing: Arc::new(OutgoingPolicy {
                allowed: allowed_hosts,
                workload: Arc::from(spec.id.as_str()),
                allowed_count: self.shared.metrics.outgoing_counter(OutgoingResult::Allowed),
                denied_count: self.shared.metrics.outgoing_counter(OutgoingResult::Denied),
            }),
            preopens,
            scratch_dirs,
            memory_limit: usize::try_from(memory_limit).unwrap_or(usize::MAX),
            cpu_ticks: self.config.cpu_ticks(),
            wall_time_limit: self.config.wall_time_limit,
            max_concurrency,
            retry_after: self.config.retry_after,
            max_request_body: self.config.max_request_body,
            inherit_stdio: self.config.inherit_stdio,
            summary: format!(
                "running: {} component(s), HTTP served by {:?}",
                spec.components.len(),
                component.name
            ),
        };
        let workload = WasmtimeWorkload::new(parts, self.shared.clone());
        workload
            .check_instantiation()
            .await
            .map_err(|message| RuntimeError::Link {
                component: component.name.clone(),
                message: format!("test instantiation failed: {message}"),
            })?;
        tracing::info!(
            workload = %spec.id,
            namespace = %spec.namespace,
            name = %spec.name,
            http_component = %component.name,
            max_concurrency,
            memory_limit,
            "workload started"
        );
        Ok(Arc::new(workload))
    }

    async fn prepare(
        &self,
        component: &ComponentSpec,
    ) -> Result<(Arc<compile::Prepared>, compile::Lease), RuntimeError> {
        let fetched = self
            .fetcher
            .fetch(&component.source)
            .await
            .map_err(|source| RuntimeError::Fetch {
                component: component.name.clone(),
                source,
            })?;
        self.compiled
            .prepare(&fetched.digest, &fetched.path)
            .await
            .map_err(|e| match e {
                PrepareError::Compile(message) => RuntimeError::Compile {
                    component: component.name.clone(),
                    digest: fetched.digest.to_string(),
                    message,
                },
                PrepareError::Link(message) => RuntimeError::Link {
                    component: component.name.clone(),
                    message,
                },
            })
    }

    /// Resolves the HTTP component's volume mounts; creates `emptyDir` directories.
    fn volumes(
        &self,
        spec: &WorkloadSpec,
        component: &ComponentSpec,
    ) -> Result<(Vec<Preopen>, Vec<PathBuf>), RuntimeError> {
        let mut preopens = Vec::new();
        let mut scratch = Vec::new();
        let workload_dir = self.config.cache_dir.join("volumes").join(sanitize(&spec.id));
        for mount in &component.local_resources.volume_mounts {
            let volume = spec
                .volumes
                .iter()
                .find(|v| v.name == mount.name)
                .ok_or_else(|| {
                    RuntimeError::InvalidSpec(format!(
                        "volume mount {:?} names no volume of the workload",
                        mount.name
                    ))
                })?;
            let host_path = match &volume.kind {
                VolumeKind::HostPath(path) => {
                    if !path.is_dir() {
                        return Err(RuntimeError::InvalidSpec(format!(
                            "hostPath volume {:?}: {} is not a directory on this host",
                            volume.name,
                            path.display()
                        )));
                    }
                    path.clone()
                }
                VolumeKind::EmptyDir => {
                    let dir = workload_dir.join(sanitize(&volume.name));
                    std::fs::create_dir_all(&dir).map_err(|source| RuntimeError::Io {
                        what: format!("creating {}", dir.display()),
                        source,
                    })?;
                    if !scratch.contains(&workload_dir) {
                        scratch.push(workload_dir.clone());
                    }
                    dir
                }
            };
            preopens.push(Preopen {
                host_path,
                guest_path: mount.mount_path.clone(),
                read_only: mount.read_only,
            });
        }
        Ok((preopens, scratch))
    }
}

impl Drop for WasmtimeBackend {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Release);
    }
}

impl RuntimeBackend for WasmtimeBackend {
    fn name(&self) -> &str {
        BACKEND
    }

    fn start(&self, spec: WorkloadSpec) -> BoxFuture<'_, Result<Arc<dyn Workload>, RuntimeError>> {
        Box::pin(self.start_workload(spec))
    }

    fn probe(&self) -> BackendHealth {
        let free = self.shared.instances.available_permits();
        BackendHealth {
            ready: true,
            message: format!(
                "{} components loaded, {free}/{} instance slots free{}",
                self.compiled.loaded(),
                self.config.max_instances,
                if self.pooling {
                    ""
                } else {
                    " (on-demand allocation)"
                }
            ),
        }
    }
}

/// Checks what can be checked without fetching anything.
fn validate(spec: &WorkloadSpec, config: &WasmtimeConfig) -> Result<(), RuntimeError> {
    if spec.id.is_empty() {
        return Err(RuntimeError::InvalidSpec("the workload has no ID".into()));
    }
    if spec.components.is_empty() {
        return Err(RuntimeError::InvalidSpec("the workload has no components".into()));
    }
    if spec.service.is_some() {
        return Err(RuntimeError::Unsupported {
            backend: BACKEND.into(),
            what: "a long-running service component (workload `service`)".into(),
        });
    }
    let mut names = HashSet::new();
    for component in &spec.components {
        if !names.insert(component.name.as_str()) {
            return Err(RuntimeError::InvalidSpec(format!(
                "two components are named {:?}",
                component.name
            )));
        }
        if let Err(errors) = AllowedHosts::parse(&component.local_resources.allowed_hosts) {
            return Err(RuntimeError::InvalidSpec(format!(
                "component {:?}: {}",
                component.name,
                errors.join("; ")
            )));
        }
        if let Some(limit) = component.local_resources.memory_limit_bytes
            && limit > config.max_memory_limit
        {
            return Err(RuntimeError::InvalidSpec(format!(
                "component {:?} asks for a memory limit of {limit} bytes; this host allows at most {}",
                component.name, config.max_memory_limit
            )));
        }
    }
    let mut volumes = BTreeMap::new();
    for volume in &spec.volumes {
        if volumes.insert(volume.name.as_str(), volume).is_some() {
            return Err(RuntimeError::InvalidSpec(format!(
                "two volumes are named {:?}",
                volume.name
            )));
        }
    }
    Ok(())
}

/// A file-name-safe form of an ID.
fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn spawn_ticker(engine: Engine, tick: Duration, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("weft-epoch-ticker".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        })?;
    Ok(())
}
