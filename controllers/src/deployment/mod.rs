//! The WorkloadDeployment controller (`workload-deployment`, as wasmCloud names it): resolves the
//! template (`artifact://` images through the deployment's Artifacts, the deployment-level `kubernetes`
//! block copied in), keeps one WorkloadReplicaSet per template hash and moves replicas from the old
//! sets to the current one at the pace of [`rollout`] (decisions there; I/O here).
//!
//! Conditions, in wasmCloud's order: `Artifact` (every referenced Artifact is Published), `Sync` (a
//! replica set of the current template exists), `Deploy` (where the rollout stands, or why it stalled),
//! `Scale` (the current set has every replica Ready), `Ready` (all of them; Unknown, not False, while
//! not ready, as in wasmCloud). The status also carries `currentReplicas` and `selector` for the
//! `/scale` subresource, and Weft's `updatedReplicas` and `observedGeneration`.
//!
//! Replica set names are `<deployment>-<template hash>`, so a retried creation can never make two;
//! replica counts are written with the cached `resourceVersion` as a precondition, so a decision made
//! on a stale cache fails with a conflict instead of over- or under-scaling.

pub mod rollout;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry as MetricsRegistry;
use weft_crds::condition::{self, Condition, ConditionStatus};
use weft_crds::deployment::selector_for;
use weft_crds::names::{condition_types as ct, labels, reasons};
use weft_crds::replica_set::{ReplicaCounts, WorkloadReplicaTemplate};
use weft_crds::{
    Artifact, LocalObjectReference, Workload, WorkloadDeployment, WorkloadDeploymentStatus,
    WorkloadReplicaSet, WorkloadReplicaSetSpec,
};
use weft_framework::{Action, Cache, Context, Reconciler};

use crate::error::{ApiError, api_err};
use crate::replicaset::{REPLICA_SET_OWNER_INDEX, controller_of, owned_workloads, why_not_ready};
use rollout::{Phase, SetView};

/// The controller's name (wasmCloud's).
pub const NAME: &str = "workload-deployment";
/// The image prefix that names an Artifact of the deployment.
pub const ARTIFACT_SCHEME: &str = "artifact://";
/// A periodic look at every deployment, in case an event was missed.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(60);
/// The `Deploy` reason while a new replica of the rollout fails.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
/// Annotations never copied from a deployment to its replica sets.
const NOT_COPIED: &[&str] = &["kubectl.kubernetes.io/last-applied-configuration"];

/// Why a deployment's template cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// An Artifact is missing or not published yet (`Artifact` Unknown; its change re-enqueues).
    Pending(String),
    /// The spec names an artifact it does not list (`Artifact` False until the spec changes).
    Invalid(String),
}

/// The template a deployment's replica set gets: `artifact://<name>` images replaced with the
/// `status.artifactUrl` of the Artifact `spec.artifacts` maps `<name>` to, and the deployment's
/// `kubernetes` block copied into the spec (pure).
pub fn resolve_template(
    d: &WorkloadDeployment,
    artifact: impl Fn(&str) -> Option<Artifact>,
) -> Result<WorkloadReplicaTemplate, Unresolved> {
    let mut urls: BTreeMap<&str, String> = BTreeMap::new();
    for entry in d.spec.artifacts.iter().flatten() {
        let object = &entry.artifact_from.name;
        let Some(a) = artifact(object) else {
            return Err(Unresolved::Pending(format!("Artifact {object} not found")));
        };
        let published = a.status.as_ref().is_some_and(|s| {
            condition::is_true(&s.conditions, ct::PUBLISHED)
                && s.artifact_url.as_deref().is_some_and(|u| !u.is_empty())
        });
        if !published {
            return Err(Unresolved::Pending(format!(
                "Artifact {object} is not published yet"
            )));
        }
        let url = a.status.and_then(|s| s.artifact_url).unwrap_or_default();
        urls.insert(entry.name.as_str(), url);
    }
    let mut template = d.spec.template.clone();
    let resolve = |image: &mut String, what: &str| -> Result<(), Unresolved> {
        if let Some(name) = image.strip_prefix(ARTIFACT_SCHEME) {
            let url = urls.get(name).ok_or_else(|| {
                Unresolved::Invalid(format!(
                    "{what} uses image {image}, but spec.artifacts has no entry named {name:?}"
                ))
            })?;
            *image = url.clone();
        }
        Ok(())
    };
    for c in template.spec.components.iter_mut().flatten() {
        resolve(&mut c.image, &format!("component {}", c.name))?;
    }
    if let Some(service) = template.spec.service.as_mut() {
        resolve(&mut service.image, "the service")?;
    }
    if let Some(k) = &d.spec.kubernetes {
        template.spec.kubernetes = Some(k.clone());
    }
    Ok(template)
}

