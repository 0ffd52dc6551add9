//! Weft's built-in scheduling policies, each a [`Pipeline`] over the standard filters (readiness, environment,
//! selector, interfaces):
//!
//! | name | filters | prefers |
//! |---|---|---|
//! | [`RANDOM`] | — | any feasible host, uniformly (wasmCloud parity) |
//! | [`SPREAD`] | — | fewest replicas of the workload's replica set, then fewest workloads |
//! | [`BINPACK`] | [`ResourceThresholds`] | highest memory use after placement, then most workloads |
//! | [`RESOURCE_AWARE`] | [`ResourceThresholds`] | most headroom (scarcer of CPU and memory, in buckets), then fewest workloads |
//!
//! The filters and scorers are public so other pipelines can compose them.

use std::sync::Arc;

use weft_scheduler_api::{
    Context, FULL_BP, Filter, HostInfo, Pipeline, PolicyRegistry, Reason, RegistryError, Scorer,
};

/// Uniform choice among feasible hosts, as wasmCloud does.
pub const RANDOM: &str = "random";
/// Replicas of one set on different hosts, then the least loaded host.
pub const SPREAD: &str = "spread";
/// Fill hosts up to the thresholds before using another.
pub const BINPACK: &str = "binpack";
/// Skip hosts over the thresholds and prefer the most headroom.
pub const RESOURCE_AWARE: &str = "resource-aware";

/// Weight that makes a scorer dominate any second scorer whose scores stay below 2^32.
const DOMINANT: i64 = 1 << 32;

/// Settings of the built-in policies (operator flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltinOptions {
    /// CPU and memory thresholds for `binpack` and `resource-aware`.
    pub thresholds: ResourceThresholds,
    /// `resource-aware` treats headroom within one bucket of this many basis points as equal (default 500 =
    /// 5 points), then spreads by workload count, so a burst of placements between two heartbeats does not
    /// pile onto the single emptiest host.
    pub headroom_bucket_bp: u32,
}

impl Default for BuiltinOptions {
    fn default() -> Self {
        BuiltinOptions {
            thresholds: ResourceThresholds::default(),
            headroom_bucket_bp: 500,
        }
    }
}

/// A registry holding the four built-in policies.
pub fn registry(options: &BuiltinOptions) -> PolicyRegistry {
    let mut registry = PolicyRegistry::new();
    register(&mut registry, options).expect("an empty registry has no duplicates");
    registry
}

/// Adds the built-in policies to `registry`.
pub fn register(registry: &mut PolicyRegistry, options: &BuiltinOptions) -> Result<(), RegistryError> {
    registry.register(Arc::new(random()))?;
    registry.register(Arc::new(spread()))?;
    registry.register(Arc::new(binpack(options.thresholds)))?;
    registry.register(Arc::new(resource_aware(
        options.thresholds,
        options.headroom_bucket_bp,
    )))?;
    Ok(())
}

/// The `random` policy.
pub fn random() -> Pipeline {
    Pipeline::builder(RANDOM).build()
}

/// The `spread` policy.
pub fn spread() -> Pipeline {
    Pipeline::builder(SPREAD)
        .scorer(DOMINANT, ReplicaSpread)
        .scorer(1, FewestWorkloads)
        .build()
}

/// The `binpack` policy.
pub fn binpack(thresholds: ResourceThresholds) -> Pipeline {
    Pipeline::builder(BINPACK)
        .filter(thresholds)
        .scorer(DOMINANT, MemoryUtilisation)
        .scorer(1, MostWorkloads)
        .build()
}

/// The `resource-aware` policy.
pub fn resource_aware(thresholds: ResourceThresholds, headroom_bucket_bp: u32) -> Pipeline {
    Pipeline::builder(RESOURCE_AWARE)
        .filter(thresholds)
        .scorer(
            DOMINANT,
            Headroom {
                bucket_bp: headroom_bucket_bp.max(1),
            },
        )
        .scorer(1, FewestWorkloads)
        .build()
}

/// Skips hosts whose CPU usage, or whose memory usage with the workload's memory hint, is above a threshold
/// (wasmCloud's `-cpu-backpressure-threshold` and `-memory-backpressure-threshold`, both 80 % by default,
/// which wasmCloud never reads). A host that reports no memory total is not judged on memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceThresholds {
    /// CPU threshold in basis points.
    pub cpu_bp: u32,
    /// Memory threshold in basis points.
    pub memory_bp: u32,
}

