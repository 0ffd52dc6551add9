//! Bounded request loops: the load of the failover tests, benchmarks and `weft-dev --demo`. A loop sends
//! `GET /` with one `Host` header to one address (the gateway), one request at a time per worker, a new
//! connection each (what a `curl` loop does), and counts every answer that is not the expected `200`
//! body and every connection error, with the instant it happened. It stops when asked or at its limit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::testing::http_get_host;

/// How long one request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One request that did not get the expected answer.
#[derive(Debug, Clone)]
pub struct RequestFailure {
    /// When it was sent.
    pub at: Instant,
    /// What came back instead: `HTTP 502: …`, a connection error, or a timeout.
    pub what: String,
}

/// What a loop saw.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    /// Requests answered with the expected `200` body.
    pub ok: u64,
    /// Every other outcome, in order.
    pub failures: Vec<RequestFailure>,
    /// How long the loop ran.
    pub elapsed: Duration,
}

impl Traffic {
    /// Every request sent.
    pub fn total(&self) -> u64 {
        self.ok + self.failures.len() as u64
    }

    /// The failures sent at or after `from` and before `to`.
    pub fn failed_between(&self, from: Instant, to: Instant) -> usize {
        self.failures.iter().filter(|f| f.at >= from && f.at < to).count()
    }

    /// The first few failures, one per line (for assertion messages).
    pub fn summary(&self, max: usize) -> String {
        let mut out: Vec<String> = self.failures.iter().take(max).map(|f| f.what.clone()).collect();
        if self.failures.len() > max {
            out.push(format!("… and {} more", self.failures.len() - max));
        }
        out.join("\n")
    }
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    ok: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<RequestFailure>>,
}

/// A running request loop (stopped when [`RequestLoop::finish`]ed or dropped).
#[derive(Debug)]
pub struct RequestLoop {
    shared: Arc<Shared>,
    started: Instant,
    workers: Vec<JoinHandle<()>>,
}

impl RequestLoop {
    /// Starts `workers` loops of `GET /` with `Host: host` to `target`, expecting `200` with body `body`,
    /// each stopping after `limit` at the latest.
    pub fn start(target: SocketAddr, host: &str, body: &str, workers: usize, limit: Duration) -> Self {
        let shared = Arc::new(Shared::default());
        let started = Instant::now();
        let workers = (0..workers.max(1))
            .map(|_| {
                let shared = shared.clone();
                let host = host.to_string();
                let body = body.to_string();
                tokio::spawn(async move {
                    while !shared.stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                        let at = Instant::now();
                        let outcome =
                            tokio::time::timeout(REQUEST_TIMEOUT, http_get_host(target, &host)).await;
                        let failure = match outcome {
                            Ok(Ok(r)) if r.status == 200 && r.body == body => None,
                            Ok(Ok(r)) => Some(format!("HTTP {}: {}", r.status, r.body.trim())),
                            Ok(Err(e)) => Some(format!("connection: {e}")),
                            Err(_) => Some(format!("no answer within {REQUEST_TIMEOUT:?}")),
                        };
                        match failure {
                            None => {
                                shared.ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(what) => {
                                shared.failed.fetch_add(1, Ordering::Relaxed);
                                shared
                                    .failures
                                    .lock()
                                    .expect("not poisoned")
                                    .push(RequestFailure { at, what });
                            }
                        }
                    }
                })
            })
            .collect();
        Self {
            shared,
            started,
            workers,
        }
    }

    /// Requests answered as expected and requests failed so far.
    pub fn progress(&self) -> (u64, u64) {
        (
            self.shared.ok.load(Ordering::Relaxed),
            self.shared.failed.load(Ordering::Relaxed),
        )
    }

    /// Stops the loop and returns what it saw.
    pub async fn finish(mut self) -> Traffic {
        self.shared.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.await;
        }
        let mut failures = std::mem::take(&mut *self.shared.failures.lock().expect("not poisoned"));
        failures.sort_by_key(|f| f.at);
        Traffic {
            ok: self.shared.ok.load(Ordering::Relaxed),
            failures,
            elapsed: self.started.elapsed(),
        }
    }
}

impl Drop for RequestLoop {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for w in &self.workers {
            w.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(at: Instant) -> RequestFailure {
        RequestFailure {
            at,
            what: "HTTP 502: Gateway Error".into(),
        }
    }

    #[test]
    fn failures_are_counted_by_window_and_summarised() {
        let t0 = Instant::now();
        let traffic = Traffic {
            ok: 10,
            failures: vec![
                failure(t0),
                failure(t0 + Duration::from_secs(1)),
                failure(t0 + Duration::from_secs(2)),
            ],
            elapsed: Duration::from_secs(3),
        };
        assert_eq!(traffic.total(), 13);
        assert_eq!(
            traffic.failed_between(t0 + Duration::from_millis(500), t0 + Duration::from_secs(2)),
            1
        );
        assert_eq!(traffic.failed_between(t0, t0 + Duration::from_secs(3)), 3);
        assert_eq!(traffic.summary(1), "HTTP 502: Gateway Error\n… and 2 more");
    }
}
