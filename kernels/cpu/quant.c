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
 * Few rows (decode, QUANT_FUSED_ROWS or fewer): the weights stay as stored, their codes decoded
 * in registers and used at once, so a decode step reads 1 byte per FP8 weight and 0.5 + 1/16 per
 * NVFP4 weight from memory. With AVX512-BF16 the codes become the exact bf16 factors below and
 * meet x' in vdpbf16ps (fp8_rows_bf16, nvfp4_rows_bf16); without it (or NVL_CPU_KERNEL=avx512)
 * they are widened to f32 and meet the quantized-dequantized x in FMAs.
 *
 * More rows (prefill chunks, from QUANT_GEMM_MIN_ROWS): both factors as exact bf16 values with the
 * per-tensor scales taken out, through the BF16 GEMMs (AVX512-BF16 or oneDNN; without them the f32
 * GEMM, whose f32 products of two bf16 values are exact too), the CUDA backend's form
 * (ops_cuda.cu, 4. and 5.):
 *   FP8:   x' = e4m3 value of x / input_scale,  W' = e4m3 value of the code,
 *          y = (x' @ W'^T) * input_scale * weight_scale
 *   NVFP4: x' = e2m1(x / s) * e4m3(s / gs) per 16-block (s as above),  W' = e2m1 * e4m3(block),
 *          y = (x' @ W'^T) * input_scale * weight_scale_2
 * Exact: an E4M3 value has at most 4 significant bits, an E2M1 one 2, so x' and W' fit bf16's 8
 * (and its range), and each product is exact in f32. So only roundings move: the per-tensor scales
 * multiply each finished sum once instead of every factor (as the fused rows already do for the
 * weight's), a change of the same order as the order of the f32 sums. The one block this cannot
 * write: s below 1e-5 falls back to 1 (x' = e2m1(x), not a multiple of gs); when such a block holds
 * a nonzero value (|x| > 0.25 where the block's amax is below ~2.3e-6 of the calibrated amax) the
 * call takes the widened rows instead, which compute the quantizer's values literally. The weight
 * is dequantized a panel of rows at a time (QUANT_PANEL_BYTES of bf16, a multiple of 256 rows, so
 * oneDNN's weight blocks fall where they would for the whole weight). */
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
#define QUANT_FUSED_ROWS 4 /* up to here (AVX-512) the codes are decoded in registers, no row stored */
#define QUANT_GEMM_MIN_ROWS 5 /* from here the exact bf16 factors through the GEMMs (the header) */

static const float k_e2m1[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                 -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

/* E4M3 code -> f32 through a table (block scales are read once per 16 weights) */
static float g_e4m3[256];
static int g_e4m3_ready;
static void e4m3_table_init(void) {
    if (__atomic_load_n(&g_e4m3_ready, __ATOMIC_ACQUIRE)) return; /* (threads that race write the same values; the
                                                                     flag is set after the table, release/acquire) */
    for (int c = 0; c < 256; c++) g_e4m3[c] = nvl_f8e4m3_to_f32((uint8_t)c);
    __atomic_store_n(&g_e4m3_ready, 1, __ATOMIC_RELEASE);
}

// ---------------------------------------------------------------------------
// Activation quantize-dequantize (once per row of x)

void kern_cpu_quant_fp8_act(float *xq, const float *x, int64_t n, float input_scale) {
    e4m3_table_init();
    for (int64_t i = 0; i < n; i++) xq[i] = g_e4m3[nvl_f32_to_e4m3_sat(x[i] / input_scale)] * input_scale;
}

/* One 16-block of an NVFP4 activation row: q[i] = e2m1(x[i] / s) with ModelOpt's dynamic block
 * scale s = e4m3(min(amax / (6 gs), 448)) * gs, 1 when that is below 1e-5. Returns s; *e4 is the
 * E4M3 value of s / gs, 0 when s fell back to 1. */
static float nvfp4_block(float *q, const float *x, float gs, float *e4) {
    float amax = 0.0f;
    for (int i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(x[i]));
    float r = amax / (6.0f * gs);
    if (r > 448.0f) r = 448.0f;
    *e4 = g_e4m3[nvl_f32_to_e4m3_sat(r)];
    float s = *e4 * gs;
    if (s < 1e-5f) {
        s = 1.0f;
        *e4 = 0.0f;
    }
    for (int i = 0; i < 16; i++) q[i] = nvl_e2m1_quantize(x[i] / s);
    return s;
}

void kern_cpu_quant_nvfp4_act(float *xq, const float *x, int64_t n, float input_scale) {
    e4m3_table_init();
    float q[16], e4;
    for (int64_t b = 0; b + 16 <= n; b += 16) {
        const float s = nvfp4_block(q, x + b, input_scale, &e4);
        for (int i = 0; i < 16; i++) xq[b + i] = q[i] * s;
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
 * the finished sum instead of every weight: one rounding moved, as a change of summation order.
 * Each row sums into FUSED_ACC independent accumulators (16 elements each, in turn), added
 * pairwise at the end: with one, a decode step waited on the FMA's latency at every 16 weights
 * (half the read bandwidth). A row's sums are the same whatever M is (batch invariance). M is a
 * constant in each instance (the switch below), so the accumulators stay in registers. */
#define FUSED_ACC 4
_Static_assert(FUSED_ACC == 4, "the fused rows' final sums add exactly four accumulators");
__attribute__((always_inline, target("avx512f,avx2,f16c"))) static inline void
fp8_fused_m(float *y, int64_t ldy, const float *xq, const int M, const uint8_t *src, int64_t K, float scale) {
    __m512 acc[QUANT_FUSED_ROWS][FUSED_ACC];
    for (int m = 0; m < M; m++)
        for (int j = 0; j < FUSED_ACC; j++) acc[m][j] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 * FUSED_ACC <= K; k += 16 * FUSED_ACC)
        for (int j = 0; j < FUSED_ACC; j++) {
            const __m512 w = fp8_16(src + k + 16 * j);
            for (int m = 0; m < M; m++)
                acc[m][j] = _mm512_fmadd_ps(_mm512_loadu_ps(xq + m * K + k + 16 * j), w, acc[m][j]);
        }
    for (; k + 16 <= K; k += 16) {
        const __m512 w = fp8_16(src + k);
        for (int m = 0; m < M; m++) acc[m][0] = _mm512_fmadd_ps(_mm512_loadu_ps(xq + m * K + k), w, acc[m][0]);
    }
    for (int m = 0; m < M; m++) {
        float t = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[m][0], acc[m][1]), _mm512_add_ps(acc[m][2], acc[m][3]))) *
                  256.0f;
        for (int64_t kk = k; kk < K; kk++) t += xq[m * K + kk] * g_e4m3[src[kk]];
        y[m * ldy] = t * scale;
    }
}

__attribute__((target("avx512f,avx2,f16c"))) static void fp8_rows_fused(float *y, int64_t ldy, const float *xq, int64_t M,
                                                                         const uint8_t *src, int64_t K, float scale) {
    switch (M) {
    case 1: fp8_fused_m(y, ldy, xq, 1, src, K, scale); break;
    case 2: fp8_fused_m(y, ldy, xq, 2, src, K, scale); break;
    case 3: fp8_fused_m(y, ldy, xq, 3, src, K, scale); break;
    default: fp8_fused_m(y, ldy, xq, 4, src, K, scale); break;
    }
}

__attribute__((always_inline, target("avx512f"))) static inline void nvfp4_fused_m(float *y, int64_t ldy, const float *xq,
                                                                                  const int M, const uint8_t *codes,
                                                                                  const uint8_t *bscale, int64_t K,
                                                                                  float scale2) {
    __m512 acc[QUANT_FUSED_ROWS][FUSED_ACC];
    for (int m = 0; m < M; m++)
        for (int j = 0; j < FUSED_ACC; j++) acc[m][j] = _mm512_setzero_ps();
    const __m512 table = _mm512_loadu_ps(k_e2m1);
    const int64_t nb = K / 16;
    int64_t b = 0;
    /* e2m1 * block scale is exact in f32 (2 and 4 significant bits) */
    for (; b + FUSED_ACC <= nb; b += FUSED_ACC)
        for (int j = 0; j < FUSED_ACC; j++) {
            const __m512 w = _mm512_mul_ps(nvfp4_16(codes + (b + j) * 8, table), _mm512_set1_ps(g_e4m3[bscale[b + j]]));
            for (int m = 0; m < M; m++)
                acc[m][j] = _mm512_fmadd_ps(_mm512_loadu_ps(xq + m * K + (b + j) * 16), w, acc[m][j]);
        }
    for (; b < nb; b++) {
        const __m512 w = _mm512_mul_ps(nvfp4_16(codes + b * 8, table), _mm512_set1_ps(g_e4m3[bscale[b]]));
        for (int m = 0; m < M; m++) acc[m][0] = _mm512_fmadd_ps(_mm512_loadu_ps(xq + m * K + b * 16), w, acc[m][0]);
    }
    for (int m = 0; m < M; m++)
        y[m * ldy] =
            _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[m][0], acc[m][1]), _mm512_add_ps(acc[m][2], acc[m][3]))) *
            scale2;
}

