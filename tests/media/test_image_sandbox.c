/* Still images in the image decoder process (media.h, media_image_sandbox): pixels, size,
 * orientation and the decoders' errors (word for word) equal decoding in this process, for every
 * committed still, the shared corpus's, the fuzz regressions and each file cut in half; a hostile
 * image is stopped by the memory bound (huge_image.webp: 3 KB, 9000x9000, ~570 MB to decode), a
 * stuck decoder (or one that stops reading what it is sent) by the time bound or a cancel, a crash is that image's error and the next image decodes; a
 * decoder that lies is believed in nothing; where no decoder can start the image is decoded here
 * with a warning, or refused (strict); nothing leaks and no child is left. This test binary is its
 * own decoder (main calls media_image_worker_main), and with FAKE_IMAGE_MODE set a lying one. */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "media.h"
#include "media_impl.h"
#include "helper_test.h"
#include "test_util.h"
#include "base/clock.h"

static void set_sandbox(const char *exe, double timeout_s, double max_mb, int strict) {
    media_image_sandbox sb = media_image_sandbox_default();
    sb.exe = exe;
    sb.timeout_s = timeout_s;
    sb.max_mb = max_mb;
    sb.strict = strict;
    media_image_set_sandbox(&sb);
}

static int g_fallbacks, g_warnings;
static char g_last_warning[2048];
static void on_log(enum nvl_log_level level, const char *msg, void *user) {
    (void)user;
    if (level <= NVL_LOG_LEVEL_WARN && strstr(msg, "the image is decoded in this process, WITHOUT")) g_fallbacks++;
    else if (level <= NVL_LOG_LEVEL_WARN) { /* a decoder's own (through this callback either way) */
        g_warnings++;
        snprintf(g_last_warning, sizeof g_last_warning, "%s", msg);
    }
}

/* The pid of the one child of this process named comm that is not ending (its /proc/PID/stat:
 * state not Z/X; no SIGKILL pending), 0 if none or several: a decoder killed after its image may
 * still be ending (not yet a zombie); the caller waits until only the one started ahead is left. */
static pid_t child_named(const char *comm) {
    DIR *d = opendir("/proc");
    pid_t found = 0;
    int candidates = 0;
    for (struct dirent *de; d && (de = readdir(d));) {
        const long pid = strtol(de->d_name, NULL, 10);
        if (pid <= 0) continue;
        char path[64], line[1024];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        const size_t n = fread(line, 1, sizeof line - 1, f);
        fclose(f);
        line[n] = 0;
        char *open = strchr(line, '('), *close = strrchr(line, ')');
        if (!open || !close || close < open) continue;
        if ((size_t)(close - open - 1) != strlen(comm) || strncmp(open + 1, comm, strlen(comm))) continue;
        char state = 0; /* (the fields after the name: state, ppid) */
        long ppid = 0;
        if (sscanf(close + 1, " %c %ld", &state, &ppid) != 2 || ppid != (long)getpid() || state == 'Z' || state == 'X')
            continue;
        /* killed and ending: SIGKILL pending (bit 9 of SigPnd / ShdPnd in /proc/PID/status) */
        int killed = 0;
        snprintf(path, sizeof path, "/proc/%ld/status", pid);
        if ((f = fopen(path, "r"))) {
            char l[256];
            while (fgets(l, sizeof l, f))
                if (!strncmp(l, "SigPnd:", 7) || !strncmp(l, "ShdPnd:", 7)) killed |= (strtoull(l + 7, NULL, 16) >> 8) & 1;
            fclose(f);
        }
        if (killed) continue;
        found = (pid_t)pid;
        candidates++;
    }
    if (d) closedir(d);
    return candidates == 1 ? found : 0;
}

/* The image decoder started ahead, 0 if none shows within 5 s. (It is named once it runs the
 * decoder's start, a moment after it was spawned, just before its hello: it is given 300 ms more;
 * stopped before its hello, its start is bounded as well.) */
