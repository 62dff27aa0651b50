/* The engine's generation stage (engine_impl.h): each sampled id goes to the request's on_token,
 * is detokenized into complete UTF-8 pieces, and split at </think> into reasoning and answer
 * (streamed through on_text, kept for the result). The same loop as llm_generate: sample, report,
 * stop at a stop id, max_tokens or a callback's non-zero. */
#include <string.h>

#include "base/alloc.h"
#include "engine_impl.h"
#include "base/clock.h"

void engine_gen_init(request *rq) {
    gen_state *g = &rq->g;
    memset(g, 0, sizeof *g);
    g->rq = rq;
    llm_detok_init(&g->detok, rq->e->tok);
    g->reasoning = rq->think_on;
    g->t0 = nvl_now();
}

void engine_gen_free(request *rq) {
    nvl_free(rq->g.buf[0]);
    nvl_free(rq->g.buf[1]);
    rq->g.buf[0] = rq->g.buf[1] = NULL;
}

static int gen_emit(gen_state *g, const char *s, size_t n) {
    const int w = g->reasoning;
    if (g->n[w] + n + 1 > g->cap[w]) {
        size_t nc = (g->cap[w] ? g->cap[w] * 2 : 1024) + n;
        char *nb = nvl_realloc(g->buf[w], nc);
        if (!nb) {
            g->oom = 1;
            return 1;
        }
        g->buf[w] = nb;
        g->cap[w] = nc;
    }
    memcpy(g->buf[w] + g->n[w], s, n);
    g->n[w] += n;
    g->buf[w][g->n[w]] = 0;
    const api_callbacks *cb = g->rq->cb;
    return cb->on_text ? cb->on_text(s, n, w, cb->user) : 0;
}

/* Callbacks and text of one id; non-zero when a callback asks to stop. */
static int gen_on_token(gen_state *g, int32_t tok, const float *logits) {
    request *rq = g->rq;
    const api_callbacks *cb = rq->cb;
    int stop = 0;
    g->n_tok++;
    if (cb->on_token && cb->on_token(tok, logits, cb->user)) stop = 1;
    char out[4096];
    size_t n;
    for (int i = 0; i < rq->e->n_stop; i++)
        if (tok == rq->e->stop[i]) goto progress; /* the stop id's text is not part of the answer */
    if (g->reasoning && tok == rq->e->think_end) {
        n = llm_detok_flush(&g->detok, out, sizeof out);
        if (n && gen_emit(g, out, n)) stop = 1;
        g->reasoning = 0;
        goto progress;
    }
    n = llm_detok_feed(&g->detok, tok, out, sizeof out);
    if (n && gen_emit(g, out, n)) stop = 1;
progress:
    if ((g->n_tok & 7) == 0) engine_progress(rq, API_STAGE_GENERATE, NULL, g->n_tok, 0, g->t0);
    return stop;
}

int engine_gen_token(request *rq, int32_t tok, const float *logits) {
    api_ask_result *res = rq->res;
    const int64_t k = res->n_ids;
    if (engine_cancelled(rq)) {
        nvl_err er = {0};
        engine_fail(rq, nvl_err_set(&er, NVL_ERR_CANCELLED, "generation cancelled after %lld tokens", (long long)k), &er);
        return 1;
    }
    res->ids[res->n_ids++] = tok;
    if (gen_on_token(&rq->g, tok, logits)) {
        nvl_err er = {0};
        if (rq->g.oom) { /* the answer's text could not grow: an error, not the caller stopping */
            engine_fail(rq, nvl_err_set(&er, NVL_ERR_NOMEM, "engine: out of memory for the answer"), &er);
            return 1;
        }
        engine_fail(rq,
                    nvl_err_set(&er, NVL_ERR_CANCELLED, "generation stopped by the caller after %lld tokens",
                                (long long)(k + 1)),
                    &er);
        return 1;
    }
    int stop = 0;
    for (int i = 0; i < rq->e->n_stop; i++) stop |= rq->e->stop[i] == tok;
    if (stop || k + 1 == rq->p->max_tokens) {
        rq->state = RQ_FINISHED;
        rq->st = NVL_OK;
        return 1;
    }
    rq->next_tok = tok;
    return 0;
}

/* n bytes of s (NUL bytes kept) and a NUL after them; NULL on OOM. */
static char *gen_dup(const char *s, size_t n) {
    char *d = nvl_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

void engine_gen_finish(request *rq) {
    api_ask_result *res = rq->res;
    gen_state *g = &rq->g;
    if (rq->st == NVL_OK) {
        char tail[64];
        size_t tn = llm_detok_flush(&g->detok, tail, sizeof tail);
        if (tn) gen_emit(g, tail, tn);
    }
    res->t_generate = nvl_now() - rq->t_gen0;
    engine_progress(rq, API_STAGE_GENERATE, NULL, res->n_ids, 0, rq->t_gen0);
    if (g->oom && rq->st == NVL_OK) rq->st = nvl_err_set(&rq->err, NVL_ERR_NOMEM, "engine: out of memory for the answer");
    int stopped = 0;
    for (int i = 0; res->n_ids > 0 && i < rq->e->n_stop; i++) stopped |= res->ids[res->n_ids - 1] == rq->e->stop[i];
    res->finish_reason = rq->st == NVL_ERR_CANCELLED ? "cancelled"
                         : stopped                   ? "stop"
                         : res->n_ids >= rq->p->max_tokens ? "length"
                                                     : "stop";
    /* the answer without leading blank space (the model writes "</think>\n\n") */
    const char *a = g->buf[0] ? g->buf[0] : "";
    size_t an = g->n[0];
    while (an && (*a == '\n' || *a == ' ')) a++, an--;
    res->answer = gen_dup(a, an);
    res->answer_len = an;
    if (rq->think_on) {
        res->reasoning = gen_dup(g->buf[1] ? g->buf[1] : "", g->n[1]);
        res->reasoning_len = g->n[1];
    }
    if ((!res->answer || (rq->think_on && !res->reasoning)) && (rq->st == NVL_OK || rq->st == NVL_ERR_CANCELLED))
        rq->st = nvl_err_set(&rq->err, NVL_ERR_NOMEM, "engine: out of memory");
    res->prompt_ids = rq->prompt.ids;
    res->n_prompt = rq->prompt.n;
    rq->prompt.ids = NULL;
}
