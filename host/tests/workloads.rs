//! Whole wasmCloud workloads on the real `weft-host` binary: linked components, a service with
//! restarts, `wasi:keyvalue` on NATS JetStream and on the filesystem, `wasi:logging`, and the
//! interfaces the heartbeat advertises. Real nats-server (with JetStream), real Wasmtime, components
//! built from `host/test-components`.

mod common;

use std::time::{Duration, Instant};

use common::{file_image, get, nats, start_host};
use weft_host_api::{
    ClientError, Component, LocalResources, Service, StringMap, WitInterface, WorkloadState,
};
use weft_test_components as components;

fn component(name: &str, path: &str) -> Component {
    Component {
        name: name.into(),
        image: file_image(path),
        ..Default::default()
    }
}

fn interface(package: &str, interfaces: &[&str], config: &[(&str, &str)]) -> WitInterface {
    WitInterface {
        namespace: "wasi".into(),
        package: package.into(),
        interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<StringMap>(),
        ..Default::default()
    }
}

/// A start request for `components` (and `service`), served on `hostname`.
fn workload(
    id: &str,
    hostname: &str,
    components: Vec<Component>,
    mut host_interfaces: Vec<WitInterface>,
    service: Option<Service>,
) -> weft_host_api::WorkloadStartRequest {
    host_interfaces.push(interface("http", &["incoming-handler"], &[("host", hostname)]));
    weft_host_api::WorkloadStartRequest {
        workload_id: id.into(),
        workload: Some(weft_host_api::Workload {
            namespace: "default".into(),
            name: id.into(),
            service,
            wit_world: Some(weft_host_api::WitWorld {
                components,
                host_interfaces,
            }),
            ..Default::default()
        }),
    }
}

fn counter_service(env: &[(&str, &str)], max_restarts: u64) -> Service {
    let mut resources = LocalResources::default();
    for (k, v) in env {
        resources.environment.insert(k.to_string(), v.to_string());
    }
    Service {
        image: file_image(components::KV_COUNTER),
        local_resources: Some(resources),
        max_restarts,
        ..Default::default()
    }
}

/// Sends `request`, expects the host's ERROR reply and returns its message.
async fn start_error(host: &common::Host, request: &weft_host_api::WorkloadStartRequest) -> String {
    match host.client.start(&host.id, request).await {
        Err(ClientError::Host { message, .. }) => message,
        other => panic!("expected an ERROR reply, got {other:?}"),
    }
}

