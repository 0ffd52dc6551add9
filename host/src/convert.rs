//! Wire messages → the runtime's domain types, with the checks the host makes before starting.

use weft_host_api as wire;
use weft_runtime::spec::{
    ComponentSource, ComponentSpec, HostInterface, LocalResources, PullPolicy, RegistryCredentials,
    ServiceSpec, Volume, VolumeKind, VolumeMount, WorkloadSpec,
};

use crate::routing::is_valid_hostname;

/// Why a `workload.start` request cannot be started (the text goes into the ERROR reply).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidStart {
    /// `workloadId` is empty.
    #[error("workload_id is required")]
    MissingId,
    /// `workload` is absent.
    #[error("workload is required")]
    MissingWorkload,
    /// The workload binds HTTP but names no usable hostname.
    #[error("{0}")]
    Hostname(String),
}

/// Converts a start request into a [`WorkloadSpec`].
pub fn workload_spec(req: &wire::WorkloadStartRequest) -> Result<WorkloadSpec, InvalidStart> {
    if req.workload_id.is_empty() {
        return Err(InvalidStart::MissingId);
    }
    let w = req.workload.as_ref().ok_or(InvalidStart::MissingWorkload)?;
    let (components, host_interfaces) = match &w.wit_world {
        Some(world) => (
            world.components.iter().map(component).collect(),
            world.host_interfaces.iter().map(host_interface).collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    Ok(WorkloadSpec {
        id: req.workload_id.clone(),
        namespace: w.namespace.clone(),
        name: w.name.clone(),
        annotations: w.annotations.clone(),
        components,
        host_interfaces,
        volumes: w.volumes.iter().map(volume).collect(),
        service: w.service.as_ref().map(service),
    })
}

/// The hostnames a workload's HTTP ingress binds to: the `host` config key of its `wasi:http`
/// incoming-handler interface (required and checked as an RFC 1123 name when the workload has
/// components and that interface) plus the valid entries of `host-aliases`. Empty when the workload
/// does not take incoming HTTP.
pub fn ingress_hostnames(spec: &WorkloadSpec) -> Result<Vec<String>, InvalidStart> {
    let Some(iface) = spec.host_interfaces.iter().find(|i| i.is_incoming_http()) else {
        return Ok(Vec::new());
    };
    if spec.components.is_empty() {
        return Ok(Vec::new());
    }
    let primary = iface.config.get("host").map(|h| h.trim()).unwrap_or("");
    if primary.is_empty() {
        return Err(InvalidStart::Hostname(
            "the wasi:http incoming-handler host interface has no `host` config key: the workload would not be \
             reachable"
                .into(),
        ));
    }
    if !is_valid_hostname(primary) {
        return Err(InvalidStart::Hostname(format!(
            "host {primary:?} is not a valid RFC 1123 hostname"
        )));
    }
    let mut names = vec![primary.to_ascii_lowercase()];
    for alias in iface
        .config
        .get("host-aliases")
        .map(|a| a.split(','))
        .into_iter()
        .flatten()
    {
        let alias = alias.trim();
        if alias.is_empty() {
            continue;
        }
        if !is_valid_hostname(alias) {
            tracing::warn!(workload_id = %spec.id, alias, "ignoring host alias that is not a valid RFC 1123 hostname");
            continue;
        }
        let alias = alias.to_ascii_lowercase();
        if !names.contains(&alias) {
            names.push(alias);
        }
    }
    Ok(names)
}

fn pull_policy(p: wire::ImagePullPolicy) -> PullPolicy {
    match p {
        wire::ImagePullPolicy::Always => PullPolicy::Always,
        wire::ImagePullPolicy::Never => PullPolicy::Never,
        wire::ImagePullPolicy::IfNotPresent | wire::ImagePullPolicy::Unspecified => PullPolicy::IfNotPresent,
    }
}

fn source(
    image: &str,
    policy: wire::ImagePullPolicy,
    secret: Option<&wire::ImagePullSecret>,
) -> ComponentSource {
    ComponentSource {
        image: image.to_string(),
        pull_policy: pull_policy(policy),
        credentials: secret
            .filter(|s| !s.username.is_empty() || !s.password.is_empty())
            .map(|s| RegistryCredentials {
                username: s.username.clone(),
                password: s.password.clone(),
            }),
    }
}

fn local_resources(lr: Option<&wire::LocalResources>) -> LocalResources {
    let Some(lr) = lr else {
        return LocalResources::default();
    };
    LocalResources {
        environment: lr.environment.clone(),
        config: lr.config.clone(),
        allowed_hosts: lr.allowed_hosts.clone(),
        allowed_ip_name_lookups: lr.allowed_ip_name_lookups.clone(),
        allowed_host_loopback_ports: lr.allowed_host_loopback_ports.clone(),
        volume_mounts: lr
            .volume_mounts
            .iter()
            .map(|m| VolumeMount {
                name: m.name.clone(),
                mount_path: m.mount_path.clone(),
                read_only: m.read_only,
            })
            .collect(),
        memory_limit_bytes: (lr.memory_limit_mb > 0).then(|| lr.memory_limit_mb as u64 * 1024 * 1024),
    }
}

fn component(c: &wire::Component) -> ComponentSpec {
    ComponentSpec {
        name: c.name.clone(),
        source: source(&c.image, c.image_pull_policy, c.image_pull_secret.as_ref()),
        local_resources: local_resources(c.local_resources.as_ref()),
        // Zero and negative both mean "not configured".
        pool_size: c.pool_size.max(0) as u32,
        max_invocations: c.max_invocations.max(0) as u32,
        max_concurrency: c.max_concurrency.max(0) as u32,
    }
}

fn service(s: &wire::Service) -> ServiceSpec {
    ServiceSpec {
        source: source(&s.image, s.image_pull_policy, s.image_pull_secret.as_ref()),
        local_resources: local_resources(s.local_resources.as_ref()),
        max_restarts: s.max_restarts,
    }
}

fn host_interface(i: &wire::WitInterface) -> HostInterface {
    HostInterface {
        name: (!i.name.is_empty()).then(|| i.name.clone()),
        namespace: i.namespace.clone(),
        package: i.package.clone(),
        interfaces: i.interfaces.clone(),
        version: (!i.version.is_empty()).then(|| i.version.clone()),
        config: i.config.clone(),
    }
}

fn volume(v: &wire::Volume) -> Volume {
    let kind = match &v.volume_type {
        Some(wire::VolumeType::HostPath(h)) => VolumeKind::HostPath(h.local_path.clone().into()),
        // Neither set: an empty directory, as wasmCloud hosts do.
        Some(wire::VolumeType::EmptyDir(_)) | None => VolumeKind::EmptyDir,
    };
    Volume {
        name: v.name.clone(),
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> wire::WorkloadStartRequest {
        wire::from_json(json.as_bytes()).unwrap()
    }

    const FULL: &str = r#"{"workloadId":"w1","workload":{"namespace":"ns","name":"hello","annotations":{"a":"b"},
        "witWorld":{"components":[{"name":"hello","image":"registry.local/hello:1","imagePullPolicy":"IMAGE_PULL_POLICY_NEVER",
          "imagePullSecret":{"username":"u","password":"p"},"poolSize":-3,"maxInvocations":10,"maxConcurrency":4,
          "localResources":{"memoryLimitMb":64,"environment":{"K":"V"},"config":{"c":"1"},"allowedHosts":["api.example"],
            "volumeMounts":[{"name":"data","mountPath":"/data","readOnly":true}]}}],
          "hostInterfaces":[{"namespace":"wasi","package":"http","version":"0.2.0","interfaces":["incoming-handler"],
            "config":{"host":"Hello.Example","host-aliases":"hello, hello.ns.svc ,bad_alias,hello.example"}}]},
        "volumes":[{"name":"data","hostPath":{"localPath":"/srv"}},{"name":"tmp","emptyDir":{}},{"name":"none"}],
        "service":{"image":"file:///svc.wasm","maxRestarts":"2"}}}"#;

    #[test]
    fn converts_every_field_the_runtime_uses() {
        let spec = workload_spec(&request(FULL)).unwrap();
        assert_eq!(
            (spec.id.as_str(), spec.namespace.as_str(), spec.name.as_str()),
            ("w1", "ns", "hello")
        );
        assert_eq!(spec.annotations["a"], "b");
        let c = &spec.components[0];
        assert_eq!(c.name, "hello");
        assert_eq!(c.source.image, "registry.local/hello:1");
        assert_eq!(c.source.pull_policy, PullPolicy::Never);
        assert_eq!(c.source.credentials.as_ref().unwrap().username, "u");
        assert_eq!((c.pool_size, c.max_invocations, c.max_concurrency), (0, 10, 4));
        let lr = &c.local_resources;
        assert_eq!(lr.memory_limit_bytes, Some(64 << 20));
        assert_eq!(lr.environment["K"], "V");
        assert_eq!(lr.config["c"], "1");
        assert_eq!(lr.allowed_hosts, ["api.example"]);
        assert_eq!(
            lr.volume_mounts[0],
            VolumeMount {
                name: "data".into(),
                mount_path: "/data".into(),
                read_only: true
            }
        );
        assert_eq!(spec.volumes[0].kind, VolumeKind::HostPath("/srv".into()));
        assert_eq!(spec.volumes[1].kind, VolumeKind::EmptyDir);
        assert_eq!(spec.volumes[2].kind, VolumeKind::EmptyDir);
        let svc = spec.service.as_ref().unwrap();
        assert_eq!(
            (svc.source.image.as_str(), svc.max_restarts),
            ("file:///svc.wasm", 2)
        );
        assert_eq!(svc.source.pull_policy, PullPolicy::IfNotPresent);
        assert_eq!(spec.host_interfaces[0].version.as_deref(), Some("0.2.0"));
        assert_eq!(spec.host_interfaces[0].name, None);
    }

    #[test]
    fn hostnames_are_the_host_key_plus_valid_aliases() {
        let spec = workload_spec(&request(FULL)).unwrap();
        assert_eq!(
            ingress_hostnames(&spec).unwrap(),
            ["hello.example", "hello", "hello.ns.svc"]
        );
    }

    #[test]
    fn missing_or_invalid_host_fails_the_start() {
        let no_host = FULL.replace(r#""host":"Hello.Example","#, "");
        let err = ingress_hostnames(&workload_spec(&request(&no_host)).unwrap()).unwrap_err();
        assert!(err.to_string().contains("no `host` config key"), "{err}");
        let bad = FULL.replace("Hello.Example", "bad host!");
        let err = ingress_hostnames(&workload_spec(&request(&bad)).unwrap()).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"bad host!\" is not a valid RFC 1123 hostname"),
            "{err}"
        );
    }

    #[test]
    fn workloads_without_incoming_http_are_not_routed() {
        let spec = workload_spec(&request(r#"{"workloadId":"w","workload":{"name":"empty"}}"#)).unwrap();
        assert!(spec.components.is_empty());
        assert_eq!(ingress_hostnames(&spec).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn id_and_workload_are_required() {
        assert_eq!(
            workload_spec(&request(r#"{"workload":{}}"#)),
            Err(InvalidStart::MissingId)
        );
        assert_eq!(
            workload_spec(&request(r#"{"workloadId":"w"}"#)),
            Err(InvalidStart::MissingWorkload)
        );
    }
}
