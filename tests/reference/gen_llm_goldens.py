"""LM goldens from transformers' NemotronHForCausalLM (pure-PyTorch path, CPU).

For each tiny random config writes tests/data/llm/<name>/:
  config.json        NemotronH config with hybrid_override_pattern (the published spelling)
  model.safetensors  weights under the published names (backbone.*, lm_head.weight), written
                     here with safetensors (model.md §12.2: do not rely on save_pretrained)
  golden.safetensors prompt_ids I64[T]; prefill_logits F32[T,V]; decode_logits F32[S,V];
                     greedy_ids I64[S] (greedy_ids[0] = argmax of the last prefill row; decode
                     step k feeds greedy_ids[k] and yields decode_logits[k]);
                     conv_state.{layer} F32[conv_dim, K] and ssm_state.{layer} F32[H, P, N]
                     after prefill + all decode steps (conv_state columns oldest -> newest:
                     the last K pre-conv xBC inputs, the newest being the last token fed).

    tests/reference/.venv/bin/python tests/reference/gen_llm_goldens.py
"""
import json
import os

import torch
from safetensors.torch import load_file, save_file
from transformers import NemotronHConfig, NemotronHForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = {"M": "mamba", "*": "attention", "-": "mlp"}
N_DECODE = 16

CONFIGS = {
    # F32 weights and compute; 2 groups; 3 attention layers; chunk 8 < prompt 21 (not a multiple)
    "cfgA": dict(dtype=torch.float32, pattern="M*-M*M-*M", vocab=384, hidden=64, heads=4, kv=2,
                 head_dim=16, ffn=96, m_heads=8, m_head_dim=8, state=16, groups=2, chunk=8, seed=7),
    # BF16 weights and compute; 4 groups; 2 attention layers
    "cfgB": dict(dtype=torch.bfloat16, pattern="M-*M-M*-", vocab=320, hidden=96, heads=6, kv=3,
                 head_dim=16, ffn=128, m_heads=8, m_head_dim=12, state=8, groups=4, chunk=8, seed=11),
}
PROMPT_LEN = 21


def make_config(c):
    return NemotronHConfig(
        vocab_size=c["vocab"], hidden_size=c["hidden"],
        layers_block_type=[KINDS[ch] for ch in c["pattern"]],
        num_attention_heads=c["heads"], num_key_value_heads=c["kv"], head_dim=c["head_dim"],
        intermediate_size=c["ffn"], mlp_hidden_act="relu2", mamba_num_heads=c["m_heads"],
        mamba_head_dim=c["m_head_dim"], ssm_state_size=c["state"], n_groups=c["groups"],
        conv_kernel=4, use_conv_bias=True, chunk_size=c["chunk"], time_step_min=1e-9,
        time_step_limit=(0.0, float("inf")), layer_norm_epsilon=1e-5, tie_word_embeddings=False,
        residual_in_fp32=False, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )


def published_config(c):
    return {
        "architectures": ["NemotronHForCausalLM"], "model_type": "nemotron_h",
        "vocab_size": c["vocab"], "hidden_size": c["hidden"], "num_hidden_layers": len(c["pattern"]),
        "hybrid_override_pattern": c["pattern"], "num_attention_heads": c["heads"],
        "num_key_value_heads": c["kv"], "head_dim": c["head_dim"], "intermediate_size": c["ffn"],
        "mlp_hidden_act": "relu2", "mamba_num_heads": c["m_heads"], "mamba_head_dim": c["m_head_dim"],
        "ssm_state_size": c["state"], "n_groups": c["groups"], "conv_kernel": 4,
        "use_conv_bias": True, "chunk_size": c["chunk"], "time_step_min": 1e-9,
        "time_step_limit": [0.0, float("inf")], "layer_norm_epsilon": 1e-5,
        "tie_word_embeddings": False, "residual_in_fp32": False, "bos_token_id": 1,
        "eos_token_id": 2, "pad_token_id": 0,
        "torch_dtype": "float32" if c["dtype"] == torch.float32 else "bfloat16",
    }


