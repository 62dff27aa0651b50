/* The NemotronH forward pass over the op interface (kernels/ops.h), for a step of several
 * sequences at once: embedding rows (with the vision splice), per layer RMSNorm + mixer (Mamba-2,
 * GQA attention without positions, squared-ReLU MLP) + residual, final norm and lm_head for the
 * rows whose logits are wanted. Row-wise ops and matmuls take every row of the step; the conv,
 * scan and attention ops take each sequence's rows with its slot.
 * Activations are in the model's activation dtype (BF16 for a BF16 checkpoint: rounding lands
 * where transformers keeps bf16 tensors, model.md §2.2-§2.5), the scan output in f32.
 * Dimension letters: T rows of the step, C n_embd, H mamba heads, P mamba head_dim, N d_state,
 * G groups, Cc conv_dim, DI d_inner, DP d_in_proj, D attention head_dim, V n_vocab. */
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "llm_impl.h"

#define TRY(x)                                                                                        \
    do {                                                                                              \
        nvl_status st_ = (x);                                                                         \
        if (st_ != NVL_OK) return st_;                                                                \
    } while (0)

// ---------------------------------------------------------------------------
// Workspace: one backend allocation carved into the step's activations (llm.c style)

static void graphs_drop(llm_workspace *ws) {
    for (int b = 0; b <= LLM_GRAPH_MAX_ROWS; b++) {
        kern_graph_free(ws->be, ws->graph[b]);
        ws->graph[b] = NULL;
    }
}

void llm_workspace_free(llm_workspace *ws) {
    if (!ws) return;
    const llm_graph_stats *gs = &ws->gstats;
    if (gs->graph_form_steps)
        NVL_LOG_INFO("decode steps in graph form: %lld (%lld padding rows), %lld eager, %lld graphs captured, %lld "
                     "replays, %lld captures failed\n", (long long)gs->graph_form_steps, (long long)gs->padded_rows,
                     (long long)gs->eager_runs, (long long)gs->captures, (long long)gs->replays,
                     (long long)gs->capture_failures);
    graphs_drop(ws);
    if (ws->gbuf) kern_buffer_free(ws->be, ws->gbuf);
    nvl_free(ws->ghost);
    if (ws->buf) kern_buffer_free(ws->be, ws->buf);
    nvl_free(ws->seqs);
    nvl_free(ws->lrow);
    nvl_free(ws->ldst);
    nvl_free(ws->lam);
    nvl_free(ws->ids);
    nvl_free(ws->mask);
    nvl_free(ws);
}

int64_t llm_workspace_max_rows(const llm_workspace *ws) { return ws->max_rows; }

static int64_t max2(int64_t a, int64_t b) { return a > b ? a : b; }

