/* cJSON wrappers: parsing with Python's Infinity/NaN literals, typed getters with messages; the
 * UTF-8 check JSON text and safetensors headers share. */
#include "json_util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "mapped_file.h"

size_t nvl_utf8_seq(const unsigned char *s, size_t n) {
    const unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

size_t nvl_utf8_bad_at(const void *s, size_t n) {
    const unsigned char *b = s;
    for (size_t i = 0; i < n;) {
        const size_t l = nvl_utf8_seq(b + i, n - i);
        if (!l) return i;
        i += l;
    }
    return n;
}

/* Writes text to out (out NULL: only counts), replacing the bare literals Infinity / NaN
 * (outside strings) with values cJSON understands: 1e999 (strtod gives +inf) and
 * {"__float__": "NaN"} (transformers 5's encoding, which the number getters read as NaN: as null
 * it read as absent, so a NaN epsilon or ratio took the default silently). Returns the length
 * written. */
static size_t put_python_literals(char *out, const char *s, size_t len) {
    size_t o = 0;
    int in_str = 0;
#define PUT(src, n)                              \
    do {                                         \
        if (out) memcpy(out + o, (src), (n));    \
        o += (n);                                \
    } while (0)
    for (size_t i = 0; i < len; i++) {
        const char c = s[i];
        if (in_str) {
            PUT(&c, 1);
            if (c == '\\' && i + 1 < len) {
                i++; /* (not inside PUT: its source is evaluated only when writing) */
                PUT(&s[i], 1);
            } else if (c == '"') {
                in_str = 0;
            }
        } else if (c == 'I' && len - i >= 8 && !memcmp(s + i, "Infinity", 8)) {
            PUT("1e999", 5);
            i += 7;
        } else if (c == 'N' && len - i >= 3 && !memcmp(s + i, "NaN", 3)) {
            PUT("{\"__float__\":\"NaN\"}", 19);
            i += 2;
        } else {
            in_str = c == '"';
            PUT(&c, 1);
        }
    }
#undef PUT
    return o;
}

/* The rewritten text (put_python_literals) in a buffer of its exact size (counted first: a 30 MB
 * tokenizer.json holding the token "NaN" in a string takes this path). */
static char *rewrite_python_literals(const char *s, size_t len) {
    char *out = nvl_malloc(put_python_literals(NULL, s, len) + 1);
    if (out) out[put_python_literals(out, s, len)] = '\0';
    return out;
}

/* Where text holds something other than white space after the parsed value (end), or len. */
static size_t trailing_at(const char *text, size_t len, const char *end) {
    size_t i = end && end >= text && (size_t)(end - text) <= len ? (size_t)(end - text) : len;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) i++;
    return i;
}

/* The nesting depth at byte `at` of JSON text (brackets outside strings): cJSON stops at
 * CJSON_NESTING_LIMIT levels, which is not a syntax error to report as one. */
