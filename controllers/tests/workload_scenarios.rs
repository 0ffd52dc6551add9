//! Scenarios of the Workload reconciler against a mocked apiserver (the middle test layer, like kube-rs'
//! controller-rs `fixtures.rs`): each scenario states the cached world, runs one reconcile and checks
//! every request the reconciler makes, in order, and that it makes no other.

use std::sync::Arc;

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;
use weft_controllers::workload::{WorkloadMetrics, WorkloadReconciler};
use weft_crds::condition::{Condition, ConditionStatus};
use weft_crds::{Host, HostFields, HostStatus, Workload};
use weft_framework::events::EventRecorder;
use weft_framework::{Action, Cache, Context, ObjectKey, Reconciler};

mod support;

use support::{Mock, condition, expect, expect_event, expect_nothing_more, not_found};

fn workload(spec: Value) -> Workload {
    serde_json::from_value(json!({
        "apiVersion": "runtime.wasmcloud.dev/v1alpha1",
        "kind": "Workload",
        "metadata": {
            "name": "w", "namespace": "shop", "uid": "uid-w", "generation": 1,
            "finalizers": ["runtime.wasmcloud.dev/workload-finalizer"],
        },
        "spec": spec,
    }))
    .expect("a Workload")
}

fn component(extra: Value) -> Value {
    let mut c = json!({"name": "http", "image": "file:///hello.wasm"});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({ "components": [c] })
}

fn host(ready: ConditionStatus) -> Host {
    let mut h = Host::new(
        "calm-otter",
        HostFields {
            host_id: "host-1".into(),
            hostname: Some("10.0.0.1".into()),
            ..Default::default()
        },
    );
    h.metadata.namespace = Some("weft-system".into());
    h.status = Some(HostStatus {
        conditions: vec![Condition::new("Ready", ready)],
        ..Default::default()
    });
    h
}

async fn reconciler(hosts: Vec<Host>, workloads: Vec<Workload>) -> (WorkloadReconciler, Mock) {
    // No request in these scenarios reaches a host; the client connects in the background.
    let nats = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect("nats://127.0.0.1:9")
        .await
        .expect("a lazily connecting client");
    reconciler_on(hosts, workloads, nats).await
}

async fn reconciler_on(
    hosts: Vec<Host>,
    workloads: Vec<Workload>,
    nats: async_nats::Client,
) -> (WorkloadReconciler, Mock) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let registry = weft_scheduler_builtin::registry(&Default::default());
    let snapshot = weft_scheduler_api::Snapshot::new(Vec::new()).unwrap();
    let scheduler = weft_scheduler_api::Scheduler::new(registry, "spread", snapshot, 7).unwrap();
    let mut metrics_registry = prometheus_client::registry::Registry::default();
    let r = WorkloadReconciler::new(
        client.clone(),
        Cache::from_objects(hosts),
        Cache::from_objects(workloads),
        scheduler,
        weft_host_api::HostClient::new(nats),
        EventRecorder::new(client, "workload-replica", None),
        WorkloadMetrics::register(&mut metrics_registry),
    );
    (r, handle)
}

/// Answers the next request, which must patch the Workload's status, with `reply`; returns the patch.
async fn expect_status_patch(api: &mut Mock, reply: Value) -> Value {
    expect(
        api,
        Method::PATCH,
        "/apis/runtime.wasmcloud.dev/v1alpha1/namespaces/shop/workloads/w/status",
        200,
        reply,
    )
    .await
}

fn ctx() -> Context {
    Context::new("workload-replica", ObjectKey::namespaced("shop", "w"), 0)
}

#[tokio::test]
async fn a_missing_configmap_is_named_on_config_and_nothing_else_happens() {
    let w = workload(component(
        json!({"localResources": {"environment": {"configFrom": [{"name": "app-settings"}]}}}),
    ));
    let (r, mut api) = reconciler(vec![host(ConditionStatus::True)], vec![w.clone()]).await;
    let reply = serde_json::to_value(&w).unwrap();
    let run = tokio::spawn(async move { r.reconcile(Arc::new(w), &ctx()).await });
    expect(
        &mut api,
        Method::GET,
        "/api/v1/namespaces/shop/configmaps/app-settings",
        404,
        not_found(),
    )
    .await;
    let patch = expect_status_patch(&mut api, reply.clone()).await;
    let config = condition(&patch, "Config");
    assert_eq!(config["status"], "False");
    assert_eq!(
        config["message"],
        "ConfigMap app-settings not found in namespace shop"
    );
    assert_eq!(condition(&patch, "Ready")["status"], "False");
    assert!(patch["status"]["hostId"].is_null(), "not placed");
    expect_nothing_more(&mut api).await;
    assert_eq!(
        run.await.unwrap().unwrap(),
        Action::Done,
        "the ConfigMap's watch retries it, not a timer"
    );
}

