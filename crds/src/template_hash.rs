//! The template hash of a WorkloadReplicaSet, byte-compatible with wasmCloud's
//! `WorkloadReplicaTemplate.Hash()`: FNV-1a (32 bit) of the spec encoded by Go's `encoding/json`, its
//! decimal value passed through Kubernetes' `rand.SafeEncodeString`.
//!
//! [`go_json`] writes a [`WorkloadSpec`] exactly as `encoding/json` marshals wasmCloud's Go
//! `WorkloadSpec`: fields in the Go declaration order, `omitempty` fields dropped when empty (`""`,
//! `0`, `false`, an unset pointer, an empty list or map), map keys sorted, and strings escaped the Go
//! way. Weft's extension `schedulerName` is written last, and only when it is set and non-empty, so a
//! spec without it hashes exactly like wasmCloud's and changing it changes the hash.
//!
//! `crds/testdata/template-hash` holds a Go program that runs wasmCloud's own algorithm on the cases
//! the tests compare against.

use std::collections::BTreeMap;

use crate::{
    common::LocalObjectReference,
    replica_set::WorkloadReplicaTemplate,
    workload::{
        ConfigLayer, HostInterface, ImagePullPolicy, KubernetesSpec, LocalResources, Volume, VolumeMount,
        WorkloadComponent, WorkloadService, WorkloadSpec,
    },
};

/// The alphabet of `rand.SafeEncodeString` (k8s.io/apimachinery/pkg/util/rand): no vowels, and no
/// characters that are easily confused.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

impl WorkloadReplicaTemplate {
    /// The template hash of this template's spec, as wasmCloud computes it; see [`template_hash`].
    pub fn hash(&self) -> String {
        template_hash(&self.spec)
    }
}

/// The hash wasmCloud's `WorkloadReplicaTemplate.Hash()` gives a template with this spec, e.g.
/// `5ff7cf8c77`: FNV-1a 32 of [`go_json`], in decimal, with each digit mapped through
/// `rand.SafeEncodeString`.
pub fn template_hash(spec: &WorkloadSpec) -> String {
    safe_encode(&fnv1a32(go_json(spec).as_bytes()).to_string())
}

/// The spec as Go's `encoding/json` marshals wasmCloud's `WorkloadSpec`, plus `schedulerName` at
/// the end when it is set.
pub fn go_json(spec: &WorkloadSpec) -> String {
    let mut out = String::new();
    write_spec(&mut out, spec);
    out
}

/// 32-bit FNV-1a, as Go's `hash/fnv.New32a` (also what wasmCloud names EndpointSlices with).
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, &byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// `rand.SafeEncodeString` for an ASCII string (all it is given here is a decimal number).
fn safe_encode(ascii: &str) -> String {
    ascii
        .bytes()
        .map(|byte| char::from(SAFE_ALPHABET[usize::from(byte) % SAFE_ALPHABET.len()]))
        .collect()
}

/// A JSON object being written: it adds the commas and quotes the (plain ASCII) field names.
struct Object<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut String) -> Self {
        out.push('{');
        Self { out, empty: true }
    }

    /// Starts field `name` and returns the output for its value.
    fn field(&mut self, name: &str) -> &mut String {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out.push('"');
        self.out.push_str(name);
        self.out.push_str("\":");
        self.out
    }

    fn string(&mut self, name: &str, value: &str) {
        write_string(self.field(name), value);
    }

    /// An `omitempty` string: written unless unset or `""`.
    fn opt_string(&mut self, name: &str, value: Option<&str>) {
        if let Some(value) = value.filter(|value| !value.is_empty()) {
            self.string(name, value);
        }
    }

    /// An `omitempty` int32: written unless unset or 0.
    fn opt_int(&mut self, name: &str, value: Option<i32>) {
        if let Some(value) = value.filter(|&value| value != 0) {
            self.field(name).push_str(&value.to_string());
        }
    }

    /// An `omitempty` `map[string]string`: written unless unset or empty.
    fn opt_map(&mut self, name: &str, map: Option<&BTreeMap<String, String>>) {
        if let Some(map) = map.filter(|map| !map.is_empty()) {
            write_map(self.field(name), map);
        }
    }

    /// An `omitempty` slice: written unless unset or empty, each item with `item`.
    fn opt_list<T>(&mut self, name: &str, items: Option<&[T]>, item: impl Fn(&mut String, &T)) {
        if let Some(items) = items.filter(|items| !items.is_empty()) {
            let out = self.field(name);
            out.push('[');
            for (index, value) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                item(out, value);
            }
            out.push(']');
        }
    }

    /// An `omitempty` pointer to a struct: written (possibly as `{}`) when set.
    fn opt_object<T>(&mut self, name: &str, value: Option<&T>, write: impl Fn(&mut String, &T)) {
        if let Some(value) = value {
            write(self.field(name), value);
        }
    }

    fn close(self) {
        self.out.push('}');
    }
}

