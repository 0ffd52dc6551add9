//! Random but reproducible clusters and workloads: a mix of labels, environments, readiness, load and
//! advertised interfaces, and workloads with selectors, environments, interface needs, replica sets and
//! resource hints, so every filter and scorer has work to do.

use std::collections::BTreeMap;

use weft_scheduler_api::{
    HostInfo, ResourceHints, Snapshot, SnapshotUpdate, SplitMix64, WitInterface, WorkloadRequest,
};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TEAMS: [&str; 3] = ["team-a", "team-b", "team-c"];

fn below(rng: &mut SplitMix64, n: u64) -> u64 {
    rng.next_u64() % n
}

fn chance(rng: &mut SplitMix64, percent: u64) -> bool {
    below(rng, 100) < percent
}

fn between(rng: &mut SplitMix64, low: u64, high: u64) -> u64 {
    low + below(rng, high - low + 1)
}

fn wit(text: &str) -> WitInterface {
    text.parse().expect("fixture interfaces are well formed")
}

/// One random host, named `host-<index>` with a random ID.
pub fn host(rng: &mut SplitMix64, index: usize) -> HostInfo {
    let zone = ["a", "b", "c"][below(rng, 3) as usize];
    let group = if chance(rng, 10) { "gpu" } else { "default" };
    let environment = match below(rng, 10) {
        0..=5 => "",
        6 | 7 => "team-a",
        8 => "team-b",
        _ => "edge",
    };
    let memory_total_bytes = [8, 16, 32, 64][below(rng, 4) as usize] * GIB;
    let workload_count = below(rng, 30);
    let mut interfaces = Vec::new();
    if chance(rng, 50) {
        interfaces.push(wit("wasi:keyvalue/store,atomics@0.2.0"));
    } else if chance(rng, 20) {
        interfaces.push(wit("wasi:keyvalue/store@0.1.0"));
    }
    if chance(rng, 30) {
        interfaces.push(wit("wasi:blobstore/blobstore@0.2.0"));
    }
    if chance(rng, 60) {
        interfaces.push(wit("wasi:config/store@0.2.0"));
    }
    if chance(rng, 20) {
        interfaces.push(wit("wasmcloud:messaging/consumer,producer@0.2.0"));
    }
    HostInfo {
        id: format!("{:016x}", rng.next_u64()),
        name: format!("host-{index}"),
        labels: BTreeMap::from([("zone".into(), zone.into()), ("hostgroup".into(), group.into())]),
        ready: chance(rng, 95),
        draining: chance(rng, 2),
        environment: environment.into(),
        cpu_usage_bp: between(rng, 300, 9500) as u32,
        memory_total_bytes,
        memory_free_bytes: memory_total_bytes / 100 * between(rng, 5, 95),
        workload_count,
        component_count: workload_count * between(rng, 1, 3),
        interfaces,
        replica_sets: BTreeMap::new(),
    }
}

/// `count` random hosts.
pub fn hosts(rng: &mut SplitMix64, count: usize) -> Vec<HostInfo> {
    (0..count).map(|index| host(rng, index)).collect()
}

/// A snapshot of `count` random hosts with the default settings.
pub fn snapshot(rng: &mut SplitMix64, count: usize) -> Snapshot {
    Snapshot::new(hosts(rng, count)).expect("random IDs do not collide")
}

/// `count` random workloads; consecutive groups of five share a replica set.
pub fn workloads(rng: &mut SplitMix64, count: usize) -> Vec<WorkloadRequest> {
    (0..count)
        .map(|index| {
            let set = index / 5;
            let namespace = TEAMS[set % TEAMS.len()];
            let mut host_selector = BTreeMap::new();
            if chance(rng, 15) {
                host_selector.insert("zone".into(), ["a", "b", "c"][below(rng, 3) as usize].into());
            }
            if chance(rng, 5) {
                host_selector.insert("hostgroup".into(), "gpu".into());
            }
            let environment = match below(rng, 20) {
                0 | 1 => Some(namespace.to_owned()),
                2 => Some("edge".to_owned()),
                _ => None,
            };
            let mut host_interfaces = Vec::new();
            if chance(rng, 50) {
                host_interfaces.push(wit("wasi:http/incoming-handler@0.2.3"));
            }
            if chance(rng, 25) {
                host_interfaces.push(wit("wasi:keyvalue/store@0.2.0"));
            }
            if chance(rng, 10) {
                host_interfaces.push(wit("wasi:blobstore/blobstore@0.2.0"));
            }
            if chance(rng, 3) {
                host_interfaces.push(wit("wasi:keyvalue/watch@0.2.0"));
            }
            let resources = ResourceHints {
                memory_bytes: chance(rng, 70).then(|| between(rng, 8, 64) * MIB),
                cpu_bp: chance(rng, 30).then(|| between(rng, 0, 50) as u32),
            };
            WorkloadRequest {
                namespace: namespace.into(),
                name: format!("w-{index}"),
                scheduler_name: None,
                host_selector,
                environment,
                host_interfaces,
                replica_set: chance(rng, 80).then(|| format!("{namespace}/rs-{set}")),
                component_count: between(rng, 1, 3),
                resources,
            }
        })
        .collect()
}

/// A random change to `snapshot`: a fresh heartbeat for a host, a host leaving, or a new host.
pub fn host_update(rng: &mut SplitMix64, snapshot: &Snapshot, next_index: usize) -> SnapshotUpdate {
    let hosts = snapshot.hosts();
    let roll = below(rng, 100);
    if hosts.is_empty() || roll >= 85 {
        return SnapshotUpdate::UpsertHost(host(rng, next_index));
    }
    let existing = &hosts[below(rng, hosts.len() as u64) as usize];
    if roll >= 70 {
        return SnapshotUpdate::RemoveHost {
            host_id: existing.id.clone(),
        };
    }
    let mut refreshed = existing.clone();
    refreshed.cpu_usage_bp = between(rng, 300, 9500) as u32;
    refreshed.memory_free_bytes = refreshed.memory_total_bytes / 100 * between(rng, 5, 95);
    if chance(rng, 10) {
        refreshed.ready = !refreshed.ready;
    }
    SnapshotUpdate::UpsertHost(refreshed)
}
