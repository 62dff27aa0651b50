"""FP8 and NVFP4 tiny complete VL checkpoints quantized by the real quantizer (PyPI nvidia-modelopt
0.47.0, CPU), and their end-to-end goldens, for the C engine's `nanovl ask` on quantized VL
checkpoints (shared/spec/quant-formats.md; the text-only sibling is gen_quant_goldens.py).

Source: tests/data/vl_tiny as written by gen_tiny_vl.py (read, never rewritten): its F32 language
model (NemotronH `M*-M-`, hidden 96, vocab 1536), its tiny RADIO + mlp1, tokenizer and configs.
The composed reference is gen_tiny_vl.py's (same preprocessing, RADIO, pixel shuffle + projector,
scatter into the LM input embeddings, same question and image); the script checks that it rebuilds
vl_tiny_golden.safetensors (prompt_ids and greedy_ids equal, image_rows and first_logits to
NMSE < 1e-10) before quantizing; the goldens scatter vl_tiny_golden's stored image_rows.

Quantization: a wrapper module {language_model, vision_model.radio_model, mlp1} is quantized with
mtq.quantize(FP8_DEFAULT_CFG | NVFP4_DEFAULT_CFG) plus the Nemotron-VL recipe's exclusions
(`*vision*`, `*image*`, `*radio*`, `*visual*`, `*encoder*`, `*model_encoder*`) and `*mlp1*`, so
only the language model's Linears are quantized (lm_head stays F32 by modelopt's default
`*lm_head*`). Calibration (`max`): 4 random batches of 2 x 32 ids through the language model.
Then requantize_resmooth_fused_llm_layers(language_model) (the VL branch of the exporter also only
runs the LM), export_hf_checkpoint of a deep copy of the language model, and the same CPU
workarounds as gen_quant_goldens.py (imported from it: NVFP4 CPU fake quant, reverse name mapper).

For fmt in (fp8, nvfp4) it writes tests/data/quant_vl/<fmt>/:
  model.safetensors     the exporter's LM tensors renamed backbone.* -> language_model.backbone.*,
                        lm_head.weight -> language_model.lm_head.weight (vl_tiny's names), plus
                        vl_tiny's vision_model.* and mlp1.* tensors unchanged (bitwise)
  config.json           vl_tiny's config.json + top-level `quantization_config`
                        (convert_hf_quant_config_format of the hf_quant_config below, as the exporter)
  hf_quant_config.json  modelopt's get_quant_config of the quantized wrapper (so exclude_modules is
                        the tool's own summary: `language_model.lm_head`, `vision_model*`, `mlp1*`,
                        ...), with the in-memory `language_model.model.` mapped to the published
                        `language_model.backbone.` (what build_reverse_name_mapper does for the LM)
  generation_config.json, tokenizer.json, tokenizer_config.json   copied from vl_tiny
  golden.safetensors    from the composed reference whose LM is ModelOpt's fake-quant model:
    prompt_ids                 I64 [T]   T = 59, identical to vl_tiny_golden's (<image> expanded)
    image_rows                 F32 [28, 96]  vl_tiny_golden's image_rows, the rows scattered here
                                         (vision is unquantized; recomputing them here agrees to
                                         float rounding only, NMSE printed)
    first_logits               F32 [V]   last prompt position (one prefill, use_cache=True)
    greedy_ids                 I64 [8]   greedy_ids[0] = argmax first_logits; step k feeds greedy_ids[k]
    decode_logits              F32 [8, V] logits after feeding greedy_ids[k]
    greedy_margins             F32 [8]   top1 - top2 of the logits that chose greedy_ids[k]
    weight_only_first_logits   F32 [V]   same model, every input quantizer disabled (W8A16 / W4A16)
    nmse_weight_only           F32 [1]   NMSE(weight_only_first_logits, first_logits)
    nmse_unquantized           F32 [1]   NMSE(vl_tiny_golden first_logits, first_logits)
    nmse_replay                F32 [1]   NMSE of the independent replay's first_logits (below)
  NMSE(a, ref) = sum((a - ref)^2) / sum(ref^2), in float64.

Checks (the script fails if one does not hold): every quantized LM Linear has in_features % 16 == 0;
no vision_model / mlp1 / lm_head module is quantized; the exported tensor names (quant extras
aside) are exactly vl_tiny's and every unquantized tensor is bitwise vl_tiny's; the LM exporter's
own exclude list, prefixed with `language_model.`, is the LM part of the VL list; independent
replay: the exported model.safetensors dequantized here (gen_quant_goldens.py's dequant_fp8 /
dequant_nvfp4) into a plain transformers NemotronH, its own activation QDQ in forward pre-hooks
(act_qdq_fp8 / act_qdq_nvfp4), image rows recomputed from the exported vision tensors, gives
first and decode logits with NMSE < 1e-10 and the same greedy ids; each directory < 3 MB.

    tests/reference/.venv/bin/python tests/reference/gen_quant_vl_goldens.py
"""
import copy
import json
import os
import shutil
import sys
import tempfile
import warnings

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# importing gen_quant_goldens applies its CPU workarounds (NVFP4 fake quant, reverse name mapper)
from gen_quant_goldens import (act_qdq_fp8, act_qdq_nvfp4, dequant_fp8, dequant_nvfp4,  # noqa: E402
                               nmse)
