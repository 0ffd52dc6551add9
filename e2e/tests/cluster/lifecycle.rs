//! `weft-dev` runs the whole system (control plane, NATS, kubelet, operator, host pods), serves health and
//! metrics, and leaves nothing running when it is stopped (SIGTERM) or killed (SIGKILL).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;
use weft_e2e::{Coordinates, Env};

use crate::support::{SOON, container_pid, eventually, is_ready, testpod};
use weft_e2e::testing::http_get;

/// A `weft-dev` child process, killed if the test fails before it is stopped (its processes die
/// with it).
struct WeftDev(Child);

impl std::ops::Deref for WeftDev {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for WeftDev {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for WeftDev {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `weft-dev` (no command: the whole system, serving until signalled) and returns it with its
/// coordinates and the address of its health and metrics endpoints.
fn start_weft_dev() -> (WeftDev, Coordinates, String) {
    let mut child = WeftDev(
        Command::new(env!("CARGO_BIN_EXE_weft-dev"))
            .env_remove("WEFT_E2E_ENV")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weft-dev"),
    );
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let errors = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    std::thread::spawn({
        let errors = errors.clone();
        move || {
            for line in stderr.lines().map_while(Result::ok) {
                let mut errors = errors.lock().unwrap();
                errors.push_str(&line);
                errors.push('\n');
            }
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut health = String::new();
        for line in stdout.lines().map_while(Result::ok) {
            // "  Health      http://<addr>/healthz  /readyz  /metrics"
            if let Some(rest) = line
                .strip_prefix("  Health")
                .and_then(|l| l.split("http://").nth(1))
            {
                health = rest.split('/').next().unwrap_or_default().to_string();
            }
            // "  Tests       WEFT_E2E_ENV=<path> cargo test …"
            if let Some(rest) = line.split("WEFT_E2E_ENV=").nth(1) {
                let path = PathBuf::from(rest.split_whitespace().next().unwrap_or_default());
                let _ = tx.send((path, health.clone()));
            }
        }
    });
    let (env_json, health) = rx.recv_timeout(Duration::from_secs(180)).unwrap_or_else(|e| {
        panic!(
            "weft-dev did not print its coordinates ({e}); its stderr:\n{}",
            errors.lock().unwrap()
        )
    });
    (child, Coordinates::load(&env_json).unwrap(), health)
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Starts a pod in the environment and returns every process id the environment owns: the
/// components (the operator among them), the host pods' and the new pod's.
async fn all_pids(coords: &Coordinates) -> Vec<u32> {
    assert!(coords.pids.contains_key("weft-operator"), "{:?}", coords.pids);
    let env = Env::from_coordinates(coords.clone()).await.unwrap();
    let hosts: Api<Pod> = Api::namespaced(env.admin_client(), weft_e2e::system::OPERATOR_NAMESPACE);
    let host_pods = hosts
        .list(&ListParams::default().labels("wasmcloud.com/hostgroup=default"))
        .await
        .unwrap()
        .items;
    assert_eq!(host_pods.len(), 2, "the default host group runs 2 hosts");
    assert!(
        host_pods.iter().all(is_ready),
        "host pods are Ready when weft-dev reports ready"
    );
    let pods: Api<Pod> = Api::namespaced(env.admin_client(), "default");
    pods.create(&PostParams::default(), &testpod("canary", &["sleep"], json!([])))
        .await
        .unwrap();
    let pod = eventually("canary ready", SOON, || async {
        pods.get("canary").await.ok().filter(is_ready)
    })
    .await;
    let mut pids: Vec<u32> = coords.pids.values().copied().collect();
    pids.push(container_pid(&pod).unwrap());
    pids.extend(
        host_pods
            .iter()
            .map(|p| container_pid(p).expect("a running host")),
    );
    assert!(pids.iter().all(|&p| alive(p)), "all running: {pids:?}");
    pids
}

#[tokio::test]
async fn weft_dev_reports_health_and_leaves_nothing_running_after_sigterm_or_sigkill() {
    // Graceful: SIGTERM stops every process and removes the run directory.
    let (mut dev, coords, health) = start_weft_dev();
    let pids = all_pids(&coords).await;
    let get = |path| http_get(health.clone(), path, None);
    assert_eq!(get("/healthz").await.expect("GET /healthz").body, "ok\n");
    assert_eq!(get("/readyz").await.expect("GET /readyz").body, "ready\n");
    let metrics = get("/metrics").await.expect("GET /metrics").body;
    for line in [
        "weft_dev_component_up{component=\"kube-apiserver\"} 1",
        "weft_dev_component_up{component=\"weft-operator\"} 1",
        "weft_dev_operator_restarts_total 0",
        "weft_kubelet_container_starts_total 3",
        "# EOF",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line:?} in /metrics:\n{metrics}"
        );
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(dev.id() as i32, libc::SIGTERM) };
    let status = dev.wait().unwrap();
    assert!(status.success(), "weft-dev exits 0 on SIGTERM: {status}");
    let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "still running after SIGTERM: {left:?}");
    assert!(!coords.run_dir.exists(), "run directory removed");

    // Crash: SIGKILL gives weft-dev no chance to clean up; its children die with it anyway.
    let (mut dev, coords, _) = start_weft_dev();
    let pids = all_pids(&coords).await;
    dev.kill().unwrap();
    dev.wait().unwrap();
    eventually("every process of the killed weft-dev gone", SOON, || async {
        pids.iter().all(|&p| !alive(p)).then_some(())
    })
    .await;
    let _ = std::fs::remove_dir_all(&coords.run_dir);
}
