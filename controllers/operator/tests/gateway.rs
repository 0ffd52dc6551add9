//! The runtime gateway end to end: the real `weft-gateway` binary under its ServiceAccount with the
//! shipped RBAC (`deploy/gateway/`), in front of real `weft-host` processes running the test
//! components, with the operator placing WorkloadDeployments on a real control plane.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use support::rollout::{deployment, rolled_out, workloads_of};
use support::{
    Operator, System, WAIT, denied, eventually, install_host_crd, install_rbac, ready_host_on, spawn_host,
};
use weft_crds::ConditionStatus;
use weft_crds::{Host, Workload, WorkloadDeployment};
use weft_e2e::Env;
use weft_e2e::system::{self, GatewayProcess};
use weft_e2e::testing::{HttpResponse, http_get_host};
use weft_framework::exposition::{self, Format};
use weft_testkit::{TempDir, free_port};

const SA: &str = "weft-operator";

async fn start_gateway(env: &Env, ns: &str, dir: &TempDir, n: usize) -> GatewayProcess {
    let binary = system::workspace_binary("weft-gateway").unwrap_or_else(|e| panic!("{e}"));
    GatewayProcess::start(
        env,
        binary,
        ns,
        None,
        &["--shutdown-delay=0s".to_string()],
        &dir.path().join(format!("gateway-{n}.log")),
        WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("weft-gateway did not become ready: {e}"))
}

