//! Command-line flags of `weft-host` (names follow `wash host` where one exists).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

/// Runs WebAssembly components for the Weft (or wasmCloud) operator.
#[derive(Debug, Clone, Parser)]
#[command(name = "weft-host", version, about)]
pub struct Args {
    /// Address the host's HTTP port is reachable at, advertised in heartbeats (in Kubernetes: the pod
    /// IP). Defaults to the machine's hostname.
    #[arg(long, env = "WEFT_HOST_NAME")]
    pub host_name: Option<String>,

    /// Host group, advertised as the `hostgroup` label (workloads select hosts by it).
    #[arg(long, env = "WEFT_HOST_GROUP", default_value = "default")]
    pub host_group: String,

    /// Environment advertised in heartbeats (in Kubernetes: the pod's namespace).
    #[arg(long, env = "WEFT_ENVIRONMENT", default_value = "")]
    pub environment: String,

    /// NATS URL of the control plane (comma-separate several servers of one cluster).
    #[arg(
        long,
        env = "WEFT_SCHEDULER_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub scheduler_nats_url: String,

    /// CA certificate (PEM) to verify the NATS servers with.
    #[arg(long, env = "WEFT_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for NATS mutual TLS (with --nats-tls-key).
    #[arg(long, env = "WEFT_NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,

    /// Client key (PEM) for NATS mutual TLS (with --nats-tls-cert).
    #[arg(long, env = "WEFT_NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,

    /// Start TLS before the NATS protocol handshake (for servers configured with `handshake_first`).
    #[arg(long, env = "WEFT_NATS_TLS_FIRST")]
    pub nats_tls_first: bool,

    /// NATS `.creds` file (user JWT and NKey seed) for servers in operator/JWT mode.
    #[arg(long, env = "WEFT_NATS_CREDS", conflicts_with = "nats_nkey")]
    pub nats_creds: Option<PathBuf>,

    /// File holding an NKey user seed (`SU…`) for servers with NKey users.
    #[arg(long, env = "WEFT_NATS_NKEY")]
    pub nats_nkey: Option<PathBuf>,

    /// Address of the HTTP ingress.
    #[arg(long, env = "WEFT_HTTP_ADDR", default_value = "0.0.0.0:9191")]
    pub http_addr: SocketAddr,

    /// Address of the admin server (/healthz, /readyz, /metrics).
    #[arg(long, env = "WEFT_ADMIN_ADDR", default_value = "0.0.0.0:9192")]
    pub admin_addr: SocketAddr,

    /// Interval between published heartbeats (the first is sent at start-up). It is advertised in the
    /// `weft.dev/heartbeat-interval` label, so the Weft operator knows when a heartbeat is overdue; 1 s
    /// lets it notice a dead host within seconds. wasmCloud hosts send one every 15 s; under
    /// wasmCloud's operator (which writes the Host on every heartbeat) use 15s.
    #[arg(long, env = "WEFT_HEARTBEAT_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,

    /// Extra label advertised in heartbeats, `key=value` (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    /// Directory for fetched components and compiled code.
    #[arg(long, env = "WEFT_CACHE_DIR", default_value = "/var/cache/weft")]
    pub cache_dir: PathBuf,

    /// Component instances alive at once across all workloads; requests beyond get 503.
    #[arg(long, env = "WEFT_MAX_INSTANCES", default_value_t = 1000)]
    pub max_instances: u32,

    /// Per-instance memory limit when a component sets none (e.g. `64Mi`).
    #[arg(long, env = "WEFT_MEMORY_LIMIT", default_value = "64Mi", value_parser = parse_bytes)]
    pub memory_limit: u64,

    /// Largest per-instance memory limit a component may ask for.
    #[arg(long, env = "WEFT_MAX_MEMORY_LIMIT", default_value = "256Mi", value_parser = parse_bytes)]
    pub max_memory_limit: u64,

    /// CPU time one request may use before it is cut off.
    #[arg(long, env = "WEFT_CPU_TIME_LIMIT", default_value = "5s", value_parser = parse_duration)]
    pub cpu_time_limit: Duration,

    /// Wall-clock time one request may take in total, including waiting on I/O.
    #[arg(long, env = "WEFT_REQUEST_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Requests one workload serves at once unless it sets `maxConcurrency`; the excess gets 503.
    #[arg(long, env = "WEFT_MAX_CONCURRENCY", default_value_t = 1000)]
    pub max_concurrency: u32,