impl Default for ResourceThresholds {
    fn default() -> Self {
        ResourceThresholds {
            cpu_bp: 8000,
            memory_bp: 8000,
        }
    }
}

impl ResourceThresholds {
    /// Thresholds from whole percentages, as operator flags give them.
    pub fn from_percent(cpu: u8, memory: u8) -> Self {
        ResourceThresholds {
            cpu_bp: u32::from(cpu) * 100,
            memory_bp: u32::from(memory) * 100,
        }
    }
}

fn cpu_after(cx: &Context<'_>, host: &HostInfo) -> u32 {
    let hint = cx.request().resources.cpu_bp.unwrap_or(0);
    host.cpu_usage_bp.saturating_add(hint).min(FULL_BP)
}

fn memory_after(cx: &Context<'_>, host: &HostInfo) -> u32 {
    host.memory_used_bp(cx.request().resources.memory_bytes.unwrap_or(0))
}

impl Filter for ResourceThresholds {
    fn name(&self) -> &str {
        "resource-thresholds"
    }

    fn filter(&self, cx: &Context<'_>, host: &HostInfo) -> Result<(), Reason> {
        let cpu = cpu_after(cx, host);
        if cpu > self.cpu_bp {
            return Err(Reason::CpuAboveThreshold {
                usage_bp: cpu,
                threshold_bp: self.cpu_bp,
            });
        }
        let memory = memory_after(cx, host);
        if host.memory_total_bytes > 0 && memory > self.memory_bp {
            return Err(Reason::MemoryAboveThreshold {
                used_bp: memory,
                threshold_bp: self.memory_bp,
            });
        }
        Ok(())
    }
}

fn clamp_count(count: u64) -> i64 {
    count.min(u64::from(u32::MAX)) as i64
}

/// Fewer replicas of the workload's replica set on the host scores higher (0 for workloads without a set).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplicaSpread;

impl Scorer for ReplicaSpread {
    fn name(&self) -> &str {
        "replica-spread"
    }

    fn score(&self, cx: &Context<'_>, host: &HostInfo) -> i64 {
        -clamp_count(host.replicas_of(cx.request().replica_set.as_deref()))
    }
}

/// Fewer workloads on the host scores higher.
#[derive(Clone, Copy, Debug, Default)]
pub struct FewestWorkloads;

impl Scorer for FewestWorkloads {
    fn name(&self) -> &str {
        "fewest-workloads"
    }

    fn score(&self, _: &Context<'_>, host: &HostInfo) -> i64 {
        -clamp_count(host.workload_count)
    }
}

/// More workloads on the host scores higher.
#[derive(Clone, Copy, Debug, Default)]
pub struct MostWorkloads;

impl Scorer for MostWorkloads {
    fn name(&self) -> &str {
        "most-workloads"
    }

    fn score(&self, _: &Context<'_>, host: &HostInfo) -> i64 {
        clamp_count(host.workload_count)
    }
}

/// Higher memory use (basis points, with the workload's hint) scores higher.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryUtilisation;

impl Scorer for MemoryUtilisation {
    fn name(&self) -> &str {
        "memory-utilisation"
    }

    fn score(&self, cx: &Context<'_>, host: &HostInfo) -> i64 {
        i64::from(memory_after(cx, host))
    }
}

/// More headroom scores higher: the free share of the scarcer resource (CPU, or memory when the host reports
/// it) after placement, in basis points, divided into buckets of `bucket_bp`.
#[derive(Clone, Copy, Debug)]
pub struct Headroom {
    /// Bucket width in basis points (at least 1).
    pub bucket_bp: u32,
}

impl Scorer for Headroom {
    fn name(&self) -> &str {
        "headroom"
    }

    fn score(&self, cx: &Context<'_>, host: &HostInfo) -> i64 {
        let cpu_free = FULL_BP - cpu_after(cx, host);
        let free = if host.memory_total_bytes > 0 {
            cpu_free.min(FULL_BP.saturating_sub(memory_after(cx, host)))
        } else {
            cpu_free
        };
        i64::from(free / self.bucket_bp.max(1))
    }
}

#[cfg(test)]
mod tests;
