//! The workload route controller (`workload-route`, wasmCloud's WorkloadRouteReconciler): for every
//! Service that Workloads name in `spec.kubernetes.service`, an EndpointSlice of the hosts that run a
//! Ready replica, so a plain Kubernetes Service (and any Ingress or Gateway API controller) can reach
//! them without Weft's gateway.
//!
//! The slice is wasmCloud's: named `<service, at most 54 characters>-<fnv32a of the service name, 8 hex
//! digits>`, labels `kubernetes.io/service-name` and `wasmcloud.dev/route-manager=true`, a controller
//! owner reference to the Service (so it goes with the Service), address type IPv4, one port named
//! `http` (the Service's port must be named `http` too) with the hosts' ingress port, one endpoint per
//! host IP, ready and serving. With no Ready replica left, the slice is deleted. Hosts whose hostname is
//! not an IPv4 address are left out (wasmCloud looks up their pod; Weft hosts always report their
//! pod IP).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::{Client, ResourceExt};
use weft_crds::names::labels;
use weft_crds::{Host, Workload};
use weft_framework::{Action, Cache, Context, Reconciler};

use crate::error::{ApiError, api_err};

/// The controller's name (wasmCloud's).
pub const NAME: &str = "workload-route";
/// The Workload cache index by the Service it names (`namespace/name`).
pub const SERVICE_INDEX: &str = "kubernetesService";
/// The name of the slice's (and the Service's) port.
pub const PORT_NAME: &str = "http";

/// The Service metadata the controller is keyed by.
pub type ServiceMeta = PartialObjectMeta<Service>;

/// Index values of a Workload: the Service it names.
pub fn service_index(w: &Workload) -> Vec<String> {
    let ns = w.metadata.namespace.as_deref().unwrap_or_default();
    w.spec
        .kubernetes
        .as_ref()
        .and_then(|k| k.service.as_ref())
        .filter(|s| !s.name.is_empty())
        .map(|s| format!("{ns}/{}", s.name))
        .into_iter()
        .collect()
}

/// wasmCloud's EndpointSlice name for a Service.
pub fn slice_name(service: &str) -> String {
    let prefix: String = service.chars().take(54).collect();
    format!(
        "{prefix}-{:08x}",
        weft_crds::template_hash::fnv1a32(service.as_bytes())
    )
}

