/* Byte-level BPE tokenizer reading Hugging Face tokenizer.json (see tokenizer.h for what is
 * supported). Pipeline per encode: added-token split -> normalizer -> pre-tokenizers (Oniguruma
 * regex splits, ByteLevel) -> BPE merges by rank -> ids. */
#include <cjson/cJSON.h>
#include <oniguruma.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/alloc.h"
#include "base/hash.h"
#include "base/json_util.h"
#include "base/log.h"
#include "base/mapped_file.h"
#include "tokenizer.h"
#include "tokenizer_json.h"
#include "unicode_impl.h"

#define MAX_PRETOK 8

// ---------------------------------------------------------------------------
// String -> id and pair -> (rank, id) hash maps (open addressing)

typedef struct str_map {
    int32_t *slots; /* -1 empty, else id */
    size_t cap;
} str_map;

/* FNV-1a (base/hash.h); hash_cont continues a hash over more bytes (hash of a concatenation). */
static uint64_t hash_cont(uint64_t h, const char *s, size_t n) { return nvl_fnv1a(h, s, n); }
static uint64_t hash_bytes(const char *s, size_t n) { return nvl_fnv1a(NVL_FNV1A_INIT, s, n); }

typedef struct pair_slot {
    uint64_t key; /* (a << 32) | b, UINT64_MAX empty */
    int32_t rank, id;
} pair_slot;

typedef struct added_token {
    char *content;
    size_t len;
    int32_t id;
    int special, lstrip, rstrip, single_word, normalized;
} added_token;

enum split_behavior { SPLIT_ISOLATED, SPLIT_REMOVED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS };

typedef struct pretok {
    enum { PRETOK_SPLIT, PRETOK_BYTELEVEL } kind;
    regex_t *re;            /* Split, or ByteLevel with use_regex */
    char *literal;          /* Split with a String pattern */
    enum split_behavior behavior;
    int invert;
    int add_prefix_space;
} pretok;

struct llm_tokenizer {
    char **tokens;          /* id -> string (vocab form); in tok_arena or nvl_malloc'ed */
    char *tok_arena;        /* the vocabulary's strings, one block */
    size_t tok_arena_len;
    uint32_t *tok_len;      /* id -> strlen(tokens[id]) */
    int64_t n_tokens;       /* max id + 1 */
    str_map vocab;          /* string -> id, vocab and added tokens */
    pair_slot *merges;
    size_t merges_cap;
    added_token *added;
    int n_added;
    uint8_t *is_added;      /* per id */
    int nfc;                /* normalizer */
    pretok pre[MAX_PRETOK];
    int n_pre;
    int byte_level;         /* symbols are bytes_to_unicode chars */
    int ignore_merges;
    int byte_fallback;
    int32_t unk_id;
    int32_t *post_single;   /* TemplateProcessing "single": ids, -1 where the text goes */
    int n_post_single;      /* 0: no post-processor adds anything */
    int32_t byte_tok[256];  /* byte-level: id of each byte's mapped char; fallback: <0xXX> */
    uint32_t byte2cp[256];  /* GPT-2 bytes_to_unicode */
    int16_t cp2byte[512];   /* inverse for code points < 512, -1 otherwise */
};

static nvl_status str_map_init(str_map *m, size_t n) {
    size_t cap = 16;
    while (cap < n * 2 + 1) cap <<= 1;
    m->slots = nvl_malloc(cap * sizeof *m->slots);
    if (!m->slots) return NVL_ERR_NOMEM;
    for (size_t i = 0; i < cap; i++) m->slots[i] = -1;
    m->cap = cap;
    return NVL_OK;
}

static int32_t str_map_get(const llm_tokenizer *t, const char *s, size_t n) {
    const str_map *m = &t->vocab;
    size_t h = (size_t)hash_bytes(s, n) & (m->cap - 1);
    while (m->slots[h] >= 0) {
        const int32_t id = m->slots[h];
        if (t->tok_len[id] == n && !memcmp(t->tokens[id], s, n)) return id;
        h = (h + 1) & (m->cap - 1);
    }
    return -1;
}

static void str_map_put(llm_tokenizer *t, int32_t id) {
    str_map *m = &t->vocab;
    const char *s = t->tokens[id];
    size_t n = t->tok_len[id] = (uint32_t)strlen(s), h = (size_t)hash_bytes(s, n) & (m->cap - 1);
    while (m->slots[h] >= 0) {
        if (t->tok_len[m->slots[h]] == n && !memcmp(t->tokens[m->slots[h]], s, n)) {
            m->slots[h] = id; /* later definition wins (added tokens override) */
            return;
        }
        h = (h + 1) & (m->cap - 1);
    }
    m->slots[h] = id;
}

/* splitmix64's finaliser: every bit of both ids reaches the low bits the table uses */
static size_t pair_hash(uint64_t k) {
    k ^= k >> 30;
    k *= 0xBF58476D1CE4E5B9ULL;
    k ^= k >> 27;
    k *= 0x94D049BB133111EBULL;
    k ^= k >> 31;
    return (size_t)k;
}

static void merge_put(llm_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t id) {
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t h = pair_hash(k) & (t->merges_cap - 1);
    while (t->merges[h].key != UINT64_MAX) {
        if (t->merges[h].key == k) return; /* first (lowest rank) wins */
        h = (h + 1) & (t->merges_cap - 1);
    }
    t->merges[h].key = k;
    t->merges[h].rank = rank;
    t->merges[h].id = id;
}

static const pair_slot *merge_get(const llm_tokenizer *t, int32_t a, int32_t b) {
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t h = pair_hash(k) & (t->merges_cap - 1);
    while (t->merges[h].key != UINT64_MAX) {
        if (t->merges[h].key == k) return &t->merges[h];
        h = (h + 1) & (t->merges_cap - 1);
    }
    return NULL;
}

// ---------------------------------------------------------------------------
// Loading

static void bytes_to_unicode(llm_tokenizer *t) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        t->byte2cp[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
    }
    for (int i = 0; i < 512; i++) t->cp2byte[i] = -1;
    for (int b = 0; b < 256; b++) t->cp2byte[t->byte2cp[b]] = (int16_t)b;
}

static nvl_status compile_regex(regex_t **re, const char *pat, const char *what, nvl_err *err) {
    OnigErrorInfo einfo;
    int r = onig_new(re, (const UChar *)pat, (const UChar *)pat + strlen(pat), ONIG_OPTION_NONE,
                     ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT, &einfo);
    if (r != ONIG_NORMAL) {
        UChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(msg, r, &einfo);
        *re = NULL;
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: regex does not compile: %s", what, (char *)msg);
    }
    return NVL_OK;
}

