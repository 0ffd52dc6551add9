//! Pulling a Wasm component from an OCI registry (distribution API v2): manifest (or index) →
//! the `application/wasm` layer → blob, with anonymous or basic-credential bearer-token auth.
//!
//! This is deliberately a small client over the host's existing hyper/rustls stack rather than
//! `oci-client`, which would add reqwest, a second TLS provider (aws-lc) and dozens of crates to a
//! binary that only ever needs "GET a manifest, GET a blob".

use std::path::{Path, PathBuf};

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use hyper::body::Incoming;
use serde::Deserialize;

use super::client::{self, HttpClient};
use super::reference::{Digest, OciRef, percent_encode};
use crate::error::FetchError;
use crate::spec::RegistryCredentials;

/// Manifest media types asked for.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Layer media types that hold a Wasm component (`wkg`/wash publish `application/wasm`; older
/// wasmCloud tooling used the others).
const WASM_LAYER_TYPES: [&str; 3] = [
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.module.wasm.content.layer.v1+wasm",
];

/// Largest manifest accepted.
const MAX_MANIFEST: usize = 4 << 20;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    media_type: Option<String>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    digest: String,
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

/// The component layer of an image.
#[derive(Debug)]
pub(crate) struct Layer {
    pub digest: Digest,
    pub size: u64,
    authorization: Option<HeaderValue>,
}

/// One pull of one reference.
pub(crate) struct Puller<'a> {
    pub client: &'a HttpClient,
    pub reference: &'a OciRef,
    pub original: &'a str,
    pub credentials: Option<&'a RegistryCredentials>,
    pub plain_http: bool,
    pub max_size: u64,
}

