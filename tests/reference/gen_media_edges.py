"""Small clips and stills for the edge cases of issue 16, with references from independent tools.
Writes tests/data/media/edges/* and tests/data/media/edges_goldens.json.

    python3 tests/reference/gen_media_edges.py [section...]      (needs the ffmpeg/ffprobe CLI, Pillow, numpy)

columns: 4:2:0 video (H.264, H.265, VP9) and lossy WebP whose width is not a multiple of 16 (odd
  widths too for WebP, written by Pillow; odd sizes in AVIF below), testsrc2 content so every column
  differs. Reference: ffmpeg's own conversion of the first frame, `ffmpeg -i F -frames:v 1 -f
  rawvideo -pix_fmt rgb24 -` (its auto-inserted scaler runs with flags 0 = bicubic, as nanovl
  does; -sws_flags does not reach it), stored raw as F.rgb (height x width x 3 bytes); for the
  WebP stills Pillow's decode (libwebp), as the reference processors read images (webp_refs).
vfr: variable-frame-rate clips (x264 with B-frames): bursts separated by gaps (Matroska) and
  accelerating frame spacing (MP4). Reference: ffprobe's per-frame presentation times
  (best_effort_timestamp_time, less the stream's start_time) and the container's duration; the
  frames sampled at 2 fps are the documented rule applied in Python to ffprobe's times: n =
  min(frames, floor(duration * fps)) times linspace(first, last frame time, n), each taking the
  last frame presented at or before it, a frame taken once.
avif: AVIF stills written by Pillow (RGB, one even and one odd size), an AVIF with alpha, an
  animated AVIF (brand avis). Reference: Pillow's size and RGB decode, ffmpeg's own rgb24
  conversion (bicubic, as above) stored raw as F.rgb; the alpha one must be refused, the
  animated one is a video of ffprobe's frame count.
orient: a 7x5 image with every orientation 1-8 declared as the format defines it, written by
  Pillow: TIFF Orientation tag, PNG eXIf, WebP EXIF chunk (lossless), JPEG APP1 (quality 95);
  reference = Pillow's ImageOps.exif_transpose(...).convert("RGB") pixels.
sampling: baseline and progressive JPEGs with sampling factors TurboJPEG's tj* header call cannot
  classify (Y 3x1, 4x2, 3x2, 1x3; Y 2x1 with Cb 1x2 and Cr 1x1; chroma finer than luma), made
  by cjpeg (libjpeg-turbo-progs) from a PPM; reference = Pillow's RGB decode, stored raw as F.rgb.
tiled: tiled TIFFs (ImageMagick), which nanovl must refuse (FFmpeg decoded them black).
rawexif: PNG EXIF in "Raw profile type exif" text chunks (zTXt, tEXt, iTXt), as Pillow reads it.
vfr_cut: frames sharing a time, and an MPEG-TS cut within its first GOP (more "vfr" entries).
containers: WMV, IVF, MXF clips ("vfr" entries) and raw H.264 / HEVC streams ("raw_streams").
cut: a fragmented MP4 and an FLV cut mid-packet (no index says so): ffmpeg's frame count, last frame.
netpbm: PBM/PGM/PPM (P1-P6, maxvals 1..65535) and animated WebP (its first frame), as Pillow reads them.
gifstray: GIFs with stray bytes between their blocks, as Pillow reads them (it skips them).
decode: stills a differential test against Pillow decoded wrong (lossless WebP alpha, gray TIFF
  range, 32-bit BI_RGB BMP, JPEG-in-TIFF, 16-bit TIFF samples, the screen outside a GIF's first
  frame), written by Pillow (16-bit RGB TIFF and PNG by tiff16/png16, a small-frame GIF's header
  patched: Pillow writes neither); reference = Pillow's decode.
field: references for ../shared/media/field/MANIFEST.tsv in the schema of goldens.json (read by
  test_media.c's manifest test): images = Pillow (exif_transpose, gen_media_goldens.to_rgb8)
  sha256, except AVIF = ffmpeg's own rgb24 conversion (checked here to be within 8 levels of
  Pillow's); PDF = gen_media_goldens.pdf_golden (pdfinfo, pdftocairo); video = ffprobe frame
  count, r_frame_rate, duration and per-frame times with the sampling rule above, and the
  sha256 of ffmpeg's rgb24 conversion of each sampled frame; the flat colour a row states.
"""
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "data", "media")
EDGES = os.path.join(OUT, "edges")


def run(*a):
    return subprocess.run(list(a), check=True, capture_output=True).stdout


def ffprobe_size(path):
    s = json.loads(run("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
                       "-of", "json", path))["streams"][0]
    return s["width"], s["height"]


