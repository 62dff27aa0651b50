/* Request parsing, result JSON, status codes, base64 and page-by-page OCR (see wire.h). */
#include "wire.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "base/json_util.h"
#include "media.h"

// ---------------------------------------------------------------------------
// Buffers

void api_buf_put(api_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = (b->cap ? b->cap * 2 : 256) + n;
        char *np = nvl_realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void api_buf_printf(api_buf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        api_buf_put(b, tmp, (size_t)n);
        return;
    }
    char *big = nvl_malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    api_buf_put(b, big, (size_t)n);
    nvl_free(big);
}

void api_buf_json_str(api_buf *b, const char *s, size_t n) {
    api_buf_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        api_buf_put(b, s + run, i - run);
        run = i + 1;
        if (c == '"') api_buf_put(b, "\\\"", 2);
        else if (c == '\\') api_buf_put(b, "\\\\", 2);
        else if (c == '\n') api_buf_put(b, "\\n", 2);
        else if (c == '\t') api_buf_put(b, "\\t", 2);
        else if (c == '\r') api_buf_put(b, "\\r", 2);
        else api_buf_printf(b, "\\u%04x", c);
    }
    api_buf_put(b, s + run, n - run);
    api_buf_put(b, "\"", 1);
}

void api_buf_line_text(api_buf *b, const char *s, int named) {
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        /* (n 4: the terminator ends a sequence cut short, as a byte that is no continuation) */
        if (*c >= 0x80 && !nvl_utf8_seq(c, 4)) api_buf_printf(b, "\\x%02x", *c); /* (not UTF-8: a log line kept raw bytes) */
        else if (named && *c == '\n') api_buf_put(b, "\\n", 2);
        else if (named && *c == '\\') api_buf_put(b, "\\\\", 2);
        else if (*c < 0x20 || *c == 0x7f) api_buf_printf(b, "\\x%02x", *c);
        else if (*c == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f) api_buf_printf(b, "\\u%04x", *++c);
        else if (*c == 0xe2 && c[1] == 0x80 && (c[2] == 0xa8 || c[2] == 0xa9)) {
            api_buf_printf(b, "\\u%04x", 0x2000u + (c[2] - 0x80u));
            c += 2;
        } else { /* a byte, or a whole UTF-8 sequence (its continuation bytes are not stray ones) */
            const size_t k = *c >= 0x80 ? nvl_utf8_seq(c, 4) : 1;
            api_buf_put(b, (const char *)c, k);
            c += k - 1;
        }
    }
}

void api_buf_free(api_buf *b) {
    nvl_free(b->p);
    memset(b, 0, sizeof *b);
}

cJSON *api_json_text(const char *s, size_t n) {
    if (!memchr(s, 0, n)) return cJSON_CreateString(s); /* (s is NUL-terminated after its n bytes) */
    api_buf b = {0};
    api_buf_json_str(&b, s, n);
    cJSON *o = b.oom ? NULL : cJSON_CreateRaw(b.p);
    api_buf_free(&b);
    return o;
}

// ---------------------------------------------------------------------------
// Status codes and results

const char *api_request_error_code(nvl_status st) {
    return st == NVL_ERR_FORMAT ? "bad_json" : st == NVL_ERR_UNSUPPORTED ? "unsupported_version" : st == NVL_ERR_NOMEM ? "out_of_memory" : "bad_request";
}

const char *api_status_code(nvl_status st) {
    switch (st) {
    case NVL_OK: return "ok";
    case NVL_ERR_NOMEM: return "out_of_memory";
    case NVL_ERR_INVALID_ARG: return "invalid_argument";
    case NVL_ERR_FORMAT: return "bad_format";
    case NVL_ERR_IO: return "io_error";
    case NVL_ERR_NOT_FOUND: return "not_found";
    case NVL_ERR_UNSUPPORTED: return "unsupported";
    case NVL_ERR_SHAPE: return "shape_mismatch";
    case NVL_ERR_DTYPE: return "dtype_mismatch";
    case NVL_ERR_LIMIT: return "limit_exceeded";
    case NVL_ERR_ENCRYPTED: return "encrypted";
    case NVL_ERR_NO_DEVICE: return "no_device";
    case NVL_ERR_DEVICE: return "device_error";
    case NVL_ERR_CANCELLED: return "cancelled";
    case NVL_ERR_TRUNCATED: return "truncated";
    case NVL_ERR_CONFIG: return "bad_config";
    case NVL_ERR_INTERNAL: return "internal_error";
    case NVL_ERR_BUSY: return "busy";
    case NVL_ERR_TIMEOUT: return "timeout";
    }
    return "internal_error";
}

