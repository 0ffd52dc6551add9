//! Which local command runs a container image.
//!
//! Sources, in order of precedence:
//! 1. registered mappings: one JSON [`ImageCommand`] per file in the environment's image directory
//!    (written by [`register`], e.g. from a test in another process than the kubelet), re-read at every
//!    container start;
//! 2. mappings given to the kubelet at start (`weft-dev --image`, [`crate::EnvOptions::images`]);
//! 3. the built-in test image [`TESTPOD_IMAGE`], run by the `weft-testpod` binary.
//!
//! A mapping for `repo` (no tag or digest) matches every tag of `repo`; one for `repo:tag` matches
//! only that reference.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// The built-in test image. Its entrypoint is the `weft-testpod` binary; the container's `args` pick
/// the mode (`sleep` by default, `http`, `exit`; see `weft-testpod --help`).
pub const TESTPOD_IMAGE: &str = "weft.test/testpod";

/// A local command standing in for a container image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageCommand {
    /// The image reference it stands for (`repo`, `repo:tag` or `repo@digest`).
    pub image: String,
    /// The entrypoint: a local program (absolute path, or a name on `PATH`) and its leading
    /// arguments. Replaces the image's ENTRYPOINT.
    pub command: Vec<String>,
    /// Default arguments, used when the container has neither `command` nor `args` (the image's CMD).
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment for the process (the container's own `env` wins).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl ImageCommand {
    /// Maps `image` to `program` with no default arguments.
    pub fn new(image: impl Into<String>, program: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            command: vec![program.into()],
            args: Vec::new(),
            env: BTreeMap::new(),
        }
    }
}

/// Splits an image reference into repository and tag/digest (`None` when absent).
pub fn split_reference(image: &str) -> (&str, Option<&str>) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo, Some(digest));
    }
    let last_slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[last_slash..].rfind(':') {
        Some(colon) => (
            &image[..last_slash + colon],
            Some(&image[last_slash + colon + 1..]),
        ),
        None => (image, None),
    }
}

/// Finds the mapping for `image` in `candidates` (earlier ones win): an exact match first, then a
/// repository-only mapping.
pub fn find<'a>(image: &str, candidates: &'a [ImageCommand]) -> Option<&'a ImageCommand> {
    if let Some(exact) = candidates.iter().find(|c| c.image == image) {
        return Some(exact);
    }
    let (repo, _) = split_reference(image);
    candidates
        .iter()
        .find(|c| split_reference(&c.image) == (repo, None))
}

/// Writes a mapping into `dir` (atomically; the file name is derived from the image).
pub fn register(dir: &Path, image: &ImageCommand) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let file: String = image
        .image
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{file}.json"));
    let tmp = dir.join(format!(".{file}.{}.tmp", std::process::id()));
    let json = serde_json::to_vec_pretty(image).expect("an image mapping serializes");
    std::fs::write(&tmp, json).map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(format!("rename to {}", path.display()), e))
}

/// Reads every mapping registered in `dir` (unreadable files are reported, not fatal).
pub fn load_registered(dir: &Path) -> (Vec<ImageCommand>, Vec<String>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (found, problems);
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    for path in paths {
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(image) => found.push(image),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    (found, problems)
}

/// The built-in mapping of [`TESTPOD_IMAGE`], if the `weft-testpod` binary can be found.
pub fn builtin() -> Vec<ImageCommand> {
    testpod_binary()
        .map(|bin| vec![ImageCommand::new(TESTPOD_IMAGE, bin.display().to_string())])
        .unwrap_or_default()
}

/// Locates `weft-testpod`: `$WEFT_TESTPOD`, else as [`crate::system::workspace_binary`] does.
pub fn testpod_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WEFT_TESTPOD") {
        return Some(PathBuf::from(path));
    }
    crate::system::workspace_binary("weft-testpod").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_references() {
        assert_eq!(split_reference("nginx"), ("nginx", None));
        assert_eq!(split_reference("nginx:1.27"), ("nginx", Some("1.27")));
        assert_eq!(
            split_reference("localhost:5000/app"),
            ("localhost:5000/app", None)
        );
        assert_eq!(
            split_reference("localhost:5000/app:v1"),
            ("localhost:5000/app", Some("v1"))
        );
        assert_eq!(
            split_reference("ghcr.io/a/b@sha256:abc"),
            ("ghcr.io/a/b", Some("sha256:abc"))
        );
    }

    #[test]
    fn exact_mappings_win_over_repository_mappings() {
        let any = ImageCommand::new("ghcr.io/w/host", "/bin/any");
        let v2 = ImageCommand::new("ghcr.io/w/host:v2", "/bin/v2");
        let list = vec![any.clone(), v2.clone()];
        assert_eq!(find("ghcr.io/w/host:v2", &list), Some(&v2));
        assert_eq!(find("ghcr.io/w/host:v1", &list), Some(&any));
        assert_eq!(find("ghcr.io/w/host", &list), Some(&any));
        assert_eq!(find("ghcr.io/w/other:v1", &list), None);
        let only_tagged = vec![v2];
        assert_eq!(
            find("ghcr.io/w/host:v1", &only_tagged),
            None,
            "a tagged mapping is not a wildcard"
        );
    }

    #[test]
    fn registered_mappings_round_trip_through_files() {
        let dir = weft_testkit::TempDir::new("images").unwrap();
        let mut image = ImageCommand::new("ghcr.io/w/host:1", "/opt/weft-host");
        image.args = vec!["--nats".into(), "x".into()];
        image.env.insert("RUST_LOG".into(), "debug".into());
        register(dir.path(), &image).unwrap();
        std::fs::write(dir.path().join("broken.json"), "{").unwrap();
        let (found, problems) = load_registered(dir.path());
        assert_eq!(found, vec![image]);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }
}
