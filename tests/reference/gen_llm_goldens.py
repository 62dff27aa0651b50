"""LM goldens from transformers' NemotronHForCausalLM (pure-PyTorch path, CPU).

For each tiny random config writes tests/data/llm/<name>/:
  config.json        NemotronH config with hybrid_override_pattern (the published spelling) and
                     the model.md §2.1 field names; time_step_limit is written as [0.0, Infinity]
                     (the non-JSON literal NVIDIA's own NemotronH configs use)
  model.safetensors  weights under the published names of model.md §2.6 without the
                     `language_model.` prefix (backbone.embeddings.weight,
                     backbone.layers.{i}.norm.weight, backbone.layers.{i}.mixer.*,
                     backbone.norm_f.weight, lm_head.weight), written here with safetensors
                     after renaming the state_dict (model.md §12.2: do not rely on save_pretrained)
  golden.safetensors prompt_ids I64[T]; prefill_logits F32[T,V]; decode_logits F32[S,V];
                     greedy_ids I64[S] (greedy_ids[0] = argmax of the last prefill row; decode
                     step k feeds greedy_ids[k] and yields decode_logits[k]);
                     conv_state.{layer} F32[conv_dim, K] and ssm_state.{layer} F32[H, P, N]
                     after prefill + all decode steps (conv_state columns oldest -> newest:
                     the last K pre-conv xBC inputs, the newest being the last token fed);
                     hidden.{layer} F32[T, hidden] = residual stream after block `layer` in the
                     prefill (before norm_f).
  (layer = absolute layer index; S = 16, T = 21: longer than chunk_size 8 and not a multiple;
  cfgC: T = 100, chunk_size 32.)

Checks done while generating (the script fails if one does not hold):
  - the renamed key set equals the model.md §2.6 name set built from the pattern;
  - a fresh NemotronHForCausalLM loaded from the written files through the inverse rename
    reproduces the prefill logits of the generating model bit for bit;
  - transformers' own NemotronHForCausalLM.from_pretrained(<dir>) loads the written directory
    (hybrid_override_pattern, published names, Infinity) with no missing/unexpected keys and
    reproduces the prefill logits bit for bit;
  - the dt clamp of the torch path (dt >= time_step_min in the chunked prefill; in 5.23 the
    single-token decode path does not clamp at all, model.md §2.5 step 3) is a no-op:
    rerunning prefill + decode with every mixer's time_step_limit set to (0, inf) gives identical
    logits and states, and the smallest dt seen is reported (it is > 1e-3, so even the default
    time_step_min would not have clamped);
  - conv_state equals the last K pre-conv xBC rows of in_proj's output (captured by a hook);
  - ssm_state equals an independent float64 sequential scan of the §2.5 recurrence over all
    tokens fed (37 for T = 21; S[h,p,n] = exp(dt*A) S + dt x[p] B[n]).

    tests/reference/.venv/bin/python tests/reference/gen_llm_goldens.py
"""
import json
import os

import torch
import torch.nn.functional as F
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
    # BF16; Mamba heads of 16 and 16 state columns, attention heads of 16 (the shapes the CUDA
    # tensor-core kernels take: multiples of 16) and a 100-token prompt (longer than their tiles
    # of 64, and than chunk 32, a multiple of neither)
    "cfgC": dict(dtype=torch.bfloat16, pattern="M*-MM*-M", vocab=256, hidden=64, heads=4, kv=2,
                 head_dim=16, ffn=96, m_heads=4, m_head_dim=16, state=16, groups=2, chunk=32, seed=13,
                 prompt_len=100),
}
PROMPT_LEN = 21
MAMBA_SUFFIXES = ["in_proj.weight", "conv1d.weight", "conv1d.bias", "dt_bias", "A_log", "D",
                  "norm.weight", "out_proj.weight"]
ATTN_SUFFIXES = ["q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight"]
MLP_SUFFIXES = ["up_proj.weight", "down_proj.weight"]


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


def published_names(pattern):
    """The model.md §2.6 tensor name set (without `language_model.`) for a pattern."""
    names = {"backbone.embeddings.weight", "backbone.norm_f.weight", "lm_head.weight"}
    for i, ch in enumerate(pattern):
        names.add(f"backbone.layers.{i}.norm.weight")
        suf = {"M": MAMBA_SUFFIXES, "*": ATTN_SUFFIXES, "-": MLP_SUFFIXES}[ch]
        names.update(f"backbone.layers.{i}.mixer.{s}" for s in suf)
    return names


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
        assert nk not in out, nk
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


