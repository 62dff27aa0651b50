/* The engine's insides, shared by its stage files (not installed, not for commands):
 *   engine.c         open/close, the scheduler (submit / step / cancel / run), prefill and decode
 *   engine_media.c   the media threads: files read and tiles made beside the steps
 *   engine_sources.c media parts -> sources, the context budget, the chat prompt's tokens
 *   engine_vision.c  tiles of every request batched through RADIO + mlp1 (+ EVS)
 *   engine_prompt.c  prompt + vision rows, slot admission, kept prefixes (parked slots)
 *   engine_gen.c     sampled ids -> streamed text split at </think>, the result
 * A request is a small state machine the scheduler advances one turn at a time:
 *   QUEUED -> MEDIA (-> MEDIA_WAIT while the media thread reads its files) -> VISION -> PROMPT
 *   -> PREFILL -> DECODE -> (finished: on_done, freed). */
#ifndef API_ENGINE_IMPL_H
#define API_ENGINE_IMPL_H

#include <pthread.h>

#include "api.h"
#include "chat.h"
#include "llm.h"
#include "media.h"
#include "tokenizer.h"
#include "tokenreduce.h"
#include "vision.h"
#include "base/clock.h"

#define DEFAULT_MAX_CONTEXT 131072 /* model.md §2: trained context when the config is silent */
#define PREFILL_CHUNK 256          /* tokens of one request in one step on the CPU (llm_context's n_chunk) */
#define PREFILL_BUDGET 512         /* prefill tokens of all requests in one step on the CPU */
#define PREFILL_CHUNK_DEVICE 2048  /* on a device: GEMMs of thousands of rows keep the tensor cores busy */
#define PREFILL_BUDGET_DEVICE 4096 /*   (a dense page's 3.4K-token prompt in two steps, not fourteen) */
#define VISION_BATCH 16            /* tiles (of any requests) per RADIO call at most: vision_batch */
#define KEEP_MAX 4                 /* prefixes kept: a few documents questioned in turn */
#define MEDIA_THREADS 2            /* files of two requests read at once, beside the steps (the default) */
#define MEDIA_THREADS_MAX 8        /* api_engine_opts.media_threads at most, and the pool's growth */
#define MEDIA_STUCK_S 2.0          /* a job this long holds its thread: another starts for the queue */

/* What an earlier request left: its prompt up to the end of its last media span, the sources
 * in it (key + layout, no rows) and the LM state there. */
typedef struct kept_source {
    char *key;
    int n_tiles, n_frames;
    double *ts;
    int *kept;
    int64_t n_rows;
} kept_source;

typedef struct kept_prefix {
    int32_t *ids; /* the prompt up to the end of its last media span */
    int64_t n;
    kept_source *src;
    int n_src;
    int slot;      /* the parked slot of the engine's cache holding the LM state there */
    float *logits; /* (n_vocab) the logits after the prefix */
    uint64_t used; /* last use (engine tick) */
    uint64_t kid;  /* its id (indices move when prefixes are dropped) */
    char *text;    /* the conversation up to its last media marker (engine_prefix_text), or NULL */
    size_t text_len;
} kept_prefix;

/* A page a request with skip_bad_pages left out in the vision stage, remembered so that later
 * (and waiting) requests with the option leave it out without rendering it again: their sources
 * then match the kept prefix of the document read without it. */
#define BAD_PAGES_MAX 64
#define BAD_PAGE_TTL_S 600.0 /* remembered this long: a time or memory bound passed on a loaded host
                                may not pass again (the page is then rendered again) */
typedef struct bad_page {
    char *key;      /* the source's base_key (file identity, page, render size) */
    nvl_status st;
    char *message;
    char *name;     /* the label its message names (another request's label is put in its place) */
    double t;       /* nvl_now() when remembered */
} bad_page;

typedef struct request request;

/* A blocking caller's view of its request's end (api_engine_run). */
typedef struct engine_waiter {
    int done;
    nvl_status st;
    nvl_err err;
} engine_waiter;