#[tokio::test]
async fn no_ready_host_is_explained_on_host_selection() {
    let w = workload(component(json!({})));
    let (r, mut api) = reconciler(vec![host(ConditionStatus::Unknown)], vec![w.clone()]).await;
    let reply = serde_json::to_value(&w).unwrap();
    let run = tokio::spawn(async move { r.reconcile(Arc::new(w), &ctx()).await });
    let patch = expect_status_patch(&mut api, reply.clone()).await;
    assert_eq!(condition(&patch, "Config")["status"], "True");
    let selection = condition(&patch, "HostSelection");
    assert_eq!(selection["status"], "False");
    let message = selection["message"].as_str().unwrap();
    assert!(
        message.starts_with("0/1 hosts can run workload shop/w"),
        "{message}"
    );
    expect_nothing_more(&mut api).await;
    assert_eq!(run.await.unwrap().unwrap(), Action::Done, "Host changes retry it");
}

#[tokio::test]
async fn a_workload_without_its_finalizer_gets_it_first() {
    let mut w = workload(component(json!({})));
    w.metadata.finalizers = None;
    w.metadata.resource_version = Some("41".into());
    let (r, mut api) = reconciler(vec![], vec![w.clone()]).await;
    let reply = serde_json::to_value(&w).unwrap();
    let run = tokio::spawn(async move { r.reconcile(Arc::new(w), &ctx()).await });
    let patch = expect(
        &mut api,
        Method::PATCH,
        "/apis/runtime.wasmcloud.dev/v1alpha1/namespaces/shop/workloads/w",
        200,
        reply.clone(),
    )
    .await;
    assert_eq!(
        patch["metadata"]["finalizers"],
        json!(["runtime.wasmcloud.dev/workload-finalizer"])
    );
    // Then the decision on the cached object: no host at all.
    let status = expect_status_patch(&mut api, reply.clone()).await;
    assert!(
        condition(&status, "HostSelection")["message"]
            .as_str()
            .unwrap()
            .starts_with("0/0 hosts")
    );
    expect_nothing_more(&mut api).await;
    run.await.unwrap().unwrap();
}

/// A Workload placed on `host-1` and known to run there (Placement, Sync and Ready True).
fn running_workload() -> Workload {
    let mut w = workload(component(json!({})));
    let conditions: Vec<Condition> = ["Placement", "Sync", "Ready"]
        .into_iter()
        .map(|t| Condition::new(t, ConditionStatus::True).with_reason("Available"))
        .collect();
    w.status = Some(weft_crds::WorkloadStatus {
        conditions,
        host_id: Some("host-1".into()),
        workload_id: Some("uid-w".into()),
        ..Default::default()
    });
    w
}

/// A client of a real nats-server on which no host answers: every host request fails at once.
async fn nats_without_hosts() -> (weft_testkit::NatsServer, async_nats::Client) {
    let server = weft_testkit::NatsServer::start().expect("nats-server (make testbins)");
    let client = async_nats::connect(server.url()).await.expect("connect");
    (server, client)
}

#[tokio::test]
async fn an_unanswered_status_request_leaves_a_running_workload_ready() {
    let (_server, nats) = nats_without_hosts().await;
    let w = running_workload();
    let (r, mut api) = reconciler_on(vec![host(ConditionStatus::True)], vec![w.clone()], nats).await;
    let reply = serde_json::to_value(&w).unwrap();
    let run = tokio::spawn(async move { r.reconcile(Arc::new(w), &ctx()).await });
    // This fixture's conditions carry no messages, so the reconciler writes them out once; what
    // matters is that it stays Sync and Ready (routed).
    let patch = expect_status_patch(&mut api, reply).await;
    assert_eq!(condition(&patch, "Sync")["status"], "True");
    assert_eq!(condition(&patch, "Ready")["status"], "True");
    expect_nothing_more(&mut api).await;
    assert_eq!(
        run.await.unwrap().unwrap(),
        Action::requeue_after(weft_controllers::workload::STATUS_RETRY),
        "asked again soon"
    );
}

