//! Policies by name, and the [`Scheduler`] the operator calls: it picks each workload's policy
//! (`schedulerName`, else the default) and keeps one session per policy in use.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{Placement, Snapshot, SnapshotUpdate, WorkloadRequest};
use crate::pipeline::ScheduleError;
use crate::session::{Policy, Session};

/// A policy name that is not registered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("unknown scheduling policy {name:?} (available: {})", known.join(", "))]
pub struct UnknownPolicy {
    /// The name asked for.
    pub name: String,
    /// The registered names.
    pub known: Vec<String>,
}

/// A policy could not be registered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Another policy already has this name.
    #[error("a scheduling policy named {0:?} is already registered")]
    Duplicate(String),
    /// The name is empty.
    #[error("a scheduling policy needs a non-empty name")]
    EmptyName,
    /// Workloads could not select the name: `schedulerName` must be a DNS subdomain.
    #[error(
        "scheduling policy name {0:?} is not a DNS subdomain (lowercase letters, digits, '-' and '.', at most \
         253 characters), so no Workload could select it"
    )]
    InvalidName(String),
}

/// Whether `name` is a DNS subdomain (RFC 1123), the form `schedulerName` takes.
pub fn is_dns_subdomain(name: &str) -> bool {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)
}

/// Policies by name.
#[derive(Clone, Default)]
pub struct PolicyRegistry {
    policies: BTreeMap<String, Arc<dyn Policy>>,
}

impl fmt::Debug for PolicyRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.policies.keys()).finish()
    }
}

impl PolicyRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        PolicyRegistry::default()
    }

    /// Registers a policy under its own name.
    pub fn register(&mut self, policy: Arc<dyn Policy>) -> Result<(), RegistryError> {
        let name = policy.name().to_owned();
        if name.is_empty() {
            return Err(RegistryError::EmptyName);
        }
        if !is_dns_subdomain(&name) {
            return Err(RegistryError::InvalidName(name));
        }
        if self.policies.contains_key(&name) {
            return Err(RegistryError::Duplicate(name));
        }
        self.policies.insert(name, policy);
        Ok(())
    }

    /// The policy called `name`.
    pub fn get(&self, name: &str) -> Result<&Arc<dyn Policy>, UnknownPolicy> {
        self.policies.get(name).ok_or_else(|| UnknownPolicy {
            name: name.to_owned(),
            known: self.names(),
        })
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.policies.keys().cloned().collect()
    }
}

