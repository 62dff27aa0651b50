"""End-to-end goldens for a two-page PDF question and a video question (EVS off and q = 0.5) on
the tiny VL checkpoint tests/data/vl_tiny (made by gen_tiny_vl.py; read here, not changed), from
the composed reference of model.md §12:

- media made here with tools: tests/data/media/made/two_pages.pdf (Pillow, two drawn pages) and
  tests/data/media/made/clip_2s.mp4 (ffmpeg testsrc, 96x64, 10 fps, 2 s, H.264);
- PDF pages rendered by pdftocairo with the long side at 2048 px (nanovl's default render size);
  video frames decoded by PyAV at the indices of model.md §6.1 (fps 2, at most 128 frames,
  linspace over the stream's frames) with timestamps frame_index * int(1000 / fps) / 1000;
- tiles: torch interpolate(uint8, bicubic, antialias) to the InternVL grid (12 tiles max +
  thumbnail) for pages, one 64x64 tile per frame for video; normalised with the config's
  mean/std; transformers RadioModel -> Nemotron Omni pixel shuffle + projector;
  compute_retention_mask (Omni EVS) for video;
- prompt: apply_chat_template with the checkpoint's template, then each <image> marker expanded to
  <img> <image> x rows </img> and each <video> marker to per-frame "Frame i sampled at t seconds: "
  blocks (\n between frames), as vLLM's Nano V2 VL processor does;
- NemotronHForCausalLM loaded from the checkpoint's language_model.* tensors, rows scattered at the
  <image> positions of inputs_embeds; first-token logits and 8 greedy ids.

Writes tests/data/vl_tiny_media_golden.safetensors with pdf_*, video_q0_*, video_q50_* tensors.

    tests/reference/.venv/bin/python tests/reference/gen_e2e_media_goldens.py
"""
import json
import os
import subprocess
import tempfile
import time

import av
import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file
from transformers import NemotronHConfig, NemotronHForCausalLM, PreTrainedTokenizerFast, RadioConfig, RadioModel
from transformers.models.nemotron_h_omni.modeling_nemotron_h_omni import (
    NemotronH_Omni_Reasoning_V3, NemotronH_Omni_Reasoning_V3MultiModalProjector, compute_retention_mask)

import gen_preprocess_goldens as pre
import gen_vision_goldens as vis

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(HERE), "data")
CK = os.path.join(DATA, "vl_tiny")
MADE = os.path.join(DATA, "media", "made")
PDF_Q = "What is written on these pages?"
VIDEO_Q = "What happens in this video?"


def make_media():
    pages = []
    for i, (bg, fg) in enumerate([((250, 250, 245), (20, 30, 90)), ((235, 245, 255), (120, 20, 20))]):
        im = Image.new("RGB", (612, 792), bg)
        d = ImageDraw.Draw(im)
        d.rectangle([60, 60, 552, 140], outline=fg, width=4)
        for r in range(12):
            d.line([80, 190 + 40 * r, 80 + (r * 37 + i * 91) % 400 + 60, 190 + 40 * r], fill=fg, width=6)
        d.ellipse([380 + 20 * i, 600, 520, 740], fill=fg)
        pages.append(im)
    pdf = os.path.join(MADE, "two_pages.pdf")
    when = time.gmtime(1767225600)  # fixed dates (Pillow writes the time otherwise): byte-identical reruns
    pages[0].save(pdf, save_all=True, append_images=pages[1:], resolution=72.0, creationDate=when, modDate=when)
    mp4 = os.path.join(MADE, "clip_2s.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=10", "-t", "2",
                    "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "veryslow", "-crf", "30", "-bitexact",
                    "-map_metadata", "-1", mp4], check=True)
    return pdf, mp4


