/* Many-row matmul: y[M,N] = x[M,K] @ w[N,K]^T for M >= 32 rows (prefill chunks, ViT tiles,
 * attention blocks), on AVX-512 (below) or AVX2 + FMA (16 x 6 tiles, further down).
 *
 * A block of 32 weight rows x KC columns is widened to f32 and packed k-major (one 64-byte line
 * per k) once, then swept by every row of x: a 12 x 32 register tile (24 accumulators) takes one
 * broadcast of x[m][k] and two packed weight vectors per k, so the loop is bound by FMAs, not
 * loads, and no horizontal sums are needed. Threads split the weight-row blocks. Each output
 * is accumulated over k in order in f32 (a different order from the one-row dot product path,
 * so results agree to rounding, not bit for bit). */
#include <stdint.h>
#include <string.h>

#include "../base/alloc.h"
#include "cpu_ops.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define NR 32  /* weight rows per block (two zmm) */
#define MR 12  /* x rows per register tile */
#define KC 256 /* k per packed panel: 256 x 32 floats = 32 KB */

/* In-register transpose: r[i] becomes column i of the 16 x 16 block (rows in order). */
__attribute__((target("avx512f"))) static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 2; i++)
        for (int c = 0; c < 4; c++) {
            t[8 * i + c] = _mm512_shuffle_f32x4(r[8 * i + c], r[8 * i + 4 + c], 0x88);
            t[8 * i + 4 + c] = _mm512_shuffle_f32x4(r[8 * i + c], r[8 * i + 4 + c], 0xDD);
        }
    for (int c = 0; c < 8; c++) {
        r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xDD);
    }
}

__attribute__((target("avx512f"))) static inline __m512 widen16(const unsigned char *row, nvl_dtype dt, int64_t k) {
    if (dt == NVL_DTYPE_F32) return _mm512_loadu_ps((const float *)row + k);
    const __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + k));
    if (dt == NVL_DTYPE_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

__attribute__((target("avx512f"))) static void pack(float *dst, const unsigned char *w, size_t wstride, nvl_dtype dt,
                                                    int64_t n_rows, int64_t k0, int64_t kc) {
    /* dst[k][j] = w[j][k0 + k], rows past n_rows zero */
    if (n_rows == NR && kc % 16 == 0) { /* whole 16 x 16 blocks through register transposes */
        for (int jb = 0; jb < NR; jb += 16)
            for (int64_t k = 0; k < kc; k += 16) {
                __m512 r[16];
                for (int j = 0; j < 16; j++) r[j] = widen16(w + (size_t)(jb + j) * wstride, dt, k0 + k);
                transpose16(r);
                for (int kk = 0; kk < 16; kk++) _mm512_store_ps(dst + (k + kk) * NR + jb, r[kk]);
            }
        return;
    }
    for (int64_t j = 0; j < NR; j++) {
        if (j >= n_rows) {
            for (int64_t k = 0; k < kc; k++) dst[k * NR + j] = 0.0f;
            continue;
        }
        const unsigned char *row = w + (size_t)j * wstride;
        if (dt == NVL_DTYPE_F32) {
            const float *r = (const float *)row + k0;
            for (int64_t k = 0; k < kc; k++) dst[k * NR + j] = r[k];
        } else if (dt == NVL_DTYPE_BF16) {
            const uint16_t *r = (const uint16_t *)row + k0;
            for (int64_t k = 0; k < kc; k++) dst[k * NR + j] = nvl_bf16_to_f32(r[k]);
        } else {
            const uint16_t *r = (const uint16_t *)row + k0;
            for (int64_t k = 0; k < kc; k++) dst[k * NR + j] = nvl_f16_to_f32(r[k]);
        }
    }
}

/* y rows [m, m + mr) x columns [0, nc) of this block; first: start from zero, else accumulate. */
__attribute__((target("avx512f"))) static void tile(float *y, int64_t ldy, const float *x, int64_t ldx, const float *wp,
                                                    int64_t kc, int mr, int64_t nc, int first) {
    const __mmask16 m0 = nc >= 16 ? 0xFFFF : (__mmask16)((1u << nc) - 1);
    const __mmask16 m1 = nc >= 32 ? 0xFFFF : nc <= 16 ? 0 : (__mmask16)((1u << (nc - 16)) - 1);
    if (mr == MR) {
        __m512 c[MR][2];
        for (int r = 0; r < MR; r++) {
            c[r][0] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, y + r * ldy);
            c[r][1] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, y + r * ldy + 16);
        }
        for (int64_t k = 0; k < kc; k++) {
            const __m512 w0 = _mm512_load_ps(wp + k * NR), w1 = _mm512_load_ps(wp + k * NR + 16);
#define ROW(r)                                                    \
    do {                                                          \
        const __m512 xb = _mm512_set1_ps(x[(r) * ldx + k]);       \
        c[r][0] = _mm512_fmadd_ps(xb, w0, c[r][0]);               \
        c[r][1] = _mm512_fmadd_ps(xb, w1, c[r][1]);               \
    } while (0)
            ROW(0); ROW(1); ROW(2); ROW(3); ROW(4); ROW(5);
            ROW(6); ROW(7); ROW(8); ROW(9); ROW(10); ROW(11);
#undef ROW
        }
        for (int r = 0; r < MR; r++) {
            _mm512_mask_storeu_ps(y + r * ldy, m0, c[r][0]);
            _mm512_mask_storeu_ps(y + r * ldy + 16, m1, c[r][1]);
        }
        return;
    }
    for (int r = 0; r < mr; r++) { /* the last rows, one at a time */
        __m512 c0 = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, y + r * ldy);
        __m512 c1 = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, y + r * ldy + 16);
        for (int64_t k = 0; k < kc; k++) {
            const __m512 xb = _mm512_set1_ps(x[r * ldx + k]);
            c0 = _mm512_fmadd_ps(xb, _mm512_load_ps(wp + k * NR), c0);
            c1 = _mm512_fmadd_ps(xb, _mm512_load_ps(wp + k * NR + 16), c1);
        }
        _mm512_mask_storeu_ps(y + r * ldy, m0, c0);
        _mm512_mask_storeu_ps(y + r * ldy + 16, m1, c1);
    }
}

