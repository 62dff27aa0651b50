"""RADIO ViT goldens in bf16 (issue #18): the tiny RADIO of gen_vision_goldens.py with every
floating-point tensor of its checkpoint cast to bf16 (torch .to(bfloat16), round to nearest
even), run by transformers' RadioModel in bf16 on the CPU (SDPA attention, as loaded by
default), the way vLLM and transformers run the published BF16 checkpoint: the tiles are cast to
bf16 before the patch embedding, every Linear takes bf16 inputs and each op's output is a bf16
tensor. The pixel shuffle and the projector (this checkpoint's mlp1, cast to bf16) then run in
bf16 on the bf16 features.

Reads tests/data/vision/tiny_radio/model.safetensors (f32) and the tiles of
tests/data/vision/vit_golden.safetensors; writes tests/data/vision/vit_bf16_golden.safetensors
(all BF16): features (3, 16, 64) = last_hidden_state without the 8 prefix tokens, hidden.{i}
(3, 24, 64) after block i, embeddings (3, 4, 96). No checkpoint is written: the C test casts
tiny_radio to bf16 itself (the same round to nearest even), so the repository holds the weights
once.

    tests/reference/.venv/bin/python tests/reference/gen_vision_bf16_goldens.py
"""
import os

import torch
from safetensors.torch import load_file, save_file
from transformers import RadioConfig, RadioModel

from gen_vision_goldens import MEAN, STD, from_published

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "vision")


def main():
    ck = load_file(os.path.join(OUT, "tiny_radio", "model.safetensors"))
    ck = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in ck.items()}
    tiles = load_file(os.path.join(OUT, "vit_golden.safetensors"))["tiles"]
    cfg = RadioConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, mlp_ratio=4.0, patch_size=16,
                      max_img_size=256, num_cls_tokens=4, num_registers=4, summary_idxs=[0, 1, 2],
                      qkv_bias=True, layer_norm_eps=1e-6, hidden_act="gelu", norm_mean=MEAN, norm_std=STD)
    model = RadioModel(cfg).eval()
    model.make_preprocessor_external()
    model = model.to(torch.bfloat16)
    missing, unexpected = model.load_state_dict(from_published(ck, 3), strict=False)
    assert not unexpected, unexpected
    assert all("layer_scale" in k or "input_conditioner" in k or k == "summary_idxs" for k in missing), missing
    for name, p in model.named_parameters():
        assert p.dtype == torch.bfloat16, name
    print("attention:", model.config._attn_implementation)
    with torch.no_grad():
        out = model(tiles.to(torch.bfloat16), output_hidden_states=True)
    assert out.features.dtype == torch.bfloat16
    gold = {"features": out.features.contiguous()}
    for i, h in enumerate(out.hidden_states[1:]):
        gold[f"hidden.{i}"] = h.contiguous()
    from transformers.models.nemotron_h_omni.modeling_nemotron_h_omni import (
        NemotronH_Omni_Reasoning_V3, NemotronH_Omni_Reasoning_V3MultiModalProjector)
    proj = NemotronH_Omni_Reasoning_V3MultiModalProjector(256, 128, 96, bias=False, eps=1e-5).eval()
    proj = proj.to(torch.bfloat16)
    with torch.no_grad():
        proj.layer_norm.weight.copy_(ck["mlp1.0.weight"])
        proj.linear_1.weight.copy_(ck["mlp1.1.weight"])
        proj.linear_2.weight.copy_(ck["mlp1.3.weight"])
        shuffled = NemotronH_Omni_Reasoning_V3.pixel_shuffle(None, out.features.reshape(3, 4, 4, 64), 0.5)
        gold["embeddings"] = proj(shuffled.reshape(3, 4, 256)).contiguous()
    assert gold["embeddings"].dtype == torch.bfloat16
    save_file(gold, os.path.join(OUT, "vit_bf16_golden.safetensors"))
    # how far bf16 lands from the f32 reference (the size of the rounding the C test must reproduce)
    ref = load_file(os.path.join(OUT, "vit_golden.safetensors"))
    for k in ("features", "embeddings"):
        a, b = gold[k].float(), ref[k]
        print(k, "bf16 vs f32 reference: NMSE %.3g, max |diff| %.3g" % (
            float(((a - b) ** 2).sum() / (b ** 2).sum()), float((a - b).abs().max())))


if __name__ == "__main__":
    main()
