//! The gateway's listener: HTTP/1.1 and h2c (prior knowledge) on one port. On shutdown it keeps
//! accepting for the shutdown delay (load balancers in front notice `/readyz` first), then stops
//! accepting and lets in-flight requests finish within the drain timeout.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weft_framework::{BoxError, Runnable};

use crate::proxy::Proxy;

/// The proxy listener as a runnable of the manager (every replica runs it).
pub struct ProxyServer {
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown_delay: Duration,
    drain_timeout: Duration,
}

impl ProxyServer {
    /// Serves `proxy` on `listener`.
    pub fn new(
        listener: TcpListener,
        proxy: Arc<Proxy>,
        shutdown_delay: Duration,
        drain_timeout: Duration,
    ) -> Self {
        Self {
            listener,
            proxy,
            shutdown_delay,
            drain_timeout,
        }
    }
}

impl Runnable for ProxyServer {
    fn name(&self) -> String {
        "gateway-proxy".into()
    }

    fn needs_leader_election(&self) -> bool {
        false
    }

    fn start(self: Box<Self>, cancel: CancellationToken) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async move {
            let Self {
                listener,
                proxy,
                shutdown_delay,
                drain_timeout,
            } = *self;
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .keep_alive(true)
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let graceful = GracefulShutdown::new();
            let stop = cancel.clone();
            let stopping = async move {
                stop.cancelled().await;
                tracing::info!(delay = ?shutdown_delay, "not ready; still accepting connections");
                tokio::time::sleep(shutdown_delay).await;
            };
            tokio::pin!(stopping);
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let (stream, peer): (_, SocketAddr) = match accepted {
                            Ok(c) => c,
                            Err(e) => {
                                tracing::warn!(error = %e, "accept failed");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        };
                        let _ = stream.set_nodelay(true);
                        let proxy = proxy.clone();
                        let service = service_fn(move |req| {
                            let proxy = proxy.clone();
                            async move { Ok::<_, Infallible>(proxy.handle(req, peer).await) }
                        });
                        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                        let conn = graceful.watch(conn);
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::debug!(%peer, error = %e, "connection ended with an error");
                            }
                        });
                    }
                    _ = &mut stopping => break,
                }
            }
            drop(listener);
            tracing::info!(open_connections = graceful.count(), timeout = ?drain_timeout, "draining");
            if tokio::time::timeout(drain_timeout, graceful.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("drain timed out; remaining requests are cut off");
            }
            Ok(())
        })
    }
}
