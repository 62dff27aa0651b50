/* One sequence as a convenience over the batched path: a slot of a cache, chunked prefill and
 * decode as llm_step calls of one sequence, snapshot/restore to host memory. */
#include <string.h>

#include "base/alloc.h"
#include "llm_impl.h"

llm_context_params llm_context_params_default(void) {
    llm_context_params p = {.n_ctx = 4096, .n_chunk = 256, .logits_all = 0,
                            .ssm_mode = LLM_SSM_MODE_AUTO};
    return p;
}

void llm_context_free(llm_context *ctx) {
    if (!ctx) return;
    if (ctx->cache && ctx->slot >= 0) llm_seq_free(ctx->cache, ctx->slot);
    if (ctx->owns_cache) llm_cache_free(ctx->cache);
    llm_workspace_free(ctx->ws);
    nvl_free(ctx->logits);
    nvl_free(ctx->logits_all);
    nvl_free(ctx);
}

nvl_status llm_context_init_shared(llm_context **out, const llm_model *m, llm_cache *cache,
                                   const llm_context_params *p, nvl_err *err) {
    *out = NULL;
    llm_context *ctx = nvl_calloc(1, sizeof *ctx);
    if (!ctx) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", __func__);
    ctx->m = m;
    ctx->slot = -1;
    ctx->p = p ? *p : llm_context_params_default();
    nvl_status st = NVL_OK;
    if (ctx->p.n_ctx <= 0 || ctx->p.n_chunk <= 0) {
        st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: n_ctx %lld and n_chunk %lld must be > 0", "llm_context_init",
                         (long long)ctx->p.n_ctx, (long long)ctx->p.n_chunk);
        goto fail;
    }
    if (ctx->p.n_chunk > ctx->p.n_ctx) ctx->p.n_chunk = ctx->p.n_ctx;
    if (cache) {
        ctx->cache = cache;
        st = llm_cache_reserve(cache, ctx->p.n_ctx, err);
    } else {
        ctx->owns_cache = 1;
        st = llm_cache_init(&ctx->cache, m, 1, ctx->p.n_ctx, err);
    }
    if (st == NVL_OK) st = llm_seq_alloc(ctx->cache, &ctx->slot, err);
    if (st == NVL_OK) st = llm_workspace_init(&ctx->ws, m, ctx->p.n_chunk, ctx->p.ssm_mode, err);
    if (st == NVL_OK && !(ctx->logits = nvl_calloc((size_t)m->hp.n_vocab, sizeof(float))))
        st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory for a context of %lld tokens", "llm_context_init",
                         (long long)ctx->p.n_ctx);
    if (st != NVL_OK) goto fail;
    *out = ctx;
    return NVL_OK;
fail:
    llm_context_free(ctx);
    return st;
}

nvl_status llm_context_init(llm_context **out, const llm_model *m, const llm_context_params *p,
                            nvl_err *err) {
    return llm_context_init_shared(out, m, NULL, p, err);
}

void llm_context_reset(llm_context *ctx) {
    llm_seq_reset(ctx->cache, ctx->slot);
    ctx->n_past = 0;
    ctx->logits_all_n = 0;
}

int llm_context_slot(const llm_context *ctx) { return ctx->slot; }
llm_cache *llm_context_cache(const llm_context *ctx) { return ctx->cache; }
int64_t llm_context_n_past(const llm_context *ctx) { return ctx->n_past; }
const float *llm_logits(const llm_context *ctx) { return ctx->logits; }
float *llm_logits_mut(llm_context *ctx) { return ctx->logits; }
const float *llm_logits_all(const llm_context *ctx, int64_t *n_rows) {
    if (n_rows) *n_rows = ctx->logits_all_n;
    return ctx->logits_all;
}
const float *llm_context_conv_state(const llm_context *ctx, int il) {
    return llm_seq_conv_state(ctx->cache, ctx->slot, il);
}
const float *llm_context_ssm_state(const llm_context *ctx, int il) {
    return llm_seq_ssm_state(ctx->cache, ctx->slot, il);
}

void llm_context_sync(llm_context *ctx) { ctx->n_past = llm_seq_n_past(ctx->cache, ctx->slot); }

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
        const int last = i + T == n;
        llm_batch_seq s = {.slot = ctx->slot, .tokens = tokens + i, .embd = embd ? embd + i * C : NULL,
                           .embd_mask = embd_mask ? embd_mask + i : NULL, .n = T,
                           .logits = ctx->p.logits_all ? LLM_LOGITS_ALL : last ? LLM_LOGITS_LAST : LLM_LOGITS_NONE,
                           .out = ctx->p.logits_all ? ctx->logits_all + i * V : ctx->logits};
        nvl_status st = llm_step(ctx->ws, ctx->cache, &s, 1, err);
        llm_context_sync(ctx);
        if (st != NVL_OK) return st;
    }
    if (ctx->p.logits_all) memcpy(ctx->logits, ctx->logits_all + (n - 1) * V, (size_t)V * sizeof(float));
    return NVL_OK;
}

