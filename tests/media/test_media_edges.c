/* Edge cases of issue 16 on small committed inputs (tests/reference/gen_media_edges.py ->
 * tests/data/media/edges/ and edges_goldens.json), each against an independent tool:
 * - columns: 4:2:0 video (H.264, H.265, VP9) and lossy WebP at widths that are not multiples of
 *   16 (WebP also odd): the first frame equals ffmpeg's own rgb24 conversion
 *   (`ffmpeg -sws_flags point ... -pix_fmt rgb24`) pixel for pixel, checked column by column,
 *   exactly (0 levels: same libswscale, same flags);
 * - vfr: variable-frame-rate clips (gaps, accelerating spacing; MP4 and Matroska, B-frames):
 *   frame count, the true duration (the container's, not count / nominal rate), and at 2 fps the
 *   sampled frames and their timestamps equal the rule applied to ffprobe's per-frame times
 *   (1 ms); at 30 fps every kept frame's timestamp is its ffprobe time. */
#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "base/json_util.h"
#include "base/mapped_file.h"
#include "media.h"
#include "test_util.h"

static cJSON *g_gold;

static const char *edge_path(const char *file) {
    static char buf[4][1024];
    static int k = 0;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "media/edges/%s", file);
    return test_data_path(b);
}

/* Compares img with a raw rgb24 reference column by column; tol in levels. Reports every column
 * that differs (up to 8) with its worst difference. */
static void compare_columns(const char *what, const media_image *img, const uint8_t *ref, int w, int h, int tol) {
    if (img->width != w || img->height != h) {
        TEST_CHECK(0, "%s: %dx%d, expected %dx%d", what, img->width, img->height, w, h);
        return;
    }
    int bad_cols = 0, worst = 0;
    for (int x = 0; x < w; x++) {
        int cmax = 0;
        for (int y = 0; y < h; y++)
            for (int c = 0; c < 3; c++) {
                int d = abs((int)img->rgb[(size_t)y * img->stride + (size_t)x * 3 + (size_t)c] -
                            (int)ref[((size_t)y * (size_t)w + (size_t)x) * 3 + (size_t)c]);
                if (d > cmax) cmax = d;
            }
        if (cmax > tol) {
            if (bad_cols < 8) fprintf(stderr, "  %s: column %d differs by up to %d levels\n", what, x, cmax);
            bad_cols++;
        }
        if (cmax > worst) worst = cmax;
    }
    TEST_CHECK(bad_cols == 0, "%s: %d of %d columns differ from the reference by more than %d (worst %d)", what,
               bad_cols, w, tol, worst);
}

static void test_columns(void) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(g_gold, "columns"), *e;
    int n = 0;
    cJSON_ArrayForEach(e, arr) {
        const char *file = cJSON_GetObjectItemCaseSensitive(e, "file")->valuestring;
        const int w = cJSON_GetObjectItemCaseSensitive(e, "width")->valueint;
        const int h = cJSON_GetObjectItemCaseSensitive(e, "height")->valueint;
        const int video = !strcmp(cJSON_GetObjectItemCaseSensitive(e, "kind")->valuestring, "video");
        char rgb_rel[600];
        snprintf(rgb_rel, sizeof rgb_rel, "%s.rgb", file);
        nvl_err err = {0};
        char *ref = NULL;
        size_t ref_len = 0;
        TEST_EQ_INT(nvl_read_file(edge_path(rgb_rel), 1 << 24, &ref, &ref_len, &err), NVL_OK);
        if (!ref || ref_len != (size_t)w * (size_t)h * 3) {
            TEST_CHECK(0, "%s: reference of %zu bytes", file, ref_len);
            nvl_free(ref);
            continue;
        }
        if (video) {
            media_frames *f = NULL;
            nvl_status st = media_video_sample(edge_path(file), NULL, NULL, &f, &err);
            TEST_CHECK(st == NVL_OK, "%s: %s", file, err.msg);
            if (f) {
                TEST_CHECK(f->frames[0]->index == 0, "%s: first sampled frame is %lld", file, (long long)f->frames[0]->index);
                compare_columns(file, f->frames[0], (const uint8_t *)ref, w, h, 0);
            }
            media_frames_free(f);
        } else {
            media_image *img = NULL;
            nvl_status st = media_decode_image_file(edge_path(file), NULL, &img, &err);
            TEST_CHECK(st == NVL_OK, "%s: %s", file, err.msg);
            if (img) compare_columns(file, img, (const uint8_t *)ref, w, h, 0);
            media_image_free(img);
        }
        nvl_free(ref);
        n++;
    }
    TEST_CHECK(n >= 10, "only %d column cases ran", n);
    printf("columns: %d clips and stills compared column by column with ffmpeg's conversion\n", n);
}

