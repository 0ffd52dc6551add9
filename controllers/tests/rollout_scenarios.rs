//! Scenarios of the WorkloadReplicaSet and WorkloadDeployment reconcilers against a mocked apiserver:
//! the cached world is stated, one reconcile runs, and every request it makes is checked in order.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use support::{Mock, condition, conflict, expect, expect_nothing_more};
use tower_test::mock;
use weft_controllers::deployment::{DeploymentMetrics, DeploymentReconciler};
use weft_controllers::replicaset::{self, ReplicaSetMetrics, ReplicaSetReconciler};
use weft_crds::{Artifact, Workload, WorkloadDeployment, WorkloadReplicaSet};
use weft_framework::{Action, Cache, Context, ObjectKey, Reconciler};

const API: &str = "/apis/runtime.wasmcloud.dev/v1alpha1/namespaces/shop";

fn template_spec() -> Value {
    json!({"components": [{"name": "http", "image": "file:///hello.wasm"}]})
}

fn replica_set(name: &str, replicas: i32, spec: Value) -> WorkloadReplicaSet {
    serde_json::from_value(json!({
        "apiVersion": "runtime.wasmcloud.dev/v1alpha1",
        "kind": "WorkloadReplicaSet",
        "metadata": {
            "name": name, "namespace": "shop", "uid": format!("uid-{name}"), "generation": 1,
            "resourceVersion": "41",
            "creationTimestamp": "2026-12-01T00:00:00Z",
            "labels": {"runtime.wasmcloud.dev/workload-deployment": "hello"},
            "ownerReferences": [{
                "apiVersion": "runtime.wasmcloud.dev/v1alpha1", "kind": "WorkloadDeployment",
                "name": "hello", "uid": "uid-hello", "controller": true,
            }],
        },
        "spec": {"replicas": replicas, "template": {"labels": {"app": "hello"}, "spec": spec}},
    }))
    .expect("a replica set")
}