nvl_status llm_workspace_init(llm_workspace **out, const llm_model *m, int64_t max_rows, enum llm_ssm_mode mode,
                              nvl_err *err) {
    *out = NULL;
    if (max_rows <= 0) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: max_rows %lld", __func__, (long long)max_rows);
    llm_workspace *ws = nvl_calloc(1, sizeof *ws);
    if (!ws) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", __func__);
    ws->m = m;
    ws->be = m->be;
    ws->max_rows = max_rows;
    ws->ssm_mode = mode;
    const llm_hparams *hp = &m->hp;
    const int64_t T = max_rows, C = hp->n_embd, QD = hp->n_head * hp->head_dim, KD = hp->n_head_kv * hp->head_dim;
    const nvl_dtype a = m->act;
    struct {
        nvl_tensor *t;
        nvl_dtype dt;
        int64_t rows, cols;
    } plan[] = {
        {&ws->x, a, T, C},
        {&ws->h, a, T, C},
        {&ws->big, a, T, max2(max2(hp->d_in_proj, QD + 2 * KD), hp->n_ff)},
        {&ws->conv, a, T, hp->conv_dim},
        {&ws->dt, a, T, hp->ssm_n_head},
        {&ws->ys, NVL_DTYPE_F32, T, hp->d_inner},
        {&ws->yn, a, T, max2(hp->d_inner, QD)},
        {&ws->embd, a, T, C},
        {&ws->lrows, a, LLM_LOGIT_BLOCK, C},
        {&ws->logits, a, LLM_LOGIT_BLOCK, hp->n_vocab},
    };
    const size_t n_plan = sizeof plan / sizeof plan[0];
    size_t off[16], total = 0;
    for (size_t i = 0; i < n_plan; i++) { /* sizes first, then one allocation, then carve */
        off[i] = total;
        total += (kern_act_bytes(m->be, plan[i].dt, plan[i].rows * plan[i].cols) + 63) & ~(size_t)63;
    }
    nvl_status st = kern_buffer_alloc(m->be, total, &ws->buf, err);
    ws->seqs = nvl_calloc((size_t)T, sizeof *ws->seqs);
    ws->lrow = nvl_calloc((size_t)T, sizeof *ws->lrow);
    ws->ldst = nvl_calloc((size_t)T, sizeof *ws->ldst);
    ws->lam = nvl_calloc((size_t)T, sizeof *ws->lam);
    ws->ids = nvl_calloc((size_t)T, sizeof *ws->ids);
    ws->mask = nvl_calloc((size_t)T, 1);
    if (st == NVL_OK && (!ws->seqs || !ws->lrow || !ws->ldst || !ws->lam || !ws->ids || !ws->mask)) st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", __func__);
    if (st != NVL_OK) {
        llm_workspace_free(ws);
        return nvl_err_prefix(err, "workspace for %lld rows (%zu bytes)", (long long)T, total), st;
    }
    for (size_t i = 0; i < n_plan; i++)
        *plan[i].t = kern_act(m->be, plan[i].dt, 2, (int64_t[]){plan[i].rows, plan[i].cols}, (char *)ws->buf + off[i]);
    /* decode graphs where the backend captures, unless NVL_CUDA_GRAPHS=0; NVL_CUDA_GRAPHS=pad: the
       graph form run eagerly on any backend (a test setting: the CPU checks padding and the
       bucketed logits through the whole engine). kern_env_check vets the value. */
    const char *g = getenv("NVL_CUDA_GRAPHS");
    const enum llm_graphs gm = g && !strcmp(g, "pad")                               ? LLM_GRAPHS_PAD
                               : kern_backend_can_capture(m->be) && !(g && !strcmp(g, "0")) ? LLM_GRAPHS_ON
                                                                                    : LLM_GRAPHS_OFF;
    if (gm != LLM_GRAPHS_OFF && (st = llm_workspace_set_graphs(ws, gm, err)) != NVL_OK) {
        llm_workspace_free(ws);
        return st;
    }
    *out = ws;
    return NVL_OK;
}

int llm_decode_bucket(int n, int cap) {
    if (cap > LLM_GRAPH_MAX_ROWS) cap = LLM_GRAPH_MAX_ROWS;
    if (n <= 0 || n > cap) return 0;
    const int b = n <= 1 ? 1 : n <= 2 ? 2 : n <= 4 ? 4 : (n + 7) / 8 * 8;
    return b < cap ? b : cap;
}

nvl_status llm_workspace_set_graphs(llm_workspace *ws, enum llm_graphs mode, nvl_err *err) {
    if (mode != LLM_GRAPHS_OFF && mode != LLM_GRAPHS_PAD && mode != LLM_GRAPHS_ON)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: mode %d", __func__, (int)mode);
    if (mode != LLM_GRAPHS_ON) graphs_drop(ws);
    if (mode != LLM_GRAPHS_OFF && !ws->gbuf) {
        const int64_t cap = ws->max_rows < LLM_GRAPH_MAX_ROWS ? ws->max_rows : LLM_GRAPH_MAX_ROWS;
        const int64_t V = ws->m->hp.n_vocab;
        nvl_status st = kern_buffer_alloc(ws->be, kern_act_bytes(ws->be, ws->m->act, cap * V), &ws->gbuf, err);
        if (st != NVL_OK) return nvl_err_prefix(err, "logits rows for decode graphs (%lld x %lld)", (long long)cap, (long long)V), st;
        ws->graph_cap = (int)cap;
        ws->glogits = kern_act(ws->be, ws->m->act, 2, (int64_t[]){cap, V}, ws->gbuf);
        if (kern_backend_kind_of(ws->be) != KERN_BACKEND_KIND_CPU &&
            !(ws->ghost = nvl_malloc((size_t)(cap * V) * sizeof(float)))) {
            kern_buffer_free(ws->be, ws->gbuf);
            ws->gbuf = NULL;
            return nvl_err_set(err, NVL_ERR_NOMEM, "logits rows for decode graphs: out of memory");
        }
    }
    ws->graph_mode = mode;
    return NVL_OK;
}

