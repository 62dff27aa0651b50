/* The CPU twin of every op of kernels/ops.h, the reference the other backends are tested
 * against. Activations arrive as f32 or widened bf16/f16 (nvl_tensor.widened); each op computes
 * in f32 and rounds what it stores to the output's dtype. The heavy kernels live beside this
 * file (matmul.c, gemm_packed.c, norm.c, ssm_scan.c); this file adapts descriptors to them and
 * holds the row-wise and sequence ops. */
#include <math.h>
#include <string.h>

#include "../backend_impl.h"
#include "../base/alloc.h"
#include "cpu_ops.h"

#ifdef _OPENMP
#include <omp.h>
static int thread_id(void) { return omp_get_thread_num(); }
#else
static int thread_id(void) { return 0; }
#endif

// ---------------------------------------------------------------------------
// Element access

/* Activations on the CPU are held as f32 (F32, or a widened narrower dtype). */
static int is_f32_held(const nvl_tensor *t) { return t->dtype == NVL_DTYPE_F32 || t->widened; }

static nvl_status need_f32(const char *op, const char *what, const nvl_tensor *t, nvl_err *err) {
    if (is_f32_held(t)) return NVL_OK;
    return nvl_err_set(err, NVL_ERR_DTYPE, "%s: %s is %s held in %zu bytes; CPU activations are held as f32", op, what,
                       nvl_dtype_name(t->dtype), nvl_dtype_size(t->dtype));
}

static inline float *row_f(const nvl_tensor *t, int64_t r) { return (float *)t->data + r * t->stride[0]; }

/* Rounding on store: to the tensor's dtype. */
static inline float to_dtype(float v, nvl_dtype dt) {
    if (dt == NVL_DTYPE_BF16) return nvl_round_bf16(v);
    if (dt == NVL_DTYPE_F16) return nvl_f16_to_f32(nvl_f32_to_f16(v));
    return v;
}
static void round_row(float *y, int64_t n, nvl_dtype dt) {
    if (dt == NVL_DTYPE_BF16)
        for (int64_t i = 0; i < n; i++) y[i] = nvl_round_bf16(y[i]);
    else if (dt == NVL_DTYPE_F16)
        for (int64_t i = 0; i < n; i++) y[i] = nvl_f16_to_f32(nvl_f32_to_f16(y[i]));
}

/* Reads element i of a 1-D float vector (weights: any stored float dtype). */
static inline float vec_get(const nvl_tensor *t, int64_t i) {
    if (t->widened || t->dtype == NVL_DTYPE_F32) return ((const float *)t->data)[i];
    return nvl_tensor_get_f32(t, i);
}

// ---------------------------------------------------------------------------
// Scratch: one growing block per backend

typedef struct cpu_ctx {
    void *scratch;
    size_t cap;
} cpu_ctx;

void *kern_cpu_scratch(kern_backend *be, size_t bytes, nvl_err *err) {
    cpu_ctx *c = be->context;
    if (!c) {
        nvl_err_set(err, NVL_ERR_INVALID_ARG, "cpu scratch: not a CPU backend");
        return NULL;
    }
    if (bytes > c->cap) {
        size_t cap = c->cap ? c->cap : 1 << 16;
        while (cap < bytes) cap *= 2;
        void *p = nvl_aligned_alloc(64, cap);
        if (!p) {
            nvl_err_set(err, NVL_ERR_NOMEM, "cpu backend: out of memory for %zu bytes of op scratch", bytes);
            return NULL;
        }
        nvl_free(c->scratch);
        c->scratch = p;
        c->cap = cap;
    }
    return c->scratch;
}

void *kern_cpu_context_new(void) { return nvl_calloc(1, sizeof(cpu_ctx)); }
void kern_cpu_context_free(void *p) {
    cpu_ctx *c = p;
    if (!c) return;
    nvl_free(c->scratch);
    nvl_free(c);
}

// ---------------------------------------------------------------------------
// Matmul and norms

static nvl_status cpu_matmul(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const kern_weight *w, nvl_err *err) {
    nvl_status st;
    if ((st = need_f32(__func__, "x", x, err)) != NVL_OK || (st = need_f32(__func__, "y", y, err)) != NVL_OK) return st;
    const int64_t M = x->shape[0], K = w->n_in, N = w->n_out;
    if (M == 0) return NVL_OK;
    const int x_dense = x->stride[0] == K, y_dense = y->stride[0] == N;
    size_t need = (x_dense ? 0 : (size_t)(M * K)) + (y_dense ? 0 : (size_t)(M * N));
    float *sc = need ? kern_cpu_scratch(be, need * sizeof(float), err) : NULL;
    if (need && !sc) return NVL_ERR_NOMEM;
    const float *xs = x->data;
    if (!x_dense) {
        for (int64_t r = 0; r < M; r++) memcpy(sc + r * K, row_f(x, r), (size_t)K * sizeof(float));
        xs = sc;
    }
    float *ys = y_dense ? y->data : sc + (x_dense ? 0 : M * K);
    if (w->quant != KERN_QUANT_NONE) st = kern_cpu_matmul_quant(ys, xs, w, M, err);
    else if (x->dtype == NVL_DTYPE_BF16 && w->w.dtype == NVL_DTYPE_BF16 && kern_cpu_matmul_bf16(ys, xs, &w->w, M)) st = NVL_OK;
    else st = kern_cpu_matmul(ys, xs, &w->w, M, err);
    if (st != NVL_OK) return st;
    if (y->dtype != NVL_DTYPE_F32 || !y_dense) {
#pragma omp parallel for schedule(static) if (M * N > 65536)
        for (int64_t r = 0; r < M; r++) {
            float *yr = row_f(y, r);
            if (!y_dense) memcpy(yr, ys + r * N, (size_t)N * sizeof(float));
            round_row(yr, N, y->dtype);
        }
    }
    return NVL_OK;
}

