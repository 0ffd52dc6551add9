//! The Gateway-route controller: whenever a Host, Workload or host pod changes in the shared caches, the
//! route table is rebuilt from them (a pure function, see [`crate::routes`]) and published to the
//! request path. Changes that arrive while a rebuild runs are folded into the next one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use weft_crds::condition;
use weft_crds::names::condition_types as ct;
use weft_crds::{Host, Workload};
use weft_framework::{BoxError, Cache, Informer, Runnable};

use crate::metrics::GatewayMetrics;
use crate::proxy::Proxy;
use crate::routes;

/// The controller's name.
pub const NAME: &str = "gateway-route";

/// The IPs of host pods that are terminating.
pub fn terminating_pod_ips(pods: &[Arc<Pod>]) -> HashSet<String> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect()
}

/// Rebuilds the route table on every change of its inputs.
pub struct RouteController {
    hosts: Cache<Host>,
    workloads: Cache<Workload>,
    pods: Cache<Pod>,
    proxy: Arc<Proxy>,
    metrics: GatewayMetrics,
    changed: Arc<Notify>,
}

impl RouteController {
    /// A controller over the shared informers, publishing to `proxy`.
    pub fn new(
        hosts: &Informer<Host>,
        workloads: &Informer<Workload>,
        pods: &Informer<Pod>,
        proxy: Arc<Proxy>,
        metrics: GatewayMetrics,
    ) -> Self {
        let changed = Arc::new(Notify::new());
        let n = changed.clone();
        hosts.add_handler(Arc::new(move |_| n.notify_one()));
        let n = changed.clone();
        workloads.add_handler(Arc::new(move |_| n.notify_one()));
        let n = changed.clone();
        pods.add_handler(Arc::new(move |_| n.notify_one()));
        Self {
            hosts: hosts.cache(),
            workloads: workloads.cache(),
            pods: pods.cache(),
            proxy,
            metrics,
            changed,
        }
    }

    /// Builds and publishes the table; returns the number of routes.
    pub fn rebuild(&self) -> usize {
        let hosts = self.hosts.list();
        let workloads = self.workloads.list();
        let terminating = terminating_pod_ips(&self.pods.list());
        let table = routes::build(
            hosts.iter().map(|h| h.as_ref()),
            workloads.iter().map(|w| w.as_ref()),
            &terminating,
        );
        let before = self.proxy.table();
        // Propagation: for upstreams that just appeared, how long ago their Workload turned Ready.
        let known: HashSet<(&str, &str)> = before
            .table
            .hostnames()
            .into_iter()
            .flat_map(|h| {
                before
                    .table
                    .get(h)
                    .into_iter()
                    .flat_map(move |r| r.upstreams.iter().map(move |u| (h, u.workload_id.as_str())))
            })
            .collect();
        let ready_since: HashMap<String, Timestamp> = workloads
            .iter()
            .filter_map(|w| {
                let s = w.status.as_ref()?;
                let c = condition::find(&s.conditions, ct::READY)?;
                Some((s.workload_id.clone()?, c.last_transition_time.as_ref()?.0))
            })
            .collect();
        let now = Timestamp::now();
        for name in table.hostnames() {
            for u in table.get(name).map(|r| r.upstreams.as_slice()).unwrap_or(&[]) {
                if !known.contains(&(name, u.workload_id.as_str()))
                    && let Some(since) = ready_since.get(&u.workload_id)
                    && let Ok(d) = Duration::try_from(now.duration_since(*since))
                {
                    self.metrics.propagated(d);
                }
            }
        }
        let count = table.len();
        self.metrics.table(count, table.upstream_count());
        if table != before.table {
            tracing::debug!(
                routes = count,
                upstreams = table.upstream_count(),
                "route table changed"
            );
            self.proxy.publish(table);
        }
        count
    }
}

impl Runnable for RouteController {
    fn name(&self) -> String {
        NAME.into()
    }

    fn needs_leader_election(&self) -> bool {
        // Every gateway replica serves: none writes.
        false
    }

    fn start(self: Box<Self>, cancel: CancellationToken) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async move {
            let routes = self.rebuild();
            tracing::info!(routes, "route table built from the caches");
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = self.changed.notified() => { self.rebuild(); }
                }
            }
        })
    }
}
