//! WorkloadDeployments in tests and benchmarks: building, patching, waiting for a rollout, and a bounded
//! request loop against the replicas.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use tokio::sync::Mutex;
use weft_crds::condition::{self, ConditionStatus};
use weft_crds::names::{condition_types as ct, labels};
use weft_crds::{Host, Workload, WorkloadDeployment};

/// The deployment's Workloads (by the deployment label the replica sets put on them).
pub async fn workloads_of(api: &Api<Workload>, deployment: &str) -> Vec<Workload> {
    let lp = ListParams::default().labels(&format!("{}={deployment}", labels::WORKLOAD_DEPLOYMENT));
    api.list(&lp).await.map(|l| l.items).unwrap_or_default()
}

/// What a request loop saw.
#[derive(Debug, Default)]
pub struct Traffic {
    pub ok: u64,
    pub failures: Vec<String>,
    pub bodies: BTreeSet<String>,
    /// Largest number of live (not deleting) replicas seen at once.
    pub max_live: usize,
    /// Smallest number of Ready live replicas seen once the loop had started.
    pub min_ready: usize,
    /// Whether replicas of two templates were ever live at the same time.
    pub mixed: bool,
}

/// A bounded request loop through a client-side router: every 25 ms it lists the deployment's Workloads
/// and routes to the hosts of the Ready ones that are not being deleted (what the gateway does from
/// its caches); requests go round-robin over them until stopped (or for at most `limit`).
pub struct Loop {
    stop: Arc<AtomicBool>,
    traffic: Arc<Mutex<Traffic>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Loop {
    pub fn start(admin: Client, ns: &str, deployment: &str, http_host: &str, limit: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let traffic = Arc::new(Mutex::new(Traffic {
            min_ready: usize::MAX,
            ..Traffic::default()
        }));
        let routes: Arc<std::sync::RwLock<Vec<u16>>> = Arc::default();
        let primed = Arc::new(tokio::sync::Notify::new());
        let workloads: Api<Workload> = Api::namespaced(admin.clone(), ns);
        let hosts: Api<Host> = Api::namespaced(admin, ns);
        let router = {
            let (stop, traffic, routes, deployment, primed) = (
                stop.clone(),
                traffic.clone(),
                routes.clone(),
                deployment.to_string(),
                primed.clone(),
            );
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                    let ports: BTreeMap<String, u16> = hosts
                        .list(&Default::default())
                        .await
                        .map(|l| l.items)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|h| {
                            Some((h.spec.host_id.clone(), u16::try_from(h.spec.http_port?).ok()?))
                        })
                        .collect();
                    let ws = workloads_of(&workloads, &deployment).await;
                    let live: Vec<&Workload> = ws
                        .iter()
                        .filter(|w| w.metadata.deletion_timestamp.is_none())
                        .collect();
                    let routable: Vec<u16> = live
                        .iter()
                        .filter(|w| w.is_ready())
                        .filter_map(|w| ports.get(w.status.as_ref()?.host_id.as_deref()?).copied())
                        .collect();
                    let templates: BTreeSet<&str> = live
                        .iter()
                        .filter_map(|w| w.labels().get(labels::TEMPLATE_HASH).map(String::as_str))
                        .collect();
                    {
                        let mut t = traffic.lock().await;
                        t.max_live = t.max_live.max(live.len());
                        t.min_ready = t.min_ready.min(live.iter().filter(|w| w.is_ready()).count());
                        t.mixed |= templates.len() > 1;
                    }
                    *routes.write().unwrap() = routable;
                    primed.notify_one();
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            })
        };
        let requester = {
            let (stop, traffic, routes, http_host) = (
                stop.clone(),
                traffic.clone(),
                routes.clone(),
                http_host.to_string(),
            );
            tokio::spawn(async move {
                // Requests start once the router has its first table.
                primed.notified().await;
                let started = tokio::time::Instant::now();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                    let port = {
                        let r = routes.read().unwrap();
                        (!r.is_empty()).then(|| r[i % r.len()])
                    };
                    i += 1;
                    let Some(port) = port else {
                        traffic
                            .lock()
                            .await
                            .failures
                            .push("no Ready replica to route to".into());
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let result = weft_e2e::testing::http_get_host(("127.0.0.1", port), &http_host).await;
                    let mut t = traffic.lock().await;
                    match result {
                        Ok(r) if r.status == 200 => {
                            t.ok += 1;
                            t.bodies.insert(r.body);
                        }
                        Ok(r) => {
                            t.failures
                                .push(format!("port {port}: HTTP {}: {}", r.status, r.body.trim()))
                        }
                        Err(e) => t.failures.push(format!("port {port}: {e}")),
                    }
                    drop(t);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        Self {
            stop,
            traffic,
            tasks: vec![router, requester],
        }
    }

    pub async fn finish(self) -> Traffic {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        Arc::try_unwrap(self.traffic)
            .expect("loop tasks ended")
            .into_inner()
    }
}

pub fn cond_of(conditions: &[weft_crds::Condition], type_: &str) -> (ConditionStatus, String, String) {
    condition::find(conditions, type_).map_or((ConditionStatus::Unknown, String::new(), String::new()), |c| {
        (
            c.status.clone(),
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        )
    })
}

pub fn deployment_cond(d: &WorkloadDeployment, type_: &str) -> (ConditionStatus, String, String) {
    cond_of(
        d.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or(&[]),
        type_,
    )
}

/// A deployment of `replicas` replicas of `image` (a file path) served for `http_host`.
pub fn deployment(
    name: &str,
    replicas: i32,
    image: &str,
    http_host: &str,
    extra: serde_json::Value,
) -> WorkloadDeployment {
    let spec = super::hello_workload("t", image, http_host).spec;
    let mut value = serde_json::json!({
        "apiVersion": "runtime.wasmcloud.dev/v1alpha1",
        "kind": "WorkloadDeployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "template": {"spec": spec}},
    });
    if let (Some(spec), serde_json::Value::Object(extra)) = (value["spec"].as_object_mut(), extra) {
        spec.extend(extra);
    }
    serde_json::from_value(value).expect("a deployment")
}

/// The deployment once its `Ready` is True for its latest generation (on timeout, the panic shows its
/// status and its Workloads' conditions).
pub async fn rolled_out(api: &Api<WorkloadDeployment>, name: &str) -> WorkloadDeployment {
    let deadline = tokio::time::Instant::now() + super::WAIT;
    loop {
        let d = api.get(name).await.ok();
        if let Some(d) = d.as_ref().filter(|d| {
            deployment_cond(d, ct::READY).0 == ConditionStatus::True
                && d.status.as_ref().and_then(|s| s.observed_generation) == d.metadata.generation
        }) {
            return d.clone();
        }
        if tokio::time::Instant::now() > deadline {
            let workloads: Api<Workload> = Api::namespaced(
                api.clone().into_client(),
                &d.as_ref().and_then(|d| d.namespace()).unwrap_or_default(),
            );
            let ws: Vec<_> = workloads_of(&workloads, name)
                .await
                .into_iter()
                .map(|w| (w.name_any(), w.status.map(|s| s.conditions)))
                .collect();
            panic!(
                "WorkloadDeployment {name} was not rolled out within {:?}: {:#?}\nits Workloads: {ws:#?}",
                super::WAIT,
                d.map(|d| (d.metadata.generation, d.status))
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn patch_spec(api: &Api<WorkloadDeployment>, name: &str, spec: serde_json::Value) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({ "spec": spec })),
    )
    .await
    .expect("patch the deployment");
}

pub fn template_patch(image: &str, http_host: &str) -> serde_json::Value {
    serde_json::json!({"template": {"spec": super::hello_workload("t", image, http_host).spec}})
}