static void test_vfr(void) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(g_gold, "vfr"), *e;
    int n = 0;
    cJSON_ArrayForEach(e, arr) {
        const char *file = cJSON_GetObjectItemCaseSensitive(e, "file")->valuestring;
        const cJSON *times = cJSON_GetObjectItemCaseSensitive(e, "times");
        const cJSON *idx = cJSON_GetObjectItemCaseSensitive(e, "sampled_indices");
        const double dur = cJSON_GetObjectItemCaseSensitive(e, "duration")->valuedouble;
        nvl_err err = {0};
        media_frames *f = NULL;
        nvl_status st = media_video_sample(edge_path(file), NULL, NULL, &f, &err);
        TEST_CHECK(st == NVL_OK, "%s: %s", file, err.msg);
        if (!f) continue;
        TEST_CHECK(f->total_frames == cJSON_GetArraySize(times), "%s: %lld frames, ffprobe %d", file,
                   (long long)f->total_frames, cJSON_GetArraySize(times));
        TEST_CHECK(fabs(f->duration - dur) < 1e-3, "%s: duration %.3f s, the container says %.3f s", file, f->duration, dur);
        TEST_CHECK(f->n == cJSON_GetArraySize(idx), "%s: %d frames sampled at 2 fps, expected %d", file, f->n,
                   cJSON_GetArraySize(idx));
        for (int i = 0; i < f->n && i < cJSON_GetArraySize(idx); i++) {
            const int want = cJSON_GetArrayItem(idx, i)->valueint;
            const double wt = cJSON_GetArrayItem(times, want)->valuedouble;
            TEST_CHECK(f->frames[i]->index == want && fabs(f->frames[i]->timestamp - wt) < 1e-3,
                       "%s: sample %d is frame %lld at %.3f s, expected frame %d at %.3f s (ffprobe)", file, i,
                       (long long)f->frames[i]->index, f->frames[i]->timestamp, want, wt);
        }
        /* the last sampled frame is the stream's last: the whole duration is covered */
        TEST_CHECK(f->frames[f->n - 1]->index == f->total_frames - 1, "%s: sampling stops at frame %lld of %lld", file,
                   (long long)f->frames[f->n - 1]->index, (long long)f->total_frames);
        media_frames_free(f);
        media_video_params vp = media_video_params_default();
        vp.fps = 30;
        f = NULL;
        st = media_video_sample(edge_path(file), &vp, NULL, &f, &err);
        TEST_CHECK(st == NVL_OK, "%s at 30 fps: %s", file, err.msg);
        int ok = f != NULL;
        for (int i = 0; f && i < f->n; i++) {
            const cJSON *t = cJSON_GetArrayItem(times, (int)f->frames[i]->index);
            ok &= t && fabs(f->frames[i]->timestamp - t->valuedouble) < 1e-3;
        }
        TEST_CHECK(ok, "%s at 30 fps: a frame's timestamp is not its ffprobe presentation time", file);
        media_frames_free(f);
        n++;
    }
    TEST_CHECK(n >= 2, "only %d VFR clips ran", n);
}

int main(void) {
    nvl_err err = {0};
    if (nvl_json_load_file(&g_gold, test_data_path("media/edges_goldens.json"), 1 << 22, &err) != NVL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int64_t live0 = nvl_alloc_count();
    test_columns();
    test_vfr();
    TEST_EQ_INT(nvl_alloc_count(), live0);
    cJSON_Delete(g_gold);
    return test_report();
}
