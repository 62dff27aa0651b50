/* Chat rendering in the Nano V2 format and prompt tokenization with media expansion (see
 * chat.h for the exact layout and its sources). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/alloc.h"
#include "base/json_util.h"
#include "base/mapped_file.h"
#include "chat.h"
#include "jinja.h"

llm_chat_options llm_chat_options_default(void) {
    llm_chat_options o = {.add_generation_prompt = 1, .think = -1};
    return o;
}

// ---------------------------------------------------------------------------
// A growing string

typedef struct sbuf {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *p = nvl_realloc(b->s, nc);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = nc;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* The message text as the template sees it: media markers and text parts in order. */
static void message_text(const llm_chat_message *m, sbuf *b) {
    for (int i = 0; i < m->n_parts; i++) {
        const llm_chat_part *p = &m->parts[i];
        if (p->kind == LLM_PART_IMAGE) sb_str(b, "<image>\n");
        else if (p->kind == LLM_PART_VIDEO) sb_str(b, "<video>\n");
        else if (p->text) sb_str(b, p->text);
    }
}

/* Python's str.replace for the two reasoning switches, then str.strip() (ASCII whitespace). */
static void clean_append(sbuf *out, const char *s, size_t n) {
    sbuf t = {0};
    for (size_t i = 0; i < n;) {
        if (n - i >= 9 && !memcmp(s + i, "/no_think", 9)) i += 9;
        else {
            sb_add(&t, s + i, 1);
            i++;
        }
    }
    sbuf u = {0};
    for (size_t i = 0; i < t.n;) {
        if (t.n - i >= 6 && !memcmp(t.s + i, "/think", 6)) i += 6;
        else {
            sb_add(&u, t.s + i, 1);
            i++;
        }
    }
    size_t a = 0, e = u.n;
    while (a < e && strchr(" \t\n\r\v\f", u.s[a])) a++;
    while (e > a && strchr(" \t\n\r\v\f", u.s[e - 1])) e--;
    sb_add(out, u.s ? u.s + a : "", e - a);
    out->oom |= t.oom | u.oom;
    nvl_free(t.s);
    nvl_free(u.s);
}

nvl_status llm_chat_render(const llm_chat_message *msgs, int n, const llm_chat_options *opts,
                           char **out, size_t *len, nvl_err *err) {
    llm_chat_options o = opts ? *opts : llm_chat_options_default();
    int think = 1;
    const llm_chat_message *sys = NULL;
    for (int i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant"))
            return nvl_err_set(err, NVL_ERR_INVALID_ARG,
                               "chat: message %d has role '%s' (expected system, user or assistant)", i, r);
        if (!strcmp(r, "system") || !strcmp(r, "user")) {
            sbuf t = {0};
            message_text(&msgs[i], &t);
            if (t.s && strstr(t.s, "/no_think")) think = 0;
            else if (t.s && strstr(t.s, "/think")) think = 1;
            nvl_free(t.s);
        }
        if (!strcmp(r, "system")) sys = &msgs[i];
    }
    if (o.think >= 0) think = o.think;
    sbuf b = {0};
    sb_str(&b, "<s><SPECIAL_10>System\n");
    if (sys) {
        sbuf t = {0};
        message_text(sys, &t);
        clean_append(&b, t.s ? t.s : "", t.n);
        b.oom |= t.oom;
        nvl_free(t.s);
    }
    sb_str(&b, "\n");
    for (int i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        sbuf t = {0};
        message_text(&msgs[i], &t);
        const char *s = t.s ? t.s : "";
        size_t sl = t.n;
        if (!strcmp(r, "user")) {
            sb_str(&b, "<SPECIAL_11>User\n");
            clean_append(&b, s, sl);
            sb_str(&b, "\n");
        } else if (!strcmp(r, "assistant")) {
            /* keep what follows the last </think>, then strip */
            const char *p = s, *q;
            while ((q = strstr(p, "</think>"))) p = q + 8;
            size_t a = 0, e = strlen(p);
            while (a < e && strchr(" \t\n\r\v\f", p[a])) a++;
            while (e > a && strchr(" \t\n\r\v\f", p[e - 1])) e--;
            sb_str(&b, "<SPECIAL_11>Assistant\n");
            sb_add(&b, p + a, e - a);
            sb_str(&b, "\n<SPECIAL_12>\n");
        }
        b.oom |= t.oom;
        nvl_free(t.s);
    }
    if (o.add_generation_prompt)
        sb_str(&b, think ? "<SPECIAL_11>Assistant\n<think>\n" : "<SPECIAL_11>Assistant\n<think></think>");
    if (b.oom) {
        nvl_free(b.s);
        return nvl_err_set(err, NVL_ERR_NOMEM, "chat: out of memory");
    }
    *out = b.s;
    *len = b.n;
    return NVL_OK;
}

