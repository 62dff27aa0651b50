"""Page 1 of the PDFs whose render is documented to differ from pdftocairo's (test_media.c,
k_pdf_render_differences), as pdftocairo renders it: poppler + cairo at 50 dpi, converted to RGB
by Pillow. test_media compares nanovl's render with it pixel by pixel (per-channel means, the
share of differing pixels and the largest difference) where the exact hash cannot hold.

Writes tests/data/media/pdf_ref/<name>.page1.png and pdf_ref/refs.json {rel: {"size": [w, h],
"channel_means": [r, g, b], "sha256": ...}}.

    tests/reference/.venv/bin/python tests/reference/gen_pdf_render_refs.py
"""
import hashlib
import json
import os
import subprocess
import tempfile

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MEDIA = os.path.join(os.path.dirname(ROOT), "shared", "media")
OUT = os.path.join(ROOT, "tests", "data", "media", "pdf_ref")
FILES = ["pdf/amt_handbook_sample.pdf"]  # embedded bitmaps: see test_media.c


def main():
    os.makedirs(OUT, exist_ok=True)
    refs = {}
    for rel in FILES:
        with tempfile.TemporaryDirectory() as d:
            subprocess.run(["pdftocairo", "-png", "-r", "50", "-f", "1", "-l", "1", os.path.join(MEDIA, rel),
                            os.path.join(d, "p")], check=True, capture_output=True)
            rgb = np.asarray(Image.open(os.path.join(d, sorted(os.listdir(d))[0])).convert("RGB"))
        name = os.path.basename(rel).rsplit(".", 1)[0] + ".page1.png"
        Image.fromarray(rgb).save(os.path.join(OUT, name), optimize=True)
        refs[rel] = {"png": name, "size": [rgb.shape[1], rgb.shape[0]],
                     "channel_means": [float(rgb[..., c].mean()) for c in range(3)],
                     "sha256": hashlib.sha256(rgb.tobytes()).hexdigest()}
        print(rel, refs[rel])
    with open(os.path.join(OUT, "refs.json"), "w") as f:
        json.dump(refs, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
