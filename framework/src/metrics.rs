//! Prometheus metrics with controller-runtime's names and labels, so existing dashboards and alerts work.
//!
//! prometheus-client 0.26 appends `_total` to counters itself (and panics in debug builds when a counter's
//! name already ends in it), so counters are registered without the suffix.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Result label values of `controller_runtime_reconcile_total`, all pre-initialised to zero.
pub const RESULTS: [&str; 4] = [RESULT_SUCCESS, RESULT_ERROR, RESULT_REQUEUE, RESULT_REQUEUE_AFTER];
/// The reconcile returned done.
pub const RESULT_SUCCESS: &str = "success";
/// The reconcile failed (error, panic or timeout).
pub const RESULT_ERROR: &str = "error";
/// The reconcile asked for a rate-limited requeue.
pub const RESULT_REQUEUE: &str = "requeue";
/// The reconcile asked to be requeued after a delay.
pub const RESULT_REQUEUE_AFTER: &str = "requeue_after";

/// Content type of OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// controller-runtime's `controller_runtime_reconcile_time_seconds` buckets (0.005 s … 60 s, 40 buckets).
const RECONCILE_TIME_BUCKETS: [f64; 40] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25,
    1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0,
    50.0, 60.0,
];

fn reconcile_time_histogram() -> Histogram {
    Histogram::new(RECONCILE_TIME_BUCKETS)
}

