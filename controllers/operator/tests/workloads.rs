//! The Workload controller end to end: the real operator under its ServiceAccount with the shipped RBAC,
//! a real kube-apiserver, a real nats-server and real `weft-host` processes running the hello component
//! in Wasmtime, reached over real HTTP.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};
use support::{
    Operator, WAIT, denied, eventually, hello_workload as workload, install_host_crd, install_rbac,
    ready_host_on, spawn_host,
};
use weft_crds::condition::{self, ConditionStatus};
use weft_crds::names::{condition_types as ct, finalizers};
use weft_crds::workload::{ConfigLayer, LocalResources};
use weft_crds::{LocalObjectReference, Workload};
use weft_e2e::Env;
use weft_testkit::free_port;

const SA: &str = "weft-operator";

fn reference(name: &str) -> LocalObjectReference {
    serde_json::from_value(serde_json::json!({ "name": name })).expect("reference")
}

fn status_of(w: &Workload, type_: &str) -> ConditionStatus {
    w.status.as_ref().map_or(ConditionStatus::Unknown, |s| {
        condition::status_of(&s.conditions, type_)
    })
}

fn message_of(w: &Workload, type_: &str) -> String {
    w.status
        .as_ref()
        .and_then(|s| condition::find(&s.conditions, type_))
        .and_then(|c| c.message.clone())
        .unwrap_or_default()
}

async fn ready(api: &Api<Workload>, name: &str) -> Workload {
    eventually(&format!("Workload {name} to be Ready"), WAIT, || async {
        api.get(name)
            .await
            .ok()
            .filter(|w| status_of(w, ct::READY) == ConditionStatus::True)
    })
    .await
}

/// `GET /` with `Host: host` from 127.0.0.1:`port`: the status and the body.
async fn get_body(port: u16, host: &str) -> (u16, String) {
    let r = weft_e2e::testing::http_get_host(("127.0.0.1", port), host)
        .await
        .expect("GET");
    (r.status, r.body)
}