// ---------------------------------------------------------------------------
// JSON messages

void llm_chat_messages_free(llm_chat_message *msgs, int n) {
    if (!msgs) return;
    for (int i = 0; i < n; i++) nvl_free((void *)msgs[i].parts);
    nvl_free(msgs);
}

nvl_status llm_chat_messages_from_json(const cJSON *root, llm_chat_message **out, int *n_out,
                                       nvl_err *err) {
    *out = NULL;
    *n_out = 0;
    if (!cJSON_IsArray(root)) return nvl_err_set(err, NVL_ERR_FORMAT, "chat: messages must be a JSON array");
    int n = cJSON_GetArraySize(root), i = 0;
    llm_chat_message *m = nvl_calloc((size_t)(n ? n : 1), sizeof *m);
    if (!m) return nvl_err_set(err, NVL_ERR_NOMEM, "chat: out of memory");
    const cJSON *it;
    nvl_status st = NVL_OK;
    cJSON_ArrayForEach(it, root) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsString(role)) {
            st = nvl_err_set(err, NVL_ERR_FORMAT, "chat: message %d has no string 'role'", i);
            break;
        }
        /* the roles the chat template renders (any other it would drop without a word) */
        if (strcmp(role->valuestring, "system") && strcmp(role->valuestring, "user") &&
            strcmp(role->valuestring, "assistant")) {
            st = nvl_err_set(err, NVL_ERR_FORMAT, "chat: message %d has role '%.64s' (expected system, user or assistant)", i,
                             role->valuestring);
            break;
        }
        m[i].role = role->valuestring;
        if (cJSON_IsString(content)) {
            llm_chat_part *p = nvl_calloc(1, sizeof *p);
            if (!p) { st = nvl_err_set(err, NVL_ERR_NOMEM, "chat: out of memory"); break; }
            p->kind = LLM_PART_TEXT;
            p->text = content->valuestring;
            m[i].parts = p;
            m[i].n_parts = 1;
        } else if (cJSON_IsArray(content)) {
            int np = cJSON_GetArraySize(content), k = 0;
            llm_chat_part *p = nvl_calloc((size_t)(np ? np : 1), sizeof *p);
            if (!p) { st = nvl_err_set(err, NVL_ERR_NOMEM, "chat: out of memory"); break; }
            m[i].parts = p;
            const cJSON *c;
            cJSON_ArrayForEach(c, content) {
                const cJSON *ty = cJSON_GetObjectItemCaseSensitive(c, "type");
                const char *t = cJSON_IsString(ty) ? ty->valuestring : "";
                if (!strcmp(t, "text")) {
                    const cJSON *tx = cJSON_GetObjectItemCaseSensitive(c, "text");
                    if (!cJSON_IsString(tx)) {
                        st = nvl_err_set(err, NVL_ERR_FORMAT, "chat: message %d part %d has no string 'text'", i, k);
                        break;
                    }
                    p[k].kind = LLM_PART_TEXT;
                    p[k].text = tx->valuestring;
                } else if (!strcmp(t, "image")) {
                    p[k].kind = LLM_PART_IMAGE;
                } else if (!strcmp(t, "video")) {
                    p[k].kind = LLM_PART_VIDEO;
                } else {
                    st = nvl_err_set(err, NVL_ERR_FORMAT,
                                     "chat: message %d part %d has type '%s' (expected text, image or video)", i, k, t);
                    break;
                }
                k++;
            }
            m[i].n_parts = k;
            if (st != NVL_OK) break;
        } else {
            st = nvl_err_set(err, NVL_ERR_FORMAT, "chat: message %d content must be a string or a list of parts", i);
            break;
        }
        i++;
    }
    if (st != NVL_OK) {
        llm_chat_messages_free(m, n);
        return st;
    }
    *out = m;
    *n_out = n;
    return NVL_OK;
}

