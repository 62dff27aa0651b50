"""How many frames Pillow counts in the animated images of tests/data/media (Image.n_frames), the
reference for media_image_frames: nanovl decodes their first frame, as Pillow opens them, and says
when more were left. Writes tests/data/media/made/anim.apng (an APNG of 3 frames), anim_default.apng (its default
image not one of the animation's 2 frames: 3 in all) and
anim3.gif (3 frames, each with its own palette, a comment extension and a loop count), then
tests/data/media/anim_frames.json: {file: n_frames} for those, the animations already committed
(anim.gif, anim.webp, dec_webp_anim.webp) and stills that must count 1.

    tests/reference/.venv/bin/python tests/reference/gen_anim_frames.py
"""
import json
import os

import numpy as np
from PIL import Image

MEDIA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "media")
MADE = os.path.join(MEDIA, "made")


def main():
    y, x = np.mgrid[0:16, 0:24]
    frames = [Image.fromarray(np.stack([(x * 10 + 80 * k) % 256, (y * 15) % 256, ((x + y) * 7 + 40 * k) % 256], -1)
                              .astype(np.uint8)) for k in range(3)]
    frames[0].save(os.path.join(MADE, "anim.apng"), save_all=True, append_images=frames[1:], duration=100, loop=0)
    # a default image that is not one of the animation's frames (its IDAT before any fcTL): Pillow
    # counts it, and it is what the model sees
    frames[0].save(os.path.join(MADE, "anim_default.apng"), save_all=True, append_images=frames[1:], duration=100,
                   default_image=True)
    pal = [f.quantize(colors=16 + 8 * k) for k, f in enumerate(frames)]
    pal[0].save(os.path.join(MADE, "anim3.gif"), save_all=True, append_images=pal[1:], duration=[100, 50, 200], loop=0,
                comment=b"nanovl frame count test")
    names = ["made/anim.apng", "made/anim_default.apng", "made/anim3.gif", "made/anim.gif", "made/anim.webp", "made/lossless.webp",
             "made/image.bmp", "made/image.tiff"]
    for root, _, files in os.walk(MEDIA):
        for f in files:
            if f == "dec_webp_anim.webp":
                names.append(os.path.relpath(os.path.join(root, f), MEDIA))
    out = {}
    for n in names:
        with Image.open(os.path.join(MEDIA, n)) as im:
            out[n] = getattr(im, "n_frames", 1)
    json.dump({"generator": "tests/reference/gen_anim_frames.py", "n_frames": out},
              open(os.path.join(MEDIA, "anim_frames.json"), "w"), indent=1)
    print(out)


if __name__ == "__main__":
    main()
