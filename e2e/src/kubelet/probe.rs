//! Readiness and liveness probes: parsing and threshold logic (pure), and running one probe (I/O).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    /// HTTP GET; success is a status in 200..400.
    Http {
        /// Host to connect to (default: the pod IP).
        host: Option<String>,
        /// Port.
        port: u16,
        /// Path.
        path: String,
        /// Extra request headers.
        headers: Vec<(String, String)>,
    },
    /// TCP connect.
    Tcp {
        /// Host (default: the pod IP).
        host: Option<String>,
        /// Port.
        port: u16,
    },
    /// Run a command (locally, with the container's environment); success is exit code 0.
    Exec {
        /// The argv.
        command: Vec<String>,
    },
    /// Something this kubelet cannot run; the probe always fails with this message.
    Unsupported(String),
}

/// A parsed probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// The check.
    pub action: ProbeAction,
    /// Delay after the container starts.
    pub initial_delay: Duration,
    /// Interval between checks.
    pub period: Duration,
    /// Timeout of one check.
    pub timeout: Duration,
    /// Consecutive successes to become ready/healthy.
    pub success_threshold: u32,
    /// Consecutive failures to become unready/unhealthy.
    pub failure_threshold: u32,
}

fn seconds(value: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(value.map(|v| v.max(0) as u64).unwrap_or(default))
}

fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("port name {name:?} not found in container {}", container.name)),
    }
}

/// Parses a probe of `container` (named ports resolve against its `ports`).
pub fn parse(probe: &Probe, container: &Container) -> ProbeSpec {
    let action = if let Some(http) = &probe.http_get {
        match resolve_port(&http.port, container) {
            Ok(_)
                if http
                    .scheme
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case("https")) =>
            {
                ProbeAction::Unsupported("HTTPS probes are not supported by the process-kubelet".into())
            }
            Ok(port) => ProbeAction::Http {
                host: http.host.clone().filter(|h| !h.is_empty()),
                port,
                path: http
                    .path
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "/".into()),
                headers: http
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            },
            Err(e) => ProbeAction::Unsupported(e),
        }
    } else if let Some(tcp) = &probe.tcp_socket {
        match resolve_port(&tcp.port, container) {
            Ok(port) => ProbeAction::Tcp {
                host: tcp.host.clone().filter(|h| !h.is_empty()),
                port,
            },
            Err(e) => ProbeAction::Unsupported(e),
        }
    } else if let Some(exec) = &probe.exec {
        ProbeAction::Exec {
            command: exec.command.clone().unwrap_or_default(),
        }
    } else if probe.grpc.is_some() {
        ProbeAction::Unsupported("gRPC probes are not supported by the process-kubelet".into())
    } else {
        ProbeAction::Unsupported("probe has no handler".into())
    };
    ProbeSpec {
        action,
        initial_delay: seconds(probe.initial_delay_seconds, 0),
        period: seconds(probe.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
        success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
        failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
    }
}

/// Pure threshold logic: turns individual results into a state that flips only after
/// `success_threshold` consecutive successes or `failure_threshold` consecutive failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTracker {
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    passing: bool,
}

impl ProbeTracker {
    /// A tracker starting in state `passing` (false for readiness, true for liveness).
    pub fn new(spec: &ProbeSpec, passing: bool) -> Self {
        Self {
            success_threshold: spec.success_threshold,
            failure_threshold: spec.failure_threshold,
            successes: 0,
            failures: 0,
            passing,
        }
    }

    /// Records one result; returns the state afterwards.
    pub fn record(&mut self, success: bool) -> bool {
        if success {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= self.success_threshold {
                self.passing = true;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= self.failure_threshold {
                self.passing = false;
            }
        }
        self.passing
    }

    /// The current state.
    pub fn passing(&self) -> bool {
        self.passing
    }
}

/// Runs one check against a container at `pod_ip` with environment `env`. `Err` carries why it failed.
pub async fn run(
    action: &ProbeAction,
    pod_ip: Ipv4Addr,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<(), String> {
    match action {
        ProbeAction::Http {
            host,
            port,
            path,
            headers,
        } => {
            let addr = socket_addr(host.as_deref(), pod_ip, *port).await?;
            let host_header = format!("{}:{port}", host.as_deref().unwrap_or(&pod_ip.to_string()));
            let code = crate::net::http_get_status(addr, &host_header, path, headers, timeout).await?;
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            }
        }
        ProbeAction::Tcp { host, port } => {
            let addr = socket_addr(host.as_deref(), pod_ip, *port).await?;
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("dial tcp {addr}: {e}")),
                Err(_) => Err(format!("dial tcp {addr}: timeout")),
            }
        }
        ProbeAction::Exec { command } => {
            let Some((program, args)) = command.split_first() else {
                return Err("empty exec command".into());
            };
            let mut cmd = Command::new(program);
            cmd.args(args)
                .env_clear()
                .envs(env.iter().cloned())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            tokio::task::spawn_blocking(move || exec_with_timeout(cmd, timeout))
                .await
                .map_err(|e| format!("exec probe task: {e}"))?
        }
        ProbeAction::Unsupported(why) => Err(why.clone()),
    }
}

