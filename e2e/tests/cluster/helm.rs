//! `helm install` of the shipped chart onto the real control plane: the operator, a host group and the
//! gateway run as the chart's pods, each with only its ServiceAccount's token (the process-kubelet's
//! `KUBECONFIG`); the hello-world example is served through the gateway pod; `helm uninstall` (its
//! pre-delete hook drains the host groups first) leaves no pod, no Host and no object of the release.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use weft_crds::{Host, WorkloadDeployment};
use weft_e2e::system::chart::Chart;
use weft_e2e::system::{self, HELLO_WORLD_BODY, HELLO_WORLD_HOST, Stack};
use weft_e2e::testing::http_get_host;
use weft_e2e::{Env, ImageCommand};
use weft_testkit::{NatsServer, TempDir};

use crate::support::{SOON, eventually, is_ready};

/// The images of the chart, mapped to the workspace's binaries (and the testbins' kubectl).
fn register_images(env: &Env) {
    for (image, binary) in [
        ("weft-operator", "weft-operator"),
        ("weft-gateway", "weft-gateway"),
        ("weft-host", "weft-host"),
    ] {
        let path = system::workspace_binary(binary).unwrap_or_else(|e| panic!("{e}"));
        env.kubelet()
            .register_image(&ImageCommand::new(image, path.display().to_string()))
            .expect("map the image");
    }
    // The uninstall hook's image: kubectl.
    let kubectl = weft_testkit::testbin("kubectl").unwrap_or_else(|e| panic!("{e}"));
    env.kubelet()
        .register_image(&ImageCommand::new(
            "registry.k8s.io/kubectl",
            kubectl.display().to_string(),
        ))
        .expect("map the kubectl image");
}

fn ready_replicas(d: &Deployment) -> i32 {
    d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
}

fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.pod_ip.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_runs_the_system_and_serves_hello_world_and_uninstall_leaves_nothing() {
    let env = Env::shared().await;
    let admin = env.admin_client();
    let ns = env.new_namespace("helm").await.expect("namespace");
    system::install_crds(&admin, SOON).await.expect("CRDs");
    register_images(env);
    // Its own NATS: the hosts of other tests never reach this operator.
    let nats_dir = TempDir::new("helm-nats").expect("temp dir");
    let nats = NatsServer::start_in(nats_dir.path(), weft_testkit::free_port()).expect("nats-server");
    let cache = TempDir::new("helm-host-cache").expect("temp dir");

    let chart = Chart::shipped()
        .unwrap_or_else(|e| panic!("{e}"))
        .with_kubeconfig(env.kubeconfig_path());
    let values = [
        "global.listenOnPodIP=true".to_string(),
        format!("global.nats.schedulerUrl={}", nats.url()),
        format!("operator.watchNamespaces={{{}}}", ns.name()),
        "operator.replicas=1".into(),
        "gateway.replicas=1".into(),
        format!("runtime.cacheDir={}", cache.path().display()),
    ];
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    // The environment's CRDs are shared by every test and applied by it (`install_crds`): the chart
    // leaves them alone, as it does on a cluster where `kubectl apply -f crds/` installed them.
    let installed = chart.install(&ns, &values, true).expect("run helm");
    assert!(installed.success, "helm install: {}", installed.stderr);

    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    for (name, replicas) in [
        ("weft-operator", 1),
        ("weft-gateway", 1),
        ("hostgroup-default", 2),
    ] {
        eventually(
            &format!("Deployment {name} with {replicas} Ready pods"),
            SOON,
            || async {
                let d = deployments.get_opt(name).await.ok()??;
                (ready_replicas(&d) == replicas).then_some(())
            },
        )
        .await;
    }

    // The operator works under its own ServiceAccount: it holds the lease and turned both hosts into
    // Ready Hosts.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let lease = eventually("the leader-election Lease", SOON, || async {
        Api::<Lease>::namespaced(admin.clone(), &ns)
            .get_opt(weft_crds::names::LEADER_ELECTION_ID)
            .await
            .ok()?
    })
    .await;
    let holder = lease.spec.and_then(|s| s.holder_identity).unwrap_or_default();
    assert!(holder.starts_with("weft-operator-"), "lease held by {holder:?}");
    let hosts: Api<Host> = Api::namespaced(admin.clone(), &ns);
    eventually("two Ready Hosts", SOON, || async {
        let list = hosts.list(&ListParams::default()).await.ok()?;
        (list.items.iter().filter(|h| h.is_ready()).count() == 2).then_some(())
    })
    .await;

    // The example, as a person applies it, answered through the gateway pod.
    let deployment = Stack::hello_world().expect("the example");
    Api::<WorkloadDeployment>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create hello-world");
    let gateway = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=weft-gateway"))
        .await
        .expect("list gateway pods")
        .items
        .into_iter()
        .find(is_ready)
        .expect("a Ready gateway pod");
    let gateway_ip = pod_ip(&gateway).expect("the gateway pod's IP");
    let answer = eventually("hello-world through the gateway", SOON, || async {
        let r = http_get_host((gateway_ip.as_str(), 8000), HELLO_WORLD_HOST)
            .await
            .ok()?;
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(answer.body, HELLO_WORLD_BODY);

    // Uninstall: the release's pods and objects go, host pods included (their finalizer released).
    Api::<WorkloadDeployment>::namespaced(admin.clone(), &ns)
        .delete("hello-world", &Default::default())
        .await
        .expect("delete hello-world");
    let uninstalled = chart.uninstall(&ns).expect("run helm");
    assert!(uninstalled.success, "helm uninstall: {}", uninstalled.stderr);
    let release = "app.kubernetes.io/instance=weft";
    eventually("no pod of the release left", SOON, || async {
        let left = pods.list(&ListParams::default().labels(release)).await.ok()?;
        left.items.is_empty().then_some(())
    })
    .await;
    let left = |kind: &str, names: Vec<String>| assert!(names.is_empty(), "{kind} left: {names:?}");
    let roles = Api::<Role>::namespaced(admin.clone(), &ns)
        .list(&ListParams::default().labels(release))
        .await
        .expect("list Roles");
    left("Roles", roles.items.iter().map(ResourceExt::name_any).collect());
    let bindings = Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .list(&ListParams::default().labels(release))
        .await
        .expect("list RoleBindings");
    left(
        "RoleBindings",
        bindings.items.iter().map(ResourceExt::name_any).collect(),
    );
    // Hosts are the operator's, not the release's: the chart's pre-delete hook removed the host groups
    // while the operator still ran, so each Host went with its pod.
    eventually("no Host left", SOON, || async {
        let left = hosts.list(&ListParams::default()).await.ok()?;
        left.items.is_empty().then_some(())
    })
    .await;
}
