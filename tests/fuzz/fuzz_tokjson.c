/* libFuzzer harness: the tokenizer.json fast scanner (model.vocab / model.merges), then cJSON
 * on what it leaves, as llm_tokenizer_load does. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "tokenizer_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = nvl_malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    tok_lists L;
    if (tokjson_extract(text, size, &L) == 1) {
        volatile size_t sink = 0;
        for (size_t i = 0; i < L.n_vocab; i++) sink += L.vocab[i].n + (size_t)L.vocab_id[i] + (size_t)(unsigned char)L.vocab[i].s[0];
        for (size_t i = 0; i < L.n_merges; i++) sink += L.merge_a[i].n + L.merge_b[i].n;
        (void)sink;
    }
    cJSON_Delete(cJSON_ParseWithLength(text, size));
    tok_lists_free(&L);
    nvl_free(text);
    return 0;
}
