//! The process-kubelet's pod semantics: probes, restarts, phases, environment, image mappings.

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use weft_e2e::{Env, ImageCommand};

use crate::support::{SOON, condition, container_pid, eventually, is_ready, process_env, testpod};

fn with_container(mut pod: Pod, patch: serde_json::Value) -> Pod {
    let mut container = serde_json::to_value(&pod.spec.as_ref().unwrap().containers[0]).unwrap();
    container
        .as_object_mut()
        .unwrap()
        .extend(patch.as_object().unwrap().clone());
    pod.spec.as_mut().unwrap().containers[0] = serde_json::from_value(container).unwrap();
    pod
}

fn container_status(pod: &Pod) -> k8s_openapi::api::core::v1::ContainerStatus {
    try_container_status(pod).expect("the pod reports a container status")
}

fn try_container_status(pod: &Pod) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.first().cloned()
}

#[tokio::test]
async fn readiness_follows_the_http_probe_both_ways() {
    let env = Env::shared().await;
    let ns = env.new_namespace("readiness").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.admin_client(), &ns);
    let ready_file = env.run_dir().join(format!("{}-ready", ns.name()));
    let pod = testpod(
        "web",
        &["http"],
        json!([{"name": "READY_FILE", "value": ready_file.display().to_string()}]),
    );
    let pod = with_container(
        pod,
        json!({"readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1, "failureThreshold": 1}}),
    );
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let log = env.kubelet().log_path().to_path_buf();
    let key = format!("{}/web:", ns.name());
    let running = eventually("running, probed and not ready", SOON, || async {
        let pod = pods.get("web").await.ok()?;
        let probed = std::fs::read_to_string(&log)
            .ok()?
            .lines()
            .any(|l| l.contains(&key) && l.contains("started: pid"));
        (probed && container_pid(&pod).is_some() && condition(&pod, "Ready").as_deref() == Some("False"))
            .then_some(pod)
    })
    .await;
    assert_eq!(running.status.as_ref().unwrap().phase.as_deref(), Some("Running"));

    std::fs::write(&ready_file, "").unwrap();
    eventually("ready once /readyz answers 200", SOON, || async {
        pods.get("web").await.ok().filter(is_ready)
    })
    .await;
    std::fs::remove_file(&ready_file).unwrap();
    eventually("unready again once /readyz answers 503", SOON, || async {
        pods.get("web")
            .await
            .ok()
            .filter(|p| condition(p, "Ready").as_deref() == Some("False"))
    })
    .await;
    let kubelet_log = std::fs::read_to_string(&log).unwrap();
    assert!(kubelet_log.contains(&format!(
        "{key} container main ready=false: HTTP probe failed with statuscode: 503"
    )));
}

#[tokio::test]
async fn tcp_readiness_and_failing_liveness_probes_act() {
    let env = Env::shared().await;
    let ns = env.new_namespace("probes").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.admin_client(), &ns);
    let tcp = with_container(
        testpod("tcp", &["http"], json!([])),
        json!({"readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}),
    );
    let dead = with_container(
        testpod("dead", &["http"], json!([])),
        json!({"livenessProbe": {"tcpSocket": {"port": 9999}, "periodSeconds": 1, "failureThreshold": 1}}),
    );
    pods.create(&PostParams::default(), &tcp).await.unwrap();
    pods.create(&PostParams::default(), &dead).await.unwrap();
    eventually("tcp-probed pod ready", SOON, || async {
        pods.get("tcp").await.ok().filter(is_ready)
    })
    .await;
    let restarted = eventually("liveness failure restarts the container", SOON, || async {
        pods.get("dead")
            .await
            .ok()
            .filter(|p| try_container_status(p).is_some_and(|c| c.restart_count >= 1))
    })
    .await;
    let last = container_status(&restarted)
        .last_state
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(last.signal, Some(9), "killed by SIGKILL: {last:?}");
    assert_eq!(last.exit_code, 137);
}

#[tokio::test]
async fn crashing_container_restarts_with_growing_backoff_and_counts() {
    let env = Env::shared().await;
    let ns = env.new_namespace("crash").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.admin_client(), &ns);
    let mut pod = testpod("crash", &["exit", "3"], json!([]));
    pod.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let crashed = eventually("two restarts", SOON, || async {
        pods.get("crash")
            .await
            .ok()
            .filter(|p| try_container_status(p).is_some_and(|c| c.restart_count >= 2))
    })
    .await;
    let status = container_status(&crashed);
    assert_eq!(status.last_state.unwrap().terminated.unwrap().exit_code, 3);
    assert_eq!(
        crashed.status.as_ref().unwrap().phase.as_deref(),
        Some("Running"),
        "restarting pods stay Running"
    );
    let log = std::fs::read_to_string(env.kubelet().log_path()).unwrap();
    let key = format!(
        "{}/crash: container main exited (code 3); restarting in",
        ns.name()
    );
    let delays: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once(&key).map(|(_, d)| d.trim()))
        .collect();
    assert!(delays.len() >= 2, "{delays:?}");
    assert_eq!(&delays[..2], &["1s", "2s"], "back-off doubles");
}

