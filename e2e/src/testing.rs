//! Small helpers for tests that run on the environment: polling for a condition with a deadline and a
//! plain HTTP/1.1 GET for admin endpoints.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Polls `check` every 25 ms until it returns `Some`, panicking with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A response read by [`http_get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code (0 when the status line was malformed).
    pub status: u16,
    /// The `Content-Type` header, or empty.
    pub content_type: String,
    /// The body, lossily decoded.
    pub body: String,
    /// Every header, names lowercased, in order.
    pub headers: Vec<(String, String)>,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `GET path` to `addr` (`ip:port`, also the Host header; with `Accept: accept` when given and `Connection: close`) and reads the whole
/// response.
pub async fn http_get<A>(addr: A, path: &str, accept: Option<&str>) -> std::io::Result<HttpResponse>
where
    A: tokio::net::ToSocketAddrs + std::fmt::Display,
{
    let mut stream = tokio::net::TcpStream::connect(&addr).await?;
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    Ok(parse_response(&String::from_utf8_lossy(&raw)))
}

/// Sends `GET /` to `addr` with `Host: host` (how a host's ingress routes to a workload) and returns the
/// whole response, its body de-chunked.
pub async fn http_get_host<A>(addr: A, host: &str) -> std::io::Result<HttpResponse>
where
    A: tokio::net::ToSocketAddrs,
{
    http_get_host_path(addr, host, "/").await
}

/// [`http_get_host`] for `GET path`.
pub async fn http_get_host_path<A>(addr: A, host: &str, path: &str) -> std::io::Result<HttpResponse>
where
    A: tokio::net::ToSocketAddrs,
{
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let mut response = parse_response(&text);
    let head = text.split_once("\r\n\r\n").map_or(&*text, |(h, _)| h);
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        response.body = dechunk(&response.body);
    }
    Ok(response)
}

/// Decodes a chunked body (`<hex size>\r\n<data>\r\n` … `0\r\n\r\n`).
pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Splits a whole `Connection: close` HTTP/1.1 response into status, content type and body.
pub fn parse_response(text: &str) -> HttpResponse {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        })
        .map(|(_, value)| value.trim().to_string())
        .unwrap_or_default();
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        content_type,
        body: body.to_string(),
        headers,
    }
}

/// The process id of the pod's first container (from the process-kubelet's `containerID:
/// process://<pid>`), while it runs.
pub fn container_pid(pod: &k8s_openapi::api::core::v1::Pod) -> Option<u32> {
    let status = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    status.state.as_ref()?.running.as_ref()?;
    status
        .container_id
        .as_ref()?
        .strip_prefix("process://")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_content_type_and_body() {
        let r =
            parse_response("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\nnot ready");
        assert_eq!(r.status, 503);
        assert_eq!(r.content_type, "text/plain");
        assert_eq!(r.body, "not ready");
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(dechunk("6\r\nhello\n\r\n0\r\n\r\n"), "hello\n");
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
        assert_eq!(dechunk("zz\r\n"), "");
    }

    #[test]
    fn malformed_response_has_status_zero() {
        let r = parse_response("garbage");
        assert_eq!(r.status, 0);
        assert!(r.body.is_empty());
    }
}