def columns(gold):
    clips = [("libx264", "mp4", w, h) for w, h in ((18, 16), (34, 18), (50, 16), (98, 16), (130, 16), (254, 8), (854, 8))]
    clips += [("libx265", "mp4", w, h) for w, h in ((66, 16), (202, 16))]
    clips += [("libvpx-vp9", "webm", w, h) for w, h in ((42, 16), (110, 16))]
    clips += [("libwebp", "webp", w, h) for w, h in ((37, 16), (101, 16), (70, 12))]
    out = []
    for codec, ext, w, h in clips:
        name = f"cols_{codec.replace('lib', '').replace('-', '')}_{w}x{h}.{ext}"
        path = os.path.join(EDGES, name)
        if ext == "webp":  # lossy WebP (always 4:2:0) written by Pillow from a per-column pattern
            y, x = np.mgrid[0:h, 0:w]
            rgb = np.stack([(x * 37) % 256, (y * 20 + x * 3) % 256, ((x * x) // 3) % 256], -1).astype(np.uint8)
            Image.fromarray(rgb).save(path, lossless=False, quality=80)
            cmd = ["Pillow:", "Image.fromarray(pattern).save(F,", "lossless=False,", "quality=80)", path]
        else:
            cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=10", "-frames:v", "3",
                   "-pix_fmt", "yuv420p", "-c:v", codec]
            if codec == "libx265":
                cmd += ["-x265-params", "log-level=error"]
            cmd += [path]
            run(*cmd)
        if ext == "webp":  # still WebP: Pillow's decode (libwebp), what the reference processors see
            raw = np.asarray(Image.open(path).convert("RGB")).tobytes()
        else:
            raw = run("ffmpeg", "-v", "error", "-i", path, "-frames:v", "1", "-f", "rawvideo",
                      "-pix_fmt", "rgb24", "-")
        pw, ph = ffprobe_size(path)
        assert len(raw) == pw * ph * 3, (name, len(raw), pw, ph)
        assert (pw, ph) == (w, h), (name, pw, ph)
        open(path + ".rgb", "wb").write(raw)
        out.append({"file": name, "kind": "image" if ext == "webp" else "video", "width": pw, "height": ph,
                    "made_with": " ".join(cmd[:-1] + [name])})
    gold["columns"] = out


def tiff16(path, a, bo="<"):
    """An uncompressed 16-bit gray (2-D a), RGB or RGBA (unassociated alpha) TIFF, byte order bo."""
    import struct
    h, w = a.shape[:2]
    spp = 1 if a.ndim == 2 else a.shape[2]
    data = a.astype(bo + "u2").tobytes()
    ents = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, spp, 16), (259, 3, 1, 1), (262, 3, 1, 2 if spp >= 3 else 1),
            (273, 4, 1, 0), (277, 3, 1, spp), (278, 3, 1, h), (279, 4, 1, len(data)), (284, 3, 1, 1)]
    if spp == 4:
        ents.append((338, 3, 1, 2))
    bps_at = 8 + 2 + 12 * len(ents) + 4
    data_at = bps_at + (2 * spp if spp > 1 else 0)
    out = (b"II*\0" if bo == "<" else b"MM\0*") + struct.pack(bo + "IH", 8, len(ents))
    for tag, typ, cnt, val in ents:
        val = bps_at if tag == 258 and spp > 1 else data_at if tag == 273 else val
        v = struct.pack(bo + "HH", val, 0) if typ == 3 and cnt == 1 else struct.pack(bo + "I", val)
        out += struct.pack(bo + "HHI", tag, typ, cnt) + v
    out += b"\0\0\0\0" + (struct.pack(bo + "H" * spp, *([16] * spp)) if spp > 1 else b"")
    assert len(out) == data_at
    open(path, "wb").write(out + data)


def png16(path, a):
    """A 16-bit RGB or RGBA PNG (colour type 2 or 6), filter 0 on every row."""
    import struct
    import zlib
    h, w, c = a.shape
    rows = b"".join(b"\0" + a[y].astype(">u2").tobytes() for y in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2 if c == 3 else 6, 0, 0, 0)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) +
                           chunk(b"IEND", b""))


def gif_small(transparency=None, background=0, local=False):
    """A 12x8 GIF whose only frame is 6x4 at (3, 2): Pillow's GIF of the 6x4 frame (16 colours),
    the logical screen and the frame's offset patched; local: its palette moved from the global
    table to the frame's local one."""
    import io
    import struct
    y, x = np.mgrid[0:4, 0:6]
    im = Image.fromarray(((x + y * 6) % 16).astype(np.uint8), "P")
    im.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91 + 40) % 256, (255 - i * 13) % 256)])
    b = io.BytesIO()
    im.save(b, "GIF", background=background, **({} if transparency is None else {"transparency": transparency}))
    d = bytearray(b.getvalue())
    assert d[10] & 0x80
    ptab = 3 << ((d[10] & 7) + 1)
    d[6:10] = struct.pack("<HH", 12, 8)
    i = d.index(b"\x2c", 13 + ptab)
    assert struct.unpack("<HHHH", d[i + 1:i + 9]) == (0, 0, 6, 4)
    d[i + 1:i + 5] = struct.pack("<HH", 3, 2)
    if local:
        pal = d[13:13 + ptab]
        d[i + 9] = 0x80 | (d[10] & 7)
        d[i + 10:i + 10] = pal
        d[10] &= 0x7F
        del d[13:13 + ptab]
    return bytes(d)


def decode_case(cases, name, write, tol=0, refuse=None, mode=None):
    """A "decode" entry: write(path) makes EDGES/name; reference = Pillow's exif_transpose +
    gen_media_goldens.to_rgb8 (mode: what Pillow must open it as), or refuse = a message part
    where nanovl must refuse it; tol = the levels nanovl may differ by."""
    from gen_media_goldens import to_rgb8
    from PIL import ImageOps
    path = os.path.join(EDGES, name)
    write(path)
    e = {"file": name, "tol": tol}
    if refuse:
        e["refuse"] = refuse
    else:
        src = Image.open(path)
        assert mode is None or src.mode == mode, (name, src.mode)
        ref = to_rgb8(ImageOps.exif_transpose(src))
        e.update(width=ref.shape[1], height=ref.shape[0], pixels=ref.reshape(-1).tolist())
    cases.append(e)


