/* RADIO ViT-H/16 forward on the CPU backend, weights bound from the published names
 * (vision_model.radio_model.model.*) through one tensor table with shape checks.
 * Dimension letters: N tiles, G patch-grid side, P = G*G patches, K prefix tokens, T = K + P
 * tokens per tile, W width, F MLP width, H heads, D = W / H. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/json_util.h"
#include "ops.h"
#include "vision.h"

#define VIT_PREFIX "vision_model.radio_model.model."
#define VIT_MAX_BLOCKS 64
#define VIT_TILE_BATCH 4         /* tiles per GEMM pass on the CPU: RADIO-H activations ~0.4 GB at 4 tiles */
#define VIT_TILE_BATCH_DEVICE 16 /* on a device (~1.6 GB): GEMMs of ~16.5K rows keep the tensor cores busy */

typedef struct vit_block {
    nvl_tensor n1w, n1b, n2w, n2b; /* (W) */
    kern_weight qkv_w;             /* (3W, W): rows q | k | v, each head-major */
    nvl_tensor qkv_b;              /* (3W) */
    kern_weight proj_w;            /* (W, W) */
    nvl_tensor proj_b;             /* (W) */
    kern_weight fc1_w, fc2_w;      /* (F, W), (W, F) */
    nvl_tensor fc1_b, fc2_b;       /* (F), (W) */
} vit_block;

struct vision_model {
    vision_vl_config vc;
    nvl_checkpoint *ck;
    int owns_ck;
    kern_backend *be;
    int owns_be;
    int64_t W, F, H, K, G, depth, patch;
    nvl_dtype act;     /* activation dtype: BF16 for a BF16 checkpoint, else F32 (vision_encode) */
    kern_weight embed; /* (W, 3*p*p) */
    nvl_tensor prefix; /* (K, W) */
    float *pos_host;   /* (P, W) position table resized to the tile grid, computed once */
    nvl_tensor pos;    /* (P, W) f32 view of it on the backend */
    vit_block blocks[VIT_MAX_BLOCKS];
};

const vision_vl_config *vision_model_config(const vision_model *m) { return &m->vc; }
int64_t vision_model_grid(const vision_model *m) { return m->G; }
int64_t vision_model_width(const vision_model *m) { return m->W; }

void vision_model_free(vision_model *m) {
    if (!m) return;
    /* placed copies of the weights (m->pos included) belong to the backend */
    nvl_free(m->pos_host);
    if (m->owns_ck) nvl_checkpoint_close(m->ck);
    if (m->owns_be) kern_backend_free(m->be);
    nvl_free(m);
}

static nvl_status bind(const vision_model *m, const char *name, int nd, int64_t d0, int64_t d1, int64_t d2,
                       nvl_tensor *t, nvl_err *err) {
    return nvl_checkpoint_bind(m->ck, "vision", name, nd, (int64_t[]){d0, d1, d2}, NVL_BIND_FLOAT, t, err);
}
static nvl_status bind_w(const vision_model *m, const char *name, int64_t d0, int64_t d1, kern_weight *w, nvl_err *err) {
    nvl_tensor t;
    nvl_status st = bind(m, name, 2, d0, d1, 0, &t, err);
    if (st == NVL_OK) *w = kern_weight_plain(&t, nvl_checkpoint_find(m->ck, name)->name);
    return st;
}

/* bilinear, align_corners=False, no antialias (torch F.interpolate(mode="bilinear")) */
static void resize_bilinear(float *dst, int64_t dh, int64_t dw, const float *src, int64_t sh, int64_t sw, int64_t C,
                            int64_t src_row_stride) {
    for (int64_t y = 0; y < dh; y++) {
        double sy = ((double)y + 0.5) * (double)sh / (double)dh - 0.5;
        if (sy < 0) sy = 0;
        int64_t y0 = (int64_t)sy, y1 = y0 + 1 < sh ? y0 + 1 : sh - 1;
        const float ly = (float)(sy - (double)y0);
        for (int64_t x = 0; x < dw; x++) {
            double sx = ((double)x + 0.5) * (double)sw / (double)dw - 0.5;
            if (sx < 0) sx = 0;
            int64_t x0 = (int64_t)sx, x1 = x0 + 1 < sw ? x0 + 1 : sw - 1;
            const float lx = (float)(sx - (double)x0);
            const float *a = src + y0 * src_row_stride + x0 * C, *b = src + y0 * src_row_stride + x1 * C;
            const float *c = src + y1 * src_row_stride + x0 * C, *d = src + y1 * src_row_stride + x1 * C;
            float *o = dst + (y * dw + x) * C;
            for (int64_t k = 0; k < C; k++)
                o[k] = (1 - ly) * ((1 - lx) * a[k] + lx * b[k]) + ly * ((1 - lx) * c[k] + lx * d[k]);
        }
    }
}

