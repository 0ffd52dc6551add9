//! The scheduling snapshot from the caches, as a pure function: one `HostInfo` per Host, with its
//! readiness (Ready True and its pod not terminating), its facts from the status, and its workload and
//! replica-set counts recomputed from Workloads' `status.hostId` (a heartbeat's counts lag behind the
//! placements the operator has just made).

use std::collections::{BTreeMap, HashSet};

use weft_crds::names::condition_types;
use weft_crds::{Host, Workload};
use weft_scheduler_api::{HostInfo, WitInterface, percent_to_bp};

/// The key a Workload's replica set is counted under: `namespace/name` of its controlling
/// WorkloadReplicaSet, if any.
pub fn replica_set_of(w: &Workload) -> Option<String> {
    let ns = w.metadata.namespace.as_deref()?;
    w.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == "WorkloadReplicaSet")
        .map(|o| format!("{ns}/{}", o.name))
}

/// One `HostInfo` per Host. `draining` holds the hostnames (pod IPs) of host pods that are terminating;
/// `excluded` the host IDs this decision must avoid (e.g. one that just failed to start the Workload);
/// `interfaces_of` gives the interfaces a host advertised in its heartbeat (by host ID; empty when
/// unknown, which leaves the scheduler's implicit WASI interfaces).
pub fn host_infos<'a>(
    hosts: impl IntoIterator<Item = &'a Host>,
    workloads: impl IntoIterator<Item = &'a Workload>,
    draining: &HashSet<String>,
    excluded: &HashSet<String>,
    interfaces_of: &dyn Fn(&str) -> Vec<WitInterface>,
) -> Vec<HostInfo> {
    let mut counts: BTreeMap<&str, (u64, u64, BTreeMap<String, u64>)> = BTreeMap::new();
    for w in workloads {
        let Some(id) = w.status.as_ref().and_then(|s| s.host_id.as_deref()) else {
            continue;
        };
        let entry = counts.entry(id).or_default();
        entry.0 += 1;
        entry.1 += w.spec.components.as_ref().map_or(0, |c| c.len() as u64);
        if let Some(rs) = replica_set_of(w) {
            *entry.2.entry(rs).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for h in hosts {
        if h.spec.host_id.is_empty() {
            continue;
        }
        let status = h.status.as_ref();
        let ready = status
            .is_some_and(|s| weft_crds::condition::is_true(&s.conditions, condition_types::READY))
            && h.metadata.deletion_timestamp.is_none()
            && !excluded.contains(&h.spec.host_id);
        let pod_draining = h.spec.hostname.as_ref().is_some_and(|n| draining.contains(n));
        let (workload_count, component_count, replica_sets) =
            counts.get(h.spec.host_id.as_str()).cloned().unwrap_or_default();
        out.push(HostInfo {
            id: h.spec.host_id.clone(),
            name: h.metadata.name.clone().unwrap_or_default(),
            labels: h.metadata.labels.clone().unwrap_or_default(),
            ready,
            draining: pod_draining,
            environment: h.spec.environment.clone().unwrap_or_default(),
            cpu_usage_bp: status
                .and_then(|s| s.system_cpu_usage.as_deref())
                .and_then(|c| c.parse::<f64>().ok())
                .map_or(0, percent_to_bp),
            memory_total_bytes: status
                .and_then(|s| s.system_memory_total)
                .map_or(0, |v| v.max(0) as u64),
            memory_free_bytes: status
                .and_then(|s| s.system_memory_free)
                .map_or(0, |v| v.max(0) as u64),
            workload_count,
            component_count,
            interfaces: interfaces_of(&h.spec.host_id),
            replica_sets,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use weft_crds::condition::{Condition, ConditionStatus};
    use weft_crds::{HostFields, HostStatus, WorkloadStatus};

    fn host(name: &str, id: &str, ready: bool, hostname: &str) -> Host {
        let mut h = Host::new(
            name,
            HostFields {
                host_id: id.into(),
                hostname: Some(hostname.into()),
                ..Default::default()
            },
        );
        h.status = Some(HostStatus {
            conditions: vec![Condition::new(
                "Ready",
                if ready {
                    ConditionStatus::True
                } else {
                    ConditionStatus::Unknown
                },
            )],
            system_cpu_usage: Some("12.5".into()),
            system_memory_total: Some(100),
            system_memory_free: Some(40),
            ..Default::default()
        });
        h
    }

    fn workload(ns: &str, host: Option<&str>, rs: Option<&str>) -> Workload {
        let mut w = Workload::new("w", Default::default());
        w.metadata.namespace = Some(ns.into());
        w.status = Some(WorkloadStatus {
            host_id: host.map(str::to_string),
            ..Default::default()
        });
        w.metadata.owner_references = rs.map(|name| {
            vec![OwnerReference {
                kind: "WorkloadReplicaSet".into(),
                name: name.into(),
                controller: Some(true),
                ..Default::default()
            }]
        });
        w
    }

    #[test]
    fn counts_come_from_placements_and_readiness_from_conditions_and_pods() {
        let hosts = [
            host("a", "id-a", true, "10.0.0.1"),
            host("b", "id-b", false, "10.0.0.2"),
            host("c", "id-c", true, "10.0.0.3"),
        ];
        let workloads = [
            workload("shop", Some("id-a"), Some("cart")),
            workload("shop", Some("id-a"), Some("cart")),
            workload("shop", Some("id-c"), None),
            workload("shop", None, Some("cart")),
        ];
        let draining: HashSet<String> = ["10.0.0.3".to_string()].into();
        let infos = host_infos(&hosts, &workloads, &draining, &HashSet::new(), &|_| Vec::new());
        assert_eq!(infos.len(), 3);
        assert!(infos[0].ready && !infos[0].draining);
        assert_eq!(infos[0].workload_count, 2);
        assert_eq!(infos[0].replica_sets["shop/cart"], 2);
        assert_eq!(infos[0].cpu_usage_bp, 1250);
        assert_eq!(infos[0].memory_free_bytes, 40);
        assert!(!infos[1].ready);
        assert!(infos[2].draining);
        assert_eq!(infos[2].workload_count, 1);
        let excluded: HashSet<String> = ["id-a".to_string()].into();
        assert!(!host_infos(&hosts, &workloads, &draining, &excluded, &|_| Vec::new())[0].ready);
    }

    #[test]
    fn hosts_carry_the_interfaces_their_heartbeats_advertise() {
        let hosts = [
            host("a", "id-a", true, "10.0.0.1"),
            host("b", "id-b", true, "10.0.0.2"),
        ];
        let keyvalue = WitInterface {
            namespace: "wasi".into(),
            package: "keyvalue".into(),
            interfaces: vec!["store".into()],
            version: Some("0.2.0-draft".into()),
        };
        let advertised = |id: &str| {
            if id == "id-b" {
                vec![keyvalue.clone()]
            } else {
                Vec::new()
            }
        };
        let infos = host_infos(&hosts, [], &HashSet::new(), &HashSet::new(), &advertised);
        assert!(infos[0].interfaces.is_empty());
        assert_eq!(infos[1].interfaces, std::slice::from_ref(&keyvalue));
    }
}
