//! `weft-operator` end to end on the real control plane, running as its ServiceAccount with only the
//! RBAC shipped in `deploy/operator/`, with pods run by the process-kubelet (real IPs, graceful deletion).

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use support::{Operator, WAIT, eventually, has_pod_finalizer, install_host_crd, install_rbac, pod};
use weft_crds::{Host, HostFields};
use weft_e2e::{AuditEvent, Env};

const SA: &str = "weft-operator";

async fn running_ip(pods: &Api<Pod>, name: &str) -> String {
    eventually(&format!("pod {name} to get an IP"), WAIT, || async {
        let p = pods.get(name).await.ok()?;
        p.status?.pod_ip.filter(|ip| !ip.is_empty())
    })
    .await
}

async fn create_host(client: &Client, ns: &str, name: &str, hostname: &str) {
    let host = Host::new(
        name,
        HostFields {
            host_id: format!("id-{name}"),
            hostname: Some(hostname.into()),
            ..Default::default()
        },
    );
    Api::<Host>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &host)
        .await
        .expect("create Host");
}

fn writes_by<'a>(events: &'a [AuditEvent], user: &'a str) -> impl Iterator<Item = &'a AuditEvent> + 'a {
    events
        .iter()
        .filter(move |e| e.user.username == user && e.stage == "ResponseComplete")
        .filter(|e| {
            matches!(
                e.verb.as_str(),
                "create" | "update" | "patch" | "delete" | "deletecollection"
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_finalizer_end_to_end_with_only_the_shipped_rbac() {
    let env = Env::shared().await;
    let ns = env.new_namespace("op-pf").await.expect("namespace");
    let tenant = env.new_namespace("op-pf-hosts").await.expect("host namespace");
    let admin = env.admin_client();
    install_host_crd(&admin).await;
    install_rbac(&admin, ns.name(), &[tenant.name()], &[SA]).await;
    let audit = env.audit_log();
    let mark = audit.mark();
    let mut operator = Operator::start(env, ns.name(), SA, &[tenant.name()], &[]).await;

    let pods: Api<Pod> = Api::namespaced(admin.clone(), tenant.name());
    pods.create(&PostParams::default(), &pod("host-a", Some("default")))
        .await
        .expect("create host pod");
    pods.create(&PostParams::default(), &pod("host-b", Some("default")))
        .await
        .expect("create host pod");
    pods.create(&PostParams::default(), &pod("plain", None))
        .await
        .expect("create plain pod");
    for name in ["host-a", "host-b"] {
        eventually(&format!("the finalizer on {name}"), WAIT, || async {
            pods.get(name).await.ok().filter(has_pod_finalizer).map(|_| ())
        })
        .await;
    }
    let ip_a = running_ip(&pods, "host-a").await;
    running_ip(&pods, "plain").await;

    // host-a's Host (hostname = its IP) and an unrelated Host.
    create_host(&admin, ns.name(), "host-a-host", &ip_a).await;
    create_host(&admin, ns.name(), "elsewhere", "10.255.0.1").await;
    eventually("the operator to cache both Hosts", WAIT, || async {
        let m = operator.metrics().await?;
        (m.value("weft_informer_objects", &[("kind", "hosts")]) == Some(2.0)).then_some(())
    })
    .await;

    // Deleting a host pod deletes its Host, then the pod goes away.
    pods.delete("host-a", &DeleteParams::default())
        .await
        .expect("delete host-a");
    let hosts: Api<Host> = Api::namespaced(admin.clone(), ns.name());
    eventually("host-a's Host to be deleted", WAIT, || async {
        hosts.get_opt("host-a-host").await.ok()?.is_none().then_some(())
    })
    .await;
    eventually("host-a to disappear", WAIT, || async {
        pods.get_opt("host-a").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        hosts.get_opt("elsewhere").await.expect("get").is_some(),
        "other Hosts are untouched"
    );

    // A host pod whose IP matches no Host is released too.
    pods.delete("host-b", &DeleteParams::default())
        .await
        .expect("delete host-b");
    eventually("host-b to disappear", WAIT, || async {
        pods.get_opt("host-b").await.ok()?.is_none().then_some(())
    })
    .await;

    let plain = pods.get("plain").await.expect("plain pod");
    assert!(
        !has_pod_finalizer(&plain),
        "pods without the host label never get the finalizer"
    );

    let events = audit.events_since(mark);
    let user = operator.user.clone();
    let mine: Vec<&AuditEvent> = events.iter().filter(|e| e.user.username == user).collect();
    assert!(!mine.is_empty(), "the operator's requests are in the audit log");
    let denied: Vec<String> = mine
        .iter()
        .filter(|e| e.code() == Some(403))
        .map(|e| format!("{} {}", e.verb, e.request_uri))
        .collect();
    assert!(
        denied.is_empty(),
        "the shipped RBAC is enough; denied: {denied:?}"
    );
    for e in mine
        .iter()
        .filter(|e| e.resource() == "pods" && matches!(e.verb.as_str(), "list" | "watch"))
    {
        assert!(
            e.namespace() == ns.name() || e.namespace() == tenant.name(),
            "pods are only listed and watched per host namespace: {} {}",
            e.verb,
            e.request_uri
        );
    }
    let patched: Vec<String> = writes_by(&events, &user)
        .filter(|e| e.resource() == "pods")
        .map(|e| e.object_ref.as_ref().map(|o| o.name.clone()).unwrap_or_default())
        .collect();
    assert!(
        !patched.iter().any(|n| n == "plain"),
        "the plain pod was never written: {patched:?}"
    );
    let deleted_hosts: Vec<String> = writes_by(&events, &user)
        .filter(|e| e.resource() == "hosts" && e.verb == "delete")
        .map(|e| e.object_ref.as_ref().map(|o| o.name.clone()).unwrap_or_default())
        .collect();
    assert_eq!(deleted_hosts, vec!["host-a-host"]);

    // SIGTERM: a clean exit that hands the lease back.
    operator.process.signal(15);
    let status = operator
        .process
        .wait_exit(Duration::from_secs(30))
        .expect("exits after SIGTERM");
    assert!(
        status.success(),
        "clean exit on SIGTERM: {status:?}\n{}",
        operator.log()
    );
    let lease = Api::<Lease>::namespaced(admin.clone(), ns.name())
        .get(weft_crds::names::LEADER_ELECTION_ID)
        .await
        .expect("the leader lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity),
        None,
        "released on shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_two_replicas_kill_the_leader_the_other_takes_over() {
    let env = Env::shared().await;
    let ns = env.new_namespace("op-le").await.expect("namespace");
    let admin = env.admin_client();
    install_host_crd(&admin).await;
    let (sa_a, sa_b) = ("weft-operator-a", "weft-operator-b");
    install_rbac(&admin, ns.name(), &[], &[sa_a, sa_b]).await;
    let lease_name = "weft-le-test";
    let timing = [
        "--leader-election-id",
        lease_name,
        "--lease-duration",
        "4s",
        "--renew-deadline",
        "3s",
        "--retry-period",
        "500ms",
    ];
    let audit = env.audit_log();
    let mark = audit.mark();

    let a = Operator::start(env, ns.name(), sa_a, &[], &timing).await;
    eventually("replica a to lead", WAIT, || async {
        a.leads(lease_name).await.filter(|l| *l)
    })
    .await;
    let b = Operator::start(env, ns.name(), sa_b, &[], &timing).await;
    assert_eq!(
        b.leads(lease_name).await,
        Some(false),
        "b is a ready follower: caches warm, not leading"
    );

    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns.name());
    pods.create(&PostParams::default(), &pod("first", Some("g")))
        .await
        .expect("create pod");
    eventually("the leader to add the finalizer", WAIT, || async {
        pods.get("first").await.ok().filter(has_pod_finalizer).map(|_| ())
    })
    .await;
    let before_kill = audit.events_since(mark);
    assert!(
        writes_by(&before_kill, &a.user).any(|e| e.resource() == "pods"),
        "the leader wrote the finalizer"
    );
    let follower_writes: Vec<String> = writes_by(&before_kill, &b.user)
        .map(|e| format!("{} {}", e.verb, e.request_uri))
        .collect();
    assert!(
        follower_writes.is_empty(),
        "a follower writes nothing, not even the lease: {follower_writes:?}"
    );
    let follower = b.metrics().await.expect("metrics");
    let reconciles: f64 = follower
        .samples("controller_runtime_reconcile_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(reconciles, 0.0, "no reconcile runs on a follower");

    let leases: Api<Lease> = Api::namespaced(admin.clone(), ns.name());
    let held = leases.get(lease_name).await.expect("lease").spec.expect("spec");
    let killed_at = Instant::now();
    a.process.signal(9);
    eventually("replica b to take over", WAIT, || async {
        b.leads(lease_name).await.filter(|l| *l)
    })
    .await;
    let takeover = killed_at.elapsed();
    eprintln!("leader killed -> follower leads: {takeover:?} (lease duration 4s, retry period 500ms)");
    let now = leases.get(lease_name).await.expect("lease").spec.expect("spec");
    assert_ne!(
        now.holder_identity, held.holder_identity,
        "the lease changed hands"
    );
    assert_eq!(
        now.lease_transitions,
        Some(held.lease_transitions.unwrap_or(0) + 1)
    );

    let mark_after = audit.mark();
    pods.create(&PostParams::default(), &pod("second", Some("g")))
        .await
        .expect("create pod");
    eventually("the new leader to add the finalizer", WAIT, || async {
        pods.get("second")
            .await
            .ok()
            .filter(has_pod_finalizer)
            .map(|_| ())
    })
    .await;
    let after = audit.events_since(mark_after);
    assert!(
        writes_by(&after, &b.user).any(|e| e.resource() == "pods"),
        "the new leader writes"
    );
    assert_eq!(
        writes_by(&after, &a.user).count(),
        0,
        "the killed replica wrote nothing more"
    );

    // Clean up while a leader runs: the finalizers are released.
    for name in ["first", "second"] {
        pods.delete(name, &DeleteParams::default()).await.expect("delete");
    }
    for name in ["first", "second"] {
        eventually(&format!("{name} to disappear"), WAIT, || async {
            pods.get_opt(name).await.ok()?.is_none().then_some(())
        })
        .await;
    }
}
