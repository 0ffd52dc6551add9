//! Component sources against real servers: a real OCI registry (`docker-registry`) and a real HTTP server.

mod support;

use bytes::Bytes;
use http::StatusCode;
use support::*;
use weft_runtime::metrics::FetchResult;
use weft_runtime::{
    ComponentSource, FetchError, LocalResources, PullPolicy, RuntimeBackend, RuntimeError, WorkloadSpec,
};
use weft_test_components as components;
use weft_testkit::registry::OciRegistry;

fn with_policy(mut spec: WorkloadSpec, policy: PullPolicy) -> WorkloadSpec {
    spec.components[0].source =
        ComponentSource::new(spec.components[0].source.image.clone()).with_pull_policy(policy);
    spec
}

async fn start_err(t: &TestBackend, spec: WorkloadSpec) -> RuntimeError {
    match t.backend.start(spec).await {
        Ok(w) => panic!("{} started but should have failed", w.id()),
        Err(err) => err,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_from_an_oci_registry_by_tag_and_by_digest() {
    let registry = OciRegistry::start().expect("start docker-registry");
    let wasm = components::bytes(components::HELLO);
    let manifest_digest = push_component(&registry.host(), "weft/hello", "v1", &wasm).await;

    let t = TestBackend::new();
    let by_tag = format!("{}/weft/hello:v1", registry.host());
    let w = t.start(spec("tag", &by_tag, LocalResources::default())).await;
    assert_eq!(get(&w, "/").await.body, "hello\n");
    assert_eq!(t.metrics.fetch_count(FetchResult::Fetched), 1);

    let by_digest = format!("{}/weft/hello@{manifest_digest}", registry.host());
    let w = t
        .start(spec("digest", &by_digest, LocalResources::default()))
        .await;
    assert_eq!(get(&w, "/").await.status, StatusCode::OK);

    // IfNotPresent (the default) uses the cache once the tag is known.
    let _ = t.start(spec("again", &by_tag, LocalResources::default())).await;
    assert_eq!(t.metrics.fetch_count(FetchResult::Cached), 1);
    // Always contacts the registry again (and reuses the cached blob).
    let _ = t
        .start(with_policy(
            spec("always", &by_tag, LocalResources::default()),
            PullPolicy::Always,
        ))
        .await;
    assert_eq!(t.metrics.fetch_count(FetchResult::Fetched), 3);
    // Never works from the cache alone…
    drop(registry);
    let w = t
        .start(with_policy(
            spec("never", &by_tag, LocalResources::default()),
            PullPolicy::Never,
        ))
        .await;
    assert_eq!(get(&w, "/").await.status, StatusCode::OK);
    // …and Always fails without the registry.
    let err = start_err(
        &t,
        with_policy(
            spec("gone", &by_tag, LocalResources::default()),
            PullPolicy::Always,
        ),
    )
    .await;
    assert!(
        matches!(
            err,
            RuntimeError::Fetch {
                source: FetchError::Network { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_policy_without_a_cached_copy_is_a_clear_error() {
    let registry = OciRegistry::start().expect("start docker-registry");
    push_component(
        &registry.host(),
        "weft/hello",
        "v1",
        &components::bytes(components::HELLO),
    )
    .await;
    let t = TestBackend::new();
    let image = format!("{}/weft/hello:v1", registry.host());
    let err = start_err(
        &t,
        with_policy(
            spec("never", &image, LocalResources::default()),
            PullPolicy::Never,
        ),
    )
    .await;
    assert!(
        matches!(
            err,
            RuntimeError::Fetch {
                source: FetchError::NotCached { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("imagePullPolicy is Never"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_errors_are_reported() {
    let registry = OciRegistry::start().expect("start docker-registry");
    let wasm = components::bytes(components::HELLO);
    push_component(&registry.host(), "weft/hello", "v1", &wasm).await;
    let t = TestBackend::new();

    let missing_tag = format!("{}/weft/hello:v2", registry.host());
    let err = start_err(&t, spec("tag", &missing_tag, LocalResources::default())).await;
    assert!(
        matches!(
            err,
            RuntimeError::Fetch {
                source: FetchError::NotFound { .. },
                ..
            }
        ),
        "{err}"
    );

    let missing_repo = format!("{}/weft/nothing:v1", registry.host());
    let err = start_err(&t, spec("repo", &missing_repo, LocalResources::default())).await;
    assert!(
        matches!(
            err,
            RuntimeError::Fetch {
                source: FetchError::NotFound { .. },
                ..
            }
        ),
        "{err}"
    );

    // A digest the registry does not have.
    let unknown = format!("{}/weft/hello@{}", registry.host(), sha256(b"something else"));
    let err = start_err(&t, spec("digest", &unknown, LocalResources::default())).await;
    assert!(
        matches!(
            err,
            RuntimeError::Fetch {
                source: FetchError::NotFound { .. },
                ..
            }
        ),
        "{err}"
    );

    // Too large for the host.
    let small = TestBackend::with(|c| c.max_component_size = 1000);
    let image = format!("{}/weft/hello:v1", registry.host());
    let err = start_err(&small, spec("big", &image, LocalResources::default())).await;
    assert!(
        matches!(
            err,
            RuntimeError::Fetch {
                source: FetchError::TooLarge { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_registry_content_fails_digest_verification() {
    let registry = OciRegistry::start().expect("start docker-registry");
    let wasm = components::bytes(components::HELLO);
    push_component(&registry.host(), "weft/hello", "v1", &wasm).await;
    // Corrupt the stored layer (same size, one byte flipped): the registry serves it as is.
    let layer = sha256(&wasm);
    let path = registry.blob_data_path(layer.strip_prefix("sha256:").unwrap());
    let mut stored = std::fs::read(&path).expect("stored layer");
    let last = stored.len() - 1;
    stored[last] ^= 0xff;
    std::fs::write(&path, stored).unwrap();

    let t = TestBackend::new();
    let image = format!("{}/weft/hello:v1", registry.host());
    let err = start_err(&t, spec("corrupt", &image, LocalResources::default())).await;
    assert!(
        matches!(
            err,
            RuntimeError::Fetch {
                source: FetchError::DigestMismatch { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&layer), "{err}");
    assert_eq!(
        std::fs::read_dir(t.dir.path().join("blobs/sha256"))
            .unwrap()
            .count(),
        0,
        "nothing unverified is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_over_http_and_reports_http_errors() {
    let wasm = components::bytes(components::ECHO);
    let server = LocalServer::start(vec![
        ("/echo.wasm", Bytes::from(wasm)),
        ("/page.html", Bytes::from_static(b"<html>not wasm</html>")),
    ])
    .await;
    let t = TestBackend::new();
    let w = t
        .start(spec("http", &server.url("/echo.wasm"), LocalResources::default()))
        .await;
    assert_eq!(call(&w, "POST", "/", &[], "over http").await.body, "over http");

    let err = start_err(
        &t,
        spec("404", &server.url("/missing.wasm"), LocalResources::default()),
    )
    .await;
    assert!(
        matches!(
            err,
            RuntimeError::Fetch {
                source: FetchError::NotFound { .. },
                ..
            }
        ),
        "{err}"
    );

    let err = start_err(
        &t,
        spec("html", &server.url("/page.html"), LocalResources::default()),
    )
    .await;
    assert!(
        matches!(
            err,
            RuntimeError::Fetch {
                source: FetchError::NotAComponent { .. },
                ..
            }
        ),
        "{err}"
    );

    let small = TestBackend::with(|c| c.max_component_size = 1000);
    let err = start_err(
        &small,
        spec("big", &server.url("/echo.wasm"), LocalResources::default()),
    )
    .await;
    assert!(
        matches!(
            err,
            RuntimeError::Fetch {
                source: FetchError::TooLarge { .. },
                ..
            }
        ),
        "{err}"
    );

    // The URL is cached for IfNotPresent: a second start does not hit the server.
    let hits = server.hits();
    let _ = t
        .start(spec(
            "again",
            &server.url("/echo.wasm"),
            LocalResources::default(),
        ))
        .await;
    assert_eq!(server.hits(), hits);
}
