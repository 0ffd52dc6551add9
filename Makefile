# Weft's developer commands. Build output lives outside the clone so CI's fresh clone reuses it.
CARGO_TARGET_DIR ?= $(HOME)/.cache/weft/target
export CARGO_TARGET_DIR

.PHONY: test testbins fmt lint unit dev crds manifests images

## test: everything CI checks: formatting, clippy with -D warnings, and every test (unit and end to end).
## The tests run inside one shared environment (control plane, NATS, process-kubelet) that weft-dev starts
## once for all test binaries and tears down afterwards; see docs/e2e.md.
test: testbins
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo test --workspace --locked --no-run
	$(CARGO_TARGET_DIR)/debug/weft-dev -- cargo test --workspace --locked

## testbins: build (once, cached by version) kube-apiserver, kube-controller-manager, kubectl, etcd, nats-server, helm,
## prometheus.
testbins:
	./e2e/testbins/build.sh >/dev/null

## crds: regenerate crds/*.yaml from the Rust types (then make manifests: the chart carries a copy).
crds:
	cargo run -q -p weft-crdgen -- crds

## manifests: regenerate the plain manifests of deploy/ and the chart's CRDs from deploy/charts/weft.
manifests: testbins
	./deploy/generate.sh

## images: build weft-operator, weft-host and weft-gateway in release and push their OCI images without a
## Docker engine (deploy/images/build.sh): make images REGISTRY=localhost:5000/weft [TAG=0.1.0].
images: testbins
	@test -n "$(REGISTRY)" || { echo "make images REGISTRY=<registry>/<prefix> [TAG=<tag>]" >&2; exit 2; }
	cargo build --release -p weft-operator -p weft-host -p weft-gateway
	./deploy/images/build.sh $(REGISTRY) $(TAG)

## dev: run the whole system locally on the embedded control plane: the CRDs, weft-operator under its
## ServiceAccount and a host group of weft-host pods (Ctrl-C stops everything). Flags go in DEV_ARGS,
## e.g. make dev DEV_ARGS="--host-replicas 3" (see weft-dev --help).
dev: testbins
	cargo build -p weft-e2e -p weft-host -p weft-operator --bins
	$(CARGO_TARGET_DIR)/debug/weft-dev $(DEV_ARGS)
