/* The engine's media stage (engine_impl.h): new requests' files are read on the engine's media
 * threads (decoding, PDF opening, opening videos and planning their samples), images' and pages'
 * tiles made ahead of the vision stage, videos' frames decoded while RADIO embeds the earlier ones, so that files never stop the other requests' steps; without threads (none
 * could start) the stepping thread reads them inline, one request per turn. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "engine_impl.h"
#include "base/clock.h"

int engine_has_media(const request *rq) {
    for (int m = 0; m < rq->n_msgs; m++)
        for (int k = 0; k < rq->msgs[m].n_parts; k++)
            if (rq->msgs[m].parts[k].kind == API_PART_MEDIA) return 1;
    return 0;
}

int engine_queue_job(api_engine *e, request *rq, int src) {
    pthread_mutex_lock(&e->mmu);
    if (rq->media_busy) { /* one job per request at a time (the queue links the request itself) */
        pthread_mutex_unlock(&e->mmu);
        return 0;
    }
    rq->media_busy = 1;
    rq->job_src = src;
    if (src >= 0) rq->src[src].prep = 1;
    rq->media_next = NULL;
    if (e->mq_tail) e->mq_tail->media_next = rq;
    else e->mq = rq;
    e->mq_tail = rq;
    pthread_cond_broadcast(&e->mcv);
    pthread_mutex_unlock(&e->mmu);
    return 1;
}

int engine_media_cancelled(request *rq) {
    pthread_mutex_lock(&rq->e->mu);
    const int c = rq->cancel_req;
    pthread_mutex_unlock(&rq->e->mu);
    return c || engine_flag_set(rq->cb->cancel);
}

/* A test's knob: NVL_TEST_MEDIA_DELAY="SUBSTRING:MS" holds the reading of a media part whose
 * path (or name: serve reads a file through its descriptor) contains SUBSTRING for MS
 * milliseconds without looking at cancellation, as Poppler does while it renders one heavy page
 * (tests/api/test_serve.c: a cancel answered before such a step ends). Read once. */
static char g_delay_pat[256];
static long g_delay_ms;
static pthread_once_t g_delay_once = PTHREAD_ONCE_INIT;

static void read_delay_env(void) {
    const char *v = getenv("NVL_TEST_MEDIA_DELAY");
    const char *colon = v ? strrchr(v, ':') : NULL;
    if (!colon || colon == v || (size_t)(colon - v) >= sizeof g_delay_pat) return;
    snprintf(g_delay_pat, sizeof g_delay_pat, "%.*s", (int)(colon - v), v);
    g_delay_ms = strtol(colon + 1, NULL, 10);
}

