/* The engine: loads a whole VL checkpoint (LM, RADIO, mlp1, tokenizer, generation config) and
 * answers a conversation about files: media -> vision -> tokenreduce -> prompt -> llm.
 *
 * A request goes through five steps:
 *   1. sources: every media part becomes one or more sources (an image, a PDF page, a video),
 *      each with a key naming exactly what its vision rows depend on;
 *   2. budget: the tiles per image are lowered until the prompt fits the context;
 *   3. vision: rows for each source, unless the kept prefix already holds that source;
 *   4. prompt: chat render + media expansion; prefill restored from the kept prefix when the
 *      tokens and sources agree, else fed in slices (progress, cancellation) and kept;
 *   5. generation, split into reasoning and answer at </think>. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "base/alloc.h"
#include "base/log.h"
#include "chat.h"
#include "llm.h"
#include "media.h"
#include "tokenizer.h"
#include "tokenreduce.h"
#include "vision.h"
#include "wire.h"

#define DEFAULT_MAX_CONTEXT 131072 /* model.md §2: trained context when the config is silent */
#define PREFILL_SLICE 512          /* tokens per llm_prefill call: progress and cancellation */
#define VIDEO_SLICE 8              /* frames per vision call */

/* What the previous request left: its prompt up to the end of its last media span, the
 * sources in it (key + layout, no rows) and the LM state there. */
typedef struct kept_source {
    char *key;
    int n_tiles, n_frames;
    double *ts;
    int *kept;
    int64_t n_rows;
} kept_source;

#define KEEP_MAX 4 /* prefixes kept: a few documents questioned in turn (server clients) */

typedef struct kept_prefix {
    int32_t *ids; /* the prompt up to the end of its last media span */
    int64_t n;
    kept_source *src;
    int n_src;
    int slot;      /* the parked slot of the engine's cache holding the LM state there */
    float *logits; /* (n_vocab) the logits after the prefix */
    uint64_t used; /* last use (engine tick) */
} kept_prefix;

struct api_engine {
    kern_backend *be;   /* one backend for the three model parts */
    nvl_checkpoint *ck; /* the checkpoint, opened once; every weight views into it */
    llm_model *lm;
    vision_model *vm;
    llm_cache *cache;   /* sequence slots: the running request's and the parked prefixes' */
    tokred_projector proj;
    llm_tokenizer *tok;
    char *chat_template;     /* the checkpoint's Jinja template, or NULL (native Nano V2 rendering) */
    struct cJSON *special;   /* named special tokens for the template */
    int32_t think_end; /* "</think>" */
    int64_t frame_sep_tokens; /* tokens of a long "\nFrame N sampled at S seconds: " (budget bound) */
    /* the kept prefixes, most recently used first to be reused */
    kept_prefix kp[KEEP_MAX];
    int n_kp;
    uint64_t tick;
    size_t keep_cap; /* bytes of kept state at most (NANOVL_KEEP_MB, default 4096) */
};

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
    memset(r, 0, sizeof *r);
}

static void kept_free(api_engine *e, kept_prefix *k) {
    for (int i = 0; i < k->n_src; i++) {
        nvl_free(k->src[i].key);
        nvl_free(k->src[i].ts);
        nvl_free(k->src[i].kept);
    }
    nvl_free(k->src);
    nvl_free(k->ids);
    nvl_free(k->logits);
    if (k->slot >= 0 && e->cache) llm_seq_free(e->cache, k->slot);
    memset(k, 0, sizeof *k);
}

static void kept_clear(api_engine *e) {
    for (int i = 0; i < e->n_kp; i++) kept_free(e, &e->kp[i]);
    e->n_kp = 0;
}

static size_t kept_bytes(const api_engine *e, const kept_prefix *k) {
    return (k->slot >= 0 && k->logits ? llm_seq_bytes(e->cache, k->slot) : 0) + (size_t)k->n * sizeof(int32_t) +
           (size_t)llm_model_hparams(e->lm)->n_vocab * sizeof(float);
}

/* Drops the least recently used prefix; returns the bytes it held. */
static size_t kept_evict(api_engine *e) {
    if (!e->n_kp) return 0;
    int lru = 0;
    for (int i = 1; i < e->n_kp; i++)
        if (e->kp[i].used < e->kp[lru].used) lru = i;
    const size_t freed = kept_bytes(e, &e->kp[lru]);
    kept_free(e, &e->kp[lru]);
    e->kp[lru] = e->kp[--e->n_kp];
    memset(&e->kp[e->n_kp], 0, sizeof e->kp[e->n_kp]);
    return freed;
}

void api_engine_forget(api_engine *e) { kept_clear(e); }

void api_engine_close(api_engine *e) {
    if (!e) return;
    kept_clear(e);
    llm_cache_free(e->cache);
    llm_model_free(e->lm);
    vision_model_free(e->vm);
    nvl_checkpoint_close(e->ck);
    kern_backend_free(e->be);
    llm_tokenizer_free(e->tok);
    nvl_free(e->chat_template);
    cJSON_Delete(e->special);
    nvl_free(e);
}

int64_t api_engine_n_vocab(const api_engine *e) { return llm_model_hparams(e->lm)->n_vocab; }
const llm_tokenizer *api_engine_tokenizer(const api_engine *e) { return e->tok; }
int64_t api_engine_max_context(const api_engine *e) {
    const int64_t t = llm_model_hparams(e->lm)->n_ctx_train;
    return t > 0 ? t : DEFAULT_MAX_CONTEXT;
}

/* The checkpoint's chat template must render a probe conversation with one image marker and the
 * question; a template nanovl cannot interpret (or one that does not place media where the
 * prompt builder expects them) is set aside, with a warning, for the built-in Nano V2 format. */
