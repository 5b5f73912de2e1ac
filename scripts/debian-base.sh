#!/usr/bin/env bash
# Makes a pristine Debian 12 (bookworm) minbase image in podman with
# debootstrap, from the Debian mirror only (no container registry), and keeps
# it: a second run reuses it. Prints the image name on stdout.
#
#   scripts/debian-base.sh
#
# Used by scripts/build-image.sh --local-base and by the test that runs
# scripts/setup.sh on a machine with nothing but Debian on it.
set -euo pipefail

# Bump the suffix when this script changes what it makes, so a kept base is made again.
BASE_IMAGE=localhost/driftwatch-base:bookworm-1
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

command -v podman >/dev/null || { echo "debian-base: podman is not installed" >&2; exit 1; }
if podman image exists "$BASE_IMAGE"; then
  echo "debian-base: reusing $BASE_IMAGE" >&2
  echo "$BASE_IMAGE"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "debian-base: needs root (debootstrap)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "debian-base: debootstrap is not installed (scripts/setup.sh installs it)" >&2; exit 1; }

dir="$(mktemp -d "${TMPDIR:-/tmp}/driftwatch-base-XXXXXX")"
trap 'rm -rf "$dir"' EXIT
echo "debian-base: making $BASE_IMAGE (debootstrap --variant=minbase bookworm from $MIRROR)" >&2
t0=$SECONDS
debootstrap --variant=minbase bookworm "$dir/rootfs" "$MIRROR" >"$dir/debootstrap.log" 2>&1 || {
  echo "debian-base: debootstrap failed; its last lines:" >&2
  tail -n 30 "$dir/debootstrap.log" >&2
  exit 1
}
cat >"$dir/rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY_MIRROR bookworm-security main
SOURCES
rm -rf "$dir"/rootfs/var/cache/apt/archives/*.deb "$dir"/rootfs/var/lib/apt/lists/* "$dir"/rootfs/var/log/*.log
# Two makers racing: the second import just retags the same content.
tar --numeric-owner -C "$dir/rootfs" -c . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
echo "debian-base: made $BASE_IMAGE in $((SECONDS - t0))s" >&2
echo "$BASE_IMAGE"
