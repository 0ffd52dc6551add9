//! The control API's behaviour: what the host does for `heartbeat`, `workload.start`, `workload.status`
//! and `workload.stop`, independent of how the bytes arrive (see `nats.rs` for the transport).
//!
//! Replies follow wasmCloud v2 hosts, with these deliberate differences (documented in `docs/host.md`):
//! - a payload that cannot be decoded gets an ERROR reply naming the problem (wasmCloud logs it and sends
//!   nothing, so the operator waits for its timeout); `heartbeat` ignores its payload, as wasmCloud does;
//! - a start that takes longer than the start timeout is abandoned with an ERROR reply instead of
//!   committing after the operator has given up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use weft_host_api::{self as wire, Command, WorkloadState, WorkloadStatus, subjects};
use weft_runtime::WorkloadStatus as RuntimeStatus;
use weft_runtime::backend::{BoxFuture, RequestBody, ResponseBody, RuntimeBackend, Workload, body};

use crate::convert;
use crate::facts::FactsSampler;
use crate::heartbeat::{HostInfo, WorkloadCounts, build_heartbeat};
use crate::metrics::{HostMetrics, WorkloadRequestMetrics};
use crate::routing::RouteTable;
use crate::workloads::{Commit, SlotState, StopStep, WorkloadTable};

/// A started workload as the ingress and the control API see it.
pub struct RouteTarget {
    /// The workload ID.
    pub id: String,
    /// `<namespace>/<name>` of the Workload object (the metrics label).
    pub label: Arc<str>,
    /// The runtime's handle.
    pub workload: Arc<dyn Workload>,
    /// The ingress request metrics of this workload, resolved once.
    pub requests: WorkloadRequestMetrics,
}

impl std::fmt::Debug for RouteTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTarget")
            .field("id", &self.id)
            .field("label", &self.label)
            .finish()
    }
}

/// Shared handle type of the workload table and the route table.
pub type Target = Arc<RouteTarget>;

/// Settings of the control API.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// How long in-flight requests of a stopping workload may run before they are cancelled.
    pub stop_grace: Duration,
    /// How long a start (fetch, compile, link) may take before it is abandoned.
    pub start_timeout: Duration,
}

/// The host's control-plane state and behaviour.
pub struct Controller {
    info: HostInfo,
    facts: FactsSampler,
    table: WorkloadTable<Target>,
    routes: Arc<RouteTable<Target>>,
    backend: Arc<dyn RuntimeBackend>,
    metrics: HostMetrics,
    config: ControlConfig,
    shutting_down: AtomicBool,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("host_id", &self.info.identity.id)
            .finish()
    }
}

