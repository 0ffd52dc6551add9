//! The host's workload table and wasmCloud's start/stop/status rules, as a pure state machine.
//!
//! - A start *reserves* the ID (state Starting) before any work; a second start with a live ID is
//!   rejected ("already exists") and leaves the first untouched.
//! - A failed start releases its reservation: the ID is not consumed.
//! - A successful start commits Running only if its reservation is still in place; if a stop arrived
//!   meanwhile, the start tears the workload down instead.
//! - A stop moves Running to Stopping (the caller tears down, then removes the slot); a stop of a
//!   Starting workload marks it so the start tears itself down; a stop of a Stopping workload is left
//!   alone; an unknown ID is NOT_FOUND.
//!
//! State lives in memory only: a restarted host starts empty (wasmCloud does the same).

use std::collections::HashMap;
use std::sync::Mutex;

/// Proof that a start holds the reservation of an ID.
#[derive(Debug, PartialEq, Eq)]
pub struct Reservation {
    token: u64,
}

#[derive(Debug)]
enum Slot<H> {
    Starting { token: u64, stop_requested: bool },
    Running { handle: H, components: usize },
    Stopping,
}

/// The state of a slot as reported by status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState<H> {
    /// Reserved by a start that is still running.
    Starting,
    /// Serving.
    Running(H),
    /// Being torn down (including a start that was asked to stop).
    Stopping,
}

/// What [`WorkloadTable::commit`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Commit<H> {
    /// The workload is Running.
    Running,
    /// A stop arrived while starting: the caller must tear `H` down and then [`WorkloadTable::release`].
    StopRequested(H),
}

/// What [`WorkloadTable::begin_stop`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum StopStep<H> {
    /// No such workload.
    NotFound,
    /// Was Running, now Stopping: the caller tears `H` down, then calls [`WorkloadTable::finish_stop`].
    Stop(H),
    /// Still starting: marked, the start tears itself down when it finishes.
    StopWhenStarted,
    /// Already stopping: nothing to do.
    AlreadyStopping,
}

/// The ID already exists (in any state).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Workload ID [{0}] already exists")]
pub struct AlreadyExists(pub String);

/// Workload and component counts for heartbeats and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Workloads starting.
    pub starting: u64,
    /// Workloads running.
    pub running: u64,
    /// Workloads stopping.
    pub stopping: u64,
    /// Components of running workloads.
    pub running_components: u64,
}

impl Counts {
    /// Workloads in any state.
    pub fn total(&self) -> u64 {
        self.starting + self.running + self.stopping
    }
}

#[derive(Debug)]
struct Inner<H> {
    slots: HashMap<String, Slot<H>>,
    next_token: u64,
}

/// Workload ID → state, behind one mutex (held only for map operations, never across awaits).
#[derive(Debug)]
pub struct WorkloadTable<H> {
    inner: Mutex<Inner<H>>,
}

impl<H> Default for WorkloadTable<H> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                slots: HashMap::new(),
                next_token: 0,
            }),
        }
    }
}

