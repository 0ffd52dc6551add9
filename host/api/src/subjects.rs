//! NATS subjects and the operator-side request timeouts of the control protocol.

use std::time::Duration;

/// Prefix of the subjects a host answers on: `runtime.host.<host-id>.<command>`.
pub const HOST_API_PREFIX: &str = "runtime.host";
/// Prefix of the subjects the operator listens on: `runtime.operator.heartbeat.<host-id>`.
pub const OPERATOR_API_PREFIX: &str = "runtime.operator";
/// What the operator subscribes to for every host's heartbeats.
pub const HEARTBEAT_WILDCARD: &str = "runtime.operator.heartbeat.>";

/// The interval at which hosts publish heartbeats unless configured otherwise.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);

/// Heartbeat label in which a Weft host advertises its heartbeat interval in milliseconds (e.g.
/// `1000ms`), so the operator knows when a heartbeat is overdue before it has seen two of them.
pub const HEARTBEAT_INTERVAL_LABEL: &str = "weft.dev/heartbeat-interval";

/// The value of [`HEARTBEAT_INTERVAL_LABEL`] for `interval` (a valid label value).
pub fn heartbeat_interval_label(interval: Duration) -> String {
    format!("{}ms", interval.as_millis())
}

/// Reads a [`HEARTBEAT_INTERVAL_LABEL`] value (`<n>ms` or `<n>s`); `None` for anything else or zero.
pub fn parse_heartbeat_interval_label(value: &str) -> Option<Duration> {
    let d = if let Some(ms) = value.strip_suffix("ms") {
        Duration::from_millis(ms.parse().ok()?)
    } else {
        Duration::from_secs(value.strip_suffix('s')?.parse().ok()?)
    };
    (!d.is_zero()).then_some(d)
}