static void check_template(api_engine *e, const char *dir) {
    llm_chat_part sys = {LLM_PART_TEXT, "You are helpful."};
    llm_chat_part parts[2] = {{LLM_PART_IMAGE, NULL}, {LLM_PART_TEXT, "What is the total?"}};
    llm_chat_message msgs[2] = {{"system", &sys, 1}, {"user", parts, 2}};
    llm_chat_options o = llm_chat_options_default();
    char *text = NULL;
    size_t len = 0;
    nvl_err err = {0};
    nvl_status st = llm_chat_render_template(e->chat_template, msgs, 2, &o, e->special, &text, &len, &err);
    const char *why = NULL;
    char buf[NVL_ERR_MSG_MAX + 64];
    if (st != NVL_OK) {
        snprintf(buf, sizeof buf, "%s", err.msg);
        why = buf;
    } else {
        const char *first = strstr(text, "<image>");
        if (!first || strstr(first + 7, "<image>")) why = "it does not render an image part as one <image> marker";
        else if (!strstr(text, "What is the total?")) why = "it does not render the question";
    }
    if (why) {
        NVL_LOG_WARN("%s: the checkpoint's chat template is not used (%s); prompts use nanovl's built-in Nemotron Nano "
                     "V2 format\n", dir, why);
        nvl_free(e->chat_template);
        e->chat_template = NULL;
    }
    nvl_free(text);
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

nvl_status api_engine_open(api_engine **out, const char *dir, nvl_err *err) {
    *out = NULL;
    api_engine *e = nvl_calloc(1, sizeof *e);
    if (!e) return nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
    nvl_status st;
    if ((st = kern_backend_init_models(&e->be, err)) != NVL_OK || (st = nvl_checkpoint_open(&e->ck, dir, err)) != NVL_OK ||
        (st = llm_model_load(&e->lm, e->ck, e->be, dir, NULL, err)) != NVL_OK ||
        (st = vision_model_load(&e->vm, e->ck, e->be, dir, err)) != NVL_OK ||
        (st = tokred_projector_bind(&e->proj, e->ck, e->be, 4 * vision_model_width(e->vm), llm_model_hparams(e->lm)->n_embd, err)) != NVL_OK ||
        (st = llm_cache_init(&e->cache, e->lm, 1 + KEEP_MAX, 256, err)) != NVL_OK ||
        (st = llm_tokenizer_load(&e->tok, dir, err)) != NVL_OK || (st = llm_tokenizer_check_vl(e->tok, err)) != NVL_OK ||
        (st = llm_chat_template_load(dir, &e->chat_template, &e->special, err)) != NVL_OK) {
        api_engine_close(e);
        return st;
    }
    if (llm_tokenizer_vocab_size(e->tok) > llm_model_hparams(e->lm)->n_vocab) {
        st = nvl_err_set(err, NVL_ERR_CONFIG, "%s: the tokenizer has %lld ids but the model's vocabulary %lld", dir,
                         (long long)llm_tokenizer_vocab_size(e->tok), (long long)llm_model_hparams(e->lm)->n_vocab);
        api_engine_close(e);
        return st;
    }
    e->think_end = llm_tokenizer_token_id(e->tok, "</think>");
    { /* the frame separator as the prompt builder writes it (llm/text/chat.c), at a long frame
       * number and time, with this checkpoint's tokenizer: the per-frame part of the budget bound */
        static const char probe[] = "\nFrame 1000 sampled at 10000.00 seconds: ";
        int32_t *ids = NULL;
        int64_t n = 0;
        e->frame_sep_tokens = 16;
        if (llm_tokenizer_encode(e->tok, probe, sizeof probe - 1, &ids, &n, NULL) == NVL_OK && n > 16) e->frame_sep_tokens = n;
        nvl_free(ids);
    }
    if (e->chat_template) check_template(e, dir);
    const char *km = getenv("NANOVL_KEEP_MB");
    e->keep_cap = (size_t)(km && atof(km) >= 0 ? atof(km) : 4096.0) * ((size_t)1 << 20);
    *out = e;
    return NVL_OK;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = nvl_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static char *xprintf(const char *fmt, ...) {
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

// ---------------------------------------------------------------------------
// Sources

/* One image (file or PDF page) or video of the prompt. */
typedef struct source {
    const char *name;   /* the media's label (not owned) */
    int is_video;
    int page;           /* 0-based PDF page, -1 otherwise */
    int pdf;            /* index into the request's open PDFs, -1 otherwise */
    const char *path;   /* file to read (the media's path or a temporary file; not owned) */
    media_image *img;   /* decoded image file (owned) */
    media_frames *frames; /* a video's sampled frames (owned; sampled with the media, so the budget counts
                             the frames the video has, not max_frames) */
    double w, h;        /* size in pixels as the tiler will see it (images, pages) */
    char *base_key;     /* what the rows depend on, without max_tiles */
    int msg, part;      /* where the media part stands */
    /* vision output */
    const kept_source *from_kept; /* layout from the kept prefix (rows computed only if needed) */
    float *rows;        /* (n_rows, C) */
    int64_t n_rows;
    int n_tiles, n_frames;
    double *ts;
    int *kept;
    char *key;          /* base_key + max_tiles */
} source;

typedef struct request {
    api_engine *e;
    const api_ask_params *p;
    const api_callbacks *cb;
    api_ask_result *res;
    source *src;
    int n_src, cap_src;
    media_pdf **pdfs;
    int n_pdfs;
    char **tmp; /* temporary files to unlink */
    int n_tmp;
} request;

static int cancelled(const request *rq) {
    return rq->cb && rq->cb->cancel && *rq->cb->cancel;
}

static void progress(const request *rq, enum api_stage st, const char *item, int64_t done, int64_t total, double t0) {
    if (!rq->cb || !rq->cb->on_progress) return;
    api_progress pr = {st, item, done, total, now() - t0};
    rq->cb->on_progress(&pr, rq->cb->user);
}

static source *new_source(request *rq, nvl_err *err) {
    if (rq->n_src == rq->cap_src) {
        int nc = rq->cap_src ? rq->cap_src * 2 : 8;
        source *ns = nvl_realloc(rq->src, (size_t)nc * sizeof *ns);
        if (!ns) {
            nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
            return NULL;
        }
        rq->src = ns;
        rq->cap_src = nc;
    }
    source *s = &rq->src[rq->n_src++];
    memset(s, 0, sizeof *s);
    s->page = -1;
    s->pdf = -1;
    return s;
}

static uint64_t fnv1a(const uint8_t *d, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ d[i]) * 1099511628211ull;
    return h;
}

/* The identity of a media's bytes: path + size + mtime, or a hash of inline bytes. */
static nvl_status media_identity(const api_media *m, char **out, nvl_err *err) {
    *out = NULL;
    if (m->path) {
        struct stat sb;
        if (stat(m->path, &sb) != 0)
            return nvl_err_set(err, errno == ENOENT ? NVL_ERR_NOT_FOUND : NVL_ERR_IO, "%s: %s", m->path, strerror(errno));
        char *rp = realpath(m->path, NULL);
        *out = xprintf("f:%s:%lld:%lld.%09ld", rp ? rp : m->path, (long long)sb.st_size, (long long)sb.st_mtim.tv_sec,
                       (long)sb.st_mtim.tv_nsec);
        free(rp);
    } else {
        *out = xprintf("b:%016llx:%zu", (unsigned long long)fnv1a(m->data, m->size), m->size);
    }
    return *out ? NVL_OK : nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
}

/* PDF and video readers take paths: bytes go through a private temporary file, removed with
 * the request. */
static nvl_status bytes_to_tmp(request *rq, const api_media *m, const char **path, nvl_err *err) {
    char **nt = nvl_realloc(rq->tmp, (size_t)(rq->n_tmp + 1) * sizeof *nt);
    if (!nt) return nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
    rq->tmp = nt;
    char *tmp = NULL;
    nvl_status st = api_bytes_to_tmp(m->data, m->size, m->name ? m->name : "bytes", &tmp, err);
    if (st != NVL_OK) return st;
    rq->tmp[rq->n_tmp++] = tmp;
    *path = tmp;
    return NVL_OK;
}

/* An error about a private temporary file names the media part instead (its name, or "bytes"):
 * every occurrence of the temporary path is replaced; the name is prefixed when absent. */
static void unname_tmp(nvl_err *err, const char *tmp, const char *name) {
    if (!err || !tmp || !*tmp || !strstr(err->msg, tmp)) return;
    char out[sizeof err->msg];
    size_t o = 0;
    const size_t lt = strlen(tmp), ln = strlen(name);
    for (const char *c = err->msg; *c && o + 1 < sizeof out;) {
        if (!strncmp(c, tmp, lt)) {
            size_t k = ln < sizeof out - 1 - o ? ln : sizeof out - 1 - o;
            memcpy(out + o, name, k);
            o += k;
            c += lt;
        } else {
            out[o++] = *c++;
        }
    }
    out[o] = '\0';
    memcpy(err->msg, out, o + 1);
}

static int is_tmp(const request *rq, const char *path) {
    for (int i = 0; path && i < rq->n_tmp; i++)
        if (rq->tmp[i] == path || !strcmp(rq->tmp[i], path)) return 1;
    return 0;
}

static media_video_params video_params(const api_ask_params *p) {
    media_video_params vp = media_video_params_default();
    vp.fps = p->fps > 0 ? p->fps : 2.0;
    vp.max_frames = p->max_frames > 0 ? p->max_frames : 128;
    return vp;
}

static nvl_status add_media(request *rq, const api_media *m, int msg, int part, nvl_err *err) {
    const api_ask_params *p = rq->p;
    const char *name = m->name ? m->name : m->path ? m->path : "bytes";
    if (!m->path && !m->data) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: a media part needs a path or bytes", name);
    enum media_kind k;
    nvl_status st;
    if (m->path) {
        if ((st = media_sniff_file(m->path, &k, err)) != NVL_OK) return st;
    } else {
        k = media_sniff(m->data, m->size);
    }
    if (k == MEDIA_KIND_UNKNOWN)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: not an image, PDF or video that nanovl recognises", name);
    char *id = NULL;
    if ((st = media_identity(m, &id, err)) != NVL_OK) return st;
    const char *path = m->path;
    if (k == MEDIA_KIND_PDF || k == MEDIA_KIND_VIDEO) {
        if (!path) st = bytes_to_tmp(rq, m, &path, err);
    }
    if (st != NVL_OK) goto out;
    if (k == MEDIA_KIND_PDF) {
        media_pdf **np = nvl_realloc(rq->pdfs, (size_t)(rq->n_pdfs + 1) * sizeof *np);
        if (!np) {
            st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
            goto out;
        }
        rq->pdfs = np;
        media_pdf *pdf = NULL;
        if ((st = media_pdf_open(&pdf, path, NULL, NULL, err)) != NVL_OK) goto out;
        rq->pdfs[rq->n_pdfs++] = pdf;
        int *pages = NULL, np_ = 0;
        st = media_pdf_select_pages(pdf, m->pages ? m->pages : p->pages, &pages, &np_, err);
        for (int i = 0; i < np_ && st == NVL_OK; i++) {
            source *s = new_source(rq, err);
            if (!s) { st = NVL_ERR_NOMEM; break; }
            s->name = name;
            s->path = path;
            s->pdf = rq->n_pdfs - 1;
            s->page = pages[i];
            s->msg = msg;
            s->part = part;
            double wpt = 0, hpt = 0;
            if ((st = media_pdf_page_size(pdf, pages[i], &wpt, &hpt, err)) != NVL_OK) break;
            if (p->dpi > 0) {
                s->w = wpt * p->dpi / 72.0;
                s->h = hpt * p->dpi / 72.0;
            } else {
                const double ls = p->long_side > 0 ? p->long_side : MEDIA_PDF_DEFAULT_LONG_SIDE;
                const double sc = ls / (wpt > hpt ? wpt : hpt);
                s->w = wpt * sc;
                s->h = hpt * sc;
            }
            s->base_key = xprintf("%s:p%d:dpi%g:ls%d", id, pages[i], p->dpi, p->long_side);
            if (!s->base_key) st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
        }
        nvl_free(pages);
    } else if (k == MEDIA_KIND_VIDEO) {
        source *s = new_source(rq, err);
        if (!s) { st = NVL_ERR_NOMEM; goto out; }
        s->name = name;
        s->path = path;
        s->is_video = 1;
        s->msg = msg;
        s->part = part;
        const double q = p->evs >= 0 ? p->evs : vision_model_config(rq->e->vm)->video_pruning_rate;
        s->base_key = xprintf("%s:v:fps%g:mf%d:q%g", id, p->fps, p->max_frames, q);
        if (!s->base_key) st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
        /* the frames are sampled now: the budget needs their number, timings_s.media their time */
        const media_video_params vp = video_params(p);
        if (st == NVL_OK && (st = media_video_sample(path, &vp, NULL, &s->frames, err)) != NVL_OK && m->path)
            nvl_err_prefix(err, "%s", name);
    } else {
        source *s = new_source(rq, err);
        if (!s) { st = NVL_ERR_NOMEM; goto out; }
        s->name = name;
        s->msg = msg;
        s->part = part;
        st = m->path ? media_decode_image_file(m->path, NULL, &s->img, err)
                     : media_decode_image(m->data, m->size, name, NULL, &s->img, err);
        if (st == NVL_OK) {
            s->w = s->img->width;
            s->h = s->img->height;
            s->base_key = xprintf("%s:i", id);
            if (!s->base_key) st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
        }
    }
out:
    if (st != NVL_OK && !m->path && path) unname_tmp(err, path, name);
    nvl_free(id);
    return st;
}

// ---------------------------------------------------------------------------
// Budget

static int tiles_for(const request *rq, const source *s, int max_tiles) {
    const vision_vl_config *vc = vision_model_config(rq->e->vm);
    int cols = 1, rows = 1;
    int w = (int)lround(s->w), h = (int)lround(s->h);
    vision_tile_grid(w > 0 ? w : 1, h > 0 ? h : 1, max_tiles, (int)vc->image_size, &cols, &rows);
    const int n = cols * rows;
    return n + (vc->use_thumbnail && n > 1 ? 1 : 0);
}

/* Frames a video source has (sampled with the media; max_frames only when unknown). */
static int video_frames(const request *rq, const source *s) {
    if (s->frames) return s->frames->n;
    if (s->n_frames > 0) return s->n_frames;
    return rq->p->max_frames > 0 ? rq->p->max_frames : 128;
}

/* Upper bound of the tokens a video's frames take (their rows are made later, in the vision
 * step): per frame the kept <image> tokens, <img> </img>, and the tokens of "\nFrame N sampled
 * at S seconds: " (at least 16). */
static int64_t video_frames_bound(const request *rq, const source *s) {
    const vision_vl_config *vc = vision_model_config(rq->e->vm);
    const int64_t G = vision_model_grid(rq->e->vm), Q = (G / 2) * (G / 2);
    const double q = rq->p->evs >= 0 ? rq->p->evs : vc->video_pruning_rate;
    return (int64_t)video_frames(rq, s) * ((int64_t)ceil((double)Q * (1.0 - q)) + 2 + rq->e->frame_sep_tokens);
}

static nvl_status build_prompt(request *rq, const api_message *msgs, int n_msgs, llm_prompt *prompt, int *think_on,
                               nvl_err *err);

/* The prompt's tokens with every image and page at max_tiles: the prompt builder itself runs on
 * the layouts (so the markers, <img> </img> and the newline each media part carries count as
 * they will be emitted); videos add video_frames_bound each (their "<video>\n" is in the prompt
 * with no frames). */
static nvl_status planned_tokens(request *rq, const api_message *msgs, int n_msgs, int max_tiles, int64_t *n,
                                 nvl_err *err) {
    int64_t extra = 0;
    for (int i = 0; i < rq->n_src; i++) {
        source *s = &rq->src[i];
        if (s->is_video) {
            extra += video_frames_bound(rq, s);
            s->n_frames = 0;
        } else
            s->n_tiles = tiles_for(rq, s, max_tiles);
    }
    llm_prompt pr;
    int think = 0;
    nvl_status st = build_prompt(rq, msgs, n_msgs, &pr, &think, err);
    for (int i = 0; i < rq->n_src; i++) rq->src[i].n_tiles = rq->src[i].n_frames = 0; /* set by the vision step */
    if (st != NVL_OK) return st;
    *n = pr.n + extra;
    llm_prompt_free(&pr);
    return NVL_OK;
}

/* "2 images, 3 PDF pages and 1 video of 240 frames" and the advice that fits those media. */
static void describe_media(const request *rq, char *what, size_t nw, char *advice, size_t na) {
    int n_img = 0, n_page = 0, n_vid = 0;
    long long frames = 0;
    for (int i = 0; i < rq->n_src; i++) {
        const source *s = &rq->src[i];
        if (s->is_video) {
            n_vid++;
            frames += video_frames(rq, s);
        } else if (s->pdf >= 0) {
            n_page++;
        } else {
            n_img++;
        }
    }
    char parts[3][96];
    int np = 0;
    if (n_img) snprintf(parts[np++], sizeof parts[0], "%d image%s", n_img, n_img == 1 ? "" : "s");
    if (n_page) snprintf(parts[np++], sizeof parts[0], "%d PDF page%s", n_page, n_page == 1 ? "" : "s");
    if (n_vid)
        snprintf(parts[np++], sizeof parts[0], "%d video%s of %lld sampled frames", n_vid, n_vid == 1 ? "" : "s", frames);
    snprintf(what, nw, "%s%s%s%s%s", np > 0 ? parts[0] : "no media", np > 1 ? (np > 2 ? ", " : " and ") : "",
             np > 1 ? parts[1] : "", np > 2 ? " and " : "", np > 2 ? parts[2] : "");
    size_t o = 0;
    advice[0] = '\0';
    if (n_vid)
        o += (size_t)snprintf(advice + o, na - o, "sample fewer frames (--max-frames / max_frames, --fps / fps) or prune "
                              "more of each (a higher --evs / evs), ");
    if (n_page && o < na)
        o += (size_t)snprintf(advice + o, na - o, "ask about fewer pages (--pages) or page by page (--per-page), ");
    if (n_img && o < na) o += (size_t)snprintf(advice + o, na - o, "send fewer images, ");
    if (o < na) snprintf(advice + o, na - o, "or lower --max-tokens");
}

// ---------------------------------------------------------------------------
// Vision

static nvl_status vision_image(request *rq, source *s, const media_image *img, int max_tiles, nvl_err *err) {
    api_engine *e = rq->e;
    const vision_vl_config *vc = vision_model_config(e->vm);
    float *tiles = NULL;
    int n = 0;
    nvl_status st = vision_make_tiles(img->rgb, img->width, img->height, img->stride, vc, max_tiles, &tiles, &n, NULL, NULL, err);
    if (st != NVL_OK) return st;
    const int64_t G = vision_model_grid(e->vm), Q = (G / 2) * (G / 2);
    s->n_tiles = n;
    s->n_rows = n * Q;
    s->rows = nvl_malloc((size_t)(s->n_rows * e->proj.out) * sizeof(float));
    st = s->rows ? tokred_embed_tiles(e->vm, &e->proj, tiles, n, s->rows, err) : nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
    nvl_free(tiles);
    return st;
}

static nvl_status vision_video(request *rq, source *s, const char *label, double t0, nvl_err *err) {
    api_engine *e = rq->e;
    const api_ask_params *p = rq->p;
    media_frames *f = s->frames; /* sampled with the media (add_media), or again for a kept prefix that did not apply */
    s->frames = NULL;
    nvl_status st = NVL_OK;
    if (!f) {
        const media_video_params vp = video_params(p);
        const double tm = now();
        st = media_video_sample(s->path, &vp, NULL, &f, err);
        rq->res->t_media += now() - tm;
    }
    if (st != NVL_OK) {
        if (is_tmp(rq, s->path)) unname_tmp(err, s->path, s->name);
        else if (s->path != s->name && strcmp(s->path, s->name)) nvl_err_prefix(err, "%s", s->name);
        return st;
    }
    const vision_vl_config *vc = vision_model_config(e->vm);
    const int64_t S = vc->image_size, G = vision_model_grid(e->vm), Q = (G / 2) * (G / 2), C = e->proj.out;
    const int n = f->n;
    float *tiles = nvl_malloc((size_t)VIDEO_SLICE * 3 * (size_t)(S * S) * sizeof(float));
    float *all = nvl_malloc((size_t)(n * Q * C) * sizeof(float));
    uint8_t *keep = nvl_malloc((size_t)(n * Q));
    s->n_frames = n;
    s->ts = nvl_malloc((size_t)n * sizeof(double));
    s->kept = nvl_malloc((size_t)n * sizeof(int));
    s->rows = nvl_malloc((size_t)(n * Q * C) * sizeof(float));
    if (!tiles || !all || !keep || !s->ts || !s->kept || !s->rows) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", s->name);
        goto done;
    }
    for (int i0 = 0; i0 < n && st == NVL_OK; i0 += VIDEO_SLICE) {
        const int nb = n - i0 < VIDEO_SLICE ? n - i0 : VIDEO_SLICE;
        for (int j = 0; j < nb && st == NVL_OK; j++) { /* one tile per frame, no thumbnail */
            const media_image *fr = f->frames[i0 + j];
            float *t = NULL;
            int nt = 0;
            st = vision_make_tiles(fr->rgb, fr->width, fr->height, fr->stride, vc, 1, &t, &nt, NULL, NULL, err);
            if (st == NVL_OK) memcpy(tiles + (size_t)j * 3 * S * S, t, (size_t)(3 * S * S) * sizeof(float));
            nvl_free(t);
            /* model.md §6.3: ts = frame_index * int(1000 / native_fps) / 1000 for a constant-rate clip;
             * where the frame's presentation time is more than half a frame from index / fps
             * (variable frame rate), that formula would misdate it: its real time, in ms */
            const double nominal = (double)fr->index / f->native_fps;
            if (f->native_fps > 0 && fabs(fr->timestamp - nominal) <= 0.5 / f->native_fps)
                s->ts[i0 + j] = (double)fr->index * (double)(int)(1000.0 / f->native_fps) / 1000.0;
            else
                s->ts[i0 + j] = floor(fr->timestamp * 1000.0 + 0.5) / 1000.0;
        }
        if (st == NVL_OK) st = tokred_embed_tiles(e->vm, &e->proj, tiles, nb, all + (size_t)(i0 * Q * C), err);
        progress(rq, API_STAGE_VISION, label, i0 + nb, n, t0);
        if (st == NVL_OK && cancelled(rq)) st = nvl_err_set(err, NVL_ERR_CANCELLED, "%s: cancelled", s->name);
    }
    if (st != NVL_OK) goto done;
    const double q = p->evs >= 0 ? p->evs : vc->video_pruning_rate;
    if ((st = tokred_evs_mask(e->be, all, n, Q, C, q, 0, keep, s->kept, err)) != NVL_OK) goto done;
    for (int64_t r = 0; r < n * Q; r++)
        if (keep[r]) memcpy(s->rows + (s->n_rows++) * C, all + r * C, (size_t)C * sizeof(float));
done:
    nvl_free(tiles);
    nvl_free(all);
    nvl_free(keep);
    media_frames_free(f);
    return st;
}

/* "file" or "file page N", for progress */
static void source_label(const source *s, char *label, size_t n) {
    if (s->page >= 0) snprintf(label, n, "%s page %d", s->name, s->page + 1);
    else snprintf(label, n, "%s", s->name);
}

static nvl_status vision_source(request *rq, source *s, int max_tiles, double t0, nvl_err *err) {
    char label[512];
    source_label(s, label, sizeof label);
    if (s->is_video) return vision_video(rq, s, label, t0, err);
    if (s->pdf >= 0) {
        media_image *img = NULL;
        const double tm = now();
        nvl_status st = media_pdf_render(rq->pdfs[s->pdf], s->page, rq->p->dpi, rq->p->long_side, &img, err);
        rq->res->t_media += now() - tm;
        if (st != NVL_OK && is_tmp(rq, s->path)) unname_tmp(err, s->path, s->name);
        if (st == NVL_OK) st = vision_image(rq, s, img, max_tiles, err);
        media_image_free(img);
        return st;
    }
    return vision_image(rq, s, s->img, max_tiles, err);
}

// ---------------------------------------------------------------------------
// Generation: streaming text split at </think>

typedef struct gen_state {
    request *rq;
    llm_detok detok;
    int reasoning;      /* inside the <think> part */
    const int32_t *stop;
    int n_stop;
    char *buf[2];       /* [0] answer, [1] reasoning */
    size_t n[2], cap[2];
    int oom;
    double t0;
    int64_t n_tok;
} gen_state;

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
    return cb && cb->on_text ? cb->on_text(s, n, w, cb->user) : 0;
}

