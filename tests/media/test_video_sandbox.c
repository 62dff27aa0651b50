/* Videos in the decoder process (media.h, media_video_sandbox): the frames are bit-equal to
 * decoding in this process (pixels, index, time, the stream's facts, its errors' words); a
 * hostile stream is stopped by the memory bound (huge_frames.mp4: 9984x9984 frames, 1.4 GB to
 * decode), a stuck decoder by the time bound or a cancel, a crash is that video's error; nothing
 * leaks and no child is left. This test binary is its own decoder (main calls
 * media_video_worker_main); the knobs NVL_TEST_VIDEO_HANG_FRAME / _ABORT_FRAME act there. */
#include <errno.h>
#include <fcntl.h>
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
#include "test_util.h"
#include "base/clock.h"

static void set_sandbox(const char *exe, double timeout_s, double max_mb, int strict) {
    media_video_sandbox sb = media_video_sandbox_default();
    sb.exe = exe;
    sb.timeout_s = timeout_s;
    sb.max_mb = max_mb;
    sb.strict = strict;
    media_video_set_sandbox(&sb);
}

static int g_fallbacks;
static void on_log(enum nvl_log_level level, const char *msg, void *user) {
    (void)user;
    if (level <= NVL_LOG_LEVEL_WARN && strstr(msg, "the video is decoded in this process, WITHOUT")) g_fallbacks++;
}

