"""HEIF/HEIC stills (the iPhone's photo format) for media/heif.c, written and read back by
pillow-heif (libheif + x265 / libde265 in its wheel; requirements.txt), which Pillow uses for
HEIF:
- photo.heic: 63x47 RGB (odd sizes: 4:2:0 chroma at the edges), a gradient with noise, quality 90;
- alpha.heic: 32x24 RGBA, alpha varying over the image;
- deep.heic: 40x30 at 10 bits (saved from a 16-bit image), read at 8 bits as pillow-heif does
  (options.CONVERT_HDR_TO_8BIT, its default);
- premult.heic: 32x24 with premultiplied alpha (mode RGBa, 4:4:4, quality 100).
Reference = pillow-heif's decode (transformations applied), as RGB; alpha composited on white
with nanovl's rounding for every format: (c*a + 255*(255-a) + 127) // 255, and for premultiplied
samples (which pillow-heif gives as stored, mode RGBa) min(255, c + 255 - a).
Writes tests/data/media/made/*.heic and tests/data/media/heif_goldens.json.

    tests/reference/.venv/bin/python tests/reference/gen_heif.py
"""
import hashlib
import json
import os

import numpy as np
import pillow_heif
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "media")
MADE = os.path.join(OUT, "made")


def reference(path):
    h = pillow_heif.open_heif(path, convert_hdr_to_8bit=True)
    a = np.asarray(h.to_pillow())
    if h.mode == "RGBa":
        rgb, al = a[..., :3].astype(np.int32), a[..., 3:].astype(np.int32)
        a = np.minimum(rgb + 255 - al, 255).astype(np.uint8)
    elif a.ndim == 3 and a.shape[2] == 4:
        rgb, al = a[..., :3].astype(np.uint32), a[..., 3:].astype(np.uint32)
        a = ((rgb * al + 255 * (255 - al) + 127) // 255).astype(np.uint8)
    return np.ascontiguousarray(a[..., :3]), h.info.get("bit_depth", 8) if hasattr(h, "info") else 8


def main():
    os.makedirs(MADE, exist_ok=True)
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:47, 0:63]
    rgb = np.stack([x * 4, y * 5, (x + y) * 2], -1) + rng.integers(0, 24, (47, 63, 3))
    pillow_heif.from_pillow(Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))).save(
        os.path.join(MADE, "photo.heic"), quality=90)
    y, x = np.mgrid[0:24, 0:32]
    rgba = np.stack([x * 8, 255 - y * 10, (x * y) % 256, (x * 8 + y * 3) % 256], -1).astype(np.uint8)
    pillow_heif.from_pillow(Image.fromarray(rgba, "RGBA")).save(os.path.join(MADE, "alpha.heic"), quality=90)
    y, x = np.mgrid[0:30, 0:40]
    deep = np.stack([x * 1600, y * 2100, (x + y) * 900], -1).astype(np.uint16)
    hf = pillow_heif.from_bytes(mode="RGB;16", size=(40, 30), data=deep.tobytes())
    hf.save(os.path.join(MADE, "deep.heic"), quality=90)
    c = rgba[..., :3].astype(np.uint32)
    al = rgba[..., 3:].astype(np.uint32)
    premult = np.dstack([(c * al // 255).astype(np.uint8), rgba[..., 3:]])
    pillow_heif.from_bytes(mode="RGBa", size=(32, 24), data=premult.tobytes()).save(
        os.path.join(MADE, "premult.heic"), quality=100, chroma=444)
    gold = {}
    for f in ("photo.heic", "alpha.heic", "deep.heic", "premult.heic"):
        ref, _ = reference(os.path.join(MADE, f))
        info = pillow_heif.open_heif(os.path.join(MADE, f), convert_hdr_to_8bit=False)
        gold[f] = {"width": ref.shape[1], "height": ref.shape[0], "bit_depth": info.info.get("bit_depth", 8),
                   "has_alpha": info.has_alpha, "sha256": hashlib.sha256(ref.tobytes()).hexdigest(),
                   "pixels": ref.reshape(-1).tolist()}
    json.dump({"generator": "tests/reference/gen_heif.py", "pillow_heif": pillow_heif.__version__,
               "libheif": pillow_heif.libheif_version(), "files": gold},
              open(os.path.join(OUT, "heif_goldens.json"), "w"))
    print({k: (v["width"], v["height"], v["bit_depth"], v["has_alpha"]) for k, v in gold.items()})


if __name__ == "__main__":
    main()
