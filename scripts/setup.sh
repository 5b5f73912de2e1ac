#!/usr/bin/env bash
# Installs everything driftwatch needs on a fresh Debian 12 machine (as root),
# then installs npm dependencies, builds the BPF object, the native addon and
# the TypeScript. Idempotent: rerunning only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  clang-16 llvm-16 libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config make g++ python3
  busybox-static util-linux kmod podman runc postgresql openssl bpftrace libbpf-tools qemu-system-x86 cpio debootstrap
  docker.io containerd
)

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
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm install brings Node 24 (the "node" package) into node_modules/.bin, so
# every npm script and `npx driftwatch` runs on it whatever node the machine has.
# Its install script builds the BPF object and the addon (native/build.sh);
# "prepare" compiles the TypeScript.
if [ ! -x node_modules/.bin/node ] || [ package.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund
else
  npm run build
fi
echo "setup: done ($(node_modules/.bin/node -v))"
