/* Tokenizer against the PyPI `tokenizers` library (tests/reference/gen_tokenizer_goldens.py):
 * exact ids on an adversarial corpus for three tokenizers (a trained one with the Nemotron
 * special tokens, and the real Qwen3 and gpt-oss files in ../shared, read in place), decode
 * round trips where the reference round-trips, streaming decode, NFC, and clear load errors. */
#include <cjson/cJSON.h>
#include <time.h>

#include "base/alloc.h"
#include "base/json_util.h"
#include "base/mapped_file.h"
#include "tokenizer.h"
#include "test_util.h"

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

static void test_goldens(void) {
    cJSON *root = NULL;
    nvl_err err = {0};
    if (nvl_json_load_file(&root, test_data_path("tokenizer/goldens.json"), 1 << 24, &err) != NVL_OK) {
        TEST_CHECK(0, "%s", err.msg);
        return;
    }
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases"), *c;
    const char *names[4] = {0};
    llm_tokenizer *toks[4] = {0};
    int n_tok = 0, n_cases = 0, n_skipped = 0, n_round = 0;
    cJSON_ArrayForEach(c, cases) {
        const char *name = cJSON_GetObjectItemCaseSensitive(c, "tokenizer")->valuestring;
        const char *path = cJSON_GetObjectItemCaseSensitive(c, "path")->valuestring;
        int k = 0;
        while (k < n_tok && strcmp(names[k], name)) k++;
        if (k == n_tok) {
            names[n_tok++] = name;
            char full[4096];
            const char *p = NULL;
            if (!strncmp(path, "../shared/", 10)) p = test_shared_path(path + 10);
            else {
                snprintf(full, sizeof full, "%s/%s", NVL_TEST_DATA, path + strlen("tests/data/"));
                p = full;
            }
            if (!p) printf("%s: %s absent, its cases skipped\n", name, path);
            else {
                double t0 = (double)clock();
                TEST_CHECK(llm_tokenizer_load(&toks[k], p, &err) == NVL_OK, "%s: %s", name, err.msg);
                printf("%s: loaded in %.2f s\n", name, ((double)clock() - t0) / CLOCKS_PER_SEC);
            }
        }
        if (!toks[k]) {
            n_skipped++;
            continue;
        }
        const char *hex = cJSON_GetObjectItemCaseSensitive(c, "hex")->valuestring;
        size_t n = strlen(hex) / 2;
        char *bytes = malloc(n + 1);
        for (size_t i = 0; i < n; i++) bytes[i] = (char)(hexval(hex[2 * i]) * 16 + hexval(hex[2 * i + 1]));
        int32_t *ids = NULL;
        int64_t n_ids = 0;
        TEST_CHECK(llm_tokenizer_encode(toks[k], bytes, n, &ids, &n_ids, &err) == NVL_OK, "%s", err.msg);
        const cJSON *ref = cJSON_GetObjectItemCaseSensitive(c, "ids");
        int64_t n_ref = cJSON_GetArraySize(ref);
        int same = n_ref == n_ids;
        for (int64_t i = 0; same && i < n_ids; i++) same = ids[i] == (int32_t)cJSON_GetArrayItem(ref, (int)i)->valuedouble;
        TEST_CHECK(same, "%s: ids differ for \"%.*s\" (got %lld ids, expected %lld)", name, (int)n, bytes,
                   (long long)n_ids, (long long)n_ref);
        if (!same)
            for (int64_t i = 0; i < (n_ids > n_ref ? n_ids : n_ref) && i < 40; i++)
                fprintf(stderr, "   [%lld] got %d ref %d\n", (long long)i, i < n_ids ? ids[i] : -1,
                        i < n_ref ? (int)cJSON_GetArrayItem(ref, (int)i)->valuedouble : -1);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "roundtrip"))) {
            char *back = NULL, *clean = NULL;
            size_t bl = 0, cl = 0;
            llm_tokenizer_decode(toks[k], ids, n_ids, &back, &bl, &err);
            llm_utf8_sanitize(bytes, n, &clean, &cl);
            TEST_CHECK(bl == cl && !memcmp(back, clean, cl), "%s: decode(encode(x)) != x for \"%s\"", name, clean);
            /* the streaming decoder gives the same bytes */
            llm_detok d;
            llm_detok_init(&d, toks[k]);
            char *s = malloc(cl + 4096);
            size_t sl = 0;
            for (int64_t i = 0; i < n_ids; i++) sl += llm_detok_feed(&d, ids[i], s + sl, 4096);
            sl += llm_detok_flush(&d, s + sl, 16);
            TEST_CHECK(sl == cl && !memcmp(s, clean, cl), "%s: streaming decode differs for \"%s\"", name, clean);
            free(s);
            nvl_free(back);
            nvl_free(clean);
            n_round++;
        }
        nvl_free(ids);
        free(bytes);
        n_cases++;
    }
    printf("golden cases: %d run, %d skipped (tokenizer absent), %d round trips checked\n", n_cases, n_skipped, n_round);
    TEST_CHECK(n_cases >= 32, "only %d golden cases ran", n_cases);
    for (int k = 0; k < n_tok; k++) llm_tokenizer_free(toks[k]);
    cJSON_Delete(root);
}

