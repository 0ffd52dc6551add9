//! Connecting a control-plane peer (operator or host) to NATS: server list, TLS (custom CA, optional
//! client certificate, TLS-first), credentials (`.creds` JWT file or NKey seed), and a first attempt
//! that fails fast on settings that can never work (bad credentials, TLS errors) while a server that is
//! merely not up yet is retried in the background forever.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions, ServerAddr};

/// How a peer authenticates to and encrypts its NATS connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsSecurity {
    /// CA certificate (PEM) the servers are verified with; setting it requires TLS.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS (with `tls_cert`).
    pub tls_key: Option<PathBuf>,
    /// Start TLS before the NATS handshake (servers with `handshake_first`).
    pub tls_first: bool,
    /// A `.creds` file (user JWT and NKey seed) for servers in operator/JWT mode.
    pub creds: Option<PathBuf>,
    /// A file holding an NKey user seed (`SU…`) for servers with NKey users.
    pub nkey_seed: Option<PathBuf>,
}

/// Why the connection settings cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server list does not parse.
    #[error("invalid NATS server URL {url:?}: {reason}")]
    Url {
        /// The offending list.
        url: String,
        /// Why.
        reason: String,
    },
    /// Both a `.creds` file and an NKey seed were given.
    #[error("give either a NATS .creds file or an NKey seed, not both")]
    TwoCredentials,
    /// A client certificate without its key, or the reverse.
    #[error("a NATS client certificate needs its key and the key its certificate")]
    HalfClientCertificate,
    /// A credentials file could not be read or parsed.
    #[error("reading NATS credentials {}: {source}", path.display())]
    Credentials {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The server rejected the credentials, or TLS failed: retrying cannot help.
    #[error("connecting to NATS at {url}: {kind}: {message} (check the NATS credentials and TLS settings)")]
    Rejected {
        /// The server list.
        url: String,
        /// What failed.
        kind: ConnectErrorKind,
        /// The client's message.
        message: String,
    },
}

/// Parses a comma-separated server list.
pub fn parse_servers(url: &str) -> Result<Vec<ServerAddr>, ConnectError> {
    let servers: Vec<ServerAddr> = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<ServerAddr>())
        .collect::<Result<_, _>>()
        .map_err(|e| ConnectError::Url {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    if servers.is_empty() {
        return Err(ConnectError::Url {
            url: url.to_string(),
            reason: "no server".into(),
        });
    }
    Ok(servers)
}

fn read_seed(path: &Path) -> Result<String, ConnectError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConnectError::Credentials {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("SU"))
        .map(str::to_string)
        .ok_or_else(|| ConnectError::Credentials {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no NKey user seed (a line starting with SU)",
            ),
        })
}

impl NatsSecurity {
    /// Whether anything beyond a plain connection is configured.
    pub fn is_plain(&self) -> bool {
        *self == Self::default()
    }

    /// Adds TLS and credentials to `options`.
    pub async fn apply(&self, mut options: ConnectOptions) -> Result<ConnectOptions, ConnectError> {
        if self.creds.is_some() && self.nkey_seed.is_some() {
            return Err(ConnectError::TwoCredentials);
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                options = options
                    .add_client_certificate(cert.clone(), key.clone())
                    .require_tls(true);
            }
            (None, None) => {}
            _ => return Err(ConnectError::HalfClientCertificate),
        }
        if self.tls_first {
            options = options.tls_first();
        }
        if let Some(path) = &self.creds {
            options = options
                .credentials_file(path)
                .await
                .map_err(|source| ConnectError::Credentials {
                    path: path.clone(),
                    source,
                })?;
        }
        if let Some(path) = &self.nkey_seed {
            options = options.nkey(read_seed(path)?);
        }
        Ok(options)
    }
}

/// Whether a failed connection attempt can succeed later (the server is not up yet, the network is
/// down) or never will with these settings (rejected credentials, TLS failures, bad URLs).
pub fn is_retryable(kind: ConnectErrorKind) -> bool {
    matches!(
        kind,
        ConnectErrorKind::Io
            | ConnectErrorKind::TimedOut
            | ConnectErrorKind::Dns
            | ConnectErrorKind::MaxReconnects
    )
}

/// Connects with `options` (built by `build`, called twice) to `url`: one direct attempt first, so
/// rejected credentials and TLS errors fail at once with a clear error; if the server is only
/// unreachable, the client connects (and reconnects) in the background and this returns at once.
pub async fn connect(
    url: &str,
    security: &NatsSecurity,
    build: impl Fn() -> ConnectOptions,
    first_attempt_timeout: Duration,
) -> Result<async_nats::Client, ConnectError> {
    let servers = parse_servers(url)?;
    let first = security
        .apply(build().connection_timeout(first_attempt_timeout))
        .await?;
    match first.connect(servers.clone()).await {
        Ok(client) => return Ok(client),
        Err(e) if is_retryable(e.kind()) => {
            tracing::warn!(%url, error = %e, "NATS is not reachable yet; connecting in the background");
        }
        Err(e) => {
            return Err(ConnectError::Rejected {
                url: url.to_string(),
                kind: e.kind(),
                message: e.to_string(),
            });
        }
    }
    let options = security.apply(build().retry_on_initial_connect()).await?;
    options
        .connect(servers)
        .await
        .map_err(|e| ConnectError::Rejected {
            url: url.to_string(),
            kind: e.kind(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists_parse_or_say_why_not() {
        assert_eq!(parse_servers("nats://a:4222, nats://b:4222").unwrap().len(), 2);
        assert!(matches!(parse_servers(""), Err(ConnectError::Url { .. })));
        let err = parse_servers("nats://a:notaport").unwrap_err().to_string();
        assert!(err.contains("nats://a:notaport"), "{err}");
    }

    #[test]
    fn only_unreachable_servers_are_retried() {
        assert!(is_retryable(ConnectErrorKind::Io));
        assert!(is_retryable(ConnectErrorKind::TimedOut));
        assert!(!is_retryable(ConnectErrorKind::AuthorizationViolation));
        assert!(!is_retryable(ConnectErrorKind::Authentication));
        assert!(!is_retryable(ConnectErrorKind::Tls));
    }

    #[tokio::test]
    async fn contradictory_settings_are_rejected_before_connecting() {
        let both = NatsSecurity {
            creds: Some("a.creds".into()),
            nkey_seed: Some("seed".into()),
            ..Default::default()
        };
        assert!(matches!(
            both.apply(ConnectOptions::new()).await,
            Err(ConnectError::TwoCredentials)
        ));
        let half = NatsSecurity {
            tls_cert: Some("c.pem".into()),
            ..Default::default()
        };
        assert!(matches!(
            half.apply(ConnectOptions::new()).await,
            Err(ConnectError::HalfClientCertificate)
        ));
        let missing = NatsSecurity {
            nkey_seed: Some("/nonexistent/seed.nk".into()),
            ..Default::default()
        };
        let err = missing
            .apply(ConnectOptions::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/seed.nk"), "{err}");
    }

    #[test]
    fn seeds_are_found_in_a_file() {
        let dir = std::env::temp_dir().join(format!("weft-seed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("user.nk");
        std::fs::write(&path, "# a comment\n  SUAEXAMPLE\n").unwrap();
        assert_eq!(read_seed(&path).unwrap(), "SUAEXAMPLE");
        std::fs::write(&path, "nothing here\n").unwrap();
        assert!(read_seed(&path).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
