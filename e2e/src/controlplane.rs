//! Starting and stopping the environment's processes: etcd → kube-apiserver → kube-controller-manager,
//! nats-server, and the process-kubelet.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use serde::{Deserialize, Serialize};
use weft_testkit::{NatsServer, Supervised, free_port, testbin};

use crate::kubeconfig::{self, Credentials};
use crate::kubelet::{self, KubeletConfig, KubeletHandle};
use crate::{Error, ImageCommand, audit, pki};

/// The Kubernetes version of the binaries (and what the kubelet reports).
pub const KUBERNETES_VERSION: &str = "v1.37.2";
/// The Node the process-kubelet registers.
pub const NODE_NAME: &str = "weft-node-0";
/// Prefix of run directories (`<base>/weft-e2e-<pid>-<n>`).
const RUN_DIR_PREFIX: &str = "weft-e2e-";

/// How to start an environment.
#[derive(Debug, Clone)]
pub struct EnvOptions {
    /// Where run directories are created: `$WEFT_E2E_RUN_BASE`, else `/dev/shm` (tmpfs: etcd's data
    /// needs no disk), else the system temp dir.
    pub run_base: PathBuf,
    /// Whether to run the process-kubelet.
    pub kubelet: bool,
    /// Image mappings for the kubelet besides the built-in test images and the registered ones.
    pub images: Vec<ImageCommand>,
    /// How long each component may take to become ready.
    pub start_timeout: Duration,
}

impl Default for EnvOptions {
    fn default() -> Self {
        let run_base = std::env::var_os("WEFT_E2E_RUN_BASE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let shm = PathBuf::from("/dev/shm");
                if shm.is_dir() { shm } else { std::env::temp_dir() }
            });
        Self {
            run_base,
            kubelet: true,
            images: Vec::new(),
            start_timeout: Duration::from_secs(60),
        }
    }
}

/// Where everything of a running environment is: written to `<run_dir>/env.json`, which is what
/// `WEFT_E2E_ENV` points at.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Coordinates {
    /// The run directory (PKI, kubeconfigs, logs, etcd data, pod directories).
    pub run_dir: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub apiserver_url: String,
    /// The CA certificate (PEM) that signed the apiserver's serving certificate.
    pub ca_cert: PathBuf,
    /// Admin kubeconfig (client certificate, group `system:masters`).
    pub kubeconfig: PathBuf,
    /// `nats://127.0.0.1:<port>`.
    pub nats_url: String,
    /// The apiserver audit log (JSON lines).
    pub audit_log: PathBuf,
    /// Component name → log file (etcd, kube-apiserver, kube-controller-manager, nats-server, kubelet).
    pub logs: BTreeMap<String, PathBuf>,
    /// Component name → process id.
    pub pids: BTreeMap<String, u32>,
    /// The cached `kubectl` binary.
    pub kubectl: PathBuf,
    /// The process-kubelet's Node, if it runs.
    pub node_name: Option<String>,
    /// The block its pods' IPs come from (the Node's `podCIDR`), if it runs.
    #[serde(default)]
    pub pod_cidr: Option<String>,
    /// Directory of registered image mappings (one JSON [`ImageCommand`] per file).
    pub images_dir: PathBuf,
    /// Directory of per-pod directories (container logs, working directories).
    pub pods_dir: PathBuf,
    /// How long the start took.
    pub start_millis: u64,
}

impl Coordinates {
    /// Reads `env.json`.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        serde_json::from_str(&text).map_err(|e| Error::Env(format!("{}: {e}", path.display())))
    }

    /// The path of `env.json` in the run directory.
    pub fn file(&self) -> PathBuf {
        self.run_dir.join("env.json")
    }
}

/// An environment whose processes this process owns. Dropping it stops them abruptly; prefer
/// [`RunningEnv::stop`].
pub struct RunningEnv {
    coords: Coordinates,
    kubelet: Option<KubeletHandle>,
    kcm: Supervised,
    nats: NatsServer,
    apiserver: Supervised,
    /// The apiserver's command line, to start it again ([`RunningEnv::restart_apiserver`]).
    apiserver_args: Vec<String>,
    apiserver_restarts: u32,
    etcd: Supervised,
    keep_run_dir: bool,
}

