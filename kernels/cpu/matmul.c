/* Matrix multiply on the CPU: y[M,N] = x[M,K] @ w[N,K]^T with f32 activations and F32/BF16/F16
 * weights used as stored (never a full f32 copy of a weight matrix).
 *
 * Fast path (dispatched at run time on what the CPU has: AVX-512F, else AVX2+FMA+F16C): threads
 * split the N weight rows into tiles of 4; a tile is streamed from memory once, widened to f32
 * in registers, and reused from cache by every row of x. Decode (M = 1) is bandwidth-bound on the weights, which this reads exactly once.
 * Activations stay f32: the AVX-512 BF16 dot instruction would round x to bf16 and change the
 * numerics the goldens pin down, so it is not used.
 * From MM_PACKED_MIN_ROWS rows of x: the packed GEMM of gemm_packed.c.
 * Portable path: blocks of MM_BLOCK_N rows widened into a per-thread f32 buffer.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../base/alloc.h"
#include "cpu_ops.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define MM_BLOCK_N 16
#define MM_PACKED_MIN_ROWS 32 /* from here the packed GEMM; below, the register tiles (bit-identical to one row) */
#define MM_ROWS 32 /* x rows per block: 32 x 5120 floats = 640 KB, about one core's L2 */ /* weight rows widened per step: 16 x K floats stay in L2 for K <= 16K */

void kern_cpu_matmul_ref(float *y, const float *x, const nvl_tensor *w, int64_t M) {
    const int64_t N = w->shape[0], K = w->shape[1];
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double acc = 0.0;
            for (int64_t k = 0; k < K; k++)
                acc += (double)x[m * K + k] * (double)nvl_tensor_get_f32(w, n * K + k);
            y[m * N + n] = (float)acc;
        }
}

static float dot_f32(const float *a, const float *b, int64_t K) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        s0 += a[k] * b[k];
        s1 += a[k + 1] * b[k + 1];
        s2 += a[k + 2] * b[k + 2];
        s3 += a[k + 3] * b[k + 3];
        s4 += a[k + 4] * b[k + 4];
        s5 += a[k + 5] * b[k + 5];
        s6 += a[k + 6] * b[k + 6];
        s7 += a[k + 7] * b[k + 7];
    }
    float s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
    for (; k < K; k++) s += a[k] * b[k];
    return s;
}

/* Portable path: widen MM_BLOCK_N weight rows to f32, dot with every x row. */
static nvl_status matmul_blocked(float *y, const float *x, const nvl_tensor *w, int64_t M, nvl_err *err) {
    if (w->n_dims != 2)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: weight must be 2-D", __func__);
    if (w->dtype != NVL_DTYPE_F32 && w->dtype != NVL_DTYPE_BF16 && w->dtype != NVL_DTYPE_F16)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: weight dtype %s is not F32, BF16 or F16",
                           __func__, nvl_dtype_name(w->dtype));
    const int64_t N = w->shape[0], K = w->shape[1];
    const size_t esz = nvl_dtype_size(w->dtype);
    const int64_t n_blocks = (N + MM_BLOCK_N - 1) / MM_BLOCK_N;
    int failed = 0;
#pragma omp parallel
    {
        float *wbuf = (w->dtype == NVL_DTYPE_F32) ? NULL : nvl_malloc((size_t)MM_BLOCK_N * (size_t)K * sizeof(float));
        if (w->dtype != NVL_DTYPE_F32 && !wbuf) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t b = 0; b < n_blocks; b++) {
            if (failed) continue;
            const int64_t n0 = b * MM_BLOCK_N;
            const int64_t nb = (N - n0) < MM_BLOCK_N ? (N - n0) : MM_BLOCK_N;
            const float *wf;
            if (w->dtype == NVL_DTYPE_F32) {
                wf = (const float *)w->data + n0 * K;
            } else {
                nvl_convert_to_f32(wbuf, (const unsigned char *)w->data + (size_t)(n0 * K) * esz,
                                   w->dtype, (size_t)(nb * K));
                wf = wbuf;
            }
            for (int64_t m = 0; m < M; m++) {
                const float *xr = x + m * K;
                float *yr = y + m * N + n0;
                for (int64_t j = 0; j < nb; j++) yr[j] = dot_f32(xr, wf + j * K, K);
            }
        }
        nvl_free(wbuf);
    }
    if (failed) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory for weight tiles", __func__);
    return NVL_OK;
}

