#!/usr/bin/env bash
# Builds the driftwatch sensor image from the Containerfile with podman.
#
#   scripts/build-image.sh [--local-base [--base-only]] [--tag IMAGE]
#
# By default both stages start from Debian images on docker.io. With
# --local-base no container registry is needed: a Debian bookworm minbase is
# made with debootstrap from the Debian mirror and imported into podman as
# both bases (scripts/debian-base.sh); it is kept and reused.
# --base-only makes (or keeps) that base and stops there.
# RUN steps use the host network (apt and npm reach their mirrors).
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=localhost/driftwatch:latest
LOCAL_BASE=0
BASE_ONLY=0

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

args=(--network=host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 -f Containerfile -t "$TAG")
# crun cannot start containers on some hosts (no CAP_SYS_RESOURCE); runc can.
if command -v runc >/dev/null; then args+=(--runtime=runc); fi
# npm in the build trusts what this host trusts (a TLS-intercepting proxy's CA
# included): the bundle is a build secret, used by that step and not stored.
CA_BUNDLE="${BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
if [ -s "$CA_BUNDLE" ]; then args+=(--secret "id=ca,src=$CA_BUNDLE"); fi
if [ "$BASE_ONLY" -eq 1 ]; then
  [ "$LOCAL_BASE" -eq 1 ] || { echo "build-image: --base-only goes with --local-base" >&2; exit 2; }
  scripts/debian-base.sh >/dev/null
  exit 0
fi
if [ "$LOCAL_BASE" -eq 1 ]; then
  BASE_IMAGE="$(scripts/debian-base.sh)"
  args+=(--build-arg "BUILD_BASE=$BASE_IMAGE" --build-arg "RUNTIME_BASE=$BASE_IMAGE")
fi

t0=$SECONDS
podman build "${args[@]}" .
echo "build-image: built $TAG in $((SECONDS - t0))s"