/// client-go's work queue buckets: 10 ns × 10^i, 12 buckets.
fn queue_histogram() -> Histogram {
    Histogram::new(exponential_buckets(10e-9, 10.0, 12))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    controller: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabels {
    controller: String,
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    name: String,
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabels {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InformerEventLabels {
    kind: String,
    event: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Reads the in-flight state of a work queue at scrape time: (unfinished work seconds, longest running
/// processor seconds).
pub(crate) type QueueProbe = Arc<dyn Fn() -> (f64, f64) + Send + Sync>;

/// All metric families of the framework, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<RwLock<Registry>>,
    reconcile_total: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ControllerLabels, Counter>,
    terminal_errors: Family<ControllerLabels, Counter>,
    reconcile_panics: Family<ControllerLabels, Counter>,
    reconcile_timeouts: Family<ControllerLabels, Counter>,
    errors_by_category: Family<CategoryLabels, Counter>,
    reconcile_time: HistogramFamily<ControllerLabels>,
    max_concurrent: Family<ControllerLabels, Gauge>,
    active_workers: Family<ControllerLabels, Gauge>,
    queue_depth: Family<QueueLabels, Gauge>,
    queue_adds: Family<QueueLabels, Counter>,
    queue_retries: Family<QueueLabels, Counter>,
    queue_duration: HistogramFamily<QueueLabels>,
    work_duration: HistogramFamily<QueueLabels>,
    queue_probes: Arc<Mutex<Vec<(QueueLabels, QueueProbe)>>>,
    leader_status: Family<NameLabels, Gauge>,
    leader_slowpath: Family<NameLabels, Counter>,
    informer_events: Family<InformerEventLabels, Counter>,
    informer_watch_errors: Family<KindLabels, Counter>,
    informer_objects: Family<KindLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every framework family registered (and process metrics on Linux).
    pub fn new() -> Self {
        let mut r = Registry::default();
        let m = Self {
            registry: Arc::new(RwLock::new(Registry::default())),
            reconcile_total: Family::default(),
            reconcile_errors: Family::default(),
            terminal_errors: Family::default(),
            reconcile_panics: Family::default(),
            reconcile_timeouts: Family::default(),
            errors_by_category: Family::default(),
            reconcile_time: Family::new_with_constructor(reconcile_time_histogram),
            max_concurrent: Family::default(),
            active_workers: Family::default(),
            queue_depth: Family::default(),
            queue_adds: Family::default(),
            queue_retries: Family::default(),
            queue_duration: Family::new_with_constructor(queue_histogram),
            work_duration: Family::new_with_constructor(queue_histogram),
            queue_probes: Arc::new(Mutex::new(Vec::new())),
            leader_status: Family::default(),
            leader_slowpath: Family::default(),
            informer_events: Family::default(),
            informer_watch_errors: Family::default(),
            informer_objects: Family::default(),
        };
        r.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            m.reconcile_total.clone(),
        );
        r.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            m.reconcile_errors.clone(),
        );
        r.register(
            "controller_runtime_terminal_reconcile_errors",
            "Total number of terminal reconciliation errors per controller",
            m.terminal_errors.clone(),
        );
        r.register(
            "controller_runtime_reconcile_panics",
            "Total number of reconciliation panics per controller",
            m.reconcile_panics.clone(),
        );
        r.register(
            "controller_runtime_reconcile_timeouts",
            "Total number of reconciliation timeouts per controller",
            m.reconcile_timeouts.clone(),
        );
        r.register_with_unit(
            "controller_runtime_reconcile_time",
            "Length of time per reconciliation per controller",
            Unit::Seconds,
            m.reconcile_time.clone(),
        );
        r.register(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            m.max_concurrent.clone(),
        );
        r.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            m.active_workers.clone(),
        );
        r.register(
            "weft_controller_reconcile_errors",
            "Reconciliation errors per controller and error category (a bounded set, never the message)",
            m.errors_by_category.clone(),
        );
        r.register(
            "workqueue_depth",
            "Current depth of workqueue",
            m.queue_depth.clone(),
        );
        r.register(
            "workqueue_adds",
            "Total number of adds handled by workqueue",
            m.queue_adds.clone(),
        );
        r.register(
            "workqueue_retries",
            "Total number of retries handled by workqueue",
            m.queue_retries.clone(),
        );
        r.register_with_unit(
            "workqueue_queue_duration",
            "How long in seconds an item stays in workqueue before being requested",
            Unit::Seconds,
            m.queue_duration.clone(),
        );
        r.register_with_unit(
            "workqueue_work_duration",
            "How long in seconds processing an item from workqueue takes.",
            Unit::Seconds,
            m.work_duration.clone(),
        );
        r.register_collector(Box::new(QueueInFlightCollector {
            probes: m.queue_probes.clone(),
        }));
        r.register(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates \
             master. 'name' is the string used to identify the lease.",
            m.leader_status.clone(),
        );
        r.register(
            "leader_election_slowpath",
            "Total number of slow path exercised in renewing leader leases. 'name' is the string used to \
             identify the lease.",
            m.leader_slowpath.clone(),
        );
        r.register(
            "weft_informer_events",
            "Watch events applied to a shared informer cache, by kind and event",
            m.informer_events.clone(),
        );
        r.register(
            "weft_informer_watch_errors",
            "Errors of a shared informer's watch (each is retried with back-off)",
            m.informer_watch_errors.clone(),
        );
        r.register(
            "weft_informer_objects",
            "Objects held in a shared informer cache",
            m.informer_objects.clone(),
        );
        #[cfg(target_os = "linux")]
        r.register_collector(Box::new(ProcessCollector));
        *m.registry.write().expect("metrics registry lock") = r;
        m
    }

    /// The registry, for registering a component's own metrics before the manager runs.
    pub fn registry(&self) -> Arc<RwLock<Registry>> {
        self.registry.clone()
    }

    /// Encodes every metric as OpenMetrics text (ends with `# EOF`).
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.read().expect("metrics registry lock");
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String");
        out
    }

    /// Encodes every metric in the classic Prometheus text format (0.0.4).
    pub fn encode_prometheus(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.read().expect("metrics registry lock");
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            .expect("writing to a String");
        out
    }

    /// Encodes in the format the request's `Accept` header asks for; returns (content type, body).
    pub fn encode_for_accept(&self, accept: Option<&str>) -> (&'static str, String) {
        if wants_openmetrics(accept) {
            (OPENMETRICS_CONTENT_TYPE, self.encode_openmetrics())
        } else {
            (PROMETHEUS_CONTENT_TYPE, self.encode_prometheus())
        }
    }

    /// Handles of one controller's series, with every `result` label pre-initialised.
    pub fn controller(&self, controller: &str, max_concurrent: usize) -> ControllerMetrics {
        let labels = ControllerLabels {
            controller: controller.to_string(),
        };
        let results = RESULTS.map(|result| {
            self.reconcile_total.get_or_create_owned(&ResultLabels {
                controller: controller.to_string(),
                result,
            })
        });
        let m = ControllerMetrics {
            controller: controller.to_string(),
            results,
            errors: self.reconcile_errors.get_or_create_owned(&labels),
            terminal_errors: self.terminal_errors.get_or_create_owned(&labels),
            panics: self.reconcile_panics.get_or_create_owned(&labels),
            timeouts: self.reconcile_timeouts.get_or_create_owned(&labels),
            errors_by_category: self.errors_by_category.clone(),
            reconcile_time: self.reconcile_time.get_or_create_owned(&labels),
            active_workers: self.active_workers.get_or_create_owned(&labels),
        };
        self.max_concurrent
            .get_or_create_owned(&labels)
            .set(max_concurrent as i64);
        m
    }

    /// Handles of one work queue's series (`name` and `controller` both carry the controller's name).
    pub fn queue(&self, name: &str) -> QueueMetrics {
        let labels = QueueLabels {
            name: name.to_string(),
            controller: name.to_string(),
        };
        QueueMetrics {
            labels: labels.clone(),
            depth: self.queue_depth.get_or_create_owned(&labels),
            adds: self.queue_adds.get_or_create_owned(&labels),
            retries: self.queue_retries.get_or_create_owned(&labels),
            queue_duration: self.queue_duration.get_or_create_owned(&labels),
            work_duration: self.work_duration.get_or_create_owned(&labels),
            probes: self.queue_probes.clone(),
        }
    }

    /// The `leader_election_master_status` gauge for a lease.
    pub fn leader_status(&self, lease: &str) -> Gauge {
        self.leader_slowpath.get_or_create_owned(&NameLabels {
            name: lease.to_string(),
        });
        self.leader_status.get_or_create_owned(&NameLabels {
            name: lease.to_string(),
        })
    }

    /// The `leader_election_slowpath_total` counter for a lease (renewals that needed a full read).
    pub fn leader_slowpath(&self, lease: &str) -> Counter {
        self.leader_slowpath.get_or_create_owned(&NameLabels {
            name: lease.to_string(),
        })
    }

    /// Handles of one shared informer's series.
    pub fn informer(&self, kind: &str) -> InformerMetrics {
        let labels = KindLabels {
            kind: kind.to_string(),
        };
        let event = |event| {
            self.informer_events.get_or_create_owned(&InformerEventLabels {
                kind: kind.to_string(),
                event,
            })
        };
        InformerMetrics {
            added: event("added"),
            updated: event("updated"),
            deleted: event("deleted"),
            watch_errors: self.informer_watch_errors.get_or_create_owned(&labels),
            objects: self.informer_objects.get_or_create_owned(&labels),
        }
    }
}

fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            part.trim()
                .to_ascii_lowercase()
                .starts_with("application/openmetrics-text")
        })
    })
}

/// One controller's reconcile series.
#[derive(Clone, Debug)]
pub struct ControllerMetrics {
    controller: String,
    results: [Counter; 4],
    errors: Counter,
    terminal_errors: Counter,
    panics: Counter,
    timeouts: Counter,
    errors_by_category: Family<CategoryLabels, Counter>,
    reconcile_time: Histogram,
    active_workers: Gauge,
}

impl ControllerMetrics {
    pub(crate) fn result(&self, result: &'static str) {
        let i = RESULTS
            .iter()
            .position(|r| *r == result)
            .expect("a known result label");
        self.results[i].inc();
    }

    pub(crate) fn error(&self, category: &'static str, terminal: bool) {
        self.errors.inc();
        if terminal {
            self.terminal_errors.inc();
        }
        self.errors_by_category
            .get_or_create(&CategoryLabels {
                controller: self.controller.clone(),
                category,
            })
            .inc();
        self.result(RESULT_ERROR);
    }

    pub(crate) fn panic(&self) {
        self.panics.inc();
    }

    pub(crate) fn timeout(&self) {
        self.timeouts.inc();
    }

    pub(crate) fn reconcile_time(&self, d: Duration) {
        self.reconcile_time.observe(d.as_secs_f64());
    }

