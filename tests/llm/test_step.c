/* The batched step against single-sequence runs, on the tiny F32 (cfgA) and BF16 (cfgB)
 * checkpoints of tests/data/llm:
 *   - three sequences of different lengths (5, 11, 13 tokens; 13 spans two SSD chunks of 8) in
 *     slots 2, 0, 1, prefilled in one step and decoded together, one of them continuing its
 *     prefill while the others decode, equal each run alone through llm_context;
 *   - a slot copied after its prefill continues exactly as the original;
 *   - decode steps in graph form (llm.h: padded to a bucket, padding rows of no slot, logits of
 *     the bucket's rows): the same steps with the workspace in LLM_GRAPHS_PAD equal the single
 *     runs bit for bit on the CPU (padding must touch no live slot), and in LLM_GRAPHS_ON equal
 *     the PAD run bit for bit (on a backend that captures: graph replay against eager execution
 *     of the same padded steps, with captures and replays counted; on the CPU ON runs as PAD);
 *   - greedy ids found on the backend (llm_batch_seq.argmax) equal the single runs' greedy ids;
 *   - vision rows handed in the backend's memory (llm_batch_seq.embd_t, F32 or in the activation
 *     dtype) give the logits host f32 rows (embd) give, bit for bit (both round to the activation
 *     dtype where they enter), and a step with them never takes the graph form.
 * Bounds: below 32 rows a step's matmuls take the register-tile path, whose rows are bit-identical
 * to one row at a time (tests/test_kernels.c), and every other op works per row or per
 * sequence, so a step of < 32 rows equals the single runs bit for bit (mode 0). A step of more
 * (mode 1: a fourth sequence prefills 40 rows in each of the first two steps, beside the others'
 * prompts and then their decode rows) runs its short sequences together in calls of < 32 rows and
 * the long one in a call of its own (llm/forward.c step_mm), so on the CPU it too equals the
 * single runs bit for bit, the long sequence included (against its two slices prefilled alone):
 * sampled answers do not depend on the company. Before, all 64 rows went through the packed GEMM,
 * which sums in another order (NMSE 7.3e-13 on f32 activations, 6.4e-5 on bf16 ones: a token
 * sampled near a tie could differ). On a device a GEMM library may sum a row in another order for
 * another row count: there the bounds below apply. On f32 activations (cfgA), f32 rounding noise:
 * bound NMSE <= 1e-11, atol 1e-5, rtol 1e-4. On bf16 activations (cfgB) one value rounding to
 * the neighbouring bf16 can flip and travel through the layers: bound NMSE <= 2e-4 and atol 0.04
 * (about 2.5 ulps at the logits' magnitude: ulp 0.0078 in [1, 2), 0.0156 in [2, 4)). Greedy ids
 * must be equal.
 */
#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "llm.h"
#include "test_util.h"
#include "gpu_skip.h"

#define NSEQ 3
#define NDEC 6

static const int64_t k_len[NSEQ] = {5, 11, 13};
static const int k_slot[NSEQ] = {2, 0, 1};

static int argmax(const float *x, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return (int)b;
}

static void make_prompt(int32_t *p, int64_t n, int s, int64_t V) {
    for (int64_t i = 0; i < n; i++) p[i] = (int32_t)((7 + 37 * s + 13 * i * (s + 1)) % V);
}

/* Single runs: logits after the prompt and after each of NDEC greedy decode steps. */
static void run_alone(const llm_model *m, int s, float *logits /* (NDEC+1, V) */, int32_t *ids /* NDEC */) {
    const int64_t V = llm_model_hparams(m)->n_vocab;
    nvl_err err = {0};
    llm_context_params cp = llm_context_params_default();
    cp.n_ctx = 64;
    llm_context *ctx = NULL;
    TEST_EQ_INT(llm_context_init(&ctx, m, &cp, &err), NVL_OK);
    int32_t p[32];
    make_prompt(p, k_len[s], s, V);
    TEST_EQ_INT(llm_prefill(ctx, p, k_len[s], NULL, NULL, &err), NVL_OK);
    memcpy(logits, llm_logits(ctx), (size_t)V * sizeof(float));
    for (int k = 0; k < NDEC; k++) {
        ids[k] = argmax(logits + k * V, V);
        TEST_EQ_INT(llm_decode(ctx, ids[k], &err), NVL_OK);
        memcpy(logits + (k + 1) * V, llm_logits(ctx), (size_t)V * sizeof(float));
    }
    llm_context_free(ctx);
}

