/* A Jinja2 interpreter for Hugging Face chat templates (see jinja.h).
 *
 * lex (text and tag tokens, whitespace control, trim_blocks + lstrip_blocks as transformers
 * configures jinja2) -> parse (recursive descent, jinja2's operator precedence) -> evaluate
 * (Python value semantics for what chat templates use). Every allocation of a render comes from
 * one pool freed at the end; values are never shared mutably except dicts made by namespace(). */
#include "jinja.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "base/alloc.h"

// ---------------------------------------------------------------------------
// Pool and failure

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[];
} chunk;

typedef struct jctx {
    chunk *chunks;
    jmp_buf fail;
    nvl_err *err;
    nvl_status st;
    int depth;       /* statement bodies being run (macros, loops, ifs) */
    int edepth;      /* expressions being evaluated, one inside another */
    int vdepth;      /* lists and dicts being printed or compared, one inside another */
    int line;        /* the line of the expression evaluated last (for errors that have no node) */
    long long steps; /* statements and loop iterations run: a template cannot run away */
    size_t pooled;   /* bytes held by the pool */
} jctx;

#define JINJA_MAX_STEPS 20000000LL
/* Bounds on recursion, each far beyond any real chat template, so that a template (which comes with
 * the checkpoint) cannot overflow the C stack of the thread that renders it (serve's worker): an
 * expression nested in the source (parentheses, `not not`, `- -`), an expression tree (a chain of
 * 20,000 `+` or `|filter` evaluated 20,000 frames deep and crashed), and a value (a list built
 * inside itself in a loop) */
#define JINJA_MAX_PARSE_DEPTH 200
#define JINJA_MAX_EVAL_DEPTH 1000
#define JINJA_MAX_VALUE_DEPTH 500
#define JINJA_MAX_STRING (64u << 20)
/* The messages of the two memory bounds (llm_jinja_failed_on_size reads them) */
#define JINJA_MSG_POOL "the template needs more than 512 MiB"
#define JINJA_MSG_STRING "a string or the output passed"

static void fail(jctx *J, nvl_status st, int line, const char *fmt, ...) NVL_PRINTF(4, 5);
static void fail(jctx *J, nvl_status st, int line, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    J->st = line > 0 ? nvl_err_set(J->err, st, "chat template line %d: %s", line, msg)
                     : nvl_err_set(J->err, st, "chat template: %s", msg);
    longjmp(J->fail, 1);
}

static void *jalloc(jctx *J, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!J->chunks || J->chunks->used + n > J->chunks->cap) {
        size_t cap = n > 60000 ? n : 60000;
        if (J->pooled + cap > (512u << 20)) fail(J, NVL_ERR_LIMIT, 0, JINJA_MSG_POOL);
        J->pooled += cap;
        chunk *c = nvl_malloc(sizeof *c + cap);
        if (!c) fail(J, NVL_ERR_NOMEM, 0, "out of memory");
        c->next = J->chunks;
        c->used = 0;
        c->cap = cap;
        J->chunks = c;
    }
    void *p = (char *)J->chunks->data + J->chunks->used;
    J->chunks->used += n;
    return p;
}

