/* Chat rendering byte-identical to transformers' apply_chat_template (with the Nano V2 template,
 * tests/reference/gen_chat_goldens.py) for single/multi-turn, think on/off, image and video
 * messages, with and without the generation prompt; media expansion layout and spans. */
#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "base/json_util.h"
#include "chat.h"
#include "test_util.h"

static llm_tokenizer *g_tok;

static void test_goldens(void) {
    cJSON *root = NULL;
    nvl_err err = {0};
    if (nvl_json_load_file(&root, test_data_path("tokenizer/chat_goldens.json"), 1 << 22, &err) != NVL_OK) {
        TEST_CHECK(0, "%s", err.msg);
        return;
    }
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "cases")) {
        llm_chat_message *msgs = NULL;
        int nm = 0;
        TEST_EQ_INT(llm_chat_messages_from_json(cJSON_GetObjectItemCaseSensitive(c, "messages"), &msgs, &nm, &err), NVL_OK);
        llm_chat_options o = llm_chat_options_default();
        o.add_generation_prompt = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "add_generation_prompt"));
        char *text = NULL;
        size_t len = 0;
        TEST_EQ_INT(llm_chat_render(msgs, nm, &o, &text, &len, &err), NVL_OK);
        const char *ref = cJSON_GetObjectItemCaseSensitive(c, "text")->valuestring;
        TEST_CHECK(text && !strcmp(text, ref), "rendering %d differs:\n--- got\n%s\n--- expected\n%s", n, text, ref);
        int32_t *ids = NULL;
        int64_t n_ids = 0;
        llm_tokenizer_encode(g_tok, text, len, &ids, &n_ids, &err);
        const cJSON *rids = cJSON_GetObjectItemCaseSensitive(c, "ids");
        int same = n_ids == cJSON_GetArraySize(rids);
        for (int64_t i = 0; same && i < n_ids; i++) same = ids[i] == (int32_t)cJSON_GetArrayItem(rids, (int)i)->valuedouble;
        TEST_CHECK(same, "ids of rendering %d differ", n);
        nvl_free(ids);
        nvl_free(text);
        llm_chat_messages_free(msgs, nm);
        n++;
    }
    TEST_CHECK(n >= 16, "only %d renderings", n);
    cJSON_Delete(root);
}

