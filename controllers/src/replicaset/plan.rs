//! What a WorkloadReplicaSet should do next, decided from what the caches show (pure, no I/O).
//!
//! Rules, in order:
//! 1. Workloads being deleted count for nothing.
//! 2. A Workload of the current template (its generation annotation equals the template hash, or it has
//!    none) that is not Ready and whose `Sync` has been non-True for longer than the grace period is
//!    replaced (deleted, and a new one created in the same pass).
//! 3. The current-template Workloads are brought to `replicas`: missing ones are created, extra ones
//!    are removed least valuable first (see [`deletion_order`]).
//! 4. Workloads of an older template (an in-place template edit) are kept only while they cover for
//!    current-template replicas that are not Ready yet, so an edit never takes the set below what was
//!    serving; the rest are removed, least valuable first.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use weft_crds::replica_set::ReplicaCounts;

/// One Workload of the replica set, as far as the plan is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// The Workload's name.
    pub name: String,
    /// Its UID (a deletion is made conditional on it).
    pub uid: String,
    /// Its `workload-replica-set-generation` annotation.
    pub generation: Option<String>,
    /// It has a deletion timestamp.
    pub deleting: bool,
    /// Its `Ready` condition is True.
    pub ready: bool,
    /// The host it is placed on (`status.hostId`).
    pub host_id: Option<String>,
    /// Its creation timestamp.
    pub created: Option<Timestamp>,
    /// Since when its `Sync` condition has not been True (`None` when it is True or absent).
    pub unsynced_since: Option<Timestamp>,
}

/// Why a Workload is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// More replicas than `replicas`.
    ScaleDown,
    /// Created from an older template.
    Outdated,
    /// Not in sync for longer than the grace period.
    Unhealthy,
}

impl DeleteReason {
    /// A short label for logs, Events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScaleDown => "scale-down",
            Self::Outdated => "outdated",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// A Workload to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// Its name.
    pub name: String,
    /// Its UID.
    pub uid: String,
    /// Why.
    pub reason: DeleteReason,
}

/// The input of [`plan`].
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// `spec.replicas`.
    pub replicas: i32,
    /// The hash of the current template.
    pub hash: &'a str,
    /// The Workloads the set controls.
    pub workloads: &'a [Replica],
    /// Ready replicas of this set and its sibling sets (same deployment) per host ID; a host with more
    /// of them loses one first, so replicas stay spread.
    pub related_per_host: &'a HashMap<String, usize>,
    /// The current time.
    pub now: Timestamp,
    /// How long a Workload may stay out of sync before it is replaced.
    pub grace: Duration,
}

/// What to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// How many Workloads to create from the current template.
    pub create: usize,
    /// The Workloads to delete.
    pub delete: Vec<Deletion>,
    /// The counts for `status.replicas`, as they stand before this plan is carried out.
    pub counts: ReplicaCounts,
    /// When the next out-of-sync Workload reaches the end of its grace period.
    pub recheck_after: Option<Duration>,
}

fn is_current(r: &Replica, hash: &str) -> bool {
    r.generation.as_deref().is_none_or(|g| g == hash)
}

/// Sorts `replicas` least valuable first: unplaced, then not Ready, then on a host with more related
/// replicas, then newest, then by name (so the order is total and stable).
pub fn deletion_order(replicas: &mut [&Replica], related_per_host: &HashMap<String, usize>) {
    replicas.sort_by_key(|r| {
        let on_host = r
            .host_id
            .as_ref()
            .and_then(|h| related_per_host.get(h))
            .copied()
            .unwrap_or(0);
        (
            r.host_id.is_some(),
            r.ready,
            Reverse(on_host),
            Reverse(r.created),
            r.name.clone(),
        )
    });
}