static nvl_status add_pretok(llm_tokenizer *t, const cJSON *p, const char *what, nvl_err *err) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(p, "type");
    if (!cJSON_IsString(ty))
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: pre_tokenizer has no 'type'", what);
    if (!strcmp(ty->valuestring, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        if (!cJSON_IsArray(list))
            return nvl_err_set(err, NVL_ERR_CONFIG, "%s: pre_tokenizer Sequence has no 'pretokenizers' list", what);
        const cJSON *it;
        cJSON_ArrayForEach(it, list) {
            nvl_status st = add_pretok(t, it, what, err);
            if (st != NVL_OK) return st;
        }
        return NVL_OK;
    }
    if (t->n_pre == MAX_PRETOK)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: more than %d pre-tokenizers", what, MAX_PRETOK);
    pretok *pt = &t->pre[t->n_pre];
    memset(pt, 0, sizeof *pt);
    if (!strcmp(ty->valuestring, "Split")) {
        pt->kind = PRETOK_SPLIT;
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const cJSON *rx = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        const cJSON *lit = cJSON_GetObjectItemCaseSensitive(pat, "String");
        if (cJSON_IsString(rx)) {
            nvl_status st = compile_regex(&pt->re, rx->valuestring, what, err);
            if (st != NVL_OK) return st;
        } else if (cJSON_IsString(lit)) {
            if (!(pt->literal = nvl_strdup(lit->valuestring))) return NVL_ERR_NOMEM;
        } else {
            return nvl_err_set(err, NVL_ERR_CONFIG, "%s: Split pre_tokenizer needs 'pattern' with 'Regex' or 'String'", what);
        }
        const char *b = NULL;
        nvl_status st = nvl_json_get_string(p, "behavior", &b, what, err);
        if (st != NVL_OK) return st;
        if (!strcmp(b, "Isolated")) pt->behavior = SPLIT_ISOLATED;
        else if (!strcmp(b, "Removed")) pt->behavior = SPLIT_REMOVED;
        else if (!strcmp(b, "MergedWithPrevious")) pt->behavior = SPLIT_MERGED_PREV;
        else if (!strcmp(b, "MergedWithNext")) pt->behavior = SPLIT_MERGED_NEXT;
        else if (!strcmp(b, "Contiguous")) pt->behavior = SPLIT_CONTIGUOUS;
        else return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: unknown Split behavior '%s'", what, b);
        if ((st = nvl_json_opt_bool(p, "invert", 0, &pt->invert, what, err)) != NVL_OK) return st;
    } else if (!strcmp(ty->valuestring, "ByteLevel")) {
        pt->kind = PRETOK_BYTELEVEL;
        int use_regex = 1;
        nvl_status st = nvl_json_opt_bool(p, "use_regex", 1, &use_regex, what, err);
        if (st == NVL_OK) st = nvl_json_opt_bool(p, "add_prefix_space", 0, &pt->add_prefix_space, what, err);
        if (st != NVL_OK) return st;
        if (use_regex) {
            const char *gpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
            if ((st = compile_regex(&pt->re, gpt2, what, err)) != NVL_OK) return st;
            pt->behavior = SPLIT_ISOLATED;
        }
        t->byte_level = 1;
    } else {
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED,
                           "%s: pre_tokenizer type '%s' is not supported (Split, ByteLevel, Sequence)",
                           what, ty->valuestring);
    }
    t->n_pre++;
    return NVL_OK;
}

static nvl_status read_normalizer(llm_tokenizer *t, const cJSON *n, const char *what, nvl_err *err) {
    if (!n || cJSON_IsNull(n)) return NVL_OK;
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(n, "type");
    if (!cJSON_IsString(ty)) return nvl_err_set(err, NVL_ERR_CONFIG, "%s: normalizer has no 'type'", what);
    if (!strcmp(ty->valuestring, "NFC")) {
        t->nfc = 1;
        return NVL_OK;
    }
    if (!strcmp(ty->valuestring, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers"), *it;
        if (!cJSON_IsArray(list))
            return nvl_err_set(err, NVL_ERR_CONFIG, "%s: normalizer Sequence has no 'normalizers' list", what);
        cJSON_ArrayForEach(it, list) {
            nvl_status st = read_normalizer(t, it, what, err);
            if (st != NVL_OK) return st;
        }
        return NVL_OK;
    }
    return nvl_err_set(err, NVL_ERR_UNSUPPORTED,
                       "%s: normalizer type '%s' is not supported (NFC, Sequence, null)", what,
                       ty->valuestring);
}

static nvl_status read_decoder(llm_tokenizer *t, const cJSON *d, const char *what, nvl_err *err) {
    if (!d || cJSON_IsNull(d)) return NVL_OK;
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(d, "type");
    if (!cJSON_IsString(ty)) return nvl_err_set(err, NVL_ERR_CONFIG, "%s: decoder has no 'type'", what);
    if (!strcmp(ty->valuestring, "ByteLevel")) {
        t->byte_level = 1;
        return NVL_OK;
    }
    if (!strcmp(ty->valuestring, "ByteFallback") || !strcmp(ty->valuestring, "Fuse")) return NVL_OK;
    if (!strcmp(ty->valuestring, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(d, "decoders"), *it;
        if (!cJSON_IsArray(list))
            return nvl_err_set(err, NVL_ERR_CONFIG, "%s: decoder Sequence has no 'decoders' list", what);
        cJSON_ArrayForEach(it, list) {
            nvl_status st = read_decoder(t, it, what, err);
            if (st != NVL_OK) return st;
        }
        return NVL_OK;
    }
    return nvl_err_set(err, NVL_ERR_UNSUPPORTED,
                       "%s: decoder type '%s' is not supported (ByteLevel, ByteFallback, Fuse, Sequence)",
                       what, ty->valuestring);
}

void llm_tokenizer_free(llm_tokenizer *t) {
    if (!t) return;
    if (t->tokens) {
        for (int64_t i = 0; i < t->n_tokens; i++)
            if (!t->tok_arena || t->tokens[i] < t->tok_arena || t->tokens[i] >= t->tok_arena + t->tok_arena_len) nvl_free(t->tokens[i]);
        nvl_free(t->tokens);
    }
    nvl_free(t->tok_arena);
    nvl_free(t->post_single);
    nvl_free(t->vocab.slots);
    nvl_free(t->merges);
    for (int i = 0; i < t->n_added; i++) nvl_free(t->added[i].content);
    nvl_free(t->added);
    nvl_free(t->is_added);
    nvl_free(t->tok_len);
    for (int i = 0; i < t->n_pre; i++) {
        if (t->pre[i].re) onig_free(t->pre[i].re);
        nvl_free(t->pre[i].literal);
    }
    nvl_free(t);
}

static int cmp_added_len(const void *a, const void *b) {
    const added_token *x = a, *y = b;
    return x->len < y->len ? 1 : (x->len > y->len ? -1 : 0);
}

/* Vocabulary and merges from cJSON (when the fast path stepped aside): pointers into root. */
static nvl_status lists_from_json(tok_lists *L, const cJSON *vocab, const cJSON *merges, const char *what, nvl_err *err) {
    size_t nv = 0, nm = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) nv++;
    cJSON_ArrayForEach(it, merges) nm++;
    L->vocab = nvl_malloc((nv + 1) * sizeof *L->vocab);
    L->vocab_id = nvl_malloc((nv + 1) * sizeof *L->vocab_id);
    L->merge_a = nvl_malloc((nm + 1) * sizeof *L->merge_a);
    L->merge_b = nvl_malloc((nm + 1) * sizeof *L->merge_b);
    if (!L->vocab || !L->vocab_id || !L->merge_a || !L->merge_b) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", what);
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 1e8 || it->valuedouble != (double)(int64_t)it->valuedouble)
            return nvl_err_set(err, NVL_ERR_CONFIG, "%s: model.vocab['%s'] is not a valid id", what, it->string);
        L->vocab[L->n_vocab] = (tok_str){it->string, (uint32_t)strlen(it->string)};
        L->vocab_id[L->n_vocab++] = (int32_t)it->valuedouble;
    }
    int32_t rank = 0;
    cJSON_ArrayForEach(it, merges) {
        tok_str *a = &L->merge_a[L->n_merges], *b = &L->merge_b[L->n_merges];
        if (cJSON_IsString(it)) {
            const char *str = it->valuestring, *sp = strchr(str, ' ');
            if (!sp) return nvl_err_set(err, NVL_ERR_CONFIG, "%s: merge %d '%s' has no space", what, rank, str);
            *a = (tok_str){str, (uint32_t)(sp - str)};
            *b = (tok_str){sp + 1, (uint32_t)strlen(sp + 1)};
        } else if (cJSON_IsArray(it) && it->child && it->child->next && !it->child->next->next &&
                   cJSON_IsString(it->child) && cJSON_IsString(it->child->next)) {
            *a = (tok_str){it->child->valuestring, (uint32_t)strlen(it->child->valuestring)};
            *b = (tok_str){it->child->next->valuestring, (uint32_t)strlen(it->child->next->valuestring)};
        } else {
            return nvl_err_set(err, NVL_ERR_CONFIG, "%s: merge %d is neither \"a b\" nor [\"a\", \"b\"]", what, rank);
        }
        L->n_merges++;
        rank++;
    }
    return NVL_OK;
}

