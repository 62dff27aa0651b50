/* Sampling: greedy is argmax; temperature/top-k/top-p/min-p cut the candidate set as
 * documented; a seed makes draws reproducible; frequencies follow softmax(logits/T).
 * The sampler finds only as much of the sorted order as a rule needs (selection, then sorting
 * the few): against a brute-force oracle here (every candidate sorted, the rules applied in
 * order, the same RNG), on vocabularies up to the model's 131,072 with ties, NaN (at id 0 too), a flat
 * distribution whose top-p nucleus needs more than 1024 and 8192 candidates, top_k >= V, the ids
 * drawn are the same for every seed. */
#include <stdlib.h>

#include "base/alloc.h"
#include "llm.h"
#include "test_util.h"

/* The oracle: llm/sampler.c's documented rules on a fully sorted vocabulary. Its RNG is the
 * sampler's (xoshiro256** seeded through splitmix64), reproduced here. */
static uint64_t o_splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static uint64_t o_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static double o_unit(uint64_t *s) {
    uint64_t r = o_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = o_rotl(s[3], 45);
    return (double)(r >> 11) * (1.0 / 9007199254740992.0);
}
static const float *o_logits;
static float o_key(int32_t i) { return isnan(o_logits[i]) ? -INFINITY : o_logits[i]; }
static int o_cmp(const void *a, const void *b) {
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    const float u = o_key(x), v = o_key(y);
    if (u != v) return u > v ? -1 : 1;
    return x < y ? -1 : 1;
}
/* One draw. The softmax sum runs in id order without top-k (the sampler's: it never sorts what
 * no rule needs), in the sorted order with it; the draw walks the sorted order when a rule cut
 * the candidates, the id order when none did. */
static int32_t oracle(const llm_sampler_params *p, const float *logits, int64_t V, uint64_t st[4]) {
    int32_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = (int32_t)i;
    if (p->temperature <= 0) return best;
    o_logits = logits;
    float mx = -INFINITY; /* over the keys: a NaN reads as -inf wherever it is */
    for (int64_t i = 0; i < V; i++) mx = o_key((int32_t)i) > mx ? o_key((int32_t)i) : mx;
    int32_t *idx = malloc((size_t)V * sizeof *idx);
    float *pr = malloc((size_t)V * sizeof *pr);
    for (int64_t i = 0; i < V; i++) idx[i] = (int32_t)i;
    o_logits = logits;
    const int cut_any = (p->top_k > 0 && p->top_k < V) || p->top_p < 1 || p->min_p > 0;
    int64_t n = V;
    double sum = 0;
    if (p->top_k > 0 && p->top_k < V) {
        qsort(idx, (size_t)V, sizeof *idx, o_cmp);
        n = p->top_k;
        for (int64_t i = 0; i < n; i++) sum += expf((o_key(idx[i]) - mx) / p->temperature);
    } else {
        for (int64_t i = 0; i < V; i++) sum += expf((o_key((int32_t)i) - mx) / p->temperature);
        if (cut_any) qsort(idx, (size_t)V, sizeof *idx, o_cmp);
    }
    for (int64_t i = 0; i < n; i++) pr[i] = (float)(expf((o_key(idx[i]) - mx) / p->temperature) / sum);
    if (p->top_p < 1) {
        double cum = 0;
        int64_t keep = n;
        for (int64_t i = 0; i < n; i++)
            if ((cum += pr[i]) >= p->top_p) {
                keep = i + 1;
                break;
            }
        n = keep;
    }
    if (p->min_p > 0) {
        const float cut = p->min_p * pr[0];
        int64_t keep = 1;
        while (keep < n && pr[keep] >= cut) keep++;
        n = keep;
    }
    double total = 0;
    for (int64_t i = 0; i < n; i++) total += pr[i];
    double r = o_unit(st) * total;
    int32_t out = idx[n - 1], last = idx[0];
    for (int64_t i = 0; i < n; i++) {
        if (pr[i] > 0) last = idx[i];
        if ((r -= pr[i]) < 0) {
            out = idx[i];
            break;
        }
        out = last;
    }
    free(idx);
    free(pr);
    return out;
}

