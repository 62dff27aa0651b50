/* The JSON a request or job is written in, shared by `nanovl serve` (one request per line on
 * the socket) and `nanovl batch` (one job per line of the manifest). docs/api.md documents
 * every field; unknown fields are refused so that a typo never passes silently.
 *
 *   api_request rq;
 *   st = api_request_parse(line, len, &rq, &err);   // rq.msgs, rq.params, rq.id, rq.type
 *   ...
 *   api_request_free(&rq);
 */
#ifndef API_WIRE_H
#define API_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "api.h"

#define API_PROTOCOL_VERSION 1

enum api_request_type { API_REQ_ASK = 0, API_REQ_OCR, API_REQ_CANCEL, API_REQ_STATUS };

typedef struct api_request {
    struct cJSON *root;
    const char *id;            /* the client's id (NULL when absent) */
    enum api_request_type type;
    const char *target;        /* cancel: the id to cancel */
    const char *prompt;        /* ocr: the instruction (NULL: API_OCR_PROMPT) */
    api_message *msgs;
    int n_msgs;
    api_part *parts;           /* storage for msgs */
    uint8_t **blobs;           /* decoded inline bytes */
    int n_blobs;
    api_ask_params params;
} api_request;

/* Parses one request line. Strings point into rq->root. On error rq is freed and err names the
 * field ("messages[0].content[1].path: expected a string"). */
nvl_status api_request_parse(const char *text, size_t len, api_request *rq, nvl_err *err);
/* The same, starting from base parameters (the request's "params" override them). */
nvl_status api_request_parse_with(const char *text, size_t len, const api_ask_params *base, api_request *rq,
                                  nvl_err *err);
void api_request_free(api_request *rq);
/* 1 when the request's "params" object names key (a default applies otherwise). */
int api_request_has_param(const api_request *rq, const char *key);
/* The protocol error code of a request that could not be parsed (serve and batch alike):
 * "bad_json" (not JSON), "unsupported_version", "bad_request" (a field unknown, missing, of the
 * wrong type or out of range, bad base64), "out_of_memory". */
const char *api_request_error_code(nvl_status st);
/* The request's type name ("ask", "ocr", ...). */
const char *api_request_type_name(enum api_request_type t);

/* One page's record: {"file", "page" (when > 0), text_key: the answer, "usage", "timings_s",
 * "finish_reason"}; and a failed page's: {"file", "page", "error": {"code", "message"}}. Used by
 * ocr --json, ask --per-page --json, the socket's "page" events and batch OCR results. */
struct cJSON *api_page_to_json(const char *name, int page, const api_ask_result *r, const char *text_key);
struct cJSON *api_page_error_to_json(const char *name, int page, nvl_status st, const char *msg);
/* Every JSON line nanovl writes goes through these, so that it is valid UTF-8 whatever the input:
 * each byte that is not part of a valid UTF-8 sequence (in a question, an id, a file name, a
 * model's text) becomes U+FFFD. api_utf8_fix copies n bytes of s so repaired (NUL-terminated,
 * nvl_malloc'ed, *out_len its length; NULL on OOM). api_json_print: cJSON_PrintUnformatted, so
 * repaired (nvl_free it). */
char *api_utf8_fix(const char *s, size_t n, size_t *out_len);
/* 1 when the n bytes of s are valid UTF-8 (what api_utf8_fix would leave as they are), else 0. */
int api_utf8_valid(const char *s, size_t n);
char *api_json_print(const struct cJSON *o, size_t *len);
/* Moves every member of from into to (from is deleted); returns to. Either may be NULL. */
struct cJSON *api_json_merge(struct cJSON *to, struct cJSON *from);
/* A JSON string of the n bytes of s, NUL bytes included (a model may write one): a plain cJSON
 * string when s has none, else a raw item holding the escaped text ("\u0000"), which prints the
 * same way (its valuestring is then the JSON text, quotes included). NULL on OOM. */
struct cJSON *api_json_text(const char *s, size_t n);
/* Prints a JSON object as one line on f (repaired as above) and deletes it. */
void api_json_line(FILE *f, struct cJSON *o);

/* Base64 (RFC 4648, padding optional, no whitespace) into *out (nvl_malloc'ed). */
nvl_status api_base64_decode(const char *s, size_t n, uint8_t **out, size_t *out_len, nvl_err *err);

/* A growable byte buffer (NUL-terminated after its n bytes); oom set when it could not grow, and
 * later puts do nothing. api_buf_json_str appends the n bytes of s as a JSON string, quotes
 * included (NUL and other control bytes as \u00XX). */
typedef struct api_buf {
    char *p;
    size_t n, cap;
    int oom;
} api_buf;
void api_buf_put(api_buf *b, const char *s, size_t n);
void api_buf_printf(api_buf *b, const char *fmt, ...);
void api_buf_json_str(api_buf *b, const char *s, size_t n);
/* Appends s (NUL-terminated) for one line of a log or a listing: control bytes and bytes that
 * are not UTF-8 as \xNN (with named: a newline as \n and a backslash as \\, so the text reads
 * back unambiguously), C1 controls and U+2028 / U+2029 (line breaks to some readers) as \uXXXX;
 * the rest, UTF-8 included, as it is. A newline in a name, label or id would otherwise start a
 * forged line. */
void api_buf_line_text(api_buf *b, const char *s, int named);
void api_buf_free(api_buf *b);

// OCR: page by page -------------------------------------------------------

#define API_OCR_PROMPT \
    "Transcribe all the text on this page as Markdown, in reading order. Keep headings, lists and " \
    "tables (as Markdown tables); write formulas in LaTeX. Output only the transcription."

