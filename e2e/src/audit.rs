//! The apiserver's audit log, for tests that must prove what a component did (or did not do): "exactly
//! one watch on pods", "no 403 for the operator's ServiceAccount", "the kubelet issued the final delete".
//!
//! The policy logs every request at `Metadata` level (who, verb, resource, response code; no bodies)
//! in the stages `ResponseStarted` (long-running requests such as watches, when they start) and
//! `ResponseComplete`. `RequestReceived` is omitted to halve the volume. The apiserver writes the
//! log in blocking mode, so an event is in the file before the response reaches the client.
//!
//! The log is shared by every test of the run: filter by user (each component should run under its
//! own ServiceAccount), namespace and a [`AuditMark`] taken before the action under test.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// The audit policy the apiserver runs with.
pub const POLICY: &str = "\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
";

/// Read access to the audit log file.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
}

/// A position in the audit log: events after it are those logged after the mark was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AuditMark(u64);

/// One audit event (the fields logged at `Metadata` level that tests use).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// `Metadata`.
    #[serde(default)]
    pub level: String,
    /// Unique per request; the same for all stages of one request.
    #[serde(default, rename = "auditID")]
    pub audit_id: String,
    /// `ResponseStarted` or `ResponseComplete`.
    #[serde(default)]
    pub stage: String,
    /// The request path and query, e.g. `/api/v1/pods?watch=true&...`.
    #[serde(default, rename = "requestURI")]
    pub request_uri: String,
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection.
    #[serde(default)]
    pub verb: String,
    /// The authenticated user.
    #[serde(default)]
    pub user: AuditUser,
    /// The user agent header.
    #[serde(default)]
    pub user_agent: String,
    /// The object the request is about.
    #[serde(default)]
    pub object_ref: Option<AuditObjectRef>,
    /// The response status (code 403 for authorization denials).
    #[serde(default)]
    pub response_status: Option<AuditResponseStatus>,
}

/// The authenticated user of an [`AuditEvent`].
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct AuditUser {
    /// E.g. `system:serviceaccount:ns:name`.
    #[serde(default)]
    pub username: String,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The object of an [`AuditEvent`].
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditObjectRef {
    /// Plural resource, e.g. `pods`.
    #[serde(default)]
    pub resource: String,
    /// Namespace, empty for cluster-scoped or all-namespace requests.
    #[serde(default)]
    pub namespace: String,
    /// Object name, empty for list/watch.
    #[serde(default)]
    pub name: String,
    /// API group, empty for the core group.
    #[serde(default)]
    pub api_group: String,
    /// Subresource, e.g. `status`.
    #[serde(default)]
    pub subresource: String,
}

/// The response status of an [`AuditEvent`].
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct AuditResponseStatus {
    /// HTTP status code.
    #[serde(default)]
    pub code: u16,
}

impl AuditEvent {
    /// The resource of the request (`""` when it has none, e.g. `/healthz`).
    pub fn resource(&self) -> &str {
        self.object_ref
            .as_ref()
            .map(|o| o.resource.as_str())
            .unwrap_or("")
    }

    /// The namespace of the request (`""` when cluster-wide).
    pub fn namespace(&self) -> &str {
        self.object_ref
            .as_ref()
            .map(|o| o.namespace.as_str())
            .unwrap_or("")
    }

    /// The response code, if the request completed.
    pub fn code(&self) -> Option<u16> {
        self.response_status.as_ref().map(|s| s.code)
    }

    /// Whether the request is a watch (one event per watch at stage `ResponseStarted`).
    pub fn is_watch_start(&self) -> bool {
        self.verb == "watch" && self.stage == "ResponseStarted"
    }
}

impl AuditLog {
    /// The audit log at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current end of the log.
    pub fn mark(&self) -> AuditMark {
        AuditMark(std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0))
    }

    /// Every event in the log.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events_since(AuditMark(0))
    }

    /// The events logged after `mark`.
    pub fn events_since(&self, mark: AuditMark) -> Vec<AuditEvent> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        // A rotated (shorter) file starts over.
        let start = if mark.0 <= len { mark.0 } else { 0 };
        if file.seek(SeekFrom::Start(start)).is_err() {
            return Vec::new();
        }
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        parse_lines(&text)
    }

    /// Polls until an event after `mark` matches `predicate`, or `timeout` passes.
    pub async fn wait_for(
        &self,
        mark: AuditMark,
        timeout: Duration,
        predicate: impl Fn(&AuditEvent) -> bool,
    ) -> Option<AuditEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.events_since(mark).into_iter().find(|e| predicate(e)) {
                return Some(event);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Parses JSON-lines audit output; incomplete trailing lines (a write in progress) are skipped.
pub fn parse_lines(text: &str) -> Vec<AuditEvent> {
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/x/pods?watch=true","verb":"watch","user":{"username":"system:serviceaccount:x:op","groups":["system:serviceaccounts"]},"userAgent":"weft","objectRef":{"resource":"pods","namespace":"x","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200}}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a2","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/x/secrets","verb":"list","user":{"username":"system:serviceaccount:x:op"},"objectRef":{"resource":"secrets","namespace":"x","apiVersion":"v1"},"responseStatus":{"metadata":{},"status":"Failure","reason":"Forbidden","code":403}}
{"kind":"Event","level":"Meta"#;

    #[test]
    fn parses_events_and_skips_a_partial_line() {
        let events = parse_lines(SAMPLE);
        assert_eq!(events.len(), 2);
        assert!(events[0].is_watch_start());
        assert_eq!(events[0].resource(), "pods");
        assert_eq!(events[0].namespace(), "x");
        assert_eq!(events[1].code(), Some(403));
        assert_eq!(events[1].user.username, "system:serviceaccount:x:op");
    }

    #[test]
    fn events_since_a_mark_are_only_the_new_ones() {
        let dir = weft_testkit::TempDir::new("audit").unwrap();
        let path = dir.path().join("audit.log");
        let first = SAMPLE.lines().next().unwrap();
        std::fs::write(&path, format!("{first}\n")).unwrap();
        let log = AuditLog::new(&path);
        let mark = log.mark();
        assert_eq!(log.events().len(), 1);
        assert!(log.events_since(mark).is_empty());
        let second = SAMPLE.lines().nth(1).unwrap();
        std::fs::write(&path, format!("{first}\n{second}\n")).unwrap();
        let new = log.events_since(mark);
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].audit_id, "a2");
    }
}
