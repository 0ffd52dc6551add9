//! The Weft operator's controllers, each wired onto a [`weft_framework::Manager`].
//!
//! Every controller has a module with its pure decision logic (unit-tested without a cluster) and its
//! reconciler, plus an `add_*` function here that registers its informers and itself. The operator binary
//! calls [`add_all`]; later controllers add one line there.

use std::sync::Arc;

use std::time::Duration;

use weft_crds::{Artifact, Host, Workload, WorkloadDeployment, WorkloadReplicaSet};
use weft_framework::events::EventRecorder;
use weft_framework::{InformerOptions, Manager, predicate};

pub mod artifact;
pub mod bus;
pub mod deployment;
pub mod error;
pub mod expectations;
pub mod host;
pub mod pod_finalizer;
pub mod replicaset;
pub mod route;
pub mod workload;

pub use bus::{Bus, BusSettings};
pub use host::HostSettings;

/// What the controllers need to know about the installation.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The operator's own namespace, where Host objects live.
    pub operator_namespace: String,
    /// Namespaces whose pods may be host pods (the operator namespace is always included).
    pub host_namespaces: Vec<String>,
    /// Parallel reconciles of the PodFinalizer controller.
    pub pod_finalizer_workers: usize,
    /// This replica's identity (for Events).
    pub instance: Option<String>,
    /// The Host controller's settings.
    pub hosts: HostSettings,
    /// Parallel reconciles of the Host controller.
    pub host_workers: usize,
    /// Parallel reconciles of the Workload controller.
    pub workload_workers: usize,
    /// Namespaces whose Workloads (and their ConfigMaps and Secrets) the operator manages; empty: all.
    pub watch_namespaces: Vec<String>,
    /// How long a deleted Workload keeps serving before it is stopped on its host, so routing (the
    /// gateway, EndpointSlices) has dropped it first.
    pub workload_drain_delay: Duration,
    /// Parallel reconciles of the WorkloadReplicaSet controller.
    pub replica_set_workers: usize,
    /// How long a replica may stay out of sync before its replica set replaces it.
    pub replica_grace_period: Duration,
    /// Parallel reconciles of the WorkloadDeployment controller.
    pub deployment_workers: usize,
    /// Whether this operator publishes Artifacts (off when another controller does, like wasmCloud's
    /// `-disable-artifact-controller`).
    pub artifact_controller: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            operator_namespace: "weft-system".into(),
            host_namespaces: Vec::new(),
            pod_finalizer_workers: 4,
            instance: None,
            hosts: HostSettings::default(),
            host_workers: 4,
            workload_workers: 8,
            watch_namespaces: Vec::new(),
            workload_drain_delay: workload::DEFAULT_DRAIN_DELAY,
            replica_set_workers: 4,
            replica_grace_period: replicaset::DEFAULT_GRACE_PERIOD,
            deployment_workers: 4,
            artifact_controller: true,
        }
    }
}

impl Settings {
    /// Informer options for the workload kinds and their configuration: the watched namespaces (one
    /// watch each, which namespaced Roles allow) or the whole cluster.
    pub fn watched<K>(&self) -> InformerOptions<K> {
        let namespaces: Vec<&String> = self.watch_namespaces.iter().filter(|n| !n.is_empty()).collect();
        if namespaces.is_empty() {
            InformerOptions::all()
        } else {
            InformerOptions::namespaces(namespaces.into_iter().cloned())
        }
    }

    /// Host namespaces including the operator's, sorted and without duplicates.
    pub fn all_host_namespaces(&self) -> Vec<String> {
        let mut ns: Vec<String> = self
            .host_namespaces
            .iter()
            .chain([&self.operator_namespace])
            .filter(|n| !n.is_empty())
            .cloned()
            .collect();
        ns.sort();
        ns.dedup();
        ns
    }
}

