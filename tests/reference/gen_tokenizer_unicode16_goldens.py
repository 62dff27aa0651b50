"""Goldens for letters, digits and marks added in Unicode 15.0-16.0, from PyPI `tokenizers`
(whose Oniguruma has Unicode 16 tables; Debian 12's has 14.0: llm/text/unicode_props.inc and
tests/reference/gen_onig_props.py). Each string puts one such code point where the split
matters: before a contraction ("x\\U00031350's"), after a space (" \\U0001d2c0"), at the head of a
digit run ("\\U0001e4f01234"), between letters of other cases, and a mark after a letter.

Code points: every new one in Python's unicodedata (14.0) terms, sampled (every 151st of each
property's additions) plus the ones a differential test showed splitting differently. Writes
tests/data/tokenizer/unicode16_goldens.json: {tokenizer: [{text, ids}]} for the Nemotron tiny
tokenizer (in this repository) and the real qwen3 and gpt-oss tokenizer.json files in
../shared/tokenizers (the test skips those when ../shared is absent).

    tests/reference/.venv/bin/python tests/reference/gen_tokenizer_unicode16_goldens.py
"""
import json
import os
import unicodedata as ud

from tokenizers import Regex, Tokenizer, pre_tokenizers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "data", "tokenizer", "unicode16_goldens.json")
TOKENIZERS = {"nemotron_tiny": os.path.join(ROOT, "tests", "data", "tokenizer", "nemotron_tiny", "tokenizer.json"),
              "qwen3": os.path.join(ROOT, "..", "shared", "tokenizers", "qwen3", "tokenizer.json"),
              "gpt-oss": os.path.join(ROOT, "..", "shared", "tokenizers", "gpt-oss", "tokenizer.json")}
NAMED = [0x31350, 0x11BC0, 0x1D2C0, 0x1E4F0, 0x1C89, 0x0897, 0x0CF3, 0x0ECE, 0xA7CB, 0x2EBF0, 0x16D40, 0x1E5D0]


def additions(prop):
    split = pre_tokenizers.Split(Regex(r"\p{%s}" % prop), behavior="removed")
    cps = [c for c in range(0x80, 0x110000) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(chr(c) for c in cps)
    kept = set()
    for piece, _ in split.pre_tokenize_str(text):
        kept.update(ord(ch) for ch in piece)
    return [c for c in cps if c not in kept and not ud.category(chr(c)).startswith(prop)]


def main():
    picks = set(NAMED)
    for prop in ("L", "N", "M"):
        add = additions(prop)
        picks.update(add[::151])
    texts = []
    for c in sorted(picks):
        ch = chr(c)
        texts += ["x%s's" % ch, " %s" % ch, "%s1234" % ch, "A%sa'S" % ch, "a%sA %s%s" % (ch, ch, ch)]
    out = {}
    for name, path in TOKENIZERS.items():
        tok = Tokenizer.from_file(path)
        out[name] = [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in texts]
    with open(OUT, "w") as f:
        json.dump({"code_points": len(picks), "goldens": out}, f, ensure_ascii=True, separators=(",", ":"))
    print("wrote", OUT, len(picks), "code points,", len(texts), "texts per tokenizer")


if __name__ == "__main__":
    main()
