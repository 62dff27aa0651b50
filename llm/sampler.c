/* Token sampling: greedy, temperature, top-k, top-p, min-p, with a seeded RNG
 * (xoshiro256** seeded through splitmix64). Candidates are filtered in the order
 * temperature -> top-k -> top-p -> min-p, then one is drawn. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "llm.h"

struct llm_sampler {
    llm_sampler_params p;
    int64_t n_vocab;
    uint64_t s[4];
    int32_t *idx; /* (n_vocab) candidate ids */
    float *prob;  /* (n_vocab) */
};

llm_sampler_params llm_sampler_params_default(void) {
    llm_sampler_params p = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = 0};
    return p;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t next_u64(uint64_t *s) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}
static double next_unit(uint64_t *s) { return (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0); }

nvl_status llm_sampler_init(llm_sampler **out, int64_t n_vocab, const llm_sampler_params *p,
                            nvl_err *err) {
    *out = NULL;
    llm_sampler_params q = p ? *p : llm_sampler_params_default();
    if (q.temperature < 0 || q.top_k < 0 || !(q.top_p > 0 && q.top_p <= 1) || q.min_p < 0 || q.min_p > 1)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG,
                           "sampler: temperature %g, top_k %d, top_p %g, min_p %g out of range "
                           "(temperature >= 0, top_k >= 0, 0 < top_p <= 1, 0 <= min_p <= 1)",
                           (double)q.temperature, q.top_k, (double)q.top_p, (double)q.min_p);
    llm_sampler *s = nvl_calloc(1, sizeof *s);
    if (!s) return nvl_err_set(err, NVL_ERR_NOMEM, "sampler: out of memory");
    s->p = q;
    s->n_vocab = n_vocab;
    s->idx = nvl_malloc((size_t)n_vocab * sizeof *s->idx);
    s->prob = nvl_malloc((size_t)n_vocab * sizeof *s->prob);
    if (!s->idx || !s->prob) {
        llm_sampler_free(s);
        return nvl_err_set(err, NVL_ERR_NOMEM, "sampler: out of memory");
    }
    uint64_t x = q.seed;
    for (int i = 0; i < 4; i++) s->s[i] = splitmix64(&x);
    *out = s;
    return NVL_OK;
}

void llm_sampler_free(llm_sampler *s) {
    if (!s) return;
    nvl_free(s->idx);
    nvl_free(s->prob);
    nvl_free(s);
}

static const float *g_sort_logits; /* qsort context (the sampler is not shared across threads) */
static int by_logit_desc(const void *a, const void *b) {
    float x = g_sort_logits[*(const int32_t *)a], y = g_sort_logits[*(const int32_t *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b; /* ties: lower id first */
}

int32_t llm_sampler_sample(llm_sampler *s, const float *logits) {
    const int64_t V = s->n_vocab;
    int32_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = (int32_t)i;
    if (s->p.temperature <= 0.0f) return best;
    /* candidates sorted by logit; top-k cut first (cheap), then softmax with temperature */
    int64_t n = V;
    for (int64_t i = 0; i < V; i++) s->idx[i] = (int32_t)i;
    g_sort_logits = logits;
    qsort(s->idx, (size_t)V, sizeof *s->idx, by_logit_desc);
    if (s->p.top_k > 0 && s->p.top_k < n) n = s->p.top_k;
    const float mx = logits[s->idx[0]];
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        s->prob[i] = expf((logits[s->idx[i]] - mx) / s->p.temperature);
        sum += s->prob[i];
    }
    for (int64_t i = 0; i < n; i++) s->prob[i] = (float)(s->prob[i] / sum);
    if (s->p.top_p < 1.0f) {
        double cum = 0.0;
        int64_t keep = n;
        for (int64_t i = 0; i < n; i++) {
            cum += s->prob[i];
            if (cum >= s->p.top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (s->p.min_p > 0.0f) {
        const float cut = s->p.min_p * s->prob[0];
        int64_t keep = 1;
        while (keep < n && s->prob[keep] >= cut) keep++;
        n = keep;
    }
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) total += s->prob[i];
    double r = next_unit(s->s) * total;
    for (int64_t i = 0; i < n; i++) {
        r -= s->prob[i];
        if (r < 0) return s->idx[i];
    }
    return s->idx[n - 1];
}
