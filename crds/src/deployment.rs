//! `WorkloadDeployment`: declarative, rolling updates of a Workload template across hosts, like a
//! Deployment. It owns one WorkloadReplicaSet per template and scales through the `/scale`
//! subresource.

use std::{borrow::Cow, collections::BTreeMap};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::{
    common::{LocalObjectReference, string_enum},
    condition::Condition,
    replica_set::{DEFAULT_REPLICAS, ReplicaCounts, WorkloadReplicaSetSpec, WorkloadReplicaTemplate},
    schema::{self, Layout},
    workload::KubernetesSpec,
};

/// Pattern of the percentage form of `maxSurge`: a non-negative whole percentage, e.g. `25%`.
pub const MAX_SURGE_PERCENT_PATTERN: &str = r"^(0|[1-9][0-9]*)%$";
/// Pattern of the percentage form of `maxUnavailable`: a whole percentage from `0%` to `100%`.
pub const MAX_UNAVAILABLE_PERCENT_PATTERN: &str = r"^(100|[1-9]?[0-9])%$";
/// CEL rule on `rollingUpdate`: a rollout must be able to make progress.
pub const ROLLING_UPDATE_PROGRESS_RULE: &str = "!(has(self.maxSurge) && string(self.maxSurge) in ['0', '0%'] && (!has(self.maxUnavailable) || string(self.maxUnavailable) in ['0', '0%']))";
/// Message of [`ROLLING_UPDATE_PROGRESS_RULE`].
pub const ROLLING_UPDATE_PROGRESS_MESSAGE: &str = "maxSurge and maxUnavailable must not both be zero";
/// CEL rule on the spec: `rollingUpdate` only goes with the `RollingUpdate` policy.
pub const ROLLING_UPDATE_POLICY_RULE: &str =
    "!has(self.rollingUpdate) || !has(self.deployPolicy) || self.deployPolicy == 'RollingUpdate'";
/// Message of [`ROLLING_UPDATE_POLICY_RULE`].
pub const ROLLING_UPDATE_POLICY_MESSAGE: &str =
    "rollingUpdate may be set only when deployPolicy is RollingUpdate";

const DEPLOYMENT_DESCRIPTION: &str = "Rolls out and scales a Workload template across hosts, like a Deployment, \
through one WorkloadReplicaSet per template.";

/// Desired state of a WorkloadDeployment.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "runtime.wasmcloud.dev",
    version = "v1alpha1",
    kind = "WorkloadDeployment",
    namespaced,
    status = "WorkloadDeploymentStatus",
    schema = "manual",
    derive = "PartialEq",
    derive = "Default",
    doc = "Rolls out and scales a Workload template across hosts through WorkloadReplicaSets.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.currentReplicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "REPLICAS", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(
        name = "READY",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "CURRENT",
        type_ = "integer",
        json_path = ".status.currentReplicas",
        priority = "1"
    ),
    printcolumn(
        name = "UP-TO-DATE",
        type_ = "integer",
        json_path = ".status.updatedReplicas",
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
        json_path = r#".status.conditions[?(@.type=="Deploy")].message"#,
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
#[schemars(transform = deployment_spec_rules)]
pub struct WorkloadDeploymentSpec {
    /// Number of Workload replicas to keep running. Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("default" = DEFAULT_REPLICAS))]
    pub replicas: Option<i32>,
    /// The Workloads to create.
    pub template: WorkloadReplicaTemplate,
    /// How a new template replaces the old one: `RollingUpdate` (the default) brings up the new
    /// replicas before removing the old ones; `Recreate` removes the old replica set at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "RollingUpdate"))]
    pub deploy_policy: Option<DeployPolicy>,
    /// Weft extension: how fast a `RollingUpdate` proceeds. Unset keeps wasmCloud's behaviour: all
    /// new replicas first (`maxSurge: 100%`), then the old ones are removed (`maxUnavailable: 0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
    /// Artifacts that component images of the form `artifact://<name>` resolve to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<Vec<WorkloadDeploymentArtifact>>,
    /// Kubernetes-specific configuration; overrides `template.spec.kubernetes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesSpec>,
}

fn deployment_spec_rules(schema: &mut Schema) {
    schema::add_rules(
        schema,
        &[(ROLLING_UPDATE_POLICY_RULE, ROLLING_UPDATE_POLICY_MESSAGE)],
    );
}

impl WorkloadDeploymentSpec {
    /// The desired number of replicas, with the default applied.
    pub fn replicas(&self) -> i32 {
        self.replicas.unwrap_or(DEFAULT_REPLICAS)
    }

    /// The deploy policy, with the default applied.
    pub fn deploy_policy(&self) -> DeployPolicy {
        self.deploy_policy.clone().unwrap_or_default()
    }

    /// The spec of a WorkloadReplicaSet for this deployment's template with `replicas` replicas.
    pub fn replica_set_spec(&self, replicas: i32) -> WorkloadReplicaSetSpec {
        WorkloadReplicaSetSpec {
            replicas: Some(replicas),
            template: self.template.clone(),
        }
    }
}

string_enum! {
    /// How a WorkloadDeployment replaces its Workloads when the template changes. wasmCloud treats any
    /// value other than `Recreate` as `RollingUpdate`.
    #[derive(Default)]
    pub enum DeployPolicy {
        /// Bring up the new replicas, then remove the old ones (see `rollingUpdate`).
        #[default]
        RollingUpdate = "RollingUpdate",
        /// Remove the old replica set at once, then bring up the new one.
        Recreate = "Recreate",
    }
}

/// Weft extension: the pace of a rolling update, as in a Kubernetes Deployment. Each value is a
/// number of replicas or a percentage of `replicas` (`"25%"`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = rolling_update_rules)]
pub struct RollingUpdate {
    /// How many replicas may exist above `replicas` during the update (percentages round up).
    /// Unset means `100%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "max_surge_schema")]
    pub max_surge: Option<IntOrString>,
    /// How many of `replicas` may be unavailable during the update (percentages round down). Unset
    /// means `0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "max_unavailable_schema")]
    pub max_unavailable: Option<IntOrString>,
}

fn max_surge_schema(_: &mut SchemaGenerator) -> Schema {
    schema::int_or_percent(MAX_SURGE_PERCENT_PATTERN)
}

fn max_unavailable_schema(_: &mut SchemaGenerator) -> Schema {
    schema::int_or_percent(MAX_UNAVAILABLE_PERCENT_PATTERN)
}

fn rolling_update_rules(schema: &mut Schema) {
    schema::add_rules(
        schema,
        &[(ROLLING_UPDATE_PROGRESS_RULE, ROLLING_UPDATE_PROGRESS_MESSAGE)],
    );
}

/// An artifact a WorkloadDeployment's component images can refer to as `artifact://<name>`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadDeploymentArtifact {
    /// The name used in `artifact://<name>`.
    pub name: String,
    /// The Artifact object, in the same namespace.
    pub artifact_from: LocalObjectReference,
}

