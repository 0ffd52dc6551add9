//! The Host controller: heartbeats become `Host` objects in the operator namespace, their `Reporting`
//! and `Ready` conditions follow the host's liveness, a dead Host is deleted, and the Host finalizer
//! hands the Workloads placed on it back for placement elsewhere.
//!
//! Three parts:
//! - [`HeartbeatListener`] (a runnable on every replica, leader or not) subscribes to
//!   `runtime.operator.heartbeat.>`, records each heartbeat in the shared [`Registry`] and enqueues the
//!   host's Host; malformed payloads are counted and dropped. When the operator's own NATS connection
//!   comes back, every Host is looked at again.
//! - [`HostReconciler`] (leader only) decides with the pure modules ([`health`], [`desired`],
//!   [`registry::claim`]) and writes: server-side apply of fields and labels (field manager
//!   `host-status-updater`) only when they changed, status only when a condition changed or `lastSeen`
//!   is a refresh interval old, probes of silent hosts in the background, deletion of dead or
//!   superseded Hosts, and the finalizer.
//! - The finalizer `runtime.wasmcloud.dev/host-finalizer` clears the placement of every Workload on the
//!   host ([`handback`]) — bare Workloads included — so they are placed again, then lets the Host go.

pub mod desired;
pub mod handback;
pub mod health;
pub mod registry;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as MetricsRegistry;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weft_crds::names::{field_managers, finalizers};
use weft_crds::{Host, HostStatus, Workload};
use weft_framework::apply::Applier;
use weft_framework::events::EventRecorder;
use weft_framework::queue::WorkQueue;
use weft_framework::{Action, BoxError, Cache, Context, ObjectKey, Reconciler, Runnable, finalizer};
use weft_host_api::{HostClient, HostHeartbeat, Timeouts};

use crate::bus::Bus;
use crate::error::{ApiError, api_err};
use health::{Bus as BusView, HealthConfig, Verdict};
use registry::{NameHolder, Registry};

/// The controller's name (metrics, logs, events).
pub const NAME: &str = "workload-host";
/// The Workload cache index by `status.hostId`.
pub const WORKLOAD_HOST_INDEX: &str = "status.hostId";

/// The index function for the Workload cache.
pub fn workload_host_index(w: &Workload) -> Vec<String> {
    w.status
        .as_ref()
        .and_then(|s| s.host_id.clone())
        .filter(|id| !id.is_empty())
        .into_iter()
        .collect()
}

/// Settings of the Host controller.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// Liveness rules.
    pub health: HealthConfig,
    /// How stale the written `lastSeen` (and the facts) may get before the status is rewritten.
    pub status_refresh: Duration,
}

