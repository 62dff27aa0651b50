#!/usr/bin/env python3
"""Makes the sample media in this folder (samples/README.md, samples/media/README.md).

    python3 samples/media/make_media.py [OUT_DIR]      # default: the folder of this script

Needs Python 3.9+ with Pillow, pdftoppm (poppler-utils) and the ffmpeg CLI with libx264.
Everything is drawn here: no downloaded fonts, images or documents; the noise comes from a
seeded generator, so a rerun with the same Pillow, Poppler and FFmpeg gives the same files.
The outputs are committed, so neither CI nor users need Python to run the samples.

    invoice.pdf   two pages, born digital: a text layer in Helvetica, a table, a total, a
                  signature line (written as PDF operators by the small writer below)
    scan.jpg      page 1 of invoice.pdf rendered at 90 dpi, grey, turned 1.5 degrees, noise
    chart.png     a bar chart: quarterly revenue 2026
    clip.mp4      3 s, 320x240, 10 fps H.264: 1.5 s of a title slide, then the chart (one cut)
"""
import os
import random
import subprocess
import sys
import tempfile

from PIL import Image, ImageDraw, ImageFilter, ImageFont

OUT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------------------------------------
# invoice.pdf: a minimal PDF writer (standard 14 fonts, no embedding, no dates: reproducible)

# Helvetica advance widths (1/1000 em) for the characters right-aligned below; others ~556
HELV_W = {**{c: 556 for c in "0123456789$"}, ".": 278, ",": 278, " ": 278, "%": 889, "-": 333}


def text_width(s, size):
    return sum(HELV_W.get(c, 556) for c in s) * size / 1000.0


def pdf_str(s):
    return "(" + s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


class Page:
    def __init__(self):
        self.ops = []

    def text(self, x, y, s, size=10, bold=False, right=False):
        if right:
            x -= text_width(s, size)
        self.ops.append(f"BT /{'F2' if bold else 'F1'} {size} Tf {x:.2f} {y:.2f} Td {pdf_str(s)} Tj ET")

    def line(self, x0, y0, x1, y1, w=0.6):
        self.ops.append(f"{w} w {x0:.2f} {y0:.2f} m {x1:.2f} {y1:.2f} l S")

    def fill_rect(self, x, y, w, h, grey):
        self.ops.append(f"q {grey} g {x} {y} {w} {h} re f Q")

    def raw(self, s):
        self.ops.append(s)


