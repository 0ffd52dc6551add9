//! What the scheduler decides over: hosts, the snapshot that holds them, and a workload's needs.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Basis points in one hundred percent: CPU and memory figures are integers in `0..=10_000`.
pub const FULL_BP: u32 = 10_000;

/// Converts a percentage as hosts report it (`system_cpu_usage`, e.g. `42.5`) to basis points, clamped to
/// `0..=10_000`. Not-a-number reads as zero (no data).
pub fn percent_to_bp(percent: f64) -> u32 {
    if percent.is_nan() {
        return 0;
    }
    (percent * 100.0).round().clamp(0.0, f64::from(FULL_BP)) as u32
}

/// A WIT package and some of its interfaces, e.g. `wasi:keyvalue/store,atomics@0.2.0`.
///
/// Hosts advertise what they provide with these (the heartbeat's `imports` and `exports`); workloads list what
/// they need (`spec.hostInterfaces`). An empty `interfaces` list on a requirement asks only for the package.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WitInterface {
    /// WIT namespace, e.g. `wasi`.
    pub namespace: String,
    /// WIT package, e.g. `keyvalue`.
    pub package: String,
    /// Interface names inside the package, e.g. `store`.
    pub interfaces: Vec<String>,
    /// Package version (semver), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl WitInterface {
    /// `namespace:package`, without interfaces or version.
    pub fn package_ref(&self) -> String {
        format!("{}:{}", self.namespace, self.package)
    }
}

impl fmt::Display for WitInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.namespace, self.package)?;
        if !self.interfaces.is_empty() {
            write!(f, "/{}", self.interfaces.join(","))?;
        }
        if let Some(version) = &self.version {
            write!(f, "@{version}")?;
        }
        Ok(())
    }
}

/// The text was not of the form `namespace:package[/iface[,iface...]][@version]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid WIT interface {0:?}: expected namespace:package[/interface[,interface...]][@version]")]
pub struct ParseWitInterfaceError(String);

impl FromStr for WitInterface {
    type Err = ParseWitInterfaceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || ParseWitInterfaceError(text.to_owned());
        let (rest, version) = match text.split_once('@') {
            Some((rest, version)) if !version.is_empty() => (rest, Some(version.to_owned())),
            Some(_) => return Err(invalid()),
            None => (text, None),
        };
        let (package_ref, interfaces) = match rest.split_once('/') {
            Some((package_ref, list)) => {
                let interfaces: Vec<String> = list.split(',').map(str::to_owned).collect();
                if interfaces.iter().any(String::is_empty) {
                    return Err(invalid());
                }
                (package_ref, interfaces)
            }
            None => (rest, Vec::new()),
        };
        let (namespace, package) = package_ref.split_once(':').ok_or_else(invalid)?;
        if namespace.is_empty() || package.is_empty() {
            return Err(invalid());
        }
        Ok(WitInterface {
            namespace: namespace.to_owned(),
            package: package.to_owned(),
            interfaces,
            version,
        })
    }
}

/// One host as the scheduler sees it, built from a `Host` object and its latest heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HostInfo {
    /// The host ID (`Host.hostId`); unique within a snapshot, and what a placement names.
    pub id: String,
    /// The `Host` object's name, for messages.
    pub name: String,
    /// Host labels, matched by a workload's `hostSelector`.
    pub labels: BTreeMap<String, String>,
    /// The host's Ready condition is True.
    pub ready: bool,
    /// The host is being drained (its pod is terminating): no new workloads.
    pub draining: bool,
    /// Where the host runs (`Host.environment`; for host pods, the pod's namespace). Empty when unset.
    pub environment: String,
    /// System CPU usage in basis points (`8050` = 80.5 %), from the heartbeat's `system_cpu_usage`.
    pub cpu_usage_bp: u32,
    /// Total memory in bytes (`system_memory_total`); 0 when unknown.
    pub memory_total_bytes: u64,
    /// Free memory in bytes (`system_memory_free`).
    pub memory_free_bytes: u64,
    /// Workloads on the host, in any state (`workload_count`).
    pub workload_count: u64,
    /// Components of running workloads on the host (`component_count`).
    pub component_count: u64,
    /// Interfaces the host provides: the union of its heartbeat's `imports` and `exports`.
    pub interfaces: Vec<WitInterface>,
    /// Workloads on this host per replica set (the `WorkloadReplicaSet` as `namespace/name`), for spreading.
    pub replica_sets: BTreeMap<String, u64>,
}

