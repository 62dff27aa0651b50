/* api/: what users touch: the engine, the Unix-socket server and the CLI.
 *
 * So far: checkpoint inspection (`nanovl inspect`) and the engine behind `nanovl ask`.
 *
 *   int usable = 0;
 *   st = api_inspect("ckpt/", stdout, &usable, &err);
 */
#ifndef API_API_H
#define API_API_H

#include <stdio.h>

#include "base/status.h"
#include "llm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes a human-readable summary of the checkpoint at path (a directory or a .safetensors /
 * index file) to out: architecture, layer pattern, sizes, tensor count, bytes by dtype,
 * quantization, and every problem found. *usable is 1 when the language model (and the vision
 * tower, when the config declares one) can be loaded.
 * @return NVL_OK when the summary could be made (even if it lists problems); otherwise the
 * error that stopped it (unreadable directory, damaged safetensors, invalid config.json). */
nvl_status api_inspect(const char *path, FILE *out, int *usable, nvl_err *err);

// ---------------------------------------------------------------------------
// The engine: a whole VL checkpoint answering questions about files.
//
//   api_engine *e = NULL;
//   st = api_engine_open(&e, "NVIDIA-Nemotron-Nano-12B-v2-VL-BF16/", &err);
//   api_part parts[] = {{API_PART_MEDIA, .media = {.path = "report.pdf"}},
//                       {API_PART_TEXT, .text = "What is the total?"}};
//   api_message msg = {"user", parts, 2};
//   api_ask_params p = api_ask_params_default();
//   api_callbacks cb = {.on_text = print_piece, .user = NULL};
//   st = api_engine_run(e, &msg, 1, &p, &cb, &res, &err);   // res.answer, res.reasoning, usage
//   api_ask_result_free(&res); api_engine_close(e);
//
// Pipeline: media (images; PDF pages as images; video frames) -> tiles -> RADIO -> pixel
// shuffle -> mlp1 (-> EVS for videos) -> Nano V2 chat prompt with <img><image>...</img> spans ->
// prefill with the vision rows at the <image> positions -> generation.
//
// Context budget: when the media would not fit the context (max_context, else the checkpoint's
// max_position_embeddings, else 131072) together with the text and max_tokens, the engine lowers
// the tiles per image until it fits and says so through on_notice (and res.notice); when even
// one tile per image does not fit it fails with NVL_ERR_LIMIT naming the numbers (ask about
// fewer pages, or page by page).
//
// Prefix reuse: the engine keeps the state after the last media span of its recent requests
// (KV cache, Mamba states) with the media they saw: up to 4 prefixes within NANOVL_KEEP_MB
// (default 4096 MiB), least recently used dropped first. A later request whose prompt starts with
// the same tokens and the same media (same file, size, mtime, page, render and sampling
// parameters) restores that state and skips vision and the prefill of that prefix (res.n_cached).
// Requests sent together share it too: a request whose media, and text before them, equal those
// of another live request further on that will keep that prefix waits for it (res.t_wait), then
// restores it, so ten questions about one document submitted at once embed its pages and prefill
// them once.
//
// Many requests at once (continuous batching): api_engine_submit queues a request and returns;
// api_engine_step runs one turn of the scheduler: it admits queued requests (up to max_batch
// live, a slot each, against a budget of sequence-state bytes that counts each request's whole
// answer), hands new requests' files to the engine's two media threads (decoding, PDF opening,
// video sampling, and images' and pages' tiles made ahead, happen beside the steps, so a long
// video never holds up the others), runs up to 8 tiles of any requests' images and frames
// through RADIO together, and then one forward step holding every decoding request's next token
// plus up to 512 prompt tokens of requests still prefilling (256 at most per request, cut at the
// same places whatever else runs, so an answer does not depend on its neighbours beyond the
// matmuls' summation order). Each request is sampled with its own parameters and reports through
// its own callbacks; its slot is freed as soon as it ends (done, error or cancel). A request
// whose file fails ends with its error while the others go on.
// Threads: submit, cancel and api_engine_pending from any thread; step (and the blocking
// api_engine_run / api_engine_ask / api_pages_run, which submit and step until their request
// ends) from one thread at a time; callbacks run on the stepping thread.

typedef struct api_engine api_engine;

