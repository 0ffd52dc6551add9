//! The Weft host: runs WebAssembly components for the operator.
//!
//! It speaks wasmCloud v2's host protocol over NATS (heartbeats on `runtime.operator.heartbeat.<id>`,
//! requests on `runtime.host.<id>.>`), serves the workloads' HTTP on one ingress port routed by `Host`
//! header, and exposes `/healthz`, `/readyz` and `/metrics` on an admin port. Workloads run in a
//! [`weft_runtime::RuntimeBackend`].
//!
//! Pure logic lives in its own modules ([`routing`], [`workloads`], [`convert`], [`heartbeat`],
//! [`facts`] parsers, [`metrics`] encoding); [`control`] applies it, [`nats`], [`ingress`] and
//! [`admin`] do the I/O, and [`run`] wires everything together.

pub mod admin;
pub mod config;
pub mod control;
pub mod convert;
pub mod facts;
pub mod heartbeat;
pub mod identity;
pub mod ingress;
pub mod metrics;
pub mod nats;
pub mod routing;
pub mod workloads;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use weft_host_api::{Timestamp, subjects};
use weft_runtime::RuntimeBackend;

use crate::admin::{Admin, Readiness};
use crate::config::Args;
use crate::control::{ControlConfig, Controller};
use crate::heartbeat::HostInfo;
use crate::identity::HostIdentity;
use crate::ingress::Ingress;
use crate::metrics::HostMetrics;
use crate::routing::RouteTable;

/// The host's version, advertised in heartbeats.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs the host until SIGTERM or SIGINT, then drains and returns.
///
/// `backend` makes the runtime backend from the host's NATS client (for NATS-backed host interfaces
/// such as `wasi:keyvalue`). The connection is opened while the backend is being created (creating the
/// Wasmtime engine and its pool takes a few milliseconds), so the first heartbeat goes out as soon as
/// both are ready.
///
/// Shutdown order: `/readyz` turns false; after `--shutdown-delay` the ingress stops accepting (new
/// connections are refused) and in-flight requests get `--drain-timeout` to finish; the control API
/// keeps answering meanwhile. Then every workload is stopped and the NATS connection is flushed.
pub async fn run<B>(
    args: Args,
    backend: impl FnOnce(async_nats::Client) -> B,
    mut registry: Registry,
) -> anyhow::Result<()>
where
    B: Future<Output = anyhow::Result<Arc<dyn RuntimeBackend>>>,
{
    let identity = HostIdentity::generate();
    let http = TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("bind --http-addr {}", args.http_addr))?;
    let admin_listener = TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("bind --admin-addr {}", args.admin_addr))?;
    let http_port = http.local_addr()?.port();

    // The connection is made in the background (and retried forever), so it proceeds while the backend
    // is created.
    let (nats, connection_events) = nats::connect(&args, &format!("weft-host {}", identity.id)).await?;
    // Before the first heartbeat: commands reach the server in order, so nobody can learn the host ID
    // before its control subscription exists.
    let backend = backend(nats.clone());
    let requests = nats::subscribe_requests(&nats, &identity.id).await?;
    let backend = backend.await?;
    let interfaces = backend.interfaces();

    let hostname = args.host_name.clone().unwrap_or_else(machine_hostname);
    let mut labels: BTreeMap<String, String> = args.labels.iter().cloned().collect();
    labels.insert("hostgroup".to_string(), args.host_group.clone());
    labels.insert(
        subjects::HEARTBEAT_INTERVAL_LABEL.to_string(),
        subjects::heartbeat_interval_label(args.heartbeat_interval),
    );
    let info = HostInfo {
        identity: identity.clone(),
        hostname,
        version: VERSION.to_string(),
        labels,
        started_at: Timestamp::now(),
        http_port,
        environment: args.environment.clone(),
        imports: heartbeat::wire_interfaces(&interfaces.imports),
        exports: heartbeat::wire_interfaces(&interfaces.exports),
    };
    tracing::info!(
        host_id = %identity.id,
        friendly_name = %identity.friendly_name,
        hostname = %info.hostname,
        host_group = %args.host_group,
        environment = %args.environment,
        http = %http.local_addr()?,
        admin = %admin_listener.local_addr()?,
        backend = backend.name(),
        version = VERSION,
        "host starting"
    );

    let metrics = HostMetrics::register(&mut registry, VERSION, &identity.id, backend.name());
    let routes = Arc::new(RouteTable::default());
    let controller = Arc::new(Controller::new(
        info,
        backend.clone(),
        routes.clone(),
        metrics.clone(),
        ControlConfig {
            stop_grace: args.stop_grace,
            start_timeout: args.start_timeout,
        },
    ));

    let readiness = Arc::new(Readiness::new(nats.clone(), backend.clone()));
    let admin = Arc::new(Admin {
        readiness: readiness.clone(),
        registry: Arc::new(registry),
    });
    tokio::spawn(admin::serve(admin_listener, admin));

    // Two phases: `drain` stops the ingress; `stop` ends the control loops once workloads are gone.
    let (drain_tx, drain_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let ingress = Arc::new(Ingress::new(routes, metrics.clone()));
    let ingress_task = tokio::spawn(ingress::serve(http, ingress, drain_rx, args.drain_timeout));
    let heartbeat_task = tokio::spawn(nats::heartbeat_loop(
        nats.clone(),
        controller.clone(),
        readiness.clone(),
        metrics.clone(),
        args.heartbeat_interval,
        connection_events,
        stop_rx.clone(),
    ));
    let mut requests_task = tokio::spawn(nats::request_loop(
        nats.clone(),
        requests,
        controller.clone(),
        stop_rx,
    ));

    tokio::select! {
        signal = shutdown_signal() => tracing::info!(signal, "shutting down"),
        ended = &mut requests_task => {
            // The subscription only ends if the client is closed for good.
            return Err(ended.map_err(anyhow::Error::from).and_then(|r| r).err()
                .unwrap_or_else(|| anyhow::anyhow!("the control request loop ended")));
        }
    }

    readiness.start_draining();
    metrics.set_draining();
    controller.refuse_starts();
    if !args.shutdown_delay.is_zero() {
        tracing::info!(delay = ?args.shutdown_delay, "not ready; still accepting connections");
        tokio::time::sleep(args.shutdown_delay).await;
    }
    let _ = drain_tx.send(true);
    // Whatever is still in flight after the drain timeout is cut off.
    let _drained = ingress_task.await;
    controller.stop_all(std::time::Duration::ZERO).await;
    let _ = stop_tx.send(true);
    let _ = heartbeat_task.await;
    let _ = requests_task.await;
    // Send what is still buffered (e.g. replies to stops that raced the shutdown).
    if nats.connection_state() == async_nats::connection::State::Connected
        && tokio::time::timeout(std::time::Duration::from_secs(5), nats.flush())
            .await
            .is_err()
    {
        tracing::warn!("NATS flush at shutdown timed out");
    }
    tracing::info!("host stopped");
    Ok(())
}

/// Resolves once `flag` is true (or its sender is gone).
pub(crate) async fn signalled(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

/// Waits for SIGTERM or SIGINT and returns its name.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install the SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// The machine's hostname (`/proc/sys/kernel/hostname`), or `localhost`.
pub fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
