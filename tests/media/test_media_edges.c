/* Edge cases of issue 16 on small committed inputs (tests/reference/gen_media_edges.py ->
 * tests/data/media/edges/ and edges_goldens.json), each against an independent tool:
 * - columns: 4:2:0 video (H.264, H.265, VP9) and lossy WebP at widths that are not multiples of
 *   16 (WebP also odd): the first frame equals ffmpeg's own rgb24 conversion (the WebP stills:
 *   Pillow's decode, libwebp's, which nanovl uses too)
 *   (`ffmpeg -i F -f rawvideo -pix_fmt rgb24 -`, bicubic) pixel for pixel, checked column by column,
 *   exactly (0 levels: same libswscale, same flags);
 * - vfr: variable-frame-rate clips (gaps, accelerating spacing; MP4 and Matroska, B-frames):
 *   frame count, the true duration (the container's, not count / nominal rate), and at 2 fps the
 *   sampled frames and their timestamps equal the rule applied to ffprobe's per-frame times
 *   (1 ms); at 30 fps every kept frame's timestamp is its ffprobe time; also frames sharing a
 *   time (the later one was never taken: a clip's last frame lost) and an MPEG-TS cut within its
 *   first GOP (its packets before the first keyframe were counted as frames);
 * - avif: AVIF stills (brand avif, and mif1 + avif) are images, not one-frame videos: sizes equal
 *   Pillow's, pixels equal ffmpeg's own rgb24 conversion exactly and Pillow's (libavif's own
 *   YUV->RGB) within 8 levels, mean under 2; an AVIF with alpha and HEIF/HEIC stills are refused
 *   as unsupported with a message naming the file and the format; an animated AVIF (avis) is a
 *   video of ffprobe's frame count;
 * - orient: every orientation 1-8 as TIFF tag, PNG eXIf, WebP EXIF and JPEG APP1 equals Pillow's
 *   exif_transpose pixel for pixel (exact), and img->orientation says what was applied;
 * - sampling: JPEGs (cjpeg) with sampling factors TurboJPEG's header call cannot classify
 *   (Y 3x1, 4x2, 3x2 progressive, 1x3; Y 2x1 + Cb 1x2 + Cr 1x1; chroma finer than luma) decode
 *   equal to Pillow's (libjpeg's) pixels, exactly. */
#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "base/json_util.h"
#include "base/mapped_file.h"
#include "media.h"
#include "sha256.h"
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
    printf("columns: %d clips and stills compared column by column with ffmpeg's conversion (stills: Pillow's)\n", n);
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

/* Raw H.264 / HEVC streams (Annex B, no container: gen_media_edges.py "containers") were not
 * recognised: each is a video whose frame count is ffprobe's count of decoded frames, its samples
 * the first and last (no times: frame index / the demuxer's rate). */
