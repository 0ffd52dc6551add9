//! Pure: one loopback address per pod, from a block 127.<k>.0.0/16 (all of 127/8 is local on Linux):
//! 127.k.0.2 up to 127.k.255.254. Each kubelet on a machine uses its own block (see
//! [`super::podnet`]). Addresses are handed out round-robin, so a freed address is reused as late as
//! possible (a pod that just went away may still be named by objects that other components have not
//! cleaned up).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// The first and last pod address of block `k`.
fn bounds(block: u8) -> (u32, u32) {
    (
        u32::from_be_bytes([127, block, 0, 2]),
        u32::from_be_bytes([127, block, 255, 254]),
    )
}

/// Allocates pod IPs, keyed by pod UID.
#[derive(Debug, Clone)]
pub struct IpAllocator {
    first: u32,
    last: u32,
    next: u32,
    by_pod: BTreeMap<String, Ipv4Addr>,
    used: BTreeSet<u32>,
}

impl Default for IpAllocator {
    /// Block 0: 127.0.0.2 to 127.0.255.254.
    fn default() -> Self {
        Self::in_block(0)
    }
}

impl IpAllocator {
    /// Addresses from 127.`block`.0.2 to 127.`block`.255.254.
    pub fn in_block(block: u8) -> Self {
        let (first, last) = bounds(block);
        Self {
            first,
            last,
            next: first,
            by_pod: BTreeMap::new(),
            used: BTreeSet::new(),
        }
    }

    /// The block as a CIDR, `127.<k>.0.0/16`.
    pub fn cidr(&self) -> String {
        let [_, block, _, _] = self.first.to_be_bytes();
        format!("127.{block}.0.0/16")
    }

    /// The pod's address, allocating one if it has none. `None` when all are in use.
    pub fn allocate(&mut self, pod_uid: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.by_pod.get(pod_uid) {
            return Some(*ip);
        }
        for _ in self.first..=self.last {
            let candidate = self.next;
            self.next = if self.next >= self.last {
                self.first
            } else {
                self.next + 1
            };
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
            next: u32::from(Ipv4Addr::new(127, 0, 255, 254)),
            ..Default::default()
        };
        assert_eq!(ipam.allocate("last"), Some(Ipv4Addr::new(127, 0, 255, 254)));
        assert_eq!(ipam.allocate("wrapped"), Some(Ipv4Addr::new(127, 0, 0, 2)));
    }

    #[test]
    fn other_blocks_stay_inside_their_slash_16() {
        let mut ipam = IpAllocator::in_block(7);
        assert_eq!(ipam.cidr(), "127.7.0.0/16");
        assert_eq!(IpAllocator::default().cidr(), "127.0.0.0/16");
        assert_eq!(ipam.allocate("a"), Some(Ipv4Addr::new(127, 7, 0, 2)));
        ipam.next = u32::from(Ipv4Addr::new(127, 7, 255, 254));
        assert_eq!(ipam.allocate("b"), Some(Ipv4Addr::new(127, 7, 255, 254)));
        assert_eq!(
            ipam.allocate("c"),
            Some(Ipv4Addr::new(127, 7, 0, 3)),
            "wraps within the block"
        );
    }
}
