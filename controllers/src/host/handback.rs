//! Handing a lost host's Workloads back for placement, as a pure status rewrite.
//!
//! wasmCloud deletes every Workload of a Host that goes away, so a bare Workload (no ReplicaSet) is
//! lost. Weft keeps the object and clears its placement instead: `hostId`, `workloadId` and
//! `environment` are removed and `Placement` turns False with reason `HostLost`, so the Workload
//! controller places it again like a new one, on another host.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use weft_crds::WorkloadStatus;
use weft_crds::condition::{self, Condition, ConditionStatus};
use weft_crds::names::condition_types;

/// The reason on a Workload's conditions when its host went away.
pub const HOST_LOST: &str = "HostLost";

/// The status of a Workload whose host `host_name` (`host_id`) went away.
pub fn handed_back(status: &WorkloadStatus, host_name: &str, host_id: &str, now: &Time) -> WorkloadStatus {
    let mut conditions = status.conditions.clone();
    let message = format!("host {host_name} ({host_id}) went away; placing the workload again");
    condition::remove(&mut conditions, condition_types::HOST_SELECTION);
    condition::remove(&mut conditions, condition_types::HEALTHY);
    for (type_, status) in [
        (condition_types::PLACEMENT, ConditionStatus::False),
        (condition_types::SYNC, ConditionStatus::Unknown),
        (condition_types::READY, ConditionStatus::False),
    ] {
        condition::set(
            &mut conditions,
            Condition::new(type_, status)
                .with_reason(HOST_LOST)
                .with_message(message.clone()),
            now,
        );
    }
    WorkloadStatus {
        conditions,
        host_id: None,
        environment: None,
        workload_id: None,
    }
}

/// The JSON merge patch that writes `next` over a status (null clears the placement fields) guarded by
/// `resource_version`, so a concurrent write is never overwritten.
pub fn status_patch(next: &WorkloadStatus, resource_version: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "metadata": { "resourceVersion": resource_version },
        "status": {
            "conditions": next.conditions,
            "hostId": next.host_id,
            "environment": next.environment,
            "workloadId": next.workload_id,
        }
    })
}

/// Whether a Workload is placed on `host_id` and should be handed back.
pub fn is_placed_on(status: Option<&WorkloadStatus>, host_id: &str) -> bool {
    status.and_then(|s| s.host_id.as_deref()) == Some(host_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn a_handed_back_workload_loses_its_placement_and_says_why() {
        let now = Time(Timestamp::from_second(100).unwrap());
        let placed = WorkloadStatus {
            conditions: vec![
                Condition::new(condition_types::HOST_SELECTION, ConditionStatus::True),
                Condition::new(condition_types::PLACEMENT, ConditionStatus::True),
                Condition::new(condition_types::READY, ConditionStatus::True),
                Condition::new(condition_types::CONFIG, ConditionStatus::True),
            ],
            host_id: Some("h1".into()),
            environment: Some("weft-system".into()),
            workload_id: Some("uid".into()),
        };
        assert!(is_placed_on(Some(&placed), "h1"));
        assert!(!is_placed_on(Some(&placed), "h2"));
        assert!(!is_placed_on(None, "h1"));
        let next = handed_back(&placed, "calm-otter", "h1", &now);
        assert_eq!(next.host_id, None);
        assert_eq!(next.workload_id, None);
        assert!(condition::find(&next.conditions, condition_types::HOST_SELECTION).is_none());
        assert!(
            condition::is_true(&next.conditions, condition_types::CONFIG),
            "kept"
        );
        let placement = condition::find(&next.conditions, condition_types::PLACEMENT).unwrap();
        assert_eq!(placement.status, ConditionStatus::False);
        assert_eq!(placement.reason.as_deref(), Some(HOST_LOST));
        assert!(placement.message.as_ref().unwrap().contains("calm-otter"));
        assert_eq!(placement.last_transition_time, Some(now.clone()));
        let patch = status_patch(&next, Some("42"));
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
        assert!(
            patch["status"]["hostId"].is_null(),
            "null clears the field in a merge patch"
        );
    }
}
