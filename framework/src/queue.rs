//! A work queue with client-go's semantics: deduplicated keys, a key is never handed to two workers at once,
//! delayed adds, per-key rate-limited retries, and the `workqueue_*` metrics.
//!
//! A key added while a worker processes it is marked dirty and queued again when that worker calls
//! [`WorkQueue::done`], so no change is lost and no key is reconciled concurrently with itself.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backoff::ItemBackoff;
use crate::metrics::QueueMetrics;

/// A cloneable handle to one work queue.
pub struct WorkQueue<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T> std::fmt::Debug for WorkQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkQueue").finish_non_exhaustive()
    }
}

struct Inner<T> {
    state: Mutex<State<T>>,
    ready: Notify,
    metrics: QueueMetrics,
}

struct State<T> {
    queue: VecDeque<T>,
    /// Keys that need processing: queued, or to be queued again when their worker is done.
    dirty: HashSet<T>,
    /// Keys handed to a worker, with the time they were handed out.
    processing: HashMap<T, Instant>,
    /// When each dirty key was added (for `workqueue_queue_duration_seconds`).
    added_at: HashMap<T, Instant>,
    /// Delayed keys and when they become ready (the earliest request wins).
    waiting: HashMap<T, Instant>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    timer_keys: HashMap<u64, T>,
    next_timer: u64,
    backoff: ItemBackoff<T>,
    shutting_down: bool,
}

