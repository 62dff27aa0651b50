/* Per-op table test of kernels/ops.h (in the style of llama.cpp's test-backend-ops): every op
 * on the chosen backend against a NAIVE ORACLE written here (plain loops in double following
 * the PyTorch formula in ops.h; no kern_cpu_* call), inputs from a fixed seed. The quantized
 * matmul is also compared against the CPU twin when the backend is not the CPU.
 *
 *   test_ops                   CPU backend
 *   test_ops --backend cuda    CUDA backend; exits 77 without a device; an op the backend lacks
 *                              (NVL_ERR_UNSUPPORTED) is reported as "SKIP op ..." and not failed
 *
 * Tolerances (why):
 *  - F32 outputs: the op accumulates in f32, the oracle in double. For a dot product of length
 *    K the relative error is ~sqrt(K) * 2^-24 (K <= 96 here: ~6e-7), and cancellation makes
 *    outputs near zero, so atol 2e-5 + rtol 1e-5, NMSE <= 1e-10 (TOL_F32).
 *  - BF16 outputs: op and oracle round to bf16 at the same points (nvl_round_bf16), so they are
 *    equal except where the f32-vs-double difference carries a value across a bf16 rounding
 *    boundary; such a flip moves it by one bf16 ulp (<= 2^-7 relative, times the number of
 *    chained roundings). cmp_bf16 allows that on every element but requires all except
 *    max(2, n/50) elements to agree to 1e-6 relative (a dropped or misplaced rounding changes
 *    most elements and fails).
 *  - Chunked SSD scan vs the recurrence: different association of the same f32 sums and
 *    exp(cumsum) differences instead of products of exp: atol 1e-5 + rtol 1e-4 (observed ~2.4e-7
 *    on values ~1 at T=7, chunk 4); the recurrence in f32: atol 1e-5 + rtol 1e-5.
 *  - Pure data movement (copy F32, get_rows, patchify, pixel_shuffle, kv_write): exact.
 *  - FP8 / NVFP4 matmul (test_matmul_quant): op, oracle and CPU twin see the same quantized
 *    activations and dequantized weights (each exact in f32: the roundings are the same
 *    functions, or on CUDA their line-by-line ports), so only the order of the f32 sums differs:
 *    F32 outputs within 1e-5 * sum_k |xq w| + 1e-7 per element (a reordered f32 dot product of
 *    K terms is off by ~sqrt(K) 2^-24 of that sum: 4e-6 at K = 5120), against the double oracle
 *    and, on a device backend, against the CPU twin (the cpu backend's kern_matmul on the same
 *    host data); BF16 outputs as cmp_bf16 with 1 ulp. One activation rounded to the wrong
 *    neighbour moves an output by a quantization step times a weight: ~1/(8K) of the sum for
 *    E4M3, 1e-3 at the K <= 128 cases that carry the planted boundary values (100x the bound;
 *    slips planted in the oracle's tie rules fail there), only ~2e-5 at K = 5120.
 */
#include <float.h>

#include "backend.h"
#include "ops.h"
#include "base/tensor.h"
#include "test_util.h"

static kern_backend *g_be;
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static int g_ran = 0, g_skipped = 0;

#define MAX_ALLOCS 4096
static void *g_dev[MAX_ALLOCS], *g_host[MAX_ALLOCS];
static int g_ndev, g_nhost;

// ---------------------------------------------------------------------------
// Memory: backend buffers via kern_buffer_alloc, moved with kern_copy_to_backend / _to_host

static void *hmalloc(size_t bytes) {
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p || g_nhost >= MAX_ALLOCS) exit(1);
    return g_host[g_nhost++] = p;
}
static float *hf(size_t n) { return hmalloc(n * sizeof(float)); }
static double *hd(size_t n) { return hmalloc(n * sizeof(double)); }

static void *be_alloc(size_t bytes) {
    void *p = NULL;
    nvl_err err = {0};
    if (kern_buffer_alloc(g_be, bytes ? bytes : 1, &p, &err) != NVL_OK || g_ndev >= MAX_ALLOCS) {
        fprintf(stderr, "buffer alloc: %s\n", err.msg);
        exit(1);
    }
    return g_dev[g_ndev++] = p;
}
static void be_put(void *dev, const void *host, size_t bytes) {
    nvl_err err = {0};
    if (kern_copy_to_backend(g_be, dev, host, bytes, &err) != NVL_OK) {
        fprintf(stderr, "copy to backend: %s\n", err.msg);
        exit(1);
    }
}
static void be_get(void *host, const void *dev, size_t bytes) {
    nvl_err err = {0};
    if (kern_copy_to_host(g_be, host, dev, bytes, &err) != NVL_OK) {
        fprintf(stderr, "copy to host: %s\n", err.msg);
        exit(1);
    }
}

static float rd(double v, nvl_dtype dt) { return dt == NVL_DTYPE_BF16 ? nvl_round_bf16((float)v) : (float)v; }
static float rb(double v) { return nvl_round_bf16((float)v); }

static float *rand_f(size_t n, float lo, float hi) {
    float *x = hf(n);
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * 0.5f * (test_rng_uniform(&g_rng) + 1.0f);
    return x;
}

/* An activation of dtype dt (as the backend holds it) with host values h, which are first
 * rounded in place to dt so the oracle sees exactly the stored numbers. */
static nvl_tensor act_up(nvl_dtype dt, int nd, const int64_t *shape, float *h) {
    nvl_tensor t = kern_act(g_be, dt, nd, shape, NULL);
    const int64_t n = nvl_tensor_numel(&t);
    for (int64_t i = 0; i < n; i++) h[i] = rd(h[i], dt);
    const size_t bytes = kern_act_bytes(g_be, dt, n);
    t.data = be_alloc(bytes);
    if (dt == NVL_DTYPE_F32 || t.widened) {
        be_put(t.data, h, bytes);
    } else {
        uint16_t *b = hmalloc((size_t)n * 2);
        for (int64_t i = 0; i < n; i++) b[i] = nvl_f32_to_bf16(h[i]);
        be_put(t.data, b, (size_t)n * 2);
    }
    return t;
}
static nvl_tensor act2(nvl_dtype dt, int64_t r, int64_t c, float *h) { return act_up(dt, 2, (int64_t[]){r, c}, h); }
/* An output activation filled with a marker value (so unwritten elements show). */
static nvl_tensor out2(nvl_dtype dt, int64_t r, int64_t c) {
    float *h = hf((size_t)(r * c));
    for (int64_t i = 0; i < r * c; i++) h[i] = -777.0f;
    return act2(dt, r, c, h);
}
static nvl_tensor vec_f32(int64_t n, float *h) { return act_up(NVL_DTYPE_F32, 1, (int64_t[]){n}, h); }

/* Whole contiguous tensor (as made by act_up / a raw cache) back to host floats. */
static float *down(const nvl_tensor *t) {
    const int64_t n = nvl_tensor_numel(t);
    float *h = hf((size_t)n);
    if (t->dtype == NVL_DTYPE_F32 || t->widened) {
        be_get(h, t->data, (size_t)n * 4);
    } else {
        uint16_t *b = hmalloc((size_t)n * 2);
        be_get(b, t->data, (size_t)n * 2);
        for (int64_t i = 0; i < n; i++) h[i] = nvl_bf16_to_f32(b[i]);
    }
    return h;
}

/* A weight (matmul W, embedding table) stored in dtype dt as a checkpoint has it, placed. */
static nvl_tensor weight(nvl_dtype dt, int64_t r, int64_t c, float *h) {
    for (int64_t i = 0; i < r * c; i++) h[i] = rd(h[i], dt);
    void *store;
    if (dt == NVL_DTYPE_F32) {
        store = hmalloc((size_t)(r * c) * 4);
        memcpy(store, h, (size_t)(r * c) * 4);
    } else {
        uint16_t *b = hmalloc((size_t)(r * c) * 2);
        for (int64_t i = 0; i < r * c; i++) b[i] = nvl_f32_to_bf16(h[i]);
        store = b;
    }
    nvl_tensor w = nvl_tensor_make(dt, 2, (int64_t[]){r, c}, store);
    nvl_tensor *p = &w;
    nvl_err err = {0};
    if (kern_weights_place(g_be, &p, 1, &err) != NVL_OK) {
        fprintf(stderr, "place: %s\n", err.msg);
        exit(1);
    }
    return w;
}

/* NVL_OK: go on. UNSUPPORTED: the backend lacks this op; report the skip and return 0. */
static int ran(const char *op, nvl_status st, const nvl_err *err) {
    if (st == NVL_ERR_UNSUPPORTED) {
        printf("SKIP op %s on %s: %s\n", op, kern_backend_name(g_be), err->msg);
        g_skipped++;
        return 0;
    }
    TEST_CHECK(st == NVL_OK, "%s returned %d: %s", op, (int)st, err->msg);
    if (st == NVL_OK) g_ran++;
    return st == NVL_OK;
}

// ---------------------------------------------------------------------------
// Comparisons

#define TOL_F32 2e-5, 1e-5, 1e-10

/* See the header: every element within atol + ulps * 2^-7 |ref| (rounding-boundary flips), all
 * but max(2, n/50) within 1e-6 |ref| + 1e-7. */
static int cmp_bf16(const char *what, const float *got, const float *ref, size_t n, double ulps) {
    size_t loose = 0, bad = 0;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - ref[i]);
        if (!(d <= 1e-7 + 1e-6 * fabs(ref[i]))) loose++;
        if (!(d <= 1e-6 + ulps * 0.0078125 * fabs(ref[i]))) {
            if (bad < 5) fprintf(stderr, "  %s[%zu]: got %.9g, expected %.9g\n", what, i, got[i], ref[i]);
            bad++;
        }
        if (d > worst || d != d) worst = d;
    }
    const size_t allow = n / 50 > 2 ? n / 50 : 2;
    const int ok = bad == 0 && loose <= allow;
    if (!ok || getenv("NVL_TEST_VERBOSE"))
        fprintf(stderr, "%s %s (bf16): n=%zu, %zu off by more than %g bf16 ulp, %zu not f32-exact (allowed %zu), worst %.3g\n",
                ok ? "ok" : "FAIL", what, n, bad, ulps, loose, allow, worst);
    if (ok) g_test_pass++;
    else g_test_fail++;
    return ok;
}
static void cmp(const char *what, nvl_dtype dt, const float *got, const float *ref, size_t n) {
    if (dt == NVL_DTYPE_BF16) cmp_bf16(what, got, ref, n, 1);
    else test_compare_f32(what, got, ref, n, TOL_F32);
}
static void cmp_exact(const char *what, const float *got, const float *ref, size_t n) {
    test_compare_f32(what, got, ref, n, 0, 0, 0);
}

static const char *dn(nvl_dtype dt) { return dt == NVL_DTYPE_BF16 ? "bf16" : "f32"; }

// ---------------------------------------------------------------------------
// Row-wise ops

/* y[t,n] = sum_k x[t,k] W[n,k]; x a column view of a wider tensor in the strided cases. */
static void test_matmul(void) {
    static const struct { int64_t T, K, N, pad; nvl_dtype wdt, xdt, ydt; } cs[] = {
        {1, 16, 8, 0, NVL_DTYPE_F32, NVL_DTYPE_F32, NVL_DTYPE_F32},
        {5, 33, 17, 7, NVL_DTYPE_BF16, NVL_DTYPE_BF16, NVL_DTYPE_BF16},
        {7, 96, 40, 5, NVL_DTYPE_BF16, NVL_DTYPE_F32, NVL_DTYPE_F32},
        {3, 64, 24, 0, NVL_DTYPE_F32, NVL_DTYPE_BF16, NVL_DTYPE_BF16},
        /* x and w share a dtype but y is another: cuBLAS's GemmEx has bf16 x bf16 -> f32 but no
           f32 x f32 -> bf16, so the device must take another path for that one */
        {4, 48, 20, 0, NVL_DTYPE_F32, NVL_DTYPE_F32, NVL_DTYPE_BF16},
        {6, 40, 16, 3, NVL_DTYPE_BF16, NVL_DTYPE_BF16, NVL_DTYPE_F32},
        /* the device's BF16 decode GEMVs (16-byte aligned rows): one row (k_gemv_bf16, K % 8) at the
           LLM's K, and with 2 output rows per warp from N = 16384 with a partial last block; 2 to 8
           rows on the tensor cores (k_gemv_mma, K % 32; NVL_CUDA_GEMV_MMA=0: k_gemv_bf16): 8 rows
           from an aligned column view, N 16400 (a block's second 8 rows past N), 65 steps of 64
           bytes (the warps' last round part full); 9 rows and a misaligned view go to cuBLAS */
        {1, 5120, 24, 0, NVL_DTYPE_BF16, NVL_DTYPE_BF16, NVL_DTYPE_F32},
        {1, 96, 16400, 0, NVL_DTYPE_BF16, NVL_DTYPE_BF16, NVL_DTYPE_BF16},
        {8, 64, 40, 8, NVL_DTYPE_BF16, NVL_DTYPE_BF16, NVL_DTYPE_F32},
        {3, 96, 16400, 0, NVL_DTYPE_BF16, NVL_DTYPE_BF16, NVL_DTYPE_BF16},
        {5, 2080, 40, 8, NVL_DTYPE_BF16, NVL_DTYPE_BF16, NVL_DTYPE_F32},
        {9, 64, 24, 0, NVL_DTYPE_BF16, NVL_DTYPE_BF16, NVL_DTYPE_BF16},
        {2, 64, 24, 4, NVL_DTYPE_BF16, NVL_DTYPE_BF16, NVL_DTYPE_F32},
    };
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const int64_t T = cs[c].T, K = cs[c].K, N = cs[c].N, Kw = K + cs[c].pad;
        float *xh = rand_f((size_t)(T * Kw), -1, 1), *wh = rand_f((size_t)(N * K), -0.5f, 0.5f);
        nvl_tensor xw = act2(cs[c].xdt, T, Kw, xh);
        nvl_tensor x = kern_cols(&xw, cs[c].pad, K); /* strided view: skip the first pad columns */
        nvl_tensor W = weight(cs[c].wdt, N, K, wh);
        kern_weight kw = kern_weight_plain(&W, "w");
        nvl_tensor y = out2(cs[c].ydt, T, N);
        nvl_err err = {0};
        if (!ran("matmul", kern_matmul(g_be, &y, &x, &kw, &err), &err)) return;
        float *got = down(&y), *ref = hf((size_t)(T * N));
        for (int64_t t = 0; t < T; t++)
            for (int64_t n = 0; n < N; n++) {
                double a = 0;
                for (int64_t k = 0; k < K; k++) a += (double)xh[t * Kw + cs[c].pad + k] * wh[n * K + k];
                ref[t * N + n] = rd(a, cs[c].ydt);
            }
        char what[64];
        snprintf(what, sizeof what, "matmul case %zu (x %s, w %s, y %s)", c, dn(cs[c].xdt), dn(cs[c].wdt), dn(cs[c].ydt));
        cmp(what, cs[c].ydt, got, ref, (size_t)(T * N));
    }
}

