//! A shared informer: one watch per kind (or one per namespace when scoped to namespaces) feeding one
//! cache and any number of event handlers, however many controllers use it.
//!
//! Handlers are called synchronously on the informer's task, with the old and new object, and must not
//! block (controllers only push keys into their work queue). Unlike kube-runtime's shared streams there is
//! no bounded broadcast, so a slow controller never back-pressures the watch or the other controllers.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt;
use futures::future::BoxFuture;
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::key::ObjectKey;
use crate::metrics::InformerMetrics;

/// Modifies each object before it is cached (e.g. drops fields no controller reads).
pub type Transform<K> = Arc<dyn Fn(&mut K) + Send + Sync>;

/// A change seen by an informer, with the cached objects before and after it.
#[derive(Debug)]
pub enum InformerEvent<'a, K> {
    /// A new object appeared (also for every object of the initial list).
    Added(&'a Arc<K>),
    /// An object changed.
    Updated {
        /// The object as cached before.
        old: &'a Arc<K>,
        /// The object as cached now.
        new: &'a Arc<K>,
    },
    /// An object was deleted (its last known state).
    Deleted(&'a Arc<K>),
}

impl<'a, K> InformerEvent<'a, K> {
    /// The object the event is about (the new one for updates).
    pub fn object(&self) -> &'a Arc<K> {
        match self {
            Self::Added(o) | Self::Deleted(o) => o,
            Self::Updated { new, .. } => new,
        }
    }
}

/// One watch source: its namespace (`None` for all) and API.
type Source<K> = (Option<String>, Api<K>);

/// An event handler registered on an informer.
pub type Handler<K> = Arc<dyn Fn(&InformerEvent<'_, K>) + Send + Sync>;

/// How an informer watches its kind.
pub struct InformerOptions<K> {
    /// Watch only these namespaces (one watch each; namespaced RBAC only allows that); `None` watches all.
    pub namespaces: Option<Vec<String>>,
    /// Server-side label selector.
    pub label_selector: Option<String>,
    /// Server-side field selector.
    pub field_selector: Option<String>,
    /// Applied to every object before caching, after managedFields are stripped.
    pub transform: Option<Transform<K>>,
}

impl<K> Default for InformerOptions<K> {
    fn default() -> Self {
        Self {
            namespaces: None,
            label_selector: None,
            field_selector: None,
            transform: None,
        }
    }
}

impl<K> Clone for InformerOptions<K> {
    fn clone(&self) -> Self {
        Self {
            namespaces: self.namespaces.clone(),
            label_selector: self.label_selector.clone(),
            field_selector: self.field_selector.clone(),
            transform: self.transform.clone(),
        }
    }
}

impl<K> Debug for InformerOptions<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InformerOptions")
            .field("namespaces", &self.namespaces)
            .field("label_selector", &self.label_selector)
            .field("field_selector", &self.field_selector)
            .field("transform", &self.transform.is_some())
            .finish()
    }
}

impl<K> InformerOptions<K> {
    /// Watch every namespace (or the whole cluster for cluster-scoped kinds).
    pub fn all() -> Self {
        Self::default()
    }

    /// Watch only these namespaces.
    pub fn namespaces<I: IntoIterator<Item = S>, S: Into<String>>(namespaces: I) -> Self {
        let mut ns: Vec<String> = namespaces.into_iter().map(Into::into).collect();
        ns.sort();
        ns.dedup();
        Self {
            namespaces: Some(ns),
            ..Self::default()
        }
    }

    /// Adds a server-side label selector.
    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    /// Adds a server-side field selector.
    pub fn fields(mut self, selector: impl Into<String>) -> Self {
        self.field_selector = Some(selector.into());
        self
    }

    /// Adds a transform applied before caching.
    pub fn transform(mut self, f: impl Fn(&mut K) + Send + Sync + 'static) -> Self {
        self.transform = Some(Arc::new(f));
        self
    }

    /// Whether two option sets describe the same watch (transforms must be the same function).
    pub(crate) fn same_watch(&self, other: &Self) -> bool {
        self.namespaces == other.namespaces
            && self.label_selector == other.label_selector
            && self.field_selector == other.field_selector
            && match (&self.transform, &other.transform) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

/// A shared informer for kind `K`. Cheap to clone; every clone shares the watch and the cache.
pub struct Informer<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K> Debug for Informer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informer")
            .field("kind", &self.inner.kind)
            .finish_non_exhaustive()
    }
}

