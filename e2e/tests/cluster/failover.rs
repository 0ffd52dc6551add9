//! Failover under traffic, as a person sees it: `crds/examples/workloaddeployment-hello-world.yaml`
//! applied on the host group of `deploy/hostgroup/` (host pods run by the process-kubelet), curled
//! through `weft-gateway` under its shipped RBAC by a bounded request loop that counts every failed
//! request, while something breaks: a host pod is deleted, a host process is SIGKILLed, the NATS server
//! goes away for 30 s, the operator leader is SIGKILLed in the middle of a rollout.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};
use weft_crds::{Host, Workload};
use weft_e2e::Env;
use weft_e2e::system::{HELLO_WORLD_BODY, HELLO_WORLD_HOST, Stack, StackOptions};
use weft_e2e::traffic::RequestLoop;
use weft_testkit::{NatsServer, TempDir, free_port};

use crate::support::{SOON, container_pid, eventually};

/// The example's name.
const HELLO: &str = "hello-world";
/// No loop runs longer than this (they are stopped well before).
const LOOP_LIMIT: Duration = Duration::from_secs(180);

async fn stack(env: &Env, ns: &str, options: StackOptions) -> Stack {
    Stack::start(env, ns, options, SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn loop_through(stack: &Stack) -> RequestLoop {
    RequestLoop::start(
        stack.gateway.proxy,
        HELLO_WORLD_HOST,
        HELLO_WORLD_BODY,
        1,
        LOOP_LIMIT,
    )
}

fn host_of(w: &Workload) -> String {
    w.status
        .as_ref()
        .and_then(|s| s.host_id.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_world_through_the_gateway_survives_a_host_pod_deletion_without_a_failed_request() {
    let env = Env::shared().await;
    let ns = env.new_namespace("failover").await.expect("namespace");
    let stack = stack(env, &ns, StackOptions::new(env, 3)).await;
    let placed = stack
        .deploy_hello_world(true, SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let traffic = loop_through(&stack);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let victim_host = host_of(&placed[0]);
    let victim = stack.pod_of_host(&victim_host).await.expect("the victim pod");
    let pods: Api<Pod> = stack.api();
    let deleted_at = Instant::now();
    pods.delete(&victim.name_any(), &DeleteParams::default())
        .await
        .expect("delete the host pod");
    stack
        .wait_spread(HELLO, 2, Some(&victim_host), SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let recovered = deleted_at.elapsed();
    // And the pod is gone (its host drained and exited) while the loop still runs.
    eventually("the deleted pod to go", SOON, || async {
        pods.get_opt(&victim.name_any())
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let traffic = traffic.finish().await;
    println!(
        "host pod deleted under traffic: {} requests, {} failed; both replicas Ready elsewhere after {recovered:?}",
        traffic.total(),
        traffic.failures.len()
    );
    assert!(traffic.ok > 100, "the loop ran: {}", traffic.ok);
    assert!(
        traffic.failures.is_empty(),
        "not one request fails:\n{}",
        traffic.summary(10)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_without_warning_fails_at_most_the_request_in_flight_to_it() {
    let env = Env::shared().await;
    let ns = env.new_namespace("failover-kill").await.expect("namespace");
    let stack = stack(env, &ns, StackOptions::new(env, 3)).await;
    let placed = stack
        .deploy_hello_world(true, SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let traffic = loop_through(&stack);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let victim_host = host_of(&placed[0]);
    let victim = stack.pod_of_host(&victim_host).await.expect("the victim pod");
    let pid = container_pid(&victim).expect("the host process");
    let hosts: Api<Host> = stack.api();
    let killed_at = Instant::now();
    weft_testkit::owned::signal_group(pid, libc::SIGKILL);
    // The silent host is noticed (its Host no longer Ready, or gone) …
    let detected = eventually("the killed host noticed", SOON, || async {
        let gone_or_not_ready = hosts
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|h| h.spec.host_id == victim_host)
            .is_none_or(|h| !h.is_ready());
        gone_or_not_ready.then(|| killed_at.elapsed())
    })
    .await;
    // … and its replica is placed elsewhere.
    stack
        .wait_spread(HELLO, 2, Some(&victim_host), SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let recovered = killed_at.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let traffic = traffic.finish().await;
    println!(
        "host SIGKILLed under traffic: {} requests, {} failed; detected after {detected:?}, both replicas Ready elsewhere after {recovered:?}",
        traffic.total(),
        traffic.failures.len()
    );
    assert!(traffic.ok > 100, "the loop ran: {}", traffic.ok);
    // Requests the dead host refuses are retried on the other replica; only one already sent to it
    // (the loop has one in flight at a time) can be lost.
    assert!(
        traffic.failures.len() <= 1,
        "at most the request in flight to the killed host fails:\n{}",
        traffic.summary(10)
    );
    assert_eq!(
        traffic.failed_between(killed_at + recovered, Instant::now()),
        0,
        "nothing fails once the replicas are whole again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thirty_second_nats_outage_interrupts_no_request_and_deletes_nothing() {
    let env = Env::shared().await;
    let ns = env.new_namespace("failover-nats").await.expect("namespace");
    let nats_dir = TempDir::new("failover-nats").expect("temp dir");
    let port = free_port();
    let mut nats = NatsServer::start_in(nats_dir.path(), port).expect("nats-server");
    let mut options = StackOptions::new(env, 2);
    options.nats_url = Some(nats.url());
    let stack = stack(env, &ns, options).await;
    stack
        .deploy_hello_world(true, SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let before = stack.inventory().await.expect("inventory");

    let traffic = loop_through(&stack);
    tokio::time::sleep(Duration::from_secs(1)).await;
    nats.stop();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = stack.inventory().await.expect("inventory");
    nats = NatsServer::start_in(nats_dir.path(), port).expect("nats-server again");
    // Everything Ready again: both hosts and both replicas.
    let hosts: Api<Host> = stack.api();
    eventually("the hosts Ready again", SOON, || async {
        let hs = hosts.list(&Default::default()).await.ok()?.items;
        (hs.len() == 2 && hs.iter().all(Host::is_ready)).then_some(())
    })
    .await;
    stack
        .wait_spread(HELLO, 2, None, SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let traffic = traffic.finish().await;
    let after = stack.inventory().await.expect("inventory");
    println!(
        "NATS down 30 s under traffic: {} requests, {} failed",
        traffic.total(),
        traffic.failures.len()
    );
    assert_eq!(during, before, "nothing deleted or replaced during the outage");
    assert_eq!(after, before, "nothing deleted or replaced after it");
    assert!(traffic.ok > 100, "the loop ran: {}", traffic.ok);
    assert!(
        traffic.failures.is_empty(),
        "HTTP does not go over NATS: not one request fails:\n{}",
        traffic.summary(10)
    );
    drop(nats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_finishes_a_rollout_when_the_leader_is_killed_and_no_request_fails() {
    let env = Env::shared().await;
    let ns = env.new_namespace("failover-leader").await.expect("namespace");
    let mut options = StackOptions::new(env, 2);
    options.operator_replicas = 2;
    let stack = stack(env, &ns, options).await;
    stack
        .deploy_hello_world(true, SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let leader = eventually("a leader", SOON, || stack.leader()).await;
    let restarts = stack.operator_restarts()[leader];

    let traffic = loop_through(&stack);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A rollout (a new template: an environment variable for the component) and the leader killed
    // right after.
    let (template, new_hash) = stack.revised_template(HELLO, 2).await.expect("template");
    let generation = stack
        .apply_template(HELLO, &template)
        .await
        .expect("patch the template");
    let killed_at = Instant::now();
    stack.signal_operator(leader, libc::SIGKILL).await;
    // The killed replica is restarted (as its pod would be); when the lease expires the follower, or
    // the restarted process, takes it.
    eventually("a new leader", SOON, || stack.new_leader(leader, restarts)).await;
    let took_over = killed_at.elapsed();
    let rolled_out = eventually("the rollout finished", SOON, || async {
        stack
            .rolled_out(HELLO, generation, &new_hash, 2)
            .await
            .then(|| killed_at.elapsed())
    })
    .await;
    let traffic = traffic.finish().await;
    println!(
        "leader SIGKILLed during a rollout: {} requests, {} failed; a new leader after {took_over:?}, rollout done after {rolled_out:?}",
        traffic.total(),
        traffic.failures.len()
    );
    assert!(traffic.ok > 100, "the loop ran: {}", traffic.ok);
    assert!(
        traffic.failures.is_empty(),
        "not one request fails:\n{}",
        traffic.summary(10)
    );
}