/* A new object appended to arr, with its "name" (NULL when out of memory). */
static cJSON *named_item(cJSON *arr, const char *name) {
    cJSON *x = cJSON_CreateObject();
    if (!x) return NULL;
    cJSON_AddItemToArray(arr, x);
    cJSON_AddStringToObject(x, "name", name ? name : "");
    return x;
}

cJSON *api_result_to_json(const api_ask_result *r) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddItemToObject(o, "answer", api_json_text(r->answer ? r->answer : "", api_answer_len(r)));
    if (r->reasoning) cJSON_AddItemToObject(o, "reasoning", api_json_text(r->reasoning, api_reasoning_len(r)));
    else cJSON_AddNullToObject(o, "reasoning");
    cJSON_AddStringToObject(o, "finish_reason", r->finish_reason ? r->finish_reason : "stop");
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    if (u) {
        cJSON_AddNumberToObject(u, "prompt_tokens", (double)r->n_prompt);
        cJSON_AddNumberToObject(u, "image_tokens", (double)r->n_image_tokens);
        cJSON_AddNumberToObject(u, "completion_tokens", (double)r->n_ids);
        cJSON_AddNumberToObject(u, "cached_prompt_tokens", (double)r->n_cached);
        cJSON_AddNumberToObject(u, "max_tiles", r->max_tiles);
    }
    cJSON *t = cJSON_AddObjectToObject(o, "timings_s");
    if (t) {
        cJSON_AddNumberToObject(t, "media", round(r->t_media * 1e4) / 1e4);
        cJSON_AddNumberToObject(t, "prefix_wait", round(r->t_wait * 1e4) / 1e4);
        cJSON_AddNumberToObject(t, "vision", round(r->t_vision * 1e4) / 1e4);
        cJSON_AddNumberToObject(t, "prefill", round(r->t_prefill * 1e4) / 1e4);
        cJSON_AddNumberToObject(t, "generation", round(r->t_generate * 1e4) / 1e4);
        /* (one token: sampled from the prefill's logits, no decode step to time: 0) */
        cJSON_AddNumberToObject(t, "tokens_per_s", round(api_decode_tokens_per_s(r) * 100) / 100);
        cJSON_AddStringToObject(t, "backend", r->backend ? r->backend : "cpu");
    }
    cJSON *m = cJSON_AddArrayToObject(o, "media");
    for (int i = 0; m && i < r->n_media; i++) {
        const api_media_record *mr = &r->media[i];
        cJSON *x = named_item(m, mr->name);
        if (!x) break;
        if (mr->is_video) {
            cJSON_AddStringToObject(x, "kind", "video");
            cJSON_AddNumberToObject(x, "frames", mr->n_frames);
            cJSON *ft = cJSON_AddArrayToObject(x, "frame_tokens");
            cJSON *fs = cJSON_AddArrayToObject(x, "frame_times_s");
            for (int f = 0; f < mr->n_frames && mr->frame_tokens && mr->frame_ts; f++) {
                if (ft) cJSON_AddItemToArray(ft, cJSON_CreateNumber(mr->frame_tokens[f]));
                if (fs) cJSON_AddItemToArray(fs, cJSON_CreateNumber(round(mr->frame_ts[f] * 1000) / 1000));
            }
        } else {
            cJSON_AddStringToObject(x, "kind", mr->page ? "pdf_page" : "image");
            if (mr->page) cJSON_AddNumberToObject(x, "page", mr->page);
            cJSON_AddNumberToObject(x, "tiles", mr->n_tiles);
        }
        cJSON_AddNumberToObject(x, "image_tokens", (double)mr->image_tokens);
        cJSON_AddBoolToObject(x, "cached", mr->cached);
    }
    if (r->n_skipped > 0) { /* pages left out (skip_bad_pages) */
        cJSON *sk = cJSON_AddArrayToObject(o, "skipped_pages");
        for (int i = 0; sk && i < r->n_skipped; i++) {
            const api_skipped_page *k = &r->skipped[i];
            cJSON *x = named_item(sk, k->name);
            if (!x) break;
            cJSON_AddNumberToObject(x, "page", k->page);
            cJSON_AddStringToObject(x, "code", api_status_code(k->st));
            cJSON_AddStringToObject(x, "message", k->message ? k->message : "");
        }
    }
    if (r->notice) cJSON_AddStringToObject(o, "notice", r->notice);
    return o;
}

