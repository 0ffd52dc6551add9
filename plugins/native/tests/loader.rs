//! Loading real plugin libraries: the example plugin, and broken ones that must be refused with a clear
//! message; then plugins misbehaving at run time, which must be contained.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use weft_scheduler_api::abi::PLUGIN_API_V1_SIZE;
use weft_scheduler_api::{
    HostInfo, Policy, PolicyRegistry, ScheduleError, Scheduler, Session, Snapshot, WorkloadRequest,
};
use weft_scheduler_native::{LoadError, NativePlugin};
use weft_scheduler_testing as testing;

fn load(path: impl AsRef<Path>) -> Result<NativePlugin, LoadError> {
    // SAFETY: every library loaded here is built from this repository for these tests.
    unsafe { NativePlugin::load(path) }
}

fn example() -> NativePlugin {
    load(testing::example_plugin()).expect("the example plugin loads")
}

fn misbehaving() -> NativePlugin {
    load(testing::misbehaving_plugin()).expect("the misbehaving plugin loads")
}

#[test]
fn the_example_plugin_loads_with_its_name_and_version() {
    let plugin = example();
    assert_eq!(plugin.name(), "example-spread");
    assert_eq!(plugin.abi_version(), (1, 0));
    assert_eq!(plugin.path(), testing::example_plugin());
}

