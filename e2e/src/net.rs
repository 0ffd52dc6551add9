//! A minimal plain-HTTP/1.1 GET, enough for health endpoints and probes (status code only).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `Ok` when `GET path` on `addr` answers 200 within 2 s, else why not: a readiness check for
/// [`crate::controlplane::wait_ready`].
pub async fn answers_200(addr: SocketAddr, path: &str) -> Result<(), String> {
    match http_get_status(addr, "127.0.0.1", path, &[], Duration::from_secs(2)).await? {
        200 => Ok(()),
        code => Err(format!("{path} answered {code}")),
    }
}

/// Sends `GET path` to `addr` with `host` as the Host header and extra `headers`, and returns the
/// response status code. Fails on connect/read errors, a malformed status line, or `timeout`.
pub async fn http_get_status(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<u16, String> {
    let request = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kube-probe/1.37\r\nAccept: */*\r\n");
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("Connection: close\r\n\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        while !buf.contains(&b'\n') && buf.len() < 8192 {
            let n = stream.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        parse_status_line(&buf).ok_or_else(|| "malformed HTTP response".to_string())
    };
    tokio::time::timeout(timeout, request)
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))?
}

/// The status code of an HTTP/1.x status line at the start of `response`.
pub fn parse_status_line(response: &[u8]) -> Option<u16> {
    let line_end = response.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&response[..line_end]).ok()?;
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable\r\nx"),
            Some(503)
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), None, "incomplete line");
        assert_eq!(parse_status_line(b"SSH-2.0\r\n"), None);
    }

    #[tokio::test]
    async fn gets_a_status_from_a_real_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
            req
        });
        let code = http_get_status(addr, "h", "/readyz", &[], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(code, 204);
        let req = server.await.unwrap();
        assert!(req.starts_with("GET /readyz HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Host: h\r\n"), "{req}");
    }
}
