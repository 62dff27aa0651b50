"""Media goldens from independent tools, for every decodable file in ../shared/media
(MANIFEST.tsv), written to tests/data/media/goldens.json:
- still images: Pillow 13 decode -> EXIF transpose (JPEG) -> 8-bit samples (16-bit: high byte)
  -> alpha composited on white with (c*a + 255*(255-a) + 127) // 255 -> RGB; sha256 of the pixels,
  size, and a 64-bin histogram per channel for a tolerance check;
- PDFs: pdfinfo page count and page sizes (pt, after rotation), pdftocairo -r 50 page 1 size
  and the sha256 of its pixels;
- videos: ffprobe -count_frames frame count and rate, the sampled indices by the model.md §6.1
  rule computed with numpy.linspace, those frames' timestamps from ffprobe, and (short videos)
  PyAV's rgb24 pixels of those frames as 16x16 block means per channel.

    tests/reference/.venv/bin/python tests/reference/gen_media_goldens.py
"""
import hashlib
import json
import os
import subprocess
import tempfile

import numpy as np
from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "media")
OUT = os.path.join(ROOT, "tests", "data", "media", "goldens.json")


def to_rgb8(im):
    """Pillow image -> HxWx3 uint8 under nanovl's documented rules."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I", "I;16L"):
        a = np.asarray(im).astype(np.uint32)
        g = (a >> 8).astype(np.uint8)
        alpha = None
        t = im.info.get("transparency")
        if t is not None:
            alpha = np.where(a == t, 0, 255).astype(np.uint8)
        rgb = np.stack([g, g, g], -1)
    else:
        if mode == "P" or "transparency" in im.info:
            im = im.convert("RGBA")
        elif mode in ("L", "1"):
            im = im.convert("RGB")
        elif mode == "LA":
            im = im.convert("RGBA")
        elif mode == "CMYK":
            im = im.convert("RGB")
        a = np.asarray(im)
        if a.ndim == 2:
            a = np.stack([a] * 3, -1)
        rgb = a[..., :3].astype(np.uint8)
        alpha = a[..., 3] if a.shape[-1] == 4 else None
    if alpha is not None:
        c = rgb.astype(np.uint32)
        al = alpha.astype(np.uint32)[..., None]
        rgb = ((c * al + 255 * (255 - al) + 127) // 255).astype(np.uint8)
    return np.ascontiguousarray(rgb)


def image_golden(path):
    im = Image.open(path)
    im.load()
    im = ImageOps.exif_transpose(im)  # every format's orientation (was JPEG only; same outputs on this corpus)
    rgb = to_rgb8(im)
    hist = [np.histogram(rgb[..., c], bins=64, range=(0, 256))[0].tolist() for c in range(3)]
    return {"width": rgb.shape[1], "height": rgb.shape[0],
            "sha256": hashlib.sha256(rgb.tobytes()).hexdigest(), "hist": hist,
            "mean": float(rgb.mean())}


def pdf_golden(path):
    info = subprocess.run(["pdfinfo", "-f", "1", "-l", "9999", path], capture_output=True, text=True)
    pages, sizes = 0, []
    for line in info.stdout.splitlines():
        if line.startswith("Pages:"):
            pages = int(line.split()[1])
        if line.startswith("Page") and "size:" in line:
            parts = line.split("size:")[1].split()
            w, h = float(parts[0]), float(parts[2])
            rot = next((l for l in info.stdout.splitlines() if l.startswith(line.split()[0] + " " + line.split()[1]) and "rot:" in l), None)
            sizes.append([w, h])
    rots = {}
    for line in info.stdout.splitlines():
        if line.startswith("Page") and "rot:" in line:
            rots[int(line.split()[1])] = int(line.split()[-1])
    for i, s in enumerate(sizes):
        if rots.get(i + 1, 0) % 180 == 90:
            s.reverse()
    with tempfile.TemporaryDirectory() as d:
        # pdftocairo: poppler with the cairo backend nanovl renders with (pdftoppm's Splash
        # backend antialiases differently, so its pixels cannot be equal)
        subprocess.run(["pdftocairo", "-png", "-r", "50", "-f", "1", "-l", "1", path, os.path.join(d, "p")], check=True,
                       capture_output=True)
        f = sorted(os.listdir(d))[0]
        im = Image.open(os.path.join(d, f)).convert("RGB")
        rgb = np.asarray(im)
    return {"pages": pages, "sizes": sizes, "page1_50dpi": [rgb.shape[1], rgb.shape[0]],
            "page1_sha256": hashlib.sha256(rgb.tobytes()).hexdigest(), "page1_mean": float(rgb.mean())}


def video_golden(path, fps=2.0, max_frames=128):
    q = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
                        "stream=nb_read_frames,avg_frame_rate,r_frame_rate,width,height", "-of", "json", path],
                       capture_output=True, text=True, check=True)
    s = json.loads(q.stdout)["streams"][0]
    total = int(s["nb_read_frames"])
    num, den = map(int, s["r_frame_rate"].split("/"))
    native = num / den
    n = max(1, min(max_frames, total, int(np.floor(total / native * fps))))
    idx = np.linspace(0, total - 1, n).astype(int).tolist()
    t = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=best_effort_timestamp_time",
                        "-of", "csv=p=0", path], capture_output=True, text=True, check=True)
    ts = [float(x.strip(",")) for x in t.stdout.split() if x.strip(",")]
    ts.sort()
    t0 = ts[0] if ts else 0.0
    g = {"total": total, "fps": native, "width": s["width"], "height": s["height"], "indices": idx,
         "timestamps": [round(ts[i] - t0, 6) for i in idx]}
    if total <= 1000 and s["width"] >= 16 and s["height"] >= 16:  # PyAV pixels of the sampled frames, as 16x16 block means per channel
        import av
        want, thumbs = set(idx), {}
        with av.open(path) as c:
            for k, fr in enumerate(c.decode(video=0)):
                if k in want:
                    a = fr.to_ndarray(format="rgb24").astype(np.float64)
                    H, W = a.shape[0] // 16 * 16, a.shape[1] // 16 * 16
                    b = a[:H, :W].reshape(16, H // 16, 16, W // 16, 3).mean(axis=(1, 3))
                    thumbs[k] = np.round(b, 3).reshape(-1).tolist()
        g["pyav_block_means"] = [thumbs[i] for i in idx if i in thumbs]
    return g


def main():
    rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(SHARED, "MANIFEST.tsv"))][1:]
    out = {}
    for row in rows:
        rel, kind, expect = row[0], row[3], row[5]
        path = os.path.join(SHARED, rel)
        if not expect.startswith("decodes") or kind not in ("png", "jpeg", "pdf", "video"):
            continue
        try:
            if kind in ("png", "jpeg"):
                out[rel] = image_golden(path)
            elif kind == "pdf":
                out[rel] = pdf_golden(path)
            else:
                out[rel] = video_golden(path)
        except Exception as e:  # record, do not hide
            out[rel] = {"reference_error": str(e)}
    json.dump({"generator": "tests/reference/gen_media_goldens.py", "files": out}, open(OUT, "w"), indent=1)
    print(len(out), "files")


if __name__ == "__main__":
    main()
