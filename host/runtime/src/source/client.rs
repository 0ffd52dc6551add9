//! A small HTTP(S) client for sources: redirects, size-limited streaming downloads with hashing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Digest as _;
use tokio::io::AsyncWriteExt;

use super::reference::Digest;
use crate::error::FetchError;

const MAX_REDIRECTS: usize = 5;

/// The shared client (connection pool) of a fetcher.
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl HttpClient {
    pub(crate) fn new() -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(builder) => builder,
            Err(err) => {
                tracing::warn!(%err, "no usable system CA certificates; using the bundled web PKI roots");
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_provider_and_webpki_roots(provider)
                    .expect("the ring provider supports the default protocol versions")
            }
        };
        let connector = builder.https_or_http().enable_http1().build();
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// One GET, no redirects followed.
    pub(crate) async fn get(
        &self,
        original: &str,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<Response<Incoming>, FetchError> {
        let mut request =
            Request::get(uri.clone())
                .body(Empty::new())
                .map_err(|e| FetchError::BadReference {
                    reference: original.to_string(),
                    reason: format!("cannot build a request for {uri}: {e}"),
                })?;
        *request.headers_mut() = headers.clone();
        self.client
            .request(request)
            .await
            .map_err(|e| FetchError::Network {
                reference: original.to_string(),
                detail: format!("GET {uri}: {}", error_chain(&e)),
            })
    }

    /// A GET that follows redirects. `Authorization` is sent only to the original host.
    pub(crate) async fn get_following(
        &self,
        original: &str,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<Response<Incoming>, FetchError> {
        let mut current = uri.clone();
        let mut headers = headers.clone();
        for _ in 0..=MAX_REDIRECTS {
            let response = self.get(original, &current, &headers).await?;
            if !response.status().is_redirection() || response.status() == StatusCode::NOT_MODIFIED {
                return Ok(response);
            }
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| FetchError::Protocol {
                    reference: original.to_string(),
                    detail: format!("redirect from {current} without a Location"),
                })?;
            let next = resolve(&current, location).ok_or_else(|| FetchError::Protocol {
                reference: original.to_string(),
                detail: format!("invalid redirect Location {location:?}"),
            })?;
            if next.authority() != current.authority() {
                headers.remove(header::AUTHORIZATION);
            }
            current = next;
        }
        Err(FetchError::Protocol {
            reference: original.to_string(),
            detail: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// Downloads `uri` (following redirects) into a new file at `tmp`, returning its digest.
    pub(crate) async fn download(
        &self,
        original: &str,
        uri: &Uri,
        authorization: Option<HeaderValue>,
        limit: u64,
        tmp: &Path,
    ) -> Result<(Digest, PathBuf), FetchError> {
        let mut headers = HeaderMap::new();
        if let Some(auth) = authorization {
            headers.insert(header::AUTHORIZATION, auth);
        }
        let response = self.get_following(original, uri, &headers).await?;
        match response.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => {
                return Err(FetchError::NotFound {
                    reference: original.to_string(),
                    detail: format!("{uri} answered 404"),
                });
            }
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                return Err(FetchError::Unauthorized {
                    reference: original.to_string(),
                    detail: format!("{uri} answered {s}"),
                });
            }
            s => {
                return Err(FetchError::Protocol {
                    reference: original.to_string(),
                    detail: format!("{uri} answered {s}"),
                });
            }
        }
        let digest = stream_to_file(original, response, limit, tmp).await?;
        Ok((digest, tmp.to_path_buf()))
    }
}

/// Streams a response body into `path`, enforcing `limit` and hashing as it goes.
pub(crate) async fn stream_to_file(
    original: &str,
    response: Response<Incoming>,
    limit: u64,
    path: &Path,
) -> Result<Digest, FetchError> {
    let too_large = |size| FetchError::TooLarge {
        reference: original.to_string(),
        size,
        limit,
    };
    if let Some(length) = content_length(response.headers())
        && length > limit
    {
        return Err(too_large(length));
    }
    let io = |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let result = async {
        let mut body = response.into_body();
        let mut hasher = sha2::Sha256::new();
        let mut size = 0_u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| FetchError::Network {
                reference: original.to_string(),
                detail: format!("reading the body: {}", error_chain(&e)),
            })?;
            if let Ok(data) = frame.into_data() {
                size += data.len() as u64;
                if size > limit {
                    return Err(too_large(size));
                }
                hasher.update(&data);
                file.write_all(&data).await.map_err(io)?;
            }
        }
        file.flush().await.map_err(io)?;
        Ok(Digest::from_hasher(hasher))
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
    result
}

/// Reads a small response body (manifests, tokens) up to `limit` bytes.
pub(crate) async fn read_small(
    original: &str,
    response: Response<Incoming>,
    limit: usize,
) -> Result<Bytes, FetchError> {
    let body = http_body_util::Limited::new(response.into_body(), limit);
    body.collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| FetchError::Protocol {
            reference: original.to_string(),
            detail: format!("reading a response: {e}"),
        })
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Resolves a `Location` against the URI it came from.
pub(crate) fn resolve(base: &Uri, location: &str) -> Option<Uri> {
    if location.contains("://") {
        return location.parse().ok();
    }
    let mut parts = base.clone().into_parts();
    let path = if location.starts_with('/') {
        location.to_string()
    } else {
        let dir = base.path().rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{location}")
    };
    parts.path_and_query = Some(path.parse().ok()?);
    Uri::from_parts(parts).ok()
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve_absolute_and_relative_locations() {
        let base: Uri = "http://r.example:5000/v2/x/blobs/sha256:abc".parse().unwrap();
        assert_eq!(
            resolve(&base, "https://cdn.example/blob?sig=1")
                .unwrap()
                .to_string(),
            "https://cdn.example/blob?sig=1"
        );
        assert_eq!(
            resolve(&base, "/other/path").unwrap().to_string(),
            "http://r.example:5000/other/path"
        );
        assert_eq!(
            resolve(&base, "sibling").unwrap().to_string(),
            "http://r.example:5000/v2/x/blobs/sibling"
        );
    }
}
