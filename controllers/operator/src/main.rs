//! `weft-operator`: runs Weft's controllers under one manager (shared caches, leader election, probes,
//! metrics, graceful shutdown). Flags are documented in `docs/operator.md`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use weft_controllers::host::health::HealthConfig;
use weft_controllers::{Bus, BusSettings, HostSettings, Settings};
use weft_framework::cli::{init_tracing, parse_duration};
use weft_framework::leader::default_identity;
use weft_framework::{LeaderElectionConfig, Manager, ManagerConfig};

/// Runs the Weft operator.
#[derive(Debug, Parser)]
#[command(name = "weft-operator", version, about)]
struct Args {
    /// The operator's namespace: Host objects and the leader-election Lease live here.
    #[arg(long, env = "OPERATOR_NAMESPACE")]
    operator_namespace: String,

    /// Extra namespaces whose pods may be host pods (comma-separated; the operator namespace is always
    /// included). The shipped RBAC must grant the pod Role in each.
    #[arg(long, env = "WEFT_HOST_NAMESPACES", value_delimiter = ',')]
    host_namespaces: Vec<String>,

    /// Elect a leader among replicas before writing (on by default; turn off only for a single replica).
    #[arg(long, env = "WEFT_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,

    /// Name of the leader-election Lease (wasmCloud's operator uses the same name, so the two never run
    /// their controllers at the same time in one namespace).
    #[arg(long, default_value = weft_crds::names::LEADER_ELECTION_ID)]
    leader_election_id: String,

    /// How long a lease is valid without renewal.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,

    /// How long the leader retries renewing before it gives up (and the process exits).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    renew_deadline: Duration,

    /// How often candidates try to acquire, and the leader renews.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    retry_period: Duration,

    /// Address serving /healthz and /readyz (and /metrics).
    #[arg(long, default_value = "0.0.0.0:8081")]
    health_probe_bind_address: SocketAddr,

    /// Address serving /metrics (and the probes); may equal the probe address.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_bind_address: SocketAddr,

    /// How long to wait for the caches to sync at start.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    cache_sync_timeout: Duration,

    /// How long in-flight reconciles may run after SIGTERM.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    graceful_shutdown_timeout: Duration,

    /// Parallel reconciles of the PodFinalizer controller.
    #[arg(long, default_value_t = 2)]
    pod_finalizer_workers: usize,

    /// NATS URL of the control plane (comma-separate several servers of one cluster).
    #[arg(long, env = "WEFT_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,

    /// CA certificate (PEM) to verify the NATS servers with (turns TLS on).
    #[arg(long, env = "WEFT_NATS_TLS_CA")]
    nats_tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for NATS mutual TLS (with --nats-tls-key).
    #[arg(long, env = "WEFT_NATS_TLS_CERT", requires = "nats_tls_key")]
    nats_tls_cert: Option<PathBuf>,

    /// Client key (PEM) for NATS mutual TLS (with --nats-tls-cert).
    #[arg(long, env = "WEFT_NATS_TLS_KEY", requires = "nats_tls_cert")]
    nats_tls_key: Option<PathBuf>,

    /// Start TLS before the NATS handshake (servers configured with `handshake_first`).
    #[arg(long, env = "WEFT_NATS_TLS_FIRST")]
    nats_tls_first: bool,

    /// NATS `.creds` file (user JWT and NKey seed) for servers in operator/JWT mode.
    #[arg(long, env = "WEFT_NATS_CREDS", conflicts_with = "nats_nkey")]
    nats_creds: Option<PathBuf>,

    /// File holding an NKey user seed (`SU…`) for servers with NKey users.
    #[arg(long, env = "WEFT_NATS_NKEY")]
    nats_nkey: Option<PathBuf>,

    /// Silence after which a host that also fails its probes is Ready False and its Host deleted (never
    /// less than the suspect window plus one probe timeout). wasmCloud: 60s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    host_ttl: Duration,

    /// Heartbeats a host may miss before it is Ready Unknown (its interval is advertised by Weft hosts,
    /// observed for others, and 15 s until known).
    #[arg(long, default_value_t = 3)]
    host_missed_heartbeats: u32,

