//! Every well-known name Weft shares with wasmCloud v2: API group, finalizers, labels, annotations,
//! condition types and reasons, and field managers. Use these constants instead of string literals.

/// The API group of every kind.
pub const GROUP: &str = "runtime.wasmcloud.dev";
/// The only served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every object.
pub const API_VERSION: &str = "runtime.wasmcloud.dev/v1alpha1";

/// Finalizers.
pub mod finalizers {
    /// On a Host: deletes the Workloads placed on it before the Host goes away.
    pub const HOST: &str = "runtime.wasmcloud.dev/host-finalizer";
    /// On a Workload: stops it on its host before it goes away.
    pub const WORKLOAD: &str = "runtime.wasmcloud.dev/workload-finalizer";
    /// On an Artifact: blocks deletion while a WorkloadDeployment in its namespace still lists it.
    pub const ARTIFACT: &str = "runtime.wasmcloud.dev/artifact-finalizer";
    /// On a host pod: deletes its Host as soon as the pod starts terminating.
    pub const POD_HOST: &str = "runtime.wasmcloud.dev/pod-host-finalizer";
    /// Legacy, written on Hosts by wasmCloud's gateway (v2.0.2 to 2.6.x); strip it, never add it.
    pub const LEGACY_GATEWAY_HOST: &str = "runtime.wasmcloud.dev/gateway-host-finalizer";
    /// Legacy, written on Workloads by wasmCloud's gateway (v2.0.2 to 2.6.x); strip it, never add it.
    pub const LEGACY_GATEWAY_WORKLOAD: &str = "runtime.wasmcloud.dev/gateway-workload-finalizer";
}

/// Labels.
pub mod labels {
    /// On a Host (from its heartbeat): the host group it belongs to. Workloads select it with
    /// `hostSelector: {hostgroup: <group>}`.
    pub const HOST_GROUP: &str = "hostgroup";
    /// On a host pod (any value): opts the pod into the pod finalizer.
    pub const HOST_POD_GROUP: &str = "wasmcloud.com/hostgroup";
    /// On a host pod, with the value [`HOST_POD_NAME_VALUE`].
    pub const HOST_POD_NAME: &str = "wasmcloud.com/name";
    /// The value of [`HOST_POD_NAME`] on host pods.
    pub const HOST_POD_NAME_VALUE: &str = "hostgroup";
    /// On a WorkloadReplicaSet: the name of the WorkloadDeployment that owns it. The deployment's
    /// `status.selector` is `runtime.wasmcloud.dev/workload-deployment=<name>`.
    pub const WORKLOAD_DEPLOYMENT: &str = "runtime.wasmcloud.dev/workload-deployment";
    /// Weft: on a Workload created by a WorkloadReplicaSet, the template hash it was created from (the
    /// same value as the [`WORKLOAD_REPLICA_SET_GENERATION`](super::annotations::WORKLOAD_REPLICA_SET_GENERATION)
    /// annotation, as a label so it can be selected on).
    pub const TEMPLATE_HASH: &str = "weft.dev/template-hash";
    /// On an EndpointSlice: the Service it belongs to (the Kubernetes standard label).
    pub const ENDPOINT_SLICE_SERVICE_NAME: &str = "kubernetes.io/service-name";
    /// On an EndpointSlice managed for a Workload's Service, with the value `"true"`.
    pub const ROUTE_MANAGER: &str = "wasmcloud.dev/route-manager";
}

/// Annotations.
pub mod annotations {
    /// On a Workload created by a WorkloadReplicaSet: the hash of the template it was created from.
    pub const WORKLOAD_REPLICA_SET_GENERATION: &str = "runtime.wasmcloud.dev/workload-replica-set-generation";
}

/// Condition types, in `status.conditions[].type`.
pub mod condition_types {
    /// Every kind: the object is believed ready to handle work.
    pub const READY: &str = "Ready";
    /// Host: the last heartbeat probe of the host succeeded.
    pub const REPORTING: &str = "Reporting";
    /// Workload: the referenced ConfigMaps and Secrets resolve.
    pub const CONFIG: &str = "Config";
    /// Workload: a host was chosen.
    pub const HOST_SELECTION: &str = "HostSelection";
    /// Workload: the start request was sent to the chosen host.
    pub const PLACEMENT: &str = "Placement";
    /// Workload, WorkloadDeployment, Artifact: the object is in sync with what it manages.
    pub const SYNC: &str = "Sync";
    /// Workload (Weft): its component answers requests instead of failing them (trap, memory or time
    /// limit). Reported only; it does not take the workload out of routing.
    pub const HEALTHY: &str = "Healthy";
    /// WorkloadReplicaSet: replicas are being added.
    pub const SCALE_UP: &str = "ScaleUp";
    /// WorkloadReplicaSet: replicas are being removed.
    pub const SCALE_DOWN: &str = "ScaleDown";
    /// WorkloadDeployment: every `artifact://` image resolves.
    pub const ARTIFACT: &str = "Artifact";
    /// WorkloadDeployment: the current template has a WorkloadReplicaSet.
    pub const DEPLOY: &str = "Deploy";
    /// WorkloadDeployment: the replica sets have the desired number of replicas.
    pub const SCALE: &str = "Scale";
    /// Artifact: the artifact URL is published in the status.
    pub const PUBLISHED: &str = "Published";
}

/// Condition reasons, in `status.conditions[].reason`.
pub mod reasons {
    /// The condition is `True`.
    pub const AVAILABLE: &str = "Available";
    /// The condition is `False` or `Unknown` because reconciling it failed or is still pending.
    pub const RECONCILE: &str = "Reconcile";
}

/// Field managers for server-side apply.
pub mod field_managers {
    /// Writes Host objects from heartbeats (the same manager name wasmCloud's operator uses, so a
    /// takeover from a wasmCloud operator keeps ownership of the same fields).
    pub const HOST_STATUS_UPDATER: &str = "host-status-updater";
}

/// Keys in a host interface's `config` with a meaning to the operator and the host.
pub mod config_keys {
    /// On the `wasi:http` incoming-handler entry: the hostname routed to the workload.
    pub const HTTP_HOST: &str = "host";
    /// On the `wasi:http` incoming-handler entry: extra hostnames, comma-separated (written by the
    /// operator for a workload's Kubernetes Service).
    pub const HTTP_HOST_ALIASES: &str = "host-aliases";
}

/// The leader-election Lease name wasmCloud's operator uses.
pub const LEADER_ELECTION_ID: &str = "d34db3ef.wasmcloud.dev";
