"""RADIO ViT goldens from transformers' RadioModel (tiny random config shaped like C-RADIOv2-H:
4 cls + 4 register tokens, a position table larger than the tile's patch grid so the CPE
bilinear resize runs, exact-erf GELU, LayerNorm eps 1e-6, qkv with bias, no final norm), saved
under the published V2 names (model.md §3.4, §12.3) with a VL config.json.

Writes tests/data/vision/tiny_radio/{config.json, model.safetensors (+ a random mlp1)} and
tests/data/vision/vit_golden.safetensors: tiles (3, 3, 64, 64) normalised input, features
(3, 16, 64) = last_hidden_state without the 8 prefix tokens, hidden.{i} (3, 24, 64) after
block i, and embeddings (3, 4, 96) = Omni pixel_shuffle + projector (this checkpoint's mlp1) of
the features.

    tests/reference/.venv/bin/python tests/reference/gen_vision_goldens.py
"""
import json
import os

import torch
from safetensors.torch import save_file
from transformers import RadioConfig, RadioModel

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "vision")
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def to_published(sd, n_layers):
    out, pre = {}, "vision_model.radio_model."
    out[pre + "model.patch_generator.embedder.weight"] = sd.pop("embeddings.patch_projection.weight")
    out[pre + "model.patch_generator.pos_embed"] = sd.pop("embeddings.position_embedding")
    out[pre + "model.patch_generator.cls_token.token"] = sd.pop("embeddings.cls_register_token")
    out[pre + "summary_idxs"] = sd.pop("summary_idxs")
    out[pre + "input_conditioner.norm_mean"] = torch.tensor(MEAN).reshape(3, 1, 1)
    out[pre + "input_conditioner.norm_std"] = torch.tensor(STD).reshape(3, 1, 1)
    sd.pop("input_conditioner.norm_mean", None)
    sd.pop("input_conditioner.norm_std", None)
    for i in range(n_layers):
        s, d = f"encoder.layer.{i}.", pre + f"model.blocks.{i}."
        for n in ("norm1", "norm2"):
            for p in ("weight", "bias"):
                out[d + f"{n}.{p}"] = sd.pop(s + f"{n}.{p}")
        for p in ("weight", "bias"):
            out[d + f"attn.qkv.{p}"] = torch.cat([sd.pop(s + f"attention.{x}_proj.{p}") for x in "qkv"], 0)
            out[d + f"attn.proj.{p}"] = sd.pop(s + f"attention.o_proj.{p}")
            out[d + f"mlp.fc1.{p}"] = sd.pop(s + f"mlp.fc1.{p}")
            out[d + f"mlp.fc2.{p}"] = sd.pop(s + f"mlp.fc2.{p}")
        for ls in ("layer_scale1.lambda1", "layer_scale2.lambda1"):
            assert torch.all(sd.pop(s + ls) == 1), "V2 has no LayerScale"
    assert not sd, f"unmapped keys: {list(sd)}"
    return {k: v.contiguous() for k, v in out.items()}


def from_published(ck, n_layers):
    """The inverse of to_published for loading into transformers' RadioModel (strict=False: the
    published file carries no LayerScale and its conditioner buffers are set separately)."""
    pre = "vision_model.radio_model."
    inv = {"embeddings.patch_projection.weight": ck[pre + "model.patch_generator.embedder.weight"],
           "embeddings.position_embedding": ck[pre + "model.patch_generator.pos_embed"],
           "embeddings.cls_register_token": ck[pre + "model.patch_generator.cls_token.token"]}
    for i in range(n_layers):
        s, d = f"encoder.layer.{i}.", pre + f"model.blocks.{i}."
        for n in ("norm1", "norm2"):
            for p in ("weight", "bias"):
                inv[s + f"{n}.{p}"] = ck[d + f"{n}.{p}"]
        for p in ("weight", "bias"):
            q, k, v = ck[d + f"attn.qkv.{p}"].chunk(3, 0)
            inv[s + f"attention.q_proj.{p}"], inv[s + f"attention.k_proj.{p}"], inv[s + f"attention.v_proj.{p}"] = q, k, v
            inv[s + f"attention.o_proj.{p}"] = ck[d + f"attn.proj.{p}"]
            inv[s + f"mlp.fc1.{p}"] = ck[d + f"mlp.fc1.{p}"]
            inv[s + f"mlp.fc2.{p}"] = ck[d + f"mlp.fc2.{p}"]
    return inv


