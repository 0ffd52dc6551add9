//! Graceful deletion by the process-kubelet: SIGTERM, grace period, SIGKILL, final delete with a UID
//! precondition, finalizers respected.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use weft_e2e::Env;

use crate::support::{SOON, container_pid, eventually, is_ready, runs_for_pod, testpod};

const FINALIZER: &str = "weft.test/held-by-test";

#[tokio::test]
async fn finalizer_keeps_a_terminated_pod_until_the_test_releases_it() {
    let env = Env::shared().await;
    let ns = env.new_namespace("finalizer").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.admin_client(), &ns);
    let signal_file = env.run_dir().join(format!("{}-signals", ns.name()));
    let mut pod = testpod(
        "held",
        &["sleep"],
        json!([{"name": "SIGNAL_FILE", "value": signal_file.display().to_string()}]),
    );
    pod.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let running = eventually("pod ready", SOON, || async {
        pods.get("held").await.ok().filter(is_ready)
    })
    .await;
    let pid = container_pid(&running).unwrap();
    let uid = running.metadata.uid.clone().unwrap();
    assert!(runs_for_pod(pid, &uid));

    let mark = env.audit_log().mark();
    let out = env
        .kubectl()
        .args(["delete", "pod", "held", "-n", ns.name(), "--wait=false"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deleting = pods.get("held").await.unwrap();
    assert!(
        deleting.metadata.deletion_timestamp.is_some(),
        "kubectl delete sets deletionTimestamp"
    );

    let recorded = eventually("SIGTERM recorded by the process", SOON, || async {
        std::fs::read_to_string(&signal_file)
            .ok()
            .filter(|s| s.contains("SIGTERM"))
    })
    .await;
    assert_eq!(
        recorded.trim(),
        format!("SIGTERM {pid}"),
        "the container process itself got SIGTERM"
    );

    // The kubelet finishes: containers terminated, final delete (grace 0, UID precondition) issued.
    let finished = eventually("kubelet's final delete", SOON, || async {
        let pod = pods.get("held").await.ok()?;
        (pod.metadata.deletion_grace_period_seconds == Some(0)).then_some(pod)
    })
    .await;
    assert!(!runs_for_pod(pid, &uid), "process exited");
    assert_eq!(
        finished.metadata.finalizers.as_deref(),
        Some(&[FINALIZER.to_string()][..]),
        "finalizer untouched"
    );
    let status = finished.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Succeeded"), "exited 0 on SIGTERM");
    let terminated = status.container_statuses.as_ref().unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone();
    assert_eq!(terminated.map(|t| t.exit_code), Some(0));
    let final_delete = env
        .audit_log()
        .wait_for(mark, SOON, |e| {
            e.verb == "delete"
                && e.resource() == "pods"
                && e.namespace() == ns.name()
                && e.user.username == "weft-kubelet"
                && e.stage == "ResponseComplete"
        })
        .await;
    assert!(final_delete.is_some(), "the kubelet issued the final delete");

    // Still there while the finalizer is: the object waits for the test.
    let still = pods
        .get("held")
        .await
        .expect("object stays while a finalizer remains");
    assert_eq!(still.metadata.uid.as_deref(), Some(uid.as_str()));

    let release = json!({"metadata": {"finalizers": null}});
    pods.patch("held", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
    eventually("pod gone after releasing the finalizer", SOON, || async {
        matches!(pods.get_opt("held").await, Ok(None)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn process_ignoring_sigterm_is_killed_after_the_grace_period() {
    let env = Env::shared().await;
    let ns = env.new_namespace("sigkill").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.admin_client(), &ns);
    let mut pod = testpod(
        "stubborn",
        &["sleep"],
        json!([{"name": "IGNORE_SIGTERM", "value": "1"}]),
    );
    pod.spec.as_mut().unwrap().termination_grace_period_seconds = Some(1);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let running = eventually("pod ready", SOON, || async {
        pods.get("stubborn").await.ok().filter(is_ready)
    })
    .await;
    let (pid, uid) = (
        container_pid(&running).unwrap(),
        running.metadata.uid.clone().unwrap(),
    );
    pods.delete("stubborn", &DeleteParams::default()).await.unwrap();
    eventually("pod deleted", SOON, || async {
        matches!(pods.get_opt("stubborn").await, Ok(None)).then_some(())
    })
    .await;
    assert!(!runs_for_pod(pid, &uid), "SIGKILL ended the process");
    let log = std::fs::read_to_string(env.kubelet().log_path()).unwrap();
    let key = format!("{}/stubborn: grace period over: SIGKILL", ns.name());
    assert!(
        log.contains(&key),
        "the kubelet escalated to SIGKILL; its log:\n{log}"
    );
}

#[tokio::test]
async fn force_deleted_pod_process_is_killed() {
    let env = Env::shared().await;
    let ns = env.new_namespace("force").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.admin_client(), &ns);
    pods.create(&PostParams::default(), &testpod("doomed", &["sleep"], json!([])))
        .await
        .unwrap();
    let running = eventually("pod ready", SOON, || async {
        pods.get("doomed").await.ok().filter(is_ready)
    })
    .await;
    let (pid, uid) = (
        container_pid(&running).unwrap(),
        running.metadata.uid.clone().unwrap(),
    );
    let out = env
        .kubectl()
        .args([
            "delete",
            "pod",
            "doomed",
            "-n",
            ns.name(),
            "--force",
            "--grace-period=0",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        matches!(pods.get_opt("doomed").await, Ok(None)),
        "force deletion removes the object at once"
    );
    eventually("process killed", Duration::from_secs(30), || async {
        (!runs_for_pod(pid, &uid)).then_some(())
    })
    .await;
}
