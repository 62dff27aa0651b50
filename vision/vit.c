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
#include "cpu/cpu_ops.h"
#include "vision.h"

#define VIT_PREFIX "vision_model.radio_model.model."
#define VIT_MAX_BLOCKS 64
#define VIT_TILE_BATCH 4 /* tiles per GEMM pass: RADIO-H activations ~0.4 GB at 4 tiles */

typedef struct vit_block {
    nvl_tensor n1w, n1b, n2w, n2b; /* (W) */
    nvl_tensor qkv_w, qkv_b;       /* (3W, W), (3W): rows q | k | v, each head-major */
    nvl_tensor proj_w, proj_b;     /* (W, W), (W) */
    nvl_tensor fc1_w, fc1_b;       /* (F, W), (F) */
    nvl_tensor fc2_w, fc2_b;       /* (W, F), (W) */
} vit_block;

struct vision_model {
    vision_vl_config vc;
    nvl_checkpoint *ck;
    int64_t W, F, H, K, G, depth, patch;
    nvl_tensor embed;  /* (W, 3*p*p) */
    nvl_tensor prefix; /* (K, W) */
    float *pos;        /* (P, W) position table resized to the tile grid, computed once */
    vit_block blocks[VIT_MAX_BLOCKS];
};

const vision_vl_config *vision_model_config(const vision_model *m) { return &m->vc; }
int64_t vision_model_grid(const vision_model *m) { return m->G; }
int64_t vision_model_width(const vision_model *m) { return m->W; }

void vision_model_free(vision_model *m) {
    if (!m) return;
    nvl_free(m->pos);
    nvl_checkpoint_close(m->ck);
    nvl_free(m);
}

static nvl_status bind(const vision_model *m, const char *name, int nd, int64_t d0, int64_t d1, int64_t d2,
                       nvl_tensor *t, nvl_err *err) {
    const nvl_st_entry *e = nvl_checkpoint_find(m->ck, name);
    if (!e) return nvl_err_set(err, NVL_ERR_NOT_FOUND, "missing vision tensor '%s'", name);
    *t = nvl_st_entry_tensor(e);
    const int64_t want[3] = {d0, d1, d2};
    char what[256];
    snprintf(what, sizeof what, "vision tensor '%s'", name);
    nvl_status st = nvl_tensor_check_shape(t, nd, want, what, err);
    if (st != NVL_OK) return st;
    if (t->dtype != NVL_DTYPE_F32 && t->dtype != NVL_DTYPE_BF16 && t->dtype != NVL_DTYPE_F16)
        return nvl_err_set(err, NVL_ERR_DTYPE, "vision tensor '%s' has dtype %s, expected F32, BF16 or F16", name,
                           nvl_dtype_name(t->dtype));
    return NVL_OK;
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

static int64_t heads_from_config(const cJSON *root) {
    const cJSON *v = nvl_json_obj(root, "vision_config");
    const cJSON *h = v ? cJSON_GetObjectItemCaseSensitive(v, "num_attention_heads") : NULL;
    if (cJSON_IsNumber(h)) return (int64_t)h->valuedouble;
    const cJSON *args = v ? nvl_json_obj(v, "args") : NULL;
    const cJSON *name = args ? cJSON_GetObjectItemCaseSensitive(args, "model") : NULL;
    if (cJSON_IsString(name)) {
        if (strstr(name->valuestring, "vit_huge") || strstr(name->valuestring, "vit_large")) return 16;
        if (strstr(name->valuestring, "vit_base")) return 12;
    }
    return 0;
}

nvl_status vision_model_init(vision_model **out, const char *dir, nvl_err *err) {
    *out = NULL;
    vision_model *m = nvl_calloc(1, sizeof *m);
    if (!m) return nvl_err_set(err, NVL_ERR_NOMEM, "vision: out of memory");
    char path[4096], name[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *root = NULL;
    nvl_status st = nvl_json_load_file(&root, path, NVL_JSON_MAX_BYTES, err);
    if (st == NVL_OK) st = vision_vl_config_from_json(&m->vc, root, path, err);
    if (st == NVL_OK) st = nvl_checkpoint_open(&m->ck, dir, err);
    if (st == NVL_OK) st = vision_vit_shape_from_checkpoint(&m->vc, m->ck, err);
    if (st != NVL_OK) goto fail;
    m->H = heads_from_config(root);
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
    if ((st = bind(m, VIT_PREFIX "patch_generator.embedder.weight", 2, W, pp, 0, &m->embed, err)) != NVL_OK ||
        (st = bind(m, VIT_PREFIX "patch_generator.cls_token.token", 2, m->K, W, 0, &m->prefix, err)) != NVL_OK)
        goto fail;
    for (int64_t i = 0; i < m->depth; i++) {
        vit_block *b = &m->blocks[i];
        struct {
            const char *suffix;
            nvl_tensor *t;
            int nd;
            int64_t d0, d1;
        } tab[] = {{"norm1.weight", &b->n1w, 1, W, 0},     {"norm1.bias", &b->n1b, 1, W, 0},
                   {"norm2.weight", &b->n2w, 1, W, 0},     {"norm2.bias", &b->n2b, 1, W, 0},
                   {"attn.qkv.weight", &b->qkv_w, 2, 3 * W, W}, {"attn.qkv.bias", &b->qkv_b, 1, 3 * W, 0},
                   {"attn.proj.weight", &b->proj_w, 2, W, W},   {"attn.proj.bias", &b->proj_b, 1, W, 0},
                   {"mlp.fc1.weight", &b->fc1_w, 2, F, W},  {"mlp.fc1.bias", &b->fc1_b, 1, F, 0},
                   {"mlp.fc2.weight", &b->fc2_w, 2, W, F},  {"mlp.fc2.bias", &b->fc2_b, 1, W, 0}};
        for (size_t k = 0; k < sizeof tab / sizeof tab[0]; k++) {
            snprintf(name, sizeof name, VIT_PREFIX "blocks.%lld.%s", (long long)i, tab[k].suffix);
            if ((st = bind(m, name, tab[k].nd, tab[k].d0, tab[k].d1, 0, tab[k].t, err)) != NVL_OK) goto fail;
        }
    }
    /* position table (1, S*S, W) -> (G, G, W): square resize to max side, crop (no-op for square) */
    nvl_tensor pe;
    const int64_t S = m->vc.vit_pos_grid;
    if ((st = bind(m, VIT_PREFIX "patch_generator.pos_embed", 3, 1, S * S, W, &pe, err)) != NVL_OK) goto fail;
    float *table = nvl_malloc((size_t)(S * S * W) * sizeof(float));
    m->pos = nvl_malloc((size_t)(m->G * m->G * W) * sizeof(float));
    if (!table || !m->pos) {
        nvl_free(table);
        st = nvl_err_set(err, NVL_ERR_NOMEM, "vision: out of memory");
        goto fail;
    }
    nvl_convert_to_f32(table, pe.data, pe.dtype, (size_t)(S * S * W));
    resize_bilinear(m->pos, m->G, m->G, table, S, S, W, S * W);
    nvl_free(table);
    if (pe.dtype == NVL_DTYPE_BF16) /* the reference casts the resized table to the model dtype */
        for (int64_t i = 0; i < m->G * m->G * W; i++) m->pos[i] = nvl_round_bf16(m->pos[i]);
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
        for (int c = 0; c < 3; c++)
            if (fabsf(nvl_tensor_get_f32(&bt, c) - cfgv[c]) > 1e-5f * fabsf(cfgv[c]) + 1e-6f) {
                st = nvl_err_set(err, NVL_ERR_CONFIG, "%s[%d] is %.8g but config.json says %.8g", bn, c,
                                 (double)nvl_tensor_get_f32(&bt, c), (double)cfgv[c]);
                goto fail;
            }
    }
    cJSON_Delete(root);
    *out = m;
    return NVL_OK;
fail:
    cJSON_Delete(root);
    vision_model_free(m);
    return st;
}

static void add_bias(float *y, const nvl_tensor *b, int64_t rows, int64_t cols) {
    float stackbuf[8192], *bf = cols <= 8192 ? stackbuf : nvl_malloc((size_t)cols * sizeof(float));
    if (!bf) { /* out of memory for a row of bias: the slow way */
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) y[r * cols + c] += nvl_tensor_get_f32(b, c);
        return;
    }
    nvl_convert_to_f32(bf, b->data, b->dtype, (size_t)cols);
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) y[r * cols + c] += bf[c];
    if (bf != stackbuf) nvl_free(bf);
}