import gen_preprocess_goldens as pre  # noqa: E402
import gen_vision_goldens as vis  # noqa: E402
from gen_tiny_vl import PATTERN, QUESTION  # noqa: E402

warnings.filterwarnings("ignore")
import modelopt.torch.quantization as mtq  # noqa: E402
from modelopt.torch.export.convert_hf_config import convert_hf_quant_config_format  # noqa: E402
from modelopt.torch.export.quant_utils import get_quant_config  # noqa: E402
from modelopt.torch.export.unified_export_hf import (export_hf_checkpoint,  # noqa: E402
                                                     requantize_resmooth_fused_llm_layers)
from transformers import (NemotronHConfig, NemotronHForCausalLM, PreTrainedTokenizerFast,  # noqa: E402
                          RadioConfig, RadioModel)
from transformers.models.nemotron_h_omni.modeling_nemotron_h_omni import (  # noqa: E402
    NemotronH_Omni_Reasoning_V3, NemotronH_Omni_Reasoning_V3MultiModalProjector)

DATA = os.path.join(os.path.dirname(HERE), "data")
SRC = os.path.join(DATA, "vl_tiny")
OUT = os.path.join(DATA, "quant_vl")
N_DECODE = 8
CALIB_BATCHES, CALIB_BS, CALIB_LEN = 4, 2, 32
# Nemotron-VL recipe (modelopt_recipes/huggingface/nemotron_vl/ptq/disabled_quantizers.yaml) + mlp1
VL_DISABLED = ["*vision*", "*image*", "*radio*", "*visual*", "*encoder*", "*model_encoder*", "*mlp1*"]
COPY_FILES = ("generation_config.json", "tokenizer.json", "tokenizer_config.json")


# ---------------------------------------------------------------------------------------------
# vl_tiny's pieces, built exactly as gen_tiny_vl.py builds its reference
def lm_config():
    kinds = {"M": "mamba", "*": "attention", "-": "mlp"}
    cfg = NemotronHConfig(vocab_size=1536, hidden_size=96, layers_block_type=[kinds[c] for c in PATTERN],
                          num_attention_heads=4, num_key_value_heads=2, head_dim=24, intermediate_size=192,
                          mlp_hidden_act="relu2", mamba_num_heads=8, mamba_head_dim=12, ssm_state_size=16, n_groups=2,
                          conv_kernel=4, use_conv_bias=True, chunk_size=8, time_step_min=1e-9,
                          time_step_limit=(0.0, float("inf")), layer_norm_epsilon=1e-5, tie_word_embeddings=False)
    cfg.architectures = ["NemotronHForCausalLM"]
    return cfg


def vl_to_lm_name(k):
    """language_model.backbone.X -> model.X, language_model.lm_head.weight -> lm_head.weight."""
    k = k[len("language_model."):]
    return ("model." + k[len("backbone."):]) if k.startswith("backbone.") else k


def lm_to_vl_name(k):
    """Exporter (published) LM name -> VL name: backbone.X -> language_model.backbone.X."""
    return "language_model." + k


def load_vl_tiny():
    sd = {}
    for f in sorted(os.listdir(SRC)):
        if f.endswith(".safetensors"):
            sd.update(load_file(os.path.join(SRC, f)))
    return sd