__attribute__((target("avx512f"))) static void nvfp4_rows_fused(float *y, int64_t ldy, const float *xq, int64_t M,
                                                                const uint8_t *codes, const uint8_t *bscale, int64_t K,
                                                                float scale2) {
    switch (M) {
    case 1: nvfp4_fused_m(y, ldy, xq, 1, codes, bscale, K, scale2); break;
    case 2: nvfp4_fused_m(y, ldy, xq, 2, codes, bscale, K, scale2); break;
    case 3: nvfp4_fused_m(y, ldy, xq, 3, codes, bscale, K, scale2); break;
    default: nvfp4_fused_m(y, ldy, xq, 4, codes, bscale, K, scale2); break;
    }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define QUANT_BF16DP 1
/* Decode rows (up to QUANT_FUSED_ROWS) on CPUs with AVX512-BF16: the GEMM path's exact bf16
 * factors (the header: x' the activation's quantized value with the per-tensor input scale taken
 * out, W' the weight's code value) through vdpbf16ps, the weight codes turned into bf16 in
 * registers: 32 FP8 codes by two 64-entry table lookups (vpermt2w) on the 7 magnitude bits and
 * the sign bit moved over; 32 NVFP4 codes (16 bytes) by one 32-entry lookup (vpermw) of both
 * nibbles of each byte, its 16-bit halves indexed by c | c << 12 (the table holds the 16 values
 * twice, so the low half's stray bit 4 selects nothing). A pair's two products are exact in f32
 * (the factors have at most 4 + 4 significant bits); vdpbf16ps rounds each sum as it adds (the
 * GEMM path's own kernel does the same). NVFP4: the dot products of one 32-step hold two 16-blocks
 * (lanes 0-7, 8-15), multiplied by their block scales (E4M3 codes through the f16 placement,
 * times 2^-8: exact) as they are added to the sums. The per-tensor scales multiply each finished
 * sum: (sum * input_scale) * weight_scale, as the GEMM path. Versus the f32 fused rows this halves
 * the instructions per weight (the conversion bounded those: 60 % / 45 % of the read bandwidth).
 * A row's sums do not depend on the rows beside it. */
#define QBF16_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16,avx2,f16c")))
static uint16_t g_e2m1_bf16[32] __attribute__((aligned(64)));  /* nibble -> bf16 bits, twice */
static uint16_t g_fp8_bf16[128] __attribute__((aligned(64))); /* magnitude code -> bf16 bits */
static int g_qbf16_ready;
static void qbf16_tables_init(void) {
    if (__atomic_load_n(&g_qbf16_ready, __ATOMIC_ACQUIRE)) return; /* (as e4m3_table_init) */
    for (int c = 0; c < 128; c++) {
        const float v = g_e4m3[c]; /* (0x7f is NaN: the loader refuses NaN codes) */
        uint32_t u;
        memcpy(&u, &v, sizeof u);
        g_fp8_bf16[c] = (uint16_t)(u >> 16);
    }
    for (int c = 0; c < 32; c++) {
        uint32_t u;
        memcpy(&u, &k_e2m1[c & 15], sizeof u);
        g_e2m1_bf16[c] = (uint16_t)(u >> 16);
    }
    __atomic_store_n(&g_qbf16_ready, 1, __ATOMIC_RELEASE);
}

/* 32 NVFP4 codes (16 bytes, the even k in the low nibble) as bf16 E2M1 values, in k order */
QBF16_TARGET static inline __m512i nvfp4_32_bf16(const uint8_t *codes, __m512i table) {
    const __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)codes));
    return _mm512_permutexvar_epi16(_mm512_or_si512(c, _mm512_slli_epi32(c, 12)), table);
}

