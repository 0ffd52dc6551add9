//! The controller builder (`for` / `owns` / `watches` / predicates / concurrency / name) and the workers
//! that run a [`Reconciler`] with per-object back-off, a panic guard, an optional timeout and metrics.

use std::any::TypeId;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::ClusterResourceScope;
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cache::Cache;
use crate::informer::{Informer, InformerEvent};
use crate::key::ObjectKey;
use crate::metrics::{ControllerMetrics, Metrics, RESULT_REQUEUE, RESULT_REQUEUE_AFTER, RESULT_SUCCESS};
use crate::predicate::Predicate;
use crate::queue::WorkQueue;
use crate::reconcile::{Action, Context, ReconcileError, Reconciler};
use crate::runnable::{BoxError, Runnable};

type Replay = Box<dyn Fn(&mut dyn FnMut(ObjectKey)) + Send + Sync>;
type Install = Box<dyn FnOnce(Arc<AtomicBool>, WorkQueue<ObjectKey>) + Send>;

/// Builds a controller for primary kind `K` on shared informers.
pub struct ControllerBuilder<K> {
    name: String,
    metrics: Metrics,
    primary: Informer<K>,
    predicates: Vec<Predicate<K>>,
    installs: Vec<Install>,
    replays: Vec<Replay>,
    concurrency: usize,
    reconcile_timeout: Option<Duration>,
    needs_leader_election: bool,
}

impl<K> Debug for ControllerBuilder<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerBuilder")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn is_cluster_scoped<K: Resource>() -> bool
where
    K::Scope: 'static,
{
    TypeId::of::<K::Scope>() == TypeId::of::<ClusterResourceScope>()
}

impl<K> ControllerBuilder<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::Scope: 'static,
{
    /// A controller named `name` (used in metrics, logs and as its field manager) reconciling the objects
    /// of the `primary` informer (controller-runtime's `For`).
    pub fn new(name: impl Into<String>, primary: &Informer<K>, metrics: &Metrics) -> Self {
        let mut builder = Self {
            name: name.into(),
            metrics: metrics.clone(),
            primary: primary.clone(),
            predicates: Vec::new(),
            installs: Vec::new(),
            replays: Vec::new(),
            concurrency: 1,
            reconcile_timeout: None,
            needs_leader_election: true,
        };
        let cache = primary.cache();
        builder.replays.push(Box::new(move |enqueue| {
            for key in cache.keys() {
                enqueue(key);
            }
        }));
        builder
    }

    /// Only primary events passing `predicate` enqueue a reconcile (all predicates must pass).
    pub fn with_predicate(mut self, predicate: Predicate<K>) -> Self {
        self.predicates.push(predicate);
        self
    }

