//! `weft-dev`: Weft on the local environment — a real control plane, NATS and the process-kubelet, and
//! on them the whole system for a person (`make dev`): the CRDs, the operator under its ServiceAccount
//! with only its shipped RBAC, and a host group whose pods run the real `weft-host`. Around a command
//! (`weft-dev -- cargo test …`, which `make test` uses so that every test binary shares one environment)
//! it starts only the environment unless asked for more. Ctrl-C or SIGTERM stops everything. It serves
//! `/healthz` (every process running), `/readyz` and `/metrics` on `--listen`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Mutex;
use weft_crds::{Workload, WorkloadDeployment};
use weft_e2e::kubelet::Backoff;
use weft_e2e::system::prometheus::{self, Prometheus, ScrapeJob};
use weft_e2e::system::{self, GatewayProcess, HostGroup, OperatorOptions, OperatorProcess};
use weft_e2e::testing::http_get_host;
use weft_e2e::traffic::RequestLoop;
use weft_e2e::{Coordinates, Env, EnvOptions, ImageCommand, RunningEnv};
use weft_host_api::{HostClient, HostHeartbeat};
use weft_testkit::owned;

/// How long each part of the system may take to become ready.
const SYSTEM_TIMEOUT: Duration = Duration::from_secs(120);
/// The operator's component name (in `env.json`, `/healthz` and `/metrics`).
const OPERATOR: &str = "weft-operator";

/// Runs Weft locally: etcd, kube-apiserver, kube-controller-manager, nats-server and a process-kubelet
/// that runs pods as local processes; then the CRDs, weft-operator and a host group of weft-host pods.
#[derive(Debug, Parser)]
#[command(name = "weft-dev", version)]
struct Args {
    /// Map a container image to a local command for the kubelet: `IMAGE=PROGRAM [ARG...]`
    /// (repeatable; an IMAGE without tag matches every tag).
    #[arg(long = "image", value_name = "IMAGE=COMMAND")]
    images: Vec<String>,
    /// Run without the process-kubelet (pods stay Pending; implies no host pods).
    #[arg(long)]
    no_kubelet: bool,
    /// Run weft-operator (default without a COMMAND).
    #[arg(long, overrides_with = "no_operator")]
    operator: bool,
    /// Do not run weft-operator (the CRDs and its RBAC are still applied, so you can run your own).
    #[arg(long, overrides_with = "operator")]
    no_operator: bool,
    /// Host pods in the host group (default 2 without a COMMAND, 0 with one).
    #[arg(long, value_name = "N")]
    host_replicas: Option<u32>,
    /// The host group's name (Deployment `hostgroup-<NAME>`, label `wasmcloud.com/hostgroup`).
    #[arg(long, value_name = "NAME", default_value = "default")]
    host_group: String,
    /// Only the control plane, NATS and the kubelet: no CRDs, operator or hosts (what a COMMAND gets
    /// by default).
    #[arg(long, conflicts_with_all = ["operator", "host_replicas"])]
    bare: bool,
    /// Keep the run directory (logs, audit log, pod logs) after stopping.
    #[arg(long)]
    keep: bool,
    /// Address for `/healthz`, `/readyz` and `/metrics` (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where weft-gateway (run with the operator) proxies.
    #[arg(long, default_value = "127.0.0.1:8000")]
    gateway_addr: SocketAddr,
    /// The failover demo: deploy the hello-world example, curl it through the gateway in a loop and
    /// print the requests answered and failed every second, while you delete a host pod.
    #[arg(long, conflicts_with_all = ["bare", "no_operator", "command"])]
    demo: bool,
    /// Also run Prometheus (built by e2e/testbins/build.sh): it scrapes the operator, the gateway, every
    /// host pod (the list follows pods as they come and go) and weft-dev; the banner prints its URL.
    #[arg(long, conflicts_with_all = ["bare", "no_operator", "command"])]
    observe: bool,
    /// Seconds pods get to exit after SIGTERM when the environment stops.
    #[arg(long, default_value_t = 5)]
    pod_grace_seconds: u64,
    /// Run this command in the environment (with `WEFT_E2E_ENV` and `KUBECONFIG` set), then stop the
    /// environment and exit with the command's status.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// Which of Weft's own parts run on the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    /// Apply the CRDs, the operator namespace and the operator's RBAC.
    install: bool,
    /// Run weft-operator.
    operator: bool,
    /// Host pods in the host group (0: no host group).
    host_replicas: u32,
}