/* 32 FP8 codes as bf16 values (exact) */
QBF16_TARGET static inline __m512i fp8_32_bf16(const uint8_t *src, __m512i t0, __m512i t1, __m512i t2, __m512i t3) {
    const __m512i c = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)src));
    const __m512i lo = _mm512_permutex2var_epi16(t0, c, t1), hi = _mm512_permutex2var_epi16(t2, c, t3);
    const __m512i mag = _mm512_mask_blend_epi16(_mm512_test_epi16_mask(c, _mm512_set1_epi16(0x40)), lo, hi);
    return _mm512_ternarylogic_epi32(mag, _mm512_slli_epi16(c, 8), _mm512_set1_epi16((short)0x8000), 0xF8);
}
QBF16_TARGET static inline void fp8_bf16_m(float *y, int64_t ldy, const uint16_t *xb, const int M, const uint8_t *src,
                                           int64_t K, float is, float ws) {
    const __m512i t0 = _mm512_load_si512(g_fp8_bf16), t1 = _mm512_load_si512(g_fp8_bf16 + 32),
                  t2 = _mm512_load_si512(g_fp8_bf16 + 64), t3 = _mm512_load_si512(g_fp8_bf16 + 96);
    __m512 acc[QUANT_FUSED_ROWS][FUSED_ACC];
    for (int m = 0; m < M; m++)
        for (int j = 0; j < FUSED_ACC; j++) acc[m][j] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 * FUSED_ACC <= K; k += 32 * FUSED_ACC)
        for (int j = 0; j < FUSED_ACC; j++) {
            const __m512bh w = (__m512bh)fp8_32_bf16(src + k + 32 * j, t0, t1, t2, t3);
            for (int m = 0; m < M; m++)
                acc[m][j] = _mm512_dpbf16_ps(acc[m][j], (__m512bh)_mm512_loadu_si512((const void *)(xb + m * K + k + 32 * j)), w);
        }
    for (; k + 32 <= K; k += 32) {
        const __m512bh w = (__m512bh)fp8_32_bf16(src + k, t0, t1, t2, t3);
        for (int m = 0; m < M; m++)
            acc[m][0] = _mm512_dpbf16_ps(acc[m][0], (__m512bh)_mm512_loadu_si512((const void *)(xb + m * K + k)), w);
    }
    for (int m = 0; m < M; m++) {
        float t = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[m][0], acc[m][1]), _mm512_add_ps(acc[m][2], acc[m][3])));
        for (int64_t kk = k; kk < K; kk++) t += nvl_bf16_to_f32(xb[m * K + kk]) * g_e4m3[src[kk]];
        y[m * ldy] = t * is * ws;
    }
}