impl Controller {
    /// A controller for a host described by `info`.
    pub fn new(
        info: HostInfo,
        backend: Arc<dyn RuntimeBackend>,
        routes: Arc<RouteTable<Target>>,
        metrics: HostMetrics,
        config: ControlConfig,
    ) -> Self {
        Self {
            info,
            facts: FactsSampler::new(),
            table: WorkloadTable::default(),
            routes,
            backend,
            metrics,
            config,
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Refuses new starts from now on (the host is shutting down); status and stop keep working.
    pub fn refuse_starts(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// The host's static description.
    pub fn info(&self) -> &HostInfo {
        &self.info
    }

    /// A fresh heartbeat.
    pub fn heartbeat(&self) -> wire::HostHeartbeat {
        let counts = self.table.counts();
        build_heartbeat(
            &self.info,
            &self.facts.sample(),
            WorkloadCounts {
                workloads: counts.total(),
                components: counts.running_components,
            },
        )
    }

    /// Handles one message on `runtime.host.<id>.>`: the encoded reply, or `None` when the message
    /// names no known command (logged and counted; no reply, as wasmCloud hosts do).
    pub async fn dispatch(&self, subject: &str, payload: &[u8]) -> Option<Vec<u8>> {
        let suffix = subjects::command_suffix(subject).unwrap_or(subject);
        let Some(command) = Command::from_suffix(suffix) else {
            self.metrics.nats_unknown();
            tracing::warn!(subject, command = suffix, "ignoring unknown command");
            return None;
        };
        self.metrics.nats_request(command.as_str());
        let reply = match command {
            Command::Heartbeat => encode(&self.heartbeat()),
            Command::WorkloadStart => match wire::from_json::<wire::WorkloadStartRequest>(payload) {
                Ok(req) => encode(&wire::WorkloadStartResponse::new(self.start(req).await)),
                Err(e) => self.malformed(command, payload, e),
            },
            Command::WorkloadStatus => match wire::from_json::<wire::WorkloadStatusRequest>(payload) {
                Ok(req) => encode(&wire::WorkloadStatusResponse::new(self.status(&req.workload_id))),
                Err(e) => self.malformed(command, payload, e),
            },
            Command::WorkloadStop => match wire::from_json::<wire::WorkloadStopRequest>(payload) {
                Ok(req) => encode(&wire::WorkloadStopResponse::new(
                    self.stop(&req.workload_id).await,
                )),
                Err(e) => self.malformed(command, payload, e),
            },
        };
        Some(reply)
    }

    fn malformed(&self, command: Command, payload: &[u8], err: serde_json::Error) -> Vec<u8> {
        self.metrics.nats_malformed(command.as_str());
        let snippet = wire::payload_snippet(payload);
        tracing::warn!(%command, error = %err, payload = %snippet, "malformed control request");
        let status = WorkloadStatus::new(
            workload_id_of(payload),
            WorkloadState::Error,
            format!("malformed {command} request: {err}; payload: {snippet}"),
        );
        // The three workload replies share one JSON shape: {"workloadStatus": {...}}.
        encode(&wire::WorkloadStatusResponse::new(status))
    }

    /// `workload.start`.
    pub async fn start(&self, req: wire::WorkloadStartRequest) -> WorkloadStatus {
        let id = req.workload_id.clone();
        let error = |message: String| {
            tracing::error!(workload_id = %id, reason = %message, "failed to start workload");
            WorkloadStatus::new(id.clone(), WorkloadState::Error, message)
        };
        if self.shutting_down.load(Ordering::Acquire) {
            return error(format!("host {} is shutting down", self.info.identity.id));
        }
        let spec = match convert::workload_spec(&req) {
            Ok(spec) => spec,
            Err(e) => return error(e.to_string()),
        };
        let hostnames = match convert::ingress_hostnames(&spec) {
            Ok(h) => h,
            Err(e) => return error(e.to_string()),
        };
        let reservation = match self.table.reserve(&id) {
            Ok(r) => r,
            Err(e) => return error(e.to_string()),
        };
        self.metrics.set_workloads(self.table.counts());
        let label: Arc<str> = format!("{}/{}", spec.namespace, spec.name).into();
        let components = spec.components.len();
        tracing::info!(workload_id = %id, workload = %label, components, ?hostnames, "starting workload");
        let began = Instant::now();

        let started = if spec.components.is_empty() && spec.service.is_none() {
            // Nothing to run: the workload is trivially running (wasmCloud hosts accept these too).
            Ok(Arc::new(EmptyWorkload { id: id.clone() }) as Arc<dyn Workload>)
        } else {
            match tokio::time::timeout(self.config.start_timeout, self.backend.start(spec)).await {
                Ok(result) => result.map_err(|e| error_chain(&e)),
                Err(_) => Err(format!(
                    "start did not finish within {:?} and was abandoned",
                    self.config.start_timeout
                )),
            }
        };
        let workload = match started {
            Ok(w) => w,
            Err(message) => {
                self.table.release(&id, &reservation);
                self.metrics.set_workloads(self.table.counts());
                return error(message);
            }
        };

        let target = Arc::new(RouteTarget {
            id: id.clone(),
            label: label.clone(),
            workload,
            requests: self.metrics.workload_requests(label.clone()),
        });
        // Routes go in before the commit, so a stop that races the commit always finds and removes them.
        if !hostnames.is_empty() {
            self.routes.bind(&id, &hostnames, target.clone());
        }
        let status = match self.table.commit(&id, &reservation, target.clone(), components) {
            Commit::Running => {
                tracing::info!(workload_id = %id, workload = %label, elapsed = ?began.elapsed(), "workload running");
                WorkloadStatus::new(
                    id.clone(),
                    WorkloadState::Running,
                    target.workload.status().message,
                )
            }
            Commit::StopRequested(target) => {
                self.routes.unbind(&id);
                target.workload.stop(self.config.stop_grace).await;
                self.table.release(&id, &reservation);
                self.metrics.forget_workload(&target.requests);
                error("the workload was stopped while it was starting".into())
            }
        };
        self.metrics.set_workloads(self.table.counts());
        status
    }

    /// `workload.status`.
    pub fn status(&self, id: &str) -> WorkloadStatus {
        match self.table.state(id) {
            None => WorkloadStatus::new(id, WorkloadState::NotFound, format!("workload {id} not found")),
            Some(SlotState::Starting) => WorkloadStatus::new(id, WorkloadState::Starting, "starting"),
            Some(SlotState::Stopping) => WorkloadStatus::new(id, WorkloadState::Stopping, "stopping"),
            Some(SlotState::Running(target)) => running_status(id, target.workload.status()),
        }
    }

    /// `workload.stop`: replies once the workload's routes are gone and it has been torn down.
    pub async fn stop(&self, id: &str) -> WorkloadStatus {
        let status = match self.table.begin_stop(id) {
            StopStep::NotFound => {
                return WorkloadStatus::new(id, WorkloadState::NotFound, format!("workload {id} not found"));
            }
            StopStep::AlreadyStopping => WorkloadStatus::new(id, WorkloadState::Stopping, "already stopping"),
            StopStep::StopWhenStarted => {
                tracing::info!(workload_id = %id, "stop requested while starting");
                WorkloadStatus::new(
                    id,
                    WorkloadState::Stopping,
                    "stopping: the workload will stop once its start ends",
                )
            }
            StopStep::Stop(target) => {
                self.metrics.set_workloads(self.table.counts());
                tracing::info!(workload_id = %id, workload = %target.label, "stopping workload");
                self.routes.unbind(id);
                target.workload.stop(self.config.stop_grace).await;
                self.table.finish_stop(id);
                self.metrics.forget_workload(&target.requests);
                tracing::info!(workload_id = %id, "workload stopped");
                WorkloadStatus::new(id, WorkloadState::Stopping, "stopped successfully")
            }
        };
        self.metrics.set_workloads(self.table.counts());
        status
    }

    /// Stops every running workload (shutdown), each with `grace`.
    pub async fn stop_all(&self, grace: Duration) {
        let targets = self.table.begin_stop_all();
        for (id, _) in &targets {
            self.routes.unbind(id);
        }
        futures::future::join_all(targets.iter().map(|(_, t)| t.workload.stop(grace))).await;
        for (id, target) in &targets {
            self.table.finish_stop(id);
            self.metrics.forget_workload(&target.requests);
        }
        self.metrics.set_workloads(self.table.counts());
    }

    /// The workload table's counts.
    pub fn counts(&self) -> crate::workloads::Counts {
        self.table.counts()
    }
}

fn running_status(id: &str, status: RuntimeStatus) -> WorkloadStatus {
    use weft_runtime::WorkloadState as S;
    let state = match status.state {
        S::Running => WorkloadState::Running,
        S::Stopping | S::Stopped => WorkloadState::Stopping,
        S::Failed => WorkloadState::Error,
        S::Completed => WorkloadState::Completed,
    };
    let message = match &status.failures {
        Some(f) if state == WorkloadState::Running => {
            wire::RequestFailures::new(f.failed, f.of, &f.last_error).append_to(&status.message)
        }
        _ => status.message,
    };
    WorkloadStatus::new(id, state, message)
}

fn encode<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    wire::to_json(msg).expect("wire messages always encode")
}

/// The error and its sources, `: `-separated, skipping sources already quoted by their parent.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The `workloadId` of an undecodable request, if the payload is JSON with a string ID.
fn workload_id_of(payload: &[u8]) -> String {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return String::new();
    };
    ["workloadId", "workload_id"]
        .iter()
        .find_map(|k| map.get(*k).and_then(|v| v.as_str()).map(str::to_string))
        .unwrap_or_default()
}

/// A workload with nothing to run: neither components nor a service.
struct EmptyWorkload {
    id: String,
}

impl Workload for EmptyWorkload {
    fn id(&self) -> &str {
        &self.id
    }

