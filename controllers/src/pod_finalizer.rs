//! The PodFinalizer controller: host pods (label `wasmcloud.com/hostgroup`, in the host namespaces) carry
//! the finalizer `runtime.wasmcloud.dev/pod-host-finalizer`. When such a pod starts terminating, every
//! Host whose `hostname` is the pod's IP is deleted at once (so its workloads are rescheduled without
//! waiting for heartbeats to time out), then the finalizer is released so the pod never hangs.
//!
//! Pods are watched metadata-only (labels, finalizers and the deletion mark are all it needs); the pod's IP
//! is read with one GET when it starts terminating. Hosts come from the shared Host cache, indexed by
//! hostname.
//!
//! Beyond wasmCloud's controller: a pod whose label was removed while it carried the finalizer is released
//! too, so it can never hang on a finalizer nobody handles.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use kube::core::PartialObjectMeta;
use kube::{Client, ResourceExt};
use weft_crds::Host;
use weft_crds::names::{finalizers, labels};
use weft_framework::events::EventRecorder;
use weft_framework::{Action, Cache, Context, ReconcileError, Reconciler, finalizer};

/// The controller's name: its metric label, log field, field manager and event reporter.
pub const NAME: &str = "host-pod";
/// The Host cache index by `hostname`.
pub const HOSTNAME_INDEX: &str = "hostname";

/// The metadata-only pod type the controller reconciles.
pub type PodMeta = PartialObjectMeta<Pod>;

/// The facts about a pod the decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodFacts {
    /// It carries the host-pod label.
    pub is_host_pod: bool,
    /// It carries our finalizer.
    pub has_finalizer: bool,
    /// It is terminating.
    pub deleting: bool,
}

impl PodFacts {
    /// Reads the facts from a pod's metadata.
    pub fn of<K: kube::Resource>(pod: &K) -> Self {
        Self {
            is_host_pod: pod
                .meta()
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(labels::HOST_POD_GROUP)),
            has_finalizer: finalizer::has_finalizer(pod, finalizers::POD_HOST),
            deleting: finalizer::is_deleting(pod),
        }
    }
}

/// What to do with a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing.
    Nothing,
    /// A live host pod without the finalizer: add it.
    AddFinalizer,
    /// A terminating pod with the finalizer: delete its Hosts, then remove the finalizer.
    CleanUpAndRelease,
    /// A live pod that is no longer a host pod but still has the finalizer: remove it.
    Release,
}

/// The pure decision for a pod.
pub fn decide(facts: PodFacts) -> Decision {
    match facts {
        PodFacts {
            deleting: true,
            has_finalizer: true,
            ..
        } => Decision::CleanUpAndRelease,
        PodFacts {
            deleting: true,
            has_finalizer: false,
            ..
        } => Decision::Nothing,
        PodFacts {
            is_host_pod: true,
            has_finalizer: false,
            ..
        } => Decision::AddFinalizer,
        PodFacts {
            is_host_pod: false,
            has_finalizer: true,
            ..
        } => Decision::Release,
        _ => Decision::Nothing,
    }
}

/// Whether an informer event about this pod can need work (host pods, and any pod with our finalizer).
pub fn is_relevant<K: kube::Resource>(pod: &K) -> bool {
    let f = PodFacts::of(pod);
    f.is_host_pod || f.has_finalizer
}

/// The IPs a pod's Host may be registered under (`status.podIP` and `status.podIPs`).
pub fn pod_ips(pod: &Pod) -> Vec<String> {
    let mut ips = Vec::new();
    if let Some(status) = &pod.status {
        ips.extend(status.pod_ip.iter().filter(|ip| !ip.is_empty()).cloned());
        for ip in status.pod_ips.iter().flatten() {
            if !ip.ip.is_empty() && !ips.contains(&ip.ip) {
                ips.push(ip.ip.clone());
            }
        }
    }
    ips
}

