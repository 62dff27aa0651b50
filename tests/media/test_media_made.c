/* Formats and cases the shared corpus lacks, made by tests/reference/gen_made_media.py with
 * their references: GIF (first frame), lossless WebP, BMP and TIFF through FFmpeg, a CMYK JPEG,
 * all equal to Pillow's decode exactly (the CMYK JPEG too: same inverted-Adobe rule; and a CMYK
 * JPEG with component 0 at 3x1 sampling, which TurboJPEG cannot classify, so that it takes the
 * libjpeg fallback: tests/reference/gen_cmyk_sampling.py);
 * a video whose display matrix rotates it 90 degrees comes out as FFmpeg's own autorotated frame
 * (8x8 block means within 1 level: both use swscale from the same decoder). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "base/json_util.h"
#include "media.h"
#include "test_util.h"

int main(void) {
    nvl_err err = {0};
    cJSON *root = NULL;
    if (nvl_json_load_file(&root, test_data_path("media/made_goldens.json"), 1 << 22, &err) != NVL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
    const char *stills[] = {"anim.gif", "lossless.webp", "image.bmp", "image.tiff", "cmyk.jpg", "cmyk_3x1.jpg"};
    for (int i = 0; i < 6; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "media/made/%s", stills[i]);
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(files, stills[i]);
        uint8_t *buf = NULL;
        size_t len = 0;
        media_image *img = NULL;
        TEST_EQ_INT(media_read_file(test_data_path(rel), NULL, &buf, &len, &err), NVL_OK);
        nvl_status st = media_decode_image(buf, len, stills[i], NULL, &img, &err);
        TEST_CHECK(st == NVL_OK, "%s: %s", stills[i], err.msg);
        if (img) {
            TEST_CHECK(img->width == cJSON_GetObjectItemCaseSensitive(g, "width")->valueint &&
                           img->height == cJSON_GetObjectItemCaseSensitive(g, "height")->valueint,
                       "%s: %dx%d", stills[i], img->width, img->height);
            const cJSON *px = cJSON_GetObjectItemCaseSensitive(g, "pixels");
            const int n = img->width * img->height * 3;
            float *a = malloc((size_t)n * sizeof(float)), *b = malloc((size_t)n * sizeof(float));
            for (int k = 0; k < n && k < cJSON_GetArraySize(px); k++) {
                a[k] = img->rgb[k];
                b[k] = (float)cJSON_GetArrayItem(px, k)->valuedouble;
            }
            char what[64];
            snprintf(what, sizeof what, "%s vs Pillow", stills[i]);
            test_compare_f32(what, a, b, (size_t)n, 0.0, 0.0, 0.0);
            free(a);
            free(b);
        }
        media_image_free(img);
        nvl_free(buf);
    }
    /* rotated video */
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(files, "rotated.mp4");
    media_frames *f = NULL;
    TEST_EQ_INT(media_video_sample(test_data_path("media/made/rotated.mp4"), NULL, NULL, &f, &err), NVL_OK);
    if (f) {
        const int W = cJSON_GetObjectItemCaseSensitive(g, "width")->valueint, H = cJSON_GetObjectItemCaseSensitive(g, "height")->valueint;
        const media_image *im = f->frames[0];
        TEST_CHECK(im->width == W && im->height == H, "rotated frame %dx%d, expected %dx%d", im->width, im->height, W, H);
        if (im->width == W && im->height == H) {
            float mine[192], ref[192];
            const int bh = H / 8, bw = W / 8;
            for (int by = 0; by < 8; by++)
                for (int bx = 0; bx < 8; bx++)
                    for (int c = 0; c < 3; c++) {
                        double s = 0;
                        for (int y = by * bh; y < (by + 1) * bh; y++)
                            for (int x = bx * bw; x < (bx + 1) * bw; x++) s += im->rgb[(size_t)y * im->stride + (size_t)x * 3 + (size_t)c];
                        mine[(by * 8 + bx) * 3 + c] = (float)(s / (bh * bw));
                        ref[(by * 8 + bx) * 3 + c] = (float)cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(g, "block_means"), (by * 8 + bx) * 3 + c)->valuedouble;
                    }
            test_compare_f32("rotated video frame vs ffmpeg autorotate", mine, ref, 192, 1.0, 0.0, 1e-4);
        }
        media_frames_free(f);
    }
    cJSON_Delete(root);

    /* Containers without an index and a file cut short (tests/reference/gen_video_containers.py:
     * frame times from PyAV): H.264 with B-frames in MPEG-TS (a seek to the start time landed
     * past the first keyframe: no frame, or a GOP lost) and MPEG-2 in MPEG-PS (packets with a
     * decode time only: frames mapped to wrong indices, the first ones lost) sample every frame
     * the rule takes, at its time (1e-3 s); an MP4 cut at half is answered on what it holds and
     * says its index lists more */
    if (nvl_json_load_file(&root, test_data_path("media/video_containers_goldens.json"), 1 << 22, &err) != NVL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    files = cJSON_GetObjectItemCaseSensitive(root, "files");
    const char *vids[] = {"ts_h264.ts", "ps_mpeg2.mpg"};
    /* the second pass seeks between samples (NVL_VIDEO_SEEK_GAP=5: a seek wherever the next is 5
       frames ahead): there the demuxers seek by bytes and land past the frame sought (1 and 2
       frames came out), and the sampler decodes through from the start instead */
    for (int i = 0; i < 4; i++) {
        if (i == 2) setenv("NVL_VIDEO_SEEK_GAP", "5", 1);
        char rel[128];
        snprintf(rel, sizeof rel, "media/made/%s", vids[i % 2]);
        const cJSON *gv = cJSON_GetObjectItemCaseSensitive(files, vids[i % 2]);
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(gv, "sample_2fps"), *wt = cJSON_GetObjectItemCaseSensitive(gv, "sample_times");
        media_frames *fv = NULL;
        nvl_status st = media_video_sample(test_data_path(rel), NULL, NULL, &fv, &err);
        TEST_CHECK(st == NVL_OK, "%s: %s", vids[i % 2], err.msg);
        if (!fv) continue;
        TEST_CHECK(fv->total_frames == cJSON_GetObjectItemCaseSensitive(gv, "frames")->valueint, "%s: %lld frames, PyAV %d",
                   vids[i % 2], (long long)fv->total_frames, cJSON_GetObjectItemCaseSensitive(gv, "frames")->valueint);
        int same = fv->n == cJSON_GetArraySize(want);
        for (int k = 0; same && k < fv->n; k++)
            same = fv->frames[k]->index == cJSON_GetArrayItem(want, k)->valueint &&
                   fabs(fv->frames[k]->timestamp - cJSON_GetArrayItem(wt, k)->valuedouble) < 1e-3;
        TEST_CHECK(same, "%s: sampled %d frames%s%lld@%.3f, the rule on PyAV's times %d", vids[i % 2], fv->n, fv->n ? " from " : "",
                   fv->n ? (long long)fv->frames[0]->index : -1LL, fv->n ? fv->frames[0]->timestamp : 0.0, cJSON_GetArraySize(want));
        TEST_EQ_INT(fv->listed_frames, 0);
        media_frames_free(fv);
    }
    unsetenv("NVL_VIDEO_SEEK_GAP");
    {
        media_frames *fv = NULL;
        nvl_status st = media_video_sample(test_data_path("media/made/cut_short.mp4"), NULL, NULL, &fv, &err);
        TEST_CHECK(st == NVL_OK && fv && fv->n >= 1, "cut_short.mp4: what it holds is sampled (%s)", st == NVL_OK ? "" : err.msg);
        const int listed = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(files, "cut_short.mp4"),
                                                            "listed_frames")->valueint;
        if (fv)
            TEST_CHECK(fv->listed_frames == listed && fv->total_frames < listed,
                       "cut_short.mp4: its index lists %lld frames (ffprobe: %d), %lld read", (long long)fv->listed_frames,
                       listed, (long long)fv->total_frames);
        media_frames_free(fv);
    }
    { /* an animated WebP: refused as such (FFmpeg's decoder read no image in it) */
        media_image *im = NULL;
        nvl_status st = media_decode_image_file(test_data_path("media/made/anim.webp"), NULL, &im, &err);
        TEST_CHECK(st == NVL_ERR_UNSUPPORTED && strstr(err.msg, "anim.webp: unsupported image format: animated WebP"),
                   "animated WebP: %s", err.msg);
        media_image_free(im);
    }
    cJSON_Delete(root);
    return test_report();
}