static int g_bf16; /* the model runs bf16 activations (cfgB) */
static int g_device; /* not the CPU (NVL_BACKEND=cuda): a GEMM library may sum a row in another order for
                        another row count, so "exact" comparisons take the bounds of mode 1 there; the
                        graph replay against eager execution of the same padded steps stays exact */

static void compare(const char *what, const float *got, const float *ref, int64_t n, int exact) {
    if (exact && !g_device) {
        TEST_CHECK(!memcmp(got, ref, (size_t)n * sizeof(float)), "%s: bit-identical to the single run", what);
        return;
    }
    if (g_bf16) test_compare_f32(what, got, ref, (size_t)n, 0.04, 0.0, 2e-4);
    else test_compare_f32(what, got, ref, (size_t)n, 1e-5, 1e-4, 1e-11);
}

/* mode 0: all prefills in one step (29 rows), then decode together; the third sequence's prompt
 * in two chunks (8 then 5) so its second chunk shares a step with the others' first decode.
 * mode 1: the same with a fourth sequence prefilling 40 rows in each of the first two steps
 * (64 and 47 rows: past the register tiles), its last logits checked against filler_ref.
 * mode 2: the fourth prefills 20 rows (short): step 1's 44 rows go in two runs of short
 * sequences (24, then 20: a run cut where the next would pass 31 rows).
 * graphs: the workspace's graph mode (modes 0 only); keep (may be NULL): every logits row each
 * sequence got, (NDEC+1, V) per sequence, as ref is laid out. */
#define FILL 40 /* the filler's rows per slice in mode 1 (a long slice, a call of its own) */
#define FILL2 20 /* in mode 2 (short: 24 + 20 rows, two runs of short sequences in one step) */
static int g_fill;         /* this mode's */
static float *g_filler_ref; /* (2, V): the filler's last logits after each of its two slices, prefilled alone */

static void make_filler(int32_t *pad, int64_t V) { make_prompt(pad, 2 * g_fill, 9, V); }

static void run_filler_alone(const llm_model *m, int fill) {
    g_fill = fill;
    const int64_t V = llm_model_hparams(m)->n_vocab;
    nvl_err err = {0};
    llm_context_params cp = llm_context_params_default();
    cp.n_ctx = 2 * FILL + 8;
    llm_context *ctx = NULL;
    TEST_EQ_INT(llm_context_init(&ctx, m, &cp, &err), NVL_OK);
    int32_t pad[2 * FILL];
    make_filler(pad, V);
    for (int k = 0; k < 2; k++) {
        TEST_EQ_INT(llm_prefill(ctx, pad + k * fill, fill, NULL, NULL, &err), NVL_OK);
        memcpy(g_filler_ref + k * V, llm_logits(ctx), (size_t)V * sizeof(float));
    }
    llm_context_free(ctx);
}

