"""FP8 and NVFP4 reference checkpoints + goldens made by the real quantizer (PyPI nvidia-modelopt
0.47.0, CPU), for the C engine's quantized-Linear path (shared/spec/quant-formats.md).

The model is cfgA of gen_llm_goldens.py (same config, same seed, hence the same F32 weights as
tests/data/llm/cfgA): pattern `M*-M*M-*M`, hidden 64, vocab 384, F32 weights and compute. Every
quantized Linear has in_features in {64, 96} (multiples of 16, as NVFP4 / vLLM require).

For fmt in (fp8, nvfp4) it writes tests/data/quant/<fmt>/:
  config.json          the published NemotronH spelling of gen_llm_goldens.py (hybrid_override_pattern,
                       time_step_limit [0.0, Infinity], ...) plus the `quantization_config` that
                       export_hf_checkpoint wrote into its own (transformers 5.x) config.json
  hf_quant_config.json exactly as export_hf_checkpoint wrote it (exclude_modules mapped back to
                       `backbone.` names through the patched reverse name mapper, see below)
  model.safetensors    exactly as export_hf_checkpoint wrote it (quantized Linears: weight F8_E4M3 /
                       U8-packed E2M1, weight_scale, [weight_scale_2,] input_scale; everything else F32)
  golden.safetensors   made by ModelOpt's own fake-quant forward of the calibrated model:
    prompt_ids               I64 [T]     T = 12 random ids in [3, V)
    prefill_logits           F32 [T, V]  one forward over the prompt (use_cache=True)
    greedy_ids               I64 [S]     S = 8; greedy_ids[0] = argmax of the last prefill row,
                                         greedy_ids[k+1] = argmax of decode_logits[k]
    decode_logits            F32 [S, V]  decode step k feeds greedy_ids[k] through the cache
    weight_only_prefill_logits F32 [T, V] the same prompt through the same fake-quant model with every
                                         input quantizer disabled (dequantized weights, activations
                                         unquantized = W8A16 / W4A16): a C test can assert it is FAR
                                         from prefill_logits (NMSE in nmse_weight_only)
    unquantized_prefill_logits F32 [T, V] the F32 model before quantization (= cfgA's model)
    nmse_weight_only         F32 [1]     NMSE(weight_only_prefill_logits, prefill_logits)
    nmse_unquantized         F32 [1]     NMSE(unquantized_prefill_logits, prefill_logits)
    nmse_replay              F32 [1]     NMSE of this script's independent replay (below)
    op.<module>.x            F32 [4, in] random input of one quantized Linear
    op.<module>.y            F32 [4, out] modelopt's fake-quant output layer(x) (no bias in NemotronH)
      <module> (published names): backbone.layers.0.mixer.in_proj (Mamba),
      backbone.layers.1.mixer.q_proj (attention), backbone.layers.2.mixer.up_proj (MLP)
  NMSE(a, ref) = sum((a - ref)^2) / sum(ref^2), in float64.

CPU workarounds (quant-formats.md §6):
  - tensor_quant.dynamic_block_quantize_op is rerouted, for CPU E2M1 / E4M3-scale tensors only, to
    a torch port of the Triton kernel fp4_fake_quant_block (fp4_kernel_hopper.py + nvfp4_quant.py):
    gs = amax/(6*448); s = e4m3(min(amax16/(6*gs), 448))*gs, s < 1e-5 -> 1;
    q = e2m1 with thresholds <=0.25, <0.75, <=1.25, <1.75, <=2.5, <3.5, <=5 (ties to even).
  - unified_export_hf.build_reverse_name_mapper is wrapped to cut the mangled sentinel at '.\\x00'.
  - requantize_resmooth_fused_llm_layers is called before the deep copy that is exported, so the
    golden model has the same unified amaxes as the export.

Checks (the script fails if one does not hold):
  - independent replay: the exported tensors dequantized here (FP8: w * weight_scale; NVFP4: low nibble
    first, e2m1(code) * weight_scale[o, k/16] * weight_scale_2) loaded into a plain transformers model,
    with this script's own activation quantize-dequantize in forward pre-hooks (FP8:
    e4m3(clamp(x/input_scale, +-448)) * input_scale; NVFP4: dynamic 16-blocks with global scale
    input_scale), reproduces ModelOpt's prefill and decode logits to NMSE < 1e-10;
  - NVFP4: re-quantizing the dequantized exported weights gives back the exported codes and scales
    (fixed point), and no dequantized weight differs from modelopt's fake-quant weight by more than
    float rounding (1e-6 of the tensor's amax); for FP8 the number of such values is reported;
  - the per-op goldens equal the replay of the same op (NMSE < 1e-10);
  - each checkpoint is < 2 MB; hf_quant_config exclude_modules contain no '\\x00'.

    tests/reference/.venv/bin/python tests/reference/gen_quant_goldens.py
"""
import copy
import json
import os
import shutil
import sys
import tempfile
import warnings

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_llm_goldens import (CONFIGS, from_published, make_config, perturb,  # noqa: E402
                             published_config)

