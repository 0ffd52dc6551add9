//! Benchmarks of the reconcile framework and the operator on the real control plane (`cargo bench -p
//! weft-operator`). Results go to `docs/benchmarks.md`.
//!
//! 1. Change-to-reconcile latency with 1,000 watched ConfigMaps: one stream of patches is observed at the
//!    same time by a weft-framework controller and by a plain kube-runtime `Controller` (the baseline), in
//!    one process; each records when its reconcile of that change starts.
//! 2. Resident memory of the `weft-operator` process (release build, its ServiceAccount, shipped RBAC)
//!    with 10,000 pods cached, next to a plain kube-runtime metadata reflector process over the same pods
//!    (the baseline), then with 10,000 Hosts cached as well.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use support::{Operator, eventually, install_host_crd, install_rbac, percentile};
use weft_crds::{Host, HostFields};
use weft_e2e::Env;
use weft_framework::{Action, Context, Failure, InformerOptions, Manager, ManagerConfig, Reconciler};

const OBJECTS: usize = 1_000;
const SEQUENTIAL_CHANGES: u64 = 300;
const CACHED: usize = 10_000;
const ROLE_VAR: &str = "WEFT_BENCH_ROLE";

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Side {
    Weft,
    KubeRuntime,
}

/// Matches reconciles to the change that caused them.
#[derive(Default)]
struct Probe {
    pending: Mutex<HashMap<String, (u64, Instant)>>,
    seen: Mutex<HashSet<(Side, u64)>>,
    latencies: Mutex<HashMap<Side, Vec<Duration>>>,
}

impl Probe {
    fn expect(&self, name: &str, seq: u64) {
        self.pending
            .lock()
            .unwrap()
            .insert(name.to_string(), (seq, Instant::now()));
    }

    fn observe(&self, side: Side, cm: &ConfigMap) {
        let now = Instant::now();
        let Some(seq) = cm.labels().get("seq").and_then(|s| s.parse::<u64>().ok()) else {
            return;
        };
        let Some((want, t0)) = self.pending.lock().unwrap().get(&cm.name_any()).copied() else {
            return;
        };
        if want == seq && self.seen.lock().unwrap().insert((side, seq)) {
            self.latencies
                .lock()
                .unwrap()
                .entry(side)
                .or_default()
                .push(now - t0);
        }
    }

    fn seen(&self, side: Side, seq: u64) -> bool {
        self.seen.lock().unwrap().contains(&(side, seq))
    }

    fn take(&self, side: Side) -> Vec<Duration> {
        self.latencies.lock().unwrap().remove(&side).unwrap_or_default()
    }
}

struct WeftSide(Arc<Probe>);