def radio_and_projector(cfg):
    vt = load_file(os.path.join(DATA, "vision", "tiny_radio", "model.safetensors"))
    ck = {}
    for f in sorted(os.listdir(CK)):
        if f.endswith(".safetensors"):
            ck.update(load_file(os.path.join(CK, f)))
    vc = cfg["vision_config"]
    rcfg = RadioConfig(hidden_size=vc["hidden_size"], num_hidden_layers=vc["num_hidden_layers"],
                       num_attention_heads=vc["num_attention_heads"], mlp_ratio=4.0, patch_size=16, max_img_size=256,
                       num_cls_tokens=4, num_registers=4, summary_idxs=[0, 1, 2], qkv_bias=True, layer_norm_eps=1e-6,
                       hidden_act="gelu", norm_mean=cfg["norm_mean"], norm_std=cfg["norm_std"])
    radio = RadioModel(rcfg).eval()
    for k in vt:  # the checkpoint's vision tensors are tiny_radio's
        assert torch.equal(vt[k], ck[k]), k
    inv = vis.from_published(ck, vc["num_hidden_layers"])
    missing, unexpected = radio.load_state_dict(inv, strict=False)
    assert not unexpected, unexpected
    radio.make_preprocessor_external()
    W = vc["hidden_size"]
    proj = NemotronH_Omni_Reasoning_V3MultiModalProjector(4 * W, cfg["projector_hidden_size"],
                                                          cfg["llm_config"]["hidden_size"], bias=False, eps=1e-5).eval()
    with torch.no_grad():
        proj.layer_norm.weight.copy_(ck["mlp1.0.weight"])
        proj.linear_1.weight.copy_(ck["mlp1.1.weight"])
        proj.linear_2.weight.copy_(ck["mlp1.3.weight"])
    return radio, proj, ck


def language_model(cfg, ck):
    lc = cfg["llm_config"]
    kinds = {"M": "mamba", "*": "attention", "-": "mlp"}
    lcfg = NemotronHConfig(vocab_size=lc["vocab_size"], hidden_size=lc["hidden_size"],
                           layers_block_type=[kinds[c] for c in lc["hybrid_override_pattern"]],
                           num_attention_heads=lc["num_attention_heads"], num_key_value_heads=lc["num_key_value_heads"],
                           head_dim=lc["head_dim"], intermediate_size=lc["intermediate_size"], mlp_hidden_act="relu2",
                           mamba_num_heads=lc["mamba_num_heads"], mamba_head_dim=lc["mamba_head_dim"],
                           ssm_state_size=lc["ssm_state_size"], n_groups=lc["n_groups"], conv_kernel=lc["conv_kernel"],
                           use_conv_bias=True, chunk_size=lc["chunk_size"], time_step_min=1e-9,
                           time_step_limit=(0.0, float("inf")), layer_norm_epsilon=lc["layer_norm_epsilon"],
                           tie_word_embeddings=False)
    lm = NemotronHForCausalLM(lcfg).eval()
    sd = {}
    for k, v in ck.items():
        if k.startswith("language_model.backbone."):
            sd["model." + k[len("language_model.backbone."):]] = v
        elif k.startswith("language_model."):
            sd[k[len("language_model."):]] = v
    lm.load_state_dict(sd, strict=True)
    return lm


def normalise(tiles, cfg):
    x = torch.stack(tiles).float() / 255.0
    return (x - torch.tensor(cfg["norm_mean"])[:, None, None]) / torch.tensor(cfg["norm_std"])[:, None, None]


def image_tiles(img, S=64, max_tiles=12):
    H, W = img.shape[:2]
    cols, rows = pre.grid(W, H, max_tiles, image_size=S)
    src = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
    big = torch.nn.functional.interpolate(src, size=(S * rows, S * cols), mode="bicubic", antialias=True,
                                          align_corners=False)[0]
    tiles = [big[:, r * S:(r + 1) * S, c * S:(c + 1) * S] for r in range(rows) for c in range(cols)]
    if len(tiles) > 1:
        tiles.append(torch.nn.functional.interpolate(src, size=(S, S), mode="bicubic", antialias=True,
                                                     align_corners=False)[0])
    return tiles


