//! Weft's Helm chart (`deploy/charts/weft`) through the real `helm`: it lints, refuses bad values with
//! a message naming them, renders least-privilege RBAC in every mode, turns values into the flags they
//! name, and is the one source of the plain manifests in `deploy/` (which must match its rendering).
//! `helm install` onto the real control plane is in `tests/cluster/chart.rs`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use weft_e2e::system::chart::{Chart, container_args, named, of_kind};
use weft_e2e::system::manifests::source_dir;

const NS: &str = "weft-system";

fn chart() -> Chart {
    Chart::shipped().unwrap_or_else(|e| panic!("{e}"))
}

fn template(set: &[&str]) -> Vec<Value> {
    chart().template(NS, set).unwrap_or_else(|e| panic!("{e}"))
}

/// Every (resource, verb) a rule list grants, as `group/resource:verb`.
fn grants(rules: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for rule in rules.as_array().into_iter().flatten() {
        for group in rule["apiGroups"].as_array().into_iter().flatten() {
            for resource in rule["resources"].as_array().into_iter().flatten() {
                for verb in rule["verbs"].as_array().into_iter().flatten() {
                    out.insert(format!(
                        "{}/{}:{}",
                        group.as_str().unwrap_or_default(),
                        resource.as_str().unwrap_or_default(),
                        verb.as_str().unwrap_or_default()
                    ));
                }
            }
        }
    }
    out
}

fn names_in(docs: &[Value], kind: &str) -> BTreeSet<String> {
    of_kind(docs, kind)
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["metadata"]["namespace"].as_str().unwrap_or(""),
                d["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect()
}

const EVERY_OPTION: &[&str] = &[
    "operator.watchNamespaces={shop,blog}",
    "operator.hostNamespaces={edge}",
    "operator.allowSharedHosts=false",
    "operator.scheduler.policy=binpack",
    "operator.hostTtl=60s",
    "operator.logFormat=json",
    "global.tls.enabled=true",
    "global.nats.credsSecret=weft-nats-creds",
    "global.nats.schedulerUrl=tls://nats.example:4222",
    "global.imageRegistry=registry.example/weft",
    "global.listenOnPodIP=true",
    "runtime.hostGroups[0].name=default",
    "runtime.hostGroups[0].replicas=3",
    "runtime.hostGroups[1].name=gpu",
    "runtime.hostGroups[1].replicas=1",
    "runtime.hostGroups[1].namespace=tenant-gpu",
    "runtime.hostGroups[1].http.enabled=true",
    "runtime.hostGroups[1].http.port=8080",
    "runtime.hostGroups[1].shutdownDelay=5s",
    "runtime.hostGroups[1].labels.accelerator=gpu",
    "gateway.fallbackEndpoint=http://fallback.example:80",
    "monitoring.podMonitor.enabled=true",
    "monitoring.dashboard.enabled=true",
    "uninstall.timeout=5m",
];

#[test]
fn the_chart_lints_clean_with_its_defaults_and_with_every_option_set() {
    for set in [&[][..], EVERY_OPTION, &["gateway.enabled=false"][..]] {
        let out = chart().lint(set).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.success,
            "helm lint --strict {set:?}:\n{}\n{}",
            out.stdout, out.stderr
        );
    }
}

#[test]
fn invalid_values_are_refused_with_a_message_naming_the_value() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "runtime.hostGroups[0].name=Bad_Name",
                "runtime.hostGroups[0].replicas=1",
            ],
            "/runtime/hostGroups/0/name",
        ),
        (&["operator.hostTtl=ten"], "/operator/hostTtl"),
        (
            &[
                "runtime.hostGroups[0].name=a",
                "runtime.hostGroups[0].replicas=1",
                "runtime.hostGroups[0].http.port=70000",
            ],
            "/runtime/hostGroups/0/http/port",
        ),
        (&["operator.replicas=-1"], "/operator/replicas"),
        (&["operator.logFormat=xml"], "/operator/logFormat"),
        (
            &["global.nats.schedulerUrl=http://nats:4222"],
            "/global/nats/schedulerUrl",
        ),
        (
            &["operator.watchNamespaces={Not_A_Namespace}"],
            "/operator/watchNamespaces/0",
        ),
    ];
    for (set, path) in cases {
        match chart().template(NS, set) {
            Ok(_) => panic!("{set:?} was accepted"),
            Err(e) => assert!(
                e.to_string().contains(path),
                "{set:?}: the error names {path}: {e}"
            ),
        }
    }
}