impl Default for HostSettings {
    fn default() -> Self {
        Self {
            health: HealthConfig::default(),
            status_refresh: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// The Host controller's metrics.
#[derive(Debug, Clone)]
pub struct HostMetrics {
    heartbeats: Counter,
    malformed: Counter,
    interval: Histogram,
    probes: Family<ResultLabel, Counter>,
    writes: Family<KindLabel, Counter>,
    hosts: Family<StateLabel, Gauge>,
    silence: Gauge<f64, std::sync::atomic::AtomicU64>,
    states: Arc<Mutex<HashMap<String, (&'static str, f64)>>>,
}

const STATES: [&str; 4] = ["ready", "suspect", "dead", "unknown"];

impl HostMetrics {
    /// Registers the families in `registry`.
    pub fn register(registry: &mut MetricsRegistry) -> Self {
        let m = Self {
            heartbeats: Counter::default(),
            malformed: Counter::default(),
            interval: Histogram::new([0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0]),
            probes: Family::default(),
            writes: Family::default(),
            hosts: Family::default(),
            silence: Gauge::default(),
            states: Arc::default(),
        };
        registry.register(
            "weft_host_heartbeats",
            "Heartbeats received",
            m.heartbeats.clone(),
        );
        registry.register(
            "weft_host_heartbeats_malformed",
            "Heartbeat payloads dropped as malformed",
            m.malformed.clone(),
        );
        registry.register(
            "weft_host_heartbeat_interval_seconds",
            "Time between two heartbeats of one host",
            m.interval.clone(),
        );
        registry.register(
            "weft_host_probes",
            "Heartbeat probes of silent hosts, by result",
            m.probes.clone(),
        );
        registry.register(
            "weft_host_writes",
            "Writes to the Kubernetes API by the Host controller, by kind",
            m.writes.clone(),
        );
        registry.register("weft_hosts", "Hosts by state", m.hosts.clone());
        registry.register(
            "weft_host_heartbeat_age_max_seconds",
            "The longest time since any Host was last heard",
            m.silence.clone(),
        );
        for result in ["ok", "failed"] {
            m.probes.get_or_create(&ResultLabel { result }).get();
        }
        for kind in ["apply", "status", "delete", "finalizer", "handback"] {
            m.writes.get_or_create(&KindLabel { kind }).get();
        }
        for state in STATES {
            m.hosts.get_or_create(&StateLabel { state }).set(0);
        }
        m
    }

    fn write(&self, kind: &'static str) {
        self.writes.get_or_create(&KindLabel { kind }).inc();
    }

    fn probe(&self, ok: bool) {
        self.probes
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "failed" },
            })
            .inc();
    }

    fn set_state(&self, host: &str, state: Option<(&'static str, f64)>) {
        let mut states = self.states.lock().expect("host states lock");
        match state {
            Some(s) => states.insert(host.to_string(), s),
            None => states.remove(host),
        };
        for s in STATES {
            let n = states.values().filter(|(v, _)| *v == s).count();
            self.hosts.get_or_create(&StateLabel { state: s }).set(n as i64);
        }
        self.silence
            .set(states.values().map(|(_, age)| *age).fold(0.0, f64::max));
    }
}

/// What the listener and the reconciler share.
#[derive(Clone)]
pub struct HostMonitor {
    registry: Arc<Mutex<Registry>>,
    bus: Bus,
    settings: HostSettings,
    metrics: HostMetrics,
    queue: Arc<OnceLock<WorkQueue<ObjectKey>>>,
    hosts: Cache<Host>,
    namespace: String,
    workloads_changed: Arc<OnceLock<WorkloadsChanged>>,
}

/// Called with a host's ID when its heartbeat reports other workload or component counts than the one
/// before: a workload started, stopped or failed there.
pub type WorkloadsChanged = Box<dyn Fn(&str) + Send + Sync>;

impl std::fmt::Debug for HostMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostMonitor").finish_non_exhaustive()
    }
}

impl HostMonitor {
    /// A monitor of the Hosts in `namespace` (their cache is `hosts`).
    pub fn new(
        bus: Bus,
        settings: HostSettings,
        metrics: HostMetrics,
        hosts: Cache<Host>,
        namespace: String,
    ) -> Self {
        Self {
            registry: Arc::default(),
            bus,
            settings,
            metrics,
            queue: Arc::default(),
            hosts,
            namespace,
            workloads_changed: Arc::default(),
        }
    }

    /// Sets what to call when a host's heartbeat shows its workloads changed (the Workload controller
    /// looks at that host's Workloads at once instead of at its next periodic check).
    pub fn on_workloads_changed(&self, f: WorkloadsChanged) {
        let _ = self.workloads_changed.set(f);
    }

    /// The interfaces host `host_id` advertised in its last heartbeat (its `imports` and `exports`), if
    /// it has been heard since this process started.
    pub fn advertised_interfaces(&self, host_id: &str) -> Option<Vec<weft_host_api::WitInterface>> {
        self.lock().get(host_id).map(|o| {
            let hb = &o.heartbeat;
            hb.imports.iter().chain(&hb.exports).cloned().collect()
        })
    }

    /// Connects the monitor to the controller's queue (once it is built).
    pub fn set_queue(&self, queue: WorkQueue<ObjectKey>) {
        let _ = self.queue.set(queue);
    }

