//! Golden tests of the proto3 JSON mapping: the JSON that Go's `protojson` (the wasmCloud operator) and
//! Rust's `pbjson` (the wasmCloud host) produce for representative messages must decode, and our output
//! must be that canonical JSON exactly (field order = proto field numbers, defaults omitted, 64-bit
//! integers as strings, enums as names, maps sorted by key).

use weft_host_api::*;

/// Decodes `input`, re-encodes it and checks the output is exactly `canonical`; then checks the
/// canonical form round-trips to the same value.
fn assert_golden<T>(input: &str, canonical: &str) -> T
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    let decoded: T = from_json(input.as_bytes()).unwrap_or_else(|e| panic!("decode {input}: {e}"));
    let encoded = String::from_utf8(to_json(&decoded).unwrap()).unwrap();
    assert_eq!(encoded, canonical);
    let again: T = from_json(canonical.as_bytes()).unwrap();
    assert_eq!(again, decoded);
    decoded
}

fn compact(json: &str) -> String {
    json.lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("")
        .replace("\": ", "\":")
}

const HEARTBEAT: &str = r#"{"id":"6f1c8a3e-2b7d-4d7e-9f10-3c5a1e2b4d6f","hostname":"10.244.1.17","friendlyName":"quiet-heron-0412","version":"2.7.0","labels":{"hostgroup":"default","topology.kubernetes.io/zone":"eu-1a"},"startedAt":"2026-08-11T09:30:00.125Z","osArch":"x86_64","osName":"linux","osKernel":"6.8.0-41-generic","systemCpuUsage":12.5,"systemMemoryTotal":"16777216000","systemMemoryFree":"8388608000","componentCount":"3","workloadCount":"2","imports":[{"namespace":"wasi","package":"http","version":"0.2.6","interfaces":["outgoing-handler","types"]},{"namespace":"wasi","package":"keyvalue","version":"0.2.0-draft","interfaces":["store","atomics"],"name":"cache"}],"exports":[{"namespace":"wasi","package":"http","version":"0.2.6","interfaces":["incoming-handler"]}],"httpPort":9191,"environment":"wasmcloud-system"}"#;

#[test]
fn heartbeat_as_the_rust_host_writes_it() {
    // pbjson via serde_json::to_vec_pretty, as a wasmCloud host replies.
    let pretty = r#"{
  "id": "6f1c8a3e-2b7d-4d7e-9f10-3c5a1e2b4d6f",
  "hostname": "10.244.1.17",
  "friendlyName": "quiet-heron-0412",
  "version": "2.7.0",
  "labels": {
    "hostgroup": "default",
    "topology.kubernetes.io/zone": "eu-1a"
  },
  "startedAt": "2026-08-11T09:30:00.125Z",
  "osArch": "x86_64",
  "osName": "linux",
  "osKernel": "6.8.0-41-generic",
  "systemCpuUsage": 12.5,
  "systemMemoryTotal": "16777216000",
  "systemMemoryFree": "8388608000",
  "componentCount": "3",
  "workloadCount": "2",
  "imports": [
    {
      "namespace": "wasi",
      "package": "http",
      "version": "0.2.6",
      "interfaces": [
        "outgoing-handler",
        "types"
      ]
    },
    {
      "namespace": "wasi",
      "package": "keyvalue",
      "version": "0.2.0-draft",
      "interfaces": [
        "store",
        "atomics"
      ],
      "name": "cache"
    }
  ],
  "exports": [
    {
      "namespace": "wasi",
      "package": "http",
      "version": "0.2.6",
      "interfaces": [
        "incoming-handler"
      ]
    }
  ],
  "httpPort": 9191,
  "environment": "wasmcloud-system"
}"#;
    assert_eq!(compact(pretty), HEARTBEAT, "the fixture itself is consistent");
    let hb: HostHeartbeat = assert_golden(pretty, HEARTBEAT);
    assert_eq!(hb.system_memory_total, 16_777_216_000);
    assert_eq!(hb.workload_count, 2);
    assert_eq!(hb.http_port, 9191);
    assert_eq!(hb.system_cpu_usage, 12.5);
    assert_eq!(hb.started_at.unwrap().to_string(), "2026-08-11T09:30:00.125Z");
    assert_eq!(hb.labels["hostgroup"], "default");
    assert_eq!(hb.imports[1].name, "cache");
}

