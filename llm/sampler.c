/* Token sampling: greedy, temperature, top-k, top-p, min-p, with a seeded RNG
 * (xoshiro256** seeded through splitmix64). Candidates are filtered in the order
 * temperature -> top-k -> top-p -> min-p, then one is drawn. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "llm.h"

/* A candidate: its logit (NaN read as -inf, so the order is total) and id. */
typedef struct cand {
    float v;
    int32_t id;
} cand;

struct llm_sampler {
    llm_sampler_params p;
    int64_t n_vocab;
    uint64_t s[4];
    cand *c;     /* (n_vocab) candidates, the first n in the sampling order */
    float *prob; /* (n_vocab) */
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
    if (q.temperature < 0 || q.top_k < 0 || !(q.top_p >= 0 && q.top_p <= 1) || q.min_p < 0 || q.min_p > 1)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG,
                           "sampler: temperature %g, top_k %d, top_p %g, min_p %g out of range "
                           "(temperature >= 0, top_k >= 0, 0 <= top_p <= 1, 0 <= min_p <= 1)",
                           (double)q.temperature, q.top_k, (double)q.top_p, (double)q.min_p);
    llm_sampler *s = nvl_calloc(1, sizeof *s);
    if (!s) return nvl_err_set(err, NVL_ERR_NOMEM, "sampler: out of memory");
    s->p = q;
    s->n_vocab = n_vocab;
    s->c = nvl_malloc((size_t)n_vocab * sizeof *s->c);
    s->prob = nvl_malloc((size_t)n_vocab * sizeof *s->prob);
    if (!s->c || !s->prob) {
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
    nvl_free(s->c);
    nvl_free(s->prob);
    nvl_free(s);
}

/* The sampling order: logit descending, ties to the lower id. */
static int better(const cand *a, const cand *b) { return a->v > b->v || (a->v == b->v && a->id < b->id); }
static int by_order(const void *a, const void *b) { return better(a, b) ? -1 : better(b, a) ? 1 : 0; }

/* Moves the m best of c[0..n) (in the sampling order) to c[0..m), in no particular order:
 * quickselect (Hoare partitions around a median of three), O(n) on average. */
static void select_best(cand *c, int64_t n, int64_t m) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        cand a = c[lo], b = c[mid], d = c[hi], piv;
        if (better(&a, &b)) piv = better(&b, &d) ? b : better(&a, &d) ? d : a;
        else piv = better(&a, &d) ? a : better(&b, &d) ? d : b;
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (better(&c[i], &piv)) i++;
            while (better(&piv, &c[j])) j--;
            if (i <= j) {
                const cand t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        /* c[lo..j] are not worse than piv, c[i..hi] not better */
        if (m - 1 <= j) hi = j;
        else if (m - 1 >= i) lo = i;
        else return;
    }
}

/* c[0..m) made the m best of c[0..n) in the sampling order. */
static void best_sorted(cand *c, int64_t n, int64_t m) {
    if (m < n) select_best(c, n, m);
    qsort(c, (size_t)m, sizeof *c, by_order);
}

int32_t llm_sampler_sample(llm_sampler *s, const float *logits) {
    const int64_t V = s->n_vocab;
    int32_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = (int32_t)i;
    if (s->p.temperature <= 0.0f) return best;
    /* Candidates in the sampling order (logit descending, ties to the lower id) only as far as a
     * rule needs them: the top_k best, or the prefix top-p / min-p keep, found by selection (a
     * full sort of a 131K vocabulary took ~17 ms a token). Softmax over the candidates top-k
     * leaves, at the temperature; then top-p (the smallest prefix reaching top_p), min-p
     * (p >= min_p * p_max), and a draw in proportion. */
    cand *c = s->c;
    float mx = -INFINITY; /* the largest key (a NaN at id 0 would have been `best`) */
    for (int64_t i = 0; i < V; i++) {
        c[i] = (cand){isnan(logits[i]) ? -INFINITY : logits[i], (int32_t)i};
        mx = c[i].v > mx ? c[i].v : mx;
    }
    int64_t n = V, sorted = 0; /* c[0..sorted) in the sampling order */
    if (s->p.top_k > 0 && s->p.top_k < V) {
        n = sorted = s->p.top_k;
        best_sorted(c, V, n);
    }
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        s->prob[i] = expf((c[i].v - mx) / s->p.temperature);
        sum += s->prob[i];
    }
    for (int64_t i = 0; i < n; i++) s->prob[i] = (float)(s->prob[i] / sum);
    if (s->p.top_p < 1.0f) {
        /* the smallest prefix whose mass reaches top_p: sort more of the best (1024 first, then
         * eight times as many) until it does or all are sorted */
        int64_t keep = n, walked = 0, m = sorted > 0 ? sorted : n < 1024 ? n : 1024;
        double cum = 0.0;
        for (;;) {
            if (m > sorted) { /* the probabilities follow their candidates */
                best_sorted(c + sorted, n - sorted, m - sorted);
                for (int64_t i = sorted; i < m; i++) s->prob[i] = (float)(expf((c[i].v - mx) / s->p.temperature) / sum);
                sorted = m;
            }
            for (; walked < m; walked++) {
                cum += s->prob[walked];
                if (cum >= s->p.top_p) break;
            }
            if (walked < m) {
                keep = walked + 1;
                break;
            }
            if (m == n) break;
            m = m <= n / 8 ? m * 8 : n;
        }
        n = keep;
    }
    if (s->p.min_p > 0.0f) { /* p is monotone in the logit: the kept ones are the best few */
        float pmax = 0;
        for (int64_t i = 0; i < n; i++) pmax = s->prob[i] > pmax ? s->prob[i] : pmax;
        const float cut = s->p.min_p * pmax;
        int64_t keep = 0;
        for (int64_t i = 0; i < n; i++) keep += s->prob[i] >= cut;
        if (keep < 1) keep = 1;
        if (keep > sorted) {
            for (int64_t i = sorted; i < n; i++) c[i].v = s->prob[i] >= cut ? c[i].v : -INFINITY;
            best_sorted(c + sorted, n - sorted, keep - sorted);
            for (int64_t i = sorted; i < keep; i++) s->prob[i] = (float)(expf((c[i].v - mx) / s->p.temperature) / sum);
            sorted = keep;
        }
        n = keep;
    }
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) total += s->prob[i];
    double r = next_unit(s->s) * total;
    int32_t last = c[0].id;
    for (int64_t i = 0; i < n; i++) {
        if (s->prob[i] > 0) last = c[i].id;
        r -= s->prob[i];
        if (r < 0) return c[i].id;
    }
    return last;
}