static nvl_status cpu_rmsnorm(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *w, float eps,
                              nvl_err *err) {
    nvl_status st;
    if ((st = need_f32(__func__, "x", x, err)) != NVL_OK || (st = need_f32(__func__, "y", y, err)) != NVL_OK) return st;
    const int64_t R = x->shape[0], C = x->shape[1];
#pragma omp parallel for schedule(static) if (R > 4)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = row_f(x, r);
        float *yr = row_f(y, r);
        float ss = 0.0f;
        for (int64_t c = 0; c < C; c++) ss += xr[c] * xr[c];
        const float inv = 1.0f / sqrtf(ss / (float)C + eps);
        for (int64_t c = 0; c < C; c++) yr[c] = to_dtype(vec_get(w, c) * (xr[c] * inv), y->dtype);
    }
    return NVL_OK;
}

static nvl_status cpu_rmsnorm_gated(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *z,
                                    const nvl_tensor *w, int64_t n_group, float eps, const kern_seq *seqs, int n_seq,
                                    nvl_err *err) {
    nvl_status st;
    if ((st = need_f32(__func__, "x", x, err)) != NVL_OK || (st = need_f32(__func__, "z", z, err)) != NVL_OK ||
        (st = need_f32(__func__, "y", y, err)) != NVL_OK)
        return st;
    const int64_t R = x->shape[0], C = x->shape[1], gs = C / n_group;
    /* rows of decode sequences on bf16 activations: the reference's scan output is bf16 there */
    uint8_t *dec = NULL;
    if (z->dtype == NVL_DTYPE_BF16 && n_seq > 0) {
        if (!(dec = kern_cpu_scratch(be, (size_t)R, err))) return NVL_ERR_NOMEM;
        memset(dec, 0, (size_t)R);
        for (int i = 0; i < n_seq; i++)
            if (seqs[i].decode) memset(dec + seqs[i].row0, 1, (size_t)seqs[i].n_rows);
    }
#pragma omp parallel for schedule(static) if (R > 4)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = row_f(x, r), *zr = row_f(z, r);
        float *yr = row_f(y, r);
        const int bf = dec && dec[r];
        for (int64_t c = 0; c < C; c++) yr[c] = xr[c] * (zr[c] / (1.0f + expf(-zr[c])));
        for (int64_t g = 0; g < n_group; g++) {
            float *v = yr + g * gs;
            float ss = 0.0f;
            for (int64_t c = 0; c < gs; c++) ss += v[c] * v[c];
            const float inv = 1.0f / sqrtf(ss / (float)gs + eps);
            for (int64_t c = 0; c < gs; c++) {
                const float t = bf ? nvl_round_bf16(v[c] * inv) : v[c] * inv;
                v[c] = to_dtype(vec_get(w, g * gs + c) * t, y->dtype);
            }
        }
    }
    return NVL_OK;
}

static nvl_status cpu_layernorm(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *w,
                                const nvl_tensor *b, float eps, nvl_err *err) {
    nvl_status st;
    if ((st = need_f32(__func__, "x", x, err)) != NVL_OK || (st = need_f32(__func__, "y", y, err)) != NVL_OK) return st;
    const int64_t R = x->shape[0], C = x->shape[1];
#pragma omp parallel for schedule(static) if (R * C > 65536)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = row_f(x, r);
        float *yr = row_f(y, r);
        double mean = 0, var = 0;
        for (int64_t c = 0; c < C; c++) mean += xr[c];
        mean /= (double)C;
        for (int64_t c = 0; c < C; c++) var += ((double)xr[c] - mean) * ((double)xr[c] - mean);
        const float inv = (float)(1.0 / sqrt(var / (double)C + eps));
        for (int64_t c = 0; c < C; c++)
            yr[c] = to_dtype(((float)(xr[c] - mean) * inv) * vec_get(w, c) + vec_get(b, c), y->dtype);
    }
    return NVL_OK;
}

// ---------------------------------------------------------------------------
// Element-wise

static nvl_status cpu_add(kern_backend *be, nvl_tensor *y, const nvl_tensor *a, const nvl_tensor *b, nvl_err *err) {
    nvl_status st;
    if ((st = need_f32(__func__, "a", a, err)) != NVL_OK || (st = need_f32(__func__, "b", b, err)) != NVL_OK ||
        (st = need_f32(__func__, "y", y, err)) != NVL_OK)
        return st;
    const int64_t R = a->shape[0], C = a->shape[1], Rb = b->shape[0];
    const nvl_dtype dt = y->dtype;
#pragma omp parallel for schedule(static) if (R * C > 65536)
    for (int64_t r = 0; r < R; r++) {
        const float *ar = row_f(a, r), *br = row_f(b, r % Rb);
        float *yr = row_f(y, r);
        if (dt == NVL_DTYPE_F32)
            for (int64_t c = 0; c < C; c++) yr[c] = ar[c] + br[c];
        else
            for (int64_t c = 0; c < C; c++) yr[c] = to_dtype(ar[c] + br[c], dt);
    }
    return NVL_OK;
}

