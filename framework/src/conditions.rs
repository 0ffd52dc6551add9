//! Status conditions: `lastTransitionTime` moves only when the status changes, and `observedGeneration`
//! records which spec the condition describes. Generic over any condition type through [`StatusCondition`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// What the helpers need from a condition type (implemented for `metav1.Condition`; CRD condition types
/// implement it too).
pub trait StatusCondition: Clone + PartialEq {
    /// The condition type, e.g. `Ready`.
    fn condition_type(&self) -> &str;
    /// `True`, `False` or `Unknown`.
    fn status(&self) -> &str;
    /// When the status last changed.
    fn last_transition_time(&self) -> Option<Timestamp>;
    /// Sets when the status last changed.
    fn set_last_transition_time(&mut self, at: Timestamp);
    /// Sets the generation the condition was computed from.
    fn set_observed_generation(&mut self, generation: Option<i64>);
}

impl StatusCondition for Condition {
    fn condition_type(&self) -> &str {
        &self.type_
    }

    fn status(&self) -> &str {
        &self.status
    }

    fn last_transition_time(&self) -> Option<Timestamp> {
        Some(self.last_transition_time.0)
    }

    fn set_last_transition_time(&mut self, at: Timestamp) {
        self.last_transition_time = Time(at);
    }

    fn set_observed_generation(&mut self, generation: Option<i64>) {
        self.observed_generation = generation;
    }
}

/// Accessors for a condition type that cannot implement [`StatusCondition`] here (a CRD crate's own
/// condition type: the orphan rule forbids implementing the trait outside either crate).
#[derive(Debug)]
pub struct ConditionFields<C> {
    /// The condition type.
    pub condition_type: fn(&C) -> &str,
    /// The status string.
    pub status: fn(&C) -> &str,
    /// The last transition time.
    pub last_transition_time: fn(&C) -> Option<Timestamp>,
    /// Sets the last transition time.
    pub set_last_transition_time: fn(&mut C, Timestamp),
    /// Sets the observed generation.
    pub set_observed_generation: fn(&mut C, Option<i64>),
}

impl<C: StatusCondition> ConditionFields<C> {
    /// The accessors of a [`StatusCondition`].
    pub fn of_trait() -> Self {
        Self {
            condition_type: C::condition_type,
            status: C::status,
            last_transition_time: C::last_transition_time,
            set_last_transition_time: C::set_last_transition_time,
            set_observed_generation: C::set_observed_generation,
        }
    }
}

/// Sets `new` in `conditions` (replacing the one of the same type) at time `now` for the object's
/// `generation`. Keeps the old `lastTransitionTime` if the status did not change. Returns whether the list
/// changed, i.e. whether a status write is needed.
pub fn set_condition<C: StatusCondition>(
    conditions: &mut Vec<C>,
    new: C,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    set_condition_by(&ConditionFields::of_trait(), conditions, new, generation, now)
}

/// [`set_condition`] through explicit accessors.
pub fn set_condition_by<C: Clone + PartialEq>(
    fields: &ConditionFields<C>,
    conditions: &mut Vec<C>,
    mut new: C,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    (fields.set_observed_generation)(&mut new, generation);
    let new_type = (fields.condition_type)(&new).to_string();
    match conditions
        .iter_mut()
        .find(|c| (fields.condition_type)(c) == new_type)
    {
        Some(existing) => {
            let at = match (fields.last_transition_time)(existing) {
                Some(t) if (fields.status)(existing) == (fields.status)(&new) => t,
                _ => now,
            };
            (fields.set_last_transition_time)(&mut new, at);
            if *existing == new {
                false
            } else {
                *existing = new;
                true
            }
        }
        None => {
            (fields.set_last_transition_time)(&mut new, now);
            conditions.push(new);
            true
        }
    }
}

