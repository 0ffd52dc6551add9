//! Host <-> operator NATS wire messages (wasmCloud v2 compatible) and a typed client.
//!
//! The control protocol is core NATS request/reply with JSON bodies in the canonical proto3 JSON mapping
//! of `wasmcloud.runtime.v2` (lowerCamelCase names, 64-bit integers as strings, enums as names, defaults
//! omitted, timestamps in RFC 3339):
//!
//! | subject | request | reply |
//! |---|---|---|
//! | `runtime.operator.heartbeat.<host-id>` (host publishes) | [`HostHeartbeat`] | — |
//! | `runtime.host.<host-id>.heartbeat` | [`Empty`] | [`HostHeartbeat`] |
//! | `runtime.host.<host-id>.workload.start` | [`WorkloadStartRequest`] | [`WorkloadStartResponse`] |
//! | `runtime.host.<host-id>.workload.status` | [`WorkloadStatusRequest`] | [`WorkloadStatusResponse`] |
//! | `runtime.host.<host-id>.workload.stop` | [`WorkloadStopRequest`] | [`WorkloadStopResponse`] |
//!
//! This crate has no Kubernetes dependency: the host and the operator both use it.

mod client;
pub mod connect;
mod failures;
mod messages;
mod proto_json;
pub mod subjects;
mod timestamp;

pub use client::{
    ClientError, HeartbeatSubscription, HostClient, MalformedCounter, MalformedHeartbeat, SNIPPET_LEN,
    SyncError, Timeouts, control_plane_connect_options, log_connection_event, parse_heartbeat,
    payload_snippet, reconnect_delay, server_round_trip,
};
pub use connect::{ConnectError, NatsSecurity};
pub use failures::RequestFailures;
pub use messages::{
    Component, Empty, EmptyDirVolume, HostHeartbeat, HostHeartbeatRequest, HostPathVolume, ImagePullPolicy,
    ImagePullSecret, LocalResources, Service, StringMap, Volume, VolumeMount, VolumeType, WitInterface,
    WitWorld, Workload, WorkloadStartRequest, WorkloadStartResponse, WorkloadState, WorkloadStatus,
    WorkloadStatusRequest, WorkloadStatusResponse, WorkloadStopRequest, WorkloadStopResponse, from_json,
    to_json,
};
pub use subjects::Command;
pub use timestamp::{Timestamp, TimestampError};
