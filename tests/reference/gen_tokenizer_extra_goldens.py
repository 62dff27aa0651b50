"""Goldens for the tokenizer paths the main corpus does not reach, from PyPI `tokenizers`:

1. byte_fallback: a BPE (no ByteLevel) trained on ASCII text, then rebuilt with the 256 <0xXX>
   tokens and byte_fallback=True, a Split pre-tokenizer, decoder Sequence[ByteFallback, Fuse];
   characters outside the vocabulary (accents, CJK, emoji, invalid bytes) become byte tokens;
2. TemplateProcessing: the same tokenizer with post_processor single "<s> $A </s>": ids with
   add_special_tokens=True and False;
3. the Nemotron tiny tokenizer (byte-level) with a TemplateProcessing "<s> $A" post-processor
   wrapped in a Sequence after ByteLevel, as Llama-3-style files have it;
4. flags: tokenizer 1 with added tokens that carry lstrip ("<L>"), rstrip ("<R>"), both ("<LR>")
   and single_word (special "<W>", non-special "cat"), over texts that put spaces, tabs,
   newlines, word characters, punctuation and non-ASCII letters around them.

Writes tests/data/tokenizer/extra/{fallback,bos,flags}.json (tokenizer.json files) and goldens.json:
[{tokenizer, text | text_bytes_hex, ids, ids_special, decoded}] where decoded is the reference's
decode(ids, skip_special_tokens=False).

    tests/reference/.venv/bin/python tests/reference/gen_tokenizer_extra_goldens.py
"""
import json
import os

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(HERE), "data", "tokenizer")
OUT = os.path.join(DATA, "extra")

TRAIN = ["The quick brown fox jumps over the lazy dog.", "What is the total? The total is 1,234.56 dollars.",
         "def main(): return 0", "Tokenizers split text into tokens; tokens map to ids.", "hello world " * 20]
CORPUS = ["Hello world", "The total is 42.", "naïve café", "中文测试", "emoji 😀👍🏽!", "tabs\tand\nnewlines  x",
          "ÅÆØ åæø ß", "<s>inner</s> text", "mixed 中 and 😀 bytes", "", " ", "z"]
BYTES = [b"invalid \xff\xfe bytes", b"truncated \xe2\x82"]


def fallback_tokenizer():
    base = Tokenizer(models.BPE(unk_token=None))
    base.pre_tokenizer = pre_tokenizers.Split(Regex(r" ?[^\s]+|\s+"), behavior="isolated")
    alphabet = [chr(c) for c in range(32, 127)] + ["\t", "\n"]
    base.train_from_iterator(TRAIN * 5, trainers.BpeTrainer(vocab_size=300, initial_alphabet=alphabet,
                                                            special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    d = json.loads(base.to_str())
    vocab = d["model"]["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in d["model"]["merges"]]
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token="<unk>"))
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r" ?[^\s]+|\s+"), behavior="isolated")
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> $B </s>",
                                                       special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])])
    return tok


FLAGS_CORPUS = ["a <L> b", "a   <L>b", "<L> start", "\t\n <L>", "x<R>   y", "x <R>\n\ny", "<R>", "p  <LR>  q",
                "\t<LR>\t", "<R>  <L>", "<L><L>  <R> <R>", "cat", "a cat sat", "concatenate", "cats and cat.",
                "cat_dog", "cat9 9cat", "bobcat cat", "(cat)", "<W> x<W> <W>y (<W>)", "naïve cat écat caté",
                "中cat 中 cat", "<W>", "cat<W>cat", " cat ", "\u3000<L>", "a\u00a0<R>\u00a0b", "«cat» —cat", "x\u2003<LR>\u2028y"]


def flags_tokenizer():
    tok = fallback_tokenizer()
    tok.add_tokens([AddedToken("<L>", lstrip=True, special=True), AddedToken("<R>", rstrip=True, special=True),
                    AddedToken("<LR>", lstrip=True, rstrip=True, special=True),
                    AddedToken("<W>", single_word=True, special=True), AddedToken("cat", single_word=True)])
    return tok


def bos_tokenizer():
    tok = Tokenizer.from_file(os.path.join(DATA, "nemotron_tiny", "tokenizer.json"))
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=False),
                                              processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                                            special_tokens=[("<s>", bos)])])
    return tok


def main():
    os.makedirs(OUT, exist_ok=True)
    gold = []
    for name, tok in (("fallback", fallback_tokenizer()), ("bos", bos_tokenizer()), ("flags", flags_tokenizer())):
        tok.save(os.path.join(OUT, f"{name}.json"))
        tok = Tokenizer.from_file(os.path.join(OUT, f"{name}.json"))  # exactly what nanovl reads
        for t in (FLAGS_CORPUS if name == "flags" else CORPUS + BYTES):
            text = t.decode("utf-8", "replace") if isinstance(t, bytes) else t
            ids = tok.encode(text, add_special_tokens=False).ids
            case = {"tokenizer": name, "ids": ids, "ids_special": tok.encode(text, add_special_tokens=True).ids,
                    "decoded": tok.decode(ids, skip_special_tokens=False)}
            if isinstance(t, bytes):
                case["text_bytes_hex"] = t.hex()
            else:
                case["text"] = t
            gold.append(case)
    with open(os.path.join(OUT, "goldens.json"), "w", encoding="utf-8") as f:
        json.dump(gold, f, ensure_ascii=False, indent=1)
    fb = [g for g in gold if g["tokenizer"] == "fallback"]
    print(len(gold), "cases; fallback byte tokens used:", sum(any(i >= 300 for i in g["ids"]) for g in fb))


if __name__ == "__main__":
    main()
