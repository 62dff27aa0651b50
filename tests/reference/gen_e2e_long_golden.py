"""End-to-end golden for a long prompt whose vision rows lie past the first prefill chunk: a long
system message (~400 tokens) before the two-page PDF question of gen_e2e_media_goldens.py, on
the tiny VL checkpoint, from the same composed reference (pdftocairo pages -> torch tiles ->
RadioModel -> Omni pixel shuffle + projector -> apply_chat_template + expansion ->
NemotronHForCausalLM). nanovl feeds prompts to the LM in chunks of 256 tokens and gathers each
chunk's vision rows when it is fed: this golden has them in the second and third chunks.

Writes tests/data/vl_tiny_long_golden.safetensors (long_prompt_ids, long_first_logits,
long_greedy_ids, long_image_tokens).

    tests/reference/.venv/bin/python tests/reference/gen_e2e_long_golden.py
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import PreTrainedTokenizerFast

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_e2e_media_goldens as m  # noqa: E402

LONG = " ".join(f"Clause {k}: the supplier delivers item {k} within {k + 3} days." for k in range(1, 31))


def main():
    torch.manual_seed(0)
    cfg = json.load(open(os.path.join(m.CK, "config.json")))
    pdf = os.path.join(m.DATA, "media", "made", "two_pages.pdf")
    tok = PreTrainedTokenizerFast.from_pretrained(m.CK)
    radio, proj, ck = m.radio_and_projector(cfg)
    lm = m.language_model(cfg, ck)
    W = cfg["vision_config"]["hidden_size"]
    img_id, start_id, end_id = (tok.convert_tokens_to_ids(t) for t in ("<image>", "<img>", "</img>"))
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    with tempfile.TemporaryDirectory() as td:
        subprocess.run(["pdftocairo", "-png", "-scale-to", "2048", pdf, os.path.join(td, "p")], check=True)
        pages = [np.asarray(Image.open(os.path.join(td, f)).convert("RGB")) for f in sorted(os.listdir(td))]
    rows, counts = [], []
    for pg in pages:
        e = m.embed(radio, proj, m.normalise(m.image_tiles(pg), cfg), W).reshape(-1, cfg["llm_config"]["hidden_size"])
        rows.append(e)
        counts.append(e.shape[0])
    msgs = [{"role": "system", "content": LONG},
            {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": m.PDF_Q}]}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    parts = text.split("<image>")
    ids = enc(parts[0])
    for k, c in enumerate(counts):
        ids += [start_id] + [img_id] * c + [end_id] + enc(parts[k + 1])
    first_img = ids.index(img_id)
    assert first_img > 256, first_img
    first, greedy = m.run_lm(lm, tok, ids, torch.cat(rows))
    save_file({"long_prompt_ids": torch.tensor(ids), "long_first_logits": first.contiguous(),
               "long_greedy_ids": torch.tensor(greedy), "long_image_tokens": torch.tensor(counts)},
              os.path.join(m.DATA, "vl_tiny_long_golden.safetensors"))
    print("long: prompt", len(ids), "first <image> at", first_img, "tokens per page", counts, "greedy", greedy)


if __name__ == "__main__":
    main()
