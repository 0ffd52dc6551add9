//! The template hash matches wasmCloud's byte for byte: for every case in
//! `testdata/template-hash/cases`, our Go-compatible JSON and hash equal what wasmCloud's Go code
//! produced (`expected.json`, written by `go run .` in that directory).

use std::{collections::BTreeSet, fs, path::PathBuf};

use serde::Deserialize;
use weft_crds::{
    WorkloadDeployment, WorkloadReplicaTemplate, WorkloadSpec,
    template_hash::{go_json, template_hash},
};

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/template-hash")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Expected {
    case: String,
    go_json: String,
    hash: String,
}

fn expected() -> Vec<Expected> {
    let raw = fs::read_to_string(testdata().join("expected.json")).expect("expected.json is readable");
    serde_json::from_str(&raw).expect("expected.json parses")
}

fn case(name: &str) -> WorkloadSpec {
    let path = testdata().join("cases").join(name);
    let raw = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{name} is not a WorkloadSpec: {e}"))
}

fn case_names() -> BTreeSet<String> {
    fs::read_dir(testdata().join("cases"))
        .expect("cases/ is readable")
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".json"))
        .collect()
}

#[test]
fn every_case_encodes_and_hashes_like_wasmcloud() {
    let expected = expected();
    let listed: BTreeSet<String> = expected.iter().map(|e| e.case.clone()).collect();
    assert_eq!(
        listed,
        case_names(),
        "expected.json does not list exactly the cases in cases/: run `go run .` in crds/testdata/template-hash"
    );
    assert!(expected.len() >= 8, "too few cases: {}", expected.len());

    for expected in &expected {
        let spec = case(&expected.case);
        assert_eq!(go_json(&spec), expected.go_json, "goJson of {}", expected.case);
        assert_eq!(template_hash(&spec), expected.hash, "hash of {}", expected.case);
        let template = WorkloadReplicaTemplate {
            spec,
            ..Default::default()
        };
        assert_eq!(
            template.hash(),
            expected.hash,
            "template hash of {}",
            expected.case
        );
    }
}

#[test]
fn the_hello_world_example_hashes_like_wasmcloud() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/workloaddeployment-hello-world.yaml");
    let yaml = fs::read_to_string(path).expect("the example is readable");
    let deployment: WorkloadDeployment = serde_yaml::from_str(&yaml).expect("the example parses");
    let spec = &deployment.spec.template.spec;

    assert_eq!(
        spec,
        &case("01-hello-world.json"),
        "case 01 is the example's template spec"
    );
    let expected = expected()
        .into_iter()
        .find(|e| e.case == "01-hello-world.json")
        .expect("expected.json has the hello-world case");
    assert_eq!(go_json(spec), expected.go_json);
    assert_eq!(deployment.spec.template.hash(), expected.hash);
}