#[test]
fn heartbeat_with_snake_case_numbers_and_unsorted_map() {
    // Snake-case names, 64-bit integers as JSON numbers, a map out of order, Go-style spacing and
    // unknown fields (a newer peer): all accepted; output is canonical.
    let input = r#"{"id": "6f1c8a3e-2b7d-4d7e-9f10-3c5a1e2b4d6f", "hostname":"10.244.1.17", "friendly_name":"quiet-heron-0412",
        "version":"2.7.0", "labels":{"topology.kubernetes.io/zone":"eu-1a","hostgroup":"default"},
        "started_at":"2026-08-11T11:30:00.125+02:00", "os_arch":"x86_64", "os_name":"linux",
        "os_kernel":"6.8.0-41-generic", "system_cpu_usage":"12.5", "system_memory_total":16777216000,
        "system_memory_free":8388608000, "component_count":3, "workload_count":"2",
        "imports":[{"namespace":"wasi","package":"http","version":"0.2.6","interfaces":["outgoing-handler","types"],"config":{}},
                   {"namespace":"wasi","package":"keyvalue","version":"0.2.0-draft","interfaces":["store","atomics"],"name":"cache"}],
        "exports":[{"namespace":"wasi","package":"http","version":"0.2.6","interfaces":["incoming-handler"],"futureField":[1,2]}],
        "http_port":"9191", "environment":"wasmcloud-system", "gpuCount":"2", "nested":{"a":{"b":null}}}"#;
    assert_golden::<HostHeartbeat>(input, HEARTBEAT);
}

const START: &str = r#"{"workload":{"namespace":"default","name":"hello-7d9f8-x2k4p","annotations":{"app.kubernetes.io/name":"hello","weft.dev/revision":"3"},"service":{"image":"ghcr.io/acme/svc:1.0.0","localResources":{"environment":{"MODE":"service"}},"maxRestarts":"5","imagePullPolicy":"IMAGE_PULL_POLICY_NEVER"},"witWorld":{"components":[{"image":"ghcr.io/acme/hello:1.2.3","localResources":{"memoryLimitMb":128,"cpuLimit":2,"config":{"greeting":"hi"},"environment":{"LOG":"debug","RUST_BACKTRACE":"1"},"volumeMounts":[{"name":"data","mountPath":"/data","readOnly":true},{"name":"scratch","mountPath":"/tmp"}],"allowedHosts":["api.example.com","*.internal.example.com:8443"],"allowedIpNameLookups":["*.example.com"],"allowedHostLoopbackPorts":["5432/tcp"]},"poolSize":4,"maxInvocations":-1,"imagePullSecret":{"username":"robot","password":"s3cret"},"name":"hello","imagePullPolicy":"IMAGE_PULL_POLICY_ALWAYS","maxConcurrency":8}],"hostInterfaces":[{"namespace":"wasi","package":"http","version":"0.2.0","interfaces":["incoming-handler"],"config":{"host":"hello.example.com","host-aliases":"hello,hello.default.svc"}},{"namespace":"wasi","package":"config","interfaces":["store"]}]},"volumes":[{"name":"data","hostPath":{"localPath":"/var/lib/data"}},{"name":"scratch","emptyDir":{}}]},"workloadId":"0b7e4f7a-2c1d-4e5f-8a9b-1c2d3e4f5a6b"}"#;

#[test]
fn start_request_as_the_go_operator_writes_it() {
    // protojson output for the same message (it inserts spaces at random; the shape is canonical).
    let go = START.replace("\":", "\": ").replace(",\"", ", \"");
    let req: WorkloadStartRequest = assert_golden(&go, START);
    let w = req.workload.as_ref().unwrap();
    let c = &w.wit_world.as_ref().unwrap().components[0];
    assert_eq!(c.pool_size, 4);
    assert_eq!(c.max_invocations, -1);
    assert_eq!(c.image_pull_policy, ImagePullPolicy::Always);
    let lr = c.local_resources.as_ref().unwrap();
    assert_eq!(lr.memory_limit_mb, 128);
    assert!(lr.volume_mounts[0].read_only && !lr.volume_mounts[1].read_only);
    assert_eq!(w.service.as_ref().unwrap().max_restarts, 5);
    assert_eq!(
        w.service.as_ref().unwrap().image_pull_policy,
        ImagePullPolicy::Never
    );
    assert_eq!(
        w.volumes[0].volume_type,
        Some(VolumeType::HostPath(HostPathVolume {
            local_path: "/var/lib/data".into()
        }))
    );
    assert_eq!(
        w.volumes[1].volume_type,
        Some(VolumeType::EmptyDir(EmptyDirVolume {}))
    );
    let http = &w.wit_world.as_ref().unwrap().host_interfaces[0];
    assert!(http.is_http_incoming_handler());
    assert!(!w.wit_world.as_ref().unwrap().host_interfaces[1].is_http_incoming_handler());
}