/* How many requests run together and in how much memory. */
typedef struct api_engine_opts {
    int max_batch;     /* requests live at once (slots; 1..256). api_engine_open: 1 */
    double seq_mem_mb; /* MiB of sequence state (conv + SSM states, KV rows) the live requests may hold
                          together; 0: half of the backend's free memory after the weights (the host's
                          available memory on the CPU) */
    int video_ahead;   /* frames of a video decoded (and tiled) ahead of the vision stage, on a media thread
                          while RADIO embeds the earlier ones; each holds one S x S x 3 tile (768 KiB at
                          S = 512). 0: twice the frames of one vision batch (16 on the CPU, 32 on a device) */
    int media_threads; /* threads reading files and decoding frames beside the steps: 0 = the default
                          (2); -1 = none (each turn reads one request's files, and decodes a video's
                          next frames, on the stepping thread); at most 8 */
    int vision_batch;  /* tiles (of any requests) per RADIO call: 0 = the backend's default (8 on the CPU,
                          16 on a device); at most 16 */
    int prefill_chunk; /* prompt tokens of one request in one step: 0 = the backend's default (256 on the
                          CPU, 2048 on a device), else 16..65536; a step's prefill budget is at least one
                          chunk */
} api_engine_opts;
api_engine_opts api_engine_opts_default(void); /* max_batch 16, seq_mem_mb 0, video_ahead 0 */

typedef struct api_ask_params {
    int max_tiles;      /* per image, 1..12 (default: the checkpoint's max_num_tiles) */
    const char *pages;  /* PDF page range "1-3,7" (NULL: all, within media limits) */
    const char *password; /* opens the request's encrypted PDFs (NULL: none); a media part's own wins */
    double dpi;         /* PDF render DPI (0: long side) */
    int long_side;      /* PDF render long side in px (0: MEDIA_PDF_DEFAULT_LONG_SIDE) */
    double fps;         /* video sampling rate (default 2) */
    int max_frames;     /* default 128 */
    double evs;         /* video pruning rate q; < 0: the checkpoint's video_pruning_rate */
    int think;          /* -1: from the message (default on); 0 off; 1 on */
    int64_t max_tokens; /* default 1024 */
    int64_t max_context;/* prompt + answer token budget; 0: the checkpoint's */
    int no_cache;       /* 1: neither use nor keep the prefix state */
    int skip_bad_pages; /* 1: a PDF page that cannot be read (damaged, or past the renderer's time or
                           memory bound: NVL_ERR_FORMAT, _TRUNCATED, _TIMEOUT, _LIMIT, _UNSUPPORTED) is
                           left out of the prompt, said through on_notice and listed in
                           res.skipped, instead of failing the request. The request still fails when
                           every selected page of one of its PDFs was left out (that page's error) */
    int ocr_page;       /* 1: one page of an OCR run (api_pages sets it): messages speak of the page and
                           give OCR's remedies */
    llm_sampler_params sampler;
} api_ask_params;
api_ask_params api_ask_params_default(void);

/* One media input: a file the engine reads, or bytes (PDF and video bytes go through a
 * private temporary file). */
typedef struct api_media {
    const char *path;
    const uint8_t *data;
    size_t size;
    const char *name;  /* label in errors and records (default: path, or "bytes") */
    const char *pages; /* PDF pages for this file; NULL: params.pages */
    const char *password; /* an encrypted PDF's password; NULL: params.password */
} api_media;

enum api_part_kind { API_PART_TEXT = 0, API_PART_MEDIA = 1 };
typedef struct api_part {
    enum api_part_kind kind;
    const char *text;  /* API_PART_TEXT */
    api_media media;   /* API_PART_MEDIA: a PDF becomes one image per selected page */
    size_t text_len;   /* bytes of text, a NUL among them read as the byte it is (an earlier answer
                          that held one: ask --chat); 0: strlen(text) */
} api_part;

typedef struct api_message {
    const char *role;  /* "system", "user", "assistant" */
    const api_part *parts;
    int n_parts;
} api_message;

enum api_stage { API_STAGE_MEDIA = 0, API_STAGE_VISION, API_STAGE_PREFILL, API_STAGE_GENERATE };
const char *api_stage_name(enum api_stage s); /* "media", "vision", "prefill", "generate" */

typedef struct api_progress {
    enum api_stage stage;
    const char *item;  /* the file (and page) being worked on, or NULL */
    int64_t done, total; /* images / frames / tokens; total 0 when unknown */
    double elapsed_s;  /* since the stage began */
} api_progress;

