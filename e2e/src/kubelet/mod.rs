//! The process-kubelet: a Node whose pods run as local processes.
//!
//! It registers a Node (and renews its Lease), binds every unscheduled pod that fits it (what
//! kube-scheduler would do with a single node), and for each pod bound to it:
//!
//! * gives the pod its own loopback IP as `podIP`, from the block 127.k.0.0/16 the kubelet claimed
//!   ([`podnet`]: 127.0.0.N unless another environment runs on the machine); the node's IP is 127.0.0.1;
//! * runs each container as a process (see [`images`] for how images map to local commands) with
//!   the environment the pod asks for (plain values, downward API `fieldRef`/`resourceFieldRef`,
//!   ConfigMap/Secret references, `envFrom`), its output in `<pods_dir>/<ns>_<name>_<uid>/<container>.log`;
//! * gives each container of a pod that wants its ServiceAccount token (`automountServiceAccountToken`
//!   of the pod, else of the ServiceAccount, else yes) a `KUBECONFIG` with a token of that account bound
//!   to the pod, in place of the projected token volume, so in-cluster clients (kube-rs
//!   `Config::infer`, client-go) work unchanged;
//! * reports status (`Running`, conditions, container states, `Ready` from `httpGet`/`tcpSocket`/`exec`
//!   readiness probes or at start), kills containers that fail liveness probes, and restarts exited
//!   containers per `restartPolicy` with crash-loop back-off and `restartCount`;
//! * on graceful deletion sends SIGTERM, waits the grace period, sends SIGKILL, reports the final
//!   status, then deletes the pod with `gracePeriodSeconds=0` and a UID precondition. The object stays
//!   while any finalizer remains; the kubelet never touches finalizers;
//! * kills the processes of pods that vanish without that (force deletion).
//!
//! Not provided: init containers (skipped), volumes, `kubectl logs/exec` (read the log files instead),
//! HTTPS/gRPC probes, startup probes. Decisions are made by the pure modules [`spec`], [`ipam`],
//! [`restart`], [`probe`] and [`status`]; this module and `pod`/`node` do the I/O.

pub mod images;
pub mod ipam;
mod node;
mod pod;
pub mod podnet;
pub mod probe;
pub mod restart;
pub mod spec;
pub mod status;

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Error;
pub use images::ImageCommand;
pub use restart::Backoff;

/// How to run a kubelet.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// The Node name.
    pub node_name: String,
    /// The node's IP (pods' `hostIP`).
    pub host_ip: Ipv4Addr,
    /// Where per-pod directories go.
    pub pods_dir: PathBuf,
    /// Registered image mappings (see [`images::register`]).
    pub images_dir: PathBuf,
    /// Mappings given at start.
    pub extra_images: Vec<ImageCommand>,
    /// The kubelet's own log (one line per event, prefixed with `<namespace>/<pod>`).
    pub log_path: PathBuf,
    /// Crash-loop back-off.
    pub backoff: Backoff,
    /// How often the node Lease is renewed.
    pub lease_renew_interval: Duration,
    /// The apiserver pods reach with their ServiceAccount's credentials; `None` gives pods none.
    pub api_server: Option<ApiServerAccess>,
}

/// Where pods find the apiserver: what an in-cluster `KUBECONFIG` points at.
#[derive(Debug, Clone)]
pub struct ApiServerAccess {
    /// The apiserver URL, e.g. `https://127.0.0.1:6443`.
    pub url: String,
    /// The CA certificate that signed its serving certificate.
    pub ca_cert: PathBuf,
}

impl KubeletConfig {
    /// Defaults for node `node_name` with the given directories and log file.
    pub fn new(node_name: &str, pods_dir: &Path, images_dir: &Path, log_path: &Path) -> Self {
        Self {
            node_name: node_name.to_string(),
            host_ip: Ipv4Addr::LOCALHOST,
            pods_dir: pods_dir.to_path_buf(),
            images_dir: images_dir.to_path_buf(),
            extra_images: Vec::new(),
            log_path: log_path.to_path_buf(),
            backoff: Backoff::default(),
            lease_renew_interval: Duration::from_secs(10),
            api_server: None,
        }
    }
}

/// The per-pod directory name: `<namespace>_<name>_<uid>`.
pub fn pod_dir_name(pod: &Pod) -> String {
    format!(
        "{}_{}_{}",
        pod.namespace().unwrap_or_default(),
        pod.name_any(),
        pod.uid().unwrap_or_default()
    )
}

/// The kubelet's event log: timestamped lines in a file, mirrored to `tracing`.
#[derive(Debug)]
pub(crate) struct EventLog(Mutex<Option<File>>);

