//! `weft-gateway` on the environment: its shipped RBAC (`deploy/gateway/`) and the gateway as a local
//! process authenticated with only a token of its ServiceAccount.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use kube::Client;
use weft_testkit::Supervised;

use super::manifests::{documents, source_file};
use super::operator::apply_rbac;
use crate::{Env, Error};

/// The gateway's ServiceAccount in the shipped manifests.
pub const GATEWAY_SERVICE_ACCOUNT: &str = "weft-gateway";

/// Applies `deploy/gateway/serviceaccount.yaml` and `rbac.yaml` with `operator_ns` as the operator
/// namespace (cluster-scoped objects named `<name>-<namespace>` outside `weft-system`).
pub async fn install_gateway_rbac(client: &Client, operator_ns: &str) -> Result<(), Error> {
    let mut docs = Vec::new();
    for file in ["deploy/gateway/serviceaccount.yaml", "deploy/gateway/rbac.yaml"] {
        let path = source_file(file);
        docs.extend(
            documents(&path)?
                .into_iter()
                .map(|d| (d, operator_ns, path.clone())),
        );
    }
    apply_rbac(client, docs, operator_ns, &[GATEWAY_SERVICE_ACCOUNT]).await
}

/// A running `weft-gateway` process (stopped when dropped).
#[derive(Debug)]
pub struct GatewayProcess {
    /// The process.
    pub process: Supervised,
    /// Where it proxies.
    pub proxy: SocketAddr,
    /// Where it serves `/healthz`, `/readyz` and `/metrics`.
    pub probes: SocketAddr,
    /// The user the apiserver sees.
    pub user: String,
}

impl GatewayProcess {
    /// Starts `binary` for the operator namespace `operator_ns` as its ServiceAccount (see
    /// [`install_gateway_rbac`]), proxying on `proxy` (a free loopback port when `None`), with `args`,
    /// logging to `log_path`, and waits until it is ready.
    pub async fn start(
        env: &Env,
        binary: impl Into<PathBuf>,
        operator_ns: &str,
        proxy: Option<SocketAddr>,
        args: &[String],
        log_path: &std::path::Path,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let kubeconfig = env
            .service_account_kubeconfig(operator_ns, GATEWAY_SERVICE_ACCOUNT)
            .await?;
        let proxy = proxy.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], weft_testkit::free_port())));
        let probes = SocketAddr::from(([127, 0, 0, 1], weft_testkit::free_port()));
        let mut cmd = Command::new(binary.into());
        cmd.env("KUBECONFIG", kubeconfig)
            .env("OPERATOR_NAMESPACE", operator_ns)
            .arg(format!("--http-addr={proxy}"))
            .arg(format!("--health-probe-bind-address={probes}"))
            .args(args);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info,weft_gateway=debug");
        }
        let process = Supervised::spawn("weft-gateway", cmd, log_path)?;
        let mut gateway = Self {
            process,
            proxy,
            probes,
            user: format!("system:serviceaccount:{operator_ns}:{GATEWAY_SERVICE_ACCOUNT}"),
        };
        let deadline = Instant::now() + timeout;
        loop {
            if !gateway.process.is_running() {
                break Err(gateway.not_ready(timeout, "the process exited"));
            }
            let ready =
                crate::net::http_get_status(probes, "127.0.0.1", "/readyz", &[], Duration::from_secs(2))
                    .await;
            if matches!(ready, Ok(200)) {
                break Ok(gateway);
            }
            if Instant::now() >= deadline {
                break Err(gateway.not_ready(timeout, "/readyz did not answer 200"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn not_ready(&self, timeout: Duration, reason: &str) -> Error {
        Error::NotReady {
            component: "weft-gateway".into(),
            timeout,
            reason: reason.into(),
            log: self.process.log_tail(16 * 1024),
        }
    }
}