static char *jstrndup(jctx *J, const char *s, size_t n) {
    char *d = jalloc(J, n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

// ---------------------------------------------------------------------------
// Buffers

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_put(jctx *J, sbuf *b, const char *s, size_t n) {
    if (b->n + n > JINJA_MAX_STRING) fail(J, NVL_ERR_LIMIT, 0, JINJA_MSG_STRING " %u bytes", JINJA_MAX_STRING);
    if (b->n + n + 1 > b->cap) {
        size_t nc = (b->cap ? b->cap * 2 : 256) + n;
        char *np = jalloc(J, nc);
        if (b->n) memcpy(np, b->p, b->n);
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_puts(jctx *J, sbuf *b, const char *s) { sb_put(J, b, s, strlen(s)); }

// ---------------------------------------------------------------------------
// Values

enum vt { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_MACRO, V_FUNC };

typedef struct val val;
typedef struct node node;
struct val {
    enum vt t;
    long long i;  /* bool, int */
    double f;
    const char *s; /* str (also the function name for V_FUNC) */
    size_t n;      /* str length */
    val **a;       /* list items; dict values */
    const char **k;/* dict keys */
    size_t *kn;
    int len, cap;
    int tuple;     /* a list that Python would hold as a tuple (repr only) */
    node *macro;
};

static val V_UNDEF_V = {.t = V_UNDEF}, V_NONE_V = {.t = V_NONE}, V_TRUE_V = {.t = V_BOOL, .i = 1}, V_FALSE_V = {.t = V_BOOL, .i = 0};

static val *mk(jctx *J, enum vt t) {
    val *v = jalloc(J, sizeof *v);
    memset(v, 0, sizeof *v);
    v->t = t;
    return v;
}
static val *mk_int(jctx *J, long long i) { val *v = mk(J, V_INT); v->i = i; return v; }
static val *mk_float(jctx *J, double f) { val *v = mk(J, V_FLOAT); v->f = f; return v; }
static val *mk_bool(int b) { return b ? &V_TRUE_V : &V_FALSE_V; }
static val *mk_strn(jctx *J, const char *s, size_t n) { val *v = mk(J, V_STR); v->s = s; v->n = n; return v; }
static val *mk_str(jctx *J, const char *s) { return mk_strn(J, s, strlen(s)); }

static void list_push(jctx *J, val *l, val *x) {
    if (l->len == l->cap) {
        int nc = l->cap ? l->cap * 2 : 8;
        val **na = jalloc(J, (size_t)nc * sizeof *na);
        if (l->len) memcpy(na, l->a, (size_t)l->len * sizeof *na);
        l->a = na;
        l->cap = nc;
    }
    l->a[l->len++] = x;
}

static val *dict_get(const val *d, const char *k, size_t kn) {
    for (int i = 0; i < d->len; i++)
        if (d->kn[i] == kn && !memcmp(d->k[i], k, kn)) return d->a[i];
    return NULL;
}

static void dict_set(jctx *J, val *d, const char *k, size_t kn, val *x) {
    for (int i = 0; i < d->len; i++)
        if (d->kn[i] == kn && !memcmp(d->k[i], k, kn)) {
            d->a[i] = x;
            return;
        }
    if (d->len == d->cap) {
        int nc = d->cap ? d->cap * 2 : 8;
        val **na = jalloc(J, (size_t)nc * sizeof *na);
        const char **nk = jalloc(J, (size_t)nc * sizeof *nk);
        size_t *nn = jalloc(J, (size_t)nc * sizeof *nn);
        if (d->len) {
            memcpy(na, d->a, (size_t)d->len * sizeof *na);
            memcpy(nk, d->k, (size_t)d->len * sizeof *nk);
            memcpy(nn, d->kn, (size_t)d->len * sizeof *nn);
        }
        d->a = na;
        d->k = nk;
        d->kn = nn;
        d->cap = nc;
    }
    d->k[d->len] = k;
    d->kn[d->len] = kn;
    d->a[d->len++] = x;
}

static val *from_json(jctx *J, const cJSON *j) {
    if (!j || cJSON_IsNull(j)) return &V_NONE_V;
    if (cJSON_IsBool(j)) return mk_bool(cJSON_IsTrue(j));
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 9e15) return mk_int(J, (long long)d);
        return mk_float(J, d);
    }
    if (cJSON_IsString(j)) return mk_str(J, j->valuestring);
    if (cJSON_IsArray(j)) {
        val *l = mk(J, V_LIST);
        for (const cJSON *c = j->child; c; c = c->next) list_push(J, l, from_json(J, c));
        return l;
    }
    val *d = mk(J, V_DICT);
    for (const cJSON *c = j->child; c; c = c->next) dict_set(J, d, c->string, strlen(c->string), from_json(J, c));
    return d;
}

static int truthy(const val *v) {
    switch (v->t) {
    case V_UNDEF: case V_NONE: return 0;
    case V_BOOL: case V_INT: return v->i != 0;
    case V_FLOAT: return v->f != 0;
    case V_STR: return v->n != 0;
    case V_LIST: case V_DICT: return v->len != 0;
    default: return 1;
    }
}

static const char *type_name(const val *v) {
    static const char *n[] = {"undefined", "none", "bool", "int", "float", "str", "list", "dict", "macro", "function"};
    return n[v->t];
}

/* Python repr of a float */
static void float_repr(double f, char *b, size_t n) {
    if (isnan(f)) { snprintf(b, n, "nan"); return; }
    if (isinf(f)) { snprintf(b, n, f > 0 ? "inf" : "-inf"); return; }
    for (int p = 1; p <= 17; p++) {
        snprintf(b, n, "%.*g", p, f);
        if (strtod(b, NULL) == f) break;
    }
    /* Python: exponent form uses e+XX / e-XX with at least 2 digits; plain integers get ".0" */
    char *e = strchr(b, 'e');
    if (e) {
        int ex = atoi(e + 1);
        if (ex >= -4 && ex < 16) { /* Python prints these positionally */
            snprintf(b, n, "%.17f", f);
            for (int p = 0; p <= 17; p++) {
                char t[64];
                snprintf(t, sizeof t, "%.*f", p, f);
                if (strtod(t, NULL) == f) {
                    snprintf(b, n, "%s", t);
                    break;
                }
            }
        } else {
            char mant[40];
            snprintf(mant, sizeof mant, "%.*s", (int)(e - b), b);
            snprintf(b, n, "%se%c%02d", mant, ex < 0 ? '-' : '+', abs(ex));
            return;
        }
    }
    if (!strchr(b, '.') && !strchr(b, 'e') && !strchr(b, 'n') && !strchr(b, 'i')) {
        size_t l = strlen(b);
        if (l + 2 < n) memcpy(b + l, ".0", 3);
    }
}

static void repr(jctx *J, sbuf *b, const val *v);

static void str_of(jctx *J, sbuf *b, const val *v) {
    char t[64];
    switch (v->t) {
    case V_UNDEF: return;
    case V_NONE: sb_puts(J, b, "None"); return;
    case V_BOOL: sb_puts(J, b, v->i ? "True" : "False"); return;
    case V_INT: snprintf(t, sizeof t, "%lld", v->i); sb_puts(J, b, t); return;
    case V_FLOAT: float_repr(v->f, t, sizeof t); sb_puts(J, b, t); return;
    case V_STR: sb_put(J, b, v->s, v->n); return;
    default: repr(J, b, v);
    }
}

static void value_deeper(jctx *J, int line) {
    if (++J->vdepth > JINJA_MAX_VALUE_DEPTH)
        fail(J, NVL_ERR_LIMIT, line > 0 ? line : J->line, "a list or dict nested deeper than %d levels (printed or compared)", JINJA_MAX_VALUE_DEPTH);
}

static void repr(jctx *J, sbuf *b, const val *v) {
    if (v->t == V_STR) {
        int has_sq = memchr(v->s, '\'', v->n) != NULL, has_dq = memchr(v->s, '"', v->n) != NULL;
        const char q = has_sq && !has_dq ? '"' : '\'';
        sb_put(J, b, &q, 1);
        for (size_t i = 0; i < v->n; i++) {
            unsigned char c = (unsigned char)v->s[i];
            char t[8];
            if (c == '\\') sb_puts(J, b, "\\\\");
            else if (c == (unsigned char)q) { t[0] = '\\'; t[1] = (char)q; sb_put(J, b, t, 2); }
            else if (c == '\n') sb_puts(J, b, "\\n");
            else if (c == '\r') sb_puts(J, b, "\\r");
            else if (c == '\t') sb_puts(J, b, "\\t");
            else if (c < 0x20 || c == 0x7f) { snprintf(t, sizeof t, "\\x%02x", c); sb_puts(J, b, t); }
            else sb_put(J, b, (const char *)&c, 1);
        }
        sb_put(J, b, &q, 1);
    } else if (v->t == V_LIST) {
        value_deeper(J, 0);
        sb_puts(J, b, v->tuple ? "(" : "[");
        for (int i = 0; i < v->len; i++) {
            if (i) sb_puts(J, b, ", ");
            repr(J, b, v->a[i]);
        }
        sb_puts(J, b, v->tuple ? (v->len == 1 ? ",)" : ")") : "]");
        J->vdepth--;
    } else if (v->t == V_DICT) {
        value_deeper(J, 0);
        sb_puts(J, b, "{");
        for (int i = 0; i < v->len; i++) {
            if (i) sb_puts(J, b, ", ");
            val k = {.t = V_STR, .s = v->k[i], .n = v->kn[i]};
            repr(J, b, &k);
            sb_puts(J, b, ": ");
            repr(J, b, v->a[i]);
        }
        sb_puts(J, b, "}");
        J->vdepth--;
    } else if (v->t == V_UNDEF) {
        sb_puts(J, b, "Undefined");
    } else if (v->t == V_MACRO || v->t == V_FUNC) {
        sb_puts(J, b, "<function>");
    } else {
        str_of(J, b, v);
    }
}

/* json.dumps(x, ensure_ascii=False, indent=indent, separators=sep, sort_keys=False) */
static void tojson(jctx *J, sbuf *b, const val *v, int indent, int level, const char *item_sep, const char *key_sep, int line) {
    char t[64];
    switch (v->t) {
    case V_UNDEF: case V_NONE: sb_puts(J, b, "null"); return;
    case V_BOOL: sb_puts(J, b, v->i ? "true" : "false"); return;
    case V_INT: snprintf(t, sizeof t, "%lld", v->i); sb_puts(J, b, t); return;
    case V_FLOAT:
        if (isnan(v->f)) sb_puts(J, b, "NaN");
        else if (isinf(v->f)) sb_puts(J, b, v->f > 0 ? "Infinity" : "-Infinity");
        else { float_repr(v->f, t, sizeof t); sb_puts(J, b, t); }
        return;
    case V_STR:
        sb_puts(J, b, "\"");
        for (size_t i = 0; i < v->n; i++) {
            unsigned char c = (unsigned char)v->s[i];
            if (c == '"') sb_puts(J, b, "\\\"");
            else if (c == '\\') sb_puts(J, b, "\\\\");
            else if (c == '\n') sb_puts(J, b, "\\n");
            else if (c == '\r') sb_puts(J, b, "\\r");
            else if (c == '\t') sb_puts(J, b, "\\t");
            else if (c == '\b') sb_puts(J, b, "\\b");
            else if (c == '\f') sb_puts(J, b, "\\f");
            else if (c < 0x20) { snprintf(t, sizeof t, "\\u%04x", c); sb_puts(J, b, t); }
            else sb_put(J, b, (const char *)&c, 1);
        }
        sb_puts(J, b, "\"");
        return;
    case V_LIST: case V_DICT: {
        const int is_list = v->t == V_LIST;
        if (level >= JINJA_MAX_VALUE_DEPTH)
            fail(J, NVL_ERR_LIMIT, line, "tojson: a list or dict nested deeper than %d levels", JINJA_MAX_VALUE_DEPTH);
        sb_puts(J, b, is_list ? "[" : "{");
        if (v->len == 0) {
            sb_puts(J, b, is_list ? "]" : "}");
            return;
        }
        for (int i = 0; i < v->len; i++) {
            if (i) sb_puts(J, b, indent >= 0 ? "," : item_sep);
            if (indent >= 0) {
                sb_puts(J, b, "\n");
                for (int s = 0; s < indent * (level + 1); s++) sb_puts(J, b, " ");
            }
            if (!is_list) {
                val k = {.t = V_STR, .s = v->k[i], .n = v->kn[i]};
                tojson(J, b, &k, indent, level + 1, item_sep, key_sep, line);
                sb_puts(J, b, key_sep);
            }
            tojson(J, b, v->a[i], indent, level + 1, item_sep, key_sep, line);
        }
        if (indent >= 0) {
            sb_puts(J, b, "\n");
            for (int s = 0; s < indent * level; s++) sb_puts(J, b, " ");
        }
        sb_puts(J, b, is_list ? "]" : "}");
        return;
    }
    default: fail(J, NVL_ERR_INVALID_ARG, line, "tojson: cannot serialise a %s", type_name(v));
    }
}

static int veq(jctx *J, const val *a, const val *b) {
    const int an = a->t == V_INT || a->t == V_BOOL || a->t == V_FLOAT, bn = b->t == V_INT || b->t == V_BOOL || b->t == V_FLOAT;
    if (an && bn) {
        double x = a->t == V_FLOAT ? a->f : (double)a->i, y = b->t == V_FLOAT ? b->f : (double)b->i;
        return x == y;
    }
    if (a->t != b->t) return 0;
    switch (a->t) {
    case V_UNDEF: case V_NONE: return 1;
    case V_STR: return a->n == b->n && !memcmp(a->s, b->s, a->n);
    case V_LIST:
        if (a->len != b->len) return 0;
        value_deeper(J, 0);
        for (int i = 0; i < a->len; i++)
            if (!veq(J, a->a[i], b->a[i])) return J->vdepth--, 0;
        J->vdepth--;
        return 1;
    case V_DICT:
        if (a->len != b->len) return 0;
        value_deeper(J, 0);
        for (int i = 0; i < a->len; i++) {
            const val *o = dict_get(b, a->k[i], a->kn[i]);
            if (!o || !veq(J, a->a[i], o)) return J->vdepth--, 0;
        }
        J->vdepth--;
        return 1;
    default: return a == b;
    }
}

// ---------------------------------------------------------------------------
// Lexer

enum tk { T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_STRING, T_INT, T_FLOAT, T_OP, T_EOF };

typedef struct token {
    enum tk t;
    const char *s; /* text / name / op / decoded string */
    size_t n;
    long long i;
    double f;
    int line;
} token;

typedef struct lexer {
    jctx *J;
    token *tk;
    int n, cap;
    size_t line_pos; /* line_at's last answer: the line of line_pos (counting on from it keeps lexing */
    int line;        /* linear; from the start each time, 200,000 tokens took 16 s) */
} lexer;

static void push_tok(lexer *L, token t) {
    if (L->n == L->cap) {
        int nc = L->cap ? L->cap * 2 : 256;
        token *nt = jalloc(L->J, (size_t)nc * sizeof *nt);
        if (L->n) memcpy(nt, L->tk, (size_t)L->n * sizeof *nt);
        L->tk = nt;
        L->cap = nc;
    }
    L->tk[L->n++] = t;
}

/* The 1-based line of byte pos of s, counted on from the last position asked for when it is not
 * behind it */
static int line_at(lexer *L, const char *s, size_t pos) {
    if (!L->line || pos < L->line_pos) {
        L->line = 1;
        L->line_pos = 0;
    }
    for (size_t i = L->line_pos; i < pos; i++) L->line += s[i] == '\n';
    L->line_pos = pos;
    return L->line;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* Python's whitespace (str.isspace, and re's \s that jinja2's "-" control strips with): the code
 * points of category Zs or bidirectional class WS, B or S. strip(), split() and "-" trimmed ASCII
 * whitespace only, so a no-break or ideographic space around a message stayed (a differential
 * fuzz against jinja2 found it). */
static int py_space_cp(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}
/* Bytes of the whitespace code point that starts at s[i] (0: none) */
static size_t py_space_at(const char *s, size_t n, size_t i) {
    const unsigned char *u = (const unsigned char *)s + i;
    if (i >= n) return 0;
    if (u[0] < 0x80) return py_space_cp(u[0]) ? 1 : 0;
    if (u[0] == 0xC2 && i + 1 < n) return u[1] == 0x85 || u[1] == 0xA0 ? 2 : 0;
    if ((u[0] == 0xE1 || u[0] == 0xE2 || u[0] == 0xE3) && i + 2 < n && (u[1] & 0xC0) == 0x80 && (u[2] & 0xC0) == 0x80)
        return py_space_cp((uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F)) ? 3 : 0;
    return 0;
}
/* Bytes of the whitespace code point that ends just before s[i] (0: none) */
static size_t py_space_before(const char *s, size_t i) {
    for (size_t k = 1; k <= 3 && k <= i; k++)
        if (py_space_at(s, i, i - k) == k) return k;
    return 0;
}
/* s[a, b) without its leading / trailing whitespace: the new a / the new b */
static size_t skip_space(const char *s, size_t a, size_t b) {
    for (size_t w; a < b && (w = py_space_at(s, b, a)) > 0;) a += w;
    return a;
}
static size_t back_space(const char *s, size_t a, size_t b) {
    for (size_t w; b > a && (w = py_space_before(s, b)) > 0 && b - w >= a;) b -= w;
    return b;
}

/* Tokens inside a tag from *p up to its closing delimiter (close = '}' for }}, '%' for %}).
 * Returns the position after the delimiter; *minus: the tag ended with '-'. */
static size_t lex_tag(lexer *L, const char *s, size_t n, size_t p, char close, int *minus) {
    jctx *J = L->J;
    for (;;) {
        while (p < n && is_ws(s[p])) p++;
        if (p >= n) fail(J, NVL_ERR_FORMAT, line_at(L, s, p), "unclosed tag");
        const int line = line_at(L, s, p);
        /* the end: [-]}} or [-]%} */
        if (s[p] == '-' && p + 2 < n + 0 && s[p + 1] == close && s[p + 2] == '}') {
            *minus = 1;
            return p + 3;
        }
        if (s[p] == '+' && p + 2 < n && s[p + 1] == close && s[p + 2] == '}') {
            *minus = -1; /* "+%}": no trim_blocks after it */
            return p + 3;
        }
        if (s[p] == close && p + 1 < n && s[p + 1] == '}') {
            *minus = 0;
            return p + 2;
        }
        char c = s[p];
        token t = {.line = line};
        if (isalpha((unsigned char)c) || c == '_') {
            size_t q = p;
            while (q < n && (isalnum((unsigned char)s[q]) || s[q] == '_')) q++;
            t.t = T_NAME;
            t.s = s + p;
            t.n = q - p;
            p = q;
        } else if (isdigit((unsigned char)c)) {
            size_t q = p;
            while (q < n && (isdigit((unsigned char)s[q]) || s[q] == '_')) q++;
            int is_f = 0;
            if (q + 1 < n && s[q] == '.' && isdigit((unsigned char)s[q + 1])) {
                is_f = 1;
                q++;
                while (q < n && isdigit((unsigned char)s[q])) q++;
            }
            if (q < n && (s[q] == 'e' || s[q] == 'E')) {
                size_t r = q + 1;
                if (r < n && (s[r] == '+' || s[r] == '-')) r++;
                if (r < n && isdigit((unsigned char)s[r])) {
                    is_f = 1;
                    q = r;
                    while (q < n && isdigit((unsigned char)s[q])) q++;
                }
            }
            char num[64];
            size_t k = 0;
            for (size_t i = p; i < q && k + 1 < sizeof num; i++)
                if (s[i] != '_') num[k++] = s[i];
            num[k] = 0;
            t.t = is_f ? T_FLOAT : T_INT;
            if (is_f) t.f = strtod(num, NULL);
            else t.i = strtoll(num, NULL, 10);
            p = q;
        } else if (c == '\'' || c == '"') {
            sbuf b = {0};
            size_t q = p + 1;
            for (;;) {
                if (q >= n) fail(J, NVL_ERR_FORMAT, line, "unterminated string");
                if (s[q] == c) break;
                if (s[q] == '\\' && q + 1 < n) {
                    char e = s[q + 1], o;
                    q += 2;
                    switch (e) {
                    case 'n': o = '\n'; break;
                    case 't': o = '\t'; break;
                    case 'r': o = '\r'; break;
                    case '\\': o = '\\'; break;
                    case '\'': o = '\''; break;
                    case '"': o = '"'; break;
                    case '0': o = 0; break;
                    case 'b': o = '\b'; break;
                    case 'f': o = '\f'; break;
                    case 'u': case 'x': case 'U': {
                        int nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                        unsigned cp = 0;
                        for (int d = 0; d < nd; d++, q++) {
                            if (q >= n || !isxdigit((unsigned char)s[q])) fail(J, NVL_ERR_FORMAT, line, "bad \\%c escape", e);
                            cp = cp * 16 + (unsigned)(isdigit((unsigned char)s[q]) ? s[q] - '0' : (tolower((unsigned char)s[q]) - 'a' + 10));
                        }
                        char u[4];
                        int un;
                        if (cp < 0x80) { u[0] = (char)cp; un = 1; }
                        else if (cp < 0x800) { u[0] = (char)(0xC0 | cp >> 6); u[1] = (char)(0x80 | (cp & 63)); un = 2; }
                        else if (cp < 0x10000) { u[0] = (char)(0xE0 | cp >> 12); u[1] = (char)(0x80 | (cp >> 6 & 63)); u[2] = (char)(0x80 | (cp & 63)); un = 3; }
                        else { u[0] = (char)(0xF0 | cp >> 18); u[1] = (char)(0x80 | (cp >> 12 & 63)); u[2] = (char)(0x80 | (cp >> 6 & 63)); u[3] = (char)(0x80 | (cp & 63)); un = 4; }
                        sb_put(J, &b, u, (size_t)un);
                        continue;
                    }
                    default: /* Python keeps unknown escapes as written */
                        sb_put(J, &b, "\\", 1);
                        o = e;
                    }
                    sb_put(J, &b, &o, 1);
                    continue;
                }
                sb_put(J, &b, s + q, 1);
                q++;
            }
            t.t = T_STRING;
            t.s = b.p ? b.p : "";
            t.n = b.n;
            p = q + 1;
        } else {
            static const char *ops[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(",
                                        ")", "[", "]", "{", "}", ".", ",", ":", "|", NULL};
            int found = 0;
            for (int k = 0; ops[k] && !found; k++) {
                size_t l = strlen(ops[k]);
                if (p + l <= n && !memcmp(s + p, ops[k], l)) {
                    t.t = T_OP;
                    t.s = ops[k];
                    t.n = l;
                    p += l;
                    found = 1;
                }
            }
            if (!found) fail(J, NVL_ERR_FORMAT, line, "unexpected character '%c'", c);
        }
        push_tok(L, t);
    }
}

static void lex(lexer *L, const char *s, size_t n) {
    jctx *J = L->J;
    size_t pos = 0;
    int strip_next = 0; /* 0 none, 1 one newline (trim_blocks), 2 all whitespace (-) */
    while (pos <= n) {
        size_t k = pos;
        int kind = 0; /* '{' var, '%' block, '#' comment */
        while (k + 1 < n) {
            if (s[k] == '{' && (s[k + 1] == '{' || s[k + 1] == '%' || s[k + 1] == '#')) {
                kind = s[k + 1];
                break;
            }
            k++;
        }
        if (!kind) k = n;
        size_t ts = pos, te = k;
        if (strip_next == 2) ts = skip_space(s, ts, te);
        else if (strip_next == 1 && ts < te && s[ts] == '\n') ts++; /* (\r\n became \n before lexing) */
        strip_next = 0;
        const char mod = kind && k + 2 < n ? s[k + 2] : 0;
        if (kind && mod == '-') {
            te = back_space(s, ts, te);
        } else if (kind && (kind == '%' || kind == '#') && mod != '+') {
            /* lstrip_blocks: spaces and tabs between a line start and a block or comment tag */
            size_t q = k;
            while (q > 0 && (s[q - 1] == ' ' || s[q - 1] == '\t')) q--;
            if (q == 0 || s[q - 1] == '\n') te = q > ts ? q : ts;
        }
        if (te > ts) push_tok(L, (token){.t = T_TEXT, .s = s + ts, .n = te - ts, .line = line_at(L, s, ts)});
        if (!kind) break;
        size_t p = k + 2 + (mod == '-' || mod == '+' ? 1 : 0);
        if (kind == '#') {
            const char *e = NULL;
            for (size_t q = p; q + 1 < n; q++)
                if (s[q] == '#' && s[q + 1] == '}') {
                    e = s + q;
                    break;
                }
            if (!e) fail(J, NVL_ERR_FORMAT, line_at(L, s, k), "unclosed comment");
            const int minus = e > s + p && e[-1] == '-';
            pos = (size_t)(e - s) + 2;
            strip_next = minus ? 2 : 1;
            continue;
        }
        /* {% raw %} ... {% endraw %} */
        {
            size_t q = p;
            while (q < n && is_ws(s[q])) q++;
            if (kind == '%' && q + 3 <= n && !memcmp(s + q, "raw", 3) && (q + 3 == n || !isalnum((unsigned char)s[q + 3]))) {
                size_t r = q + 3;
                while (r < n && is_ws(s[r])) r++;
                if (r < n && s[r] == '-') r++;
                if (r + 1 >= n || s[r] != '%' || s[r + 1] != '}') fail(J, NVL_ERR_FORMAT, line_at(L, s, k), "bad raw tag");
                const int rminus = s[r - 1] == '-';
                r += 2;
                const char *end = NULL;
                size_t e2 = r;
                for (; e2 + 1 < n; e2++)
                    if (s[e2] == '{' && s[e2 + 1] == '%') {
                        size_t x = e2 + 2;
                        if (x < n && (s[x] == '-' || s[x] == '+')) x++;
                        while (x < n && is_ws(s[x])) x++;
                        if (x + 6 <= n && !memcmp(s + x, "endraw", 6)) {
                            end = s + e2;
                            break;
                        }
                    }
                if (!end) fail(J, NVL_ERR_FORMAT, line_at(L, s, k), "raw without endraw");
                size_t rs = r, re = e2;
                if (rminus) rs = skip_space(s, rs, re); /* (without "-" the newline after {% raw %} stays, as in jinja2) */
                if (e2 + 2 < n && s[e2 + 2] == '-') re = back_space(s, rs, re);
                if (re > rs) push_tok(L, (token){.t = T_TEXT, .s = s + rs, .n = re - rs, .line = line_at(L, s, rs)});
                size_t x = e2 + 2;
                while (x + 1 < n && !(s[x] == '%' && s[x + 1] == '}')) x++;
                strip_next = s[x - 1] == '-' ? 2 : 1;
                pos = x + 2;
                continue;
            }
        }
        push_tok(L, (token){.t = kind == '{' ? T_VAR_BEGIN : T_BLOCK_BEGIN, .line = line_at(L, s, k)});
        int minus = 0;
        pos = lex_tag(L, s, n, p, kind == '{' ? '}' : '%', &minus);
        push_tok(L, (token){.t = kind == '{' ? T_VAR_END : T_BLOCK_END, .line = line_at(L, s, pos - 1)});
        strip_next = minus > 0 ? 2 : kind == '%' && minus == 0 ? 1 : 0;
    }
    push_tok(L, (token){.t = T_EOF, .line = line_at(L, s, n)});
}

// ---------------------------------------------------------------------------
// AST

enum nk {
    /* statements */
    N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_BREAK, N_CONTINUE, N_BODY,
    /* expressions */
    E_LIT, E_NAME, E_ATTR, E_INDEX, E_SLICE, E_CALL, E_FILTER, E_TEST, E_BIN, E_NEG, E_POS, E_NOT, E_AND, E_OR,
    E_COND, E_LIST, E_DICT, E_CMP
};

struct node {
    enum nk k;
    int line;
    const char *s; size_t n;  /* text, name, op, attr/filter/test name */
    val *v;                   /* literal */
    node *a, *b, *c, *d;      /* children */
    node **items; int n_items; /* body, args, list items, if branches */
    node **kw; const char **kwn; int n_kw; /* keyword args / dict values / macro defaults */
    const char **names; int n_names;      /* for targets, macro params, set targets */
    int neg;                  /* is not */
};

typedef struct parser {
    jctx *J;
    token *t;
    int i;
    int depth;  /* p_expr / p_unary / p_not calls open, one inside another */
    int blocks; /* statements open, one inside another */
} parser;

static void parse_deeper(parser *P);

static void parse_deeper(parser *P) {
    if (++P->depth > JINJA_MAX_PARSE_DEPTH)
        fail(P->J, NVL_ERR_LIMIT, P->t[P->i].line, "an expression nested deeper than %d levels", JINJA_MAX_PARSE_DEPTH);
}

static node *nn(parser *P, enum nk k, int line) {
    node *x = jalloc(P->J, sizeof *x);
    memset(x, 0, sizeof *x);
    x->k = k;
    x->line = line;
    return x;
}

static void add_item(parser *P, node *x, node *it) {
    node **ni = jalloc(P->J, (size_t)(x->n_items + 1) * sizeof *ni);
    if (x->n_items) memcpy(ni, x->items, (size_t)x->n_items * sizeof *ni);
    ni[x->n_items++] = it;
    x->items = ni;
}

static void add_kw(parser *P, node *x, const char *name, node *v) {
    node **nk = jalloc(P->J, (size_t)(x->n_kw + 1) * sizeof *nk);
    const char **nn2 = jalloc(P->J, (size_t)(x->n_kw + 1) * sizeof *nn2);
    if (x->n_kw) {
        memcpy(nk, x->kw, (size_t)x->n_kw * sizeof *nk);
        memcpy(nn2, x->kwn, (size_t)x->n_kw * sizeof *nn2);
    }
    nk[x->n_kw] = v;
    nn2[x->n_kw++] = name;
    x->kw = nk;
    x->kwn = nn2;
}

static void add_name(parser *P, node *x, const char *name) {
    const char **nm = jalloc(P->J, (size_t)(x->n_names + 1) * sizeof *nm);
    if (x->n_names) memcpy(nm, x->names, (size_t)x->n_names * sizeof *nm);
    nm[x->n_names++] = name;
    x->names = nm;
}

static token *cur(parser *P) { return &P->t[P->i]; }
static int is_op(const token *t, const char *op) { return t->t == T_OP && t->n == strlen(op) && !memcmp(t->s, op, t->n); }
static int is_name(const token *t, const char *nm) { return t->t == T_NAME && t->n == strlen(nm) && !memcmp(t->s, nm, t->n); }
static void expect_op(parser *P, const char *op) {
    if (!is_op(cur(P), op)) fail(P->J, NVL_ERR_FORMAT, cur(P)->line, "expected '%s'", op);
    P->i++;
}
static const char *take_name(parser *P) {
    token *t = cur(P);
    if (t->t != T_NAME) fail(P->J, NVL_ERR_FORMAT, t->line, "expected a name");
    P->i++;
    return jstrndup(P->J, t->s, t->n);
}

static node *p_expr(parser *P);
static node *p_or(parser *P);
static node *p_unary(parser *P, int with_filter);
static node *p_primary(parser *P);
static node *p_postfix(parser *P, node *x);

static void p_call_args(parser *P, node *call) {
    expect_op(P, "(");
    while (!is_op(cur(P), ")")) {
        if (cur(P)->t == T_NAME && is_op(&P->t[P->i + 1], "=")) {
            const char *k = take_name(P);
            P->i++;
            add_kw(P, call, k, p_expr(P));
        } else {
            if (call->n_kw) fail(P->J, NVL_ERR_FORMAT, cur(P)->line, "positional argument after a keyword argument");
            add_item(P, call, p_expr(P));
        }
        if (!is_op(cur(P), ",")) break;
        P->i++;
    }
    expect_op(P, ")");
}

static node *p_primary(parser *P) {
    token *t = cur(P);
    node *x;
    if (t->t == T_NAME) {
        P->i++;
        if (is_name(t, "true") || is_name(t, "True")) { x = nn(P, E_LIT, t->line); x->v = &V_TRUE_V; return x; }
        if (is_name(t, "false") || is_name(t, "False")) { x = nn(P, E_LIT, t->line); x->v = &V_FALSE_V; return x; }
        if (is_name(t, "none") || is_name(t, "None")) { x = nn(P, E_LIT, t->line); x->v = &V_NONE_V; return x; }
        x = nn(P, E_NAME, t->line);
        x->s = jstrndup(P->J, t->s, t->n);
        x->n = t->n;
        return x;
    }
    if (t->t == T_STRING) {
        sbuf b = {0};
        while (cur(P)->t == T_STRING) { /* adjacent literals concatenate */
            sb_put(P->J, &b, cur(P)->s, cur(P)->n);
            P->i++;
        }
        x = nn(P, E_LIT, t->line);
        x->v = mk_strn(P->J, b.p ? b.p : "", b.n);
        return x;
    }
    if (t->t == T_INT || t->t == T_FLOAT) {
        P->i++;
        x = nn(P, E_LIT, t->line);
        x->v = t->t == T_INT ? mk_int(P->J, t->i) : mk_float(P->J, t->f);
        return x;
    }
    if (is_op(t, "(")) {
        P->i++;
        if (is_op(cur(P), ")")) {
            P->i++;
            return nn(P, E_LIST, t->line);
        }
        node *e = p_expr(P);
        if (is_op(cur(P), ",")) { /* tuple */
            x = nn(P, E_LIST, t->line);
            x->neg = 1;
            add_item(P, x, e);
            while (is_op(cur(P), ",")) {
                P->i++;
                if (is_op(cur(P), ")")) break;
                add_item(P, x, p_expr(P));
            }
            e = x;
        }
        expect_op(P, ")");
        return e;
    }
    if (is_op(t, "[")) {
        P->i++;
        x = nn(P, E_LIST, t->line);
        while (!is_op(cur(P), "]")) {
            add_item(P, x, p_expr(P));
            if (!is_op(cur(P), ",")) break;
            P->i++;
        }
        expect_op(P, "]");
        return x;
    }
    if (is_op(t, "{")) {
        P->i++;
        x = nn(P, E_DICT, t->line);
        while (!is_op(cur(P), "}")) {
            node *k = p_expr(P);
            expect_op(P, ":");
            add_item(P, x, k);
            add_kw(P, x, NULL, p_expr(P));
            if (!is_op(cur(P), ",")) break;
            P->i++;
        }
        expect_op(P, "}");
        return x;
    }
    fail(P->J, NVL_ERR_FORMAT, t->line, "unexpected %s", t->t == T_OP ? t->s : t->t == T_EOF ? "end of template" : "token");
    return NULL;
}

static node *p_postfix(parser *P, node *x) {
    for (;;) {
        token *t = cur(P);
        if (is_op(t, ".")) {
            P->i++;
            node *a = nn(P, E_ATTR, t->line);
            a->a = x;
            token *nm = cur(P);
            if (nm->t == T_NAME) {
                a->s = take_name(P);
            } else if (nm->t == T_INT) { /* x.0 */
                P->i++;
                a->k = E_INDEX;
                node *lit = nn(P, E_LIT, nm->line);
                lit->v = mk_int(P->J, nm->i);
                a->b = lit;
            } else fail(P->J, NVL_ERR_FORMAT, t->line, "expected an attribute name");
            x = a;
        } else if (is_op(t, "[")) {
            P->i++;
            node *lo = NULL, *hi = NULL, *st = NULL;
            int slice = 0;
            if (!is_op(cur(P), ":")) lo = p_expr(P);
            if (is_op(cur(P), ":")) {
                slice = 1;
                P->i++;
                if (!is_op(cur(P), "]") && !is_op(cur(P), ":")) hi = p_expr(P);
                if (is_op(cur(P), ":")) {
                    P->i++;
                    if (!is_op(cur(P), "]")) st = p_expr(P);
                }
            }
            expect_op(P, "]");
            node *a = nn(P, slice ? E_SLICE : E_INDEX, t->line);
            a->a = x;
            a->b = lo;
            a->c = hi;
            a->d = st;
            x = a;
        } else if (is_op(t, "(")) {
            node *c = nn(P, E_CALL, t->line);
            c->a = x;
            p_call_args(P, c);
            x = c;
        } else {
            return x;
        }
    }
}

static node *p_filter_expr(parser *P, node *x) {
    for (;;) {
        token *t = cur(P);
        if (is_op(t, "|")) {
            P->i++;
            node *f = nn(P, E_FILTER, t->line);
            f->a = x;
            f->s = take_name(P);
            while (is_op(cur(P), ".")) { /* dotted filter names are not used by chat templates */
                fail(P->J, NVL_ERR_UNSUPPORTED, t->line, "dotted filter names");
            }
            if (is_op(cur(P), "(")) p_call_args(P, f);
            x = f;
        } else if (is_name(t, "is")) {
            P->i++;
            node *f = nn(P, E_TEST, t->line);
            f->a = x;
            if (is_name(cur(P), "not")) {
                f->neg = 1;
                P->i++;
            }
            f->s = take_name(P);
            token *u = cur(P);
            if (is_op(u, "(")) p_call_args(P, f);
            else if ((u->t == T_NAME || u->t == T_STRING || u->t == T_INT || u->t == T_FLOAT || is_op(u, "[") || is_op(u, "{")) &&
                     !is_name(u, "else") && !is_name(u, "or") && !is_name(u, "and") && !is_name(u, "if") && !is_name(u, "is") &&
                     !is_name(u, "in") && !is_name(u, "not")) {
                add_item(P, f, p_postfix(P, p_primary(P)));
            }
            x = f;
        } else if (is_op(t, "(")) {
            node *c = nn(P, E_CALL, t->line);
            c->a = x;
            p_call_args(P, c);
            x = c;
        } else {
            return x;
        }
    }
}

static node *p_unary(parser *P, int with_filter) {
    token *t = cur(P);
    node *x;
    if (is_op(t, "-") || is_op(t, "+")) {
        P->i++;
        x = nn(P, is_op(t, "-") ? E_NEG : E_POS, t->line);
        parse_deeper(P);
        x->a = p_unary(P, 0);
        P->depth--;
    } else {
        x = p_postfix(P, p_primary(P));
    }
    return with_filter ? p_filter_expr(P, x) : x;
}

static node *bin(parser *P, const char *op, node *a, node *b, int line) {
    node *x = nn(P, E_BIN, line);
    x->s = op;
    x->a = a;
    x->b = b;
    return x;
}

static node *p_pow(parser *P) {
    node *x = p_unary(P, 1);
    while (is_op(cur(P), "**")) {
        int l = cur(P)->line;
        P->i++;
        x = bin(P, "**", x, p_unary(P, 1), l);
    }
    return x;
}
static node *p_math2(parser *P) {
    node *x = p_pow(P);
    for (;;) {
        token *t = cur(P);
        if (is_op(t, "*") || is_op(t, "/") || is_op(t, "//") || is_op(t, "%")) {
            P->i++;
            x = bin(P, t->s, x, p_pow(P), t->line);
        } else return x;
    }
}
static node *p_concat(parser *P) {
    node *x = p_math2(P);
    while (is_op(cur(P), "~")) {
        int l = cur(P)->line;
        P->i++;
        x = bin(P, "~", x, p_math2(P), l);
    }
    return x;
}
static node *p_math1(parser *P) {
    node *x = p_concat(P);
    for (;;) {
        token *t = cur(P);
        if (is_op(t, "+") || is_op(t, "-")) {
            P->i++;
            x = bin(P, t->s, x, p_concat(P), t->line);
        } else return x;
    }
}
static node *p_compare(parser *P) {
    node *x = p_math1(P);
    node *chain = NULL;
    node *prev = x;
    for (;;) {
        token *t = cur(P);
        const char *op = NULL;
        if (is_op(t, "==") || is_op(t, "!=") || is_op(t, "<") || is_op(t, ">") || is_op(t, "<=") || is_op(t, ">=")) op = t->s;
        else if (is_name(t, "in")) op = "in";
        else if (is_name(t, "not") && is_name(&P->t[P->i + 1], "in")) op = "notin";
        if (!op) break;
        P->i += !strcmp(op, "notin") ? 2 : 1;
        node *rhs = p_math1(P);
        node *c = nn(P, E_CMP, t->line);
        c->s = op;
        c->a = prev;
        c->b = rhs;
        if (!chain) chain = c;
        else {
            node *an = nn(P, E_AND, t->line);
            an->a = chain;
            an->b = c;
            chain = an;
        }
        prev = rhs;
    }
    return chain ? chain : x;
}
static node *p_not(parser *P) {
    if (is_name(cur(P), "not")) {
        node *x = nn(P, E_NOT, cur(P)->line);
        P->i++;
        parse_deeper(P);
        x->a = p_not(P);
        P->depth--;
        return x;
    }
    return p_compare(P);
}
/* left-associative chain of a keyword operator: x (kw x)* */
static node *p_chain(parser *P, const char *kw, enum nk k, node *(*next)(parser *)) {
    node *x = next(P);
    while (is_name(cur(P), kw)) {
        node *a = nn(P, k, cur(P)->line);
        P->i++;
        a->a = x;
        a->b = next(P);
        x = a;
    }
    return x;
}
static node *p_and(parser *P) { return p_chain(P, "and", E_AND, p_not); }
static node *p_or(parser *P) { return p_chain(P, "or", E_OR, p_and); }
static node *p_expr(parser *P) {
    parse_deeper(P);
    node *x = p_or(P);
    while (is_name(cur(P), "if")) {
        node *c = nn(P, E_COND, cur(P)->line);
        P->i++;
        c->a = x;
        c->b = p_or(P);
        if (is_name(cur(P), "else")) {
            P->i++;
            c->c = p_expr(P);
        }
        x = c;
    }
    P->depth--;
    return x;
}

/* statements: parses until one of the end names (returned in *which) */
static node *p_body(parser *P, const char *const *ends, const char **which);

static void expect_block_end(parser *P) {
    if (cur(P)->t != T_BLOCK_END) fail(P->J, NVL_ERR_FORMAT, cur(P)->line, "expected the end of the tag");
    P->i++;
}

static node *p_statement(parser *P) {
    token *t = cur(P);
    if (t->t != T_NAME) fail(P->J, NVL_ERR_FORMAT, t->line, "expected a statement name");
    const int line = t->line;
    if (is_name(t, "if")) {
        P->i++;
        node *x = nn(P, N_IF, line);
        node *cond = p_expr(P);
        expect_block_end(P);
        static const char *const ends[] = {"elif", "else", "endif", NULL};
        for (;;) {
            const char *w = NULL;
            node *body = p_body(P, ends, &w);
            add_item(P, x, cond);
            add_item(P, x, body);
            if (!strcmp(w, "elif")) {
                cond = p_expr(P);
                expect_block_end(P);
                continue;
            }
            if (!strcmp(w, "else")) {
                expect_block_end(P);
                static const char *const ends2[] = {"endif", NULL};
                x->a = p_body(P, ends2, &w);
            }
            expect_block_end(P);
            return x;
        }
    }
    if (is_name(t, "for")) {
        P->i++;
        node *x = nn(P, N_FOR, line);
        add_name(P, x, take_name(P));
        while (is_op(cur(P), ",")) {
            P->i++;
            add_name(P, x, take_name(P));
        }
        if (!is_name(cur(P), "in")) fail(P->J, NVL_ERR_FORMAT, cur(P)->line, "expected 'in'");
        P->i++;
        x->a = p_or(P); /* jinja parses the iterable without a conditional expression */
        if (is_name(cur(P), "if")) {
            P->i++;
            x->b = p_expr(P);
        }
        if (is_name(cur(P), "recursive")) fail(P->J, NVL_ERR_UNSUPPORTED, line, "recursive loops");
        expect_block_end(P);
        static const char *const ends[] = {"else", "endfor", NULL};
        const char *w = NULL;
        x->c = p_body(P, ends, &w);
        if (!strcmp(w, "else")) {
            expect_block_end(P);
            static const char *const ends2[] = {"endfor", NULL};
            x->d = p_body(P, ends2, &w);
        }
        expect_block_end(P);
        return x;
    }
    if (is_name(t, "set")) {
        P->i++;
        node *x = nn(P, N_SET, line);
        const char *nm = take_name(P);
        if (is_op(cur(P), ".")) { /* ns.attr */
            P->i++;
            x->s = nm;
            add_name(P, x, take_name(P));
        } else {
            add_name(P, x, nm);
            while (is_op(cur(P), ",")) {
                P->i++;
                add_name(P, x, take_name(P));
            }
        }
        if (cur(P)->t == T_BLOCK_END) { /* block set */
            if (x->s || x->n_names != 1) fail(P->J, NVL_ERR_UNSUPPORTED, line, "block set of an attribute or tuple");
            P->i++;
            x->k = N_SETBLOCK;
            static const char *const ends[] = {"endset", NULL};
            const char *w = NULL;
            x->a = p_body(P, ends, &w);
            expect_block_end(P);
            return x;
        }
        expect_op(P, "=");
        x->a = p_expr(P);
        if (is_op(cur(P), ",")) { /* set a = 1, 2 */
            node *l = nn(P, E_LIST, line);
            add_item(P, l, x->a);
            while (is_op(cur(P), ",")) {
                P->i++;
                add_item(P, l, p_expr(P));
            }
            x->a = l;
        }
        expect_block_end(P);
        return x;
    }
    if (is_name(t, "macro")) {
        P->i++;
        node *x = nn(P, N_MACRO, line);
        x->s = take_name(P);
        expect_op(P, "(");
        while (!is_op(cur(P), ")")) {
            const char *pn = take_name(P);
            add_name(P, x, pn);
            node *def = NULL;
            if (is_op(cur(P), "=")) {
                P->i++;
                def = p_expr(P);
            }
            add_kw(P, x, pn, def);
            if (!is_op(cur(P), ",")) break;
            P->i++;
        }
        expect_op(P, ")");
        expect_block_end(P);
        static const char *const ends[] = {"endmacro", NULL};
        const char *w = NULL;
        x->a = p_body(P, ends, &w);
        expect_block_end(P);
        return x;
    }
    if (is_name(t, "break") || is_name(t, "continue")) {
        P->i++;
        node *x = nn(P, is_name(t, "break") ? N_BREAK : N_CONTINUE, line);
        expect_block_end(P);
        return x;
    }
    if (is_name(t, "generation")) { /* transformers' assistant-mask marker: renders its body */
        P->i++;
        expect_block_end(P);
        static const char *const ends[] = {"endgeneration", NULL};
        const char *w = NULL;
        node *b = p_body(P, ends, &w);
        expect_block_end(P);
        return b;
    }
    fail(P->J, NVL_ERR_UNSUPPORTED, line, "the '%.*s' statement", (int)t->n, t->s);
    return NULL;
}

static node *p_body(parser *P, const char *const *ends, const char **which) {
    node *body = nn(P, N_BODY, cur(P)->line);
    for (;;) {
        token *t = cur(P);
        if (t->t == T_EOF) {
            if (!ends) return body;
            int last = 0;
            while (ends[last + 1]) last++;
            fail(P->J, NVL_ERR_FORMAT, t->line, "missing {%% %s %%}", ends[last]);
        }
        if (t->t == T_TEXT) {
            node *x = nn(P, N_TEXT, t->line);
            x->s = t->s;
            x->n = t->n;
            add_item(P, body, x);
            P->i++;
        } else if (t->t == T_VAR_BEGIN) {
            P->i++;
            node *x = nn(P, N_OUT, t->line);
            x->a = p_expr(P);
            if (cur(P)->t != T_VAR_END) fail(P->J, NVL_ERR_FORMAT, cur(P)->line, "expected '}}'");
            P->i++;
            add_item(P, body, x);
        } else if (t->t == T_BLOCK_BEGIN) {
            token *nm = &P->t[P->i + 1];
            for (int e = 0; ends && ends[e]; e++)
                if (is_name(nm, ends[e])) {
                    P->i += 2;
                    *which = ends[e];
                    return body;
                }
            P->i++;
            if (++P->blocks > JINJA_MAX_PARSE_DEPTH) /* (p_statement and p_body recurse: 100,000 nested ifs crashed) */
                fail(P->J, NVL_ERR_LIMIT, nm->line, "blocks ({%% if %%}, {%% for %%}, ...) nested deeper than %d levels",
                     JINJA_MAX_PARSE_DEPTH);
            add_item(P, body, p_statement(P));
            P->blocks--;
        } else {
            fail(P->J, NVL_ERR_FORMAT, t->line, "unexpected token");
        }
    }
}

// ---------------------------------------------------------------------------
// Evaluation

typedef struct scope {
    struct scope *parent;
    val *vars; /* a dict */
} scope;

typedef struct rt {
    jctx *J;
    sbuf *out;
    scope *globals;
    int brk, cont; /* loop control pending */
} rt;

static val *lookup(scope *s, const char *name, size_t n) {
    for (; s; s = s->parent) {
        val *v = dict_get(s->vars, name, n);
        if (v) return v;
    }
    return &V_UNDEF_V;
}

static scope *push_scope(rt *R, scope *parent) {
    scope *s = jalloc(R->J, sizeof *s);
    s->parent = parent;
    s->vars = mk(R->J, V_DICT);
    return s;
}

static val *eval(rt *R, scope *S, node *x);
static void exec_body(rt *R, scope *S, node *body);

static const char *as_str(rt *R, val *v, size_t *n) {
    if (v->t == V_STR) {
        *n = v->n;
        return v->s;
    }
    sbuf b = {0};
    str_of(R->J, &b, v);
    *n = b.n;
    return b.p ? b.p : "";
}

static double num_of(rt *R, val *v, int line) {
    if (v->t == V_INT || v->t == V_BOOL) return (double)v->i;
    if (v->t == V_FLOAT) return v->f;
    fail(R->J, NVL_ERR_INVALID_ARG, line, "expected a number, got %s", type_name(v));
    return 0;
}

/* UTF-8 characters of a string as byte offsets (n + 1 entries) */
static int utf8_offsets(rt *R, const char *s, size_t n, size_t **off) {
    size_t *o = jalloc(R->J, (n + 1) * sizeof *o);
    int k = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) o[k++] = i;
    o[k] = n;
    *off = o;
    return k;
}

static void slice_idx(long long len, val *lo, val *hi, val *st, long long *a, long long *b, long long *step) {
    *step = st && st->t == V_INT ? st->i : 1;
    if (*step == 0) *step = 1;
    long long A, B;
    if (*step > 0) {
        A = lo && lo->t == V_INT ? lo->i : 0;
        B = hi && hi->t == V_INT ? hi->i : len;
        if (A < 0) A += len;
        if (B < 0) B += len;
        if (A < 0) A = 0;
        if (B > len) B = len;
        if (A > len) A = len;
        if (B < 0) B = 0;
    } else {
        A = lo && lo->t == V_INT ? lo->i : len - 1;
        B = hi && hi->t == V_INT ? hi->i : -len - 1;
        if (A < 0) A += len;
        if (B < 0) B += len;
        if (A >= len) A = len - 1;
        if (B < -1) B = -1;
    }
    *a = A;
    *b = B;
}

static val *getattr_v(rt *R, val *o, const char *name, size_t n) {
    (void)R;
    if (o->t == V_DICT) {
        val *v = dict_get(o, name, n);
        return v ? v : &V_UNDEF_V;
    }
    return &V_UNDEF_V;
}

static val *getitem(rt *R, val *o, val *k, int line) {
    if (o->t == V_DICT) {
        if (k->t != V_STR) return &V_UNDEF_V;
        val *v = dict_get(o, k->s, k->n);
        return v ? v : &V_UNDEF_V;
    }
    if (o->t == V_LIST) {
        if (k->t != V_INT) fail(R->J, NVL_ERR_INVALID_ARG, line, "list index must be an integer");
        long long i = k->i < 0 ? k->i + o->len : k->i;
        return i >= 0 && i < o->len ? o->a[i] : &V_UNDEF_V;
    }
    if (o->t == V_STR) {
        if (k->t != V_INT) return &V_UNDEF_V;
        size_t *off;
        int nc = utf8_offsets(R, o->s, o->n, &off);
        long long i = k->i < 0 ? k->i + nc : k->i;
        if (i < 0 || i >= nc) return &V_UNDEF_V;
        return mk_strn(R->J, o->s + off[i], off[i + 1] - off[i]);
    }
    return &V_UNDEF_V;
}

static val *strip(rt *R, val *v, int left, int right, val *chars) {
    const char *cs = chars && chars->t == V_STR ? chars->s : NULL;
    const size_t cn = cs ? chars->n : 0;
    size_t a = 0, b = v->n;
    if (cs) { /* (the characters given: single bytes, as before) */
        if (left) while (a < b && memchr(cs, v->s[a], cn)) a++;
        if (right) while (b > a && memchr(cs, v->s[b - 1], cn)) b--;
    } else {
        if (left) a = skip_space(v->s, a, b);
        if (right) b = back_space(v->s, a, b);
    }
    return mk_strn(R->J, v->s + a, b - a);
}

static int starts(const val *s, const val *p) { return p->t == V_STR && s->n >= p->n && !memcmp(s->s, p->s, p->n); }
static int ends_with(const val *s, const val *p) { return p->t == V_STR && s->n >= p->n && !memcmp(s->s + s->n - p->n, p->s, p->n); }

static val *arg(node *call, val **args, int nargs, int i, const char *kw, rt *R, scope *S) {
    if (i >= 0 && i < nargs) return args[i];
    for (int k = 0; call && k < call->n_kw; k++)
        if (kw && call->kwn[k] && !strcmp(call->kwn[k], kw)) return eval(R, S, call->kw[k]);
    return NULL;
}

static val *call_method(rt *R, scope *S, val *o, const char *m, node *call, val **args, int nargs) {
    jctx *J = R->J;
    const int line = call->line;
    if (o->t == V_STR) {
        if (!strcmp(m, "strip")) return strip(R, o, 1, 1, arg(call, args, nargs, 0, "chars", R, S));
        if (!strcmp(m, "lstrip")) return strip(R, o, 1, 0, arg(call, args, nargs, 0, "chars", R, S));
        if (!strcmp(m, "rstrip")) return strip(R, o, 0, 1, arg(call, args, nargs, 0, "chars", R, S));
        if (!strcmp(m, "upper") || !strcmp(m, "lower")) {
            char *d = jstrndup(J, o->s, o->n);
            for (size_t i = 0; i < o->n; i++) d[i] = (char)(m[0] == 'u' ? toupper((unsigned char)d[i]) : tolower((unsigned char)d[i]));
            return mk_strn(J, d, o->n);
        }
        if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
            val *p = arg(call, args, nargs, 0, NULL, R, S);
            if (!p) fail(J, NVL_ERR_INVALID_ARG, line, "%s needs an argument", m);
            int r = 0;
            if (p->t == V_LIST) {
                for (int i = 0; i < p->len && !r; i++) r = m[0] == 's' ? starts(o, p->a[i]) : ends_with(o, p->a[i]);
            } else r = m[0] == 's' ? starts(o, p) : ends_with(o, p);
            return mk_bool(r);
        }
        if (!strcmp(m, "split") || !strcmp(m, "rsplit")) {
            val *sep = arg(call, args, nargs, 0, "sep", R, S), *mx = arg(call, args, nargs, 1, "maxsplit", R, S);
            long long maxs = mx && mx->t == V_INT ? mx->i : -1;
            val *l = mk(J, V_LIST);
            if (!sep || sep->t == V_NONE) { /* whitespace runs */
                size_t i = 0;
                long long parts = 0;
                while (i < o->n) {
                    i = skip_space(o->s, i, o->n);
                    if (i >= o->n) break;
                    size_t j = i;
                    if (maxs >= 0 && parts == maxs) j = o->n;
                    else while (j < o->n && !py_space_at(o->s, o->n, j)) j++;
                    list_push(J, l, mk_strn(J, o->s + i, j - i)); /* (the remainder keeps its trailing spaces, as in Python) */
                    parts++;
                    i = j;
                }
                return l;
            }
            if (sep->t != V_STR || sep->n == 0) fail(J, NVL_ERR_INVALID_ARG, line, "empty separator");
            if (m[0] == 'r' && maxs >= 0) fail(J, NVL_ERR_UNSUPPORTED, line, "rsplit with maxsplit");
            size_t i = 0;
            long long parts = 0;
            for (;;) {
                const char *f = NULL;
                if (maxs < 0 || parts < maxs)
                    for (size_t q = i; q + sep->n <= o->n; q++)
                        if (!memcmp(o->s + q, sep->s, sep->n)) {
                            f = o->s + q;
                            break;
                        }
                if (!f) {
                    list_push(J, l, mk_strn(J, o->s + i, o->n - i));
                    return l;
                }
                list_push(J, l, mk_strn(J, o->s + i, (size_t)(f - (o->s + i))));
                parts++;
                i = (size_t)(f - o->s) + sep->n;
            }
        }
        if (!strcmp(m, "replace")) {
            val *a = arg(call, args, nargs, 0, NULL, R, S), *b = arg(call, args, nargs, 1, NULL, R, S);
            val *cnt = arg(call, args, nargs, 2, "count", R, S);
            if (!a || !b || a->t != V_STR || b->t != V_STR) fail(J, NVL_ERR_INVALID_ARG, line, "replace needs two strings");
            long long maxc = cnt && cnt->t == V_INT ? cnt->i : -1;
            sbuf out = {0};
            size_t i = 0;
            long long done = 0;
            if (a->n == 0) fail(J, NVL_ERR_UNSUPPORTED, line, "replace of an empty string");
            while (i < o->n) {
                if ((maxc < 0 || done < maxc) && i + a->n <= o->n && !memcmp(o->s + i, a->s, a->n)) {
                    sb_put(J, &out, b->s, b->n);
                    i += a->n;
                    done++;
                } else {
                    sb_put(J, &out, o->s + i, 1);
                    i++;
                }
            }
            return mk_strn(J, out.p ? out.p : "", out.n);
        }
        if (!strcmp(m, "find") || !strcmp(m, "count")) {
            val *a = arg(call, args, nargs, 0, NULL, R, S);
            if (!a || a->t != V_STR) fail(J, NVL_ERR_INVALID_ARG, line, "%s needs a string", m);
            long long c = 0, pos = -1;
            for (size_t q = 0; q + a->n <= o->n;) {
                if (!memcmp(o->s + q, a->s, a->n)) {
                    if (pos < 0) pos = (long long)q;
                    c++;
                    q += a->n ? a->n : 1;
                } else q++;
            }
            if (m[0] == 'f' && pos > 0) { /* byte offset -> character offset */
                size_t *off;
                int nc = utf8_offsets(R, o->s, (size_t)pos, &off);
                pos = nc;
            }
            return mk_int(J, m[0] == 'f' ? pos : c);
        }
        if (!strcmp(m, "join")) {
            val *l = arg(call, args, nargs, 0, NULL, R, S);
            if (!l || l->t != V_LIST) fail(J, NVL_ERR_INVALID_ARG, line, "join needs a list");
            sbuf out = {0};
            for (int i = 0; i < l->len; i++) {
                if (i) sb_put(J, &out, o->s, o->n);
                size_t n;
                const char *s = as_str(R, l->a[i], &n);
                sb_put(J, &out, s, n);
            }
            return mk_strn(J, out.p ? out.p : "", out.n);
        }
        if (!strcmp(m, "title") || !strcmp(m, "capitalize")) {
            char *d = jstrndup(J, o->s, o->n);
            int start = 1;
            for (size_t i = 0; i < o->n; i++) {
                unsigned char c = (unsigned char)d[i];
                if (m[0] == 't') {
                    d[i] = (char)(start ? toupper(c) : tolower(c));
                    start = !isalpha(c);
                } else d[i] = (char)(i == 0 ? toupper(c) : tolower(c));
            }
            return mk_strn(J, d, o->n);
        }
    } else if (o->t == V_DICT) {
        if (!strcmp(m, "items") || !strcmp(m, "keys") || !strcmp(m, "values")) {
            val *l = mk(J, V_LIST);
            for (int i = 0; i < o->len; i++) {
                val *k = mk_strn(J, o->k[i], o->kn[i]);
                if (m[0] == 'k') list_push(J, l, k);
                else if (m[0] == 'v') list_push(J, l, o->a[i]);
                else {
                    val *p = mk(J, V_LIST);
                    p->tuple = 1;
                    list_push(J, p, k);
                    list_push(J, p, o->a[i]);
                    list_push(J, l, p);
                }
            }
            return l;
        }
        if (!strcmp(m, "get")) {
            val *k = arg(call, args, nargs, 0, NULL, R, S), *d = arg(call, args, nargs, 1, NULL, R, S);
            val *v = k && k->t == V_STR ? dict_get(o, k->s, k->n) : NULL;
            return v ? v : d ? d : &V_NONE_V;
        }
        val *f = dict_get(o, m, strlen(m)); /* a macro stored in a dict */
        if (f && (f->t == V_MACRO || f->t == V_FUNC)) return NULL;
    }
    fail(J, NVL_ERR_UNSUPPORTED, line, "the method %s.%s()", type_name(o), m);
    return NULL;
}

static val *call_macro(rt *R, val *mv, node *call, val **args, int nargs, scope *S) {
    node *m = mv->macro;
    scope *ms = push_scope(R, R->globals);
    if (nargs > m->n_names) fail(R->J, NVL_ERR_INVALID_ARG, call->line, "macro %s takes %d arguments", m->s, m->n_names);
    for (int i = 0; i < m->n_names; i++) {
        val *v = i < nargs ? args[i] : NULL;
        for (int k = 0; !v && k < call->n_kw; k++)
            if (call->kwn[k] && !strcmp(call->kwn[k], m->names[i])) v = eval(R, S, call->kw[k]);
        if (!v) v = m->kw[i] ? eval(R, ms, m->kw[i]) : &V_UNDEF_V;
        dict_set(R->J, ms->vars, m->names[i], strlen(m->names[i]), v);
    }
    sbuf *saved = R->out;
    sbuf out = {0};
    R->out = &out;
    exec_body(R, ms, m->a);
    R->out = saved;
    return mk_strn(R->J, out.p ? out.p : "", out.n);
}

static val *call_global(rt *R, scope *S, const char *name, node *call, val **args, int nargs) {
    jctx *J = R->J;
    const int line = call->line;
    if (!strcmp(name, "raise_exception")) {
        size_t n = 0;
        const char *m = nargs ? as_str(R, args[0], &n) : "";
        fail(J, NVL_ERR_INVALID_ARG, line, "the template raised: %.*s", (int)n, m);
    }
    if (!strcmp(name, "namespace") || !strcmp(name, "dict")) {
        val *d = mk(J, V_DICT);
        if (nargs == 1 && args[0]->t == V_DICT)
            for (int i = 0; i < args[0]->len; i++) dict_set(J, d, args[0]->k[i], args[0]->kn[i], args[0]->a[i]);
        for (int k = 0; k < call->n_kw; k++) dict_set(J, d, call->kwn[k], strlen(call->kwn[k]), eval(R, S, call->kw[k]));
        return d;
    }
    if (!strcmp(name, "range")) {
        long long a = 0, b = 0, st = 1;
        if (nargs == 1) b = (long long)num_of(R, args[0], line);
        else if (nargs >= 2) {
            a = (long long)num_of(R, args[0], line);
            b = (long long)num_of(R, args[1], line);
            if (nargs == 3) st = (long long)num_of(R, args[2], line);
        }
        if (st == 0) fail(J, NVL_ERR_INVALID_ARG, line, "range step 0");
        val *l = mk(J, V_LIST);
        for (long long i = a; st > 0 ? i < b : i > b; i += st) {
            if (l->len > 1000000) fail(J, NVL_ERR_LIMIT, line, "range too long");
            list_push(J, l, mk_int(J, i));
        }
        return l;
    }
    if (!strcmp(name, "strftime_now")) {
        size_t n;
        const char *f = nargs ? as_str(R, args[0], &n) : "%Y-%m-%d";
        char fmt[128], out[256];
        snprintf(fmt, sizeof fmt, "%s", f);
        time_t t = time(NULL);
        struct tm tm;
        localtime_r(&t, &tm);
        size_t k = strftime(out, sizeof out, fmt, &tm);
        return mk_strn(J, jstrndup(J, out, k), k);
    }
    fail(J, NVL_ERR_UNSUPPORTED, line, "the function %s()", name);
    return NULL;
}

static int compare(rt *R, const char *op, val *a, val *b, int line);

static int apply_test(rt *R, scope *S, const char *name, val *v, node *call, val **args, int nargs) {
    (void)S;
    const int line = call->line;
    if (!strcmp(name, "defined")) return v->t != V_UNDEF;
    if (!strcmp(name, "undefined")) return v->t == V_UNDEF;
    if (!strcmp(name, "none")) return v->t == V_NONE;
    if (!strcmp(name, "string")) return v->t == V_STR;
    if (!strcmp(name, "number")) return v->t == V_INT || v->t == V_FLOAT;
    if (!strcmp(name, "integer")) return v->t == V_INT;
    if (!strcmp(name, "float")) return v->t == V_FLOAT;
    if (!strcmp(name, "boolean")) return v->t == V_BOOL;
    if (!strcmp(name, "true")) return v->t == V_BOOL && v->i;
    if (!strcmp(name, "false")) return v->t == V_BOOL && !v->i;
    if (!strcmp(name, "mapping")) return v->t == V_DICT;
    if (!strcmp(name, "sequence")) return v->t == V_LIST || v->t == V_STR || v->t == V_DICT;
    if (!strcmp(name, "iterable")) return v->t == V_LIST || v->t == V_STR || v->t == V_DICT;
    if (!strcmp(name, "callable")) return v->t == V_MACRO || v->t == V_FUNC;
    if (!strcmp(name, "even") || !strcmp(name, "odd")) {
        if (v->t != V_INT) fail(R->J, NVL_ERR_INVALID_ARG, line, "%s test on a %s", name, type_name(v));
        return (v->i % 2 == 0) == (name[0] == 'e');
    }
    if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "sameas")) return nargs && veq(R->J, v, args[0]);
    if (!strcmp(name, "ne")) return nargs && !veq(R->J, v, args[0]);
    static const char *const cmp[][2] = {{"lt", "<"}, {"le", "<="}, {"gt", ">"}, {"ge", ">="}, {"lessthan", "<"},
                                         {"greaterthan", ">"}, {NULL, NULL}};
    for (int i = 0; cmp[i][0]; i++)
        if (!strcmp(name, cmp[i][0])) {
            if (!nargs) fail(R->J, NVL_ERR_INVALID_ARG, line, "the test '%s' needs an argument", name);
            return compare(R, cmp[i][1], v, args[0], line);
        }
    if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (v->t != V_STR) return 0;
        for (size_t i = 0; i < v->n; i++)
            if (name[0] == 'l' ? isupper((unsigned char)v->s[i]) : islower((unsigned char)v->s[i])) return 0;
        return 1;
    }
    if (!strcmp(name, "in")) {
        if (!nargs) return 0;
        val *c = args[0];
        if (c->t == V_LIST) {
            for (int i = 0; i < c->len; i++)
                if (veq(R->J, v, c->a[i])) return 1;
            return 0;
        }
        if (c->t == V_DICT) return v->t == V_STR && dict_get(c, v->s, v->n);
        if (c->t == V_STR && v->t == V_STR) {
            for (size_t q = 0; q + v->n <= c->n; q++)
                if (!memcmp(c->s + q, v->s, v->n)) return 1;
        }
        return 0;
    }
    fail(R->J, NVL_ERR_UNSUPPORTED, line, "the test '%s'", name);
    return 0;
}

