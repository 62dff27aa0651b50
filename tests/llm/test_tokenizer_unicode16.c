/* Letters, digits and marks added in Unicode 15.0-16.0 split as PyPI `tokenizers` splits them
 * (tests/reference/gen_tokenizer_unicode16_goldens.py; its Oniguruma has Unicode 16 tables, the
 * system's libonig5 14.0, and llm/text/unicode_props.inc carries the reference's properties):
 * 370 texts such as "x\U00031350's" (a contraction after a new letter), " \U0001d2c0" (a space
 * before a new digit) and "\U0001e4f01234" (digit groups of three) must give the reference's ids
 * exactly, with the Nemotron tiny tokenizer (in this repository) and the real qwen3 and gpt-oss
 * ones (../shared/tokenizers: skipped, with the reason, when absent). And six such code points
 * match their category and not \p{C} / \p{Cn} (the "other, unassigned" of Unicode 14). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <oniguruma.h>

#include "base/alloc.h"
#include "base/json_util.h"
#include "ids_json.h"
#include "test_util.h"
#include "tokenizer.h"

int main(void) {
    nvl_err err = {0};
    cJSON *g = NULL;
    if (nvl_json_load_file(&g, test_data_path("tokenizer/unicode16_goldens.json"), 1u << 20, &err) != NVL_OK)
        test_skip("%s", err.msg);
    const cJSON *gold = cJSON_GetObjectItemCaseSensitive(g, "goldens");
    const char *names[] = {"nemotron_tiny", "qwen3", "gpt-oss"};
    const char *shared[3] = {NULL, "tokenizers/qwen3/tokenizer.json", "tokenizers/gpt-oss/tokenizer.json"};
    char paths[3][4096];
    int ran = 0;
    for (int k = 0; k < 3; k++) {
        const char *p = k == 0 ? test_data_path("tokenizer/nemotron_tiny") : test_shared_path(shared[k]);
        if (!p) {
            printf("skip %s: ../shared/%s is absent (the real tokenizer.json files live there)\n", names[k], shared[k]);
            continue;
        }
        snprintf(paths[k], sizeof paths[k], "%s", p);
        llm_tokenizer *t = NULL;
        TEST_EQ_INT(llm_tokenizer_load(&t, paths[k], &err), NVL_OK);
        if (!t) continue;
        int n = 0, bad = 0;
        for (const cJSON *c = cJSON_GetObjectItemCaseSensitive(gold, names[k])->child; c; c = c->next, n++) {
            const char *text = cJSON_GetObjectItemCaseSensitive(c, "text")->valuestring;
            int32_t *ids = NULL;
            int64_t ni = 0;
            TEST_EQ_INT(llm_tokenizer_encode(t, text, strlen(text), &ids, &ni, &err), NVL_OK);
            const int eq = ids_equal(ids, ni, cJSON_GetObjectItemCaseSensitive(c, "ids"));
            if (!eq && bad++ < 5) {
                char *want = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(c, "ids"));
                fprintf(stderr, "%s: text %d: got", names[k], n);
                for (int64_t i = 0; i < ni; i++) fprintf(stderr, " %d", ids[i]);
                fprintf(stderr, ", reference %s\n", want);
                free(want);
            }
            TEST_CHECK(eq, "%s: text %d: ids equal the reference's", names[k], n);
            nvl_free(ids);
        }
        TEST_CHECK(n == 370, "%s: %d texts", names[k], n);
        printf("%s: %d texts, %d differ\n", names[k], n, bad);
        llm_tokenizer_free(t);
        ran++;
    }
    TEST_CHECK(ran >= 1, "the repository's tokenizer ran");
    /* the categories stay a partition for the new code points: a letter or digit of Unicode
       15-16 is no longer "other, unassigned" (\p{C}, \p{Cn}) as in the system's tables */
    {
        static const struct { unsigned cp; const char *is; } k[] = {
            {0x10D4A, "L"}, {0x31350, "L"}, {0x1C89, "L"}, {0x1E4F0, "N"}, {0x1D2C0, "N"}, {0x0CF3, "M"}};
        for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
            char pats[3][16], text[8];
            snprintf(pats[0], sizeof pats[0], "\\p{%s}", k[i].is);
            snprintf(pats[1], sizeof pats[1], "\\p{C}");
            snprintf(pats[2], sizeof pats[2], "\\p{Cn}");
            const unsigned c = k[i].cp;
            const int n = c < 0x800 ? (text[0] = (char)(0xC0 | c >> 6), text[1] = (char)(0x80 | (c & 63)), 2)
                          : c < 0x10000 ? (text[0] = (char)(0xE0 | c >> 12), text[1] = (char)(0x80 | (c >> 6 & 63)),
                                           text[2] = (char)(0x80 | (c & 63)), 3)
                                        : (text[0] = (char)(0xF0 | c >> 18), text[1] = (char)(0x80 | (c >> 12 & 63)),
                                           text[2] = (char)(0x80 | (c >> 6 & 63)), text[3] = (char)(0x80 | (c & 63)), 4);
            for (int p = 0; p < 3; p++) {
                regex_t *re = NULL;
                OnigErrorInfo ei;
                const int r = onig_new(&re, (const UChar *)pats[p], (const UChar *)pats[p] + strlen(pats[p]), ONIG_OPTION_NONE,
                                       ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT, &ei);
                TEST_CHECK(r == ONIG_NORMAL, "%s compiles", pats[p]);
                if (r != ONIG_NORMAL) continue;
                const int m = onig_match(re, (const UChar *)text, (const UChar *)text + n, (const UChar *)text, NULL,
                                         ONIG_OPTION_NONE) == n;
                TEST_CHECK(m == (p == 0), "U+%04X %s %s", c, p == 0 ? "matches" : "does not match", pats[p]);
                onig_free(re);
            }
        }
    }
    cJSON_Delete(g);
    return test_report();
}
