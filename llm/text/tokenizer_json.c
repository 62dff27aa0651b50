/* Fast path for the two big members of tokenizer.json (see tokenizer_json.h): model.vocab (an
 * object of string -> id) and model.merges (an array of "a b" strings or ["a", "b"] pairs) make
 * up nearly all of a 30 MB file, and building a cJSON node per entry (millions of small
 * allocations) is what made loading slow. A small scanner finds the two members, decodes them
 * straight into flat arrays, and blanks them in the text so cJSON parses only the rest. Anything
 * the scanner does not recognise makes it step aside: cJSON then parses the whole file and
 * reports the error, so malformed files get the same messages as before. */
#include "tokenizer_json.h"

#include <string.h>

#include "base/alloc.h"

typedef struct scan {
    const char *p, *end;
} scan;

static void ws(scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) s->p++;
}

static int hex4(const char *p, unsigned *v) {
    unsigned x = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        x <<= 4;
        if (c >= '0' && c <= '9') x |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') x |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') x |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *v = x;
    return 1;
}

/* Decodes a JSON string at s->p (the opening quote) into *o (advanced past a NUL). 0 = not
 * recognised. */
static int str(scan *s, char **o, uint32_t *len) {
    if (s->p >= s->end || *s->p != '"') return 0;
    const char *p = s->p + 1;
    char *d = *o, *start = d;
    for (;;) {
        if (p >= s->end) return 0;
        /* a run without escapes: copy it whole */
        const char *q = memchr(p, '"', (size_t)(s->end - p));
        if (!q) return 0;
        const char *bs = memchr(p, '\\', (size_t)(q - p));
        const char *stop = bs ? bs : q;
        int ctl = 0;
        for (const char *c = p; c < stop; c++) ctl |= (unsigned char)*c < 0x20;
        if (ctl) return 0;
        memcpy(d, p, (size_t)(stop - p));
        d += stop - p;
        p = stop;
        unsigned char c = (unsigned char)*p;
        if (c == '"') break;
        if (c < 0x20) return 0;
        if (c != '\\') {
            *d++ = (char)c;
            p++;
            continue;
        }
        if (p + 1 >= s->end) return 0;
        char e = p[1];
        p += 2;
        switch (e) {
        case '"': *d++ = '"'; break;
        case '\\': *d++ = '\\'; break;
        case '/': *d++ = '/'; break;
        case 'b': *d++ = '\b'; break;
        case 'f': *d++ = '\f'; break;
        case 'n': *d++ = '\n'; break;
        case 'r': *d++ = '\r'; break;
        case 't': *d++ = '\t'; break;
        case 'u': {
            unsigned cp;
            if (s->end - p < 4 || !hex4(p, &cp)) return 0;
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair, or cJSON's handling decides */
                unsigned lo;
                if (s->end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) return 0;
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return 0;
            }
            if (cp == 0) return 0; /* cJSON strings end at NUL: leave such files to it */
            if (cp < 0x80) *d++ = (char)cp;
            else if (cp < 0x800) {
                *d++ = (char)(0xC0 | cp >> 6);
                *d++ = (char)(0x80 | (cp & 63));
            } else if (cp < 0x10000) {
                *d++ = (char)(0xE0 | cp >> 12);
                *d++ = (char)(0x80 | (cp >> 6 & 63));
                *d++ = (char)(0x80 | (cp & 63));
            } else {
                *d++ = (char)(0xF0 | cp >> 18);
                *d++ = (char)(0x80 | (cp >> 12 & 63));
                *d++ = (char)(0x80 | (cp >> 6 & 63));
                *d++ = (char)(0x80 | (cp & 63));
            }
            break;
        }
        default: return 0;
        }
    }
    *d = 0;
    *len = (uint32_t)(d - start);
    *o = d + 1;
    s->p = p + 1;
    return 1;
}

