//! Weft's shipped manifests (`crds/`, `deploy/`), read from the source tree and applied with
//! server-side apply, so that what runs locally is what a cluster gets.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Error;

/// The field manager of everything the harness applies.
pub const FIELD_MANAGER: &str = "weft-e2e";

/// The root of Weft's source tree (where `crds/` and `deploy/` are): `$WEFT_SOURCE_DIR`, else the
/// tree this crate was built from.
pub fn source_dir() -> PathBuf {
    std::env::var_os("WEFT_SOURCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}

/// A file of the source tree, e.g. `deploy/operator/role.yaml`.
pub fn source_file(relative: &str) -> PathBuf {
    source_dir().join(relative)
}

/// The documents of a (multi-document) YAML file as JSON values; empty documents are skipped.
pub fn documents(path: &Path) -> Result<Vec<Value>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    parse_documents(&text).map_err(|e| Error::Manifest(format!("{}: {e}", path.display())))
}

/// Parses multi-document YAML into JSON values, skipping empty documents.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, serde_yaml::Error> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(doc)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// The one document of `kind` in `path`, as `K`.
pub fn document<K: DeserializeOwned>(path: &Path, kind: &str) -> Result<K, Error> {
    let mut matching: Vec<Value> = documents(path)?
        .into_iter()
        .filter(|d| d["kind"] == kind)
        .collect();
    if matching.len() != 1 {
        return Err(Error::Manifest(format!(
            "{}: expected exactly one {kind}, found {}",
            path.display(),
            matching.len()
        )));
    }
    serde_json::from_value(matching.remove(0))
        .map_err(|e| Error::Manifest(format!("{}: {kind}: {e}", path.display())))
}

/// The `*.yaml` files of a directory, sorted.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(format!("read {}", dir.display()), e))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Server-side applies `object` (forcing conflicts: the harness owns what it applies).
pub async fn apply<K>(api: &Api<K>, object: &K) -> Result<K, Error>
where
    K: Resource + Clone + std::fmt::Debug + Serialize + DeserializeOwned,
    K::DynamicType: Default,
{
    let name = object
        .meta()
        .name
        .clone()
        .ok_or_else(|| Error::Manifest(format!("a {} without a name", K::kind(&Default::default()))))?;
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(Error::kube(format!(
        "apply {} {name}",
        K::kind(&Default::default())
    )))
}

/// Applies every CRD in `crds/*.yaml` and waits until each is established (served). Returns their names.
pub async fn install_crds(client: &Client, timeout: Duration) -> Result<Vec<String>, Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for file in yaml_files(&source_file("crds"))? {
        let crd: CustomResourceDefinition = document(&file, "CustomResourceDefinition")?;
        apply(&crds, &crd).await?;
        names.push(crd.metadata.name.clone().unwrap_or_default());
    }
    let deadline = Instant::now() + timeout;
    for name in &names {
        loop {
            let crd = crds
                .get(name)
                .await
                .map_err(Error::kube(format!("get CRD {name}")))?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Env(format!(
                    "CRD {name} was not established within {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_skips_empty_documents() {
        let docs = parse_documents("---\na: 1\n---\n---\n# only a comment\n---\nb: [x]\n").unwrap();
        assert_eq!(
            docs,
            vec![serde_json::json!({"a": 1}), serde_json::json!({"b": ["x"]})]
        );
        assert!(parse_documents("a: [").is_err());
    }

    #[test]
    fn the_shipped_manifests_parse() {
        for file in yaml_files(&source_file("crds")).unwrap() {
            document::<CustomResourceDefinition>(&file, "CustomResourceDefinition").unwrap();
        }
        assert_eq!(yaml_files(&source_file("crds")).unwrap().len(), 5);
    }

    #[test]
    fn crds_applied_through_the_typed_struct_are_the_shipped_ones() {
        for file in yaml_files(&source_file("crds")).unwrap() {
            let raw = documents(&file).unwrap().remove(0);
            let typed: CustomResourceDefinition = document(&file, "CustomResourceDefinition").unwrap();
            let round_trip = serde_json::to_value(&typed).unwrap();
            let diff = first_difference(&raw, &round_trip, String::new());
            assert!(diff.is_none(), "{}: {diff:?}", file.display());
        }
    }

    fn first_difference(a: &Value, b: &Value, path: String) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => x
                .keys()
                .chain(y.keys().filter(|k| !x.contains_key(*k)))
                .find_map(|k| match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => first_difference(p, q, format!("{path}.{k}")),
                    (p, q) => Some(format!("{path}.{k}: {p:?} vs {q:?}")),
                }),
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
                .iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (p, q))| first_difference(p, q, format!("{path}[{i}]"))),
            _ if a == b => None,
            _ => Some(format!("{path}: {a} vs {b}")),
        }
    }
}