static void test_raw_streams(void) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(g_gold, "raw_streams"), *e;
    int n = 0;
    cJSON_ArrayForEach(e, arr) {
        const char *file = cJSON_GetObjectItemCaseSensitive(e, "file")->valuestring;
        const int frames = cJSON_GetObjectItemCaseSensitive(e, "frames")->valueint;
        nvl_err err = {0};
        enum media_kind k = MEDIA_KIND_UNKNOWN;
        TEST_CHECK(media_sniff_file(edge_path(file), &k, &err) == NVL_OK && k == MEDIA_KIND_VIDEO, "%s: sniffed as %s",
                   file, media_kind_name(k));
        media_frames *f = NULL;
        nvl_status st = media_video_sample(edge_path(file), NULL, NULL, &f, &err);
        TEST_CHECK(st == NVL_OK, "%s: %s", file, err.msg);
        if (f) {
            TEST_CHECK(f->total_frames == frames, "%s: %lld frames, ffprobe decodes %d", file, (long long)f->total_frames,
                       frames);
            TEST_CHECK(f->n >= 2 && f->frames[0]->index == 0 && f->frames[f->n - 1]->index == frames - 1,
                       "%s: %d samples, from frame %lld to %lld", file, f->n, f->n ? (long long)f->frames[0]->index : -1LL,
                       f->n ? (long long)f->frames[f->n - 1]->index : -1LL);
        }
        media_frames_free(f);
        n++;
    }
    TEST_CHECK(n == 2, "%d raw streams ran, expected 2", n);
    /* the containers' magic: ASF, IVF, MXF; an Annex B start code before an H.264 SPS or an HEVC VPS,
       but not before other bytes */
    const struct { const char *head; size_t len; enum media_kind k; } mg[] = {
        {"\x30\x26\xB2\x75\x8E\x66\xCF\x11\xA6\xD9\x00\xAA\x00\x62\xCE\x6C", 16, MEDIA_KIND_VIDEO},
        {"DKIF\0\0\x20\0VP90\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 32, MEDIA_KIND_VIDEO},
        {"\x06\x0E\x2B\x34\x02\x05\x01\x01\x0D\x01\x02\x01\x01\x02", 14, MEDIA_KIND_VIDEO},
        {"\0\0\0\x01\x67\x64", 6, MEDIA_KIND_VIDEO}, {"\0\0\0\x01\x40\x01", 6, MEDIA_KIND_VIDEO},
        {"\0\0\0\x01\xE7\x64", 6, MEDIA_KIND_UNKNOWN}, {"\0\0\0\x01\x41\x9a", 6, MEDIA_KIND_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof mg / sizeof mg[0]; i++)
        TEST_CHECK(media_sniff((const uint8_t *)mg[i].head, mg[i].len) == mg[i].k, "magic %zu sniffed as %s", i,
                   media_kind_name(media_sniff((const uint8_t *)mg[i].head, mg[i].len)));
}

/* Files cut mid-packet without an index to say so (gen_media_edges.py "cut": a fragmented MP4, an
 * FLV) were refused ("cannot decode: Invalid data"); and the cut packet, which makes no frame, was
 * counted: a planned frame that never came (the video's end lost), and a span stretched past the
 * frames there are. The frames counted are ffmpeg's, the last sampled ffmpeg's last, exactly; at
 * 25 fps every one, none twice. */
static void test_cut(void) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(g_gold, "cut"), *e;
    int n = 0;
    cJSON_ArrayForEach(e, arr) {
        const char *file = cJSON_GetObjectItemCaseSensitive(e, "file")->valuestring;
        const int frames = cJSON_GetObjectItemCaseSensitive(e, "decoded_frames")->valueint;
        const char *sha = cJSON_GetObjectItemCaseSensitive(e, "last_rgb_sha256")->valuestring;
        nvl_err err = {0};
        media_frames *f = NULL;
        media_video_params vp = media_video_params_default();
        vp.fps = 5; /* (planned: the cut packet last, the frame before it not: it must be taken in its place) */
        nvl_status st = media_video_sample(edge_path(file), &vp, NULL, &f, &err);
        TEST_CHECK(st == NVL_OK, "%s: %s", file, err.msg);
        if (f) {
            TEST_CHECK(f->total_frames == frames, "%s: %lld frames counted, ffmpeg decodes %d (the packet read short is none)",
                       file, (long long)f->total_frames, frames);
            const media_image *last = f->n ? f->frames[f->n - 1] : NULL;
            char hex[65] = "";
            if (last) sha256_hex(last->rgb, (size_t)last->width * (size_t)last->height * 3, hex);
            TEST_CHECK(last && !strcmp(hex, sha) && last->index == frames - 1,
                       "%s: the last frame (%lld) is not ffmpeg's last (%d)", file, last ? (long long)last->index : -1LL,
                       frames - 1);
        }
        media_frames_free(f);
        f = NULL;
        vp.fps = 25; /* every frame: as many as ffmpeg decodes, none twice */
        st = media_video_sample(edge_path(file), &vp, NULL, &f, &err);
        TEST_CHECK(st == NVL_OK && f && f->n >= frames - 1 && f->n <= frames, "%s at 25 fps: %d frames, ffmpeg %d (%s)",
                   file, f ? f->n : -1, frames, st == NVL_OK ? "" : err.msg);
        for (int i = 1; f && i < f->n; i++)
            TEST_CHECK(f->frames[i]->index > f->frames[i - 1]->index, "%s: frame %lld taken twice", file,
                       (long long)f->frames[i]->index);
        media_frames_free(f);
        n++;
    }
    TEST_CHECK(n == 2, "%d cut files ran, expected 2", n);
}

