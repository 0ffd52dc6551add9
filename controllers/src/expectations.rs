//! Creations and deletions a controller asked for that its cache does not show yet (controller-runtime's
//! and kube-controller-manager's "expectations"), so a reconcile that runs before the watch catches up
//! does not create or delete the same child twice.
//!
//! A creation is settled when the cache has the new object; a deletion when the cache no longer has the
//! object, or has it with a deletion timestamp. Anything not settled within the TTL is forgotten (a
//! lost watch event must not wedge the owner forever).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an unsettled expectation is trusted.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct Pending {
    creates: HashMap<String, Instant>,
    deletes: HashMap<String, Instant>,
}

/// What is still in flight for one owner after [`Expectations::settle`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// Names of children created but not cached yet.
    pub creates: Vec<String>,
    /// UIDs of children deleted but still cached as live.
    pub deletes: HashSet<String>,
}

/// Per-owner expectations, keyed by the owner's `namespace/name`.
#[derive(Debug)]
pub struct Expectations {
    ttl: Duration,
    pending: Mutex<HashMap<String, Pending>>,
}

impl Default for Expectations {
    fn default() -> Self {
        Self::new(DEFAULT_TTL)
    }
}

impl Expectations {
    /// Expectations trusted for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            pending: Mutex::default(),
        }
    }

    /// Records that `owner` created the child `name`.
    pub fn created(&self, owner: &str, name: &str, now: Instant) {
        let mut pending = self.pending.lock().expect("expectations lock");
        pending
            .entry(owner.to_string())
            .or_default()
            .creates
            .insert(name.to_string(), now);
    }

    /// Records that `owner` deleted the child with `uid`.
    pub fn deleted(&self, owner: &str, uid: &str, now: Instant) {
        let mut pending = self.pending.lock().expect("expectations lock");
        pending
            .entry(owner.to_string())
            .or_default()
            .deletes
            .insert(uid.to_string(), now);
    }

    /// Drops what the cache now shows (`cached_name` says whether a child of that name is cached;
    /// `live_uid` whether a child with that UID is cached without a deletion timestamp) and what is
    /// older than the TTL; returns what is still in flight.
    pub fn settle(
        &self,
        owner: &str,
        now: Instant,
        cached_name: impl Fn(&str) -> bool,
        live_uid: impl Fn(&str) -> bool,
    ) -> InFlight {
        let mut pending = self.pending.lock().expect("expectations lock");
        let Some(p) = pending.get_mut(owner) else {
            return InFlight::default();
        };
        let ttl = self.ttl;
        p.creates
            .retain(|name, at| now.duration_since(*at) < ttl && !cached_name(name));
        p.deletes
            .retain(|uid, at| now.duration_since(*at) < ttl && live_uid(uid));
        let mut creates: Vec<String> = p.creates.keys().cloned().collect();
        creates.sort();
        let out = InFlight {
            creates,
            deletes: p.deletes.keys().cloned().collect(),
        };
        if p.creates.is_empty() && p.deletes.is_empty() {
            pending.remove(owner);
        }
        out
    }

    /// Forgets everything about `owner` (it was deleted).
    pub fn forget(&self, owner: &str) {
        self.pending.lock().expect("expectations lock").remove(owner);
    }

    /// Owners with anything in flight.
    pub fn len(&self) -> usize {
        self.pending.lock().expect("expectations lock").len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_stay_in_flight_until_cached() {
        let e = Expectations::default();
        let t0 = Instant::now();
        e.created("ns/rs", "rs-a", t0);
        e.created("ns/rs", "rs-b", t0);
        let f = e.settle("ns/rs", t0, |n| n == "rs-a", |_| false);
        assert_eq!(f.creates, vec!["rs-b".to_string()]);
        let f = e.settle("ns/rs", t0, |n| n == "rs-b", |_| false);
        assert!(f.creates.is_empty());
        assert!(e.is_empty(), "a settled owner is dropped");
    }

    #[test]
    fn deletions_stay_in_flight_while_the_cache_shows_them_live() {
        let e = Expectations::default();
        let t0 = Instant::now();
        e.deleted("ns/rs", "uid-1", t0);
        let f = e.settle("ns/rs", t0, |_| false, |u| u == "uid-1");
        assert!(f.deletes.contains("uid-1"));
        let f = e.settle("ns/rs", t0, |_| false, |_| false);
        assert!(f.deletes.is_empty());
    }

    #[test]
    fn unsettled_expectations_expire_and_owners_are_independent() {
        let e = Expectations::new(Duration::from_secs(30));
        let t0 = Instant::now();
        e.created("ns/a", "a-1", t0);
        e.deleted("ns/b", "uid", t0);
        assert_eq!(e.settle("ns/b", t0, |_| false, |_| true).deletes.len(), 1);
        assert_eq!(e.settle("ns/a", t0, |_| false, |_| true).creates.len(), 1);
        let later = t0 + Duration::from_secs(31);
        assert_eq!(e.settle("ns/a", later, |_| false, |_| true), InFlight::default());
        e.forget("ns/b");
        assert!(e.is_empty());
    }
}