impl Puller<'_> {
    fn url(&self, kind: &str, reference: &str) -> Result<Uri, FetchError> {
        let scheme = if self.plain_http { "http" } else { "https" };
        let url = format!(
            "{scheme}://{}/v2/{}/{kind}/{reference}",
            self.reference.api_host(),
            self.reference.repository
        );
        url.parse()
            .map_err(|e| self.bad(format!("cannot form a registry URL {url:?}: {e}")))
    }

    fn bad(&self, reason: String) -> FetchError {
        FetchError::BadReference {
            reference: self.original.to_string(),
            reason,
        }
    }

    fn protocol(&self, detail: impl Into<String>) -> FetchError {
        FetchError::Protocol {
            reference: self.original.to_string(),
            detail: detail.into(),
        }
    }

    /// Resolves the reference to the component layer (following an index to the Wasm manifest).
    pub(crate) async fn resolve_layer(&self) -> Result<Layer, FetchError> {
        let mut auth = None;
        let wanted = self.reference.manifest_reference();
        let (bytes, content_type) = self.manifest(&wanted, &mut auth).await?;
        if let Some(pinned) = &self.reference.digest {
            self.verify(pinned, &Digest::of(&bytes), "manifest")?;
        }
        let mut manifest = self.parse_manifest(&bytes)?;
        let is_index = |m: &Manifest, ct: &Option<String>| {
            INDEX_TYPES
                .iter()
                .any(|t| m.media_type.as_deref() == Some(*t) || ct.as_deref() == Some(*t))
                || (!m.manifests.is_empty() && m.layers.is_empty())
        };
        if is_index(&manifest, &content_type) {
            let entry = select_from_index(&manifest.manifests).ok_or_else(|| FetchError::NotAComponent {
                reference: self.original.to_string(),
                detail: "the image index has no wasm/wasip2 entry".to_string(),
            })?;
            let digest = Digest::parse(&entry.digest).map_err(|e| self.protocol(e))?;
            let (bytes, _) = self.manifest(digest.as_str(), &mut auth).await?;
            self.verify(&digest, &Digest::of(&bytes), "manifest")?;
            manifest = self.parse_manifest(&bytes)?;
        }
        let layer = manifest
            .layers
            .iter()
            .find(|l| WASM_LAYER_TYPES.contains(&l.media_type.as_str()))
            .ok_or_else(|| FetchError::NotAComponent {
                reference: self.original.to_string(),
                detail: format!(
                    "the image has no application/wasm layer (layers: {:?})",
                    manifest
                        .layers
                        .iter()
                        .map(|l| l.media_type.as_str())
                        .collect::<Vec<_>>()
                ),
            })?;
        if layer.size > self.max_size {
            return Err(FetchError::TooLarge {
                reference: self.original.to_string(),
                size: layer.size,
                limit: self.max_size,
            });
        }
        let digest = Digest::parse(&layer.digest).map_err(|e| self.protocol(format!("layer digest: {e}")))?;
        Ok(Layer {
            digest,
            size: layer.size,
            authorization: auth,
        })
    }

    /// Downloads the layer's blob into `tmp`, verifying its digest.
    pub(crate) async fn download_blob(&self, layer: &Layer, tmp: &Path) -> Result<PathBuf, FetchError> {
        let mut auth = layer.authorization.clone();
        let uri = self.url("blobs", layer.digest.as_str())?;
        let response = self.authorized_get(&uri, None, &mut auth).await?;
        self.check_status(&response, &format!("blob {}", layer.digest))?;
        let actual = client::stream_to_file(self.original, response, self.max_size.min(layer.size), tmp)
            .await
            .map_err(|e| match e {
                // The registry sent more than the manifest declared: the content is not what was named.
                FetchError::TooLarge { size, .. } if size <= self.max_size => FetchError::DigestMismatch {
                    reference: self.original.to_string(),
                    expected: layer.digest.to_string(),
                    actual: format!("a blob larger than the declared {} bytes", layer.size),
                },
                other => other,
            })?;
        if let Err(err) = self.verify(&layer.digest, &actual, "layer") {
            let _ = std::fs::remove_file(tmp);
            return Err(err);
        }
        Ok(tmp.to_path_buf())
    }

    fn verify(&self, expected: &Digest, actual: &Digest, _what: &str) -> Result<(), FetchError> {
        if expected == actual {
            Ok(())
        } else {
            Err(FetchError::DigestMismatch {
                reference: self.original.to_string(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            })
        }
    }

    fn parse_manifest(&self, bytes: &[u8]) -> Result<Manifest, FetchError> {
        serde_json::from_slice(bytes).map_err(|e| self.protocol(format!("invalid manifest JSON: {e}")))
    }

    async fn manifest(
        &self,
        reference: &str,
        auth: &mut Option<HeaderValue>,
    ) -> Result<(bytes::Bytes, Option<String>), FetchError> {
        let uri = self.url("manifests", reference)?;
        let response = self.authorized_get(&uri, Some(MANIFEST_ACCEPT), auth).await?;
        self.check_status(&response, &format!("manifest {reference}"))?;
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let bytes = client::read_small(self.original, response, MAX_MANIFEST).await?;
        Ok((bytes, content_type))
    }

    fn check_status(&self, response: &http::Response<Incoming>, what: &str) -> Result<(), FetchError> {
        let status = response.status();
        let reference = self.original.to_string();
        match status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(FetchError::NotFound {
                reference,
                detail: format!("the registry has no {what}"),
            }),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(FetchError::Unauthorized {
                reference,
                detail: format!(
                    "the registry answered {status} for the {what}{}",
                    if self.credentials.is_some() {
                        " with the given credentials"
                    } else {
                        " (no imagePullSecret given)"
                    }
                ),
            }),
            s => Err(self.protocol(format!("the registry answered {s} for the {what}"))),
        }
    }

    /// GET with the current authorization; on a `401` challenge, obtains a token (or uses basic
    /// credentials) and retries once.
    async fn authorized_get(
        &self,
        uri: &Uri,
        accept: Option<&str>,
        auth: &mut Option<HeaderValue>,
    ) -> Result<http::Response<Incoming>, FetchError> {
        let headers = |auth: &Option<HeaderValue>| {
            let mut headers = HeaderMap::new();
            if let Some(accept) = accept {
                headers.insert(
                    header::ACCEPT,
                    HeaderValue::from_str(accept).expect("static accept header"),
                );
            }
            if let Some(auth) = auth {
                headers.insert(header::AUTHORIZATION, auth.clone());
            }
            headers
        };
        let response = self
            .client
            .get_following(self.original, uri, &headers(auth))
            .await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let Some(challenge) = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(response);
        };
        let Some(challenge) = Challenge::parse(challenge) else {
            return Ok(response);
        };
        let new_auth = match challenge {
            Challenge::Basic => match self.basic() {
                Some(basic) => basic,
                None => return Ok(response),
            },
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", self.reference.repository));
                HeaderValue::from_str(&format!(
                    "Bearer {}",
                    self.token(&realm, service.as_deref(), &scope).await?
                ))
                .map_err(|_| self.protocol("the registry issued a token that is not a valid header value"))?
            }
        };
        *auth = Some(new_auth);
        self.client
            .get_following(self.original, uri, &headers(auth))
            .await
    }

    fn basic(&self) -> Option<HeaderValue> {
        let creds = self.credentials?;
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", creds.username, creds.password));
        HeaderValue::from_str(&format!("Basic {encoded}")).ok()
    }

    async fn token(&self, realm: &str, service: Option<&str>, scope: &str) -> Result<String, FetchError> {
        let mut url = format!(
            "{realm}{}scope={}",
            if realm.contains('?') { '&' } else { '?' },
            percent_encode(scope)
        );
        if let Some(service) = service {
            url.push_str(&format!("&service={}", percent_encode(service)));
        }
        let uri: Uri = url
            .parse()
            .map_err(|e| self.protocol(format!("invalid token realm {realm:?}: {e}")))?;
        let mut headers = HeaderMap::new();
        if let Some(basic) = self.basic() {
            headers.insert(header::AUTHORIZATION, basic);
        }
        let response = self.client.get_following(self.original, &uri, &headers).await?;
        if matches!(
            response.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(FetchError::Unauthorized {
                reference: self.original.to_string(),
                detail: format!("the token service {realm} answered {}", response.status()),
            });
        }
        if !response.status().is_success() {
            return Err(self.protocol(format!(
                "the token service {realm} answered {}",
                response.status()
            )));
        }
        let bytes = client::read_small(self.original, response, 1 << 20).await?;
        let token: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|e| self.protocol(format!("invalid token response: {e}")))?;
        token
            .token
            .or(token.access_token)
            .ok_or_else(|| self.protocol("the token response has no token"))
    }
}

