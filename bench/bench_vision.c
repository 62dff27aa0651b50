/* bench_vision: RADIO ViT tiles/s at a given shape on synthetic BF16 weights, on the models'
 * backend (NVL_BACKEND).
 *
 *   bench_vision [--shape tiny|h] [--tiles N]
 *
 * On a device backend: one tile first (cuBLAS warm-up, not timed), then the N tiles from RGB8
 * (uploaded as bytes, normalised on the device: vision_encode_rgb8), the rate as a fraction of
 * the BF16 GEMM rate the device reaches in the same run (kern_backend_measure).
 *
 * `h` is the real C-RADIOv2-H shape: width 1280, 32 blocks, 16 heads, MLP 5120, 8 prefix
 * tokens, 512x512 tiles (32x32 patches), 128x128 position table. The synthetic checkpoint
 * (config.json + model.safetensors, streamed to /tmp) goes through the normal loader. Reports
 * seconds per tile (the ViT only: preprocessing, pixel shuffle and projector excluded) and
 * peak RSS. */
#include "bench_util.h"
#include "backend.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "vision.h"


static uint64_t g_rng = 88172645463325252ULL;
static uint16_t rnd_bf16(float scale) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return nvl_f32_to_bf16(((float)(g_rng >> 40) / 16777216.0f * 2.0f - 1.0f) * scale);
}

typedef struct { char name[160]; int nd; int64_t s[3]; } spec;

int main(int argc, char **argv) {
    const char *shape = "h";
    int n_tiles = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shape") && i + 1 < argc) shape = argv[++i];
        else if (!strcmp(argv[i], "--tiles") && i + 1 < argc) n_tiles = atoi(argv[++i]);
        else { fprintf(stderr, "usage: bench_vision [--shape tiny|h] [--tiles N]\n"); return 2; }
    }
    const int real = !strcmp(shape, "h");
    const int64_t W = real ? 1280 : 64, L = real ? 32 : 2, Hh = real ? 16 : 4, F = 4 * W, S = real ? 512 : 64, T = 128;
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/nanovl-bench-vit-%s", shape);
    mkdir(dir, 0755);
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    fprintf(f, "{\"force_image_size\": %lld, \"patch_size\": 16, \"vision_config\": {\"num_attention_heads\": %lld}}\n",
            (long long)S, (long long)Hh);
    fclose(f);
    spec *sp = calloc((size_t)(8 + 12 * L), sizeof *sp);
    int n = 0;