cJSON *api_page_to_json(const char *name, int page, const api_ask_result *r, const char *text_key) {
    cJSON *o = cJSON_CreateObject();
    cJSON *res = api_result_to_json(r);
    if (!o || !res) {
        cJSON_Delete(o);
        cJSON_Delete(res);
        return NULL;
    }
    cJSON_AddStringToObject(o, "file", name);
    if (page) cJSON_AddNumberToObject(o, "page", page);
    cJSON_AddItemToObject(o, text_key, cJSON_DetachItemFromObject(res, "answer")); /* (made once, above) */
    cJSON_AddItemToObject(o, "usage", cJSON_DetachItemFromObject(res, "usage"));
    cJSON_AddItemToObject(o, "timings_s", cJSON_DetachItemFromObject(res, "timings_s"));
    cJSON_AddStringToObject(o, "finish_reason", r->finish_reason ? r->finish_reason : "stop");
    if (r->reasoning) /* (with think on only: pages read without reasoning keep their fields) */
        cJSON_AddItemToObject(o, "reasoning", cJSON_DetachItemFromObject(res, "reasoning"));
    cJSON_Delete(res);
    return o;
}

cJSON *api_page_error_to_json(const char *name, int page, nvl_status st, const char *msg) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "file", name);
    if (page) cJSON_AddNumberToObject(o, "page", page);
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    if (e) {
        cJSON_AddStringToObject(e, "code", api_status_code(st));
        cJSON_AddStringToObject(e, "message", msg);
    }
    return o;
}

int api_utf8_valid(const char *s, size_t n) { return nvl_utf8_bad_at(s, n) == n; }

char *api_utf8_fix(const char *s, size_t n, size_t *out_len) {
    size_t bad = 0;
    for (size_t i = 0; i < n;) {
        size_t l = nvl_utf8_seq((const unsigned char *)s + i, n - i);
        if (!l) bad++, l = 1;
        i += l;
    }
    char *o = nvl_malloc(n + 2 * bad + 1); /* each bad byte (1) becomes U+FFFD (3) */
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t l = nvl_utf8_seq((const unsigned char *)s + i, n - i);
        if (!l) {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i++;
        } else {
            memcpy(o + k, s + i, l);
            k += l;
            i += l;
        }
    }
    o[k] = 0;
    if (out_len) *out_len = k;
    return o;
}

char *api_json_print(const cJSON *o, size_t *len) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    if (!s) return NULL;
    char *f = api_utf8_fix(s, strlen(s), len);
    cJSON_free(s);
    return f;
}

void api_json_line(FILE *f, cJSON *o) {
    char *s = api_json_print(o, NULL);
    if (s) fprintf(f, "%s\n", s);
    nvl_free(s);
    cJSON_Delete(o);
}

// ---------------------------------------------------------------------------
// Base64

static int b64v(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

static int b64_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

nvl_status api_base64_decode(const char *s, size_t n, uint8_t **out, size_t *out_len, nvl_err *err) {
    *out = NULL;
    *out_len = 0;
    /* padding and white space at the end; white space within (lines wrapped at 76, as base64(1)
       and MIME write them) is skipped; a character outside the alphabets is named first */
    while (n > 0 && (s[n - 1] == '=' || b64_space(s[n - 1]))) n--;
    size_t sig = 0;
    for (size_t i = 0; i < n; i++) {
        if (b64_space(s[i])) continue;
        if (b64v((unsigned char)s[i]) < 0) {
            const unsigned char c = (unsigned char)s[i];
            if (c >= 0x20 && c < 0x7f)
                return nvl_err_set(err, NVL_ERR_FORMAT, "base64: '%c' at offset %zu is not a base64 character%s", c, i,
                                   c == '=' ? " (padding ends the data)" : "");
            return nvl_err_set(err, NVL_ERR_FORMAT, "base64: byte 0x%02x at offset %zu is not a base64 character", c, i);
        }
        sig++;
    }
    if (sig % 4 == 1) return nvl_err_set(err, NVL_ERR_FORMAT, "base64: %zu characters cannot be base64 (one too many or "
                                         "three too few: cut short?)", sig);
    uint8_t *o = nvl_malloc(sig / 4 * 3 + 3);
    if (!o) return nvl_err_set(err, NVL_ERR_NOMEM, "base64: out of memory for %zu bytes", sig / 4 * 3);
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        if (b64_space(s[i])) continue;
        int v = b64v((unsigned char)s[i]);
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[k++] = (uint8_t)(acc >> bits);
        }
    }
    *out = o;
    *out_len = k;
    return NVL_OK;
}