fn write_spec(out: &mut String, spec: &WorkloadSpec) {
    let mut object = Object::open(out);
    object.opt_map("hostSelector", spec.host_selector.as_ref());
    object.opt_string("hostId", spec.host_id.as_deref());
    object.opt_string("environment", spec.environment.as_deref());
    object.opt_list("components", spec.components.as_deref(), write_component);
    object.opt_list(
        "hostInterfaces",
        spec.host_interfaces.as_deref(),
        write_host_interface,
    );
    object.opt_object("service", spec.service.as_ref(), write_service);
    object.opt_list("volumes", spec.volumes.as_deref(), write_volume);
    object.opt_object("kubernetes", spec.kubernetes.as_ref(), write_kubernetes);
    // Weft extension, absent from wasmCloud's type: last, and only when set.
    object.opt_string("schedulerName", spec.scheduler_name.as_deref());
    object.close();
}

fn write_component(out: &mut String, component: &WorkloadComponent) {
    let mut object = Object::open(out);
    object.string("name", &component.name);
    object.string("image", &component.image);
    object.opt_object(
        "imagePullSecret",
        component.image_pull_secret.as_ref(),
        write_reference,
    );
    object.opt_string(
        "imagePullPolicy",
        component.image_pull_policy.as_ref().map(ImagePullPolicy::as_str),
    );
    object.opt_int("poolSize", component.pool_size);
    object.opt_int("maxInvocations", component.max_invocations);
    object.opt_int("maxConcurrency", component.max_concurrency);
    object.opt_object(
        "localResources",
        component.local_resources.as_ref(),
        write_local_resources,
    );
    object.close();
}

fn write_service(out: &mut String, service: &WorkloadService) {
    let mut object = Object::open(out);
    object.string("image", &service.image);
    object.opt_object(
        "imagePullSecret",
        service.image_pull_secret.as_ref(),
        write_reference,
    );
    object.opt_string(
        "imagePullPolicy",
        service.image_pull_policy.as_ref().map(ImagePullPolicy::as_str),
    );
    // Not omitempty in Go: always written, 0 when unset.
    object
        .field("maxRestarts")
        .push_str(&service.max_restarts.unwrap_or(0).to_string());
    object.opt_object(
        "localResources",
        service.local_resources.as_ref(),
        write_local_resources,
    );
    object.close();
}

fn write_local_resources(out: &mut String, resources: &LocalResources) {
    let mut object = Object::open(out);
    object.opt_list(
        "volumeMounts",
        resources.volume_mounts.as_deref(),
        write_volume_mount,
    );
    object.opt_object("environment", resources.environment.as_ref(), |out, layer| {
        let mut object = Object::open(out);
        write_config_layer_fields(&mut object, layer);
        object.close();
    });
    object.opt_map("config", resources.config.as_ref());
    object.opt_list("allowedHosts", resources.allowed_hosts.as_deref(), write_item);
    object.opt_list(
        "allowedIpNameLookups",
        resources.allowed_ip_name_lookups.as_deref(),
        write_item,
    );
    object.opt_list(
        "allowedHostLoopbackPorts",
        resources.allowed_host_loopback_ports.as_deref(),
        write_item,
    );
    object.close();
}

/// The fields of a `ConfigLayer`, also promoted into `HostInterface`, which embeds it first.
fn write_config_layer_fields(object: &mut Object<'_>, layer: &ConfigLayer) {
    object.opt_list("configFrom", layer.config_from.as_deref(), write_reference);
    object.opt_list("secretFrom", layer.secret_from.as_deref(), write_reference);
    object.opt_map("config", layer.config.as_ref());
}

fn write_host_interface(out: &mut String, interface: &HostInterface) {
    let mut object = Object::open(out);
    write_config_layer_fields(&mut object, &interface.config_layer);
    object.opt_string("name", interface.name.as_deref());
    object.string("namespace", &interface.namespace);
    object.string("package", &interface.package);
    object.opt_list("interfaces", Some(&interface.interfaces[..]), write_item);
    object.opt_string("version", interface.version.as_deref());
    object.close();
}