/* v as a tensor of dtype stores it (round to nearest even), for comparing a stored value with
 * the config at the stored precision */
static float round_to_dtype(float v, nvl_dtype dt) {
    switch (dt) {
    case NVL_DTYPE_BF16: return nvl_round_bf16(v);
    case NVL_DTYPE_F16: return nvl_f16_to_f32(nvl_f32_to_f16(v));
    default: return v;
    }
}

nvl_status vision_model_init(vision_model **out, const char *dir, nvl_err *err) {
    /* (the backend made here: a model too large for the device auto chose is loaded on the CPU) */
    kern_backend *be = NULL;
    nvl_status st = kern_backend_init_models(&be, err);
    if (st == NVL_OK) st = vision_model_load(out, NULL, be, dir, err);
    if (kern_backend_fall_back_to_cpu(kern_backend_auto_device(be), st, dir, err)) {
        kern_backend_free(be);
        be = NULL;
        if ((st = kern_backend_init(&be, "cpu", err)) == NVL_OK) st = vision_model_load(out, NULL, be, dir, err);
    }
    if (st != NVL_OK) {
        kern_backend_free(be);
        return st;
    }
    (*out)->owns_be = 1;
    return NVL_OK;
}

kern_backend *vision_model_backend(const vision_model *m) { return m->be; }

