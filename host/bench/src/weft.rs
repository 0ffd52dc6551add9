//! A `weft-host` process under benchmark: spawned against a nats-server, controlled over NATS.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use weft_host_api::{Component, HostClient, WitInterface, WitWorld, Workload, WorkloadStartRequest};
use weft_testkit::{NatsServer, Supervised, free_port};

use crate::http1;

/// A running weft-host with its host ID and a NATS client.
pub struct WeftHost {
    pub process: Supervised,
    pub host_id: String,
    /// When its first heartbeat arrived.
    pub heartbeat_at: Instant,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub client: HostClient,
}

impl WeftHost {
    /// Spawns weft-host and waits for its first heartbeat. Returns the host and the spawn instant.
    pub fn spawn(
        runtime: &tokio::runtime::Runtime,
        binary: &Path,
        nats: &NatsServer,
        cache: &Path,
        log: &Path,
    ) -> anyhow::Result<(Self, Instant)> {
        Self::spawn_with(runtime, binary, nats, cache, log, &[])
    }

    /// [`WeftHost::spawn`] with extra command-line arguments.
    pub fn spawn_with(
        runtime: &tokio::runtime::Runtime,
        binary: &Path,
        nats: &NatsServer,
        cache: &Path,
        log: &Path,
        extra: &[&str],
    ) -> anyhow::Result<(Self, Instant)> {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        runtime.block_on(async {
            let nats_client = async_nats::connect(nats.url()).await?;
            let client = HostClient::new(nats_client);
            let mut heartbeats = client.subscribe_heartbeats().await?;
            let mut cmd = Command::new(binary);
            cmd.args(["--scheduler-nats-url", &nats.url()])
                .args(["--http-addr", &http.to_string()])
                .args(["--admin-addr", &admin.to_string()])
                .arg("--cache-dir")
                .arg(cache)
                .args(["--host-name", "127.0.0.1", "--heartbeat-interval", "60s"])
                .args(extra)
                .env("RUST_LOG", "warn");
            let spawned = Instant::now();
            let process = Supervised::spawn("weft-host", cmd, log)?;
            let heartbeat = tokio::time::timeout(Duration::from_secs(30), heartbeats.next())
                .await
                .context("no heartbeat from weft-host within 30 s")?
                .context("heartbeat stream ended")?;
            let heartbeat_at = Instant::now();
            Ok((
                Self {
                    process,
                    host_id: heartbeat.id,
                    heartbeat_at,
                    http,
                    admin,
                    client,
                },
                spawned,
            ))
        })
    }

    /// Starts a one-component workload bound to `hostname`.
    pub fn start(
        &self,
        runtime: &tokio::runtime::Runtime,
        id: &str,
        image: &str,
        hostname: &str,
    ) -> anyhow::Result<()> {
        let mut config = BTreeMap::new();
        config.insert("host".to_string(), hostname.to_string());
        let request = WorkloadStartRequest {
            workload_id: id.to_string(),
            workload: Some(Workload {
                namespace: "bench".into(),
                name: id.to_string(),
                wit_world: Some(WitWorld {
                    components: vec![Component {
                        name: "hello".into(),
                        image: image.to_string(),
                        ..Default::default()
                    }],
                    host_interfaces: vec![WitInterface {
                        namespace: "wasi".into(),
                        package: "http".into(),
                        interfaces: vec!["incoming-handler".into()],
                        config: config.into_iter().collect(),
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            }),
        };
        self.start_request(runtime, &request)
    }

    /// Sends a start request.
    pub fn start_request(
        &self,
        runtime: &tokio::runtime::Runtime,
        request: &WorkloadStartRequest,
    ) -> anyhow::Result<()> {
        runtime
            .block_on(self.client.start(&self.host_id, request))
            .map(|_| ())
            .with_context(|| {
                format!(
                    "start workload {}: host log:\n{}",
                    request.workload_id,
                    self.process.log_tail(4096)
                )
            })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn metrics(&self) -> anyhow::Result<String> {
        let (status, body) = http1::get(self.admin, "localhost", "/metrics")?;
        anyhow::ensure!(status == 200, "/metrics answered {status}");
        Ok(body)
    }
}