/* post_processor: ByteLevel adds nothing to ids; TemplateProcessing's "single" template is kept
 * for encode with add_special_tokens (a Sequence may hold both). */
static nvl_status read_post(llm_tokenizer *t, const cJSON *post, const char *what, nvl_err *err) {
    if (!post || cJSON_IsNull(post)) return NVL_OK;
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(post, "type");
    if (!cJSON_IsString(ty)) return nvl_err_set(err, NVL_ERR_CONFIG, "%s: post_processor without a 'type'", what);
    if (!strcmp(ty->valuestring, "ByteLevel")) return NVL_OK;
    if (!strcmp(ty->valuestring, "Sequence")) {
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(post, "processors"), *it;
        if (!cJSON_IsArray(ps)) return nvl_err_set(err, NVL_ERR_CONFIG, "%s: post_processor Sequence without 'processors'", what);
        cJSON_ArrayForEach(it, ps) {
            nvl_status st = read_post(t, it, what, err);
            if (st != NVL_OK) return st;
        }
        return NVL_OK;
    }
    if (strcmp(ty->valuestring, "TemplateProcessing"))
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: post_processor type '%s' is not supported", what, ty->valuestring);
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(post, "single"), *sp = cJSON_GetObjectItemCaseSensitive(post, "special_tokens");
    if (!cJSON_IsArray(single)) return nvl_err_set(err, NVL_ERR_CONFIG, "%s: post_processor.single: expected a list", what);
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, single) {
        const cJSON *tok = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
        const cJSON *ids = tok ? cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(
                                     sp, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tok, "id"))), "ids") : NULL;
        if (tok && !cJSON_IsArray(ids))
            return nvl_err_set(err, NVL_ERR_CONFIG, "%s: post_processor.special_tokens lacks '%s'", what,
                               cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tok, "id")) ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tok, "id")) : "?");
        n += tok ? cJSON_GetArraySize(ids) : 1;
    }
    nvl_free(t->post_single);
    t->post_single = nvl_malloc((size_t)(n + 1) * sizeof *t->post_single);
    if (!t->post_single) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", what);
    t->n_post_single = 0;
    cJSON_ArrayForEach(it, single) {
        const cJSON *tok = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
        if (!tok) {
            if (!cJSON_GetObjectItemCaseSensitive(it, "Sequence"))
                return nvl_err_set(err, NVL_ERR_CONFIG, "%s: post_processor.single item is neither SpecialToken nor Sequence", what);
            t->post_single[t->n_post_single++] = -1;
            continue;
        }
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(sp, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tok, "id"))), "ids"), *x;
        cJSON_ArrayForEach(x, ids) {
            if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 1e8)
                return nvl_err_set(err, NVL_ERR_CONFIG, "%s: post_processor special token id is not valid", what);
            t->post_single[t->n_post_single++] = (int32_t)x->valuedouble;
        }
    }
    return NVL_OK;
}

