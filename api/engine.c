/* The engine: loads a whole VL checkpoint (LM, RADIO, mlp1, tokenizer, generation config) and
 * answers conversations about files, many at once (api.h): media -> vision -> tokenreduce ->
 * prompt -> llm, each request a small state machine (engine_impl.h) that the scheduler here
 * advances one turn at a time:
 *   1. media (engine_media.c on the media threads, engine_sources.c): every media part becomes
 *      one or more sources (an image, a PDF page, a video), each with a key naming exactly what
 *      its vision rows depend on; the tiles per image are lowered until the prompt fits;
 *   2. vision (engine_vision.c): rows for each source, tiles of all requests batched, unless a
 *      kept prefix already holds that source;
 *   3. prompt (engine_prompt.c): chat render + media expansion; a slot admitted against the
 *      memory budget; the kept prefix restored when the tokens and sources agree;
 *   4. prefill in chunks beside the other requests' decode rows; the prefix kept (parked slot);
 *   5. generation (engine_gen.c), split into reasoning and answer at </think>. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "base/log.h"
#include "engine_impl.h"
#include "base/clock.h"

const char *api_stage_name(enum api_stage s) {
    static const char *names[] = {"media", "vision", "prefill", "generate"};
    return (unsigned)s < 4 ? names[s] : "unknown";
}

api_ask_params api_ask_params_default(void) {
    api_ask_params p;
    memset(&p, 0, sizeof p);
    p.fps = 2.0;
    p.max_frames = 128;
    p.evs = -1;
    p.think = -1;
    p.max_tokens = 1024;
    p.sampler = llm_sampler_params_default();
    return p;
}

double api_decode_tokens_per_s(const api_ask_result *r) {
    return r->n_ids > 1 && r->t_generate > 0 ? (double)(r->n_ids - 1) / r->t_generate : 0.0;
}

size_t api_answer_len(const api_ask_result *r) {
    return !r->answer ? 0 : r->answer_len ? r->answer_len : strlen(r->answer);
}

size_t api_reasoning_len(const api_ask_result *r) {
    return !r->reasoning ? 0 : r->reasoning_len ? r->reasoning_len : strlen(r->reasoning);
}

void api_ask_result_free(api_ask_result *r) {
    if (!r) return;
    nvl_free(r->prompt_ids);
    nvl_free(r->ids);
    nvl_free(r->first_logits);
    nvl_free(r->answer);
    nvl_free(r->reasoning);
    nvl_free(r->notice);
    for (int i = 0; i < r->n_media; i++) {
        nvl_free(r->media[i].name);
        nvl_free(r->media[i].frame_tokens);
        nvl_free(r->media[i].frame_ts);
    }
    nvl_free(r->media);
    for (int i = 0; i < r->n_skipped; i++) {
        nvl_free(r->skipped[i].name);
        nvl_free(r->skipped[i].message);
    }
    nvl_free(r->skipped);
    memset(r, 0, sizeof *r);
}

void api_engine_forget(api_engine *e) {
    engine_kept_clear(e);
    engine_bad_pages_clear(e);
}

int64_t api_engine_n_vocab(const api_engine *e) { return llm_model_hparams(e->lm)->n_vocab; }

nvl_status api_engine_device_memory(api_engine *e, size_t *used, size_t *total, nvl_err *err) {
    size_t fr = 0;
    *used = *total = 0;
    nvl_status st = kern_backend_mem_info(e->be, &fr, total, err);
    if (st == NVL_OK) *used = *total - fr;
    return st;
}
const llm_tokenizer *api_engine_tokenizer(const api_engine *e) { return e->tok; }
const char *api_engine_backend_name(const api_engine *e) { return kern_backend_name(e->be); }
const char *api_engine_backend_description(const api_engine *e) { return kern_backend_description(e->be); }
int64_t api_engine_max_context(const api_engine *e) {
    const int64_t t = llm_model_hparams(e->lm)->n_ctx_train;
    return t > 0 ? t : DEFAULT_MAX_CONTEXT;
}

/* (engine_impl.h) */
nvl_status api_chat_template_probe(const char *tmpl, const cJSON *special, char *why, size_t cap, nvl_err *out_err) {
    llm_chat_part sys = {LLM_PART_TEXT, "You are helpful.", 0};
    llm_chat_part parts[2] = {{LLM_PART_IMAGE, NULL, 0}, {LLM_PART_TEXT, "What is the total?", 0}};
    llm_chat_message msgs[2] = {{"system", &sys, 1}, {"user", parts, 2}};
    llm_chat_options o = llm_chat_options_default();
    char *text = NULL;
    size_t len = 0;
    nvl_err err = {0};
    why[0] = 0;
    nvl_status st = llm_chat_render_template(tmpl, msgs, 2, &o, special, &text, &len, &err);
    if (st == NVL_ERR_NOMEM) { /* not the template's fault: opening fails, it does not change format */
        nvl_free(text);
        return nvl_err_set(out_err, st, "%s", err.msg);
    }
    if (st != NVL_OK) {
        snprintf(why, cap, "%s", err.msg);
    } else {
        const char *first = strstr(text, "<image>");
        if (!first || strstr(first + 7, "<image>")) snprintf(why, cap, "it does not render an image part as one <image> marker");
        else if (!strstr(text, "What is the total?")) snprintf(why, cap, "it does not render the question");
    }
    nvl_free(text);
    return NVL_OK;
}