impl<H: Clone> WorkloadTable<H> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<H>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `id` for a start.
    pub fn reserve(&self, id: &str) -> Result<Reservation, AlreadyExists> {
        let mut inner = self.lock();
        if inner.slots.contains_key(id) {
            return Err(AlreadyExists(id.to_string()));
        }
        inner.next_token += 1;
        let token = inner.next_token;
        inner.slots.insert(
            id.to_string(),
            Slot::Starting {
                token,
                stop_requested: false,
            },
        );
        Ok(Reservation { token })
    }

    /// Records a successful start of `id` with `components` components.
    pub fn commit(&self, id: &str, reservation: &Reservation, handle: H, components: usize) -> Commit<H> {
        let mut inner = self.lock();
        match inner.slots.get(id) {
            Some(Slot::Starting {
                token,
                stop_requested: false,
            }) if *token == reservation.token => {
                inner
                    .slots
                    .insert(id.to_string(), Slot::Running { handle, components });
                Commit::Running
            }
            // Asked to stop while starting (or, defensively, the reservation is gone).
            _ => Commit::StopRequested(handle),
        }
    }

    /// Drops the reservation of a failed (or stopped-while-starting) start, if it is still in place.
    pub fn release(&self, id: &str, reservation: &Reservation) {
        let mut inner = self.lock();
        if matches!(inner.slots.get(id), Some(Slot::Starting { token, .. }) if *token == reservation.token) {
            inner.slots.remove(id);
        }
    }

    /// Starts stopping `id`.
    pub fn begin_stop(&self, id: &str) -> StopStep<H> {
        let mut inner = self.lock();
        match inner.slots.get_mut(id) {
            None => StopStep::NotFound,
            Some(Slot::Stopping) => StopStep::AlreadyStopping,
            Some(Slot::Starting {
                stop_requested: true, ..
            }) => StopStep::AlreadyStopping,
            Some(Slot::Starting { stop_requested, .. }) => {
                *stop_requested = true;
                StopStep::StopWhenStarted
            }
            Some(slot @ Slot::Running { .. }) => match std::mem::replace(slot, Slot::Stopping) {
                Slot::Running { handle, .. } => StopStep::Stop(handle),
                _ => unreachable!("matched Running above"),
            },
        }
    }

    /// Removes `id` after its teardown (only if it is Stopping).
    pub fn finish_stop(&self, id: &str) {
        let mut inner = self.lock();
        if matches!(inner.slots.get(id), Some(Slot::Stopping)) {
            inner.slots.remove(id);
        }
    }

    /// The state of `id`, or `None` if unknown.
    pub fn state(&self, id: &str) -> Option<SlotState<H>> {
        self.lock().slots.get(id).map(|slot| match slot {
            Slot::Starting {
                stop_requested: false,
                ..
            } => SlotState::Starting,
            Slot::Starting {
                stop_requested: true, ..
            }
            | Slot::Stopping => SlotState::Stopping,
            Slot::Running { handle, .. } => SlotState::Running(handle.clone()),
        })
    }

    /// Counts by state.
    pub fn counts(&self) -> Counts {
        let inner = self.lock();
        let mut c = Counts::default();
        for slot in inner.slots.values() {
            match slot {
                Slot::Starting { .. } => c.starting += 1,
                Slot::Running { components, .. } => {
                    c.running += 1;
                    c.running_components += *components as u64;
                }
                Slot::Stopping => c.stopping += 1,
            }
        }
        c
    }

    /// Moves every Running workload to Stopping and returns them (for shutdown).
    pub fn begin_stop_all(&self) -> Vec<(String, H)> {
        let ids: Vec<String> = {
            let inner = self.lock();
            inner
                .slots
                .iter()
                .filter(|(_, s)| matches!(s, Slot::Running { .. }))
                .map(|(id, _)| id.clone())
                .collect()
        };
        ids.into_iter()
            .filter_map(|id| match self.begin_stop(&id) {
                StopStep::Stop(h) => Some((id, h)),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_reserves_then_commits_running() {
        let t = WorkloadTable::default();
        let r = t.reserve("w1").unwrap();
        assert_eq!(t.state("w1"), Some(SlotState::Starting));
        assert_eq!(
            t.counts(),
            Counts {
                starting: 1,
                ..Counts::default()
            }
        );
        assert_eq!(t.commit("w1", &r, "h1", 2), Commit::Running);
        assert_eq!(t.state("w1"), Some(SlotState::Running("h1")));
        assert_eq!(
            t.counts(),
            Counts {
                running: 1,
                running_components: 2,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn a_live_id_cannot_be_started_twice() {
        let t = WorkloadTable::default();
        let r = t.reserve("w1").unwrap();
        let err = t.reserve("w1").unwrap_err();
        assert_eq!(err.to_string(), "Workload ID [w1] already exists");
        t.commit("w1", &r, "h1", 1);
        assert!(t.reserve("w1").is_err());
        assert_eq!(
            t.state("w1"),
            Some(SlotState::Running("h1")),
            "the first start is untouched"
        );
    }

    #[test]
    fn a_failed_start_does_not_consume_the_id() {
        let t: WorkloadTable<&str> = WorkloadTable::default();
        let r = t.reserve("w1").unwrap();
        t.release("w1", &r);
        assert_eq!(t.state("w1"), None);
        assert!(t.reserve("w1").is_ok());
    }

    #[test]
    fn stop_running_then_finish_removes_the_slot() {
        let t = WorkloadTable::default();
        let r = t.reserve("w1").unwrap();
        t.commit("w1", &r, "h1", 3);
        assert_eq!(t.begin_stop("w1"), StopStep::Stop("h1"));
        assert_eq!(t.state("w1"), Some(SlotState::Stopping));
        assert_eq!(t.begin_stop("w1"), StopStep::AlreadyStopping);
        assert!(t.reserve("w1").is_err(), "still there while stopping");
        assert_eq!(
            t.counts(),
            Counts {
                stopping: 1,
                ..Counts::default()
            }
        );
        t.finish_stop("w1");
        assert_eq!(t.state("w1"), None);
        assert_eq!(t.begin_stop("w1"), StopStep::NotFound);
        assert!(t.reserve("w1").is_ok(), "the ID is free again");
    }

    #[test]
    fn stop_while_starting_makes_the_start_tear_down() {
        let t = WorkloadTable::default();
        let r = t.reserve("w1").unwrap();
        assert_eq!(t.begin_stop("w1"), StopStep::StopWhenStarted);
        assert_eq!(t.state("w1"), Some(SlotState::Stopping));
        assert_eq!(t.begin_stop("w1"), StopStep::AlreadyStopping);
        assert_eq!(t.commit("w1", &r, "h1", 1), Commit::StopRequested("h1"));
        t.release("w1", &r);
        assert_eq!(t.state("w1"), None);
    }

    #[test]
    fn a_stale_reservation_cannot_commit_or_release_a_newer_one() {
        let t = WorkloadTable::default();
        let old = t.reserve("w1").unwrap();
        t.release("w1", &old);
        let new = t.reserve("w1").unwrap();
        t.release("w1", &old);
        assert_eq!(
            t.state("w1"),
            Some(SlotState::Starting),
            "the old token does not release the new one"
        );
        assert_eq!(t.commit("w1", &old, "stale", 1), Commit::StopRequested("stale"));
        assert_eq!(t.commit("w1", &new, "fresh", 1), Commit::Running);
    }

    #[test]
    fn stop_all_takes_only_running_workloads() {
        let t = WorkloadTable::default();
        let r1 = t.reserve("a").unwrap();
        t.commit("a", &r1, "ha", 1);
        let _r2 = t.reserve("b").unwrap();
        let mut stopped = t.begin_stop_all();
        stopped.sort();
        assert_eq!(stopped, vec![("a".to_string(), "ha")]);
        assert_eq!(t.state("a"), Some(SlotState::Stopping));
        assert_eq!(t.state("b"), Some(SlotState::Starting));
    }
}