static nvl_status cpu_bias_act(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *bias,
                               kern_act_fn act, nvl_err *err) {
    nvl_status st;
    if ((st = need_f32(__func__, "x", x, err)) != NVL_OK || (st = need_f32(__func__, "y", y, err)) != NVL_OK) return st;
    const int64_t R = x->shape[0], C = x->shape[1];
    float stackbuf[4096], *bf = NULL;
    if (bias) {
        bf = C <= 4096 ? stackbuf : kern_cpu_scratch(be, (size_t)C * sizeof(float), err);
        if (!bf) return NVL_ERR_NOMEM;
        for (int64_t c = 0; c < C; c++) bf[c] = vec_get(bias, c);
    }
    const nvl_dtype dt = y->dtype;
#pragma omp parallel for schedule(static) if (R * C > 65536)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = row_f(x, r);
        float *yr = row_f(y, r);
        for (int64_t c = 0; c < C; c++) {
            float v = bf ? xr[c] + bf[c] : xr[c];
            switch (act) {
            case KERN_ACT_GELU_ERF: v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
            case KERN_ACT_RELU2: v = v < 0.0f ? 0.0f : v * v; /* (a NaN stays NaN) */ break;
            case KERN_ACT_SILU: v = v / (1.0f + expf(-v)); break;
            default: break;
            }
            yr[c] = to_dtype(v, dt);
        }
    }
    return NVL_OK;
}

static nvl_status cpu_copy(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, nvl_err *err) {
    nvl_status st;
    if ((st = need_f32(__func__, "y", y, err)) != NVL_OK) return st;
    const int64_t R = x->shape[0], C = x->shape[1];
    const size_t xes = nvl_tensor_elem_size(x);
    for (int64_t r = 0; r < R; r++) {
        float *yr = row_f(y, r);
        const unsigned char *xr = (const unsigned char *)x->data + (size_t)(r * x->stride[0]) * xes;
        if (is_f32_held(x)) memmove(yr, xr, (size_t)C * sizeof(float));
        else nvl_convert_to_f32(yr, xr, x->dtype, (size_t)C);
        round_row(yr, C, y->dtype);
    }
    return NVL_OK;
}

static nvl_status cpu_dt_softplus(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *bias,
                                  float dt_min, float dt_max, nvl_err *err) {
    nvl_status st;
    if ((st = need_f32(__func__, "x", x, err)) != NVL_OK || (st = need_f32(__func__, "y", y, err)) != NVL_OK) return st;
    const int64_t R = x->shape[0], H = x->shape[1];
    const nvl_dtype dt = y->dtype;
    for (int64_t r = 0; r < R; r++) {
        const float *xr = row_f(x, r);
        float *yr = row_f(y, r);
        for (int64_t h = 0; h < H; h++) {
            float v = to_dtype(xr[h] + to_dtype(vec_get(bias, h), dt), dt);
            v = v > 20.0f ? v : log1pf(expf(v));
            v = to_dtype(v, dt);
            if (v < dt_min) v = dt_min;
            if (v > dt_max) v = dt_max;
            yr[h] = to_dtype(v, dt); /* a bound is a value of y's dtype too (torch.clamp on a bf16 tensor) */
        }
    }
    return NVL_OK;
}

static nvl_status cpu_get_rows(kern_backend *be, nvl_tensor *y, const nvl_tensor *table, const int32_t *ids,
                               const nvl_tensor *rows, const uint8_t *mask, nvl_err *err) {
    nvl_status st;
    if ((st = need_f32(__func__, "y", y, err)) != NVL_OK) return st;
    if (rows && (st = need_f32(__func__, "rows", rows, err)) != NVL_OK) return st;
    const int64_t T = y->shape[0], C = y->shape[1], V = table->shape[0];
    const size_t tes = nvl_tensor_elem_size(table);
    for (int64_t t = 0; t < T; t++) {
        float *yr = row_f(y, t);
        if (mask && mask[t]) {
            memcpy(yr, row_f(rows, t), (size_t)C * sizeof(float));
        } else {
            if (ids[t] < 0 || ids[t] >= V)
                return nvl_err_set(err, NVL_ERR_INVALID_ARG, "token id %d at row %lld is outside the vocabulary of %lld",
                                   ids[t], (long long)t, (long long)V);
            const unsigned char *src = (const unsigned char *)table->data + (size_t)(ids[t] * table->stride[0]) * tes;
            if (is_f32_held(table)) memcpy(yr, src, (size_t)C * sizeof(float));
            else nvl_convert_to_f32(yr, src, table->dtype, (size_t)C);
        }
        round_row(yr, C, y->dtype);
    }
    return NVL_OK;
}

// ---------------------------------------------------------------------------
// Sequence ops

/* A padding sequence's (KERN_SLOT_NONE) rows of an output: zero. */
static void zero_seq_rows(const nvl_tensor *y, const kern_seq *s) {
    for (int64_t t = 0; t < s->n_rows; t++) memset(row_f(y, s->row0 + t), 0, (size_t)y->shape[1] * sizeof(float));
}

static nvl_status cpu_conv1d_causal(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *w,
                                    const nvl_tensor *bias, nvl_tensor *state, const kern_seq *seqs, int n_seq,
                                    nvl_err *err) {
    nvl_status st;
    if ((st = need_f32(__func__, "x", x, err)) != NVL_OK || (st = need_f32(__func__, "y", y, err)) != NVL_OK) return st;
    const int64_t Cc = x->shape[1], Kc = w->shape[1];
    int64_t Tmax = 0;
    for (int i = 0; i < n_seq; i++) Tmax = seqs[i].n_rows > Tmax ? seqs[i].n_rows : Tmax;
    /* contiguous input and output rows for the kernel (the input is a view of in_proj's output) */
    float *sc = kern_cpu_scratch(be, (size_t)(2 * Tmax * Cc + Cc + 1) * sizeof(float), err);
    if (!sc) return NVL_ERR_NOMEM;
    float *in = sc, *out = sc + Tmax * Cc, *bf = out + Tmax * Cc;
    if (bias)
        for (int64_t c = 0; c < Cc; c++) bf[c] = vec_get(bias, c);
    const int rnd = y->dtype == NVL_DTYPE_BF16;
    for (int i = 0; i < n_seq; i++) {
        const kern_seq *s = &seqs[i];
        if (s->slot == KERN_SLOT_NONE) {
            zero_seq_rows(y, s);
            continue;
        }
        for (int64_t t = 0; t < s->n_rows; t++) memcpy(in + t * Cc, row_f(x, s->row0 + t), (size_t)Cc * sizeof(float));
        kern_cpu_conv1d_causal_silu(out, (float *)state->data + (size_t)s->slot * (size_t)(Cc * Kc), in, w->data,
                                    bias ? bf : NULL, s->n_rows, Cc, Kc, rnd);
        for (int64_t t = 0; t < s->n_rows; t++) {
            float *yr = row_f(y, s->row0 + t);
            memcpy(yr, out + t * Cc, (size_t)Cc * sizeof(float));
            if (!rnd) round_row(yr, Cc, y->dtype);
        }
    }
    return NVL_OK;
}