    /// How long a probe of a silent host (`runtime.host.<id>.heartbeat`) waits for the reply.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    host_probe_timeout: Duration,

    /// How stale a Host's `lastSeen` and facts may get before its status is rewritten (writes per host
    /// per minute at steady state: 60 s divided by this).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    host_status_refresh: Duration,

    /// Parallel reconciles of the Host controller.
    #[arg(long, default_value_t = 4)]
    host_workers: usize,

    /// The scheduling policy for Workloads that name none (`spec.schedulerName`): `spread` (default:
    /// replicas of one set land on different hosts, so losing a host never takes all of them),
    /// `random` (wasmCloud's placement), `binpack`, `resource-aware`, or a native plugin's name.
    #[arg(long, env = "WEFT_SCHEDULER", default_value = "spread")]
    scheduler: String,

    /// Directory of native scheduling plugins (`*.so`), each loaded at start; a file that fails to
    /// load stops the operator with the loader's error. Load only trusted, root-owned files.
    #[arg(long, env = "WEFT_SCHEDULER_PLUGIN_DIR")]
    scheduler_plugin_dir: Option<PathBuf>,

    /// Whether a Workload may be placed on hosts of another environment (wasmCloud's
    /// `-allow-shared-hosts`).
    #[arg(long, env = "WEFT_ALLOW_SHARED_HOSTS", default_value_t = true, action = clap::ArgAction::Set)]
    allow_shared_hosts: bool,

    /// Namespaces whose Workloads the operator manages (comma-separated; empty: all namespaces, as
    /// wasmCloud's `watchNamespaces`).
    #[arg(long, env = "WEFT_WATCH_NAMESPACES", value_delimiter = ',')]
    watch_namespaces: Vec<String>,

    /// Parallel reconciles of the Workload controller (a slow host blocks only the Workloads placed
    /// on it).
    #[arg(long, default_value_t = 8)]
    workload_workers: usize,

    /// How long a deleted Workload keeps serving before it is stopped on its host, so the gateway and
    /// EndpointSlices drop it first (0 stops it at once).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    workload_drain_delay: Duration,

    /// Parallel reconciles of the WorkloadReplicaSet controller.
    #[arg(long, default_value_t = 4)]
    replicaset_workers: usize,

    /// How long a replica may stay out of sync (its `Sync` condition not True) before its replica set
    /// replaces it (wasmCloud's grace period).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    replica_grace_period: Duration,

    /// Parallel reconciles of the WorkloadDeployment controller.
    #[arg(long, default_value_t = 4)]
    deployment_workers: usize,

    /// Leave Artifacts to another controller (wasmCloud's `-disable-artifact-controller`).
    #[arg(long, default_value_t = false)]
    disable_artifact_controller: bool,

    /// Log format: `text` or `json`. The level comes from RUST_LOG (default `info`).
    #[arg(long, default_value = "text")]
    log_format: String,
}

impl Args {
    fn bus_settings(&self, identity: &str) -> BusSettings {
        BusSettings {
            url: self.nats_url.clone(),
            security: weft_host_api::NatsSecurity {
                tls_ca: self.nats_tls_ca.clone(),
                tls_cert: self.nats_tls_cert.clone(),
                tls_key: self.nats_tls_key.clone(),
                tls_first: self.nats_tls_first,
                creds: self.nats_creds.clone(),
                nkey_seed: self.nats_nkey.clone(),
            },
            name: format!("weft-operator {identity}"),
        }
    }
}

