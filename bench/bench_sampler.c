/* bench_sampler: time to draw one token from a 131,072-entry vocabulary (the model's) with the
 * usual sampling settings, on the host (where every sampled row is drawn, also on a device).
 *
 *   bench_sampler [V]
 * Logits: normal, sd 3 (a fixed generator). Reports ms per token (mean of 50 draws) per setting. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/alloc.h"
#include "bench_util.h"
#include "llm.h"

int main(int argc, char **argv) {
    const int64_t V = argc > 1 ? atoll(argv[1]) : 131072;
    if (V < 2) {
        fprintf(stderr, "usage: bench_sampler [V >= 2]\n");
        return 2;
    }
    float *l = nvl_malloc((size_t)V * sizeof *l);
    if (!l) return 1;
    uint64_t x = 1;
    for (int64_t i = 0; i < V; i++) { /* Box-Muller from a 64-bit LCG */
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        const double u = ((double)(x >> 11) + 1.0) / 9007199254740994.0;
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        const double v = (double)(x >> 11) / 9007199254740992.0;
        l[i] = (float)(3.0 * sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
    }
    const struct {
        const char *name;
        llm_sampler_params p;
    } cfg[] = {{"temperature 0.7, top_p 0.95", {.temperature = 0.7f, .top_p = 0.95f}},
               {"temperature 1, top_k 50", {.temperature = 1.0f, .top_k = 50, .top_p = 1.0f}},
               {"temperature 0.6, min_p 0.05", {.temperature = 0.6f, .top_p = 1.0f, .min_p = 0.05f}},
               {"temperature 1, no cut", {.temperature = 1.0f, .top_p = 1.0f}}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        llm_sampler *s = NULL;
        nvl_err err = {0};
        if (llm_sampler_init(&s, V, &cfg[c].p, &err) != NVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        const int N = 50;
        long acc = 0;
        const double t0 = nvl_now();
        for (int i = 0; i < N; i++) acc += llm_sampler_sample(s, l);
        printf("| %s | V %lld | %.3f ms/token | (ids sum %ld) |\n", cfg[c].name, (long long)V, (nvl_now() - t0) / N * 1e3, acc);
        llm_sampler_free(s);
    }
    nvl_free(l);
    return 0;
}