/* The checkpoint's chat template set aside, with a warning, when api_chat_template_probe finds it
 * unusable. */
static nvl_status check_template(api_engine *e, const char *dir, nvl_err *out_err) {
    char why[NVL_ERR_MSG_MAX + 64];
    nvl_err err = {0};
    if (api_chat_template_probe(e->chat_template, e->special, why, sizeof why, &err) != NVL_OK)
        return nvl_err_set(out_err, err.code, "%s: %s", dir, err.msg);
    if (why[0]) {
        NVL_LOG_WARN("%s: the checkpoint's chat template is not used (%s); prompts use nanovl's built-in Nemotron Nano "
                     "V2 format\n", dir, why);
        nvl_free(e->chat_template);
        e->chat_template = NULL;
    }
    return NVL_OK;
}

nvl_status api_env_check(nvl_err *err) {
    const char *km = getenv("NANOVL_KEEP_MB");
    if (km && *km) {
        char *end = NULL;
        errno = 0;
        double v = strtod(km, &end);
        if (errno || end == km || *end || !isfinite(v) || v < 0 || v > 1048576.0)
            return nvl_err_set(err, NVL_ERR_INVALID_ARG, "NANOVL_KEEP_MB='%s': expected a number of MiB from 0 to 1048576",
                               km);
    }
    return NVL_OK;
}

void api_engine_close(api_engine *e) {
    if (!e) return;
    /* requests still queued or live end cancelled (their callbacks run here) */
    pthread_mutex_lock(&e->mu);
    for (request *r = e->queue; r; r = r->next) r->cancel_req = 1;
    for (request *r = e->live; r; r = r->next) r->cancel_req = 1;
    pthread_mutex_unlock(&e->mu);
    while (e->ws && api_engine_step(e) > 0) {
    }
    if (e->media_thr_ok) {
        pthread_mutex_lock(&e->mmu);
        e->media_stop = 1;
        pthread_cond_broadcast(&e->mcv);
        pthread_mutex_unlock(&e->mmu);
        for (int i = 0; i < e->media_thr_ok; i++) pthread_join(e->media_thr[i], NULL);
    }
    engine_kept_clear(e);
    engine_bad_pages_clear(e);
    llm_workspace_free(e->ws);
    llm_cache_free(e->cache);
    llm_model_free(e->lm);
    vision_model_free(e->vm);
    nvl_checkpoint_close(e->ck);
    if (e->be) { /* (before their backend) */
        kern_buffer_free(e->be, e->embd);
        kern_buffer_free(e->be, e->vis_rows);
    }
    kern_backend_free(e->be);
    llm_tokenizer_free(e->tok);
    nvl_free(e->chat_template);
    cJSON_Delete(e->special);
    nvl_free(e->seqs);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->mmu);
    pthread_cond_destroy(&e->mcv);
    nvl_free(e);
}

api_engine_opts api_engine_opts_default(void) {
    api_engine_opts o = {.max_batch = 16, .seq_mem_mb = 0};
    return o;
}

api_engine_opts api_engine_get_opts(const api_engine *e) {
    api_engine_opts o = e->opts;
    o.seq_mem_mb = (double)e->seq_budget / (1024.0 * 1024.0);
    return o;
}

/* Half of what is free for sequence state: the device's free memory after the weights, or the
 * host's available memory. */