/// The scheduler: the built-in policies, every plugin of `--scheduler-plugin-dir`, the default policy.
fn scheduler(args: &Args) -> anyhow::Result<weft_scheduler_api::Scheduler> {
    let mut registry = weft_scheduler_builtin::registry(&weft_scheduler_builtin::BuiltinOptions::default());
    if let Some(dir) = &args.scheduler_plugin_dir {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading --scheduler-plugin-dir {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "so"))
            .collect();
        paths.sort();
        for path in paths {
            // SAFETY: loading runs the library's initialisers; the operator's documentation requires a
            // directory of trusted, root-owned plugins.
            let plugin = unsafe { weft_scheduler_native::NativePlugin::load(&path) }?;
            let name = weft_scheduler_api::Policy::name(&plugin).to_string();
            registry
                .register(std::sync::Arc::new(plugin))
                .with_context(|| format!("registering scheduling plugin {}", path.display()))?;
            tracing::info!(plugin = %path.display(), policy = %name, "loaded a scheduling plugin");
        }
    }
    let snapshot = weft_scheduler_api::Snapshot::new(Vec::new())
        .expect("an empty snapshot is valid")
        .with_allow_shared_hosts(args.allow_shared_hosts);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Ok(weft_scheduler_api::Scheduler::new(
        registry,
        &args.scheduler,
        snapshot,
        seed,
    )?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(&args.log_format)?;
    let identity = default_identity();
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let leader_election = args.leader_elect.then(|| LeaderElectionConfig {
        lease_name: args.leader_election_id.clone(),
        namespace: args.operator_namespace.clone(),
        identity: identity.clone(),
        lease_duration: args.lease_duration,
        renew_deadline: args.renew_deadline,
        retry_period: args.retry_period,
        release_on_cancel: true,
    });
    let config = ManagerConfig {
        probe_addr: Some(args.health_probe_bind_address),
        metrics_addr: Some(args.metrics_bind_address),
        cache_sync_timeout: args.cache_sync_timeout,
        graceful_shutdown_timeout: args.graceful_shutdown_timeout,
        leader_election,
    };
    let mut manager = Manager::new(client, config).context("starting the manager")?;
    let settings = Settings {
        operator_namespace: args.operator_namespace.clone(),
        host_namespaces: args.host_namespaces.clone(),
        pod_finalizer_workers: args.pod_finalizer_workers,
        instance: Some(identity.clone()),
        hosts: HostSettings {
            health: HealthConfig {
                ttl: args.host_ttl,
                missed_heartbeats: args.host_missed_heartbeats.max(1),
                probe_timeout: args.host_probe_timeout,
                ..HealthConfig::default()
            },
            status_refresh: args.host_status_refresh,
        },
        host_workers: args.host_workers,
        workload_workers: args.workload_workers,
        watch_namespaces: args.watch_namespaces.clone(),
        workload_drain_delay: args.workload_drain_delay,
        replica_set_workers: args.replicaset_workers,
        replica_grace_period: args.replica_grace_period,
        deployment_workers: args.deployment_workers,
        artifact_controller: !args.disable_artifact_controller,
    };
    let scheduler = scheduler(&args).context("setting up the scheduler")?;
    let bus = Bus::connect(&args.bus_settings(&identity))
        .await
        .context("connecting to NATS")?;
    bus.register_metrics(
        &mut manager
            .metrics()
            .registry()
            .write()
            .expect("metrics registry lock"),
    );
    weft_controllers::add_all(&mut manager, &settings, &bus, scheduler).context("registering controllers")?;
    tracing::info!(
        %identity,
        operator_namespace = %settings.operator_namespace,
        host_namespaces = ?settings.all_host_namespaces(),
        leader_elect = args.leader_elect,
        addrs = ?manager.bound_addrs(),
        "weft-operator starting"
    );
    manager
        .run(weft_framework::shutdown_signal())
        .await
        .context("the manager stopped")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_with_defaults() {
        let args = Args::try_parse_from([
            "weft-operator",
            "--operator-namespace",
            "weft",
            "--host-namespaces",
            "a,b",
        ])
        .expect("valid flags");
        assert!(args.leader_elect);
        assert_eq!(args.host_namespaces, vec!["a", "b"]);
        assert_eq!(args.lease_duration, Duration::from_secs(15));
        let off = Args::try_parse_from([
            "weft-operator",
            "--operator-namespace",
            "w",
            "--leader-elect",
            "false",
        ])
        .expect("valid flags");
        assert!(!off.leader_elect);
    }
}