nvl_status vision_model_load(vision_model **out, nvl_checkpoint *ck, kern_backend *be, const char *dir, nvl_err *err) {
    *out = NULL;
    if (!be) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "vision_model_load: no backend");
    vision_model *m = nvl_calloc(1, sizeof *m);
    if (!m) return nvl_err_set(err, NVL_ERR_NOMEM, "vision: out of memory");
    m->ck = ck;
    m->be = be;
    char path[4096], name[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *root = NULL;
    nvl_status st = nvl_json_load_file(&root, path, NVL_JSON_MAX_BYTES, err);
    if (st == NVL_OK) st = vision_vl_config_from_json(&m->vc, root, path, err);
    if (st == NVL_OK && !m->ck) {
        st = nvl_checkpoint_open(&m->ck, dir, err);
        m->owns_ck = st == NVL_OK;
    }
    if (st == NVL_OK) st = vision_vit_shape_from_checkpoint(&m->vc, m->ck, err);
    if (st != NVL_OK) goto fail;
    m->H = m->vc.vit_heads;
    m->W = m->vc.vit_width;
    m->F = m->vc.vit_mlp_dim;
    m->K = m->vc.vit_num_prefix;
    m->depth = m->vc.vit_depth;
    m->patch = m->vc.patch_size;
    m->G = m->vc.image_size / m->patch;
    if (m->H <= 0 || m->W % m->H) {
        st = nvl_err_set(err, NVL_ERR_CONFIG, "%s: cannot tell the ViT head count (vision_config.num_attention_heads or a "
                         "known args.model), or it does not divide the width %lld", path, (long long)m->W);
        goto fail;
    }
    if (m->depth > VIT_MAX_BLOCKS) {
        st = nvl_err_set(err, NVL_ERR_UNSUPPORTED, "vision: %lld blocks, at most %d", (long long)m->depth, VIT_MAX_BLOCKS);
        goto fail;
    }
    const int64_t W = m->W, F = m->F, pp = 3 * m->patch * m->patch;
    if ((st = bind_w(m, VIT_PREFIX "patch_generator.embedder.weight", W, pp, &m->embed, err)) != NVL_OK ||
        (st = bind(m, VIT_PREFIX "patch_generator.cls_token.token", 2, m->K, W, 0, &m->prefix, err)) != NVL_OK)
        goto fail;
    for (int64_t i = 0; i < m->depth; i++) {
        vit_block *b = &m->blocks[i];
        struct {
            const char *suffix;
            nvl_tensor *t;
            kern_weight *w;
            int nd;
            int64_t d0, d1;
        } tab[] = {{"norm1.weight", &b->n1w, NULL, 1, W, 0},     {"norm1.bias", &b->n1b, NULL, 1, W, 0},
                   {"norm2.weight", &b->n2w, NULL, 1, W, 0},     {"norm2.bias", &b->n2b, NULL, 1, W, 0},
                   {"attn.qkv.weight", NULL, &b->qkv_w, 2, 3 * W, W}, {"attn.qkv.bias", &b->qkv_b, NULL, 1, 3 * W, 0},
                   {"attn.proj.weight", NULL, &b->proj_w, 2, W, W},   {"attn.proj.bias", &b->proj_b, NULL, 1, W, 0},
                   {"mlp.fc1.weight", NULL, &b->fc1_w, 2, F, W},  {"mlp.fc1.bias", &b->fc1_b, NULL, 1, F, 0},
                   {"mlp.fc2.weight", NULL, &b->fc2_w, 2, W, F},  {"mlp.fc2.bias", &b->fc2_b, NULL, 1, W, 0}};
        for (size_t k = 0; k < sizeof tab / sizeof tab[0]; k++) {
            snprintf(name, sizeof name, VIT_PREFIX "blocks.%lld.%s", (long long)i, tab[k].suffix);
            st = tab[k].w ? bind_w(m, name, tab[k].d0, tab[k].d1, tab[k].w, err)
                          : bind(m, name, tab[k].nd, tab[k].d0, tab[k].d1, 0, tab[k].t, err);
            if (st != NVL_OK) goto fail;
        }
    }
    /* position table (1, S*S, W) -> (G, G, W): square resize to max side, crop (no-op for square) */
    nvl_tensor pe;
    const int64_t S = m->vc.vit_pos_grid;
    if ((st = bind(m, VIT_PREFIX "patch_generator.pos_embed", 3, 1, S * S, W, &pe, err)) != NVL_OK) goto fail;
    float *table = nvl_malloc((size_t)(S * S * W) * sizeof(float));
    m->pos_host = nvl_malloc((size_t)(m->G * m->G * W) * sizeof(float));
    if (!table || !m->pos_host) {
        nvl_free(table);
        st = nvl_err_set(err, NVL_ERR_NOMEM, "vision: out of memory");
        goto fail;
    }
    nvl_convert_to_f32(table, pe.data, pe.dtype, (size_t)(S * S * W));
    resize_bilinear(m->pos_host, m->G, m->G, table, S, S, W, S * W);
    nvl_free(table);
    if (pe.dtype == NVL_DTYPE_BF16) /* the reference casts the resized table to the model dtype */
        for (int64_t i = 0; i < m->G * m->G * W; i++) m->pos_host[i] = nvl_round_bf16(m->pos_host[i]);
    m->pos = nvl_tensor_make(NVL_DTYPE_F32, 2, (int64_t[]){m->G * m->G, W}, m->pos_host);
    /* the checkpoint's own normalisation buffers must agree with the config the preprocessor uses */
    for (int k = 0; k < 2; k++) {
        const char *bn = k ? "vision_model.radio_model.input_conditioner.norm_std" : "vision_model.radio_model.input_conditioner.norm_mean";
        const float *cfgv = k ? m->vc.norm_std : m->vc.norm_mean;
        nvl_tensor bt;
        if (nvl_checkpoint_get(m->ck, bn, &bt, NULL) != NVL_OK) continue;
        if (nvl_tensor_numel(&bt) != 3) {
            st = nvl_err_set(err, NVL_ERR_SHAPE, "vision tensor '%s' has %lld elements, expected 3", bn, (long long)nvl_tensor_numel(&bt));
            goto fail;
        }
        /* compared at the stored dtype's precision: a checkpoint cast to bf16 before saving holds
           the config's 0.48145466 as 0.48242188, which is the same value to bf16 */
        for (int c = 0; c < 3; c++) {
            const float got = nvl_tensor_get_f32(&bt, c), want = round_to_dtype(cfgv[c], bt.dtype);
            if (fabsf(got - want) > 1e-5f * fabsf(want) + 1e-6f) {
                st = nvl_err_set(err, NVL_ERR_CONFIG, "%s[%d] is %.8g (%s) but config.json says %.8g (%.8g in %s)", bn, c,
                                 (double)got, nvl_dtype_name(bt.dtype), (double)cfgv[c], (double)want,
                                 nvl_dtype_name(bt.dtype));
                goto fail;
            }
        }
    }
    /* activations in the weights' dtype, as the LM chooses (llm/model.c): the reference runs a BF16
       checkpoint's ViT in bf16; F32 (and F16, which no published checkpoint uses) run in f32 */
    m->act = m->embed.w.dtype == NVL_DTYPE_BF16 ? NVL_DTYPE_BF16 : NVL_DTYPE_F32;
    { /* place the weights on the backend (the CPU keeps the mmap views) */
        nvl_tensor *place[4 + 12 * VIT_MAX_BLOCKS];
        int64_t np = 0;
        place[np++] = &m->embed.w;
        place[np++] = &m->prefix;
        place[np++] = &m->pos;
        for (int64_t i = 0; i < m->depth; i++) {
            vit_block *b = &m->blocks[i];
            nvl_tensor *all[] = {&b->n1w, &b->n1b, &b->n2w, &b->n2b, &b->qkv_w.w, &b->qkv_b,
                                 &b->proj_w.w, &b->proj_b, &b->fc1_w.w, &b->fc1_b, &b->fc2_w.w, &b->fc2_b};
            for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) place[np++] = all[k];
        }
        if ((st = kern_weights_place(m->be, place, np, err)) != NVL_OK) goto fail;
    }
    cJSON_Delete(root);
    *out = m;
    return NVL_OK;