def decode(gold):
    """Stills whose decoding a differential test against Pillow found wrong (2026-11-30), written by
    Pillow; reference = Pillow's exif_transpose + gen_media_goldens.to_rgb8 (alpha on white, 16-bit
    samples by their high byte), tol = the levels nanovl may differ by, refuse = a message part
    where nanovl must refuse the file."""
    from gen_media_goldens import to_rgb8
    from PIL import ImageOps
    y, x = np.mgrid[0:12, 0:20]
    rgb = np.stack([x * 12, y * 20, (x * 7 + y * 13) % 256], -1).astype(np.uint8)
    alpha = np.full((12, 20), 128, np.uint8)
    alpha[:, :3] = 0  # fully transparent columns: white
    alpha[:, -3:] = 255
    cases = []

    def add(name, save, tol=0, refuse=None):
        decode_case(cases, name, save, tol, refuse)

    rgba = Image.fromarray(np.dstack([rgb, alpha]))
    # lossless WebP's alpha was dropped (libwebp decoded it as RGB); lossy WebP was FFmpeg's YUV->RGB
    add("dec_webp_lossless_alpha.webp", lambda p: rgba.save(p, lossless=True))
    add("dec_webp_lossy_alpha.webp", lambda p: rgba.save(p, lossless=False, quality=90))
    add("dec_webp_lossy.webp", lambda p: Image.fromarray(rgb).save(p, lossless=False, quality=90))
    # gray TIFFs were stretched as limited range (16-235); 16-bit: swscale rounds v/257 where the
    # reference keeps the high byte: 1 level
    g16 = (x * 3000 + y * 900).astype(np.uint16)
    add("dec_tiff_gray16.tif", lambda p: Image.fromarray(g16).save(p))
    add("dec_tiff_la.tif", lambda p: Image.fromarray(np.dstack([rgb[..., 1], alpha])).convert("LA").save(p))
    add("dec_tiff_gray8.tif", lambda p: Image.fromarray(rgb[..., 0]).save(p))
    # a 32-bit BI_RGB BMP (Pillow writes RGBA so): its 4th byte is not alpha
    add("dec_bmp32_bgrx.bmp", lambda p: rgba.save(p))
    # JPEG inside TIFF came out black without an error
    add("dec_tiff_jpeg.tif", lambda p: Image.fromarray(rgb).save(p, compression="jpeg"), refuse="JPEG-compressed TIFF")
    # orientation in XMP only (Pillow's getexif() reads it where the EXIF has none): was ignored
    def xmp(o, element=False):
        v = f"<tiff:Orientation>{o}</tiff:Orientation>" if element else f'tiff:Orientation="{o}"'
        return ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
                f'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" {"" if element else v}>'
                f'{v if element else ""}</rdf:Description></rdf:RDF></x:xmpmeta>').encode()
    im = Image.fromarray(rgb)
    add("dec_xmp_o6.jpg", lambda p: im.save(p, quality=95, xmp=xmp(6)), tol=0)
    add("dec_xmp_o5_element.jpg", lambda p: im.save(p, quality=95, xmp=xmp(5, element=True)))
    ex1 = Image.Exif()
    ex1[274] = 1
    add("dec_exif1_xmp6.jpg", lambda p: im.save(p, quality=95, exif=ex1.tobytes(), xmp=xmp(6)))  # EXIF's 1 wins
    def png_xmp(p):
        from PIL import PngImagePlugin
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp(8).decode())
        im.save(p, pnginfo=info)
    add("dec_xmp_o8.png", png_xmp)
    add("dec_xmp_o3.webp", lambda p: im.save(p, lossless=True, xmp=xmp(3)))
    for e in cases[-5:]:  # each must really carry what it claims for Pillow
        src = Image.open(os.path.join(EDGES, e["file"]))
        want = 1 if e["file"].startswith("dec_exif1") else int(e["file"].split("_o")[1][0])
        assert src.getexif().get(274) == want, (e["file"], src.getexif().get(274))
    # 16-bit samples through FFmpeg (TIFF) were rounded by swscale (v/257 to nearest) where Pillow
    # takes the high byte: 1 level. Pillow writes no 16-bit RGB TIFF or PNG: tiff16/png16 write
    # them uncompressed (Pillow still makes the reference). 16-bit PNG goes through libpng.
    rgb16 = (np.stack([x * 3000 + y * 77, y * 5000 + x * 131, (x * 7 + y * 13) * 257 + 128], -1) % 65536).astype(np.uint16)
    a16 = np.where(alpha == 128, 0x80FF, alpha.astype(np.uint16) * 257).astype(np.uint16)  # 128's high byte, not 128*257
    add("dec_tiff_rgb16.tif", lambda p: tiff16(p, rgb16))
    add("dec_tiff_rgb16_be.tif", lambda p: tiff16(p, rgb16, ">"))
    add("dec_tiff_rgba16.tif", lambda p: tiff16(p, np.dstack([rgb16, a16])))
    add("dec_tiff_gray16_be.tif", lambda p: tiff16(p, rgb16[..., 2], ">"))
    add("dec_png_rgb16.png", lambda p: png16(p, rgb16))
    add("dec_png_rgba16.png", lambda p: png16(p, np.dstack([rgb16, a16])))
    add("dec_png_gray16.png", lambda p: Image.fromarray(rgb16[..., 1]).save(p))
    for e in cases[-7:]:
        src = Image.open(os.path.join(EDGES, e["file"]))
        assert src.mode in ("RGB", "RGBA", "I;16", "I;16B", "I"), (e["file"], src.mode)
        raw = rgb16 if src.mode in ("RGB", "RGBA") else None
        if raw is not None:  # Pillow's unpackers keep the high byte: the reference is not v/257 rounded
            assert (np.asarray(src)[..., :3] == (raw >> 8)).all(), e["file"]
    # GIF whose first frame (6x4 at 3,2) is smaller than its logical screen (12x8): FFmpeg filled
    # the rest with the background index's colour (transparent with a transparent index, or
    # without a global palette); Pillow with the transparent index, else index 0 of the frame's
    # palette. Written by Pillow, the screen size and frame offset patched in.
    add("dec_gif_small_bg5.gif", lambda p: open(p, "wb").write(gif_small(background=5)))
    add("dec_gif_small_bg0.gif", lambda p: open(p, "wb").write(gif_small(background=0)))
    add("dec_gif_small_tr3_bg5.gif", lambda p: open(p, "wb").write(gif_small(transparency=3, background=5)))
    add("dec_gif_small_local.gif", lambda p: open(p, "wb").write(gif_small(background=5, local=True)))
    for e in cases[-4:]:
        src = Image.open(os.path.join(EDGES, e["file"]))
        assert src.size == (12, 8) and src.mode == "P", (e["file"], src.size, src.mode)
    gold["decode"] = cases