impl Plan {
    /// The whole system for a person; only the environment around a command (tests stay lean) unless
    /// asked for more.
    fn resolve(args: &Args) -> anyhow::Result<Self> {
        let full = args.command.is_empty() && !args.bare;
        let operator = if args.operator {
            true
        } else if args.no_operator {
            false
        } else {
            full
        };
        let host_replicas = match args.host_replicas {
            Some(n) if n > 0 && args.no_kubelet => {
                bail!("host pods need the kubelet: drop --no-kubelet or pass --host-replicas 0")
            }
            Some(n) => n,
            None if full && !args.no_kubelet => 2,
            None => 0,
        };
        Ok(Self {
            install: full || operator || host_replicas > 0,
            operator,
            host_replicas,
        })
    }
}

fn parse_image(spec: &str) -> anyhow::Result<ImageCommand> {
    let (image, command) = spec
        .split_once('=')
        .context("--image wants IMAGE=PROGRAM [ARG...]")?;
    let command: Vec<String> = command.split_whitespace().map(str::to_string).collect();
    if image.is_empty() || command.is_empty() {
        bail!("--image wants IMAGE=PROGRAM [ARG...], got {spec:?}");
    }
    Ok(ImageCommand {
        image: image.to_string(),
        command,
        args: Vec::new(),
        env: Default::default(),
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,kube_client::client::builder=off")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weft-dev: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What weft-dev owns while it runs: the environment and the operator process.
struct State {
    env: Option<RunningEnv>,
    operator: Option<OperatorProcess>,
    operator_restarts: u64,
}

/// Weft's own parts once they run, for the banner.
#[derive(Default)]
struct System {
    /// The operator's ServiceAccount kubeconfig (minted whenever the RBAC is installed).
    operator_kubeconfig: Option<PathBuf>,
    operator: Option<(u32, SocketAddr, PathBuf)>,
    /// weft-gateway (with the operator), stopped when weft-dev stops.
    gateway: Option<GatewayProcess>,
    host_group: Option<(HostGroup, Vec<Pod>, BTreeMap<String, HostHeartbeat>)>,
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let plan = Plan::resolve(&args)?;
    // Find the binaries before starting anything.
    let operator_bin = plan
        .operator
        .then(|| system::workspace_binary(OPERATOR))
        .transpose()?;
    let host_bin = (plan.host_replicas > 0)
        .then(|| system::workspace_binary("weft-host"))
        .transpose()?;
    let mut images: Vec<ImageCommand> = args
        .images
        .iter()
        .map(|s| parse_image(s))
        .collect::<anyhow::Result<_>>()?;
    // Mappings given with --image come first, so they win over this one.
    images.extend(host_bin.as_deref().map(system::host_image));
    let options = EnvOptions {
        kubelet: !args.no_kubelet,
        images,
        ..EnvOptions::default()
    };
    let started = Instant::now();
    let mut env = tokio::select! {
        env = RunningEnv::start(options) => env.context("starting the environment")?,
        _ = sigint.recv() => bail!("interrupted while starting"),
        _ = sigterm.recv() => bail!("terminated while starting"),
    };
    env.keep_run_dir(args.keep);
    let coords = env.coordinates().clone();
    let state = Arc::new(Mutex::new(State {
        env: Some(env),
        operator: None,
        operator_restarts: 0,
    }));

    let outcome = async {
        let parts = tokio::select! {
            parts = start_system(&args, &plan, operator_bin, &coords, &state) => parts?,
            _ = sigint.recv() => bail!("interrupted while starting"),
            _ = sigterm.recv() => bail!("terminated while starting"),
        };
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listen on {}", args.listen))?;
        let observe_addr = listener.local_addr()?;
        let server = tokio::spawn(serve_observability(listener, state.clone()));
        let prometheus = if args.observe {
            Some(start_prometheus(&coords, &parts, observe_addr).await?)
        } else {
            None
        };
        let code = if args.command.is_empty() {
            print_banner(&coords, &parts, started.elapsed(), observe_addr);
            if let Some((prometheus, _)) = &prometheus {
                print_prometheus(prometheus);
            }
            tokio::select! {
                _ = sigint.recv() => {}
                _ = sigterm.recv() => {}
                result = run_demo(&coords, &parts), if args.demo => result?,
            }
            eprintln!("weft-dev: stopping");
            ExitCode::SUCCESS
        } else {
            eprintln!(
                "weft-dev: environment ready in {:.1} s ({}); running {:?}",
                started.elapsed().as_secs_f64(),
                coords.run_dir.display(),
                args.command
            );
            run_command(&args.command, &coords, &mut sigint, &mut sigterm).await?
        };
        server.abort();
        if let Some((prometheus, refresher)) = prometheus {
            refresher.abort();
            let mut process = prometheus.process;
            tokio::task::spawn_blocking(move || process.stop(Duration::from_secs(5)))
                .await
                .ok();
        }
        Ok::<_, anyhow::Error>(code)
    }
    .await;

    // Whatever happened: the operator first (it hands its lease back), then pods and the control plane.
    let (env, operator) = {
        let mut state = state.lock().await;
        (state.env.take(), state.operator.take())
    };
    if let Some(mut operator) = operator {
        tokio::task::spawn_blocking(move || operator.process.stop(Duration::from_secs(10)))
            .await
            .ok();
    }
    if let Some(env) = env {
        env.stop(Duration::from_secs(args.pod_grace_seconds)).await;
    }
    if args.keep {
        eprintln!("weft-dev: kept {}", coords.run_dir.display());
    }
    outcome
}

/// Installs and starts Weft's own parts per `plan`: the CRDs, the operator namespace and RBAC, the
/// operator (supervised: restarted with back-off if it exits), and the host group.
async fn start_system(
    args: &Args,
    plan: &Plan,
    operator_bin: Option<PathBuf>,
    coords: &Coordinates,
    state: &Arc<Mutex<State>>,
) -> anyhow::Result<System> {
    let mut parts = System::default();
    if !plan.install {
        return Ok(parts);
    }
    let env = Env::from_coordinates(coords.clone()).await?;
    let admin = env.admin_client();
    let namespace = system::OPERATOR_NAMESPACE;
    system::install_crds(&admin, SYSTEM_TIMEOUT)
        .await
        .context("installing the CRDs")?;
    system::install_namespace(&admin, namespace).await?;
    system::install_operator_rbac(&admin, namespace, &[], &[system::OPERATOR_SERVICE_ACCOUNT])
        .await
        .context("installing the operator's RBAC")?;
    let kubeconfig = env
        .service_account_kubeconfig(namespace, system::OPERATOR_SERVICE_ACCOUNT)
        .await?;
    parts.operator_kubeconfig = Some(kubeconfig.clone());

    if let Some(binary) = operator_bin {
        let log = coords.run_dir.join("logs").join(format!("{OPERATOR}.log"));
        let mut options = OperatorOptions::new(binary, namespace, &log);
        options.nats_url = coords.nats_url.clone();
        let mut operator = OperatorProcess::spawn(&kubeconfig, &options)?;
        let pid = operator.process.pid();
        record_operator(state, pid, &log).await;
        operator.wait_ready(SYSTEM_TIMEOUT).await?;
        parts.operator = Some((pid, operator.addr, log));
        state.lock().await.operator = Some(operator);

        system::install_gateway_rbac(&admin, namespace)
            .await
            .context("installing the gateway's RBAC")?;
        let gateway = GatewayProcess::start(
            &env,
            system::workspace_binary("weft-gateway")?,
            namespace,
            Some(args.gateway_addr),
            &[],
            &coords.run_dir.join("logs").join("weft-gateway.log"),
            SYSTEM_TIMEOUT,
        )
        .await
        .context("starting weft-gateway")?;
        parts.gateway = Some(gateway);
        tokio::spawn(supervise_operator(state.clone(), env, options));
    }

    if plan.host_replicas > 0 {
        let group = HostGroup {
            namespace: namespace.to_string(),
            group: args.host_group.clone(),
            replicas: i32::try_from(plan.host_replicas).context("--host-replicas")?,
            nats_url: coords.nats_url.clone(),
        };
        // Subscribe first: each host's first heartbeat goes out as it starts.
        let nats = async_nats::connect(&coords.nats_url)
            .await
            .with_context(|| format!("connect to {}", coords.nats_url))?;
        let mut heartbeats = HostClient::new(nats).subscribe_heartbeats().await?;
        group.apply(&admin).await.context("applying the host group")?;
        let pods = group.wait_ready(&admin, SYSTEM_TIMEOUT).await.with_context(|| {
            format!(
                "host pods (their logs: {}/{namespace}_<pod>_<uid>/{}.log; the kubelet's: {})",
                coords.pods_dir.display(),
                system::HOST_CONTAINER,
                coords
                    .logs
                    .get("kubelet")
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )
        })?;
        // A Ready host has published its first heartbeat; match them to the pods by hostname (= pod IP).
        let ips: Vec<String> = pods.iter().filter_map(pod_ip).collect();
        let mut seen = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while seen.len() < ips.len() {
            match tokio::time::timeout_at(deadline, heartbeats.next()).await {
                Ok(Some(hb)) if ips.contains(&hb.hostname) => {
                    seen.insert(hb.hostname.clone(), hb);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        parts.host_group = Some((group, pods, seen));
    }
    Ok(parts)
}

fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.pod_ip.clone().filter(|ip| !ip.is_empty())
}

/// Puts the operator's pid and log into `env.json`.
async fn record_operator(state: &Mutex<State>, pid: u32, log: &Path) {
    if let Some(env) = state.lock().await.env.as_mut()
        && let Err(e) = env.record_component(OPERATOR, pid, log)
    {
        eprintln!("weft-dev: {e}");
    }
}

/// Restarts the operator when it exits (as its Deployment would), with the kubelet's crash-loop
/// back-off and a fresh token; the previous run's log is kept as `weft-operator.previous.log`.
async fn supervise_operator(state: Arc<Mutex<State>>, env: Env, options: OperatorOptions) {
    let backoff = Backoff::default();
    let mut streak = 0;
    let mut started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let status = {
            let mut guard = state.lock().await;
            let Some(operator) = guard.operator.as_mut() else {
                return; // stopping
            };
            match operator.process.wait_exit(Duration::ZERO) {
                Some(status) => status,
                None => continue,
            }
        };
        let (delay, next) = backoff.next_delay(streak, started.elapsed());
        streak = next;
        let previous = options.log_path.with_extension("previous.log");
        let _ = std::fs::rename(&options.log_path, &previous);
        eprintln!(
            "weft-dev: {OPERATOR} exited ({status}); restarting in {delay:?} (its log: {})",
            previous.display()
        );
        tokio::time::sleep(delay).await;
        let kubeconfig = env
            .service_account_kubeconfig(&options.namespace, &options.service_account)
            .await;
        let mut guard = state.lock().await;
        if guard.operator.is_none() {
            return;
        }
        match kubeconfig.and_then(|k| OperatorProcess::spawn(&k, &options)) {
            Ok(operator) => {
                let pid = operator.process.pid();
                guard.operator = Some(operator);
                guard.operator_restarts += 1;
                if let Some(env) = guard.env.as_mut() {
                    let _ = env.record_component(OPERATOR, pid, &options.log_path);
                }
                started = Instant::now();
            }
            Err(e) => eprintln!("weft-dev: restarting {OPERATOR}: {e}"),
        }
    }
}

/// `--observe`: Prometheus in the run directory, scraping the operator, the gateway, weft-dev and the
/// host group's pods (their list rewritten every 2 s from the API).
async fn start_prometheus(
    coords: &Coordinates,
    parts: &System,
    observe_addr: SocketAddr,
) -> anyhow::Result<(Prometheus, tokio::task::JoinHandle<()>)> {
    let dir = coords.run_dir.join("prometheus");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let hosts_file = dir.join("hosts.json");
    let client = kube::Client::try_from(weft_e2e::kubeconfig::load(&coords.kubeconfig).await?)?;
    let group = parts.host_group.as_ref().map(|(group, _, _)| group.clone());
    let host_targets = move || {
        let (client, group) = (client.clone(), group.clone());
        async move {
            match group {
                Some(group) => group.admin_addrs(&client).await.unwrap_or_default(),
                None => Vec::new(),
            }
        }
    };
    prometheus::write_targets_file(&hosts_file, &host_targets().await)?;
    let mut jobs = vec![
        ScrapeJob::from_file("weft-host", &hosts_file),
        ScrapeJob::new("weft-dev", [observe_addr]),
    ];
    if let Some((_, addr, _)) = &parts.operator {
        jobs.push(ScrapeJob::new(OPERATOR, [*addr]));
    }
    if let Some(gateway) = &parts.gateway {
        jobs.push(ScrapeJob::new("weft-gateway", [gateway.probes]));
    }
    let prometheus = Prometheus::start(&dir, &jobs, Duration::from_secs(5)).await?;
    let refresher = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if let Err(e) = prometheus::write_targets_file(&hosts_file, &host_targets().await) {
                eprintln!("weft-dev: prometheus host targets: {e}");
            }
        }
    });
    Ok((prometheus, refresher))
}

fn print_prometheus(prometheus: &Prometheus) {
    println!(
        "  Prometheus  {} scrapes the operator, the gateway, the hosts and weft-dev every 5 s; the Grafana",
        prometheus.url()
    );
    println!(
        "              dashboard deploy/charts/weft/dashboards/weft.json runs on it, e.g. {}/graph?g0.expr=sum%20by%20(code)%20(rate(weft_gateway_requests_total%5B1m%5D))\n",
        prometheus.url()
    );
}

fn print_banner(coords: &Coordinates, parts: &System, took: Duration, observe_addr: SocketAddr) {
    let bin_dir = coords
        .kubectl
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let ns = system::OPERATOR_NAMESPACE;
    println!("weft-dev: ready in {:.1} s\n", took.as_secs_f64());
    println!("  export KUBECONFIG={}", coords.kubeconfig.display());
    println!("  export PATH={bin_dir}:$PATH   # kubectl v1.37.2");
    println!("  kubectl get pods -A\n");
    println!("  API server  {}", coords.apiserver_url);
    println!("  NATS        {}", coords.nats_url);
    if let Some(node) = &coords.node_name {
        let cidr = coords.pod_cidr.as_deref().unwrap_or("127.0.0.0/16");
        println!("  Node        {node}: pods run as local processes, each on its own IP of {cidr}");
    }
    match (&parts.operator, &parts.operator_kubeconfig) {
        (Some((pid, addr, log)), _) => {
            println!(
                "  Operator    {OPERATOR} (pid {pid}) as ServiceAccount {ns}/{}, with only the RBAC in deploy/operator/",
                system::OPERATOR_SERVICE_ACCOUNT
            );
            println!(
                "              metrics http://{addr}/metrics, log {}",
                log.display()
            );
        }
        (None, Some(kubeconfig)) => {
            println!("  Operator    not running; run your own with only its RBAC:");
            println!(
                "              KUBECONFIG={} OPERATOR_NAMESPACE={ns} cargo run -p weft-operator",
                kubeconfig.display()
            );
        }
        (None, None) => {}
    }
    if let Some(gateway) = &parts.gateway {
        println!(
            "  Gateway     weft-gateway (pid {}) as ServiceAccount {ns}/{}, proxy http://{}, metrics http://{}/metrics",
            gateway.process.pid(),
            system::GATEWAY_SERVICE_ACCOUNT,
            gateway.proxy,
            gateway.probes
        );
    }
    if let Some((group, pods, heartbeats)) = &parts.host_group {
        println!(
            "  Hosts       Deployment {ns}/{} (deploy/hostgroup/): {} × weft-host, HTTP :9191, admin :9192 on the pod IP",
            group.deployment_name(),
            pods.len()
        );
        for pod in pods {
            let ip = pod_ip(pod).unwrap_or_default();
            let host = heartbeats
                .get(&ip)
                .map(|hb| format!("host {} ({})", hb.friendly_name, hb.id))
                .unwrap_or_else(|| "no heartbeat seen yet".to_string());
            println!("              {:<40} {ip:<12} {host}", pod.name_any());
        }
    }
    if coords.node_name.is_some() {
        println!(
            "  Pod logs    {}/<namespace>_<pod>_<uid>/<container>.log",
            coords.pods_dir.display()
        );
    }
    println!("  Logs        {}", coords.run_dir.join("logs").display());
    println!("  Health      http://{observe_addr}/healthz  /readyz  /metrics");
    println!(
        "  Tests       WEFT_E2E_ENV={} cargo test …   (reuses this environment)\n",
        coords.file().display()
    );
    if let Some((group, pods, _)) = &parts.host_group {
        let first = pods
            .first()
            .map(|p| (p.name_any(), pod_ip(p).unwrap_or_default()));
        let (pod, ip) = first.unwrap_or_default();
        let deployment = group.deployment_name();
        println!("Try it:");
        println!("  kubectl get deploy,pods -n {ns} -o wide");
        println!("  kubectl get hosts -n {ns} -o wide     # one Host per host, written from its heartbeats");
        println!("  curl http://{ip}:9192/metrics     # a host's admin server: /healthz /readyz /metrics");
        println!(
            "  # crds/examples/workloaddeployment-hello-world.yaml with the hello component built here as its image:"
        );
        println!(
            "  kubectl apply -f - <<'EOF'\n{}EOF",
            hello_deployment(weft_test_components::HELLO, &group.group)
        );
        println!("  kubectl get workloaddeployments,ww -o wide     # 2 replicas Ready, on two hosts");
        if let Some(gateway) = &parts.gateway {
            println!(
                "  curl -H 'Host: hello.example.com' http://{}/     # through weft-gateway (or a host's IP:9191 directly)",
                gateway.proxy
            );
        }
        println!(
            "  kubectl scale workloaddeployment/hello-world --replicas 3     # the /scale subresource, like a Deployment"
        );
        println!(
            "  kubectl delete pod -n {ns} {pod}     # the operator deletes its Host, the host drains, a new pod replaces it"
        );
        println!("  kubectl scale -n {ns} deploy/{deployment} --replicas 3\n");
    }
    println!("Ctrl-C stops everything.");
}

/// `--demo`: the hello-world example deployed, a request loop through the gateway, and once a second
/// the requests answered and failed and where the replicas run. Runs until weft-dev stops.
async fn run_demo(coords: &Coordinates, parts: &System) -> anyhow::Result<()> {
    let (Some(gateway), Some((group, _, _))) = (&parts.gateway, &parts.host_group) else {
        bail!("--demo needs the operator, the gateway and host pods");
    };
    let env = Env::from_coordinates(coords.clone()).await?;
    let admin = env.admin_client();
    let deployment: WorkloadDeployment =
        serde_yaml::from_str(&hello_deployment(weft_test_components::HELLO, &group.group))?;
    let deployments: Api<WorkloadDeployment> = Api::namespaced(admin.clone(), "default");
    match deployments.create(&PostParams::default(), &deployment).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e).context("creating the hello-world deployment"),
    }
    let workloads: Api<Workload> = Api::namespaced(admin.clone(), "default");
    let hosts: Api<weft_crds::Host> = Api::namespaced(admin.clone(), system::OPERATOR_NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), system::OPERATOR_NAMESPACE);
    let placement = || async {
        let ws = workloads
            .list(&ListParams::default().labels("runtime.wasmcloud.dev/workload-deployment=hello-world"))
            .await?
            .items;
        let hs = hosts.list(&ListParams::default()).await?.items;
        let pod_names: BTreeMap<String, String> = pods
            .list(&ListParams::default().labels(&group.pod_selector()))
            .await?
            .items
            .into_iter()
            .filter_map(|p| Some((pod_ip(&p)?, p.name_any())))
            .collect();
        let on: Vec<String> = ws
            .iter()
            .filter(|w| w.is_ready() && w.metadata.deletion_timestamp.is_none())
            .filter_map(|w| {
                let id = w.status.as_ref()?.host_id.as_deref()?;
                let ip = hs.iter().find(|h| h.spec.host_id == id)?.spec.hostname.clone()?;
                Some(pod_names.get(&ip).cloned().unwrap_or(ip))
            })
            .collect();
        Ok::<_, kube::Error>(on)
    };
    let deadline = Instant::now() + SYSTEM_TIMEOUT;
    loop {
        let served = http_get_host(gateway.proxy, "hello.example.com")
            .await
            .is_ok_and(|r| r.status == 200);
        if served && placement().await.is_ok_and(|on| on.len() == 2) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the hello-world deployment was not served within {SYSTEM_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let on = placement().await?;
    println!();
    println!(
        "Demo: hello-world is served through the gateway; a request loop runs. In another terminal, delete"
    );
    println!("the host pod of a replica and watch the failed count (it stays 0) and where the replicas run:");
    println!(
        "  KUBECONFIG={} kubectl -n {} delete pod {}",
        coords.kubeconfig.display(),
        system::OPERATOR_NAMESPACE,
        on.first().cloned().unwrap_or_default()
    );
    let traffic = RequestLoop::start(gateway.proxy, "hello.example.com", "hello\n", 1, Duration::MAX);
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (ok, failed) = traffic.progress();
        let on = placement()
            .await
            .map(|on| on.join(", "))
            .unwrap_or_else(|e| e.to_string());
        println!(
            "{:>6.0} s  requests answered {ok:>8}  failed {failed:>4}  replicas Ready on: {on}",
            started.elapsed().as_secs_f64()
        );
    }
}

