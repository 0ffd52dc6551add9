//! A started workload: serves each request in a fresh instance of its HTTP component.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use super::compile::Lease;
use super::service::{self, RestartPolicy, ServiceExit, ServiceState, ServiceStatus};
use super::state::{InstanceState, MemoryLimiter, OutgoingHooks, OutgoingPolicy, WorkloadIdentity};
use crate::backend::{BoxFuture, RequestBody, ResponseBody, Workload, WorkloadState, WorkloadStatus, body};
use crate::failures::FailureWindow;
use crate::keyvalue::Counted;
use crate::metrics::{RequestOutcome, RuntimeMetrics};
use crate::sockets::{Protocol, SocketPolicy, SocketUse};
use wasmtime_wasi::p2::bindings::CommandPre;

const RUNNING: u8 = 0;
const STOPPING: u8 = 1;
const STOPPED: u8 = 2;

/// A directory mounted into the component.
pub(crate) struct Preopen {
    pub host_path: PathBuf,
    pub guest_path: String,
    pub read_only: bool,
}

/// What one component of a workload sees in a store: its own environment, configuration, outgoing
/// policy and volumes (a store switches between them as calls cross components).
pub(crate) struct ComponentContext {
    pub environment: Vec<(String, String)>,
    pub sockets: Arc<SocketPolicy>,
    pub config: Arc<BTreeMap<String, String>>,
    pub outgoing: Arc<OutgoingPolicy>,
    pub preopens: Vec<Preopen>,
}

/// Everything a request needs, fixed at start.
pub(crate) struct WorkloadParts {
    pub id: String,
    pub engine: Engine,
    /// The HTTP component's pre-instantiation; `None` when the workload serves no HTTP (a service
    /// with library components only).
    pub proxy: Option<ProxyPre<InstanceState>>,
    /// Index of the HTTP component in `contexts`.
    pub http_index: usize,
    /// The HTTP component and the components it may call (the contexts its stores need).
    pub http_members: Vec<usize>,
    /// Per component of the workload (the service last, if any).
    pub contexts: Arc<Vec<ComponentContext>>,
    pub identity: Arc<WorkloadIdentity>,
    pub keyvalue: Option<Arc<Counted>>,
    /// Keeps the compiled components loaded while the workload exists.
    pub _leases: Vec<Lease>,
    /// Directories to delete when the workload stops (its `emptyDir` volumes).
    pub scratch_dirs: Vec<PathBuf>,
    pub memory_limit: usize,
    pub cpu_ticks: u64,
    pub wall_time_limit: Duration,
    pub max_concurrency: u32,
    pub retry_after: Duration,
    pub max_request_body: u64,
    pub inherit_stdio: bool,
    pub summary: String,
}

