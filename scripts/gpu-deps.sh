#!/usr/bin/env bash
# Prepares gpu-deps/: the required libraries the GPU machine's image lacks (cJSON, Oniguruma),
# libpng + libjpeg-turbo (so `nanovl bench` can time a whole page there: its synthetic page is a
# PNG), libwebp (WebP as Pillow decodes it: without it FFmpeg's decoder differs by up to 82 levels) and pkgconf (the image may have no pkg-config, which CMake needs to find any of them),
# unpacked from Debian's packages with dpkg -x (headers, .so, pkg-config files); and
# gpu-deps/media.tar.xz, this machine's Poppler + cairo + FFmpeg with their headers, the libraries
# nanovl never calls replaced by stubs (scripts/gpu-media-bundle.py: ~17 MB, so that the tree and
# the carry stay under the device tool's 64 MiB), so that the PDF and video tests and the end-to-end
# goldens run on the device too; and gpu-deps/ttft_video.mp4, a 64 s 720p clip for the video time
# to first token. Run it here (it needs apt, python3 and the media libraries installed); the device
# run carries the folder (`carry: ["gpu-deps"]`, about 30 MB) and scripts/gpu-check.sh points
# pkg-config, the compiler and the loader at it.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$PWD/gpu-deps"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download libcjson-dev libcjson1 libonig-dev libonig5 libpng-dev libpng16-16 zlib1g-dev \
    libturbojpeg0-dev libturbojpeg0 libjpeg62-turbo-dev libjpeg62-turbo libwebp-dev libwebp7 libwebpdemux2 libwebpmux3 pkgconf-bin libpkgconf3 >/dev/null)
rm -rf "$out"
mkdir -p "$out"
for d in "$tmp"/*.deb; do dpkg -x "$d" "$out"; done
python3 scripts/gpu-media-bundle.py "$out/media.tar.xz"
# the video for #15's time to first token (128 frames at 2 fps: 64 s of 1280x720 at 30 fps, H.264,
# FFmpeg's moving test pattern; ~5 MB), made with this machine's ffmpeg where it has one
if command -v ffmpeg >/dev/null 2>&1; then
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=1280x720:rate=30:duration=64" -c:v libx264 \
      -preset veryfast -crf 36 -pix_fmt yuv420p -g 60 "$out/ttft_video.mp4"
fi
echo "gpu-deps: $(du -sh "$out" | cut -f1) in $out"