    pub(crate) fn worker_started(&self) {
        self.active_workers.inc();
    }

    pub(crate) fn worker_finished(&self) {
        self.active_workers.dec();
    }
}

/// One work queue's series.
#[derive(Clone)]
pub struct QueueMetrics {
    labels: QueueLabels,
    pub(crate) depth: Gauge,
    pub(crate) adds: Counter,
    pub(crate) retries: Counter,
    pub(crate) queue_duration: Histogram,
    pub(crate) work_duration: Histogram,
    probes: Arc<Mutex<Vec<(QueueLabels, QueueProbe)>>>,
}

impl std::fmt::Debug for QueueMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueMetrics")
            .field("name", &self.labels.name)
            .finish_non_exhaustive()
    }
}

impl QueueMetrics {
    /// Metrics that go nowhere (for queues used outside a manager, e.g. in tests).
    pub fn detached(name: &str) -> Self {
        Metrics::new().queue(name)
    }

    pub(crate) fn set_probe(&self, probe: QueueProbe) {
        let mut probes = self.probes.lock().expect("queue probe lock");
        probes.retain(|(l, _)| *l != self.labels);
        probes.push((self.labels.clone(), probe));
    }
}

/// One shared informer's series.
#[derive(Clone, Debug)]
pub struct InformerMetrics {
    pub(crate) added: Counter,
    pub(crate) updated: Counter,
    pub(crate) deleted: Counter,
    pub(crate) watch_errors: Counter,
    pub(crate) objects: Gauge,
}

/// `workqueue_unfinished_work_seconds` and `workqueue_longest_running_processor_seconds`, computed from
/// the queues' in-flight items at scrape time.
struct QueueInFlightCollector {
    probes: Arc<Mutex<Vec<(QueueLabels, QueueProbe)>>>,
}

impl std::fmt::Debug for QueueInFlightCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueueInFlightCollector")
    }
}

impl Collector for QueueInFlightCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let values: Vec<(QueueLabels, (f64, f64))> = {
            let probes = self.probes.lock().expect("queue probe lock");
            probes.iter().map(|(l, p)| (l.clone(), p())).collect()
        };
        let unit = Unit::Seconds;
        {
            let mut family = encoder.encode_descriptor(
                "workqueue_unfinished_work",
                "How many seconds of work has been done that is in progress and hasn't been observed by \
                 work_duration. Large values indicate stuck threads.",
                Some(&unit),
                MetricType::Gauge,
            )?;
            for (labels, (unfinished, _)) in &values {
                ConstGauge::new(*unfinished).encode(family.encode_family(labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "workqueue_longest_running_processor",
            "How many seconds has the longest running processor for workqueue been running.",
            Some(&unit),
            MetricType::Gauge,
        )?;
        for (labels, (_, longest)) in &values {
            ConstGauge::new(*longest).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

/// The standard `process_*` metrics, read from `/proc/self` at scrape time.
#[cfg(target_os = "linux")]
#[derive(Debug)]
struct ProcessCollector;

#[cfg(target_os = "linux")]
impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stat) = ProcStat::read() else {
            return Ok(());
        };
        let bytes = Unit::Bytes;
        let seconds = Unit::Seconds;
        let gauge = |encoder: &mut DescriptorEncoder,
                     name: &str,
                     help: &str,
                     unit: Option<&Unit>,
                     v: f64|
         -> Result<(), std::fmt::Error> {
            ConstGauge::new(v).encode(encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?)
        };
        gauge(
            &mut encoder,
            "process_resident_memory",
            "Resident memory size in bytes.",
            Some(&bytes),
            stat.rss,
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory",
            "Virtual memory size in bytes.",
            Some(&bytes),
            stat.vsize,
        )?;
        gauge(
            &mut encoder,
            "process_start_time",
            "Start time of the process since unix epoch in seconds.",
            Some(&seconds),
            stat.start_time,
        )?;
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                fds.count() as f64,
            )?;
        }
        ConstCounter::new(stat.cpu_seconds).encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            MetricType::Counter,
        )?)?;
        Ok(())
    }
}

