//! The test-facing handle on the shared environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use tokio::sync::OnceCell;

use crate::controlplane::{Coordinates, EnvOptions, RunningEnv};
use crate::kubeconfig::{self, Credentials};
use crate::kubelet::images::{self, ImageCommand};
use crate::{AuditLog, Error};

/// The variable naming the `env.json` of a running environment to connect to.
pub const ENV_VAR: &str = "WEFT_E2E_ENV";

static SHARED: OnceCell<Result<Env, String>> = OnceCell::const_new();
static ANY_TEST_FAILED: AtomicBool = AtomicBool::new(false);
static OWNED_RUN_DIR: OnceLock<PathBuf> = OnceLock::new();

/// A handle on a running environment. Get the shared one with [`Env::shared`].
///
/// The handle holds only coordinates; every client it returns is created for the caller's tokio
/// runtime (each `#[tokio::test]` has its own), so call the client methods inside one.
#[derive(Debug, Clone)]
pub struct Env {
    coords: Coordinates,
    admin_config: kube::Config,
}

impl Env {
    /// The environment shared by every test of this run, started on first use.
    ///
    /// * If `WEFT_E2E_ENV` names an `env.json` (as under `make test`, which runs `cargo test` inside
    ///   `weft-dev -- …`), connects to that environment: all test binaries share it.
    /// * Otherwise starts one inside this process (`cargo test -p <crate>` on its own). It runs on a
    ///   dedicated thread for the life of the process; its processes die with the process (they are
    ///   stopped at exit, and get SIGKILL if the process crashes), and its run directory is removed at
    ///   exit unless a test failed (or `WEFT_E2E_KEEP` is set).
    ///
    /// Panics (failing the calling test) with the component logs if the environment cannot start.
    pub async fn shared() -> &'static Env {
        match Self::try_shared().await {
            Ok(env) => env,
            Err(e) => panic!("the shared test environment is unavailable: {e}"),
        }
    }

    /// Like [`Env::shared`], but returns the error. A failed start is not retried within a process.
    pub async fn try_shared() -> Result<&'static Env, Error> {
        let result = SHARED
            .get_or_init(|| async {
                match std::env::var_os(ENV_VAR) {
                    Some(path) => Env::connect(Path::new(&path)).await.map_err(|e| e.to_string()),
                    None => start_in_process().await.map_err(|e| e.to_string()),
                }
            })
            .await;
        result.as_ref().map_err(|e| Error::Env(e.clone()))
    }

    /// Connects to the running environment described by `env_json` (its `env.json`).
    pub async fn connect(env_json: &Path) -> Result<Self, Error> {
        let coords = Coordinates::load(env_json).map_err(|e| {
            Error::Env(format!(
                "{ENV_VAR}={}: {e} (is the environment running?)",
                env_json.display()
            ))
        })?;
        Self::from_coordinates(coords).await
    }

    /// A handle on the environment at `coords`.
    pub async fn from_coordinates(coords: Coordinates) -> Result<Self, Error> {
        let admin_config = kubeconfig::load(&coords.kubeconfig).await?;
        Ok(Self { coords, admin_config })
    }

    /// Where everything is (also in `<run_dir>/env.json`).
    pub fn coordinates(&self) -> &Coordinates {
        &self.coords
    }

    /// A new admin client (group `system:masters`: bypasses RBAC) for the current tokio runtime.
    pub fn admin_client(&self) -> Client {
        Client::try_from(self.admin_config.clone()).expect("admin client from a valid kubeconfig")
    }

    /// The admin client configuration.
    pub fn admin_config(&self) -> kube::Config {
        self.admin_config.clone()
    }

    /// The admin kubeconfig file (for `kubectl` and subprocesses).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.coords.kubeconfig
    }

    /// `https://127.0.0.1:<port>`.
    pub fn apiserver_url(&self) -> &str {
        &self.coords.apiserver_url
    }

    /// The CA certificate of the apiserver (PEM file).
    pub fn ca_cert_path(&self) -> &Path {
        &self.coords.ca_cert
    }

    /// The NATS URL, `nats://127.0.0.1:<port>`.
    pub fn nats_url(&self) -> &str {
        &self.coords.nats_url
    }

    /// The run directory (PKI, kubeconfigs, logs, pod directories).
    pub fn run_dir(&self) -> &Path {
        &self.coords.run_dir
    }

    /// A `kubectl` command (the cached v1.37.2 binary) using the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(&self.coords.kubectl);
        cmd.arg("--kubeconfig").arg(&self.coords.kubeconfig);
        cmd
    }

    /// The apiserver's audit log.
    pub fn audit_log(&self) -> AuditLog {
        AuditLog::new(&self.coords.audit_log)
    }

    /// Component name → log file.
    pub fn component_logs(&self) -> &BTreeMap<String, PathBuf> {
        &self.coords.logs
    }

    /// The process-kubelet (panics if the environment runs without one).
    pub fn kubelet(&self) -> KubeletRef {
        let node_name = self
            .coords
            .node_name
            .clone()
            .expect("this environment runs without a kubelet");
        KubeletRef {
            node_name,
            images_dir: self.coords.images_dir.clone(),
            pods_dir: self.coords.pods_dir.clone(),
            log: self.coords.logs.get("kubelet").cloned().unwrap_or_default(),
        }
    }

    /// Creates a namespace named `<prefix>-<random>` and waits until its `default` ServiceAccount
    /// exists (pods are rejected before). The returned guard deletes it when the test passes and
    /// prints the environment's diagnostics when the test fails (panics).
    pub async fn new_namespace(&self, prefix: &str) -> Result<TestNamespace, Error> {
        let client = self.admin_client();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let mut ns = Namespace::default();
        ns.metadata.generate_name = Some(format!("{}-", prefix.trim_end_matches('-')));
        ns.metadata.labels = Some([("weft.test/e2e".to_string(), "true".to_string())].into());
        let created = namespaces
            .create(&PostParams::default(), &ns)
            .await
            .map_err(Error::kube("create namespace"))?;
        let name = created
            .metadata
            .name
            .expect("the server names a generated namespace");
        let service_accounts: Api<ServiceAccount> = Api::namespaced(client, &name);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if service_accounts
                .get_opt("default")
                .await
                .map_err(Error::kube("get default SA"))?
                .is_some()
            {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Env(format!(
                    "namespace {name} got no `default` ServiceAccount within 30 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(TestNamespace {
            name,
            coords: self.coords.clone(),
            admin_config: self.admin_config.clone(),
        })
    }

    /// Mints a token for ServiceAccount `namespace/name` with the TokenRequest API (the account
    /// must exist). `ttl` is at least 10 minutes (the apiserver's minimum).
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        ttl: Duration,
    ) -> Result<String, Error> {
        let api: Api<ServiceAccount> = Api::namespaced(self.admin_client(), namespace);
        kubeconfig::service_account_token(&api, name, ttl, None).await
    }

    /// Writes a kubeconfig that authenticates with only a fresh token of ServiceAccount
    /// `namespace/name` (valid 24 h), for running a component as a subprocess with exactly the RBAC
    /// it ships.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf, Error> {
        let token = self
            .service_account_token(namespace, name, Duration::from_secs(24 * 3600))
            .await?;
        let dir = self.coords.run_dir.join("sa-kubeconfigs");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let path = dir.join(format!("{namespace}.{name}.kubeconfig"));
        let yaml = kubeconfig::render(
            name,
            &self.coords.apiserver_url,
            &self.coords.ca_cert,
            &Credentials::Token(&token),
        );
        std::fs::write(&path, yaml).map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        Ok(path)
    }

    /// A client that authenticates with only a token of ServiceAccount `namespace/name`: every call is
    /// authorized by RBAC as `system:serviceaccount:<namespace>:<name>`.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> Result<Client, Error> {
        let config = self.service_account_config(namespace, name).await?;
        Client::try_from(config).map_err(Error::kube("ServiceAccount client"))
    }

    /// The client configuration behind [`Env::service_account_client`].
    pub async fn service_account_config(&self, namespace: &str, name: &str) -> Result<kube::Config, Error> {
        let path = self.service_account_kubeconfig(namespace, name).await?;
        kubeconfig::load(&path).await
    }

    /// A guard that prints [`Env::diagnostics`] if the test panics (for tests without a
    /// [`TestNamespace`]).
    pub fn failure_guard(&self, namespace: Option<&str>) -> FailureGuard {
        FailureGuard {
            coords: self.coords.clone(),
            namespace: namespace.map(str::to_string),
        }
    }

    /// The end of every component log, the kubelet's lines about `namespace`, and the logs of the
    /// namespace's pod containers: what a failing test prints.
    pub fn diagnostics(&self, namespace: Option<&str>) -> String {
        diagnostics(&self.coords, namespace)
    }
}