static void test_avif(void) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(g_gold, "avif"), *e;
    int n = 0;
    cJSON_ArrayForEach(e, arr) {
        const char *file = cJSON_GetObjectItemCaseSensitive(e, "file")->valuestring;
        const char *mode = cJSON_GetObjectItemCaseSensitive(e, "mode")->valuestring;
        nvl_err err = {0};
        enum media_kind k = MEDIA_KIND_UNKNOWN;
        TEST_EQ_INT(media_sniff_file(edge_path(file), &k, &err), NVL_OK);
        if (!strcmp(mode, "anim")) {
            TEST_CHECK(k == MEDIA_KIND_VIDEO, "%s: an AVIF sequence sniffed as %s", file, media_kind_name(k));
            media_frames *f = NULL;
            media_video_params vp = media_video_params_default();
            vp.fps = 30;
            nvl_status st = media_video_sample(edge_path(file), &vp, NULL, &f, &err);
            TEST_CHECK(st == NVL_OK, "%s: %s", file, err.msg);
            if (f) TEST_CHECK(f->total_frames == cJSON_GetObjectItemCaseSensitive(e, "frames")->valueint,
                              "%s: %lld frames", file, (long long)f->total_frames);
            media_frames_free(f);
            n++;
            continue;
        }
        TEST_CHECK(k == MEDIA_KIND_AVIF, "%s: sniffed as %s, not avif", file, media_kind_name(k));
        media_image *img = NULL;
        nvl_status st = media_decode_image_file(edge_path(file), NULL, &img, &err);
        if (!strcmp(mode, "RGBA")) {
            TEST_CHECK(st == NVL_ERR_UNSUPPORTED && strstr(err.msg, file) && strstr(err.msg, "unsupported image format") &&
                           strstr(err.msg, "alpha"), "%s: %s: %s", file, nvl_status_name(st), err.msg);
        } else if (!media_supports(MEDIA_KIND_AVIF)) {
            TEST_CHECK(st == NVL_ERR_UNSUPPORTED && strstr(err.msg, "unsupported image format"), "%s: %s", file, err.msg);
        } else {
            TEST_CHECK(st == NVL_OK, "%s: %s", file, err.msg);
            const int w = cJSON_GetObjectItemCaseSensitive(e, "width")->valueint;
            const int h = cJSON_GetObjectItemCaseSensitive(e, "height")->valueint;
            char rgb_rel[600];
            snprintf(rgb_rel, sizeof rgb_rel, "%s.rgb", file);
            char *ref = NULL;
            size_t ref_len = 0;
            TEST_EQ_INT(nvl_read_file(edge_path(rgb_rel), 1 << 24, &ref, &ref_len, &err), NVL_OK);
            if (img && ref && ref_len == (size_t)w * (size_t)h * 3) {
                compare_columns(file, img, (const uint8_t *)ref, w, h, 0);
                const cJSON *px = cJSON_GetObjectItemCaseSensitive(e, "pillow");
                if (img->width == w && img->height == h && cJSON_GetArraySize(px) == w * h * 3) {
                    float *a = malloc((size_t)w * (size_t)h * 3 * sizeof(float)), *b = malloc((size_t)w * (size_t)h * 3 * sizeof(float));
                    double sum = 0;
                    for (int i = 0; i < w * h * 3; i++) {
                        a[i] = img->rgb[i];
                        b[i] = (float)cJSON_GetArrayItem(px, i)->valuedouble;
                        sum += fabs(a[i] - b[i]);
                    }
                    char what[300];
                    snprintf(what, sizeof what, "%s vs Pillow", file);
                    test_compare_f32(what, a, b, (size_t)w * (size_t)h * 3, 8.0, 0.0, 1e-3);
                    TEST_CHECK(sum / (w * h * 3) < 2.0, "%s: mean difference from Pillow %.3f", file, sum / (w * h * 3));
                    free(a);
                    free(b);
                }
            }
            nvl_free(ref);
        }
        media_image_free(img);
        n++;
    }
    TEST_CHECK(n >= 4, "only %d AVIF cases ran", n);
    /* brands, from hand-made ftyp boxes: mif1 + avif is AVIF; heic, heix, mif1 + heic are HEIF;
     * avis, msf1, isom are video */
    static const struct { const char *box; enum media_kind k; } brands[] = {
        {"ftypmif1\0\0\0\0mif1miafavif", MEDIA_KIND_AVIF}, {"ftypavif\0\0\0\0avifmif1miaf", MEDIA_KIND_AVIF},
        {"ftypheic\0\0\0\0mif1heicmiaf", MEDIA_KIND_HEIF}, {"ftypheix\0\0\0\0mif1heixmiaf", MEDIA_KIND_HEIF},
        {"ftypmif1\0\0\0\0mif1heicmiaf", MEDIA_KIND_HEIF}, {"ftypavis\0\0\0\0avifavismsf1", MEDIA_KIND_VIDEO},
        {"ftypmsf1\0\0\0\0msf1hevciso8", MEDIA_KIND_VIDEO},    {"ftypisom\0\0\2\0isomiso2mp41", MEDIA_KIND_VIDEO},
    };
    for (size_t i = 0; i < sizeof brands / sizeof brands[0]; i++) {
        uint8_t b[64] = {0};
        const size_t box = 4 + 4 + 4 + 4 + 12; /* size, "ftyp", major, minor, 3 compatible brands */
        b[3] = (uint8_t)box;
        memcpy(b + 4, brands[i].box, box - 4);
        enum media_kind k = media_sniff(b, sizeof b);
        TEST_CHECK(k == brands[i].k, "ftyp %.8s...: %s, expected %s", brands[i].box + 4, media_kind_name(k),
                   media_kind_name(brands[i].k));
        if (brands[i].k == MEDIA_KIND_HEIF) {
            media_image *img = NULL;
            nvl_err err = {0};
            nvl_status st = media_decode_image(b, sizeof b, "photo.heic", NULL, &img, &err);
            /* a bare ftyp: with libheif, a HEIF with no meta box (damaged); without, unsupported */
            if (media_supports(MEDIA_KIND_HEIF))
                TEST_CHECK(st == NVL_ERR_FORMAT && strstr(err.msg, "photo.heic: damaged HEIF: "), "HEIF: %s: %s",
                           nvl_status_name(st), err.msg);
            else
                TEST_CHECK(st == NVL_ERR_UNSUPPORTED && strstr(err.msg, "photo.heic: unsupported image format: HEIF"),
                           "HEIF: %s: %s", nvl_status_name(st), err.msg);
            media_image_free(img);
        }
    }
    /* a generic major brand (isom, mp42) over an image file: an image brand among the compatible
       ones and 'meta' straight after ftyp is a still; 'moov' there, or no image brand, a movie */
    {
        static const struct { const char *box, *next; enum media_kind k; } generic[] = {
            {"ftypisom\0\0\0\0mif1heicmiaf", "meta", MEDIA_KIND_HEIF}, {"ftypmp42\0\0\0\0mif1heicmiaf", "meta", MEDIA_KIND_HEIF},
            {"ftypisom\0\0\0\0mif1avifmiaf", "meta", MEDIA_KIND_AVIF}, {"ftypisom\0\0\0\0mif1heicmiaf", "moov", MEDIA_KIND_VIDEO},
            {"ftypisom\0\0\0\0isomiso2mp41", "meta", MEDIA_KIND_VIDEO}, {"ftypmsf1\0\0\0\0msf1mif1heic", "meta", MEDIA_KIND_VIDEO},
            /* a movie with an image item (a cover: MP4Box -add-image writes meta before moov) */
            {"ftypisom\0\0\0\0mif1msf1heic", "meta", MEDIA_KIND_VIDEO}, {"ftypmp42\0\0\0\0mif1heicavis", "meta", MEDIA_KIND_VIDEO},
        };
        for (size_t i = 0; i < sizeof generic / sizeof generic[0]; i++) {
            uint8_t b[64] = {0};
            const size_t box = 4 + 4 + 4 + 4 + 12;
            b[3] = (uint8_t)box;
            memcpy(b + 4, generic[i].box, box - 4);
            b[box + 3] = 36;
            memcpy(b + box + 4, generic[i].next, 4);
            const enum media_kind k = media_sniff(b, sizeof b);
            TEST_CHECK(k == generic[i].k, "ftyp %.8s... then %s: %s, expected %s", generic[i].box + 4, generic[i].next,
                       media_kind_name(k), media_kind_name(generic[i].k));
        }
    }
    /* containers FFmpeg reads that were refused as unknown: FLV, Y4M, NUT, Blu-ray M2TS (TS packets
       of 192 bytes, a 4-byte timecode before each sync byte); an MP3's ID3 header stays unknown */
    {
        uint8_t b[400] = {0};
        memcpy(b, "FLV\x01\x01", 5);
        TEST_CHECK(media_sniff(b, sizeof b) == MEDIA_KIND_VIDEO, "FLV sniffed as video");
        memset(b, 0, sizeof b);
        memcpy(b, "YUV4MPEG2 W64 H48 F25:1", 23);
        TEST_CHECK(media_sniff(b, sizeof b) == MEDIA_KIND_VIDEO, "Y4M sniffed as video");
        memset(b, 0, sizeof b);
        memcpy(b, "nut/multimedia container", 24);
        TEST_CHECK(media_sniff(b, sizeof b) == MEDIA_KIND_VIDEO, "NUT sniffed as video");
        memset(b, 0, sizeof b);
        b[4] = b[196] = b[388] = 0x47;
        TEST_CHECK(media_sniff(b, sizeof b) == MEDIA_KIND_VIDEO, "M2TS sniffed as video");
        memset(b, 0, sizeof b);
        memcpy(b, "ID3\x04", 4);
        TEST_CHECK(media_sniff(b, sizeof b) == MEDIA_KIND_UNKNOWN, "an MP3 stays unknown");
    }
}