def run(model, prompt, record=None):
    """Prefill with use_cache, then N_DECODE greedy steps through the cache.

    record (optional dict): filled with per-Mamba-layer in_proj outputs (every token fed, in
    order) and per-layer prefill block outputs."""
    hooks = []
    if record is not None:
        record["proj"], record["hidden"] = {}, {}
        record["phase"] = "prefill"
        for i, blk in enumerate(model.model.layers):
            if blk.block_type == "linear_attention":
                def proj_hook(mod, inp, out, i=i):
                    record["proj"].setdefault(i, []).append(out[0].detach().clone())
                hooks.append(blk.mixer.in_proj.register_forward_hook(proj_hook))

            def blk_hook(mod, inp, out, i=i):
                if record["phase"] == "prefill":
                    h = out[0] if isinstance(out, tuple) else out
                    record["hidden"][i] = h[0].detach().float().clone()
            hooks.append(blk.register_forward_hook(blk_hook))
    try:
        with torch.no_grad():
            out = model(prompt, use_cache=True)
            if record is not None:
                record["phase"] = "decode"
            cache = out.past_key_values
            prefill = out.logits[0].float()
            nxt = int(prefill[-1].argmax())
            greedy, dec = [], []
            for _ in range(N_DECODE):
                greedy.append(nxt)
                o = model(torch.tensor([[nxt]]), past_key_values=cache, use_cache=True)
                cache = o.past_key_values
                lg = o.logits[0, -1].float()
                dec.append(lg)
                nxt = int(lg.argmax())
    finally:
        for h in hooks:
            h.remove()
    return prefill, torch.stack(dec), greedy, cache


