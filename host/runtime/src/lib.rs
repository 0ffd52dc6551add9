//! Weft's runtime: the backend contract the host codes against, the Wasmtime backend, and where
//! component bytes come from.
//!
//! - [`backend`]: [`RuntimeBackend`] and [`Workload`], the dyn-compatible traits the host calls.
//! - [`spec`]: [`WorkloadSpec`] and friends, the domain form of a `workload.start` request.
//! - [`metrics`]: [`RuntimeMetrics`], Prometheus metrics the host registers in its registry.
//! - [`wasmtime_backend`]: [`WasmtimeBackend`], the default backend.
//! - [`source`]: fetching components from OCI registries, `file://` and `http(s)://` into a local cache.
//! - [`failures`]: [`FailureWindow`], which of a workload's recent requests failed, for its status.
//! - [`allowlist`]: the outgoing-HTTP allowlist (`allowedHosts`).
//! - [`keyvalue`]: the stores behind `wasi:keyvalue` (NATS JetStream KV, a directory).
//! - [`sockets`]: which `wasi:sockets` uses a component may make (`allowedHostLoopbackPorts`, …).

pub mod allowlist;
pub mod backend;
pub mod error;
pub mod failures;
pub mod keyvalue;
pub mod metrics;
pub mod sockets;
pub mod source;
pub mod spec;
pub mod wasmtime_backend;

pub use backend::{
    BackendHealth, BackendInterfaces, BoxError, BoxFuture, RequestBody, ResponseBody, RuntimeBackend,
    WitPackage, Workload, WorkloadState, WorkloadStatus,
};
pub use error::{FetchError, RuntimeError};
pub use failures::{FailureWindow, RecentFailures};
pub use metrics::RuntimeMetrics;
pub use spec::{
    ComponentSource, ComponentSpec, HostInterface, LocalResources, PullPolicy, RegistryCredentials,
    ServiceSpec, Volume, VolumeKind, VolumeMount, WorkloadSpec,
};
pub use wasmtime_backend::{WasmtimeBackend, WasmtimeConfig};
