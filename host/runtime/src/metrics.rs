//! Prometheus metrics of the runtime, registered into the host's registry.
//!
//! ```
//! let mut registry = prometheus_client::registry::Registry::default();
//! let metrics = weft_runtime::RuntimeMetrics::register(&mut registry);
//! # drop(metrics);
//! ```
//!
//! Names carry their full `weft_runtime_` prefix, so register into a registry without a prefix of its
//! own (or accept the prefix being doubled). All handles are cheap clones of shared counters.

mod sharded_histogram;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

pub use self::sharded_histogram::ShardedHistogram;

/// How a request served by a backend ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestOutcome {
    /// The component produced a response.
    Ok,
    /// The component trapped or failed without producing a response.
    Trap,
    /// The component ran past its CPU deadline and was cut off.
    Deadline,
    /// The component tried to grow memory past its limit and was stopped.
    MemoryLimit,
    /// Rejected with `503`: the workload (or the whole backend) was at its concurrency cap.
    Overloaded,
    /// Rejected with `503`: the workload is stopping.
    Stopping,
    /// Rejected with `413`: the request body exceeded the limit.
    BodyTooLarge,
    /// Instantiation failed (e.g. the instance pool was exhausted).
    InstantiateError,
}

/// Where a start found a compiled component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompileCacheResult {
    /// Already loaded in this process.
    Memory,
    /// Loaded from a precompiled artifact on disk.
    Disk,
    /// Compiled now (and written to disk).
    Compiled,
}

/// Where a start found a component's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FetchResult {
    /// Served from the local cache without contacting the source.
    Cached,
    /// Fetched from the source (registry, file, or HTTP server).
    Fetched,
    /// The fetch failed.
    Error,
}

/// Label values in snake_case.
macro_rules! label_values {
    ($ty:ty { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $ty {
            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),* }
            }
        }
        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    };
}

impl RequestOutcome {
    /// Every outcome, in declaration order.
    pub const ALL: [RequestOutcome; 8] = [
        RequestOutcome::Ok,
        RequestOutcome::Trap,
        RequestOutcome::Deadline,
        RequestOutcome::MemoryLimit,
        RequestOutcome::Overloaded,
        RequestOutcome::Stopping,
        RequestOutcome::BodyTooLarge,
        RequestOutcome::InstantiateError,
    ];

    /// The position of this outcome in [`RequestOutcome::ALL`].
    fn index(self) -> usize {
        self as usize
    }
}

label_values!(RequestOutcome {
    Ok => "ok",
    Trap => "trap",
    Deadline => "deadline",
    MemoryLimit => "memory_limit",
    Overloaded => "overloaded",
    Stopping => "stopping",
    BodyTooLarge => "body_too_large",
    InstantiateError => "instantiate_error",
});
label_values!(CompileCacheResult { Memory => "memory", Disk => "disk", Compiled => "compiled" });
label_values!(FetchResult { Cached => "cached", Fetched => "fetched", Error => "error" });

/// What happened to an outgoing HTTP request of a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutgoingResult {
    /// The allowlist allowed it and it was sent.
    Allowed,
    /// The allowlist denied it.
    Denied,
}

