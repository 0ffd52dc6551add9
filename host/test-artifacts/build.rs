//! Builds `host/test-components` (a separate workspace) for `wasm32-wasip2` with a nested cargo and
//! writes the paths of the resulting `.wasm` files to `$OUT_DIR/components.rs`.
//!
//! The nested build uses its own target directory (`$CARGO_TARGET_DIR/test-components`, or one under
//! `$OUT_DIR`), so it never waits on the lock the outer cargo holds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

const COMPONENTS: [(&str, &str); 12] = [
    ("HELLO", "hello"),
    ("ECHO", "echo"),
    ("ENV_CONFIG", "env-config"),
    ("SPINNER", "spinner"),
    ("HOG", "hog"),
    ("HTTP_CALLER", "http-caller"),
    ("GREETER", "greeter"),
    ("GREET_HTTP", "greet-http"),
    ("GREET_INLINE", "greet-inline"),
    ("KV_HTTP", "kv-http"),
    ("KV_COUNTER", "kv-counter"),
    ("TCP_CLIENT", "tcp-client"),
];

fn watch(dir: &Path) {
    for entry in fs::read_dir(dir).expect("read test-components") {
        let path = entry.expect("read test-components entry").path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            watch(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let guests = manifest_dir.join("../test-components");
    let guests = guests.canonicalize().unwrap_or(guests);
    watch(&guests);
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let target_dir = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("test-components"),
        None => out_dir.join("test-components-target"),
    };
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&guests)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(guests.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // Flags and wrappers meant for the outer (host) build must not leak into the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo to build the test components");
    assert!(
        status.success(),
        "building host/test-components for wasm32-wasip2 failed (is the target installed? `rustup target add wasm32-wasip2`)"
    );

    let wasm_dir = target_dir.join("wasm32-wasip2/release");
    let mut code = String::new();
    for (constant, crate_name) in COMPONENTS {
        let path = wasm_dir.join(format!("{crate_name}.wasm"));
        assert!(
            path.is_file(),
            "expected {} after building the test components",
            path.display()
        );
        code.push_str(&format!(
            "/// Path of the `{crate_name}` test component (`host/test-components/{crate_name}`).\npub const {constant}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    fs::write(out_dir.join("components.rs"), code).expect("write components.rs");
}
