/* The generation loop: prefill, then sample / stop check / callback / decode, with
 * cancellation checked between steps. */
#include <math.h>

#include "base/alloc.h"
#include "llm_impl.h"
#include "tokenizer.h"

llm_generate_params llm_generate_params_default(void) {
    llm_generate_params p = {0};
    p.max_tokens = 256;
    p.sampler = llm_sampler_params_default();
    return p;
}

nvl_status llm_logits_check_finite(const float *logits, int64_t n_vocab, nvl_err *err) {
    return llm_logits_check_finite_at(logits, n_vocab, 0, err);
}

nvl_status llm_logits_check_finite_at(const float *logits, int64_t n_vocab, int64_t n_generated, nvl_err *err) {
    int64_t n_bad = 0;
    if (logits)
        for (int64_t i = 0; i < n_vocab; i++) n_bad += !isfinite(logits[i]);
    if (logits && !n_bad) return NVL_OK;
    char after[96] = "";
    if (n_generated > 0) snprintf(after, sizeof after, " and %lld generated token%s", (long long)n_generated,
                                  n_generated == 1 ? "" : "s");
    char count[64] = "";
    if (logits) snprintf(count, sizeof count, " (%lld of %lld NaN or infinite)", (long long)n_bad, (long long)n_vocab);
    return nvl_err_set(err, NVL_ERR_CONFIG, "the model's logits after the prompt%s are not finite%s: the checkpoint's "
                       "weights hold NaN or infinite values, or its scales overflow (nanovl inspect checks the scales)",
                       after, count);
}

nvl_status llm_generate(llm_context *ctx, const int32_t *prompt, int64_t n_prompt,
                        const llm_generate_params *p, int32_t *out, int64_t cap, int64_t *n_out,
                        nvl_err *err) {
    *n_out = 0;
    if (n_prompt == 0 && ctx->n_past == 0)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: empty prompt and empty context", __func__);
    nvl_status st = llm_prefill(ctx, prompt, n_prompt, NULL, NULL, err);
    if (st != NVL_OK) return st;
    if ((st = llm_logits_check_finite(ctx->logits, ctx->m->hp.n_vocab, err)) != NVL_OK) return st;
    llm_sampler *smp = NULL;
    if ((st = llm_sampler_init(&smp, ctx->m->hp.n_vocab, &p->sampler, err)) != NVL_OK) return st;
    for (int64_t k = 0; k < p->max_tokens && k < cap; k++) {
        if (p->cancel && *p->cancel) {
            st = nvl_err_set(err, NVL_ERR_CANCELLED, "generation cancelled after %lld tokens",
                             (long long)k);
            break;
        }
        const int32_t tok = llm_sampler_sample(smp, ctx->logits);
        out[(*n_out)++] = tok;
        if (p->on_token && p->on_token(tok, ctx->logits, p->user)) {
            st = nvl_err_set(err, NVL_ERR_CANCELLED, "generation stopped by the caller after %lld tokens",
                             (long long)(k + 1));
            break;
        }
        int stop = 0;
        for (int i = 0; i < p->n_stop; i++) stop |= p->stop_ids[i] == tok;
        if (stop || k + 1 == p->max_tokens || k + 1 == cap) break;
        if ((st = llm_decode(ctx, tok, err)) != NVL_OK) break;
        /* (a NaN a generated token's embedding or a state reached: each id after it was 0, said
           nowhere; a review) */
        if ((st = llm_logits_check_finite_at(ctx->logits, ctx->m->hp.n_vocab, k + 1, err)) != NVL_OK) break;
    }
    llm_sampler_free(smp);
    return st;
}

int llm_chat_stop_ids(const llm_model *m, const llm_tokenizer *tok, int32_t *ids, int cap) {
    int n = llm_model_stop_ids(m, ids, cap);
    static const char *names[] = {"<SPECIAL_12>", "</s>"};
    for (int k = 0; tok && k < 2 && n < cap; k++) {
        const int32_t id = llm_tokenizer_token_id(tok, names[k]);
        int dup = id < 0;
        for (int j = 0; j < n && !dup; j++) dup = ids[j] == id;
        if (!dup) ids[n++] = id;
    }
    return n;
}
