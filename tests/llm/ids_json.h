/* Token ids against a golden's JSON array of ids (header-only, for the tokenizer tests that read
 * PyPI `tokenizers` goldens). */
#ifndef TESTS_LLM_IDS_JSON_H
#define TESTS_LLM_IDS_JSON_H

#include <stdint.h>

#include <cjson/cJSON.h>

/* 1 when the na ids in a equal the JSON array b element for element, else 0 (b NULL: 0). */
static inline int ids_equal(const int32_t *a, int64_t na, const cJSON *b) {
    if (!cJSON_IsArray(b) || na != cJSON_GetArraySize(b)) return 0;
    int64_t i = 0;
    for (const cJSON *x = b->child; x; x = x->next, i++)
        if (!cJSON_IsNumber(x) || a[i] != (int32_t)x->valuedouble) return 0;
    return 1;
}

#endif // TESTS_LLM_IDS_JSON_H