static void test_media_delay(const api_media *m) {
    pthread_once(&g_delay_once, read_delay_env);
    if (g_delay_ms <= 0 || !m->path || (!strstr(m->path, g_delay_pat) && !(m->name && strstr(m->name, g_delay_pat)))) return;
    const struct timespec ts = {g_delay_ms / 1000, (g_delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Every media part of rq becomes its sources (files read, decoded, PDFs opened, videos
 * sampled). On the media thread, or inline without one: touches only rq and what the engine
 * never changes (tokenizer, configs); no callbacks. */
void engine_media_read(request *rq) {
    nvl_status st = NVL_OK;
    const double t0 = nvl_now();
    { /* each image or PDF is at least one picture of one tile: a request with more of them than the
         context budget holds at that is refused before any is decoded (20,000 images were decoded
         for minutes first, to be refused then; a review). Kinds from the files' first bytes. */
        const int64_t G = vision_model_grid(rq->e->vm), Q = (G / 2) * (G / 2);
        const int64_t budget = rq->p->max_context > 0 ? rq->p->max_context : api_engine_max_context(rq->e);
        int64_t n_still = 0;
        for (int m = 0; m < rq->n_msgs; m++)
            for (int k = 0; k < rq->msgs[m].n_parts; k++) {
                const api_part *pt = &rq->msgs[m].parts[k];
                if (pt->kind != API_PART_MEDIA) continue;
                enum media_kind kind = MEDIA_KIND_UNKNOWN;
                nvl_err ek = {0};
                if (pt->media.path ? media_sniff_file(pt->media.path, &kind, &ek) != NVL_OK : !pt->media.data) continue;
                if (!pt->media.path) kind = media_sniff(pt->media.data, pt->media.size);
                n_still += kind != MEDIA_KIND_VIDEO && kind != MEDIA_KIND_UNKNOWN;
            }
        if (Q > 0 && n_still * Q + rq->p->max_tokens > budget) {
            st = nvl_err_set(&rq->err, NVL_ERR_LIMIT,
                             "the media (%lld images or PDFs) need at least %lld tokens at 1 tile per image (plus %lld to "
                             "answer), more than the context budget of %lld: send fewer images or PDFs in one request, or "
                             "raise --max-context / max_context",
                             (long long)n_still, (long long)(n_still * Q), (long long)rq->p->max_tokens, (long long)budget);
            rq->res->t_media = nvl_now() - t0;
            rq->media_st = st;
            return;
        }
    }
    for (int m = 0; m < rq->n_msgs && st == NVL_OK; m++)
        for (int k = 0; k < rq->msgs[m].n_parts && st == NVL_OK; k++) {
            const api_part *pt = &rq->msgs[m].parts[k];
            if (pt->kind == API_PART_MEDIA) {
                test_media_delay(&pt->media);
                st = engine_add_media(rq, &pt->media, m, k, &rq->err);
                rq->media_parts++;
            }
            if (st == NVL_OK && engine_media_cancelled(rq)) st = nvl_err_set(&rq->err, NVL_ERR_CANCELLED, "cancelled");
        }
    rq->res->t_media = nvl_now() - t0;
    rq->media_st = st;
}

void *engine_media_main(void *arg) {
    api_engine *e = arg;
    pthread_mutex_lock(&e->mmu);
    for (;;) {
        while (!e->mq && !e->media_stop) pthread_cond_wait(&e->mcv, &e->mmu);
        if (!e->mq) break;
        request *rq = e->mq;
        e->mq = rq->media_next;
        if (!e->mq) e->mq_tail = NULL;
        rq->media_t0 = nvl_now();
        pthread_mutex_unlock(&e->mmu);
        source *s = rq->job_src >= 0 ? &rq->src[rq->job_src] : NULL;
        nvl_status st = NVL_OK;
        nvl_err er = {0};
        if (!s) engine_media_read(rq);
        else if (!engine_media_cancelled(rq)) st = s->is_video ? engine_video_decode(rq, s, &er) : engine_vision_start(rq, s, &er);
        else st = nvl_err_set(&er, NVL_ERR_CANCELLED, "cancelled");
        pthread_mutex_lock(&e->mmu);
        if (s) {
            s->prep_st = st;
            s->prep_err = er;
            s->prep = 2;
        }
        rq->media_busy = 0;
        rq->media_t0 = 0;
        pthread_cond_broadcast(&e->mcv); /* a step may be waiting for it */
    }
    pthread_mutex_unlock(&e->mmu);
    return NULL;
}

/* Every media thread busy, jobs waiting, and one job held past MEDIA_STUCK_S (Poppler rendering
 * a dense vector page cannot be interrupted: tens of seconds; two such pages held both threads and
 * every other request's files waited): one more thread, up to MEDIA_THREADS_MAX. The stepping
 * thread calls it once a turn. Returns whether a thread was started. */
int engine_media_grow(api_engine *e) {
    if (!e->media_thr_ok || e->media_thr_ok >= MEDIA_THREADS_MAX) return 0;
    const double t = nvl_now();
    pthread_mutex_lock(&e->mmu);
    int busy = 0, stuck = 0; /* (a thread at work holds one live request's media_t0) */
    for (request *rq = e->live; e->mq && !e->media_stop && rq; rq = rq->next) {
        busy += rq->media_t0 > 0;
        stuck |= rq->media_t0 > 0 && t - rq->media_t0 > MEDIA_STUCK_S;
    }
    stuck &= busy >= e->media_thr_ok;
    pthread_mutex_unlock(&e->mmu);
    if (!stuck || pthread_create(&e->media_thr[e->media_thr_ok], NULL, engine_media_main, e) != 0) return 0;
    e->media_thr_ok++;
    return 1;
}

/* A live request further on that will keep the prefix rq would use (the same sources, the same
 * conversation up to the last of them) and has not kept it yet, or NULL. rq waits for it rather
 * than embed the same pages and prefill the same tokens beside it: questions sent together about
 * one document (a pipeline's, a batch's) then run vision and the document's prefill once. */
static request *prefix_leader(request *rq) {
    api_engine *e = rq->e;
    if (rq->p->no_cache || rq->no_kept || rq->n_src == 0) return NULL;
    /* nothing to wait for where no prefix of this size can be kept (NANOVL_KEEP_MB=0, or the
       prompt's whole state above it: the planned prompt bounds the prefix) */
    const size_t need = llm_cache_seq_bytes_at(e->cache, rq->res->n_planned > 0 ? rq->res->n_planned : 1) +
                        (size_t)llm_model_hparams(e->lm)->n_vocab * sizeof(float);
    if (need > e->keep_cap) return NULL;
    size_t nl = 0, ol = 0;
    const char *mine = NULL;
    for (request *o = e->live; o; o = o->next) {
        if (o == rq || o->p->no_cache || o->hit) continue;
        /* keys are set from the media stage on; a prefilling request parks once it reaches P; one
           waiting itself is followed only when older (so no two requests wait for each other) */
        const int before_park = (o->state == RQ_PREFIX_WAIT && o->id < rq->id) || o->state == RQ_VISION ||
                                o->state == RQ_PROMPT || (o->state == RQ_PREFILL && o->keep);
        /* (pages o left out count as not there: rq leaves them out too, engine_skip_known) */
        if (!before_park || !engine_same_sources(rq, o)) continue;
        if (!mine && !(mine = engine_prefix_text(rq, &nl))) return NULL;
        const char *theirs = engine_prefix_text(o, &ol);
        if (theirs && ol == nl && !memcmp(theirs, mine, nl)) return o;
    }
    return NULL;
}

static void sources_from_kept(request *rq);

/* After media_read, on the stepping thread: progress per media part, the budget, and the
 * layouts a kept prefix already holds (or a wait for another request keeping the same). */
void engine_media_stage(request *rq) {
    api_engine *e = rq->e;
    int part = 0;
    for (int m = 0; m < rq->n_msgs; m++)
        for (int k = 0; k < rq->msgs[m].n_parts && part < rq->media_parts; k++) {
            const api_part *pt = &rq->msgs[m].parts[k];
            if (pt->kind != API_PART_MEDIA) continue;
            part++;
            int n = 0; /* sources up to this part */
            for (int i = 0; i < rq->n_src; i++) n += rq->src[i].msg < m || (rq->src[i].msg == m && rq->src[i].part <= k);
            engine_progress(rq, API_STAGE_MEDIA, pt->media.name ? pt->media.name : pt->media.path, n, 0, rq->t_start);
        }
    nvl_status st = rq->media_st;
    rq->budget = rq->p->max_context > 0 ? rq->p->max_context : api_engine_max_context(e);
    if (st == NVL_OK && rq->res->n_skipped > 0) /* pages whose size could not be read, left out: */
        st = engine_drop_skipped(rq, &rq->err); /* fails at once when a PDF has no page left (said
                                                   when the vision stage ends: vision_advance) */
    /* pages earlier requests left out: left out here too, unless a kept prefix holds them read (its
       keys need a plan: one without notice first) */
    if (st == NVL_OK && engine_known_bad(rq)) {
        nvl_err pe = {0};
        if (engine_plan_budget(rq, 1, &pe) != NVL_OK || engine_kept_find(e, rq) < 0) st = engine_skip_known(rq, &rq->err);
    }
    for (int i = 0; st == NVL_OK && i < rq->n_src; i++) { /* a video cut short is answered on what it holds, said */
        const source *s = &rq->src[i];
        if (s->is_video && s->frames_listed > 0) {
            char msg[NVL_ERR_MSG_MAX];
            snprintf(msg, sizeof msg, "%s: the file is cut short: its index lists %lld frames, %lld could be read; the "
                     "answer covers those", s->name, (long long)s->frames_listed, (long long)s->frames_read);
            engine_notice(rq, msg);
        }
        if (!s->is_video && s->image_frames > 1) { /* (Pillow's first frame, as the reference processors see it) */
            char msg[NVL_ERR_MSG_MAX];
            snprintf(msg, sizeof msg, "%s: an animated image of %lld frames: the model sees its first frame, as Pillow opens "
                     "it (to ask about the animation, convert it to a video)", s->name, (long long)s->image_frames);
            engine_notice(rq, msg);
        }
    }
    if (st == NVL_OK) st = engine_plan_budget(rq, 0, &rq->err);
    if (st != NVL_OK) {
        engine_fail(rq, st, NULL);
        return;
    }
    if (engine_kept_find(e, rq) < 0 && prefix_leader(rq)) {
        rq->t_wait0 = nvl_now();
        rq->state = RQ_PREFIX_WAIT;
        return;
    }
    sources_from_kept(rq);
}

void engine_prefix_wait_stage(request *rq) {
    /* the request waited for left a page out: so does rq (unless a kept prefix holds it read) */
    nvl_status st = engine_kept_find(rq->e, rq) < 0 ? engine_skip_known(rq, &rq->err) : NVL_OK;
    if (st != NVL_OK) {
        engine_fail(rq, st, NULL);
        return;
    }
    if (prefix_leader(rq)) return;
    rq->res->t_wait = nvl_now() - rq->t_wait0;
    sources_from_kept(rq);
}

/* The layouts a kept prefix with rq's sources holds (their rows are computed only if the prefix
 * turns out not to apply), then the vision stage. */
static void sources_from_kept(request *rq) {
    api_engine *e = rq->e;
    const int ki = engine_kept_find(e, rq);
    for (int i = 0; ki >= 0 && i < rq->n_src; i++) { /* rows computed only if the prefix does not apply */
        source *s = &rq->src[i];
        const kept_source *k = &e->kp[ki].src[i];
        s->from_kept = k;
        s->n_tiles = k->n_tiles;
        s->n_frames = k->n_frames;
        s->n_rows = k->n_rows;
        if (k->n_frames) {
            s->ts = nvl_malloc((size_t)k->n_frames * sizeof(double));
            s->kept = nvl_malloc((size_t)k->n_frames * sizeof(int));
            if (!s->ts || !s->kept) {
                engine_fail(rq, nvl_err_set(&rq->err, NVL_ERR_NOMEM, "engine: out of memory"), NULL);
                return;
            }
            memcpy(s->ts, k->ts, (size_t)k->n_frames * sizeof(double));
            memcpy(s->kept, k->kept, (size_t)k->n_frames * sizeof(int));
        }
    }
    rq->vis_next = 0;
    rq->t_vision0 = nvl_now();
    rq->state = RQ_VISION;
}
