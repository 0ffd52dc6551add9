//! Pure pieces of placing a Workload: which ConfigMaps and Secrets it names, its configuration layers
//! resolved (inline → ConfigMaps → Secrets, the last wins), pull credentials from a
//! `kubernetes.io/dockerconfigjson` Secret for an image's registry, the `workload.start` request with
//! wasmCloud's fields, and the scheduling request.

use std::collections::{BTreeMap, BTreeSet};

use weft_crds::names::config_keys;
use weft_crds::workload::{ConfigLayer, ImagePullPolicy, LocalResources, WorkloadSpec};
use weft_host_api as wire;

/// A ConfigMap or Secret a Workload names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigRef {
    /// A ConfigMap by name.
    ConfigMap(String),
    /// A Secret by name.
    Secret(String),
}

impl std::fmt::Display for ConfigRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ConfigMap(n) => write!(f, "ConfigMap {n}"),
            Self::Secret(n) => write!(f, "Secret {n}"),
        }
    }
}

fn layer_refs(layer: &ConfigLayer, out: &mut BTreeSet<ConfigRef>) {
    for r in layer.config_from.iter().flatten() {
        out.insert(ConfigRef::ConfigMap(r.name.clone()));
    }
    for r in layer.secret_from.iter().flatten() {
        out.insert(ConfigRef::Secret(r.name.clone()));
    }
}

/// Every ConfigMap and Secret the spec names: configuration layers of components, host interfaces and
/// the service, and image pull secrets.
pub fn config_refs(spec: &WorkloadSpec) -> BTreeSet<ConfigRef> {
    let mut out = BTreeSet::new();
    let resources = |r: &Option<LocalResources>, out: &mut BTreeSet<ConfigRef>| {
        if let Some(env) = r.as_ref().and_then(|r| r.environment.as_ref()) {
            layer_refs(env, out);
        }
    };
    for c in spec.components.iter().flatten() {
        resources(&c.local_resources, &mut out);
        if let Some(s) = &c.image_pull_secret {
            out.insert(ConfigRef::Secret(s.name.clone()));
        }
    }
    for h in spec.host_interfaces.iter().flatten() {
        layer_refs(&h.config_layer, &mut out);
    }
    if let Some(s) = &spec.service {
        resources(&s.local_resources, &mut out);
        if let Some(p) = &s.image_pull_secret {
            out.insert(ConfigRef::Secret(p.name.clone()));
        }
    }
    out
}

/// The data of the ConfigMaps and Secrets a Workload names (Secret values already decoded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedConfig {
    /// ConfigMap name → data.
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Secret name → (type, data).
    pub secrets: BTreeMap<String, (String, BTreeMap<String, String>)>,
}

