//! The messages of `wasmcloud.runtime.v2` (`host_heartbeat.proto`, `host_service.proto`,
//! `wit_interface.proto`, `workload.proto`, `workload_service.proto`) in the canonical proto3 JSON
//! mapping.
//!
//! Field order follows the proto field numbers, so the output matches what `protojson` and `pbjson`
//! write field for field. Parsers accept the lowerCamelCase names and the original snake_case names,
//! ignore unknown fields and read `null` as "not set".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::proto_json::{float32, int32, int64, is_false, is_zero, nullable, proto_enum};
use crate::timestamp::Timestamp;

/// A string-to-string proto `map`, kept sorted (as `protojson` writes maps).
pub type StringMap = BTreeMap<String, String>;

/// `google.protobuf.Empty`: the `heartbeat` request body, `{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Empty {}

/// A host's periodic announcement of itself (`wasmcloud.runtime.v2.HostHeartbeat`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HostHeartbeat {
    /// Unique host identifier (a UUID, new on every process start).
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub id: String,
    /// Public hostname: an IP address or DNS name the host's HTTP port is reachable at.
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub hostname: String,
    /// Human-friendly name.
    #[serde(
        alias = "friendly_name",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub friendly_name: String,
    /// Version of the host runtime.
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub version: String,
    /// Arbitrary labels (wasmCloud hosts always carry `hostgroup`).
    #[serde(skip_serializing_if = "StringMap::is_empty", deserialize_with = "nullable")]
    pub labels: StringMap,
    /// When the host started.
    #[serde(alias = "started_at", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// Operating system architecture, e.g. `x86_64`.
    #[serde(
        alias = "os_arch",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub os_arch: String,
    /// Operating system name, e.g. `linux`.
    #[serde(
        alias = "os_name",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub os_name: String,
    /// Operating system kernel version.
    #[serde(
        alias = "os_kernel",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub os_kernel: String,
    /// System CPU usage in percent (0–100).
    #[serde(alias = "system_cpu_usage", skip_serializing_if = "is_zero", with = "float32")]
    pub system_cpu_usage: f32,
    /// Total system memory in bytes.
    #[serde(
        alias = "system_memory_total",
        skip_serializing_if = "is_zero",
        with = "int64"
    )]
    pub system_memory_total: u64,
    /// Free (available) system memory in bytes.
    #[serde(alias = "system_memory_free", skip_serializing_if = "is_zero", with = "int64")]
    pub system_memory_free: u64,
    /// Number of components in running workloads.
    #[serde(alias = "component_count", skip_serializing_if = "is_zero", with = "int64")]
    pub component_count: u64,
    /// Number of workloads the host knows, in any state.
    #[serde(alias = "workload_count", skip_serializing_if = "is_zero", with = "int64")]
    pub workload_count: u64,
    /// WIT interfaces the host provides to components.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub imports: Vec<WitInterface>,
    /// WIT interfaces the host can call on components.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub exports: Vec<WitInterface>,
    /// The host's HTTP ingress port.
    #[serde(alias = "http_port", skip_serializing_if = "is_zero", with = "int32")]
    pub http_port: u32,
    /// The environment the host runs in (for Kubernetes host pods: the pod's namespace).
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub environment: String,
}

/// `wasmcloud.runtime.v2.HostHeartbeatRequest` (declared by `HostService`; not used on the bus).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HostHeartbeatRequest {
    /// The heartbeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<HostHeartbeat>,
}

/// A WIT package and some of its interfaces, with configuration (`wasmcloud.runtime.v2.WitInterface`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WitInterface {
    /// Package namespace, e.g. `wasi`.
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub namespace: String,
    /// Package name, e.g. `http`.
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub package: String,
    /// Package version (semver), empty when unversioned.
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub version: String,
    /// Interface names within the package, e.g. `incoming-handler`.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub interfaces: Vec<String>,
    /// Workload-specific configuration (for `wasi:http`: `host`, `host-aliases`).
    #[serde(skip_serializing_if = "StringMap::is_empty", deserialize_with = "nullable")]
    pub config: StringMap,
    /// Optional instance name for multi-backend routing.
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub name: String,
}

impl WitInterface {
    /// Whether this is `wasi:http` with an incoming handler (`incoming-handler`, or `handler` for
    /// WASI 0.3): the interface whose `host` config binds a workload to a hostname.
    pub fn is_http_incoming_handler(&self) -> bool {
        self.namespace == "wasi"
            && self.package == "http"
            && self
                .interfaces
                .iter()
                .any(|i| i == "incoming-handler" || i == "handler")
    }
}

