//! Pure: whether an exited container restarts, and after how long (the kubelet's crash-loop back-off).

use std::time::Duration;

/// A pod's `restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart on every exit.
    Always,
    /// Restart on a non-zero exit code.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// Parses the API value (default `Always`).
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("OnFailure") => Self::OnFailure,
            Some("Never") => Self::Never,
            _ => Self::Always,
        }
    }

    /// Whether a container that exited with `exit_code` is restarted.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => exit_code != 0,
            Self::Never => false,
        }
    }
}

/// Crash-loop back-off: `initial`, doubling per consecutive restart, capped at `max`; a container that
/// ran at least `reset_after` starts over at `initial`. The kubelet uses 10 s / 5 min / 10 min; the
/// defaults here are shorter so that tests of restart behaviour stay fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first restart.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// A run at least this long resets the back-off.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay before the next start, given how many back-offs in a row preceded it (`streak`,
    /// 0 for the first) and how long the last run lasted. Returns the delay and the new streak.
    pub fn next_delay(&self, streak: u32, last_run: Duration) -> (Duration, u32) {
        let streak = if last_run >= self.reset_after { 0 } else { streak };
        let factor = 2u32.saturating_pow(streak.min(31));
        let delay = self.initial.saturating_mul(factor).min(self.max);
        (delay, streak.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_decide_restarts_by_exit_code() {
        assert!(RestartPolicy::parse(None).restarts(0));
        assert!(RestartPolicy::parse(Some("Always")).restarts(0));
        assert!(RestartPolicy::parse(Some("OnFailure")).restarts(2));
        assert!(!RestartPolicy::parse(Some("OnFailure")).restarts(0));
        assert!(!RestartPolicy::parse(Some("Never")).restarts(1));
    }

    #[test]
    fn backoff_doubles_caps_and_resets_after_a_long_run() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(5),
            reset_after: Duration::from_secs(60),
        };
        let short = Duration::from_millis(10);
        let (d0, s) = b.next_delay(0, short);
        let (d1, s) = b.next_delay(s, short);
        let (d2, s) = b.next_delay(s, short);
        let (d3, s) = b.next_delay(s, short);
        assert_eq!([d0, d1, d2, d3], [1, 2, 4, 5].map(Duration::from_secs));
        let (d4, s) = b.next_delay(s, Duration::from_secs(61));
        assert_eq!((d4, s), (Duration::from_secs(1), 1), "reset after a long run");
        let (huge, _) = b.next_delay(u32::MAX, short);
        assert_eq!(huge, Duration::from_secs(5), "no overflow");
    }
}
