use std::collections::{BTreeMap, BTreeSet};

use weft_scheduler_api::{
    HostInfo, Pipeline, Policy, ResourceHints, ScheduleError, Scheduler, Snapshot, SnapshotUpdate,
    WorkloadFootprint, WorkloadRequest,
};

use super::*;

const GIB: u64 = 1 << 30;

fn host(id: &str) -> HostInfo {
    HostInfo {
        id: id.into(),
        name: format!("host-{id}"),
        ready: true,
        memory_total_bytes: 16 * GIB,
        memory_free_bytes: 12 * GIB,
        cpu_usage_bp: 2000,
        ..HostInfo::default()
    }
}

fn snapshot(hosts: Vec<HostInfo>) -> Snapshot {
    Snapshot::new(hosts).unwrap()
}

fn request() -> WorkloadRequest {
    WorkloadRequest {
        namespace: "team-a".into(),
        name: "web".into(),
        ..WorkloadRequest::default()
    }
}

fn all_policies() -> Vec<Pipeline> {
    let thresholds = ResourceThresholds::default();
    vec![
        random(),
        spread(),
        binpack(thresholds),
        resource_aware(thresholds, 500),
    ]
}

fn unschedulable(result: Result<weft_scheduler_api::Placement, ScheduleError>) -> String {
    match result {
        Err(error @ ScheduleError::NoFeasibleHost(_)) => error.to_string(),
        other => panic!("expected no feasible host, got {other:?}"),
    }
}

