#!/usr/bin/env bash
# Installs everything driftwatch needs on a fresh Debian 12 machine (as root),
# then installs npm dependencies, builds the BPF object, the native addon and
# the TypeScript. Idempotent: rerunning only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/logged.sh
. scripts/lib/logged.sh

APT_PACKAGES=(
  clang-16 llvm-16 libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config make g++ python3
  busybox-static util-linux kmod podman runc postgresql openssl bpftrace libbpf-tools qemu-system-x86 cpio debootstrap
  docker.io containerd
)
# Debian's own Node 18 and npm are only the bootstrap: `npm install` below
# brings Node 24 into node_modules, which runs everything after that.
if ! command -v npm >/dev/null; then APT_PACKAGES+=(nodejs npm); fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing system packages (${missing[*]}); run this script as root" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  run_logged 'apt-get update' apt-get update
  run_logged 'apt-get install' apt-get install -y --no-install-recommends "${missing[@]}"
fi

# npm install brings Node 24 (the "node" package) into node_modules/.bin, so
# every npm script and `npx driftwatch` runs on it whatever node the machine has.
# Its install script builds the BPF object and the addon (native/build.sh);
# "prepare" compiles the TypeScript.
if [ ! -x node_modules/.bin/node ] || [ package.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm install (Node 24, dependencies, BPF object, addon, TypeScript)"
  run_logged 'npm install' npm install --no-audit --no-fund
else
  run_logged 'build' npm run build
fi
# `npx driftwatch` runs this command from node_modules/.bin, on Node 24. The
# package declares no "bin" on purpose: for a package's own bin, Debian's npx
# (npm 9) first installs the whole checkout into its cache, rebuilding it.
ln -sfn ../../bin/driftwatch.js node_modules/.bin/driftwatch
echo "setup: done ($(node_modules/.bin/node -v))"
