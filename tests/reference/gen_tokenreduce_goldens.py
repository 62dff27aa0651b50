"""Pixel shuffle, mlp1 projector and EVS goldens from transformers' Nemotron Omni code
(models/nemotron_h_omni: NemotronH_Omni_Reasoning_V3.pixel_shuffle, the RMSNorm/Linear/relu2/
Linear projector class, compute_retention_mask), which model.md §4 and §6.4 state are the same
operations as V2 (pixel shuffle v2 order; EVS line for line as vLLM's).

Writes tests/data/tokenreduce/:
  mlp1.safetensors   mlp1.0.weight (64), mlp1.1.weight (96, 64), mlp1.3.weight (48, 96), F32
  golden.safetensors vit (3, 8, 8, 16) input grid; shuffled (3, 4, 4, 64); projected (3, 16, 48);
                     video_embeds (6, 16, 48) F32 and the masks evs_f32_q{0,50,75},
                     evs_bf16_q{0,50,75} (U8, 96) from compute_retention_mask on F32 and BF16
                     embeddings; evs_{f32,bf16}_q{20,45}: rates whose keep count is fractional
                     (96 * 0.8 = 76.8 and 96 * 0.55 = 52.8 tokens: int() keeps 76 and 52, rounding
                     would keep 77 and 53);
                     small (32, 64) rows of RMS 1e-4 .. 1 (geometric) and projected_small (32, 48):
                     rows whose mean square is near the RMSNorm epsilon (1e-5), where a wrong
                     epsilon changes the output by up to ~2x (eps 1e-4) rather than by ~1e-5.

    tests/reference/.venv/bin/python tests/reference/gen_tokenreduce_goldens.py
"""
import os

import torch
from safetensors.torch import save_file
from transformers.models.nemotron_h_omni.modeling_nemotron_h_omni import (
    NemotronH_Omni_Reasoning_V3, NemotronH_Omni_Reasoning_V3MultiModalProjector, compute_retention_mask)

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "tokenreduce")


def main():
    torch.manual_seed(3)
    g = torch.Generator().manual_seed(3)
    vit = torch.randn(3, 8, 8, 16, generator=g)
    shuffled = NemotronH_Omni_Reasoning_V3.pixel_shuffle(None, vit, 0.5)
    proj = NemotronH_Omni_Reasoning_V3MultiModalProjector(64, 96, 48, bias=False, eps=1e-5).eval()
    with torch.no_grad():
        proj.layer_norm.weight.copy_(1 + 0.3 * torch.randn(64, generator=g))
        proj.linear_1.weight.copy_(0.2 * torch.randn(96, 64, generator=g))
        proj.linear_2.weight.copy_(0.2 * torch.randn(48, 96, generator=g))
        projected = proj(shuffled.reshape(3, 16, 64))
        # a video: 6 frames whose tokens drift by different amounts
        frames = [torch.randn(16, 64, generator=g)]
        for f in range(1, 6):
            step = torch.randn(16, 64, generator=g) * torch.rand(16, 1, generator=g) * 0.8
            frames.append(frames[-1] + step)
        video = proj(torch.stack(frames))
        # rows where the RMSNorm epsilon matters: mean square from 1e-8 to 1 around eps = 1e-5
        rms = torch.logspace(-4, 0, 32, dtype=torch.float64).to(torch.float32)
        small = torch.randn(32, 64, generator=g)
        small = small / small.pow(2).mean(-1, keepdim=True).sqrt() * rms[:, None]
        projected_small = proj(small)
    os.makedirs(OUT, exist_ok=True)
    save_file({"mlp1.0.weight": proj.layer_norm.weight.detach().contiguous(),
               "mlp1.1.weight": proj.linear_1.weight.detach().contiguous(),
               "mlp1.3.weight": proj.linear_2.weight.detach().contiguous()}, os.path.join(OUT, "mlp1.safetensors"))
    gold = {"vit": vit.contiguous(), "shuffled": shuffled.contiguous(), "projected": projected.contiguous(),
            "video_embeds": video.contiguous(), "small": small.contiguous(),
            "projected_small": projected_small.contiguous()}
    for name, emb in (("f32", video), ("bf16", video.to(torch.bfloat16))):
        for q in (0.0, 0.5, 0.75, 0.2, 0.45):
            m = compute_retention_mask(video_embeds=emb.reshape(-1, 48), thw=torch.tensor([6, 4, 4]),
                                       spatial_merge_size=1, q=q)
            gold[f"evs_{name}_q{int(q * 100)}"] = m.to(torch.uint8).contiguous()
            print(name, q, int(m.sum()), m.reshape(6, 16).sum(1).tolist())
    save_file(gold, os.path.join(OUT, "golden.safetensors"))


if __name__ == "__main__":
    main()
