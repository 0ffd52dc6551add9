//! The framework on the real control plane (etcd + kube-apiserver with RBAC and an audit log, and the
//! process-kubelet), started by the e2e harness.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use support::{create_config_maps, eventually, http_get, manager_config, scrape, test_pod};
use tokio_util::sync::CancellationToken;
use weft_e2e::Env;
use weft_framework::exposition::{self, Format};
use weft_framework::{Action, Context, Failure, InformerOptions, LeaderElectionConfig, Manager, Reconciler};

const WAIT: Duration = Duration::from_secs(60);

/// Records every reconcile: (name, failures before this attempt, when it started).
#[derive(Clone, Default)]
struct Journal(Arc<Mutex<Vec<(String, u32, Instant)>>>);

impl Journal {
    fn record(&self, name: &str, failures: u32) {
        self.0
            .lock()
            .unwrap()
            .push((name.to_string(), failures, Instant::now()));
    }

    fn attempts(&self, name: &str) -> Vec<(u32, Instant)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, ..)| n == name)
            .map(|(_, f, t)| (*f, *t))
            .collect()
    }
}

struct Recording(Journal);

impl<K: kube::Resource + Send + Sync + 'static> Reconciler<K> for Recording {
    type Error = Failure;
    async fn reconcile(&self, obj: Arc<K>, ctx: &Context) -> Result<Action, Failure> {
        self.0
            .record(&obj.meta().name.clone().unwrap_or_default(), ctx.failures());
        Ok(Action::Done)
    }
}