static size_t default_seq_budget(kern_backend *be) {
    size_t fr = 0, total = 0;
    if (kern_backend_mem_info(be, &fr, &total, NULL) == NVL_OK && fr > 0) return fr / 2;
    const long pages = sysconf(_SC_AVPHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    if (pages > 0 && psz > 0) return (size_t)pages * (size_t)psz / 2;
    return (size_t)4 << 30;
}

nvl_status api_engine_open(api_engine **out, const char *dir, nvl_err *err) {
    api_engine_opts o = api_engine_opts_default();
    o.max_batch = 1;
    return api_engine_open_with(out, dir, &o, err);
}

static nvl_status engine_open(api_engine **out, const char *dir, const api_engine_opts *opts, int on_cpu, int *auto_device,
                              nvl_err *err);

/* With the device chosen by auto (NVL_BACKEND unset or auto), a model that does not fit there
 * (the weights, or the caches and workspaces after them: NVL_ERR_NOMEM) is loaded again on the
 * CPU, with a warning that says why; NVL_BACKEND=cuda keeps it an error. */
nvl_status api_engine_open_with(api_engine **out, const char *dir, const api_engine_opts *opts, nvl_err *err) {
    int auto_device = 0;
    nvl_status st = engine_open(out, dir, opts, 0, &auto_device, err);
    if (kern_backend_fall_back_to_cpu(auto_device, st, dir, err)) st = engine_open(out, dir, opts, 1, NULL, err);
    return st;
}

static nvl_status engine_open(api_engine **out, const char *dir, const api_engine_opts *opts, int on_cpu, int *auto_device,
                              nvl_err *err) {
    *out = NULL;
    const api_engine_opts o = opts ? *opts : api_engine_opts_default();
    if (o.max_batch < 1 || o.max_batch > 256)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "max_batch must be 1..256 (got %d)", o.max_batch);
    if (o.media_threads < -1 || o.media_threads > MEDIA_THREADS_MAX)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "media_threads must be -1 (none), 0 (the default, %d) or 1..%d (got %d)",
                           MEDIA_THREADS, MEDIA_THREADS_MAX, o.media_threads);
    if (o.vision_batch < 0 || o.vision_batch > VISION_BATCH)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "vision_batch must be 0 (the backend's default) or 1..%d tiles (got %d)",
                           VISION_BATCH, o.vision_batch);
    if (o.prefill_chunk != 0 && (o.prefill_chunk < 16 || o.prefill_chunk > 65536))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "prefill_chunk must be 0 (the backend's default) or 16..65536 tokens "
                           "(got %d)", o.prefill_chunk);
    if (o.video_ahead < 0 || o.video_ahead > 4096)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "video_ahead must be 0 (automatic) or 1..4096 frames (got %d)", o.video_ahead);
    if (!(o.seq_mem_mb >= 0) || o.seq_mem_mb > 1048576.0 * 64)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "the sequence memory budget must be 0 (automatic) or a positive number "
                                                     "of MiB (got %g)", o.seq_mem_mb);
    api_engine *e = nvl_calloc(1, sizeof *e);
    if (!e) return nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->mmu, NULL);
    pthread_cond_init(&e->mcv, NULL);
    e->opts = o;
    e->next_id = 1;
    nvl_status st;
    if ((st = on_cpu ? kern_backend_init(&e->be, "cpu", err) : kern_backend_init_models(&e->be, err)) != NVL_OK) {
        api_engine_close(e);
        return st;
    }
    if (auto_device) *auto_device = kern_backend_auto_device(e->be);
    const int cpu = kern_backend_kind_of(e->be) == KERN_BACKEND_KIND_CPU; /* batch sizes by backend */
    e->vision_batch = o.vision_batch > 0 ? o.vision_batch : cpu ? 8 : VISION_BATCH;
    e->video_ahead = o.video_ahead > 0 ? o.video_ahead : 2 * e->vision_batch;
    e->prefill_chunk = o.prefill_chunk > 0 ? o.prefill_chunk : cpu ? PREFILL_CHUNK : PREFILL_CHUNK_DEVICE;
    e->prefill_budget = cpu ? PREFILL_BUDGET : PREFILL_BUDGET_DEVICE;
    if (e->prefill_budget < e->prefill_chunk) e->prefill_budget = e->prefill_chunk;
    if ((st = nvl_checkpoint_open(&e->ck, dir, err)) != NVL_OK ||
        (st = llm_model_load(&e->lm, e->ck, e->be, dir, NULL, err)) != NVL_OK ||
        (st = vision_model_load(&e->vm, e->ck, e->be, dir, err)) != NVL_OK ||
        (st = tokred_projector_bind(&e->proj, e->ck, e->be, 4 * vision_model_width(e->vm), llm_model_hparams(e->lm)->n_embd, err)) != NVL_OK ||
        (st = llm_cache_init(&e->cache, e->lm, o.max_batch + KEEP_MAX, 256, err)) != NVL_OK ||
        (st = llm_workspace_init(&e->ws, e->lm, o.max_batch + e->prefill_budget, LLM_SSM_MODE_AUTO, err)) != NVL_OK ||
        (st = llm_tokenizer_load(&e->tok, dir, err)) != NVL_OK || (st = llm_tokenizer_check_vl(e->tok, err)) != NVL_OK ||
        (st = llm_chat_template_load(dir, &e->chat_template, &e->special, err)) != NVL_OK) {
        api_engine_close(e);
        return st;
    }
    if (!(e->seqs = nvl_calloc((size_t)o.max_batch, sizeof *e->seqs))) {
        api_engine_close(e);
        return nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
    }
    /* vision rows stay in the backend's memory, in the projector's dtype (rows of the LM width) */
    e->row_dtype = e->proj.act;
    e->row_bytes = kern_act_bytes(e->be, e->row_dtype, e->proj.out);
    const int64_t g = vision_model_grid(e->vm), rows_per_tile = (g / 2) * (g / 2);
    if ((st = kern_buffer_alloc(e->be, (size_t)e->prefill_budget * e->row_bytes, &e->embd, err)) != NVL_OK ||
        (st = kern_buffer_alloc(e->be, (size_t)(e->vision_batch * rows_per_tile) * e->row_bytes, &e->vis_rows, err)) !=
            NVL_OK) {
        nvl_err_prefix(err, "engine: vision rows");
        api_engine_close(e);
        return st;
    }
    if ((st = llm_tokenizer_check_vocab(e->tok, llm_model_hparams(e->lm)->n_vocab, dir, err)) != NVL_OK) {
        api_engine_close(e);
        return st;
    }
    e->think_end = llm_tokenizer_token_id(e->tok, "</think>");
    e->n_stop = llm_chat_stop_ids(e->lm, e->tok, e->stop, (int)(sizeof e->stop / sizeof e->stop[0]));
    { /* the frame separator as the prompt builder writes it (llm/text/chat.c), at a long frame
       * number and time, with this checkpoint's tokenizer: the per-frame part of the budget bound */
        static const char probe[] = "\nFrame 1000 sampled at 10000.00 seconds: ";
        int32_t *ids = NULL;
        int64_t n = 0;
        e->frame_sep_tokens = 16;
        st = llm_tokenizer_encode(e->tok, probe, sizeof probe - 1, &ids, &n, err);
        if (st == NVL_OK && n > 16) e->frame_sep_tokens = n;
        nvl_free(ids);
        if (st == NVL_OK && e->chat_template) st = check_template(e, dir, err);
        if (st != NVL_OK) {
            api_engine_close(e);
            return st;
        }
    }
    const char *km = getenv("NANOVL_KEEP_MB");
    e->keep_cap = (size_t)(km && *km && atof(km) >= 0 ? atof(km) : 4096.0) * ((size_t)1 << 20); /* (empty: unset) */
    e->seq_budget = o.seq_mem_mb > 0 ? (size_t)(o.seq_mem_mb * 1024.0 * 1024.0) : default_seq_budget(e->be);
    /* the media threads (opts.media_threads; without any, or where none could start, files are read
     * and frames decoded inline, one request per turn) */
    const int n_thr = o.media_threads < 0 ? 0 : o.media_threads > 0 ? o.media_threads : MEDIA_THREADS;
    for (int i = 0; i < n_thr; i++)
        if (pthread_create(&e->media_thr[e->media_thr_ok], NULL, engine_media_main, e) == 0) e->media_thr_ok++;
    *out = e;
    return NVL_OK;
}

