/* The engine's prompt stage and kept prefixes (engine_impl.h): the conversation rendered with
 * the sources' layouts and the vision rows placed at the <image> positions; a slot admitted
 * against the sequence-memory budget; the state after the last media span parked in a slot for
 * later requests (up to KEEP_MAX within NANOVL_KEEP_MB, least recently used dropped first) and
 * restored when a request's prompt starts with the same tokens and sources. */
#include <string.h>

#include "base/alloc.h"
#include "engine_impl.h"
#include "base/clock.h"

static void kept_free(api_engine *e, kept_prefix *k) {
    for (int i = 0; i < k->n_src; i++) {
        nvl_free(k->src[i].key);
        nvl_free(k->src[i].ts);
        nvl_free(k->src[i].kept);
    }
    nvl_free(k->src);
    nvl_free(k->ids);
    nvl_free(k->logits);
    nvl_free(k->text);
    if (k->slot >= 0 && e->cache) llm_seq_free(e->cache, k->slot);
    memset(k, 0, sizeof *k);
}

void engine_kept_clear(api_engine *e) {
    for (int i = 0; i < e->n_kp; i++) kept_free(e, &e->kp[i]);
    e->n_kp = 0;
}

static size_t kept_bytes(const api_engine *e, const kept_prefix *k) {
    return (k->slot >= 0 && k->logits ? llm_seq_bytes(e->cache, k->slot) : 0) + (size_t)k->n * sizeof(int32_t) +
           (size_t)llm_model_hparams(e->lm)->n_vocab * sizeof(float);
}

/* Drops prefix i; returns the bytes it held. */
static size_t kept_drop(api_engine *e, int i) {
    const size_t freed = kept_bytes(e, &e->kp[i]);
    kept_free(e, &e->kp[i]);
    e->kp[i] = e->kp[--e->n_kp];
    memset(&e->kp[e->n_kp], 0, sizeof e->kp[e->n_kp]);
    return freed;
}

/* Drops the least recently used prefix; returns the bytes it held. */
static size_t kept_evict(api_engine *e) {
    if (!e->n_kp) return 0;
    int lru = 0;
    for (int i = 1; i < e->n_kp; i++)
        if (e->kp[i].used < e->kp[lru].used) lru = i;
    return kept_drop(e, lru);
}

/* The prefix with id kid, or -1 (dropped). */
static int kept_index(const api_engine *e, uint64_t kid) {
    for (int i = 0; kid && i < e->n_kp; i++)
        if (e->kp[i].kid == kid) return i;
    return -1;
}

int engine_kept_find(const api_engine *e, request *rq) {
    int ki = -1;
    for (int k = 0; !rq->p->no_cache && !rq->no_kept && rq->n_src > 0 && k < e->n_kp; k++) {
        int same = e->kp[k].n_src == rq->n_src;
        for (int i = 0; same && i < rq->n_src; i++) same = !strcmp(e->kp[k].src[i].key, rq->src[i].key);
        if (same && e->kp[k].text) { /* another preamble before the same document: not this one */
            size_t tl = 0;
            const char *text = engine_prefix_text(rq, &tl); /* (rendered once, then cached) */
            same = !text || (tl == e->kp[k].text_len && !memcmp(text, e->kp[k].text, tl));
        }
        if (same && (ki < 0 || e->kp[k].used > e->kp[ki].used)) ki = k;
    }
    return ki;
}

/* Undoes prompt_build: the kept prefix did not apply (or went while the request waited), so
 * the sources it lent need their rows, and the prompt is built again after them. */
static void prompt_unbuild(request *rq) {
    api_ask_result *res = rq->res;
    for (int i = 0; i < rq->n_src; i++)
        if (rq->src[i].from_kept) engine_vision_reset_source(rq->e, &rq->src[i]);
    llm_prompt_free(&rq->prompt);
    nvl_free(rq->rowp);
    nvl_free(rq->mask);
    rq->rowp = NULL;
    rq->mask = NULL;
    for (int i = 0; i < res->n_media; i++) {
        nvl_free(res->media[i].name);
        nvl_free(res->media[i].frame_tokens);
        nvl_free(res->media[i].frame_ts);
    }
    nvl_free(res->media);
    res->media = NULL;
    res->n_media = 0;
    res->n_image_tokens = 0;
    rq->hit = 0;
    rq->kid = 0;
    rq->no_kept = 1;
    rq->vis_next = 0;
    rq->state = RQ_VISION;
}

