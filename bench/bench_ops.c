/* bench_ops: the prefill ops that are not GEMMs, timed alone on a backend at the 12B model's
 * shapes (model.md §2): causal GQA attention (40 query heads over 8 KV heads of 128, a bf16 KV
 * cache) and the Mamba-2 scan (128 heads of 80, 8 groups of 128 state columns, bf16 x/B/C/dt,
 * f32 y and state) over one sequence of --rows rows from position 0, the way a prefill chunk
 * reaches them. The figures say what a 12B prefill chunk spends in them (6 attention and 28
 * Mamba layers) beside the BF16 GEMM rate measured in the same run (kern_backend_measure), and
 * for attention the rate of its causal FLOPs (2 T^2 D Hq: Q K^T and P V over the lower
 * triangle); the ViT's attention over the tiles of a page (RADIO-H: 13 tiles of 1032 tokens, 16
 * heads of 80; its rate of 4 T^2 W FLOPs a tile). Then a decode GEMV (one activation row, the MLP's up projection 5120 -> 20480) with
 * the weight in BF16, FP8 and NVFP4: the weight bytes read per second against the copy rate
 * (the decode bound; NVL_CUDA_GEMV=0 takes the quantized formats' simpler kernel), and the BF16
 * one at each of the model's matmul shapes (k_sweep). Data: uniform random, the same every run. Which kernels run is the backend's
 * choice; on CUDA NVL_CUDA_FLASH=0 / NVL_CUDA_SSD=0 select the simpler ones, so two runs
 * compare them (scripts/gpu-check.sh does).
 *
 *   bench_ops [--backend cpu|cuda] [--shape 12b|small] [--rows T] [--runs N]
 *
 * --shape small (4/2 heads of 32; 4 Mamba heads of 16, 2 groups of 32; 100 rows) is a smoke
 * test any backend finishes in seconds. Output: one table row per op, and a line
 * `ops: {json}` with the same figures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "base/tensor.h"
#include "bench_util.h"
#include "ops.h"

typedef struct bench_shape {
    const char *name;
    int64_t Hq, Hkv, D;     /* attention */
    int64_t H, P, N, G;     /* Mamba */
    int64_t rows;           /* default T */
    int64_t gK, gN;         /* a decode GEMV: x (1, gK) times a weight (gN, gK) */
    int n_attn, n_mamba;    /* layers of the model */
    int64_t vimg, vT, vH, vW; /* the ViT's attention: images (tiles), tokens per image, heads, width */
    int vlayers;
} bench_shape;

static const bench_shape k_shapes[] = {
    /* (the ViT part: RADIO-H over a 13-tile page, 1024 patches + 8 prefix tokens a tile) */
    {"12b", 40, 8, 128, 128, 80, 128, 8, 3400, 5120, 20480, 6, 28, 13, 1032, 16, 1280, 32},
    {"small", 4, 2, 32, 4, 16, 32, 2, 100, 256, 512, 6, 28, 2, 70, 2, 64, 2},
};

/* The BF16 decode GEMV at each matmul shape of the model (K -> N; model.md §2: in_proj 2 d_inner
 * + 2 G N + H, the MLP's 20480, GQA 8 x 128 for k and v, the 131072-token vocabulary): one
 * activation row, where cuBLAS picks its kernel per shape. */
static const struct {
    const char *shape, *what;
    int64_t K, N;
} k_sweep[] = {
    {"12b", "in_proj", 5120, 22656}, {"12b", "out_proj", 10240, 5120}, {"12b", "up", 5120, 20480},
    {"12b", "down", 20480, 5120},    {"12b", "q, o", 5120, 5120},      {"12b", "k, v", 5120, 1024},
    {"12b", "lm_head", 5120, 131072}, {"small", "wide", 256, 512},     {"small", "narrow", 512, 256},
    {"small", "kv", 256, 64},
};

static kern_backend *g_be;
static uint32_t g_seed = 12345;

static float urand(void) { /* xorshift32 in [-1, 1) */
    g_seed ^= g_seed << 13;
    g_seed ^= g_seed >> 17;
    g_seed ^= g_seed << 5;
    return (float)(g_seed >> 8) / (float)(1u << 23) - 1.0f;
}

static void die(const char *what, const nvl_err *err) {
    fprintf(stderr, "bench_ops: %s: %s\n", what, err ? err->msg : "");
    exit(1);
}

