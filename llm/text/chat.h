/* Prompt builder for Nemotron Nano V2 VL: chat rendering and media expansion.
 *
 *   llm_chat_message msgs[...];                 // or llm_chat_messages_from_json()
 *   char *text; size_t len;
 *   st = llm_chat_render(msgs, n, &opts, &text, &len, &err);     // the Nano V2 chat format
 *   llm_media_layout media[] = {{LLM_MEDIA_IMAGE, .n_tiles = 13}, ...};
 *   llm_prompt p;
 *   st = llm_chat_tokenize(tok, text, len, media, n_media, 256, &p, &err);
 *   ... p.ids, p.spans[i].start / .count: where each image's (or frame's) rows go ...
 *   llm_prompt_free(&p);
 *
 * Rendering (model.md §7.2; byte-identical to transformers' apply_chat_template with
 * tests/reference/nano_v2_chat_template.jinja):
 *   <s><SPECIAL_10>System\n{system}\n
 *   <SPECIAL_11>User\n{media markers and text}\n
 *   <SPECIAL_11>Assistant\n{answer without its <think> part}\n<SPECIAL_12>\n
 *   generation prompt: <SPECIAL_11>Assistant\n<think>\n (reasoning on, the default) or
 *                      <SPECIAL_11>Assistant\n<think></think> (off)
 * A system or user message containing /no_think switches reasoning off, /think on; the last
 * one wins; both markers are removed from the text. Image parts render as "<image>\n", video
 * parts as "<video>\n", where they stand in the message.
 * Media expansion (§5.4, §6.3): each <image> marker becomes <img> <image> x (per_tile x tiles)
 * </img>; each <video> marker becomes, per frame i, the separator
 * ("\n" if i > 0) + "Frame {i+1} sampled at {t:.2f} seconds: " (tokenized on its own) then
 * <img> <image> x kept_i </img>.
 */
#ifndef LLM_CHAT_H
#define LLM_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cJSON;

enum llm_part_kind { LLM_PART_TEXT = 0, LLM_PART_IMAGE = 1, LLM_PART_VIDEO = 2 };

typedef struct llm_chat_part {
    enum llm_part_kind kind;
    const char *text; /* LLM_PART_TEXT */
    size_t len;       /* bytes of text (llm_chat_escape_messages escapes a NUL among them); 0: strlen */
} llm_chat_part;

typedef struct llm_chat_message {
    const char *role; /* "system", "user", "assistant" */
    const llm_chat_part *parts;
    int n_parts;
} llm_chat_message;

typedef struct llm_chat_options {
    int add_generation_prompt; /* 1 by default */
    int think;                 /* -1: from /think and /no_think (default on); 0 off; 1 on */
} llm_chat_options;
llm_chat_options llm_chat_options_default(void);

/* Renders the conversation. *out nvl_malloc'ed, NUL-terminated. */
nvl_status llm_chat_render(const llm_chat_message *msgs, int n, const llm_chat_options *opts,
                           char **out, size_t *len, nvl_err *err);

/* Parsed messages from a JSON array ([{"role":..., "content": "text" | [{"type":"text","text":...},
 * {"type":"image"}, {"type":"video"}]}]). Strings point into root; free with
 * llm_chat_messages_free(). */
nvl_status llm_chat_messages_from_json(const struct cJSON *root, llm_chat_message **msgs, int *n,
                                       nvl_err *err);
void llm_chat_messages_free(llm_chat_message *msgs, int n);

enum llm_media_kind { LLM_MEDIA_IMAGE = 0, LLM_MEDIA_VIDEO = 1 };

typedef struct llm_media_layout {
    enum llm_media_kind kind;
    int n_tiles;           /* image: tiles incl. thumbnail */
    int n_frames;          /* video */
    const double *ts;      /* video: per-frame timestamps in seconds, or NULL ("Frame i: ") */
    const int *kept;       /* video: <image> tokens per frame (EVS), or NULL = per_tile each */
} llm_media_layout;

typedef struct llm_media_span {
    int media;     /* index into the layout array */
    int frame;     /* frame within a video, 0 for images */
    int64_t start; /* index of the first <image> token in ids */
    int64_t count; /* number of <image> tokens */
} llm_media_span;

