//! One task per pod: runs its containers as processes, probes them, restarts them, reports status,
//! and carries out graceful deletion.

use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::BoundObjectReference;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Pod, PodCondition, PodStatus, Secret, ServiceAccount,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, ResourceExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weft_testkit::owned;

use super::images::{self, ImageCommand};
use super::probe::{self, ProbeSpec, ProbeTracker};
use super::restart::RestartPolicy;
use super::spec::{self, Lookups, PodFacts};
use super::status::{self, ContainerView, Exit, PodView, RunState};
use super::{PodMsg, PodSender, Shared};

/// The handle the kubelet keeps per pod.
#[derive(Debug)]
pub(crate) struct WorkerHandle {
    tx: PodSender,
    task: JoinHandle<()>,
}

impl WorkerHandle {
    pub(crate) fn spawn(shared: Arc<Shared>, pod: &Pod) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let worker = Worker::new(shared, pod);
        let task = tokio::spawn(worker.run(rx));
        Self { tx, task }
    }

    pub(crate) fn update(&self, pod: Pod) {
        let _ = self.tx.send(PodMsg::Update(Box::new(pod)));
    }

    /// The pod object is gone: kill what still runs, free the IP, end the task.
    pub(crate) fn gone(self) {
        let _ = self.tx.send(PodMsg::Gone);
    }

    pub(crate) async fn shutdown(self, grace: Duration) {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        if self.tx.send(PodMsg::Shutdown(grace, done_tx)).is_ok() {
            let _ = tokio::time::timeout(grace + Duration::from_secs(2), done_rx).await;
        }
        self.task.abort();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeKind {
    Readiness,
    Liveness,
}

#[derive(Debug)]
enum Internal {
    Exited {
        idx: usize,
        generation: u64,
        status: Result<ExitStatus, String>,
        at: Timestamp,
    },
    Probe {
        idx: usize,
        generation: u64,
        kind: ProbeKind,
        result: Result<(), String>,
    },
}

#[derive(Debug)]
struct Ctr {
    spec: Container,
    view: ContainerView,
    pid: Option<u32>,
    generation: u64,
    started: Option<Instant>,
    streak: u32,
    restart_at: Option<Instant>,
    probes: Option<JoinHandle<()>>,
    readiness: Option<ProbeTracker>,
    liveness: Option<ProbeTracker>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FinalDelete {
    NotYet,
    RetryAt(Instant),
    Done,
}

#[derive(Debug)]
struct Termination {
    kill_at: Instant,
    killed: bool,
}

struct Worker {
    shared: Arc<Shared>,
    api: Api<Pod>,
    key: String,
    uid: String,
    pod: Pod,
    dir: PathBuf,
    ip: Option<Ipv4Addr>,
    start_time: Timestamp,
    started: bool,
    containers: Vec<Ctr>,
    events_tx: mpsc::UnboundedSender<Internal>,
    events_rx: Option<mpsc::UnboundedReceiver<Internal>>,
    termination: Option<Termination>,
    final_delete: FinalDelete,
    last_status: Option<PodStatus>,
    status_retry_at: Option<Instant>,
}

impl Worker {
    fn new(shared: Arc<Shared>, pod: &Pod) -> Self {
        let namespace = pod.namespace().unwrap_or_default();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let containers = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .map(|c| Ctr {
                spec: c.clone(),
                view: ContainerView {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    image_id: String::new(),
                    state: RunState::Waiting {
                        reason: "ContainerCreating".into(),
                        message: None,
                    },
                    last_exit: None,
                    restart_count: 0,
                },
                pid: None,
                generation: 0,
                started: None,
                streak: 0,
                restart_at: None,
                probes: None,
                readiness: None,
                liveness: None,
            })
            .collect();
        Self {
            api: Api::namespaced(shared.client.clone(), &namespace),
            key: format!("{namespace}/{}", pod.name_any()),
            uid: pod.uid().unwrap_or_default(),
            dir: shared.config.pods_dir.join(super::pod_dir_name(pod)),
            shared,
            pod: pod.clone(),
            ip: None,
            start_time: Timestamp::now(),
            started: false,
            containers,
            events_tx,
            events_rx: Some(events_rx),
            termination: None,
            final_delete: FinalDelete::NotYet,
            last_status: None,
            status_retry_at: None,
        }
    }

    fn log(&self, message: impl std::fmt::Display) {
        self.shared.log.line(&self.key, message);
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<PodMsg>) {
        let mut events = self.events_rx.take().expect("receiver taken once");
        loop {
            let wake = self.next_wakeup();
            let sleep =
                tokio::time::sleep_until(wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)));
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(PodMsg::Update(pod)) => self.on_update(*pod).await,
                    Some(PodMsg::Gone) | None => {
                        self.on_gone();
                        return;
                    }
                    Some(PodMsg::Shutdown(grace, done)) => {
                        self.stop_all(grace, &mut events).await;
                        let _ = done.send(());
                        return;
                    }
                },
                Some(event) = events.recv() => self.on_internal(event),
                _ = sleep, if wake.is_some() => self.on_timer().await,
            }
            self.after_change().await;
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let restarts = self.containers.iter().filter_map(|c| c.restart_at);
        let kill = self.termination.as_ref().filter(|t| !t.killed).map(|t| t.kill_at);
        let retry = match self.final_delete {
            FinalDelete::RetryAt(at) => Some(at),
            _ => None,
        };
        restarts
            .chain(kill)
            .chain(retry)
            .chain(self.status_retry_at)
            .min()
    }

    async fn on_update(&mut self, pod: Pod) {
        self.pod = pod;
        if self.final_delete == FinalDelete::Done {
            return;
        }
        if self.pod.metadata.deletion_timestamp.is_some() {
            if self.termination.is_none() {
                self.begin_termination();
            }
            return;
        }
        if !self.started {
            self.started = true;
            let phase = self.pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded" | "Failed")) {
                return;
            }
            self.start_pod().await;
        }
    }

    async fn start_pod(&mut self) {
        let ip = self
            .shared
            .ipam
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allocate(&self.uid);
        let Some(ip) = ip else {
            self.log("no free pod IP");
            return;
        };
        self.ip = Some(ip);
        if let Err(e) = std::fs::create_dir_all(&self.dir) {
            self.log(format!("cannot create {}: {e}", self.dir.display()));
        }
        let init = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .map_or(0, Vec::len);
        if init > 0 {
            self.log(format!(
                "skipping {init} init container(s): not supported by the process-kubelet"
            ));
        }
        self.log(format!("starting with IP {ip}"));
        for idx in 0..self.containers.len() {
            self.start_container(idx).await;
        }
    }

    fn image_candidates(&self) -> Vec<ImageCommand> {
        let (mut candidates, problems) = images::load_registered(&self.shared.config.images_dir);
        for problem in problems {
            self.log(format!("ignoring image mapping {problem}"));
        }
        candidates.extend(self.shared.config.extra_images.iter().cloned());
        candidates.extend(images::builtin());
        candidates
    }

    async fn lookups(&self, container: &Container) -> Lookups {
        let namespace = self.pod.namespace().unwrap_or_default();
        let (config_map_names, secret_names) = spec::referenced_objects(container);
        let mut lookups = Lookups::default();
        let config_maps: Api<ConfigMap> = Api::namespaced(self.shared.client.clone(), &namespace);
        for name in config_map_names {
            if let Ok(Some(cm)) = config_maps.get_opt(&name).await {
                lookups.config_maps.insert(name, cm.data.unwrap_or_default());
            }
        }
        let secrets: Api<Secret> = Api::namespaced(self.shared.client.clone(), &namespace);
        for name in secret_names {
            if let Ok(Some(secret)) = secrets.get_opt(&name).await {
                let data = secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect();
                lookups.secrets.insert(name, data);
            }
        }
        lookups
    }

    /// Writes `<pod dir>/serviceaccount.kubeconfig` with a fresh token of the pod's ServiceAccount,
    /// bound to the pod (it stops working when the pod is gone) and valid 24 h, when the kubelet knows
    /// the apiserver and the pod wants the token. It stands in for the projected token volume and
    /// `KUBERNETES_SERVICE_HOST`; every container start mints a new one (there is no rotation).
    async fn service_account_kubeconfig(&self) -> Result<Option<PathBuf>, String> {
        let Some(api_server) = self.shared.config.api_server.as_ref() else {
            return Ok(None);
        };
        let namespace = self.pod.namespace().unwrap_or_default();
        let name = spec::service_account_name(&self.pod);
        let accounts: Api<ServiceAccount> = Api::namespaced(self.shared.client.clone(), &namespace);
        let account = match accounts.get_opt(name).await {
            Ok(Some(account)) => account,
            Ok(None) => return Err(format!("ServiceAccount {namespace}/{name} not found")),
            Err(e) => return Err(format!("get ServiceAccount {namespace}/{name}: {e}")),
        };
        if !spec::token_wanted(&self.pod, account.automount_service_account_token) {
            return Ok(None);
        }
        let bound_to = BoundObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(self.pod.name_any()),
            uid: Some(self.uid.clone()),
        };
        let ttl = Duration::from_secs(24 * 3600);
        let token = crate::kubeconfig::service_account_token(&accounts, name, ttl, Some(bound_to))
            .await
            .map_err(|e| e.to_string())?;
        let path = self.dir.join("serviceaccount.kubeconfig");
        let yaml = crate::kubeconfig::render(
            name,
            &api_server.url,
            &api_server.ca_cert,
            &crate::kubeconfig::Credentials::Token(&token),
        );
        std::fs::write(&path, yaml).map_err(|e| format!("write {}: {e}", path.display()))?;
        Ok(Some(path))
    }

    /// Leaves a container waiting with `reason` and retries it after the back-off.
    fn wait_and_retry(&mut self, idx: usize, reason: &str, message: String) {
        let backoff = self.shared.config.backoff;
        let ctr = &mut self.containers[idx];
        let (delay, streak) = backoff.next_delay(ctr.streak, Duration::ZERO);
        ctr.streak = streak;
        ctr.restart_at = Some(Instant::now() + delay);
        ctr.view.state = RunState::Waiting {
            reason: reason.into(),
            message: Some(message.clone()),
        };
        let name = ctr.spec.name.clone();
        self.log(format!(
            "container {name}: {reason}: {message} (retry in {delay:?})"
        ));
    }

    async fn start_container(&mut self, idx: usize) {
        let Some(ip) = self.ip else { return };
        let container = self.containers[idx].spec.clone();
        let image_ref = container.image.clone().unwrap_or_default();
        let candidates = self.image_candidates();
        let Some(image) = images::find(&image_ref, &candidates).cloned() else {
            let message = format!(
                "no local command for image {image_ref:?}: register one (weft_e2e::KubeletRef::register_image, \
                 weft-dev --image) or use {}",
                images::TESTPOD_IMAGE
            );
            return self.wait_and_retry(idx, "ErrImagePull", message);
        };
        let lookups = self.lookups(&container).await;
        let facts = PodFacts {
            pod: &self.pod,
            pod_ip: ip,
            host_ip: self.shared.config.host_ip,
            node_name: &self.shared.config.node_name,
            node_cpus: self.shared.node_cpus,
            node_memory: self.shared.node_memory,
        };
        let mut launch = match spec::launch(&facts, &container, &image, &lookups) {
            Ok(launch) => launch,
            Err(e) => return self.wait_and_retry(idx, "CreateContainerConfigError", e.to_string()),
        };
        match self.service_account_kubeconfig().await {
            Ok(Some(path)) => spec::add_service_account_kubeconfig(&mut launch, &path.display().to_string()),
            Ok(None) => {}
            Err(message) => return self.wait_and_retry(idx, "CreateContainerConfigError", message),
        }
        let log_path = self.dir.join(format!("{}.log", container.name));
        let log = match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
        {
            Ok(log) => log,
            Err(e) => {
                return self.wait_and_retry(
                    idx,
                    "RunContainerError",
                    format!("open {}: {e}", log_path.display()),
                );
            }
        };
        let log_err = match log.try_clone() {
            Ok(l) => l,
            Err(e) => return self.wait_and_retry(idx, "RunContainerError", format!("clone log handle: {e}")),
        };
        let mut cmd = Command::new(&launch.program);
        cmd.args(&launch.args)
            .env_clear()
            .envs(launch.env.iter().cloned())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let mut child = match owned::spawn(cmd) {
            Ok(child) => child,
            Err(e) => {
                let message = format!("exec {}: {e}", launch.program);
                return self.wait_and_retry(idx, "RunContainerError", message);
            }
        };
        let pid = child.id();
        let ctr = &mut self.containers[idx];
        ctr.generation += 1;
        let generation = ctr.generation;
        let tx = self.events_tx.clone();
        std::thread::Builder::new()
            .name(format!("wait-{pid}"))
            .spawn(move || {
                let status = owned::wait(&mut child).map_err(|e| e.to_string());
                let _ = tx.send(Internal::Exited {
                    idx,
                    generation,
                    status,
                    at: Timestamp::now(),
                });
            })
            .expect("start a process-waiter thread");
        let readiness = container
            .readiness_probe
            .as_ref()
            .map(|p| probe::parse(p, &container));
        let liveness = container
            .liveness_probe
            .as_ref()
            .map(|p| probe::parse(p, &container));
        self.shared.stats.container_starts.fetch_add(1, Ordering::Relaxed);
        ctr.pid = Some(pid);
        ctr.started = Some(Instant::now());
        ctr.view.image_id = format!("local://{}", launch.program);
        ctr.view.state = RunState::Running {
            pid,
            started_at: Timestamp::now(),
            ready: readiness.is_none(),
        };
        ctr.readiness = readiness.as_ref().map(|s| ProbeTracker::new(s, false));
        ctr.liveness = liveness.as_ref().map(|s| ProbeTracker::new(s, true));
        if readiness.is_some() || liveness.is_some() {
            ctr.probes = Some(spawn_probes(
                idx,
                generation,
                ip,
                launch.env.clone(),
                readiness,
                liveness,
                self.events_tx.clone(),
            ));
        }
        let argv = std::iter::once(launch.program.as_str())
            .chain(launch.args.iter().map(String::as_str))
            .collect::<Vec<_>>();
        self.log(format!(
            "container {} started: pid {pid}, {argv:?}",
            container.name
        ));
    }

    fn on_internal(&mut self, event: Internal) {
        match event {
            Internal::Probe {
                idx,
                generation,
                kind,
                result,
            } => {
                let key = self.key.clone();
                let Some(ctr) = self
                    .containers
                    .get_mut(idx)
                    .filter(|c| c.generation == generation && c.pid.is_some())
                else {
                    return;
                };
                match kind {
                    ProbeKind::Readiness => {
                        let Some(tracker) = ctr.readiness.as_mut() else {
                            return;
                        };
                        let before = tracker.passing();
                        let now = tracker.record(result.is_ok());
                        if let RunState::Running { ready, .. } = &mut ctr.view.state {
                            *ready = now;
                        }
                        if before != now {
                            let why = result.err().map(|e| format!(": {e}")).unwrap_or_default();
                            self.shared
                                .log
                                .line(&key, format!("container {} ready={now}{why}", ctr.spec.name));
                        }
                    }
                    ProbeKind::Liveness => {
                        let Some(tracker) = ctr.liveness.as_mut() else {
                            return;
                        };
                        if !tracker.record(result.is_ok()) {
                            let why = result.err().unwrap_or_default();
                            self.shared.log.line(
                                &key,
                                format!(
                                    "container {} failed liveness probe, will be restarted: {why}",
                                    ctr.spec.name
                                ),
                            );
                            if let Some(pid) = ctr.pid {
                                owned::signal_group(pid, libc::SIGKILL);
                            }
                            if let Some(probes) = ctr.probes.take() {
                                probes.abort();
                            }
                        }
                    }
                }
            }
            Internal::Exited {
                idx,
                generation,
                status,
                at,
            } => {
                let policy =
                    RestartPolicy::parse(self.pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()));
                let terminating = self.termination.is_some();
                let backoff = self.shared.config.backoff;
                let key = self.key.clone();
                let Some(ctr) = self
                    .containers
                    .get_mut(idx)
                    .filter(|c| c.generation == generation)
                else {
                    return;
                };
                let Some(pid) = ctr.pid.take() else { return };
                self.shared.stats.container_exits.fetch_add(1, Ordering::Relaxed);
                if let Some(probes) = ctr.probes.take() {
                    probes.abort();
                }
                let (exit_code, signal) = match &status {
                    Ok(s) => match (s.code(), s.signal()) {
                        (Some(code), _) => (code, None),
                        (None, Some(sig)) => (128 + sig, Some(sig)),
                        (None, None) => (-1, None),
                    },
                    Err(_) => (-1, None),
                };
                let started_at = match &ctr.view.state {
                    RunState::Running { started_at, .. } => *started_at,
                    _ => at,
                };
                let exit = Exit {
                    exit_code,
                    signal,
                    started_at,
                    finished_at: at,
                    pid,
                };
                let ran = ctr.started.map(|s| s.elapsed()).unwrap_or_default();
                let how = signal
                    .map(|s| format!("signal {s}"))
                    .unwrap_or_else(|| format!("code {exit_code}"));
                if terminating || !policy.restarts(exit_code) {
                    self.shared
                        .log
                        .line(&key, format!("container {} exited ({how})", ctr.spec.name));
                    ctr.view.state = RunState::Terminated(exit);
                } else {
                    let (delay, streak) = backoff.next_delay(ctr.streak, ran);
                    ctr.streak = streak;
                    ctr.restart_at = Some(Instant::now() + delay);
                    let message = format!(
                        "back-off {delay:?} restarting failed container={} pod={key}",
                        ctr.spec.name
                    );
                    self.shared.log.line(
                        &key,
                        format!(
                            "container {} exited ({how}); restarting in {delay:?}",
                            ctr.spec.name
                        ),
                    );
                    ctr.view.last_exit = Some(exit);
                    ctr.view.state = RunState::Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: Some(message),
                    };
                }
            }
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if let Some(termination) = self.termination.as_mut()
            && !termination.killed
            && termination.kill_at <= now
        {
            termination.killed = true;
            let running: Vec<u32> = self.containers.iter().filter_map(|c| c.pid).collect();
            if !running.is_empty() {
                self.log(format!("grace period over: SIGKILL to {running:?}"));
                running
                    .into_iter()
                    .for_each(|pid| owned::signal_group(pid, libc::SIGKILL));
            }
        }
        if self.termination.is_none() {
            for idx in 0..self.containers.len() {
                let ctr = &mut self.containers[idx];
                if ctr.restart_at.is_some_and(|at| at <= now) {
                    ctr.restart_at = None;
                    if ctr.view.last_exit.is_some() {
                        ctr.view.restart_count += 1;
                    }
                    self.start_container(idx).await;
                }
            }
        }
        if self.status_retry_at.is_some_and(|at| at <= now) {
            self.status_retry_at = None;
            self.last_status = None;
        }
        if matches!(self.final_delete, FinalDelete::RetryAt(at) if at <= now) {
            self.final_delete = FinalDelete::NotYet;
        }
    }

    fn begin_termination(&mut self) {
        let spec_grace = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds);
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or(spec_grace)
            .unwrap_or(30)
            .max(0) as u64;
        let running: Vec<u32> = self.containers.iter().filter_map(|c| c.pid).collect();
        self.log(format!(
            "deletion requested: SIGTERM to {running:?}, grace period {grace}s"
        ));
        for ctr in &mut self.containers {
            ctr.restart_at = None;
            if let Some(probes) = ctr.probes.take() {
                probes.abort();
            }
            match (ctr.pid, &ctr.view.last_exit) {
                (Some(pid), _) => owned::signal_group(pid, libc::SIGTERM),
                (None, Some(last)) => ctr.view.state = RunState::Terminated(last.clone()),
                (None, None) => {}
            }
            if let RunState::Running { ready, .. } = &mut ctr.view.state {
                *ready = false;
            }
        }
        self.termination = Some(Termination {
            kill_at: Instant::now() + Duration::from_secs(grace),
            killed: false,
        });
    }

    async fn after_change(&mut self) {
        let all_stopped = self.containers.iter().all(|c| c.pid.is_none());
        if self.termination.is_some() && all_stopped && self.final_delete == FinalDelete::NotYet {
            if self.ip.is_some() {
                self.sync_status(true).await;
            }
            self.delete_finally().await;
        } else if self.started && self.final_delete != FinalDelete::Done {
            self.sync_status(false).await;
        }
    }

    async fn sync_status(&mut self, terminated_by_deletion: bool) {
        let Some(pod_ip) = self.ip else { return };
        if self.status_retry_at.is_some() {
            return;
        }
        let view = PodView {
            pod_ip,
            host_ip: self.shared.config.host_ip,
            start_time: self.start_time,
            containers: self.containers.iter().map(|c| c.view.clone()).collect(),
            terminated_by_deletion,
        };
        let previous: Vec<PodCondition> = self
            .last_status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .or_else(|| self.pod.status.as_ref().and_then(|s| s.conditions.clone()))
            .unwrap_or_default();
        let status = status::build(&self.pod, &view, &previous, Timestamp::now());
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let patch = serde_json::json!({ "status": status });
        match self
            .api
            .patch_status(
                &self.pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(_) => {
                if self.last_status.as_ref().and_then(|s| s.phase.as_ref()) != status.phase.as_ref() {
                    self.log(format!("phase {}", status.phase.as_deref().unwrap_or("?")));
                }
                self.last_status = Some(status);
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                self.log(format!("status update failed (retrying): {e}"));
                self.status_retry_at = Some(Instant::now() + Duration::from_millis(500));
            }
        }
    }

    /// The kubelet's last step: delete with grace 0, only this incarnation (UID precondition). The
    /// object remains while finalizers remain.
    async fn delete_finally(&mut self) {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.api.delete(&self.pod.name_any(), &params).await {
            Ok(either) => {
                self.final_delete = FinalDelete::Done;
                self.shared.stats.final_deletes.fetch_add(1, Ordering::Relaxed);
                match either
                    .left()
                    .and_then(|pod| pod.metadata.finalizers)
                    .filter(|f| !f.is_empty())
                {
                    Some(finalizers) => self.log(format!(
                        "terminated; object kept until finalizers {finalizers:?} are removed"
                    )),
                    None => self.log("terminated and deleted"),
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                self.final_delete = FinalDelete::Done
            }
            Err(e) => {
                self.log(format!("final delete failed (retrying): {e}"));
                self.final_delete = FinalDelete::RetryAt(Instant::now() + Duration::from_secs(1));
            }
        }
    }

    fn release(&mut self) {
        for ctr in &mut self.containers {
            if let Some(probes) = ctr.probes.take() {
                probes.abort();
            }
        }
        self.shared
            .ipam
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .release(&self.uid);
    }

    /// The object is gone (finally deleted, or force-deleted): kill whatever still runs.
    fn on_gone(&mut self) {
        let running: Vec<u32> = self.containers.iter().filter_map(|c| c.pid).collect();
        if running.is_empty() {
            self.log("gone");
        } else {
            self.log(format!(
                "gone while running (force deletion): SIGKILL to {running:?}"
            ));
            running
                .into_iter()
                .for_each(|pid| owned::signal_group(pid, libc::SIGKILL));
        }
        self.release();
    }

    /// Environment teardown: SIGTERM, up to `grace` for the processes to exit, then SIGKILL.
    async fn stop_all(&mut self, grace: Duration, events: &mut mpsc::UnboundedReceiver<Internal>) {
        let deadline = Instant::now() + grace;
        self.containers
            .iter()
            .filter_map(|c| c.pid)
            .for_each(|pid| owned::signal_group(pid, libc::SIGTERM));
        while self.containers.iter().any(|c| c.pid.is_some()) {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Internal::Exited { idx, generation, .. })) => {
                    if let Some(ctr) = self
                        .containers
                        .get_mut(idx)
                        .filter(|c| c.generation == generation)
                    {
                        ctr.pid = None;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        self.containers
            .iter()
            .filter_map(|c| c.pid)
            .for_each(|pid| owned::signal_group(pid, libc::SIGKILL));
        self.release();
    }
}

fn spawn_probes(
    idx: usize,
    generation: u64,
    ip: Ipv4Addr,
    env: Vec<(String, String)>,
    readiness: Option<ProbeSpec>,
    liveness: Option<ProbeSpec>,
    tx: mpsc::UnboundedSender<Internal>,
) -> JoinHandle<()> {
    let probe_loop = move |spec: Option<ProbeSpec>,
                           kind: ProbeKind,
                           tx: mpsc::UnboundedSender<Internal>,
                           env: Vec<(String, String)>| async move {
        let Some(spec) = spec else { return };
        tokio::time::sleep(spec.initial_delay).await;
        loop {
            let result = probe::run(&spec.action, ip, &env, spec.timeout).await;
            if tx
                .send(Internal::Probe {
                    idx,
                    generation,
                    kind,
                    result,
                })
                .is_err()
            {
                return;
            }
            tokio::time::sleep(spec.period).await;
        }
    };
    let r = probe_loop(readiness, ProbeKind::Readiness, tx.clone(), env.clone());
    let l = probe_loop(liveness, ProbeKind::Liveness, tx, env);
    tokio::spawn(async move {
        futures::join!(r, l);
    })
}
