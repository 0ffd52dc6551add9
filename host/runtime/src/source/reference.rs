//! Parsing of component references: OCI image references, `file://` and `http(s)://` URLs.

use std::fmt;
use std::path::PathBuf;

use crate::error::FetchError;

/// A SHA-256 content digest, `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parses `sha256:<hex>` (other algorithms are not supported).
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(hex) = text.strip_prefix("sha256:") else {
            return Err(format!("unsupported digest {text:?}: only sha256 is supported"));
        };
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "invalid sha256 digest {text:?}: expected 64 lowercase hex digits"
            ));
        }
        Ok(Self(text.to_string()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Self::from_hasher(sha2::Sha256::new_with_prefix(bytes))
    }

    /// The digest a finished hasher computed.
    pub(crate) fn from_hasher(hasher: sha2::Sha256) -> Self {
        use sha2::Digest as _;
        Self(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The full `sha256:<hex>` text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceRef {
    /// A local file (`file:///abs/path.wasm`).
    File(PathBuf),
    /// An HTTP(S) URL.
    Http(http::Uri),
    /// An OCI image reference.
    Oci(OciRef),
}

/// A parsed OCI image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRef {
    /// Registry host (and port), e.g. `ghcr.io`, `127.0.0.1:5000`, `docker.io`.
    pub registry: String,
    /// Repository path, e.g. `wasmcloud/components/http-hello-world`.
    pub repository: String,
    /// Tag; `latest` when neither tag nor digest is given.
    pub tag: Option<String>,
    /// Manifest digest pinned by `@sha256:…`.
    pub digest: Option<Digest>,
}

impl OciRef {
    /// The host serving the registry API (`docker.io` is served by `registry-1.docker.io`).
    pub fn api_host(&self) -> &str {
        if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// What to ask the manifests endpoint for: the digest if pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_string(),
        }
    }
}

impl fmt::Display for OciRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn bad(reference: &str, reason: impl Into<String>) -> FetchError {
    FetchError::BadReference {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

/// Parses an image reference or URL.
pub fn parse(reference: &str) -> Result<SourceRef, FetchError> {
    let trimmed = reference.trim();
    if trimmed.is_empty() {
        return Err(bad(reference, "empty reference"));
    }
    if let Some(path) = trimmed.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(bad(
                reference,
                "a file:// URL needs an absolute path (file:///path/to/component.wasm)",
            ));
        }
        return Ok(SourceRef::File(PathBuf::from(percent_decode(path))));
    }
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let uri: http::Uri = trimmed
            .parse()
            .map_err(|e| bad(reference, format!("invalid URL: {e}")))?;
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad(reference, "URL has no host"));
        }
        return Ok(SourceRef::Http(uri));
    }
    if trimmed.contains("://") && !lower.starts_with("oci://") {
        return Err(bad(
            reference,
            "unsupported scheme (use an OCI reference, file:// or http(s)://)",
        ));
    }
    let oci = trimmed.strip_prefix("oci://").unwrap_or(trimmed);
    parse_oci(reference, oci).map(SourceRef::Oci)
}

fn parse_oci(original: &str, text: &str) -> Result<OciRef, FetchError> {
    let (name, digest) = match text.split_once('@') {
        Some((name, digest)) => (name, Some(Digest::parse(digest).map_err(|e| bad(original, e))?)),
        None => (text, None),
    };
    // A tag follows the last `:` that comes after the last `/` (a `:` before it is a registry port).
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if let Some(tag) = tag {
        let valid = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !valid {
            return Err(bad(original, format!("invalid tag {tag:?}")));
        }
    }
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (first.to_ascii_lowercase(), rest.to_string())
        }
        _ => {
            let repository = if name.contains('/') {
                name.to_string()
            } else {
                format!("library/{name}")
            };
            ("docker.io".to_string(), repository)
        }
    };
    if repository.is_empty() {
        return Err(bad(original, "missing repository"));
    }
    for component in repository.split('/') {
        let valid = !component.is_empty()
            && component
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && component.as_bytes()[0].is_ascii_alphanumeric()
            && component.as_bytes()[component.len() - 1].is_ascii_alphanumeric();
        if !valid {
            return Err(bad(
                original,
                format!(
                    "invalid repository path component {component:?} (lowercase letters, digits and . _ - only)"
                ),
            ));
        }
    }
    let tag = match (tag, &digest) {
        (Some(tag), _) => Some(tag.to_string()),
        (None, Some(_)) => None,
        (None, None) => Some("latest".to_string()),
    };
    Ok(OciRef {
        registry,
        repository,
        tag,
        digest,
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query parameter value.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oci(text: &str) -> OciRef {
        match parse(text).unwrap() {
            SourceRef::Oci(r) => r,
            other => panic!("{text} parsed as {other:?}"),
        }
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn oci_references() {
        let r = oci("ghcr.io/wasmcloud/components/hello:0.1.0");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("ghcr.io", "wasmcloud/components/hello")
        );
        assert_eq!(r.tag.as_deref(), Some("0.1.0"));
        assert_eq!(r.digest, None);
        assert_eq!(r.manifest_reference(), "0.1.0");

        let r = oci("127.0.0.1:5000/hello");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "hello")
        );
        assert_eq!(r.tag.as_deref(), Some("latest"));

        let r = oci(&format!("localhost:5000/a/b@{D}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.to_string(), format!("localhost:5000/a/b@{D}"));

        let r = oci(&format!("localhost/a:v1@{D}"));
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.manifest_reference(), D, "the digest wins over the tag");

        let r = oci("nginx");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "library/nginx")
        );
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(oci("oci://ghcr.io/x/y:1").repository, "x/y");
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse("file:///tmp/a%20b.wasm").unwrap(),
            SourceRef::File(PathBuf::from("/tmp/a b.wasm"))
        );
        assert!(matches!(
            parse("http://127.0.0.1:8080/x.wasm").unwrap(),
            SourceRef::Http(_)
        ));
        assert!(matches!(
            parse("HTTPS://example.com/x.wasm").unwrap(),
            SourceRef::Http(_)
        ));
    }

    #[test]
    fn bad_references_say_why() {
        for (text, why) in [
            ("", "empty"),
            ("file://relative.wasm", "absolute"),
            ("ftp://x/y", "unsupported scheme"),
            ("ghcr.io/Upper/x:1", "invalid repository"),
            ("ghcr.io/x:bad tag", "invalid tag"),
            ("ghcr.io/x:", "invalid tag"),
            ("ghcr.io/x@sha256:abc", "64 lowercase hex"),
            ("ghcr.io/x@md5:abc", "only sha256"),
            ("ghcr.io/", "missing repository"),
            ("http://", "URL"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text:?}: {err}");
            assert!(matches!(
                parse(text).unwrap_err(),
                FetchError::BadReference { .. }
            ));
        }
    }

    #[test]
    fn digests() {
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(D).unwrap().hex().len(), 64);
        assert!(Digest::parse(&D.to_uppercase()).is_err());
    }

    #[test]
    fn percent_encoding_round_trips_reserved_characters() {
        assert_eq!(percent_encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
        assert_eq!(percent_decode("a%2Fb%3A"), "a/b:");
    }
}
