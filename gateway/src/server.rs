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

thread_local! {
    static PROXY_THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The index of the proxy thread running the caller (0 outside proxy threads).
pub fn proxy_thread() -> usize {
    PROXY_THREAD.with(std::cell::Cell::get)
}

/// The proxy listener as a runnable of the manager (every replica runs it). It serves on `threads`
/// threads, each a single-threaded event loop accepting from the same socket, the way nginx's workers
/// do: a request, its upstream connection and their wake-ups stay on one thread.
pub struct ProxyServer {
    listener: TcpListener,
    proxy: Arc<Proxy>,
    threads: usize,
    shutdown_delay: Duration,
    drain_timeout: Duration,
}

impl ProxyServer {
    /// Serves `proxy` on `listener` with `threads` threads.
    pub fn new(
        listener: TcpListener,
        proxy: Arc<Proxy>,
        threads: usize,
        shutdown_delay: Duration,
        drain_timeout: Duration,
    ) -> Self {
        Self {
            listener,
            proxy,
            threads: threads.max(1),
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
                threads,
                shutdown_delay,
                drain_timeout,
            } = *self;
            let listener = listener.into_std()?;
            let mut done = Vec::new();
            for i in 0..threads {
                let listener = listener.try_clone()?;
                let (proxy, cancel) = (proxy.clone(), cancel.clone());
                let (tx, rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
                std::thread::Builder::new()
                    .name(format!("gateway-proxy-{i}"))
                    .spawn(move || {
                        PROXY_THREAD.with(|t| t.set(i));
                        let result = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .map_err(|e| e.to_string())
                            .and_then(|rt| {
                                rt.block_on(async move {
                                    let listener =
                                        TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                                    serve(listener, proxy, shutdown_delay, drain_timeout, cancel).await;
                                    Ok(())
                                })
                            });
                        let _ = tx.send(result);
                    })?;
                done.push(rx);
            }
            for rx in done {
                match rx.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => return Err("a proxy thread ended without a result".into()),
                }
            }
            Ok(())
        })
    }
}

/// One proxy thread's accept loop; on `cancel`, keeps accepting for the shutdown delay, then drains.
async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown_delay: Duration,
    drain_timeout: Duration,
    cancel: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    let graceful = GracefulShutdown::new();
    let stopping = async move {
        cancel.cancelled().await;
        tracing::info!(thread = proxy_thread(), delay = ?shutdown_delay, "not ready; still accepting connections");
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
    tracing::info!(thread = proxy_thread(), open_connections = graceful.count(), timeout = ?drain_timeout, "draining");
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            thread = proxy_thread(),
            "drain timed out; remaining requests are cut off"
        );
    }
}