/// Body of `workload.start` (`wasmcloud.runtime.v2.WorkloadStartRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WorkloadStartRequest {
    /// What to run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    /// The ID the operator assigned (it names the workload in status and stop requests).
    #[serde(
        alias = "workload_id",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub workload_id: String,
}

/// A set of components plus an optional long-running service (`wasmcloud.runtime.v2.Workload`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Workload {
    /// Kubernetes namespace of the Workload object.
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub namespace: String,
    /// Name of the Workload object.
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub name: String,
    /// Annotations of the Workload object.
    #[serde(skip_serializing_if = "StringMap::is_empty", deserialize_with = "nullable")]
    pub annotations: StringMap,
    /// The optional long-running service component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
    /// The components and the host interfaces they use.
    #[serde(alias = "wit_world", skip_serializing_if = "Option::is_none")]
    pub wit_world: Option<WitWorld>,
    /// Volumes the components may mount.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub volumes: Vec<Volume>,
}

/// The components of a workload and the host interfaces available to them
/// (`wasmcloud.runtime.v2.WitWorld`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WitWorld {
    /// The components.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub components: Vec<Component>,
    /// Host interfaces, each possibly carrying workload-specific configuration.
    #[serde(
        alias = "host_interfaces",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "nullable"
    )]
    pub host_interfaces: Vec<WitInterface>,
}

/// One Wasm component of a workload (`wasmcloud.runtime.v2.Component`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Component {
    /// Image reference (OCI, or another source the host supports).
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub image: String,
    /// Limits, configuration and policy for this component.
    #[serde(alias = "local_resources", skip_serializing_if = "Option::is_none")]
    pub local_resources: Option<LocalResources>,
    /// Warm instances to keep (`sint32`; zero or negative: not configured).
    #[serde(alias = "pool_size", skip_serializing_if = "is_zero", with = "int32")]
    pub pool_size: i32,
    /// Invocations per instance before it is recycled (`sint32`; zero or negative: not configured).
    #[serde(alias = "max_invocations", skip_serializing_if = "is_zero", with = "int32")]
    pub max_invocations: i32,
    /// Credentials for a private registry.
    #[serde(alias = "image_pull_secret", skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<ImagePullSecret>,
    /// Component name, unique within the workload.
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub name: String,
    /// When to pull the image.
    #[serde(
        alias = "image_pull_policy",
        skip_serializing_if = "ImagePullPolicy::is_default"
    )]
    pub image_pull_policy: ImagePullPolicy,
    /// Concurrent calls one instance may serve (`sint32`; below 1 means one).
    #[serde(alias = "max_concurrency", skip_serializing_if = "is_zero", with = "int32")]
    pub max_concurrency: i32,
}

/// A long-running component of a workload (`wasmcloud.runtime.v2.Service`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Service {
    /// Image reference.
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub image: String,
    /// Limits, configuration and policy for the service.
    #[serde(alias = "local_resources", skip_serializing_if = "Option::is_none")]
    pub local_resources: Option<LocalResources>,
    /// Restarts allowed before the workload goes to ERROR.
    #[serde(alias = "max_restarts", skip_serializing_if = "is_zero", with = "int64")]
    pub max_restarts: u64,
    /// Credentials for a private registry.
    #[serde(alias = "image_pull_secret", skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<ImagePullSecret>,
    /// When to pull the image.
    #[serde(
        alias = "image_pull_policy",
        skip_serializing_if = "ImagePullPolicy::is_default"
    )]
    pub image_pull_policy: ImagePullPolicy,
}