void llm_workspace_graph_stats(const llm_workspace *ws, llm_graph_stats *out) { *out = ws->gstats; }

// ---------------------------------------------------------------------------
// Blocks. Each mixer reads h (T, C) and writes its output back into h.

/* y = x @ w^T over the step's rows so that every sequence gets what it gets alone, bit for bit
 * (sampled answers then do not depend on the company; docs/api.md): where the backend's matmul is
 * batch-invariant up to R rows (kern_matmul_invariant_rows; the CPU), sequences of at most R rows
 * go together in calls of at most R rows (decode rows, short prompt slices: one call as before
 * while they fit) and each longer one in a call of its own, as it runs alone; elsewhere (R 0: a
 * device) all rows in one call. The sequences' rows follow each other from row 0 (llm_step). */
static nvl_status step_mm(llm_workspace *ws, nvl_tensor *y, const nvl_tensor *x, const kern_weight *w, const kern_seq *sq,
                          int ns, nvl_err *err) {
    kern_backend *be = ws->be;
    const int64_t T = x->shape[0];
    const int64_t R = ns > 1 ? kern_matmul_invariant_rows(be, w, x->dtype) : 0;
    if (R <= 0 || R >= T) return kern_matmul(be, y, x, w, err);
    int64_t r0 = 0, run = 0; /* the run of short sequences gathered: rows [r0, r0 + run) */
    for (int i = 0; i <= ns; i++) {
        const int64_t n = i < ns ? sq[i].n_rows : 0;
        if (run > 0 && (i == ns || n > R || run + n > R)) { /* the run so far, in one call */
            nvl_tensor yr = kern_rows(y, r0, run), xr = kern_rows(x, r0, run);
            TRY(kern_matmul(be, &yr, &xr, w, err));
            r0 += run;
            run = 0;
        }
        if (i == ns) break;
        if (sq[i].row0 != r0 + run)
            return nvl_err_set(err, NVL_ERR_INTERNAL, "%s: sequence %d's rows start at %lld, not after the ones before (%lld)",
                               __func__, i, (long long)sq[i].row0, (long long)(r0 + run));
        if (n > R) { /* a long prompt slice: alone, as it runs alone */
            nvl_tensor yr = kern_rows(y, r0, n), xr = kern_rows(x, r0, n);
            TRY(kern_matmul(be, &yr, &xr, w, err));
            r0 += n;
        } else {
            run += n;
        }
    }
    if (r0 != T)
        return nvl_err_set(err, NVL_ERR_INTERNAL, "%s: the sequences hold %lld of the step's %lld rows", __func__, (long long)r0,
                           (long long)T);
    return NVL_OK;
}

/* Mamba-2 mixer: in_proj split (z | xBC | dt), causal conv + SiLU, softplus(dt + dt_bias),
 * selective scan, grouped gated RMSNorm (gate first), out_proj. */
