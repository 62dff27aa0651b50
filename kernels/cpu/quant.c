/* FP8 (W8A8, static per-tensor activation scale) and NVFP4 (W4A4, dynamic 16-element activation
 * blocks under a static global scale) matmuls on the CPU, reproducing ModelOpt's fake-quant
 * forward (quant-formats.md §1, §2, §5):
 *   FP8:   x_q = e4m3_sat(x / input_scale) * input_scale;   W = float(w8) * weight_scale
 *   NVFP4: per 16-block of a row of x: gs = input_scale,
 *          s = e4m3(min(amax16 / (6 gs), 448)) * gs  (1 when s < 1e-5),
 *          x_q = sign(x) e2m1(|x| / s) s;
 *          W[o, k] = e2m1(code[o, k]) * float(block_scale[o, k/16]) * weight_scale_2
 *          (codes two per byte, the even k in the low nibble)
 *   y = x_q @ W^T in f32 (the dequantized weight values are exactly torch's; only the order of
 *   the f32 sums differs from torch's GEMM).
 * The weights stay as stored: each thread widens one weight row at a time into an f32 row
 * (L1/L2-resident) and dots it with every quantized x row of the block, so a decode step reads
 * 1 byte per FP8 weight and 0.5 + 1/16 per NVFP4 weight from memory. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../base/alloc.h"
#include "../ops.h"
#include "cpu_ops.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define QUANT_X86 1
#endif

#define QUANT_ROWS 32 /* x rows per block: a weight row is widened once per block */

static const float k_e2m1[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                 -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

/* E4M3 code -> f32 through a table (block scales are read once per 16 weights) */
static float g_e4m3[256];
static int g_e4m3_ready;
static void e4m3_table_init(void) {
    if (g_e4m3_ready) return; /* benign race: every thread writes the same values */
    for (int c = 0; c < 256; c++) g_e4m3[c] = nvl_f8e4m3_to_f32((uint8_t)c);
    g_e4m3_ready = 1;
}

// ---------------------------------------------------------------------------
// Activation quantize-dequantize (once per row of x)

void kern_cpu_quant_fp8_act(float *xq, const float *x, int64_t n, float input_scale) {
    e4m3_table_init();
    for (int64_t i = 0; i < n; i++) xq[i] = g_e4m3[nvl_f32_to_e4m3_sat(x[i] / input_scale)] * input_scale;
}

void kern_cpu_quant_nvfp4_act(float *xq, const float *x, int64_t n, float input_scale) {
    const float six_gs = 6.0f * input_scale;
    e4m3_table_init();
    for (int64_t b = 0; b + 16 <= n; b += 16) {
        float amax = 0.0f;
        for (int i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(x[b + i]));
        float r = amax / six_gs;
        if (r > 448.0f) r = 448.0f;
        float s = g_e4m3[nvl_f32_to_e4m3_sat(r)] * input_scale;
        if (s < 1e-5f) s = 1.0f;
        for (int i = 0; i < 16; i++) xq[b + i] = nvl_e2m1_quantize(x[b + i] / s) * s;
    }
}

// ---------------------------------------------------------------------------
// Weight rows widened to f32

static void fp8_row_scalar(float *dst, const uint8_t *src, int64_t K, float scale) {
    for (int64_t k = 0; k < K; k++) dst[k] = g_e4m3[src[k]] * scale;
}

static void nvfp4_row_scalar(float *dst, const uint8_t *codes, const uint8_t *bscale, int64_t K, float scale2) {
    for (int64_t b = 0; b < K / 16; b++) {
        const float bs = g_e4m3[bscale[b]];
        for (int i = 0; i < 8; i++) {
            const uint8_t c = codes[b * 8 + i];
            dst[b * 16 + 2 * i] = k_e2m1[c & 15] * bs * scale2;
            dst[b * 16 + 2 * i + 1] = k_e2m1[c >> 4] * bs * scale2;
        }
    }
}

static float dot_scalar(const float *a, const float *b, int64_t K) {
    float s[8] = {0};
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
        for (int j = 0; j < 8; j++) s[j] += a[k + j] * b[k + j];
    float t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; k < K; k++) t += a[k] * b[k];
    return t;
}

#ifdef QUANT_X86
/* 16 E4M3 codes as f32 times 2^-8: the bits placed into an f16's lower exponent bits give
 * value * 2^-8 for every code, normal or subnormal (bias 15 - 7 = 8), so the f16 conversion is
 * exact; callers put 2^8 into their scale. */