/* Skips any JSON value (depth-limited). */
static int skip(scan *s, int depth) {
    ws(s);
    if (s->p >= s->end || depth > 64) return 0;
    char c = *s->p;
    if (c == '"') {
        const char *p = s->p + 1;
        while (p < s->end && *p != '"') p += *p == '\\' ? 2 : 1;
        if (p >= s->end) return 0;
        s->p = p + 1;
        return 1;
    }
    if (c == '{' || c == '[') {
        const char close = c == '{' ? '}' : ']';
        s->p++;
        ws(s);
        if (s->p < s->end && *s->p == close) {
            s->p++;
            return 1;
        }
        for (;;) {
            if (c == '{') {
                if (!skip(s, depth + 1)) return 0; /* key */
                ws(s);
                if (s->p >= s->end || *s->p != ':') return 0;
                s->p++;
            }
            if (!skip(s, depth + 1)) return 0;
            ws(s);
            if (s->p >= s->end) return 0;
            if (*s->p == ',') {
                s->p++;
                continue;
            }
            if (*s->p == close) {
                s->p++;
                return 1;
            }
            return 0;
        }
    }
    /* number or literal */
    const char *p = s->p;
    while (p < s->end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') p++;
    if (p == s->p) return 0;
    s->p = p;
    return 1;
}

/* The raw key at s->p equals k (no escapes in the keys we look for). */
static int key_is(scan *s, const char *k, size_t kl) {
    return s->end - s->p >= (ptrdiff_t)(kl + 2) && s->p[0] == '"' && !memcmp(s->p + 1, k, kl) && s->p[kl + 1] == '"';
}

static int parse_vocab(scan *s, tok_lists *L, char **arena) {
    size_t cap = 1024;
    L->vocab = nvl_malloc(cap * sizeof *L->vocab);
    L->vocab_id = nvl_malloc(cap * sizeof *L->vocab_id);
    if (!L->vocab || !L->vocab_id) return -1;
    ws(s);
    if (s->p >= s->end || *s->p != '{') return 0;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 1;
    }
    for (;;) {
        ws(s);
        if (L->n_vocab == cap) {
            cap *= 2;
            tok_str *nv = nvl_realloc(L->vocab, cap * sizeof *nv);
            if (nv) L->vocab = nv;
            int32_t *ni = nvl_realloc(L->vocab_id, cap * sizeof *ni);
            if (ni) L->vocab_id = ni;
            if (!nv || !ni) return -1;
        }
        tok_str *ts = &L->vocab[L->n_vocab];
        ts->s = *arena;
        if (!str(s, arena, &ts->n)) return 0;
        ws(s);
        if (s->p >= s->end || *s->p != ':') return 0;
        s->p++;
        ws(s);
        long long id = 0;
        const char *d0 = s->p;
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9' && id <= 100000000) id = id * 10 + (*s->p++ - '0');
        if (s->p == d0 || id > 100000000 || (s->p < s->end && (*s->p == '.' || *s->p == 'e' || *s->p == 'E'))) return 0;
        L->vocab_id[L->n_vocab++] = (int32_t)id;
        ws(s);
        if (s->p >= s->end) return 0;
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p == '}') {
            s->p++;
            return 1;
        }
        return 0;
    }
}

static int parse_merges(scan *s, tok_lists *L, char **arena) {
    size_t cap = 1024;
    L->merge_a = nvl_malloc(cap * sizeof *L->merge_a);
    L->merge_b = nvl_malloc(cap * sizeof *L->merge_b);
    if (!L->merge_a || !L->merge_b) return -1;
    ws(s);
    if (s->p >= s->end || *s->p != '[') return 0;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 1;
    }
    for (;;) {
        ws(s);
        if (L->n_merges == cap) {
            cap *= 2;
            tok_str *na = nvl_realloc(L->merge_a, cap * sizeof *na);
            if (na) L->merge_a = na;
            tok_str *nb = nvl_realloc(L->merge_b, cap * sizeof *nb);
            if (nb) L->merge_b = nb;
            if (!na || !nb) return -1;
        }
        tok_str *a = &L->merge_a[L->n_merges], *b = &L->merge_b[L->n_merges];
        if (s->p < s->end && *s->p == '"') { /* "a b": split at the first space */
            char *start = *arena;
            uint32_t n = 0;
            if (!str(s, arena, &n)) return 0;
            char *sp = memchr(start, ' ', n);
            if (!sp) return 0; /* the general path reports it */
            *sp = 0;
            a->s = start;
            a->n = (uint32_t)(sp - start);
            b->s = sp + 1;
            b->n = n - a->n - 1;
        } else if (s->p < s->end && *s->p == '[') {
            s->p++;
            ws(s);
            a->s = *arena;
            if (!str(s, arena, &a->n)) return 0;
            ws(s);
            if (s->p >= s->end || *s->p != ',') return 0;
            s->p++;
            ws(s);
            b->s = *arena;
            if (!str(s, arena, &b->n)) return 0;
            ws(s);
            if (s->p >= s->end || *s->p != ']') return 0;
            s->p++;
        } else {
            return 0;
        }
        L->n_merges++;
        ws(s);
        if (s->p >= s->end) return 0;
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p == ']') {
            s->p++;
            return 1;
        }
        return 0;
    }
}

