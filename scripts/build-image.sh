#!/usr/bin/env bash
# Builds the driftwatch sensor image from the Containerfile with podman.
#
#   scripts/build-image.sh [--local-base [--base-only]] [--tag IMAGE]
#
# By default both stages start from Debian images on docker.io. With
# --local-base no container registry is needed: a Debian bookworm minbase is
# made with debootstrap from the Debian mirror and imported into podman as
# both bases; it is kept and reused (made again only when the image is gone).
# --base-only makes (or keeps) that base and stops there.
# RUN steps use the host network (apt and npm reach their mirrors).
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=localhost/driftwatch:latest
LOCAL_BASE=0
BASE_ONLY=0
# Bump the suffix when make_base changes, so a kept base is made again.
BASE_IMAGE=localhost/driftwatch-base:bookworm-1
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

usage() { sed -n '2,12s/^# \{0,1\}//p' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --local-base) LOCAL_BASE=1 ;;
    --base-only) BASE_ONLY=1 ;;
    --tag) [ $# -ge 2 ] || { usage >&2; exit 2; }; TAG="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build-image: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

command -v podman >/dev/null || { echo "build-image: podman is not installed" >&2; exit 1; }

make_base() {
  if podman image exists "$BASE_IMAGE"; then
    echo "build-image: reusing $BASE_IMAGE"
    return
  fi
  [ "$(id -u)" -eq 0 ] || { echo "build-image: --local-base needs root (debootstrap)" >&2; exit 1; }
  command -v debootstrap >/dev/null || { echo "build-image: debootstrap is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
  local dir
  dir="$(mktemp -d "${TMPDIR:-/tmp}/driftwatch-base-XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$dir'" EXIT
  echo "build-image: making $BASE_IMAGE (debootstrap --variant=minbase bookworm from $MIRROR)"
  local t0=$SECONDS
  debootstrap --variant=minbase bookworm "$dir/rootfs" "$MIRROR" >"$dir/debootstrap.log" 2>&1 || {
    tail -n 30 "$dir/debootstrap.log" >&2
    exit 1
  }
  cat >"$dir/rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY_MIRROR bookworm-security main
SOURCES
  rm -rf "$dir"/rootfs/var/cache/apt/archives/*.deb "$dir"/rootfs/var/lib/apt/lists/* "$dir"/rootfs/var/log/*.log
  tar --numeric-owner -C "$dir/rootfs" -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$dir"
  trap - EXIT
  echo "build-image: made $BASE_IMAGE in $((SECONDS - t0))s"
}

args=(--network=host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 -f Containerfile -t "$TAG")
# crun cannot start containers on some hosts (no CAP_SYS_RESOURCE); runc can.
if command -v runc >/dev/null; then args+=(--runtime=runc); fi
# npm in the build trusts what this host trusts (a TLS-intercepting proxy's CA
# included): the bundle is a build secret, used by that step and not stored.
CA_BUNDLE="${BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
if [ -s "$CA_BUNDLE" ]; then args+=(--secret "id=ca,src=$CA_BUNDLE"); fi
if [ "$BASE_ONLY" -eq 1 ]; then
  [ "$LOCAL_BASE" -eq 1 ] || { echo "build-image: --base-only goes with --local-base" >&2; exit 2; }
  make_base
  exit 0
fi
if [ "$LOCAL_BASE" -eq 1 ]; then
  make_base
  args+=(--build-arg "BUILD_BASE=$BASE_IMAGE" --build-arg "RUNTIME_BASE=$BASE_IMAGE")
fi

t0=$SECONDS
podman build "${args[@]}" .
echo "build-image: built $TAG in $((SECONDS - t0))s"