/* Every frame of path sampled at fps in this process and through the decoder: equal. */
static void same_both_ways(const char *label, const char *path, double fps) {
    media_video_params vp = media_video_params_default();
    vp.fps = fps;
    nvl_err e1 = {0}, e2 = {0};
    media_frames *a = NULL, *b = NULL;
    set_sandbox(NULL, 0, 0, 0);
    const nvl_status s1 = media_video_sample(path, &vp, NULL, &a, &e1);
    set_sandbox("/proc/self/exe", 60, 4096, 1);
    const nvl_status s2 = media_video_sample(path, &vp, NULL, &b, &e2);
    TEST_CHECK(s1 == s2, "%s: the same status in-process and through the decoder (%d, %d: %s / %s)", label, (int)s1,
               (int)s2, e1.msg, e2.msg);
    if (s1 != NVL_OK || s2 != NVL_OK) {
        TEST_CHECK(!strcmp(e1.msg, e2.msg), "%s: the same error: '%s' / '%s'", label, e1.msg, e2.msg);
    } else {
        int same = a->n == b->n && a->native_fps == b->native_fps && a->total_frames == b->total_frames &&
                   a->listed_frames == b->listed_frames && a->duration == b->duration && a->width == b->width &&
                   a->height == b->height;
        for (int i = 0; same && i < a->n; i++) {
            const media_image *x = a->frames[i], *y = b->frames[i];
            same = x->width == y->width && x->height == y->height && x->index == y->index && x->timestamp == y->timestamp;
            for (int r = 0; same && r < x->height; r++)
                same = !memcmp(x->rgb + (size_t)r * x->stride, y->rgb + (size_t)r * y->stride, (size_t)x->width * 3);
        }
        TEST_CHECK(same, "%s: %d frames through the decoder equal the %d decoded here (pixels, index, time, facts)",
                   label, b ? b->n : -1, a ? a->n : -1);
    }
    media_frames_free(a);
    media_frames_free(b);
    TEST_CHECK(media_video_decoders() == 0, "%s: no decoder left running (%d)", label, media_video_decoders());
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], MEDIA_VIDEO_WORKER_ARG) && getenv("FAKE_DECODER_NO_HELLO")) {
        const struct timespec ts = {60, 0}; /* a decoder that never starts (a machine out of memory) */
        nanosleep(&ts, NULL);
        return 0;
    }
    media_video_worker_main(argc, argv); /* the decoder (this binary started again) */
    if (!media_supports(MEDIA_KIND_VIDEO)) test_skip("video support is not built in");
    const int64_t live0 = nvl_alloc_count();
    nvl_log_set(on_log, NULL);
    nvl_err err = {0};

    /* 1. the same frames both ways: the committed videos, and the shared corpus's */
    static const char *const made[] = {"clip_2s.mp4", "rotated.mp4", "ts_h264.ts", "ps_mpeg2.mpg", "cut_short.mp4"};
    for (size_t i = 0; i < sizeof made / sizeof *made; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "media/made/%s", made[i]);
        same_both_ways(made[i], test_data_path(rel), 2);
    }
    static const char *const shared[] = {"video/h265_bframes.mp4", "video/bbb_800x640_768kbps_30fps_vp9.mp4",
                                         "video/sample.mp4", "video/webm.webm", "field/vfr_gap.mp4",
                                         "malformed/Mpeg4.mp4", "malformed/sample_malformed_free_box.mp4"};
    int n_shared = 0;
    for (size_t i = 0; i < sizeof shared / sizeof *shared; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "media/%s", shared[i]);
        const char *p = test_shared_path(rel);
        if (!p) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s", p);
        same_both_ways(shared[i], path, 30);
        n_shared++;
    }
    if (!n_shared) fprintf(stderr, "(../shared/media is absent: only the committed videos compared)\n");
    char clip[1024];
    snprintf(clip, sizeof clip, "%s", test_data_path("media/made/clip_2s.mp4"));
    {   /* a descriptor's path (/dev/fd/N, as /dev/stdin): the decoder reads the parent's descriptor */
        const int fd = open(clip, O_RDONLY);
        char devfd[64];
        snprintf(devfd, sizeof devfd, "/dev/fd/%d", fd);
        same_both_ways("/dev/fd/N", devfd, 2);
        close(fd);
    }

    {   /* twelve videos open at once (one request naming them): at most 8 decoders kept; the
           others start again at their first frame, and every frame is the same */
        set_sandbox(NULL, 0, 0, 0);
        media_frames *ref = NULL;
        TEST_EQ_INT(media_video_sample(clip, NULL, NULL, &ref, &err), NVL_OK);
        set_sandbox("/proc/self/exe", 60, 4096, 1);
        media_video *vs[12] = {0};
        for (int i = 0; i < 12; i++) TEST_EQ_INT(media_video_open(clip, NULL, NULL, &vs[i], &err), NVL_OK);
        TEST_CHECK(media_video_decoders() == 8, "12 videos open, 8 decoders running (%d)", media_video_decoders());
        int same = ref != NULL, most = 0;
        for (int i = 11; i >= 0; i--) { /* (the stopped ones first) */
            media_image *fr = NULL;
            for (int k = 0; vs[i] && media_video_next(vs[i], &fr, &err) == NVL_OK && fr; k++) {
                same = same && k < ref->n && fr->index == ref->frames[k]->index && fr->width == ref->frames[k]->width &&
                       !memcmp(fr->rgb, ref->frames[k]->rgb, fr->stride * (size_t)fr->height);
                media_image_free(fr);
                most = media_video_decoders() > most ? media_video_decoders() : most;
            }
            media_video_close(vs[i]);
        }
        TEST_CHECK(same, "the 12 videos' frames equal the in-process ones");
        TEST_CHECK(most <= 9 && media_video_decoders() == 0, "at most 9 decoders while they decode (%d), none after", most);
        media_frames_free(ref);
    }

    {   /* a decoder that lies is not believed: each lie is "malformed" (or its error kept to the
           statuses decoding can have, naming the file), the video ends, nothing is left */
        static const struct { const char *mode, *want; nvl_status st; } lies[] = {
            {"badstatus", "the decoder's answer was malformed", NVL_ERR_FORMAT},
            {"nomsgname", "clip_2s.mp4: cannot read stream info: made up", NVL_ERR_FORMAT},
            {"hugemsg", "the decoder's answer was malformed", NVL_ERR_FORMAT},
            {"nanfps", "the decoder's answer was malformed", NVL_ERR_FORMAT},
            {"inffps", "the decoder's answer was malformed", NVL_ERR_FORMAT},
            {"nantime", "the decoder's answer was malformed", NVL_ERR_FORMAT},
            {"backtime", "the decoder's answer was malformed", NVL_ERR_FORMAT},
            {"zeroframes", "decoding frame 0 (0.000 s) failed: the decoder's answer was malformed", NVL_ERR_FORMAT},
            {"offplan", "decoding frame 0 (0.000 s) failed: the decoder's answer was malformed", NVL_ERR_FORMAT},
            {"nanstamp", "decoding frame 0 (0.000 s) failed: the decoder's answer was malformed", NVL_ERR_FORMAT},
            {"bigframe", "decoding frame 0 (0.000 s) failed: the decoder's answer was malformed", NVL_ERR_FORMAT},
        };
        set_sandbox(FAKE_VIDEO_DECODER, 10, 4096, 1);
        for (size_t i = 0; i < sizeof lies / sizeof *lies; i++) {
            setenv("FAKE_MODE", lies[i].mode, 1);
            media_video_sandbox_end_spare(); /* (one started ahead has the environment of its start) */
            media_frames *lf = (media_frames *)1;
            const nvl_status ls = media_video_sample(clip, NULL, NULL, &lf, &err);
            TEST_CHECK(ls == lies[i].st && !lf && strstr(err.msg, lies[i].want) && strstr(err.msg, "clip_2s.mp4: "),
                       "a decoder that lies (%s): %d %s", lies[i].mode, (int)ls, ls == NVL_OK ? "" : err.msg);
            if (ls == NVL_OK) media_frames_free(lf);
            TEST_CHECK(media_video_decoders() == 0, "%s: no decoder left", lies[i].mode);
        }
        setenv("FAKE_MODE", "", 1); /* the honest fake: two 2x2 gray frames */
        media_video_sandbox_end_spare();
        media_frames *lf = NULL;
        TEST_EQ_INT(media_video_sample(clip, NULL, NULL, &lf, &err), NVL_OK);
        TEST_CHECK(lf && lf->n == 2 && lf->frames[1]->index == 1 && lf->frames[0]->rgb[0] == 128,
                   "the fake's honest answer is taken (%d frames)", lf ? lf->n : -1);
        media_frames_free(lf);
        unsetenv("FAKE_MODE");
    }
    {   /* videos stopped after their open whose decoder cannot start again: decoded in this
           process with the warning (the CLI), or refused naming the file (strict: serve) */
        for (int strict = 0; strict < 2; strict++) {
            set_sandbox("/proc/self/exe", 60, 4096, strict);
            media_video *vs[10] = {0};
            for (int i = 0; i < 10; i++) TEST_EQ_INT(media_video_open(clip, NULL, NULL, &vs[i], &err), NVL_OK);
            set_sandbox("/bin/true", 60, 4096, strict);
            g_fallbacks = 0;
            media_image *fr = NULL;
            const nvl_status rs = vs[9] ? media_video_next(vs[9], &fr, &err) : NVL_ERR_INTERNAL;
            if (!strict)
                TEST_CHECK(rs == NVL_OK && fr && fr->index == 0 && g_fallbacks == 1,
                           "not strict: the stopped video decoded here (%d, %d warnings: %s)", (int)rs, g_fallbacks,
                           rs == NVL_OK ? "" : err.msg);
            else
                TEST_CHECK(rs == NVL_ERR_IO && strstr(err.msg, "clip_2s.mp4: the video decoder process could not start again"),
                           "strict: refused naming the file (%d %s)", (int)rs, err.msg);
            int n_rest = fr != NULL;
            media_image_free(fr);
            while (!strict && vs[9] && media_video_next(vs[9], &fr, &err) == NVL_OK && fr) {
                n_rest++;
                media_image_free(fr);
            }
            if (!strict) TEST_CHECK(n_rest == 4, "all 4 frames (%d)", n_rest);
            TEST_CHECK(vs[0] && media_video_next(vs[0], &fr, &err) == NVL_OK && fr, "a kept decoder goes on");
            media_image_free(fr);
            for (int i = 0; i < 10; i++) media_video_close(vs[i]);
            TEST_CHECK(media_video_decoders() == 0, "none left");
        }
    }

    /* 2. memory: a 22 KB stream of 9984x9984 frames, stopped at 256 MiB; the next video decodes */
    set_sandbox("/proc/self/exe", 60, 256, 1);
    media_frames *f = NULL;
    nvl_status st = media_video_sample(test_data_path("media/made/huge_frames.mp4"), NULL, NULL, &f, &err);
    TEST_CHECK(st == NVL_ERR_LIMIT && strstr(err.msg, "huge_frames.mp4: ") &&
                   strstr(err.msg, "needed more than 256 MiB of memory (the video memory limit, --video-memory)"),
               "huge frames stopped by the memory bound: %d %s", (int)st, err.msg);
    media_frames_free(f);
    TEST_CHECK(media_video_decoders() == 0, "its decoder is gone");
    TEST_EQ_INT(media_video_sample(clip, NULL, NULL, &f, &err), NVL_OK);
    TEST_CHECK(f && f->n == 4, "the next video decodes (%d frames)", f ? f->n : -1);
    media_frames_free(f);

    /* 3. time: a decoder that never answers its second frame is stopped after 1 s; the first came */
    set_sandbox("/proc/self/exe", 1, 4096, 1);
    setenv("NVL_TEST_VIDEO_HANG_FRAME", "2", 1);
    media_video_sandbox_end_spare();
    media_video *v = NULL;
    media_image *fr = NULL;
    TEST_EQ_INT(media_video_open(clip, NULL, NULL, &v, &err), NVL_OK);
    TEST_CHECK(v && media_video_decoders() == 1, "one decoder while the video is open (%d)", media_video_decoders());
    if (v) {
        TEST_EQ_INT(media_video_next(v, &fr, &err), NVL_OK);
        TEST_CHECK(fr && fr->index == 0, "the first frame");
        media_image_free(fr);
        double t0 = nvl_now();
        st = media_video_next(v, &fr, &err);
        TEST_CHECK(st == NVL_ERR_TIMEOUT && !fr && strstr(err.msg, "clip_2s.mp4: decoding frame ") &&
                       strstr(err.msg, "took longer than 1 s"),
                   "the stuck frame is stopped: %d %s", (int)st, err.msg);
        TEST_CHECK(nvl_now() - t0 < 10, "within its bound (%.1f s)", nvl_now() - t0);
        TEST_CHECK(media_video_decoders() == 0, "the decoder is gone");
        fr = (media_image *)1;
        TEST_CHECK(media_video_next(v, &fr, &err) == NVL_OK && !fr, "the video has ended");
        media_video_close(v);
    }
    /* 4. a cancel: the same stuck decoder, no time bound, stopped by the cancel callback */
    set_sandbox("/proc/self/exe", 0, 0, 1);
    g_cancel = 0;
    media_video_params vp = media_video_params_default();
    vp.cancelled = cancelled;
    vp.cancel_ctx = (void *)&g_cancel;
    TEST_EQ_INT(media_video_open(clip, &vp, NULL, &v, &err), NVL_OK);
    if (v) {
        TEST_EQ_INT(media_video_next(v, &fr, &err), NVL_OK);
        media_image_free(fr);
        pthread_t th;
        pthread_create(&th, NULL, cancel_later, NULL);
        double t0 = nvl_now();
        st = media_video_next(v, &fr, &err);
        pthread_join(th, NULL);
        TEST_CHECK(st == NVL_ERR_CANCELLED && !fr && strstr(err.msg, "clip_2s.mp4: cancelled"),
                   "the stuck frame is cancelled: %d %s", (int)st, err.msg);
        TEST_CHECK(nvl_now() - t0 < 5, "at once (%.1f s)", nvl_now() - t0);
        media_video_close(v);
    }
    unsetenv("NVL_TEST_VIDEO_HANG_FRAME");
    media_video_sandbox_end_spare();
    /* 5. a crash in the decoder: that video's error, a damaged video; the next decodes */
    set_sandbox("/proc/self/exe", 60, 4096, 1);
    setenv("NVL_TEST_VIDEO_ABORT_FRAME", "1", 1);
    media_video_sandbox_end_spare();
    st = media_video_sample(clip, NULL, NULL, &f, &err);
    unsetenv("NVL_TEST_VIDEO_ABORT_FRAME");
    media_video_sandbox_end_spare();
    TEST_CHECK(st == NVL_ERR_FORMAT && strstr(err.msg, "clip_2s.mp4: damaged video: decoding frame 0 (0.000 s) failed: "
                                                       "the decoder crashed (signal 6"),
               "a crash is the video's error: %d %s", (int)st, err.msg);
    TEST_CHECK(!f, "no frames");
    TEST_EQ_INT(media_video_sample(clip, NULL, NULL, &f, &err), NVL_OK);
    media_frames_free(f);
    /* 5b. a decoder that never says hello: the video's time bound holds while it starts (not the
           30 s a start may take), strict or not (it is not a decoder that could not start) */
    setenv("FAKE_DECODER_NO_HELLO", "1", 1);
    media_video_sandbox_end_spare();
    for (int strict = 0; strict < 2; strict++) {
        set_sandbox("/proc/self/exe", 1, 4096, strict);
        g_fallbacks = 0;
        const double t0 = nvl_now();
        st = media_video_open(clip, NULL, NULL, &v, &err);
        const double dt = nvl_now() - t0;
        TEST_CHECK(st == NVL_ERR_TIMEOUT && !v && strstr(err.msg, "clip_2s.mp4: the time limit passed while the video decoder "
                                                                  "started") && dt < 5 && g_fallbacks == 0,
                   "a decoder that never starts (strict %d): %d %s after %.2f s", strict, (int)st, err.msg, dt);
    }
    unsetenv("FAKE_DECODER_NO_HELLO");
    media_video_sandbox_end_spare();
    /* 6. no decoder can start: decoded here with a warning, or refused (strict: a server) */
    set_sandbox("/bin/true", 60, 4096, 0);
    g_fallbacks = 0;
    TEST_EQ_INT(media_video_sample(clip, NULL, NULL, &f, &err), NVL_OK);
    TEST_CHECK(f && f->n == 4 && g_fallbacks == 1, "decoded in this process (%d frames), with a warning (%d)",
               f ? f->n : -1, g_fallbacks);
    media_frames_free(f);
    set_sandbox("/bin/true", 60, 4096, 1);
    st = media_video_sample(clip, NULL, NULL, &f, &err);
    TEST_CHECK(st == NVL_ERR_IO && strstr(err.msg, "clip_2s.mp4: the video decoder process could not start"),
               "strict: refused: %d %s", (int)st, err.msg);
    /* errors before any decoder: the same words as in this process */
    set_sandbox("/proc/self/exe", 60, 4096, 1);
    TEST_EQ_INT(media_video_open("/nonexistent/v.mp4", NULL, NULL, &v, &err), NVL_ERR_NOT_FOUND);
    TEST_CHECK(!v && media_video_decoders() == 0, "no handle, no decoder (%p, %d)", (void *)v, media_video_decoders());

    set_sandbox(NULL, 0, 0, 0);
    TEST_CHECK(!children_left(), "no child process is left");
    TEST_EQ_INT(nvl_alloc_count(), live0);
    nvl_log_set(NULL, NULL);
    return test_report();
}
