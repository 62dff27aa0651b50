/* Kernel tests: a case table run on a backend against the CPU oracles, with NMSE + atol/rtol,
 * NaN/inf checks and a sentinel after every output.
 *
 *   test_kernels                   CPU backend
 *   test_kernels --backend cuda    CUDA backend; exits 77 (skipped) without a device
 *
 * Tolerances: fast paths accumulate in f32 against a double-accumulating oracle; with K up to
 * 1000 the expected relative error is ~sqrt(K)*2^-24 ≈ 2e-6 per dot product, so rtol 8*FLT_EPSILON
 * on top of atol 1e-5 (absolute, for outputs near zero from cancellation) and NMSE <= 1e-10. */
#include <float.h>

#include "backend.h"
#include "ops.h"
#include "base/alloc.h"
#include "cpu/cpu_ops.h"
#include "test_util.h"

#define SENTINEL_N 1024
#define SENTINEL_V 12345.678f

static kern_backend *g_be;

/* Backend buffer of n floats followed by a sentinel block (host-visible copy checked after). */
static float *be_alloc(size_t n) {
    void *p = NULL;
    nvl_err err = {0};
    if (kern_buffer_alloc(g_be, (n + SENTINEL_N) * sizeof(float), &p, &err) != NVL_OK) {
        fprintf(stderr, "buffer alloc: %s\n", err.msg);
        exit(1);
    }
    float *host = malloc((n + SENTINEL_N) * sizeof(float));
    for (size_t i = 0; i < n + SENTINEL_N; i++) host[i] = i < n ? 0.0f : SENTINEL_V;
    kern_copy_to_backend(g_be, p, host, (n + SENTINEL_N) * sizeof(float), &err);
    free(host);
    return p;
}

static void *be_upload(const void *src, size_t bytes) {
    void *p = NULL;
    nvl_err err = {0};
    if (kern_buffer_alloc(g_be, bytes, &p, &err) != NVL_OK ||
        kern_copy_to_backend(g_be, p, src, bytes, &err) != NVL_OK) {
        fprintf(stderr, "upload: %s\n", err.msg);
        exit(1);
    }
    return p;
}

/* Copies n outputs back and checks the sentinel. */
static float *be_download(const float *dev, size_t n, const char *what) {
    float *host = malloc((n + SENTINEL_N) * sizeof(float));
    nvl_err err = {0};
    kern_copy_to_host(g_be, host, dev, (n + SENTINEL_N) * sizeof(float), &err);
    int intact = 1;
    for (size_t i = n; i < n + SENTINEL_N; i++) intact &= host[i] == SENTINEL_V;
    TEST_CHECK(intact, "%s wrote past its output", what);
    return host;
}

static void fill(float *x, size_t n, uint64_t *rng, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * test_rng_uniform(rng);
}

/* Weights of dtype dt with values representable in dt (so the oracle sees the same numbers). */
static void *make_weight(nvl_dtype dt, size_t n, uint64_t *rng) {
    void *w = malloc(n * nvl_dtype_size(dt));
    for (size_t i = 0; i < n; i++) {
        float v = 0.5f * test_rng_uniform(rng);
        if (dt == NVL_DTYPE_F32) ((float *)w)[i] = v;
        else if (dt == NVL_DTYPE_BF16) ((uint16_t *)w)[i] = nvl_f32_to_bf16(v);
        else ((uint16_t *)w)[i] = nvl_f32_to_f16(v);
    }
    return w;
}

static const struct matmul_case {
    int64_t M, N, K;
    nvl_dtype dt;
} k_matmul[] = {
    {1, 64, 64, NVL_DTYPE_F32},   {1, 17, 33, NVL_DTYPE_BF16}, {7, 100, 257, NVL_DTYPE_BF16},
    {3, 31, 1000, NVL_DTYPE_F16}, {16, 48, 96, NVL_DTYPE_F32}, {5, 1, 5, NVL_DTYPE_BF16},
    {33, 130, 129, NVL_DTYPE_BF16}, /* from 32 rows: the packed GEMM (partial last block) */
    {45, 70, 600, NVL_DTYPE_F16},   {64, 32, 256, NVL_DTYPE_F32}, /* several k panels; exact blocks */
    {40, 64, 512, NVL_DTYPE_BF16},  /* transposed packing of whole 16 x 16 blocks */
};

