//! Server-side apply with one field manager per controller, so ownership shows in `managedFields` and
//! controllers never silently overwrite each other's fields.

use std::fmt::Debug;

use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

/// Applies one controller's intent with its own field manager.
#[derive(Debug, Clone)]
pub struct Applier {
    field_manager: String,
}

impl Applier {
    /// An applier writing as `field_manager` (use the controller's name).
    pub fn new(field_manager: impl Into<String>) -> Self {
        Self {
            field_manager: field_manager.into(),
        }
    }

    /// The field manager.
    pub fn field_manager(&self) -> &str {
        &self.field_manager
    }

    fn params(&self) -> PatchParams {
        PatchParams::apply(&self.field_manager).force()
    }

    /// Applies `obj` (it must carry `apiVersion`, `kind` and `metadata.name`; only the fields it sets are
    /// claimed). Forces ownership, as controllers should.
    pub async fn apply<K>(&self, api: &Api<K>, obj: &K) -> Result<K, kube::Error>
    where
        K: Resource + Serialize + Clone + DeserializeOwned + Debug,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        api.patch(&name, &self.params(), &Patch::Apply(obj)).await
    }

    /// Applies `status` to the status subresource of `name`, claiming only the status fields it sets.
    pub async fn apply_status<K, S>(&self, api: &Api<K>, name: &str, status: &S) -> Result<K, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
        S: Serialize,
    {
        let body = status_body::<K, S>(name, status);
        api.patch_status(name, &self.params(), &Patch::Apply(&body)).await
    }
}

/// The apply body for a status: `apiVersion`, `kind`, `metadata.name` and `status`.
pub fn status_body<K: Resource<DynamicType = ()>, S: Serialize>(name: &str, status: &S) -> serde_json::Value {
    json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": { "name": name },
        "status": status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn status_body_carries_type_meta() {
        let body = status_body::<Pod, _>("p", &json!({"phase": "Running"}));
        assert_eq!(
            body,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "status": {"phase": "Running"}})
        );
    }
}