impl HostInfo {
    /// Memory in use, in basis points of the total, after taking `extra_bytes` more; 0 when the total is unknown.
    pub fn memory_used_bp(&self, extra_bytes: u64) -> u32 {
        if self.memory_total_bytes == 0 {
            return 0;
        }
        let free = self.memory_free_bytes.min(self.memory_total_bytes);
        let used = u128::from(self.memory_total_bytes - free) + u128::from(extra_bytes);
        let bp = used * u128::from(FULL_BP) / u128::from(self.memory_total_bytes);
        bp.min(u128::from(u32::MAX)) as u32
    }

    /// Workloads of `replica_set` already on this host.
    pub fn replicas_of(&self, replica_set: Option<&str>) -> u64 {
        replica_set
            .and_then(|set| self.replica_sets.get(set))
            .copied()
            .unwrap_or(0)
    }

    fn assume(&mut self, footprint: &WorkloadFootprint) {
        self.workload_count = self.workload_count.saturating_add(1);
        self.component_count = self.component_count.saturating_add(footprint.component_count);
        if let Some(set) = &footprint.replica_set {
            let count = self.replica_sets.entry(set.clone()).or_default();
            *count = count.saturating_add(1);
        }
        if let Some(bytes) = footprint.resources.memory_bytes {
            self.memory_free_bytes = self.memory_free_bytes.saturating_sub(bytes);
        }
        if let Some(bp) = footprint.resources.cpu_bp {
            self.cpu_usage_bp = self.cpu_usage_bp.saturating_add(bp).min(FULL_BP);
        }
    }

    fn forget(&mut self, footprint: &WorkloadFootprint) {
        self.workload_count = self.workload_count.saturating_sub(1);
        self.component_count = self.component_count.saturating_sub(footprint.component_count);
        if let Some(set) = &footprint.replica_set
            && let Some(count) = self.replica_sets.get_mut(set)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.replica_sets.remove(set);
            }
        }
        if let Some(bytes) = footprint.resources.memory_bytes {
            self.memory_free_bytes = self
                .memory_free_bytes
                .saturating_add(bytes)
                .min(self.memory_total_bytes);
        }
        if let Some(bp) = footprint.resources.cpu_bp {
            self.cpu_usage_bp = self.cpu_usage_bp.saturating_sub(bp);
        }
    }
}

/// Optional resource estimates for one workload; placing it moves the host's figures by these amounts until the
/// next heartbeat replaces them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResourceHints {
    /// Memory the workload is expected to use, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// CPU the workload is expected to add to the host's system usage, in basis points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_bp: Option<u32>,
}

/// What a workload asks of its host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkloadRequest {
    /// The Workload's namespace.
    pub namespace: String,
    /// The Workload's name.
    pub name: String,
    /// The policy the Workload names (`spec.schedulerName`); `None` or empty means the operator's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<String>,
    /// Labels a host must carry (`spec.hostSelector`), all of them, with these exact values.
    pub host_selector: BTreeMap<String, String>,
    /// `spec.environment`; see [`crate::resolve_environment`] for how it combines with `allowSharedHosts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Interfaces the host must provide (`spec.hostInterfaces`).
    pub host_interfaces: Vec<WitInterface>,
    /// The replica set this workload belongs to (`namespace/name` of its `WorkloadReplicaSet`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_set: Option<String>,
    /// Number of components the workload runs (its service counts as one).
    pub component_count: u64,
    /// Optional resource estimates.
    pub resources: ResourceHints,
}

impl WorkloadRequest {
    /// What placing this workload adds to a host.
    pub fn footprint(&self) -> WorkloadFootprint {
        WorkloadFootprint {
            replica_set: self.replica_set.clone(),
            component_count: self.component_count,
            resources: self.resources,
        }
    }
}

/// What one workload adds to its host's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkloadFootprint {
    /// The workload's replica set, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_set: Option<String>,
    /// Its component count.
    pub component_count: u64,
    /// Its resource estimates.
    pub resources: ResourceHints,
}

