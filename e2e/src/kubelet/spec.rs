//! Pure: from a pod's container to the local process to run (program, arguments, environment).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod, ResourceFieldSelector};

use super::images::ImageCommand;

/// What to execute for a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The program (absolute path or a name on `PATH`).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The complete environment (the process inherits nothing else).
    pub env: Vec<(String, String)>,
}

/// Facts about the pod that the downward API exposes.
#[derive(Debug, Clone, Copy)]
pub struct PodFacts<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// Its loopback IP.
    pub pod_ip: Ipv4Addr,
    /// The node's IP.
    pub host_ip: Ipv4Addr,
    /// The node's name.
    pub node_name: &'a str,
    /// Node CPU count and memory bytes (defaults of `resourceFieldRef` without limits).
    pub node_cpus: u64,
    /// Node memory in bytes.
    pub node_memory: u64,
}

/// ConfigMaps and Secrets of the pod's namespace, by name, as string maps (absent = not found).
#[derive(Debug, Clone, Default)]
pub struct Lookups {
    /// ConfigMap name → data.
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Secret name → decoded data.
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
}

/// Why a container cannot be started (reported as `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A referenced ConfigMap/Secret or key does not exist and is not optional.
    #[error("{0}")]
    MissingReference(String),
    /// A downward-API field is not supported.
    #[error("unsupported fieldRef {0}")]
    UnsupportedField(String),
    /// The image mapping has no program.
    #[error("image mapping for {0} has an empty command")]
    EmptyEntrypoint(String),
}

/// The default `PATH` of a container process.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The ConfigMaps and Secrets a container's `env`/`envFrom` refer to.
pub fn referenced_objects(container: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut config_maps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for from in container.env_from.iter().flatten() {
        if let Some(cm) = &from.config_map_ref {
            config_maps.insert(cm.name.clone());
        }
        if let Some(s) = &from.secret_ref {
            secrets.insert(s.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        let Some(source) = &var.value_from else { continue };
        if let Some(r) = &source.config_map_key_ref {
            config_maps.insert(r.name.clone());
        }
        if let Some(r) = &source.secret_key_ref {
            secrets.insert(r.name.clone());
        }
    }
    (config_maps, secrets)
}

/// Builds the process for `container` of `facts.pod` run by `image`.
///
/// * argv: without `command`, the image's entrypoint plus the container's `args` (or the image's
///   default args); with `command`, `command[0]` is the program *inside the image*: if its file name
///   equals the entrypoint program's, the local program is used, otherwise it is run as given (e.g.
///   `sh`). `$(VAR)` references are expanded from the container environment.
/// * env: `PATH`, `HOSTNAME`, the image mapping's env, then `envFrom` and `env` in order (later wins),
///   with `value`, `fieldRef`, `resourceFieldRef`, `configMapKeyRef` and `secretKeyRef`.
pub fn launch(
    facts: &PodFacts<'_>,
    container: &Container,
    image: &ImageCommand,
    lookups: &Lookups,
) -> Result<Launch, SpecError> {
    let env = environment(facts, container, image, lookups)?;
    let vars: BTreeMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let expand_all = |items: &[String]| items.iter().map(|s| expand(s, &vars)).collect::<Vec<_>>();
    let Some((entry_program, entry_args)) = image.command.split_first() else {
        return Err(SpecError::EmptyEntrypoint(image.image.clone()));
    };
    let container_command = container.command.clone().unwrap_or_default();
    let container_args = container.args.clone().unwrap_or_default();
    let (program, args) = match container_command.split_first() {
        None => {
            let mut args = entry_args.to_vec();
            if container_args.is_empty() {
                args.extend(image.args.iter().cloned());
            } else {
                args.extend(expand_all(&container_args));
            }
            (entry_program.clone(), args)
        }
        Some((first, rest)) => {
            let program = if file_name(first) == file_name(entry_program) {
                entry_program.clone()
            } else {
                expand(first, &vars)
            };
            let mut args = expand_all(rest);
            args.extend(expand_all(&container_args));
            (program, args)
        }
    };
    Ok(Launch { program, args, env })
}

/// The environment variable through which a container finds its ServiceAccount credentials.
pub const SERVICE_ACCOUNT_KUBECONFIG_ENV: &str = "KUBECONFIG";

/// The ServiceAccount a pod runs as (`spec.serviceAccountName`, else `default`).
pub fn service_account_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
}

/// Whether a pod gets its ServiceAccount's credentials: the pod's `automountServiceAccountToken`
/// wins, then the ServiceAccount's, and both unset means yes (what the ServiceAccount admission
/// plugin decides for the token volume).
pub fn token_wanted(pod: &Pod, service_account_automount: Option<bool>) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.automount_service_account_token)
        .or(service_account_automount)
        .unwrap_or(true)
}

