/* Allocation failure anywhere in a whole request (issue 20: the error paths no test reached).
 *
 * One clean run of "open the tiny VL checkpoint, ask about a file, close" (an image, a two-page
 * PDF, a video) counts its N
 * allocations (nvl_alloc_total). Then the same run is repeated with nvl_alloc_fail_after(k): the
 * first k allocations succeed and every later one fails, for k spread over [0, N) (about 80
 * values: every allocation up to 30, then a stride); and again failing allocation k alone
 * (nvl_alloc_fail_nth), where a missing NULL check cannot hide behind the next failure. Each run
 * must end cleanly: api_engine_open or
 * api_engine_ask returns an error with a message (or, where the failing allocations were not
 * needed, succeeds), nothing crashes, and after api_engine_close every block is freed (the live
 * count is back where it started: a block a failure path forgets is a leak even in a release
 * build; on an open engine, after api_engine_forget drops the kept prompt prefix). Under AddressSanitizer the same runs also check what is read and written on each path.
 * A second sweep does the same for a text-only question on an open engine (the engine's own
 * allocations after open: tokenizer, prompt, slots, sampling), and for a page-by-page run (the
 * two-page PDF and the image, two pages in flight: api_pages_run, as ocr, batch and serve run it;
 * a page's failure is reported through on_page_error and counts as the run's). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "base/alloc.h"
#include "test_util.h"
#include "wire.h"

static char g_file[1024]; /* the request's file ("" for a text-only question) */
static int g_pages;        /* run page by page (api_pages_run, as ocr / batch / serve do) instead */
static char g_pdf[1024], g_img[1024];

static int page_error(int index, int n_total, const char *name, int page, nvl_status st, const char *msg, void *user) {
    (void)n_total;
    (void)index;
    (void)name;
    (void)page;
    nvl_err *first = user; /* the first page error, for the run's verdict */
    if (first->code == NVL_OK) nvl_err_set(first, st, "%s", msg && *msg ? msg : "");
    return 0; /* the run goes on */
}

static int page_done(int index, int n_total, const char *name, int page, const api_ask_result *r, void *user) {
    (void)index;
    (void)n_total;
    (void)name;
    (void)page;
    (void)r;
    (void)user;
    return 0;
}

/* Both files page by page, two pages in flight; a page's failure counts as the run's. */
static nvl_status run_pages(api_engine *e, nvl_err *err) {
    api_media media[2] = {{.path = g_pdf}, {.path = g_img}};
    api_ask_params p = api_ask_params_default();
    p.max_tokens = 2;
    nvl_err first = {0};
    api_pages_hooks h = {.on_page = page_done, .on_page_error = page_error, .user = &first, .window = 2};
    int n_failed = 0;
    nvl_status st = api_pages_run(e, media, 2, API_OCR_PROMPT, &p, &h, &n_failed, err);
    if (st == NVL_OK && n_failed) {
        TEST_CHECK(first.code != NVL_OK, "%d pages failed without an error", n_failed);
        *err = first;
        st = first.code != NVL_OK ? first.code : NVL_ERR_INTERNAL;
    }
    return st;
}

/* One run; returns the status and leaves the message in err. */
static nvl_status run_once(api_engine *shared, nvl_err *err) {
    api_engine *e = shared;
    nvl_status st = NVL_OK;
    if (!e && (st = api_engine_open(&e, test_data_path("vl_tiny"), err)) != NVL_OK) return st;
    api_ask_params p = api_ask_params_default();
    p.max_tokens = 3;
    api_ask_result r;
    memset(&r, 0, sizeof r);
    const char *files[] = {g_file};
    const int nf = g_file[0] ? 1 : 0;
    if (g_pages) st = run_pages(e, err);
    else st = api_engine_ask(e, nf ? files : NULL, nf, "What is in this picture?", &p, NULL, NULL, &r, err);
    if (!g_pages && (st == NVL_OK || st == NVL_ERR_CANCELLED)) api_ask_result_free(&r); /* cancelled: partial */
    /* nothing here cancels: an allocation failure must never read as the caller stopping */
    if (st == NVL_ERR_CANCELLED) fprintf(stderr, "allocation failure reported as cancelled: %s\n", err->msg);
    TEST_CHECK(st != NVL_ERR_CANCELLED, "an allocation failure was reported as a cancel: %s", err->msg);
    if (!shared) api_engine_close(e);
    else api_engine_forget(e); /* the kept prompt prefix (for a follow-up question) is the engine's */
    return st;
}