    /// Largest accepted request body; larger ones get 413.
    #[arg(long, env = "WEFT_MAX_REQUEST_BODY", default_value = "16Mi", value_parser = parse_bytes)]
    pub max_request_body: u64,

    /// Largest component accepted from a source.
    #[arg(long, env = "WEFT_MAX_COMPONENT_SIZE", default_value = "100Mi", value_parser = parse_bytes)]
    pub max_component_size: u64,

    /// Timeout for fetching one component.
    #[arg(long, env = "WEFT_FETCH_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub fetch_timeout: Duration,

    /// A registry (`host[:port]`) reached over plain HTTP (repeatable; loopback registries always are).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,

    /// How long a `workload.start` (fetch, compile, link) may take before it is abandoned (keep it
    /// below the operator's 60 s start timeout).
    #[arg(long, env = "WEFT_START_TIMEOUT", default_value = "55s", value_parser = parse_duration)]
    pub start_timeout: Duration,

    /// How long a stopping workload's in-flight requests may run (keep it below the operator's 30 s
    /// stop timeout).
    #[arg(long, env = "WEFT_STOP_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub stop_grace: Duration,

    /// On SIGTERM: how long to keep accepting connections after /readyz turns false (lets load
    /// balancers notice).
    #[arg(long, env = "WEFT_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// On SIGTERM: how long in-flight requests may take to finish before the host exits.
    #[arg(long, env = "WEFT_DRAIN_TIMEOUT", default_value = "25s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// The `wasi:keyvalue` backend a workload gets unless its `wasi:keyvalue` host interface names one
    /// in `backend`: `nats` (JetStream KV on the host's NATS connection; the server needs JetStream),
    /// `filesystem` (under --keyvalue-dir, for local use) or `none`.
    #[arg(long, env = "WEFT_KEYVALUE_BACKEND", value_enum, default_value = "nats")]
    pub keyvalue_backend: KeyValueBackend,

    /// Directory of the `filesystem` key-value backend (default: `<cache-dir>/keyvalue`).
    #[arg(long, env = "WEFT_KEYVALUE_DIR")]
    pub keyvalue_dir: Option<PathBuf>,

    /// Let components reach the host's loopback ports they list in `allowedHostLoopbackPorts` (without
    /// it those lists are inert, as on a wasmCloud host).
    #[arg(long, env = "WEFT_ALLOW_HOST_LOOPBACK")]
    pub allow_host_loopback: bool,

    /// Back-off before a failed workload service is restarted (doubled per restart, up to 30 s).
    #[arg(long, env = "WEFT_SERVICE_RESTART_BACKOFF", default_value = "500ms", value_parser = parse_duration)]
    pub service_restart_backoff: Duration,

