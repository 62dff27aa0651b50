/* The NemotronH forward pass on the CPU backend: embedding, per-layer RMSNorm + mixer
 * (Mamba-2, GQA attention without positions, squared-ReLU MLP) + residual, final norm, lm_head.
 * Activations are f32; with act_bf16 they are rounded to bf16 where transformers keeps them in
 * the model dtype (model.md §2.2-§2.5), so a BF16 checkpoint tracks the PyTorch reference.
 * Dimension letters: T tokens in this chunk, C n_embd, H mamba heads, P mamba head_dim,
 * N d_state, G groups, Cc conv_dim, D attention head_dim. */
#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "cpu/cpu_ops.h"
#include "llm_impl.h"

#ifdef _OPENMP
#include <omp.h>
static int thread_id(void) { return omp_get_thread_num(); }
#else
static int thread_id(void) { return 0; }
#endif

static inline float rb(float v, int on) { return on ? nvl_round_bf16(v) : v; }
static void round_rows(float *x, int64_t n, int on) {
    if (!on) return;
    for (int64_t i = 0; i < n; i++) x[i] = nvl_round_bf16(x[i]);
}

static nvl_status linear(float *y, const float *x, const nvl_tensor *w, int64_t T, int rnd,
                         nvl_err *err) {
    nvl_status st = kern_cpu_matmul(y, x, w, T, err);
    if (st == NVL_OK) round_rows(y, T * w->shape[0], rnd);
    return st;
}

// ---------------------------------------------------------------------------
// RMSNorm (NemotronHRMSNorm): y = (w.float() * (x * rsqrt(mean(x^2) + eps))).to(dtype)

static void rmsnorm(float *y, const float *x, const nvl_tensor *w, int64_t T, int64_t C, float eps,
                    int rnd) {
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * C;
        float *yr = y + t * C;
        float ss = 0.0f;
        for (int64_t c = 0; c < C; c++) ss += xr[c] * xr[c];
        const float inv = 1.0f / sqrtf(ss / (float)C + eps);
        for (int64_t c = 0; c < C; c++) yr[c] = rb(nvl_tensor_get_f32(w, c) * (xr[c] * inv), rnd);
    }
}

// ---------------------------------------------------------------------------
// Mamba-2 mixer: in_proj split (z | xBC | dt), causal conv + SiLU, softplus(dt + dt_bias),
// selective scan, grouped gated RMSNorm (gate first), out_proj.

