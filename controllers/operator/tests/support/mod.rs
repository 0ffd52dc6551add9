//! Running `weft-operator` as a process under its ServiceAccount with only the shipped RBAC.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::Client;
use kube::api::ObjectMeta;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_e2e::Env;
use weft_e2e::system::{self, OperatorOptions, OperatorProcess};
use weft_framework::exposition::{self, Format, Scrape};
use weft_testkit::{Supervised, TempDir};

pub const WAIT: Duration = Duration::from_secs(60);

/// Installs the checked-in CRDs (the Host CRD among them) and waits until they are served.
pub async fn install_host_crd(client: &Client) {
    system::install_crds(client, WAIT)
        .await
        .expect("install the CRDs");
}

/// Applies the shipped operator RBAC (`deploy/operator/`) with `operator_ns` as the operator namespace,
/// the host-namespace Role in each of `host_namespaces`, bound to each of `service_accounts`.
pub async fn install_rbac(
    client: &Client,
    operator_ns: &str,
    host_namespaces: &[&str],
    service_accounts: &[&str],
) {
    system::install_operator_rbac(client, operator_ns, host_namespaces, service_accounts)
        .await
        .expect("apply the shipped operator RBAC");
}

/// A running `weft-operator` process.
pub struct Operator {
    pub process: Supervised,
    pub addr: SocketAddr,
    pub user: String,
    _dir: TempDir,
}

impl Operator {
    /// Starts the operator as ServiceAccount `sa` of `operator_ns` (token only: no admin rights).
    pub async fn start(
        env: &Env,
        operator_ns: &str,
        sa: &str,
        host_namespaces: &[&str],
        extra: &[&str],
    ) -> Self {
        let dir = TempDir::new("operator").expect("temp dir");
        let mut options = OperatorOptions::new(
            env!("CARGO_BIN_EXE_weft-operator"),
            operator_ns,
            dir.path().join(format!("{sa}.log")),
        );
        options.service_account = sa.to_string();
        options.host_namespaces = host_namespaces.iter().map(|s| s.to_string()).collect();
        options.args = extra.iter().map(|s| s.to_string()).collect();
        options.rust_log = Some("info,weft_framework=debug,weft_controllers=debug".into());
        let OperatorProcess { process, addr, user } = OperatorProcess::start(env, &options, WAIT)
            .await
            .unwrap_or_else(|e| panic!("weft-operator ({sa}) did not become ready: {e}"));
        Self {
            process,
            addr,
            user,
            _dir: dir,
        }
    }

    /// The end of its log.
    pub fn log(&self) -> String {
        self.process.log_tail(16 * 1024)
    }

    /// Its metrics, parsed strictly.
    pub async fn metrics(&self) -> Option<Scrape> {
        let (status, body) = http_get(self.addr, "/metrics").await.ok()?;
        (status == 200).then(|| exposition::parse(&body, Format::Prometheus).expect("a valid scrape"))
    }

    /// `leader_election_master_status` for `lease`.
    pub async fn leads(&self, lease: &str) -> Option<bool> {
        self.metrics()
            .await?
            .value("leader_election_master_status", &[("name", lease)])
            .map(|v| v == 1.0)
    }
}

/// A raw HTTP GET; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((
        head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0),
        body.to_string(),
    ))
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A pod of the harness's test image; `host_group` makes it a host pod.
pub fn pod(name: &str, host_group: Option<&str>) -> Pod {
    let labels = host_group.map(|g| {
        [(
            weft_crds::names::labels::HOST_POD_GROUP.to_string(),
            g.to_string(),
        )]
        .into()
    });
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels,
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "host".into(),
                image: Some(weft_e2e::TESTPOD_IMAGE.into()),
                ..Default::default()
            }],
            termination_grace_period_seconds: Some(5),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Whether `pod` carries the pod-host finalizer.
pub fn has_pod_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == weft_crds::names::finalizers::POD_HOST)
}
