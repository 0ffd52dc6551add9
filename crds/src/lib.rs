//! Weft's custom resources, `runtime.wasmcloud.dev/v1alpha1`: [`Host`], [`Workload`],
//! [`WorkloadReplicaSet`], [`WorkloadDeployment`] and [`Artifact`].
//!
//! The types have exactly the field names, shapes and scopes of wasmCloud v2's CRDs and all of their
//! validation, so a wasmCloud manifest applies unchanged, plus a few optional Weft extensions and checks
//! for values that cannot work (documented on the fields and in `docs/crds.md`). Each kind's module also has its validation patterns and rules as constants.
//! The well-known names shared with wasmCloud (finalizers, labels, annotations, condition types) are
//! in [`names`].
//!
//! This crate does no I/O. The `crdgen` binary (package `weft-crdgen`) writes [`manifests`] to disk.
#![deny(missing_docs)]

pub mod artifact;
mod common;
pub mod condition;
pub mod deployment;
pub mod host;
pub mod names;
pub mod replica_set;
mod schema;
pub mod template_hash;
pub mod workload;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use artifact::{Artifact, ArtifactSpec, ArtifactStatus};
pub use common::LocalObjectReference;
pub use condition::{Condition, ConditionStatus};
pub use deployment::{
    DeployPolicy, RollingUpdate, WorkloadDeployment, WorkloadDeploymentArtifact, WorkloadDeploymentSpec,
    WorkloadDeploymentStatus,
};
pub use host::{Host, HostFields, HostStatus};
pub use replica_set::{
    ReplicaCounts, WorkloadReplicaSet, WorkloadReplicaSetSpec, WorkloadReplicaSetStatus,
    WorkloadReplicaTemplate,
};
pub use workload::{
    ConfigLayer, EphemeralVolume, HostInterface, HostPathVolume, ImagePullPolicy, KubernetesServiceRef,
    KubernetesSpec, LocalResources, Volume, VolumeMount, Workload, WorkloadComponent, WorkloadService,
    WorkloadSpec, WorkloadStatus,
};

/// The CustomResourceDefinitions of all five kinds, in a stable order.
pub fn custom_resource_definitions() -> Vec<CustomResourceDefinition> {
    vec![
        Host::crd(),
        Workload::crd(),
        WorkloadReplicaSet::crd(),
        WorkloadDeployment::crd(),
        Artifact::crd(),
    ]
}

/// A CRD rendered as a YAML manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// File name for the manifest: `<plural>.<group>.yaml`, e.g. `hosts.runtime.wasmcloud.dev.yaml`.
    pub file_name: String,
    /// The YAML document, starting with a comment that says how it was generated.
    pub yaml: String,
}

/// Why a CRD could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The CRD has no name.
    #[error("a CustomResourceDefinition has no metadata.name")]
    Unnamed,
    /// The CRD does not serialize to YAML.
    #[error("serializing CustomResourceDefinition {name} to YAML: {source}")]
    Yaml {
        /// Name of the CRD.
        name: String,
        /// The serializer's error.
        source: serde_yaml::Error,
    },
}

/// The first line of every generated manifest.
pub const MANIFEST_HEADER: &str = "# Generated from the weft-crds types by `make crds`; do not edit.\n";

/// The manifests of [`custom_resource_definitions`], one per CRD, as `crdgen` writes them.
pub fn manifests() -> Result<Vec<Manifest>, RenderError> {
    custom_resource_definitions().iter().map(manifest).collect()
}

/// Renders one CRD as a YAML manifest.
pub fn manifest(crd: &CustomResourceDefinition) -> Result<Manifest, RenderError> {
    let name = crd.metadata.name.clone().ok_or(RenderError::Unnamed)?;
    let body = serde_yaml::to_string(crd).map_err(|source| RenderError::Yaml {
        name: name.clone(),
        source,
    })?;
    Ok(Manifest {
        file_name: format!("{name}.yaml"),
        yaml: format!("{MANIFEST_HEADER}{body}"),
    })
}
