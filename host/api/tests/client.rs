//! The typed client against a real nats-server: error mapping (no responders, timeout, undecodable
//! reply, host ERROR) and the heartbeat stream dropping malformed payloads.
//!
//! The peer answering requests here is a plain NATS subscriber written by the test; the contract with
//! the real host is tested in the `weft-host` crate against the `weft-host` binary.

use std::time::Duration;

use futures::StreamExt;
use weft_host_api::*;
use weft_testkit::NatsServer;

async fn connect(nats: &NatsServer) -> async_nats::Client {
    async_nats::connect(nats.url())
        .await
        .expect("connect to nats-server")
}

/// Waits until the server has registered `client`'s subscriptions.
async fn registered(client: &async_nats::Client) {
    server_round_trip(client, Duration::from_secs(10))
        .await
        .expect("round trip through nats-server");
}

/// Answers every request on `subject` with `reply`, forever.
async fn responder(client: async_nats::Client, subject: String, reply: &'static [u8]) {
    let mut sub = client.subscribe(subject).await.unwrap();
    registered(&client).await;
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(to) = msg.reply {
                client.publish(to, reply.into()).await.unwrap();
            }
        }
    });
}

#[tokio::test]
async fn request_errors_are_classified() {
    let nats = NatsServer::start().expect("start nats-server");
    let peer = connect(&nats).await;
    let client = HostClient::new(connect(&nats).await).with_timeouts(Timeouts {
        status: Duration::from_millis(300),
        ..Timeouts::default()
    });

    // Nobody subscribed: NATS answers "no responders" at once.
    let err = client.heartbeat("nobody").await.unwrap_err();
    assert!(
        matches!(err, ClientError::NoResponders { ref subject } if subject == "runtime.host.nobody.heartbeat"),
        "{err}"
    );
    assert!(err.is_transient());

    // A subscriber that never answers: the per-command timeout applies.
    let _silent = peer
        .subscribe("runtime.host.silent.workload.status")
        .await
        .unwrap();
    registered(&peer).await;
    let err = client.status("silent", "w1").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Timeout { timeout, .. } if timeout == Duration::from_millis(300)),
        "{err}"
    );

    // Garbage: a decode error quoting the payload.
    responder(
        peer.clone(),
        "runtime.host.garbage.heartbeat".into(),
        b"<html>oops</html>",
    )
    .await;
    let err = client.heartbeat("garbage").await.unwrap_err();
    match &err {
        ClientError::Decode { snippet, .. } => assert_eq!(snippet, "<html>oops</html>"),
        other => panic!("expected a decode error, got {other}"),
    }
    assert!(err.to_string().contains("<html>oops</html>"), "{err}");

    // A host ERROR reply carries the host's message.
    responder(
        peer.clone(),
        "runtime.host.h1.workload.start".into(),
        br#"{"workloadStatus":{"workloadId":"w1","workloadState":"WORKLOAD_STATE_ERROR","message":"Workload ID [w1] already exists"}}"#,
    )
    .await;
    let req = WorkloadStartRequest {
        workload_id: "w1".into(),
        workload: Some(Workload::default()),
    };
    let err = client.start("h1", &req).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Host { workload_id, message, .. } if workload_id == "w1" && message == "Workload ID [w1] already exists"),
        "{err}"
    );

    // A reply without a status.
    responder(peer.clone(), "runtime.host.h1.workload.stop".into(), b"{}").await;
    let err = client.stop("h1", "w1").await.unwrap_err();
    assert!(matches!(err, ClientError::MissingStatus { .. }), "{err}");

    // NOT_FOUND is a normal answer to status.
    responder(
        peer.clone(),
        "runtime.host.h1.workload.status".into(),
        br#"{"workloadStatus":{"workloadId":"w9","workloadState":"WORKLOAD_STATE_NOT_FOUND"}}"#,
    )
    .await;
    let status = client.status("h1", "w9").await.unwrap();
    assert_eq!(status.workload_state, WorkloadState::NotFound);
}

#[tokio::test]
async fn requests_carry_canonical_json() {
    let nats = NatsServer::start().expect("start nats-server");
    let peer = connect(&nats).await;
    let client = HostClient::new(connect(&nats).await);
    let mut sub = peer.subscribe("runtime.host.h2.>").await.unwrap();
    registered(&peer).await;

    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let msg = sub.next().await.unwrap();
            seen.push((
                msg.subject.to_string(),
                String::from_utf8(msg.payload.to_vec()).unwrap(),
            ));
            let body: &[u8] = if msg.subject.ends_with("heartbeat") {
                br#"{"id":"h2","workloadCount":"1"}"#
            } else {
                br#"{"workloadStatus":{"workloadId":"w1","workloadState":"WORKLOAD_STATE_STOPPING","message":"stopped successfully"}}"#
            };
            peer.publish(msg.reply.unwrap(), body.into()).await.unwrap();
            // The last client handle goes away with this task: make sure the reply left first.
            peer.flush().await.unwrap();
        }
        seen
    });

    let hb = client.heartbeat("h2").await.unwrap();
    assert_eq!((hb.id.as_str(), hb.workload_count), ("h2", 1));
    let stopped = client.stop("h2", "w1").await.unwrap();
    assert_eq!(stopped.workload_state, WorkloadState::Stopping);

    let seen = task.await.unwrap();
    assert_eq!(
        seen[0],
        ("runtime.host.h2.heartbeat".to_string(), "{}".to_string())
    );
    assert_eq!(
        seen[1],
        (
            "runtime.host.h2.workload.stop".to_string(),
            r#"{"workloadId":"w1"}"#.to_string()
        )
    );
}

#[tokio::test]
async fn heartbeat_stream_counts_and_drops_malformed_payloads() {
    let nats = NatsServer::start().expect("start nats-server");
    let publisher = connect(&nats).await;
    let client = HostClient::new(connect(&nats).await);
    let mut heartbeats = client.subscribe_heartbeats().await.unwrap();
    let counter = heartbeats.malformed_counter();

    let sends: [(&str, &[u8]); 6] = [
        (
            "runtime.operator.heartbeat.h1",
            br#"{"id":"h1","hostname":"10.0.0.1","httpPort":9191}"#,
        ),
        ("runtime.operator.heartbeat.h1", b"{not json"),
        ("runtime.operator.heartbeat.h1", br#"{"id":"someone-else"}"#),
        ("runtime.operator.heartbeat.h1.extra", br#"{"id":"h1"}"#),
        (
            "runtime.operator.heartbeat.h2",
            br#"{"id":"h2","workloadCount":7}"#,
        ),
        (
            "runtime.operator.heartbeat.h1",
            br#"{"id":"h1","workloadCount":"x"}"#,
        ),
    ];
    for (subject, payload) in sends {
        publisher.publish(subject, payload.into()).await.unwrap();
    }
    publisher
        .publish(
            "runtime.operator.heartbeat.h3",
            br#"{"id":"h3"}"#.as_slice().into(),
        )
        .await
        .unwrap();
    publisher.flush().await.unwrap();

    let mut got = Vec::new();
    for _ in 0..3 {
        let hb = tokio::time::timeout(Duration::from_secs(10), heartbeats.next())
            .await
            .unwrap()
            .unwrap();
        got.push(hb);
    }
    assert_eq!(
        got.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        ["h1", "h2", "h3"]
    );
    assert_eq!(got[0].http_port, 9191);
    assert_eq!(got[1].workload_count, 7);
    assert_eq!(heartbeats.malformed_count(), 4);
    assert_eq!(counter.get(), 4);
}