def tiled(gold):
    """Tiled TIFFs (TileWidth, tag 322), written by ImageMagick's convert (Pillow writes strips):
    FFmpeg 5.1 decoded them black without an error (a differential test against Pillow, 2026-12-03),
    so nanovl must refuse them. Pillow is checked to see the tiles and to decode the pixels written.
    Replaces the dec_tiff_tiled* entries of "decode"; the others stay as they are."""
    y, x = np.mgrid[0:12, 0:20]
    rgb = np.stack([x * 12, y * 20, (x * 7 + y * 13) % 256], -1).astype(np.uint8)
    ppm = os.path.join(EDGES, "tiled_src.ppm")
    Image.fromarray(rgb).save(ppm)
    cases = []
    for name, extra in (("dec_tiff_tiled.tif", []), ("dec_tiff_tiled_lzw.tif", ["-compress", "lzw"])):
        path = os.path.join(EDGES, name)
        run("convert", ppm, "-define", "tiff:tile-geometry=16x16", *extra, path)
        im = Image.open(path)
        assert 322 in im.tag_v2 and im.tag_v2[322] == 16, (name, dict(im.tag_v2))
        assert (np.asarray(im.convert("RGB")) == rgb).all(), name
        cases.append({"file": name, "tol": 0, "refuse": "tiled TIFF"})
    os.remove(ppm)
    gold["decode"] = [e for e in gold.get("decode", []) if not e["file"].startswith("dec_tiff_tiled")] + cases


def rawexif(gold):
    """PNG EXIF in a "Raw profile type exif" text chunk (ImageMagick's and exiftool's form before
    eXIf; Pillow's getexif() reads it where there is no eXIf chunk) was not applied (a differential
    test against Pillow, 2026-12-03). Written by Pillow's PngInfo in each chunk type (zTXt, tEXt,
    compressed iTXt), one with the APP1 "Exif\\0\\0" prefix, one beside an eXIf chunk (which wins);
    reference = Pillow's exif_transpose + gen_media_goldens.to_rgb8. Replaces the dec_png_raw*
    entries of "decode"."""
    from gen_media_goldens import to_rgb8
    from PIL import ImageOps, PngImagePlugin
    y, x = np.mgrid[0:12, 0:20]
    im = Image.fromarray(np.stack([x * 12, y * 20, (x * 7 + y * 13) % 256], -1).astype(np.uint8))

    def profile(o, prefix=b""):  # (Exif.tobytes() starts with the APP1 prefix: the others go without)
        ex = Image.Exif()
        ex[274] = o
        data = ex.tobytes()
        assert data.startswith(b"Exif\x00\x00")
        h = (prefix + data[6:]).hex()
        return "\nexif\n%8d\n" % (len(h) // 2) + "\n".join(h[i:i + 72] for i in range(0, len(h), 72)) + "\n"

    cases = []
    for name, o, how, prefix, exif_chunk in (("dec_png_rawz_o6.png", 6, "z", b"", None),
                                             ("dec_png_rawt_o3.png", 3, "t", b"", None),
                                             ("dec_png_rawi_o8.png", 8, "i", b"", None),
                                             ("dec_png_rawz_prefix_o5.png", 5, "z", b"Exif\x00\x00", None),
                                             ("dec_png_rawz_o6_exif1.png", 6, "z", b"", 1)):
        path = os.path.join(EDGES, name)
        info = PngImagePlugin.PngInfo()
        if how == "i":
            info.add_itxt("Raw profile type exif", profile(o, prefix), zip=True)
        else:
            info.add_text("Raw profile type exif", profile(o, prefix), zip=how == "z")
        kw = {}
        if exif_chunk is not None:
            ex = Image.Exif()
            ex[274] = exif_chunk
            kw["exif"] = ex.tobytes()
        im.save(path, pnginfo=info, **kw)
        src = Image.open(path)
        assert src.getexif().get(274) == (exif_chunk if exif_chunk is not None else o), name
        ref = to_rgb8(ImageOps.exif_transpose(Image.open(path)))
        cases.append({"file": name, "tol": 0, "width": ref.shape[1], "height": ref.shape[0], "pixels": ref.reshape(-1).tolist()})
    gold["decode"] = [e for e in gold.get("decode", []) if not e["file"].startswith("dec_png_raw")] + cases


def gifstray(gold):
    """GIFs with bytes between their blocks that begin none (0x00 after the global table, two more
    before the trailer, one between an extension and the image): Pillow's reader skips such a
    byte; nanovl said 'no image in the file' (FFmpeg stops there: a review, 2026-12-04). Written by
    Pillow (a 12x8 image of 16 colours, one with a transparent index so that a graphic control
    extension comes before the image), the bytes inserted; reference = Pillow's decode, checked to
    be that of the file without them. Replaces the dec_gif_stray* entries of "decode"."""
    import io
    from gen_media_goldens import to_rgb8
    y, x = np.mgrid[0:8, 0:12]
    im = Image.fromarray(((x + y * 3) % 16).astype(np.uint8), "P")
    im.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91 + 40) % 256, (255 - i * 13) % 256)])
    cases = []
    for name, kw in (("dec_gif_stray.gif", {}), ("dec_gif_stray_gce.gif", {"transparency": 3})):
        b = io.BytesIO()
        im.save(b, "GIF", **kw)
        d = bytes(b.getvalue())
        head = 13 + (3 << ((d[10] & 7) + 1))
        assert d[10] & 0x80 and d[-1] == 0x3B
        i = d.index(b"\x2c", head)  # the image descriptor (after the extensions Pillow writes)
        if kw:
            assert d[head] == 0x21 and d[head + 1] == 0xF9, "a graphic control extension first"
        patched = d[:head] + b"\x00" + d[head:i] + (b"\x07" if kw else b"") + d[i:-1] + b"\x00\xff" + d[-1:]
        path = os.path.join(EDGES, name)
        open(path, "wb").write(patched)
        ref = to_rgb8(Image.open(path))
        assert (ref == to_rgb8(Image.open(io.BytesIO(d)))).all(), name
        assert getattr(Image.open(path), "n_frames", 1) == 1, name
        cases.append({"file": name, "tol": 0, "width": ref.shape[1], "height": ref.shape[0], "pixels": ref.reshape(-1).tolist()})
    gold["decode"] = [e for e in gold.get("decode", []) if not e["file"].startswith("dec_gif_stray")] + cases


