//! `weft-gateway`: the runtime gateway. Watches Hosts (in the operator namespace), Workloads and host
//! pods through one shared cache each, keeps the route table, and proxies HTTP by Host header to the
//! hosts of Ready Workloads. Serves `/healthz`, `/readyz` (ready once the caches have synced) and
//! `/metrics`; every replica serves traffic (no leader election, nothing is written).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use k8s_openapi::api::core::v1::Pod;
use weft_crds::{Host, Workload};
use weft_framework::cli::{init_tracing, parse_duration};
use weft_framework::{InformerOptions, Manager, ManagerConfig};
use weft_gateway::controller::RouteController;
use weft_gateway::metrics::GatewayMetrics;
use weft_gateway::proxy::{Proxy, ProxySettings};
use weft_gateway::server::ProxyServer;

/// The runtime gateway: routes HTTP by Host header to the hosts of Ready Workloads.
#[derive(Debug, Parser)]
#[command(name = "weft-gateway", version)]
struct Args {
    /// Where the proxy listens (HTTP/1.1 and h2c).
    #[arg(long, env = "WEFT_GATEWAY_ADDR", default_value = "0.0.0.0:8000")]
    http_addr: SocketAddr,

    /// `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, default_value = "0.0.0.0:8081")]
    health_probe_bind_address: SocketAddr,

    /// The namespace of the operator, where Host objects live.
    #[arg(long, env = "OPERATOR_NAMESPACE")]
    operator_namespace: String,

    /// Namespaces whose pods may be host pods (comma-separated; the operator namespace is always one):
    /// a terminating host pod leaves the table at once.
    #[arg(long, env = "WEFT_HOST_NAMESPACES", value_delimiter = ',')]
    host_namespaces: Vec<String>,

    /// Namespaces whose Workloads are routed (comma-separated; empty: all namespaces).
    #[arg(long, env = "WEFT_WATCH_NAMESPACES", value_delimiter = ',')]
    watch_namespaces: Vec<String>,

    /// Connecting to a host gives up after this long (the request is then retried on another host).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    connect_timeout: Duration,

    /// A request gives up (504) when no response head arrived within this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    request_timeout: Duration,

    /// How long a host that refused a connection is skipped.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    ejection_time: Duration,

    /// Where requests for unknown hosts go instead of a 503 (`http://host:port`), like wasmCloud's
    /// `-fallback-endpoint`.
    #[arg(long)]
    fallback_endpoint: Option<http::Uri>,

    /// After SIGTERM: keep accepting this long (not ready) so load balancers stop sending first.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    shutdown_delay: Duration,

    /// Then: how long in-flight requests may take to finish.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    drain_timeout: Duration,

    /// Proxy threads, each with its own event loop and upstream pools, so a request never crosses
    /// threads (default: one per CPU).
    #[arg(long)]
    proxy_threads: Option<usize>,

    /// Give up (exit) if the caches do not sync within this long, e.g. missing RBAC.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    cache_sync_timeout: Duration,

    /// Log format: `text` or `json`. The level comes from RUST_LOG (default `info`).
    #[arg(long, default_value = "text")]
    log_format: String,
}

fn namespaces(list: &[String]) -> Vec<String> {
    let mut ns: Vec<String> = list.iter().filter(|n| !n.is_empty()).cloned().collect();
    ns.sort();
    ns.dedup();
    ns
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(&args.log_format)?;
    if let Some(uri) = &args.fallback_endpoint {
        anyhow::ensure!(
            uri.scheme_str() == Some("http") && uri.authority().is_some(),
            "--fallback-endpoint must be http://host[:port], got {uri}"
        );
    }
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let config = ManagerConfig {
        probe_addr: Some(args.health_probe_bind_address),
        metrics_addr: None,
        cache_sync_timeout: args.cache_sync_timeout,
        graceful_shutdown_timeout: args.shutdown_delay + args.drain_timeout + Duration::from_secs(1),
        leader_election: None,
    };
    let mut manager = Manager::new(client, config).context("starting the manager")?;
    let hosts = manager.informer::<Host>(InformerOptions::namespaces([args.operator_namespace.clone()]))?;
    let watched = namespaces(&args.watch_namespaces);
    let workloads = manager.informer::<Workload>(if watched.is_empty() {
        InformerOptions::all()
    } else {
        InformerOptions::namespaces(watched)
    })?;
    let mut host_namespaces = args.host_namespaces.clone();
    host_namespaces.push(args.operator_namespace.clone());
    let pods = manager.informer::<Pod>(
        InformerOptions::namespaces(namespaces(&host_namespaces))
            .labels(weft_crds::names::labels::HOST_POD_GROUP),
    )?;
    let metrics = {
        let registry = manager.metrics().registry();
        let mut registry = registry.write().expect("metrics registry lock");
        GatewayMetrics::register(&mut registry)
    };
    let threads = args
        .proxy_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get));
    let proxy = Arc::new(Proxy::new(
        ProxySettings {
            connect_timeout: args.connect_timeout,
            request_timeout: args.request_timeout,
            ejection: args.ejection_time,
            fallback: args.fallback_endpoint.clone(),
            threads,
        },
        metrics.clone(),
    ));
    manager.add(RouteController::new(
        &hosts,
        &workloads,
        &pods,
        proxy.clone(),
        metrics,
    ));
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding {}", args.http_addr))?;
    let proxy_addr = listener.local_addr()?;
    manager.add(ProxyServer::new(
        listener,
        proxy,
        threads,
        args.shutdown_delay,
        args.drain_timeout,
    ));
    tracing::info!(%proxy_addr, addrs = ?manager.bound_addrs(), operator_namespace = %args.operator_namespace, "weft-gateway starting");
    manager
        .run(weft_framework::shutdown_signal())
        .await
        .context("the manager stopped")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_with_defaults() {
        let a = Args::try_parse_from(["weft-gateway", "--operator-namespace", "weft-system"]).unwrap();
        assert_eq!(a.http_addr, "0.0.0.0:8000".parse().unwrap());
        assert_eq!(a.connect_timeout, Duration::from_secs(1));
        assert!(a.fallback_endpoint.is_none());
        assert!(
            Args::try_parse_from(["weft-gateway"]).is_err(),
            "the operator namespace is required"
        );
    }
}