/// Why a Workload cannot be started as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A named ConfigMap or Secret does not exist.
    #[error("{0} not found")]
    Missing(ConfigRef),
    /// An image pull secret is not a usable dockerconfigjson Secret.
    #[error("image pull Secret {name}: {reason}")]
    PullSecret {
        /// The Secret.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// Merges a configuration layer: inline, then each ConfigMap, then each Secret (the last wins).
pub fn resolve_layer(
    layer: &ConfigLayer,
    config: &ResolvedConfig,
) -> Result<BTreeMap<String, String>, RequestError> {
    let mut out: BTreeMap<String, String> = layer.config.clone().unwrap_or_default();
    for r in layer.config_from.iter().flatten() {
        let data = config
            .config_maps
            .get(&r.name)
            .ok_or_else(|| RequestError::Missing(ConfigRef::ConfigMap(r.name.clone())))?;
        out.extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    for r in layer.secret_from.iter().flatten() {
        let (_, data) = config
            .secrets
            .get(&r.name)
            .ok_or_else(|| RequestError::Missing(ConfigRef::Secret(r.name.clone())))?;
        out.extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Ok(out)
}

/// The registry of an OCI image reference (`ghcr.io/org/x:1` → `ghcr.io`; `org/x` → `docker.io`).
pub fn registry_of(image: &str) -> Option<String> {
    let rest = image.strip_prefix("oci://").unwrap_or(image);
    if rest.contains("://") {
        return None;
    }
    let first = rest.split('/').next()?;
    if rest.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost") {
        Some(first.to_string())
    } else {
        Some("docker.io".to_string())
    }
}

/// Username and password for `registry` from a `.dockerconfigjson` document.
pub fn docker_credentials(dockerconfigjson: &str, registry: &str) -> Result<wire::ImagePullSecret, String> {
    let doc: serde_json::Value =
        serde_json::from_str(dockerconfigjson).map_err(|e| format!("invalid .dockerconfigjson: {e}"))?;
    let auths = doc
        .get("auths")
        .and_then(|a| a.as_object())
        .ok_or("no \"auths\" in .dockerconfigjson")?;
    let aliases: Vec<String> = if registry == "docker.io" {
        [
            "docker.io",
            "index.docker.io",
            "https://index.docker.io/v1/",
            "registry-1.docker.io",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    } else {
        vec![
            registry.to_string(),
            format!("https://{registry}"),
            format!("http://{registry}"),
        ]
    };
    let entry = aliases
        .iter()
        .find_map(|k| auths.get(k).or_else(|| auths.get(&format!("{k}/"))))
        .ok_or_else(|| format!("no credentials for registry {registry}"))?;
    let field = |k: &str| {
        entry
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let (mut username, mut password) = (field("username"), field("password"));
    if username.is_empty() {
        let auth = field("auth");
        let decoded = decode_base64(&auth).ok_or("the auth field is not base64")?;
        let (u, p) = decoded
            .split_once(':')
            .ok_or("the auth field is not user:password")?;
        username = u.to_string();
        password = p.to_string();
    }
    Ok(wire::ImagePullSecret { username, password })
}

/// Standard base64 (with or without padding) to a UTF-8 string.
pub fn decode_base64(s: &str) -> Option<String> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for c in s
        .trim()
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
    {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8(out).ok()
}

fn pull_policy(p: Option<&ImagePullPolicy>) -> wire::ImagePullPolicy {
    match p {
        Some(ImagePullPolicy::Always) => wire::ImagePullPolicy::Always,
        Some(ImagePullPolicy::IfNotPresent) => wire::ImagePullPolicy::IfNotPresent,
        Some(ImagePullPolicy::Never) => wire::ImagePullPolicy::Never,
        _ => wire::ImagePullPolicy::Unspecified,
    }
}

fn pull_secret(
    name: Option<&str>,
    image: &str,
    config: &ResolvedConfig,
) -> Result<Option<wire::ImagePullSecret>, RequestError> {
    let Some(name) = name else { return Ok(None) };
    let (type_, data) = config
        .secrets
        .get(name)
        .ok_or_else(|| RequestError::Missing(ConfigRef::Secret(name.to_string())))?;
    let err = |reason: String| RequestError::PullSecret {
        name: name.to_string(),
        reason,
    };
    if type_ != "kubernetes.io/dockerconfigjson" {
        return Err(err(format!(
            "type is {type_:?}, not kubernetes.io/dockerconfigjson"
        )));
    }
    let doc = data
        .get(".dockerconfigjson")
        .ok_or_else(|| err("no .dockerconfigjson key".into()))?;
    let Some(registry) = registry_of(image) else {
        return Ok(None);
    };
    docker_credentials(doc, &registry).map(Some).map_err(err)
}

fn local_resources(
    r: Option<&LocalResources>,
    config: &ResolvedConfig,
) -> Result<Option<wire::LocalResources>, RequestError> {
    let Some(r) = r else { return Ok(None) };
    let environment = match &r.environment {
        Some(layer) => resolve_layer(layer, config)?,
        None => BTreeMap::new(),
    };
    Ok(Some(wire::LocalResources {
        config: r.config.clone().unwrap_or_default(),
        environment,
        volume_mounts: r
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| wire::VolumeMount {
                name: m.name.clone(),
                mount_path: m.mount_path.clone(),
                read_only: m.read_only.unwrap_or(false),
            })
            .collect(),
        allowed_hosts: r.allowed_hosts.clone().unwrap_or_default(),
        allowed_ip_name_lookups: r.allowed_ip_name_lookups.clone().unwrap_or_default(),
        allowed_host_loopback_ports: r.allowed_host_loopback_ports.clone().unwrap_or_default(),
        ..Default::default()
    }))
}

/// What identifies the Workload in a start request.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its UID (the workload ID on the host).
    pub uid: &'a str,
    /// Its annotations.
    pub annotations: &'a BTreeMap<String, String>,
}

/// The `workload.start` request for `spec` with its configuration resolved.
pub fn start_request(
    id: Identity<'_>,
    spec: &WorkloadSpec,
    config: &ResolvedConfig,
) -> Result<wire::WorkloadStartRequest, RequestError> {
    let mut components = Vec::new();
    for c in spec.components.iter().flatten() {
        components.push(wire::Component {
            image: c.image.clone(),
            local_resources: local_resources(c.local_resources.as_ref(), config)?,
            pool_size: c.pool_size.unwrap_or(0),
            max_invocations: c.max_invocations.unwrap_or(0),
            image_pull_secret: pull_secret(
                c.image_pull_secret.as_ref().map(|s| s.name.as_str()),
                &c.image,
                config,
            )?,
            name: c.name.clone(),
            image_pull_policy: pull_policy(c.image_pull_policy.as_ref()),
            max_concurrency: c.max_concurrency.unwrap_or(0),
        });
    }
    let service_name = spec
        .kubernetes
        .as_ref()
        .and_then(|k| k.service.as_ref())
        .map(|s| s.name.clone());
    let mut host_interfaces = Vec::new();
    for h in spec.host_interfaces.iter().flatten() {
        let mut config_map = resolve_layer(&h.config_layer, config)?;
        let is_http_handler = h.is_http_handler();
        if let (true, Some(svc)) = (is_http_handler, &service_name) {
            let aliases = format!("{svc}.{ns},{svc}.{ns}.svc", ns = id.namespace);
            let merged = match config_map.get(config_keys::HTTP_HOST_ALIASES) {
                Some(existing) if !existing.is_empty() => format!("{existing},{aliases}"),
                _ => aliases,
            };
            config_map.insert(config_keys::HTTP_HOST_ALIASES.to_string(), merged);
        }
        host_interfaces.push(wire::WitInterface {
            namespace: h.namespace.clone(),
            package: h.package.clone(),
            version: h.version.clone().unwrap_or_default(),
            interfaces: h.interfaces.clone(),
            config: config_map,
            name: h.name.clone().unwrap_or_default(),
        });
    }
    let service = match &spec.service {
        Some(s) => Some(wire::Service {
            image: s.image.clone(),
            local_resources: local_resources(s.local_resources.as_ref(), config)?,
            max_restarts: s.max_restarts.map_or(0, |n| n.max(0) as u64),
            image_pull_secret: pull_secret(
                s.image_pull_secret.as_ref().map(|p| p.name.as_str()),
                &s.image,
                config,
            )?,
            image_pull_policy: pull_policy(s.image_pull_policy.as_ref()),
        }),
        None => None,
    };
    let volumes = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| wire::Volume {
            name: v.name.clone(),
            volume_type: match (&v.host_path, &v.ephemeral) {
                (Some(p), _) => Some(wire::VolumeType::HostPath(wire::HostPathVolume {
                    local_path: p.path.clone(),
                })),
                (None, Some(_)) => Some(wire::VolumeType::EmptyDir(wire::EmptyDirVolume {})),
                (None, None) => None,
            },
        })
        .collect();
    Ok(wire::WorkloadStartRequest {
        workload: Some(wire::Workload {
            namespace: id.namespace.to_string(),
            name: id.name.to_string(),
            annotations: id.annotations.clone(),
            service,
            wit_world: Some(wire::WitWorld {
                components,
                host_interfaces,
            }),
            volumes,
        }),
        workload_id: id.uid.to_string(),
    })
}

/// The scheduling request for a Workload.
pub fn schedule_request(
    namespace: &str,
    name: &str,
    spec: &WorkloadSpec,
    replica_set: Option<String>,
) -> weft_scheduler_api::WorkloadRequest {
    weft_scheduler_api::WorkloadRequest {
        namespace: namespace.to_string(),
        name: name.to_string(),
        scheduler_name: spec.scheduler_name.clone().filter(|s| !s.is_empty()),
        host_selector: spec.host_selector.clone().unwrap_or_default(),
        environment: spec.environment.clone().filter(|e| !e.is_empty()),
        host_interfaces: spec
            .host_interfaces
            .iter()
            .flatten()
            .map(|h| weft_scheduler_api::WitInterface {
                namespace: h.namespace.clone(),
                package: h.package.clone(),
                interfaces: h.interfaces.clone(),
                version: h.version.clone().filter(|v| !v.is_empty()),
            })
            .collect(),
        replica_set,
        component_count: spec.components.as_ref().map_or(0, |c| c.len() as u64),
        resources: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_crds::LocalObjectReference;
    use weft_crds::workload::{HostInterface, KubernetesServiceRef, KubernetesSpec, WorkloadComponent};

    fn reference(name: &str) -> LocalObjectReference {
        serde_json::from_value(serde_json::json!({ "name": name })).unwrap()
    }

    fn spec() -> WorkloadSpec {
        WorkloadSpec {
            components: Some(vec![WorkloadComponent {
                name: "http".into(),
                image: "ghcr.io/acme/hello:1".into(),
                image_pull_secret: Some(reference("regcred")),
                local_resources: Some(LocalResources {
                    environment: Some(ConfigLayer {
                        config: Some(
                            [
                                ("A".to_string(), "inline".to_string()),
                                ("B".into(), "inline".into()),
                            ]
                            .into(),
                        ),
                        config_from: Some(vec![reference("cm")]),
                        secret_from: Some(vec![reference("sec")]),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            host_interfaces: Some(vec![HostInterface {
                namespace: "wasi".into(),
                package: "http".into(),
                interfaces: vec!["incoming-handler".into()],
                config_layer: ConfigLayer {
                    config: Some([("host".to_string(), "hello".to_string())].into()),
                    ..Default::default()
                },
                ..Default::default()
            }]),
            kubernetes: Some(KubernetesSpec {
                service: Some(KubernetesServiceRef { name: "hello".into() }),
            }),
            ..Default::default()
        }
    }

    fn resolved() -> ResolvedConfig {
        let dockerconfig = r#"{"auths":{"ghcr.io":{"auth":"dXNlcjpwYXNz"}}}"#;
        ResolvedConfig {
            config_maps: [(
                "cm".to_string(),
                [("B".to_string(), "cm".to_string()), ("C".into(), "cm".into())].into(),
            )]
            .into(),
            secrets: [
                (
                    "sec".to_string(),
                    (
                        "Opaque".to_string(),
                        [("C".to_string(), "secret".to_string())].into(),
                    ),
                ),
                (
                    "regcred".to_string(),
                    (
                        "kubernetes.io/dockerconfigjson".to_string(),
                        [(".dockerconfigjson".to_string(), dockerconfig.to_string())].into(),
                    ),
                ),
            ]
            .into(),
        }
    }

    #[test]
    fn every_named_configmap_and_secret_is_found() {
        let refs: Vec<String> = config_refs(&spec()).iter().map(|r| r.to_string()).collect();
        assert_eq!(refs, ["ConfigMap cm", "Secret regcred", "Secret sec"]);
    }

    #[test]
    fn layers_merge_inline_then_configmaps_then_secrets() {
        let layer = spec().components.unwrap()[0]
            .local_resources
            .clone()
            .unwrap()
            .environment
            .unwrap();
        let merged = resolve_layer(&layer, &resolved()).unwrap();
        assert_eq!(merged["A"], "inline");
        assert_eq!(merged["B"], "cm");
        assert_eq!(merged["C"], "secret");
        let err = resolve_layer(&layer, &ResolvedConfig::default()).unwrap_err();
        assert_eq!(err.to_string(), "ConfigMap cm not found");
    }

    #[test]
    fn the_start_request_has_wasmclouds_fields() {
        let annotations = BTreeMap::new();
        let id = Identity {
            namespace: "shop",
            name: "cart",
            uid: "uid-1",
            annotations: &annotations,
        };
        let req = start_request(id, &spec(), &resolved()).unwrap();
        assert_eq!(req.workload_id, "uid-1");
        let w = req.workload.unwrap();
        assert_eq!((w.namespace.as_str(), w.name.as_str()), ("shop", "cart"));
        let world = w.wit_world.unwrap();
        let c = &world.components[0];
        assert_eq!(c.image, "ghcr.io/acme/hello:1");
        let secret = c.image_pull_secret.clone().unwrap();
        assert_eq!(
            (secret.username.as_str(), secret.password.as_str()),
            ("user", "pass")
        );
        assert_eq!(c.local_resources.as_ref().unwrap().environment["C"], "secret");
        let http = &world.host_interfaces[0];
        assert_eq!(http.config["host"], "hello");
        assert_eq!(http.config["host-aliases"], "hello.shop,hello.shop.svc");
    }

    #[test]
    fn pull_secrets_must_be_dockerconfigjson_for_the_images_registry() {
        let mut bad = resolved();
        bad.secrets.get_mut("regcred").unwrap().0 = "Opaque".into();
        let annotations = BTreeMap::new();
        let id = Identity {
            namespace: "n",
            name: "w",
            uid: "u",
            annotations: &annotations,
        };
        let err = start_request(id, &spec(), &bad).unwrap_err().to_string();
        assert!(err.contains("not kubernetes.io/dockerconfigjson"), "{err}");
        assert!(
            docker_credentials(r#"{"auths":{}}"#, "ghcr.io")
                .unwrap_err()
                .contains("ghcr.io")
        );
        let explicit = docker_credentials(
            r#"{"auths":{"https://index.docker.io/v1/":{"username":"u","password":"p"}}}"#,
            "docker.io",
        )
        .unwrap();
        assert_eq!(explicit.username, "u");
    }

    #[test]
    fn registries_of_images() {
        assert_eq!(registry_of("ghcr.io/a/b:1").as_deref(), Some("ghcr.io"));
        assert_eq!(registry_of("localhost:5000/a").as_deref(), Some("localhost:5000"));
        assert_eq!(registry_of("library/hello").as_deref(), Some("docker.io"));
        assert_eq!(registry_of("hello").as_deref(), Some("docker.io"));
        assert_eq!(registry_of("file:///tmp/x.wasm"), None);
        assert_eq!(decode_base64("dXNlcjpwYXNz").as_deref(), Some("user:pass"));
        assert_eq!(decode_base64("@@"), None);
    }

    #[test]
    fn the_schedule_request_carries_the_needs() {
        let r = schedule_request("shop", "cart-1", &spec(), Some("shop/cart".into()));
        assert_eq!(r.component_count, 1);
        assert_eq!(r.host_interfaces[0].package, "http");
        assert_eq!(r.replica_set.as_deref(), Some("shop/cart"));
        assert_eq!(r.scheduler_name, None);
    }
}