    /// Reconciles the controlling owner (of kind `K`) of every changed `C` (controller-runtime's `Owns`).
    pub fn owns<C>(self, children: &Informer<C>) -> Self
    where
        C: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let owner_keys = |child: &C| -> Vec<ObjectKey> {
            let kind = K::kind(&());
            let group = K::group(&());
            let cluster = is_cluster_scoped::<K>();
            child
                .meta()
                .owner_references
                .iter()
                .flatten()
                .filter(|r| r.controller == Some(true) && r.kind == kind)
                .filter(|r| r.api_version.rsplit_once('/').map_or("", |(g, _)| g) == group)
                .map(|r| ObjectKey {
                    namespace: if cluster {
                        None
                    } else {
                        child.meta().namespace.clone()
                    },
                    name: r.name.clone(),
                })
                .collect()
        };
        self.watch_mapped(children, owner_keys)
    }

    /// Reconciles the keys `mapper` returns for every changed `O` (controller-runtime's `Watches` with
    /// `EnqueueRequestsFromMapFunc`). On updates both the old and the new object are mapped.
    pub fn watches<O>(
        self,
        other: &Informer<O>,
        mapper: impl Fn(&O) -> Vec<ObjectKey> + Send + Sync + 'static,
    ) -> Self
    where
        O: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        self.watch_mapped(other, mapper)
    }

    fn watch_mapped<O>(
        mut self,
        other: &Informer<O>,
        mapper: impl Fn(&O) -> Vec<ObjectKey> + Send + Sync + 'static,
    ) -> Self
    where
        O: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let mapper = Arc::new(mapper);
        let informer = other.clone();
        let m = mapper.clone();
        self.installs.push(Box::new(move |active, queue| {
            informer.add_handler(Arc::new(move |ev: &InformerEvent<'_, O>| {
                if !active.load(Ordering::Acquire) {
                    return;
                }
                if let InformerEvent::Updated { old, .. } = ev {
                    m(old).into_iter().for_each(|k| queue.add(k));
                }
                m(ev.object()).into_iter().for_each(|k| queue.add(k));
            }));
        }));
        let cache: Cache<O> = other.cache();
        self.replays.push(Box::new(move |enqueue| {
            for obj in cache.list() {
                mapper(&obj).into_iter().for_each(&mut *enqueue);
            }
        }));
        self
    }

    /// How many objects are reconciled in parallel (default 1; the same object never is).
    pub fn concurrency(mut self, workers: usize) -> Self {
        self.concurrency = workers.max(1);
        self
    }

    /// Fails (and retries with back-off) a reconcile that takes longer than `timeout`.
    pub fn reconcile_timeout(mut self, timeout: Duration) -> Self {
        self.reconcile_timeout = Some(timeout);
        self
    }

    /// Whether the controller waits for leadership before starting (default true: it writes).
    pub fn needs_leader_election(mut self, needs: bool) -> Self {
        self.needs_leader_election = needs;
        self
    }

    /// Finishes the controller; add it to the manager with [`crate::Manager::add`].
    pub fn build<R: Reconciler<K>>(self, reconciler: R) -> Controller<K, R> {
        let active = Arc::new(AtomicBool::new(false));
        let queue = WorkQueue::new(self.metrics.queue(&self.name));
        let predicates = Arc::new(self.predicates);
        {
            let active = active.clone();
            let queue = queue.clone();
            let predicates = predicates.clone();
            self.primary
                .add_handler(Arc::new(move |ev: &InformerEvent<'_, K>| {
                    if !active.load(Ordering::Acquire) || !predicates.iter().all(|p| p.matches(ev)) {
                        return;
                    }
                    if let Some(key) = ObjectKey::of(ev.object().as_ref()) {
                        queue.add(key);
                    }
                }));
        }
        for install in self.installs {
            install(active.clone(), queue.clone());
        }
        // Replaying the primary cache applies the predicates as to an `Added` event.
        let mut replays = self.replays;
        let primary_cache = self.primary.cache();
        let preds = predicates.clone();
        replays[0] = Box::new(move |enqueue| {
            for obj in primary_cache.list() {
                if preds.iter().all(|p| p.matches(&InformerEvent::Added(&obj)))
                    && let Some(key) = ObjectKey::of(obj.as_ref())
                {
                    enqueue(key);
                }
            }
        });
        let metrics = self.metrics.controller(&self.name, self.concurrency);
        Controller {
            inner: Arc::new(ControllerInner {
                name: self.name.into(),
                cache: self.primary.cache(),
                reconciler,
                queue,
                metrics,
                timeout: self.reconcile_timeout,
            }),
            active,
            replays,
            concurrency: self.concurrency,
            needs_leader_election: self.needs_leader_election,
        }
    }
}

/// A built controller: a [`Runnable`] for the manager.
pub struct Controller<K, R> {
    inner: Arc<ControllerInner<K, R>>,
    active: Arc<AtomicBool>,
    replays: Vec<Replay>,
    concurrency: usize,
    needs_leader_election: bool,
}

impl<K, R> Debug for Controller<K, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

struct ControllerInner<K, R> {
    name: Arc<str>,
    cache: Cache<K>,
    reconciler: R,
    queue: WorkQueue<ObjectKey>,
    metrics: ControllerMetrics,
    timeout: Option<Duration>,
}