static void test_orient(void) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(g_gold, "orient"), *e;
    int n = 0;
    cJSON_ArrayForEach(e, arr) {
        const char *file = cJSON_GetObjectItemCaseSensitive(e, "file")->valuestring;
        const int o = cJSON_GetObjectItemCaseSensitive(e, "orientation")->valueint;
        const int w = cJSON_GetObjectItemCaseSensitive(e, "width")->valueint;
        const int h = cJSON_GetObjectItemCaseSensitive(e, "height")->valueint;
        const cJSON *px = cJSON_GetObjectItemCaseSensitive(e, "pixels");
        nvl_err err = {0};
        media_image *img = NULL;
        nvl_status st = media_decode_image_file(edge_path(file), NULL, &img, &err);
        TEST_CHECK(st == NVL_OK, "%s: %s", file, err.msg);
        if (!img) continue;
        TEST_CHECK(img->width == w && img->height == h, "%s: %dx%d, Pillow's exif_transpose %dx%d", file, img->width,
                   img->height, w, h);
        TEST_CHECK(img->orientation == (o > 1 ? o : 0), "%s: orientation %d recorded, expected %d", file, img->orientation,
                   o > 1 ? o : 0);
        if (img->width == w && img->height == h && cJSON_GetArraySize(px) == w * h * 3) {
            int bad = 0;
            for (int i = 0; i < w * h * 3; i++) bad += img->rgb[i] != cJSON_GetArrayItem(px, i)->valueint;
            TEST_CHECK(bad == 0, "%s: %d of %d samples differ from Pillow's exif_transpose", file, bad, w * h * 3);
        }
        media_image_free(img);
        n++;
    }
    TEST_CHECK(n == 32, "%d orientation cases ran, expected 8 x 4 formats", n);
}