def build_lm(lm_sd):
    lm = NemotronHForCausalLM(lm_config()).eval()
    missing, unexpected = lm.load_state_dict(lm_sd, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return lm


def build_vision(vt):
    rcfg = RadioConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, mlp_ratio=4.0, patch_size=16,
                       max_img_size=256, num_cls_tokens=4, num_registers=4, summary_idxs=[0, 1, 2], qkv_bias=True,
                       layer_norm_eps=1e-6, hidden_act="gelu", norm_mean=vis.MEAN, norm_std=vis.STD)
    radio = RadioModel(rcfg).eval()
    radio.load_state_dict(vis.from_published(vt, 3), strict=False)
    radio.make_preprocessor_external()
    proj = NemotronH_Omni_Reasoning_V3MultiModalProjector(256, 128, 96, bias=False, eps=1e-5).eval()
    with torch.no_grad():
        proj.layer_norm.weight.copy_(vt["mlp1.0.weight"])
        proj.linear_1.weight.copy_(vt["mlp1.1.weight"])
        proj.linear_2.weight.copy_(vt["mlp1.3.weight"])
    return radio, proj


def image_tiles():
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
    return (x - torch.tensor(vis.MEAN)[:, None, None]) / torch.tensor(vis.STD)[:, None, None]


def image_rows(radio, proj, x):
    with torch.no_grad():
        feats = radio(x).features
        n_t = feats.shape[0]
        return proj(NemotronH_Omni_Reasoning_V3.pixel_shuffle(None, feats.reshape(n_t, 4, 4, 64), 0.5)
                    .reshape(n_t, 4, 256)).reshape(-1, 96)