static pid_t the_spare(void) {
    const struct timespec pause = {0, 300 * 1000000L}, tick = {0, 10 * 1000000L};
    nanosleep(&pause, NULL);
    pid_t spare = 0;
    for (int i = 0; i < 500 && !(spare = child_named("nanovl-image")); i++) nanosleep(&tick, NULL);
    return spare;
}

static int g_compared, g_failed_both, g_warned_both;

/* buf decoded in this process and through the decoder: the same status and words, or the same
 * image (size, orientation, every pixel). */
static void same_both_ways(const char *name, const uint8_t *buf, size_t len) {
    nvl_err e1 = {0}, e2 = {0};
    media_image *a = NULL, *b = NULL;
    char w1[2048];
    set_sandbox(NULL, 0, 0, 0);
    g_warnings = 0;
    g_last_warning[0] = 0;
    const nvl_status s1 = media_decode_image(buf, len, name, NULL, &a, &e1);
    const int n1 = g_warnings;
    snprintf(w1, sizeof w1, "%s", g_last_warning);
    set_sandbox("/proc/self/exe", 60, 4096, 1);
    g_warnings = 0;
    g_last_warning[0] = 0;
    const nvl_status s2 = media_decode_image(buf, len, name, NULL, &b, &e2);
    /* the decoders' warnings reach this process's log callback, word for word */
    TEST_CHECK(n1 == g_warnings && !strcmp(w1, g_last_warning), "%s: the same warnings (%d: '%s' / %d: '%s')", name, n1,
               w1, g_warnings, g_last_warning);
    g_warned_both += n1 > 0 && n1 == g_warnings;
    TEST_CHECK(s1 == s2, "%s: the same status here and through the decoder (%d, %d: %s / %s)", name, (int)s1, (int)s2,
               e1.msg, e2.msg);
    if (s1 != NVL_OK || s2 != NVL_OK) {
        TEST_CHECK(!strcmp(e1.msg, e2.msg), "%s: the same error: '%s' / '%s'", name, e1.msg, e2.msg);
        g_failed_both++;
    } else {
        int same = a->width == b->width && a->height == b->height && a->orientation == b->orientation;
        for (int r = 0; same && r < a->height; r++)
            same = !memcmp(a->rgb + (size_t)r * a->stride, b->rgb + (size_t)r * b->stride, (size_t)a->width * 3);
        TEST_CHECK(same, "%s: %dx%d (orientation %d) through the decoder equals %dx%d (%d) decoded here", name,
                   b->width, b->height, b->orientation, a->width, a->height, a->orientation);
    }
    g_compared++;
    media_image_free(a);
    media_image_free(b);
}

/* Every still image in dir (by its bytes), whole and cut in half. */
static void same_in_dir(const char *dir) {
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d) return;
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        uint8_t *buf = NULL;
        size_t len = 0;
        nvl_err e = {0};
        if (media_read_file(path, NULL, &buf, &len, &e) != NVL_OK) continue;
        const enum media_kind k = media_sniff(buf, len);
        if (k != MEDIA_KIND_UNKNOWN && k != MEDIA_KIND_PDF && k != MEDIA_KIND_VIDEO && strcmp(de->d_name, "huge_image.webp")) {
            same_both_ways(path, buf, len);
            char cut[1100];
            snprintf(cut, sizeof cut, "%s (cut in half)", path);
            same_both_ways(cut, buf, len / 2 > 16 ? len / 2 : len);
        }
        nvl_free(buf);
    }
    closedir(d);
}

/* buf decoded with a cancel raised from another thread after 300 ms (cancel_later); *dt the
 * seconds it took. */
static nvl_status decode_cancelled_later(const uint8_t *buf, size_t len, const char *name, media_image **img, nvl_err *err,
                                         double *dt) {
    g_cancel = 0;
    pthread_t th;
    TEST_CHECK(pthread_create(&th, NULL, cancel_later, NULL) == 0, "cancel thread");
    const double t0 = nvl_now();
    const nvl_status st = media_decode_image_cancellable(buf, len, name, NULL, cancelled, (void *)&g_cancel, img, err);
    *dt = nvl_now() - t0;
    pthread_join(th, NULL);
    return st;
}