static nvl_status cpu_ssm_scan(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *dt,
                               const nvl_tensor *A, const nvl_tensor *B, const nvl_tensor *C, const nvl_tensor *D,
                               nvl_tensor *state, int64_t n_group, int64_t chunk, kern_scan_mode mode,
                               const kern_seq *seqs, int n_seq, nvl_err *err) {
    nvl_status st;
    if ((st = need_f32(__func__, "x", x, err)) != NVL_OK || (st = need_f32(__func__, "dt", dt, err)) != NVL_OK ||
        (st = need_f32(__func__, "B", B, err)) != NVL_OK || (st = need_f32(__func__, "C", C, err)) != NVL_OK)
        return st;
    const int64_t H = state->shape[1], P = state->shape[2], N = state->shape[3], G = n_group;
    const int64_t DI = H * P, GN = G * N;
    int64_t Tmax = 0;
    for (int i = 0; i < n_seq; i++) Tmax = seqs[i].n_rows > Tmax ? seqs[i].n_rows : Tmax;
    /* contiguous x (T, H, P), B and C (T, G, N), dt (T, H), y (T, H, P) for the kernels */
    float *sc = kern_cpu_scratch(be, (size_t)(Tmax * (2 * DI + 2 * GN + H) + 1) * sizeof(float), err);
    if (!sc) return NVL_ERR_NOMEM;
    float *xs = sc, *Bs = xs + Tmax * DI, *Cs = Bs + Tmax * GN, *dts = Cs + Tmax * GN, *ys = dts + Tmax * H;
    const int bf16_in = x->dtype == NVL_DTYPE_BF16;
    for (int i = 0; i < n_seq; i++) {
        const kern_seq *s = &seqs[i];
        const int64_t T = s->n_rows;
        if (s->slot == KERN_SLOT_NONE) {
            zero_seq_rows(y, s);
            continue;
        }
        for (int64_t t = 0; t < T; t++) {
            memcpy(xs + t * DI, row_f(x, s->row0 + t), (size_t)DI * sizeof(float));
            memcpy(Bs + t * GN, row_f(B, s->row0 + t), (size_t)GN * sizeof(float));
            memcpy(Cs + t * GN, row_f(C, s->row0 + t), (size_t)GN * sizeof(float));
            memcpy(dts + t * H, row_f(dt, s->row0 + t), (size_t)H * sizeof(float));
        }
        float *S = (float *)state->data + (size_t)s->slot * (size_t)(H * P * N);
        const int recurrent = mode == KERN_SCAN_RECURRENT || (mode == KERN_SCAN_AUTO && T == 1);
        if (recurrent)
            kern_cpu_ssm_scan_recurrent(ys, S, xs, dts, A->data, Bs, Cs, D->data, T, H, P, N, G,
                                        s->decode && bf16_in);
        else
            kern_cpu_ssm_scan_chunked(ys, S, xs, dts, A->data, Bs, Cs, D->data, T, H, P, N, G, chunk);
        for (int64_t t = 0; t < T; t++) memcpy(row_f(y, s->row0 + t), ys + t * DI, (size_t)DI * sizeof(float));
    }
    return NVL_OK;
}

static nvl_status cpu_kv_write(kern_backend *be, nvl_tensor *k_cache, nvl_tensor *v_cache, const nvl_tensor *k,
                               const nvl_tensor *v, const kern_seq *seqs, int n_seq, nvl_err *err) {
    nvl_status st;
    if ((st = need_f32(__func__, "k", k, err)) != NVL_OK || (st = need_f32(__func__, "v", v, err)) != NVL_OK) return st;
    const int64_t L = k_cache->shape[1], KD = k_cache->shape[2];
    const nvl_dtype cd = k_cache->dtype;
    const size_t es = nvl_tensor_elem_size(k_cache);
    for (int i = 0; i < n_seq; i++) {
        const kern_seq *s = &seqs[i];
        if (s->slot == KERN_SLOT_NONE) continue;
        for (int64_t t = 0; t < s->n_rows; t++) {
            const size_t off = ((size_t)s->slot * (size_t)L + (size_t)(s->pos0 + t)) * (size_t)KD * es;
            for (int kv = 0; kv < 2; kv++) {
                const float *src = row_f(kv ? v : k, s->row0 + t);
                unsigned char *dst = (unsigned char *)(kv ? v_cache : k_cache)->data + off;
                if (cd == NVL_DTYPE_F32 || k_cache->widened) memcpy(dst, src, (size_t)KD * sizeof(float));
                else if (cd == NVL_DTYPE_BF16)
                    for (int64_t d = 0; d < KD; d++) ((uint16_t *)dst)[d] = nvl_f32_to_bf16(src[d]);
                else if (cd == NVL_DTYPE_F16)
                    for (int64_t d = 0; d < KD; d++) ((uint16_t *)dst)[d] = nvl_f32_to_f16(src[d]);
                else return nvl_err_set(err, NVL_ERR_DTYPE, "%s: KV cache dtype %s", __func__, nvl_dtype_name(cd));
            }
        }
    }
    return NVL_OK;
}