/// A change to a snapshot, applied in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SnapshotUpdate {
    /// Adds a host or replaces it (same `id`) with fresh figures, e.g. after a heartbeat.
    UpsertHost(HostInfo),
    /// Removes a host (it stopped reporting or was deleted).
    #[serde(rename_all = "camelCase")]
    RemoveHost {
        /// The host ID.
        host_id: String,
    },
    /// Counts a workload placed on a host outside this scheduler (e.g. pinned with `spec.hostId`).
    #[serde(rename_all = "camelCase")]
    Assume {
        /// The host ID.
        host_id: String,
        /// What the workload adds.
        footprint: WorkloadFootprint,
    },
    /// Takes a workload back off a host (it was deleted, or starting it failed).
    #[serde(rename_all = "camelCase")]
    Forget {
        /// The host ID.
        host_id: String,
        /// What the workload had added.
        footprint: WorkloadFootprint,
    },
}

/// A snapshot could not be built or updated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "hostId")]
pub enum SnapshotError {
    /// Two hosts share one ID.
    #[error("host ID {0:?} appears more than once in the snapshot")]
    DuplicateHost(String),
    /// An update names a host the snapshot does not have.
    #[error("host ID {0:?} is not in the snapshot")]
    UnknownHost(String),
}

/// The hosts a decision is made over, ordered by ID so that decisions do not depend on the order the caller
/// listed them in, plus the operator settings that filters read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "SnapshotData")]
pub struct Snapshot {
    hosts: Vec<HostInfo>,
    allow_shared_hosts: bool,
    implicit_interfaces: Vec<WitInterface>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotData {
    hosts: Vec<HostInfo>,
    #[serde(default = "default_allow_shared_hosts")]
    allow_shared_hosts: bool,
    #[serde(default = "wasi_builtin_interfaces")]
    implicit_interfaces: Vec<WitInterface>,
}

fn default_allow_shared_hosts() -> bool {
    true
}

impl TryFrom<SnapshotData> for Snapshot {
    type Error = SnapshotError;

    fn try_from(data: SnapshotData) -> Result<Self, Self::Error> {
        Ok(Snapshot::new(data.hosts)?
            .with_allow_shared_hosts(data.allow_shared_hosts)
            .with_implicit_interfaces(data.implicit_interfaces))
    }
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            hosts: Vec::new(),
            allow_shared_hosts: true,
            implicit_interfaces: wasi_builtin_interfaces(),
        }
    }
}

/// The WASI 0.2 interfaces every Wasmtime-based host (Weft's and wasmCloud's) provides without listing them in
/// its heartbeat, which only names the interfaces of its plugins. The default for
/// [`Snapshot::implicit_interfaces`].
pub fn wasi_builtin_interfaces() -> Vec<WitInterface> {
    [
        "wasi:cli/environment,exit,stderr,stdin,stdout,terminal-input,terminal-output,terminal-stderr,\
         terminal-stdin,terminal-stdout@0.2.0",
        "wasi:clocks/monotonic-clock,wall-clock@0.2.0",
        "wasi:filesystem/preopens,types@0.2.0",
        "wasi:http/types,incoming-handler,outgoing-handler@0.2.0",
        "wasi:io/error,poll,streams@0.2.0",
        "wasi:random/insecure,insecure-seed,random@0.2.0",
        "wasi:sockets/instance-network,ip-name-lookup,network,tcp,tcp-create-socket,udp,udp-create-socket@0.2.0",
    ]
    .into_iter()
    .map(|text| text.parse().expect("built-in interface list is well formed"))
    .collect()
}

impl Snapshot {
    /// A snapshot of `hosts` (in any order) with the defaults: shared hosts allowed, WASI built-ins implicit.
    pub fn new(mut hosts: Vec<HostInfo>) -> Result<Self, SnapshotError> {
        hosts.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(pair) = hosts.windows(2).find(|pair| pair[0].id == pair[1].id) {
            return Err(SnapshotError::DuplicateHost(pair[0].id.clone()));
        }
        Ok(Snapshot {
            hosts,
            ..Snapshot::default()
        })
    }

    /// Sets the operator's `allowSharedHosts` (default true): whether a workload may run on hosts of another
    /// environment than its namespace.
    pub fn with_allow_shared_hosts(mut self, allow: bool) -> Self {
        self.allow_shared_hosts = allow;
        self
    }

