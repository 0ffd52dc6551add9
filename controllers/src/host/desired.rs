//! What the Host object should say, as pure functions: its fields and labels from a heartbeat, its
//! status (the host's facts and the `Reporting`/`Ready` conditions) and whether a write is due at all.
//!
//! Writes are coalesced: fields and labels are applied only when they differ from the cached object;
//! status is written when a condition changes, when the status lacks the host's facts, or when the
//! written `lastSeen` is older than the refresh interval. So a host heartbeating every second costs one
//! status write per refresh interval, not one per heartbeat.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use weft_crds::condition::{self, Condition, ConditionStatus};
use weft_crds::names::{condition_types, reasons};
use weft_crds::{Host, HostFields, HostStatus};
use weft_host_api::HostHeartbeat;

use super::health::Verdict;

/// Reasons of the Host conditions beyond wasmCloud's `Available`.
pub mod host_reasons {
    /// Reporting False: heartbeats stopped arriving.
    pub const HEARTBEAT_MISSED: &str = "HeartbeatMissed";
    /// Ready Unknown: the host is not reporting.
    pub const NOT_REPORTING: &str = "NotReporting";
    /// Ready False: silent beyond the TTL and not answering probes.
    pub const UNREACHABLE: &str = "Unreachable";
    /// Ready False: a new host process at the same address replaced this one.
    pub const SUPERSEDED: &str = "Superseded";
}

/// The Host object (fields and labels only; no status, no finalizers) a heartbeat asks for.
pub fn desired_host(hb: &HostHeartbeat, name: &str, namespace: &str) -> Host {
    let labels: BTreeMap<String, String> = hb.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    Host {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: (!labels.is_empty()).then_some(labels),
            ..Default::default()
        },
        spec: HostFields {
            host_id: hb.id.clone(),
            hostname: (!hb.hostname.is_empty()).then(|| hb.hostname.clone()),
            http_port: (hb.http_port != 0).then_some(hb.http_port),
            environment: (!hb.environment.is_empty()).then(|| hb.environment.clone()),
        },
        status: None,
    }
}

/// Whether the cached Host lacks what `desired` says (fields differ, or a heartbeat label is missing or
/// different; labels added by others are left alone and do not cause writes).
pub fn needs_apply(cached: Option<&Host>, desired: &Host) -> bool {
    let Some(cached) = cached else {
        return true;
    };
    if cached.spec != desired.spec {
        return true;
    }
    let have = cached.metadata.labels.as_ref();
    desired
        .metadata
        .labels
        .iter()
        .flatten()
        .any(|(k, v)| have.and_then(|l| l.get(k)) != Some(v))
}