/// Points the container at the pod's ServiceAccount kubeconfig, unless it sets `KUBECONFIG` itself.
pub fn add_service_account_kubeconfig(launch: &mut Launch, kubeconfig: &str) {
    if !launch
        .env
        .iter()
        .any(|(k, _)| k == SERVICE_ACCOUNT_KUBECONFIG_ENV)
    {
        launch
            .env
            .push((SERVICE_ACCOUNT_KUBECONFIG_ENV.to_string(), kubeconfig.to_string()));
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn environment(
    facts: &PodFacts<'_>,
    container: &Container,
    image: &ImageCommand,
    lookups: &Lookups,
) -> Result<Vec<(String, String)>, SpecError> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, key: String, value: String| {
        if let Some(existing) = env.iter_mut().find(|(k, _)| *k == key) {
            existing.1 = value;
        } else {
            env.push((key, value));
        }
    };
    let pod_name = facts.pod.metadata.name.clone().unwrap_or_default();
    set(&mut env, "PATH".into(), DEFAULT_PATH.into());
    set(&mut env, "HOSTNAME".into(), pod_name);
    for (k, v) in &image.env {
        set(&mut env, k.clone(), v.clone());
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match lookups.config_maps.get(&r.name) {
                Some(data) => data
                    .iter()
                    .for_each(|(k, v)| set(&mut env, format!("{prefix}{k}"), v.clone())),
                None if r.optional == Some(true) => {}
                None => {
                    return Err(SpecError::MissingReference(format!(
                        "configmap \"{}\" not found",
                        r.name
                    )));
                }
            }
        }
        if let Some(r) = &from.secret_ref {
            match lookups.secrets.get(&r.name) {
                Some(data) => data
                    .iter()
                    .for_each(|(k, v)| set(&mut env, format!("{prefix}{k}"), v.clone())),
                None if r.optional == Some(true) => {}
                None => {
                    return Err(SpecError::MissingReference(format!(
                        "secret \"{}\" not found",
                        r.name
                    )));
                }
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(source)) => {
                if let Some(field) = &source.field_ref {
                    Some(field_value(facts, field)?)
                } else if let Some(resource) = &source.resource_field_ref {
                    Some(resource_value(facts, container, resource))
                } else if let Some(r) = &source.config_map_key_ref {
                    key_value("configmap", &lookups.config_maps, &r.name, &r.key, r.optional)?
                } else if let Some(r) = &source.secret_key_ref {
                    key_value("secret", &lookups.secrets, &r.name, &r.key, r.optional)?
                } else {
                    Some(String::new())
                }
            }
            (Some(value), None) => {
                let vars: BTreeMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                Some(expand(value, &vars))
            }
            (None, None) => Some(String::new()),
        };
        if let Some(value) = value {
            set(&mut env, var.name.clone(), value);
        }
    }
    Ok(env)
}

fn key_value(
    kind: &str,
    objects: &BTreeMap<String, BTreeMap<String, String>>,
    name: &str,
    key: &str,
    optional: Option<bool>,
) -> Result<Option<String>, SpecError> {
    match objects.get(name).map(|data| data.get(key)) {
        Some(Some(value)) => Ok(Some(value.clone())),
        _ if optional == Some(true) => Ok(None),
        None => Err(SpecError::MissingReference(format!(
            "{kind} \"{name}\" not found"
        ))),
        Some(None) => Err(SpecError::MissingReference(format!(
            "couldn't find key {key} in {kind} \"{name}\""
        ))),
    }
}