impl Reconciler<ConfigMap> for WeftSide {
    type Error = Failure;
    async fn reconcile(&self, cm: Arc<ConfigMap>, _: &Context) -> Result<Action, Failure> {
        self.0.observe(Side::Weft, &cm);
        Ok(Action::Done)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

fn summary(mut v: Vec<Duration>) -> (Duration, Duration, usize) {
    v.sort();
    (percentile(&v, 0.50), percentile(&v, 0.99), v.len())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn patch_seq(api: &Api<ConfigMap>, name: &str, seq: u64) {
    let patch = serde_json::json!({"metadata": {"labels": {"seq": seq.to_string()}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
}

async fn latency(env: &'static Env) {
    let ns = env.new_namespace("bench-latency").await.expect("namespace");
    let client = env.admin_client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    futures::stream::iter(0..OBJECTS)
        .map(|i| {
            let api = api.clone();
            async move {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(format!("cm-{i}")),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([("i".to_string(), i.to_string())])),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &cm).await.expect("create");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;

    let probe = Arc::new(Probe::default());
    let mut mgr = Manager::new(client.clone(), ManagerConfig::default()).expect("manager");
    let informer = mgr
        .informer::<ConfigMap>(InformerOptions::namespaces([ns.name()]))
        .expect("informer");
    let controller = mgr.controller("bench", &informer).build(WeftSide(probe.clone()));
    mgr.add(controller);
    let stop = tokio_util::sync::CancellationToken::new();
    let weft = tokio::spawn({
        let stop = stop.clone();
        async move { mgr.run(stop.cancelled_owned()).await }
    });
    let baseline = tokio::spawn({
        let probe = probe.clone();
        let stop = stop.clone();
        let controller = kube::runtime::Controller::new(api.clone(), watcher::Config::default())
            .graceful_shutdown_on(stop.cancelled_owned())
            .run(
                move |cm: Arc<ConfigMap>, probe: Arc<Arc<Probe>>| async move {
                    probe.observe(Side::KubeRuntime, &cm);
                    Ok::<_, Never>(kube::runtime::controller::Action::await_change())
                },
                |_, _, _| kube::runtime::controller::Action::await_change(),
                Arc::new(probe),
            );
        controller.for_each(|_| async {})
    });
    // Both have listed everything once the first change reaches both.
    probe.expect("cm-0", 1);
    patch_seq(&api, "cm-0", 1).await;
    eventually(
        "both controllers to be running",
        Duration::from_secs(60),
        || async { (probe.seen(Side::Weft, 1) && probe.seen(Side::KubeRuntime, 1)).then_some(()) },
    )
    .await;
    probe.take(Side::Weft);
    probe.take(Side::KubeRuntime);

    // One change at a time.
    for seq in 2..2 + SEQUENTIAL_CHANGES {
        let name = format!("cm-{}", (seq * 7) as usize % OBJECTS);
        probe.expect(&name, seq);
        patch_seq(&api, &name, seq).await;
        eventually(
            "both controllers to see the change",
            Duration::from_secs(30),
            || async { (probe.seen(Side::Weft, seq) && probe.seen(Side::KubeRuntime, seq)).then_some(()) },
        )
        .await;
    }
    let sequential = (
        summary(probe.take(Side::Weft)),
        summary(probe.take(Side::KubeRuntime)),
    );

    // A burst: every object changes at once (32 patches in flight).
    let base = 100_000u64;
    let started = Instant::now();
    futures::stream::iter(0..OBJECTS as u64)
        .map(|i| {
            let api = api.clone();
            let probe = probe.clone();
            async move {
                let name = format!("cm-{i}");
                probe.expect(&name, base + i);
                patch_seq(&api, &name, base + i).await;
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    eventually(
        "both controllers to see the burst",
        Duration::from_secs(120),
        || async {
            (0..OBJECTS as u64)
                .all(|i| probe.seen(Side::Weft, base + i) && probe.seen(Side::KubeRuntime, base + i))
                .then_some(())
        },
    )
    .await;
    let burst_time = started.elapsed();
    let burst = (
        summary(probe.take(Side::Weft)),
        summary(probe.take(Side::KubeRuntime)),
    );
    stop.cancel();
    weft.await.expect("join").expect("weft manager");
    baseline.await.expect("join");

    println!("\n## change -> reconcile start, {OBJECTS} watched ConfigMaps (one process, same changes)");
    println!("| scenario | controller | n | p50 ms | p99 ms | p50 ratio | p99 ratio |");
    println!("|---|---|---|---|---|---|---|");
    for (label, ((wp50, wp99, wn), (kp50, kp99, kn))) in
        [("one change at a time", sequential), ("burst of 1,000", burst)]
    {
        println!(
            "| {label} | weft-framework | {wn} | {:.2} | {:.2} | {:.2} | {:.2} |",
            ms(wp50),
            ms(wp99),
            ms(wp50) / ms(kp50),
            ms(wp99) / ms(kp99)
        );
        println!(
            "| {label} | kube-runtime Controller (baseline) | {kn} | {:.2} | {:.2} | 1.00 | 1.00 |",
            ms(kp50),
            ms(kp99)
        );
    }
    println!(
        "(burst: {OBJECTS} patches sent and seen by both in {:.0} ms)",
        ms(burst_time)
    );
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn unscheduled_pod(i: usize) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("bench-{i}"), "labels": {"app": "bench", "index": i.to_string()}},
        "spec": {
            "schedulerName": "weft-bench-nobody",
            "containers": [{"name": "c", "image": weft_e2e::TESTPOD_IMAGE}]
        }
    }))
    .expect("pod")
}

async fn create_all<T, F, Fut>(n: usize, make: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(make)
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    started.elapsed()
}

async fn memory(env: &'static Env) {
    let ns = env.new_namespace("bench-memory").await.expect("namespace");
    let admin = env.admin_client();
    install_host_crd(&admin).await;
    install_rbac(&admin, ns.name(), &[], &["weft-operator"]).await;
    let operator = Operator::start(env, ns.name(), "weft-operator", &[], &["--leader-elect", "false"]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle, _) = rss_kib(operator.process.pid());

    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns.name());
    let took = create_all(CACHED, |i| {
        let pods = pods.clone();
        async move {
            pods.create(&PostParams::default(), &unscheduled_pod(i))
                .await
                .expect("create pod")
        }
    })
    .await;
    println!("\n(created {CACHED} pods in {:.1} s)", took.as_secs_f64());
    let cached = |kind: &'static str, n: usize| {
        let operator = &operator;
        async move {
            eventually(
                "the operator to cache every object",
                Duration::from_secs(300),
                || async {
                    let m = operator.metrics().await?;
                    (m.value("weft_informer_objects", &[("kind", kind)])? >= n as f64).then_some(())
                },
            )
            .await
        }
    };
    cached("pods", CACHED).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (with_pods, _) = rss_kib(operator.process.pid());

    // Baseline: kube-runtime's reflector over the same pods, metadata only, managedFields stripped.
    let kubeconfig = env
        .service_account_kubeconfig(ns.name(), "weft-operator")
        .await
        .expect("kubeconfig");
    let mut child = Command::new(std::env::current_exe().expect("self"))
        .env(ROLE_VAR, "reflector")
        .env("KUBECONFIG", kubeconfig)
        .env("BENCH_NAMESPACE", ns.name())
        .env("BENCH_EXPECT", CACHED.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the baseline reflector");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("join")
    .expect("read");
    assert!(line.starts_with("synced"), "baseline reflector: {line}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (baseline, _) = rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();

    let hosts: Api<Host> = Api::namespaced(admin.clone(), ns.name());
    let took = create_all(CACHED, |i| {
        let hosts = hosts.clone();
        async move {
            let host = Host::new(
                &format!("host-{i}"),
                HostFields {
                    host_id: format!("00000000-0000-4000-8000-{i:012}"),
                    hostname: Some(format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)),
                    http_port: Some(9191),
                    environment: Some("bench".into()),
                },
            );
            hosts
                .create(&PostParams::default(), &host)
                .await
                .expect("create host")
        }
    })
    .await;
    println!("(created {CACHED} Hosts in {:.1} s)", took.as_secs_f64());
    cached("hosts", CACHED).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (with_both, peak) = rss_kib(operator.process.pid());
    let mb = |kib: u64| kib as f64 / 1024.0;

    println!("\n## resident memory (VmRSS), release build, 2 worker threads");
    println!("| process | cached objects | RSS MiB | ratio |");
    println!("|---|---|---|---|");
    println!("| weft-operator, idle | 0 | {:.1} | |", mb(idle));
    println!(
        "| weft-operator | {CACHED} pods (metadata) | {:.1} | {:.2} |",
        mb(with_pods),
        mb(with_pods) / mb(baseline)
    );
    println!(
        "| kube-runtime metadata reflector (baseline) | {CACHED} pods (metadata) | {:.1} | 1.00 |",
        mb(baseline)
    );
    println!(
        "| weft-operator | {CACHED} pods + {CACHED} Hosts | {:.1} (peak {:.1}) | |",
        mb(with_both),
        mb(peak)
    );
    drop(operator);
}

/// The baseline process: a plain kube-runtime reflector of pod metadata.
async fn reflector_role() {
    let client = Client::try_default().await.expect("client");
    let ns = std::env::var("BENCH_NAMESPACE").expect("BENCH_NAMESPACE");
    let expect: usize = std::env::var("BENCH_EXPECT")
        .expect("BENCH_EXPECT")
        .parse()
        .expect("number");
    let api: Api<PartialObjectMeta<Pod>> = Api::namespaced(client, &ns);
    let (store, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .modify(|p| p.metadata.managed_fields = None)
        .default_backoff();
    // The store fills at the end of the initial list (InitDone), so check after every event.
    let mut stream = std::pin::pin!(reflector(writer, stream));
    let mut announced = false;
    while let Some(event) = stream.next().await {
        if let Err(e) = event {
            eprintln!("baseline reflector: {e}");
            continue;
        }
        if !announced && store.len() >= expect {
            println!("synced {}", store.len());
            announced = true;
        }
    }
}

fn main() {
    if std::env::var_os(ROLE_VAR).is_some() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(reflector_role());
        return;
    }
    let Some(rt) = support::bench_runtime() else {
        return;
    };
    rt.block_on(async {
        let env = Env::shared().await;
        latency(env).await;
        memory(env).await;
    });
}