struct api_engine {
    kern_backend *be;   /* one backend for the three model parts */
    int64_t prefill_chunk, prefill_budget; /* PREFILL_CHUNK / _BUDGET, or their _DEVICE values */
    int video_ahead;    /* frames of a video decoded ahead of the vision stage (opts.video_ahead) */
    int vision_batch;   /* tiles per RADIO call: 8 on the CPU (a turn of ~25 s of RADIO-H on 2 cores
                           between decode steps), VISION_BATCH on a device (a dense 13-tile page in one) */
    nvl_checkpoint *ck; /* the checkpoint, opened once; every weight views into it */
    llm_model *lm;
    vision_model *vm;
    llm_cache *cache;   /* sequence slots: the live requests' and the parked prefixes' */
    llm_workspace *ws;  /* one step's activations: max_batch decode rows + prefill_budget */
    tokred_projector proj;
    llm_tokenizer *tok;
    char *chat_template;     /* the checkpoint's Jinja template, or NULL (native Nano V2 rendering) */
    struct cJSON *special;   /* named special tokens for the template */
    int32_t think_end;       /* "</think>" */
    int32_t stop[18];        /* stop ids of the chat format */
    int n_stop;
    int64_t frame_sep_tokens; /* tokens of a long "\nFrame N sampled at S seconds: " (budget bound) */
    kept_prefix kp[KEEP_MAX];
    int n_kp;
    bad_page bad[BAD_PAGES_MAX]; /* oldest first; the stepping thread's */
    int n_bad;
    uint64_t tick, next_kid;
    size_t keep_cap;    /* bytes of kept state at most (NANOVL_KEEP_MB, default 4096) */
    /* scheduler */
    api_engine_opts opts;
    size_t seq_budget;  /* bytes of sequence state (slots) the live requests may hold together */
    size_t seq_reserved;/* what the live requests hold (their whole answer counted) */
    pthread_mutex_t mu; /* guards queue, n_queued, ids, cancel marks; the rest is the step thread's */
    request *queue, *queue_tail;
    int n_queued;
    request *live;      /* admitted, in admission order */
    int n_live;
    uint64_t next_id;
    int stepping;       /* a step is running (api_engine_step is not reentrant) */
    llm_batch_seq *seqs;/* (max_batch) one step's sequences */
    /* vision rows live in the LM backend's memory (on a device they never cross to the host):
     * rows of row_dtype (the projector's activation dtype), row_bytes each (kern_act's layout) */
    nvl_dtype row_dtype;
    size_t row_bytes;
    void *embd;         /* (prefill_budget, C) backend: the vision rows of a step's prefill chunks */
    void *vis_rows;     /* (vision_batch * rows a tile, C) backend: a vision batch's rows (once, not
                           an allocation per batch: a device's cudaFree waits for the device) */
    /* the media threads: read requests' files (decoding, PDF opening, video sampling) so that a
     * long video does not stop the other requests' steps (requests without media skip them) */
    pthread_t media_thr[MEDIA_THREADS_MAX];
    int media_thr_ok;   /* threads running */
    pthread_mutex_t mmu; /* guards mq, media_stop and each request's media_busy, media_t0 */
    pthread_cond_t mcv;
    request *mq, *mq_tail;
    int media_stop;
};

/* One image (file or PDF page) or video of the prompt. */
typedef struct source {
    const char *name;   /* the media's label (not owned) */
    int is_video;
    int page;           /* 0-based PDF page, -1 otherwise */
    int pdf;            /* index into the request's open PDFs, -1 otherwise */
    const char *path;   /* file to read (the media's path or a temporary file; not owned) */
    media_image *img;   /* decoded image file (owned) */
    media_video *video; /* a video being sampled (owned): opened (its sample planned) with the media,
                           its frames decoded on a media thread as the vision stage takes them */
    int n_planned;      /* video: the frames its sample plans (an upper bound of those decoded) */
    int64_t frames_bound; /* video: its frames' tokens as planned (engine_sources.c; 0: not yet) */
    double native_fps;  /* video: nominal frame rate (frame timestamps) */
    int ts_real;        /* video: 1 when a planned frame lies more than half a frame from index / fps
                           (a variable rate): every frame is shown its real time (engine_frame_ts) */
    int64_t frames_read, frames_listed; /* video: frames readable, and listed by its index (more: cut short) */
    int64_t image_frames;               /* image: frames in the file (> 1: animated; the first is seen) */
    double w, h;        /* size in pixels as the tiler will see it (images, pages) */
    char *base_key;     /* what the rows depend on, without max_tiles */
    int msg, part;      /* where the media part stands */
    /* vision output */
    const kept_source *from_kept; /* layout from the kept prefix (rows computed only if needed) */
    void *rows;         /* (n_rows, C) backend memory (e->row_bytes a row), allocated when the first
                           rows come; freed when the prompt is in the slot */
    int64_t n_rows;
    int n_tiles, n_frames;
    double *ts;
    int *kept;
    char *key;          /* base_key + max_tiles */
    /* vision in progress (engine_vision.c) */
    int started;        /* tiles made (image) or frame buffers allocated (video) */
    int finished;       /* every unit embedded (and a video's EVS done): rows complete */
    uint8_t *tiles;     /* image: (n_tiles, S, S, 3) RGB8, normalised on the vision backend */
    int units_done;     /* tiles (image) or frames (video) through RADIO (a video's: under e->mmu) */
    /* a video's frames, decoded and tiled ahead by a media thread (engine_video_decode) into a
     * ring: frame i in slot i % ring_n, written while i < units_done + ring_n */
    uint8_t *ring;      /* (ring_n, S, S, 3) RGB8 */
    int ring_n;
    int frames_ready;   /* frames in the ring or through RADIO (e->mmu) */
    int video_end;      /* the video had no more frames (e->mmu); a decoding error is prep_st */
    double t_decode;    /* decoding + tiling time not yet counted in the result (e->mmu) */
    void *all;          /* video: (n_planned * Q, C) backend, every frame's rows before EVS */
    double t0;          /* when its vision began (progress) */
    int prep;           /* a media thread's job for this source (an image's tiles, a video's next
                           frames): 0 not asked, 1 asked, 2 done (prep_st says whether it failed);
                           e->mmu guards it; a video's goes back to 0 once its status was seen */
    nvl_status prep_st;
    nvl_err prep_err;
    double t_media;     /* rendering time not yet counted in the result (timings_s.media) */
    int skipped;        /* a page left out (skip_bad_pages): finished without rows, recorded in
                           res->skipped; removed from the sources when vision ends */
} source;

