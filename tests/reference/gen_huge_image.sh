#!/bin/sh
# Writes tests/data/media/made/huge_image.webp: a hostile image input (not a golden), 3 KB of
# lossless WebP whose one flat-coloured image is 9000x9000 (81 megapixels, under media_limits'
# 100 M), so that decoding it takes about 570 MB (libwebp's RGBA and the RGB copy):
# tests/media/test_image_sandbox.c checks that the image decoder process's memory bound stops it.
# Made with the ffmpeg command-line tool (libwebp, lossless).
# usage: sh tests/reference/gen_huge_image.sh [OUT]
out=${1:-$(dirname "$0")/../data/media/made/huge_image.webp}
exec ffmpeg -v error -y -f lavfi -i color=c=0x336699:s=9000x9000 -frames:v 1 -c:v libwebp -lossless 1 \
    -map_metadata -1 -fflags +bitexact "$out"