static val *apply_filter(rt *R, scope *S, const char *f, val *v, node *call, val **args, int nargs) {
    jctx *J = R->J;
    const int line = call->line;
    if (!strcmp(f, "length") || !strcmp(f, "count")) {
        if (v->t == V_STR) {
            size_t *off;
            return mk_int(J, utf8_offsets(R, v->s, v->n, &off));
        }
        if (v->t == V_LIST || v->t == V_DICT) return mk_int(J, v->len);
        if (v->t == V_UNDEF) return mk_int(J, 0);
        fail(J, NVL_ERR_INVALID_ARG, line, "length of a %s", type_name(v));
    }
    if (!strcmp(f, "trim")) {
        size_t n;
        const char *s = as_str(R, v, &n);
        val tmp = {.t = V_STR, .s = s, .n = n};
        return strip(R, &tmp, 1, 1, arg(call, args, nargs, 0, "chars", R, S));
    }
    if (!strcmp(f, "string")) {
        size_t n;
        const char *s = as_str(R, v, &n);
        return mk_strn(J, s, n);
    }
    if (!strcmp(f, "title")) { /* jinja2's do_title, not str.title: words start after runs of -, whitespace, ( { [ < */
        size_t n;
        const char *s = as_str(R, v, &n);
        char *d = jstrndup(J, s, n);
        int start = 1;
        for (size_t i = 0; i < n; i++) {
            const unsigned char c = (unsigned char)d[i];
            const int sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_space_at(s, n, i);
            if (!sep) d[i] = (char)(start ? toupper(c) : tolower(c));
            start = sep;
        }
        return mk_strn(J, d, n);
    }
    if (!strcmp(f, "upper") || !strcmp(f, "lower") || !strcmp(f, "capitalize")) {
        size_t n;
        const char *s = as_str(R, v, &n);
        val tmp = {.t = V_STR, .s = s, .n = n};
        return call_method(R, S, &tmp, f, call, NULL, 0);
    }
    if (!strcmp(f, "tojson")) {
        val *ind = arg(call, args, nargs, 0, "indent", R, S);
        sbuf b = {0};
        int indent = ind && ind->t == V_INT ? (int)ind->i : -1;
        val *sep = NULL;
        for (int k = 0; k < call->n_kw; k++)
            if (!strcmp(call->kwn[k], "separators")) sep = eval(R, S, call->kw[k]);
        const char *is = indent >= 0 ? "," : ", ", *ks = ": ";
        if (sep && sep->t == V_LIST && sep->len == 2 && sep->a[0]->t == V_STR && sep->a[1]->t == V_STR) {
            is = jstrndup(J, sep->a[0]->s, sep->a[0]->n);
            ks = jstrndup(J, sep->a[1]->s, sep->a[1]->n);
        }
        for (int k = 0; k < call->n_kw; k++)
            if (strcmp(call->kwn[k], "indent") && strcmp(call->kwn[k], "separators") &&
                (strcmp(call->kwn[k], "ensure_ascii") || truthy(eval(R, S, call->kw[k]))))
                fail(J, NVL_ERR_UNSUPPORTED, line, "tojson(%s=...)", call->kwn[k]);
        tojson(J, &b, v, indent, 0, is, ks, line);
        return mk_strn(J, b.p ? b.p : "", b.n);
    }
    if (!strcmp(f, "int") || !strcmp(f, "float")) { /* jinja2's do_int / do_float: the default where it is no number */
        const int to_int = f[0] == 'i';
        val *def = arg(call, args, nargs, 0, "default", R, S);
        if (v->t == V_INT || v->t == V_BOOL) return to_int ? mk_int(J, v->i) : mk_float(J, (double)v->i);
        if (v->t == V_FLOAT) return to_int ? mk_int(J, (long long)v->f) : v;
        if (v->t == V_STR) {
            char *z = jstrndup(J, v->s, v->n), *end = NULL;
            const size_t lead = strspn(z, " \t\n\r\f\v");
            const long long iv = strtoll(z + lead, &end, 10);
            if (end != z + lead && end[strspn(end, " \t\n\r\f\v")] == 0) return to_int ? mk_int(J, iv) : mk_float(J, (double)iv);
            const double dv = strtod(z + lead, &end);
            if (end != z + lead && end[strspn(end, " \t\n\r\f\v")] == 0 && isfinite(dv))
                return to_int ? mk_int(J, (long long)dv) : mk_float(J, dv);
        }
        if (def) return def;
        return to_int ? mk_int(J, 0) : mk_float(J, 0);
    }
    if (!strcmp(f, "abs")) {
        if (v->t == V_INT) {
            if (v->i == LLONG_MIN) fail(J, NVL_ERR_LIMIT, line, "integer overflow in abs (beyond 64 bits)");
            return mk_int(J, v->i < 0 ? -v->i : v->i);
        }
        return mk_float(J, fabs(num_of(R, v, line)));
    }
    if (!strcmp(f, "first") || !strcmp(f, "last")) {
        if (v->t == V_LIST) return v->len ? v->a[f[0] == 'f' ? 0 : v->len - 1] : &V_UNDEF_V;
        if (v->t == V_STR) {
            val idx = {.t = V_INT, .i = f[0] == 'f' ? 0 : -1};
            return getitem(R, v, &idx, line);
        }
        return &V_UNDEF_V;
    }
    if (!strcmp(f, "join")) {
        val *sep = arg(call, args, nargs, 0, "d", R, S), *attr = arg(call, args, nargs, 1, "attribute", R, S);
        if (v->t != V_LIST) fail(J, NVL_ERR_INVALID_ARG, line, "join of a %s", type_name(v));
        sbuf out = {0};
        for (int i = 0; i < v->len; i++) {
            if (i && sep) {
                size_t n;
                const char *s = as_str(R, sep, &n);
                sb_put(J, &out, s, n);
            }
            val *it = attr && attr->t == V_STR ? getattr_v(R, v->a[i], attr->s, attr->n) : v->a[i];
            size_t n;
            const char *s = as_str(R, it, &n);
            sb_put(J, &out, s, n);
        }
        return mk_strn(J, out.p ? out.p : "", out.n);
    }
    if (!strcmp(f, "list")) {
        if (v->t == V_LIST) return v;
        val *l = mk(J, V_LIST);
        if (v->t == V_DICT)
            for (int i = 0; i < v->len; i++) list_push(J, l, mk_strn(J, v->k[i], v->kn[i]));
        else if (v->t == V_STR) {
            size_t *off;
            int nc = utf8_offsets(R, v->s, v->n, &off);
            for (int i = 0; i < nc; i++) list_push(J, l, mk_strn(J, v->s + off[i], off[i + 1] - off[i]));
        }
        return l;
    }
    if (!strcmp(f, "reverse")) {
        if (v->t == V_STR) {
            size_t *off;
            int nc = utf8_offsets(R, v->s, v->n, &off);
            sbuf out = {0};
            for (int i = nc - 1; i >= 0; i--) sb_put(J, &out, v->s + off[i], off[i + 1] - off[i]);
            return mk_strn(J, out.p ? out.p : "", out.n);
        }
        if (v->t != V_LIST) fail(J, NVL_ERR_INVALID_ARG, line, "reverse of a %s", type_name(v));
        val *l = mk(J, V_LIST);
        for (int i = v->len - 1; i >= 0; i--) list_push(J, l, v->a[i]);
        return l;
    }
    if (!strcmp(f, "items")) {
        if (v->t != V_DICT) fail(J, NVL_ERR_INVALID_ARG, line, "items of a %s", type_name(v));
        return call_method(R, S, v, "items", call, NULL, 0);
    }
    if (!strcmp(f, "default") || !strcmp(f, "d")) {
        val *d = arg(call, args, nargs, 0, "default_value", R, S), *b = arg(call, args, nargs, 1, "boolean", R, S);
        const int use_default = b && truthy(b) ? !truthy(v) : v->t == V_UNDEF;
        return use_default ? (d ? d : mk_str(J, "")) : v;
    }
    if (!strcmp(f, "safe")) return v;
    if (!strcmp(f, "e") || !strcmp(f, "escape")) {
        size_t n;
        const char *s = as_str(R, v, &n);
        sbuf out = {0};
        for (size_t i = 0; i < n; i++) {
            switch (s[i]) {
            case '&': sb_puts(J, &out, "&amp;"); break;
            case '<': sb_puts(J, &out, "&lt;"); break;
            case '>': sb_puts(J, &out, "&gt;"); break;
            case '"': sb_puts(J, &out, "&#34;"); break;
            case '\'': sb_puts(J, &out, "&#39;"); break;
            default: sb_put(J, &out, s + i, 1);
            }
        }
        return mk_strn(J, out.p ? out.p : "", out.n);
    }
    if (!strcmp(f, "unique")) {
        if (v->t != V_LIST) fail(J, NVL_ERR_INVALID_ARG, line, "unique of a %s", type_name(v));
        val *l = mk(J, V_LIST);
        for (int i = 0; i < v->len; i++) {
            int dup = 0;
            for (int j = 0; j < l->len && !dup; j++) dup = veq(R->J, v->a[i], l->a[j]);
            if (!dup) list_push(J, l, v->a[i]);
        }
        return l;
    }
    if (!strcmp(f, "map") || !strcmp(f, "selectattr") || !strcmp(f, "rejectattr") || !strcmp(f, "select") ||
        !strcmp(f, "reject")) {
        if (v->t == V_UNDEF) return mk(J, V_LIST);
        if (v->t != V_LIST) fail(J, NVL_ERR_INVALID_ARG, line, "%s of a %s", f, type_name(v));
        val *l = mk(J, V_LIST);
        if (!strcmp(f, "map")) {
            val *attr = arg(call, args, nargs, -1, "attribute", R, S);
            if (!attr && nargs >= 1 && args[0]->t == V_STR) { /* map('filter') */
                char fname[64];
                snprintf(fname, sizeof fname, "%.*s", (int)args[0]->n, args[0]->s);
                for (int i = 0; i < v->len; i++) list_push(J, l, apply_filter(R, S, fname, v->a[i], call, args + 1, nargs - 1));
                return l;
            }
            if (!attr || attr->t != V_STR) fail(J, NVL_ERR_UNSUPPORTED, line, "map without attribute=");
            for (int i = 0; i < v->len; i++) list_push(J, l, getattr_v(R, v->a[i], attr->s, attr->n));
            return l;
        }
        const int by_attr = f[strlen(f) - 1] == 'r', keep_true = f[0] == 's';
        int ai = 0;
        val *attr = NULL;
        if (by_attr) {
            if (nargs < 1 || args[0]->t != V_STR) fail(J, NVL_ERR_INVALID_ARG, line, "%s needs an attribute name", f);
            attr = args[0];
            ai = 1;
        }
        for (int i = 0; i < v->len; i++) {
            val *it = attr ? getattr_v(R, v->a[i], attr->s, attr->n) : v->a[i];
            int ok;
            if (nargs > ai) {
                char tname[64];
                size_t tn;
                const char *ts = as_str(R, args[ai], &tn);
                snprintf(tname, sizeof tname, "%.*s", (int)tn, ts);
                ok = apply_test(R, S, tname, it, call, args + ai + 1, nargs - ai - 1);
            } else ok = truthy(it);
            if (ok == keep_true) list_push(J, l, v->a[i]);
        }
        return l;
    }
    if (!strcmp(f, "indent")) {
        val *w = arg(call, args, nargs, 0, "width", R, S), *first = arg(call, args, nargs, 1, "first", R, S);
        int width = w && w->t == V_INT ? (int)w->i : 4;
        size_t n;
        const char *s = as_str(R, v, &n);
        sbuf out = {0};
        if (first && truthy(first)) for (int k = 0; k < width; k++) sb_puts(J, &out, " ");
        for (size_t i = 0; i < n; i++) {
            sb_put(J, &out, s + i, 1);
            if (s[i] == '\n' && i + 1 < n && s[i + 1] != '\n')
                for (int k = 0; k < width; k++) sb_puts(J, &out, " ");
        }
        return mk_strn(J, out.p ? out.p : "", out.n);
    }
    fail(J, NVL_ERR_UNSUPPORTED, line, "the filter '%s'", f);
    return NULL;
}