/// Wasmtime's socket use in the policy's terms (`None`: an unknown use, denied).
fn socket_use(use_: wasmtime_wasi::sockets::SocketAddrUse) -> Option<SocketUse> {
    use wasmtime_wasi::sockets::SocketAddrUse as U;
    Some(match use_ {
        U::TcpBind => SocketUse::Bind(Protocol::Tcp),
        U::TcpConnect => SocketUse::Connect,
        U::TcpListen | U::TcpAccept => SocketUse::Serve,
        U::UdpBind => SocketUse::Bind(Protocol::Udp),
        U::UdpSend | U::UdpReceive => SocketUse::Datagram,
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

/// Limits of one store.
pub(crate) struct StoreLimits {
    /// Linear memory of all its instances together.
    pub memory: usize,
    /// CPU budget in epoch ticks; `None` = unlimited (a service).
    pub cpu_ticks: Option<u64>,
}

impl StoreLimits {
    /// The limits of one request.
    pub(crate) fn request(parts: &WorkloadParts) -> Self {
        Self {
            memory: parts.memory_limit,
            cpu_ticks: Some(parts.cpu_ticks),
        }
    }
}

/// Limits shared by every workload of a backend.
pub(crate) struct Shared {
    /// One permit per pool slot: instances alive at once across all workloads.
    pub instances: Arc<Semaphore>,
    pub metrics: RuntimeMetrics,
}

/// A workload's service: how to run it and its limits.
pub(crate) struct ServiceParts {
    pub command: CommandPre<InstanceState>,
    /// Its index in `WorkloadParts::contexts`.
    pub index: usize,
    /// It and the components it may call.
    pub members: Vec<usize>,
    pub memory_limit: usize,
    pub policy: RestartPolicy,
}

struct Inner {
    parts: WorkloadParts,
    workload_id: Arc<str>,
    permits: Arc<Semaphore>,
    state: AtomicU8,
    stopped: Notify,
    cancel: CancellationToken,
    failures: FailureWindow,
    shared: Arc<Shared>,
    service: Option<ServiceParts>,
    service_status: Option<Arc<ServiceStatus>>,
    service_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Ends the service (on stop, or when the workload's handle is dropped).
    service_cancel: CancellationToken,
}

/// The Wasmtime backend's [`Workload`].
pub(crate) struct WasmtimeWorkload {
    inner: Arc<Inner>,
}

impl WasmtimeWorkload {
    pub(crate) fn new(parts: WorkloadParts, service: Option<ServiceParts>, shared: Arc<Shared>) -> Self {
        shared.metrics.workloads_gauge().inc();
        let permits = Arc::new(Semaphore::new(parts.max_concurrency.max(1) as usize));
        let workload_id = Arc::from(parts.id.as_str());
        let service_status = service
            .as_ref()
            .map(|s| Arc::new(ServiceStatus::new(s.policy.max_restarts)));
        Self {
            inner: Arc::new(Inner {
                parts,
                workload_id,
                permits,
                state: AtomicU8::new(RUNNING),
                stopped: Notify::new(),
                cancel: CancellationToken::new(),
                failures: FailureWindow::default(),
                shared,
                service,
                service_status,
                service_task: std::sync::Mutex::new(None),
                service_cancel: CancellationToken::new(),
            }),
        }
    }

    /// Starts the service, if the workload has one. Its supervisor holds only a weak reference, so a
    /// workload dropped without `stop` still goes away (and cancels it).
    pub(crate) fn start_service(&self) {
        let (Some(service), Some(status)) = (&self.inner.service, &self.inner.service_status) else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let status = status.clone();
        let policy = service.policy;
        let cancel = self.inner.service_cancel.clone();
        let workload = self.inner.workload_id.clone();
        let metrics = self.inner.shared.metrics.clone();
        let task = tokio::spawn(async move {
            service::supervise(
                policy,
                &status,
                cancel,
                || {
                    let weak = weak.clone();
                    async move {
                        let inner = weak.upgrade()?;
                        Some(inner.run_service_once().await)
                    }
                },
                |exit, state| {
                    let result = match (exit, state) {
                        (ServiceExit::Completed, _) => "ok",
                        (_, ServiceState::Failed { .. }) => "failed",
                        _ => "error",
                    };
                    metrics.count_service_exit(result);
                    match exit {
                        ServiceExit::Completed => {
                            tracing::info!(%workload, "service completed (exit code 0)")
                        }
                        ServiceExit::Failed(error) => {
                            tracing::warn!(%workload, %error, state = %state.describe(policy.max_restarts), "service failed")
                        }
                    }
                },
            )
            .await;
        });
        *self.inner.service_task.lock().expect("service task lock") = Some(task);
    }
}

impl WasmtimeWorkload {
    /// Instantiates the HTTP component once (without calling it) so a component that cannot be
    /// instantiated here — e.g. one needing more core instances, memories or tables than a pool slot
    /// holds, or trapping in its start function — fails the start instead of every request.
    pub(crate) async fn check_instantiation(&self) -> Result<(), String> {
        let inner = &self.inner;
        let Some(proxy) = &inner.parts.proxy else {
            return Ok(());
        };
        let mut store = inner
            .new_store(
                inner.parts.http_index,
                &inner.parts.http_members,
                StoreLimits::request(&inner.parts),
            )
            .map_err(|e| format!("{e:#}"))?;
        match proxy.instantiate_async(&mut store).await {
            Ok(_) => Ok(()),
            Err(err) if store.data().limits.hit => Err(format!(
                "instantiation needs more than the memory limit of {} bytes: {err:#}",
                inner.parts.memory_limit
            )),
            Err(err) => Err(format!("{err:#}")),
        }
    }
}

impl Drop for WasmtimeWorkload {
    fn drop(&mut self) {
        self.inner.service_cancel.cancel();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.metrics.workloads_gauge().dec();
        self.remove_scratch_dirs();
    }
}

/// How the guest call ended.
enum CallEnd {
    Ok,
    /// The full error with its backtrace (for the log) and its root cause (for the status).
    Trap(String, String),
    Deadline,
    MemoryLimit(String),
    InstantiateError(String),
    Cancelled,
}

impl Workload for WasmtimeWorkload {
    fn id(&self) -> &str {
        &self.inner.parts.id
    }

    fn handle(&self, request: Request<RequestBody>) -> BoxFuture<'static, Response<ResponseBody>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.serve(request).await })
    }

    fn stop(&self, grace: Duration) -> BoxFuture<'static, ()> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.stop(grace).await })
    }

    fn status(&self) -> WorkloadStatus {
        let inner = &self.inner;
        let state = match inner.state.load(Ordering::Acquire) {
            RUNNING => WorkloadState::Running,
            STOPPING => WorkloadState::Stopping,
            _ => WorkloadState::Stopped,
        };
        let active = inner.parts.max_concurrency.max(1) as usize - inner.permits.available_permits();
        let service = inner.service_status.as_ref().map(|s| (s.get(), s.max_restarts));
        let state = match (&service, state) {
            (Some((ServiceState::Failed { .. }, _)), WorkloadState::Running) => WorkloadState::Failed,
            (Some((ServiceState::Completed { .. }, _)), WorkloadState::Running)
                if inner.parts.proxy.is_none() =>
            {
                WorkloadState::Completed
            }
            (_, state) => state,
        };
        let message = match state {
            WorkloadState::Running | WorkloadState::Failed | WorkloadState::Completed => match &service {
                Some((service, max)) => format!("{}; {}", inner.parts.summary, service.describe(*max)),
                None => inner.parts.summary.clone(),
            },
            WorkloadState::Stopping => format!("stopping ({active} requests in flight)"),
            WorkloadState::Stopped => "stopped".to_string(),
        };
        WorkloadStatus {
            state,
            message,
            active_requests: if state == WorkloadState::Stopped {
                0
            } else {
                active
            },
            failures: inner.failures.snapshot(Instant::now()),
        }
    }
}

impl Inner {
    /// Runs the service once, to its exit.
    async fn run_service_once(&self) -> ServiceExit {
        let service = self
            .service
            .as_ref()
            .expect("only called for a workload with a service");
        let limits = StoreLimits {
            memory: service.memory_limit,
            cpu_ticks: None,
        };
        let mut store = match self.new_store(service.index, &service.members, limits) {
            Ok(store) => store,
            Err(err) => return ServiceExit::Failed(format!("creating its store: {err:#}")),
        };
        let result = async {
            let command = service.command.instantiate_async(&mut store).await?;
            command.wasi_cli_run().call_run(&mut store).await
        }
        .await;
        match result {
            Ok(Ok(())) => ServiceExit::Completed,
            Ok(Err(())) => ServiceExit::Failed("wasi:cli/run returned an error".into()),
            Err(err) => match err.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(wasmtime_wasi::I32Exit(0)) => ServiceExit::Completed,
                Some(wasmtime_wasi::I32Exit(code)) => ServiceExit::Failed(format!("exited with code {code}")),
                None if store.data().limits.hit => ServiceExit::Failed(format!(
                    "stopped at its memory limit of {} bytes",
                    service.memory_limit
                )),
                None => ServiceExit::Failed(match err.downcast_ref::<Trap>() {
                    Some(trap) => format!("trapped: {trap}"),
                    None => format!("{:#}", err),
                }),
            },
        }
    }

    fn remove_scratch_dirs(&self) {
        for dir in &self.parts.scratch_dirs {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    tracing::warn!(dir = %dir.display(), %err, "could not remove a workload's emptyDir volume")
                }
            }
        }
    }

    async fn stop(&self, grace: Duration) {
        if self
            .state
            .compare_exchange(RUNNING, STOPPING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Already stopping or stopped: wait for that to finish.
            loop {
                let stopped = self.stopped.notified();
                if self.state.load(Ordering::Acquire) == STOPPED {
                    return;
                }
                stopped.await;
            }
        }
        let all = self.parts.max_concurrency.max(1);
        let drained = tokio::time::timeout(grace, self.permits.acquire_many(all)).await;
        if drained.is_err() {
            tracing::info!(workload = %self.workload_id, ?grace, "grace period over; cancelling in-flight requests");
            self.cancel.cancel();
            // Cancelled calls finish promptly (their instances are dropped at the next await point).
            let _ = self.permits.acquire_many(all).await;
        } else if let Ok(Ok(permits)) = drained {
            permits.forget();
        }
        self.permits.close();
        self.service_cancel.cancel();
        let task = self.service_task.lock().expect("service task lock").take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.remove_scratch_dirs();
        self.state.store(STOPPED, Ordering::Release);
        self.stopped.notify_waiters();
    }

    async fn serve(self: Arc<Self>, request: Request<RequestBody>) -> Response<ResponseBody> {
        let started = Instant::now();
        let metrics = &self.shared.metrics;
        let parts = &self.parts;
        if self.state.load(Ordering::Acquire) != RUNNING {
            metrics.count_outcome(RequestOutcome::Stopping);
            return body::unavailable("workload is stopping", parts.retry_after);
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            metrics.count_outcome(RequestOutcome::Overloaded);
            return body::unavailable("workload is at its concurrency limit", parts.retry_after);
        };
        let Ok(instance_permit) = self.shared.instances.clone().try_acquire_owned() else {
            metrics.count_outcome(RequestOutcome::Overloaded);
            return body::unavailable("host is at its instance limit", parts.retry_after);
        };
        if let Some(length) = declared_length(&request)
            && length > parts.max_request_body
        {
            metrics.count_outcome(RequestOutcome::BodyTooLarge);
            return body::text_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "request body of {length} bytes exceeds the limit of {} bytes",
                    parts.max_request_body
                ),
            );
        }

        let Some(proxy) = parts.proxy.clone() else {
            return body::text_response(StatusCode::NOT_FOUND, "this workload serves no HTTP");
        };
        let (tx, rx) = oneshot::channel();
        let mut store =
            match self.new_store(parts.http_index, &parts.http_members, StoreLimits::request(parts)) {
                Ok(store) => store,
                Err(err) => return self.internal_error("creating the instance store", &err),
            };
        let request = request.map(|b| http_body_util::Limited::new(b, parts.max_request_body as usize));
        let request = request.map(|b| b.map_err(to_wasi_http_error));
        let resources = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .and_then(|req| {
                let out = store.data_mut().http().new_response_outparam(tx)?;
                Ok((req, out))
            });
        let (incoming, outparam) = match resources {
            Ok(pair) => pair,
            Err(err) => return self.internal_error("passing the request to the component", &err),
        };

        // The guest runs inside this request's own task (and, while the body streams, inside the
        // response body's polls): no extra task, and no cross-thread wake-up per request.
        let mut call: CallFuture = {
            let this = self.clone();
            Box::pin(async move {
                let end = this
                    .call(
                        proxy,
                        store,
                        incoming,
                        outparam,
                        (permit, instance_permit),
                        started,
                    )
                    .await;
                this.count(&end);
                end
            })
        };
        // Only the guest sets the response, and the guest runs only inside `call`'s polls, so the head
        // is looked for after each poll instead of registering this task's waker on `rx`: a waker
        // fired by the guest from inside this very poll would reschedule the task for a spurious poll
        // and wake another worker thread to steal it — on every request.
        let mut rx = rx;
        let first = std::future::poll_fn(|cx| {
            let polled = call.as_mut().poll(cx);
            match (rx.try_recv(), polled) {
                (Ok(head), Poll::Ready(end)) => Poll::Ready(Head::Set(head, Some(end))),
                (Ok(head), Poll::Pending) => Poll::Ready(Head::Set(head, None)),
                (Err(_), Poll::Ready(end)) => Poll::Ready(Head::Missing(end)),
                (Err(_), Poll::Pending) => Poll::Pending,
            }
        })
        .await;
        metrics.observe_request(started.elapsed().as_secs_f64());
        match first {
            // The head is ready; unless the guest already finished, it keeps producing the body as the
            // body is polled.
            Head::Set(Ok(response), finished) => {
                let call = if finished.is_some() { None } else { Some(call) };
                response.map(|inner| DrivingBody { inner, call }.boxed_unsync())
            }
            Head::Set(Err(code), _) => body::text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("component failed: {}", error_code(&code)),
            ),
            // The guest finished without setting the response: say why.
            Head::Missing(end) => self.error_response(end),
        }
    }

    /// A store for a call that starts in component `root` and may run the components `members`
    /// (`root` among them): only theirs of the WASI contexts are built.
    pub(crate) fn new_store(
        &self,
        root: usize,
        members: &[usize],
        limits: StoreLimits,
    ) -> wasmtime::Result<Store<InstanceState>> {
        let parts = &self.parts;
        let mut wasi: Vec<Option<WasiCtx>> = (0..parts.contexts.len()).map(|_| None).collect();
        for &member in members {
            let context = &parts.contexts[member];
            let mut builder = WasiCtxBuilder::new();
            builder.envs(&context.environment);
            let sockets = context.sockets.clone();
            builder
                .allow_tcp(sockets.tcp())
                .allow_udp(sockets.udp())
                .allow_ip_name_lookup(sockets.name_lookups)
                .socket_addr_check(move |addr, use_| {
                    let allowed = socket_use(use_).is_some_and(|u| sockets.allows(addr, u));
                    Box::pin(async move { allowed })
                });
            if parts.inherit_stdio {
                builder.inherit_stdout().inherit_stderr();
            }
            for preopen in &context.preopens {
                let perms = if preopen.read_only {
                    FsPerms::ReadOnly
                } else {
                    FsPerms::ReadWrite
                };
                builder.preopened_dir(&preopen.host_path, &preopen.guest_path, perms)?;
            }
            wasi[member] = Some(builder.build());
        }
        let state = InstanceState {
            wasi,
            http: WasiHttpCtx::new(),
            table: wasmtime::component::ResourceTable::new(),
            hooks: parts
                .contexts
                .iter()
                .map(|c| OutgoingHooks {
                    policy: c.outgoing.clone(),
                })
                .collect(),
            limits: MemoryLimiter {
                limit: limits.memory,
                hit: false,
            },
            contexts: parts.contexts.clone(),
            ticks_used: 0,
            linked: vec![None; parts.contexts.len()],
            current_component: root,
            identity: parts.identity.clone(),
            keyvalue: parts.keyvalue.clone(),
            metrics: self.shared.metrics.clone(),
        };
        let mut store = Store::new(&parts.engine, state);
        store.limiter(|state| &mut state.limits);
        // The callback runs every epoch tick the component executes through: it charges the tick to
        // the call's CPU account, yields so other calls on this thread make progress, and stops the
        // component once the account (if it has one) is exhausted.
        let budget = limits.cpu_ticks;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            let state = ctx.data_mut();
            state.ticks_used += 1;
            if budget.is_some_and(|budget| state.ticks_used > budget) {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
            }
        });
        Ok(store)
    }

    async fn call(
        &self,
        proxy: ProxyPre<InstanceState>,
        mut store: Store<InstanceState>,
        incoming: wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostIncomingRequest>,
        outparam: wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostResponseOutparam>,
        _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
        started: Instant,
    ) -> CallEnd {
        let metrics = &self.shared.metrics;
        metrics.active_instances().inc();
        let _active = scopeguard(|| {
            metrics.active_instances().dec();
        });
        let run = async {
            let t0 = Instant::now();
            let proxy = proxy.instantiate_async(&mut store).await;
            metrics.observe_instantiate(t0.elapsed().as_secs_f64());
            let proxy = match proxy {
                Ok(proxy) => proxy,
                Err(err) => return Err((true, err)),
            };
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam)
                .await
                .map_err(|e| (false, e))
        };
        let result = {
            let run = std::pin::pin!(run);
            // `run` first: a call that completes in its first poll (the common case) never registers
            // with the cancellation token.
            tokio::select! {
                biased;
                result = WallClockLimit::new(run, started + self.parts.wall_time_limit) => result,
                () = self.cancel.cancelled() => return CallEnd::Cancelled,
            }
        };
        match result {
            None => CallEnd::Deadline,
            Some(Ok(())) => CallEnd::Ok,
            Some(Err((instantiating, err))) => {
                if store.data().limits.hit {
                    CallEnd::MemoryLimit(format!("{err:#}"))
                } else if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
                    CallEnd::Deadline
                } else if instantiating {
                    CallEnd::InstantiateError(format!("{err:#}"))
                } else {
                    let cause = match err.downcast_ref::<Trap>() {
                        Some(trap) => trap.to_string(),
                        None => err.root_cause().to_string(),
                    };
                    CallEnd::Trap(format!("{err:#}"), cause)
                }
            }
        }
    }

    fn count(&self, end: &CallEnd) {
        let outcome = match end {
            CallEnd::Ok => RequestOutcome::Ok,
            CallEnd::Trap(..) => RequestOutcome::Trap,
            CallEnd::Deadline => RequestOutcome::Deadline,
            CallEnd::MemoryLimit(_) => RequestOutcome::MemoryLimit,
            CallEnd::InstantiateError(_) => RequestOutcome::InstantiateError,
            CallEnd::Cancelled => RequestOutcome::Stopping,
        };
        self.shared.metrics.count_outcome(outcome);
        match end {
            CallEnd::Ok => self.failures.record_success(),
            CallEnd::Cancelled => {}
            CallEnd::Deadline => {
                tracing::info!(workload = %self.workload_id, "request stopped at its CPU or time limit");
                self.failures
                    .record_failure("the component exceeded its CPU or time limit", Instant::now());
            }
            CallEnd::Trap(msg, cause) => {
                tracing::info!(workload = %self.workload_id, error = %msg, "request failed in the component");
                self.failures.record_failure(cause, Instant::now());
            }
            CallEnd::MemoryLimit(msg) => {
                tracing::info!(workload = %self.workload_id, error = %msg, "request failed in the component");
                self.failures
                    .record_failure(&self.memory_limit_message(), Instant::now());
            }
            CallEnd::InstantiateError(msg) => {
                tracing::info!(workload = %self.workload_id, error = %msg, "request failed in the component")
            }
        }
    }

    fn error_response(&self, end: CallEnd) -> Response<ResponseBody> {
        match end {
            CallEnd::Ok => body::text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "component returned without a response",
            ),
            CallEnd::Trap(..) => body::text_response(StatusCode::INTERNAL_SERVER_ERROR, "component trapped"),
            CallEnd::MemoryLimit(_) => {
                body::text_response(StatusCode::INTERNAL_SERVER_ERROR, &self.memory_limit_message())
            }
            CallEnd::Deadline => {
                body::text_response(StatusCode::GATEWAY_TIMEOUT, "component exceeded its time limit")
            }
            CallEnd::InstantiateError(_) => {
                body::unavailable("no instance available", self.parts.retry_after)
            }
            CallEnd::Cancelled => body::unavailable("workload stopped", self.parts.retry_after),
        }
    }

    fn memory_limit_message(&self) -> String {
        format!(
            "component exceeded its memory limit of {} bytes",
            self.parts.memory_limit
        )
    }

    fn internal_error(&self, what: &str, err: &wasmtime::Error) -> Response<ResponseBody> {
        tracing::warn!(workload = %self.workload_id, error = %format!("{err:#}"), "{what} failed");
        self.shared.metrics.count_outcome(RequestOutcome::Trap);
        self.failures
            .record_failure(&format!("{what} failed: {err:#}"), Instant::now());
        body::text_response(StatusCode::INTERNAL_SERVER_ERROR, &format!("{what} failed"))
    }
}

