"""Tokenizer goldens from the PyPI `tokenizers` library (and transformers for the chat template).

1. Trains a small byte-level BPE tokenizer with the Nemotron special tokens
   (tests/data/tokenizer/nemotron_tiny/tokenizer.json), pre-tokenizer = Split with the
   o200k/Tekken-style case-class regex + ByteLevel, as the Nemotron family uses.
2. Encodes an adversarial corpus with it and with the real Qwen3 and gpt-oss tokenizer.json files
   in ../shared/tokenizers (read in place), add_special_tokens=False, and records ids and whether
   decode(encode(x)) == x, into tests/data/tokenizer/goldens.json.
Invalid UTF-8 inputs are stored as raw bytes; the reference sees bytes.decode("utf-8", "replace").

    tests/reference/.venv/bin/python tests/reference/gen_tokenizer_goldens.py [--keep-tokenizer]
"""
import glob
import json
import os
import sys

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "data", "tokenizer")
SHARED = os.path.join(os.path.dirname(ROOT), "shared")

SPECIALS = ["<unk>", "<s>", "</s>"] + [f"<SPECIAL_{i}>" for i in range(3, 18)] + [
    "<image>", "<img>", "</img>", "<think>", "</think>", "<quad>", "</quad>", "<ref>", "</ref>",
    "<box>", "</box>", "<TOOLCALL>", "</TOOLCALL>"]
SPLIT = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
         r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|"
         r"\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = [
    "Hello world", "hello   world\n\n\nnew  paragraph\t\ttabs", "   leading and trailing   ",
    "\n\n\r\n\r\n", "1234567890 3.14159 1,000,000 2026-11-22 0x1F", "I'm you're we've they'll he'd it's DON'T",
    "What is the total? The TOTAL is $1,234.56.", "naïve café résumé Ångström coöperate",
    "e\u0301 a\u0308 o\u0302\u0323 \u1e9b\u0323 (combining marks, decomposed)", "Ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ",
    "中文测试：这是一个句子。日本語のテキスト。한국어 텍스트입니다.", "ភាសាខ្មែរ គឺជាភាសា", "Ελληνικά και Русский текст",
    "emoji 😀👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 keycap 1️⃣", "def f(x):\n    return x**2  # comment\n\nif __name__ == '__main__':\n\tprint(f(3))",
    "int main(void) { printf(\"%d\\n\", a[i] >> 2); }", "<s>System</s><SPECIAL_11>User\n<image>\nDescribe.<SPECIAL_12>",
    "a<image><image><image>b <img></img> <think>\nreason\n</think>answer", "<SPECIAL_10>System\n\n<SPECIAL_11>User\nhi\n<SPECIAL_11>Assistant\n<think>\n",
    "mixedCASEWords camelCase HTTPServer XMLHttpRequest iPhone", "tabs\tand\u00a0nbsp\u2003em space\u200bzero width",
    "https://example.com/path?q=1&r=two#frag user@example.org", "   ", "", "a", "\u00e9\u0301", "Ω≈ç√∫˜µ≤≥÷ ™ © ®",
]
BYTES = [b"invalid \xff\xfe bytes", b"truncated \xe2\x82", b"overlong \xc0\xaf and surrogate \xed\xa0\x80 end",
         b"\xf0\x9f\x98", b"ok \xe2\x82\xac euro",
         # NUL bytes are text: nanovl's copy stopped at the first one and read past it (a fuzz's find)
         b"a\x00b", b"\x00<image>\x00", b"caf\xc3\xa9 \x00 na\xc3\xafve\x00" + b"b" * 300,
         # long words: many merges with equal ranks in flight (nanovl's merge order follows a heap)
         b"ab" * 1000, ("x" + "\u306e" * 300 + "totals" * 40).encode(),
         # marks added to Unicode after 9.0 (tokenizers' NFC tables): starters there, not reordered
         "a\u1acd\u0317 \u1acd\u05c7 a\u0345\U0001e2ec x\u07fd\u0300 \u0898\u0316".encode()]


def train_tiny():
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    files = sorted(glob.glob(os.path.join(SHARED, "spec", "*.md")))
    texts = []
    for f in files:
        texts.extend(open(f, encoding="utf-8").read().split("\n\n"))
    texts.extend(CORPUS * 3)
    tok.train_from_iterator(texts, trainer)
    d = os.path.join(OUT, "nemotron_tiny")
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    return tok


def main():
    os.makedirs(OUT, exist_ok=True)
    # --keep-tokenizer: encode with the committed nemotron_tiny/tokenizer.json (which this script
    # trained) instead of training again: training reads ../shared/spec/*.md, which have changed
    # since, and vl_tiny carries a copy of that tokenizer
    keep = "--keep-tokenizer" in sys.argv
    tiny = Tokenizer.from_file(os.path.join(OUT, "nemotron_tiny", "tokenizer.json")) if keep else train_tiny()
    toks = {"nemotron_tiny": ("tests/data/tokenizer/nemotron_tiny/tokenizer.json", tiny)}
    for name in ("qwen3", "gpt-oss"):
        p = os.path.join(SHARED, "tokenizers", name, "tokenizer.json")
        toks[name] = (f"../shared/tokenizers/{name}/tokenizer.json", Tokenizer.from_file(p))
    cases = []
    inputs = [t.encode("utf-8") for t in CORPUS] + BYTES
    for name, (path, tk) in toks.items():
        for raw in inputs:
            text = raw.decode("utf-8", "replace")
            ids = tk.encode(text, add_special_tokens=False).ids
            back = tk.decode(ids, skip_special_tokens=False)
            cases.append({"tokenizer": name, "path": path, "hex": raw.hex(), "ids": ids,
                          "roundtrip": back == text})
    json.dump({"generator": "tests/reference/gen_tokenizer_goldens.py", "cases": cases},
              open(os.path.join(OUT, "goldens.json"), "w"), indent=0)
    print(len(cases), "cases;", sum(c["roundtrip"] for c in cases), "round-trip")


if __name__ == "__main__":
    main()