static int gen_on_token(int32_t tok, const float *logits, void *user) {
    gen_state *g = user;
    const api_callbacks *cb = g->rq->cb;
    int stop = 0;
    g->n_tok++;
    if (cb && cb->on_token && cb->on_token(tok, logits, cb->user)) stop = 1;
    char out[4096];
    size_t n;
    for (int i = 0; i < g->n_stop; i++)
        if (tok == g->stop[i]) goto progress; /* the stop id's text is not part of the answer */
    if (g->reasoning && tok == g->rq->e->think_end) {
        n = llm_detok_flush(&g->detok, out, sizeof out);
        if (n && gen_emit(g, out, n)) stop = 1;
        g->reasoning = 0;
        goto progress;
    }
    n = llm_detok_feed(&g->detok, tok, out, sizeof out);
    if (n && gen_emit(g, out, n)) stop = 1;
progress:
    if ((g->n_tok & 7) == 0) progress(g->rq, API_STAGE_GENERATE, NULL, g->n_tok, 0, g->t0);
    return stop;
}

// ---------------------------------------------------------------------------

static void notice(request *rq, const char *msg) {
    api_ask_result *r = rq->res;
    if (!msg) return;
    if (r->notice) {
        char *j = xprintf("%s; %s", r->notice, msg);
        if (j) {
            nvl_free(r->notice);
            r->notice = j;
        }
    } else {
        r->notice = xstrdup(msg);
    }
    if (rq->cb && rq->cb->on_notice) rq->cb->on_notice(msg, rq->cb->user);
}