/// The hello-world WorkloadDeployment of `crds/examples/`, running the component at `path` on host
/// group `group`, for `Host: hello.example.com`.
fn hello_deployment(path: &str, group: &str) -> String {
    format!(
        "apiVersion: runtime.wasmcloud.dev/v1alpha1\nkind: WorkloadDeployment\nmetadata:\n  name: hello-world\n  namespace: default\nspec:\n  replicas: 2\n  template:\n    spec:\n      hostSelector:\n        hostgroup: {group}\n      components:\n        - name: http-component\n          image: file://{path}\n      hostInterfaces:\n        - namespace: wasi\n          package: http\n          interfaces: [incoming-handler]\n          config:\n            host: hello.example.com\n"
    )
}

async fn run_command(
    command: &[String],
    coords: &Coordinates,
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
) -> anyhow::Result<ExitCode> {
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .env("WEFT_E2E_ENV", coords.file())
        .env("KUBECONFIG", &coords.kubeconfig);
    let mut child = owned::spawn(cmd).with_context(|| format!("starting {:?}", command[0]))?;
    let pid = child.id();
    let mut wait = tokio::task::spawn_blocking(move || owned::wait(&mut child));
    let status = loop {
        tokio::select! {
            status = &mut wait => break status??,
            // The command runs in its own process group; pass interruptions on and wait for it.
            _ = sigint.recv() => owned::signal_group(pid, libc::SIGINT),
            _ = sigterm.recv() => owned::signal_group(pid, libc::SIGTERM),
        }
    };
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Serves `/healthz`, `/readyz` and `/metrics` (OpenMetrics text) until aborted.
async fn serve_observability(listener: TcpListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                .await
                .ok()?
                .ok()?;
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (code, content_type, body) = respond(&path, &state).await;
            let reason = match code {
                200 => "OK",
                404 => "Not Found",
                _ => "Service Unavailable",
            };
            let head = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await.ok()?;
            stream.write_all(body.as_bytes()).await.ok()
        });
    }
}