/// The names of the Hosts to delete for a pod with `ips`: those whose hostname is one of them and that
/// are not already being deleted.
pub fn hosts_to_delete<'a>(hosts: impl IntoIterator<Item = &'a Host>, ips: &[String]) -> Vec<String> {
    let mut names: Vec<String> = hosts
        .into_iter()
        .filter(|h| h.metadata.deletion_timestamp.is_none())
        .filter(|h| h.spec.hostname.as_ref().is_some_and(|n| ips.contains(n)))
        .filter_map(|h| h.metadata.name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The index function for the Host cache.
pub fn hostname_index(host: &Host) -> Vec<String> {
    host.spec
        .hostname
        .iter()
        .filter(|h| !h.is_empty())
        .cloned()
        .collect()
}

/// Errors of the PodFinalizer reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the pod failed.
    #[error("reading pod {pod}: {source}")]
    GetPod {
        /// The pod.
        pod: String,
        /// The cause.
        source: kube::Error,
    },
    /// Deleting a Host failed.
    #[error("deleting Host {host}: {source}")]
    DeleteHost {
        /// The Host.
        host: String,
        /// The cause.
        source: kube::Error,
    },
    /// Patching the pod's finalizers failed (409 when it changed meanwhile: retried).
    #[error("updating finalizers of pod {pod}: {source}")]
    Finalizer {
        /// The pod.
        pod: String,
        /// The cause.
        source: kube::Error,
    },
}

impl ReconcileError for Error {
    fn category(&self) -> &'static str {
        match self {
            Self::GetPod { source, .. }
            | Self::DeleteHost { source, .. }
            | Self::Finalizer { source, .. } => weft_framework::reconcile::kube_error_category(source),
        }
    }
}

/// The reconciler.
pub struct PodFinalizer {
    client: Client,
    hosts: Cache<Host>,
    operator_namespace: String,
    recorder: EventRecorder,
}

impl PodFinalizer {
    /// A reconciler deleting Hosts in `operator_namespace` found in the `hosts` cache (which must have the
    /// [`HOSTNAME_INDEX`] index).
    pub fn new(
        client: Client,
        hosts: Cache<Host>,
        operator_namespace: String,
        recorder: EventRecorder,
    ) -> Self {
        Self {
            client,
            hosts,
            operator_namespace,
            recorder,
        }
    }

    async fn clean_up_and_release(&self, pod: &PodMeta, namespace: &str) -> Result<Action, Error> {
        let name = pod.name_any();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let full = match pods.get_opt(&name).await {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(Action::Done),
            Err(source) => {
                return Err(Error::GetPod {
                    pod: format!("{namespace}/{name}"),
                    source,
                });
            }
        };
        if !finalizer::has_finalizer(&full, finalizers::POD_HOST) {
            return Ok(Action::Done);
        }
        let ips = pod_ips(&full);
        let candidates: Vec<Arc<Host>> = ips
            .iter()
            .flat_map(|ip| self.hosts.by_index(HOSTNAME_INDEX, ip))
            .collect();
        let doomed = hosts_to_delete(
            candidates
                .iter()
                .map(|h| h.as_ref())
                .filter(|h| h.metadata.namespace.as_deref() == Some(&self.operator_namespace)),
            &ips,
        );
        let hosts: Api<Host> = Api::namespaced(self.client.clone(), &self.operator_namespace);
        for host in &doomed {
            match hosts.delete(host, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::info!(pod = %format!("{namespace}/{name}"), %host, "deleted the Host of a terminating pod")
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    return Err(Error::DeleteHost {
                        host: host.clone(),
                        source,
                    });
                }
            }
        }
        if !doomed.is_empty() {
            self.recorder
                .normal(
                    &full,
                    "HostDeleted",
                    "DeleteHost",
                    format!("Deleted Host {} (hostname {})", doomed.join(", "), ips.join(", ")),
                )
                .await;
        }
        finalizer::remove(&pods, &full, finalizers::POD_HOST, NAME)
            .await
            .map_err(|source| Error::Finalizer {
                pod: format!("{namespace}/{name}"),
                source,
            })?;
        tracing::info!(pod = %format!("{namespace}/{name}"), ips = ?ips, hosts = doomed.len(), "released the host pod");
        Ok(Action::Done)
    }
}

impl Reconciler<PodMeta> for PodFinalizer {
    type Error = Error;