fn write_volume(out: &mut String, volume: &Volume) {
    let mut object = Object::open(out);
    object.string("name", &volume.name);
    object.opt_object("ephemeral", volume.ephemeral.as_ref(), |out, _| {
        out.push_str("{}");
    });
    object.opt_object("hostPath", volume.host_path.as_ref(), |out, host_path| {
        let mut object = Object::open(out);
        object.string("path", &host_path.path);
        object.close();
    });
    object.close();
}

fn write_volume_mount(out: &mut String, mount: &VolumeMount) {
    let mut object = Object::open(out);
    object.string("name", &mount.name);
    object.string("mountPath", &mount.mount_path);
    if mount.read_only == Some(true) {
        object.field("readOnly").push_str("true");
    }
    object.close();
}

fn write_kubernetes(out: &mut String, kubernetes: &KubernetesSpec) {
    let mut object = Object::open(out);
    object.opt_object("service", kubernetes.service.as_ref(), |out, service| {
        let mut object = Object::open(out);
        object.string("name", &service.name);
        object.close();
    });
    object.close();
}

/// `corev1.LocalObjectReference`, whose `name` is omitempty.
fn write_reference(out: &mut String, reference: &LocalObjectReference) {
    let mut object = Object::open(out);
    object.opt_string("name", Some(&reference.name));
    object.close();
}

fn write_item(out: &mut String, value: &impl AsRef<str>) {
    write_string(out, value.as_ref());
}

/// A `map[string]string`; `BTreeMap` already orders the keys bytewise, as Go sorts them.
fn write_map(out: &mut String, map: &BTreeMap<String, String>) {
    out.push('{');
    for (index, (key, value)) in map.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        write_string(out, value);
    }
    out.push('}');
}