typedef struct api_callbacks {
    /* A piece of decoded text (complete UTF-8); reasoning = 1 inside the <think> part. Return
     * non-zero to stop. */
    int (*on_text)(const char *text, size_t n, int reasoning, void *user);
    llm_token_fn on_token; /* every generated id (stop id included); non-zero stops. Its logits are
                              NULL for the decode steps of greedy requests (temperature 0: the id
                              is found on the backend and the logits stay there) */
    void (*on_progress)(const api_progress *p, void *user);
    void (*on_notice)(const char *msg, void *user);
    void *user;
    volatile int *cancel;  /* checked between images, frames, prefill slices and tokens */
    /* The request ended (submitted requests): st NVL_OK, NVL_ERR_CANCELLED (the result holds what
     * was generated) or the error, msg its message. The result may be read and freed from here on. */
    void (*on_done)(nvl_status st, const char *msg, void *user);
    void *done_user;       /* on_done's user (NULL: user) */
} api_callbacks;

/* A PDF page left out of the prompt (api_ask_params.skip_bad_pages). */
typedef struct api_skipped_page {
    char *name;               /* the file's label */
    int page;                 /* 1-based */
    nvl_status st;            /* why (NVL_ERR_FORMAT, ...) */
    char *message;            /* the page's error, naming the file and the page */
} api_skipped_page;

/* One image of the prompt (an image file, a PDF page) or one video. */
typedef struct api_media_record {
    char *name;               /* the file's label */
    int page;                 /* 1-based PDF page; 0 otherwise */
    int is_video;
    int n_tiles;              /* image: tiles incl. thumbnail */
    int n_frames;             /* video */
    int *frame_tokens;        /* video: <image> tokens kept per frame (n_frames) */
    double *frame_ts;         /* video: frame timestamps, seconds */
    int64_t image_tokens;     /* <image> positions filled */
    int cached;               /* came from the previous request's state */
} api_media_record;

typedef struct api_ask_result {
    int32_t *prompt_ids; int64_t n_prompt;   /* the prompt as fed (media expanded) */
    int32_t *ids; int64_t n_ids;             /* generated tokens */
    float *first_logits;                     /* (n_vocab) logits after the prompt */
    char *answer;                            /* text after </think> (or all, reasoning off) */
    char *reasoning;                         /* the <think> part; NULL with reasoning off */
    size_t answer_len, reasoning_len;        /* their bytes: the text may hold NUL bytes (a token
                                                that decodes to 0x00), so read it by length
                                                (api_answer_len) */
    const char *finish_reason;               /* "stop", "length", "cancelled" */
    int64_t n_image_tokens;                  /* <image> positions filled with vision rows */
    int64_t n_cached;                        /* prompt tokens restored from the prefix state */
    int max_tiles;                           /* tiles per image actually allowed */
    int64_t n_planned;                       /* prompt tokens the budget planner counted at max_tiles:
                                                n_prompt exactly for images and pages, an upper
                                                bound with videos (frames sampled later) or pages
                                                left out; 0 without media */
    char *notice;                            /* what the engine changed to fit (or NULL) */
    api_media_record *media; int n_media;
    api_skipped_page *skipped; int n_skipped; /* pages left out (skip_bad_pages), in the order found */
    double t_media, t_vision, t_prefill, t_generate; /* seconds per stage */
    double t_wait;                           /* seconds waiting for another request with the same media
                                                and text before them to keep its prefix (then restored
                                                here: n_cached), before t_vision */
    const char *backend;                     /* the backend the models ran on: "cpu" or "cuda" (static) */
} api_ask_result;
void api_ask_result_free(api_ask_result *r);
/* The bytes of r->answer (NUL bytes included): answer_len, or strlen(answer) for a result made by
 * hand with answer_len 0; 0 without an answer. api_reasoning_len: the same for reasoning. */
size_t api_answer_len(const api_ask_result *r);
size_t api_reasoning_len(const api_ask_result *r);
/* The decode rate, tokens/s: (n_ids - 1) / t_generate, since the first token is drawn from the
 * prefill's logits when t_generate starts and each later one costs a decode step (the count
 * llama.cpp's "eval time ... runs" uses). 0 with fewer than two tokens or no time. */
double api_decode_tokens_per_s(const api_ask_result *r);

/* Checks the environment variables the api reads (NANOVL_KEEP_MB); an error names the variable and
 * its value. nanovl calls it, with kern_env_check, before any command runs. */
nvl_status api_env_check(nvl_err *err);
nvl_status api_engine_open(api_engine **out, const char *dir, nvl_err *err);
/* The same with opts (NULL: api_engine_opts_default). NVL_ERR_INVALID_ARG for max_batch out of
 * 1..256, a negative seq_mem_mb, video_ahead out of 0..4096, media_threads out of -1..8,
 * vision_batch out of 0..16 or prefill_chunk neither 0 nor in 16..65536. */
