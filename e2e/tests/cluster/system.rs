//! The assembled system, from the shipped manifests: `weft-operator` under its ServiceAccount with only
//! the RBAC in `deploy/operator/`, and the host group of `deploy/hostgroup/` whose pods run the real
//! `weft-host`. Host pods become Ready through their admin readiness probe, get the pod finalizer, and
//! announce themselves on NATS with their pod IP as hostname, their group and their namespace; deleting
//! a host pod deletes its Host at once, and the pod goes away once its host has drained and exited.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use weft_crds::Host;
use weft_crds::names::finalizers::POD_HOST;
use weft_crds::names::labels::{HOST_GROUP, HOST_POD_GROUP, HOST_POD_NAME, HOST_POD_NAME_VALUE};
use weft_e2e::Env;
use weft_e2e::system::{self, HostGroup, OPERATOR_SERVICE_ACCOUNT, OperatorOptions, OperatorProcess};
use weft_host_api::{HostClient, HostHeartbeat};

use crate::support::{SOON, container_pid, eventually};
use weft_e2e::testing::{HttpResponse, http_get};

/// Prints the end of a log file if the test fails.
struct LogOnFailure(PathBuf);

impl Drop for LogOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- {} (last 16 KiB) ----\n{}",
                self.0.display(),
                weft_testkit::read_tail(&self.0, 16 * 1024)
            );
        }
    }
}

/// The host ID a `weft-host` logged at start (`host starting host_id=<uuid> …`).
fn logged_host_id(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let rest = text
        .lines()
        .find(|l| l.contains("host starting"))?
        .split("host_id=")
        .nth(1)?;
    Some(rest.split_whitespace().next()?.trim_matches('"').to_string())
}

