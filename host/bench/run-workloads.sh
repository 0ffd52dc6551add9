#!/usr/bin/env bash
# Builds what the whole-workload benchmark needs (release) and runs it. Extra arguments go to
# workloads-bench, e.g. `host/bench/run-workloads.sh --reps 5`. Results are printed as Markdown.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weft/target}"
cargo build --release --locked -p weft-host -p weft-host-bench
# e2e/testbins/build.sh provides nats-server.
./e2e/testbins/build.sh >/dev/null
exec "$CARGO_TARGET_DIR/release/workloads-bench" --weft-host "$CARGO_TARGET_DIR/release/weft-host" "$@"
