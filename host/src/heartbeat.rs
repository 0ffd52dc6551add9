//! Building the `HostHeartbeat` from the host's identity, its system facts and its workload counts.

use weft_host_api::{HostHeartbeat, StringMap, Timestamp, WitInterface};

use crate::facts::SystemFacts;
use crate::identity::HostIdentity;

/// What a heartbeat says about the host that does not change while it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct HostInfo {
    /// ID and friendly name.
    pub identity: HostIdentity,
    /// Address the host's HTTP port is reachable at (the pod IP in Kubernetes).
    pub hostname: String,
    /// Host version.
    pub version: String,
    /// Labels, including `hostgroup`.
    pub labels: StringMap,
    /// When the host started.
    pub started_at: Timestamp,
    /// The HTTP ingress port.
    pub http_port: u16,
    /// The environment (for Kubernetes host pods: the namespace).
    pub environment: String,
    /// Interfaces the host provides to components.
    pub imports: Vec<WitInterface>,
    /// Interfaces the host calls on components.
    pub exports: Vec<WitInterface>,
}

/// Workload counts at the time of a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkloadCounts {
    /// Workloads in any state.
    pub workloads: u64,
    /// Components of running workloads.
    pub components: u64,
}

/// The heartbeat for `info`, `facts` and `counts`.
pub fn build_heartbeat(info: &HostInfo, facts: &SystemFacts, counts: WorkloadCounts) -> HostHeartbeat {
    HostHeartbeat {
        id: info.identity.id.clone(),
        hostname: info.hostname.clone(),
        friendly_name: info.identity.friendly_name.clone(),
        version: info.version.clone(),
        labels: info.labels.clone(),
        started_at: Some(info.started_at),
        os_arch: facts.os_arch.clone(),
        os_name: facts.os_name.clone(),
        os_kernel: facts.os_kernel.clone(),
        system_cpu_usage: facts.cpu_usage_percent,
        system_memory_total: facts.memory_total,
        system_memory_free: facts.memory_free,
        component_count: counts.components,
        workload_count: counts.workloads,
        imports: info.imports.clone(),
        exports: info.exports.clone(),
        http_port: info.http_port.into(),
        environment: info.environment.clone(),
    }
}

/// The backend's interfaces in the wire form of the heartbeat.
pub fn wire_interfaces(packages: &[weft_runtime::WitPackage]) -> Vec<WitInterface> {
    packages
        .iter()
        .map(|p| WitInterface {
            namespace: p.namespace.clone(),
            package: p.package.clone(),
            version: p.version.clone(),
            interfaces: p.interfaces.clone(),
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_carries_identity_facts_and_counts() {
        let info = HostInfo {
            identity: HostIdentity {
                id: "h-1".into(),
                friendly_name: "calm-otter-0001".into(),
            },
            hostname: "10.0.0.7".into(),
            version: "0.1.0".into(),
            labels: [("hostgroup".to_string(), "edge".to_string())].into(),
            started_at: Timestamp::new(1_777_636_800, 0).unwrap(),
            http_port: 9191,
            environment: "tenant-a".into(),
            imports: wire_interfaces(&[weft_runtime::WitPackage::new(
                "wasi",
                "cli",
                "0.2.0",
                &["environment"],
            )]),
            exports: wire_interfaces(&[weft_runtime::WitPackage::new(
                "wasi",
                "http",
                "0.2.0",
                &["incoming-handler"],
            )]),
        };
        let facts = SystemFacts {
            os_name: "linux".into(),
            os_arch: "x86_64".into(),
            os_kernel: "6.8.0".into(),
            cpu_usage_percent: 12.5,
            memory_total: 1 << 30,
            memory_free: 1 << 29,
        };
        let hb = build_heartbeat(
            &info,
            &facts,
            WorkloadCounts {
                workloads: 3,
                components: 2,
            },
        );
        let json = String::from_utf8(weft_host_api::to_json(&hb).unwrap()).unwrap();
        let expected_prefix = concat!(
            r#"{"id":"h-1","hostname":"10.0.0.7","friendlyName":"calm-otter-0001","version":"0.1.0","#,
            r#""labels":{"hostgroup":"edge"},"startedAt":"2026-05-01T12:00:00Z","osArch":"x86_64","#,
            r#""osName":"linux","osKernel":"6.8.0","systemCpuUsage":12.5,"systemMemoryTotal":"1073741824","#,
            r#""systemMemoryFree":"536870912","componentCount":"2","workloadCount":"3","imports":["#
        );
        assert!(json.starts_with(expected_prefix), "{json}");
        assert!(
            json.ends_with(r#""httpPort":9191,"environment":"tenant-a"}"#),
            "{json}"
        );
        assert!(hb.exports.iter().any(WitInterface::is_http_incoming_handler));
    }
}
