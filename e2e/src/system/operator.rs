//! `weft-operator` on the environment: its shipped RBAC (`deploy/operator/`) and the operator as a
//! local process authenticated with only a token of its ServiceAccount.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding, Subject};
use kube::{Api, Client};
use weft_testkit::Supervised;

use super::manifests::{apply, document, documents, source_file};
use crate::{Env, Error};

/// The operator namespace of the shipped manifests.
pub const OPERATOR_NAMESPACE: &str = "weft-system";
/// The operator's ServiceAccount in the shipped manifests.
pub const OPERATOR_SERVICE_ACCOUNT: &str = "weft-operator";

/// Applies `deploy/operator/namespace.yaml`, named `name`.
pub async fn install_namespace(client: &Client, name: &str) -> Result<(), Error> {
    let mut namespace: Namespace = document(&source_file("deploy/operator/namespace.yaml"), "Namespace")?;
    namespace.metadata.name = Some(name.to_string());
    apply(&Api::all(client.clone()), &namespace).await?;
    Ok(())
}

/// Applies the shipped operator RBAC (`deploy/operator/serviceaccount.yaml`, `role.yaml`) in
/// `operator_ns`, `host-namespace-role.yaml` in each of `host_namespaces`, and `clusterrole.yaml`, for
/// each of `service_accounts` (a ServiceAccount of that name in `operator_ns`, and a subject of every
/// binding). With `weft-system` and `["weft-operator"]` this is exactly the shipped objects; for
/// another operator namespace the cluster-scoped objects are named `<name>-<namespace>`, so operators
/// of parallel tests do not share them.
pub async fn install_operator_rbac(
    client: &Client,
    operator_ns: &str,
    host_namespaces: &[&str],
    service_accounts: &[&str],
) -> Result<(), Error> {
    install_rbac(client, operator_ns, host_namespaces, None, service_accounts).await
}

/// The namespaced mode of [`install_operator_rbac`] (an operator run with `--watch-namespaces`):
/// `watch-namespace-role.yaml` in each of `watch_namespaces` instead of `clusterrole.yaml`, so the
/// operator has no cluster-scoped rights at all.
pub async fn install_operator_rbac_namespaced(
    client: &Client,
    operator_ns: &str,
    host_namespaces: &[&str],
    watch_namespaces: &[&str],
    service_accounts: &[&str],
) -> Result<(), Error> {
    install_rbac(
        client,
        operator_ns,
        host_namespaces,
        Some(watch_namespaces),
        service_accounts,
    )
    .await
}

async fn install_rbac(
    client: &Client,
    operator_ns: &str,
    host_namespaces: &[&str],
    watch_namespaces: Option<&[&str]>,
    service_accounts: &[&str],
) -> Result<(), Error> {
    let mut docs = Vec::new();
    for file in ["deploy/operator/serviceaccount.yaml", "deploy/operator/role.yaml"] {
        let path = source_file(file);
        docs.extend(
            documents(&path)?
                .into_iter()
                .map(|d| (d, operator_ns, path.clone())),
        );
    }
    match watch_namespaces {
        None => {
            let cluster_role = source_file("deploy/operator/clusterrole.yaml");
            docs.extend(
                documents(&cluster_role)?
                    .into_iter()
                    .map(|d| (d, operator_ns, cluster_role.clone())),
            );
        }
        Some(watched) => {
            let role = source_file("deploy/operator/watch-namespace-role.yaml");
            for ns in watched {
                docs.extend(documents(&role)?.into_iter().map(|d| (d, *ns, role.clone())));
            }
        }
    }
    let host_role = source_file("deploy/operator/host-namespace-role.yaml");
    for ns in host_namespaces {
        docs.extend(
            documents(&host_role)?
                .into_iter()
                .map(|d| (d, *ns, host_role.clone())),
        );
    }
    apply_rbac(client, docs, operator_ns, service_accounts).await
}

