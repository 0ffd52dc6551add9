//! What the gateway's integration tests share: a route table over real upstream addresses and the
//! gateway's own listener and request path on a free loopback port.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weft_crds::condition::{Condition, ConditionStatus};
use weft_crds::workload::{ConfigLayer, HostInterface};
use weft_crds::{Host, HostFields, HostStatus, Workload, WorkloadSpec, WorkloadStatus};
use weft_framework::Runnable;
use weft_gateway::metrics::GatewayMetrics;
use weft_gateway::proxy::{Proxy, ProxySettings};
use weft_gateway::routes;
use weft_gateway::server::ProxyServer;

fn ready() -> Vec<Condition> {
    vec![Condition::new("Ready", ConditionStatus::True)]
}

/// The table with one Ready replica of `hostname` on each host, whose ingress is the given address.
pub fn table_to(hostname: &str, upstreams: &[SocketAddr]) -> routes::RouteTable {
    let mut hosts = Vec::new();
    let mut workloads = Vec::new();
    for (i, upstream) in upstreams.iter().enumerate() {
        let host_id = format!("h{i}");
        let mut host = Host::new(
            &format!("host-{i}"),
            HostFields {
                host_id: host_id.clone(),
                hostname: Some(upstream.ip().to_string()),
                http_port: Some(u32::from(upstream.port())),
                ..Default::default()
            },
        );
        host.status = Some(HostStatus {
            conditions: ready(),
            ..Default::default()
        });
        let mut workload = Workload::new(
            &format!("replica-{i}"),
            WorkloadSpec {
                host_interfaces: Some(vec![HostInterface {
                    namespace: "wasi".into(),
                    package: "http".into(),
                    interfaces: vec!["incoming-handler".into()],
                    config_layer: ConfigLayer {
                        config: Some([("host".to_string(), hostname.to_string())].into()),
                        ..Default::default()
                    },
                    ..Default::default()
                }]),
                ..Default::default()
            },
        );
        workload.metadata.namespace = Some("default".into());
        workload.status = Some(WorkloadStatus {
            conditions: ready(),
            host_id: Some(host_id),
            workload_id: Some(format!("w-{i}")),
            ..Default::default()
        });
        hosts.push(host);
        workloads.push(workload);
    }
    routes::build(hosts.iter(), workloads.iter(), &HashSet::new())
}

/// The gateway's listener and request path on a free loopback port, serving `table`.
pub async fn start_gateway(table: routes::RouteTable) -> (SocketAddr, CancellationToken) {
    let mut registry = Registry::default();
    let proxy = Arc::new(Proxy::new(
        ProxySettings {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            ejection: Duration::from_secs(1),
            fallback: None,
            threads: 2,
        },
        GatewayMetrics::register(&mut registry),
    ));
    proxy.publish(table);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let cancel = CancellationToken::new();
    let server = Box::new(ProxyServer::new(
        listener,
        proxy,
        2,
        Duration::ZERO,
        Duration::from_secs(5),
    ));
    tokio::spawn(server.start(cancel.clone()));
    (addr, cancel)
}