char *engine_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = nvl_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

char *engine_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? nvl_malloc((size_t)n + 1) : NULL;
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* The caller's flag is set from other threads (a server's reader, a signal handler): read atomically. */
int engine_flag_set(volatile int *f) { return f && __atomic_load_n(f, __ATOMIC_RELAXED); }

int engine_cancelled(const request *rq) { return rq->cancel_seen || engine_flag_set(rq->cb->cancel); }

void engine_progress(const request *rq, enum api_stage st, const char *item, int64_t done, int64_t total, double t0) {
    if (!rq->cb->on_progress) return;
    api_progress pr = {st, item, done, total, nvl_now() - t0};
    rq->cb->on_progress(&pr, rq->cb->user);
}

void engine_notice(request *rq, const char *msg) {
    api_ask_result *r = rq->res;
    if (!msg) return;
    if (r->notice) {
        char *j = engine_printf("%s; %s", r->notice, msg);
        if (j) {
            nvl_free(r->notice);
            r->notice = j;
        }
    } else {
        r->notice = engine_strdup(msg);
    }
    if (rq->cb->on_notice) rq->cb->on_notice(msg, rq->cb->user);
}

void engine_fail(request *rq, nvl_status st, const nvl_err *err) {
    if (rq->state == RQ_FINISHED) return;
    rq->state = RQ_FINISHED;
    pthread_mutex_lock(&rq->e->mmu); /* a media thread decoding its video stops at the next frame */
    rq->media_abort = 1;
    pthread_mutex_unlock(&rq->e->mmu);
    rq->st = st;
    if (err && err != &rq->err) rq->err = *err;
}