impl<T: Hash + Eq + Clone + Send + 'static> WorkQueue<T> {
    /// A queue with controller-runtime's default back-off (5 ms doubling to 1000 s).
    pub fn new(metrics: QueueMetrics) -> Self {
        Self::with_backoff(metrics, ItemBackoff::default())
    }

    /// A queue with the given per-key back-off.
    pub fn with_backoff(metrics: QueueMetrics, backoff: ItemBackoff<T>) -> Self {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashMap::new(),
                added_at: HashMap::new(),
                waiting: HashMap::new(),
                timers: BinaryHeap::new(),
                timer_keys: HashMap::new(),
                next_timer: 0,
                backoff,
                shutting_down: false,
            }),
            ready: Notify::new(),
            metrics,
        });
        let weak = Arc::downgrade(&inner);
        inner.metrics.set_probe(Arc::new(move || {
            let Some(inner) = weak.upgrade() else {
                return (0.0, 0.0);
            };
            let state = inner.state.lock().expect("work queue lock");
            let now = Instant::now();
            state
                .processing
                .values()
                .fold((0.0, 0.0), |(sum, max): (f64, f64), start| {
                    let secs = now.duration_since(*start).as_secs_f64();
                    (sum + secs, max.max(secs))
                })
        }));
        Self { inner }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.inner.state.lock().expect("work queue lock")
    }

    /// Queues `key` now (a no-op if it is already queued).
    pub fn add(&self, key: T) {
        let mut state = self.lock();
        if self.add_locked(&mut state, key, Instant::now()) {
            drop(state);
            self.inner.ready.notify_one();
        }
    }

    /// Adds under the lock; returns whether a worker should be woken.
    fn add_locked(&self, state: &mut State<T>, key: T, now: Instant) -> bool {
        if state.shutting_down || state.dirty.contains(&key) {
            return false;
        }
        self.inner.metrics.adds.inc();
        state.dirty.insert(key.clone());
        state.added_at.insert(key.clone(), now);
        if state.processing.contains_key(&key) {
            return false;
        }
        state.queue.push_back(key);
        self.inner.metrics.depth.set(state.queue.len() as i64);
        true
    }

    /// Queues `key` once `delay` has passed; an earlier pending request for the same key wins.
    pub fn add_after(&self, key: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let mut state = self.lock();
        if state.shutting_down {
            return;
        }
        let at = Instant::now() + delay;
        if state.waiting.get(&key).is_some_and(|existing| *existing <= at) {
            return;
        }
        state.waiting.insert(key.clone(), at);
        let id = state.next_timer;
        state.next_timer += 1;
        state.timers.push(Reverse((at, id)));
        state.timer_keys.insert(id, key);
        drop(state);
        // Wake a sleeping worker so it re-arms its timer for the new, possibly earlier, deadline.
        self.inner.ready.notify_one();
    }

    /// Queues `key` after its back-off delay and counts a retry; returns the delay.
    pub fn add_rate_limited(&self, key: T) -> Duration {
        let delay = self.lock().backoff.next_delay(&key);
        self.inner.metrics.retries.inc();
        self.add_after(key, delay);
        delay
    }

    /// Resets `key`'s back-off (after a success or a terminal error).
    pub fn forget(&self, key: &T) {
        self.lock().backoff.forget(key);
    }

    /// How many consecutive failures `key` has had.
    pub fn failures(&self, key: &T) -> u32 {
        self.lock().backoff.failures(key)
    }

    /// Waits for the next key; `None` once the queue shuts down. The caller must call
    /// [`WorkQueue::done`] with the key when finished.
    pub async fn get(&self) -> Option<T> {
        loop {
            let notified = self.inner.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_timer = {
                let mut state = self.lock();
                if state.shutting_down {
                    return None;
                }
                let now = Instant::now();
                let mut woke = 0usize;
                while let Some(Reverse((at, id))) = state.timers.peek().copied() {
                    if at > now {
                        break;
                    }
                    state.timers.pop();
                    let Some(key) = state.timer_keys.remove(&id) else {
                        continue;
                    };
                    if state.waiting.get(&key) == Some(&at) {
                        state.waiting.remove(&key);
                        if self.add_locked(&mut state, key, now) {
                            woke += 1;
                        }
                    }
                }
                if let Some(key) = state.queue.pop_front() {
                    self.inner.metrics.depth.set(state.queue.len() as i64);
                    state.dirty.remove(&key);
                    if let Some(added) = state.added_at.remove(&key) {
                        self.inner
                            .metrics
                            .queue_duration
                            .observe(now.duration_since(added).as_secs_f64());
                    }
                    state.processing.insert(key.clone(), now);
                    let more = !state.queue.is_empty();
                    drop(state);
                    if more && woke > 0 {
                        self.inner.ready.notify_one();
                    }
                    return Some(key);
                }
                state.timers.peek().map(|Reverse((at, _))| *at)
            };
            match next_timer {
                Some(at) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Marks `key` as processed; if it was added again meanwhile, it is queued again.
    pub fn done(&self, key: &T) {
        let mut state = self.lock();
        if let Some(started) = state.processing.remove(key) {
            self.inner
                .metrics
                .work_duration
                .observe(started.elapsed().as_secs_f64());
        }
        if state.dirty.contains(key) && !state.shutting_down {
            state.queue.push_back(key.clone());
            self.inner.metrics.depth.set(state.queue.len() as i64);
            drop(state);
            self.inner.ready.notify_one();
        }
    }

    /// Stops handing out keys: every pending and future [`WorkQueue::get`] returns `None`.
    pub fn shut_down(&self) {
        self.lock().shutting_down = true;
        self.inner.ready.notify_waiters();
    }

    /// Whether [`WorkQueue::shut_down`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.lock().shutting_down
    }

    /// Number of keys ready to be handed out.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether no key is ready to be handed out.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of keys waiting for a delay to pass.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Number of keys handed out and not yet done.
    pub fn in_flight(&self) -> usize {
        self.lock().processing.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> WorkQueue<&'static str> {
        WorkQueue::new(QueueMetrics::detached("test"))
    }

    #[tokio::test]
    async fn deduplicates_and_keeps_order() {
        let q = queue();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.get().await, Some("a"));
        assert_eq!(q.get().await, Some("b"));
        q.done(&"a");
        q.done(&"b");
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_key_added_while_processing_is_queued_again_only_after_done() {
        let q = queue();
        q.add("a");
        let a = q.get().await.expect("a");
        q.add("a");
        assert_eq!(q.len(), 0, "never handed to two workers at once");
        assert_eq!(q.in_flight(), 1);
        q.done(&a);
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await, Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_adds_wait_and_the_earliest_request_wins() {
        let q = queue();
        q.add_after("a", Duration::from_secs(10));
        q.add_after("a", Duration::from_secs(3));
        q.add_after("a", Duration::from_secs(20));
        assert_eq!(q.waiting(), 1);
        let start = Instant::now();
        assert_eq!(q.get().await, Some("a"));
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        q.done(&"a");
        let nothing = tokio::time::timeout(Duration::from_secs(60), q.get()).await;
        assert!(
            nothing.is_err(),
            "the superseded 10 s and 20 s timers must not fire"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_retries_back_off_per_key_and_reset_on_forget() {
        let q = queue();
        let delays: Vec<_> = (0..4).map(|_| q.add_rate_limited("a")).collect();
        let ms = Duration::from_millis;
        assert_eq!(delays, vec![ms(5), ms(10), ms(20), ms(40)]);
        assert_eq!(q.add_rate_limited("b"), ms(5));
        q.forget(&"a");
        assert_eq!(q.failures(&"a"), 0);
        assert_eq!(q.add_rate_limited("a"), ms(5));
        assert_eq!(q.failures(&"b"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_worker_wakes_for_an_earlier_deadline() {
        let q = queue();
        q.add_after("late", Duration::from_secs(100));
        let worker = tokio::spawn({
            let q = q.clone();
            async move { q.get().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        q.add_after("early", Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(worker.await.expect("worker"), Some("early"));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn shut_down_releases_waiting_workers() {
        let q = queue();
        let worker = tokio::spawn({
            let q = q.clone();
            async move { q.get().await }
        });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(worker.await.expect("worker"), None);
        q.add("x");
        assert_eq!(q.len(), 0, "adds after shut-down are dropped");
    }

    #[tokio::test]
    async fn metrics_count_adds_retries_and_depth() {
        let metrics = crate::metrics::Metrics::new();
        let q: WorkQueue<&str> = WorkQueue::new(metrics.queue("m"));
        q.add("a");
        q.add("a");
        q.add("b");
        q.add_rate_limited("c");
        let text = metrics.encode_prometheus();
        assert!(
            text.contains("workqueue_adds_total{name=\"m\",controller=\"m\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("workqueue_retries_total{name=\"m\",controller=\"m\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("workqueue_depth{name=\"m\",controller=\"m\"} 2"),
            "{text}"
        );
        let a = q.get().await.expect("a");
        let text = metrics.encode_prometheus();
        assert!(text.contains("workqueue_queue_duration_seconds_count{name=\"m\",controller=\"m\"} 1"));
        assert!(
            text.contains("workqueue_unfinished_work_seconds{name=\"m\",controller=\"m\"} "),
            "{text}"
        );
        q.done(&a);
        let text = metrics.encode_prometheus();
        assert!(text.contains("workqueue_work_duration_seconds_count{name=\"m\",controller=\"m\"} 1"));
    }
}
