//! Prometheus for real: a Prometheus built from its Go module scrapes the operator, the hosts and the
//! gateway of a running system under traffic; PromQL through its HTTP API finds reconcile, placement,
//! request and host series with data, and every query of the shipped Grafana dashboard
//! (`deploy/charts/weft/dashboards/weft.json`) returns data (a panel that would stay empty fails).

use std::collections::BTreeMap;
use std::time::Duration;

use weft_e2e::Env;
use weft_e2e::system::manifests::source_file;
use weft_e2e::system::prometheus::{Prometheus, ScrapeJob, dashboard_queries};
use weft_e2e::system::{HELLO_WORLD_BODY, HELLO_WORLD_HOST, Stack, StackOptions};
use weft_e2e::traffic::RequestLoop;
use weft_testkit::TempDir;

use crate::support::{SOON, eventually};

const DASHBOARD: &str = "deploy/charts/weft/dashboards/weft.json";

async fn has_data(prometheus: &Prometheus, promql: &str) -> bool {
    prometheus
        .query(promql)
        .await
        .is_ok_and(|samples| samples.iter().any(|s| s.value.is_finite()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_component_and_every_dashboard_query_has_data() {
    let env = Env::shared().await;
    let ns = env.new_namespace("metrics").await.expect("namespace");
    let stack = Stack::start(env, &ns, StackOptions::new(env, 2), SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let hosts = stack.host_admin_addrs().await.expect("host admin addresses");
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    let jobs = [
        ScrapeJob::new("weft-operator", stack.operator_addrs().await),
        ScrapeJob::new("weft-host", hosts),
        ScrapeJob::new("weft-gateway", [stack.gateway.probes]),
    ];
    let dir = TempDir::new("prometheus").expect("temp dir");
    let prometheus = Prometheus::start(dir.path(), &jobs, Duration::from_secs(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Every target answers its scrape.
    let up = eventually("every target up", SOON, || async {
        let up = prometheus.targets_up().await.ok()?;
        (up.len() == 4 && up.values().all(|u| *u)).then_some(up)
    })
    .await;
    println!("targets: {up:?}");

    // Scraped from before the first placement, as a long-running Prometheus would be: the scheduling
    // histogram's buckets are seen at zero first, so their rate shows the placements.
    stack
        .deploy_hello_world(true, SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let traffic = RequestLoop::start(
        stack.gateway.proxy,
        HELLO_WORLD_HOST,
        HELLO_WORLD_BODY,
        1,
        Duration::from_secs(300),
    );

    // The series one looks at first, with data: reconciles, placements, requests (gateway and hosts),
    // Hosts, workloads on hosts.
    for (what, promql) in [
        (
            "reconciles",
            r#"sum(controller_runtime_reconcile_total{job="weft-operator"}) > 0"#,
        ),
        (
            "placements",
            r#"sum(weft_workload_placements_total{job="weft-operator"}) >= 2"#,
        ),
        (
            "gateway requests",
            r#"sum(weft_gateway_requests_total{job="weft-gateway"}) > 0"#,
        ),
        (
            "host requests",
            r#"sum(weft_host_http_requests_total{job="weft-host"}) > 0"#,
        ),
        ("hosts", r#"sum(weft_hosts{job="weft-operator"}) >= 2"#),
        (
            "host workloads",
            r#"sum(weft_runtime_workloads{job="weft-host"}) >= 2"#,
        ),
    ] {
        eventually(&format!("{what}: {promql}"), SOON, || async {
            has_data(&prometheus, promql).await.then_some(())
        })
        .await;
    }

    // Every query of the shipped dashboard, as Grafana would send it over a 30 s window.
    let text = std::fs::read_to_string(source_file(DASHBOARD)).expect("the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let queries = dashboard_queries(&dashboard, "30s");
    assert!(
        queries.len() >= 15,
        "the dashboard has its panels: {}",
        queries.len()
    );
    for q in &queries {
        // A bad query is a failure at once, with Prometheus' message.
        prometheus
            .query(&q.expr)
            .await
            .unwrap_or_else(|e| panic!("panel {:?}: {e}", q.title));
    }
    // Every query returns data, and every series carries the labels its legend shows.
    let mut wrong: BTreeMap<String, String> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        wrong.clear();
        for q in &queries {
            let samples = prometheus.query(&q.expr).await.unwrap_or_default();
            let finite: Vec<_> = samples.iter().filter(|s| s.value.is_finite()).collect();
            if finite.is_empty() {
                wrong.insert(q.title.clone(), format!("no data: {}", q.expr));
            } else if let Some(s) = finite
                .iter()
                .find(|s| q.legend_labels.iter().any(|l| !s.labels.contains_key(l)))
            {
                wrong.insert(
                    q.title.clone(),
                    format!(
                        "legend {:?} but a series has {:?}: {}",
                        q.legend_labels, s.labels, q.expr
                    ),
                );
            }
        }
        if wrong.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        wrong.is_empty(),
        "dashboard queries that would show nothing or mislabel: {wrong:#?}"
    );

    let traffic = traffic.finish().await;
    assert!(traffic.failures.is_empty(), "{}", traffic.summary(10));
    println!(
        "{} dashboard queries with data; {} requests through the gateway meanwhile",
        queries.len(),
        traffic.total()
    );
}