/* y = x W^T + bias, the sum rounded once to y's dtype (kern_matmul_bias). A device fuses BF16 x, W,
 * y and bias with 16-byte aligned rows (cuBLASLt's bias epilogue: the fused cases must say so);
 * the rest takes matmul then bias_act, which needs an f32 y, or refuses. The oracle sums in double
 * and rounds once: a product rounded to bf16 before the bias is added (a double rounding) puts
 * about a fifth of the elements one ulp off, which the bound's count of non-exact elements
 * (n / 50) does not allow. */
static void test_matmul_bias(void) {
    static const struct { int64_t T, K, N, pad; nvl_dtype xdt, ydt; int fusable; } cs[] = {
        {37, 64, 48, 0, NVL_DTYPE_BF16, NVL_DTYPE_BF16, 1},
        {21, 96, 40, 8, NVL_DTYPE_BF16, NVL_DTYPE_BF16, 1}, /* x a column view, rows 16-byte aligned */
        {9, 48, 24, 0, NVL_DTYPE_BF16, NVL_DTYPE_F32, 0},   /* f32 y: the two ops */
        {5, 40, 16, 3, NVL_DTYPE_F32, NVL_DTYPE_F32, 0},
        {6, 40, 16, 3, NVL_DTYPE_BF16, NVL_DTYPE_BF16, 0}, /* misaligned rows, bf16 y: refused */
    };
    const int device = kern_backend_kind_of(g_be) != KERN_BACKEND_KIND_CPU;
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const int64_t T = cs[c].T, K = cs[c].K, N = cs[c].N, Kw = K + cs[c].pad;
        const nvl_dtype wdt = cs[c].xdt;
        float *xh = rand_f((size_t)(T * Kw), -1, 1), *wh = rand_f((size_t)(N * K), -0.5f, 0.5f), *bh = rand_f((size_t)N, -2, 2);
        nvl_tensor xw = act2(cs[c].xdt, T, Kw, xh);
        nvl_tensor x = kern_cols(&xw, cs[c].pad, K);
        nvl_tensor W = weight(wdt, N, K, wh);
        kern_weight kw = kern_weight_plain(&W, "w");
        nvl_tensor b = act_up(cs[c].ydt, 1, (int64_t[]){N}, bh);
        nvl_tensor y = out2(cs[c].ydt, T, N);
        char what[96];
        snprintf(what, sizeof what, "matmul_bias case %zu (x, w %s, y and bias %s)", c, dn(cs[c].xdt), dn(cs[c].ydt));
        const int fused = kern_matmul_bias_fused(g_be, &y, &x, &kw, &b);
        TEST_CHECK(fused == (device && cs[c].fusable), "%s: fused %d on %s", what, fused, kern_backend_name(g_be));
        nvl_err err = {0};
        const nvl_status st = kern_matmul_bias(g_be, &y, &x, &kw, &b, &err);
        if (!fused && cs[c].ydt != NVL_DTYPE_F32) {
            TEST_CHECK(st == NVL_ERR_UNSUPPORTED && strstr(err.msg, "the product would round before the bias"),
                       "%s: status %d (%s)", what, (int)st, err.msg);
            continue;
        }
        if (!ran("matmul_bias", st, &err)) return;
        float *got = down(&y), *ref = hf((size_t)(T * N));
        for (int64_t t = 0; t < T; t++)
            for (int64_t n = 0; n < N; n++) {
                double a = 0;
                for (int64_t k = 0; k < K; k++) a += (double)xh[t * Kw + cs[c].pad + k] * wh[n * K + k];
                ref[t * N + n] = rd((double)(float)a + bh[n], cs[c].ydt);
            }
        cmp(what, cs[c].ydt, got, ref, (size_t)(T * N));
    }
}

/* FP8 and NVFP4 weights (quant-formats.md §1, §2; ops.h kern_weight): random stored codes with
 * valid finite positive scales, placed as stored (kern_weights_place), x a strided view. The
 * oracle follows the formulas literally: activations quantize-dequantized with the base
 * roundings (nvl_f32_to_e4m3_sat, nvl_e2m1_quantize, themselves pinned by tests/llm/test_quant.c),
 * weights dequantized element by element, sums in double. On a device backend the op is also
 * compared against the CPU twin (the cpu backend's kern_matmul on the same host data). Some rows
 * carry planted activations on the rounding boundaries (input_scale a power of two there, so
 * x / input_scale is exact): E4M3 ties and saturation (FP8), E2M1 ties, a saturated block scale
 * and an all-zero block (NVFP4). */
static const float k_e2m1_tab[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};

static float qw_deq(int fp8, const uint8_t *w, const uint8_t *bs, float ws, int64_t K, int64_t n, int64_t k) {
    if (fp8) return nvl_f8e4m3_to_f32(w[n * K + k]) * ws;
    const uint8_t c = w[(n * K + k) / 2];
    return k_e2m1_tab[k % 2 ? c >> 4 : c & 15] * nvl_f8e4m3_to_f32(bs[n * (K / 16) + k / 16]) * ws;
}

static void qact_ref(float *xq, const float *x, int64_t K, int fp8, float is) {
    if (fp8) {
        for (int64_t k = 0; k < K; k++) xq[k] = nvl_f8e4m3_to_f32(nvl_f32_to_e4m3_sat(x[k] / is)) * is;
        return;
    }
    for (int64_t b = 0; b < K; b += 16) {
        float amax = 0;
        for (int i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(x[b + i]));
        const float r = fminf(amax / (6.0f * is), 448.0f);
        float s = nvl_f8e4m3_to_f32(nvl_f32_to_e4m3_sat(r)) * is;
        if (s < 1e-5f) s = 1.0f;
        for (int i = 0; i < 16; i++) xq[b + i] = nvl_e2m1_quantize(x[b + i] / s) * s;
    }
}

/* |got - ref| <= rtol * l1 + rref * |ref| + 1e-7 per element, l1 = sum_k |xq_k w_k| (the scale of
 * a reordered f32 dot product), rref for an output rounding (bf16: the two sides round different
 * sums, so the rounding may flip by one ulp, 2^-7 relative at most) */
static void cmp_dot_r(const char *what, const float *got, const float *ref, const double *l1, size_t n, double rtol,
                      double rref) {
    size_t bad = 0;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - ref[i]), lim = rtol * l1[i] + rref * fabs(ref[i]) + 1e-7;
        if (!(d <= lim)) {
            if (bad < 5) fprintf(stderr, "  %s[%zu]: got %.9g, expected %.9g (bound %.3g)\n", what, i, got[i], ref[i], lim);
            bad++;
        }
        if (d / lim > worst || d != d) worst = d / lim;
    }
    if (bad || getenv("NVL_TEST_VERBOSE"))
        fprintf(stderr, "%s %s: n=%zu, %zu outside %g * sum|x w| + %g |ref|, worst %.3g of the bound\n", bad ? "FAIL" : "ok",
                what, n, bad, rtol, rref, worst);
    if (bad) g_test_fail++;
    else g_test_pass++;
}
static void cmp_dot(const char *what, const float *got, const float *ref, const double *l1, size_t n, double rtol) {
    cmp_dot_r(what, got, ref, l1, n, rtol, 0.0);
}

static void test_matmul_quant(void) {
    /* K = 5120: the LLM hidden size (model.md), with a few outputs; the others are small; the last
     * five have the rows of a prefill chunk */
    static const struct { int fp8; int64_t T, K, N, pad; nvl_dtype xdt, ydt; float ws, is; int plant; } cs[] = {
        {1, 1, 64, 24, 0, NVL_DTYPE_F32, NVL_DTYPE_F32, 0.013f, 0.03125f, 1},
        {1, 5, 96, 40, 7, NVL_DTYPE_BF16, NVL_DTYPE_BF16, 0.0071f, 0.0213f, 0},
        {1, 4, 128, 9, 3, NVL_DTYPE_F32, NVL_DTYPE_BF16, 0.013f, 0.015625f, 1},
        {1, 2, 5120, 6, 0, NVL_DTYPE_BF16, NVL_DTYPE_F32, 0.0019f, 0.0117f, 0},
        {0, 1, 64, 17, 0, NVL_DTYPE_F32, NVL_DTYPE_F32, 0.0021f, 0.00390625f, 1},
        {0, 7, 96, 33, 5, NVL_DTYPE_BF16, NVL_DTYPE_F32, 0.0017f, 0.0043f, 0},
        {0, 3, 128, 20, 0, NVL_DTYPE_F32, NVL_DTYPE_BF16, 0.0021f, 0.0078125f, 1},
        {0, 2, 5120, 6, 16, NVL_DTYPE_BF16, NVL_DTYPE_F32, 0.00031f, 0.0009f, 0},
        /* one row at K 5120: the device's GEMV with each lane on 10 (FP8) / 5 (NVFP4) chunks (a
         * look-ahead off by one passed every other case); N 9: a warp's last rows past N */
        {1, 1, 5120, 9, 0, NVL_DTYPE_BF16, NVL_DTYPE_F32, 0.0019f, 0.0117f, 1},
        {0, 1, 5120, 9, 0, NVL_DTYPE_F32, NVL_DTYPE_BF16, 0.00031f, 0.0009f, 1},
        /* FP8 on the device's tensor-core GEMV (k_gemv_fp8_mma: up to 8 rows, K % 64 == 0): all 8
         * of B's columns; 19 steps of 64 (its 8 warps' last round half full); N 40 and 17: a
         * block's second 8 rows past N */
        {1, 8, 1216, 40, 0, NVL_DTYPE_BF16, NVL_DTYPE_BF16, 0.0071f, 0.0213f, 1},
        {1, 5, 192, 33, 16, NVL_DTYPE_F32, NVL_DTYPE_F32, 0.013f, 0.03125f, 1},
        {1, 3, 1216, 17, 8, NVL_DTYPE_BF16, NVL_DTYPE_F32, 0.0019f, 0.0117f, 0},
        /* >= 16 rows: the device's tensor-core paths (cuBLASLt FP8; from 64 rows NVFP4, and FP8
         * where cuBLASLt declines, as exact bf16 factors) */
        {1, 64, 256, 48, 0, NVL_DTYPE_BF16, NVL_DTYPE_BF16, 0.0071f, 0.0213f, 1}, /* 64 rows: bf16 factors, or cuBLASLt */
        {1, 20, 128, 32, 5, NVL_DTYPE_F32, NVL_DTYPE_F32, 0.013f, 0.03125f, 0},
        {1, 17, 96, 40, 0, NVL_DTYPE_BF16, NVL_DTYPE_F32, 0.0019f, 0.0117f, 1}, /* N % 16 != 0: cuBLASLt declines */
        {0, 65, 512, 64, 0, NVL_DTYPE_BF16, NVL_DTYPE_BF16, 0.0021f, 0.0078125f, 1},
        {0, 17, 256, 40, 3, NVL_DTYPE_F32, NVL_DTYPE_F32, 0.0017f, 0.00390625f, 1}, /* < 64 rows: the GEMV */
        {0, 70, 256, 40, 3, NVL_DTYPE_F32, NVL_DTYPE_F32, 0.0017f, 0.00390625f, 0},
        {1, 66, 96, 40, 0, NVL_DTYPE_BF16, NVL_DTYPE_F32, 0.0019f, 0.0117f, 1}, /* N % 16: FP8 as bf16 factors */
        {1, 11, 50, 12, 1, NVL_DTYPE_BF16, NVL_DTYPE_F32, 0.013f, 0.03125f, 1}, /* K % 4 != 0: byte loads */
        /* N 300: the dequantized weight in chunks of rows where NVL_TEST_QUANT_CHUNK_ROWS is 128 (3) */
        {0, 65, 128, 300, 0, NVL_DTYPE_BF16, NVL_DTYPE_BF16, 0.0021f, 0.0078125f, 0},
        {1, 66, 96, 300, 0, NVL_DTYPE_BF16, NVL_DTYPE_F32, 0.0019f, 0.0117f, 0},
    };
    kern_backend *cpu = NULL;
    nvl_err err = {0};
    /* NVL_TEST_QUANT_TWIN=1 runs the twin comparison on the CPU too (CPU against CPU: only the
     * test's own plumbing is checked there) */
    const int twin = strcmp(kern_backend_name(g_be), "cpu") != 0 || getenv("NVL_TEST_QUANT_TWIN");
    if (twin && kern_backend_init(&cpu, "cpu", &err) != NVL_OK) {
        TEST_CHECK(0, "cpu backend for the twin: %s", err.msg);
        return;
    }
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const int fp8 = cs[c].fp8;
        const int64_t T = cs[c].T, K = cs[c].K, N = cs[c].N, Kw = K + cs[c].pad;
        const float ws = cs[c].ws, is = cs[c].is;
        /* stored weight: FP8 codes without the NaNs; NVFP4 any nibble, block scales 2^-9 .. 448 */
        const size_t wbytes = (size_t)(fp8 ? N * K : N * K / 2), nbs = (size_t)(N * K / 16);
        uint8_t *wq = hmalloc(wbytes), *bs = hmalloc(nbs ? nbs : 1);
        for (size_t i = 0; i < wbytes; i++) {
            uint8_t v = (uint8_t)(test_rng_next(&g_rng) >> 56);
            if (fp8 && (v & 0x7f) == 0x7f) v ^= 1;
            wq[i] = v;
        }
        for (size_t i = 0; i < nbs; i++) bs[i] = (uint8_t)(1 + (test_rng_next(&g_rng) >> 57) % 0x7e);
        /* activations, with planted boundary rows */
        float *xh = rand_f((size_t)(T * Kw), -2, 2);
        for (int64_t i = 0; i < T * Kw; i += 11) xh[i] *= 6.0f;
        if (cs[c].plant) {
            float *r0 = xh + cs[c].pad; /* row 0 of the view */
            if (fp8) {
                const float ties[] = {1.0625f, 1.1875f, -1.0625f, 0.0009765625f, 0.0146484375f, 448.0f, 460.0f, -1000.0f, 0.0f};
                for (size_t i = 0; i < sizeof ties / sizeof ties[0]; i++) r0[i] = ties[i] * is;
            } else {
                /* block 0: amax 24 is -> s = 4 is, values at every E2M1 tie; block 1: amax 20 with
                 * is = 2^-8 clamps the block scale at 448 (at 2^-7: 416), values above 6 s saturate;
                 * block 2 (K >= 48): all zeros, scale 1 */
                const float ties[16] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, -0.25f,
                                        -0.75f, -2.5f, -5.0f, 6.0f, 0.1f, 2.9f, 4.2f, 5.5f};
                for (int i = 0; i < 16; i++) r0[i] = ties[i] * 4.0f * is;
                for (int i = 0; i < 16; i++) r0[16 + i] = (i % 2 ? -20.0f : 20.0f) * (float)(i + 1) / 16.0f;
                for (int i = 0; i < 16 && K >= 48; i++) r0[32 + i] = 0.0f;
            }
        }
        nvl_tensor xw = act2(cs[c].xdt, T, Kw, xh); /* rounds xh to the dtype in place */
        nvl_tensor x = kern_cols(&xw, cs[c].pad, K);
        nvl_tensor W = fp8 ? nvl_tensor_make(NVL_DTYPE_F8_E4M3, 2, (int64_t[]){N, K}, wq)
                           : nvl_tensor_make(NVL_DTYPE_U8, 2, (int64_t[]){N, K / 2}, wq);
        nvl_tensor B = nvl_tensor_make(NVL_DTYPE_F8_E4M3, 2, (int64_t[]){N, K / 16}, bs);
        const nvl_tensor Wh = W, Bh = B; /* the host copies, for the CPU twin */
        nvl_tensor *place[2] = {&W, &B};
        if (kern_weights_place(g_be, place, fp8 ? 1 : 2, &err) != NVL_OK) {
            TEST_CHECK(0, "place: %s", err.msg);
            break;
        }
        kern_weight kw = kern_weight_plain(&W, "q.weight");
        kw.n_out = N;
        kw.n_in = K;
        kw.quant = fp8 ? KERN_QUANT_FP8 : KERN_QUANT_NVFP4;
        kw.weight_scale = ws;
        kw.input_scale = is;
        if (!fp8) kw.block_scale = B;
        nvl_tensor y = out2(cs[c].ydt, T, N);
        char what[96];
        snprintf(what, sizeof what, "matmul %s case %zu (T %lld, K %lld, N %lld, x %s, y %s)", fp8 ? "FP8" : "NVFP4", c,
                 (long long)T, (long long)K, (long long)N, dn(cs[c].xdt), dn(cs[c].ydt));
        if (!ran(what, kern_matmul(g_be, &y, &x, &kw, &err), &err)) continue;
        float *got = down(&y), *ref = hf((size_t)(T * N)), *xq = hf((size_t)K);
        double *l1 = hd((size_t)(T * N));
        for (int64_t t = 0; t < T; t++) {
            qact_ref(xq, xh + t * Kw + cs[c].pad, K, fp8, is);
            for (int64_t n = 0; n < N; n++) {
                double a = 0, l = 0;
                for (int64_t k = 0; k < K; k++) {
                    const double p = (double)xq[k] * qw_deq(fp8, wq, bs, ws, K, n, k);
                    a += p;
                    l += fabs(p);
                }
                ref[t * N + n] = rd(a, cs[c].ydt);
                l1[t * N + n] = l;
            }
        }
        /* cuBLASLt's FP8 path (NVL_CUDA_FP8_LT=1 and the device's conditions: ops_cuda.cu 3.):
         * Hopper's FP8 tensor cores keep ~14 bits of each k32 group's sum (the emulator models it:
         * cuda_emu/emu.cpp gemm_fp8), so the bound is 2^-9 sum|x w| (the model's worst here:
         * 2^-11; its worst case 2^-6 needs every cut term to err one way), and a bf16 y may round
         * the other way */
        const char *lt_env = getenv("NVL_CUDA_FP8_LT");
        const int lt = twin && fp8 && T >= 16 && K % 16 == 0 && N % 16 == 0 && lt_env && !strcmp(lt_env, "1");
        const double rtol = lt ? 1.0 / 512 : 1e-5;
        if (lt) cmp_dot_r(what, got, ref, l1, (size_t)(T * N), rtol, cs[c].ydt == NVL_DTYPE_BF16 ? 1.0 / 128 : 0.0);
        else if (cs[c].ydt == NVL_DTYPE_BF16) cmp_bf16(what, got, ref, (size_t)(T * N), 1);
        else cmp_dot(what, got, ref, l1, (size_t)(T * N), 1e-5);
        if (!twin) continue;
        /* the CPU twin on the same host data */
        float *xc = hf((size_t)(T * Kw)), *yc = hf((size_t)(T * N));
        memcpy(xc, xh, (size_t)(T * Kw) * sizeof(float));
        nvl_tensor xcw = kern_act(cpu, cs[c].xdt, 2, (int64_t[]){T, Kw}, xc), xcv = kern_cols(&xcw, cs[c].pad, K);
        nvl_tensor ycv = kern_act(cpu, cs[c].ydt, 2, (int64_t[]){T, N}, yc);
        kern_weight kc = kw;
        kc.w = Wh;
        if (!fp8) kc.block_scale = Bh;
        TEST_EQ_INT(kern_matmul(cpu, &ycv, &xcv, &kc, &err), NVL_OK);
        char w2[128];
        snprintf(w2, sizeof w2, "%s vs the CPU twin", what);
        if (lt) cmp_dot_r(w2, got, yc, l1, (size_t)(T * N), rtol, cs[c].ydt == NVL_DTYPE_BF16 ? 1.0 / 128 : 0.0);
        else if (cs[c].ydt == NVL_DTYPE_BF16) cmp_bf16(w2, got, yc, (size_t)(T * N), 1);
        else cmp_dot(w2, got, yc, l1, (size_t)(T * N), 1e-5);
    }
    if (cpu) kern_backend_free(cpu);
}

