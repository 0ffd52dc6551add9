//! Adding and removing a finalizer with optimistic concurrency.
//!
//! The patch is a JSON merge patch carrying the object's `resourceVersion` and the full new finalizer list,
//! so the API server rejects it with 409 Conflict if the object changed since it was read (and no other
//! controller's finalizer can be lost). The caller retries on conflict (the framework's back-off does).
//! It works for any kind, including custom resources and metadata-only (`PartialObjectMeta`) APIs.

use std::fmt::Debug;

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

/// Whether `obj` carries the finalizer `name`.
pub fn has_finalizer<K: Resource>(obj: &K, name: &str) -> bool {
    obj.meta()
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == name))
}

/// Whether `obj` is being deleted.
pub fn is_deleting<K: Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some()
}

/// The finalizer list with `name` added (`None` if already present).
pub fn with_finalizer<K: Resource>(obj: &K, name: &str) -> Option<Vec<String>> {
    if has_finalizer(obj, name) {
        return None;
    }
    let mut list = obj.meta().finalizers.clone().unwrap_or_default();
    list.push(name.to_string());
    Some(list)
}

/// The finalizer list with `name` removed (`None` if absent).
pub fn without_finalizer<K: Resource>(obj: &K, name: &str) -> Option<Vec<String>> {
    if !has_finalizer(obj, name) {
        return None;
    }
    Some(
        obj.meta()
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != name)
            .cloned()
            .collect(),
    )
}

/// The merge patch setting `finalizers`, guarded by `resourceVersion`.
pub fn finalizers_patch(resource_version: Option<&str>, finalizers: &[String]) -> serde_json::Value {
    json!({ "metadata": { "resourceVersion": resource_version, "finalizers": finalizers } })
}

async fn patch_finalizers<K>(
    api: &Api<K>,
    obj: &K,
    finalizers: Vec<String>,
    field_manager: &str,
) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let patch = finalizers_patch(obj.meta().resource_version.as_deref(), &finalizers);
    api.patch(
        &obj.name_any(),
        &PatchParams {
            field_manager: Some(field_manager.into()),
            ..Default::default()
        },
        &Patch::Merge(&patch),
    )
    .await
}

/// Adds finalizer `name` to `obj` unless present; returns the updated object (`None` if nothing changed).
pub async fn add<K>(api: &Api<K>, obj: &K, name: &str, field_manager: &str) -> Result<Option<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match with_finalizer(obj, name) {
        Some(list) => patch_finalizers(api, obj, list, field_manager).await.map(Some),
        None => Ok(None),
    }
}

/// Removes finalizer `name` from `obj` if present; returns the updated object (`None` if nothing changed).
/// A 404 means the object is already gone, which is what removing the last finalizer leads to anyway.
pub async fn remove<K>(
    api: &Api<K>,
    obj: &K,
    name: &str,
    field_manager: &str,
) -> Result<Option<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match without_finalizer(obj, name) {
        Some(list) => match patch_finalizers(api, obj, list, field_manager).await {
            Ok(updated) => Ok(Some(updated)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(e),
        },
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn cm(finalizers: &[&str]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("a".into()),
                resource_version: Some("7".into()),
                finalizers: Some(finalizers.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn add_and_remove_keep_other_finalizers() {
        assert_eq!(
            with_finalizer(&cm(&["x"]), "mine"),
            Some(vec!["x".into(), "mine".into()])
        );
        assert_eq!(with_finalizer(&cm(&["mine"]), "mine"), None);
        assert_eq!(
            without_finalizer(&cm(&["x", "mine", "y"]), "mine"),
            Some(vec!["x".into(), "y".into()])
        );
        assert_eq!(without_finalizer(&cm(&["x"]), "mine"), None);
        assert!(has_finalizer(&cm(&["mine"]), "mine"));
        assert!(!is_deleting(&cm(&[])));
    }

    #[test]
    fn patch_is_guarded_by_resource_version() {
        let p = finalizers_patch(Some("7"), &["a".to_string()]);
        assert_eq!(
            p,
            json!({"metadata": {"resourceVersion": "7", "finalizers": ["a"]}})
        );
    }
}