/* a backend tensor of dtype dt (as the backend holds activations) with values lo + (hi-lo) u */
static nvl_tensor make(nvl_dtype dt, int nd, const int64_t *shape, float lo, float hi) {
    nvl_err err = {0};
    nvl_tensor t = kern_act(g_be, dt, nd, shape, NULL);
    const int64_t n = nvl_tensor_numel(&t);
    const size_t bytes = kern_act_bytes(g_be, dt, n);
    if (kern_buffer_alloc(g_be, bytes, &t.data, &err) != NVL_OK) die("allocation", &err);
    void *h = malloc(bytes);
    if (!h) die("host allocation", NULL);
    for (int64_t i = 0; i < n; i++) {
        const float v = lo + (hi - lo) * 0.5f * (urand() + 1.0f);
        if (dt == NVL_DTYPE_F32 || t.widened) ((float *)h)[i] = dt == NVL_DTYPE_BF16 ? nvl_round_bf16(v) : v;
        else ((uint16_t *)h)[i] = nvl_f32_to_bf16(v);
    }
    if (kern_copy_to_backend(g_be, t.data, h, bytes, &err) != NVL_OK) die("upload", &err);
    free(h);
    return t;
}

/* median seconds of runs calls of fn (after one warm-up), each followed by a synchronisation */
typedef nvl_status (*op_fn)(void *ctx, nvl_err *err);
static double time_op(const char *what, op_fn fn, void *ctx, int runs) {
    nvl_err err = {0};
    if (fn(ctx, &err) != NVL_OK || kern_synchronize(g_be, &err) != NVL_OK) die(what, &err);
    double *t = malloc((size_t)runs * sizeof *t);
    if (!t) die("host allocation", NULL);
    for (int r = 0; r < runs; r++) {
        const double t0 = nvl_now();
        if (fn(ctx, &err) != NVL_OK || kern_synchronize(g_be, &err) != NVL_OK) die(what, &err);
        t[r] = nvl_now() - t0;
    }
    qsort(t, (size_t)runs, sizeof *t, bench_cmp_double);
    const double med = t[runs / 2];
    free(t);
    return med;
}

typedef struct att_ctx {
    nvl_tensor o, q, kc, vc;
    int64_t Hq, Hkv;
    kern_seq seq;
} att_ctx;
static nvl_status run_att(void *p, nvl_err *err) {
    att_ctx *a = p;
    return kern_attention_causal(g_be, &a->o, &a->q, &a->kc, &a->vc, a->Hq, a->Hkv, &a->seq, 1, err);
}

typedef struct mm_ctx {
    nvl_tensor y, x;
    kern_weight w;
} mm_ctx;
typedef struct vit_ctx {
    nvl_tensor o, qkv;
    int64_t n_img, H;
} vit_ctx;
static nvl_status run_vit(void *p, nvl_err *err) {
    vit_ctx *v = p;
    return kern_attention_full(g_be, &v->o, &v->qkv, v->n_img, v->H, err);
}

static nvl_status run_mm(void *p, nvl_err *err) {
    mm_ctx *m = p;
    return kern_matmul(g_be, &m->y, &m->x, &m->w, err);
}

/* A weight (N, K) of kind 0 BF16, 1 FP8, 2 NVFP4 with random stored values (no NaN codes; block
 * scales 2^-9 .. 240), placed on the backend; its bytes per use in *bytes. */
static kern_weight make_weight(int kind, int64_t N, int64_t K, nvl_tensor *store, size_t *bytes) {
    nvl_err err = {0};
    const size_t nb = kind == 0 ? (size_t)(N * K) * 2 : kind == 1 ? (size_t)(N * K) : (size_t)(N * K) / 2;
    const size_t ns = kind == 2 ? (size_t)(N * K / 16) : 0;
    uint8_t *h = malloc(nb), *hs = malloc(ns ? ns : 1);
    if (!h || !hs) die("host allocation", NULL);
    for (size_t i = 0; i < nb; i++) {
        uint8_t v = (uint8_t)(urand() * 127.0f + 128.0f);
        if (kind == 1 && (v & 0x7f) == 0x7f) v ^= 1;
        h[i] = v;
    }
    if (kind == 0)
        for (size_t i = 0; i < nb / 2; i++) ((uint16_t *)h)[i] = nvl_f32_to_bf16(0.02f * urand());
    for (size_t i = 0; i < ns; i++) hs[i] = (uint8_t)(1 + (unsigned)((urand() + 1.0f) * 60.0f));
    store[0] = kind == 0   ? nvl_tensor_make(NVL_DTYPE_BF16, 2, (int64_t[]){N, K}, h)
               : kind == 1 ? nvl_tensor_make(NVL_DTYPE_F8_E4M3, 2, (int64_t[]){N, K}, h)
                           : nvl_tensor_make(NVL_DTYPE_U8, 2, (int64_t[]){N, K / 2}, h);
    store[1] = nvl_tensor_make(NVL_DTYPE_F8_E4M3, 2, (int64_t[]){N, K / 16}, hs);
    nvl_tensor *place[2] = {&store[0], &store[1]};
    if (kern_weights_place(g_be, place, kind == 2 ? 2 : 1, &err) != NVL_OK) die("weight placement", &err);
    /* (the CPU backend keeps pointing at the host copies: they stay until exit) */
    if (strcmp(kern_backend_name(g_be), "cpu")) {
        free(h);
        free(hs);
    }
    kern_weight w = kern_weight_plain(&store[0], kind == 0 ? "bf16.weight" : kind == 1 ? "fp8.weight" : "nvfp4.weight");
    w.n_out = N;
    w.n_in = K;
    if (kind) {
        w.quant = kind == 1 ? KERN_QUANT_FP8 : KERN_QUANT_NVFP4;
        w.weight_scale = 0.01f;
        w.input_scale = 0.02f;
        if (kind == 2) w.block_scale = store[1];
    }
    *bytes = nb + ns;
    return w;
}

