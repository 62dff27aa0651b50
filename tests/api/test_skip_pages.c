/* api_ask_params.skip_bad_pages on the tiny f32 VL checkpoint and tests/data's two-page PDF,
 * pages rendered in this binary started again (main calls media_pdf_worker_main) with the
 * renderer's test knobs making one page fail:
 *   1. a page that fails when rendered (its pixels trickle past a 1 s bound: NVL_ERR_TIMEOUT in
 *      the vision stage) fails the request without the option; with it the answer is the one of
 *      the other page asked alone: the same prompt ids and greedy ids (the page is out of the
 *      prompt, not an empty image), the page listed in res.skipped (page, status, message naming
 *      the file and the page), said once through on_notice, and only the page read in res.media;
 *   2. the state it keeps is the other page's: asking about that page alone reuses it, and so does
 *      a later question about the whole document with the option (the page remembered as bad, not
 *      rendered again); without the option the page is rendered again and fails;
 *   3. with every selected page of a document failing, the request fails with the page's error
 *      (one document of two: still fails), and with the number of the others when several did;
 *   4. a page whose size cannot be read (the renderer crashes on it: NVL_ERR_FORMAT at the media
 *      stage) is left out the same way;
 *   5. two such requests submitted together: the second waits for the first, leaves the page out
 *      as the first did, and reuses its state (vision and prefill once); both answer as the page
 *      alone;
 *   6. the result's JSON lists the page under "skipped_pages"; nothing leaks;
 *   7. tiles lowered to fit both pages are planned again without the one left out (the answer is
 *      still the other page's alone); the left-out page's rendering time is counted; a kept
 *      prefix holding the page read wins over the memory of it; a remembered message names this
 *      request's label; a request with a document left without pages fails at once.
 * Bounds: ids exactly (the same prompt through the same steps). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "base/alloc.h"
#include "cJSON.h"
#include "media.h"
#include "test_util.h"

static int g_notices, g_vision; /* (ask's) notices, and vision progress events: 0 when vision did not run */
static char g_notice[2048];

static void on_progress(const api_progress *pr, void *user) {
    (void)user;
    g_vision += pr->stage == API_STAGE_VISION;
}

static void on_notice(const char *msg, void *user) {
    (void)user;
    g_notices++;
    snprintf(g_notice, sizeof g_notice, "%s", msg);
}

static char g_pdf[1024];

/* Renderers with the knobs now in the environment, bounded by timeout_s once started: a renderer's
 * start counts in the bound, so one is started (and a spare after it) under a 60 s bound first,
 * and a loaded machine's slow start does not pass for the page's trouble. */
static void set_sandbox(double timeout_s) {
    media_pdf_sandbox sb = media_pdf_sandbox_default();
    sb.exe = "/proc/self/exe";
    sb.timeout_s = 60;
    sb.max_mb = 0;
    sb.strict = 1;
    media_pdf_set_sandbox(&sb);
    media_pdf_sandbox_end_spare(); /* the next renderer starts with the knobs in its environment */
    media_pdf *warm = NULL;
    nvl_err err = {0};
    TEST_CHECK(media_pdf_open(&warm, g_pdf, NULL, NULL, &err) == NVL_OK, "warm-up open: %s", err.msg);
    media_pdf_close(warm); /* (the spare it started stays: the same executable) */
    for (int i = 0; i < 300 && media_pdf_renderers() < 1; i++) nanosleep(&(struct timespec){0, 10000000L}, NULL);
    sb.timeout_s = timeout_s;
    media_pdf_set_sandbox(&sb);
}

