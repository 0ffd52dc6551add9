//! Weft's scheduling pipeline and the C ABI for native scheduling plugins. Pure: no Kubernetes, no async.
//!
//! # The pipeline
//!
//! A decision places one [`WorkloadRequest`] over a [`Snapshot`] of [`HostInfo`]s, like kube-scheduler's
//! Filter then Score:
//!
//! 1. **Standard filters**, which every policy runs first (native plugins included; the loader re-checks the
//!    host a plugin picks): the host is Ready and not draining; it is in the environment the workload may use
//!    ([`resolve_environment`]: wasmCloud's `spec.environment` × `allowSharedHosts` matrix); it carries every
//!    label of the `hostSelector`; and it provides every interface in `hostInterfaces` ([`provides`]).
//! 2. **Policy filters** ([`Filter`]), e.g. CPU and memory thresholds.
//! 3. **Scores** ([`Scorer`]): weighted and summed; the highest total wins.
//! 4. **Tie-break**: among equal best totals, in host ID order, one seeded draw ([`pick_index`] of a
//!    [`SplitMix64`] value) chooses. The same snapshot, request and seed always give the same host.
//!
//! When no host is left the error, [`ScheduleError::NoFeasibleHost`], counts the hosts turned down for each
//! reason and details the first [`LISTED_HOSTS`], for the Workload's conditions;
//! [`Pipeline::rejections`] gives every host's reason.
//!
//! A [`Policy`] opens [`Session`]s: a session keeps its snapshot and counts each placement on its host so the
//! next decision sees it; [`SnapshotUpdate`]s bring in heartbeats and removals. The [`Scheduler`] is the
//! operator's entry point: a [`PolicyRegistry`], a default policy (from a flag), and one session per policy in
//! use; each workload picks its policy with `schedulerName`.
//!
//! ```
//! use std::sync::Arc;
//! use weft_scheduler_api::*;
//!
//! let mut registry = PolicyRegistry::new();
//! registry.register(Arc::new(Pipeline::builder("random").build()))?;
//! let hosts = vec![HostInfo { id: "h1".into(), name: "host-1".into(), ready: true, ..HostInfo::default() }];
//! let mut scheduler = Scheduler::new(registry, "random", Snapshot::new(hosts)?, 42)?;
//!
//! let workload = WorkloadRequest { namespace: "default".into(), name: "hello".into(), ..Default::default() };
//! assert_eq!(scheduler.place(&workload)?.host_id, "h1");
//!
//! // A heartbeat says the host is no longer Ready: the next workload has nowhere to go, and the error says why.
//! let not_ready = HostInfo { ready: false, ..scheduler.snapshot().hosts()[0].clone() };
//! scheduler.apply(&[SnapshotUpdate::UpsertHost(not_ready)])?;
//! let error = scheduler.place(&workload).unwrap_err();
//! assert_eq!(
//!     error.to_string(),
//!     "0/1 hosts can run workload default/hello: 1 not Ready (host-1: host is not Ready)"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Native plugins: the C ABI (major 1, minor 0)
//!
//! A plugin is a `cdylib` exporting one symbol, `weft_scheduler_plugin_v1` ([`abi::ENTRY_SYMBOL`]; the ABI
//! major is in the name, so a plugin for another major is simply not found), of type [`abi::EntryV1`]. The
//! operator calls it once after loading, passing its [`abi::HostApiV1`] (logging callback), and gets back a
//! pointer to the plugin's [`abi::PluginApiV1`] table, which must stay valid for the life of the process
//! (plugins are never unloaded).
//!
//! Both tables start with the same header: `abi_major: u16`, `abi_minor: u16`, `struct_size: u32`. The
//! operator refuses a table whose major differs from [`abi::ABI_MAJOR`], whose `struct_size` is smaller than
//! [`abi::PLUGIN_API_V1_SIZE`], or with a null name or function. Minor versions only append fields; a reader
//! uses an appended field only when the other side's `struct_size` covers it.
//!
//! Calls (`open_session`, `place`, `apply`) take an input as `(ptr, len)` bytes, borrowed for the call, and
//! write an output [`abi::ByteBuffer`] that the plugin allocated and the operator hands back through
//! `free_buffer`: whoever allocates, frees. They return a status ([`abi::status`]): `OK` with a JSON output,
//! `ERROR` with a UTF-8 message, or `PANIC` with the panic message. Every export must catch panics (a panic
//! unwinding out of `extern "C"` aborts the process); [`abi::guest::run`] does it. A session handle is used by
//! one thread at a time; different sessions may be used concurrently.
//!
//! ## Buffer schema (JSON, camelCase field names)
//!
//! | call | input | output on `OK` |
//! |---|---|---|
//! | `open_session` | [`abi::OpenSessionInput`]: `{"snapshot": Snapshot, "seed": u64}` | empty |
//! | `place` | [`WorkloadRequest`] | [`abi::PlaceOutput`]: `{"placed": Placement}` or `{"failed": ScheduleError}` |
//! | `apply` | `[SnapshotUpdate, ...]` | empty |
//!
//! - `Snapshot`: `{"hosts": [HostInfo], "allowSharedHosts": bool, "implicitInterfaces": [WitInterface]}`.
//! - `HostInfo`: `{"id", "name", "labels": {..}, "ready", "draining", "environment", "cpuUsageBp",
//!   "memoryTotalBytes", "memoryFreeBytes", "workloadCount", "componentCount", "interfaces": [WitInterface],
//!   "replicaSets": {"ns/rs": count}}`. CPU and memory are integers (basis points, bytes), so decisions are
//!   bit-for-bit reproducible on both sides.
//! - `WitInterface`: `{"namespace", "package", "interfaces": [..], "version"?}`.
//! - `WorkloadRequest`: `{"namespace", "name", "schedulerName"?, "hostSelector": {..}, "environment"?,
//!   "hostInterfaces": [WitInterface], "replicaSet"?, "componentCount", "resources": {"memoryBytes"?,
//!   "cpuBp"?}}`.
//! - `SnapshotUpdate`: `{"upsertHost": HostInfo}`, `{"removeHost": {"hostId"}}`,
//!   `{"assume": {"hostId", "footprint"}}` or `{"forget": {"hostId", "footprint"}}`, where a footprint is
//!   `{"replicaSet"?, "componentCount", "resources"}`.
//! - `Placement`: `{"hostId", "hostName", "score", "feasibleHosts"}`.
//!
//! Readers ignore unknown fields and default missing ones, so a minor may add fields. `place` counts the
//! placement in the session before returning it. A plugin built on this crate gets the whole schema from its
//! serde types; the example plugin under `plugins/example-plugin` is a complete template.

pub mod abi;
mod filter;
mod interfaces;
mod model;
mod pipeline;
mod registry;
mod rng;
mod session;

pub use filter::{
    Context, ENVIRONMENT, Filter, HostRejection, INTERFACES, READINESS, Reason, Rejection, SELECTOR, Scorer,
    percent, resolve_environment,
};
pub use interfaces::{provides, versions_compatible};
pub use model::{
    FULL_BP, HostInfo, ParseWitInterfaceError, Placement, ResourceHints, Snapshot, SnapshotError,
    SnapshotUpdate, WitInterface, WorkloadFootprint, WorkloadRequest, percent_to_bp, wasi_builtin_interfaces,
};
pub use pipeline::{
    LISTED_HOSTS, Pipeline, PipelineBuilder, PluginFailure, ReasonCount, ScheduleError, Unschedulable,
};
pub use registry::{PolicyRegistry, RegistryError, Scheduler, UnknownPolicy, is_dns_subdomain};
pub use rng::{SplitMix64, pick_index};
pub use session::{PipelineSession, Policy, Session};
