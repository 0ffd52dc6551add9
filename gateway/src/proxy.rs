//! The request path: Host header → route → upstream, bodies streamed both ways.
//!
//! What users of wasmCloud's gateway see is kept: the `Host` header is passed on unchanged,
//! `X-Forwarded-For`, `-Host`, `-Proto`, `X-Real-IP` and `X-Workload-Id` are set, an unknown host gets
//! `503 No backend available` (or goes to `--fallback-endpoint`), an upstream failure `502 Gateway
//! Error`. Beyond it: round robin over the hosts, a host that refuses a connection is ejected for a
//! while, and a request without a body is tried once more on another host, within a retry budget, when
//! it provably never reached an upstream (the connection could not be made) or, for a safe method
//! (`GET`, `HEAD`, `OPTIONS`, `TRACE`), when the upstream's connection closed before a response head.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus_client::metrics::counter::Counter;

use crate::balance::{Ejections, RetryBudget, pick};
use crate::metrics::GatewayMetrics;
use crate::routes::{Route, RouteTable, Upstream, routing_key};

/// The body type of everything the gateway sends and answers.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// One route as the request path uses it: the route, its round-robin cursor, its upstreams'
/// authorities parsed once, and the counter of its `200` answers (the common case, counted without a
/// label lookup).
#[derive(Debug)]
pub struct PublishedRoute {
    /// The route.
    pub route: Arc<Route>,
    cursor: AtomicUsize,
    authorities: Vec<Option<Authority>>,
    ok: Counter,
}

/// A route table as published to the request path.
#[derive(Debug, Default)]
pub struct Published {
    /// The table.
    pub table: RouteTable,
    routes: HashMap<String, PublishedRoute>,
}

impl Published {
    /// Publishes `table`, counting `200` answers in `metrics`.
    pub fn new(table: RouteTable, metrics: &GatewayMetrics) -> Self {
        let routes = table
            .hostnames()
            .into_iter()
            .filter_map(|h| table.get(h).map(|r| (h.to_string(), r.clone())))
            .map(|(h, route)| {
                let authorities = route.upstreams.iter().map(|u| u.authority.parse().ok()).collect();
                let published = PublishedRoute {
                    ok: metrics.requests_counter(&h, StatusCode::OK),
                    cursor: AtomicUsize::new(0),
                    authorities,
                    route,
                };
                (h, published)
            })
            .collect();
        Self { table, routes }
    }
}

/// Settings of the request path.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Connecting to an upstream gives up after this long (then the request may be retried).
    pub connect_timeout: Duration,
    /// A request (until the response head arrives) gives up after this long: 504.
    pub request_timeout: Duration,
    /// How long an upstream that refused a connection is skipped.
    pub ejection: Duration,
    /// Where requests for unknown hosts go instead of the 503 (`http://host:port`).
    pub fallback: Option<Uri>,
    /// Proxy threads ([`crate::server::ProxyServer`]): each gets its own upstream connection pool,
    /// so a request and its upstream connection are served by one thread.
    pub threads: usize,
}

/// The proxy: the published table and the shared upstream state.
pub struct Proxy {
    routes: ArcSwap<Published>,
    /// One upstream pool per proxy thread (see [`ProxySettings::threads`]).
    clients: Vec<Client<HttpConnector, ProxyBody>>,
    settings: ProxySettings,
    ejections: Ejections,
    budget: RetryBudget,
    metrics: GatewayMetrics,
}

const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_WORKLOAD_ID: HeaderName = HeaderName::from_static("x-workload-id");

fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CONNECTION, "close")
        .body(
            Full::new(Bytes::from_static(body.as_bytes()))
                .map_err(|e| match e {})
                .boxed(),
        )
        .expect("a valid response")
}