    /// Sets the interfaces every host provides without advertising them (default
    /// [`wasi_builtin_interfaces`]).
    pub fn with_implicit_interfaces(mut self, interfaces: Vec<WitInterface>) -> Self {
        self.implicit_interfaces = interfaces;
        self
    }

    /// The hosts, ordered by ID.
    pub fn hosts(&self) -> &[HostInfo] {
        &self.hosts
    }

    /// Whether workloads may run on hosts of another environment than their namespace.
    pub fn allow_shared_hosts(&self) -> bool {
        self.allow_shared_hosts
    }

    /// Interfaces every host provides without advertising them.
    pub fn implicit_interfaces(&self) -> &[WitInterface] {
        &self.implicit_interfaces
    }

    /// The host with this ID.
    pub fn host(&self, id: &str) -> Option<&HostInfo> {
        self.position(id).map(|index| &self.hosts[index])
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.hosts.binary_search_by(|host| host.id.as_str().cmp(id)).ok()
    }

    fn host_mut(&mut self, id: &str) -> Result<&mut HostInfo, SnapshotError> {
        match self.position(id) {
            Some(index) => Ok(&mut self.hosts[index]),
            None => Err(SnapshotError::UnknownHost(id.to_owned())),
        }
    }

    /// Counts a workload on a host.
    pub fn assume(&mut self, host_id: &str, footprint: &WorkloadFootprint) -> Result<(), SnapshotError> {
        self.host_mut(host_id)?.assume(footprint);
        Ok(())
    }

    /// Takes a workload back off a host.
    pub fn forget(&mut self, host_id: &str, footprint: &WorkloadFootprint) -> Result<(), SnapshotError> {
        self.host_mut(host_id)?.forget(footprint);
        Ok(())
    }

    /// Adds or replaces a host.
    pub fn upsert(&mut self, host: HostInfo) {
        match self.hosts.binary_search_by(|existing| existing.id.cmp(&host.id)) {
            Ok(index) => self.hosts[index] = host,
            Err(index) => self.hosts.insert(index, host),
        }
    }

    /// Removes a host; false if it was not there.
    pub fn remove(&mut self, host_id: &str) -> bool {
        match self.position(host_id) {
            Some(index) => {
                self.hosts.remove(index);
                true
            }
            None => false,
        }
    }

    /// Applies one update. Removing an absent host is not an error (it is already gone).
    pub fn apply(&mut self, update: &SnapshotUpdate) -> Result<(), SnapshotError> {
        match update {
            SnapshotUpdate::UpsertHost(host) => self.upsert(host.clone()),
            SnapshotUpdate::RemoveHost { host_id } => {
                self.remove(host_id);
            }
            SnapshotUpdate::Assume { host_id, footprint } => self.assume(host_id, footprint)?,
            SnapshotUpdate::Forget { host_id, footprint } => self.forget(host_id, footprint)?,
        }
        Ok(())
    }

    /// Applies updates in order, stopping at the first error; returns how many were applied.
    pub fn apply_all(&mut self, updates: &[SnapshotUpdate]) -> (usize, Result<(), SnapshotError>) {
        for (applied, update) in updates.iter().enumerate() {
            if let Err(error) = self.apply(update) {
                return (applied, Err(error));
            }
        }
        (updates.len(), Ok(()))
    }
}

