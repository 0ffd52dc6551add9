#!/usr/bin/env bash
# Builds everything the host benchmark needs (release) and runs it. Extra arguments go to host-bench,
# e.g. `host/bench/run.sh --reps 5 --duration 10`. Results are printed as Markdown.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weft/target}"
wasmtime=$(host/bench/install-wasmtime-cli.sh)
cargo build --release --locked -p weft-host -p weft-host-bench
# e2e/testbins/build.sh provides nats-server.
./e2e/testbins/build.sh >/dev/null
exec "$CARGO_TARGET_DIR/release/host-bench" \
  --weft-host "$CARGO_TARGET_DIR/release/weft-host" \
  --plain "$CARGO_TARGET_DIR/release/plain-hello" \
  --wasmtime "$wasmtime" "$@"
