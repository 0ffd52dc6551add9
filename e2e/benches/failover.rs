//! Failover measured (`cargo bench -p weft-e2e --bench failover`): the whole system on an environment of
//! its own (3 weft-host pods of the shipped host group, 2 operator replicas under their ServiceAccount,
//! weft-gateway, the hello-world example with 2 replicas), a request loop through the gateway counting
//! every failed request, and one thing broken per repetition:
//!
//! 1. `pod-delete`: a host pod of a replica deleted (`kubectl delete pod`);
//! 2. `host-sigkill`: that pod's weft-host SIGKILLed (no drain; the kubelet restarts the container at
//!    the same address, where the new process supersedes the old);
//! 3. `host-freeze`: that weft-host SIGSTOPped (silent: only missed heartbeats tell), then killed;
//! 4. `leader-kill`: the operator leader SIGKILLed right after a rollout was started;
//! 5. `nats-outage`: the nats-server stopped for 30 s, then started again;
//! 6. `apiserver-restart`: kube-apiserver restarted (SIGTERM, start again).
//!
//! Each scenario runs twice in the same run: with Weft's defaults and with operator flags that mimic
//! wasmCloud v2 (`--scheduler=random --workload-drain-delay=0s --host-ttl=60s
//! --host-missed-heartbeats=60`: random placement, a deleted replica stopped at once, a silent host
//! noticed only after 60 s). `WEFT_BENCH_REPS` (default 20) repetitions of the scenarios that take
//! seconds, `WEFT_BENCH_LONG_REPS` (default 5) of those that take half a minute or more (NATS outage,
//! apiserver restart, leader kill, and wasmCloud mode's frozen host); `WEFT_BENCH_BASELINE_REPS`, if set,
//! of every scenario in wasmCloud mode. `WEFT_BENCH_SCENARIOS` (comma-separated names) selects
//! scenarios. Between repetitions the system is made whole again (3 Ready host pods and Hosts, both
//! replicas Ready — on different hosts with Weft's spread placement; random placement may put both on
//! one host, and a broken host then takes both).
//!
//! The binaries come from the bench's build profile: `cargo build --release -p weft-host -p weft-operator
//! -p weft-gateway` first. Results go to `docs/benchmarks.md`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};
use weft_crds::Host;
use weft_e2e::system::{HELLO_WORLD_BODY, HELLO_WORLD_HOST, Stack, StackOptions};
use weft_e2e::testing::container_pid;
use weft_e2e::traffic::{RequestLoop, Traffic};
use weft_e2e::{Env, EnvOptions, RunningEnv};
use weft_testkit::{NatsServer, TempDir, free_port};

const HELLO: &str = "hello-world";
const WAIT: Duration = Duration::from_secs(180);
const WASMCLOUD_FLAGS: [&str; 4] = [
    "--scheduler=random",
    "--workload-drain-delay=0s",
    "--host-ttl=60s",
    "--host-missed-heartbeats=60",
];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One repetition: what the loop saw and how long things took from the break.
struct Rep {
    traffic: Traffic,
    /// Until the replicas were whole again (or, for outages, everything Ready again).
    recovery: Duration,
    /// Until the break was noticed (silent host: its Host no longer Ready; leader kill: the follower
    /// leads).
    detection: Option<Duration>,
}

