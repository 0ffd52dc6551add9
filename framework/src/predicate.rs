//! Event filters deciding whether an informer event enqueues a reconcile (controller-runtime's predicates).

use std::sync::Arc;

use kube::Resource;

use crate::informer::InformerEvent;

type PredicateFn<K> = Arc<dyn Fn(&InformerEvent<'_, K>) -> bool + Send + Sync>;

/// A filter over informer events. Compose with [`Predicate::and`], [`Predicate::or`] and [`Predicate::not`].
pub struct Predicate<K> {
    f: PredicateFn<K>,
}

impl<K> Clone for Predicate<K> {
    fn clone(&self) -> Self {
        Self { f: self.f.clone() }
    }
}

impl<K> std::fmt::Debug for Predicate<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Predicate")
    }
}

impl<K: 'static> Predicate<K> {
    /// A predicate from a function of the whole event.
    pub fn new(f: impl Fn(&InformerEvent<'_, K>) -> bool + Send + Sync + 'static) -> Self {
        Self { f: Arc::new(f) }
    }

    /// A predicate from a function of the object (the new object for updates), like controller-runtime's
    /// `NewPredicateFuncs`.
    pub fn object(f: impl Fn(&K) -> bool + Send + Sync + 'static) -> Self {
        Self::new(move |ev| f(ev.object()))
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &InformerEvent<'_, K>) -> bool {
        (self.f)(event)
    }

    /// Passes when both pass.
    pub fn and(self, other: Self) -> Self {
        Self::new(move |ev| self.matches(ev) && other.matches(ev))
    }

    /// Passes when either passes.
    pub fn or(self, other: Self) -> Self {
        Self::new(move |ev| self.matches(ev) || other.matches(ev))
    }

    /// Passes when `self` does not.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Self {
        Self::new(move |ev| !self.matches(ev))
    }
}

/// Passes every event.
pub fn always<K: 'static>() -> Predicate<K> {
    Predicate::new(|_| true)
}

/// Passes creates and deletes, and updates where a compared value differs.
fn on_update_change<K: 'static, V: PartialEq>(get: impl Fn(&K) -> V + Send + Sync + 'static) -> Predicate<K> {
    Predicate::new(move |ev| match ev {
        InformerEvent::Updated { old, new } => get(old) != get(new),
        _ => true,
    })
}

/// Updates pass only when `metadata.generation` changed (spec changes; not status or metadata-only).
/// Deletion marks bump the generation too, so a terminating object still passes.
pub fn generation_changed<K: Resource + 'static>() -> Predicate<K> {
    on_update_change(|o: &K| o.meta().generation)
}

/// Updates pass only when `metadata.resourceVersion` changed (filters re-deliveries of the same object).
pub fn resource_version_changed<K: Resource + 'static>() -> Predicate<K> {
    on_update_change(|o: &K| o.meta().resource_version.clone())
}

/// Updates pass only when labels changed.
pub fn labels_changed<K: Resource + 'static>() -> Predicate<K> {
    on_update_change(|o: &K| o.meta().labels.clone().unwrap_or_default())
}

/// Updates pass only when annotations changed.
pub fn annotations_changed<K: Resource + 'static>() -> Predicate<K> {
    on_update_change(|o: &K| o.meta().annotations.clone().unwrap_or_default())
}

/// Updates pass only when finalizers or the deletion mark changed.
pub fn finalizers_or_deletion_changed<K: Resource + 'static>() -> Predicate<K> {
    on_update_change(|o: &K| (o.meta().finalizers.clone(), o.meta().deletion_timestamp.clone()))
}

/// Passes objects carrying the label `key` (any value).
pub fn has_label<K: Resource + 'static>(key: impl Into<String>) -> Predicate<K> {
    let key = key.into();
    Predicate::object(move |o: &K| o.meta().labels.as_ref().is_some_and(|l| l.contains_key(&key)))
}

/// Passes objects carrying the finalizer `name`.
pub fn has_finalizer<K: Resource + 'static>(name: impl Into<String>) -> Predicate<K> {
    let name = name.into();
    Predicate::object(move |o: &K| o.meta().finalizers.as_ref().is_some_and(|f| f.contains(&name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::ObjectMeta;

    fn cm(generation: i64, rv: &str, labels: &[(&str, &str)]) -> Arc<ConfigMap> {
        Arc::new(ConfigMap {
            metadata: ObjectMeta {
                name: Some("a".into()),
                generation: Some(generation),
                resource_version: Some(rv.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    #[test]
    fn generation_filters_status_only_updates_but_passes_create_and_delete() {
        let p = generation_changed::<ConfigMap>();
        let (a, b, c) = (cm(1, "1", &[]), cm(1, "2", &[]), cm(2, "3", &[]));
        assert!(!p.matches(&InformerEvent::Updated { old: &a, new: &b }));
        assert!(p.matches(&InformerEvent::Updated { old: &b, new: &c }));
        assert!(p.matches(&InformerEvent::Added(&a)));
        assert!(p.matches(&InformerEvent::Deleted(&a)));
    }

    #[test]
    fn resource_version_and_label_predicates() {
        let (a, a2, b) = (cm(1, "1", &[]), cm(1, "1", &[]), cm(1, "2", &[("x", "1")]));
        assert!(!resource_version_changed().matches(&InformerEvent::Updated { old: &a, new: &a2 }));
        assert!(resource_version_changed().matches(&InformerEvent::Updated { old: &a, new: &b }));
        assert!(labels_changed().matches(&InformerEvent::Updated { old: &a, new: &b }));
        assert!(!labels_changed().matches(&InformerEvent::Updated { old: &a, new: &a2 }));
        assert!(has_label("x").matches(&InformerEvent::Added(&b)));
        assert!(!has_label("x").matches(&InformerEvent::Added(&a)));
        assert!(
            !has_label("x").matches(&InformerEvent::Updated { old: &b, new: &a }),
            "judged on the new object"
        );
    }

    #[test]
    fn combinators() {
        let b = cm(1, "2", &[("x", "1")]);
        let yes = always::<ConfigMap>();
        let no = always::<ConfigMap>().not();
        let ev = InformerEvent::Added(&b);
        assert!(yes.clone().or(no.clone()).matches(&ev));
        assert!(!yes.clone().and(no.clone()).matches(&ev));
        assert!(has_label("x").and(has_finalizer("f").not()).matches(&ev));
    }

    #[test]
    fn finalizer_and_deletion_changes() {
        let a = cm(1, "1", &[]);
        let mut deleting = (*a).clone();
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let deleting = Arc::new(deleting);
        let p = finalizers_or_deletion_changed::<ConfigMap>();
        assert!(p.matches(&InformerEvent::Updated {
            old: &a,
            new: &deleting
        }));
        assert!(!p.matches(&InformerEvent::Updated { old: &a, new: &a }));
        let mut with_f = (*a).clone();
        with_f.metadata.finalizers = Some(vec!["f".into()]);
        let with_f = Arc::new(with_f);
        assert!(p.matches(&InformerEvent::Updated {
            old: &a,
            new: &with_f
        }));
        assert!(has_finalizer("f").matches(&InformerEvent::Added(&with_f)));
    }
}