#[test]
fn start_request_in_snake_case_with_enum_numbers() {
    let input = r#"{"workload_id":"0b7e4f7a-2c1d-4e5f-8a9b-1c2d3e4f5a6b","workload":{"namespace":"default","name":"hello-7d9f8-x2k4p",
      "annotations":{"weft.dev/revision":"3","app.kubernetes.io/name":"hello"},
      "service":{"image":"ghcr.io/acme/svc:1.0.0","local_resources":{"environment":{"MODE":"service"}},"max_restarts":5,"image_pull_policy":3},
      "wit_world":{"components":[{"image":"ghcr.io/acme/hello:1.2.3","local_resources":{"memory_limit_mb":"128","cpu_limit":2,
        "config":{"greeting":"hi"},"environment":{"RUST_BACKTRACE":"1","LOG":"debug"},
        "volume_mounts":[{"name":"data","mount_path":"/data","read_only":true},{"name":"scratch","mount_path":"/tmp","read_only":false}],
        "allowed_hosts":["api.example.com","*.internal.example.com:8443"],"allowed_ip_name_lookups":["*.example.com"],
        "allowed_host_loopback_ports":["5432/tcp"]},"pool_size":4,"max_invocations":"-1",
        "image_pull_secret":{"username":"robot","password":"s3cret"},"name":"hello","image_pull_policy":1,"max_concurrency":8.0}],
      "host_interfaces":[{"namespace":"wasi","package":"http","version":"0.2.0","interfaces":["incoming-handler"],
        "config":{"host-aliases":"hello,hello.default.svc","host":"hello.example.com"}},
        {"namespace":"wasi","package":"config","version":"","interfaces":["store"],"config":null,"name":null}]},
      "volumes":[{"name":"data","host_path":{"local_path":"/var/lib/data"}},{"name":"scratch","empty_dir":{}}]}}"#;
    assert_golden::<WorkloadStartRequest>(input, START);
}

#[test]
fn replies_as_the_rust_host_writes_them() {
    let error = r#"{
  "workloadStatus": {
    "workloadId": "w-1",
    "workloadState": "WORKLOAD_STATE_ERROR",
    "message": "Workload ID [w-1] already exists"
  }
}"#;
    let resp: WorkloadStartResponse = assert_golden(
        error,
        r#"{"workloadStatus":{"workloadId":"w-1","workloadState":"WORKLOAD_STATE_ERROR","message":"Workload ID [w-1] already exists"}}"#,
    );
    assert_eq!(resp.workload_status.unwrap().workload_state, WorkloadState::Error);

    assert_golden::<WorkloadStopResponse>(
        r#"{"workloadStatus":{"workloadId":"w-1","workloadState":"WORKLOAD_STATE_STOPPING","message":"stopped successfully"}}"#,
        r#"{"workloadStatus":{"workloadId":"w-1","workloadState":"WORKLOAD_STATE_STOPPING","message":"stopped successfully"}}"#,
    );
    // NOT_FOUND without a message; the state given as a number.
    assert_golden::<WorkloadStatusResponse>(
        r#"{"workload_status":{"workload_id":"w-1","workload_state":6}}"#,
        r#"{"workloadStatus":{"workloadId":"w-1","workloadState":"WORKLOAD_STATE_NOT_FOUND"}}"#,
    );
}

