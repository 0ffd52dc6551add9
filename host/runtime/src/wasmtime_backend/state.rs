//! The per-instance store state: WASI contexts, the memory limiter, the outgoing-HTTP hooks that
//! enforce the allowlist, and the `wasi:config/store` implementation.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{ComponentType, Linker, Lower, ResourceTable};
use wasmtime::{ResourceLimiter, StoreContextMut};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use prometheus_client::metrics::counter::Counter;

use crate::allowlist::AllowedHosts;

/// The `T` of every `Store<T>`: one per request (or per service run).
pub(crate) struct InstanceState {
    /// Per component of the workload: what `current_component` sees of WASI (`None` for components
    /// this store never runs).
    pub wasi: Vec<Option<WasiCtx>>,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    /// Per component: its outgoing-HTTP policy.
    pub hooks: Vec<OutgoingHooks>,
    pub limits: MemoryLimiter,
    /// Per component: its configuration (and the rest of its context).
    pub contexts: Arc<Vec<super::workload::ComponentContext>>,
    /// Epoch ticks the component has run through so far (its CPU-time account).
    pub ticks_used: u64,
    /// Instances of the workload's other components, by component index, created in this store on
    /// their first linked call.
    pub linked: Vec<Option<wasmtime::component::Instance>>,
    /// Index of the component running right now (for log lines).
    pub current_component: usize,
    pub identity: Arc<WorkloadIdentity>,
    pub keyvalue: Option<Arc<crate::keyvalue::Counted>>,
    pub metrics: crate::metrics::RuntimeMetrics,
}

/// Who a store runs for: the workload and its components' names (by index).
#[derive(Debug, Default)]
pub(crate) struct WorkloadIdentity {
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub components: Vec<String>,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: self.wasi[self.current_component]
                .as_mut()
                .expect("a store holds the WASI context of every component it can run"),
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks[self.current_component],
        }
    }
}

impl InstanceState {
    /// The configuration of the component running now.
    fn config(&self) -> &BTreeMap<String, String> {
        &self.contexts[self.current_component].config
    }
}

/// Caps an instance's linear memory and records whether the cap was hit (so the request can be
/// reported as stopped at its memory limit rather than as a generic trap).
pub(crate) struct MemoryLimiter {
    pub limit: usize,
    pub hit: bool,
}

/// Table elements one table may grow to.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            wasmtime::bail!(
                "memory limit exceeded: growing linear memory from {current} to {desired} bytes, limit {} bytes",
                self.limit
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// A workload's outgoing-HTTP policy, shared by its requests.
pub(crate) struct OutgoingPolicy {
    pub allowed: AllowedHosts,
    pub workload: Arc<str>,
    pub allowed_count: Counter,
    pub denied_count: Counter,
}

/// `wasi:http` hooks: outgoing requests go out only when the component's allowlist allows them.
pub(crate) struct OutgoingHooks {
    pub policy: Arc<OutgoingPolicy>,
}

type BoxedFuture<T> = Box<dyn Future<Output = T> + Send>;
type SendResult = Result<
    (
        http::Response<wasmtime_wasi_http::WasiBody>,
        BoxedFuture<Result<(), wasmtime_wasi_http::Error>>,
    ),
    wasmtime_wasi_http::Error,
>;

impl WasiHttpHooks for OutgoingHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: BoxedFuture<Result<(), wasmtime_wasi_http::Error>>,
    ) -> BoxedFuture<SendResult> {
        drop(fut);
        let policy = &self.policy;
        if !policy.allowed.allows_uri(request.uri()) {
            policy.denied_count.inc();
            tracing::info!(
                workload = %policy.workload,
                uri = %request.uri(),
                "outgoing request denied: not in the component's allowedHosts"
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        policy.allowed_count.inc();
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as BoxedFuture<_>,
            ))
        })
    }
}

/// The error variant of `wasi:config/store`.
#[derive(ComponentType, Lower)]
#[component(variant)]
enum ConfigError {
    #[component(name = "upstream")]
    #[allow(dead_code)] // part of the interface; this store never fails
    Upstream(String),
    #[component(name = "io")]
    #[allow(dead_code)]
    Io(String),
}

/// All configuration as key/value pairs.
type ConfigPairs = Vec<(String, String)>;

/// `wasi:config/store` versions served (wasmCloud components use the draft; the rc is current).
const CONFIG_STORE_VERSIONS: [&str; 2] = ["0.2.0-draft", "0.2.0-rc.1"];

/// Adds `wasi:config/store` (both versions), serving the component's `localResources.config`.
pub(crate) fn add_config_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    for version in CONFIG_STORE_VERSIONS {
        let mut store = linker.instance(&format!("wasi:config/store@{version}"))?;
        store.func_wrap(
            "get",
            |ctx: StoreContextMut<'_, InstanceState>,
             (key,): (String,)|
             -> wasmtime::Result<(Result<Option<String>, ConfigError>,)> {
                Ok((Ok(ctx.data().config().get(&key).cloned()),))
            },
        )?;
        store.func_wrap(
            "get-all",
            |ctx: StoreContextMut<'_, InstanceState>,
             (): ()|
             -> wasmtime::Result<(Result<ConfigPairs, ConfigError>,)> {
                let all = ctx
                    .data()
                    .config()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Ok((Ok(all),))
            },
        )?;
    }
    Ok(())
}

/// The linker every component is linked with: WASI p2 (cli, clocks, filesystem, random, sockets —
/// sockets deny everything), `wasi:http`, `wasi:config/store`, `wasi:logging` and `wasi:keyvalue`.
pub(crate) fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<InstanceState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    add_config_to_linker(&mut linker)?;
    super::logging::add_to_linker(&mut linker)?;
    super::keyvalue::add_to_linker(&mut linker)?;
    Ok(linker)
}