QBF16_TARGET static inline void nvfp4_bf16_m(float *y, int64_t ldy, const uint16_t *xb, const int M, const uint8_t *codes,
                                             const uint8_t *bscale, int64_t K, float is, float ws2) {
    const __m512i table = _mm512_load_si512(g_e2m1_bf16);
    __m512 acc[QUANT_FUSED_ROWS][FUSED_ACC];
    for (int m = 0; m < M; m++)
        for (int j = 0; j < FUSED_ACC; j++) acc[m][j] = _mm512_setzero_ps();
    int64_t k = 0;
    /* 256 weights (16 blocks) a step: their block scales converted at once, two a 32-step */
    for (; k + 256 <= K; k += 256) {
        const __m512 sc = fp8_16(bscale + k / 16); /* block scales * 2^-8 */
        for (int j = 0; j < 8; j++) {
            const __m512bh w = (__m512bh)nvfp4_32_bf16(codes + (k + 32 * j) / 2, table);
            const __m512 s2 = _mm512_permutexvar_ps(
                _mm512_set_epi32(2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1,
                                 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j), sc);
            for (int m = 0; m < M; m++) {
                const __m512 d = _mm512_dpbf16_ps(_mm512_setzero_ps(),
                                                  (__m512bh)_mm512_loadu_si512((const void *)(xb + m * K + k + 32 * j)), w);
                acc[m][j % FUSED_ACC] = _mm512_fmadd_ps(d, s2, acc[m][j % FUSED_ACC]);
            }
        }
    }
    float tail[QUANT_FUSED_ROWS] = {0};
    for (; k < K; k += 16) { /* the last blocks, one at a time */
        const float bs = g_e4m3[bscale[k / 16]];
        for (int m = 0; m < M; m++) {
            float t = 0.0f;
            for (int i = 0; i < 16; i++) {
                const uint8_t c = codes[(k + i) / 2];
                t += nvl_bf16_to_f32(xb[m * K + k + i]) * k_e2m1[i % 2 ? c >> 4 : c & 15];
            }
            tail[m] += t * bs;
        }
    }
    for (int m = 0; m < M; m++) {
        const float t = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[m][0], acc[m][1]), _mm512_add_ps(acc[m][2], acc[m][3])));
        y[m * ldy] = (t * 256.0f + tail[m]) * is * ws2;
    }
}

