"""Writes tests/data/tiny_nemotron_h: a tiny random NemotronHForCausalLM saved by transformers'
own save_pretrained, sharded (so model.safetensors.index.json is exercised), plus a
generation_config.json. The C test `cli_inspect_tiny` / `test_inspect` read it.

    tests/reference/.venv/bin/python tests/reference/gen_tiny_nemotron_h.py
"""
import json
import os
import shutil

import torch
from transformers import GenerationConfig, NemotronHConfig, NemotronHForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "data", "tiny_nemotron_h")


def main():
    torch.manual_seed(1234)
    pattern = "M-M*-M*-"  # 3 Mamba-2, 2 attention, 3 MLP
    kinds = {"M": "mamba", "*": "attention", "-": "mlp"}
    cfg = NemotronHConfig(
        vocab_size=256,
        hidden_size=64,
        layers_block_type=[kinds[c] for c in pattern],
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=128,
        mlp_hidden_act="relu2",
        mamba_num_heads=8,
        mamba_head_dim=16,
        ssm_state_size=16,
        n_groups=2,
        conv_kernel=4,
        use_conv_bias=True,
        chunk_size=8,
        time_step_min=1e-9,
        time_step_limit=(0.0, float("inf")),
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=False,
        residual_in_fp32=False,
        use_mamba_kernels=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    model = NemotronHForCausalLM(cfg).eval()
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    # ~100 KB shards so the checkpoint has several files and an index.
    model.save_pretrained(OUT, max_shard_size="100KB", safe_serialization=True)
    GenerationConfig(bos_token_id=1, eos_token_id=[2, 12], pad_token_id=0).save_pretrained(OUT)
    with open(os.path.join(OUT, "config.json")) as f:
        saved = json.load(f)
    files = sorted(os.listdir(OUT))
    print("files:", files)
    print("config keys:", sorted(saved))
    idx = json.load(open(os.path.join(OUT, "model.safetensors.index.json")))
    names = sorted(idx["weight_map"])
    print(len(names), "tensors in", len(set(idx["weight_map"].values())), "shards:")
    for n in names:
        print("  ", n, "->", idx["weight_map"][n])
    # What transformers 5.23 writes (recorded in tests/reference/README.md; the C loader also
    # accepts `model.` and `language_model.backbone.` prefixes). Fail loudly if this changes.
    assert all(n.startswith("backbone.") or n == "lm_head.weight" for n in names), names
    assert "backbone.embeddings.weight" in names
    assert "layers_block_type" in saved and "hybrid_override_pattern" not in saved
    assert len(set(idx["weight_map"].values())) >= 2


if __name__ == "__main__":
    main()