async fn get(gateway: SocketAddr, host: &str) -> HttpResponse {
    http_get_host(gateway, host)
        .await
        .expect("GET through the gateway")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_routes_by_host_spreads_over_hosts_and_loses_nothing_when_a_host_dies() {
    let env = Env::shared().await;
    let ns = env.new_namespace("gw").await.expect("namespace");
    let admin: Client = env.admin_client();
    install_host_crd(&admin).await;
    install_rbac(&admin, ns.name(), &[], &[SA]).await;
    system::install_gateway_rbac(&admin, ns.name())
        .await
        .expect("the gateway's RBAC");
    let audit = env.audit_log();
    let mark = audit.mark();
    let operator = Operator::start(env, ns.name(), SA, &[], &[]).await;
    let url = operator.nats.as_ref().expect("own NATS").url();
    let hosts_api: Api<Host> = Api::namespaced(admin.clone(), ns.name());
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let h = spawn_host(&url, free_port(), &["--shutdown-delay=0s"]);
        ready_host_on(&hosts_api, h.http_port).await;
        hosts.push(h);
    }
    let dir = TempDir::new("gateway").expect("temp dir");
    let mut gateway = start_gateway(env, ns.name(), &dir, 0).await;
    let api: Api<WorkloadDeployment> = Api::namespaced(admin.clone(), ns.name());
    let workloads: Api<Workload> = Api::namespaced(admin.clone(), ns.name());
    for d in [
        deployment(
            "hello",
            2,
            weft_test_components::HELLO,
            "hello.gw.test",
            serde_json::json!({}),
        ),
        deployment(
            "echo",
            2,
            weft_test_components::ECHO,
            "echo.gw.test",
            serde_json::json!({}),
        ),
    ] {
        api.create(&PostParams::default(), &d).await.expect("create");
    }

    // Two hostnames, each to its own workloads; the port and case of the Host header do not matter.
    rolled_out(&api, "hello").await;
    rolled_out(&api, "echo").await;
    let first = eventually("hello through the gateway", WAIT, || async {
        let r = get(gateway.proxy, "hello.gw.test").await;
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(first.body, "hello\n");
    assert_eq!(get(gateway.proxy, "Hello.GW.test:8080").await.body, "hello\n");
    eventually("echo through the gateway", WAIT, || async {
        (get(gateway.proxy, "echo.gw.test").await.status == 200).then_some(())
    })
    .await;

    // h2c (HTTP/2 with prior knowledge) is served too; the host is reached over HTTP/1.1.
    let stream = tokio::net::TcpStream::connect(gateway.proxy)
        .await
        .expect("connect");
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("an h2c handshake");
    tokio::spawn(conn);
    let request = http::Request::builder()
        .uri(format!("http://{}/", gateway.proxy))
        .header(http::header::HOST, "hello.gw.test")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = h2.send_request(request).await.expect("an h2c response");
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("the body")
        .to_bytes();
    assert_eq!(&body[..], b"hello\n");

    // Unknown host: wasmCloud's 503.
    let unknown = get(gateway.proxy, "nobody.gw.test").await;
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (503, "No backend available\n")
    );

    // Both replicas get traffic (the echo component returns the X-Workload-Id the gateway adds), and the
    // forwarding headers are set.
    let ws = workloads_of(&workloads, "echo").await;
    let ids: BTreeSet<String> = ws
        .iter()
        .filter_map(|w| w.status.as_ref()?.workload_id.clone())
        .collect();
    assert_eq!(ids.len(), 2);
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        let r = get(gateway.proxy, "echo.gw.test").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-forwarded-host"), Some("echo.gw.test"));
        assert_eq!(r.header("x-forwarded-proto"), Some("http"));
        assert_eq!(r.header("x-real-ip"), Some("127.0.0.1"));
        seen.insert(r.header("x-workload-id").unwrap_or_default().to_string());
    }
    assert_eq!(seen, ids, "round robin reached both replicas");

    // A host SIGKILLed under a request loop: requests the dead host refuses are retried on the other.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let proxy = gateway.proxy;
    let looper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            let started = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(120)
            {
                match http_get_host(proxy, "hello.gw.test").await {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => failed.push(format!("HTTP {}: {}", r.status, r.body.trim())),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    hosts[0].process.signal(9);
    // Until the operator notices (Ready Unknown after about 2 s), the dead host stays in the table;
    // every request the gateway sends there is refused and retried.
    eventually(
        "the hello deployment whole again",
        Duration::from_secs(90),
        || async {
            let ws = workloads_of(&workloads, "hello").await;
            let dead = hosts_api
                .list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|h| h.spec.http_port == Some(u32::from(hosts[0].http_port)))
                .map(|h| h.spec.host_id);
            (ws.len() == 2
                && ws
                    .iter()
                    .all(|w| w.is_ready() && w.status.as_ref().and_then(|s| s.host_id.clone()) != dead))
            .then_some(())
        },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = looper.await.unwrap();
    eprintln!("host SIGKILL: {ok} requests answered, {} failed", failed.len());
    assert!(ok > 50, "the loop ran: {ok}");
    assert!(
        failed.len() <= 1,
        "at most the request in flight to the killed host fails: {failed:?}"
    );
    let scrape = exposition::parse(
        &weft_e2e::testing::http_get(gateway.probes, "/metrics", None)
            .await
            .unwrap()
            .body,
        Format::Prometheus,
    )
    .expect("a valid scrape");
    assert!(scrape.value("weft_gateway_ejections_total", &[]).unwrap_or(0.0) >= 1.0);
    assert!(
        scrape
            .value(
                "weft_gateway_requests_total",
                &[("route", "hello.gw.test"), ("code", "200")]
            )
            .unwrap_or(0.0)
            >= 50.0
    );
    assert_eq!(scrape.value("weft_gateway_routes", &[]), Some(2.0));

    // A restarted gateway rebuilds its routes from the caches.
    drop(gateway);
    gateway = start_gateway(env, ns.name(), &dir, 1).await;
    eventually("routes after a restart", WAIT, || async {
        (get(gateway.proxy, "hello.gw.test").await.status == 200).then_some(())
    })
    .await;

    // A deleted deployment leaves the table.
    api.delete("echo", &DeleteParams::background())
        .await
        .expect("delete");
    eventually("echo to be unrouted", WAIT, || async {
        (get(gateway.proxy, "echo.gw.test").await.status == 503).then_some(())
    })
    .await;
    let denied = denied(&audit.events_since(mark), &gateway.user);
    assert!(
        denied.is_empty(),
        "the shipped gateway RBAC is enough; denied: {denied:?}"
    );
    drop(hosts);
}

/// The replicas the gateway picks for `host` over `n` requests, by the `X-Workload-Id` it sends (the echo
/// component returns it).
async fn replicas_reached(gateway: SocketAddr, host: &str, n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        let r = get(gateway, host).await;
        assert_eq!(r.status, 200, "{}", r.body);
        seen.insert(r.header("x-workload-id").unwrap_or_default().to_string());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_that_is_not_ready_gets_no_traffic_although_its_host_still_serves_it() {
    let mut system = System::start("gw-ready", &["127.0.0.1", "127.0.0.1"]).await;
    system::install_gateway_rbac(&system.admin, system.ns.name())
        .await
        .expect("the gateway's RBAC");
    let dir = TempDir::new("gateway-ready").expect("temp dir");
    let gateway = start_gateway(system.env, system.ns.name(), &dir, 0).await;
    let api: Api<WorkloadDeployment> = system.api();
    let workloads: Api<Workload> = system.api();
    api.create(
        &PostParams::default(),
        &deployment(
            "echo",
            2,
            weft_test_components::ECHO,
            "ready.gw.test",
            serde_json::json!({}),
        ),
    )
    .await
    .expect("create");
    rolled_out(&api, "echo").await;
    let ws = workloads_of(&workloads, "echo").await;
    let hosts: BTreeSet<String> = ws
        .iter()
        .filter_map(|w| w.status.as_ref()?.host_id.clone())
        .collect();
    assert_eq!(hosts.len(), 2, "one replica per host");
    let id = |w: &Workload| {
        w.status
            .as_ref()
            .and_then(|s| s.workload_id.clone())
            .unwrap_or_default()
    };
    let (a, b) = (ws[0].clone(), ws[1].clone());
    eventually("both replicas routed", WAIT, || async {
        (replicas_reached(gateway.proxy, "ready.gw.test", 10).await.len() == 2).then_some(())
    })
    .await;

    // Nobody else writes Workload status from here on: the operator is stopped (its nats-server stays,
    // so the hosts keep serving), and the test sets replica a's Ready condition to False.
    system.operator.process.signal(9);
    assert!(
        system.operator.process.wait_exit(WAIT).is_some(),
        "the operator exits"
    );
    let set_ready = |status: ConditionStatus| {
        let workloads = workloads.clone();
        let name = a.name_any();
        async move {
            let mut w = workloads.get_status(&name).await.expect("get");
            let conditions = &mut w.status.as_mut().expect("a status").conditions;
            for c in conditions.iter_mut().filter(|c| c.type_ == "Ready") {
                c.status = status.clone();
                c.reason = Some("Test".into());
            }
            workloads
                .replace_status(&name, &PostParams::default(), &w)
                .await
                .expect("replace status");
        }
    };
    set_ready(ConditionStatus::False).await;
    eventually("replica a unrouted", WAIT, || async {
        (replicas_reached(gateway.proxy, "ready.gw.test", 10).await == BTreeSet::from([id(&b)])).then_some(())
    })
    .await;
    assert_eq!(
        replicas_reached(gateway.proxy, "ready.gw.test", 50).await,
        BTreeSet::from([id(&b)]),
        "no request goes to the replica that is not Ready"
    );
    let host_of_a = a.status.as_ref().and_then(|s| s.host_id.clone());
    let port_of_a = system
        .hosts_api
        .list(&Default::default())
        .await
        .expect("list hosts")
        .items
        .into_iter()
        .find(|h| Some(&h.spec.host_id) == host_of_a.as_ref())
        .and_then(|h| h.spec.http_port)
        .expect("replica a's host and its port");
    let direct = http_get_host(
        SocketAddr::from(([127, 0, 0, 1], port_of_a as u16)),
        "ready.gw.test",
    )
    .await
    .expect("GET the host directly");
    assert_eq!(direct.status, 200, "the host still serves replica a");

    // Ready again: routed again.
    set_ready(ConditionStatus::True).await;
    eventually("replica a routed again", WAIT, || async {
        (replicas_reached(gateway.proxy, "ready.gw.test", 10).await.len() == 2).then_some(())
    })
    .await;
}