/// The guest call of one request.
type CallFuture = Pin<Box<dyn Future<Output = CallEnd> + Send>>;

/// What the first phase of a request (until the guest sets the response head) produced.
enum Head {
    /// The guest set the response (or an error code); with how the call ended if it already did.
    Set(
        Result<http::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>, ErrorCode>,
        Option<CallEnd>,
    ),
    /// The call ended without setting the response.
    Missing(CallEnd),
}

/// Runs `future` until `deadline` at the latest (`None` when the deadline passed first). The timer is
/// armed only if the future does not complete in its first poll, so a request whose guest answers
/// without waiting (the common case) never touches the timer wheel.
struct WallClockLimit<F> {
    future: F,
    deadline: Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<F: Future + Unpin> WallClockLimit<F> {
    fn new(future: F, deadline: Instant) -> Self {
        Self {
            future,
            deadline,
            timer: None,
        }
    }
}

impl<F: Future + Unpin> Future for WallClockLimit<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(output) = Pin::new(&mut this.future).poll(cx) {
            return Poll::Ready(Some(output));
        }
        let deadline = tokio::time::Instant::from_std(this.deadline);
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A response body that drives the guest call producing it: each poll first lets the guest run, then
/// takes what it wrote. If the body is finished or dropped while the guest is still running, the rest
/// of the call moves to its own task (it stays bounded by the request's limits).
struct DrivingBody {
    inner: wasmtime_wasi_http::p2::body::HyperOutgoingBody,
    call: Option<CallFuture>,
}

impl DrivingBody {
    fn detach(&mut self) {
        if let Some(call) = self.call.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(call);
        }
    }
}