static void run_batched_g(const llm_model *m, const char *cfg, int mode, float *ref[NSEQ], int32_t *ref_ids[NSEQ],
                          enum llm_graphs graphs, float *keep[NSEQ]) {
    const int64_t V = llm_model_hparams(m)->n_vocab;
    nvl_err err = {0};
    llm_cache *c = NULL;
    llm_workspace *ws = NULL;
    TEST_EQ_INT(llm_cache_init(&c, m, 4, 16, &err), NVL_OK); /* 16 positions: the step grows it */
    TEST_EQ_INT(llm_workspace_init(&ws, m, 64, LLM_SSM_MODE_AUTO, &err), NVL_OK);
    if (graphs != (enum llm_graphs)-1) TEST_EQ_INT(llm_workspace_set_graphs(ws, graphs, &err), NVL_OK);
    int got_slot[4];
    for (int i = 0; i < 4; i++) TEST_EQ_INT(llm_seq_alloc(c, &got_slot[i], &err), NVL_OK);
    TEST_EQ_INT(got_slot[3], 3);
    int32_t p[NSEQ][32], pad[2 * FILL];
    for (int s = 0; s < NSEQ; s++) make_prompt(p[s], k_len[s], s, V);
    make_filler(pad, V);
    float *lg = malloc((size_t)((NSEQ + 1) * V) * sizeof(float));
    int32_t tok[NSEQ];
    /* step 1: seq 0 and 1 whole, seq 2 its first 8 tokens (and in mode 1 the filler's first FILL) */
    llm_batch_seq b1[4] = {
        {.slot = k_slot[0], .tokens = p[0], .n = k_len[0], .logits = LLM_LOGITS_LAST, .out = lg},
        {.slot = k_slot[1], .tokens = p[1], .n = k_len[1], .logits = LLM_LOGITS_LAST, .out = lg + V},
        {.slot = k_slot[2], .tokens = p[2], .n = 8, .logits = LLM_LOGITS_NONE, .out = NULL},
        {.slot = 3, .tokens = pad, .n = g_fill, .logits = LLM_LOGITS_LAST, .out = lg + NSEQ * V},
    };
    TEST_EQ_INT(llm_step(ws, c, b1, mode ? 4 : 3, &err), NVL_OK);
    const int exact = 1; /* (on the CPU; compare() takes the bounds on a device) */
    char what[160];
    if (mode) {
        snprintf(what, sizeof what, "%s mode %d: the filler's %d-row slice in a %d-row step", cfg, mode, g_fill, 24 + g_fill);
        compare(what, lg + NSEQ * V, g_filler_ref, V, exact);
    }
    for (int s = 0; s < 2; s++) {
        snprintf(what, sizeof what, "%s mode %d: seq %d prompt logits", cfg, mode, s);
        compare(what, lg + s * V, ref[s], V, exact);
        if (keep) memcpy(keep[s], lg + s * V, (size_t)V * sizeof(float));
        tok[s] = argmax(lg + s * V, V);
        TEST_EQ_INT(tok[s], ref_ids[s][0]);
    }
    /* step 2: seq 0 and 1 decode their first token while seq 2 prefills its last 5 (a mixed step) */
    llm_batch_seq b2[4] = {
        {.slot = k_slot[0], .tokens = &tok[0], .n = 1, .logits = LLM_LOGITS_LAST, .out = lg},
        {.slot = k_slot[1], .tokens = &tok[1], .n = 1, .logits = LLM_LOGITS_LAST, .out = lg + V},
        {.slot = k_slot[2], .tokens = p[2] + 8, .n = k_len[2] - 8, .logits = LLM_LOGITS_LAST, .out = lg + 2 * V},
        {.slot = 3, .tokens = pad + g_fill, .n = g_fill, .logits = LLM_LOGITS_LAST, .out = lg + NSEQ * V},
    };
    TEST_EQ_INT(llm_step(ws, c, b2, mode ? 4 : 3, &err), NVL_OK); /* (mode 1: decode rows beside a 40-row slice) */
    if (mode) {
        snprintf(what, sizeof what, "%s mode %d: the filler's second slice beside decode rows", cfg, mode);
        compare(what, lg + NSEQ * V, g_filler_ref + V, V, exact);
    }
    snprintf(what, sizeof what, "%s mode %d: seq 2 prompt logits (second chunk in a mixed step)", cfg, mode);
    compare(what, lg + 2 * V, ref[2], V, exact);
    if (keep) memcpy(keep[2], lg + 2 * V, (size_t)V * sizeof(float));
    tok[2] = argmax(lg + 2 * V, V);
    TEST_EQ_INT(tok[2], ref_ids[2][0]);
    int dec[NSEQ] = {1, 1, 0}; /* decode steps done */
    for (int s = 0; s < 2; s++) {
        snprintf(what, sizeof what, "%s mode %d: seq %d decode 1", cfg, mode, s);
        compare(what, lg + s * V, ref[s] + V, V, exact);
        if (keep) memcpy(keep[s] + V, lg + s * V, (size_t)V * sizeof(float));
        tok[s] = argmax(lg + s * V, V);
    }
    /* the rest: all three decode together until each has NDEC steps */
    while (dec[2] < NDEC) {
        llm_batch_seq bd[NSEQ];
        int n = 0, who[NSEQ];
        for (int s = 0; s < NSEQ; s++)
            if (dec[s] < NDEC) {
                bd[n] = (llm_batch_seq){.slot = k_slot[s], .tokens = &tok[s], .n = 1, .logits = LLM_LOGITS_LAST,
                                        .out = lg + s * V};
                who[n++] = s;
            }
        TEST_EQ_INT(llm_step(ws, c, bd, n, &err), NVL_OK);
        for (int i = 0; i < n; i++) {
            const int s = who[i];
            TEST_EQ_INT(tok[s], ref_ids[s][dec[s]]);
            dec[s]++;
            snprintf(what, sizeof what, "%s mode %d graphs %d: seq %d decode %d", cfg, mode, (int)graphs, s, dec[s]);
            compare(what, lg + s * V, ref[s] + dec[s] * V, V, exact);
            if (keep) memcpy(keep[s] + dec[s] * V, lg + s * V, (size_t)V * sizeof(float));
            tok[s] = argmax(lg + s * V, V);
        }
    }
    for (int s = 0; s < NSEQ; s++) TEST_EQ_INT(llm_seq_n_past(c, k_slot[s]), k_len[s] + NDEC);
    llm_graph_stats gs;
    llm_workspace_graph_stats(ws, &gs);
    if (graphs == LLM_GRAPHS_PAD || graphs == LLM_GRAPHS_ON) {
        /* decode-only steps: 5 of 3 rows (bucket 4, one padding row each), then 1 of 1 row */
        TEST_EQ_INT(gs.graph_form_steps, 6);
        TEST_EQ_INT(gs.padded_rows, 5);
        TEST_EQ_INT(gs.capture_failures, 0);
        if (graphs == LLM_GRAPHS_ON && kern_backend_can_capture(llm_model_backend(m))) {
            /* bucket 4: eager once, captured on its second step and replayed; at its fourth step seq 2
               needs 17 KV positions, the cache (16) grows, its rows move and the graph is captured
               anew (then replayed); bucket 1 ran once (the CUDA emulator, tests/cuda_emu, counted it) */
            TEST_EQ_INT(gs.captures, 2);
            TEST_EQ_INT(gs.replays, 4);
            TEST_EQ_INT(gs.eager_runs, 2);
        } else {
            TEST_EQ_INT(gs.captures, 0);
            TEST_EQ_INT(gs.eager_runs, 6);
        }
        /* the padding rows (slot KERN_SLOT_NONE) left slot 3 (allocated, never run) alone */
        TEST_EQ_INT(llm_seq_n_past(c, 3), 0);
        int zero = 1, n_state = 0;
        for (int il = 0; il < llm_model_hparams(m)->n_layer; il++) {
            const float *ss = llm_seq_ssm_state(c, 3, il);
            if (!ss) continue;
            n_state++;
            const llm_hparams *hp = llm_model_hparams(m);
            for (int64_t i = 0; i < hp->ssm_n_head * hp->ssm_head_dim * hp->d_state; i++) zero &= ss[i] == 0.0f;
        }
        TEST_CHECK(n_state > 0 && zero, "%s: an idle slot's SSM states stay zero through padded steps", cfg);
    } else {
        TEST_EQ_INT(gs.graph_form_steps, 0);
    }
    /* a slot named twice, a free slot, too many rows: refused */
    llm_batch_seq twice[2] = {{.slot = 0, .tokens = tok, .n = 1}, {.slot = 0, .tokens = tok, .n = 1}};
    TEST_EQ_INT(llm_step(ws, c, twice, 2, &err), NVL_ERR_INVALID_ARG);
    llm_seq_free(c, 3);
    llm_batch_seq freed = {.slot = 3, .tokens = tok, .n = 1};
    TEST_EQ_INT(llm_step(ws, c, &freed, 1, &err), NVL_ERR_INVALID_ARG);
    int32_t many[70] = {0};
    llm_batch_seq big = {.slot = 0, .tokens = many, .n = 70};
    TEST_EQ_INT(llm_step(ws, c, &big, 1, &err), NVL_ERR_LIMIT);
    free(lg);
    llm_workspace_free(ws);
    llm_cache_free(c);
}

