/* FP8 and NVFP4 (ModelOpt formats, quant-formats.md):
 *   - the E4M3 and E2M1 roundings at their boundaries (the tie rules of §1/§2);
 *   - the quantized matmul op against a naive double oracle that follows the formulas literally
 *     (activation quantize-dequantize, dequantized weights), F32 and BF16 outputs;
 *   - loading: a quantized copy of tests/data/llm/cfgA written here runs, and every damaged scale
 *     (missing, NaN, zero, negative, wrong shape or dtype, quantized but excluded, no config) is
 *     refused with the tensor's name;
 *   - goldens made by nvidia-modelopt itself (tests/reference/gen_quant_goldens.py): the per-module
 *     matmuls and the model's logits (checked in test_quant_golden below when present).
 * Bounds: the op and the oracle see the same quantized values (exact in f32), the sums differ only
 * in order: f32 accumulation over K <= 96 terms against double, atol 1e-5 + rtol 1e-5, NMSE 1e-11. */
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/mapped_file.h"
#include "base/safetensors.h"
#include "llm.h"
#include "ops.h"
#include "st_writer.h"
#include "test_util.h"

static void test_roundings(void) {
    /* E4M3: saturation, ties to even, subnormals, every finite code round-trips */
    TEST_EQ_INT(nvl_f32_to_e4m3_sat(448.0f), 0x7e);
    TEST_EQ_INT(nvl_f32_to_e4m3_sat(1e9f), 0x7e);
    TEST_EQ_INT(nvl_f32_to_e4m3_sat(-500.0f), 0xfe);
    TEST_EQ_INT(nvl_f32_to_e4m3_sat(1.0f), 0x38);
    TEST_EQ_INT(nvl_f32_to_e4m3_sat(1.0625f), 0x38); /* tie between 1 and 1.125: even mantissa 0 */
    TEST_EQ_INT(nvl_f32_to_e4m3_sat(1.1875f), 0x3a); /* tie between 1.125 and 1.25: even mantissa 2 */
    TEST_EQ_INT(nvl_f32_to_e4m3_sat(0.001953125f), 0x01); /* 2^-9, the smallest subnormal */
    TEST_EQ_INT(nvl_f32_to_e4m3_sat(0.0009765625f), 0x00); /* 2^-10: tie to 0 (even) */
    TEST_EQ_INT(nvl_f32_to_e4m3_sat(0.0146484375f), 0x08); /* 7.5 * 2^-9: tie between 7 and 8 steps -> 2^-6 */
    TEST_EQ_INT(nvl_f32_to_e4m3_sat(NAN), 0x7f);
    int rt = 1;
    for (int c = 0; c < 256; c++) {
        if ((c & 0x7f) == 0x7f || c == 0x80) continue;
        rt &= nvl_f32_to_e4m3_sat(nvl_f8e4m3_to_f32((uint8_t)c)) == c;
    }
    TEST_CHECK(rt, "every finite E4M3 code round-trips");
    /* E2M1 thresholds of ModelOpt's kernels */
    const float in[] = {0.25f, 0.26f, 0.75f, 1.25f, 1.3f, 1.75f, 2.5f, 2.6f, 3.5f, 5.0f, 5.1f, 7.0f, -0.75f, -5.0f};
    const float want[] = {0.0f, 0.5f, 1.0f, 1.0f, 1.5f, 2.0f, 2.0f, 3.0f, 4.0f, 4.0f, 6.0f, 6.0f, -1.0f, -4.0f};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        TEST_CHECK(nvl_e2m1_quantize(in[i]) == want[i], "e2m1(%g) = %g, expected %g", (double)in[i],
                   (double)nvl_e2m1_quantize(in[i]), (double)want[i]);
}

static const float k_e2m1[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};

/* A random FP8 or NVFP4 weight (N, K) with valid scales, as ModelOpt exports it. */
typedef struct qweight {
    uint8_t *w, *bs;
    float ws, is;
} qweight;

static qweight make_q(int fp8, int64_t N, int64_t K, uint64_t *rng) {
    qweight q = {0};
    q.w = malloc((size_t)(N * K));
    q.bs = malloc((size_t)(N * K / 16 + 1));
    q.ws = fp8 ? 0.013f : 0.0021f;
    q.is = fp8 ? 0.021f : 0.0043f;
    for (int64_t i = 0; i < N * K; i++) {
        const float v = test_rng_uniform(rng);
        if (fp8) q.w[i] = nvl_f32_to_e4m3_sat(v * 300.0f);
        else if (i % 2 == 0) q.w[i / 2] = (uint8_t)((int)((v + 1.0f) * 7.99f) & 15);
        else q.w[i / 2] |= (uint8_t)(((int)((v + 1.0f) * 7.99f) & 15) << 4);
    }
    for (int64_t i = 0; i < N * K / 16; i++) q.bs[i] = nvl_f32_to_e4m3_sat(0.5f + 200.0f * fabsf(test_rng_uniform(rng)));
    return q;
}

/* The formulas of quant-formats.md, literally, in double where they do not round; mag[i] the
 * sum of |x_q w| of output i (for the bound of any f32 summation order). */
