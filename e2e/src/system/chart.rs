//! Weft's Helm chart (`deploy/charts/weft`) through the real `helm` that `e2e/testbins/build.sh`
//! builds: lint, template (as JSON documents) and install/uninstall onto the environment.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::manifests::{parse_documents, source_file};
use crate::Error;

/// The chart, relative to the source tree.
pub const CHART_DIR: &str = "deploy/charts/weft";

/// The `helm` binary and the chart it works on.
#[derive(Debug, Clone)]
pub struct Chart {
    helm: PathBuf,
    dir: PathBuf,
    kubeconfig: Option<PathBuf>,
}

/// What `helm` printed when it failed (or succeeded).
#[derive(Debug, Clone)]
pub struct HelmOutput {
    /// Whether it exited 0.
    pub success: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Chart {
    /// The shipped chart with the cached `helm`.
    pub fn shipped() -> Result<Self, Error> {
        Ok(Self {
            helm: weft_testkit::testbin("helm")?,
            dir: source_file(CHART_DIR),
            kubeconfig: None,
        })
    }

    /// The same chart, talking to the cluster of `kubeconfig` (for install/uninstall).
    pub fn with_kubeconfig(mut self, kubeconfig: &Path) -> Self {
        self.kubeconfig = Some(kubeconfig.to_path_buf());
        self
    }

    /// The chart's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `helm args…` with its state kept out of `$HOME` (a temporary config/cache directory).
    pub fn helm<I, S>(&self, args: I) -> Result<HelmOutput, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let state = std::env::temp_dir().join(format!("weft-helm-{}", std::process::id()));
        let mut cmd = Command::new(&self.helm);
        cmd.args(args)
            .env("HELM_CONFIG_HOME", state.join("config"))
            .env("HELM_CACHE_HOME", state.join("cache"))
            .env("HELM_DATA_HOME", state.join("data"));
        if let Some(kubeconfig) = &self.kubeconfig {
            cmd.env("KUBECONFIG", kubeconfig);
        }
        let out = cmd
            .output()
            .map_err(|e| Error::io(format!("run {}", self.helm.display()), e))?;
        Ok(HelmOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// `helm lint` with `--set` values; the output whether it passed or not.
    pub fn lint(&self, set: &[&str]) -> Result<HelmOutput, Error> {
        let mut args = vec![
            "lint".to_string(),
            self.dir.display().to_string(),
            "--strict".into(),
        ];
        args.extend(set_args(set));
        self.helm(args)
    }

    /// `helm template` of release `weft` in `namespace` with `--set` values, as JSON documents; an
    /// error carrying helm's message when it refuses the values.
    pub fn template(&self, namespace: &str, set: &[&str]) -> Result<Vec<Value>, Error> {
        let mut args = vec![
            "template".to_string(),
            "weft".into(),
            self.dir.display().to_string(),
            "--namespace".into(),
            namespace.into(),
        ];
        args.extend(set_args(set));
        let out = self.helm(args)?;
        if !out.success {
            return Err(Error::Manifest(format!(
                "helm template refused: {}",
                out.stderr.trim()
            )));
        }
        parse_documents(&out.stdout).map_err(|e| Error::Manifest(format!("helm template output: {e}")))
    }

    /// `helm install weft` into `namespace` (created if missing) with `--set` values, waiting for
    /// nothing (the caller checks readiness). With `skip_crds` the chart's CRDs are left to whoever
    /// installed them (`--skip-crds`).
    pub fn install(&self, namespace: &str, set: &[&str], skip_crds: bool) -> Result<HelmOutput, Error> {
        let mut args = vec![
            "install".to_string(),
            "weft".into(),
            self.dir.display().to_string(),
            "--namespace".into(),
            namespace.into(),
            "--create-namespace".into(),
        ];
        if skip_crds {
            args.push("--skip-crds".into());
        }
        args.extend(set_args(set));
        self.helm(args)
    }

    /// `helm uninstall weft` from `namespace`.
    pub fn uninstall(&self, namespace: &str) -> Result<HelmOutput, Error> {
        self.helm(["uninstall", "weft", "--namespace", namespace, "--wait"])
    }
}

fn set_args(set: &[&str]) -> Vec<String> {
    set.iter()
        .flat_map(|s| ["--set".to_string(), s.to_string()])
        .collect()
}

/// The documents of `kind` among `docs`.
pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The document of `kind` named `name`, if any.
pub fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

/// The args of container `container` of the Deployment `deployment` among `docs`.
pub fn container_args(docs: &[Value], deployment: &str, container: &str) -> Vec<String> {
    named(docs, "Deployment", deployment)
        .and_then(|d| d["spec"]["template"]["spec"]["containers"].as_array())
        .and_then(|cs| cs.iter().find(|c| c["name"] == container))
        .and_then(|c| c["args"].as_array())
        .map(|args| {
            args.iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
