//! The Workload controller (`workload-replica`, as wasmCloud names it): each Workload's configuration is
//! checked, a host is chosen by the scheduling pipeline of `plugins/` (the only place placement is
//! decided), the workload is started there over NATS (`workload.start`), its state is followed
//! (`workload.status`), and it is stopped (`workload.stop`) by the workload finalizer.
//!
//! Conditions, in order: `Config` (every named ConfigMap and Secret exists), `HostSelection` (the
//! scheduler's decision, or its "0/N hosts …" explanation), `Placement` (the host accepted the start,
//! or its error text), `Sync` (the host reports it running), `Ready` (Placement and Sync). The pure
//! pieces are in [`request`] and [`snapshot`].
//!
//! Beyond wasmCloud: a host's ERROR is a False `Placement` with the host's message and an Event, and
//! the next attempt avoids that host; a Workload whose Host went away (handed back by the Host
//! controller) or that its host no longer knows is placed again, bare Workloads included; a deletion
//! never hangs on an unreachable host (see [`WorkloadReconciler::finalize`]).

pub mod request;
pub mod snapshot;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as MetricsRegistry;
use tokio::time::Instant;
use weft_crds::condition::{self, Condition, ConditionStatus};
use weft_crds::names::{condition_types as ct, finalizers, reasons};
use weft_crds::{Host, Workload, WorkloadStatus};
use weft_framework::events::EventRecorder;
use weft_framework::{Action, Cache, Context, ReconcileError, Reconciler, finalizer};
use weft_host_api::{ClientError, HostClient, RequestFailures, WorkloadState};
use weft_scheduler_api::{Scheduler, SnapshotUpdate};

use crate::error::{ApiError, api_err};
use request::{ConfigRef, Identity, ResolvedConfig};

/// The controller's name (wasmCloud's).
pub const NAME: &str = "workload-replica";
/// The Workload cache index by the ConfigMaps and Secrets a Workload names (`ns/ConfigMap/name`).
pub const CONFIG_REF_INDEX: &str = "configRefs";
/// How often a Ready Workload's state is checked with its host.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(30);
/// How soon an unanswered status request of a running workload is tried again.
pub const STATUS_RETRY: Duration = Duration::from_secs(2);
/// Failed stop attempts after which a deletion goes ahead anyway (with a Warning Event).
pub const STOP_ATTEMPTS: u32 = 5;
/// How long a deleted Workload keeps serving before it is stopped, by default: routes (the gateway,
/// EndpointSlices, a test's client) drop it on its deletion timestamp, so requests already sent to it
/// are answered instead of hitting a stopped workload.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(1);

/// The reason on conditions the host's answer decided.
pub const HOST_ERROR: &str = "HostError";
/// The reason on conditions when the host did not answer.
pub const HOST_UNREACHABLE: &str = "HostUnreachable";
/// The reason on `Healthy` False: most recent requests failed in the component.
pub const REQUESTS_FAILING: &str = "RequestsFailing";

/// Index values of the ConfigMaps and Secrets a Workload names.
pub fn config_ref_index(w: &Workload) -> Vec<String> {
    let ns = w.metadata.namespace.clone().unwrap_or_default();
    request::config_refs(&w.spec)
        .into_iter()
        .map(|r| match r {
            ConfigRef::ConfigMap(n) => format!("{ns}/ConfigMap/{n}"),
            ConfigRef::Secret(n) => format!("{ns}/Secret/{n}"),
        })
        .collect()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlacementLabels {
    policy: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    command: &'static str,
    result: &'static str,
}

/// The Workload controller's metrics.
#[derive(Debug, Clone)]
pub struct WorkloadMetrics {
    placements: Family<PlacementLabels, Counter>,
    scheduling: Histogram,
    requests: Family<RequestLabels, Histogram>,
}

impl WorkloadMetrics {
    /// Registers the families in `registry`.
    pub fn register(registry: &mut MetricsRegistry) -> Self {
        let m = Self {
            placements: Family::default(),
            scheduling: Histogram::new([0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5]),
            requests: Family::new_with_constructor(|| {
                Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0])
            }),
        };
        registry.register(
            "weft_workload_placements",
            "Scheduling decisions, by policy and result",
            m.placements.clone(),
        );
        registry.register(
            "weft_workload_scheduling_seconds",
            "Time one scheduling decision took",
            m.scheduling.clone(),
        );
        registry.register(
            "weft_host_request_seconds",
            "NATS requests to hosts, by command and result",
            m.requests.clone(),
        );
        m
    }

    fn request(&self, command: &'static str, ok: bool, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                command,
                result: if ok { "ok" } else { "error" },
            })
            .observe(took.as_secs_f64());
    }
}