enum rq_state { RQ_QUEUED = 0, RQ_MEDIA, RQ_MEDIA_WAIT, RQ_PREFIX_WAIT, RQ_VISION, RQ_PROMPT, RQ_PREFILL, RQ_DECODE, RQ_FINISHED };

typedef struct gen_state {
    request *rq;
    llm_detok detok;
    int reasoning;      /* inside the <think> part */
    char *buf[2];       /* [0] answer, [1] reasoning */
    size_t n[2], cap[2];
    int oom;
    double t0;
    int64_t n_tok;
} gen_state;

struct request {
    api_engine *e;
    request *next;
    uint64_t id;
    enum rq_state state;
    int cancel_req;     /* api_engine_cancel (under e->mu) */
    int cancel_seen;    /* cancel_req as the stepping thread saw it */
    request *media_next;/* the media threads' queue */
    double media_t0;    /* when a media thread took its job (0: queued or none; under mmu) */
    int job_src;        /* the queued job: -1 read the files, else that source's tiles or frames */
    int media_busy;     /* the media thread owns the request's sources (under e->mmu) */
    int media_abort;    /* the request ended: a media job stops early (under e->mmu) */
    nvl_status media_st;
    int media_parts;    /* media parts read (progress is replayed on the stepping thread) */
    engine_waiter *waiter;
    const api_message *msgs;
    int n_msgs;
    api_ask_params pv;  /* the parameters (a copy) */
    const api_ask_params *p; /* = &pv */
    api_callbacks cbv;  /* the callbacks (a copy) */
    const api_callbacks *cb; /* = &cbv */
    api_ask_result *res;
    nvl_status st;
    nvl_err err;
    /* sources */
    source *src;
    int n_src, cap_src;
    media_pdf **pdfs;
    int n_pdfs;
    char **tmp;         /* temporary files to unlink */
    int n_tmp;
    double t_start;
    int64_t budget;     /* context budget */
    int mt;             /* tiles per image */
    int no_kept;        /* the kept prefix did not apply: do not look again */
    int *skip_pdf;      /* (res->n_skipped) the open PDF (rq->pdfs index) of each page left out */
    int n_skip_said;    /* pages left out already said through on_notice */
    char *pfx_text;     /* the rendered conversation up to its last media marker (engine_prefix_text) */
    size_t pfx_len;
    int pfx_failed;     /* it could not be rendered: this request neither waits nor is waited for */
    double t_wait0;     /* RQ_PREFIX_WAIT began */
    int vis_next;       /* the source vision works on */
    double t_vision0;
    /* prompt and prefill */
    llm_prompt prompt;
    int think_on;
    const char **rowp;  /* (prompt.n) the vision row (in a source's rows) at each <image> position,
                           NULL elsewhere: a chunk's rows are gathered when it is fed (no second
                           copy of every row for the whole prompt) */
    uint8_t *mask;
    int64_t P;          /* the prefix kept for later requests (end of the last media span), 0: none */
    int keep;           /* park the state at P once prefilled there */
    int hit;            /* the prefix comes from a kept one */
    uint64_t kid;       /* that one's id */
    int slot;
    size_t reserved;    /* sequence bytes counted against the budget */
    int64_t fed;        /* prompt tokens in the slot */
    int64_t seg0;       /* where the current prefill segment began (chunks are cut from it) */
    double t_prefill0;
    /* generation */
    llm_sampler *smp;
    float *logits;      /* (n_vocab) this request's last logits */
    int32_t next_tok;   /* sampled, to be fed by the next step */
    int32_t greedy_tok; /* a greedy request's decode step: the id found on the backend (llm_batch_seq.argmax) */
    gen_state g;
    double t_gen0;
};