static void test_rmsnorm(void) {
    static const struct { int64_t T, C, pad; nvl_dtype xdt, ydt; } cs[] = {
        {1, 32, 0, NVL_DTYPE_F32, NVL_DTYPE_F32}, {6, 48, 16, NVL_DTYPE_BF16, NVL_DTYPE_BF16},
        {4, 40, 8, NVL_DTYPE_F32, NVL_DTYPE_BF16},
        {3, 1000, 24, NVL_DTYPE_BF16, NVL_DTYPE_BF16}}; /* (wider than a block's 256 threads) */
    const float eps = 1e-5f;
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const int64_t T = cs[c].T, C = cs[c].C, Cw = C + cs[c].pad;
        float *xh = rand_f((size_t)(T * Cw), -2, 2), *wh = rand_f((size_t)C, 0.5f, 1.5f);
        nvl_tensor xw = act2(cs[c].xdt, T, Cw, xh), x = kern_cols(&xw, cs[c].pad, C);
        nvl_tensor w = vec_f32(C, wh), y = out2(cs[c].ydt, T, C);
        nvl_err err = {0};
        if (!ran("rmsnorm", kern_rmsnorm(g_be, &y, &x, &w, eps, &err), &err)) return;
        float *got = down(&y), *ref = hf((size_t)(T * C));
        for (int64_t t = 0; t < T; t++) {
            const float *xr = xh + t * Cw + cs[c].pad;
            double ss = 0;
            for (int64_t i = 0; i < C; i++) ss += (double)xr[i] * xr[i];
            const double inv = 1.0 / sqrt(ss / C + eps);
            for (int64_t i = 0; i < C; i++) ref[t * C + i] = rd(wh[i] * (xr[i] * inv), cs[c].ydt);
        }
        char what[64];
        snprintf(what, sizeof what, "rmsnorm case %zu (%s -> %s)", c, dn(cs[c].xdt), dn(cs[c].ydt));
        cmp(what, cs[c].ydt, got, ref, (size_t)(T * C));
    }
}

/* MambaRMSNormGated, norm_before_gate=False, grouped; rows of decode sequences with a BF16 gate
 * round the normalised t to bf16 before the weight multiply. */
static void test_rmsnorm_gated(void) {
    static const struct { int64_t C, G; nvl_dtype zdt, ydt; int with_seqs; } cs[] = {
        {32, 1, NVL_DTYPE_F32, NVL_DTYPE_F32, 0},
        {32, 4, NVL_DTYPE_F32, NVL_DTYPE_F32, 1},
        {48, 2, NVL_DTYPE_BF16, NVL_DTYPE_BF16, 1},
        {48, 4, NVL_DTYPE_BF16, NVL_DTYPE_F32, 1},
        {48, 3, NVL_DTYPE_BF16, NVL_DTYPE_BF16, 0}, /* no sequences: no decode rows */
        {2560, 2, NVL_DTYPE_BF16, NVL_DTYPE_BF16, 1}, /* groups of 1280, the 12B's, wider than a block */
    };
    /* three sequences; the 1-row one in the middle is a decode step */
    const kern_seq seqs[3] = {{2, 0, 0, 7, 0}, {0, 1, 7, 1, 9}, {3, 0, 8, 3, 0}};
    const int64_t T = 11, pad = 6;
    const float eps = 1e-5f;
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const int64_t C = cs[c].C, G = cs[c].G, gs = C / G, Cw = C + pad;
        float *xh = rand_f((size_t)(T * C), -2, 2), *zh = rand_f((size_t)(T * Cw), -3, 3);
        float *wh = rand_f((size_t)C, 0.5f, 1.5f);
        nvl_tensor x = act2(NVL_DTYPE_F32, T, C, xh); /* the scan output is f32 */
        nvl_tensor zw = act2(cs[c].zdt, T, Cw, zh), z = kern_cols(&zw, pad, C);
        nvl_tensor w = vec_f32(C, wh), y = out2(cs[c].ydt, T, C);
        nvl_err err = {0};
        if (!ran("rmsnorm_gated", kern_rmsnorm_gated(g_be, &y, &x, &z, &w, G, eps, cs[c].with_seqs ? seqs : NULL,
                                                     cs[c].with_seqs ? 3 : 0, &err),
                 &err))
            return;
        float *got = down(&y), *ref = hf((size_t)(T * C));
        double *tv = hd((size_t)C);
        for (int64_t r = 0; r < T; r++) {
            const int dec = cs[c].with_seqs && cs[c].zdt == NVL_DTYPE_BF16 && r == 7;
            for (int64_t i = 0; i < C; i++) {
                const double zz = zh[r * Cw + pad + i];
                tv[i] = xh[r * C + i] * (zz / (1.0 + exp(-zz)));
            }
            for (int64_t g = 0; g < G; g++) {
                double ss = 0;
                for (int64_t i = 0; i < gs; i++) ss += tv[g * gs + i] * tv[g * gs + i];
                const double inv = 1.0 / sqrt(ss / gs + eps);
                for (int64_t i = 0; i < gs; i++) {
                    double t = tv[g * gs + i] * inv;
                    if (dec) t = rb(t);
                    ref[r * C + g * gs + i] = rd(wh[g * gs + i] * t, cs[c].ydt);
                }
            }
        }
        char what[80];
        snprintf(what, sizeof what, "rmsnorm_gated case %zu (G %lld, z %s, y %s%s)", c, (long long)G, dn(cs[c].zdt),
                 dn(cs[c].ydt), cs[c].with_seqs ? ", decode row 7" : "");
        /* decode rows alone, so a dropped rounding there is not diluted by the other rows */
        if (cs[c].with_seqs && cs[c].zdt == NVL_DTYPE_BF16) {
            char w2[96];
            snprintf(w2, sizeof w2, "%s decode row", what);
            cmp_bf16(w2, got + 7 * C, ref + 7 * C, (size_t)C, 2);
        }
        if (cs[c].ydt == NVL_DTYPE_BF16 || (cs[c].with_seqs && cs[c].zdt == NVL_DTYPE_BF16))
            cmp_bf16(what, got, ref, (size_t)(T * C), 2);
        else
            test_compare_f32(what, got, ref, (size_t)(T * C), TOL_F32);
    }
}

static void test_layernorm(void) {
    static const struct { int64_t T, C; nvl_dtype xdt, ydt; } cs[] = {
        {3, 40, NVL_DTYPE_F32, NVL_DTYPE_F32}, {5, 64, NVL_DTYPE_BF16, NVL_DTYPE_BF16},
        /* rows wider than a block's threads (256 on the GPU): every thread holds a partial sum */
        {2, 1100, NVL_DTYPE_F32, NVL_DTYPE_F32}, {3, 600, NVL_DTYPE_BF16, NVL_DTYPE_BF16}};
    const float eps = 1e-6f;
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const int64_t T = cs[c].T, C = cs[c].C;
        float *xh = rand_f((size_t)(T * C), -1, 3), *wh = rand_f((size_t)C, 0.5f, 1.5f), *bh = rand_f((size_t)C, -1, 1);
        nvl_tensor x = act2(cs[c].xdt, T, C, xh), w = vec_f32(C, wh), b = vec_f32(C, bh), y = out2(cs[c].ydt, T, C);
        nvl_err err = {0};
        if (!ran("layernorm", kern_layernorm(g_be, &y, &x, &w, &b, eps, &err), &err)) return;
        float *got = down(&y), *ref = hf((size_t)(T * C));
        for (int64_t t = 0; t < T; t++) {
            double m = 0, v = 0;
            for (int64_t i = 0; i < C; i++) m += xh[t * C + i];
            m /= C;
            for (int64_t i = 0; i < C; i++) v += (xh[t * C + i] - m) * (xh[t * C + i] - m);
            v /= C;
            for (int64_t i = 0; i < C; i++)
                ref[t * C + i] = rd((xh[t * C + i] - m) / sqrt(v + eps) * wh[i] + bh[i], cs[c].ydt);
        }
        char what[64];
        snprintf(what, sizeof what, "layernorm case %zu (%s -> %s)", c, dn(cs[c].xdt), dn(cs[c].ydt));
        cmp(what, cs[c].ydt, got, ref, (size_t)(T * C));
    }
}

/* A NaN reaches the outputs it feeds: no op may turn one into a number (a checkpoint's NaN weight
 * then fails visibly, not as a quietly wrong answer: a NaN in the ViT's first norm came out of the
 * emulated device as finite features: the attention's 1 / L guard wrote 0, and the CPU's vector
 * exp clamped NaN to a bound). layernorm with a NaN weight column; matmul with a NaN in one
 * activation row; GELU and squared ReLU of a NaN (relu2 gave 0); full attention with a NaN in one
 * query row (and in one key: every row of its image). */
static void test_nan_propagates(void) {
    const float nan = NAN;
    nvl_err err = {0};
    for (int d = 0; d < 2; d++) {
        const nvl_dtype dt = d ? NVL_DTYPE_BF16 : NVL_DTYPE_F32;
        { /* layernorm, weight column 3 NaN */
            float *xh = rand_f(2 * 16, -1, 1), *wh = rand_f(16, 0.5f, 1.5f), *bh = rand_f(16, -1, 1);
            wh[3] = nan;
            nvl_tensor x = act2(dt, 2, 16, xh), w = vec_f32(16, wh), b = vec_f32(16, bh), y = out2(dt, 2, 16);
            if (!ran("layernorm (NaN)", kern_layernorm(g_be, &y, &x, &w, &b, 1e-6f, &err), &err)) return;
            float *got = down(&y);
            TEST_CHECK(isnan(got[3]) && isnan(got[16 + 3]) && isfinite(got[0]), "%s layernorm: a NaN weight gives NaN (%g, %g)",
                       dn(dt), got[3], got[16 + 3]);
        }
        { /* matmul, x[1][5] NaN: row 1 NaN, row 0 finite */
            float *xh = rand_f(2 * 32, -1, 1), *wh = rand_f(8 * 32, -0.5f, 0.5f);
            xh[32 + 5] = nan;
            nvl_tensor x = act2(dt, 2, 32, xh), W = weight(dt, 8, 32, wh), y = out2(dt, 2, 8);
            kern_weight kw = kern_weight_plain(&W, "w");
            if (!ran("matmul (NaN)", kern_matmul(g_be, &y, &x, &kw, &err), &err)) return;
            float *got = down(&y);
            int row1 = 1, row0 = 1;
            for (int n = 0; n < 8; n++) row1 &= isnan(got[8 + n]), row0 &= isfinite(got[n]);
            TEST_CHECK(row1 && row0, "%s matmul: a NaN activation makes its row NaN, only it", dn(dt));
        }
        for (int a = 0; a < 2; a++) { /* GELU, squared ReLU (the LM's MLP) */
            const kern_act_fn fn = a ? KERN_ACT_RELU2 : KERN_ACT_GELU_ERF;
            float *xh = rand_f(8, -3, 3);
            xh[2] = nan;
            nvl_tensor x = act2(dt, 1, 8, xh), y = out2(dt, 1, 8);
            if (!ran("bias_act (NaN)", kern_bias_act(g_be, &y, &x, NULL, fn, &err), &err)) return;
            float *got = down(&y);
            TEST_CHECK(isnan(got[2]) && isfinite(got[1]), "%s %s of NaN is NaN (%g)", dn(dt), a ? "relu2" : "GELU", got[2]);
        }
        { /* attention over 2 images of 16 tokens, 2 heads of 16: a NaN in image 0's query row 4, head 0;
             a NaN in image 1's key 7, head 1 */
            const int64_t Ti = 16, H = 2, D = 16, W = H * D;
            float *qh = rand_f((size_t)(2 * Ti * 3 * W), -1, 1);
            qh[(size_t)(4 * 3 * W) + 0] = nan;                          /* q, row 4, head 0 */
            qh[(size_t)((Ti + 7) * 3 * W) + W + D + 3] = nan;          /* k, image 1 row 7, head 1 */
            nvl_tensor qkv = act2(dt, 2 * Ti, 3 * W, qh), o = out2(dt, 2 * Ti, W);
            if (!ran("attention_full (NaN)", kern_attention_full(g_be, &o, &qkv, 2, H, &err), &err)) return;
            float *got = down(&o);
            int q_row = 1, others = 1, k_img = 1;
            for (int64_t c = 0; c < D; c++) q_row &= isnan(got[4 * W + c]);
            for (int64_t c = 0; c < D; c++) others &= isfinite(got[5 * W + c]);
            for (int64_t r = 0; r < Ti; r++)
                for (int64_t c = 0; c < D; c++) k_img &= isnan(got[(Ti + r) * W + D + c]);
            TEST_CHECK(q_row && others && k_img, "%s attention_full: a NaN query makes its row NaN (%d), a NaN key every row "
                       "of its image and head (%d), others finite (%d)", dn(dt), q_row, k_img, others);
        }
    }
}

