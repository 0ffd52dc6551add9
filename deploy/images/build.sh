#!/usr/bin/env bash
# Builds and pushes the OCI images weft-operator, weft-host and weft-gateway without a Docker engine:
# crane (go-containerregistry, built by e2e/testbins/build.sh) layers each binary onto a distroless-style
# base made here — the glibc libraries the binary links (from this machine), CA certificates, /etc/passwd
# with the non-root user 65532 and a /tmp, no shell, no package manager. Entrypoint the binary, user
# 65532:65532, so the chart's runAsNonRoot and readOnlyRootFilesystem hold.
#
# Each image is pushed as <registry>/<name>:<tag>-<arch> and the tag <registry>/<name>:<tag> becomes an
# index of every <tag>-<arch> the registry holds (multi-arch: build on, or cross-compile for, each arch
# and run this once per arch).
#
#   deploy/images/build.sh REGISTRY [TAG]      e.g. deploy/images/build.sh localhost:5000/weft 0.1.0
#   BIN_DIR=...   the binaries (default: $CARGO_TARGET_DIR/release, i.e. cargo build --release)
#   ARCH=...      their architecture, as OCI names it (default: this machine's)
#   CRANE=...     crane (default: the one e2e/testbins/build.sh builds)
#   IMAGES=...    which images (default: "weft-operator weft-host weft-gateway")
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
registry="${1:?usage: deploy/images/build.sh REGISTRY [TAG]}"
registry="${registry%/}"
tag="${2:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/deploy/charts/weft/Chart.yaml")}"
bin_dir="${BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/weft/target}/release}"
crane="${CRANE:-$("$root/e2e/testbins/build.sh" | tail -n1)/crane}"
images="${IMAGES:-weft-operator weft-host weft-gateway}"
case "${ARCH:-$(uname -m)}" in
  x86_64|amd64) arch=amd64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) echo "unknown architecture ${ARCH:-$(uname -m)}" >&2; exit 1 ;;
esac
all_arches="amd64 arm64"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# crane's progress goes to a log, shown when a step fails.
c() { "$crane" "$@" 2>>"$work/crane.log" || { cat "$work/crane.log" >&2; return 1; }; }

# A tarball of a directory that does not depend on when or by whom it was made.
layer() { tar --create --file "$2" --directory "$1" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner .; }

for name in $images; do
  binary="$bin_dir/$name"
  [ -x "$binary" ] || { echo "$binary: not built (cargo build --release -p $name)" >&2; exit 1; }

  # The base: what a distroless/cc image holds, for exactly this binary.
  base="$work/$name-base"
  mkdir -p "$base/etc/ssl/certs" "$base/tmp" "$base/home/nonroot"
  chmod 1777 "$base/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$base/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$base/etc/group"
  printf 'hosts: files dns\n' > "$base/etc/nsswitch.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$base/etc/ssl/certs/ca-certificates.crt"
  # The shared libraries it links, at the paths its loader looks in (symlinks resolved).
  for lib in $(ldd "$binary" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }'); do
    mkdir -p "$base$(dirname "$lib")"
    cp -L "$lib" "$base$lib"
  done
  layer "$base" "$work/$name-base.tar"

  app="$work/$name-app"
  mkdir -p "$app/usr/local/bin"
  objcopy --strip-debug "$binary" "$app/usr/local/bin/$name"
  chmod 0755 "$app/usr/local/bin/$name"
  layer "$app" "$work/$name-app.tar"

  ref="$registry/$name:$tag-$arch"
  c append --oci-empty-base -f "$work/$name-base.tar" -f "$work/$name-app.tar" -t "$ref" >/dev/null
  c mutate "$ref" --set-platform "linux/$arch" \
    --entrypoint "/usr/local/bin/$name" --user 65532:65532 --workdir / \
    -l org.opencontainers.image.title="$name" -l org.opencontainers.image.version="$tag" \
    -l org.opencontainers.image.source=https://github.com/weft-run/weft \
    -t "$ref" >/dev/null

  manifests=()
  for a in $all_arches; do
    if "$crane" digest "$registry/$name:$tag-$a" >/dev/null 2>&1; then
      manifests+=(-m "$registry/$name:$tag-$a")
    fi
  done
  c index append "${manifests[@]}" -t "$registry/$name:$tag" >/dev/null
  echo "$registry/$name:$tag ($arch: $(c digest "$ref"))"
done
