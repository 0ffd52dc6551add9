//! Running `weft-operator` as a process under its ServiceAccount with only the shipped RBAC.
#![allow(dead_code)]

pub mod rollout;

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::Client;
use kube::api::ObjectMeta;
use weft_e2e::Env;
use weft_e2e::system::{self, OperatorOptions, OperatorProcess};
pub use weft_e2e::testing::{eventually, http_get};
use weft_framework::exposition::{self, Format, Scrape};
use weft_testkit::{NatsServer, Supervised, TempDir};

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
    /// The operator's own nats-server, unless the test passed `--nats-url`.
    pub nats: Option<NatsServer>,
    _dir: TempDir,
}

impl Operator {
    /// Starts the operator as ServiceAccount `sa` of `operator_ns` (token only: no admin rights), on a
    /// nats-server of its own unless `extra` has `--nats-url=…` (so hosts of other tests stay unseen).
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
        // Tests share one cluster: each operator manages the Workloads of its own namespaces only.
        if !extra.iter().any(|a| a.starts_with("--watch-namespaces")) {
            let mut watched = vec![operator_ns.to_string()];
            watched.extend(host_namespaces.iter().map(|s| s.to_string()));
            options
                .args
                .push(format!("--watch-namespaces={}", watched.join(",")));
        }
        let nats = if extra.iter().any(|a| a.starts_with("--nats-url")) {
            None
        } else {
            let server = NatsServer::start().expect("start the operator's nats-server");
            options.nats_url = server.url();
            Some(server)
        };
        options.rust_log = Some("info,weft_framework=debug,weft_controllers=debug".into());
        let OperatorProcess { process, addr, user } = OperatorProcess::start(env, &options, WAIT)
            .await
            .unwrap_or_else(|e| panic!("weft-operator ({sa}) did not become ready: {e}"));
        Self {
            process,
            addr,
            user,
            nats,
            _dir: dir,
        }
    }

    /// The end of its log.
    pub fn log(&self) -> String {
        self.process.log_tail(16 * 1024)
    }

    /// Its metrics, parsed strictly.
    pub async fn metrics(&self) -> Option<Scrape> {
        let response = http_get(self.addr, "/metrics", None).await.ok()?;
        let (status, body) = (response.status, response.body);
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

impl Drop for Operator {
    /// A failing test shows the end of the operator's log (its temp dir goes with it).
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- weft-operator log (last 16 KiB) ----\n{}", self.log());
        }
    }
}

/// What most end-to-end tests start from: a namespace with the CRDs and the shipped operator RBAC,
/// the operator on its own nats-server, and Ready `weft-host`s advertising `host_names`.
pub struct System {
    pub env: &'static Env,
    pub ns: weft_e2e::TestNamespace,
    pub admin: Client,
    pub operator: Operator,
    pub hosts: Vec<HostProcess>,
    pub hosts_api: kube::Api<weft_crds::Host>,
    audit: weft_e2e::AuditLog,
    mark: weft_e2e::AuditMark,
}

impl System {
    /// Sets it up in a new namespace named after `prefix`.
    pub async fn start(prefix: &str, host_names: &[&str]) -> Self {
        let env = Env::shared().await;
        let ns = env.new_namespace(prefix).await.expect("namespace");
        let admin = env.admin_client();
        install_host_crd(&admin).await;
        install_rbac(&admin, ns.name(), &[], &["weft-operator"]).await;
        let audit = env.audit_log();
        let mark = audit.mark();
        let operator = Operator::start(env, ns.name(), "weft-operator", &[], &[]).await;
        let url = operator.nats.as_ref().expect("own NATS").url();
        let hosts_api = kube::Api::namespaced(admin.clone(), ns.name());
        let mut hosts = Vec::new();
        for name in host_names {
            let h = spawn_host_named(&url, weft_testkit::free_port(), name, &[]);
            ready_host_on(&hosts_api, h.http_port).await;
            hosts.push(h);
        }
        Self {
            env,
            ns,
            admin,
            operator,
            hosts,
            hosts_api,
            audit,
            mark,
        }
    }