static void test_matmul(void) {
    uint64_t rng = 0x1234;
    for (size_t c = 0; c < sizeof k_matmul / sizeof k_matmul[0]; c++) {
        const struct matmul_case *k = &k_matmul[c];
        if (!kern_backend_supports(g_be, KERN_OP_MATMUL, k->dt)) {
            printf("matmul %s: not supported by backend '%s', case skipped\n",
                   nvl_dtype_name(k->dt), kern_backend_name(g_be));
            continue;
        }
        size_t nx = (size_t)(k->M * k->K), nw = (size_t)(k->N * k->K), ny = (size_t)(k->M * k->N);
        float *x = malloc(nx * sizeof(float));
        fill(x, nx, &rng, 1.0f);
        void *w = make_weight(k->dt, nw, &rng);
        nvl_tensor wh = nvl_tensor_make(k->dt, 2, (int64_t[]){k->N, k->K}, w);
        float *ref = malloc(ny * sizeof(float));
        kern_cpu_matmul_ref(ref, x, &wh, k->M);

        float *dx = be_upload(x, nx * sizeof(float));
        nvl_tensor wd = wh;
        wd.data = be_upload(w, nw * nvl_dtype_size(k->dt));
        float *dy = be_alloc(ny);
        nvl_err err = {0};
        nvl_tensor tx = kern_act(g_be, NVL_DTYPE_F32, 2, (int64_t[]){k->M, k->K}, dx);
        nvl_tensor ty = kern_act(g_be, NVL_DTYPE_F32, 2, (int64_t[]){k->M, k->N}, dy);
        kern_weight kw = kern_weight_plain(&wd, "w");
        nvl_status st = kern_matmul(g_be, &ty, &tx, &kw, &err);
        TEST_CHECK(st == NVL_OK, "matmul: %s", err.msg);
        float *y = be_download(dy, ny, "matmul");
        char what[96];
        snprintf(what, sizeof what, "matmul M=%lld N=%lld K=%lld %s", (long long)k->M,
                 (long long)k->N, (long long)k->K, nvl_dtype_name(k->dt));
        test_compare_f32(what, y, ref, ny, 1e-5, 8 * FLT_EPSILON, 1e-10);
        kern_buffer_free(g_be, dx);
        kern_buffer_free(g_be, wd.data);
        kern_buffer_free(g_be, dy);
        free(x);
        free(w);
        free(ref);
        free(y);
    }
}

/* CPU: up to 31 rows of x (the register-tile kernels) give rows bit-identical to one row at a
 * time (the decode path); from 32 rows the packed GEMM sums in another order (checked against
 * the oracle above). */
static void test_matmul_rows_identical(void) {
    uint64_t rng = 0x4242;
    const nvl_dtype dts[] = {NVL_DTYPE_F32, NVL_DTYPE_BF16, NVL_DTYPE_F16};
    for (int d = 0; d < 3; d++) {
        const int64_t M = 11, N = 13, K = 77;
        float *x = malloc((size_t)(M * K) * sizeof(float)), *y = malloc((size_t)(M * N) * sizeof(float));
        float *y1 = malloc((size_t)N * sizeof(float));
        fill(x, (size_t)(M * K), &rng, 1.0f);
        void *w = make_weight(dts[d], (size_t)(N * K), &rng);
        nvl_tensor wh = nvl_tensor_make(dts[d], 2, (int64_t[]){N, K}, w);
        nvl_err err = {0};
        TEST_EQ_INT(kern_cpu_matmul(y, x, &wh, M, &err), NVL_OK);
        int same = 1;
        for (int64_t m = 0; m < M && same; m++) {
            kern_cpu_matmul(y1, x + m * K, &wh, 1, &err);
            same = !memcmp(y1, y + m * N, (size_t)N * sizeof(float));
        }
        TEST_CHECK(same, "matmul %s: %lld rows at once equal one row at a time, bit for bit", nvl_dtype_name(dts[d]),
                   (long long)M);
        free(x);
        free(y);
        free(y1);
        free(w);
    }
}