static nvl_status load_json(llm_tokenizer *t, const cJSON *root, tok_lists *L, const char *what, nvl_err *err) {
    nvl_status st;
    const cJSON *model = nvl_json_obj(root, "model");
    if (!model) return nvl_err_set(err, NVL_ERR_CONFIG, "%s: missing field 'model'", what);
    const char *type = NULL;
    if ((st = nvl_json_opt_string(model, "type", "BPE", &type, what, err)) != NVL_OK) return st;
    if (strcmp(type, "BPE"))
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED,
                           "%s: unknown model type '%s' (nanovl reads BPE tokenizers)", what, type);
    const cJSON *vocab = nvl_json_obj(model, "vocab");
    if (!vocab) return nvl_err_set(err, NVL_ERR_CONFIG, "%s: missing field 'model.vocab'", what);
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsArray(merges)) return nvl_err_set(err, NVL_ERR_CONFIG, "%s: missing field 'model.merges'", what);
    if ((st = nvl_json_opt_bool(model, "ignore_merges", 0, &t->ignore_merges, what, err)) != NVL_OK) return st;
    if ((st = nvl_json_opt_bool(model, "byte_fallback", 0, &t->byte_fallback, what, err)) != NVL_OK) return st;
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");

    if (!L->ok && (st = lists_from_json(L, vocab, merges, what, err)) != NVL_OK) return st;
    /* id space */
    int64_t max_id = -1, n_entries = (int64_t)L->n_vocab;
    const char *max_name = NULL;
    const cJSON *it;
    for (size_t i = 0; i < L->n_vocab; i++)
        if (L->vocab_id[i] > max_id) max_id = L->vocab_id[i], max_name = L->vocab[i].s;
    if (cJSON_IsArray(added))
        cJSON_ArrayForEach(it, added) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
            if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 1e8)
                return nvl_err_set(err, NVL_ERR_CONFIG, "%s: an added_tokens entry has no valid 'id'", what);
            n_entries++;
            if ((int64_t)id->valuedouble > max_id) {
                max_id = (int64_t)id->valuedouble;
                const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
                max_name = cJSON_IsString(c) ? c->valuestring : "(an added token)";
            }
        }
    /* the id space is allocated per id (about 40 bytes each with the string map): one id of 99999999
       among 1536 entries took 8.6 GB before any check (a review). A tokenizer's ids run nearly
       dense up to its model's vocabulary (padded to a multiple of 64 or 128 at most); 4 times the
       entries, plus 4096, is far past any published one. */
    if (max_id >= 4 * n_entries + 4096)
        return nvl_err_set(err, NVL_ERR_CONFIG,
                           "%s: token '%.60s' has id %lld, past 4 x the %lld entries + 4096: the ids of a tokenizer run "
                           "nearly dense (a damaged file?)", what, max_name ? max_name : "", (long long)max_id,
                           (long long)n_entries);
    t->n_tokens = max_id + 1;
    t->tokens = nvl_calloc((size_t)t->n_tokens + 1, sizeof *t->tokens);
    t->is_added = nvl_calloc((size_t)t->n_tokens + 1, 1);
    t->tok_len = nvl_calloc((size_t)t->n_tokens + 1, sizeof *t->tok_len);
    if (!t->tokens || !t->is_added || !t->tok_len || str_map_init(&t->vocab, (size_t)t->n_tokens) != NVL_OK)
        return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", what);
    size_t total = 0;
    for (size_t i = 0; i < L->n_vocab; i++) total += L->vocab[i].n + 1;
    if (!(t->tok_arena = nvl_malloc(total + 1))) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", what);
    t->tok_arena_len = total + 1;
    char *ap = t->tok_arena;
    for (size_t i = 0; i < L->n_vocab; i++) { /* a repeated id keeps its last string, as before */
        const int32_t id = L->vocab_id[i];
        memcpy(ap, L->vocab[i].s, L->vocab[i].n + 1);
        t->tokens[id] = ap;
        t->tok_len[id] = L->vocab[i].n;
        ap += L->vocab[i].n + 1;
        str_map_put(t, id);
    }
    /* added tokens */
    if (cJSON_IsArray(added)) {
        int n = cJSON_GetArraySize(added);
        t->added = nvl_calloc((size_t)(n ? n : 1), sizeof *t->added);
        if (!t->added) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", what);
        cJSON_ArrayForEach(it, added) {
            added_token *a = &t->added[t->n_added];
            const char *content = NULL;
            if ((st = nvl_json_get_string(it, "content", &content, "tokenizer.json added_tokens", err)) != NVL_OK) return st;
            a->id = (int32_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
            if (!(a->content = nvl_strdup(content))) return nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
            a->len = strlen(content);
            t->n_added++;
            if ((st = nvl_json_opt_bool(it, "special", 0, &a->special, what, err)) != NVL_OK ||
                (st = nvl_json_opt_bool(it, "lstrip", 0, &a->lstrip, what, err)) != NVL_OK ||
                (st = nvl_json_opt_bool(it, "rstrip", 0, &a->rstrip, what, err)) != NVL_OK ||
                (st = nvl_json_opt_bool(it, "single_word", 0, &a->single_word, what, err)) != NVL_OK ||
                (st = nvl_json_opt_bool(it, "normalized", 0, &a->normalized, what, err)) != NVL_OK)
                return st;
            if (!a->len) return nvl_err_set(err, NVL_ERR_CONFIG, "%s: added token %d is empty", what, a->id);
            if (!t->tok_arena || t->tokens[a->id] < t->tok_arena || t->tokens[a->id] >= t->tok_arena + t->tok_arena_len)
                nvl_free(t->tokens[a->id]);
            if (!(t->tokens[a->id] = nvl_strdup(content))) return nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
            t->is_added[a->id] = 1;
            str_map_put(t, a->id);
        }
        qsort(t->added, (size_t)t->n_added, sizeof *t->added, cmp_added_len); /* longest first */
    }
    for (int64_t i = 0; i < t->n_tokens; i++)
        if (!t->tokens[i] && !(t->tokens[i] = nvl_strdup(""))) return nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
    /* gaps in the id space hold "" and are not in the map */
    /* merges: "a b" strings or ["a", "b"] pairs */
    size_t nm = L->n_merges, cap = 16;
    while (cap < nm * 2 + 1) cap <<= 1;
    t->merges = nvl_malloc(cap * sizeof *t->merges);
    if (!t->merges) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", what);
    t->merges_cap = cap;
    for (size_t i = 0; i < cap; i++) t->merges[i].key = UINT64_MAX;
    /* two passes with prefetches a few merges ahead: the hash tables are much larger than the
     * caches, and waiting on each probe's miss in turn was most of the load time */
    int32_t *ids3 = nvl_malloc((nm * 3 + 1) * sizeof *ids3);
    if (!ids3) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", what);
    char buf[1024];
    const size_t vmask = t->vocab.cap - 1, mmask = t->merges_cap - 1, AHEAD = 8;
    for (size_t r = 0; r < nm; r++) {
        if (r + AHEAD < nm) {
            const tok_str *pa = &L->merge_a[r + AHEAD], *pb = &L->merge_b[r + AHEAD];
            const uint64_t ha = hash_bytes(pa->s, pa->n);
            __builtin_prefetch(&t->vocab.slots[ha & vmask]);
            __builtin_prefetch(&t->vocab.slots[hash_bytes(pb->s, pb->n) & vmask]);
            __builtin_prefetch(&t->vocab.slots[hash_cont(ha, pb->s, pb->n) & vmask]);
        }
        const char *a = L->merge_a[r].s, *b = L->merge_b[r].s;
        const size_t la = L->merge_a[r].n, lb = L->merge_b[r].n;
        if (la + lb >= sizeof buf) {
            nvl_free(ids3);
            return nvl_err_set(err, NVL_ERR_CONFIG, "%s: merge %zu too long", what, r);
        }
        int32_t ia = str_map_get(t, a, la), ib = str_map_get(t, b, lb);
        memcpy(buf, a, la);
        memcpy(buf + la, b, lb);
        int32_t ic = str_map_get(t, buf, la + lb);
        if (ia < 0 || ib < 0 || ic < 0) {
            nvl_free(ids3);
            return nvl_err_set(err, NVL_ERR_CONFIG, "%s: merge %zu ('%.*s' + '%.*s') uses a token not in the vocab",
                               what, r, (int)la, a, (int)lb, b);
        }
        ids3[3 * r] = ia;
        ids3[3 * r + 1] = ib;
        ids3[3 * r + 2] = ic;
    }
    for (size_t r = 0; r < nm; r++) {
        if (r + AHEAD < nm) {
            const uint64_t k = ((uint64_t)(uint32_t)ids3[3 * (r + AHEAD)] << 32) | (uint32_t)ids3[3 * (r + AHEAD) + 1];
            __builtin_prefetch(&t->merges[pair_hash(k) & mmask]);
        }
        merge_put(t, ids3[3 * r], ids3[3 * r + 1], (int32_t)r, ids3[3 * r + 2]);
    }
    nvl_free(ids3);
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    t->unk_id = cJSON_IsString(unk) ? str_map_get(t, unk->valuestring, strlen(unk->valuestring)) : -1;
    if ((st = read_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), what, err)) != NVL_OK) return st;
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (pre && !cJSON_IsNull(pre) && (st = add_pretok(t, pre, what, err)) != NVL_OK) return st;
    if ((st = read_decoder(t, cJSON_GetObjectItemCaseSensitive(root, "decoder"), what, err)) != NVL_OK) return st;
    if ((st = read_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), what, err)) != NVL_OK) return st;
    /* per-byte symbols */
    bytes_to_unicode(t);
    for (int b = 0; b < 256; b++) {
        char s[8];
        if (t->byte_level) {
            int l = nvl_utf8_put(t->byte2cp[b], s);
            t->byte_tok[b] = str_map_get(t, s, (size_t)l);
        } else {
            snprintf(s, sizeof s, "<0x%02X>", b);
            t->byte_tok[b] = str_map_get(t, s, strlen(s));
        }
    }
    if (t->byte_level)
        for (int b = 0; b < 256; b++)
            if (t->byte_tok[b] < 0)
                return nvl_err_set(err, NVL_ERR_CONFIG, "%s: byte-level vocab lacks the symbol of byte 0x%02X", what, b);
    return NVL_OK;
}

/* The general-category properties as the reference's Oniguruma has them (its Unicode tables are
 * newer than the system's: tests/reference/gen_onig_props.py), defined once, process-wide, under
 * their own names: Oniguruma looks a user property up before its built-in one, so \p{L},
 * \p{Lu}, \p{N}, \p{M}, ... in every pattern, inside classes and negated too, match these. A
 * property that cannot be defined keeps the system's table (a warning says which). */