#[test]
fn the_default_install_grants_least_privilege() {
    let docs = template(&[]);
    assert_eq!(
        names_in(&docs, "ClusterRole"),
        BTreeSet::from(["/weft-gateway".to_string(), "/weft-operator".to_string()]),
        "only the workload kinds need cluster-wide grants"
    );
    for role in of_kind(&docs, "ClusterRole")
        .into_iter()
        .chain(of_kind(&docs, "Role"))
    {
        for grant in grants(&role["rules"]) {
            assert!(
                !grant.contains('*'),
                "no wildcards: {grant} in {}",
                role["metadata"]["name"]
            );
        }
    }
    for cluster_role in of_kind(&docs, "ClusterRole") {
        let g = grants(&cluster_role["rules"]);
        for forbidden in [
            "/pods:",
            "/namespaces:",
            "runtime.wasmcloud.dev/hosts:",
            "/nodes:",
        ] {
            assert!(
                !g.iter().any(|x| x.contains(forbidden)),
                "{} grants {forbidden} cluster-wide: {g:?}",
                cluster_role["metadata"]["name"]
            );
        }
    }
    let gateway = grants(&named(&docs, "ClusterRole", "weft-gateway").expect("gateway ClusterRole")["rules"]);
    assert!(
        gateway
            .iter()
            .all(|g| g.ends_with(":get") || g.ends_with(":list") || g.ends_with(":watch")),
        "the gateway only reads: {gateway:?}"
    );
    let operator_role = grants(&named(&docs, "Role", "weft-operator").expect("operator Role")["rules"]);
    for needed in [
        "/pods:patch",
        "runtime.wasmcloud.dev/hosts:create",
        "runtime.wasmcloud.dev/hosts/status:patch",
        "coordination.k8s.io/leases:update",
    ] {
        assert!(
            operator_role.contains(needed),
            "the operator Role grants {needed}: {operator_role:?}"
        );
    }
    let host_account = named(&docs, "ServiceAccount", "weft-host").expect("host ServiceAccount");
    assert_eq!(host_account["automountServiceAccountToken"], false);
    for binding in of_kind(&docs, "RoleBinding")
        .into_iter()
        .chain(of_kind(&docs, "ClusterRoleBinding"))
    {
        for subject in binding["subjects"].as_array().into_iter().flatten() {
            assert_ne!(subject["name"], "weft-host", "host pods get no RBAC");
        }
    }
    for deployment in of_kind(&docs, "Deployment") {
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(
            pod["securityContext"]["runAsNonRoot"], true,
            "{}",
            deployment["metadata"]["name"]
        );
        for c in pod["containers"].as_array().into_iter().flatten() {
            assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
            assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        }
    }
    let host_pod = &named(&docs, "Deployment", "hostgroup-default").expect("default host group")["spec"]["template"]
        ["spec"];
    assert_eq!(host_pod["automountServiceAccountToken"], false);
}

#[test]
fn watch_namespaces_replace_every_cluster_role_with_roles_in_those_namespaces() {
    let docs = template(&["operator.watchNamespaces={shop,blog}"]);
    assert!(
        of_kind(&docs, "ClusterRole").is_empty(),
        "{:?}",
        names_in(&docs, "ClusterRole")
    );
    assert!(of_kind(&docs, "ClusterRoleBinding").is_empty());
    let roles = names_in(&docs, "Role");
    for ns in ["shop", "blog"] {
        assert!(
            roles.contains(&format!("{ns}/weft-operator-workloads")),
            "{roles:?}"
        );
        assert!(
            roles.contains(&format!("{ns}/weft-gateway-workloads")),
            "{roles:?}"
        );
    }
    // Each watched namespace gets exactly what the ClusterRole grants in the cluster-wide mode.
    let cluster_wide = template(&[]);
    let cluster_grants = grants(&named(&cluster_wide, "ClusterRole", "weft-operator").unwrap()["rules"]);
    let shop = of_kind(&docs, "Role")
        .into_iter()
        .find(|r| r["metadata"]["namespace"] == "shop" && r["metadata"]["name"] == "weft-operator-workloads")
        .unwrap();
    assert_eq!(grants(&shop["rules"]), cluster_grants);
    assert!(
        container_args(&docs, "weft-operator", "operator")
            .contains(&"--watch-namespaces=shop,blog".to_string())
    );
    assert!(
        container_args(&docs, "weft-gateway", "gateway")
            .contains(&"--watch-namespaces=shop,blog".to_string())
    );
}