/// Limits, configuration and network policy of one component (`wasmcloud.runtime.v2.LocalResources`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LocalResources {
    /// Memory limit in MiB (zero: the host default).
    #[serde(alias = "memory_limit_mb", skip_serializing_if = "is_zero", with = "int32")]
    pub memory_limit_mb: i32,
    /// CPU limit (unit unspecified by wasmCloud; zero: the host default).
    #[serde(alias = "cpu_limit", skip_serializing_if = "is_zero", with = "int32")]
    pub cpu_limit: i32,
    /// Low-level component configuration (`wasi:config`).
    #[serde(skip_serializing_if = "StringMap::is_empty", deserialize_with = "nullable")]
    pub config: StringMap,
    /// Environment variables (`wasi:cli/environment`).
    #[serde(skip_serializing_if = "StringMap::is_empty", deserialize_with = "nullable")]
    pub environment: StringMap,
    /// Mounts of the workload's volumes.
    #[serde(
        alias = "volume_mounts",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "nullable"
    )]
    pub volume_mounts: Vec<VolumeMount>,
    /// Hosts the component may connect to (`*` wildcards allowed as a whole label).
    #[serde(
        alias = "allowed_hosts",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "nullable"
    )]
    pub allowed_hosts: Vec<String>,
    /// Names the component may resolve through `wasi:sockets/ip-name-lookup`.
    #[serde(
        alias = "allowed_ip_name_lookups",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "nullable"
    )]
    pub allowed_ip_name_lookups: Vec<String>,
    /// Host-loopback ports the component may reach, e.g. `5432/tcp`.
    #[serde(
        alias = "allowed_host_loopback_ports",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "nullable"
    )]
    pub allowed_host_loopback_ports: Vec<String>,
}

/// A volume of a workload (`wasmcloud.runtime.v2.Volume`); `volume_type` is the proto `oneof`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "VolumeRepr", into = "VolumeRepr")]
pub struct Volume {
    /// Volume name, referenced by [`VolumeMount::name`].
    pub name: String,
    /// The kind of volume; `None` when the sender set neither.
    pub volume_type: Option<VolumeType>,
}

/// The `volume_type` oneof of [`Volume`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeType {
    /// A directory of the host machine.
    HostPath(HostPathVolume),
    /// A fresh empty directory.
    EmptyDir(EmptyDirVolume),
}

/// The JSON shape of [`Volume`]: each oneof member is a field of its own, at most one set.
#[derive(Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct VolumeRepr {
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    name: String,
    #[serde(alias = "host_path", skip_serializing_if = "Option::is_none")]
    host_path: Option<HostPathVolume>,
    #[serde(alias = "empty_dir", skip_serializing_if = "Option::is_none")]
    empty_dir: Option<EmptyDirVolume>,
}

impl TryFrom<VolumeRepr> for Volume {
    type Error = String;

    fn try_from(r: VolumeRepr) -> Result<Self, String> {
        let volume_type = match (r.host_path, r.empty_dir) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "volume {:?}: oneof volume_type is set twice (hostPath and emptyDir)",
                    r.name
                ));
            }
            (Some(h), None) => Some(VolumeType::HostPath(h)),
            (None, Some(e)) => Some(VolumeType::EmptyDir(e)),
            (None, None) => None,
        };
        Ok(Volume {
            name: r.name,
            volume_type,
        })
    }
}

impl From<Volume> for VolumeRepr {
    fn from(v: Volume) -> Self {
        let (host_path, empty_dir) = match v.volume_type {
            Some(VolumeType::HostPath(h)) => (Some(h), None),
            Some(VolumeType::EmptyDir(e)) => (None, Some(e)),
            None => (None, None),
        };
        VolumeRepr {
            name: v.name,
            host_path,
            empty_dir,
        }
    }
}

/// `wasmcloud.runtime.v2.HostPathVolume`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HostPathVolume {
    /// The directory on the host machine.
    #[serde(
        alias = "local_path",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub local_path: String,
}

/// `wasmcloud.runtime.v2.EmptyDirVolume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EmptyDirVolume {}

/// Where a component sees one of the workload's volumes (`wasmcloud.runtime.v2.VolumeMount`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct VolumeMount {
    /// The [`Volume::name`].
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub name: String,
    /// Path inside the component's filesystem.
    #[serde(
        alias = "mount_path",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub mount_path: String,
    /// Mount read-only.
    #[serde(
        alias = "read_only",
        skip_serializing_if = "is_false",
        deserialize_with = "nullable"
    )]
    pub read_only: bool,
}

/// Registry credentials (`wasmcloud.runtime.v2.ImagePullSecret`). They travel in plain text: protect
/// the bus with TLS. `Debug` redacts the password.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ImagePullSecret {
    /// Registry user name.
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub username: String,
    /// Registry password or token.
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub password: String,
}

impl std::fmt::Debug for ImagePullSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImagePullSecret")
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .finish()
    }
}