label_values!(OutgoingResult { Allowed => "allowed", Denied => "denied" });

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutgoingLabels {
    result: OutgoingResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: RequestOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CompileLabels {
    result: CompileCacheResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FetchLabels {
    result: FetchResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KeyValueLabels {
    backend: &'static str,
    operation: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LogLabels {
    level: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServiceExitLabels {
    result: &'static str,
}

/// The runtime's metrics. `Default` gives an unregistered set (for tests and tools).
#[derive(Debug, Clone)]
pub struct RuntimeMetrics {
    instantiate_duration: ShardedHistogram,
    request_duration: ShardedHistogram,
    active_instances: Gauge,
    workloads: Gauge,
    request_outcomes: Family<OutcomeLabels, Counter>,
    /// The series of `request_outcomes`, resolved once (indexed by [`RequestOutcome::index`]).
    outcome_counters: [Counter; RequestOutcome::ALL.len()],
    fetch_duration: Histogram,
    fetches: Family<FetchLabels, Counter>,
    compile_duration: Histogram,
    compile_cache: Family<CompileLabels, Counter>,
    outgoing: Family<OutgoingLabels, Counter>,
    keyvalue: Family<KeyValueLabels, Counter>,
    component_logs: Family<LogLabels, Counter>,
    linked_calls: Counter,
    service_exits: Family<ServiceExitLabels, Counter>,
}

/// Bucket bounds for per-request timings, in seconds: 1 µs steps up to 10 µs (instantiation lives
/// there), then coarser up to 10 s.
fn request_buckets() -> Vec<f64> {
    let micros = [
        1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.5, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 75.0,
        100.0, 150.0, 250.0, 500.0, 1e3, 2.5e3, 5e3, 1e4, 2.5e4, 5e4, 1e5, 2.5e5, 5e5, 1e6, 2.5e6, 1e7,
    ];
    micros.iter().map(|us| us / 1e6).collect()
}

/// Bucket bounds for fetch and compile timings, in seconds (1 ms … 2 min).
fn slow_buckets() -> Vec<f64> {
    [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    ]
    .to_vec()
}

impl Default for RuntimeMetrics {
    fn default() -> Self {
        let request_outcomes = Family::<OutcomeLabels, Counter>::default();
        let outcome_counters = RequestOutcome::ALL
            .map(|outcome| request_outcomes.get_or_create(&OutcomeLabels { outcome }).clone());
        Self {
            instantiate_duration: ShardedHistogram::new(request_buckets()),
            request_duration: ShardedHistogram::new(request_buckets()),
            active_instances: Gauge::default(),
            workloads: Gauge::default(),
            request_outcomes,
            outcome_counters,
            fetch_duration: Histogram::new(slow_buckets()),
            fetches: Family::default(),
            compile_duration: Histogram::new(slow_buckets()),
            compile_cache: Family::default(),
            outgoing: Family::default(),
            keyvalue: Family::default(),
            component_logs: Family::default(),
            linked_calls: Counter::default(),
            service_exits: Family::default(),
        }
    }
}

impl RuntimeMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register_with_unit(
            "weft_runtime_instantiate_duration",
            "Time to instantiate a component for one request",
            Unit::Seconds,
            m.instantiate_duration.clone(),
        );
        registry.register_with_unit(
            "weft_runtime_request_duration",
            "Time from a request reaching the backend until its response head is ready",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        registry.register(
            "weft_runtime_active_instances",
            "Component instances alive right now (requests being served)",
            m.active_instances.clone(),
        );
        registry.register(
            "weft_runtime_workloads",
            "Workloads loaded in the backend",
            m.workloads.clone(),
        );
        registry.register(
            "weft_runtime_requests",
            "Requests handled by the backend, by outcome",
            m.request_outcomes.clone(),
        );
        registry.register_with_unit(
            "weft_runtime_fetch_duration",
            "Time to obtain a component's bytes from its source",
            Unit::Seconds,
            m.fetch_duration.clone(),
        );
        registry.register(
            "weft_runtime_fetches",
            "Component fetches, by result",
            m.fetches.clone(),
        );
        registry.register_with_unit(
            "weft_runtime_compile_duration",
            "Time to compile a component to native code",
            Unit::Seconds,
            m.compile_duration.clone(),
        );
        registry.register(
            "weft_runtime_compile_cache",
            "Compiled-component lookups, by where the code was found",
            m.compile_cache.clone(),
        );
        registry.register(
            "weft_runtime_outgoing_requests",
            "Outgoing HTTP requests of components, by allowlist decision",
            m.outgoing.clone(),
        );
        registry.register(
            "weft_runtime_keyvalue_operations",
            "wasi:keyvalue operations of components, by backend, operation and result (ok or error)",
            m.keyvalue.clone(),
        );
        registry.register(
            "weft_runtime_component_logs",
            "wasi:logging messages of components, by level",
            m.component_logs.clone(),
        );
        registry.register(
            "weft_runtime_linked_calls",
            "Calls from one component of a workload into another's export",
            m.linked_calls.clone(),
        );
        registry.register(
            "weft_runtime_service_exits",
            "Exits of workload services (wasi:cli/run), by result: ok, error (restarted) or failed (out of restarts)",
            m.service_exits.clone(),
        );
        m
    }

    fn keyvalue_counter(&self, backend: &'static str, operation: &'static str, ok: bool) -> Counter {
        let result = if ok { "ok" } else { "error" };
        self.keyvalue
            .get_or_create(&KeyValueLabels {
                backend,
                operation,
                result,
            })
            .clone()
    }

    pub(crate) fn count_keyvalue(&self, backend: &'static str, operation: &'static str, ok: bool) {
        self.keyvalue_counter(backend, operation, ok).inc();
    }

    /// `wasi:keyvalue` operations counted so far with this backend, operation and result.
    pub fn keyvalue_count(&self, backend: &'static str, operation: &'static str, ok: bool) -> u64 {
        self.keyvalue_counter(backend, operation, ok).get()
    }

    pub(crate) fn count_log(&self, level: &'static str) {
        self.component_logs.get_or_create(&LogLabels { level }).inc();
    }

    pub(crate) fn count_linked_call(&self) {
        self.linked_calls.inc();
    }

    /// Calls from one component into another's export so far.
    pub fn linked_call_count(&self) -> u64 {
        self.linked_calls.get()
    }

    pub(crate) fn count_service_exit(&self, result: &'static str) {
        self.service_exits
            .get_or_create(&ServiceExitLabels { result })
            .inc();
    }

    pub(crate) fn observe_instantiate(&self, seconds: f64) {
        self.instantiate_duration.observe(seconds);
    }

    pub(crate) fn observe_request(&self, seconds: f64) {
        self.request_duration.observe(seconds);
    }

    pub(crate) fn active_instances(&self) -> &Gauge {
        &self.active_instances
    }

    pub(crate) fn workloads_gauge(&self) -> &Gauge {
        &self.workloads
    }

    pub(crate) fn count_outcome(&self, outcome: RequestOutcome) {
        self.outcome_counters[outcome.index()].inc();
    }

    pub(crate) fn observe_fetch(&self, result: FetchResult, seconds: Option<f64>) {
        self.fetches.get_or_create(&FetchLabels { result }).inc();
        if let Some(seconds) = seconds {
            self.fetch_duration.observe(seconds);
        }
    }

    pub(crate) fn observe_compile(&self, result: CompileCacheResult, seconds: Option<f64>) {
        self.compile_cache.get_or_create(&CompileLabels { result }).inc();
        if let Some(seconds) = seconds {
            self.compile_duration.observe(seconds);
        }
    }

    /// The counter of outgoing requests with `result` (handed to per-workload policies).
    pub(crate) fn outgoing_counter(&self, result: OutgoingResult) -> Counter {
        self.outgoing.get_or_create(&OutgoingLabels { result }).clone()
    }

    /// Outgoing requests with `result` so far.
    pub fn outgoing_count(&self, result: OutgoingResult) -> u64 {
        self.outgoing.get_or_create(&OutgoingLabels { result }).get()
    }

    /// Requests that ended with `outcome` so far.
    pub fn outcome_count(&self, outcome: RequestOutcome) -> u64 {
        self.outcome_counters[outcome.index()].get()
    }

    /// Compiled-component lookups that ended in `result` so far.
    pub fn compile_cache_count(&self, result: CompileCacheResult) -> u64 {
        self.compile_cache.get_or_create(&CompileLabels { result }).get()
    }

    /// Fetches that ended in `result` so far.
    pub fn fetch_count(&self, result: FetchResult) -> u64 {
        self.fetches.get_or_create(&FetchLabels { result }).get()
    }

    /// Instances alive right now.
    pub fn active_instance_count(&self) -> i64 {
        self.active_instances.get()
    }

    /// Workloads loaded right now.
    pub fn workload_count(&self) -> i64 {
        self.workloads.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_metrics_are_encoded_with_their_names() {
        let mut registry = Registry::default();
        let m = RuntimeMetrics::register(&mut registry);
        m.observe_instantiate(5e-6);
        m.count_outcome(RequestOutcome::Deadline);
        m.observe_compile(CompileCacheResult::Disk, Some(0.01));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("weft_runtime_instantiate_duration_seconds_bucket{le=\"0.000005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("weft_runtime_requests_total{outcome=\"deadline\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("weft_runtime_compile_cache_total{result=\"disk\"} 1"),
            "{text}"
        );
        assert_eq!(m.outcome_count(RequestOutcome::Deadline), 1);
        assert_eq!(m.outcome_count(RequestOutcome::Trap), 0);
        // Every outcome has its series from the start (zero until counted).
        assert!(
            text.contains("weft_runtime_requests_total{outcome=\"instantiate_error\"} 0"),
            "{text}"
        );
        for (i, outcome) in RequestOutcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome.index(), i);
        }
        assert_eq!(m.compile_cache_count(CompileCacheResult::Disk), 1);
    }
}
