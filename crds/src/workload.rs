//! `Workload`: a set of WebAssembly components (and an optional long-running service) placed together
//! on one host, like a Pod. Its spec, [`WorkloadSpec`], is also the template of replica sets and
//! deployments.

use std::{borrow::Cow, collections::BTreeMap};

use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::{
    common::{LocalObjectReference, string_enum},
    condition::Condition,
    schema::{self, Layout},
};

/// Pattern every `allowedHosts` entry must match (wasmCloud's, verbatim).
pub const ALLOWED_HOST_PATTERN: &str = r"^\*$|^([A-Za-z][A-Za-z0-9+.-]*://)(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:[0-9]{1,5})?/?$|^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:[0-9]{1,5})?$";
/// Pattern every `allowedIpNameLookups` entry must match (wasmCloud's, verbatim).
pub const ALLOWED_IP_NAME_LOOKUP_PATTERN: &str = r"^\*$|^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$|^[0-9A-Fa-f:.]+$";
/// Pattern every `allowedHostLoopbackPorts` entry must match (wasmCloud's, verbatim).
pub const ALLOWED_HOST_LOOPBACK_PORT_PATTERN: &str = r"^[0-9]{1,5}(/(tcp|udp|TCP|UDP))?$";
/// Pattern of a host interface `name` (wasmCloud's, verbatim).
pub const HOST_INTERFACE_NAME_PATTERN: &str = r"^[a-z0-9][a-z0-9-]*$";
/// Pattern of a volume `name`: a DNS label (RFC 1123), as wasmCloud documents but does not check.
pub const VOLUME_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// Pattern of `schedulerName`: a DNS subdomain (RFC 1123), like a Pod's `schedulerName`.
pub const SCHEDULER_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// CEL rule on `hostInterfaces`: no two entries with the same namespace, package, name and version
/// (wasmCloud's, verbatim).
pub const HOST_INTERFACES_UNIQUE_RULE: &str = "self.all(x, self.exists_one(y, y.__namespace__ == x.__namespace__ && y.__package__ == x.__package__ && (has(y.name) ? y.name : '') == (has(x.name) ? x.name : '') && (has(y.version) ? y.version : '') == (has(x.version) ? x.version : '')))";
/// Message of [`HOST_INTERFACES_UNIQUE_RULE`].
pub const HOST_INTERFACES_UNIQUE_MESSAGE: &str =
    "hostInterfaces must not contain duplicate entries with the same namespace, package, name, and version";
/// CEL rule on `hostInterfaces`: at most one unnamed entry per namespace:package (wasmCloud's,
/// verbatim).
pub const HOST_INTERFACES_ONE_UNNAMED_RULE: &str = "self.all(x, (has(x.name) && x.name != '') || self.filter(y, y.__namespace__ == x.__namespace__ && y.__package__ == x.__package__ && !(has(y.name) && y.name != '')).size() == 1)";
/// Message of [`HOST_INTERFACES_ONE_UNNAMED_RULE`].
pub const HOST_INTERFACES_ONE_UNNAMED_MESSAGE: &str = "at most one unnamed hostInterface is allowed per namespace:package; set a unique name to disambiguate multiple imports of the same package";
/// CEL rule on a volume: exactly one source (Weft's addition).
pub const VOLUME_ONE_SOURCE_RULE: &str = "has(self.ephemeral) != has(self.hostPath)";
/// Message of [`VOLUME_ONE_SOURCE_RULE`].
pub const VOLUME_ONE_SOURCE_MESSAGE: &str = "exactly one of ephemeral or hostPath must be set";

const WORKLOAD_DESCRIPTION: &str = "WebAssembly components, and optionally a long-running service, that run together on \
one host with the configuration, volumes and host interfaces they need; the unit of placement, like a Pod.";