#[tokio::test]
async fn an_unanswered_status_request_of_a_workload_not_known_to_run_is_sync_unknown() {
    let mut w = running_workload();
    for c in &mut w.status.as_mut().unwrap().conditions {
        if c.type_ != "Placement" {
            c.status = ConditionStatus::Unknown;
        }
    }
    let reply = serde_json::to_value(&w).unwrap();
    let (_server, nats) = nats_without_hosts().await;
    let (r, mut api) = reconciler_on(vec![host(ConditionStatus::True)], vec![w.clone()], nats).await;
    let run = tokio::spawn(async move { r.reconcile(Arc::new(w), &ctx()).await });
    let patch = expect_status_patch(&mut api, reply).await;
    assert_eq!(condition(&patch, "Sync")["reason"], "HostUnreachable");
    assert_eq!(condition(&patch, "Ready")["status"], "False");
    expect_nothing_more(&mut api).await;
    run.await.unwrap().unwrap();
}

/// A client of a real nats-server on which host `host-1` answers every `workload.status` request
/// with a RUNNING status carrying `message`.
async fn nats_with_host_reporting(message: &str) -> (weft_testkit::NatsServer, async_nats::Client) {
    use futures::StreamExt;
    let server = weft_testkit::NatsServer::start().expect("nats-server (make testbins)");
    let client = async_nats::connect(server.url()).await.expect("connect");
    let subject = weft_host_api::subjects::command_subject("host-1", weft_host_api::Command::WorkloadStatus);
    let mut requests = client.subscribe(subject).await.expect("subscribe");
    let reply = weft_host_api::to_json(&weft_host_api::WorkloadStatusResponse {
        workload_status: Some(weft_host_api::WorkloadStatus::new(
            "uid-w",
            weft_host_api::WorkloadState::Running,
            message,
        )),
    })
    .unwrap();
    let responder = client.clone();
    tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            if let Some(inbox) = request.reply {
                let _ = responder.publish(inbox, reply.clone().into()).await;
            }
        }
    });
    client.flush().await.expect("flush");
    (server, client)
}

#[tokio::test]
async fn a_component_failing_most_requests_is_reported_on_healthy_and_by_an_event() {
    let failures =
        weft_host_api::RequestFailures::new(20, 20, "wasm trap: wasm `unreachable` instruction executed");
    let (_server, nats) = nats_with_host_reporting(&failures.append_to("serving 1 component (http)")).await;
    let w = running_workload();
    let (r, mut api) = reconciler_on(vec![host(ConditionStatus::True)], vec![w.clone()], nats).await;
    let reply = serde_json::to_value(&w).unwrap();
    let run = tokio::spawn(async move { r.reconcile(Arc::new(w), &ctx()).await });
    let event = expect_event(&mut api, "shop").await;
    assert_eq!(event["reason"], "RequestsFailing");
    assert_eq!(event["type"], "Warning");
    let patch = expect_status_patch(&mut api, reply).await;
    let healthy = condition(&patch, "Healthy");
    assert_eq!(healthy["status"], "False");
    assert_eq!(healthy["reason"], "RequestsFailing");
    let message = healthy["message"].as_str().unwrap();
    assert!(message.contains("20 of the last 20 requests failed"), "{message}");
    assert!(message.contains("unreachable"), "{message}");
    assert_eq!(
        condition(&patch, "Ready")["status"],
        "True",
        "reported, still routed"
    );
    expect_nothing_more(&mut api).await;
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_component_answering_its_requests_is_healthy() {
    let failures = weft_host_api::RequestFailures::new(1, 64, "wasm trap: out of bounds memory access");
    let (_server, nats) = nats_with_host_reporting(&failures.append_to("serving 1 component (http)")).await;
    let w = running_workload();
    let (r, mut api) = reconciler_on(vec![host(ConditionStatus::True)], vec![w.clone()], nats).await;
    let reply = serde_json::to_value(&w).unwrap();
    let run = tokio::spawn(async move { r.reconcile(Arc::new(w), &ctx()).await });
    let patch = expect_status_patch(&mut api, reply).await;
    assert_eq!(
        condition(&patch, "Healthy")["status"],
        "True",
        "one failure in 64 is not failing"
    );
    expect_nothing_more(&mut api).await;
    run.await.unwrap().unwrap();
}
