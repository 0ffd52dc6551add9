//! Test support for the scheduling crates: broken plugins, built from `broken/` by this crate's build
//! script; the path of the example plugin, which the calling crate builds as a dev-dependency; and random
//! clusters and workloads ([`clusters`]).

pub mod clusters;

use std::path::PathBuf;

const PREFIX: &str = env!("WEFT_BROKEN_PLUGIN_PREFIX");
const SUFFIX: &str = env!("WEFT_BROKEN_PLUGIN_SUFFIX");

fn broken(name: &str) -> PathBuf {
    PathBuf::from(env!("OUT_DIR")).join(format!("{PREFIX}weft_broken_{name}{SUFFIX}"))
}

/// Exports the v1 entry but declares ABI major 2.
pub fn wrong_major() -> PathBuf {
    broken("wrong_major")
}

/// A v1 table holding only the header and the name.
pub fn short_table() -> PathBuf {
    broken("short_table")
}

/// Exports only `weft_scheduler_plugin_v2`.
pub fn v2_only() -> PathBuf {
    broken("v2_only")
}

/// A v1 table whose `place` is null.
pub fn null_function() -> PathBuf {
    broken("null_function")
}

/// An entry point that returns null.
pub fn null_table() -> PathBuf {
    broken("null_table")
}

/// The example plugin's `cdylib` (`example-spread`).
pub fn example_plugin() -> PathBuf {
    dependency_cdylib("weft_scheduler_example_plugin")
}

/// The misbehaving plugin's `cdylib` (`misbehaving-spread`).
pub fn misbehaving_plugin() -> PathBuf {
    dependency_cdylib("weft_scheduler_misbehaving_plugin")
}

/// A `cdylib` that cargo builds next to the running test or bench binary because the calling crate has its
/// package as a dev-dependency.
///
/// # Panics
/// If it is not there, with a message saying how to get it.
fn dependency_cdylib(crate_name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the running binary has a path");
    let file = format!("{PREFIX}{crate_name}{SUFFIX}");
    let deps = exe.parent().expect("the binary is in a directory");
    let candidates = [deps.join(&file), deps.parent().unwrap_or(deps).join(&file)];
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "plugin not found at {}; add its package as a dev-dependency of the calling crate",
                candidates[0].display()
            )
        })
}