/* Called after each page (or image) with its record. Return non-zero to stop. */
typedef int (*api_page_fn)(int index, int n_total, const char *name, int page, const api_ask_result *r,
                           void *user);

/* Page by page: asks prompt about every image and every selected PDF page (params.pages or the
 * media's own) of media, each page its own request (reasoning as params say, no kept prefix);
 * on_page gets each page's result, in page order. An input or page that fails calls
 * on_page_error (when set; return non-zero to stop) and the run goes on. OCR is this with
 * API_OCR_PROMPT and reasoning off. Videos are refused per input. Up to `window` pages run
 * together on the engine (default 1). */
typedef struct api_pages_hooks {
    void (*on_page_start)(int index, int n_total, const char *name, int page, void *user);
    api_page_fn on_page;
    int (*on_page_error)(int index, int n_total, const char *name, int page, nvl_status st, const char *msg, void *user);
    /* the run ended (api_pages_start): st NVL_OK, or NVL_ERR_CANCELLED (stopped by a hook,
     * cancelled) with msg; n_failed pages or inputs failed */
    void (*on_finish)(nvl_status st, int n_failed, const char *msg, void *user);
    const api_callbacks *cb; /* progress and text streaming inside a page (on_done is not used) */
    void *user;
    int window;
    /* several prompts (n_prompts > 1; the prompt argument is then unused): each page is asked each
       in turn, its units next to each other in prompt order (an input that fails as a whole stays
       one unit), and its prefill is kept from one to the next */
    const char *const *prompts;
    int n_prompts;
    /* the first `skip` units (in the order they are reported) are taken as done by an earlier run
       (ocr --resume): neither run nor reported; index and n_total still count them. skip_check
       (may be NULL) is called for each of them once the inputs are listed, in order (page 1-based;
       0 for an image or an input that failed as a whole): non-zero refuses the run
       (NVL_ERR_INVALID_ARG, nothing run or reported) */
    int skip;
    int (*skip_check)(int index, const char *name, int page, void *user);
    /* (may be NULL) after the last page of an input is reported (on_page / on_page_error), with
       the input's name; non-zero stops the run (ocr --out-dir: its file is made whole there) */
    int (*on_input_done)(const char *name, void *user);
} api_pages_hooks;
/* Blocking: start, then step the engine until the run ends. */
nvl_status api_pages_run(api_engine *e, const api_media *media, int n_media, const char *prompt,
                       const api_ask_params *p, const api_pages_hooks *h, int *n_failed, nvl_err *err);

/* The same without blocking, for callers that step the engine themselves (serve, batch): the
 * pages are listed now (inputs that cannot be read are reported now), submitted as the window
 * allows from the stepping thread's callbacks, and h->on_finish runs when the run ends (maybe
 * inside this call). media, prompt and p's strings must outlive the run; free with
 * api_pages_free once finished. */
typedef struct api_pages api_pages;
nvl_status api_pages_start(api_engine *e, const api_media *media, int n_media, const char *prompt,
                           const api_ask_params *p, const api_pages_hooks *h, api_pages **out, nvl_err *err);
/* api_pages_start in two halves, for a caller whose stepping thread must not wait on files:
 * api_pages_plan lists the pages (each input sniffed, each PDF opened in its renderer and its
 * pages selected: up to --page-timeout an input), on any thread, touching no engine state; a
 * cancel (h->cb->cancel) is seen between inputs and stops a PDF being opened: NVL_ERR_CANCELLED
 * "cancelled", nothing allocated. api_pages_begin then checks h->skip and submits the first
 * pages, on the stepping thread (on_finish may run inside it); on an error the run is not
 * started and pg is still to be freed. */
nvl_status api_pages_plan(api_engine *e, const api_media *media, int n_media, const char *prompt,
                          const api_ask_params *p, const api_pages_hooks *h, api_pages **out, nvl_err *err);
nvl_status api_pages_begin(api_pages *pg, nvl_err *err);
/* Both halves for a stepping thread that must not wait: api_pages_plan on a thread of its own
 * (at most two list at once in the process; the others wait their turn, a cancel ending the
 * wait), then on_planned(user) from that thread (may be NULL: poll api_pages_planned). The
 * stepping thread then calls api_pages_plan_finish, which joins the thread, frees the planner
 * and begins the run: *out is the run (to free with api_pages_free, also when the beginning
 * failed), NULL when the listing failed. A thread that cannot start: NVL_ERR_IO, nothing started
 * (list them with api_pages_start). h, *h->cb and p are copied; media and prompt must outlive the
 * run. */
typedef struct api_pages_planner api_pages_planner;
nvl_status api_pages_plan_async(api_engine *e, const api_media *media, int n_media, const char *prompt,
                                const api_ask_params *p, const api_pages_hooks *h, void (*on_planned)(void *user),
                                void *user, api_pages_planner **out, nvl_err *err);
int api_pages_planned(const api_pages_planner *pl);
nvl_status api_pages_plan_finish(api_pages_planner *pl, api_pages **out, nvl_err *err);
int api_pages_finished(const api_pages *pg);
/* Stops submitting and cancels the running pages (from the stepping thread). */
void api_pages_cancel(api_pages *pg);
void api_pages_free(api_pages *pg);

/* 1 when JSON text holds a NUL character in a string (\u0000) or a raw 0 byte anywhere: a C string
 * made from it would be cut short there (requests refuse it). */
int api_json_has_nul(const char *text, size_t len);

/* A PDF that would not open for its password (NVL_ERR_ENCRYPTED): says how to give one. */
void api_password_hint(nvl_status st, nvl_err *err);

#endif // API_WIRE_H