nvl_status api_engine_open_with(api_engine **out, const char *dir, const api_engine_opts *opts, nvl_err *err);
void api_engine_close(api_engine *e);
int64_t api_engine_n_vocab(const api_engine *e);
/* Where the models run on a device: its memory in use (by this process and any other) and in
 * total, bytes. NVL_ERR_UNSUPPORTED on the CPU backend. */
nvl_status api_engine_device_memory(api_engine *e, size_t *used, size_t *total, nvl_err *err);
/* Where the models run: kern_backend_name ("cpu" or "cuda") and its description (the device's
 * name, compute capability and memory; "CPU ..." on the CPU). Static strings of the engine. */
const char *api_engine_backend_name(const api_engine *e);
const char *api_engine_backend_description(const api_engine *e);
/* The context budget a request gets by default (see above). */
int64_t api_engine_max_context(const api_engine *e);
/* Drops the kept prefix state. */
void api_engine_forget(api_engine *e);

/* Queues the conversation msgs for an answer into *res; *id (may be NULL) gets its id (> 0).
 * msgs, p's strings, cb->user and res must stay valid until cb->on_done has run; p and cb
 * themselves are copied. Only argument errors are returned here (no messages, max_tokens < 1,
 * max_tiles out of 1..12); everything else ends the request through on_done. Thread-safe. */
nvl_status api_engine_submit(api_engine *e, const api_message *msgs, int n_msgs, const api_ask_params *p,
                             const api_callbacks *cb, api_ask_result *res, uint64_t *id, nvl_err *err);
/* Ends request id (queued or running) as cancelled at its next turn; an unknown or finished id
 * is ignored. Thread-safe. */
void api_engine_cancel(api_engine *e, uint64_t id);
/* One turn of the scheduler (see above). Returns the requests still queued or live (0: idle).
 * One thread at a time. */
int api_engine_step(api_engine *e);
/* Requests queued or live (thread-safe). */
int api_engine_pending(api_engine *e);
/* The option values the engine runs with (seq_mem_mb resolved). */
api_engine_opts api_engine_get_opts(const api_engine *e);

/* Answers the conversation msgs (the last message is usually the user's question): submit, then
 * step until it ends (other requests submitted meanwhile run too).
 * On NVL_ERR_CANCELLED res holds what was generated so far. Errors name the file. */
nvl_status api_engine_run(api_engine *e, const api_message *msgs, int n_msgs, const api_ask_params *p,
                          const api_callbacks *cb, api_ask_result *res, nvl_err *err);

/* Convenience: one user turn with files (media first) then the question. */
nvl_status api_engine_ask(api_engine *e, const char *const *files, int n_files, const char *question,
                          const api_ask_params *p, llm_token_fn on_token, void *user, api_ask_result *res,
                          nvl_err *err);
/* The engine's tokenizer (valid while e lives), for streaming decode. */
const struct llm_tokenizer *api_engine_tokenizer(const api_engine *e);

/* Writes bytes to a private temporary file ($TMPDIR or /tmp, mode 0600) for the readers that
 * take paths (PDF, video). The file is unlinked at once and *path is "/proc/self/fd/N", its open
 * descriptor (so nothing is left behind however the process ends); where /proc is missing, the
 * named file. *path is nvl_malloc'ed: give it to api_tmp_release when done (closes or unlinks,
 * and frees). */
nvl_status api_bytes_to_tmp(const void *data, size_t n, const char *name, char **path, nvl_err *err);
void api_tmp_release(char *path);
/* A path that opens what the open descriptor fd holds ("/proc/self/fd/N": an unlinked file too),
 * into out (cap bytes, API_FD_PATH_MAX will do): 1 when it does (it names fd's file and can be
 * read), else 0 (no /proc) with out "". */
#define API_FD_PATH_MAX 40
int api_fd_path(int fd, char *out, size_t cap);

/* OCR's parameters from a request's: reasoning off unless the request set `think` (base->think
 * 0 or 1, not -1), and max_tokens 4096 per page unless the request set it (max_tokens_given). One
 * place for serve, batch and `nanovl ocr`. */
api_ask_params api_ocr_params(const api_ask_params *base, int max_tokens_given);

/* Protocol and result JSON shared by `serve`, `batch` and `ask --json` (api/wire.c). */
struct cJSON;
/* {"answer", "reasoning", "finish_reason", "usage", "timings_s", "media", "notice"} */
struct cJSON *api_result_to_json(const api_ask_result *r);
/* Stable lower-case code for a status ("not_found", "format", "limit", ...). */
const char *api_status_code(nvl_status st);

#ifdef __cplusplus
}
#endif

#endif // API_API_H
