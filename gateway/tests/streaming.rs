//! Bodies stream through the gateway in both directions, over real loopback TCP: the gateway's own
//! listener and request path in front of a real hyper upstream. Each test is built so that a gateway
//! that buffered a body would deadlock: the upstream holds back the rest of a body until the client
//! has seen its first bytes (or the other way round), and a bounded wait turns the deadlock into a
//! failure that says so.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt;
use futures::channel::mpsc;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, oneshot};

mod support;

const HOSTNAME: &str = "stream.gw.test";
/// How long a test waits for a chunk that a streaming gateway forwards at once.
const CHUNK_WAIT: Duration = Duration::from_secs(10);

type TestBody = BoxBody<Bytes, Infallible>;
type Signal = Arc<Mutex<Option<oneshot::Sender<()>>>>;

/// What the upstream signals to, and waits for from, the test.
#[derive(Clone, Default)]
struct Rendezvous {
    /// Fired by the upstream when it has read the first chunk of a request body.
    upstream_got_first: Signal,
    /// Awaited by the upstream before it sends the rest of a response body.
    client_got_first: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
}

fn channel_body() -> (mpsc::Sender<Result<Frame<Bytes>, Infallible>>, TestBody) {
    let (tx, rx) = mpsc::channel(4);
    (tx, BodyExt::boxed(StreamBody::new(rx)))
}

/// The upstream's three endpoints.
async fn upstream_handle(req: Request<Incoming>, meet: Rendezvous) -> Response<TestBody> {
    match req.uri().path() {
        // Sends "first", waits until the client has it, then sends "second".
        "/held-response" => {
            let (mut tx, body) = channel_body();
            let client_got_first = meet.client_got_first.lock().await.take();
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"first")))).await;
                if let Some(rx) = client_got_first {
                    let _ = rx.await;
                }
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"second")))).await;
            });
            Response::new(body)
        }
        // Reads the first chunk, says so, then reads the rest and answers with the byte count.
        "/held-request" => {
            let mut body = req.into_body();
            let mut total = 0usize;
            let mut said = false;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Some(data) = frame.data_ref() {
                    total += data.len();
                    if !said {
                        said = true;
                        if let Some(tx) = meet.upstream_got_first.lock().await.take() {
                            let _ = tx.send(());
                        }
                    }
                }
            }
            Response::new(
                http_body_util::Full::new(Bytes::from(total.to_string()))
                    .map_err(|e| match e {})
                    .boxed(),
            )
        }
        // Streams the request body back frame by frame.
        _ => {
            let (mut tx, body) = channel_body();
            tokio::spawn(async move {
                let mut incoming = req.into_body();
                while let Some(Ok(frame)) = incoming.frame().await {
                    if let Ok(data) = frame.into_data()
                        && tx.send(Ok(Frame::data(data))).await.is_err()
                    {
                        break;
                    }
                }
            });
            Response::new(body)
        }
    }
}

async fn start_upstream(meet: Rendezvous) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let meet = meet.clone();
            let service = hyper::service::service_fn(move |req| {
                let meet = meet.clone();
                async move { Ok::<_, Infallible>(upstream_handle(req, meet).await) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// An HTTP/1.1 connection to the gateway.
async fn client(gateway: SocketAddr) -> hyper::client::conn::http1::SendRequest<TestBody> {
    let stream = TcpStream::connect(gateway).await.expect("connect to the gateway");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

fn request(path: &str, body: TestBody) -> Request<TestBody> {
    Request::builder()
        .method(if path == "/held-response" { "GET" } else { "POST" })
        .uri(path)
        .header(http::header::HOST, HOSTNAME)
        .body(body)
        .expect("a request")
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(CHUNK_WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} (after {CHUNK_WAIT:?}): the gateway held the body back"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_reaches_the_client_while_the_upstream_is_still_sending_it() {
    let meet = Rendezvous::default();
    let (got_first_tx, got_first_rx) = oneshot::channel();
    *meet.client_got_first.lock().await = Some(got_first_rx);
    let upstream = start_upstream(meet).await;
    let (gateway, _stop) = support::start_gateway(support::table_to(HOSTNAME, &[upstream])).await;

    let mut sender = client(gateway).await;
    let response = within(
        "the response head",
        sender.send_request(request("/held-response", Empty::new().boxed())),
    )
    .await
    .expect("a response");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = within("the first chunk", body.frame())
        .await
        .expect("a frame")
        .expect("no error")
        .into_data()
        .expect("data");
    assert_eq!(&first[..], b"first");
    got_first_tx.send(()).expect("the upstream waits");
    let rest = within("the rest", body.collect())
        .await
        .expect("the rest")
        .to_bytes();
    assert_eq!(&rest[..], b"second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_reaches_the_upstream_while_the_client_is_still_sending_it() {
    let meet = Rendezvous::default();
    let (upstream_tx, upstream_rx) = oneshot::channel();
    *meet.upstream_got_first.lock().await = Some(upstream_tx);
    let upstream = start_upstream(meet).await;
    let (gateway, _stop) = support::start_gateway(support::table_to(HOSTNAME, &[upstream])).await;

    let (mut tx, body) = channel_body();
    let mut sender = client(gateway).await;
    let response = tokio::spawn(sender.send_request(request("/held-request", body)));
    tx.send(Ok(Frame::data(Bytes::from_static(b"0123456789"))))
        .await
        .expect("send the first chunk");
    within("the upstream reading the first chunk", upstream_rx)
        .await
        .expect("the upstream signals");
    tx.send(Ok(Frame::data(Bytes::from(vec![b'x'; 90]))))
        .await
        .expect("send the rest");
    drop(tx);
    let response = within("the response", response)
        .await
        .expect("the request task")
        .expect("a response");
    assert_eq!(response.status(), 200);
    let count = response.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&count[..], b"100", "every byte of the request body arrived");
}

/// The byte at offset `i` of the large body (not periodic in any power of two, so a lost or repeated
/// chunk shows).
fn pattern(i: usize) -> u8 {
    ((i * 31 + 7) % 251) as u8
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_goes_through_and_back_intact() {
    const TOTAL: usize = 32 << 20;
    const CHUNK: usize = 64 << 10;
    let upstream = start_upstream(Rendezvous::default()).await;
    let (gateway, _stop) = support::start_gateway(support::table_to(HOSTNAME, &[upstream])).await;

    let (mut tx, body) = channel_body();
    let mut sender = client(gateway).await;
    let response = tokio::spawn(sender.send_request(request("/echo", body)));
    let sending = tokio::spawn(async move {
        for start in (0..TOTAL).step_by(CHUNK) {
            let chunk: Vec<u8> = (start..start + CHUNK).map(pattern).collect();
            if tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.is_err() {
                break;
            }
        }
    });
    let response = within("the echo response head", response)
        .await
        .expect("the request task")
        .expect("a response");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut offset = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.expect("no body error").into_data() else {
            continue;
        };
        for (k, b) in data.iter().enumerate() {
            assert_eq!(*b, pattern(offset + k), "byte {} of the echoed body", offset + k);
        }
        offset += data.len();
    }
    sending.await.expect("the sender");
    assert_eq!(offset, TOTAL, "the whole body came back");
}