def prompt_ids(tok, n_rows):
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    before, after = text.split("<image>", 1)
    return (tok(before, add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<img>")] +
            [tok.convert_tokens_to_ids("<image>")] * n_rows + [tok.convert_tokens_to_ids("</img>")] +
            tok(after, add_special_tokens=False)["input_ids"])


def composed_run(lm, ids, rows, image_id):
    """gen_tiny_vl.py's composed forward: first logits, then 8 greedy decode steps."""
    ids_t = torch.tensor([ids])
    with torch.no_grad():
        emb = lm.get_input_embeddings()(ids_t)
        mask = ids_t[0] == image_id
        emb[0, mask] = rows
        out = lm(inputs_embeds=emb, use_cache=True)
        first = out.logits[0, -1].float().clone()
        cache, nxt, greedy, dec, chosen = out.past_key_values, int(first.argmax()), [], [], [first]
        for _ in range(N_DECODE):
            greedy.append(nxt)
            o = lm(torch.tensor([[nxt]]), past_key_values=cache, use_cache=True)
            lg = o.logits[0, -1].float().clone()
            cache, nxt = o.past_key_values, int(lg.argmax())
            dec.append(lg)
            chosen.append(lg)
    margins = [float(t.topk(2).values[0] - t.topk(2).values[1]) for t in chosen[:N_DECODE]]
    return first, greedy, torch.stack(dec), margins


class VL(torch.nn.Module):
    """The module tree modelopt sees: language_model, vision_model.radio_model, mlp1."""

    def __init__(self, lm, radio, proj):
        super().__init__()
        self.language_model = lm
        self.vision_model = torch.nn.Module()
        self.vision_model.radio_model = radio
        self.mlp1 = proj


def vl_quant_config(wrapper):
    hq = get_quant_config(wrapper)
    q = hq["quantization"]
    q["exclude_modules"] = [("language_model.backbone." + e[len("language_model.model."):])
                            if e.startswith("language_model.model.") else e for e in q["exclude_modules"]]
    return hq


# ---------------------------------------------------------------------------------------------
def main():
    torch.use_deterministic_algorithms(True)
    src = load_vl_tiny()
    vt = {k: v for k, v in src.items() if not k.startswith("language_model.")}
    lm_sd = {vl_to_lm_name(k): v for k, v in src.items() if k.startswith("language_model.")}
    base_cfg = json.load(open(os.path.join(SRC, "config.json")))
    ref = load_file(os.path.join(DATA, "vl_tiny_golden.safetensors"))
    tok = PreTrainedTokenizerFast.from_pretrained(SRC)
    image_id = tok.convert_tokens_to_ids("<image>")

    # --- rebuild vl_tiny's composed reference and check it against vl_tiny_golden
    # The recomputed image rows equal vl_tiny_golden's only to float rounding (max |diff| ~1e-5 of
    # 15 on this machine: CPU kernels differ from the machine that made vl_tiny), so the goldens
    # below use vl_tiny_golden's stored image_rows: both goldens then share the same rows exactly.
    radio, proj = build_vision(vt)
    x = image_tiles()
    rows_here = image_rows(radio, proj, x)
    rows = ref["image_rows"].clone()
    ids = prompt_ids(tok, rows.shape[0])
    base = build_lm(lm_sd)
    f0, g0, _, m0 = composed_run(base, ids, rows, image_id)
    e_rows, e_f0 = nmse(rows_here, rows), nmse(f0, ref["first_logits"])
    print(f"vl_tiny rebuild: NMSE image rows {e_rows:.3g}, first_logits {e_f0:.3g}")
    assert ids == ref["prompt_ids"].tolist(), "prompt differs from vl_tiny_golden"
    assert e_rows < 1e-10, "image rows differ from vl_tiny_golden"
    assert e_f0 < 1e-10 and g0 == ref["greedy_ids"].tolist(), \
        "unquantized composed reference differs from vl_tiny_golden"

    pgen = torch.Generator().manual_seed(2024)
    calib = [torch.randint(3, 1536, (CALIB_BS, CALIB_LEN), generator=pgen) for _ in range(CALIB_BATCHES)]

    summary = {}
    for fmt, qcfg0 in (("fp8", mtq.FP8_DEFAULT_CFG), ("nvfp4", mtq.NVFP4_DEFAULT_CFG)):
        qcfg = copy.deepcopy(qcfg0)
        for pat in VL_DISABLED:
            qcfg["quant_cfg"].append({"quantizer_name": pat, "enable": False}) \
                if isinstance(qcfg["quant_cfg"], list) else qcfg["quant_cfg"].update({pat: {"enable": False}})
        torch.manual_seed(0)
        r2, p2 = build_vision(vt)
        wrapper = VL(build_lm(lm_sd), r2, p2).eval()

        def forward_loop(m):
            with torch.no_grad():
                for b in calib:
                    m.language_model(b, use_cache=False)

        wrapper = mtq.quantize(wrapper, qcfg, forward_loop)
        lm = wrapper.language_model
        requantize_resmooth_fused_llm_layers(lm)
        wrapper.eval()

        # which modules carry enabled quantizers
        quantized = [n for n, m in wrapper.named_modules()
                     if hasattr(m, "weight_quantizer") and m.weight_quantizer.is_enabled]
        assert quantized and all(n.startswith("language_model.model.layers.") for n in quantized), quantized
        assert all(wrapper.get_submodule(n).in_features % 16 == 0 for n in quantized)
        assert all(not (hasattr(m, "input_quantizer") and m.input_quantizer.is_enabled)
                   for n, m in wrapper.named_modules() if not n.startswith("language_model.model.layers."))

        hq = vl_quant_config(wrapper)
        excl = hq["quantization"]["exclude_modules"]
        assert not any("\x00" in e for e in excl), excl
        assert "language_model.lm_head" in excl and "vision_model*" in excl and "mlp1*" in excl, excl

        out_dir = os.path.join(OUT, fmt)
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.makedirs(out_dir)
        with tempfile.TemporaryDirectory() as tmp:
            export_hf_checkpoint(copy.deepcopy(lm), export_dir=tmp)
            lm_exp = load_file(os.path.join(tmp, "model.safetensors"))
            lm_hq = json.load(open(os.path.join(tmp, "hf_quant_config.json")))
        # the exporter's LM-only list is the LM part of the VL list
        assert sorted(lm_to_vl_name(e) for e in lm_hq["quantization"]["exclude_modules"]) == \
            sorted(e for e in excl if e.startswith("language_model.")), (lm_hq, excl)
        assert {k: v for k, v in lm_hq["quantization"].items() if k != "exclude_modules"} == \
            {k: v for k, v in hq["quantization"].items() if k != "exclude_modules"}, (lm_hq, hq)

        sd = {lm_to_vl_name(k): v.contiguous() for k, v in lm_exp.items()}
        qprefixes = {k[:-len(".input_scale")] for k in sd if k.endswith(".input_scale")}
        plain = {k for k in sd if k.rsplit(".", 1)[0] not in qprefixes}
        src_lm = {k for k in src if k.startswith("language_model.")}
        assert {p + ".weight" for p in qprefixes} | plain == src_lm, set(sd) ^ src_lm
        for k in plain:
            assert torch.equal(sd[k], src[k]), k
        for k, v in vt.items():
            sd[k] = v
        save_file(sd, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(out_dir, "hf_quant_config.json"), "w") as f:
            json.dump(hq, f, indent=4)
        cfg_out = dict(base_cfg)
        cfg_out["quantization_config"] = convert_hf_quant_config_format(copy.deepcopy(hq))
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(cfg_out, f, indent=2, allow_nan=True)
        for f in COPY_FILES:
            shutil.copy(os.path.join(SRC, f), os.path.join(out_dir, f))

        # --- goldens: composed reference, LM = modelopt's fake-quant model
        # vision quantizers are disabled: the quantized wrapper's vision path is the plain one
        assert torch.equal(image_rows(wrapper.vision_model.radio_model, wrapper.mlp1, x), rows_here)
        first, greedy, dec, margins = composed_run(lm, ids, rows, image_id)
        inq = [m.input_quantizer for m in lm.modules()
               if hasattr(m, "input_quantizer") and m.input_quantizer.is_enabled]
        for q in inq:
            q.disable()
        wo, _, _, _ = composed_run(lm, ids, rows, image_id)
        for q in inq:
            q.enable()
        assert torch.equal(composed_run(lm, ids, rows, image_id)[0], first)

        # --- independent replay of the exported checkpoint
        ex = load_file(os.path.join(out_dir, "model.safetensors"))
        deq = dequant_fp8 if fmt == "fp8" else dequant_nvfp4
        qdq = act_qdq_fp8 if fmt == "fp8" else act_qdq_nvfp4
        qp = sorted(k[:-len(".input_scale")] for k in ex if k.endswith(".input_scale"))
        dense = {}
        for k, v in ex.items():
            if not k.startswith("language_model."):
                continue
            p = k.rsplit(".", 1)[0]
            if p in qp:
                if k.endswith(".weight"):
                    dense[vl_to_lm_name(k)] = deq(ex, p)
            else:
                dense[vl_to_lm_name(k)] = v.float()
        rep = build_lm(dense)
        mods = dict(rep.named_modules())
        for p in qp:
            s = ex[p + ".input_scale"].float()
            mods[vl_to_lm_name(p)].register_forward_pre_hook(
                lambda m, args, s=s: (qdq(args[0], s),) + tuple(args[1:]))
        assert all(torch.equal(ex[k], v) for k, v in vt.items()) and \
            set(ex) == set(sd), "vision_model / mlp1 tensors must be vl_tiny's"
        rf, rg, rd, _ = composed_run(rep, ids, rows, image_id)
        e_first, e_dec = nmse(rf, first), nmse(rd, dec)
        assert e_first < 1e-10 and e_dec < 1e-10, (e_first, e_dec)
        assert rg == greedy, (rg, greedy)

        g = {"prompt_ids": torch.tensor(ids, dtype=torch.int64), "image_rows": rows.contiguous(),
             "first_logits": first.contiguous(), "greedy_ids": torch.tensor(greedy, dtype=torch.int64),
             "decode_logits": dec.contiguous(), "greedy_margins": torch.tensor(margins, dtype=torch.float32),
             "weight_only_first_logits": wo.contiguous(),
             "nmse_weight_only": torch.tensor([nmse(wo, first)], dtype=torch.float32),
             "nmse_unquantized": torch.tensor([nmse(ref["first_logits"], first)], dtype=torch.float32),
             "nmse_replay": torch.tensor([e_first], dtype=torch.float32)}
        save_file(g, os.path.join(out_dir, "golden.safetensors"))

        sizes = {f: os.path.getsize(os.path.join(out_dir, f)) for f in sorted(os.listdir(out_dir))}
        assert sum(sizes.values()) < 3 * 1024 * 1024, sizes
        summary[fmt] = dict(replay_first=e_first, replay_decode=e_dec, weight_only=nmse(wo, first),
                            unquantized=nmse(ref["first_logits"], first), greedy=greedy,
                            greedy_unquantized=g0, margins=margins, min_margin=min(margins),
                            min_margin_unquantized=min(m0), n_quantized=len(quantized), sizes=sizes,
                            bytes=sum(sizes.values()))
        print(f"== {fmt}")
        print("hf_quant_config.json:", json.dumps(hq))
        for k in sorted(ex):
            if k.startswith("language_model.backbone.layers.0.") or not k.startswith(("vision_model", "language_model.backbone.layers")):
                print(f"  {k:56s} {str(ex[k].dtype):22s} {list(ex[k].shape)}")
        print("golden:")
        for k, v in g.items():
            print(f"  {k:32s} {str(v.dtype):14s} {list(v.shape)}")
        print(json.dumps(summary[fmt], indent=1))


if __name__ == "__main__":
    main()