impl EventLog {
    fn open(path: &Path) -> Self {
        Self(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok(),
        ))
    }

    pub(crate) fn line(&self, subject: &str, message: impl std::fmt::Display) {
        tracing::info!(target: "weft_e2e::kubelet", "{subject}: {message}");
        let now = k8s_openapi::jiff::Timestamp::now();
        if let Some(file) = self.0.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            let _ = writeln!(file, "{now:.3} {subject}: {message}");
        }
    }
}

/// Counters of what the kubelet has done since it started (exported as metrics by `weft-dev`).
#[derive(Debug, Default)]
pub struct KubeletStats {
    /// Container processes started (first starts and restarts).
    pub container_starts: AtomicU64,
    /// Container processes that exited.
    pub container_exits: AtomicU64,
    /// Pods bound to the node.
    pub pods_bound: AtomicU64,
    /// Final deletes issued after graceful termination.
    pub final_deletes: AtomicU64,
}

/// State shared by the kubelet's tasks.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) config: KubeletConfig,
    pub(crate) ipam: Mutex<ipam::IpAllocator>,
    /// The node's `podCIDR`, the block `ipam` allocates from.
    pub(crate) pod_cidr: String,
    /// Held for the kubelet's life: no other kubelet on the machine uses the block.
    _pod_network: podnet::PodNetworkClaim,
    pub(crate) log: EventLog,
    pub(crate) node_cpus: u64,
    pub(crate) node_memory: u64,
    pub(crate) stats: Arc<KubeletStats>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

type Workers = Arc<Mutex<HashMap<String, pod::WorkerHandle>>>;

/// A running kubelet. [`KubeletHandle::shutdown`] stops it and its pods' processes; dropping it stops
/// only its tasks (the processes are then reaped with the owning process).
#[derive(Debug)]
pub struct KubeletHandle {
    shared: Arc<Shared>,
    workers: Workers,
    tasks: Vec<JoinHandle<()>>,
}

/// Registers the Node and starts the kubelet's tasks on the current runtime.
pub async fn start(client: Client, config: KubeletConfig) -> Result<KubeletHandle, Error> {
    if let Some(parent) = config.log_path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::create_dir_all(&config.pods_dir)
        .map_err(|e| Error::io(format!("create {}", config.pods_dir.display()), e))?;
    let (node_cpus, node_memory) = node::machine_resources();
    let pod_network = podnet::PodNetworkClaim::claim()?;
    let ipam = ipam::IpAllocator::in_block(pod_network.block());
    let shared = Arc::new(Shared {
        log: EventLog::open(&config.log_path),
        client,
        config,
        pod_cidr: ipam.cidr(),
        ipam: Mutex::new(ipam),
        _pod_network: pod_network,
        node_cpus,
        node_memory,
        stats: Arc::default(),
    });
    let node = node::register(&shared).await?;
    shared
        .log
        .line(&format!("node/{}", shared.config.node_name), "registered");
    let workers: Workers = Arc::default();
    let tasks = vec![
        tokio::spawn(node::renew_lease(shared.clone(), node)),
        tokio::spawn(bind_pending_pods(shared.clone())),
        tokio::spawn(run_pods(shared.clone(), workers.clone())),
    ];
    Ok(KubeletHandle {
        shared,
        workers,
        tasks,
    })
}

impl KubeletHandle {
    /// The Node name.
    pub fn node_name(&self) -> &str {
        &self.shared.config.node_name
    }

    /// The block its pods' IPs come from (the Node's `podCIDR`), e.g. `127.0.0.0/16`.
    pub fn pod_cidr(&self) -> &str {
        &self.shared.pod_cidr
    }

    /// What the kubelet has done so far.
    pub fn stats(&self) -> Arc<KubeletStats> {
        self.shared.stats.clone()
    }

    /// How many pods the kubelet is working on (bound to its node and not yet gone).
    pub fn pod_count(&self) -> usize {
        self.workers.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether its watch, binding and lease tasks are all still running.
    pub fn is_healthy(&self) -> bool {
        self.tasks.iter().all(|t| !t.is_finished())
    }

    /// Stops watching, then stops every pod's processes (SIGTERM, SIGKILL after `grace`). The API
    /// objects are left as they are: this is for tearing the environment down.
    pub async fn shutdown(self, grace: Duration) {
        for task in &self.tasks {
            task.abort();
        }
        let workers: Vec<pod::WorkerHandle> = self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, w)| w)
            .collect();
        let stops = workers.into_iter().map(|w| w.shutdown(grace));
        futures::future::join_all(stops).await;
    }
}

/// Whether the kubelet binds `pod` to its node: unscheduled, not deleted, for the default scheduler,
/// and its `nodeSelector` matches the node's labels.
pub fn should_bind(pod: &Pod, node_labels: &std::collections::BTreeMap<String, String>) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let default_scheduler = spec
        .scheduler_name
        .as_deref()
        .is_none_or(|s| s == "default-scheduler");
    let selector_matches = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| node_labels.get(k).is_some_and(|have| have == v));
    spec.node_name.as_deref().is_none_or(str::is_empty)
        && pod.metadata.deletion_timestamp.is_none()
        && default_scheduler
        && selector_matches
}

