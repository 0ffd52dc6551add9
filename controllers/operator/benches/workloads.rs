//! Workload placement end to end (`cargo test -p weft-operator --bench workloads`): N Workloads (the
//! hello component) created at once → placed by the scheduler, started over NATS on 3 real `weft-host`s
//! and Ready, side by side in the same run with Kubernetes' own path on the same control plane: N pods
//! created at once → bound and run as processes by the process-kubelet and Ready. Both are created by
//! the same client with the same concurrency; times are measured client-side from each create request
//! to the first watch event that shows the object Ready. N is `WEFT_BENCH_N` (default 300).
//!
//! Results go to `docs/benchmarks.md`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use support::{Operator, install_host_crd, install_rbac, pod, ready_host_on, spawn_host};
use weft_crds::condition;
use weft_crds::workload::{ConfigLayer, HostInterface, WorkloadComponent};
use weft_crds::{Workload, WorkloadSpec};
use weft_e2e::Env;

const SA: &str = "weft-operator";
const IN_FLIGHT: usize = 16;

fn hello(i: usize) -> Workload {
    Workload::new(
        &format!("hello-{i}"),
        WorkloadSpec {
            components: Some(vec![WorkloadComponent {
                name: "http".into(),
                image: format!("file://{}", weft_test_components::HELLO),
                ..Default::default()
            }]),
            host_interfaces: Some(vec![HostInterface {
                namespace: "wasi".into(),
                package: "http".into(),
                interfaces: vec!["incoming-handler".into()],
                config_layer: ConfigLayer {
                    config: Some([("host".to_string(), format!("hello-{i}.bench"))].into()),
                    ..Default::default()
                },
                ..Default::default()
            }]),
            ..Default::default()
        },
    )
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn workload_ready(w: &Workload) -> bool {
    w.status
        .as_ref()
        .is_some_and(|s| condition::is_true(&s.conditions, "Ready"))
}

/// Creates `objects` through `api`, `IN_FLIGHT` at a time, and returns each one's create → Ready time
/// and the time until all were Ready.
async fn run<K>(api: Api<K>, objects: Vec<K>, ready: fn(&K) -> bool) -> (Vec<Duration>, Duration)
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug + Send + Sync + 'static,
{
    let n = objects.len();
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let done: Arc<Mutex<HashMap<String, Duration>>> = Arc::default();
    let watch = tokio::spawn({
        let (api, created, done) = (api.clone(), created.clone(), done.clone());
        async move {
            let mut events = watcher(api, watcher::Config::default()).boxed();
            while let Ok(Some(event)) = events.try_next().await {
                if let watcher::Event::Apply(o) | watcher::Event::InitApply(o) = event
                    && ready(&o)
                {
                    let name = o.name_any();
                    let Some(t0) = created.lock().unwrap().get(&name).copied() else {
                        continue;
                    };
                    let mut done = done.lock().unwrap();
                    done.entry(name).or_insert_with(|| t0.elapsed());
                    if done.len() == n {
                        return;
                    }
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    stream::iter(objects)
        .for_each_concurrent(IN_FLIGHT, |o| {
            let (api, created) = (api.clone(), created.clone());
            async move {
                created.lock().unwrap().insert(o.name_any(), Instant::now());
                api.create(&PostParams::default(), &o).await.expect("create");
            }
        })
        .await;
    tokio::time::timeout(Duration::from_secs(600), watch)
        .await
        .expect("everything Ready within 10 minutes")
        .expect("watch");
    let all = start.elapsed();
    let mut times: Vec<Duration> = done.lock().unwrap().values().copied().collect();
    times.sort();
    (times, all)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    support::percentile(sorted, p).as_secs_f64() * 1000.0
}

fn main() {
    let Some(rt) = support::bench_runtime() else {
        return;
    };
    let n: usize = std::env::var("WEFT_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    rt.block_on(async {
        let env = Env::shared().await;
        let admin = env.admin_client();
        install_host_crd(&admin).await;

        // Pods through the process-kubelet.
        let pods_ns = env.new_namespace("bench-pods").await.expect("namespace");
        let pods: Vec<Pod> = (0..n).map(|i| pod(&format!("p-{i}"), None)).collect();
        let (pod_times, pod_all) = run(Api::namespaced(admin.clone(), pods_ns.name()), pods, pod_ready).await;

        // Workloads through the operator, on 3 hosts.
        let ns = env.new_namespace("bench-wl").await.expect("namespace");
        install_rbac(&admin, ns.name(), &[], &[SA]).await;
        let operator = Operator::start(env, ns.name(), SA, &[], &[]).await;
        let url = operator.nats.as_ref().expect("own NATS").url();
        let host_api = Api::namespaced(admin.clone(), ns.name());
        let hosts: Vec<_> = (0..3)
            .map(|_| spawn_host(&url, weft_testkit::free_port(), &[]))
            .collect();
        for h in &hosts {
            ready_host_on(&host_api, h.http_port).await;
        }
        let workloads: Vec<Workload> = (0..n).map(hello).collect();
        let (wl_times, wl_all) = run(
            Api::namespaced(admin.clone(), ns.name()),
            workloads,
            workload_ready,
        )
        .await;

        if let Some(m) = operator.metrics().await {
            let mean = |name: &str, labels: &[(&str, &str)]| {
                let sum = m.value(&format!("{name}_sum"), labels).unwrap_or(0.0);
                let count = m.value(&format!("{name}_count"), labels).unwrap_or(0.0);
                if count > 0.0 { sum / count * 1000.0 } else { 0.0 }
            };
            println!(
                "operator means: reconcile {:.1} ms, start request {:.1} ms, status request {:.1} ms, scheduling {:.2} ms",
                mean("controller_runtime_reconcile_time_seconds", &[("controller", "workload-replica")]),
                mean("weft_host_request_seconds", &[("command", "start"), ("result", "ok")]),
                mean("weft_host_request_seconds", &[("command", "status"), ("result", "ok")]),
                mean("weft_workload_scheduling_seconds", &[]),
            );
        }
        let rate = |all: Duration| n as f64 / all.as_secs_f64();
        println!(
            "pods (process-kubelet, baseline): n={n} {:.1}/s, create→Ready p50 {:.0} ms p99 {:.0} ms",
            rate(pod_all),
            pct(&pod_times, 0.5),
            pct(&pod_times, 0.99)
        );
        println!(
            "workloads (operator, 3 hosts):    n={n} {:.1}/s, create→Ready p50 {:.0} ms p99 {:.0} ms",
            rate(wl_all),
            pct(&wl_times, 0.5),
            pct(&wl_times, 0.99)
        );
        println!(
            "ratio (workloads / pods): {:.2}x the rate",
            rate(wl_all) / rate(pod_all)
        );
        drop(hosts);
    });
}
