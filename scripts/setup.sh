#!/usr/bin/env bash
# Installs every build and test dependency from Debian 12 packages (needs root for apt-get) and
# builds nanovl into build/. Safe to rerun: apt skips what is installed, cmake rebuilds what changed.
#   scripts/setup.sh     # as root it runs apt-get itself; otherwise through sudo (only for apt-get)
# Environment: NANOVL_CMAKE_ARGS adds configure flags (e.g. "-DNANOVL_CUDA=OFF").
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake pkg-config git
  libcjson-dev libonig-dev                                   # JSON, tokenizer regex (required)
  libdnnl-dev                                                # oneDNN: many-row BF16 matmuls (AMX / AVX512-BF16)
  libpoppler-glib-dev libcairo2-dev                          # PDF
  libturbojpeg0-dev libpng-dev libwebp-dev                   # JPEG, PNG, WebP check
  libheif-dev                                                # HEIF/HEIC photos (libheif, libde265)
  libavformat-dev libavcodec-dev libavutil-dev libswscale-dev # video and other still formats
  clang libclang-rt-14-dev                                   # libFuzzer harnesses, sanitizers
  poppler-utils ffmpeg                                       # pdfinfo/pdftoppm/ffprobe for checks
  socat                                                      # talking to `nanovl serve` from a shell (docs/api.md)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

JOBS=$(nproc 2>/dev/null || echo 2)
# shellcheck disable=SC2086
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release ${NANOVL_CMAKE_ARGS:-}
cmake --build build -j "$JOBS"
echo "built: build/api/nanovl"