struct Inner<K> {
    kind: String,
    options: InformerOptions<K>,
    cache: Cache<K>,
    handlers: RwLock<Vec<Handler<K>>>,
    /// One watch per namespace (or a single one for all); taken when the informer starts.
    sources: Mutex<Option<Vec<Source<K>>>>,
    metrics: InformerMetrics,
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    pub(crate) fn new(
        kind: String,
        options: InformerOptions<K>,
        sources: Vec<Source<K>>,
        metrics: InformerMetrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                kind,
                options,
                cache: Cache::default(),
                handlers: RwLock::new(Vec::new()),
                sources: Mutex::new(Some(sources)),
                metrics,
            }),
        }
    }

    /// The informer's kind, for logs and metrics.
    pub fn kind(&self) -> &str {
        &self.inner.kind
    }

    /// The options it watches with.
    pub fn options(&self) -> &InformerOptions<K> {
        &self.inner.options
    }

    /// The cache it fills.
    pub fn cache(&self) -> Cache<K> {
        self.inner.cache.clone()
    }

    /// Registers a handler called for every later event. It must not block.
    pub fn add_handler(&self, handler: Handler<K>) {
        self.inner.handlers.write().expect("handler lock").push(handler);
    }

    pub(crate) fn dispatch(&self, event: InformerEvent<'_, K>) {
        match event {
            InformerEvent::Added(_) => self.inner.metrics.added.inc(),
            InformerEvent::Updated { .. } => self.inner.metrics.updated.inc(),
            InformerEvent::Deleted(_) => self.inner.metrics.deleted.inc(),
        };
        let handlers = self.inner.handlers.read().expect("handler lock").clone();
        for handler in handlers.iter() {
            handler(&event);
        }
    }

    fn prepare(&self, mut obj: K) -> Option<(ObjectKey, Arc<K>)> {
        obj.meta_mut().managed_fields = None;
        if let Some(transform) = &self.inner.options.transform {
            transform(&mut obj);
        }
        let key = ObjectKey::of(&obj)?;
        Some((key, Arc::new(obj)))
    }

    fn apply(&self, obj: K, seen: Option<&mut HashSet<ObjectKey>>) {
        let Some((key, new)) = self.prepare(obj) else {
            return;
        };
        if let Some(seen) = seen {
            seen.insert(key.clone());
        }
        let old = self.inner.cache.insert(key, new.clone());
        self.inner.metrics.objects.set(self.inner.cache.len() as i64);
        match &old {
            None => self.dispatch(InformerEvent::Added(&new)),
            Some(old) => self.dispatch(InformerEvent::Updated { old, new: &new }),
        }
    }

    fn delete(&self, key: &ObjectKey, last: Option<Arc<K>>) {
        let cached = self.inner.cache.remove(key);
        self.inner.metrics.objects.set(self.inner.cache.len() as i64);
        if let Some(obj) = last.or(cached) {
            self.dispatch(InformerEvent::Deleted(&obj));
        }
    }

    /// Runs the watches until `cancel` fires. Each watch retries with kube's default back-off.
    pub(crate) fn run(&self, cancel: CancellationToken) -> BoxFuture<'static, ()> {
        let this = self.clone();
        Box::pin(async move {
            let Some(sources) = this.inner.sources.lock().expect("sources lock").take() else {
                tracing::warn!(kind = %this.inner.kind, "informer already running");
                return;
            };
            let mut config = watcher::Config::default();
            if let Some(l) = &this.inner.options.label_selector {
                config = config.labels(l);
            }
            if let Some(f) = &this.inner.options.field_selector {
                config = config.fields(f);
            }
            let namespaces: Vec<Option<String>> = sources.iter().map(|(ns, _)| ns.clone()).collect();
            let streams = sources.into_iter().enumerate().map(|(i, (_, api))| {
                watcher::watcher(api, config.clone())
                    .default_backoff()
                    .map(move |ev| (i, ev))
                    .boxed()
            });
            let mut merged = futures::stream::select_all(streams);
            let mut synced = vec![false; namespaces.len()];
            let mut init: Vec<Option<HashSet<ObjectKey>>> = vec![None; namespaces.len()];
            loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => break,
                    next = merged.next() => next,
                };
                let Some((i, event)) = next else { break };
                match event {
                    Ok(Event::Apply(obj)) => this.apply(obj, None),
                    Ok(Event::Delete(obj)) => {
                        if let Some((key, last)) = this.prepare(obj) {
                            this.delete(&key, Some(last));
                        }
                    }
                    Ok(Event::Init) => init[i] = Some(HashSet::new()),
                    Ok(Event::InitApply(obj)) => this.apply(obj, init[i].as_mut()),
                    Ok(Event::InitDone) => {
                        // Objects deleted while the watch was down are missing from the relist.
                        if let Some(seen) = init[i].take() {
                            for key in this.inner.cache.keys_in(namespaces[i].as_deref()) {
                                if !seen.contains(&key) {
                                    this.delete(&key, None);
                                }
                            }
                        }
                        if !synced[i] {
                            synced[i] = true;
                            tracing::debug!(kind = %this.inner.kind, namespace = ?namespaces[i], "watch synced");
                            if synced.iter().all(|s| *s) {
                                this.inner.cache.set_synced(true);
                            }
                        }
                    }
                    Err(err) => {
                        this.inner.metrics.watch_errors.inc();
                        tracing::warn!(kind = %this.inner.kind, namespace = ?namespaces[i], error = %err, "watch failed; retrying");
                    }
                }
            }
        })
    }
}