typedef struct ssm_ctx {
    nvl_tensor y, x, dt, A, B, C, D, state;
    int64_t G;
    kern_seq seq;
} ssm_ctx;
static nvl_status run_ssm(void *p, nvl_err *err) {
    ssm_ctx *s = p;
    /* the state is overwritten each call: the work is the same whatever it holds */
    return kern_ssm_scan(g_be, &s->y, &s->x, &s->dt, &s->A, &s->B, &s->C, &s->D, &s->state, s->G, 256,
                         KERN_SCAN_AUTO, &s->seq, 1, err);
}

int main(int argc, char **argv) {
    const char *backend = getenv("NVL_BACKEND") ? getenv("NVL_BACKEND") : "cpu", *sname = "12b";
    int64_t rows = 0;
    int runs = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend = argv[++i];
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc) sname = argv[++i];
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc) rows = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_ops [--backend cpu|cuda] [--shape 12b|small] [--rows T] [--runs N]\n");
            return 2;
        }
    }
    const bench_shape *sh = NULL;
    for (size_t i = 0; i < sizeof k_shapes / sizeof k_shapes[0]; i++)
        if (!strcmp(k_shapes[i].name, sname)) sh = &k_shapes[i];
    if (!sh || runs < 1 || rows < 0) {
        fprintf(stderr, "bench_ops: unknown shape %s, or --runs < 1, or --rows < 0\n", sname);
        return 2;
    }
    if (!rows) rows = sh->rows;
    nvl_err err = {0};
    if (kern_backend_init(&g_be, backend, &err) != NVL_OK) die("backend", &err);
    kern_device_rates rates = {0};
    /* (the small shape is a smoke test: the device rates take a second on a GPU, hours on the
       emulator) */
    const int have_rates = strcmp(sh->name, "small") && kern_backend_measure(g_be, &rates, &err) == NVL_OK;
    const nvl_dtype bf = NVL_DTYPE_BF16;
    const kern_seq seq = {0, 0, 0, rows, 0};

    /* attention: q (T, Hq D), the cache (1, L, Hkv D) with the step's own rows in it */
    att_ctx a = {.Hq = sh->Hq, .Hkv = sh->Hkv, .seq = seq};
    const int64_t L = (rows + 255) / 256 * 256, KD = sh->Hkv * sh->D;
    a.q = make(bf, 2, (int64_t[]){rows, sh->Hq * sh->D}, -1.5f, 1.5f);
    a.o = make(bf, 2, (int64_t[]){rows, sh->Hq * sh->D}, 0, 0);
    a.kc = make(bf, 3, (int64_t[]){1, L, KD}, -1, 1);
    a.vc = make(bf, 3, (int64_t[]){1, L, KD}, -1, 1);
    const double t_att = time_op("attention_causal", run_att, &a, runs);
    const double att_flop = 2.0 * (double)rows * (double)rows * (double)sh->D * (double)sh->Hq;

    /* the ViT's attention (bf16 qkv as its GEMM + bias leaves it, all keys of the tile) */
    vit_ctx v = {.n_img = sh->vimg, .H = sh->vH};
    v.qkv = make(bf, 2, (int64_t[]){sh->vimg * sh->vT, 3 * sh->vW}, -1.5f, 1.5f);
    v.o = make(bf, 2, (int64_t[]){sh->vimg * sh->vT, sh->vW}, 0, 0);
    const double t_vit = time_op("attention_full", run_vit, &v, runs);
    const double vit_flop = 4.0 * (double)sh->vimg * (double)sh->vT * (double)sh->vT * (double)sh->vW;

    /* the scan: x, B, C as the conv output gives them (bf16), dt in (0.01, 0.6), A < 0 */
    ssm_ctx s = {.G = sh->G, .seq = seq};
    s.x = make(bf, 2, (int64_t[]){rows, sh->H * sh->P}, -1, 1);
    s.B = make(bf, 2, (int64_t[]){rows, sh->G * sh->N}, -1, 1);
    s.C = make(bf, 2, (int64_t[]){rows, sh->G * sh->N}, -1, 1);
    s.dt = make(bf, 2, (int64_t[]){rows, sh->H}, 0.01f, 0.6f);
    s.A = make(NVL_DTYPE_F32, 1, (int64_t[]){sh->H}, -1.5f, -0.1f);
    s.D = make(NVL_DTYPE_F32, 1, (int64_t[]){sh->H}, -1, 1);
    s.state = make(NVL_DTYPE_F32, 4, (int64_t[]){1, sh->H, sh->P, sh->N}, -1, 1);
    s.y = make(NVL_DTYPE_F32, 2, (int64_t[]){rows, sh->H * sh->P}, 0, 0);
    const double t_ssm = time_op("ssm_scan", run_ssm, &s, runs);

    /* decode GEMVs: one activation row times a weight in each stored format */
    static const char *kinds[3] = {"BF16", "FP8", "NVFP4"};
    double t_mm[3], gbs[3];
    nvl_tensor wstore[3][2];
    mm_ctx mm[3];
    for (int k = 0; k < 3; k++) {
        size_t wb = 0;
        mm[k].w = make_weight(k, sh->gN, sh->gK, wstore[k], &wb);
        mm[k].x = make(bf, 2, (int64_t[]){1, sh->gK}, -2, 2);
        mm[k].y = make(bf, 2, (int64_t[]){1, sh->gN}, 0, 0);
        t_mm[k] = time_op(kinds[k], run_mm, &mm[k], runs);
        gbs[k] = (double)wb / t_mm[k] * 1e-9;
    }

    /* the BF16 GEMV per model shape (weights stay placed until exit: ~3.7 GB at 12B) */
    char sweep_json[2048] = "";
    char sweep_rows[2048] = "";
    size_t sj = 0, sr = 0;
    for (size_t i = 0; i < sizeof k_sweep / sizeof k_sweep[0]; i++) {
        if (strcmp(k_sweep[i].shape, sh->name)) continue;
        nvl_tensor ws[2];
        size_t wb = 0;
        mm_ctx g = {.w = make_weight(0, k_sweep[i].N, k_sweep[i].K, ws, &wb)};
        g.x = make(bf, 2, (int64_t[]){1, k_sweep[i].K}, -2, 2);
        g.y = make(bf, 2, (int64_t[]){1, k_sweep[i].N}, 0, 0);
        const double t = time_op(k_sweep[i].what, run_mm, &g, runs), gb = (double)wb / t * 1e-9;
        char frac[32] = "-";
        if (have_rates && rates.copy_gbs > 0) snprintf(frac, sizeof frac, "%.0f %%", 100.0 * gb / rates.copy_gbs);
        if (sr < sizeof sweep_rows)
            sr += (size_t)snprintf(sweep_rows + sr, sizeof sweep_rows - sr, "| %s (%lld -> %lld) | %.4f | %.0f | %s |\n",
                                   k_sweep[i].what, (long long)k_sweep[i].K, (long long)k_sweep[i].N, 1e3 * t, gb, frac);
        if (sj < sizeof sweep_json)
            sj += (size_t)snprintf(sweep_json + sj, sizeof sweep_json - sj, "%s\"%s %lldx%lld\": %.1f", sj ? ", " : "",
                                   k_sweep[i].what, (long long)k_sweep[i].K, (long long)k_sweep[i].N, gb);
        kern_buffer_free(g_be, g.x.data);
        kern_buffer_free(g_be, g.y.data);
    }

    const char *fl = getenv("NVL_CUDA_FLASH"), *ss = getenv("NVL_CUDA_SSD");
    printf("backend %s, shape %s, %lld rows from position 0, median of %d; NVL_CUDA_FLASH=%s NVL_CUDA_SSD=%s\n", backend,
           sh->name, (long long)rows, runs, fl ? fl : "(unset)", ss ? ss : "(unset)");
    if (have_rates) printf("device: BF16 GEMM %.1f TFLOP/s, copy %.0f GB/s (measured now)\n", rates.gemm_bf16_tflops, rates.copy_gbs);
    printf("| op | ms per call | layers | ms per chunk | TFLOP/s |\n|---|---|---|---|---|\n");
    printf("| attention_causal (%lld/%lld heads of %lld) | %.3f | %d | %.2f | %.1f |\n", (long long)sh->Hq,
           (long long)sh->Hkv, (long long)sh->D, 1e3 * t_att, sh->n_attn, 1e3 * t_att * sh->n_attn, att_flop / t_att * 1e-12);
    printf("| ssm_scan (%lld heads of %lld, N %lld) | %.3f | %d | %.2f | - |\n", (long long)sh->H, (long long)sh->P,
           (long long)sh->N, 1e3 * t_ssm, sh->n_mamba, 1e3 * t_ssm * sh->n_mamba);
    printf("| ViT attention_full (%lld tiles of %lld tokens, %lld heads of %lld; per tile set) | %.3f | %d | %.2f | %.1f |\n",
           (long long)sh->vimg, (long long)sh->vT, (long long)sh->vH, (long long)(sh->vW / sh->vH), 1e3 * t_vit, sh->vlayers,
           1e3 * t_vit * sh->vlayers, vit_flop / t_vit * 1e-12);
    printf("\n| decode GEMV (1 x %lld -> %lld) | ms per call | weight GB/s | of the copy rate |\n|---|---|---|---|\n",
           (long long)sh->gK, (long long)sh->gN);
    for (int k = 0; k < 3; k++) {
        char frac[32] = "-";
        if (have_rates && rates.copy_gbs > 0) snprintf(frac, sizeof frac, "%.0f %%", 100.0 * gbs[k] / rates.copy_gbs);
        printf("| %s | %.4f | %.0f | %s |\n", kinds[k], 1e3 * t_mm[k], gbs[k], frac);
    }
    printf("\n| BF16 decode GEMV by model shape (K -> N; NVL_CUDA_GEMV_DEPTH=%s NVL_CUDA_GEMV_MMA=%s) | ms per call | weight GB/s | of the copy rate "
           "|\n|---|---|---|---|\n%s",
           getenv("NVL_CUDA_GEMV_DEPTH") ? getenv("NVL_CUDA_GEMV_DEPTH") : "(unset)",
           getenv("NVL_CUDA_GEMV_MMA") ? getenv("NVL_CUDA_GEMV_MMA") : "(unset)", sweep_rows);
    const char *gv = getenv("NVL_CUDA_GEMV"), *gd = getenv("NVL_CUDA_GEMV_DEPTH"), *gm = getenv("NVL_CUDA_GEMV_MMA"), *amm = getenv("NVL_CUDA_ATTN_MMA");
    printf("ops: {\"backend\": \"%s\", \"shape\": \"%s\", \"rows\": %lld, \"flash\": \"%s\", \"ssd\": \"%s\", "
           "\"gemv\": \"%s\", \"gemv_depth\": \"%s\", \"gemv_mma\": \"%s\", \"attn_mma\": \"%s\", \"attention_ms\": %.4f, \"attention_tflops\": %.2f, \"ssm_scan_ms\": %.4f, "
           "\"vit_attention_ms\": %.4f, \"vit_attention_tflops\": %.2f, "
           "\"gemv_bf16_gbs\": %.1f, \"gemv_fp8_gbs\": %.1f, \"gemv_nvfp4_gbs\": %.1f, \"copy_gbs\": %.1f, "
           "\"gemm_bf16_tflops\": %.1f, \"gemv_bf16_by_shape_gbs\": {%s}}\n",
           backend, sh->name, (long long)rows, fl ? fl : "", ss ? ss : "", gv ? gv : "", gd ? gd : "", gm ? gm : "", amm ? amm : "", 1e3 * t_att,
           att_flop / t_att * 1e-12, 1e3 * t_ssm, 1e3 * t_vit, vit_flop / t_vit * 1e-12, gbs[0], gbs[1], gbs[2], have_rates ? rates.copy_gbs : 0.0,
           have_rates ? rates.gemm_bf16_tflops : 0.0, sweep_json);
    nvl_tensor *all[] = {&a.q, &a.o, &a.kc, &a.vc, &v.qkv, &v.o, &s.x, &s.B, &s.C, &s.dt, &s.A, &s.D, &s.state, &s.y,
                         &mm[0].x, &mm[0].y, &mm[1].x, &mm[1].y, &mm[2].x, &mm[2].y};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kern_buffer_free(g_be, all[i]->data);
    kern_backend_free(g_be);
    return 0;
}