/// The end of every component log, the kubelet's lines about `namespace` and its pods' container logs.
fn diagnostics(coords: &Coordinates, namespace: Option<&str>) -> String {
    let mut out = format!(
        "==== weft-e2e environment (run dir {}) ====\n",
        coords.run_dir.display()
    );
    for (name, path) in &coords.logs {
        let tail = weft_testkit::read_tail(path, 6 * 1024);
        out.push_str(&format!(
            "---- {name}: {} (last 6 KiB) ----\n{tail}\n",
            path.display()
        ));
    }
    if let Some(ns) = namespace {
        if let Some(log) = coords.logs.get("kubelet") {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let needle = format!("{ns}/");
            let lines: Vec<&str> = text.lines().filter(|l| l.contains(&needle)).collect();
            let from = lines.len().saturating_sub(60);
            out.push_str(&format!(
                "---- kubelet lines about {ns} ----\n{}\n",
                lines[from..].join("\n")
            ));
        }
        let prefix = format!("{ns}_");
        if let Ok(entries) = std::fs::read_dir(&coords.pods_dir) {
            for pod_dir in entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            {
                for log in std::fs::read_dir(pod_dir.path()).into_iter().flatten().flatten() {
                    if log.path().extension().is_some_and(|e| e == "log") {
                        let tail = weft_testkit::read_tail(&log.path(), 4 * 1024);
                        out.push_str(&format!("---- {} ----\n{tail}\n", log.path().display()));
                    }
                }
            }
        }
    }
    out
}