/* (graphs off: the default is ON on a device, and these runs compare eager steps with single runs;
   run_graphs covers the graph form) */
static void run_batched(const llm_model *m, const char *cfg, int mode, float *ref[NSEQ], int32_t *ref_ids[NSEQ]) {
    run_batched_g(m, cfg, mode, ref, ref_ids, LLM_GRAPHS_OFF, NULL);
}

/* The buckets (vLLM's capture sizes 1, 2, 4, 8, 16, 24, ..., capped). */
static void test_buckets(void) {
    static const int cases[][3] = {{0, 64, 0}, {1, 64, 1}, {2, 64, 2}, {3, 64, 4},  {4, 64, 4},   {5, 64, 8},
                                   {8, 64, 8}, {9, 64, 16}, {16, 64, 16}, {17, 64, 24}, {63, 64, 64}, {64, 64, 64},
                                   {65, 64, 0}, {17, 20, 20}, {20, 20, 20}, {21, 20, 0}, {3, 3, 3},  {70, 100, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int got = llm_decode_bucket(cases[i][0], cases[i][1]);
        TEST_CHECK(got == cases[i][2], "llm_decode_bucket(%d, cap %d) = %d, expected %d", cases[i][0], cases[i][1], got,
                   cases[i][2]);
    }
}

/* Graph form: PAD against the single runs (exact on the CPU), ON against PAD (exact anywhere). */
static void run_graphs(const llm_model *m, const char *cfg, float *ref[NSEQ], int32_t *ref_ids[NSEQ]) {
    const int64_t V = llm_model_hparams(m)->n_vocab;
    float *pad[NSEQ], *on[NSEQ];
    for (int s = 0; s < NSEQ; s++) {
        pad[s] = calloc((size_t)((NDEC + 1) * V), sizeof(float));
        on[s] = calloc((size_t)((NDEC + 1) * V), sizeof(float));
    }
    run_batched_g(m, cfg, 0, ref, ref_ids, LLM_GRAPHS_PAD, pad);
    run_batched_g(m, cfg, 0, ref, ref_ids, LLM_GRAPHS_ON, on);
    for (int s = 0; s < NSEQ; s++) {
        TEST_CHECK(!memcmp(pad[s], on[s], (size_t)((NDEC + 1) * V) * sizeof(float)),
                   "%s: seq %d: logits with LLM_GRAPHS_ON equal those of the same padded steps run eagerly", cfg, s);
        free(pad[s]);
        free(on[s]);
    }
}

/* A wide decode step in graph form (PAD: the CPU runs it eagerly): WIDE sequences, each prefilled
 * alone, decode one token together in a bucket of 40 rows, past the register tiles; the bucket's
 * lm_head runs in calls of < 32 rows (forward.c step_body), so each sequence's logits equal its
 * own decode run alone bit for bit on the CPU (one 40-row call summed them in another order). */
#define WIDE 33
static void run_graphs_wide(const llm_model *m, const char *cfg) {
    const int64_t V = llm_model_hparams(m)->n_vocab;
    nvl_err err = {0};
    float *ref = malloc((size_t)(WIDE * V) * sizeof(float)), *lg = malloc((size_t)(WIDE * V) * sizeof(float));
    int32_t p[WIDE][2], tok[WIDE];
    for (int s = 0; s < WIDE; s++) { /* alone: prefill 2 tokens, decode its greedy one */
        make_prompt(p[s], 2, s + 3, V);
        llm_context_params cp = llm_context_params_default();
        cp.n_ctx = 8;
        llm_context *ctx = NULL;
        TEST_EQ_INT(llm_context_init(&ctx, m, &cp, &err), NVL_OK);
        TEST_EQ_INT(llm_prefill(ctx, p[s], 2, NULL, NULL, &err), NVL_OK);
        tok[s] = argmax(llm_logits(ctx), V);
        TEST_EQ_INT(llm_decode(ctx, tok[s], &err), NVL_OK);
        memcpy(ref + s * V, llm_logits(ctx), (size_t)V * sizeof(float));
        llm_context_free(ctx);
    }
    llm_cache *c = NULL;
    llm_workspace *ws = NULL;
    TEST_EQ_INT(llm_cache_init(&c, m, WIDE, 8, &err), NVL_OK);
    TEST_EQ_INT(llm_workspace_init(&ws, m, 64, LLM_SSM_MODE_AUTO, &err), NVL_OK);
    TEST_EQ_INT(llm_workspace_set_graphs(ws, LLM_GRAPHS_PAD, &err), NVL_OK);
    llm_batch_seq b[WIDE];
    int slot[WIDE];
    for (int s = 0; s < WIDE; s++) {
        TEST_EQ_INT(llm_seq_alloc(c, &slot[s], &err), NVL_OK);
        llm_batch_seq one = {.slot = slot[s], .tokens = p[s], .n = 2, .logits = LLM_LOGITS_NONE};
        TEST_EQ_INT(llm_step(ws, c, &one, 1, &err), NVL_OK);
        b[s] = (llm_batch_seq){.slot = slot[s], .tokens = &tok[s], .n = 1, .logits = LLM_LOGITS_LAST, .out = lg + s * V};
    }
    TEST_EQ_INT(llm_step(ws, c, b, WIDE, &err), NVL_OK);
    llm_graph_stats gs;
    llm_workspace_graph_stats(ws, &gs);
    TEST_EQ_INT(gs.graph_form_steps, 1);
    TEST_EQ_INT(gs.padded_rows, llm_decode_bucket(WIDE, 64) - WIDE); /* (a bucket of 40 rows) */
    char what[128];
    for (int s = 0; s < WIDE; s++) {
        snprintf(what, sizeof what, "%s: seq %d of %d decoding in a %d-row bucket", cfg, s, WIDE, llm_decode_bucket(WIDE, 64));
        compare(what, lg + s * V, ref + s * V, V, 1);
    }
    llm_workspace_free(ws);
    llm_cache_free(c);
    free(ref);
    free(lg);
}

/* Greedy ids from the backend (llm_batch_seq.argmax, kern_argmax_rows): the three sequences
 * prefilled together, then decoded together with only argmax wanted (no logits cross to the
 * host; seq 0 also asks for its logits, whose argmax must be the id), in graph mode g: the ids
 * equal the single runs' greedy ids. OFF takes the eager logits path, PAD the graph form. A
 * sequence wanting logits with nowhere to put them is refused. */
static void run_argmax(const llm_model *m, const char *cfg, int32_t *ref_ids[NSEQ], enum llm_graphs g) {
    const int64_t V = llm_model_hparams(m)->n_vocab;
    nvl_err err = {0};
    llm_cache *c = NULL;
    llm_workspace *ws = NULL;
    TEST_EQ_INT(llm_cache_init(&c, m, NSEQ, 32, &err), NVL_OK);
    TEST_EQ_INT(llm_workspace_init(&ws, m, 64, LLM_SSM_MODE_AUTO, &err), NVL_OK);
    TEST_EQ_INT(llm_workspace_set_graphs(ws, g, &err), NVL_OK);
    int32_t p[NSEQ][32], tok[NSEQ], am[NSEQ];
    int slot[NSEQ];
    llm_batch_seq b[NSEQ];
    float *lg = malloc((size_t)V * sizeof(float));
    for (int s = 0; s < NSEQ; s++) {
        TEST_EQ_INT(llm_seq_alloc(c, &slot[s], &err), NVL_OK);
        make_prompt(p[s], k_len[s], s, V);
        b[s] = (llm_batch_seq){.slot = slot[s], .tokens = p[s], .n = k_len[s], .logits = LLM_LOGITS_LAST, .argmax = &am[s]};
    }
    TEST_EQ_INT(llm_step(ws, c, b, NSEQ, &err), NVL_OK); /* prefill: argmax only */
    for (int k = 0; k < NDEC; k++) {
        for (int s = 0; s < NSEQ; s++) {
            TEST_CHECK(am[s] == ref_ids[s][k], "%s graphs %d: seq %d greedy id %d from the backend: %d, expected %d", cfg,
                       (int)g, s, k, am[s], ref_ids[s][k]);
            tok[s] = am[s];
            b[s] = (llm_batch_seq){.slot = slot[s], .tokens = &tok[s], .n = 1, .logits = LLM_LOGITS_LAST, .argmax = &am[s],
                                   .out = s == 0 ? lg : NULL};
        }
        am[0] = -1;
        TEST_EQ_INT(llm_step(ws, c, b, NSEQ, &err), NVL_OK);
        int32_t best = 0;
        for (int64_t i = 1; i < V; i++)
            if (lg[i] > lg[best]) best = (int32_t)i;
        TEST_CHECK(am[0] == best, "%s graphs %d: the argmax of the logits also asked for", cfg, (int)g);
    }
    llm_batch_seq bad = {.slot = slot[0], .tokens = tok, .n = 1, .logits = LLM_LOGITS_ALL, .argmax = am};
    TEST_EQ_INT(llm_step(ws, c, &bad, 1, &err), NVL_ERR_INVALID_ARG); /* ALL needs out */
    free(lg);
    llm_workspace_free(ws);
    llm_cache_free(c);
}

/* Prefill seq 1 in slot 0, copy it to slot 2, then decode both (same tokens) together: equal to
 * each other and to the single run, bit for bit (2 rows a step). */
static void run_copy(const llm_model *m, const char *cfg, const float *ref, const int32_t *ref_ids) {
    const int64_t V = llm_model_hparams(m)->n_vocab;
    nvl_err err = {0};
    llm_cache *c = NULL;
    llm_workspace *ws = NULL;
    TEST_EQ_INT(llm_cache_init(&c, m, 3, 8, &err), NVL_OK);
    TEST_EQ_INT(llm_workspace_init(&ws, m, 16, LLM_SSM_MODE_AUTO, &err), NVL_OK);
    int a, b, x;
    TEST_EQ_INT(llm_seq_alloc(c, &a, &err), NVL_OK);
    TEST_EQ_INT(llm_seq_alloc(c, &x, &err), NVL_OK);
    TEST_EQ_INT(llm_seq_alloc(c, &b, &err), NVL_OK);
    int32_t p[32];
    make_prompt(p, k_len[1], 1, V);
    float *lg = malloc((size_t)(2 * V) * sizeof(float));
    llm_batch_seq one = {.slot = a, .tokens = p, .n = k_len[1], .logits = LLM_LOGITS_LAST, .out = lg};
    TEST_EQ_INT(llm_step(ws, c, &one, 1, &err), NVL_OK);
    /* slot x holds something else: the copy must replace it whole */
    llm_batch_seq other = {.slot = x, .tokens = p, .n = 3, .logits = LLM_LOGITS_NONE};
    TEST_EQ_INT(llm_step(ws, c, &other, 1, &err), NVL_OK);
    TEST_EQ_INT(llm_seq_copy(c, x, a, &err), NVL_OK);
    TEST_EQ_INT(llm_seq_n_past(c, x), k_len[1]);
    TEST_CHECK(llm_seq_bytes(c, x) > 0, "a copied slot holds state");
    llm_seq_free(c, b);
    TEST_EQ_INT(llm_seq_copy(c, b, a, &err), NVL_ERR_INVALID_ARG); /* b is free */
    int32_t tok = argmax(lg, V);
    char what[128];
    for (int k = 0; k < NDEC; k++) {
        TEST_EQ_INT(tok, ref_ids[k]);
        int32_t t2[2] = {tok, tok};
        llm_batch_seq two[2] = {{.slot = x, .tokens = &t2[0], .n = 1, .logits = LLM_LOGITS_LAST, .out = lg},
                                {.slot = a, .tokens = &t2[1], .n = 1, .logits = LLM_LOGITS_LAST, .out = lg + V}};
        TEST_EQ_INT(llm_step(ws, c, two, 2, &err), NVL_OK);
        snprintf(what, sizeof what, "%s copy: decode %d, copy equals original", cfg, k + 1);
        TEST_CHECK(!memcmp(lg, lg + V, (size_t)V * sizeof(float)), "%s", what);
        snprintf(what, sizeof what, "%s copy: decode %d equals the single run", cfg, k + 1);
        compare(what, lg, ref + (k + 1) * V, V, 1);
        tok = argmax(lg, V);
    }
    free(lg);
    llm_workspace_free(ws);
    llm_cache_free(c);
}

/* Vision rows at positions 2..6 and 8 of a 10-token prompt, from the host and from backend
 * tensors of two dtypes: the same logits; a tensor of the wrong width is refused. */
static void run_vision_rows(const llm_model *m, const char *cfg) {
    const llm_hparams *hp = llm_model_hparams(m);
    const int64_t V = hp->n_vocab, C = hp->n_embd, n = 10;
    kern_backend *be = llm_model_backend(m);
    nvl_err err = {0};
    int32_t p[10];
    make_prompt(p, n, 4, V);
    uint8_t mask[10] = {0, 0, 1, 1, 1, 1, 1, 0, 1, 0};
    float *rows = malloc((size_t)(n * C) * sizeof(float));
    uint32_t seed = 12345;
    for (int64_t i = 0; i < n * C; i++) {
        seed = seed * 1664525u + 1013904223u;
        rows[i] = ((float)(seed >> 8) / 16777216.0f - 0.5f) * 0.5f;
    }
    float *lg = malloc((size_t)(4 * V) * sizeof(float));
    const nvl_dtype dts[2] = {NVL_DTYPE_F32, g_bf16 ? NVL_DTYPE_BF16 : NVL_DTYPE_F32};
    void *buf[2] = {NULL, NULL};
    nvl_tensor t[2];
    for (int k = 0; k < 2; k++) {
        TEST_EQ_INT(kern_buffer_alloc(be, kern_act_bytes(be, dts[k], n * C), &buf[k], &err), NVL_OK);
        t[k] = kern_act(be, dts[k], 2, (int64_t[]){n, C}, buf[k]);
        TEST_EQ_INT(kern_from_host_f32(be, &t[k], rows, &err), NVL_OK);
    }
    for (int k = 0; k < 3; k++) { /* 0: host rows; 1: F32 tensor; 2: activation-dtype tensor */
        llm_cache *c = NULL;
        llm_workspace *ws = NULL;
        TEST_EQ_INT(llm_cache_init(&c, m, 1, 16, &err), NVL_OK);
        TEST_EQ_INT(llm_workspace_init(&ws, m, 16, LLM_SSM_MODE_AUTO, &err), NVL_OK);
        TEST_EQ_INT(llm_workspace_set_graphs(ws, LLM_GRAPHS_PAD, &err), NVL_OK);
        int slot = -1;
        TEST_EQ_INT(llm_seq_alloc(c, &slot, &err), NVL_OK);
        llm_batch_seq b = {.slot = slot, .tokens = p, .embd = k ? NULL : rows, .embd_t = k ? &t[k - 1] : NULL,
                           .embd_mask = mask, .n = 8, .logits = LLM_LOGITS_LAST, .out = lg + k * V};
        TEST_EQ_INT(llm_step(ws, c, &b, 1, &err), NVL_OK);
        /* one row, a vision row first: not the graph form (its rows are not token ids) */
        llm_batch_seq one = {.slot = slot, .tokens = p + 8, .embd = k ? NULL : rows + 8 * C, .n = 1,
                             .embd_mask = mask + 8, .logits = LLM_LOGITS_LAST, .out = lg + k * V};
        nvl_tensor last = kern_rows(&t[k ? k - 1 : 0], 8, 2);
        if (k) one.embd_t = &last;
        TEST_EQ_INT(llm_step(ws, c, &one, 1, &err), NVL_OK);
        llm_graph_stats gs;
        llm_workspace_graph_stats(ws, &gs);
        TEST_EQ_INT(gs.graph_form_steps, 0);
        if (k == 2) { /* a tensor of another width, or too few rows: refused by name */
            nvl_tensor narrow = kern_act(be, dts[1], 2, (int64_t[]){n, C - 1}, buf[1]);
            llm_batch_seq bad = {.slot = slot, .tokens = p + 9, .embd_t = &narrow, .embd_mask = mask + 9, .n = 1};
            TEST_EQ_INT(llm_step(ws, c, &bad, 1, &err), NVL_ERR_SHAPE);
            TEST_CONTAINS(err.msg, "vision rows");
            nvl_tensor none = kern_rows(&t[1], 0, 0);
            bad.embd_t = &none;
            TEST_EQ_INT(llm_step(ws, c, &bad, 1, &err), NVL_ERR_SHAPE);
        }
        llm_workspace_free(ws);
        llm_cache_free(c);
    }
    char what[128];
    for (int k = 1; k < 3; k++) {
        snprintf(what, sizeof what, "%s vision rows from a %s backend tensor", cfg, nvl_dtype_name(dts[k - 1]));
        TEST_CHECK(!memcmp(lg + k * V, lg, (size_t)V * sizeof(float)), "%s: logits equal the host rows'", what);
    }
    /* the rows matter: without them (ids only) the logits differ */
    {
        llm_cache *c = NULL;
        llm_workspace *ws = NULL;
        int slot = -1;
        TEST_EQ_INT(llm_cache_init(&c, m, 1, 16, &err), NVL_OK);
        TEST_EQ_INT(llm_workspace_init(&ws, m, 16, LLM_SSM_MODE_AUTO, &err), NVL_OK);
        TEST_EQ_INT(llm_seq_alloc(c, &slot, &err), NVL_OK);
        llm_batch_seq b = {.slot = slot, .tokens = p, .n = 9, .logits = LLM_LOGITS_LAST, .out = lg + 3 * V};
        TEST_EQ_INT(llm_step(ws, c, &b, 1, &err), NVL_OK);
        TEST_CHECK(memcmp(lg + 3 * V, lg, (size_t)V * sizeof(float)) != 0, "%s: the vision rows change the logits", cfg);
        llm_workspace_free(ws);
        llm_cache_free(c);
    }
    for (int k = 0; k < 2; k++) kern_buffer_free(be, buf[k]);
    free(rows);
    free(lg);
}

static void run_cfg(const char *cfg) {
    nvl_err err = {0};
    llm_model *m = NULL;
    TEST_EQ_INT(llm_model_init(&m, test_data_path(cfg), NULL, &err), NVL_OK);
    if (!m) {
        fprintf(stderr, "%s: %s\n", cfg, err.msg);
        return;
    }
    const int64_t V = llm_model_hparams(m)->n_vocab;
    g_bf16 = strstr(cfg, "cfgB") != NULL;
    g_device = kern_backend_kind_of(llm_model_backend(m)) != KERN_BACKEND_KIND_CPU;
    float *ref[NSEQ];
    int32_t *ids[NSEQ];
    for (int s = 0; s < NSEQ; s++) {
        ref[s] = malloc((size_t)((NDEC + 1) * V) * sizeof(float));
        ids[s] = malloc(NDEC * sizeof(int32_t));
        run_alone(m, s, ref[s], ids[s]);
    }
    g_filler_ref = malloc((size_t)(2 * V) * sizeof(float));
    run_batched(m, cfg, 0, ref, ids);
    run_filler_alone(m, FILL);
    run_batched(m, cfg, 1, ref, ids);
    run_filler_alone(m, FILL2);
    run_batched(m, cfg, 2, ref, ids);
    free(g_filler_ref);
    run_graphs(m, cfg, ref, ids);
    run_graphs_wide(m, cfg);
    run_argmax(m, cfg, ids, LLM_GRAPHS_OFF);
    run_argmax(m, cfg, ids, LLM_GRAPHS_PAD);
    run_copy(m, cfg, ref[1], ids[1]);
    run_vision_rows(m, cfg);
    for (int s = 0; s < NSEQ; s++) {
        free(ref[s]);
        free(ids[s]);
    }
    llm_model_free(m);
}

int main(void) {
    test_skip_without_device();
    test_buckets();
    run_cfg("llm/cfgA");
    run_cfg("llm/cfgB");
    return test_report();
}