static int depth_at(const char *text, size_t at) {
    int d = 0, in_str = 0;
    for (size_t i = 0; i < at; i++) {
        const char c = text[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') in_str = 1;
        else if (c == '[' || c == '{') d++;
        else if (c == ']' || c == '}') d--;
    }
    return d;
}

static int hex4(const char *s, size_t avail, unsigned *out) {
    if (avail < 4) return 0;
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        const char c = s[k];
        const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        v = v << 4 | (unsigned)d;
    }
    *out = v;
    return 1;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* The first place where text breaks JSON's grammar (RFC 8259) in a way cJSON lets through or
 * reports vaguely: a number with a leading zero ("01", "-00"), a decimal point without a digit
 * after it ("1.", "1.e5") or an exponent without digits, all of which Python's json (the
 * references') refuses and cJSON read as numbers; and a \u escape that is half of a UTF-16
 * surrogate pair, which cJSON refuses as "invalid JSON". Returns the byte offset, or len when
 * there is none; *why says what. Strings are followed from their quotes, escapes skipped whole. */
static size_t strict_at(const char *t, size_t len, const char **why) {
    int in_str = 0;
    for (size_t i = 0; i < len; i++) {
        const char c = t[i];
        if (in_str) {
            if (c == '"') in_str = 0;
            else if (c == '\\' && i + 1 < len) {
                unsigned u, v;
                if (t[i + 1] == 'u' && hex4(t + i + 2, len - i - 2, &u)) {
                    if (u >= 0xD800 && u <= 0xDBFF) {
                        if (i + 11 < len && t[i + 6] == '\\' && t[i + 7] == 'u' && hex4(t + i + 8, len - i - 8, &v) &&
                            v >= 0xDC00 && v <= 0xDFFF) {
                            i += 11;
                            continue;
                        }
                        *why = "is the first half of a UTF-16 surrogate pair without its second (\\udc00-\\udfff)";
                        return i;
                    }
                    if (u >= 0xDC00 && u <= 0xDFFF) {
                        *why = "is the second half of a UTF-16 surrogate pair without its first (\\ud800-\\udbff)";
                        return i;
                    }
                    i += 5;
                    continue;
                }
                i++; /* the escaped character (a quote or a backslash among them) */
            }
            continue;
        }
        if (c == '"') {
            in_str = 1;
            continue;
        }
        if (c != '-' && !is_digit(c)) continue;
        if (i && (t[i - 1] == '_' || ((t[i - 1] | 32) >= 'a' && (t[i - 1] | 32) <= 'z'))) continue; /* (not a number token) */
        size_t j = i + (c == '-');
        if (j + 1 < len && t[j] == '0' && is_digit(t[j + 1])) {
            *why = "has a leading zero, which JSON does not allow";
            return i;
        }
        while (j < len && is_digit(t[j])) j++;
        if (j < len && t[j] == '.') {
            if (++j >= len || !is_digit(t[j])) {
                *why = "has no digit after its decimal point, which JSON requires";
                return i;
            }
            while (j < len && is_digit(t[j])) j++;
        }
        if (j < len && (t[j] == 'e' || t[j] == 'E')) {
            j++;
            if (j < len && (t[j] == '+' || t[j] == '-')) j++;
            if (j >= len || !is_digit(t[j])) {
                *why = "has an exponent without digits";
                return i;
            }
            while (j < len && is_digit(t[j])) j++;
        }
        if (j > i) i = j - 1;
    }
    return len;
}

static nvl_status parse_failed(const char *what, const char *text, size_t len, size_t off, nvl_err *err) {
    /* (cJSON stops at the bracket that would open level LIMIT + 1; any other error there is one) */
    if (off < len && (text[off] == '[' || text[off] == '{') && depth_at(text, off) >= CJSON_NESTING_LIMIT)
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: JSON nested deeper than %d levels at byte %zu", what,
                           CJSON_NESTING_LIMIT, off);
    return nvl_err_set(err, NVL_ERR_FORMAT, "%s: invalid JSON near byte %zu", what, off);
}

nvl_status nvl_json_parse(cJSON **out, const char *text, size_t len, const char *what,
                          nvl_err *err) {
    *out = NULL;
    const char *why = NULL;
    const size_t bad_at = strict_at(text, len, &why);
    if (bad_at < len) {
        size_t n = 0; /* the number or the escape, as written (at most 24 bytes) */
        if (text[bad_at] == '\\') n = 6;
        else
            while (bad_at + n < len && n < 24 && (is_digit(text[bad_at + n]) || strchr("+-.eE", text[bad_at + n]))) n++;
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: invalid JSON at byte %zu: %s'%.*s' %s", what, bad_at,
                           text[bad_at] == '\\' ? "the escape " : "the number ", (int)n, text + bad_at, why);
    }
    if (!memmem(text, len, "Infinity", 8) && !memmem(text, len, "NaN", 3)) {
        /* no Python literals anywhere: parse in place (the common case, and the fast one for
         * 30 MB tokenizer.json files) */
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
        if (!j) return parse_failed(what, text, len, end ? (size_t)(end - text) : (size_t)0, err);
        const size_t at = trailing_at(text, len, end);
        if (at < len) {
            cJSON_Delete(j);
            return nvl_err_set(err, NVL_ERR_FORMAT, "%s: content after the JSON value at byte %zu (one value per text)",
                               what, at);
        }
        *out = j;
        return NVL_OK;
    }
    char *buf = rewrite_python_literals(text, len);
    if (!buf) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory parsing JSON", what);
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(buf, &end, 0);
    if (!j) {
        const nvl_status st = parse_failed(what, buf, strlen(buf), end ? (size_t)(end - buf) : 0, err);
        nvl_free(buf);
        return st;
    }
    const size_t blen = strlen(buf), at = trailing_at(buf, blen, end);
    nvl_free(buf);
    if (at < blen) {
        cJSON_Delete(j);
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: content after the JSON value (one value per text)", what);
    }
    *out = j;
    return NVL_OK;
}

