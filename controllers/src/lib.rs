//! The Weft operator's controllers, each wired onto a [`weft_framework::Manager`].
//!
//! Every controller has a module with its pure decision logic (unit-tested without a cluster) and its
//! reconciler, plus an `add_*` function here that registers its informers and itself. The operator binary
//! calls [`add_all`]; later controllers add one line there.

use std::sync::Arc;

use weft_crds::{Host, Workload};
use weft_framework::events::EventRecorder;
use weft_framework::{InformerOptions, Manager, predicate};

pub mod bus;
pub mod host;
pub mod pod_finalizer;

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
}

impl Settings {
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

/// Registers every controller; `bus` is the connected NATS control plane.
pub fn add_all(mgr: &mut Manager, settings: &Settings, bus: &Bus) -> Result<(), weft_framework::Error> {
    add_pod_finalizer(mgr, settings)?;
    add_host_controller(mgr, settings, bus)
}

/// The shared Workload informer (all namespaces), with its indexes.
pub fn workload_informer(mgr: &Manager) -> Result<weft_framework::Informer<Workload>, weft_framework::Error> {
    let workloads = mgr.informer::<Workload>(InformerOptions::all())?;
    workloads
        .cache()
        .add_index(host::WORKLOAD_HOST_INDEX, Arc::new(host::workload_host_index));
    Ok(workloads)
}

/// Registers the Host controller (leader only) and the heartbeat listener (every replica) on the shared
/// Host and Workload informers.
pub fn add_host_controller(
    mgr: &mut Manager,
    settings: &Settings,
    bus: &Bus,
) -> Result<(), weft_framework::Error> {
    let hosts = host_informer(mgr, settings)?;
    let workloads = workload_informer(mgr)?;
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
    mgr.add(host::HeartbeatListener::new(monitor));
    Ok(())
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
            pod_finalizer_workers: 1,
            instance: None,
            hosts: HostSettings::default(),
            host_workers: 1,
        };
        assert_eq!(s.all_host_namespaces(), vec!["a", "b", "weft-system"]);
    }
}