/// The seven required host facts and the counts, from a heartbeat.
pub fn facts(hb: &HostHeartbeat, heard_at: Timestamp) -> HostStatus {
    HostStatus {
        conditions: Vec::new(),
        version: Some(hb.version.clone()),
        os_name: Some(hb.os_name.clone()),
        os_arch: Some(hb.os_arch.clone()),
        os_kernel: Some(hb.os_kernel.clone()),
        system_cpu_usage: Some(format_cpu(hb.system_cpu_usage)),
        system_memory_total: Some(clamp_i64(hb.system_memory_total)),
        system_memory_free: Some(clamp_i64(hb.system_memory_free)),
        component_count: Some(clamp_i64(hb.component_count)),
        workload_count: Some(clamp_i64(hb.workload_count)),
        last_seen: Some(Time(heard_at)),
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// CPU usage as wasmCloud writes it: a decimal number, two places at most.
pub fn format_cpu(percent: f32) -> String {
    let v = (f64::from(percent) * 100.0).round() / 100.0;
    if v.is_finite() { format!("{v}") } else { "0".into() }
}

fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 10.0 {
        format!("{secs:.0}s")
    } else {
        format!("{secs:.1}s")
    }
}

/// The `Reporting` and `Ready` conditions for a verdict (`None` for [`Verdict::Hold`]: keep them).
/// Messages never carry moving numbers, so an unchanged verdict writes nothing.
pub fn conditions_for(
    verdict: Verdict,
    interval: Duration,
    suspect_after: Duration,
    dead_after: Duration,
) -> Option<[Condition; 2]> {
    let reporting = |status, reason: &str, message: String| {
        Condition::new(condition_types::REPORTING, status)
            .with_reason(reason)
            .with_message(message)
    };
    let ready = |status, reason: &str, message: String| {
        Condition::new(condition_types::READY, status)
            .with_reason(reason)
            .with_message(message)
    };
    Some(match verdict {
        Verdict::Hold => return None,
        Verdict::Ready => [
            reporting(
                ConditionStatus::True,
                reasons::AVAILABLE,
                "host is reporting".into(),
            ),
            ready(ConditionStatus::True, reasons::AVAILABLE, "host is ready".into()),
        ],
        Verdict::Suspect { .. } => [
            reporting(
                ConditionStatus::False,
                host_reasons::HEARTBEAT_MISSED,
                format!(
                    "no heartbeat for {} (expected every {}) and no probe reply",
                    human(suspect_after),
                    human(interval)
                ),
            ),
            ready(
                ConditionStatus::Unknown,
                host_reasons::NOT_REPORTING,
                "host is not reporting".into(),
            ),
        ],
        Verdict::Dead { .. } => [
            reporting(
                ConditionStatus::False,
                host_reasons::HEARTBEAT_MISSED,
                format!("no heartbeat or probe reply for {}", human(dead_after)),
            ),
            ready(
                ConditionStatus::False,
                host_reasons::UNREACHABLE,
                format!("host has not reported for {}; deleting it", human(dead_after)),
            ),
        ],
    })
}

/// The Ready False conditions of a Host replaced by a new process at the same address.
pub fn superseded_conditions(by: &str) -> [Condition; 2] {
    [
        Condition::new(condition_types::REPORTING, ConditionStatus::False)
            .with_reason(host_reasons::SUPERSEDED)
            .with_message(format!("replaced by host {by} at the same address")),
        Condition::new(condition_types::READY, ConditionStatus::False)
            .with_reason(host_reasons::SUPERSEDED)
            .with_message(format!("replaced by host {by} at the same address; deleting it")),
    ]
}

/// The status to write, or `None` when no write is due.
///
/// - `current`: the cached status;
/// - `heard`: the latest heartbeat and when it arrived (`None` if this process never heard the host);
/// - `conditions`: the new `Reporting`/`Ready` (`None`: keep);
/// - `refresh`: how stale the written `lastSeen` may get before the facts are rewritten.
pub fn status_update(
    current: Option<&HostStatus>,
    heard: Option<(&HostHeartbeat, Timestamp)>,
    conditions: Option<[Condition; 2]>,
    now: Timestamp,
    refresh: Duration,
) -> Option<HostStatus> {
    let now_time = Time(now);
    let mut next = match heard {
        Some((hb, at)) => facts(hb, at),
        None => {
            let mut kept = current.cloned()?;
            kept.conditions.clear();
            kept
        }
    };
    let mut conds = current.map(|s| s.conditions.clone()).unwrap_or_default();
    let mut conditions_changed = false;
    for c in conditions.into_iter().flatten() {
        conditions_changed |= condition::set(&mut conds, c, &now_time);
    }
    // Only our two conditions are applied (others' stay theirs under server-side apply).
    next.conditions = conds
        .into_iter()
        .filter(|c| c.type_ == condition_types::REPORTING || c.type_ == condition_types::READY)
        .collect();
    let facts_missing = current.is_none_or(|s| s.version.is_none() || s.system_memory_total.is_none());
    let stale = match (current.and_then(|s| s.last_seen.as_ref()), heard) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(written), Some((_, at))) => at.duration_since(written.0).as_secs_f64() >= refresh.as_secs_f64(),
    };
    (conditions_changed || (heard.is_some() && facts_missing) || stale).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_crds::names::labels;

    fn beat() -> HostHeartbeat {
        let mut hb = HostHeartbeat {
            id: "5f0c".into(),
            hostname: "10.0.0.5".into(),
            friendly_name: "calm-otter".into(),
            version: "0.1.0".into(),
            os_name: "linux".into(),
            os_arch: "x86_64".into(),
            os_kernel: "6.1".into(),
            system_cpu_usage: 12.3456,
            system_memory_total: 8 << 30,
            system_memory_free: 4 << 30,
            component_count: 2,
            workload_count: 3,
            http_port: 9191,
            environment: "weft-system".into(),
            ..Default::default()
        };
        hb.labels.insert(labels::HOST_GROUP.into(), "default".into());
        hb
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn the_host_object_carries_the_heartbeat_fields_and_labels() {
        let h = desired_host(&beat(), "calm-otter", "weft-system");
        assert_eq!(h.spec.host_id, "5f0c");
        assert_eq!(h.spec.hostname.as_deref(), Some("10.0.0.5"));
        assert_eq!(h.spec.http_port, Some(9191));
        assert_eq!(h.spec.environment.as_deref(), Some("weft-system"));
        assert_eq!(h.metadata.labels.as_ref().unwrap()["hostgroup"], "default");
        assert!(h.metadata.finalizers.is_none(), "finalizers are never applied");
    }

    #[test]
    fn apply_only_when_fields_or_heartbeat_labels_differ() {
        let desired = desired_host(&beat(), "calm-otter", "ns");
        assert!(needs_apply(None, &desired));
        let mut cached = desired.clone();
        assert!(!needs_apply(Some(&cached), &desired));
        cached
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("team".into(), "x".into());
        assert!(
            !needs_apply(Some(&cached), &desired),
            "others' labels cause no write"
        );
        cached
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("hostgroup".into(), "edge".into());
        assert!(needs_apply(Some(&cached), &desired));
        let mut moved = desired.clone();
        moved.spec.http_port = Some(80);
        assert!(needs_apply(Some(&moved), &desired));
    }

    #[test]
    fn status_comes_from_the_heartbeat_never_placeholders() {
        let s = facts(&beat(), at(100));
        assert_eq!(s.version.as_deref(), Some("0.1.0"));
        assert_eq!(s.system_cpu_usage.as_deref(), Some("12.35"));
        assert_eq!(s.system_memory_total, Some(8 << 30));
        assert_eq!(s.workload_count, Some(3));
        assert_eq!(s.last_seen, Some(Time(at(100))));
        assert_eq!(format_cpu(0.0), "0");
        assert_eq!(format_cpu(f32::NAN), "0");
    }

    #[test]
    fn status_writes_are_coalesced() {
        let refresh = Duration::from_secs(30);
        let ready = conditions_for(
            Verdict::Ready,
            Duration::from_secs(1),
            Duration::from_secs(3),
            Duration::from_secs(10),
        );
        let hb = beat();
        // First write: everything.
        let first =
            status_update(None, Some((&hb, at(100))), ready.clone(), at(100), refresh).expect("first write");
        assert_eq!(first.conditions.len(), 2);
        // The next heartbeats within the refresh interval, same verdict: nothing to write, even though
        // the CPU figure moves.
        let mut moving = hb.clone();
        moving.system_cpu_usage = 50.0;
        for t in [101, 110, 129] {
            assert_eq!(
                status_update(
                    Some(&first),
                    Some((&moving, at(t))),
                    ready.clone(),
                    at(t),
                    refresh
                ),
                None,
                "at {t}"
            );
        }
        // Once lastSeen is a refresh interval old: rewrite, conditions' transition times kept.
        let second = status_update(
            Some(&first),
            Some((&moving, at(130))),
            ready.clone(),
            at(130),
            refresh,
        )
        .expect("refresh");
        assert_eq!(second.system_cpu_usage.as_deref(), Some("50"));
        assert_eq!(second.conditions, first.conditions);
        // A verdict change is written at once, with a new transition time.
        let suspect = conditions_for(
            Verdict::Suspect {
                silence: Duration::from_secs(3),
                probe_failed: true,
            },
            Duration::from_secs(1),
            Duration::from_secs(3),
            Duration::from_secs(10),
        );
        let third = status_update(Some(&second), Some((&moving, at(130))), suspect, at(133), refresh)
            .expect("transition");
        let ready_cond = condition::find(&third.conditions, "Ready").unwrap();
        assert_eq!(ready_cond.status, ConditionStatus::Unknown);
        assert_eq!(ready_cond.last_transition_time, Some(Time(at(133))));
        // Hold with nothing heard: no write.
        assert_eq!(status_update(Some(&third), None, None, at(200), refresh), None);
    }

    #[test]
    fn a_host_never_heard_keeps_its_facts_when_its_conditions_change() {
        let refresh = Duration::from_secs(30);
        let ready = conditions_for(
            Verdict::Ready,
            Duration::from_secs(1),
            Duration::from_secs(3),
            Duration::from_secs(10),
        );
        let written = status_update(None, Some((&beat(), at(100))), ready, at(100), refresh).unwrap();
        let dead = conditions_for(
            Verdict::Dead {
                silence: Duration::from_secs(10),
            },
            Duration::from_secs(1),
            Duration::from_secs(3),
            Duration::from_secs(10),
        );
        let next = status_update(Some(&written), None, dead, at(300), refresh).unwrap();
        assert_eq!(next.version, written.version);
        assert_eq!(next.last_seen, written.last_seen);
        assert_eq!(
            condition::status_of(&next.conditions, "Ready"),
            ConditionStatus::False
        );
        assert_eq!(status_update(None, None, None, at(300), refresh), None);
    }

    #[test]
    fn condition_messages_do_not_move() {
        let a = conditions_for(
            Verdict::Suspect {
                silence: Duration::from_secs(3),
                probe_failed: false,
            },
            Duration::from_secs(1),
            Duration::from_secs(3),
            Duration::from_secs(10),
        );
        let b = conditions_for(
            Verdict::Suspect {
                silence: Duration::from_secs(7),
                probe_failed: true,
            },
            Duration::from_secs(1),
            Duration::from_secs(3),
            Duration::from_secs(10),
        );
        assert_eq!(a, b);
        assert_eq!(
            conditions_for(Verdict::Hold, Duration::ZERO, Duration::ZERO, Duration::ZERO),
            None
        );
        let [_, ready] = superseded_conditions("new-id");
        assert!(ready.message.unwrap().contains("new-id"));
    }
}