// ---------------------------------------------------------------------------
// Plain text: user text never becomes markers or control tokens

/* The strings that nanovl alone places: media markers and the image delimiters (whatever the
 * tokenizer says about them), besides every special added token. */
static const char *const k_markers[] = {"<image>", "<video>", "<img>", "</img>", NULL};

/* Escapes are U+F0000 + byte (UTF-8 F3 B0 80-83 80-BF), private use: the template passes them
 * through like any non-space character. */
static int is_escape(const char *s, size_t n) {
    return n >= 4 && (unsigned char)s[0] == 0xF3 && (unsigned char)s[1] == 0xB0 && ((unsigned char)s[2] & 0xFC) == 0x80 &&
           ((unsigned char)s[3] & 0xC0) == 0x80;
}
static void sb_escape_byte(sbuf *b, unsigned char c) {
    char e[4] = {(char)0xF3, (char)0xB0, (char)(0x80 | (c >> 6)), (char)(0x80 | (c & 0x3F))};
    sb_add(b, e, 4);
}
static size_t utf8_char_len(const char *s, size_t n) {
    const unsigned char c = (unsigned char)s[0];
    size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    return l > n ? n : l;
}

nvl_status llm_chat_escape_text(const llm_tokenizer *tok, const char *text, size_t len, char **out, size_t *out_len,
                                nvl_err *err) {
    *out = NULL;
    *out_len = 0;
    char *clean = NULL;
    size_t cl = 0;
    if (llm_utf8_sanitize(text ? text : "", text ? len : 0, &clean, &cl) != NVL_OK)
        return nvl_err_set(err, NVL_ERR_NOMEM, "chat: out of memory");
    sbuf b = {0};
    sb_add(&b, "", 0);
    for (size_t i = 0; i < cl;) {
        int hit = !clean[i] || is_escape(clean + i, cl - i) || (tok && llm_tokenizer_special_at(tok, clean + i, cl - i) > 0);
        for (int k = 0; !hit && k < 4; k++) {
            const size_t ml = strlen(k_markers[k]);
            hit = ml <= cl - i && !memcmp(clean + i, k_markers[k], ml);
        }
        const size_t cn = utf8_char_len(clean + i, cl - i);
        if (hit)
            for (size_t j = 0; j < cn; j++) sb_escape_byte(&b, (unsigned char)clean[i + j]);
        else
            sb_add(&b, clean + i, cn);
        i += cn;
    }
    nvl_free(clean);
    if (b.oom) {
        nvl_free(b.s);
        return nvl_err_set(err, NVL_ERR_NOMEM, "chat: out of memory");
    }
    *out = b.s;
    *out_len = b.n;
    return NVL_OK;
}

/* Undoes the escapes of rendered text: *plain marks the bytes that came from escapes (where no
 * marker or added token may start). */
static nvl_status unescape(const char *text, size_t len, char **out, uint8_t **plain, size_t *out_len) {
    *out = nvl_malloc(len + 1);
    *plain = nvl_calloc(len + 1, 1);
    if (!*out || !*plain) {
        nvl_freep(out);
        nvl_freep(plain);
        return NVL_ERR_NOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        if (is_escape(text + i, len - i)) {
            (*out)[k] = (char)((((unsigned char)text[i + 2] & 3) << 6) | ((unsigned char)text[i + 3] & 0x3F));
            (*plain)[k++] = 1;
            i += 4;
        } else
            (*out)[k++] = text[i++];
    }
    (*out)[k] = 0;
    *out_len = k;
    return NVL_OK;
}

