//! The gateway measured (`cargo test -p weft-operator --bench gateway`, or `cargo bench`), on the real
//! environment with one real `weft-host` running the hello component:
//!
//! 1. Throughput and latency: `wrk` (2 threads, 32 connections, `WEFT_BENCH_SECONDS` s, default 5) with
//!    `Host: bench.gw.test` straight at the host, then through `weft-gateway`, in the same run.
//! 2. Route propagation: `WEFT_BENCH_N` (default 50) Workloads created one after another; for each, the
//!    time from the watch event that shows it Ready to the first `200` through the gateway (polled
//!    every millisecond).
//!
//! Both binaries come from the same build profile as the bench. Results go to `docs/benchmarks.md`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use support::{
    Operator, hello_workload, install_host_crd, install_rbac, percentile, ready_host_on, spawn_host,
};
use weft_crds::{Host, Workload};
use weft_e2e::Env;
use weft_e2e::system::{self, GatewayProcess};
use weft_e2e::testing::http_get_host;

const SA: &str = "weft-operator";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Requests/s and p99 (ms) from `wrk --latency` output.
fn parse_wrk(out: &str) -> (f64, f64) {
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let p99 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(str::trim)
        .map(|v| {
            let (n, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
            let n: f64 = n.parse().unwrap_or(0.0);
            match unit {
                "us" => n / 1000.0,
                "s" => n * 1000.0,
                _ => n,
            }
        })
        .unwrap_or(0.0);
    (rps, p99)
}

fn wrk(target: &str, seconds: usize) -> (f64, f64, String) {
    let out = std::process::Command::new("wrk")
        .args([
            "-t2",
            "-c32",
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            "Host: bench.gw.test",
        ])
        .arg(target)
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (rps, p99) = parse_wrk(&text);
    (rps, p99, text)
}

fn main() {
    let Some(rt) = support::bench_runtime() else {
        return;
    };
    rt.block_on(run());
}

async fn run() {
    let seconds = env_usize("WEFT_BENCH_SECONDS", 5);
    let n = env_usize("WEFT_BENCH_N", 50);
    let env = Env::shared().await;
    let ns = env.new_namespace("bench-gw").await.expect("namespace");
    let admin: Client = env.admin_client();
    install_host_crd(&admin).await;
    install_rbac(&admin, ns.name(), &[], &[SA]).await;
    system::install_gateway_rbac(&admin, ns.name())
        .await
        .expect("gateway RBAC");
    let operator = Operator::start(env, ns.name(), SA, &[], &[]).await;
    let url = operator.nats.as_ref().expect("own NATS").url();
    let hosts: Api<Host> = Api::namespaced(admin.clone(), ns.name());
    let host = spawn_host(&url, weft_testkit::free_port(), &[]);
    ready_host_on(&hosts, host.http_port).await;
    let dir = weft_testkit::TempDir::new("bench-gateway").expect("temp dir");
    let gateway = GatewayProcess::start(
        env,
        system::workspace_binary("weft-gateway").unwrap_or_else(|e| panic!("{e}")),
        ns.name(),
        None,
        &[],
        &dir.path().join("gateway.log"),
        support::WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let workloads: Api<Workload> = Api::namespaced(admin.clone(), ns.name());
    workloads
        .create(
            &PostParams::default(),
            &hello_workload("bench", weft_test_components::HELLO, "bench.gw.test"),
        )
        .await
        .expect("create");
    support::eventually("bench through the gateway", support::WAIT, || async {
        (http_get_host(gateway.proxy, "bench.gw.test").await.ok()?.status == 200).then_some(())
    })
    .await;

    // 1. Throughput, host alone then through the gateway.
    let direct = wrk(&format!("http://127.0.0.1:{}/", host.http_port), seconds);
    let through = wrk(&format!("http://{}/", gateway.proxy), seconds);
    for (what, (_, _, text)) in [("host", &direct), ("gateway", &through)] {
        eprintln!("---- wrk, {what} ----\n{text}");
    }

    // 2. Propagation: Ready (as a watch sees it) → first 200 through the gateway.
    let ready_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = {
        let ready_at = ready_at.clone();
        let api = workloads.clone();
        tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default()).boxed();
            while let Ok(Some(ev)) = events.try_next().await {
                if let watcher::Event::Apply(w) | watcher::Event::InitApply(w) = ev
                    && w.is_ready()
                {
                    ready_at
                        .lock()
                        .unwrap()
                        .entry(w.name_any())
                        .or_insert_with(Instant::now);
                }
            }
        })
    };
    let mut delays = Vec::new();
    for i in 0..n {
        let name = format!("p-{i}");
        let hostname = format!("p-{i}.gw.test");
        workloads
            .create(
                &PostParams::default(),
                &hello_workload(&name, weft_test_components::HELLO, &hostname),
            )
            .await
            .expect("create");
        let first_200 = loop {
            if let Ok(r) = http_get_host(gateway.proxy, &hostname).await
                && r.status == 200
            {
                break Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let ready = support::eventually("the Ready event", support::WAIT, || async {
            ready_at.lock().unwrap().get(&name).copied()
        })
        .await;
        delays.push(first_200.saturating_duration_since(ready));
        let _ = workloads.delete(&name, &DeleteParams::default()).await;
    }
    watch.abort();
    delays.sort();

    println!("\ngateway vs the host alone (wrk -t2 -c32 -d{seconds}s, hello component, same run)");
    println!(
        "{:<28} {:>12} {:>10} {:>8}",
        "path", "requests/s", "p99 ms", "ratio"
    );
    println!(
        "{:<28} {:>12.0} {:>10.2} {:>8.2}",
        "host alone", direct.0, direct.1, 1.0
    );
    println!(
        "{:<28} {:>12.0} {:>10.2} {:>8.2}",
        "through weft-gateway",
        through.0,
        through.1,
        through.0 / direct.0.max(1.0)
    );
    println!(
        "\nroute propagation, Workload Ready (watch event) → first 200 through the gateway, n = {n}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&delays, 0.5).as_secs_f64() * 1000.0,
        percentile(&delays, 0.99).as_secs_f64() * 1000.0,
        delays.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
    drop((gateway, host));
}
