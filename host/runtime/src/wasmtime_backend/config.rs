//! Settings of the Wasmtime backend and how they become a `wasmtime::Config`.

use std::path::PathBuf;
use std::time::Duration;

use wasmtime::{Enabled, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Settings of the Wasmtime backend. `Default` gives the measured production settings (see
/// `docs/host-runtime.md`); only `cache_dir` usually needs setting.
#[derive(Debug, Clone)]
pub struct WasmtimeConfig {
    /// Directory for fetched components and precompiled artifacts (created if missing).
    pub cache_dir: PathBuf,
    /// Instances alive at once across all workloads (the pooling allocator's size). Requests beyond
    /// it get `503`.
    pub max_instances: u32,
    /// Core instances a component may create (sizes the pool: `max_instances` × this).
    pub max_core_instances_per_component: u32,
    /// Linear memories a component may have (sizes the pool: `max_instances` × this).
    pub max_memories_per_component: u32,
    /// Tables a component may have (sizes the pool: `max_instances` × this).
    pub max_tables_per_component: u32,
    /// Memory limit of one instance unless the component asks for less (`memory_limit_bytes`).
    pub default_memory_limit: u64,
    /// Largest memory limit a component may ask for (also the pool's per-memory maximum).
    pub max_memory_limit: u64,
    /// CPU time one request may use (counted in epoch ticks while the component runs).
    pub cpu_time_limit: Duration,
    /// Wall-clock time one request may take in total, including waiting on I/O.
    pub wall_time_limit: Duration,
    /// Period of the epoch ticker; also how often a long-running component yields to other tasks.
    pub epoch_tick: Duration,
    /// Concurrent requests per workload when the component sets no `maxConcurrency`.
    pub default_max_concurrency: u32,
    /// The `Retry-After` sent with `503` responses.
    pub retry_after: Duration,
    /// Largest accepted request body; larger declared bodies get `413`.
    pub max_request_body: u64,
    /// Bytes of linear memory and table kept resident in a pool slot between instances (with
    /// `pagemap_scan` only the dirty part is reset).
    pub keep_resident: usize,
    /// Use `PAGEMAP_SCAN` (Linux ≥ 6.7) to reset only dirty pages; `Auto` detects support.
    pub pagemap_scan: PagemapScan,
    /// Idle pool slots kept warm (bounds idle RSS).
    pub max_unused_warm_slots: u32,
    /// Use the pooling allocator (`false` = allocate on demand; slower, for constrained address spaces).
    pub pooling: bool,
    /// Largest component accepted from a source.
    pub max_component_size: u64,
    /// Timeout for fetching one component.
    pub fetch_timeout: Duration,
    /// Registries reached over plain HTTP (`host[:port]`, or `*` for all); `localhost`, `127.0.0.1` and
    /// `[::1]` always are.
    pub insecure_registries: Vec<String>,
    /// Pass the components' stdout and stderr through to the host's.
    pub inherit_stdio: bool,
    /// The stores behind `wasi:keyvalue` (none: opening a bucket fails with a message saying so).
    pub keyvalue: crate::keyvalue::KeyValueBackends,
    /// Let components reach the host's loopback ports they list in `allowedHostLoopbackPorts`
    /// (otherwise those lists are inert).
    pub allow_host_loopback: bool,
    /// Back-off before a failed service's first restart; doubled per restart.
    pub service_restart_backoff: Duration,
    /// Longest back-off between service restarts.
    pub service_max_backoff: Duration,
}

/// Whether to use `PAGEMAP_SCAN` when resetting pool slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagemapScan {
    /// Use it when the kernel supports it.
    Auto,
    /// Require it.
    Yes,
    /// Never use it.
    No,
}

impl Default for WasmtimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: std::env::temp_dir().join("weft-runtime-cache"),
            max_instances: 1000,
            max_core_instances_per_component: 20,
            max_memories_per_component: 2,
            max_tables_per_component: 4,
            default_memory_limit: 64 << 20,
            max_memory_limit: 256 << 20,
            cpu_time_limit: Duration::from_secs(5),
            wall_time_limit: Duration::from_secs(60),
            epoch_tick: Duration::from_millis(10),
            default_max_concurrency: 1000,
            retry_after: Duration::from_secs(1),
            max_request_body: 16 << 20,
            keep_resident: 1 << 20,
            pagemap_scan: PagemapScan::Auto,
            max_unused_warm_slots: 100,
            pooling: true,
            max_component_size: 100 << 20,
            fetch_timeout: Duration::from_secs(30),
            insecure_registries: Vec::new(),
            inherit_stdio: true,
            keyvalue: crate::keyvalue::KeyValueBackends::default(),
            allow_host_loopback: false,
            service_restart_backoff: Duration::from_millis(500),
            service_max_backoff: Duration::from_secs(30),
        }
    }
}

impl WasmtimeConfig {
    /// CPU budget in epoch ticks (at least 1).
    pub(crate) fn cpu_ticks(&self) -> u64 {
        let tick = self.epoch_tick.as_nanos().max(1);
        (self.cpu_time_limit.as_nanos().div_ceil(tick) as u64).max(1)
    }

    /// The engine configuration. Everything that changes generated code lives here, so the
    /// precompiled-artifact cache key (the engine's compatibility hash) follows it.
    pub(crate) fn engine_config(&self, pooling: bool) -> wasmtime::Config {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        if pooling {
            let mut pool = PoolingAllocationConfig::default();
            let instances = self.max_instances.max(1);
            pool.total_component_instances(instances)
                .total_stacks(instances)
                .total_core_instances(instances.saturating_mul(self.max_core_instances_per_component))
                .total_memories(instances.saturating_mul(self.max_memories_per_component))
                .total_tables(instances.saturating_mul(self.max_tables_per_component))
                .max_core_instances_per_component(self.max_core_instances_per_component)
                .max_memories_per_component(self.max_memories_per_component)
                .max_tables_per_component(self.max_tables_per_component)
                .max_memory_size(usize::try_from(self.max_memory_limit).unwrap_or(usize::MAX))
                .linear_memory_keep_resident(self.keep_resident)
                .table_keep_resident(self.keep_resident)
                .max_unused_warm_slots(self.max_unused_warm_slots)
                .pagemap_scan(match self.pagemap_scan {
                    PagemapScan::Auto => Enabled::Auto,
                    PagemapScan::Yes => Enabled::Yes,
                    PagemapScan::No => Enabled::No,
                });
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        config
    }
}
