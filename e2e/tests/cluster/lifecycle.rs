//! `weft-dev` serves health and metrics, and leaves nothing running when it is stopped (SIGTERM) or
//! killed (SIGKILL).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use weft_e2e::{Coordinates, Env};

use crate::support::{SOON, container_pid, eventually, is_ready, testpod};
use crate::workloads::http_get_body;

/// Starts `weft-dev` (no command: it serves until signalled) and returns it with its coordinates and
/// the address of its health and metrics endpoints.
fn start_weft_dev() -> (Child, Coordinates, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft-dev"))
        .env_remove("WEFT_E2E_ENV")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn weft-dev");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut health = String::new();
        for line in stdout.lines().map_while(Result::ok) {
            // "  Health      http://<addr>/healthz  /readyz  /metrics"
            if let Some(rest) = line.split("http://").nth(1) {
                health = rest.split('/').next().unwrap_or_default().to_string();
            }
            // "  Tests       WEFT_E2E_ENV=<path> cargo test …"
            if let Some(rest) = line.split("WEFT_E2E_ENV=").nth(1) {
                let path = PathBuf::from(rest.split_whitespace().next().unwrap_or_default());
                let _ = tx.send((path, health.clone()));
            }
        }
    });
    let (env_json, health) = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("weft-dev printed its coordinates");
    (child, Coordinates::load(&env_json).unwrap(), health)
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Starts a pod in the environment and returns every process id the environment owns.
async fn all_pids(coords: &Coordinates) -> Vec<u32> {
    let env = Env::from_coordinates(coords.clone()).await.unwrap();
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
    assert!(pids.iter().all(|&p| alive(p)), "all running: {pids:?}");
    pids
}

#[tokio::test]
async fn weft_dev_reports_health_and_leaves_nothing_running_after_sigterm_or_sigkill() {
    // Graceful: SIGTERM stops every process and removes the run directory.
    let (mut dev, coords, health) = start_weft_dev();
    let pids = all_pids(&coords).await;
    assert_eq!(http_get_body(&health, "/healthz").await, "ok\n");
    assert_eq!(http_get_body(&health, "/readyz").await, "ready\n");
    let metrics = http_get_body(&health, "/metrics").await;
    for line in [
        "weft_dev_component_up{component=\"kube-apiserver\"} 1",
        "weft_kubelet_container_starts_total 1",
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