/* AVX2 + FMA: 16 weight rows (two ymm) x 6 rows of x (12 accumulators of the 16 registers). */
#define NR2 16
#define MR2 6
__attribute__((target("avx2,fma"))) static void pack2(float *dst, const unsigned char *w, size_t wstride, nvl_dtype dt,
                                                      int64_t n_rows, int64_t k0, int64_t kc) {
    for (int64_t j = 0; j < NR2; j++) {
        const unsigned char *row = w + (size_t)j * wstride;
        for (int64_t k = 0; k < kc; k++)
            dst[k * NR2 + j] = j >= n_rows ? 0.0f
                               : dt == NVL_DTYPE_F32  ? ((const float *)row)[k0 + k]
                               : dt == NVL_DTYPE_BF16 ? nvl_bf16_to_f32(((const uint16_t *)row)[k0 + k])
                                                      : nvl_f16_to_f32(((const uint16_t *)row)[k0 + k]);
    }
}

__attribute__((target("avx2,fma"))) static void tile2(float *y, int64_t ldy, const float *x, int64_t ldx, const float *wp,
                                                      int64_t kc, int mr, int64_t nc, int first) {
    float tmp[MR2][NR2];
    __m256 c[MR2][2];
    for (int r = 0; r < MR2; r++) c[r][0] = c[r][1] = _mm256_setzero_ps();
    if (!first)
        for (int r = 0; r < mr; r++) {
            memset(tmp[r], 0, sizeof tmp[r]);
            memcpy(tmp[r], y + r * ldy, (size_t)nc * sizeof(float));
            c[r][0] = _mm256_loadu_ps(tmp[r]);
            c[r][1] = _mm256_loadu_ps(tmp[r] + 8);
        }
    if (mr == MR2) {
        for (int64_t k = 0; k < kc; k++) {
            const __m256 w0 = _mm256_load_ps(wp + k * NR2), w1 = _mm256_load_ps(wp + k * NR2 + 8);
            for (int r = 0; r < MR2; r++) {
                const __m256 xb = _mm256_broadcast_ss(x + r * ldx + k);
                c[r][0] = _mm256_fmadd_ps(xb, w0, c[r][0]);
                c[r][1] = _mm256_fmadd_ps(xb, w1, c[r][1]);
            }
        }
    } else {
        for (int r = 0; r < mr; r++)
            for (int64_t k = 0; k < kc; k++) {
                const __m256 xb = _mm256_broadcast_ss(x + r * ldx + k);
                c[r][0] = _mm256_fmadd_ps(xb, _mm256_load_ps(wp + k * NR2), c[r][0]);
                c[r][1] = _mm256_fmadd_ps(xb, _mm256_load_ps(wp + k * NR2 + 8), c[r][1]);
            }
    }
    for (int r = 0; r < mr; r++) {
        _mm256_storeu_ps(tmp[r], c[r][0]);
        _mm256_storeu_ps(tmp[r] + 8, c[r][1]);
        memcpy(y + r * ldy, tmp[r], (size_t)nc * sizeof(float));
    }
}

