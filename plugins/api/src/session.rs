//! Policies and sessions: a session holds a snapshot and places workloads one after another, counting each
//! placement on its host so the next decision sees it (as kube-scheduler "assumes" a pod before binding).

use crate::model::{Placement, Snapshot, SnapshotUpdate, WorkloadRequest};
use crate::pipeline::{Pipeline, ScheduleError};
use crate::rng::SplitMix64;

/// A placement policy, in-tree or native, selected by name.
pub trait Policy: Send + Sync {
    /// The name users select the policy by (`schedulerName`, the operator's default flag).
    fn name(&self) -> &str;

    /// Opens a session over `snapshot`. Given equal snapshots, seeds and calls, sessions make equal decisions.
    fn open(&self, snapshot: Snapshot, seed: u64) -> Result<Box<dyn Session>, ScheduleError>;
}

/// Places workloads over a snapshot kept up to date by the caller.
pub trait Session: Send {
    /// Chooses a host for the workload and counts the workload on it.
    fn place(&mut self, request: &WorkloadRequest) -> Result<Placement, ScheduleError>;

    /// Applies updates in order, stopping at the first invalid one.
    fn apply(&mut self, updates: &[SnapshotUpdate]) -> Result<(), ScheduleError>;

    /// The session's current snapshot.
    fn snapshot(&self) -> &Snapshot;
}

impl Policy for Pipeline {
    fn name(&self) -> &str {
        Pipeline::name(self)
    }

    fn open(&self, snapshot: Snapshot, seed: u64) -> Result<Box<dyn Session>, ScheduleError> {
        Ok(Box::new(PipelineSession::new(self.clone(), snapshot, seed)))
    }
}

/// A [`Session`] running a [`Pipeline`] in-process. Every decision takes exactly one draw from a
/// [`SplitMix64`] seeded with the session seed, whether or not there is a tie.
#[derive(Debug)]
pub struct PipelineSession {
    pipeline: Pipeline,
    snapshot: Snapshot,
    rng: SplitMix64,
}

impl PipelineSession {
    /// A session of `pipeline` over `snapshot`.
    pub fn new(pipeline: Pipeline, snapshot: Snapshot, seed: u64) -> Self {
        PipelineSession {
            pipeline,
            snapshot,
            rng: SplitMix64::new(seed),
        }
    }
}

impl Session for PipelineSession {
    fn place(&mut self, request: &WorkloadRequest) -> Result<Placement, ScheduleError> {
        let draw = self.rng.next_u64();
        let placement = self.pipeline.schedule(&self.snapshot, request, draw)?;
        self.snapshot
            .assume(&placement.host_id, &request.footprint())
            .map_err(ScheduleError::Snapshot)?;
        Ok(placement)
    }

    fn apply(&mut self, updates: &[SnapshotUpdate]) -> Result<(), ScheduleError> {
        self.snapshot
            .apply_all(updates)
            .1
            .map_err(ScheduleError::Snapshot)
    }

    fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{Context, Scorer};
    use crate::model::{HostInfo, WorkloadFootprint};

    struct FewestWorkloads;
    impl Scorer for FewestWorkloads {
        fn name(&self) -> &str {
            "fewest"
        }
        fn score(&self, _: &Context<'_>, host: &HostInfo) -> i64 {
            -(host.workload_count as i64)
        }
    }

    fn snapshot() -> Snapshot {
        let hosts = ["a", "b", "c"]
            .iter()
            .map(|id| HostInfo {
                id: id.to_string(),
                ready: true,
                ..HostInfo::default()
            })
            .collect();
        Snapshot::new(hosts).unwrap()
    }

    #[test]
    fn placements_are_counted_for_the_next_decision() {
        let pipeline = Pipeline::builder("fewest").scorer(1, FewestWorkloads).build();
        let mut session = pipeline.open(snapshot(), 42).unwrap();
        let request = WorkloadRequest {
            component_count: 2,
            ..WorkloadRequest::default()
        };
        let mut chosen: Vec<String> = (0..6).map(|_| session.place(&request).unwrap().host_id).collect();
        chosen.sort();
        assert_eq!(chosen, ["a", "a", "b", "b", "c", "c"]);
        assert!(
            session
                .snapshot()
                .hosts()
                .iter()
                .all(|h| h.workload_count == 2 && h.component_count == 4)
        );
    }

    #[test]
    fn equal_seeds_give_equal_decisions_and_other_seeds_differ() {
        let pipeline = Pipeline::builder("random").build();
        let run = |seed| {
            let mut session = pipeline.open(snapshot(), seed).unwrap();
            (0..32)
                .map(|_| session.place(&WorkloadRequest::default()).unwrap().host_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn apply_updates_the_session_snapshot() {
        let pipeline = Pipeline::builder("fewest").scorer(1, FewestWorkloads).build();
        let mut session = pipeline.open(snapshot(), 1).unwrap();
        let busy = WorkloadFootprint::default();
        session
            .apply(&[
                SnapshotUpdate::Assume {
                    host_id: "a".into(),
                    footprint: busy.clone(),
                },
                SnapshotUpdate::Assume {
                    host_id: "b".into(),
                    footprint: busy.clone(),
                },
            ])
            .unwrap();
        assert_eq!(session.place(&WorkloadRequest::default()).unwrap().host_id, "c");
        let error = session
            .apply(&[SnapshotUpdate::Forget {
                host_id: "zz".into(),
                footprint: busy,
            }])
            .unwrap_err();
        assert_eq!(error.to_string(), "host ID \"zz\" is not in the snapshot");
    }
}