/// Errors of the Workload reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The host failed or did not answer; retried with back-off (the condition says why).
    #[error("{0}")]
    Host(String),
}

impl ReconcileError for Error {
    fn category(&self) -> &'static str {
        match self {
            Self::Api(e) => e.category(),
            Self::Host(_) => "host",
        }
    }
}

fn cond(type_: &str, status: ConditionStatus, reason: &str, message: impl Into<String>) -> Condition {
    Condition::new(type_, status)
        .with_reason(reason)
        .with_message(message.into())
}

/// The Workload reconciler.
pub struct WorkloadReconciler {
    client: Client,
    hosts: Cache<Host>,
    workloads: Cache<Workload>,
    scheduler: Mutex<Scheduler>,
    nats: HostClient,
    recorder: EventRecorder,
    metrics: WorkloadMetrics,
    /// Hosts a Workload's last start failed on (by UID), avoided by its next selection.
    avoid: Mutex<HashMap<String, HashSet<String>>>,
    drain_delay: Duration,
    /// When this replica first saw each deleted Workload (by UID): the drain delay counts from there,
    /// since deletion timestamps have whole seconds only.
    draining: Mutex<HashMap<String, Instant>>,
    /// Placements decided but maybe not in the cache yet (by UID), counted by the next decisions (the
    /// way kube-scheduler assumes a pod bound before the watch shows it).
    assumed: Mutex<HashMap<String, Assumed>>,
    /// The interfaces each host advertised in its heartbeat (by host ID).
    interfaces_of: InterfacesOf,
}

/// Where the reconciler learns the interfaces a host advertised (by host ID; empty when unknown).
pub type InterfacesOf = Arc<dyn Fn(&str) -> Vec<weft_scheduler_api::WitInterface> + Send + Sync>;

impl WorkloadReconciler {
    /// A reconciler choosing among `hosts` with `scheduler`, talking to hosts through `nats`.
    pub fn new(
        client: Client,
        hosts: Cache<Host>,
        workloads: Cache<Workload>,
        scheduler: Scheduler,
        nats: HostClient,
        recorder: EventRecorder,
        metrics: WorkloadMetrics,
    ) -> Self {
        Self {
            client,
            hosts,
            workloads,
            scheduler: Mutex::new(scheduler),
            nats,
            recorder,
            metrics,
            avoid: Mutex::default(),
            drain_delay: Duration::ZERO,
            draining: Mutex::default(),
            assumed: Mutex::default(),
            interfaces_of: Arc::new(|_| Vec::new()),
        }
    }

    /// Reads the interfaces hosts advertise from `f` (the Host controller's heartbeats), so the
    /// scheduler's interface filter sees what each host really provides. Without it only the implicit
    /// WASI interfaces count.
    pub fn with_host_interfaces(mut self, f: InterfacesOf) -> Self {
        self.interfaces_of = f;
        self
    }

    /// Keeps a deleted, placed Workload running for `delay` after its deletion timestamp before it is
    /// stopped on its host (default none; the operator uses [`DEFAULT_DRAIN_DELAY`]).
    pub fn with_drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    fn host_by_id(&self, id: &str) -> Option<Arc<Host>> {
        self.hosts.find(|h| h.spec.host_id == id).into_iter().next()
    }

    /// `name (id)` of a host for messages, or the ID alone when its Host is not cached.
    fn host_label(&self, id: &str) -> String {
        match self.host_by_id(id).and_then(|h| h.metadata.name.clone()) {
            Some(name) => format!("{name} ({id})"),
            None => id.to_string(),
        }
    }