// ---------------------------------------------------------------------------
// Vectorised tile kernels: 4 weight rows x every row of x, one x load feeding four FMAs.
// Weights are widened in registers (bf16: shift left 16; f16: vcvtph2ps); x stays f32,
// accumulation f32.

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_X86_KERNELS 1

__attribute__((target("avx512f"))) static inline __m512 load16_avx512(const void *w, nvl_dtype dt,
                                                                       int64_t k) {
    if (dt == NVL_DTYPE_F32) return _mm512_loadu_ps((const float *)w + k);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + k));
    if (dt == NVL_DTYPE_BF16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

/* Tail of one dot product past the last full vector. */
static inline float dot_tail(const void *wrow, nvl_dtype dt, const float *x, int64_t k, int64_t K) {
    float s = 0.0f;
    for (; k < K; k++) {
        float wv = dt == NVL_DTYPE_F32    ? ((const float *)wrow)[k]
                   : dt == NVL_DTYPE_BF16 ? nvl_bf16_to_f32(((const uint16_t *)wrow)[k])
                                          : nvl_f16_to_f32(((const uint16_t *)wrow)[k]);
        s += wv * x[k];
    }
    return s;
}

/* y[m*ldy + r] for r < 4 weight rows (row stride wstride bytes) and m < M rows of x: the four
 * accumulators stay in registers and every x vector is loaded once for four weight rows. */
__attribute__((target("avx512f"))) static void tile4_avx512(float *y, int64_t ldy, const float *x,
                                                             const unsigned char *w, size_t wstride,
                                                             nvl_dtype dt, int64_t K, int64_t M) {
    for (int64_t m = 0; m < M; m++) {
        const float *xm = x + m * K;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
               a3 = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 16 <= K; k += 16) {
            const __m512 xv = _mm512_loadu_ps(xm + k);
            a0 = _mm512_fmadd_ps(load16_avx512(w, dt, k), xv, a0);
            a1 = _mm512_fmadd_ps(load16_avx512(w + wstride, dt, k), xv, a1);
            a2 = _mm512_fmadd_ps(load16_avx512(w + 2 * wstride, dt, k), xv, a2);
            a3 = _mm512_fmadd_ps(load16_avx512(w + 3 * wstride, dt, k), xv, a3);
        }
        float *ym = y + m * ldy;
        ym[0] = _mm512_reduce_add_ps(a0) + dot_tail(w, dt, xm, k, K);
        ym[1] = _mm512_reduce_add_ps(a1) + dot_tail(w + wstride, dt, xm, k, K);
        ym[2] = _mm512_reduce_add_ps(a2) + dot_tail(w + 2 * wstride, dt, xm, k, K);
        ym[3] = _mm512_reduce_add_ps(a3) + dot_tail(w + 3 * wstride, dt, xm, k, K);
    }
}

/* The same for 4 rows of x at once (a 4 x 4 register tile): every widened weight vector feeds
 * four rows and every x vector four weight rows, so the loop is FMA-bound rather than
 * load-bound. Per output the summation order is exactly tile4's (16 lanes over k, then the
 * lane sum, then the tail): results are bit-identical to the one-row path. */
