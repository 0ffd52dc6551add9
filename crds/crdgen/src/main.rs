//! `crdgen`: writes the CustomResourceDefinition manifests of weft-crds into a directory, one file per
//! CRD (`<plural>.runtime.wasmcloud.dev.yaml`). `make crds` runs it on `crds/`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Write Weft's CustomResourceDefinition manifests.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Directory to write the manifests into.
    dir: PathBuf,
    /// Only check that the files in DIR are up to date; exit non-zero if any differs.
    #[arg(long)]
    check: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let manifests = weft_crds::manifests()?;
    let mut stale = Vec::new();
    for manifest in &manifests {
        let path = args.dir.join(&manifest.file_name);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() == Some(manifest.yaml.as_str()) {
            continue;
        }
        if args.check {
            stale.push(path.display().to_string());
        } else {
            std::fs::write(&path, &manifest.yaml).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        anyhow::bail!("out of date (run `make crds`): {}", stale.join(", "));
    }
    Ok(())
}