static val *arith(rt *R, const char *op, val *a, val *b, int line) {
    jctx *J = R->J;
    if (!strcmp(op, "~")) {
        size_t an, bn;
        const char *as = as_str(R, a, &an), *bs = as_str(R, b, &bn);
        char *d = jalloc(J, an + bn + 1);
        memcpy(d, as, an);
        memcpy(d + an, bs, bn);
        d[an + bn] = 0;
        return mk_strn(J, d, an + bn);
    }
    if (!strcmp(op, "+")) {
        if (a->t == V_STR && b->t == V_STR) return arith(R, "~", a, b, line);
        if (a->t == V_LIST && b->t == V_LIST) {
            val *l = mk(J, V_LIST);
            for (int i = 0; i < a->len; i++) list_push(J, l, a->a[i]);
            for (int i = 0; i < b->len; i++) list_push(J, l, b->a[i]);
            return l;
        }
    }
    if (!strcmp(op, "*") && ((a->t == V_STR && b->t == V_INT) || (a->t == V_INT && b->t == V_STR))) {
        val *s = a->t == V_STR ? a : b;
        long long k = a->t == V_INT ? a->i : b->i;
        sbuf out = {0};
        if (s->n == 0) k = 0; /* '' * 10**18 is '' (and no 10**18 empty appends) */
        for (long long i = 0; i < k; i++) sb_put(J, &out, s->s, s->n); /* stops at JINJA_MAX_STRING */
        return mk_strn(J, out.p ? out.p : "", out.n);
    }
    const int an = a->t == V_INT || a->t == V_BOOL || a->t == V_FLOAT, bn = b->t == V_INT || b->t == V_BOOL || b->t == V_FLOAT;
    if (!an || !bn) fail(J, NVL_ERR_INVALID_ARG, line, "'%s' between %s and %s", op, type_name(a), type_name(b));
    const int ints = a->t != V_FLOAT && b->t != V_FLOAT;
    if (ints) {
        long long x = a->i, y = b->i, sum;
        /* Python's integers do not overflow; 64-bit ones do: an error rather than undefined
         * behaviour (a chat template has no use for such numbers) */
        if (!strcmp(op, "+") || !strcmp(op, "-") || !strcmp(op, "*")) {
            const int ovf = op[0] == '+'   ? __builtin_add_overflow(x, y, &sum)
                            : op[0] == '-' ? __builtin_sub_overflow(x, y, &sum)
                                           : __builtin_mul_overflow(x, y, &sum);
            if (ovf) fail(J, NVL_ERR_LIMIT, line, "integer overflow in '%s' (beyond 64 bits)", op);
            return mk_int(J, sum);
        }
        if (!strcmp(op, "//") || !strcmp(op, "%")) {
            if (y == 0) fail(J, NVL_ERR_INVALID_ARG, line, "division by zero");
            if (x == LLONG_MIN && y == -1) fail(J, NVL_ERR_LIMIT, line, "integer overflow in '%s' (beyond 64 bits)", op);
            long long q = x / y, r = x % y;
            if (r != 0 && ((r < 0) != (y < 0))) {
                q--;
                r += y;
            }
            return mk_int(J, op[0] == '/' ? q : r);
        }
        if (!strcmp(op, "**") && y >= 0) { /* by squaring: at most 64 steps, overflow refused */
            long long acc = 1, base = x;
            for (long long e = y; e > 0; e >>= 1) {
                if ((e & 1) && __builtin_mul_overflow(acc, base, &acc))
                    fail(J, NVL_ERR_LIMIT, line, "integer overflow in '**' (beyond 64 bits)");
                if (e > 1 && __builtin_mul_overflow(base, base, &base)) {
                    if (acc != 0) fail(J, NVL_ERR_LIMIT, line, "integer overflow in '**' (beyond 64 bits)");
                    break;
                }
            }
            return mk_int(J, acc);
        }
    }
    double x = num_of(R, a, line), y = num_of(R, b, line);
    if (!strcmp(op, "+")) return mk_float(J, x + y);
    if (!strcmp(op, "-")) return mk_float(J, x - y);
    if (!strcmp(op, "*")) return mk_float(J, x * y);
    if (!strcmp(op, "/")) {
        if (y == 0) fail(J, NVL_ERR_INVALID_ARG, line, "division by zero");
        return mk_float(J, x / y);
    }
    if (!strcmp(op, "//") || !strcmp(op, "%")) { /* Python's float divmod (floatobject.c): fmod, then floored */
        if (y == 0) fail(J, NVL_ERR_INVALID_ARG, line, "division by zero");
        double mod = fmod(x, y), div = (x - mod) / y;
        if (mod != 0) {
            if ((y < 0) != (mod < 0)) {
                mod += y;
                div -= 1.0;
            }
        } else {
            mod = copysign(0.0, y);
        }
        double fl = 0;
        if (div != 0) {
            fl = floor(div);
            if (div - fl > 0.5) fl += 1.0;
        } else {
            fl = copysign(0.0, x / y);
        }
        return mk_float(J, op[0] == '%' ? mod : fl);
    }
    if (!strcmp(op, "**")) return mk_float(J, pow(x, y));
    fail(J, NVL_ERR_UNSUPPORTED, line, "operator %s", op);
    return NULL;
}