    async fn reconcile(&self, pod: Arc<PodMeta>, _ctx: &Context) -> Result<Action, Error> {
        let Some(namespace) = pod.namespace() else {
            return Ok(Action::Done);
        };
        let pods: Api<PodMeta> = Api::namespaced(self.client.clone(), &namespace);
        let finalizer_error = |source| Error::Finalizer {
            pod: format!("{namespace}/{}", pod.name_any()),
            source,
        };
        match decide(PodFacts::of(pod.as_ref())) {
            Decision::Nothing => {}
            Decision::AddFinalizer => {
                finalizer::add(&pods, pod.as_ref(), finalizers::POD_HOST, NAME)
                    .await
                    .map_err(finalizer_error)?;
            }
            Decision::Release => {
                finalizer::remove(&pods, pod.as_ref(), finalizers::POD_HOST, NAME)
                    .await
                    .map_err(finalizer_error)?;
            }
            Decision::CleanUpAndRelease => return self.clean_up_and_release(&pod, &namespace).await,
        }
        Ok(Action::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodIP, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::ObjectMeta;
    use weft_crds::HostFields;

    fn facts(is_host_pod: bool, has_finalizer: bool, deleting: bool) -> PodFacts {
        PodFacts {
            is_host_pod,
            has_finalizer,
            deleting,
        }
    }

    #[test]
    fn live_host_pods_get_the_finalizer_and_others_do_not() {
        assert_eq!(decide(facts(true, false, false)), Decision::AddFinalizer);
        assert_eq!(decide(facts(true, true, false)), Decision::Nothing);
        assert_eq!(decide(facts(false, false, false)), Decision::Nothing);
    }

    #[test]
    fn terminating_pods_with_the_finalizer_are_cleaned_up_whatever_their_labels() {
        assert_eq!(decide(facts(true, true, true)), Decision::CleanUpAndRelease);
        assert_eq!(decide(facts(false, true, true)), Decision::CleanUpAndRelease);
        assert_eq!(
            decide(facts(true, false, true)),
            Decision::Nothing,
            "never re-add to a terminating pod"
        );
    }

    #[test]
    fn a_pod_that_lost_its_label_is_released() {
        assert_eq!(decide(facts(false, true, false)), Decision::Release);
    }

    fn meta(labels: &[(&str, &str)], finalizers: &[&str], deleting: bool) -> PodMeta {
        let mut m = PodMeta {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
                ..Default::default()
            },
            ..Default::default()
        };
        if deleting {
            m.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        }
        m
    }

    #[test]
    fn facts_and_relevance_from_metadata() {
        let host_pod = meta(&[(labels::HOST_POD_GROUP, "")], &[], false);
        assert_eq!(PodFacts::of(&host_pod), facts(true, false, false));
        assert!(is_relevant(&host_pod));
        let other = meta(&[("app", "x")], &["other/finalizer"], false);
        assert!(!is_relevant(&other));
        let orphaned = meta(&[], &[finalizers::POD_HOST], true);
        assert_eq!(PodFacts::of(&orphaned), facts(false, true, true));
        assert!(is_relevant(&orphaned));
    }

    fn host(name: &str, hostname: Option<&str>, deleting: bool) -> Host {
        let mut h = Host::new(
            name,
            HostFields {
                hostname: hostname.map(str::to_string),
                ..Default::default()
            },
        );
        if deleting {
            h.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        }
        h
    }

    #[test]
    fn hosts_are_matched_by_pod_ip_only() {
        let hosts = [
            host("a", Some("127.0.0.5"), false),
            host("b", Some("127.0.0.6"), false),
            host("c", Some("127.0.0.5"), false),
            host("d", None, false),
            host("e", Some("127.0.0.5"), true),
        ];
        assert_eq!(
            hosts_to_delete(&hosts, &["127.0.0.5".to_string()]),
            vec!["a", "c"]
        );
        assert!(hosts_to_delete(&hosts, &["10.0.0.1".to_string()]).is_empty());
        assert!(hosts_to_delete(&hosts, &[]).is_empty());
        assert_eq!(hostname_index(&hosts[0]), vec!["127.0.0.5"]);
        assert!(hostname_index(&hosts[3]).is_empty());
    }

    #[test]
    fn pod_ips_from_status() {
        let pod = Pod {
            status: Some(PodStatus {
                pod_ip: Some("127.0.0.5".into()),
                pod_ips: Some(vec![
                    PodIP {
                        ip: "127.0.0.5".into(),
                    },
                    PodIP { ip: "fd00::5".into() },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(pod_ips(&pod), vec!["127.0.0.5", "fd00::5"]);
        assert!(pod_ips(&Pod::default()).is_empty());
    }
}