/* Draws of the sampler and of the oracle agree for `draws` consecutive tokens. */
static void check_oracle(const char *what, const llm_sampler_params *p, const float *logits, int64_t V, int draws) {
    llm_sampler *s = NULL;
    nvl_err err = {0};
    if (llm_sampler_init(&s, V, p, &err) != NVL_OK) {
        TEST_CHECK(0, "%s: %s", what, err.msg);
        return;
    }
    uint64_t st[4], x = p->seed;
    for (int i = 0; i < 4; i++) st[i] = o_splitmix(&x);
    int same = 1, at = -1;
    int32_t got = 0, want = 0;
    for (int d = 0; d < draws && same; d++) {
        got = llm_sampler_sample(s, logits);
        want = oracle(p, logits, V, st);
        if (got != want) same = 0, at = d;
    }
    TEST_CHECK(same, "%s: draw %d: sampler %d, oracle %d", what, at, got, want);
    llm_sampler_free(s);
}

static void test_against_oracle(void) {
    const int64_t V = 131072;
    float *l = malloc((size_t)V * sizeof *l);
    uint64_t x = 12345;
    for (int64_t i = 0; i < V; i++) { /* roughly normal logits, sd 3, quantised so many tie */
        double u = 0;
        for (int k = 0; k < 4; k++) u += (double)(o_splitmix(&x) >> 11) / 9007199254740992.0;
        l[i] = (float)(floor((u - 2.0) * 3.0 * 1.7320508 * 64.0) / 64.0);
    }
    l[77] = NAN;
    l[0] = NAN; /* first: the argmax loop starts there */
    l[1000] = l[2000] = l[3000] = 30.0f; /* a tie at the top */
    const struct {
        const char *what;
        llm_sampler_params p;
        int draws;
    } cases[] = {
        {"T 0.7 top_p 0.95 (131K)", {.temperature = 0.7f, .top_p = 0.95f, .seed = 1}, 12},
        {"T 1 top_k 50", {.temperature = 1.0f, .top_k = 50, .top_p = 1.0f, .seed = 2}, 12},
        {"T 1 top_k 50 top_p 0.5 min_p 0.1", {.temperature = 1.0f, .top_k = 50, .top_p = 0.5f, .min_p = 0.1f, .seed = 3}, 12},
        {"T 0.6 min_p 0.05", {.temperature = 0.6f, .top_p = 1.0f, .min_p = 0.05f, .seed = 4}, 12},
        {"T 1, no cut", {.temperature = 1.0f, .top_p = 1.0f, .seed = 5}, 12},
        {"T 50 top_p 0.9 (a nucleus of ~100K: every round)", {.temperature = 50.0f, .top_p = 0.9f, .seed = 6}, 6},
        {"T 8 top_p 0.3 min_p 0.5", {.temperature = 8.0f, .top_p = 0.3f, .min_p = 0.5f, .seed = 7}, 6},
        {"T 1 top_k >= V", {.temperature = 1.0f, .top_k = 200000, .top_p = 0.99f, .seed = 8}, 6},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) check_oracle(cases[c].what, &cases[c].p, l, V, cases[c].draws);
    /* a small vocabulary, many seeds */
    for (int sd = 0; sd < 200; sd++) {
        llm_sampler_params p = {.temperature = 1.5f, .top_p = 0.8f, .min_p = 0.02f, .seed = (uint64_t)sd};
        check_oracle("V 3000 T 1.5 top_p 0.8 min_p 0.02", &p, l + 5000, 3000, 3);
    }
    free(l);
}

static int32_t draw(const llm_sampler_params *p, const float *logits, int64_t V) {
    llm_sampler *s = NULL;
    nvl_err err = {0};
    if (llm_sampler_init(&s, V, p, &err) != NVL_OK) return -1;
    int32_t t = llm_sampler_sample(s, logits);
    llm_sampler_free(s);
    return t;
}