static int contains(rt *R, val *c, val *v, int line) {
    if (c->t == V_STR) {
        if (v->t != V_STR) fail(R->J, NVL_ERR_INVALID_ARG, line, "'in <string>' needs a string on the left");
        for (size_t q = 0; q + v->n <= c->n; q++)
            if (!memcmp(c->s + q, v->s, v->n)) return 1;
        return 0;
    }
    if (c->t == V_LIST) {
        for (int i = 0; i < c->len; i++)
            if (veq(R->J, v, c->a[i])) return 1;
        return 0;
    }
    if (c->t == V_DICT) return v->t == V_STR && dict_get(c, v->s, v->n) != NULL;
    if (c->t == V_UNDEF) return 0;
    fail(R->J, NVL_ERR_INVALID_ARG, line, "'in' on a %s", type_name(c));
    return 0;
}

static int compare(rt *R, const char *op, val *a, val *b, int line) {
    if (!strcmp(op, "==")) return veq(R->J, a, b);
    if (!strcmp(op, "!=")) return !veq(R->J, a, b);
    if (!strcmp(op, "in")) return contains(R, b, a, line);
    if (!strcmp(op, "notin")) return !contains(R, b, a, line);
    int c;
    if (a->t == V_STR && b->t == V_STR) {
        size_t m = a->n < b->n ? a->n : b->n;
        c = memcmp(a->s, b->s, m);
        if (c == 0) c = a->n < b->n ? -1 : a->n > b->n;
    } else {
        double x = num_of(R, a, line), y = num_of(R, b, line);
        c = x < y ? -1 : x > y;
    }
    if (!strcmp(op, "<")) return c < 0;
    if (!strcmp(op, ">")) return c > 0;
    if (!strcmp(op, "<=")) return c <= 0;
    return c >= 0;
}

