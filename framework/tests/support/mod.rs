//! Helpers shared by the framework's control-plane tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
pub use weft_e2e::testing::{eventually, http_get};
use weft_framework::exposition::{self, Format, Scrape};

/// Scrapes `/metrics` as Prometheus text and parses it strictly.
pub async fn scrape(addr: SocketAddr) -> Scrape {
    let response = http_get(addr, "/metrics", None).await.expect("scrape /metrics");
    let body = response.body;
    assert_eq!(response.status, 200, "{body}");
    exposition::parse(&body, Format::Prometheus).unwrap_or_else(|e| panic!("unparseable scrape: {e}\n{body}"))
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