int main(void) {
    const float logits[6] = {0.1f, 2.0f, 1.9f, -1.0f, 2.0f, 0.5f};
    llm_sampler_params p = llm_sampler_params_default();
    TEST_EQ_INT(draw(&p, logits, 6), 1); /* greedy, ties to the lower id */
    p.temperature = 1.0f;
    p.top_k = 1;
    TEST_EQ_INT(draw(&p, logits, 6), 1);
    p.top_k = 0;
    p.top_p = 0.01f;
    TEST_EQ_INT(draw(&p, logits, 6), 1);
    p.top_p = 0.0f; /* the documented bound (docs/api.md 0..1): the best token only, never an error */
    for (int s = 0; s < 20; s++) {
        p.seed = (uint64_t)s;
        TEST_EQ_INT(draw(&p, logits, 6), 1);
    }
    p.top_p = 1.0f;
    p.min_p = 0.99f; /* only tokens within 1 % of the best: ids 1 and 4 */
    for (int s = 0; s < 50; s++) {
        p.seed = (uint64_t)s;
        int32_t t = draw(&p, logits, 6);
        TEST_CHECK(t == 1 || t == 4, "min_p kept token %d", t);
    }
    p.min_p = 0.0f;
    /* reproducible with a seed, different across seeds */
    llm_sampler *a = NULL, *b = NULL;
    nvl_err err = {0};
    p.seed = 42;
    llm_sampler_init(&a, 6, &p, &err);
    llm_sampler_init(&b, 6, &p, &err);
    int same = 1;
    for (int i = 0; i < 100; i++) same &= llm_sampler_sample(a, logits) == llm_sampler_sample(b, logits);
    TEST_CHECK(same, "same seed gave different draws");
    llm_sampler_free(a);
    llm_sampler_free(b);
    /* frequencies: logits {0, ln 3} at T=1 -> p = {0.25, 0.75}; 20000 draws, 4 sigma = 0.012 */
    const float two[2] = {0.0f, logf(3.0f)};
    p.seed = 7;
    llm_sampler_init(&a, 2, &p, &err);
    int ones = 0;
    for (int i = 0; i < 20000; i++) ones += llm_sampler_sample(a, two);
    llm_sampler_free(a);
    TEST_CHECK(fabs(ones / 20000.0 - 0.75) < 0.012, "frequency %g, expected 0.75", ones / 20000.0);
    /* temperature 0.5 sharpens: p1 = 9/10 */
    p.temperature = 0.5f;
    llm_sampler_init(&a, 2, &p, &err);
    ones = 0;
    for (int i = 0; i < 20000; i++) ones += llm_sampler_sample(a, two);
    llm_sampler_free(a);
    TEST_CHECK(fabs(ones / 20000.0 - 0.9) < 0.009, "frequency %g at T=0.5, expected 0.9", ones / 20000.0);
    /* boundaries of the counting rules, with probabilities that are exact in binary: four equal
     * logits give 0.25 each. Top-p keeps the smallest prefix whose mass reaches top_p (HF's
     * TopPLogitsWarper removes the tokens whose ascending cumulative mass is <= 1 - top_p): at
     * top_p 0.5 the first two (ties: lower id first) exactly reach it, so ids {0, 1}; just above
     * 0.5 three; at 0.75 three. Min-p removes tokens below min_p * p_max (HF MinPLogitsWarper:
     * probs < min_p * top_prob), so at min_p 1 the equal tokens all stay. Each mask is the set of
     * ids drawn over 400 seeds (a kept id is missed with probability <= (3/4)^400). */
    {
        const float flat[4] = {0.5f, 0.5f, 0.5f, 0.5f};
        const struct {
            float top_p, min_p;
            unsigned want;
        } cases[] = {{0.5f, 0.0f, 0x3}, {0.50001f, 0.0f, 0x7}, {0.75f, 0.0f, 0x7}, {0.25f, 0.0f, 0x1},
                     {0.24999f, 0.0f, 0x1}, {0.25001f, 0.0f, 0x3}, {1.0f, 1.0f, 0xf}, {0.5f, 1.0f, 0x3}};
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            llm_sampler_params q = llm_sampler_params_default();
            q.temperature = 1.0f;
            q.top_p = cases[c].top_p;
            q.min_p = cases[c].min_p;
            unsigned seen = 0;
            for (int sd = 0; sd < 400; sd++) {
                q.seed = (uint64_t)sd;
                int32_t t = draw(&q, flat, 4);
                if (t >= 0 && t < 4) seen |= 1u << t;
            }
            TEST_CHECK(seen == cases[c].want, "top_p %g min_p %g over 4 equal tokens: drew ids mask 0x%x, expected 0x%x",
                       (double)cases[c].top_p, (double)cases[c].min_p, seen, cases[c].want);
        }
    }
    test_against_oracle();
    /* invalid parameters */
    p.top_p = -0.01f;
    TEST_EQ_INT(llm_sampler_init(&a, 2, &p, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "top_p");
    return test_report();
}
