//! Compiled components, shared by every workload that uses the same content.
//!
//! A component is compiled once per content digest and engine: the native artifact is written to
//! `<cache>/compiled/<engine key>/<digest>.cwasm` (the key hashes `Engine::precompile_compatibility_hash`,
//! so a differently configured or upgraded engine never picks up a stale artifact) and loaded with
//! `Component::deserialize_file` (memory-mapped, so its code pages are shared and cheap). Loaded
//! components and their pre-instantiations stay in memory while any workload uses them.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::OnceCell;
use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre, Linker};

use super::state::InstanceState;
use crate::metrics::{CompileCacheResult, RuntimeMetrics};
use crate::source::Digest;

/// A compiled component.
pub(crate) struct Prepared {
    pub component: Component,
    /// Its pre-instantiation with the host's linker alone, or why it does not link on its own (it may
    /// still link with the other components of its workload).
    pub base: Result<InstancePre<InstanceState>, String>,
}

/// Why a component could not be prepared.
#[derive(Debug)]
pub(crate) enum PrepareError {
    /// It failed to compile (or its artifact failed to load).
    Compile(String),
}

struct Slot {
    cell: Arc<OnceCell<Arc<Prepared>>>,
    users: usize,
}

/// The compiled-component cache.
pub(crate) struct CompileCache {
    engine: Engine,
    linker: Linker<InstanceState>,
    dir: PathBuf,
    slots: Mutex<HashMap<Digest, Slot>>,
    metrics: RuntimeMetrics,
}

/// Keeps a prepared component in memory while held.
pub(crate) struct Lease {
    cache: Arc<CompileCache>,
    digest: Digest,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.cache.release(&self.digest);
    }
}

/// The Wasmtime version the workspace pins (for readable cache directory names; the hash below is
/// what guarantees compatibility).
const WASMTIME_VERSION: &str = "48.0.8";

/// A directory name identifying the engine's code-generation settings and Wasmtime's version.
pub(crate) fn engine_key(engine: &Engine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("wasmtime-{WASMTIME_VERSION}-{:016x}", hasher.finish())
}

impl CompileCache {
    pub(crate) fn new(
        engine: Engine,
        linker: Linker<InstanceState>,
        cache_dir: &Path,
        metrics: RuntimeMetrics,
    ) -> Self {
        let dir = cache_dir.join("compiled").join(engine_key(&engine));
        Self {
            engine,
            linker,
            dir,
            slots: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// The host's linker.
    pub(crate) fn linker(&self) -> &Linker<InstanceState> {
        &self.linker
    }

    /// Where the artifact for `digest` lives.
    pub(crate) fn artifact_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.cwasm", digest.hex()))
    }

    /// Components loaded in memory right now.
    pub(crate) fn loaded(&self) -> usize {
        self.slots
            .lock()
            .expect("compile cache lock")
            .values()
            .filter(|s| s.cell.initialized())
            .count()
    }

    /// Loads (compiling if needed) the component with `digest`, whose bytes are at `wasm`.
    pub(crate) async fn prepare(
        self: &Arc<Self>,
        digest: &Digest,
        wasm: &Path,
    ) -> Result<(Arc<Prepared>, Lease), PrepareError> {
        let cell = {
            let mut slots = self.slots.lock().expect("compile cache lock");
            let slot = slots.entry(digest.clone()).or_insert_with(|| Slot {
                cell: Arc::default(),
                users: 0,
            });
            slot.users += 1;
            slot.cell.clone()
        };
        let lease = Lease {
            cache: self.clone(),
            digest: digest.clone(),
        };
        if let Some(prepared) = cell.get() {
            self.metrics.observe_compile(CompileCacheResult::Memory, None);
            return Ok((prepared.clone(), lease));
        }
        let result = cell.get_or_try_init(|| self.load(digest, wasm)).await;
        match result {
            Ok(prepared) => Ok((prepared.clone(), lease)),
            // Dropping the lease forgets the empty slot, so a later start retries.
            Err(err) => Err(err),
        }
    }

    fn release(&self, digest: &Digest) {
        let mut slots = self.slots.lock().expect("compile cache lock");
        if let Some(slot) = slots.get_mut(digest) {
            slot.users -= 1;
            if slot.users == 0 {
                slots.remove(digest);
            }
        }
    }

    async fn load(&self, digest: &Digest, wasm: &Path) -> Result<Arc<Prepared>, PrepareError> {
        let artifact = self.artifact_path(digest);
        let engine = self.engine.clone();
        let started = Instant::now();
        let from_disk = {
            let artifact = artifact.clone();
            let engine = engine.clone();
            tokio::task::spawn_blocking(move || load_artifact(&engine, &artifact))
                .await
                .map_err(|e| PrepareError::Compile(format!("loading task failed: {e}")))?
        };
        let component = match from_disk {
            Some(component) => {
                self.metrics.observe_compile(CompileCacheResult::Disk, None);
                component
            }
            None => {
                let wasm = wasm.to_path_buf();
                let dir = self.dir.clone();
                let component =
                    tokio::task::spawn_blocking(move || compile_to(&engine, &wasm, &dir, &artifact))
                        .await
                        .map_err(|e| PrepareError::Compile(format!("compile task failed: {e}")))??;
                self.metrics.observe_compile(
                    CompileCacheResult::Compiled,
                    Some(started.elapsed().as_secs_f64()),
                );
                component
            }
        };
        let base = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| format!("{e:#}"));
        Ok(Arc::new(Prepared { component, base }))
    }
}

/// Loads a precompiled artifact; `None` when there is none or it does not fit this engine (it is then
/// recompiled and overwritten).
fn load_artifact(engine: &Engine, path: &Path) -> Option<Component> {
    if !path.is_file() {
        return None;
    }
    // SAFETY: the file is in the runtime's private cache directory and was written by
    // `Engine::precompile_component` of an engine with the same compatibility hash (the directory
    // name); Wasmtime additionally checks the header and engine settings and fails on a mismatch.
    match unsafe { Component::deserialize_file(engine, path) } {
        Ok(component) => Some(component),
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %format!("{err:#}"), "discarding unusable precompiled component");
            None
        }
    }
}

fn compile_to(engine: &Engine, wasm: &Path, dir: &Path, artifact: &Path) -> Result<Component, PrepareError> {
    let io = |what: &str, e: std::io::Error| PrepareError::Compile(format!("{what}: {e}"));
    let bytes = std::fs::read(wasm).map_err(|e| io(&format!("reading {}", wasm.display()), e))?;
    let compiled = engine
        .precompile_component(&bytes)
        .map_err(|e| PrepareError::Compile(format!("{e:#}")))?;
    std::fs::create_dir_all(dir).map_err(|e| io(&format!("creating {}", dir.display()), e))?;
    let tmp = artifact.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, &compiled).map_err(|e| io(&format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, artifact).map_err(|e| io(&format!("renaming {}", tmp.display()), e))?;
    // Load from the file rather than from `compiled`, so the code is a shared file mapping.
    // SAFETY: written just above by this engine.
    unsafe { Component::deserialize_file(engine, artifact) }
        .map_err(|e| PrepareError::Compile(format!("loading the compiled artifact: {e:#}")))
}