/// How long the operator waits for a `heartbeat` reply.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the operator waits for a `workload.start` reply (it includes the image pull).
pub const WORKLOAD_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the operator waits for a `workload.status` reply.
pub const WORKLOAD_STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the operator waits for a `workload.stop` reply.
pub const WORKLOAD_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A request a host answers, the subject suffix after `runtime.host.<host-id>.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// `heartbeat`: reply with a fresh [`crate::HostHeartbeat`].
    Heartbeat,
    /// `workload.start`.
    WorkloadStart,
    /// `workload.status`.
    WorkloadStatus,
    /// `workload.stop`.
    WorkloadStop,
}

impl Command {
    /// Every command.
    pub const ALL: [Command; 4] = [
        Command::Heartbeat,
        Command::WorkloadStart,
        Command::WorkloadStatus,
        Command::WorkloadStop,
    ];

    /// The subject suffix, e.g. `workload.start`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Command::Heartbeat => "heartbeat",
            Command::WorkloadStart => "workload.start",
            Command::WorkloadStatus => "workload.status",
            Command::WorkloadStop => "workload.stop",
        }
    }

    /// The command with this subject suffix.
    pub fn from_suffix(suffix: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == suffix)
    }

    /// How long the operator waits for the reply (wasmCloud's values).
    pub const fn timeout(self) -> Duration {
        match self {
            Command::Heartbeat => HEARTBEAT_TIMEOUT,
            Command::WorkloadStart => WORKLOAD_START_TIMEOUT,
            Command::WorkloadStatus => WORKLOAD_STATUS_TIMEOUT,
            Command::WorkloadStop => WORKLOAD_STOP_TIMEOUT,
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `runtime.operator.heartbeat.<host-id>`: where a host publishes its heartbeats.
pub fn heartbeat_subject(host_id: &str) -> String {
    format!("{OPERATOR_API_PREFIX}.heartbeat.{host_id}")
}

/// `runtime.host.<host-id>.>`: what a host subscribes to.
pub fn host_wildcard_subject(host_id: &str) -> String {
    format!("{HOST_API_PREFIX}.{host_id}.>")
}

/// `runtime.host.<host-id>.<command>`: where the operator sends a request.
pub fn command_subject(host_id: &str, command: Command) -> String {
    format!("{HOST_API_PREFIX}.{host_id}.{}", command.as_str())
}

/// The command part of a host API subject: everything from the 4th token on (`workload.start` for
/// `runtime.host.<id>.workload.start`), or `None` if the subject is not under `runtime.host.<id>.`.
pub fn command_suffix(subject: &str) -> Option<&str> {
    let rest = subject.strip_prefix(HOST_API_PREFIX)?.strip_prefix('.')?;
    let (_host_id, command) = rest.split_once('.')?;
    Some(command)
}

/// The host ID of a heartbeat subject (`runtime.operator.heartbeat.<host-id>`).
pub fn heartbeat_host_id(subject: &str) -> Option<&str> {
    subject
        .strip_prefix(OPERATOR_API_PREFIX)?
        .strip_prefix(".heartbeat.")
        .filter(|id| !id.is_empty() && !id.contains('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_match_wasmcloud() {
        let id = "5f0d7c2e-1111-4a4a-9b9b-000000000001";
        assert_eq!(heartbeat_subject(id), format!("runtime.operator.heartbeat.{id}"));
        assert_eq!(host_wildcard_subject(id), format!("runtime.host.{id}.>"));
        assert_eq!(
            command_subject(id, Command::Heartbeat),
            format!("runtime.host.{id}.heartbeat")
        );
        assert_eq!(
            command_subject(id, Command::WorkloadStart),
            format!("runtime.host.{id}.workload.start")
        );
        assert_eq!(
            command_subject(id, Command::WorkloadStatus),
            format!("runtime.host.{id}.workload.status")
        );
        assert_eq!(
            command_subject(id, Command::WorkloadStop),
            format!("runtime.host.{id}.workload.stop")
        );
    }

    #[test]
    fn command_suffix_is_everything_after_the_host_id() {
        for c in Command::ALL {
            let subject = command_subject("h1", c);
            assert_eq!(command_suffix(&subject), Some(c.as_str()));
            assert_eq!(Command::from_suffix(c.as_str()), Some(c));
        }
        assert_eq!(
            command_suffix("runtime.host.h1.workload.restart"),
            Some("workload.restart")
        );
        assert_eq!(Command::from_suffix("workload.restart"), None);
        assert_eq!(command_suffix("runtime.host.h1"), None);
        assert_eq!(command_suffix("runtime.operator.heartbeat.h1"), None);
    }

    #[test]
    fn heartbeat_host_id_parses_only_heartbeat_subjects() {
        assert_eq!(heartbeat_host_id("runtime.operator.heartbeat.abc"), Some("abc"));
        assert_eq!(heartbeat_host_id("runtime.operator.heartbeat."), None);
        assert_eq!(heartbeat_host_id("runtime.operator.heartbeat.a.b"), None);
        assert_eq!(heartbeat_host_id("runtime.host.abc.heartbeat"), None);
    }

    #[test]
    fn heartbeat_interval_labels_round_trip() {
        let v = heartbeat_interval_label(Duration::from_millis(1500));
        assert_eq!(v, "1500ms");
        assert_eq!(
            parse_heartbeat_interval_label(&v),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_heartbeat_interval_label("15s"),
            Some(Duration::from_secs(15))
        );
        assert_eq!(parse_heartbeat_interval_label("0ms"), None);
        assert_eq!(parse_heartbeat_interval_label("fast"), None);
        assert_eq!(parse_heartbeat_interval_label("-1s"), None);
    }

    #[test]
    fn timeouts_match_the_operator() {
        assert_eq!(Command::Heartbeat.timeout(), Duration::from_secs(5));
        assert_eq!(Command::WorkloadStart.timeout(), Duration::from_secs(60));
        assert_eq!(Command::WorkloadStatus.timeout(), Duration::from_secs(5));
        assert_eq!(Command::WorkloadStop.timeout(), Duration::from_secs(30));
    }
}
