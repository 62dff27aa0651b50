/* Tokenizer paths beyond the main corpus, against PyPI `tokenizers`
 * (tests/reference/gen_tokenizer_extra_goldens.py): byte fallback (characters outside a
 * non-byte-level BPE vocabulary become <0xXX> tokens; the ByteFallback + Fuse decoder turns them
 * back into text, invalid sequences into U+FFFD) and TemplateProcessing post-processors (a bare
 * one, and one inside a Sequence after ByteLevel) for encode with add_special_tokens; added tokens
 * with lstrip, rstrip and single_word (tokenizer "flags"). Ids and decoded text must equal the
 * reference exactly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "base/json_util.h"
#include "ids_json.h"
#include "test_util.h"
#include "tokenizer.h"

int main(void) {
    nvl_err err = {0};
    cJSON *g = NULL;
    if (nvl_json_load_file(&g, test_data_path("tokenizer/extra/goldens.json"), 1u << 20, &err) != NVL_OK) test_skip("%s", err.msg);
    llm_tokenizer *fb = NULL, *bos = NULL, *fl = NULL;
    char p1[1024], p2[1024], p3[1024];
    snprintf(p1, sizeof p1, "%s", test_data_path("tokenizer/extra/fallback.json"));
    snprintf(p2, sizeof p2, "%s", test_data_path("tokenizer/extra/bos.json"));
    snprintf(p3, sizeof p3, "%s", test_data_path("tokenizer/extra/flags.json"));
    TEST_EQ_INT(llm_tokenizer_load(&fb, p1, &err), NVL_OK);
    TEST_EQ_INT(llm_tokenizer_load(&bos, p2, &err), NVL_OK);
    TEST_EQ_INT(llm_tokenizer_load(&fl, p3, &err), NVL_OK);
    int n = 0, n_flags = 0;
    for (const cJSON *c = g ? g->child : NULL; c && fb && bos && fl; c = c->next, n++) {
        const char *which = cJSON_GetObjectItemCaseSensitive(c, "tokenizer")->valuestring;
        const llm_tokenizer *t = !strcmp(which, "fallback") ? fb : !strcmp(which, "flags") ? fl : bos;
        n_flags += t == fl;
        char text[1024];
        size_t len = 0;
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(c, "text"), *hx = cJSON_GetObjectItemCaseSensitive(c, "text_bytes_hex");
        if (tx) {
            len = strlen(tx->valuestring);
            memcpy(text, tx->valuestring, len);
        } else {
            for (const char *h = hx->valuestring; h[0] && h[1]; h += 2) {
                unsigned v;
                sscanf(h, "%2x", &v);
                text[len++] = (char)v;
            }
        }
        int32_t *ids = NULL;
        int64_t ni = 0;
        TEST_EQ_INT(llm_tokenizer_encode(t, text, len, &ids, &ni, &err), NVL_OK);
        TEST_CHECK(ids_equal(ids, ni, cJSON_GetObjectItemCaseSensitive(c, "ids")), "%s case %d (%s): ids equal", which, n,
                   tx ? tx->valuestring : "bytes");
        char *dec = NULL;
        size_t dl = 0;
        TEST_EQ_INT(llm_tokenizer_decode(t, ids, ni, &dec, &dl, &err), NVL_OK);
        char *clean = NULL;
        size_t cl = 0;
        llm_utf8_sanitize(dec ? dec : "", dl, &clean, &cl); /* the reference decodes invalid bytes to U+FFFD */
        TEST_CHECK(clean && !strcmp(clean, cJSON_GetObjectItemCaseSensitive(c, "decoded")->valuestring), "%s case %d: decoded '%s'",
                   which, n, clean ? clean : "");
        nvl_free(clean);
        nvl_free(dec);
        nvl_free(ids);
        TEST_EQ_INT(llm_tokenizer_encode_special(t, text, len, &ids, &ni, &err), NVL_OK);
        TEST_CHECK(ids_equal(ids, ni, cJSON_GetObjectItemCaseSensitive(c, "ids_special")), "%s case %d: ids with special tokens equal",
                   which, n);
        nvl_free(ids);
    }
    TEST_CHECK(n >= 28 + 29 && n_flags >= 29, "%d cases, %d with added-token flags", n, n_flags);
    llm_tokenizer_free(fb);
    llm_tokenizer_free(fl);
    llm_tokenizer_free(bos);
    cJSON_Delete(g);
    return test_report();
}