/// The value of a downward-API `fieldRef`.
pub fn field_value(facts: &PodFacts<'_>, field: &ObjectFieldSelector) -> Result<String, SpecError> {
    let meta = &facts.pod.metadata;
    let spec = facts.pod.spec.as_ref();
    let path = field.field_path.as_str();
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        Some(rest.to_string())
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| facts.node_name.to_string()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.to_string(),
        _ => {
            if let Some(key) = subscript("metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&key).cloned())
                    .unwrap_or_default()
            } else if let Some(key) = subscript("metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|a| a.get(&key).cloned())
                    .unwrap_or_default()
            } else {
                return Err(SpecError::UnsupportedField(path.to_string()));
            }
        }
    })
}

/// The value of a `resourceFieldRef`: the container's quantity as written, or the node's capacity
/// when it sets no limit (like the kubelet, for limits).
fn resource_value(facts: &PodFacts<'_>, container: &Container, field: &ResourceFieldSelector) -> String {
    let resources = container.resources.as_ref();
    let (section, name) = field
        .resource
        .split_once('.')
        .unwrap_or(("limits", field.resource.as_str()));
    let map = match section {
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => resources.and_then(|r| r.limits.as_ref()),
    };
    if let Some(quantity) = map.and_then(|m| m.get(name)) {
        return quantity.0.clone();
    }
    match (section, name) {
        ("limits", "cpu") => facts.node_cpus.to_string(),
        ("limits", "memory") => facts.node_memory.to_string(),
        _ => "0".to_string(),
    }
}

