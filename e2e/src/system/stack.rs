//! The whole system in one namespace, as a person runs it: the CRDs, one or more `weft-operator`
//! replicas under the shipped ServiceAccount and RBAC, a host group of `weft-host` pods on the
//! process-kubelet, and `weft-gateway` under its own ServiceAccount — plus the hello-world example
//! deployed on it. The failover tests, the failover benchmark and `weft-dev --demo` start from here.
//!
//! An operator replica that exits (e.g. it lost its lease while the apiserver was away, as
//! controller-runtime's do) is restarted as its Deployment's pod would be.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use weft_crds::names::labels::{TEMPLATE_HASH, WORKLOAD_DEPLOYMENT};
use weft_crds::workload::ConfigLayer;
use weft_crds::{Host, Workload, WorkloadDeployment, WorkloadReplicaTemplate};

use super::{
    GatewayProcess, HostGroup, OPERATOR_SERVICE_ACCOUNT, OperatorOptions, OperatorProcess, host_image,
    install_crds, install_gateway_rbac, install_operator_rbac, manifests, workspace_binary,
};
use crate::kubelet::Backoff;
use crate::testing::http_get_host;
use crate::{Env, Error};

/// The example a person applies first.
pub const HELLO_WORLD_EXAMPLE: &str = "crds/examples/workloaddeployment-hello-world.yaml";
/// The `Host` header the example is served for.
pub const HELLO_WORLD_HOST: &str = "hello.example.com";
/// What the hello component answers.
pub const HELLO_WORLD_BODY: &str = "hello\n";

/// What to start.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Host pods in the group `default`.
    pub host_replicas: i32,
    /// Operator replicas (leader election decides which one reconciles).
    pub operator_replicas: usize,
    /// Extra operator flags (e.g. the wasmCloud-mode flags of the failover benchmark).
    pub operator_args: Vec<String>,
    /// Extra gateway flags.
    pub gateway_args: Vec<String>,
    /// The NATS the operator and the hosts use (default: a nats-server of the stack's own, so that
    /// stacks side by side on one environment never see each other's hosts).
    pub nats_url: Option<String>,
    /// Where the processes' logs go.
    pub logs: PathBuf,
}

impl StackOptions {
    /// One operator, `host_replicas` host pods, default flags, logs in the environment's log directory.
    pub fn new(env: &Env, host_replicas: i32) -> Self {
        Self {
            host_replicas,
            operator_replicas: 1,
            operator_args: Vec::new(),
            gateway_args: Vec::new(),
            nats_url: None,
            logs: env.run_dir().join("logs"),
        }
    }
}

/// The running system (its processes stop when it is dropped; the host pods go with the namespace).
pub struct Stack {
    /// The namespace everything runs in (operator namespace and host namespace at once).
    pub namespace: String,
    /// An admin client.
    pub admin: Client,
    /// The operator replicas, in start order. Each is restarted when it exits, as its Deployment's
    /// pod would be (the kubelet's crash-loop back-off).
    operators: Vec<OperatorSlot>,
    supervisors: Vec<tokio::task::JoinHandle<()>>,
    /// How the operators are run (to start a replacement).
    pub operator_options: OperatorOptions,
    /// The host group.
    pub group: HostGroup,
    /// The gateway.
    pub gateway: GatewayProcess,
    /// The stack's own nats-server (unless [`StackOptions::nats_url`] named one).
    pub nats: Option<weft_testkit::NatsServer>,
    logs: Vec<PathBuf>,
}

/// One operator replica: its process (absent while it is being restarted) and how often it restarted.
#[derive(Clone, Default)]
struct OperatorSlot {
    process: Arc<Mutex<Option<OperatorProcess>>>,
    restarts: Arc<AtomicU32>,
}

/// Restarts the replica in `slot` whenever it exits, with a fresh token and the kubelet's back-off.
async fn supervise(slot: OperatorSlot, env: Env, options: OperatorOptions) {
    let backoff = Backoff::default();
    let (mut streak, mut started) = (0, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let exited = match slot.process.lock().await.as_mut() {
            Some(p) => p.process.wait_exit(Duration::ZERO).is_some(),
            None => false,
        };
        if !exited {
            continue;
        }
        let (delay, next) = backoff.next_delay(streak, started.elapsed());
        streak = next;
        tracing::info!(log = %options.log_path.display(), ?delay, "weft-operator exited; restarting it");
        tokio::time::sleep(delay).await;
        let restarted = env
            .service_account_kubeconfig(&options.namespace, &options.service_account)
            .await
            .and_then(|k| OperatorProcess::spawn(&k, &options));
        match restarted {
            Ok(p) => {
                *slot.process.lock().await = Some(p);
                slot.restarts.fetch_add(1, Ordering::Relaxed);
                started = Instant::now();
            }
            Err(e) => tracing::warn!(error = %e, "restarting weft-operator"),
        }
    }
}

