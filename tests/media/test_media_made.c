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

/* Frames in an animated GIF, APNG or WebP as Pillow counts them (n_frames:
 * tests/reference/gen_anim_frames.py), 1 for stills: the first frame is what the model sees, and
 * an animation was left without a word (a review). Each animation cut before its second frame
 * counts 1, and cut anywhere it neither crashes nor counts more than whole. */
static void test_anim_frames(void) {
    nvl_err err = {0};
    cJSON *root = NULL;
    if (nvl_json_load_file(&root, test_data_path("media/anim_frames.json"), 1 << 20, &err) != NVL_OK) {
        TEST_CHECK(0, "%s", err.msg);
        return;
    }
    const cJSON *nf = cJSON_GetObjectItemCaseSensitive(root, "n_frames");
    int n = 0, animated = 0;
    for (const cJSON *f = nf ? nf->child : NULL; f; f = f->next, n++) {
        char rel[300];
        snprintf(rel, sizeof rel, "media/%s", f->string);
        uint8_t *buf = NULL;
        size_t len = 0;
        TEST_EQ_INT(media_read_file(test_data_path(rel), NULL, &buf, &len, &err), NVL_OK);
        const int64_t got = buf ? media_image_frames(buf, len) : -1;
        TEST_CHECK(got == f->valueint, "%s: %lld frames, Pillow counts %d", f->string, (long long)got, f->valueint);
        animated += f->valueint > 1;
        for (size_t cut = 0; buf && f->valueint > 1 && cut < len; cut += 1 + cut / 16) {
            const int64_t c = media_image_frames(buf, cut);
            TEST_CHECK(c >= 1 && c <= f->valueint, "%s cut at %zu: %lld frames", f->string, cut, (long long)c);
        }
        nvl_free(buf);
    }
    TEST_CHECK(n >= 8 && animated >= 5, "%d files, %d animated, in anim_frames.json", n, animated);
    cJSON_Delete(root);
}

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

    /* HEIF/HEIC stills (tests/reference/gen_heif.py: pillow-heif wrote them and its decode is the
     * reference): 8-bit with odd sizes, alpha composited on white (straight, and premultiplied:
     * composited as such, not twice), 10-bit read at 8 bits. Both
     * decode the HEVC bitstream exactly (libde265); the YUV->RGB conversion is libheif's, a newer
     * one in pillow-heif's wheel (1.23) than Debian's (1.15). 8-bit: within 1 level, mean under
     * 0.1 (measured 1 and 0.018-0.028); 10-bit read at 8 bits: the two versions reduce the depth
     * differently (no shift or rounding of pillow-heif's own 10-bit RGB gives its 8-bit one), so
     * within 2 levels, mean under 0.7 (measured 2 and 0.59). NVL_TEST_VERBOSE prints them. */
    if (media_supports(MEDIA_KIND_HEIF)) {
        cJSON *hg = NULL;
        if (nvl_json_load_file(&hg, test_data_path("media/heif_goldens.json"), 1 << 22, &err) != NVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        const cJSON *hfiles = cJSON_GetObjectItemCaseSensitive(hg, "files");
        const char *heics[] = {"photo.heic", "alpha.heic", "deep.heic", "premult.heic"};
        for (int i = 0; i < 4; i++) {
            char rel[128];
            snprintf(rel, sizeof rel, "media/made/%s", heics[i]);
            const cJSON *hf = cJSON_GetObjectItemCaseSensitive(hfiles, heics[i]);
            const cJSON *px = cJSON_GetObjectItemCaseSensitive(hf, "pixels");
            media_image *img = NULL;
            nvl_status st = media_decode_image_file(test_data_path(rel), NULL, &img, &err);
            TEST_CHECK(st == NVL_OK, "%s: %s", heics[i], st == NVL_OK ? "" : err.msg);
            if (!img) continue;
            const int gw = cJSON_GetObjectItemCaseSensitive(hf, "width")->valueint,
                      gh = cJSON_GetObjectItemCaseSensitive(hf, "height")->valueint;
            TEST_CHECK(img->width == gw && img->height == gh, "%s: %dx%d, pillow-heif %dx%d", heics[i], img->width,
                       img->height, gw, gh);
            int maxd = 0, n = 0;
            double sum = 0;
            const cJSON *v = px ? px->child : NULL;
            for (int y = 0; img->width == gw && img->height == gh && y < gh; y++)
                for (int x = 0; x < 3 * gw && v; x++, v = v->next, n++) {
                    const int d = abs((int)img->rgb[(size_t)y * img->stride + (size_t)x] - v->valueint);
                    maxd = d > maxd ? d : maxd;
                    sum += d;
                }
            const int deep = i == 2, bound = deep ? 2 : 1;
            const double mean_bound = deep ? 0.7 : 0.1;
            TEST_CHECK(n == 3 * gw * gh && maxd <= bound && sum / n < mean_bound, "%s: %d samples within %d level(s) of "
                       "pillow-heif's, mean under %g (max %d, mean %.4f)", heics[i], n, bound, mean_bound, maxd,
                       n ? sum / n : 0.0);
            if (getenv("NVL_TEST_VERBOSE"))
                fprintf(stderr, "%s: max %d, mean %.4f over %d samples\n", heics[i], maxd, n ? sum / n : 0.0, n);
            media_image_free(img);
        }
        cJSON_Delete(hg);
        /* damaged: cut short, and its boxes' sizes broken: refused naming the file, nothing leaks */
        uint8_t *hb = NULL;
        size_t hl = 0;
        TEST_EQ_INT(media_read_file(test_data_path("media/made/photo.heic"), NULL, &hb, &hl, &err), NVL_OK);
        media_image *bad = NULL;
        /* the same file under the major brand isom (some cameras' and converters' HEIC): the same
           image (it was taken for a video: FFmpeg "Invalid data") */
        if (hb && hl > 12) {
            media_image *a = NULL, *b = NULL;
            nvl_status sa = media_decode_image(hb, hl, "photo.heic", NULL, &a, &err);
            memcpy(hb + 8, "isom", 4);
            nvl_status sb = media_decode_image(hb, hl, "isom.heic", NULL, &b, &err);
            memcpy(hb + 8, "heic", 4);
            TEST_CHECK(sa == NVL_OK && sb == NVL_OK && a->width == b->width && a->height == b->height &&
                           !memcmp(a->rgb, b->rgb, a->stride * (size_t)a->height),
                       "a HEIC under the major brand isom: the same image (%d, %d: %s)", (int)sa, (int)sb, err.msg);
            media_image_free(a);
            media_image_free(b);
        }
        nvl_status bst = hb ? media_decode_image(hb, hl / 3, "cut.heic", NULL, &bad, &err) : NVL_ERR_IO;
        TEST_CHECK(bst == NVL_ERR_FORMAT && !bad && strstr(err.msg, "cut.heic: damaged HEIF: "), "a HEIC cut short: %d %s",
                   (int)bst, err.msg);
        /* a coded size (ispe) of 20000x20000, shown cropped to 63x47: refused before decoding
           (libheif would allocate the coded size; 1.15 decoded this one anyway) */
        for (size_t i = 0; hb && i + 16 <= hl; i++)
            if (!memcmp(hb + i, "ispe", 4)) {
                const uint8_t big[8] = {0, 0, 0x4e, 0x20, 0, 0, 0x4e, 0x20};
                memcpy(hb + i + 8, big, 8);
                bst = media_decode_image(hb, hl, "ispe.heic", NULL, &bad, &err);
                TEST_CHECK(bst == NVL_ERR_LIMIT && !bad && strstr(err.msg, "ispe.heic: "), "a 20000x20000 coded HEIC: %d %s",
                           (int)bst, err.msg);
                media_image_free(bad);
                bad = NULL;
                break;
            }
        for (size_t i = 32; hb && i < hl && i < 400; i += 7) hb[i] ^= 0x5a; /* (the boxes after ftyp) */
        bst = hb ? media_decode_image(hb, hl, "broken.heic", NULL, &bad, &err) : NVL_ERR_IO;
        TEST_CHECK(bst != NVL_OK && !bad && strstr(err.msg, "broken.heic: "), "a HEIC with broken boxes: %d %s", (int)bst,
                   err.msg);
        media_image_free(bad);
        nvl_free(hb);
        /* a limit below its size: refused before decoding */
        media_limits hl2 = media_limits_default();
        hl2.max_pixels = 63 * 47 - 1;
        TEST_EQ_INT(media_decode_image_file(test_data_path("media/made/photo.heic"), &hl2, &bad, &err), NVL_ERR_LIMIT);
    } else {
        fprintf(stderr, "(HEIF support is not built in: the HEIC checks skipped)\n");
    }

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
    /* Each of those files joined to itself end to end (`cat a.ts a.ts`: an HLS download's pieces
     * joined; the second piece's times start over): refused before as "no frame could be decoded"
     * (repeated times collided). Now one continuous timeline, as FFmpeg's command line makes it:
     * twice the frames, the second piece's frame i the first piece's frame i, shown one piece's
     * duration later; every frame at the native rate, then the 2 fps sample (once more with seeks
     * asked for every 5 frames: the sampler decodes through instead) equal to those frames. */
    for (int i = 0; i < 4; i++) {
        if (i == 2) setenv("NVL_VIDEO_SEEK_GAP", "5", 1);
        char rel[128], joined[512];
        snprintf(rel, sizeof rel, "media/made/%s", vids[i % 2]);
        snprintf(joined, sizeof joined, "%s/joined-%s", test_tmpdir(), vids[i % 2]);
        uint8_t *b = NULL;
        size_t bl = 0;
        if (media_read_file(test_data_path(rel), NULL, &b, &bl, &err) != NVL_OK) {
            TEST_CHECK(0, "%s", err.msg);
            continue;
        }
        uint8_t *b2 = nvl_malloc(2 * bl);
        memcpy(b2, b, bl);
        memcpy(b2 + bl, b, bl);
        TEST_CHECK(test_write_file(joined, b2, 2 * bl), "%s written", joined);
        nvl_free(b);
        nvl_free(b2);
        media_frames *one = NULL, *all = NULL, *s2 = NULL;
        media_video_params vp = media_video_params_default();
        vp.fps = 25, vp.max_frames = 1000;
        nvl_status st = media_video_sample(test_data_path(rel), &vp, NULL, &one, &err);
        TEST_CHECK(st == NVL_OK, "%s: %s", rel, err.msg);
        st = media_video_sample(joined, &vp, NULL, &all, &err);
        TEST_CHECK(st == NVL_OK, "%s joined to itself, every frame: %s", vids[i % 2], st == NVL_OK ? "" : err.msg);
        st = media_video_sample(joined, NULL, NULL, &s2, &err);
        TEST_CHECK(st == NVL_OK, "%s joined to itself at 2 fps: %s", vids[i % 2], st == NVL_OK ? "" : err.msg);
        if (one && all && s2) {
            const int F = one->n;
            TEST_CHECK(F == one->total_frames && all->total_frames == 2 * F && all->n == 2 * F,
                       "%s joined: %lld frames, %d sampled at the native rate (one piece: %d)", vids[i % 2],
                       (long long)all->total_frames, all->n, F);
            int same = all->n == 2 * F, mono = 1;
            for (int k = 0; same && k < 2 * F; k++) {
                const media_image *a = all->frames[k], *o = one->frames[k % F];
                const double want_t = o->timestamp + (k >= F ? one->duration : 0.0);
                same = a->index == k && fabs(a->timestamp - want_t) < 1e-3 && a->width == o->width &&
                       a->height == o->height;
                for (int y = 0; same && y < a->height; y++)
                    same = !memcmp(a->rgb + (size_t)y * a->stride, o->rgb + (size_t)y * o->stride, (size_t)a->width * 3);
                if (!same)
                    fprintf(stderr, "%s joined: frame %d (index %lld at %.3f s) is not piece frame %d at %.3f s\n",
                            vids[i % 2], k, (long long)a->index, a->timestamp, k % F, want_t);
                if (k > 0 && !(a->timestamp > all->frames[k - 1]->timestamp)) mono = 0;
            }
            TEST_CHECK(same && mono, "%s joined: both pieces' frames in order, the second %.3f s later", vids[i % 2],
                       one->duration);
            TEST_CHECK(fabs(all->duration - 2 * one->duration) < 1e-3, "%s joined lasts %.3f s (one piece %.3f)",
                       vids[i % 2], all->duration, one->duration);
            int ok2 = s2->n == (int)floor(all->duration * 2 + 1e-9); /* (media.h's n: under 128 and the frames here) */
            for (int k = 0; ok2 && k < s2->n; k++) {
                const media_image *a = s2->frames[k], *r = all->frames[s2->frames[k]->index];
                ok2 = fabs(a->timestamp - r->timestamp) < 1e-9 && !memcmp(a->rgb, r->rgb, (size_t)a->stride * a->height);
            }
            TEST_CHECK(ok2 && s2->n > 0 && s2->frames[s2->n - 1]->index >= F,
                       "%s joined at 2 fps: %d frames, the last index %lld, each the native-rate frame of its index",
                       vids[i % 2], s2->n, s2->n ? (long long)s2->frames[s2->n - 1]->index : -1LL);
        }
        media_frames_free(one);
        media_frames_free(all);
        media_frames_free(s2);
        remove(joined);
    }
    unsetenv("NVL_VIDEO_SEEK_GAP");
    /* A 32 s TS (tests/reference/gen_long_gop_ts.sh: 128 frames at 4 fps, ffprobe's times): every
     * frame, at ffprobe's times; then samples of 3 and 6 frames with a seek wherever the next is 5
     * frames ahead: 16 s seeks (past the 10 s a jump in the times is taken at: the first packet
     * after such a seek was once moved to follow the one before the seek, and the frames after it
     * were taken 16 s early) and 5 s ones, each frame the one of its index. */
    {
        cJSON *lg = NULL;
        if (nvl_json_load_file(&lg, test_data_path("media/long_gop_ts.json"), 1 << 20, &err) != NVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        const cJSON *pt = cJSON_GetObjectItemCaseSensitive(lg, "pts_time");
        const int nf = cJSON_GetObjectItemCaseSensitive(lg, "frames")->valueint;
        media_frames *all = NULL;
        media_video_params vp = media_video_params_default();
        vp.fps = 4, vp.max_frames = 1000;
        nvl_status st = media_video_sample(test_data_path("media/made/long_gop.ts"), &vp, NULL, &all, &err);
        TEST_CHECK(st == NVL_OK && all && all->n == nf && cJSON_GetArraySize(pt) == nf,
                   "long_gop.ts, every frame: %d of ffprobe's %d (%s)", all ? all->n : -1, nf, st == NVL_OK ? "" : err.msg);
        int times = all && all->n == nf;
        for (int k = 0; times && k < nf; k++)
            times = fabs(all->frames[k]->timestamp -
                         (cJSON_GetArrayItem(pt, k)->valuedouble - cJSON_GetArrayItem(pt, 0)->valuedouble)) < 1e-3;
        TEST_CHECK(times, "long_gop.ts: each frame at ffprobe's time");
        setenv("NVL_VIDEO_SEEK_GAP", "5", 1);
        for (int mf = 3; times && mf <= 6; mf += 3) {
            media_frames *s3 = NULL;
            vp.fps = 2, vp.max_frames = mf;
            st = media_video_sample(test_data_path("media/made/long_gop.ts"), &vp, NULL, &s3, &err);
            int same = st == NVL_OK && s3->n == mf;
            for (int k = 0; same && k < s3->n; k++) {
                const media_image *a = s3->frames[k], *r = all->frames[a->index];
                same = a->index >= 0 && a->index < nf && fabs(a->timestamp - r->timestamp) < 1e-9 &&
                       !memcmp(a->rgb, r->rgb, (size_t)a->stride * (size_t)a->height);
                if (!same) fprintf(stderr, "long_gop.ts, %d frames with seeks: frame %d (index %lld) is not that frame\n", mf,
                                   k, (long long)a->index);
            }
            TEST_CHECK(same, "long_gop.ts, %d frames with seeks between them: each the frame of its index (%s)", mf,
                       st == NVL_OK ? "" : err.msg);
            media_frames_free(s3);
        }
        unsetenv("NVL_VIDEO_SEEK_GAP");
        media_frames_free(all);
        cJSON_Delete(lg);
    }
    /* Constant rates in millisecond times (tests/reference/gen_ms_timebase.sh: .mkv at 60 and 30 fps):
     * the frames vLLM's loader samples (frame count / rate, linspace truncated), each at index / rate,
     * the duration frames / rate (planned on the rounded times: 5 frames of the 60 fps clip, and at
     * 30 fps frames one early) */
    {
        cJSON *ms = NULL;
        if (nvl_json_load_file(&ms, test_data_path("media/ms_timebase.json"), 1 << 20, &err) != NVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        const cJSON *v = NULL;
        cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(ms, "videos")) {
            const char *file = cJSON_GetObjectItemCaseSensitive(v, "file")->valuestring;
            const cJSON *want = cJSON_GetObjectItemCaseSensitive(v, "indices");
            const int frames = cJSON_GetObjectItemCaseSensitive(v, "frames")->valueint;
            int num = 0, den = 1;
            sscanf(cJSON_GetObjectItemCaseSensitive(v, "rate")->valuestring, "%d/%d", &num, &den);
            char rel[128];
            snprintf(rel, sizeof rel, "media/%s", file);
            media_frames *fr = NULL;
            nvl_status st = media_video_sample(test_data_path(rel), NULL, NULL, &fr, &err);
            int same = st == NVL_OK && fr->n == cJSON_GetArraySize(want);
            for (int k = 0; same && k < fr->n; k++)
                same = fr->frames[k]->index == cJSON_GetArrayItem(want, k)->valueint &&
                       fabs(fr->frames[k]->timestamp - (double)fr->frames[k]->index * den / num) < 1e-9;
            TEST_CHECK(same, "%s: %d frames sampled, vLLM's loader takes %d (%s)", file, fr ? fr->n : -1,
                       cJSON_GetArraySize(want), st == NVL_OK ? "" : err.msg);
            for (int k = 0; !same && fr && k < fr->n; k++) fprintf(stderr, "  %lld", (long long)fr->frames[k]->index);
            if (fr) TEST_CHECK(fr->total_frames == frames && fabs(fr->duration - (double)frames * den / num) < 1e-9,
                               "%s: %lld frames, %.6f s (ffprobe: %d frames at %d/%d)", file, (long long)fr->total_frames,
                               fr->duration, frames, num, den);
            media_frames_free(fr);
        }
        cJSON_Delete(ms);
    }
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
    { /* an animated WebP: its first frame, as Pillow opens it (it was refused: FFmpeg's decoder
           read no image in it); gen_video_containers.py wrote it losslessly, frame 0 all (200, 40, 40) */
        media_image *im = NULL;
        nvl_status st = media_decode_image_file(test_data_path("media/made/anim.webp"), NULL, &im, &err);
        TEST_CHECK(st == NVL_OK && im && im->width == 24 && im->height == 16, "animated WebP: %s",
                   st == NVL_OK ? "24x16 expected" : err.msg);
        int off = 0;
        for (int i = 0; im && i < im->width * im->height; i++)
            off += im->rgb[3 * i] != 200 || im->rgb[3 * i + 1] != 40 || im->rgb[3 * i + 2] != 40;
        TEST_CHECK(im && off == 0, "animated WebP: %d pixels are not the first frame's (200, 40, 40)", off);
        media_image_free(im);
    }
    cJSON_Delete(root);
    test_anim_frames();
    return test_report();
}
