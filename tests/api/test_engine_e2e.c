/* The engine end to end on a two-page PDF question and a video question with EVS off and at
 * q = 0.5, against the composed reference (tests/reference/gen_e2e_media_goldens.py: pdftocairo
 * pages / PyAV frames -> torch antialiased bicubic tiles -> RadioModel -> Omni pixel shuffle +
 * projector (+ compute_retention_mask) -> apply_chat_template + vLLM-style expansion ->
 * NemotronHForCausalLM). Prompt ids (with every page's and frame's <image> run, the frame
 * separators and timestamps) must be equal, the first-token logits close, the 8 greedy ids equal.
 * Tolerance as test_engine (f32 on both sides): atol 1e-4, rtol 1e-3, NMSE <= 1e-8; the PDF
 * pages come from two renderers (poppler-glib + cairo here, pdftocairo there); on this file
 * they were compared by hand and are pixel-identical (`nanovl render` vs `pdftocairo -png
 * -scale-to 2048`, max difference 0): a renderer difference would show here as different
 * logits.
 * A long case (tests/reference/gen_e2e_long_golden.py): a ~900-token system message before the
 * same PDF question, so that the pages' vision rows lie in the fourth and fifth prefill chunks
 * of 256 tokens (the engine gathers each chunk's rows when it feeds it): same checks.
 * The video cases run again with a ring of 3 decoded frames ahead of the vision stage
 * (api_engine_opts.video_ahead), so that the 4 frames wrap around it while RADIO runs, and the
 * PDF and a video case once more without media threads (media_threads -1: everything inline). */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "base/alloc.h"
#include "base/safetensors.h"
#include "test_util.h"
#include "gpu_skip.h"

static const char *variant = ""; /* the engine's options, in messages */

static void check_case(api_engine *e, nvl_checkpoint *g, const char *tag, const char *file, const char *question, double evs) {
    nvl_err err = {0};
    char name[96];
    nvl_tensor pid, fl, gi, counts;
    snprintf(name, sizeof name, "%sprompt_ids", tag);
    if (nvl_checkpoint_get(g, name, &pid, &err) != NVL_OK) {
        TEST_CHECK(0, "%s", err.msg);
        return;
    }
    snprintf(name, sizeof name, "%sfirst_logits", tag);
    nvl_checkpoint_get(g, name, &fl, &err);
    snprintf(name, sizeof name, "%sgreedy_ids", tag);
    nvl_checkpoint_get(g, name, &gi, &err);
    snprintf(name, sizeof name, "%s%s", tag, evs < 0 ? "image_tokens" : "frame_tokens");
    nvl_checkpoint_get(g, name, &counts, &err);
    api_ask_params p = api_ask_params_default();
    p.max_tokens = 8;
    p.no_cache = 1;
    if (evs >= 0) p.evs = evs;
    api_ask_result r;
    const char *files[] = {file};
    nvl_status st = api_engine_ask(e, files, 1, question, &p, NULL, NULL, &r, &err);
    TEST_CHECK(st == NVL_OK, "%s%s: %s", tag, variant, st == NVL_OK ? "ok" : err.msg);
    if (st != NVL_OK) return;
    const int64_t *ref = pid.data;
    int same = r.n_prompt == nvl_tensor_numel(&pid);
    int64_t first_diff = -1;
    for (int64_t i = 0; same && i < r.n_prompt; i++)
        if (r.prompt_ids[i] != ref[i]) {
            same = 0;
            first_diff = i;
        }
    TEST_CHECK(same, "%s prompt ids equal the reference (%lld vs %lld tokens, first difference at %lld)", tag,
               (long long)r.n_prompt, (long long)nvl_tensor_numel(&pid), (long long)first_diff);
    /* per page / per frame <image> counts */
    const int64_t *cnt = counts.data;
    if (evs < 0) {
        TEST_EQ_INT(r.n_media, nvl_tensor_numel(&counts));
        for (int i = 0; i < r.n_media && i < nvl_tensor_numel(&counts); i++) {
            TEST_EQ_INT(r.media[i].image_tokens, cnt[i]);
            TEST_EQ_INT(r.media[i].page, i + 1);
        }
    } else {
        TEST_EQ_INT(r.n_media, 1);
        if (r.n_media == 1) {
            TEST_EQ_INT(r.media[0].n_frames, nvl_tensor_numel(&counts));
            for (int f = 0; f < r.media[0].n_frames && f < nvl_tensor_numel(&counts); f++)
                TEST_EQ_INT(r.media[0].frame_tokens[f], cnt[f]);
        }
    }
    char what[96];
    snprintf(what, sizeof what, "%s first-token logits vs composed reference", tag);
    if (r.first_logits) test_compare_f32(what, r.first_logits, fl.data, (size_t)api_engine_n_vocab(e), 1e-4, 1e-3, 1e-8);
    int gsame = r.n_ids == nvl_tensor_numel(&gi);
    for (int64_t i = 0; gsame && i < r.n_ids; i++) gsame = r.ids[i] == ((const int64_t *)gi.data)[i];
    TEST_CHECK(gsame, "%s greedy answer equals the reference", tag);
    api_ask_result_free(&r);
}

