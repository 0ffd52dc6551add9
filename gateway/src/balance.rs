//! Choosing an upstream: round robin over the hosts of a route, skipping upstreams that were ejected
//! after a connection error (passive health), with a bounded budget for retries.
//!
//! Round robin rather than least-requests: a route's upstreams are hosts that each balance their own
//! replicas, requests to one hostname cost about the same, and round robin needs no shared per-request
//! bookkeeping; a slow or dead host is taken out by ejection, not by counting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::routes::{Route, Upstream};

/// Upstreams ejected after a connection error, until a deadline. The request path reads one atomic when
/// nothing is ejected (the usual case) and takes the lock only while something is.
#[derive(Debug)]
pub struct Ejections {
    duration: Duration,
    ejected: AtomicUsize,
    until: Mutex<HashMap<String, Instant>>,
}

impl Ejections {
    /// Ejections that last `duration`.
    pub fn new(duration: Duration) -> Self {
        Self {
            duration,
            ejected: AtomicUsize::new(0),
            until: Mutex::default(),
        }
    }

    /// Ejects `authority` from `now`; returns whether it was not ejected already.
    pub fn eject(&self, authority: &str, now: Instant) -> bool {
        let mut until = self.until.lock().expect("ejections lock");
        until.retain(|_, t| *t > now);
        let fresh = until.insert(authority.to_string(), now + self.duration).is_none();
        self.ejected.store(until.len(), Ordering::Release);
        fresh
    }

    /// Whether `authority` is ejected at `now`.
    pub fn is_ejected(&self, authority: &str, now: Instant) -> bool {
        if self.ejected.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.until
            .lock()
            .expect("ejections lock")
            .get(authority)
            .is_some_and(|t| *t > now)
    }

    /// How many upstreams are ejected at `now`.
    pub fn count(&self, now: Instant) -> usize {
        let mut until = self.until.lock().expect("ejections lock");
        until.retain(|_, t| *t > now);
        self.ejected.store(until.len(), Ordering::Release);
        until.len()
    }
}

/// Picks the next upstream of `route` after `cursor`, skipping `exclude` and ejected ones; when every
/// other upstream is ejected, picks among them anyway (better a likely failure than a certain one).
/// A retry (`exclude` set) does not advance the cursor, so a failing upstream is not handed every first
/// attempt: round robin stays fair to the others.
pub fn pick<'a>(
    route: &'a Route,
    cursor: &AtomicUsize,
    exclude: Option<&str>,
    ejected: impl Fn(&str) -> bool,
) -> Option<&'a Upstream> {
    let n = route.upstreams.len();
    if n == 0 {
        return None;
    }
    let start = if exclude.is_some() {
        cursor.load(Ordering::Relaxed)
    } else {
        cursor.fetch_add(1, Ordering::Relaxed)
    };
    let mut candidates = (0..n).map(|i| &route.upstreams[(start + i) % n]);
    let allowed = |u: &&Upstream| Some(u.authority.as_str()) != exclude;
    candidates
        .clone()
        .filter(allowed)
        .find(|u| !ejected(&u.authority))
        .or_else(|| candidates.find(allowed))
}

