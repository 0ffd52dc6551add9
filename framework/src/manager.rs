//! The manager: owns the client, the shared informers (one per kind), the probe/metrics server, leader
//! election and the runnables, and runs them in controller-runtime's order.
//!
//! 1. Serve `/healthz`, `/readyz` (503 until synced) and `/metrics`; start every informer and, if
//!    configured, leader election. Caches warm on every replica, leader or not.
//! 2. Wait for every cache to sync (bounded by `cache_sync_timeout`), then report ready.
//! 3. Start runnables that do not need leadership; start the others once this replica leads.
//! 4. On shutdown: stop runnables (in-flight reconciles finish, bounded by `graceful_shutdown_timeout`),
//!    release the lease, stop the watches. Losing the lease or a failing runnable ends `run` with an error:
//!    the process must exit, never keep running as a stale leader.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::controller::ControllerBuilder;
use crate::informer::{Informer, InformerOptions, RunInformer};
use crate::leader::{LeaderElectionConfig, LeaderElectionError, LeaderElector};
use crate::metrics::Metrics;
use crate::runnable::{BoxError, Runnable};
use crate::server::{self, Health};

/// Manager settings.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` are served (`None`: not served).
    pub probe_addr: Option<SocketAddr>,
    /// A second address serving the same endpoints, e.g. a separate metrics port (`None`: none).
    pub metrics_addr: Option<SocketAddr>,
    /// How long to wait for the caches to sync before giving up (controller-runtime: 2 min).
    pub cache_sync_timeout: Duration,
    /// How long in-flight work may take to finish on shutdown (controller-runtime: 30 s).
    pub graceful_shutdown_timeout: Duration,
    /// Leader election, or `None` to lead unconditionally (a single replica).
    pub leader_election: Option<LeaderElectionConfig>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            probe_addr: None,
            metrics_addr: None,
            cache_sync_timeout: Duration::from_secs(120),
            graceful_shutdown_timeout: Duration::from_secs(30),
            leader_election: None,
        }
    }
}

/// Errors from building or running a manager.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding a server address failed.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Two callers asked for the same kind with different watch options.
    #[error("an informer for {kind} already exists with different options ({existing}); one watch per kind")]
    InformerConflict {
        /// The kind.
        kind: String,
        /// The options of the existing informer.
        existing: String,
    },
    /// Namespace scoping was requested for a kind that cannot be scoped that way.
    #[error("informer for {kind}: namespace scoping needs a namespaced kind; use Manager::informer")]
    NotNamespaced {
        /// The kind.
        kind: String,
    },
    /// Caches did not sync in time.
    #[error("caches did not sync within {timeout:?}: {kinds:?} (check RBAC for list/watch)")]
    CacheSyncTimeout {
        /// The timeout.
        timeout: Duration,
        /// Kinds still not synced.
        kinds: Vec<String>,
    },
    /// Leadership was lost.
    #[error(transparent)]
    LeaderElection(#[from] LeaderElectionError),
    /// A runnable failed.
    #[error("{name} failed: {source}")]
    Runnable {
        /// The runnable.
        name: String,
        /// Its error.
        source: BoxError,
    },
}

struct InformerEntry {
    typed: Box<dyn Any + Send + Sync>,
    runner: Arc<dyn RunInformer>,
}

/// Runs shared informers, controllers and other runnables; see the module docs for the order.
pub struct Manager {
    client: Client,
    config: ManagerConfig,
    metrics: Metrics,
    health: Arc<Health>,
    informers: Mutex<HashMap<TypeId, InformerEntry>>,
    runnables: Vec<Box<dyn Runnable>>,
    listeners: Vec<std::net::TcpListener>,
    leader: watch::Sender<bool>,
}