static int cmp_key(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* A key that appears twice in one object of v (the first found), "" when none, NULL when out of
 * memory (each object's keys sorted). */
static const char *dup_key(const cJSON *v) {
    if (!cJSON_IsArray(v) && !cJSON_IsObject(v)) return "";
    size_t n = 0;
    for (const cJSON *c = v->child; c; c = c->next) {
        const char *d = dup_key(c);
        if (!d || *d) return d;
        n++;
    }
    if (!cJSON_IsObject(v) || n < 2) return "";
    const char **k = nvl_malloc(n * sizeof *k);
    if (!k) return NULL;
    size_t m = 0;
    for (const cJSON *c = v->child; c; c = c->next)
        if (c->string) k[m++] = c->string;
    qsort(k, m, sizeof *k, cmp_key);
    const char *d = "";
    for (size_t i = 1; i < m && !*d; i++)
        if (!strcmp(k[i - 1], k[i])) d = k[i];
    nvl_free(k);
    return d;
}

nvl_status nvl_json_load_file(cJSON **out, const char *path, size_t max_bytes, nvl_err *err) {
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    nvl_status st = nvl_read_file(path, max_bytes, &text, &len, err);
    if (st != NVL_OK) return st;
    st = nvl_json_parse(out, text, len, path, err);
    /* (cJSON cuts a key at an escaped NUL: "x\u0000a" and "x\u0000b" would look alike) */
    const int nul_key = memmem(text, len, "\\u0000", 6) != NULL;
    nvl_free(text);
    if (st != NVL_OK || nul_key) return st;
    /* a key given twice: cJSON finds the first, Python's json (transformers, the reference) keeps the
       last, so the two would read different checkpoints (a review) */
    const char *d = dup_key(*out);
    if (!d || *d) {
        st = d ? nvl_err_set(err, NVL_ERR_CONFIG,
                             "%s: key '%s' appears twice in one object (Python's json reads the last, so which is "
                             "meant is unclear: keep one)", path, d)
               : nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
        cJSON_Delete(*out);
        *out = NULL;
    }
    return st;
}

/* A number, or transformers 5's encoding of non-finite floats: {"__float__": "Infinity"}
 * (also "-Infinity", "NaN", or a decimal string). */
static int json_number(const cJSON *v, double *out) {
    if (cJSON_IsNumber(v)) {
        *out = v->valuedouble;
        return 1;
    }
    if (cJSON_IsObject(v) && cJSON_GetArraySize(v) == 1) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(v, "__float__");
        if (!cJSON_IsString(f)) return 0;
        const char *s = f->valuestring;
        if (!strcmp(s, "Infinity") || !strcmp(s, "inf")) *out = INFINITY;
        else if (!strcmp(s, "-Infinity") || !strcmp(s, "-inf")) *out = -INFINITY;
        else if (!strcmp(s, "NaN") || !strcmp(s, "nan")) *out = NAN;
        else {
            char *end = NULL;
            *out = strtod(s, &end);
            if (!end || *end || end == s) return 0;
        }
        return 1;
    }
    return 0;
}

static const char *type_name(const cJSON *v) {
    if (!v) return "missing";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "invalid";
}

static nvl_status bad(const char *what, const char *key, const cJSON *v, const char *expected,
                      nvl_err *err) {
    if (!v)
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: missing key '%s' (expected %s)", what, key,
                           expected);
    return nvl_err_set(err, NVL_ERR_CONFIG, "%s: key '%s' is %s, expected %s", what, key,
                       type_name(v), expected);
}

