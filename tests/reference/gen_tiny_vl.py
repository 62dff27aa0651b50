"""A tiny complete Nemotron Nano V2 VL checkpoint in the published layout, and end-to-end goldens
from the composed reference (model.md §12: RadioModel -> Omni pixel shuffle + projector ->
scatter into NemotronHForCausalLM input embeddings; preprocessing with torch's uint8
antialiased bicubic; prompt from transformers' apply_chat_template with the Nano V2 template).

Writes tests/data/vl_tiny/: config.json (llm_config + vision_config + V2 top-level fields),
model-0000{1,2}-of-00002.safetensors + model.safetensors.index.json (language_model.*,
vision_model.radio_model.*, mlp1.*), tokenizer.json, tokenizer_config.json,
generation_config.json; and tests/data/vl_tiny_golden.safetensors: prompt_ids (with <image>
expanded), first_logits (V), greedy_ids (8) for the image question below on
tests/data/media/made/image.bmp with max_num_tiles 12.

    tests/reference/.venv/bin/python tests/reference/gen_tiny_vl.py
"""
import json
import os
import shutil

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import NemotronHConfig, NemotronHForCausalLM, PreTrainedTokenizerFast
from transformers.models.nemotron_h_omni.modeling_nemotron_h_omni import (
    NemotronH_Omni_Reasoning_V3, NemotronH_Omni_Reasoning_V3MultiModalProjector)

import gen_preprocess_goldens as pre
import gen_vision_goldens as vis

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(HERE), "data")
OUT = os.path.join(DATA, "vl_tiny")
QUESTION = "What is in this picture?"
PATTERN = "M*-M-"


