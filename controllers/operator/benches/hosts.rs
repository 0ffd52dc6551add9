//! Host controller benchmarks on the real environment (`cargo bench -p weft-operator --bench hosts`):
//!
//! 1. Silent-death detection: a real `weft-host` is registered and Ready, then SIGKILLed; the time until
//!    its Host is no longer Ready, and until it is deleted. Run with Weft's defaults (`KILLS` times) and,
//!    in the same run, with wasmCloud v2's settings on the same operator (15 s heartbeats, 60 s TTL,
//!    5 s probe timeout; `BASELINE_KILLS` times) as the baseline.
//! 2. Apiserver writes per host per minute at steady state: `HOSTS` hosts heartbeating every second for
//!    `STEADY`, writes by the operator counted in the apiserver's audit log.
//!
//! Results go to `docs/benchmarks.md`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use kube::{Api, ResourceExt};
use support::{Operator, install_host_crd, install_rbac, percentile, ready, ready_host_on, spawn_host};
use weft_crds::{ConditionStatus, Host};
use weft_e2e::Env;

const SA: &str = "weft-operator";
const KILLS: usize = 20;
const BASELINE_KILLS: usize = 3;
const HOSTS: usize = 5;
const STEADY: Duration = Duration::from_secs(60);

/// Kills `kills` hosts one after the other; returns (not Ready, deleted) times.
async fn detection(
    env: &Env,
    label: &str,
    operator_flags: &[&str],
    host_flags: &[&str],
    kills: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let ns = env.new_namespace("bench-hosts").await.expect("namespace");
    let admin = env.admin_client();
    install_rbac(&admin, ns.name(), &[], &[SA]).await;
    let operator = Operator::start(env, ns.name(), SA, &[], operator_flags).await;
    let url = operator.nats.as_ref().expect("own NATS").url();
    let hosts: Api<Host> = Api::namespaced(admin.clone(), ns.name());
    let (mut unready, mut deleted) = (Vec::new(), Vec::new());
    for i in 0..kills {
        let host = spawn_host(&url, weft_testkit::free_port(), host_flags);
        let h = ready_host_on(&hosts, host.http_port).await;
        // A few heartbeats at steady state first, so the interval is known as in production.
        tokio::time::sleep(Duration::from_secs(3)).await;
        host.process.signal(9);
        let killed = Instant::now();
        let name = h.name_any();
        let mut not_ready = None;
        loop {
            match hosts.get_opt(&name).await.expect("get Host") {
                None => {
                    let t = killed.elapsed();
                    deleted.push(t);
                    unready.push(not_ready.unwrap_or(t));
                    break;
                }
                Some(h) if not_ready.is_none() && ready(&h) != ConditionStatus::True => {
                    not_ready = Some(killed.elapsed());
                }
                Some(_) => {}
            }
            assert!(
                killed.elapsed() < Duration::from_secs(300),
                "{label}: Host {name} never went"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "{label} kill {}/{kills}: not Ready after {:?}, deleted after {:?}",
            i + 1,
            unready[i],
            deleted[i]
        );
    }
    (unready, deleted)
}

/// Writes per host per minute by the operator at steady state.
async fn steady_writes(env: &Env) -> f64 {
    let ns = env.new_namespace("bench-writes").await.expect("namespace");
    let admin = env.admin_client();
    install_rbac(&admin, ns.name(), &[], &[SA]).await;
    let operator = Operator::start(env, ns.name(), SA, &[], &[]).await;
    let url = operator.nats.as_ref().expect("own NATS").url();
    let hosts: Api<Host> = Api::namespaced(admin.clone(), ns.name());
    let running: Vec<_> = (0..HOSTS)
        .map(|_| spawn_host(&url, weft_testkit::free_port(), &[]))
        .collect();
    for h in &running {
        ready_host_on(&hosts, h.http_port).await;
    }
    // Past the first writes (create, finalizer, first status).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let audit = env.audit_log();
    let mark = audit.mark();
    tokio::time::sleep(STEADY).await;
    let writes = audit
        .events_since(mark)
        .into_iter()
        .filter(|e| e.user.username == operator.user && e.stage == "ResponseComplete")
        .filter(|e| e.resource() == "hosts" && e.namespace() == ns.name())
        .filter(|e| matches!(e.verb.as_str(), "create" | "update" | "patch" | "delete"))
        .count();
    let heartbeats = operator
        .metrics()
        .await
        .and_then(|m| m.value("weft_host_heartbeats_total", &[]))
        .unwrap_or(0.0);
    eprintln!(
        "steady state: {writes} Host writes in {STEADY:?} for {HOSTS} hosts ({heartbeats} heartbeats received in all)"
    );
    writes as f64 / HOSTS as f64 / (STEADY.as_secs_f64() / 60.0)
}

fn report(label: &str, unready: &mut [Duration], deleted: &mut [Duration]) -> (Duration, Duration) {
    unready.sort();
    deleted.sort();
    let (p50, p99) = (percentile(unready, 0.5), percentile(unready, 0.99));
    println!(
        "{label}: n={} not Ready p50 {:.2}s p99 {:.2}s; deleted p50 {:.2}s p99 {:.2}s",
        unready.len(),
        p50.as_secs_f64(),
        p99.as_secs_f64(),
        percentile(deleted, 0.5).as_secs_f64(),
        percentile(deleted, 0.99).as_secs_f64()
    );
    (p50, percentile(deleted, 0.5))
}

fn main() {
    let Some(rt) = support::bench_runtime() else {
        return;
    };
    rt.block_on(async {
        let env = Env::shared().await;
        install_host_crd(&env.admin_client()).await;
        let (mut u, mut d) = detection(env, "weft defaults", &[], &[], KILLS).await;
        let (mut bu, mut bd) = detection(
            env,
            "wasmCloud settings",
            &["--host-ttl=60s", "--host-probe-timeout=5s"],
            &["--heartbeat-interval=15s"],
            BASELINE_KILLS,
        )
        .await;
        let (weft_unready, weft_deleted) = report("weft defaults", &mut u, &mut d);
        let (base_unready, base_deleted) = report("wasmCloud settings (baseline)", &mut bu, &mut bd);
        println!(
            "ratio (baseline / weft): not Ready {:.1}x, deleted {:.1}x",
            base_unready.as_secs_f64() / weft_unready.as_secs_f64(),
            base_deleted.as_secs_f64() / weft_deleted.as_secs_f64()
        );
        let per_min = steady_writes(env).await;
        println!("Host writes per host per minute at steady state (1 s heartbeats): {per_min:.2}");
    });
}