/// Kubernetes `$(VAR)` expansion: defined variables are substituted, `$$` escapes `$`, anything else
/// is kept verbatim.
pub fn expand(input: &str, vars: &BTreeMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.get(name) {
                Some(value) => out.push_str(value),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn service_account_credentials_follow_the_pod_then_the_account_then_default_yes() {
        let pod = |spec: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({"spec": spec})).unwrap()
        };
        let unset = pod(serde_json::json!({"containers": []}));
        let off = pod(serde_json::json!({"containers": [], "automountServiceAccountToken": false}));
        let on = pod(
            serde_json::json!({"containers": [], "automountServiceAccountToken": true, "serviceAccountName": "op"}),
        );
        assert!(token_wanted(&unset, None));
        assert!(!token_wanted(&unset, Some(false)));
        assert!(!token_wanted(&off, None));
        assert!(!token_wanted(&off, Some(true)));
        assert!(token_wanted(&on, Some(false)));
        assert_eq!(service_account_name(&unset), "default");
        assert_eq!(service_account_name(&on), "op");

        let mut launch = Launch {
            program: "p".into(),
            args: vec![],
            env: vec![],
        };
        add_service_account_kubeconfig(&mut launch, "/pods/x/serviceaccount.kubeconfig");
        assert_eq!(
            launch.env,
            vec![("KUBECONFIG".into(), "/pods/x/serviceaccount.kubeconfig".into())]
        );
        let mut own = Launch {
            program: "p".into(),
            args: vec![],
            env: vec![("KUBECONFIG".into(), "/mine".into())],
        };
        add_service_account_kubeconfig(&mut own, "/pods/x/serviceaccount.kubeconfig");
        assert_eq!(own.env, vec![("KUBECONFIG".into(), "/mine".into())]);
    }

    use super::*;
    use serde_json::json;

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "team", "uid": "u-1",
                         "labels": {"app": "web"}, "annotations": {"note": "hi"}},
            "spec": {"nodeName": "n0", "serviceAccountName": "sa", "containers": containers},
        }))
        .unwrap()
    }

    fn facts(pod: &Pod) -> PodFacts<'_> {
        PodFacts {
            pod,
            pod_ip: Ipv4Addr::new(127, 0, 0, 7),
            host_ip: Ipv4Addr::LOCALHOST,
            node_name: "n0",
            node_cpus: 2,
            node_memory: 1024,
        }
    }

    fn image() -> ImageCommand {
        let mut image = ImageCommand::new("app", "/opt/app/bin/server");
        image.args = vec!["--default".into()];
        image.env.insert("FROM_IMAGE".into(), "1".into());
        image
    }

    fn value<'a>(launch: &'a Launch, key: &str) -> Option<&'a str> {
        launch.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn without_command_or_args_runs_the_image_entrypoint_and_default_args() {
        let p = pod(json!([{"name": "c", "image": "app"}]));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let l = launch(&facts(&p), c, &image(), &Lookups::default()).unwrap();
        assert_eq!(l.program, "/opt/app/bin/server");
        assert_eq!(l.args, vec!["--default"]);
        assert_eq!(value(&l, "PATH"), Some(DEFAULT_PATH));
        assert_eq!(value(&l, "HOSTNAME"), Some("web-1"));
        assert_eq!(value(&l, "FROM_IMAGE"), Some("1"));
    }

    #[test]
    fn args_replace_default_args_and_command_maps_the_image_program() {
        let p = pod(json!([
            {"name": "a", "image": "app", "args": ["--port", "$(PORT)"], "env": [{"name": "PORT", "value": "80"}]},
            {"name": "b", "image": "app", "command": ["/usr/bin/server", "serve"], "args": ["x"]},
            {"name": "c", "image": "app", "command": ["sh", "-c", "echo $$HOME"]},
        ]));
        let cs = &p.spec.as_ref().unwrap().containers;
        let a = launch(&facts(&p), &cs[0], &image(), &Lookups::default()).unwrap();
        assert_eq!(
            (a.program.as_str(), a.args.clone()),
            ("/opt/app/bin/server", vec!["--port".into(), "80".into()])
        );
        let b = launch(&facts(&p), &cs[1], &image(), &Lookups::default()).unwrap();
        assert_eq!(
            b.program, "/opt/app/bin/server",
            "same file name as the entrypoint → local program"
        );
        assert_eq!(b.args, vec!["serve", "x"]);
        let c = launch(&facts(&p), &cs[2], &image(), &Lookups::default()).unwrap();
        assert_eq!(c.program, "sh");
        assert_eq!(c.args, vec!["-c", "echo $HOME"]);
    }

    #[test]
    fn downward_api_fields_resolve() {
        let p = pod(json!([{"name": "c", "image": "app", "env": [
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "URL", "value": "http://$(IP):8080"},
        ]}]));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let l = launch(&facts(&p), c, &image(), &Lookups::default()).unwrap();
        for (k, v) in [
            ("IP", "127.0.0.7"),
            ("HOST_IP", "127.0.0.1"),
            ("NAME", "web-1"),
            ("NS", "team"),
            ("UID", "u-1"),
            ("APP", "web"),
            ("NOTE", "hi"),
            ("NODE", "n0"),
            ("SA", "sa"),
            ("CPU", "2"),
            ("URL", "http://127.0.0.7:8080"),
        ] {
            assert_eq!(value(&l, k), Some(v), "{k}");
        }
    }

    #[test]
    fn config_maps_and_secrets_resolve_and_missing_ones_fail_unless_optional() {
        let p = pod(json!([{"name": "c", "image": "app",
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "password"}}},
            {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": true}}},
        ]}]));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let (cms, secrets) = referenced_objects(c);
        assert_eq!(cms.into_iter().collect::<Vec<_>>(), vec!["cm", "gone"]);
        assert_eq!(secrets.into_iter().collect::<Vec<_>>(), vec!["s"]);
        let mut lookups = Lookups::default();
        lookups
            .config_maps
            .insert("cm".into(), [("level".to_string(), "3".to_string())].into());
        let err = launch(&facts(&p), c, &image(), &lookups).unwrap_err();
        assert_eq!(err, SpecError::MissingReference("secret \"s\" not found".into()));
        lookups
            .secrets
            .insert("s".into(), [("password".to_string(), "pw".to_string())].into());
        let l = launch(&facts(&p), c, &image(), &lookups).unwrap();
        assert_eq!(value(&l, "CM_level"), Some("3"));
        assert_eq!(value(&l, "PASS"), Some("pw"));
        assert_eq!(value(&l, "OPT"), None);
    }

    #[test]
    fn unsupported_field_is_an_error() {
        let p = pod(json!([{"name": "c", "image": "app", "env": [
            {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "status.phase"}}}]}]));
        let c = &p.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            launch(&facts(&p), c, &image(), &Lookups::default()).unwrap_err(),
            SpecError::UnsupportedField("status.phase".into())
        );
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let vars: BTreeMap<&str, &str> = [("A", "1"), ("B", "two")].into();
        assert_eq!(expand("$(A)-$(B)", &vars), "1-two");
        assert_eq!(expand("$(C)", &vars), "$(C)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("cost $5 $(A", &vars), "cost $5 $(A");
    }
}
