//! A ServiceAccount client is authorized by RBAC with exactly its Role.

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;
use weft_e2e::Env;

use crate::support::SOON;

fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(ref s)) if s.code == 403)
}

#[tokio::test]
async fn service_account_is_refused_what_its_role_does_not_grant() {
    let env = Env::shared().await;
    let ns = env.new_namespace("rbac").await.unwrap();
    let admin = env.admin_client();
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "reader"}})).unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
                  {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}],
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns.name()}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    let mark = env.audit_log().mark();
    let client = env.service_account_client(&ns, "reader").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.list(&ListParams::default())
        .await
        .expect("listing pods in its namespace is granted");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "made-by-sa"}})).unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &cm)
        .await
        .expect("creating configmaps is granted");

    assert!(
        forbidden(
            Api::<Secret>::namespaced(client.clone(), &ns)
                .list(&ListParams::default())
                .await
        ),
        "secrets"
    );
    assert!(
        forbidden(Api::<Pod>::all(client.clone()).list(&ListParams::default()).await),
        "pods cluster-wide"
    );
    assert!(
        forbidden(
            Api::<Pod>::namespaced(client.clone(), "default")
                .list(&ListParams::default())
                .await
        ),
        "other ns"
    );
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}),
    )
    .unwrap();
    assert!(
        forbidden(pods.create(&PostParams::default(), &pod).await),
        "creating pods"
    );

    // The audit log attributes the denials to the ServiceAccount.
    let user = format!("system:serviceaccount:{}:reader", ns.name());
    let denied = env
        .audit_log()
        .wait_for(mark, SOON, |e| {
            e.user.username == user && e.resource() == "secrets" && e.code() == Some(403)
        })
        .await;
    assert!(denied.is_some(), "a 403 on secrets for {user} in the audit log");
    let allowed = env.audit_log().events_since(mark);
    assert!(
        allowed.iter().any(|e| e.user.username == user
            && e.resource() == "pods"
            && e.verb == "list"
            && e.code() == Some(200)),
        "the granted list is logged with 200"
    );
}
