"""Small inputs made here for formats and cases the shared corpus lacks, with their references:
- GIF (first frame of an animation), WebP (lossless), BMP, TIFF written by Pillow from a
  synthetic 24x16 image; reference = Pillow's decode of the written file (RGB);
- a CMYK JPEG (Adobe, inverted) written by Pillow; reference = Pillow's RGB conversion;
- rotated.mp4: 48x32 H.264 with a 90-degree display matrix (ffmpeg -metadata:s:v rotate=90);
  reference = ffmpeg's own autorotated first frame (rgb24), as 8x8 block means.
Writes tests/data/media/made/* and tests/data/media/made_goldens.json.

    tests/reference/.venv/bin/python tests/reference/gen_made_media.py
"""
import hashlib
import json
import os
import subprocess

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "media")
MADE = os.path.join(OUT, "made")


def main():
    os.makedirs(MADE, exist_ok=True)
    y, x = np.mgrid[0:16, 0:24]
    rgb = np.stack([(x * 10) % 256, (y * 15) % 256, ((x + y) * 7) % 256], -1).astype(np.uint8)
    im = Image.fromarray(rgb)
    gold = {}
    frames = [im, Image.fromarray(255 - rgb)]
    frames[0].save(os.path.join(MADE, "anim.gif"), save_all=True, append_images=frames[1:], duration=100)
    im.save(os.path.join(MADE, "lossless.webp"), lossless=True)
    im.save(os.path.join(MADE, "image.bmp"))
    im.save(os.path.join(MADE, "image.tiff"))
    im.convert("CMYK").save(os.path.join(MADE, "cmyk.jpg"), quality=95)
    for f in ("anim.gif", "lossless.webp", "image.bmp", "image.tiff", "cmyk.jpg"):
        ref = np.ascontiguousarray(np.asarray(Image.open(os.path.join(MADE, f)).convert("RGB")))
        gold[f] = {"width": ref.shape[1], "height": ref.shape[0], "sha256": hashlib.sha256(ref.tobytes()).hexdigest(),
                   "pixels": ref.reshape(-1).tolist()}
    mp4 = os.path.join(MADE, "rotated.mp4")
    tmp = mp4 + ".tmp.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=48x32:rate=10", "-t", "1",
                    "-pix_fmt", "yuv420p", "-c:v", "libx264", tmp], check=True)
    # the display matrix is written when the rotate tag is set on a stream copy (FFmpeg 5.1)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", tmp, "-c", "copy", "-metadata:s:v:0", "rotate=90", mp4], check=True)
    os.remove(tmp)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", mp4, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_streams", "-of", "json", mp4],
                                      capture_output=True, text=True, check=True).stdout)
    s = probe["streams"][0]
    rot = int(next((d.get("rotation", 0) for d in s.get("side_data_list", []) if "rotation" in d), 0))
    s["side_data_list"] = [{"rotation": rot}]
    w, h = (s["height"], s["width"]) if abs(rot) % 180 == 90 else (s["width"], s["height"])
    a = np.frombuffer(raw, np.uint8).reshape(h, w, 3).astype(np.float64)
    blocks = a.reshape(8, h // 8, 8, w // 8, 3).mean(axis=(1, 3))
    gold["rotated.mp4"] = {"width": w, "height": h, "rotation": s.get("side_data_list", [{}])[0].get("rotation", 0),
                           "block_means": np.round(blocks, 4).reshape(-1).tolist()}
    json.dump({"generator": "tests/reference/gen_made_media.py", "files": gold},
              open(os.path.join(OUT, "made_goldens.json"), "w"))
    print({k: (v["width"], v["height"]) for k, v in gold.items()}, gold["rotated.mp4"]["rotation"])


if __name__ == "__main__":
    main()