warnings.filterwarnings("ignore")
import modelopt.torch.quantization as mtq  # noqa: E402
from modelopt.torch.export import unified_export_hf  # noqa: E402
from modelopt.torch.export.unified_export_hf import (export_hf_checkpoint,  # noqa: E402
                                                     requantize_resmooth_fused_llm_layers)
from modelopt.torch.quantization import tensor_quant  # noqa: E402
from transformers import NemotronHForCausalLM  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "data", "quant")
PROMPT_LEN = 12
N_DECODE = 8
CALIB_BATCHES, CALIB_BS, CALIB_LEN = 4, 2, 32
OP_MODULES = {"M": "in_proj", "*": "q_proj", "-": "up_proj"}
E2M1_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


# ---------------------------------------------------------------------------------------------
# CPU workaround 1: NVFP4 dynamic block fake quant (torch port of the Triton kernel math)
def e2m1_round(a):
    """|x|/s -> nearest E2M1 magnitude, ties to even (the Triton kernel's thresholds)."""
    return torch.where(a <= 0.25, 0.0, torch.where(a < 0.75, 0.5, torch.where(a <= 1.25, 1.0,
           torch.where(a < 1.75, 1.5, torch.where(a <= 2.5, 2.0, torch.where(a < 3.5, 3.0,
           torch.where(a <= 5.0, 4.0, 6.0)))))))


def e4m3(x):
    """Round an F32 tensor to E4M3 (nearest even, as the cast does); caller clamps to +-448."""
    return x.to(torch.float8_e4m3fn).to(torch.float32)