def to_published(sd):
    """transformers state_dict keys -> published NemotronH names (model.md §12.2)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("model."):
            nk = "backbone." + k[len("model."):]
        elif k.startswith("backbone.") or k == "lm_head.weight":
            nk = k
        else:
            raise KeyError(f"unmapped key {k}")
        nk = nk.replace("backbone.embedding.weight", "backbone.embeddings.weight")
        out[nk] = v.contiguous()
    return out


def from_published(sd):
    return {("model." + k[len("backbone."):]) if k.startswith("backbone.") else k: v for k, v in sd.items()}


def perturb(model, gen):
    """Random init with a scale that gives non-degenerate logits; SSM vectors varied per head."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("A_log"):
                p.copy_(torch.log(torch.rand(p.shape, generator=gen) * 4 + 0.5))
            elif name.endswith(".D"):
                p.copy_(torch.rand(p.shape, generator=gen) * 2 - 0.5)
            elif name.endswith("dt_bias"):
                p.copy_(torch.rand(p.shape, generator=gen) * 2 - 2.5)
            elif "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif "conv1d" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=gen))


def main():
    for name, c in CONFIGS.items():
        torch.manual_seed(c["seed"])
        gen = torch.Generator().manual_seed(c["seed"])
        cfg = make_config(c)
        model = NemotronHForCausalLM(cfg).eval()
        perturb(model, gen)
        model = model.to(c["dtype"])
        out_dir = os.path.join(ROOT, "data", "llm", name)
        os.makedirs(out_dir, exist_ok=True)
        pub = to_published(model.state_dict())
        expected = {"backbone.embeddings.weight", "backbone.norm_f.weight", "lm_head.weight"}
        assert expected <= set(pub), set(pub) - expected
        save_file(pub, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(published_config(c), f, indent=2, allow_nan=True)

        # Reload through the inverse rename into a fresh model: proves the name table.
        model2 = NemotronHForCausalLM(make_config(c)).to(c["dtype"]).eval()
        missing, unexpected = model2.load_state_dict(
            from_published(load_file(os.path.join(out_dir, "model.safetensors"))), strict=True)

        prompt = torch.randint(3, c["vocab"], (1, PROMPT_LEN), generator=gen)
        with torch.no_grad():
            out = model2(prompt, use_cache=True)
            cache = out.past_key_values
            prefill = out.logits[0].float()
            ref = model(prompt).logits[0].float()
            assert torch.equal(prefill, ref), "reloaded model differs"
            nxt = int(prefill[-1].argmax())
            greedy, dec = [], []
            for _ in range(N_DECODE):
                greedy.append(nxt)
                o = model2(torch.tensor([[nxt]]), past_key_values=cache, use_cache=True)
                cache = o.past_key_values
                lg = o.logits[0, -1].float()
                dec.append(lg)
                nxt = int(lg.argmax())
        g = {
            "prompt_ids": prompt[0].to(torch.int64),
            "prefill_logits": prefill.contiguous(),
            "decode_logits": torch.stack(dec).contiguous(),
            "greedy_ids": torch.tensor(greedy, dtype=torch.int64),
        }
        for i, ch in enumerate(c["pattern"]):
            if ch == "M":
                g[f"conv_state.{i}"] = cache.get_conv_state(i, state_idx=0)[0].float().contiguous()
                g[f"ssm_state.{i}"] = cache.get_recurrent_state(i, state_idx=0)[0].float().contiguous()
        save_file(g, os.path.join(out_dir, "golden.safetensors"))
        print(name, "greedy", greedy, "conv", tuple(g[[k for k in g if k.startswith("conv")][0]].shape),
              "ssm", tuple(g[[k for k in g if k.startswith("ssm")][0]].shape),
              "cache dtype", cache.get_recurrent_state(0, state_idx=0).dtype)


if __name__ == "__main__":
    main()
