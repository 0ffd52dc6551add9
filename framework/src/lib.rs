//! A controller-runtime-style reconcile framework on kube-runtime.
//!
//! - [`Manager`]: one shared informer (watch + cache) per kind, cache sync before workers start,
//!   `/healthz` `/readyz` `/metrics`, leader election on a Lease, graceful shutdown.
//! - [`ControllerBuilder`]: `for` / `owns` / `watches(mapper)` / predicates / concurrency / name.
//! - [`Reconciler`]: returns an [`Action`]; errors back off per object (5 ms doubling to 1000 s), terminal
//!   errors are not retried, panics and timeouts are caught and counted.
//! - Helpers: [`finalizer`], [`conditions`], server-side [`apply`], [`events`].
//! - [`metrics`] with controller-runtime's metric names and labels.
//!
//! It knows nothing about any particular CRD. See `docs/framework.md`.

pub mod apply;
pub mod backoff;
pub mod cache;
pub mod cli;
pub mod conditions;
pub mod controller;
pub mod events;
pub mod exposition;
pub mod finalizer;
pub mod informer;
pub mod key;
pub mod leader;
pub mod manager;
pub mod metrics;
pub mod predicate;
pub mod queue;
pub mod reconcile;
pub mod runnable;
pub mod server;

pub use cache::Cache;
pub use controller::{Controller, ControllerBuilder};
pub use informer::{Informer, InformerEvent, InformerOptions};
pub use key::ObjectKey;
pub use leader::LeaderElectionConfig;
pub use manager::{Error, Manager, ManagerConfig, shutdown_signal};
pub use metrics::Metrics;
pub use predicate::Predicate;
pub use reconcile::{Action, Context, Failure, ReconcileError, Reconciler};
pub use runnable::{BoxError, Runnable};