/* dot of an f32 query with a cached key row of dtype cd */
static inline float dot_kv(const float *q, const void *k, nvl_dtype cd, int64_t D) {
    float s = 0.0f;
    if (cd == NVL_DTYPE_BF16) {
        const uint16_t *kb = k;
        for (int64_t d = 0; d < D; d++) s += q[d] * nvl_bf16_to_f32(kb[d]);
    } else if (cd == NVL_DTYPE_F16) {
        const uint16_t *kb = k;
        for (int64_t d = 0; d < D; d++) s += q[d] * nvl_f16_to_f32(kb[d]);
    } else {
        const float *kf = k;
        for (int64_t d = 0; d < D; d++) s += q[d] * kf[d];
    }
    return s;
}
static inline void axpy_kv(float *o, float p, const void *v, nvl_dtype cd, int64_t D) {
    if (cd == NVL_DTYPE_BF16) {
        const uint16_t *vb = v;
        for (int64_t d = 0; d < D; d++) o[d] += p * nvl_bf16_to_f32(vb[d]);
    } else if (cd == NVL_DTYPE_F16) {
        const uint16_t *vb = v;
        for (int64_t d = 0; d < D; d++) o[d] += p * nvl_f16_to_f32(vb[d]);
    } else {
        const float *vf = v;
        for (int64_t d = 0; d < D; d++) o[d] += p * vf[d];
    }
}

static nvl_status cpu_attention_causal(kern_backend *be, nvl_tensor *o, const nvl_tensor *q,
                                       const nvl_tensor *k_cache, const nvl_tensor *v_cache, int64_t n_head,
                                       int64_t n_head_kv, const kern_seq *seqs, int n_seq, nvl_err *err) {
    nvl_status st;
    if ((st = need_f32(__func__, "q", q, err)) != NVL_OK || (st = need_f32(__func__, "o", o, err)) != NVL_OK) return st;
    const int64_t NH = n_head, D = q->shape[1] / n_head, KD = n_head_kv * D, L = k_cache->shape[1];
    const int64_t group = NH / n_head_kv;
    const nvl_dtype cd = k_cache->widened ? NVL_DTYPE_F32 : k_cache->dtype;
    const size_t es = nvl_tensor_elem_size(k_cache);
    int64_t T = 0, max_keys = 1;
    for (int i = 0; i < n_seq; i++) {
        T += seqs[i].n_rows;
        if (seqs[i].pos0 + seqs[i].n_rows > max_keys) max_keys = seqs[i].pos0 + seqs[i].n_rows;
    }
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    /* per thread a row of scores; the (sequence, row) of every work item */
    const size_t sc_bytes = ((size_t)threads * (size_t)max_keys * sizeof(float) + 63) & ~(size_t)63; /* the int64 tables after it stay aligned */
    unsigned char *scratch = kern_cpu_scratch(be, sc_bytes + (size_t)T * 2 * sizeof(int64_t), err);
    if (!scratch) return NVL_ERR_NOMEM;
    float *scores = (float *)scratch;
    int64_t *item_seq = (int64_t *)(scratch + sc_bytes), *item_t = item_seq + T;
    for (int i = 0, r = 0; i < n_seq; i++)
        for (int64_t t = 0; t < seqs[i].n_rows; t++, r++) {
            item_seq[r] = i;
            item_t[r] = t;
        }
    const float scale = 1.0f / sqrtf((float)D);
    const nvl_dtype od = o->dtype;
#pragma omp parallel for collapse(2) schedule(static) if (T * NH > 4)
    for (int64_t r = 0; r < T; r++)
        for (int64_t hh = 0; hh < NH; hh++) {
            const kern_seq *s = &seqs[item_seq[r]];
            const int64_t t = item_t[r], n_keys = s->pos0 + t + 1, kvh = hh / group;
            float *ot = row_f(o, s->row0 + t) + hh * D;
            if (s->slot == KERN_SLOT_NONE) {
                memset(ot, 0, (size_t)D * sizeof(float));
                continue;
            }
            const unsigned char *kbase = (const unsigned char *)k_cache->data + (size_t)s->slot * (size_t)(L * KD) * es;
            const unsigned char *vbase = (const unsigned char *)v_cache->data + (size_t)s->slot * (size_t)(L * KD) * es;
            float *sc = scores + (size_t)thread_id() * (size_t)max_keys;
            const float *qt = row_f(q, s->row0 + t) + hh * D;
            float mx = -INFINITY;
            for (int64_t j = 0; j < n_keys; j++) {
                sc[j] = dot_kv(qt, kbase + (size_t)(j * KD + kvh * D) * es, cd, D) * scale;
                if (sc[j] > mx) mx = sc[j];
            }
            float sum = 0.0f;
            for (int64_t j = 0; j < n_keys; j++) {
                sc[j] = expf(sc[j] - mx);
                sum += sc[j];
            }
            for (int64_t d = 0; d < D; d++) ot[d] = 0.0f;
            for (int64_t j = 0; j < n_keys; j++) axpy_kv(ot, sc[j] / sum, vbase + (size_t)(j * KD + kvh * D) * es, cd, D);
            for (int64_t d = 0; d < D; d++) ot[d] = to_dtype(ot[d], od);
        }
    return NVL_OK;
}

// ---------------------------------------------------------------------------
// Vision ops