/// Type-erased view of an informer, for the manager.
pub(crate) trait RunInformer: Send + Sync {
    fn kind(&self) -> &str;
    fn is_synced(&self) -> bool;
    fn wait_synced(&self) -> BoxFuture<'static, ()>;
    fn run(&self, cancel: CancellationToken) -> BoxFuture<'static, ()>;
}

impl<K> RunInformer for Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    fn kind(&self) -> &str {
        Informer::kind(self)
    }

    fn is_synced(&self) -> bool {
        self.inner.cache.is_synced()
    }

    fn wait_synced(&self) -> BoxFuture<'static, ()> {
        let cache = self.inner.cache.clone();
        Box::pin(async move { cache.wait_synced().await })
    }

    fn run(&self, cancel: CancellationToken) -> BoxFuture<'static, ()> {
        Informer::run(self, cancel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use kube::ResourceExt;
    use kube::api::ObjectMeta;

    fn cm(name: &str, rv: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn informer() -> (Informer<ConfigMap>, Arc<Mutex<Vec<String>>>) {
        let metrics = crate::metrics::Metrics::new().informer("configmaps");
        let opts = InformerOptions::<ConfigMap>::all().transform(|cm: &mut ConfigMap| cm.data = None);
        let inf = Informer::new("configmaps".into(), opts, Vec::new(), metrics);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        inf.add_handler(Arc::new(move |ev: &InformerEvent<'_, ConfigMap>| {
            let line = match ev {
                InformerEvent::Added(o) => format!("add {}", o.name_any()),
                InformerEvent::Updated { old, new } => format!(
                    "update {} {}->{}",
                    new.name_any(),
                    old.resource_version().unwrap_or_default(),
                    new.resource_version().unwrap_or_default()
                ),
                InformerEvent::Deleted(o) => format!("delete {}", o.name_any()),
            };
            log.lock().unwrap().push(line);
        }));
        (inf, seen)
    }

    #[test]
    fn events_carry_old_and_new_and_objects_are_trimmed() {
        let (inf, seen) = informer();
        let mut with_data = cm("a", "1");
        with_data.data = Some([("k".to_string(), "v".to_string())].into());
        inf.apply(with_data, None);
        inf.apply(cm("a", "2"), None);
        let cached = inf
            .cache()
            .get(&ObjectKey::namespaced("ns", "a"))
            .expect("cached");
        assert!(cached.metadata.managed_fields.is_none());
        assert!(cached.data.is_none(), "transform applied");
        let key = ObjectKey::namespaced("ns", "a");
        inf.delete(&key, None);
        assert_eq!(*seen.lock().unwrap(), vec!["add a", "update a 1->2", "delete a"]);
        assert!(inf.cache().is_empty());
    }

    #[test]
    fn same_watch_compares_scope_selectors_and_transform_identity() {
        let a = InformerOptions::<ConfigMap>::namespaces(["b", "a", "a"]);
        let b = InformerOptions::<ConfigMap>::namespaces(["a", "b"]);
        assert!(a.same_watch(&b));
        assert!(!a.same_watch(&b.clone().labels("x")));
        let t = InformerOptions::<ConfigMap>::all().transform(|_| {});
        assert!(t.same_watch(&t.clone()));
        assert!(!t.same_watch(&InformerOptions::all().transform(|_| {})));
    }
}
