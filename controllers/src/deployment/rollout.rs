//! How a WorkloadDeployment moves from its old replica sets to the one of its current template (pure).
//!
//! `RollingUpdate` follows the Kubernetes Deployment controller: the new set grows while the total of
//! all sets' `replicas` stays within `replicas + maxSurge`; old sets shrink (unavailable replicas first,
//! then oldest sets first) while the available replicas stay at or above `replicas - maxUnavailable`.
//! A replica counts as available when it is Ready and not being deleted, and a set never counts more
//! available replicas than its own `replicas` (so replicas it is about to delete are not leaned on).
//! Without `rollingUpdate` the pace is wasmCloud's: `maxSurge: 100%`, `maxUnavailable: 0`.
//!
//! `Recreate`: every old set goes first; the new set is created once no old Workload exists any more.
//!
//! Old sets are deleted as soon as they have no replicas left.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use weft_crds::deployment::{DeployPolicy, RollingUpdate};

/// One replica set of the deployment, as the rollout sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetView {
    /// The set's name.
    pub name: String,
    /// The hash of its template.
    pub hash: String,
    /// Its `spec.replicas`.
    pub replicas: i32,
    /// Its Workloads not being deleted.
    pub live: i32,
    /// Its Workloads that are Ready and not being deleted.
    pub ready: i32,
    /// All its Workloads, those being deleted included.
    pub total: i32,
    /// Its creation timestamp (older sets shrink first).
    pub created: Option<Timestamp>,
}

impl SetView {
    /// Replicas that count as available: Ready ones, but never more than the set keeps.
    pub fn available(&self) -> i32 {
        self.ready.min(self.replicas).max(0)
    }
}

/// The pace of a rolling update, in replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Replicas allowed above `replicas`.
    pub max_surge: i32,
    /// Replicas of `replicas` allowed to be unavailable.
    pub max_unavailable: i32,
}

/// The strategy of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Rolling update at a pace.
    Rolling(Pace),
    /// Remove everything old, then create the new.
    Recreate,
}

/// Resolves an int-or-percent against `total`: percentages round up (`round_up`) or down.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) if *n >= 0 => Ok(*n),
        IntOrString::Int(n) => Err(format!("{n} is negative")),
        IntOrString::String(s) => {
            let Some(number) = s.strip_suffix('%') else {
                return s
                    .parse::<i32>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| format!("{s:?} is neither a number nor a percentage"));
            };
            let percent: i64 = number
                .parse()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| format!("{s:?} is not a percentage"))?;
            let scaled = percent * i64::from(total.max(0));
            let value = if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            };
            Ok(i32::try_from(value).unwrap_or(i32::MAX))
        }
    }
}

/// The strategy of a deployment with `replicas` replicas. As in Kubernetes, a pace of zero surge and
/// zero unavailability (which the CRD rejects) becomes one unavailable replica, so a rollout can always
/// progress.
pub fn strategy(
    policy: &DeployPolicy,
    rolling: Option<&RollingUpdate>,
    replicas: i32,
) -> Result<Strategy, String> {
    if *policy == DeployPolicy::Recreate {
        return Ok(Strategy::Recreate);
    }
    let surge = rolling
        .and_then(|r| r.max_surge.clone())
        .unwrap_or(IntOrString::String("100%".into()));
    let unavailable = rolling
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or(IntOrString::Int(0));
    let max_surge = scaled_value(&surge, replicas, true).map_err(|e| format!("maxSurge: {e}"))?;
    let mut max_unavailable =
        scaled_value(&unavailable, replicas, false).map_err(|e| format!("maxUnavailable: {e}"))?;
    max_unavailable = max_unavailable.min(replicas.max(0));
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    Ok(Strategy::Rolling(Pace {
        max_surge,
        max_unavailable,
    }))
}

/// Where the rollout stands after the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// The new set has every replica Ready and nothing old is left.
    Complete,
    /// Replicas are being replaced or added.
    Progressing,
    /// `Recreate`: waiting for the old Workloads to be gone before creating the new set.
    WaitingForOldReplicas,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutPlan {
    /// Create the set of the current template with this many replicas.
    pub create_new: Option<i32>,
    /// Set these sets' `replicas`.
    pub scale: Vec<(String, i32)>,
    /// Delete these sets.
    pub delete: Vec<String>,
    /// Where the rollout stands.
    pub phase: Phase,
}