def main():
    torch.manual_seed(21)
    g = torch.Generator().manual_seed(21)
    os.makedirs(OUT, exist_ok=True)
    # vision part: the tiny RADIO + mlp1 (out 96) already made by gen_vision_goldens.py
    vt = load_file(os.path.join(DATA, "vision", "tiny_radio", "model.safetensors"))
    vcfg = json.load(open(os.path.join(DATA, "vision", "tiny_radio", "config.json")))
    # LM: hidden 96 to match mlp1's output; vocab covering the Nemotron-special-token tokenizer
    kinds = {"M": "mamba", "*": "attention", "-": "mlp"}
    lcfg = NemotronHConfig(vocab_size=1536, hidden_size=96, layers_block_type=[kinds[c] for c in PATTERN],
                           num_attention_heads=4, num_key_value_heads=2, head_dim=24, intermediate_size=192,
                           mlp_hidden_act="relu2", mamba_num_heads=8, mamba_head_dim=12, ssm_state_size=16, n_groups=2,
                           conv_kernel=4, use_conv_bias=True, chunk_size=8, time_step_min=1e-9,
                           time_step_limit=(0.0, float("inf")), layer_norm_epsilon=1e-5, tie_word_embeddings=False)
    lm = NemotronHForCausalLM(lcfg).eval()
    with torch.no_grad():
        for n, p in lm.named_parameters():
            if "A_log" in n or n.endswith(".D") or "dt_bias" in n:
                continue
            p.copy_((1 + 0.2 * torch.randn(p.shape, generator=g)) if "norm" in n else 0.08 * torch.randn(p.shape, generator=g))
    lm_t = {}
    for k, v in lm.state_dict().items():
        k2 = ("language_model.backbone." + k[len("model."):]) if k.startswith("model.") else ("language_model." + k)
        k2 = k2.replace("backbone.embedding.weight", "backbone.embeddings.weight")
        lm_t[k2] = v.contiguous()
    half = dict(list(lm_t.items())[: len(lm_t) // 2])
    rest = {k: v for k, v in lm_t.items() if k not in half}
    rest.update(vt)
    shards = {"model-00001-of-00002.safetensors": half, "model-00002-of-00002.safetensors": rest}
    wm = {}
    for f, t in shards.items():
        save_file(t, os.path.join(OUT, f), metadata={"format": "pt"})
        wm.update({k: f for k in t})
    json.dump({"metadata": {"total_size": sum(v.numel() * v.element_size() for t in shards.values() for v in t.values())},
               "weight_map": wm}, open(os.path.join(OUT, "model.safetensors.index.json"), "w"), indent=1)
    llm_config = {"model_type": "nemotron_h", "architectures": ["NemotronHForCausalLM"], "vocab_size": 1536,
                  "hidden_size": 96, "num_hidden_layers": len(PATTERN), "hybrid_override_pattern": PATTERN,
                  "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 24, "intermediate_size": 192,
                  "mlp_hidden_act": "relu2", "mamba_num_heads": 8, "mamba_head_dim": 12, "ssm_state_size": 16,
                  "n_groups": 2, "conv_kernel": 4, "use_conv_bias": True, "chunk_size": 8,
                  "time_step_limit": [0.0, float("inf")], "layer_norm_epsilon": 1e-5, "tie_word_embeddings": False}
    cfg = {"architectures": ["NemotronH_Nano_VL_V2"], "model_type": "NemotronH_Nano_VL_V2", "llm_config": llm_config,
           "vision_config": vcfg["vision_config"], "force_image_size": 64, "patch_size": 16, "downsample_ratio": 0.5,
           "ps_version": "v2", "image_tag_type": "internvl", "use_thumbnail": True, "norm_mean": vis.MEAN,
           "norm_std": vis.STD, "vit_hidden_size": 64, "projector_hidden_size": 128, "video_pruning_rate": 0.0,
           "img_context_token": "<image>", "img_start_token": "<img>", "img_end_token": "</img>"}
    json.dump(cfg, open(os.path.join(OUT, "config.json"), "w"), indent=2)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(DATA, "tokenizer", "nemotron_tiny", f), os.path.join(OUT, f))
    tok = PreTrainedTokenizerFast.from_pretrained(OUT)
    json.dump({"eos_token_id": [tok.convert_tokens_to_ids("<SPECIAL_12>"), tok.convert_tokens_to_ids("</s>")]},
              open(os.path.join(OUT, "generation_config.json"), "w"))

    # --- the composed reference on one image question -------------------------------------
    img = np.asarray(Image.open(os.path.join(DATA, "media", "made", "image.bmp")).convert("RGB"))
    H, W = img.shape[:2]
    cols, rows = pre.grid(W, H, 12, image_size=64)
    src = torch.from_numpy(img).permute(2, 0, 1)[None]
    big = torch.nn.functional.interpolate(src, size=(64 * rows, 64 * cols), mode="bicubic", antialias=True,
                                          align_corners=False)[0]
    tiles = [big[:, r * 64:(r + 1) * 64, c * 64:(c + 1) * 64] for r in range(rows) for c in range(cols)]
    if len(tiles) > 1:
        tiles.append(torch.nn.functional.interpolate(src, size=(64, 64), mode="bicubic", antialias=True,
                                                     align_corners=False)[0])
    x = torch.stack(tiles).float() / 255.0
    x = (x - torch.tensor(vis.MEAN)[:, None, None]) / torch.tensor(vis.STD)[:, None, None]
    from transformers import RadioConfig, RadioModel
    rcfg = RadioConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, mlp_ratio=4.0, patch_size=16,
                       max_img_size=256, num_cls_tokens=4, num_registers=4, summary_idxs=[0, 1, 2], qkv_bias=True,
                       layer_norm_eps=1e-6, hidden_act="gelu", norm_mean=vis.MEAN, norm_std=vis.STD)
    radio = RadioModel(rcfg).eval()
    inv = vis.from_published(vt, 3)
    radio.load_state_dict(inv, strict=False)
    radio.make_preprocessor_external()
    proj = NemotronH_Omni_Reasoning_V3MultiModalProjector(256, 128, 96, bias=False, eps=1e-5).eval()
    with torch.no_grad():
        proj.layer_norm.weight.copy_(vt["mlp1.0.weight"])
        proj.linear_1.weight.copy_(vt["mlp1.1.weight"])
        proj.linear_2.weight.copy_(vt["mlp1.3.weight"])
        feats = radio(x).features
        n_t = feats.shape[0]
        rows_emb = proj(NemotronH_Omni_Reasoning_V3.pixel_shuffle(None, feats.reshape(n_t, 4, 4, 64), 0.5)
                        .reshape(n_t, 4, 256)).reshape(-1, 96)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    before, after = text.split("<image>", 1)
    ids = (tok(before, add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<img>")] +
           [tok.convert_tokens_to_ids("<image>")] * rows_emb.shape[0] + [tok.convert_tokens_to_ids("</img>")] +
           tok(after, add_special_tokens=False)["input_ids"])
    ids_t = torch.tensor([ids])
    with torch.no_grad():
        emb = lm.get_input_embeddings()(ids_t)
        mask = ids_t[0] == tok.convert_tokens_to_ids("<image>")
        emb[0, mask] = rows_emb
        out = lm(inputs_embeds=emb, use_cache=True)
        first = out.logits[0, -1].float()
        cache, nxt, greedy = out.past_key_values, int(first.argmax()), []
        for _ in range(8):
            greedy.append(nxt)
            o = lm(torch.tensor([[nxt]]), past_key_values=cache, use_cache=True)
            cache, nxt = o.past_key_values, int(o.logits[0, -1].argmax())
    save_file({"prompt_ids": torch.tensor(ids, dtype=torch.int64), "first_logits": first.contiguous(),
               "greedy_ids": torch.tensor(greedy, dtype=torch.int64), "image_rows": rows_emb.contiguous()},
              os.path.join(DATA, "vl_tiny_golden.safetensors"))
    print("tiles", n_t, "prompt", len(ids), "greedy", greedy)


if __name__ == "__main__":
    main()