    /// Log format.
    #[arg(long, env = "WEFT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// The default `wasi:keyvalue` backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyValueBackend {
    /// NATS JetStream KV.
    Nats,
    /// A directory on the host.
    Filesystem,
    /// None by default (a workload may still name one).
    None,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Args {
    /// The NATS TLS and credential settings.
    pub fn nats_security(&self) -> weft_host_api::NatsSecurity {
        weft_host_api::NatsSecurity {
            tls_ca: self.nats_tls_ca.clone(),
            tls_cert: self.nats_tls_cert.clone(),
            tls_key: self.nats_tls_key.clone(),
            tls_first: self.nats_tls_first,
            creds: self.nats_creds.clone(),
            nkey_seed: self.nats_nkey.clone(),
        }
    }

    /// The key-value backends: both are offered (a workload may name either); the flag picks the
    /// default.
    pub fn keyvalue_backends(&self, nats: async_nats::Client) -> weft_runtime::keyvalue::KeyValueBackends {
        use weft_runtime::keyvalue::{FilesystemKeyValue, KeyValueBackends, NatsKeyValue};
        let dir = self
            .keyvalue_dir
            .clone()
            .unwrap_or_else(|| self.cache_dir.join("keyvalue"));
        let mut backends = KeyValueBackends::default();
        backends.add(Arc::new(NatsKeyValue::new(nats)));
        backends.add(Arc::new(FilesystemKeyValue::new(dir)));
        match self.keyvalue_backend {
            KeyValueBackend::Nats => backends.set_default("nats").expect("added above"),
            KeyValueBackend::Filesystem => backends.set_default("filesystem").expect("added above"),
            KeyValueBackend::None => backends.clear_default(),
        }
        backends
    }

    /// The Wasmtime backend's settings from these flags (everything else keeps its default; the
    /// key-value backends come from [`Args::keyvalue_backends`]).
    pub fn wasmtime_config(&self) -> weft_runtime::WasmtimeConfig {
        weft_runtime::WasmtimeConfig {
            service_restart_backoff: self.service_restart_backoff,
            allow_host_loopback: self.allow_host_loopback,
            cache_dir: self.cache_dir.clone(),
            max_instances: self.max_instances,
            default_memory_limit: self.memory_limit,
            max_memory_limit: self.max_memory_limit.max(self.memory_limit),
            cpu_time_limit: self.cpu_time_limit,
            wall_time_limit: self.request_timeout,
            default_max_concurrency: self.max_concurrency,
            max_request_body: self.max_request_body,
            max_component_size: self.max_component_size,
            fetch_timeout: self.fetch_timeout,
            insecure_registries: self.insecure_registries.clone(),
            ..weft_runtime::WasmtimeConfig::default()
        }
    }
}

/// Parses `1.5s`, `250ms`, `2m`, `1h` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (e.g. 15s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "invalid duration unit {other:?} in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Parses a byte size: a plain number, or with a suffix `Ki`, `Mi`, `Gi` (powers of 1024) or `K`, `M`,
/// `G` (powers of 1000).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (e.g. 128Mi)"))?;
    let mult: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        other => {
            return Err(format!(
                "invalid size unit {other:?} in {s:?} (use Ki, Mi, Gi, K, M or G)"
            ));
        }
    };
    value
        .checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Parses `key=value`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("invalid label {s:?}: expected key=value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("128Mi").unwrap(), 128 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("12Xi").is_err());
        assert!(parse_bytes("99999999999999999999Gi").is_err());
    }

    #[test]
    fn labels() {
        assert_eq!(parse_label("zone=eu-1").unwrap(), ("zone".into(), "eu-1".into()));
        assert_eq!(parse_label("empty=").unwrap(), ("empty".into(), String::new()));
        assert!(parse_label("novalue").is_err());
        assert!(parse_label("=x").is_err());
    }

    #[test]
    fn flags_as_the_chart_passes_them() {
        let args = Args::try_parse_from([
            "weft-host",
            "--host-name",
            "10.244.0.7",
            "--host-group",
            "edge",
            "--environment",
            "tenant-a",
            "--scheduler-nats-url",
            "nats://nats.weft-system:4222",
            "--http-addr",
            "0.0.0.0:9191",
            "--label",
            "zone=a",
            "--heartbeat-interval",
            "1s",
        ])
        .unwrap();
        assert_eq!(args.host_name.as_deref(), Some("10.244.0.7"));
        assert_eq!(args.host_group, "edge");
        assert_eq!(args.environment, "tenant-a");
        assert_eq!(args.labels, [("zone".to_string(), "a".to_string())]);
        assert_eq!(args.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(args.admin_addr.port(), 9192);
    }

    #[test]
    fn limits_reach_the_backend_config() {
        let args = Args::try_parse_from([
            "weft-host",
            "--cache-dir",
            "/tmp/c",
            "--memory-limit",
            "32Mi",
            "--max-memory-limit",
            "16Mi",
            "--cpu-time-limit",
            "250ms",
            "--request-timeout",
            "2s",
            "--max-concurrency",
            "7",
            "--insecure-registry",
            "registry.local:5000",
        ])
        .unwrap();
        let c = args.wasmtime_config();
        assert_eq!(c.cache_dir, PathBuf::from("/tmp/c"));
        assert_eq!(c.default_memory_limit, 32 << 20);
        assert_eq!(c.max_memory_limit, 32 << 20, "never below the default");
        assert_eq!(c.cpu_time_limit, Duration::from_millis(250));
        assert_eq!(c.wall_time_limit, Duration::from_secs(2));
        assert_eq!(c.default_max_concurrency, 7);
        assert_eq!(c.insecure_registries, ["registry.local:5000"]);
    }
}
