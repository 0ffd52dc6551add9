//! The WorkloadReplicaSet controller (`workload-replicaset`, as wasmCloud names it): keeps
//! `spec.replicas` Workloads of the set's template, each with a controller owner reference to the set,
//! the template hash in the `workload-replica-set-generation` annotation (wasmCloud's, so Workloads a
//! wasmCloud operator created are adopted as they are) and in the `weft.dev/template-hash` label.
//!
//! Decisions are in [`plan`]; this module reads the shared caches, carries the plan out and writes
//! `status.replicas` and the `ScaleUp`, `ScaleDown` and `Ready` conditions. Creations and deletions the
//! cache does not show yet are tracked as [`Expectations`], so a reconcile that runs ahead of the watch
//! never creates or deletes twice.

pub mod plan;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as MetricsRegistry;
use weft_crds::condition::{self, Condition, ConditionStatus};
use weft_crds::names::{annotations, condition_types as ct, labels, reasons};
use weft_crds::replica_set::ReplicaCounts;
use weft_crds::{Workload, WorkloadReplicaSet, WorkloadReplicaSetStatus};
use weft_framework::{Action, Cache, Context, Reconciler};

use crate::error::{ApiError, api_err};
use crate::expectations::Expectations;
use plan::{PlanInput, Replica};

/// The controller's name (wasmCloud's).
pub const NAME: &str = "workload-replicaset";
/// The Workload cache index by controlling replica set (`namespace/name`).
pub const WORKLOAD_OWNER_INDEX: &str = "replicaSet";
/// The WorkloadReplicaSet cache index by controlling deployment (`namespace/name`).
pub const REPLICA_SET_OWNER_INDEX: &str = "deployment";
/// How long a Workload may stay out of sync before it is replaced (wasmCloud's grace period).
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(60);
/// A periodic look at every set, in case an event was missed.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(300);

/// The name and UID of the controlling owner of `kind` (in Weft's API group) in `meta`.
pub fn controller_of(meta: &ObjectMeta, kind: &str) -> Option<(String, String)> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| {
            r.controller == Some(true)
                && r.kind == kind
                && r.api_version.split('/').next() == Some(weft_crds::names::GROUP)
        })
        .map(|r| (r.name.clone(), r.uid.clone()))
}

/// Index values of a Workload: its controlling replica set.
pub fn workload_owner_index(w: &Workload) -> Vec<String> {
    let ns = w.metadata.namespace.as_deref().unwrap_or_default();
    controller_of(&w.metadata, "WorkloadReplicaSet")
        .map(|(name, _)| format!("{ns}/{name}"))
        .into_iter()
        .collect()
}

/// Index values of a replica set: its controlling deployment.
pub fn replica_set_owner_index(rs: &WorkloadReplicaSet) -> Vec<String> {
    let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
    controller_of(&rs.metadata, "WorkloadDeployment")
        .map(|(name, _)| format!("{ns}/{name}"))
        .into_iter()
        .collect()
}

/// The Workloads `owner` (a replica set, by UID) controls, from the cache.
pub fn owned_workloads(workloads: &Cache<Workload>, ns: &str, name: &str, uid: &str) -> Vec<Arc<Workload>> {
    workloads
        .by_index(WORKLOAD_OWNER_INDEX, &format!("{ns}/{name}"))
        .into_iter()
        .filter(|w| controller_of(&w.metadata, "WorkloadReplicaSet").is_some_and(|(_, u)| u == uid))
        .collect()
}

/// The plan's view of a Workload.
pub fn replica_of(w: &Workload) -> Replica {
    let status = w.status.as_ref();
    let unsynced_since = status
        .and_then(|s| condition::find(&s.conditions, ct::SYNC))
        .filter(|c| !c.is_true())
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0);
    Replica {
        name: w.name_any(),
        uid: w.uid().unwrap_or_default(),
        generation: w
            .annotations()
            .get(annotations::WORKLOAD_REPLICA_SET_GENERATION)
            .cloned(),
        deleting: w.metadata.deletion_timestamp.is_some(),
        ready: w.is_ready(),
        host_id: status.and_then(|s| s.host_id.clone()).filter(|h| !h.is_empty()),
        created: w.metadata.creation_timestamp.as_ref().map(|t| t.0),
        unsynced_since,
    }
}

