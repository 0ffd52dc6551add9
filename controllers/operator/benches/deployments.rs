//! Rollouts under traffic (`cargo test -p weft-operator --bench deployments`, or `cargo bench`): a
//! WorkloadDeployment of N replicas (default 10, `WEFT_BENCH_REPLICAS`) of the hello component on 3 real
//! `weft-host`s is rolled out to a new image R times (default 5, `WEFT_BENCH_ROLLOUTS`), alternating the
//! image, while a request loop runs against its Ready replicas. Two deployments run side by side in the
//! same run, rollouts interleaved: one with `rollingUpdate: {maxSurge: 1, maxUnavailable: 0}`, one
//! without `rollingUpdate` (wasmCloud's pace: every new replica first, then the old ones go). Reported:
//! time from the spec change to the deployment Ready for the new generation, failed requests, and the
//! most replicas that ran at once.
//!
//! Results go to `docs/benchmarks.md`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use support::rollout::{Loop, deployment, patch_spec, rolled_out, template_patch};
use support::{Operator, install_host_crd, install_rbac, percentile, ready_host_on, spawn_host};
use weft_crds::{Host, WorkloadDeployment};
use weft_e2e::Env;

const SA: &str = "weft-operator";

struct Mode {
    name: &'static str,
    deployment: &'static str,
    http_host: &'static str,
    extra: serde_json::Value,
    times: Vec<Duration>,
    failed: u64,
    requests: u64,
    max_live: usize,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let Some(rt) = support::bench_runtime() else {
        return;
    };
    rt.block_on(run());
}

async fn run() {
    let replicas = env_usize("WEFT_BENCH_REPLICAS", 10) as i32;
    let rollouts = env_usize("WEFT_BENCH_ROLLOUTS", 5);
    let env = Env::shared().await;
    let ns = env.new_namespace("bench-roll").await.expect("namespace");
    let admin: Client = env.admin_client();
    install_host_crd(&admin).await;
    install_rbac(&admin, ns.name(), &[], &[SA]).await;
    let operator = Operator::start(env, ns.name(), SA, &[], &[]).await;
    let url = operator.nats.as_ref().expect("own NATS").url();
    let hosts_api: Api<Host> = Api::namespaced(admin.clone(), ns.name());
    let mut hosts = Vec::new();
    for _ in 0..3 {
        let h = spawn_host(&url, weft_testkit::free_port(), &[]);
        ready_host_on(&hosts_api, h.http_port).await;
        hosts.push(h);
    }
    let api: Api<WorkloadDeployment> = Api::namespaced(admin.clone(), ns.name());
    let mut modes = [
        Mode {
            name: "maxSurge 1, maxUnavailable 0",
            deployment: "surge-one",
            http_host: "surge-one.bench",
            extra: serde_json::json!({"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}),
            times: Vec::new(),
            failed: 0,
            requests: 0,
            max_live: 0,
        },
        Mode {
            name: "no rollingUpdate (wasmCloud's pace)",
            deployment: "wasmcloud-pace",
            http_host: "wasmcloud-pace.bench",
            extra: serde_json::json!({}),
            times: Vec::new(),
            failed: 0,
            requests: 0,
            max_live: 0,
        },
    ];
    for m in &modes {
        let d = deployment(
            m.deployment,
            replicas,
            weft_test_components::HELLO,
            m.http_host,
            m.extra.clone(),
        );
        api.create(&PostParams::default(), &d)
            .await
            .expect("create the deployment");
    }
    for m in &modes {
        rolled_out(&api, m.deployment).await;
    }
    for i in 0..rollouts {
        let image = if i % 2 == 0 {
            weft_test_components::ECHO
        } else {
            weft_test_components::HELLO
        };
        for m in modes.iter_mut() {
            let traffic = Loop::start(
                admin.clone(),
                ns.name(),
                m.deployment,
                m.http_host,
                Duration::from_secs(300),
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
            let started = Instant::now();
            patch_spec(&api, m.deployment, template_patch(image, m.http_host)).await;
            rolled_out(&api, m.deployment).await;
            m.times.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(300)).await;
            let t = traffic.finish().await;
            m.failed += t.failures.len() as u64;
            m.requests += t.ok + t.failures.len() as u64;
            m.max_live = m.max_live.max(t.max_live);
            eprintln!(
                "{}: rollout {} in {:?}, {} of {} requests failed, at most {} replicas live",
                m.name,
                i + 1,
                started.elapsed(),
                t.failures.len(),
                t.ok + t.failures.len() as u64,
                t.max_live
            );
        }
    }
    println!("\nrollouts of {replicas} replicas on 3 hosts, {rollouts} each, under a request loop");
    println!(
        "{:<38} {:>9} {:>9} {:>16} {:>9}",
        "mode", "p50", "max", "failed/requests", "max live"
    );
    for m in modes.iter_mut() {
        m.times.sort();
        println!(
            "{:<38} {:>8.2}s {:>8.2}s {:>16} {:>9}",
            m.name,
            percentile(&m.times, 0.5).as_secs_f64(),
            m.times.last().copied().unwrap_or_default().as_secs_f64(),
            format!("{}/{}", m.failed, m.requests),
            m.max_live
        );
    }
    let (a, b) = (&modes[0], &modes[1]);
    println!(
        "time to complete, maxSurge 1 / wasmCloud's pace: {:.2}x (p50)",
        percentile(&a.times, 0.5).as_secs_f64() / percentile(&b.times, 0.5).as_secs_f64()
    );
    for m in &modes {
        let _ = api.delete(m.deployment, &DeleteParams::background()).await;
    }
    drop(hosts);
}
