//! The route table, built from what the caches show (pure, no I/O): each hostname a Ready Workload is
//! served for → the `hostname:httpPort` of the hosts that run one.
//!
//! A replica is routed to only while all of these hold: its Workload is Ready and not being deleted, its
//! Host is Ready and not being deleted, and the host pod whose IP is the Host's hostname (if one is
//! known) is not terminating. The moment any of them changes the replica leaves the table, before the
//! pod finalizer lets the pod go and before the operator stops the workload (`--workload-drain-delay`);
//! requests already sent finish on their connections.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use weft_crds::{Host, Workload};

/// Where requests for a hostname can go: one host's ingress.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Upstream {
    /// `hostname:httpPort` of the host (its pod IP and ingress port).
    pub authority: String,
    /// The host's ID.
    pub host_id: String,
    /// The workload ID of one Ready replica on that host (sent as `X-Workload-Id`).
    pub workload_id: String,
}

/// The upstreams of one hostname, sorted by authority (so rebuilding an unchanged world gives an equal
/// table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The hostname.
    pub hostname: String,
    /// One entry per host; a host running several replicas of the hostname balances them itself.
    pub upstreams: Vec<Upstream>,
}

/// Hostname → route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    routes: HashMap<String, Arc<Route>>,
}

impl RouteTable {
    /// The route for a routing key (see [`routing_key`]).
    pub fn get(&self, key: &str) -> Option<&Arc<Route>> {
        self.routes.get(key)
    }

    /// The number of hostnames routed.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether nothing is routed.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The number of (hostname, upstream) pairs.
    pub fn upstream_count(&self) -> usize {
        self.routes.values().map(|r| r.upstreams.len()).sum()
    }

    /// The routed hostnames, sorted.
    pub fn hostnames(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.routes.keys().map(String::as_str).collect();
        names.sort();
        names
    }
}

/// Builds the table. `terminating_pod_ips` holds the IPs of host pods that have a deletion timestamp.
pub fn build<'a>(
    hosts: impl IntoIterator<Item = &'a Host>,
    workloads: impl IntoIterator<Item = &'a Workload>,
    terminating_pod_ips: &HashSet<String>,
) -> RouteTable {
    let mut authorities: HashMap<&str, String> = HashMap::new();
    for h in hosts {
        let routable = h.metadata.deletion_timestamp.is_none() && h.is_ready() && !h.spec.host_id.is_empty();
        let (Some(hostname), Some(port)) = (h.spec.hostname.as_deref(), h.spec.http_port) else {
            continue;
        };
        if !routable || hostname.is_empty() || port == 0 || terminating_pod_ips.contains(hostname) {
            continue;
        }
        let authority = if hostname.contains(':') {
            format!("[{hostname}]:{port}")
        } else {
            format!("{hostname}:{port}")
        };
        authorities.insert(h.spec.host_id.as_str(), authority);
    }
    let mut by_name: BTreeMap<String, BTreeSet<Upstream>> = BTreeMap::new();
    for w in workloads {
        let status = w.status.as_ref();
        if w.metadata.deletion_timestamp.is_some() || !w.is_ready() {
            continue;
        }
        let Some(host_id) = status.and_then(|s| s.host_id.as_deref()) else {
            continue;
        };
        let Some(authority) = authorities.get(host_id) else {
            continue;
        };
        let workload_id = status
            .and_then(|s| s.workload_id.clone())
            .or_else(|| w.metadata.uid.clone())
            .unwrap_or_default();
        let ns = w.metadata.namespace.as_deref().unwrap_or_default();
        for name in w.spec.http_hostnames(ns) {
            let upstreams = by_name.entry(name).or_default();
            // One entry per host: keep the first replica's ID.
            if !upstreams.iter().any(|u| &u.authority == authority) {
                upstreams.insert(Upstream {
                    authority: authority.clone(),
                    host_id: host_id.to_string(),
                    workload_id: workload_id.clone(),
                });
            }
        }
    }
    RouteTable {
        routes: by_name
            .into_iter()
            .map(|(hostname, upstreams)| {
                let route = Route {
                    hostname: hostname.clone(),
                    upstreams: upstreams.into_iter().collect(),
                };
                (hostname, Arc::new(route))
            })
            .collect(),
    }
}

