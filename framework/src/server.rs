//! The small HTTP server for `/healthz`, `/readyz` and `/metrics`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Liveness and readiness as the probes see them.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    healthy: AtomicBool,
}

impl Health {
    /// Healthy, not ready yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            ready: AtomicBool::new(false),
            healthy: AtomicBool::new(true),
        })
    }

    /// Sets readiness (`/readyz`).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Sets liveness (`/healthz`).
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Release);
    }

    /// Whether `/healthz` answers 200.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }
}

fn text(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("static response parts")
}

/// Answers one request.
pub fn respond(req: &Request<Incoming>, health: &Health, metrics: &Metrics) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "method not allowed\n");
    }
    match req.uri().path() {
        "/healthz" | "/livez" if health.is_healthy() => text(StatusCode::OK, PLAIN, "ok\n"),
        "/healthz" | "/livez" => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "unhealthy\n"),
        "/readyz" if health.is_ready() => text(StatusCode::OK, PLAIN, "ok\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "caches not synced\n"),
        "/metrics" => {
            let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
            let (content_type, body) = metrics.encode_for_accept(accept);
            text(StatusCode::OK, content_type, body)
        }
        _ => text(StatusCode::NOT_FOUND, PLAIN, "not found\n"),
    }
}

/// Serves until `cancel` fires.
pub async fn serve(listener: TcpListener, health: Arc<Health>, metrics: Metrics, cancel: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "probe server accept failed");
                    continue;
                }
            },
        };
        let health = health.clone();
        let metrics = metrics.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let response = respond(&req, &health, &metrics);
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}