/* The positional arguments of a call, filter or test. */
static val **eval_args(rt *R, scope *S, node *x) {
    val **args = jalloc(R->J, (size_t)(x->n_items + 1) * sizeof *args);
    for (int i = 0; i < x->n_items; i++) args[i] = eval(R, S, x->items[i]);
    return args;
}

/* An undefined value that says what was missing, in jinja2's words (Undefined._undefined_message):
 * "'dict object' has no attribute 'x'" for a name, "list object has no element 5" for an index;
 * its s holds the message (raised when an attribute or item of it is read). */
static val *undefined_of(jctx *J, const val *o, const val *name) {
    static const char *const types[] = {"Undefined", "None", "bool object", "int object", "float object", "str object",
                                        "list object", "dict object", "Macro object", "function object"};
    const char *type = o->t == V_LIST && o->tuple ? "tuple object" : types[o->t];
    sbuf b = {0};
    if (name->t == V_STR) {
        sb_puts(J, &b, "'");
        sb_puts(J, &b, type);
        sb_puts(J, &b, "' has no attribute ");
    } else {
        sb_puts(J, &b, type);
        sb_puts(J, &b, " has no element ");
    }
    repr(J, &b, name);
    val *u = mk(J, V_UNDEF);
    u->s = b.p;
    return u;
}