/// The routing key of a `Host` header (or request authority): without its port, lowercased, without a
/// trailing dot; IPv6 literals without brackets. `None` when there is nothing usable. Borrowed (no
/// allocation) when the name is lowercase already, as nearly every client sends it.
pub fn routing_key(value: &str) -> Option<Cow<'_, str>> {
    let value = value.trim();
    let host = if let Some(rest) = value.strip_prefix('[') {
        rest.split_once(']')?.0
    } else {
        match value.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            Some(_) => return None,
            None => value,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty()
        || host
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return None;
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use weft_crds::condition::{Condition, ConditionStatus};
    use weft_crds::workload::{ConfigLayer, HostInterface};
    use weft_crds::{HostFields, HostStatus, WorkloadSpec, WorkloadStatus};

    fn host(id: &str, ip: &str, ready: bool) -> Host {
        let mut h = Host::new(
            &format!("host-{id}"),
            HostFields {
                host_id: id.into(),
                hostname: Some(ip.into()),
                http_port: Some(9191),
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
            ..Default::default()
        });
        h
    }

    fn workload(name: &str, hostname: &str, host_id: &str, ready: bool) -> Workload {
        let mut w = Workload::new(
            name,
            WorkloadSpec {
                host_interfaces: Some(vec![HostInterface {
                    namespace: "wasi".into(),
                    package: "http".into(),
                    interfaces: vec!["incoming-handler".into()],
                    config_layer: ConfigLayer {
                        config: Some([("host".to_string(), hostname.to_string())].into()),
                        ..Default::default()
                    },
                    ..Default::default()
                }]),
                ..Default::default()
            },
        );
        w.metadata.namespace = Some("shop".into());
        w.status = Some(WorkloadStatus {
            conditions: vec![Condition::new(
                "Ready",
                if ready {
                    ConditionStatus::True
                } else {
                    ConditionStatus::False
                },
            )],
            host_id: Some(host_id.into()),
            workload_id: Some(format!("id-{name}")),
            ..Default::default()
        });
        w
    }

    fn authorities(t: &RouteTable, name: &str) -> Vec<String> {
        t.get(name)
            .map(|r| r.upstreams.iter().map(|u| u.authority.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn ready_replicas_on_ready_hosts_are_routed_by_hostname() {
        let hosts = [host("h1", "10.0.0.1", true), host("h2", "10.0.0.2", true)];
        let ws = [
            workload("a", "hello.test", "h1", true),
            workload("b", "hello.test", "h2", true),
            workload("c", "Other.Test", "h1", true),
            workload("d", "hello.test", "h1", true),
        ];
        let t = build(&hosts, &ws, &HashSet::new());
        assert_eq!(t.hostnames(), vec!["hello.test", "other.test"]);
        assert_eq!(
            authorities(&t, "hello.test"),
            vec!["10.0.0.1:9191", "10.0.0.2:9191"]
        );
        assert_eq!(t.upstream_count(), 3, "one entry per host and hostname");
        assert_eq!(t.get("hello.test").unwrap().upstreams[0].workload_id, "id-a");
    }

    #[test]
    fn anything_not_ready_or_going_away_is_left_out() {
        let now = Some(Time(Timestamp::now()));
        let mut deleting_host = host("h3", "10.0.0.3", true);
        deleting_host.metadata.deletion_timestamp = now.clone();
        let hosts = [
            host("h1", "10.0.0.1", true),
            host("h2", "10.0.0.2", false),
            deleting_host,
            host("h4", "10.0.0.4", true),
        ];
        let mut deleting = workload("gone", "x.test", "h1", true);
        deleting.metadata.deletion_timestamp = now;
        let ws = [
            workload("not-ready", "x.test", "h1", false),
            deleting,
            workload("on-unready-host", "x.test", "h2", true),
            workload("on-deleting-host", "x.test", "h3", true),
            workload("on-terminating-pod", "x.test", "h4", true),
            workload("on-unknown-host", "x.test", "h9", true),
        ];
        let t = build(&hosts, &ws, &HashSet::from(["10.0.0.4".to_string()]));
        assert!(t.is_empty(), "{t:?}");
        // And the same world with everything healthy routes all of it.
        let t = build(&hosts[..1], &ws[..1], &HashSet::new());
        assert!(t.is_empty(), "a not-Ready workload alone is not routed");
    }

    #[test]
    fn an_unchanged_world_builds_an_equal_table() {
        let hosts = [host("h2", "10.0.0.2", true), host("h1", "10.0.0.1", true)];
        let ws = [
            workload("a", "y.test", "h2", true),
            workload("b", "y.test", "h1", true),
        ];
        let reversed: Vec<Workload> = ws.iter().rev().cloned().collect();
        assert_eq!(
            build(&hosts, &ws, &HashSet::new()),
            build(&hosts, &reversed, &HashSet::new())
        );
    }

    #[test]
    fn routing_keys_drop_the_port_case_and_trailing_dot() {
        assert_eq!(
            routing_key("Hello.Example.com:8080").as_deref(),
            Some("hello.example.com")
        );
        assert_eq!(
            routing_key("hello.example.com.").as_deref(),
            Some("hello.example.com")
        );
        assert_eq!(routing_key("[::1]:80").as_deref(), Some("::1"));
        assert_eq!(routing_key("10.0.0.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(routing_key(""), None);
        assert_eq!(routing_key("a b"), None);
        assert_eq!(routing_key("host:port"), None);
    }
}
