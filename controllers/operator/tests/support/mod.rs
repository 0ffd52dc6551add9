//! Running `weft-operator` as a process under its ServiceAccount with only the shipped RBAC.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_e2e::Env;
use weft_framework::exposition::{self, Format, Scrape};
use weft_testkit::{Supervised, TempDir};

pub const WAIT: Duration = Duration::from_secs(60);
const FIELD_MANAGER: &str = "weft-operator-tests";

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            serde_yaml::from_value::<Value>(serde_yaml::Value::deserialize(doc).expect("yaml")).expect("json")
        })
        .filter(|v| !v.is_null())
        .collect()
}

use serde::Deserialize;

/// Installs the checked-in Host CRD and waits until it is served.
pub async fn install_host_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for doc in yaml_docs("crds/hosts.runtime.wasmcloud.dev.yaml") {
        let crd: CustomResourceDefinition = serde_json::from_value(doc).expect("a CRD");
        let name = crd.metadata.name.clone().expect("named");
        crds.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("apply CRD");
        eventually("the Host CRD to be established", WAIT, || async {
            let crd = crds.get(&name).await.ok()?;
            let established = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        })
        .await;
    }
}

/// Applies the shipped operator RBAC (`deploy/operator/`) with `operator_ns` as the operator namespace,
/// the host-namespace Role in each of `host_namespaces`, bound to each of `service_accounts`.
pub async fn install_rbac(
    client: &Client,
    operator_ns: &str,
    host_namespaces: &[&str],
    service_accounts: &[&str],
) {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let subjects: Vec<Subject> = service_accounts
        .iter()
        .map(|sa| Subject {
            kind: "ServiceAccount".into(),
            name: sa.to_string(),
            namespace: Some(operator_ns.into()),
            ..Default::default()
        })
        .collect();
    let mut docs: Vec<(Value, String)> = Vec::new();
    for file in ["deploy/operator/serviceaccount.yaml", "deploy/operator/role.yaml"] {
        docs.extend(yaml_docs(file).into_iter().map(|d| (d, operator_ns.to_string())));
    }
    for ns in host_namespaces {
        docs.extend(
            yaml_docs("deploy/operator/host-namespace-role.yaml")
                .into_iter()
                .map(|d| (d, ns.to_string())),
        );
    }
    for (doc, ns) in docs {
        match doc["kind"].as_str().expect("kind") {
            "ServiceAccount" => {
                let template: ServiceAccount = serde_json::from_value(doc).expect("ServiceAccount");
                let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
                for sa in service_accounts {
                    let mut obj = template.clone();
                    obj.metadata.name = Some(sa.to_string());
                    obj.metadata.namespace = Some(ns.clone());
                    api.patch(sa, &pp, &Patch::Apply(&obj))
                        .await
                        .expect("apply ServiceAccount");
                }
            }
            "Role" => {
                let mut role: Role = serde_json::from_value(doc).expect("Role");
                role.metadata.namespace = Some(ns.clone());
                let name = role.metadata.name.clone().expect("named");
                Api::<Role>::namespaced(client.clone(), &ns)
                    .patch(&name, &pp, &Patch::Apply(&role))
                    .await
                    .expect("apply Role");
            }
            "RoleBinding" => {
                let mut binding: RoleBinding = serde_json::from_value(doc).expect("RoleBinding");
                binding.metadata.namespace = Some(ns.clone());
                binding.subjects = Some(subjects.clone());
                let name = binding.metadata.name.clone().expect("named");
                Api::<RoleBinding>::namespaced(client.clone(), &ns)
                    .patch(&name, &pp, &Patch::Apply(&binding))
                    .await
                    .expect("apply RoleBinding");
            }
            other => panic!("unexpected kind {other} in the shipped RBAC"),
        }
    }
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
        let kubeconfig = env
            .service_account_kubeconfig(operator_ns, sa)
            .await
            .expect("SA kubeconfig");
        let dir = TempDir::new("operator").expect("temp dir");
        let port = weft_testkit::free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft-operator"));
        cmd.env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info,weft_framework=debug,weft_controllers=debug")
            .env("OPERATOR_NAMESPACE", operator_ns)
            .arg(format!("--health-probe-bind-address={addr}"))
            .arg(format!("--metrics-bind-address={addr}"))
            .arg(format!("--host-namespaces={}", host_namespaces.join(",")))
            .args(extra);
        let log = dir.path().join(format!("{sa}.log"));
        let process =
            Supervised::spawn(&format!("weft-operator ({sa})"), cmd, &log).expect("spawn weft-operator");
        let mut op = Self {
            process,
            addr,
            user: format!("system:serviceaccount:{operator_ns}:{sa}"),
            _dir: dir,
        };
        let ready = op.wait_ready().await;
        assert!(
            ready,
            "weft-operator ({sa}) did not become ready; its log:\n{}",
            op.log()
        );
        op
    }

    /// Waits for `/readyz` (caches synced).
    pub async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if !self.process.is_running() {
                return false;
            }
            if matches!(http_get(self.addr, "/readyz").await, Ok((200, _))) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
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
