//! Whole wasmCloud workloads through the operator: a WorkloadDeployment whose HTTP component calls a
//! library component of the same workload and whose service counts in `wasi:keyvalue` (NATS JetStream)
//! is served through the gateway; a Workload whose service keeps failing carries the host's report on
//! its `Sync` condition.

use kube::api::PostParams;
use weft_crds::{Workload, WorkloadDeployment};
use weft_e2e::Env;
use weft_e2e::system::{Stack, StackOptions};

use crate::support::{SOON, eventually};

const LINKED_HOST: &str = "linked.example.com";

fn image(path: &str) -> serde_json::Value {
    format!("file://{path}").into()
}

/// The hello-world example turned into a two-component workload with a key-value counting service.
fn linked_deployment() -> WorkloadDeployment {
    use weft_test_components as c;
    let mut d = serde_json::to_value(Stack::hello_world().expect("the example")).expect("json");
    d["metadata"]["name"] = "linked".into();
    d["spec"]["replicas"] = 1.into();
    let spec = &mut d["spec"]["template"]["spec"];
    spec["components"] = serde_json::json!([
        {"name": "greeter", "image": image(c::GREETER)},
        {"name": "greet-http", "image": image(c::GREET_HTTP)},
    ]);
    spec["hostInterfaces"][0]["config"]["host"] = LINKED_HOST.into();
    spec["hostInterfaces"].as_array_mut().expect("a list").push(
        serde_json::json!({"namespace": "wasi", "package": "keyvalue", "interfaces": ["store", "atomics"]}),
    );
    spec["service"] = serde_json::json!({
        "image": image(c::KV_COUNTER),
        "maxRestarts": 3,
        "localResources": {"environment": {"config": {"BUCKET": "e2e-linked", "INTERVAL_MS": "100"}}},
    });
    serde_json::from_value(d).expect("a WorkloadDeployment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_components_and_a_service_run_through_the_operator() {
    let env = Env::shared().await;
    let ns = env.new_namespace("whole-workloads").await.expect("namespace");
    let stack = Stack::start(env, &ns, StackOptions::new(env, 1), SOON)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stack
        .api::<WorkloadDeployment>()
        .create(&PostParams::default(), &linked_deployment())
        .await
        .expect("create the linked deployment");
    let answer = eventually(
        "the linked workload answering through the gateway",
        SOON,
        || async {
            let r = weft_e2e::testing::http_get_host_path(stack.gateway.proxy, LINKED_HOST, "/Kube?times=2")
                .await
                .ok()?;
            (r.status == 200).then_some(r.body)
        },
    )
    .await;
    assert_eq!(answer, "Hello, Kube!\ncalls: 2\n");
    let workloads = stack.ready_replicas("linked").await.expect("list");
    assert_eq!(workloads.len(), 1);

    // The service counts in JetStream KV on the environment's NATS.
    let nats_url = stack.nats.as_ref().expect("the stack's own nats-server").url();
    let nats = async_nats::connect(nats_url).await.expect("connect to NATS");
    let kv = eventually("the service's bucket", SOON, || async {
        async_nats::jetstream::new(nats.clone())
            .get_key_value("e2e-linked")
            .await
            .ok()
    })
    .await;
    let count = |kv: async_nats::jetstream::kv::Store| async move {
        let value = kv.get("hits").await.ok()??;
        String::from_utf8(value.to_vec()).ok()?.parse::<u64>().ok()
    };
    let first = eventually("a first count", SOON, || count(kv.clone())).await;
    eventually("the count growing", SOON, || async {
        count(kv.clone()).await.filter(|n| *n > first)
    })
    .await;

    // A Workload whose service fails on every run: restarted once, then reported on the Workload.
    let mut failing = serde_json::to_value(&workloads[0]).expect("json");
    failing["metadata"] = serde_json::json!({"name": "failing-service"});
    failing["status"] = serde_json::Value::Null;
    let spec = &mut failing["spec"];
    spec["hostId"] = serde_json::Value::Null;
    spec["hostInterfaces"][0]["config"]["host"] = "failing.example.com".into();
    spec["service"]["maxRestarts"] = 1.into();
    spec["service"]["localResources"]["environment"]["config"]["EXIT_AFTER"] = "1".into();
    let failing: Workload = serde_json::from_value(failing).expect("a Workload");
    stack
        .api::<Workload>()
        .create(&PostParams::default(), &failing)
        .await
        .expect("create the failing Workload");
    let message = eventually("the service failure on the Workload", SOON, || async {
        let w = stack.api::<Workload>().get("failing-service").await.ok()?;
        let sync = weft_crds::condition::find(&w.status.as_ref()?.conditions, "Sync")?;
        let message = sync.message.clone().unwrap_or_default();
        message.contains("service failed").then_some(message)
    })
    .await;
    assert!(
        message.contains("service failed after 1 of 1 restarts: exited with code 1"),
        "{message}"
    );
}
