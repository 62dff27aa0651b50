/* EVS token selection for video (model.md §6.4; transformers' compute_retention_mask, vLLM evs.py):
 * dissimilarity to the same position in the previous frame, first frame always kept, the
 * keep_n most changed tokens kept in their original order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "tokenreduce.h"

typedef struct scored {
    float dis;
    int64_t idx;
} scored;

/* descending by dis, ties by ascending index (torch.argsort(descending=True, stable=True)) */
static int by_dis(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->dis != y->dis) return x->dis > y->dis ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

nvl_status tokred_evs_mask(const float *E, int64_t F, int64_t T, int64_t D, double q, int round_bf16,
                           uint8_t *keep, int *kept_per_frame, nvl_err *err) {
    if (F <= 0 || T <= 0 || D <= 0 || !(q >= 0 && q < 1))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "EVS: %lld frames x %lld tokens x %lld, rate %g (expected [0, 1))",
                           (long long)F, (long long)T, (long long)D, q);
    const int64_t n = F * T;
    scored *s = nvl_malloc((size_t)n * sizeof *s);
    if (!s) return nvl_err_set(err, NVL_ERR_NOMEM, "EVS: out of memory");
    for (int64_t t = 0; t < T; t++) s[t] = (scored){255.0f, t};
    for (int64_t f = 1; f < F; f++)
        for (int64_t t = 0; t < T; t++) {
            const float *a = E + (f * T + t) * D, *b = E + ((f - 1) * T + t) * D;
            double dot = 0, na = 0, nb = 0;
            for (int64_t d = 0; d < D; d++) {
                dot += (double)a[d] * b[d];
                na += (double)a[d] * a[d];
                nb += (double)b[d] * b[d];
            }
            /* torch.cosine_similarity: dot / max(||a|| * ||b||, eps), eps 1e-8 */
            double den = sqrt(na) * sqrt(nb);
            if (den < 1e-8) den = 1e-8;
            float sim = (float)(dot / den);
            float dis;
            if (round_bf16) dis = nvl_round_bf16(1.0f - nvl_round_bf16(sim));
            else dis = 1.0f - sim;
            s[f * T + t] = (scored){dis, f * T + t};
        }
    int64_t keep_n = (int64_t)((double)T * (double)F * (1.0 - q)); /* int() truncation */
    if (keep_n < T) keep_n = T;
    qsort(s, (size_t)n, sizeof *s, by_dis);
    memset(keep, 0, (size_t)n);
    for (int64_t i = 0; i < keep_n; i++) keep[s[i].idx] = 1;
    for (int64_t f = 0; f < F; f++) {
        int c = 0;
        for (int64_t t = 0; t < T; t++) c += keep[f * T + t];
        kept_per_frame[f] = c;
    }
    nvl_free(s);
    return NVL_OK;
}