#[tokio::test]
async fn run_to_completion_pods_end_succeeded_or_failed() {
    let env = Env::shared().await;
    let ns = env.new_namespace("phases").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.admin_client(), &ns);
    for (name, code) in [("ok", "0"), ("bad", "1")] {
        let mut pod = testpod(name, &["exit", code], json!([]));
        pod.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    for (name, phase) in [("ok", "Succeeded"), ("bad", "Failed")] {
        let done = eventually(&format!("{name} {phase}"), SOON, || async {
            let pod = pods.get(name).await.ok()?;
            (pod.status.as_ref()?.phase.as_deref() == Some(phase)).then_some(pod)
        })
        .await;
        assert_eq!(container_status(&done).restart_count, 0, "Never restarts");
    }
}

#[tokio::test]
async fn environment_comes_from_values_config_maps_secrets_and_expansion() {
    let env = Env::shared().await;
    let ns = env.new_namespace("envvars").await.unwrap();
    let client = env.admin_client();
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"LEVEL": "debug"}}))
            .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "creds"}, "stringData": {"password": "hunter2"}}))
            .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let pod = with_container(
        testpod(
            "env",
            &["sleep"],
            json!([
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                {"name": "URL", "value": "http://$(POD_IP):8080/$(POD_NAME)"},
            ]),
        ),
        json!({"envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "APP_"}]}),
    );
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let running = eventually("pod ready", SOON, || async {
        pods.get("env").await.ok().filter(is_ready)
    })
    .await;
    let ip = running.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let vars = process_env(container_pid(&running).unwrap()).unwrap();
    let get = |k: &str| vars.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    assert_eq!(get("APP_LEVEL"), Some("debug"));
    assert_eq!(get("PASSWORD"), Some("hunter2"));
    assert_eq!(get("URL"), Some(format!("http://{ip}:8080/env").as_str()));
    assert_eq!(get("HOSTNAME"), Some("env"));
    assert_eq!(
        get("HOME"),
        None,
        "nothing is inherited from the kubelet's environment"
    );
}

#[tokio::test]
async fn unknown_image_waits_until_a_mapping_is_registered() {
    let env = Env::shared().await;
    let ns = env.new_namespace("images").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.admin_client(), &ns);
    let image = format!("registry.example/late-{}:v1", ns.name());
    let pod = with_container(testpod("late", &[], json!([])), json!({"image": image}));
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let waiting = eventually("waiting for an image mapping", SOON, || async {
        let pod = pods.get("late").await.ok()?;
        let waiting = try_container_status(&pod)?.state?.waiting?;
        (waiting.reason.as_deref() == Some("ErrImagePull")).then_some(waiting)
    })
    .await;
    assert!(
        waiting
            .message
            .unwrap_or_default()
            .contains("no local command for image")
    );
    assert_eq!(
        pods.get("late").await.unwrap().status.unwrap().phase.as_deref(),
        Some("Pending")
    );

    let mut mapping = ImageCommand::new(
        image.split(':').next().unwrap(),
        env!("CARGO_BIN_EXE_weft-testpod"),
    );
    mapping.args = vec!["sleep".into()];
    env.kubelet().register_image(&mapping).unwrap();
    let ready = eventually("started from the registered mapping", SOON, || async {
        pods.get("late").await.ok().filter(is_ready)
    })
    .await;
    assert_eq!(
        container_status(&ready).restart_count,
        0,
        "first start, not a restart"
    );
}

#[tokio::test]
async fn containers_get_their_service_accounts_credentials_unless_they_opt_out() {
    let env = Env::shared().await;
    let ns = env.new_namespace("satoken").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.admin_client(), &ns);
    let mut opted_out = testpod("no-token", &["sleep"], json!([]));
    opted_out.spec.as_mut().unwrap().automount_service_account_token = Some(false);
    for pod in [testpod("with-token", &["sleep"], json!([])), opted_out] {
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let running = |name: &'static str| {
        let pods = pods.clone();
        async move {
            eventually(&format!("{name} ready"), SOON, || async {
                pods.get(name).await.ok().filter(is_ready)
            })
            .await
        }
    };
    let with_token = running("with-token").await;
    let no_token = running("no-token").await;
    let kubeconfig_of = |pod: &Pod| {
        process_env(container_pid(pod).unwrap())
            .unwrap()
            .into_iter()
            .find(|(k, _)| k == "KUBECONFIG")
            .map(|(_, v)| v)
    };
    assert_eq!(
        kubeconfig_of(&no_token),
        None,
        "automountServiceAccountToken: false"
    );
    let path = kubeconfig_of(&with_token).expect("KUBECONFIG for a pod that wants its token");

    // The credentials are the pod's ServiceAccount's, with its RBAC (none): the apiserver names the
    // account when it refuses.
    let config = weft_e2e::kubeconfig::load(std::path::Path::new(&path))
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let denied = Api::<Secret>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .expect_err("the default ServiceAccount may not list Secrets");
    let kube::Error::Api(status) = denied else {
        panic!("expected a 403, got {denied:?}");
    };
    assert_eq!(status.code, 403);
    let account = format!("system:serviceaccount:{}:default", ns.name());
    assert!(status.message.contains(&account), "{}", status.message);

    // The token is bound to the pod: once the pod is gone the apiserver no longer accepts it.
    pods.delete("with-token", &Default::default()).await.unwrap();
    eventually("the pod gone", SOON, || async {
        pods.get_opt("with-token").await.ok().filter(Option::is_none)
    })
    .await;
    let after = eventually("the bound token rejected", SOON, || async {
        match Api::<Secret>::namespaced(client.clone(), &ns)
            .list(&Default::default())
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 401 => Some(s.code),
            _ => None,
        }
    })
    .await;
    assert_eq!(after, 401);
}