nvl_status llm_chat_escape_messages(const llm_tokenizer *tok, llm_chat_message *msgs, int n, char ***owned, int *n_owned,
                                    nvl_err *err) {
    int total = 0;
    for (int m = 0; m < n; m++) total += msgs[m].n_parts;
    *owned = nvl_calloc((size_t)total + 1, sizeof **owned);
    *n_owned = 0;
    if (!*owned) return nvl_err_set(err, NVL_ERR_NOMEM, "chat: out of memory");
    for (int m = 0; m < n; m++) {
        llm_chat_part *parts = (llm_chat_part *)msgs[m].parts;
        int first = 0;
        const char *after = NULL, *after_end = NULL;
        if (!strcmp(msgs[m].role, "assistant")) /* what follows the last </think>, as the template keeps */
            for (int k = 0; k < msgs[m].n_parts; k++) {
                const char *t = parts[k].kind == LLM_PART_TEXT ? parts[k].text : NULL, *q;
                const char *end = t ? t + (parts[k].len ? parts[k].len : strlen(t)) : NULL;
                while (t && (q = memmem(t, (size_t)(end - t), "</think>", 8))) {
                    first = k;
                    after = t = q + 8;
                    after_end = end;
                }
            }
        for (int k = 0; k < msgs[m].n_parts; k++) {
            if (parts[k].kind != LLM_PART_TEXT) continue;
            const char *t = parts[k].text ? parts[k].text : "";
            size_t tl = parts[k].text && parts[k].len ? parts[k].len : strlen(t);
            if (k < first) t = "", tl = 0;
            else if (k == first && after) t = after, tl = (size_t)(after_end - after);
            char *e = NULL;
            size_t el = 0;
            nvl_status st = llm_chat_escape_text(tok, t, tl, &e, &el, err);
            if (st != NVL_OK) return st;
            (*owned)[(*n_owned)++] = e;
            parts[k].text = e;
            parts[k].len = 0; /* (escaped: a C string) */
        }
    }
    return NVL_OK;
}

nvl_status llm_chat_unescape(const char *text, size_t len, char **out, size_t *out_len, nvl_err *err) {
    uint8_t *plain = NULL;
    if (unescape(text, len, out, &plain, out_len) != NVL_OK) return nvl_err_set(err, NVL_ERR_NOMEM, "chat: out of memory");
    nvl_free(plain);
    return NVL_OK;
}

nvl_status llm_chat_encode_rendered(const llm_tokenizer *tok, const char *text, size_t len, int32_t **ids, int64_t *n,
                                    nvl_err *err) {
    *ids = NULL;
    *n = 0;
    char *u = NULL;
    uint8_t *plain = NULL;
    size_t ul = 0;
    if (unescape(text, len, &u, &plain, &ul) != NVL_OK) return nvl_err_set(err, NVL_ERR_NOMEM, "chat: out of memory");
    int64_t cap = 0;
    nvl_status st = llm_tokenizer_encode_append_masked(tok, u, ul, plain, ids, n, &cap, err);
    if (st != NVL_OK) nvl_freep(ids);
    nvl_free(u);
    nvl_free(plain);
    return st;
}

// ---------------------------------------------------------------------------
// Tokenization with media expansion

void llm_prompt_free(llm_prompt *p) {
    if (!p) return;
    nvl_free(p->ids);
    nvl_free(p->spans);
    memset(p, 0, sizeof *p);
}

static int push(llm_prompt *p, int64_t *cap, int32_t id, int64_t count) {
    if (p->n + count > *cap) {
        int64_t nc = *cap ? *cap : 256;
        while (nc < p->n + count) nc *= 2;
        int32_t *q = nvl_realloc(p->ids, (size_t)nc * sizeof *q);
        if (!q) return 0;
        p->ids = q;
        *cap = nc;
    }
    for (int64_t i = 0; i < count; i++) p->ids[p->n++] = id;
    return 1;
}

static int add_span(llm_prompt *p, int media, int frame, int64_t start, int64_t count) {
    llm_media_span *s = nvl_realloc(p->spans, (size_t)(p->n_spans + 1) * sizeof *s);
    if (!s) return 0;
    p->spans = s;
    s[p->n_spans].media = media;
    s[p->n_spans].frame = frame;
    s[p->n_spans].start = start;
    s[p->n_spans].count = count;
    p->n_spans++;
    return 1;
}

