//! The HTTP ingress: HTTP/1.1 with keep-alive, routed by `Host` header to the workloads on this host,
//! with graceful drain.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use weft_runtime::backend::{ResponseBody, body};

use crate::control::Target;
use crate::metrics::{HostMetrics, NO_WORKLOAD, WorkloadRequestMetrics};
use crate::routing::{RouteMiss, RouteTable};

/// What the ingress needs per request.
#[derive(Debug)]
pub struct Ingress {
    routes: Arc<RouteTable<Target>>,
    unrouted: WorkloadRequestMetrics,
}

impl Ingress {
    /// An ingress over `routes`.
    pub fn new(routes: Arc<RouteTable<Target>>, metrics: HostMetrics) -> Self {
        Self {
            routes,
            unrouted: metrics.workload_requests(Arc::from(NO_WORKLOAD)),
        }
    }

    /// Serves one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<ResponseBody> {
        let began = Instant::now();
        match request_host(&req).and_then(|host| self.routes.route(host)) {
            Ok(target) => {
                let response = target.workload.handle(req.map(body::boxed)).await;
                target
                    .requests
                    .observe(response.status().as_u16(), began.elapsed().as_secs_f64());
                response
            }
            Err(miss) => {
                let status = match miss {
                    RouteMiss::BadHost(_) => StatusCode::BAD_REQUEST,
                    RouteMiss::UnknownHost(_) => StatusCode::NOT_FOUND,
                };
                tracing::debug!(%miss, "unrouted request");
                self.unrouted
                    .observe(status.as_u16(), began.elapsed().as_secs_f64());
                body::text_response(status, &miss.to_string())
            }
        }
    }
}

/// The host a request is for: its single `Host` header, else the authority of an absolute-form target.
pub fn request_host<B>(req: &Request<B>) -> Result<&str, RouteMiss> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err(RouteMiss::BadHost("request has more than one Host header")),
        (Some(value), None) => value
            .to_str()
            .map_err(|_| RouteMiss::BadHost("Host header is not valid ASCII")),
        (None, _) => req
            .uri()
            .authority()
            .map(|a| a.as_str())
            .ok_or(RouteMiss::BadHost("request has no Host header")),
    }
}

/// Accepts connections on `listener` until `shutdown` turns true, then stops accepting (the listener is
/// closed, so new connections are refused) and lets in-flight requests finish for up to
/// `drain_timeout`. Returns whether every connection finished in time.
pub async fn serve(
    listener: TcpListener,
    ingress: Arc<Ingress>,
    mut shutdown: watch::Receiver<bool>,
    drain_timeout: Duration,
) -> bool {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let ingress = ingress.clone();
                let service = service_fn(move |req| {
                    let ingress = ingress.clone();
                    async move { Ok::<_, Infallible>(ingress.handle(req).await) }
                });
                let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "ingress connection ended with an error");
                    }
                });
            }
            _ = crate::signalled(&mut shutdown) => break,
        }
    }
    drop(listener);
    tracing::info!(open_connections = graceful.count(), timeout = ?drain_timeout, "ingress draining");
    match tokio::time::timeout(drain_timeout, graceful.shutdown()).await {
        Ok(()) => {
            tracing::info!("ingress drained");
            true
        }
        Err(_) => {
            tracing::warn!("ingress drain timed out; remaining requests are cut off");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn host_comes_from_the_header_or_the_absolute_target() {
        assert_eq!(
            request_host(&req("/", &["a.example:8080"])).unwrap(),
            "a.example:8080"
        );
        assert_eq!(
            request_host(&req("http://b.example/x", &[])).unwrap(),
            "b.example"
        );
        assert!(matches!(request_host(&req("/", &[])), Err(RouteMiss::BadHost(_))));
        assert!(matches!(
            request_host(&req("/", &["a", "b"])),
            Err(RouteMiss::BadHost(_))
        ));
    }
}