#define T44_ROW(r)                                                                                   \
    do {                                                                                             \
        const __m512 xv = _mm512_loadu_ps(x + (r) * K + k);                                          \
        acc[r][0] = _mm512_fmadd_ps(w0, xv, acc[r][0]);                                              \
        acc[r][1] = _mm512_fmadd_ps(w1, xv, acc[r][1]);                                              \
        acc[r][2] = _mm512_fmadd_ps(w2, xv, acc[r][2]);                                              \
        acc[r][3] = _mm512_fmadd_ps(w3, xv, acc[r][3]);                                              \
    } while (0)
__attribute__((target("avx512f"))) static void tile44_avx512(float *y, int64_t ldy, const float *x,
                                                              const unsigned char *w, size_t wstride,
                                                              nvl_dtype dt, int64_t K) {
    __m512 acc[4][4];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        const __m512 w0 = load16_avx512(w, dt, k), w1 = load16_avx512(w + wstride, dt, k),
                     w2 = load16_avx512(w + 2 * wstride, dt, k), w3 = load16_avx512(w + 3 * wstride, dt, k);
        T44_ROW(0);
        T44_ROW(1);
        T44_ROW(2);
        T44_ROW(3);
    }
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            y[r * ldy + c] = _mm512_reduce_add_ps(acc[r][c]) + dot_tail(w + (size_t)c * wstride, dt, x + r * K, k, K);
}
#undef T44_ROW

__attribute__((target("avx512f"))) static void tile1_avx512(float *y, int64_t ldy, const float *x,
                                                             const unsigned char *w, size_t wstride,
                                                             nvl_dtype dt, int64_t K, int64_t M) {
    (void)wstride;
    for (int64_t m = 0; m < M; m++) {
        const float *xm = x + m * K;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 32 <= K; k += 32) {
            a0 = _mm512_fmadd_ps(load16_avx512(w, dt, k), _mm512_loadu_ps(xm + k), a0);
            a1 = _mm512_fmadd_ps(load16_avx512(w, dt, k + 16), _mm512_loadu_ps(xm + k + 16), a1);
        }
        for (; k + 16 <= K; k += 16)
            a0 = _mm512_fmadd_ps(load16_avx512(w, dt, k), _mm512_loadu_ps(xm + k), a0);
        y[m * ldy] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) + dot_tail(w, dt, xm, k, K);
    }
}

__attribute__((target("avx2,fma,f16c"))) static inline __m256 load8_avx2(const void *w, nvl_dtype dt,
                                                                         int64_t k) {
    if (dt == NVL_DTYPE_F32) return _mm256_loadu_ps((const float *)w + k);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + k));
    if (dt == NVL_DTYPE_BF16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

__attribute__((target("avx2,fma,f16c"))) static inline float hsum_avx2(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_hadd_ps(lo, lo);
    lo = _mm_hadd_ps(lo, lo);
    return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma,f16c"))) static void tile4_avx2(float *y, int64_t ldy, const float *x,
                                                                const unsigned char *w, size_t wstride,
                                                                nvl_dtype dt, int64_t K, int64_t M) {
    for (int64_t m = 0; m < M; m++) {
        const float *xm = x + m * K;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
               a3 = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k + 8 <= K; k += 8) {
            const __m256 xv = _mm256_loadu_ps(xm + k);
            a0 = _mm256_fmadd_ps(load8_avx2(w, dt, k), xv, a0);
            a1 = _mm256_fmadd_ps(load8_avx2(w + wstride, dt, k), xv, a1);
            a2 = _mm256_fmadd_ps(load8_avx2(w + 2 * wstride, dt, k), xv, a2);
            a3 = _mm256_fmadd_ps(load8_avx2(w + 3 * wstride, dt, k), xv, a3);
        }
        float *ym = y + m * ldy;
        ym[0] = hsum_avx2(a0) + dot_tail(w, dt, xm, k, K);
        ym[1] = hsum_avx2(a1) + dot_tail(w + wstride, dt, xm, k, K);
        ym[2] = hsum_avx2(a2) + dot_tail(w + 2 * wstride, dt, xm, k, K);
        ym[3] = hsum_avx2(a3) + dot_tail(w + 3 * wstride, dt, xm, k, K);
    }
}