fn run(
    mgr: Manager,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), weft_framework::Error>>,
) {
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    (
        cancel,
        tokio::spawn(async move { mgr.run(stop.cancelled_owned()).await }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_over_one_pod_informer_open_exactly_one_watch() {
    let env = Env::shared().await;
    let ns = env.new_namespace("fw-watch").await.expect("namespace");
    let client = env.admin_client();
    let audit = env.audit_log();
    let mark = audit.mark();

    let mut mgr = Manager::new(client.clone(), manager_config()).expect("manager");
    let pods = mgr
        .informer::<Pod>(InformerOptions::namespaces([ns.name()]))
        .expect("informer");
    let same = mgr
        .informer::<Pod>(InformerOptions::namespaces([ns.name()]))
        .expect("the same informer");
    let conflicting = mgr.informer::<Pod>(InformerOptions::namespaces([ns.name()]).labels("x=y"));
    assert!(
        conflicting.is_err(),
        "a second, different watch of the same kind is refused"
    );
    let (a, b) = (Journal::default(), Journal::default());
    let first = mgr.controller("watch-a", &pods).build(Recording(a.clone()));
    let second = mgr.controller("watch-b", &same).build(Recording(b.clone()));
    mgr.add(first);
    mgr.add(second);
    let addr = mgr.bound_addrs()[0];
    let (cancel, task) = run(mgr);

    let api: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    for name in ["p1", "p2"] {
        api.create(&PostParams::default(), &test_pod(name, &[]))
            .await
            .expect("create pod");
    }
    eventually("both controllers to reconcile both pods", WAIT, || async {
        let done = ["p1", "p2"]
            .iter()
            .all(|p| !a.attempts(p).is_empty() && !b.attempts(p).is_empty());
        done.then_some(())
    })
    .await;
    let metrics = scrape(addr).await;
    for c in ["watch-a", "watch-b"] {
        let ok = metrics.value(
            "controller_runtime_reconcile_total",
            &[("controller", c), ("result", "success")],
        );
        assert!(ok.unwrap_or(0.0) >= 2.0, "{c} reconciled both pods");
    }
    cancel.cancel();
    task.await.expect("join").expect("clean stop");

    let events = audit.events_since(mark);
    let ours = |verb: &str| {
        events
            .iter()
            .filter(|e| e.verb == verb && e.resource() == "pods" && e.namespace() == ns.name())
            .filter(|e| {
                if verb == "watch" {
                    e.is_watch_start()
                } else {
                    e.stage == "ResponseComplete"
                }
            })
            .count()
    };
    assert_eq!(ours("watch"), 1, "one watch on pods for two controllers");
    assert_eq!(ours("list"), 1, "one initial list on pods for two controllers");
}

/// Fails every attempt of `flaky` until it has failed `fails` times in a row; panics once on `boom`.
struct Scripted {
    journal: Journal,
    fails: u32,
}

impl Reconciler<ConfigMap> for Scripted {
    type Error = Failure;
    async fn reconcile(&self, cm: Arc<ConfigMap>, ctx: &Context) -> Result<Action, Failure> {
        let name = cm.name_any();
        self.journal.record(&name, ctx.failures());
        match name.as_str() {
            "flaky" if ctx.failures() < self.fails => Err(Failure::new("scripted", "not yet")),
            "boom" if ctx.failures() == 0 => panic!("scripted panic"),
            _ => Ok(Action::Done),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_off_grows_per_object_resets_on_success_and_panics_are_retried() {
    let env = Env::shared().await;
    let ns = env.new_namespace("fw-backoff").await.expect("namespace");
    let client = env.admin_client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    let mut mgr = Manager::new(client.clone(), manager_config()).expect("manager");
    let cms = mgr
        .informer::<ConfigMap>(InformerOptions::namespaces([ns.name()]))
        .expect("informer");
    let journal = Journal::default();
    let controller = mgr.controller("scripted", &cms).concurrency(2).build(Scripted {
        journal: journal.clone(),
        fails: 4,
    });
    mgr.add(controller);
    let addr = mgr.bound_addrs()[0];
    let (cancel, task) = run(mgr);

    for name in ["flaky", "steady", "boom"] {
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &cm).await.expect("create");
    }
    let round_one = eventually("flaky to succeed after 4 failures", WAIT, || async {
        let a = journal.attempts("flaky");
        (a.len() >= 5).then_some(a)
    })
    .await;
    let failures: Vec<u32> = round_one.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        failures,
        vec![0, 1, 2, 3, 4],
        "each failure of the object counts up"
    );
    for (i, pair) in round_one.windows(2).enumerate() {
        let scheduled = Duration::from_millis(5 << i);
        let gap = pair[1].1 - pair[0].1;
        assert!(
            gap >= scheduled,
            "retry {i} came after {gap:?}, before its back-off of {scheduled:?}"
        );
    }
    let steady: Vec<u32> = journal.attempts("steady").iter().map(|(f, _)| *f).collect();
    assert_eq!(
        steady,
        vec![0],
        "another object is unaffected by flaky's back-off"
    );
    let boom: Vec<u32> = eventually("boom to be retried after its panic", WAIT, || async {
        let a = journal.attempts("boom");
        (a.len() >= 2).then(|| a.iter().map(|(f, _)| *f).collect())
    })
    .await;
    assert_eq!(
        boom,
        vec![0, 1],
        "the panic counted as a failure and the object was retried"
    );

    // A change after the success starts from zero again.
    let patch = serde_json::json!({"data": {"round": "2"}});
    api.patch("flaky", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    let round_two = eventually("flaky's second round", WAIT, || async {
        let a = journal.attempts("flaky");
        (a.len() >= 10).then_some(a)
    })
    .await;
    let failures: Vec<u32> = round_two[5..].iter().map(|(f, _)| *f).collect();
    assert_eq!(
        failures,
        vec![0, 1, 2, 3, 4],
        "the back-off was reset by the success"
    );

    let metrics = scrape(addr).await;
    let get = |name: &str, labels: &[(&str, &str)]| metrics.value(name, labels).unwrap_or(-1.0);
    assert_eq!(
        get(
            "controller_runtime_reconcile_panics_total",
            &[("controller", "scripted")]
        ),
        1.0
    );
    assert_eq!(
        get(
            "controller_runtime_reconcile_errors_total",
            &[("controller", "scripted")]
        ),
        9.0
    );
    assert_eq!(get("workqueue_retries_total", &[("name", "scripted")]), 9.0);
    assert_eq!(
        get(
            "weft_controller_reconcile_errors_total",
            &[("controller", "scripted"), ("category", "panic")]
        ),
        1.0
    );
    assert_eq!(
        get(
            "weft_controller_reconcile_errors_total",
            &[("controller", "scripted"), ("category", "scripted")]
        ),
        8.0
    );
    let health = http_get(addr, "/healthz", None).await.expect("healthz").status;
    assert_eq!(health, 200, "a panicking reconcile is not fatal");
    assert!(!task.is_finished(), "the manager keeps running");
    cancel.cancel();
    task.await.expect("join").expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_parses_strictly_and_has_controller_runtime_names() {
    let env = Env::shared().await;
    let ns = env.new_namespace("fw-metrics").await.expect("namespace");
    let client = env.admin_client();
    create_config_maps(&client, ns.name(), "cm", 3).await;
    let mut config = manager_config();
    config.leader_election = Some(LeaderElectionConfig::new("fw-metrics", ns.name()));
    let mut mgr = Manager::new(client.clone(), config).expect("manager");
    let cms = mgr
        .informer::<ConfigMap>(InformerOptions::namespaces([ns.name()]))
        .expect("informer");
    let journal = Journal::default();
    let controller = mgr
        .controller("metrics-probe", &cms)
        .concurrency(3)
        .build(Recording(journal.clone()));
    mgr.add(controller);
    let addr = mgr.bound_addrs()[0];
    let (cancel, task) = run(mgr);
    eventually("the three objects to be reconciled", WAIT, || async {
        (0..3)
            .all(|i| !journal.attempts(&format!("cm-{i}")).is_empty())
            .then_some(())
    })
    .await;

    let ready = http_get(addr, "/readyz", None).await.expect("readyz");
    assert_eq!(
        (ready.status, ready.content_type.as_str()),
        (200, "text/plain; charset=utf-8")
    );
    assert_eq!(
        http_get(addr, "/healthz", None).await.expect("healthz").status,
        200
    );
    assert_eq!(http_get(addr, "/nope", None).await.expect("404").status, 404);

    let weft_e2e::testing::HttpResponse {
        status,
        content_type,
        body: prom,
        ..
    } = http_get(addr, "/metrics", Some("text/plain"))
        .await
        .expect("metrics");
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let prom = exposition::parse(&prom, Format::Prometheus).unwrap_or_else(|e| panic!("{e}\n{prom}"));
    let weft_e2e::testing::HttpResponse {
        content_type,
        body: om,
        ..
    } = http_get(
        addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0"),
    )
    .await
    .expect("metrics");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let om = exposition::parse(&om, Format::OpenMetrics).unwrap_or_else(|e| panic!("{e}\n{om}"));

    let c = [("controller", "metrics-probe")];
    for result in ["success", "error", "requeue", "requeue_after"] {
        let labels = [("controller", "metrics-probe"), ("result", result)];
        assert!(
            prom.value("controller_runtime_reconcile_total", &labels)
                .is_some(),
            "result {result} pre-initialised"
        );
        assert!(om.value("controller_runtime_reconcile_total", &labels).is_some());
    }
    // Every namespace also holds the `kube-root-ca.crt` ConfigMap.
    let successes = prom.value(
        "controller_runtime_reconcile_total",
        &[c[0], ("result", "success")],
    );
    assert_eq!(successes, Some(4.0));
    for (name, kind) in [
        ("controller_runtime_reconcile_errors_total", "counter"),
        ("controller_runtime_reconcile_panics_total", "counter"),
        ("controller_runtime_max_concurrent_reconciles", "gauge"),
        ("controller_runtime_active_workers", "gauge"),
        ("workqueue_depth", "gauge"),
        ("workqueue_adds_total", "counter"),
        ("workqueue_retries_total", "counter"),
    ] {
        let family = prom.family(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(family.kind, kind, "{name}");
    }
    for name in [
        "controller_runtime_reconcile_time_seconds",
        "workqueue_queue_duration_seconds",
        "workqueue_work_duration_seconds",
    ] {
        assert_eq!(
            prom.family(name).map(|f| f.kind.as_str()),
            Some("histogram"),
            "{name}"
        );
        assert!(
            prom.value(&format!("{name}_count"), &[]).unwrap_or(0.0) >= 3.0,
            "{name} observed"
        );
    }
    assert_eq!(
        prom.value("controller_runtime_max_concurrent_reconciles", &c),
        Some(3.0)
    );
    assert_eq!(
        prom.value("workqueue_adds_total", &[("name", "metrics-probe"), c[0]]),
        successes
    );
    assert_eq!(
        prom.value("leader_election_master_status", &[("name", "fw-metrics")]),
        Some(1.0)
    );
    assert!(prom.value("process_resident_memory_bytes", &[]).unwrap_or(0.0) > 0.0);
    cancel.cancel();
    task.await.expect("join").expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_lease_stops_the_manager_with_an_error() {
    let env = Env::shared().await;
    let ns = env.new_namespace("fw-lease").await.expect("namespace");
    let client = env.admin_client();
    let mut config = manager_config();
    let mut le = LeaderElectionConfig::new("fw-lease", ns.name());
    le.lease_duration = Duration::from_secs(3);
    le.renew_deadline = Duration::from_secs(2);
    le.retry_period = Duration::from_millis(200);
    let identity = le.identity.clone();
    config.leader_election = Some(le);
    let mgr = Manager::new(client.clone(), config).expect("manager");
    let mut leading = mgr.is_leader();
    let (_cancel, task) = run(mgr);
    tokio::time::timeout(WAIT, leading.wait_for(|l| *l))
        .await
        .expect("becomes leader")
        .expect("watch");

    // Someone else takes the lease (as an operator with a skewed view, or a human, might).
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns.name());
    let mut lease = leases.get("fw-lease").await.expect("lease");
    let spec = lease.spec.as_mut().expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some(identity.as_str()));
    spec.holder_identity = Some("intruder".into());
    spec.lease_duration_seconds = Some(3600);
    leases
        .replace("fw-lease", &PostParams::default(), &lease)
        .await
        .expect("take the lease");

    let result = tokio::time::timeout(WAIT, task)
        .await
        .expect("the manager stops")
        .expect("join");
    match result {
        Err(weft_framework::Error::LeaderElection(e)) => assert!(e.to_string().contains("fw-lease"), "{e}"),
        other => panic!("expected a lost lease, got {other:?}"),
    }
    assert!(!*leading.borrow(), "leadership reported as lost");
    let lease = leases.get("fw-lease").await.expect("lease");
    let holder = lease.spec.and_then(|s| s.holder_identity);
    assert_eq!(
        holder.as_deref(),
        Some("intruder"),
        "a former leader never writes the lease back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_that_cannot_sync_keep_readyz_down_and_fail_after_the_timeout() {
    let env = Env::shared().await;
    let ns = env.new_namespace("fw-sync").await.expect("namespace");
    // The namespace's `default` ServiceAccount has no RBAC: its list of ConfigMaps is forbidden.
    let client = env
        .service_account_client(ns.name(), "default")
        .await
        .expect("client");
    let mut config = manager_config();
    config.cache_sync_timeout = Duration::from_secs(2);
    let mut mgr = Manager::new(client, config).expect("manager");
    let cms = mgr
        .informer::<ConfigMap>(InformerOptions::namespaces([ns.name()]))
        .expect("informer");
    let journal = Journal::default();
    let controller = mgr
        .controller("never-starts", &cms)
        .build(Recording(journal.clone()));
    mgr.add(controller);
    let addr = mgr.bound_addrs()[0];
    let (_cancel, task) = run(mgr);
    let status = eventually("the probe server", WAIT, || async {
        http_get(addr, "/readyz", None).await.ok().map(|r| r.status)
    })
    .await;
    assert_eq!(status, 503, "not ready before the caches sync");
    let result = tokio::time::timeout(WAIT, task)
        .await
        .expect("the manager gives up")
        .expect("join");
    match result {
        Err(weft_framework::Error::CacheSyncTimeout { kinds, .. }) => {
            assert_eq!(kinds, vec!["configmaps".to_string()])
        }
        other => panic!("expected a cache sync timeout, got {other:?}"),
    }
    assert!(journal.0.lock().unwrap().is_empty(), "no worker started");
}