def fp4_fake_quant_block_torch(x, global_amax, block_size=16):
    shape, dtype = x.shape, x.dtype
    x = x.reshape(-1, shape[-1]).float()
    M, N = x.shape
    assert N % block_size == 0, N
    gs = global_amax.float() / (6.0 * 448.0)
    gs = torch.where(gs > 0.0, gs, torch.tensor(1e-12))
    xb = x.reshape(M, N // block_size, block_size)
    xa = xb.abs()
    bmax = xa.amax(dim=-1, keepdim=True)
    s = e4m3(torch.clamp(bmax / (6.0 * gs), max=448.0)) * gs
    s = torch.where(s >= 1e-5, s, torch.tensor(1.0))
    q = e2m1_round(xa / s) * s
    y = torch.where(xb >= 0, q, -q)
    return y.reshape(shape).to(dtype)


_orig_dbq = tensor_quant.dynamic_block_quantize_op


def _dbq_cpu(inputs, block_size, amax, num_bits, exponent_bits, scale_num_bits, scale_exponent_bits):
    if (not inputs.is_cuda and amax is not None and (num_bits, exponent_bits) == (4, 2)
            and (scale_num_bits, scale_exponent_bits) == (8, 4)):
        assert block_size == 16, block_size
        return fp4_fake_quant_block_torch(inputs, amax.amax() if amax.numel() != 1 else amax)
    return _orig_dbq(inputs, block_size, amax, num_bits, exponent_bits, scale_num_bits,
                     scale_exponent_bits)


tensor_quant.dynamic_block_quantize_op = _dbq_cpu

# CPU workaround 2: the reverse name mapper's sentinel is itself renamed (model -> backbone)
_orig_mapper = unified_export_hf.build_reverse_name_mapper


def _fixed_mapper(model):
    m = _orig_mapper(model)
    if m is None:
        return None

    def _map(name):
        out = m(name)
        if ".\x00" in out:
            suffix = ".*" if name.endswith(".*") else ("*" if name.endswith("*") else "")
            out = out[:out.index(".\x00")] + suffix
        return out
    return _map


unified_export_hf.build_reverse_name_mapper = _fixed_mapper


# ---------------------------------------------------------------------------------------------
def nmse(a, ref):
    a, ref = a.double(), ref.double()
    return float(((a - ref) ** 2).sum() / (ref ** 2).sum())


def run(model, prompt):
    with torch.no_grad():
        out = model(prompt, use_cache=True)
        cache = out.past_key_values
        prefill = out.logits[0].float().clone()
        nxt = int(prefill[-1].argmax())
        greedy, dec = [], []
        for _ in range(N_DECODE):
            greedy.append(nxt)
            o = model(torch.tensor([[nxt]]), past_key_values=cache, use_cache=True)
            cache = o.past_key_values
            lg = o.logits[0, -1].float().clone()
            dec.append(lg)
            nxt = int(lg.argmax())
    return prefill, torch.stack(dec), greedy


def to_model_name(pub):
    return "model." + pub[len("backbone."):] if pub.startswith("backbone.") else pub


def to_pub_name(name):
    return "backbone." + name[len("model."):] if name.startswith("model.") else name


# Independent dequantization (quant-formats.md §2), not using modelopt.
def dequant_fp8(sd, p):
    return sd[p + ".weight"].float() * sd[p + ".weight_scale"].float()


def dequant_nvfp4(sd, p):
    packed = sd[p + ".weight"]
    assert packed.dtype == torch.uint8
    lo, hi = (packed & 0x0F).long(), (packed >> 4).long()
    codes = torch.stack([lo, hi], dim=-1).reshape(packed.shape[0], packed.shape[1] * 2)  # low first
    mag = E2M1_VALUES[codes & 7]
    val = torch.where((codes & 8) != 0, -mag, mag)
    bs = sd[p + ".weight_scale"].float().repeat_interleave(16, dim=1)
    return val * bs * sd[p + ".weight_scale_2"].float()


def act_qdq_fp8(x, input_scale):
    return e4m3(torch.clamp(x / input_scale, -448.0, 448.0)) * input_scale


def act_qdq_nvfp4(x, input_scale):
    shape = x.shape
    xb = x.float().reshape(-1, shape[-1] // 16, 16)
    gs = input_scale.float()
    amax16 = xb.abs().amax(-1, keepdim=True)
    s = e4m3(torch.clamp(amax16 / (6.0 * gs), max=448.0)) * gs
    s = torch.where(s < 1e-5, torch.tensor(1.0), s)
    q = e2m1_round(xb.abs() / s) * s
    return torch.where(xb >= 0, q, -q).reshape(shape).to(x.dtype)


def requant_nvfp4_codes(w, wscale2):
    """Quantize a weight like NVFP4QTensor (used only to check the export is a fixed point)."""
    wb = w.reshape(w.shape[0], -1, 16)
    s = wb.abs().amax(-1) / (6.0 * wscale2)
    s = torch.where(s == 0, torch.tensor(1.0), s)
    s8 = torch.clamp(s, 2.0 ** -9, 448.0).to(torch.float8_e4m3fn)
    q = e2m1_round(wb.abs() / (s8.float()[..., None] * wscale2))
    idx = torch.searchsorted(E2M1_VALUES, q.contiguous())
    codes = (idx | torch.where(wb < 0, 8, 0)).reshape(w.shape)
    # -0 vs +0: modelopt may keep the sign of tiny negatives; compare magnitudes there
    return codes, s8


class Replay:
    """A plain transformers model holding the dequantized export + own activation QDQ hooks."""

    def __init__(self, c, fmt, sd):
        self.model = NemotronHForCausalLM(make_config(c)).eval()
        self.quantized = sorted(k[:-len(".input_scale")] for k in sd if k.endswith(".input_scale"))
        dense = {}
        for k, v in sd.items():
            p = k.rsplit(".", 1)[0]
            if p in self.quantized:
                if k.endswith(".weight"):
                    dense[k] = dequant_fp8(sd, p) if fmt == "fp8" else dequant_nvfp4(sd, p)
            else:
                dense[k] = v.float()
        missing, unexpected = self.model.load_state_dict(from_published(dense), strict=False)
        assert not missing and not unexpected, (missing, unexpected)
        qdq = act_qdq_fp8 if fmt == "fp8" else act_qdq_nvfp4
        mods = dict(self.model.named_modules())
        self.handles = []
        for p in self.quantized:
            scale = sd[p + ".input_scale"].float()
            self.handles.append(mods[to_model_name(p)].register_forward_pre_hook(
                lambda m, args, s=scale: (qdq(args[0], s),) + tuple(args[1:])))
        self.mods = mods


def build_model(c):
    torch.manual_seed(c["seed"])
    gen = torch.Generator().manual_seed(c["seed"])
    cfg = make_config(c)
    cfg.architectures = ["NemotronHForCausalLM"]
    model = NemotronHForCausalLM(cfg).eval()
    perturb(model, gen)
    return model.to(c["dtype"]), gen


def main():
    torch.use_deterministic_algorithms(True)
    c = dict(CONFIGS["cfgA"])
    base, gen = build_model(c)
    # prompt and calibration batches from their own generator (the weights are cfgA's)
    pgen = torch.Generator().manual_seed(2024)
    prompt = torch.randint(3, c["vocab"], (1, PROMPT_LEN), generator=pgen)
    calib = [torch.randint(3, c["vocab"], (CALIB_BS, CALIB_LEN), generator=pgen)
             for _ in range(CALIB_BATCHES)]
    with torch.no_grad():
        unq_logits = base(prompt).logits[0].float().clone()

    def forward_loop(m):
        with torch.no_grad():
            for b in calib:
                m(b, use_cache=False)

    summary = {}
    for fmt, qcfg in (("fp8", mtq.FP8_DEFAULT_CFG), ("nvfp4", mtq.NVFP4_DEFAULT_CFG)):
        torch.manual_seed(0)
        model = copy.deepcopy(base)
        model = mtq.quantize(model, qcfg, forward_loop)
        requantize_resmooth_fused_llm_layers(model)
        model.eval()

        out_dir = os.path.join(OUT, fmt)
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.makedirs(out_dir)
        with tempfile.TemporaryDirectory() as tmp:
            export_hf_checkpoint(copy.deepcopy(model), export_dir=tmp)
            files = sorted(os.listdir(tmp))
            assert "model.safetensors" in files and "hf_quant_config.json" in files, files
            shutil.copy(os.path.join(tmp, "model.safetensors"), os.path.join(out_dir, "model.safetensors"))
            shutil.copy(os.path.join(tmp, "hf_quant_config.json"), os.path.join(out_dir, "hf_quant_config.json"))
            exported_cfg = json.load(open(os.path.join(tmp, "config.json")))
        cfg_out = published_config(c)
        cfg_out["quantization_config"] = exported_cfg["quantization_config"]
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(cfg_out, f, indent=2, allow_nan=True)
        hq = json.load(open(os.path.join(out_dir, "hf_quant_config.json")))
        assert not any("\x00" in e for e in hq["quantization"]["exclude_modules"]), hq
        sd = load_file(os.path.join(out_dir, "model.safetensors"))

        # --- goldens from modelopt's fake-quant forward
        prefill, dec, greedy = run(model, prompt)
        g = {
            "prompt_ids": prompt[0].to(torch.int64),
            "prefill_logits": prefill.contiguous(),
            "decode_logits": dec.contiguous(),
            "greedy_ids": torch.tensor(greedy, dtype=torch.int64),
        }
        mods = dict(model.named_modules())
        xgen = torch.Generator().manual_seed(99)
        op_names = [f"model.layers.{c['pattern'].index(ch)}.mixer.{OP_MODULES[ch]}" for ch in "M*-"]
        with torch.no_grad():
            for n in op_names:
                lin = mods[n]
                assert lin.input_quantizer.is_enabled and lin.weight_quantizer.is_enabled, n
                amax = float(lin.input_quantizer.amax.max())
                x = torch.randn(4, lin.in_features, generator=xgen) * (amax / 3.0)
                g[f"op.{to_pub_name(n)}.x"] = x.contiguous()
                g[f"op.{to_pub_name(n)}.y"] = lin(x).float().contiguous()
            # weight-only: same fake-quant model, input quantizers off
            inq = [m.input_quantizer for m in mods.values()
                   if hasattr(m, "input_quantizer") and m.input_quantizer.is_enabled]
            for q in inq:
                q.disable()
            wo = model(prompt).logits[0].float().clone()
            for q in inq:
                q.enable()
            assert torch.equal(model(prompt).logits[0].float(), prefill)
        g["weight_only_prefill_logits"] = wo.contiguous()
        g["unquantized_prefill_logits"] = unq_logits.contiguous()

        # --- independent replay of the exported checkpoint
        rep = Replay(c, fmt, sd)
        rp, rd, rg = run(rep.model, prompt)
        e_pre, e_dec = nmse(rp, prefill), nmse(rd, dec)
        assert e_pre < 1e-10 and e_dec < 1e-10, (e_pre, e_dec)
        assert rg == greedy, (rg, greedy)
        e_ops = {}
        with torch.no_grad():
            for n in op_names:
                pn = to_pub_name(n)
                e_ops[pn] = nmse(rep.mods[n](g[f"op.{pn}.x"]), g[f"op.{pn}.y"])
                assert e_ops[pn] < 1e-10, (pn, e_ops[pn])
        # weight codes vs modelopt's fake-quant weights
        code_diff, total = 0, 0
        with torch.no_grad():
            for p in rep.quantized:
                lin = mods[to_model_name(p)]
                wq = lin.weight_quantizer(lin.weight).float()
                wd = rep.mods[to_model_name(p)].weight.float()
                # values, not float bits: the two sides multiply the same factors in another order
                code_diff += int(((wq - wd).abs() > 1e-6 * wd.abs().amax()).sum())
                total += wq.numel()
                if fmt == "nvfp4":
                    codes, s8 = requant_nvfp4_codes(wd, sd[p + ".weight_scale_2"].float())
                    assert torch.equal(s8.view(torch.uint8), sd[p + ".weight_scale"].view(torch.uint8)), p
                    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).to(torch.uint8)
                    same = (packed == sd[p + ".weight"])
                    # a -0 code (8) and +0 (0) dequantize alike; only allow that difference
                    if not bool(same.all()):
                        a, b = packed[~same], sd[p + ".weight"][~same]
                        assert bool((((a ^ b) & 0x77) == 0).all()), p
        assert fmt != "nvfp4" or code_diff == 0, code_diff
        g["nmse_weight_only"] = torch.tensor([nmse(wo, prefill)], dtype=torch.float32)
        g["nmse_unquantized"] = torch.tensor([nmse(unq_logits, prefill)], dtype=torch.float32)
        g["nmse_replay"] = torch.tensor([e_pre], dtype=torch.float32)
        save_file(g, os.path.join(out_dir, "golden.safetensors"))

        size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
        assert size < 2 * 1024 * 1024, size
        summary[fmt] = dict(replay_prefill=e_pre, replay_decode=e_dec, ops=e_ops,
                            weight_only=nmse(wo, prefill), unquantized=nmse(unq_logits, prefill),
                            weight_values_differing_from_fakequant=f"{code_diff}/{total}",
                            greedy=greedy, bytes=size)

        print(f"== {fmt}: {sorted(os.listdir(out_dir))}, {size} bytes")
        print("hf_quant_config.json:", json.dumps(hq))
        for k in sorted(sd):
            print(f"  {k:48s} {str(sd[k].dtype):22s} {list(sd[k].shape)}")
        print("golden:")
        for k, v in g.items():
            print(f"  {k:48s} {str(v.dtype):14s} {list(v.shape)}")
        print(json.dumps(summary[fmt], indent=1))


if __name__ == "__main__":
    main()