fail:
    cJSON_Delete(root);
    vision_model_free(m);
    return st;
}

#define TRY(x)                                                                                        \
    do {                                                                                              \
        if ((st = (x)) != NVL_OK) goto done;                                                          \
    } while (0)

/* The forward in the activation dtype m->act. For a BF16 checkpoint this reproduces PyTorch's
 * RADIO run in bf16 (transformers' RadioModel, checked by tests/vision/test_vit_bf16.c; vLLM's
 * RADIO has the same op sequence, not checked here):
 *   tiles cast to bf16; patch embedding (Linear, no bias) -> bf16; + the position table (cast to
 *   bf16 after its f32 resize) -> bf16; per block LayerNorm (f32 statistics) -> bf16;
 *   qkv = Linear(x) + bias -> bf16 once (addmm: the bias joins the f32 accumulator before the one
 *   rounding: vit_linear); SDPA -> bf16
 *   (kern_attention_full: kernels/ops.h, kernels/cpu/ops_cpu.c); proj + bias -> bf16;
 *   residual add -> bf16; LayerNorm -> bf16; fc1 + bias -> bf16; GELU(erf) of that bf16 tensor
 *   -> bf16 (a second rounding: torch applies the activation to fc1's bf16 output); fc2 + bias
 *   -> bf16; residual add -> bf16.
 * Products inside the matmuls are exact (bf16 x bf16) and accumulate in f32 on both sides, in
 * different orders; the reference's SDPA rounds its probabilities to bf16 from an approximate
 * exp, ours from a ~1 ulp one; so a value near a bf16 rounding boundary may land one ulp apart,
 * and such differences propagate through the residual (tests/vision/test_vit_bf16.c: 2.7 % of
 * values not bit-equal after one block, 38 % after three; bounds there). For F32 the ops and their order are
 * those of the f32 forward, bit for bit. */
/* A block's Linear with its bias, out = x W^T + bias rounded once to out's dtype (then act: for a
 * BF16 forward after that rounding, torch's GELU of fc1's bf16 output; for F32 in the same pass).
 * Fused where the backend runs the bias in its GEMM (a device's BF16: kern_matmul_bias_fused);
 * else the f32 product into y (out's own memory where an element of it is 4 bytes: in_place),
 * which kern_bias_act rounds into out. *ybuf: the f32 region for the product where it cannot lie
 * in place, allocated (y_bytes) on first need and kept for the encode's later passes. */