static val *eval_node(rt *R, scope *S, node *x);

/* eval_node, counting how deep: a chain like 1+1+...+1 is a tree as deep as it is long */
static val *eval(rt *R, scope *S, node *x) {
    if (++R->J->edepth > JINJA_MAX_EVAL_DEPTH)
        fail(R->J, NVL_ERR_LIMIT, x->line, "an expression nested deeper than %d levels (a chain of operators, filters or "
             "subscripts that long counts as deep)", JINJA_MAX_EVAL_DEPTH);
    R->J->line = x->line;
    val *v = eval_node(R, S, x);
    R->J->edepth--;
    return v;
}

static val *eval_node(rt *R, scope *S, node *x) {
    jctx *J = R->J;
    switch (x->k) {
    case E_LIT: return x->v;
    case E_NAME: {
        val *v = lookup(S, x->s, x->n);
        if (v->t == V_UNDEF) {
            static const char *const fns[] = {"raise_exception", "namespace", "range", "strftime_now", "dict", NULL};
            for (int i = 0; fns[i]; i++)
                if (!strcmp(x->s, fns[i])) {
                    val *f = mk(J, V_FUNC);
                    f->s = fns[i];
                    return f;
                }
            sbuf b = {0};
            sb_puts(J, &b, "'");
            sb_put(J, &b, x->s, x->n);
            sb_puts(J, &b, "' is undefined");
            val *u = mk(J, V_UNDEF);
            u->s = b.p;
            return u;
        }
        return v;
    }
    /* an attribute or item of an undefined value raises, as jinja2's default Undefined does
       (printing it or testing it with `is defined` does not), with jinja2's words for how it
       came to be undefined */
    case E_ATTR: {
        val *o = eval(R, S, x->a);
        if (o->t == V_UNDEF) fail(J, NVL_ERR_INVALID_ARG, x->line, "%s", o->s ? o->s : "undefined value");
        val *v = getattr_v(R, o, x->s, strlen(x->s));
        return v->t == V_UNDEF ? undefined_of(J, o, &(val){.t = V_STR, .s = x->s, .n = strlen(x->s)}) : v;
    }
    case E_INDEX: {
        val *o = eval(R, S, x->a);
        if (o->t == V_UNDEF) fail(J, NVL_ERR_INVALID_ARG, x->line, "%s", o->s ? o->s : "undefined value");
        val *k = eval(R, S, x->b), *v = getitem(R, o, k, x->line);
        return v->t == V_UNDEF ? undefined_of(J, o, k) : v;
    }
    case E_SLICE: {
        val *o = eval(R, S, x->a);
        if (o->t == V_UNDEF) fail(J, NVL_ERR_INVALID_ARG, x->line, "%s", o->s ? o->s : "undefined value");
        val *lo = x->b ? eval(R, S, x->b) : NULL, *hi = x->c ? eval(R, S, x->c) : NULL, *st = x->d ? eval(R, S, x->d) : NULL;
        long long a, b, step;
        if (o->t == V_LIST) {
            slice_idx(o->len, lo, hi, st, &a, &b, &step);
            val *l = mk(J, V_LIST);
            for (long long i = a; step > 0 ? i < b : i > b; i += step) list_push(J, l, o->a[i]);
            return l;
        }
        if (o->t == V_STR) {
            size_t *off;
            int nc = utf8_offsets(R, o->s, o->n, &off);
            slice_idx(nc, lo, hi, st, &a, &b, &step);
            sbuf out = {0};
            for (long long i = a; step > 0 ? i < b : i > b; i += step) sb_put(J, &out, o->s + off[i], off[i + 1] - off[i]);
            return mk_strn(J, out.p ? out.p : "", out.n);
        }
        fail(J, NVL_ERR_INVALID_ARG, x->line, "slice of a %s", type_name(o));
        return NULL;
    }
    case E_CALL: {
        val **args = eval_args(R, S, x);
        if (x->a->k == E_ATTR) {
            val *o = eval(R, S, x->a->a);
            if (o->t == V_STR || o->t == V_DICT || o->t == V_LIST) {
                val *m = o->t == V_DICT ? dict_get(o, x->a->s, strlen(x->a->s)) : NULL;
                if (m && m->t == V_MACRO) return call_macro(R, m, x, args, x->n_items, S);
                val *r = call_method(R, S, o, x->a->s, x, args, x->n_items);
                if (r) return r;
            }
        }
        val *f = eval(R, S, x->a);
        if (f->t == V_MACRO) return call_macro(R, f, x, args, x->n_items, S);
        if (f->t == V_FUNC) return call_global(R, S, f->s, x, args, x->n_items);
        fail(J, NVL_ERR_INVALID_ARG, x->line, "calling a %s", type_name(f));
        return NULL;
    }
    case E_FILTER: {
        val *v = eval(R, S, x->a);
        val **args = eval_args(R, S, x);
        return apply_filter(R, S, x->s, v, x, args, x->n_items);
    }
    case E_TEST: {
        val *v = eval(R, S, x->a);
        val **args = eval_args(R, S, x);
        int r = apply_test(R, S, x->s, v, x, args, x->n_items);
        return mk_bool(x->neg ? !r : r);
    }
    case E_BIN: return arith(R, x->s, eval(R, S, x->a), eval(R, S, x->b), x->line);
    case E_CMP: return mk_bool(compare(R, x->s, eval(R, S, x->a), eval(R, S, x->b), x->line));
    case E_NEG: {
        val *v = eval(R, S, x->a);
        if (v->t == V_INT || v->t == V_BOOL) {
            if (v->i == LLONG_MIN) fail(J, NVL_ERR_LIMIT, x->line, "integer overflow in unary '-' (beyond 64 bits)");
            return mk_int(J, -v->i);
        }
        return mk_float(J, -num_of(R, v, x->line));
    }
    case E_POS: return eval(R, S, x->a);
    case E_NOT: return mk_bool(!truthy(eval(R, S, x->a)));
    case E_AND: {
        val *a = eval(R, S, x->a);
        return truthy(a) ? eval(R, S, x->b) : a;
    }
    case E_OR: {
        val *a = eval(R, S, x->a);
        return truthy(a) ? a : eval(R, S, x->b);
    }
    case E_COND: return truthy(eval(R, S, x->b)) ? eval(R, S, x->a) : x->c ? eval(R, S, x->c) : &V_UNDEF_V;
    case E_LIST: {
        val *l = mk(J, V_LIST);
        l->tuple = x->neg;
        for (int i = 0; i < x->n_items; i++) list_push(J, l, eval(R, S, x->items[i]));
        return l;
    }
    case E_DICT: {
        val *d = mk(J, V_DICT);
        for (int i = 0; i < x->n_items; i++) {
            val *k = eval(R, S, x->items[i]);
            if (k->t != V_STR) fail(J, NVL_ERR_UNSUPPORTED, x->line, "dict keys other than strings");
            dict_set(J, d, k->s, k->n, eval(R, S, x->kw[i]));
        }
        return d;
    }
    default: fail(J, NVL_ERR_INTERNAL, x->line, "bad expression node");
    }
    return NULL;
}

