/* Sampling: greedy is argmax; temperature/top-k/top-p/min-p cut the candidate set as
 * documented; a seed makes draws reproducible; frequencies follow softmax(logits/T). */
#include "base/alloc.h"
#include "llm.h"
#include "test_util.h"

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
    /* invalid parameters */
    p.top_p = 0.0f;
    TEST_EQ_INT(llm_sampler_init(&a, 2, &p, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "top_p");
    return test_report();
}