/* engine.c */
nvl_status engine_submit(api_engine *e, const api_message *msgs, int n_msgs, const api_ask_params *p,
                         const api_callbacks *cb, api_ask_result *res, uint64_t *id, engine_waiter *w, nvl_err *err);
/* A video frame's timestamp as the model is shown it (engine_vision.c; model.md §6.3), from the
 * frame's index and presentation time. */
double engine_frame_ts(double native_fps, int64_t index, double timestamp, int real);
char *engine_strdup(const char *s);
char *engine_printf(const char *fmt, ...) NVL_PRINTF(1, 2);
int engine_cancelled(const request *rq);
int engine_flag_set(volatile int *f); /* a caller's cancel flag, read atomically (NULL: 0) */
void engine_progress(const request *rq, enum api_stage st, const char *item, int64_t done, int64_t total, double t0);
void engine_notice(request *rq, const char *msg);
/* Queues a job for the media threads: rq's files (src -1), source src's tiles (an image or page)
 * or its next frames (a video: engine_video_decode). Returns 1, or 0 (nothing queued) while rq
 * has a job queued or running (media_busy). */
int engine_queue_job(api_engine *e, request *rq, int src);
/* Ends rq with st (the error copied); its slot and memory go at the end of the turn. */
void engine_fail(request *rq, nvl_status st, const nvl_err *err);

void engine_prefill_done(request *rq); /* the whole prompt is in the slot: first token */

/* engine_media.c */
int engine_has_media(const request *rq);
int engine_media_cancelled(request *rq); /* rq cancelled (any thread; takes e->mu) */
void engine_media_read(request *rq);   /* rq's files -> sources (media thread or inline) */
void *engine_media_main(void *arg);    /* a media thread (arg: the engine) */
int engine_media_grow(api_engine *e);  /* one more media thread if a job holds every one (engine_media.c) */
void engine_media_stage(request *rq);  /* after the read, on the stepping thread: budget, layouts;
                                          RQ_PREFIX_WAIT when another live request will keep the
                                          same prefix */
void engine_prefix_wait_stage(request *rq); /* RQ_PREFIX_WAIT -> RQ_VISION once nothing is to wait for */

/* engine_prompt.c */
void engine_kept_clear(api_engine *e);
/* The kept prefix with rq's sources (keys) and, where both are known, the same conversation up to
 * the last of them (the most recently used of those), or -1. */
int engine_kept_find(const api_engine *e, request *rq);
void engine_prompt_stage(request *rq); /* RQ_PROMPT -> RQ_PREFILL (or waits, or back to RQ_VISION) */
void engine_park_prefix(request *rq);  /* the state at rq->P kept for later requests */

/* engine_sources.c */
nvl_status engine_add_media(request *rq, const api_media *m, int msg, int part, nvl_err *err);
/* Lowers rq->mt until the prompt fits rq->budget (a notice unless quiet), or fails with
 * NVL_ERR_LIMIT; sets the sources' keys (at rq->mt). */
nvl_status engine_plan_budget(request *rq, int quiet, nvl_err *err);
/* 1 when rq (with skip_bad_pages) has a page engine_skip_known would leave out. */
int engine_known_bad(const request *rq);
nvl_status engine_build_prompt(request *rq, const api_message *msgs, int n_msgs, llm_prompt *prompt, int *think_on,
                               nvl_err *err);
void engine_source_label(const source *s, char *label, size_t n);
int engine_unname_tmp(nvl_err *err, const char *tmp, const char *name);
int engine_is_tmp(const request *rq, const char *path);
void engine_sources_free(request *rq);
/* With skip_bad_pages, a page whose reading failed with st (err its message) is recorded in
 * rq->res->skipped and 1 returned (the caller leaves the page out); 0 when the request must fail
 * instead (the option off, not a PDF page, or an error that is not the page's own: cancelled,
 * out of memory, the renderer not starting). Any thread that owns rq's sources. */