static void assign(rt *R, scope *S, node *x, val *v) {
    if (x->n_names == 1) {
        dict_set(R->J, S->vars, x->names[0], strlen(x->names[0]), v);
        return;
    }
    if (v->t != V_LIST || v->len != x->n_names)
        fail(R->J, NVL_ERR_INVALID_ARG, x->line, "cannot unpack a %s into %d names", type_name(v), x->n_names);
    for (int i = 0; i < x->n_names; i++) dict_set(R->J, S->vars, x->names[i], strlen(x->names[i]), v->a[i]);
}

static void exec_body(rt *R, scope *S, node *body) {
    jctx *J = R->J;
    if (++J->depth > 200) fail(J, NVL_ERR_LIMIT, body->line, "nesting deeper than 200");
    for (int i = 0; i < body->n_items && !R->brk && !R->cont; i++) {
        node *x = body->items[i];
        if (++J->steps > JINJA_MAX_STEPS) fail(J, NVL_ERR_LIMIT, x->line, "the template ran more than %lld steps", JINJA_MAX_STEPS);
        switch (x->k) {
        case N_TEXT: sb_put(J, R->out, x->s, x->n); break;
        case N_OUT: {
            val *v = eval(R, S, x->a);
            str_of(J, R->out, v);
            break;
        }
        case N_BODY: exec_body(R, S, x); break;
        case N_IF: {
            int done = 0;
            for (int b = 0; b + 1 < x->n_items && !done; b += 2)
                if (truthy(eval(R, S, x->items[b]))) {
                    exec_body(R, S, x->items[b + 1]);
                    done = 1;
                }
            if (!done && x->a) exec_body(R, S, x->a);
            break;
        }
        case N_FOR: {
            val *it = eval(R, S, x->a);
            val *seq = it;
            if (it->t == V_DICT) seq = call_method(R, S, it, "keys", x, NULL, 0);
            else if (it->t == V_STR) {
                node dummy = {.line = x->line};
                seq = apply_filter(R, S, "list", it, &dummy, NULL, 0);
            } else if (it->t == V_UNDEF || it->t == V_NONE) seq = mk(J, V_LIST);
            else if (it->t != V_LIST) fail(J, NVL_ERR_INVALID_ARG, x->line, "cannot loop over a %s", type_name(it));
            /* the loop's filter runs before loop.* is known */
            val *items = seq;
            if (x->b) {
                items = mk(J, V_LIST);
                scope *fs = push_scope(R, S);
                for (int k = 0; k < seq->len; k++) {
                    node tgt = *x;
                    assign(R, fs, &tgt, seq->a[k]);
                    if (truthy(eval(R, fs, x->b))) list_push(J, items, seq->a[k]);
                }
            }
            if (items->len == 0) {
                if (x->d) exec_body(R, S, x->d);
                break;
            }
            val *loop = mk(J, V_DICT);
            dict_set(J, loop, "depth", 5, mk_int(J, 1)); /* (no recursive loops: always the first level) */
            dict_set(J, loop, "depth0", 6, mk_int(J, 0));
            for (int k = 0; k < items->len; k++) {
                const int L = items->len;
                /* a scope per iteration: what the body sets does not reach the next one (jinja2;
                   it carried over, a differential fuzz's find) */
                scope *ls = push_scope(R, S);
                dict_set(J, ls->vars, "loop", 4, loop);
                dict_set(J, loop, "index", 5, mk_int(J, k + 1));
                dict_set(J, loop, "index0", 6, mk_int(J, k));
                dict_set(J, loop, "revindex", 8, mk_int(J, L - k));
                dict_set(J, loop, "revindex0", 9, mk_int(J, L - k - 1));
                dict_set(J, loop, "first", 5, mk_bool(k == 0));
                dict_set(J, loop, "last", 4, mk_bool(k == L - 1));
                dict_set(J, loop, "length", 6, mk_int(J, L));
                dict_set(J, loop, "previtem", 8, k ? items->a[k - 1] : &V_UNDEF_V);
                dict_set(J, loop, "nextitem", 8, k + 1 < L ? items->a[k + 1] : &V_UNDEF_V);
                assign(R, ls, x, items->a[k]);
                exec_body(R, ls, x->c);
                R->cont = 0;
                if (R->brk) {
                    R->brk = 0;
                    break;
                }
            }
            break;
        }
        case N_SET: {
            val *v = eval(R, S, x->a);
            if (x->s) { /* ns.attr = v */
                val *ns = lookup(S, x->s, strlen(x->s));
                if (ns->t != V_DICT) fail(J, NVL_ERR_INVALID_ARG, x->line, "cannot set an attribute of '%s' (not a namespace)", x->s);
                dict_set(J, ns, x->names[0], strlen(x->names[0]), v);
            } else {
                assign(R, S, x, v);
            }
            break;
        }
        case N_SETBLOCK: {
            sbuf *saved = R->out;
            sbuf out = {0};
            R->out = &out;
            exec_body(R, S, x->a);
            R->out = saved;
            dict_set(J, S->vars, x->names[0], strlen(x->names[0]), mk_strn(J, out.p ? out.p : "", out.n));
            break;
        }
        case N_MACRO: {
            val *m = mk(J, V_MACRO);
            m->macro = x;
            dict_set(J, S->vars, x->s, strlen(x->s), m);
            break;
        }
        case N_BREAK: R->brk = 1; break;
        case N_CONTINUE: R->cont = 1; break;
        default: fail(J, NVL_ERR_INTERNAL, x->line, "bad statement node");
        }
    }
    J->depth--;
}

int llm_jinja_failed_on_size(const nvl_err *err) {
    return err && err->code == NVL_ERR_LIMIT && (strstr(err->msg, JINJA_MSG_POOL) || strstr(err->msg, JINJA_MSG_STRING));
}

nvl_status llm_jinja_render(const char *tmpl, size_t n, const cJSON *ctx, char **out, size_t *len, nvl_err *err) {
    *out = NULL;
    if (len) *len = 0;
    jctx J;
    memset(&J, 0, sizeof J);
    J.err = err;
    nvl_status st = NVL_OK;
    if (setjmp(J.fail) == 0) {
        /* jinja2's lexer first: every \r\n and \r becomes \n (newline_sequence), and one trailing
           newline of the template is dropped (keep_trailing_newline off, as transformers renders) */
        char *src = jalloc(&J, n + 1);
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (tmpl[i] == '\r') {
                src[m++] = '\n';
                if (i + 1 < n && tmpl[i + 1] == '\n') i++;
            } else {
                src[m++] = tmpl[i];
            }
        }
        if (m && src[m - 1] == '\n') m--;
        src[m] = 0;
        lexer L = {.J = &J};
        lex(&L, src, m);
        parser P = {.J = &J, .t = L.tk, .i = 0};
        const char *w = NULL;
        node *root = p_body(&P, NULL, &w);
        rt R = {.J = &J};
        scope *g = push_scope(&R, NULL);
        R.globals = g;
        if (ctx && cJSON_IsObject(ctx))
            for (const cJSON *c = ctx->child; c; c = c->next) dict_set(&J, g->vars, c->string, strlen(c->string), from_json(&J, c));
        sbuf o = {0};
        R.out = &o;
        exec_body(&R, g, root);
        char *res = nvl_malloc(o.n + 1);
        if (!res) fail(&J, NVL_ERR_NOMEM, 0, "out of memory for %zu bytes", o.n);
        if (o.n) memcpy(res, o.p, o.n);
        res[o.n] = 0;
        *out = res;
        if (len) *len = o.n;
    } else {
        st = J.st;
    }
    while (J.chunks) {
        chunk *c = J.chunks->next;
        nvl_free(J.chunks);
        J.chunks = c;
    }
    return st;
}
