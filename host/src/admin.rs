//! The admin server: `/healthz`, `/readyz` and `/metrics` on their own port.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use weft_runtime::RuntimeBackend;

use crate::metrics;

/// What `/readyz` checks. The host becomes ready once it is connected to NATS and has published its
/// first heartbeat (the operator can place work on it), and stays ready while the runtime backend is
/// healthy and the host is not draining. A later loss of the NATS connection does not make it unready:
/// its workloads keep serving, and taking it out of load balancing would turn a control-plane blip into
/// an outage (the operator notices a silent host through missing heartbeats).
pub struct Readiness {
    nats: async_nats::Client,
    backend: Arc<dyn RuntimeBackend>,
    heartbeat_sent: AtomicBool,
    draining: AtomicBool,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("heartbeat_sent", &self.heartbeat_sent)
            .field("draining", &self.draining)
            .finish()
    }
}

impl Readiness {
    /// Readiness of a host using `nats` and `backend`.
    pub fn new(nats: async_nats::Client, backend: Arc<dyn RuntimeBackend>) -> Self {
        Self {
            nats,
            backend,
            heartbeat_sent: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }

    /// Records that a heartbeat was published.
    pub fn heartbeat_sent(&self) {
        self.heartbeat_sent.store(true, Ordering::Release);
    }

    /// Marks the host as draining (not ready from now on).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// `Ok(detail)` when ready, else why not.
    pub fn check(&self) -> Result<String, String> {
        readiness(
            self.draining.load(Ordering::Acquire),
            self.heartbeat_sent.load(Ordering::Acquire),
            self.nats.connection_state() == async_nats::connection::State::Connected,
            self.backend.probe(),
        )
    }
}

/// The readiness decision: `Ok(detail)` or `Err(reason)`.
pub fn readiness(
    draining: bool,
    announced: bool,
    nats_connected: bool,
    backend: weft_runtime::BackendHealth,
) -> Result<String, String> {
    if draining {
        return Err("draining for shutdown".into());
    }
    if !announced {
        return Err(if nats_connected {
            "first heartbeat not sent yet".into()
        } else {
            "not connected to NATS yet".into()
        });
    }
    if !backend.ready {
        return Err(format!("runtime backend not ready: {}", backend.message));
    }
    Ok(if nats_connected {
        "ok".into()
    } else {
        "ok (NATS connection lost, reconnecting; workloads keep serving)".into()
    })
}

/// State the admin endpoints read.
pub struct Admin {
    /// Readiness checks.
    pub readiness: Arc<Readiness>,
    /// Every metric of the host and its runtime.
    pub registry: Arc<Registry>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("readiness", &self.readiness)
            .finish()
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

impl Admin {
    /// Serves one admin request.
    pub fn handle<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        }
        match req.uri().path() {
            "/healthz" | "/livez" => text(StatusCode::OK, "ok\n"),
            "/readyz" => match self.readiness.check() {
                Ok(detail) => text(StatusCode::OK, format!("{detail}\n")),
                Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
            },
            "/metrics" => {
                let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
                let (content_type, body) = metrics::encode(&self.registry, accept);
                let mut r = text(StatusCode::OK, body);
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
                r
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; try /healthz, /readyz or /metrics\n",
            ),
        }
    }
}

/// Serves the admin endpoints on `listener` until the process exits.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let response = admin.handle(&req);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_runtime::BackendHealth;

    fn healthy() -> BackendHealth {
        BackendHealth {
            ready: true,
            message: "ok".into(),
        }
    }

    #[test]
    fn ready_once_announced_while_healthy_and_not_draining() {
        assert_eq!(readiness(false, true, true, healthy()).unwrap(), "ok");
        assert_eq!(
            readiness(true, true, true, healthy()).unwrap_err(),
            "draining for shutdown"
        );
        assert_eq!(
            readiness(false, false, false, healthy()).unwrap_err(),
            "not connected to NATS yet"
        );
        assert_eq!(
            readiness(false, false, true, healthy()).unwrap_err(),
            "first heartbeat not sent yet"
        );
        let sick = BackendHealth {
            ready: false,
            message: "engine gone".into(),
        };
        assert!(
            readiness(false, true, true, sick)
                .unwrap_err()
                .contains("engine gone")
        );
    }

    #[test]
    fn a_lost_nats_connection_does_not_stop_the_serving() {
        let detail = readiness(false, true, false, healthy()).unwrap();
        assert!(detail.contains("NATS connection lost"), "{detail}");
    }
}
