//! Server-side apply reports a conflict between two field managers.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use weft_e2e::Env;

#[tokio::test]
async fn server_side_apply_conflict_between_field_managers_is_reported() {
    let env = Env::shared().await;
    let ns = env.new_namespace("ssa").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(env.admin_client(), &ns);
    let apply = |value: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"color": value}});

    cms.patch(
        "shared",
        &PatchParams::apply("manager-a"),
        &Patch::Apply(&apply("blue")),
    )
    .await
    .unwrap();
    let err = cms
        .patch(
            "shared",
            &PatchParams::apply("manager-b"),
            &Patch::Apply(&apply("green")),
        )
        .await
        .expect_err("a second manager changing an owned field conflicts");
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 409, "{status:?}");
            assert_eq!(status.reason, "Conflict", "{status:?}");
            assert!(
                status.message.contains("manager-a"),
                "names the owning manager: {}",
                status.message
            );
            assert!(
                status.message.contains(".data.color"),
                "names the field: {}",
                status.message
            );
        }
        other => panic!("expected an API conflict, got {other:?}"),
    }
    assert_eq!(
        cms.get("shared").await.unwrap().data.unwrap()["color"],
        "blue",
        "nothing changed"
    );

    // Applying the same value is shared ownership, not a conflict; forcing takes the field over.
    cms.patch(
        "shared",
        &PatchParams::apply("manager-b"),
        &Patch::Apply(&apply("blue")),
    )
    .await
    .unwrap();
    cms.patch(
        "shared",
        &PatchParams::apply("manager-b").force(),
        &Patch::Apply(&apply("green")),
    )
    .await
    .unwrap();
    let cm = cms.get("shared").await.unwrap();
    assert_eq!(cm.data.unwrap()["color"], "green");
    let managers: Vec<String> = cm
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        !managers.contains(&"manager-a".to_string()),
        "manager-a lost the field: {managers:?}"
    );
}
