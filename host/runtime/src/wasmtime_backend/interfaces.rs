//! The interfaces the backend really offers, for the host's heartbeat (`imports`/`exports`), so the
//! scheduler's interface filter is truthful.
//!
//! Imports are not a hand-kept list: every interface of a catalog of candidates is checked against
//! the linker ([`linking::linker_provides`]), and only those the linker resolves are advertised. The
//! catalog names what a wasmCloud workload may ask for, including interfaces this backend does not
//! offer (they are checked, and left out).

use wasmtime::Engine;
use wasmtime::component::Linker;

use super::linking;
use super::state::InstanceState;
use crate::backend::WitPackage;

/// Candidate imports: `(namespace, package, version, interfaces)`.
const CANDIDATES: &[(&str, &str, &str, &[&str])] = &[
    (
        "wasi",
        "cli",
        "0.2.0",
        &[
            "environment",
            "exit",
            "stdin",
            "stdout",
            "stderr",
            "terminal-input",
            "terminal-output",
            "terminal-stdin",
            "terminal-stdout",
            "terminal-stderr",
        ],
    ),
    ("wasi", "clocks", "0.2.0", &["monotonic-clock", "wall-clock"]),
    ("wasi", "filesystem", "0.2.0", &["preopens", "types"]),
    ("wasi", "io", "0.2.0", &["error", "poll", "streams"]),
    (
        "wasi",
        "random",
        "0.2.0",
        &["insecure", "insecure-seed", "random"],
    ),
    (
        "wasi",
        "sockets",
        "0.2.0",
        &[
            "instance-network",
            "ip-name-lookup",
            "network",
            "tcp",
            "tcp-create-socket",
            "udp",
            "udp-create-socket",
        ],
    ),
    ("wasi", "http", "0.2.0", &["outgoing-handler", "types"]),
    ("wasi", "config", "0.2.0-draft", &["runtime", "store"]),
    ("wasi", "config", "0.2.0-rc.1", &["store"]),
    ("wasi", "logging", "0.1.0-draft", &["logging"]),
    (
        "wasi",
        "keyvalue",
        "0.2.0-draft",
        &["atomics", "batch", "store", "watcher"],
    ),
    (
        "wasi",
        "blobstore",
        "0.2.0-draft",
        &["blobstore", "container", "types"],
    ),
    ("wasmcloud", "messaging", "0.2.0", &["consumer"]),
];

/// The interfaces the backend calls on components: HTTP handlers, and services' `run`.
pub(crate) fn exports() -> Vec<WitPackage> {
    vec![
        WitPackage::new("wasi", "http", "0.2.0", &["incoming-handler"]),
        WitPackage::new("wasi", "cli", "0.2.0", &["run"]),
    ]
}

/// The candidates `linker` provides, grouped by package (packages with none left out).
pub(crate) fn imports(engine: &Engine, linker: &Linker<InstanceState>) -> Vec<WitPackage> {
    CANDIDATES
        .iter()
        .filter_map(|(namespace, package, version, interfaces)| {
            let provided: Vec<&str> = interfaces
                .iter()
                .copied()
                .filter(|i| {
                    linking::linker_provides(engine, linker, &format!("{namespace}:{package}/{i}@{version}"))
                })
                .collect();
            (!provided.is_empty()).then(|| WitPackage::new(namespace, package, version, &provided))
        })
        .collect()
}