/// Decides the next step of a deployment with `replicas` replicas whose current template hashes to
/// `hash`, given its replica sets (the set of `hash`, if any, among them).
pub fn plan(replicas: i32, hash: &str, strategy: Strategy, sets: &[SetView]) -> RolloutPlan {
    let replicas = replicas.max(0);
    let new = sets.iter().find(|s| s.hash == hash);
    let mut old: Vec<&SetView> = sets.iter().filter(|s| s.hash != hash).collect();
    old.sort_by_key(|s| (s.created, s.name.clone()));
    let mut out = RolloutPlan {
        create_new: None,
        scale: Vec::new(),
        delete: Vec::new(),
        phase: Phase::Progressing,
    };
    // Old sets with nothing left go (for `Recreate`, only once their last Workload is gone too, since
    // the new set waits for that).
    let recreate = strategy == Strategy::Recreate;
    let (empty, mut old): (Vec<&SetView>, Vec<&SetView>) = old
        .into_iter()
        .partition(|s| s.replicas == 0 && s.live == 0 && (!recreate || s.total == 0));
    out.delete.extend(empty.iter().map(|s| s.name.clone()));

    match strategy {
        Strategy::Recreate => {
            for s in &old {
                if s.replicas > 0 {
                    out.scale.push((s.name.clone(), 0));
                }
            }
            let old_left: i32 = old.iter().map(|s| s.total).sum();
            match new {
                _ if old_left > 0 => out.phase = Phase::WaitingForOldReplicas,
                None => out.create_new = Some(replicas),
                Some(n) => {
                    if n.replicas != replicas {
                        out.scale.push((n.name.clone(), replicas));
                    }
                    if n.replicas == replicas && n.available() == replicas && n.live == replicas {
                        out.phase = Phase::Complete;
                    }
                }
            }
            out
        }
        Strategy::Rolling(pace) => {
            let all_replicas: i32 = sets.iter().map(|s| s.replicas).sum();
            let Some(new) = new else {
                // Create the new set with what the surge budget allows now.
                let initial = if old.is_empty() {
                    replicas
                } else {
                    (replicas + pace.max_surge - all_replicas).clamp(0, replicas)
                };
                out.create_new = Some(initial);
                return out;
            };
            // 1. Grow (or shrink) the new set within the surge budget.
            if new.replicas > replicas {
                out.scale.push((new.name.clone(), replicas));
                return out;
            }
            if new.replicas < replicas {
                let room = replicas + pace.max_surge - all_replicas;
                let up = room.min(replicas - new.replicas);
                if up > 0 {
                    out.scale.push((new.name.clone(), new.replicas + up));
                    return out;
                }
            }
            // 2. Shrink old sets while enough replicas stay available.
            let old_replicas: i32 = old.iter().map(|s| s.replicas).sum();
            if old_replicas > 0 {
                let min_available = replicas - pace.max_unavailable;
                let new_unavailable = new.replicas - new.available();
                let mut budget = all_replicas - min_available - new_unavailable;
                let mut target: Vec<i32> = old.iter().map(|s| s.replicas).collect();
                // Unavailable old replicas first: removing them costs no availability.
                for (i, s) in old.iter().enumerate() {
                    if budget <= 0 {
                        break;
                    }
                    let unhealthy = (target[i] - s.available()).max(0);
                    let n = unhealthy.min(budget);
                    target[i] -= n;
                    budget -= n;
                }
                // Then available ones, oldest sets first, down to the availability floor.
                let available: i32 = new.available()
                    + old
                        .iter()
                        .zip(&target)
                        .map(|(s, t)| s.ready.min(*t).max(0))
                        .sum::<i32>();
                let mut down = (available - min_available).max(0);
                for (i, _) in old.iter().enumerate() {
                    if down <= 0 {
                        break;
                    }
                    let n = target[i].min(down);
                    target[i] -= n;
                    down -= n;
                }
                for (s, t) in old.iter().zip(target) {
                    if t != s.replicas {
                        out.scale.push((s.name.clone(), t));
                    }
                }
            }
            old.retain(|s| s.replicas > 0 || s.live > 0);
            if old.is_empty()
                && new.replicas == replicas
                && new.available() == replicas
                && new.live == replicas
            {
                out.phase = Phase::Complete;
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, hash: &str, replicas: i32, ready: i32, created: i64) -> SetView {
        SetView {
            name: name.into(),
            hash: hash.into(),
            replicas,
            live: replicas.max(ready),
            ready,
            total: replicas.max(ready),
            created: Some(Timestamp::from_second(created).unwrap()),
        }
    }

    fn pace(max_surge: i32, max_unavailable: i32) -> Strategy {
        Strategy::Rolling(Pace {
            max_surge,
            max_unavailable,
        })
    }

    fn int(n: i32) -> IntOrString {
        IntOrString::Int(n)
    }

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn percentages_round_surge_up_and_unavailability_down() {
        assert_eq!(scaled_value(&pct("25%"), 10, true), Ok(3));
        assert_eq!(scaled_value(&pct("25%"), 10, false), Ok(2));
        assert_eq!(scaled_value(&pct("100%"), 7, true), Ok(7));
        assert_eq!(scaled_value(&int(2), 10, true), Ok(2));
        assert_eq!(scaled_value(&pct("2"), 10, true), Ok(2));
        assert!(scaled_value(&pct("x%"), 10, true).is_err());
        assert!(scaled_value(&int(-1), 10, true).is_err());
    }

    #[test]
    fn the_default_pace_is_wasmclouds_and_zero_zero_becomes_one_unavailable() {
        assert_eq!(strategy(&DeployPolicy::RollingUpdate, None, 4), Ok(pace(4, 0)));
        let ru = RollingUpdate {
            max_surge: Some(int(0)),
            max_unavailable: Some(int(0)),
        };
        assert_eq!(
            strategy(&DeployPolicy::RollingUpdate, Some(&ru), 4),
            Ok(pace(0, 1))
        );
        let ru = RollingUpdate {
            max_surge: Some(pct("25%")),
            max_unavailable: Some(pct("25%")),
        };
        assert_eq!(
            strategy(&DeployPolicy::RollingUpdate, Some(&ru), 10),
            Ok(pace(3, 2))
        );
        assert_eq!(strategy(&DeployPolicy::Recreate, None, 3), Ok(Strategy::Recreate));
    }

    #[test]
    fn a_first_rollout_creates_the_set_at_full_size() {
        let p = plan(3, "new", pace(1, 0), &[]);
        assert_eq!(p.create_new, Some(3));
        let p = plan(3, "new", Strategy::Recreate, &[]);
        assert_eq!(p.create_new, Some(3));
    }

    /// Simulates a rollout to completion: after every plan the replica sets reach their sizes and
    /// `ready_per_step` of the new replicas become Ready, the way a cluster would; asserts the surge and
    /// availability bounds at every step. Returns the number of steps.
    fn simulate(replicas: i32, strategy: Strategy, max_total: i32, min_ready: i32) -> usize {
        let mut sets = vec![set("old", "old", replicas, replicas, 1)];
        for step in 0..200 {
            let p = plan(replicas, "new", strategy, &sets);
            if let Some(n) = p.create_new {
                sets.push(set("new", "new", n, 0, 2));
            }
            for (name, n) in &p.scale {
                let s = sets.iter_mut().find(|s| &s.name == name).unwrap();
                s.replicas = *n;
                // Scaling down removes replicas at once; scaling up adds not-Ready ones.
                s.ready = s.ready.min(*n);
                s.live = *n;
                s.total = *n;
            }
            sets.retain(|s| !p.delete.contains(&s.name));
            let total: i32 = sets.iter().map(|s| s.live).sum();
            let ready: i32 = sets.iter().map(|s| s.ready).sum();
            assert!(
                total <= max_total,
                "step {step}: {total} replicas > {max_total}: {sets:?}"
            );
            assert!(
                ready >= min_ready,
                "step {step}: {ready} ready < {min_ready}: {sets:?}"
            );
            if p.phase == Phase::Complete {
                assert_eq!(sets.len(), 1);
                return step;
            }
            // One new replica becomes Ready per step.
            if let Some(s) = sets.iter_mut().find(|s| s.name == "new")
                && s.ready < s.live
            {
                s.ready += 1;
            }
        }
        panic!("the rollout did not complete: {sets:?}");
    }

    #[test]
    fn rolling_updates_honour_surge_and_unavailability_at_every_step() {
        // maxSurge 1, maxUnavailable 0: never more than 11, never fewer than 10 ready.
        simulate(10, pace(1, 0), 11, 10);
        // maxSurge 0, maxUnavailable 1: never more than 10, never fewer than 9 ready.
        simulate(10, pace(0, 1), 10, 9);
        // 25 % / 25 % of 8: up to 10, at least 6 ready.
        simulate(8, pace(2, 2), 10, 6);
        // wasmCloud's pace: all new first, never below full availability.
        simulate(5, pace(5, 0), 10, 5);
        // A single replica with maxSurge 1.
        simulate(1, pace(1, 0), 2, 1);
    }

    #[test]
    fn a_new_set_that_never_gets_ready_keeps_the_old_replicas() {
        let mut sets = vec![set("old", "old", 3, 3, 1)];
        let p = plan(3, "new", pace(1, 0), &sets);
        assert_eq!(p.create_new, Some(1));
        sets.push(set("new", "new", 1, 0, 2));
        let p = plan(3, "new", pace(1, 0), &sets);
        assert!(
            p.scale.is_empty(),
            "nothing moves while the new replica is not Ready: {p:?}"
        );
        assert_eq!(p.phase, Phase::Progressing);
    }

    #[test]
    fn unavailable_old_replicas_are_removed_first() {
        // Old set: 3 replicas, 1 Ready. maxUnavailable 0, maxSurge 1, new set 1 Ready.
        let sets = vec![set("old", "old", 3, 1, 1), set("new", "new", 1, 1, 2)];
        let p = plan(3, "new", pace(1, 0), &sets);
        // Budget: 4 total - 3 min available - 0 new unavailable = 1 → one unhealthy old replica goes.
        assert_eq!(p.scale, vec![("old".to_string(), 2)]);
    }

    #[test]
    fn oldest_sets_shrink_first_and_empty_ones_are_deleted() {
        let sets = vec![
            set("older", "a", 1, 1, 1),
            set("old", "b", 1, 1, 2),
            set("new", "new", 2, 2, 3),
            set("gone", "c", 0, 0, 0),
        ];
        let p = plan(2, "new", pace(1, 0), &sets);
        assert_eq!(p.delete, vec!["gone".to_string()]);
        assert_eq!(p.scale, vec![("older".to_string(), 0), ("old".to_string(), 0)]);
    }

    #[test]
    fn scaling_without_a_template_change_resizes_the_current_set() {
        let sets = vec![set("cur", "h", 2, 2, 1)];
        assert_eq!(
            plan(5, "h", pace(1, 0), &sets).scale,
            vec![("cur".to_string(), 5)]
        );
        assert_eq!(
            plan(1, "h", pace(1, 0), &sets).scale,
            vec![("cur".to_string(), 1)]
        );
        assert_eq!(plan(2, "h", pace(1, 0), &sets).phase, Phase::Complete);
        let p = plan(0, "h", pace(1, 0), &[set("cur", "h", 0, 0, 1)]);
        assert_eq!(p.phase, Phase::Complete, "zero replicas is a complete rollout");
    }

    #[test]
    fn recreate_removes_every_old_replica_before_creating_the_new_set() {
        let sets = vec![set("old", "old", 3, 3, 1)];
        let p = plan(3, "new", Strategy::Recreate, &sets);
        assert_eq!(p.scale, vec![("old".to_string(), 0)]);
        assert_eq!(p.create_new, None);
        assert_eq!(p.phase, Phase::WaitingForOldReplicas);
        // Scaled to 0 but its Workloads are still being deleted: still waiting.
        let mut draining = set("old", "old", 0, 0, 1);
        draining.total = 2;
        let p = plan(3, "new", Strategy::Recreate, &[draining]);
        assert_eq!((p.create_new, p.phase), (None, Phase::WaitingForOldReplicas));
        // All gone: the old set is deleted and the new one created at full size.
        let p = plan(3, "new", Strategy::Recreate, &[set("old", "old", 0, 0, 1)]);
        assert_eq!(p.delete, vec!["old".to_string()]);
        assert_eq!(p.create_new, Some(3));
    }
}