impl Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// A manager using `client`; binds the probe and metrics addresses now, so port 0 can be used and
    /// read back with [`Manager::bound_addrs`].
    pub fn new(client: Client, config: ManagerConfig) -> Result<Self, Error> {
        let mut listeners = Vec::new();
        let mut addrs: Vec<SocketAddr> = config.probe_addr.into_iter().collect();
        if let Some(m) = config.metrics_addr
            && config.probe_addr != Some(m)
        {
            addrs.push(m);
        }
        for addr in addrs {
            let l = std::net::TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })?;
            l.set_nonblocking(true)
                .map_err(|source| Error::Bind { addr, source })?;
            listeners.push(l);
        }
        Ok(Self {
            client,
            config,
            metrics: Metrics::new(),
            health: Health::new(),
            informers: Mutex::new(HashMap::new()),
            runnables: Vec::new(),
            listeners,
            leader: watch::channel(false).0,
        })
    }

    /// The Kubernetes client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The metrics registry shared by every component.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Probe and readiness state.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// The addresses actually bound for the probe and metrics servers, in config order.
    pub fn bound_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Whether this replica currently leads (always true once running without leader election).
    pub fn is_leader(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    fn shared<K>(
        &self,
        options: InformerOptions<K>,
        sources: impl FnOnce(&InformerOptions<K>) -> Vec<(Option<String>, Api<K>)>,
    ) -> Result<Informer<K>, Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let kind = K::plural(&()).to_string();
        let mut informers = self.informers.lock().expect("informer registry lock");
        if let Some(entry) = informers.get(&TypeId::of::<K>()) {
            let existing = entry
                .typed
                .downcast_ref::<Informer<K>>()
                .expect("informer registry keyed by type");
            if existing.options().same_watch(&options) {
                return Ok(existing.clone());
            }
            return Err(Error::InformerConflict {
                kind,
                existing: format!("{:?}", existing.options()),
            });
        }
        let sources = sources(&options);
        let informer = Informer::new(kind.clone(), options, sources, self.metrics.informer(&kind));
        informers.insert(
            TypeId::of::<K>(),
            InformerEntry {
                typed: Box::new(informer.clone()),
                runner: Arc::new(informer.clone()),
            },
        );
        Ok(informer)
    }

    /// The shared informer for a namespaced kind `K`, created on first use with `options` (one watch per
    /// listed namespace, or one for all namespaces). Later calls must pass the same options and get the
    /// same informer: however many controllers use it, there is one watch.
    pub fn informer<K>(&self, options: InformerOptions<K>) -> Result<Informer<K>, Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
    {
        let client = self.client.clone();
        self.shared(options, move |o| match &o.namespaces {
            Some(nss) => nss
                .iter()
                .map(|ns| (Some(ns.clone()), Api::namespaced(client.clone(), ns)))
                .collect(),
            None => vec![(None, Api::all(client))],
        })
    }

    /// The shared informer for a cluster-scoped kind (or a namespaced kind across all namespaces when the
    /// type cannot be scoped statically).
    pub fn cluster_informer<K>(&self, options: InformerOptions<K>) -> Result<Informer<K>, Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        if options.namespaces.is_some() {
            return Err(Error::NotNamespaced {
                kind: K::plural(&()).to_string(),
            });
        }
        let client = self.client.clone();
        self.shared(options, move |_| vec![(None, Api::all(client))])
    }

    /// The informer already created for `K`, if any.
    pub fn existing_informer<K>(&self) -> Option<Informer<K>>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let informers = self.informers.lock().expect("informer registry lock");
        informers
            .get(&TypeId::of::<K>())
            .and_then(|e| e.typed.downcast_ref::<Informer<K>>().cloned())
    }

    /// Starts building a controller named `name` for the objects of `primary`.
    pub fn controller<K>(&self, name: impl Into<String>, primary: &Informer<K>) -> ControllerBuilder<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::Scope: 'static,
    {
        ControllerBuilder::new(name, primary, &self.metrics)
    }

    /// Adds a runnable (e.g. a built controller).
    pub fn add(&mut self, runnable: impl Runnable) {
        self.runnables.push(Box::new(runnable));
    }

    /// Runs everything until `shutdown` resolves (then stops gracefully and returns `Ok`), leadership is
    /// lost, caches fail to sync or a runnable fails (then returns the error; the process should exit).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        let Manager {
            client,
            config,
            metrics,
            health,
            informers,
            runnables,
            listeners,
            leader,
        } = self;
        let stop_watches = CancellationToken::new();
        let mut background = JoinSet::new();
        for l in listeners {
            let addr = l.local_addr().ok();
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => {
                    tracing::info!(?addr, "serving /healthz, /readyz and /metrics");
                    background.spawn(server::serve(
                        l,
                        health.clone(),
                        metrics.clone(),
                        stop_watches.clone(),
                    ));
                }
                Err(source) => {
                    let addr = addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                    return Err(Error::Bind { addr, source });
                }
            }
        }
        let runners: Vec<Arc<dyn RunInformer>> = informers
            .into_inner()
            .expect("informer registry lock")
            .into_values()
            .map(|e| e.runner)
            .collect();
        for r in &runners {
            background.spawn(r.run(stop_watches.child_token()));
        }

        let stop_election = CancellationToken::new();
        // In a JoinSet so that dropping `run` (e.g. an aborted task) also stops renewing the lease.
        let mut election_task = JoinSet::new();
        if let Some(le) = config.leader_election.clone() {
            let status = metrics.leader_status(&le.lease_name);
            let slowpath = metrics.leader_slowpath(&le.lease_name);
            let elector = LeaderElector::new(client.clone(), le, status, slowpath);
            election_task.spawn(elector.run(leader.clone(), stop_election.clone()));
        }
        let has_election = !election_task.is_empty();
        let mut election_done = false;
        let election = async move {
            match election_task.join_next().await {
                Some(result) => result,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(election);

        tokio::pin!(shutdown);
        let stop_runnables = CancellationToken::new();
        let mut running: JoinSet<(String, Result<(), BoxError>)> = JoinSet::new();
        let result = 'run: {
            // Caches first, on every replica.
            let all_synced = join_all(runners.iter().map(|r| r.wait_synced()));
            tokio::select! {
                _ = all_synced => {}
                _ = &mut shutdown => break 'run Ok(()),
                _ = tokio::time::sleep(config.cache_sync_timeout) => {
                    let kinds = runners.iter().filter(|r| !r.is_synced()).map(|r| r.kind().to_string()).collect();
                    break 'run Err(Error::CacheSyncTimeout { timeout: config.cache_sync_timeout, kinds });
                }
            }
            health.set_ready(true);
            tracing::info!(kinds = runners.len(), "caches synced; ready");

            let (mut writers, others): (Vec<_>, Vec<_>) =
                runnables.into_iter().partition(|r| r.needs_leader_election());
            for r in others {
                let name = r.name();
                let fut = r.start(stop_runnables.child_token());
                running.spawn(async move { (name, fut.await) });
            }
            if !has_election {
                leader.send_replace(true);
            }
            let mut leading = leader.subscribe();
            loop {
                if !writers.is_empty() && *leading.borrow_and_update() {
                    for r in writers.drain(..) {
                        let name = r.name();
                        let fut = r.start(stop_runnables.child_token());
                        running.spawn(async move { (name, fut.await) });
                    }
                }
                tokio::select! {
                    _ = &mut shutdown => break 'run Ok(()),
                    changed = leading.changed(), if !writers.is_empty() => {
                        let _ = changed;
                    }
                    lost = &mut election, if has_election && !election_done => {
                        election_done = true;
                        break 'run match lost {
                            Ok(Ok(())) => Ok(()),
                            Ok(Err(e)) => Err(e.into()),
                            Err(join) => Err(Error::Runnable { name: "leader election".into(), source: Box::new(join) }),
                        };
                    }
                    Some(done) = running.join_next(), if !running.is_empty() => match done {
                        Ok((name, Ok(()))) => tracing::info!(%name, "runnable finished"),
                        Ok((name, Err(source))) => break 'run Err(Error::Runnable { name, source }),
                        Err(join) => break 'run Err(Error::Runnable { name: "runnable".into(), source: Box::new(join) }),
                    },
                }
            }
        };

        // Shut down: no new work, in-flight work finishes within the grace period.
        health.set_ready(false);
        stop_runnables.cancel();
        let lost_leadership = matches!(result, Err(Error::LeaderElection(_)));
        if lost_leadership {
            // A former leader must stop writing at once.
            running.abort_all();
        }
        let drained = tokio::time::timeout(config.graceful_shutdown_timeout, async {
            while let Some(done) = running.join_next().await {
                if let Ok((name, Err(e))) = done {
                    tracing::warn!(%name, error = %e, "runnable failed while stopping");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(timeout = ?config.graceful_shutdown_timeout, "runnables did not stop in time; aborting them");
            running.abort_all();
        }
        stop_election.cancel();
        if has_election && !election_done {
            let _ = election.await;
        }
        stop_watches.cancel();
        while background.join_next().await.is_some() {}
        tracing::info!("manager stopped");
        result
    }
}

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the manager");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