/// Observed state of a WorkloadDeployment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadDeploymentStatus {
    /// Conditions of the deployment: `Artifact`, `Sync`, `Deploy`, `Scale` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = crate::condition::conditions_list)]
    pub conditions: Vec<Condition>,
    /// The WorkloadReplicaSet of the current template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replica_set: Option<LocalObjectReference>,
    /// The WorkloadReplicaSet of the previous template, while it is being replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_replica_set: Option<LocalObjectReference>,
    /// Replica counts summed over the deployment's replica sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaCounts>,
    /// Number of Workload replicas currently running; the `/scale` subresource's status replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<i32>,
    /// Label selector of the deployment's replica sets, serialized: the `/scale` subresource's
    /// selector, which autoscalers need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Weft extension: Workload replicas of the current template (`kubectl get deploy`'s UP-TO-DATE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i32>,
    /// Weft extension: the `.metadata.generation` this status was computed from; a rollout of the
    /// latest spec is complete when it equals the generation and `Ready` is True.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl JsonSchema for WorkloadDeployment {
    fn schema_name() -> Cow<'static, str> {
        "WorkloadDeployment".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        schema::object::<WorkloadDeploymentSpec, WorkloadDeploymentStatus>(
            generator,
            DEPLOYMENT_DESCRIPTION,
            Layout::Spec,
        )
    }
}

/// The deployment's `status.selector`: `runtime.wasmcloud.dev/workload-deployment=<name>`.
pub fn selector_for(deployment_name: &str) -> String {
    format!("{}={deployment_name}", crate::names::labels::WORKLOAD_DEPLOYMENT)
}

/// The labels that select a deployment's replica sets.
pub fn selector_labels(deployment_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(
        crate::names::labels::WORKLOAD_DEPLOYMENT.to_owned(),
        deployment_name.to_owned(),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_fields_are_unset() {
        let spec = WorkloadDeploymentSpec::default();
        assert_eq!(spec.replicas(), 1);
        assert_eq!(spec.deploy_policy(), DeployPolicy::RollingUpdate);
    }

    #[test]
    fn selector_names_the_deployment_label() {
        assert_eq!(
            selector_for("hello"),
            "runtime.wasmcloud.dev/workload-deployment=hello"
        );
        assert_eq!(
            selector_labels("hello")
                .get(crate::names::labels::WORKLOAD_DEPLOYMENT)
                .unwrap(),
            "hello"
        );
    }
}