/* only: fail allocation k alone (nvl_alloc_fail_nth) instead of every one from k on */
static void sweep_mode(const char *what, api_engine *shared, int only) {
    nvl_err err = {0};
    int64_t live0 = nvl_alloc_count(), t0 = nvl_alloc_total();
    TEST_EQ_INT(run_once(shared, &err), NVL_OK);
    const int64_t n = nvl_alloc_total() - t0;
    if (shared) /* an open engine keeps what its first request made (the slots' memory) */
        live0 = nvl_alloc_count();
    TEST_CHECK(nvl_alloc_count() == live0, "%s: the clean run leaves %lld blocks", what,
               (long long)(nvl_alloc_count() - live0));
    TEST_CHECK(n > 10, "%s: only %lld allocations counted", what, (long long)n);
    int runs = 0, failed = 0, leaks = 0, silent = 0;
    /* NVL_OOM_SWEEP_ALL=1 (by hand, minutes): every allocation, not a sample */
    const int64_t stride = getenv("NVL_OOM_SWEEP_ALL") ? 1 : n > 30 ? (n - 30) / 50 + 1 : 1;
    for (int64_t k = 0; k < n; k += k < 30 ? 1 : stride) {
        memset(&err, 0, sizeof err);
        if (only) nvl_alloc_fail_nth(k);
        else nvl_alloc_fail_after(k);
        const nvl_status st = run_once(shared, &err);
        nvl_alloc_fail_after(-1);
        nvl_alloc_fail_nth(-1);
        runs++;
        if (st != NVL_OK) {
            failed++;
            if (!err.msg[0]) {
                silent++;
                fprintf(stderr, "%s: allocation %lld failing: status %s without a message\n", what, (long long)k,
                        nvl_status_str(st));
            }
        }
        if (nvl_alloc_count() != live0) {
            leaks++;
            fprintf(stderr, "%s: allocation %lld failing (%s: %s) leaves %lld blocks\n", what, (long long)k,
                    nvl_status_str(st), err.msg, (long long)(nvl_alloc_count() - live0));
        }
    }
    printf("%s: %lld allocations; %d runs failing %s: %d ended in an error, all clean\n", what, (long long)n, runs,
           only ? "allocation k alone" : "from allocation k on", failed);
    TEST_CHECK(failed > runs / 2, "%s: only %d of %d runs saw the failure", what, failed, runs);
    TEST_CHECK(silent == 0, "%s: %d errors without a message", what, silent);
    TEST_CHECK(leaks == 0, "%s: %d runs leaked", what, leaks);
}

static void sweep(const char *what, api_engine *shared) {
    sweep_mode(what, shared, 0);
    sweep_mode(what, shared, 1);
}

int main(void) {
    static const char *const media[][2] = {{"media/made/image.bmp", "open + image question + close"},
                                            {"media/made/two_pages.pdf", "open + two-page PDF question + close"},
                                            {"media/made/clip_2s.mp4", "open + video question + close"}};
    for (size_t i = 0; i < sizeof media / sizeof media[0]; i++) {
        snprintf(g_file, sizeof g_file, "%s", test_data_path(media[i][0]));
        sweep(media[i][1], NULL);
    }
    g_file[0] = 0;
    nvl_err err = {0};
    api_engine *e = NULL;
    TEST_EQ_INT(api_engine_open(&e, test_data_path("vl_tiny"), &err), NVL_OK);
    if (e) {
        sweep("text question on an open engine", e);
        snprintf(g_pdf, sizeof g_pdf, "%s", test_data_path("media/made/two_pages.pdf"));
        snprintf(g_img, sizeof g_img, "%s", test_data_path("media/made/image.bmp"));
        g_pages = 1;
        sweep("page by page (PDF + image, window 2) on an open engine", e);
        g_pages = 0;
        /* the engine still answers after all those failures */
        api_ask_params p = api_ask_params_default();
        p.max_tokens = 2;
        api_ask_result r;
        const nvl_status st = api_engine_ask(e, NULL, 0, "Still there?", &p, NULL, NULL, &r, &err);
        TEST_EQ_INT(st, NVL_OK);
        if (st == NVL_OK) api_ask_result_free(&r);
        api_engine_close(e);
    }
    return test_report();
}
