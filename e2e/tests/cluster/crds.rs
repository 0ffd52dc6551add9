//! Weft's CRDs install with `kubectl apply -f crds/`, and the apiserver accepts every example in
//! `crds/examples/` and rejects every one in `crds/examples/invalid/` with the message its
//! `weft.dev/expected-error` annotation names (on create, or when its status is written through the
//! status subresource if `weft.dev/expected-error-on: status`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use weft_e2e::Env;

use crate::support::{SOON, eventually};

fn crds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

fn documents(path: &Path) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v: &serde_yaml::Value| !v.is_null())
        .collect()
}

/// What an invalid example expects: the message fragment (annotation `weft.dev/expected-error`) and
/// whether the rejection comes when writing the status subresource (`weft.dev/expected-error-on: status`)
/// rather than on create.
fn expectation(path: &Path) -> Option<(String, bool)> {
    documents(path).into_iter().find_map(|doc| {
        let annotations = doc.get("metadata")?.get("annotations")?;
        let message = annotations.get("weft.dev/expected-error")?.as_str()?.to_string();
        let on_status = annotations
            .get("weft.dev/expected-error-on")
            .and_then(|v| v.as_str())
            == Some("status");
        Some((message, on_status))
    })
}

/// Writes `path`'s documents as JSON (re-emitted YAML could change scalars: YAML 1.1 readers take an
/// unquoted `Yes` for a boolean) without `metadata.namespace`, so they land in the test namespace, and,
/// with `strip_status`, without `status`.
fn rewritten(path: &Path, dir: &Path, strip_status: bool) -> PathBuf {
    let mut docs: Vec<serde_json::Value> = documents(path)
        .into_iter()
        .map(|doc| {
            let mut doc = serde_json::to_value(&doc).unwrap();
            if let Some(meta) = doc.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                meta.remove("namespace");
            }
            if strip_status && let Some(doc) = doc.as_object_mut() {
                doc.remove("status");
            }
            doc
        })
        .collect();
    let json = match docs.len() {
        1 => docs.remove(0),
        _ => serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs}),
    };
    let suffix = if strip_status { "without-status" } else { "as-is" };
    let out = dir.join(format!(
        "{suffix}-{}.json",
        path.file_stem().unwrap().to_string_lossy()
    ));
    std::fs::write(&out, json.to_string()).unwrap();
    out
}

#[tokio::test]
async fn crds_establish_and_examples_are_accepted_or_rejected_as_expected() {
    let env = Env::shared().await;
    let ns = env.new_namespace("crds").await.unwrap();
    let dir = crds_dir();
    let crd_names: Vec<String> = yaml_files(&dir)
        .iter()
        .flat_map(|f| documents(f))
        .filter(|d| d.get("kind").and_then(|k| k.as_str()) == Some("CustomResourceDefinition"))
        .filter_map(|d| d.get("metadata")?.get("name")?.as_str().map(str::to_string))
        .collect();
    assert!(
        !crd_names.is_empty(),
        "no CustomResourceDefinition manifests in {}",
        dir.display()
    );

    let out = env.kubectl().arg("apply").arg("-f").arg(&dir).output().unwrap();
    assert!(
        out.status.success(),
        "kubectl apply -f crds/: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crds: Api<CustomResourceDefinition> = Api::all(env.admin_client());
    for name in &crd_names {
        eventually(&format!("CRD {name} Established"), SOON, || async {
            let crd = crds.get(name).await.ok()?;
            let conditions = crd.status?.conditions?;
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        })
        .await;
    }

    let work = env.run_dir().join(format!("{}-examples", ns.name()));
    std::fs::create_dir_all(&work).unwrap();
    let examples = dir.join("examples");
    let valid = yaml_files(&examples);
    assert!(!valid.is_empty(), "no examples in {}", examples.display());
    for example in &valid {
        let file = rewritten(example, &work, false);
        // The first requests right after Established can still race the new REST mapping; retry briefly.
        let mut last = String::new();
        let accepted = eventually(
            &format!("{} accepted", example.display()),
            Duration::from_secs(20),
            || {
                let out = env
                    .kubectl()
                    .args(["create", "-n", ns.name(), "-f"])
                    .arg(&file)
                    .output()
                    .unwrap();
                last = String::from_utf8_lossy(&out.stderr).into_owned();
                let retryable = last.contains("the server could not find the requested resource")
                    || last.contains("no matches for kind");
                let result = if out.status.success() {
                    Some(Ok(()))
                } else if retryable {
                    None
                } else {
                    Some(Err(last.clone()))
                };
                async move { result }
            },
        )
        .await;
        if let Err(stderr) = accepted {
            panic!("valid example {} was rejected: {stderr}", example.display());
        }
    }

    let invalid_dir = examples.join("invalid");
    let invalid = yaml_files(&invalid_dir);
    assert!(
        !invalid.is_empty(),
        "no invalid examples in {}",
        invalid_dir.display()
    );
    for example in &invalid {
        let (expected, on_status) = expectation(example).unwrap_or_else(|| {
            panic!(
                "{} has no `weft.dev/expected-error` annotation",
                example.display()
            )
        });
        let file = rewritten(example, &work, on_status);
        let out = env
            .kubectl()
            .args(["create", "-n", ns.name(), "-f"])
            .arg(&file)
            .output()
            .unwrap();
        let out = if on_status {
            // The object itself is valid; its status is rejected when written (as Weft's controllers
            // write status) with server-side apply through the status subresource.
            assert!(
                out.status.success(),
                "{} without status: {}",
                example.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let with_status = rewritten(example, &work, false);
            env.kubectl()
                .args([
                    "apply",
                    "--server-side",
                    "--subresource=status",
                    "--field-manager=weft-e2e",
                    "-n",
                    ns.name(),
                    "-f",
                ])
                .arg(&with_status)
                .output()
                .unwrap()
        } else {
            out
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "invalid example {} was accepted",
            example.display()
        );
        assert!(
            stderr.contains(&expected),
            "{} was rejected, but without {expected:?}:\n{stderr}",
            example.display()
        );
    }
}