/// The name of a deployment's replica set for a template hash.
pub fn replica_set_name(deployment: &str, hash: &str) -> String {
    format!("{deployment}-{hash}")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutLabels {
    result: &'static str,
}

/// The deployment controller's metrics.
#[derive(Debug, Clone)]
pub struct DeploymentMetrics {
    rollouts: Family<RolloutLabels, Counter>,
}

impl DeploymentMetrics {
    /// Registers the families in `registry`.
    pub fn register(registry: &mut MetricsRegistry) -> Self {
        let m = Self {
            rollouts: Family::default(),
        };
        registry.register(
            "weft_deployment_rollouts",
            "Rollouts of a new template, by result (started, completed, failed)",
            m.rollouts.clone(),
        );
        m
    }

    fn rollout(&self, result: &'static str) {
        self.rollouts.get_or_create(&RolloutLabels { result }).inc();
    }
}

/// Errors of the deployment reconcile: a failed API call.
pub type Error = ApiError;

/// The rollout a deployment is in (by template hash), and what was counted for it.
#[derive(Debug, Clone)]
struct Rollout {
    hash: String,
    done: bool,
    failed: bool,
}

/// The WorkloadDeployment reconciler.
pub struct DeploymentReconciler {
    client: Client,
    sets: Cache<WorkloadReplicaSet>,
    workloads: Cache<Workload>,
    artifacts: Cache<Artifact>,
    metrics: DeploymentMetrics,
    rollouts: Mutex<HashMap<String, Rollout>>,
}

fn cond(type_: &str, status: ConditionStatus, reason: &str, message: impl Into<String>) -> Condition {
    Condition::new(type_, status)
        .with_reason(reason)
        .with_message(message.into())
}

impl DeploymentReconciler {
    /// A reconciler over the shared caches.
    pub fn new(
        client: Client,
        sets: Cache<WorkloadReplicaSet>,
        workloads: Cache<Workload>,
        artifacts: Cache<Artifact>,
        metrics: DeploymentMetrics,
    ) -> Self {
        Self {
            client,
            sets,
            workloads,
            artifacts,
            metrics,
            rollouts: Mutex::default(),
        }
    }

    fn new_set(
        d: &WorkloadDeployment,
        ns: &str,
        hash: &str,
        replicas: i32,
        template: WorkloadReplicaTemplate,
    ) -> WorkloadReplicaSet {
        let name = d.name_any();
        let mut set_labels = d.labels().clone();
        set_labels.insert(labels::WORKLOAD_DEPLOYMENT.to_string(), name.clone());
        let mut annotations = d.annotations().clone();
        annotations.retain(|k, _| !NOT_COPIED.contains(&k.as_str()));
        let owner = OwnerReference {
            api_version: WorkloadDeployment::api_version(&()).into_owned(),
            kind: WorkloadDeployment::kind(&()).into_owned(),
            name: name.clone(),
            uid: d.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        WorkloadReplicaSet {
            metadata: ObjectMeta {
                name: Some(replica_set_name(&name, hash)),
                namespace: Some(ns.to_string()),
                labels: Some(set_labels),
                annotations: (!annotations.is_empty()).then_some(annotations),
                owner_references: Some(vec![owner]),
                ..Default::default()
            },
            spec: WorkloadReplicaSetSpec {
                replicas: Some(replicas),
                template,
            },
            status: None,
        }
    }

    /// Writes `status` (fields that are `None` are removed) if it differs from `before`.
    async fn finish(
        &self,
        ns: &str,
        name: &str,
        before: &WorkloadDeploymentStatus,
        status: &WorkloadDeploymentStatus,
        action: Action,
    ) -> Result<Action, Error> {
        if status != before {
            let mut body = serde_json::to_value(status).unwrap_or_default();
            // A merge patch keeps fields it does not mention: clear the references explicitly.
            for field in ["currentReplicaSet", "previousReplicaSet"] {
                if body.get(field).is_none() {
                    body[field] = serde_json::Value::Null;
                }
            }
            let patch = serde_json::json!({ "status": body });
            let api: Api<WorkloadDeployment> = Api::namespaced(self.client.clone(), ns);
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                // Deleted meanwhile: nothing to report on.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                r => {
                    r.map_err(api_err(
                        "writing the status of WorkloadDeployment",
                        format!("{ns}/{name}"),
                    ))?;
                }
            }
        }
        Ok(action)
    }
}