/* Stills a differential test against Pillow found decoded wrong (gen_media_edges.py "decode"):
 * lossless WebP alpha dropped, lossy WebP through FFmpeg's YUV->RGB (up to 126 levels off),
 * gray TIFF stretched as limited range, a 32-bit BI_RGB BMP's 4th byte taken as alpha, JPEG in
 * TIFF decoded black, 16-bit TIFF samples rounded by swscale (v/257) where Pillow keeps the high
 * byte (16-bit PNG, through libpng, alongside), a GIF's screen outside its smaller first frame
 * filled with the background index's colour where Pillow has the transparent index or index 0,
 * tiled TIFFs decoded black (now refused), PNG EXIF in a "Raw profile type exif" text chunk not
 * applied; Netpbm (P1-P6) not read, a binary maxval FFmpeg wraps to black refused; animated WebP
 * refused where Pillow opens its first frame. Exact against Pillow, within 1 where FFmpeg scales
 * a maxval other than 255 or 65535 (the case's tol). */
static void test_decode(void) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(g_gold, "decode"), *e;
    int n = 0;
    cJSON_ArrayForEach(e, arr) {
        const char *file = cJSON_GetObjectItemCaseSensitive(e, "file")->valuestring;
        const cJSON *refuse = cJSON_GetObjectItemCaseSensitive(e, "refuse");
        const int tol = cJSON_GetObjectItemCaseSensitive(e, "tol")->valueint;
        nvl_err err = {0};
        media_image *img = NULL;
        const nvl_status st = media_decode_image_file(edge_path(file), NULL, &img, &err);
        n++;
        if (cJSON_IsString(refuse)) {
            TEST_CHECK((st == NVL_ERR_UNSUPPORTED || st == NVL_ERR_FORMAT) && strstr(err.msg, refuse->valuestring) && strstr(err.msg, file),
                       "%s: refused as '%s', naming the file (got %d: %s)", file, refuse->valuestring, st, err.msg);
            media_image_free(img);
            continue;
        }
        const int w = cJSON_GetObjectItemCaseSensitive(e, "width")->valueint;
        const int h = cJSON_GetObjectItemCaseSensitive(e, "height")->valueint;
        const cJSON *px = cJSON_GetObjectItemCaseSensitive(e, "pixels");
        TEST_CHECK(st == NVL_OK, "%s: %s", file, err.msg);
        if (!img) continue;
        TEST_CHECK(img->width == w && img->height == h, "%s: %dx%d, Pillow %dx%d", file, img->width, img->height, w, h);
        if (img->width == w && img->height == h && cJSON_GetArraySize(px) == w * h * 3) {
            int bad = 0, worst = 0;
            for (int i = 0; i < w * h * 3; i++) {
                const int d = abs((int)img->rgb[i] - cJSON_GetArrayItem(px, i)->valueint);
                bad += d > tol;
                worst = d > worst ? d : worst;
            }
            TEST_CHECK(bad == 0, "%s: %d of %d samples differ from Pillow's by more than %d (worst %d)", file, bad, w * h * 3,
                       tol, worst);
        }
        media_image_free(img);
    }
    TEST_CHECK(n == 51, "%d decode cases ran, expected 51", n);
    /* Netpbm's magic: P1-P6 then whitespace (a comment right after it, PAM's P7 and other text are not it) */
    const struct { const char *head; enum media_kind k; } pnm[] = {
        {"P1 ", MEDIA_KIND_PNM}, {"P4\n", MEDIA_KIND_PNM}, {"P6#", MEDIA_KIND_UNKNOWN}, {"P3\r\n", MEDIA_KIND_PNM},
        {"P5\t", MEDIA_KIND_PNM}, {"P7\n", MEDIA_KIND_UNKNOWN}, {"P0 ", MEDIA_KIND_UNKNOWN}, {"P6x", MEDIA_KIND_UNKNOWN},
        {"Pf\n", MEDIA_KIND_UNKNOWN}};
    for (size_t i = 0; i < sizeof pnm / sizeof pnm[0]; i++)
        TEST_CHECK(media_sniff((const uint8_t *)pnm[i].head, strlen(pnm[i].head)) == pnm[i].k, "'%s' sniffed as %s",
                   pnm[i].head, media_kind_name(media_sniff((const uint8_t *)pnm[i].head, strlen(pnm[i].head))));
}