// ---------------------------------------------------------------------------
// Submit, cancel

nvl_status api_engine_submit(api_engine *e, const api_message *msgs, int n_msgs, const api_ask_params *p,
                             const api_callbacks *cb, api_ask_result *res, uint64_t *id, nvl_err *err) {
    return engine_submit(e, msgs, n_msgs, p, cb, res, id, NULL, err);
}

nvl_status engine_submit(api_engine *e, const api_message *msgs, int n_msgs, const api_ask_params *pp,
                         const api_callbacks *cb, api_ask_result *res, uint64_t *id, engine_waiter *w, nvl_err *err) {
    if (id) *id = 0;
    memset(res, 0, sizeof *res);
    const api_ask_params p = pp ? *pp : api_ask_params_default();
    if (n_msgs < 1 || !msgs) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "engine: no messages");
    if (p.max_tokens < 1)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "max_tokens must be at least 1 (got %lld)", (long long)p.max_tokens);
    if (p.max_tiles < 0 || p.max_tiles > 12)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "max_tiles must be 1..12 (got %d)", p.max_tiles);
    request *rq = nvl_calloc(1, sizeof *rq);
    if (!rq) return nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
    rq->e = e;
    rq->msgs = msgs;
    rq->n_msgs = n_msgs;
    rq->pv = p;
    rq->p = &rq->pv;
    if (cb) rq->cbv = *cb;
    rq->cb = &rq->cbv;
    rq->res = res;
    res->backend = kern_backend_name(e->be);
    rq->waiter = w;
    rq->slot = -1;
    rq->t_start = nvl_now();
    pthread_mutex_lock(&e->mu);
    rq->id = e->next_id++;
    if (e->queue_tail) e->queue_tail->next = rq;
    else e->queue = rq;
    e->queue_tail = rq;
    e->n_queued++;
    pthread_mutex_unlock(&e->mu);
    if (id) *id = rq->id;
    return NVL_OK;
}

void api_engine_cancel(api_engine *e, uint64_t id) {
    pthread_mutex_lock(&e->mu);
    for (request *r = e->queue; r; r = r->next)
        if (r->id == id) r->cancel_req = 1;
    for (request *r = e->live; r; r = r->next)
        if (r->id == id) r->cancel_req = 1;
    pthread_mutex_unlock(&e->mu);
}

int api_engine_pending(api_engine *e) {
    pthread_mutex_lock(&e->mu);
    const int n = e->n_queued + e->n_live;
    pthread_mutex_unlock(&e->mu);
    return n;
}

// ---------------------------------------------------------------------------
// Stages the scheduler runs: media (engine_media.c), vision (engine_vision.c), prompt and kept
// prefixes (engine_prompt.c), generation (engine_gen.c); prefill here

/* The whole prompt is in the slot: the first token is sampled from its logits. */
void engine_prefill_done(request *rq) {
    api_engine *e = rq->e;
    api_ask_result *res = rq->res;
    const int64_t V = llm_model_hparams(e->lm)->n_vocab;
    res->t_prefill = nvl_now() - rq->t_prefill0;
    nvl_free(rq->rowp);
    nvl_free(rq->mask);
    rq->rowp = NULL;
    rq->mask = NULL;
    for (int i = 0; i < rq->n_src; i++) { /* the vision rows are in the slot now: their memory goes */
        kern_buffer_free(e->be, rq->src[i].rows);
        rq->src[i].rows = NULL;
    }
    memcpy(res->first_logits, rq->logits, (size_t)V * sizeof(float));
    if (llm_logits_check_finite(rq->logits, V, &rq->err) != NVL_OK) { /* an answer drawn from them would be noise */
        engine_fail(rq, NVL_ERR_CONFIG, NULL);
        return;
    }
    nvl_status st = llm_sampler_init(&rq->smp, V, &rq->p->sampler, &rq->err);
    if (st != NVL_OK) {
        engine_fail(rq, st, NULL);
        return;
    }
    rq->state = RQ_DECODE;
    rq->t_gen0 = nvl_now();
    engine_gen_init(rq);
    engine_gen_token(rq, llm_sampler_sample(rq->smp, rq->logits), rq->logits);
}

