//! Compiles the single-file broken plugins in `broken/` straight with `rustc` (no cargo, so no build-lock
//! contention with the cargo running this script). They have no dependencies, like a foreign plugin would.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const PLUGINS: [&str; 5] = [
    "wrong_major",
    "short_table",
    "v2_only",
    "null_function",
    "null_table",
];

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let (prefix, suffix) = match env::var("CARGO_CFG_TARGET_OS").as_deref() {
        Ok("windows") => ("", ".dll"),
        Ok("macos" | "ios") => ("lib", ".dylib"),
        _ => ("lib", ".so"),
    };
    println!("cargo::rerun-if-changed=build.rs");
    for name in PLUGINS {
        let source = PathBuf::from("broken").join(format!("{name}.rs"));
        println!("cargo::rerun-if-changed={}", source.display());
        let crate_name = format!("weft_broken_{name}");
        let output = out_dir.join(format!("{prefix}{crate_name}{suffix}"));
        let status = Command::new(&rustc)
            .args([
                "--edition",
                "2024",
                "--crate-type",
                "cdylib",
                "--crate-name",
                &crate_name,
            ])
            .args(["--target", &target, "-C", "opt-level=0", "-o"])
            .arg(&output)
            .arg(&source)
            .status()
            .expect("failed to run rustc");
        assert!(status.success(), "rustc failed to build {}", source.display());
    }
    println!("cargo::rustc-env=WEFT_BROKEN_PLUGIN_PREFIX={prefix}");
    println!("cargo::rustc-env=WEFT_BROKEN_PLUGIN_SUFFIX={suffix}");
}
