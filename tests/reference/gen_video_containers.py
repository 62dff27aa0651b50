"""Videos in containers without an index (MPEG-TS, MPEG-PS) and a file cut short, made with the
ffmpeg CLI, with references from ffprobe (every frame decoded: its presentation time):
- ts_h264.ts: 64x48 H.264 with B-frames (x264's defaults), 25 fps, 3 s, in MPEG-TS: a seek to
  the start time landed past the first keyframe, and no frame decoded (or a GOP was lost);
- ps_mpeg2.mpg: MPEG-2 in MPEG-PS, 25 fps, 3 s: most packets carry only a decode time, which
  mixed with the presentation times mapped frames to the wrong index (the first ones lost);
- cut_short.mp4: an MP4 with its index first (+faststart) cut to half its bytes: the index lists
  75 frames, 2 can be read;
- anim.webp: an animated WebP of two 24x16 frames (Pillow), which FFmpeg 5.1 cannot decode
  (nanovl reads its first frame with libwebp's animation decoder, as Pillow does).
The golden for each: the frames' presentation times (seconds from the first), and the sample
media.h's rule takes at 2 fps (n = max(1, min(max_frames, frames, floor(duration * fps))) times
spread evenly from the first to the last frame's time, each taking the frame on screen then).
Writes tests/data/media/made/{ts_h264.ts, ps_mpeg2.mpg, cut_short.mp4, anim.webp} and
tests/data/media/video_containers_goldens.json.

    tests/reference/.venv/bin/python tests/reference/gen_video_containers.py
"""
import json
import math
import os
import subprocess

import av

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "media")
MADE = os.path.join(OUT, "made")
SRC = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=3"]


def ff(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def probe(path):
    """Every decodable frame's presentation time (PyAV, FFmpeg's own decoder), from the first."""
    t = []
    with av.open(path) as c:
        s = c.streams.video[0]
        try:
            for f in c.decode(s):
                t.append(float(f.pts * s.time_base))
        except av.error.InvalidDataError:  # a file cut short: what came before
            pass
    t.sort()
    return [x - t[0] for x in t] if t else []


def listed(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=nb_frames", "-of",
                          "csv=p=0", path], capture_output=True, text=True, check=True).stdout.strip()
    return int(out) if out.isdigit() else 0


def sample(t, fps=2.0, max_frames=128, native=25.0):
    """media.h's rule on the frames' times t (sorted, from 0); the last frame lasts 1 / native."""
    total = len(t)
    end = t[-1] + 1.0 / native
    n = max(1, min(max_frames, total, int(math.floor((end - t[0]) * fps + 1e-9))))
    want, j = [], 0
    for i in range(n):
        T = t[0] if n == 1 else (t[-1] if i == n - 1 else t[0] + i * ((t[-1] - t[0]) / (n - 1)))
        while j < total - 1 and t[j + 1] <= T + 1e-6:
            j += 1
        if not want or want[-1] != j:
            want.append(j)
    return want


def main():
    os.makedirs(MADE, exist_ok=True)
    gold = {}
    ts = os.path.join(MADE, "ts_h264.ts")
    ff(*SRC, "-c:v", "libx264", "-pix_fmt", "yuv420p", ts)
    ps = os.path.join(MADE, "ps_mpeg2.mpg")
    ff(*SRC, "-c:v", "mpeg2video", ps)
    full = os.path.join("/tmp", "nanovl_cut_full.mp4")
    ff(*SRC, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", full)
    data = open(full, "rb").read()
    cut = os.path.join(MADE, "cut_short.mp4")
    open(cut, "wb").write(data[: len(data) // 2])
    from PIL import Image
    frames = [Image.new("RGB", (24, 16), (200, 40, 40)), Image.new("RGB", (24, 16), (40, 200, 40))]
    frames[0].save(os.path.join(MADE, "anim.webp"), save_all=True, append_images=frames[1:], duration=100, lossless=True)
    n_listed = listed(full)
    os.remove(full)
    for name, path in (("ts_h264.ts", ts), ("ps_mpeg2.mpg", ps)):
        t = probe(path)
        want = sample(t)
        gold[name] = {"frames": len(t), "times": [round(x, 6) for x in t], "sample_2fps": want,
                      "sample_times": [round(t[i], 6) for i in want]}
    # cut short: how many of its frames a decoder gets depends on where the cut falls in a
    # packet; the golden is what its index lists (the full file's frame count)
    gold["cut_short.mp4"] = {"listed_frames": n_listed}
    json.dump({"generator": "tests/reference/gen_video_containers.py", "files": gold},
              open(os.path.join(OUT, "video_containers_goldens.json"), "w"), indent=1)
    print({k: (v.get("frames"), v.get("sample_2fps"), v.get("listed_frames")) for k, v in gold.items()})


if __name__ == "__main__":
    main()
