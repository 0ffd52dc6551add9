//! `WorkloadReplicaSet`: keeps a number of Workload replicas of one template running, like a
//! ReplicaSet. Normally created and managed by a WorkloadDeployment.

use std::{borrow::Cow, collections::BTreeMap};

use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::{
    condition::Condition,
    schema::{self, Layout},
    workload::WorkloadSpec,
};

/// Number of replicas when `replicas` is unset.
pub const DEFAULT_REPLICAS: i32 = 1;

const REPLICA_SET_DESCRIPTION: &str = "Keeps a number of Workloads created from one template running, like a \
ReplicaSet; normally owned by a WorkloadDeployment.";

/// Desired state of a WorkloadReplicaSet.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "runtime.wasmcloud.dev",
    version = "v1alpha1",
    kind = "WorkloadReplicaSet",
    namespaced,
    status = "WorkloadReplicaSetStatus",
    schema = "manual",
    derive = "PartialEq",
    derive = "Default",
    doc = "Keeps a number of Workload replicas of one template running.",
    printcolumn(name = "REPLICAS", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(
        name = "READY",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "CURRENT",
        type_ = "integer",
        json_path = ".status.replicas.current",
        priority = "1"
    ),
    printcolumn(
        name = "AVAILABLE",
        type_ = "integer",
        json_path = ".status.replicas.ready",
        priority = "1"
    ),
    printcolumn(
        name = "MESSAGE",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].message"#,
        priority = "1"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadReplicaSetSpec {
    /// Number of Workload replicas to keep running. Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("default" = DEFAULT_REPLICAS))]
    pub replicas: Option<i32>,
    /// The Workloads to create.
    pub template: WorkloadReplicaTemplate,
}

impl WorkloadReplicaSetSpec {
    /// The desired number of replicas, with the default applied.
    pub fn replicas(&self) -> i32 {
        self.replicas.unwrap_or(DEFAULT_REPLICAS)
    }
}

/// The template Workloads are created from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadReplicaTemplate {
    /// Annotations put on every Workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Labels put on every Workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// The spec of every Workload.
    pub spec: WorkloadSpec,
}

/// Replica counts of a replica set, or summed over the replica sets of a deployment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaCounts {
    /// Replicas that should exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<i32>,
    /// Replicas that exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<i32>,
    /// Replicas that are Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<i32>,
    /// Replicas that exist but are not Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<i32>,
}

/// Observed state of a WorkloadReplicaSet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadReplicaSetStatus {
    /// Conditions of the replica set: `ScaleUp`, `ScaleDown` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = crate::condition::conditions_list)]
    pub conditions: Vec<Condition>,
    /// Replica counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaCounts>,
}

impl JsonSchema for WorkloadReplicaSet {
    fn schema_name() -> Cow<'static, str> {
        "WorkloadReplicaSet".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        schema::object::<WorkloadReplicaSetSpec, WorkloadReplicaSetStatus>(
            generator,
            REPLICA_SET_DESCRIPTION,
            Layout::Spec,
        )
    }
}
