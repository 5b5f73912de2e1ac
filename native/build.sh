#!/usr/bin/env bash
# Builds the BPF object + skeleton, then the ebpf-napi-loader addon against
# the headers of the Node that runs it (the Node 24 that npm install brought).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
make -s -C "$root/bpf/tracee"
node_prefix="$(dirname "$(dirname "$(node -p 'require("fs").realpathSync(process.execPath)')")")"
nodedir="$node_prefix"
if [ ! -f "$nodedir/include/node/node_api.h" ]; then
  # the "node" npm package hard-links its binary; the headers ship in node-<os>-<arch>
  nodedir="$(node -p "require('path').dirname(require.resolve('node-' + process.platform + '-' + process.arch + '/package.json', {paths: [require.resolve('node/package.json', {paths: ['$root']})]}))" 2>/dev/null || true)"
fi
if [ ! -f "$nodedir/include/node/node_api.h" ]; then
  # a later `npm install <pkg>` prunes that nested package: fetch the same
  # version's headers from the npm registry once and keep them beside the addon
  ver="$(node -p 'process.version.slice(1)')"
  pkg="$(node -p '`node-${process.platform}-${process.arch}`')"
  cache="$root/native/.node-headers/$ver"
  if [ ! -f "$cache/package/include/node/node_api.h" ]; then
    rm -rf "$cache" && mkdir -p "$cache"
    (cd "$cache" && npm pack --silent "$pkg@$ver" >/dev/null && tar -xzf ./*.tgz package/include && rm -f ./*.tgz) || true
  fi
  nodedir="$cache/package"
fi
if [ ! -f "$nodedir/include/node/node_api.h" ]; then
  echo "native/build.sh: no Node headers found for $(node -v)" >&2
  exit 1
fi
cd "$root/native"
node "$root/node_modules/node-gyp/bin/node-gyp.js" rebuild --nodedir="$nodedir" --loglevel=warn
# The self-test payload runs chrooted in an overlay with nothing else in it: static.
cc -static -O2 -Wall -o "$root/native/build/dw-selftest" "$root/native/selftest/dw-selftest.c"