impl<K, R> Controller<K, R> {
    /// The controller's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its work queue (to enqueue keys from outside, e.g. on a NATS message).
    pub fn queue(&self) -> WorkQueue<ObjectKey> {
        self.inner.queue.clone()
    }
}

/// How one reconcile attempt ended.
enum Outcome<E> {
    Ok(Action),
    Err(E),
    Panicked(String),
    TimedOut(Duration),
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

impl<K, R> ControllerInner<K, R>
where
    K: Send + Sync + 'static,
    R: Reconciler<K>,
{
    async fn attempt(&self, key: &ObjectKey) -> Outcome<R::Error> {
        let ctx = Context {
            controller: self.name.clone(),
            key: key.clone(),
            failures: self.queue.failures(key),
        };
        let obj = self.cache.get(key);
        let fut = async {
            match obj {
                Some(obj) => self.reconciler.reconcile(obj, &ctx).await,
                None => self.reconciler.reconcile_missing(key, &ctx).await,
            }
        };
        let guarded = std::panic::AssertUnwindSafe(fut).catch_unwind();
        let result = match self.timeout {
            Some(t) => match tokio::time::timeout(t, guarded).await {
                Ok(r) => r,
                Err(_) => return Outcome::TimedOut(t),
            },
            None => guarded.await,
        };
        match result {
            Ok(Ok(action)) => Outcome::Ok(action),
            Ok(Err(e)) => Outcome::Err(e),
            Err(payload) => Outcome::Panicked(panic_message(payload.as_ref())),
        }
    }

    async fn process(&self, key: ObjectKey) {
        self.metrics.worker_started();
        let started = Instant::now();
        let outcome = self.attempt(&key).await;
        self.metrics.reconcile_time(started.elapsed());
        self.metrics.worker_finished();
        match outcome {
            Outcome::Ok(Action::Done) => {
                self.queue.forget(&key);
                self.metrics.result(RESULT_SUCCESS);
            }
            Outcome::Ok(Action::RequeueAfter(delay)) => {
                self.queue.forget(&key);
                self.queue.add_after(key.clone(), delay);
                self.metrics.result(RESULT_REQUEUE_AFTER);
            }
            Outcome::Ok(Action::Requeue) => {
                self.queue.add_rate_limited(key.clone());
                self.metrics.result(RESULT_REQUEUE);
            }
            Outcome::Err(err) if err.is_terminal() => {
                self.queue.forget(&key);
                self.metrics.error(err.category(), true);
                tracing::error!(error = %err, category = err.category(), "reconcile failed terminally; not retrying");
            }
            Outcome::Err(err) => {
                let delay = self.queue.add_rate_limited(key.clone());
                self.metrics.error(err.category(), false);
                tracing::warn!(error = %err, category = err.category(), retry_in = ?delay, "reconcile failed");
            }
            Outcome::Panicked(message) => {
                self.metrics.panic();
                self.metrics.error("panic", false);
                let delay = self.queue.add_rate_limited(key.clone());
                tracing::error!(panic = %message, retry_in = ?delay, "reconcile panicked");
            }
            Outcome::TimedOut(limit) => {
                self.metrics.timeout();
                self.metrics.error("timeout", false);
                let delay = self.queue.add_rate_limited(key.clone());
                tracing::warn!(timeout = ?limit, retry_in = ?delay, "reconcile timed out");
            }
        }
        self.queue.done(&key);
    }
}

impl<K, R> Runnable for Controller<K, R>
where
    K: Send + Sync + 'static,
    R: Reconciler<K>,
{
    fn name(&self) -> String {
        self.inner.name.to_string()
    }

    fn needs_leader_election(&self) -> bool {
        self.needs_leader_election
    }

    fn start(self: Box<Self>, cancel: CancellationToken) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async move {
            // Activate the handlers first, then replay the caches, so no event falls in between
            // (duplicates are merged by the queue).
            self.active.store(true, Ordering::Release);
            let queue = self.inner.queue.clone();
            for replay in &self.replays {
                replay(&mut |key| queue.add(key));
            }
            tracing::info!(controller = %self.inner.name, workers = self.concurrency, queued = queue.len(), "controller started");
            let mut workers = JoinSet::new();
            for _ in 0..self.concurrency {
                let inner = self.inner.clone();
                workers.spawn(async move {
                    while let Some(key) = inner.queue.get().await {
                        let span = tracing::info_span!("reconcile", controller = %inner.name, object = %key);
                        inner.process(key).instrument(span).await;
                    }
                });
            }
            cancel.cancelled().await;
            self.active.store(false, Ordering::Release);
            queue.shut_down();
            // In-flight reconciles finish; the manager bounds how long it waits.
            while workers.join_next().await.is_some() {}
            tracing::info!(controller = %self.inner.name, "controller stopped");
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::informer::InformerOptions;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::api::ObjectMeta;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicU32;

    fn cm(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("flaky")]
    struct Flaky;
    impl ReconcileError for Flaky {
        fn category(&self) -> &'static str {
            "flaky"
        }
    }

    /// Fails `fail` times per object, panics on objects named "boom" once, then succeeds.
    struct Scripted {
        fail: u32,
        calls: Mutex<Vec<(String, u32)>>,
        boomed: AtomicU32,
    }

    impl Reconciler<ConfigMap> for Scripted {
        type Error = Flaky;
        async fn reconcile(&self, obj: Arc<ConfigMap>, ctx: &Context) -> Result<Action, Flaky> {
            let name = obj.metadata.name.clone().unwrap_or_default();
            self.calls.lock().unwrap().push((name.clone(), ctx.failures()));
            if name == "boom" && self.boomed.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("boom");
            }
            if ctx.failures() < self.fail {
                Err(Flaky)
            } else {
                Ok(Action::Done)
            }
        }
    }

