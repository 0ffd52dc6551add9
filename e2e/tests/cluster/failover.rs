//! What a person sees: `crds/examples/workloaddeployment-hello-world.yaml` applied on the host group of
//! `deploy/hostgroup/` (host pods run by the process-kubelet), curled through `weft-gateway` under its
//! shipped RBAC, and a host pod deleted while a request loop runs: not one request fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use weft_crds::{Workload, WorkloadDeployment};
use weft_e2e::Env;
use weft_e2e::system::{
    self, GatewayProcess, HostGroup, OPERATOR_SERVICE_ACCOUNT, OperatorOptions, OperatorProcess,
};
use weft_e2e::testing::http_get_host;

use crate::support::{SOON, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_world_through_the_gateway_survives_a_host_pod_deletion_without_a_failed_request() {
    let env = Env::shared().await;
    let ns = env.new_namespace("failover").await.expect("namespace");
    let admin = env.admin_client();
    system::install_crds(&admin, SOON).await.expect("CRDs");
    system::install_operator_rbac(&admin, &ns, &[], &[OPERATOR_SERVICE_ACCOUNT])
        .await
        .expect("the shipped operator RBAC");
    system::install_gateway_rbac(&admin, &ns)
        .await
        .expect("the shipped gateway RBAC");
    let logs = env.run_dir().join("logs");
    let mut options = OperatorOptions::new(
        system::workspace_binary("weft-operator").unwrap_or_else(|e| panic!("{e}")),
        &ns,
        logs.join(format!("weft-operator-{}.log", ns.name())),
    );
    options.args.push(format!("--watch-namespaces={}", ns.name()));
    let _operator = OperatorProcess::start(env, &options, SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let host_bin = system::workspace_binary("weft-host").unwrap_or_else(|e| panic!("{e}"));
    env.kubelet()
        .register_image(&system::host_image(&host_bin))
        .expect("map the host image");
    let group = HostGroup {
        namespace: ns.to_string(),
        group: "default".into(),
        replicas: 2,
        nats_url: env.nats_url().into(),
    };
    group.apply(&admin).await.expect("apply the host group");
    group
        .wait_ready(&admin, SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let gateway = GatewayProcess::start(
        env,
        system::workspace_binary("weft-gateway").unwrap_or_else(|e| panic!("{e}")),
        &ns,
        None,
        &[format!("--watch-namespaces={}", ns.name())],
        &logs.join(format!("weft-gateway-{}.log", ns.name())),
        SOON,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // The example as shipped, with the hello component built here as its image.
    let mut hello: WorkloadDeployment = serde_yaml::from_str(
        &std::fs::read_to_string(system::manifests::source_file(
            "crds/examples/workloaddeployment-hello-world.yaml",
        ))
        .expect("the example"),
    )
    .expect("the example parses");
    hello.spec.template.spec.components.as_mut().unwrap()[0].image =
        format!("file://{}", weft_test_components::HELLO);

    let deployments: Api<WorkloadDeployment> = Api::namespaced(admin.clone(), &ns);
    deployments
        .create(&PostParams::default(), &hello)
        .await
        .expect("create the deployment");
    let workloads: Api<Workload> = Api::namespaced(admin.clone(), &ns);
    let placed = eventually("two Ready replicas on two hosts", SOON, || async {
        let ws = workloads.list(&Default::default()).await.ok()?.items;
        let hosts: std::collections::BTreeSet<String> = ws
            .iter()
            .filter_map(|w| w.status.as_ref()?.host_id.clone())
            .collect();
        (ws.len() == 2 && ws.iter().all(Workload::is_ready) && hosts.len() == 2).then_some(ws)
    })
    .await;
    eventually("hello through the gateway", SOON, || async {
        let r = http_get_host(gateway.proxy, "hello.example.com").await.ok()?;
        (r.status == 200 && r.body == "hello\n").then_some(())
    })
    .await;

    // A request loop through the gateway; one of the two host pods is deleted under it.
    let stop = Arc::new(AtomicBool::new(false));
    let proxy = gateway.proxy;
    let looper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120) {
                match http_get_host(proxy, "hello.example.com").await {
                    Ok(r) if r.status == 200 && r.body == "hello\n" => ok += 1,
                    Ok(r) => failed.push(format!("HTTP {}: {}", r.status, r.body.trim())),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let hosts: Api<weft_crds::Host> = Api::namespaced(admin.clone(), &ns);
    let victim_host = placed[0].status.as_ref().unwrap().host_id.clone().unwrap();
    let victim_ip = hosts
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|h| h.spec.host_id == victim_host)
        .and_then(|h| h.spec.hostname)
        .expect("the victim's Host");
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let victim = pods
        .list(&kube::api::ListParams::default().labels(&group.pod_selector()))
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|p| p.status.as_ref().and_then(|s| s.pod_ip.as_deref()) == Some(victim_ip.as_str()))
        .expect("the victim pod");
    let deleted_at = Instant::now();
    pods.delete(&victim.name_any(), &DeleteParams::default())
        .await
        .expect("delete the host pod");
    let recovered = eventually(
        "two Ready replicas again, none on the deleted pod",
        SOON,
        || async {
            let ws = workloads.list(&Default::default()).await.ok()?.items;
            (ws.len() == 2
                && ws.iter().all(|w| {
                    w.is_ready()
                        && w.status.as_ref().and_then(|s| s.host_id.as_deref()) != Some(victim_host.as_str())
                }))
            .then(|| deleted_at.elapsed())
        },
    )
    .await;
    // And the pod is gone (its host drained and exited) while the loop still runs.
    eventually("the deleted pod to go", SOON, || async {
        pods.get_opt(&victim.name_any())
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = looper.await.unwrap();
    println!(
        "host pod deleted under traffic: {ok} requests answered, {} failed; both replicas Ready again after {recovered:?}",
        failed.len()
    );
    assert!(ok > 100, "the loop ran: {ok}");
    assert!(failed.is_empty(), "not one request fails: {failed:?}");
}