/// Why a not-Ready Workload is not Ready: its first False condition (`Config`, `HostSelection`,
/// `Placement`, `Sync`), or the first that is not True yet.
pub fn why_not_ready(w: &Workload) -> String {
    let conditions = w.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let steps = [ct::CONFIG, ct::HOST_SELECTION, ct::PLACEMENT, ct::SYNC];
    let failed = steps
        .iter()
        .find_map(|t| condition::find(conditions, t).filter(|c| c.status == ConditionStatus::False));
    match failed {
        Some(c) => format!(
            "{}: {} {}: {}",
            w.name_any(),
            c.type_,
            c.reason.as_deref().unwrap_or("False"),
            c.message.as_deref().unwrap_or_default()
        ),
        None => {
            let pending = steps
                .iter()
                .find(|t| !condition::is_true(conditions, t))
                .copied()
                .unwrap_or(ct::READY);
            format!("{}: waiting for {pending}", w.name_any())
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    action: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// The replica set controller's metrics.
#[derive(Debug, Clone)]
pub struct ReplicaSetMetrics {
    changes: Family<ChangeLabels, Counter>,
    replicas: Family<StateLabels, Gauge>,
    by_set: Arc<Mutex<HashMap<String, ReplicaCounts>>>,
}

impl ReplicaSetMetrics {
    /// Registers the families in `registry`.
    pub fn register(registry: &mut MetricsRegistry) -> Self {
        let m = Self {
            changes: Family::default(),
            replicas: Family::default(),
            by_set: Arc::default(),
        };
        registry.register(
            "weft_replicaset_workload_changes",
            "Workloads created and deleted by replica sets, by action and reason",
            m.changes.clone(),
        );
        registry.register(
            "weft_replicaset_replicas",
            "Workload replicas of all replica sets, by state (desired, current, ready, unavailable)",
            m.replicas.clone(),
        );
        m
    }

    fn changed(&self, action: &'static str, reason: &'static str, n: usize) {
        self.changes
            .get_or_create(&ChangeLabels { action, reason })
            .inc_by(n as u64);
    }

    fn set(&self, key: &str, counts: Option<ReplicaCounts>) {
        let mut by_set = self.by_set.lock().expect("metrics lock");
        match counts {
            Some(c) => {
                by_set.insert(key.to_string(), c);
            }
            None => {
                by_set.remove(key);
            }
        }
        let sum = |f: fn(&ReplicaCounts) -> Option<i32>| -> i64 {
            by_set.values().map(|c| i64::from(f(c).unwrap_or(0))).sum()
        };
        for (state, value) in [
            ("desired", sum(|c| c.expected)),
            ("current", sum(|c| c.current)),
            ("ready", sum(|c| c.ready)),
            ("unavailable", sum(|c| c.unavailable)),
        ] {
            self.replicas.get_or_create(&StateLabels { state }).set(value);
        }
    }
}

/// Errors of the replica set reconcile: a failed API call.
pub type Error = ApiError;

/// The WorkloadReplicaSet reconciler.
pub struct ReplicaSetReconciler {
    client: Client,
    sets: Cache<WorkloadReplicaSet>,
    workloads: Cache<Workload>,
    grace: Duration,
    expectations: Expectations,
    metrics: ReplicaSetMetrics,
}

impl ReplicaSetReconciler {
    /// A reconciler over the shared caches, replacing Workloads out of sync for longer than `grace`.
    pub fn new(
        client: Client,
        sets: Cache<WorkloadReplicaSet>,
        workloads: Cache<Workload>,
        grace: Duration,
        metrics: ReplicaSetMetrics,
    ) -> Self {
        Self {
            client,
            sets,
            workloads,
            grace,
            expectations: Expectations::default(),
            metrics,
        }
    }

    /// Ready replicas per host of `rs` and its sibling sets (the same controlling deployment).
    fn related_per_host(&self, rs: &WorkloadReplicaSet, ns: &str) -> HashMap<String, usize> {
        let siblings: Vec<Arc<WorkloadReplicaSet>> = match controller_of(&rs.metadata, "WorkloadDeployment") {
            Some((deployment, _)) => self
                .sets
                .by_index(REPLICA_SET_OWNER_INDEX, &format!("{ns}/{deployment}")),
            None => Vec::new(),
        };
        let mut names: Vec<String> = siblings.iter().map(|s| s.name_any()).collect();
        names.push(rs.name_any());
        names.sort();
        names.dedup();
        let mut per_host = HashMap::new();
        for name in names {
            for w in self
                .workloads
                .by_index(WORKLOAD_OWNER_INDEX, &format!("{ns}/{name}"))
            {
                let r = replica_of(&w);
                if let (false, true, Some(host)) = (r.deleting, r.ready, r.host_id) {
                    *per_host.entry(host).or_insert(0) += 1;
                }
            }
        }
        per_host
    }

    /// The Workload to create for `rs`.
    fn new_workload(rs: &WorkloadReplicaSet, ns: &str, hash: &str) -> Workload {
        let template = &rs.spec.template;
        let mut labels = template.labels.clone().unwrap_or_default();
        labels.insert(labels::TEMPLATE_HASH.to_string(), hash.to_string());
        if let Some(deployment) = rs.labels().get(labels::WORKLOAD_DEPLOYMENT) {
            labels.insert(labels::WORKLOAD_DEPLOYMENT.to_string(), deployment.clone());
        }
        let mut annotations = template.annotations.clone().unwrap_or_default();
        annotations.insert(
            annotations::WORKLOAD_REPLICA_SET_GENERATION.to_string(),
            hash.to_string(),
        );
        let owner = OwnerReference {
            api_version: WorkloadReplicaSet::api_version(&()).into_owned(),
            kind: WorkloadReplicaSet::kind(&()).into_owned(),
            name: rs.name_any(),
            uid: rs.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        Workload {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", rs.name_any())),
                namespace: Some(ns.to_string()),
                labels: Some(labels),
                annotations: Some(annotations),
                owner_references: Some(vec![owner]),
                ..Default::default()
            },
            spec: template.spec.clone(),
            status: None,
        }
    }

    async fn write_status(
        &self,
        ns: &str,
        name: &str,
        status: &WorkloadReplicaSetStatus,
    ) -> Result<(), Error> {
        let patch = serde_json::json!({ "status": {
            "conditions": status.conditions,
            "replicas": status.replicas,
        }});
        let api: Api<WorkloadReplicaSet> = Api::namespaced(self.client.clone(), ns);
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            // Deleted meanwhile: nothing to report on.
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            r => r
                .map(|_| ())
                .map_err(|e| api_err("writing the status of WorkloadReplicaSet", format!("{ns}/{name}"))(e)),
        }
    }
}

fn cond(type_: &str, status: ConditionStatus, reason: &str, message: impl Into<String>) -> Condition {
    Condition::new(type_, status)
        .with_reason(reason)
        .with_message(message.into())
}

impl Reconciler<WorkloadReplicaSet> for ReplicaSetReconciler {
    type Error = Error;

    async fn reconcile(&self, rs: Arc<WorkloadReplicaSet>, _ctx: &Context) -> Result<Action, Error> {
        let Some(ns) = rs.namespace() else {
            return Ok(Action::Done);
        };
        let name = rs.name_any();
        let key = format!("{ns}/{name}");
        if rs.metadata.deletion_timestamp.is_some() {
            // Its Workloads go through garbage collection (owner references).
            self.expectations.forget(&key);
            self.metrics.set(&key, None);
            return Ok(Action::Done);
        }
        let uid = rs.uid().unwrap_or_default();
        let hash = rs.spec.template.hash();
        let owned = owned_workloads(&self.workloads, &ns, &name, &uid);
        let in_flight = self.expectations.settle(
            &key,
            std::time::Instant::now(),
            |n| self.workloads.get_namespaced(&ns, n).is_some(),
            |u| {
                owned
                    .iter()
                    .any(|w| w.uid().as_deref() == Some(u) && w.metadata.deletion_timestamp.is_none())
            },
        );
        let now = Timestamp::now();
        let mut replicas: Vec<Replica> = owned.iter().map(|w| replica_of(w)).collect();
        for r in &mut replicas {
            if in_flight.deletes.contains(&r.uid) {
                r.deleting = true;
            }
        }
        // Created but not cached yet: count them as new, not-Ready replicas of the current template.
        replicas.extend(in_flight.creates.iter().map(|n| Replica {
            name: n.clone(),
            uid: String::new(),
            generation: Some(hash.clone()),
            deleting: false,
            ready: false,
            host_id: None,
            created: Some(now),
            unsynced_since: None,
        }));
        let related = self.related_per_host(&rs, &ns);
        let desired = rs.spec.replicas();
        let decided = plan::plan(&PlanInput {
            replicas: desired,
            hash: &hash,
            workloads: &replicas,
            related_per_host: &related,
            now,
            grace: self.grace,
        });

        let api: Api<Workload> = Api::namespaced(self.client.clone(), &ns);
        let mut by_reason: HashMap<&'static str, usize> = HashMap::new();
        // An API failure is written to the conditions (so `kubectl get` says why), then retried.
        let mut failure: Option<(&'static str, ApiError)> = None;
        for d in &decided.delete {
            tracing::info!(replica_set = %key, workload = %d.name, reason = d.reason.as_str(), "deleting Workload");
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(d.uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::background()
            };
            match api.delete(&d.name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => {
                    failure = Some((
                        ct::SCALE_DOWN,
                        api_err("deleting Workload", format!("{ns}/{}", d.name))(e),
                    ));
                    break;
                }
            }
            self.expectations.deleted(&key, &d.uid, std::time::Instant::now());
            *by_reason.entry(d.reason.as_str()).or_insert(0) += 1;
        }
        for (reason, n) in by_reason {
            self.metrics.changed("delete", reason, n);
        }
        let mut created_count = 0;
        // The Workload is built only when something is created: most passes create nothing. Nothing
        // is created after a failed deletion.
        if decided.create > 0 && failure.is_none() {
            let template = Self::new_workload(&rs, &ns, &hash);
            for _ in 0..decided.create {
                let created = match api.create(&PostParams::default(), &template).await {
                    Ok(w) => w,
                    Err(e) => {
                        failure = Some((ct::SCALE_UP, api_err("creating a Workload of", key.clone())(e)));
                        break;
                    }
                };
                created_count += 1;
                let created_name = created.name_any();
                tracing::info!(replica_set = %key, workload = %created_name, "created Workload");
                self.expectations
                    .created(&key, &created_name, std::time::Instant::now());
            }
        }
        if created_count > 0 {
            self.metrics.changed("create", "scale-up", created_count);
        }

        // Status: counts as the caches show them, conditions for what is still under way.
        let before = rs.status.clone().unwrap_or_default();
        let mut status = before.clone();
        let t = Time(now);
        let generation = rs.metadata.generation.unwrap_or(0);
        let mut set = |c: Condition| {
            condition::set(&mut status.conditions, c.with_observed_generation(generation), &t);
        };
        let creating = decided.create + in_flight.creates.len();
        let deleting = decided.delete.len() + in_flight.deletes.len();
        set(if creating == 0 {
            cond(
                ct::SCALE_UP,
                ConditionStatus::True,
                reasons::AVAILABLE,
                "no replicas missing",
            )
        } else {
            cond(
                ct::SCALE_UP,
                ConditionStatus::Unknown,
                reasons::RECONCILE,
                format!("creating {creating} replicas"),
            )
        });
        set(if deleting == 0 {
            cond(
                ct::SCALE_DOWN,
                ConditionStatus::True,
                reasons::AVAILABLE,
                "no replicas in excess",
            )
        } else {
            cond(
                ct::SCALE_DOWN,
                ConditionStatus::Unknown,
                reasons::RECONCILE,
                format!("removing {deleting} replicas"),
            )
        });
        if let Some((type_, e)) = &failure {
            set(cond(type_, ConditionStatus::False, "ApiError", e.to_string()));
        }
        let counts = decided.counts.clone();
        let (current, ready) = (counts.current.unwrap_or(0), counts.ready.unwrap_or(0));
        let all_current = replicas
            .iter()
            .filter(|r| !r.deleting)
            .all(|r| r.generation.as_deref().is_none_or(|g| g == hash));
        set(if ready == desired && current == desired && all_current {
            cond(
                ct::READY,
                ConditionStatus::True,
                reasons::AVAILABLE,
                format!("{ready}/{desired} replicas ready"),
            )
        } else {
            let why = owned
                .iter()
                .filter(|w| w.metadata.deletion_timestamp.is_none() && !w.is_ready())
                .map(|w| why_not_ready(w))
                .next();
            let mut message = format!("{ready}/{desired} replicas ready");
            if current != desired || !all_current {
                message.push_str(&format!(", {current} exist"));
            }
            if let Some(why) = why {
                message.push_str("; ");
                message.push_str(&why);
            }
            cond(ct::READY, ConditionStatus::False, reasons::RECONCILE, message)
        });
        status.replicas = Some(counts.clone());
        if status != before {
            self.write_status(&ns, &name, &status).await?;
        }
        self.metrics.set(&key, Some(counts));
        if let Some((_, e)) = failure {
            return Err(e);
        }

        let next = match decided.recheck_after {
            Some(d) => d + Duration::from_secs(1),
            None if creating + deleting > 0 => Duration::from_secs(5),
            None => RESYNC_INTERVAL,
        };
        Ok(Action::requeue_after(next.min(RESYNC_INTERVAL)))
    }
}