#[test]
fn a_host_group_in_another_namespace_gets_its_account_and_pod_roles_there() {
    let docs = template(&[
        "operator.hostNamespaces={edge}",
        "runtime.hostGroups[0].name=default",
        "runtime.hostGroups[0].replicas=2",
        "runtime.hostGroups[1].name=gpu",
        "runtime.hostGroups[1].replicas=1",
        "runtime.hostGroups[1].namespace=tenant-gpu",
        "runtime.hostGroups[1].http.enabled=true",
        "runtime.hostGroups[1].http.port=9191",
        "runtime.hostGroups[1].shutdownDelay=2s",
    ]);
    let deployments = names_in(&docs, "Deployment");
    assert!(
        deployments.contains("tenant-gpu/hostgroup-gpu")
            && deployments.contains("weft-system/hostgroup-default"),
        "{deployments:?}"
    );
    let accounts = names_in(&docs, "ServiceAccount");
    assert!(
        accounts.contains("tenant-gpu/weft-host") && accounts.contains("weft-system/weft-host"),
        "{accounts:?}"
    );
    let roles = names_in(&docs, "Role");
    for ns in ["edge", "tenant-gpu"] {
        assert!(
            roles.contains(&format!("{ns}/weft-operator-host-pods")),
            "{roles:?}"
        );
        assert!(
            roles.contains(&format!("{ns}/weft-gateway-host-pods")),
            "{roles:?}"
        );
    }
    assert!(
        !roles.contains("weft-system/weft-operator-host-pods"),
        "the release namespace has the main Role"
    );
    for (deployment, container) in [("weft-operator", "operator"), ("weft-gateway", "gateway")] {
        let args = container_args(&docs, deployment, container);
        assert!(
            args.contains(&"--host-namespaces=edge,tenant-gpu".to_string()),
            "{deployment}: {args:?}"
        );
    }
}

#[test]
fn values_become_the_flags_they_name() {
    let docs = template(EVERY_OPTION);
    let op = container_args(&docs, "weft-operator", "operator");
    for flag in [
        "--allow-shared-hosts=false",
        "--scheduler=binpack",
        "--host-ttl=60s",
        "--log-format=json",
        "--nats-url=tls://nats.example:4222",
        "--nats-tls-ca=/etc/weft/nats-tls/ca.crt",
        "--nats-creds=/etc/weft/nats-creds/nats.creds",
        "--health-probe-bind-address=$(POD_IP):8081",
    ] {
        assert!(op.contains(&flag.to_string()), "operator {flag}: {op:?}");
    }
    let host = container_args(&docs, "hostgroup-gpu", "host");
    for flag in [
        "--http-addr=$(WASMCLOUD_HOST_IP):8080",
        "--shutdown-delay=5s",
        "--label=accelerator=gpu",
        "--scheduler-nats-url=tls://nats.example:4222",
        "--nats-tls-cert=/etc/weft/nats-tls/tls.crt",
    ] {
        assert!(host.contains(&flag.to_string()), "host {flag}: {host:?}");
    }
    let gw = container_args(&docs, "weft-gateway", "gateway");
    assert!(
        gw.contains(&"--fallback-endpoint=http://fallback.example:80".to_string()),
        "{gw:?}"
    );
    let image = |d: &str| {
        named(&docs, "Deployment", d).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"].clone()
    };
    assert_eq!(
        image("weft-operator"),
        "registry.example/weft/weft-operator:0.1.0"
    );
    assert_eq!(image("hostgroup-gpu"), "registry.example/weft/weft-host:0.1.0");
    let defaults = template(&[]);
    let op = container_args(&defaults, "weft-operator", "operator");
    assert!(
        op.contains(&"--nats-url=nats://nats.weft-system.svc.cluster.local:4222".to_string()),
        "{op:?}"
    );
    assert!(
        !op.iter()
            .any(|a| a.starts_with("--allow-shared-hosts") || a.starts_with("--scheduler=")),
        "defaults are the binary's: {op:?}"
    );
    let pod_monitor = of_kind(&docs, "PodMonitor");
    assert_eq!(pod_monitor.len(), 1);
    let no_gateway = template(&["gateway.enabled=false"]);
    assert!(no_gateway.iter().all(|d| {
        d["metadata"]["name"]
            .as_str()
            .is_none_or(|n| !n.contains("gateway"))
    }));
}