#[test]
fn a_missing_file_is_refused() {
    let error = load("/nonexistent/libweft_nope.so").unwrap_err();
    assert!(matches!(error, LoadError::Open { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with("cannot load scheduling plugin /nonexistent/libweft_nope.so: "),
        "{message}"
    );
    assert!(message.contains("No such file"), "{message}");
}

#[test]
fn a_file_that_is_not_a_library_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libjunk.so");
    std::fs::write(&path, b"#!/bin/sh\necho not a library\n").unwrap();
    let error = load(&path).unwrap_err();
    assert!(matches!(error, LoadError::Open { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot load scheduling plugin {}: ", path.display()))
    );
}

#[test]
fn a_plugin_for_another_abi_major_is_refused() {
    let error = load(testing::wrong_major()).unwrap_err();
    assert!(
        matches!(
            error,
            LoadError::AbiMajor {
                found_major: 2,
                found_minor: 0,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .ends_with("implements ABI 2.0; this operator supports ABI 1.x (up to 1.0)"),
        "{error}"
    );
}

#[test]
fn a_plugin_without_the_v1_entry_is_refused_and_its_abi_named() {
    let error = load(testing::v2_only()).unwrap_err();
    assert!(matches!(error, LoadError::MissingEntry { .. }), "{error:?}");
    assert!(
        error.to_string().ends_with(
            "is not a Weft scheduling plugin for ABI 1: it does not export `weft_scheduler_plugin_v1` \
             (it exports `weft_scheduler_plugin_v2`, so it was built for another ABI)"
        ),
        "{error}"
    );
    // A library that is no plugin at all gets the same refusal, without the hint.
    let error = load(testing::example_plugin().with_file_name("no-such")).unwrap_err();
    assert!(matches!(error, LoadError::Open { .. }));
}

#[test]
fn a_table_smaller_than_abi_1_0_is_refused_before_reading_it() {
    let error = load(testing::short_table()).unwrap_err();
    match &error {
        LoadError::TableTooSmall { found, required, .. } => {
            assert_eq!(*found as usize, 8 + size_of::<usize>());
            assert_eq!(*required, PLUGIN_API_V1_SIZE);
        }
        other => panic!("expected TableTooSmall, got {other:?}"),
    }
    assert!(
        error
            .to_string()
            .contains(&format!("ABI 1 needs at least {PLUGIN_API_V1_SIZE}")),
        "{error}"
    );
}

#[test]
fn a_table_with_a_null_function_is_refused() {
    let error = load(testing::null_function()).unwrap_err();
    assert!(
        matches!(
            error,
            LoadError::MissingFunction {
                function: "place",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .ends_with("function `place` is missing from its API table"),
        "{error}"
    );
}

#[test]
fn an_entry_point_returning_null_is_refused() {
    let error = load(testing::null_table()).unwrap_err();
    assert!(matches!(error, LoadError::NullTable { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .ends_with("its entry point returned no API table"),
        "{error}"
    );
}

#[test]
fn a_checksum_is_verified_before_loading() {
    let path = testing::example_plugin();
    // SAFETY: the example plugin is built from this repository.
    let error = unsafe { NativePlugin::load_verified(&path, "00") }.unwrap_err();
    let LoadError::Checksum { actual, expected, .. } = &error else {
        panic!("expected Checksum, got {error:?}")
    };
    assert_eq!(expected, "00");
    assert_eq!(actual.len(), 64);
    // SAFETY: as above.
    let plugin = unsafe { NativePlugin::load_verified(&path, &actual.to_uppercase()) }.unwrap();
    assert_eq!(plugin.name(), "example-spread");
    // SAFETY: the file does not exist; nothing is loaded.
    let missing = unsafe { NativePlugin::load_verified("/nonexistent/plugin.so", actual) }.unwrap_err();
    assert!(matches!(missing, LoadError::Read { .. }), "{missing:?}");
}

fn host(id: &str, ready: bool) -> HostInfo {
    HostInfo {
        id: id.into(),
        name: format!("host-{id}"),
        ready,
        ..HostInfo::default()
    }
}

/// Two usable hosts and one that is not Ready.
fn cluster() -> Snapshot {
    Snapshot::new(vec![host("a", true), host("b", true), host("c", false)]).unwrap()
}

fn workload(name: &str) -> WorkloadRequest {
    WorkloadRequest {
        namespace: "ns".into(),
        name: name.into(),
        ..WorkloadRequest::default()
    }
}

/// Places one normal workload, then a misbehaving one, then another normal one; the failure must count
/// nothing, and the last placement must see the first (spread puts it on the other host).
fn contained(hook: &str) -> ScheduleError {
    let mut session = misbehaving().open_session(cluster(), 5).unwrap();
    let first = session.place(&workload("ok-1")).unwrap().host_id;
    let before = session.snapshot().clone();
    let error = session.place(&workload(hook)).unwrap_err();
    assert_eq!(
        session.snapshot(),
        &before,
        "a failed placement must not be counted"
    );
    let second = session.place(&workload("ok-2")).unwrap().host_id;
    let mut both = [first, second];
    both.sort();
    assert_eq!(
        both,
        ["a", "b"],
        "the session must still hold the first placement after {hook}"
    );
    error
}

#[test]
fn a_panicking_plugin_is_contained() {
    let error = contained("weft-test-panic");
    assert_eq!(
        error.to_string(),
        "scheduling plugin \"misbehaving-spread\" panicked: panic requested by workload weft-test-panic"
    );
}

#[test]
fn a_plugin_error_is_reported() {
    let error = contained("weft-test-error");
    assert_eq!(
        error.to_string(),
        "scheduling plugin \"misbehaving-spread\" failed: error requested"
    );
}

#[test]
fn garbage_output_is_rejected() {
    let error = contained("weft-test-garbage");
    let message = error.to_string();
    assert!(
        message.starts_with(
            "scheduling plugin \"misbehaving-spread\" returned invalid output: place output does not follow the \
             ABI schema: "
        ),
        "{message}"
    );
}

#[test]
fn a_host_outside_the_snapshot_is_rejected() {
    let error = contained("weft-test-unknown-host");
    assert_eq!(
        error.to_string(),
        "scheduling plugin \"misbehaving-spread\" returned invalid output: it chose host \"no-such-host\", which is \
         not in the snapshot"
    );
}

#[test]
fn a_host_failing_the_standard_filters_is_never_used() {
    let error = contained("weft-test-infeasible-host");
    assert_eq!(
        error.to_string(),
        "scheduling plugin \"misbehaving-spread\" returned invalid output: it chose host host-c (c), which fails \
         the readiness filter: host is not Ready"
    );
}

#[test]
fn an_undefined_status_is_rejected() {
    let error = contained("weft-test-bad-status");
    assert_eq!(
        error.to_string(),
        "scheduling plugin \"misbehaving-spread\" returned invalid output: place returned unknown status 42"
    );
}

#[test]
fn the_plugin_explains_when_no_host_fits() {
    let mut session = example().open_session(cluster(), 5).unwrap();
    let needy = WorkloadRequest {
        host_interfaces: vec!["wasi:keyvalue/store@0.2.0".parse().unwrap()],
        ..workload("needy")
    };
    assert_eq!(
        session.place(&needy).unwrap_err().to_string(),
        "0/3 hosts can run workload ns/needy: 2 missing host interface wasi:keyvalue/store@0.2.0, 1 not Ready \
         (host-a: host provides no wasi:keyvalue interfaces; host-b: host provides no wasi:keyvalue \
         interfaces; host-c: host is not Ready)"
    );
}

#[test]
fn workloads_select_the_plugin_by_name_next_to_the_built_ins() {
    let mut registry: PolicyRegistry = weft_scheduler_builtin::registry(&Default::default());
    registry.register(Arc::new(example())).unwrap();
    registry.register(Arc::new(misbehaving())).unwrap();
    let mut scheduler = Scheduler::new(registry, "random", cluster(), 1).unwrap();
    let with = |policy: &str, name: &str| WorkloadRequest {
        scheduler_name: Some(policy.into()),
        ..workload(name)
    };
    let total = |scheduler: &Scheduler| {
        scheduler
            .snapshot()
            .hosts()
            .iter()
            .map(|h| h.workload_count)
            .sum::<u64>()
    };

    let first = scheduler.place(&with("example-spread", "w-1")).unwrap().host_id;
    let error = scheduler
        .place(&with("misbehaving-spread", "weft-test-panic"))
        .unwrap_err();
    assert!(matches!(error, ScheduleError::Plugin { .. }), "{error:?}");
    // The other plugin's session is untouched by the failure and still spreads.
    assert_ne!(
        scheduler.place(&with("example-spread", "w-2")).unwrap().host_id,
        first
    );
    assert!(scheduler.place(&workload("default")).is_ok());
    assert_eq!(total(&scheduler), 3);
    // The misbehaving plugin's session recovered and counts every placement so far.
    scheduler.place(&with("misbehaving-spread", "w-3")).unwrap();
    assert_eq!(total(&scheduler), 4);
    let counts: Vec<u64> = scheduler
        .snapshot()
        .hosts()
        .iter()
        .map(|h| h.workload_count)
        .collect();
    assert_eq!(counts, [2, 2, 0]);
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn plugin_logs_reach_the_host_subscriber() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let plugin = example();
        let _session = plugin.open(cluster(), 0).unwrap();
    });
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("loaded scheduling plugin"), "{logs}");
    assert!(logs.contains("example-spread: session opened"), "{logs}");
}
