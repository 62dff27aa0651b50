/* Mamba-2 selective scan on the CPU: the token-by-token recurrence (oracle and decode path) and
 * the chunked SSD form (prefill), which must agree. State is f32 (H, P, N). */
#include <math.h>
#include <string.h>

#include "../base/alloc.h"
#include "../base/tensor.h"
#include "cpu_ops.h"

#define SSD_MAX_CHUNK 256 /* longest chunk handled at once; longer requests are split */

static inline float rb(float v, int on) { return on ? nvl_round_bf16(v) : v; }

/* One (h, p) row of the recurrence over n: S = S dA + dBx, acc = sum_n S' C (S' the state,
 * rounded to bf16 in the bf16 decode); the sum in 16 lanes, then the lanes' sum. Returns acc. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
__attribute__((target("avx512f"))) static inline __m512 rb16(__m512 v) { /* to bf16, nearest even (finite values) */
    __m512i b = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
    b = _mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
    return _mm512_castsi512_ps(_mm512_and_si512(b, _mm512_set1_epi32((int)0xffff0000u)));
}
__attribute__((target("avx512f"))) static float row_avx512(float *Sp, const float *Bt, const float *Ct, float d, float dA,
                                                            float xp, int64_t N, int rnd) {
    const __m512 vd = _mm512_set1_ps(d), vdA = _mm512_set1_ps(dA), vx = _mm512_set1_ps(xp);
    __m512 acc = _mm512_setzero_ps();
    int64_t n = 0;
    for (; n + 16 <= N; n += 16) {
        const __m512 b = _mm512_loadu_ps(Bt + n), c = _mm512_loadu_ps(Ct + n);
        __m512 st = _mm512_loadu_ps(Sp + n);
        const __m512 dBx = rnd ? rb16(_mm512_mul_ps(rb16(_mm512_mul_ps(vd, b)), vx)) : _mm512_mul_ps(_mm512_mul_ps(vd, b), vx);
        st = _mm512_add_ps(_mm512_mul_ps(st, vdA), dBx);
        _mm512_storeu_ps(Sp + n, st);
        acc = _mm512_add_ps(acc, _mm512_mul_ps(rnd ? rb16(st) : st, c));
    }
    float a = _mm512_reduce_add_ps(acc);
    for (; n < N; n++) {
        const float dBx = rnd ? rb(rb(d * Bt[n], 1) * xp, 1) : d * Bt[n] * xp;
        Sp[n] = Sp[n] * dA + dBx;
        a += rb(Sp[n], rnd) * Ct[n];
    }
    return a;
}
#define HAVE_ROW_AVX512 1
#endif

static float row_scalar(float *Sp, const float *Bt, const float *Ct, float d, float dA, float xp, int64_t N, int rnd) {
    float lanes[16] = {0};
    int64_t n = 0;
    for (; n + 16 <= N; n += 16) /* the same 16-lane order as the vector row */
        for (int l = 0; l < 16; l++) {
            const float dBx = rnd ? rb(rb(d * Bt[n + l], 1) * xp, 1) : d * Bt[n + l] * xp;
            Sp[n + l] = Sp[n + l] * dA + dBx;
            lanes[l] += rb(Sp[n + l], rnd) * Ct[n + l];
        }
    float a = 0.0f;
    for (int l = 0; l < 16; l++) a += lanes[l];
    for (; n < N; n++) {
        const float dBx = rnd ? rb(rb(d * Bt[n], 1) * xp, 1) : d * Bt[n] * xp;
        Sp[n] = Sp[n] * dA + dBx;
        a += rb(Sp[n], rnd) * Ct[n];
    }
    return a;
}

void kern_cpu_ssm_scan_recurrent(float *y, float *state, const float *x, const float *dt,
                                 const float *A, const float *B, const float *C, const float *D,
                                 int64_t T, int64_t H, int64_t P, int64_t N, int64_t G,
                                 int round_bf16) {
    const int64_t hpg = H / G; /* heads per group */
#ifdef HAVE_ROW_AVX512
    const int vec = __builtin_cpu_supports("avx512f");
#else
    const int vec = 0;
#endif
#pragma omp parallel for schedule(static) if (H * P * N > 32768)
    for (int64_t h = 0; h < H; h++) {
        const int64_t g = h / hpg;
        float *S = state + h * P * N;
        for (int64_t t = 0; t < T; t++) {
            const float d = dt[t * H + h];
            const float dA = expf(d * A[h]);
            const float *Bt = B + (t * G + g) * N, *Ct = C + (t * G + g) * N;
            const float *xt = x + (t * H + h) * P;
            float *yt = y + (t * H + h) * P;
            for (int64_t p = 0; p < P; p++) {
                float acc;
#ifdef HAVE_ROW_AVX512
                if (vec) acc = row_avx512(S + p * N, Bt, Ct, d, dA, xt[p], N, round_bf16);
                else
#endif
                    acc = row_scalar(S + p * N, Bt, Ct, d, dA, xt[p], N, round_bf16);
                if (round_bf16)
                    yt[p] = rb(rb(acc, 1) + rb(xt[p] * D[h], 1), 1);
                else
                    yt[p] = acc + D[h] * xt[p];
            }
        }
    }
    (void)vec;
}