impl Drop for Stack {
    /// Stops the supervisors first (so nothing is restarted), then everything stops with its process
    /// handle. A failing test shows the end of every operator's and the gateway's log.
    fn drop(&mut self) {
        for s in &self.supervisors {
            s.abort();
        }
        for slot in &self.operators {
            if let Ok(mut p) = slot.process.try_lock() {
                p.take();
            }
        }
        if std::thread::panicking() {
            for path in &self.logs {
                eprintln!(
                    "---- {} (last 12 KiB) ----\n{}",
                    path.display(),
                    weft_testkit::read_tail(path, 12 * 1024)
                );
            }
        }
    }
}

impl Stack {
    /// Installs and starts everything in `namespace` and waits until it is ready.
    pub async fn start(
        env: &Env,
        namespace: &str,
        options: StackOptions,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let admin = env.admin_client();
        install_crds(&admin, timeout).await?;
        install_operator_rbac(&admin, namespace, &[], &[OPERATOR_SERVICE_ACCOUNT]).await?;
        install_gateway_rbac(&admin, namespace).await?;
        let (nats, nats_url) = match &options.nats_url {
            Some(url) => (None, url.clone()),
            None => {
                let own = tokio::task::spawn_blocking(weft_testkit::NatsServer::start)
                    .await
                    .map_err(|e| Error::Env(format!("nats-server start task: {e}")))??;
                let url = own.url();
                (Some(own), url)
            }
        };
        let mut operator_options = OperatorOptions::new(
            workspace_binary("weft-operator")?,
            namespace,
            options.logs.join(format!("weft-operator-{namespace}-0.log")),
        );
        operator_options.nats_url = nats_url.clone();
        operator_options.args = [format!("--watch-namespaces={namespace}")]
            .into_iter()
            .chain(options.operator_args.iter().cloned())
            .collect();
        let mut operators = Vec::new();
        let mut supervisors = Vec::new();
        let mut logs = Vec::new();
        for i in 0..options.operator_replicas.max(1) {
            let mut o = operator_options.clone();
            o.log_path = options.logs.join(format!("weft-operator-{namespace}-{i}.log"));
            logs.push(o.log_path.clone());
            let slot = OperatorSlot::default();
            *slot.process.lock().await = Some(OperatorProcess::start(env, &o, timeout).await?);
            supervisors.push(tokio::spawn(supervise(slot.clone(), env.clone(), o)));
            operators.push(slot);
        }
        env.kubelet()
            .register_image(&host_image(&workspace_binary("weft-host")?))?;
        let group = HostGroup {
            namespace: namespace.to_string(),
            group: "default".into(),
            replicas: options.host_replicas,
            nats_url,
        };
        group.apply(&admin).await?;
        group.wait_ready(&admin, timeout).await?;
        let gateway_args: Vec<String> = [format!("--watch-namespaces={namespace}")]
            .into_iter()
            .chain(options.gateway_args.iter().cloned())
            .collect();
        let gateway_log = options.logs.join(format!("weft-gateway-{namespace}.log"));
        logs.push(gateway_log.clone());
        let gateway = GatewayProcess::start(
            env,
            workspace_binary("weft-gateway")?,
            namespace,
            None,
            &gateway_args,
            &gateway_log,
            timeout,
        )
        .await?;
        Ok(Self {
            namespace: namespace.to_string(),
            admin,
            operators,
            supervisors,
            operator_options,
            group,
            gateway,
            nats,
            logs,
        })
    }

