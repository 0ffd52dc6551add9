//! HTTP ingress end to end: the real `weft-host` binary running real test components (built from
//! `host/test-components` for wasm32-wasip2), real HTTP on the wire.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use weft_host_api::WorkloadState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_routed_by_host_header() {
    let nats = nats();
    let host = start_host(&nats.url(), &[]).await;
    let c = &host.client;
    let hello = file_image(weft_test_components::HELLO);
    let echo = file_image(weft_test_components::ECHO);
    let s = c
        .start(
            &host.id,
            &http_workload("w-hello", "hello", &hello, &["hello.test"]),
        )
        .await
        .unwrap();
    assert_eq!(s.workload_state, WorkloadState::Running, "{}", s.message);
    let req = http_workload(
        "w-echo",
        "echo",
        &echo,
        &["echo.test", "echo-alias.test", "not valid!"],
    );
    assert_eq!(
        c.start(&host.id, &req).await.unwrap().workload_state,
        WorkloadState::Running
    );

    // The host name decides; port and case do not.
    for h in ["hello.test", "HELLO.Test", "hello.test:8080", "hello.test."] {
        let r = get(host.http, "/", Some(h)).unwrap();
        assert_eq!((r.status, r.body_text().as_str()), (200, "hello\n"), "Host: {h}");
    }
    for h in ["echo.test", "echo-alias.test:1234"] {
        let r = get(host.http, "/some/path?q=1", Some(h)).unwrap();
        assert_eq!(r.status, 200, "Host: {h}: {}", r.body_text());
        assert_eq!(r.header("x-echo-method"), Some("GET"), "Host: {h}");
        assert_eq!(
            r.header("x-echo-authority"),
            Some(h),
            "the component sees the original Host"
        );
    }

    // No Host header: 400. Unknown host: 404. The invalid alias was ignored.
    for request in [
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    ] {
        let mut stream = connect(host.http).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let r = read_response(&mut stream).unwrap();
        assert_eq!(r.status, 400, "{request:?}: {}", r.body_text());
        assert!(r.body_text().contains("no Host header"), "{}", r.body_text());
    }
    let mut stream = connect(host.http).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_response(&mut stream).unwrap().status,
        400,
        "two Host headers"
    );
    let r = get(host.http, "/", Some("nobody.test")).unwrap();
    assert_eq!(r.status, 404);
    assert!(r.body_text().contains("nobody.test"), "{}", r.body_text());

    // Metrics by workload and status code.
    let metrics = host.metrics();
    assert_eq!(
        metric_value(
            &metrics,
            r#"weft_host_http_requests_total{workload="default/hello",code="200"}"#
        ),
        Some(4.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            r#"weft_host_http_requests_total{workload="default/echo",code="200"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            r#"weft_host_http_requests_total{workload="",code="400"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            r#"weft_host_http_requests_total{workload="",code="404"}"#
        ),
        Some(1.0)
    );
    assert!(metric_value(&metrics, "weft_host_http_request_duration_seconds_count").unwrap() >= 8.0);
    assert!(
        metrics.contains("weft_runtime_instantiate_duration_seconds_bucket"),
        "runtime metrics are exposed"
    );
    assert_eq!(
        metric_value(&metrics, r#"weft_host_workloads{state="running"}"#),
        Some(2.0)
    );

    // A stopped workload's hostname is gone at once, and so are its request series.
    c.stop(&host.id, "w-hello").await.unwrap();
    assert_eq!(get(host.http, "/", Some("hello.test")).unwrap().status, 404);
    assert_eq!(get(host.http, "/", Some("echo.test")).unwrap().status, 200);
    let metrics = host.metrics();
    assert!(
        !metrics.contains(r#"workload="default/hello""#),
        "a stopped workload leaves no series: {metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            r#"weft_host_http_requests_total{workload="default/echo",code="200"}"#
        ),
        Some(3.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_host_share_the_requests() {
    let nats = nats();
    let host = start_host(&nats.url(), &[]).await;
    let hello = file_image(weft_test_components::HELLO);
    for (id, name) in [("r-a", "replica-a"), ("r-b", "replica-b")] {
        let s = host
            .client
            .start(&host.id, &http_workload(id, name, &hello, &["app.test"]))
            .await
            .unwrap();
        assert_eq!(s.workload_state, WorkloadState::Running, "{}", s.message);
    }
    // Keep-alive: all requests on one connection.
    let mut stream = connect(host.http).unwrap();
    for _ in 0..10 {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .unwrap();
        let r = read_response(&mut stream).unwrap();
        assert_eq!((r.status, r.body_text().as_str()), (200, "hello\n"));
    }
    let metrics = host.metrics();
    for name in ["replica-a", "replica-b"] {
        let series = format!(r#"weft_host_http_requests_total{{workload="default/{name}",code="200"}}"#);
        assert_eq!(
            metric_value(&metrics, &series),
            Some(5.0),
            "{name} served half:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_refuses_new_connections() {
    let nats = nats();
    let mut host = start_host(&nats.url(), &["--drain-timeout", "60s"]).await;
    let echo = file_image(weft_test_components::ECHO);
    let s = host
        .client
        .start(
            &host.id,
            &http_workload("w-drain", "echo", &echo, &["drain.test"]),
        )
        .await
        .unwrap();
    assert_eq!(s.workload_state, WorkloadState::Running, "{}", s.message);

    // An in-flight request: the head and half of the body are sent; the component waits for the rest.
    let mut in_flight = connect(host.http).unwrap();
    in_flight
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: drain.test\r\nContent-Length: 10\r\nx-marker: kept\r\n\r\nhello",
        )
        .unwrap();
    wait_until("the request reaches the component", || {
        host.metric("weft_runtime_active_instances").unwrap_or(0.0) >= 1.0
    });

    host.process.signal(libc::SIGTERM);
    // Not ready any more, and the ingress port refuses new connections.
    wait_until("readyz turns 503", || {
        get(host.admin, "/readyz", Some("admin"))
            .map(|r| r.status)
            .unwrap_or(0)
            == 503
    });
    wait_until("new ingress connections are refused", || {
        std::net::TcpStream::connect_timeout(&host.http, Duration::from_millis(200))
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    assert!(host.process.is_running(), "still draining");
    // The control API still answers, but takes no new work.
    let refused = host
        .client
        .start(&host.id, &empty_workload("late"))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("shutting down"), "{refused}");
    let s = host.client.status(&host.id, "w-drain").await.unwrap();
    assert_eq!(s.workload_state, WorkloadState::Running);

    // The in-flight request completes.
    in_flight.write_all(b"world").unwrap();
    let r = read_response(&mut in_flight).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_text(), "helloworld");
    assert_eq!(r.header("x-marker"), Some("kept"));

    let status = host
        .process
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("host did not exit; log:\n{}", host.log()));
    assert!(status.success(), "exit status {status}; log:\n{}", host.log());
    assert!(host.log().contains("ingress drained"), "{}", host.log());
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