static nvl_status mamba2(llm_workspace *ws, llm_cache *c, const llm_layer *L, int il, int64_t T, const kern_seq *sq,
                         int ns, nvl_err *err) {
    const llm_hparams *hp = &ws->m->hp;
    kern_backend *be = ws->be;
    const int64_t H = hp->ssm_n_head, N = hp->d_state, G = hp->n_group;
    const int64_t DI = hp->d_inner, Cc = hp->conv_dim, DP = hp->d_in_proj;
    nvl_tensor h = kern_rows(&ws->h, 0, T);
    nvl_tensor zx = kern_act(be, ws->m->act, 2, (int64_t[]){T, DP}, ws->big.data); /* (T, DP) */
    TRY(step_mm(ws, &zx, &h, &L->in_proj, sq, ns, err));
    nvl_tensor z = kern_cols(&zx, 0, DI), xbc = kern_cols(&zx, DI, Cc), dtr = kern_cols(&zx, DI + Cc, H);
    nvl_tensor cv = kern_rows(&ws->conv, 0, T), dt = kern_rows(&ws->dt, 0, T);
    TRY(kern_conv1d_causal(be, &cv, &xbc, &L->conv_w, L->conv_b.data ? &L->conv_b : NULL, &c->conv[il], sq, ns, err));
    TRY(kern_dt_softplus(be, &dt, &dtr, &L->dt_bias, (float)hp->dt_min, (float)hp->dt_max, err));
    nvl_tensor xs = kern_cols(&cv, 0, DI), Bm = kern_cols(&cv, DI, G * N), Cm = kern_cols(&cv, DI + G * N, G * N);
    nvl_tensor ys = kern_rows(&ws->ys, 0, T);
    const kern_scan_mode mode = ws->ssm_mode == LLM_SSM_MODE_RECURRENT ? KERN_SCAN_RECURRENT
                                : ws->ssm_mode == LLM_SSM_MODE_CHUNKED ? KERN_SCAN_CHUNKED
                                                                       : KERN_SCAN_AUTO;
    TRY(kern_ssm_scan(be, &ys, &xs, &dt, &L->A, &Bm, &Cm, &L->D, &c->ssm[il], G, hp->chunk_size, mode, sq, ns, err));
    nvl_tensor yn = kern_cols(&ws->yn, 0, DI);
    yn = kern_rows(&yn, 0, T);
    TRY(kern_rmsnorm_gated(be, &yn, &ys, &z, &L->ssm_norm, G, (float)hp->eps, sq, ns, err));
    return step_mm(ws, &h, &yn, &L->out_proj, sq, ns, err);
}

/* Attention: q, k, v projections, no positional encoding, k and v into the slot's KV rows,
 * causal softmax over them (query head h reads KV head h / (n_head / n_head_kv)), o_proj. */
static nvl_status attention(llm_workspace *ws, llm_cache *c, const llm_layer *L, int il, int64_t T, const kern_seq *sq,
                            int ns, nvl_err *err) {
    const llm_hparams *hp = &ws->m->hp;
    kern_backend *be = ws->be;
    const int64_t QD = hp->n_head * hp->head_dim, KD = hp->n_head_kv * hp->head_dim;
    const size_t es = kern_act_bytes(be, ws->m->act, 1);
    nvl_tensor h = kern_rows(&ws->h, 0, T);
    char *base = ws->big.data;
    nvl_tensor q = kern_act(be, ws->m->act, 2, (int64_t[]){T, QD}, base);
    nvl_tensor k = kern_act(be, ws->m->act, 2, (int64_t[]){T, KD}, base + (size_t)(T * QD) * es);
    nvl_tensor v = kern_act(be, ws->m->act, 2, (int64_t[]){T, KD}, base + (size_t)(T * (QD + KD)) * es);
    TRY(step_mm(ws, &q, &h, &L->wq, sq, ns, err));
    TRY(step_mm(ws, &k, &h, &L->wk, sq, ns, err));
    TRY(step_mm(ws, &v, &h, &L->wv, sq, ns, err));
    TRY(kern_kv_write(be, &c->k[il], &c->v[il], &k, &v, sq, ns, err));
    nvl_tensor o = kern_cols(&ws->yn, 0, QD);
    o = kern_rows(&o, 0, T);
    TRY(kern_attention_causal(be, &o, &q, &c->k[il], &c->v[il], hp->n_head, hp->n_head_kv, sq, ns, err));
    return step_mm(ws, &h, &o, &L->wo, sq, ns, err);
}

