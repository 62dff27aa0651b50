/* y[M,N] = x[M,K] @ w[N,K]^T for BF16 weights and BF16 activations on CPUs with AVX512-BF16:
 * x is exactly bf16 (an activation of a BF16 checkpoint, held widened to f32), so packing it to
 * bf16 loses nothing, and vdpbf16ps multiplies bf16 pairs exactly and accumulates in f32 (FTZ/DAZ,
 * round to nearest) -- the semantics of transformers' bf16 Linear with f32 accumulation, at twice
 * the multiply rate of the f32 path and without widening the weights.
 *
 * Batch invariance: every y[m, n] is made by the same instruction sequence (32 k per step in
 * order, the tail by a masked step, one final lane sum), whatever M is and wherever (m, n) falls
 * in a tile, so a sequence decodes to the same bits alone or among others, at any row count.
 *
 * Register tile: 6 weight rows x 4 rows of x (24 accumulators); threads split the weight rows; a
 * tile's weight rows (4 x K bf16) stay in L2 while every row block of x passes. */
#include <stdlib.h>
#include <string.h>

#include "../base/alloc.h"
#include "cpu_ops.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#include <immintrin.h>
#define HAVE_BF16DP 1

#define TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define TILE_C 6 /* weight rows per register tile */

/* R rows of x (row stride Kp bf16) x C weight rows (stride wst bytes), K columns. */
TARGET static void tile_bf16(float *y, int64_t ldy, const uint16_t *x, int64_t Kp, const unsigned char *w, size_t wst,
                             int64_t K, int R, int C) {
    __m512 acc[4][TILE_C];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < TILE_C; c++) acc[r][c] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        __m512bh wv[TILE_C], xv;
        for (int c = 0; c < C; c++) wv[c] = (__m512bh)_mm512_loadu_si512((const void *)(w + (size_t)c * wst + (size_t)k * 2));
        for (int r = 0; r < R; r++) {
            xv = (__m512bh)_mm512_loadu_si512((const void *)(x + r * Kp + k));
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xv, wv[c]);
        }
    }
    if (k < K) { /* the tail: masked loads give zeros past K */
        const __mmask32 mk = (__mmask32)((1ull << (K - k)) - 1);
        __m512bh wv[TILE_C], xv;
        for (int c = 0; c < C; c++)
            wv[c] = (__m512bh)_mm512_maskz_loadu_epi16(mk, (const void *)(w + (size_t)c * wst + (size_t)k * 2));
        for (int r = 0; r < R; r++) {
            xv = (__m512bh)_mm512_maskz_loadu_epi16(mk, (const void *)(x + r * Kp + k));
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xv, wv[c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) y[r * ldy + c] = _mm512_reduce_add_ps(acc[r][c]);
}

/* The full 4 x TILE_C tile with constant bounds, so the compiler keeps everything in registers
 * (24 accumulators, 6 weight vectors, 1 x vector of the 32); the same instruction sequence per
 * output as tile_bf16. */
TARGET static void tile4c_bf16(float *y, int64_t ldy, const uint16_t *x, int64_t Kp, const unsigned char *w, size_t wst,
                               int64_t K) {
    tile_bf16(y, ldy, x, Kp, w, wst, K, 4, TILE_C);
}
#endif

/* The CPU has AVX512-BF16 dot products (and the build can use them). */
static int bf16dp_hw(void) {
#ifdef HAVE_BF16DP
    static int v = -1;
    if (v < 0) v = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
    return v;
#else
    return 0;
#endif
}

/* NVL_CPU_KERNEL as it concerns BF16 matmuls, read once (kern_env_check has validated it before
 * any op runs): 0 unset, 1 dnnl, 2 avx512bf16, 3 a kernel without BF16 dot products. */
static int forced(void) {
    static int v = -1;
    if (v < 0) { /* benign race: every thread computes the same answer */
        const char *f = getenv("NVL_CPU_KERNEL");
        v = !f || !*f ? 0 : !strcmp(f, "dnnl") ? 1 : !strcmp(f, "avx512bf16") ? 2 : 3;
    }
    return v;
}

int kern_cpu_has_bf16dp(void) { return bf16dp_hw() && forced() != 3; }

int kern_cpu_matmul_bf16(float *y, const float *x, const nvl_tensor *w, int64_t M) {
    return w->n_dims == 2 ? kern_cpu_matmul_bf16_ld(y, x, w->shape[1], w, M) : 0;
}

/* The path a BF16 x bf16 matmul of M rows takes (see cpu_ops.h). */
static kern_bf16_path bf16_path(int64_t M) {
    switch (forced()) {
    case 1: return kern_cpu_has_dnnl() ? KERN_BF16_DNNL : KERN_BF16_NONE;
    case 2: return bf16dp_hw() ? KERN_BF16_OWN : KERN_BF16_NONE;
    case 3: return KERN_BF16_NONE; /* a kernel without BF16 dot products was asked for */
    default: break;
    }
    if (M >= KERN_DNNL_MIN_ROWS && kern_cpu_has_dnnl()) return KERN_BF16_DNNL;
    return bf16dp_hw() ? KERN_BF16_OWN : KERN_BF16_NONE;
}

kern_bf16_path kern_cpu_bf16_path(int64_t M) { return bf16_path(M); }

int kern_cpu_matmul_bf16_ld(float *y, const float *x, int64_t ldx, const nvl_tensor *w, int64_t M) {
    if (w->dtype != NVL_DTYPE_BF16 || w->n_dims != 2) return 0;
    switch (bf16_path(M)) {
    case KERN_BF16_DNNL:
        if (kern_cpu_matmul_dnnl(y, x, ldx, w, M)) return 1;
        /* oneDNN could not make this one (or memory ran out): the own kernel where the CPU has it */
        return bf16dp_hw() ? kern_cpu_matmul_bf16_own(y, x, ldx, w, M) : 0;
    case KERN_BF16_OWN: return kern_cpu_matmul_bf16_own(y, x, ldx, w, M);
    default: return 0;
    }
}

int kern_cpu_matmul_bf16_own(float *y, const float *x, int64_t ldx, const nvl_tensor *w, int64_t M) {
#ifdef HAVE_BF16DP
    if (!bf16dp_hw() || w->dtype != NVL_DTYPE_BF16 || w->n_dims != 2 || ldx < w->shape[1]) return 0;
    const int64_t N = w->shape[0], K = w->shape[1], Kp = (K + 31) & ~(int64_t)31;
    uint16_t *xb = nvl_aligned_alloc(64, (size_t)(M * Kp) * sizeof(uint16_t) + 64);
    if (!xb) return 0;
    for (int64_t m = 0; m < M; m++) { /* exact: the values are bf16 already */
        for (int64_t k = 0; k < K; k++) xb[m * Kp + k] = nvl_f32_to_bf16(x[m * ldx + k]);
        for (int64_t k = K; k < Kp; k++) xb[m * Kp + k] = 0;
    }
    const unsigned char *wb = w->data;
    const size_t wst = (size_t)K * 2;
    const int64_t n_tiles = (N + TILE_C - 1) / TILE_C;
    /* x in row panels that stay in L2 (~512 KB of bf16 rows, a multiple of 4 rows) while every
     * weight tile passes over them: without the panels a many-row x (the ViT: 4 tiles x 1,030
     * rows) was streamed from memory once per 6 weight rows. Each output's instruction sequence is
     * the same whatever the panel (tile_bf16 per output), so results do not change. */
    int64_t MP = ((int64_t)(512 * 1024) / (Kp * 2)) & ~(int64_t)3;
    if (MP < 4) MP = 4;
    for (int64_t m0 = 0; m0 < M; m0 += MP) {
        const int64_t m1 = M - m0 < MP ? M : m0 + MP;
#pragma omp parallel for schedule(static) if (N * K > 32768)
        for (int64_t t = 0; t < n_tiles; t++) {
            const int64_t n = t * TILE_C;
            const int C = N - n < TILE_C ? (int)(N - n) : TILE_C;
            for (int64_t m = m0; m < m1; m += 4) {
                const int R = m1 - m < 4 ? (int)(m1 - m) : 4;
                if (R == 4 && C == TILE_C) tile4c_bf16(y + m * N + n, N, xb + m * Kp, Kp, wb + (size_t)n * wst, wst, K);
                else tile_bf16(y + m * N + n, N, xb + m * Kp, Kp, wb + (size_t)n * wst, wst, K, R, C);
            }
        }
    }
    nvl_free(xb);
    return 1;
#else
    (void)y;
    (void)x;
    (void)ldx;
    (void)w;
    (void)M;
    return 0;
#endif
}
