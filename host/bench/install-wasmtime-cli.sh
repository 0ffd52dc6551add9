#!/usr/bin/env bash
# Builds the `wasmtime` CLI (same Wasmtime version as the host) into a cache outside the repository,
# with the features `wasmtime serve` needs. Idempotent; prints the binary's path.
set -euo pipefail
version=48.0.8
root="${WEFT_TOOLS_DIR:-$HOME/.cache/weft/tools}/wasmtime-cli-$version"
bin="$root/bin/wasmtime"
if [ ! -x "$bin" ]; then
  # `serve` alone does not compile in 48.0.8 (it needs component-model-async); clap's help comes
  # only with default features, which are off here.
  CARGO_TARGET_DIR="${WEFT_TOOLS_TARGET_DIR:-$HOME/.cache/weft/tools/target}" \
    cargo install --locked --quiet "wasmtime-cli@$version" --root "$root" --no-default-features \
    --features serve,run,compile,cranelift,pooling-allocator,parallel-compilation,component-model-async >&2
fi
echo "$bin"