async fn bind_pending_pods(shared: Arc<Shared>) {
    let node_labels = node::labels(&shared.config.node_name);
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let config = watcher::Config::default().fields("spec.nodeName=");
    let mut stream = watcher(pods, config).default_backoff().applied_objects().boxed();
    while let Some(event) = stream.next().await {
        let pod = match event {
            Ok(pod) => pod,
            Err(e) => {
                shared.log.line("binder", format!("watch error: {e}"));
                continue;
            }
        };
        if !should_bind(&pod, &node_labels) {
            continue;
        }
        let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        let binding = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace, "uid": pod.uid()},
            "target": {"apiVersion": "v1", "kind": "Node", "name": shared.config.node_name},
        });
        let api: Api<Pod> = Api::namespaced(shared.client.clone(), &namespace);
        match api
            .create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &binding)
            .await
        {
            Ok(_) => {
                shared.stats.pods_bound.fetch_add(1, Ordering::Relaxed);
                let message = format!("bound to {}", shared.config.node_name);
                shared.log.line(&format!("{namespace}/{name}"), message);
            }
            // Already bound or gone: another event follows.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
            Err(e) => shared
                .log
                .line(&format!("{namespace}/{name}"), format!("binding failed: {e}")),
        }
    }
}

async fn run_pods(shared: Arc<Shared>, workers: Workers) {
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.config.node_name));
    let mut stream = watcher(pods, config).default_backoff().boxed();
    let mut listed: Option<std::collections::HashSet<String>> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(pod)) => dispatch(&shared, &workers, pod),
            Ok(watcher::Event::InitApply(pod)) => {
                if let (Some(listed), Some(uid)) = (listed.as_mut(), pod.uid()) {
                    listed.insert(uid);
                }
                dispatch(&shared, &workers, pod);
            }
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(uid) = pod.uid() {
                    gone(&workers, &uid);
                }
            }
            Ok(watcher::Event::Init) => listed = Some(Default::default()),
            Ok(watcher::Event::InitDone) => {
                // Pods that vanished while the watch was down.
                if let Some(listed) = listed.take() {
                    let known: Vec<String> = workers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .keys()
                        .cloned()
                        .collect();
                    for uid in known.iter().filter(|uid| !listed.contains(*uid)) {
                        gone(&workers, uid);
                    }
                }
            }
            Err(e) => shared.log.line("pods", format!("watch error: {e}")),
        }
    }
}

fn dispatch(shared: &Arc<Shared>, workers: &Workers, pod: Pod) {
    let Some(uid) = pod.uid() else { return };
    let mut workers = workers.lock().unwrap_or_else(|p| p.into_inner());
    let worker = workers
        .entry(uid)
        .or_insert_with(|| pod::WorkerHandle::spawn(shared.clone(), &pod));
    worker.update(pod);
}

fn gone(workers: &Workers, uid: &str) {
    if let Some(worker) = workers.lock().unwrap_or_else(|p| p.into_inner()).remove(uid) {
        worker.gone();
    }
}

/// Messages to a pod worker.
#[derive(Debug)]
pub(crate) enum PodMsg {
    Update(Box<Pod>),
    Gone,
    Shutdown(Duration, tokio::sync::oneshot::Sender<()>),
}

pub(crate) type PodSender = mpsc::UnboundedSender<PodMsg>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn binds_only_unscheduled_live_default_scheduler_pods_that_fit() {
        let labels = node::labels("n0");
        let pod = |spec: serde_json::Value, meta: serde_json::Value| -> Pod {
            let mut m = json!({"name": "p"});
            m.as_object_mut()
                .unwrap()
                .extend(meta.as_object().unwrap().clone());
            serde_json::from_value(json!({"metadata": m, "spec": spec})).unwrap()
        };
        let base = json!({"containers": []});
        assert!(should_bind(&pod(base.clone(), json!({})), &labels));
        assert!(!should_bind(
            &pod(json!({"containers": [], "nodeName": "x"}), json!({})),
            &labels
        ));
        assert!(!should_bind(
            &pod(base.clone(), json!({"deletionTimestamp": "2027-01-01T00:00:00Z"})),
            &labels
        ));
        assert!(!should_bind(
            &pod(json!({"containers": [], "schedulerName": "weft"}), json!({})),
            &labels
        ));
        assert!(should_bind(
            &pod(
                json!({"containers": [], "nodeSelector": {"kubernetes.io/os": "linux"}}),
                json!({})
            ),
            &labels
        ));
        assert!(!should_bind(
            &pod(
                json!({"containers": [], "nodeSelector": {"disk": "ssd"}}),
                json!({})
            ),
            &labels
        ));
    }
}