/* The prompt with the vision rows at their places, and the media records. */
static nvl_status prompt_build(request *rq, nvl_err *err) {
    api_engine *e = rq->e;
    api_ask_result *res = rq->res;
    nvl_status st = engine_build_prompt(rq, rq->msgs, rq->n_msgs, &rq->prompt, &rq->think_on, err);
    if (st != NVL_OK) return st;
    const llm_prompt *pr = &rq->prompt;
    if (pr->n + rq->p->max_tokens > rq->budget)
        return nvl_err_set(err, NVL_ERR_LIMIT, "the prompt has %lld tokens; with max_tokens %lld it exceeds the context budget of %lld "
                           "(%slower --max-tokens / max_tokens, or raise --max-context / max_context: the checkpoint's "
                           "context is %lld tokens)",
                           (long long)pr->n, (long long)rq->p->max_tokens, (long long)rq->budget,
                           rq->p->ocr_page ? "shorten the OCR prompt (--prompt / prompt), " : "shorten the text, ",
                           (long long)api_engine_max_context(e));
    rq->P = pr->n_spans ? pr->spans[pr->n_spans - 1].start + pr->spans[pr->n_spans - 1].count + 1 : 0;
    const int ki = engine_kept_find(e, rq);
    rq->hit = ki >= 0 && e->kp[ki].slot >= 0 && e->kp[ki].logits && rq->P > 0 && e->kp[ki].n == rq->P && rq->P <= pr->n &&
              !memcmp(e->kp[ki].ids, pr->ids, (size_t)rq->P * sizeof(int32_t));
    rq->kid = rq->hit ? e->kp[ki].kid : 0;
    int need_rows = 0;
    for (int i = 0; !rq->hit && i < rq->n_src; i++) need_rows |= rq->src[i].from_kept != NULL;
    if (need_rows) { /* sources taken from a kept prefix need their rows after all */
        prompt_unbuild(rq);
        return NVL_OK;
    }
    rq->rowp = nvl_calloc((size_t)pr->n, sizeof *rq->rowp);
    rq->mask = nvl_calloc((size_t)pr->n, 1);
    res->media = nvl_calloc((size_t)rq->n_src + 1, sizeof *res->media);
    int64_t *used = nvl_calloc((size_t)rq->n_src + 1, sizeof *used);
    if (!rq->rowp || !rq->mask || !res->media || !used) {
        nvl_free(used);
        return nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory for a %lld-token prompt", (long long)pr->n);
    }
    for (int s = 0; s < pr->n_spans; s++) { /* a video's rows are consumed across its frames' spans */
        const llm_media_span *sp = &pr->spans[s];
        const source *so = &rq->src[sp->media];
        const int64_t off = used[sp->media];
        for (int64_t r = 0; r < sp->count && off + r < so->n_rows; r++) {
            if (so->rows) rq->rowp[sp->start + r] = (const char *)so->rows + (size_t)(off + r) * e->row_bytes; /* rows stay with the source */
            rq->mask[sp->start + r] = 1;
        }
        used[sp->media] += sp->count;
        res->n_image_tokens += sp->count;
    }
    for (int i = 0; i < rq->n_src; i++) {
        const source *s = &rq->src[i];
        api_media_record *mr = &res->media[res->n_media++];
        mr->name = engine_strdup(s->name);
        mr->page = s->page >= 0 ? s->page + 1 : 0;
        mr->is_video = s->is_video;
        mr->n_tiles = s->n_tiles;
        mr->n_frames = s->n_frames;
        mr->image_tokens = used[i];
        mr->cached = rq->hit;
        if (s->n_frames) {
            mr->frame_tokens = nvl_malloc((size_t)s->n_frames * sizeof(int));
            mr->frame_ts = nvl_malloc((size_t)s->n_frames * sizeof(double));
            if (mr->frame_tokens) memcpy(mr->frame_tokens, s->kept, (size_t)s->n_frames * sizeof(int));
            if (mr->frame_ts) memcpy(mr->frame_ts, s->ts, (size_t)s->n_frames * sizeof(double));
        }
    }
    nvl_free(used);
    return NVL_OK;
}

