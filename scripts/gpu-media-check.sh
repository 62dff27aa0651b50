#!/usr/bin/env bash
# Checks gpu-deps/media.tar.xz (scripts/gpu-media-bundle.py) here, before a GPU host relies on it:
#   1. every library build/'s binaries load for PDF and video comes from the bundle (nothing but
#      the C library, libstdc++/libgcc_s, OpenMP and the project's other dependencies from the
#      system), so the stubs stand in for what they replace;
#   2. the CPU suite (media decoding against its goldens, the end-to-end VL goldens, the engine)
#      passes with the bundle's libraries first on the loader's path: no stub is relied on.
#   scripts/gpu-media-check.sh [BUILD_DIR]      (default build/; run after scripts/gpu-deps.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
B="${1:-build}"
[ -f gpu-deps/media.tar.xz ] || { echo "gpu-media-check: no gpu-deps/media.tar.xz (run scripts/gpu-deps.sh)"; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
tar xJf gpu-deps/media.tar.xz -C "$tmp"
lib="$tmp/media/lib"
outside=$(LD_LIBRARY_PATH="$lib" ldd "$B/tests/api/test_engine_e2e" | awk '$3 ~ /^\// && index($3, "'"$lib"'") != 1 {print $1}' |
  grep -vE '^(libc|libm|libstdc\+\+|libgcc_s|libgomp|libpthread|libdl|librt|libresolv)\.so|^(libonig|libcjson|libdnnl|libturbojpeg)\.' || true)
if [ -n "$outside" ]; then
  echo "gpu-media-check: loaded from outside the bundle: $outside"; exit 1
fi
echo "gpu-media-check: every media library from the bundle ($(ls "$lib" | wc -l) files)"
LD_LIBRARY_PATH="$lib" ctest --test-dir "$B" -j "$(nproc 2>/dev/null || echo 2)" -LE "gpu|bench|slow" --output-on-failure
