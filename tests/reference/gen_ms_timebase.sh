#!/bin/sh
# Constant-rate videos in containers that keep times in milliseconds (Matroska rounds 60 fps to 0,
# 17, 33, 50 ms ...): x264 clips remuxed into .mkv, 64x48 at 60 fps for 3 s, 32x24 at 30 fps for
# 4 s and for 231 frames (where linspace(0, 230, 15) computes 114.99999999999999 and truncates it to
# 114), and the frames vLLM's video loader samples from them at 2 fps, at most 128 (model.md 6.1:
# total = the frames ffprobe decodes, native = its r_frame_rate, n = max(1, min(128, total,
# floor(total / native * 2))), idx = numpy.linspace(0, total - 1, n) truncated). Planned on the
# rounded times, nanovl took 5 frames of the 60 fps clip and picked frames one early at 30 fps;
# on the times with a 1e-6 s slack, 115 for the 231-frame clip.
# Writes tests/data/media/made/cfr60_ms.mkv, cfr30_ms.mkv, cfr30_231.mkv and
# tests/data/media/ms_timebase.json.
#   sh tests/reference/gen_ms_timebase.sh     (ffmpeg, ffprobe, python3 with numpy)
set -eu
D=$(cd "$(dirname "$0")/../data/media" && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
out="{\"generator\": \"tests/reference/gen_ms_timebase.sh\", \"videos\": ["
sep=""
for spec in "cfr60_ms 64x48 60 180" "cfr30_ms 32x24 30 120" "cfr30_231 32x24 30 231"; do
    set -- $spec
    ffmpeg -v error -y -f lavfi -i "testsrc=size=$2:rate=$3" -frames:v "$4" -c:v libx264 -g 30 -crf 40 -pix_fmt yuv420p "$T/$1.mp4"
    ffmpeg -v error -y -i "$T/$1.mp4" -c copy "$D/made/$1.mkv"
    total=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$D/made/$1.mkv")
    rate=$(ffprobe -v error -select_streams v:0 -show_entries stream=r_frame_rate -of csv=p=0 "$D/made/$1.mkv")
    idx=$(python3 -c "
import math, numpy as np
total, (a, b) = $total, map(int, '$rate'.split('/'))
native = a / b
n = max(1, min(128, total, math.floor(total / native * 2)))
print(','.join(str(int(i)) for i in np.linspace(0, total - 1, n).astype(int)))")
    out="$out$sep{\"file\": \"made/$1.mkv\", \"frames\": $total, \"rate\": \"$rate\", \"indices\": [$idx]}"
    sep=", "
    echo "$1.mkv: $total frames at $rate, $(wc -c < "$D/made/$1.mkv") bytes, sample $idx"
done
printf '%s]}\n' "$out" > "$D/ms_timebase.json"
