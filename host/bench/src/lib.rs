//! Shared parts of the host benchmarks (`host-bench`, `workloads-bench`): running `wrk`, reading
//! Prometheus histograms, a minimal HTTP/1.1 GET, and a `weft-host` process under test.

pub mod http1;
pub mod stats;
pub mod weft;
pub mod wrk;