__attribute__((target("avx512f,avx2,f16c"))) static inline __m512 fp8_16(const uint8_t *src) {
    const __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)src));
    return _mm512_cvtph_ps(_mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x80)), 8),
                                           _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x7f)), 7)));
}

/* 16 E2M1 values from 8 bytes, the even k in the low nibble. */
__attribute__((target("avx512f"))) static inline __m512 nvfp4_16(const uint8_t *codes, __m512 table) {
    const __m128i raw = _mm_loadl_epi64((const __m128i *)codes), lo_mask = _mm_set1_epi8(0x0f);
    const __m128i lo = _mm_and_si128(raw, lo_mask), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), lo_mask);
    return _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi)), table);
}

__attribute__((target("avx512f,avx2,f16c"))) static void fp8_row_avx512(float *dst, const uint8_t *src, int64_t K,
                                                                         float scale) {
    const __m512 vs = _mm512_set1_ps(scale * 256.0f);
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) _mm512_storeu_ps(dst + k, _mm512_mul_ps(fp8_16(src + k), vs));
    for (; k < K; k++) dst[k] = g_e4m3[src[k]] * scale;
}

__attribute__((target("avx512f"))) static void nvfp4_row_avx512(float *dst, const uint8_t *codes, const uint8_t *bscale,
                                                                int64_t K, float scale2) {
    const __m512 table = _mm512_loadu_ps(k_e2m1), v2 = _mm512_set1_ps(scale2);
    for (int64_t b = 0; b < K / 16; b++) /* (e2m1 * block scale) * scale2, in torch's order */
        _mm512_storeu_ps(dst + b * 16,
                         _mm512_mul_ps(_mm512_mul_ps(nvfp4_16(codes + b * 8, table), _mm512_set1_ps(g_e4m3[bscale[b]])), v2));
}

/* Few rows of x (decode, small steps): the codes are decoded in registers and used at once, no
 * f32 row is stored. The per-tensor scale (FP8 weight_scale, NVFP4 weight_scale_2) multiplies
 * the finished sum instead of every weight: one rounding moved, as a change of summation order. */
#define QUANT_FUSED_ROWS 4
__attribute__((target("avx512f,avx2,f16c"))) static void fp8_rows_fused(float *y, int64_t ldy, const float *xq, int64_t M,
                                                                         const uint8_t *src, int64_t K, float scale) {
    __m512 acc[QUANT_FUSED_ROWS];
    for (int64_t m = 0; m < M; m++) acc[m] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        const __m512 w = fp8_16(src + k);
        for (int64_t m = 0; m < M; m++) acc[m] = _mm512_fmadd_ps(_mm512_loadu_ps(xq + m * K + k), w, acc[m]);
    }
    for (int64_t m = 0; m < M; m++) {
        float t = _mm512_reduce_add_ps(acc[m]) * 256.0f;
        for (int64_t kk = k; kk < K; kk++) t += xq[m * K + kk] * g_e4m3[src[kk]];
        y[m * ldy] = t * scale;
    }
}

__attribute__((target("avx512f"))) static void nvfp4_rows_fused(float *y, int64_t ldy, const float *xq, int64_t M,
                                                                const uint8_t *codes, const uint8_t *bscale, int64_t K,
                                                                float scale2) {
    __m512 acc[QUANT_FUSED_ROWS];
    for (int64_t m = 0; m < M; m++) acc[m] = _mm512_setzero_ps();
    const __m512 table = _mm512_loadu_ps(k_e2m1);
    for (int64_t b = 0; b < K / 16; b++) {
        /* e2m1 * block scale is exact in f32 (2 and 4 significant bits) */
        const __m512 w = _mm512_mul_ps(nvfp4_16(codes + b * 8, table), _mm512_set1_ps(g_e4m3[bscale[b]]));
        for (int64_t m = 0; m < M; m++) acc[m] = _mm512_fmadd_ps(_mm512_loadu_ps(xq + m * K + b * 16), w, acc[m]);
    }
    for (int64_t m = 0; m < M; m++) y[m * ldy] = _mm512_reduce_add_ps(acc[m]) * scale2;
}

__attribute__((target("avx512f"))) static float dot_avx512(const float *a, const float *b, int64_t K) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(b + k), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k + 16), _mm512_loadu_ps(b + k + 16), s1);
    }
    for (; k + 16 <= K; k += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(b + k), s0);
    float t = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; k < K; k++) t += a[k] * b[k];
    return t;
}
#endif

