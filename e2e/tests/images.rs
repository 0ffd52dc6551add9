//! The OCI images of `deploy/images/build.sh`, built without a Docker engine and pushed to a real
//! registry (`docker-registry`, the CNCF distribution server), then read back with crane: an index per
//! image naming its platform, the binary as entrypoint, the non-root user, a distroless-style file
//! system (no shell), and the binary starting with `--help` from nothing but the image's own files.
//! Built from the test run's binaries; `make images` builds them from a release build.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use weft_e2e::system::{manifests::source_file, workspace_binary};
use weft_testkit::{Supervised, TempDir, free_port, testbin};

const IMAGES: [&str; 3] = ["weft-operator", "weft-host", "weft-gateway"];
const TAG: &str = "0.0.0-test";

/// A registry on a free loopback port, its storage in `dir`.
fn start_registry(dir: &Path) -> (Supervised, SocketAddr) {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("/usr/bin/docker-registry");
    cmd.arg("serve").arg(&config);
    let mut registry =
        Supervised::spawn("docker-registry", cmd, &dir.join("registry.log")).expect("docker-registry (apt)");
    registry
        .wait_tcp(addr, Duration::from_secs(20))
        .expect("the registry listens");
    (registry, addr)
}

fn crane(args: &[&str]) -> Vec<u8> {
    let out = Command::new(testbin("crane").expect("crane (e2e/testbins/build.sh)"))
        .args(args)
        .output()
        .expect("run crane");
    assert!(
        out.status.success(),
        "crane {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn crane_json(args: &[&str]) -> Value {
    serde_json::from_slice(&crane(args)).expect("crane prints JSON")
}

/// Runs `/usr/local/bin/<name> --help` with only the image's files: in a chroot as its user when
/// root, else through the image's own dynamic loader and libraries.
fn help_inside(rootfs: &Path, name: &str) -> std::process::Output {
    let binary = format!("/usr/local/bin/{name}");
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("/usr/sbin/chroot");
        c.arg("--userspec=65532:65532").arg(rootfs).arg(&binary);
        c
    } else {
        let mut c = Command::new(rootfs.join("lib64/ld-linux-x86-64.so.2"));
        c.arg("--library-path")
            .arg(rootfs.join("lib/x86_64-linux-gnu"))
            .arg(rootfs.join(binary.trim_start_matches('/')));
        c
    };
    cmd.arg("--help")
        .env_clear()
        .output()
        .expect("run the image's binary")
}

#[test]
fn images_are_built_without_docker_pushed_and_run_as_non_root_from_their_own_files() {
    let dir = TempDir::new("images").expect("temp dir");
    let (_registry, addr) = start_registry(dir.path());
    let bin_dir: PathBuf = workspace_binary("weft-host")
        .unwrap_or_else(|e| panic!("{e}"))
        .parent()
        .unwrap()
        .to_path_buf();
    let registry = format!("{addr}/weft");
    let out = Command::new(source_file("deploy/images/build.sh"))
        .arg(&registry)
        .arg(TAG)
        .env("BIN_DIR", &bin_dir)
        .env("CRANE", testbin("crane").unwrap())
        .output()
        .expect("run deploy/images/build.sh");
    assert!(
        out.status.success(),
        "build.sh: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    for name in IMAGES {
        let reference = format!("{registry}/{name}:{TAG}");
        // The tag is an index (multi-arch ready) holding this machine's platform.
        let index = crane_json(&["manifest", &reference]);
        assert_eq!(
            index["mediaType"], "application/vnd.oci.image.index.v1+json",
            "{index}"
        );
        let platforms: Vec<String> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap(),
                    m["platform"]["architecture"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(platforms, vec!["linux/amd64"], "{name}");

        let config = crane_json(&["config", &reference]);
        assert_eq!(config["os"], "linux");
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!([format!("/usr/local/bin/{name}")])
        );
        assert_eq!(config["config"]["User"], "65532:65532", "{name} runs as non-root");
        assert_eq!(
            config["config"]["Labels"]["org.opencontainers.image.version"],
            TAG
        );

        // Its file system: the binary, its libraries, CA certificates, the user; no shell.
        let rootfs = dir.path().join(name);
        std::fs::create_dir_all(&rootfs).unwrap();
        let tar = crane(&["export", &reference, "-"]);
        let mut untar = Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(&rootfs)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(untar.stdin.as_mut().unwrap(), &tar).unwrap();
        assert!(untar.wait().unwrap().success());
        assert!(rootfs.join(format!("usr/local/bin/{name}")).is_file());
        assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").is_file());
        let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
        assert!(passwd.contains(":65532:65532:"), "{passwd}");
        for absent in ["bin/sh", "usr/bin/sh", "bin/bash"] {
            assert!(!rootfs.join(absent).exists(), "{name} has no shell ({absent})");
        }

        let help = help_inside(&rootfs, name);
        let stdout = String::from_utf8_lossy(&help.stdout);
        assert!(
            help.status.success() && stdout.contains("Usage:"),
            "{name} --help inside its image: {}\n{stdout}{}",
            help.status,
            String::from_utf8_lossy(&help.stderr)
        );
    }
}
