//! What the scenario tests share: a mocked apiserver that answers one expected request at a time.
#![allow(dead_code)]

use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::Handle;

/// The apiserver side of a mocked client.
pub type Mock = Handle<Request<Body>, Response<Body>>;

/// Answers the next request: checks its method and path, returns its JSON body.
pub async fn expect(handle: &mut Mock, method: Method, path: &str, status: u16, reply: Value) -> Value {
    let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("expected {method} {path}, but no request came"))
        .expect("the client is alive");
    assert_eq!(request.method(), method, "{}", request.uri());
    assert_eq!(request.uri().path(), path);
    let body = request.into_body().collect_bytes().await.unwrap();
    let sent = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
            .unwrap(),
    );
    sent
}

pub async fn expect_nothing_more(handle: &mut Mock) {
    if let Ok(Some((request, _))) =
        tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await
    {
        panic!("unexpected request {} {}", request.method(), request.uri());
    }
}

pub fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

pub fn condition<'a>(patch: &'a Value, type_: &str) -> &'a Value {
    patch["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {patch}"))
}

/// A `409 Conflict` Status.
pub fn conflict() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"})
}

/// Answers the next request, which must write an Event (events.k8s.io/v1) in `namespace`; returns
/// the Event sent.
pub async fn expect_event(handle: &mut Mock, namespace: &str) -> Value {
    let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("expected an Event, but no request came")
        .expect("the client is alive");
    let prefix = format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events");
    assert!(
        request.uri().path().starts_with(&prefix),
        "expected an Event, got {} {}",
        request.method(),
        request.uri()
    );
    let body = request.into_body().collect_bytes().await.unwrap();
    let sent: Value = serde_json::from_slice(&body).unwrap();
    send.send_response(
        Response::builder()
            .status(201)
            .body(Body::from(serde_json::to_vec(&sent).unwrap()))
            .unwrap(),
    );
    sent
}