static void test_special_tokens(void) {
    nvl_err err = {0};
    llm_tokenizer *t = NULL;
    TEST_EQ_INT(llm_tokenizer_load(&t, test_data_path("tokenizer/nemotron_tiny"), &err), NVL_OK);
    if (!t) return;
    const char *names[] = {"<image>", "<img>", "</img>", "<SPECIAL_10>", "<SPECIAL_11>", "<SPECIAL_12>",
                           "<think>", "</think>", "</s>", "<s>"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int32_t id = llm_tokenizer_token_id(t, names[i]);
        TEST_CHECK(id >= 0 && llm_tokenizer_is_special(t, id), "%s not a special token", names[i]);
        TEST_EQ_STR(llm_tokenizer_token_str(t, id), names[i]);
    }
    TEST_EQ_INT(llm_tokenizer_token_id(t, "<no such token>"), -1);
    nvl_err e2 = {0};
    TEST_EQ_INT(llm_tokenizer_check_vl(t, &e2), NVL_OK);
    /* streaming: a 4-byte emoji split over byte tokens is held until complete */
    int32_t *ids = NULL;
    int64_t n = 0;
    llm_tokenizer_encode(t, "\xf0\x9f\x98\x80!", 5, &ids, &n, &err);
    llm_detok d;
    llm_detok_init(&d, t);
    char out[64];
    size_t total = 0, first = llm_detok_feed(&d, ids[0], out, sizeof out);
    TEST_CHECK(n >= 2, "emoji should take several byte tokens, got %lld", (long long)n);
    TEST_EQ_INT(first, 0); /* incomplete UTF-8 held back */
    total = first;
    for (int64_t i = 1; i < n; i++) total += llm_detok_feed(&d, ids[i], out + total, sizeof out - total);
    TEST_CHECK(total == 5 && !memcmp(out, "\xf0\x9f\x98\x80!", 5), "streamed emoji");
    nvl_free(ids);
    llm_tokenizer_free(t);
}

static void test_nfc(void) {
    const struct {
        const char *in, *out;
    } cases[] = {
        {"e\xcc\x81", "\xc3\xa9"},                               /* e + acute -> é */
        {"\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xea\xb0\x81"}, /* Hangul L V T -> 각 */
        {"a\xcc\xa3\xcc\x88", "\xe1\xba\xa1\xcc\x88"},           /* a + dot below + diaeresis */
        {"a\xcc\x88\xcc\xa3", "\xe1\xba\xa1\xcc\x88"},           /* reordered by combining class */
        {"\xe2\x84\xab", "\xc3\x85"},                            /* ANGSTROM SIGN -> Å */
        {"plain ascii", "plain ascii"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *o = NULL;
        size_t ol = 0;
        llm_utf8_nfc(cases[i].in, strlen(cases[i].in), &o, &ol);
        TEST_CHECK(o && !strcmp(o, cases[i].out), "NFC case %zu", i);
        nvl_free(o);
    }
}

static void test_load_errors(void) {
    nvl_err err = {0};
    llm_tokenizer *t = NULL;
    char p[600];
    /* truncated */
    char *full = NULL;
    size_t len = 0;
    nvl_read_file(test_data_path("tokenizer/nemotron_tiny/tokenizer.json"), 1 << 24, &full, &len, &err);
    snprintf(p, sizeof p, "%s/truncated.json", test_tmpdir());
    test_write_file(p, full, len / 2);
    TEST_EQ_INT(llm_tokenizer_load(&t, p, &err), NVL_ERR_FORMAT);
    TEST_CONTAINS(err.msg, "invalid JSON");
    /* unknown model type */
    char *at = strstr(full, "\"type\": \"BPE\"");
    if (!at) at = strstr(full, "\"type\":\"BPE\"");
    TEST_CHECK(at != NULL, "model type not found in the test file");
    if (at) {
        char *q = strstr(at, "BPE");
        memcpy(q, "XYZ", 3);
        snprintf(p, sizeof p, "%s/unknown_model.json", test_tmpdir());
        test_write_file(p, full, len);
        TEST_EQ_INT(llm_tokenizer_load(&t, p, &err), NVL_ERR_UNSUPPORTED);
        TEST_CONTAINS(err.msg, "unknown model type 'XYZ'");
        memcpy(q, "BPE", 3);
    }
    /* missing field */
    char *m = strstr(full, "\"merges\"");
    TEST_CHECK(m != NULL, "merges not found");
    if (m) {
        memcpy(m, "\"mErGes\"", 8);
        snprintf(p, sizeof p, "%s/no_merges.json", test_tmpdir());
        test_write_file(p, full, len);
        TEST_EQ_INT(llm_tokenizer_load(&t, p, &err), NVL_ERR_CONFIG);
        TEST_CONTAINS(err.msg, "missing field 'model.merges'");
    }
    nvl_free(full);
    TEST_EQ_INT(llm_tokenizer_load(&t, "/nonexistent/tokenizer.json", &err), NVL_ERR_NOT_FOUND);
    /* a real tokenizer without the VL tokens is refused for the VL prompt format, by name */
    const char *q = test_shared_path("tokenizers/qwen3/tokenizer.json");
    if (q && llm_tokenizer_load(&t, q, &err) == NVL_OK) {
        TEST_EQ_INT(llm_tokenizer_check_vl(t, &err), NVL_ERR_CONFIG);
        TEST_CONTAINS(err.msg, "tokenizer has no '<image>' token");
        llm_tokenizer_free(t);
    }
}

int main(void) {
    int64_t live0 = nvl_alloc_count();
    test_goldens();
    test_special_tokens();
    test_nfc();
    test_load_errors();
    TEST_EQ_INT(nvl_alloc_count(), live0);
    return test_report();
}