    fn enqueue(&self, name: &str) {
        if let Some(q) = self.queue.get() {
            q.add(ObjectKey::namespaced(&self.namespace, name));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().expect("host registry lock")
    }

    /// Records one heartbeat message.
    fn on_heartbeat(&self, hb: HostHeartbeat) {
        self.metrics.heartbeats.inc();
        let address = (!hb.hostname.is_empty()).then(|| (hb.hostname.clone(), hb.http_port));
        let host_id = hb.id.clone();
        let counts = (hb.workload_count, hb.component_count);
        let link = self.bus.link();
        let now = Instant::now();
        let hosts = self.hosts.clone();
        let namespace = self.namespace.clone();
        let (recorded, previous) = {
            let mut reg = self.lock();
            let previous = reg.get(&hb.id).map(|o| {
                (
                    (o.heartbeat.workload_count, o.heartbeat.component_count),
                    o.live.last_heard,
                )
            });
            let recorded = reg.record_heartbeat(hb, now, Timestamp::now(), link.epoch, |name| {
                hosts.get_namespaced(&namespace, name).map(|h| NameHolder {
                    host_id: h.spec.host_id.clone(),
                    hostname: h.spec.hostname.clone(),
                    http_port: h.spec.http_port,
                    deleting: h.metadata.deletion_timestamp.is_some(),
                    last_heard: None,
                })
            });
            (recorded, previous)
        };
        let Some(recorded) = recorded else {
            return;
        };
        // Outside the registry lock: the Workload controller looks at this host's Workloads.
        if previous.is_some_and(|(p, _)| p != counts)
            && let Some(f) = self.workloads_changed.get()
        {
            f(&host_id);
        }
        let interval_sample = previous
            .and_then(|(_, heard)| heard)
            .map(|b| now.saturating_duration_since(b));
        if let Some(gap) = interval_sample {
            self.metrics.interval.observe(gap.as_secs_f64());
        }
        if recorded.new {
            tracing::info!(host = %recorded.name, conflict_with = ?recorded.conflict_with, "new host heard");
            // Hosts at the same address may have been replaced by this one: look at them now.
            if let Some((hostname, port)) = address {
                for h in self
                    .hosts
                    .by_index(crate::pod_finalizer::HOSTNAME_INDEX, &hostname)
                {
                    if h.spec.http_port.unwrap_or(0) == port && h.name_any() != recorded.name {
                        self.enqueue(&h.name_any());
                    }
                }
            }
        }
        self.enqueue(&recorded.name);
    }
}

/// Subscribes to heartbeats and feeds the registry (on every replica).
pub struct HeartbeatListener {
    monitor: HostMonitor,
}

impl HeartbeatListener {
    /// A listener for `monitor`.
    pub fn new(monitor: HostMonitor) -> Self {
        Self { monitor }
    }
}

impl Runnable for HeartbeatListener {
    fn name(&self) -> String {
        "host-heartbeats".into()
    }

    fn needs_leader_election(&self) -> bool {
        false
    }

    fn start(self: Box<Self>, cancel: CancellationToken) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async move {
            let monitor = self.monitor;
            let client = HostClient::new(monitor.bus.client().clone());
            let mut heartbeats = client.subscribe_heartbeats().await?;
            let malformed = heartbeats.malformed_counter();
            let mut link = monitor.bus.watch();
            let mut epoch = link.borrow().epoch;
            let mut counted = 0;
            // Malformed payloads never reach this loop (the subscription drops them), so their count is
            // folded into the metric on a tick as well as with each valid heartbeat.
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut fold_malformed = || {
                let seen = malformed.get();
                monitor.metrics.malformed.inc_by(seen - counted);
                counted = seen;
            };
            tracing::info!(
                subject = weft_host_api::subjects::HEARTBEAT_WILDCARD,
                "listening for heartbeats"
            );
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    changed = link.changed() => {
                        if changed.is_err() { return Ok(()); }
                        let now = *link.borrow_and_update();
                        // Back after a loss (or down): look at every Host again.
                        if now.epoch != epoch || now.connected_since.is_none() {
                            epoch = now.epoch;
                            for key in monitor.hosts.keys() {
                                if let Some(q) = monitor.queue.get() { q.add(key); }
                            }
                        }
                    }
                    _ = tick.tick() => fold_malformed(),
                    msg = heartbeats.next() => {
                        fold_malformed();
                        match msg {
                            Some(hb) => monitor.on_heartbeat(hb),
                            None => return Err("the heartbeat subscription ended".into()),
                        }
                    }
                }
            }
        })
    }
}

/// Errors of the Host reconcile: a failed API call.
pub type Error = ApiError;

/// The Host reconciler (leader only).
pub struct HostReconciler {
    client: Client,
    monitor: HostMonitor,
    workloads: Cache<Workload>,
    applier: Applier,
    recorder: EventRecorder,
    probes: HostClient,
}