    /// An API for `K` in the namespace.
    pub fn api<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        kube::Api::namespaced(self.admin.clone(), self.ns.name())
    }

    /// The requests of `user` denied since the start.
    pub fn denied(&self, user: &str) -> Vec<String> {
        denied(&self.audit.events_since(self.mark), user)
    }
}

/// The requests of `user` the apiserver denied (403), as `verb uri`: empty when the shipped RBAC is
/// enough.
pub fn denied(events: &[weft_e2e::AuditEvent], user: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.user.username == user && e.code() == Some(403))
        .map(|e| format!("{} {}", e.verb, e.request_uri))
        .collect()
}

/// The `p` quantile (0–1) of sorted durations (benchmarks).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// What a harness-free benchmark's `main` starts with: `None` when cargo only lists benchmarks
/// (`--list`), else the 2-worker runtime the benchmarks run on.
pub fn bench_runtime() -> Option<tokio::runtime::Runtime> {
    if std::env::args().any(|a| a == "--list") {
        return None;
    }
    Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime"),
    )
}

/// A `weft-host` process on 127.0.0.1 (stopped when dropped).
pub struct HostProcess {
    pub process: Supervised,
    pub http_port: u16,
    _dir: TempDir,
}

/// Starts `weft-host` on `nats_url`, serving HTTP on 127.0.0.1:`http_port`, with `extra` flags.
pub fn spawn_host(nats_url: &str, http_port: u16, extra: &[&str]) -> HostProcess {
    spawn_host_named(nats_url, http_port, "127.0.0.1", extra)
}

/// [`spawn_host`], advertising `host_name` as its hostname (what Hosts, the gateway and EndpointSlices
/// see) while it listens on 127.0.0.1.
pub fn spawn_host_named(nats_url: &str, http_port: u16, host_name: &str, extra: &[&str]) -> HostProcess {
    let bin = system::workspace_binary("weft-host").unwrap_or_else(|e| panic!("{e}"));
    let dir = TempDir::new("weft-host").expect("temp dir");
    let admin = SocketAddr::from(([127, 0, 0, 1], weft_testkit::free_port()));
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["--scheduler-nats-url", nats_url])
        .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
        .args(["--admin-addr", &admin.to_string()])
        .args(["--host-name", host_name])
        .args(["--host-group", "hosts-test"])
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .args(extra)
        .env("RUST_LOG", "info");
    let process = Supervised::spawn("weft-host", cmd, &dir.path().join("host.log")).expect("spawn weft-host");
    HostProcess {
        process,
        http_port,
        _dir: dir,
    }
}

/// A Host's Ready status (Unknown when it has none).
pub fn ready(h: &weft_crds::Host) -> weft_crds::ConditionStatus {
    h.status
        .as_ref()
        .map_or(weft_crds::ConditionStatus::Unknown, |s| {
            weft_crds::condition::status_of(&s.conditions, weft_crds::names::condition_types::READY)
        })
}

/// The Host of the host serving on `port`, once it is Ready.
pub async fn ready_host_on(hosts: &kube::Api<weft_crds::Host>, port: u16) -> weft_crds::Host {
    eventually(&format!("a Ready Host for port {port}"), WAIT, || async {
        hosts
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|h| {
                h.spec.http_port == Some(u32::from(port)) && ready(h) == weft_crds::ConditionStatus::True
            })
    })
    .await
}

/// A Workload running `component` (a file path) served for HTTP host `http_host`.
pub fn hello_workload(name: &str, component: &str, http_host: &str) -> weft_crds::Workload {
    let mut w = weft_crds::Workload::new(
        name,
        weft_crds::WorkloadSpec {
            components: Some(vec![weft_crds::workload::WorkloadComponent {
                name: "http".into(),
                image: format!("file://{component}"),
                ..Default::default()
            }]),
            host_interfaces: Some(vec![weft_crds::workload::HostInterface {
                namespace: "wasi".into(),
                package: "http".into(),
                interfaces: vec!["incoming-handler".into()],
                config_layer: weft_crds::workload::ConfigLayer {
                    config: Some([("host".to_string(), http_host.to_string())].into()),
                    ..Default::default()
                },
                ..Default::default()
            }]),
            ..Default::default()
        },
    );
    w.metadata.labels = Some([("app".to_string(), name.to_string())].into());
    w
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
