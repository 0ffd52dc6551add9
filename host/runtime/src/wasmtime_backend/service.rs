//! Supervising a workload's service (`wasi:cli/run`): run it, and when it fails restart it after a
//! growing back-off until `maxRestarts` restarts are used up. A clean exit (code 0) completes the
//! service and is not restarted. The restart policy is pure ([`RestartPolicy`]); the supervisor loop
//! ([`supervise`]) takes the run as a closure.

use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How one run of the service ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServiceExit {
    /// Exited with code 0 (or `run` returned `ok`).
    Completed,
    /// Failed: a non-zero exit, `run` returning `err`, a trap, or the memory limit.
    Failed(String),
}

/// Where the service is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServiceState {
    /// Running (or about to be restarted); `restarts` restarts used so far, `last_error` why the last
    /// run failed.
    Running {
        restarts: u64,
        last_error: Option<String>,
    },
    /// Exited cleanly.
    Completed { restarts: u64 },
    /// Failed with no restarts left.
    Failed { restarts: u64, error: String },
}

impl ServiceState {
    /// A line for the workload's status message.
    pub(crate) fn describe(&self, max_restarts: u64) -> String {
        match self {
            ServiceState::Running {
                restarts: 0,
                last_error: None,
            } => "service running".to_string(),
            ServiceState::Running { restarts, last_error } => format!(
                "service running after {restarts} of {max_restarts} restarts (last failure: {})",
                last_error.as_deref().unwrap_or("-")
            ),
            ServiceState::Completed { .. } => "service completed (exit code 0)".to_string(),
            ServiceState::Failed { restarts, error } => {
                format!("service failed after {restarts} of {max_restarts} restarts: {error}")
            }
        }
    }
}

/// When to restart, and after how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RestartPolicy {
    pub max_restarts: u64,
    /// Back-off before the first restart; doubled per restart up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl RestartPolicy {
    /// What follows `exit` after `restarts` restarts: the next state, and the back-off before the next
    /// run (`None` = no next run).
    pub(crate) fn next(&self, restarts: u64, exit: ServiceExit) -> (ServiceState, Option<Duration>) {
        match exit {
            ServiceExit::Completed => (ServiceState::Completed { restarts }, None),
            ServiceExit::Failed(error) if restarts >= self.max_restarts => {
                (ServiceState::Failed { restarts, error }, None)
            }
            ServiceExit::Failed(error) => {
                let factor = 1u32.checked_shl(restarts.min(16) as u32).unwrap_or(u32::MAX);
                let backoff = self.initial_backoff.saturating_mul(factor).min(self.max_backoff);
                (
                    ServiceState::Running {
                        restarts: restarts + 1,
                        last_error: Some(error),
                    },
                    Some(backoff),
                )
            }
        }
    }
}

/// The service's state, shared between the supervisor and the workload's status.
#[derive(Debug)]
pub(crate) struct ServiceStatus {
    pub max_restarts: u64,
    state: Mutex<ServiceState>,
}

impl ServiceStatus {
    pub(crate) fn new(max_restarts: u64) -> Self {
        Self {
            max_restarts,
            state: Mutex::new(ServiceState::Running {
                restarts: 0,
                last_error: None,
            }),
        }
    }

    pub(crate) fn get(&self) -> ServiceState {
        self.state.lock().expect("service state lock").clone()
    }

    fn set(&self, state: ServiceState) {
        *self.state.lock().expect("service state lock") = state;
    }
}

/// Runs the service until it completes, fails for good, or `cancel` fires. `run_once` returns `None`
/// when the workload is gone (nothing left to supervise).
pub(crate) async fn supervise<F, Fut>(
    policy: RestartPolicy,
    status: &ServiceStatus,
    cancel: CancellationToken,
    mut run_once: F,
    mut on_exit: impl FnMut(&ServiceExit, &ServiceState),
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<ServiceExit>>,
{
    let mut restarts = 0;
    loop {
        let exit = tokio::select! {
            exit = run_once() => match exit {
                Some(exit) => exit,
                None => return,
            },
            () = cancel.cancelled() => return,
        };
        let (state, backoff) = policy.next(restarts, exit.clone());
        on_exit(&exit, &state);
        status.set(state.clone());
        let Some(backoff) = backoff else {
            return;
        };
        if let ServiceState::Running { restarts: r, .. } = state {
            restarts = r;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = cancel.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const POLICY: RestartPolicy = RestartPolicy {
        max_restarts: 2,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(250),
    };

    #[test]
    fn failures_restart_with_growing_backoff_until_restarts_run_out() {
        let fail = || ServiceExit::Failed("exit code 1".into());
        let (state, backoff) = POLICY.next(0, fail());
        assert_eq!(backoff, Some(Duration::from_millis(100)));
        assert_eq!(
            state,
            ServiceState::Running {
                restarts: 1,
                last_error: Some("exit code 1".into())
            }
        );
        assert_eq!(POLICY.next(1, fail()).1, Some(Duration::from_millis(200)));
        let (state, backoff) = POLICY.next(2, fail());
        assert_eq!(backoff, None);
        assert_eq!(
            state.describe(2),
            "service failed after 2 of 2 restarts: exit code 1"
        );
        let capped = RestartPolicy {
            max_restarts: 100,
            ..POLICY
        };
        assert_eq!(capped.next(40, fail()).1, Some(Duration::from_millis(250)));
    }

    #[test]
    fn a_clean_exit_completes_without_restart() {
        let (state, backoff) = POLICY.next(1, ServiceExit::Completed);
        assert_eq!(state, ServiceState::Completed { restarts: 1 });
        assert_eq!(backoff, None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_supervisor_runs_max_restarts_plus_one_times() {
        let runs = AtomicU32::new(0);
        let status = ServiceStatus::new(POLICY.max_restarts);
        let mut exits = Vec::new();
        supervise(
            POLICY,
            &status,
            CancellationToken::new(),
            || {
                runs.fetch_add(1, Ordering::Relaxed);
                async { Some(ServiceExit::Failed("boom".into())) }
            },
            |exit, _| exits.push(exit.clone()),
        )
        .await;
        assert_eq!(runs.load(Ordering::Relaxed), 3);
        assert_eq!(exits.len(), 3);
        assert!(matches!(status.get(), ServiceState::Failed { restarts: 2, .. }));
    }

    #[tokio::test]
    async fn cancelling_ends_a_running_service() {
        let status = ServiceStatus::new(5);
        let cancel = CancellationToken::new();
        cancel.cancel();
        supervise(
            POLICY,
            &status,
            cancel,
            std::future::pending::<Option<ServiceExit>>,
            |_, _| panic!("no exit"),
        )
        .await;
        assert!(matches!(status.get(), ServiceState::Running { restarts: 0, .. }));
    }
}
