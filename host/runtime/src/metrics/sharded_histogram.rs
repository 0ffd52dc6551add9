//! A Prometheus histogram for hot paths: no lock, and no cache line shared by threads that observe.
//!
//! `prometheus_client`'s `Histogram` takes a mutex on every observation, and every thread observing it
//! writes the same cache lines. Per-request histograms are observed by every worker thread several times
//! per request, so [`ShardedHistogram`] keeps one set of atomic counters per shard (threads are spread
//! over the shards) and sums the shards when it is scraped. It encodes exactly like
//! `prometheus_client::metrics::histogram::Histogram` with the same buckets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Shards per histogram (a power of two). Threads beyond it share shards, which is still correct.
const SHARDS: usize = 16;

/// One shard's counters, alone on its cache lines.
#[repr(align(128))]
#[derive(Debug)]
struct Shard {
    /// Observations per bucket (not cumulative); the last bucket is `+Inf`.
    buckets: Box<[AtomicU64]>,
    /// Sum of the observed values, as `f64` bits.
    sum: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds, ascending, ending with `+Inf`.
    bounds: Box<[f64]>,
    shards: Box<[Shard]>,
}

/// A classic Prometheus histogram that observes without locking (see the module docs). Clones share
/// the counters.
#[derive(Debug, Clone)]
pub struct ShardedHistogram {
    inner: Arc<Inner>,
}

impl ShardedHistogram {
    /// A histogram with these upper bounds (ascending; `+Inf` is added).
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        let mut bounds: Vec<f64> = bounds.into_iter().filter(|b| b.is_finite()).collect();
        bounds.push(f64::INFINITY);
        let shards = (0..SHARDS)
            .map(|_| Shard {
                buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
                sum: AtomicU64::new(0f64.to_bits()),
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                bounds: bounds.into(),
                shards,
            }),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let inner = &*self.inner;
        // The first bucket whose bound is ≥ value; NaN goes to `+Inf` (as prometheus_client does).
        let bucket = if value.is_nan() {
            inner.bounds.len() - 1
        } else {
            inner.bounds.partition_point(|bound| *bound < value)
        };
        let shard = &inner.shards[shard_index()];
        shard.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        // Uncontended in practice (one thread per shard), so this loop runs once.
        let _ = shard
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// The sum, the count and the per-bucket (not cumulative) counts, summed over the shards.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let inner = &*self.inner;
        let mut buckets: Vec<(f64, u64)> = inner.bounds.iter().map(|b| (*b, 0)).collect();
        let mut sum = 0.0;
        for shard in &inner.shards {
            for (total, counter) in buckets.iter_mut().zip(&shard.buckets) {
                total.1 += counter.load(Ordering::Relaxed);
            }
            sum += f64::from_bits(shard.sum.load(Ordering::Relaxed));
        }
        let count = buckets.iter().map(|b| b.1).sum();
        (sum, count, buckets)
    }
}

/// This thread's shard: threads take shards round-robin the first time they observe.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|shard| *shard)
}

impl TypedMetric for ShardedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for ShardedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn encodes_like_the_prometheus_client_histogram() {
        let bounds = [1e-6, 5e-6, 1e-3, 0.5];
        let values = [0.0, 1e-6, 2e-6, 5e-6, 7e-4, 0.3, 0.5, 2.0, f64::NAN];
        let ours = ShardedHistogram::new(bounds);
        let reference = Histogram::new(bounds);
        let mut a = Registry::default();
        let mut b = Registry::default();
        a.register("latency", "help", ours.clone());
        b.register("latency", "help", reference.clone());
        // Observations from several threads land in different shards and are all counted.
        std::thread::scope(|scope| {
            for chunk in values.chunks(2) {
                let ours = ours.clone();
                scope.spawn(move || chunk.iter().for_each(|v| ours.observe(*v)));
            }
        });
        values.iter().for_each(|v| reference.observe(*v));
        // NaN poisons both sums the same way; compare everything else exactly.
        let (mut ours_text, mut reference_text) = (String::new(), String::new());
        prometheus_client::encoding::text::encode(&mut ours_text, &a).unwrap();
        prometheus_client::encoding::text::encode(&mut reference_text, &b).unwrap();
        assert_eq!(ours_text, reference_text);
        assert!(
            ours_text.contains("latency_bucket{le=\"0.000005\"} 4"),
            "{ours_text}"
        );
        assert!(ours_text.contains("latency_bucket{le=\"+Inf\"} 9"), "{ours_text}");
        assert!(ours_text.contains("latency_count 9"), "{ours_text}");
    }

    #[test]
    fn snapshot_sums_values_and_counts_per_bucket() {
        let h = ShardedHistogram::new([1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 3.0] {
            h.observe(v);
        }
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(sum, 6.0);
        assert_eq!(count, 4);
        assert_eq!(buckets, vec![(1.0, 2), (2.0, 1), (f64::INFINITY, 1)]);
    }
}
