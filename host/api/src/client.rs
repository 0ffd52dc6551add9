//! A typed client for the host control API: what the operator uses to talk to hosts.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::{RequestErrorKind, Subscriber};
use futures::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::messages::{
    Empty, HostHeartbeat, WorkloadStartRequest, WorkloadStartResponse, WorkloadState, WorkloadStatus,
    WorkloadStatusRequest, WorkloadStatusResponse, WorkloadStopRequest, WorkloadStopResponse,
};
use crate::subjects::{self, Command};

/// How many bytes of an undecodable payload an error or log line quotes.
pub const SNIPPET_LEN: usize = 256;

/// Why a request to a host failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nobody is subscribed to the subject: the host is gone or not connected.
    #[error("no responders on {subject}: host is not connected to NATS")]
    NoResponders {
        /// The request subject.
        subject: String,
    },
    /// The host did not answer in time.
    #[error("host did not answer {subject} within {timeout:?}")]
    Timeout {
        /// The request subject.
        subject: String,
        /// How long the client waited.
        timeout: Duration,
    },
    /// The request could not be sent (connection closed, payload too large, invalid subject).
    #[error("request on {subject} failed: {source}")]
    Request {
        /// The request subject.
        subject: String,
        /// The NATS error.
        #[source]
        source: async_nats::RequestError,
    },
    /// The request could not be encoded.
    #[error("encoding the request for {subject}: {source}")]
    Encode {
        /// The request subject.
        subject: String,
        /// The encoding error.
        #[source]
        source: serde_json::Error,
    },
    /// The reply is not a valid message of the expected type.
    #[error("undecodable reply on {subject}: {source}; payload: {snippet}")]
    Decode {
        /// The request subject.
        subject: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
        /// The start of the payload (at most [`SNIPPET_LEN`] bytes, lossily decoded).
        snippet: String,
    },
    /// The reply carries no `workloadStatus`.
    #[error("reply on {subject} has no workloadStatus")]
    MissingStatus {
        /// The request subject.
        subject: String,
    },
    /// The host answered with `WORKLOAD_STATE_ERROR`.
    #[error("host reported an error for workload {workload_id:?}: {message}")]
    Host {
        /// The request subject.
        subject: String,
        /// The workload ID the host echoed.
        workload_id: String,
        /// The host's error text.
        message: String,
    },
}

impl ClientError {
    /// Whether retrying the same request later may succeed (the host was unreachable or slow),
    /// as opposed to the host having answered.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::NoResponders { .. } | ClientError::Timeout { .. } | ClientError::Request { .. }
        )
    }
}

/// The start of a payload for error messages and logs: at most [`SNIPPET_LEN`] bytes, lossily decoded.
pub fn payload_snippet(payload: &[u8]) -> String {
    let cut = &payload[..payload.len().min(SNIPPET_LEN)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if payload.len() > SNIPPET_LEN {
        s.push('…');
    }
    s
}

/// Per-command reply timeouts. The defaults are wasmCloud's operator values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `heartbeat` (default 5 s).
    pub heartbeat: Duration,
    /// `workload.start` (default 60 s; includes the image pull).
    pub start: Duration,
    /// `workload.status` (default 5 s).
    pub status: Duration,
    /// `workload.stop` (default 30 s).
    pub stop: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            heartbeat: subjects::HEARTBEAT_TIMEOUT,
            start: subjects::WORKLOAD_START_TIMEOUT,
            status: subjects::WORKLOAD_STATUS_TIMEOUT,
            stop: subjects::WORKLOAD_STOP_TIMEOUT,
        }
    }
}

impl Timeouts {
    /// The timeout for `command`.
    pub fn for_command(&self, command: Command) -> Duration {
        match command {
            Command::Heartbeat => self.heartbeat,
            Command::WorkloadStart => self.start,
            Command::WorkloadStatus => self.status,
            Command::WorkloadStop => self.stop,
        }
    }
}

/// Sends control requests to hosts over NATS request/reply.
#[derive(Debug, Clone)]
pub struct HostClient {
    nats: async_nats::Client,
    timeouts: Timeouts,
}

impl HostClient {
    /// A client using `nats` with wasmCloud's operator timeouts.
    pub fn new(nats: async_nats::Client) -> Self {
        Self {
            nats,
            timeouts: Timeouts::default(),
        }
    }