/// Where a workload goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// The chosen host's ID (for `status.hostId`).
    pub host_id: String,
    /// The chosen host's name.
    pub host_name: String,
    /// The chosen host's total score.
    pub score: i64,
    /// How many hosts passed every filter.
    pub feasible_hosts: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wit_interface_round_trips_through_text() {
        for text in [
            "wasi:http/incoming-handler,outgoing-handler@0.2.0",
            "wasi:keyvalue@0.2.0",
            "a:b/c",
        ] {
            let parsed: WitInterface = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
        let parsed: WitInterface = "wasi:keyvalue/store@0.2.0-draft".parse().unwrap();
        assert_eq!(parsed.namespace, "wasi");
        assert_eq!(parsed.package, "keyvalue");
        assert_eq!(parsed.interfaces, ["store"]);
        assert_eq!(parsed.version.as_deref(), Some("0.2.0-draft"));
        for bad in [
            "wasi",
            ":http",
            "wasi:",
            "wasi:http/",
            "wasi:http/a,,b",
            "wasi:http@",
        ] {
            assert!(bad.parse::<WitInterface>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn percent_to_bp_rounds_and_clamps() {
        assert_eq!(percent_to_bp(80.5), 8050);
        assert_eq!(percent_to_bp(33.333), 3333);
        assert_eq!(percent_to_bp(-1.0), 0);
        assert_eq!(percent_to_bp(250.0), 10_000);
        assert_eq!(percent_to_bp(f64::NAN), 0);
    }

    fn host(id: &str) -> HostInfo {
        HostInfo {
            id: id.into(),
            name: id.into(),
            ready: true,
            ..HostInfo::default()
        }
    }

    #[test]
    fn snapshot_orders_hosts_and_rejects_duplicates() {
        let snapshot = Snapshot::new(vec![host("c"), host("a"), host("b")]).unwrap();
        let ids: Vec<_> = snapshot.hosts().iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(
            Snapshot::new(vec![host("a"), host("b"), host("a")]),
            Err(SnapshotError::DuplicateHost("a".into()))
        );
    }

    #[test]
    fn assume_and_forget_are_inverse() {
        let mut snapshot = Snapshot::new(vec![HostInfo {
            memory_total_bytes: 1000,
            memory_free_bytes: 600,
            cpu_usage_bp: 100,
            ..host("a")
        }])
        .unwrap();
        let before = snapshot.clone();
        let footprint = WorkloadFootprint {
            replica_set: Some("ns/rs".into()),
            component_count: 3,
            resources: ResourceHints {
                memory_bytes: Some(100),
                cpu_bp: Some(50),
            },
        };
        snapshot.assume("a", &footprint).unwrap();
        let a = snapshot.host("a").unwrap();
        assert_eq!(
            (
                a.workload_count,
                a.component_count,
                a.memory_free_bytes,
                a.cpu_usage_bp
            ),
            (1, 3, 500, 150)
        );
        assert_eq!(a.replicas_of(Some("ns/rs")), 1);
        assert_eq!(a.memory_used_bp(0), 5000);
        assert_eq!(a.memory_used_bp(100), 6000);
        snapshot.forget("a", &footprint).unwrap();
        assert_eq!(snapshot, before);
        assert_eq!(
            snapshot.assume("zz", &footprint),
            Err(SnapshotError::UnknownHost("zz".into()))
        );
    }

    #[test]
    fn updates_upsert_remove_and_stop_at_the_first_error() {
        let mut snapshot = Snapshot::new(vec![host("b")]).unwrap();
        let updates = [
            SnapshotUpdate::UpsertHost(host("a")),
            SnapshotUpdate::UpsertHost(HostInfo {
                workload_count: 7,
                ..host("b")
            }),
            SnapshotUpdate::RemoveHost {
                host_id: "nope".into(),
            },
            SnapshotUpdate::Assume {
                host_id: "missing".into(),
                footprint: WorkloadFootprint::default(),
            },
            SnapshotUpdate::UpsertHost(host("c")),
        ];
        let (applied, result) = snapshot.apply_all(&updates);
        assert_eq!(applied, 3);
        assert_eq!(result, Err(SnapshotError::UnknownHost("missing".into())));
        let ids: Vec<_> = snapshot.hosts().iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(snapshot.host("b").unwrap().workload_count, 7);
        assert!(snapshot.remove("a"));
        assert!(!snapshot.remove("a"));
    }

    #[test]
    fn snapshot_json_round_trips_and_validates() {
        let snapshot = Snapshot::new(vec![host("b"), host("a")])
            .unwrap()
            .with_allow_shared_hosts(false);
        let json = serde_json::to_string(&snapshot).unwrap();
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snapshot);
        let minimal: Snapshot = serde_json::from_str(r#"{"hosts":[{"id":"z"},{"id":"y"}]}"#).unwrap();
        assert_eq!(minimal.hosts()[0].id, "y");
        assert!(minimal.allow_shared_hosts());
        assert_eq!(minimal.implicit_interfaces(), wasi_builtin_interfaces());
        let duplicate = serde_json::from_str::<Snapshot>(r#"{"hosts":[{"id":"z"},{"id":"z"}]}"#);
        assert!(duplicate.unwrap_err().to_string().contains("more than once"));
    }
}
