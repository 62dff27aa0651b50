#!/bin/sh
# Writes tests/data/media/made/huge_frames.mp4: a hostile video input (not a golden), 22 KB of
# H.264 whose two black frames are 9984x9984 (99.7 megapixels, under media_limits' 100 M), so
# that decoding it takes about 1.4 GB (tests/media/test_video_sandbox.c: the decoder process's
# memory bound stops it). Made with the ffmpeg command-line tool (libx264, the lowest quality:
# the frames' content does not matter, only their declared size).
# usage: sh tests/reference/gen_huge_frames.sh [OUT]
out=${1:-$(dirname "$0")/../data/media/made/huge_frames.mp4}
exec ffmpeg -v error -y -f lavfi -i color=black:s=9984x9984:r=1:d=2 -c:v libx264 -preset medium -crf 51 \
    -pix_fmt yuv420p -x264-params keyint=100 -map_metadata -1 -fflags +bitexact "$out"
