#!/usr/bin/env bash
# Builds the real control-plane binaries Weft's tests run against, from their Go modules:
# kube-apiserver, kube-controller-manager, kubectl (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3),
# nats-server, helm (chart tests), prometheus (metrics tests) and crane (images). Idempotent: each set
# lands in a cache directory and is only rebuilt when its stamp (version + hash of the pinned
# go.mod/go.sum) changes. Concurrent runs wait for each other (flock); binaries are installed atomically,
# so an interrupted build never leaves a half-written one behind.
# Prints the directory holding the binaries on the last line.
#
#   WEFT_TESTBINS_DIR   where to cache (default: $HOME/.cache/weft/testbins)
set -euo pipefail

K8S_VERSION=v1.37.2
K8S_STAGING=v0.37.2
K8S_MINOR=37
ETCD_VERSION=v3.6.16
NATS_VERSION=v2.12.8
HELM_VERSION=v4.3.2
PROMETHEUS_VERSION=v0.316.0
CRANE_VERSION=v0.22.1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${WEFT_TESTBINS_DIR:-$HOME/.cache/weft/testbins}"
out="$cache/bin"
mkdir -p "$out"

# One build at a time per cache (several checkouts or CI jobs may share it).
exec 9>"$cache/.lock"
flock 9
# Leftovers of an interrupted build (nobody else is building: we hold the lock).
rm -rf "$cache"/.build.*

# -mod=readonly: build exactly what go.mod/go.sum pin; fail instead of resolving anything new.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

stamp_ok() { [ -f "$cache/$1.stamp" ] && [ "$(cat "$cache/$1.stamp")" = "$2" ]; }
# The stamp of a module: its version plus a hash of its pinned dependency files.
stamp() { echo "$1 $(cat "$here/$2/go.mod" "$here/$2/go.sum" | sha256sum | cut -c1-16)"; }
# Builds into a temporary directory and moves the results into $out.
build_into_out() {
  local module="$1"; shift
  local tmp; tmp="$(mktemp -d "$cache/.build.XXXXXX")"
  (cd "$here/$module" && go build -trimpath -o "$tmp/" "$@")
  for f in "$tmp"/*; do mv -f "$f" "$out/"; done
  rm -rf "$tmp"
}

build_k8s() {
  local want; want="$(stamp "kubernetes $K8S_VERSION" kubernetes)"
  if stamp_ok kubernetes "$want" && [ -x "$out/kube-apiserver" ] && [ -x "$out/kube-controller-manager" ] && [ -x "$out/kubectl" ]; then
    return
  fi
  echo "building kube-apiserver, kube-controller-manager, kubectl $K8S_VERSION (cold: ~6 min on 2 cores)" >&2
  local v="k8s.io/component-base/version" c="k8s.io/client-go/pkg/version" ldf="-s -w"
  for p in $v $c; do
    ldf="$ldf -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$K8S_MINOR -X $p.gitTreeState=clean"
  done
  build_into_out kubernetes -tags=selinux,notest,grpcnotrace -ldflags="$ldf" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
  echo "$want" > "$cache/kubernetes.stamp"
}

build_etcd() {
  local want; want="$(stamp "etcd $ETCD_VERSION" etcd)"
  if stamp_ok etcd "$want" && [ -x "$out/etcd" ]; then return; fi
  echo "building etcd $ETCD_VERSION" >&2
  # The package is named "server": build it alone and name the binary.
  local tmp; tmp="$(mktemp -d "$cache/.build.XXXXXX")"
  (cd "$here/etcd" && go build -trimpath -ldflags="-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
  mv -f "$tmp/etcd" "$out/etcd" && rm -rf "$tmp"
  echo "$want" > "$cache/etcd.stamp"
}

build_nats() {
  local want; want="$(stamp "nats-server $NATS_VERSION" nats)"
  if stamp_ok nats "$want" && [ -x "$out/nats-server" ]; then return; fi
  echo "building nats-server $NATS_VERSION" >&2
  build_into_out nats -ldflags="-s -w" github.com/nats-io/nats-server/v2
  echo "$want" > "$cache/nats.stamp"
}

build_helm() {
  local want; want="$(stamp "helm $HELM_VERSION" helm)"
  if stamp_ok helm "$want" && [ -x "$out/helm" ]; then return; fi
  echo "building helm $HELM_VERSION (cold: ~3 min on 2 cores)" >&2
  build_into_out helm -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" helm.sh/helm/v4/cmd/helm
  echo "$want" > "$cache/helm.stamp"
}

build_prometheus() {
  local want; want="$(stamp "prometheus $PROMETHEUS_VERSION remove_all_sd" prometheus)"
  if stamp_ok prometheus "$want" && [ -x "$out/prometheus" ]; then return; fi
  echo "building prometheus $PROMETHEUS_VERSION without service discovery (cold: ~5 min on 2 cores)" >&2
  build_into_out prometheus -tags=remove_all_sd \
      -ldflags="-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
      github.com/prometheus/prometheus/cmd/prometheus
  echo "$want" > "$cache/prometheus.stamp"
}

build_crane() {
  local want; want="$(stamp "crane $CRANE_VERSION" crane)"
  if stamp_ok crane "$want" && [ -x "$out/crane" ]; then return; fi
  echo "building crane $CRANE_VERSION" >&2
  build_into_out crane -ldflags="-s -w -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=$CRANE_VERSION" \
      github.com/google/go-containerregistry/cmd/crane
  echo "$want" > "$cache/crane.stamp"
}

build_nats
build_helm
build_prometheus
build_crane
build_etcd
build_k8s
echo "$out"