QBF16_TARGET static void fp8_rows_bf16(float *y, int64_t ldy, const uint16_t *xb, int64_t M, const uint8_t *src, int64_t K,
                                       float is, float ws) {
    switch (M) {
    case 1: fp8_bf16_m(y, ldy, xb, 1, src, K, is, ws); break;
    case 2: fp8_bf16_m(y, ldy, xb, 2, src, K, is, ws); break;
    case 3: fp8_bf16_m(y, ldy, xb, 3, src, K, is, ws); break;
    default: fp8_bf16_m(y, ldy, xb, 4, src, K, is, ws); break;
    }
}

QBF16_TARGET static void nvfp4_rows_bf16(float *y, int64_t ldy, const uint16_t *xb, int64_t M, const uint8_t *codes,
                                         const uint8_t *bscale, int64_t K, float is, float ws2) {
    switch (M) {
    case 1: nvfp4_bf16_m(y, ldy, xb, 1, codes, bscale, K, is, ws2); break;
    case 2: nvfp4_bf16_m(y, ldy, xb, 2, codes, bscale, K, is, ws2); break;
    case 3: nvfp4_bf16_m(y, ldy, xb, 3, codes, bscale, K, is, ws2); break;
    default: nvfp4_bf16_m(y, ldy, xb, 4, codes, bscale, K, is, ws2); break;
    }
}
#endif

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
    /* below: the fused rows (AVX-512) or the widened rows; from QUANT_GEMM_MIN_ROWS the GEMMs */
    return use_avx512() && QUANT_FUSED_ROWS < QUANT_GEMM_MIN_ROWS - 1 ? QUANT_FUSED_ROWS : QUANT_GEMM_MIN_ROWS - 1;
}

// ---------------------------------------------------------------------------
// Many rows: exact bf16 factors through the BF16 (or f32) GEMMs

