//! Errors of the runtime crate. Messages are written for the operator: they end up in the
//! `workload.start` reply and from there in the Workload's conditions.

use std::path::PathBuf;

/// Why a workload could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The spec itself is unusable (e.g. no components, a mount of an unknown volume, a bad
    /// `allowedHosts` entry).
    #[error("invalid workload: {0}")]
    InvalidSpec(String),
    /// A component's bytes could not be obtained.
    #[error("component {component:?}: {source}")]
    Fetch {
        /// The component's name in the workload.
        component: String,
        /// What went wrong.
        #[source]
        source: FetchError,
    },
    /// A component failed validation or compilation.
    #[error("component {component:?} ({digest}) failed to compile: {message}")]
    Compile {
        /// The component's name in the workload.
        component: String,
        /// Content digest of what was compiled.
        digest: String,
        /// The compiler's message.
        message: String,
    },
    /// A component compiled but cannot be instantiated here (e.g. it imports an interface this host
    /// does not provide, or does not export what is needed).
    #[error("component {component:?} cannot run on this host: {message}")]
    Link {
        /// The component's name in the workload.
        component: String,
        /// The linker's message.
        message: String,
    },
    /// The spec asks for something this backend does not support.
    #[error("not supported by the {backend} backend: {what}")]
    Unsupported {
        /// The backend's name.
        backend: String,
        /// What was asked for.
        what: String,
    },
    /// The backend is shutting down and takes no new workloads.
    #[error("the runtime backend is shutting down")]
    ShuttingDown,
    /// A local I/O failure (cache directory, volumes).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a component's bytes could not be obtained from its source.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The image reference or URL cannot be parsed.
    #[error("invalid image reference {reference:?}: {reason}")]
    BadReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The source has no such image, tag, blob or file.
    #[error("{reference} not found: {detail}")]
    NotFound {
        /// The reference.
        reference: String,
        /// What exactly was missing.
        detail: String,
    },
    /// The registry refused the credentials (or needs some).
    #[error("unauthorized to pull {reference}: {detail}")]
    Unauthorized {
        /// The reference.
        reference: String,
        /// The registry's answer.
        detail: String,
    },
    /// Downloaded content does not match the digest it was asked for.
    #[error("digest mismatch for {reference}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The reference.
        reference: String,
        /// The digest the reference or manifest names.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// The component is larger than the configured limit.
    #[error("{reference} is too large: {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The reference.
        reference: String,
        /// Its size (or the size read so far).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The content is not a WebAssembly component.
    #[error("{reference} is not a WebAssembly component: {detail}")]
    NotAComponent {
        /// The reference.
        reference: String,
        /// What it is instead.
        detail: String,
    },
    /// The pull policy is `Never` and nothing is cached for the reference.
    #[error("{reference} is not in the local cache and imagePullPolicy is Never")]
    NotCached {
        /// The reference.
        reference: String,
    },
    /// The registry or server answered something this client does not understand.
    #[error("unexpected response for {reference}: {detail}")]
    Protocol {
        /// The reference.
        reference: String,
        /// What was unexpected.
        detail: String,
    },
    /// A network failure or timeout.
    #[error("cannot reach the source of {reference}: {detail}")]
    Network {
        /// The reference.
        reference: String,
        /// The failure.
        detail: String,
    },
    /// A local file or cache failure.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