/* CPU: BF16 weights x bf16-valued x on each BF16 path the machine has -- the own AVX512-BF16
 * kernel and oneDNN's matmul (matmul_dnnl.c) -- against the double oracle (the products are exact,
 * the f32 sums differ in order: the same bound as the f32 paths), with K tails that are not a
 * multiple of 32, N not a multiple of 4 and (oneDNN) N past one 256-row weight block and M past
 * one 64-row block, x with a row stride wider than K; and batch invariance: every row is
 * bit-identical whether it runs alone or among M rows, on each path by itself. A path the machine
 * or build lacks is skipped with the reason. */
typedef int (*bf16_fn)(float *y, const float *x, int64_t ldx, const nvl_tensor *w, int64_t M);

static void check_bf16_path(const char *name, bf16_fn fn) {
    uint64_t rng = 0xbf16;
    const int64_t shapes[][3] = {{1, 9, 64}, {5, 17, 33}, {13, 40, 100}, {37, 6, 512}, {4, 4, 31}, {70, 300, 80}, {130, 517, 96}};
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        const int64_t M = shapes[c][0], N = shapes[c][1], K = shapes[c][2], ldx = K + 3;
        float *x = malloc((size_t)(M * ldx) * sizeof(float)), *y = malloc((size_t)(M * N) * sizeof(float));
        float *ref = malloc((size_t)(M * N) * sizeof(float)), *y1 = malloc((size_t)N * sizeof(float));
        float *xd = malloc((size_t)(M * K) * sizeof(float));
        for (int64_t i = 0; i < M * ldx; i++) x[i] = nvl_round_bf16(test_rng_uniform(&rng));
        for (int64_t m = 0; m < M; m++) memcpy(xd + m * K, x + m * ldx, (size_t)K * sizeof(float));
        void *w = make_weight(NVL_DTYPE_BF16, (size_t)(N * K), &rng);
        nvl_tensor wh = nvl_tensor_make(NVL_DTYPE_BF16, 2, (int64_t[]){N, K}, w);
        kern_cpu_matmul_ref(ref, xd, &wh, M);
        TEST_CHECK(fn(y, x, ldx, &wh, M) == 1, "%s ran", name);
        char what[96];
        snprintf(what, sizeof what, "matmul %s M=%lld N=%lld K=%lld", name, (long long)M, (long long)N, (long long)K);
        test_compare_f32(what, y, ref, (size_t)(M * N), 1e-5, 8 * FLT_EPSILON, 1e-10);
        int same = 1;
        for (int64_t m = 0; m < M && same; m++) {
            fn(y1, x + m * ldx, ldx, &wh, 1);
            same = !memcmp(y1, y + m * N, (size_t)N * sizeof(float));
        }
        TEST_CHECK(same, "%s: every row bit-identical to the row alone", what);
        free(x);
        free(xd);
        free(y);
        free(ref);
        free(y1);
        free(w);
    }
}

static void test_matmul_bf16dp(void) {
    if (!kern_cpu_has_bf16dp())
        printf("matmul bf16 own kernel: this CPU has no AVX512-BF16 (or NVL_CPU_KERNEL chose another path), skipped\n");
    else
        check_bf16_path("bf16 own", kern_cpu_matmul_bf16_own);
    float y[4];
    const float x[4] = {1, 2, 3, 4};
    uint16_t wv[4] = {0x3f80, 0x3f80, 0x3f80, 0x3f80};
    nvl_tensor w1 = nvl_tensor_make(NVL_DTYPE_BF16, 2, (int64_t[]){1, 4}, wv);
    if (!kern_cpu_has_dnnl()) {
        /* no oneDNN in the build, or (oneDNN 2.6) a CPU without AVX-512: the path declines */
        printf("matmul bf16 oneDNN: no oneDNN in this build, or it makes no BF16 matmul on this CPU, skipped\n");
        TEST_EQ_INT(kern_cpu_matmul_dnnl(y, x, 4, &w1, 1), 0);
        TEST_CHECK(kern_cpu_bf16_path(64) != KERN_BF16_DNNL, "oneDNN chosen without oneDNN");
    } else {
        TEST_EQ_INT(kern_cpu_matmul_dnnl(y, x, 4, &w1, 1), 1);
        TEST_CHECK(y[0] == 10.0f, "oneDNN: 1+2+3+4 = %g", y[0]);
        check_bf16_path("bf16 oneDNN", kern_cpu_matmul_dnnl);
        printf("oneDNN: %s\n", kern_cpu_dnnl_info());
    }
    /* the default choice: below KERN_DNNL_MIN_ROWS rows the own (batch-invariant) kernel */
    if (kern_cpu_has_bf16dp() && !getenv("NVL_CPU_KERNEL")) {
        TEST_EQ_INT(kern_cpu_bf16_path(1), KERN_BF16_OWN);
        TEST_EQ_INT(kern_cpu_bf16_path(KERN_DNNL_MIN_ROWS - 1), KERN_BF16_OWN);
        TEST_EQ_INT(kern_cpu_bf16_path(KERN_DNNL_MIN_ROWS), kern_cpu_has_dnnl() ? KERN_BF16_DNNL : KERN_BF16_OWN);
    }
}

