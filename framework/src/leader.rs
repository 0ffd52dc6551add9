//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics and
//! controller-runtime's defaults (lease 15 s, renew deadline 10 s, retry every 2 s).
//!
//! Expiry is judged on this replica's own clock: a lease is free when its record has not changed for
//! `leaseDurationSeconds` since *we* observed it, so clock skew between replicas does not matter. Writes
//! are optimistic (`resourceVersion`), so two candidates can never both win the same round. A leader that
//! cannot renew within the renew deadline gives up, and the manager then stops the process.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    /// Name of the Lease.
    pub lease_name: String,
    /// Namespace of the Lease (the operator's namespace).
    pub namespace: String,
    /// This replica's identity (unique per process).
    pub identity: String,
    /// How long a lease is valid without renewal (controller-runtime: 15 s).
    pub lease_duration: Duration,
    /// How long the leader keeps retrying a failed renewal before giving up (10 s).
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew (2 s).
    pub retry_period: Duration,
    /// Whether a leader hands the lease back when it shuts down gracefully, so a successor takes over at
    /// once instead of after the lease duration.
    pub release_on_cancel: bool,
}

impl LeaderElectionConfig {
    /// controller-runtime's defaults for a lease `lease_name` in `namespace`, with a fresh identity.
    pub fn new(lease_name: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            lease_name: lease_name.into(),
            namespace: namespace.into(),
            identity: default_identity(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            release_on_cancel: true,
        }
    }
}

/// `<hostname>_<uuid>`, like client-go's default identity.
pub fn default_identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "weft".to_string());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

/// The parts of a Lease that leader election reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// Current holder, `None` when released.
    pub holder: Option<String>,
    /// Validity of the lease without renewal.
    pub lease_duration: Duration,
    /// When the current holder acquired it.
    pub acquire_time: Option<Timestamp>,
    /// When the current holder last renewed it.
    pub renew_time: Option<Timestamp>,
    /// How many times the lease changed hands.
    pub transitions: i32,
}

impl LeaseRecord {
    /// Reads a record from a Lease spec (a missing duration counts as `default_duration`).
    pub fn from_spec(spec: Option<&LeaseSpec>, default_duration: Duration) -> Self {
        let spec = spec.cloned().unwrap_or_default();
        Self {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            lease_duration: spec
                .lease_duration_seconds
                .map(|s| Duration::from_secs(s.max(0) as u64))
                .unwrap_or(default_duration),
            acquire_time: spec.acquire_time.map(|t| t.0),
            renew_time: spec.renew_time.map(|t| t.0),
            transitions: spec.lease_transitions.unwrap_or(0),
        }
    }

    /// Writes the record into a Lease spec, keeping fields it does not own.
    pub fn to_spec(&self, base: Option<&LeaseSpec>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: self.holder.clone(),
            lease_duration_seconds: Some(self.lease_duration.as_secs().max(1) as i32),
            acquire_time: self.acquire_time.map(MicroTime),
            renew_time: self.renew_time.map(MicroTime),
            lease_transitions: Some(self.transitions),
            ..base.cloned().unwrap_or_default()
        }
    }
}

/// What a candidate should do with the lease it just read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Take the lease (free, released or expired).
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds a valid lease.
    Wait {
        /// The current holder.
        holder: String,
        /// How long until it expires unless renewed, by our clock.
        remaining: Duration,
    },
}

/// Decides from a lease record, when we last saw it change (`observed_at`) and the time `now`.
pub fn decide(record: &LeaseRecord, observed_at: Instant, now: Instant, me: &str) -> Decision {
    match record.holder.as_deref() {
        None => Decision::Acquire,
        Some(holder) if holder == me => Decision::Renew,
        Some(holder) => {
            let expires = observed_at + record.lease_duration;
            if now >= expires {
                Decision::Acquire
            } else {
                Decision::Wait {
                    holder: holder.to_string(),
                    remaining: expires - now,
                }
            }
        }
    }
}

/// The record to write after deciding to acquire or renew.
pub fn next_record(
    current: Option<&LeaseRecord>,
    decision: &Decision,
    me: &str,
    now: Timestamp,
    lease_duration: Duration,
) -> LeaseRecord {
    let transitions = current.map_or(0, |c| c.transitions);
    match decision {
        Decision::Renew => LeaseRecord {
            holder: Some(me.to_string()),
            lease_duration,
            acquire_time: current.and_then(|c| c.acquire_time).or(Some(now)),
            renew_time: Some(now),
            transitions,
        },
        Decision::Acquire | Decision::Wait { .. } => {
            let changed_hands = current.and_then(|c| c.holder.as_deref()).is_some_and(|h| h != me);
            LeaseRecord {
                holder: Some(me.to_string()),
                lease_duration,
                acquire_time: Some(now),
                renew_time: Some(now),
                transitions: if changed_hands {
                    transitions + 1
                } else {
                    transitions
                },
            }
        }
    }
}