static void request_free(request *rq) {
    for (int i = 0; i < rq->n_src; i++) {
        source *s = &rq->src[i];
        media_image_free(s->img);
        media_frames_free(s->frames);
        nvl_free(s->base_key);
        nvl_free(s->key);
        nvl_free(s->rows);
        nvl_free(s->ts);
        nvl_free(s->kept);
    }
    nvl_free(rq->src);
    for (int i = 0; i < rq->n_pdfs; i++) media_pdf_close(rq->pdfs[i]);
    nvl_free(rq->pdfs);
    for (int i = 0; i < rq->n_tmp; i++) {
        unlink(rq->tmp[i]);
        nvl_free(rq->tmp[i]);
    }
    nvl_free(rq->tmp);
}

/* Renders the conversation with the sources' layouts. */
static nvl_status build_prompt(request *rq, const api_message *msgs, int n_msgs, llm_prompt *prompt, int *think_on,
                               nvl_err *err) {
    api_engine *e = rq->e;
    int n_parts = 0;
    for (int m = 0; m < n_msgs; m++) n_parts += msgs[m].n_parts + rq->n_src;
    llm_chat_message *cm = nvl_calloc((size_t)n_msgs + 1, sizeof *cm);
    llm_chat_part *parts = nvl_calloc((size_t)n_parts + 1, sizeof *parts);
    llm_media_layout *layout = nvl_calloc((size_t)rq->n_src + 1, sizeof *layout);
    char **owned = NULL; /* escaped texts */
    int n_owned = 0;
    char *text = NULL;
    size_t tl = 0;
    nvl_status st = NVL_OK;
    if (!cm || !parts || !layout) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
        goto done;
    }
    int np = 0, si = 0;
    for (int m = 0; m < n_msgs; m++) {
        cm[m].role = msgs[m].role;
        cm[m].parts = parts + np;
        for (int k = 0; k < msgs[m].n_parts; k++) {
            if (msgs[m].parts[k].kind == API_PART_TEXT) {
                parts[np].kind = LLM_PART_TEXT;
                parts[np++].text = msgs[m].parts[k].text ? msgs[m].parts[k].text : "";
                continue;
            }
            for (; si < rq->n_src && rq->src[si].msg == m && rq->src[si].part == k; si++) {
                const source *s = &rq->src[si];
                parts[np++].kind = s->is_video ? LLM_PART_VIDEO : LLM_PART_IMAGE;
                layout[si] = (llm_media_layout){.kind = s->is_video ? LLM_MEDIA_VIDEO : LLM_MEDIA_IMAGE,
                                                .n_tiles = s->n_tiles, .n_frames = s->n_frames, .ts = s->ts, .kept = s->kept};
            }
        }
        cm[m].n_parts = (int)(parts + np - cm[m].parts);
    }
    /* text from requests and files is plain text: markers and special tokens typed in it are
       escaped, so only nanovl places them (earlier answers cut after their last </think> first) */
    if ((st = llm_chat_escape_messages(e->tok, cm, n_msgs, &owned, &n_owned, err)) != NVL_OK) goto done;
    llm_chat_options co = llm_chat_options_default();
    co.think = rq->p->think;
    const int64_t G = vision_model_grid(e->vm);
    st = e->chat_template ? llm_chat_render_template(e->chat_template, cm, n_msgs, &co, e->special, &text, &tl, err)
                          : llm_chat_render(cm, n_msgs, &co, &text, &tl, err);
    if (st != NVL_OK) goto done;
    *think_on = tl >= 8 && !memcmp(text + tl - 8, "<think>\n", 8);
    st = llm_chat_tokenize(e->tok, text, tl, layout, rq->n_src, (int)((G / 2) * (G / 2)), prompt, err);