int engine_skip_page(request *rq, const source *s, nvl_status st, const nvl_err *err);
/* The stepping thread's memory of pages left out in the vision stage (e->bad): s's failure
 * remembered (the oldest forgotten beyond BAD_PAGES_MAX), and all of it forgotten (engine close,
 * api_engine_forget). */
void engine_bad_page_remember(api_engine *e, const source *s, nvl_status st, const nvl_err *err);
void engine_bad_pages_clear(api_engine *e);
/* Before the vision stage (media stage, prefix wait), with skip_bad_pages: rq's pages remembered
 * as bad left out and dropped without rendering them (engine_drop_skipped's status). */
nvl_status engine_skip_known(request *rq, nvl_err *err);
/* 1 when a's and b's sources, those left out excepted, have the same keys in the same order. */
int engine_same_sources(const request *a, const request *b);
/* On the stepping thread, once the sources left out are dropped (the vision stage's end): the pages
 * left out and not yet said, through on_notice. */
void engine_skip_notices(request *rq);
/* NVL_ERR_* (the first left-out page's error, with the number of the others) when every selected
 * page of one of rq's PDFs was left out; NVL_OK otherwise. */
nvl_status engine_skip_check(const request *rq, nvl_err *err);
/* When vision has ended: the sources left out removed (their vision buffers freed), so the prompt,
 * the media records and a kept prefix see only the pages read. engine_skip_check's error first. */
nvl_status engine_drop_skipped(request *rq, nvl_err *err);
/* After pages were left out in the vision stage of a request whose tiles per image had been
 * lowered to fit the context: the budget planned again without them. 1 when the tiles per image
 * went up (the notice says so; the images' and pages' vision must run again: their vision state is
 * reset), 0 when unchanged, -1 on error (*err). */
int engine_replan_after_skip(request *rq, nvl_err *err);
/* The conversation rendered up to the end of its last media marker (cached in rq->pfx_text; *len
 * its bytes): two requests whose sources have the same keys and whose texts here are equal have
 * the same prompt ids up to their kept prefix P. NULL when rq has no media or it cannot be
 * rendered (then rq's own prompt build reports why). */
const char *engine_prefix_text(request *rq, size_t *len);
media_video_params engine_video_params(const api_ask_params *p);

/* engine_vision.c */
/* The vision of every request in RQ_VISION advanced by up to VISION_BATCH tiles (one RADIO
 * call); a request whose sources all have rows moves to RQ_PROMPT; a request whose file fails
 * (a page that does not render, a video that does not decode) is finished with its error. */
int engine_vision_turn(api_engine *e); /* returns the tiles run */
/* An image's or page's tiles (the page rendered first): what a media thread does ahead of the
 * vision stage (touches only s and rq's open PDFs). */
nvl_status engine_vision_start(request *rq, source *s, nvl_err *err);
/* A video's next frames decoded and tiled into its ring until the ring is full (frames_ready ==
 * units_done + ring_n) or the video ends (video_end): a media thread's job, or inline on the
 * stepping thread without media threads. Publishes each frame under e->mmu (waking a waiting
 * step). A decoding error names the file; NVL_ERR_CANCELLED when rq was cancelled. */
nvl_status engine_video_decode(request *rq, source *s, nvl_err *err);
/* Frees a source's vision buffers (its rows in the backend's memory too) and progress. */
void engine_vision_reset_source(api_engine *e, source *s);

/* engine_gen.c */
void engine_gen_init(request *rq);
/* Takes the token sampled for rq (callbacks, text). Returns 1 when generation ends here. */
int engine_gen_token(request *rq, int32_t tok, const float *logits);
/* Fills rq->res (answer, reasoning, finish_reason, prompt) from what was generated. */
void engine_gen_finish(request *rq);
void engine_gen_free(request *rq);

/* Whether the checkpoint's chat template tmpl (special: its named tokens, may be NULL) renders a
 * probe conversation (a system turn, a user turn of an image and a question) with one <image>
 * marker and the question. NVL_OK with why[0] == 0: usable; NVL_OK with a reason in why (cap
 * bytes): a template nanovl cannot interpret, or one that does not place media where the prompt
 * builder expects them, which the engine sets aside, with a warning, for the built-in Nano V2
 * format (inspect says so). NVL_ERR_NOMEM while rendering: an error, not a reason to switch. */
nvl_status api_chat_template_probe(const char *tmpl, const struct cJSON *special, char *why, size_t cap, nvl_err *err);

#endif // API_ENGINE_IMPL_H