/* y = a + b[r % rows(b)]; broadcast b, in place, bf16. */
static void test_add(void) {
    static const struct { int64_t T, Tb, C; nvl_dtype dt; int inplace; } cs[] = {
        {4, 4, 24, NVL_DTYPE_F32, 0}, {6, 2, 16, NVL_DTYPE_BF16, 0}, {8, 1, 20, NVL_DTYPE_F32, 1},
        {9, 3, 32, NVL_DTYPE_BF16, 1}};
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const int64_t T = cs[c].T, Tb = cs[c].Tb, C = cs[c].C;
        float *ah = rand_f((size_t)(T * C), -4, 4), *bh = rand_f((size_t)(Tb * C), -4, 4);
        nvl_tensor a = act2(cs[c].dt, T, C, ah), b = act2(cs[c].dt, Tb, C, bh);
        nvl_tensor y = cs[c].inplace ? a : out2(cs[c].dt, T, C);
        nvl_err err = {0};
        if (!ran("add", kern_add(g_be, &y, &a, &b, &err), &err)) return;
        float *got = down(&y), *ref = hf((size_t)(T * C));
        for (int64_t r = 0; r < T; r++)
            for (int64_t i = 0; i < C; i++) ref[r * C + i] = rd((double)ah[r * C + i] + bh[(r % Tb) * C + i], cs[c].dt);
        char what[64];
        snprintf(what, sizeof what, "add case %zu (%lld rows + %lld, %s%s)", c, (long long)T, (long long)Tb,
                 dn(cs[c].dt), cs[c].inplace ? ", in place" : "");
        cmp(what, cs[c].dt, got, ref, (size_t)(T * C));
    }
}

static double act_ref(double v, kern_act_fn a) {
    switch (a) {
    case KERN_ACT_GELU_ERF: return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    case KERN_ACT_RELU2: return v > 0 ? v * v : 0.0;
    case KERN_ACT_SILU: return v / (1.0 + exp(-v));
    default: return v;
    }
}

static void test_bias_act(void) {
    static const struct { kern_act_fn act; int bias; nvl_dtype dt; int inplace; } cs[] = {
        {KERN_ACT_NONE, 1, NVL_DTYPE_F32, 0},     {KERN_ACT_GELU_ERF, 1, NVL_DTYPE_F32, 0},
        {KERN_ACT_GELU_ERF, 1, NVL_DTYPE_BF16, 1}, {KERN_ACT_RELU2, 0, NVL_DTYPE_F32, 0},
        {KERN_ACT_RELU2, 1, NVL_DTYPE_BF16, 0},   {KERN_ACT_SILU, 1, NVL_DTYPE_F32, 1},
        {KERN_ACT_SILU, 0, NVL_DTYPE_BF16, 0},
    };
    const int64_t T = 5, C = 36;
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        float *xh = rand_f((size_t)(T * C), -4, 4), *bh = rand_f((size_t)C, -1, 1);
        nvl_tensor x = act2(cs[c].dt, T, C, xh), b = vec_f32(C, bh);
        nvl_tensor y = cs[c].inplace ? x : out2(cs[c].dt, T, C);
        nvl_err err = {0};
        if (!ran("bias_act", kern_bias_act(g_be, &y, &x, cs[c].bias ? &b : NULL, cs[c].act, &err), &err)) return;
        float *got = down(&y), *ref = hf((size_t)(T * C));
        int excused = 0;
        for (int64_t r = 0; r < T; r++)
            for (int64_t i = 0; i < C; i++) {
                const double v = (double)xh[r * C + i] + (cs[c].bias ? bh[i] : 0.0), e = act_ref(v, cs[c].act);
                ref[r * C + i] = rd(e, cs[c].dt);
                /* GELU as 0.5 v (1 + erf(v / sqrt 2)) (both twins, and PyTorch): for v < -2, 1 + erf
                   cancels, so erf's own error (CUDA's erff: 2 ulps of ~1, 2^-23; glibc's half an
                   ulp) becomes a relative error of up to ~1e-2 in the result, and a bf16 output
                   may round either way where the exact value lies within that error of a rounding
                   boundary. Such an element may hold any rounding within that error (any other is
                   still wrong).
                   Besides erf's error (0.5 |v| 3 2^-24 absolute), the f32 roundings of v = x + b
                   and of v / sqrt 2 move the result by GELU'(v) v 2^-24 each, which relative to
                   GELU(v) is (phi(v) / Phi(v)) |v| 2^-24 ~ v^2 2^-24 in the lower tail (Mills'
                   ratio): (v^2 + 4) 2^-24 |GELU(v)| covers them and the products' roundings. */
                if (cs[c].act == KERN_ACT_GELU_ERF && cs[c].dt == NVL_DTYPE_BF16) {
                    const double d = 0.5 * fabs(v) * 3.0 * ldexp(1.0, -24) + (v * v + 4.0) * ldexp(1.0, -24) * fabs(e);
                    /* (deep in the tail that interval holds several bf16 values: any of them) */
                    const float lo = rd(e - d, cs[c].dt), hi = rd(e + d, cs[c].dt);
                    if (lo != hi && got[r * C + i] >= fminf(lo, hi) && got[r * C + i] <= fmaxf(lo, hi) &&
                        got[r * C + i] != ref[r * C + i]) {
                        ref[r * C + i] = got[r * C + i];
                        excused++;
                    }
                }
            }
        if (excused && getenv("NVL_TEST_VERBOSE")) printf("bias_act case %zu: %d GELU outputs rounded the other way within erf's error\n", c, excused);
        char what[64];
        snprintf(what, sizeof what, "bias_act case %zu (act %d, bias %d, %s)", c, (int)cs[c].act, cs[c].bias, dn(cs[c].dt));
        cmp(what, cs[c].dt, got, ref, (size_t)(T * C));
    }
}

static void test_copy(void) {
    static const struct { nvl_dtype xdt, ydt; int64_t pad; } cs[] = {
        {NVL_DTYPE_F32, NVL_DTYPE_BF16, 0}, {NVL_DTYPE_BF16, NVL_DTYPE_F32, 5}, {NVL_DTYPE_F32, NVL_DTYPE_F32, 3},
        {NVL_DTYPE_BF16, NVL_DTYPE_BF16, 4}};
    const int64_t T = 6, C = 20;
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const int64_t Cw = C + cs[c].pad;
        float *xh = rand_f((size_t)(T * Cw), -3, 3);
        nvl_tensor xw = act2(cs[c].xdt, T, Cw, xh), x = kern_cols(&xw, cs[c].pad, C), y = out2(cs[c].ydt, T, C);
        nvl_err err = {0};
        if (!ran("copy", kern_copy(g_be, &y, &x, &err), &err)) return;
        float *got = down(&y), *ref = hf((size_t)(T * C));
        for (int64_t r = 0; r < T; r++)
            for (int64_t i = 0; i < C; i++) ref[r * C + i] = rd(xh[r * Cw + cs[c].pad + i], cs[c].ydt);
        char what[64];
        snprintf(what, sizeof what, "copy case %zu (%s -> %s, view)", c, dn(cs[c].xdt), dn(cs[c].ydt));
        cmp_exact(what, got, ref, (size_t)(T * C)); /* a conversion: exact */
    }
}

/* clamp(softplus(x + bias), dt_min, dt_max); the add and the softplus each round in y's dtype. */
static void test_dt_softplus(void) {
    static const struct { nvl_dtype dt; float lo, hi; } cs[] = {
        {NVL_DTYPE_F32, 0.0f, INFINITY}, {NVL_DTYPE_F32, 0.05f, 2.0f}, {NVL_DTYPE_BF16, 0.01f, 3.0f},
        {NVL_DTYPE_BF16, 0.0f, INFINITY}};
    const int64_t T = 9, H = 8, Wd = 40, off = 24; /* x: columns [24, 32) of an in_proj-like row */
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        float *xh = rand_f((size_t)(T * Wd), -6, 6), *bh = rand_f((size_t)H, -2, 2);
        for (int64_t r = 0; r < T; r += 3) xh[r * Wd + off] = 21.0f + r; /* the v > 20 branch */
        nvl_tensor xw = act2(cs[c].dt, T, Wd, xh), x = kern_cols(&xw, off, H);
        nvl_tensor b = vec_f32(H, bh), y = out2(cs[c].dt, T, H);
        nvl_err err = {0};
        if (!ran("dt_softplus", kern_dt_softplus(g_be, &y, &x, &b, cs[c].lo, cs[c].hi, &err), &err)) return;
        float *got = down(&y), *ref = hf((size_t)(T * H));
        for (int64_t r = 0; r < T; r++)
            for (int64_t h = 0; h < H; h++) {
                double v = rd((double)xh[r * Wd + off + h] + rd(bh[h], cs[c].dt), cs[c].dt);
                v = v > 20 ? v : log1p(exp(v));
                v = rd(v, cs[c].dt);
                if (v < cs[c].lo) v = cs[c].lo;
                if (v > cs[c].hi) v = cs[c].hi;
                ref[r * H + h] = (float)rd(v, cs[c].dt); /* (clamped to a bound: the bound in y's dtype) */
            }
        char what[64];
        snprintf(what, sizeof what, "dt_softplus case %zu (%s, clamp [%g, %g])", c, dn(cs[c].dt), cs[c].lo, cs[c].hi);
        if (cs[c].dt == NVL_DTYPE_BF16) cmp_bf16(what, got, ref, (size_t)(T * H), 2);
        else test_compare_f32(what, got, ref, (size_t)(T * H), 1e-6, 1e-6, 1e-12);
    }
}

/* Embedding rows, with masked rows taken from the vision rows; an id outside the vocabulary. */
static void test_get_rows(void) {
    static const struct { nvl_dtype tdt, rdt, ydt; int masked; } cs[] = {
        {NVL_DTYPE_F32, NVL_DTYPE_F32, NVL_DTYPE_F32, 0}, {NVL_DTYPE_BF16, NVL_DTYPE_BF16, NVL_DTYPE_BF16, 1},
        {NVL_DTYPE_F32, NVL_DTYPE_F32, NVL_DTYPE_BF16, 1}, /* f32 rows and table rounded into a bf16 y */
        {NVL_DTYPE_BF16, NVL_DTYPE_F32, NVL_DTYPE_F32, 1}};
    const int64_t V = 13, C = 24, T = 8;
    const int32_t ids[8] = {3, 12, 0, 7, 7, 1, 12, 5};
    const uint8_t mask[8] = {0, 1, 1, 0, 0, 1, 0, 0};
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        float *th = rand_f((size_t)(V * C), -1, 1), *rh = rand_f((size_t)(T * C), -2, 2);
        nvl_tensor table = weight(cs[c].tdt, V, C, th);
        nvl_tensor rows = act2(cs[c].rdt, T, C, rh), y = out2(cs[c].ydt, T, C);
        nvl_err err = {0};
        if (!ran("get_rows", kern_get_rows(g_be, &y, &table, ids, cs[c].masked ? &rows : NULL,
                                           cs[c].masked ? mask : NULL, &err),
                 &err))
            return;
        float *got = down(&y), *ref = hf((size_t)(T * C));
        for (int64_t t = 0; t < T; t++)
            for (int64_t i = 0; i < C; i++)
                ref[t * C + i] = rd(cs[c].masked && mask[t] ? rh[t * C + i] : th[ids[t] * C + i], cs[c].ydt);
        char what[64];
        snprintf(what, sizeof what, "get_rows case %zu (table %s, rows %s, y %s, mask %d)", c, dn(cs[c].tdt), dn(cs[c].rdt),
                 dn(cs[c].ydt), cs[c].masked);
        cmp_exact(what, got, ref, (size_t)(T * C));
        /* out of vocabulary (a masked row's id is not looked at) */
        int32_t bad[8];
        memcpy(bad, ids, sizeof bad);
        bad[1] = 99;              /* masked in the masked cases: ignored there */
        bad[4] = (int32_t)V;      /* never masked: must fail */
        TEST_EQ_INT(kern_get_rows(g_be, &y, &table, bad, cs[c].masked ? &rows : NULL, cs[c].masked ? mask : NULL, &err),
                    NVL_ERR_INVALID_ARG);
        bad[4] = -1;
        TEST_EQ_INT(kern_get_rows(g_be, &y, &table, bad, cs[c].masked ? &rows : NULL, cs[c].masked ? mask : NULL, &err),
                    NVL_ERR_INVALID_ARG);
    }
}

// ---------------------------------------------------------------------------
// Sequence ops. One step of three sequences in slots 2, 0, 3 of a 4-slot state (slot 1 is not
// touched): 7 rows (longer than the SSD chunk of 4), 1 decode row, 3 rows; then a padding
// sequence (KERN_SLOT_NONE, a decode row, as a graph's bucket pads): no state touched, its output
// rows zero (the outputs start filled with a marker, so a skipped row that is not written shows).

#define NSLOT 4
#define NSEQS 4
static const kern_seq k_seqs[NSEQS] = {{2, 0, 0, 7, 0}, {0, 1, 7, 1, 5}, {3, 0, 8, 3, 0}, {KERN_SLOT_NONE, 1, 11, 1, 0}};
static const int64_t k_T = 12;