def embed(radio, proj, x, W):
    with torch.no_grad():
        feats = radio(x).features
        n = feats.shape[0]
        g = int(round(feats.shape[1] ** 0.5))
        sh = NemotronH_Omni_Reasoning_V3.pixel_shuffle(None, feats.reshape(n, g, g, W), 0.5)
        return proj(sh.reshape(n, (g // 2) ** 2, 4 * W))  # (n, Q, C)


def run_lm(lm, tok, ids, rows):
    ids_t = torch.tensor([ids])
    with torch.no_grad():
        emb = lm.get_input_embeddings()(ids_t)
        mask = ids_t[0] == tok.convert_tokens_to_ids("<image>")
        assert int(mask.sum()) == rows.shape[0], (int(mask.sum()), rows.shape)
        emb[0, mask] = rows
        out = lm(inputs_embeds=emb, use_cache=True)
        first = out.logits[0, -1].float()
        cache, nxt, greedy = out.past_key_values, int(first.argmax()), []
        for _ in range(8):
            greedy.append(nxt)
            o = lm(torch.tensor([[nxt]]), past_key_values=cache, use_cache=True)
            cache, nxt = o.past_key_values, int(o.logits[0, -1].argmax())
    return first, greedy


def main():
    torch.manual_seed(0)
    cfg = json.load(open(os.path.join(CK, "config.json")))
    pdf, mp4 = make_media()
    tok = PreTrainedTokenizerFast.from_pretrained(CK)
    radio, proj, ck = radio_and_projector(cfg)
    lm = language_model(cfg, ck)
    W = cfg["vision_config"]["hidden_size"]
    img_id, start_id, end_id = (tok.convert_tokens_to_ids(t) for t in ("<image>", "<img>", "</img>"))
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    out = {}

    # two-page PDF: pages through pdftocairo at long side 2048, one image each, in page order
    with tempfile.TemporaryDirectory() as td:
        subprocess.run(["pdftocairo", "-png", "-scale-to", "2048", pdf, os.path.join(td, "p")], check=True)
        pages = [np.asarray(Image.open(os.path.join(td, f)).convert("RGB")) for f in sorted(os.listdir(td))]
    assert len(pages) == 2
    rows, counts = [], []
    for pg in pages:
        e = embed(radio, proj, normalise(image_tiles(pg), cfg), W).reshape(-1, cfg["llm_config"]["hidden_size"])
        rows.append(e)
        counts.append(e.shape[0])
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": PDF_Q}]}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    parts = text.split("<image>")
    ids = enc(parts[0])
    for k, c in enumerate(counts):
        ids += [start_id] + [img_id] * c + [end_id] + enc(parts[k + 1])
    first, greedy = run_lm(lm, tok, ids, torch.cat(rows))
    out.update({"pdf_prompt_ids": torch.tensor(ids), "pdf_first_logits": first.contiguous(),
                "pdf_greedy_ids": torch.tensor(greedy), "pdf_image_tokens": torch.tensor(counts)})
    print("pdf: tokens per page", counts, "prompt", len(ids), "greedy", greedy)

    # video: frames at model.md §6.1 indices, one 64x64 tile each, EVS q = 0 and 0.5
    with av.open(mp4) as c:
        st = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        native = float(st.average_rate)
    total = len(frames)
    n = max(1, min(128, total, int(np.floor(total / native * 2.0))))
    idx = np.linspace(0, total - 1, n).astype(int).tolist()
    tiles = [torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(frames[i])).permute(2, 0, 1)[None],
                                             size=(64, 64), mode="bicubic", antialias=True, align_corners=False)[0]
             for i in idx]
    emb = embed(radio, proj, normalise(tiles, cfg), W)  # (n, Q, C)
    Q, C = emb.shape[1], emb.shape[2]
    ts = [i * int(1000 / native) / 1000 for i in idx]
    for q in (0.0, 0.5):
        mask = compute_retention_mask(video_embeds=emb.reshape(-1, C), thw=torch.tensor([n, int(Q ** 0.5), int(Q ** 0.5)]),
                                      spatial_merge_size=1, q=q)
        kept = mask.reshape(n, Q).sum(1).tolist()
        rows = emb.reshape(-1, C)[mask]
        msgs = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": VIDEO_Q}]}]
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        before, after = text.split("<video>", 1)
        ids = enc(before)
        for f in range(n):
            ids += enc(("\n" if f else "") + f"Frame {f + 1} sampled at {ts[f]:.2f} seconds: ")
            ids += [start_id] + [img_id] * int(kept[f]) + [end_id]
        ids += enc(after)
        first, greedy = run_lm(lm, tok, ids, rows)
        tag = f"video_q{int(q * 100)}_"
        out.update({tag + "prompt_ids": torch.tensor(ids), tag + "first_logits": first.contiguous(),
                    tag + "greedy_ids": torch.tensor(greedy), tag + "frame_tokens": torch.tensor(kept)})
        print(f"video q={q}: frames {n} idx {idx} kept {kept} prompt {len(ids)} greedy {greedy}")
    save_file(out, os.path.join(DATA, "vl_tiny_media_golden.safetensors"))


if __name__ == "__main__":
    main()