nvl_status llm_decode(llm_context *ctx, int32_t token, nvl_err *err) {
    if (ctx->n_past + 1 > ctx->p.n_ctx)
        return nvl_err_set(err, NVL_ERR_LIMIT, "context full: n_ctx %lld tokens",
                           (long long)ctx->p.n_ctx);
    llm_batch_seq s = {.slot = ctx->slot, .tokens = &token, .n = 1, .logits = LLM_LOGITS_LAST, .out = ctx->logits};
    nvl_status st = llm_step(ctx->ws, ctx->cache, &s, 1, err);
    llm_context_sync(ctx);
    return st;
}

// ---------------------------------------------------------------------------
// Snapshot / restore: one host blob of the logits, the slot's conv and SSM states and its KV
// rows [0, n_past) (for saving; a kept prefix inside the engine is a parked slot instead).

struct llm_state {
    const llm_model *m;
    int64_t n_past;
    size_t bytes;
    unsigned char *data;
};

/* dir 0: slot -> blob, 1: blob -> slot. Returns the bytes moved (blob NULL: only counts). */
static size_t state_move(llm_context *ctx, unsigned char *blob, int64_t n_past, int dir, nvl_err *err,
                         nvl_status *st) {
    const llm_hparams *hp = &ctx->m->hp;
    llm_cache *c = ctx->cache;
    kern_backend *be = c->be;
    size_t off = 0;
    *st = NVL_OK;
#define MOVE(dev, bytes)                                                                                 \
    do {                                                                                               \
        size_t b_ = (bytes);                                                                           \
        if (blob && *st == NVL_OK)                                                                      \
            *st = dir == 0 ? kern_copy_to_host(be, blob + off, (dev), b_, err)                          \
                           : kern_copy_to_backend(be, (dev), blob + off, b_, err);                      \
        off += b_;                                                                                     \
    } while (0)
    if (blob) {
        if (dir == 0) memcpy(blob, ctx->logits, (size_t)hp->n_vocab * sizeof(float));
        else memcpy(ctx->logits, blob, (size_t)hp->n_vocab * sizeof(float));
    }
    off += (size_t)hp->n_vocab * sizeof(float);
    const int s = ctx->slot;
    for (int64_t i = 0; i < hp->n_layer; i++) {
        if (c->k[i].data) {
            const size_t row = (size_t)c->k[i].shape[2] * nvl_tensor_elem_size(&c->k[i]);
            const size_t slot_off = (size_t)s * (size_t)c->k[i].shape[1] * row;
            MOVE((unsigned char *)c->k[i].data + slot_off, (size_t)n_past * row);
            MOVE((unsigned char *)c->v[i].data + slot_off, (size_t)n_past * row);
        }
        if (c->conv[i].data) {
            const size_t rc = nvl_tensor_nbytes(&c->conv[i]) / (size_t)c->n_slots;
            const size_t rs = nvl_tensor_nbytes(&c->ssm[i]) / (size_t)c->n_slots;
            MOVE((unsigned char *)c->conv[i].data + (size_t)s * rc, rc);
            MOVE((unsigned char *)c->ssm[i].data + (size_t)s * rs, rs);
        }
    }
#undef MOVE
    return off;
}

nvl_status llm_state_snapshot(const llm_context *ctx, llm_state **out, nvl_err *err) {
    *out = NULL;
    nvl_status st;
    llm_context *c = (llm_context *)ctx;
    const size_t n = state_move(c, NULL, ctx->n_past, 0, err, &st);
    llm_state *s = nvl_calloc(1, sizeof *s);
    if (s) s->data = nvl_malloc(n);
    if (!s || !s->data) {
        llm_state_free(s);
        return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory for %zu bytes", __func__, n);
    }
    s->m = ctx->m;
    s->n_past = ctx->n_past;
    s->bytes = n;
    state_move(c, s->data, ctx->n_past, 0, err, &st);
    if (st != NVL_OK) {
        llm_state_free(s);
        return st;
    }
    *out = s;
    return NVL_OK;
}

nvl_status llm_state_restore(llm_context *ctx, const llm_state *s, nvl_err *err) {
    if (s->m != ctx->m)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: snapshot belongs to another model", __func__);
    if (s->n_past > ctx->p.n_ctx)
        return nvl_err_set(err, NVL_ERR_LIMIT, "%s: snapshot holds %lld tokens, context only %lld",
                           __func__, (long long)s->n_past, (long long)ctx->p.n_ctx);
    nvl_status st;
    state_move(ctx, s->data, s->n_past, 1, err, &st);
    if (st != NVL_OK) return st;
    ctx->cache->n_past[ctx->slot] = s->n_past;
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
