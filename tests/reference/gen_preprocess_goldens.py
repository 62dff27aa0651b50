"""Image preprocessing goldens for the tile grid and the resampling (model.md §5.2-§5.3).

Tile grid: the InternVL `dynamic_preprocess` / `find_closest_aspect_ratio` pair that vLLM's
processor (vllm/transformers_utils/processors/internvl.py, used by nano_nemotron_vl.py) and the
V2 HF image processor share, transcribed below verbatim in logic (the candidate set, sorted by
area with Python's stable sort over the set's iteration order, and the 0.5 * image_size^2 * i * j
tie rule), over a sweep of image sizes and max_num_tiles values.
Resampling: torch.nn.functional.interpolate on uint8 NCHW, mode="bicubic", antialias=True,
align_corners=False (vLLM's _bicubic_from_ndarray), for down- and up-scaling.

Writes tests/data/vision/preprocess_goldens.json and resize_golden.safetensors.

    tests/reference/.venv/bin/python tests/reference/gen_preprocess_goldens.py
"""
import json
import os
import random

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "vision")


def find_closest_aspect_ratio(aspect_ratio, target_ratios, width, height, image_size):
    best_ratio_diff = float("inf")
    best_ratio = (1, 1)
    area = width * height
    for ratio in target_ratios:
        target_aspect_ratio = ratio[0] / ratio[1]
        ratio_diff = abs(aspect_ratio - target_aspect_ratio)
        if ratio_diff < best_ratio_diff:
            best_ratio_diff = ratio_diff
            best_ratio = ratio
        elif ratio_diff == best_ratio_diff:
            if area > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
                best_ratio = ratio
    return best_ratio


def grid(width, height, max_num, image_size=512, min_num=1):
    target_ratios = set((i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1)
                        for j in range(1, n + 1) if min_num <= i * j <= max_num)
    target_ratios = sorted(target_ratios, key=lambda x: x[0] * x[1])
    return find_closest_aspect_ratio(width / height, target_ratios, width, height, image_size)


def main():
    os.makedirs(OUT, exist_ok=True)
    rnd = random.Random(11)
    sizes = [(1, 1), (512, 512), (1920, 1080), (1080, 1920), (2480, 3508), (1700, 2200), (640, 480), (800, 600),
             (10000, 100), (100, 10000), (12000, 500), (3, 4000), (1024, 512), (512, 1024), (1536, 1024),
             (1000, 1000), (768, 512), (600, 800), (1224, 1584), (4096, 4096), (256, 2048), (2048, 256)]
    # exact midpoints between two candidate ratios (tie rule cases)
    for (a, b), (c, d) in [((1, 1), (2, 1)), ((2, 3), (3, 4)), ((1, 2), (1, 1)), ((3, 2), (2, 1)), ((4, 3), (3, 2))]:
        mid = (a / b + c / d) / 2
        for h in (60, 300, 700, 1400):
            w = mid * h
            if abs(w - round(w)) < 1e-9:
                sizes.append((int(round(w)), h))
    while len(sizes) < 260:
        w = rnd.choice([rnd.randint(1, 64), rnd.randint(64, 2000), rnd.randint(2000, 9000)])
        h = rnd.choice([rnd.randint(1, 64), rnd.randint(64, 2000), rnd.randint(2000, 9000)])
        sizes.append((w, h))
    cases = []
    for w, h in sizes:
        for m in (12, 6, 1) if (w, h) in sizes[:30] else (12,):
            i, j = grid(w, h, m)
            cases.append({"w": w, "h": h, "max_tiles": m, "cols": i, "rows": j})
    json.dump({"generator": "tests/reference/gen_preprocess_goldens.py", "grid": cases},
              open(os.path.join(OUT, "preprocess_goldens.json"), "w"), indent=0)
    g = torch.Generator().manual_seed(5)
    src = torch.randint(0, 256, (1, 3, 37, 53), generator=g, dtype=torch.uint8)
    out = {"src": src[0].permute(1, 2, 0).contiguous()}  # HWC
    for name, (oh, ow) in {"down": (16, 20), "up": (96, 128), "mixed": (64, 24), "same": (37, 53)}.items():
        r = torch.nn.functional.interpolate(src, size=(oh, ow), mode="bicubic", antialias=True, align_corners=False)
        out[name] = r[0].permute(1, 2, 0).contiguous()
    save_file(out, os.path.join(OUT, "resize_golden.safetensors"))
    print(len(cases), "grid cases")


if __name__ == "__main__":
    main()
