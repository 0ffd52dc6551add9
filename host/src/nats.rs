//! The NATS side of the control API: the connection, the heartbeat publisher and the request loop on
//! `runtime.host.<id>.>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::Subscriber;
use futures::{FutureExt, StreamExt};
use tokio::sync::{Notify, watch};
use weft_host_api::subjects;

use crate::admin::Readiness;
use crate::config::Args;
use crate::control::Controller;
use crate::metrics::HostMetrics;

/// What the heartbeat loop learns from the connection's events.
#[derive(Debug, Clone)]
pub struct ConnectionEvents {
    /// True from each `Connected` event to the next `Disconnected` one.
    pub connected: watch::Receiver<bool>,
    /// Notified whenever the connection comes back after a loss.
    pub reconnected: Arc<Notify>,
}

/// Connects to the control-plane NATS like wasmCloud's operator does (reconnect forever with jitter),
/// with the TLS and credentials of the flags. Rejected credentials or a TLS failure end the start with
/// a clear error; a server that is not reachable yet is retried in the background, so this returns at
/// once. The [`ConnectionEvents`] let the first heartbeat go out the moment the connection is up, and
/// the host announce itself at once when it comes back after a loss.
pub async fn connect(args: &Args, name: &str) -> anyhow::Result<(async_nats::Client, ConnectionEvents)> {
    let lost = Arc::new(AtomicBool::new(false));
    let (connected_tx, connected_rx) = watch::channel(false);
    let connected = Arc::new(connected_tx);
    let reconnected = Arc::new(Notify::new());
    let events = ConnectionEvents {
        connected: connected_rx,
        reconnected: reconnected.clone(),
    };
    let build = || {
        let (connected, reconnected, lost) = (connected.clone(), reconnected.clone(), lost.clone());
        weft_host_api::control_plane_connect_options(name).event_callback(move |event| {
            let (connected, reconnected, lost) = (connected.clone(), reconnected.clone(), lost.clone());
            async move {
                weft_host_api::log_connection_event(&event);
                match event {
                    async_nats::Event::Disconnected => {
                        connected.send_replace(false);
                        lost.store(true, Ordering::Relaxed);
                    }
                    async_nats::Event::Connected => {
                        connected.send_replace(true);
                        if lost.swap(false, Ordering::Relaxed) {
                            reconnected.notify_one();
                        }
                    }
                    _ => {}
                }
            }
        })
    };
    let client = weft_host_api::connect::connect(
        &args.scheduler_nats_url,
        &args.nats_security(),
        build,
        Duration::from_secs(5),
    )
    .await?;
    // A direct first connection emits no `Connected` event.
    if client.connection_state() == async_nats::connection::State::Connected {
        connected.send_replace(true);
    }
    Ok((client, events))
}

/// How soon a heartbeat that could not be published is retried.
const HEARTBEAT_RETRY: Duration = Duration::from_secs(1);

/// Publishes a heartbeat now (the moment NATS is connected), every `interval`, and as soon as the
/// connection comes back after a loss, until `shutdown` turns true. `events` come from [`connect`]. A
/// heartbeat that could not be published is retried after a second.
pub async fn heartbeat_loop(
    client: async_nats::Client,
    controller: Arc<Controller>,
    readiness: Arc<Readiness>,
    metrics: HostMetrics,
    interval: Duration,
    events: ConnectionEvents,
    mut shutdown: watch::Receiver<bool>,
) {
    let ConnectionEvents {
        mut connected,
        reconnected,
    } = events;
    let subject = subjects::heartbeat_subject(&controller.info().identity.id);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = reconnected.notified() => ticker.reset(),
            _ = crate::signalled(&mut shutdown) => return,
        }
        // Nothing is queued while disconnected (it would be stale): wait for the connection, then send a
        // fresh heartbeat at once (this makes the first one go out as soon as NATS is reachable).
        tokio::select! {
            up = connected.wait_for(|up| *up) => if up.is_err() { return },
            _ = crate::signalled(&mut shutdown) => return,
        }
        let payload = weft_host_api::to_json(&controller.heartbeat()).expect("heartbeats always encode");
        let published = async {
            client.publish(subject.clone(), payload.into()).await?;
            // Written to the socket (not only queued in the client).
            client.flush().await?;
            Ok::<_, anyhow::Error>(())
        };
        match tokio::time::timeout(Duration::from_secs(10), published).await {
            Ok(Ok(())) => {
                metrics.heartbeat_published();
                readiness.heartbeat_sent();
                // A reconnection noticed while this one was pending is covered by it.
                let _ = reconnected.notified().now_or_never();
                tracing::debug!(%subject, "heartbeat published");
            }
            Ok(Err(e)) => {
                metrics.heartbeat_error();
                tracing::warn!(error = %e, "heartbeat not published; retrying");
                ticker.reset_after(HEARTBEAT_RETRY);
            }
            Err(_) => {
                metrics.heartbeat_error();
                tracing::warn!("heartbeat not published: NATS did not take it within 10s; retrying");
                ticker.reset_after(HEARTBEAT_RETRY);
            }
        }
    }
}

/// Subscribes to the host's control subjects, `runtime.host.<id>.>`. Call it before the first
/// heartbeat goes out: the server then registers the subscription before anyone learns the host ID.
pub async fn subscribe_requests(client: &async_nats::Client, host_id: &str) -> anyhow::Result<Subscriber> {
    Ok(client.subscribe(subjects::host_wildcard_subject(host_id)).await?)
}

/// Serves control requests from `requests` until `shutdown` turns true. Each request runs in its own
/// task, so a slow start never delays a status or a stop.
pub async fn request_loop(
    client: async_nats::Client,
    mut requests: Subscriber,
    controller: Arc<Controller>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let subject = subjects::host_wildcard_subject(&controller.info().identity.id);
    tracing::info!(%subject, "serving control requests");
    loop {
        let msg = tokio::select! {
            msg = requests.next() => match msg {
                Some(msg) => msg,
                None => anyhow::bail!("the NATS subscription on {subject} ended"),
            },
            _ = crate::signalled(&mut shutdown) => break,
        };
        let client = client.clone();
        let controller = controller.clone();
        tokio::spawn(async move {
            let Some(reply) = controller.dispatch(&msg.subject, &msg.payload).await else {
                return;
            };
            let Some(reply_to) = msg.reply else {
                tracing::debug!(subject = %msg.subject, "request without a reply subject; reply dropped");
                return;
            };
            if let Err(e) = client.publish(reply_to, reply.into()).await {
                tracing::warn!(subject = %msg.subject, error = %e, "could not send the reply");
            }
        });
    }
    requests.unsubscribe().await.ok();
    Ok(())
}