static const cJSON *item(const cJSON *obj, const char *key) {
    return (obj && cJSON_IsObject(obj)) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

nvl_status nvl_json_get_int(const cJSON *obj, const char *key, int64_t *out, const char *what,
                            nvl_err *err) {
    const cJSON *v = item(obj, key);
    if (!v || !cJSON_IsNumber(v)) return bad(what, key, v, "an integer", err);
    double d = v->valuedouble;
    if (!(d == floor(d)) || fabs(d) > 9.0e15)
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: key '%s' is %g, expected an integer", what,
                           key, d);
    *out = (int64_t)d;
    return NVL_OK;
}

nvl_status nvl_json_get_double(const cJSON *obj, const char *key, double *out, const char *what,
                               nvl_err *err) {
    const cJSON *v = item(obj, key);
    if (!v || !json_number(v, out)) return bad(what, key, v, "a number", err);
    return NVL_OK;
}

nvl_status nvl_json_get_bool(const cJSON *obj, const char *key, int *out, const char *what,
                             nvl_err *err) {
    const cJSON *v = item(obj, key);
    if (!v || !cJSON_IsBool(v)) return bad(what, key, v, "true or false", err);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return NVL_OK;
}

nvl_status nvl_json_get_string(const cJSON *obj, const char *key, const char **out,
                               const char *what, nvl_err *err) {
    const cJSON *v = item(obj, key);
    if (!v || !cJSON_IsString(v)) return bad(what, key, v, "a string", err);
    *out = v->valuestring;
    return NVL_OK;
}

#define OPT_BODY(getter)                                 \
    const cJSON *v = item(obj, key);                     \
    if (!v || cJSON_IsNull(v)) {                         \
        *out = def;                                      \
        return NVL_OK;                                   \
    }                                                    \
    return getter(obj, key, out, what, err);

nvl_status nvl_json_opt_int(const cJSON *obj, const char *key, int64_t def, int64_t *out,
                            const char *what, nvl_err *err) {
    OPT_BODY(nvl_json_get_int)
}
nvl_status nvl_json_opt_double(const cJSON *obj, const char *key, double def, double *out,
                               const char *what, nvl_err *err) {
    OPT_BODY(nvl_json_get_double)
}
nvl_status nvl_json_opt_bool(const cJSON *obj, const char *key, int def, int *out,
                             const char *what, nvl_err *err) {
    OPT_BODY(nvl_json_get_bool)
}
nvl_status nvl_json_opt_string(const cJSON *obj, const char *key, const char *def,
                               const char **out, const char *what, nvl_err *err) {
    OPT_BODY(nvl_json_get_string)
}

nvl_status nvl_json_get_double_array(const cJSON *obj, const char *key, double *out, int cap,
                                     int *n, const char *what, nvl_err *err) {
    const cJSON *v = item(obj, key);
    if (!v || !cJSON_IsArray(v)) return bad(what, key, v, "an array of numbers", err);
    int len = cJSON_GetArraySize(v);
    if (len > cap)
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: key '%s' has %d elements, expected at most %d",
                           what, key, len, cap);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (cJSON_IsNull(e)) {
            out[i++] = NAN;
            continue;
        }
        if (!json_number(e, &out[i]))
            return nvl_err_set(err, NVL_ERR_CONFIG, "%s: key '%s'[%d] is %s, expected a number",
                               what, key, i, type_name(e));
        i++;
    }
    *n = len;
    return NVL_OK;
}

const cJSON *nvl_json_obj(const cJSON *obj, const char *key) {
    const cJSON *v = item(obj, key);
    return (v && cJSON_IsObject(v)) ? v : NULL;
}
