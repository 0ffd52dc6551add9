//! The Weft runtime gateway: one reverse proxy in front of every host. A request's `Host` header →
//! the Ready Workloads served for that hostname → the hosts that run them.
//!
//! - [`routes`]: the route table from the caches (pure).
//! - [`balance`]: round robin, passive health (ejection) and the retry budget (pure).
//! - [`proxy`]: the request path.
//! - [`controller`]: the Gateway-route controller, which rebuilds the table when the caches change.
//! - [`server`]: the HTTP/1.1 and h2c listener with graceful drain.

pub mod balance;
pub mod controller;
pub mod metrics;
pub mod proxy;
pub mod routes;
pub mod server;
