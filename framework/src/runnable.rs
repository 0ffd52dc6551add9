//! Anything the manager runs: controllers, and components such as a NATS subscriber.

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

/// A boxed error from a runnable.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A long-running part of the operator (controller-runtime's `Runnable`).
///
/// The manager starts it after the caches have synced and, if [`Runnable::needs_leader_election`], only
/// once this replica leads. It must return soon after `cancel` fires; returning an error stops the manager.
pub trait Runnable: Send + 'static {
    /// A name for logs.
    fn name(&self) -> String;

    /// Whether it may run only on the leader (true for anything that writes).
    fn needs_leader_election(&self) -> bool {
        true
    }

    /// Runs until `cancel` fires.
    fn start(self: Box<Self>, cancel: CancellationToken) -> BoxFuture<'static, Result<(), BoxError>>;
}