/* The long golden: a system message of 30 clauses, then the two pages and the PDF question. */
static void check_long(api_engine *e, const char *pdf) {
    nvl_err err = {0};
    nvl_checkpoint *g = NULL;
    if (nvl_checkpoint_open(&g, test_data_path("vl_tiny_long_golden.safetensors"), &err) != NVL_OK) {
        TEST_CHECK(0, "%s", err.msg);
        return;
    }
    char sys_text[4096];
    size_t o = 0;
    for (int k = 1; k <= 30; k++)
        o += (size_t)snprintf(sys_text + o, sizeof sys_text - o, "%sClause %d: the supplier delivers item %d within %d days.",
                              k > 1 ? " " : "", k, k, k + 3);
    api_part sp = {.kind = API_PART_TEXT, .text = sys_text};
    api_part up[3] = {{.kind = API_PART_MEDIA, .media = {.path = pdf, .pages = "1"}},
                      {.kind = API_PART_MEDIA, .media = {.path = pdf, .pages = "2"}},
                      {.kind = API_PART_TEXT, .text = "What is written on these pages?"}};
    api_message msgs[2] = {{"system", &sp, 1}, {"user", up, 3}};
    api_ask_params p = api_ask_params_default();
    p.max_tokens = 8;
    p.no_cache = 1;
    api_ask_result r;
    nvl_tensor pid, fl, gi;
    nvl_checkpoint_get(g, "long_prompt_ids", &pid, &err);
    nvl_checkpoint_get(g, "long_first_logits", &fl, &err);
    nvl_checkpoint_get(g, "long_greedy_ids", &gi, &err);
    nvl_status st = api_engine_run(e, msgs, 2, &p, NULL, &r, &err);
    TEST_CHECK(st == NVL_OK, "long: %s", st == NVL_OK ? "ok" : err.msg);
    if (st == NVL_OK) {
        const int64_t *ref = pid.data;
        int same = r.n_prompt == nvl_tensor_numel(&pid);
        for (int64_t i = 0; same && i < r.n_prompt; i++) same = r.prompt_ids[i] == ref[i];
        TEST_CHECK(same, "long prompt ids equal the reference (%lld vs %lld tokens)", (long long)r.n_prompt,
                   (long long)nvl_tensor_numel(&pid));
        TEST_CHECK(r.n_prompt > 768 && r.n_image_tokens > 0, "long: vision rows past the third chunk (%lld tokens)",
                   (long long)r.n_prompt);
        test_compare_f32("long first-token logits vs composed reference", r.first_logits, fl.data,
                         (size_t)api_engine_n_vocab(e), 1e-4, 1e-3, 1e-8);
        int gsame = r.n_ids == nvl_tensor_numel(&gi);
        for (int64_t i = 0; gsame && i < r.n_ids; i++) gsame = r.ids[i] == ((const int64_t *)gi.data)[i];
        TEST_CHECK(gsame, "long greedy answer equals the reference");
        api_ask_result_free(&r);
    }
    nvl_checkpoint_close(g);
}

int main(void) {
    test_skip_without_device();
    nvl_err err = {0};
    nvl_checkpoint *g = NULL;
    if (nvl_checkpoint_open(&g, test_data_path("vl_tiny_media_golden.safetensors"), &err) != NVL_OK) test_skip("%s", err.msg);
    int64_t live0 = nvl_alloc_count();
    api_engine *e = NULL;
    TEST_EQ_INT(api_engine_open(&e, test_data_path("vl_tiny"), &err), NVL_OK);
    if (e) {
        char pdf[1024], mp4[1024];
        snprintf(pdf, sizeof pdf, "%s", test_data_path("media/made/two_pages.pdf"));
        snprintf(mp4, sizeof mp4, "%s", test_data_path("media/made/clip_2s.mp4"));
        check_case(e, g, "pdf_", pdf, "What is written on these pages?", -1);
        check_case(e, g, "video_q0_", mp4, "What happens in this video?", 0.0);
        check_case(e, g, "video_q50_", mp4, "What happens in this video?", 0.5);
        check_long(e, pdf);
        api_engine_close(e);
        e = NULL;
        api_engine_opts o = api_engine_opts_default();
        o.max_batch = 1;
        o.video_ahead = 3;
        TEST_EQ_INT(api_engine_open_with(&e, test_data_path("vl_tiny"), &o, &err), NVL_OK);
        if (e) {
            variant = " (video_ahead 3)";
            check_case(e, g, "video_q0_", mp4, "What happens in this video?", 0.0);
            check_case(e, g, "video_q50_", mp4, "What happens in this video?", 0.5);
            api_engine_close(e);
            e = NULL;
        }
        o.media_threads = -1; /* no media threads: files read and frames decoded on the stepping thread */
        TEST_EQ_INT(api_engine_open_with(&e, test_data_path("vl_tiny"), &o, &err), NVL_OK);
        if (e) {
            variant = " (no media threads, video_ahead 3)";
            check_case(e, g, "pdf_", pdf, "What is written on these pages?", -1);
            check_case(e, g, "video_q50_", mp4, "What happens in this video?", 0.5);
            api_engine_close(e);
        }
        o.media_threads = 9;
        TEST_EQ_INT(api_engine_open_with(&e, test_data_path("vl_tiny"), &o, &err), NVL_ERR_INVALID_ARG);
    }
    TEST_EQ_INT(nvl_alloc_count(), live0);
    nvl_checkpoint_close(g);
    return test_report();
}