/* MLP: down(relu(up(x))^2) */
static nvl_status mlp(llm_workspace *ws, const llm_layer *L, int64_t T, const kern_seq *sq, int ns, nvl_err *err) {
    kern_backend *be = ws->be;
    nvl_tensor h = kern_rows(&ws->h, 0, T);
    nvl_tensor u = kern_act(be, ws->m->act, 2, (int64_t[]){T, ws->m->hp.n_ff}, ws->big.data);
    TRY(step_mm(ws, &u, &h, &L->up, sq, ns, err));
    TRY(kern_bias_act(be, &u, &u, NULL, KERN_ACT_RELU2, err));
    return step_mm(ws, &h, &u, &L->down, sq, ns, err);
}

// ---------------------------------------------------------------------------
// The step

/* Logits of rows r[0..n) of x into each wanting sequence's host output (dst[i], or NULL) and their
 * argmax (am[i], or NULL), LLM_LOGIT_BLOCK rows at a time. */
static nvl_status logits_out(llm_workspace *ws, const int64_t *rows, float *const *dst, int32_t *const *am, int64_t n,
                             nvl_err *err) {
    kern_backend *be = ws->be;
    const llm_model *m = ws->m;
    /* (in blocks the matmul is batch-invariant over: a row's logits are those it gets alone) */
    const int64_t R = kern_matmul_invariant_rows(be, &m->lm_head, ws->lrows.dtype);
    const int64_t blk = R > 0 && R < LLM_LOGIT_BLOCK ? R : LLM_LOGIT_BLOCK;
    for (int64_t b0 = 0; b0 < n; b0 += blk) {
        const int64_t nb = n - b0 < blk ? n - b0 : blk;
        nvl_tensor lr = kern_rows(&ws->lrows, 0, nb), lg = kern_rows(&ws->logits, 0, nb);
        for (int64_t i = 0; i < nb; i++) {
            nvl_tensor src = kern_rows(&ws->x, rows[b0 + i], 1), d = kern_rows(&lr, i, 1);
            TRY(kern_copy(be, &d, &src, err));
        }
        TRY(kern_rmsnorm(be, &lr, &lr, &m->norm_f, (float)m->hp.eps, err));
        TRY(kern_matmul(be, &lg, &lr, &m->lm_head, err));
        int any_am = 0;
        for (int64_t i = 0; i < nb; i++) {
            any_am |= am[b0 + i] != NULL;
            if (!dst[b0 + i]) continue;
            const nvl_tensor row = kern_rows(&lg, i, 1);
            TRY(kern_to_host_f32(be, dst[b0 + i], &row, err));
        }
        if (any_am) {
            int32_t ids[LLM_LOGIT_BLOCK];
            TRY(kern_argmax_rows(be, ids, &lg, err));
            for (int64_t i = 0; i < nb; i++)
                if (am[b0 + i]) *am[b0 + i] = ids[i];
        }
    }
    return NVL_OK;
}

/* The forward over T rows (the tables in ws are set): embedding rows, the layers; with
 * logit_rows > 0 also the final norm and lm_head over rows [0, logit_rows) into ws->glogits
 * (the graph form: nothing here depends on the step's values beyond T and the tables, so it can
 * be captured). */