int llm_chat_frame_sep(char *buf, size_t cap, int f, const double *ts) {
    const int n = ts ? snprintf(buf, cap, "%sFrame %d sampled at %.2f seconds: ", f ? "\n" : "", f + 1, *ts)
                     : snprintf(buf, cap, "%sFrame %d: ", f ? "\n" : "", f + 1);
    return n < 0 ? 0 : (size_t)n < cap ? n : (int)cap - 1;
}

nvl_status llm_chat_tokenize(const llm_tokenizer *tok, const char *rendered, size_t rendered_len,
                             const llm_media_layout *media, int n_media, int per_tile,
                             llm_prompt *out, nvl_err *err) {
    memset(out, 0, sizeof *out);
    char *text = NULL;
    uint8_t *plain = NULL;
    size_t len = 0;
    if (unescape(rendered, rendered_len, &text, &plain, &len) != NVL_OK)
        return nvl_err_set(err, NVL_ERR_NOMEM, "chat: out of memory");
    const int32_t id_image = llm_tokenizer_token_id(tok, "<image>");
    const int32_t id_start = llm_tokenizer_token_id(tok, "<img>");
    const int32_t id_end = llm_tokenizer_token_id(tok, "</img>");
    const char *missing = id_image < 0 ? "<image>" : id_start < 0 ? "<img>" : id_end < 0 ? "</img>" : NULL;
    int64_t cap = 0;
    int k = 0; /* next media item */
    size_t pos = 0;
    nvl_status st = NVL_OK;
    while (pos <= len && st == NVL_OK) {
        /* next marker */
        const char *img = NULL, *vid = NULL;
        for (size_t i = pos; i + 7 <= len; i++)
            if (text[i] == '<' && !plain[i] && (!memcmp(text + i, "<image>", 7) || !memcmp(text + i, "<video>", 7))) {
                if (text[i + 1] == 'i') img = text + i;
                else vid = text + i;
                break;
            }
        const char *mk = img ? img : vid;
        size_t seg_end = mk ? (size_t)(mk - text) : len;
        if (seg_end > pos)
            st = llm_tokenizer_encode_append_masked(tok, text + pos, seg_end - pos, plain + pos, &out->ids, &out->n, &cap, err);
        if (st != NVL_OK || !mk) break;
        if (missing) {
            st = nvl_err_set(err, NVL_ERR_CONFIG, "chat: the tokenizer has no '%s' token", missing);
            break;
        }
        if (k >= n_media) {
            st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "chat: the prompt has more media markers than the %d media given", n_media);
            break;
        }
        const llm_media_layout *m = &media[k];
        if ((img && m->kind != LLM_MEDIA_IMAGE) || (vid && m->kind != LLM_MEDIA_VIDEO)) {
            st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "chat: media %d is a%s but the prompt has %s there", k,
                             m->kind == LLM_MEDIA_IMAGE ? "n image" : " video", img ? "<image>" : "<video>");
            break;
        }
        if (img) {
            int64_t cnt = (int64_t)per_tile * m->n_tiles;
            if (!push(out, &cap, id_start, 1) || !add_span(out, k, 0, out->n, cnt) ||
                !push(out, &cap, id_image, cnt) || !push(out, &cap, id_end, 1))
                st = nvl_err_set(err, NVL_ERR_NOMEM, "chat: out of memory");
        } else {
            for (int f = 0; f < m->n_frames && st == NVL_OK; f++) {
                char sep[96];
                const int sl = llm_chat_frame_sep(sep, sizeof sep, f, m->ts ? &m->ts[f] : NULL);
                st = llm_tokenizer_encode_append(tok, sep, (size_t)sl, &out->ids, &out->n, &cap, err);
                int64_t cnt = m->kept ? m->kept[f] : per_tile;
                if (st == NVL_OK && (!push(out, &cap, id_start, 1) || !add_span(out, k, f, out->n, cnt) ||
                                     !push(out, &cap, id_image, cnt) || !push(out, &cap, id_end, 1)))
                    st = nvl_err_set(err, NVL_ERR_NOMEM, "chat: out of memory");
            }
        }
        k++;
        pos = seg_end + 7;
    }
    if (st == NVL_OK && k != n_media)
        st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "chat: %d media given but the prompt has %d markers", n_media, k);
    if (st != NVL_OK) llm_prompt_free(out);
    nvl_free(text);
    nvl_free(plain);
    return st;
}