/// Registers every controller; `bus` is the connected NATS control plane and `scheduler` decides
/// placements (built-in policies and any native plugins, with the default policy set).
pub fn add_all(
    mgr: &mut Manager,
    settings: &Settings,
    bus: &Bus,
    scheduler: weft_scheduler_api::Scheduler,
) -> Result<(), weft_framework::Error> {
    add_pod_finalizer(mgr, settings)?;
    let monitor = add_host_controller(mgr, settings, bus)?;
    add_workload_controller(mgr, settings, bus, scheduler, Some(&monitor))?;
    add_replica_set_controller(mgr, settings)?;
    add_deployment_controller(mgr, settings)?;
    if settings.artifact_controller {
        add_artifact_controller(mgr, settings)?;
    }
    add_route_controller(mgr, settings)
}

/// Registers the workload route controller: keyed by Service (metadata only), it owns the
/// EndpointSlices labelled `wasmcloud.dev/route-manager=true` and follows the Workloads that name a
/// Service and the Hosts they run on.
pub fn add_route_controller(mgr: &mut Manager, settings: &Settings) -> Result<(), weft_framework::Error> {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use weft_framework::ObjectKey;
    let services = mgr.informer::<route::ServiceMeta>(settings.watched())?;
    let slices = mgr.informer::<EndpointSlice>(
        settings
            .watched()
            .labels(format!("{}=true", weft_crds::names::labels::ROUTE_MANAGER)),
    )?;
    let workloads = workload_informer(mgr, settings)?;
    let hosts = host_informer(mgr, settings)?;
    let reconciler =
        route::RouteReconciler::new(mgr.client(), workloads.cache(), hosts.cache(), slices.cache());
    let on_host = workloads.cache();
    let service_keys = |w: &Workload| -> Vec<ObjectKey> {
        route::service_index(w)
            .into_iter()
            .filter_map(|k| k.split_once('/').map(|(ns, n)| ObjectKey::namespaced(ns, n)))
            .collect()
    };
    let controller = mgr
        .controller(route::NAME, &services)
        .owns(&slices)
        .watches(&workloads, service_keys)
        .watches(&hosts, move |h: &Host| {
            on_host
                .by_index(host::WORKLOAD_HOST_INDEX, &h.spec.host_id)
                .iter()
                .flat_map(|w| service_keys(w))
                .collect()
        })
        .build(reconciler);
    mgr.add(controller);
    Ok(())
}

/// The shared WorkloadReplicaSet informer (the watched namespaces), indexed by controlling deployment.
pub fn replica_set_informer(
    mgr: &Manager,
    settings: &Settings,
) -> Result<weft_framework::Informer<WorkloadReplicaSet>, weft_framework::Error> {
    let sets = mgr.informer::<WorkloadReplicaSet>(settings.watched())?;
    sets.cache().add_index(
        replicaset::REPLICA_SET_OWNER_INDEX,
        Arc::new(replicaset::replica_set_owner_index),
    );
    Ok(sets)
}

/// Registers the WorkloadReplicaSet controller: it owns Workloads.
pub fn add_replica_set_controller(
    mgr: &mut Manager,
    settings: &Settings,
) -> Result<(), weft_framework::Error> {
    let sets = replica_set_informer(mgr, settings)?;
    let workloads = workload_informer(mgr, settings)?;
    let metrics = {
        let registry = mgr.metrics().registry();
        let mut registry = registry.write().expect("metrics registry lock");
        replicaset::ReplicaSetMetrics::register(&mut registry)
    };
    let reconciler = replicaset::ReplicaSetReconciler::new(
        mgr.client(),
        sets.cache(),
        workloads.cache(),
        settings.replica_grace_period,
        metrics,
    );
    let controller = mgr
        .controller(replicaset::NAME, &sets)
        .owns(&workloads)
        .concurrency(settings.replica_set_workers)
        .build(reconciler);
    mgr.add(controller);
    Ok(())
}

