//! The Host controller end to end: the real operator under its ServiceAccount with the shipped RBAC, a
//! real kube-apiserver, real nats-servers (one per test, so they can be stopped) and real `weft-host`
//! processes; where a test needs a host that behaves in a way `weft-host` never does (a chosen friendly
//! name, a malformed payload) it speaks the NATS protocol itself.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use support::{
    Operator, WAIT, eventually, hello_workload, install_host_crd, install_rbac, ready, ready_host_on,
    spawn_host,
};
use weft_crds::condition::{self, ConditionStatus};
use weft_crds::names::{condition_types, finalizers};
use weft_crds::{Host, Workload};
use weft_e2e::Env;
use weft_host_api::{HostHeartbeat, subjects};
use weft_testkit::{NatsServer, Supervised, TempDir, free_port};

const SA: &str = "weft-operator";

/// A bare Workload (no ReplicaSet owns it) whose status says it runs on `host_id`.
async fn placed_workload(client: &Client, ns: &str, name: &str, host_id: &str) -> Workload {
    let path = weft_e2e::system::manifests::source_file("crds/examples/workload-pinned-to-host.yaml");
    let mut w: Workload = weft_e2e::system::manifests::document(&path, "Workload").expect("example");
    w.metadata.name = Some(name.into());
    w.spec.host_id = None;
    let api: Api<Workload> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &w)
        .await
        .expect("create Workload");
    let status = serde_json::json!({ "status": {
        "hostId": host_id,
        "workloadId": "uid-of-the-workload",
        "conditions": [
            {"type": "Placement", "status": "True", "reason": "Available", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Ready", "status": "True", "reason": "Available", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        ],
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("place the Workload")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_become_ready_hosts_and_a_silent_death_is_detected_then_its_workloads_handed_back() {
    let env = Env::shared().await;
    let ns = env.new_namespace("hosts").await.expect("namespace");
    let tenant = env.new_namespace("hosts-tenant").await.expect("namespace");
    let admin = env.admin_client();
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
    let nats_url = operator.nats.as_ref().expect("own NATS").url();
    let hosts: Api<Host> = Api::namespaced(admin.clone(), ns.name());

    let first = spawn_host(&nats_url, free_port(), &[]);
    let second = spawn_host(&nats_url, free_port(), &[]);
    let first_host = ready_host_on(&hosts, first.http_port).await;
    let second_host = ready_host_on(&hosts, second.http_port).await;

    // A bare Workload (no ReplicaSet owns it), placed and running on one of them: that host dies.
    let workloads: Api<Workload> = Api::namespaced(admin.clone(), tenant.name());
    workloads
        .create(
            &PostParams::default(),
            &hello_workload("bare", weft_test_components::HELLO, "bare.test"),
        )
        .await
        .expect("create Workload");
    let placed_on = eventually("the Workload to run", WAIT, || async {
        let w = workloads.get("bare").await.ok()?;
        let s = w.status?;
        condition::is_true(&s.conditions, condition_types::READY).then_some(s.host_id?)
    })
    .await;
    let (doomed, doomed_host, survivor_host, survivor) = if placed_on == first_host.spec.host_id {
        (first, first_host, second_host, second)
    } else {
        (second, second_host, first_host, first)
    };

    // Real status from the heartbeat, the finalizer, the group label.
    let status = doomed_host.status.clone().expect("status");
    assert_eq!(status.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(status.os_name.as_deref(), Some(std::env::consts::OS));
    assert!(status.system_memory_total.unwrap_or(0) > 0);
    assert!(
        status
            .system_cpu_usage
            .as_deref()
            .is_some_and(|c| c.parse::<f64>().is_ok())
    );
    assert!(condition::is_true(&status.conditions, condition_types::REPORTING));
    eventually("the Host finalizer", WAIT, || async {
        let h = hosts.get(&doomed_host.name_any()).await.ok()?;
        h.finalizers().iter().any(|f| f == finalizers::HOST).then_some(())
    })
    .await;
    assert_eq!(
        doomed_host.labels().get("hostgroup").map(String::as_str),
        Some("hosts-test")
    );
    assert_eq!(doomed_host.spec.hostname.as_deref(), Some("127.0.0.1"));

    // SIGKILL: no goodbye. Ready stops being True within seconds.
    doomed.process.signal(9);
    let killed = Instant::now();
    let name = doomed_host.name_any();
    eventually("the killed host's Host to stop being Ready", WAIT, || async {
        let h = hosts.get_opt(&name).await.ok()?;
        h.is_none_or(|h| ready(&h) != ConditionStatus::True).then_some(())
    })
    .await;
    let detected = killed.elapsed();
    eventually("the dead Host to be deleted", WAIT, || async {
        hosts.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
    let deleted = killed.elapsed();
    println!("silent death: Ready not True after {detected:?}, Host deleted after {deleted:?}");

    // The bare Workload is handed back (not deleted, as wasmCloud would) and placed on the other host.
    let events: Api<Event> = Api::namespaced(admin.clone(), tenant.name());
    let handed = eventually("a HostLost event on the Workload", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("HostLost")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("bare")
        })
    })
    .await;
    assert!(
        handed
            .note
            .unwrap_or_default()
            .contains(&doomed_host.spec.host_id)
    );
    eventually("the Workload to run on the other host", WAIT, || async {
        let s = workloads.get("bare").await.ok()?.status?;
        (condition::is_true(&s.conditions, condition_types::READY)
            && s.host_id.as_deref() == Some(survivor_host.spec.host_id.as_str()))
        .then_some(())
    })
    .await;

    // The other host is untouched.
    let still = hosts.get(&survivor_host.name_any()).await.expect("survivor");
    assert_eq!(still.uid(), survivor_host.uid());
    assert_eq!(ready(&still), ConditionStatus::True);

    // Writes at steady state: a status refresh per host per refresh interval, not one per heartbeat.
    let scrape = operator.metrics().await.expect("metrics");
    assert!(scrape.value("weft_host_heartbeats_total", &[]).unwrap_or(0.0) >= 4.0);
    assert!(
        scrape
            .value("weft_host_probes_total", &[("result", "failed")])
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        scrape
            .value("weft_host_writes_total", &[("kind", "delete")])
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        scrape
            .value("weft_host_writes_total", &[("kind", "handback")])
            .unwrap_or(0.0)
            >= 1.0
    );
    let denied = support::denied(&audit.events_since(mark), &operator.user);
    assert!(
        denied.is_empty(),
        "the shipped RBAC is enough; denied: {denied:?}\n{}",
        operator.log()
    );
    drop(survivor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_longer_than_the_ttl_and_an_operator_restart_delete_nothing() {
    let env = Env::shared().await;
    let ns = env.new_namespace("hosts-bus").await.expect("namespace");
    let admin = env.admin_client();
    install_host_crd(&admin).await;
    install_rbac(&admin, ns.name(), &[], &[SA]).await;
    let port = free_port();
    let nats_dir = TempDir::new("nats").expect("dir");
    let mut nats = NatsServer::start_in(nats_dir.path(), port).expect("nats-server");
    let url = nats.url();
    let ttl = Duration::from_secs(3);
    let flags = [
        format!("--nats-url={url}"),
        format!("--host-ttl={}s", ttl.as_secs()),
        "--leader-elect=false".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut operator = Operator::start(env, ns.name(), SA, &[], &flags).await;
    let hosts: Api<Host> = Api::namespaced(admin.clone(), ns.name());
    let a = spawn_host(&url, free_port(), &[]);
    let b = spawn_host(&url, free_port(), &[]);
    let uids: BTreeMap<String, String> = [
        ready_host_on(&hosts, a.http_port).await,
        ready_host_on(&hosts, b.http_port).await,
    ]
    .into_iter()
    .map(|h| (h.name_any(), h.uid().unwrap_or_default()))
    .collect();

    // Watch every change of the Hosts from here on: none may be deleted or turn False.
    let watch = tokio::spawn({
        let hosts = hosts.clone();
        async move {
            let mut seen = Vec::new();
            let mut stream = kube::runtime::watcher(hosts, Default::default()).boxed();
            while let Some(Ok(event)) = stream.next().await {
                match event {
                    kube::runtime::watcher::Event::Delete(h) => {
                        seen.push(format!("deleted {}", h.name_any()))
                    }
                    kube::runtime::watcher::Event::Apply(h) | kube::runtime::watcher::Event::InitApply(h)
                        if ready(&h) == ConditionStatus::False =>
                    {
                        seen.push(format!("{} Ready False", h.name_any()))
                    }
                    _ => {}
                }
            }
            seen
        }
    });

    // NATS down for three TTLs.
    nats.stop();
    tokio::time::sleep(ttl * 3).await;
    let _nats = NatsServer::start_in(nats_dir.path(), port).expect("restart nats-server");
    for port in [a.http_port, b.http_port] {
        ready_host_on(&hosts, port).await;
    }
    tokio::time::sleep(ttl * 2).await;

    // The operator killed and started again while the hosts live.
    operator.process.signal(9);
    operator.process.wait_exit(Duration::from_secs(10));
    let operator = Operator::start(env, ns.name(), SA, &[], &flags).await;
    tokio::time::sleep(ttl * 2).await;
    for port in [a.http_port, b.http_port] {
        ready_host_on(&hosts, port).await;
    }
    watch.abort();
    let list = hosts.list(&ListParams::default()).await.expect("list");
    let now: BTreeMap<String, String> = list
        .items
        .iter()
        .map(|h| (h.name_any(), h.uid().unwrap_or_default()))
        .collect();
    assert_eq!(
        now,
        uids,
        "the same Host objects, none recreated\n{}",
        operator.log()
    );
    match watch.await {
        Err(e) if e.is_cancelled() => {}
        Err(e) => panic!("watch task: {e}"),
        Ok(seen) => assert!(seen.is_empty(), "{seen:?}"),
    }
    drop((a, b));
}

/// A host that speaks the protocol itself: heartbeats every second and answers probes.
struct PeerHost {
    task: tokio::task::JoinHandle<()>,
}

impl PeerHost {
    async fn start(nats: &async_nats::Client, hb: HostHeartbeat) -> Self {
        let mut probes = nats
            .subscribe(subjects::command_subject(
                &hb.id,
                weft_host_api::Command::Heartbeat,
            ))
            .await
            .expect("subscribe");
        let nats = nats.clone();
        let task = tokio::spawn(async move {
            let payload = weft_host_api::to_json(&hb).expect("encode");
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let _ = nats.publish(subjects::heartbeat_subject(&hb.id), payload.clone().into()).await;
                    }
                    Some(msg) = probes.next() => {
                        if let Some(reply) = msg.reply {
                            let _ = nats.publish(reply, payload.clone().into()).await;
                        }
                    }
                }
            }
        });
        Self { task }
    }
}

impl Drop for PeerHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn peer(id: &str, friendly: &str, hostname: &str) -> HostHeartbeat {
    let mut hb = HostHeartbeat {
        id: id.into(),
        friendly_name: friendly.into(),
        hostname: hostname.into(),
        version: "peer".into(),
        os_name: "linux".into(),
        os_arch: "x86_64".into(),
        os_kernel: "6".into(),
        system_memory_total: 1 << 30,
        system_memory_free: 1 << 29,
        http_port: 9191,
        ..Default::default()
    };
    hb.labels.insert("hostgroup".into(), "peers".into());
    hb.labels
        .insert(subjects::HEARTBEAT_INTERVAL_LABEL.into(), "1000ms".into());
    hb
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namesakes_successors_and_malformed_heartbeats() {
    let env = Env::shared().await;
    let ns = env.new_namespace("hosts-id").await.expect("namespace");
    let tenant = env.new_namespace("hosts-id-tenant").await.expect("namespace");
    let admin = env.admin_client();
    install_host_crd(&admin).await;
    install_rbac(&admin, ns.name(), &[], &[SA]).await;
    let operator = Operator::start(
        env,
        ns.name(),
        SA,
        &[],
        &[&format!("--watch-namespaces={},{}", ns.name(), tenant.name())],
    )
    .await;
    let nats = async_nats::connect(operator.nats.as_ref().unwrap().url())
        .await
        .expect("NATS");
    let hosts: Api<Host> = Api::namespaced(admin.clone(), ns.name());

    // Two live hosts at different addresses call themselves the same: both get a Host.
    let first = PeerHost::start(&nats, peer("aaaa1111-0000", "calm-otter", "10.1.0.1")).await;
    let h = eventually("calm-otter", WAIT, || async {
        hosts
            .get_opt("calm-otter")
            .await
            .ok()?
            .filter(|h| ready(h) == ConditionStatus::True)
    })
    .await;
    assert_eq!(h.spec.host_id, "aaaa1111-0000");
    let second = PeerHost::start(&nats, peer("bbbb2222-0000", "calm-otter", "10.1.0.2")).await;
    let h2 = eventually("the namesake under its fallback name", WAIT, || async {
        hosts
            .get_opt("calm-otter-bbbb2222")
            .await
            .ok()?
            .filter(|h| ready(h) == ConditionStatus::True)
    })
    .await;
    assert_eq!(h2.spec.host_id, "bbbb2222-0000");
    let first_now = hosts.get("calm-otter").await.expect("first");
    assert_eq!(first_now.spec.host_id, "aaaa1111-0000", "never overwritten");
    assert_eq!(first_now.uid(), h.uid());
    let events: Api<Event> = Api::namespaced(admin.clone(), ns.name());
    eventually("a HostNameConflict event", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("HostNameConflict"))
            .then_some(())
    })
    .await;

    // A new process at the first one's address (a restart: new ID, same address) replaces it at
    // once, and the first one's Workloads are handed back without waiting for the TTL.
    let workload = placed_workload(&admin, tenant.name(), "on-first", "aaaa1111-0000").await;
    assert!(workload.status.is_some());
    drop(first);
    let started = Instant::now();
    let successor = PeerHost::start(&nats, peer("cccc3333-0000", "new-name", "10.1.0.1")).await;
    eventually("the successor's Host", WAIT, || async {
        hosts
            .get_opt("new-name")
            .await
            .ok()?
            .filter(|h| ready(h) == ConditionStatus::True)
    })
    .await;
    eventually("the superseded Host to go", WAIT, || async {
        hosts.get_opt("calm-otter").await.ok()?.is_none().then_some(())
    })
    .await;
    let workloads: Api<Workload> = Api::namespaced(admin.clone(), tenant.name());
    eventually("the Workload to be handed back", WAIT, || async {
        workloads
            .get("on-first")
            .await
            .ok()?
            .status?
            .host_id
            .is_none()
            .then_some(())
    })
    .await;
    println!(
        "superseded host replaced and its workload handed back after {:?}",
        started.elapsed()
    );
    assert!(
        hosts.get_opt("calm-otter-bbbb2222").await.unwrap().is_some(),
        "the namesake stays"
    );

    // Malformed heartbeats are counted and dropped, also when no valid heartbeat follows them;
    // nothing else changes.
    drop((second, successor));
    let before = hosts.list(&ListParams::default()).await.unwrap().items.len();
    let base = operator
        .metrics()
        .await
        .and_then(|m| m.value("weft_host_heartbeats_malformed_total", &[]))
        .unwrap_or(0.0);
    for payload in [&b"{not json"[..], br#"{"id":"someone-else"}"#, br#"{"id": 5}"#] {
        nats.publish("runtime.operator.heartbeat.mallory", payload.to_vec().into())
            .await
            .unwrap();
    }
    nats.flush().await.unwrap();
    eventually("three malformed heartbeats counted", WAIT, || async {
        let m = operator.metrics().await?;
        (m.value("weft_host_heartbeats_malformed_total", &[])? >= base + 3.0).then_some(())
    })
    .await;
    assert_eq!(
        hosts.list(&ListParams::default()).await.unwrap().items.len(),
        before
    );
}

/// A CA and a server certificate for 127.0.0.1, written to `dir`: (ca, cert, key).
fn tls_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let paths = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_nkey_credentials_work_and_a_wrong_credential_fails_at_start() {
    let env = Env::shared().await;
    let ns = env.new_namespace("hosts-tls").await.expect("namespace");
    let admin = env.admin_client();
    install_host_crd(&admin).await;
    install_rbac(&admin, ns.name(), &[], &[SA]).await;
    let dir = TempDir::new("nats-tls").expect("dir");
    let (ca, cert, key) = tls_files(dir.path());
    let user = nkeys::KeyPair::new_user();
    let intruder = nkeys::KeyPair::new_user();
    let seed = dir.path().join("user.nk");
    std::fs::write(&seed, user.seed().unwrap()).unwrap();
    let wrong = dir.path().join("wrong.nk");
    std::fs::write(&wrong, intruder.seed().unwrap()).unwrap();
    let port = free_port();
    let config = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\nauthorization {{\n  users: [ {{ nkey: \"{}\" }} ]\n}}\n",
        cert.display(),
        key.display(),
        user.public_key()
    );
    let _nats = NatsServer::start_with_config(dir.path(), port, &config).expect("nats-server with TLS");
    let url = format!("tls://127.0.0.1:{port}");

    // A wrong credential: the operator refuses to start and says why.
    let bad = [
        format!("--nats-url={url}"),
        format!("--nats-tls-ca={}", ca.display()),
        format!("--nats-nkey={}", wrong.display()),
    ];
    let bin = env!("CARGO_BIN_EXE_weft-operator");
    let kubeconfig = env
        .service_account_kubeconfig(ns.name(), SA)
        .await
        .expect("kubeconfig");
    let log = dir.path().join("bad-operator.log");
    let mut cmd = Command::new(bin);
    cmd.env("KUBECONFIG", &kubeconfig)
        .env("OPERATOR_NAMESPACE", ns.name())
        .arg(format!("--health-probe-bind-address=127.0.0.1:{}", free_port()))
        .arg(format!("--metrics-bind-address=127.0.0.1:{}", free_port()))
        .args(&bad);
    let mut refused = Supervised::spawn("weft-operator (wrong nkey)", cmd, &log).expect("spawn");
    let status = refused.wait_exit(Duration::from_secs(30)).expect("exits");
    assert!(!status.success());
    let text = refused.log_tail(64 * 1024);
    assert!(
        text.contains("connecting to NATS") && text.contains("authorization violation"),
        "a clear error: {text}"
    );

    // The right one: the operator connects over TLS with its NKey and registers a host that does too.
    let good = [
        format!("--nats-url={url}"),
        format!("--nats-tls-ca={}", ca.display()),
        format!("--nats-nkey={}", seed.display()),
    ];
    let good: Vec<&str> = good.iter().map(String::as_str).collect();
    let _operator = Operator::start(env, ns.name(), SA, &[], &good).await;
    let bin = weft_e2e::system::workspace_binary("weft-host").unwrap_or_else(|e| panic!("{e}"));
    let host_dir = TempDir::new("weft-host").expect("dir");
    let http_port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["--scheduler-nats-url", &url])
        .arg(format!("--nats-tls-ca={}", ca.display()))
        .arg(format!("--nats-nkey={}", seed.display()))
        .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
        .args(["--admin-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--host-name", "127.0.0.1"])
        .arg("--cache-dir")
        .arg(host_dir.path().join("cache"));
    let _host = Supervised::spawn("weft-host (tls)", cmd, &host_dir.path().join("host.log")).expect("spawn");
    let hosts: Api<Host> = Api::namespaced(admin.clone(), ns.name());
    ready_host_on(&hosts, http_port).await;
}
