"""A CMYK JPEG whose sampling factors TurboJPEG cannot classify (component 0 at 3x1, the others
1x1), so nanovl decodes it through its libjpeg fallback (media/jpeg.c): the CMYK branch of that
path had no test (mutation run: the first column was never checked).

Pillow cannot choose per-component sampling factors, so the file is written by a few lines of C
against libjpeg (compiled here, with Adobe marker, as libjpeg writes CMYK); the reference is
Pillow's decode of that file converted to RGB (Pillow's CMYK rule), as for cmyk.jpg. Adds
"cmyk_3x1.jpg" to tests/data/media/made_goldens.json (the other entries are kept as they are).

    tests/reference/.venv/bin/python tests/reference/gen_cmyk_sampling.py
"""
import hashlib
import json
import os
import subprocess
import tempfile

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "media")
MADE = os.path.join(OUT, "made")
W, H = 37, 13  # not a multiple of the 24x8 MCU: partial MCUs on both edges

WRITER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <jpeglib.h>
int main(int argc, char **argv) {
    const int W = atoi(argv[2]), H = atoi(argv[3]);
    FILE *f = fopen(argv[1], "wb");
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = W;
    c.image_height = H;
    c.input_components = 4;
    c.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, JCS_CMYK);
    jpeg_set_quality(&c, 95, TRUE);
    c.comp_info[0].h_samp_factor = 3; /* TurboJPEG's TJSAMP list has no 3x1 */
    c.comp_info[0].v_samp_factor = 1;
    for (int i = 1; i < 4; i++) c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;
    jpeg_start_compress(&c, TRUE);
    unsigned char *row = malloc((size_t)W * 4);
    while (c.next_scanline < (unsigned)H) {
        const int y = (int)c.next_scanline;
        for (int x = 0; x < W; x++) { /* a distinct first column: x = 0 differs from x = 1 */
            row[4 * x + 0] = (unsigned char)(x == 0 ? 250 : (x * 7) % 256);
            row[4 * x + 1] = (unsigned char)((y * 19) % 256);
            row[4 * x + 2] = (unsigned char)(((x + y) * 11) % 256);
            row[4 * x + 3] = (unsigned char)(x == 0 ? 40 : 200 - (x + y) % 64);
        }
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
    free(row);
    return 0;
}
"""


def main():
    path = os.path.join(MADE, "cmyk_3x1.jpg")
    with tempfile.TemporaryDirectory() as d:
        src, exe = os.path.join(d, "w.c"), os.path.join(d, "w")
        open(src, "w").write(WRITER)
        subprocess.run(["cc", "-O1", "-o", exe, src, "-ljpeg"], check=True)
        subprocess.run([exe, path, str(W), str(H)], check=True)
    im = Image.open(path)
    assert im.mode == "CMYK", im.mode
    ref = np.ascontiguousarray(np.asarray(im.convert("RGB")))
    gpath = os.path.join(OUT, "made_goldens.json")
    gold = json.load(open(gpath))
    gold["files"]["cmyk_3x1.jpg"] = {"width": ref.shape[1], "height": ref.shape[0],
                                     "sha256": hashlib.sha256(ref.tobytes()).hexdigest(),
                                     "pixels": ref.reshape(-1).tolist()}
    json.dump(gold, open(gpath, "w"))
    print(path, ref.shape, "first column differs:", bool((ref[:, 0] != ref[:, 1]).any()))


if __name__ == "__main__":
    main()