#include "unicode_props.inc"

static pthread_once_t g_onig_once = PTHREAD_ONCE_INIT;

static void onig_setup(void) {
    for (size_t i = 0; i < sizeof nvl_props / sizeof nvl_props[0]; i++) {
        const int r = onig_unicode_define_user_property(nvl_props[i].name, nvl_props[i].ranges);
        if (r != ONIG_NORMAL)
            NVL_LOG_WARN("tokenizer: \\p{%s} keeps the system Oniguruma's Unicode tables (defining it failed: %d)\n",
                         nvl_props[i].name, r);
    }
    OnigEncoding enc = ONIG_ENCODING_UTF8;
    onig_initialize(&enc, 1);
}

nvl_status llm_tokenizer_load(llm_tokenizer **out, const char *path, nvl_err *err) {
    *out = NULL;
    char file[4096];
    struct stat s;
    if (stat(path, &s) == 0 && S_ISDIR(s.st_mode))
        snprintf(file, sizeof file, "%s/tokenizer.json", path);
    else
        snprintf(file, sizeof file, "%s", path);
    pthread_once(&g_onig_once, onig_setup);
    char *text = NULL;
    size_t len = 0;
    nvl_status st = nvl_read_file(file, (size_t)256 << 20, &text, &len, err);
    if (st != NVL_OK) return st;
    tok_lists L;
    if (tokjson_extract(text, len, &L) < 0) { /* vocab and merges decoded, blanked in text */
        nvl_free(text);
        return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", file);
    }
    cJSON *root = NULL;
    st = nvl_json_parse(&root, text, len, file, err);
    if (st != NVL_OK) {
        tok_lists_free(&L);
        nvl_free(text);
        return st;
    }
    llm_tokenizer *t = nvl_calloc(1, sizeof *t);
    if (!t) {
        cJSON_Delete(root);
        tok_lists_free(&L);
        nvl_free(text);
        return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", file);
    }
    st = load_json(t, root, &L, file, err);
    cJSON_Delete(root);
    if (!L.ok) { /* the lists pointed into root */
        nvl_free(L.vocab);
        nvl_free(L.vocab_id);
        nvl_free(L.merge_a);
        nvl_free(L.merge_b);
        memset(&L, 0, sizeof L);
    }
    tok_lists_free(&L);
    nvl_free(text);
    if (st != NVL_OK) {
        if (st == NVL_ERR_NOMEM && err && !err->msg[0]) nvl_err_set(err, st, "%s: out of memory", file);
        llm_tokenizer_free(t);
        return st;
    }
    *out = t;
    return NVL_OK;
}

int64_t llm_tokenizer_vocab_size(const llm_tokenizer *t) { return t->n_tokens; }
int32_t llm_tokenizer_token_id(const llm_tokenizer *t, const char *s) { return str_map_get(t, s, strlen(s)); }
const char *llm_tokenizer_token_str(const llm_tokenizer *t, int32_t id) {
    return (id >= 0 && id < t->n_tokens) ? t->tokens[id] : NULL;
}
int llm_tokenizer_is_special(const llm_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_tokens || !t->is_added[id]) return 0;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) return t->added[i].special;
    return 0;
}

nvl_status llm_tokenizer_check_vocab(const llm_tokenizer *t, int64_t n_vocab, const char *dir, nvl_err *err) {
    if (llm_tokenizer_vocab_size(t) <= n_vocab) return NVL_OK;
    return nvl_err_set(err, NVL_ERR_CONFIG, "%s: the tokenizer has %lld ids but the model's vocabulary has %lld", dir,
                       (long long)llm_tokenizer_vocab_size(t), (long long)n_vocab);
}

nvl_status llm_tokenizer_check_vl(const llm_tokenizer *t, nvl_err *err) {
    static const char *need[] = {"<image>", "<img>", "</img>", "<SPECIAL_10>", "<SPECIAL_11>",
                                 "<SPECIAL_12>", "<think>", "</think>", "</s>"};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        const int32_t id = llm_tokenizer_token_id(t, need[i]);
        if (id < 0)
            return nvl_err_set(err, NVL_ERR_CONFIG,
                               "tokenizer has no '%s' token, which the Nemotron Nano V2 VL prompt "
                               "format needs", need[i]);
        /* and the text must encode to it whole: a vocabulary entry that is not an added token
           (tokenizer.json's added_tokens) is split like any text, and every prompt goes wrong */
        int32_t *ids = NULL;
        int64_t n = 0;
        nvl_status st = llm_tokenizer_encode(t, need[i], strlen(need[i]), &ids, &n, err);
        const int whole = st == NVL_OK && n == 1 && ids[0] == id;
        nvl_free(ids);
        if (st != NVL_OK) return st;
        if (!whole)
            return nvl_err_set(err, NVL_ERR_CONFIG,
                               "tokenizer: '%s' encodes to %lld tokens, not to its id %d: it is not an added token "
                               "(tokenizer.json added_tokens), which the Nemotron Nano V2 VL prompt format needs",
                               need[i], (long long)n, (int)id);
    }
    return NVL_OK;
}

// ---------------------------------------------------------------------------
// Encoding

typedef struct ids_buf {
    int32_t **ids;
    int64_t *n, *cap;
} ids_buf;

static int push_id(ids_buf *b, int32_t id) {
    if (*b->n == *b->cap) {
        int64_t nc = *b->cap ? *b->cap * 2 : 256;
        int32_t *p = nvl_realloc(*b->ids, (size_t)nc * sizeof *p);
        if (!p) return 0;
        *b->ids = p;
        *b->cap = nc;
    }
    (*b->ids)[(*b->n)++] = id;
    return 1;
}

typedef struct piece {
    size_t off, len;
} piece;

typedef struct pieces {
    piece *p;
    size_t n, cap;
} pieces;

static int pieces_push(pieces *ps, size_t off, size_t len) {
    if (!len) return 1;
    if (ps->n == ps->cap) {
        size_t nc = ps->cap ? ps->cap * 2 : 64;
        piece *np = nvl_realloc(ps->p, nc * sizeof *np);
        if (!np) return 0;
        ps->p = np;
        ps->cap = nc;
    }
    ps->p[ps->n].off = off;
    ps->p[ps->n].len = len;
    ps->n++;
    return 1;
}