/// Desired state of a Workload: what to run, and where.
// Several printer columns share `type_ = "string"`, which clippy mistakes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "runtime.wasmcloud.dev",
    version = "v1alpha1",
    kind = "Workload",
    namespaced,
    status = "WorkloadStatus",
    shortname = "ww",
    schema = "manual",
    derive = "PartialEq",
    derive = "Default",
    doc = "WebAssembly components, and optionally a long-running service, that run together on one host.",
    printcolumn(name = "HOSTID", type_ = "string", json_path = ".status.hostId"),
    printcolumn(name = "ENVIRONMENT", type_ = "string", json_path = ".status.environment"),
    printcolumn(
        name = "READY",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "REASON",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#,
        priority = "1"
    ),
    printcolumn(
        name = "MESSAGE",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].message"#,
        priority = "1"
    ),
    printcolumn(name = "AGE", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    /// Schedule only onto Hosts that carry all of these labels, e.g. `hostgroup: default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selector: Option<BTreeMap<String, String>>,
    /// Run on the Host with this host ID, skipping host selection. The ID is not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    /// Schedule only onto Hosts whose `environment` equals this value (for in-cluster hosts, their
    /// pod's namespace). A value other than the Workload's own namespace is honoured only when the
    /// operator allows shared hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Weft extension: the scheduling policy that places this Workload, by name. Unset means the
    /// operator's default policy. A DNS subdomain, like a Pod's `schedulerName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = SCHEDULER_NAME_PATTERN))]
    pub scheduler_name: Option<String>,
    /// The components of the workload, all placed on the same host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<WorkloadComponent>>,
    /// The host-provided interfaces the workload imports, with their configuration. Entries must be
    /// unique by namespace, package, name and version, and at most one entry per namespace:package
    /// may be unnamed (it is the default route); give the others distinct `name`s to route imports
    /// of the same package to different backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), transform = host_interfaces_rules)]
    pub host_interfaces: Option<Vec<HostInterface>>,
    /// A long-running service (a `wasi:cli/run` component) that is the workload's "localhost".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<WorkloadService>,
    /// Volumes the components and the service can mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Volume>>,
    /// Kubernetes-specific configuration, such as a Service that routes to the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesSpec>,
}

fn host_interfaces_rules(schema: &mut Schema) {
    schema::add_rules(
        schema,
        &[
            (HOST_INTERFACES_UNIQUE_RULE, HOST_INTERFACES_UNIQUE_MESSAGE),
            (
                HOST_INTERFACES_ONE_UNNAMED_RULE,
                HOST_INTERFACES_ONE_UNNAMED_MESSAGE,
            ),
        ],
    );
}

/// A WebAssembly component of the workload, instantiated to handle calls.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadComponent {
    /// Name of the component, unique within the workload.
    pub name: String,
    /// OCI reference of the component image, e.g. `ghcr.io/wasmcloud/components/hello:0.1.0`. In a
    /// WorkloadDeployment it may also be `artifact://<name>`, naming one of its `artifacts`.
    #[schemars(length(min = 1))]
    pub image: String,
    /// A `kubernetes.io/dockerconfigjson` Secret with the credentials to pull the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<LocalObjectReference>,
    /// When to pull the image: `Always`, `IfNotPresent` or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// Number of instances kept ready between calls. Unset means zero: each call runs in a fresh
    /// instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub pool_size: Option<i32>,
    /// Calls a pooled instance serves before a fresh one replaces it. Unset means no limit. Applies
    /// with `poolSize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_invocations: Option<i32>,
    /// Calls a pooled instance may handle at once. Unset means 1. Raise it only for components that
    /// yield while they wait on I/O. Applies with `poolSize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_concurrency: Option<i32>,
    /// Resources made available to the component: volumes, environment, configuration and network
    /// permissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_resources: Option<LocalResources>,
}

string_enum! {
    /// When to pull an image.
    pub enum ImagePullPolicy {
        /// Pull the image every time the workload starts.
        Always = "Always",
        /// Pull the image only if the host does not have it cached.
        IfNotPresent = "IfNotPresent",
        /// Never pull; the host must already have the image.
        Never = "Never",
    }
}

/// A long-running `wasi:cli/run` component beside the workload's components, like a sidecar: the
/// ports it listens on are the components' localhost.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadService {
    /// OCI reference of the service's component image.
    #[schemars(length(min = 1))]
    pub image: String,
    /// A `kubernetes.io/dockerconfigjson` Secret with the credentials to pull the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<LocalObjectReference>,
    /// When to pull the image: `Always`, `IfNotPresent` or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// How many times the service is restarted after it exits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<i32>,
    /// Resources made available to the service: volumes, environment, configuration and network
    /// permissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_resources: Option<LocalResources>,
}

