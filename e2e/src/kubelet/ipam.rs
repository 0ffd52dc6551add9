//! Pure: one loopback address per pod, from 127.0.0.2 up to 127.0.255.254 (all of 127/8 is local on
//! Linux). Addresses are handed out round-robin, so a freed address is reused as late as possible
//! (a pod that just went away may still be named by objects that other components have not cleaned up).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

const FIRST: u32 = u32::from_be_bytes([127, 0, 0, 2]);
const LAST: u32 = u32::from_be_bytes([127, 0, 255, 254]);

/// Allocates pod IPs, keyed by pod UID.
#[derive(Debug, Clone)]
pub struct IpAllocator {
    next: u32,
    by_pod: BTreeMap<String, Ipv4Addr>,
    used: BTreeSet<u32>,
}

impl Default for IpAllocator {
    fn default() -> Self {
        Self {
            next: FIRST,
            by_pod: BTreeMap::new(),
            used: BTreeSet::new(),
        }
    }
}

impl IpAllocator {
    /// The pod's address, allocating one if it has none. `None` when all are in use.
    pub fn allocate(&mut self, pod_uid: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.by_pod.get(pod_uid) {
            return Some(*ip);
        }
        for _ in FIRST..=LAST {
            let candidate = self.next;
            self.next = if self.next >= LAST { FIRST } else { self.next + 1 };
            // Skip network/broadcast-looking addresses (x.x.x.0 and x.x.x.255).
            let last_octet = candidate & 0xff;
            if last_octet == 0 || last_octet == 255 || self.used.contains(&candidate) {
                continue;
            }
            self.used.insert(candidate);
            let ip = Ipv4Addr::from(candidate);
            self.by_pod.insert(pod_uid.to_string(), ip);
            return Some(ip);
        }
        None
    }

    /// The pod's address, if it has one.
    pub fn get(&self, pod_uid: &str) -> Option<Ipv4Addr> {
        self.by_pod.get(pod_uid).copied()
    }

    /// Frees the pod's address.
    pub fn release(&mut self, pod_uid: &str) {
        if let Some(ip) = self.by_pod.remove(pod_uid) {
            self.used.remove(&u32::from(ip));
        }
    }

    /// How many addresses are in use.
    pub fn in_use(&self) -> usize {
        self.by_pod.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_distinct_stable_addresses_starting_at_dot_two() {
        let mut ipam = IpAllocator::default();
        let a = ipam.allocate("a").unwrap();
        let b = ipam.allocate("b").unwrap();
        assert_eq!(a, Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(b, Ipv4Addr::new(127, 0, 0, 3));
        assert_eq!(ipam.allocate("a"), Some(a), "stable per pod");
        assert_eq!(ipam.get("b"), Some(b));
    }

    #[test]
    fn released_addresses_are_reused_only_after_the_others() {
        let mut ipam = IpAllocator::default();
        let a = ipam.allocate("a").unwrap();
        ipam.release("a");
        assert_eq!(ipam.in_use(), 0);
        let b = ipam.allocate("b").unwrap();
        assert_ne!(a, b, "round-robin: not immediately reused");
    }

    #[test]
    fn skips_dot_zero_and_dot_255_and_wraps_around() {
        let mut ipam = IpAllocator {
            next: u32::from(Ipv4Addr::new(127, 0, 0, 254)),
            ..Default::default()
        };
        assert_eq!(ipam.allocate("x"), Some(Ipv4Addr::new(127, 0, 0, 254)));
        assert_eq!(ipam.allocate("y"), Some(Ipv4Addr::new(127, 0, 1, 1)));
        let mut ipam = IpAllocator {
            next: LAST,
            ..Default::default()
        };
        assert_eq!(ipam.allocate("last"), Some(Ipv4Addr::new(127, 0, 255, 254)));
        assert_eq!(ipam.allocate("wrapped"), Some(Ipv4Addr::new(127, 0, 0, 2)));
    }
}