// ---------------------------------------------------------------------------
// Requests

const char *api_request_type_name(enum api_request_type t) {
    static const char *n[] = {"ask", "ocr", "cancel", "status"};
    return (unsigned)t < 4 ? n[t] : "unknown";
}

/* Every field of o is one of allowed, and none comes twice: cJSON reads the first of two, Python's
 * json and jq the last, so a pipeline's tools and the server would read one line differently. */
static nvl_status check_keys(const cJSON *o, const char *const *allowed, const char *where, nvl_err *err) {
    for (const cJSON *c = o->child; c; c = c->next) {
        int ok = 0;
        for (int i = 0; allowed[i] && !ok; i++) ok = !strcmp(c->string, allowed[i]);
        if (!ok) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: unknown field '%s'", where, c->string);
        for (const cJSON *d = o->child; d != c; d = d->next)
            if (!strcmp(d->string, c->string))
                return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: field '%s' given twice", where, c->string);
    }
    return NVL_OK;
}

static nvl_status get_num(const cJSON *o, const char *k, double lo, double hi, int integer, double *v, const char *where,
                          nvl_err *err) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!x) return NVL_OK;
    /* JSON has no NaN, but 1e999 parses as infinity: only finite numbers within range pass */
    if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s.%s: expected a finite number", where, k);
    if (!(x->valuedouble >= lo && x->valuedouble <= hi))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s.%s: %.16g is outside %.16g..%.16g", where, k, x->valuedouble, lo, hi);
    if (integer && x->valuedouble != floor(x->valuedouble))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s.%s: expected an integer, got %g", where, k, x->valuedouble);
    *v = x->valuedouble;
    return NVL_OK;
}

static int is_int(const char *cast) { return strcmp(cast, "double") && strcmp(cast, "float"); }