async fn create(api: &Api<Workload>, w: &Workload) {
    api.create(&PostParams::default(), w)
        .await
        .expect("create Workload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_are_placed_started_served_stopped_and_placed_again_when_their_host_dies() {
    let env = Env::shared().await;
    let ns = env.new_namespace("wl").await.expect("namespace");
    let tenant = env.new_namespace("wl-tenant").await.expect("namespace");
    let admin: Client = env.admin_client();
    install_host_crd(&admin).await;
    install_rbac(&admin, ns.name(), &[], &[SA]).await;
    let audit = env.audit_log();
    let mark = audit.mark();
    let operator = Operator::start(
        env,
        ns.name(),
        SA,
        &[],
        &[&format!("--watch-namespaces={},{}", ns.name(), tenant.name())],
    )
    .await;
    let url = operator.nats.as_ref().expect("own NATS").url();
    let hosts: Api<weft_crds::Host> = Api::namespaced(admin.clone(), ns.name());
    let a = spawn_host(&url, free_port(), &[]);
    let b = spawn_host(&url, free_port(), &[]);
    let host_a = ready_host_on(&hosts, a.http_port).await;
    let host_b = ready_host_on(&hosts, b.http_port).await;
    let port_of = |id: &str| {
        if id == host_a.spec.host_id {
            a.http_port
        } else {
            b.http_port
        }
    };
    let api: Api<Workload> = Api::namespaced(admin.clone(), tenant.name());

    // Applied → placed by the scheduler, started, Ready; its host serves it.
    create(
        &api,
        &workload("hello", weft_test_components::HELLO, "hello.test"),
    )
    .await;
    let w = ready(&api, "hello").await;
    let status = w.status.clone().unwrap();
    let placed_on = status.host_id.clone().expect("hostId");
    assert_eq!(status.workload_id, w.uid(), "the workload ID is the UID");
    assert!(
        message_of(&w, ct::HOST_SELECTION).contains("by policy spread"),
        "{}",
        message_of(&w, ct::HOST_SELECTION)
    );
    assert!(w.finalizers().iter().any(|f| f == finalizers::WORKLOAD));
    eventually("the host to serve hello", WAIT, || async {
        (get_body(port_of(&placed_on), "hello.test").await == (200, "hello\n".to_string())).then_some(())
    })
    .await;

    // A missing ConfigMap: the condition names it; creating it makes the Workload Ready.
    let mut needs_cm = workload("needs-config", weft_test_components::HELLO, "cfg.test");
    needs_cm.spec.components.as_mut().unwrap()[0].local_resources = Some(LocalResources {
        environment: Some(ConfigLayer {
            config_from: Some(vec![reference("app-settings")]),
            ..Default::default()
        }),
        ..Default::default()
    });
    create(&api, &needs_cm).await;
    let waiting = eventually("Config False", WAIT, || async {
        api.get("needs-config")
            .await
            .ok()
            .filter(|w| status_of(w, ct::CONFIG) == ConditionStatus::False)
    })
    .await;
    assert!(
        message_of(&waiting, ct::CONFIG).contains("ConfigMap app-settings not found"),
        "{:?}",
        waiting.status
    );
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), tenant.name());
    cms.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: ObjectMeta {
                name: Some("app-settings".into()),
                ..Default::default()
            },
            data: Some([("MODE".to_string(), "test".to_string())].into()),
            ..Default::default()
        },
    )
    .await
    .expect("create ConfigMap");
    ready(&api, "needs-config").await;

    // A component the host cannot fetch: Placement False with the host's own message.
    create(
        &api,
        &workload("broken", "/nonexistent/missing.wasm", "broken.test"),
    )
    .await;
    let broken = eventually("Placement False", WAIT, || async {
        api.get("broken")
            .await
            .ok()
            .filter(|w| status_of(w, ct::PLACEMENT) == ConditionStatus::False)
    })
    .await;
    let msg = message_of(&broken, ct::PLACEMENT);
    assert!(
        msg.contains("could not start the workload") && msg.contains("missing.wasm"),
        "{msg}"
    );

    // An unknown policy is a clear condition.
    let mut unknown = workload("unknown-policy", weft_test_components::HELLO, "u.test");
    unknown.spec.scheduler_name = Some("binpak".into());
    create(&api, &unknown).await;
    let unsched = eventually("HostSelection False", WAIT, || async {
        api.get("unknown-policy")
            .await
            .ok()
            .filter(|w| status_of(w, ct::HOST_SELECTION) == ConditionStatus::False)
    })
    .await;
    assert!(message_of(&unsched, ct::HOST_SELECTION).contains("unknown scheduling policy \"binpak\""));

    // No feasible host: the pipeline's explanation.
    let mut nowhere = workload("nowhere", weft_test_components::HELLO, "n.test");
    nowhere.spec.host_selector = Some([("zone".to_string(), "mars".to_string())].into());
    create(&api, &nowhere).await;
    let nowhere = eventually("HostSelection False", WAIT, || async {
        api.get("nowhere")
            .await
            .ok()
            .filter(|w| status_of(w, ct::HOST_SELECTION) == ConditionStatus::False)
    })
    .await;
    assert!(
        message_of(&nowhere, ct::HOST_SELECTION).starts_with("0/2 hosts"),
        "{}",
        message_of(&nowhere, ct::HOST_SELECTION)
    );

    // Replicas of one WorkloadReplicaSet, created by it at the same moment, are spread over the hosts
    // by the default policy (each decision sees the ones just made).
    let set: weft_crds::WorkloadReplicaSet = serde_json::from_value(serde_json::json!({
        "apiVersion": "runtime.wasmcloud.dev/v1alpha1",
        "kind": "WorkloadReplicaSet",
        "metadata": {"name": "cart"},
        "spec": {"replicas": 2, "template": {"spec": workload("t", weft_test_components::HELLO, "cart.test").spec}},
    }))
    .expect("a replica set");
    let set = Api::<weft_crds::WorkloadReplicaSet>::namespaced(admin.clone(), tenant.name())
        .create(&PostParams::default(), &set)
        .await
        .expect("create the replica set");
    let replicas = eventually("two Ready replicas of cart", WAIT, || async {
        let owned: Vec<Workload> = api
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|w| {
                w.owner_references()
                    .iter()
                    .any(|o| o.uid == set.uid().unwrap_or_default())
            })
            .collect();
        (owned.len() == 2
            && owned
                .iter()
                .all(|w| status_of(w, ct::READY) == ConditionStatus::True))
        .then_some(owned)
    })
    .await;
    let spread_hosts: std::collections::BTreeSet<String> = replicas
        .iter()
        .map(|w| w.status.clone().unwrap().host_id.unwrap())
        .collect();
    assert_eq!(spread_hosts.len(), 2, "the two replicas run on different hosts");

    // Pinned to a host by spec.hostId.
    let mut pinned = workload("pinned", weft_test_components::HELLO, "pinned.test");
    pinned.spec.host_id = Some(host_b.spec.host_id.clone());
    create(&api, &pinned).await;
    let p = ready(&api, "pinned").await;
    assert_eq!(p.status.unwrap().host_id, Some(host_b.spec.host_id.clone()));

    // Deleted → stopped on its host (its route answers 404), then gone.
    api.delete("pinned", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the Workload to go", WAIT, || async {
        api.get_opt("pinned").await.ok()?.is_none().then_some(())
    })
    .await;
    assert_eq!(
        get_body(b.http_port, "pinned.test").await.0,
        404,
        "stopped on the host"
    );

    // Its host dies: the bare Workload is placed on the other host and served there.
    let victim = if placed_on == host_a.spec.host_id { &a } else { &b };
    victim.process.signal(9);
    let moved = eventually(
        "hello to be Ready on the other host",
        Duration::from_secs(90),
        || async {
            api.get("hello").await.ok().filter(|w| {
                status_of(w, ct::READY) == ConditionStatus::True
                    && w.status
                        .as_ref()
                        .and_then(|s| s.host_id.as_deref())
                        .is_some_and(|h| h != placed_on)
            })
        },
    )
    .await;
    let new_host = moved.status.unwrap().host_id.unwrap();
    assert_eq!(
        get_body(port_of(&new_host), "hello.test").await,
        (200, "hello\n".to_string())
    );

    let scrape = operator.metrics().await.expect("metrics");
    assert!(
        scrape
            .value(
                "weft_workload_placements_total",
                &[("policy", "spread"), ("result", "placed")]
            )
            .unwrap_or(0.0)
            >= 3.0
    );
    let denied = denied(&audit.events_since(mark), &operator.user);
    assert!(
        denied.is_empty(),
        "the shipped RBAC is enough; denied: {denied:?}"
    );
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_plugins_decide_placement_and_a_bad_one_stops_the_operator() {
    let env = Env::shared().await;
    let ns = env.new_namespace("wl-plugin").await.expect("namespace");
    let admin: Client = env.admin_client();
    install_host_crd(&admin).await;
    // The namespaced mode: Roles only, no ClusterRole.
    weft_e2e::system::install_operator_rbac_namespaced(&admin, ns.name(), &[], &[ns.name()], &[SA])
        .await
        .expect("the shipped namespaced RBAC");
    let audit = env.audit_log();
    let mark = audit.mark();

    // A plugin that is not one: the operator refuses to start with the loader's error.
    let bad_dir = weft_testkit::TempDir::new("bad-plugins").expect("dir");
    std::fs::copy(
        weft_scheduler_testing::wrong_major(),
        bad_dir.path().join("libwrong.so"),
    )
    .expect("copy");
    let kubeconfig = env
        .service_account_kubeconfig(ns.name(), SA)
        .await
        .expect("kubeconfig");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_weft-operator"));
    cmd.env("KUBECONFIG", &kubeconfig)
        .env("OPERATOR_NAMESPACE", ns.name())
        .arg(format!("--health-probe-bind-address=127.0.0.1:{}", free_port()))
        .arg(format!("--metrics-bind-address=127.0.0.1:{}", free_port()))
        .arg(format!("--scheduler-plugin-dir={}", bad_dir.path().display()));
    let mut refused = weft_testkit::Supervised::spawn(
        "weft-operator (bad plugin)",
        cmd,
        &bad_dir.path().join("operator.log"),
    )
    .expect("spawn");
    let status = refused.wait_exit(Duration::from_secs(30)).expect("exits");
    assert!(!status.success());
    let log = refused.log_tail(16 * 1024);
    assert!(log.contains("libwrong.so") && log.contains("ABI"), "{log}");

    // The misbehaving-spread plugin places workloads (like spread), and what it chooses is checked.
    let dir = weft_testkit::TempDir::new("plugins").expect("dir");
    std::fs::copy(
        weft_scheduler_testing::misbehaving_plugin(),
        dir.path().join("libmisbehaving.so"),
    )
    .expect("copy");
    let flag = format!("--scheduler-plugin-dir={}", dir.path().display());
    let operator = Operator::start(env, ns.name(), SA, &[], &[&flag]).await;
    let url = operator.nats.as_ref().expect("own NATS").url();
    let hosts: Api<weft_crds::Host> = Api::namespaced(admin.clone(), ns.name());
    let host = spawn_host(&url, free_port(), &[]);
    ready_host_on(&hosts, host.http_port).await;
    let api: Api<Workload> = Api::namespaced(admin.clone(), ns.name());
    let mut by_plugin = workload("by-plugin", weft_test_components::HELLO, "plugin.test");
    by_plugin.spec.scheduler_name = Some("misbehaving-spread".into());
    create(&api, &by_plugin).await;
    let w = ready(&api, "by-plugin").await;
    assert!(
        message_of(&w, ct::HOST_SELECTION).contains("by policy misbehaving-spread"),
        "{}",
        message_of(&w, ct::HOST_SELECTION)
    );
    // A choice the standard filters reject is never used.
    let mut bad_choice = workload(
        weft_scheduler_misbehaving_plugin::UNKNOWN_HOST,
        weft_test_components::HELLO,
        "bad.test",
    );
    bad_choice.spec.scheduler_name = Some("misbehaving-spread".into());
    create(&api, &bad_choice).await;
    let w = eventually("HostSelection False", WAIT, || async {
        api.get(weft_scheduler_misbehaving_plugin::UNKNOWN_HOST)
            .await
            .ok()
            .filter(|w| status_of(w, ct::HOST_SELECTION) == ConditionStatus::False)
    })
    .await;
    assert!(
        message_of(&w, ct::HOST_SELECTION).contains("returned invalid output"),
        "{}",
        message_of(&w, ct::HOST_SELECTION)
    );
    assert!(w.status.unwrap().host_id.is_none());
    let denied = denied(&audit.events_since(mark), &operator.user);
    assert!(
        denied.is_empty(),
        "Roles in the watched namespace are enough; denied: {denied:?}"
    );
    drop(host);
}