proto_enum! {
    /// When to pull an image (`wasmcloud.runtime.v2.ImagePullPolicy`).
    pub enum ImagePullPolicy {
        /// Not set: the host's default (IfNotPresent).
        #[default]
        Unspecified = 0 => "IMAGE_PULL_POLICY_UNSPECIFIED",
        /// Always pull.
        Always = 1 => "IMAGE_PULL_POLICY_ALWAYS",
        /// Pull only if not cached.
        IfNotPresent = 2 => "IMAGE_PULL_POLICY_IF_NOT_PRESENT",
        /// Never pull; use the cached copy only.
        Never = 3 => "IMAGE_PULL_POLICY_NEVER",
    }
}

proto_enum! {
    /// The state of a workload on a host (`wasmcloud.runtime.v2.WorkloadState`).
    pub enum WorkloadState {
        /// Sentinel; never reported on purpose.
        #[default]
        Unspecified = 0 => "WORKLOAD_STATE_UNSPECIFIED",
        /// The host accepted the start and is preparing the workload.
        Starting = 1 => "WORKLOAD_STATE_STARTING",
        /// The workload is serving.
        Running = 2 => "WORKLOAD_STATE_RUNNING",
        /// The workload's service ran to completion.
        Completed = 3 => "WORKLOAD_STATE_COMPLETED",
        /// A stop was received; the workload is being torn down.
        Stopping = 4 => "WORKLOAD_STATE_STOPPING",
        /// The workload failed to start or failed while running.
        Error = 5 => "WORKLOAD_STATE_ERROR",
        /// The host does not know this workload ID.
        NotFound = 6 => "WORKLOAD_STATE_NOT_FOUND",
    }
}

/// The state of one workload with a human-readable message (`wasmcloud.runtime.v2.WorkloadStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WorkloadStatus {
    /// The workload ID the request named.
    #[serde(
        alias = "workload_id",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub workload_id: String,
    /// Its state.
    #[serde(alias = "workload_state", skip_serializing_if = "WorkloadState::is_default")]
    pub workload_state: WorkloadState,
    /// Details, e.g. the error text for [`WorkloadState::Error`].
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub message: String,
}

impl WorkloadStatus {
    /// A status with the given ID, state and message.
    pub fn new(workload_id: impl Into<String>, state: WorkloadState, message: impl Into<String>) -> Self {
        Self {
            workload_id: workload_id.into(),
            workload_state: state,
            message: message.into(),
        }
    }
}

/// Reply to `workload.start` (`wasmcloud.runtime.v2.WorkloadStartResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WorkloadStartResponse {
    /// The outcome.
    #[serde(alias = "workload_status", skip_serializing_if = "Option::is_none")]
    pub workload_status: Option<WorkloadStatus>,
}

/// Body of `workload.status` (`wasmcloud.runtime.v2.WorkloadStatusRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WorkloadStatusRequest {
    /// The workload to report on.
    #[serde(
        alias = "workload_id",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub workload_id: String,
}

/// Reply to `workload.status` (`wasmcloud.runtime.v2.WorkloadStatusResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WorkloadStatusResponse {
    /// The workload's status.
    #[serde(alias = "workload_status", skip_serializing_if = "Option::is_none")]
    pub workload_status: Option<WorkloadStatus>,
}

/// Body of `workload.stop` (`wasmcloud.runtime.v2.WorkloadStopRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WorkloadStopRequest {
    /// The workload to stop.
    #[serde(
        alias = "workload_id",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub workload_id: String,
}

/// Reply to `workload.stop` (`wasmcloud.runtime.v2.WorkloadStopResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WorkloadStopResponse {
    /// The outcome.
    #[serde(alias = "workload_status", skip_serializing_if = "Option::is_none")]
    pub workload_status: Option<WorkloadStatus>,
}

macro_rules! status_response {
    ($($t:ty),*) => {$(
        impl $t {
            /// A response carrying this status.
            pub fn new(status: WorkloadStatus) -> Self {
                Self { workload_status: Some(status) }
            }
        }

        impl From<WorkloadStatus> for $t {
            fn from(status: WorkloadStatus) -> Self {
                Self::new(status)
            }
        }
    )*};
}
status_response!(
    WorkloadStartResponse,
    WorkloadStatusResponse,
    WorkloadStopResponse
);

/// Encodes a message in the canonical proto3 JSON form.
pub fn to_json<T: Serialize>(msg: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(msg)
}

/// Decodes a message from proto3 JSON.
pub fn from_json<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}