static int same_ids(const int32_t *a, int64_t na, const int32_t *b, int64_t nb) {
    if (na != nb) return 0;
    for (int64_t i = 0; i < na; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static int64_t g_max_context; /* ask's max_context (0: the checkpoint's) */

/* One question about the PDF (pages: NULL all). */
static nvl_status ask(api_engine *e, const char *pages, int skip, int no_cache, api_ask_result *r, nvl_err *err) {
    api_part parts[] = {{API_PART_MEDIA, .media = {.path = g_pdf, .pages = pages}}, {API_PART_TEXT, .text = "What is written?"}};
    api_message msg = {"user", parts, 2};
    api_ask_params p = api_ask_params_default();
    p.max_tokens = 6;
    p.skip_bad_pages = skip;
    p.no_cache = no_cache;
    p.max_context = g_max_context;
    api_callbacks cb = {.on_notice = on_notice, .on_progress = on_progress};
    g_notices = g_vision = 0;
    g_notice[0] = 0;
    memset(r, 0, sizeof *r);
    return api_engine_run(e, &msg, 1, &p, &cb, r, err);
}

/* r answers as ref: the same prompt and the same greedy ids. */
static int64_t g_vocab;

static void check_as(const char *what, const api_ask_result *r, const api_ask_result *ref) {
    if (r->first_logits && ref->first_logits) /* (test_scheduler's f32 bound: other batch neighbours) */
        test_compare_f32(what, r->first_logits, ref->first_logits, (size_t)g_vocab, 1e-5, 1e-4, 1e-10);
    TEST_CHECK(same_ids(r->prompt_ids, r->n_prompt, ref->prompt_ids, ref->n_prompt), "%s: prompt ids differ (%lld vs %lld)",
               what, (long long)r->n_prompt, (long long)ref->n_prompt);
    TEST_CHECK(same_ids(r->ids, r->n_ids, ref->ids, ref->n_ids), "%s: greedy ids differ", what);
    TEST_CHECK(r->n_media == 1 && ref->n_media == 1 && r->media[0].page == ref->media[0].page,
               "%s: media records: %d, page %d", what, r->n_media, r->n_media ? r->media[0].page : -1);
}

typedef struct track {
    api_engine *e;
    int done, submitted, n_vision;
    nvl_status st;
    const api_message *then_msg; /* submitted as request 1 at this request's first vision event */
    const api_ask_params *then_p;
} track;
static track g_track[2];
static api_ask_result g_two[2];

static void track_done(nvl_status st, const char *msg, void *user) {
    (void)msg;
    track *t = user;
    t->done = 1;
    t->st = st;
}

static void track_progress(const api_progress *pr, void *user) {
    track *t = user;
    if (pr->stage != API_STAGE_VISION) return;
    t->n_vision++;
    if (t->then_msg) { /* (from the step's callback: taken at the next turn) */
        api_callbacks cb = {.on_progress = track_progress, .on_done = track_done, .user = &g_track[1]};
        nvl_err err = {0};
        TEST_EQ_INT(api_engine_submit(t->e, t->then_msg, 1, t->then_p, &cb, &g_two[1], NULL, &err), NVL_OK);
        g_track[1].submitted = 1;
        t->then_msg = NULL;
    }
}

int main(int argc, char **argv) {
    media_pdf_worker_main(argc, argv); /* the renderer (this binary started again) */
    snprintf(g_pdf, sizeof g_pdf, "%s", test_data_path("media/made/two_pages.pdf"));
    const int64_t live0 = nvl_alloc_count();
    nvl_err err = {0};
    api_engine *e = NULL;
    api_engine_opts o = api_engine_opts_default();
    o.max_batch = 4;
    if (api_engine_open_with(&e, test_data_path("vl_tiny"), &o, &err) != NVL_OK) test_skip("%s", err.msg);
    set_sandbox(60);
    g_vocab = api_engine_n_vocab(e);
    api_ask_result r1, r2, r;
    TEST_EQ_INT(ask(e, "1", 0, 1, &r1, &err), NVL_OK);
    TEST_EQ_INT(ask(e, "2", 0, 1, &r2, &err), NVL_OK);
    /* (the pages have one size: one prompt; their logits tell them apart) */
    int differ = 0;
    for (int64_t i = 0; i < api_engine_n_vocab(e); i++) differ |= fabsf(r1.first_logits[i] - r2.first_logits[i]) > 1e-3f;
    TEST_CHECK(differ, "the two pages give other logits");

    /* 1. page 2 fails in the vision stage (its pixels trickle past the 1 s bound) */
    setenv("NVL_TEST_RENDERER_TRICKLE_PAGE", "2", 1);
    set_sandbox(1.0);
    TEST_EQ_INT(ask(e, NULL, 0, 1, &r, &err), NVL_ERR_TIMEOUT);
    TEST_CONTAINS(err.msg, "two_pages.pdf: rendering page 2 took longer than 1 s");
    api_ask_result_free(&r);
    /* a context that holds page 1 alone at 12 tiles, not both pages: the tiles are lowered for the
       two pages, then planned again without page 2 (back to 12: page 1's vision runs again), so
       the answer is still page 1's alone */
    g_max_context = r1.n_prompt + 6;
    nvl_status st = ask(e, NULL, 1, 1, &r, &err);
    TEST_CHECK(st == NVL_OK && r.max_tiles == 12, "page 2 left out of a tight context: %s (%s), %d tiles",
               nvl_status_name(st), err.msg, r.max_tiles);
    if (st == NVL_OK) check_as("page 2 left out of a tight context", &r, &r1);
    TEST_CHECK(r.notice && strstr(r.notice, "using at most") && strstr(r.notice, "with pages left out the media fit at 12 "
                                                                                 "tile(s) per image (not "),
               "notices: %s", r.notice ? r.notice : "(none)");
    TEST_EQ_INT(g_notices, 3);
    api_ask_result_free(&r);
    g_max_context = 0;
    api_engine_forget(e);
    st = ask(e, NULL, 1, 0, &r, &err);
    TEST_CHECK(st == NVL_OK, "page 2 left out: %s (%s)", nvl_status_name(st), err.msg);
    TEST_CHECK(r.t_media >= 1.0, "its rendering time counted: %.3f s (1 s bound)", r.t_media);
    if (st == NVL_OK) {
        check_as("page 2 left out in the vision stage", &r, &r1);
        TEST_CHECK(r.n_skipped == 1 && r.skipped[0].page == 2 && r.skipped[0].st == NVL_ERR_TIMEOUT,
                   "skipped: %d (page %d, %s)", r.n_skipped, r.n_skipped ? r.skipped[0].page : 0,
                   r.n_skipped ? nvl_status_name(r.skipped[0].st) : "");
        if (r.n_skipped) {
            TEST_CHECK(!strcmp(r.skipped[0].name, g_pdf), "skipped name %s", r.skipped[0].name);
            TEST_CONTAINS(r.skipped[0].message, "two_pages.pdf: rendering page 2 took longer than 1 s");
        }
        TEST_EQ_INT(g_notices, 1);
        TEST_CONTAINS(g_notice, "page left out: ");
        TEST_CONTAINS(g_notice, "rendering page 2 took longer");
        TEST_CHECK(r.notice && strstr(r.notice, "page left out: "), "res.notice: %s", r.notice ? r.notice : "(none)");
        TEST_CHECK(r.n_planned > r.n_prompt, "planned %lld (both pages) > prompt %lld", (long long)r.n_planned,
                   (long long)r.n_prompt);
        /* 6. its JSON */
        cJSON *j = api_result_to_json(&r);
        const cJSON *sk = cJSON_GetObjectItemCaseSensitive(j, "skipped_pages");
        const cJSON *k0 = cJSON_GetArrayItem(sk, 0);
        TEST_CHECK(cJSON_GetArraySize(sk) == 1 && cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(k0, "page")) == 2 &&
                       !strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(k0, "code")), api_status_code(NVL_ERR_TIMEOUT)),
                   "skipped_pages in the JSON");
        cJSON_Delete(j);
    }
    api_ask_result_free(&r);
    /* 2. the prefix it kept is page 1's */
    TEST_EQ_INT(ask(e, "1", 0, 0, &r, &err), NVL_OK);
    TEST_CHECK(r.n_cached > 0, "page 1 alone after page 2 was left out reuses the kept state (%lld)", (long long)r.n_cached);
    check_as("page 1 alone, from the kept state", &r, &r1);
    api_ask_result_free(&r);
    /* and the next question about the whole document with the option leaves page 2 out without
       rendering it (remembered): it reuses that state too, and says the page was left out */
    st = ask(e, NULL, 1, 0, &r, &err);
    TEST_CHECK(st == NVL_OK && r.n_cached > 0, "a second question leaving page 2 out reuses the state: %s, %lld cached",
               nvl_status_name(st), (long long)r.n_cached);
    TEST_CHECK(g_vision == 0, "the second question ran no vision (%d vision events)", g_vision);
    check_as("a second question leaving page 2 out", &r, &r1);
    TEST_CHECK(r.n_skipped == 1 && r.skipped[0].page == 2 && r.skipped[0].st == NVL_ERR_TIMEOUT &&
                   strstr(r.skipped[0].message, "rendering page 2 took longer"),
               "remembered page: %d", r.n_skipped);
    TEST_EQ_INT(g_notices, 1);
    api_ask_result_free(&r);
    /* without the option the page is rendered again (and fails) */
    TEST_EQ_INT(ask(e, NULL, 0, 0, &r, &err), NVL_ERR_TIMEOUT);
    api_ask_result_free(&r);
    /* the page renders again (its trouble was passing): once a kept prefix holds both pages read,
       a question with the option takes it, the remembered page notwithstanding */
    unsetenv("NVL_TEST_RENDERER_TRICKLE_PAGE");
    set_sandbox(60);
    TEST_EQ_INT(ask(e, NULL, 0, 0, &r, &err), NVL_OK);
    api_ask_result_free(&r);
    st = ask(e, NULL, 1, 0, &r, &err);
    TEST_CHECK(st == NVL_OK && r.n_skipped == 0 && r.n_media == 2 && r.n_cached > 0,
               "the kept prefix with both pages wins over the memory: %s, %d skipped, %d media, %lld cached",
               nvl_status_name(st), r.n_skipped, r.n_media, (long long)r.n_cached);
    api_ask_result_free(&r);
    /* and without the kept state, page 1 left out: as page 2 alone (the knob changes what the file
       does: what was remembered about it is forgotten) */
    api_engine_forget(e);
    setenv("NVL_TEST_RENDERER_TRICKLE_PAGE", "1", 1);
    set_sandbox(1.0);
    TEST_EQ_INT(ask(e, NULL, 1, 1, &r, &err), NVL_OK);
    check_as("page 1 left out", &r, &r2);
    TEST_CHECK(r.n_skipped == 1 && r.skipped[0].page == 1, "skipped page 1");
    api_ask_result_free(&r);

    /* 3. no page of the document read: the page's error, as without the option */
    TEST_EQ_INT(ask(e, "1", 1, 1, &r, &err), NVL_ERR_TIMEOUT);
    TEST_CONTAINS(err.msg, "two_pages.pdf: rendering page 1 took longer than 1 s");
    TEST_CHECK(!strstr(err.msg, "other page"), "one page selected: %s", err.msg);
    TEST_EQ_INT(g_notices, 0); /* no "left out" for a page whose error ends the request */
    api_ask_result_free(&r);
    TEST_EQ_INT(ask(e, "1,1", 1, 1, &r, &err), NVL_ERR_TIMEOUT); /* (duplicates removed: still one) */
    api_ask_result_free(&r);
    { /* one document of two unreadable: the request fails naming it */
        api_part parts[] = {{API_PART_MEDIA, .media = {.path = g_pdf, .pages = "2"}},
                            {API_PART_MEDIA, .media = {.path = g_pdf, .pages = "1", .name = "second"}},
                            {API_PART_TEXT, .text = "Compare."}};
        api_message msg = {"user", parts, 3};
        api_ask_params p = api_ask_params_default();
        p.max_tokens = 4;
        p.skip_bad_pages = 1;
        memset(&r, 0, sizeof r);
        TEST_EQ_INT(api_engine_run(e, &msg, 1, &p, NULL, &r, &err), NVL_ERR_TIMEOUT);
        /* (page 1 remembered from the request above, under another label: its message names this one's) */
        TEST_CONTAINS(err.msg, "second: rendering page 1 took longer than 1 s");
        api_ask_result_free(&r);
    }
    { /* the document with no page read comes first: the request fails as soon as its page is left
         out, before the other document's page is embedded (no vision event) */
        api_engine_forget(e);
        api_part parts[] = {{API_PART_MEDIA, .media = {.path = g_pdf, .pages = "1"}},
                            {API_PART_MEDIA, .media = {.path = g_pdf, .pages = "2"}},
                            {API_PART_TEXT, .text = "Compare."}};
        api_message msg = {"user", parts, 3};
        api_ask_params p = api_ask_params_default();
        p.max_tokens = 4;
        p.skip_bad_pages = 1;
        api_callbacks cb = {.on_progress = on_progress};
        g_vision = 0;
        memset(&r, 0, sizeof r);
        TEST_EQ_INT(api_engine_run(e, &msg, 1, &p, &cb, &r, &err), NVL_ERR_TIMEOUT);
        TEST_CONTAINS(err.msg, "two_pages.pdf: rendering page 1 took longer than 1 s");
        TEST_EQ_INT(g_vision, 0);
        api_ask_result_free(&r);
    }
    unsetenv("NVL_TEST_RENDERER_TRICKLE_PAGE");

    /* 4. the renderer crashes on page 2 as its size is read (at the media stage) */
    api_engine_forget(e);
    setenv("NVL_TEST_RENDERER_ABORT_PAGE", "2", 1);
    set_sandbox(60);
    TEST_EQ_INT(ask(e, NULL, 0, 1, &r, &err), NVL_ERR_FORMAT);
    TEST_CONTAINS(err.msg, "page 2");
    api_ask_result_free(&r);
    st = ask(e, NULL, 1, 1, &r, &err);
    TEST_CHECK(st == NVL_OK, "page 2 left out at the media stage: %s (%s)", nvl_status_name(st), err.msg);
    if (st == NVL_OK) {
        check_as("page 2 left out at the media stage", &r, &r1);
        TEST_CHECK(r.n_skipped == 1 && r.skipped[0].page == 2 && r.skipped[0].st == NVL_ERR_FORMAT, "skipped: %d", r.n_skipped);
        TEST_EQ_INT(g_notices, 1);
        TEST_EQ_INT(r.n_planned, r.n_prompt); /* left out before the budget was planned */
    }
    api_ask_result_free(&r);
    setenv("NVL_TEST_RENDERER_ABORT_PAGE", "1", 1);
    set_sandbox(60);
    TEST_EQ_INT(ask(e, "1", 1, 1, &r, &err), NVL_ERR_FORMAT);
    TEST_CONTAINS(err.msg, "page 1");
    TEST_EQ_INT(g_notices, 0);
    api_ask_result_free(&r);
    unsetenv("NVL_TEST_RENDERER_ABORT_PAGE");

    /* 5. two requests about the document: the second submitted at the first's first vision event
       (page 1 embedded, page 2 still trickling), so it finds the first in the vision stage and
       waits for it; the first then leaves page 2 out, the second does the same without rendering
       it, goes on waiting, and reuses the first's state: no vision of its own */
    setenv("NVL_TEST_RENDERER_TRICKLE_PAGE", "2", 1);
    set_sandbox(1.0);
    api_engine_forget(e);
    {
        api_part parts[] = {{API_PART_MEDIA, .media = {.path = g_pdf}}, {API_PART_TEXT, .text = "What is written?"}};
        api_message msg = {"user", parts, 2};
        api_ask_params p = api_ask_params_default();
        p.max_tokens = 6;
        p.skip_bad_pages = 1;
        memset(g_two, 0, sizeof g_two);
        memset(g_track, 0, sizeof g_track);
        g_track[0].e = g_track[1].e = e;
        g_track[0].then_msg = &msg;
        g_track[0].then_p = &p;
        api_callbacks cb = {.on_progress = track_progress, .on_done = track_done, .user = &g_track[0]};
        TEST_EQ_INT(api_engine_submit(e, &msg, 1, &p, &cb, &g_two[0], NULL, &err), NVL_OK);
        for (int guard = 0; api_engine_step(e) > 0 && guard < 100000; guard++) {}
        TEST_CHECK(g_track[1].submitted, "the second request was submitted in the first's vision stage");
        TEST_CHECK(g_two[1].n_cached > 0 && g_two[1].t_wait > 0 && g_track[1].n_vision == 0,
                   "the second waited (%.3f s), reused the first's state (%lld cached) and ran no vision (%d events)",
                   g_two[1].t_wait, (long long)g_two[1].n_cached, g_track[1].n_vision);
        for (int i = 0; i < 2; i++) {
            TEST_CHECK(g_track[i].done && g_track[i].st == NVL_OK, "request %d: %s", i, nvl_status_name(g_track[i].st));
            if (g_track[i].st == NVL_OK) check_as("together", &g_two[i], &r1);
            TEST_EQ_INT(g_two[i].n_skipped, 1);
            api_ask_result_free(&g_two[i]);
        }
    }
    unsetenv("NVL_TEST_RENDERER_TRICKLE_PAGE");

    api_ask_result_free(&r1);
    api_ask_result_free(&r2);
    api_engine_close(e);
    media_pdf_set_sandbox(&(media_pdf_sandbox){0}); /* ends the spare */
    TEST_EQ_INT(nvl_alloc_count(), live0);
    return test_report();
}