static void conv1d_steps(const char *tag, const kern_seq *seqs, int n_seqs, int64_t T, int64_t Cc) {
    static const struct { nvl_dtype dt; int bias; } cs[] = {
        {NVL_DTYPE_F32, 1}, {NVL_DTYPE_BF16, 1}, {NVL_DTYPE_F32, 0}, {NVL_DTYPE_BF16, 0}};
    const int64_t Kc = 4, off = 5, Wd = Cc + 9; /* x = columns [5, 5 + Cc) of a (T, Cc + 9) tensor */
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        float *xh = rand_f((size_t)(T * Wd), -2, 2), *wh = rand_f((size_t)(Cc * Kc), -1, 1);
        float *bh = rand_f((size_t)Cc, -0.5f, 0.5f), *sh = rand_f((size_t)(NSLOT * Cc * Kc), -2, 2);
        double *sref = hd((size_t)(NSLOT * Cc * Kc));
        for (int64_t i = 0; i < NSLOT * Cc * Kc; i++) sref[i] = sh[i];
        nvl_tensor xw = act2(cs[c].dt, T, Wd, xh), x = kern_cols(&xw, off, Cc);
        nvl_tensor w = act_up(NVL_DTYPE_F32, 2, (int64_t[]){Cc, Kc}, wh), b = vec_f32(Cc, bh);
        nvl_tensor st = act_up(NVL_DTYPE_F32, 3, (int64_t[]){NSLOT, Cc, Kc}, sh);
        nvl_tensor y = out2(cs[c].dt, T, Cc);
        nvl_err err = {0};
        if (!ran("conv1d_causal",
                 kern_conv1d_causal(g_be, &y, &x, &w, cs[c].bias ? &b : NULL, &st, seqs, n_seqs, &err), &err))
            return;
        float *got = down(&y), *gst = down(&st), *ref = hf((size_t)(T * Cc)), *rst = hf((size_t)(NSLOT * Cc * Kc));
        for (int s = 0; s < n_seqs; s++) {
            const kern_seq *q = &seqs[s];
            if (q->slot == KERN_SLOT_NONE) continue; /* ref rows stay 0 */
            double *S = sref + q->slot * Cc * Kc; /* oldest first */
            for (int64_t t = 0; t < q->n_rows; t++)
                for (int64_t ch = 0; ch < Cc; ch++) {
                    double *sc = S + ch * Kc;
                    for (int64_t k = 0; k + 1 < Kc; k++) sc[k] = sc[k + 1];
                    sc[Kc - 1] = xh[(q->row0 + t) * Wd + off + ch];
                    double u = cs[c].bias ? bh[ch] : 0.0;
                    for (int64_t k = 0; k < Kc; k++) u += (double)wh[ch * Kc + k] * sc[k];
                    u = rd(u, cs[c].dt);
                    ref[(q->row0 + t) * Cc + ch] = rd(u / (1.0 + exp(-u)), cs[c].dt);
                }
        }
        for (int64_t i = 0; i < NSLOT * Cc * Kc; i++) rst[i] = (float)sref[i];
        char what[80];
        snprintf(what, sizeof what, "conv1d_causal %s case %zu (%s, bias %d)", tag, c, dn(cs[c].dt), cs[c].bias);
        if (cs[c].dt == NVL_DTYPE_BF16) cmp_bf16(what, got, ref, (size_t)(T * Cc), 2);
        else test_compare_f32(what, got, ref, (size_t)(T * Cc), TOL_F32);
        snprintf(what, sizeof what, "conv1d_causal %s case %zu state (the others untouched)", tag, c);
        cmp_exact(what, gst, rst, (size_t)(NSLOT * Cc * Kc)); /* the state holds inputs: exact */
    }
}

static void test_conv1d(void) {
    conv1d_steps("short (slots 2,0,3)", k_seqs, NSEQS, k_T, 12);
    /* rows the CUDA kernel takes in groups of 16 with 256 channels a block: a sequence of 37 rows
       from position 0 (its window carried across two group boundaries), one of 3 continuing from
       its state that starts inside a group, a padding row, and 300 channels (a partial block) */
    static const kern_seq longer[3] = {{1, 0, 0, 37, 0}, {3, 0, 37, 3, 6}, {KERN_SLOT_NONE, 1, 40, 1, 0}};
    conv1d_steps("long (slots 1,3)", longer, 3, 41, 300);
}

/* The recurrence oracle for one sequence (double). bf16: selective_state_update_ref on bf16
 * tensors: dB = bf16(dt B), dBx = bf16(dB x), S = S dA + dBx (S f32), out = bf16(S.to(bf16) . C),
 * y = bf16(out + bf16(x D)). */
static void ssm_oracle(double *y, double *S, const float *x, const float *dt, const float *A, const float *B,
                       const float *C, const float *D, int64_t T, int64_t H, int64_t P, int64_t N, int64_t G, int bf) {
    const int64_t hpg = H / G;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            const int64_t g = h / hpg;
            const double d = dt[t * H + h], dA = bf ? (double)(float)exp(d * A[h]) : exp(d * A[h]);
            const float *Bt = B + (t * G + g) * N, *Ct = C + (t * G + g) * N;
            for (int64_t p = 0; p < P; p++) {
                const double xv = x[t * H * P + h * P + p];
                double *Sp = S + (h * P + p) * N, acc = 0;
                for (int64_t n = 0; n < N; n++) {
                    if (bf) {
                        Sp[n] = (float)(Sp[n] * dA + rb(rb(d * Bt[n]) * xv));
                        acc += (double)rb(Sp[n]) * Ct[n];
                    } else {
                        Sp[n] = dA * Sp[n] + d * xv * Bt[n];
                        acc += Sp[n] * Ct[n];
                    }
                }
                y[t * H * P + h * P + p] = bf ? rb((double)rb(acc) + rb(xv * D[h])) : acc + D[h] * xv;
            }
        }
}

/* Case c: the scan mode and the dtype of x, B, C and dt; H heads of P over G groups of N state
 * columns; the step's sequences (state slots of NSLOT, initial states random). The oracle is the
 * recurrence in f64 (ssm_oracle); the chunked forms (the CPU twin's, the CUDA k_ssm_chunked's)
 * are the same sums in another order. */
typedef struct { kern_scan_mode mode; nvl_dtype dt; } ssm_case;
static void ssm_steps(const char *label, const ssm_case *cs, size_t n_cases, int64_t H, int64_t P, int64_t N, int64_t G,
                      int64_t chunk, const kern_seq *seqs, int nseq, int64_t T) {
    static const char *mname[] = {"auto", "recurrent", "chunked"};
    const int64_t DI = H * P, GN = G * N;
    /* the conv output (T, 8 + DI + 2 GN): x, B, C are column views of it, dt columns of another */
    const int64_t Wc = 8 + DI + 2 * GN, Wz = 3 + H;
    int slot_used[NSLOT] = {0};
    int64_t decode_row = -1;
    for (int i = 0; i < nseq; i++) {
        if (seqs[i].slot >= 0) slot_used[seqs[i].slot] = 1;
        if (seqs[i].decode && seqs[i].slot >= 0) decode_row = seqs[i].row0;
    }
    for (size_t c = 0; c < n_cases; c++) {
        const nvl_dtype dtp = cs[c].dt;
        float *ch = rand_f((size_t)(T * Wc), -1, 1), *dth = rand_f((size_t)(T * Wz), 0.01f, 0.6f);
        float *Ah = rand_f((size_t)H, -1.5f, -0.1f), *Dh = rand_f((size_t)H, -1, 1);
        float *sh = rand_f((size_t)(NSLOT * DI * N), -1, 1);
        nvl_tensor cw = act2(dtp, T, Wc, ch), dtw = act2(dtp, T, Wz, dth);
        nvl_tensor x = kern_cols(&cw, 8, DI), B = kern_cols(&cw, 8 + DI, GN), C = kern_cols(&cw, 8 + DI + GN, GN);
        nvl_tensor dt = kern_cols(&dtw, 3, H);
        nvl_tensor A = vec_f32(H, Ah), D = vec_f32(H, Dh);
        nvl_tensor st = act_up(NVL_DTYPE_F32, 4, (int64_t[]){NSLOT, H, P, N}, sh);
        nvl_tensor y = out2(NVL_DTYPE_F32, T, DI);
        nvl_err err = {0};
        if (!ran("ssm_scan", kern_ssm_scan(g_be, &y, &x, &dt, &A, &B, &C, &D, &st, G, chunk, cs[c].mode, seqs, nseq, &err),
                 &err))
            return;
        float *got = down(&y), *gst = down(&st);
        float *ref = hf((size_t)(T * DI)), *rst = hf((size_t)(NSLOT * DI * N));
        double *Sd = hd((size_t)(NSLOT * DI * N)), *yd = hd((size_t)(T * DI));
        for (int64_t i = 0; i < NSLOT * DI * N; i++) Sd[i] = sh[i];
        /* contiguous host copies of the views for the oracle */
        float *xs = hf((size_t)(T * DI)), *Bs = hf((size_t)(T * GN)), *Cs = hf((size_t)(T * GN)),
              *ds = hf((size_t)(T * H));
        for (int64_t t = 0; t < T; t++) {
            memcpy(xs + t * DI, ch + t * Wc + 8, (size_t)DI * 4);
            memcpy(Bs + t * GN, ch + t * Wc + 8 + DI, (size_t)GN * 4);
            memcpy(Cs + t * GN, ch + t * Wc + 8 + DI + GN, (size_t)GN * 4);
            memcpy(ds + t * H, dth + t * Wz + 3, (size_t)H * 4);
        }
        int decode_bf = 0;
        for (int s = 0; s < nseq; s++) {
            const kern_seq *q = &seqs[s];
            if (q->slot == KERN_SLOT_NONE) continue; /* yd rows stay 0 */
            const int recurrent = cs[c].mode == KERN_SCAN_RECURRENT || (cs[c].mode == KERN_SCAN_AUTO && q->n_rows == 1);
            const int bf = q->decode && dtp == NVL_DTYPE_BF16 && recurrent;
            decode_bf |= bf;
            ssm_oracle(yd + q->row0 * DI, Sd + q->slot * DI * N, xs + q->row0 * DI, ds + q->row0 * H, Ah,
                       Bs + q->row0 * GN, Cs + q->row0 * GN, Dh, q->n_rows, H, P, N, G, bf);
        }
        for (int64_t i = 0; i < T * DI; i++) ref[i] = (float)yd[i];
        for (int64_t i = 0; i < NSLOT * DI * N; i++) rst[i] = (float)Sd[i];
        /* the magnitudes of every output's and state's terms: the recurrence on |x|, |B|, |C|,
           |D|, |initial state| (dt > 0 and the decays e^(dt A) in (0, 1) as they are) */
        double *ym = hd((size_t)(T * DI)), *Sm = hd((size_t)(NSLOT * DI * N));
        {
            float *xa = hf((size_t)(T * DI)), *Ba = hf((size_t)(T * GN)), *Ca = hf((size_t)(T * GN)), *Da = hf((size_t)H);
            for (int64_t i = 0; i < T * DI; i++) xa[i] = fabsf(xs[i]);
            for (int64_t i = 0; i < T * GN; i++) Ba[i] = fabsf(Bs[i]), Ca[i] = fabsf(Cs[i]);
            for (int64_t i = 0; i < H; i++) Da[i] = fabsf(Dh[i]);
            for (int64_t i = 0; i < NSLOT * DI * N; i++) Sm[i] = fabs((double)sh[i]);
            for (int s = 0; s < nseq; s++) {
                const kern_seq *q = &seqs[s];
                if (q->slot == KERN_SLOT_NONE) continue;
                ssm_oracle(ym + q->row0 * DI, Sm + q->slot * DI * N, xa + q->row0 * DI, ds + q->row0 * H, Ah,
                           Ba + q->row0 * GN, Ca + q->row0 * GN, Da, q->n_rows, H, P, N, G, 0);
            }
        }
        const int chunked = cs[c].mode != KERN_SCAN_RECURRENT; /* the 7- and 3-row sequences */
        /* Bounds. NMSE 1e-8; per element atol + rtol |ref| + gamma mag: an output is a small
           difference of terms of up to ~mag (sums of N products, then of the chunk's rows and
           the carried state), so its f32 error scales with mag, not with |ref|. gamma = (N +
           chunk) u, u = 2^-24, the forward error of sums of N + chunk terms in f32 (Higham 3.1),
           with every rounding taken the same way, as a tensor core's adder may (measured under
           NVL_CUDA_EMU_MMA=rz at the 12B head: worst |diff| / (u mag) printed with
           NVL_TEST_VERBOSE). The recurrence's own sums (one step at a time, in the CPU's order)
           stay within rtol 1e-5. */
        const double atol = 1e-5, rtol = chunked ? 1e-4 : 1e-5, gamma = chunked ? (double)(N + chunk) * 0x1p-24 : 0.0;
        if (getenv("NVL_TEST_VERBOSE")) {
            double wr = 0;
            for (int64_t i = 0; i < T * DI; i++)
                if (ym[i] > 0 && fabs((double)got[i] - ref[i]) / (0x1p-24 * ym[i]) > wr) wr = fabs((double)got[i] - ref[i]) / (0x1p-24 * ym[i]);
            printf("ssm_scan %s case %zu: worst |diff| / (u mag) = %.1f (gamma / u = %.0f)\n", label, c, wr, gamma / 0x1p-24);
        }
        char what[160];
        snprintf(what, sizeof what, "ssm_scan %s case %zu (%s, %s, chunk %lld, H %lld P %lld N %lld)", label, c,
                 mname[cs[c].mode], dn(dtp), (long long)chunk, (long long)H, (long long)P, (long long)N);
        if (decode_bf) {
            /* the decode row is bf16-rounded: compare it apart, the rest as f32 */
            char w2[200];
            snprintf(w2, sizeof w2, "%s decode row bf16", what);
            cmp_bf16(w2, got + decode_row * DI, ref + decode_row * DI, (size_t)DI, 2);
            float *g2 = hf((size_t)(T * DI)), *r2 = hf((size_t)(T * DI));
            memcpy(g2, got, (size_t)(T * DI) * 4);
            memcpy(r2, ref, (size_t)(T * DI) * 4);
            for (int64_t i = decode_row * DI; i < (decode_row + 1) * DI; i++) g2[i] = r2[i] = 0;
            test_compare_f32_mag(what, g2, r2, ym, (size_t)(T * DI), atol, rtol, gamma, 1e-8);
        } else {
            test_compare_f32_mag(what, got, ref, ym, (size_t)(T * DI), atol, rtol, gamma, 1e-8);
        }
        snprintf(what, sizeof what, "ssm_scan %s case %zu state (unused slots untouched)", label, c);
        test_compare_f32_mag(what, gst, rst, Sm, (size_t)(NSLOT * DI * N), atol, rtol, gamma, 1e-8);
        for (int sl = 0; sl < NSLOT; sl++)
            if (!slot_used[sl])
                TEST_CHECK(!memcmp(gst + sl * DI * N, sh + sl * DI * N, (size_t)(DI * N) * 4), "ssm_scan %s case %zu: slot %d changed",
                           label, c, sl);
    }
}

/* one step of three sequences in slots 2, 0, 3 (slot 1 untouched): 7 rows (longer than the SSD
 * chunk of 4), 1 decode row, 3 rows; then a padding sequence (KERN_SLOT_NONE, a decode row, as a
 * graph's bucket pads): no state touched, its output rows zero (the outputs start filled with a
 * marker, so a skipped row that is not written shows). */
