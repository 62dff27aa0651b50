"""An encrypted PDF that opens without a password (an owner password only, its user password
empty), the case where a --password given for another file of the run must not make it fail:
tests/data/media/made/owner_only.pdf, two_pages.pdf encrypted by pypdf (AES-256, owner password
"owner-secret"). Its reference is poppler's: `pdfinfo owner_only.pdf` opens it (2 pages) and
`pdfinfo -upw wrong owner_only.pdf` refuses it, which this script checks.

    tests/reference/.venv/bin/python tests/reference/gen_owner_only_pdf.py
"""
import os
import subprocess

from pypdf import PdfReader, PdfWriter

MADE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "media", "made")


def main():
    w = PdfWriter(clone_from=PdfReader(os.path.join(MADE, "two_pages.pdf")))
    w.encrypt(user_password="", owner_password="owner-secret", algorithm="AES-256")
    out = os.path.join(MADE, "owner_only.pdf")
    with open(out, "wb") as f:
        w.write(f)
    info = subprocess.run(["pdfinfo", out], capture_output=True, text=True, check=True).stdout
    assert "Pages:           2" in info and "Encrypted:       yes" in info, info
    wrong = subprocess.run(["pdfinfo", "-upw", "wrong", out], capture_output=True, text=True)
    assert wrong.returncode != 0, "poppler opened it with a wrong user password"
    print(out, os.path.getsize(out), "bytes;", [l for l in info.splitlines() if l.startswith(("Pages", "Encrypted"))])


if __name__ == "__main__":
    main()
