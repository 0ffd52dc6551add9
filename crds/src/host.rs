//! `Host`: a running host that Workloads can be placed on. Hosts register themselves through
//! heartbeats; the operator writes the object. A Host has no `spec`: its fields sit at the root of
//! the object.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::{
    condition::Condition,
    schema::{self, Layout},
};

const HOST_DESCRIPTION: &str = "A running host that Workloads can be placed on, kept by the operator from the host's \
heartbeats. Its fields sit at the root of the object: a Host has no spec.";

/// The fields of a Host. On the wire they sit at the root of the object, next to `metadata` (there is
/// no `spec`); in Rust they are the `spec` field of [`Host`].
// Several printer columns share `type_ = "string"`, which clippy mistakes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "runtime.wasmcloud.dev",
    version = "v1alpha1",
    kind = "Host",
    namespaced,
    no_spec,
    status = "HostStatus",
    schema = "manual",
    derive = "PartialEq",
    derive = "Default",
    doc = "A running host that Workloads can be placed on. Its name is the host's friendly name.",
    printcolumn(name = "HOSTID", type_ = "string", json_path = ".hostId"),
    printcolumn(
        name = "HOSTGROUP",
        type_ = "string",
        json_path = ".metadata.labels.hostgroup"
    ),
    printcolumn(name = "ENVIRONMENT", type_ = "string", json_path = ".environment"),
    printcolumn(
        name = "READY",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(name = "HOSTNAME", type_ = "string", json_path = ".hostname", priority = "1"),
    printcolumn(
        name = "WORKLOADS",
        type_ = "integer",
        json_path = ".status.workloadCount",
        priority = "1"
    ),
    printcolumn(
        name = "CPU",
        type_ = "string",
        json_path = ".status.systemCPUUsage",
        priority = "1"
    ),
    printcolumn(
        name = "MEMORYFREE",
        type_ = "integer",
        json_path = ".status.systemMemoryFree",
        priority = "1"
    ),
    printcolumn(
        name = "REASON",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#,
        priority = "1"
    ),
    printcolumn(name = "AGE", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct HostFields {
    /// The host's unique ID (a UUID).
    pub host_id: String,
    /// Address of the host (for a host pod, the pod's IP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Port of the host's HTTP ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::int32")]
    pub http_port: Option<u32>,
    /// The host's location label: its pod's namespace for an in-cluster host, or an identifier such as
    /// a region for others. Workloads select it with `spec.environment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

// The schema requires the seven host facts (`version` to `systemMemoryFree`) in any status, as
// wasmCloud's does. They are `Option` here so that a writer can server-side apply conditions alone
// without owning them (the merged object must still carry them).
/// Observed state of a Host, from its heartbeats. A status must carry the seven host facts,
/// `version` to `systemMemoryFree`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostStatus {
    /// Conditions of the host: `Reporting` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = crate::condition::conditions_list)]
    pub conditions: Vec<Condition>,
    /// Version of the host software.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub version: Option<String>,
    /// Operating system of the host machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub os_name: Option<String>,
    /// CPU architecture of the host machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub os_arch: Option<String>,
    /// Kernel version of the host machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub os_kernel: Option<String>,
    /// CPU usage of the host machine, a decimal number formatted as a string.
    #[serde(rename = "systemCPUUsage", skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub system_cpu_usage: Option<String>,
    /// Total memory of the host machine, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub system_memory_total: Option<i64>,
    /// Free memory of the host machine, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub system_memory_free: Option<i64>,
    /// Number of components running on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::plain_integer")]
    pub component_count: Option<i64>,
    /// Number of workloads running on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::plain_integer")]
    pub workload_count: Option<i64>,
    /// When the host last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
}

impl Host {
    /// Whether its `Ready` condition is True.
    pub fn is_ready(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| crate::condition::is_true(&s.conditions, crate::names::condition_types::READY))
    }
}

impl JsonSchema for Host {
    fn schema_name() -> Cow<'static, str> {
        "Host".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        schema::object::<HostFields, HostStatus>(generator, HOST_DESCRIPTION, Layout::Root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_sit_at_the_root_of_the_object() {
        let mut host = Host::new(
            "quiet-meadow-4821",
            HostFields {
                host_id: "5f0c9a3e".into(),
                http_port: Some(9191),
                ..Default::default()
            },
        );
        host.status = Some(HostStatus {
            version: Some("0.1.0".into()),
            ..Default::default()
        });
        assert_eq!(
            serde_json::to_value(&host).unwrap(),
            json!({
                "apiVersion": "runtime.wasmcloud.dev/v1alpha1",
                "kind": "Host",
                "metadata": { "name": "quiet-meadow-4821" },
                "hostId": "5f0c9a3e",
                "httpPort": 9191,
                "status": { "version": "0.1.0" },
            })
        );
    }

    #[test]
    fn a_host_without_status_facts_deserializes() {
        let host: Host = serde_json::from_value(json!({
            "apiVersion": "runtime.wasmcloud.dev/v1alpha1",
            "kind": "Host",
            "metadata": { "name": "h" },
            "hostId": "id",
            "status": { "conditions": [{ "type": "Ready", "status": "True" }] },
        }))
        .unwrap();
        assert_eq!(host.spec.host_id, "id");
        assert!(crate::condition::is_true(
            &host.status.unwrap().conditions,
            "Ready"
        ));
    }
}