static void test_ssm_scan(void) {
    static const ssm_case cs[] = {
        {KERN_SCAN_RECURRENT, NVL_DTYPE_F32}, {KERN_SCAN_CHUNKED, NVL_DTYPE_F32}, {KERN_SCAN_AUTO, NVL_DTYPE_F32},
        {KERN_SCAN_AUTO, NVL_DTYPE_BF16},     {KERN_SCAN_RECURRENT, NVL_DTYPE_BF16}, {KERN_SCAN_CHUNKED, NVL_DTYPE_BF16}};
    ssm_steps("short", cs, sizeof cs / sizeof cs[0], 4, 4, 8, 2, 4, k_seqs, NSEQS, k_T);
}

/* a prefill step as the CUDA chunked kernel takes it (sequences of 32 rows or more, bf16 x, B, C,
 * P and N multiples of 16; chunks of 64): slot 2 continues from its state with 150 rows (three
 * chunks, the last partial), slot 0 starts with 32 (the smallest chunked sequence), slot 3 with
 * 31 (the recurrence's), a padding row; slot 1 untouched. The forced recurrence and f32 inputs
 * run the recurrence for all. The second shape is the 12B model's head (P 80, N 128). */
static void test_ssm_scan_long(void) {
    static const ssm_case cs[] = {{KERN_SCAN_AUTO, NVL_DTYPE_BF16},
                                  {KERN_SCAN_CHUNKED, NVL_DTYPE_BF16},
                                  {KERN_SCAN_RECURRENT, NVL_DTYPE_BF16},
                                  {KERN_SCAN_AUTO, NVL_DTYPE_F32}};
    static const kern_seq seqs[4] = {
        {2, 0, 0, 150, 7}, {0, 0, 150, 32, 0}, {3, 0, 182, 31, 0}, {KERN_SLOT_NONE, 1, 213, 1, 0}};
    ssm_steps("long", cs, sizeof cs / sizeof cs[0], 4, 16, 32, 2, 64, seqs, 4, 214);
    ssm_steps("long 12B head", cs, 1, 2, 80, 128, 1, 64, seqs, 4, 214);
}

/* kv_write then attention_causal over caches of L positions: a first step `pre` (Tp rows) fills
 * some slots, the step `now` (Tn rows) reads them with pos0 > 0 and starts others. Case c:
 * cache dtype, q/o dtype, Hq query heads over Hkv KV heads of Dh. The oracle is the f64 softmax
 * of the stored (dtype-rounded) keys and values; o is compared as cmp does (f32 TOL_F32, bf16 one
 * ulp), which the CUDA flash kernel meets because it splits q and P into bf16 hi + lo (its
 * header). */
typedef struct { nvl_dtype cdt, qdt; int64_t Hq, Hkv, Dh; } att_case;
static void attention_steps(const char *label, const att_case *cs, size_t n_cases, int64_t L, const kern_seq *pre,
                            int npre, int64_t Tp, const kern_seq *now, int nnow, int64_t Tn) {
    for (size_t c = 0; c < n_cases; c++) {
        const int64_t Dh = cs[c].Dh;
        const int64_t Hq = cs[c].Hq, Hkv = cs[c].Hkv, KD = Hkv * Dh, QD = Hq * Dh, grp = Hq / Hkv;
        const size_t ncache = (size_t)(NSLOT * L * KD);
        const nvl_dtype cdt = cs[c].cdt, qdt = cs[c].qdt;
        /* the caches: real storage of their dtype (2-byte bf16), prefilled with random values */
        float *kref = rand_f(ncache, -1, 1), *vref = rand_f(ncache, -1, 1);
        nvl_tensor kc = nvl_tensor_make(cdt, 3, (int64_t[]){NSLOT, L, KD}, NULL), vc = kc;
        kc.device = vc.device = kern_backend_kind_of(g_be) == KERN_BACKEND_KIND_CPU ? NVL_DEVICE_HOST : NVL_DEVICE_CUDA;
        for (int kv = 0; kv < 2; kv++) {
            float *r = kv ? vref : kref;
            nvl_tensor *t = kv ? &vc : &kc;
            t->data = be_alloc(ncache * nvl_dtype_size(cdt));
            if (cdt == NVL_DTYPE_F32) {
                be_put(t->data, r, ncache * 4);
            } else {
                uint16_t *b = hmalloc(ncache * 2);
                for (size_t i = 0; i < ncache; i++) {
                    b[i] = nvl_f32_to_bf16(r[i]);
                    r[i] = nvl_bf16_to_f32(b[i]);
                }
                be_put(t->data, b, ncache * 2);
            }
        }
        nvl_err err = {0};
        const kern_seq *steps[2] = {pre, now};
        const int nseq[2] = {npre, nnow};
        const int64_t Ts[2] = {Tp, Tn};
        float *kh[2], *vh[2];
        for (int s = 0; s < 2; s++) {
            kh[s] = rand_f((size_t)(Ts[s] * KD), -1.5f, 1.5f);
            vh[s] = rand_f((size_t)(Ts[s] * KD), -1, 1);
            nvl_tensor k = act2(qdt, Ts[s], KD, kh[s]), v = act2(qdt, Ts[s], KD, vh[s]);
            if (!ran("kv_write", kern_kv_write(g_be, &kc, &vc, &k, &v, steps[s], nseq[s], &err), &err)) return;
            for (int i = 0; i < nseq[s]; i++) {
                const kern_seq *q = &steps[s][i];
                if (q->slot == KERN_SLOT_NONE) continue; /* writes nothing */
                for (int64_t t = 0; t < q->n_rows; t++)
                    for (int64_t d = 0; d < KD; d++) {
                        const size_t o = ((size_t)q->slot * L + (size_t)(q->pos0 + t)) * KD + d;
                        kref[o] = rd(kh[s][(q->row0 + t) * KD + d], cdt);
                        vref[o] = rd(vh[s][(q->row0 + t) * KD + d], cdt);
                    }
            }
        }
        char what[160];
        snprintf(what, sizeof what, "kv_write %s case %zu (cache %s, k/v %s)", label, c, dn(cdt), dn(qdt));
        float *gk = down(&kc), *gv = down(&vc);
        cmp_exact(what, gk, kref, ncache); /* untouched rows and slot 1 included */
        cmp_exact(what, gv, vref, ncache);
        /* q: columns [8, 8+QD) of a wider (T, QD+8) tensor */
        float *qh2 = rand_f((size_t)(Tn * (QD + 8)), -1.5f, 1.5f);
        nvl_tensor qwide = act2(qdt, Tn, QD + 8, qh2), q = kern_cols(&qwide, 8, QD);
        nvl_tensor o = out2(qdt, Tn, QD);
        if (!ran("attention_causal", kern_attention_causal(g_be, &o, &q, &kc, &vc, Hq, Hkv, now, nnow, &err), &err))
            return;
        float *got = down(&o), *ref = hf((size_t)(Tn * QD));
        double *sc = hd((size_t)L);
        for (int i = 0; i < nnow; i++) {
            const kern_seq *s = &now[i];
            if (s->slot == KERN_SLOT_NONE) continue; /* ref rows stay 0 */
            for (int64_t t = 0; t < s->n_rows; t++)
                for (int64_t h = 0; h < Hq; h++) {
                    const int64_t nk = s->pos0 + t + 1, kvh = h / grp;
                    const float *qt = qh2 + (s->row0 + t) * (QD + 8) + 8 + h * Dh;
                    double mx = -INFINITY, sum = 0;
                    for (int64_t j = 0; j < nk; j++) {
                        const float *kr = kref + ((size_t)s->slot * L + j) * KD + kvh * Dh;
                        double d = 0;
                        for (int64_t e = 0; e < Dh; e++) d += (double)qt[e] * kr[e];
                        sc[j] = d / sqrt((double)Dh);
                        if (sc[j] > mx) mx = sc[j];
                    }
                    for (int64_t j = 0; j < nk; j++) sum += (sc[j] = exp(sc[j] - mx));
                    for (int64_t e = 0; e < Dh; e++) {
                        double a = 0;
                        for (int64_t j = 0; j < nk; j++) a += sc[j] / sum * vref[((size_t)s->slot * L + j) * KD + kvh * Dh + e];
                        ref[(s->row0 + t) * QD + h * Dh + e] = rd(a, qdt);
                    }
                }
        }
        snprintf(what, sizeof what, "attention_causal %s case %zu (cache %s, q/o %s, %lld/%lld heads of %lld)", label, c, dn(cdt), dn(qdt),
                 (long long)Hq, (long long)Hkv, (long long)Dh);
        cmp(what, qdt, got, ref, (size_t)(Tn * QD));
    }
}


/* short steps: an earlier step fills slots 2 and 0; this step reads with pos0 > 0 (slot 2
 * decodes at 4, slot 0 extends from 3) and starts slot 3; slot 1 untouched; a padding sequence.
 * GQA: 4 query heads over 2 KV heads. */
static void test_attention_causal(void) {
    static const att_case cs[] = {{NVL_DTYPE_F32, NVL_DTYPE_F32, 4, 2, 8},
                                  {NVL_DTYPE_BF16, NVL_DTYPE_BF16, 4, 2, 8},
                                  {NVL_DTYPE_BF16, NVL_DTYPE_F32, 6, 2, 8},
                                  {NVL_DTYPE_F32, NVL_DTYPE_BF16, 2, 2, 8}};
    const kern_seq pre[2] = {{2, 0, 0, 4, 0}, {0, 0, 4, 3, 0}};
    const kern_seq now[4] = {{2, 1, 0, 1, 4}, {0, 0, 1, 5, 3}, {3, 0, 6, 2, 0}, {KERN_SLOT_NONE, 1, 8, 1, 0}};
    attention_steps("short", cs, sizeof cs / sizeof cs[0], 12, pre, 2, 7, now, 4, 9);
}

/* a prefill step as the CUDA flash kernel takes it (sequences of 16 rows or more, a bf16 cache,
 * head dims multiples of 16; tiles of 64 query rows and 64 keys): slot 0 extends by 90 rows from
 * 70 (two query tiles, the second partial; its keys cross three key tiles), slot 2 starts with 16
 * rows (the smallest flash sequence), slot 3 with 15 (the row kernel's), slot 1 decodes at 5, and
 * a padding row. The f32 cache case runs the row kernel for all. Dh 128 is the LM's. */
static void test_attention_causal_long(void) {
    static const att_case cs[] = {{NVL_DTYPE_BF16, NVL_DTYPE_BF16, 4, 2, 32},
                                  {NVL_DTYPE_BF16, NVL_DTYPE_F32, 6, 2, 16},
                                  {NVL_DTYPE_BF16, NVL_DTYPE_BF16, 2, 1, 128},
                                  {NVL_DTYPE_F32, NVL_DTYPE_F32, 2, 2, 32}};
    const kern_seq pre[2] = {{0, 0, 0, 70, 0}, {1, 0, 70, 5, 0}};
    const kern_seq now[5] = {
        {0, 0, 0, 90, 70}, {2, 0, 90, 16, 0}, {3, 0, 106, 15, 0}, {1, 1, 121, 1, 5}, {KERN_SLOT_NONE, 1, 122, 1, 0}};
    attention_steps("long", cs, sizeof cs / sizeof cs[0], 200, pre, 2, 75, now, 5, 123);
    /* a step of 64 rows or fewer (the decode rows' key splits and their combine) holding a
       20-row prefill the flash kernel takes: the combine must leave its rows alone */
    const kern_seq mixed[2] = {{1, 1, 0, 1, 5}, {2, 0, 1, 20, 0}};
    attention_steps("mixed", cs, 3, 200, pre, 2, 75, mixed, 2, 21);
    /* 16 query rows over 2,000 keys, the deep end of a long prefill (32 key tiles; also under
       the truncating-adder model, test_ops_emu_mmaalign). Note: a form that carries O through the
       tensor cores' adder across all tiles passes here too (tried: that model cuts 3 bits below
       an f32 ulp, too little to show over 250 products); the flash kernel sums each tile's P V
       apart because the adder's error has one sign on devices (Fasi et al. 2021), not because
       this case would catch it */
    static const att_case deep[] = {{NVL_DTYPE_BF16, NVL_DTYPE_F32, 1, 1, 16}, {NVL_DTYPE_BF16, NVL_DTYPE_F32, 2, 1, 128}};
    const kern_seq far_pre[1] = {{0, 0, 0, 1990, 0}}, far_now[1] = {{0, 0, 0, 16, 1990}};
    attention_steps("deep", deep, 2, 2048, far_pre, 1, 1990, far_now, 1, 16);
}

// ---------------------------------------------------------------------------
// Vision ops

/* F32: softmax(q k^T / sqrt(D)) v. BF16 (both backends): the form of torch's flash attention on
 * bf16 (kernels/ops.h): keys in blocks of 512 with a running max M, each exp(s - M) rounded to
 * bf16 for the product with v, the row sum of the unrounded exps, earlier blocks rescaled when M
 * grows, o = acc / sum rounded. Cases 3 and 4 (600, 1100 keys) cross blocks. */