    fn handle(
        &self,
        _request: http::Request<RequestBody>,
    ) -> BoxFuture<'static, http::Response<ResponseBody>> {
        Box::pin(async {
            body::text_response(http::StatusCode::NOT_FOUND, "this workload has no components")
        })
    }

    fn stop(&self, _grace: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }

    fn status(&self) -> RuntimeStatus {
        RuntimeStatus {
            state: weft_runtime::WorkloadState::Running,
            message: "running (no components)".into(),
            active_requests: 0,
            failures: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::oneshot;
    use weft_runtime::{BackendHealth, RuntimeError, WorkloadSpec};

    /// A backend whose starts wait until the test releases them (to interleave stops with starts).
    #[derive(Default)]
    struct GatedBackend {
        gates: Mutex<Vec<oneshot::Receiver<()>>>,
        stops: Arc<AtomicUsize>,
    }

    impl GatedBackend {
        fn gate(&self) -> oneshot::Sender<()> {
            let (tx, rx) = oneshot::channel();
            self.gates.lock().unwrap().push(rx);
            tx
        }
    }

    impl RuntimeBackend for GatedBackend {
        fn name(&self) -> &str {
            "gated"
        }

        fn start(&self, spec: WorkloadSpec) -> BoxFuture<'_, Result<Arc<dyn Workload>, RuntimeError>> {
            let gate = self.gates.lock().unwrap().pop();
            let stops = self.stops.clone();
            Box::pin(async move {
                let Some(gate) = gate else {
                    return Err(RuntimeError::InvalidSpec("no gate".into()));
                };
                if gate.await.is_err() {
                    // The test dropped the gate: this start never finishes.
                    std::future::pending::<()>().await;
                }
                Ok(Arc::new(CountingWorkload { id: spec.id, stops }) as Arc<dyn Workload>)
            })
        }

        fn interfaces(&self) -> weft_runtime::BackendInterfaces {
            weft_runtime::BackendInterfaces::default()
        }

        fn probe(&self) -> BackendHealth {
            BackendHealth {
                ready: true,
                message: String::new(),
            }
        }
    }

    struct CountingWorkload {
        id: String,
        stops: Arc<AtomicUsize>,
    }

    impl Workload for CountingWorkload {
        fn id(&self) -> &str {
            &self.id
        }

        fn handle(&self, _: http::Request<RequestBody>) -> BoxFuture<'static, http::Response<ResponseBody>> {
            Box::pin(async { body::text_response(http::StatusCode::OK, "ok") })
        }

        fn stop(&self, _grace: Duration) -> BoxFuture<'static, ()> {
            self.stops.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {})
        }

        fn status(&self) -> RuntimeStatus {
            RuntimeStatus {
                state: weft_runtime::WorkloadState::Running,
                message: "serving".into(),
                active_requests: 0,
                failures: None,
            }
        }
    }

    fn controller(
        backend: Arc<GatedBackend>,
        start_timeout: Duration,
    ) -> (Arc<Controller>, Arc<RouteTable<Target>>) {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = HostMetrics::register(&mut registry, "test", "h1", "gated");
        let info = HostInfo {
            identity: crate::identity::HostIdentity {
                id: "h1".into(),
                friendly_name: "calm-otter-0001".into(),
            },
            hostname: "127.0.0.1".into(),
            version: "test".into(),
            labels: Default::default(),
            started_at: wire::Timestamp::now(),
            http_port: 9191,
            environment: String::new(),
            imports: Vec::new(),
            exports: Vec::new(),
        };
        let routes = Arc::new(RouteTable::default());
        let config = ControlConfig {
            stop_grace: Duration::from_secs(1),
            start_timeout,
        };
        (
            Arc::new(Controller::new(info, backend, routes.clone(), metrics, config)),
            routes,
        )
    }

    fn http_request(id: &str) -> wire::WorkloadStartRequest {
        wire::from_json(
            format!(
                r#"{{"workloadId":"{id}","workload":{{"namespace":"ns","name":"app","witWorld":{{
                "components":[{{"name":"c","image":"file:///c.wasm"}}],
                "hostInterfaces":[{{"namespace":"wasi","package":"http","interfaces":["incoming-handler"],
                  "config":{{"host":"app.test"}}}}]}}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_stop_during_start_tears_the_workload_down() {
        let backend = Arc::new(GatedBackend::default());
        let gate = backend.gate();
        let (c, routes) = controller(backend.clone(), Duration::from_secs(30));
        let start = tokio::spawn({
            let c = c.clone();
            async move { c.start(http_request("w1")).await }
        });
        while c.status("w1").workload_state != WorkloadState::Starting {
            tokio::task::yield_now().await;
        }
        let stop = c.stop("w1").await;
        assert_eq!(stop.workload_state, WorkloadState::Stopping);
        assert_eq!(c.status("w1").workload_state, WorkloadState::Stopping);
        gate.send(()).unwrap();
        let started = start.await.unwrap();
        assert_eq!(started.workload_state, WorkloadState::Error);
        assert!(
            started.message.contains("stopped while it was starting"),
            "{}",
            started.message
        );
        assert_eq!(
            backend.stops.load(Ordering::SeqCst),
            1,
            "the started workload was torn down"
        );
        assert!(routes.route("app.test").is_err(), "no route left behind");
        assert_eq!(c.status("w1").workload_state, WorkloadState::NotFound);
    }

    #[tokio::test]
    async fn a_running_workload_is_routed_until_stopped() {
        let backend = Arc::new(GatedBackend::default());
        backend.gate().send(()).unwrap();
        let (c, routes) = controller(backend.clone(), Duration::from_secs(30));
        let s = c.start(http_request("w1")).await;
        assert_eq!(
            (s.workload_state, s.message.as_str()),
            (WorkloadState::Running, "serving")
        );
        assert_eq!(routes.route("app.test").unwrap().id, "w1");
        assert_eq!(c.heartbeat().component_count, 1);
        let s = c.stop("w1").await;
        assert_eq!(
            (s.workload_state, s.message.as_str()),
            (WorkloadState::Stopping, "stopped successfully")
        );
        assert!(routes.route("app.test").is_err());
        assert_eq!(backend.stops.load(Ordering::SeqCst), 1);
        assert_eq!(c.heartbeat().workload_count, 0);
    }

    #[tokio::test]
    async fn a_start_past_its_timeout_is_abandoned_and_frees_the_id() {
        let backend = Arc::new(GatedBackend::default());
        let gate = backend.gate();
        // The gate is never opened: the start can only end by timing out.
        let (c, _) = controller(backend, Duration::from_millis(50));
        let s = c.start(http_request("w1")).await;
        assert_eq!(s.workload_state, WorkloadState::Error);
        assert!(s.message.contains("abandoned"), "{}", s.message);
        assert_eq!(c.status("w1").workload_state, WorkloadState::NotFound);
        drop(gate);
    }

    #[tokio::test]
    async fn starts_are_refused_once_shutting_down() {
        let (c, _) = controller(Arc::new(GatedBackend::default()), Duration::from_secs(30));
        c.refuse_starts();
        let s = c.start(http_request("w1")).await;
        assert_eq!(s.workload_state, WorkloadState::Error);
        assert!(s.message.contains("shutting down"), "{}", s.message);
    }

    #[test]
    fn workload_id_is_recovered_from_json_payloads_only() {
        assert_eq!(workload_id_of(br#"{"workloadId":"w1","workload":"oops"}"#), "w1");
        assert_eq!(workload_id_of(br#"{"workload_id":"w2"}"#), "w2");
        assert_eq!(workload_id_of(br#"{"workloadId":7}"#), "");
        assert_eq!(workload_id_of(b"not json"), "");
    }

    #[test]
    fn error_chains_do_not_repeat_quoted_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: {0}")]
        struct Outer(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("wrapper")]
        struct Wrapper(#[source] std::io::Error);
        let io = || std::io::Error::other("disk on fire");
        assert_eq!(error_chain(&Outer(io())), "outer: disk on fire");
        assert_eq!(error_chain(&Wrapper(io())), "wrapper: disk on fire");
    }
}
