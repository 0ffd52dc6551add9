//! kube-apiserver restarted under traffic, as in a control-plane upgrade: the operator's and the
//! gateway's watches end and resync, nothing is deleted, not one request through the gateway fails, and
//! a change made after the restart is acted on. This test owns its environment (restarting the shared
//! apiserver would disturb every other test).

use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams};
use weft_crds::WorkloadDeployment;
use weft_e2e::system::{HELLO_WORLD_BODY, HELLO_WORLD_HOST, Stack, StackOptions};
use weft_e2e::traffic::RequestLoop;
use weft_e2e::{Env, EnvOptions, RunningEnv};

const SOON: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apiserver_restart_under_traffic_deletes_nothing_and_fails_no_request() {
    let mut running = RunningEnv::start(EnvOptions::default())
        .await
        .expect("an environment of its own");
    let env = Env::from_coordinates(running.coordinates().clone())
        .await
        .expect("its coordinates");
    let ns = env.new_namespace("apiserver-restart").await.expect("namespace");
    let stack = Stack::start(&env, &ns, StackOptions::new(&env, 3), SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stack
        .deploy_hello_world(true, SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let before = stack.inventory().await.expect("inventory");

    let traffic = RequestLoop::start(
        stack.gateway.proxy,
        HELLO_WORLD_HOST,
        HELLO_WORLD_BODY,
        1,
        Duration::from_secs(180),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let down = running
        .restart_apiserver(SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The caches resynced: a change made now is acted on (a third replica, served).
    let deployments: Api<WorkloadDeployment> = stack.api();
    deployments
        .patch(
            "hello-world",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"spec": {"replicas": 3}})),
        )
        .await
        .expect("scale after the restart");
    stack
        .wait_spread("hello-world", 3, None, SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let traffic = traffic.finish().await;
    let after = stack.inventory().await.expect("inventory");
    println!(
        "kube-apiserver restarted under traffic (API unavailable {down:?}): {} requests, {} failed; operator restarts {:?}",
        traffic.total(),
        traffic.failures.len(),
        stack.operator_restarts()
    );
    let lost: Vec<&String> = before.difference(&after).collect();
    assert!(lost.is_empty(), "nothing deleted or replaced: {lost:?}");
    assert!(traffic.ok > 100, "the loop ran: {}", traffic.ok);
    assert!(
        traffic.failures.is_empty(),
        "not one request fails:\n{}",
        traffic.summary(10)
    );
    drop(stack);
    drop(ns);
    running.stop(Duration::from_secs(10)).await;
}