// ---------------------------------------------------------------------------
// The checkpoint's Jinja chat template

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = nvl_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

nvl_status llm_chat_template_load(const char *dir, char **tmpl, cJSON **special, nvl_err *err) {
    *tmpl = NULL;
    if (special) *special = NULL;
    char path[4096];
    nvl_status st;
    cJSON *cfg = NULL;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    /* (whether each file is there: stat, not fopen, which waits for a writer on a FIFO; the reads
       refuse what is not a file: a tokenizer_config.json that was a FIFO hung ask, a review) */
    struct stat sb;
    if (stat(path, &sb) == 0 && (st = nvl_json_load_file(&cfg, path, 64u << 20, err)) != NVL_OK) return st;
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    if (stat(path, &sb) == 0) {
        char *buf = NULL;
        size_t n = 0;
        if ((st = nvl_read_file(path, 16u << 20, &buf, &n, err)) != NVL_OK) {
            cJSON_Delete(cfg);
            return st;
        }
        *tmpl = buf; /* NUL-terminated */
    } else if (cfg) {
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
        if (cJSON_IsString(ct)) *tmpl = dup_str(ct->valuestring);
        else if (cJSON_IsArray(ct)) {
            for (const cJSON *c = ct->child; c; c = c->next) {
                const cJSON *nm = cJSON_GetObjectItemCaseSensitive(c, "name"), *tt = cJSON_GetObjectItemCaseSensitive(c, "template");
                if (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default") && cJSON_IsString(tt)) *tmpl = dup_str(tt->valuestring);
            }
            if (!*tmpl) {
                cJSON_Delete(cfg);
                return nvl_err_set(err, NVL_ERR_CONFIG, "%s/tokenizer_config.json: chat_template is a list without a \"default\" entry", dir);
            }
        } else if (ct && !cJSON_IsNull(ct)) {
            cJSON_Delete(cfg);
            return nvl_err_set(err, NVL_ERR_CONFIG, "%s/tokenizer_config.json: chat_template: expected a string or a list", dir);
        }
        if (ct && !cJSON_IsNull(ct) && !*tmpl) {
            cJSON_Delete(cfg);
            return nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
        }
    }
    if (special) {
        static const char *const names[] = {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                                            "mask_token", NULL};
        cJSON *sp = cJSON_CreateObject();
        for (int i = 0; sp && cfg && names[i]; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, names[i]);
            if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content"); /* AddedToken form */
            if (cJSON_IsString(v)) cJSON_AddStringToObject(sp, names[i], v->valuestring);
        }
        *special = sp;
    }
    cJSON_Delete(cfg);
    return NVL_OK;
}

/* t without the reasoning switches (Python's t.replace('/no_think', '').replace('/think', '')):
 * with think set by a flag or parameter, a switch typed in the text must not override it. */
static char *without_switches(const char *t) {
    sbuf a = {0}, b = {0};
    const size_t n = strlen(t);
    sb_add(&a, "", 0);
    for (size_t i = 0; i < n;) {
        if (n - i >= 9 && !memcmp(t + i, "/no_think", 9)) i += 9;
        else sb_add(&a, t + i++, 1);
    }
    sb_add(&b, "", 0);
    for (size_t i = 0; i < a.n;) {
        if (a.n - i >= 6 && !memcmp(a.s + i, "/think", 6)) i += 6;
        else sb_add(&b, a.s + i++, 1);
    }
    nvl_free(a.s);
    if (a.oom || b.oom) {
        nvl_free(b.s);
        return NULL;
    }
    return b.s;
}