/* Per image and head: scores = (q * scale) k^T, softmax, out = scores v, each product on the
 * CPU matmul kernels (k, and v transposed, as the "weight").
 *
 * For a BF16 o (a BF16 checkpoint's ViT) the form of the reference: PyTorch's RADIO calls
 * scaled_dot_product_attention on bf16 q, k, v, which on the CPU runs ATen's flash attention
 * kernel: s = (q k^T) * scale in f32 (exact bf16 products, f32 sums), then per query row keys
 * in blocks of 512 with a running max M: exp(s - M) rounded to bf16 for the product with v
 * (f32 accumulation), the row sum of the unrounded exps in f32, earlier blocks rescaled when M
 * grows, and o = acc / sum rounded to bf16. nanovl does the same (kern_cpu_softmax_rows_bf16p),
 * with the products of both matmuls on the BF16 paths (exact bf16 products, f32 sums, as torch's
 * bf16 GEMMs), with two differences it cannot remove: torch's exp is a vectorised approximation (Sleef-style
 * exp_u20) where ours is a ~1 ulp polynomial, and the f32 summation orders differ; so a
 * probability near a bf16 rounding boundary can round the other way, and an output sitting near
 * one can land one bf16 ulp apart (tiny ViT: ~3 % of attention outputs, against ~30 % with the
 * f32 softmax). The F32 path is unchanged. */
#define ATTN_KV_BLOCK 512 /* torch's kvSplitSize on the CPU */

/* y[M, N] = x[M, K] (row stride ldx) @ w[N, K]^T where every value of x and w is a bf16 value held
 * in f32: through oneDNN's BF16 matmul (exact products, f32 sums) after packing w to wb where that
 * is the path for M rows; otherwise the f32 kernels, which compute the same products exactly (a
 * bf16 x bf16 product fits f32) and sum in f32 (x copied dense into xd first). Not the own
 * AVX512-BF16 kernel: on these short-K shapes (K = 80, 512) it measured slower than the f32
 * packed GEMM (RADIO-H 4.95 against 4.32 s a tile). */
static nvl_status mm_bf16_values(float *y, const float *x, int64_t ldx, const float *w, int64_t N, int64_t K,
                                 int64_t M, uint16_t *wb, float *xd, nvl_err *err) {
    const nvl_tensor wt = nvl_tensor_make(NVL_DTYPE_BF16, 2, (int64_t[]){N, K}, wb);
    if (kern_cpu_bf16_path(M) == KERN_BF16_DNNL) {
        for (int64_t i = 0; i < N * K; i++) wb[i] = nvl_f32_to_bf16(w[i]);
        if (kern_cpu_matmul_dnnl(y, x, ldx, &wt, M)) return NVL_OK;
    }
    if (ldx != K) {
        for (int64_t m = 0; m < M; m++) memcpy(xd + m * K, x + m * ldx, (size_t)K * sizeof(float));
        x = xd;
    }
    const nvl_tensor wf = nvl_tensor_make(NVL_DTYPE_F32, 2, (int64_t[]){N, K}, (void *)w);
    return kern_cpu_matmul(y, x, &wf, M, err);
}

/* The BF16 form for one image and head: q (T, D) unscaled, k (T, D), v transposed block by block
 * (vt: block b, keys j0..j0+n, is a dense (D, n) at vt + j0 * D); all bf16 values. s = (q k^T) *
 * scale, the bf16 probabilities per block of 512 keys (kern_cpu_softmax_rows_bf16p), then torch's
 * order: acc = P_0 v_0; acc = acc * exp(M_0 - M_1) + P_1 v_1; ...; o = bf16(acc / l). */
static nvl_status attention_bf16(float *oh, const float *qh, const float *kh, const float *vt, int64_t T, int64_t D,
                                 float scale, float *sc, float *tmp, float *run_max, float *inv, uint16_t *wb,
                                 float *xd, nvl_err *err) {
    nvl_status st;
    if ((st = mm_bf16_values(sc, qh, D, kh, T, D, T, wb, xd, err)) != NVL_OK) return st;
    for (int64_t i = 0; i < T * T; i++) sc[i] *= scale;
    kern_cpu_softmax_rows_bf16p(sc, run_max, inv, T, T, ATTN_KV_BLOCK);
    const int64_t nb = (T + ATTN_KV_BLOCK - 1) / ATTN_KV_BLOCK;
    for (int64_t b = 0, j0 = 0; b < nb; b++, j0 += ATTN_KV_BLOCK) {
        const int64_t n = T - j0 < ATTN_KV_BLOCK ? T - j0 : ATTN_KV_BLOCK;
        float *dst = b == 0 ? oh : tmp;
        if ((st = mm_bf16_values(dst, sc + j0, T, vt + j0 * D, D, n, T, wb, xd, err)) != NVL_OK) return st;
        if (b == 0) continue;
        for (int64_t i = 0; i < T; i++) {
            const float f = expf(run_max[i * nb + b - 1] - run_max[i * nb + b]); /* 1 when the max stayed */
            for (int64_t d = 0; d < D; d++) oh[i * D + d] = oh[i * D + d] * f + tmp[i * D + d];
        }
    }
    return NVL_OK;
}