#[cfg(target_os = "linux")]
struct ProcStat {
    rss: f64,
    vsize: f64,
    start_time: f64,
    cpu_seconds: f64,
}

#[cfg(target_os = "linux")]
impl ProcStat {
    // USER_HZ is 100 and pages are 4 KiB on every Linux platform we run on.
    const TICKS_PER_SECOND: f64 = 100.0;
    const PAGE_SIZE: f64 = 4096.0;

    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised command name, which may itself contain spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let utime = field(14)?;
        let stime = field(15)?;
        let starttime_ticks = field(22)?;
        let vsize = field(23)?;
        let rss_pages = field(24)?;
        let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("btime ")
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
        })?;
        Some(Self {
            rss: rss_pages * Self::PAGE_SIZE,
            vsize,
            start_time: boot_time + starttime_ticks / Self::TICKS_PER_SECOND,
            cpu_seconds: (utime + stime) / Self::TICKS_PER_SECOND,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_result_is_pre_initialised_and_names_match_controller_runtime() {
        let m = Metrics::new();
        let c = m.controller("host-pod", 3);
        m.queue("host-pod");
        m.leader_status("weft-operator");
        c.result(RESULT_SUCCESS);
        c.error("kube_api", false);
        let text = m.encode_prometheus();
        for result in RESULTS {
            assert!(
                text.contains(&format!(
                    "controller_runtime_reconcile_total{{controller=\"host-pod\",result=\"{result}\"}}"
                )),
                "missing result {result}:\n{text}"
            );
        }
        for name in [
            "controller_runtime_reconcile_errors_total{controller=\"host-pod\"} 1",
            "controller_runtime_reconcile_total{controller=\"host-pod\",result=\"error\"} 1",
            "controller_runtime_reconcile_total{controller=\"host-pod\",result=\"success\"} 1",
            "controller_runtime_reconcile_total{controller=\"host-pod\",result=\"requeue\"} 0",
            "controller_runtime_reconcile_panics_total{controller=\"host-pod\"} 0",
            "controller_runtime_max_concurrent_reconciles{controller=\"host-pod\"} 3",
            "controller_runtime_active_workers{controller=\"host-pod\"} 0",
            "controller_runtime_reconcile_time_seconds_bucket{controller=\"host-pod\",le=\"60\"} 0",
            "workqueue_depth{name=\"host-pod\",controller=\"host-pod\"} 0",
            "workqueue_adds_total{name=\"host-pod\",controller=\"host-pod\"} 0",
            "workqueue_retries_total{name=\"host-pod\",controller=\"host-pod\"} 0",
            "workqueue_queue_duration_seconds_count{name=\"host-pod\",controller=\"host-pod\"} 0",
            "workqueue_work_duration_seconds_count{name=\"host-pod\",controller=\"host-pod\"} 0",
            "leader_election_master_status{name=\"weft-operator\"} 0",
            "weft_controller_reconcile_errors_total{controller=\"host-pod\",category=\"kube_api\"} 1",
            "# TYPE controller_runtime_reconcile_total counter",
        ] {
            assert!(text.contains(name), "missing {name}:\n{text}");
        }
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn accept_header_selects_the_format() {
        let m = Metrics::new();
        let (ct, body) = m.encode_for_accept(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        ));
        assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
        assert!(body.ends_with("# EOF\n"), "{body}");
        let (ct, body) = m.encode_for_accept(Some("text/plain"));
        assert_eq!(ct, PROMETHEUS_CONTENT_TYPE);
        assert!(!body.contains("# EOF"));
        assert_eq!(m.encode_for_accept(None).0, PROMETHEUS_CONTENT_TYPE);
    }

    #[test]
    fn in_flight_queue_gauges_come_from_the_probe() {
        let m = Metrics::new();
        let q = m.queue("c");
        q.set_probe(Arc::new(|| (1.5, 0.75)));
        let text = m.encode_prometheus();
        assert!(
            text.contains("workqueue_unfinished_work_seconds{name=\"c\",controller=\"c\"} 1.5"),
            "{text}"
        );
        assert!(
            text.contains("workqueue_longest_running_processor_seconds{name=\"c\",controller=\"c\"} 0.75")
        );
    }
}
