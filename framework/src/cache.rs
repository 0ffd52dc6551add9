//! The in-memory object cache behind a shared informer, with optional secondary indexes
//! (controller-runtime's field indexers).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::key::ObjectKey;

/// Computes the values an object is indexed under (e.g. a Host's `hostname`).
pub type IndexFn<K> = Arc<dyn Fn(&K) -> Vec<String> + Send + Sync>;

/// A read handle to a shared informer's objects. Cheap to clone.
pub struct Cache<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K> std::fmt::Debug for Cache<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").finish_non_exhaustive()
    }
}

struct Inner<K> {
    state: RwLock<State<K>>,
    synced: watch::Sender<bool>,
}

struct State<K> {
    objects: HashMap<ObjectKey, Arc<K>>,
    indexes: HashMap<String, Index<K>>,
}

struct Index<K> {
    func: IndexFn<K>,
    entries: HashMap<String, HashSet<ObjectKey>>,
}

impl<K> Index<K> {
    fn insert(&mut self, key: &ObjectKey, obj: &K) {
        for value in (self.func)(obj) {
            self.entries.entry(value).or_default().insert(key.clone());
        }
    }

    fn remove(&mut self, key: &ObjectKey, obj: &K) {
        for value in (self.func)(obj) {
            if let Some(keys) = self.entries.get_mut(&value) {
                keys.remove(key);
                if keys.is_empty() {
                    self.entries.remove(&value);
                }
            }
        }
    }
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: RwLock::new(State {
                    objects: HashMap::new(),
                    indexes: HashMap::new(),
                }),
                synced: watch::channel(false).0,
            }),
        }
    }
}

impl<K: kube::Resource> Cache<K> {
    /// A synced cache holding `objects` and fed by no watch: for scenario tests of reconcilers against a
    /// mocked apiserver, and for tools.
    pub fn from_objects(objects: impl IntoIterator<Item = K>) -> Self {
        let cache = Self::default();
        for obj in objects {
            if let Some(key) = ObjectKey::of(&obj) {
                cache.insert(key, Arc::new(obj));
            }
        }
        cache.set_synced(true);
        cache
    }
}

impl<K> Cache<K> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State<K>> {
        self.inner.state.read().expect("cache lock")
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State<K>> {
        self.inner.state.write().expect("cache lock")
    }

    /// The object with this key.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.read().objects.get(key).cloned()
    }

    /// The namespaced object `namespace/name`.
    pub fn get_namespaced(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.get(&ObjectKey::namespaced(namespace, name))
    }

    /// Every cached object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().objects.values().cloned().collect()
    }

    /// Every cached object in `namespace`.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.read()
            .objects
            .iter()
            .filter(|(k, _)| k.namespace.as_deref() == Some(namespace))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every cached object for which `pred` holds.
    pub fn find(&self, pred: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        self.read()
            .objects
            .values()
            .filter(|o| pred(o))
            .cloned()
            .collect()
    }

    /// Keys of every cached object.
    pub fn keys(&self) -> Vec<ObjectKey> {
        self.read().objects.keys().cloned().collect()
    }

    /// Number of cached objects.
    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    /// Whether the cache holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Objects indexed under `value` by the index `index` (empty if there is no such index).
    pub fn by_index(&self, index: &str, value: &str) -> Vec<Arc<K>> {
        let state = self.read();
        let Some(idx) = state.indexes.get(index) else {
            return Vec::new();
        };
        idx.entries
            .get(value)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| state.objects.get(k).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Adds (or replaces) a secondary index and indexes every object already cached.
    pub fn add_index(&self, name: impl Into<String>, func: IndexFn<K>) {
        let mut state = self.write();
        let mut index = Index {
            func,
            entries: HashMap::new(),
        };
        for (key, obj) in &state.objects {
            index.insert(key, obj);
        }
        state.indexes.insert(name.into(), index);
    }

    /// Whether every watch behind this cache has finished its initial list.
    pub fn is_synced(&self) -> bool {
        *self.inner.synced.borrow()
    }

    /// Waits until every watch behind this cache has finished its initial list.
    pub async fn wait_synced(&self) {
        let mut rx = self.inner.synced.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|s| *s).await;
    }

    pub(crate) fn set_synced(&self, synced: bool) {
        self.inner.synced.send_replace(synced);
    }

    /// Stores `obj`, returning the object it replaces.
    pub(crate) fn insert(&self, key: ObjectKey, obj: Arc<K>) -> Option<Arc<K>> {
        let mut state = self.write();
        let State { objects, indexes } = &mut *state;
        let old = objects.insert(key.clone(), obj.clone());
        for index in indexes.values_mut() {
            if let Some(old) = &old {
                index.remove(&key, old);
            }
            index.insert(&key, &obj);
        }
        old
    }

    /// Removes the object with `key`, returning it.
    pub(crate) fn remove(&self, key: &ObjectKey) -> Option<Arc<K>> {
        let mut state = self.write();
        let State { objects, indexes } = &mut *state;
        let old = objects.remove(key)?;
        for index in indexes.values_mut() {
            index.remove(key, &old);
        }
        Some(old)
    }

    /// Keys in `namespace` (every key when `namespace` is `None`).
    pub(crate) fn keys_in(&self, namespace: Option<&str>) -> Vec<ObjectKey> {
        self.read()
            .objects
            .keys()
            .filter(|k| namespace.is_none() || k.namespace.as_deref() == namespace)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Obj {
        host: String,
    }

    fn obj(host: &str) -> Arc<Obj> {
        Arc::new(Obj { host: host.into() })
    }

    #[test]
    fn index_follows_inserts_updates_and_removes() {
        let cache = Cache::<Obj>::default();
        cache.insert(ObjectKey::namespaced("ns", "a"), obj("10.0.0.1"));
        cache.add_index("host", Arc::new(|o: &Obj| vec![o.host.clone()]));
        cache.insert(ObjectKey::namespaced("ns", "b"), obj("10.0.0.1"));
        assert_eq!(cache.by_index("host", "10.0.0.1").len(), 2);
        cache.insert(ObjectKey::namespaced("ns", "a"), obj("10.0.0.2"));
        assert_eq!(cache.by_index("host", "10.0.0.1").len(), 1);
        assert_eq!(cache.by_index("host", "10.0.0.2"), vec![obj("10.0.0.2")]);
        cache.remove(&ObjectKey::namespaced("ns", "b"));
        assert!(cache.by_index("host", "10.0.0.1").is_empty());
        assert!(cache.by_index("nope", "10.0.0.2").is_empty());
    }

    #[test]
    fn lists_by_namespace() {
        let cache = Cache::<Obj>::default();
        cache.insert(ObjectKey::namespaced("a", "1"), obj("x"));
        cache.insert(ObjectKey::namespaced("b", "1"), obj("y"));
        assert_eq!(cache.list_namespace("a"), vec![obj("x")]);
        assert_eq!(cache.keys_in(Some("b")), vec![ObjectKey::namespaced("b", "1")]);
        assert_eq!(cache.keys_in(None).len(), 2);
        assert_eq!(cache.find(|o| o.host == "y").len(), 1);
    }

    #[tokio::test]
    async fn wait_synced_returns_once_synced() {
        let cache = Cache::<Obj>::default();
        assert!(!cache.is_synced());
        let waiter = tokio::spawn({
            let cache = cache.clone();
            async move { cache.wait_synced().await }
        });
        cache.set_synced(true);
        waiter.await.expect("waiter");
        assert!(cache.is_synced());
    }
}