def main():
    torch.manual_seed(9)
    g = torch.Generator().manual_seed(9)
    cfg = RadioConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, mlp_ratio=4.0, patch_size=16,
                      max_img_size=256, num_cls_tokens=4, num_registers=4, summary_idxs=[0, 1, 2],
                      qkv_bias=True, layer_norm_eps=1e-6, hidden_act="gelu", norm_mean=MEAN, norm_std=STD)
    model = RadioModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_scale" in name:
                continue
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    model.make_preprocessor_external()
    tiles = torch.randn(3, 3, 64, 64, generator=g)
    with torch.no_grad():
        out = model(tiles, output_hidden_states=True)
    d = os.path.join(OUT, "tiny_radio")
    os.makedirs(d, exist_ok=True)
    tensors = to_published(dict(model.state_dict()), 3)
    # an mlp1 projector (random) so the whole vision path runs on this checkpoint:
    # 4 x 64 -> 128 -> 96 (the width of a future tiny VL language model)
    tensors["mlp1.0.weight"] = (1 + 0.2 * torch.randn(256, generator=g)).contiguous()
    tensors["mlp1.1.weight"] = (0.1 * torch.randn(128, 256, generator=g)).contiguous()
    tensors["mlp1.3.weight"] = (0.1 * torch.randn(96, 128, generator=g)).contiguous()
    save_file(tensors, os.path.join(d, "model.safetensors"))
    config = {"architectures": ["NemotronH_Nano_VL_V2"], "model_type": "NemotronH_Nano_VL_V2",
              "force_image_size": 64, "patch_size": 16, "downsample_ratio": 0.5, "ps_version": "v2",
              "use_thumbnail": True, "norm_mean": MEAN, "norm_std": STD, "vit_hidden_size": 64,
              "vision_config": {"args": {"model": "vit_tiny_test"}, "hidden_size": 64, "num_attention_heads": 4,
                                "num_hidden_layers": 3, "patch_size": 16, "layer_norm_eps": 1e-6}}
    json.dump(config, open(os.path.join(d, "config.json"), "w"), indent=2)
    gold = {"tiles": tiles.contiguous(), "features": out.features.contiguous()}
    # the whole vision path: pixel shuffle + projector of transformers' Nemotron Omni code on
    # RadioModel's features, with this checkpoint's mlp1
    from transformers.models.nemotron_h_omni.modeling_nemotron_h_omni import (
        NemotronH_Omni_Reasoning_V3, NemotronH_Omni_Reasoning_V3MultiModalProjector)
    proj = NemotronH_Omni_Reasoning_V3MultiModalProjector(256, 128, 96, bias=False, eps=1e-5).eval()
    with torch.no_grad():
        proj.layer_norm.weight.copy_(tensors["mlp1.0.weight"])
        proj.linear_1.weight.copy_(tensors["mlp1.1.weight"])
        proj.linear_2.weight.copy_(tensors["mlp1.3.weight"])
        shuffled = NemotronH_Omni_Reasoning_V3.pixel_shuffle(None, out.features.reshape(3, 4, 4, 64), 0.5)
        gold["embeddings"] = proj(shuffled.reshape(3, 4, 256)).contiguous()
    for i, h in enumerate(out.hidden_states[1:]):
        gold[f"hidden.{i}"] = h.contiguous()
    save_file(gold, os.path.join(OUT, "vit_golden.safetensors"))
    print("features", tuple(out.features.shape), "hidden", len(out.hidden_states))


if __name__ == "__main__":
    main()