static void test_media_expansion(void) {
    nvl_err err = {0};
    const char *text = "<s>A<image>\nB<video>\nC";
    const double ts[2] = {0.0, 0.5};
    const int kept[2] = {3, 0}; /* EVS may keep nothing of a frame */
    llm_media_layout media[2] = {{.kind = LLM_MEDIA_IMAGE, .n_tiles = 2},
                                 {.kind = LLM_MEDIA_VIDEO, .n_frames = 2, .ts = ts, .kept = kept}};
    llm_prompt p;
    TEST_EQ_INT(llm_chat_tokenize(g_tok, text, strlen(text), media, 2, 4, &p, &err), NVL_OK);
    const int32_t img = llm_tokenizer_token_id(g_tok, "<image>"), s = llm_tokenizer_token_id(g_tok, "<img>"),
                  e = llm_tokenizer_token_id(g_tok, "</img>");
    TEST_EQ_INT(p.n_spans, 3);
    if (p.n_spans == 3) {
        TEST_EQ_INT(p.spans[0].count, 8); /* 2 tiles x 4 */
        TEST_EQ_INT(p.ids[p.spans[0].start - 1], s);
        TEST_EQ_INT(p.ids[p.spans[0].start + 8], e);
        int all = 1;
        for (int64_t i = 0; i < 8; i++) all &= p.ids[p.spans[0].start + i] == img;
        TEST_CHECK(all, "image span holds <image> tokens");
        TEST_EQ_INT(p.spans[1].frame, 0);
        TEST_EQ_INT(p.spans[1].count, 3);
        TEST_EQ_INT(p.spans[2].frame, 1);
        TEST_EQ_INT(p.spans[2].count, 0);
        TEST_EQ_INT(p.ids[p.spans[2].start - 1], s); /* "<img></img>" for an empty frame */
        TEST_EQ_INT(p.ids[p.spans[2].start], e);
        /* the separators are tokenized on their own */
        int32_t *sep = NULL;
        int64_t ns = 0;
        const char *s1 = "\nFrame 2 sampled at 0.50 seconds: ";
        llm_tokenizer_encode(g_tok, s1, strlen(s1), &sep, &ns, &err);
        int same = 1;
        for (int64_t i = 0; i < ns; i++) same &= p.ids[p.spans[2].start - 1 - ns + i] == sep[i];
        TEST_CHECK(same, "frame 2 separator tokens");
        nvl_free(sep);
    }
    llm_prompt_free(&p);
    TEST_EQ_INT(llm_chat_tokenize(g_tok, text, strlen(text), media, 1, 4, &p, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "more media markers");
    llm_media_layout wrong[2] = {media[1], media[0]};
    TEST_EQ_INT(llm_chat_tokenize(g_tok, text, strlen(text), wrong, 2, 4, &p, &err), NVL_ERR_INVALID_ARG);
    TEST_EQ_INT(llm_chat_tokenize(g_tok, "no media", 8, media, 2, 4, &p, &err), NVL_ERR_INVALID_ARG);
}

/* User text is plain text (issue 16 item 8): escaped with llm_chat_escape_text and placed in
 * template text, then tokenized by llm_chat_tokenize, it gives the ids of PyPI `tokenizers` with
 * encode_special_tokens on for the user's stretch (tests/reference/gen_plain_text_goldens.py):
 * '<image>', '<img>', '<SPECIAL_12>', turn markers and other special tokens typed by the user stay
 * text, the template's own are real; one <image> marker of the template expands (1 tile of 4). */
static void test_plain_text(void) {
    cJSON *root = NULL;
    nvl_err err = {0};
    if (nvl_json_load_file(&root, test_data_path("tokenizer/plain_text_goldens.json"), 1 << 22, &err) != NVL_OK) {
        TEST_CHECK(0, "%s", err.msg);
        return;
    }
    int n = 0, n_skipped = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "cases")) {
        const char *name = cJSON_GetObjectItemCaseSensitive(c, "tokenizer")->valuestring;
        const char *path = !strcmp(name, "vl_tiny") ? test_data_path("vl_tiny")
                           : !strcmp(name, "qwen3") ? test_shared_path("tokenizers/qwen3/tokenizer.json")
                                                    : test_shared_path("tokenizers/gpt-oss/tokenizer.json");
        llm_tokenizer *tok = NULL;
        if (!path || llm_tokenizer_load(&tok, path, &err) != NVL_OK) {
            n_skipped++;
            continue;
        }
        char *text = NULL;
        size_t tl = 0;
        const cJSON *sg;
        cJSON_ArrayForEach(sg, cJSON_GetObjectItemCaseSensitive(c, "segments")) {
            const int user = cJSON_IsTrue(cJSON_GetArrayItem(sg, 0));
            const char *t = cJSON_GetArrayItem(sg, 1)->valuestring;
            char *piece = NULL;
            size_t pl = strlen(t);
            if (user) TEST_EQ_INT(llm_chat_escape_text(tok, t, strlen(t), &piece, &pl, &err), NVL_OK);
            char *nt = nvl_realloc(text, tl + pl + 1);
            if (nt) {
                memcpy(nt + tl, user ? piece : t, pl);
                tl += pl;
                nt[tl] = 0;
                text = nt;
            }
            nvl_free(piece);
        }
        const int image = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "image"));
        llm_media_layout media = {.kind = LLM_MEDIA_IMAGE, .n_tiles = 1};
        llm_prompt p;
        nvl_status st = llm_chat_tokenize(tok, text, tl, &media, image, 4, &p, &err);
        const char *q = cJSON_GetArrayItem(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(c, "segments"), 1), 1)->valuestring;
        TEST_CHECK(st == NVL_OK, "%s, '%s': %s", name, q, st == NVL_OK ? "" : err.msg);
        if (st == NVL_OK) {
            const cJSON *rids = cJSON_GetObjectItemCaseSensitive(c, "ids");
            int same = p.n == cJSON_GetArraySize(rids);
            for (int64_t i = 0; same && i < p.n; i++) same = p.ids[i] == (int32_t)cJSON_GetArrayItem(rids, (int)i)->valuedouble;
            TEST_CHECK(same, "%s, '%s': %lld ids, tokenizers %d (or different ids)", name, q, (long long)p.n, cJSON_GetArraySize(rids));
            TEST_EQ_INT(p.n_spans, image);
            llm_prompt_free(&p);
        }
        nvl_free(text);
        llm_tokenizer_free(tok);
        n++;
    }
    TEST_CHECK(n >= 11, "only %d plain-text cases ran", n);
    if (n_skipped) fprintf(stderr, "skipped %d plain-text cases: ../shared/tokenizers absent\n", n_skipped);
    cJSON_Delete(root);
    /* without escaping, typed markers would be markers: the hole this closes */
    llm_tokenizer *tok = NULL;
    if (llm_tokenizer_load(&tok, test_data_path("vl_tiny"), &err) == NVL_OK) {
        const char *raw = "<SPECIAL_11>User\n<image>\nWhat is <image>?";
        llm_media_layout media = {.kind = LLM_MEDIA_IMAGE, .n_tiles = 1};
        llm_prompt p;
        TEST_EQ_INT(llm_chat_tokenize(tok, raw, strlen(raw), &media, 1, 4, &p, &err), NVL_ERR_INVALID_ARG);
        TEST_CONTAINS(err.msg, "more media markers than the 1 media given");
        char *esc = NULL;
        size_t el = 0;
        TEST_EQ_INT(llm_chat_escape_text(tok, "What is <image>?", 16, &esc, &el, &err), NVL_OK);
        char buf[256];
        snprintf(buf, sizeof buf, "<SPECIAL_11>User\n<image>\n%s", esc ? esc : "");
        TEST_EQ_INT(llm_chat_tokenize(tok, buf, strlen(buf), &media, 1, 4, &p, &err), NVL_OK);
        llm_prompt_free(&p);
        nvl_free(esc);
        /* whole messages: an earlier answer keeps what follows its last </think> (its reasoning
           dropped, as the template does), its typed <SPECIAL_12> stays text */
        llm_chat_part up = {LLM_PART_TEXT, "Hi <img>", 0}, up2 = up, ap[2] = {{LLM_PART_TEXT, "<think>secret</think>x", 0},
                                                                 {LLM_PART_TEXT, "<think>more</think>\nAnswer <SPECIAL_12>", 0}};
        llm_chat_message msgs[3] = {{"user", &up, 1}, {"assistant", ap, 2}, {"user", &up2, 1}}; /* escaped in place: one part each */
        char **owned = NULL;
        int n_owned = 0;
        TEST_EQ_INT(llm_chat_escape_messages(tok, msgs, 3, &owned, &n_owned, &err), NVL_OK);
        char *r = NULL, *shown = NULL;
        size_t rl = 0, sl = 0;
        llm_chat_options o = llm_chat_options_default();
        TEST_EQ_INT(llm_chat_render(msgs, 3, &o, &r, &rl, &err), NVL_OK);
        TEST_EQ_INT(llm_chat_unescape(r ? r : "", r ? rl : 0, &shown, &sl, &err), NVL_OK);
        if (shown)
            TEST_EQ_STR(shown, "<s><SPECIAL_10>System\n\n<SPECIAL_11>User\nHi <img>\n<SPECIAL_11>Assistant\nAnswer <SPECIAL_12>\n"
                               "<SPECIAL_12>\n<SPECIAL_11>User\nHi <img>\n<SPECIAL_11>Assistant\n<think>\n");
        int32_t *ids = NULL;
        int64_t n_ids = 0;
        TEST_EQ_INT(llm_chat_encode_rendered(tok, r ? r : "", r ? rl : 0, &ids, &n_ids, &err), NVL_OK);
        int n12 = 0, n_img = 0;
        for (int64_t i = 0; i < n_ids; i++) n12 += ids[i] == 12, n_img += ids[i] == 19;
        TEST_EQ_INT(n12, 1); /* the template's end of turn only */
        TEST_EQ_INT(n_img, 0);
        nvl_free(ids);
        nvl_free(r);
        nvl_free(shown);
        for (int i = 0; i < n_owned; i++) nvl_free(owned[i]);
        nvl_free(owned);
        /* an earlier answer holding a NUL byte (a byte-level token decodes to it; ask --chat sends
           the answer back with its length) goes back whole: its ids equal those of the same
           answer with 0x01 in its place, but for that one byte's token (it was cut at the NUL) */
        int32_t *idn[2] = {NULL, NULL};
        int64_t nn[2] = {0, 0};
        for (int v = 0; v < 2; v++) {
            llm_chat_part q = {LLM_PART_TEXT, "Hi", 0}, a = {LLM_PART_TEXT, v ? "xy\001zw" : "xy\000zw", 5}, q2 = q;
            llm_chat_message cv[3] = {{"user", &q, 1}, {"assistant", &a, 1}, {"user", &q2, 1}};
            owned = NULL;
            n_owned = 0;
            TEST_EQ_INT(llm_chat_escape_messages(tok, cv, 3, &owned, &n_owned, &err), NVL_OK);
            r = NULL;
            TEST_EQ_INT(llm_chat_render(cv, 3, &o, &r, &rl, &err), NVL_OK);
            TEST_EQ_INT(llm_chat_encode_rendered(tok, r ? r : "", r ? rl : 0, &idn[v], &nn[v], &err), NVL_OK);
            nvl_free(r);
            for (int i = 0; i < n_owned; i++) nvl_free(owned[i]);
            nvl_free(owned);
        }
        int diff = 0;
        for (int64_t i = 0; nn[0] == nn[1] && i < nn[0]; i++) diff += idn[0][i] != idn[1][i];
        TEST_CHECK(nn[0] == nn[1] && diff == 1, "answer with a NUL: %lld ids against %lld, %d differ", (long long)nn[0],
                   (long long)nn[1], diff);
        nvl_free(idn[0]);
        nvl_free(idn[1]);
        llm_tokenizer_free(tok);
    }
}

int main(void) {
    nvl_err err = {0};
    if (llm_tokenizer_load(&g_tok, test_data_path("tokenizer/nemotron_tiny"), &err) != NVL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int64_t live0 = nvl_alloc_count();
    test_goldens();
    test_media_expansion();
    test_plain_text();
    TEST_EQ_INT(nvl_alloc_count(), live0);
    llm_tokenizer_free(g_tok);
    return test_report();
}
