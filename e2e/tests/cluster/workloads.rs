//! Deployment → ReplicaSet → Pods run as processes with their own IPs; deleting the Deployment cascades.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;
use weft_e2e::Env;
use weft_e2e::testing::http_get;

use crate::support::{SOON, container_pid, eventually, is_ready, process_env, runs_for_pod, testpod};

#[tokio::test]
async fn deployment_pods_run_as_processes_with_distinct_ips_and_cascade_on_delete() {
    let env = Env::shared().await;
    let ns = env.new_namespace("deploy").await.unwrap();
    let client = env.admin_client();
    let template = testpod("unused", &["http"], json!([]));
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "main",
                        "image": weft_e2e::TESTPOD_IMAGE,
                        "args": ["http"],
                        "env": template.spec.unwrap().containers[0].env,
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1},
                    }],
                },
            },
        },
    }))
    .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();

    let ready = eventually("3 ready pods", SOON, || async {
        let list = pods.list(&ListParams::default().labels("app=web")).await.ok()?;
        (list.items.len() == 3 && list.items.iter().all(is_ready)).then_some(list.items)
    })
    .await;
    let node = env.kubelet().node_name().to_string();
    let ips: BTreeSet<String> = ready
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    assert_eq!(ips.len(), 3, "three distinct pod IPs: {ips:?}");
    for pod in &ready {
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(
            spec.node_name.as_deref(),
            Some(node.as_str()),
            "bound to the process-kubelet's node"
        );
        let ip = pod.status.as_ref().unwrap().pod_ip.clone().unwrap();
        assert!(
            ip.starts_with("127.0.") && ip != "127.0.0.1",
            "loopback pod IP, not the node's: {ip}"
        );
        assert_eq!(pod.status.as_ref().unwrap().host_ip.as_deref(), Some("127.0.0.1"));
        // The process really runs, with the downward API environment of its own pod.
        let pid = container_pid(pod).expect("running container has a pid");
        let proc_env = process_env(pid).expect("the container process exists");
        let get = |k: &str| proc_env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert_eq!(get("POD_IP"), Some(ip.clone()));
        assert_eq!(get("POD_NAME"), pod.metadata.name.clone());
        assert_eq!(get("POD_NAMESPACE").as_deref(), Some(ns.name()));
        // Each listens on its own IP, same port: reachable at podIP:8080 with its own name.
        let body = http_get(format!("{ip}:8080"), "/", None)
            .await
            .expect("GET /")
            .body;
        assert_eq!(body, format!("{} {ip}", pod.metadata.name.as_deref().unwrap()));
    }
    let owned: Vec<(String, u32)> = ready
        .iter()
        .map(|p| (p.metadata.uid.clone().unwrap(), container_pid(p).unwrap()))
        .collect();
    let rs = replica_sets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(rs.len(), 1, "one ReplicaSet");
    assert!(
        ready
            .iter()
            .all(|p| p.metadata.owner_references.as_ref().unwrap()[0].uid
                == rs[0].metadata.uid.clone().unwrap()),
        "pods are owned by the ReplicaSet"
    );

    deployments
        .delete("web", &DeleteParams::background())
        .await
        .unwrap();
    eventually("ReplicaSet and pods garbage-collected", SOON, || async {
        let rs = replica_sets.list(&ListParams::default()).await.ok()?;
        let left = pods.list(&ListParams::default()).await.ok()?;
        (rs.items.is_empty() && left.items.is_empty()).then_some(())
    })
    .await;
    for (uid, pid) in owned {
        assert!(!runs_for_pod(pid, &uid), "process {pid} of pod {uid} is gone");
    }
}