    /// Replaces the reply timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The underlying NATS client.
    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    /// Asks a host for a fresh heartbeat.
    pub async fn heartbeat(&self, host_id: &str) -> Result<HostHeartbeat, ClientError> {
        self.request(host_id, Command::Heartbeat, &Empty {}).await
    }

    /// Starts a workload. A reply in `WORKLOAD_STATE_ERROR` (failed pull, invalid spec, duplicate ID)
    /// is returned as [`ClientError::Host`] with the host's message.
    pub async fn start(
        &self,
        host_id: &str,
        req: &WorkloadStartRequest,
    ) -> Result<WorkloadStatus, ClientError> {
        let subject = subjects::command_subject(host_id, Command::WorkloadStart);
        let resp: WorkloadStartResponse = self.request(host_id, Command::WorkloadStart, req).await?;
        status_or_error(subject, resp.workload_status)
    }

    /// Reports a workload's status. Every state is returned as is, including `NOT_FOUND` and `ERROR`
    /// (a workload that failed is a state to act on, not a failed request).
    pub async fn status(&self, host_id: &str, workload_id: &str) -> Result<WorkloadStatus, ClientError> {
        let subject = subjects::command_subject(host_id, Command::WorkloadStatus);
        let req = WorkloadStatusRequest {
            workload_id: workload_id.to_string(),
        };
        let resp: WorkloadStatusResponse = self.request(host_id, Command::WorkloadStatus, &req).await?;
        resp.workload_status.ok_or(ClientError::MissingStatus { subject })
    }

    /// Stops a workload. `STOPPING` and `NOT_FOUND` (already gone) are successes; `ERROR` is returned
    /// as [`ClientError::Host`].
    pub async fn stop(&self, host_id: &str, workload_id: &str) -> Result<WorkloadStatus, ClientError> {
        let subject = subjects::command_subject(host_id, Command::WorkloadStop);
        let req = WorkloadStopRequest {
            workload_id: workload_id.to_string(),
        };
        let resp: WorkloadStopResponse = self.request(host_id, Command::WorkloadStop, &req).await?;
        status_or_error(subject, resp.workload_status)
    }

    /// One request/reply round trip with any message types, returning the decoded reply as is.
    pub async fn request<Req, Resp>(
        &self,
        host_id: &str,
        command: Command,
        req: &Req,
    ) -> Result<Resp, ClientError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let subject = subjects::command_subject(host_id, command);
        let payload = serde_json::to_vec(req).map_err(|source| ClientError::Encode {
            subject: subject.clone(),
            source,
        })?;
        let timeout = self.timeouts.for_command(command);
        let request = async_nats::Request::new()
            .payload(payload.into())
            .timeout(Some(timeout));
        let reply = match self.nats.send_request(subject.clone(), request).await {
            Ok(reply) => reply,
            Err(e) => {
                return Err(match e.kind() {
                    RequestErrorKind::NoResponders => ClientError::NoResponders { subject },
                    RequestErrorKind::TimedOut => ClientError::Timeout { subject, timeout },
                    _ => ClientError::Request { subject, source: e },
                });
            }
        };
        serde_json::from_slice(&reply.payload).map_err(|source| ClientError::Decode {
            subject,
            source,
            snippet: payload_snippet(&reply.payload),
        })
    }

    /// Subscribes to every host's heartbeats (`runtime.operator.heartbeat.>`). Returns once the server
    /// has registered the subscription, so no heartbeat published afterwards is missed.
    pub async fn subscribe_heartbeats(&self) -> Result<HeartbeatSubscription, SyncError> {
        let sub = self
            .nats
            .subscribe(subjects::HEARTBEAT_WILDCARD)
            .await
            .map_err(SyncError::Subscribe)?;
        server_round_trip(&self.nats, Duration::from_secs(10)).await?;
        Ok(HeartbeatSubscription {
            sub,
            malformed: MalformedCounter::default(),
        })
    }
}