// ---------------------------------------------------------------------------
// A decoder that lies (FAKE_IMAGE_MODE): it reads the request and answers one way it must not.

static int fake_decoder(const char *mode) {
    const int fd = MEDIA_PROC_FD;
    if (!strcmp(mode, "no_hello")) { /* a decoder that never starts (a machine out of memory, swapping) */
        const struct timespec ts = {60, 0};
        nanosleep(&ts, NULL);
        return 0;
    }
    if (!media_proc_worker_begin("nanovl-fake", IMAGE_HELLO)) return 0;
    img_req q;
    if (!media_proc_read_full(fd, &q, sizeof q)) return 0;
    char *skip = malloc(q.name_len + q.len);
    if (!skip || !media_proc_read_full(fd, skip, q.name_len + q.len)) return 0;
    img_rep r = {.status = NVL_OK, .msg_len = 0};
    img_out o = {.width = 4, .height = 2, .orientation = 0};
    const char *msg = "";
    if (!strcmp(mode, "busy")) r.status = NVL_ERR_BUSY, msg = "the GPU is busy, try again";
    else if (!strcmp(mode, "internal")) r.status = NVL_ERR_INTERNAL, msg = "whatever";
    else if (!strcmp(mode, "ok_with_message")) msg = "fine";
    else if (!strcmp(mode, "error_without_message")) r.status = NVL_ERR_FORMAT;
    else if (!strcmp(mode, "long_message")) r.status = NVL_ERR_FORMAT, r.msg_len = 1u << 30;
    else if (!strcmp(mode, "over_pixel_limit")) o.width = 46341, o.height = 46341;
    else if (!strcmp(mode, "zero_size")) o.width = 0;
    else if (!strcmp(mode, "negative_size")) o.height = -2;
    else if (!strcmp(mode, "orientation_9")) o.orientation = 9;
    else if (!strcmp(mode, "orientation_1")) o.orientation = 1;
    else if (!strcmp(mode, "short_pixels")) o.width = 1000, o.height = 1000;
    else if (!strcmp(mode, "unnamed_error")) r.status = NVL_ERR_FORMAT, msg = "bad Huffman table";
    /* its log messages: a level byte, the text, a NUL */
    char warn[64] = {0};
    size_t wl = 0;
    if (!strcmp(mode, "warning_unnamed")) memcpy(warn, "\1odd marker\x1b[31m\n", wl = 18);
    else if (!strcmp(mode, "warning_level")) memcpy(warn, "\3debug\n", wl = 8);
    else if (!strcmp(mode, "warning_unended")) memcpy(warn, "\1no end", wl = 7);
    else if (!strcmp(mode, "warning_long")) r.warn_len = 1u << 20;
    if (!r.msg_len) r.msg_len = (uint32_t)strlen(msg);
    if (!r.warn_len) r.warn_len = (uint32_t)wl;
    if (!media_proc_write_full(fd, &r, sizeof r) || !media_proc_write_full(fd, msg, strlen(msg)) ||
        !media_proc_write_full(fd, warn, wl))
        return 0;
    if (r.status != NVL_OK) return 0;
    uint8_t px[24] = {0};
    /* (short_pixels: 24 bytes of 3 million, then the end) */
    return media_proc_write_full(fd, &o, sizeof o) && media_proc_write_full(fd, px, sizeof px);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], MEDIA_IMAGE_WORKER_ARG) && getenv("FAKE_IMAGE_MODE"))
        _exit(fake_decoder(getenv("FAKE_IMAGE_MODE")));
    media_image_worker_main(argc, argv); /* the decoder (this binary started again) */
    if (!media_supports(MEDIA_KIND_PNG)) test_skip("libpng is not built in (the test's ordinary image is a PNG)");
    const int64_t live0 = nvl_alloc_count();
    nvl_log_set(on_log, NULL);
    nvl_err err = {0};
    media_image *img = NULL;

    /* 1. the same both ways: the committed stills, the edge cases, the fuzz regressions, the shared
          corpus (skipped where absent), each whole and cut in half */
    same_in_dir(test_data_path("media/made"));
    same_in_dir(test_data_path("media/edges"));
    same_in_dir(test_data_path("media/fuzz-regressions"));
    const char *shared = test_shared_path("media/image");
    if (shared) {
        same_in_dir(shared);
        same_in_dir(test_shared_path("media/malformed"));
        same_in_dir(test_shared_path("media/field"));
    } else {
        printf("# ../shared/media is absent: its stills are not compared (the committed ones are)\n");
    }
    TEST_CHECK(g_compared >= 60 && g_failed_both >= 10 && g_warned_both >= 2,
               "compared %d decodes (%d failing both ways alike, %d with the same warnings)", g_compared, g_failed_both,
               g_warned_both);

    /* 2. the checks made from the first bytes run here, no decoder started for them */
    set_sandbox("/proc/self/exe", 60, 4096, 1);
    media_image_sandbox_end_spare();
    TEST_EQ_INT(media_decode_image((const uint8_t *)"hello world, not an image", 25, "text.txt", NULL, &img, &err),
                NVL_ERR_UNSUPPORTED);
    {
        const int n = media_image_decoders();
        TEST_CHECK(n == 0, "an unknown format starts no decoder (%d running)", n);
    }

    /* 3. the memory bound: huge_image.webp (3 KB, 9000x9000) needs ~570 MB; at 200 MiB it is
          stopped, naming the file; without the bound it decodes (the limit is what stopped it) */
    uint8_t *huge = NULL;
    size_t huge_len = 0;
    if (!media_supports(MEDIA_KIND_WEBP)) printf("# libwebp is not built in: the memory bound's check is skipped\n");
    else TEST_EQ_INT(media_read_file(test_data_path("media/made/huge_image.webp"), NULL, &huge, &huge_len, &err), NVL_OK);
    set_sandbox("/proc/self/exe", 60, 200, 1);
    nvl_status st = NVL_OK;
    if (huge) {
    st = media_decode_image(huge, huge_len, "huge_image.webp", NULL, &img, &err);
    TEST_CHECK(st == NVL_ERR_LIMIT && strstr(err.msg, "huge_image.webp: decoding the image needed more than 200 MiB"),
               "the memory bound stops a 9000x9000 image (%d: %s)", (int)st, err.msg);
    set_sandbox("/proc/self/exe", 60, 0, 1);
    st = media_decode_image(huge, huge_len, "huge_image.webp", NULL, &img, &err);
    TEST_CHECK(st == NVL_OK && img && img->width == 9000 && img->height == 9000 && img->rgb[0] == 0x32 &&
                   img->rgb[1] == 0x65 && img->rgb[2] == 0x99, /* (ffmpeg's 0x336699 went through YUV: its own
                                                                    decoder reads 32 65 99 too) */
               "without the bound it decodes (%d: %s)", (int)st, err.msg);
    media_image_free(img);
    img = NULL;
    nvl_free(huge);
    }

    /* 4. the time bound: a decoder that never answers (the knob hangs images named *stuck*) */
    uint8_t *photo = NULL;
    size_t photo_len = 0;
    TEST_EQ_INT(media_read_file(test_data_path("media/edges/orient_1.png"), NULL, &photo, &photo_len, &err), NVL_OK);
    setenv("NVL_TEST_IMAGE_HANG", "stuck", 1);
    setenv("NVL_TEST_IMAGE_ABORT", "crashing", 1);
    media_image_sandbox_end_spare(); /* (a spare started before the knobs has the old environment) */
    set_sandbox("/proc/self/exe", 1, 4096, 1);
    double t0 = nvl_now();
    st = media_decode_image(photo, photo_len, "stuck.png", NULL, &img, &err);
    double dt = nvl_now() - t0;
    TEST_CHECK(st == NVL_ERR_TIMEOUT && strstr(err.msg, "stuck.png: decoding the image took longer than 1 s") && dt < 5,
               "the time bound stops a stuck decoder after %.2f s (%d: %s)", dt, (int)st, err.msg);

    /* 4b. a cancel stops it (raised from another thread after 0.3 s; the time bound is 60 s) */
    set_sandbox("/proc/self/exe", 60, 4096, 1);
    st = decode_cancelled_later(photo, photo_len, "stuck.png", &img, &err, &dt);
    TEST_CHECK(st == NVL_ERR_CANCELLED && !strcmp(err.msg, "stuck.png: cancelled") && dt < 3,
               "a cancel stops the decoder after %.2f s (%d: %s)", dt, (int)st, err.msg);
    {
        const int before = media_image_decoders();
        st = media_decode_image_cancellable(photo, photo_len, "image.png", NULL, cancelled, (void *)&g_cancel, &img, &err);
        TEST_CHECK(st == NVL_ERR_CANCELLED && !img && media_image_decoders() == before,
                   "already cancelled: no decoder taken (%d: %s)", (int)st, err.msg);
    }
    set_sandbox("/proc/self/exe", 1, 4096, 1);

    /* 4c. a decoder that stops reading (stopped from outside, wedged) while a large image is sent
           to it (12 MB of noise: more than the socket buffers) cannot hold the caller past the time
           bound: the spare started ahead is stopped (SIGSTOP) before it is given the image */
    {
        media_image *noise = NULL;
        TEST_EQ_INT(media_image_new(&noise, 2000, 2000, &err), NVL_OK);
        uint64_t rng = 7;
        for (size_t i = 0; i < (size_t)2000 * 2000 * 3; i++) noise->rgb[i] = (uint8_t)(test_rng_next(&rng) >> 24);
        char npath[600];
        snprintf(npath, sizeof npath, "%s/noise-%d.png", test_tmpdir(), (int)getpid());
        TEST_EQ_INT(media_image_write_png(noise, npath, &err), NVL_OK);
        media_image_free(noise);
        uint8_t *nb = NULL;
        size_t nlen = 0;
        TEST_EQ_INT(media_read_file(npath, NULL, &nb, &nlen, &err), NVL_OK);
        unlink(npath);
        set_sandbox("/proc/self/exe", 1, 4096, 1);
        st = media_decode_image(photo, photo_len, "image.png", NULL, &img, &err); /* (a spare starts) */
        media_image_free(img);
        img = NULL;
        const pid_t spare = the_spare();
        TEST_CHECK(spare > 0 && kill(spare, SIGSTOP) == 0, "the spare decoder (%d) stopped", (int)spare);
        t0 = nvl_now();
        st = media_decode_image(nb, nlen, "noise.png", NULL, &img, &err);
        dt = nvl_now() - t0;
        TEST_CHECK(st == NVL_ERR_TIMEOUT && strstr(err.msg, "noise.png: decoding the image took longer than 1 s") && dt < 4,
                   "a decoder that stops reading %zu bytes is stopped by the time bound after %.2f s (%d: %s)", nlen, dt,
                   (int)st, err.msg);
        media_image_free(img);
        img = NULL;
        nvl_free(nb);
    }

    /* 4c'. a spare killed after its hello (its hello still waits in the socket): its end refuses the
           request, and one started now decodes the image (strict: no fallback) */
    {
        set_sandbox("/proc/self/exe", 60, 4096, 1);
        st = media_decode_image(photo, photo_len, "image.png", NULL, &img, &err); /* (a spare starts) */
        media_image_free(img);
        img = NULL;
        const pid_t spare = the_spare();
        TEST_CHECK(spare > 0 && kill(spare, SIGKILL) == 0, "the spare decoder (%d) killed", (int)spare);
        const struct timespec pause = {0, 300 * 1000000L};
        nanosleep(&pause, NULL);
        st = media_decode_image(photo, photo_len, "image.png", NULL, &img, &err);
        TEST_CHECK(st == NVL_OK && img && img->width == 7, "a spare killed after its hello is replaced (%d: %s)", (int)st,
                   err.msg);
        media_image_free(img);
        img = NULL;
    }

    /* 4d. an empty name is "<image>" both ways (an API request may send "name": "") */
    set_sandbox("/proc/self/exe", 60, 4096, 1);
    same_both_ways("", photo, photo_len);
    set_sandbox("/proc/self/exe", 1, 4096, 1);

    /* 5. a crash is that image's error; the next image decodes */
    st = media_decode_image(photo, photo_len, "crashing.png", NULL, &img, &err);
    TEST_CHECK(st == NVL_ERR_FORMAT && strstr(err.msg, "crashing.png: damaged image: the decoder crashed (signal 6"),
               "a crash is a damaged image (%d: %s)", (int)st, err.msg);
    st = media_decode_image(photo, photo_len, "image.png", NULL, &img, &err);
    TEST_CHECK(st == NVL_OK && img, "the next image decodes (%d: %s)", (int)st, err.msg);
    media_image_free(img);
    img = NULL;
    {
        const int n = media_image_decoders();
        TEST_CHECK(n == 1, "one decoder started ahead, none left decoding (%d)", n);
    }
    unsetenv("NVL_TEST_IMAGE_HANG");
    unsetenv("NVL_TEST_IMAGE_ABORT");

    /* 6. a decoder that lies: nothing it says is believed */
    static const struct {
        const char *mode;
        nvl_status st;
        const char *words;
    } lies[] = {
        {"busy", NVL_ERR_FORMAT, "image.png: damaged image: the decoder's answer was malformed"},
        {"internal", NVL_ERR_FORMAT, "the decoder's answer was malformed"},
        {"ok_with_message", NVL_ERR_FORMAT, "the decoder's answer was malformed"},
        {"error_without_message", NVL_ERR_FORMAT, "the decoder's answer was malformed"},
        {"long_message", NVL_ERR_FORMAT, "the decoder's answer was malformed"},
        {"over_pixel_limit", NVL_ERR_FORMAT, "the decoder's answer was malformed"},
        {"zero_size", NVL_ERR_FORMAT, "the decoder's answer was malformed"},
        {"negative_size", NVL_ERR_FORMAT, "the decoder's answer was malformed"},
        {"orientation_9", NVL_ERR_FORMAT, "the decoder's answer was malformed"},
        {"orientation_1", NVL_ERR_FORMAT, "the decoder's answer was malformed"},
        {"short_pixels", NVL_ERR_IO, "image.png: the image decoder exited with status 1"},
        {"unnamed_error", NVL_ERR_FORMAT, "image.png: bad Huffman table"},
        {"warning_level", NVL_ERR_FORMAT, "the decoder's answer was malformed"},
        {"warning_unended", NVL_ERR_FORMAT, "the decoder's answer was malformed"},
        {"warning_long", NVL_ERR_FORMAT, "the decoder's answer was malformed"},
    };
    set_sandbox("/proc/self/exe", 10, 4096, 1);
    for (size_t i = 0; i < sizeof lies / sizeof *lies; i++) {
        setenv("FAKE_IMAGE_MODE", lies[i].mode, 1);
        media_image_sandbox_end_spare();
        img = NULL;
        st = media_decode_image(photo, photo_len, "image.png", NULL, &img, &err);
        TEST_CHECK(st == lies[i].st && !img && strstr(err.msg, lies[i].words), "a decoder lying (%s) is not believed: %d: %s",
                   lies[i].mode, (int)st, err.msg);
        media_image_free(img);
        img = NULL;
    }
    /* a decoder that never says hello: the image's time bound and cancel hold while it starts */
    setenv("FAKE_IMAGE_MODE", "no_hello", 1);
    media_image_sandbox_end_spare();
    set_sandbox("/proc/self/exe", 1, 4096, 1);
    double t1 = nvl_now();
    st = media_decode_image(photo, photo_len, "image.png", NULL, &img, &err);
    double dt1 = nvl_now() - t1;
    TEST_CHECK(st == NVL_ERR_TIMEOUT && !img && strstr(err.msg, "image.png: decoding the image took longer than 1 s") &&
                   strstr(err.msg, "while the image decoder started") && dt1 < 4,
               "a decoder that never starts: the time bound after %.2f s (%d: %s)", dt1, (int)st, err.msg);
    set_sandbox("/proc/self/exe", 60, 4096, 1);
    st = decode_cancelled_later(photo, photo_len, "image.png", &img, &err, &dt1);
    TEST_CHECK(st == NVL_ERR_CANCELLED && !img && !strcmp(err.msg, "image.png: cancelled") && dt1 < 4,
               "a decoder that never starts: the cancel after %.2f s (%d: %s)", dt1, (int)st, err.msg);
    set_sandbox("/proc/self/exe", 10, 4096, 1);

    /* a warning not naming the image is made to, its control characters shown as '?' (and the
       honest fake's 4x2 image taken) */
    setenv("FAKE_IMAGE_MODE", "warning_unnamed", 1);
    media_image_sandbox_end_spare();
    g_warnings = 0;
    st = media_decode_image(photo, photo_len, "image.png", NULL, &img, &err);
    TEST_CHECK(st == NVL_OK && img && img->width == 4 && g_warnings == 1 &&
                   !strcmp(g_last_warning, "image.png: odd marker?[31m\n"),
               "a decoder's warning made to name the image, escapes neutralised (%d: %d '%s')", (int)st, g_warnings,
               g_last_warning);
    media_image_free(img);
    img = NULL;
    unsetenv("FAKE_IMAGE_MODE");
    media_image_sandbox_end_spare();

    /* 7. no decoder can start: decoded here with the warning; strict: refused naming why */
    set_sandbox("/nonexistent/nanovl", 60, 4096, 0);
    g_fallbacks = 0;
    st = media_decode_image(photo, photo_len, "image.png", NULL, &img, &err);
    TEST_CHECK(st == NVL_OK && img && g_fallbacks == 1, "no decoder: decoded here with one warning (%d, %d warnings)",
               (int)st, g_fallbacks);
    media_image_free(img);
    img = NULL;
    set_sandbox("/nonexistent/nanovl", 60, 4096, 1);
    st = media_decode_image(photo, photo_len, "image.png", NULL, &img, &err);
    TEST_CHECK(st == NVL_ERR_IO && strstr(err.msg, "image.png: no image decoder process could start") && !img,
               "strict: refused (%d: %s)", (int)st, err.msg);
    nvl_free(photo);

    /* 8. a file through media_decode_image_file takes the same way */
    set_sandbox("/proc/self/exe", 60, 4096, 1);
    st = media_decode_image_file(test_data_path("media/made/photo.heic"), NULL, &img, &err);
    TEST_CHECK(media_supports(MEDIA_KIND_HEIF) ? st == NVL_OK && img->width == 63 && img->height == 47
                                               : st == NVL_ERR_UNSUPPORTED,
               "a HEIC file through the decoder (%d: %s)", (int)st, err.msg);
    media_image_free(img);

    set_sandbox(NULL, 0, 0, 0); /* ends the spare */
    TEST_CHECK(media_image_decoders() == 0, "no decoder left running (%d)", media_image_decoders());
    TEST_CHECK(!children_left(), "every decoder process reaped");
    TEST_CHECK(nvl_alloc_count() == live0, "no allocation leaked (%lld live)", (long long)(nvl_alloc_count() - live0));
    return test_report();
}
