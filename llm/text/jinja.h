/* A Jinja2 interpreter for Hugging Face chat templates: renders the chat_template a checkpoint
 * ships (tokenizer_config.json or chat_template.jinja) exactly as transformers'
 * apply_chat_template does (jinja2 ImmutableSandboxedEnvironment with trim_blocks,
 * lstrip_blocks and loop controls; tojson, raise_exception and strftime_now).
 *
 *   cJSON *ctx = ...;  // {"messages": [...], "add_generation_prompt": true, "bos_token": "<s>", ...}
 *   char *text; size_t len;
 *   st = llm_jinja_render(tmpl, strlen(tmpl), ctx, &text, &len, &err);
 *
 * Supported: text, {{ }}, {% if/elif/else %}, {% for x[, y] in ... [if ...] %} with else, loop.*
 * and break/continue, {% set %} (also ns.attr and block set), {% macro %} and calls,
 * {% generation %} (no-op), comments, whitespace control (-, +); expressions with literals,
 * lists, dicts, attribute/index/slice access, arithmetic, ~, comparisons, in, is-tests,
 * and/or/not, a if b else c, filters (length, count, trim, tojson, string, int, float, first,
 * last, join, list, default/d, upper, lower, capitalize, title, items, reverse, unique?, map,
 * select, reject, selectattr, rejectattr, safe, e/escape, indent, wordcount? ...) and string, dict
 * and list methods. Anything else is an error naming it and its line: nanovl never renders a
 * template differently in silence. */
#ifndef LLM_JINJA_H
#define LLM_JINJA_H

#include <stddef.h>

#include "base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cJSON;

/* Renders tmpl with the variables of ctx (a JSON object). *out is nvl_malloc'ed and
 * NUL-terminated. @return NVL_OK; NVL_ERR_FORMAT for a syntax error (with its line);
 * NVL_ERR_UNSUPPORTED for a construct nanovl does not implement (named); NVL_ERR_INVALID_ARG
 * when the template calls raise_exception (its message) or fails at run time. */
nvl_status llm_jinja_render(const char *tmpl, size_t n, const struct cJSON *ctx, char **out, size_t *len,
                            nvl_err *err);

/* Whether err is llm_jinja_render's failure on its memory bounds (NVL_ERR_LIMIT: 512 MiB of values
 * in all, 64 MiB in one string or the output), which the size of the input decides, not the
 * template: its other limits (steps, nesting, ranges, integer overflow) are the template's. */
int llm_jinja_failed_on_size(const nvl_err *err);

#ifdef __cplusplus
}
#endif

#endif // LLM_JINJA_H