    fn informer() -> (Metrics, Informer<ConfigMap>) {
        let metrics = Metrics::new();
        let inf = Informer::new(
            "configmaps".into(),
            InformerOptions::all(),
            Vec::new(),
            metrics.informer("cm"),
        );
        (metrics, inf)
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_per_object_reset_on_success_and_panics_are_retried() {
        let (metrics, inf) = informer();
        inf.cache()
            .insert(ObjectKey::namespaced("ns", "a"), Arc::new(cm("a")));
        inf.cache()
            .insert(ObjectKey::namespaced("ns", "boom"), Arc::new(cm("boom")));
        let controller = ControllerBuilder::new("scripted", &inf, &metrics).build(Scripted {
            fail: 3,
            calls: Mutex::new(Vec::new()),
            boomed: AtomicU32::new(0),
        });
        let inner = controller.inner.clone();
        let cancel = CancellationToken::new();
        let run = tokio::spawn(Box::new(controller).start(cancel.clone()));
        // Virtual time: 5 + 10 + 20 ms of back-off, then success.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let calls = inner.reconciler.calls.lock().unwrap().clone();
        let a: Vec<u32> = calls.iter().filter(|(n, _)| n == "a").map(|(_, f)| *f).collect();
        assert_eq!(
            a,
            vec![0, 1, 2, 3],
            "failures grow per object and stop at success"
        );
        assert_eq!(
            inner.queue.failures(&ObjectKey::namespaced("ns", "a")),
            0,
            "reset on success"
        );
        let boom: Vec<u32> = calls
            .iter()
            .filter(|(n, _)| n == "boom")
            .map(|(_, f)| *f)
            .collect();
        assert_eq!(
            boom,
            vec![0, 1, 2, 3],
            "the panic counted as a failure and was retried"
        );
        cancel.cancel();
        run.await.unwrap().unwrap();
        let text = metrics.encode_prometheus();
        assert!(
            text.contains("controller_runtime_reconcile_panics_total{controller=\"scripted\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("controller_runtime_reconcile_errors_total{controller=\"scripted\"} 6"),
            "{text}"
        );
        assert!(
            text.contains("controller_runtime_reconcile_total{controller=\"scripted\",result=\"success\"} 2")
        );
        assert!(text.contains(
            "weft_controller_reconcile_errors_total{controller=\"scripted\",category=\"panic\"} 1"
        ));
        assert!(text.contains("workqueue_retries_total{name=\"scripted\",controller=\"scripted\"} 6"));
    }

    struct Sleepy;
    impl Reconciler<ConfigMap> for Sleepy {
        type Error = Flaky;
        async fn reconcile(&self, _: Arc<ConfigMap>, ctx: &Context) -> Result<Action, Flaky> {
            if ctx.failures() == 0 {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Ok(Action::RequeueAfter(Duration::from_secs(3600)))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconcile_over_its_timeout_is_counted_and_retried() {
        let (metrics, inf) = informer();
        inf.cache()
            .insert(ObjectKey::namespaced("ns", "a"), Arc::new(cm("a")));
        let controller = ControllerBuilder::new("sleepy", &inf, &metrics)
            .reconcile_timeout(Duration::from_secs(1))
            .build(Sleepy);
        let cancel = CancellationToken::new();
        let run = tokio::spawn(Box::new(controller).start(cancel.clone()));
        tokio::time::sleep(Duration::from_secs(5)).await;
        cancel.cancel();
        run.await.unwrap().unwrap();
        let text = metrics.encode_prometheus();
        assert!(
            text.contains("controller_runtime_reconcile_timeouts_total{controller=\"sleepy\"} 1"),
            "{text}"
        );
        assert!(text.contains(
            "controller_runtime_reconcile_total{controller=\"sleepy\",result=\"requeue_after\"} 1"
        ));
    }

    #[derive(Debug, thiserror::Error)]
    #[error("bad spec")]
    struct BadSpec;
    impl ReconcileError for BadSpec {
        fn is_terminal(&self) -> bool {
            true
        }
    }
    struct AlwaysBad(AtomicU32);
    impl Reconciler<ConfigMap> for AlwaysBad {
        type Error = BadSpec;
        async fn reconcile(&self, _: Arc<ConfigMap>, _: &Context) -> Result<Action, BadSpec> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(BadSpec)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn terminal_errors_are_not_retried() {
        let (metrics, inf) = informer();
        inf.cache()
            .insert(ObjectKey::namespaced("ns", "a"), Arc::new(cm("a")));
        let controller = ControllerBuilder::new("bad", &inf, &metrics).build(AlwaysBad(AtomicU32::new(0)));
        let inner = controller.inner.clone();
        let cancel = CancellationToken::new();
        let run = tokio::spawn(Box::new(controller).start(cancel.clone()));
        tokio::time::sleep(Duration::from_secs(100)).await;
        cancel.cancel();
        run.await.unwrap().unwrap();
        assert_eq!(inner.reconciler.0.load(Ordering::SeqCst), 1);
        let text = metrics.encode_prometheus();
        assert!(
            text.contains("controller_runtime_terminal_reconcile_errors_total{controller=\"bad\"} 1"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn owns_maps_children_to_their_controlling_owner_of_the_primary_kind() {
        let (metrics, parents) = informer();
        let children = Informer::<ConfigMap>::new(
            "children".into(),
            InformerOptions::all(),
            Vec::new(),
            metrics.informer("c"),
        );
        let controller = ControllerBuilder::new("owner", &parents, &metrics)
            .owns(&children)
            .build(AlwaysBad(AtomicU32::new(0)));
        let owner = |name: &str, kind: &str, controller: bool| OwnerReference {
            api_version: "v1".into(),
            kind: kind.into(),
            name: name.into(),
            controller: Some(controller),
            ..Default::default()
        };
        let mut child = cm("child");
        child.metadata.owner_references = Some(vec![
            owner("p", "ConfigMap", true),
            owner("q", "ConfigMap", false),
            owner("r", "Secret", true),
        ]);
        let child = Arc::new(child);
        let queue = controller.queue();
        children.dispatch(InformerEvent::Added(&child));
        assert_eq!(
            queue.len(),
            0,
            "inactive controllers ignore events (they replay the cache on start)"
        );
        controller.active.store(true, Ordering::SeqCst);
        children.dispatch(InformerEvent::Added(&child));
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.get().await, Some(ObjectKey::namespaced("ns", "p")));
    }
}
