/* Per-sequence state: KV cache, Mamba conv and SSM states, scratch sized once at init;
 * chunked prefill, decode, snapshot/restore. */
#include <string.h>

#include "base/alloc.h"
#include "llm_impl.h"

#ifdef _OPENMP
#include <omp.h>
#endif

nvl_status llm_forward_chunk(llm_context *ctx, const int32_t *tokens, const float *embd,
                             const uint8_t *embd_mask, int64_t T, float *logits_rows,
                             nvl_err *err);

llm_context_params llm_context_params_default(void) {
    llm_context_params p = {.n_ctx = 4096, .n_chunk = 256, .logits_all = 0,
                            .ssm_mode = LLM_SSM_MODE_AUTO};
    return p;
}

static int64_t max3(int64_t a, int64_t b, int64_t c) {
    int64_t m = a > b ? a : b;
    return m > c ? m : c;
}

void llm_context_free(llm_context *ctx) {
    if (!ctx) return;
    const llm_hparams *hp = &ctx->m->hp;
    for (int64_t i = 0; i < hp->n_layer; i++) {
        if (ctx->k_cache) nvl_free(ctx->k_cache[i]);
        if (ctx->v_cache) nvl_free(ctx->v_cache[i]);
        if (ctx->conv_state) nvl_free(ctx->conv_state[i]);
        if (ctx->ssm_state) nvl_free(ctx->ssm_state[i]);
    }
    nvl_free(ctx->k_cache);
    nvl_free(ctx->v_cache);
    nvl_free(ctx->conv_state);
    nvl_free(ctx->ssm_state);
    float *bufs[] = {ctx->logits, ctx->logits_all, ctx->x, ctx->h, ctx->big, ctx->conv_in,
                     ctx->conv_out, ctx->dt, ctx->Bm, ctx->Cm, ctx->y, ctx->att};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) nvl_free(bufs[i]);
    nvl_free(ctx);
}

nvl_status llm_context_init(llm_context **out, const llm_model *m, const llm_context_params *p,
                            nvl_err *err) {
    *out = NULL;
    llm_context *ctx = nvl_calloc(1, sizeof *ctx);
    if (!ctx) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", __func__);
    ctx->m = m;
    ctx->p = p ? *p : llm_context_params_default();
    if (ctx->p.n_ctx <= 0 || ctx->p.n_chunk <= 0) {
        llm_context_free(ctx);
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: n_ctx %lld and n_chunk %lld must be > 0",
                           __func__, (long long)ctx->p.n_ctx, (long long)ctx->p.n_chunk);
    }
    if (ctx->p.n_chunk > ctx->p.n_ctx) ctx->p.n_chunk = ctx->p.n_ctx;
    const llm_hparams *hp = &m->hp;
    const int64_t Tm = ctx->p.n_chunk, C = hp->n_embd, L = hp->n_layer;
    const int64_t KD = hp->n_head_kv * hp->head_dim, QD = hp->n_head * hp->head_dim;
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    int ok = 1;
    ctx->k_cache = nvl_calloc((size_t)L, sizeof(float *));
    ctx->v_cache = nvl_calloc((size_t)L, sizeof(float *));
    ctx->conv_state = nvl_calloc((size_t)L, sizeof(float *));
    ctx->ssm_state = nvl_calloc((size_t)L, sizeof(float *));
    ok = ctx->k_cache && ctx->v_cache && ctx->conv_state && ctx->ssm_state;
    for (int64_t i = 0; ok && i < L; i++) {
        if (hp->pattern[i] == '*') {
            ctx->k_cache[i] = nvl_malloc((size_t)(ctx->p.n_ctx * KD) * sizeof(float));
            ctx->v_cache[i] = nvl_malloc((size_t)(ctx->p.n_ctx * KD) * sizeof(float));
            ok = ctx->k_cache[i] && ctx->v_cache[i];
        } else if (hp->pattern[i] == 'M') {
            ctx->conv_state[i] = nvl_calloc((size_t)(hp->conv_dim * hp->d_conv), sizeof(float));
            ctx->ssm_state[i] = nvl_calloc((size_t)(hp->ssm_n_head * hp->ssm_head_dim * hp->d_state), sizeof(float));
            ok = ctx->conv_state[i] && ctx->ssm_state[i];
        }
    }
    if (ok) {
        ctx->logits = nvl_malloc((size_t)hp->n_vocab * sizeof(float));
        ctx->x = nvl_malloc((size_t)(Tm * C) * sizeof(float));
        /* h also holds the final-norm rows and a mixer's output */
        ctx->h = nvl_malloc((size_t)(Tm * C) * sizeof(float));
        ctx->big = nvl_malloc((size_t)max3(Tm * hp->d_in_proj, Tm * (QD + KD), Tm * hp->n_ff) * sizeof(float));
        ctx->conv_in = nvl_malloc((size_t)(Tm * (hp->conv_dim > hp->d_inner ? hp->conv_dim : hp->d_inner) + 1) * sizeof(float));
        ctx->conv_out = nvl_malloc((size_t)(Tm * hp->conv_dim + 1) * sizeof(float));
        ctx->dt = nvl_malloc((size_t)(Tm * hp->ssm_n_head + 1) * sizeof(float));
        ctx->Bm = nvl_malloc((size_t)(Tm * hp->n_group * hp->d_state + 1) * sizeof(float));
        ctx->Cm = nvl_malloc((size_t)(Tm * hp->n_group * hp->d_state + 1) * sizeof(float));
        ctx->y = nvl_malloc((size_t)(Tm * (hp->d_inner > QD ? hp->d_inner : QD) + 1) * sizeof(float));
        ctx->att = nvl_malloc((size_t)threads * (size_t)ctx->p.n_ctx * sizeof(float));
        ok = ctx->logits && ctx->x && ctx->h && ctx->big && ctx->conv_in && ctx->conv_out &&
             ctx->dt && ctx->Bm && ctx->Cm && ctx->y && ctx->att;
    }
    if (!ok) {
        llm_context_free(ctx);
        return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory for a context of %lld tokens",
                           __func__, (long long)(p ? p->n_ctx : 0));
    }
    *out = ctx;
    return NVL_OK;
}

