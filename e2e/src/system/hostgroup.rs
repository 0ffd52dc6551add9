//! Host groups on the environment: the shipped host-group Deployment (`deploy/hostgroup/`), adapted
//! for the process-kubelet, whose pods run the real `weft-host` binary.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Pod, ServiceAccount};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use weft_crds::names::labels::{HOST_POD_GROUP, HOST_POD_NAME, HOST_POD_NAME_VALUE};

use super::manifests::{apply, document, source_file};
use crate::{Error, ImageCommand};

/// The image of the shipped host group (a mapping for the repository matches every tag).
pub const HOST_IMAGE: &str = "weft-host";
/// The host container of the shipped host group.
pub const HOST_CONTAINER: &str = "host";
/// The variable the shipped host group sets from `status.podIP` (as wasmCloud's chart does).
pub const HOST_IP_VAR: &str = "WASMCLOUD_HOST_IP";
/// The shipped host group's Deployment.
pub const DEPLOYMENT_FILE: &str = "deploy/hostgroup/deployment.yaml";
/// The shipped host pods' ServiceAccount.
pub const SERVICE_ACCOUNT_FILE: &str = "deploy/hostgroup/serviceaccount.yaml";

/// The kubelet mapping that runs the host image as the local `weft-host` binary.
pub fn host_image(binary: &Path) -> ImageCommand {
    ImageCommand::new(HOST_IMAGE, binary.display().to_string())
}

/// A host group to run on the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostGroup {
    /// Its namespace (a host namespace of the operator).
    pub namespace: String,
    /// The group name: the `wasmcloud.com/hostgroup` label and the hosts' `hostgroup` label.
    pub group: String,
    /// How many host pods.
    pub replicas: i32,
    /// The control-plane NATS the hosts connect to.
    pub nats_url: String,
}

impl HostGroup {
    /// The Deployment's name, `hostgroup-<group>` (as in wasmCloud's chart).
    pub fn deployment_name(&self) -> String {
        format!("hostgroup-{}", self.group)
    }

    /// The label selector of the group's pods.
    pub fn pod_selector(&self) -> String {
        format!(
            "{HOST_POD_NAME}={HOST_POD_NAME_VALUE},{HOST_POD_GROUP}={}",
            self.group
        )
    }

    /// The shipped Deployment adapted for the process-kubelet (see [`HostGroup::localize`]).
    pub fn deployment(&self) -> Result<Deployment, Error> {
        let shipped: Deployment = document(&source_file(DEPLOYMENT_FILE), "Deployment")?;
        self.localize(shipped)
    }

    /// Adapts the shipped Deployment to this group on the process-kubelet. Only what cannot work on
    /// a process-kubelet, or names the cluster, changes:
    ///
    /// * namespace, replicas, and the group (name `hostgroup-<group>` and every `wasmcloud.com/hostgroup`
    ///   label; the host reads its group from the pod label);
    /// * `--scheduler-nats-url`: the environment's NATS;
    /// * `--http-addr`, `--admin-addr`: the pod IP (`$(WASMCLOUD_HOST_IP)`) instead of `0.0.0.0`, same
    ///   ports — pods share the machine's network, so each binds its own loopback IP;
    /// * `--cache-dir=cache`: in the pod's directory (the process-kubelet mounts no volumes).
    ///
    /// Probes, grace period, environment and the `--host-name`/`--environment` arguments stay as shipped.
    pub fn localize(&self, mut deployment: Deployment) -> Result<Deployment, Error> {
        if !is_dns_label(&self.group) || self.deployment_name().len() > 63 {
            return Err(Error::Manifest(format!(
                "host group {:?} is not a valid name (lower-case letters, digits and '-', at most 53 characters)",
                self.group
            )));
        }
        let invalid = |what: &str| Error::Manifest(format!("{DEPLOYMENT_FILE}: {what}"));
        deployment.metadata.name = Some(self.deployment_name());
        deployment.metadata.namespace = Some(self.namespace.clone());
        set_group(deployment.metadata.labels.get_or_insert_default(), &self.group);
        let spec = &mut deployment.spec;
        spec.replicas = Some(self.replicas);
        set_group(spec.selector.match_labels.get_or_insert_default(), &self.group);
        set_group(
            spec.template
                .metadata
                .get_or_insert_default()
                .labels
                .get_or_insert_default(),
            &self.group,
        );
        let pod = spec
            .template
            .spec
            .as_mut()
            .ok_or_else(|| invalid("no pod spec"))?;
        for constraint in pod.topology_spread_constraints.iter_mut().flatten() {
            if let Some(labels) = constraint
                .label_selector
                .as_mut()
                .and_then(|s| s.match_labels.as_mut())
            {
                set_group(labels, &self.group);
            }
        }
        let host = pod
            .containers
            .iter_mut()
            .find(|c| c.name == HOST_CONTAINER)
            .ok_or_else(|| invalid(&format!("no container named {HOST_CONTAINER:?}")))?;
        if !sets_env(host, HOST_IP_VAR) {
            return Err(invalid(&format!("the host container does not set {HOST_IP_VAR}")));
        }
        let args = host.args.get_or_insert_default();
        set_flag(args, "--scheduler-nats-url", &self.nats_url);
        for flag in ["--http-addr", "--admin-addr"] {
            let port = flag_value(args, flag)
                .and_then(|addr| addr.rsplit_once(':').map(|(_, port)| port.to_string()))
                .ok_or_else(|| invalid(&format!("the host container has no {flag}=<ip>:<port>")))?;
            set_flag(args, flag, &format!("$({HOST_IP_VAR}):{port}"));
        }
        set_flag(args, "--cache-dir", "cache");
        Ok(deployment)
    }

