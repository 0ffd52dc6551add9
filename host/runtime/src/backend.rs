//! The runtime backend contract: what the host needs from anything that runs workloads.
//!
//! The host (NATS control API, HTTP ingress) talks only to these two traits. A backend starts a
//! [`WorkloadSpec`] and hands back a [`Workload`] handle; the ingress calls [`Workload::handle`] for each
//! request routed to it, the control API calls [`Workload::status`] and [`Workload::stop`]. Both traits
//! are dyn-compatible (futures are boxed), so the host can hold `Arc<dyn RuntimeBackend>` and
//! `Arc<dyn Workload>` and a second backend (e.g. VM-isolated) plugs in without other changes.
//!
//! Backends keep no registry of workloads by ID: the host owns the ID → handle map (and with it the
//! wasmCloud start/stop idempotency rules). Dropping every clone of a handle without calling
//! [`Workload::stop`] releases its resources once in-flight requests finish.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

use crate::error::RuntimeError;
use crate::failures::RecentFailures;
use crate::spec::WorkloadSpec;

/// A boxed, `Send` future (what the traits return, so they stay dyn-compatible).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The error type of request and response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a request handed to a backend. Convert hyper's `Incoming` with [`body::boxed`].
pub type RequestBody = UnsyncBoxBody<Bytes, BoxError>;

/// The body of a response produced by a backend (streamed; it may still be produced by the guest
/// after the response head is returned).
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// Something that runs workloads.
pub trait RuntimeBackend: Send + Sync {
    /// A short name for logs and metrics, e.g. `wasmtime`.
    fn name(&self) -> &str;

    /// Fetches, compiles and prepares every component of `spec` and returns a handle that serves
    /// requests. Fails with a message fit for the operator (it goes into the `workload.start` reply)
    /// when a component cannot be fetched, is not a component, does not link, or the spec asks for
    /// something the backend cannot do. A failed start leaves nothing behind.
    fn start(&self, spec: WorkloadSpec) -> BoxFuture<'_, Result<Arc<dyn Workload>, RuntimeError>>;

    /// Whether the backend can start workloads and serve requests (feeds the host's `/readyz`).
    fn probe(&self) -> BackendHealth;

    /// The interfaces components may import from the backend, and those it calls on components (the
    /// host advertises both in its heartbeat).
    fn interfaces(&self) -> BackendInterfaces;
}

/// A WIT package's interfaces, e.g. `wasi:keyvalue@0.2.0-draft` `store`, `atomics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitPackage {
    /// WIT namespace.
    pub namespace: String,
    /// WIT package.
    pub package: String,
    /// Package version.
    pub version: String,
    /// Interface names.
    pub interfaces: Vec<String>,
}

impl WitPackage {
    /// A package entry.
    pub fn new(namespace: &str, package: &str, version: &str, interfaces: &[&str]) -> Self {
        Self {
            namespace: namespace.into(),
            package: package.into(),
            version: version.into(),
            interfaces: interfaces.iter().map(|i| i.to_string()).collect(),
        }
    }
}

/// What [`RuntimeBackend::interfaces`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendInterfaces {
    /// Interfaces the backend provides to components.
    pub imports: Vec<WitPackage>,
    /// Interfaces the backend calls on components.
    pub exports: Vec<WitPackage>,
}

/// A started workload.
pub trait Workload: Send + Sync {
    /// The workload ID from the spec.
    fn id(&self) -> &str;

    /// Serves one HTTP request. Never fails and never waits for capacity: errors become responses —
    /// `503` with `Retry-After` when the workload is at its concurrency cap or stopping, `500` when the
    /// component traps (including at its memory limit), `504` when it runs past its CPU deadline, `413`
    /// for a request body over the limit. The request's `Host` header (or URI authority) is passed to
    /// the component as the authority. The future is `'static` so callers may spawn it. A backend may
    /// run the component inside the returned future and, while the body streams, inside the body's
    /// polls; dropping an unfinished body must not leak the instance.
    fn handle(&self, request: Request<RequestBody>) -> BoxFuture<'static, Response<ResponseBody>>;

    /// Stops the workload: new requests get `503` at once, in-flight requests get up to `grace` to
    /// finish, then are cancelled; resources are released before the future completes. Idempotent.
    fn stop(&self, grace: Duration) -> BoxFuture<'static, ()>;

    /// The workload's current state.
    fn status(&self) -> WorkloadStatus;
}

impl fmt::Debug for dyn Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workload")
            .field("id", &self.id())
            .field("status", &self.status())
            .finish()
    }
}

impl fmt::Debug for dyn RuntimeBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeBackend")
            .field("name", &self.name())
            .finish()
    }
}

/// Lifecycle state of a started workload (maps onto wasmCloud's `WorkloadState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkloadState {
    /// Serving requests (`WORKLOAD_STATE_RUNNING`).
    Running,
    /// Stop requested; draining in-flight requests (`WORKLOAD_STATE_STOPPING`).
    Stopping,
    /// Stopped and released (the host removes it; wasmCloud reports `NOT_FOUND` afterwards).
    Stopped,
    /// The workload's service failed with no restarts left (`WORKLOAD_STATE_ERROR`); its components
    /// may still serve requests.
    Failed,
    /// The workload's service exited cleanly and the workload serves no HTTP
    /// (`WORKLOAD_STATE_COMPLETED`).
    Completed,
}

/// A workload's state with a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadStatus {
    /// The state.
    pub state: WorkloadState,
    /// Details for the operator, e.g. `serving 3 components`.
    pub message: String,
    /// Requests being served right now.
    pub active_requests: usize,
    /// Recent requests that failed in the component (trap, memory or time limit), if any.
    pub failures: Option<RecentFailures>,
}

/// Result of [`RuntimeBackend::probe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendHealth {
    /// Whether the backend can take work.
    pub ready: bool,
    /// Why not, or a short summary.
    pub message: String,
}

/// Helpers to build bodies and simple responses of the backend body types.
pub mod body {
    use super::*;
    use http::{HeaderValue, StatusCode, header};
    use http_body_util::{Empty, Full};

    /// Boxes any body whose errors convert to [`BoxError`] (e.g. `hyper::body::Incoming`).
    pub fn boxed<B>(body: B) -> UnsyncBoxBody<Bytes, BoxError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        body.map_err(Into::into).boxed_unsync()
    }

    /// A complete body holding `bytes`.
    pub fn full(bytes: impl Into<Bytes>) -> UnsyncBoxBody<Bytes, BoxError> {
        Full::new(bytes.into())
            .map_err(|never| match never {})
            .boxed_unsync()
    }

    /// An empty body.
    pub fn empty() -> UnsyncBoxBody<Bytes, BoxError> {
        Empty::new().map_err(|never| match never {}).boxed_unsync()
    }

    /// A `text/plain` response with `status` and `message` (plus a trailing newline).
    pub fn text_response(status: StatusCode, message: &str) -> Response<ResponseBody> {
        let mut response = Response::new(full(format!("{message}\n")));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }

    /// A `503 Service Unavailable` with `Retry-After` (whole seconds, at least 1).
    pub fn unavailable(message: &str, retry_after: Duration) -> Response<ResponseBody> {
        let mut response = text_response(StatusCode::SERVICE_UNAVAILABLE, message);
        let secs = retry_after.as_secs().max(1);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        response
    }
}
