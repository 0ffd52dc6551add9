//! The Artifact controller (`runtime-artifact`, as wasmCloud names it): publishes `spec.image` as
//! `status.artifactUrl` (`Sync`, `Published`, `Ready`), and its finalizer keeps an Artifact while a
//! WorkloadDeployment of its namespace still lists it. Deployments watch Artifacts, so a changed image
//! rolls out at once (wasmCloud's deployments look again only every minute).

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use weft_crds::condition::{self, Condition, ConditionStatus};
use weft_crds::names::{condition_types as ct, finalizers, reasons};
use weft_crds::{Artifact, ArtifactStatus, WorkloadDeployment};
use weft_framework::events::EventRecorder;
use weft_framework::{Action, Cache, Context, Reconciler, finalizer};

use crate::error::{ApiError, api_err};

/// The controller's name (wasmCloud's).
pub const NAME: &str = "runtime-artifact";
/// The reason on `Ready` while a deletion waits for deployments to stop listing the Artifact.
pub const IN_USE: &str = "InUse";

/// The deployments (not being deleted) of `ns` that list the Artifact `name`, sorted.
pub fn users_of(deployments: &[Arc<WorkloadDeployment>], ns: &str, name: &str) -> Vec<String> {
    let mut users: Vec<String> = deployments
        .iter()
        .filter(|d| d.metadata.namespace.as_deref() == Some(ns) && d.metadata.deletion_timestamp.is_none())
        .filter(|d| {
            d.spec
                .artifacts
                .iter()
                .flatten()
                .any(|a| a.artifact_from.name == name)
        })
        .map(|d| d.name_any())
        .collect();
    users.sort();
    users
}

/// The Artifact objects a deployment lists (for mapping deployment changes to Artifacts).
pub fn artifacts_of(d: &WorkloadDeployment) -> Vec<String> {
    d.spec
        .artifacts
        .iter()
        .flatten()
        .map(|a| a.artifact_from.name.clone())
        .collect()
}

/// The status an Artifact should have (pure): its image published as is.
pub fn desired_status(a: &Artifact, now: &Time) -> ArtifactStatus {
    let generation = a.metadata.generation.unwrap_or(0);
    let mut status = a.status.clone().unwrap_or_default();
    status.observed_generation = Some(generation);
    status.artifact_url = Some(a.spec.image.clone());
    for (type_, message) in [
        (ct::SYNC, "the status reflects the spec"),
        (ct::PUBLISHED, "published as spec.image"),
        (ct::READY, "ready for WorkloadDeployments"),
    ] {
        condition::set(
            &mut status.conditions,
            Condition::new(type_, ConditionStatus::True)
                .with_reason(reasons::AVAILABLE)
                .with_message(message)
                .with_observed_generation(generation),
            now,
        );
    }
    status
}

/// Errors of the Artifact reconcile: a failed API call.
pub type Error = ApiError;

/// The Artifact reconciler.
pub struct ArtifactReconciler {
    client: Client,
    deployments: Cache<WorkloadDeployment>,
    recorder: EventRecorder,
}

impl ArtifactReconciler {
    /// A reconciler that checks deletions against the shared deployment cache.
    pub fn new(client: Client, deployments: Cache<WorkloadDeployment>, recorder: EventRecorder) -> Self {
        Self {
            client,
            deployments,
            recorder,
        }
    }

    async fn write_status(&self, ns: &str, name: &str, status: &ArtifactStatus) -> Result<(), Error> {
        let api: Api<Artifact> = Api::namespaced(self.client.clone(), ns);
        let patch = serde_json::json!({ "status": status });
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err("writing the status of Artifact", format!("{ns}/{name}")))?;
        Ok(())
    }
}

impl Reconciler<Artifact> for ArtifactReconciler {
    type Error = Error;