    /// The placement this replica decided for `w`, if the cache may not show it yet.
    fn remembered_host(&self, w: &Workload) -> Option<Assumed> {
        let uid = w.uid()?;
        self.assumed.lock().expect("assumed lock").get(&uid).cloned()
    }

    /// Forgets the placement of `w` (it is being placed again).
    fn forget_placement(&self, w: &Workload) {
        if let Some(uid) = w.uid() {
            self.assumed.lock().expect("assumed lock").remove(&uid);
        }
    }

    /// The cached Workloads with the assumed placements filled in; assumptions the cache now shows (or
    /// whose Workload is gone) are dropped.
    fn with_assumed(&self, cached: &[Arc<Workload>]) -> Vec<Arc<Workload>> {
        let mut assumed = self.assumed.lock().expect("assumed lock");
        if assumed.is_empty() {
            return cached.to_vec();
        }
        let mut seen = HashSet::new();
        let out = cached
            .iter()
            .map(|w| {
                let uid = w.uid().unwrap_or_default();
                let Some(host) = assumed.get(&uid).map(|a| a.host_id.clone()) else {
                    return w.clone();
                };
                seen.insert(uid.clone());
                if w.status.as_ref().is_some_and(|s| s.host_id.is_some()) {
                    assumed.remove(&uid);
                    return w.clone();
                }
                let mut copy = (**w).clone();
                copy.status.get_or_insert_with(Default::default).host_id = Some(host.clone());
                Arc::new(copy)
            })
            .collect();
        assumed.retain(|uid, _| seen.contains(uid));
        out
    }