/* Splits one piece by a pre-tokenizer into out (offsets into text). */
static int split_piece(const pretok *pt, const char *text, piece in, pieces *out, OnigRegion *reg) {
    /* collect (start, end, is_match) spans covering the piece */
    size_t pos = in.off, end = in.off + in.len;
    const UChar *base = (const UChar *)text;
    typedef struct span {
        size_t a, b;
        int m;
    } span;
    span stack_spans[64];
    span *spans = stack_spans;
    size_t n_sp = 0, cap_sp = 64;
    int ok = 1;
#define ADD_SPAN(A, B, M)                                                     \
    do {                                                                      \
        if ((B) > (A)) {                                                      \
            if (n_sp == cap_sp) {                                             \
                size_t nc = cap_sp * 2;                                       \
                span *ns = nvl_malloc(nc * sizeof *ns);                       \
                if (!ns) { ok = 0; goto done; }                               \
                memcpy(ns, spans, n_sp * sizeof *ns);                         \
                if (spans != stack_spans) nvl_free(spans);                    \
                spans = ns;                                                   \
                cap_sp = nc;                                                  \
            }                                                                 \
            spans[n_sp].a = (A);                                              \
            spans[n_sp].b = (B);                                              \
            spans[n_sp].m = (M);                                              \
            n_sp++;                                                           \
        }                                                                     \
    } while (0)
    while (pos < end) {
        size_t ms, me;
        if (pt->re) {
            int r = onig_search(pt->re, base + in.off, base + end, base + pos, base + end, reg, ONIG_OPTION_NONE);
            if (r < 0) break;
            ms = in.off + (size_t)reg->beg[0];
            me = in.off + (size_t)reg->end[0];
        } else {
            const char *f = NULL;
            size_t ll = strlen(pt->literal);
            for (size_t i = pos; ll && i + ll <= end; i++)
                if (!memcmp(text + i, pt->literal, ll)) {
                    f = text + i;
                    break;
                }
            if (!f) break;
            ms = (size_t)(f - text);
            me = ms + ll;
        }
        if (me == ms) { /* empty match: step one character */
            uint32_t cp;
            int bad;
            int l = nvl_utf8_next((const unsigned char *)text + ms, end - ms, &cp, &bad);
            ADD_SPAN(pos, ms, 0);
            pos = ms + (size_t)(l ? l : bad);
            ADD_SPAN(ms, pos, 0);
            continue;
        }
        ADD_SPAN(pos, ms, 0);
        ADD_SPAN(ms, me, 1);
        pos = me;
    }
    ADD_SPAN(pos, end, 0);
    for (size_t i = 0; i < n_sp; i++) {
        if (pt->invert) spans[i].m = !spans[i].m;
    }
    switch (pt->behavior) {
    case SPLIT_ISOLATED:
        for (size_t i = 0; i < n_sp && ok; i++) ok = pieces_push(out, spans[i].a, spans[i].b - spans[i].a);
        break;
    case SPLIT_REMOVED:
        for (size_t i = 0; i < n_sp && ok; i++)
            if (!spans[i].m) ok = pieces_push(out, spans[i].a, spans[i].b - spans[i].a);
        break;
    case SPLIT_MERGED_PREV: { /* a match joins the piece before it */
        size_t a = spans[0].a, b = spans[0].b;
        for (size_t i = 1; i < n_sp && ok; i++) {
            if (spans[i].m) b = spans[i].b;
            else {
                ok = pieces_push(out, a, b - a);
                a = spans[i].a, b = spans[i].b;
            }
        }
        if (ok && n_sp) ok = pieces_push(out, a, b - a);
        break;
    }
    case SPLIT_MERGED_NEXT: { /* a match starts the piece after it */
        size_t a = n_sp ? spans[0].a : 0, b = n_sp ? spans[0].b : 0;
        for (size_t i = 1; i < n_sp && ok; i++) {
            if (spans[i - 1].m && !spans[i].m) b = spans[i].b;
            else {
                ok = pieces_push(out, a, b - a);
                a = spans[i].a, b = spans[i].b;
            }
        }
        if (ok && n_sp) ok = pieces_push(out, a, b - a);
        break;
    }
    case SPLIT_CONTIGUOUS: { /* consecutive matches merge */
        size_t a = n_sp ? spans[0].a : 0, b = n_sp ? spans[0].b : 0;
        for (size_t i = 1; i < n_sp && ok; i++) {
            if (spans[i].m && spans[i - 1].m) b = spans[i].b;
            else {
                ok = pieces_push(out, a, b - a);
                a = spans[i].a, b = spans[i].b;
            }
        }
        if (ok && n_sp) ok = pieces_push(out, a, b - a);
        break;
    }
    }
done:
    if (spans != stack_spans) nvl_free(spans);
    return ok;
#undef ADD_SPAN
}

/* A candidate merge: the pair whose left symbol sits at pos, of that rank. */
typedef struct bpe_cand {
    int32_t rank;
    uint32_t pos;
} bpe_cand;

static int cand_less(bpe_cand a, bpe_cand b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }

static void heap_push(bpe_cand *h, size_t *n, bpe_cand c) {
    size_t i = (*n)++;
    while (i > 0 && cand_less(c, h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static bpe_cand heap_pop(bpe_cand *h, size_t *n) {
    const bpe_cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_less(h[c + 1], h[c])) c++;
        if (!cand_less(h[c], last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

/* Merges sym[0..ns) in place (ids; -1 where nothing is emitted), compacting it; returns 0 when
 * out of memory. Always the adjacent pair of lowest rank, the leftmost among equals: the rule
 * of tokenizers' Word::merge_all, whose binary heap this follows. (A rescan of every pair after
 * each merge took 31 s for a 30,000-character word: quadratic, on the engine's stepping thread.)
 * A symbol keeps its first position when it absorbs its right neighbour, so positions keep
 * their order; a popped candidate is stale when its left symbol is gone or the pair at its
 * position now has another rank (ranks name their pair uniquely). */
#define BPE_STACK 128 /* symbols merged in stack buffers (a word's usual size: no allocation per word) */
static int bpe_merge(const llm_tokenizer *t, int32_t *sym, size_t ns) {
    uint32_t nxt_s[BPE_STACK], prv_s[BPE_STACK];
    bpe_cand heap_s[2 * BPE_STACK];
    uint8_t dead_s[BPE_STACK] = {0};
    const int small = ns <= BPE_STACK;
    uint32_t *nxt = small ? nxt_s : nvl_malloc(ns * sizeof *nxt), *prv = small ? prv_s : nvl_malloc(ns * sizeof *prv);
    bpe_cand *heap = small ? heap_s : nvl_malloc(2 * ns * sizeof *heap); /* ns - 1 pairs, then at most 2 per merge */
    uint8_t *dead = small ? dead_s : nvl_calloc(ns, 1);
    int ok = nxt && prv && heap && dead;
    size_t nh = 0;
    for (size_t i = 0; ok && i < ns; i++) {
        nxt[i] = (uint32_t)(i + 1);
        prv[i] = (uint32_t)(i ? i - 1 : UINT32_MAX);
        const pair_slot *p = i + 1 < ns ? merge_get(t, sym[i], sym[i + 1]) : NULL;
        if (p) heap_push(heap, &nh, (bpe_cand){p->rank, (uint32_t)i});
    }
    while (ok && nh) {
        const bpe_cand c = heap_pop(heap, &nh);
        const uint32_t a = c.pos, b = nxt[a];
        if (dead[a] || b >= ns) continue;
        const pair_slot *p = merge_get(t, sym[a], sym[b]);
        if (!p || p->rank != c.rank) continue;
        sym[a] = p->id; /* a absorbs b */
        dead[b] = 1;
        nxt[a] = nxt[b];
        if (nxt[b] < ns) prv[nxt[b]] = a;
        if (prv[a] != UINT32_MAX && (p = merge_get(t, sym[prv[a]], sym[a])) != NULL) heap_push(heap, &nh, (bpe_cand){p->rank, prv[a]});
        if (nxt[a] < ns && (p = merge_get(t, sym[a], sym[nxt[a]])) != NULL) heap_push(heap, &nh, (bpe_cand){p->rank, a});
    }
    size_t k = 0;
    for (size_t i = 0; ok && i < ns; i++)
        if (!dead[i]) sym[k++] = sym[i];
    for (; ok && k < ns; k++) sym[k] = -1; /* (compacted: the tail emits nothing) */
    if (!small) {
        nvl_free(nxt);
        nvl_free(prv);
        nvl_free(heap);
        nvl_free(dead);
    }
    return ok;
}

/* BPE over one pre-token (raw bytes): initial symbols, then repeatedly merge the adjacent pair
 * of lowest rank (bpe_merge). */
static int bpe_word(const llm_tokenizer *t, const char *w, size_t n, ids_buf *out) {
    int32_t stack_sym[256];
    int32_t *sym = n <= 256 ? stack_sym : nvl_malloc(n * sizeof *sym);
    if (!sym) return 0;
    size_t ns = 0;
    if (t->byte_level) {
        /* ignore_merges: a pre-token that is itself a vocab entry is emitted whole */
        if (t->ignore_merges) {
            char tmp[1024];
            size_t k = 0;
            for (size_t i = 0; i < n && k + 4 < sizeof tmp; i++) k += (size_t)nvl_utf8_put(t->byte2cp[(uint8_t)w[i]], tmp + k);
            int32_t id = k + 4 < sizeof tmp ? str_map_get(t, tmp, k) : -1;
            if (id >= 0) {
                if (sym != stack_sym) nvl_free(sym);
                return push_id(out, id);
            }
        }
        for (size_t i = 0; i < n; i++) sym[ns++] = t->byte_tok[(uint8_t)w[i]];
    } else {
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            int bad;
            int l = nvl_utf8_next((const unsigned char *)w + i, n - i, &cp, &bad);
            if (!l) l = bad;
            int32_t id = str_map_get(t, w + i, (size_t)l);
            if (id >= 0) sym[ns++] = id;
            else if (t->byte_fallback) { /* every byte's <0xXX>, else the unknown token (as HF) */
                int all = 1;
                for (int k = 0; k < l; k++) all &= t->byte_tok[(uint8_t)w[i + k]] >= 0;
                if (all)
                    for (int k = 0; k < l; k++) sym[ns++] = t->byte_tok[(uint8_t)w[i + k]];
                else if (t->unk_id >= 0)
                    sym[ns++] = t->unk_id;
            } else if (t->unk_id >= 0) {
                sym[ns++] = t->unk_id;
            }
            i += (size_t)l;
        }
    }
    int ok = ns < 2 ? 1 : bpe_merge(t, sym, ns);
    for (size_t i = 0; i < ns && ok; i++) ok = sym[i] >= 0 ? push_id(out, sym[i]) : 1;
    if (sym != stack_sym) nvl_free(sym);
    return ok;
}

/* Encodes a stretch of text that holds no added token. */
static nvl_status encode_plain(const llm_tokenizer *t, const char *s, size_t n, ids_buf *out) {
    char *norm = NULL;
    size_t nn = 0;
    nvl_status st = NVL_OK;
    if (t->nfc) {
        if ((st = llm_utf8_nfc(s, n, &norm, &nn)) != NVL_OK) return st;
    } else {
        if (!(norm = nvl_memdup0(s, n))) return NVL_ERR_NOMEM; /* (NUL bytes are text too) */
        nn = n;
    }
    /* ByteLevel add_prefix_space */
    for (int i = 0; i < t->n_pre; i++)
        if (t->pre[i].kind == PRETOK_BYTELEVEL && t->pre[i].add_prefix_space && nn && norm[0] != ' ') {
            char *p2 = nvl_malloc(nn + 2);
            if (!p2) {
                nvl_free(norm);
                return NVL_ERR_NOMEM;
            }
            p2[0] = ' ';
            memcpy(p2 + 1, norm, nn + 1);
            nvl_free(norm);
            norm = p2;
            nn++;
            break;
        }
    pieces cur = {0}, next = {0};
    OnigRegion *reg = onig_region_new();
    int ok = reg && pieces_push(&cur, 0, nn);
    for (int i = 0; ok && i < t->n_pre; i++) {
        const pretok *pt = &t->pre[i];
        if (pt->kind == PRETOK_BYTELEVEL && !pt->re) continue; /* mapping happens in BPE */
        next.n = 0;
        for (size_t k = 0; ok && k < cur.n; k++) ok = split_piece(pt, norm, cur.p[k], &next, reg);
        pieces tmp = cur;
        cur = next;
        next = tmp;
    }
    for (size_t k = 0; ok && k < cur.n; k++) ok = bpe_word(t, norm + cur.p[k].off, cur.p[k].len, out);
    if (reg) onig_region_free(reg, 1);
    nvl_free(cur.p);
    nvl_free(next.p);
    nvl_free(norm);
    return ok ? NVL_OK : NVL_ERR_NOMEM;
}

/* Added-token flags follow tokenizers' added_vocabulary.rs, whose regexes are Unicode-aware:
 * single_word looks for a \w character (letters, marks, decimal digits, connector punctuation)
 * next to the match; lstrip/rstrip take the \s run (White_Space) beside it. The same classes
 * come from Oniguruma's Unicode tables. s is valid UTF-8 (sanitized before encoding). */
static int cp_is(uint32_t cp, unsigned ctype) { return ONIGENC_IS_CODE_CTYPE(ONIG_ENCODING_UTF8, (OnigCodePoint)cp, ctype) != 0; }
/* The code point that starts at i (i < n) and its length. */
static int cp_at(const char *s, size_t n, size_t i, uint32_t *cp) {
    int bad = 0, k = nvl_utf8_next((const unsigned char *)s + i, n - i, cp, &bad);
    if (k <= 0) {
        *cp = 0xFFFD;
        k = bad > 0 ? bad : 1;
    }
    return k;
}
/* The start of the code point that ends at i (i > 0). */
static size_t cp_before(const char *s, size_t i) {
    size_t b = i - 1;
    while (b > 0 && i - b < 4 && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
    return b;
}
static int word_before(const char *s, size_t n, size_t i) {
    uint32_t cp;
    if (i == 0) return 0;
    cp_at(s, n, cp_before(s, i), &cp);
    return cp_is(cp, ONIGENC_CTYPE_WORD);
}
static int word_at(const char *s, size_t n, size_t i) {
    uint32_t cp;
    if (i >= n) return 0;
    cp_at(s, n, i, &cp);
    return cp_is(cp, ONIGENC_CTYPE_WORD);
}

/* Finds the first added token at or after from; returns its index or -1, with the match
 * [*ms, *me) extended by lstrip/rstrip. */
static int find_added(const llm_tokenizer *t, const char *s, size_t n, size_t from, size_t *ms, size_t *me,
                      const uint8_t *plain) {
    for (size_t i = from; i < n; i++) {
        if (plain && plain[i]) continue; /* plain text: no added token starts here */
        for (int k = 0; k < t->n_added; k++) {
            const added_token *a = &t->added[k];
            if ((unsigned char)a->content[0] != (unsigned char)s[i] || a->len > n - i) continue;
            if (memcmp(s + i, a->content, a->len)) continue;
            if (a->single_word && (word_before(s, n, i) || word_at(s, n, i + a->len))) continue;
            size_t b = i, e = i + a->len;
            uint32_t cp;
            if (a->lstrip)
                while (b > from) {
                    const size_t p = cp_before(s, b);
                    cp_at(s, n, p, &cp);
                    if (p < from || !cp_is(cp, ONIGENC_CTYPE_SPACE)) break;
                    b = p;
                }
            if (a->rstrip)
                while (e < n) {
                    const int len = cp_at(s, n, e, &cp);
                    if (!cp_is(cp, ONIGENC_CTYPE_SPACE)) break;
                    e += (size_t)len;
                }
            *ms = b;
            *me = e;
            return k;
        }
    }
    return -1;
}

size_t llm_tokenizer_special_at(const llm_tokenizer *t, const char *s, size_t n) {
    for (int k = 0; k < t->n_added; k++) { /* longest first */
        const added_token *a = &t->added[k];
        if (a->special && a->len <= n && !memcmp(s, a->content, a->len)) return a->len;
    }
    return 0;
}

nvl_status llm_tokenizer_encode_append(const llm_tokenizer *t, const char *text, size_t len,
                                       int32_t **ids, int64_t *n, int64_t *cap, nvl_err *err) {
    return llm_tokenizer_encode_append_masked(t, text, len, NULL, ids, n, cap, err);
}

nvl_status llm_tokenizer_encode_append_masked(const llm_tokenizer *t, const char *text, size_t len,
                                              const uint8_t *plain, int32_t **ids, int64_t *n, int64_t *cap,
                                              nvl_err *err) {
    char *clean = NULL;
    size_t cl = 0;
    if (llm_utf8_sanitize(text, len, &clean, &cl) != NVL_OK)
        return nvl_err_set(err, NVL_ERR_NOMEM, "tokenizer: out of memory");
    if (cl != len) plain = NULL; /* the mask is for valid UTF-8 (the prompt builder sanitizes first) */
    ids_buf out = {ids, n, cap};
    size_t pos = 0;
    nvl_status st = NVL_OK;
    while (pos < cl && st == NVL_OK) {
        size_t ms = cl, me = cl;
        int k = t->n_added ? find_added(t, clean, cl, pos, &ms, &me, plain) : -1;
        if (k < 0) ms = me = cl;
        if (ms > pos) st = encode_plain(t, clean + pos, ms - pos, &out);
        if (st == NVL_OK && k >= 0 && !push_id(&out, t->added[k].id)) st = NVL_ERR_NOMEM;
        pos = me;
        if (k < 0) break;
    }
    nvl_free(clean);
    if (st != NVL_OK) return nvl_err_set(err, st, "tokenizer: out of memory while encoding");
    return NVL_OK;
}

nvl_status llm_tokenizer_encode(const llm_tokenizer *t, const char *text, size_t len, int32_t **ids,
                                int64_t *n, nvl_err *err) {
    *ids = NULL;
    *n = 0;
    int64_t cap = 0;
    nvl_status st = llm_tokenizer_encode_append(t, text, len, ids, n, &cap, err);
    if (st != NVL_OK) nvl_freep(ids);
    return st;
}

nvl_status llm_tokenizer_encode_special(const llm_tokenizer *t, const char *text, size_t len, int32_t **ids,
                                        int64_t *n, nvl_err *err) {
    *ids = NULL;
    *n = 0;
    int64_t cap = 0;
    if (!t->n_post_single) return llm_tokenizer_encode(t, text, len, ids, n, err);
    nvl_status st = NVL_OK;
    for (int i = 0; i < t->n_post_single && st == NVL_OK; i++) {
        if (t->post_single[i] >= 0) {
            if (*n == cap) {
                int64_t nc = cap ? cap * 2 : 64;
                int32_t *ni = nvl_realloc(*ids, (size_t)nc * sizeof *ni);
                if (!ni) {
                    st = nvl_err_set(err, NVL_ERR_NOMEM, "tokenizer: out of memory");
                    break;
                }
                *ids = ni;
                cap = nc;
            }
            (*ids)[(*n)++] = t->post_single[i];
        } else {
            st = llm_tokenizer_encode_append(t, text, len, ids, n, &cap, err);
        }
    }
    if (st != NVL_OK) nvl_freep(ids);
    return st;
}

// ---------------------------------------------------------------------------
// Decoding

/* Raw bytes of one token: added tokens verbatim, byte-level tokens unmapped, <0xXX> bytes. */
static size_t token_bytes(const llm_tokenizer *t, int32_t id, char *out, size_t cap) {
    if (id < 0 || id >= t->n_tokens) return 0;
    const char *s = t->tokens[id];
    size_t n = strlen(s);
    if (t->is_added[id] || !t->byte_level) {
        if (!t->byte_level && n == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>') {
            unsigned v = 0;
            if (sscanf(s + 3, "%2x", &v) == 1 && cap) {
                out[0] = (char)v;
                return 1;
            }
        }
        if (n > cap) n = cap;
        memcpy(out, s, n);
        return n;
    }
    size_t k = 0;
    for (size_t i = 0; i < n && k < cap;) {
        uint32_t cp;
        int bad;
        int l = nvl_utf8_next((const unsigned char *)s + i, n - i, &cp, &bad);
        if (!l) l = bad;
        if (l && cp < 512 && t->cp2byte[cp] >= 0) out[k++] = (char)t->cp2byte[cp];
        else {
            size_t c = (size_t)l < cap - k ? (size_t)l : cap - k;
            memcpy(out + k, s + i, c);
            k += c;
        }
        i += (size_t)l;
    }
    return k;
}

nvl_status llm_tokenizer_decode(const llm_tokenizer *t, const int32_t *ids, int64_t n, char **out,
                                size_t *len, nvl_err *err) {
    size_t cap = 64, k = 0;
    for (int64_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < t->n_tokens) cap += strlen(t->tokens[ids[i]]);
    char *o = nvl_malloc(cap + 1);
    if (!o) return nvl_err_set(err, NVL_ERR_NOMEM, "tokenizer: out of memory");
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_tokens) {
            nvl_free(o);
            return nvl_err_set(err, NVL_ERR_INVALID_ARG, "tokenizer: id %d outside the vocabulary of %lld",
                               ids[i], (long long)t->n_tokens);
        }
        k += token_bytes(t, ids[i], o + k, cap - k);
    }
    o[k] = 0;
    *out = o;
    if (len) *len = k;
    return NVL_OK;
}

void llm_detok_init(llm_detok *d, const llm_tokenizer *tok) {
    memset(d, 0, sizeof *d);
    d->tok = tok;
}

size_t llm_detok_feed(llm_detok *d, int32_t id, char *out, size_t cap) {
    char buf[2048];
    size_t n = token_bytes(d->tok, id, buf, sizeof buf);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        d->pending[d->n_pending++] = (unsigned char)buf[i];
        /* emit every complete (or definitely invalid) prefix */
        for (;;) {
            if (!d->n_pending) break;
            uint32_t cp;
            int bad;
            int l = nvl_utf8_next(d->pending, (size_t)d->n_pending, &cp, &bad);
            if (l) {
                if (k + (size_t)l <= cap) memcpy(out + k, d->pending, (size_t)l), k += (size_t)l;
            } else if (bad < d->n_pending ||
                       (bad == 1 && (d->pending[0] < 0xC2 || d->pending[0] > 0xF4))) {
                /* invalid for sure (not just incomplete): replace */
                if (k + 3 <= cap) k += (size_t)nvl_utf8_put(0xFFFD, out + k);
                l = bad;
            } else {
                break; /* incomplete: hold */
            }
            memmove(d->pending, d->pending + l, (size_t)(d->n_pending - l));
            d->n_pending -= l;
        }
    }
    return k;
}

size_t llm_detok_flush(llm_detok *d, char *out, size_t cap) {
    size_t k = 0;
    if (d->n_pending && cap >= 3) k = (size_t)nvl_utf8_put(0xFFFD, out);
    d->n_pending = 0;
    return k;
}