static void test_sampling(void) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(g_gold, "sampling"), *e;
    int n = 0;
    cJSON_ArrayForEach(e, arr) {
        const char *file = cJSON_GetObjectItemCaseSensitive(e, "file")->valuestring;
        const int w = cJSON_GetObjectItemCaseSensitive(e, "width")->valueint;
        const int h = cJSON_GetObjectItemCaseSensitive(e, "height")->valueint;
        char rgb_rel[600];
        snprintf(rgb_rel, sizeof rgb_rel, "%s.rgb", file);
        nvl_err err = {0};
        char *ref = NULL;
        size_t ref_len = 0;
        TEST_EQ_INT(nvl_read_file(edge_path(rgb_rel), 1 << 24, &ref, &ref_len, &err), NVL_OK);
        media_image *img = NULL;
        nvl_status st = media_decode_image_file(edge_path(file), NULL, &img, &err);
        TEST_CHECK(st == NVL_OK, "%s: %s", file, err.msg);
        if (img && ref && ref_len == (size_t)w * (size_t)h * 3) compare_columns(file, img, (const uint8_t *)ref, w, h, 0);
        media_image_free(img);
        nvl_free(ref);
        n++;
    }
    TEST_CHECK(n >= 6, "only %d sampling cases ran", n);
    /* a damaged JPEG of such sampling is still an error that names it, through the fallback */
    char *buf = NULL;
    size_t len = 0;
    nvl_err err = {0};
    if (nvl_read_file(edge_path("samp_3x1_1x1_1x1.jpg"), 1 << 24, &buf, &len, &err) == NVL_OK) {
        media_image *img = NULL;
        nvl_status st = media_decode_image((const uint8_t *)buf, 200, "cut.jpg", NULL, &img, &err);
        TEST_CHECK(st == NVL_OK || strstr(err.msg, "cut.jpg"), "cut JPEG: %s", err.msg);
        media_image_free(img);
        memset(buf + 20, 0xFF, 40); /* tables overwritten */
        st = media_decode_image((const uint8_t *)buf, len, "broken.jpg", NULL, &img, &err);
        TEST_CHECK(st == NVL_OK || (st == NVL_ERR_FORMAT && strstr(err.msg, "broken.jpg")), "broken JPEG: %s: %s",
                   nvl_status_name(st), err.msg);
        media_image_free(img);
        nvl_free(buf);
    }
}

int main(void) {
    nvl_err err = {0};
    if (nvl_json_load_file(&g_gold, test_data_path("media/edges_goldens.json"), 1 << 22, &err) != NVL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int64_t live0 = nvl_alloc_count();
    test_columns();
    test_decode();
    test_vfr();
    test_raw_streams();
    test_cut();
    test_avif();
    test_orient();
    test_sampling();
    TEST_EQ_INT(nvl_alloc_count(), live0);
    cJSON_Delete(g_gold);
    return test_report();
}