    /// Reads the ConfigMap or Secret `name` of `ns` (`None` if it does not exist).
    async fn get<K>(&self, ns: &str, name: &str, what: &ConfigRef) -> Result<Option<K>, Error>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        Ok(api
            .get_opt(name)
            .await
            .map_err(api_err("reading", what.to_string()))?)
    }

    /// Reads every ConfigMap and Secret the Workload names; the first missing one is the error.
    async fn resolve(&self, ns: &str, w: &Workload) -> Result<Result<ResolvedConfig, ConfigRef>, Error> {
        let mut out = ResolvedConfig::default();
        for r in request::config_refs(&w.spec) {
            match &r {
                ConfigRef::ConfigMap(name) => match self.get::<ConfigMap>(ns, name, &r).await? {
                    Some(cm) => {
                        out.config_maps.insert(name.clone(), cm.data.unwrap_or_default());
                    }
                    None => return Ok(Err(r)),
                },
                ConfigRef::Secret(name) => match self.get::<Secret>(ns, name, &r).await? {
                    Some(s) => {
                        let mut data: BTreeMap<String, String> = s.string_data.unwrap_or_default();
                        for (k, ByteString(v)) in s.data.unwrap_or_default() {
                            data.insert(k, String::from_utf8_lossy(&v).into_owned());
                        }
                        out.secrets
                            .insert(name.clone(), (s.type_.unwrap_or_default(), data));
                    }
                    None => return Ok(Err(r)),
                },
            }
        }
        Ok(Ok(out))
    }

    /// Chooses a host with the scheduler. `Err` is the message for `HostSelection`.
    fn select(&self, w: &Workload, ns: &str, name: &str) -> Result<(String, Option<String>, String), String> {
        let uid = w.uid().unwrap_or_default();
        let excluded = self
            .avoid
            .lock()
            .expect("avoid lock")
            .get(&uid)
            .cloned()
            .unwrap_or_default();
        let hosts = self.hosts.list();
        let cached = self.workloads.list();
        // Hold the scheduler for the whole decision: concurrent decisions see each other's placements
        // through the assumed ones below, not through a cache that may not show them yet.
        let mut scheduler = self.scheduler.lock().expect("scheduler lock");
        let workloads = self.with_assumed(&cached);
        let infos = snapshot::host_infos(
            hosts.iter().map(|h| h.as_ref()),
            workloads
                .iter()
                .map(|w| w.as_ref())
                .filter(|o| o.uid() != w.uid()),
            &HashSet::new(),
            &excluded,
            self.interfaces_of.as_ref(),
        );
        let request = request::schedule_request(ns, name, &w.spec, snapshot::replica_set_of(w));
        let started = Instant::now();
        let policy = request
            .scheduler_name
            .clone()
            .unwrap_or_else(|| scheduler.default_policy().to_string());
        // Bring the scheduler's snapshot in line with the caches: hosts that went, then every host's figures.
        let known: Vec<String> = scheduler
            .snapshot()
            .hosts()
            .iter()
            .map(|h| h.id.clone())
            .collect();
        let current: HashSet<&str> = infos.iter().map(|h| h.id.as_str()).collect();
        let mut updates: Vec<SnapshotUpdate> = known
            .into_iter()
            .filter(|id| !current.contains(id.as_str()))
            .map(|host_id| SnapshotUpdate::RemoveHost { host_id })
            .collect();
        updates.extend(infos.into_iter().map(SnapshotUpdate::UpsertHost));
        let result = scheduler
            .apply(&updates)
            .and_then(|()| scheduler.place(&request))
            .map_err(|e| e.to_string());
        let message = result.as_ref().ok().map(|p| {
            format!(
                "placed on host {} by policy {policy} ({} of {} hosts feasible)",
                p.host_name,
                p.feasible_hosts,
                hosts.len()
            )
        });
        if let (Ok(p), Some(message)) = (&result, &message) {
            self.assumed.lock().expect("assumed lock").insert(
                uid.clone(),
                Assumed {
                    host_id: p.host_id.clone(),
                    message: message.clone(),
                },
            );
        }
        drop(scheduler);
        self.metrics.scheduling.observe(started.elapsed().as_secs_f64());
        self.metrics
            .placements
            .get_or_create(&PlacementLabels {
                policy: policy.clone(),
                result: if result.is_ok() { "placed" } else { "unschedulable" },
            })
            .inc();
        let placement = result?;
        let environment = self
            .host_by_id(&placement.host_id)
            .and_then(|h| h.spec.environment.clone());
        Ok((placement.host_id, environment, message.unwrap_or_default()))
    }

    async fn write_status(&self, ns: &str, name: &str, status: &WorkloadStatus) -> Result<(), Error> {
        let patch = serde_json::json!({ "status": {
            "conditions": status.conditions,
            "hostId": status.host_id,
            "environment": status.environment,
            "workloadId": status.workload_id,
        }});
        let api: Api<Workload> = Api::namespaced(self.client.clone(), ns);
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err("writing the status of Workload", format!("{ns}/{name}")))?;
        Ok(())
    }

    /// Writes `status` if it differs from `before`, then returns `action`.
    async fn finish(
        &self,
        ns: &str,
        name: &str,
        before: &WorkloadStatus,
        status: WorkloadStatus,
        action: Action,
    ) -> Result<Action, Error> {
        if status != *before {
            self.write_status(ns, name, &status).await?;
        }
        Ok(action)
    }

    /// The workload finalizer: stop the workload on its host, then let the Workload go.
    ///
    /// An unreachable host does not hang the deletion: if its Host is gone (or not Ready) the workload
    /// went with it; otherwise the stop is retried with back-off and, after [`STOP_ATTEMPTS`] failures,
    /// the deletion proceeds with a `StopUnconfirmed` Warning Event. A workload left running that way is
    /// not routed to (its Workload is gone) and ends with its host process.
    async fn finalize(&self, w: &Workload, ns: &str, ctx: &Context) -> Result<Action, Error> {
        let name = w.name_any();
        let status = w.status.clone().unwrap_or_default();
        // A start may have been sent without its answer reaching the status (deleted meanwhile): the
        // workload ID is the UID, so stop that on the chosen host too (an unknown ID is just NOT_FOUND).
        let workload_id = status.workload_id.clone().or_else(|| w.uid());
        if let (Some(host_id), Some(workload_id)) = (&status.host_id, &workload_id) {
            let seen = *self
                .draining
                .lock()
                .expect("draining lock")
                .entry(w.uid().unwrap_or_default())
                .or_insert_with(Instant::now);
            if let Some(left) = self
                .drain_delay
                .checked_sub(seen.elapsed())
                .filter(|d| !d.is_zero())
            {
                return Ok(Action::requeue_after(left));
            }
            let started = Instant::now();
            let result = self.nats.stop(host_id, workload_id).await;
            tracing::info!(workload = %format!("{ns}/{name}"), %host_id, %workload_id, state = ?result.as_ref().map(|s| s.workload_state), "stopped on its host");
            self.metrics.request("stop", result.is_ok(), started.elapsed());
            if let Err(e) = result {
                let host_alive = self.host_by_id(host_id).is_some_and(|h| {
                    h.status
                        .as_ref()
                        .is_some_and(|s| condition::is_true(&s.conditions, ct::READY))
                });
                if host_alive && ctx.failures() + 1 < STOP_ATTEMPTS {
                    return Err(Error::Host(format!("stopping on host {host_id}: {e}")));
                }
                if host_alive {
                    self.recorder
                        .warning(
                            w,
                            "StopUnconfirmed",
                            "Stop",
                            format!("host {host_id} did not confirm the stop after {STOP_ATTEMPTS} attempts ({e}); deleting anyway"),
                        )
                        .await;
                }
            }
        }
        if status.host_id.is_none() {
            tracing::info!(workload = %format!("{ns}/{name}"), "deleted before it was placed: nothing to stop");
        }
        let api: Api<Workload> = Api::namespaced(self.client.clone(), ns);
        finalizer::remove(&api, w, finalizers::WORKLOAD, NAME)
            .await
            .map_err(api_err("releasing Workload", format!("{ns}/{name}")))?;
        self.avoid
            .lock()
            .expect("avoid lock")
            .remove(&w.uid().unwrap_or_default());
        self.draining
            .lock()
            .expect("draining lock")
            .remove(&w.uid().unwrap_or_default());
        self.forget_placement(w);
        Ok(Action::Done)
    }
}