@torch.no_grad()
def check_states(model, c, record, g):
    """conv_state = last K pre-conv inputs; ssm_state = float64 sequential scan (§2.5)."""
    K = 4
    d_inner = c["m_heads"] * c["m_head_dim"]
    GN = c["groups"] * c["state"]
    conv_dim = d_inner + 2 * GN
    H, P, N, G = c["m_heads"], c["m_head_dim"], c["state"], c["groups"]
    worst, min_dt = 0.0, float("inf")
    for i, proj in record["proj"].items():
        mx = model.model.layers[i].mixer
        zxbcdt = torch.cat(proj, dim=0)  # [T_all, proj] in the model dtype
        xbc = zxbcdt[:, d_inner:d_inner + conv_dim]
        dt_raw = zxbcdt[:, d_inner + conv_dim:]
        conv = g[f"conv_state.{i}"]
        assert torch.equal(conv, xbc[-K:].t().float()), f"conv_state.{i} is not the last {K} inputs"
        # dt exactly as HF computes it (model dtype, then fp32 for the state update)
        dt = F.softplus(dt_raw + mx.dt_bias.to(dt_raw.dtype))
        min_dt = min(min_dt, float(dt.float().min()))
        # independent sequential recurrence in float64
        x = xbc.double().t()  # [conv_dim, T]
        w = mx.conv1d.weight.double()[:, 0, :]  # [conv_dim, K]
        b = mx.conv1d.bias.double()
        xp = F.pad(x, (K - 1, 0))
        u = torch.stack([b + (w * xp[:, t:t + K]).sum(-1) for t in range(x.shape[1])], dim=1)
        u = F.silu(u).t()  # [T, conv_dim]
        xs = u[:, :d_inner].reshape(-1, H, P)
        Bm = u[:, d_inner:d_inner + GN].reshape(-1, G, N).repeat_interleave(H // G, dim=1)
        A = -torch.exp(mx.A_log.double())
        S = torch.zeros(H, P, N, dtype=torch.float64)
        for t in range(xs.shape[0]):
            d = dt[t].double()
            S = torch.exp(d * A)[:, None, None] * S + d[:, None, None] * xs[t][:, :, None] * Bm[t][:, None, :]
        ref = g[f"ssm_state.{i}"].double()
        err = float((S - ref).abs().max() / (ref.abs().max() + 1e-12))
        worst = max(worst, err)
    return worst, min_dt


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
        want = published_names(c["pattern"])
        assert set(pub) == want, (sorted(set(pub) - want), sorted(want - set(pub)))
        save_file(pub, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(published_config(c), f, indent=2, allow_nan=True)

        # Reload through the inverse rename into a fresh model: proves the name table.
        model2 = NemotronHForCausalLM(make_config(c)).to(c["dtype"]).eval()
        model2.load_state_dict(from_published(load_file(os.path.join(out_dir, "model.safetensors"))),
                               strict=True)

        prompt = torch.randint(3, c["vocab"], (1, c.get("prompt_len", PROMPT_LEN)), generator=gen)
        record = {}
        prefill, dec, greedy, cache = run(model2, prompt, record)
        with torch.no_grad():
            ref = model(prompt).logits[0].float()
        assert torch.equal(prefill, ref), "reloaded model differs"
        g = {
            "prompt_ids": prompt[0].to(torch.int64),
            "prefill_logits": prefill.contiguous(),
            "decode_logits": dec.contiguous(),
            "greedy_ids": torch.tensor(greedy, dtype=torch.int64),
        }
        for i, ch in enumerate(c["pattern"]):
            if ch == "M":
                g[f"conv_state.{i}"] = cache.get_conv_state(i, state_idx=0)[0].float().contiguous()
                g[f"ssm_state.{i}"] = cache.get_recurrent_state(i, state_idx=0)[0].float().contiguous()
        for i in range(len(c["pattern"])):
            g[f"hidden.{i}"] = record["hidden"][i].contiguous()
        last = len(c["pattern"]) - 1
        with torch.no_grad():
            normed = model2.model.norm_f(record["hidden"][last].to(c["dtype"])[None])
            assert torch.equal(model2.lm_head(normed)[0].float(), prefill), "hidden.{last} is not the last block"

        # The torch path clamps dt >= time_step_min (1e-9 here); show that this changes nothing.
        for blk in model2.model.layers:
            if blk.block_type == "linear_attention":
                blk.mixer.time_step_limit = (0.0, float("inf"))
        p2, d2, g2, cache2 = run(model2, prompt)
        assert torch.equal(p2, prefill) and torch.equal(d2, dec) and g2 == greedy, "dt clamp mattered"
        for i, ch in enumerate(c["pattern"]):
            if ch == "M":
                assert torch.equal(cache2.get_recurrent_state(i, state_idx=0)[0].float(), g[f"ssm_state.{i}"])

        state_err, min_dt = check_states(model2, c, record, g)
        assert min_dt > 1e-3, f"min dt {min_dt}: the default time_step_min would clamp"
        assert state_err < (1e-5 if c["dtype"] == torch.float32 else 2e-2), state_err

        save_file(g, os.path.join(out_dir, "golden.safetensors"))

        # transformers' own loader reads the written directory (hybrid_override_pattern, the
        # published names, Infinity) with no missing/unexpected keys and the same logits.
        model3, info = NemotronHForCausalLM.from_pretrained(out_dir, output_loading_info=True)
        assert not any(info.values()), info
        assert model3.dtype == c["dtype"], model3.dtype
        saved_kinds = {"linear_attention": "M", "full_attention": "*", "mlp": "-"}
        assert "".join(saved_kinds[t] for t in model3.config.layers_block_type) == c["pattern"]
        with torch.no_grad():
            assert torch.equal(model3.eval()(prompt).logits[0].float(), prefill), "from_pretrained differs"
        top2 = dec.topk(2, dim=-1).values
        print(f"{name}: {len(pub)} tensors, greedy {greedy}")
        print(f"  logits std {prefill.std():.3f}, decode top-2 margin min {float((top2[:, 0] - top2[:, 1]).min()):.4f}, "
              f"min dt {min_dt:.4g}, ssm_state vs f64 scan rel err {state_err:.2e}, "
              f"cache dtypes conv {cache.get_conv_state(0, state_idx=0).dtype} "
              f"ssm {cache.get_recurrent_state(0, state_idx=0).dtype}, cache {type(cache).__name__} "
              f"{ {ch: type(cache.layers[c['pattern'].index(ch)]).__name__ for ch in 'M*-'} }")
        for k, v in g.items():
            if not k.startswith("hidden.") or k == "hidden.0":
                print(f"  {k:16s} {str(v.dtype):14s} {tuple(v.shape)}")


if __name__ == "__main__":
    main()