/// A round trip through the NATS server did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Subscribing failed.
    #[error("subscribing: {0}")]
    Subscribe(#[source] async_nats::SubscribeError),
    /// Publishing failed.
    #[error("publishing: {0}")]
    Publish(#[source] async_nats::PublishError),
    /// The server did not answer in time (not connected?).
    #[error("the NATS server did not complete a round trip within {0:?}")]
    Timeout(Duration),
}

/// Waits until the server has processed everything this client sent before (subscriptions included):
/// sends a message to a fresh inbox and waits for it to come back. `Client::flush` only empties the
/// local write buffer, which does not guarantee that.
pub async fn server_round_trip(nats: &async_nats::Client, timeout: Duration) -> Result<(), SyncError> {
    let inbox = nats.new_inbox();
    let mut probe = nats
        .subscribe(inbox.clone())
        .await
        .map_err(SyncError::Subscribe)?;
    nats.publish(inbox, bytes::Bytes::new())
        .await
        .map_err(SyncError::Publish)?;
    match tokio::time::timeout(timeout, probe.next()).await {
        Ok(Some(_)) => Ok(()),
        _ => Err(SyncError::Timeout(timeout)),
    }
}

fn status_or_error(subject: String, status: Option<WorkloadStatus>) -> Result<WorkloadStatus, ClientError> {
    let status = status.ok_or_else(|| ClientError::MissingStatus {
        subject: subject.clone(),
    })?;
    if status.workload_state == WorkloadState::Error {
        return Err(ClientError::Host {
            subject,
            workload_id: status.workload_id,
            message: status.message,
        });
    }
    Ok(status)
}

/// Why a heartbeat payload was dropped.
#[derive(Debug, thiserror::Error)]
pub enum MalformedHeartbeat {
    /// The subject is not `runtime.operator.heartbeat.<host-id>`.
    #[error("subject {0:?} is not runtime.operator.heartbeat.<host-id>")]
    Subject(String),
    /// The payload is not a `HostHeartbeat`.
    #[error("undecodable heartbeat on {subject}: {source}; payload: {snippet}")]
    Decode {
        /// The subject.
        subject: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
        /// The start of the payload.
        snippet: String,
    },
    /// The heartbeat's `id` differs from the host ID in its subject.
    #[error("heartbeat on {subject} carries id {id:?}")]
    IdMismatch {
        /// The subject.
        subject: String,
        /// The `id` field.
        id: String,
    },
}

/// Decodes and checks one heartbeat message.
pub fn parse_heartbeat(subject: &str, payload: &[u8]) -> Result<HostHeartbeat, MalformedHeartbeat> {
    let host_id =
        subjects::heartbeat_host_id(subject).ok_or_else(|| MalformedHeartbeat::Subject(subject.into()))?;
    let hb: HostHeartbeat = serde_json::from_slice(payload).map_err(|source| MalformedHeartbeat::Decode {
        subject: subject.to_string(),
        source,
        snippet: payload_snippet(payload),
    })?;
    if hb.id != host_id {
        return Err(MalformedHeartbeat::IdMismatch {
            subject: subject.to_string(),
            id: hb.id,
        });
    }
    Ok(hb)
}

/// A shared count of dropped heartbeat payloads (clone it before moving the stream to keep reading it).
#[derive(Debug, Clone, Default)]
pub struct MalformedCounter(Arc<AtomicU64>);

impl MalformedCounter {
    /// Payloads dropped so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A stream of valid heartbeats from every host. Malformed payloads (undecodable JSON, a subject that
/// is not a heartbeat subject, an `id` that differs from the subject's host ID) are logged, counted
/// and dropped: one bad host never interrupts the stream.
#[derive(Debug)]
pub struct HeartbeatSubscription {
    sub: Subscriber,
    malformed: MalformedCounter,
}

impl HeartbeatSubscription {
    /// Payloads dropped so far.
    pub fn malformed_count(&self) -> u64 {
        self.malformed.get()
    }

    /// A handle on the dropped-payload count that outlives moves of the stream.
    pub fn malformed_counter(&self) -> MalformedCounter {
        self.malformed.clone()
    }
}

impl Stream for HeartbeatSubscription {
    type Item = HostHeartbeat;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<HostHeartbeat>> {
        loop {
            match Pin::new(&mut self.sub).poll_next(cx) {
                Poll::Ready(Some(msg)) => match parse_heartbeat(&msg.subject, &msg.payload) {
                    Ok(hb) => return Poll::Ready(Some(hb)),
                    Err(e) => {
                        self.malformed.inc();
                        tracing::warn!(error = %e, "dropping malformed heartbeat");
                    }
                },
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// NATS connection options for control-plane peers, like wasmCloud's operator: ping every minute,
/// 5 s connect timeout, reconnect forever (the first retry immediately, then every second plus
/// 100 ms–1 s of jitter), and connection events logged with `tracing`. [`crate::connect::connect`]
/// makes one direct first attempt with them, then retries the initial connection in the background.
pub fn control_plane_connect_options(name: &str) -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::new()
        .name(name)
        .ping_interval(Duration::from_secs(60))
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(|event| async move { log_connection_event(&event) })
}

/// Logs a NATS connection event at a fitting level (slow consumers and disconnections are warnings).
pub fn log_connection_event(event: &async_nats::Event) {
    match event {
        async_nats::Event::Connected => tracing::info!("connected to NATS"),
        async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
        async_nats::Event::SlowConsumer(sid) => {
            tracing::warn!(subscription = sid, "NATS slow consumer: messages were dropped")
        }
        async_nats::Event::ClientError(err) => tracing::warn!(%err, "NATS client error"),
        async_nats::Event::ServerError(err) => tracing::warn!(%err, "NATS server error"),
        other => tracing::debug!(event = %other, "NATS connection event"),
    }
}

/// The reconnect delay for the `attempts`-th consecutive attempt: none for the first, then 1 s plus
/// 100 ms–1 s of jitter.
pub fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    Duration::from_secs(1) + Duration::from_millis(100 + jitter_below(900))
}

/// A cheap pseudo-random number below `bound` (jitter only; not for anything security-related).
fn jitter_below(bound: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish() % bound.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_is_immediate_then_jittered_around_one_second() {
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        let delays: Vec<Duration> = (2..200).map(reconnect_delay).collect();
        for d in &delays {
            assert!(
                *d >= Duration::from_millis(1100) && *d < Duration::from_millis(2000),
                "{d:?}"
            );
        }
        let first = delays[0];
        assert!(delays.iter().any(|d| *d != first), "jitter varies");
    }

    #[test]
    fn heartbeat_parsing_checks_subject_and_id() {
        let hb = parse_heartbeat(
            "runtime.operator.heartbeat.h1",
            br#"{"id":"h1","workloadCount":"2"}"#,
        )
        .unwrap();
        assert_eq!((hb.id.as_str(), hb.workload_count), ("h1", 2));
        assert!(matches!(
            parse_heartbeat("runtime.operator.heartbeat.h1", br#"{"id":"h2"}"#),
            Err(MalformedHeartbeat::IdMismatch { .. })
        ));
        assert!(matches!(
            parse_heartbeat("runtime.operator.x", br#"{"id":"h1"}"#),
            Err(MalformedHeartbeat::Subject(_))
        ));
        let err = parse_heartbeat("runtime.operator.heartbeat.h1", b"not json at all").unwrap_err();
        assert!(err.to_string().contains("not json at all"), "{err}");
    }

    #[test]
    fn snippets_are_bounded() {
        let long = vec![b'x'; 1000];
        let s = payload_snippet(&long);
        assert_eq!(s.chars().filter(|c| *c == 'x').count(), SNIPPET_LEN);
        assert!(s.ends_with('…'));
        assert_eq!(payload_snippet(b"{}"), "{}");
    }

    #[test]
    fn error_replies_become_host_errors() {
        let err = status_or_error(
            "s".into(),
            Some(WorkloadStatus::new(
                "w1",
                WorkloadState::Error,
                "Workload ID [w1] already exists",
            )),
        )
        .unwrap_err();
        assert!(matches!(&err, ClientError::Host { workload_id, message, .. }
            if workload_id == "w1" && message.contains("already exists")));
        assert!(!err.is_transient());
        assert!(matches!(
            status_or_error("s".into(), None),
            Err(ClientError::MissingStatus { .. })
        ));
        let ok = status_or_error(
            "s".into(),
            Some(WorkloadStatus::new("w1", WorkloadState::NotFound, "")),
        )
        .unwrap();
        assert_eq!(ok.workload_state, WorkloadState::NotFound);
    }
}