async fn respond(path: &str, state: &Mutex<State>) -> (u16, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let mut guard = state.lock().await;
    let state = &mut *guard;
    let Some(env) = state.env.as_mut() else {
        return (503, TEXT, "stopping\n".into());
    };
    let mut components = env.component_status();
    if let Some(operator) = state.operator.as_mut() {
        components.push((OPERATOR, operator.process.is_running()));
    }
    let kubelet_healthy = env.kubelet().is_none_or(|k| k.is_healthy());
    match path {
        "/readyz" => (200, TEXT, "ready\n".into()),
        "/healthz" => {
            let down: Vec<&str> = components
                .iter()
                .filter(|(_, up)| !up)
                .map(|(name, _)| *name)
                .collect();
            if down.is_empty() && kubelet_healthy {
                (200, TEXT, "ok\n".into())
            } else {
                (
                    503,
                    TEXT,
                    format!("not running: {down:?}; kubelet healthy: {kubelet_healthy}\n"),
                )
            }
        }
        "/metrics" => {
            let mut registry = Registry::default();
            let up = Family::<Vec<(String, String)>, Gauge>::default();
            for (name, running) in &components {
                up.get_or_create(&vec![("component".to_string(), name.to_string())])
                    .set(i64::from(*running));
            }
            registry.register(
                "weft_dev_component_up",
                "Whether an environment process is running",
                up,
            );
            if state.operator.is_some() {
                registry.register(
                    "weft_dev_operator_restarts",
                    "Times weft-operator was restarted after it exited",
                    ConstCounter::new(state.operator_restarts),
                );
            }
            if let Some(kubelet) = env.kubelet() {
                let stats = kubelet.stats();
                let pods = Gauge::<i64>::default();
                pods.set(kubelet.pod_count() as i64);
                registry.register(
                    "weft_kubelet_pods",
                    "Pods the process-kubelet is working on",
                    pods,
                );
                let counters = [
                    (
                        "weft_kubelet_pods_bound",
                        "Pods bound to the node",
                        &stats.pods_bound,
                    ),
                    (
                        "weft_kubelet_container_starts",
                        "Container processes started",
                        &stats.container_starts,
                    ),
                    (
                        "weft_kubelet_container_exits",
                        "Container processes that exited",
                        &stats.container_exits,
                    ),
                    (
                        "weft_kubelet_final_deletes",
                        "Final deletes after graceful termination",
                        &stats.final_deletes,
                    ),
                ];
                for (name, help, value) in counters {
                    registry.register(name, help, ConstCounter::new(value.load(Ordering::Relaxed)));
                }
            }
            let mut body = String::new();
            match encode(&mut body, &registry) {
                Ok(()) => (
                    200,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body,
                ),
                Err(e) => (503, TEXT, format!("encoding metrics: {e}\n")),
            }
        }
        _ => (404, TEXT, "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_flags_parse_into_mappings() {
        let image = parse_image("ghcr.io/w/host=/opt/weft-host --verbose").unwrap();
        assert_eq!(image.image, "ghcr.io/w/host");
        assert_eq!(image.command, vec!["/opt/weft-host", "--verbose"]);
        assert!(parse_image("no-equals-sign").is_err());
        assert!(parse_image("img=").is_err());
        assert!(parse_image("=/bin/true").is_err());
    }

    fn plan(argv: &[&str]) -> anyhow::Result<Plan> {
        let args = Args::try_parse_from(std::iter::once("weft-dev").chain(argv.iter().copied()))?;
        Plan::resolve(&args)
    }

    fn expect(install: bool, operator: bool, host_replicas: u32) -> Plan {
        Plan {
            install,
            operator,
            host_replicas,
        }
    }

    #[test]
    fn the_hello_deployment_it_prints_is_the_example_with_a_local_image() {
        let printed: weft_crds::WorkloadDeployment =
            serde_yaml::from_str(&hello_deployment("/x/hello.wasm", "default")).expect("parses");
        let mut example: weft_crds::WorkloadDeployment = serde_yaml::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../crds/examples/workloaddeployment-hello-world.yaml"
            ))
            .expect("the example"),
        )
        .expect("the example parses");
        example.spec.template.spec.components.as_mut().unwrap()[0].image = "file:///x/hello.wasm".into();
        example.metadata.namespace = Some("default".into());
        assert_eq!(printed, example);
    }

    #[test]
    fn a_person_gets_the_whole_system_and_a_command_only_the_environment() {
        assert_eq!(plan(&[]).unwrap(), expect(true, true, 2));
        assert_eq!(
            plan(&["--", "cargo", "test"]).unwrap(),
            expect(false, false, 0),
            "make test stays lean"
        );
        assert_eq!(plan(&["--bare"]).unwrap(), expect(false, false, 0));
    }

    #[test]
    fn parts_can_be_left_out_or_asked_for() {
        assert_eq!(plan(&["--no-operator"]).unwrap(), expect(true, false, 2));
        assert_eq!(plan(&["--host-replicas", "0"]).unwrap(), expect(true, true, 0));
        assert_eq!(plan(&["--host-replicas", "5"]).unwrap(), expect(true, true, 5));
        assert_eq!(plan(&["--operator", "--", "cmd"]).unwrap(), expect(true, true, 0));
        assert_eq!(
            plan(&["--host-replicas", "1", "--", "cmd"]).unwrap(),
            expect(true, false, 1)
        );
        assert_eq!(
            plan(&["--operator", "--no-operator"]).unwrap(),
            expect(true, false, 2),
            "the last of the pair wins"
        );
        assert_eq!(plan(&["--no-kubelet"]).unwrap(), expect(true, true, 0));
    }

    #[test]
    fn contradictions_are_refused() {
        assert!(plan(&["--no-kubelet", "--host-replicas", "2"]).is_err());
        assert!(plan(&["--bare", "--operator"]).is_err());
        assert!(plan(&["--bare", "--host-replicas", "1"]).is_err());
    }
}