def write_pdf(path, pages, title):
    objs = []  # object bodies; object n is objs[n-1]
    objs.append("<< /Type /Catalog /Pages 2 0 R >>")
    objs.append(None)  # pages, filled below
    objs.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    objs.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>")
    objs.append(f"<< /Title {pdf_str(title)} /Producer (nanovl samples/media/make_media.py) >>")
    kids = []
    for p in pages:
        stream = "\n".join(p.ops).encode("latin-1")
        objs.append(f"<< /Length {len(stream)} >>\nstream\n".encode("latin-1") + stream + b"\nendstream")
        content = len(objs)
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content} 0 R "
                    "/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> >>")
        kids.append(len(objs))
    objs[1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>"
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode()
        out += body if isinstance(body, bytes) else body.encode("latin-1")
        out += b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R /Info 5 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    with open(path, "wb") as f:
        f.write(out)


ITEMS = [  # description, quantity, unit price (cents)
    ("Sensor module SM-40", 12, 4850),
    ("Mounting bracket, steel", 24, 675),
    ("Cable harness 2 m", 12, 1290),
    ("Calibration service (hours)", 3, 9500),
    ("Shipping and handling", 1, 4200),
]


def money(cents):
    return f"${cents // 100:,}.{cents % 100:02d}"


def make_invoice(path):
    p1 = Page()
    p1.fill_rect(50, 712, 512, 40, 0.9)
    p1.text(60, 735, "ACME Components Ltd.", 16, bold=True)
    p1.text(60, 720, "14 Harbour Road, Portsmouth PO1 3AX  -  VAT GB 123 4567 89", 8)
    p1.text(552, 735, "INVOICE", 16, bold=True, right=True)
    p1.text(60, 680, "Invoice number:", 10, bold=True)
    p1.text(160, 680, "INV-2026-0419", 10)
    p1.text(60, 665, "Invoice date:", 10, bold=True)
    p1.text(160, 665, "12 October 2026", 10)
    p1.text(60, 650, "Due date:", 10, bold=True)
    p1.text(160, 650, "11 November 2026", 10)
    p1.text(360, 680, "Bill to:", 10, bold=True)
    for i, s in enumerate(["Northwind Robotics GmbH", "Attn: Accounts Payable", "Hafenstrasse 9, 20457 Hamburg"]):
        p1.text(360, 665 - 15 * i, s, 10)
    # the table: header band, one row per item, rules
    x_desc, x_qty, x_unit, x_amt = 60, 360, 460, 552
    top = 610
    p1.fill_rect(50, top - 6, 512, 20, 0.8)
    p1.text(x_desc, top, "Description", 10, bold=True)
    p1.text(x_qty, top, "Qty", 10, bold=True, right=True)
    p1.text(x_unit, top, "Unit price", 10, bold=True, right=True)
    p1.text(x_amt, top, "Amount", 10, bold=True, right=True)
    y = top - 24
    subtotal = 0
    for desc, qty, unit in ITEMS:
        amount = qty * unit
        subtotal += amount
        p1.text(x_desc, y, desc, 10)
        p1.text(x_qty, y, str(qty), 10, right=True)
        p1.text(x_unit, y, money(unit), 10, right=True)
        p1.text(x_amt, y, money(amount), 10, right=True)
        p1.line(50, y - 7, 562, y - 7, 0.3)
        y -= 22
    vat = subtotal * 20 // 100
    total = subtotal + vat
    p1.line(50, top + 14, 50, y + 15)
    p1.line(562, top + 14, 562, y + 15)
    y -= 10
    for label, value, bold in (("Subtotal", subtotal, False), ("VAT 20%", vat, False), ("Total due", total, True)):
        p1.text(460, y, label, 11 if bold else 10, bold=bold, right=True)
        p1.text(x_amt, y, money(value), 11 if bold else 10, bold=bold, right=True)
        y -= 18
    p1.line(380, y + 32, 562, y + 32, 1.0)
    p1.text(60, 120, "Payment terms and signature on page 2.", 9)
    p1.text(306, 40, "Page 1 of 2", 8, right=False)

    p2 = Page()
    p2.text(60, 735, "ACME Components Ltd.  -  Invoice INV-2026-0419 (continued)", 11, bold=True)
    p2.text(60, 700, "Payment terms", 12, bold=True)
    terms = [
        "Payment is due within 30 days of the invoice date, by 11 November 2026.",
        "Bank transfer to: ACME Components Ltd., IBAN GB29 NWBK 6016 1331 9268 19, BIC NWBKGB2L.",
        "Please quote the invoice number INV-2026-0419 as the payment reference.",
        "Late payments carry interest at 8% per year above the base rate.",
    ]
    for i, s in enumerate(terms):
        p2.text(60, 680 - 16 * i, s, 10)
    p2.text(60, 590, f"Amount due: {money(total)}", 12, bold=True)
    # the signature line, a drawn signature above it, the signer's name and role below
    p2.text(60, 470, "Authorised signature:", 10, bold=True)
    p2.raw("1.2 w 190 478 m 205 510 215 470 225 492 c 232 506 240 470 252 488 c "
           "262 503 270 476 282 490 c 295 500 300 478 318 484 c S")
    p2.line(180, 466, 400, 466, 0.8)
    p2.text(180, 452, "Margaret Ellis, Finance Director", 9)
    p2.text(420, 470, "Date:", 10, bold=True)
    p2.text(452, 470, "12 October 2026", 10)
    p2.line(450, 466, 552, 466, 0.8)
    p2.text(60, 400, "Thank you for your business.", 10)
    p2.text(306, 40, "Page 2 of 2", 8)
    write_pdf(path, [p1, p2], "Invoice INV-2026-0419")
    return total


# ---------------------------------------------------------------------------------------------
# scan.jpg: page 1 as a scanner would see it

def make_scan(pdf, path):
    with tempfile.TemporaryDirectory() as td:
        subprocess.run(["pdftoppm", "-r", "90", "-gray", "-png", "-f", "1", "-l", "1", "-singlefile",
                        pdf, os.path.join(td, "p")], check=True)
        page = Image.open(os.path.join(td, "p.png")).convert("L")
    page = page.rotate(1.5, resample=Image.BICUBIC, expand=False, fillcolor=255)
    rng = random.Random(19)
    w, h = page.size
    # coarse noise (paper grain at a quarter resolution, smoothed) plus a few dark specks
    grain = Image.frombytes("L", (w // 4, h // 4), rng.randbytes((w // 4) * (h // 4)))
    grain = grain.resize((w, h), Image.BILINEAR)
    page = Image.blend(page, grain, 0.10)
    d = ImageDraw.Draw(page)
    for _ in range(160):
        x, y = rng.randrange(w), rng.randrange(h)
        r = rng.choice((0, 0, 1))
        d.ellipse((x - r, y - r, x + r, y + r), fill=rng.randrange(40, 120))
    page = page.filter(ImageFilter.GaussianBlur(0.6))
    page.save(path, "JPEG", quality=60, optimize=True)


# ---------------------------------------------------------------------------------------------
# chart.png

QUARTERS = [("Q1", 120), ("Q2", 135), ("Q3", 160), ("Q4", 150)]


def draw_chart(size=(640, 420)):
    w, h = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(10, h // 28))
    title = ImageFont.load_default(size=max(12, h // 19))
    d.text((w // 2, h // 20), "Revenue 2026 by quarter (thousand $)", fill="black", font=title, anchor="mt")
    left, right, top, bottom = w * 0.12, w * 0.95, h * 0.18, h * 0.85
    vmax = 200
    for v in range(0, vmax + 1, 50):  # grid and y labels
        y = bottom - (bottom - top) * v / vmax
        d.line((left, y, right, y), fill=(210, 210, 210), width=1)
        d.text((left - 8, y), str(v), fill="black", font=font, anchor="rm")
    d.line((left, top, left, bottom), fill="black", width=2)
    d.line((left, bottom, right, bottom), fill="black", width=2)
    slot = (right - left) / len(QUARTERS)
    colours = [(70, 110, 180), (70, 110, 180), (220, 120, 40), (70, 110, 180)]  # the best quarter stands out
    for i, ((q, v), c) in enumerate(zip(QUARTERS, colours)):
        x0 = left + slot * i + slot * 0.2
        x1 = left + slot * (i + 1) - slot * 0.2
        y = bottom - (bottom - top) * v / vmax
        d.rectangle((x0, y, x1, bottom), fill=c)
        d.text(((x0 + x1) / 2, y - 4), str(v), fill="black", font=font, anchor="mb")
        d.text(((x0 + x1) / 2, bottom + 6), q, fill="black", font=font, anchor="mt")
    return img


def make_chart(path):
    draw_chart().quantize(colors=32, dither=Image.Dither.NONE).save(path, "PNG", optimize=True)


# ---------------------------------------------------------------------------------------------
# clip.mp4: a title slide, then a cut to the chart

def make_clip(path):
    w, h = 320, 240
    slide = Image.new("RGB", (w, h), (20, 40, 90))
    d = ImageDraw.Draw(slide)
    d.text((w // 2, h // 2 - 14), "Quarterly review", fill="white", font=ImageFont.load_default(size=28), anchor="mm")
    d.text((w // 2, h // 2 + 22), "October 2026", fill=(200, 210, 240), font=ImageFont.load_default(size=16), anchor="mm")
    chart = draw_chart((w, h))
    with tempfile.TemporaryDirectory() as td:
        a, b = os.path.join(td, "a.png"), os.path.join(td, "b.png")
        slide.save(a)
        chart.save(b)
        subprocess.run(["ffmpeg", "-v", "error", "-y",
                        "-loop", "1", "-framerate", "10", "-t", "1.5", "-i", a,
                        "-loop", "1", "-framerate", "10", "-t", "1.5", "-i", b,
                        "-filter_complex", "[0:v][1:v]concat=n=2:v=1:a=0,format=yuv420p[v]", "-map", "[v]",
                        "-c:v", "libx264", "-preset", "veryslow", "-crf", "28", "-threads", "1",
                        "-x264-params", "keyint=15", "-bitexact", "-map_metadata", "-1",
                        "-movflags", "+faststart", path], check=True)


def main():
    os.makedirs(OUT, exist_ok=True)
    pdf = os.path.join(OUT, "invoice.pdf")
    total = make_invoice(pdf)
    make_scan(pdf, os.path.join(OUT, "scan.jpg"))
    make_chart(os.path.join(OUT, "chart.png"))
    make_clip(os.path.join(OUT, "clip.mp4"))
    print(f"invoice total {money(total)}; wrote", ", ".join(sorted(os.listdir(OUT))))


if __name__ == "__main__":
    main()