def netpbm(gold):
    """Netpbm stills (PBM/PGM/PPM, P1-P6: scanimage's default output), which nanovl did not read
    (2026-12-04), and animated WebP, which it refused where Pillow opens its first frame. P4-P6 and
    the WebPs are written by Pillow, the plain P1-P3 and the odd maxvals by hand (Pillow writes
    neither); reference = Pillow's decode through gen_media_goldens.to_rgb8 (16-bit gray by its
    high byte). tol 1 where FFmpeg scales a maxval other than 255 (v * 255 / maxval: Pillow floors
    or rounds, FFmpeg's fixed-point factor rounds up). A binary maxval whose brightest value FFmpeg
    5.1 wraps to black (254) must be refused. Replaces the dec_pnm* and dec_webp_anim* entries of
    "decode"."""
    from gen_media_goldens import to_rgb8
    y, x = np.mgrid[0:5, 0:7]
    rgb = np.stack([x * 36, y * 60, (x * 7 + y * 13) % 256], -1).astype(np.uint8)
    rgb[0, 0] = 255  # the brightest value is where FFmpeg's scaling went wrong
    cases = []

    def add(name, write, tol=0, refuse=None, mode=None):
        decode_case(cases, name, write, tol, refuse, mode)

    def raw(magic, maxval, a, plain=False):
        h, w = a.shape[:2]
        head = f"{magic}\n# nanovl test\n{w} {h}\n" + (f"{maxval}\n" if maxval else "")
        if plain:
            body = "\n".join(" ".join(str(int(v)) for v in row.reshape(-1)) for row in a).encode() + b"\n"
        else:
            body = a.astype(">u2" if maxval > 255 else "u1").tobytes()
        return lambda p: open(p, "wb").write(head.encode() + body)

    add("dec_pnm_p6.ppm", lambda p: Image.fromarray(rgb).save(p), mode="RGB")
    add("dec_pnm_p5.pgm", lambda p: Image.fromarray(rgb[..., 1]).save(p), mode="L")
    add("dec_pnm_p4.pbm", lambda p: Image.fromarray(rgb[..., 0] > 100).save(p), mode="1")
    add("dec_pnm_p3.ppm", raw("P3", 255, rgb, plain=True), mode="RGB")
    add("dec_pnm_p2_15.pgm", raw("P2", 15, rgb[..., 1] >> 4, plain=True), mode="L")
    add("dec_pnm_p1.pbm", raw("P1", 0, (rgb[..., 0] > 100).astype(np.uint8), plain=True), mode="1")
    add("dec_pnm_p6_100.ppm", raw("P6", 100, rgb.astype(np.uint16) * 100 // 255), tol=1, mode="RGB")
    g16 = (x * 9000 + y * 900 + 3).astype(np.uint16)
    g16[0, 0] = 65535
    add("dec_pnm_p5_16.pgm", raw("P5", 65535, g16), mode="I")
    add("dec_pnm_p5_4095.pgm", raw("P5", 4095, g16 >> 4), tol=1, mode="I")
    add("dec_pnm_p6_16.ppm", raw("P6", 65535, rgb.astype(np.uint16) * 257), mode="RGB")
    add("dec_pnm_p5_254.pgm", raw("P5", 254, rgb[..., 1].astype(np.uint16) * 254 // 255), refuse="maxval 254")
    # a header on one line, and a comment on the magic's line (FFmpeg's probe of bytes wanted a
    # newline there: 'Invalid data'); maxvals Pillow refuses (FFmpeg took them as 8-bit images)
    def hdr(head, a):
        return lambda p: open(p, "wb").write(head + a.astype("u1").tobytes())
    add("dec_pnm_oneline.pgm", hdr(b"P5 7 5 255\n", rgb[..., 2]), mode="L")
    add("dec_pnm_comment.ppm", hdr(b"P6 # made by hand\n7 5\n255\n", rgb), mode="RGB")
    add("dec_pnm_maxval0.pgm", hdr(b"P5\n7 5\n0\n", rgb[..., 2]), refuse="maxval 0")
    add("dec_pnm_maxvalneg.pgm", hdr(b"P5\n7 5\n-5\n", rgb[..., 2]), refuse="maxval is not a number")
    # animated WebP: the first frame (lossless, lossy, with alpha); Pillow checked to see 3 frames
    yy, xx = np.mgrid[0:12, 0:20]
    frames = [np.stack([xx * 12 + k * 40, yy * 20, (xx * 7 + yy * 13 + k * 50) % 256], -1).astype(np.uint8) for k in range(3)]
    alpha = np.full((12, 20), 128, np.uint8)
    alpha[:, :3] = 0
    alpha[:, -3:] = 255

    def anim(ims, **kw):
        return lambda p: ims[0].save(p, save_all=True, append_images=ims[1:], duration=100, loop=0, **kw)
    add("dec_webp_anim.webp", anim([Image.fromarray(f) for f in frames], lossless=True))
    add("dec_webp_anim_lossy.webp", anim([Image.fromarray(f) for f in frames], lossless=False, quality=90))
    add("dec_webp_anim_alpha.webp", anim([Image.fromarray(np.dstack([f, alpha])) for f in frames], lossless=True))
    for e in cases[-3:]:
        src = Image.open(os.path.join(EDGES, e["file"]))
        assert src.n_frames == 3 and src.is_animated, (e["file"], src.n_frames)
    gold["decode"] = [e for e in gold.get("decode", [])
                      if not e["file"].startswith(("dec_pnm", "dec_webp_anim"))] + cases


def webp_refs(gold):
    """The still WebP entries of "columns" again, their reference from Pillow (libwebp) instead of
    ffmpeg's conversion, which differed from it by up to 126 levels at chroma edges; the files
    themselves are not written again (the clips beside them stay as they are)."""
    for e in gold["columns"]:
        if e["kind"] != "image":
            continue
        path = os.path.join(EDGES, e["file"])
        ref = np.asarray(Image.open(path).convert("RGB"))
        assert ref.shape == (e["height"], e["width"], 3), e["file"]
        open(path + ".rgb", "wb").write(ref.tobytes())


def probe_times(path):
    j = json.loads(run("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                       "frame=best_effort_timestamp_time:stream=start_time:format=duration", "-of", "json", path))
    t0 = float(j["streams"][0].get("start_time", 0) or 0)
    times = sorted(float(f["best_effort_timestamp_time"]) - t0 for f in j["frames"])
    return times, float(j["format"]["duration"]) - t0


def sample_rule(times, duration, fps=2.0, max_frames=128):
    n = max(1, min(max_frames, len(times), int(np.floor(duration * fps + 1e-9))))
    picks = []
    for T in np.linspace(times[0], times[-1], n):
        j = max(i for i, t in enumerate(times) if t <= T + 1e-6)
        if not picks or picks[-1] != j:
            picks.append(j)
    return picks


def vfr(gold):
    out = []
    for name, expr in (("vfr_bursts.mkv", "if(lt(N,6),N*0.1,if(lt(N,12),2.5+N*0.1,7+N*0.1))"),
                       ("vfr_accel.mp4", "(N*N*0.02+N*0.05)")):
        path = os.path.join(EDGES, name)
        cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-frames:v", "18",
               "-vf", f"settb=1/1000,setpts='{expr}/TB'", "-vsync", "vfr", "-pix_fmt", "yuv420p", "-c:v", "libx264", path]
        run(*cmd)
        times, duration = probe_times(path)
        picks = sample_rule(times, duration)
        out.append({"file": name, "frames": len(times), "duration": duration, "times": times,
                    "sampled_indices": picks, "sampled_times": [times[i] for i in picks],
                    "made_with": " ".join(cmd[:-1] + [name])})
    gold["vfr"] = out


def vfr_cut(gold):
    """More "vfr" entries (a review, 2026-12-04): frames sharing a time (the last two; two pairs in the
    middle), which nanovl mapped to the first of them so the later one was never taken, and an MPEG-TS
    cut within its first GOP, whose packets before the first keyframe nanovl counted as frames (they
    took sampled times no frame came for). Reference: ffprobe's decoded frames' times and the
    sampling rule over the window from the first decoded frame to the container's end. Replaces the
    vfrcut_* entries of "vfr"."""
    out = []
    src = ["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "50"]
    for name, expr in (("vfrcut_duplast.mkv", "if(eq(N,49),48,N)"), ("vfrcut_dupmid.mkv", "if(eq(N,20)+eq(N,29),N-1,N)"),
                       ("vfrcut_duplast.mp4", "if(eq(N,49),48,N)")):
        path = os.path.join(EDGES, name)
        cmd = ["ffmpeg", "-v", "error", "-y", *src, "-vf", f"setpts='{expr}/25/TB'", "-fps_mode", "passthrough",
               "-bf", "0", "-pix_fmt", "yuv420p", "-c:v", "libx264", path]
        run(*cmd)
        out.append((name, path, " ".join(cmd[:-1] + [name])))
    full = os.path.join(EDGES, "vfrcut_full.ts")
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "100",
           "-g", "50", "-bf", "2", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-f", "mpegts", full]
    run(*cmd)
    data = open(full, "rb").read()
    os.remove(full)
    cut = len(data) * 3 // 10 // 188 * 188  # whole TS packets, within the first GOP (frames 0-49)
    path = os.path.join(EDGES, "vfrcut_midgop.ts")
    open(path, "wb").write(data[cut:])
    out.append(("vfrcut_midgop.ts", path, " ".join(cmd[:-1]) + f" F.ts; the bytes from {cut} on"))
    entries = []
    for name, path, made in out:
        times, duration = probe_times(path)
        if duration <= times[-1]:  # (an MPEG-TS's format duration is guessed from its bit rate: 0.52 s
            # here; the end of its last packet instead, as the packets say)
            j = json.loads(run("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                               "packet=pts_time,duration_time:stream=start_time", "-of", "json", path))
            t0 = float(j["streams"][0]["start_time"])
            duration = max(float(q["pts_time"]) + float(q.get("duration_time", 0.04)) for q in j["packets"]) - t0
        picks = sample_rule(times, duration - times[0])
        entries.append({"file": name, "frames": len(times), "duration": duration, "times": times,
                        "sampled_indices": picks, "sampled_times": [times[i] for i in picks], "made_with": made})
    for e in entries[:2]:  # (the MP4 muxer moves a shared time a tick on; setpts' N/25 also rounds frame 29 onto 28's time: a shared time of its own)
        assert len(set(e["times"])) < len(e["times"]), ("no shared time", e["file"])
        assert "duplast" not in e["file"] or e["times"][-1] - e["times"][-2] < 1e-3, ("last two", e["file"], e["times"][-2:])
    assert entries[3]["frames"] == 50 and entries[3]["times"][0] > 0.2, ("first GOP cut", entries[3]["times"][:3])
    gold["vfr"] = [e for e in gold.get("vfr", []) if not e["file"].startswith("vfrcut_")] + entries


def containers(gold):
    """Containers nanovl did not recognise (a review, 2026-12-04, found them read by ffmpeg and
    called 'not a recognised image, PDF or video format'): WMV (ASF), IVF (VP9), MXF (MPEG-2), and
    raw H.264 / HEVC streams. The first three become "vfr" entries (ffprobe's frame times, the
    sampling rule); the raw ones, which carry no times, "raw_streams" entries: ffprobe's count of
    decoded frames. Replaces the cont_* entries of both."""
    src = ["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "30", "-pix_fmt", "yuv420p"]
    entries, raw = [], []
    for name, codec in (("cont_clip.wmv", ["-c:v", "wmv2"]), ("cont_clip.ivf", ["-c:v", "libvpx-vp9"]),
                        ("cont_clip.mxf", ["-c:v", "mpeg2video", "-pix_fmt", "yuv422p"]),
                        ("cont_clip.h264", ["-c:v", "libx264", "-f", "h264"]), ("cont_clip.hevc", ["-c:v", "libx265", "-f", "hevc"])):
        path = os.path.join(EDGES, name)
        cmd = ["ffmpeg", "-v", "error", "-y", *src, *codec, path]
        run(*cmd)
        made = " ".join(cmd[:-1] + [name])
        if name.endswith((".h264", ".hevc")):
            n = int(json.loads(run("ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
                                   "stream=nb_read_frames", "-of", "json", path))["streams"][0]["nb_read_frames"])
            raw.append({"file": name, "frames": n, "made_with": made})
            continue
        times, duration = probe_times(path)
        picks = sample_rule(times, duration - times[0])
        entries.append({"file": name, "frames": len(times), "duration": duration, "times": times,
                        "sampled_indices": picks, "sampled_times": [times[i] for i in picks], "made_with": made})
    gold["vfr"] = [e for e in gold.get("vfr", []) if not e["file"].startswith("cont_")] + entries
    gold["raw_streams"] = [e for e in gold.get("raw_streams", []) if not e["file"].startswith("cont_")] + raw


def cut(gold):
    """Files cut short without an index to say so (a review, 2026-12-04): a fragmented MP4 (an
    interrupted screen or stream recording) and an FLV, each cut mid-packet. nanovl refused both
    ("cannot decode: Invalid data"), and a cut file lost its last planned frame (the cut packet
    makes none). Reference: ffmpeg's decode of the cut file (-fps_mode passthrough): its frame
    count and the sha256 of its last frame (rgb24), which must be the last frame sampled."""
    import hashlib
    out = []
    for name, fmt, keep in (("cut_frag.mp4", ["-movflags", "frag_keyframe+empty_moov", "-g", "15"], 0.55),
                            ("cut_clip.flv", ["-g", "15"], 0.6)):
        full = os.path.join(EDGES, "full_" + name)
        cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "60",
               "-pix_fmt", "yuv420p", "-c:v", "libx264", "-bf", "0", *fmt, full]
        run(*cmd)
        data = open(full, "rb").read()
        os.remove(full)
        path = os.path.join(EDGES, name)
        open(path, "wb").write(data[:int(len(data) * keep)])
        raw = subprocess.run(["ffmpeg", "-v", "quiet", "-i", path, "-fps_mode", "passthrough", "-f", "rawvideo",
                              "-pix_fmt", "rgb24", "-"], capture_output=True).stdout
        n = len(raw) // (64 * 48 * 3)
        assert 10 < n < 60, (name, n)
        out.append({"file": name, "decoded_frames": n, "width": 64, "height": 48,
                    "last_rgb_sha256": hashlib.sha256(raw[(n - 1) * 64 * 48 * 3:]).hexdigest(),
                    "made_with": " ".join(cmd[:-1]) + f" F; its first {keep:.0%} of bytes"})
    gold["cut"] = out


def avif(gold):
    out = []
    for name, w, h, mode in (("still_70x40.avif", 70, 40, "RGB"), ("still_33x17.avif", 33, 17, "RGB"),
                             ("alpha_40x24.avif", 40, 24, "RGBA"), ("anim_48x32.avif", 48, 32, "anim")):
        path = os.path.join(EDGES, name)
        y, x = np.mgrid[0:h, 0:w]
        # smooth: libavif (Pillow) and swscale upsample chroma differently, which shows at sharp edges
        rgb = np.stack([x * 200 // w + 20, y * 200 // h + 30, (x + y) * 150 // (w + h) + 60], -1).astype(np.uint8)
        if mode == "RGBA":
            Image.fromarray(np.dstack([rgb, ((x * 6) % 256).astype(np.uint8)]), "RGBA").save(path, quality=90)
        elif mode == "anim":
            Image.fromarray(rgb).save(path, save_all=True, append_images=[Image.fromarray(255 - rgb)], duration=100,
                                      quality=90)
        else:
            Image.fromarray(rgb).save(path, quality=90)
        e = {"file": name, "mode": mode, "made_with": f"Pillow {Image.__version__}: Image.fromarray(pattern {w}x{h} {mode}).save(F, quality=90)"}
        if mode == "RGB":
            ref = np.asarray(Image.open(path).convert("RGB"))
            e.update(width=ref.shape[1], height=ref.shape[0], pillow=ref.reshape(-1).tolist())
            raw = run("ffmpeg", "-v", "error", "-i", path, "-frames:v", "1", "-f", "rawvideo",
                      "-pix_fmt", "rgb24", "-")
            assert len(raw) == w * h * 3, (name, len(raw))
            open(path + ".rgb", "wb").write(raw)
        if mode == "anim":
            e["frames"] = int(json.loads(run("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                                             "-show_entries", "stream=nb_read_frames", "-of", "json", path))
                              ["streams"][0]["nb_read_frames"])
        out.append(e)
    gold["avif"] = out


def orient(gold):
    from PIL import ImageOps
    y, x = np.mgrid[0:5, 0:7]
    rgb = np.stack([x * 36, y * 60, (x * 5 + y * 11) * 4], -1).astype(np.uint8)
    out = []
    for ext in ("tiff", "png", "webp", "jpg"):
        for o in range(1, 9):
            name = f"orient_{o}.{ext}"
            path = os.path.join(EDGES, name)
            im = Image.fromarray(rgb)
            exif = Image.Exif()
            exif[274] = o
            if ext == "tiff":
                im.save(path, tiffinfo={274: o})
            elif ext == "webp":
                im.save(path, lossless=True, exif=exif.tobytes())
            elif ext == "jpg":
                im.save(path, quality=95, exif=exif.tobytes())
            else:
                im.save(path, exif=exif.tobytes())
            src = Image.open(path)
            assert src.getexif().get(274) == o, (name, src.getexif().get(274))
            ref = np.asarray(ImageOps.exif_transpose(src).convert("RGB"))
            out.append({"file": name, "orientation": o, "width": ref.shape[1], "height": ref.shape[0],
                        "pixels": ref.reshape(-1).tolist()})
    gold["orient"] = out


def sampling(gold):
    out = []
    cases = (("3x1,1x1,1x1", 37, 23, []), ("2x1,1x2,1x1", 37, 23, []), ("4x2,1x1,1x1", 53, 19, []),
             ("3x2,1x1,1x1", 53, 19, ["-progressive"]), ("1x3,1x1,1x1", 29, 31, []), ("1x1,2x1,1x2", 37, 23, []))
    for samp, w, h, extra in cases:
        name = f"samp_{samp.replace(',', '_')}{'_prog' if extra else ''}.jpg"
        path = os.path.join(EDGES, name)
        y, x = np.mgrid[0:h, 0:w]
        rgb = np.stack([x * 250 // w, (y * 200 // h + x * 3) % 256, ((x * 7 + y * 13) * 3) % 256], -1).astype(np.uint8)
        ppm = path + ".ppm"
        Image.fromarray(rgb).save(ppm)
        cmd = ["cjpeg", "-quality", "90", "-sample", samp] + extra + ["-outfile", path, ppm]
        run(*cmd)
        os.remove(ppm)
        ref = np.asarray(Image.open(path).convert("RGB"))
        assert ref.shape == (h, w, 3)
        open(path + ".rgb", "wb").write(ref.tobytes())
        out.append({"file": name, "sampling": samp, "width": w, "height": h,
                    "made_with": " ".join(cmd[:-3] + ["-outfile", name, "pattern.ppm"])})
    gold["sampling"] = out


def field(gold):
    import hashlib
    import re
    import sys as _sys
    _sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import gen_media_goldens as gmg
    from PIL import ImageOps
    fdir = os.path.normpath(os.path.join(ROOT, "..", "..", "shared", "media", "field"))
    rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(fdir, "MANIFEST.tsv"))][1:]
    out = {}
    for r in rows:
        name, kind, what = r[0], r[3], r[4]
        path = os.path.join(fdir, name)
        if kind == "pdf":
            g = gmg.pdf_golden(path)
        elif kind == "video":
            times, duration = probe_times(path)
            s = json.loads(run("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                               "stream=r_frame_rate,width,height", "-of", "json", path))["streams"][0]
            num, den = map(int, s["r_frame_rate"].split("/"))
            picks = sample_rule(times, duration)
            raw = run("ffmpeg", "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-vsync", "passthrough", "-")
            fsz = s["width"] * s["height"] * 3
            assert len(raw) == fsz * len(times), (name, len(raw), fsz, len(times))
            g = {"total": len(times), "fps": num / den, "width": s["width"], "height": s["height"], "indices": picks,
                 "timestamps": [round(times[i], 6) for i in picks], "duration": duration,
                 "frame_sha256": [hashlib.sha256(raw[i * fsz:(i + 1) * fsz]).hexdigest() for i in picks]}
            m = re.search(r"flat colour \((\d+),(\d+),(\d+)\)", what)
            if m:
                g["flat"] = [int(v) for v in m.groups()]
        else:
            im = Image.open(path)
            im.load()
            rgb = gmg.to_rgb8(ImageOps.exif_transpose(im))
            g = {"width": rgb.shape[1], "height": rgb.shape[0], "sha256": hashlib.sha256(rgb.tobytes()).hexdigest(),
                 "reference": "Pillow (exif_transpose)"}
            if im.format == "AVIF":
                ff = run("ffmpeg", "-v", "error", "-i", path, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-")
                a = np.frombuffer(ff, np.uint8).reshape(rgb.shape).astype(int)
                assert np.abs(a - rgb.astype(int)).max() <= 8, name
                g.update(sha256=hashlib.sha256(ff).hexdigest(), sniff="avif",
                         reference="ffmpeg rgb24 (within 8 levels of Pillow's)")
        out[name] = g
    gold["field"] = out


def main():
    os.makedirs(EDGES, exist_ok=True)
    gpath = os.path.join(OUT, "edges_goldens.json")
    gold = json.load(open(gpath)) if os.path.exists(gpath) else {}
    gold["generator"] = "tests/reference/gen_media_edges.py"
    only = sys.argv[1:]  # names of sections to regenerate (default all)
    for sec in (columns, vfr, vfr_cut, containers, cut, avif, orient, sampling, field, webp_refs, decode, tiled, rawexif, netpbm, gifstray):
        if not only or sec.__name__ in only:
            sec(gold)
    json.dump(gold, open(gpath, "w"), indent=1)
    print(sorted(k for k in gold if k != "generator"))


if __name__ == "__main__":
    main()