/// Why leader election ended the process's leadership.
#[derive(Debug, thiserror::Error)]
pub enum LeaderElectionError {
    /// The lease was not renewed within the renew deadline, or another replica took it.
    #[error("lost the leader lease {lease}: {reason}")]
    Lost {
        /// Lease name.
        lease: String,
        /// What happened.
        reason: String,
    },
}

/// Runs leader election for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    /// The last record we saw and when we first saw it in this form.
    observed: Option<(LeaseRecord, Instant)>,
    /// The lease as we last wrote it, for renewing without a read (client-go's fast path).
    last_written: Option<Lease>,
    status: Gauge,
    slowpath: Counter,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409)
}

impl LeaderElector {
    /// An elector for `config`, reporting `leader_election_master_status` through `status`.
    pub fn new(client: Client, config: LeaderElectionConfig, status: Gauge, slowpath: Counter) -> Self {
        let api = Api::namespaced(client, &config.namespace);
        Self {
            api,
            config,
            observed: None,
            last_written: None,
            status,
            slowpath,
        }
    }

    /// One attempt to acquire or renew; `Ok(true)` if we hold the lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let me = self.config.identity.clone();
        // Fast path: we led last time, so renew what we wrote without reading first.
        if let Some(mut lease) = self.last_written.take() {
            let current = LeaseRecord::from_spec(lease.spec.as_ref(), self.config.lease_duration);
            if current.holder.as_deref() == Some(me.as_str()) {
                let next = next_record(
                    Some(&current),
                    &Decision::Renew,
                    &me,
                    Timestamp::now(),
                    self.config.lease_duration,
                );
                lease.spec = Some(next.to_spec(lease.spec.as_ref()));
                match self
                    .api
                    .replace(&self.config.lease_name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(written) => {
                        self.observed = Some((next, Instant::now()));
                        self.last_written = Some(written);
                        return Ok(true);
                    }
                    Err(e) if is_conflict(&e) => self.slowpath.inc(),
                    Err(e) => return Err(e),
                };
            }
        }
        let now = Instant::now();
        let Some(mut lease) = self.api.get_opt(&self.config.lease_name).await? else {
            let record = next_record(
                None,
                &Decision::Acquire,
                &me,
                Timestamp::now(),
                self.config.lease_duration,
            );
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.lease_name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(record.to_spec(None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(written) => {
                    self.observed = Some((record, now));
                    self.last_written = Some(written);
                    Ok(true)
                }
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let record = LeaseRecord::from_spec(lease.spec.as_ref(), self.config.lease_duration);
        let observed_at = match &self.observed {
            Some((seen, at)) if *seen == record => *at,
            _ => {
                self.observed = Some((record.clone(), now));
                now
            }
        };
        let decision = decide(&record, observed_at, now, &me);
        if let Decision::Wait { holder, remaining } = &decision {
            tracing::trace!(%holder, ?remaining, lease = %self.config.lease_name, "lease held by another replica");
            return Ok(false);
        }
        let next = next_record(
            Some(&record),
            &decision,
            &me,
            Timestamp::now(),
            self.config.lease_duration,
        );
        lease.spec = Some(next.to_spec(lease.spec.as_ref()));
        match self
            .api
            .replace(&self.config.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.observed = Some((next, now));
                self.last_written = Some(written);
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Hands the lease back if we hold it (holder cleared, duration 1 s), so a successor need not wait.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.lease_name).await else {
            return;
        };
        let record = LeaseRecord::from_spec(lease.spec.as_ref(), self.config.lease_duration);
        if record.holder.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        let now = Timestamp::now();
        let released = LeaseRecord {
            holder: None,
            lease_duration: Duration::from_secs(1),
            acquire_time: Some(now),
            renew_time: Some(now),
            transitions: record.transitions,
        };
        lease.spec = Some(released.to_spec(lease.spec.as_ref()));
        match self
            .api
            .replace(&self.config.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.config.lease_name, "released the leader lease"),
            Err(e) => {
                tracing::warn!(lease = %self.config.lease_name, error = %e, "could not release the leader lease")
            }
        }
    }

    fn jittered(&self) -> Duration {
        // client-go waits retryPeriod * (1 + rand * 1.2) between acquire attempts.
        let jitter = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0 * 1.2;
        self.config.retry_period.mul_f64(1.0 + jitter)
    }

    /// Acquires the lease, reports leadership on `leader`, then renews until `cancel` fires (then releases
    /// it if configured) or leadership is lost (an error).
    pub async fn run(
        mut self,
        leader: watch::Sender<bool>,
        cancel: CancellationToken,
    ) -> Result<(), LeaderElectionError> {
        let lease = self.config.lease_name.clone();
        tracing::info!(%lease, identity = %self.config.identity, "waiting for the leader lease");
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(%lease, error = %e, "could not read or take the leader lease"),
            }
            let wait = self.jittered();
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!(%lease, identity = %self.config.identity, "became the leader");
        self.status.set(1);
        leader.send_replace(true);
        let mut last_renewed = Instant::now();
        let status = self.status.clone();
        let lost = |reason: String| {
            status.set(0);
            leader.send_replace(false);
            tracing::error!(%lease, %reason, "lost the leader lease");
            Err(LeaderElectionError::Lost {
                lease: lease.clone(),
                reason,
            })
        };
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    if self.config.release_on_cancel {
                        self.release().await;
                    }
                    self.status.set(0);
                    leader.send_replace(false);
                    return Ok(());
                }
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
            let left = self.config.renew_deadline.saturating_sub(last_renewed.elapsed());
            match tokio::time::timeout(left.max(Duration::from_millis(1)), self.try_acquire_or_renew()).await
            {
                Ok(Ok(true)) => last_renewed = Instant::now(),
                Ok(Ok(false)) => return lost("another replica holds the lease".to_string()),
                Ok(Err(e)) => {
                    tracing::warn!(%lease, error = %e, "could not renew the leader lease");
                    if last_renewed.elapsed() >= self.config.renew_deadline {
                        return lost(format!(
                            "not renewed within {:?}: {e}",
                            self.config.renew_deadline
                        ));
                    }
                }
                Err(_) => return lost(format!("not renewed within {:?}", self.config.renew_deadline)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: Option<&str>, secs: u64) -> LeaseRecord {
        LeaseRecord {
            holder: holder.map(str::to_string),
            lease_duration: Duration::from_secs(secs),
            acquire_time: None,
            renew_time: None,
            transitions: 3,
        }
    }

    #[test]
    fn free_or_released_leases_are_acquired() {
        let now = Instant::now();
        assert_eq!(decide(&record(None, 15), now, now, "me"), Decision::Acquire);
    }

    #[test]
    fn our_own_lease_is_renewed() {
        let now = Instant::now();
        assert_eq!(decide(&record(Some("me"), 15), now, now, "me"), Decision::Renew);
    }

    #[test]
    fn another_holders_lease_is_respected_until_it_expires_by_our_clock() {
        let seen = Instant::now();
        let r = record(Some("other"), 15);
        assert_eq!(
            decide(&r, seen, seen + Duration::from_secs(10), "me"),
            Decision::Wait {
                holder: "other".into(),
                remaining: Duration::from_secs(5)
            }
        );
        assert_eq!(
            decide(&r, seen, seen + Duration::from_secs(15), "me"),
            Decision::Acquire
        );
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_keeps_acquire_time() {
        let t0 = Timestamp::UNIX_EPOCH;
        let t1 = Timestamp::from_second(100).unwrap();
        let other = LeaseRecord {
            acquire_time: Some(t0),
            ..record(Some("other"), 15)
        };
        let taken = next_record(
            Some(&other),
            &Decision::Acquire,
            "me",
            t1,
            Duration::from_secs(15),
        );
        assert_eq!(taken.holder.as_deref(), Some("me"));
        assert_eq!(taken.transitions, 4);
        assert_eq!(taken.acquire_time, Some(t1));
        let t2 = Timestamp::from_second(102).unwrap();
        let renewed = next_record(Some(&taken), &Decision::Renew, "me", t2, Duration::from_secs(15));
        assert_eq!(renewed.acquire_time, Some(t1));
        assert_eq!(renewed.renew_time, Some(t2));
        assert_eq!(renewed.transitions, 4);
        let fresh = next_record(
            Some(&record(None, 1)),
            &Decision::Acquire,
            "me",
            t1,
            Duration::from_secs(15),
        );
        assert_eq!(
            fresh.transitions, 3,
            "taking a released lease is not a transition away from anyone"
        );
    }

    #[test]
    fn spec_round_trip() {
        let r = LeaseRecord {
            holder: Some("me".into()),
            lease_duration: Duration::from_secs(15),
            acquire_time: Some(Timestamp::from_second(5).unwrap()),
            renew_time: Some(Timestamp::from_second(6).unwrap()),
            transitions: 2,
        };
        let spec = r.to_spec(None);
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(LeaseRecord::from_spec(Some(&spec), Duration::from_secs(1)), r);
        let empty = LeaseRecord::from_spec(None, Duration::from_secs(9));
        assert_eq!(empty.holder, None);
        assert_eq!(empty.lease_duration, Duration::from_secs(9));
    }
}