    /// Applies the host pods' ServiceAccount and the group's Deployment; returns the Deployment.
    pub async fn apply(&self, client: &Client) -> Result<Deployment, Error> {
        let mut account: ServiceAccount = document(&source_file(SERVICE_ACCOUNT_FILE), "ServiceAccount")?;
        account.metadata.namespace = Some(self.namespace.clone());
        apply(&Api::namespaced(client.clone(), &self.namespace), &account).await?;
        let deployment = self.deployment()?;
        apply(&Api::namespaced(client.clone(), &self.namespace), &deployment).await
    }

    /// The port of the host container's `--admin-addr` (`/metrics`, `/healthz`, `/readyz`).
    pub fn admin_port(&self) -> Result<u16, Error> {
        let deployment = self.deployment()?;
        deployment
            .spec
            .template
            .spec
            .as_ref()
            .and_then(|p| p.containers.iter().find(|c| c.name == HOST_CONTAINER))
            .and_then(|c| flag_value(c.args.as_deref().unwrap_or_default(), "--admin-addr"))
            .and_then(|addr| addr.rsplit_once(':')?.1.parse().ok())
            .ok_or_else(|| Error::Manifest(format!("{DEPLOYMENT_FILE}: no --admin-addr=<ip>:<port>")))
    }

    /// Where each of the group's pods (not terminating, with an IP) serves its admin endpoints: its
    /// pod IP and the admin port.
    pub async fn admin_addrs(&self, client: &Client) -> Result<Vec<SocketAddr>, Error> {
        let port = self.admin_port()?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &self.namespace);
        let params = ListParams::default().labels(&self.pod_selector());
        let list = pods.list(&params).await.map_err(Error::kube(format!(
            "list the pods of {}",
            self.deployment_name()
        )))?;
        Ok(list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.status.as_ref()?.pod_ip.as_deref()?.parse().ok())
            .map(|ip: Ipv4Addr| SocketAddr::from((ip, port)))
            .collect())
    }

    /// Waits until `replicas` of the group's pods (not terminating) are Ready and returns them. On
    /// timeout the error lists every pod's phase and container state.
    pub async fn wait_ready(&self, client: &Client, timeout: Duration) -> Result<Vec<Pod>, Error> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &self.namespace);
        let params = ListParams::default().labels(&self.pod_selector());
        let deadline = Instant::now() + timeout;
        loop {
            let list = pods.list(&params).await.map_err(Error::kube(format!(
                "list the pods of {}",
                self.deployment_name()
            )))?;
            let ready: Vec<Pod> = list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
                .cloned()
                .collect();
            if ready.len() >= self.replicas.max(0) as usize {
                return Ok(ready);
            }
            if Instant::now() >= deadline {
                let states: Vec<String> = list.items.iter().map(describe).collect();
                return Err(Error::NotReady {
                    component: format!("host group {}/{}", self.namespace, self.group),
                    timeout,
                    reason: format!(
                        "{} of {} pods Ready: {}",
                        ready.len(),
                        self.replicas,
                        if states.is_empty() {
                            "no pods".to_string()
                        } else {
                            states.join("; ")
                        }
                    ),
                    log: String::new(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `name phase [container: state reason]`, for error messages.
fn describe(pod: &Pod) -> String {
    let status = pod.status.clone().unwrap_or_default();
    let containers: Vec<String> = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| {
            let state = c.state.clone().unwrap_or_default();
            let what = match (&state.waiting, &state.running, &state.terminated) {
                (Some(w), _, _) => format!(
                    "waiting {} {}",
                    w.reason.clone().unwrap_or_default(),
                    w.message.clone().unwrap_or_default()
                ),
                (_, Some(_), _) => format!("running, ready={}", c.ready),
                (_, _, Some(t)) => format!("terminated {}", t.exit_code),
                _ => "unknown".to_string(),
            };
            format!("{}: {} (restarts {})", c.name, what.trim(), c.restart_count)
        })
        .collect();
    format!(
        "{} {} [{}]",
        pod.name_any(),
        status.phase.unwrap_or_default(),
        containers.join(", ")
    )
}

fn set_group(labels: &mut BTreeMap<String, String>, group: &str) {
    labels.insert(HOST_POD_GROUP.to_string(), group.to_string());
}

fn sets_env(container: &Container, name: &str) -> bool {
    container.env.iter().flatten().any(|v| v.name == name)
}

/// The value of `--flag=value` or `--flag value` in `args`.
pub fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let prefix = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, arg)| {
        if let Some(value) = arg.strip_prefix(&prefix) {
            Some(value)
        } else if arg == flag {
            args.get(i + 1).map(String::as_str)
        } else {
            None
        }
    })
}

/// Sets `--flag=value` in `args`: replaces every `--flag=…` / `--flag …`, or appends it.
pub fn set_flag(args: &mut Vec<String>, flag: &str, value: &str) {
    let prefix = format!("{flag}=");
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut set = false;
    let mut iter = std::mem::take(args).into_iter();
    while let Some(arg) = iter.next() {
        let matched = if arg == flag {
            iter.next();
            true
        } else {
            arg.starts_with(&prefix)
        };
        if matched {
            if !set {
                out.push(format!("{flag}={value}"));
                set = true;
            }
        } else {
            out.push(arg);
        }
    }
    if !set {
        out.push(format!("{flag}={value}"));
    }
    *args = out;
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn group(name: &str) -> HostGroup {
        HostGroup {
            namespace: "ns-1".into(),
            group: name.into(),
            replicas: 3,
            nats_url: "nats://127.0.0.1:4444".into(),
        }
    }

    fn shipped() -> Deployment {
        document(&source_file(DEPLOYMENT_FILE), "Deployment").unwrap()
    }

    fn host_container(d: &Deployment) -> Container {
        let pod = d.spec.clone().template.spec.unwrap();
        pod.containers
            .into_iter()
            .find(|c| c.name == HOST_CONTAINER)
            .unwrap()
    }

    #[test]
    fn flags_are_replaced_in_both_forms_or_appended() {
        let mut a = args(&["--x=1", "--y", "2", "--z=3", "--x", "4"]);
        set_flag(&mut a, "--x", "9");
        assert_eq!(a, args(&["--x=9", "--y", "2", "--z=3"]));
        set_flag(&mut a, "--y", "8");
        assert_eq!(a, args(&["--x=9", "--y=8", "--z=3"]));
        set_flag(&mut a, "--new", "v");
        assert_eq!(a.last().unwrap(), "--new=v");
        assert_eq!(flag_value(&a, "--z"), Some("3"));
        assert_eq!(flag_value(&args(&["--z", "5"]), "--z"), Some("5"));
        assert_eq!(flag_value(&a, "--zz"), None);
        let mut prefix = args(&["--xy=1"]);
        set_flag(&mut prefix, "--x", "2");
        assert_eq!(prefix, args(&["--xy=1", "--x=2"]), "only the exact flag matches");
    }

    #[test]
    fn the_shipped_host_group_follows_the_chart_contract() {
        let d = shipped();
        let labels = d.spec.clone().template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels[HOST_POD_GROUP], "default");
        assert_eq!(labels[HOST_POD_NAME], HOST_POD_NAME_VALUE);
        assert_eq!(d.metadata.name.as_deref(), Some("hostgroup-default"));
        let host = host_container(&d);
        let a = host.args.clone().unwrap();
        assert_eq!(flag_value(&a, "--host-name"), Some("$(WASMCLOUD_HOST_IP)"));
        assert_eq!(flag_value(&a, "--environment"), Some("$(POD_NAMESPACE)"));
        assert_eq!(flag_value(&a, "--http-addr"), Some("0.0.0.0:9191"));
        let field = |name: &str| {
            host.env
                .iter()
                .flatten()
                .find(|v| v.name == name)
                .and_then(|v| v.value_from.clone()?.field_ref)
                .map(|f| f.field_path)
        };
        assert_eq!(field(HOST_IP_VAR).as_deref(), Some("status.podIP"));
        assert_eq!(field("POD_NAMESPACE").as_deref(), Some("metadata.namespace"));
        assert_eq!(
            field("WASMCLOUD_HOST_GROUP").as_deref(),
            Some("metadata.labels['wasmcloud.com/hostgroup']")
        );
        let readiness = host.readiness_probe.unwrap().http_get.unwrap();
        assert_eq!(readiness.path.as_deref(), Some("/readyz"));
        let liveness = host.liveness_probe.unwrap().http_get.unwrap();
        assert_eq!(liveness.path.as_deref(), Some("/healthz"));
        let pod = d.spec.template.spec.unwrap();
        assert!(
            pod.termination_grace_period_seconds.unwrap() >= 35,
            "covers the drain"
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
    }

    #[test]
    fn localize_changes_only_what_a_process_kubelet_needs() {
        let original = shipped();
        let local = group("blue").localize(original.clone()).unwrap();
        assert_eq!(local.metadata.name.as_deref(), Some("hostgroup-blue"));
        assert_eq!(local.metadata.namespace.as_deref(), Some("ns-1"));
        let spec = local.spec.clone();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(
            spec.selector.match_labels.clone().unwrap()[HOST_POD_GROUP],
            "blue"
        );
        assert_eq!(
            spec.template.metadata.clone().unwrap().labels.unwrap()[HOST_POD_GROUP],
            "blue"
        );
        let spread = spec
            .template
            .spec
            .clone()
            .unwrap()
            .topology_spread_constraints
            .unwrap();
        assert_eq!(
            spread[0].label_selector.clone().unwrap().match_labels.unwrap()[HOST_POD_GROUP],
            "blue"
        );
        let a = host_container(&local).args.unwrap();
        assert_eq!(
            a,
            args(&[
                "--host-name=$(WASMCLOUD_HOST_IP)",
                "--host-group=$(WASMCLOUD_HOST_GROUP)",
                "--environment=$(POD_NAMESPACE)",
                "--scheduler-nats-url=nats://127.0.0.1:4444",
                "--http-addr=$(WASMCLOUD_HOST_IP):9191",
                "--admin-addr=$(WASMCLOUD_HOST_IP):9192",
                "--cache-dir=cache",
                "--shutdown-delay=2s",
            ])
        );
        // Everything else is as shipped.
        let (mut a, mut b) = (host_container(&original), host_container(&local));
        a.args = None;
        b.args = None;
        assert_eq!(a, b);
        let (pa, pb) = (
            original.spec.template.spec.unwrap(),
            local.spec.template.spec.unwrap(),
        );
        assert_eq!(
            pa.termination_grace_period_seconds,
            pb.termination_grace_period_seconds
        );
        assert_eq!(pa.service_account_name, pb.service_account_name);
    }

    #[test]
    fn localize_rejects_bad_groups_and_manifests_it_cannot_adapt() {
        assert!(group("Blue").localize(shipped()).is_err());
        assert!(group("-x").localize(shipped()).is_err());
        assert!(group(&"x".repeat(60)).localize(shipped()).is_err());
        let mut no_ip = shipped();
        let pod = no_ip.spec.template.spec.as_mut().unwrap();
        pod.containers[0].env = None;
        let err = group("g").localize(no_ip).unwrap_err().to_string();
        assert!(err.contains(HOST_IP_VAR), "{err}");
        let mut no_addr = shipped();
        let pod = no_addr.spec.template.spec.as_mut().unwrap();
        pod.containers[0].args = Some(args(&["--host-name=$(WASMCLOUD_HOST_IP)"]));
        let err = group("g").localize(no_addr).unwrap_err().to_string();
        assert!(err.contains("--http-addr"), "{err}");
    }
}
