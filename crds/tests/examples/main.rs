//! The manifests in `crds/examples/`: every valid one deserializes into its Rust type and serializes
//! back without loss, and passes the generated schema (structure and CEL rules); every one in
//! `crds/examples/invalid/` is rejected by the generated schema with the message its
//! `weft.dev/expected-error` annotation names.

mod structural;

use std::{collections::BTreeSet, fs, path::PathBuf};

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use weft_crds::{Artifact, Host, Workload, WorkloadDeployment, WorkloadReplicaSet};

const KINDS: [&str; 5] = [
    "Host",
    "Workload",
    "WorkloadReplicaSet",
    "WorkloadDeployment",
    "Artifact",
];
const EXPECTED_ERROR: &str = "weft.dev/expected-error";

struct Example {
    name: String,
    object: Value,
}

fn examples(dir: &str) -> Vec<Example> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut examples: Vec<Example> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .map(|path| {
            let text =
                fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let object =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
            Example {
                name: path
                    .file_name()
                    .expect("a file name")
                    .to_string_lossy()
                    .into_owned(),
                object,
            }
        })
        .collect();
    examples.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(!examples.is_empty(), "no examples in {}", dir.display());
    examples
}

fn kind(example: &Example) -> &str {
    example.object["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no kind", example.name))
}

/// The generated OpenAPI schema of `kind`.
fn schema(kind: &str) -> Value {
    let crd = weft_crds::custom_resource_definitions()
        .into_iter()
        .find(|crd| crd.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD of kind {kind}"));
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref());
    serde_json::to_value(schema.expect("an openAPIV3Schema")).expect("a schema serializes")
}

/// Every error the apiserver would report for `object`: structural ones, then CEL rule failures.
fn validation_errors(object: &Value) -> Vec<String> {
    let schema = schema(object["kind"].as_str().expect("a kind"));
    let mut errors = structural::validate(&schema, object);
    if let Err(failures) = kube_cel::Validator::new().validate(&schema, object, None) {
        errors.extend(
            failures
                .iter()
                .map(|f| format!("{}: Invalid value: {}", f.field_path, f.message)),
        );
    }
    errors
}

fn round_trip<K: DeserializeOwned + Serialize>(example: &Example) -> Value {
    let typed: K = serde_json::from_value(example.object.clone())
        .unwrap_or_else(|e| panic!("{} does not deserialize into its type: {e}", example.name));
    serde_json::to_value(&typed).expect("a typed object serializes")
}

/// Panics listing every failure, so one run shows all broken examples.
fn assert_no_failures(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} example(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn valid_examples_round_trip_without_loss() {
    let mut failures = Vec::new();
    for example in examples("examples") {
        let back = match kind(&example) {
            "Host" => round_trip::<Host>(&example),
            "Workload" => round_trip::<Workload>(&example),
            "WorkloadReplicaSet" => round_trip::<WorkloadReplicaSet>(&example),
            "WorkloadDeployment" => round_trip::<WorkloadDeployment>(&example),
            "Artifact" => round_trip::<Artifact>(&example),
            other => panic!("{} has unknown kind {other}", example.name),
        };
        if back != example.object {
            failures.push(format!(
                "{} changed in a round trip through its Rust type:\n  before: {}\n  after:  {back}",
                example.name, example.object
            ));
        }
    }
    assert_no_failures(failures);
}

#[test]
fn valid_examples_pass_the_schema() {
    let mut failures = Vec::new();
    for example in examples("examples") {
        let errors = validation_errors(&example.object);
        if !errors.is_empty() {
            failures.push(format!("{} is rejected: {errors:#?}", example.name));
        }
    }
    assert_no_failures(failures);
}

#[test]
fn invalid_examples_are_rejected_with_the_expected_error() {
    let mut failures = Vec::new();
    for example in examples("examples/invalid") {
        let expected = example.object["metadata"]["annotations"][EXPECTED_ERROR]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no {EXPECTED_ERROR} annotation", example.name));
        let errors = validation_errors(&example.object);
        if !errors.iter().any(|e| e.contains(expected)) {
            failures.push(format!(
                "{} should be rejected with {expected:?}, got {errors:#?}",
                example.name
            ));
        }
    }
    assert_no_failures(failures);
}

#[test]
fn every_kind_has_valid_and_invalid_examples() {
    let all: BTreeSet<String> = KINDS.iter().map(|k| k.to_string()).collect();
    for dir in ["examples", "examples/invalid"] {
        let covered: BTreeSet<String> = examples(dir).iter().map(|e| kind(e).to_owned()).collect();
        assert_eq!(covered, all, "kinds covered by {dir}");
    }
}

#[test]
fn invalid_examples_are_named_for_their_kind() {
    for example in examples("examples/invalid") {
        let prefix = format!("{}-", kind(&example).to_ascii_lowercase());
        assert!(
            example.name.starts_with(&prefix),
            "{} should start with {prefix}",
            example.name
        );
    }
}