#[test]
fn the_plain_manifests_in_deploy_are_the_chart_rendered() {
    let dir = weft_testkit::TempDir::new("chart").expect("temp dir");
    let out = dir.path().to_path_buf();
    let helm = weft_testkit::testbin("helm").unwrap_or_else(|e| panic!("{e}"));
    let root = source_dir();
    let status = Command::new(root.join("deploy/generate.sh"))
        .arg(&out)
        .env("HELM", &helm)
        .status()
        .expect("run deploy/generate.sh");
    assert!(status.success(), "deploy/generate.sh failed");
    let mut compared = 0;
    for generated in walk(&out) {
        let relative = generated.strip_prefix(&out).unwrap();
        let shipped = root.join("deploy").join(relative);
        let want = std::fs::read_to_string(&generated).unwrap();
        let have = std::fs::read_to_string(&shipped).unwrap_or_default();
        assert!(
            want == have,
            "deploy/{} is not what the chart renders: run deploy/generate.sh (make manifests)",
            relative.display()
        );
        compared += 1;
    }
    assert!(compared >= 18, "compared {compared} files");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn the_uninstall_hook_drains_every_host_group_namespace_and_may_only_delete_deployments() {
    let groups = [
        "runtime.hostGroups[0].name=default",
        "runtime.hostGroups[0].replicas=2",
        "runtime.hostGroups[1].name=gpu",
        "runtime.hostGroups[1].replicas=1",
        "runtime.hostGroups[1].namespace=tenant-gpu",
    ];
    let docs = template(&groups);
    let job = named(&docs, "Job", "weft-drain-host-groups").expect("the uninstall hook Job");
    assert_eq!(job["metadata"]["annotations"]["helm.sh/hook"], "pre-delete");
    let containers = job["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    let namespaces: BTreeSet<String> = containers
        .iter()
        .flat_map(|c| c["args"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str()?.strip_prefix("--namespace=").map(str::to_string))
        .collect();
    assert_eq!(
        namespaces,
        BTreeSet::from(["tenant-gpu".to_string(), NS.to_string()]),
        "one container per host-group namespace"
    );
    for c in containers {
        let args: Vec<&str> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for wanted in [
            "delete",
            "deployments",
            "--selector=app.kubernetes.io/name=weft-host,app.kubernetes.io/instance=weft",
            "--cascade=foreground",
            "--wait=true",
        ] {
            assert!(args.contains(&wanted), "{wanted} in {args:?}");
        }
    }
    for ns in ["tenant-gpu", NS] {
        let role = of_kind(&docs, "Role")
            .into_iter()
            .find(|r| r["metadata"]["name"] == "weft-drain-host-groups" && r["metadata"]["namespace"] == ns)
            .unwrap_or_else(|| panic!("the hook's Role in {ns}"));
        assert_eq!(
            grants(&role["rules"]),
            BTreeSet::from(["get", "list", "watch", "delete"].map(|v| format!("apps/deployments:{v}"))),
            "the hook may touch nothing but Deployments in {ns}"
        );
    }

    let off: Vec<&str> = groups
        .iter()
        .copied()
        .chain(["uninstall.drainHostGroups=false"])
        .collect();
    assert!(named(&template(&off), "Job", "weft-drain-host-groups").is_none());
}

#[test]
fn the_dashboard_ships_as_the_file_the_metrics_test_checks() {
    let docs = template(&["monitoring.dashboard.enabled=true"]);
    let config_map = named(&docs, "ConfigMap", "weft-dashboard").expect("the dashboard ConfigMap");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: Value = serde_json::from_str(config_map["data"]["weft.json"].as_str().unwrap()).unwrap();
    let file = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/charts/weft/dashboards/weft.json"),
    )
    .unwrap();
    assert_eq!(shipped, serde_json::from_str::<Value>(&file).unwrap());
    let monitor = template(&["monitoring.podMonitor.enabled=true"]);
    let monitor = named(&monitor, "PodMonitor", "weft").expect("the PodMonitor");
    assert_eq!(
        monitor["spec"]["jobLabel"], "app.kubernetes.io/name",
        "job = weft-operator/weft-host/weft-gateway, as the dashboard expects"
    );
}
