//! The Wasmtime backend against real components (built from `host/test-components`) and real HTTP.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use support::*;
use weft_runtime::metrics::{CompileCacheResult, OutgoingResult, RequestOutcome};
use weft_runtime::{
    ComponentSource, ComponentSpec, FetchError, LocalResources, RuntimeBackend, RuntimeError, Volume,
    VolumeKind, VolumeMount, WorkloadState,
};
use weft_test_components as components;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_answers() {
    let t = TestBackend::new();
    let hello = t
        .start(spec(
            "hello",
            &file_ref(components::HELLO),
            LocalResources::default(),
        ))
        .await;
    let reply = get(&hello, "/").await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "hello\n"));
    assert_eq!(hello.status().state, WorkloadState::Running);
    assert!(
        eventually(Duration::from_secs(5), || t
            .metrics
            .outcome_count(RequestOutcome::Ok)
            == 1)
        .await
    );
    assert_eq!(t.metrics.workload_count(), 1);
    assert!(t.backend.probe().ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_returns_body_headers_and_request_line() {
    let t = TestBackend::new();
    let echo = t
        .start(spec(
            "echo",
            &file_ref(components::ECHO),
            LocalResources::default(),
        ))
        .await;
    let reply = call(
        &echo,
        "POST",
        "/some/path?q=1",
        &[("x-custom", "value-1"), ("other", "dropped")],
        "payload",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "payload");
    assert_eq!(reply.headers["x-echo-method"], "POST");
    assert!(
        reply.headers["x-echo-uri"]
            .to_str()
            .unwrap()
            .ends_with("/some/path?q=1"),
        "{:?}",
        reply.headers
    );
    assert_eq!(reply.headers["x-echo-authority"], "app.test");
    assert_eq!(reply.headers["x-custom"], "value-1");
    assert!(!reply.headers.contains_key("other"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_and_config_come_from_local_resources() {
    let t = TestBackend::new();
    let resources = LocalResources {
        environment: env(&[("GREETING", "hi there"), ("MODE", "test")]),
        config: env(&[("db-url", "postgres://x"), ("feature", "on")]),
        ..Default::default()
    };
    let w = t
        .start(spec("env", &file_ref(components::ENV_CONFIG), resources))
        .await;
    assert_eq!(get(&w, "/env/GREETING").await.body, "hi there");
    assert_eq!(get(&w, "/env").await.body, "GREETING=hi there\nMODE=test\n");
    assert_eq!(get(&w, "/env/MISSING").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&w, "/config/db-url").await.body, "postgres://x");
    assert_eq!(get(&w, "/config").await.body, "db-url=postgres://x\nfeature=on\n");
    assert_eq!(get(&w, "/config/missing").await.status, StatusCode::NOT_FOUND);

    // Another workload of the same component sees only its own values.
    let other = t
        .start(spec(
            "env-2",
            &file_ref(components::ENV_CONFIG),
            LocalResources::default(),
        ))
        .await;
    assert_eq!(get(&other, "/env").await.body, "");
    assert_eq!(get(&other, "/config/db-url").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinner_is_cut_off_at_its_cpu_deadline_and_others_keep_being_served() {
    let t = TestBackend::new();
    let spinner = t
        .start(spec(
            "spinner",
            &file_ref(components::SPINNER),
            LocalResources::default(),
        ))
        .await;
    let hello = t
        .start(spec(
            "hello",
            &file_ref(components::HELLO),
            LocalResources::default(),
        ))
        .await;

    // A bounded spin finishes normally.
    let reply = get(&spinner, "/?iterations=1000").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.starts_with("spun 1000 rounds"));

    // Two endless spinners (as many as there are worker threads) plus hello requests meanwhile.
    let spins = [spinner.clone(), spinner.clone()].map(|s| tokio::spawn(async move { get(&s, "/").await }));
    assert!(eventually(Duration::from_secs(10), || spinner.status().active_requests == 2).await);
    for _ in 0..5 {
        let reply = get(&hello, "/").await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "hello must be served while spinners run"
        );
    }
    for spin in spins {
        let reply = spin.await.unwrap();
        assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{}", reply.body);
    }
    assert_eq!(t.metrics.outcome_count(RequestOutcome::Deadline), 2);
    assert_eq!(get(&hello, "/").await.status, StatusCode::OK);
    assert_eq!(spinner.status().active_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_is_stopped_at_its_memory_limit() {
    let t = TestBackend::new();
    let resources = LocalResources {
        memory_limit_bytes: Some(16 << 20),
        ..Default::default()
    };
    let hog = t.start(spec("hog", &file_ref(components::HOG), resources)).await;
    let hello = t
        .start(spec(
            "hello",
            &file_ref(components::HELLO),
            LocalResources::default(),
        ))
        .await;

    let reply = get(&hog, "/?mb=4").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.starts_with("allocated 4 MiB"));

    let reply = get(&hog, "/").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        reply.body.contains("memory limit of 16777216 bytes"),
        "{}",
        reply.body
    );
    assert_eq!(t.metrics.outcome_count(RequestOutcome::MemoryLimit), 1);

    // The hog can still serve requests within its limit, and others are unaffected.
    assert_eq!(get(&hog, "/?mb=2").await.status, StatusCode::OK);
    assert_eq!(get(&hello, "/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_concurrency_cap_get_503_with_retry_after() {
    let t = TestBackend::with(|c| c.cpu_time_limit = Duration::from_secs(2));
    let mut s = spec(
        "capped",
        &file_ref(components::SPINNER),
        LocalResources::default(),
    );
    s.components[0].max_concurrency = 1;
    let spinner = t.start(s).await;

    let busy = {
        let spinner = spinner.clone();
        tokio::spawn(async move { get(&spinner, "/").await })
    };
    assert!(eventually(Duration::from_secs(10), || spinner.status().active_requests == 1).await);
    let rejected = get(&spinner, "/?iterations=1").await;
    assert_eq!(rejected.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rejected.headers["retry-after"], "1");
    assert_eq!(t.metrics.outcome_count(RequestOutcome::Overloaded), 1);

    assert_eq!(busy.await.unwrap().status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        get(&spinner, "/?iterations=1").await.status,
        StatusCode::OK,
        "capacity is back after the deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_http_follows_the_allowlist_and_fails_closed() {
    let upstream = LocalServer::start(vec![("/ping", Bytes::from_static(b"pong"))]).await;
    let t = TestBackend::new();
    let target = upstream.url("/ping");
    let caller = |id: &str, allowed: &[&str]| {
        spec(
            id,
            &file_ref(components::HTTP_CALLER),
            LocalResources {
                allowed_hosts: allowed.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        )
    };

    let port_rule = format!("127.0.0.1:{}", upstream.addr.port());
    let allowed = t.start(caller("allowed", &[port_rule.as_str()])).await;
    let reply = call(&allowed, "GET", "/", &[("x-target-url", &target)], "").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "upstream 200: pong")
    );
    assert_eq!(upstream.hits(), 1);

    let url_rule = format!("http://127.0.0.1:{}/", upstream.addr.port());
    let by_url = t.start(caller("by-url", &[url_rule.as_str()])).await;
    assert_eq!(
        call(&by_url, "GET", "/", &[("x-target-url", &target)], "")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(upstream.hits(), 2);

    for (id, rules) in [
        ("other-host", vec!["example.com"]),
        ("other-port", vec!["127.0.0.1:1"]),
        ("other-scheme", vec!["https://127.0.0.1"]),
        ("empty", vec![]),
    ] {
        let denied = t.start(caller(id, &rules)).await;
        let reply = call(&denied, "GET", "/", &[("x-target-url", &target)], "").await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{id}: {}", reply.body);
        assert!(reply.body.contains("HttpRequestDenied"), "{id}: {}", reply.body);
    }
    assert_eq!(upstream.hits(), 2, "denied requests never reach the server");
    assert_eq!(t.metrics.outgoing_count(OutgoingResult::Denied), 4);
    assert_eq!(t.metrics.outgoing_count(OutgoingResult::Allowed), 2);

    let any = t.start(caller("any", &["*"])).await;
    assert_eq!(
        call(&any, "GET", "/", &[("x-target-url", &target)], "")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(upstream.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_are_compiled_once_and_cached_on_disk() {
    let t = TestBackend::new();
    let _a = t
        .start(spec("a", &file_ref(components::HELLO), LocalResources::default()))
        .await;
    let _b = t
        .start(spec("b", &file_ref(components::HELLO), LocalResources::default()))
        .await;
    assert_eq!(t.metrics.compile_cache_count(CompileCacheResult::Compiled), 1);
    assert_eq!(t.metrics.compile_cache_count(CompileCacheResult::Memory), 1);

    // A new backend (a restarted host) on the same cache directory loads the artifact from disk.
    let dir = t.dir;
    drop((_a, _b, t.backend));
    let t2 = TestBackend::in_dir(dir, |_| {});
    let c = t2
        .start(spec("c", &file_ref(components::HELLO), LocalResources::default()))
        .await;
    assert_eq!(t2.metrics.compile_cache_count(CompileCacheResult::Disk), 1);
    assert_eq!(t2.metrics.compile_cache_count(CompileCacheResult::Compiled), 0);
    assert_eq!(get(&c, "/").await.body, "hello\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_drains_then_rejects() {
    let t = TestBackend::with(|c| c.cpu_time_limit = Duration::from_secs(5));
    let spinner = t
        .start(spec(
            "spinner",
            &file_ref(components::SPINNER),
            LocalResources::default(),
        ))
        .await;
    let running = {
        let spinner = spinner.clone();
        tokio::spawn(async move { get(&spinner, "/").await })
    };
    assert!(eventually(Duration::from_secs(10), || spinner.status().active_requests == 1).await);
    // The spinner would run for 5 s; a 100 ms grace period cancels it.
    spinner.stop(Duration::from_millis(100)).await;
    assert_eq!(spinner.status().state, WorkloadState::Stopped);
    assert_eq!(running.await.unwrap().status, StatusCode::SERVICE_UNAVAILABLE);
    let after = get(&spinner, "/?iterations=1").await;
    assert_eq!(after.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(after.headers.contains_key("retry-after"));
    spinner.stop(Duration::from_secs(1)).await; // idempotent

    drop(spinner);
    assert!(eventually(Duration::from_secs(5), || t.metrics.workload_count() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_dir_volumes_are_preopened_and_removed() {
    let t = TestBackend::new();
    let mut s = spec(
        "vol",
        &file_ref(components::HELLO),
        LocalResources {
            volume_mounts: vec![VolumeMount {
                name: "scratch".into(),
                mount_path: "/data".into(),
                read_only: false,
            }],
            ..Default::default()
        },
    );
    s.volumes = vec![Volume {
        name: "scratch".into(),
        kind: VolumeKind::EmptyDir,
    }];
    let w = t.start(s).await;
    assert_eq!(get(&w, "/").await.status, StatusCode::OK);
    let dir = t.dir.path().join("volumes/vol/scratch");
    assert!(dir.is_dir());
    w.stop(Duration::from_secs(1)).await;
    assert!(!dir.exists(), "the emptyDir is removed when the workload stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_workloads_fail_with_clear_errors() {
    let t = TestBackend::new();
    let start = |s: weft_runtime::WorkloadSpec| {
        let backend = &t.backend;
        async move {
            match backend.start(s).await {
                Ok(w) => panic!("{} started but should have failed", w.id()),
                Err(err) => err,
            }
        }
    };

    let core_module = t.dir.path().join("module.wasm");
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").unwrap();
    let err = start(spec(
        "m",
        &file_ref(core_module.to_str().unwrap()),
        LocalResources::default(),
    ))
    .await;
    assert!(
        matches!(
            err,
            RuntimeError::Fetch {
                source: FetchError::NotAComponent { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("core WebAssembly module"), "{err}");

    let err = start(spec(
        "missing",
        "file:///nonexistent/x.wasm",
        LocalResources::default(),
    ))
    .await;
    assert!(
        matches!(
            err,
            RuntimeError::Fetch {
                source: FetchError::NotFound { .. },
                ..
            }
        ),
        "{err}"
    );

    let err = start(spec("bad-ref", "Not A Reference!", LocalResources::default())).await;
    assert!(
        matches!(
            err,
            RuntimeError::Fetch {
                source: FetchError::BadReference { .. },
                ..
            }
        ),
        "{err}"
    );

    let bad_hosts = LocalResources {
        allowed_hosts: vec!["*com".into(), "ok.example".into()],
        ..Default::default()
    };
    let err = start(spec("hosts", &file_ref(components::HELLO), bad_hosts)).await;
    assert!(
        matches!(err, RuntimeError::InvalidSpec(_)) && err.to_string().contains("*com"),
        "{err}"
    );

    let mut with_service = spec("svc", &file_ref(components::HELLO), LocalResources::default());
    with_service.service = Some(weft_runtime::ServiceSpec {
        // A library component: it exports no wasi:cli/run.
        source: ComponentSource::new(file_ref(components::GREETER)),
        ..Default::default()
    });
    let err = start(with_service).await;
    assert!(
        matches!(err, RuntimeError::Link { .. })
            && err.to_string().contains("the service must export wasi:cli/run"),
        "{err}"
    );

    let mut two_http = spec("two", &file_ref(components::HELLO), LocalResources::default());
    two_http.components.push(ComponentSpec {
        name: "second".into(),
        source: ComponentSource::new(file_ref(components::ECHO)),
        ..Default::default()
    });
    let err = start(two_http).await;
    assert!(err.to_string().contains("more than one component"), "{err}");

    let unknown_volume = LocalResources {
        volume_mounts: vec![VolumeMount {
            name: "nope".into(),
            mount_path: "/x".into(),
            read_only: true,
        }],
        ..Default::default()
    };
    let err = start(spec("vol", &file_ref(components::HELLO), unknown_volume)).await;
    assert!(err.to_string().contains("names no volume"), "{err}");

    let garbage = t.dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm\x0d\0\x01\0not really a component").unwrap();
    let err = start(spec(
        "garbage",
        &file_ref(garbage.to_str().unwrap()),
        LocalResources::default(),
    ))
    .await;
    assert!(matches!(err, RuntimeError::Compile { .. }), "{err}");

    // A memory limit below what the component needs to instantiate fails the start, not each request.
    let tiny = LocalResources {
        memory_limit_bytes: Some(64 << 10),
        ..Default::default()
    };
    let err = start(spec("tiny", &file_ref(components::HELLO), tiny)).await;
    assert!(matches!(err, RuntimeError::Link { .. }), "{err}");
    assert!(err.to_string().contains("memory limit of 65536 bytes"), "{err}");

    // Nothing failed starts a workload, and a good one still works.
    assert_eq!(t.metrics.workload_count(), 0);
    let ok = t
        .start(spec(
            "ok",
            &file_ref(components::HELLO),
            LocalResources::default(),
        ))
        .await;
    assert_eq!(get(&ok, "/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_request_bodies_over_the_limit_get_413() {
    let t = TestBackend::with(|c| c.max_request_body = 8);
    let echo = t
        .start(spec(
            "echo",
            &file_ref(components::ECHO),
            LocalResources::default(),
        ))
        .await;
    assert_eq!(
        call(&echo, "POST", "/", &[("content-length", "5")], "small")
            .await
            .status,
        StatusCode::OK
    );
    let reply = call(&echo, "POST", "/", &[("content-length", "12")], "far too long").await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(t.metrics.outcome_count(RequestOutcome::BodyTooLarge), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_through_and_abandoned_responses_release_their_instance() {
    let t = TestBackend::new();
    let echo = t
        .start(spec(
            "echo",
            &file_ref(components::ECHO),
            LocalResources::default(),
        ))
        .await;
    // 4 MiB: far more than the body channel buffers, so the guest must keep running while the body streams.
    let payload: String = (0..4 << 20).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let reply = call(&echo, "POST", "/", &[], &payload).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.len(), payload.len());
    assert!(reply.body == payload, "the echoed body differs");

    // A response whose body is never read: the call finishes on its own and frees its instance.
    let request = http::Request::post("/")
        .header("host", "app.test")
        .body(weft_runtime::backend::body::full(payload.clone()))
        .unwrap();
    let response = echo.handle(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    drop(response);
    assert!(eventually(Duration::from_secs(10), || t.metrics.active_instance_count() == 0).await);
    assert!(eventually(Duration::from_secs(10), || echo.status().active_requests == 0).await);
}

/// Counts how often it is woken.
struct CountingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_answering_at_once_completes_in_one_poll_without_waking_its_task() {
    use std::sync::atomic::Ordering;
    use std::task::{Context, Poll};

    use hyper::body::Body as _;

    // An epoch tick landing inside a call legitimately yields once; with a tick a minute long, none
    // lands inside these few milliseconds of requests (at most one, should the minute turn), so the
    // count does not depend on how loaded the machine is.
    let t = TestBackend::with(|c| {
        c.epoch_tick = Duration::from_secs(60);
        c.cpu_time_limit = Duration::from_secs(600);
        c.wall_time_limit = Duration::from_secs(600);
    });
    let hello = t
        .start(spec(
            "hello",
            &file_ref(components::HELLO),
            LocalResources::default(),
        ))
        .await;
    // A wake-up the task gives itself while it is being polled makes the scheduler poll it again for
    // nothing (and wake another worker thread to steal it); before this was fixed, every request did.
    let mut clean = 0;
    for _ in 0..20 {
        let counter = std::sync::Arc::new(CountingWaker(Default::default()));
        let waker = std::task::Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let request = http::Request::builder()
            .uri("/")
            .header("host", "app.test")
            .body(weft_runtime::backend::body::empty())
            .unwrap();
        let mut response = hello.handle(request);
        let first = response.as_mut().poll(&mut cx);
        let mut body = match first {
            Poll::Ready(response) => {
                assert_eq!(response.status(), http::StatusCode::OK);
                response.into_body()
            }
            Poll::Pending => {
                drop(response.await);
                continue;
            }
        };
        let mut frames = 0;
        let finished = loop {
            match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(frame)) => frames += usize::from(frame.unwrap().is_data()),
                Poll::Ready(None) => break true,
                Poll::Pending => break false,
            }
        };
        if finished && frames == 1 && counter.0.load(Ordering::SeqCst) == 0 {
            clean += 1;
        }
    }
    assert!(
        clean >= 19,
        "only {clean} of 20 requests completed without a self-inflicted wake-up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_traps_on_every_request_reports_it_in_its_status() {
    let t = TestBackend::new();
    let echo = t
        .start(spec(
            "echo",
            &file_ref(components::ECHO),
            LocalResources::default(),
        ))
        .await;
    assert_eq!(echo.status().failures, None, "nothing failed yet");
    for _ in 0..5 {
        let reply = get(&echo, "/trap").await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    let failures = echo.status().failures.expect("failures reported");
    assert_eq!((failures.failed, failures.of), (5, 5));
    assert!(
        failures.last_error.contains("unreachable"),
        "the trap is named: {}",
        failures.last_error
    );
    assert!(!failures.last_error.contains('\n'), "{}", failures.last_error);
    assert_eq!(echo.status().state, WorkloadState::Running, "it still runs");

    // Requests it answers shift the failures out.
    for _ in 0..70 {
        assert_eq!(get(&echo, "/").await.status, StatusCode::OK);
    }
    assert_eq!(echo.status().failures, None);
}