/// Resources made available to a component or the service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalResources {
    /// Volumes to mount; each must be declared in the workload's `volumes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<VolumeMount>>,
    /// Environment variables (`wasi:cli/environment`), merged from `config`, then `configFrom`
    /// ConfigMaps, then `secretFrom` Secrets; the last value of a key wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<ConfigLayer>,
    /// Low-level component configuration, e.g. messaging `subscriptions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
    /// Outbound HTTP egress allowlist. Each entry is `*` (allow all), `host[:port]`,
    /// `scheme://host[:port][/]`, `*.suffix[:port]` or `scheme://*.suffix[:port][/]`; no path, query
    /// or fragment. Empty or absent denies every outgoing request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(regex(pattern = ALLOWED_HOST_PATTERN)))]
    pub allowed_hosts: Option<Vec<String>>,
    /// Names the component may resolve through `wasi:sockets/ip-name-lookup`: `*` (any), `*.suffix`,
    /// a host name, or a literal IP address; no scheme, port or path. Empty or absent denies every
    /// lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(regex(pattern = ALLOWED_IP_NAME_LOOKUP_PATTERN)))]
    pub allowed_ip_name_lookups: Option<Vec<String>>,
    /// Ports on the machine's own loopback the component may reach through the reserved name
    /// `host.wasmcloud.internal`: `"5432"`, `"5432/tcp"` or `"53/udp"`. Empty or absent denies every
    /// host-loopback connection; a non-empty list is still inert unless the host runs with
    /// `--allow-host-loopback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(regex(pattern = ALLOWED_HOST_LOOPBACK_PORT_PATTERN)))]
    pub allowed_host_loopback_ports: Option<Vec<String>>,
}

/// Key-value configuration from inline values, ConfigMaps and Secrets, merged in that order (the last
/// value of a key wins).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigLayer {
    /// ConfigMaps whose keys and values are merged in order; the last one wins on a conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_from: Option<Vec<LocalObjectReference>>,
    /// Secrets whose keys and values are merged in order (decoded to UTF-8); the last one wins on a
    /// conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_from: Option<Vec<LocalObjectReference>>,
    /// Inline keys and values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
}

/// A host-provided interface the workload imports, e.g. `wasi:http` `incoming-handler`, with its
/// configuration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostInterface {
    /// Configuration of this interface (for `wasi:http` `incoming-handler`, key `host` is the
    /// hostname routed to the workload).
    #[serde(flatten)]
    pub config_layer: ConfigLayer,
    /// Routing name of this entry, matched against a component's `(implements <name>)` import.
    /// Needed to tell apart several entries of the same namespace:package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), regex(pattern = HOST_INTERFACE_NAME_PATTERN))]
    pub name: Option<String>,
    /// WIT namespace, e.g. `wasi`.
    #[schemars(length(max = 128))]
    pub namespace: String,
    /// WIT package, e.g. `http`.
    #[schemars(length(max = 128))]
    pub package: String,
    /// WIT interfaces of the package, e.g. `incoming-handler`.
    #[schemars(length(min = 1))]
    pub interfaces: Vec<String>,
    /// WIT package version, e.g. `0.2.2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub version: Option<String>,
}

/// A named volume that components can mount. Exactly one of `ephemeral` and `hostPath` is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = volume_rules)]
pub struct Volume {
    /// Volume name, referenced by `volumeMounts`: a DNS label, unique in the workload.
    #[schemars(length(max = 63), regex(pattern = VOLUME_NAME_PATTERN))]
    pub name: String,
    /// A temporary directory that lives as long as the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral: Option<EphemeralVolume>,
    /// An existing file or directory of the host machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathVolume>,
}

fn volume_rules(schema: &mut Schema) {
    schema::add_rules(schema, &[(VOLUME_ONE_SOURCE_RULE, VOLUME_ONE_SOURCE_MESSAGE)]);
}

/// A temporary directory that lives as long as the workload.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct EphemeralVolume {}

/// An existing file or directory of the host machine, mounted into the workload.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct HostPathVolume {
    /// Absolute path on the host machine.
    pub path: String,
}

/// Mounts a volume into a component or the service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// Name of a volume declared in the workload's `volumes`.
    pub name: String,
    /// Where the volume appears in the component's filesystem.
    pub mount_path: String,
    /// Mount the volume read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// Kubernetes-specific configuration of a workload.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct KubernetesSpec {
    /// An existing Service in the same namespace. The operator keeps an EndpointSlice for it that
    /// points at the host pods running the workload, and registers the Service's DNS names with the
    /// host so in-cluster callers reach the workload through the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<KubernetesServiceRef>,
}