    /// An API for `K` in the namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        Api::namespaced(self.admin.clone(), &self.namespace)
    }

    /// The hello-world example as shipped, with the hello component built here as its image.
    pub fn hello_world() -> Result<WorkloadDeployment, Error> {
        let path = manifests::source_file(HELLO_WORLD_EXAMPLE);
        let text =
            std::fs::read_to_string(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        let mut d: WorkloadDeployment =
            serde_yaml::from_str(&text).map_err(|e| Error::Manifest(format!("{}: {e}", path.display())))?;
        for c in d.spec.template.spec.components.iter_mut().flatten() {
            c.image = format!("file://{}", weft_test_components::HELLO);
        }
        Ok(d)
    }

    /// Creates the hello-world example and waits until it is served: its replicas Ready (on distinct
    /// hosts if `distinct`) and a `200` through the gateway.
    pub async fn deploy_hello_world(
        &self,
        distinct: bool,
        timeout: Duration,
    ) -> Result<Vec<Workload>, Error> {
        let d = Self::hello_world()?;
        self.api::<WorkloadDeployment>()
            .create(&PostParams::default(), &d)
            .await
            .map_err(Error::kube("create the hello-world deployment"))?;
        let name = d.metadata.name.clone().unwrap_or_default();
        let replicas = d.spec.replicas.unwrap_or(1).max(0) as usize;
        self.wait_replicas(&name, replicas, None, distinct, timeout).await
    }

    /// The Ready Workloads of deployment `name`.
    pub async fn ready_replicas(&self, name: &str) -> Result<Vec<Workload>, Error> {
        let params = ListParams::default().labels(&format!("{WORKLOAD_DEPLOYMENT}={name}"));
        let list = self
            .api::<Workload>()
            .list(&params)
            .await
            .map_err(Error::kube("list Workloads"))?;
        Ok(list
            .items
            .into_iter()
            .filter(|w| w.metadata.deletion_timestamp.is_none() && w.is_ready())
            .collect())
    }

    /// Waits until deployment `name` has `replicas` Ready Workloads, on as many distinct hosts (none of
    /// them `avoid`), and serves through the gateway; returns them.
    pub async fn wait_spread(
        &self,
        name: &str,
        replicas: usize,
        avoid: Option<&str>,
        timeout: Duration,
    ) -> Result<Vec<Workload>, Error> {
        self.wait_replicas(name, replicas, avoid, true, timeout).await
    }

    /// [`Stack::wait_spread`], with the replicas on distinct hosts only if `distinct` (random placement
    /// may stack them).
    pub async fn wait_replicas(
        &self,
        name: &str,
        replicas: usize,
        avoid: Option<&str>,
        distinct: bool,
        timeout: Duration,
    ) -> Result<Vec<Workload>, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.ready_replicas(name).await {
                Ok(ws) => {
                    let hosts: BTreeSet<&str> = ws
                        .iter()
                        .filter_map(|w| w.status.as_ref()?.host_id.as_deref())
                        .collect();
                    let placed = ws.len() == replicas
                        && (!distinct || hosts.len() == replicas)
                        && avoid.is_none_or(|a| !hosts.contains(a));
                    if placed
                        && let Ok(r) = http_get_host(self.gateway.proxy, HELLO_WORLD_HOST).await
                        && r.status == 200
                    {
                        return Ok(ws);
                    }
                    format!("{} Ready replicas on hosts {hosts:?}", ws.len())
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    component: format!("deployment {}/{name}", self.namespace),
                    timeout,
                    reason: last,
                    log: String::new(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The host pod whose IP is the hostname of the Host with `host_id`.
    pub async fn pod_of_host(&self, host_id: &str) -> Result<Pod, Error> {
        let hosts = self
            .api::<Host>()
            .list(&ListParams::default())
            .await
            .map_err(Error::kube("list Hosts"))?;
        let ip = hosts
            .items
            .into_iter()
            .find(|h| h.spec.host_id == host_id)
            .and_then(|h| h.spec.hostname)
            .ok_or_else(|| Error::Env(format!("no Host with ID {host_id}")))?;
        let pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&self.group.pod_selector()))
            .await
            .map_err(Error::kube("list host pods"))?;
        let ip_of = |p: &Pod| p.status.as_ref().and_then(|s| s.pod_ip.clone());
        let seen: Vec<(String, Option<String>)> =
            pods.items.iter().map(|p| (p.name_any(), ip_of(p))).collect();
        pods.items
            .into_iter()
            .find(|p| ip_of(p).as_deref() == Some(ip.as_str()))
            .ok_or_else(|| Error::Env(format!("no host pod has IP {ip} (pods: {seen:?})")))
    }

    /// The template of deployment `name` with environment variable `REVISION=<revision>` for its first
    /// component (a new template hash: a rollout), and that hash. Patch it in with
    /// [`Stack::apply_template`].
    pub async fn revised_template(
        &self,
        name: &str,
        revision: usize,
    ) -> Result<(WorkloadReplicaTemplate, String), Error> {
        let mut template = self
            .api::<WorkloadDeployment>()
            .get(name)
            .await
            .map_err(Error::kube("get the deployment"))?
            .spec
            .template;
        if let Some(c) = template.spec.components.as_mut().and_then(|c| c.first_mut()) {
            c.local_resources.get_or_insert_default().environment = Some(ConfigLayer {
                config: Some([("REVISION".to_string(), revision.to_string())].into()),
                ..Default::default()
            });
        }
        let hash = template.hash();
        Ok((template, hash))
    }

    /// Writes `template` into deployment `name`; returns the deployment's new generation.
    pub async fn apply_template(
        &self,
        name: &str,
        template: &WorkloadReplicaTemplate,
    ) -> Result<Option<i64>, Error> {
        let patched = self
            .api::<WorkloadDeployment>()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&serde_json::json!({ "spec": { "template": template } })),
            )
            .await
            .map_err(Error::kube("patch the template"))?;
        Ok(patched.metadata.generation)
    }

    /// Whether deployment `name` has rolled out `generation`: Ready, observed, and `replicas` Ready
    /// Workloads, all of template `hash`.
    pub async fn rolled_out(&self, name: &str, generation: Option<i64>, hash: &str, replicas: usize) -> bool {
        let Ok(d) = self.api::<WorkloadDeployment>().get(name).await else {
            return false;
        };
        let Some(status) = d.status.as_ref() else {
            return false;
        };
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == weft_crds::ConditionStatus::True);
        let Ok(ws) = self.ready_replicas(name).await else {
            return false;
        };
        let new = ws
            .iter()
            .filter(|w| w.labels().get(TEMPLATE_HASH).map(String::as_str) == Some(hash))
            .count();
        ready && status.observed_generation == generation && new == replicas && ws.len() == replicas
    }

    /// `Kind/name/uid` of every Host and Workload not being deleted: equal before and after something
    /// broke when nothing was deleted or replaced.
    pub async fn inventory(&self) -> Result<BTreeSet<String>, Error> {
        let hosts = self
            .api::<Host>()
            .list(&ListParams::default())
            .await
            .map_err(Error::kube("list Hosts"))?;
        let workloads = self
            .api::<Workload>()
            .list(&ListParams::default())
            .await
            .map_err(Error::kube("list Workloads"))?;
        let host_keys = hosts
            .items
            .iter()
            .filter(|h| h.metadata.deletion_timestamp.is_none())
            .map(|h| format!("Host/{}/{}", h.name_any(), h.uid().unwrap_or_default()));
        let workload_keys = workloads
            .items
            .iter()
            .filter(|w| w.metadata.deletion_timestamp.is_none())
            .map(|w| format!("Workload/{}/{}", w.name_any(), w.uid().unwrap_or_default()));
        Ok(host_keys.chain(workload_keys).collect())
    }

    /// The index of the operator replica that holds the lease (by its
    /// `leader_election_master_status` gauge).
    pub async fn leader(&self) -> Option<usize> {
        for (i, slot) in self.operators.iter().enumerate() {
            let Some(addr) = slot.process.lock().await.as_ref().map(|o| o.addr) else {
                continue;
            };
            let Ok(Ok(scrape)) = tokio::time::timeout(
                Duration::from_secs(2),
                crate::testing::http_get(addr, "/metrics", None),
            )
            .await
            else {
                continue;
            };
            if scrape
                .body
                .lines()
                .any(|l| l.starts_with("leader_election_master_status{") && l.trim_end().ends_with(" 1"))
            {
                return Some(i);
            }
        }
        None
    }

    /// The replica leading now, if it is not the process that led as replica `old` when that replica had
    /// been restarted `restarts` times: another replica, or `old`'s restarted process.
    pub async fn new_leader(&self, old: usize, restarts: u32) -> Option<usize> {
        let now = self.leader().await?;
        (now != old || self.operators[old].restarts.load(Ordering::Relaxed) > restarts).then_some(now)
    }

    /// Sends `signal` to operator replica `i` (if it is running). An operator that exits is restarted.
    pub async fn signal_operator(&self, i: usize, signal: i32) {
        if let Some(p) = self.operators[i].process.lock().await.as_ref() {
            p.process.signal(signal);
        }
    }

    /// Where each running operator replica serves `/metrics`.
    pub async fn operator_addrs(&self) -> Vec<std::net::SocketAddr> {
        let mut addrs = Vec::new();
        for slot in &self.operators {
            if let Some(p) = slot.process.lock().await.as_ref() {
                addrs.push(p.addr);
            }
        }
        addrs
    }

    /// Where each host pod's admin server (`/metrics`, `/healthz`, `/readyz`) listens.
    pub async fn host_admin_addrs(&self) -> Result<Vec<std::net::SocketAddr>, Error> {
        self.group.admin_addrs(&self.admin).await
    }

    /// How many times each operator replica was restarted after it exited.
    pub fn operator_restarts(&self) -> Vec<u32> {
        self.operators
            .iter()
            .map(|s| s.restarts.load(Ordering::Relaxed))
            .collect()
    }
}
