//! Helpers shared by the framework's control-plane tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_framework::exposition::{self, Format, Scrape};

/// A raw HTTP/1.1 GET; returns (status, content type, body).
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    accept: Option<&str>,
) -> std::io::Result<(u16, String, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok((status, content_type, body.to_string()))
}

/// Scrapes `/metrics` as Prometheus text and parses it strictly.
pub async fn scrape(addr: SocketAddr) -> Scrape {
    let (status, _, body) = http_get(addr, "/metrics", None).await.expect("scrape /metrics");
    assert_eq!(status, 200, "{body}");
    exposition::parse(&body, Format::Prometheus).unwrap_or_else(|e| panic!("unparseable scrape: {e}\n{body}"))
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A pod running the harness's test image (a sleeping process).
pub fn test_pod(name: &str, labels: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                image: Some(weft_e2e::TESTPOD_IMAGE.into()),
                ..Default::default()
            }],
            termination_grace_period_seconds: Some(5),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates ConfigMaps `prefix-0..n` in `ns`.
pub async fn create_config_maps(client: &Client, ns: &str, prefix: &str, n: usize) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for i in 0..n {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("{prefix}-{i}")),
                ..Default::default()
            },
            data: Some(BTreeMap::from([("i".to_string(), i.to_string())])),
            ..Default::default()
        };
        api.create(&PostParams::default(), &cm)
            .await
            .expect("create configmap");
    }
}

/// A manager config serving probes and metrics on a free loopback port.
pub fn manager_config() -> weft_framework::ManagerConfig {
    weft_framework::ManagerConfig {
        probe_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        cache_sync_timeout: Duration::from_secs(30),
        graceful_shutdown_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}