static void test_attention_full(void) {
    static const struct { int64_t n_img, Ti, H, W; nvl_dtype dt; } cs[] = {
        {2, 5, 2, 16, NVL_DTYPE_F32}, {1, 9, 4, 32, NVL_DTYPE_BF16}, {3, 4, 1, 8, NVL_DTYPE_F32},
        {1, 600, 1, 8, NVL_DTYPE_BF16}, {1, 1100, 2, 16, NVL_DTYPE_BF16},
        /* head dims of 16k: the CUDA tensor-core kernel (query tiles of 64, key tiles of 64 in
           blocks of 512): three images of 70 (tiles cross images), 1100 keys, RADIO-H's 80 */
        {3, 70, 2, 32, NVL_DTYPE_BF16}, {1, 1100, 1, 16, NVL_DTYPE_BF16}, {1, 600, 1, 80, NVL_DTYPE_BF16},
        /* the mma.sync kernel's other head dims (64, 48: 4 and 3 slabs of 16), two images of 130
           (a query tile past each image's end) and 1030 keys (two 512-key blocks and six more) */
        {2, 130, 2, 128, NVL_DTYPE_BF16}, {1, 1030, 1, 48, NVL_DTYPE_BF16}};
    const int flash = 1; /* both backends take the bf16 form for a BF16 o */
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const int64_t n = cs[c].n_img, Ti = cs[c].Ti, H = cs[c].H, W = cs[c].W, D = W / H, R = n * Ti;
        const int bfp = flash && cs[c].dt == NVL_DTYPE_BF16;
        float *qh = rand_f((size_t)(R * 3 * W), -1.5f, 1.5f);
        nvl_tensor qkv = act2(cs[c].dt, R, 3 * W, qh), o = out2(cs[c].dt, R, W);
        nvl_err err = {0};
        if (!ran("attention_full", kern_attention_full(g_be, &o, &qkv, n, H, &err), &err)) return;
        float *got = down(&o), *ref = hf((size_t)(R * W));
        double *sc = hd((size_t)Ti), acc[128], flip = 0;
        for (int64_t im = 0; im < n; im++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t i = 0; i < Ti; i++) {
                    const float *qi = qh + (im * Ti + i) * 3 * W + h * D;
                    for (int64_t j = 0; j < Ti; j++) {
                        const float *kj = qh + (im * Ti + j) * 3 * W + W + h * D;
                        double d = 0;
                        for (int64_t e = 0; e < D; e++) d += (double)qi[e] * kj[e];
                        sc[j] = d / sqrt((double)D);
                    }
                    const int64_t blk = bfp ? 512 : Ti;
                    double M = -INFINITY, sum = 0;
                    for (int64_t e = 0; e < D; e++) acc[e] = 0;
                    for (int64_t j0 = 0; j0 < Ti; j0 += blk) {
                        const int64_t j1 = j0 + blk < Ti ? j0 + blk : Ti;
                        double Mn = M;
                        for (int64_t j = j0; j < j1; j++) Mn = sc[j] > Mn ? sc[j] : Mn;
                        const double f = j0 ? exp(M - Mn) : 0;
                        sum *= f;
                        for (int64_t e = 0; e < D; e++) acc[e] *= f;
                        for (int64_t j = j0; j < j1; j++) {
                            const double ex = exp(sc[j] - Mn), p = bfp ? rb(ex) : ex;
                            sum += ex;
                            for (int64_t e = 0; e < D; e++) acc[e] += p * qh[(im * Ti + j) * 3 * W + 2 * W + h * D + e];
                        }
                        M = Mn;
                    }
                    for (int64_t e = 0; e < D; e++) ref[(im * Ti + i) * W + h * D + e] = rd(acc[e] / sum, cs[c].dt);
                    /* two probabilities rounded the other way (2^-9 of p <= 1 each, times |v| <= 1.5)
                       over this row's sum (the max key counts 1) */
                    if (3.0 / 512 / sum > flip) flip = 3.0 / 512 / sum;
                }
        char what[64];
        snprintf(what, sizeof what, "attention_full case %zu (%lld images, %lld heads, %s)", c, (long long)n,
                 (long long)H, dn(cs[c].dt));
        if (bfp) /* many terms of either sign: outputs a fraction of the terms, so a probability the
                    f64 oracle rounds the other way (flip: two of them in the row with the smallest
                    sum; 1e-5 to 5e-5 at 600 keys) moves a small output by several of its ulps
                    (at 70 keys, 2^-11 on one output of 6720 in one random draw); the NMSE bound
                    still catches a slip in the form (a key too many: 4e-6) */
            test_compare_f32(what, got, ref, (size_t)(R * W), 3e-5 + flip, 0.0078125, 1e-6);
        else
            cmp(what, cs[c].dt, got, ref, (size_t)(R * W));
    }
}

static void test_patchify(void) {
    static const struct { int64_t n, S, p; nvl_dtype ydt; } cs[] = {{2, 8, 4, NVL_DTYPE_F32}, {1, 12, 3, NVL_DTYPE_BF16}};
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const int64_t n = cs[c].n, S = cs[c].S, p = cs[c].p, G = S / p, F = 3 * p * p, R = n * G * G;
        float *th = rand_f((size_t)(n * 3 * S * S), -1, 1);
        nvl_tensor tiles = act_up(NVL_DTYPE_F32, 4, (int64_t[]){n, 3, S, S}, th), y = out2(cs[c].ydt, R, F);
        nvl_err err = {0};
        if (!ran("patchify", kern_patchify(g_be, &y, &tiles, p, &err), &err)) return;
        float *got = down(&y), *ref = hf((size_t)(R * F));
        for (int64_t t = 0; t < n; t++)
            for (int64_t py = 0; py < G; py++)
                for (int64_t px = 0; px < G; px++)
                    for (int64_t ch = 0; ch < 3; ch++)
                        for (int64_t yy = 0; yy < p; yy++)
                            for (int64_t xx = 0; xx < p; xx++)
                                ref[(t * G * G + py * G + px) * F + ch * p * p + yy * p + xx] =
                                    rd(th[((t * 3 + ch) * S + py * p + yy) * S + px * p + xx], cs[c].ydt);
        char what[64];
        snprintf(what, sizeof what, "patchify case %zu (S %lld, p %lld, %s)", c, (long long)S, (long long)p, dn(cs[c].ydt));
        cmp_exact(what, got, ref, (size_t)(R * F));
    }
}

/* RGB8 tiles (n, S, S, 3) -> (n, 3, S, S) f32: (x / 255 - mean) / std in f32, bit for bit (the
 * host formula of vision/preprocess.c; every byte value 0..255 appears in each channel). A swapped
 * channel or HWC read as CHW fails the exact comparison. Bad shapes, dtypes and a zero std are
 * refused. */
static void test_normalize_rgb8(void) {
    static const int64_t cases[][2] = {{1, 16}, {3, 32}}; /* n, S */
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, sd[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int64_t n = cases[c][0], S = cases[c][1], N = n * S * S * 3;
        uint8_t *xh = hmalloc((size_t)N);
        for (int64_t i = 0; i < N; i++) xh[i] = (uint8_t)(i < 768 ? (uint64_t)(i / 3) : test_rng_next(&g_rng) >> 56);
        nvl_tensor x = nvl_tensor_make(NVL_DTYPE_U8, 4, (int64_t[]){n, S, S, 3}, be_alloc((size_t)N));
        x.device = kern_backend_kind_of(g_be) == KERN_BACKEND_KIND_CPU ? NVL_DEVICE_HOST : NVL_DEVICE_CUDA;
        be_put(x.data, xh, (size_t)N);
        nvl_tensor y = out2(NVL_DTYPE_F32, n * 3, S * S);
        y = nvl_tensor_make(NVL_DTYPE_F32, 4, (int64_t[]){n, 3, S, S}, y.data);
        y.device = x.device;
        nvl_err err = {0};
        if (!ran("normalize_rgb8", kern_normalize_rgb8(g_be, &y, &x, mean, sd, &err), &err)) return;
        float *got = down(&y), *ref = hf((size_t)N);
        for (int64_t t = 0; t < n; t++)
            for (int ch = 0; ch < 3; ch++)
                for (int64_t i = 0; i < S * S; i++) {
                    volatile float q = (float)xh[(t * S * S + i) * 3 + ch] / 255.0f; /* f32 steps, no contraction */
                    volatile float d = q - mean[ch];
                    ref[(t * 3 + ch) * S * S + i] = d / sd[ch];
                }
        char what[64];
        snprintf(what, sizeof what, "normalize_rgb8 case %zu (n %lld, S %lld)", c, (long long)n, (long long)S);
        cmp_exact(what, got, ref, (size_t)N);
    }
    nvl_err err = {0};
    nvl_tensor x = nvl_tensor_make(NVL_DTYPE_U8, 4, (int64_t[]){1, 4, 4, 3}, be_alloc(48));
    nvl_tensor y = nvl_tensor_make(NVL_DTYPE_F32, 4, (int64_t[]){1, 3, 4, 4}, be_alloc(48 * 4));
    nvl_tensor x3 = nvl_tensor_make(NVL_DTYPE_U8, 4, (int64_t[]){1, 4, 4, 4}, x.data);
    nvl_tensor yb = nvl_tensor_make(NVL_DTYPE_BF16, 4, (int64_t[]){1, 3, 4, 4}, y.data);
    const float m0[3] = {0, 0, 0}, s1[3] = {1, 1, 1}, s0[3] = {1, 0, 1};
    TEST_EQ_INT(kern_normalize_rgb8(g_be, &y, &x3, m0, s1, &err), NVL_ERR_SHAPE);
    TEST_EQ_INT(kern_normalize_rgb8(g_be, &yb, &x, m0, s1, &err), NVL_ERR_SHAPE);
    TEST_EQ_INT(kern_normalize_rgb8(g_be, &y, &x, m0, s0, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "channel 1");
}

/* Greedy argmax per row against llm_sampler's sequential rule (first index of the maximum; NaN
 * never wins), -1 where its pick is not finite (NaN at index 0, a row of -inf, an infinite
 * maximum): ties planted (the later copy must lose), NaNs, a row of -inf, a NaN first, +inf,
 * values spread over a long row (V = 5003: not a multiple of any block). */
static void test_argmax_rows(void) {
    static const nvl_dtype dts[] = {NVL_DTYPE_F32, NVL_DTYPE_BF16};
    const int64_t R = 8, V = 5003;
    for (size_t c = 0; c < 2; c++) {
        float *xh = rand_f((size_t)(R * V), -4, 4);
        float *r0 = xh, *r1 = xh + V, *r2 = xh + 2 * V, *r3 = xh + 3 * V, *r4 = xh + 4 * V, *r5 = xh + 5 * V,
              *r7 = xh + 7 * V;
        r0[4001] = 9.0f, r0[17] = 9.0f;              /* tie: 17 wins */
        r1[2] = NAN, r1[3000] = 8.0f, r1[4999] = NAN; /* NaN elsewhere: ignored */
        for (int64_t j = 0; j < V; j++) r2[j] = -INFINITY;
        r3[0] = NAN, r3[10] = 100.0f;                /* NaN first: -1 (the loop's pick is NaN) */
        r4[V - 1] = 50.0f;                           /* the last element */
        r5[0] = 50.0f, r5[V - 1] = 50.0f;            /* tie with index 0 */
        r7[77] = INFINITY;                           /* an overflow: -1 */
        nvl_tensor x = act2(dts[c], R, V, xh);       /* xh rounded to the dtype in place */
        int32_t got[8], ref[8];
        nvl_err err = {0};
        if (!ran("argmax_rows", kern_argmax_rows(g_be, got, &x, &err), &err)) return;
        for (int64_t r = 0; r < R; r++) {
            const float *v = xh + r * V;
            int32_t b = 0;
            for (int64_t i = 1; i < V; i++)
                if (v[i] > v[b]) b = (int32_t)i;
            ref[r] = isfinite(v[b]) ? b : -1;
        }
        TEST_CHECK(ref[0] == 17 && ref[1] == 3000 && ref[2] == -1 && ref[3] == -1 && ref[4] == V - 1 && ref[5] == 0 &&
                       ref[6] >= 0 && ref[7] == -1,
                   "argmax oracle plants");
        for (int64_t r = 0; r < R; r++)
            TEST_CHECK(got[r] == ref[r], "argmax_rows case %zu (%s) row %lld: %d, expected %d", c, dn(dts[c]), (long long)r,
                       got[r], ref[r]);
    }
}

static void test_pixel_shuffle(void) {
    static const struct { int64_t n, g, c; nvl_dtype dt; } cs[] = {{2, 4, 3, NVL_DTYPE_F32}, {1, 6, 5, NVL_DTYPE_BF16}};
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const int64_t n = cs[c].n, g = cs[c].g, C = cs[c].c, h = g / 2;
        float *xh = rand_f((size_t)(n * g * g * C), -1, 1);
        nvl_tensor x = act_up(cs[c].dt, 4, (int64_t[]){n, g, g, C}, xh);
        float *yh = hf((size_t)(n * h * h * 4 * C));
        nvl_tensor y = act_up(cs[c].dt, 4, (int64_t[]){n, h, h, 4 * C}, yh);
        nvl_err err = {0};
        if (!ran("pixel_shuffle", kern_pixel_shuffle(g_be, &y, &x, &err), &err)) return;
        float *got = down(&y), *ref = hf((size_t)(n * h * h * 4 * C));
        for (int64_t t = 0; t < n; t++)
            for (int64_t k = 0; k < h; k++)
                for (int64_t j = 0; j < h; j++)
                    for (int q = 0; q < 4; q++)
                        for (int64_t e = 0; e < C; e++)
                            ref[((t * h + k) * h + j) * 4 * C + q * C + e] =
                                xh[((t * g + 2 * k + q / 2) * g + 2 * j + q % 2) * C + e];
        char what[64];
        snprintf(what, sizeof what, "pixel_shuffle case %zu (g %lld, c %lld, %s)", c, (long long)g, (long long)C,
                 dn(cs[c].dt));
        cmp_exact(what, got, ref, (size_t)(n * h * h * 4 * C));
    }
}

static void test_evs_scores(void) {
    const int64_t F = 4, Tf = 5, D = 16;
    for (int round = 0; round < 2; round++) {
        float *eh = rand_f((size_t)(F * Tf * D), -1, 1);
        /* one token nearly unchanged between frames 1 and 2 (1 - cos near 0) */
        for (int64_t d = 0; d < D; d++) eh[(2 * Tf + 3) * D + d] = eh[(1 * Tf + 3) * D + d] * 1.01f;
        nvl_tensor E = act_up(NVL_DTYPE_F32, 3, (int64_t[]){F, Tf, D}, eh);
        float *dh = hf((size_t)(F * Tf));
        nvl_tensor dis = act_up(NVL_DTYPE_F32, 2, (int64_t[]){F, Tf}, dh);
        nvl_err err = {0};
        if (!ran("evs_scores", kern_evs_scores(g_be, &dis, &E, round, &err), &err)) return;
        float *got = down(&dis), *ref = hf((size_t)(F * Tf));
        for (int64_t t = 0; t < Tf; t++) ref[t] = 255.0f;
        for (int64_t f = 1; f < F; f++)
            for (int64_t t = 0; t < Tf; t++) {
                const float *a = eh + (f * Tf + t) * D, *b = eh + ((f - 1) * Tf + t) * D;
                double dot = 0, na = 0, nb = 0;
                for (int64_t d = 0; d < D; d++) {
                    dot += (double)a[d] * b[d];
                    na += (double)a[d] * a[d];
                    nb += (double)b[d] * b[d];
                }
                double den = sqrt(na) * sqrt(nb);
                if (den < 1e-8) den = 1e-8;
                const double cs = dot / den;
                ref[f * Tf + t] = round ? rb(1.0 - rb(cs)) : (float)(1.0 - cs);
            }
        char what[64];
        snprintf(what, sizeof what, "evs_scores (round_bf16 %d)", round);
        if (round) cmp_bf16(what, got, ref, (size_t)(F * Tf), 2);
        else test_compare_f32(what, got, ref, (size_t)(F * Tf), 1e-6, 1e-6, 1e-12);
    }
}

// ---------------------------------------------------------------------------
// Errors (checked in ops.c before dispatch, so the same on every backend)