/// The headers an upstream gets: the client's, without hop-by-hop ones, plus the forwarding headers.
pub fn upstream_headers(client: &HeaderMap, peer: SocketAddr, host: &str, workload_id: &str) -> HeaderMap {
    let mut headers = client.clone();
    // Headers named by `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = client
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for h in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(h);
    }
    let ip = peer.ip().to_string();
    let forwarded_for = match client.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.is_empty() => format!("{prior}, {ip}"),
        _ => ip.clone(),
    };
    let real_ip = client
        .get(&X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or(ip);
    for (name, value) in [
        (X_FORWARDED_FOR, forwarded_for.as_str()),
        (X_FORWARDED_HOST, host),
        (X_FORWARDED_PROTO, "http"),
        (X_REAL_IP, real_ip.as_str()),
        (X_WORKLOAD_ID, workload_id),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
    headers
}

/// The request line and headers of a request, kept so a request without a body can be sent again.
struct Head {
    method: http::Method,
    uri: Uri,
    version: http::Version,
    headers: HeaderMap,
}

impl Head {
    /// The head and the body of `req`.
    fn split(req: Request<Incoming>) -> (Self, Incoming) {
        let (parts, body) = req.into_parts();
        let head = Self {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
        };
        (head, body)
    }
}

impl Proxy {
    /// A proxy with an empty table.
    pub fn new(settings: ProxySettings, metrics: GatewayMetrics) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        let clients = (0..settings.threads.max(1))
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(90))
                    .pool_max_idle_per_host(100)
                    .build(connector.clone())
            })
            .collect();
        Self {
            routes: ArcSwap::from_pointee(Published::default()),
            clients,
            ejections: Ejections::new(settings.ejection),
            budget: RetryBudget::new(10, 20),
            settings,
            metrics,
        }
    }

    /// Replaces the route table (the request path picks it up with its next request).
    pub fn publish(&self, table: RouteTable) {
        self.routes.store(Arc::new(Published::new(table, &self.metrics)));
    }

    /// The table the request path uses now.
    pub fn table(&self) -> Arc<Published> {
        self.routes.load_full()
    }

    /// Handles one request from `peer`.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        let started = Instant::now();
        self.budget.request(started);
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let published = self.routes.load();
        let route = routing_key(&host).and_then(|k| published.routes.get(k.as_ref()));
        let Some(published_route) = route else {
            let response = match &self.settings.fallback {
                Some(fallback) => self.fallback(req, fallback, peer, &host).await,
                None => text(StatusCode::SERVICE_UNAVAILABLE, "No backend available\n"),
            };
            self.metrics.request("", response.status(), started.elapsed());
            return response;
        };
        let route = &published_route.route;
        let cursor = &published_route.cursor;
        let bodiless = req.body().is_end_stream();
        let (head, body) = Head::split(req);
        let now = Instant::now();
        let Some(first) = pick(route, cursor, None, |a| self.ejections.is_ejected(a, now)) else {
            let response = text(StatusCode::SERVICE_UNAVAILABLE, "No backend available\n");
            self.metrics
                .request(&route.hostname, response.status(), started.elapsed());
            return response;
        };
        let target = |u: &Upstream| {
            let i = route.upstreams.iter().position(|x| std::ptr::eq(x, u));
            i.and_then(|i| published_route.authorities[i].clone())
        };
        let mut result = self
            .send(&head, body.boxed(), first, target(first), peer, &host)
            .await;
        if let Err(failure) = &result {
            if let Failure::Connect(_) = failure {
                self.eject(first);
            }
            let now = Instant::now();
            if may_retry(&head.method, bodiless, failure)
                && let Some(second) = pick(route, cursor, Some(&first.authority), |a| {
                    self.ejections.is_ejected(a, now)
                })
                && self.budget.try_retry(now)
            {
                self.metrics.retry(&route.hostname);
                let empty: ProxyBody = Empty::new().map_err(|e| match e {}).boxed();
                result = self.send(&head, empty, second, target(second), peer, &host).await;
                if let Err(Failure::Connect(_)) = &result {
                    self.eject(second);
                }
            }
        }
        let response = match result {
            Ok(r) => r,
            Err(Failure::Timeout) => text(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout\n"),
            Err(Failure::Connect(e) | Failure::NoResponse(e) | Failure::Other(e)) => {
                tracing::debug!(host = %route.hostname, error = %e, "upstream failed");
                text(StatusCode::BAD_GATEWAY, "Gateway Error\n")
            }
        };
        if response.status() == StatusCode::OK {
            published_route.ok.inc();
            self.metrics.observe_request(started.elapsed());
        } else {
            self.metrics
                .request(&route.hostname, response.status(), started.elapsed());
        }
        response
    }

    fn eject(&self, upstream: &Upstream) {
        if self.ejections.eject(&upstream.authority, Instant::now()) {
            tracing::info!(upstream = %upstream.authority, host_id = %upstream.host_id, "upstream ejected after a connection error");
            self.metrics.ejected();
        }
    }

    async fn send(
        &self,
        head: &Head,
        body: ProxyBody,
        upstream: &Upstream,
        authority: Option<Authority>,
        peer: SocketAddr,
        host: &str,
    ) -> Result<Response<ProxyBody>, Failure> {
        let authority = match authority {
            Some(a) => a,
            None => upstream
                .authority
                .parse()
                .map_err(|e: http::uri::InvalidUri| Failure::Other(e.to_string()))?,
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(authority);
        parts.path_and_query = Some(
            head.uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        let uri = Uri::from_parts(parts).map_err(|e| Failure::Other(e.to_string()))?;
        let mut req = Request::builder()
            .method(head.method.clone())
            .uri(uri)
            .version(if head.version == http::Version::HTTP_2 {
                http::Version::HTTP_11
            } else {
                head.version
            })
            .body(body)
            .map_err(|e| Failure::Other(e.to_string()))?;
        *req.headers_mut() = upstream_headers(&head.headers, peer, host, &upstream.workload_id);
        if !req.headers().contains_key(header::HOST)
            && let Ok(v) = HeaderValue::from_str(host)
        {
            req.headers_mut().insert(header::HOST, v);
        }
        let started = Instant::now();
        let client = &self.clients[crate::server::proxy_thread() % self.clients.len()];
        let result = tokio::time::timeout(self.settings.request_timeout, client.request(req)).await;
        self.metrics.upstream(started.elapsed());
        match result {
            Err(_) => Err(Failure::Timeout),
            Ok(Err(e)) if e.is_connect() => Err(Failure::Connect(e.to_string())),
            Ok(Err(e)) => Err(Failure::NoResponse(e.to_string())),
            Ok(Ok(response)) => Ok(response.map(|b| b.boxed())),
        }
    }

    async fn fallback(
        &self,
        req: Request<Incoming>,
        fallback: &Uri,
        peer: SocketAddr,
        host: &str,
    ) -> Response<ProxyBody> {
        let (head, body) = Head::split(req);
        let upstream = Upstream {
            authority: fallback.authority().map(|a| a.to_string()).unwrap_or_default(),
            host_id: String::new(),
            workload_id: String::new(),
        };
        match self.send(&head, body.boxed(), &upstream, None, peer, host).await {
            Ok(r) => r,
            Err(_) => text(StatusCode::BAD_GATEWAY, "Gateway Error\n"),
        }
    }
}

/// How sending to an upstream failed.
#[derive(Debug)]
enum Failure {
    /// No connection could be made: the request never reached the upstream.
    Connect(String),
    /// The connection closed or was reset before a response head (the request may have reached the
    /// upstream, but no answer came).
    NoResponse(String),
    /// No response head within the request timeout.
    Timeout,
    /// The request could not be built for the upstream.
    Other(String),
}

/// Whether a failed attempt may be sent once more to another host (nginx's `proxy_next_upstream error`
/// for idempotent requests, narrowed): only without a body; always when no connection could be made;
/// for a safe method (RFC 9110 §9.2.1) also when the connection closed or was reset before a response
/// head — a host that died under the request. Never after a timeout: the host may still be working.
fn may_retry(method: &http::Method, bodiless: bool, failure: &Failure) -> bool {
    use http::Method;
    bodiless
        && match failure {
            Failure::Connect(_) => true,
            Failure::NoResponse(_) => {
                [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE].contains(method)
            }
            Failure::Timeout | Failure::Other(_) => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bodiless_requests_that_got_no_answer_are_retried_and_unsafe_ones_only_if_never_sent() {
        use http::Method;
        let refused = Failure::Connect("refused".into());
        let reset = Failure::NoResponse("connection reset".into());
        for m in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(
                may_retry(&m, true, &refused) && may_retry(&m, true, &reset),
                "{m}"
            );
            assert!(!may_retry(&m, false, &reset), "{m} with a body");
        }
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(may_retry(&m, true, &refused), "{m} never reached a host");
            assert!(!may_retry(&m, true, &reset), "{m} may have reached a host");
            assert!(!may_retry(&m, false, &refused), "{m} with a body");
        }
        assert!(!may_retry(&Method::GET, true, &Failure::Timeout));
        assert!(!may_retry(&Method::GET, true, &Failure::Other("uri".into())));
    }

    #[test]
    fn upstreams_get_the_forwarding_headers_and_no_hop_by_hop_ones() {
        let mut client = HeaderMap::new();
        client.insert(header::HOST, HeaderValue::from_static("hello.test"));
        client.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        client.insert("x-secret-hop", HeaderValue::from_static("1"));
        client.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        client.insert("x-app", HeaderValue::from_static("kept"));
        let peer: SocketAddr = "192.0.2.7:5555".parse().unwrap();
        let h = upstream_headers(&client, peer, "hello.test", "w-1");
        assert_eq!(h[header::HOST], "hello.test", "Host is preserved");
        assert_eq!(h["x-app"], "kept");
        assert!(h.get(header::CONNECTION).is_none() && h.get("keep-alive").is_none());
        assert!(h.get("x-secret-hop").is_none(), "named by Connection");
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-host"], "hello.test");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-real-ip"], "192.0.2.7");
        assert_eq!(h["x-workload-id"], "w-1");
        // Behind another proxy: the chain grows, the real IP is the first client.
        client.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 10.0.0.1"),
        );
        let h = upstream_headers(&client, peer, "hello.test", "w-1");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-real-ip"], "203.0.113.9");
    }
}