/// Registers the WorkloadDeployment controller: it owns replica sets, and watches their Workloads (the
/// rollout is paced by their readiness) and the Artifacts deployments list.
pub fn add_deployment_controller(
    mgr: &mut Manager,
    settings: &Settings,
) -> Result<(), weft_framework::Error> {
    use weft_framework::ObjectKey;
    let deployments = mgr.informer::<WorkloadDeployment>(settings.watched())?;
    let sets = replica_set_informer(mgr, settings)?;
    let workloads = workload_informer(mgr, settings)?;
    let artifacts = mgr.informer::<Artifact>(settings.watched())?;
    let metrics = {
        let registry = mgr.metrics().registry();
        let mut registry = registry.write().expect("metrics registry lock");
        deployment::DeploymentMetrics::register(&mut registry)
    };
    let reconciler = deployment::DeploymentReconciler::new(
        mgr.client(),
        sets.cache(),
        workloads.cache(),
        artifacts.cache(),
        metrics,
    );
    let set_cache = sets.cache();
    let deployment_cache = deployments.cache();
    let controller = mgr
        .controller(deployment::NAME, &deployments)
        .owns(&sets)
        .watches(&workloads, move |w: &Workload| {
            let ns = w.metadata.namespace.clone().unwrap_or_default();
            replicaset::controller_of(&w.metadata, "WorkloadReplicaSet")
                .and_then(|(rs, _)| set_cache.get_namespaced(&ns, &rs))
                .and_then(|rs| replicaset::controller_of(&rs.metadata, "WorkloadDeployment"))
                .map(|(d, _)| ObjectKey::namespaced(ns, d))
                .into_iter()
                .collect()
        })
        .watches(&artifacts, move |a: &Artifact| {
            let ns = a.metadata.namespace.clone().unwrap_or_default();
            let name = a.metadata.name.clone().unwrap_or_default();
            deployment_cache
                .list_namespace(&ns)
                .iter()
                .filter(|d| artifact::artifacts_of(d).contains(&name))
                .filter_map(|d| ObjectKey::of(d.as_ref()))
                .collect()
        })
        .concurrency(settings.deployment_workers)
        .build(reconciler);
    mgr.add(controller);
    Ok(())
}

/// Registers the Artifact controller; deployment changes re-check the Artifacts they list (a deletion
/// waiting for them goes ahead once the last one lets go).
pub fn add_artifact_controller(mgr: &mut Manager, settings: &Settings) -> Result<(), weft_framework::Error> {
    use weft_framework::ObjectKey;
    let artifacts = mgr.informer::<Artifact>(settings.watched())?;
    let deployments = mgr.informer::<WorkloadDeployment>(settings.watched())?;
    let recorder = EventRecorder::new(mgr.client(), artifact::NAME, settings.instance.clone());
    let reconciler = artifact::ArtifactReconciler::new(mgr.client(), deployments.cache(), recorder);
    let controller = mgr
        .controller(artifact::NAME, &artifacts)
        .watches(&deployments, |d: &WorkloadDeployment| {
            let ns = d.metadata.namespace.clone().unwrap_or_default();
            artifact::artifacts_of(d)
                .into_iter()
                .map(|a| ObjectKey::namespaced(ns.clone(), a))
                .collect()
        })
        .build(reconciler);
    mgr.add(controller);
    Ok(())
}