/// The operator's entry point: a registry, a default policy, the current snapshot, and a session per policy
/// in use. Not thread-safe by itself; the caller serialises decisions (e.g. behind a mutex), which also keeps
/// each decision's view of the counts exact.
pub struct Scheduler {
    registry: PolicyRegistry,
    default_policy: String,
    snapshot: Snapshot,
    seed: u64,
    sessions: BTreeMap<String, Box<dyn Session>>,
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("registry", &self.registry)
            .field("default_policy", &self.default_policy)
            .field("hosts", &self.snapshot.hosts().len())
            .field("open_sessions", &self.sessions.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Scheduler {
    /// A scheduler whose default policy is `default_policy` (typically from an operator flag); fails if that
    /// policy is not registered, so a bad flag stops the operator at start-up.
    pub fn new(
        registry: PolicyRegistry,
        default_policy: &str,
        snapshot: Snapshot,
        seed: u64,
    ) -> Result<Self, UnknownPolicy> {
        registry.get(default_policy)?;
        Ok(Scheduler {
            registry,
            default_policy: default_policy.to_owned(),
            snapshot,
            seed,
            sessions: BTreeMap::new(),
        })
    }

    /// The default policy's name.
    pub fn default_policy(&self) -> &str {
        &self.default_policy
    }

    /// The registry.
    pub fn registry(&self) -> &PolicyRegistry {
        &self.registry
    }

    /// The current snapshot, with every placement made so far counted.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The policy `request` asks for: its `scheduler_name` if set and non-empty, else the default.
    pub fn policy_name<'a>(&'a self, request: &'a WorkloadRequest) -> Result<&'a str, UnknownPolicy> {
        let name = request.scheduler_name.as_deref().filter(|name| !name.is_empty());
        let name = name.unwrap_or(&self.default_policy);
        self.registry.get(name)?;
        Ok(name)
    }

    /// Places a workload with its policy and counts it in every open session.
    pub fn place(&mut self, request: &WorkloadRequest) -> Result<Placement, ScheduleError> {
        let name = self
            .policy_name(request)
            .map_err(ScheduleError::UnknownPolicy)?
            .to_owned();
        if !self.sessions.contains_key(&name) {
            let policy = self.registry.get(&name).map_err(ScheduleError::UnknownPolicy)?;
            let session = policy.open(self.snapshot.clone(), self.seed)?;
            self.sessions.insert(name.clone(), session);
        }
        let session = self.sessions.get_mut(&name).expect("session was just opened");
        let placement = session.place(request)?;
        let assumed = SnapshotUpdate::Assume {
            host_id: placement.host_id.clone(),
            footprint: request.footprint(),
        };
        self.snapshot.apply(&assumed).map_err(ScheduleError::Snapshot)?;
        self.broadcast(Some(&name), std::slice::from_ref(&assumed));
        Ok(placement)
    }

    /// Applies updates to the snapshot and every open session, stopping at the first invalid update (the
    /// ones before it stay applied).
    pub fn apply(&mut self, updates: &[SnapshotUpdate]) -> Result<(), ScheduleError> {
        let (applied, result) = self.snapshot.apply_all(updates);
        self.broadcast(None, &updates[..applied]);
        result.map_err(ScheduleError::Snapshot)
    }

    /// Sends updates to every open session but `skip`. A session that fails to take them is closed; the next
    /// decision with its policy reopens it from the snapshot, so no session drifts from the truth.
    fn broadcast(&mut self, skip: Option<&str>, updates: &[SnapshotUpdate]) {
        if updates.is_empty() {
            return;
        }
        self.sessions
            .retain(|name, session| Some(name.as_str()) == skip || session.apply(updates).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{Context, Scorer};
    use crate::model::HostInfo;
    use crate::pipeline::Pipeline;

    struct MostWorkloads;
    impl Scorer for MostWorkloads {
        fn name(&self) -> &str {
            "most"
        }
        fn score(&self, _: &Context<'_>, host: &HostInfo) -> i64 {
            host.workload_count as i64
        }
    }

    struct FewestWorkloads;
    impl Scorer for FewestWorkloads {
        fn name(&self) -> &str {
            "fewest"
        }
        fn score(&self, _: &Context<'_>, host: &HostInfo) -> i64 {
            -(host.workload_count as i64)
        }
    }

    fn registry() -> PolicyRegistry {
        let mut registry = PolicyRegistry::new();
        registry
            .register(Arc::new(
                Pipeline::builder("pack").scorer(1, MostWorkloads).build(),
            ))
            .unwrap();
        registry
            .register(Arc::new(
                Pipeline::builder("spread").scorer(1, FewestWorkloads).build(),
            ))
            .unwrap();
        registry
    }

    fn snapshot() -> Snapshot {
        let hosts = (0..4)
            .map(|i| HostInfo {
                id: format!("h{i}"),
                ready: true,
                ..HostInfo::default()
            })
            .collect();
        Snapshot::new(hosts).unwrap()
    }

    fn request(scheduler: Option<&str>) -> WorkloadRequest {
        WorkloadRequest {
            scheduler_name: scheduler.map(Into::into),
            ..WorkloadRequest::default()
        }
    }

    #[test]
    fn registry_rejects_duplicates_and_names_the_known_policies() {
        let mut registry = registry();
        let duplicate = registry
            .register(Arc::new(Pipeline::builder("pack").build()))
            .unwrap_err();
        assert_eq!(
            duplicate.to_string(),
            "a scheduling policy named \"pack\" is already registered"
        );
        assert_eq!(
            registry.register(Arc::new(Pipeline::builder("").build())),
            Err(RegistryError::EmptyName)
        );
        let invalid = registry
            .register(Arc::new(Pipeline::builder("My_Policy").build()))
            .unwrap_err();
        assert_eq!(invalid, RegistryError::InvalidName("My_Policy".into()));
        assert!(invalid.to_string().contains("no Workload could select it"));
        let unknown = registry.get("nope").err().unwrap();
        assert_eq!(
            unknown.to_string(),
            "unknown scheduling policy \"nope\" (available: pack, spread)"
        );
    }

    #[test]
    fn policy_names_are_dns_subdomains() {
        for good in ["spread", "resource-aware", "acme.io", "a", "p2.example-1"] {
            assert!(is_dns_subdomain(good), "{good}");
        }
        let long_label = "x".repeat(64);
        let long_name = "a.".repeat(127);
        for bad in [
            "",
            "Spread",
            "-a",
            "a-",
            "a..b",
            "a_b",
            ".a",
            "a/b",
            &long_label,
            &long_name,
        ] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
    }

    #[test]
    fn an_unknown_default_fails_at_start_up() {
        let error = Scheduler::new(registry(), "binpak", snapshot(), 0).unwrap_err();
        assert_eq!(error.name, "binpak");
    }

    #[test]
    fn workloads_choose_their_policy_and_every_session_sees_every_placement() {
        let mut scheduler = Scheduler::new(registry(), "spread", snapshot(), 3).unwrap();
        assert_eq!(scheduler.policy_name(&request(None)).unwrap(), "spread");
        assert_eq!(scheduler.policy_name(&request(Some(""))).unwrap(), "spread");
        assert_eq!(scheduler.policy_name(&request(Some("pack"))).unwrap(), "pack");

        let packed = scheduler.place(&request(Some("pack"))).unwrap().host_id;
        for _ in 0..3 {
            assert_eq!(scheduler.place(&request(Some("pack"))).unwrap().host_id, packed);
        }
        // The spread session opens after four placements on `packed` and must avoid it.
        for _ in 0..3 {
            assert_ne!(scheduler.place(&request(None)).unwrap().host_id, packed);
        }
        // And the pack session saw the spread placements: every host now has a workload or four.
        assert_eq!(scheduler.place(&request(Some("pack"))).unwrap().host_id, packed);
        let counts: Vec<u64> = scheduler
            .snapshot()
            .hosts()
            .iter()
            .map(|h| h.workload_count)
            .collect();
        assert_eq!(counts.iter().sum::<u64>(), 8);
        assert!(counts.iter().all(|&c| c == 1 || c == 5), "{counts:?}");

        let error = scheduler.place(&request(Some("gpu"))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown scheduling policy \"gpu\" (available: pack, spread)"
        );
    }

    #[test]
    fn updates_reach_open_sessions() {
        let mut scheduler = Scheduler::new(registry(), "spread", snapshot(), 3).unwrap();
        scheduler.place(&request(None)).unwrap();
        let removals: Vec<_> = ["h0", "h1", "h2"]
            .iter()
            .map(|id| SnapshotUpdate::RemoveHost {
                host_id: id.to_string(),
            })
            .collect();
        scheduler.apply(&removals).unwrap();
        for _ in 0..3 {
            assert_eq!(scheduler.place(&request(None)).unwrap().host_id, "h3");
        }
    }
}