/// A namespace for one test. Dropped after a pass: deleted (with everything in it). Dropped while the
/// test panics: kept, and the environment's diagnostics are printed.
#[derive(Debug)]
pub struct TestNamespace {
    name: String,
    coords: Coordinates,
    admin_config: kube::Config,
}

impl TestNamespace {
    /// The namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::ops::Deref for TestNamespace {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            report_failure(&self.coords, Some(&self.name));
            return;
        }
        // Delete on a separate thread with its own runtime: drop may run inside (or outside) a test's
        // runtime, where blocking on a future is not allowed.
        let config = self.admin_config.clone();
        let name = self.name.clone();
        let deleting = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let client = Client::try_from(config).ok()?;
                let namespaces: Api<Namespace> = Api::all(client);
                namespaces.delete(&name, &DeleteParams::background()).await.ok()
            })
        });
        let _ = deleting.join();
    }
}

/// Prints the environment's diagnostics if dropped while the thread panics.
#[derive(Debug)]
pub struct FailureGuard {
    coords: Coordinates,
    namespace: Option<String>,
}

impl Drop for FailureGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            report_failure(&self.coords, self.namespace.as_deref());
        }
    }
}

fn report_failure(coords: &Coordinates, namespace: Option<&str>) {
    ANY_TEST_FAILED.store(true, Ordering::SeqCst);
    eprintln!("{}", diagnostics(coords, namespace));
}

/// The process-kubelet of an environment: its Node, image mappings and pod directories. Works from
/// any process on the machine (the kubelet may run in another one, e.g. `weft-dev`).
#[derive(Debug, Clone)]
pub struct KubeletRef {
    node_name: String,
    images_dir: PathBuf,
    pods_dir: PathBuf,
    log: PathBuf,
}

impl KubeletRef {
    /// The Node the kubelet registered; every pod is bound to it.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Maps an image to a local command for every container started from now on (a file in the
    /// environment's image directory, so it also reaches a kubelet in another process).
    pub fn register_image(&self, image: &ImageCommand) -> Result<(), Error> {
        images::register(&self.images_dir, image)
    }

    /// The directory of a pod (its containers' working directory and `<container>.log` files).
    pub fn pod_dir(&self, pod: &Pod) -> PathBuf {
        self.pods_dir.join(crate::kubelet::pod_dir_name(pod))
    }

    /// The log file (stdout and stderr) of a container of `pod`.
    pub fn container_log(&self, pod: &Pod, container: &str) -> PathBuf {
        self.pod_dir(pod).join(format!("{container}.log"))
    }

    /// The kubelet's own log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The pods bound to the kubelet's node, in all namespaces.
    pub async fn pods(&self, client: Client) -> Result<Vec<Pod>, Error> {
        let pods: Api<Pod> = Api::all(client);
        let params = ListParams::default().fields(&format!("spec.nodeName={}", self.node_name));
        Ok(pods.list(&params).await.map_err(Error::kube("list pods"))?.items)
    }
}

/// Starts an environment on a dedicated thread that lives as long as the process, and arranges for
/// it to be stopped at exit.
async fn start_in_process() -> Result<Env, Error> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    weft_testkit::owned::reap_all_at_exit(Duration::from_secs(3), remove_owned_run_dir);
    std::thread::Builder::new()
        .name("weft-e2e-env".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("weft-e2e-env-rt")
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = tx.send(Err(Error::io("build the environment's runtime", e)));
                    return;
                }
            };
            runtime.block_on(async move {
                match RunningEnv::start(EnvOptions::default()).await {
                    Ok(env) => {
                        let _ = OWNED_RUN_DIR.set(env.coordinates().run_dir.clone());
                        let _ = tx.send(Ok(env.coordinates().clone()));
                        // Serve (the kubelet runs on this runtime) until the process exits.
                        std::future::pending::<()>().await;
                        drop(env);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(|e| Error::io("start the environment thread", e))?;
    let coords = rx
        .await
        .map_err(|_| Error::Env("the environment thread exited".into()))??;
    Env::from_coordinates(coords).await
}

/// Runs at exit after the children are stopped.
fn remove_owned_run_dir() {
    let Some(dir) = OWNED_RUN_DIR.get() else { return };
    if ANY_TEST_FAILED.load(Ordering::SeqCst) || std::env::var_os("WEFT_E2E_KEEP").is_some() {
        eprintln!("weft-e2e: kept the environment's logs in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
}