static nvl_status vit_linear(kern_backend *be, nvl_tensor *out, const nvl_tensor *x, const kern_weight *w,
                             const nvl_tensor *bias, kern_act_fn act, int in_place, void **ybuf, size_t y_bytes,
                             nvl_err *err) {
    const int round_first = out->dtype != NVL_DTYPE_F32; /* the act of a bf16 sum, not of the f32 one */
    nvl_status st;
    if (kern_matmul_bias_fused(be, out, x, w, bias)) {
        if ((st = kern_matmul_bias(be, out, x, w, bias, err)) != NVL_OK) return st;
        return act == KERN_ACT_NONE ? NVL_OK : kern_bias_act(be, out, out, NULL, act, err);
    }
    if (!in_place && !*ybuf && (st = kern_buffer_alloc(be, y_bytes, ybuf, err)) != NVL_OK)
        return nvl_err_prefix(err, "vision: a Linear's f32 product"), st;
    nvl_tensor y = kern_act(be, NVL_DTYPE_F32, 2, (int64_t[]){out->shape[0], out->shape[1]}, in_place ? out->data : *ybuf);
    if ((st = kern_matmul(be, &y, x, w, err)) != NVL_OK) return st;
    if (!round_first) return kern_bias_act(be, out, &y, bias, act, err);
    if ((st = kern_bias_act(be, out, &y, bias, KERN_ACT_NONE, err)) != NVL_OK) return st;
    return act == KERN_ACT_NONE ? NVL_OK : kern_bias_act(be, out, out, NULL, act, err);
}