impl std::fmt::Debug for RunningEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningEnv")
            .field("coords", &self.coords)
            .finish_non_exhaustive()
    }
}

impl RunningEnv {
    /// Starts etcd, kube-apiserver, kube-controller-manager, nats-server and (optionally) the
    /// process-kubelet, and writes `env.json`. Stale run directories of dead processes are removed first.
    pub async fn start(options: EnvOptions) -> Result<Self, Error> {
        let started = Instant::now();
        sweep_stale_run_dirs(&options.run_base);
        let run_dir = new_run_dir(&options.run_base)?;
        let result = Self::start_in(&run_dir, &options, started).await;
        if result.is_err() && std::env::var_os("WEFT_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&run_dir);
        }
        result
    }

    async fn start_in(run_dir: &Path, options: &EnvOptions, started: Instant) -> Result<Self, Error> {
        let logs_dir = run_dir.join("logs");
        let images_dir = run_dir.join("images");
        let pods_dir = run_dir.join("pods");
        for dir in [&logs_dir, &images_dir, &pods_dir] {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        }
        let pki = pki::generate(&run_dir.join("pki"))?;
        let timeout = options.start_timeout;

        // nats-server is independent of everything else.
        let nats_dir = logs_dir.clone();
        let nats = tokio::task::spawn_blocking(move || NatsServer::start_in(&nats_dir, free_port()));

        let (etcd, etcd_port) = start_etcd(run_dir, &logs_dir, timeout).await?;

        let apiserver_port = free_port();
        let apiserver_url = format!("https://127.0.0.1:{apiserver_port}");
        let kubeconfig_for = |stem: &str| -> Result<PathBuf, Error> {
            let path = run_dir.join(format!("{stem}.kubeconfig"));
            let creds = Credentials::ClientCert {
                cert: &pki.client_cert(stem),
                key: &pki.client_key(stem),
            };
            let yaml = kubeconfig::render("weft-e2e", &apiserver_url, &pki.ca_cert(), &creds);
            std::fs::write(&path, yaml).map_err(|e| Error::io(format!("write {}", path.display()), e))?;
            Ok(path)
        };
        let admin_kubeconfig = kubeconfig_for("admin")?;
        let kcm_kubeconfig = kubeconfig_for("controller-manager")?;
        let kubelet_kubeconfig = kubeconfig_for("kubelet")?;

        let audit_log = logs_dir.join("audit.log");
        let audit_policy = run_dir.join("audit-policy.yaml");
        std::fs::write(&audit_policy, audit::POLICY)
            .map_err(|e| Error::io(format!("write {}", audit_policy.display()), e))?;

        let apiserver_args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={apiserver_port}"),
            "--advertise-address=127.0.0.1".into(),
            "--endpoint-reconciler-type=none".into(),
            format!("--cert-dir={}", run_dir.join("apiserver").display()),
            format!("--tls-cert-file={}", pki.apiserver_cert().display()),
            format!("--tls-private-key-file={}", pki.apiserver_key().display()),
            format!("--client-ca-file={}", pki.ca_cert().display()),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", pki.sa_pub().display()),
            format!("--service-account-signing-key-file={}", pki.sa_key().display()),
            "--authorization-mode=RBAC".into(),
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
            "--allow-privileged=true".into(),
            format!("--audit-policy-file={}", audit_policy.display()),
            format!("--audit-log-path={}", audit_log.display()),
            "--audit-log-mode=blocking".into(),
            "--max-requests-inflight=1000".into(),
            "--max-mutating-requests-inflight=500".into(),
            "--v=1".into(),
        ];
        let mut cmd = Command::new(testbin("kube-apiserver")?);
        cmd.args(&apiserver_args);
        let apiserver_log = logs_dir.join("kube-apiserver.log");
        let mut apiserver = Supervised::spawn("kube-apiserver", cmd, &apiserver_log)?;
        let admin_config = kubeconfig::load(&admin_kubeconfig).await?;
        let admin = kube::Client::try_from(admin_config).map_err(Error::kube("admin client"))?;
        wait_ready("kube-apiserver", &mut apiserver, timeout, || {
            let admin = admin.clone();
            async move {
                let req = http_get("/readyz");
                admin
                    .request_text(req)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await?;

        let kcm_port = free_port();
        let mut cmd = Command::new(testbin("kube-controller-manager")?);
        cmd.args([
            format!("--kubeconfig={}", kcm_kubeconfig.display()),
            "--leader-elect=false".into(),
            "--controllers=*,-node-lifecycle-controller".into(),
            format!("--service-account-private-key-file={}", pki.sa_key().display()),
            format!("--root-ca-file={}", pki.ca_cert().display()),
            format!("--cluster-signing-cert-file={}", pki.ca_cert().display()),
            format!("--cluster-signing-key-file={}", pki.ca_key().display()),
            "--use-service-account-credentials=true".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={kcm_port}"),
            format!("--cert-dir={}", run_dir.join("controller-manager").display()),
            "--v=1".into(),
        ]);
        let kcm_log = logs_dir.join("kube-controller-manager.log");
        let mut kcm = Supervised::spawn("kube-controller-manager", cmd, &kcm_log)?;

        // The kubelet needs only the apiserver; start it while the controller-manager comes up.
        let kubelet_log = logs_dir.join("kubelet.log");
        let kubelet = if options.kubelet {
            let config = kubeconfig::load(&kubelet_kubeconfig).await?;
            let client = kube::Client::try_from(config).map_err(Error::kube("kubelet client"))?;
            let mut kubelet_config = KubeletConfig::new(NODE_NAME, &pods_dir, &images_dir, &kubelet_log);
            kubelet_config.extra_images = options.images.clone();
            kubelet_config.api_server = Some(kubelet::ApiServerAccess {
                url: apiserver_url.clone(),
                ca_cert: pki.ca_cert(),
            });
            Some(kubelet::start(client, kubelet_config).await?)
        } else {
            None
        };

        // The controller-manager is ready for tests once its ServiceAccount controller works: new
        // namespaces then get their `default` ServiceAccount, which pod admission requires.
        let service_accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
        wait_ready("kube-controller-manager", &mut kcm, timeout, || {
            let service_accounts = service_accounts.clone();
            async move {
                match service_accounts.get_opt("default").await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err("no `default` ServiceAccount in namespace default yet".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await?;

        let nats = nats
            .await
            .map_err(|e| Error::Env(format!("nats-server start task: {e}")))??;

        let mut logs = BTreeMap::new();
        logs.insert("etcd".to_string(), etcd.log_path().to_path_buf());
        logs.insert("kube-apiserver".to_string(), apiserver_log);
        logs.insert("kube-controller-manager".to_string(), kcm_log);
        logs.insert("nats-server".to_string(), nats.log_path().to_path_buf());
        if kubelet.is_some() {
            logs.insert("kubelet".to_string(), kubelet_log);
        }
        let mut pids = BTreeMap::new();
        pids.insert("etcd".to_string(), etcd.pid());
        pids.insert("kube-apiserver".to_string(), apiserver.pid());
        pids.insert("kube-controller-manager".to_string(), kcm.pid());
        pids.insert("nats-server".to_string(), nats.pid());
        let coords = Coordinates {
            run_dir: run_dir.to_path_buf(),
            apiserver_url,
            ca_cert: pki.ca_cert(),
            kubeconfig: admin_kubeconfig,
            nats_url: nats.url(),
            audit_log,
            logs,
            pids,
            kubectl: testbin("kubectl")?,
            node_name: kubelet.as_ref().map(|_| NODE_NAME.to_string()),
            pod_cidr: kubelet.as_ref().map(|k| k.pod_cidr().to_string()),
            images_dir,
            pods_dir,
            start_millis: started.elapsed().as_millis() as u64,
        };
        let json = serde_json::to_string_pretty(&coords).expect("coordinates serialize");
        std::fs::write(coords.file(), json).map_err(|e| Error::io("write env.json", e))?;
        Ok(Self {
            coords,
            kubelet,
            kcm,
            nats,
            apiserver,
            apiserver_args,
            apiserver_restarts: 0,
            etcd,
            keep_run_dir: false,
        })
    }

    /// Where everything is.
    pub fn coordinates(&self) -> &Coordinates {
        &self.coords
    }

    /// The process-kubelet, if it runs.
    pub fn kubelet(&self) -> Option<&KubeletHandle> {
        self.kubelet.as_ref()
    }

    /// Each component process and whether it is still running.
    pub fn component_status(&mut self) -> Vec<(&'static str, bool)> {
        vec![
            ("etcd", self.etcd.is_running()),
            ("kube-apiserver", self.apiserver.is_running()),
            ("kube-controller-manager", self.kcm.is_running()),
            ("nats-server", self.nats.is_running()),
        ]
    }

    /// Restarts kube-apiserver the way a control-plane upgrade does: SIGTERM (it drains), then the same
    /// command line again (same port, certificates and etcd), and waits until `/readyz` answers.
    /// Clients see their watches end and their requests refused meanwhile. Returns how long the API was
    /// unavailable (from the SIGTERM to ready). The new log is `kube-apiserver-<n>.log`.
    pub async fn restart_apiserver(&mut self, timeout: Duration) -> Result<Duration, Error> {
        let stopped_at = Instant::now();
        self.apiserver.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.apiserver.is_running() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.apiserver.is_running() {
            self.apiserver.signal(libc::SIGKILL);
            while self.apiserver.is_running() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.apiserver_restarts += 1;
        let log = self
            .coords
            .run_dir
            .join("logs")
            .join(format!("kube-apiserver-{}.log", self.apiserver_restarts));
        let mut cmd = Command::new(testbin("kube-apiserver")?);
        cmd.args(&self.apiserver_args);
        self.apiserver = Supervised::spawn("kube-apiserver", cmd, &log)?;
        let admin = kube::Client::try_from(kubeconfig::load(&self.coords.kubeconfig).await?)
            .map_err(Error::kube("admin client"))?;
        wait_ready("kube-apiserver", &mut self.apiserver, timeout, || {
            let admin = admin.clone();
            async move {
                admin
                    .request_text(http_get("/readyz"))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await?;
        let down = stopped_at.elapsed();
        let pid = self.apiserver.pid();
        self.record_component("kube-apiserver", pid, &log)?;
        Ok(down)
    }

    /// Records a process that runs next to the environment (e.g. the operator) in the coordinates and
    /// `env.json`: its log joins the diagnostics of failing tests, its pid the component pids.
    pub fn record_component(&mut self, name: &str, pid: u32, log: &Path) -> Result<(), Error> {
        self.coords.logs.insert(name.to_string(), log.to_path_buf());
        self.coords.pids.insert(name.to_string(), pid);
        // Readers may load env.json at any time: replace it atomically.
        let json = serde_json::to_string_pretty(&self.coords).expect("coordinates serialize");
        let tmp = self.coords.run_dir.join(".env.json.tmp");
        std::fs::write(&tmp, json).map_err(|e| Error::io("write env.json", e))?;
        std::fs::rename(&tmp, self.coords.file()).map_err(|e| Error::io("replace env.json", e))
    }

    /// Keeps the run directory (logs, audit log) after [`RunningEnv::stop`].
    pub fn keep_run_dir(&mut self, keep: bool) {
        self.keep_run_dir = keep;
    }

    /// Stops everything in reverse start order (pods get SIGTERM and up to `pod_grace`), then removes
    /// the run directory unless asked to keep it or `WEFT_E2E_KEEP` is set.
    pub async fn stop(mut self, pod_grace: Duration) {
        if let Some(kubelet) = self.kubelet.take() {
            kubelet.shutdown(pod_grace).await;
        }
        let Self {
            coords,
            mut kcm,
            mut nats,
            mut apiserver,
            mut etcd,
            keep_run_dir,
            ..
        } = self;
        tokio::task::spawn_blocking(move || {
            kcm.stop(Duration::from_secs(5));
            nats.stop();
            apiserver.stop(Duration::from_secs(10));
            etcd.stop(Duration::from_secs(5));
        })
        .await
        .ok();
        if !keep_run_dir && std::env::var_os("WEFT_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&coords.run_dir);
        }
    }
}

fn http_get(path: &str) -> http::Request<Vec<u8>> {
    http::Request::get(path)
        .body(Vec::new())
        .expect("a static request is valid")
}

async fn start_etcd(run_dir: &Path, logs_dir: &Path, timeout: Duration) -> Result<(Supervised, u16), Error> {
    let bin = testbin("etcd")?;
    let mut last_error = None;
    // A port picked free can be taken before etcd binds it; retry with new ports.
    for _ in 0..3 {
        let (client_port, peer_port) = (free_port(), free_port());
        let data = run_dir.join("etcd");
        let _ = std::fs::remove_dir_all(&data);
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--name=weft".to_string(),
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls=http://127.0.0.1:{client_port}"),
            format!("--advertise-client-urls=http://127.0.0.1:{client_port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-cluster=weft=http://127.0.0.1:{peer_port}"),
            "--unsafe-no-fsync=true".to_string(),
            "--log-level=warn".to_string(),
        ]);
        let mut etcd = Supervised::spawn("etcd", cmd, &logs_dir.join("etcd.log"))?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], client_port));
        let ready = wait_ready("etcd", &mut etcd, timeout, || {
            crate::net::answers_200(addr, "/readyz")
        })
        .await;
        match ready {
            Ok(()) => return Ok((etcd, client_port)),
            Err(e) if e.to_string().contains("address already in use") => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.expect("three attempts failed"))
}

/// Polls `check` every 100 ms until it succeeds, the process exits, or `timeout` passes.
pub(crate) async fn wait_ready<F, Fut>(
    component: &str,
    process: &mut Supervised,
    timeout: Duration,
    mut check: F,
) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    let mut reason;
    loop {
        if !process.is_running() {
            reason = "the process exited".to_string();
            break;
        }
        match check().await {
            Ok(()) => return Ok(()),
            Err(e) => reason = e,
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::NotReady {
        component: component.to_string(),
        timeout,
        reason,
        log: process.log_tail(8192),
    })
}

fn new_run_dir(base: &Path) -> Result<PathBuf, Error> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let dir = base.join(format!(
        "{RUN_DIR_PREFIX}{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    Ok(dir)
}

/// Removes run directories whose owning process (the pid in the name) is gone.
pub(crate) fn sweep_stale_run_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = owner_pid(&name.to_string_lossy()) else {
            continue;
        };
        if !process_alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The owner pid encoded in a run directory name.
fn owner_pid(dir_name: &str) -> Option<u32> {
    dir_name
        .strip_prefix(RUN_DIR_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_is_read_from_run_dir_names() {
        assert_eq!(owner_pid("weft-e2e-1234-0"), Some(1234));
        assert_eq!(owner_pid("weft-e2e-x-0"), None);
        assert_eq!(owner_pid("other-1234-0"), None);
    }

    #[test]
    fn sweep_removes_only_dirs_of_dead_owners() {
        let base = weft_testkit::TempDir::new("sweep").unwrap();
        let mine = base.path().join(format!("weft-e2e-{}-0", std::process::id()));
        // pid_max is at most 2^22, so this pid cannot exist.
        let dead = base.path().join("weft-e2e-999999999-0");
        let unrelated = base.path().join("something-else");
        for d in [&mine, &dead, &unrelated] {
            std::fs::create_dir_all(d).unwrap();
        }
        sweep_stale_run_dirs(base.path());
        assert!(mine.exists());
        assert!(!dead.exists());
        assert!(unrelated.exists());
    }
}
