//! A real control plane, NATS and a process-kubelet for Weft's tests and local runs.
//!
//! The environment is etcd → kube-apiserver (RBAC, client certificates, ServiceAccount tokens,
//! `OwnerReferencesPermissionEnforcement`, an audit log) → kube-controller-manager → nats-server, all
//! real binaries from the test-binary cache (`e2e/testbins/build.sh`), on free loopback ports, plus a
//! [process-kubelet](kubelet) that runs pods as local processes with their own loopback IPs.
//!
//! # In tests
//!
//! ```no_run
//! # async fn example() -> Result<(), weft_e2e::Error> {
//! let env = weft_e2e::Env::shared().await; // started once per run, shared by every test
//! let ns = env.new_namespace("my-test").await?; // own namespace, logs printed if the test fails
//! let admin = env.admin_client();
//! let operator = env.service_account_client(ns.name(), "operator").await?; // only its RBAC
//! # Ok(()) }
//! ```
//!
//! [`Env::shared`] connects to the environment named by `WEFT_E2E_ENV` (set by `weft-dev -- <cmd>`,
//! which `make test` uses so that every test binary shares one environment), or else starts one inside
//! the test process. Either way nothing is left running when the run ends: see `docs/e2e.md`.

pub mod audit;
mod controlplane;
mod env;
pub mod kubeconfig;
pub mod kubelet;
mod net;
pub mod pki;
pub mod system;
pub mod testing;
pub mod traffic;

pub use audit::{AuditEvent, AuditLog, AuditMark};
pub use controlplane::{Coordinates, EnvOptions, RunningEnv};
pub use env::{Env, FailureGuard, KubeletRef, TestNamespace};
pub use kubelet::images::{ImageCommand, TESTPOD_IMAGE};

/// Errors from starting or using the environment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A test binary is missing or a process failed to start.
    #[error(transparent)]
    Process(#[from] weft_testkit::Error),
    /// A file-system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("certificates: {0}")]
    Pki(String),
    /// A kubeconfig could not be read.
    #[error("kubeconfig {0}")]
    Kubeconfig(String),
    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: kube::Error,
    },
    /// A component did not become ready in time.
    #[error("{component} was not ready within {timeout:?}: {reason}\n--- end of its log ---\n{log}")]
    NotReady {
        /// The component.
        component: String,
        /// How long we waited.
        timeout: std::time::Duration,
        /// Why it is considered not ready (last probe error, or its exit).
        reason: String,
        /// The tail of its log.
        log: String,
    },
    /// The shared environment could not be started or reached.
    #[error("test environment: {0}")]
    Env(String),
    /// A shipped manifest is missing, malformed, or cannot be adapted.
    #[error("manifest {0}")]
    Manifest(String),
    /// A binary of this workspace was not built.
    #[error(
        "{name} not found (looked at {searched:?}): build it with `cargo build --bin {name}` \
         (`make test` and `make dev` do), or set WEFT_BIN_DIR"
    )]
    MissingBinary {
        /// The binary.
        name: String,
        /// Where it was looked for.
        searched: Vec<std::path::PathBuf>,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let what = what.into();
        move |source| Self::Kube { what, source }
    }
}