/// Picks the Wasm entry of an image index: `wasm` architecture or `wasip*`/`wasi` OS, else the only entry.
fn select_from_index(entries: &[IndexEntry]) -> Option<&IndexEntry> {
    entries
        .iter()
        .find(|e| {
            e.platform
                .as_ref()
                .is_some_and(|p| p.architecture == "wasm" || p.os.starts_with("wasi"))
        })
        .or(if entries.len() == 1 { entries.first() } else { None })
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    fn parse(header: &str) -> Option<Self> {
        let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Self::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let (mut realm, mut service, mut scope) = (None, None, None);
        let mut rest = params.trim();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
            let after = after.trim_start();
            let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            match key.as_str() {
                "realm" => realm = Some(value.to_string()),
                "service" => service = Some(value.to_string()),
                "scope" => scope = Some(value.to_string()),
                _ => {}
            }
            rest = remaining.trim_start().trim_start_matches(',').trim_start();
        }
        Some(Self::Bearer {
            realm: realm?,
            service,
            scope,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_are_parsed() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/x:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/x:pull".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"bearer realm="https://ghcr.io/token", service=ghcr.io"#),
            Some(Challenge::Bearer {
                realm: "https://ghcr.io/token".into(),
                service: Some("ghcr.io".into()),
                scope: None
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Negotiate"), None);
        assert_eq!(
            Challenge::parse(r#"Bearer service="x""#),
            None,
            "a bearer challenge needs a realm"
        );
    }

    #[test]
    fn index_selection_prefers_wasm_platforms() {
        let entry = |digest: &str, arch: &str, os: &str| IndexEntry {
            digest: digest.into(),
            platform: Some(Platform {
                architecture: arch.into(),
                os: os.into(),
            }),
        };
        let entries = [entry("a", "amd64", "linux"), entry("b", "wasm", "wasip2")];
        assert_eq!(select_from_index(&entries).unwrap().digest, "b");
        assert!(
            select_from_index(&entries[..1]).is_some(),
            "a single entry is taken as is"
        );
        assert!(select_from_index(&[entry("a", "amd64", "linux"), entry("c", "arm64", "linux")]).is_none());
    }
}
