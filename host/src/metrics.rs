//! The host's Prometheus metrics and the `/metrics` encoding (OpenMetrics or Prometheus text, by the
//! scraper's `Accept` header).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use weft_runtime::metrics::ShardedHistogram;

use crate::workloads::Counts;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    /// `<namespace>/<name>` of the Workload, empty for requests that matched none.
    workload: Arc<str>,
    code: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CommandLabels {
    command: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct InfoLabels {
    version: String,
    host_id: String,
    backend: String,
}

/// Metrics the host records itself (the runtime registers its own `weft_runtime_*` set).
#[derive(Debug, Clone)]
pub struct HostMetrics {
    http_requests: Family<RequestLabels, Counter>,
    http_request_duration: ShardedHistogram,
    workloads: Family<StateLabels, Gauge>,
    nats_requests: Family<CommandLabels, Counter>,
    nats_malformed: Family<CommandLabels, Counter>,
    nats_unknown: Counter,
    heartbeats_published: Counter,
    heartbeat_errors: Counter,
    draining: Gauge,
    /// How many running workloads use each `workload` label (a restarted replica may briefly overlap
    /// the one it replaces); its series go when the last one stops.
    labels_in_use: Arc<Mutex<HashMap<Arc<str>, usize>>>,
}

/// The ingress request metrics of one workload: its `200` series is resolved up front (the common
/// case costs one atomic increment); other codes are looked up in the family.
#[derive(Debug, Clone)]
pub struct WorkloadRequestMetrics {
    workload: Arc<str>,
    ok: Counter,
    by_code: Family<RequestLabels, Counter>,
    duration: ShardedHistogram,
}

impl WorkloadRequestMetrics {
    /// Counts one request answered with `code` after `seconds` (request head to response head).
    pub fn observe(&self, code: u16, seconds: f64) {
        if code == 200 {
            self.ok.inc();
        } else {
            self.by_code
                .get_or_create(&RequestLabels {
                    workload: self.workload.clone(),
                    code,
                })
                .inc();
        }
        self.duration.observe(seconds);
    }
}

/// Every status code a request series can carry.
const HTTP_STATUS_CODES: std::ops::RangeInclusive<u16> = 100..=999;

/// The label of requests that were not routed to any workload.
pub const NO_WORKLOAD: &str = "";

fn duration_buckets() -> Vec<f64> {
    [
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0, 30.0,
    ]
    .to_vec()
}

impl HostMetrics {
    /// Creates the metrics and registers them (names prefixed `weft_host_`).
    pub fn register(registry: &mut Registry, version: &str, host_id: &str, backend: &str) -> Self {
        let m = Self {
            http_requests: Family::default(),
            http_request_duration: ShardedHistogram::new(duration_buckets()),
            workloads: Family::default(),
            nats_requests: Family::default(),
            nats_malformed: Family::default(),
            nats_unknown: Counter::default(),
            heartbeats_published: Counter::default(),
            heartbeat_errors: Counter::default(),
            draining: Gauge::default(),
            labels_in_use: Arc::default(),
        };
        let info: Family<InfoLabels, Gauge> = Family::default();
        info.get_or_create(&InfoLabels {
            version: version.to_string(),
            host_id: host_id.to_string(),
            backend: backend.to_string(),
        })
        .set(1);
        registry.register("weft_host_info", "Host version, ID and runtime backend", info);
        registry.register(
            "weft_host_http_requests",
            "Ingress HTTP requests by workload (namespace/name) and status code",
            m.http_requests.clone(),
        );
        registry.register_with_unit(
            "weft_host_http_request_duration",
            "Ingress time from request head to response head",
            Unit::Seconds,
            m.http_request_duration.clone(),
        );
        registry.register(
            "weft_host_workloads",
            "Workloads on this host by state",
            m.workloads.clone(),
        );
        registry.register(
            "weft_host_nats_requests",
            "Control requests received over NATS by command",
            m.nats_requests.clone(),
        );
        registry.register(
            "weft_host_nats_malformed_requests",
            "Control requests whose payload could not be decoded, by command",
            m.nats_malformed.clone(),
        );
        registry.register(
            "weft_host_nats_unknown_commands",
            "Messages on the host's subjects naming no known command (not answered)",
            m.nats_unknown.clone(),
        );
        registry.register(
            "weft_host_heartbeats_published",
            "Heartbeats published to runtime.operator.heartbeat.<id>",
            m.heartbeats_published.clone(),
        );
        registry.register(
            "weft_host_heartbeat_errors",
            "Heartbeats that could not be published",
            m.heartbeat_errors.clone(),
        );
        registry.register(
            "weft_host_draining",
            "1 while the host drains for shutdown",
            m.draining.clone(),
        );
        m
    }

    /// The request metrics of the workload labelled `workload` (`<namespace>/<name>`, or
    /// [`NO_WORKLOAD`]), resolved once so that counting a request needs no label lookup.
    pub fn workload_requests(&self, workload: Arc<str>) -> WorkloadRequestMetrics {
        *self
            .labels_in_use
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(workload.clone())
            .or_default() += 1;
        let ok = self
            .http_requests
            .get_or_create(&RequestLabels {
                workload: workload.clone(),
                code: 200,
            })
            .clone();
        WorkloadRequestMetrics {
            workload,
            ok,
            by_code: self.http_requests.clone(),
            duration: self.http_request_duration.clone(),
        }
    }

    /// A workload stopped: once no running workload has its label, its request series leave
    /// `/metrics` (a label per stopped workload would otherwise stay for the host's life).
    pub fn forget_workload(&self, requests: &WorkloadRequestMetrics) {
        let mut in_use = self.labels_in_use.lock().unwrap_or_else(|p| p.into_inner());
        let Some(n) = in_use.get_mut(&requests.workload) else {
            return;
        };
        *n -= 1;
        if *n > 0 {
            return;
        }
        in_use.remove(&requests.workload);
        for code in HTTP_STATUS_CODES {
            self.http_requests.remove(&RequestLabels {
                workload: requests.workload.clone(),
                code,
            });
        }
    }

    /// Ingress requests counted for `workload` and `code` so far.
    pub fn request_count(&self, workload: &str, code: u16) -> u64 {
        self.http_requests
            .get_or_create(&RequestLabels {
                workload: workload.into(),
                code,
            })
            .get()
    }

    /// Publishes the workload counts.
    pub fn set_workloads(&self, counts: Counts) {
        for (state, n) in [
            ("starting", counts.starting),
            ("running", counts.running),
            ("stopping", counts.stopping),
        ] {
            self.workloads.get_or_create(&StateLabels { state }).set(n as i64);
        }
    }

    /// Counts a control request.
    pub fn nats_request(&self, command: &'static str) {
        self.nats_requests.get_or_create(&CommandLabels { command }).inc();
    }

    /// Counts an undecodable control request.
    pub fn nats_malformed(&self, command: &'static str) {
        self.nats_malformed
            .get_or_create(&CommandLabels { command })
            .inc();
    }

    /// Undecodable control requests for `command` so far.
    pub fn nats_malformed_count(&self, command: &'static str) -> u64 {
        self.nats_malformed
            .get_or_create(&CommandLabels { command })
            .get()
    }

    /// Counts a message naming an unknown command.
    pub fn nats_unknown(&self) {
        self.nats_unknown.inc();
    }

    /// Unknown-command messages so far.
    pub fn nats_unknown_count(&self) -> u64 {
        self.nats_unknown.get()
    }

    /// Counts a published heartbeat.
    pub fn heartbeat_published(&self) {
        self.heartbeats_published.inc();
    }

    /// Counts a heartbeat that could not be published.
    pub fn heartbeat_error(&self) {
        self.heartbeat_errors.inc();
    }

    /// Marks the host as draining.
    pub fn set_draining(&self) {
        self.draining.set(1);
    }
}

/// The `Content-Type` of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The `Content-Type` of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the scraper asked for OpenMetrics (Prometheus does when it can parse it).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            let mut params = part.split(';').map(str::trim);
            let is_om = params
                .next()
                .is_some_and(|t| t.eq_ignore_ascii_case("application/openmetrics-text"));
            // "q=0" means "not acceptable".
            is_om && !params.any(|p| p.replace(' ', "") == "q=0")
        })
    })
}

