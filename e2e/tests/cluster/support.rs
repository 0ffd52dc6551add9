//! Helpers shared by the end-to-end tests.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
pub use weft_e2e::testing::{container_pid, eventually};

/// The deadline for things the environment does in well under a second when healthy.
pub const SOON: Duration = Duration::from_secs(60);

/// A pod running the built-in test image with the downward-API variables the tests inspect.
pub fn testpod(name: &str, args: &[&str], extra_env: serde_json::Value) -> Pod {
    let mut env = json!([
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
    ]);
    env.as_array_mut()
        .unwrap()
        .extend(extra_env.as_array().cloned().unwrap_or_default());
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 10,
            "containers": [{"name": "main", "image": weft_e2e::TESTPOD_IMAGE, "args": args, "env": env}],
        },
    }))
    .unwrap()
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    condition(pod, "Ready").as_deref() == Some("True")
}

/// The status of a pod condition.
pub fn condition(pod: &Pod, type_: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

/// The environment of a live process (`KEY=VALUE` pairs), if it runs.
pub fn process_env(pid: u32) -> Option<Vec<(String, String)>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter_map(|kv| {
                std::str::from_utf8(kv)
                    .ok()?
                    .split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect(),
    )
}

/// Whether `pid` is a live (not zombie) process that belongs to pod `uid` (its `POD_UID`).
pub fn runs_for_pod(pid: u32, uid: &str) -> bool {
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(true);
    !zombie && process_env(pid).is_some_and(|env| env.iter().any(|(k, v)| k == "POD_UID" && v == uid))
}