/* CPU softmax rows (AVX-512 polynomial exp) against a double-precision softmax: values from
 * -100 to 100 (underflowing terms included), widths around the 16-lane boundary. */
static void test_softmax_rows(void) {
    uint64_t rng = 0x5151;
    const int64_t widths[] = {1, 15, 16, 17, 100, 1025};
    for (size_t c = 0; c < sizeof widths / sizeof widths[0]; c++) {
        const int64_t R = 3, W = widths[c];
        float *x = malloc((size_t)(R * W) * sizeof(float)), *ref = malloc((size_t)(R * W) * sizeof(float));
        for (int64_t i = 0; i < R * W; i++) x[i] = 100.0f * test_rng_uniform(&rng) * (i % 7 == 0 ? 1.0f : 0.05f);
        for (int64_t r = 0; r < R; r++) {
            double mx = -1e300, sum = 0;
            for (int64_t j = 0; j < W; j++) mx = x[r * W + j] > mx ? x[r * W + j] : mx;
            for (int64_t j = 0; j < W; j++) sum += exp((double)x[r * W + j] - mx);
            for (int64_t j = 0; j < W; j++) ref[r * W + j] = (float)(exp((double)x[r * W + j] - mx) / sum);
        }
        kern_cpu_softmax_rows(x, R, W);
        char what[64];
        snprintf(what, sizeof what, "softmax rows width %lld", (long long)W);
        test_compare_f32(what, x, ref, (size_t)(R * W), 1e-7, 1e-5, 1e-12); /* a few ulp of exp and the sum */
        free(x);
        free(ref);
    }
}

static void test_rmsnorm(void) {
    uint64_t rng = 0x777;
    const struct {
        int64_t rows, cols;
        nvl_dtype dt;
    } cases[] = {{1, 64, NVL_DTYPE_BF16}, {5, 1000, NVL_DTYPE_BF16}, {3, 37, NVL_DTYPE_F32},
                 {2, 5120, NVL_DTYPE_F16}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        if (!kern_backend_supports(g_be, KERN_OP_RMSNORM, cases[c].dt)) {
            printf("rmsnorm %s: not supported by backend '%s', case skipped\n",
                   nvl_dtype_name(cases[c].dt), kern_backend_name(g_be));
            continue;
        }
        size_t n = (size_t)(cases[c].rows * cases[c].cols);
        float *x = malloc(n * sizeof(float));
        fill(x, n, &rng, 3.0f);
        void *w = make_weight(cases[c].dt, (size_t)cases[c].cols, &rng);
        nvl_tensor wh = nvl_tensor_make(cases[c].dt, 1, (int64_t[]){cases[c].cols}, w);
        float *ref = malloc(n * sizeof(float));
        kern_cpu_rmsnorm_ref(ref, x, &wh, cases[c].rows, cases[c].cols, 1e-5f);
        float *dx = be_upload(x, n * sizeof(float));
        nvl_tensor wd = wh;
        wd.data = be_upload(w, (size_t)cases[c].cols * nvl_dtype_size(cases[c].dt));
        float *dy = be_alloc(n);
        nvl_err err = {0};
        nvl_tensor tx = kern_act(g_be, NVL_DTYPE_F32, 2, (int64_t[]){cases[c].rows, cases[c].cols}, dx);
        nvl_tensor ty = kern_act(g_be, NVL_DTYPE_F32, 2, (int64_t[]){cases[c].rows, cases[c].cols}, dy);
        TEST_CHECK(kern_rmsnorm(g_be, &ty, &tx, &wd, 1e-5f, &err) == NVL_OK, "rmsnorm: %s", err.msg);
        float *y = be_download(dy, n, "rmsnorm");
        char what[64];
        snprintf(what, sizeof what, "rmsnorm %lldx%lld %s", (long long)cases[c].rows,
                 (long long)cases[c].cols, nvl_dtype_name(cases[c].dt));
        test_compare_f32(what, y, ref, n, 1e-6, 8 * FLT_EPSILON, 1e-12);
        kern_buffer_free(g_be, dx);
        kern_buffer_free(g_be, wd.data);
        kern_buffer_free(g_be, dy);
        free(x);
        free(w);
        free(ref);
        free(y);
    }
}