// ---------------------------------------------------------------------------
// The scheduler's turn

/* Where rq's next prefill chunk ends: chunks are cut every prefill_chunk tokens from the start
 * of the segment (0, or P after a kept or parked prefix), as llm_prefill cuts them, so a request
 * is fed the same chunks whatever runs beside it. */
static int64_t chunk_end(const request *rq) {
    const int64_t end = rq->keep && rq->fed < rq->P ? rq->P : rq->prompt.n;
    const int64_t pc = rq->e->prefill_chunk;
    const int64_t c = rq->seg0 + ((rq->fed - rq->seg0) / pc + 1) * pc;
    return c < end ? c : end;
}

/* One forward step: every decoding request's token, then prefill chunks within prefill_budget.
 * Returns the sequences stepped. */
static int forward_turn(api_engine *e) {
    llm_batch_seq *sq = e->seqs;
    request *who[256];
    nvl_tensor embd_t[256]; /* each prefill chunk's slice of e->embd */
    int n = 0;
    for (request *rq = e->live; rq; rq = rq->next)
        if (rq->state == RQ_DECODE) {
            /* greedy decoding takes the argmax from the backend: no logits cross to the host (a device
               returns 4 bytes, not n_vocab floats); sampling needs the logits */
            const int greedy = rq->p->sampler.temperature <= 0.0f;
            sq[n] = (llm_batch_seq){.slot = rq->slot, .tokens = &rq->next_tok, .n = 1, .logits = LLM_LOGITS_LAST,
                                    .out = greedy ? NULL : rq->logits, .argmax = greedy ? &rq->greedy_tok : NULL};
            who[n++] = rq;
        }
    const int n_decode = n;
    int64_t budget = e->prefill_budget;
    for (request *rq = e->live; rq && budget > 0; rq = rq->next) {
        if (rq->state != RQ_PREFILL) continue;
        const int64_t end = chunk_end(rq), k = end - rq->fed;
        if (k > budget) continue; /* a whole chunk or none: its boundaries never depend on the load */
        const int last = end == rq->prompt.n || (rq->keep && end == rq->P);
        /* this chunk's slice of the step's rows, its vision rows gathered into it on the backend
           (a run of rows consecutive in their source one copy; rows where the mask is 0 are not read) */
        char *embd = (char *)e->embd + (size_t)(e->prefill_budget - budget) * e->row_bytes;
        const char *const *rp = rq->rowp + rq->fed;
        nvl_err er = {0};
        nvl_status st = NVL_OK;
        for (int64_t r = 0; r < k && st == NVL_OK;) {
            if (!rp[r]) {
                r++;
                continue;
            }
            int64_t r1 = r + 1;
            while (r1 < k && rp[r1] == rp[r1 - 1] + e->row_bytes) r1++;
            st = kern_copy_within(e->be, embd + (size_t)r * e->row_bytes, rp[r], (size_t)(r1 - r) * e->row_bytes, &er);
            r = r1;
        }
        if (st != NVL_OK) {
            engine_fail(rq, st, &er);
            continue;
        }
        embd_t[n] = kern_act(e->be, e->row_dtype, 2, (int64_t[]){k, e->proj.out}, embd);
        sq[n] = (llm_batch_seq){.slot = rq->slot, .tokens = rq->prompt.ids + rq->fed, .embd_t = &embd_t[n],
                                .embd_mask = rq->mask + rq->fed, .n = k, .logits = last ? LLM_LOGITS_LAST : LLM_LOGITS_NONE,
                                .out = rq->logits};
        who[n++] = rq;
        budget -= k;
    }
    if (!n) return 0;
    nvl_err er = {0};
    nvl_status st = llm_step(e->ws, e->cache, sq, n, &er);
    if (st != NVL_OK) { /* the slots of this step are undefined: every request in it ends */
        for (int i = 0; i < n; i++) engine_fail(who[i], st, &er);
        return n;
    }
    for (int i = n_decode; i < n; i++) { /* prefill chunks */
        request *rq = who[i];
        rq->fed += sq[i].n;
        if (rq->keep && rq->fed == rq->P) {
            engine_park_prefix(rq);
            rq->keep = 0;
            rq->seg0 = rq->P;
        }
        if (rq->fed == rq->prompt.n) engine_prefill_done(rq);
        else engine_progress(rq, API_STAGE_PREFILL, NULL, rq->fed, rq->prompt.n, rq->t_prefill0);
    }
    /* the sampled rows drawn in parallel (each request has its own sampler and RNG, so the ids do
     * not depend on the split; a draw is ~1-2 ms on a 131K vocabulary, a device's decode step a
     * few), then every token taken in order */
    int32_t drawn[256];
    int n_sampled = 0;
    const int64_t V = llm_model_hparams(e->lm)->n_vocab;
    for (int i = 0; i < n_decode; i++) n_sampled += !sq[i].argmax;
#pragma omp parallel for schedule(dynamic, 1) if (n_sampled > 1)
    for (int i = 0; i < n_decode; i++) { /* (logits that are not finite: -1, the request fails below) */
        if (sq[i].argmax) drawn[i] = who[i]->greedy_tok; /* the same id llm_sampler's greedy rule picks, or -1 */
        else {
            nvl_err ef = {0};
            drawn[i] = llm_logits_check_finite_at(who[i]->logits, V, 1, &ef) == NVL_OK
                           ? llm_sampler_sample(who[i]->smp, who[i]->logits) : -1;
        }
    }
    for (int i = 0; i < n_decode; i++) {
        if (drawn[i] < 0) { /* a NaN or an overflow reached the logits mid-answer: each id after it was 0 (a review) */
            nvl_err ef = {0};
            engine_fail(who[i], llm_logits_check_finite_at(sq[i].argmax ? NULL : who[i]->logits, V, who[i]->res->n_ids, &ef),
                        &ef);
            continue;
        }
        engine_gen_token(who[i], drawn[i], sq[i].argmax ? NULL : who[i]->logits);
    }
    return n;
}