static nvl_status parse_params(const cJSON *o, api_ask_params *p, const char *where, nvl_err *err) {
    static const char *const keys[] = {"max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "think",
                                       "max_tiles", "pages", "dpi", "long_side", "fps", "max_frames", "evs",
                                       "max_context", "no_cache", "password", "skip_bad_pages", NULL};
    if (!cJSON_IsObject(o)) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: expected an object", where);
    nvl_status st = check_keys(o, keys, where, err);
    if (st != NVL_OK) return st;
    double v;
#define NUM(key, lo, hi, dst, cast)                                                                        \
    v = NAN;                                                                                               \
    if ((st = get_num(o, key, lo, hi, is_int(#cast), &v, where, err)) != NVL_OK) return st;               \
    if (!isnan(v)) dst = (cast)v;
    NUM("max_tokens", 1, 1e9, p->max_tokens, int64_t);
    NUM("temperature", 0, 100, p->sampler.temperature, float);
    NUM("top_p", 0, 1, p->sampler.top_p, float);
    NUM("top_k", 0, 1e9, p->sampler.top_k, int);
    NUM("min_p", 0, 1, p->sampler.min_p, float);
    NUM("seed", 0, NVL_SEED_MAX, p->sampler.seed, uint64_t);
    NUM("max_tiles", 1, 12, p->max_tiles, int);
    /* both size the pages (dpi would win): one or the other; either overrides the other's default
       (batch: the command line's) */
    if (cJSON_GetObjectItemCaseSensitive(o, "dpi") && cJSON_GetObjectItemCaseSensitive(o, "long_side"))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: dpi and long_side both size the pages: give one", where);
    NUM("dpi", 1, 1200, p->dpi, double);
    if (!isnan(v)) p->long_side = 0;
    NUM("long_side", 16, 16384, p->long_side, int);
    if (!isnan(v)) p->dpi = 0;
    NUM("fps", 0.01, 240, p->fps, double);
    NUM("max_frames", 1, 100000, p->max_frames, int);
    NUM("evs", 0, 0.99, p->evs, double);
    NUM("max_context", 16, 1e9, p->max_context, int64_t);
#undef NUM
    const cJSON *x;
    if ((x = cJSON_GetObjectItemCaseSensitive(o, "think"))) {
        if (!cJSON_IsBool(x)) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s.think: expected true or false", where);
        p->think = cJSON_IsTrue(x);
    }
    if ((x = cJSON_GetObjectItemCaseSensitive(o, "no_cache"))) {
        if (!cJSON_IsBool(x)) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s.no_cache: expected true or false", where);
        p->no_cache = cJSON_IsTrue(x);
    }
    if ((x = cJSON_GetObjectItemCaseSensitive(o, "skip_bad_pages"))) {
        if (!cJSON_IsBool(x)) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s.skip_bad_pages: expected true or false", where);
        p->skip_bad_pages = cJSON_IsTrue(x);
    }
    if ((x = cJSON_GetObjectItemCaseSensitive(o, "pages"))) {
        if (!cJSON_IsString(x)) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s.pages: expected a string like \"1-3,7\"", where);
        p->pages = x->valuestring;
    }
    if ((x = cJSON_GetObjectItemCaseSensitive(o, "password"))) {
        if (!cJSON_IsString(x)) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s.password: expected a string", where);
        p->password = x->valuestring;
    }
    return NVL_OK;
}

static nvl_status add_blob(api_request *rq, uint8_t *b, nvl_err *err) {
    uint8_t **nb = nvl_realloc(rq->blobs, (size_t)(rq->n_blobs + 1) * sizeof *nb);
    if (!nb) {
        nvl_free(b);
        return nvl_err_set(err, NVL_ERR_NOMEM, "request: out of memory");
    }
    rq->blobs = nb;
    rq->blobs[rq->n_blobs++] = b;
    return NVL_OK;
}

/* A media part: {"type": "image"|"video"|"pdf"|"file", "path": ... | "data": base64, "name", "pages",
 * "password"} */
static nvl_status parse_media(api_request *rq, const cJSON *o, api_media *m, const char *where, nvl_err *err) {
    static const char *const keys[] = {"type", "path", "data", "name", "pages", "password", NULL};
    nvl_status st = check_keys(o, keys, where, err);
    if (st != NVL_OK) return st;
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(o, "path"), *data = cJSON_GetObjectItemCaseSensitive(o, "data");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name"), *pages = cJSON_GetObjectItemCaseSensitive(o, "pages");
    if (!!path == !!data) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: give exactly one of \"path\" and \"data\"", where);
    if (path && (!cJSON_IsString(path) || !path->valuestring[0]))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s.path: expected a non-empty string", where);
    if (data && !cJSON_IsString(data)) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s.data: expected a base64 string", where);
    if (name && !cJSON_IsString(name)) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s.name: expected a string", where);
    if (pages && !cJSON_IsString(pages)) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s.pages: expected a string", where);
    const cJSON *pw = cJSON_GetObjectItemCaseSensitive(o, "password");
    if (pw && !cJSON_IsString(pw)) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s.password: expected a string", where);
    memset(m, 0, sizeof *m);
    m->name = name && name->valuestring[0] ? name->valuestring : NULL; /* ("": as absent; it named nothing in errors) */
    m->pages = pages ? pages->valuestring : NULL;
    m->password = pw ? pw->valuestring : NULL;
    if (path) {
        m->path = path->valuestring;
        return NVL_OK;
    }
    uint8_t *b = NULL;
    size_t bn = 0;
    if ((st = api_base64_decode(data->valuestring, strlen(data->valuestring), &b, &bn, err)) != NVL_OK) {
        nvl_err_prefix(err, "%s.data", where);
        if (st == NVL_ERR_FORMAT) err->code = st = NVL_ERR_INVALID_ARG; /* a bad field: bad_request, not bad_json */
        return st;
    }
    if (bn == 0) {
        nvl_free(b);
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s.data: empty", where);
    }
    if ((st = add_blob(rq, b, err)) != NVL_OK) return st;
    m->data = b;
    m->size = bn;
    if (!m->name) m->name = "bytes";
    return NVL_OK;
}

static int is_media_type(const char *t) {
    return !strcmp(t, "image") || !strcmp(t, "video") || !strcmp(t, "pdf") || !strcmp(t, "file");
}

void api_password_hint(nvl_status st, nvl_err *err) {
    if (st != NVL_ERR_ENCRYPTED) return;
    const size_t n = strlen(err->msg);
    snprintf(err->msg + n, sizeof err->msg - n, " (give it with --password, or \"password\" in a request's params or media part)");
}

/* 1 when a JSON string of text holds the escape \u0000, or text holds a raw 0 byte (which cJSON
 * takes into a string): the C string would end there, silently cutting a question, a path or an
 * id (two ids "a\u0000b" and "a\u0000c" would become the same "a"). Strings are followed from
 * their quotes; escapes are skipped whole. */
int api_json_has_nul(const char *text, size_t len) {
    if (memchr(text, 0, len)) return 1;
    int in_str = 0;
    for (size_t i = 0; i < len; i++) {
        if (!in_str) {
            in_str = text[i] == '"';
            continue;
        }
        if (text[i] == '"') in_str = 0;
        else if (text[i] == '\\' && i + 1 < len) {
            if (text[i + 1] == 'u' && i + 5 < len && !memcmp(text + i + 2, "0000", 4)) return 1;
            i++; /* the escaped character (a quote or a backslash among them) */
        }
    }
    return 0;
}

nvl_status api_request_parse(const char *text, size_t len, api_request *rq, nvl_err *err) {
    return api_request_parse_with(text, len, NULL, rq, err);
}

nvl_status api_request_parse_with(const char *text, size_t len, const api_ask_params *base, api_request *rq,
                                  nvl_err *err) {
    memset(rq, 0, sizeof *rq);
    rq->params = base ? *base : api_ask_params_default();
    nvl_status st = nvl_json_parse(&rq->root, text, len, "request", err);
    if (st != NVL_OK) return st;
    if (api_json_has_nul(text, len)) { /* (after the parse: malformed JSON is bad_json whatever it holds) */
        st = nvl_err_set(err, NVL_ERR_INVALID_ARG,
                         "request: a string holds a NUL character (\\u0000 or a raw 0 byte), which no question, path or id may");
        cJSON_Delete(rq->root);
        rq->root = NULL;
        return st;
    }
    const cJSON *r = rq->root;
    char where[96];
    if (!cJSON_IsObject(r)) {
        st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "request: expected a JSON object");
        goto fail;
    }
    static const char *const keys[] = {"v", "id", "type", "messages", "files", "question", "prompt", "params", "target", NULL};
    if ((st = check_keys(r, keys, "request", err)) != NVL_OK) goto fail;
    const cJSON *x;
    if ((x = cJSON_GetObjectItemCaseSensitive(r, "v")) && (!cJSON_IsNumber(x) || x->valuedouble != API_PROTOCOL_VERSION)) {
        st = nvl_err_set(err, NVL_ERR_UNSUPPORTED, "request.v: this server speaks protocol version %d", API_PROTOCOL_VERSION);
        goto fail;
    }
    if ((x = cJSON_GetObjectItemCaseSensitive(r, "id"))) {
        if (!cJSON_IsString(x) || strlen(x->valuestring) > 256) {
            st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "request.id: expected a string of at most 256 bytes");
            goto fail;
        }
        rq->id = x->valuestring;
    }
    if ((x = cJSON_GetObjectItemCaseSensitive(r, "type"))) {
        const char *t = cJSON_IsString(x) ? x->valuestring : "";
        if (!strcmp(t, "ask")) rq->type = API_REQ_ASK;
        else if (!strcmp(t, "ocr")) rq->type = API_REQ_OCR;
        else if (!strcmp(t, "cancel")) rq->type = API_REQ_CANCEL;
        else if (!strcmp(t, "status")) rq->type = API_REQ_STATUS;
        else {
            st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "request.type: expected \"ask\", \"ocr\", \"cancel\" or \"status\"");
            goto fail;
        }
    }
    { /* a field of another type of request is refused, as an unknown one is (an ask's "prompt", a
         status's "files" ran without a word; a review). The fields each type takes: */
        static const char *const of[4] = {[API_REQ_ASK] = " v id type messages files question params ",
                                          [API_REQ_OCR] = " v id type messages files question prompt params ",
                                          [API_REQ_CANCEL] = " v id type target ",
                                          [API_REQ_STATUS] = " v id type "};
        for (const cJSON *c = r->child; c; c = c->next) {
            char key[64];
            snprintf(key, sizeof key, " %.60s ", c->string);
            if (!strstr(of[rq->type], key)) {
                st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "request.%s: %s %s request takes no \"%s\"", c->string,
                                 rq->type == API_REQ_ASK || rq->type == API_REQ_OCR ? "an" : "a", api_request_type_name(rq->type), c->string);
                goto fail;
            }
        }
    }
    if (rq->type == API_REQ_CANCEL) {
        x = cJSON_GetObjectItemCaseSensitive(r, "target");
        if (!cJSON_IsString(x)) {
            st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "request.target: a cancel request names the id to cancel");
            goto fail;
        }
        rq->target = x->valuestring;
        return NVL_OK;
    }
    if (rq->type == API_REQ_STATUS) return NVL_OK;
    if ((x = cJSON_GetObjectItemCaseSensitive(r, "params")) && (st = parse_params(x, &rq->params, "request.params", err)) != NVL_OK)
        goto fail;
    if ((x = cJSON_GetObjectItemCaseSensitive(r, "prompt"))) {
        if (!cJSON_IsString(x)) {
            st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "request.prompt: expected a string");
            goto fail;
        }
        rq->prompt = x->valuestring;
    }
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(r, "messages");
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(r, "files");
    const cJSON *question = cJSON_GetObjectItemCaseSensitive(r, "question");
    if (msgs && (files || question)) {
        st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "request: give \"messages\" or \"files\" + \"question\", not both");
        goto fail;
    }
    if (!msgs) { /* files + question: one user turn */
        int nf = files ? cJSON_GetArraySize(files) : 0;
        if (files && !cJSON_IsArray(files)) {
            st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "request.files: expected an array of paths or media objects");
            goto fail;
        }
        if (question && !cJSON_IsString(question)) {
            st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "request.question: expected a string");
            goto fail;
        }
        if (rq->type == API_REQ_ASK && !question) {
            st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "request: an ask request needs \"messages\" or \"question\"");
            goto fail;
        }
        if (rq->type == API_REQ_OCR && nf == 0) {
            st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "request: an ocr request needs \"files\"");
            goto fail;
        }
        if (rq->type == API_REQ_OCR && /* (taken, it would do nothing; batch's --skip-bad-pages is for its questions) */
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "params"), "skip_bad_pages"))) {
            st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "request.params.skip_bad_pages: an ocr request reads each page "
                             "alone (a page that cannot be read fails alone, the others go on): the option is for questions");
            goto fail;
        }
        if (rq->type == API_REQ_OCR && question) { /* (else it would be read as one more input) */
            st = nvl_err_set(err, NVL_ERR_INVALID_ARG,
                             "request.question: an ocr request takes no question (its instruction per page is \"prompt\")");
            goto fail;
        }
        rq->parts = nvl_calloc((size_t)nf + 1, sizeof *rq->parts);
        rq->msgs = nvl_calloc(1, sizeof *rq->msgs);
        if (!rq->parts || !rq->msgs) {
            st = nvl_err_set(err, NVL_ERR_NOMEM, "request: out of memory");
            goto fail;
        }
        int i = 0;
        for (const cJSON *f = files ? files->child : NULL; f; f = f->next, i++) {
            snprintf(where, sizeof where, "request.files[%d]", i);
            rq->parts[i].kind = API_PART_MEDIA;
            if (cJSON_IsString(f) && f->valuestring[0]) rq->parts[i].media.path = f->valuestring;
            else if (cJSON_IsObject(f)) {
                if ((st = parse_media(rq, f, &rq->parts[i].media, where, err)) != NVL_OK) goto fail;
            } else {
                st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: expected a path or a media object", where);
                goto fail;
            }
        }
        int np = nf;
        if (question) {
            rq->parts[np].kind = API_PART_TEXT;
            rq->parts[np++].text = question->valuestring;
        }
        rq->msgs[0] = (api_message){"user", rq->parts, np};
        rq->n_msgs = 1;
        return NVL_OK;
    }
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) < 1) {
        st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "request.messages: expected a non-empty array");
        goto fail;
    }
    if (rq->type == API_REQ_OCR) {
        st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "request: an ocr request takes \"files\", not \"messages\"");
        goto fail;
    }
    int nm = cJSON_GetArraySize(msgs), total = 0;
    for (const cJSON *m = msgs->child; m; m = m->next) {
        const cJSON *c = cJSON_IsObject(m) ? cJSON_GetObjectItemCaseSensitive(m, "content") : NULL;
        total += cJSON_IsArray(c) ? cJSON_GetArraySize(c) : 1;
    }
    rq->msgs = nvl_calloc((size_t)nm, sizeof *rq->msgs);
    rq->parts = nvl_calloc((size_t)total + 1, sizeof *rq->parts);
    if (!rq->msgs || !rq->parts) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "request: out of memory");
        goto fail;
    }
    int mi = 0, pi = 0;
    for (const cJSON *m = msgs->child; m; m = m->next, mi++) {
        snprintf(where, sizeof where, "request.messages[%d]", mi);
        static const char *const mkeys[] = {"role", "content", NULL};
        if (!cJSON_IsObject(m)) {
            st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: expected an object", where);
            goto fail;
        }
        if ((st = check_keys(m, mkeys, where, err)) != NVL_OK) goto fail;
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role"), *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(role) || (strcmp(role->valuestring, "system") && strcmp(role->valuestring, "user") &&
                                      strcmp(role->valuestring, "assistant"))) {
            st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s.role: expected \"system\", \"user\" or \"assistant\"", where);
            goto fail;
        }
        rq->msgs[mi].role = role->valuestring;
        rq->msgs[mi].parts = rq->parts + pi;
        if (cJSON_IsString(content)) {
            rq->parts[pi].kind = API_PART_TEXT;
            rq->parts[pi++].text = content->valuestring;
        } else if (cJSON_IsArray(content)) {
            int ci = 0;
            for (const cJSON *c = content->child; c; c = c->next, ci++) {
                char w2[128];
                snprintf(w2, sizeof w2, "%s.content[%d]", where, ci);
                const cJSON *type = cJSON_IsObject(c) ? cJSON_GetObjectItemCaseSensitive(c, "type") : NULL;
                if (!cJSON_IsString(type)) {
                    st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s.type: expected \"text\", \"image\", \"video\", \"pdf\" or \"file\"", w2);
                    goto fail;
                }
                if (!strcmp(type->valuestring, "text")) {
                    static const char *const tkeys[] = {"type", "text", NULL};
                    const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "text");
                    if ((st = check_keys(c, tkeys, w2, err)) != NVL_OK) goto fail;
                    if (!cJSON_IsString(t)) {
                        st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s.text: expected a string", w2);
                        goto fail;
                    }
                    rq->parts[pi].kind = API_PART_TEXT;
                    rq->parts[pi++].text = t->valuestring;
                } else if (is_media_type(type->valuestring)) {
                    if (strcmp(role->valuestring, "user")) {
                        st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: media belong in a user message", w2);
                        goto fail;
                    }
                    rq->parts[pi].kind = API_PART_MEDIA;
                    if ((st = parse_media(rq, c, &rq->parts[pi++].media, w2, err)) != NVL_OK) goto fail;
                } else {
                    st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s.type: unknown part type '%s'", w2, type->valuestring);
                    goto fail;
                }
            }
        } else {
            st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s.content: expected a string or an array of parts", where);
            goto fail;
        }
        rq->msgs[mi].n_parts = (int)(rq->parts + pi - rq->msgs[mi].parts);
    }
    rq->n_msgs = nm;
    return NVL_OK;
fail:
    api_request_free(rq);
    return st;
}

int api_request_has_param(const api_request *rq, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(rq->root, "params"), key) != NULL;
}

cJSON *api_json_merge(cJSON *to, cJSON *from) {
    if (!to || !from) {
        cJSON_Delete(from);
        return to;
    }
    for (cJSON *x = from->child; x;) {
        cJSON *nx = x->next;
        cJSON_AddItemToObject(to, x->string, cJSON_DetachItemViaPointer(from, x));
        x = nx;
    }
    cJSON_Delete(from);
    return to;
}

void api_request_free(api_request *rq) {
    cJSON_Delete(rq->root);
    nvl_free(rq->msgs);
    nvl_free(rq->parts);
    for (int i = 0; i < rq->n_blobs; i++) nvl_free(rq->blobs[i]);
    nvl_free(rq->blobs);
    memset(rq, 0, sizeof *rq);
}