static nvl_status cpu_attention_full(kern_backend *be, nvl_tensor *o, const nvl_tensor *qkv, int64_t n_img,
                                     int64_t n_head, nvl_err *err) {
    nvl_status st;
    if ((st = need_f32(__func__, "qkv", qkv, err)) != NVL_OK || (st = need_f32(__func__, "o", o, err)) != NVL_OK)
        return st;
    const int64_t W = qkv->shape[1] / 3, H = n_head, D = W / H, T = qkv->shape[0] / n_img;
    const int bf = o->dtype == NVL_DTYPE_BF16;
    const int64_t nb = (T + ATTN_KV_BLOCK - 1) / ATTN_KV_BLOCK, blk = T < ATTN_KV_BLOCK ? T : ATTN_KV_BLOCK;
    /* sc, qh, kh, vt, oh, inv; the bf16 form adds tmp, run_max, xd and wb (T * D uint16) */
    const size_t need = (size_t)(T * T + 4 * T * D + T) + (bf ? (size_t)(T * D + T * nb + T * blk + (T * D + 1) / 2) : 0);
    float *sc = kern_cpu_scratch(be, need * sizeof(float), err);
    if (!sc) return NVL_ERR_NOMEM;
    float *qh = sc + T * T, *kh = qh + T * D, *vt = kh + T * D, *oh = vt + T * D, *inv = oh + T * D;
    float *tmp = inv + T, *run_max = tmp + T * D, *xd = run_max + T * nb;
    uint16_t *wb = (uint16_t *)(xd + T * blk);
    const float scale = 1.0f / sqrtf((float)D);
    for (int64_t t = 0; t < n_img; t++)
        for (int64_t hh = 0; hh < H; hh++) {
            for (int64_t i = 0; i < T; i++) {
                const float *hr = row_f(qkv, t * T + i);
                /* v transposed; for bf16 block by block (block of key i: dense (D, n) at j0 * D) */
                const int64_t j0 = bf ? i / ATTN_KV_BLOCK * ATTN_KV_BLOCK : 0;
                const int64_t n = bf ? (T - j0 < ATTN_KV_BLOCK ? T - j0 : ATTN_KV_BLOCK) : T;
                for (int64_t d = 0; d < D; d++) {
                    qh[i * D + d] = bf ? hr[hh * D + d] : hr[hh * D + d] * scale;
                    kh[i * D + d] = hr[W + hh * D + d];
                    vt[j0 * D + d * n + (i - j0)] = hr[2 * W + hh * D + d];
                }
            }
            if (bf) {
                if ((st = attention_bf16(oh, qh, kh, vt, T, D, scale, sc, tmp, run_max, inv, wb, xd, err)) != NVL_OK)
                    return st;
                for (int64_t i = 0; i < T; i++) {
                    float *orow = row_f(o, t * T + i) + hh * D;
                    for (int64_t d = 0; d < D; d++) orow[d] = nvl_round_bf16(oh[i * D + d] * inv[i]);
                }
                continue;
            }
            nvl_tensor kt = nvl_tensor_make(NVL_DTYPE_F32, 2, (int64_t[]){T, D}, kh);
            nvl_tensor vtt = nvl_tensor_make(NVL_DTYPE_F32, 2, (int64_t[]){D, T}, vt);
            if ((st = kern_cpu_matmul(sc, qh, &kt, T, err)) != NVL_OK) return st;
            kern_cpu_softmax_rows(sc, T, T);
            if ((st = kern_cpu_matmul(oh, sc, &vtt, T, err)) != NVL_OK) return st;
            for (int64_t i = 0; i < T; i++) {
                float *orow = row_f(o, t * T + i) + hh * D;
                memcpy(orow, oh + i * D, (size_t)D * sizeof(float));
                round_row(orow, D, o->dtype);
            }
        }
    return NVL_OK;
}

static nvl_status cpu_patchify(kern_backend *be, nvl_tensor *y, const nvl_tensor *tiles, int64_t p, nvl_err *err) {
    nvl_status st;
    if ((st = need_f32(__func__, "tiles", tiles, err)) != NVL_OK || (st = need_f32(__func__, "y", y, err)) != NVL_OK)
        return st;
    const int64_t n = tiles->shape[0], S = tiles->shape[2], G = S / p, P = G * G, pp = 3 * p * p;
    for (int64_t t = 0; t < n; t++) {
        const float *img = (const float *)tiles->data + (size_t)t * 3 * S * S;
        for (int64_t py = 0; py < G; py++)
            for (int64_t px = 0; px < G; px++) {
                float *yr = row_f(y, t * P + py * G + px);
                for (int64_t c = 0; c < 3; c++)
                    for (int64_t yy = 0; yy < p; yy++)
                        memcpy(yr + c * p * p + yy * p, img + (c * S + py * p + yy) * S + px * p, (size_t)p * sizeof(float));
                if (y->dtype != NVL_DTYPE_F32) round_row(yr, pp, y->dtype);
            }
    }
    return NVL_OK;
}

static nvl_status cpu_pixel_shuffle(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, nvl_err *err) {
    nvl_status st;
    if ((st = need_f32(__func__, "x", x, err)) != NVL_OK || (st = need_f32(__func__, "y", y, err)) != NVL_OK) return st;
    const int64_t n = x->shape[0], g = x->shape[1], c = x->shape[3], h = g / 2;
    const size_t row = (size_t)c * sizeof(float);
    for (int64_t t = 0; t < n; t++) {
        const float *X = (const float *)x->data + t * g * g * c;
        float *O = (float *)y->data + t * h * h * 4 * c;
        for (int64_t k = 0; k < h; k++)
            for (int64_t j = 0; j < h; j++) {
                float *o = O + (k * h + j) * 4 * c;
                memcpy(o + 0 * c, X + ((2 * k) * g + 2 * j) * c, row);
                memcpy(o + 1 * c, X + ((2 * k) * g + 2 * j + 1) * c, row);
                memcpy(o + 2 * c, X + ((2 * k + 1) * g + 2 * j) * c, row);
                memcpy(o + 3 * c, X + ((2 * k + 1) * g + 2 * j + 1) * c, row);
            }
    }
    return NVL_OK;
}