#[test]
fn every_workload_state_has_its_proto_name() {
    let names = [
        "WORKLOAD_STATE_UNSPECIFIED",
        "WORKLOAD_STATE_STARTING",
        "WORKLOAD_STATE_RUNNING",
        "WORKLOAD_STATE_COMPLETED",
        "WORKLOAD_STATE_STOPPING",
        "WORKLOAD_STATE_ERROR",
        "WORKLOAD_STATE_NOT_FOUND",
    ];
    for (n, (state, name)) in WorkloadState::ALL.iter().zip(names).enumerate() {
        assert_eq!(i32::from(*state), n as i32);
        assert_eq!(state.as_str_name(), name);
        let status = WorkloadStatus::new("w", *state, "");
        let json = String::from_utf8(to_json(&status).unwrap()).unwrap();
        if *state == WorkloadState::Unspecified {
            assert_eq!(json, r#"{"workloadId":"w"}"#, "the zero value is omitted");
        } else {
            assert_eq!(json, format!(r#"{{"workloadId":"w","workloadState":"{name}"}}"#));
        }
    }
    let policies = [
        "IMAGE_PULL_POLICY_UNSPECIFIED",
        "IMAGE_PULL_POLICY_ALWAYS",
        "IMAGE_PULL_POLICY_IF_NOT_PRESENT",
        "IMAGE_PULL_POLICY_NEVER",
    ];
    for (n, (p, name)) in ImagePullPolicy::ALL.iter().zip(policies).enumerate() {
        assert_eq!(i32::from(*p), n as i32);
        assert_eq!(ImagePullPolicy::from_str_name(name), Some(*p));
    }
}

#[test]
fn defaults_are_omitted() {
    assert_eq!(to_json(&Empty {}).unwrap(), b"{}");
    assert_eq!(to_json(&HostHeartbeat::default()).unwrap(), b"{}");
    assert_eq!(to_json(&WorkloadStartRequest::default()).unwrap(), b"{}");
    assert_eq!(to_json(&WorkloadStatusResponse::default()).unwrap(), b"{}");
    assert_eq!(to_json(&Component::default()).unwrap(), b"{}");
    assert_eq!(to_json(&LocalResources::default()).unwrap(), b"{}");
    assert_eq!(to_json(&Volume::default()).unwrap(), b"{}");
    // An empty message that is *set* is written, as protojson does.
    let w = Workload {
        wit_world: Some(WitWorld::default()),
        ..Default::default()
    };
    assert_eq!(to_json(&w).unwrap(), br#"{"witWorld":{}}"#);
    // The heartbeat request body the Go operator sends (emptypb.Empty) and what older peers send.
    for body in ["{}", "{ }", r#"{"unexpected":true}"#] {
        from_json::<Empty>(body.as_bytes()).unwrap();
    }
}

#[test]
fn nulls_read_as_defaults() {
    let s: WorkloadStatus = from_json(br#"{"workloadId":null,"workloadState":null,"message":null}"#).unwrap();
    assert_eq!(s, WorkloadStatus::default());
    let hb: HostHeartbeat = from_json(
        br#"{"labels":null,"imports":null,"startedAt":null,"systemCpuUsage":null,"workloadCount":null,"httpPort":null}"#,
    )
    .unwrap();
    assert_eq!(hb, HostHeartbeat::default());
}

#[test]
fn invalid_input_is_rejected_with_a_reason() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"workloadState":"WORKLOAD_STATE_SLEEPING"}"#,
            "WORKLOAD_STATE_SLEEPING",
        ),
        (r#"{"workloadState":42}"#, "42"),
        (r#"{"workloadId":7}"#, "string"),
        (r#"{"workloadId":"a","workload_id":"b"}"#, "duplicate"),
    ];
    for (input, needle) in cases {
        let err = from_json::<WorkloadStatus>(input.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{input}: {err}");
    }
    let err = from_json::<Volume>(br#"{"name":"v","hostPath":{"localPath":"/x"},"emptyDir":{}}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("oneof"), "{err}");
    let err = from_json::<HostHeartbeat>(br#"{"workloadCount":"-1"}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("-1"), "{err}");
    let err = from_json::<HostHeartbeat>(br#"{"startedAt":"last tuesday"}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("last tuesday"), "{err}");
    let err = from_json::<Component>(br#"{"poolSize":1.5}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("1.5"), "{err}");
}

#[test]
fn image_pull_secret_debug_redacts_the_password() {
    let s = ImagePullSecret {
        username: "robot".into(),
        password: "s3cret".into(),
    };
    let dbg = format!("{s:?}");
    assert!(dbg.contains("robot") && !dbg.contains("s3cret"), "{dbg}");
}