    async fn reconcile(&self, a: Arc<Artifact>, _ctx: &Context) -> Result<Action, Error> {
        let Some(ns) = a.namespace() else {
            return Ok(Action::Done);
        };
        let name = a.name_any();
        let api: Api<Artifact> = Api::namespaced(self.client.clone(), &ns);
        let now = Time(Timestamp::now());
        if finalizer::is_deleting(a.as_ref()) {
            if !finalizer::has_finalizer(a.as_ref(), finalizers::ARTIFACT) {
                return Ok(Action::Done);
            }
            let users = users_of(&self.deployments.list(), &ns, &name);
            if users.is_empty() {
                finalizer::remove(&api, a.as_ref(), finalizers::ARTIFACT, NAME)
                    .await
                    .map_err(api_err("releasing Artifact", format!("{ns}/{name}")))?;
                return Ok(Action::Done);
            }
            let message = format!(
                "deletion waits until no WorkloadDeployment lists it; listed by {}",
                users.join(", ")
            );
            let before = a.status.clone().unwrap_or_default();
            let mut status = before.clone();
            condition::set(
                &mut status.conditions,
                Condition::new(ct::READY, ConditionStatus::False)
                    .with_reason(IN_USE)
                    .with_message(message.clone()),
                &now,
            );
            if status != before {
                self.recorder
                    .warning(a.as_ref(), "DeletionBlocked", "Delete", message)
                    .await;
                self.write_status(&ns, &name, &status).await?;
            }
            // Deployment changes are watched: the last one to let go enqueues this Artifact.
            return Ok(Action::Done);
        }
        if !finalizer::has_finalizer(a.as_ref(), finalizers::ARTIFACT) {
            finalizer::add(&api, a.as_ref(), finalizers::ARTIFACT, NAME)
                .await
                .map_err(api_err(
                    "adding the finalizer to Artifact",
                    format!("{ns}/{name}"),
                ))?;
        }
        let status = desired_status(&a, &now);
        if Some(&status) != a.status.as_ref() {
            self.write_status(&ns, &name, &status).await?;
        }
        Ok(Action::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_crds::deployment::WorkloadDeploymentArtifact;
    use weft_crds::{ArtifactSpec, LocalObjectReference};

    fn deployment(name: &str, artifacts: &[&str], deleting: bool) -> Arc<WorkloadDeployment> {
        let mut d = WorkloadDeployment::new(name, Default::default());
        d.metadata.namespace = Some("ns".into());
        if deleting {
            d.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        }
        d.spec.artifacts = Some(
            artifacts
                .iter()
                .map(|a| WorkloadDeploymentArtifact {
                    name: "x".into(),
                    artifact_from: LocalObjectReference::new(*a),
                })
                .collect(),
        );
        Arc::new(d)
    }

    #[test]
    fn only_live_deployments_of_the_namespace_that_list_it_hold_an_artifact() {
        let mut other_ns = (*deployment("elsewhere", &["app"], false)).clone();
        other_ns.metadata.namespace = Some("other".into());
        let ds = vec![
            deployment("b", &["app"], false),
            deployment("a", &["app", "lib"], false),
            deployment("gone", &["app"], true),
            deployment("unrelated", &["lib"], false),
            Arc::new(other_ns),
        ];
        assert_eq!(users_of(&ds, "ns", "app"), vec!["a", "b"]);
        assert!(users_of(&ds, "ns", "nothing").is_empty());
    }

    #[test]
    fn the_published_url_is_the_image_and_follows_the_generation() {
        let mut a = Artifact::new(
            "app",
            ArtifactSpec {
                image: "reg/app:1".into(),
                image_pull_secret: None,
            },
        );
        a.metadata.generation = Some(3);
        let now = Time(Timestamp::now());
        let s = desired_status(&a, &now);
        assert_eq!(s.artifact_url.as_deref(), Some("reg/app:1"));
        assert_eq!(s.observed_generation, Some(3));
        for t in [ct::SYNC, ct::PUBLISHED, ct::READY] {
            assert!(condition::is_true(&s.conditions, t), "{t}");
        }
        // Unchanged input, unchanged status: nothing is written again.
        a.status = Some(s.clone());
        assert_eq!(desired_status(&a, &now), s);
    }
}
