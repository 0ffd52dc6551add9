//! Pure: the pod status the kubelet reports, from what it knows about the pod's processes.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::restart::RestartPolicy;

/// How a container run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Exit code (128 + signal when killed by a signal, as container runtimes report it).
    pub exit_code: i32,
    /// The signal, if it was killed by one.
    pub signal: Option<i32>,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
    /// The process id it had.
    pub pid: u32,
}

impl Exit {
    /// `Completed` for exit code 0, `Error` otherwise (the container runtime's reasons).
    pub fn reason(&self) -> &'static str {
        if self.exit_code == 0 { "Completed" } else { "Error" }
    }
}

/// What a container is doing now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Not running: not started yet, or waiting for a restart (`CrashLoopBackOff`), or cannot start.
    Waiting {
        /// Machine-readable reason (`ContainerCreating`, `CrashLoopBackOff`, `CreateContainerConfigError`, …).
        reason: String,
        /// Human-readable details.
        message: Option<String>,
    },
    /// Running as process `pid`.
    Running {
        /// Process id.
        pid: u32,
        /// Start time.
        started_at: Timestamp,
        /// Readiness (probe result, or true when it has no readiness probe).
        ready: bool,
    },
    /// Exited and will not be restarted.
    Terminated(Exit),
}

/// One container as the kubelet sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerView {
    /// Container name.
    pub name: String,
    /// Image as in the spec.
    pub image: String,
    /// The local program standing in for the image.
    pub image_id: String,
    /// Current state.
    pub state: RunState,
    /// The previous run's end.
    pub last_exit: Option<Exit>,
    /// How many times it was restarted.
    pub restart_count: i32,
}

/// The pod as the kubelet sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// The pod's loopback IP.
    pub pod_ip: Ipv4Addr,
    /// The node's IP.
    pub host_ip: Ipv4Addr,
    /// When the kubelet first started working on the pod.
    pub start_time: Timestamp,
    /// Containers, in spec order.
    pub containers: Vec<ContainerView>,
    /// The pod was deleted and its containers stopped: its phase is final.
    pub terminated_by_deletion: bool,
}

/// The conditions the kubelet owns; others (readiness gates, custom ones) are left alone.
pub const KUBELET_CONDITIONS: [&str; 5] = [
    "PodReadyToStartContainers",
    "Initialized",
    "ContainersReady",
    "Ready",
    "PodScheduled",
];

/// The pod phase, by the kubelet's rules: `Pending` while a container never started, `Running` while
/// any runs or will restart, then `Succeeded`/`Failed` by exit codes (a deleted pod's containers are
/// final even under `restartPolicy: Always`).
pub fn phase(view: &PodView, policy: RestartPolicy) -> &'static str {
    let mut running = 0;
    let mut waiting = 0;
    let mut stopped = 0;
    let mut succeeded = 0;
    for c in &view.containers {
        match &c.state {
            RunState::Running { .. } => running += 1,
            RunState::Terminated(exit) => {
                stopped += 1;
                if exit.exit_code == 0 {
                    succeeded += 1;
                }
            }
            RunState::Waiting { .. } if c.last_exit.is_some() => {
                stopped += 1;
                if c.last_exit.as_ref().is_some_and(|e| e.exit_code == 0) {
                    succeeded += 1;
                }
            }
            RunState::Waiting { .. } => waiting += 1,
        }
    }
    if view.terminated_by_deletion && running == 0 {
        return if stopped > 0 && stopped == succeeded && waiting == 0 {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    match policy {
        RestartPolicy::Always => "Running",
        RestartPolicy::OnFailure if stopped == succeeded => "Succeeded",
        RestartPolicy::OnFailure => "Running",
        RestartPolicy::Never if stopped == succeeded => "Succeeded",
        RestartPolicy::Never => "Failed",
    }
}

fn time(ts: Timestamp) -> Time {
    Time(ts)
}

fn container_status(c: &ContainerView) -> ContainerStatus {
    let terminated = |exit: &Exit| ContainerStateTerminated {
        exit_code: exit.exit_code,
        signal: exit.signal,
        reason: Some(exit.reason().to_string()),
        started_at: Some(time(exit.started_at)),
        finished_at: Some(time(exit.finished_at)),
        container_id: Some(format!("process://{}", exit.pid)),
        ..Default::default()
    };
    let (state, ready, started, container_id) = match &c.state {
        RunState::Waiting { reason, message } => (
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: message.clone(),
                }),
                ..Default::default()
            },
            false,
            false,
            c.last_exit.as_ref().map(|e| format!("process://{}", e.pid)),
        ),
        RunState::Running {
            pid,
            started_at,
            ready,
        } => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(time(*started_at)),
                }),
                ..Default::default()
            },
            *ready,
            true,
            Some(format!("process://{pid}")),
        ),
        RunState::Terminated(exit) => (
            ContainerState {
                terminated: Some(terminated(exit)),
                ..Default::default()
            },
            false,
            false,
            Some(format!("process://{}", exit.pid)),
        ),
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: c.image_id.clone(),
        container_id,
        ready,
        started: Some(started),
        restart_count: c.restart_count,
        state: Some(state),
        last_state: Some(
            c.last_exit
                .as_ref()
                .map(|e| ContainerState {
                    terminated: Some(terminated(e)),
                    ..Default::default()
                })
                .unwrap_or_default(),
        ),
        ..Default::default()
    }
}

