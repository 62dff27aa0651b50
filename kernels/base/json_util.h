/* Typed JSON getters over cJSON that report got/expected, for config.json and friends.
 *
 *   cJSON *cfg = NULL;
 *   nvl_json_load_file(&cfg, "ckpt/config.json", NVL_JSON_MAX_BYTES, &err);
 *   int64_t h;
 *   st = nvl_json_get_int(cfg, "hidden_size", &h, "config.json llm_config", &err);
 *   // missing -> "config.json llm_config: missing key 'hidden_size' (expected an integer)"
 *   cJSON_Delete(cfg);
 *
 * The parser accepts the non-JSON literals Infinity, -Infinity and NaN that Python's json
 * module writes (NVIDIA's Nemotron-H configs carry `"time_step_limit": [0.0, Infinity]`), and
 * the number getters accept transformers 5's `{"__float__": "Infinity"}` encoding.
 */
#ifndef KERNELS_BASE_JSON_UTIL_H
#define KERNELS_BASE_JSON_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cJSON;

#define NVL_JSON_MAX_BYTES ((size_t)64 << 20) /* config/index/tokenizer files above this are refused */

/* The length of the well-formed UTF-8 sequence at s (n bytes left: 1..4), or 0 where it is not
 * one (a stray byte, an overlong form, a surrogate, past U+10FFFF, cut short). A NUL ends a
 * sequence as any byte that is no continuation, so n may exceed a C string's end. */
size_t nvl_utf8_seq(const unsigned char *s, size_t n);
/* The offset of the first byte of s[0..n) not in a well-formed UTF-8 sequence, or n. */
size_t nvl_utf8_bad_at(const void *s, size_t n);

/* Parses len bytes (need not be NUL-terminated) holding one JSON value, white space around it
 * (anything else after it, e.g. a second object on a request line, is an error, not ignored).
 * what names the input in messages. *out is freed with cJSON_Delete(). @return NVL_OK or
 * NVL_ERR_FORMAT (with the byte offset). */
nvl_status nvl_json_parse(struct cJSON **out, const char *text, size_t len, const char *what,
                          nvl_err *err);
/* Reads and parses a JSON file of at most max_bytes (a config, an index). A key given twice in
 * one object is refused (NVL_ERR_CONFIG naming it): cJSON's getters find the first, Python's json
 * keeps the last. @return NVL_OK, the errors of nvl_read_file, NVL_ERR_FORMAT, NVL_ERR_CONFIG. */
nvl_status nvl_json_load_file(struct cJSON **out, const char *path, size_t max_bytes, nvl_err *err);

/* Required getters: NVL_ERR_CONFIG when the key is missing or has the wrong type. */
nvl_status nvl_json_get_int(const struct cJSON *obj, const char *key, int64_t *out,
                            const char *what, nvl_err *err);
nvl_status nvl_json_get_double(const struct cJSON *obj, const char *key, double *out,
                               const char *what, nvl_err *err);
nvl_status nvl_json_get_bool(const struct cJSON *obj, const char *key, int *out, const char *what,
                             nvl_err *err);
/* *out points into obj; valid while obj lives. */
nvl_status nvl_json_get_string(const struct cJSON *obj, const char *key, const char **out,
                               const char *what, nvl_err *err);

/* Optional getters: a missing key (or JSON null) leaves *out = def and returns NVL_OK; a key of
 * the wrong type is still an error. */
nvl_status nvl_json_opt_int(const struct cJSON *obj, const char *key, int64_t def, int64_t *out,
                            const char *what, nvl_err *err);
nvl_status nvl_json_opt_double(const struct cJSON *obj, const char *key, double def, double *out,
                               const char *what, nvl_err *err);
nvl_status nvl_json_opt_bool(const struct cJSON *obj, const char *key, int def, int *out,
                             const char *what, nvl_err *err);
nvl_status nvl_json_opt_string(const struct cJSON *obj, const char *key, const char *def,
                               const char **out, const char *what, nvl_err *err);

/* Reads an array of numbers into out[0..cap); *n gets the length. Error if longer than cap or a
 * member is not a number. */
nvl_status nvl_json_get_double_array(const struct cJSON *obj, const char *key, double *out,
                                     int cap, int *n, const char *what, nvl_err *err);

/* Object member or NULL (no error). */
const struct cJSON *nvl_json_obj(const struct cJSON *obj, const char *key);

#ifdef __cplusplus
}
#endif

#endif // KERNELS_BASE_JSON_UTIL_H
