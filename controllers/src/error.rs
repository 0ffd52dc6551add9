//! The error every controller shares for a failed Kubernetes API call.

use weft_framework::ReconcileError;
use weft_framework::reconcile::kube_error_category;

/// A failed Kubernetes API call: what was being done, to which object, and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{action} {object}: {source}")]
pub struct ApiError {
    /// What was being done, e.g. "deleting Host".
    pub action: &'static str,
    /// The object, e.g. `weft-system/calm-otter`.
    pub object: String,
    /// The cause.
    #[source]
    pub source: kube::Error,
}

impl ApiError {
    /// The bounded metric category of the cause.
    pub fn category(&self) -> &'static str {
        kube_error_category(&self.source)
    }
}

/// Controllers whose only failure is an API call use [`ApiError`] as their reconcile error.
impl ReconcileError for ApiError {
    fn category(&self) -> &'static str {
        ApiError::category(self)
    }
}

/// A `map_err` adapter: `api.delete(..).await.map_err(api_err("deleting Host", name))?`.
pub fn api_err(action: &'static str, object: impl Into<String>) -> impl FnOnce(kube::Error) -> ApiError {
    let object = object.into();
    move |source| ApiError {
        action,
        object,
        source,
    }
}
