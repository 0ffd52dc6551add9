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
    // Requests the dead host refuses, and a GET it took but never answered, are retried on the other
    // replica; only one whose answer had begun (the loop has one in flight at a time) can be lost.
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

/// The Host header of the trapping deployment.
const TRAP_HOST: &str = "trap.example.com";

/// The hello-world example turned into deployment `name` of one echo replica served on `host`
/// (echo traps on `GET /trap`).
fn echo_deployment(name: &str, host: &str) -> weft_crds::WorkloadDeployment {
    let mut d = serde_json::to_value(Stack::hello_world().expect("the example")).expect("json");
    d["metadata"]["name"] = name.into();
    d["spec"]["replicas"] = 1.into();
    let spec = &mut d["spec"]["template"]["spec"];
    spec["components"][0]["image"] = format!("file://{}", weft_test_components::ECHO).into();
    spec["hostInterfaces"][0]["config"]["host"] = host.into();
    serde_json::from_value(d).expect("a WorkloadDeployment")
}

fn healthy(w: &Workload) -> Option<&weft_crds::condition::Condition> {
    weft_crds::condition::find(&w.status.as_ref()?.conditions, "Healthy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_traps_on_every_request_is_reported_and_the_other_workloads_are_untouched() {
    let env = Env::shared().await;
    let ns = env.new_namespace("failover-trap").await.expect("namespace");
    let stack = stack(env, &ns, StackOptions::new(env, 2)).await;
    stack
        .deploy_hello_world(true, SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stack
        .api::<weft_crds::WorkloadDeployment>()
        .create(&Default::default(), &echo_deployment("trapper", TRAP_HOST))
        .await
        .expect("create the trapping deployment");
    eventually("the trapping replica Ready", SOON, || async {
        (stack.ready_replicas("trapper").await.ok()?.len() == 1).then_some(())
    })
    .await;

    let traffic = loop_through(&stack);
    // Every request to the trapping component fails in it, through the gateway as directly.
    for _ in 0..10 {
        let r = weft_e2e::testing::http_get_host_path(stack.gateway.proxy, TRAP_HOST, "/trap")
            .await
            .expect("the gateway answers");
        assert_eq!(r.status, 500, "the component traps: {}", r.body);
    }
    // The host reports it; the operator puts it on the Workload's Healthy condition (within a status
    // check), and the replica stays Ready (routed): a failing component is reported, not hidden.
    let workloads: Api<Workload> = stack.api();
    let reported = eventually(
        "Healthy False on the trapping Workload",
        Duration::from_secs(90),
        || async {
            let list = workloads.list(&Default::default()).await.ok()?;
            list.items
                .into_iter()
                .filter(|w| w.name_any().starts_with("trapper-"))
                .find_map(|w| {
                    let c = healthy(&w)?;
                    (c.status == weft_crds::condition::ConditionStatus::False)
                        .then(|| (w.is_ready(), c.clone()))
                })
        },
    )
    .await;
    let (still_ready, condition) = reported;
    println!("trapping component reported: {condition:?}");
    assert_eq!(condition.reason.as_deref(), Some("RequestsFailing"));
    let message = condition.message.unwrap_or_default();
    // The status check may fall while the ten requests are still being sent: every request counted
    // so far failed, and at least the three that make it failing were counted.
    let counts = message
        .split_once(" requests failed")
        .and_then(|(counts, _)| counts.split_once(" of the last "))
        .and_then(|(failed, of)| Some((failed.parse::<u32>().ok()?, of.parse::<u32>().ok()?)));
    assert!(
        matches!(counts, Some((failed, of)) if failed == of && (3..=10).contains(&failed)),
        "every counted request failed: {message}"
    );
    assert!(message.contains("unreachable"), "the trap is named: {message}");
    assert!(still_ready, "reported, not taken out of routing");

    // However soon the report came, hello-world is loaded long enough for a failure to show.
    eventually("100 answers to the request loop", SOON, || async {
        (traffic.progress().0 >= 100).then_some(())
    })
    .await;
    let traffic = traffic.finish().await;
    assert!(traffic.ok >= 100, "the loop ran: {}", traffic.ok);
    assert!(
        traffic.failures.is_empty(),
        "the other workload is untouched:\n{}",
        traffic.summary(10)
    );
    for w in stack.ready_replicas(HELLO).await.expect("hello replicas") {
        let c = healthy(&w).expect("a Healthy condition on a running workload");
        assert_eq!(
            c.status,
            weft_crds::condition::ConditionStatus::True,
            "{}: {c:?}",
            w.name_any()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_host_leaves_the_workloads_on_the_other_hosts_untouched() {
    let env = Env::shared().await;
    let ns = env.new_namespace("failover-crashloop").await.expect("namespace");
    let stack = stack(env, &ns, StackOptions::new(env, 3)).await;
    let placed = stack
        .deploy_hello_world(true, SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let serving: std::collections::BTreeSet<(String, String)> =
        placed.iter().map(|w| (w.name_any(), host_of(w))).collect();
    let hosts: Api<Host> = stack.api();
    let idle = hosts
        .list(&Default::default())
        .await
        .expect("Hosts")
        .items
        .into_iter()
        .find(|h| !serving.iter().any(|(_, id)| *id == h.spec.host_id))
        .expect("a host without a replica");
    let pod = stack
        .pod_of_host(&idle.spec.host_id)
        .await
        .expect("its pod")
        .name_any();

    let traffic = loop_through(&stack);
    // The idle host's process dies three times in a row, each time soon after it registered again.
    let mut killed = vec![idle.spec.host_id.clone()];
    let pods: Api<Pod> = stack.api();
    for round in 0..3 {
        let p = pods.get(&pod).await.expect("the crash-looping pod");
        let pid = container_pid(&p).expect("its host process");
        weft_testkit::owned::signal_group(pid, libc::SIGKILL);
        let next = eventually(
            &format!("the host registered again after crash {}", round + 1),
            SOON,
            || async {
                let hs = hosts.list(&Default::default()).await.ok()?.items;
                let h = hs.into_iter().find(|h| {
                    h.is_ready()
                        && !killed.contains(&h.spec.host_id)
                        && !serving.iter().any(|(_, id)| *id == h.spec.host_id)
                })?;
                let at = stack.pod_of_host(&h.spec.host_id).await.ok()?;
                (at.name_any() == pod).then(|| h.spec.host_id.clone())
            },
        )
        .await;
        killed.push(next);
    }
    // Every dead incarnation's Host is gone; the last one serves.
    eventually("the dead incarnations' Hosts deleted", SOON, || async {
        let hs = hosts.list(&Default::default()).await.ok()?.items;
        let ids: Vec<&str> = hs.iter().map(|h| h.spec.host_id.as_str()).collect();
        (hs.len() == 3
            && killed[..killed.len() - 1]
                .iter()
                .all(|k| !ids.contains(&k.as_str())))
        .then_some(())
    })
    .await;
    let traffic = traffic.finish().await;
    let now: std::collections::BTreeSet<(String, String)> = stack
        .ready_replicas(HELLO)
        .await
        .expect("replicas")
        .iter()
        .map(|w| (w.name_any(), host_of(w)))
        .collect();
    println!(
        "host crash-looped 3 times: {} requests, {} failed",
        traffic.total(),
        traffic.failures.len()
    );
    assert_eq!(now, serving, "the replicas stayed where they were");
    let restarts = pods
        .get(&pod)
        .await
        .expect("the crash-looping pod")
        .status
        .and_then(|s| s.container_statuses?.first().map(|c| c.restart_count))
        .unwrap_or_default();
    assert!(restarts >= 3, "the pod reports its crashes (RESTARTS {restarts})");
    assert!(traffic.ok > 100, "the loop ran: {}", traffic.ok);
    assert!(
        traffic.failures.is_empty(),
        "the workloads on the other hosts are untouched:\n{}",
        traffic.summary(10)
    );
}