/* rq leaves: its slot and memory go, its caller hears (on_done). */
static void finish(api_engine *e, request *rq) {
    api_ask_result *res = rq->res;
    if (rq->t_gen0 > 0) engine_gen_finish(rq);
    else if (rq->st == NVL_ERR_CANCELLED) res->finish_reason = "cancelled";
    if (rq->slot >= 0) llm_seq_free(e->cache, rq->slot);
    e->seq_reserved -= rq->reserved;
    llm_sampler_free(rq->smp);
    nvl_free(rq->logits);
    nvl_free(rq->rowp);
    nvl_free(rq->mask);
    llm_prompt_free(&rq->prompt);
    engine_sources_free(rq);
    engine_gen_free(rq);
    if (rq->st != NVL_OK && rq->st != NVL_ERR_CANCELLED) api_ask_result_free(res);
    if (rq->st == NVL_ERR_CANCELLED && !rq->err.msg[0]) snprintf(rq->err.msg, sizeof rq->err.msg, "cancelled");
    if (rq->waiter) {
        rq->waiter->done = 1;
        rq->waiter->st = rq->st;
        rq->waiter->err = rq->err;
    }
    const api_callbacks cb = rq->cbv;
    const nvl_status st = rq->st;
    nvl_err err = rq->err;
    nvl_free(rq);
    if (cb.on_done) cb.on_done(st, err.msg, cb.done_user ? cb.done_user : cb.user);
}

