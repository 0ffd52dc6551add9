//! What a controller implements: the [`Reconciler`] trait, the [`Action`] it returns and its error contract.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::key::ObjectKey;

/// What to do after a successful reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing until the object (or something mapped to it) changes again.
    Done,
    /// Reconcile again after this delay (e.g. a periodic check).
    RequeueAfter(Duration),
    /// Reconcile again after the object's back-off delay, without counting an error.
    Requeue,
}

impl Action {
    /// Nothing more to do.
    pub fn done() -> Self {
        Self::Done
    }

    /// Reconcile again after `delay`.
    pub fn requeue_after(delay: Duration) -> Self {
        Self::RequeueAfter(delay)
    }

    /// Reconcile again after the object's back-off delay.
    pub fn requeue() -> Self {
        Self::Requeue
    }
}

/// The error contract of a reconcile. `category` becomes a metric label, so it must come from a small
/// fixed set (never the message); terminal errors are not retried until the object changes.
pub trait ReconcileError: std::error::Error + Send + Sync + 'static {
    /// A short, bounded category for metrics and events, e.g. `"kube_api"` or `"invalid_spec"`.
    fn category(&self) -> &'static str {
        "reconcile"
    }

    /// Whether retrying cannot help (controller-runtime's `TerminalError`).
    fn is_terminal(&self) -> bool {
        false
    }
}

/// The category of a Kubernetes API error.
pub fn kube_error_category(err: &kube::Error) -> &'static str {
    match err {
        kube::Error::Api(status) => match status.code {
            404 => "not_found",
            409 => "conflict",
            401 | 403 => "forbidden",
            422 | 400 => "invalid",
            429 => "throttled",
            500..=599 => "api_server",
            _ => "kube_api",
        },
        kube::Error::SerdeError(_) => "decode",
        _ => "transport",
    }
}

impl ReconcileError for kube::Error {
    fn category(&self) -> &'static str {
        kube_error_category(self)
    }
}

/// A ready-made error for controllers that need nothing richer: a category, a terminal flag and a source.
#[derive(Debug, thiserror::Error)]
#[error("{category}: {source}")]
pub struct Failure {
    category: &'static str,
    terminal: bool,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl Failure {
    /// A retryable failure.
    pub fn new(category: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            category,
            terminal: false,
            source: source.into(),
        }
    }

    /// A failure that is not retried until the object changes.
    pub fn terminal(
        category: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            category,
            terminal: true,
            source: source.into(),
        }
    }
}

impl ReconcileError for Failure {
    fn category(&self) -> &'static str {
        self.category
    }

    fn is_terminal(&self) -> bool {
        self.terminal
    }
}

impl From<kube::Error> for Failure {
    fn from(err: kube::Error) -> Self {
        Self::new(kube_error_category(&err), err)
    }
}

/// Facts about the reconcile in progress.
#[derive(Debug, Clone)]
pub struct Context {
    pub(crate) controller: Arc<str>,
    pub(crate) key: ObjectKey,
    pub(crate) failures: u32,
}

impl Context {
    /// A context for calling a reconciler directly (scenario tests against a mocked apiserver): the
    /// controller's name, the key, and how many failures precede this attempt.
    pub fn new(controller: &str, key: ObjectKey, failures: u32) -> Self {
        Self {
            controller: controller.into(),
            key,
            failures,
        }
    }

    /// The controller's name (also its field manager for server-side apply).
    pub fn controller(&self) -> &str {
        &self.controller
    }

    /// The key being reconciled.
    pub fn key(&self) -> &ObjectKey {
        &self.key
    }

    /// How many times in a row this key's reconcile has failed before this attempt.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A controller's reconcile logic for objects of kind `K`.
///
/// The framework calls `reconcile` with the latest cached object; the same key is never reconciled
/// concurrently. It must be idempotent: it may run again for the same state.
pub trait Reconciler<K>: Send + Sync + 'static {
    /// The error type; see [`ReconcileError`].
    type Error: ReconcileError;

    /// Brings the world in line with `obj`.
    fn reconcile(
        &self,
        obj: Arc<K>,
        ctx: &Context,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send;

    /// Called when a queued key is no longer in the cache (the object was deleted). Use finalizers for
    /// cleanup that must happen; this is only a hint.
    fn reconcile_missing(
        &self,
        key: &ObjectKey,
        ctx: &Context,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send {
        let _ = (key, ctx);
        async { Ok(Action::Done) }
    }
}