/// Applies RBAC documents (each with the namespace it goes to and the file it came from): every
/// ServiceAccount once per name in `service_accounts` (in its namespace), Roles and RoleBindings in their
/// namespace, ClusterRoles and ClusterRoleBindings named `<name>-<namespace>` unless `namespace` is
/// the shipped `weft-system`; every binding's subjects are those ServiceAccounts of `namespace`.
pub(crate) async fn apply_rbac(
    client: &Client,
    docs: Vec<(serde_json::Value, &str, PathBuf)>,
    operator_ns: &str,
    service_accounts: &[&str],
) -> Result<(), Error> {
    let subjects: Vec<Subject> = service_accounts
        .iter()
        .map(|sa| Subject {
            kind: "ServiceAccount".into(),
            name: sa.to_string(),
            namespace: Some(operator_ns.into()),
            ..Default::default()
        })
        .collect();
    let cluster_name = |name: Option<String>| {
        let name = name.unwrap_or_default();
        if operator_ns == OPERATOR_NAMESPACE {
            name
        } else {
            format!("{name}-{operator_ns}")
        }
    };
    let invalid = |path: &Path, e: serde_json::Error| Error::Manifest(format!("{}: {e}", path.display()));
    for (doc, ns, path) in docs {
        match doc["kind"].as_str().unwrap_or_default() {
            "ServiceAccount" => {
                let template: ServiceAccount = serde_json::from_value(doc).map_err(|e| invalid(&path, e))?;
                let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
                for sa in service_accounts {
                    let mut account = template.clone();
                    account.metadata.name = Some(sa.to_string());
                    account.metadata.namespace = Some(ns.to_string());
                    apply(&api, &account).await?;
                }
            }
            "Role" => {
                let mut role: Role = serde_json::from_value(doc).map_err(|e| invalid(&path, e))?;
                role.metadata.namespace = Some(ns.to_string());
                apply(&Api::namespaced(client.clone(), ns), &role).await?;
            }
            "RoleBinding" => {
                let mut binding: RoleBinding = serde_json::from_value(doc).map_err(|e| invalid(&path, e))?;
                binding.metadata.namespace = Some(ns.to_string());
                binding.subjects = Some(subjects.clone());
                apply(&Api::namespaced(client.clone(), ns), &binding).await?;
            }
            "ClusterRole" => {
                let mut role: ClusterRole = serde_json::from_value(doc).map_err(|e| invalid(&path, e))?;
                role.metadata.name = Some(cluster_name(role.metadata.name.take()));
                apply(&Api::all(client.clone()), &role).await?;
            }
            "ClusterRoleBinding" => {
                let mut binding: ClusterRoleBinding =
                    serde_json::from_value(doc).map_err(|e| invalid(&path, e))?;
                binding.metadata.name = Some(cluster_name(binding.metadata.name.take()));
                binding.role_ref.name = cluster_name(Some(binding.role_ref.name.clone()));
                binding.subjects = Some(subjects.clone());
                apply(&Api::all(client.clone()), &binding).await?;
            }
            other => {
                return Err(Error::Manifest(format!(
                    "{}: unexpected kind {other:?} in RBAC manifests",
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

/// How to run `weft-operator`.
#[derive(Debug, Clone)]
pub struct OperatorOptions {
    /// The `weft-operator` binary.
    pub binary: PathBuf,
    /// The operator namespace (`OPERATOR_NAMESPACE`).
    pub namespace: String,
    /// The ServiceAccount (in `namespace`) whose token it uses.
    pub service_account: String,
    /// Extra host namespaces (`--host-namespaces`).
    pub host_namespaces: Vec<String>,
    /// The NATS URL (`--nats-url`, unless `args` has one; [`OperatorProcess::start`] fills in the
    /// environment's when empty).
    pub nats_url: String,
    /// Further arguments.
    pub args: Vec<String>,
    /// Where its output goes.
    pub log_path: PathBuf,
    /// `RUST_LOG` for it (unset: inherited).
    pub rust_log: Option<String>,
}

impl OperatorOptions {
    /// The operator as the shipped manifests run it: ServiceAccount `weft-operator`, no extra host
    /// namespaces, default flags.
    pub fn new(binary: impl Into<PathBuf>, namespace: &str, log_path: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            namespace: namespace.to_string(),
            service_account: OPERATOR_SERVICE_ACCOUNT.to_string(),
            host_namespaces: Vec::new(),
            nats_url: String::new(),
            args: Vec::new(),
            log_path: log_path.into(),
            rust_log: None,
        }
    }

    /// The user the apiserver sees: `system:serviceaccount:<namespace>:<service account>`.
    pub fn user(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }
}

/// A running `weft-operator` process (stopped when dropped).
#[derive(Debug)]
pub struct OperatorProcess {
    /// The process.
    pub process: Supervised,
    /// Where it serves `/healthz`, `/readyz` and `/metrics`.
    pub addr: SocketAddr,
    /// The user the apiserver sees.
    pub user: String,
}

impl OperatorProcess {
    /// Mints a kubeconfig with a token of the ServiceAccount (which must exist: see
    /// [`install_operator_rbac`]), starts the operator with it, and waits until it is ready (caches
    /// synced).
    pub async fn start(env: &Env, options: &OperatorOptions, timeout: Duration) -> Result<Self, Error> {
        let kubeconfig = env
            .service_account_kubeconfig(&options.namespace, &options.service_account)
            .await?;
        let mut options = options.clone();
        if options.nats_url.is_empty() {
            options.nats_url = env.nats_url().to_string();
        }
        let mut operator = Self::spawn(&kubeconfig, &options)?;
        operator.wait_ready(timeout).await?;
        Ok(operator)
    }

    /// Starts the operator with `kubeconfig`, serving its probes and metrics on a free loopback port.
    pub fn spawn(kubeconfig: &Path, options: &OperatorOptions) -> Result<Self, Error> {
        let addr = SocketAddr::from(([127, 0, 0, 1], weft_testkit::free_port()));
        let mut cmd = Command::new(&options.binary);
        cmd.env("KUBECONFIG", kubeconfig)
            .env("OPERATOR_NAMESPACE", &options.namespace)
            .arg(format!("--health-probe-bind-address={addr}"))
            .arg(format!("--metrics-bind-address={addr}"));
        if !options.host_namespaces.is_empty() {
            cmd.arg(format!("--host-namespaces={}", options.host_namespaces.join(",")));
        }
        cmd.args(&options.args);
        if let Some(filter) = &options.rust_log {
            cmd.env("RUST_LOG", filter);
        }
        if let Some(dir) = options.log_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        }
        let name = format!("weft-operator ({})", options.service_account);
        if !options.nats_url.is_empty() && !options.args.iter().any(|a| a.starts_with("--nats-url")) {
            cmd.arg(format!("--nats-url={}", options.nats_url));
        }
        let process = Supervised::spawn(&name, cmd, &options.log_path)?;
        Ok(Self {
            process,
            addr,
            user: options.user(),
        })
    }

    /// Whether `/readyz` answers 200.
    pub async fn is_ready(&self) -> bool {
        matches!(
            crate::net::http_get_status(self.addr, "127.0.0.1", "/readyz", &[], Duration::from_secs(2)).await,
            Ok(200)
        )
    }

    /// Waits until `/readyz` answers 200; fails with the end of its log if it exits or `timeout` passes.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let reason = loop {
            if !self.process.is_running() {
                break "the process exited".to_string();
            }
            if self.is_ready().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                break format!("/readyz at {} did not answer 200", self.addr);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Err(Error::NotReady {
            component: "weft-operator".into(),
            timeout,
            reason,
            log: self.process.log_tail(16 * 1024),
        })
    }
}