impl Reconciler<WorkloadDeployment> for DeploymentReconciler {
    type Error = Error;

    async fn reconcile(&self, d: Arc<WorkloadDeployment>, _ctx: &Context) -> Result<Action, Error> {
        let Some(ns) = d.namespace() else {
            return Ok(Action::Done);
        };
        let name = d.name_any();
        let uid = d.uid().unwrap_or_default();
        if d.metadata.deletion_timestamp.is_some() {
            // Replica sets and Workloads go through garbage collection (owner references).
            self.rollouts.lock().expect("rollouts lock").remove(&uid);
            return Ok(Action::Done);
        }
        let now = Time(Timestamp::now());
        let generation = d.metadata.generation.unwrap_or(0);
        let before = d.status.clone().unwrap_or_default();
        let mut status = before.clone();
        status.observed_generation = Some(generation);
        status.selector = Some(selector_for(&name));
        let set = |status: &mut WorkloadDeploymentStatus, c: Condition| {
            condition::set(
                &mut status.conditions,
                c.with_observed_generation(generation),
                &now,
            );
        };
        let not_ready = |status: &mut WorkloadDeploymentStatus, message: String| {
            condition::set(
                &mut status.conditions,
                cond(ct::READY, ConditionStatus::Unknown, reasons::RECONCILE, message)
                    .with_observed_generation(generation),
                &now,
            );
        };

        // Artifact.
        let template = match resolve_template(&d, |a| {
            self.artifacts.get_namespaced(&ns, a).map(|a| (*a).clone())
        }) {
            Ok(t) => {
                let n = d.spec.artifacts.as_ref().map_or(0, Vec::len);
                set(
                    &mut status,
                    cond(
                        ct::ARTIFACT,
                        ConditionStatus::True,
                        reasons::AVAILABLE,
                        format!("{n} artifacts resolved"),
                    ),
                );
                t
            }
            Err(Unresolved::Pending(message)) => {
                set(
                    &mut status,
                    cond(
                        ct::ARTIFACT,
                        ConditionStatus::Unknown,
                        reasons::RECONCILE,
                        message.clone(),
                    ),
                );
                not_ready(&mut status, message);
                // The Artifact's creation or publication enqueues this deployment (Artifacts are watched).
                return self
                    .finish(
                        &ns,
                        &name,
                        &before,
                        &status,
                        Action::requeue_after(RESYNC_INTERVAL),
                    )
                    .await;
            }
            Err(Unresolved::Invalid(message)) => {
                set(
                    &mut status,
                    cond(
                        ct::ARTIFACT,
                        ConditionStatus::False,
                        "InvalidSpec",
                        message.clone(),
                    ),
                );
                not_ready(&mut status, message);
                return self.finish(&ns, &name, &before, &status, Action::Done).await;
            }
        };
        let hash = template.hash();
        let replicas = d.spec.replicas().max(0);
        let strategy =
            match rollout::strategy(&d.spec.deploy_policy(), d.spec.rolling_update.as_ref(), replicas) {
                Ok(s) => s,
                Err(message) => {
                    set(
                        &mut status,
                        cond(ct::DEPLOY, ConditionStatus::False, "InvalidSpec", message.clone()),
                    );
                    not_ready(&mut status, message);
                    return self.finish(&ns, &name, &before, &status, Action::Done).await;
                }
            };

        // The deployment's replica sets, as the rollout sees them.
        let owned: Vec<Arc<WorkloadReplicaSet>> = self
            .sets
            .by_index(REPLICA_SET_OWNER_INDEX, &format!("{ns}/{name}"))
            .into_iter()
            .filter(|s| controller_of(&s.metadata, "WorkloadDeployment").is_some_and(|(_, u)| u == uid))
            .collect();
        let preferred = before.current_replica_set.as_ref().map(|r| r.name.clone());
        let mut current_name: Option<String> = None;
        let mut candidates: Vec<&Arc<WorkloadReplicaSet>> = owned
            .iter()
            .filter(|s| s.metadata.deletion_timestamp.is_none() && s.spec.template.hash() == hash)
            .collect();
        candidates.sort_by_key(|s| {
            (
                Some(s.name_any()) != preferred,
                s.metadata.creation_timestamp.as_ref().map(|t| t.0),
                s.name_any(),
            )
        });
        if let Some(s) = candidates.first() {
            current_name = Some(s.name_any());
        }
        let mut views = Vec::with_capacity(owned.len());
        let mut why_new_not_ready: Option<(String, bool)> = None;
        for s in &owned {
            let set_name = s.name_any();
            let workloads = owned_workloads(&self.workloads, &ns, &set_name, &s.uid().unwrap_or_default());
            let live: Vec<&Arc<Workload>> = workloads
                .iter()
                .filter(|w| w.metadata.deletion_timestamp.is_none())
                .collect();
            let ready = live.iter().filter(|w| w.is_ready()).count();
            let is_current = current_name.as_deref() == Some(set_name.as_str());
            if is_current {
                // A False condition on a new replica says why the rollout does not progress.
                let mut pending: Vec<(String, bool)> = live
                    .iter()
                    .filter(|w| !w.is_ready())
                    .map(|w| {
                        let failed = w.status.as_ref().is_some_and(|st| {
                            st.conditions
                                .iter()
                                .any(|c| c.status == ConditionStatus::False && c.type_ != ct::READY)
                        });
                        (why_not_ready(w), failed)
                    })
                    .collect();
                // A failing replica explains more than one that is merely starting.
                pending.sort_by_key(|(_, failed)| !failed);
                why_new_not_ready = pending.into_iter().next();
            }
            let deleting = s.metadata.deletion_timestamp.is_some();
            views.push(SetView {
                name: set_name.clone(),
                // A duplicate of the current template, or a set being deleted, is rolled away like an old one.
                hash: if is_current {
                    hash.clone()
                } else {
                    format!("old:{set_name}")
                },
                replicas: if deleting { 0 } else { s.spec.replicas().max(0) },
                live: i32::try_from(live.len()).unwrap_or(i32::MAX),
                ready: i32::try_from(ready).unwrap_or(i32::MAX),
                total: i32::try_from(workloads.len()).unwrap_or(i32::MAX),
                created: s.metadata.creation_timestamp.as_ref().map(|t| t.0),
            });
        }
        let decided = rollout::plan(replicas, &hash, strategy, &views);

        // Carry it out.
        let sets_api: Api<WorkloadReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        let new_name = replica_set_name(&name, &hash);
        let mut conflict = false;
        // An API failure is written to `Deploy` (so `kubectl get` says why), then retried with back-off.
        let mut failure: Option<ApiError> = None;
        let mut created = false;
        if let Some(initial) = decided.create_new {
            let rs = Self::new_set(&d, &ns, &hash, initial, template.clone());
            match sets_api.create(&PostParams::default(), &rs).await {
                Ok(_) => {
                    tracing::info!(deployment = %format!("{ns}/{name}"), replica_set = %new_name, replicas = initial, "created replica set");
                    created = true;
                    current_name = Some(new_name.clone());
                }
                // Created by an earlier pass the cache does not show yet, or an old set of that name is
                // still being deleted: the watch brings us back.
                Err(kube::Error::Api(e)) if e.code == 409 => conflict = true,
                Err(e) => {
                    failure = Some(api_err("creating WorkloadReplicaSet", format!("{ns}/{new_name}"))(e))
                }
            }
        }
        for (set_name, n) in &decided.scale {
            if failure.is_some() {
                break;
            }
            let Some(s) = owned.iter().find(|s| &s.name_any() == set_name) else {
                continue;
            };
            if s.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let patch = serde_json::json!({
                "metadata": { "resourceVersion": s.resource_version() },
                "spec": { "replicas": n },
            });
            match sets_api
                .patch(set_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(deployment = %format!("{ns}/{name}"), replica_set = %set_name, replicas = n, "scaled replica set")
                }
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => conflict = true,
                Err(e) => {
                    failure = Some(api_err("scaling WorkloadReplicaSet", format!("{ns}/{set_name}"))(
                        e,
                    ));
                    break;
                }
            }
        }
        for set_name in &decided.delete {
            if failure.is_some() {
                break;
            }
            let Some(s) = owned.iter().find(|s| &s.name_any() == set_name) else {
                continue;
            };
            if s.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: s.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::background()
            };
            match sets_api.delete(set_name, &params).await {
                Ok(_) => {
                    tracing::info!(deployment = %format!("{ns}/{name}"), replica_set = %set_name, "deleted old replica set")
                }
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => {
                    failure = Some(api_err("deleting WorkloadReplicaSet", format!("{ns}/{set_name}"))(e));
                    break;
                }
            }
        }

        // Status.
        let sum = |f: fn(&SetView) -> i32| views.iter().map(f).sum::<i32>();
        let (live, ready) = (sum(|v| v.live), sum(|v| v.ready));
        status.replicas = Some(ReplicaCounts {
            expected: Some(replicas),
            current: Some(live),
            ready: Some(ready),
            unavailable: Some(live - ready),
        });
        status.current_replicas = Some(live);
        let current_view = current_name
            .as_ref()
            .and_then(|n| views.iter().find(|v| &v.name == n));
        status.updated_replicas = Some(current_view.map_or(0, |v| v.live));
        status.current_replica_set = current_name.clone().map(LocalObjectReference::new);
        let mut old: Vec<&SetView> = views
            .iter()
            .filter(|v| Some(&v.name) != current_name.as_ref() && (v.live > 0 || v.replicas > 0))
            .collect();
        old.sort_by_key(|v| std::cmp::Reverse(v.created));
        status.previous_replica_set = old.first().map(|v| LocalObjectReference::new(v.name.clone()));

        match &current_name {
            Some(n) => set(
                &mut status,
                cond(
                    ct::SYNC,
                    ConditionStatus::True,
                    reasons::AVAILABLE,
                    format!("replica set {n} has the current template"),
                ),
            ),
            None => set(
                &mut status,
                cond(
                    ct::SYNC,
                    ConditionStatus::False,
                    reasons::RECONCILE,
                    match decided.phase {
                        Phase::WaitingForOldReplicas => format!(
                            "the template changed; replica set {new_name} is created once the old replicas are gone"
                        ),
                        _ => format!("the template changed; creating replica set {new_name}"),
                    },
                ),
            ),
        }
        let updated = current_view.map_or(0, |v| v.live);
        let new_ready = current_view.map_or(0, |v| v.ready);
        let old_text = if old.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = old.iter().map(|v| format!("{} ({})", v.name, v.live)).collect();
            format!("; old replica sets: {}", list.join(", "))
        };
        let deploy = match decided.phase {
            Phase::Complete => cond(
                ct::DEPLOY,
                ConditionStatus::True,
                reasons::AVAILABLE,
                format!(
                    "replica set {} is rolled out",
                    current_name.clone().unwrap_or_default()
                ),
            ),
            Phase::WaitingForOldReplicas => cond(
                ct::DEPLOY,
                ConditionStatus::Unknown,
                reasons::RECONCILE,
                format!(
                    "Recreate: waiting for {} old Workloads to be removed",
                    views
                        .iter()
                        .filter(|v| v.hash != hash)
                        .map(|v| v.total)
                        .sum::<i32>()
                ),
            ),
            Phase::Progressing => match &why_new_not_ready {
                Some((why, true)) => cond(
                    ct::DEPLOY,
                    ConditionStatus::False,
                    REPLICA_FAILURE,
                    format!(
                        "rollout of {} stalled: {why}; {} old replicas keep serving",
                        current_name.clone().unwrap_or_default(),
                        ready - new_ready
                    ),
                ),
                _ => cond(
                    ct::DEPLOY,
                    ConditionStatus::Unknown,
                    reasons::RECONCILE,
                    format!(
                        "rolling out {}: {updated} updated, {new_ready} ready of {replicas}{old_text}",
                        current_name.clone().unwrap_or_else(|| new_name.clone())
                    ),
                ),
            },
        };
        let deploy = match &failure {
            Some(e) => cond(ct::DEPLOY, ConditionStatus::False, "ApiError", e.to_string()),
            None => deploy,
        };
        let deploy_failed = deploy.status == ConditionStatus::False && failure.is_none();
        let complete = decided.phase == Phase::Complete;
        set(&mut status, deploy);
        set(
            &mut status,
            if current_view.is_some_and(|v| v.replicas == replicas && v.available() == replicas) {
                cond(
                    ct::SCALE,
                    ConditionStatus::True,
                    reasons::AVAILABLE,
                    format!("{replicas}/{replicas} replicas ready"),
                )
            } else {
                cond(
                    ct::SCALE,
                    ConditionStatus::Unknown,
                    reasons::RECONCILE,
                    format!("{new_ready}/{replicas} replicas of the current template ready"),
                )
            },
        );
        let first_not_true = [ct::ARTIFACT, ct::SYNC, ct::DEPLOY, ct::SCALE]
            .into_iter()
            .find(|t| !condition::is_true(&status.conditions, t));
        match first_not_true {
            None => set(
                &mut status,
                cond(
                    ct::READY,
                    ConditionStatus::True,
                    reasons::AVAILABLE,
                    format!("{ready}/{replicas} replicas ready"),
                ),
            ),
            Some(t) => {
                let message = condition::find(&status.conditions, t)
                    .and_then(|c| c.message.clone())
                    .unwrap_or_default();
                not_ready(&mut status, format!("{t}: {message}"));
            }
        }

        // Rollout metrics: a rollout starts when the template changes (or the first set is created),
        // completes when the phase says so, and fails once when a new replica fails. Deployments met for
        // the first time after a restart are taken as they are, without counting.
        {
            let mut rollouts = self.rollouts.lock().expect("rollouts lock");
            let r = rollouts.entry(uid.clone()).or_insert_with(|| {
                if created {
                    self.metrics.rollout("started");
                }
                Rollout {
                    hash: hash.clone(),
                    done: !created && complete,
                    failed: false,
                }
            });
            if r.hash != hash {
                self.metrics.rollout("started");
                *r = Rollout {
                    hash: hash.clone(),
                    done: false,
                    failed: false,
                };
            }
            if !r.done && complete {
                self.metrics.rollout("completed");
                r.done = true;
            }
            if !r.done && deploy_failed && !r.failed {
                self.metrics.rollout("failed");
                r.failed = true;
            }
        }

        let action = if conflict {
            Action::requeue()
        } else if complete {
            Action::requeue_after(RESYNC_INTERVAL)
        } else {
            // Workload and replica set changes bring us back sooner; this is the safety net.
            Action::requeue_after(Duration::from_secs(10))
        };
        let action = self.finish(&ns, &name, &before, &status, action).await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(action),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_crds::deployment::WorkloadDeploymentArtifact;
    use weft_crds::workload::{KubernetesServiceRef, KubernetesSpec, WorkloadComponent};
    use weft_crds::{ArtifactSpec, ArtifactStatus};

    fn deployment(images: &[&str], artifacts: &[(&str, &str)]) -> WorkloadDeployment {
        let mut d = WorkloadDeployment::new("hello", Default::default());
        d.spec.template.spec.components = Some(
            images
                .iter()
                .enumerate()
                .map(|(i, image)| WorkloadComponent {
                    name: format!("c{i}"),
                    image: image.to_string(),
                    ..Default::default()
                })
                .collect(),
        );
        d.spec.artifacts = Some(
            artifacts
                .iter()
                .map(|(name, from)| WorkloadDeploymentArtifact {
                    name: name.to_string(),
                    artifact_from: LocalObjectReference::new(*from),
                })
                .collect(),
        );
        d
    }

    fn published(name: &str, url: &str) -> Artifact {
        let mut a = Artifact::new(
            name,
            ArtifactSpec {
                image: url.into(),
                image_pull_secret: None,
            },
        );
        a.status = Some(ArtifactStatus {
            conditions: vec![Condition::new(ct::PUBLISHED, ConditionStatus::True)],
            observed_generation: Some(1),
            artifact_url: Some(url.into()),
        });
        a
    }

    #[test]
    fn artifact_images_resolve_to_the_published_url_and_kubernetes_is_copied_in() {
        let mut d = deployment(&["artifact://app", "ghcr.io/x/y:1"], &[("app", "app-artifact")]);
        d.spec.kubernetes = Some(KubernetesSpec {
            service: Some(KubernetesServiceRef { name: "svc".into() }),
        });
        let t = resolve_template(&d, |n| (n == "app-artifact").then(|| published(n, "reg/app:2"))).unwrap();
        let images: Vec<&str> = t
            .spec
            .components
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.image.as_str())
            .collect();
        assert_eq!(images, vec!["reg/app:2", "ghcr.io/x/y:1"]);
        assert_eq!(t.spec.kubernetes.unwrap().service.unwrap().name, "svc");
        // The hash follows the artifact: a new URL is a new template.
        let t2 = resolve_template(&d, |n| Some(published(n, "reg/app:3"))).unwrap();
        assert_ne!(
            t2.hash(),
            resolve_template(&d, |n| Some(published(n, "reg/app:2")))
                .unwrap()
                .hash()
        );
    }

    #[test]
    fn missing_unpublished_and_unlisted_artifacts_are_told_apart() {
        let d = deployment(&["artifact://app"], &[("app", "app-artifact")]);
        assert!(
            matches!(resolve_template(&d, |_| None), Err(Unresolved::Pending(m)) if m.contains("not found"))
        );
        let mut unpublished = published("app-artifact", "x");
        unpublished.status = None;
        assert!(matches!(
            resolve_template(&d, |_| Some(unpublished.clone())),
            Err(Unresolved::Pending(m)) if m.contains("not published")
        ));
        let d = deployment(&["artifact://other"], &[("app", "app-artifact")]);
        assert!(matches!(
            resolve_template(&d, |n| Some(published(n, "x"))),
            Err(Unresolved::Invalid(m)) if m.contains("\"other\"")
        ));
    }

    #[test]
    fn replica_set_names_are_the_deployment_and_the_hash() {
        assert_eq!(replica_set_name("hello", "5d7f9c"), "hello-5d7f9c");
    }
}