/// A Kubernetes Service in the workload's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct KubernetesServiceRef {
    /// Name of the Service.
    pub name: String,
}

/// Observed state of a Workload.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    /// Conditions of the workload: `Config`, `HostSelection`, `Placement`, `Sync` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = crate::condition::conditions_list)]
    pub conditions: Vec<Condition>,
    /// ID of the Host the workload was placed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    /// `environment` of the Host the workload was placed on, whether or not the spec asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// ID of the workload on its host (the Workload's UID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_id: Option<String>,
}

impl Workload {
    /// Whether its `Ready` condition is True (placed, started and in sync).
    pub fn is_ready(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| crate::condition::is_true(&s.conditions, crate::names::condition_types::READY))
    }
}

impl HostInterface {
    /// Whether this is the `wasi:http` entry that serves requests (`incoming-handler`, or `handler` for
    /// WASI 0.3).
    pub fn is_http_handler(&self) -> bool {
        self.namespace == "wasi"
            && self.package == "http"
            && self
                .interfaces
                .iter()
                .any(|i| i == "incoming-handler" || i == "handler")
    }
}

impl WorkloadSpec {
    /// The hostnames the workload is served for, as written in the spec: `host` and `host-aliases`
    /// (comma-separated) of the inline config of the first `wasi:http` handler entry, and the aliases
    /// the operator adds for `kubernetes.service` (`<svc>.<namespace>` and `<svc>.<namespace>.svc`).
    /// Lowercased, without a trailing dot, without duplicates, in that order. Values that come only
    /// from ConfigMaps or Secrets are not seen here (wasmCloud's gateway reads the inline `host` too).
    pub fn http_hostnames(&self, namespace: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |name: &str| {
            let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
            if !name.is_empty() && !out.contains(&name) {
                out.push(name);
            }
        };
        let Some(http) = self
            .host_interfaces
            .iter()
            .flatten()
            .find(|h| h.is_http_handler())
        else {
            return out;
        };
        let config = http.config_layer.config.as_ref();
        let Some(host) = config.and_then(|c| c.get(crate::names::config_keys::HTTP_HOST)) else {
            return out;
        };
        push(host);
        if let Some(aliases) = config.and_then(|c| c.get(crate::names::config_keys::HTTP_HOST_ALIASES)) {
            aliases.split(',').for_each(&mut push);
        }
        if let Some(svc) = self.kubernetes.as_ref().and_then(|k| k.service.as_ref()) {
            push(&format!("{}.{namespace}", svc.name));
            push(&format!("{}.{namespace}.svc", svc.name));
        }
        out
    }
}

impl JsonSchema for Workload {
    fn schema_name() -> Cow<'static, str> {
        "Workload".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        schema::object::<WorkloadSpec, WorkloadStatus>(generator, WORKLOAD_DESCRIPTION, Layout::Spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(config: &[(&str, &str)], interfaces: &[&str]) -> HostInterface {
        HostInterface {
            namespace: "wasi".into(),
            package: "http".into(),
            interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
            config_layer: ConfigLayer {
                config: Some(
                    config
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn hostnames_come_from_the_first_http_handler_and_the_service() {
        let mut spec = WorkloadSpec {
            host_interfaces: Some(vec![
                http(&[("host", "other.test")], &["outgoing-handler"]),
                http(
                    &[
                        ("host", "Hello.Example.com."),
                        ("host-aliases", "a.test, hello.example.com,"),
                    ],
                    &["incoming-handler"],
                ),
                http(&[("host", "second.test")], &["incoming-handler"]),
            ]),
            ..Default::default()
        };
        assert_eq!(spec.http_hostnames("shop"), vec!["hello.example.com", "a.test"]);
        spec.kubernetes = Some(KubernetesSpec {
            service: Some(KubernetesServiceRef { name: "web".into() }),
        });
        assert_eq!(
            spec.http_hostnames("shop"),
            vec!["hello.example.com", "a.test", "web.shop", "web.shop.svc"]
        );
        let p3 = WorkloadSpec {
            host_interfaces: Some(vec![http(&[("host", "p3.test")], &["handler"])]),
            ..Default::default()
        };
        assert_eq!(p3.http_hostnames("x"), vec!["p3.test"]);
        let no_host = WorkloadSpec {
            host_interfaces: Some(vec![http(&[], &["incoming-handler"])]),
            ..Default::default()
        };
        assert!(no_host.http_hostnames("x").is_empty());
    }
}