#define ADD(NM, ND, A, B, C) do { snprintf(sp[n].name, sizeof sp[n].name, "%s", NM); sp[n].nd = ND; sp[n].s[0] = A; sp[n].s[1] = B; sp[n].s[2] = C; n++; } while (0)
    ADD("vision_model.radio_model.model.patch_generator.embedder.weight", 2, W, 768, 0);
    ADD("vision_model.radio_model.model.patch_generator.pos_embed", 3, 1, T * T, W);
    ADD("vision_model.radio_model.model.patch_generator.cls_token.token", 2, 8, W, 0);
    for (int64_t l = 0; l < L; l++) {
        char b[160];
#define BLK(SUF, ND, A, B) do { snprintf(b, sizeof b, "vision_model.radio_model.model.blocks.%lld.%s", (long long)l, SUF); ADD(b, ND, A, B, 0); } while (0)
        BLK("norm1.weight", 1, W, 0); BLK("norm1.bias", 1, W, 0); BLK("norm2.weight", 1, W, 0); BLK("norm2.bias", 1, W, 0);
        BLK("attn.qkv.weight", 2, 3 * W, W); BLK("attn.qkv.bias", 1, 3 * W, 0);
        BLK("attn.proj.weight", 2, W, W); BLK("attn.proj.bias", 1, W, 0);
        BLK("mlp.fc1.weight", 2, F, W); BLK("mlp.fc1.bias", 1, F, 0);
        BLK("mlp.fc2.weight", 2, W, F); BLK("mlp.fc2.bias", 1, W, 0);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    struct stat st;
    if (stat(p, &st) != 0) {
        char *h = malloc((size_t)n * 256 + 16);
        size_t o = 0;
        uint64_t off = 0;
        o += (size_t)sprintf(h + o, "{");
        for (int i = 0; i < n; i++) {
            uint64_t numel = 1;
            for (int d = 0; d < sp[i].nd; d++) numel *= (uint64_t)sp[i].s[d];
            o += (size_t)sprintf(h + o, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[", i ? "," : "", sp[i].name);
            for (int d = 0; d < sp[i].nd; d++) o += (size_t)sprintf(h + o, "%s%lld", d ? "," : "", (long long)sp[i].s[d]);
            o += (size_t)sprintf(h + o, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + numel * 2));
            off += numel * 2;
        }
        o += (size_t)sprintf(h + o, "}");
        while (o % 8) h[o++] = ' ';
        f = fopen(p, "wb");
        uint64_t hl = o;
        fwrite(&hl, 8, 1, f);
        fwrite(h, 1, o, f);
        uint16_t *buf = malloc(1 << 21);
        for (int i = 0; i < n; i++) {
            uint64_t numel = 1;
            for (int d = 0; d < sp[i].nd; d++) numel *= (uint64_t)sp[i].s[d];
            const int norm = strstr(sp[i].name, "norm") && strstr(sp[i].name, "weight");
            while (numel) {
                size_t c = numel < (1 << 20) ? (size_t)numel : (1 << 20);
                for (size_t j = 0; j < c; j++) buf[j] = norm ? nvl_f32_to_bf16(1.0f) : rnd_bf16(0.02f);
                fwrite(buf, 2, c, f);
                numel -= c;
            }
        }
        free(buf);
        free(h);
        fclose(f);
    }
    nvl_err err = {0};
    vision_model *m = NULL;
    if (vision_model_init(&m, dir, &err) != NVL_OK) { fprintf(stderr, "%s\n", err.msg); return 1; }
    const int64_t G = vision_model_grid(m);
    kern_backend *be = vision_model_backend(m);
    const int device = kern_backend_kind_of(be) != KERN_BACKEND_KIND_CPU;
    float *tiles = malloc((size_t)n_tiles * 3 * S * S * sizeof(float));
    for (size_t i = 0; i < (size_t)n_tiles * 3 * S * S; i++) tiles[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    float *feat = malloc((size_t)n_tiles * G * G * W * sizeof(float));
    uint8_t *t8 = malloc((size_t)n_tiles * 3 * S * S);
    for (size_t i = 0; i < (size_t)n_tiles * 3 * S * S; i++) t8[i] = (uint8_t)((i * 2654435761u) >> 13);
    if (device && vision_encode_rgb8(m, t8, 1, feat, &err) != NVL_OK) { fprintf(stderr, "%s\n", err.msg); return 1; }
    if (kern_backend_profiling(be)) { /* the warm-up's ops are not the measured ones */
        kern_backend_profile(be, 0);
        kern_backend_profile(be, 1);
    }
    double t0 = nvl_now();
    if ((device ? vision_encode_rgb8(m, t8, n_tiles, feat, &err) : vision_encode(m, tiles, n_tiles, feat, &err)) != NVL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    double dt = nvl_now() - t0;
    char plabel[64];
    snprintf(plabel, sizeof plabel, "the ViT over %d tiles", n_tiles);
    kern_backend_profile_report(be, stderr, plabel); /* (NVL_PROFILE_OPS=1: the ops' times, on stderr) */
    free(t8);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const double gflop = 2.0 * (double)n_tiles * (double)(G * G + 8) * (double)(L * (3 * W * W + W * W + 2 * W * F)) / 1e9 +
                         (double)n_tiles * (double)L * 4.0 * (double)(G * G + 8) * (double)(G * G + 8) * (double)W / 1e9;
    if (device) {
        const char *lt_bias = getenv("NVL_CUDA_LT_BIAS"), *am = getenv("NVL_CUDA_ATTN_MMA");
        kern_device_rates rates;
        if (kern_backend_measure(be, &rates, &err) != NVL_OK) { fprintf(stderr, "device rates: %s\n", err.msg); return 1; }
        printf("| %s (width %lld, %lld blocks, %lldx%lld tiles) | %s | %d tiles (RGB8, normalised on the device) | %.1f ms/tile "
               "| %.1f tiles/s | %.1f TFLOP/s | GEMM %.1f TFLOP/s | %.0f %% | Linear biases %s | attention on %s |\n",
               real ? "RADIO-H" : "tiny", (long long)W, (long long)L, (long long)S, (long long)S, kern_backend_description(be),
               n_tiles, 1e3 * dt / n_tiles, n_tiles / dt, gflop / dt / 1e3, rates.gemm_bf16_tflops,
               100.0 * gflop / dt / 1e3 / rates.gemm_bf16_tflops,
               lt_bias && !strcmp(lt_bias, "0") ? "in a kernel after an f32 GEMM (NVL_CUDA_LT_BIAS=0)" : "in the GEMM's epilogue",
               am && !strcmp(am, "0") ? "WMMA (NVL_CUDA_ATTN_MMA=0)" : "mma.sync");
    } else {
        printf("| %s (width %lld, %lld blocks, %lldx%lld tiles) | %d tiles | %.2f s/tile | %.3f tiles/s | %.1f GFLOP/s | peak RSS %.0f MiB | %s |\n",
               real ? "RADIO-H" : "tiny", (long long)W, (long long)L, (long long)S, (long long)S, n_tiles, dt / n_tiles,
               n_tiles / dt, gflop / dt, (double)ru.ru_maxrss / 1024.0, kern_cpu_kernels());
    }
    free(tiles);
    free(feat);
    free(sp);
    vision_model_free(m);
    return 0;
}
