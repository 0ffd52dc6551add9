//! What a backend is asked to run: the domain form of a `workload.start` request.
//!
//! The host converts the NATS wire messages (wasmCloud v2's `Workload`, `Component`, `LocalResources`, …)
//! into these types; backends never see the wire format. Field meanings follow the Workload CRD
//! (`runtime.wasmcloud.dev/v1alpha1`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// A workload to start: one or more components plus what they may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadSpec {
    /// The workload ID the operator assigned (the Workload object's UID). Unique on a host.
    pub id: String,
    /// Namespace of the Workload object (for logs and metrics).
    pub namespace: String,
    /// Name of the Workload object (for logs and metrics).
    pub name: String,
    /// Annotations of the Workload object.
    pub annotations: BTreeMap<String, String>,
    /// The components. Exactly one of them must export `wasi:http/incoming-handler`; it serves the
    /// workload's HTTP requests.
    pub components: Vec<ComponentSpec>,
    /// Host interfaces the workload asked for, with their config (e.g. the `host` key of `wasi:http`).
    pub host_interfaces: Vec<HostInterface>,
    /// Volumes the components may mount.
    pub volumes: Vec<Volume>,
    /// A long-running `wasi:cli/run` service component. Backends that cannot run one reject the workload.
    pub service: Option<ServiceSpec>,
}

/// One component of a workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentSpec {
    /// The component's name within the workload.
    pub name: String,
    /// Where the component's bytes come from.
    pub source: ComponentSource,
    /// What the component may use.
    pub local_resources: LocalResources,
    /// Warm instances to keep (wasmCloud `poolSize`). With one fresh instance per request this only
    /// scales the concurrency cap (see [`ComponentSpec::max_concurrency`]).
    pub pool_size: u32,
    /// Retire an instance after this many calls (wasmCloud `maxInvocations`; 0 = unlimited). Always
    /// satisfied by a backend that uses a fresh instance per request.
    pub max_invocations: u32,
    /// Concurrent calls per warm instance (wasmCloud `maxConcurrency`; 0 = backend default). The
    /// workload's concurrency cap is `max_concurrency × max(pool_size, 1)`.
    pub max_concurrency: u32,
}

/// Where a component comes from: an image reference and how to pull it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ComponentSource {
    /// An OCI reference (`registry/repo:tag`, `registry/repo@sha256:…`), a `file://` URL or an
    /// `http(s)://` URL.
    pub image: String,
    /// When to contact the source instead of using the local cache.
    pub pull_policy: PullPolicy,
    /// Registry credentials (from the component's `imagePullSecret`).
    pub credentials: Option<RegistryCredentials>,
}

impl ComponentSource {
    /// A source for `image` with the default pull policy and no credentials.
    pub fn new(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            ..Self::default()
        }
    }

    /// The same source with `policy`.
    pub fn with_pull_policy(mut self, policy: PullPolicy) -> Self {
        self.pull_policy = policy;
        self
    }
}

impl fmt::Debug for ComponentSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentSource")
            .field("image", &self.image)
            .field("pull_policy", &self.pull_policy)
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// When to fetch a component instead of using the cache (Kubernetes `imagePullPolicy` semantics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PullPolicy {
    /// Resolve the reference at the source on every start; download only content not already cached.
    Always,
    /// Use the cached content when present (the default, also for wasmCloud's `UNSPECIFIED`).
    #[default]
    IfNotPresent,
    /// Never contact the source; fail when the content is not cached.
    Never,
}

/// Username and password for a registry. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What one component may use (wasmCloud `localResources`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalResources {
    /// Environment variables, served through `wasi:cli/environment` (already merged from inline
    /// values, ConfigMaps and Secrets by the operator).
    pub environment: BTreeMap<String, String>,
    /// Component configuration, served through `wasi:config/store`.
    pub config: BTreeMap<String, String>,
    /// Outgoing HTTP allowlist. Empty denies every outgoing request (fail closed); `*` allows all.
    /// Entry forms: `*`, `host[:port]`, `*.suffix[:port]`, `scheme://host[:port][/]`,
    /// `scheme://*.suffix[:port][/]`.
    pub allowed_hosts: Vec<String>,
    /// Names the component may look up (`wasi:sockets/ip-name-lookup`); empty denies all, `*` allows all.
    pub allowed_ip_name_lookups: Vec<String>,
    /// Host-loopback ports the component may reach (`5432`, `5432/tcp`, `53/udp`), when the host allows
    /// loopback at all.
    pub allowed_host_loopback_ports: Vec<String>,
    /// Volumes mounted into the component's filesystem.
    pub volume_mounts: Vec<VolumeMount>,
    /// Per-instance memory limit in bytes (wasmCloud's `memory_limit_mb`); `None` = backend default.
    /// A backend never grants more than its own maximum.
    pub memory_limit_bytes: Option<u64>,
}