static void test_errors(void) {
    nvl_err err = {0};
    float *h = rand_f(4096, -1, 1);
    nvl_tensor x = act2(NVL_DTYPE_F32, 4, 16, h), y = out2(NVL_DTYPE_F32, 4, 8), y16 = out2(NVL_DTYPE_F32, 4, 16);
    nvl_tensor W = weight(NVL_DTYPE_F32, 8, 12, rand_f(96, -1, 1));
    kern_weight kw = kern_weight_plain(&W, "w");
    TEST_EQ_INT(kern_matmul(g_be, &y, &x, &kw, &err), NVL_ERR_SHAPE); /* K 16 vs 12 */
    nvl_tensor w15 = vec_f32(15, rand_f(15, -1, 1)), w16 = vec_f32(16, rand_f(16, -1, 1));
    TEST_EQ_INT(kern_rmsnorm(g_be, &y16, &x, &w15, 1e-5f, &err), NVL_ERR_SHAPE);
    TEST_EQ_INT(kern_rmsnorm(g_be, &y, &x, &w16, 1e-5f, &err), NVL_ERR_SHAPE); /* y [4,8] */
    TEST_EQ_INT(kern_rmsnorm_gated(g_be, &y16, &x, &x, &w16, 3, 1e-5f, NULL, 0, &err), NVL_ERR_SHAPE); /* 3 !| 16 */
    nvl_tensor b3 = act2(NVL_DTYPE_F32, 3, 16, rand_f(48, -1, 1));
    TEST_EQ_INT(kern_add(g_be, &y16, &x, &b3, &err), NVL_ERR_SHAPE); /* 3 rows do not divide 4 */
    TEST_EQ_INT(kern_bias_act(g_be, &y16, &x, NULL, (kern_act_fn)9, &err), NVL_ERR_INVALID_ARG);
    nvl_tensor xv = kern_cols(&x, 2, 8);
    xv.stride[1] = 2; /* last dimension not contiguous */
    TEST_EQ_INT(kern_copy(g_be, &y, &xv, &err), NVL_ERR_INVALID_ARG);
    /* get_rows: mask set but no rows */
    nvl_tensor tab = weight(NVL_DTYPE_F32, 5, 16, rand_f(80, -1, 1));
    const int32_t ids[4] = {0, 1, 2, 3};
    const uint8_t mask[4] = {0, 1, 0, 0};
    TEST_EQ_INT(kern_get_rows(g_be, &y16, &tab, ids, NULL, mask, &err), NVL_ERR_INVALID_ARG);
    TEST_EQ_INT(kern_get_rows(g_be, &y16, &tab, NULL, NULL, NULL, &err), NVL_ERR_INVALID_ARG);
    /* the step's tables: sequences inside the rows, ids present; a padding sequence is accepted */
    {
        const kern_seq st_ok[2] = {{0, 1, 0, 1, 3}, {KERN_SLOT_NONE, 1, 1, 1, 0}}, st_bad[1] = {{0, 0, 1, 4, 0}};
        const int32_t st_ids[2] = {5, 0};
        TEST_EQ_INT(kern_step_tables(g_be, st_ok, 2, st_ids, NULL, 2, &err), NVL_OK);
        TEST_EQ_INT(kern_step_tables(g_be, st_bad, 1, st_ids, NULL, 2, &err), NVL_ERR_INVALID_ARG);
        TEST_EQ_INT(kern_step_tables(g_be, st_ok, 2, NULL, NULL, 2, &err), NVL_ERR_INVALID_ARG);
    }
    /* sequence ops: slot out of range, rows outside the step */
    nvl_tensor cw = act_up(NVL_DTYPE_F32, 2, (int64_t[]){16, 4}, rand_f(64, -1, 1));
    nvl_tensor cst = act_up(NVL_DTYPE_F32, 3, (int64_t[]){2, 16, 4}, rand_f(128, -1, 1));
    const kern_seq bad_slot[1] = {{2, 0, 0, 4, 0}}, neg_slot[1] = {{-2, 0, 0, 4, 0}}, bad_rows[1] = {{0, 0, 2, 3, 0}};
    TEST_EQ_INT(kern_conv1d_causal(g_be, &y16, &x, &cw, NULL, &cst, bad_slot, 1, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "slot 2");
    TEST_EQ_INT(kern_conv1d_causal(g_be, &y16, &x, &cw, NULL, &cst, neg_slot, 1, &err), NVL_ERR_INVALID_ARG);
    TEST_EQ_INT(kern_conv1d_causal(g_be, &y16, &x, &cw, NULL, &cst, bad_rows, 1, &err), NVL_ERR_INVALID_ARG);
    /* sequences out of row order, or one over another */
    const kern_seq unordered[2] = {{0, 0, 2, 2, 0}, {1, 0, 0, 2, 0}}, overlap[2] = {{0, 0, 0, 3, 0}, {1, 0, 2, 2, 0}};
    TEST_EQ_INT(kern_conv1d_causal(g_be, &y16, &x, &cw, NULL, &cst, unordered, 2, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "sequence 1 starts at row 0");
    TEST_EQ_INT(kern_conv1d_causal(g_be, &y16, &x, &cw, NULL, &cst, overlap, 2, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "inside or before sequence 0");
    nvl_tensor cw3 = act_up(NVL_DTYPE_F32, 2, (int64_t[]){15, 4}, rand_f(60, -1, 1));
    const kern_seq ok1[1] = {{1, 0, 0, 4, 0}};
    TEST_EQ_INT(kern_conv1d_causal(g_be, &y16, &x, &cw3, NULL, &cst, ok1, 1, &err), NVL_ERR_SHAPE);
    /* ssm_scan: H=2 P=8 N=4 G=1 */
    nvl_tensor sst = act_up(NVL_DTYPE_F32, 4, (int64_t[]){2, 2, 8, 4}, rand_f(128, -1, 1));
    nvl_tensor dt = act2(NVL_DTYPE_F32, 4, 2, rand_f(8, 0, 1)), BC = act2(NVL_DTYPE_F32, 4, 4, rand_f(16, -1, 1));
    nvl_tensor A = vec_f32(2, rand_f(2, -1, 0)), Dv = vec_f32(2, rand_f(2, -1, 1));
    TEST_EQ_INT(kern_ssm_scan(g_be, &y16, &x, &dt, &A, &BC, &BC, &Dv, &sst, 1, 0, KERN_SCAN_AUTO, ok1, 1, &err),
                NVL_ERR_SHAPE); /* chunk 0 */
    TEST_EQ_INT(kern_ssm_scan(g_be, &y16, &x, &dt, &A, &BC, &BC, &Dv, &sst, 1, 4, KERN_SCAN_AUTO, bad_slot, 1, &err),
                NVL_ERR_INVALID_ARG);
    TEST_EQ_INT(kern_ssm_scan(g_be, &y16, &x, &dt, &A, &BC, &BC, &Dv, &sst, 3, 4, KERN_SCAN_AUTO, ok1, 1, &err),
                NVL_ERR_SHAPE); /* B has 4 columns, not 3 groups x 4 */
    nvl_tensor yb = out2(NVL_DTYPE_BF16, 4, 16);
    TEST_EQ_INT(kern_ssm_scan(g_be, &yb, &x, &dt, &A, &BC, &BC, &Dv, &sst, 1, 4, KERN_SCAN_AUTO, ok1, 1, &err),
                NVL_ERR_DTYPE); /* y must be F32 */
    /* KV: 2 slots of 3 positions, 2 KV heads of 8 */
    nvl_tensor kc = act_up(NVL_DTYPE_F32, 3, (int64_t[]){2, 3, 16}, rand_f(96, -1, 1));
    nvl_tensor vc = act_up(NVL_DTYPE_F32, 3, (int64_t[]){2, 3, 16}, rand_f(96, -1, 1));
    const kern_seq past[1] = {{1, 0, 0, 2, 2}}; /* positions 2..3 of 3 */
    TEST_EQ_INT(kern_kv_write(g_be, &kc, &vc, &x, &x, past, 1, &err), NVL_ERR_LIMIT);
    TEST_EQ_INT(kern_kv_write(g_be, &kc, &vc, &x, &x, bad_slot, 1, &err), NVL_ERR_INVALID_ARG);
    TEST_EQ_INT(kern_attention_causal(g_be, &y16, &x, &kc, &vc, 3, 2, ok1, 1, &err), NVL_ERR_SHAPE); /* 3 % 2 */
    TEST_EQ_INT(kern_attention_causal(g_be, &y16, &x, &kc, &vc, 2, 2, bad_slot, 1, &err), NVL_ERR_INVALID_ARG);
    TEST_EQ_INT(kern_attention_causal(g_be, &y16, &x, &kc, &vc, 2, 2, past, 1, &err), NVL_ERR_LIMIT);
    TEST_CONTAINS(err.msg, "its 3 KV rows"); /* the message names the cache's positions */
    nvl_tensor kb = nvl_tensor_make(NVL_DTYPE_BF16, 3, (int64_t[]){2, 3, 16}, be_alloc(2 * 3 * 16 * 2));
    TEST_EQ_INT(kern_attention_causal(g_be, &y16, &x, &kb, &vc, 2, 2, ok1, 1, &err), NVL_ERR_SHAPE); /* dtypes differ */
    /* vision */
    nvl_tensor qkv = act2(NVL_DTYPE_F32, 4, 16, h); /* 16 is not 3 W */
    TEST_EQ_INT(kern_attention_full(g_be, &y16, &qkv, 1, 2, &err), NVL_ERR_SHAPE);
    nvl_tensor tiles = act_up(NVL_DTYPE_F32, 4, (int64_t[]){1, 3, 6, 6}, h);
    TEST_EQ_INT(kern_patchify(g_be, &y16, &tiles, 4, &err), NVL_ERR_SHAPE); /* 6 % 4 */
    nvl_tensor px = act_up(NVL_DTYPE_F32, 4, (int64_t[]){1, 3, 3, 2}, h);
    TEST_EQ_INT(kern_pixel_shuffle(g_be, &y16, &px, &err), NVL_ERR_SHAPE); /* g odd */
    nvl_tensor E = act_up(NVL_DTYPE_F32, 3, (int64_t[]){2, 3, 4}, h);
    nvl_tensor dis5 = act_up(NVL_DTYPE_F32, 1, (int64_t[]){5}, h);
    TEST_EQ_INT(kern_evs_scores(g_be, &dis5, &E, 0, &err), NVL_ERR_SHAPE);
}

/* The per-op profile (kern_backend_profile): every op call counted once under its key, matmuls
 * by weight name with layer numbers folded; the report starts over;
 * off: nothing kept. */
static void test_profile(void) {
    const int64_t T = 3, K = 32, N = 16;
    float *xh = rand_f((size_t)(T * K), -1, 1), *wh = rand_f((size_t)(N * K), -0.5f, 0.5f), *nh = rand_f((size_t)K, 0.5f, 1.5f);
    nvl_tensor x = act2(NVL_DTYPE_F32, T, K, xh), W = weight(NVL_DTYPE_F32, N, K, wh), nw = vec_f32(K, nh);
    nvl_tensor y = out2(NVL_DTYPE_F32, T, N), xn = out2(NVL_DTYPE_F32, T, K);
    kern_weight w3 = kern_weight_plain(&W, "model.layers.3.in_proj.weight"), w12 = kern_weight_plain(&W, "model.layers.12.in_proj.weight");
    nvl_err err = {0};
    TEST_CHECK(!kern_backend_profiling(g_be), "profiling starts off");
    kern_backend_profile(g_be, 1);
    TEST_EQ_INT(kern_matmul(g_be, &y, &x, &w3, &err), NVL_OK);
    TEST_EQ_INT(kern_matmul(g_be, &y, &x, &w12, &err), NVL_OK);
    TEST_EQ_INT(kern_rmsnorm(g_be, &xn, &x, &nw, 1e-5f, &err), NVL_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    TEST_EQ_INT(kern_backend_profile_report(g_be, f, "t"), 2);
    fclose(f);
    TEST_CONTAINS(buf, "in 3 op calls");
    const char *m = strstr(buf, "matmul model.layers.#.in_proj.weight"), *r = strstr(buf, "  rmsnorm\n");
    TEST_CHECK(m && r, "report keys: %s", buf);
    if (m) { /* "  ms  share  calls  ms/call  key": the matmul line says 2 calls */
        const char *ls = m;
        while (ls > buf && ls[-1] != '\n') ls--;
        double ms = -1, share = -1, mpc = -1;
        long long calls = -1;
        TEST_CHECK(sscanf(ls, "%lf %lf%% %lld %lf", &ms, &share, &calls, &mpc) == 4 && calls == 2 && ms > 0,
                   "matmul line: %.60s", ls);
    }
    free(buf);
    buf = NULL;
    f = open_memstream(&buf, &len);
    TEST_EQ_INT(kern_backend_profile_report(g_be, f, "again"), 0); /* started over */
    fclose(f);
    TEST_CONTAINS(buf, "in 0 op calls");
    free(buf);
    kern_backend_profile(g_be, 0);
    TEST_EQ_INT(kern_matmul(g_be, &y, &x, &w3, &err), NVL_OK);
    TEST_EQ_INT(kern_backend_profile_report(g_be, stdout, "off"), 0);
}

/* Host f32 rows into backend tensors of F32 / BF16 (the vision splice, the projector input) and
 * back: a BF16 destination holds the nearest-even bf16 of each value (exact), with a row stride
 * wider than the row; back to the host gives those values. */
static void test_host_rows(void) {
    const int64_t R = 3, C = 37, LD = 40;
    float src[3 * 37], back[3 * 37];
    uint64_t rng = 0x5151;
    for (int i = 0; i < R * C; i++) src[i] = 3.0f * test_rng_uniform(&rng);
    const nvl_dtype dts[] = {NVL_DTYPE_F32, NVL_DTYPE_BF16};
    for (int d = 0; d < 2; d++) {
        void *buf = NULL;
        nvl_err err = {0};
        TEST_EQ_INT(kern_buffer_alloc(g_be, kern_act_bytes(g_be, dts[d], R * LD), &buf, &err), NVL_OK);
        nvl_tensor t = kern_act(g_be, dts[d], 2, (int64_t[]){R, LD}, buf);
        t = kern_cols(&t, 0, C);
        TEST_EQ_INT(kern_from_host_f32(g_be, &t, src, &err), NVL_OK);
        TEST_EQ_INT(kern_to_host_f32(g_be, back, &t, &err), NVL_OK);
        int ok = 1;
        for (int i = 0; i < R * C; i++) ok &= back[i] == (dts[d] == NVL_DTYPE_BF16 ? nvl_round_bf16(src[i]) : src[i]);
        TEST_CHECK(ok, "host rows through a %s tensor come back as its values", nvl_dtype_name(dts[d]));
        kern_buffer_free(g_be, buf);
    }
}

int main(int argc, char **argv) {
    const char *name = "cpu";
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) name = argv[++i];
    nvl_err err = {0};
    if (!strcmp(name, "cuda")) {
        const char *why = NULL;
        if (kern_cuda_device_count(&why) == 0) test_skip("no CUDA device: %s", why ? why : "none");
    }
    nvl_status st = kern_backend_init(&g_be, name, &err);
    if (st == NVL_ERR_NO_DEVICE) test_skip("%s", err.msg);
    if (st != NVL_OK) {
        fprintf(stderr, "backend '%s': %s\n", name, err.msg);
        return 1;
    }
    printf("backend: %s\n", kern_backend_description(g_be));
    test_host_rows();
    test_profile();
    test_matmul();
    test_matmul_bias();
    test_matmul_quant();
    test_rmsnorm();
    test_rmsnorm_gated();
    test_layernorm();
    test_nan_propagates();
    test_add();
    test_bias_act();
    test_copy();
    test_dt_softplus();
    test_get_rows();
    test_conv1d();
    test_ssm_scan();
    test_ssm_scan_long();
    test_attention_causal();
    test_attention_causal_long();
    test_attention_full();
    test_patchify();
    test_pixel_shuffle();
    test_normalize_rgb8();
    test_argmax_rows();
    test_evs_scores();
    test_errors();
    for (int i = 0; i < g_ndev; i++) kern_buffer_free(g_be, g_dev[i]);
    for (int i = 0; i < g_nhost; i++) free(g_host[i]);
    kern_backend_free(g_be);
    printf("%d op calls ran, %d skipped (op missing on this backend)\n", g_ran, g_skipped);
    if (g_skipped && !g_ran && !g_test_fail) test_skip("backend '%s' has none of the ops", name);
    return test_report();
}