/// Polls `check` every 50 ms for up to 20 s.
async fn eventually(what: &str, mut check: impl FnMut() -> Option<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_component_calls_a_library_component_of_its_workload() {
    let nats = nats();
    let host = start_host(&nats.url(), &[]).await;
    let request = workload(
        "linked-1",
        "greet.test",
        vec![
            component("greeter", components::GREETER),
            component("greet-http", components::GREET_HTTP),
        ],
        vec![interface("logging", &["logging"], &[])],
        None,
    );
    let started = host.client.start(&host.id, &request).await.unwrap();
    assert_eq!(
        started.workload_state,
        WorkloadState::Running,
        "{}",
        started.message
    );

    let answer = get(host.http, "/Ann", Some("greet.test")).unwrap();
    assert_eq!(
        (answer.status, answer.body_text().as_str()),
        (200, "Hello, Ann!\n")
    );
    // Calls of one request share the library's instance; the next request gets fresh instances.
    let answer = get(host.http, "/Bo?times=3", Some("greet.test")).unwrap();
    assert_eq!(answer.body_text(), "Hello, Bo!\ncalls: 3\n");
    let answer = get(host.http, "/Bo?times=2", Some("greet.test")).unwrap();
    assert_eq!(answer.body_text(), "Hello, Bo!\ncalls: 2\n");
    assert_eq!(host.metric("weft_runtime_linked_calls_total"), Some(8.0));

    // The library's wasi:logging lines reach the host's log with the workload and component.
    let line = eventually("the greeter's log line", || {
        host.log()
            .lines()
            .find(|l| l.contains("greeting \"Ann\""))
            .map(str::to_string)
    })
    .await;
    assert!(
        line.contains("workload=linked-1") && line.contains("component=\"greeter\""),
        "{line}"
    );
    assert!(line.contains("INFO"), "{line}");
    assert!(
        host.metric("weft_runtime_component_logs_total{level=\"info\"}")
            .unwrap_or(0.0)
            >= 6.0,
        "{}",
        host.metrics()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_nothing_serves_fails_the_start_naming_it() {
    let nats = nats();
    let host = start_host(&nats.url(), &[]).await;
    let request = workload(
        "unlinked-1",
        "greet.test",
        vec![component("greet-http", components::GREET_HTTP)],
        vec![],
        None,
    );
    let message = start_error(&host, &request).await;
    assert!(
            message.contains("greet-http")
                && message.contains("imports weft:test/greeter@0.1.0, which no component of the workload exports and this host does not provide"),
            "{message}"
        );
    assert_eq!(
        host.client
            .status(&host.id, "unlinked-1")
            .await
            .unwrap()
            .workload_state,
        WorkloadState::NotFound
    );
}

/// The service increments `hits`; the HTTP component reads it — through the given backend.
async fn service_and_component_share_a_bucket(backend: &str, extra_args: &[&str]) {
    let nats = nats();
    let host = start_host(&nats.url(), extra_args).await;
    let bucket = format!("hits-{backend}");
    let request = workload(
        "kv-1",
        "kv.test",
        vec![component("kv-http", components::KV_HTTP)],
        vec![interface(
            "keyvalue",
            &["store", "atomics"],
            &[("backend", backend)],
        )],
        Some(counter_service(&[("BUCKET", &bucket), ("INTERVAL_MS", "20")], 0)),
    );
    let started = host.client.start(&host.id, &request).await.unwrap();
    assert_eq!(
        started.workload_state,
        WorkloadState::Running,
        "{}",
        started.message
    );

    let path = format!("/{bucket}/hits");
    let first: u64 = eventually("the service's first increment", || {
        let r = get(host.http, &path, Some("kv.test")).ok()?;
        (r.status == 200).then(|| r.body_text())
    })
    .await
    .trim()
    .parse()
    .unwrap();
    let later: u64 = eventually("more increments", || {
        let text = get(host.http, &path, Some("kv.test")).ok()?.body_text();
        let n: u64 = text.trim().parse().ok()?;
        (n >= first + 5).then_some(text)
    })
    .await
    .trim()
    .parse()
    .unwrap();
    assert!(later > first);

    // The component's own writes, batch reads, listing and atomic increments.
    let put = common::request(
        host.http,
        "PUT",
        &format!("/{bucket}/greeting"),
        "kv.test",
        b"hi there",
    )
    .unwrap();
    assert_eq!(put.status, 204, "{}", put.body_text());
    assert_eq!(
        get(host.http, &format!("/{bucket}/greeting"), Some("kv.test"))
            .unwrap()
            .body_text(),
        "hi there"
    );
    let many = get(
        host.http,
        &format!("/{bucket}?many=greeting,absent"),
        Some("kv.test"),
    )
    .unwrap();
    assert_eq!(many.body_text(), "greeting=hi there\nabsent absent\n");
    assert_eq!(
        get(host.http, &format!("/{bucket}"), Some("kv.test"))
            .unwrap()
            .body_text(),
        "greeting\nhits\n"
    );
    let added = common::request(host.http, "POST", &format!("/{bucket}/n?add=5"), "kv.test", b"").unwrap();
    assert_eq!(added.body_text(), "5\n");
    let deleted = common::request(
        host.http,
        "DELETE",
        &format!("/{bucket}/greeting"),
        "kv.test",
        b"",
    )
    .unwrap();
    assert_eq!(deleted.status, 204);
    assert_eq!(
        get(host.http, &format!("/{bucket}/greeting"), Some("kv.test"))
            .unwrap()
            .status,
        404
    );
    let bad = get(host.http, "/bad.bucket/k", Some("kv.test")).unwrap();
    assert_eq!(bad.status, 500);
    assert!(
        bad.body_text().contains("invalid bucket name"),
        "{}",
        bad.body_text()
    );

    let status = host.client.status(&host.id, "kv-1").await.unwrap();
    assert_eq!(status.workload_state, WorkloadState::Running);
    assert!(status.message.contains("service running"), "{}", status.message);
    let metric = format!(
        "weft_runtime_keyvalue_operations_total{{backend=\"{backend}\",operation=\"increment\",result=\"ok\"}}"
    );
    assert!(host.metric(&metric).unwrap_or(0.0) >= 5.0, "{}", host.metrics());

    // Stopping the workload stops the service: the counter stands still.
    host.client.stop(&host.id, "kv-1").await.unwrap();
    let stopped_at = read_counter(backend, &host, &nats, &bucket).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(read_counter(backend, &host, &nats, &bucket).await, stopped_at);
}

/// The counter's value read straight from the backend (the workload is gone).
async fn read_counter(
    backend: &str,
    host: &common::Host,
    nats: &weft_testkit::NatsServer,
    bucket: &str,
) -> String {
    match backend {
        "nats" => {
            let client = async_nats::connect(nats.url()).await.unwrap();
            let kv = async_nats::jetstream::new(client)
                .get_key_value(bucket)
                .await
                .unwrap();
            String::from_utf8(kv.get("hits").await.unwrap().unwrap().to_vec()).unwrap()
        }
        _ => {
            std::fs::read_to_string(host.dir.path().join("cache/keyvalue").join(bucket).join("hits")).unwrap()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_and_a_component_share_keyvalue_on_nats_jetstream() {
    service_and_component_share_a_bucket("nats", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_and_a_component_share_keyvalue_on_the_filesystem() {
    service_and_component_share_a_bucket("filesystem", &["--keyvalue-backend", "none"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_service_is_restarted_up_to_max_restarts_then_reported() {
    let nats = nats();
    let host = start_host(
        &nats.url(),
        &[
            "--keyvalue-backend",
            "filesystem",
            "--service-restart-backoff",
            "50ms",
        ],
    )
    .await;
    let request = workload(
        "svc-1",
        "svc.test",
        vec![component("kv-http", components::KV_HTTP)],
        vec![],
        Some(counter_service(
            &[("BUCKET", "restarts"), ("EXIT_AFTER", "2"), ("INTERVAL_MS", "10")],
            2,
        )),
    );
    let started = host.client.start(&host.id, &request).await.unwrap();
    assert_eq!(
        started.workload_state,
        WorkloadState::Running,
        "{}",
        started.message
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let message = loop {
        let status = host.client.status(&host.id, "svc-1").await.unwrap();
        if status.workload_state == WorkloadState::Error {
            break status.message;
        }
        assert!(
            Instant::now() < deadline,
            "the service never failed for good: {}",
            status.message
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        message.contains("service failed after 2 of 2 restarts: exited with code 1"),
        "{message}"
    );
    // Three runs of two increments each; the components still serve.
    let hits = get(host.http, "/restarts/hits", Some("svc.test")).unwrap();
    assert_eq!(hits.body_text(), "6");
    assert_eq!(
        host.metric("weft_runtime_service_exits_total{result=\"error\"}"),
        Some(2.0)
    );
    assert_eq!(
        host.metric("weft_runtime_service_exits_total{result=\"failed\"}"),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_only_workload_that_exits_cleanly_is_completed() {
    let nats = nats();
    let host = start_host(&nats.url(), &["--keyvalue-backend", "filesystem"]).await;
    let service = counter_service(&[("BUCKET", "done"), ("EXIT_AFTER", "3"), ("EXIT_CODE", "0")], 5);
    let request = workload("svc-only", "svc-only.test", vec![], vec![], Some(service));
    let started = host.client.start(&host.id, &request).await.unwrap();
    assert_eq!(
        started.workload_state,
        WorkloadState::Running,
        "{}",
        started.message
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = host.client.status(&host.id, "svc-only").await.unwrap();
        if status.workload_state != WorkloadState::Running {
            break status;
        }
        assert!(Instant::now() < deadline, "never completed: {}", status.message);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        status.workload_state,
        WorkloadState::Completed,
        "{}",
        status.message
    );
    assert!(
        status.message.contains("service completed (exit code 0)"),
        "{}",
        status.message
    );
    // Not restarted: one run of three increments.
    let hits = host.dir.path().join("cache/keyvalue/done/hits");
    assert_eq!(std::fs::read_to_string(hits).unwrap(), "3");
    assert_eq!(
        host.metric("weft_runtime_service_exits_total{result=\"ok\"}"),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_advertises_what_the_linker_provides() {
    let nats = nats();
    let host = start_host(&nats.url(), &[]).await;
    let hb = &host.first_heartbeat;
    let find = |package: &str| {
        hb.imports
            .iter()
            .find(|i| i.namespace == "wasi" && i.package == package)
    };
    let keyvalue = find("keyvalue").expect("wasi:keyvalue advertised");
    assert_eq!(keyvalue.version, "0.2.0-draft");
    assert_eq!(
        keyvalue.interfaces,
        ["atomics", "batch", "store"],
        "watcher is not provided"
    );
    assert_eq!(find("logging").expect("wasi:logging").interfaces, ["logging"]);
    let config = hb
        .imports
        .iter()
        .find(|i| i.package == "config" && i.version == "0.2.0-draft")
        .unwrap();
    assert_eq!(
        config.interfaces,
        ["store"],
        "wasi:config/runtime is not provided"
    );
    assert!(find("blobstore").is_none(), "wasi:blobstore is not provided");
    assert!(
        find("http")
            .unwrap()
            .interfaces
            .contains(&"outgoing-handler".to_string())
    );
    let exports: Vec<String> = hb
        .exports
        .iter()
        .flat_map(|e| {
            e.interfaces
                .iter()
                .map(move |i| format!("{}:{}/{i}", e.namespace, e.package))
        })
        .collect();
    assert_eq!(exports, ["wasi:http/incoming-handler", "wasi:cli/run"]);
}

/// A TCP server on a loopback port answering each line with `pong <line>`.
fn pong_server() -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut line).is_ok() {
                let _ = (&stream).write_all(format!("pong {line}").as_bytes());
            }
        }
    });
    port
}

fn socket_workload(
    id: &str,
    hostname: &str,
    ports: &[String],
    lookups: &[&str],
) -> weft_host_api::WorkloadStartRequest {
    let mut c = component("tcp-client", components::TCP_CLIENT);
    let resources = c.local_resources.get_or_insert_with(LocalResources::default);
    resources.allowed_host_loopback_ports = ports.to_vec();
    resources.allowed_ip_name_lookups = lookups.iter().map(|s| s.to_string()).collect();
    workload(id, hostname, vec![c], vec![], None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_denied_unless_the_component_and_the_host_allow_them() {
    let port = pong_server();
    let other = pong_server();
    let nats = nats();
    let open = start_host(&nats.url(), &["--allow-host-loopback"]).await;
    let closed = start_host(&nats.url(), &[]).await;
    let allowed = [port.to_string()];
    for host in [&open, &closed] {
        let s = host
            .client
            .start(&host.id, &socket_workload("tcp-1", "tcp.test", &allowed, &[]))
            .await
            .unwrap();
        assert_eq!(s.workload_state, WorkloadState::Running, "{}", s.message);
        let s = host
            .client
            .start(&host.id, &socket_workload("tcp-2", "none.test", &[], &[]))
            .await
            .unwrap();
        assert_eq!(s.workload_state, WorkloadState::Running, "{}", s.message);
    }
    let call = |host: &common::Host, hostname: &str, target: u16| {
        get(host.http, &format!("/?addr=127.0.0.1:{target}"), Some(hostname)).unwrap()
    };
    // Allowed by the component and the host: the listed port answers.
    let r = call(&open, "tcp.test", port);
    assert_eq!((r.status, r.body_text().as_str()), (200, "reply: pong ping\n"));
    // Any other port, a component listing none, or a host without --allow-host-loopback: denied.
    for (host, hostname, target) in [
        (&open, "tcp.test", other),
        (&open, "none.test", port),
        (&closed, "tcp.test", port),
    ] {
        let r = call(host, hostname, target);
        assert_eq!(r.status, 502, "{hostname} → {target}: {}", r.body_text());
        assert!(r.body_text().starts_with("connect failed"), "{}", r.body_text());
    }
    // Name lookups: denied unless `*`; narrower entries are refused at start.
    let r = get(open.http, "/?lookup=localhost", Some("none.test")).unwrap();
    assert_eq!(r.status, 502, "{}", r.body_text());
    let s = open
        .client
        .start(&open.id, &socket_workload("tcp-3", "lookup.test", &[], &["*"]))
        .await
        .unwrap();
    assert_eq!(s.workload_state, WorkloadState::Running, "{}", s.message);
    let r = get(open.http, "/?lookup=localhost", Some("lookup.test")).unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert!(
        r.body_text().contains("127.0.0.1") || r.body_text().contains("::1"),
        "{}",
        r.body_text()
    );
    let bad = socket_workload("tcp-4", "bad.test", &["1-5".into()], &["db.example"]);
    let message = start_error(&open, &bad).await;
    assert!(
        message.contains("\"1-5\"") && message.contains("all or nothing"),
        "{message}"
    );
}
