//! `Artifact`: a WebAssembly component image that WorkloadDeployments refer to by name
//! (`artifact://<name>`).

use std::borrow::Cow;

use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::{
    common::LocalObjectReference,
    condition::Condition,
    schema::{self, Layout},
};

const ARTIFACT_DESCRIPTION: &str = "A WebAssembly component image that WorkloadDeployments in the same namespace \
use as `artifact://<name>`.";

/// Desired state of an Artifact.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "runtime.wasmcloud.dev",
    version = "v1alpha1",
    kind = "Artifact",
    namespaced,
    status = "ArtifactStatus",
    schema = "manual",
    derive = "PartialEq",
    derive = "Default",
    doc = "A WebAssembly component image that WorkloadDeployments refer to as `artifact://<name>`."
)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactSpec {
    /// OCI reference of the component image.
    #[schemars(length(min = 1))]
    pub image: String,
    /// A `kubernetes.io/dockerconfigjson` Secret with the credentials to pull the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<LocalObjectReference>,
}

/// Observed state of an Artifact.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactStatus {
    /// Conditions of the artifact: `Sync`, `Published` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = crate::condition::conditions_list)]
    pub conditions: Vec<Condition>,
    /// The `.metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where workloads fetch the artifact from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_url: Option<String>,
}

impl JsonSchema for Artifact {
    fn schema_name() -> Cow<'static, str> {
        "Artifact".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        schema::object::<ArtifactSpec, ArtifactStatus>(generator, ARTIFACT_DESCRIPTION, Layout::Spec)
    }
}