/* One instruction set's packing and register tile. */
typedef struct gemm_isa {
    int64_t nr, mr; /* weight rows per panel, x rows per tile */
    void (*pack)(float *dst, const unsigned char *w, size_t wstride, nvl_dtype dt, int64_t n_rows, int64_t k0, int64_t kc);
    void (*tile)(float *y, int64_t ldy, const float *x, int64_t ldx, const float *wp, int64_t kc, int mr, int64_t nc,
                 int first);
} gemm_isa;

static const gemm_isa k_avx512 = {NR, MR, pack, tile};
static const gemm_isa k_avx2 = {NR2, MR2, pack2, tile2};

/* Threads split the panels of nr weight rows; each packs a panel per KC columns and sweeps all
 * rows of x with it. 0 when a thread could not get its panel buffer (the caller falls back and
 * recomputes everything). */
static int gemm_run(const gemm_isa *g, float *y, const float *x, const nvl_tensor *w, int64_t M) {
    const int64_t N = w->shape[0], K = w->shape[1];
    const size_t rs = (size_t)K * nvl_dtype_size(w->dtype);
    const unsigned char *wb = w->data;
    const int64_t n_blocks = (N + g->nr - 1) / g->nr;
    int ok = 1;
#pragma omp parallel
    {
        float *wp = nvl_aligned_alloc(64, (size_t)(KC * g->nr) * sizeof(float));
        if (!wp) {
#pragma omp atomic write
            ok = 0;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < n_blocks; b++) {
            if (!wp) continue;
            const int64_t n0 = b * g->nr, nc = N - n0 < g->nr ? N - n0 : g->nr;
            for (int64_t k0 = 0; k0 < K; k0 += KC) {
                const int64_t kc = K - k0 < KC ? K - k0 : KC;
                g->pack(wp, wb + (size_t)n0 * rs, rs, w->dtype, nc, k0, kc);
                for (int64_t m = 0; m < M; m += g->mr)
                    g->tile(y + m * N + n0, N, x + m * K + k0, K, wp, kc, (int)(M - m < g->mr ? M - m : g->mr), nc, k0 == 0);
            }
        }
        nvl_free(wp);
    }
    return ok;
}

int kern_cpu_gemm_packed(float *y, const float *x, const nvl_tensor *w, int64_t M, int allow_avx512) {
    if (allow_avx512 && __builtin_cpu_supports("avx512f")) return gemm_run(&k_avx512, y, x, w, M);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return gemm_run(&k_avx2, y, x, w, M);
    return 0;
}

#else
int kern_cpu_gemm_packed(float *y, const float *x, const nvl_tensor *w, int64_t M, int allow_avx512) {
    (void)y, (void)x, (void)w, (void)M, (void)allow_avx512;
    return 0;
}
#endif
