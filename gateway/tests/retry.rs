//! Which failed requests the gateway sends once more to another host, over real loopback TCP: one
//! upstream reads each request and closes the connection without answering (a host that died under
//! the request), the other answers. A safe request without a body still gets its answer; a `POST`,
//! which may have had its effect on the host that died, gets `502`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

mod support;

const HOSTNAME: &str = "retry.gw.test";

type TestBody = BoxBody<Bytes, Infallible>;

/// An upstream that reads a request head and then drops the connection without a byte of answer.
async fn start_dying_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                drop(stream);
            });
        }
    });
    addr
}

/// An upstream that answers every request `200 alive`.
async fn start_live_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"alive"))))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// Sends `method` (with a body when `body` is set) to the gateway on a new connection.
async fn send(gateway: SocketAddr, method: &str, body: Option<&'static [u8]>) -> StatusCode {
    let stream = TcpStream::connect(gateway).await.expect("connect to the gateway");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let body: TestBody = match body {
        Some(b) => Full::new(Bytes::from_static(b)).boxed(),
        None => Empty::new().boxed(),
    };
    let req = Request::builder()
        .method(method)
        .uri("/")
        .header(http::header::HOST, HOSTNAME)
        .body(body)
        .expect("a request");
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("an answer within 10 s")
        .expect("a response");
    response.status()
}

/// Sends `n` requests; round robin gives half of them to the dying host first.
async fn statuses(
    gateway: SocketAddr,
    method: &str,
    body: Option<&'static [u8]>,
    n: usize,
) -> Vec<StatusCode> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(send(gateway, method, body).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_request_whose_host_closes_the_connection_unanswered_is_answered_by_another_host() {
    let dying = start_dying_upstream().await;
    let live = start_live_upstream().await;
    let (gateway, _stop) = support::start_gateway(support::table_to(HOSTNAME, &[dying, live])).await;
    for method in ["GET", "HEAD"] {
        let got = statuses(gateway, method, None, 6).await;
        assert!(
            got.iter().all(|s| *s == StatusCode::OK),
            "every {method} is answered by the live host: {got:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_may_have_had_its_effect_is_not_sent_twice() {
    let dying = start_dying_upstream().await;
    let live = start_live_upstream().await;
    let (gateway, _stop) = support::start_gateway(support::table_to(HOSTNAME, &[dying, live])).await;
    for (method, body) in [("POST", None), ("GET", Some(&b"payload"[..]))] {
        let got = statuses(gateway, method, body, 6).await;
        let bad_gateway = got.iter().filter(|s| **s == StatusCode::BAD_GATEWAY).count();
        let ok = got.iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(
            (bad_gateway, ok),
            (3, 3),
            "{method} (body: {}) reaching the dying host is not retried: {got:?}",
            body.is_some()
        );
    }
}
