//! The kubelet's Node object and its Lease.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::Shared;
use crate::Error;
use crate::controlplane::KUBERNETES_VERSION;

const FIELD_MANAGER: &str = "weft-kubelet";

/// The node's labels.
pub(super) fn labels(node_name: &str) -> BTreeMap<String, String> {
    [
        ("kubernetes.io/hostname", node_name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch()),
        ("node.kubernetes.io/instance-type", "weft-process"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The machine's architecture as Kubernetes names it.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// CPU count and memory bytes of this machine.
pub(super) fn machine_resources() -> (u64, u64) {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(1 << 30);
    (cpus, memory)
}

/// Creates the Node (if needed), reports it Ready with its capacity, and removes the `not-ready`
/// taint that admission adds to new nodes (the node-lifecycle controller, which normally does that,
/// is disabled).
pub(super) async fn register(shared: &Arc<Shared>) -> Result<Node, Error> {
    let name = &shared.config.node_name;
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let mut node = Node::default();
    node.metadata.name = Some(name.clone());
    node.metadata.labels = Some(labels(name));
    node.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
        pod_cidr: Some(shared.pod_cidr.clone()),
        pod_cidrs: Some(vec![shared.pod_cidr.clone()]),
        ..Default::default()
    });
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => {
            return Err(Error::Kube {
                what: format!("create node {name}"),
                source: e,
            });
        }
    }
    let now = Timestamp::now().to_string();
    let capacity = json!({
        "cpu": shared.node_cpus.to_string(),
        "memory": format!("{}Ki", shared.node_memory / 1024),
        "pods": "1000",
        "ephemeral-storage": "100Gi",
    });
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let host_ip = shared.config.host_ip.to_string();
    let status = json!({"status": {
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "weft process-kubelet is posting ready status"),
        ],
        "addresses": [{"type": "InternalIP", "address": host_ip}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "architecture": arch(),
            "bootID": "",
            "containerRuntimeVersion": "weft-process://0.1.0",
            "kernelVersion": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            "kubeProxyVersion": "",
            "kubeletVersion": KUBERNETES_VERSION,
            "machineID": "",
            "operatingSystem": "linux",
            "osImage": "weft process-kubelet",
            "systemUUID": "",
        },
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(Error::kube(format!("report node {name} status")))?;
    let node = nodes
        .get(name)
        .await
        .map_err(Error::kube(format!("get node {name}")))?;
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let kept: Vec<_> = taints
        .iter()
        .filter(|t| t.key != "node.kubernetes.io/not-ready")
        .cloned()
        .collect();
    if kept.len() != taints.len() {
        let patch =
            json!({"metadata": {"resourceVersion": node.resource_version()}, "spec": {"taints": kept}});
        nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube(format!("untaint node {name}")))?;
    }
    nodes
        .get(name)
        .await
        .map_err(Error::kube(format!("get node {name}")))
}

/// Renews `kube-node-lease/<node>` forever (the node heartbeat).
pub(super) async fn renew_lease(shared: Arc<Shared>, node: Node) {
    let name = shared.config.node_name.clone();
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), "kube-node-lease");
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: name.clone(),
        uid: node.uid().unwrap_or_default(),
        ..Default::default()
    };
    let mut interval = tokio::time::interval(shared.config.lease_renew_interval);
    loop {
        interval.tick().await;
        let mut lease = Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(name.clone()),
                lease_duration_seconds: Some(40),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..Default::default()
            }),
            ..Default::default()
        };
        lease.metadata.name = Some(name.clone());
        lease.metadata.owner_references = Some(vec![owner.clone()]);
        let mut value = serde_json::to_value(&lease).expect("a lease serializes");
        value["apiVersion"] = "coordination.k8s.io/v1".into();
        value["kind"] = "Lease".into();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        if let Err(e) = leases.patch(&name, &params, &Patch::Apply(&value)).await {
            shared
                .log
                .line(&format!("node/{name}"), format!("lease renewal failed: {e}"));
        }
    }
}