void llm_context_reset(llm_context *ctx) {
    const llm_hparams *hp = &ctx->m->hp;
    for (int64_t i = 0; i < hp->n_layer; i++)
        if (hp->pattern[i] == 'M') {
            memset(ctx->conv_state[i], 0, (size_t)(hp->conv_dim * hp->d_conv) * sizeof(float));
            memset(ctx->ssm_state[i], 0, (size_t)(hp->ssm_n_head * hp->ssm_head_dim * hp->d_state) * sizeof(float));
        }
    ctx->n_past = 0;
    ctx->logits_all_n = 0;
}

int64_t llm_context_n_past(const llm_context *ctx) { return ctx->n_past; }
const float *llm_logits(const llm_context *ctx) { return ctx->logits; }
const float *llm_logits_all(const llm_context *ctx, int64_t *n_rows) {
    if (n_rows) *n_rows = ctx->logits_all_n;
    return ctx->logits_all;
}
const float *llm_context_conv_state(const llm_context *ctx, int il) {
    return (il >= 0 && il < ctx->m->hp.n_layer) ? ctx->conv_state[il] : NULL;
}
const float *llm_context_ssm_state(const llm_context *ctx, int il) {
    return (il >= 0 && il < ctx->m->hp.n_layer) ? ctx->ssm_state[il] : NULL;
}

nvl_status llm_prefill(llm_context *ctx, const int32_t *tokens, int64_t n, const float *embd,
                       const uint8_t *embd_mask, nvl_err *err) {
    const int64_t V = ctx->m->hp.n_vocab, C = ctx->m->hp.n_embd;
    if (n <= 0) return NVL_OK;
    if (ctx->n_past + n > ctx->p.n_ctx)
        return nvl_err_set(err, NVL_ERR_LIMIT,
                           "context full: %lld tokens held + %lld new > n_ctx %lld",
                           (long long)ctx->n_past, (long long)n, (long long)ctx->p.n_ctx);
    if (ctx->p.logits_all) {
        if (n > ctx->logits_all_cap) {
            float *nb = nvl_realloc(ctx->logits_all, (size_t)(n * V) * sizeof(float));
            if (!nb) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory for logits", __func__);
            ctx->logits_all = nb;
            ctx->logits_all_cap = n;
        }
        ctx->logits_all_n = n;
    }
    for (int64_t i = 0; i < n; i += ctx->p.n_chunk) {
        const int64_t T = (n - i) < ctx->p.n_chunk ? (n - i) : ctx->p.n_chunk;
        nvl_status st = llm_forward_chunk(ctx, tokens + i, embd ? embd + i * C : NULL,
                                          embd_mask ? embd_mask + i : NULL, T,
                                          ctx->p.logits_all ? ctx->logits_all + i * V : NULL, err);
        if (st != NVL_OK) return st;
    }
    return NVL_OK;
}

