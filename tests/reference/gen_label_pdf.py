"""A PDF whose page labels are long, the case where nanovl shows at most a label's first 200
bytes (MEDIA_PDF_LABEL_MAX), cut where a UTF-8 character begins, and "...":
tests/data/media/made/long_labels.pdf, two_pages.pdf with /PageLabels written by pypdf: page 1
a prefix of 199 "x", an "é" (bytes 200 and 201) and 100 "y" (301 bytes: the cut falls inside the
"é", so 199 bytes are kept), page 2 "B-1". Its reference is pypdf's reading back
(reader.page_labels), saved as long_labels.json.

    tests/reference/.venv/bin/python tests/reference/gen_label_pdf.py
"""
import json
import os

from pypdf import PdfReader, PdfWriter
from pypdf.constants import PageLabelStyle

MADE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "media", "made")


def main():
    w = PdfWriter(clone_from=PdfReader(os.path.join(MADE, "two_pages.pdf")))
    # 199 ASCII bytes then a two-byte character across the 200-byte cut, then more
    prefix = "x" * 199 + "é" + "y" * 100
    w.set_page_label(0, 0, prefix=prefix)
    w.set_page_label(1, 1, style=PageLabelStyle.DECIMAL, prefix="B-", start=1)
    out = os.path.join(MADE, "long_labels.pdf")
    with open(out, "wb") as f:
        w.write(f)
    labels = PdfReader(out).page_labels
    json.dump({"generator": "tests/reference/gen_label_pdf.py", "labels": labels},
              open(os.path.join(MADE, "long_labels.json"), "w"), ensure_ascii=False)
    print(out, [len(l.encode()) for l in labels], labels[1])


if __name__ == "__main__":
    main()
