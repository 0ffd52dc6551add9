//! The operator's NATS connection (the scheduler bus): connected with the flags' TLS and credentials,
//! with its state (up since when, how many times it came up) watched so that health decisions never
//! blame hosts for the operator's own deafness.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::time::Instant;
use weft_host_api::{ConnectError, NatsSecurity};

/// How to reach NATS.
#[derive(Debug, Clone)]
pub struct BusSettings {
    /// Server URL(s), comma-separated.
    pub url: String,
    /// TLS and credentials.
    pub security: NatsSecurity,
    /// The connection name the server shows.
    pub name: String,
}

/// The connection's state as health decisions see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Since when it has been up (`None` while down).
    pub connected_since: Option<Instant>,
    /// How many times it came up (a new epoch starts at each reconnection).
    pub epoch: u64,
}

/// The connected bus: a client and its state.
#[derive(Debug, Clone)]
pub struct Bus {
    client: async_nats::Client,
    link: watch::Receiver<Link>,
    metrics: BusMetrics,
}

/// Bus metrics.
#[derive(Debug, Clone, Default)]
struct BusMetrics {
    connected: Gauge,
    connections: Counter,
}

impl Bus {
    /// Connects (see [`weft_host_api::connect::connect`]: rejected credentials or TLS errors fail here;
    /// an unreachable server is retried in the background).
    pub async fn connect(settings: &BusSettings) -> Result<Self, ConnectError> {
        let metrics = BusMetrics::default();
        let (tx, rx) = watch::channel(Link {
            connected_since: None,
            epoch: 0,
        });
        let tx = Arc::new(tx);
        let build = || {
            let (tx, metrics) = (tx.clone(), metrics.clone());
            weft_host_api::control_plane_connect_options(&settings.name).event_callback(move |event| {
                let (tx, metrics) = (tx.clone(), metrics.clone());
                async move {
                    weft_host_api::log_connection_event(&event);
                    match event {
                        async_nats::Event::Connected => mark_up(&tx, &metrics),
                        async_nats::Event::Disconnected => {
                            metrics.connected.set(0);
                            tx.send_modify(|l| l.connected_since = None);
                        }
                        _ => {}
                    }
                }
            })
        };
        let client =
            weft_host_api::connect::connect(&settings.url, &settings.security, build, Duration::from_secs(5))
                .await?;
        if client.connection_state() == async_nats::connection::State::Connected {
            mark_up(&tx, &metrics);
        }
        Ok(Self {
            client,
            link: rx,
            metrics,
        })
    }

    /// Registers `weft_nats_connected` and `weft_nats_connections_total`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "weft_nats_connected",
            "Whether the operator's NATS connection is up (1) or down (0)",
            self.metrics.connected.clone(),
        );
        registry.register(
            "weft_nats_connections",
            "Times the operator's NATS connection came up",
            self.metrics.connections.clone(),
        );
    }

    /// The NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The current state.
    pub fn link(&self) -> Link {
        *self.link.borrow()
    }

    /// A receiver that changes whenever the state does.
    pub fn watch(&self) -> watch::Receiver<Link> {
        self.link.clone()
    }
}

fn mark_up(tx: &watch::Sender<Link>, metrics: &BusMetrics) {
    tx.send_if_modified(|l| {
        if l.connected_since.is_some() {
            return false;
        }
        l.connected_since = Some(Instant::now());
        l.epoch += 1;
        metrics.connected.set(1);
        metrics.connections.inc();
        true
    });
}