void tok_lists_free(tok_lists *L) {
    nvl_free(L->arena);
    nvl_free(L->vocab);
    nvl_free(L->vocab_id);
    nvl_free(L->merge_a);
    nvl_free(L->merge_b);
    memset(L, 0, sizeof *L);
}

int tokjson_extract(char *text, size_t n, tok_lists *L) {
    memset(L, 0, sizeof *L);
    scan s = {text, text + n};
    const char *vb = NULL, *ve = NULL, *mb = NULL, *me = NULL;
    char *arena = NULL;
    ws(&s);
    if (s.p >= s.end || *s.p != '{') goto not_recognised;
    s.p++;
    for (;;) { /* top level: find "model" */
        ws(&s);
        if (s.p >= s.end) goto not_recognised;
        if (*s.p == '}') break;
        const int is_model = key_is(&s, "model", 5);
        if (!skip(&s, 0)) goto not_recognised;
        ws(&s);
        if (s.p >= s.end || *s.p != ':') goto not_recognised;
        s.p++;
        ws(&s);
        if (is_model && s.p < s.end && *s.p == '{') {
            s.p++;
            for (;;) {
                ws(&s);
                if (s.p >= s.end) goto not_recognised;
                if (*s.p == '}') {
                    s.p++;
                    break;
                }
                const int is_vocab = key_is(&s, "vocab", 5), is_merges = key_is(&s, "merges", 6);
                if (!skip(&s, 0)) goto not_recognised;
                ws(&s);
                if (s.p >= s.end || *s.p != ':') goto not_recognised;
                s.p++;
                ws(&s);
                const char *b = s.p;
                if ((is_vocab && !vb) || (is_merges && !mb)) { /* decode where it stands */
                    if (!L->arena) {
                        L->arena = nvl_malloc(n + n / 2 + 16); /* decoded + NULs <= 1.5 x encoded */
                        if (!L->arena) return -1;
                        arena = L->arena;
                    }
                    const int r = is_vocab ? parse_vocab(&s, L, &arena) : parse_merges(&s, L, &arena);
                    if (r < 0) {
                        tok_lists_free(L);
                        return -1;
                    }
                    if (r != 1) goto not_recognised;
                    if (is_vocab) vb = b, ve = s.p;
                    else mb = b, me = s.p;
                } else if (!skip(&s, 0)) {
                    goto not_recognised;
                }
                ws(&s);
                if (s.p < s.end && *s.p == ',') s.p++;
            }
        } else if (!skip(&s, 0)) {
            goto not_recognised;
        }
        ws(&s);
        if (s.p < s.end && *s.p == ',') {
            s.p++;
            continue;
        }
        if (s.p < s.end && *s.p == '}') break;
        goto not_recognised;
    }
    if (!vb || !mb) goto not_recognised;
    /* blank the two members: same length, still valid JSON */
    text[vb - text] = '{';
    text[vb - text + 1] = '}';
    memset(text + (vb - text) + 2, ' ', (size_t)(ve - vb) - 2);
    text[mb - text] = '[';
    text[mb - text + 1] = ']';
    memset(text + (mb - text) + 2, ' ', (size_t)(me - mb) - 2);
    L->ok = 1;
    return 1;
not_recognised:
    tok_lists_free(L);
    return 0;
}