/* One head's chunk [t0, t0 + Q): lam is its cumsum, cb[i * Q + j] = C_t0+i . B_t0+j (shared by
 * the heads of a group). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
/* the inner loops are plain C; one clone per vector width, picked at load time */
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void ssd_head_chunk(float *y, float *S, const float *x, const float *dt, const float *A, const float *C,
                           const float *B, const float *D, const float *cb, int64_t t0, int64_t Q, int64_t h, int64_t g,
                           int64_t H, int64_t P, int64_t N, int64_t G) {
    float lam[SSD_MAX_CHUNK];
    float run = 0.0f;
    if (Q <= 0) return;
    for (int64_t i = 0; i < Q; i++) { /* inclusive cumsum of a_s = dt_s * A within the chunk */
        run += dt[(t0 + i) * H + h] * A[h];
        lam[i] = run;
    }
    for (int64_t i = 0; i < Q; i++) {
        const int64_t t = t0 + i;
        const float *Ct = C + (t * G + g) * N;
        float *yt = y + (t * H + h) * P;
        const float *xt = x + (t * H + h) * P;
        /* Y_off: exp(lam_i) * (S_in . C_t) */
        const float eo = expf(lam[i]);
        for (int64_t p = 0; p < P; p++) {
            float acc = 0.0f;
            for (int64_t n = 0; n < N; n++) acc += S[p * N + n] * Ct[n];
            yt[p] = eo * acc + D[h] * xt[p];
        }
        /* Y_diag: sum_{s<=i} (C_t . B_s) exp(lam_i - lam_s) dt_s x_s */
        for (int64_t j = 0; j <= i; j++) {
            const int64_t s = t0 + j;
            const float w = cb[i * Q + j] * expf(lam[i] - lam[j]) * dt[s * H + h];
            const float *xs = x + (s * H + h) * P;
            for (int64_t p = 0; p < P; p++) yt[p] += w * xs[p];
        }
    }
    /* state pass: S = exp(lam_last) S + sum_s exp(lam_last - lam_s) dt_s x_s (outer) B_s */
    const float el = expf(lam[Q - 1]);
    for (int64_t k = 0; k < P * N; k++) S[k] *= el;
    for (int64_t j = 0; j < Q; j++) {
        const int64_t s = t0 + j;
        const float w = expf(lam[Q - 1] - lam[j]) * dt[s * H + h];
        const float *Bs = B + (s * G + g) * N;
        const float *xs = x + (s * H + h) * P;
        for (int64_t p = 0; p < P; p++) {
            const float wx = w * xs[p];
            for (int64_t n = 0; n < N; n++) S[p * N + n] += wx * Bs[n];
        }
    }
}

void kern_cpu_ssm_scan_chunked(float *y, float *state, const float *x, const float *dt,
                               const float *A, const float *B, const float *C, const float *D,
                               int64_t T, int64_t H, int64_t P, int64_t N, int64_t G,
                               int64_t chunk) {
    const int64_t hpg = H / G;
    /* The chunk length only changes f32 rounding, never the result; capping it keeps the
     * per-chunk cumsum on the stack. */
    if (chunk <= 0 || chunk > SSD_MAX_CHUNK) chunk = SSD_MAX_CHUNK;
    /* C_t . B_s depends on the group only: computed once per chunk for the group's heads (the
     * same float operations as per head, so results are unchanged). Shared by the threads. */
    float cb_small[64 * 64];
    float *cb = nvl_malloc((size_t)chunk * (size_t)chunk * sizeof(float));
    if (!cb) { /* short of memory: shorter chunks (only rounding changes) */
        cb = cb_small;
        if (chunk > 64) chunk = 64;
    }
    for (int64_t g = 0; g < G; g++)
        for (int64_t t0 = 0; t0 < T; t0 += chunk) {
            const int64_t Q = (T - t0) < chunk ? (T - t0) : chunk;
#pragma omp parallel for schedule(static) if (Q * Q * N > 65536)
            for (int64_t i = 0; i < Q; i++) {
                const float *Ct = C + ((t0 + i) * G + g) * N;
                for (int64_t j = 0; j <= i; j++) {
                    const float *Bs = B + ((t0 + j) * G + g) * N;
                    float v = 0.0f;
                    for (int64_t n = 0; n < N; n++) v += Ct[n] * Bs[n];
                    cb[i * Q + j] = v;
                }
            }
#pragma omp parallel for schedule(static) if (hpg * Q > 64)
            for (int64_t hh = 0; hh < hpg; hh++) {
                const int64_t h = g * hpg + hh;
                ssd_head_chunk(y, state + h * P * N, x, dt, A, C, B, D, cb, t0, Q, h, g, H, P, N, G);
            }
        }
    if (cb != cb_small) nvl_free(cb);
}

void kern_cpu_conv1d_causal_silu(float *out, float *state, const float *in, const float *w,
                                 const float *bias, int64_t T, int64_t Cc, int64_t K,
                                 int round_bf16) {
#pragma omp parallel for schedule(static) if (T * Cc > 65536)
    for (int64_t c = 0; c < Cc; c++) {
        float *st = state + c * K; /* st[0] oldest ... st[K-1] newest */
        const float *wc = w + c * K;
        for (int64_t t = 0; t < T; t++) {
            for (int64_t k = 0; k + 1 < K; k++) st[k] = st[k + 1];
            st[K - 1] = in[t * Cc + c];
            float u = bias ? bias[c] : 0.0f;
            for (int64_t k = 0; k < K; k++) u += wc[k] * st[k];
            u = rb(u, round_bf16);
            float s = u / (1.0f + expf(-u));
            out[t * Cc + c] = rb(s, round_bf16);
        }
    }
}