static void oracle(double *y, double *mag, const float *x, const qweight *q, int fp8, int64_t M, int64_t N, int64_t K) {
    float *xq = malloc((size_t)K * sizeof(float));
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * K;
        if (fp8) {
            for (int64_t k = 0; k < K; k++) xq[k] = nvl_f8e4m3_to_f32(nvl_f32_to_e4m3_sat(xr[k] / q->is)) * q->is;
        } else {
            for (int64_t b = 0; b < K; b += 16) {
                float amax = 0;
                for (int i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(xr[b + i]));
                float r = fminf(amax / (6.0f * q->is), 448.0f);
                float s = nvl_f8e4m3_to_f32(nvl_f32_to_e4m3_sat(r)) * q->is;
                if (s < 1e-5f) s = 1.0f;
                for (int i = 0; i < 16; i++) xq[b + i] = nvl_e2m1_quantize(xr[b + i] / s) * s;
            }
        }
        for (int64_t n = 0; n < N; n++) {
            double acc = 0, am = 0;
            for (int64_t k = 0; k < K; k++) {
                float w;
                if (fp8) w = nvl_f8e4m3_to_f32(q->w[n * K + k]) * q->ws;
                else {
                    const uint8_t c = q->w[(n * K + k) / 2];
                    w = k_e2m1[k % 2 ? c >> 4 : c & 15] * nvl_f8e4m3_to_f32(q->bs[n * (K / 16) + k / 16]) * q->ws;
                }
                acc += (double)xq[k] * (double)w;
                am += fabs((double)xq[k] * (double)w);
            }
            y[m * N + n] = acc;
            mag[m * N + n] = am;
        }
    }
    free(xq);
}

/* q as the op's weight descriptor (N outputs, K inputs): codes, scales, NVFP4 block scales. */
static kern_weight qweight_op(const qweight *q, int fp8, int64_t N, int64_t K, const char *name) {
    const nvl_tensor wt = fp8 ? nvl_tensor_make(NVL_DTYPE_F8_E4M3, 2, (int64_t[]){N, K}, q->w)
                              : nvl_tensor_make(NVL_DTYPE_U8, 2, (int64_t[]){N, K / 2}, q->w);
    kern_weight w = kern_weight_plain(&wt, name);
    w.n_out = N;
    w.n_in = K;
    w.quant = fp8 ? KERN_QUANT_FP8 : KERN_QUANT_NVFP4;
    w.weight_scale = q->ws;
    w.input_scale = q->is;
    if (!fp8) w.block_scale = nvl_tensor_make(NVL_DTYPE_F8_E4M3, 2, (int64_t[]){N, K / 16}, q->bs);
    return w;
}