static nvl_status step_body(llm_workspace *ws, llm_cache *c, int64_t T, int n_seq, int any_mask, int64_t logit_rows,
                            nvl_err *err) {
    const llm_model *m = ws->m;
    const llm_hparams *hp = &m->hp;
    kern_backend *be = ws->be;
    nvl_tensor x = kern_rows(&ws->x, 0, T), h = kern_rows(&ws->h, 0, T), em = kern_rows(&ws->embd, 0, T);
    TRY(kern_get_rows(be, &x, &m->emb, ws->ids, any_mask ? &em : NULL, any_mask ? ws->mask : NULL, err));
    const kern_seq *sq = ws->seqs;
    for (int il = 0; il < hp->n_layer; il++) {
        const llm_layer *L = &m->layers[il];
        TRY(kern_rmsnorm(be, &h, &x, &L->norm, (float)hp->eps, err));
        switch ((enum llm_layer_kind)L->kind) {
        case LLM_LAYER_KIND_MAMBA2: TRY(mamba2(ws, c, L, il, T, sq, n_seq, err)); break;
        case LLM_LAYER_KIND_ATTN: TRY(attention(ws, c, L, il, T, sq, n_seq, err)); break;
        case LLM_LAYER_KIND_MLP: TRY(mlp(ws, L, T, sq, n_seq, err)); break;
        default:
            return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "layer %d has kind '%c', which this model does not run", il,
                               L->kind);
        }
        TRY(kern_add(be, &x, &x, &h, err));
    }
    if (logit_rows > 0) {
        nvl_tensor xl = kern_rows(&ws->x, 0, logit_rows), hl = kern_rows(&ws->h, 0, logit_rows);
        nvl_tensor lg = kern_rows(&ws->glogits, 0, logit_rows);
        TRY(kern_rmsnorm(be, &hl, &xl, &m->norm_f, (float)hp->eps, err));
        /* (in calls the matmul is batch-invariant over, as logits_out: the CPU running the graph
           form eagerly, NVL_CUDA_GRAPHS=pad; a device answers 0: one call, captured as before) */
        const int64_t R = kern_matmul_invariant_rows(be, &m->lm_head, hl.dtype);
        const int64_t blk = R > 0 && R < logit_rows ? R : logit_rows;
        for (int64_t r0 = 0; r0 < logit_rows; r0 += blk) {
            const int64_t nb = logit_rows - r0 < blk ? logit_rows - r0 : blk;
            nvl_tensor lgb = kern_rows(&lg, r0, nb), hlb = kern_rows(&hl, r0, nb);
            TRY(kern_matmul(be, &lgb, &hlb, &m->lm_head, err));
        }
    }
    return NVL_OK;
}

/* The graph form's unit for a bucket of b rows: a captured graph's launch where there is one
 * (captured here on the bucket's second run), else the body run eagerly (llm.h). */
static nvl_status graph_form_run(llm_workspace *ws, llm_cache *c, int b, nvl_err *err) {
    kern_backend *be = ws->be;
    llm_graph_stats *gs = &ws->gstats;
    if (ws->graph_mode == LLM_GRAPHS_ON && kern_backend_can_capture(be)) {
        if (ws->graph_cache != c || ws->graph_gen != c->gen) { /* the graphs recorded another cache's KV rows */
            graphs_drop(ws);
            ws->graph_cache = c;
            ws->graph_gen = c->gen;
        }
        kern_graph *g = ws->graph[b];
        if (g && !kern_graph_current(be, g)) {
            kern_graph_free(be, g);
            g = ws->graph[b] = NULL;
        }
        if (!g && ws->warm[b] > 0 && !ws->gfail[b]) {
            nvl_err cerr = {0};
            nvl_status st = kern_capture_begin(be, &cerr);
            if (st == NVL_OK) {
                const nvl_status sb = step_body(ws, c, b, b, 0, b, &cerr);
                nvl_err eerr = {0};
                const nvl_status se = kern_capture_end(be, &g, &eerr);
                if (sb == NVL_OK && se != NVL_OK) cerr = eerr;
                st = sb != NVL_OK ? sb : se;
            }
            if (st != NVL_OK) {
                kern_graph_free(be, g);
                g = NULL;
                ws->gfail[b] = 1;
                gs->capture_failures++;
                NVL_LOG_WARN("decode graph for %d rows: %s; steps of that size run without a graph\n", b, cerr.msg);
            } else {
                ws->graph[b] = g;
                gs->captures++;
            }
        }
        if (g) {
            TRY(kern_graph_launch(be, g, err));
            gs->replays++;
            return NVL_OK;
        }
    }
    ws->warm[b]++;
    gs->eager_runs++;
    return step_body(ws, c, b, b, 0, b, err);
}