int api_engine_step(api_engine *e) {
    if (e->stepping) return api_engine_pending(e); /* a callback stepping its own engine: not reentrant */
    e->stepping = 1;
    request *ended = NULL; /* queued requests cancelled before they ran */
    pthread_mutex_lock(&e->mu);
    for (request **pp = &e->queue; *pp;) {
        request *rq = *pp;
        if (rq->cancel_req || engine_flag_set(rq->cb->cancel)) {
            *pp = rq->next;
            e->n_queued--;
            rq->next = ended;
            ended = rq;
        } else {
            pp = &rq->next;
        }
    }
    e->queue_tail = NULL;
    for (request *rq = e->queue; rq; rq = rq->next) e->queue_tail = rq;
    request **tail = &e->live;
    while (*tail) tail = &(*tail)->next;
    while (e->queue && e->n_live < e->opts.max_batch) { /* admitted in submission order */
        request *rq = e->queue;
        e->queue = rq->next;
        if (!e->queue) e->queue_tail = NULL;
        e->n_queued--;
        rq->next = NULL;
        rq->state = RQ_MEDIA;
        *tail = rq;
        tail = &rq->next;
        e->n_live++;
    }
    for (request *rq = e->live; rq; rq = rq->next) rq->cancel_seen |= rq->cancel_req;
    pthread_mutex_unlock(&e->mu);
    while (ended) {
        request *rq = ended;
        ended = rq->next;
        rq->st = nvl_err_set(&rq->err, NVL_ERR_CANCELLED, "cancelled");
        finish(e, rq);
    }
    for (request *rq = e->live; rq; rq = rq->next)
        if (rq->state != RQ_FINISHED && rq->state != RQ_MEDIA_WAIT && engine_cancelled(rq)) { /* the media thread
                                                                                           checks for itself */
            if (rq->state == RQ_DECODE)
                nvl_err_set(&rq->err, NVL_ERR_CANCELLED, "generation cancelled after %lld tokens", (long long)rq->res->n_ids);
            else
                nvl_err_set(&rq->err, NVL_ERR_CANCELLED, rq->state == RQ_PREFILL ? "cancelled during prefill" : "cancelled");
            engine_fail(rq, NVL_ERR_CANCELLED, NULL);
        }
    for (request *rq = e->live; rq; rq = rq->next) { /* files read on the media thread: the steps go on */
        if (rq->state == RQ_MEDIA_WAIT) {
            pthread_mutex_lock(&e->mmu);
            const int busy = rq->media_busy;
            pthread_mutex_unlock(&e->mmu);
            if (!busy) engine_media_stage(rq);
        } else if (rq->state == RQ_MEDIA && e->media_thr_ok && engine_has_media(rq)) {
            rq->state = RQ_MEDIA_WAIT;
            engine_queue_job(e, rq, -1);
        }
    }
    engine_media_grow(e);
    int inline_reads = 0; /* without media threads: one request's files per turn, inline; text at once */
    for (request *rq = e->live; rq; rq = rq->next)
        if (rq->state == RQ_MEDIA && (!engine_has_media(rq) || !inline_reads++)) {
            engine_media_read(rq);
            engine_media_stage(rq);
        }
    for (request *rq = e->live; rq; rq = rq->next) /* in submission order: a leader moves on first */
        if (rq->state == RQ_PREFIX_WAIT) engine_prefix_wait_stage(rq);
    const int tiles = engine_vision_turn(e);
    for (request *rq = e->live; rq; rq = rq->next)
        if (rq->state == RQ_PROMPT) engine_prompt_stage(rq);
    const int rows = forward_turn(e);
    if (!tiles && !rows) { /* only files being read (or tiles made): wait for one (or a cancel) */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&e->mmu);
        int any_busy = 0;
        for (request *rq = e->live; rq; rq = rq->next) any_busy |= rq->media_busy;
        if (any_busy) pthread_cond_timedwait(&e->mcv, &e->mmu, &ts);
        pthread_mutex_unlock(&e->mmu);
    }
    for (request **pp = &e->live; *pp;) { /* the ended leave (once no media thread works for them) */
        request *rq = *pp;
        pthread_mutex_lock(&e->mmu);
        const int busy = rq->media_busy;
        pthread_mutex_unlock(&e->mmu);
        if (rq->state != RQ_FINISHED || busy) {
            pp = &rq->next;
            continue;
        }
        pthread_mutex_lock(&e->mu);
        *pp = rq->next;
        e->n_live--;
        pthread_mutex_unlock(&e->mu);
        finish(e, rq);
    }
    e->stepping = 0;
    return api_engine_pending(e);
}

// ---------------------------------------------------------------------------
// Blocking wrappers

nvl_status api_engine_run(api_engine *e, const api_message *msgs, int n_msgs, const api_ask_params *p,
                          const api_callbacks *cb, api_ask_result *res, nvl_err *err) {
    if (e->stepping) /* from a callback of a step: the step would never come back to it */
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "engine: a blocking run from inside a step's callback");
    engine_waiter w = {0};
    nvl_status st = engine_submit(e, msgs, n_msgs, p, cb, res, NULL, &w, err);
    if (st != NVL_OK) return st;
    while (!w.done) api_engine_step(e);
    if (w.st != NVL_OK && err) *err = w.err;
    return w.st;
}

nvl_status api_engine_ask(api_engine *e, const char *const *files, int n_files, const char *question,
                          const api_ask_params *p, llm_token_fn on_token, void *user, api_ask_result *res,
                          nvl_err *err) {
    api_part *parts = nvl_calloc((size_t)n_files + 1, sizeof *parts);
    if (!parts) return nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
    for (int i = 0; i < n_files; i++) {
        parts[i].kind = API_PART_MEDIA;
        parts[i].media.path = files[i];
    }
    parts[n_files].kind = API_PART_TEXT;
    parts[n_files].text = question;
    api_message msg = {"user", parts, n_files + 1};
    api_callbacks cb = {.on_token = on_token, .user = user};
    nvl_status st = api_engine_run(e, &msg, 1, p, &cb, res, err);
    nvl_free(parts);
    return st;
}
