/* PDF pages in the renderer process (media.h, media_pdf_sandbox): a hostile page is stopped by
 * its memory or time bound, a cancel or a crash, with an error naming the file and the page; the
 * document's other pages still render, bit-equal to rendering in this process; nothing leaks and
 * no child is left. This test binary is its own renderer (main calls media_pdf_worker_main).
 * The PDF is hostile_pdf.h's. `test_pdf_sandbox --write PATH` writes it for the CLI tests. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "media.h"
#include "helper_test.h"
#include "hostile_pdf.h"
#include "test_util.h"
#include "base/clock.h"

static int same_image(const media_image *a, const media_image *b) {
    if (!a || !b || a->width != b->width || a->height != b->height) return 0;
    for (int y = 0; y < a->height; y++)
        if (memcmp(a->rgb + (size_t)y * a->stride, b->rgb + (size_t)y * b->stride, (size_t)a->width * 3)) return 0;
    return 1;
}

static void set_sandbox(const char *exe, double timeout_s, double max_mb) {
    media_pdf_sandbox sb = media_pdf_sandbox_default();
    sb.exe = exe;
    sb.timeout_s = timeout_s;
    sb.max_mb = max_mb;
    media_pdf_set_sandbox(&sb);
    if (!exe) media_pdf_sandbox_end_spare(); /* (so that no child is left to count) */
}

/* Warnings logged (the fallback to rendering in this process says so). */
static int g_fallbacks;
static void on_log(enum nvl_log_level level, const char *msg, void *user) {
    (void)user;
    if (level <= NVL_LOG_LEVEL_WARN && strstr(msg, "PDF pages are read in this process")) g_fallbacks++;
    fputs(msg, stderr);
}

/* Children of this process that are running renderers (named nanovl-pdf once started): signal
 * sig to each unless 0 (SIGKILL as the kernel's OOM killer or an operator might). Returns how many. */