static void test_errors(void) {
    nvl_err err = {0};
    float x[4] = {0}, y[4];
    int64_t sh3[3] = {1, 2, 2};
    nvl_tensor w3 = nvl_tensor_make(NVL_DTYPE_F32, 3, sh3, x);
    nvl_tensor tx = nvl_tensor_make(NVL_DTYPE_F32, 2, (int64_t[]){1, 2}, x);
    nvl_tensor ty = nvl_tensor_make(NVL_DTYPE_F32, 2, (int64_t[]){1, 2}, y);
    kern_weight kw3 = kern_weight_plain(&w3, "w3");
    TEST_EQ_INT(kern_matmul(g_be, &ty, &tx, &kw3, &err), NVL_ERR_INVALID_ARG);
    nvl_tensor wi = nvl_tensor_make(NVL_DTYPE_I32, 2, (int64_t[]){2, 2}, x);
    kern_weight kwi = kern_weight_plain(&wi, "wi");
    TEST_CHECK(kern_matmul(g_be, &ty, &tx, &kwi, &err) != NVL_OK, "I32 weights accepted");
    nvl_tensor wn = nvl_tensor_make(NVL_DTYPE_F32, 1, (int64_t[]){3}, x);
    nvl_tensor tx4 = nvl_tensor_make(NVL_DTYPE_F32, 2, (int64_t[]){1, 4}, x);
    nvl_tensor ty4 = nvl_tensor_make(NVL_DTYPE_F32, 2, (int64_t[]){1, 4}, y);
    TEST_EQ_INT(kern_rmsnorm(g_be, &ty4, &tx4, &wn, 1e-5f, &err), NVL_ERR_SHAPE);
    kern_backend *bad = NULL;
    TEST_EQ_INT(kern_backend_init(&bad, "tpu", &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "unknown backend 'tpu'");
    /* selection through NVL_BACKEND */
    kern_backend *be = NULL;
    setenv("NVL_BACKEND", "cpu", 1);
    TEST_EQ_INT(kern_backend_init(&be, NULL, &err), NVL_OK);
    TEST_CHECK(be && kern_backend_kind_of(be) == KERN_BACKEND_KIND_CPU, "NVL_BACKEND=cpu");
    kern_backend_free(be);
    be = NULL;
    if (kern_cuda_device_count(NULL) == 0) {
        setenv("NVL_BACKEND", "cuda", 1);
        TEST_EQ_INT(kern_backend_init(&be, NULL, &err), NVL_ERR_NO_DEVICE);
        TEST_CONTAINS(err.msg, "no CUDA device");
        TEST_CHECK(be == NULL, "backend returned without a device");
        setenv("NVL_BACKEND", "auto", 1); /* auto falls back to the CPU */
        TEST_EQ_INT(kern_backend_init(&be, NULL, &err), NVL_OK);
        TEST_CHECK(be && kern_backend_kind_of(be) == KERN_BACKEND_KIND_CPU, "auto -> cpu");
        kern_backend_free(be);
    }
    unsetenv("NVL_BACKEND");
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
    test_matmul();
    test_rmsnorm();
    if (!strcmp(name, "cpu")) {
        test_errors();
        test_matmul_rows_identical();
        test_matmul_bf16dp();
        test_softmax_rows();
    }
    kern_backend_free(g_be);
    return test_report();
}