/* 2 rows of x x 4 weight rows (8 accumulators + 4 weights + 1 x of the 16 ymm registers). */
__attribute__((target("avx2,fma,f16c"))) static void tile24_avx2(float *y, int64_t ldy, const float *x,
                                                                 const unsigned char *w, size_t wstride,
                                                                 nvl_dtype dt, int64_t K) {
    __m256 a00 = _mm256_setzero_ps(), a01 = _mm256_setzero_ps(), a02 = _mm256_setzero_ps(), a03 = _mm256_setzero_ps();
    __m256 a10 = _mm256_setzero_ps(), a11 = _mm256_setzero_ps(), a12 = _mm256_setzero_ps(), a13 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        const __m256 w0 = load8_avx2(w, dt, k), w1 = load8_avx2(w + wstride, dt, k), w2 = load8_avx2(w + 2 * wstride, dt, k),
                     w3 = load8_avx2(w + 3 * wstride, dt, k);
        __m256 xv = _mm256_loadu_ps(x + k);
        a00 = _mm256_fmadd_ps(w0, xv, a00);
        a01 = _mm256_fmadd_ps(w1, xv, a01);
        a02 = _mm256_fmadd_ps(w2, xv, a02);
        a03 = _mm256_fmadd_ps(w3, xv, a03);
        xv = _mm256_loadu_ps(x + K + k);
        a10 = _mm256_fmadd_ps(w0, xv, a10);
        a11 = _mm256_fmadd_ps(w1, xv, a11);
        a12 = _mm256_fmadd_ps(w2, xv, a12);
        a13 = _mm256_fmadd_ps(w3, xv, a13);
    }
    const __m256 a[2][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}};
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 4; c++)
            y[r * ldy + c] = hsum_avx2(a[r][c]) + dot_tail(w + (size_t)c * wstride, dt, x + r * K, k, K);
}

__attribute__((target("avx2,fma,f16c"))) static void tile1_avx2(float *y, int64_t ldy, const float *x,
                                                                const unsigned char *w, size_t wstride,
                                                                nvl_dtype dt, int64_t K, int64_t M) {
    (void)wstride;
    for (int64_t m = 0; m < M; m++) {
        const float *xm = x + m * K;
        __m256 a0 = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k + 8 <= K; k += 8) a0 = _mm256_fmadd_ps(load8_avx2(w, dt, k), _mm256_loadu_ps(xm + k), a0);
        y[m * ldy] = hsum_avx2(a0) + dot_tail(w, dt, xm, k, K);
    }
}
#endif

typedef void (*tile_fn)(float *y, int64_t ldy, const float *x, const unsigned char *w,
                        size_t wstride, nvl_dtype dt, int64_t K, int64_t M);
typedef void (*tile_multi_fn)(float *y, int64_t ldy, const float *x, const unsigned char *w,
                              size_t wstride, nvl_dtype dt, int64_t K);
typedef struct tile_kernels {
    tile_fn t4, t1;
    tile_multi_fn tm; /* tm_rows rows of x x 4 weight rows */
    int tm_rows;
    const char *name;
} tile_kernels;

/* Picks the widest kernel the CPU has (NVL_CPU_KERNEL=scalar|avx2|avx512 overrides, for tests
 * and benchmarks); t4 == NULL means the portable blocked path. */
