/* tokenizer.json loading: the fast scanner for model.vocab / model.merges and the general cJSON
 * path give the same tokenizer. The tiny Nemotron tokenizer is loaded as written, with every
 * non-ASCII character \u-escaped (surrogate pairs above U+FFFF), pretty-printed, and with one
 * vocab id written as 7.0 (which makes the scanner step aside): vocab sizes, token strings and
 * the ids of a mixed corpus must be identical. Also: a merge naming a token outside the vocab
 * and a truncated file are errors naming the problem. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "base/mapped_file.h"
#include "test_util.h"
#include "tokenizer.h"

static char *escape_non_ascii(const char *s, size_t n) {
    char *o = malloc(n * 12 + 1), *d = o;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            *d++ = (char)c;
            i++;
            continue;
        }
        unsigned cp;
        int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        cp = c & (len == 4 ? 7 : len == 3 ? 15 : 31);
        for (int k = 1; k < len; k++) cp = cp << 6 | ((unsigned char)s[i + k] & 63);
        i += (size_t)len;
        if (cp >= 0x10000) {
            cp -= 0x10000;
            d += sprintf(d, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 1023));
        } else {
            d += sprintf(d, "\\u%04x", cp);
        }
    }
    *d = 0;
    return o;
}

static llm_tokenizer *load_text(const char *dir, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
    nvl_err err = {0};
    llm_tokenizer *t = NULL;
    if (llm_tokenizer_load(&t, path, &err) != NVL_OK) fprintf(stderr, "load: %s\n", err.msg);
    return t;
}

static void same(const llm_tokenizer *a, const llm_tokenizer *b, const char *what) {
    static const char *corpus[] = {"Hello world", "naïve café 中文 😀👍🏽 \t\n  x", "<image><img></img><think>", "1234 I'm"};
    TEST_EQ_INT(llm_tokenizer_vocab_size(a), llm_tokenizer_vocab_size(b));
    int eq = 1;
    for (int64_t i = 0; eq && i < llm_tokenizer_vocab_size(a); i++) eq = !strcmp(llm_tokenizer_token_str(a, (int32_t)i), llm_tokenizer_token_str(b, (int32_t)i));
    TEST_CHECK(eq, "%s: token strings equal", what);
    for (size_t c = 0; c < sizeof corpus / sizeof corpus[0]; c++) {
        int32_t *x = NULL, *y = NULL;
        int64_t nx = 0, ny = 0;
        nvl_err err = {0};
        llm_tokenizer_encode(a, corpus[c], strlen(corpus[c]), &x, &nx, &err);
        llm_tokenizer_encode(b, corpus[c], strlen(corpus[c]), &y, &ny, &err);
        TEST_CHECK(nx == ny && nx > 0 && !memcmp(x, y, (size_t)nx * sizeof *x), "%s: ids of '%s' equal", what, corpus[c]);
        nvl_free(x);
        nvl_free(y);
    }
}

int main(void) {
    nvl_err err = {0};
    char *orig = NULL;
    size_t n = 0;
    if (nvl_read_file(test_data_path("tokenizer/nemotron_tiny/tokenizer.json"), 64u << 20, &orig, &n, &err) != NVL_OK)
        test_skip("%s", err.msg);
    const char *dir = test_tmpdir();
    llm_tokenizer *base = load_text(dir, orig);
    TEST_CHECK(base != NULL, "original loads");
    char *esc = escape_non_ascii(orig, n);
    llm_tokenizer *t1 = load_text(dir, esc);
    TEST_CHECK(t1 != NULL, "escaped loads");
    if (base && t1) same(base, t1, "\\u-escaped");
    cJSON *j = cJSON_Parse(orig);
    char *pretty = cJSON_Print(j);
    llm_tokenizer *t2 = load_text(dir, pretty);
    if (base && t2) same(base, t2, "pretty-printed");
    /* an id written 7.0: the scanner steps aside, cJSON reads it */
    cJSON *vocab = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "vocab");
    char *plain = cJSON_PrintUnformatted(j);
    const char *first = vocab->child->string;
    char needle[256], *hit;
    snprintf(needle, sizeof needle, "\"%s\":%d", first, (int)vocab->child->valuedouble);
    if ((hit = strstr(plain, needle))) {
        size_t at = (size_t)(hit - plain) + strlen(needle);
        char *with_float = malloc(strlen(plain) + 3);
        memcpy(with_float, plain, at);
        strcpy(with_float + at, ".0");
        strcpy(with_float + at + 2, plain + at);
        llm_tokenizer *t3 = load_text(dir, with_float);
        if (base && t3) same(base, t3, "general path");
        llm_tokenizer_free(t3);
        free(with_float);
    } else {
        TEST_CHECK(0, "could not find the first vocab entry");
    }
    /* errors: a merge with an unknown token; a truncated file */
    cJSON *merges = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "merges");
    cJSON_ReplaceItemInArray(merges, 0, cJSON_IsArray(merges->child) ? cJSON_Parse("[\"zzqq\",\"xxjj\"]") : cJSON_CreateString("zzqq xxjj"));
    char *bad = cJSON_PrintUnformatted(j);
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "wb");
    fputs(bad, f);
    fclose(f);
    llm_tokenizer *t4 = NULL;
    TEST_EQ_INT(llm_tokenizer_load(&t4, path, &err), NVL_ERR_CONFIG);
    TEST_CONTAINS(err.msg, "merge 0");
    f = fopen(path, "wb");
    fwrite(orig, 1, n / 2, f);
    fclose(f);
    TEST_CHECK(llm_tokenizer_load(&t4, path, &err) != NVL_OK, "truncated file refused");
    TEST_CONTAINS(err.msg, "tokenizer.json");
    llm_tokenizer_free(base);
    llm_tokenizer_free(t1);
    llm_tokenizer_free(t2);
    free(esc);
    cJSON_free(pretty);
    cJSON_free(plain);
    cJSON_free(bad);
    cJSON_Delete(j);
    nvl_free(orig);
    return test_report();
}