/// The slice a Service should have (pure): `None` when no Ready replica is on a host with an IPv4
/// hostname and a port.
pub fn desired_slice<'a>(
    service: &ServiceMeta,
    workloads: impl IntoIterator<Item = &'a Workload>,
    host_by_id: impl Fn(&str) -> Option<Arc<Host>>,
) -> Option<EndpointSlice> {
    let name = service.name_any();
    let ns = service.namespace()?;
    let mut ips: BTreeMap<Ipv4Addr, i32> = BTreeMap::new();
    for w in workloads {
        if w.metadata.deletion_timestamp.is_some() || !w.is_ready() {
            continue;
        }
        let Some(host) = w
            .status
            .as_ref()
            .and_then(|s| s.host_id.as_deref())
            .and_then(&host_by_id)
        else {
            continue;
        };
        let (Some(hostname), Some(port)) = (host.spec.hostname.as_deref(), host.spec.http_port) else {
            continue;
        };
        let (Ok(ip), Ok(port)) = (hostname.parse::<Ipv4Addr>(), i32::try_from(port)) else {
            continue;
        };
        // Addresses the apiserver refuses in an EndpointSlice would make the whole slice invalid.
        if port > 0 && endpoint_address_allowed(ip) {
            ips.entry(ip).or_insert(port);
        }
    }
    // One port for the slice: the first host's, as wasmCloud does (hosts of a group share it).
    let port = *ips.values().next()?;
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: name.clone(),
        uid: service.uid().unwrap_or_default(),
        controller: Some(true),
        // Not blocking: that would need update on services/finalizers, more than the slice is worth.
        block_owner_deletion: None,
    };
    let endpoints: BTreeSet<Ipv4Addr> = ips.keys().copied().collect();
    Some(EndpointSlice {
        metadata: ObjectMeta {
            name: Some(slice_name(&name)),
            namespace: Some(ns),
            labels: Some(BTreeMap::from([
                (labels::ENDPOINT_SLICE_SERVICE_NAME.to_string(), name.clone()),
                (labels::ROUTE_MANAGER.to_string(), "true".to_string()),
            ])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        ports: Some(vec![EndpointPort {
            name: Some(PORT_NAME.into()),
            port: Some(port),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        endpoints: Some(
            endpoints
                .into_iter()
                .map(|ip| Endpoint {
                    addresses: vec![ip.to_string()],
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        serving: Some(true),
                        terminating: None,
                    }),
                    ..Default::default()
                })
                .collect(),
        ),
    })
}

/// Whether the apiserver accepts `ip` as an endpoint address: not unspecified, loopback, link-local or
/// link-local multicast (`ValidateEndpointIP`). Hosts only report such addresses outside a cluster.
pub fn endpoint_address_allowed(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_link_local()
        || (ip.octets()[0] == 224 && ip.octets()[1] == 0 && ip.octets()[2] == 0))
}

/// Whether the cached slice already says what `desired` says.
pub fn same_slice(cached: &EndpointSlice, desired: &EndpointSlice) -> bool {
    cached.metadata.labels == desired.metadata.labels
        && cached.address_type == desired.address_type
        && cached.ports == desired.ports
        && cached.endpoints == desired.endpoints
        && cached.metadata.owner_references == desired.metadata.owner_references
}

/// Errors of the route reconcile: a failed API call.
pub type Error = ApiError;

/// The route reconciler, keyed by Service.
pub struct RouteReconciler {
    client: Client,
    workloads: Cache<Workload>,
    hosts: Cache<Host>,
    slices: Cache<EndpointSlice>,
}

impl RouteReconciler {
    /// A reconciler over the shared caches (`slices`: the EndpointSlices labelled as ours).
    pub fn new(
        client: Client,
        workloads: Cache<Workload>,
        hosts: Cache<Host>,
        slices: Cache<EndpointSlice>,
    ) -> Self {
        Self {
            client,
            workloads,
            hosts,
            slices,
        }
    }
}

impl Reconciler<ServiceMeta> for RouteReconciler {
    type Error = Error;

    async fn reconcile(&self, service: Arc<ServiceMeta>, _ctx: &Context) -> Result<Action, Error> {
        let Some(ns) = service.namespace() else {
            return Ok(Action::Done);
        };
        let name = service.name_any();
        let slice = slice_name(&name);
        if service.metadata.deletion_timestamp.is_some() {
            // The slice goes with the Service (owner reference).
            return Ok(Action::Done);
        }
        let workloads = self.workloads.by_index(SERVICE_INDEX, &format!("{ns}/{name}"));
        let desired = desired_slice(&service, workloads.iter().map(|w| w.as_ref()), |id| {
            self.hosts.find(|h| h.spec.host_id == id).into_iter().next()
        });
        let cached = self.slices.get_namespaced(&ns, &slice);
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &ns);
        match (desired, cached) {
            (None, None) => {}
            (None, Some(_)) => match api.delete(&slice, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::info!(service = %format!("{ns}/{name}"), %slice, "deleted EndpointSlice (no ready endpoints)")
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(api_err("deleting EndpointSlice", format!("{ns}/{slice}"))(e)),
            },
            (Some(d), Some(c)) if same_slice(&c, &d) => {}
            (Some(d), _) => {
                let params = PatchParams::apply(NAME).force();
                api.patch(
                    &slice,
                    &params,
                    &Patch::Apply(&serde_json::json!({
                        "apiVersion": "discovery.k8s.io/v1",
                        "kind": "EndpointSlice",
                        "metadata": d.metadata,
                        "addressType": d.address_type,
                        "ports": d.ports,
                        "endpoints": d.endpoints,
                    })),
                )
                .await
                .map_err(api_err("applying EndpointSlice", format!("{ns}/{slice}")))?;
                tracing::info!(service = %format!("{ns}/{name}"), %slice, endpoints = d.endpoints.as_ref().map_or(0, Vec::len), "applied EndpointSlice");
            }
        }
        Ok(Action::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_crds::condition::{Condition, ConditionStatus};
    use weft_crds::workload::{KubernetesServiceRef, KubernetesSpec};
    use weft_crds::{HostFields, WorkloadSpec, WorkloadStatus};

    fn service() -> ServiceMeta {
        let mut s = ServiceMeta {
            types: None,
            metadata: ObjectMeta::default(),
            _phantom: Default::default(),
        };
        s.metadata.name = Some("web".into());
        s.metadata.namespace = Some("shop".into());
        s.metadata.uid = Some("uid-web".into());
        s
    }

    fn host(id: &str, hostname: &str) -> Arc<Host> {
        Arc::new(Host::new(
            id,
            HostFields {
                host_id: id.into(),
                hostname: Some(hostname.into()),
                http_port: Some(9191),
                ..Default::default()
            },
        ))
    }

    fn workload(host: &str, ready: bool) -> Workload {
        let mut w = Workload::new(
            "w",
            WorkloadSpec {
                kubernetes: Some(KubernetesSpec {
                    service: Some(KubernetesServiceRef { name: "web".into() }),
                }),
                ..Default::default()
            },
        );
        w.metadata.namespace = Some("shop".into());
        w.status = Some(WorkloadStatus {
            conditions: vec![Condition::new(
                "Ready",
                if ready {
                    ConditionStatus::True
                } else {
                    ConditionStatus::False
                },
            )],
            host_id: Some(host.into()),
            ..Default::default()
        });
        w
    }

    fn hosts(id: &str) -> Option<Arc<Host>> {
        match id {
            "h1" => Some(host("h1", "10.0.0.2")),
            "h2" => Some(host("h2", "10.0.0.1")),
            "h3" => Some(host("h3", "host-3.example")),
            "h4" => Some(host("h4", "127.0.0.5")),
            _ => None,
        }
    }

    #[test]
    fn names_are_wasmclouds() {
        assert_eq!(
            slice_name("web"),
            format!("web-{:08x}", weft_crds::template_hash::fnv1a32(b"web"))
        );
        let long = "a".repeat(60);
        assert!(slice_name(&long).starts_with(&"a".repeat(54)));
        assert_eq!(slice_name(&long).len(), 54 + 1 + 8);
        assert_eq!(service_index(&workload("h1", true)), vec!["shop/web"]);
    }

    #[test]
    fn ready_replicas_become_one_endpoint_per_host_ip() {
        let ws = [
            workload("h1", true),
            workload("h1", true),
            workload("h2", true),
            workload("h2", false),
            workload("h3", true),
            workload("h4", true),
            workload("gone", true),
        ];
        let s = desired_slice(&service(), &ws, hosts).expect("a slice");
        let eps = s.endpoints.as_ref().unwrap();
        let ips: Vec<&str> = eps.iter().map(|e| e.addresses[0].as_str()).collect();
        assert_eq!(
            ips,
            vec!["10.0.0.1", "10.0.0.2"],
            "sorted, deduplicated, IPv4 only, no loopback"
        );
        assert!(
            eps.iter()
                .all(|e| e.conditions.as_ref().unwrap().ready == Some(true))
        );
        let port = &s.ports.as_ref().unwrap()[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("http"), Some(9191)));
        assert_eq!(
            s.metadata.labels.as_ref().unwrap()["kubernetes.io/service-name"],
            "web"
        );
        assert_eq!(
            s.metadata.labels.as_ref().unwrap()["wasmcloud.dev/route-manager"],
            "true"
        );
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Service", "uid-web"));
        assert!(same_slice(&s, &s.clone()));
        assert!(desired_slice(&service(), &[workload("h2", false)], hosts).is_none());
    }
}