impl hyper::body::Body for DrivingBody {
    type Data = bytes::Bytes;
    type Error = crate::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        if let Some(call) = self.call.as_mut()
            && call.as_mut().poll(cx).is_ready()
        {
            self.call = None;
        }
        let frame = if self.call.is_some() {
            // While the call is driven from here, the guest (the body's only writer) runs only inside
            // the poll above, which registered this task's waker for whatever the guest waits on. So
            // look for a frame without registering it on the body too: a frame written during our own
            // poll would otherwise wake this task for a spurious poll (and another worker to steal it).
            match Pin::new(&mut self.inner).poll_frame(&mut Context::from_waker(std::task::Waker::noop())) {
                Poll::Pending => return Poll::Pending,
                ready => ready,
            }
        } else {
            Pin::new(&mut self.inner).poll_frame(cx)
        };
        if let Poll::Ready(None) = frame {
            self.detach();
        }
        frame.map_err(|e| Box::new(e) as crate::BoxError)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for DrivingBody {
    fn drop(&mut self) {
        self.detach();
    }
}

fn declared_length<B>(request: &Request<B>) -> Option<u64> {
    request
        .headers()
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn to_wasi_http_error(err: crate::BoxError) -> wasmtime_wasi_http::Error {
    match err.downcast::<hyper::Error>() {
        Ok(err) => wasmtime_wasi_http::Error::from(*err),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            wasmtime_wasi_http::Error::HttpRequestBodySize(None)
        }
        Err(err) => wasmtime_wasi_http::Error::InternalError(Some(err.to_string())),
    }
}

fn error_code(code: &ErrorCode) -> String {
    format!("{code:?}")
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wall_clock_limit_arms_no_timer_for_a_ready_future() {
        let mut limited =
            WallClockLimit::new(std::future::ready(7), Instant::now() + Duration::from_secs(60));
        let polled = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut limited).poll(cx))).await;
        assert_eq!(polled, Poll::Ready(Some(7)));
        assert!(
            limited.timer.is_none(),
            "a future ready at once must not touch the timer wheel"
        );
    }

    #[tokio::test]
    async fn wall_clock_limit_cuts_off_a_pending_future_at_its_deadline() {
        let past = Instant::now() - Duration::from_millis(1);
        let limited = WallClockLimit::new(std::future::pending::<()>(), past);
        assert_eq!(limited.await, None);
    }

    #[tokio::test]
    async fn wall_clock_limit_passes_through_a_future_that_completes_later() {
        let (tx, rx) = oneshot::channel();
        let mut limited = WallClockLimit::new(rx, Instant::now() + Duration::from_secs(60));
        let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut limited).poll(cx))).await;
        assert!(first.is_pending());
        assert!(
            limited.timer.is_some(),
            "a pending future is bounded by the timer"
        );
        tx.send(3).unwrap();
        assert_eq!(limited.await, Some(Ok(3)));
    }
}