void kern_cpu_normalize_rgb8_tile(float *y, const uint8_t *x, size_t x_stride, int64_t S, const float mean[3],
                                  const float std[3]) {
    for (int c = 0; c < 3; c++)
        for (int64_t i = 0; i < S; i++)
            for (int64_t j = 0; j < S; j++)
                y[((size_t)c * (size_t)S + (size_t)i) * (size_t)S + (size_t)j] =
                    ((float)x[(size_t)i * x_stride + (size_t)j * 3 + (size_t)c] / 255.0f - mean[c]) / std[c];
}

static nvl_status cpu_normalize_rgb8(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const float mean[3],
                                     const float std[3], nvl_err *err) {
    (void)be;
    (void)err;
    const int64_t n = x->shape[0], S = x->shape[1];
#pragma omp parallel for schedule(static) if (n > 1)
    for (int64_t t = 0; t < n; t++)
        kern_cpu_normalize_rgb8_tile((float *)y->data + (size_t)t * 3 * (size_t)(S * S),
                                     (const uint8_t *)x->data + (size_t)t * 3 * (size_t)(S * S), (size_t)S * 3, S, mean, std);
    return NVL_OK;
}

/* llm_sampler's greedy loop, row by row; -1 where the maximum it picks is not finite */
static nvl_status cpu_argmax_rows(kern_backend *be, int32_t *ids, const nvl_tensor *x, nvl_err *err) {
    nvl_status st;
    if ((st = need_f32(__func__, "x", x, err)) != NVL_OK) return st;
    (void)be;
    const int64_t R = x->shape[0], V = x->shape[1];
    for (int64_t r = 0; r < R; r++) {
        const float *v = row_f(x, r);
        int32_t best = 0;
        for (int64_t i = 1; i < V; i++)
            if (v[i] > v[best]) best = (int32_t)i;
        ids[r] = isfinite(v[best]) ? best : -1;
    }
    return NVL_OK;
}

static nvl_status cpu_evs_scores(kern_backend *be, nvl_tensor *dis, const nvl_tensor *E, int round_bf16,
                                 nvl_err *err) {
    nvl_status st;
    if ((st = need_f32(__func__, "E", E, err)) != NVL_OK) return st;
    const int64_t F = E->shape[0], T = E->shape[1], D = E->shape[2];
    const float *e = E->data;
    float *out = dis->data;
    for (int64_t t = 0; t < T; t++) out[t] = 255.0f;
    /* each (frame, token) on its own (128 frames of the 12B model: 5e8 multiply-adds in double) */
#pragma omp parallel for collapse(2) schedule(static) if ((F - 1) * T * D >= (1 << 20))
    for (int64_t f = 1; f < F; f++)
        for (int64_t t = 0; t < T; t++) {
            const float *a = e + (f * T + t) * D, *b = e + ((f - 1) * T + t) * D;
            double dot = 0, na = 0, nb = 0;
            for (int64_t d = 0; d < D; d++) {
                dot += (double)a[d] * b[d];
                na += (double)a[d] * a[d];
                nb += (double)b[d] * b[d];
            }
            /* torch.cosine_similarity: dot / max(||a|| * ||b||, eps), eps 1e-8 */
            double den = sqrt(na) * sqrt(nb);
            if (den < 1e-8) den = 1e-8;
            const float sim = (float)(dot / den);
            out[f * T + t] = round_bf16 ? nvl_round_bf16(1.0f - nvl_round_bf16(sim)) : 1.0f - sim;
        }
    return NVL_OK;
}

/* kern_matmul_invariant_rows: the path cpu_matmul takes for one row and for many, and where it
 * changes (kernels/cpu/cpu_ops.h: each path's rows are bit-identical below its switch) */
static int64_t cpu_matmul_invariant_rows(kern_backend *be, const kern_weight *w, nvl_dtype x_dtype) {
    (void)be;
    if (w->quant != KERN_QUANT_NONE) return kern_cpu_quant_invariant_rows();
    const int64_t f32 = kern_cpu_matmul_invariant_rows();
    if (x_dtype != NVL_DTYPE_BF16 || w->w.dtype != NVL_DTYPE_BF16) return f32;
    const kern_bf16_path one = kern_cpu_bf16_path(1), many = kern_cpu_bf16_path(KERN_DNNL_MIN_ROWS);
    if (one == KERN_BF16_DNNL) return 1; /* oneDNN for every row count (NVL_CPU_KERNEL=dnnl): no bound known */
    const int64_t below = one == KERN_BF16_OWN ? INT64_MAX : f32; /* (NONE: the f32 path) */
    if (one == many) return below;
    return below < KERN_DNNL_MIN_ROWS - 1 ? below : KERN_DNNL_MIN_ROWS - 1;
}

const struct kern_ops_i kern_cpu_ops = {
    .matmul = cpu_matmul,
    .matmul_invariant_rows = cpu_matmul_invariant_rows,
    .rmsnorm = cpu_rmsnorm,
    .rmsnorm_gated = cpu_rmsnorm_gated,
    .layernorm = cpu_layernorm,
    .add = cpu_add,
    .bias_act = cpu_bias_act,
    .copy = cpu_copy,
    .argmax_rows = cpu_argmax_rows,
    .dt_softplus = cpu_dt_softplus,
    .get_rows = cpu_get_rows,
    .conv1d_causal = cpu_conv1d_causal,
    .ssm_scan = cpu_ssm_scan,
    .kv_write = cpu_kv_write,
    .attention_causal = cpu_attention_causal,
    .attention_full = cpu_attention_full,
    .patchify = cpu_patchify,
    .pixel_shuffle = cpu_pixel_shuffle,
    .evs_scores = cpu_evs_scores,
    .normalize_rgb8 = cpu_normalize_rgb8,
    .place_weight = NULL, /* weights stay in the mapping */
};