int llm_chat_failed_on_size(const nvl_err *err) { return llm_jinja_failed_on_size(err); }

nvl_status llm_chat_render_template(const char *tmpl, const llm_chat_message *msgs, int n, const llm_chat_options *opts,
                                    const cJSON *special, char **out, size_t *len, nvl_err *err) {
    llm_chat_options o = opts ? *opts : llm_chat_options_default();
    cJSON *ctx = cJSON_CreateObject();
    cJSON *arr = ctx ? cJSON_AddArrayToObject(ctx, "messages") : NULL;
    if (!arr) {
        cJSON_Delete(ctx);
        return nvl_err_set(err, NVL_ERR_NOMEM, "chat template: out of memory");
    }
    const char *marker = o.think == 0 ? "/no_think" : o.think == 1 ? "/think" : NULL;
    if (marker && (n == 0 || strcmp(msgs[0].role, "system"))) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "system");
        cJSON_AddStringToObject(m, "content", marker);
        cJSON_AddItemToArray(arr, m);
    }
    for (int i = 0; i < n; i++) {
        cJSON *m = cJSON_CreateObject();
        if (!m) break;
        cJSON_AddItemToArray(arr, m);
        cJSON_AddStringToObject(m, "role", msgs[i].role);
        const int add_marker = marker && i == 0 && !strcmp(msgs[i].role, "system");
        /* an explicit think (flag or request parameter) wins over switches typed in the text */
        const int strip_sw = marker && (!strcmp(msgs[i].role, "system") || !strcmp(msgs[i].role, "user"));
        if (msgs[i].n_parts == 1 && msgs[i].parts[0].kind == LLM_PART_TEXT) {
            char *tc = strip_sw ? without_switches(msgs[i].parts[0].text ? msgs[i].parts[0].text : "") : NULL;
            if (strip_sw && !tc) {
                cJSON_Delete(ctx);
                return nvl_err_set(err, NVL_ERR_NOMEM, "chat template: out of memory");
            }
            const char *t = tc ? tc : msgs[i].parts[0].text ? msgs[i].parts[0].text : "";
            if (add_marker) {
                size_t l = strlen(t) + strlen(marker) + 2;
                char *j = nvl_malloc(l);
                if (j) {
                    snprintf(j, l, "%s%s%s", t, *t ? " " : "", marker);
                    cJSON_AddStringToObject(m, "content", j);
                    nvl_free(j);
                }
            } else {
                cJSON_AddStringToObject(m, "content", t);
            }
            nvl_free(tc);
            continue;
        }
        cJSON *parts = cJSON_AddArrayToObject(m, "content");
        for (int k = 0; parts && k < msgs[i].n_parts; k++) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddItemToArray(parts, p);
            const llm_chat_part *q = &msgs[i].parts[k];
            if (q->kind == LLM_PART_TEXT) {
                char *tc = strip_sw ? without_switches(q->text ? q->text : "") : NULL;
                cJSON_AddStringToObject(p, "type", "text");
                cJSON_AddStringToObject(p, "text", tc ? tc : q->text ? q->text : "");
                nvl_free(tc);
            } else {
                cJSON_AddStringToObject(p, "type", q->kind == LLM_PART_IMAGE ? "image" : "video");
            }
        }
        if (parts && add_marker) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddItemToArray(parts, p);
            cJSON_AddStringToObject(p, "type", "text");
            cJSON_AddStringToObject(p, "text", marker);
        }
    }
    cJSON_AddNullToObject(ctx, "tools");
    cJSON_AddNullToObject(ctx, "documents");
    cJSON_AddBoolToObject(ctx, "add_generation_prompt", o.add_generation_prompt);
    if (o.think >= 0) cJSON_AddBoolToObject(ctx, "enable_thinking", o.think);
    for (const cJSON *c = special ? special->child : NULL; c; c = c->next)
        cJSON_AddItemToObject(ctx, c->string, cJSON_Duplicate(c, 1));
    nvl_status st = llm_jinja_render(tmpl, strlen(tmpl), ctx, out, len, err);
    cJSON_Delete(ctx);
    return st;
}