nvl_status llm_decode(llm_context *ctx, int32_t token, nvl_err *err) {
    if (ctx->n_past + 1 > ctx->p.n_ctx)
        return nvl_err_set(err, NVL_ERR_LIMIT, "context full: n_ctx %lld tokens",
                           (long long)ctx->p.n_ctx);
    return llm_forward_chunk(ctx, &token, NULL, NULL, 1, NULL, err);
}

// ---------------------------------------------------------------------------
// Snapshot / restore: one contiguous blob of KV rows [0, n_past), conv and SSM states, logits.

struct llm_state {
    const llm_model *m;
    int64_t n_past;
    size_t bytes;
    float *data;
};

static size_t state_floats(const llm_context *ctx, int64_t n_past) {
    const llm_hparams *hp = &ctx->m->hp;
    size_t n = (size_t)hp->n_vocab;
    for (int64_t i = 0; i < hp->n_layer; i++) {
        if (hp->pattern[i] == '*') n += 2 * (size_t)(n_past * hp->n_head_kv * hp->head_dim);
        else if (hp->pattern[i] == 'M')
            n += (size_t)(hp->conv_dim * hp->d_conv + hp->ssm_n_head * hp->ssm_head_dim * hp->d_state);
    }
    return n;
}

/* dir 0: context -> blob, 1: blob -> context */
static void state_copy(llm_context *ctx, float *blob, int64_t n_past, int dir) {
    const llm_hparams *hp = &ctx->m->hp;
    float *b = blob;
#define MOVE(ptr, count)                                                              \
    do {                                                                              \
        size_t c_ = (size_t)(count);                                                  \
        if (dir == 0) memcpy(b, (ptr), c_ * sizeof(float));                           \
        else memcpy((ptr), b, c_ * sizeof(float));                                    \
        b += c_;                                                                      \
    } while (0)
    MOVE(ctx->logits, hp->n_vocab);
    for (int64_t i = 0; i < hp->n_layer; i++) {
        if (hp->pattern[i] == '*') {
            MOVE(ctx->k_cache[i], n_past * hp->n_head_kv * hp->head_dim);
            MOVE(ctx->v_cache[i], n_past * hp->n_head_kv * hp->head_dim);
        } else if (hp->pattern[i] == 'M') {
            MOVE(ctx->conv_state[i], hp->conv_dim * hp->d_conv);
            MOVE(ctx->ssm_state[i], hp->ssm_n_head * hp->ssm_head_dim * hp->d_state);
        }
    }
#undef MOVE
}

nvl_status llm_state_snapshot(const llm_context *ctx, llm_state **out, nvl_err *err) {
    *out = NULL;
    llm_state *s = nvl_calloc(1, sizeof *s);
    size_t n = state_floats(ctx, ctx->n_past);
    if (s) s->data = nvl_malloc(n * sizeof(float));
    if (!s || !s->data) {
        llm_state_free(s);
        return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory for %zu bytes", __func__,
                           n * sizeof(float));
    }
    s->m = ctx->m;
    s->n_past = ctx->n_past;
    s->bytes = n * sizeof(float);
    state_copy((llm_context *)ctx, s->data, ctx->n_past, 0);
    *out = s;
    return NVL_OK;
}

nvl_status llm_state_restore(llm_context *ctx, const llm_state *s, nvl_err *err) {
    if (s->m != ctx->m)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: snapshot belongs to another model", __func__);
    if (s->n_past > ctx->p.n_ctx)
        return nvl_err_set(err, NVL_ERR_LIMIT, "%s: snapshot holds %lld tokens, context only %lld",
                           __func__, (long long)s->n_past, (long long)ctx->p.n_ctx);
    state_copy(ctx, s->data, s->n_past, 1);
    ctx->n_past = s->n_past;
    ctx->logits_all_n = 0;
    return NVL_OK;
}

void llm_state_free(llm_state *s) {
    if (!s) return;
    nvl_free(s->data);
    nvl_free(s);
}

size_t llm_state_bytes(const llm_state *s) { return s->bytes; }