static int use_avx512(void) {
#ifdef QUANT_X86
    static int v = -1;
    if (v < 0) {
        const char *force = getenv("NVL_CPU_KERNEL");
#if defined(__clang__) && __clang_major__ < 15
        const int f16c = 1; /* clang 14 does not know "f16c" here; every CPU with AVX-512F has F16C */
#else
        const int f16c = __builtin_cpu_supports("f16c");
#endif
        v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && f16c &&
            !(force && (!strcmp(force, "scalar") || !strcmp(force, "avx2")));
    }
    return v;
#else
    return 0;
#endif
}

int64_t kern_cpu_quant_invariant_rows(void) {
    return use_avx512() ? QUANT_FUSED_ROWS : INT64_MAX; /* (without: the widened row and a scalar dot for every M) */
}

// ---------------------------------------------------------------------------

nvl_status kern_cpu_matmul_quant(float *y, const float *x, const struct kern_weight *w, int64_t M, nvl_err *err) {
    const int64_t N = w->n_out, K = w->n_in;
    const int fp8 = w->quant == KERN_QUANT_FP8;
    if (!fp8 && w->quant != KERN_QUANT_NVFP4)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: weight '%s' is not quantized", __func__, w->name ? w->name : "?");
    if (!fp8 && K % 16)
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s: NVFP4 weight '%s' has %lld inputs, not a multiple of 16", __func__,
                           w->name ? w->name : "?", (long long)K);
    e4m3_table_init();
    float *xq = nvl_aligned_alloc(64, (size_t)(M * K) * sizeof(float) + 64);
    if (!xq) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory for %lld x %lld activations", __func__,
                                (long long)M, (long long)K);
    for (int64_t m = 0; m < M; m++) {
        if (fp8) kern_cpu_quant_fp8_act(xq + m * K, x + m * K, K, w->input_scale);
        else kern_cpu_quant_nvfp4_act(xq + m * K, x + m * K, K, w->input_scale);
    }
    const int avx = use_avx512();
    const uint8_t *wb = w->w.data;
    const uint8_t *bs = w->block_scale.data;
    const size_t row_bytes = fp8 ? (size_t)K : (size_t)K / 2;
    int oom = 0;
#pragma omp parallel
    {
        float *wrow = nvl_aligned_alloc(64, (size_t)K * sizeof(float) + 64);
        if (!wrow) {
#pragma omp atomic write
            oom = 1;
        }
        for (int64_t m0 = 0; m0 < M; m0 += QUANT_ROWS) {
            const int64_t mb = M - m0 < QUANT_ROWS ? M - m0 : QUANT_ROWS;
#pragma omp for schedule(static)
            for (int64_t n = 0; n < N; n++) {
                if (!wrow) continue;
                const uint8_t *src = wb + (size_t)n * row_bytes;
#ifdef QUANT_X86
                if (avx && mb <= QUANT_FUSED_ROWS) {
                    if (fp8) fp8_rows_fused(y + m0 * N + n, N, xq + m0 * K, mb, src, K, w->weight_scale);
                    else nvfp4_rows_fused(y + m0 * N + n, N, xq + m0 * K, mb, src, bs + (size_t)n * (size_t)(K / 16), K,
                                          w->weight_scale);
                    continue;
                }
                if (avx) {
                    if (fp8) fp8_row_avx512(wrow, src, K, w->weight_scale);
                    else nvfp4_row_avx512(wrow, src, bs + (size_t)n * (size_t)(K / 16), K, w->weight_scale);
                    for (int64_t m = 0; m < mb; m++) y[(m0 + m) * N + n] = dot_avx512(xq + (m0 + m) * K, wrow, K);
                    continue;
                }
#endif
                if (fp8) fp8_row_scalar(wrow, src, K, w->weight_scale);
                else nvfp4_row_scalar(wrow, src, bs + (size_t)n * (size_t)(K / 16), K, w->weight_scale);
                for (int64_t m = 0; m < mb; m++) y[(m0 + m) * N + n] = dot_scalar(xq + (m0 + m) * K, wrow, K);
            }
        }
        nvl_free(wrow);
    }
    (void)avx;
    nvl_free(xq);
    if (oom) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory for a weight row of %lld", __func__, (long long)K);
    return NVL_OK;
}