/// Retries allowed per second: at least `min_per_second`, or `percent` of the requests of the current
/// second, whichever is more, so a failing upstream cannot double the load on the others.
#[derive(Debug)]
pub struct RetryBudget {
    min_per_second: u64,
    percent: u64,
    epoch: Instant,
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl RetryBudget {
    /// A budget of `max(min_per_second, percent% of requests)` retries per second.
    pub fn new(min_per_second: u64, percent: u64) -> Self {
        Self {
            min_per_second,
            percent,
            epoch: Instant::now(),
            second: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    fn roll(&self, now: Instant) {
        let second = now.saturating_duration_since(self.epoch).as_secs();
        let seen = self.second.load(Ordering::Acquire);
        if second != seen
            && self
                .second
                .compare_exchange(seen, second, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.requests.store(0, Ordering::Release);
            self.retries.store(0, Ordering::Release);
        }
    }

    /// Counts a request.
    pub fn request(&self, now: Instant) {
        self.roll(now);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget, if there is one left this second.
    pub fn try_retry(&self, now: Instant) -> bool {
        self.roll(now);
        let allowed = (self.requests.load(Ordering::Relaxed) * self.percent / 100).max(self.min_per_second);
        let taken = self.retries.fetch_add(1, Ordering::AcqRel);
        if taken < allowed {
            true
        } else {
            self.retries.fetch_sub(1, Ordering::AcqRel);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(n: usize) -> Route {
        Route {
            hostname: "x.test".into(),
            upstreams: (0..n)
                .map(|i| Upstream {
                    authority: format!("10.0.0.{i}:9191"),
                    host_id: format!("h{i}"),
                    workload_id: format!("w{i}"),
                })
                .collect(),
        }
    }

    #[test]
    fn round_robin_spreads_requests_evenly() {
        let r = route(3);
        let cursor = AtomicUsize::new(0);
        let mut counts = HashMap::new();
        for _ in 0..300 {
            let u = pick(&r, &cursor, None, |_| false).unwrap();
            *counts.entry(u.authority.clone()).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|c| *c == 100), "{counts:?}");
    }

    #[test]
    fn ejected_and_excluded_upstreams_are_skipped_unless_nothing_else_is_left() {
        let r = route(2);
        let cursor = AtomicUsize::new(0);
        for _ in 0..10 {
            let u = pick(&r, &cursor, None, |a| a == "10.0.0.0:9191").unwrap();
            assert_eq!(u.authority, "10.0.0.1:9191");
        }
        let u = pick(&r, &cursor, Some("10.0.0.1:9191"), |a| a == "10.0.0.0:9191").unwrap();
        assert_eq!(u.authority, "10.0.0.0:9191", "all others ejected: fail open");
        assert!(pick(&route(1), &cursor, Some("10.0.0.0:9191"), |_| false).is_none());
        assert!(pick(&route(0), &cursor, None, |_| false).is_none());
    }

    #[test]
    fn retries_do_not_hand_a_failing_upstream_every_first_attempt() {
        let r = route(3);
        let cursor = AtomicUsize::new(0);
        let mut first = HashMap::new();
        for _ in 0..300 {
            let u = pick(&r, &cursor, None, |_| false).unwrap();
            *first.entry(u.authority.clone()).or_insert(0) += 1;
            if u.authority == "10.0.0.0:9191" {
                let retry = pick(&r, &cursor, Some(&u.authority), |_| false).unwrap();
                assert_ne!(retry.authority, u.authority);
            }
        }
        assert!(first.values().all(|c| *c == 100), "{first:?}");
    }

    #[test]
    fn ejections_expire() {
        let e = Ejections::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert!(!e.is_ejected("a", t0));
        assert!(e.eject("a", t0));
        assert!(!e.eject("a", t0), "already ejected");
        assert!(e.is_ejected("a", t0 + Duration::from_secs(4)));
        assert!(!e.is_ejected("b", t0));
        assert!(!e.is_ejected("a", t0 + Duration::from_secs(6)));
        assert_eq!(e.count(t0 + Duration::from_secs(6)), 0);
    }

    #[test]
    fn the_retry_budget_is_a_share_of_requests_with_a_floor() {
        let b = RetryBudget::new(2, 10);
        let t0 = b.epoch + Duration::from_millis(10);
        assert!(b.try_retry(t0) && b.try_retry(t0));
        assert!(!b.try_retry(t0), "the floor is 2 per second");
        for _ in 0..100 {
            b.request(t0);
        }
        let granted = (0..20).filter(|_| b.try_retry(t0)).count();
        assert_eq!(granted, 8, "10 % of 100 requests, 2 already taken");
        let next = t0 + Duration::from_secs(1);
        assert!(b.try_retry(next), "a new second, a new budget");
    }
}