async fn socket_addr(host: Option<&str>, pod_ip: Ipv4Addr, port: u16) -> Result<SocketAddr, String> {
    match host {
        None => Ok(SocketAddr::from((pod_ip, port))),
        Some(host) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("resolve {host}: no address")),
    }
}

fn exec_with_timeout(cmd: Command, timeout: Duration) -> Result<(), String> {
    let mut child = weft_testkit::owned::spawn(cmd).map_err(|e| format!("exec: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match weft_testkit::owned::try_wait(&mut child) {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("command exited with {status}")),
            Ok(None) if Instant::now() >= deadline => {
                weft_testkit::owned::signal_group(child.id(), libc::SIGKILL);
                let _ = weft_testkit::owned::wait(&mut child);
                return Err(format!("command timed out after {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("exec wait: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container() -> Container {
        serde_json::from_value(json!({"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}))
            .unwrap()
    }

    fn probe(v: serde_json::Value) -> Probe {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn parses_http_with_named_port_and_defaults() {
        let spec = parse(
            &probe(json!({"httpGet": {"port": "http", "path": "/readyz"}})),
            &container(),
        );
        assert_eq!(
            spec.action,
            ProbeAction::Http {
                host: None,
                port: 8080,
                path: "/readyz".into(),
                headers: vec![]
            }
        );
        assert_eq!(spec.period, Duration::from_secs(10));
        assert_eq!(spec.timeout, Duration::from_secs(1));
        assert_eq!((spec.success_threshold, spec.failure_threshold), (1, 3));
    }

    #[test]
    fn parses_tcp_exec_and_reports_unsupported_ones() {
        let tcp = parse(
            &probe(json!({"tcpSocket": {"port": 4222}, "periodSeconds": 2})),
            &container(),
        );
        assert_eq!(
            tcp.action,
            ProbeAction::Tcp {
                host: None,
                port: 4222
            }
        );
        assert_eq!(tcp.period, Duration::from_secs(2));
        let exec = parse(&probe(json!({"exec": {"command": ["true"]}})), &container());
        assert_eq!(
            exec.action,
            ProbeAction::Exec {
                command: vec!["true".into()]
            }
        );
        let missing = parse(&probe(json!({"httpGet": {"port": "metrics"}})), &container());
        assert!(matches!(missing.action, ProbeAction::Unsupported(m) if m.contains("metrics")));
        let grpc = parse(&probe(json!({"grpc": {"port": 1}})), &container());
        assert!(matches!(grpc.action, ProbeAction::Unsupported(_)));
    }

    #[test]
    fn tracker_flips_only_after_thresholds() {
        let spec = parse(
            &probe(json!({"tcpSocket": {"port": 1}, "successThreshold": 2, "failureThreshold": 2})),
            &container(),
        );
        let mut t = ProbeTracker::new(&spec, false);
        assert!(!t.record(true));
        assert!(t.record(true), "two successes");
        assert!(t.record(false), "one failure is tolerated");
        assert!(t.record(true));
        assert!(t.record(false));
        assert!(!t.record(false), "two failures in a row");
    }

    #[tokio::test]
    async fn tcp_and_exec_probes_run_for_real() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ok = run(
            &ProbeAction::Tcp { host: None, port },
            Ipv4Addr::LOCALHOST,
            &[],
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(ok, Ok(()));
        drop(listener);
        let closed = run(
            &ProbeAction::Tcp { host: None, port },
            Ipv4Addr::LOCALHOST,
            &[],
            Duration::from_secs(1),
        )
        .await;
        assert!(closed.is_err());
        let env = vec![("PATH".to_string(), super::super::spec::DEFAULT_PATH.to_string())];
        let exec = |cmd: &str| ProbeAction::Exec {
            command: vec![cmd.to_string()],
        };
        let ok = run(&exec("true"), Ipv4Addr::LOCALHOST, &env, Duration::from_secs(5)).await;
        assert_eq!(ok, Ok(()));
        assert!(
            run(&exec("false"), Ipv4Addr::LOCALHOST, &env, Duration::from_secs(5))
                .await
                .is_err()
        );
    }
}
