//! Contract tests of the NATS control API: the real `weft-host` binary against a real nats-server,
//! driven through the typed client the operator uses (and raw NATS where the test needs bytes the
//! client would never send).

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use weft_host_api::{ClientError, Command, HostHeartbeat, WorkloadState, subjects};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_announce_the_host_at_start_on_interval_and_on_request() {
    let nats = nats();
    let host = start_host(&nats.url(), &["--heartbeat-interval", "1s", "--label", "zone=z1"]).await;

    // The first heartbeat (published at start, before any interval elapsed) identifies the host.
    let hb = &host.first_heartbeat;
    assert_eq!(uuid_version(&hb.id), Some(4), "host id is a UUIDv4: {}", hb.id);
    assert_eq!(hb.hostname, "127.0.0.1");
    assert_eq!(hb.labels.get("hostgroup").map(String::as_str), Some("test-group"));
    assert_eq!(hb.labels.get("zone").map(String::as_str), Some("z1"));
    assert_eq!(hb.environment, "test-env");
    assert_eq!(hb.http_port, u32::from(host.http.port()));
    assert_eq!(hb.workload_count, 0);
    assert_eq!(hb.os_name, std::env::consts::OS);
    assert!(!hb.os_kernel.is_empty() && !hb.version.is_empty() && hb.started_at.is_some());
    assert!(hb.system_memory_total > 0 && hb.system_memory_free <= hb.system_memory_total);
    assert_eq!(hb.friendly_name.split('-').count(), 3, "{}", hb.friendly_name);
    assert!(hb.exports.iter().any(|i| i.is_http_incoming_handler()));

    // Then one per interval.
    let mut sub = host
        .nats
        .subscribe(subjects::heartbeat_subject(&host.id))
        .await
        .unwrap();
    registered(&host.nats).await;
    let next = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("periodic heartbeat")
        .unwrap();
    let periodic: HostHeartbeat = weft_host_api::from_json(&next.payload).unwrap();
    assert_eq!(periodic.id, host.id);
    assert_eq!(periodic.started_at, hb.started_at);

    // And on request, with the live workload count.
    host.client
        .start(&host.id, &empty_workload("hb-w1"))
        .await
        .unwrap();
    let replied = host.client.heartbeat(&host.id).await.unwrap();
    assert_eq!(
        (replied.id.as_str(), replied.workload_count),
        (host.id.as_str(), 1)
    );
    // An empty body (as wasmCloud's own tests send) is fine too.
    let raw = host
        .nats
        .request(subjects::command_subject(&host.id, Command::Heartbeat), "".into())
        .await
        .unwrap();
    assert_eq!(
        weft_host_api::from_json::<HostHeartbeat>(&raw.payload)
            .unwrap()
            .id,
        host.id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_status_stop_follow_wasmcloud_semantics() {
    let nats = nats();
    let host = start_host(&nats.url(), &[]).await;
    let c = &host.client;
    let id = "contract-w1";

    // Unknown IDs: NOT_FOUND for status and stop, echoing the ID, creating nothing.
    let s = c.status(&host.id, id).await.unwrap();
    assert_eq!(
        (s.workload_state, s.workload_id.as_str()),
        (WorkloadState::NotFound, id)
    );
    let s = c.stop(&host.id, id).await.unwrap();
    assert_eq!(
        (s.workload_state, s.workload_id.as_str()),
        (WorkloadState::NotFound, id)
    );
    assert_eq!(
        c.status(&host.id, id).await.unwrap().workload_state,
        WorkloadState::NotFound
    );

    // Start → RUNNING → status RUNNING.
    let s = c.start(&host.id, &empty_workload(id)).await.unwrap();
    assert_eq!(
        (s.workload_state, s.workload_id.as_str()),
        (WorkloadState::Running, id),
        "{}",
        s.message
    );
    assert_eq!(
        c.status(&host.id, id).await.unwrap().workload_state,
        WorkloadState::Running
    );

    // Start twice with a live ID → ERROR "already exists", echoing the ID; the first is untouched.
    match c.start(&host.id, &empty_workload(id)).await.unwrap_err() {
        ClientError::Host {
            workload_id, message, ..
        } => {
            assert_eq!(workload_id, id);
            assert!(
                message.contains(&format!("Workload ID [{id}] already exists")),
                "{message}"
            );
        }
        other => panic!("expected an ERROR reply, got {other}"),
    }
    assert_eq!(
        c.status(&host.id, id).await.unwrap().workload_state,
        WorkloadState::Running
    );

    // Stop → STOPPING "stopped successfully" → NOT_FOUND afterwards; the ID is reusable.
    let s = c.stop(&host.id, id).await.unwrap();
    assert_eq!(s.workload_state, WorkloadState::Stopping);
    assert_eq!(s.message, "stopped successfully");
    assert_eq!(
        c.status(&host.id, id).await.unwrap().workload_state,
        WorkloadState::NotFound
    );
    assert_eq!(
        c.start(&host.id, &empty_workload(id))
            .await
            .unwrap()
            .workload_state,
        WorkloadState::Running
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_image_reference_fails_the_start_with_a_message_and_frees_the_id() {
    let nats = nats();
    let host = start_host(&nats.url(), &[]).await;
    let c = &host.client;

    for (id, image, needle) in [
        ("bad-ref", "not a valid reference!", "not a valid reference!"),
        // A closed local port: the pull fails fast with a connection error.
        (
            "unreachable",
            "127.0.0.1:1/nope:latest",
            "127.0.0.1:1/nope:latest",
        ),
        (
            "missing-file",
            "file:///definitely/not/here.wasm",
            "/definitely/not/here.wasm",
        ),
    ] {
        let req = http_workload(id, "broken", image, &["broken.example"]);
        match c.start(&host.id, &req).await.unwrap_err() {
            ClientError::Host {
                workload_id, message, ..
            } => {
                assert_eq!(workload_id, id);
                assert!(
                    message.contains(needle),
                    "{id}: message should name {needle:?}: {message}"
                );
            }
            other => panic!("{id}: expected an ERROR reply, got {other}"),
        }
        // The failed start did not consume the ID.
        assert_eq!(
            c.status(&host.id, id).await.unwrap().workload_state,
            WorkloadState::NotFound
        );
        assert_eq!(
            c.start(&host.id, &empty_workload(id))
                .await
                .unwrap()
                .workload_state,
            WorkloadState::Running
        );
    }

    // A workload bound to HTTP without a hostname is refused before anything is fetched.
    let req = http_workload("no-host", "nohost", "file:///whatever.wasm", &[]);
    let err = c.start(&host.id, &req).await.unwrap_err();
    assert!(err.to_string().contains("`host`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_an_error_reply_and_are_counted() {
    let nats = nats();
    let host = start_host(&nats.url(), &[]).await;

    for command in [
        Command::WorkloadStart,
        Command::WorkloadStatus,
        Command::WorkloadStop,
    ] {
        let subject = subjects::command_subject(&host.id, command);
        let reply = host
            .nats
            .request(subject, "{\"workloadId\": \"w-bad\", oops".into())
            .await
            .unwrap();
        let status = weft_host_api::from_json::<weft_host_api::WorkloadStatusResponse>(&reply.payload)
            .expect("the reply is a well-formed status response")
            .workload_status
            .unwrap();
        assert_eq!(status.workload_state, WorkloadState::Error);
        assert!(
            status
                .message
                .starts_with(&format!("malformed {command} request")),
            "{}",
            status.message
        );
        assert!(
            status.message.contains("oops"),
            "quotes the payload: {}",
            status.message
        );
    }
    // Valid JSON of the wrong shape: the ID is echoed when it can be read.
    let subject = subjects::command_subject(&host.id, Command::WorkloadStart);
    let reply = host
        .nats
        .request(
            subject,
            r#"{"workloadId":"w-9","workload":"not an object"}"#.into(),
        )
        .await
        .unwrap();
    let status = weft_host_api::from_json::<weft_host_api::WorkloadStartResponse>(&reply.payload)
        .unwrap()
        .workload_status
        .unwrap();
    assert_eq!(
        (status.workload_state, status.workload_id.as_str()),
        (WorkloadState::Error, "w-9")
    );

    let metrics = host.metrics();
    assert_eq!(
        metric_value(
            &metrics,
            r#"weft_host_nats_malformed_requests_total{command="workload.start"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            r#"weft_host_nats_malformed_requests_total{command="workload.status"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            r#"weft_host_nats_malformed_requests_total{command="workload.stop"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_commands_get_no_reply_and_are_counted() {
    let nats = nats();
    let host = start_host(&nats.url(), &[]).await;
    let subject = format!("runtime.host.{}.workload.restart", host.id);
    let request = async_nats::Request::new()
        .payload("{}".into())
        .timeout(Some(Duration::from_millis(500)));
    let err = host.nats.send_request(subject, request).await.unwrap_err();
    // The host is subscribed (so this is not "no responders") but does not answer.
    assert_eq!(err.kind(), async_nats::RequestErrorKind::TimedOut, "{err}");
    assert_eq!(host.metric("weft_host_nats_unknown_commands_total"), Some(1.0));
    assert!(host.log().contains("unknown command"), "logged");
    // The host still serves known commands.
    assert_eq!(host.client.heartbeat(&host.id).await.unwrap().id, host.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_reconnects_after_the_nats_server_restarts() {
    let mut nats = nats();
    let port = nats.port();
    let host = start_host(&nats.url(), &["--heartbeat-interval", "1h"]).await;
    host.client
        .start(&host.id, &empty_workload("survivor"))
        .await
        .unwrap();

    nats.stop();
    // Still ready (workloads keep serving), and saying why it is degraded.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = get(host.admin, "/readyz", Some("admin")).unwrap();
        assert_eq!(r.status, 200, "{}", r.body_text());
        if r.body_text().contains("NATS connection lost") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lost connection was never noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let restarted =
        weft_testkit::NatsServer::start_on_port(port).expect("restart nats-server on the same port");
    // The host announces itself as soon as it is back, not only at its next (1h) interval.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while host.metric("weft_host_heartbeats_published_total") != Some(2.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "no heartbeat after reconnect; log:\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut process = host.process;
    wait_ready(&mut process, host.admin).await;

    // Its control subscription is back and its state survived the outage.
    let client = weft_host_api::HostClient::new(async_nats::connect(restarted.url()).await.unwrap());
    let hb = client.heartbeat(&host.id).await.unwrap();
    assert_eq!((hb.id.as_str(), hb.workload_count), (host.id.as_str(), 1));
    let s = client.status(&host.id, "survivor").await.unwrap();
    assert_eq!(s.workload_state, WorkloadState::Running);
}

fn uuid_version(id: &str) -> Option<u8> {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    (hex.len() == 32 && id.len() == 36)
        .then(|| u8::from_str_radix(&hex[12..13], 16).ok())
        .flatten()
}