static void layernorm(float *y, const float *x, const nvl_tensor *w, const nvl_tensor *b, int64_t rows, int64_t C,
                      float eps) {
#pragma omp parallel for schedule(static) if (rows * C > 65536)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        double mean = 0, var = 0;
        for (int64_t c = 0; c < C; c++) mean += xr[c];
        mean /= (double)C;
        for (int64_t c = 0; c < C; c++) var += ((double)xr[c] - mean) * ((double)xr[c] - mean);
        const float inv = (float)(1.0 / sqrt(var / (double)C + eps));
        for (int64_t c = 0; c < C; c++)
            y[r * C + c] = ((float)(xr[c] - mean) * inv) * nvl_tensor_get_f32(w, c) + nvl_tensor_get_f32(b, c);
    }
}

nvl_status vision_encode(const vision_model *m, const float *tiles, int n, float *features, nvl_err *err) {
    const int64_t W = m->W, F = m->F, H = m->H, D = W / H, K = m->K, G = m->G, P = G * G, T = K + P, p = m->patch;
    const int64_t S = m->vc.image_size, pp = 3 * p * p;
    const int64_t B = n < VIT_TILE_BATCH ? n : VIT_TILE_BATCH; /* tiles per pass */
    const int64_t R = B * T;                                   /* token rows per pass */
    float *x = nvl_malloc((size_t)(R * W) * sizeof(float));
    float *h = nvl_malloc((size_t)(R * (F > 3 * W ? F : 3 * W)) * sizeof(float));
    float *a = nvl_malloc((size_t)(R * (pp > W ? pp : W)) * sizeof(float));
    float *sc = nvl_malloc((size_t)(T * T) * sizeof(float));
    float *qh = nvl_malloc((size_t)(T * D) * sizeof(float)), *kh = nvl_malloc((size_t)(T * D) * sizeof(float));
    float *vt = nvl_malloc((size_t)(T * D) * sizeof(float)), *oh = nvl_malloc((size_t)(T * D) * sizeof(float));
    nvl_status st = NVL_OK;
    if (!x || !h || !a || !sc || !qh || !kh || !vt || !oh) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "vision: out of memory for %lld tiles of %lld tokens", (long long)B, (long long)T);
        goto done;
    }
    const float scale = 1.0f / sqrtf((float)D);
    for (int64_t t0 = 0; t0 < n; t0 += B) {
        const int64_t nb = (n - t0) < B ? (n - t0) : B, rows = nb * T;
        /* patchify every tile of the pass: token py*G+px, feature c*p*p + yy*p + xx */
        for (int64_t t = 0; t < nb; t++) {
            const float *img = tiles + (size_t)(t0 + t) * 3 * S * S;
            for (int64_t py = 0; py < G; py++)
                for (int64_t px = 0; px < G; px++)
                    for (int64_t c = 0; c < 3; c++)
                        for (int64_t yy = 0; yy < p; yy++)
                            memcpy(a + (t * P + py * G + px) * pp + c * p * p + yy * p,
                                   img + (c * S + py * p + yy) * S + px * p, (size_t)p * sizeof(float));
        }
        if ((st = kern_cpu_matmul(h, a, &m->embed, nb * P, err)) != NVL_OK) goto done; /* (nb*P, W) */
        for (int64_t t = 0; t < nb; t++) {
            float *xt = x + t * T * W;
            nvl_convert_to_f32(xt, m->prefix.data, m->prefix.dtype, (size_t)(K * W));
            for (int64_t i = 0; i < P * W; i++) xt[K * W + i] = h[t * P * W + i] + m->pos[i];
        }
        for (int64_t l = 0; l < m->depth; l++) {
            const vit_block *b = &m->blocks[l];
            layernorm(a, x, &b->n1w, &b->n1b, rows, W, 1e-6f);
            if ((st = kern_cpu_matmul(h, a, &b->qkv_w, rows, err)) != NVL_OK) goto done;
            add_bias(h, &b->qkv_b, rows, 3 * W);
            /* attention within each tile, per head as two GEMMs on the CPU matmul kernels:
             * scores = q k^T (k as the "weight"), out = softmax(scores) v (v^T as the "weight") */
            for (int64_t t = 0; t < nb; t++)
                for (int64_t hh = 0; hh < H; hh++) {
                    const float *ht = h + t * T * 3 * W;
                    for (int64_t i = 0; i < T; i++)
                        for (int64_t d = 0; d < D; d++) {
                            qh[i * D + d] = ht[i * 3 * W + hh * D + d] * scale;
                            kh[i * D + d] = ht[i * 3 * W + W + hh * D + d];
                            vt[d * T + i] = ht[i * 3 * W + 2 * W + hh * D + d];
                        }
                    nvl_tensor kt = nvl_tensor_make(NVL_DTYPE_F32, 2, (int64_t[]){T, D}, kh);
                    nvl_tensor vtt = nvl_tensor_make(NVL_DTYPE_F32, 2, (int64_t[]){D, T}, vt);
                    if ((st = kern_cpu_matmul(sc, qh, &kt, T, err)) != NVL_OK) goto done;
                    kern_cpu_softmax_rows(sc, T, T);
                    if ((st = kern_cpu_matmul(oh, sc, &vtt, T, err)) != NVL_OK) goto done;
                    for (int64_t i = 0; i < T; i++) memcpy(a + (t * T + i) * W + hh * D, oh + i * D, (size_t)D * sizeof(float));
                }
            if ((st = kern_cpu_matmul(h, a, &b->proj_w, rows, err)) != NVL_OK) goto done;
            add_bias(h, &b->proj_b, rows, W);
            for (int64_t i = 0; i < rows * W; i++) x[i] += h[i];
            layernorm(a, x, &b->n2w, &b->n2b, rows, W, 1e-6f);
            if ((st = kern_cpu_matmul(h, a, &b->fc1_w, rows, err)) != NVL_OK) goto done;
            add_bias(h, &b->fc1_b, rows, F);
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < rows * F; i++) h[i] = 0.5f * h[i] * (1.0f + erff(h[i] * 0.70710678118654752f));
            if ((st = kern_cpu_matmul(a, h, &b->fc2_w, rows, err)) != NVL_OK) goto done;
            add_bias(a, &b->fc2_b, rows, W);
            for (int64_t i = 0; i < rows * W; i++) x[i] += a[i];
        }
        for (int64_t t = 0; t < nb; t++)
            memcpy(features + (size_t)(t0 + t) * P * W, x + (t * T + K) * W, (size_t)(P * W) * sizeof(float));
    }
done:
    nvl_free(x);
    nvl_free(h);
    nvl_free(a);
    nvl_free(sc);
    nvl_free(qh);
    nvl_free(kh);
    nvl_free(vt);
    nvl_free(oh);
    return st;
}