/// A string quoted as Go's `encoding/json` quotes it (with its default HTML escaping): `"` and `\`
/// backslash-escaped; `\b`, `\f`, `\n`, `\r`, `\t` in short form; other control characters, `<`,
/// `>`, `&`, U+2028 and U+2029 as `\u00XX` (lowercase hex); everything else, DEL included, as is.
fn write_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0}'..='\u{1f}' | '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{EphemeralVolume, HostPathVolume, KubernetesServiceRef};

    fn quoted(value: &str) -> String {
        let mut out = String::new();
        write_string(&mut out, value);
        out
    }

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn component(name: &str) -> WorkloadComponent {
        WorkloadComponent {
            name: name.into(),
            image: format!("ghcr.io/example/{name}:1"),
            ..Default::default()
        }
    }

    #[test]
    fn strings_are_escaped_like_go() {
        assert_eq!(quoted("plain / text"), r#""plain / text""#);
        assert_eq!(quoted(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(quoted("<a & b>"), r#""\u003ca \u0026 b\u003e""#);
        assert_eq!(quoted("\u{8}\u{c}\n\r\t"), r#""\b\f\n\r\t""#);
        assert_eq!(quoted("\u{0}\u{1}\u{1b}\u{1f}"), r#""\u0000\u0001\u001b\u001f""#);
        assert_eq!(quoted("\u{2028}\u{2029}"), r#""\u2028\u2029""#);
        assert_eq!(quoted("\u{7f}\u{85}é日本🦀"), "\"\u{7f}\u{85}é日本🦀\"");
    }

    #[test]
    fn the_hash_is_fnv1a_of_the_json_safe_encoded() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
        let spec = WorkloadSpec::default();
        assert_eq!(go_json(&spec), "{}");
        assert_eq!(template_hash(&spec), safe_encode(&fnv1a32(b"{}").to_string()));
        let template = WorkloadReplicaTemplate {
            labels: Some(map(&[("app", "x")])),
            spec,
            ..Default::default()
        };
        assert_eq!(
            template.hash(),
            template_hash(&template.spec),
            "labels are not hashed"
        );
    }

    #[test]
    fn fields_follow_the_go_declaration_order() {
        let spec = WorkloadSpec {
            kubernetes: Some(KubernetesSpec {
                service: Some(KubernetesServiceRef { name: "svc".into() }),
            }),
            volumes: Some(vec![Volume {
                name: "v".into(),
                host_path: Some(HostPathVolume { path: "/p".into() }),
                ephemeral: Some(EphemeralVolume {}),
            }]),
            service: Some(WorkloadService {
                image: "s".into(),
                ..Default::default()
            }),
            host_interfaces: Some(vec![HostInterface {
                version: Some("0.2.0".into()),
                interfaces: vec!["store".into()],
                package: "keyvalue".into(),
                namespace: "wasi".into(),
                name: Some("cache".into()),
                config_layer: ConfigLayer {
                    config: Some(map(&[("k", "v")])),
                    secret_from: Some(vec![LocalObjectReference::new("s")]),
                    config_from: Some(vec![LocalObjectReference::new("c")]),
                },
            }]),
            components: Some(vec![component("c")]),
            scheduler_name: Some("spread".into()),
            environment: Some("env".into()),
            host_id: Some("id".into()),
            host_selector: Some(map(&[("z", "1"), ("a", "2")])),
        };
        assert_eq!(
            go_json(&spec),
            concat!(
                r#"{"hostSelector":{"a":"2","z":"1"},"hostId":"id","environment":"env","#,
                r#""components":[{"name":"c","image":"ghcr.io/example/c:1"}],"#,
                r#""hostInterfaces":[{"configFrom":[{"name":"c"}],"secretFrom":[{"name":"s"}],"#,
                r#""config":{"k":"v"},"name":"cache","namespace":"wasi","package":"keyvalue","#,
                r#""interfaces":["store"],"version":"0.2.0"}],"#,
                r#""service":{"image":"s","maxRestarts":0},"#,
                r#""volumes":[{"name":"v","ephemeral":{},"hostPath":{"path":"/p"}}],"#,
                r#""kubernetes":{"service":{"name":"svc"}},"schedulerName":"spread"}"#
            )
        );
    }

    #[test]
    fn empty_values_are_omitted_like_go_omitempty() {
        let spec = WorkloadSpec {
            host_selector: Some(BTreeMap::new()),
            host_id: Some(String::new()),
            environment: Some(String::new()),
            scheduler_name: Some(String::new()),
            components: Some(vec![WorkloadComponent {
                image_pull_secret: Some(LocalObjectReference::default()),
                image_pull_policy: Some(ImagePullPolicy::Other(String::new())),
                pool_size: Some(0),
                max_invocations: Some(0),
                max_concurrency: Some(0),
                local_resources: Some(LocalResources {
                    volume_mounts: Some(vec![VolumeMount {
                        name: "v".into(),
                        mount_path: "/v".into(),
                        read_only: Some(false),
                    }]),
                    environment: Some(ConfigLayer {
                        config_from: Some(vec![]),
                        secret_from: Some(vec![]),
                        config: Some(BTreeMap::new()),
                    }),
                    config: Some(BTreeMap::new()),
                    allowed_hosts: Some(vec![]),
                    allowed_ip_name_lookups: Some(vec![]),
                    allowed_host_loopback_ports: Some(vec![]),
                }),
                ..component("c")
            }]),
            host_interfaces: Some(vec![HostInterface {
                name: Some(String::new()),
                version: Some(String::new()),
                ..Default::default()
            }]),
            service: None,
            volumes: Some(vec![]),
            kubernetes: Some(KubernetesSpec::default()),
        };
        assert_eq!(
            go_json(&spec),
            concat!(
                r#"{"components":[{"name":"c","image":"ghcr.io/example/c:1","imagePullSecret":{},"#,
                r#""localResources":{"volumeMounts":[{"name":"v","mountPath":"/v"}],"environment":{}}}],"#,
                r#""hostInterfaces":[{"namespace":"","package":""}],"kubernetes":{}}"#
            )
        );
    }

    #[test]
    fn the_scheduler_name_changes_the_hash_only_when_set() {
        let without = WorkloadSpec {
            components: Some(vec![component("c")]),
            ..Default::default()
        };
        let with = WorkloadSpec {
            scheduler_name: Some("spread".into()),
            ..without.clone()
        };
        let other = WorkloadSpec {
            scheduler_name: Some("binpack".into()),
            ..without.clone()
        };
        assert_eq!(
            go_json(&with),
            r#"{"components":[{"name":"c","image":"ghcr.io/example/c:1"}],"schedulerName":"spread"}"#
        );
        assert_ne!(template_hash(&with), template_hash(&without));
        assert_ne!(template_hash(&with), template_hash(&other));
    }
}