/// The condition of type `type_`, if present.
pub fn find<'a, C: StatusCondition>(conditions: &'a [C], type_: &str) -> Option<&'a C> {
    conditions.iter().find(|c| c.condition_type() == type_)
}

/// Whether the condition `type_` is present with status `True`.
pub fn is_true<C: StatusCondition>(conditions: &[C], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status() == "True")
}

/// Removes the condition `type_`; returns whether it was present.
pub fn remove<C: StatusCondition>(conditions: &mut Vec<C>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.condition_type() != type_);
    conditions.len() != before
}

/// A `metav1.Condition` with the given fields (times are filled in by [`set_condition`]).
pub fn condition(type_: &str, status: &str, reason: &str, message: impl Into<String>) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
        observed_generation: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut conds = Vec::new();
        assert!(set_condition(
            &mut conds,
            condition("Ready", "False", "Starting", "wait"),
            Some(1),
            t(10)
        ));
        assert_eq!(conds[0].last_transition_time.0, t(10));
        // Same status, new message: changed, but the transition time stays.
        assert!(set_condition(
            &mut conds,
            condition("Ready", "False", "Starting", "still"),
            Some(1),
            t(20)
        ));
        assert_eq!(conds[0].last_transition_time.0, t(10));
        assert_eq!(conds[0].message, "still");
        // Identical: no write needed.
        assert!(!set_condition(
            &mut conds,
            condition("Ready", "False", "Starting", "still"),
            Some(1),
            t(30)
        ));
        // Status flips: the transition time moves.
        assert!(set_condition(
            &mut conds,
            condition("Ready", "True", "Running", ""),
            Some(1),
            t(40)
        ));
        assert_eq!(conds[0].last_transition_time.0, t(40));
        assert!(is_true(&conds, "Ready"));
    }

    #[test]
    fn observed_generation_change_is_a_change() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            condition("Ready", "True", "Running", ""),
            Some(1),
            t(1),
        );
        assert!(set_condition(
            &mut conds,
            condition("Ready", "True", "Running", ""),
            Some(2),
            t(2)
        ));
        assert_eq!(conds[0].observed_generation, Some(2));
        assert_eq!(conds[0].last_transition_time.0, t(1));
    }

    /// A condition shaped like a CRD's own type, updated through accessors.
    #[derive(Clone, PartialEq, Debug)]
    struct Own {
        kind: String,
        ok: bool,
        since: Option<Timestamp>,
        generation: Option<i64>,
    }

    #[test]
    fn accessor_variant_for_foreign_condition_types() {
        let fields = ConditionFields::<Own> {
            condition_type: |c| &c.kind,
            status: |c| if c.ok { "True" } else { "False" },
            last_transition_time: |c| c.since,
            set_last_transition_time: |c, t| c.since = Some(t),
            set_observed_generation: |c, g| c.generation = g,
        };
        let own = |ok| Own {
            kind: "Ready".into(),
            ok,
            since: None,
            generation: None,
        };
        let mut conds = Vec::new();
        assert!(set_condition_by(&fields, &mut conds, own(false), Some(3), t(1)));
        assert!(!set_condition_by(&fields, &mut conds, own(false), Some(3), t(2)));
        assert!(set_condition_by(&fields, &mut conds, own(true), Some(3), t(5)));
        assert_eq!(
            conds,
            vec![Own {
                kind: "Ready".into(),
                ok: true,
                since: Some(t(5)),
                generation: Some(3)
            }]
        );
    }

    #[test]
    fn types_are_independent_and_removable() {
        let mut conds = Vec::new();
        set_condition(&mut conds, condition("A", "True", "R", ""), None, t(1));
        set_condition(&mut conds, condition("B", "False", "R", ""), None, t(2));
        assert_eq!(conds.len(), 2);
        assert!(!is_true(&conds, "B"));
        assert!(remove(&mut conds, "A"));
        assert!(!remove(&mut conds, "A"));
        assert!(find(&conds, "B").is_some());
    }
}