nvl_status llm_step(llm_workspace *ws, llm_cache *c, const llm_batch_seq *seqs, int n_seq, nvl_err *err) {
    const llm_model *m = ws->m;
    const llm_hparams *hp = &m->hp;
    kern_backend *be = ws->be;
    const int64_t C = hp->n_embd, V = hp->n_vocab;
    if (c->m != m) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: the cache belongs to another model", __func__);
    /* rows of the step: sequences in the order given (callers put decode rows first) */
    int64_t T = 0, n_logit_rows = 0, need_ctx = 0;
    for (int i = 0; i < n_seq; i++) {
        const llm_batch_seq *s = &seqs[i];
        if (s->slot < 0 || s->slot >= c->n_slots || !c->used[s->slot])
            return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: sequence %d names slot %d, which is not allocated", __func__,
                               i, s->slot);
        for (int j = 0; j < i; j++)
            if (seqs[j].slot == s->slot)
                return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: slot %d appears twice in one step", __func__, s->slot);
        if (s->n <= 0 || !s->tokens)
            return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: sequence %d has no rows", __func__, i);
        if (!s->embd && s->embd_t &&
            (s->embd_t->n_dims != 2 || s->embd_t->shape[0] < s->n || s->embd_t->shape[1] != C || !s->embd_t->data ||
             s->embd_t->device != ws->embd.device))
            return nvl_err_set(err, NVL_ERR_SHAPE, "%s: sequence %d's vision rows are not (%lld, %lld) in the %s backend's "
                               "memory", __func__, i, (long long)s->n, (long long)C, kern_backend_name(be));
        if ((s->logits != LLM_LOGITS_NONE && !s->out && !(s->logits == LLM_LOGITS_LAST && s->argmax)) ||
            (s->argmax && s->logits == LLM_LOGITS_NONE))
            return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: sequence %d wants logits or their argmax without a place for "
                               "them", __func__, i);
        T += s->n;
        n_logit_rows += s->logits == LLM_LOGITS_ALL ? s->n : s->logits == LLM_LOGITS_LAST ? 1 : 0;
        if (c->n_past[s->slot] + s->n > need_ctx) need_ctx = c->n_past[s->slot] + s->n;
    }
    if (T == 0) return NVL_OK;
    if (T > ws->max_rows)
        return nvl_err_set(err, NVL_ERR_LIMIT, "%s: %lld rows exceed the workspace's %lld", __func__, (long long)T,
                           (long long)ws->max_rows);
    if (hp->n_attn > 0 && need_ctx > c->n_ctx) TRY(llm_cache_reserve(c, need_ctx, err));
    /* graph form: one-row decode sequences only, no vision rows, within the largest bucket */
    int bucket = 0;
    if (ws->graph_mode != LLM_GRAPHS_OFF && T == n_seq) {
        bucket = llm_decode_bucket(n_seq, ws->graph_cap);
        for (int i = 0; bucket && i < n_seq; i++)
            if ((seqs[i].embd || seqs[i].embd_t) && seqs[i].embd_mask && seqs[i].embd_mask[0]) bucket = 0;
    }
    /* token ids, the vision mask and rows, the sequence table */
    int64_t r = 0;
    int any_mask = 0;
    for (int i = 0; i < n_seq; i++) {
        const llm_batch_seq *s = &seqs[i];
        ws->seqs[i] = (kern_seq){.slot = s->slot, .decode = s->n == 1, .row0 = r, .n_rows = s->n,
                                 .pos0 = c->n_past[s->slot]};
        for (int64_t t = 0; t < s->n; t++, r++) {
            const int masked = (s->embd || s->embd_t) && s->embd_mask && s->embd_mask[t];
            ws->mask[r] = (uint8_t)masked;
            ws->ids[r] = s->tokens[t];
            if (masked) {
                any_mask = 1;
                if (t == 0 || !s->embd_mask[t - 1]) { /* a run of vision rows: in one copy, rounded to the activation dtype */
                    int64_t e = t + 1;
                    while (e < s->n && s->embd_mask[e]) e++;
                    nvl_tensor dst = kern_rows(&ws->embd, r, e - t);
                    if (s->embd) {
                        TRY(kern_from_host_f32(be, &dst, s->embd + t * C, err));
                    } else {
                        const nvl_tensor src = kern_rows(s->embd_t, t, e - t);
                        TRY(kern_copy(be, &dst, &src, err));
                    }
                }
            } else if (s->tokens[t] < 0 || s->tokens[t] >= V) {
                return nvl_err_set(err, NVL_ERR_INVALID_ARG, "token id %d at position %lld is outside the vocabulary of %lld",
                                   s->tokens[t], (long long)(c->n_past[s->slot] + t), (long long)V);
            }
        }
    }
    if (bucket) { /* padding rows: token 0, a sequence of no slot (the sequence ops skip it) */
        for (int i = n_seq; i < bucket; i++, r++) {
            ws->seqs[i] = (kern_seq){.slot = KERN_SLOT_NONE, .decode = 1, .row0 = r, .n_rows = 1, .pos0 = 0};
            ws->ids[r] = 0;
            ws->mask[r] = 0;
        }
        TRY(kern_step_tables(be, ws->seqs, bucket, ws->ids, NULL, bucket, err));
        TRY(graph_form_run(ws, c, bucket, err));
        ws->gstats.graph_form_steps++;
        ws->gstats.padded_rows += bucket - n_seq;
        for (int i = 0; i < n_seq; i++) c->n_past[seqs[i].slot] += 1;
        int n_out = 0, n_am = 0;
        for (int i = 0; i < n_seq; i++) {
            n_out += seqs[i].logits != LLM_LOGITS_NONE && seqs[i].out;
            n_am += seqs[i].argmax != NULL;
        }
        if (n_am) { /* greedy rows: their ids, not their logits */
            const nvl_tensor rows = kern_rows(&ws->glogits, 0, n_seq);
            TRY(kern_argmax_rows(be, ws->gids, &rows, err));
            for (int i = 0; i < n_seq; i++)
                if (seqs[i].argmax) *seqs[i].argmax = ws->gids[i];
        }
        if (ws->ghost && n_out > 1) { /* a device: the rows in one copy (one synchronisation), then out */
            const nvl_tensor rows = kern_rows(&ws->glogits, 0, n_seq);
            TRY(kern_to_host_f32(be, ws->ghost, &rows, err));
            for (int i = 0; i < n_seq; i++)
                if (seqs[i].logits != LLM_LOGITS_NONE && seqs[i].out)
                    memcpy(seqs[i].out, ws->ghost + (size_t)i * (size_t)V, (size_t)V * sizeof(float));
            return NVL_OK;
        }
        for (int i = 0; i < n_seq; i++)
            if (seqs[i].logits != LLM_LOGITS_NONE && seqs[i].out) { /* LAST and ALL are the same one row here */
                const nvl_tensor row = kern_rows(&ws->glogits, i, 1);
                TRY(kern_to_host_f32(be, seqs[i].out, &row, err));
            }
        return NVL_OK;
    }
    TRY(kern_step_tables(be, ws->seqs, n_seq, ws->ids, any_mask ? ws->mask : NULL, T, err));
    TRY(step_body(ws, c, T, n_seq, any_mask, 0, err));
    for (int i = 0; i < n_seq; i++) c->n_past[seqs[i].slot] += seqs[i].n;
    if (n_logit_rows == 0) return NVL_OK;
    int64_t *rows = ws->lrow, k = 0; /* n_logit_rows <= T <= max_rows */
    float **dst = ws->ldst;
    int32_t **am = ws->lam;
    for (int i = 0; i < n_seq; i++) {
        const llm_batch_seq *s = &seqs[i];
        const int64_t row0 = ws->seqs[i].row0;
        if (s->logits == LLM_LOGITS_ALL)
            for (int64_t t = 0; t < s->n; t++, k++) {
                rows[k] = row0 + t;
                dst[k] = s->out + t * V;
                am[k] = t == s->n - 1 ? s->argmax : NULL;
            }
        else if (s->logits == LLM_LOGITS_LAST) {
            rows[k] = row0 + s->n - 1;
            am[k] = s->argmax;
            dst[k++] = s->out;
        }
    }
    return logits_out(ws, rows, dst, am, n_logit_rows, err);
}