static nvl_status mamba2(llm_context *ctx, const llm_layer *L, int il, float *out, const float *h,
                         int64_t T, nvl_err *err) {
    const llm_model *m = ctx->m;
    const llm_hparams *hp = &m->hp;
    const int rnd = m->act_bf16;
    const int64_t H = hp->ssm_n_head, P = hp->ssm_head_dim, N = hp->d_state, G = hp->n_group;
    const int64_t DI = hp->d_inner, Cc = hp->conv_dim, K = hp->d_conv, DP = hp->d_in_proj;
    float *zx = ctx->big; /* (T, DP): z | xBC | dt_raw */
    nvl_status st = linear(zx, h, &L->in_proj, T, rnd, err);
    if (st != NVL_OK) return st;
    for (int64_t t = 0; t < T; t++) memcpy(ctx->conv_in + t * Cc, zx + t * DP + DI, (size_t)Cc * sizeof(float));
    kern_cpu_conv1d_causal_silu(ctx->conv_out, ctx->conv_state[il], ctx->conv_in, L->conv_w,
                                L->conv_b, T, Cc, K, rnd);
    /* dt = softplus(dt_raw + dt_bias), in the model dtype for bf16 (torch adds and applies
     * softplus on bf16 tensors) */
    for (int64_t t = 0; t < T; t++)
        for (int64_t hh = 0; hh < H; hh++) {
            float v = rb(zx[t * DP + DI + Cc + hh] + rb(L->dt_bias[hh], rnd), rnd);
            v = v > 20.0f ? v : log1pf(expf(v));
            v = rb(v, rnd);
            if (v < hp->dt_min) v = (float)hp->dt_min;
            if (v > hp->dt_max) v = (float)hp->dt_max;
            ctx->dt[t * H + hh] = v;
        }
    float *xs = ctx->conv_in; /* reuse: (T, H, P) contiguous copy of x */
    for (int64_t t = 0; t < T; t++) {
        const float *u = ctx->conv_out + t * Cc;
        memcpy(xs + t * DI, u, (size_t)DI * sizeof(float));
        memcpy(ctx->Bm + t * G * N, u + DI, (size_t)(G * N) * sizeof(float));
        memcpy(ctx->Cm + t * G * N, u + DI + G * N, (size_t)(G * N) * sizeof(float));
    }
    const int recurrent = ctx->p.ssm_mode == LLM_SSM_MODE_RECURRENT ||
                          (ctx->p.ssm_mode == LLM_SSM_MODE_AUTO && T == 1);
    /* transformers' decode step (one token) keeps bf16 intermediates; its prefill scan is f32 */
    const int decode_bf16 = rnd && T == 1;
    if (recurrent)
        kern_cpu_ssm_scan_recurrent(ctx->y, ctx->ssm_state[il], xs, ctx->dt, L->A, ctx->Bm, ctx->Cm,
                                    L->D, T, H, P, N, G, decode_bf16);
    else
        kern_cpu_ssm_scan_chunked(ctx->y, ctx->ssm_state[il], xs, ctx->dt, L->A, ctx->Bm, ctx->Cm,
                                  L->D, T, H, P, N, G, hp->chunk_size);
    /* gated RMSNorm over groups of DI/G channels:  t = y * silu(z); t *= rsqrt(mean(t^2)+eps) */
    const int64_t gs = DI / G;
    const float eps = (float)hp->eps;
    for (int64_t t = 0; t < T; t++) {
        float *yt = ctx->y + t * DI;
        const float *z = zx + t * DP;
        for (int64_t c = 0; c < DI; c++) yt[c] *= z[c] / (1.0f + expf(-z[c]));
        for (int64_t g = 0; g < G; g++) {
            float *v = yt + g * gs;
            float ss = 0.0f;
            for (int64_t c = 0; c < gs; c++) ss += v[c] * v[c];
            const float inv = 1.0f / sqrtf(ss / (float)gs + eps);
            for (int64_t c = 0; c < gs; c++) {
                const float w = nvl_tensor_get_f32(&L->ssm_norm, g * gs + c);
                /* prefill: (w * t_f32).to(bf16); decode: (w * t.to(bf16)).to(bf16) */
                v[c] = decode_bf16 ? rb(w * rb(v[c] * inv, 1), 1) : rb(w * (v[c] * inv), rnd);
            }
        }
    }
    return linear(out, ctx->y, &L->out_proj, T, rnd, err);
}

// ---------------------------------------------------------------------------
// Attention: q, k, v projections, no positional encoding, causal softmax over the KV cache,
// query head h reads KV head h / (n_head / n_head_kv), o_proj.

static nvl_status attention(llm_context *ctx, const llm_layer *L, int il, float *out,
                            const float *h, int64_t T, nvl_err *err) {
    const llm_hparams *hp = &ctx->m->hp;
    const int rnd = ctx->m->act_bf16;
    const int64_t NH = hp->n_head, NKV = hp->n_head_kv, D = hp->head_dim;
    const int64_t QD = NH * D, KD = NKV * D, pos0 = ctx->n_past;
    float *q = ctx->big;        /* (T, QD) */
    float *kv = q + T * QD;     /* (T, KD) scratch for k then v */
    nvl_status st = linear(q, h, &L->wq, T, rnd, err);
    if (st == NVL_OK) st = linear(kv, h, &L->wk, T, rnd, err);
    if (st != NVL_OK) return st;
    memcpy(ctx->k_cache[il] + pos0 * KD, kv, (size_t)(T * KD) * sizeof(float));
    if ((st = linear(kv, h, &L->wv, T, rnd, err)) != NVL_OK) return st;
    memcpy(ctx->v_cache[il] + pos0 * KD, kv, (size_t)(T * KD) * sizeof(float));
    const float scale = 1.0f / sqrtf((float)D);
    const int64_t group = NH / NKV;
    float *o = ctx->y; /* (T, QD) */
#pragma omp parallel for collapse(2) schedule(static) if (T * NH > 4)
    for (int64_t t = 0; t < T; t++)
        for (int64_t hh = 0; hh < NH; hh++) {
            const int64_t n_keys = pos0 + t + 1, kvh = hh / group;
            float *sc = ctx->att + (size_t)thread_id() * (size_t)ctx->p.n_ctx;
            const float *qt = q + t * QD + hh * D;
            float mx = -INFINITY;
            for (int64_t j = 0; j < n_keys; j++) {
                const float *kj = ctx->k_cache[il] + j * KD + kvh * D;
                float s = 0.0f;
                for (int64_t d = 0; d < D; d++) s += qt[d] * kj[d];
                sc[j] = s * scale;
                if (sc[j] > mx) mx = sc[j];
            }
            float sum = 0.0f;
            for (int64_t j = 0; j < n_keys; j++) {
                sc[j] = expf(sc[j] - mx);
                sum += sc[j];
            }
            float *ot = o + t * QD + hh * D;
            for (int64_t d = 0; d < D; d++) ot[d] = 0.0f;
            for (int64_t j = 0; j < n_keys; j++) {
                const float pj = sc[j] / sum;
                const float *vj = ctx->v_cache[il] + j * KD + kvh * D;
                for (int64_t d = 0; d < D; d++) ot[d] += pj * vj[d];
            }
            for (int64_t d = 0; d < D; d++) ot[d] = rb(ot[d], rnd);
        }
    return linear(out, o, &L->wo, T, rnd, err);
}

