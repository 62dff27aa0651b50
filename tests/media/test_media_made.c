/* Formats and cases the shared corpus lacks, made by tests/reference/gen_made_media.py with
 * their references: GIF (first frame), lossless WebP, BMP and TIFF through FFmpeg, a CMYK JPEG,
 * all equal to Pillow's decode exactly (the CMYK JPEG too: same inverted-Adobe rule; and a CMYK
 * JPEG with component 0 at 3x1 sampling, which TurboJPEG cannot classify, so that it takes the
 * libjpeg fallback: tests/reference/gen_cmyk_sampling.py);
 * a video whose display matrix rotates it 90 degrees comes out as FFmpeg's own autorotated frame
 * (8x8 block means within 1 level: both use swscale from the same decoder). */
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
    return test_report();
}