/// Encodes `registry` for a scraper sending `accept`: `(content type, body)`.
pub fn encode(registry: &Registry, accept: Option<&str>) -> (&'static str, String) {
    let mut om = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut om, registry) {
        tracing::error!(error = %e, "encoding metrics");
    }
    if wants_openmetrics(accept) {
        (OPENMETRICS_CONTENT_TYPE, om)
    } else {
        (PROMETHEUS_CONTENT_TYPE, openmetrics_to_prometheus(&om))
    }
}

/// Rewrites OpenMetrics text as Prometheus text format 0.0.4: counter metadata names the `_total`
/// series, `# UNIT` and `# EOF` lines are dropped.
pub fn openmetrics_to_prometheus(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    for line in om.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                if !tail.is_empty() {
                    out.push(' ');
                    out.push_str(tail);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_workloads_series_go_once_no_replica_of_it_runs() {
        let mut registry = Registry::default();
        let m = HostMetrics::register(&mut registry, "0.1.0", "h1", "wasmtime");
        let old = m.workload_requests(Arc::from("ns/hello"));
        old.observe(200, 0.001);
        old.observe(502, 0.001);
        // A restarted replica with the same label starts before the old one is gone.
        let new = m.workload_requests(Arc::from("ns/hello"));
        let other = m.workload_requests(Arc::from("ns/other"));
        other.observe(200, 0.001);
        let series = |registry: &Registry| encode(registry, Some("text/plain")).1;

        m.forget_workload(&old);
        assert!(
            series(&registry).contains(r#"weft_host_http_requests_total{workload="ns/hello",code="200"} 1"#),
            "the new replica still counts: {}",
            series(&registry)
        );
        new.observe(200, 0.001);
        assert_eq!(m.request_count("ns/hello", 200), 2);

        m.forget_workload(&new);
        let text = series(&registry);
        assert!(!text.contains(r#"workload="ns/hello""#), "{text}");
        assert!(
            text.contains(r#"weft_host_http_requests_total{workload="ns/other",code="200"} 1"#),
            "{text}"
        );
        // Forgetting twice changes nothing.
        m.forget_workload(&new);
        assert!(series(&registry).contains(r#"workload="ns/other""#));
    }

    #[test]
    fn accept_header_selects_the_format() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(Some("application/openmetrics-text; q=0")));
        assert!(!wants_openmetrics(None));
    }

    #[test]
    fn both_formats_carry_the_host_metrics() {
        let mut registry = Registry::default();
        let m = HostMetrics::register(&mut registry, "0.1.0", "h1", "wasmtime");
        let hello = m.workload_requests(Arc::from("ns/hello"));
        hello.observe(200, 0.002);
        hello.observe(503, 0.001);
        m.workload_requests(Arc::from(NO_WORKLOAD)).observe(404, 0.0001);
        m.nats_malformed("workload.start");
        m.set_workloads(Counts {
            running: 2,
            ..Counts::default()
        });
        assert_eq!(m.request_count("ns/hello", 200), 1);

        let (ct, om) = encode(&registry, Some("application/openmetrics-text"));
        assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(om.contains("# TYPE weft_host_http_requests counter"), "{om}");
        assert!(
            om.contains(r#"weft_host_http_requests_total{workload="ns/hello",code="200"} 1"#),
            "{om}"
        );
        assert!(
            om.contains(r#"weft_host_http_requests_total{workload="",code="404"} 1"#),
            "{om}"
        );
        assert!(
            om.contains(r#"weft_host_nats_malformed_requests_total{command="workload.start"} 1"#),
            "{om}"
        );
        assert!(om.contains(r#"weft_host_workloads{state="running"} 2"#), "{om}");
        assert!(
            om.contains(r#"weft_host_http_requests_total{workload="ns/hello",code="503"} 1"#),
            "{om}"
        );
        assert!(
            om.contains("weft_host_http_request_duration_seconds_count 3"),
            "{om}"
        );

        let (ct, prom) = encode(&registry, Some("text/plain"));
        assert_eq!(ct, PROMETHEUS_CONTENT_TYPE);
        assert!(!prom.contains("# EOF") && !prom.contains("# UNIT"), "{prom}");
        assert!(
            prom.contains("# TYPE weft_host_http_requests_total counter"),
            "{prom}"
        );
        assert!(
            prom.contains("# HELP weft_host_http_requests_total Ingress"),
            "{prom}"
        );
        assert!(
            prom.contains("# TYPE weft_host_http_request_duration_seconds histogram"),
            "{prom}"
        );
        assert!(
            prom.contains(r#"weft_host_http_requests_total{workload="ns/hello",code="200"} 1"#),
            "{prom}"
        );
    }
}