/// A Ready Workload of `set` on `host`.
fn replica(name: &str, set: &WorkloadReplicaSet, host: &str) -> Workload {
    serde_json::from_value(json!({
        "apiVersion": "runtime.wasmcloud.dev/v1alpha1",
        "kind": "Workload",
        "metadata": {
            "name": name, "namespace": "shop", "uid": format!("uid-{name}"),
            "creationTimestamp": "2026-12-01T00:00:00Z",
            "annotations": {"runtime.wasmcloud.dev/workload-replica-set-generation": set.spec.template.hash()},
            "ownerReferences": [{
                "apiVersion": "runtime.wasmcloud.dev/v1alpha1", "kind": "WorkloadReplicaSet",
                "name": set.metadata.name, "uid": set.metadata.uid, "controller": true,
            }],
        },
        "spec": set.spec.template.spec,
        "status": {"hostId": host, "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .expect("a Workload")
}

fn workloads_cache(workloads: Vec<Workload>) -> Cache<Workload> {
    let cache = Cache::from_objects(workloads);
    cache.add_index(
        replicaset::WORKLOAD_OWNER_INDEX,
        Arc::new(replicaset::workload_owner_index),
    );
    cache
}

fn sets_cache(sets: Vec<WorkloadReplicaSet>) -> Cache<WorkloadReplicaSet> {
    let cache = Cache::from_objects(sets);
    cache.add_index(
        replicaset::REPLICA_SET_OWNER_INDEX,
        Arc::new(replicaset::replica_set_owner_index),
    );
    cache
}

fn mocked() -> (Client, Mock) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

fn ctx(name: &str) -> Context {
    Context::new("test", ObjectKey::namespaced("shop", name), 0)
}

#[tokio::test]
async fn a_replica_set_creates_what_is_missing_once_even_on_a_stale_cache() {
    let rs = replica_set("hello-abc", 2, template_spec());
    let hash = rs.spec.template.hash();
    let existing = replica("hello-abc-aaaaa", &rs, "host-1");
    let (client, mut api) = mocked();
    let mut registry = prometheus_client::registry::Registry::default();
    let r = Arc::new(ReplicaSetReconciler::new(
        client,
        sets_cache(vec![rs.clone()]),
        workloads_cache(vec![existing]),
        Duration::from_secs(60),
        ReplicaSetMetrics::register(&mut registry),
    ));
    let reply = serde_json::to_value(&rs).unwrap();
    let (r1, rs1) = (r.clone(), rs.clone());
    let run = tokio::spawn(async move { r1.reconcile(Arc::new(rs1), &ctx("hello-abc")).await });
    let created = expect(
        &mut api,
        Method::POST,
        &format!("{API}/workloads"),
        201,
        json!({"apiVersion": "runtime.wasmcloud.dev/v1alpha1", "kind": "Workload",
               "metadata": {"name": "hello-abc-bbbbb", "namespace": "shop"}, "spec": template_spec()}),
    )
    .await;
    let meta = &created["metadata"];
    assert_eq!(meta["generateName"], "hello-abc-");
    assert_eq!(meta["ownerReferences"][0]["kind"], "WorkloadReplicaSet");
    assert_eq!(meta["ownerReferences"][0]["uid"], "uid-hello-abc");
    assert_eq!(meta["ownerReferences"][0]["controller"], true);
    assert_eq!(
        meta["annotations"]["runtime.wasmcloud.dev/workload-replica-set-generation"],
        hash.as_str()
    );
    assert_eq!(meta["labels"]["weft.dev/template-hash"], hash.as_str());
    assert_eq!(meta["labels"]["app"], "hello", "the template's labels");
    assert_eq!(
        meta["labels"]["runtime.wasmcloud.dev/workload-deployment"],
        "hello"
    );
    assert_eq!(created["spec"], template_spec());
    let status = expect(
        &mut api,
        Method::PATCH,
        &format!("{API}/workloadreplicasets/hello-abc/status"),
        200,
        reply.clone(),
    )
    .await;
    assert_eq!(condition(&status, "ScaleUp")["status"], "Unknown");
    assert_eq!(status["status"]["replicas"]["current"], 1);
    assert_eq!(condition(&status, "Ready")["status"], "False");
    expect_nothing_more(&mut api).await;
    assert_eq!(
        run.await.unwrap().unwrap(),
        Action::RequeueAfter(Duration::from_secs(5))
    );

    // The watch has not delivered the new Workload yet: the next pass creates nothing more.
    let run = tokio::spawn(async move { r.reconcile(Arc::new(rs), &ctx("hello-abc")).await });
    let status = expect(
        &mut api,
        Method::PATCH,
        &format!("{API}/workloadreplicasets/hello-abc/status"),
        200,
        reply,
    )
    .await;
    assert_eq!(condition(&status, "ScaleUp")["message"], "creating 1 replicas");
    expect_nothing_more(&mut api).await;
    run.await.unwrap().unwrap();
}

fn deployment(replicas: i32, spec: Value, extra: Value) -> WorkloadDeployment {
    let mut d = json!({
        "apiVersion": "runtime.wasmcloud.dev/v1alpha1",
        "kind": "WorkloadDeployment",
        "metadata": {"name": "hello", "namespace": "shop", "uid": "uid-hello", "generation": 2,
                     "labels": {"team": "shop"},
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "note": "x"}},
        "spec": {"replicas": replicas, "template": {"labels": {"app": "hello"}, "spec": spec}},
    });
    d["spec"]
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(d).expect("a deployment")
}

fn deployment_reconciler(
    client: Client,
    sets: Vec<WorkloadReplicaSet>,
    workloads: Vec<Workload>,
) -> DeploymentReconciler {
    let mut registry = prometheus_client::registry::Registry::default();
    DeploymentReconciler::new(
        client,
        sets_cache(sets),
        workloads_cache(workloads),
        Cache::<Artifact>::from_objects(Vec::new()),
        DeploymentMetrics::register(&mut registry),
    )
}

#[tokio::test]
async fn a_scale_decided_on_a_stale_replica_set_fails_on_its_resource_version() {
    let rs = replica_set("hello-x", 2, template_spec());
    let d = deployment(3, template_spec(), json!({}));
    let current = format!("hello-{}", rs.spec.template.hash());
    let mut rs = rs;
    rs.metadata.name = Some(current.clone());
    let ws = vec![replica("a", &rs, "host-1"), replica("b", &rs, "host-2")];
    let (client, mut api) = mocked();
    let r = deployment_reconciler(client, vec![rs], ws);
    let reply = serde_json::to_value(&d).unwrap();
    let run = tokio::spawn(async move { r.reconcile(Arc::new(d), &ctx("hello")).await });
    let patch = expect(
        &mut api,
        Method::PATCH,
        &format!("{API}/workloadreplicasets/{current}"),
        409,
        conflict(),
    )
    .await;
    assert_eq!(patch["metadata"]["resourceVersion"], "41");
    assert_eq!(patch["spec"]["replicas"], 3);
    let status = expect(
        &mut api,
        Method::PATCH,
        &format!("{API}/workloaddeployments/hello/status"),
        200,
        reply,
    )
    .await;
    assert_eq!(status["status"]["currentReplicaSet"]["name"], current.as_str());
    assert_eq!(status["status"]["observedGeneration"], 2);
    assert_eq!(
        status["status"]["selector"],
        "runtime.wasmcloud.dev/workload-deployment=hello"
    );
    expect_nothing_more(&mut api).await;
    assert_eq!(
        run.await.unwrap().unwrap(),
        Action::Requeue,
        "retried on a fresh cache"
    );
}

#[tokio::test]
async fn a_new_template_gets_a_replica_set_within_the_surge_budget() {
    let old = replica_set("hello-old", 2, template_spec());
    let ws = vec![replica("a", &old, "host-1"), replica("b", &old, "host-2")];
    let new_spec = json!({"components": [{"name": "http", "image": "file:///hello-v2.wasm"}]});
    let d = deployment(
        2,
        new_spec.clone(),
        json!({"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}),
    );
    let hash = d.spec.template.hash();
    let (client, mut api) = mocked();
    let r = deployment_reconciler(client, vec![old], ws);
    let reply = serde_json::to_value(&d).unwrap();
    let run = tokio::spawn(async move { r.reconcile(Arc::new(d), &ctx("hello")).await });
    let created = expect(
        &mut api,
        Method::POST,
        &format!("{API}/workloadreplicasets"),
        201,
        json!({"apiVersion": "runtime.wasmcloud.dev/v1alpha1", "kind": "WorkloadReplicaSet",
               "metadata": {"name": format!("hello-{hash}"), "namespace": "shop"},
               "spec": {"replicas": 1, "template": {"spec": new_spec}}}),
    )
    .await;
    assert_eq!(created["metadata"]["name"], format!("hello-{hash}"));
    assert_eq!(created["spec"]["replicas"], 1, "replicas + maxSurge - existing");
    assert_eq!(created["spec"]["template"]["spec"], new_spec);
    let labels = &created["metadata"]["labels"];
    assert_eq!(labels["team"], "shop");
    assert_eq!(labels["runtime.wasmcloud.dev/workload-deployment"], "hello");
    let annotations = &created["metadata"]["annotations"];
    assert_eq!(annotations["note"], "x");
    assert!(
        annotations
            .get("kubectl.kubernetes.io/last-applied-configuration")
            .is_none()
    );
    assert_eq!(
        created["metadata"]["ownerReferences"][0]["kind"],
        "WorkloadDeployment"
    );
    let status = expect(
        &mut api,
        Method::PATCH,
        &format!("{API}/workloaddeployments/hello/status"),
        200,
        reply,
    )
    .await;
    assert_eq!(condition(&status, "Sync")["status"], "True");
    assert_eq!(condition(&status, "Deploy")["status"], "Unknown");
    assert_eq!(condition(&status, "Ready")["status"], "Unknown");
    assert_eq!(status["status"]["previousReplicaSet"]["name"], "hello-old");
    assert_eq!(status["status"]["replicas"]["ready"], 2);
    expect_nothing_more(&mut api).await;
    run.await.unwrap().unwrap();
}