static int renderers(int sig) {
    DIR *d = opendir("/proc");
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d));) {
        char p[300], buf[512];
        snprintf(p, sizeof p, "/proc/%s/stat", de->d_name);
        FILE *f = fopen(p, "r");
        if (!f) continue;
        const size_t k = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[k] = 0;
        const char *rp = strrchr(buf, ')'); /* "pid (comm) state ppid ..." */
        int ppid = 0;
        char state = 0;
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == (int)getpid() && state != 'Z' &&
            strstr(buf, "(nanovl-pdf)")) {
            if (sig) kill(atoi(de->d_name), sig);
            n++;
        }
    }
    if (d) closedir(d);
    return n;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], MEDIA_PDF_WORKER_ARG) && getenv("FAKE_RENDERER_NO_HELLO")) {
        const struct timespec ts = {60, 0}; /* a renderer that never starts (a machine out of memory) */
        nanosleep(&ts, NULL);
        return 0;
    }
    media_pdf_worker_main(argc, argv); /* the renderer (this binary started again) */
    if (argc == 3 && !strcmp(argv[1], "--write")) return hostile_pdf_write(argv[2]) ? 0 : 1;
    media_pdf *probe = NULL;
    nvl_err err = {0};
    char dir[] = "/tmp/nvl_sandbox_XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    char path[256];
    snprintf(path, sizeof path, "%s/hostile.pdf", dir);
    if (!hostile_pdf_write(path)) {
        fprintf(stderr, "cannot write %s\n", path);
        return 1;
    }
    if (media_pdf_open(&probe, path, NULL, NULL, &err) == NVL_ERR_UNSUPPORTED) {
        remove(path);
        rmdir(dir);
        test_skip("PDF support is not built in");
    }
    media_pdf_close(probe);
    const int64_t live0 = nvl_alloc_count();
    nvl_log_set(on_log, NULL);

    /* the references: pages 1 and 4 rendered in this process */
    set_sandbox(NULL, 0, 0);
    media_pdf *pdf = NULL;
    media_image *ref1 = NULL, *ref4 = NULL, *img = NULL;
    TEST_CHECK(media_pdf_open(&pdf, path, NULL, NULL, &err) == NVL_OK, "open: %s", err.msg);
    TEST_CHECK(media_pdf_page_count(pdf) == 4, "pages %d", media_pdf_page_count(pdf));
    TEST_CHECK(media_pdf_render(pdf, 0, 0, 400, &ref1, &err) == NVL_OK, "in process, page 1: %s", err.msg);
    TEST_CHECK(media_pdf_render(pdf, 3, 0, 400, &ref4, &err) == NVL_OK, "in process, page 4: %s", err.msg);
    media_pdf_close(pdf);
    /* the pages are not blank (a renderer returning white would pass the comparisons below) */
    int red = 0;
    for (int i = 0; ref1 && i < ref1->width * ref1->height; i++)
        red += ref1->rgb[3 * i] == 255 && ref1->rgb[3 * i + 1] == 0 && ref1->rgb[3 * i + 2] == 0;
    TEST_CHECK(red > 1000, "page 1 has %d red pixels", red);

    /* through the renderer: 256 MiB is far above an ordinary page's needs (about 30 MB resident) and
       far below the 30000 x 30000 image's 3.4 GB; 60 s, far above the time it takes to get there */
    set_sandbox("/proc/self/exe", 60, 256);
    TEST_CHECK(media_pdf_open(&pdf, path, NULL, NULL, &err) == NVL_OK, "open: %s", err.msg);
    TEST_CHECK(media_pdf_render(pdf, 0, 0, 400, &img, &err) == NVL_OK, "renderer, page 1: %s", err.msg);
    TEST_CHECK(same_image(img, ref1), "renderer, page 1: differs from rendering in this process");
    media_image_free(img), img = NULL;

    double t0 = nvl_now();
    nvl_status st = media_pdf_render(pdf, 1, 0, 400, &img, &err);
    double dt = nvl_now() - t0;
    TEST_CHECK(st == NVL_ERR_LIMIT && !img, "huge image: %s (%s)", nvl_status_name(st), err.msg);
    TEST_CONTAINS(err.msg, "hostile.pdf: rendering page 2 needed more than");
    TEST_CONTAINS(err.msg, "page 2 needed more than 256 MiB of memory besides the page's pixels (the page memory limit, --page-memory)");
    TEST_CHECK(dt < 30, "huge image: stopped after %.1f s", dt);

    TEST_CHECK(media_pdf_render(pdf, 3, 0, 400, &img, &err) == NVL_OK, "renderer after a stop, page 4: %s", err.msg);
    TEST_CHECK(same_image(img, ref4), "renderer after a stop, page 4: differs from rendering in this process");
    media_image_free(img), img = NULL;

    set_sandbox("/proc/self/exe", 1.0, 0); /* the page takes seconds (and under ASan over 256 MiB) */
    t0 = nvl_now();
    st = media_pdf_render(pdf, 2, 0, 400, &img, &err);
    dt = nvl_now() - t0;
    TEST_CHECK(st == NVL_ERR_TIMEOUT && !img, "slow page: %s (%s)", nvl_status_name(st), err.msg);
    TEST_CONTAINS(err.msg, "hostile.pdf: rendering page 3 took longer than 1 s; stopped");
    TEST_CHECK(dt >= 1.0 && dt < 10, "slow page: stopped after %.2f s (bound 1 s)", dt);
    TEST_CHECK(media_pdf_render(pdf, 0, 0, 400, &img, &err) == NVL_OK, "renderer after a timeout, page 1: %s", err.msg);
    TEST_CHECK(same_image(img, ref1), "renderer after a timeout, page 1: differs");
    media_image_free(img), img = NULL;

    /* a cancel stops the page without a time limit */
    set_sandbox("/proc/self/exe", 0, 0);
    g_cancel = 0;
    media_pdf_set_cancel(pdf, cancelled, (void *)&g_cancel);
    pthread_t th;
    pthread_create(&th, NULL, cancel_later, NULL);
    t0 = nvl_now();
    st = media_pdf_render(pdf, 2, 0, 400, &img, &err);
    dt = nvl_now() - t0;
    pthread_join(th, NULL);
    TEST_CHECK(st == NVL_ERR_CANCELLED && !img, "cancelled page: %s (%s)", nvl_status_name(st), err.msg);
    TEST_CONTAINS(err.msg, "hostile.pdf: rendering page 3: cancelled");
    TEST_CHECK(dt < 5, "cancelled page: stopped after %.2f s (cancel at 0.3 s)", dt);
    g_cancel = 0;

    /* a renderer that dies (Poppler crashing on a page): this test's knob aborts it on page 4 */
    setenv("NVL_TEST_RENDERER_ABORT_PAGE", "4", 1);
    media_pdf_close(pdf);
    set_sandbox("/proc/self/exe", 0, 0);
    media_pdf_sandbox_end_spare(); /* the next renderer starts with the knob in its environment */
    TEST_CHECK(media_pdf_open(&pdf, path, NULL, NULL, &err) == NVL_OK, "open: %s", err.msg);
    st = media_pdf_render(pdf, 3, 0, 400, &img, &err);
    TEST_CHECK(st == NVL_ERR_FORMAT && !img, "crashed renderer: %s (%s)", nvl_status_name(st), err.msg);
    TEST_CONTAINS(err.msg, "hostile.pdf: damaged PDF: reading page 4 failed: the renderer crashed (signal 6");
    unsetenv("NVL_TEST_RENDERER_ABORT_PAGE");
    TEST_CHECK(media_pdf_render(pdf, 0, 0, 400, &img, &err) == NVL_OK, "renderer after a crash, page 1: %s", err.msg);
    TEST_CHECK(same_image(img, ref1), "renderer after a crash, page 1: differs");
    media_image_free(img), img = NULL;
    media_pdf_close(pdf);
    /* a SIGTERM to the renderer (a service manager stopping the process group) does not end it:
       the parent decides; the page renders */
    set_sandbox("/proc/self/exe", 60, 1024);
    TEST_CHECK(media_pdf_open(&pdf, path, NULL, NULL, &err) == NVL_OK, "open: %s", err.msg);
    for (int i = 0; i < 100 && renderers(0) < 2; i++) nanosleep(&(struct timespec){0, 20000000L}, NULL);
    const int before = renderers(0); /* the document's and the spare, both started */
    TEST_CHECK(renderers(SIGTERM) >= 1, "a renderer to signal");
    nanosleep(&(struct timespec){0, 200000000L}, NULL);
    TEST_CHECK(renderers(0) == before, "renderers after a SIGTERM: %d, before %d", renderers(0), before);
    TEST_CHECK(media_pdf_render(pdf, 3, 0, 400, &img, &err) == NVL_OK, "after a SIGTERM, page 4: %s", err.msg);
    TEST_CHECK(same_image(img, ref4), "after a SIGTERM, page 4: differs");
    media_image_free(img), img = NULL;
    media_pdf_close(pdf);

    /* a renderer whose pixels trickle (a byte every 10 ms): the time bound holds while bytes come */
    setenv("NVL_TEST_RENDERER_TRICKLE_PAGE", "1", 1);
    set_sandbox("/proc/self/exe", 60, 0); /* (its start counts in the bound: 1 s only once it runs) */
    media_pdf_sandbox_end_spare(); /* the next renderer starts with the knob in its environment */
    TEST_CHECK(media_pdf_open(&pdf, path, NULL, NULL, &err) == NVL_OK, "open: %s", err.msg);
    set_sandbox("/proc/self/exe", 1.0, 0);
    t0 = nvl_now();
    st = media_pdf_render(pdf, 0, 0, 400, &img, &err);
    dt = nvl_now() - t0;
    TEST_CHECK(st == NVL_ERR_TIMEOUT && !img, "trickling pixels: %s (%s)", nvl_status_name(st), err.msg);
    TEST_CHECK(dt >= 1.0 && dt < 5, "trickling pixels: stopped after %.2f s (bound 1 s)", dt);
    unsetenv("NVL_TEST_RENDERER_TRICKLE_PAGE");
    media_pdf_close(pdf);

    /* a renderer that breaks the protocol (a malformed length) and waits: the call fails at once,
       the renderer is killed (no wait for it to end), the next call starts a new one */
    setenv("NVL_TEST_RENDERER_BAD_PAGE", "4", 1);
    set_sandbox("/proc/self/exe", 0, 0);
    media_pdf_sandbox_end_spare(); /* the next renderer starts with the knob in its environment */
    TEST_CHECK(media_pdf_open(&pdf, path, NULL, NULL, &err) == NVL_OK, "open: %s", err.msg);
    t0 = nvl_now();
    st = media_pdf_render(pdf, 3, 0, 400, &img, &err);
    dt = nvl_now() - t0;
    TEST_CHECK(st == NVL_ERR_FORMAT && !img, "malformed answer: %s (%s)", nvl_status_name(st), err.msg);
    TEST_CONTAINS(err.msg, "hostile.pdf: damaged PDF: reading page 4 failed: the renderer's answer was malformed");
    TEST_CHECK(dt < 5, "malformed answer: %.2f s", dt);
    unsetenv("NVL_TEST_RENDERER_BAD_PAGE");
    TEST_CHECK(media_pdf_render(pdf, 0, 0, 400, &img, &err) == NVL_OK, "after a malformed answer, page 1: %s", err.msg);
    TEST_CHECK(same_image(img, ref1), "after a malformed answer, page 1: differs");
    media_image_free(img), img = NULL;
    media_pdf_close(pdf);

    /* the spare renderer killed from outside after it said hello (its hello still readable): the
       next document starts a new one (it failed as a damaged PDF; no fallback either) */
    for (int i = 0; i < 100 && renderers(0) < 1; i++) nanosleep(&(struct timespec){0, 20000000L}, NULL);
    nanosleep(&(struct timespec){0, 300000000L}, NULL); /* named before its hello: time to say it */
    TEST_CHECK(renderers(SIGKILL) == 1, "one spare renderer waits for the next document");
    TEST_CHECK(media_pdf_open(&pdf, path, NULL, NULL, &err) == NVL_OK, "open: %s", err.msg);
    TEST_CHECK(media_pdf_render(pdf, 3, 0, 400, &img, &err) == NVL_OK, "after the spare was killed: %s", err.msg);
    TEST_CHECK(same_image(img, ref4), "after the spare was killed, page 4: differs");
    media_image_free(img), img = NULL;
    media_pdf_close(pdf);
    TEST_CHECK(g_fallbacks == 0, "%d renders fell back to this process", g_fallbacks);
    set_sandbox(NULL, 0, 0); /* ends the spare */
    TEST_CHECK(!children_left(), "a renderer was left after close");

    /* a renderer that never says hello: the page time bound holds while it starts (not the 30 s a
       start may take), and the document is not read in this process instead */
    setenv("FAKE_RENDERER_NO_HELLO", "1", 1);
    set_sandbox("/proc/self/exe", 1.0, 1024);
    media_pdf_sandbox_end_spare();
    {
        g_fallbacks = 0;
        const double t1 = nvl_now();
        nvl_status st1 = media_pdf_open(&pdf, path, NULL, NULL, &err);
        const double dt1 = nvl_now() - t1;
        TEST_CHECK(st1 == NVL_ERR_TIMEOUT && !pdf && strstr(err.msg, "hostile.pdf: the time limit passed while the PDF "
                                                                     "renderer started") && dt1 < 5 && g_fallbacks == 0,
                   "a renderer that never starts: %d %s after %.2f s (%d fallbacks)", (int)st1, err.msg, dt1, g_fallbacks);
    }
    unsetenv("FAKE_RENDERER_NO_HELLO");
    set_sandbox(NULL, 0, 0);

    /* a file named by a descriptor (/dev/fd/N, as /dev/stdin): the renderer reads the descriptor
       this process opened, not the name (it has no such descriptor) */
    set_sandbox("/proc/self/exe", 60, 1024);
    {
        FILE *f = fopen(path, "rb");
        char byfd[64];
        snprintf(byfd, sizeof byfd, "/dev/fd/%d", f ? fileno(f) : -1);
        TEST_CHECK(f && media_pdf_open(&pdf, byfd, NULL, NULL, &err) == NVL_OK, "%s: %s", byfd, err.msg);
        if (f) fclose(f); /* the document holds its own descriptor */
        TEST_CHECK(pdf && media_pdf_render(pdf, 0, 0, 400, &img, &err) == NVL_OK, "%s, page 1: %s", byfd, err.msg);
        TEST_CHECK(same_image(img, ref1), "%s, page 1: differs", byfd);
        media_image_free(img), img = NULL;
        media_pdf_close(pdf);
    }
    /* many documents open at once: at most 8 renderers run (and the spare); a document whose
       renderer was stopped for room starts one again */
    {
        enum { NDOC = 11 };
        media_pdf *docs[NDOC] = {0};
        for (int i = 0; i < NDOC; i++) {
            TEST_CHECK(media_pdf_open(&docs[i], path, NULL, NULL, &err) == NVL_OK, "document %d: %s", i, err.msg);
            TEST_CHECK(docs[i] && media_pdf_render(docs[i], 0, 0, 100, &img, &err) == NVL_OK, "document %d: %s", i, err.msg);
            media_image_free(img), img = NULL;
        }
        const int live = renderers(0);
        TEST_CHECK(live <= 9 && live >= 8, "%d renderers for %d open documents (8 and a spare)", live, NDOC);
        TEST_CHECK(media_pdf_render(docs[0], 3, 0, 400, &img, &err) == NVL_OK, "the first document again: %s", err.msg);
        TEST_CHECK(same_image(img, ref4), "the first document again, page 4: differs");
        media_image_free(img), img = NULL;
        for (int i = 0; i < NDOC; i++) media_pdf_close(docs[i]);
        for (int i = 0; i < 100 && renderers(0) < 1; i++) nanosleep(&(struct timespec){0, 20000000L}, NULL);
        TEST_CHECK(renderers(0) == 1, "after closing them, the spare only (%d)", renderers(0));
    }
    set_sandbox(NULL, 0, 0);
    TEST_CHECK(!children_left(), "a renderer was left after close");
    TEST_CHECK(g_fallbacks == 0, "%d documents fell back to this process", g_fallbacks);

    /* an executable that is not a renderer: the page renders in this process */
    set_sandbox("/bin/true", 1.0, 1024);
    TEST_CHECK(media_pdf_open(&pdf, path, NULL, NULL, &err) == NVL_OK, "open: %s", err.msg);
    TEST_CHECK(media_pdf_render(pdf, 0, 0, 400, &img, &err) == NVL_OK, "fallback, page 1: %s", err.msg);
    TEST_CHECK(same_image(img, ref1), "fallback, page 1: differs");
    TEST_CHECK(g_fallbacks == 1, "the fallback is logged (%d)", g_fallbacks);
    media_image_free(img), img = NULL;
    media_pdf_close(pdf);
    /* strict (serve): refused instead, naming the cause */
    {
        media_pdf_sandbox sb = media_pdf_get_sandbox();
        sb.strict = 1;
        media_pdf_set_sandbox(&sb);
        pdf = NULL;
        st = media_pdf_open(&pdf, path, NULL, NULL, &err);
        TEST_CHECK(st == NVL_ERR_IO && !pdf, "strict, no renderer: %s", nvl_status_name(st));
        TEST_CONTAINS(err.msg, "hostile.pdf: the PDF renderer could not start (/bin/true --pdf-render-worker did not "
                               "start as the PDF renderer); not read without its limits");
        TEST_CHECK(g_fallbacks == 1, "strict: no fallback (%d)", g_fallbacks);
    }
    set_sandbox(NULL, 0, 0);

    /* an encrypted document: the renderer opens it with the password */
    const char *enc = test_shared_path("media/pdf/libreoffice-writer-password.pdf");
    if (enc) {
        media_image *a = NULL;
        set_sandbox(NULL, 0, 0);
        TEST_CHECK(media_pdf_open(&pdf, enc, "openpassword", NULL, &err) == NVL_OK, "encrypted: %s", err.msg);
        TEST_CHECK(media_pdf_render(pdf, 0, 0, 300, &a, &err) == NVL_OK, "encrypted, in process: %s", err.msg);
        media_pdf_close(pdf);
        set_sandbox("/proc/self/exe", 60, 1024);
        TEST_CHECK(media_pdf_open(&pdf, enc, "openpassword", NULL, &err) == NVL_OK, "encrypted: %s", err.msg);
        TEST_CHECK(media_pdf_render(pdf, 0, 0, 300, &img, &err) == NVL_OK, "encrypted, renderer: %s", err.msg);
        TEST_CHECK(same_image(img, a), "encrypted: the renderer's page differs");
        media_image_free(img), img = NULL;
        media_image_free(a);
        media_pdf_close(pdf);
        /* opening through the renderer: its refusals as in this process */
        st = media_pdf_open(&pdf, enc, NULL, NULL, &err);
        TEST_CHECK(st == NVL_ERR_ENCRYPTED && !pdf, "encrypted without a password: %s", nvl_status_name(st));
        TEST_CONTAINS(err.msg, "libreoffice-writer-password.pdf: PDF is encrypted: a password is needed");
        st = media_pdf_open(&pdf, enc, "wrong\n\x01", NULL, &err);
        TEST_CHECK(st == NVL_ERR_ENCRYPTED && !pdf, "encrypted with a wrong password: %s", nvl_status_name(st));
        TEST_CONTAINS(err.msg, "PDF is encrypted: wrong password");
        set_sandbox(NULL, 0, 0); /* ends the spare */
    } else {
        printf("note: ../shared/media absent: the encrypted-document case was not run\n");
    }
    /* sizes, labels and the text layer through the renderer equal this process's (a real
       five-page A4 document with text: 595 x 842 pt within a point) */
    const char *mp = test_shared_path("media/pdf/multi_page.pdf");
    if (mp) {
        media_pdf *in = NULL;
        set_sandbox(NULL, 0, 0);
        TEST_CHECK(media_pdf_open(&in, mp, NULL, NULL, &err) == NVL_OK, "multi_page: %s", err.msg);
        set_sandbox("/proc/self/exe", 60, 1024);
        TEST_CHECK(media_pdf_open(&pdf, mp, NULL, NULL, &err) == NVL_OK, "multi_page, renderer: %s", err.msg);
        TEST_CHECK(in && pdf && media_pdf_page_count(pdf) == 5 && media_pdf_page_count(in) == 5, "five pages");
        for (int p = 0; in && pdf && p < 5; p++) {
            double w0 = 0, h0 = 0, w1 = 0, h1 = 0;
            TEST_CHECK(media_pdf_page_size(in, p, &w0, &h0, &err) == NVL_OK, "size: %s", err.msg);
            TEST_CHECK(media_pdf_page_size(pdf, p, &w1, &h1, &err) == NVL_OK, "size, renderer: %s", err.msg);
            TEST_CHECK(w0 == w1 && h0 == h1 && fabs(w1 - 595.28) < 1 && fabs(h1 - 841.89) < 1,
                       "page %d: %g x %g, renderer %g x %g", p + 1, w0, h0, w1, h1);
            char *x0 = NULL, *x1 = NULL, *l0 = media_pdf_page_label(in, p), *l1 = media_pdf_page_label(pdf, p);
            TEST_CHECK(media_pdf_page_text(in, p, &x0, &err) == NVL_OK, "text: %s", err.msg);
            TEST_CHECK(media_pdf_page_text(pdf, p, &x1, &err) == NVL_OK, "text, renderer: %s", err.msg);
            TEST_CHECK(x0 && x1 && strlen(x1) > 20 && !strcmp(x0, x1), "page %d: the text layers differ", p + 1);
            TEST_CHECK((!l0 && !l1) || (l0 && l1 && !strcmp(l0, l1)), "page %d: labels %s / %s", p + 1, l0 ? l0 : "-",
                       l1 ? l1 : "-");
            nvl_free(x0), nvl_free(x1), nvl_free(l0), nvl_free(l1);
        }
        st = media_pdf_page_size(pdf, 5, &(double){0}, &(double){0}, &err);
        TEST_CHECK(st == NVL_ERR_INVALID_ARG, "page 6 of 5: %s", nvl_status_name(st));
        media_pdf_close(in);
        media_pdf_close(pdf);
        set_sandbox(NULL, 0, 0);
    }
    TEST_CHECK(!children_left(), "a renderer was left after close");

    { /* the renderers' peak memory, read before each is stopped: a renderer's own, not this
         process's (getrusage credited a posix_spawn'ed child with its parent's peak at the start) */
        const size_t big = (size_t)1 << 30;
        char *ballast = malloc(big);
        if (ballast) memset(ballast, 1, big); /* (resident in this process before the renderer starts) */
        set_sandbox("/proc/self/exe", 60, 0);
        TEST_CHECK(media_pdf_open(&pdf, path, NULL, NULL, &err) == NVL_OK, "open: %s", err.msg);
        TEST_CHECK(media_pdf_render(pdf, 0, 0, 400, &img, &err) == NVL_OK, "render: %s", err.msg);
        media_image_free(img), img = NULL;
        media_pdf_close(pdf);
        pdf = NULL;
        set_sandbox(NULL, 0, 0);
        const size_t peak = media_helpers_peak_rss();
        size_t own = 0; /* this process's peak (VmHWM), the ballast in it */
        FILE *sf = fopen("/proc/self/status", "r");
        char ln[128];
        unsigned long kb = 0;
        while (sf && fgets(ln, sizeof ln, sf))
            if (sscanf(ln, "VmHWM: %lu kB", &kb) == 1) own = (size_t)kb << 10;
        if (sf) fclose(sf);
        /* (a renderer takes tens of MiB, 322 under ASan: far below this process's 1 GiB more) */
        TEST_CHECK(peak > ((size_t)1 << 20) && own > big && peak + ((size_t)512 << 20) < own,
                   "a renderer's peak: %zu MiB, this process's %zu MiB (1 GiB of it ballast)", peak >> 20, own >> 20);
        free(ballast);
    }
    { /* pages past cairo's 32767-pixel side render in blocks, in this process and in the renderer:
         each pixel as the page's fills put it (long_pages_pdf_write), across the block seams */
        char lp[300];
        snprintf(lp, sizeof lp, "%s/long.pdf", dir);
        TEST_CHECK(long_pages_pdf_write(lp), "cannot write %s", lp);
        static const struct {
            int at;
            uint8_t r, g, b;
        } k_along[] = {{0, 0, 0, 255},       {9, 0, 0, 255},       {10, 255, 255, 255},  {32759, 255, 255, 255},
                       {32760, 255, 0, 0},   {32766, 255, 0, 0},   {32767, 255, 0, 0},   {32774, 255, 0, 0},
                       {32775, 255, 255, 255}, {35989, 255, 255, 255}, {35990, 0, 255, 0}, {35999, 0, 255, 0}};
        for (int sandboxed = 0; sandboxed < 2; sandboxed++) {
            set_sandbox(sandboxed ? "/proc/self/exe" : NULL, 60, 0);
            TEST_CHECK(media_pdf_open(&pdf, lp, NULL, NULL, &err) == NVL_OK, "open: %s", err.msg);
            for (int p = 0; pdf && p < 2; p++) {
                st = media_pdf_render(pdf, p, 72, 0, &img, &err);
                TEST_CHECK(st == NVL_OK, "long page %d (%s): %s", p + 1, sandboxed ? "renderer" : "in process", err.msg);
                if (st != NVL_OK) continue;
                TEST_CHECK(img->width == (p ? 36000 : 40) && img->height == (p ? 40 : 36000), "long page %d: %dx%d", p + 1,
                           img->width, img->height);
                int bad = 0, first = -1;
                for (size_t i = 0; i < sizeof k_along / sizeof k_along[0]; i++)
                    for (int across = 0; across < 40; across += 13) {
                        const int x = p ? k_along[i].at : across, y = p ? across : k_along[i].at;
                        const uint8_t *px = img->rgb + (size_t)y * img->stride + (size_t)x * 3;
                        if (px[0] != k_along[i].r || px[1] != k_along[i].g || px[2] != k_along[i].b) {
                            bad++;
                            if (first < 0) first = k_along[i].at;
                        }
                    }
                TEST_CHECK(bad == 0, "long page %d (%s): %d pixels off, first at %d", p + 1,
                           sandboxed ? "renderer" : "in process", bad, first);
                media_image_free(img), img = NULL;
            }
            media_pdf_close(pdf);
            pdf = NULL;
        }
        set_sandbox(NULL, 0, 0);
        remove(lp);
    }

    media_image_free(ref1);
    media_image_free(ref4);
    TEST_CHECK(nvl_alloc_count() == live0, "allocations live: %lld, before %lld", (long long)nvl_alloc_count(),
               (long long)live0);
    remove(path);
    rmdir(dir);
    return test_report();
}