impl HostReconciler {
    /// A reconciler over `monitor`'s Hosts, handing back Workloads found in `workloads` (which must have
    /// the [`WORKLOAD_HOST_INDEX`] index).
    pub fn new(
        client: Client,
        monitor: HostMonitor,
        workloads: Cache<Workload>,
        recorder: EventRecorder,
    ) -> Self {
        let probe_timeout = monitor.settings.health.probe_timeout;
        let probes = HostClient::new(monitor.bus.client().clone()).with_timeouts(Timeouts {
            heartbeat: probe_timeout,
            ..Timeouts::default()
        });
        Self {
            client,
            monitor,
            workloads,
            applier: Applier::new(field_managers::HOST_STATUS_UPDATER),
            recorder,
            probes,
        }
    }

    fn api(&self) -> Api<Host> {
        Api::namespaced(self.client.clone(), &self.monitor.namespace)
    }

    fn bus_view(&self) -> BusView {
        BusView {
            connected_since: self.monitor.bus.link().connected_since,
        }
    }

    /// Sends a probe in the background; its end enqueues the Host again.
    fn probe(&self, host_id: &str, name: &str) {
        let sent = Instant::now();
        self.monitor.lock().probe_sent(host_id, sent);
        let (client, monitor) = (self.probes.clone(), self.monitor.clone());
        let (host_id, name) = (host_id.to_string(), name.to_string());
        tokio::spawn(async move {
            let result = client.heartbeat(&host_id).await;
            let ok = matches!(&result, Ok(hb) if hb.id == host_id);
            monitor.metrics.probe(ok);
            {
                let mut reg = monitor.lock();
                match result {
                    Ok(hb) if ok => {
                        reg.record_probe_reply(hb, Instant::now(), Timestamp::now());
                    }
                    Ok(hb) => {
                        tracing::warn!(host = %name, %host_id, replied_as = %hb.id, "probe answered by another host");
                        reg.probe_failed(&host_id, sent);
                    }
                    Err(e) => {
                        tracing::debug!(host = %name, %host_id, error = %e, "probe failed");
                        reg.probe_failed(&host_id, sent);
                    }
                }
            }
            monitor.enqueue(&name);
        });
    }

    async fn write_status(&self, name: &str, status: &HostStatus) -> Result<(), Error> {
        self.applier
            .apply_status(&self.api(), name, status)
            .await
            .map_err(api_err("writing the status of Host", name))?;
        self.monitor.metrics.write("status");
        Ok(())
    }