static tile_kernels pick_kernels(void) {
    tile_kernels k = {NULL, NULL, NULL, 0, "scalar"};
#ifdef HAVE_X86_KERNELS
    const char *force = getenv("NVL_CPU_KERNEL");
    if (force && !strcmp(force, "scalar")) return k;
    if ((!force || !*force || !strcmp(force, "avx512") || !strcmp(force, "avx512bf16") || !strcmp(force, "dnnl")) &&
        __builtin_cpu_supports("avx512f")) {
        k.t4 = tile4_avx512;
        k.t1 = tile1_avx512;
        k.tm = tile44_avx512;
        k.tm_rows = 4;
        k.name = "avx512f";
        return k;
    }
#if defined(__clang__) && __clang_major__ < 15
    /* clang 14 does not know "f16c" here; every CPU with AVX2 and FMA has F16C */
    const int f16c = 1;
#else
    const int f16c = __builtin_cpu_supports("f16c");
#endif
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c) {
        k.t4 = tile4_avx2;
        k.t1 = tile1_avx2;
        k.tm = tile24_avx2;
        k.tm_rows = 2;
        k.name = "avx2+fma";
    }
#endif
    return k;
}

static tile_kernels g_kernels;
static int g_kernels_picked = 0;
static tile_kernels kernels(void) {
    if (!g_kernels_picked) { /* benign race: every thread computes the same answer */
        g_kernels = pick_kernels();
        g_kernels_picked = 1;
    }
    return g_kernels;
}

const char *kern_cpu_matmul_kernel(void) { return kernels().name; }

int64_t kern_cpu_matmul_invariant_rows(void) {
    const tile_kernels kk = kernels();
    return kk.t4 && kk.tm ? MM_PACKED_MIN_ROWS - 1 : INT64_MAX; /* (no tm: the tiles, or the blocked loop, for every M) */
}

nvl_status kern_cpu_matmul(float *y, const float *x, const nvl_tensor *w, int64_t M, nvl_err *err) {
    if (w->n_dims != 2)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: weight must be 2-D", __func__);
    if (w->dtype != NVL_DTYPE_F32 && w->dtype != NVL_DTYPE_BF16 && w->dtype != NVL_DTYPE_F16)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: weight dtype %s is not F32, BF16 or F16",
                           __func__, nvl_dtype_name(w->dtype));
    const tile_kernels kk = kernels();
    /* many rows: the packed GEMM (AVX-512), unless a narrower kernel was asked for */
    if (M >= MM_PACKED_MIN_ROWS && kk.tm && kern_cpu_gemm_packed(y, x, w, M, kk.tm_rows == 4)) return NVL_OK;
    if (kk.t4) {
        const int64_t N = w->shape[0], K = w->shape[1];
        const size_t rs = (size_t)K * nvl_dtype_size(w->dtype); /* bytes per weight row */
        const unsigned char *wb = w->data;
        const int64_t n_tiles = (N + 3) / 4;
        /* rows of x in blocks that stay in L2 (MM_ROWS x K floats); inside a block, threads split
         * the weight rows in tiles of 4, each streamed once per block. Decode (M = 1) reads the
         * weights exactly once. */
        for (int64_t m0 = 0; m0 < M; m0 += MM_ROWS) {
            const int64_t mb = (M - m0) < MM_ROWS ? (M - m0) : MM_ROWS;
#pragma omp parallel for schedule(static) if (N * K > 32768)
            for (int64_t t = 0; t < n_tiles; t++) {
                const int64_t n = t * 4;
                if (n + 4 <= N) {
                    int64_t m = 0;
                    if (kk.tm)
                        for (; m + kk.tm_rows <= mb; m += kk.tm_rows)
                            kk.tm(y + (m0 + m) * N + n, N, x + (m0 + m) * K, wb + (size_t)n * rs, rs, w->dtype, K);
                    if (m < mb) kk.t4(y + (m0 + m) * N + n, N, x + (m0 + m) * K, wb + (size_t)n * rs, rs, w->dtype, K, mb - m);
                }
                else
                    for (int64_t r = n; r < N; r++)
                        kk.t1(y + m0 * N + r, N, x + m0 * K, wb + (size_t)r * rs, rs, w->dtype, K, mb);
            }
        }
        return NVL_OK;
    }
    return matmul_blocked(y, x, w, M, err);
}