/// `weft_informer_objects{kind="<kind>"}` from the operator's metrics.
async fn cached_objects(operator: &OperatorProcess, kind: &str) -> Option<f64> {
    let metrics = http_get(operator.addr, "/metrics", None)
        .await
        .expect("GET /metrics")
        .body;
    let series = format!("weft_informer_objects{{kind=\"{kind}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
}

/// The operator's `/metrics` text.
async fn operator_metrics(operator: &OperatorProcess) -> String {
    http_get(operator.addr, "/metrics", None)
        .await
        .expect("GET /metrics")
        .body
}

/// The value of the series `series` (name and labels exactly as exposed) in a scrape.
fn metric(scrape: &str, series: &str) -> Option<f64> {
    let prefix = format!("{series} ");
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
}

/// `GET /` on `ip:9191` with `Host: host`: the status and the body.
async fn http_get_host(ip: &str, host: &str) -> (u16, String) {
    let r = weft_e2e::testing::http_get_host((ip, 9191), host)
        .await
        .expect("GET");
    (r.status, r.body)
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

fn pod_ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("a running pod has an IP")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_and_host_group_from_the_shipped_manifests() {
    let env = Env::shared().await;
    let host_bin = system::workspace_binary("weft-host").unwrap_or_else(|e| panic!("{e}"));
    let operator_bin = system::workspace_binary("weft-operator").unwrap_or_else(|e| panic!("{e}"));
    let ns = env.new_namespace("system").await.expect("namespace");
    let admin = env.admin_client();
    system::install_crds(&admin, SOON).await.expect("CRDs");
    system::install_operator_rbac(&admin, &ns, &[], &[OPERATOR_SERVICE_ACCOUNT])
        .await
        .expect("the shipped operator RBAC");
    let audit = env.audit_log();
    let mark = audit.mark();
    let operator_log = env
        .run_dir()
        .join("logs")
        .join(format!("weft-operator-{}.log", ns.name()));
    let _operator_log = LogOnFailure(operator_log.clone());
    let mut options = OperatorOptions::new(operator_bin, &ns, &operator_log);
    // The cluster is shared with other tests: manage this namespace's Workloads only.
    options.args.push(format!("--watch-namespaces={}", ns.name()));
    let operator = OperatorProcess::start(env, &options, SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Hosts announce themselves as they start: listen first.
    env.kubelet()
        .register_image(&system::host_image(&host_bin))
        .expect("map the host image");
    let nats = async_nats::connect(env.nats_url()).await.expect("NATS");
    let mut heartbeats = HostClient::new(nats)
        .subscribe_heartbeats()
        .await
        .expect("subscribe");

    let group = HostGroup {
        namespace: ns.to_string(),
        group: "default".into(),
        replicas: 2,
        nats_url: env.nats_url().into(),
    };
    let deployment = group.apply(&admin).await.expect("apply the host group");
    let container = deployment.spec.template.spec.as_ref().unwrap().containers[0].clone();
    let readiness = container
        .readiness_probe
        .and_then(|p| p.http_get)
        .expect("a readiness probe");
    assert_eq!(
        readiness.path.as_deref(),
        Some("/readyz"),
        "the admin readiness endpoint"
    );
    let admin_port = system::flag_value(container.args.as_deref().unwrap_or_default(), "--admin-addr")
        .and_then(|addr| addr.rsplit_once(':'))
        .map(|(_, port)| port.to_string())
        .expect("--admin-addr");

    let pods = group
        .wait_ready(&admin, SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pods.len(), 2);
    let api: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let mut host_ids = BTreeMap::new();
    for pod in &pods {
        let (name, ip) = (pod.name_any(), pod_ip(pod));
        let labels = pod.labels();
        assert_eq!(labels.get(HOST_POD_GROUP).map(String::as_str), Some("default"));
        assert_eq!(
            labels.get(HOST_POD_NAME).map(String::as_str),
            Some(HOST_POD_NAME_VALUE)
        );
        // Ready through the probe: the host's own admin server says so, on the pod IP.
        let HttpResponse { status, body, .. } = http_get(format!("{ip}:{admin_port}"), "/readyz", None)
            .await
            .expect("GET /readyz");
        assert_eq!(status, 200, "{name} /readyz: {body}");
        eventually(&format!("the pod finalizer on {name}"), SOON, || async {
            let p = api.get(&name).await.ok()?;
            p.finalizers().iter().any(|f| f == POD_HOST).then_some(())
        })
        .await;
        let log = env.kubelet().container_log(pod, system::HOST_CONTAINER);
        let id = eventually(&format!("{name}'s host ID in its log"), SOON, || async {
            logged_host_id(&log)
        })
        .await;
        host_ids.insert(id, (pod.clone(), ip));
    }

    // Each host's heartbeat (matched by the ID it logged) names its pod IP, group and namespace.
    let mut seen: BTreeMap<String, HostHeartbeat> = BTreeMap::new();
    tokio::time::timeout(SOON, async {
        while seen.len() < host_ids.len() {
            let hb = heartbeats
                .next()
                .await
                .expect("the heartbeat stream ends only with NATS");
            if host_ids.contains_key(&hb.id) {
                seen.insert(hb.id.clone(), hb);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("heartbeats of {:?}; got {:?}", host_ids.keys(), seen.keys()));
    for (id, (pod, ip)) in &host_ids {
        let hb = &seen[id];
        assert_eq!(&hb.hostname, ip, "{}: hostname is the pod IP", pod.name_any());
        assert_eq!(hb.labels.get(HOST_GROUP).map(String::as_str), Some("default"));
        assert_eq!(hb.environment, ns.name(), "environment is the pod's namespace");
        assert_eq!(hb.http_port, 9191);
    }
    assert_eq!(heartbeats.malformed_count(), 0);

    // The Host controller turns each heartbeat into a Ready Host with the host's real facts.
    let hosts: Api<Host> = Api::namespaced(admin.clone(), &ns);
    let mut host_of_pod = BTreeMap::new();
    for hb in seen.values() {
        let host = eventually(
            &format!("Host {} to be Ready", hb.friendly_name),
            SOON,
            || async {
                let h = hosts.get_opt(&hb.friendly_name).await.ok()??;
                let ready = h
                    .status
                    .as_ref()
                    .is_some_and(|s| weft_crds::condition::is_true(&s.conditions, "Ready"));
                // The finalizer is added right after the Host is created.
                let finalized = h
                    .finalizers()
                    .iter()
                    .any(|f| f == weft_crds::names::finalizers::HOST);
                (ready && finalized).then_some(h)
            },
        )
        .await;
        assert_eq!(host.spec.host_id, hb.id);
        assert_eq!(host.spec.hostname.as_deref(), Some(hb.hostname.as_str()));
        assert_eq!(host.spec.http_port, Some(9191));
        assert_eq!(host.spec.environment.as_deref(), Some(ns.name()));
        assert_eq!(host.labels().get(HOST_GROUP).map(String::as_str), Some("default"));
        assert!(
            host.finalizers()
                .iter()
                .any(|f| f == weft_crds::names::finalizers::HOST),
            "the Host finalizer"
        );
        let status = host.status.clone().expect("status");
        assert_eq!(
            status.version.as_deref(),
            Some(hb.version.as_str()),
            "real facts, never placeholders"
        );
        assert_eq!(status.os_name.as_deref(), Some(std::env::consts::OS));
        assert!(status.system_memory_total.unwrap_or(0) > 0, "{status:?}");
        assert!(status.last_seen.is_some());
        assert!(weft_crds::condition::is_true(&status.conditions, "Reporting"));
        let (pod, _) = &host_ids[&hb.id];
        host_of_pod.insert(pod.name_any(), hb.friendly_name.clone());
    }
    eventually("the operator to cache both Hosts", SOON, || async {
        (cached_objects(&operator, "hosts").await == Some(2.0)).then_some(())
    })
    .await;
    // The heartbeats were counted and none was malformed.
    let scrape = operator_metrics(&operator).await;
    assert!(
        metric(&scrape, "weft_host_heartbeats_total").unwrap_or(0.0) >= 2.0,
        "{scrape}"
    );
    assert_eq!(metric(&scrape, "weft_host_heartbeats_malformed_total"), Some(0.0));
    assert_eq!(
        metric(&scrape, "weft_hosts{state=\"ready\"}"),
        Some(2.0),
        "{scrape}"
    );

    // A Workload (the hello component), placed by the operator on one of the host pods and served there.
    let workloads: Api<weft_crds::Workload> = Api::namespaced(admin.clone(), &ns);
    let hello: weft_crds::Workload = serde_yaml::from_str(&format!(
        "apiVersion: runtime.wasmcloud.dev/v1alpha1\nkind: Workload\nmetadata: {{name: hello}}\nspec:\n  components: [{{name: http, image: 'file://{}'}}]\n  hostInterfaces: [{{namespace: wasi, package: http, interfaces: [incoming-handler], config: {{host: hello.example.com}}}}]\n",
        weft_test_components::HELLO
    ))
    .expect("a Workload");
    workloads
        .create(&kube::api::PostParams::default(), &hello)
        .await
        .expect("create the Workload");
    let ready_on = |exclude: Option<String>| {
        let workloads = workloads.clone();
        async move {
            eventually("the Workload to be Ready", SOON, || async {
                let s = workloads.get("hello").await.ok()?.status?;
                let host = s.host_id.clone()?;
                (weft_crds::condition::is_true(&s.conditions, "Ready") && Some(&host) != exclude.as_ref())
                    .then_some(host)
            })
            .await
        }
    };
    let first_host = ready_on(None).await;
    let (victim_pod, victim_ip) = host_ids[&first_host].clone();
    let (status, body) = http_get_host(&victim_ip, "hello.example.com").await;
    assert!(status == 200 && body.contains("hello\n"), "{status} {body:?}");

    // Deleting the host pod it runs on: its Host goes at once, the Workload is placed on another host
    // (the other pod's, or the replacement pod's); the pod goes once the host drained and exited.
    let victim = victim_pod.name_any();
    let survivor = pods
        .iter()
        .map(|p| p.name_any())
        .find(|n| n != &victim)
        .expect("another pod");
    let pid = container_pid(&api.get(&victim).await.unwrap()).expect("the host process");
    let final_state = tokio::spawn({
        let api = api.clone();
        let config = watcher::Config::default().fields(&format!("metadata.name={victim}"));
        async move {
            let mut events = watcher(api, config).boxed();
            while let Some(event) = events.try_next().await.expect("watch the pod") {
                if let watcher::Event::Delete(pod) = event {
                    return pod;
                }
            }
            panic!("the watch ended")
        }
    });
    let deleted_at = std::time::Instant::now();
    api.delete(&victim, &DeleteParams::default())
        .await
        .expect("delete the pod");
    eventually("the deleted pod's Host to be deleted", SOON, || async {
        hosts
            .get_opt(&host_of_pod[&victim])
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let moved_to = ready_on(Some(first_host.clone())).await;
    println!(
        "host pod deleted → its Workload Ready on the other host after {:?}",
        deleted_at.elapsed()
    );
    // The other host pod, or the replacement pod's new host: whichever the scheduler chose.
    let new_host_ip = hosts
        .list(&Default::default())
        .await
        .expect("list Hosts")
        .items
        .into_iter()
        .find(|h| h.spec.host_id == moved_to)
        .and_then(|h| h.spec.hostname)
        .expect("the new host's Host");
    let (status, body) = http_get_host(&new_host_ip, "hello.example.com").await;
    assert!(
        status == 200 && body.contains("hello\n"),
        "served by the other host: {status} {body:?}"
    );
    let last = tokio::time::timeout(SOON, final_state)
        .await
        .expect("the pod to disappear")
        .expect("watch task");
    let terminated = last
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.state?.terminated)
        .expect("the pod's last state shows its container terminated");
    assert_eq!(
        terminated.exit_code, 0,
        "the host drained and exited cleanly after SIGTERM"
    );
    assert!(!alive(pid), "the host process is gone");
    assert!(
        hosts.get_opt(&host_of_pod[&survivor]).await.unwrap().is_some(),
        "the other pod's Host stays"
    );

    // The Deployment replaces the pod; the new host pod is a host pod too.
    let now = group
        .wait_ready(&admin, SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let replacement = now
        .iter()
        .map(|p| p.name_any())
        .find(|n| n != &survivor)
        .expect("a replacement pod");
    assert_ne!(replacement, victim);
    eventually("the pod finalizer on the replacement", SOON, || async {
        let p = api.get(&replacement).await.ok()?;
        p.finalizers().iter().any(|f| f == POD_HOST).then_some(())
    })
    .await;

    // Removing the group (as scaling it to zero would): every pod goes, and with it the other Host.
    Api::<Deployment>::namespaced(admin.clone(), &ns)
        .delete(&group.deployment_name(), &DeleteParams::background())
        .await
        .expect("delete the host group");
    let selector = ListParams::default().labels(&group.pod_selector());
    eventually("every host pod to disappear", SOON, || async {
        api.list(&selector).await.ok()?.items.is_empty().then_some(())
    })
    .await;
    assert!(
        hosts.get_opt(&host_of_pod[&survivor]).await.unwrap().is_none(),
        "the Host of a pod deleted with its group is deleted"
    );

    let user = operator.user.clone();
    let denied: Vec<String> = audit
        .events_since(mark)
        .into_iter()
        .filter(|e| e.user.username == user && e.code() == Some(403))
        .map(|e| format!("{} {}", e.verb, e.request_uri))
        .collect();
    assert!(
        denied.is_empty(),
        "the shipped RBAC is enough; denied: {denied:?}"
    );
}