/* Prompt built, a slot admitted against the memory budget (or wait), the kept prefix restored. */
void engine_prompt_stage(request *rq) {
    api_engine *e = rq->e;
    const llm_hparams *hp = llm_model_hparams(e->lm);
    nvl_status st = NVL_OK;
    if (!rq->prompt.ids) {
        if ((st = prompt_build(rq, &rq->err)) != NVL_OK) {
            engine_fail(rq, st, NULL);
            return;
        }
        if (rq->state != RQ_PROMPT) return; /* back to vision */
    }
    const int64_t n_ctx = rq->prompt.n + rq->p->max_tokens + 1;
    const size_t need = llm_cache_seq_bytes_at(e->cache, n_ctx);
    if (need > e->seq_budget) {
        engine_fail(rq,
                    nvl_err_set(&rq->err, NVL_ERR_LIMIT,
                                "the request needs %.1f MiB of sequence state (%lld prompt tokens + %lld to answer), more than "
                                "the budget of %.1f MiB for all requests (--seq-mem)",
                                (double)need / 1048576.0, (long long)rq->prompt.n, (long long)rq->p->max_tokens,
                                (double)e->seq_budget / 1048576.0),
                    NULL);
        return;
    }
    if (e->seq_reserved + need > e->seq_budget) return; /* waits for running requests to end */
    if (rq->hit && kept_index(e, rq->kid) < 0) { /* the prefix went while this request waited */
        prompt_unbuild(rq);
        return;
    }
    if (llm_seq_alloc(e->cache, &rq->slot, NULL) != NVL_OK) {
        for (;;) { /* a parked prefix (the least recently used, never this request's) gives its slot */
            int lru = -1;
            for (int i = 0; i < e->n_kp; i++)
                if (e->kp[i].kid != rq->kid && (lru < 0 || e->kp[i].used < e->kp[lru].used)) lru = i;
            if (lru < 0) break;
            kept_drop(e, lru);
            if (llm_seq_alloc(e->cache, &rq->slot, NULL) == NVL_OK) break;
        }
        if (rq->slot < 0) return; /* every slot is live: waits */
    }
    if ((st = llm_cache_reserve(e->cache, n_ctx, &rq->err)) != NVL_OK) {
        engine_fail(rq, st, NULL);
        return;
    }
    rq->reserved = need;
    e->seq_reserved += need;
    api_ask_result *res = rq->res;
    rq->logits = nvl_malloc((size_t)hp->n_vocab * sizeof(float));
    res->first_logits = nvl_malloc((size_t)hp->n_vocab * sizeof(float));
    res->ids = nvl_malloc((size_t)rq->p->max_tokens * sizeof(int32_t));
    if (!rq->logits || !res->first_logits || !res->ids) {
        engine_fail(rq, nvl_err_set(&rq->err, NVL_ERR_NOMEM, "engine: out of memory"), NULL);
        return;
    }
    rq->t_prefill0 = nvl_now();
    if (rq->hit) { /* the parked slot continues as this request's */
        kept_prefix *k = &e->kp[kept_index(e, rq->kid)];
        if ((st = llm_seq_copy(e->cache, rq->slot, k->slot, &rq->err)) != NVL_OK) {
            engine_fail(rq, st, NULL);
            return;
        }
        memcpy(rq->logits, k->logits, (size_t)hp->n_vocab * sizeof(float));
        k->used = ++e->tick;
        rq->fed = rq->P;
        res->n_cached = rq->P;
    } else {
        rq->keep = !rq->p->no_cache && rq->P > 0;
        rq->fed = 0;
    }
    rq->seg0 = rq->fed;
    rq->state = RQ_PREFILL;
    if (rq->fed == rq->prompt.n) engine_prefill_done(rq);
}

/* The state at P (rq's slot, its logits there) parked for later requests; skipped silently when
 * memory is short. */
void engine_park_prefix(request *rq) {
    api_engine *e = rq->e;
    const llm_hparams *hp = llm_model_hparams(e->lm);
    const int64_t P = rq->P;
    kept_prefix nk = {.slot = -1};
    kept_source *ks = nvl_calloc((size_t)rq->n_src, sizeof *ks);
    int32_t *ids = nvl_malloc((size_t)P * sizeof(int32_t));
    nk.src = ks;
    nk.n_src = ks ? rq->n_src : 0;
    nk.ids = ids;
    nk.n = P;
    /* a free slot, or the least recently used prefix's */
    while (llm_seq_alloc(e->cache, &nk.slot, NULL) != NVL_OK && e->n_kp) kept_evict(e);
    nk.logits = nvl_malloc((size_t)hp->n_vocab * sizeof(float));
    int ok = ks && ids && nk.logits && nk.slot >= 0 && llm_seq_copy(e->cache, nk.slot, rq->slot, NULL) == NVL_OK;
    if (ok) memcpy(nk.logits, rq->logits, (size_t)hp->n_vocab * sizeof(float));
    for (int i = 0; ok && i < rq->n_src; i++) {
        const source *s = &rq->src[i];
        ks[i].key = engine_strdup(s->key);
        ks[i].n_tiles = s->n_tiles;
        ks[i].n_frames = s->n_frames;
        ks[i].n_rows = s->n_rows;
        ok = ks[i].key != NULL;
        if (ok && s->n_frames) {
            ks[i].ts = nvl_malloc((size_t)s->n_frames * sizeof(double));
            ks[i].kept = nvl_malloc((size_t)s->n_frames * sizeof(int));
            ok = ks[i].ts && ks[i].kept;
            if (ok) {
                memcpy(ks[i].ts, s->ts, (size_t)s->n_frames * sizeof(double));
                memcpy(ks[i].kept, s->kept, (size_t)s->n_frames * sizeof(int));
            }
        }
    }
    if (ok) memcpy(ids, rq->prompt.ids, (size_t)P * sizeof(int32_t));
    size_t tl = 0;
    const char *text = ok ? engine_prefix_text(rq, &tl) : NULL;
    if (text && (nk.text = nvl_malloc(tl + 1))) { /* (without it the prefix still serves: ids decide) */
        memcpy(nk.text, text, tl);
        nk.text[tl] = 0;
        nk.text_len = tl;
    }
    if (ok && kept_bytes(e, &nk) <= e->keep_cap) {
        size_t total = kept_bytes(e, &nk);
        for (int k = 0; k < e->n_kp; k++) total += kept_bytes(e, &e->kp[k]);
        while (e->n_kp && (e->n_kp == KEEP_MAX || total > e->keep_cap)) total -= kept_evict(e);
        nk.used = ++e->tick;
        nk.kid = ++e->next_kid;
        e->kp[e->n_kp++] = nk;
    } else {
        kept_free(e, &nk);
    }
}
