/* Hugging Face `tokenizers` files (tokenizer.json) in general: byte-level BPE with the
 * normalizer, pre-tokenizer, added tokens and decoder the file states.
 *
 *   llm_tokenizer *tok = NULL;
 *   st = llm_tokenizer_load(&tok, "ckpt/tokenizer.json", &err);   // or a checkpoint dir
 *   int32_t *ids = NULL; int64_t n = 0;
 *   st = llm_tokenizer_encode(tok, text, len, &ids, &n, &err);   // ids: nvl_free()
 *   int32_t img = llm_tokenizer_token_id(tok, "<image>");       // -1 when absent
 *   llm_tokenizer_free(tok);
 *
 * Encoding is `encode(text, add_special_tokens=False)`: added tokens in the text are matched
 * first (with their lstrip/rstrip/single_word flags), the rest is normalized (none, NFC,
 * Sequence), split by the pre-tokenizer (Sequence of Split with Oniguruma regexes and
 * behaviours, ByteLevel) and merged by BPE (string or pair merges, ignore_merges, byte
 * fallback). Invalid UTF-8 in the input is replaced by U+FFFD per maximal subpart, as
 * Python's bytes.decode(errors="replace") does.
 * Supported: model BPE; normalizers null, NFC, Sequence of those; pre-tokenizers Split,
 * ByteLevel, Sequence of those; decoders ByteLevel, ByteFallback, Fuse, null. Anything else is
 * a load error naming the field.
 */
#ifndef LLM_TOKENIZER_H
#define LLM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct llm_tokenizer llm_tokenizer;

/* path: a tokenizer.json file or a directory holding one. @return NVL_OK; NVL_ERR_NOT_FOUND;
 * NVL_ERR_FORMAT for invalid JSON (truncated file); NVL_ERR_UNSUPPORTED for an unknown model,
 * normalizer, pre-tokenizer or decoder type; NVL_ERR_CONFIG for a missing or mistyped field. */
nvl_status llm_tokenizer_load(llm_tokenizer **out, const char *path, nvl_err *err);
void llm_tokenizer_free(llm_tokenizer *tok);

int64_t llm_tokenizer_vocab_size(const llm_tokenizer *tok); /* max id + 1 */
/* Id of an exact token string (vocab or added token); -1 when absent. */
int32_t llm_tokenizer_token_id(const llm_tokenizer *tok, const char *token);
/* The token's stored string (byte-level form for BPE tokens); NULL for unknown ids. */
const char *llm_tokenizer_token_str(const llm_tokenizer *tok, int32_t id);
int llm_tokenizer_is_special(const llm_tokenizer *tok, int32_t id);

/* Checks that the tokens the Nemotron Nano V2 VL prompt format needs exist, looked up by
 * string: <image> <img> </img> <SPECIAL_10> <SPECIAL_11> <SPECIAL_12> <think> </think> </s>,
 * and that each one's text encodes to its id alone (an added token, not split as plain text).
 * @return NVL_OK or NVL_ERR_CONFIG naming the first missing or split token. */
nvl_status llm_tokenizer_check_vl(const llm_tokenizer *tok, nvl_err *err);
/* NVL_ERR_CONFIG when the tokenizer has more ids than the model's vocabulary (n_vocab embedding
 * rows): the message names dir. */
nvl_status llm_tokenizer_check_vocab(const llm_tokenizer *tok, int64_t n_vocab, const char *dir, nvl_err *err);

/* Encodes len bytes of text. *ids is nvl_malloc'ed (free with nvl_free). */
nvl_status llm_tokenizer_encode(const llm_tokenizer *tok, const char *text, size_t len,
                                int32_t **ids, int64_t *n, nvl_err *err);
/* encode(text, add_special_tokens=True): the post_processor's TemplateProcessing "single"
 * template around the ids (BOS/EOS as the file says); the same as llm_tokenizer_encode when the
 * file has none. */
nvl_status llm_tokenizer_encode_special(const llm_tokenizer *tok, const char *text, size_t len,
                                        int32_t **ids, int64_t *n, nvl_err *err);
/* Appends ids for text to a growing buffer (*ids, *n, *cap); used by the prompt builder. */
nvl_status llm_tokenizer_encode_append(const llm_tokenizer *tok, const char *text, size_t len,
                                       int32_t **ids, int64_t *n, int64_t *cap, nvl_err *err);

/* As llm_tokenizer_encode_append, but no added token is matched starting at a byte i with
 * plain[i] set (plain may be NULL): the prompt builder marks the first byte of each special-token
 * string found in user text, so that text is tokenized as plain text. */
nvl_status llm_tokenizer_encode_append_masked(const llm_tokenizer *tok, const char *text, size_t len,
                                              const uint8_t *plain, int32_t **ids, int64_t *n, int64_t *cap,
                                              nvl_err *err);
/* Length of the special added token (special: true) whose text starts s, the longest; 0 if none. */
size_t llm_tokenizer_special_at(const llm_tokenizer *tok, const char *s, size_t n);

/* Decodes ids to bytes (special tokens included). *out is nvl_malloc'ed and NUL-terminated. */
nvl_status llm_tokenizer_decode(const llm_tokenizer *tok, const int32_t *ids, int64_t n,
                                char **out, size_t *len, nvl_err *err);

/* Streaming decoder: feed ids one at a time, get the bytes that are complete UTF-8. A token
 * that ends inside a UTF-8 sequence holds its bytes until the sequence completes. */
typedef struct llm_detok {
    const llm_tokenizer *tok;
    unsigned char pending[8];
    int n_pending;
} llm_detok;
void llm_detok_init(llm_detok *d, const llm_tokenizer *tok);
/* Writes up to cap bytes of newly completed text to out; returns the count (a token's text is
 * at most a few hundred bytes: cap >= 1024 is always enough). */
size_t llm_detok_feed(llm_detok *d, int32_t id, char *out, size_t cap);
/* Remaining held bytes (an incomplete sequence at the end) as U+FFFD; returns the count. */
size_t llm_detok_flush(llm_detok *d, char *out, size_t cap);

/* Unicode NFC of valid UTF-8 (used by the NFC normalizer; exposed for tests). *out nvl_malloc'ed. */
nvl_status llm_utf8_nfc(const char *s, size_t len, char **out, size_t *out_len);
/* Replaces invalid UTF-8 by U+FFFD (maximal subparts). *out nvl_malloc'ed. */
nvl_status llm_utf8_sanitize(const char *s, size_t len, char **out, size_t *out_len);

#ifdef __cplusplus
}
#endif

#endif // LLM_TOKENIZER_H
