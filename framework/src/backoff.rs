//! Per-object exponential back-off, like client-go's `ItemExponentialFailureRateLimiter`.
//!
//! Every failed reconcile of an object doubles that object's next delay, starting at `base` and capped at
//! `max`; a success forgets the object so its next failure starts at `base` again. Objects never share a
//! counter, so one failing object does not slow down the others.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

/// controller-runtime's defaults: 5 ms doubling up to 1000 s.
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(5);
/// See [`DEFAULT_BASE_DELAY`].
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(1000);

/// Exponential back-off state, one failure counter per key.
#[derive(Debug, Clone)]
pub struct ItemBackoff<T> {
    base: Duration,
    max: Duration,
    failures: HashMap<T, u32>,
}

impl<T: Hash + Eq + Clone> Default for ItemBackoff<T> {
    fn default() -> Self {
        Self::new(DEFAULT_BASE_DELAY, DEFAULT_MAX_DELAY)
    }
}

impl<T: Hash + Eq + Clone> ItemBackoff<T> {
    /// Back-off starting at `base` and never exceeding `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            failures: HashMap::new(),
        }
    }

    /// Records one more failure of `key` and returns how long to wait before retrying it.
    pub fn next_delay(&mut self, key: &T) -> Duration {
        let failures = self.failures.entry(key.clone()).or_insert(0);
        let exp = *failures;
        *failures = failures.saturating_add(1);
        Self::delay_for(self.base, self.max, exp)
    }

    /// Forgets `key`'s failures (called after a successful reconcile).
    pub fn forget(&mut self, key: &T) {
        self.failures.remove(key);
    }

    /// How many failures have been recorded for `key` since it last succeeded.
    pub fn failures(&self, key: &T) -> u32 {
        self.failures.get(key).copied().unwrap_or(0)
    }

    /// Number of keys currently backing off.
    pub fn len(&self) -> usize {
        self.failures.len()
    }

    /// Whether no key is backing off.
    pub fn is_empty(&self) -> bool {
        self.failures.is_empty()
    }

    /// `base * 2^exp`, capped at `max` (and saturating instead of overflowing).
    pub fn delay_for(base: Duration, max: Duration, exp: u32) -> Duration {
        if exp >= 64 {
            return max;
        }
        let factor = 1u128 << exp;
        let nanos = base.as_nanos().saturating_mul(factor);
        if nanos >= max.as_nanos() {
            max
        } else {
            Duration::from_nanos(nanos as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_five_millis_up_to_the_cap() {
        let mut b = ItemBackoff::<&str>::default();
        let delays: Vec<_> = (0..6).map(|_| b.next_delay(&"a")).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(delays, vec![ms(5), ms(10), ms(20), ms(40), ms(80), ms(160)]);
        for _ in 0..30 {
            b.next_delay(&"a");
        }
        assert_eq!(b.next_delay(&"a"), DEFAULT_MAX_DELAY);
        assert_eq!(b.failures(&"a"), 37);
    }

    #[test]
    fn keys_back_off_independently() {
        let mut b = ItemBackoff::<&str>::default();
        for _ in 0..4 {
            b.next_delay(&"slow");
        }
        assert_eq!(b.next_delay(&"fresh"), Duration::from_millis(5));
        assert_eq!(b.next_delay(&"slow"), Duration::from_millis(80));
        assert_eq!(b.failures(&"fresh"), 1);
    }

    #[test]
    fn success_resets_only_that_key() {
        let mut b = ItemBackoff::<&str>::default();
        for _ in 0..5 {
            b.next_delay(&"a");
            b.next_delay(&"b");
        }
        b.forget(&"a");
        assert_eq!(b.failures(&"a"), 0);
        assert_eq!(b.next_delay(&"a"), Duration::from_millis(5));
        assert_eq!(b.next_delay(&"b"), Duration::from_millis(160));
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn huge_exponents_saturate_at_the_cap() {
        let base = Duration::from_millis(5);
        let max = Duration::from_secs(1000);
        assert_eq!(ItemBackoff::<u8>::delay_for(base, max, 63), max);
        assert_eq!(ItemBackoff::<u8>::delay_for(base, max, u32::MAX), max);
        assert_eq!(
            ItemBackoff::<u8>::delay_for(base, max, 17),
            Duration::from_millis(5 << 17)
        );
        assert_eq!(ItemBackoff::<u8>::delay_for(base, max, 18), max);
    }
}