/// Every host each policy picks over many seeds.
fn chosen(policy: &Pipeline, snapshot: &Snapshot, request: &WorkloadRequest) -> BTreeSet<String> {
    (0..200u64)
        .map(|seed| {
            policy
                .schedule(snapshot, request, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .unwrap()
                .host_id
        })
        .collect()
}

#[test]
fn registry_holds_the_four_built_ins() {
    let registry = registry(&BuiltinOptions::default());
    assert_eq!(
        registry.names(),
        ["binpack", "random", "resource-aware", "spread"]
    );
    let mut again = registry.clone();
    assert!(register(&mut again, &BuiltinOptions::default()).is_err());
}

#[test]
fn no_policy_chooses_a_host_that_is_not_ready_or_draining() {
    let snapshot = snapshot(vec![
        HostInfo {
            ready: false,
            ..host("a")
        },
        HostInfo {
            draining: true,
            ..host("b")
        },
        host("c"),
    ]);
    for policy in all_policies() {
        assert_eq!(
            chosen(&policy, &snapshot, &request()),
            BTreeSet::from(["c".to_string()]),
            "{policy:?}"
        );
    }
}

#[test]
fn no_feasible_host_explains_every_host() {
    let snapshot = snapshot(vec![
        HostInfo {
            ready: false,
            ..host("a")
        },
        HostInfo {
            draining: true,
            ..host("b")
        },
        HostInfo {
            ready: false,
            ..host("c")
        },
    ]);
    for policy in all_policies() {
        let message = unschedulable(policy.schedule(&snapshot, &request(), 0));
        assert_eq!(
            message,
            "0/3 hosts can run workload team-a/web: 2 not Ready, 1 draining \
             (host-a: host is not Ready; host-b: host is draining; host-c: host is not Ready)",
            "{policy:?}"
        );
    }
}

#[test]
fn hosts_over_a_threshold_are_skipped_and_all_over_is_explained() {
    let snapshot = snapshot(vec![
        HostInfo {
            cpu_usage_bp: 9325,
            ..host("a")
        },
        HostInfo {
            memory_free_bytes: GIB,
            ..host("b")
        },
        HostInfo {
            cpu_usage_bp: 8001,
            ..host("c")
        },
    ]);
    for policy in [
        binpack(ResourceThresholds::default()),
        resource_aware(ResourceThresholds::default(), 500),
    ] {
        let message = unschedulable(policy.schedule(&snapshot, &request(), 0));
        assert_eq!(
            message,
            "0/3 hosts can run workload team-a/web: 2 CPU usage above 80%, 1 memory usage above 80% \
             (host-a: CPU usage 93.25% is above the 80% threshold; \
             host-b: memory usage would be 93.75% with this workload, above the 80% threshold; \
             host-c: CPU usage 80.01% is above the 80% threshold)"
        );
    }
    // Random and spread do not look at resources, like wasmCloud.
    assert!(random().schedule(&snapshot, &request(), 0).is_ok());
    assert!(spread().schedule(&snapshot, &request(), 0).is_ok());
}

#[test]
fn thresholds_count_the_workload_hints_and_are_configurable() {
    // 10 of 16 GiB used = 62.5%; a 3 GiB hint brings it to 81.25%.
    let snapshot = snapshot(vec![HostInfo {
        memory_free_bytes: 6 * GIB,
        ..host("a")
    }]);
    let policy = resource_aware(ResourceThresholds::default(), 500);
    assert!(policy.schedule(&snapshot, &request(), 0).is_ok());
    let heavy = WorkloadRequest {
        resources: ResourceHints {
            memory_bytes: Some(3 * GIB),
            cpu_bp: None,
        },
        ..request()
    };
    assert!(unschedulable(policy.schedule(&snapshot, &heavy, 0)).contains("81.25%"));
    let relaxed = resource_aware(ResourceThresholds::from_percent(90, 90), 500);
    assert!(relaxed.schedule(&snapshot, &heavy, 0).is_ok());
    // A CPU hint counts as well: 20% + 61% > 80%.
    let busy = WorkloadRequest {
        resources: ResourceHints {
            memory_bytes: None,
            cpu_bp: Some(6100),
        },
        ..request()
    };
    assert!(unschedulable(policy.schedule(&snapshot, &busy, 0)).contains("CPU usage 81% is above"));
    // A host that reports no memory is judged on CPU only.
    let unknown = self::snapshot(vec![HostInfo {
        memory_total_bytes: 0,
        memory_free_bytes: 0,
        ..host("a")
    }]);
    assert!(policy.schedule(&unknown, &heavy, 0).is_ok());
}

#[test]
fn a_host_lacking_a_required_interface_is_never_chosen() {
    let mut with_keyvalue = host("kv");
    with_keyvalue.interfaces = vec!["wasi:keyvalue/store,atomics@0.2.0".parse().unwrap()];
    let mut old_keyvalue = host("old");
    old_keyvalue.interfaces = vec!["wasi:keyvalue/store@0.1.0".parse().unwrap()];
    // The emptier hosts lack the interface, so spread and resource-aware would prefer them.
    let mut full_kv = with_keyvalue.clone();
    full_kv.id = "kv2".into();
    full_kv.workload_count = 50;
    let snapshot = snapshot(vec![host("plain"), old_keyvalue, with_keyvalue, full_kv]);
    let needs = WorkloadRequest {
        host_interfaces: vec![
            "wasi:http/incoming-handler@0.2.2".parse().unwrap(),
            "wasi:keyvalue/store@0.2.0".parse().unwrap(),
        ],
        ..request()
    };
    for policy in all_policies() {
        let hosts = chosen(&policy, &snapshot, &needs);
        assert!(
            hosts.iter().all(|id| id.starts_with("kv")),
            "{policy:?} chose {hosts:?}"
        );
    }
    let missing = WorkloadRequest {
        host_interfaces: vec!["wasi:keyvalue/watch@0.2.0".parse().unwrap()],
        ..request()
    };
    let message = unschedulable(spread().schedule(&snapshot, &missing, 0));
    assert!(
        message.starts_with(
            "0/4 hosts can run workload team-a/web: 4 missing host interface wasi:keyvalue/watch@0.2.0 ("
        ),
        "{message}"
    );
    assert!(
        message.contains("host-old: host provides wasi:keyvalue/store@0.1.0"),
        "{message}"
    );
    assert!(
        message.contains("host-plain: host provides no wasi:keyvalue interfaces"),
        "{message}"
    );
}

#[test]
fn the_host_selector_needs_every_label() {
    let label = |id: &str, labels: &[(&str, &str)]| HostInfo {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..host(id)
    };
    let snapshot = snapshot(vec![
        label("a", &[("zone", "eu"), ("tier", "gold")]),
        label("b", &[("zone", "eu")]),
        label("c", &[("zone", "us"), ("tier", "gold")]),
    ]);
    let selector: BTreeMap<String, String> = [("zone", "eu"), ("tier", "gold")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let selective = WorkloadRequest {
        host_selector: selector,
        ..request()
    };
    for policy in all_policies() {
        assert_eq!(
            chosen(&policy, &snapshot, &selective),
            BTreeSet::from(["a".to_string()])
        );
    }
    let nowhere = WorkloadRequest {
        host_selector: BTreeMap::from([("zone".to_string(), "ap".to_string())]),
        ..request()
    };
    let message = unschedulable(random().schedule(&snapshot, &nowhere, 0));
    assert!(message.contains("3 not matching the host selector"), "{message}");
    assert!(
        message.contains("host-c: label zone is \"us\", the selector requires \"ap\""),
        "{message}"
    );
    let no_label = snapshot.clone();
    let tier = WorkloadRequest {
        host_selector: BTreeMap::from([("rack".into(), "1".into())]),
        ..request()
    };
    assert!(unschedulable(random().schedule(&no_label, &tier, 0)).contains("label rack is missing"));
}

#[test]
fn environment_matrix_through_the_pipeline() {
    let env = |id: &str, environment: &str| HostInfo {
        environment: environment.into(),
        ..host(id)
    };
    let hosts = vec![env("own", "team-a"), env("prod", "prod"), env("none", "")];
    // (spec.environment, allowSharedHosts, the hosts it may use or None when denied)
    type Case = (Option<&'static str>, bool, Option<&'static [&'static str]>);
    let cases: [Case; 6] = [
        (Some("prod"), true, Some(&["prod"])),
        (Some("prod"), false, None),
        (Some("team-a"), true, Some(&["own"])),
        (Some("team-a"), false, Some(&["own"])),
        (None, true, Some(&["none", "own", "prod"])),
        (None, false, Some(&["own"])),
    ];
    for (environment, allow, expected) in cases {
        let snapshot = Snapshot::new(hosts.clone())
            .unwrap()
            .with_allow_shared_hosts(allow);
        let request = WorkloadRequest {
            environment: environment.map(Into::into),
            ..request()
        };
        match expected {
            Some(ids) => {
                let expected: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
                assert_eq!(
                    chosen(&random(), &snapshot, &request),
                    expected,
                    "{environment:?} {allow}"
                );
            }
            None => {
                let error = random().schedule(&snapshot, &request, 0).unwrap_err();
                assert!(
                    matches!(error, ScheduleError::CrossEnvironmentDenied { .. }),
                    "{error:?}"
                );
            }
        }
    }
    let snapshot = Snapshot::new(vec![env("prod", "prod")]).unwrap();
    let request = WorkloadRequest {
        environment: Some("staging".into()),
        ..request()
    };
    let message = unschedulable(random().schedule(&snapshot, &request, 0));
    assert!(message.contains("1 not in environment \"staging\" (host-prod: host environment is \"prod\")"));
}

#[test]
fn random_is_uniform_over_feasible_hosts() {
    let snapshot = snapshot((0..4).map(|i| host(&i.to_string())).collect());
    let mut session = random().open(snapshot, 11).unwrap();
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..4000 {
        *counts
            .entry(session.place(&request()).unwrap().host_id)
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 4);
    assert!(counts.values().all(|&n| (850..1150).contains(&n)), "{counts:?}");
}

#[test]
fn spread_prefers_the_fewest_workloads() {
    let snapshot = snapshot(vec![
        HostInfo {
            workload_count: 5,
            ..host("a")
        },
        HostInfo {
            workload_count: 2,
            ..host("b")
        },
        HostInfo {
            workload_count: 9,
            ..host("c")
        },
    ]);
    assert_eq!(
        chosen(&spread(), &snapshot, &request()),
        BTreeSet::from(["b".to_string()])
    );
    // Placing keeps leveling: b takes three, then a and b alternate.
    let mut session = spread().open(snapshot, 5).unwrap();
    let picks: Vec<String> = (0..5)
        .map(|_| session.place(&request()).unwrap().host_id)
        .collect();
    assert_eq!(&picks[..3], ["b", "b", "b"]);
    let rest: BTreeSet<_> = picks[3..].iter().cloned().collect();
    assert_eq!(rest, BTreeSet::from(["a".to_string(), "b".to_string()]));
}

#[test]
fn spread_keeps_replicas_of_one_set_apart() {
    // Host a is the least loaded overall but already runs a replica of the set.
    let snapshot = snapshot(vec![
        HostInfo {
            workload_count: 1,
            replica_sets: BTreeMap::from([("team-a/web".into(), 1)]),
            ..host("a")
        },
        HostInfo {
            workload_count: 6,
            ..host("b")
        },
        HostInfo {
            workload_count: 9,
            ..host("c")
        },
    ]);
    let replica = WorkloadRequest {
        replica_set: Some("team-a/web".into()),
        ..request()
    };
    let mut session = spread().open(snapshot, 1).unwrap();
    let picks: Vec<String> = (0..5).map(|_| session.place(&replica).unwrap().host_id).collect();
    assert_eq!(picks, ["b", "c", "a", "b", "c"]);
    let hosts = session.snapshot().hosts();
    assert!(hosts.iter().all(|h| h.replicas_of(Some("team-a/web")) == 2));
    // Workloads of another set are not pushed away from a.
    let other = WorkloadRequest {
        replica_set: Some("team-a/api".into()),
        ..request()
    };
    assert_eq!(session.place(&other).unwrap().host_id, "a");
}

#[test]
fn ties_are_broken_by_the_seed() {
    let snapshot = snapshot((0..8).map(|i| host(&format!("h{i}"))).collect());
    for policy in all_policies() {
        let run = |seed| {
            let mut session = policy.open(snapshot.clone(), seed).unwrap();
            (0..16)
                .map(|_| session.place(&request()).unwrap().host_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1), "{policy:?}");
        // Other seeds choose other hosts among equal ones, with no bias toward the first ID.
        let firsts: BTreeSet<String> = (0..64).map(|seed| run(seed)[0].clone()).collect();
        assert!(firsts.len() >= 6, "{policy:?}: {firsts:?}");
    }
}

#[test]
fn binpack_fills_the_fullest_host_up_to_the_threshold() {
    // a: 50% used, b: 65.6% used, c: 25% used; each workload takes 1 GiB (6.25%).
    let snapshot = snapshot(vec![
        HostInfo {
            memory_free_bytes: 8 * GIB,
            ..host("a")
        },
        HostInfo {
            memory_free_bytes: 5 * GIB + GIB / 2,
            ..host("b")
        },
        HostInfo {
            memory_free_bytes: 12 * GIB,
            ..host("c")
        },
    ]);
    let sized = WorkloadRequest {
        resources: ResourceHints {
            memory_bytes: Some(GIB),
            cpu_bp: None,
        },
        ..request()
    };
    let mut session = binpack(ResourceThresholds::default()).open(snapshot, 3).unwrap();
    let picks: Vec<String> = (0..8).map(|_| session.place(&sized).unwrap().host_id).collect();
    // b reaches 71.9% then 78.1%; a third would reach 84.4%, so a fills next (56.25% up to 75%), then c.
    assert_eq!(picks, ["b", "b", "a", "a", "a", "a", "c", "c"]);
}

#[test]
fn resource_aware_prefers_headroom_then_spreads_within_a_bucket() {
    let snapshot = snapshot(vec![
        HostInfo {
            cpu_usage_bp: 7000,
            ..host("busy")
        },
        HostInfo {
            cpu_usage_bp: 1100,
            memory_free_bytes: 15 * GIB,
            ..host("idle1")
        },
        HostInfo {
            cpu_usage_bp: 1200,
            memory_free_bytes: 15 * GIB,
            ..host("idle2")
        },
        HostInfo {
            cpu_usage_bp: 500,
            memory_free_bytes: 4 * GIB,
            ..host("low-memory")
        },
    ]);
    let policy = resource_aware(ResourceThresholds::default(), 500);
    let mut session = policy.open(snapshot, 9).unwrap();
    let picks: BTreeSet<String> = (0..6)
        .map(|_| session.place(&request()).unwrap().host_id)
        .collect();
    // idle1 (89% CPU free) and idle2 (88%) share the 85–90% bucket; low-memory has only 25% memory free.
    assert_eq!(picks, BTreeSet::from(["idle1".to_string(), "idle2".to_string()]));
    let hosts = session.snapshot().hosts();
    assert!(
        hosts
            .iter()
            .filter(|h| h.id.starts_with("idle"))
            .all(|h| h.workload_count == 3)
    );
}

#[test]
fn policies_compose() {
    // A custom pipeline: resource thresholds plus replica spreading, then headroom.
    let custom = Pipeline::builder("spread-with-thresholds")
        .filter(ResourceThresholds::from_percent(50, 90))
        .scorer(1 << 40, ReplicaSpread)
        .scorer(1, Headroom { bucket_bp: 1 })
        .build();
    let snapshot = snapshot(vec![
        HostInfo {
            cpu_usage_bp: 6000,
            ..host("hot")
        },
        HostInfo {
            cpu_usage_bp: 3000,
            ..host("warm")
        },
        HostInfo {
            cpu_usage_bp: 1000,
            ..host("cool")
        },
    ]);
    let replica = WorkloadRequest {
        replica_set: Some("ns/rs".into()),
        ..request()
    };
    let mut session = custom.open(snapshot, 0).unwrap();
    let picks: Vec<String> = (0..3).map(|_| session.place(&replica).unwrap().host_id).collect();
    assert_eq!(picks, ["cool", "warm", "cool"]);
}

#[test]
fn the_scheduler_uses_built_ins_by_name() {
    let snapshot = snapshot((0..3).map(|i| host(&i.to_string())).collect());
    let mut scheduler = Scheduler::new(registry(&BuiltinOptions::default()), SPREAD, snapshot, 1).unwrap();
    for _ in 0..3 {
        scheduler.place(&request()).unwrap();
    }
    assert!(scheduler.snapshot().hosts().iter().all(|h| h.workload_count == 1));
    let packed = WorkloadRequest {
        scheduler_name: Some(BINPACK.into()),
        ..request()
    };
    scheduler.place(&packed).unwrap();
    scheduler
        .apply(&[SnapshotUpdate::Forget {
            host_id: "0".into(),
            footprint: WorkloadFootprint::default(),
        }])
        .unwrap();
    let wrong = WorkloadRequest {
        scheduler_name: Some("bin-pack".into()),
        ..request()
    };
    assert_eq!(
        scheduler.place(&wrong).unwrap_err().to_string(),
        "unknown scheduling policy \"bin-pack\" (available: binpack, random, resource-aware, spread)"
    );
}
