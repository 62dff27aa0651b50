#!/usr/bin/env bash
# Prepares gpu-deps/: the required libraries the GPU machine's image lacks (cJSON, Oniguruma),
# and libpng + libjpeg-turbo (so `nanovl bench` can time a whole page there: its synthetic page
# is a PNG), unpacked from Debian's packages with dpkg -x (headers, .so, pkg-config files). Run it
# here (it needs apt); the device run carries the folder (`carry: ["gpu-deps"]`) and
# scripts/gpu-check.sh points pkg-config and the loader at it. Poppler and FFmpeg (dozens of
# packages) are not brought: the GPU build has PDF and video off when absent, and the tests that
# need them are left out there.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$PWD/gpu-deps"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download libcjson-dev libcjson1 libonig-dev libonig5 libpng-dev libpng16-16 zlib1g-dev \
    libturbojpeg0-dev libturbojpeg0 libjpeg62-turbo-dev libjpeg62-turbo >/dev/null)
rm -rf "$out"
mkdir -p "$out"
for d in "$tmp"/*.deb; do dpkg -x "$d" "$out"; done
echo "gpu-deps: $(du -sh "$out" | cut -f1) in $out"