/// Decides what the replica set does next.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let want = usize::try_from(input.replicas.max(0)).unwrap_or(0);
    let live: Vec<&Replica> = input.workloads.iter().filter(|r| !r.deleting).collect();
    let mut delete = Vec::new();
    let mut recheck_after: Option<Duration> = None;

    let (current, mut outdated): (Vec<&Replica>, Vec<&Replica>) =
        live.iter().copied().partition(|r| is_current(r, input.hash));
    let mut healthy = Vec::with_capacity(current.len());
    for r in current {
        let overdue = match (r.ready, r.unsynced_since) {
            (false, Some(since)) => {
                let age = input.now.duration_since(since);
                let age = Duration::try_from(age).unwrap_or_default();
                if age >= input.grace {
                    true
                } else {
                    let left = input.grace - age;
                    recheck_after = Some(recheck_after.map_or(left, |d| d.min(left)));
                    false
                }
            }
            _ => false,
        };
        if overdue {
            delete.push(Deletion {
                name: r.name.clone(),
                uid: r.uid.clone(),
                reason: DeleteReason::Unhealthy,
            });
        } else {
            healthy.push(r);
        }
    }

    let mut create = 0;
    if healthy.len() < want {
        create = want - healthy.len();
    } else if healthy.len() > want {
        deletion_order(&mut healthy, input.related_per_host);
        let extra = healthy.len() - want;
        delete.extend(healthy.drain(..extra).map(|r| Deletion {
            name: r.name.clone(),
            uid: r.uid.clone(),
            reason: DeleteReason::ScaleDown,
        }));
    }

    // Outdated replicas cover for current ones that are not Ready yet.
    let ready_current = healthy.iter().filter(|r| r.ready).count();
    let keep = want.saturating_sub(ready_current).min(outdated.len());
    deletion_order(&mut outdated, input.related_per_host);
    let drop = outdated.len() - keep;
    delete.extend(outdated.drain(..drop).map(|r| Deletion {
        name: r.name.clone(),
        uid: r.uid.clone(),
        reason: DeleteReason::Outdated,
    }));

    let current = i32::try_from(live.len()).unwrap_or(i32::MAX);
    let ready = i32::try_from(live.iter().filter(|r| r.ready).count()).unwrap_or(i32::MAX);
    Plan {
        create,
        delete,
        counts: ReplicaCounts {
            expected: Some(input.replicas.max(0)),
            current: Some(current),
            ready: Some(ready),
            unavailable: Some(current - ready),
        },
        recheck_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "abc";

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn replica(name: &str, ready: bool, host: Option<&str>, created: i64) -> Replica {
        Replica {
            name: name.into(),
            uid: format!("uid-{name}"),
            generation: Some(HASH.into()),
            deleting: false,
            ready,
            host_id: host.map(str::to_string),
            created: Some(at(created)),
            unsynced_since: None,
        }
    }

    fn run(replicas: i32, workloads: &[Replica]) -> Plan {
        run_with(replicas, workloads, &HashMap::new(), 1_000)
    }

    fn run_with(replicas: i32, workloads: &[Replica], related: &HashMap<String, usize>, now: i64) -> Plan {
        plan(&PlanInput {
            replicas,
            hash: HASH,
            workloads,
            related_per_host: related,
            now: at(now),
            grace: Duration::from_secs(60),
        })
    }

    fn deleted(p: &Plan) -> Vec<(&str, DeleteReason)> {
        p.delete.iter().map(|d| (d.name.as_str(), d.reason)).collect()
    }

    #[test]
    fn missing_replicas_are_created_and_counts_reflect_what_exists() {
        let w = [replica("a", true, Some("h1"), 1)];
        let p = run(3, &w);
        assert_eq!(p.create, 2);
        assert!(p.delete.is_empty());
        assert_eq!(
            p.counts,
            ReplicaCounts {
                expected: Some(3),
                current: Some(1),
                ready: Some(1),
                unavailable: Some(0)
            }
        );
    }

    #[test]
    fn deleting_workloads_count_for_nothing() {
        let mut gone = replica("a", true, Some("h1"), 1);
        gone.deleting = true;
        let p = run(1, &[gone]);
        assert_eq!(p.create, 1);
        assert_eq!(p.counts.current, Some(0));
    }

    #[test]
    fn scale_down_removes_unplaced_then_not_ready_then_crowded_then_newest() {
        let w = [
            replica("ready-old", true, Some("h1"), 1),
            replica("ready-new", true, Some("h2"), 5),
            replica("not-ready", false, Some("h3"), 2),
            replica("unplaced", false, None, 3),
        ];
        assert_eq!(
            deleted(&run(1, &w)),
            vec![
                ("unplaced", DeleteReason::ScaleDown),
                ("not-ready", DeleteReason::ScaleDown),
                ("ready-new", DeleteReason::ScaleDown)
            ]
        );
        // A host that holds more replicas of the deployment gives one up first, even an older one.
        let related = HashMap::from([("h1".to_string(), 2), ("h2".to_string(), 1)]);
        let w = [
            replica("on-h1", true, Some("h1"), 1),
            replica("on-h2", true, Some("h2"), 5),
        ];
        assert_eq!(
            deleted(&run_with(1, &w, &related, 1_000)),
            vec![("on-h1", DeleteReason::ScaleDown)]
        );
    }

    #[test]
    fn out_of_sync_replicas_are_replaced_only_after_the_grace_period() {
        let mut stuck = replica("stuck", false, Some("h1"), 1);
        stuck.unsynced_since = Some(at(950));
        let w = [stuck.clone(), replica("ok", true, Some("h2"), 1)];
        let p = run_with(2, &w, &HashMap::new(), 1_000);
        assert!(p.delete.is_empty(), "50 s of a 60 s grace period");
        assert_eq!(p.recheck_after, Some(Duration::from_secs(10)));
        let p = run_with(2, &w, &HashMap::new(), 1_011);
        assert_eq!(deleted(&p), vec![("stuck", DeleteReason::Unhealthy)]);
        assert_eq!(p.create, 1, "and replaced in the same pass");
        // A Ready Workload is never replaced for its Sync condition alone.
        let mut flapping = replica("flap", true, Some("h1"), 1);
        flapping.unsynced_since = Some(at(0));
        assert!(run(1, &[flapping]).delete.is_empty());
    }

    #[test]
    fn outdated_replicas_cover_for_current_ones_until_those_are_ready() {
        let mut old_a = replica("old-a", true, Some("h1"), 1);
        old_a.generation = Some("older".into());
        let mut old_b = replica("old-b", true, Some("h2"), 2);
        old_b.generation = Some("older".into());
        // Template edited in place: two new ones are created, both old ones stay.
        let p = run(2, &[old_a.clone(), old_b.clone()]);
        assert_eq!(p.create, 2);
        assert!(p.delete.is_empty());
        // One new one Ready: one old one goes (the newer of the two).
        let w = [
            old_a.clone(),
            old_b.clone(),
            replica("new-a", true, Some("h1"), 10),
            replica("new-b", false, Some("h2"), 10),
        ];
        assert_eq!(deleted(&run(2, &w)), vec![("old-b", DeleteReason::Outdated)]);
        // Both Ready: both old ones go.
        let w = [
            old_a,
            old_b,
            replica("new-a", true, Some("h1"), 10),
            replica("new-b", true, Some("h2"), 10),
        ];
        let p = run(2, &w);
        assert_eq!(p.delete.len(), 2);
        assert!(p.delete.iter().all(|d| d.reason == DeleteReason::Outdated));
        assert_eq!(p.create, 0);
    }

    #[test]
    fn workloads_without_a_generation_are_counted_as_current() {
        let mut adopted = replica("adopted", true, Some("h1"), 1);
        adopted.generation = None;
        let p = run(1, &[adopted]);
        assert_eq!((p.create, p.delete.len()), (0, 0));
    }

    #[test]
    fn zero_replicas_removes_everything_and_negative_is_zero() {
        let w = [replica("a", true, Some("h1"), 1), replica("b", false, None, 2)];
        assert_eq!(run(0, &w).delete.len(), 2);
        let p = run(-1, &w);
        assert_eq!(p.delete.len(), 2);
        assert_eq!(p.counts.expected, Some(0));
    }
}
