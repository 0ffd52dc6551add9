//! Shared fixtures of the `weft-host` integration tests: the real `weft-host` binary as a child process
//! against a real `nats-server`, and a minimal raw HTTP/1.1 client (so tests control every byte,
//! including a missing `Host` header and slowly sent bodies).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use weft_host_api::{HostClient, HostHeartbeat, Timeouts};
use weft_testkit::{NatsServer, Supervised, TempDir, free_port};

/// A running `weft-host` with its ports, its ID (from its first heartbeat) and a control client.
pub struct Host {
    pub process: Supervised,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub id: String,
    pub first_heartbeat: HostHeartbeat,
    pub client: HostClient,
    pub nats: async_nats::Client,
    pub dir: TempDir,
}

/// Spawns `weft-host` connected to `nats_url` with extra `args`, waits for its first heartbeat and
/// for `/readyz`.
pub async fn start_host(nats_url: &str, extra: &[&str]) -> Host {
    let dir = TempDir::new("weft-host").expect("temp dir");
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let nats = async_nats::connect(nats_url)
        .await
        .expect("connect the test client to nats-server");
    // Subscribed (and registered by the server) before the host starts, to see its very first heartbeat.
    let mut heartbeats = nats.subscribe("runtime.operator.heartbeat.>").await.unwrap();
    registered(&nats).await;

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft-host"));
    cmd.args(["--scheduler-nats-url", nats_url])
        .args(["--http-addr", &http.to_string()])
        .args(["--admin-addr", &admin.to_string()])
        .args(["--host-name", "127.0.0.1"])
        .args(["--host-group", "test-group"])
        .args(["--environment", "test-env"])
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .args(extra)
        .env("RUST_LOG", "info,weft_host=debug");
    let mut process =
        Supervised::spawn("weft-host", cmd, &dir.path().join("host.log")).expect("spawn weft-host");

    let msg = match tokio::time::timeout(Duration::from_secs(30), heartbeats.next()).await {
        Ok(Some(msg)) => msg,
        _ => panic!(
            "no heartbeat from weft-host within 30s; log:\n{}",
            process.log_tail(8192)
        ),
    };
    let first_heartbeat: HostHeartbeat = weft_host_api::from_json(&msg.payload).expect("heartbeat decodes");
    assert_eq!(
        msg.subject.as_str(),
        format!("runtime.operator.heartbeat.{}", first_heartbeat.id)
    );
    wait_ready(&mut process, admin).await;
    let client = HostClient::new(nats.clone()).with_timeouts(Timeouts {
        // Generous for slow CI machines; the operator's own values are shorter.
        heartbeat: Duration::from_secs(10),
        status: Duration::from_secs(10),
        stop: Duration::from_secs(30),
        start: Duration::from_secs(60),
    });
    Host {
        process,
        http,
        admin,
        id: first_heartbeat.id.clone(),
        first_heartbeat,
        client,
        nats,
        dir,
    }
}

/// Waits until the server has registered `client`'s subscriptions.
pub async fn registered(client: &async_nats::Client) {
    weft_host_api::server_round_trip(client, Duration::from_secs(10))
        .await
        .expect("round trip through nats-server");
}

/// Polls `/readyz` until it answers 200.
pub async fn wait_ready(process: &mut Supervised, admin: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if get(admin, "/readyz", Some("admin")).is_ok_and(|r| r.status == 200) {
            return;
        }
        assert!(
            process.is_running(),
            "weft-host exited; log:\n{}",
            process.log_tail(8192)
        );
        assert!(
            Instant::now() < deadline,
            "weft-host not ready within 30s; log:\n{}",
            process.log_tail(8192)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Host {
    /// The host's `/metrics` in Prometheus text format.
    pub fn metrics(&self) -> String {
        get(self.admin, "/metrics", Some("admin"))
            .expect("scrape /metrics")
            .body_text()
    }

    /// The value of one sample line of `/metrics` (e.g. `weft_host_nats_unknown_commands_total`).
    pub fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&self.metrics(), series)
    }

    /// The host's log so far.
    pub fn log(&self) -> String {
        self.process.log_tail(64 * 1024)
    }
}

/// The value of the sample `series` (name with labels, exactly as exposed) in a Prometheus text page.
pub fn metric_value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// An HTTP response read off the wire.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` with the given `Host` header (none when `host` is `None`), on a fresh connection.
pub fn get(addr: SocketAddr, path: &str, host: Option<&str>) -> std::io::Result<Response> {
    let mut stream = connect(addr)?;
    let host_line = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\n{host_line}Connection: close\r\n\r\n"
    )?;
    read_response(&mut stream)
}

/// `method path` with `Host: host` and `body`, on a fresh connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = connect(addr)?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    read_response(&mut stream)
}

/// A TCP connection with generous timeouts.
pub fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    Ok(stream)
}

/// Reads one response (Content-Length or chunked body, or until close).
pub fn read_response(stream: &mut TcpStream) -> std::io::Result<Response> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut rest = buf[head_end..].to_vec();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while rest.len() < len {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        rest
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            if let Some(body) = dechunk(&rest) {
                break body;
            }
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "chunked body cut short",
                ));
            }
            rest.extend_from_slice(&chunk[..n]);
        }
    } else {
        stream.read_to_end(&mut rest)?;
        rest
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The decoded body if `data` holds a complete chunked body.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return find(data, b"\r\n").map(|_| out);
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// A `file://` image reference for a test component.
pub fn file_image(path: &str) -> String {
    format!("file://{}", Path::new(path).display())
}

/// A start request for one component bound to `hostnames` (first is `host`, the rest `host-aliases`).
pub fn http_workload(
    id: &str,
    name: &str,
    image: &str,
    hostnames: &[&str],
) -> weft_host_api::WorkloadStartRequest {
    let mut config = weft_host_api::StringMap::new();
    if let Some((host, aliases)) = hostnames.split_first() {
        config.insert("host".into(), host.to_string());
        if !aliases.is_empty() {
            config.insert("host-aliases".into(), aliases.join(","));
        }
    }
    weft_host_api::WorkloadStartRequest {
        workload_id: id.to_string(),
        workload: Some(weft_host_api::Workload {
            namespace: "default".into(),
            name: name.into(),
            wit_world: Some(weft_host_api::WitWorld {
                components: vec![weft_host_api::Component {
                    name: name.into(),
                    image: image.into(),
                    ..Default::default()
                }],
                host_interfaces: vec![weft_host_api::WitInterface {
                    namespace: "wasi".into(),
                    package: "http".into(),
                    interfaces: vec!["incoming-handler".into()],
                    config,
                    ..Default::default()
                }],
            }),
            ..Default::default()
        }),
    }
}

/// A start request with nothing to run (no components, no service).
pub fn empty_workload(id: &str) -> weft_host_api::WorkloadStartRequest {
    weft_host_api::WorkloadStartRequest {
        workload_id: id.to_string(),
        workload: Some(weft_host_api::Workload {
            namespace: "default".into(),
            name: "empty".into(),
            ..Default::default()
        }),
    }
}

/// Starts a nats-server for one test.
pub fn nats() -> NatsServer {
    NatsServer::start().expect("start nats-server (run e2e/testbins/build.sh)")
}
