//! The gateway's metrics, registered in the framework's registry (served on `/metrics`).

use std::time::Duration;

use http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The routed hostname; empty for requests that matched no route (so unknown Host headers cannot
    /// grow the series without bound).
    route: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The gateway's metric families.
#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    requests: Family<RequestLabels, Counter>,
    request_seconds: Histogram,
    upstream_seconds: Histogram,
    retries: Family<RouteLabels, Counter>,
    ejections: Counter,
    routes: Gauge,
    upstreams: Gauge,
    rebuilds: Counter,
    propagation: Histogram,
}

impl GatewayMetrics {
    /// Registers the families in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            request_seconds: Histogram::new(LATENCY_BUCKETS),
            upstream_seconds: Histogram::new(LATENCY_BUCKETS),
            retries: Family::default(),
            ejections: Counter::default(),
            routes: Gauge::default(),
            upstreams: Gauge::default(),
            rebuilds: Counter::default(),
            propagation: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0]),
        };
        registry.register(
            "weft_gateway_requests",
            "Requests answered, by route (hostname; empty when none matched) and status code",
            m.requests.clone(),
        );
        registry.register(
            "weft_gateway_request_seconds",
            "Time from a request's arrival to its response head",
            m.request_seconds.clone(),
        );
        registry.register(
            "weft_gateway_upstream_seconds",
            "Time an upstream took to send a response head (or to fail)",
            m.upstream_seconds.clone(),
        );
        registry.register(
            "weft_gateway_retries",
            "Requests sent again to another host after a connection error, by route",
            m.retries.clone(),
        );
        registry.register(
            "weft_gateway_ejections",
            "Upstreams ejected after a connection error",
            m.ejections.clone(),
        );
        registry.register(
            "weft_gateway_routes",
            "Hostnames in the route table",
            m.routes.clone(),
        );
        registry.register(
            "weft_gateway_upstreams",
            "Hostname and host pairs in the route table",
            m.upstreams.clone(),
        );
        registry.register(
            "weft_gateway_route_table_rebuilds",
            "Times the route table was rebuilt from the caches",
            m.rebuilds.clone(),
        );
        registry.register(
            "weft_gateway_route_propagation_seconds",
            "From a Workload's Ready transition (whole seconds, as the apiserver stores it) to its route being served",
            m.propagation.clone(),
        );
        m
    }

    pub(crate) fn request(&self, route: &str, code: StatusCode, took: Duration) {
        self.requests_counter(route, code).inc();
        self.observe_request(took);
    }

    /// The series of `route` and `code`, to count into without a label lookup per request.
    pub(crate) fn requests_counter(&self, route: &str, code: StatusCode) -> Counter {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                code: code.as_u16(),
            })
            .clone()
    }

    pub(crate) fn observe_request(&self, took: Duration) {
        self.request_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn upstream(&self, took: Duration) {
        self.upstream_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn retry(&self, route: &str) {
        self.retries
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .inc();
    }

    pub(crate) fn ejected(&self) {
        self.ejections.inc();
    }

    pub(crate) fn table(&self, routes: usize, upstreams: usize) {
        self.routes.set(routes as i64);
        self.upstreams.set(upstreams as i64);
        self.rebuilds.inc();
    }

    pub(crate) fn propagated(&self, delay: Duration) {
        self.propagation.observe(delay.as_secs_f64());
    }
}