/* bf16 bits of a value that is exactly bf16 (the low half of its f32 bits is zero) */
static inline uint16_t bf16_bits_exact(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)(u >> 16);
}

#ifdef QUANT_X86
/* The 16-element steps of factor_rows' row; returns the k reached. */
__attribute__((target("avx512f,avx2,f16c"))) static int64_t factor_row_avx512(uint16_t *d, const uint8_t *src,
                                                                              const uint8_t *bsr, int64_t K, int fp8) {
    const __m512 table = _mm512_loadu_ps(k_e2m1), two8 = _mm512_set1_ps(256.0f);
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        const __m512 v = fp8 ? _mm512_mul_ps(fp8_16(src + k), two8)
                             : _mm512_mul_ps(nvfp4_16(src + k / 2, table), _mm512_set1_ps(g_e4m3[bsr[k / 16]]));
        _mm256_storeu_si256((__m256i *)(d + k), _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(v), 16)));
    }
    return k;
}
#endif

/* Weight rows n0 .. n0 + nr as bf16 factors W' (nr, K): FP8 the codes' E4M3 values, NVFP4
 * e2m1 * e4m3(block scale). */
static void factor_rows(uint16_t *dst, const struct kern_weight *w, int64_t n0, int64_t nr, int avx) {
    const int64_t K = w->n_in;
    const int fp8 = w->quant == KERN_QUANT_FP8;
    const uint8_t *wb = w->w.data, *bs = w->block_scale.data;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < nr; n++) {
        uint16_t *d = dst + n * K;
        const uint8_t *src = wb + (size_t)(n0 + n) * (size_t)(fp8 ? K : K / 2);
        const uint8_t *bsr = fp8 ? NULL : bs + (size_t)(n0 + n) * (size_t)(K / 16);
        int64_t k = 0;
#ifdef QUANT_X86
        if (avx) k = factor_row_avx512(d, src, bsr, K, fp8);
#else
        (void)avx;
#endif
        for (; k < K; k++) {
            const float v = fp8 ? g_e4m3[src[k]]
                                : k_e2m1[k % 2 ? src[k / 2] >> 4 : src[k / 2] & 15] * g_e4m3[bsr[k / 16]];
            d[k] = bf16_bits_exact(v);
        }
    }
}

/* One row of NVFP4 x' (K values, bf16-exact): e2m1(x / s) * e4m3(s / gs) per 16-block. 0 when a
 * block fell back to scale 1 with a nonzero value (x' cannot hold it). */
static int nvfp4_factor_row(float *xf, const float *x, int64_t K, float is) {
    int ok = 1;
    float q[16], e4;
    for (int64_t b = 0; b < K; b += 16) {
        nvfp4_block(q, x + b, is, &e4);
        for (int i = 0; i < 16; i++) {
            xf[b + i] = q[i] * e4; /* exact: 2 x 4 significant bits */
            if (e4 == 0.0f && q[i] != 0.0f) ok = 0;
        }
    }
    return ok;
}

/* x' (M, K) f32 holding bf16 values. 0 when an NVFP4 block fell back to scale 1 with a nonzero
 * value (x' cannot hold it; the caller takes the widened rows). */
static int factor_acts(float *xf, const float *x, const struct kern_weight *w, int64_t M) {
    const int64_t K = w->n_in;
    const float is = w->input_scale;
    int ok = 1;
    if (w->quant == KERN_QUANT_FP8) {
#pragma omp parallel for schedule(static) if (M * K > 65536)
        for (int64_t i = 0; i < M * K; i++) xf[i] = g_e4m3[nvl_f32_to_e4m3_sat(x[i] / is)];
        return 1;
    }
#pragma omp parallel for schedule(static) if (M * K > 65536) reduction(& : ok)
    for (int64_t m = 0; m < M; m++) ok &= nvfp4_factor_row(xf + m * K, x + m * K, K, is);
    return ok;
}

static nvl_status matmul_quant_rows(float *y, const float *x, const struct kern_weight *w, int64_t M, int avx,
                                    nvl_err *err);
