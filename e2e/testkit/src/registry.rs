//! A real OCI registry (Debian's `docker-registry`, the CNCF distribution server) on a free loopback
//! port with its storage in a temporary directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{Error, Supervised, TempDir, free_port};

/// Where the registry binary is looked for (override with `$WEFT_DOCKER_REGISTRY`).
pub fn registry_binary() -> Result<PathBuf, Error> {
    let path = std::env::var_os("WEFT_DOCKER_REGISTRY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingBinary {
            name: "docker-registry (apt-get install docker-registry)".into(),
            path,
        })
    }
}

/// A running registry, stopped (and its storage removed) when dropped.
#[derive(Debug)]
pub struct OciRegistry {
    process: Supervised,
    port: u16,
    dir: TempDir,
}

impl OciRegistry {
    /// Starts a registry without authentication on a free port of 127.0.0.1.
    pub fn start() -> Result<Self, Error> {
        let dir = TempDir::new("registry")?;
        let port = free_port();
        let storage = dir.path().join("storage");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).map_err(|source| Error::Io {
            what: format!("write {}", config_path.display()),
            source,
        })?;
        let mut cmd = Command::new(registry_binary()?);
        cmd.arg("serve").arg(&config_path);
        let mut process = Supervised::spawn("docker-registry", cmd, &dir.path().join("registry.log"))?;
        process.wait_tcp(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(20))?;
        Ok(Self { process, port, dir })
    }

    /// `127.0.0.1:<port>`, the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the registry stores a blob with this hex SHA-256 (filesystem driver layout), e.g. to
    /// corrupt it in a test.
    pub fn blob_data_path(&self, sha256_hex: &str) -> PathBuf {
        self.storage().join(format!(
            "docker/registry/v2/blobs/sha256/{}/{sha256_hex}/data",
            &sha256_hex[..2]
        ))
    }

    /// The storage root.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        self.process.log_tail(64 * 1024)
    }

    /// Directory holding the config, log and storage.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