typedef struct llm_prompt {
    int32_t *ids;
    int64_t n;
    llm_media_span *spans;
    int n_spans;
} llm_prompt;

/* User text (request text parts, questions, files' text) escaped for rendering: every place
 * where a special added token of tok or a marker (<image>, <video>, <img>, </img>) starts has
 * its first character replaced by private-use escapes (U+F0000 + byte), and so has a NUL byte
 * (which would end the text in the renderer's C strings), which chat templates pass
 * through unchanged (no whitespace, no '/think'); invalid UTF-8 becomes U+FFFD first.
 * llm_chat_tokenize undoes them and tokenizes those bytes as plain text, so typed '<image>' or
 * '<SPECIAL_12>' is text, never a marker or a control token. *out nvl_malloc'ed. */
nvl_status llm_chat_escape_text(const llm_tokenizer *tok, const char *text, size_t len, char **out, size_t *out_len,
                                nvl_err *err);

/* Every text part of msgs escaped in place (parts must be writable, e.g. from
 * llm_chat_messages_from_json), each assistant message first cut to what follows its last
 * </think>; the new strings go to *owned (free each and the array with nvl_free). */
nvl_status llm_chat_escape_messages(const llm_tokenizer *tok, llm_chat_message *msgs, int n, char ***owned, int *n_owned,
                                    nvl_err *err);
/* Rendered text with the escapes undone (what the model reads), for display. */
nvl_status llm_chat_unescape(const char *text, size_t len, char **out, size_t *out_len, nvl_err *err);
/* Ids of rendered text without media expansion (markers stay single tokens), escaped user text
 * as plain text. */
nvl_status llm_chat_encode_rendered(const llm_tokenizer *tok, const char *text, size_t len, int32_t **ids, int64_t *n,
                                    nvl_err *err);

/* The text before frame f (0-based) of a video: "Frame f+1 sampled at T seconds: " (T with two
 * decimals; "Frame f+1: " when ts is NULL), after a newline from the second frame on
 * (vLLM's Nemotron VL video prompt). Returns its length (cap >= 96 holds any). */
int llm_chat_frame_sep(char *buf, size_t cap, int f, const double *ts);

/* Tokenizes rendered text, expanding the i-th <image>/<video> marker with media[i] (kinds must
 * match, counts must agree). Requires <image>, <img>, </img> in the tokenizer. Escaped user text
 * (llm_chat_escape_text) is restored and never matched as a marker or an added token. */
nvl_status llm_chat_tokenize(const llm_tokenizer *tok, const char *text, size_t len,
                             const llm_media_layout *media, int n_media, int per_tile,
                             llm_prompt *out, nvl_err *err);
void llm_prompt_free(llm_prompt *p);

/* The checkpoint's own chat template: chat_template.jinja in dir, else tokenizer_config.json's
 * "chat_template" (a string, or a list of {name, template} where "default" is taken). *tmpl is
 * NULL (and NVL_OK) when the checkpoint has none. *special (may be NULL) gets a JSON object with
 * the named special tokens as strings (bos_token, eos_token, unk_token, pad_token, ...), as
 * transformers passes them to the template. Free with nvl_free / cJSON_Delete. */
nvl_status llm_chat_template_load(const char *dir, char **tmpl, struct cJSON **special, nvl_err *err);

/* Renders msgs with a Jinja chat template as transformers' apply_chat_template does: messages
 * whose only part is text get a string content, others a list of {"type": "image"|"video"|"text"}
 * parts; add_generation_prompt from opts; special (may be NULL) merged in. opts->think 0/1 is
 * passed as "/no_think" / "/think" appended to the system message (added when absent), the Nano
 * V2 switch, and as enable_thinking. */
nvl_status llm_chat_render_template(const char *tmpl, const llm_chat_message *msgs, int n,
                                    const llm_chat_options *opts, const struct cJSON *special,
                                    char **out, size_t *len, nvl_err *err);

/* Whether err is llm_chat_render_template's failure on the template's memory bounds, which the
 * conversation's size decides, not the template (llm_jinja_failed_on_size). */
int llm_chat_failed_on_size(const nvl_err *err);

#ifdef __cplusplus
}
#endif

#endif // LLM_CHAT_H