/// A placement decided by this replica, kept until the cache shows it.
#[derive(Debug, Clone)]
struct Assumed {
    host_id: String,
    /// The `HostSelection` message of the decision.
    message: String,
}

/// The `Healthy` condition for a running workload whose host reported `message`.
fn healthy_condition(message: &str, host: &str) -> Condition {
    match RequestFailures::parse(message).filter(RequestFailures::is_failing) {
        Some(f) => cond(
            ct::HEALTHY,
            ConditionStatus::False,
            REQUESTS_FAILING,
            format!(
                "{} of the last {} requests failed in the component on host {host}; last error: {}",
                f.failed, f.of, f.last_error
            ),
        ),
        None => cond(
            ct::HEALTHY,
            ConditionStatus::True,
            reasons::AVAILABLE,
            "no recent request failed in the component",
        ),
    }
}

/// Clears a Workload's placement so it is placed again.
fn unplace(status: &mut WorkloadStatus) {
    condition::remove(&mut status.conditions, ct::HEALTHY);
    status.host_id = None;
    status.environment = None;
    status.workload_id = None;
}

impl Reconciler<Workload> for WorkloadReconciler {
    type Error = Error;

    async fn reconcile(&self, w: Arc<Workload>, ctx: &Context) -> Result<Action, Error> {
        let Some(ns) = w.namespace() else {
            return Ok(Action::Done);
        };
        let name = w.name_any();
        if finalizer::is_deleting(w.as_ref()) {
            if finalizer::has_finalizer(w.as_ref(), finalizers::WORKLOAD) {
                return self.finalize(&w, &ns, ctx).await;
            }
            return Ok(Action::Done);
        }
        let api: Api<Workload> = Api::namespaced(self.client.clone(), &ns);
        if !finalizer::has_finalizer(w.as_ref(), finalizers::WORKLOAD) {
            finalizer::add(&api, w.as_ref(), finalizers::WORKLOAD, NAME)
                .await
                .map_err(api_err(
                    "adding the finalizer to Workload",
                    format!("{ns}/{name}"),
                ))?;
        }
        let now = Time(Timestamp::now());
        let generation = w.metadata.generation.unwrap_or(0);
        let before = w.status.clone().unwrap_or_default();
        let mut status = before.clone();
        let set = |status: &mut WorkloadStatus, c: Condition| {
            condition::set(
                &mut status.conditions,
                c.with_observed_generation(generation),
                &now,
            );
        };

        // Config: only before placement (a running workload keeps running if a ConfigMap goes).
        let mut resolved = ResolvedConfig::default();
        if status.workload_id.is_none() {
            match self.resolve(&ns, &w).await? {
                Ok(r) => {
                    resolved = r;
                    set(
                        &mut status,
                        cond(
                            ct::CONFIG,
                            ConditionStatus::True,
                            reasons::AVAILABLE,
                            "every named ConfigMap and Secret exists",
                        ),
                    );
                }
                Err(missing) => {
                    set(
                        &mut status,
                        cond(
                            ct::CONFIG,
                            ConditionStatus::False,
                            "NotFound",
                            format!("{missing} not found in namespace {ns}"),
                        ),
                    );
                    set(
                        &mut status,
                        cond(
                            ct::READY,
                            ConditionStatus::False,
                            reasons::RECONCILE,
                            format!("waiting for {missing}"),
                        ),
                    );
                    // Its creation enqueues this Workload (ConfigMaps and Secrets are watched).
                    return self.finish(&ns, &name, &before, status, Action::Done).await;
                }
            }
        }

        // HostSelection. A host this replica already chose (and maybe started the workload on) whose
        // status write the cache does not show yet is kept: choosing again would start it twice. Once
        // the cache shows a placement there is nothing left to remember (and a placement cleared later,
        // e.g. handed back by the Host controller, is not brought back).
        let remembered = match status.host_id {
            Some(_) => {
                self.forget_placement(&w);
                None
            }
            None => self.remembered_host(&w),
        };
        if let Some(Assumed { host_id, message }) = remembered {
            status.environment = self.host_by_id(&host_id).and_then(|h| h.spec.environment.clone());
            status.host_id = Some(host_id);
            // The condition the decision wrote, which a status computed from this stale copy would drop.
            set(
                &mut status,
                cond(
                    ct::HOST_SELECTION,
                    ConditionStatus::True,
                    reasons::AVAILABLE,
                    message,
                ),
            );
        }
        if status.host_id.is_none() {
            if let Some(pinned) = w.spec.host_id.clone().filter(|h| !h.is_empty()) {
                status.environment = self.host_by_id(&pinned).and_then(|h| h.spec.environment.clone());
                status.host_id = Some(pinned.clone());
                set(
                    &mut status,
                    cond(
                        ct::HOST_SELECTION,
                        ConditionStatus::True,
                        reasons::AVAILABLE,
                        format!("pinned to host {pinned}"),
                    ),
                );
            } else {
                match self.select(&w, &ns, &name) {
                    Ok((host_id, environment, message)) => {
                        status.host_id = Some(host_id);
                        status.environment = environment;
                        set(
                            &mut status,
                            cond(
                                ct::HOST_SELECTION,
                                ConditionStatus::True,
                                reasons::AVAILABLE,
                                message,
                            ),
                        );
                    }
                    Err(message) => {
                        set(
                            &mut status,
                            cond(
                                ct::HOST_SELECTION,
                                ConditionStatus::False,
                                "Unschedulable",
                                message.clone(),
                            ),
                        );
                        set(
                            &mut status,
                            cond(
                                ct::READY,
                                ConditionStatus::False,
                                reasons::RECONCILE,
                                "no host can run the workload",
                            ),
                        );
                        // Host changes enqueue unplaced Workloads.
                        return self.finish(&ns, &name, &before, status, Action::Done).await;
                    }
                }
            }
        }
        let host_id = status.host_id.clone().expect("selected above");
        // Its Host went away without handing it back (e.g. before this Workload was cached): place it
        // again, unless it is pinned.
        if w.spec.host_id.as_deref().is_none_or(str::is_empty) && self.host_by_id(&host_id).is_none() {
            let message = format!("host {host_id} is gone; placing the workload again");
            // The same Event the Host finalizer records when it hands a Workload back: whichever notices
            // first, the user sees why the Workload moves.
            self.recorder
                .warning(
                    w.as_ref(),
                    crate::host::handback::HOST_LOST,
                    "Reschedule",
                    message.clone(),
                )
                .await;
            set(
                &mut status,
                cond(
                    ct::PLACEMENT,
                    ConditionStatus::False,
                    crate::host::handback::HOST_LOST,
                    message,
                ),
            );
            condition::remove(&mut status.conditions, ct::HOST_SELECTION);
            unplace(&mut status);
            self.forget_placement(&w);
            return self.finish(&ns, &name, &before, status, Action::requeue()).await;
        }

        let host = self.host_label(&host_id);

        // Placement.
        if status.workload_id.is_none() {
            let annotations = w.metadata.annotations.clone().unwrap_or_default();
            let uid = w.uid().unwrap_or_default();
            let id = Identity {
                namespace: &ns,
                name: &name,
                uid: &uid,
                annotations: &annotations,
            };
            let req = match request::start_request(id, &w.spec, &resolved) {
                Ok(r) => r,
                Err(e) => {
                    set(
                        &mut status,
                        cond(
                            ct::PLACEMENT,
                            ConditionStatus::False,
                            "InvalidSpec",
                            e.to_string(),
                        ),
                    );
                    set(
                        &mut status,
                        cond(
                            ct::READY,
                            ConditionStatus::False,
                            reasons::RECONCILE,
                            e.to_string(),
                        ),
                    );
                    unplace(&mut status);
                    self.forget_placement(&w);
                    return self.finish(&ns, &name, &before, status, Action::Done).await;
                }
            };
            let started = Instant::now();
            let result = self.nats.start(&host_id, &req).await;
            self.metrics.request("start", result.is_ok(), started.elapsed());
            match result {
                Ok(st) => {
                    status.workload_id = Some(if st.workload_id.is_empty() {
                        uid.clone()
                    } else {
                        st.workload_id
                    });
                    set(
                        &mut status,
                        cond(
                            ct::PLACEMENT,
                            ConditionStatus::True,
                            reasons::AVAILABLE,
                            format!("started on host {host}"),
                        ),
                    );
                    self.avoid.lock().expect("avoid lock").remove(&uid);
                }
                Err(ClientError::Host { message, .. }) if message.contains("already exists") => {
                    // A retried start: the host runs it already.
                    status.workload_id = Some(uid.clone());
                    set(
                        &mut status,
                        cond(
                            ct::PLACEMENT,
                            ConditionStatus::True,
                            reasons::AVAILABLE,
                            format!("started on host {host}"),
                        ),
                    );
                }
                Err(e) => {
                    let (reason, message) = match &e {
                        ClientError::Host { message, .. } => (
                            HOST_ERROR,
                            format!("host {host} could not start the workload: {message}"),
                        ),
                        other => (
                            HOST_UNREACHABLE,
                            format!("host {host} did not answer the start: {other}"),
                        ),
                    };
                    set(
                        &mut status,
                        cond(ct::PLACEMENT, ConditionStatus::False, reason, message.clone()),
                    );
                    set(
                        &mut status,
                        cond(
                            ct::READY,
                            ConditionStatus::False,
                            reasons::RECONCILE,
                            message.clone(),
                        ),
                    );
                    condition::remove(&mut status.conditions, ct::HOST_SELECTION);
                    unplace(&mut status);
                    self.forget_placement(&w);
                    self.avoid
                        .lock()
                        .expect("avoid lock")
                        .entry(uid)
                        .or_default()
                        .insert(host_id.clone());
                    self.recorder
                        .warning(w.as_ref(), "PlacementFailed", "Start", message.clone())
                        .await;
                    if status != before {
                        self.write_status(&ns, &name, &status).await?;
                    }
                    return Err(Error::Host(message));
                }
            }
        }
        let workload_id = status.workload_id.clone().expect("placed above");

        // Sync.
        let started = Instant::now();
        let result = self.nats.status(&host_id, &workload_id).await;
        self.metrics.request("status", result.is_ok(), started.elapsed());
        let mut next = Action::requeue_after(SYNC_INTERVAL);
        match result {
            Ok(st) => match st.workload_state {
                WorkloadState::Running | WorkloadState::Completed => {
                    set(
                        &mut status,
                        cond(
                            ct::SYNC,
                            ConditionStatus::True,
                            reasons::AVAILABLE,
                            format!("workload is {}", st.workload_state.as_str_name()),
                        ),
                    );
                    if st.workload_state == WorkloadState::Running {
                        let was_failing = condition::find(&status.conditions, ct::HEALTHY)
                            .is_some_and(|c| c.status == ConditionStatus::False);
                        let healthy = healthy_condition(&st.message, &host);
                        if healthy.status == ConditionStatus::False && !was_failing {
                            let message = healthy.message.clone().unwrap_or_default();
                            self.recorder
                                .warning(w.as_ref(), REQUESTS_FAILING, "Serve", message)
                                .await;
                        }
                        set(&mut status, healthy);
                    }
                }
                WorkloadState::Starting | WorkloadState::Unspecified => {
                    set(
                        &mut status,
                        cond(
                            ct::SYNC,
                            ConditionStatus::Unknown,
                            reasons::RECONCILE,
                            "workload is starting",
                        ),
                    );
                    next = Action::requeue_after(Duration::from_millis(500));
                }
                WorkloadState::NotFound | WorkloadState::Stopping => {
                    // The host no longer runs it (e.g. it restarted): place it again.
                    let message = format!(
                        "host {host} no longer runs the workload ({}); placing it again",
                        st.workload_state.as_str_name()
                    );
                    set(
                        &mut status,
                        cond(ct::PLACEMENT, ConditionStatus::False, HOST_ERROR, message.clone()),
                    );
                    set(
                        &mut status,
                        cond(ct::SYNC, ConditionStatus::False, HOST_ERROR, message),
                    );
                    condition::remove(&mut status.conditions, ct::HOST_SELECTION);
                    unplace(&mut status);
                    self.forget_placement(&w);
                    next = Action::requeue();
                }
                other => {
                    let detail = if st.message.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", st.message)
                    };
                    set(
                        &mut status,
                        cond(
                            ct::SYNC,
                            ConditionStatus::False,
                            HOST_ERROR,
                            format!("workload is not operational: {}{detail}", other.as_str_name()),
                        ),
                    );
                }
            },
            // A status request that goes unanswered says nothing about the data plane (HTTP does not
            // go over NATS, and NATS itself may be away): a workload known to run keeps its state, and
            // whether its host is gone is the Host controller's call (heartbeats, probes, TTL).
            Err(e) if condition::is_true(&status.conditions, ct::SYNC) => {
                tracing::debug!(%host, %workload_id, error = %e, "status request failed; keeping the last known state");
                next = Action::requeue_after(STATUS_RETRY);
            }
            Err(e) => {
                set(
                    &mut status,
                    cond(
                        ct::SYNC,
                        ConditionStatus::Unknown,
                        HOST_UNREACHABLE,
                        format!("host {host} did not answer the status request: {e}"),
                    ),
                );
                next = Action::requeue();
            }
        }
        let ready = condition::is_true(&status.conditions, ct::PLACEMENT)
            && condition::is_true(&status.conditions, ct::SYNC);
        if ready {
            set(
                &mut status,
                cond(
                    ct::READY,
                    ConditionStatus::True,
                    reasons::AVAILABLE,
                    format!("running on host {host}"),
                ),
            );
        } else {
            let why = condition::find(&status.conditions, ct::SYNC)
                .and_then(|c| c.message.clone())
                .unwrap_or_else(|| "not running".into());
            set(
                &mut status,
                cond(ct::READY, ConditionStatus::False, reasons::RECONCILE, why),
            );
        }
        self.finish(&ns, &name, &before, status, next).await
    }
}
