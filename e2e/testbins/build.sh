#!/usr/bin/env bash
# Builds the real control-plane binaries Weft's tests run against, from their Go modules:
# kube-apiserver, kube-controller-manager, kubectl (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3)
# and nats-server. Idempotent: each set lands in a cache directory keyed by its version and is only built
# when its version stamp is missing. Prints the directory holding the binaries on the last line.
#
#   WEFT_TESTBINS_DIR   where to cache (default: $HOME/.cache/weft/testbins)
set -euo pipefail

K8S_VERSION=v1.37.2
K8S_STAGING=v0.37.2
K8S_MINOR=37
ETCD_VERSION=v3.6.16
NATS_VERSION=v2.12.8

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${WEFT_TESTBINS_DIR:-$HOME/.cache/weft/testbins}"
out="$cache/bin"
mkdir -p "$out"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

stamp_ok() { [ -f "$cache/$1.stamp" ] && [ "$(cat "$cache/$1.stamp")" = "$2" ]; }

build_k8s() {
  local want="kubernetes $K8S_VERSION"
  if stamp_ok kubernetes "$want" && [ -x "$out/kube-apiserver" ] && [ -x "$out/kube-controller-manager" ] && [ -x "$out/kubectl" ]; then
    return
  fi
  echo "building kube-apiserver, kube-controller-manager, kubectl $K8S_VERSION (cold: ~10-20 min)" >&2
  local v="k8s.io/component-base/version" c="k8s.io/client-go/pkg/version" ldf="-s -w"
  for p in $v $c; do
    ldf="$ldf -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$K8S_MINOR -X $p.gitTreeState=clean"
  done
  (cd "$here/kubernetes" && go build -trimpath -tags=selinux,notest,grpcnotrace -ldflags="$ldf" -o "$out/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
  echo "$want" > "$cache/kubernetes.stamp"
}

build_etcd() {
  local want="etcd $ETCD_VERSION"
  if stamp_ok etcd "$want" && [ -x "$out/etcd" ]; then return; fi
  echo "building etcd $ETCD_VERSION" >&2
  (cd "$here/etcd" && go build -trimpath -ldflags="-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
  echo "$want" > "$cache/etcd.stamp"
}

build_nats() {
  local want="nats-server $NATS_VERSION"
  if stamp_ok nats "$want" && [ -x "$out/nats-server" ]; then return; fi
  echo "building nats-server $NATS_VERSION" >&2
  (cd "$here/nats" && go build -trimpath -ldflags="-s -w" -o "$out/nats-server" github.com/nats-io/nats-server/v2)
  echo "$want" > "$cache/nats.stamp"
}

build_nats
build_etcd
build_k8s
echo "$out"
