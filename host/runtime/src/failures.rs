//! Which of a workload's recent requests failed in the component, for its status.
//!
//! A [`FailureWindow`] remembers the outcome of the last [`WINDOW`] requests in one 64-bit word and
//! the last failure's message. Recording a success on a healthy workload costs two relaxed loads
//! (nothing changes), so the window stays off the request path's cost. Failures are forgotten after
//! [`FAILURE_MEMORY`] without another one, so a workload that failed once and then got no traffic does
//! not stay reported as failing forever.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How many of the most recent requests a window remembers.
pub const WINDOW: u32 = 64;

/// How long failures are remembered after the last one.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(300);

/// The failures among a workload's recent requests (what [`FailureWindow::snapshot`] reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentFailures {
    /// Requests among the last `of` that failed in the component (trap, memory limit, time limit).
    pub failed: u32,
    /// How many recent requests the count covers (at most [`WINDOW`]).
    pub of: u32,
    /// What the last failure was, e.g. the trap's message.
    pub last_error: String,
    /// How long ago the last failure happened.
    pub since_last: Duration,
}

/// The outcomes of a workload's last [`WINDOW`] requests.
#[derive(Debug, Default)]
pub struct FailureWindow {
    /// Bit `i` is set when the `i`-th most recent request failed.
    history: AtomicU64,
    /// Requests recorded, saturating at [`WINDOW`].
    seen: AtomicU32,
    last: Mutex<Option<(String, Instant)>>,
}

impl FailureWindow {
    /// Records a request the component answered.
    pub fn record_success(&self) {
        self.count_seen();
        if self.history.load(Ordering::Relaxed) != 0 {
            let _ = self
                .history
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| Some(h << 1));
        }
    }

    /// Records a request that failed in the component, with why.
    pub fn record_failure(&self, error: &str, now: Instant) {
        self.count_seen();
        let _ = self
            .history
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| Some(h << 1 | 1));
        *self.last.lock().expect("failure window lock") = Some((error.to_string(), now));
    }

    /// The recent failures, or `None` when none of the remembered requests failed or the last
    /// failure is older than [`FAILURE_MEMORY`].
    pub fn snapshot(&self, now: Instant) -> Option<RecentFailures> {
        let of = self.seen.load(Ordering::Relaxed).min(WINDOW);
        let mask = if of >= 64 { u64::MAX } else { (1u64 << of) - 1 };
        let failed = (self.history.load(Ordering::Relaxed) & mask).count_ones();
        if failed == 0 {
            return None;
        }
        let last = self.last.lock().expect("failure window lock");
        let (last_error, at) = last.as_ref()?;
        let since_last = now.saturating_duration_since(*at);
        (since_last <= FAILURE_MEMORY).then(|| RecentFailures {
            failed,
            of,
            last_error: last_error.clone(),
            since_last,
        })
    }

    fn count_seen(&self) {
        if self.seen.load(Ordering::Relaxed) < WINDOW {
            self.seen.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_healthy_window_reports_nothing() {
        let w = FailureWindow::default();
        assert_eq!(w.snapshot(Instant::now()), None);
        for _ in 0..100 {
            w.record_success();
        }
        assert_eq!(w.snapshot(Instant::now()), None);
    }

    #[test]
    fn every_request_failing_is_counted_up_to_the_window() {
        let w = FailureWindow::default();
        let now = Instant::now();
        for i in 0..3 {
            w.record_failure(&format!("trap {i}"), now);
        }
        let s = w.snapshot(now).expect("failures");
        assert_eq!((s.failed, s.of, s.last_error.as_str()), (3, 3, "trap 2"));
        for _ in 0..200 {
            w.record_failure("unreachable", now);
        }
        let s = w.snapshot(now).expect("failures");
        assert_eq!((s.failed, s.of), (WINDOW, WINDOW));
    }

    #[test]
    fn failures_shift_out_as_successes_come_in() {
        let w = FailureWindow::default();
        let now = Instant::now();
        w.record_failure("trap", now);
        for _ in 0..10 {
            w.record_success();
        }
        let s = w.snapshot(now).expect("one failure");
        assert_eq!((s.failed, s.of), (1, 11));
        for _ in 0..WINDOW {
            w.record_success();
        }
        assert_eq!(w.snapshot(now), None, "the failure left the window");
    }

    #[test]
    fn failures_are_forgotten_after_the_memory_without_another() {
        let w = FailureWindow::default();
        let then = Instant::now();
        w.record_failure("trap", then);
        let s = w.snapshot(then + FAILURE_MEMORY).expect("still remembered");
        assert_eq!(s.since_last, FAILURE_MEMORY);
        assert_eq!(w.snapshot(then + FAILURE_MEMORY + Duration::from_secs(1)), None);
    }
}
