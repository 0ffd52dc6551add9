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
mod interfaces;
mod keyvalue;
mod linking;
mod logging;
mod service;
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

use wasmtime::component::InstancePre;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use self::compile::{CompileCache, PrepareError};
use self::linking::{ComponentFacts, LinkPlan, WorkloadLinker};
use self::service::RestartPolicy;
use self::state::{InstanceState, OutgoingPolicy, WorkloadIdentity};
use self::workload::{ComponentContext, Preopen, ServiceParts, Shared, WasmtimeWorkload, WorkloadParts};
use crate::allowlist::AllowedHosts;
use crate::backend::{BackendHealth, BoxFuture, RuntimeBackend, Workload};
use crate::error::RuntimeError;
use crate::keyvalue::Counted;
use crate::metrics::{OutgoingResult, RuntimeMetrics};
use crate::sockets::SocketPolicy;
use crate::source::{Fetcher, FetcherConfig};
use crate::spec::{ComponentSource, LocalResources, VolumeKind, WorkloadSpec};

const BACKEND: &str = "wasmtime";

/// The name a workload's service goes by in errors and logs.
const SERVICE: &str = "service";

/// The names of all components, for errors about the workload as a whole.
fn names(facts: &[ComponentFacts]) -> String {
    facts
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `root` and the components it may call: the components a store started in `root` can run.
fn members(plan: &LinkPlan, root: usize) -> Vec<usize> {
    let mut members = plan.reachable_from(root);
    members.push(root);
    members
}

/// Whether an export name is p2 `wasi:http/incoming-handler`.
fn is_incoming_handler(name: &str) -> bool {
    name.starts_with("wasi:http/incoming-handler@0.2.")
}

/// The Wasmtime runtime backend.
pub struct WasmtimeBackend {
    config: WasmtimeConfig,
    engine: Engine,
    pooling: bool,
    compiled: Arc<CompileCache>,
    fetcher: Fetcher,
    shared: Arc<Shared>,
    ticker_stop: Arc<AtomicBool>,
    interfaces: crate::backend::BackendInterfaces,
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
        let interfaces = crate::backend::BackendInterfaces {
            imports: interfaces::imports(&engine, &linker),
            exports: interfaces::exports(),
        };
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
            interfaces,
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
        let policies = validate(&spec, &self.config)?;
        // The components, then the service (if any): one list, indexes shared by everything below.
        let mut units: Vec<(&str, &ComponentSource, &LocalResources)> = spec
            .components
            .iter()
            .map(|c| (c.name.as_str(), &c.source, &c.local_resources))
            .collect();
        if let Some(service) = &spec.service {
            units.push((SERVICE, &service.source, &service.local_resources));
        }
        let service_index = spec.service.as_ref().map(|_| spec.components.len());
        let prepared =
            futures::future::try_join_all(units.iter().map(|(name, source, _)| self.prepare(name, source)))
                .await?;
        let (prepared, leases): (Vec<_>, Vec<_>) = prepared.into_iter().unzip();
        let facts: Vec<ComponentFacts> = units
            .iter()
            .zip(&prepared)
            .enumerate()
            .map(|(i, ((name, _, _), p))| {
                ComponentFacts::of(name, &p.component, &self.engine, Some(i) == service_index)
            })
            .collect();
        let plan = linking::plan(&facts).map_err(|message| RuntimeError::Link {
            component: names(&facts),
            message,
        })?;
        let pres = self.link(&prepared, &facts, &plan)?;

        let http: Vec<usize> = (0..spec.components.len())
            .filter(|i| facts[*i].exports.iter().any(|e| is_incoming_handler(e)))
            .collect();
        let (http_index, proxy) = match http.as_slice() {
            [i] => {
                let proxy = ProxyPre::new(pres[*i].clone()).map_err(|e| RuntimeError::Link {
                    component: facts[*i].name.clone(),
                    message: format!("{e:#}"),
                })?;
                (*i, Some(proxy))
            }
            [] if spec.service.is_some() => (service_index.expect("a service"), None),
            [] => {
                return Err(RuntimeError::Link {
                    component: names(&facts),
                    message: "no component exports wasi:http/incoming-handler, so the workload cannot serve requests (a workload without HTTP needs a service)".into(),
                });
            }
            several => {
                return Err(RuntimeError::InvalidSpec(format!(
                    "more than one component exports wasi:http/incoming-handler ({}); a workload serves HTTP through exactly one",
                    several
                        .iter()
                        .map(|i| facts[*i].name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };
        let service = match (service_index, &spec.service) {
            (Some(index), Some(svc)) => {
                let command = CommandPre::new(pres[index].clone()).map_err(|e| RuntimeError::Link {
                    component: SERVICE.into(),
                    message: format!("the service must export wasi:cli/run: {e:#}"),
                })?;
                Some(ServiceParts {
                    command,
                    index,
                    members: members(&plan, index),
                    memory_limit: self.memory_limit(&svc.local_resources),
                    policy: RestartPolicy {
                        max_restarts: svc.max_restarts,
                        initial_backoff: self.config.service_restart_backoff,
                        max_backoff: self.config.service_max_backoff,
                    },
                })
            }
            _ => None,
        };

        let mut contexts = Vec::with_capacity(units.len());
        let mut scratch_dirs = Vec::new();
        for ((name, _, resources), policies) in units.iter().zip(policies) {
            let (preopens, scratch) = self.volumes(&spec, name, resources)?;
            for dir in scratch {
                if !scratch_dirs.contains(&dir) {
                    scratch_dirs.push(dir);
                }
            }
            contexts.push(ComponentContext {
                environment: resources
                    .environment
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                config: Arc::new(resources.config.clone()),
                sockets: Arc::new(policies.sockets),
                outgoing: Arc::new(OutgoingPolicy {
                    allowed: policies.allowed_hosts,
                    workload: Arc::from(spec.id.as_str()),
                    allowed_count: self.shared.metrics.outgoing_counter(OutgoingResult::Allowed),
                    denied_count: self.shared.metrics.outgoing_counter(OutgoingResult::Denied),
                }),
                preopens,
            });
        }
        let keyvalue = self.keyvalue_for(&spec)?;
        let http_component = spec.components.get(http_index);
        let max_concurrency = match http_component {
            Some(c) if c.max_concurrency > 0 => c.max_concurrency.saturating_mul(c.pool_size.max(1)),
            _ => self.config.default_max_concurrency,
        };
        let linked = plan.reachable_from(http_index).len();
        let summary = match http_component {
            Some(c) if linked > 0 => format!(
                "running: {} component(s), HTTP served by {:?} linked to {linked} other(s)",
                spec.components.len(),
                c.name
            ),
            Some(c) => format!(
                "running: {} component(s), HTTP served by {:?}",
                spec.components.len(),
                c.name
            ),
            None => format!("running: {} component(s), no HTTP", spec.components.len()),
        };
        let parts = WorkloadParts {
            id: spec.id.clone(),
            engine: self.engine.clone(),
            proxy,
            http_index,
            http_members: members(&plan, http_index),
            contexts: Arc::new(contexts),
            identity: Arc::new(WorkloadIdentity {
                id: spec.id.clone(),
                namespace: spec.namespace.clone(),
                name: spec.name.clone(),
                components: facts.iter().map(|f| f.name.clone()).collect(),
            }),
            keyvalue,
            _leases: leases,
            scratch_dirs,
            memory_limit: self.memory_limit(units[http_index].2),
            cpu_ticks: self.config.cpu_ticks(),
            wall_time_limit: self.config.wall_time_limit,
            max_concurrency,
            retry_after: self.config.retry_after,
            max_request_body: self.config.max_request_body,
            inherit_stdio: self.config.inherit_stdio,
            summary,
        };
        let workload = WasmtimeWorkload::new(parts, service, self.shared.clone());
        workload
            .check_instantiation()
            .await
            .map_err(|message| RuntimeError::Link {
                component: facts[http_index].name.clone(),
                message: format!("test instantiation failed: {message}"),
            })?;
        workload.start_service();
        tracing::info!(
            workload = %spec.id,
            namespace = %spec.namespace,
            name = %spec.name,
            http_component = %facts[http_index].name,
            linked,
            service = spec.service.is_some(),
            max_concurrency,
            "workload started"
        );
        Ok(Arc::new(workload))
    }

    /// The memory limit for a component with `resources`.
    fn memory_limit(&self, resources: &LocalResources) -> usize {
        let bytes = resources
            .memory_limit_bytes
            .unwrap_or(self.config.default_memory_limit);
        usize::try_from(bytes).unwrap_or(usize::MAX)
    }

    /// Pre-instantiates every component: with the host's linker alone when no component imports from
    /// another, else with the workload's own linker.
    fn link(
        &self,
        prepared: &[Arc<compile::Prepared>],
        facts: &[ComponentFacts],
        plan: &LinkPlan,
    ) -> Result<Vec<InstancePre<InstanceState>>, RuntimeError> {
        let failed = |i: usize, message: String| RuntimeError::Link {
            component: facts[i].name.clone(),
            message: self.explain_link_failure(&facts[i], &plan.served[i], message),
        };
        if !plan.has_links() {
            return prepared
                .iter()
                .enumerate()
                .map(|(i, p)| p.base.clone().map_err(|message| failed(i, message)))
                .collect();
        }
        let components: Vec<_> = prepared.iter().map(|p| p.component.clone()).collect();
        WorkloadLinker::build(&self.engine, self.compiled.linker(), &components, facts, plan)
            .map(|linked| linked.pres)
            .map_err(|(i, message)| failed(i, message))
    }

    /// Names the imports of a component that fails to link which neither the workload nor the host
    /// serves; falls back to the linker's own message.
    fn explain_link_failure(
        &self,
        facts: &ComponentFacts,
        served: &[(String, usize, String)],
        message: String,
    ) -> String {
        let missing: Vec<&str> = facts
            .imports
            .iter()
            .filter(|import| !served.iter().any(|(name, _, _)| name == *import))
            .filter(|import| !linking::linker_provides(&self.engine, self.compiled.linker(), import))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            return message;
        }
        format!(
            "it imports {}, which no component of the workload exports and this host does not provide",
            missing.join(", ")
        )
    }

    /// The key-value store the workload's components get: the backend its `wasi:keyvalue` host
    /// interface names in `backend`, else the host's default.
    fn keyvalue_for(&self, spec: &WorkloadSpec) -> Result<Option<Arc<Counted>>, RuntimeError> {
        let requested = spec
            .host_interfaces
            .iter()
            .find(|i| i.namespace == "wasi" && i.package == "keyvalue")
            .and_then(|i| i.config.get("backend"))
            .map(String::as_str);
        let store = self
            .config
            .keyvalue
            .select(requested)
            .map_err(RuntimeError::InvalidSpec)?;
        Ok(store.map(|store| {
            Arc::new(Counted {
                store,
                metrics: self.shared.metrics.clone(),
            })
        }))
    }

    async fn prepare(
        &self,
        name: &str,
        source: &ComponentSource,
    ) -> Result<(Arc<compile::Prepared>, compile::Lease), RuntimeError> {
        let fetched = self
            .fetcher
            .fetch(source)
            .await
            .map_err(|source| RuntimeError::Fetch {
                component: name.to_string(),
                source,
            })?;
        self.compiled
            .prepare(&fetched.digest, &fetched.path)
            .await
            .map_err(|e| match e {
                PrepareError::Compile(message) => RuntimeError::Compile {
                    component: name.to_string(),
                    digest: fetched.digest.to_string(),
                    message,
                },
            })
    }

    /// Resolves a component's volume mounts; creates `emptyDir` directories.
    fn volumes(
        &self,
        spec: &WorkloadSpec,
        component: &str,
        resources: &LocalResources,
    ) -> Result<(Vec<Preopen>, Vec<PathBuf>), RuntimeError> {
        let mut preopens = Vec::new();
        let mut scratch = Vec::new();
        let workload_dir = self.config.cache_dir.join("volumes").join(sanitize(&spec.id));
        for mount in &resources.volume_mounts {
            let volume = spec
                .volumes
                .iter()
                .find(|v| v.name == mount.name)
                .ok_or_else(|| {
                    RuntimeError::InvalidSpec(format!(
                        "component {component:?}: volume mount {:?} names no volume of the workload",
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

    fn interfaces(&self) -> crate::backend::BackendInterfaces {
        self.interfaces.clone()
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

/// The policies [`validate`] parsed for one component (or the service).
struct Policies {
    allowed_hosts: AllowedHosts,
    sockets: SocketPolicy,
}

/// Checks what can be checked without fetching anything; returns each component's (then the
/// service's) parsed policies.
fn validate(spec: &WorkloadSpec, config: &WasmtimeConfig) -> Result<Vec<Policies>, RuntimeError> {
    if spec.id.is_empty() {
        return Err(RuntimeError::InvalidSpec("the workload has no ID".into()));
    }
    if spec.components.is_empty() && spec.service.is_none() {
        return Err(RuntimeError::InvalidSpec(
            "the workload has neither components nor a service".into(),
        ));
    }
    let mut names = HashSet::new();
    let service = spec.service.as_ref().map(|s| (SERVICE, &s.local_resources));
    let units = spec
        .components
        .iter()
        .map(|c| (c.name.as_str(), &c.local_resources))
        .chain(service);
    let mut policies = Vec::new();
    let invalid = |name: &str, errors: Vec<String>| {
        RuntimeError::InvalidSpec(format!("component {name:?}: {}", errors.join("; ")))
    };
    for (i, (name, resources)) in units.enumerate() {
        if i < spec.components.len() && !names.insert(name) {
            return Err(RuntimeError::InvalidSpec(format!(
                "two components are named {name:?}"
            )));
        }
        let allowed_hosts =
            AllowedHosts::parse(&resources.allowed_hosts).map_err(|errors| invalid(name, errors))?;
        let sockets = SocketPolicy::parse(
            &resources.allowed_ip_name_lookups,
            &resources.allowed_host_loopback_ports,
            config.allow_host_loopback,
        )
        .map_err(|errors| invalid(name, errors))?;
        policies.push(Policies {
            allowed_hosts,
            sockets,
        });
        if let Some(limit) = resources.memory_limit_bytes
            && limit > config.max_memory_limit
        {
            return Err(RuntimeError::InvalidSpec(format!(
                "component {name:?} asks for a memory limit of {limit} bytes; this host allows at most {}",
                config.max_memory_limit
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
    Ok(policies)
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