#ifdef QUANT_BF16DP

/* Up to QUANT_FUSED_ROWS rows through fp8_rows_bf16 / nvfp4_rows_bf16. A row with an NVFP4 block
 * that x' cannot hold (factor_acts) takes matmul_quant_rows alone; the other rows' results are
 * the same either way (a row's sums do not depend on the rows beside it). */
static nvl_status matmul_quant_fused_bf16(float *y, const float *x, const struct kern_weight *w, int64_t M, int avx,
                                          nvl_err *err) {
    const int64_t N = w->n_out, K = w->n_in;
    const int fp8 = w->quant == KERN_QUANT_FP8;
    qbf16_tables_init();
    uint16_t *xb = nvl_aligned_alloc(64, (size_t)(M * K) * sizeof(uint16_t) + 64);
    float *xf = nvl_aligned_alloc(64, (size_t)K * sizeof(float) + 64);
    float *yg = NULL;
    nvl_status st = NVL_OK;
    if (!xb || !xf) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory for %lld x %lld activations", __func__, (long long)M,
                         (long long)K);
        goto out;
    }
    int64_t rows[QUANT_FUSED_ROWS], G = 0;
    for (int64_t m = 0; m < M; m++) {
        int ok = 1;
        if (fp8)
            for (int64_t k = 0; k < K; k++) xf[k] = g_e4m3[nvl_f32_to_e4m3_sat(x[m * K + k] / w->input_scale)];
        else ok = nvfp4_factor_row(xf, x + m * K, K, w->input_scale);
        if (!ok) continue;
        for (int64_t k = 0; k < K; k++) xb[G * K + k] = bf16_bits_exact(xf[k]);
        rows[G++] = m;
    }
    if (G > 0) {
        yg = G == M ? y : nvl_aligned_alloc(64, (size_t)(G * N) * sizeof(float) + 64);
        if (!yg) {
            st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory for %lld outputs", __func__, (long long)(G * N));
            goto out;
        }
        const uint8_t *wb = w->w.data, *bs = w->block_scale.data;
        const size_t row_bytes = fp8 ? (size_t)K : (size_t)K / 2;
#pragma omp parallel for schedule(static) if (N * K > 32768)
        for (int64_t n = 0; n < N; n++) {
            if (fp8) fp8_rows_bf16(yg + n, N, xb, G, wb + (size_t)n * row_bytes, K, w->input_scale, w->weight_scale);
            else nvfp4_rows_bf16(yg + n, N, xb, G, wb + (size_t)n * row_bytes, bs + (size_t)n * (size_t)(K / 16), K,
                                 w->input_scale, w->weight_scale);
        }
        if (yg != y)
            for (int64_t g = 0; g < G; g++) memcpy(y + rows[g] * N, yg + g * N, (size_t)N * sizeof(float));
    }
    for (int64_t m = 0, g = 0; m < M && st == NVL_OK; m++) {
        if (g < G && rows[g] == m) g++;
        else st = matmul_quant_rows(y + m * N, x + m * K, w, 1, avx, err);
    }
out:
    nvl_free(xb);
    nvl_free(xf);
    if (yg != y) nvl_free(yg);
    return st;
}
#endif

#define QUANT_PANEL_BYTES ((size_t)16 << 20) /* bf16 weight factors dequantized at a time */

/* The GEMM path: 1 when it ran, 0 when the caller must take the widened rows (an NVFP4 block x'
 * cannot hold, or memory); *st the error of a run that failed. */