fn condition(
    pod: &Pod,
    previous: &[PodCondition],
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let previous = previous.iter().find(|c| c.type_ == type_);
    let since = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone().unwrap_or(time(now)),
        _ => time(now),
    };
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.map(str::to_string),
        message,
        last_transition_time: Some(since),
        observed_generation: pod.metadata.generation,
        ..Default::default()
    }
}

/// The status to report for `pod`. Conditions keep their `lastTransitionTime` from `previous` (the
/// last reported ones) while their status is unchanged; readiness gates (`spec.readinessGates`) must be
/// `True` in the pod's current conditions for `Ready`. The result is meant for a strategic-merge patch
/// of `pods/status` (conditions merge by type).
pub fn build(pod: &Pod, view: &PodView, previous: &[PodCondition], now: Timestamp) -> PodStatus {
    let policy = RestartPolicy::parse(pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()));
    let phase = phase(view, policy);
    let terminal = phase == "Succeeded" || phase == "Failed";
    let unready: Vec<&str> = view
        .containers
        .iter()
        .filter(|c| !matches!(c.state, RunState::Running { ready: true, .. }))
        .map(|c| c.name.as_str())
        .collect();
    let containers_ready = unready.is_empty() && !view.containers.is_empty() && !terminal;
    let current = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    let gates_missing: Vec<String> = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .into_iter()
        .flatten()
        .filter(|gate| {
            !current
                .into_iter()
                .flatten()
                .any(|c| c.type_ == gate.condition_type && c.status == "True")
        })
        .map(|gate| gate.condition_type.clone())
        .collect();
    let unready_message =
        (!unready.is_empty()).then(|| format!("containers with unready status: [{}]", unready.join(" ")));
    let (containers_reason, ready_reason, ready_message) = if terminal {
        (Some("PodCompleted"), Some("PodCompleted"), None)
    } else if !containers_ready {
        (
            Some("ContainersNotReady"),
            Some("ContainersNotReady"),
            unready_message.clone(),
        )
    } else if !gates_missing.is_empty() {
        (
            None,
            Some("ReadinessGatesNotReady"),
            Some(format!(
                "corresponding condition of pod readiness gate \"{}\" does not exist.",
                gates_missing[0]
            )),
        )
    } else {
        (None, None, None)
    };
    let any_started = view
        .containers
        .iter()
        .any(|c| !matches!(c.state, RunState::Waiting { .. }) || c.last_exit.is_some());
    let containers_message = unready_message.filter(|_| !containers_ready && !terminal);
    let ready = containers_ready && gates_missing.is_empty();
    let conditions = vec![
        condition(
            pod,
            previous,
            "PodReadyToStartContainers",
            !terminal || any_started,
            None,
            None,
            now,
        ),
        condition(pod, previous, "Initialized", true, None, None, now),
        condition(
            pod,
            previous,
            "ContainersReady",
            containers_ready,
            containers_reason,
            containers_message,
            now,
        ),
        condition(pod, previous, "Ready", ready, ready_reason, ready_message, now),
        condition(pod, previous, "PodScheduled", true, None, None, now),
    ];
    let pod_ip = view.pod_ip.to_string();
    let host_ip = view.host_ip.to_string();
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(host_ip.clone()),
        host_ips: Some(vec![HostIP { ip: host_ip }]),
        pod_ip: Some(pod_ip.clone()),
        pod_ips: Some(vec![PodIP { ip: pod_ip }]),
        start_time: Some(time(view.start_time)),
        container_statuses: Some(view.containers.iter().map(container_status).collect()),
        observed_generation: pod.metadata.generation,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn pod(extra_spec: serde_json::Value, conditions: serde_json::Value) -> Pod {
        let mut spec = json!({"containers": [{"name": "a", "image": "img"}]});
        spec.as_object_mut()
            .unwrap()
            .extend(extra_spec.as_object().unwrap().clone());
        serde_json::from_value(json!({"metadata": {"name": "p", "generation": 1}, "spec": spec, "status": {"conditions": conditions}}))
            .unwrap()
    }

    fn view(state: RunState, last_exit: Option<Exit>) -> PodView {
        PodView {
            pod_ip: Ipv4Addr::new(127, 0, 0, 9),
            host_ip: Ipv4Addr::LOCALHOST,
            start_time: ts(0),
            containers: vec![ContainerView {
                name: "a".into(),
                image: "img".into(),
                image_id: "local:///bin/x".into(),
                state,
                last_exit,
                restart_count: 0,
            }],
            terminated_by_deletion: false,
        }
    }

    fn exit(code: i32) -> Exit {
        Exit {
            exit_code: code,
            signal: None,
            started_at: ts(1),
            finished_at: ts(2),
            pid: 42,
        }
    }

    fn prev(p: &Pod) -> Vec<PodCondition> {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
    }

    fn cond<'a>(status: &'a PodStatus, t: &str) -> &'a PodCondition {
        status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    #[test]
    fn running_ready_container_makes_a_ready_running_pod_with_its_ips() {
        let p = pod(json!({}), json!([]));
        let s = build(
            &p,
            &view(
                RunState::Running {
                    pid: 7,
                    started_at: ts(1),
                    ready: true,
                },
                None,
            ),
            &[],
            ts(3),
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("127.0.0.9"));
        assert_eq!(s.pod_ips.as_ref().unwrap()[0].ip, "127.0.0.9");
        assert_eq!(s.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "ContainersReady").status, "True");
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert!(cs.ready);
        assert_eq!(cs.started, Some(true));
        assert_eq!(cs.container_id.as_deref(), Some("process://7"));
        assert!(cs.state.as_ref().unwrap().running.is_some());
    }

    #[test]
    fn unready_container_reports_which_one() {
        let p = pod(json!({}), json!([]));
        let s = build(
            &p,
            &view(
                RunState::Running {
                    pid: 7,
                    started_at: ts(1),
                    ready: false,
                },
                None,
            ),
            &[],
            ts(3),
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let ready = cond(&s, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [a]")
        );
    }

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let p = pod(
            json!({}),
            json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2027-01-15T08:00:00Z"}]),
        );
        let running = view(
            RunState::Running {
                pid: 7,
                started_at: ts(1),
                ready: true,
            },
            None,
        );
        let s = build(&p, &running, &prev(&p), ts(100));
        assert_eq!(
            cond(&s, "Ready")
                .last_transition_time
                .as_ref()
                .unwrap()
                .0
                .to_string(),
            "2027-01-15T08:00:00Z"
        );
        let unready = view(
            RunState::Running {
                pid: 7,
                started_at: ts(1),
                ready: false,
            },
            None,
        );
        let s = build(&p, &unready, &prev(&p), ts(100));
        assert_eq!(
            cond(&s, "Ready").last_transition_time.as_ref().unwrap().0,
            ts(100)
        );
    }

    #[test]
    fn readiness_gates_must_be_true() {
        let running = view(
            RunState::Running {
                pid: 7,
                started_at: ts(1),
                ready: true,
            },
            None,
        );
        let gated = pod(
            json!({"readinessGates": [{"conditionType": "example.com/lb"}]}),
            json!([]),
        );
        let s = build(&gated, &running, &prev(&gated), ts(3));
        assert_eq!(cond(&s, "ContainersReady").status, "True");
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(
            cond(&s, "Ready").reason.as_deref(),
            Some("ReadinessGatesNotReady")
        );
        let open = pod(
            json!({"readinessGates": [{"conditionType": "example.com/lb"}]}),
            json!([{"type": "example.com/lb", "status": "True"}]),
        );
        assert_eq!(
            cond(&build(&open, &running, &prev(&open), ts(3)), "Ready").status,
            "True"
        );
    }

    #[test]
    fn phases_follow_restart_policy_and_exit_codes() {
        let backoff = RunState::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: None,
        };
        let creating = RunState::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        };
        assert_eq!(phase(&view(creating, None), RestartPolicy::Always), "Pending");
        assert_eq!(
            phase(&view(backoff.clone(), Some(exit(1))), RestartPolicy::Always),
            "Running"
        );
        assert_eq!(
            phase(&view(backoff, Some(exit(1))), RestartPolicy::OnFailure),
            "Running"
        );
        assert_eq!(
            phase(
                &view(RunState::Terminated(exit(0)), None),
                RestartPolicy::OnFailure
            ),
            "Succeeded"
        );
        assert_eq!(
            phase(&view(RunState::Terminated(exit(0)), None), RestartPolicy::Never),
            "Succeeded"
        );
        assert_eq!(
            phase(&view(RunState::Terminated(exit(2)), None), RestartPolicy::Never),
            "Failed"
        );
        let mut deleted = view(RunState::Terminated(exit(143)), None);
        deleted.terminated_by_deletion = true;
        assert_eq!(phase(&deleted, RestartPolicy::Always), "Failed");
        let mut clean = view(RunState::Terminated(exit(0)), None);
        clean.terminated_by_deletion = true;
        assert_eq!(phase(&clean, RestartPolicy::Always), "Succeeded");
    }

    #[test]
    fn restarted_container_reports_its_last_exit_and_count() {
        let mut v = view(
            RunState::Running {
                pid: 8,
                started_at: ts(5),
                ready: true,
            },
            Some(exit(3)),
        );
        v.containers[0].restart_count = 2;
        let s = build(&pod(json!({}), json!([])), &v, &[], ts(6));
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.restart_count, 2);
        let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(last.exit_code, 3);
        assert_eq!(last.reason.as_deref(), Some("Error"));
    }

    #[test]
    fn terminal_pod_is_not_ready() {
        let never = pod(json!({"restartPolicy": "Never"}), json!([]));
        let s = build(&never, &view(RunState::Terminated(exit(0)), None), &[], ts(3));
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
    }
}
