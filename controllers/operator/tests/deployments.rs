//! WorkloadDeployments, WorkloadReplicaSets and Artifacts end to end: the real operator under its
//! ServiceAccount with the shipped RBAC, a real kube-apiserver with kube-controller-manager's garbage
//! collector, a real nats-server and real `weft-host` processes serving the test components over HTTP.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use support::rollout::{
    Loop, cond_of, deployment, deployment_cond, patch_spec, rolled_out, template_patch, workloads_of,
};
use support::{
    Operator, System, WAIT, eventually, install_host_crd, install_rbac, ready_host_on, spawn_host,
};
use weft_crds::condition::{self, ConditionStatus};
use weft_crds::names::{condition_types as ct, finalizers, labels};
use weft_crds::{Artifact, Host, Workload, WorkloadDeployment, WorkloadReplicaSet};
use weft_e2e::Env;
use weft_testkit::free_port;

const SA: &str = "weft-operator";
const HTTP_HOST: &str = "hello.deploy.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_scale_roll_out_without_a_failed_request_recreate_recover_and_clean_up() {
    let sys = System::start("wd", &["127.0.0.1"; 3]).await;
    let (env, ns, admin, hosts_api, hosts) =
        (sys.env, &sys.ns, sys.admin.clone(), &sys.hosts_api, &sys.hosts);
    let api: Api<WorkloadDeployment> = Api::namespaced(admin.clone(), ns.name());
    let workloads: Api<Workload> = Api::namespaced(admin.clone(), ns.name());
    let sets: Api<WorkloadReplicaSet> = Api::namespaced(admin.clone(), ns.name());

    // Applied: two Ready replicas on two hosts, each serving.
    let d = deployment(
        "hello",
        2,
        weft_test_components::HELLO,
        HTTP_HOST,
        serde_json::json!({"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}),
    );
    api.create(&PostParams::default(), &d)
        .await
        .expect("create the deployment");
    let d = rolled_out(&api, "hello").await;
    let status = d.status.clone().unwrap();
    assert_eq!(status.current_replicas, Some(2));
    assert_eq!(status.updated_replicas, Some(2));
    assert_eq!(
        status.selector.as_deref(),
        Some("runtime.wasmcloud.dev/workload-deployment=hello")
    );
    let first_set = status
        .current_replica_set
        .clone()
        .expect("currentReplicaSet")
        .name;
    let ws = workloads_of(&workloads, "hello").await;
    assert_eq!(ws.len(), 2);
    let placed: BTreeSet<String> = ws
        .iter()
        .map(|w| w.status.clone().unwrap().host_id.unwrap())
        .collect();
    assert_eq!(placed.len(), 2, "spread over two hosts");
    for w in &ws {
        assert!(
            w.name_any().starts_with(&format!("{first_set}-")),
            "{}",
            w.name_any()
        );
        let owner = w.owner_references().first().cloned().expect("an owner");
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("WorkloadReplicaSet", first_set.as_str(), Some(true))
        );
        assert_eq!(
            w.annotations()
                .get(weft_crds::names::annotations::WORKLOAD_REPLICA_SET_GENERATION),
            w.labels().get(labels::TEMPLATE_HASH)
        );
    }

    // `kubectl scale` up through the /scale subresource, then down through the API.
    let out = env
        .kubectl()
        .args([
            "-n",
            ns.name(),
            "scale",
            "workloaddeployment/hello",
            "--replicas=3",
        ])
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl scale: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("three Ready replicas", WAIT, || async {
        let ws = workloads_of(&workloads, "hello").await;
        (ws.len() == 3 && ws.iter().all(Workload::is_ready)).then_some(())
    })
    .await;
    let scale = eventually("the scale status to say 3", WAIT, || async {
        api.get_scale("hello")
            .await
            .ok()
            .filter(|s| s.status.as_ref().is_some_and(|st| st.replicas == 3))
    })
    .await;
    assert_eq!(
        scale.status.unwrap().selector.as_deref(),
        Some("runtime.wasmcloud.dev/workload-deployment=hello")
    );
    api.patch_scale(
        "hello",
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({"spec": {"replicas": 2}})),
    )
    .await
    .expect("patch /scale");
    eventually("back to two replicas", WAIT, || async {
        let ws = workloads_of(&workloads, "hello").await;
        let live = ws
            .iter()
            .filter(|w| w.metadata.deletion_timestamp.is_none())
            .count();
        (live == 2 && ws.len() == 2).then_some(())
    })
    .await;
    rolled_out(&api, "hello").await;
    let out = env
        .kubectl()
        .args([
            "-n",
            ns.name(),
            "get",
            "workloaddeployment",
            "hello",
            "-o",
            "wide",
        ])
        .output()
        .expect("kubectl");
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    for column in ["REPLICAS", "READY", "CURRENT", "UP-TO-DATE", "AVAILABLE", "AGE"] {
        assert!(table.contains(column), "{table}");
    }

    // A new image rolls out with maxSurge 1 / maxUnavailable 0 while requests flow: none fails.
    let traffic = Loop::start(
        admin.clone(),
        ns.name(),
        "hello",
        HTTP_HOST,
        Duration::from_secs(120),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    patch_spec(
        &api,
        "hello",
        template_patch(weft_test_components::ECHO, HTTP_HOST),
    )
    .await;
    let d = rolled_out(&api, "hello").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = traffic.finish().await;
    assert!(
        t.failures.is_empty(),
        "{} failed of {}: {:?}",
        t.failures.len(),
        t.ok + t.failures.len() as u64,
        &t.failures[..t.failures.len().min(10)]
    );
    assert!(t.ok > 50, "the loop ran ({} requests)", t.ok);
    assert!(
        t.bodies.contains("hello\n") && t.bodies.len() == 2,
        "old and new replicas served: {:?}",
        t.bodies
    );
    assert!(
        t.max_live <= 3,
        "never more than replicas + maxSurge live: {}",
        t.max_live
    );
    assert!(
        t.min_ready >= 2,
        "never fewer than replicas - maxUnavailable ready: {}",
        t.min_ready
    );
    let second_set = d.status.clone().unwrap().current_replica_set.unwrap().name;
    assert_ne!(second_set, first_set);
    eventually("the old replica set to be deleted", WAIT, || async {
        sets.get_opt(&first_set).await.ok()?.is_none().then_some(())
    })
    .await;

    // Recreate: the old replicas are all gone before a new one exists.
    let traffic = Loop::start(
        admin.clone(),
        ns.name(),
        "hello",
        HTTP_HOST,
        Duration::from_secs(120),
    );
    let mut spec = template_patch(weft_test_components::HELLO, HTTP_HOST);
    spec["deployPolicy"] = "Recreate".into();
    spec["rollingUpdate"] = serde_json::Value::Null;
    patch_spec(&api, "hello", spec).await;
    rolled_out(&api, "hello").await;
    let t = traffic.finish().await;
    assert!(!t.mixed, "Recreate never runs two templates at once");
    assert!(
        !t.failures.is_empty(),
        "Recreate has a window without replicas (that is what it means)"
    );

    // A rollout to a component that cannot start stalls with the old replicas serving and says why.
    let mut spec = template_patch("/nonexistent/broken.wasm", HTTP_HOST);
    spec["deployPolicy"] = "RollingUpdate".into();
    spec["rollingUpdate"] = serde_json::json!({"maxSurge": 1, "maxUnavailable": 0});
    patch_spec(&api, "hello", spec).await;
    let stalled = eventually("the rollout to stall with a reason", WAIT, || async {
        api.get("hello")
            .await
            .ok()
            .filter(|d| deployment_cond(d, ct::DEPLOY).0 == ConditionStatus::False)
    })
    .await;
    let (_, reason, message) = deployment_cond(&stalled, ct::DEPLOY);
    assert_eq!(reason, "ReplicaFailure");
    assert!(
        message.contains("broken.wasm") && message.contains("old replicas keep serving"),
        "{message}"
    );
    let serving: Vec<Workload> = workloads_of(&workloads, "hello")
        .await
        .into_iter()
        .filter(|w| w.is_ready())
        .collect();
    assert_eq!(serving.len(), 2, "both old replicas still Ready");
    for w in &serving {
        let host = hosts_api
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|h| Some(&h.spec.host_id) == w.status.as_ref().unwrap().host_id.as_ref())
            .expect("its host");
        let r =
            weft_e2e::testing::http_get_host(("127.0.0.1", host.spec.http_port.unwrap() as u16), HTTP_HOST)
                .await
                .expect("GET");
        assert_eq!((r.status, r.body.as_str()), (200, "hello\n"));
    }
    // Fixed by going back: the old replica set is current again and the broken one goes.
    patch_spec(
        &api,
        "hello",
        template_patch(weft_test_components::HELLO, HTTP_HOST),
    )
    .await;
    rolled_out(&api, "hello").await;

    // A replica's host dies: the replica is placed again and the deployment is whole again.
    let ws = workloads_of(&workloads, "hello").await;
    let victim_id = ws[0].status.clone().unwrap().host_id.unwrap();
    let victim_port = hosts_api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|h| h.spec.host_id == victim_id)
        .and_then(|h| h.spec.http_port)
        .unwrap() as u16;
    let victim = hosts.iter().position(|h| h.http_port == victim_port).unwrap();
    hosts[victim].process.signal(9);
    eventually(
        "two Ready replicas off the dead host",
        Duration::from_secs(90),
        || async {
            let ws = workloads_of(&workloads, "hello").await;
            let ok = ws.len() == 2
                && ws.iter().all(|w| {
                    w.is_ready()
                        && w.status.as_ref().and_then(|s| s.host_id.as_deref()) != Some(victim_id.as_str())
                });
            ok.then_some(())
        },
    )
    .await;
    rolled_out(&api, "hello").await;

    // Deleted: garbage collection removes the replica sets and Workloads, and the hosts stop serving.
    api.delete("hello", &DeleteParams::background())
        .await
        .expect("delete");
    eventually("no replica sets or Workloads left", WAIT, || async {
        let rs = sets.list(&Default::default()).await.ok()?.items;
        let ws = workloads.list(&Default::default()).await.ok()?.items;
        (rs.is_empty() && ws.is_empty()).then_some(())
    })
    .await;
    for (i, h) in hosts.iter().enumerate() {
        if i == victim {
            continue;
        }
        // A stop is answered before the host has unbound the route: allow it a moment.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let r = weft_e2e::testing::http_get_host(("127.0.0.1", h.http_port), HTTP_HOST)
                .await
                .expect("GET");
            if r.status == 404 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "hello still served on the host on port {} ({} {:?}); its log:\n{}",
                h.http_port,
                r.status,
                r.body,
                hosts
                    .iter()
                    .map(|h| h.process.log_tail(24 * 1024))
                    .collect::<Vec<_>>()
                    .join("\n----\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let scrape = sys.operator.metrics().await.expect("metrics");
    let rollouts = |result: &str| {
        scrape
            .value("weft_deployment_rollouts_total", &[("result", result)])
            .unwrap_or(0.0)
    };
    let (started, completed, failed) = (rollouts("started"), rollouts("completed"), rollouts("failed"));
    assert!(
        started >= 5.0 && completed >= 4.0 && failed >= 1.0,
        "rollouts started {started}, completed {completed}, failed {failed}"
    );
    assert!(
        scrape
            .value(
                "weft_replicaset_workload_changes_total",
                &[("action", "create"), ("reason", "scale-up")]
            )
            .unwrap_or(0.0)
            >= 6.0
    );
    let denied = sys.denied(&sys.operator.user);
    assert!(
        denied.is_empty(),
        "the shipped RBAC is enough; denied: {denied:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_publish_and_a_changed_artifact_rolls_out_at_once() {
    let env = Env::shared().await;
    let ns = env.new_namespace("art").await.expect("namespace");
    let admin: Client = env.admin_client();
    install_host_crd(&admin).await;
    install_rbac(&admin, ns.name(), &[], &[SA]).await;
    let operator = Operator::start(env, ns.name(), SA, &[], &[]).await;
    let url = operator.nats.as_ref().expect("own NATS").url();
    let hosts_api: Api<Host> = Api::namespaced(admin.clone(), ns.name());
    let host = spawn_host(&url, free_port(), &[]);
    ready_host_on(&hosts_api, host.http_port).await;
    let artifacts: Api<Artifact> = Api::namespaced(admin.clone(), ns.name());
    let api: Api<WorkloadDeployment> = Api::namespaced(admin.clone(), ns.name());
    let workloads: Api<Workload> = Api::namespaced(admin.clone(), ns.name());

    // The deployment waits for its Artifact, which is then published.
    let mut d = deployment(
        "app",
        1,
        "unused",
        HTTP_HOST,
        serde_json::json!({"artifacts": [{"name": "component", "artifactFrom": {"name": "app-artifact"}}]}),
    );
    d.spec.template.spec.components.as_mut().unwrap()[0].image = "artifact://component".into();
    api.create(&PostParams::default(), &d)
        .await
        .expect("create the deployment");
    let waiting = eventually("Artifact Unknown", WAIT, || async {
        api.get("app").await.ok().filter(|d| {
            let (status, _, message) = deployment_cond(d, ct::ARTIFACT);
            status == ConditionStatus::Unknown && !message.is_empty()
        })
    })
    .await;
    assert!(
        deployment_cond(&waiting, ct::ARTIFACT)
            .2
            .contains("app-artifact not found")
    );
    let artifact: Artifact = serde_json::from_value(serde_json::json!({
        "apiVersion": "runtime.wasmcloud.dev/v1alpha1",
        "kind": "Artifact",
        "metadata": {"name": "app-artifact"},
        "spec": {"image": format!("file://{}", weft_test_components::HELLO)},
    }))
    .unwrap();
    artifacts
        .create(&PostParams::default(), &artifact)
        .await
        .expect("create the Artifact");
    let published = eventually("the Artifact to be published", WAIT, || async {
        artifacts.get("app-artifact").await.ok().filter(|a| {
            a.status
                .as_ref()
                .is_some_and(|s| condition::is_true(&s.conditions, ct::PUBLISHED))
        })
    })
    .await;
    assert_eq!(
        published.status.as_ref().unwrap().artifact_url.as_deref(),
        Some(format!("file://{}", weft_test_components::HELLO).as_str())
    );
    assert!(published.finalizers().iter().any(|f| f == finalizers::ARTIFACT));
    rolled_out(&api, "app").await;
    let ws = workloads_of(&workloads, "app").await;
    assert_eq!(
        ws[0].spec.components.as_ref().unwrap()[0].image,
        format!("file://{}", weft_test_components::HELLO)
    );

    // A new image in the Artifact rolls the deployment out (watched, not polled).
    let before = tokio::time::Instant::now();
    artifacts
        .patch(
            "app-artifact",
            &PatchParams::default(),
            &Patch::Merge(
                &serde_json::json!({"spec": {"image": format!("file://{}", weft_test_components::ECHO)}}),
            ),
        )
        .await
        .expect("patch the Artifact");
    eventually("the deployment to run the new image", WAIT, || async {
        let ws = workloads_of(&workloads, "app").await;
        (ws.len() == 1
            && ws[0].is_ready()
            && ws[0].spec.components.as_ref()?[0].image == format!("file://{}", weft_test_components::ECHO))
        .then_some(())
    })
    .await;
    let took = before.elapsed();
    rolled_out(&api, "app").await;
    eprintln!("artifact change rolled out in {took:?}");

    // The Artifact cannot go while the deployment lists it; it goes once the deployment has.
    artifacts
        .delete("app-artifact", &DeleteParams::default())
        .await
        .expect("delete");
    let blocked = eventually("the deletion to wait with a reason", WAIT, || async {
        artifacts.get("app-artifact").await.ok().filter(|a| {
            a.status
                .as_ref()
                .is_some_and(|s| cond_of(&s.conditions, ct::READY).1 == "InUse")
        })
    })
    .await;
    assert!(
        cond_of(&blocked.status.unwrap().conditions, ct::READY)
            .2
            .contains("listed by app")
    );
    api.delete("app", &DeleteParams::background())
        .await
        .expect("delete the deployment");
    eventually("the Artifact to go", WAIT, || async {
        artifacts
            .get_opt("app-artifact")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    drop(host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_named_by_workloads_gets_an_endpoint_slice_of_their_hosts() {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    // Hosts advertising documentation addresses (the apiserver refuses loopback endpoints).
    let sys = System::start("route", &["192.0.2.10", "192.0.2.11"]).await;
    let (ns, admin) = (&sys.ns, sys.admin.clone());
    let services: Api<Service> = Api::namespaced(admin.clone(), ns.name());
    let service: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }))
    .unwrap();
    let service = services
        .create(&PostParams::default(), &service)
        .await
        .expect("create the Service");
    let api: Api<WorkloadDeployment> = Api::namespaced(admin.clone(), ns.name());
    let d = deployment(
        "web",
        2,
        weft_test_components::HELLO,
        "web.test",
        serde_json::json!({"kubernetes": {"service": {"name": "web"}}}),
    );
    api.create(&PostParams::default(), &d).await.expect("create");
    rolled_out(&api, "web").await;
    let slices: Api<EndpointSlice> = Api::namespaced(admin.clone(), ns.name());
    let ips_of = |s: &EndpointSlice| -> BTreeSet<String> {
        s.endpoints
            .iter()
            .flatten()
            .flat_map(|e| e.addresses.clone())
            .collect()
    };
    let slice = eventually("an EndpointSlice of both hosts", WAIT, || async {
        let list = slices
            .list(&kube::api::ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .ok()?;
        list.items.into_iter().find(|s| ips_of(s).len() == 2)
    })
    .await;
    let name = slice.metadata.name.clone().unwrap();
    assert!(
        name.starts_with("web-") && name.len() == "web-".len() + 8,
        "{name}"
    );
    assert_eq!(
        ips_of(&slice),
        BTreeSet::from(["192.0.2.10".to_string(), "192.0.2.11".to_string()])
    );
    let port = &slice.ports.as_ref().unwrap()[0];
    assert_eq!(port.name.as_deref(), Some("http"));
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), Some(owner.uid.clone())),
        ("Service", service.metadata.uid.clone())
    );
    assert_eq!(
        slice.metadata.labels.as_ref().unwrap()["wasmcloud.dev/route-manager"],
        "true"
    );
    // The replicas carry the operator's aliases for the Service.
    let ws = workloads_of(&Api::namespaced(admin.clone(), ns.name()), "web").await;
    assert_eq!(
        ws[0].spec.http_hostnames(ns.name()),
        vec![
            "web.test".to_string(),
            format!("web.{}", ns.name()),
            format!("web.{}.svc", ns.name())
        ]
    );

    // Scaled to one replica: one endpoint. Deleted: no slice.
    api.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({"spec": {"replicas": 1}})),
    )
    .await
    .expect("scale");
    eventually("an EndpointSlice of one host", WAIT, || async {
        (ips_of(&slices.get(&name).await.ok()?).len() == 1).then_some(())
    })
    .await;
    api.delete("web", &DeleteParams::background())
        .await
        .expect("delete");
    eventually("the EndpointSlice to go with the last replica", WAIT, || async {
        slices.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
    let denied = sys.denied(&sys.operator.user);
    assert!(
        denied.is_empty(),
        "the shipped RBAC is enough; denied: {denied:?}"
    );
}
