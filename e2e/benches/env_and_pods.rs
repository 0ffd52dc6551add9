//! Benchmarks of the test environment (run with `cargo bench -p weft-e2e --bench env_and_pods`):
//!
//! 1. warm start of the whole environment (cached binaries): etcd, kube-apiserver, kube-controller-manager
//!    ready (the `default` ServiceAccount exists), nats-server, process-kubelet registered — against the
//!    30 s target;
//! 2. pod created → `Ready` observed through a watch, under the process-kubelet, one pod at a time
//!    (latency), without and with an HTTP readiness probe — against Kubernetes' pod-startup SLO (5 s p99);
//! 3. a burst of pods created at once → all `Ready` (throughput).
//!
//! `WEFT_BENCH_STARTS` (default 3) and `WEFT_BENCH_PODS` (default 30) set the sample counts.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::PostParams;
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use serde_json::json;
use weft_e2e::{EnvOptions, RunningEnv, TESTPOD_IMAGE};

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(name: &str, mut samples: Vec<Duration>, baseline: Duration, baseline_name: &str) {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 50.0), percentile(&samples, 99.0));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name}: n={} min={:.1} ms p50={:.1} ms p99={:.1} ms max={:.1} ms | {baseline_name} {:.0} ms, p99/{baseline_name} = {:.3}",
        samples.len(),
        ms(samples[0]),
        ms(p50),
        ms(p99),
        ms(*samples.last().unwrap()),
        ms(baseline),
        p99.as_secs_f64() / baseline.as_secs_f64(),
    );
}

fn pod(name: &str, probe: bool) -> Pod {
    let mut container = json!({
        "name": "main",
        "image": TESTPOD_IMAGE,
        "args": [if probe { "http" } else { "sleep" }],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
    });
    if probe {
        container["readinessProbe"] =
            json!({"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1});
    }
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]},
    }))
    .unwrap()
}

fn ready(pod: Option<&Pod>) -> bool {
    pod.and_then(|p| p.status.as_ref()?.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Watches (from now on, on its own task) until pod `name` is Ready.
fn spawn_ready_watch(
    pods: &Api<Pod>,
    name: &str,
) -> tokio::task::JoinHandle<Result<Option<Pod>, kube::runtime::wait::Error>> {
    let (pods, name) = (pods.clone(), name.to_string());
    tokio::spawn(async move { await_condition(pods, &name, ready).await })
}

async fn pod_to_ready(pods: &Api<Pod>, name: &str, probe: bool) -> Duration {
    let watch = spawn_ready_watch(pods, name);
    let start = Instant::now();
    pods.create(&PostParams::default(), &pod(name, probe))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), watch)
        .await
        .expect("pod ready within 60 s")
        .unwrap()
        .unwrap();
    start.elapsed()
}

async fn namespace(client: &Client, name: &str) -> Api<Pod> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), name);
    while sa.get_opt("default").await.unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Api::namespaced(client.clone(), name)
}

#[tokio::main]
async fn main() {
    let starts = env_count("WEFT_BENCH_STARTS", 3);
    let pod_samples = env_count("WEFT_BENCH_PODS", 30);
    let mut start_times = Vec::new();
    let mut env = None;
    for i in 0..starts {
        let started = Instant::now();
        let running = RunningEnv::start(EnvOptions::default())
            .await
            .expect("environment starts");
        start_times.push(started.elapsed());
        if i + 1 < starts {
            running.stop(Duration::from_secs(1)).await;
        } else {
            env = Some(running);
        }
    }
    report(
        "environment warm start",
        start_times,
        Duration::from_secs(30),
        "target",
    );

    let env = env.expect("at least one start");
    let handle = weft_e2e::Env::from_coordinates(env.coordinates().clone())
        .await
        .unwrap();
    let client = handle.admin_client();

    for (label, probe) in [
        ("pod created → Ready (no probe)", false),
        ("pod created → Ready (HTTP readiness probe)", true),
    ] {
        let pods = namespace(&client, if probe { "bench-probe" } else { "bench-plain" }).await;
        // One warm-up pod (first watch, first process start), not counted.
        pod_to_ready(&pods, "warmup", probe).await;
        let mut samples = Vec::new();
        for i in 0..pod_samples {
            samples.push(pod_to_ready(&pods, &format!("p{i}"), probe).await);
        }
        report(label, samples, Duration::from_secs(5), "SLO");
    }

    let pods = namespace(&client, "bench-burst").await;
    let burst = pod_samples;
    let started = Instant::now();
    let waits: Vec<_> = (0..burst)
        .map(|i| spawn_ready_watch(&pods, &format!("b{i}")))
        .collect();
    for i in 0..burst {
        pods.create(&PostParams::default(), &pod(&format!("b{i}"), false))
            .await
            .unwrap();
    }
    for wait in waits {
        tokio::time::timeout(Duration::from_secs(120), wait)
            .await
            .expect("burst pod ready")
            .unwrap()
            .unwrap();
    }
    let took = started.elapsed();
    println!(
        "burst of {burst} pods created → all Ready: {:.0} ms ({:.1} pods/s)",
        took.as_secs_f64() * 1000.0,
        burst as f64 / took.as_secs_f64()
    );
    env.stop(Duration::from_secs(2)).await;
}