// ---------------------------------------------------------------------------
// MLP: down(relu(up(x))^2)

static nvl_status mlp(llm_context *ctx, const llm_layer *L, float *out, const float *h, int64_t T,
                      nvl_err *err) {
    const int rnd = ctx->m->act_bf16;
    float *u = ctx->big; /* (T, n_ff) */
    nvl_status st = linear(u, h, &L->up, T, rnd, err);
    if (st != NVL_OK) return st;
    const int64_t n = T * ctx->m->hp.n_ff;
    for (int64_t i = 0; i < n; i++) {
        const float r = u[i] > 0.0f ? u[i] : 0.0f;
        u[i] = rb(r * r, rnd);
    }
    return linear(out, u, &L->down, T, rnd, err);
}

// ---------------------------------------------------------------------------
// One chunk of T tokens at positions n_past .. n_past+T-1. logits_rows: where to put the
// logits of all T rows (or NULL: only the last row, into ctx->logits).

nvl_status llm_forward_chunk(llm_context *ctx, const int32_t *tokens, const float *embd,
                             const uint8_t *embd_mask, int64_t T, float *logits_rows,
                             nvl_err *err) {
    const llm_model *m = ctx->m;
    const llm_hparams *hp = &m->hp;
    const int64_t C = hp->n_embd;
    const int rnd = m->act_bf16;
    const size_t esz = nvl_dtype_size(m->emb.dtype);
    for (int64_t t = 0; t < T; t++) {
        if (embd && embd_mask && embd_mask[t]) {
            memcpy(ctx->x + t * C, embd + t * C, (size_t)C * sizeof(float));
            round_rows(ctx->x + t * C, C, rnd);
            continue;
        }
        if (tokens[t] < 0 || tokens[t] >= hp->n_vocab)
            return nvl_err_set(err, NVL_ERR_INVALID_ARG, "token id %d at position %lld is outside "
                               "the vocabulary of %lld", tokens[t], (long long)(ctx->n_past + t),
                               (long long)hp->n_vocab);
        nvl_convert_to_f32(ctx->x + t * C, (const unsigned char *)m->emb.data + (size_t)tokens[t] * (size_t)C * esz,
                           m->emb.dtype, (size_t)C);
    }
    nvl_status st = NVL_OK;
    for (int il = 0; il < hp->n_layer; il++) {
        const llm_layer *L = &m->layers[il];
        rmsnorm(ctx->h, ctx->x, &L->norm, T, C, (float)hp->eps, rnd);
        float *out = ctx->h; /* mixers read h fully before writing out (linear outputs last) */
        switch (L->kind) {
        case 'M': st = mamba2(ctx, L, il, out, ctx->h, T, err); break;
        case '*': st = attention(ctx, L, il, out, ctx->h, T, err); break;
        default: st = mlp(ctx, L, out, ctx->h, T, err); break;
        }
        if (st != NVL_OK) return st;
        for (int64_t i = 0; i < T * C; i++) ctx->x[i] = rb(ctx->x[i] + out[i], rnd);
    }
    /* final norm + lm_head: every row for logits_rows, else the last one */
    const int64_t r0 = logits_rows ? 0 : T - 1, nr = T - r0;
    rmsnorm(ctx->h, ctx->x + r0 * C, &m->norm_f, nr, C, (float)hp->eps, rnd);
    float *dst = logits_rows ? logits_rows : ctx->logits;
    if ((st = linear(dst, ctx->h, &m->lm_head, nr, rnd, err)) != NVL_OK) return st;
    if (logits_rows) memcpy(ctx->logits, logits_rows + (T - 1) * hp->n_vocab, (size_t)hp->n_vocab * sizeof(float));
    ctx->n_past += T;
    return NVL_OK;
}