async fn poll<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the system is whole: 3 Ready host pods, 3 Ready Hosts, both replicas Ready on two hosts.
async fn settle(stack: &Stack, spread: bool) {
    stack
        .group
        .wait_ready(&stack.admin, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let hosts: Api<Host> = stack.api();
    poll("3 Ready Hosts", || async {
        let hs = hosts.list(&Default::default()).await.ok()?.items;
        (hs.len() == 3
            && hs
                .iter()
                .all(|h| h.is_ready() && h.metadata.deletion_timestamp.is_none()))
        .then_some(())
    })
    .await;
    stack
        .wait_replicas(HELLO, 2, None, spread, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

fn start_loop(stack: &Stack) -> RequestLoop {
    RequestLoop::start(
        stack.gateway.proxy,
        HELLO_WORLD_HOST,
        HELLO_WORLD_BODY,
        1,
        Duration::from_secs(300),
    )
}

/// A replica's host and that host's pod.
async fn victim(stack: &Stack) -> (String, Pod) {
    let ws = stack.ready_replicas(HELLO).await.expect("replicas");
    let host_id = ws[0]
        .status
        .as_ref()
        .and_then(|s| s.host_id.clone())
        .expect("placed");
    let pod = stack.pod_of_host(&host_id).await.expect("the victim pod");
    (host_id, pod)
}

async fn pod_delete(stack: &Stack, spread: bool) -> Rep {
    let (host_id, pod) = victim(stack).await;
    let traffic = start_loop(stack);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at = Instant::now();
    stack
        .api::<Pod>()
        .delete(&pod.name_any(), &DeleteParams::default())
        .await
        .expect("delete the pod");
    stack
        .wait_replicas(HELLO, 2, Some(&host_id), spread, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let recovery = at.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    Rep {
        traffic: traffic.finish().await,
        recovery,
        detection: None,
    }
}

/// A replica's weft-host gets `signal`: SIGKILL (no drain; the kubelet restarts it at its address), or
/// SIGSTOP (the process neither answers nor dies, so only silence tells: the kernel still accepts its
/// connections). A stopped process is killed afterwards, so the kubelet restarts it for the next
/// repetition.
async fn signalled_host(stack: &Stack, spread: bool, signal: i32) -> Rep {
    let (host_id, pod) = victim(stack).await;
    let pid = container_pid(&pod).expect("the host process");
    let hosts: Api<Host> = stack.api();
    let traffic = start_loop(stack);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at = Instant::now();
    weft_testkit::owned::signal_group(pid, signal);
    let detection = poll("the silent host noticed", || async {
        let hs = hosts.list(&Default::default()).await.ok()?.items;
        hs.iter()
            .find(|h| h.spec.host_id == host_id)
            .is_none_or(|h| !h.is_ready())
            .then(|| at.elapsed())
    })
    .await;
    stack
        .wait_replicas(HELLO, 2, Some(&host_id), spread, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let recovery = at.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let traffic = traffic.finish().await;
    if signal != libc::SIGKILL {
        weft_testkit::owned::signal_group(pid, libc::SIGKILL);
    }
    Rep {
        traffic,
        recovery,
        detection: Some(detection),
    }
}

async fn leader_kill(stack: &Stack, revision: usize) -> Rep {
    let leader = poll("a leader", || stack.leader()).await;
    let restarts = stack.operator_restarts()[leader];
    let (template, hash) = stack.revised_template(HELLO, revision).await.expect("template");
    let traffic = start_loop(stack);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let generation = stack.apply_template(HELLO, &template).await.expect("patch");
    let at = Instant::now();
    stack.signal_operator(leader, libc::SIGKILL).await;
    poll("a new leader", || stack.new_leader(leader, restarts)).await;
    let detection = at.elapsed();
    poll("the rollout finished", || async {
        stack.rolled_out(HELLO, generation, &hash, 2).await.then_some(())
    })
    .await;
    let recovery = at.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    Rep {
        traffic: traffic.finish().await,
        recovery,
        detection: Some(detection),
    }
}

/// Everything Ready again after an outage: the 3 Hosts and both replicas, nothing deleted.
async fn whole_after_outage(
    stack: &Stack,
    spread: bool,
    before: &std::collections::BTreeSet<String>,
    at: Instant,
) -> Duration {
    settle(stack, spread).await;
    let recovery = at.elapsed();
    let after = stack.inventory().await.expect("inventory");
    let lost: Vec<&String> = before.difference(&after).collect();
    assert!(lost.is_empty(), "the outage deleted {lost:?}");
    recovery
}

async fn nats_outage(
    stack: &Stack,
    spread: bool,
    nats: &mut Option<NatsServer>,
    dir: &std::path::Path,
    port: u16,
) -> Rep {
    let before = stack.inventory().await.expect("inventory");
    let traffic = start_loop(stack);
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(n) = nats.as_mut() {
        n.stop();
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    *nats = Some(NatsServer::start_in(dir, port).expect("nats-server again"));
    let at = Instant::now();
    let recovery = whole_after_outage(stack, spread, &before, at).await;
    Rep {
        traffic: traffic.finish().await,
        recovery,
        detection: None,
    }
}

async fn apiserver_restart(stack: &Stack, spread: bool, running: &mut RunningEnv) -> Rep {
    let before = stack.inventory().await.expect("inventory");
    let traffic = start_loop(stack);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at = Instant::now();
    let down = running
        .restart_apiserver(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let recovery = whole_after_outage(stack, spread, &before, at).await;
    Rep {
        traffic: traffic.finish().await,
        recovery,
        detection: Some(down),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn quantile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let reps = env_usize("WEFT_BENCH_REPS", 20);
    let long_reps = env_usize("WEFT_BENCH_LONG_REPS", 5);
    let baseline_reps = std::env::var("WEFT_BENCH_BASELINE_REPS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    let only: Option<Vec<String>> = std::env::var("WEFT_BENCH_SCENARIOS")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect());
    let wanted = |s: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == s));
    let mut running = RunningEnv::start(EnvOptions::default())
        .await
        .expect("an environment of its own");
    let env = Env::from_coordinates(running.coordinates().clone())
        .await
        .expect("coordinates");
    // (mode, scenario) → repetitions
    let mut results: BTreeMap<(usize, &'static str), Vec<Rep>> = BTreeMap::new();
    let modes: [(&str, &[&str]); 2] = [("weft", &[]), ("wasmCloud flags", &WASMCLOUD_FLAGS)];
    for (m, (mode, flags)) in modes.iter().enumerate() {
        let spread = m == 0;
        let ns = env.new_namespace("bench-failover").await.expect("namespace");
        let nats_dir = TempDir::new("bench-failover-nats").expect("temp dir");
        let port = free_port();
        let mut nats = Some(NatsServer::start_in(nats_dir.path(), port).expect("nats-server"));
        let mut options = StackOptions::new(&env, 3);
        options.operator_replicas = 2;
        options.operator_args = flags.iter().map(|f| f.to_string()).collect();
        options.nats_url = nats.as_ref().map(NatsServer::url);
        let stack = Stack::start(&env, &ns, options, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        stack
            .deploy_hello_world(spread, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let silent_reps = if m == 0 { reps } else { long_reps };
        let (fast, silent, long) = match baseline_reps {
            Some(n) if m == 1 => (n, n, n),
            _ => (reps, silent_reps, long_reps),
        };
        let plan: [(&'static str, usize); 6] = [
            ("pod-delete", fast),
            ("host-sigkill", fast),
            ("host-freeze", silent),
            ("leader-kill", long),
            ("nats-outage", long),
            ("apiserver-restart", long),
        ];
        let mut revision = 1;
        for (scenario, n) in plan {
            if !wanted(scenario) {
                continue;
            }
            for i in 0..n {
                settle(&stack, spread).await;
                let rep = match scenario {
                    "pod-delete" => pod_delete(&stack, spread).await,
                    "host-sigkill" => signalled_host(&stack, spread, libc::SIGKILL).await,
                    "host-freeze" => signalled_host(&stack, spread, libc::SIGSTOP).await,
                    "leader-kill" => {
                        revision += 1;
                        leader_kill(&stack, revision).await
                    }
                    "nats-outage" => nats_outage(&stack, spread, &mut nats, nats_dir.path(), port).await,
                    _ => apiserver_restart(&stack, spread, &mut running).await,
                };
                eprintln!(
                    "{mode} {scenario} #{}: {} requests, {} failed, recovery {} ms{}",
                    i + 1,
                    rep.traffic.total(),
                    rep.traffic.failures.len(),
                    ms(rep.recovery),
                    rep.detection
                        .map(|d| format!(", detection {} ms", ms(d)))
                        .unwrap_or_default()
                );
                if !rep.traffic.failures.is_empty() {
                    eprintln!("  failures: {}", rep.traffic.summary(3).replace('\n', "; "));
                }
                results.entry((m, scenario)).or_default().push(rep);
            }
        }
        drop(stack);
        drop(ns);
        drop(nats);
    }

    println!(
        "\nfailover (3 host pods, 2 operator replicas, hello-world ×2 through weft-gateway; one request loop)"
    );
    println!(
        "{:<18} {:<16} {:>4} {:>14} {:>10} {:>12} {:>12} {:>14} {:>14}",
        "scenario",
        "mode",
        "n",
        "failed/total",
        "worst rep",
        "recovery p50",
        "recovery p99",
        "detection p50",
        "detection p99"
    );
    for ((m, scenario), reps) in &results {
        let mut recovery: Vec<Duration> = reps.iter().map(|r| r.recovery).collect();
        recovery.sort();
        let mut detection: Vec<Duration> = reps.iter().filter_map(|r| r.detection).collect();
        detection.sort();
        let failed: usize = reps.iter().map(|r| r.traffic.failures.len()).sum();
        let total: u64 = reps.iter().map(|r| r.traffic.total()).sum();
        let worst = reps.iter().map(|r| r.traffic.failures.len()).max().unwrap_or(0);
        let d = |p| {
            if detection.is_empty() {
                "-".to_string()
            } else {
                ms(quantile(&detection, p))
            }
        };
        println!(
            "{:<18} {:<16} {:>4} {:>14} {:>10} {:>12} {:>12} {:>14} {:>14}",
            scenario,
            modes[*m].0,
            reps.len(),
            format!("{failed}/{total}"),
            worst,
            ms(quantile(&recovery, 0.5)),
            ms(quantile(&recovery, 0.99)),
            d(0.5),
            d(0.99)
        );
    }
    println!(
        "(ms; recovery: from the break to both replicas Ready on other hosts (pod-delete, host-*), the rollout \
         finished (leader-kill), everything Ready again after the NATS server or the apiserver is back; detection: \
         the killed host's Host not Ready, the follower leading, the apiserver unavailable)"
    );
    running.stop(Duration::from_secs(10)).await;
}