    async fn delete(&self, host: &Host, reason: &str, note: String) -> Result<(), Error> {
        let name = host.name_any();
        match self.api().delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(api_err("deleting Host", name)(e)),
        }
        self.monitor.metrics.write("delete");
        tracing::info!(host = %name, host_id = %host.spec.host_id, reason, "deleted the Host");
        self.recorder.warning(host, reason, "DeleteHost", note).await;
        Ok(())
    }

    /// Creates the Host of a host heard under `name`.
    async fn create(&self, name: &str) -> Result<Action, Error> {
        let Some((hb, heard_at, wanted, live)) = ({
            let reg = self.monitor.lock();
            reg.id_for_name(name).and_then(|id| reg.get(id)).map(|o| {
                (
                    o.heartbeat.clone(),
                    o.heard_at,
                    o.wanted_name.clone(),
                    o.live.clone(),
                )
            })
        }) else {
            return Ok(Action::Done);
        };
        // A replica that was a follower when this host was replaced at its address (and its Host deleted
        // by the leader then) still remembers its last heartbeat: the process is gone, so it gets no
        // Host again.
        let successor = {
            let mut reg = self.monitor.lock();
            let successor = reg
                .successor_at(&hb.hostname, hb.http_port, &hb.id)
                .map(str::to_string);
            if successor.is_some() {
                reg.bury(&hb.id, Instant::now());
            }
            successor
        };
        if let Some(successor) = successor {
            tracing::info!(host = %name, host_id = %hb.id, %successor, "not creating the Host of a host replaced at its address");
            return Ok(Action::Done);
        }
        let desired = desired::desired_host(&hb, name, &self.monitor.namespace);
        let created = self
            .applier
            .apply(&self.api(), &desired)
            .await
            .map_err(api_err("creating Host", name))?;
        self.monitor.metrics.write("apply");
        let a = health::assess(
            &live,
            self.bus_view(),
            &self.monitor.settings.health,
            Instant::now(),
        );
        let conditions = desired::conditions_for(a.verdict, a.interval, a.suspect_after, a.dead_after);
        if let Some(status) = desired::status_update(
            None,
            Some((&hb, heard_at)),
            conditions,
            Timestamp::now(),
            self.monitor.settings.status_refresh,
        ) {
            self.write_status(name, &status).await?;
        }
        tracing::info!(host = %name, host_id = %hb.id, hostname = %hb.hostname, "created the Host");
        if let Some(wanted) = wanted {
            self.recorder
                .warning(
                    &created,
                    "HostNameConflict",
                    "RegisterHost",
                    format!(
                        "host {} asked for the name {wanted}, which a live host at another address holds; registered as {name}",
                        hb.id
                    ),
                )
                .await;
        }
        // Its informer event brings it back here for the finalizer and the next look.
        Ok(Action::Done)
    }

    /// Marks a Host replaced by `successor` (a new process at its address) and deletes it.
    async fn supersede(&self, host: &Host, successor: &str) -> Result<(), Error> {
        let name = host.name_any();
        let mut status = host.status.clone().unwrap_or_default();
        let now = Time(Timestamp::now());
        let mut changed = false;
        for c in desired::superseded_conditions(successor) {
            changed |= weft_crds::condition::set(&mut status.conditions, c, &now);
        }
        if changed && status.version.is_some() {
            self.write_status(&name, &status).await?;
        }
        // Its process is gone: forget it now, not only in the finalizer (a Host deleted before its
        // finalizer was added never gets there, and would be created again from the registry).
        self.monitor.lock().bury(&host.spec.host_id, Instant::now());
        self.delete(
            host,
            desired::host_reasons::SUPERSEDED,
            format!(
                "host {successor} now runs at {}:{}; the process of this Host ({}) is gone",
                host.spec.hostname.as_deref().unwrap_or_default(),
                host.spec.http_port.unwrap_or(0),
                host.spec.host_id
            ),
        )
        .await
    }

    /// The finalizer: hand back every Workload placed on the host, then release the Host.
    async fn finalize(&self, host: &Host) -> Result<Action, Error> {
        let name = host.name_any();
        let host_id = host.spec.host_id.clone();
        let now = Time(Timestamp::now());
        let mut handed = 0usize;
        for w in self.workloads.by_index(WORKLOAD_HOST_INDEX, &host_id) {
            if w.metadata.deletion_timestamp.is_some() || !handback::is_placed_on(w.status.as_ref(), &host_id)
            {
                continue;
            }
            let Some(ns) = w.namespace() else { continue };
            let next = handback::handed_back(w.status.as_ref().expect("placed"), &name, &host_id, &now);
            let patch = handback::status_patch(&next, w.metadata.resource_version.as_deref());
            let api: Api<Workload> = Api::namespaced(self.client.clone(), &ns);
            match api
                .patch_status(&w.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => continue,
                Err(e) => {
                    return Err(api_err("handing back Workload", format!("{ns}/{}", w.name_any()))(e));
                }
            }
            self.monitor.metrics.write("handback");
            handed += 1;
            self.recorder
                .warning(
                    w.as_ref(),
                    handback::HOST_LOST,
                    "Reschedule",
                    format!("host {name} ({host_id}) went away; placing the workload again"),
                )
                .await;
        }
        if handed > 0 {
            tracing::info!(host = %name, %host_id, workloads = handed, "handed back the Workloads of a Host that went away");
        }
        finalizer::remove(&self.api(), host, finalizers::HOST, NAME)
            .await
            .map_err(api_err("releasing Host", name.clone()))?;
        self.monitor.metrics.write("finalizer");
        // A host deleted for silence may come back and register again; one whose Host went for another
        // reason (its pod is terminating, a successor took over, a person deleted it) may still be
        // draining and must not.
        let died = host
            .status
            .as_ref()
            .and_then(|s| weft_crds::condition::find(&s.conditions, weft_crds::names::condition_types::READY))
            .is_some_and(|c| c.reason.as_deref() == Some(desired::host_reasons::UNREACHABLE));
        {
            let mut reg = self.monitor.lock();
            if died {
                reg.forget(&host_id);
            } else {
                reg.bury(&host_id, Instant::now());
            }
        }
        self.monitor.metrics.set_state(&name, None);
        Ok(Action::Done)
    }
}

impl Reconciler<Host> for HostReconciler {
    type Error = Error;

