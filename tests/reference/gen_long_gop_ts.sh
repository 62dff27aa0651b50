#!/bin/sh
# A 32 s MPEG-TS (32x24 H.264, 4 fps, a keyframe every 8 frames: 128 frames) and ffprobe's frame
# times: a sample whose frames lie more than 10 s apart seeks between them (NVL_VIDEO_SEEK_GAP),
# and the first packet after such a seek was once taken for a jump in the times (the
# discontinuity correction of MPEG-TS/PS), every later frame mapped 13 s early.
# Writes tests/data/media/made/long_gop.ts and tests/data/media/long_gop_ts.json.
#   sh tests/reference/gen_long_gop_ts.sh
set -eu
D=$(cd "$(dirname "$0")/../data/media" && pwd)
ffmpeg -v error -y -f lavfi -i testsrc=size=32x24:rate=4:duration=32 -c:v libx264 -g 8 -crf 40 -pix_fmt yuv420p \
    -f mpegts "$D/made/long_gop.ts"
T=$(ffprobe -v error -select_streams v:0 -show_entries frame=pts_time -of default=nw=1:nk=1 "$D/made/long_gop.ts" |
    grep . | sort -n | paste -sd, -)
N=$(echo "$T" | tr ',' '\n' | wc -l)
printf '{"generator": "tests/reference/gen_long_gop_ts.sh", "frames": %s, "pts_time": [%s]}\n' "$N" "$T" \
    > "$D/long_gop_ts.json"
echo "long_gop.ts: $N frames, $(wc -c < "$D/made/long_gop.ts") bytes"