/// The keys of the Workloads that name the ConfigMap or Secret `obj`.
fn workloads_naming<K: kube::Resource>(
    cache: &weft_framework::Cache<Workload>,
    kind: &str,
    obj: &K,
) -> Vec<weft_framework::ObjectKey> {
    let meta = obj.meta();
    let value = format!(
        "{}/{kind}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    );
    cache
        .by_index(workload::CONFIG_REF_INDEX, &value)
        .iter()
        .filter_map(|w| weft_framework::ObjectKey::of(w.as_ref()))
        .collect()
}

/// Registers the Workload controller on the shared Workload and Host informers, with metadata-only
/// ConfigMap and Secret informers so a Workload waiting for one is retried when it appears. With the
/// Host controller's `monitor`, a heartbeat whose workload counts changed makes that host's Workloads be
/// looked at at once (a workload that stopped or failed is noticed within a heartbeat, not at the
/// next periodic check).
pub fn add_workload_controller(
    mgr: &mut Manager,
    settings: &Settings,
    bus: &Bus,
    scheduler: weft_scheduler_api::Scheduler,
    monitor: Option<&host::HostMonitor>,
) -> Result<(), weft_framework::Error> {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use kube::core::PartialObjectMeta;
    use weft_framework::ObjectKey;
    let hosts = host_informer(mgr, settings)?;
    let workloads = workload_informer(mgr, settings)?;
    workloads
        .cache()
        .add_index(workload::CONFIG_REF_INDEX, Arc::new(workload::config_ref_index));
    let config_maps = mgr.informer::<PartialObjectMeta<ConfigMap>>(settings.watched())?;
    let secrets = mgr.informer::<PartialObjectMeta<Secret>>(settings.watched())?;
    let metrics = {
        let registry = mgr.metrics().registry();
        let mut registry = registry.write().expect("metrics registry lock");
        workload::WorkloadMetrics::register(&mut registry)
    };
    let recorder = EventRecorder::new(mgr.client(), workload::NAME, settings.instance.clone());
    let reconciler = workload::WorkloadReconciler::new(
        mgr.client(),
        hosts.cache(),
        workloads.cache(),
        scheduler,
        weft_host_api::HostClient::new(bus.client().clone()),
        recorder,
        metrics,
    )
    .with_drain_delay(settings.workload_drain_delay);
    let reconciler = match monitor {
        Some(monitor) => {
            let monitor = monitor.clone();
            reconciler.with_host_interfaces(Arc::new(move |host_id| {
                monitor
                    .advertised_interfaces(host_id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|i| weft_scheduler_api::WitInterface {
                        namespace: i.namespace,
                        package: i.package,
                        interfaces: i.interfaces,
                        version: (!i.version.is_empty()).then_some(i.version),
                    })
                    .collect()
            }))
        }
        None => reconciler,
    };
    let key_of = |w: &Arc<Workload>| ObjectKey::of(w.as_ref());
    let (cm_cache, secret_cache) = (workloads.cache(), workloads.cache());
    let placed = workloads.cache();
    let controller = mgr
        .controller(workload::NAME, &workloads)
        .watches(&config_maps, move |cm: &PartialObjectMeta<ConfigMap>| {
            workloads_naming(&cm_cache, "ConfigMap", cm)
        })
        .watches(&secrets, move |s: &PartialObjectMeta<Secret>| {
            workloads_naming(&secret_cache, "Secret", s)
        })
        // A Host that changes can make unplaced Workloads schedulable, and concerns those placed on it.
        .watches(&hosts, move |h: &Host| {
            let mut keys: Vec<ObjectKey> = placed
                .find(|w| w.status.as_ref().is_none_or(|s| s.host_id.is_none()))
                .iter()
                .filter_map(key_of)
                .collect();
            keys.extend(
                placed
                    .by_index(host::WORKLOAD_HOST_INDEX, &h.spec.host_id)
                    .iter()
                    .filter_map(key_of),
            );
            keys
        })
        .concurrency(settings.workload_workers)
        .build(reconciler);
    if let Some(monitor) = monitor {
        let (queue, placed) = (controller.queue(), workloads.cache());
        monitor.on_workloads_changed(Box::new(move |host_id| {
            for w in placed.by_index(host::WORKLOAD_HOST_INDEX, host_id) {
                if let Some(key) = ObjectKey::of(w.as_ref()) {
                    queue.add(key);
                }
            }
        }));
    }
    mgr.add(controller);
    Ok(())
}

/// The shared Workload informer (the watched namespaces), with its indexes.
pub fn workload_informer(
    mgr: &Manager,
    settings: &Settings,
) -> Result<weft_framework::Informer<Workload>, weft_framework::Error> {
    let workloads = mgr.informer::<Workload>(settings.watched())?;
    workloads
        .cache()
        .add_index(host::WORKLOAD_HOST_INDEX, Arc::new(host::workload_host_index));
    workloads.cache().add_index(
        replicaset::WORKLOAD_OWNER_INDEX,
        Arc::new(replicaset::workload_owner_index),
    );
    workloads
        .cache()
        .add_index(route::SERVICE_INDEX, Arc::new(route::service_index));
    Ok(workloads)
}

/// Registers the Host controller (leader only) and the heartbeat listener (every replica) on the shared
/// Host and Workload informers.
pub fn add_host_controller(
    mgr: &mut Manager,
    settings: &Settings,
    bus: &Bus,
) -> Result<host::HostMonitor, weft_framework::Error> {
    let hosts = host_informer(mgr, settings)?;
    let workloads = workload_informer(mgr, settings)?;
    let metrics = {
        let registry = mgr.metrics().registry();
        let mut registry = registry.write().expect("metrics registry lock");
        host::HostMetrics::register(&mut registry)
    };
    let monitor = host::HostMonitor::new(
        bus.clone(),
        settings.hosts.clone(),
        metrics,
        hosts.cache(),
        settings.operator_namespace.clone(),
    );
    let recorder = EventRecorder::new(mgr.client(), host::NAME, settings.instance.clone());
    let reconciler = host::HostReconciler::new(mgr.client(), monitor.clone(), workloads.cache(), recorder);
    let controller = mgr
        .controller(host::NAME, &hosts)
        .concurrency(settings.host_workers)
        .build(reconciler);
    monitor.set_queue(controller.queue());
    mgr.add(controller);
    mgr.add(host::HeartbeatListener::new(monitor.clone()));
    Ok(monitor)
}

/// The shared Host informer (operator namespace only), with its indexes.
pub fn host_informer(
    mgr: &Manager,
    settings: &Settings,
) -> Result<weft_framework::Informer<Host>, weft_framework::Error> {
    let hosts = mgr.informer::<Host>(InformerOptions::namespaces([settings.operator_namespace.clone()]))?;
    hosts.cache().add_index(
        pod_finalizer::HOSTNAME_INDEX,
        Arc::new(pod_finalizer::hostname_index),
    );
    Ok(hosts)
}

/// Registers the PodFinalizer controller: a metadata-only pod informer per host namespace and the Host
/// informer of the operator namespace.
pub fn add_pod_finalizer(mgr: &mut Manager, settings: &Settings) -> Result<(), weft_framework::Error> {
    use pod_finalizer::{NAME, PodFinalizer, PodMeta, is_relevant};
    let pods = mgr.informer::<PodMeta>(InformerOptions::namespaces(settings.all_host_namespaces()))?;
    let hosts = host_informer(mgr, settings)?;
    let recorder = EventRecorder::new(mgr.client(), NAME, settings.instance.clone());
    let reconciler = PodFinalizer::new(
        mgr.client(),
        hosts.cache(),
        settings.operator_namespace.clone(),
        recorder,
    );
    // Status-only pod updates cannot change the decision: only labels, finalizers and the deletion mark.
    let changes = predicate::labels_changed().or(predicate::finalizers_or_deletion_changed());
    let controller = mgr
        .controller(NAME, &pods)
        .with_predicate(weft_framework::Predicate::object(is_relevant::<PodMeta>))
        .with_predicate(changes)
        .concurrency(settings.pod_finalizer_workers)
        .build(reconciler);
    mgr.add(controller);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_namespaces_always_include_the_operator_namespace() {
        let s = Settings {
            operator_namespace: "weft-system".into(),
            host_namespaces: vec!["b".into(), "a".into(), "weft-system".into(), String::new()],
            ..Settings::default()
        };
        assert_eq!(s.all_host_namespaces(), vec!["a", "b", "weft-system"]);
    }
}