done:
    nvl_free(text);
    nvl_free(cm);
    for (int i = 0; i < n_owned; i++) nvl_free(owned[i]);
    nvl_free(owned);
    nvl_free(parts);
    nvl_free(layout);
    return st;
}

static nvl_status prefill_slices(request *rq, llm_context *ctx, const llm_prompt *pr, int64_t from, int64_t to,
                                 const float *embd, const uint8_t *mask, double t0, nvl_err *err) {
    const int64_t C = llm_model_hparams(rq->e->lm)->n_embd;
    for (int64_t i = from; i < to;) {
        const int64_t n = to - i < PREFILL_SLICE ? to - i : PREFILL_SLICE;
        nvl_status st = llm_prefill(ctx, pr->ids + i, n, embd + i * C, mask + i, err);
        if (st != NVL_OK) return st;
        i += n;
        progress(rq, API_STAGE_PREFILL, NULL, i, pr->n, t0);
        if (i < to && cancelled(rq)) return nvl_err_set(err, NVL_ERR_CANCELLED, "cancelled during prefill");
    }
    return NVL_OK;
}

nvl_status api_engine_run(api_engine *e, const api_message *msgs, int n_msgs, const api_ask_params *pp,
                          const api_callbacks *cb, api_ask_result *res, nvl_err *err) {
    memset(res, 0, sizeof *res);
    api_ask_params p = pp ? *pp : api_ask_params_default();
    const llm_hparams *hp = llm_model_hparams(e->lm);
    const vision_vl_config *vc = vision_model_config(e->vm);
    const int64_t C = hp->n_embd;
    request rq = {.e = e, .p = &p, .cb = cb, .res = res};
    llm_prompt prompt = {0};
    float *embd = NULL;
    uint8_t *mask = NULL;
    llm_context *ctx = NULL;
    gen_state g = {0};
    nvl_status st = NVL_OK;
    if (n_msgs < 1 || !msgs) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "engine: no messages");
    if (p.max_tokens < 1) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "max_tokens must be at least 1 (got %lld)", (long long)p.max_tokens);
    if (p.max_tiles < 0 || p.max_tiles > 12)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "max_tiles must be 1..12 (got %d)", p.max_tiles);
    const double t_start = now();

    /* 1. sources */
    for (int m = 0; m < n_msgs && st == NVL_OK; m++)
        for (int k = 0; k < msgs[m].n_parts && st == NVL_OK; k++) {
            if (msgs[m].parts[k].kind == API_PART_MEDIA) {
                st = add_media(&rq, &msgs[m].parts[k].media, m, k, err);
                progress(&rq, API_STAGE_MEDIA, msgs[m].parts[k].media.name ? msgs[m].parts[k].media.name : msgs[m].parts[k].media.path,
                         rq.n_src, 0, t_start);
            }
            if (st == NVL_OK && cancelled(&rq)) st = nvl_err_set(err, NVL_ERR_CANCELLED, "cancelled");
        }
    res->t_media = now() - t_start;
    if (st != NVL_OK) goto done;

    /* 2. budget: the text (rendered without media), the media at max_tiles, the answer */
    const int64_t budget = p.max_context > 0 ? p.max_context : api_engine_max_context(e);
    int mt = p.max_tiles > 0 ? p.max_tiles : (int)vc->max_num_tiles;
    if (rq.n_src > 0) { /* without media nothing can be lowered: the prompt check below decides */
        int think_tmp = 0;
        request text_only = rq;
        text_only.n_src = 0;
        if ((st = build_prompt(&text_only, msgs, n_msgs, &prompt, &think_tmp, err)) != NVL_OK) goto done;
        const int64_t text_tokens = prompt.n;
        llm_prompt_free(&prompt);
        /* the media's share: the whole prompt as the builder emits it at t tiles, less the text */
        int64_t at_mt = 0, at_t = 0, at_fit = 0;
        if ((st = planned_tokens(&rq, msgs, n_msgs, mt, &at_mt, err)) != NVL_OK) goto done;
        if (at_mt + p.max_tokens > budget) {
            int fit = 0;
            for (int t = mt - 1; t >= 1 && !fit; t--) {
                if ((st = planned_tokens(&rq, msgs, n_msgs, t, &at_t, err)) != NVL_OK) goto done;
                if (at_t + p.max_tokens <= budget) {
                    fit = t;
                    at_fit = at_t;
                }
            }
            if (!fit) {
                char what[400], advice[400];
                int images = 0;
                for (int i = 0; i < rq.n_src; i++) images |= !rq.src[i].is_video;
                describe_media(&rq, what, sizeof what, advice, sizeof advice);
                const int64_t least = (mt > 1 ? at_t : at_mt) - text_tokens;
                st = nvl_err_set(err, NVL_ERR_LIMIT,
                                 "the media (%s) need at least %lld tokens%s (plus %lld of text and %lld to answer), more "
                                 "than the context budget of %lld: %s",
                                 what, (long long)least, images ? " at 1 tile per image" : "", (long long)text_tokens,
                                 (long long)p.max_tokens, (long long)budget, advice);
                goto done;
            }
            char *msg = xprintf("the media need %lld tokens at %d tiles per image but the context budget is %lld: "
                                "using at most %d tile(s) per image (%lld tokens)",
                                (long long)(at_mt - text_tokens), mt, (long long)budget, fit, (long long)(at_fit - text_tokens));
            notice(&rq, msg);
            nvl_free(msg);
            mt = fit;
            at_mt = at_fit;
        }
        res->n_planned = at_mt;
    }
    res->max_tiles = mt;

    /* 3. vision (when a kept prefix holds the same sources, they only get their layout now) */
    const double tv0 = now();
    for (int i = 0; i < rq.n_src && st == NVL_OK; i++) {
        source *s = &rq.src[i];
        s->key = s->is_video ? xstrdup(s->base_key) : xprintf("%s:t%d", s->base_key, mt);
        if (!s->key) st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
    }
    int ki = -1; /* the most recently used kept prefix with exactly these sources */
    for (int k = 0; st == NVL_OK && !p.no_cache && rq.n_src > 0 && k < e->n_kp; k++) {
        int same = e->kp[k].n_src == rq.n_src;
        for (int i = 0; same && i < rq.n_src; i++) same = !strcmp(e->kp[k].src[i].key, rq.src[i].key);
        if (same && (ki < 0 || e->kp[k].used > e->kp[ki].used)) ki = k;
    }
    for (int i = 0; i < rq.n_src && st == NVL_OK; i++) {
        source *s = &rq.src[i];
        if (ki >= 0) {
            const kept_source *k = &e->kp[ki].src[i];
            s->from_kept = k;
            s->n_tiles = k->n_tiles;
            s->n_frames = k->n_frames;
            s->n_rows = k->n_rows;
            if (k->n_frames) {
                s->ts = nvl_malloc((size_t)k->n_frames * sizeof(double));
                s->kept = nvl_malloc((size_t)k->n_frames * sizeof(int));
                if (!s->ts || !s->kept) { st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory"); break; }
                memcpy(s->ts, k->ts, (size_t)k->n_frames * sizeof(double));
                memcpy(s->kept, k->kept, (size_t)k->n_frames * sizeof(int));
            }
            continue;
        }
        st = vision_source(&rq, s, mt, tv0, err);
        if (!s->is_video) {
            char label[512];
            source_label(s, label, sizeof label);
            progress(&rq, API_STAGE_VISION, label, i + 1, rq.n_src, tv0);
        }
        if (st == NVL_OK && cancelled(&rq)) st = nvl_err_set(err, NVL_ERR_CANCELLED, "cancelled");
    }
    res->t_vision = now() - tv0;
    if (st != NVL_OK) goto done;

    /* 4. prompt and prefill */
    int think_on = 0;
    if ((st = build_prompt(&rq, msgs, n_msgs, &prompt, &think_on, err)) != NVL_OK) goto done;
    if (prompt.n + p.max_tokens > budget) {
        st = nvl_err_set(err, NVL_ERR_LIMIT, "the prompt has %lld tokens; with max_tokens %lld it exceeds the context budget of %lld",
                         (long long)prompt.n, (long long)p.max_tokens, (long long)budget);
        goto done;
    }
    const int64_t P = prompt.n_spans ? prompt.spans[prompt.n_spans - 1].start + prompt.spans[prompt.n_spans - 1].count + 1 : 0;
    int hit = ki >= 0 && e->kp[ki].slot >= 0 && e->kp[ki].logits && P > 0 && e->kp[ki].n == P && P <= prompt.n &&
              !memcmp(e->kp[ki].ids, prompt.ids, (size_t)P * sizeof(int32_t));
    /* sources taken from the kept prefix need their rows after all when it does not apply */
    for (int i = 0; !hit && i < rq.n_src && st == NVL_OK; i++) {
        source *s = &rq.src[i];
        if (!s->from_kept) continue;
        nvl_free(s->ts);
        nvl_free(s->kept);
        s->ts = NULL;
        s->kept = NULL;
        s->from_kept = NULL;
        s->n_rows = 0;
        const double t1 = now();
        st = vision_source(&rq, s, mt, t1, err);
        res->t_vision += now() - t1;
    }
    if (st != NVL_OK) goto done;
    embd = nvl_calloc((size_t)(prompt.n * C), sizeof(float));
    mask = nvl_calloc((size_t)prompt.n, 1);
    res->media = nvl_calloc((size_t)rq.n_src + 1, sizeof *res->media);
    int64_t *used = nvl_calloc((size_t)rq.n_src + 1, sizeof *used);
    if (!embd || !mask || !res->media || !used) {
        nvl_free(used);
        st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory for a %lld-token prompt", (long long)prompt.n);
        goto done;
    }
    for (int s = 0; s < prompt.n_spans; s++) { /* a video's rows are consumed across its frames' spans */
        const llm_media_span *sp = &prompt.spans[s];
        const source *so = &rq.src[sp->media];
        const int64_t off = used[sp->media];
        for (int64_t r = 0; r < sp->count && off + r < so->n_rows; r++) {
            if (so->rows) memcpy(embd + (sp->start + r) * C, so->rows + (off + r) * C, (size_t)C * sizeof(float));
            mask[sp->start + r] = 1;
        }
        used[sp->media] += sp->count;
        res->n_image_tokens += sp->count;
    }
    for (int i = 0; i < rq.n_src; i++) {
        const source *s = &rq.src[i];
        api_media_record *mr = &res->media[res->n_media++];
        mr->name = xstrdup(s->name);
        mr->page = s->page >= 0 ? s->page + 1 : 0;
        mr->is_video = s->is_video;
        mr->n_tiles = s->n_tiles;
        mr->n_frames = s->n_frames;
        mr->image_tokens = used[i];
        mr->cached = hit;
        if (s->n_frames) {
            mr->frame_tokens = nvl_malloc((size_t)s->n_frames * sizeof(int));
            mr->frame_ts = nvl_malloc((size_t)s->n_frames * sizeof(double));
            if (mr->frame_tokens) memcpy(mr->frame_tokens, s->kept, (size_t)s->n_frames * sizeof(int));
            if (mr->frame_ts) memcpy(mr->frame_ts, s->ts, (size_t)s->n_frames * sizeof(double));
        }
    }
    nvl_free(used);
    llm_context_params cp = llm_context_params_default();
    cp.n_ctx = prompt.n + p.max_tokens + 1;
    if ((st = llm_context_init_shared(&ctx, e->lm, e->cache, &cp, err)) != NVL_OK) goto done;
    const double tp = now();
    int64_t from = 0;
    if (hit) { /* the parked slot continues as this request's */
        if ((st = llm_seq_copy(e->cache, llm_context_slot(ctx), e->kp[ki].slot, err)) != NVL_OK) goto done;
        llm_context_sync(ctx);
        memcpy(llm_logits_mut(ctx), e->kp[ki].logits, (size_t)hp->n_vocab * sizeof(float));
        e->kp[ki].used = ++e->tick;
        from = P;
        res->n_cached = P;
    } else if (!p.no_cache && P > 0) {
        if ((st = prefill_slices(&rq, ctx, &prompt, 0, P, embd, mask, tp, err)) != NVL_OK) goto done;
        from = P;
        /* keep this prefix for later requests (dropped silently when memory is short) */
        kept_prefix nk = {.slot = -1};
        kept_source *ks = nvl_calloc((size_t)rq.n_src, sizeof *ks);
        int32_t *ids = nvl_malloc((size_t)P * sizeof(int32_t));
        nvl_err e2 = {0};
        nk.src = ks;
        nk.n_src = ks ? rq.n_src : 0;
        nk.ids = ids;
        nk.n = P;
        /* park a copy of the slot: evict the least recently used prefix when none is free */
        nk.slot = -1;
        while (llm_seq_alloc(e->cache, &nk.slot, &e2) != NVL_OK && e->n_kp) kept_evict(e);
        nk.logits = nvl_malloc((size_t)hp->n_vocab * sizeof(float));
        int ok = ks && ids && nk.logits && nk.slot >= 0 &&
                 llm_seq_copy(e->cache, nk.slot, llm_context_slot(ctx), &e2) == NVL_OK;
        if (ok) memcpy(nk.logits, llm_logits(ctx), (size_t)hp->n_vocab * sizeof(float));
        for (int i = 0; ok && i < rq.n_src; i++) {
            const source *s = &rq.src[i];
            ks[i].key = xstrdup(s->key);
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
        if (ok) memcpy(ids, prompt.ids, (size_t)P * sizeof(int32_t));
        if (ok && kept_bytes(e, &nk) <= e->keep_cap) {
            size_t total = kept_bytes(e, &nk);
            for (int k = 0; k < e->n_kp; k++) total += kept_bytes(e, &e->kp[k]);
            while (e->n_kp && (e->n_kp == KEEP_MAX || total > e->keep_cap)) total -= kept_evict(e);
            nk.used = ++e->tick;
            e->kp[e->n_kp++] = nk;
        } else {
            kept_free(e, &nk);
        }
    }
    if ((st = prefill_slices(&rq, ctx, &prompt, from, prompt.n, embd, mask, tp, err)) != NVL_OK) goto done;
    res->t_prefill = now() - tp;
    nvl_free(embd);
    embd = NULL;

    /* 5. generation */
    const int64_t V = hp->n_vocab;
    res->first_logits = nvl_malloc((size_t)V * sizeof(float));
    res->ids = nvl_malloc((size_t)p.max_tokens * sizeof(int32_t));
    if (!res->first_logits || !res->ids) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
        goto done;
    }
    memcpy(res->first_logits, llm_logits(ctx), (size_t)V * sizeof(float));
    int32_t stop[18];
    const int n_stop = llm_chat_stop_ids(e->lm, e->tok, stop, 18);
    g.rq = &rq;
    llm_detok_init(&g.detok, e->tok);
    g.reasoning = think_on;
    g.stop = stop;
    g.n_stop = n_stop;
    llm_generate_params gp = llm_generate_params_default();
    gp.max_tokens = p.max_tokens;
    gp.sampler = p.sampler;
    gp.stop_ids = stop;
    gp.n_stop = n_stop;
    gp.on_token = gen_on_token;
    gp.user = &g;
    gp.cancel = cb ? cb->cancel : NULL;
    const double tg = now();
    g.t0 = tg;
    st = llm_generate(ctx, NULL, 0, &gp, res->ids, p.max_tokens, &res->n_ids, err);
    if (st == NVL_OK) {
        char tail[64];
        size_t tn = llm_detok_flush(&g.detok, tail, sizeof tail);
        if (tn) gen_emit(&g, tail, tn);
    }
    res->t_generate = now() - tg;
    progress(&rq, API_STAGE_GENERATE, NULL, res->n_ids, 0, tg);
    if (g.oom && st == NVL_OK) st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory for the answer");
    int stopped = 0;
    for (int i = 0; res->n_ids > 0 && i < n_stop; i++) stopped |= res->ids[res->n_ids - 1] == stop[i];
    res->finish_reason = st == NVL_ERR_CANCELLED ? "cancelled" : stopped ? "stop" : res->n_ids >= p.max_tokens ? "length" : "stop";
    /* the answer without leading blank space (the model writes "</think>\n\n") */
    {
        const char *a = g.buf[0] ? g.buf[0] : "";
        while (*a == '\n' || *a == ' ') a++;
        res->answer = xstrdup(a);
        if (think_on) res->reasoning = xstrdup(g.buf[1] ? g.buf[1] : "");
        if (!res->answer || (think_on && !res->reasoning)) st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
    }
    res->prompt_ids = prompt.ids;
    res->n_prompt = prompt.n;
    prompt.ids = NULL;
done:
    nvl_free(g.buf[0]);
    nvl_free(g.buf[1]);
    llm_context_free(ctx);
    nvl_free(embd);
    nvl_free(mask);
    llm_prompt_free(&prompt);
    request_free(&rq);
    if (st != NVL_OK && st != NVL_ERR_CANCELLED) api_ask_result_free(res);
    return st;
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