    async fn reconcile(&self, host: Arc<Host>, _ctx: &Context) -> Result<Action, Error> {
        let name = host.name_any();
        let id = host.spec.host_id.clone();
        if finalizer::is_deleting(host.as_ref()) {
            if finalizer::has_finalizer(host.as_ref(), finalizers::HOST) {
                return self.finalize(&host).await;
            }
            return Ok(Action::Done);
        }

        // A new process at this Host's address replaced it (a restarted host): its Host goes now, so its
        // Workloads are placed again at once instead of after the TTL.
        let successor = host.spec.hostname.as_deref().and_then(|hostname| {
            let reg = self.monitor.lock();
            reg.successor_at(hostname, host.spec.http_port.unwrap_or(0), &id)
                .map(str::to_string)
        });
        if let Some(successor) = successor {
            self.supersede(&host, &successor).await?;
            return Ok(Action::Done);
        }
        // Another live host at another address calls itself by this Host's name: it gets a fallback
        // name; this Host keeps its own.
        let namesake = self
            .monitor
            .lock()
            .id_for_name(&name)
            .filter(|c| *c != id)
            .map(str::to_string);
        if let Some(namesake) = namesake {
            let moved = self.monitor.lock().move_to_fallback(&namesake);
            if let Some(moved) = moved {
                self.recorder
                    .warning(
                        host.as_ref(),
                        "HostNameConflict",
                        "RegisterHost",
                        format!(
                            "host {namesake} at another address also calls itself {name}; it is registered as {moved}"
                        ),
                    )
                    .await;
                self.monitor.enqueue(&moved);
            }
        }

        if !finalizer::has_finalizer(host.as_ref(), finalizers::HOST) {
            finalizer::add(&self.api(), host.as_ref(), finalizers::HOST, NAME)
                .await
                .map_err(api_err("adding the finalizer to Host", name.clone()))?;
            self.monitor.metrics.write("finalizer");
        }

        let now = Instant::now();
        let (live, heard) = {
            let reg = self.monitor.lock();
            let heard = reg
                .get(&id)
                .filter(|o| o.name == name)
                .map(|o| (o.heartbeat.clone(), o.heard_at));
            (reg.liveness(&id), heard)
        };
        let cfg = &self.monitor.settings.health;
        let a = health::assess(&live, self.bus_view(), cfg, now);
        if a.probe {
            self.probe(&id, &name);
        }

        if let Some((hb, _)) = &heard {
            let desired = desired::desired_host(hb, &name, &self.monitor.namespace);
            if desired::needs_apply(Some(host.as_ref()), &desired) {
                self.applier
                    .apply(&self.api(), &desired)
                    .await
                    .map_err(api_err("applying Host", name.clone()))?;
                self.monitor.metrics.write("apply");
            }
        }
        let conditions = desired::conditions_for(a.verdict, a.interval, a.suspect_after, a.dead_after);
        if let Some(status) = desired::status_update(
            host.status.as_ref(),
            heard.as_ref().map(|(hb, at)| (hb, *at)),
            conditions,
            Timestamp::now(),
            self.monitor.settings.status_refresh,
        ) {
            self.write_status(&name, &status).await?;
        }
        let silence = live
            .last_heard
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        let state = match a.verdict {
            Verdict::Ready => "ready",
            Verdict::Suspect { .. } => "suspect",
            Verdict::Dead { .. } => "dead",
            Verdict::Hold => "unknown",
        };
        self.monitor.metrics.set_state(&name, Some((state, silence)));

        if let Verdict::Dead { silence } = a.verdict {
            self.delete(
                &host,
                desired::host_reasons::UNREACHABLE,
                format!(
                    "no heartbeat or probe reply for {:.1}s (TTL {:.1}s); its Workloads are placed again",
                    silence.as_secs_f64(),
                    a.dead_after.as_secs_f64()
                ),
            )
            .await?;
            return Ok(Action::Done);
        }
        Ok(a.recheck_in.map_or(Action::Done, Action::requeue_after))
    }

    async fn reconcile_missing(&self, key: &ObjectKey, _ctx: &Context) -> Result<Action, Error> {
        if key.namespace.as_deref() != Some(self.monitor.namespace.as_str()) {
            return Ok(Action::Done);
        }
        self.monitor.metrics.set_state(&key.name, None);
        self.create(&key.name).await
    }
}
