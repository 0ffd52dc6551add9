//! The condition type every kind reports in `status.conditions`, and helpers to read and update a list
//! of conditions the way the controllers need it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One observed aspect of an object's state, such as whether it is ready.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// What the condition is about, e.g. `Ready`. A list holds at most one condition of each type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// The `.metadata.generation` this condition was computed from, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When this condition last changed from one status to another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// When a controller last checked this condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
    /// A machine-readable, CamelCase reason for the condition's last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A human-readable explanation of the condition's last transition, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

crate::common::string_enum! {
    /// The status of a condition.
    pub enum ConditionStatus {
        /// The condition holds.
        True = "True",
        /// The condition does not hold.
        False = "False",
        /// Whether the condition holds is not known.
        Unknown = "Unknown",
    }
}

impl Condition {
    /// A condition of `type_` with `status` and no other field set.
    pub fn new(type_: impl Into<String>, status: ConditionStatus) -> Self {
        Self {
            type_: type_.into(),
            status,
            observed_generation: None,
            last_transition_time: None,
            last_probe_time: None,
            reason: None,
            message: None,
        }
    }

    /// Sets the reason.
    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Sets the message.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Sets the generation the condition was computed from.
    #[must_use]
    pub fn with_observed_generation(mut self, generation: i64) -> Self {
        self.observed_generation = Some(generation);
        self
    }

    /// Whether the condition's status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }

    /// Whether two conditions say the same thing: same type, status, reason, message and observed
    /// generation. Timestamps are ignored.
    pub fn same_as(&self, other: &Condition) -> bool {
        self.type_ == other.type_
            && self.status == other.status
            && self.reason == other.reason
            && self.message == other.message
            && self.observed_generation == other.observed_generation
    }
}

/// Schema of a `conditions` field: a list keyed by `type`, so that server-side apply merges entries by
/// type and different field managers can own different conditions.
pub(crate) fn conditions_list(schema: &mut schemars::Schema) {
    crate::schema::list_map(schema, &["type"]);
}

/// The condition of `type_` in `conditions`, if there is one.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The status of the condition of `type_`, or `Unknown` when there is none.
pub fn status_of(conditions: &[Condition], type_: &str) -> ConditionStatus {
    find(conditions, type_).map_or(ConditionStatus::Unknown, |c| c.status.clone())
}

/// Whether the condition of `type_` exists and is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(Condition::is_true)
}

/// Puts `condition` into `conditions`, replacing the one of the same type, and returns whether the list
/// now says something different (see [`Condition::same_as`]).
///
/// `lastTransitionTime` is managed here: it becomes `now` when the condition is new or its status
/// changes, and is kept otherwise, whatever `condition` carries. `lastProbeTime` is taken from
/// `condition` as given.
pub fn set(conditions: &mut Vec<Condition>, mut condition: Condition, now: &Time) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => {
            condition.last_transition_time = if existing.status == condition.status {
                existing
                    .last_transition_time
                    .clone()
                    .or_else(|| Some(now.clone()))
            } else {
                Some(now.clone())
            };
            let changed = !existing.same_as(&condition);
            *existing = condition;
            changed
        }
        None => {
            condition.last_transition_time = Some(now.clone());
            conditions.push(condition);
            true
        }
    }
}

/// Removes the condition of `type_` and returns whether there was one.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{condition_types::READY, reasons};

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn set_adds_a_new_condition_with_transition_time_now() {
        let mut conditions = Vec::new();
        let changed = set(
            &mut conditions,
            Condition::new(READY, ConditionStatus::True),
            &at(10),
        );
        assert!(changed);
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, Some(at(10)));
    }

    #[test]
    fn set_keeps_transition_time_when_status_is_unchanged() {
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            Condition::new(READY, ConditionStatus::False),
            &at(10),
        );
        let changed = set(
            &mut conditions,
            Condition::new(READY, ConditionStatus::False).with_message("still waiting"),
            &at(20),
        );
        assert!(changed, "the message changed");
        assert_eq!(conditions[0].last_transition_time, Some(at(10)));
        assert_eq!(conditions[0].message.as_deref(), Some("still waiting"));
    }

    #[test]
    fn set_moves_transition_time_when_status_changes() {
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            Condition::new(READY, ConditionStatus::False),
            &at(10),
        );
        let changed = set(
            &mut conditions,
            Condition::new(READY, ConditionStatus::True).with_reason(reasons::AVAILABLE),
            &at(30),
        );
        assert!(changed);
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, Some(at(30)));
        assert!(is_true(&conditions, READY));
    }

    #[test]
    fn set_reports_no_change_for_an_identical_condition() {
        let mut conditions = Vec::new();
        let ready = Condition::new(READY, ConditionStatus::True).with_reason(reasons::AVAILABLE);
        set(&mut conditions, ready.clone(), &at(10));
        assert!(!set(&mut conditions, ready, &at(40)));
        assert_eq!(conditions[0].last_transition_time, Some(at(10)));
    }

    #[test]
    fn set_ignores_a_transition_time_carried_by_the_new_condition() {
        let mut conditions = Vec::new();
        let mut ready = Condition::new(READY, ConditionStatus::True);
        ready.last_transition_time = Some(at(1));
        set(&mut conditions, ready, &at(10));
        assert_eq!(conditions[0].last_transition_time, Some(at(10)));
    }

    #[test]
    fn lookups_treat_a_missing_condition_as_unknown() {
        let conditions = vec![Condition::new("Sync", ConditionStatus::False)];
        assert_eq!(status_of(&conditions, READY), ConditionStatus::Unknown);
        assert_eq!(status_of(&conditions, "Sync"), ConditionStatus::False);
        assert!(!is_true(&conditions, READY));
        assert!(find(&conditions, READY).is_none());
    }

    #[test]
    fn remove_drops_only_the_named_condition() {
        let mut conditions = vec![
            Condition::new("Sync", ConditionStatus::True),
            Condition::new(READY, ConditionStatus::True),
        ];
        assert!(remove(&mut conditions, "Sync"));
        assert!(!remove(&mut conditions, "Sync"));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].type_, READY);
    }

    #[test]
    fn status_serializes_as_kubernetes_writes_it() {
        let json = serde_json::to_value(Condition::new(READY, ConditionStatus::Unknown)).unwrap();
        assert_eq!(json, serde_json::json!({"type": "Ready", "status": "Unknown"}));
    }
}