/// A volume mounted into a component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeMount {
    /// Name of a [`Volume`] of the workload.
    pub name: String,
    /// Path inside the component (a `wasi:filesystem` preopen).
    pub mount_path: String,
    /// Mount read-only.
    pub read_only: bool,
}

/// A volume of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Name the mounts refer to.
    pub name: String,
    /// What backs it.
    pub kind: VolumeKind,
}

/// What backs a [`Volume`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeKind {
    /// A directory on the host's filesystem.
    HostPath(PathBuf),
    /// A fresh empty directory owned by the workload, deleted when it stops.
    EmptyDir,
}

/// A host interface a workload asked for (wasmCloud `hostInterfaces[]` / wire `WitInterface`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInterface {
    /// Optional routing name (`(implements <name>)`).
    pub name: Option<String>,
    /// WIT namespace, e.g. `wasi`.
    pub namespace: String,
    /// WIT package, e.g. `http`.
    pub package: String,
    /// Interfaces of the package, e.g. `incoming-handler`.
    pub interfaces: Vec<String>,
    /// Package version, if given.
    pub version: Option<String>,
    /// Interface configuration, e.g. `host` for `wasi:http`.
    pub config: BTreeMap<String, String>,
}

impl HostInterface {
    /// Whether this is the `wasi:http` entry that binds incoming requests (`incoming-handler`, or the
    /// p3 `handler`).
    pub fn is_incoming_http(&self) -> bool {
        self.namespace == "wasi"
            && self.package == "http"
            && self
                .interfaces
                .iter()
                .any(|i| i == "incoming-handler" || i == "handler")
    }
}

/// A long-running `wasi:cli/run` service of a workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Where the service component comes from.
    pub source: ComponentSource,
    /// What it may use.
    pub local_resources: LocalResources,
    /// Restarts allowed before the workload fails.
    pub max_restarts: u64,
}

impl WorkloadSpec {
    /// The hostnames the workload's incoming HTTP is bound to: the `host` config key of its incoming
    /// `wasi:http` interface, then any comma-separated `host-aliases`. Empty when none is configured.
    pub fn http_hostnames(&self) -> Vec<String> {
        let Some(iface) = self.host_interfaces.iter().find(|i| i.is_incoming_http()) else {
            return Vec::new();
        };
        let mut names: Vec<String> = Vec::new();
        let primary = iface.config.get("host").into_iter().map(String::as_str);
        let aliases = iface
            .config
            .get("host-aliases")
            .into_iter()
            .flat_map(|a| a.split(','));
        for name in primary.chain(aliases) {
            let name = name.trim();
            if !name.is_empty() && !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_hides_password() {
        let creds = RegistryCredentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        let text = format!(
            "{:?}",
            ComponentSource {
                credentials: Some(creds),
                ..Default::default()
            }
        );
        assert!(text.contains("\"u\""), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn http_hostnames_reads_host_and_aliases() {
        let mut config = BTreeMap::new();
        config.insert("host".to_string(), "app.example".to_string());
        config.insert(
            "host-aliases".to_string(),
            " a.example,app.example, b.example ,".to_string(),
        );
        let spec = WorkloadSpec {
            host_interfaces: vec![
                HostInterface {
                    namespace: "wasi".into(),
                    package: "config".into(),
                    interfaces: vec!["store".into()],
                    ..Default::default()
                },
                HostInterface {
                    namespace: "wasi".into(),
                    package: "http".into(),
                    interfaces: vec!["incoming-handler".into()],
                    config,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(spec.http_hostnames(), ["app.example", "a.example", "b.example"]);
    }

    #[test]
    fn http_hostnames_empty_without_http_interface() {
        assert!(WorkloadSpec::default().http_hostnames().is_empty());
    }
}