static int matmul_quant_gemm(float *y, const float *x, const struct kern_weight *w, int64_t M, int avx, nvl_status *st,
                             nvl_err *err) {
    const int64_t N = w->n_out, K = w->n_in;
    int64_t np = (int64_t)(QUANT_PANEL_BYTES / ((size_t)K * 2)) & ~(int64_t)255;
    if (np < 256) np = 256;
    if (np > N) np = N;
    float *xf = nvl_aligned_alloc(64, (size_t)(M * K) * sizeof(float) + 64);
    uint16_t *wf = nvl_aligned_alloc(64, (size_t)(np * K) * sizeof(uint16_t) + 64);
    float *yp = np < N ? nvl_aligned_alloc(64, (size_t)(M * np) * sizeof(float) + 64) : y;
    int done = 0;
    if (!xf || !wf || !yp || !factor_acts(xf, x, w, M)) goto out;
    const int bf16 = kern_cpu_bf16_path(M) != KERN_BF16_NONE;
    for (int64_t n0 = 0; n0 < N; n0 += np) {
        const int64_t nr = N - n0 < np ? N - n0 : np;
        factor_rows(wf, w, n0, nr, avx);
        const nvl_tensor wt = nvl_tensor_make(NVL_DTYPE_BF16, 2, (int64_t[]){nr, K}, wf);
        if (!(bf16 && kern_cpu_matmul_bf16_ld(yp, xf, K, &wt, M)) && (*st = kern_cpu_matmul(yp, xf, &wt, M, err)) != NVL_OK)
            goto out;
        if (yp != y)
#pragma omp parallel for schedule(static) if (M * nr > 65536)
            for (int64_t m = 0; m < M; m++) memcpy(y + m * N + n0, yp + m * nr, (size_t)nr * sizeof(float));
    }
    /* the per-tensor scales once per sum, in the order the widened rows apply them */
    const float sx = w->input_scale, sw = w->weight_scale;
#pragma omp parallel for schedule(static) if (M * N > 65536)
    for (int64_t i = 0; i < M * N; i++) y[i] = y[i] * sx * sw;
    done = 1;
out:
    nvl_free(xf);
    nvl_free(wf);
    if (yp != y) nvl_free(yp);
    return done;
}

// ---------------------------------------------------------------------------

nvl_status kern_cpu_matmul_quant(float *y, const float *x, const struct kern_weight *w, int64_t M, nvl_err *err) {
    const int64_t K = w->n_in;
    const int fp8 = w->quant == KERN_QUANT_FP8;
    if (!fp8 && w->quant != KERN_QUANT_NVFP4)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: weight '%s' is not quantized", __func__, w->name ? w->name : "?");
    if (!fp8 && K % 16)
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s: NVFP4 weight '%s' has %lld inputs, not a multiple of 16", __func__,
                           w->name ? w->name : "?", (long long)K);
    e4m3_table_init();
    const int avx = use_avx512();
    if (M >= QUANT_GEMM_MIN_ROWS) {
        nvl_status st = NVL_OK;
        if (matmul_quant_gemm(y, x, w, M, avx, &st, err)) return NVL_OK;
        if (st != NVL_OK) return st;
    }
#ifdef QUANT_BF16DP
    if (avx && M <= QUANT_FUSED_ROWS && kern_cpu_has_bf16dp()) return matmul_quant_fused_bf16(y, x, w, M, avx, err);
#endif
    return matmul_quant_rows(y, x, w, M, avx, err);
}

/* The rows of x with their activations quantized-dequantized in f32: up to QUANT_FUSED_ROWS the
 * fused rows (AVX-512), else each weight row widened to f32 once per QUANT_ROWS rows. */
static nvl_status matmul_quant_rows(float *y, const float *x, const struct kern_weight *w, int64_t M, int avx,
                                    nvl_err *err) {
    const int64_t N = w->n_out, K = w->n_in;
    const int fp8 = w->quant == KERN_QUANT_FP8;
    float *xq = nvl_aligned_alloc(64, (size_t)(M * K) * sizeof(float) + 64);
    if (!xq) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory for %lld x %lld activations", __func__,
                                (long long)M, (long long)K);
    for (int64_t m = 0; m < M; m++) {
        if (fp8) kern_cpu_quant_fp8_act(xq + m * K, x + m * K, K, w->input_scale);
        else kern_cpu_quant_nvfp4_act(xq + m * K, x + m * K, K, w->input_scale);
    }
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