static void test_matmul_quant(void) {
    kern_backend *be = NULL;
    nvl_err err = {0};
    TEST_EQ_INT(kern_backend_init(&be, "cpu", &err), NVL_OK);
    uint64_t rng = 0xfeed;
    /* Rows: up to 4 the fused rows, from 5 the exact bf16 factors through the GEMMs (quant.c; 6 the
     * own AVX512-BF16 kernel, 37 and 40 oneDNN where the build and CPU have them). K 8192: the 16
     * MiB weight panel holds 1024 rows, so N 1100 takes two panels, the second of 76 rows. is:
     * an NVFP4 input_scale of 100 lets a block whose scale falls back to 1 hold nonzero values
     * (|x| > 0.25, amax below 6 * 100 * 2^-10), which the GEMM factors cannot: the widened rows. */
    const struct {
        int fp8;
        int64_t M, N, K;
        float is;
    } cases[] = {{1, 1, 7, 64, 0},     {1, 3, 33, 48, 0},     {1, 40, 20, 96, 0},  {0, 1, 9, 64, 0},
                 {0, 5, 17, 32, 0},    {0, 37, 12, 96, 0},    {1, 6, 1100, 8192, 0}, {0, 6, 1100, 8192, 0},
                 {0, 8, 24, 64, 100.0f},
                 /* decode rows long enough for the AVX512-BF16 steps (FP8: 128 and 32 k a step, a
                    tail of 8; NVFP4: 256 a step, two tail blocks), and 3 rows of which row 1
                    has the fallback block (it alone takes the f32 rows) */
                 {1, 2, 19, 424, 0},  {0, 4, 19, 544, 0},  {0, 3, 24, 288, 100.0f}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int fp8 = cases[c].fp8;
        const int64_t M = cases[c].M, N = cases[c].N, K = cases[c].K;
        qweight q = make_q(fp8, N, K, &rng);
        if (cases[c].is > 0) q.is = cases[c].is;
        float *x = malloc((size_t)(M * K) * sizeof(float)), *y = malloc((size_t)(M * N) * sizeof(float));
        double *yo = malloc((size_t)(M * N) * sizeof(double)), *mag = malloc((size_t)(M * N) * sizeof(double));
        float *yr = malloc((size_t)(M * N) * sizeof(float));
        for (int64_t i = 0; i < M * K; i++) x[i] = 2.0f * test_rng_uniform(&rng) * (i % 13 == 0 ? 4.0f : 1.0f);
        if (!fp8)
            for (int64_t k = 16; k < 32 && k < K; k++) x[k] = 0.0f; /* an all-zero activation block: scale 1 */
        if (cases[c].is > 0) /* row 1's second block: amax 0.4 (its scale falls back to 1), e2m1 0.5 */
            for (int64_t k = 16; k < 32; k++) x[K + k] = k % 2 ? 0.4f : -0.3f;
        oracle(yo, mag, x, &q, fp8, M, N, K);
        for (int64_t i = 0; i < M * N; i++) yr[i] = (float)yo[i];
        kern_weight w = qweight_op(&q, fp8, N, K, "test.weight");
        nvl_tensor xt = kern_act(be, NVL_DTYPE_F32, 2, (int64_t[]){M, K}, x);
        nvl_tensor yt = kern_act(be, NVL_DTYPE_F32, 2, (int64_t[]){M, N}, y);
        TEST_EQ_INT(kern_matmul(be, &yt, &xt, &w, &err), NVL_OK);
        char what[96];
        snprintf(what, sizeof what, "%s matmul M=%lld N=%lld K=%lld", fp8 ? "FP8" : "NVFP4", (long long)M, (long long)N,
                 (long long)K);
        /* f32 sums in any order are within (K - 1) u sum|x_q w| of the exact sum; + 4 u for the
           roundings of the products and of the scales (applied per factor or per sum) */
        test_compare_f32_mag(what, y, yr, mag, (size_t)(M * N), 1e-5, 1e-5, (double)(K + 4) * 0x1p-24, 1e-11);
        /* BF16 output: the same values rounded on store */
        nvl_tensor yb = kern_act(be, NVL_DTYPE_BF16, 2, (int64_t[]){M, N}, y);
        TEST_EQ_INT(kern_matmul(be, &yb, &xt, &w, &err), NVL_OK);
        int rounded = 1;
        for (int64_t i = 0; i < M * N; i++) rounded &= y[i] == nvl_round_bf16(y[i]);
        TEST_CHECK(rounded, "%s: BF16 output holds bf16 values", what);
        /* a zero scale or a missing block scale is refused by the op */
        w.input_scale = 0.0f;
        TEST_EQ_INT(kern_matmul(be, &yt, &xt, &w, &err), NVL_ERR_INVALID_ARG);
        free(q.w);
        free(q.bs);
        free(x);
        free(y);
        free(yo);
        free(mag);
        free(yr);
    }
    /* Batch invariance of the fused rows (kern_matmul_invariant_rows: 4): each row of a call of
     * 2-4 rows equals, bit for bit, the row alone (decode steps of several sequences give each its
     * answer alone). K 300 (FP8: the f32 rows' 64-steps, 16-steps and a tail; the BF16 rows'
     * 128-steps, a 32-step and a tail) and 288 (NVFP4: a 256-step and two tail blocks); then NVFP4
     * with row 1 holding a block whose scale falls back to 1 (that row alone takes the f32 rows). */
    for (int v = 0; v < 3; v++) {
        const int fp8 = v == 1;
        const int64_t N = 21, K = fp8 ? 300 : 288, M = 4;
        qweight q = make_q(fp8, N, K, &rng);
        float *x = malloc((size_t)(M * K) * sizeof(float)), *yall = malloc((size_t)(M * N) * sizeof(float));
        float *y1 = malloc((size_t)N * sizeof(float));
        for (int64_t i = 0; i < M * K; i++) x[i] = 3.0f * test_rng_uniform(&rng);
        if (v == 2) {
            q.is = 100.0f;
            for (int64_t k = 16; k < 32; k++) x[K + k] = k % 2 ? 0.4f : -0.3f;
        }
        kern_weight w = qweight_op(&q, fp8, N, K, "inv.weight");
        TEST_CHECK(kern_matmul_invariant_rows(be, &w, NVL_DTYPE_F32) >= M, "invariant rows %lld",
                   (long long)kern_matmul_invariant_rows(be, &w, NVL_DTYPE_F32));
        for (int64_t rows = 2; rows <= M; rows++) {
            nvl_tensor xt = kern_act(be, NVL_DTYPE_F32, 2, (int64_t[]){rows, K}, x);
            nvl_tensor yt = kern_act(be, NVL_DTYPE_F32, 2, (int64_t[]){rows, N}, yall);
            TEST_EQ_INT(kern_matmul(be, &yt, &xt, &w, &err), NVL_OK);
            int same = 1;
            for (int64_t r = 0; r < rows; r++) {
                nvl_tensor x1 = kern_act(be, NVL_DTYPE_F32, 2, (int64_t[]){1, K}, x + r * K);
                nvl_tensor y1t = kern_act(be, NVL_DTYPE_F32, 2, (int64_t[]){1, N}, y1);
                TEST_EQ_INT(kern_matmul(be, &y1t, &x1, &w, &err), NVL_OK);
                same &= !memcmp(y1, yall + r * N, (size_t)N * sizeof(float));
            }
            TEST_CHECK(same, "%s: each of %lld rows equals the row alone", v == 1 ? "FP8" : v ? "NVFP4, a fallback row" : "NVFP4",
                       (long long)rows);
        }
        free(q.w);
        free(q.bs);
        free(x);
        free(yall);
        free(y1);
    }
    kern_backend_free(be);
}

// ---------------------------------------------------------------------------
// A quantized copy of cfgA, and damaged variants of it

typedef enum damage {
    D_NONE, D_NAN_INPUT, D_ZERO_WSCALE, D_NEG_WSCALE2, D_MISSING_INPUT, D_BS_SHAPE, D_BS_NAN, D_BS_DTYPE, D_EXCLUDED,
    D_NO_CONFIG,
    D_HUGE_WSCALE, /* finite, but times 448 past f32: every output was NaN (a review found it) */
    D_WRONG_ALGO,  /* quant_algo of the other format (the weights decide nothing against it) */
    D_GROUP_32,    /* NVFP4 with group_size 32 (its blocks are 16) */
    D_W_NAN,       /* an FP8 weight code that is NaN (0xff): answers differed between backends */
    D_UPCAST,      /* layer 0's in_proj codes cast to F32, its scales left beside it (ran as another model) */
    D_PRE_QUANT,   /* an AWQ pre_quant_scale beside layer 0's out_proj (was ignored) */
    D_GROUP_0,     /* "group_size": 0 (was taken as absent) */
    D_GROUP_STR,   /* "group_size": "32" (a string: was taken as absent) */
    D_MIXED,       /* MIXED_PRECISION with quantized_layers naming every quantized module: loads */
    D_MIXED_MISSING, /* ... without layer 3's modules (they loaded anyway) */
    D_MIXED_WRONG, /* ... saying the other algorithm for layer 0's in_proj */
    D_MIXED_GS32,  /* ... group_size 32 for layer 0's in_proj (NVFP4) */
    D_CG_GS32,     /* no hf_quant_config.json; config.json's config_groups weights say group_size 32 */
    D_MIXED_CG,    /* MIXED_PRECISION in config.json only, layers named by config_groups targets
                      (older ModelOpt): loads (every layer was refused as unlisted) */
    D_BS_1D,       /* NVFP4 block scales as one dimension of the right count (shown as [n, 0]) */
    D_W_I8,        /* NVFP4 codes as I8 (said to have the wrong shape) */
    D_W_ODD,       /* NVFP4 codes one byte short a row (the shape expected was the unpacked one) */
    D_EMB_U8,      /* the embedding table as U8 (the message offered U8 "when quantized", which it never is) */
} damage;