/* tiles (f32, normalised) or tiles8 (RGB8, normalised here on the backend: kern_normalize_rgb8) */
static nvl_status encode(const vision_model *m, const float *tiles, const uint8_t *tiles8, int n, float *features,
                         nvl_tensor *fdev, nvl_err *err) {
    const int64_t W = m->W, F = m->F, K = m->K, G = m->G, P = G * G, T = K + P, p = m->patch;
    const int64_t S = m->vc.image_size, pp = 3 * p * p;
    const int64_t per_pass = kern_backend_kind_of(m->be) == KERN_BACKEND_KIND_CPU ? VIT_TILE_BATCH : VIT_TILE_BATCH_DEVICE;
    const int64_t B = n < per_pass ? n : per_pass; /* tiles per pass */
    const int64_t R = B * T;                                   /* token rows per pass */
    const nvl_dtype dt = m->act;
    kern_backend *be = m->be;
    /* one workspace: tiles (B, 3, S, S) f32, x (R, W) residual, h (R, max(F, 3W)), a (R, max(pp, W))
       in the activation dtype. A Linear with a bias (vit_linear) writes its f32 sum before the one
       rounding in place where an activation element is 4 bytes (F32, or BF16 widened on the CPU):
       into h for qkv / proj / fc1 and into a for fc2; a device's 2-byte BF16 runs the bias in the
       GEMM, or else takes a separate f32 region y (R, max(F, 3W)) when first needed. */
    const int64_t hc = F > 3 * W ? F : 3 * W, ac = pp > W ? pp : W;
    const int in_place = kern_act_bytes(be, dt, 1) == sizeof(float);
    const size_t n_tile = (size_t)(B * 3 * S * S) * sizeof(float), n_x = kern_act_bytes(be, dt, R * W);
    const size_t n_h = kern_act_bytes(be, dt, R * hc), n_a = kern_act_bytes(be, dt, R * ac);
    const size_t n_y = (size_t)(R * hc) * sizeof(float);
    const size_t n_t8 = tiles8 ? ((size_t)(B * 3 * S * S) + 63) & ~(size_t)63 : 0; /* RGB8 tiles before normalising */
    void *buf = NULL, *ybuf = NULL;
    nvl_status st = kern_buffer_alloc(be, n_tile + n_x + n_h + n_a + n_t8, &buf, err);
    if (st != NVL_OK) return nvl_err_prefix(err, "vision: %lld tiles of %lld tokens", (long long)B, (long long)T), st;
    char *tb = buf, *xb = tb + n_tile, *hb = xb + n_x, *ab = hb + n_h;
    char *t8b = ab + n_a;
    for (int64_t t0 = 0; t0 < n; t0 += B) {
        const int64_t nb = (n - t0) < B ? (n - t0) : B, rows = nb * T;
        nvl_tensor tl = kern_act(be, NVL_DTYPE_F32, 4, (int64_t[]){nb, 3, S, S}, tb);
        if (tiles8) {
            nvl_tensor t8 = nvl_tensor_make(NVL_DTYPE_U8, 4, (int64_t[]){nb, S, S, 3}, t8b);
            t8.device = tl.device;
            TRY(kern_copy_to_backend(be, t8b, tiles8 + (size_t)t0 * 3 * S * S, (size_t)(nb * 3 * S * S), err));
            TRY(kern_normalize_rgb8(be, &tl, &t8, m->vc.norm_mean, m->vc.norm_std, err));
        } else {
            TRY(kern_copy_to_backend(be, tb, tiles + (size_t)t0 * 3 * S * S, (size_t)(nb * 3 * S * S) * sizeof(float), err));
        }
        nvl_tensor x = kern_act(be, dt, 2, (int64_t[]){rows, W}, xb);
        nvl_tensor a = kern_act(be, dt, 2, (int64_t[]){nb * P, pp}, ab);
        nvl_tensor h = kern_act(be, dt, 2, (int64_t[]){nb * P, W}, hb);
        /* patch embedding (patchify rounds the tiles to a BF16 a, the reference's cast of the
           pixels); then per tile the prefix tokens and patches + the position table */
        TRY(kern_patchify(be, &a, &tl, p, err));
        TRY(kern_matmul(be, &h, &a, &m->embed, err));
        for (int64_t t = 0; t < nb; t++) {
            nvl_tensor xp = kern_rows(&x, t * T, K), xt = kern_rows(&x, t * T + K, P), ht = kern_rows(&h, t * P, P);
            TRY(kern_copy(be, &xp, &m->prefix, err));
            TRY(kern_add(be, &xt, &ht, &m->pos, err));
        }
        a = kern_act(be, dt, 2, (int64_t[]){rows, W}, ab);
        nvl_tensor qkv = kern_act(be, dt, 2, (int64_t[]){rows, 3 * W}, hb);
        nvl_tensor hw = kern_act(be, dt, 2, (int64_t[]){rows, W}, hb);
        nvl_tensor hf = kern_act(be, dt, 2, (int64_t[]){rows, F}, hb);
#define LINEAR(out, x, w, bias, act) vit_linear(be, out, x, w, bias, act, in_place, &ybuf, n_y, err)
        for (int64_t l = 0; l < m->depth; l++) {
            const vit_block *b = &m->blocks[l];
            /* x = x + proj(attn(norm1(x)));  x = x + fc2(gelu(fc1(norm2(x)))) */
            TRY(kern_layernorm(be, &a, &x, &b->n1w, &b->n1b, (float)m->vc.vit_ln_eps, err));
            TRY(LINEAR(&qkv, &a, &b->qkv_w, &b->qkv_b, KERN_ACT_NONE));
            TRY(kern_attention_full(be, &a, &qkv, nb, m->H, err));
            TRY(LINEAR(&hw, &a, &b->proj_w, &b->proj_b, KERN_ACT_NONE));
            TRY(kern_add(be, &x, &x, &hw, err));
            TRY(kern_layernorm(be, &a, &x, &b->n2w, &b->n2b, (float)m->vc.vit_ln_eps, err));
            TRY(LINEAR(&hf, &a, &b->fc1_w, &b->fc1_b, KERN_ACT_GELU_ERF)); /* (bf16: fc1's output rounds, then its GELU) */
            TRY(LINEAR(&a, &hf, &b->fc2_w, &b->fc2_b, KERN_ACT_NONE));
            TRY(kern_add(be, &x, &x, &a, err));
        }
        for (int64_t t = 0; t < nb; t++) {
            nvl_tensor xf = kern_rows(&x, t * T + K, P);
            if (fdev) { /* into the backend's features (exact: to f32) */
                nvl_tensor d = kern_rows(fdev, (t0 + t) * P, P);
                TRY(kern_copy(be, &d, &xf, err));
            } else {
                TRY(kern_to_host_f32(be, features + (size_t)(t0 + t) * P * W, &xf, err));
            }
        }
    }
#undef LINEAR
done:
    if (ybuf) kern_buffer_free(be, ybuf);
    kern_buffer_free(be, buf);
    return st;
}

nvl_status vision_encode(const vision_model *m, const float *tiles, int n, float *features, nvl_err *err) {
    return encode(m, tiles, NULL, n, features, NULL, err);
}

nvl_status vision_encode_rgb8(const vision_model *m, const uint8_t *tiles, int n, float *features, nvl_err *err) {
    return encode(m, NULL, tiles, n, features, NULL, err);
}

nvl_status vision_encode_rgb8_to(const vision_model *m, const uint8_t *tiles, int n, nvl_tensor *features, nvl_err *err) {
    const int64_t P = m->G * m->G;
    if (features->dtype != NVL_DTYPE_F32 || features->n_dims != 2 || features->shape[0] != (int64_t)n * P ||
        features->shape[1] != m->W)
        return nvl_err_set(err, NVL_ERR_SHAPE, "vision: features must be (%lld, %lld) f32", (long long)(n * P),
                           (long long)m->W);
    return encode(m, NULL, tiles, n, NULL, features, err);
}