/* Appends "quantization_config": qc (JSON text) to dir/config.json's object. */
static void add_quantization_config(const char *dir, const char *qc) {
    char p[700];
    snprintf(p, sizeof p, "%s/config.json", dir);
    char *c0 = NULL;
    size_t l0 = 0;
    nvl_read_file(p, 1 << 20, &c0, &l0, NULL);
    char *end = c0 ? strrchr(c0, '}') : NULL;
    TEST_CHECK(end != NULL, "%s holds an object", p);
    if (end) {
        const size_t cap = l0 + strlen(qc) + 64;
        char *c1 = malloc(cap);
        snprintf(c1, cap, "%.*s, \"quantization_config\": %s}", (int)(end - c0), c0, qc);
        test_write_file(p, c1, strlen(c1));
        free(c1);
    }
    nvl_free(c0);
}

/* Writes dir/{config.json, hf_quant_config.json, model.safetensors}: cfgA with every Mamba and
 * MLP Linear quantized (fp8 or nvfp4), attention and lm_head left as they are. */
static void write_quant_copy(const char *dir, int fp8, damage d) {
    nvl_err err = {0};
    nvl_checkpoint *src = NULL;
    char p[700];
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/model.safetensors", test_data_path("llm/cfgA"));
    TEST_EQ_INT(nvl_checkpoint_open(&src, p, &err), NVL_OK);
    st_writer wr;
    st_writer_init(&wr);
    void **keep = calloc(4 * (size_t)nvl_checkpoint_count(src) + 4, sizeof(void *));
    int nk = 0;
    char layers[8192] = "", targets[4096] = "";  /* quantized_layers / config_groups targets (MIXED_PRECISION) */
    size_t nl = 0, nt = 0;
    for (int64_t i = 0; i < nvl_checkpoint_count(src); i++) {
        const nvl_st_entry *e = nvl_checkpoint_entry(src, i);
        const int lin = strstr(e->name, "proj.weight") && !strstr(e->name, "q_proj") && !strstr(e->name, "k_proj") &&
                        !strstr(e->name, "v_proj") && !strstr(e->name, "o_proj");
        if (!lin) {
            const int emb_u8 = d == D_EMB_U8 && strstr(e->name, "embeddings.weight");
            const int64_t eshape[2] = {e->shape[0], e->n_dims > 1 ? e->shape[1] * 4 : 0}; /* (its bytes as U8) */
            st_writer_add(&wr, e->name, emb_u8 ? "U8" : nvl_dtype_name(e->dtype), e->n_dims, emb_u8 ? eshape : e->shape,
                          e->data, e->end - e->begin);
            continue;
        }
        const int64_t N = e->shape[0], K = e->shape[1];
        char mod[200], nm[240];
        snprintf(mod, sizeof mod, "%.*s", (int)(strlen(e->name) - 7), e->name);
        const float *W = (const float *)e->data;
        float amax = 0;
        for (int64_t k = 0; k < N * K; k++) amax = fmaxf(amax, fabsf(W[k]));
        float *ws = malloc(sizeof(float)), *is = malloc(sizeof(float)), *ws2 = malloc(sizeof(float));
        *is = (fp8 ? 32.0f / 448.0f : 32.0f / (6.0f * 448.0f)) * (d == D_NAN_INPUT ? NAN : 1.0f);
        uint8_t *q = malloc((size_t)(N * K)), *bs = malloc((size_t)(N * K / 16 + 1));
        if (fp8) {
            *ws = d == D_HUGE_WSCALE ? 1e38f : amax / 448.0f * (d == D_ZERO_WSCALE ? 0.0f : 1.0f);
            for (int64_t k = 0; k < N * K; k++) q[k] = nvl_f32_to_e4m3_sat(W[k] / (amax / 448.0f));
            if (d == D_W_NAN) q[2 * K + 5] = 0xff;
        } else {
            *ws2 = amax / (6.0f * 448.0f) * (d == D_NEG_WSCALE2 ? -1.0f : 1.0f);
            const float g = amax / (6.0f * 448.0f);
            memset(q, 0, (size_t)(N * K / 2));
            for (int64_t b = 0; b < N * K / 16; b++) {
                float a16 = 0;
                for (int j = 0; j < 16; j++) a16 = fmaxf(a16, fabsf(W[b * 16 + j]));
                float s = a16 > 0 ? a16 / (6.0f * g) : 1.0f;
                bs[b] = nvl_f32_to_e4m3_sat(fminf(fmaxf(s, 0.001953125f), 448.0f));
                const float sd = nvl_f8e4m3_to_f32(bs[b]) * g;
                for (int j = 0; j < 16; j++) {
                    const float v = nvl_e2m1_quantize(W[b * 16 + j] / sd);
                    int code = 0;
                    for (int c = 0; c < 16; c++)
                        if (k_e2m1[c] == v && !signbit(k_e2m1[c]) == !signbit(v)) code = c;
                    q[(b * 16 + j) / 2] |= (uint8_t)(j % 2 ? code << 4 : code);
                }
            }
            if (d == D_BS_NAN) bs[3] = 0x7f;
        }
        nt += (size_t)snprintf(targets + nt, sizeof targets - nt, "%s\"%s\"", nt ? ", " : "", mod);
        if (!(d == D_MIXED_MISSING && strstr(mod, "layers.3.")))
            nl += (size_t)snprintf(layers + nl, sizeof layers - nl, "%s\"%s\": {\"quant_algo\": \"%s\"%s}", nl ? ", " : "", mod,
                                   (fp8 != (d == D_MIXED_WRONG && !strcmp(mod, "backbone.layers.0.mixer.in_proj"))) ? "FP8" : "NVFP4",
                                   fp8 ? "" : d == D_MIXED_GS32 && !strcmp(mod, "backbone.layers.0.mixer.in_proj") ? ", \"group_size\": 32"
                                                                                                             : ", \"group_size\": 16");
        if (d == D_PRE_QUANT && !strcmp(mod, "backbone.layers.0.mixer.out_proj")) {
            float *pq = malloc((size_t)K * sizeof(float));
            for (int64_t k = 0; k < K; k++) pq[k] = 2.0f;
            snprintf(nm, sizeof nm, "%s.pre_quant_scale", mod);
            st_writer_add(&wr, nm, "F32", 1, (int64_t[]){K}, pq, (size_t)K * 4);
            keep[nk++] = pq;
        }
        keep[nk++] = ws;
        keep[nk++] = is;
        keep[nk++] = ws2;
        keep[nk++] = q;
        keep[nk++] = bs;
        if (d == D_UPCAST && !strcmp(mod, "backbone.layers.0.mixer.in_proj")) {
            float *up = malloc((size_t)(N * K) * sizeof(float));
            for (int64_t k = 0; k < N * K; k++) up[k] = nvl_f8e4m3_to_f32(q[k]);
            st_writer_add(&wr, e->name, "F32", 2, (int64_t[]){N, K}, up, (size_t)(N * K) * 4);
            keep[nk++] = up;
        } else if (fp8) st_writer_add(&wr, e->name, "F8_E4M3", 2, (int64_t[]){N, K}, q, (size_t)(N * K));
        else {
            const int64_t cols = K / 2 - (d == D_W_ODD);
            st_writer_add(&wr, e->name, d == D_W_I8 ? "I8" : "U8", 2, (int64_t[]){N, cols}, q, (size_t)(N * cols));
        }
        if (!(d == D_MISSING_INPUT && strstr(e->name, "layers.3."))) {
            snprintf(nm, sizeof nm, "%s.input_scale", mod);
            st_writer_add(&wr, nm, "F32", 0, NULL, is, 4);
        }
        if (fp8) {
            snprintf(nm, sizeof nm, "%s.weight_scale", mod);
            st_writer_add(&wr, nm, "F32", 0, NULL, ws, 4);
        } else {
            snprintf(nm, sizeof nm, "%s.weight_scale_2", mod);
            st_writer_add(&wr, nm, "F32", 0, NULL, ws2, 4);
            snprintf(nm, sizeof nm, "%s.weight_scale", mod);
            const int64_t rows = d == D_BS_SHAPE ? N - 1 : N;
            if (d == D_BS_1D) st_writer_add(&wr, nm, "F8_E4M3", 1, (int64_t[]){N * K / 16}, bs, (size_t)(N * K / 16));
            else
                st_writer_add(&wr, nm, d == D_BS_DTYPE ? "U8" : "F8_E4M3", 2, (int64_t[]){rows, K / 16}, bs,
                              (size_t)(rows * K / 16));
        }
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    TEST_CHECK(st_writer_save(&wr, p, NULL), "writing %s", p);
    st_writer_free(&wr);
    for (int i = 0; i < nk; i++) free(keep[i]);
    free(keep);
    nvl_checkpoint_close(src);
    /* config.json as cfgA's, and the quantization config */
    char q2[700];
    char *cfg = NULL;
    size_t len = 0;
    snprintf(q2, sizeof q2, "%s/config.json", test_data_path("llm/cfgA"));
    nvl_read_file(q2, 1 << 20, &cfg, &len, &err);
    snprintf(p, sizeof p, "%s/config.json", dir);
    test_write_file(p, cfg, len);
    nvl_free(cfg);
    snprintf(p, sizeof p, "%s/hf_quant_config.json", dir);
    const int mixed = d == D_MIXED || d == D_MIXED_MISSING || d == D_MIXED_WRONG || d == D_MIXED_GS32;
    const char *gs = fp8 ? "" : d == D_GROUP_32 ? "\"group_size\": 32, " : d == D_GROUP_0 ? "\"group_size\": 0, "
                                : d == D_GROUP_STR ? "\"group_size\": \"32\", " : "\"group_size\": 16, ";
    char hq[9000];
    snprintf(hq, sizeof hq,
             "{\"producer\": {\"name\": \"modelopt\", \"version\": \"0.47.0\"}, \"quantization\": {\"quant_algo\": \"%s\", "
             "\"kv_cache_quant_algo\": null, %s\"exclude_modules\": [\"lm_head\", \"backbone.embeddings\"%s]%s%s%s}}",
             mixed ? "MIXED_PRECISION" : (fp8 != (d == D_WRONG_ALGO)) ? "FP8" : "NVFP4", mixed ? "" : gs,
             d == D_EXCLUDED ? ", \"backbone.layers.2.mixer.up*\"" : "", mixed ? ", \"quantized_layers\": {" : "", mixed ? layers : "",
             mixed ? "}" : "");
    if (d == D_NO_CONFIG || d == D_CG_GS32 || d == D_MIXED_CG) unlink(p);
    else test_write_file(p, hq, strlen(hq));
    if (d == D_MIXED_CG) {
        char qc[5000];
        snprintf(qc, sizeof qc, "{\"quant_method\": \"modelopt\", \"quant_algo\": \"MIXED_PRECISION\", \"config_groups\": {\"group_0\": "
                 "{\"weights\": {\"dynamic\": false, \"num_bits\": %d, \"type\": \"float\"%s}, \"targets\": [%s]}}, \"ignore\": "
                 "[\"lm_head\", \"backbone.embeddings\"]}", fp8 ? 8 : 4, fp8 ? "" : ", \"group_size\": 16", targets);
        add_quantization_config(dir, qc);
    }
    if (d == D_CG_GS32) /* the same in config.json's spelling (convert_hf_quant_config_format) */
        add_quantization_config(dir, "{\"quant_method\": \"modelopt\", \"quant_algo\": \"NVFP4\", \"config_groups\": {\"group_0\": "
                                     "{\"input_activations\": {\"dynamic\": false, \"num_bits\": 4, \"type\": \"float\", \"group_size\": 16}, "
                                     "\"weights\": {\"dynamic\": false, \"num_bits\": 4, \"type\": \"float\", \"group_size\": 32}, "
                                     "\"targets\": [\"Linear\"]}}, \"ignore\": [\"lm_head\", \"backbone.embeddings\"]}");
}

static void test_load(void) {
    char dir[600];
    nvl_err err = {0};
    for (int fp8 = 1; fp8 >= 0; fp8--) {
        snprintf(dir, sizeof dir, "%s/q%d", test_tmpdir(), fp8);
        write_quant_copy(dir, fp8, D_NONE);
        llm_model *m = NULL;
        TEST_EQ_INT(llm_model_init(&m, dir, NULL, &err), NVL_OK);
        if (!m) {
            fprintf(stderr, "%s\n", err.msg);
            continue;
        }
        int counts[3];
        llm_model_quant_counts(m, counts);
        /* cfgA "M*-M*M-*M": 4 Mamba (in/out) + 2 MLP (up/down) quantized; 3 attention x 4 + lm_head not */
        TEST_EQ_INT(counts[fp8 ? KERN_QUANT_FP8 : KERN_QUANT_NVFP4], 12);
        TEST_EQ_INT(counts[KERN_QUANT_NONE], 13);
        /* it runs and stays near the unquantized model (a sanity check, not a golden) */
        llm_model *ref = NULL;
        TEST_EQ_INT(llm_model_init(&ref, test_data_path("llm/cfgA"), NULL, &err), NVL_OK);
        llm_context *a = NULL, *b = NULL;
        llm_context_init(&a, m, NULL, &err);
        llm_context_init(&b, ref, NULL, &err);
        const int32_t toks[6] = {3, 17, 99, 250, 7, 41};
        TEST_EQ_INT(llm_prefill(a, toks, 6, NULL, NULL, &err), NVL_OK);
        TEST_EQ_INT(llm_prefill(b, toks, 6, NULL, NULL, &err), NVL_OK);
        const int64_t V = llm_model_hparams(m)->n_vocab;
        double num = 0, den = 0;
        for (int64_t i = 0; i < V; i++) {
            const double dd = llm_logits(a)[i] - llm_logits(b)[i];
            num += dd * dd;
            den += (double)llm_logits(b)[i] * llm_logits(b)[i];
        }
        printf("%s copy of cfgA: logits NMSE %.3g against the f32 model\n", fp8 ? "FP8" : "NVFP4", num / den);
        TEST_CHECK(num / den < (fp8 ? 0.05 : 0.5) && num > 0, "%s copy of cfgA: logits NMSE %.3g against the f32 model",
                   fp8 ? "FP8" : "NVFP4", num / den);
        llm_context_free(a);
        llm_context_free(b);
        llm_model_free(ref);
        llm_model_free(m);
    }
    const struct {
        int fp8;
        damage d;
        nvl_status code;
        const char *msg;
    } bad[] = {
        {1, D_NAN_INPUT, NVL_ERR_FORMAT, "scale tensor 'backbone.layers.0.mixer.in_proj.input_scale' is nan"},
        {1, D_ZERO_WSCALE, NVL_ERR_FORMAT, "scale tensor 'backbone.layers.0.mixer.in_proj.weight_scale' is 0"},
        {0, D_NEG_WSCALE2, NVL_ERR_FORMAT, "'backbone.layers.0.mixer.in_proj.weight_scale_2' is -"},
        {1, D_MISSING_INPUT, NVL_ERR_NOT_FOUND, "missing scale tensor 'backbone.layers.3.mixer.in_proj.input_scale'"},
        {0, D_BS_SHAPE, NVL_ERR_SHAPE, "block-scale tensor 'backbone.layers.0.mixer.in_proj.weight_scale' has shape"},
        {0, D_BS_NAN, NVL_ERR_FORMAT, "block-scale tensor 'backbone.layers.0.mixer.in_proj.weight_scale' element 3 (row 0) is NaN"},
        {0, D_BS_DTYPE, NVL_ERR_DTYPE, "'backbone.layers.0.mixer.in_proj.weight_scale' has dtype U8, expected F8_E4M3"},
        {1, D_EXCLUDED, NVL_ERR_CONFIG, "module 'backbone.layers.2.mixer.up_proj' is in the exclude list"},
        {1, D_NO_CONFIG, NVL_ERR_CONFIG, "no ModelOpt quantization config"},
        {1, D_HUGE_WSCALE, NVL_ERR_FORMAT, "'backbone.layers.0.mixer.in_proj.weight_scale' is 1e+38: times the largest code"},
        {1, D_WRONG_ALGO, NVL_ERR_CONFIG, "'backbone.layers.0.mixer.in_proj.weight' is FP8 (F8_E4M3) but hf_quant_config.json says "
                                          "quant_algo 'NVFP4'"},
        {0, D_WRONG_ALGO, NVL_ERR_CONFIG, "is NVFP4 (U8 with E4M3 block scales) but hf_quant_config.json says quant_algo 'FP8'"},
        {0, D_GROUP_32, NVL_ERR_CONFIG, "says group_size 32"},
        {1, D_W_NAN, NVL_ERR_FORMAT, "FP8 weight 'backbone.layers.0.mixer.in_proj.weight' holds a NaN code (0xff) at row 2, "
                                     "column 5"},
        {1, D_UPCAST, NVL_ERR_CONFIG, "tensor 'backbone.layers.0.mixer.in_proj.weight' is F32 but the quantization scale "
                                      "'backbone.layers.0.mixer.in_proj.weight_scale' is beside it"},
        {0, D_PRE_QUANT, NVL_ERR_UNSUPPORTED, "tensor 'backbone.layers.0.mixer.out_proj.pre_quant_scale': pre-quantization"},
        {0, D_GROUP_0, NVL_ERR_CONFIG, "hf_quant_config.json: group_size is 0, expected a positive whole number"},
        {0, D_GROUP_STR, NVL_ERR_CONFIG, "hf_quant_config.json: group_size is \"32\", expected a positive whole number"},
        {1, D_MIXED_MISSING, NVL_ERR_CONFIG, "(quant_algo MIXED_PRECISION) does not list in quantized_layers the module "
                                             "'backbone.layers.3.mixer.in_proj'"},
        {0, D_MIXED_WRONG, NVL_ERR_CONFIG, "quantized_layers says 'FP8' for module 'backbone.layers.0.mixer.in_proj'"},
        {0, D_MIXED_GS32, NVL_ERR_CONFIG, "'backbone.layers.0.mixer.in_proj.weight' is NVFP4, whose blocks are 16 along the input, "
                                          "but hf_quant_config.json says group_size 32"},
        {0, D_CG_GS32, NVL_ERR_CONFIG, "but config.json quantization_config says group_size 32"},
        {0, D_BS_1D, NVL_ERR_SHAPE, "block-scale tensor 'backbone.layers.0.mixer.in_proj.weight_scale' has shape [800], expected "
                                    "[200, 4]"},
        {0, D_W_I8, NVL_ERR_DTYPE, "tensor 'backbone.layers.0.mixer.in_proj.weight' has dtype I8, expected F32, BF16 or F16 (or "
                                   "F8_E4M3 / U8 when quantized)"},
        {0, D_EMB_U8, NVL_ERR_DTYPE, "tensor 'backbone.embeddings.weight' has dtype U8, expected F32, BF16 or F16 (59 of"},
        {0, D_W_ODD, NVL_ERR_SHAPE, "tensor 'backbone.layers.0.mixer.in_proj.weight' (NVFP4, U8) has shape [200, 31], expected "
                                    "[200, 32] (the layer's [200, 64] packed two E2M1 codes a byte)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(dir, sizeof dir, "%s/bad%zu", test_tmpdir(), i);
        write_quant_copy(dir, bad[i].fp8, bad[i].d);
        llm_model *m = NULL;
        TEST_EQ_INT(llm_model_init(&m, dir, NULL, &err), bad[i].code);
        TEST_CONTAINS(err.msg, bad[i].msg);
        TEST_CHECK(m == NULL, "model returned for damage %zu", i);
        llm_model_free(m);
    }
    /* MIXED_PRECISION naming each layer's algorithm: loads, every listed Linear quantized */
    for (int v = 0; v < 4; v++) { /* quantized_layers (hf_quant_config.json); config_groups targets (config.json) */
        const int fp8 = v & 1;
        snprintf(dir, sizeof dir, "%s/mixed%d", test_tmpdir(), v);
        write_quant_copy(dir, fp8, v < 2 ? D_MIXED : D_MIXED_CG);
        llm_model *m = NULL;
        TEST_EQ_INT(llm_model_init(&m, dir, NULL, &err), NVL_OK);
        if (!m) {
            fprintf(stderr, "MIXED_PRECISION (%d): %s\n", v, err.msg);
            continue;
        }
        int counts[3];
        llm_model_quant_counts(m, counts);
        TEST_EQ_INT(counts[fp8 ? KERN_QUANT_FP8 : KERN_QUANT_NVFP4], 12);
        llm_model_free(m);
    }
}

static double nmse(const float *a, const float *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? num / den : num;
}

/* The goldens of nvidia-modelopt's own fake-quant forward (gen_quant_goldens.py). Its f32 torch
 * forward and ours see the same dequantized weights and quantized activations; the sums run in
 * another order. The generator's independent replay lands at NMSE ~2e-14; we allow 1e-11 for the
 * logits (f32 rounding differences that cross an activation-quantization boundary move a value by
 * a whole quantization step, so a little more than pure summation noise), and require the greedy
 * ids to be equal; weight-only (no activation quantization) is 1e-2 / 1e-1 away, so the bound
 * tells the two apart by 9 orders of magnitude. */
static void test_golden(const char *fmt) {
    char dir[600], gp[700];
    snprintf(dir, sizeof dir, "%s", test_data_path(fmt));
    snprintf(gp, sizeof gp, "%s/golden.safetensors", dir);
    nvl_err err = {0};
    nvl_checkpoint *g = NULL;
    if (nvl_checkpoint_open(&g, gp, &err) != NVL_OK) {
        TEST_CHECK(0, "%s: %s (tests/reference/gen_quant_goldens.py makes it)", fmt, err.msg);
        return;
    }
    llm_model *m = NULL;
    TEST_EQ_INT(llm_model_init(&m, dir, NULL, &err), NVL_OK);
    if (!m) {
        fprintf(stderr, "%s: %s\n", fmt, err.msg);
        nvl_checkpoint_close(g);
        return;
    }
    int counts[3];
    llm_model_quant_counts(m, counts);
    const int fp8 = strstr(fmt, "fp8") != NULL;
    TEST_EQ_INT(counts[fp8 ? KERN_QUANT_FP8 : KERN_QUANT_NVFP4], 24); /* every Linear but lm_head */
    TEST_EQ_INT(counts[KERN_QUANT_NONE], 1);
    const int64_t V = llm_model_hparams(m)->n_vocab;
    nvl_tensor pt, pl, gi, dl, wo;
    nvl_checkpoint_get(g, "prompt_ids", &pt, &err);
    nvl_checkpoint_get(g, "prefill_logits", &pl, &err);
    nvl_checkpoint_get(g, "greedy_ids", &gi, &err);
    nvl_checkpoint_get(g, "decode_logits", &dl, &err);
    nvl_checkpoint_get(g, "weight_only_prefill_logits", &wo, &err);
    const int64_t T = nvl_tensor_numel(&pt), S = nvl_tensor_numel(&gi);
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    for (int64_t i = 0; i < T; i++) ids[i] = (int32_t)((const int64_t *)pt.data)[i];
    llm_context_params cp = llm_context_params_default();
    cp.n_ctx = 64;
    cp.logits_all = 1;
    llm_context *ctx = NULL;
    TEST_EQ_INT(llm_context_init(&ctx, m, &cp, &err), NVL_OK);
    TEST_EQ_INT(llm_prefill(ctx, ids, T, NULL, NULL, &err), NVL_OK);
    int64_t nr = 0;
    const float *all = llm_logits_all(ctx, &nr);
    char what[128];
    snprintf(what, sizeof what, "%s prefill logits vs modelopt", fmt);
    test_compare_f32(what, all, pl.data, (size_t)(T * V), 1e-4, 1e-4, 1e-11);
    const double e_ours = nmse(all, pl.data, T * V), e_wo = nmse(wo.data, pl.data, T * V);
    printf("%s: prefill logits NMSE %.3g against modelopt (weight-only is %.3g away)\n", fmt, e_ours, e_wo);
    TEST_CHECK(e_ours < 1e-6 * e_wo, "%s: activation quantization reproduced (NMSE %.3g vs weight-only %.3g)", fmt, e_ours,
               e_wo);
    for (int64_t k = 0; k < S; k++) {
        const int32_t want = (int32_t)((const int64_t *)gi.data)[k];
        const float *lg = llm_logits(ctx);
        int best = 0;
        for (int64_t v = 1; v < V; v++)
            if (lg[v] > lg[best]) best = (int)v;
        TEST_CHECK(best == want, "%s greedy step %lld: %d, modelopt %d", fmt, (long long)k, best, want);
        TEST_EQ_INT(llm_decode(ctx, want, &err), NVL_OK);
        snprintf(what, sizeof what, "%s decode step %lld logits", fmt, (long long)k);
        test_compare_f32(what, llm_logits(ctx), (const float *)dl.data + k * V, (size_t)V, 1e-4, 1e-4, 1e-11);
    }
    llm_context_free(ctx);
    free(ids);
    /* the per-module matmuls alone */
    const char *mods[] = {"backbone.layers.0.mixer.in_proj", "backbone.layers.1.mixer.q_proj", "backbone.layers.2.mixer.up_proj"};
    llm_quant_config q;
    TEST_EQ_INT(llm_quant_config_load(&q, dir, &err), NVL_OK);
    nvl_checkpoint *ck = NULL;
    TEST_EQ_INT(nvl_checkpoint_open(&ck, dir, &err), NVL_OK);
    for (int i = 0; i < 3; i++) {
        char nm[200];
        nvl_tensor x, y;
        snprintf(nm, sizeof nm, "op.%s.x", mods[i]);
        TEST_EQ_INT(nvl_checkpoint_get(g, nm, &x, &err), NVL_OK);
        snprintf(nm, sizeof nm, "op.%s.y", mods[i]);
        TEST_EQ_INT(nvl_checkpoint_get(g, nm, &y, &err), NVL_OK);
        snprintf(nm, sizeof nm, "%s.weight", mods[i]);
        kern_weight w;
        TEST_EQ_INT(llm_bind_linear(ck, &q, nm, y.shape[1], x.shape[1], &w, &err), NVL_OK);
        float *out = malloc((size_t)nvl_tensor_numel(&y) * sizeof(float));
        nvl_tensor xt = kern_act(llm_model_backend(m), NVL_DTYPE_F32, 2, x.shape, x.data);
        nvl_tensor yt = kern_act(llm_model_backend(m), NVL_DTYPE_F32, 2, y.shape, out);
        TEST_EQ_INT(kern_matmul(llm_model_backend(m), &yt, &xt, &w, &err), NVL_OK);
        snprintf(what, sizeof what, "%s %s matmul vs modelopt", fmt, mods[i]);
        test_compare_f32(what, out, y.data, (size_t)nvl_tensor_numel(&y), 1e-5, 1e-5, 1e-12);
        free(out);
    }
    nvl_checkpoint_close(ck);
    llm_quant_config_free(&q);
    llm_model_free(m);
    nvl_checkpoint_close(g);
}

int main(void) {
    int64_t live0 = nvl_alloc_count();
    { /* NVL_CPU_KERNEL=avx512 (test_quant_avx512: the f32 fused rows) on a CPU without AVX-512 */
        kern_backend *be = NULL;
        nvl_err err = {0};
        if (kern_backend_init(&be, "cpu", &err) == NVL_ERR_UNSUPPORTED) {
            test_skip("%s", err.msg);
            return 77;
        }
        kern_backend_free(be);
    }
    test_golden("quant/fp8");
    test_golden("quant/nvfp4");
    test_roundings();
    test_matmul_quant();
    test_load();
    TEST_EQ_INT(nvl_alloc_count(), live0);
    return test_report();
}
