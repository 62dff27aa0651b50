/* Media decoders on the real corpus in ../shared/media, driven by its MANIFEST.tsv: every file
 * does what its row says (decodes / is rejected with a clear error / encrypted / tolerated),
 * and decoded results match references made by independent tools
 * (tests/reference/gen_media_goldens.py -> tests/data/media/goldens.json):
 * - PNG and JPEG pixels: SHA-256 equal to Pillow's decode under the same rules (exact);
 * - PDF: page count and sizes equal pdfinfo (0.01 pt), page 1 at 50 dpi the same size as
 *   pdftocairo's and its pixels equal (exact; same poppler + cairo), except for the files in
 *   k_pdf_render_differences, whose pixels are compared with pdftocairo's within stated bounds;
 * - video: frame count, frame rate, sampled indices and timestamps equal ffprobe's (1 ms).
 * The field corpus (../shared/media/field/MANIFEST.tsv, issue 16) runs the same way with its
 * references in tests/data/media/edges_goldens.json "field" (gen_media_edges.py): pixels
 * against Pillow (exif_transpose), AVIF and video frames against ffmpeg's own rgb24 conversion
 * (sha256, exact), durations and frame times against ffprobe, pages against pdfinfo; a flat
 * colour a row states holds in every column.
 * Plus page ranges, limits, and clear errors for missing files. */
#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "base/json_util.h"
#include "base/mapped_file.h"
#include "media.h"
#include "sha256.h"
#include "test_util.h"

static cJSON *g_gold, *g_edges, *g_pdf_refs;

/* The only PDFs whose page 1 may differ from pdftocairo's (same poppler + cairo, so every other
 * render must be bit-identical), each with the reason and its bounds; the reference pixels are
 * pdftocairo's (tests/reference/gen_pdf_render_refs.py -> tests/data/media/pdf_ref/). */
static const struct {
    const char *rel, *why;
    double max_frac; /* share of pixels with any channel different */
    int max_diff;    /* largest difference of one channel */
} k_pdf_render_differences[] = {
    {"pdf/amt_handbook_sample.pdf",
     "embedded bitmaps: pdftocairo downscales them with another cairo filter than poppler_page_render "
     "(measured: 0.30 % of pixels differ, by at most 2; bounds 1 % and 4)",
     0.01, 4},
};

/* img (page 1 at 50 dpi) against pdftocairo's pixels where a renderer difference is documented:
 * the same size, each channel's mean within 0.01 of pdftocairo's, at most max_frac of the pixels
 * different and none by more than max_diff. */
static void check_pdf_render_difference(const char *rel, const media_image *img) {
    int k = -1;
    for (size_t i = 0; i < sizeof k_pdf_render_differences / sizeof k_pdf_render_differences[0]; i++)
        if (!strcmp(k_pdf_render_differences[i].rel, rel)) k = (int)i;
    TEST_CHECK(k >= 0, "%s: page 1 differs from pdftocairo's and no renderer difference is documented for it", rel);
    if (k < 0) return;
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(g_pdf_refs, rel);
    TEST_CHECK(r != NULL, "%s: no reference in pdf_ref/refs.json", rel);
    if (!r) return;
    char path[512];
    snprintf(path, sizeof path, "media/pdf_ref/%s", cJSON_GetObjectItemCaseSensitive(r, "png")->valuestring);
    media_image *ref = NULL;
    nvl_err err = {0};
    TEST_EQ_INT(media_decode_image_file(test_data_path(path), NULL, &ref, &err), NVL_OK);
    if (!ref) return;
    TEST_CHECK(ref->width == img->width && ref->height == img->height, "%s: %dx%d, pdftocairo %dx%d", rel, img->width,
               img->height, ref->width, ref->height);
    if (ref->width == img->width && ref->height == img->height) {
        double sum[3] = {0, 0, 0};
        size_t n_diff = 0;
        int worst = 0;
        for (int y = 0; y < img->height; y++) {
            const uint8_t *a = img->rgb + (size_t)y * img->stride, *b = ref->rgb + (size_t)y * ref->stride;
            for (int x = 0; x < img->width; x++) {
                int d = 0;
                for (int c = 0; c < 3; c++) {
                    sum[c] += a[3 * x + c];
                    const int e = abs((int)a[3 * x + c] - (int)b[3 * x + c]);
                    if (e > d) d = e;
                }
                n_diff += d > 0;
                if (d > worst) worst = d;
            }
        }
        const double np = (double)img->width * img->height, frac = (double)n_diff / np;
        const cJSON *cm = cJSON_GetObjectItemCaseSensitive(r, "channel_means");
        for (int c = 0; c < 3; c++) {
            const double m = sum[c] / np, want = cJSON_GetArrayItem(cm, c)->valuedouble;
            TEST_CHECK(fabs(m - want) <= 0.01, "%s: page 1 channel %d mean %.4f, pdftocairo %.4f", rel, c, m, want);
        }
        printf("  %s: page 1 not bit-identical to pdftocairo (%s): %.3f %% of pixels differ, by at most %d\n", rel,
               k_pdf_render_differences[k].why, 100 * frac, worst);
        TEST_CHECK(frac <= k_pdf_render_differences[k].max_frac, "%s: %.3f %% of pixels differ from pdftocairo's (at most %.3f %%)",
                   rel, 100 * frac, 100 * k_pdf_render_differences[k].max_frac);
        TEST_CHECK(worst <= k_pdf_render_differences[k].max_diff, "%s: a pixel differs by %d from pdftocairo's (at most %d)", rel,
                   worst, k_pdf_render_differences[k].max_diff);
    }
    media_image_free(ref);
}

static const cJSON *golden(const char *rel) {
    if (!strncmp(rel, "field/", 6))
        return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(g_edges, "field"), rel + 6);
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(g_gold, "files"), rel);
}

static double gnum(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* 0 ok, else the status */
static nvl_status try_image(const char *path, const char *rel, int check_gold) {
    nvl_err err = {0};
    uint8_t *buf = NULL;
    size_t len = 0;
    media_image *img = NULL;
    nvl_status st = media_read_file(path, NULL, &buf, &len, &err);
    if (st == NVL_OK) st = media_decode_image(buf, len, rel, NULL, &img, &err);
    if (st != NVL_OK) {
        TEST_CHECK(strlen(err.msg) > 0 && strstr(err.msg, rel), "%s: error without a message naming it", rel);
        printf("  %s: %s: %s\n", rel, nvl_status_name(st), err.msg);
    } else if (check_gold) {
        const cJSON *g = golden(rel);
        const cJSON *sn = g ? cJSON_GetObjectItemCaseSensitive(g, "sniff") : NULL;
        if (sn) TEST_CHECK(!strcmp(media_kind_name(media_sniff(buf, len)), sn->valuestring), "%s: sniffed as %s, not %s", rel,
                           media_kind_name(media_sniff(buf, len)), sn->valuestring);
        if (g && !cJSON_GetObjectItemCaseSensitive(g, "reference_error")) {
            TEST_CHECK(img->width == gnum(g, "width") && img->height == gnum(g, "height"), "%s: %dx%d, expected %gx%g",
                       rel, img->width, img->height, gnum(g, "width"), gnum(g, "height"));
            char hex[65];
            sha256_hex(img->rgb, (size_t)img->width * (size_t)img->height * 3, hex);
            const char *ref = cJSON_GetObjectItemCaseSensitive(g, "sha256")->valuestring;
            TEST_CHECK(!strcmp(hex, ref), "%s: pixels differ from Pillow's", rel);
        }
    }
    media_image_free(img);
    nvl_free(buf);
    return st;
}

static nvl_status try_pdf(const char *path, const char *rel, const char *password, int check_gold) {
    nvl_err err = {0};
    media_pdf *pdf = NULL;
    nvl_status st = media_pdf_open(&pdf, path, password, NULL, &err);
    if (st != NVL_OK) {
        TEST_CHECK(strlen(err.msg) > 0 && strstr(err.msg, rel), "%s: error without a message naming it", rel);
        printf("  %s: %s: %s\n", rel, nvl_status_name(st), err.msg);
        return st;
    }
    const int n = media_pdf_page_count(pdf);
    const cJSON *g = check_gold ? golden(rel) : NULL;
    if (g) TEST_CHECK(n == gnum(g, "pages"), "%s: %d pages, pdfinfo says %g", rel, n, gnum(g, "pages"));
    for (int i = 0; i < n && st == NVL_OK; i++) {
        double w = 0, h = 0;
        st = media_pdf_page_size(pdf, i, &w, &h, &err);
        if (st != NVL_OK) {
            printf("  %s page %d: %s\n", rel, i + 1, err.msg);
            break;
        }
        const cJSON *sz = g ? cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(g, "sizes"), i) : NULL;
        if (sz)
            TEST_CHECK(fabs(w - cJSON_GetArrayItem(sz, 0)->valuedouble) < 0.01 && fabs(h - cJSON_GetArrayItem(sz, 1)->valuedouble) < 0.01,
                       "%s page %d: %.3f x %.3f pt, pdfinfo %.3f x %.3f", rel, i + 1, w, h,
                       cJSON_GetArrayItem(sz, 0)->valuedouble, cJSON_GetArrayItem(sz, 1)->valuedouble);
    }
    if (st == NVL_OK) {
        media_image *img = NULL;
        st = media_pdf_render(pdf, 0, 50, 0, &img, &err);
        TEST_CHECK(st == NVL_OK, "%s: render: %s", rel, err.msg);
        if (img && g) {
            const cJSON *ps = cJSON_GetObjectItemCaseSensitive(g, "page1_50dpi");
            TEST_CHECK(img->width == cJSON_GetArrayItem(ps, 0)->valueint && img->height == cJSON_GetArrayItem(ps, 1)->valueint,
                       "%s: page 1 at 50 dpi is %dx%d, pdftocairo %dx%d", rel, img->width, img->height,
                       cJSON_GetArrayItem(ps, 0)->valueint, cJSON_GetArrayItem(ps, 1)->valueint);
            char hex[65];
            const size_t np = (size_t)img->width * (size_t)img->height * 3;
            sha256_hex(img->rgb, np, hex);
            if (strcmp(hex, cJSON_GetObjectItemCaseSensitive(g, "page1_sha256")->valuestring))
                check_pdf_render_difference(rel, img);
            else
                g_test_pass++;
        }
        if (img) TEST_CHECK(img->width >= 1 && img->height >= 1, "%s: empty render", rel);
        media_image_free(img);
        /* default size: long side MEDIA_PDF_DEFAULT_LONG_SIDE */
        if (st == NVL_OK && media_pdf_render(pdf, 0, 0, 0, &img, &err) == NVL_OK) {
            TEST_EQ_INT(img->width > img->height ? img->width : img->height, MEDIA_PDF_DEFAULT_LONG_SIDE);
            media_image_free(img);
        }
    }
    media_pdf_close(pdf);
    return st;
}

static nvl_status try_video(const char *path, const char *rel, int check_gold) {
    nvl_err err = {0};
    media_frames *f = NULL;
    nvl_status st = media_video_sample(path, NULL, NULL, &f, &err);
    if (st != NVL_OK) {
        TEST_CHECK(strlen(err.msg) > 0 && strstr(err.msg, rel), "%s: error without a message naming it", rel);
        printf("  %s: %s: %s\n", rel, nvl_status_name(st), err.msg);
        return st;
    }
    const cJSON *g = check_gold ? golden(rel) : NULL;
    if (g) {
        TEST_CHECK(f->total_frames == gnum(g, "total"), "%s: %lld frames, ffprobe counts %g", rel,
                   (long long)f->total_frames, gnum(g, "total"));
        TEST_CHECK(fabs(f->native_fps - gnum(g, "fps")) < 1e-6, "%s: %.6f fps, ffprobe %.6f", rel, f->native_fps, gnum(g, "fps"));
        const cJSON *idx = cJSON_GetObjectItemCaseSensitive(g, "indices"), *ts = cJSON_GetObjectItemCaseSensitive(g, "timestamps");
        TEST_CHECK(f->n == cJSON_GetArraySize(idx), "%s: %d frames sampled, expected %d", rel, f->n, cJSON_GetArraySize(idx));
        int ok_i = 1, ok_t = 1;
        for (int i = 0; i < f->n && i < cJSON_GetArraySize(idx); i++) {
            ok_i &= f->frames[i]->index == (int64_t)cJSON_GetArrayItem(idx, i)->valuedouble;
            ok_t &= fabs(f->frames[i]->timestamp - cJSON_GetArrayItem(ts, i)->valuedouble) < 1e-3;
        }
        TEST_CHECK(ok_i, "%s: sampled frame indices differ from the rule on ffprobe's count", rel);
        TEST_CHECK(ok_t, "%s: sampled frame timestamps differ from ffprobe's", rel);
        TEST_CHECK(f->frames[0]->width == gnum(g, "width") && f->frames[0]->height == gnum(g, "height"),
                   "%s: frame %dx%d", rel, f->frames[0]->width, f->frames[0]->height);
        if (cJSON_GetObjectItemCaseSensitive(g, "duration"))
            TEST_CHECK(fabs(f->duration - gnum(g, "duration")) < 1e-3, "%s: duration %.3f s, the container %.3f s", rel,
                       f->duration, gnum(g, "duration"));
        /* every sampled frame equal to ffmpeg's own rgb24 conversion (sha256, exact) */
        const cJSON *fs = cJSON_GetObjectItemCaseSensitive(g, "frame_sha256");
        for (int i = 0; fs && i < f->n && i < cJSON_GetArraySize(fs); i++) {
            const media_image *im = f->frames[i];
            char hex[65];
            sha256_hex(im->rgb, (size_t)im->width * (size_t)im->height * 3, hex);
            TEST_CHECK(!strcmp(hex, cJSON_GetArrayItem(fs, i)->valuestring), "%s: frame %lld differs from ffmpeg's rgb24",
                       rel, (long long)im->index);
        }
        /* a flat colour the row states: every column, the right edge included, within 2 levels */
        const cJSON *flat = cJSON_GetObjectItemCaseSensitive(g, "flat");
        for (int i = 0; flat && i < f->n; i++) {
            const media_image *im = f->frames[i];
            int bad_col = -1;
            for (int x = 0; x < im->width && bad_col < 0; x++)
                for (int y = 0; y < im->height; y++)
                    for (int c = 0; c < 3; c++)
                        if (abs(im->rgb[(size_t)y * im->stride + (size_t)x * 3 + (size_t)c] - cJSON_GetArrayItem(flat, c)->valueint) > 2)
                            bad_col = x;
            TEST_CHECK(bad_col < 0, "%s frame %lld: column %d is not the flat colour", rel, (long long)im->index, bad_col);
        }
        /* pixels against PyAV (rgb24): 16x16 block means per channel. Both convert with
         * swscale and the same matrix (observed: equal to 5e-4); the 2.0-level tolerance leaves
         * room for other FFmpeg builds' chroma upsampling, averaged by the block means. */
        const cJSON *bm = cJSON_GetObjectItemCaseSensitive(g, "pyav_block_means");
        for (int i = 0; bm && i < f->n && i < cJSON_GetArraySize(bm); i++) {
            const media_image *im = f->frames[i];
            const int H = im->height / 16 * 16, W = im->width / 16 * 16, bh = H / 16, bw = W / 16;
            float mine[768], ref[768];
            for (int by = 0; by < 16; by++)
                for (int bx = 0; bx < 16; bx++)
                    for (int c = 0; c < 3; c++) {
                        double sum = 0;
                        for (int y = by * bh; y < (by + 1) * bh; y++)
                            for (int x = bx * bw; x < (bx + 1) * bw; x++) sum += im->rgb[(size_t)y * im->stride + (size_t)x * 3 + (size_t)c];
                        mine[(by * 16 + bx) * 3 + c] = (float)(sum / (bh * bw));
                        ref[(by * 16 + bx) * 3 + c] = (float)cJSON_GetArrayItem(cJSON_GetArrayItem(bm, i), (by * 16 + bx) * 3 + c)->valuedouble;
                    }
            char what[600];
            snprintf(what, sizeof what, "%s frame %lld vs PyAV", rel, (long long)im->index);
            test_compare_f32(what, mine, ref, 768, 2.0, 0.0, 1e-3);
        }
    }
    media_frames_free(f);
    return NVL_OK;
}

/* Runs every row of a manifest (dir: "" for media/MANIFEST.tsv, "field/" for the field one). */
static void test_manifest(const char *dir, int min_rows) {
    char man_rel[300];
    snprintf(man_rel, sizeof man_rel, "media/%sMANIFEST.tsv", dir);
    const char *man = test_shared_path(man_rel);
    if (!man) {
        printf("SKIP part: ../shared/%s is absent\n", man_rel);
        return;
    }
    char *text = NULL;
    size_t len = 0;
    nvl_read_file(man, 1 << 20, &text, &len, NULL);
    int n_rows = 0, n_decoded = 0, n_rejected = 0;
    char *save = NULL;
    strtok_r(text, "\n", &save); /* header */
    for (char *line = strtok_r(NULL, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *cols[8] = {0};
        int nc = 0;
        for (char *p = line; nc < 8;) {
            cols[nc++] = p;
            char *tab = strchr(p, '\t');
            if (!tab) break;
            *tab = 0;
            p = tab + 1;
        }
        if (nc < 6) continue;
        char rel[400];
        snprintf(rel, sizeof rel, "%s%s", dir, cols[0]);
        const char *kind = cols[3], *expect = cols[5];
        if (!strncmp(expect, "not a decoder input", 19)) continue;
        char rel_shared[600];
        snprintf(rel_shared, sizeof rel_shared, "media/%s", rel);
        const char *path = test_shared_path(rel_shared);
        if (!path) continue;
        n_rows++;
        /* "an image, not a video: decodes: ..., or, if AVIF is not supported, refused": decodes
         * when this build has the decoder */
        const int still_or_refused = !strncmp(expect, "an image", 8);
        const int decodes = !strncmp(expect, "decodes", 7) || !strncmp(expect, "tolerated", 9) ||
                            (still_or_refused && media_supports(MEDIA_KIND_AVIF));
        if (!strcmp(rel, "field/pages_2000.pdf")) {
            /* its page-range expectation (issue 16 item 3): 1999-2001 and 2001 refused with the page
             * count (2000, pdfinfo), 1999-2000 two pages; the --max-context one (item 7) is
             * cli_budget_fits in tests/api */
            nvl_err e2 = {0};
            media_pdf *pdf = NULL;
            if (media_pdf_open(&pdf, path, NULL, NULL, &e2) == NVL_OK) {
                int *pg = NULL, npg = 0;
                TEST_EQ_INT(media_pdf_select_pages(pdf, "1999-2001", &pg, &npg, &e2), NVL_ERR_INVALID_ARG);
                TEST_CONTAINS(e2.msg, "pages_2000.pdf: page range '1999-2001': 1999-2001 is outside the document's pages 1-2000 (it has 2000 pages)");
                TEST_EQ_INT(media_pdf_select_pages(pdf, "2001", &pg, &npg, &e2), NVL_ERR_INVALID_ARG);
                TEST_CONTAINS(e2.msg, "(it has 2000 pages)");
                TEST_EQ_INT(media_pdf_select_pages(pdf, "1999-2000", &pg, &npg, &e2), NVL_OK);
                TEST_EQ_INT(npg, 2);
                nvl_free(pg);
                media_pdf_close(pdf);
            } else
                TEST_CHECK(0, "%s: %s", rel, e2.msg);
        }
        if (!strcmp(rel, "field/aspect_97x64.png"))
            printf("  %s: pixels checked; its '<image>' text expectation is cli_plain_text (tests/api)\n", rel);
        const int rejected = !strncmp(expect, "must be rejected", 16);
        /* "truncated: ... either reject or accept" and the repaired-but-pageless PDF may do either */
        nvl_status st;
        if (!strcmp(kind, "pdf")) {
            if (!strncmp(expect, "encrypted", 9)) {
                st = try_pdf(path, rel, NULL, 0);
                TEST_CHECK(st == NVL_ERR_ENCRYPTED, "%s: without a password: %s", rel, nvl_status_name(st));
                st = try_pdf(path, rel, "openpassword", 0);
                TEST_CHECK(st == NVL_OK, "%s: with its password: %s", rel, nvl_status_name(st));
                continue;
            }
            st = try_pdf(path, rel, NULL, decodes);
        } else if (!strcmp(kind, "video")) {
            st = try_video(path, rel, decodes);
        } else {
            st = try_image(path, rel, decodes);
        }
        if (decodes) TEST_CHECK(st == NVL_OK, "%s should decode (%s): %s", rel, expect, nvl_status_name(st));
        if (rejected) TEST_CHECK(st != NVL_OK, "%s should be rejected (%s)", rel, expect);
        if (!strcmp(rel, "image/monkey12.jpg")) TEST_EQ_INT(st, NVL_ERR_UNSUPPORTED); /* 12-bit */
        if (still_or_refused) {
            enum media_kind k = MEDIA_KIND_UNKNOWN;
            nvl_err serr = {0};
            media_sniff_file(path, &k, &serr);
            TEST_CHECK(k != MEDIA_KIND_VIDEO, "%s is sniffed as a video (%s)", rel, expect);
            TEST_CHECK(st == NVL_OK || (st == NVL_ERR_UNSUPPORTED), "%s: %s", rel, nvl_status_name(st));
        }
        n_decoded += st == NVL_OK;
        n_rejected += st != NVL_OK;
    }
    printf("manifest %s: %d files, %d decoded, %d rejected\n", man_rel, n_rows, n_decoded, n_rejected);
    TEST_CHECK(n_rows >= min_rows, "only %d rows of %s ran", n_rows, man_rel);
    nvl_free(text);
}

static void test_page_ranges(void) {
    int *p = NULL, n = 0;
    nvl_err err = {0};
    TEST_EQ_INT(media_parse_page_range("1-3,7,10-", 12, &p, &n, &err), NVL_OK);
    int want[] = {0, 1, 2, 6, 9, 10, 11};
    TEST_EQ_INT(n, 7);
    for (int i = 0; i < n && i < 7; i++) TEST_EQ_INT(p[i], want[i]);
    nvl_free(p);
    TEST_EQ_INT(media_parse_page_range(NULL, 3, &p, &n, &err), NVL_OK);
    TEST_EQ_INT(n, 3);
    nvl_free(p);
    TEST_EQ_INT(media_parse_page_range("2,2,1", 3, &p, &n, &err), NVL_OK);
    TEST_CHECK(n == 2 && p[0] == 1 && p[1] == 0, "duplicates removed in order");
    nvl_free(p);
    TEST_EQ_INT(media_parse_page_range("0", 3, &p, &n, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "page range '0': pages are numbered from 1 (0 is none)");
    TEST_EQ_INT(media_parse_page_range("0-2", 1000000, &p, &n, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "pages are numbered from 1 (0 is none)");
    TEST_EQ_INT(media_parse_page_range("4", 3, &p, &n, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "outside the document's pages 1-3");
    /* ranges reaching past the end are refused naming the page count, never clamped (issue 16
     * item 3), with nothing returned; the open form "5-" is the way to say "to the end" */
    TEST_EQ_INT(media_parse_page_range("2-10", 5, &p, &n, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "2-10 is outside the document's pages 1-5 (it has 5 pages)");
    TEST_CHECK(p == NULL && n == 0, "2-10 over 5 pages: nothing returned");
    TEST_EQ_INT(media_parse_page_range("3-2000000000,1", 5, &p, &n, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "outside the document's pages 1-5");
    TEST_EQ_INT(media_parse_page_range("5-6", 5, &p, &n, &err), NVL_ERR_INVALID_ARG);
    TEST_EQ_INT(media_parse_page_range("4-", 5, &p, &n, &err), NVL_OK);
    TEST_CHECK(n == 2 && p[0] == 3 && p[1] == 4, "4- over 5 pages: %d pages", n);
    nvl_freep(&p);
    TEST_EQ_INT(media_parse_page_range("4-5", 5, &p, &n, &err), NVL_OK); /* exactly to the last page */
    TEST_CHECK(n == 2 && p[1] == 4, "4-5 over 5 pages: %d pages", n);
    nvl_freep(&p);
    TEST_EQ_INT(media_parse_page_range("6-9", 5, &p, &n, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "6-9 is outside the document's pages 1-5");
    TEST_CHECK(p == NULL && n == 0, "nothing returned for a range after the end");
    TEST_EQ_INT(media_parse_page_range("1-x", 3, &p, &n, &err), NVL_ERR_INVALID_ARG);
    TEST_EQ_INT(media_parse_page_range("3-1", 3, &p, &n, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "3-1 runs backwards (write 1-3)");
    /* a second number with a sign, or 0: not "backwards" with a suggestion that is no range
       ("write -2-1", "write 0-1"; a review) */
    TEST_EQ_INT(media_parse_page_range("1--2", 3, &p, &n, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "page range '1--2' is not like '1-3,7,10-'");
    TEST_EQ_INT(media_parse_page_range("1-+2", 3, &p, &n, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "is not like");
    TEST_EQ_INT(media_parse_page_range("1-0", 3, &p, &n, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "page range '1-0': pages are numbered from 1 (0 is none)");
    /* an open range starting past the end: not "backwards" (no end was written), not empty */
    TEST_EQ_INT(media_parse_page_range("5-", 2, &p, &n, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "page range '5-': 5- starts past the document's pages 1-2 (it has 2 pages)");
    TEST_CHECK(p == NULL && n == 0, "nothing selected for 5- over 2 pages");
    TEST_EQ_INT(media_parse_page_range("2-", 2, &p, &n, &err), NVL_OK); /* the last page alone */
    TEST_CHECK(n == 1 && p && p[0] == 1, "2- over 2 pages: %d pages", n);
    nvl_freep(&p);
    TEST_EQ_INT(media_parse_page_range("99999999999999999999", 2, &p, &n, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "a page number past any document");
    /* a range reaching past the end is refused with the page count, never clamped (issue 16 item 3) */
    TEST_EQ_INT(media_parse_page_range("1999-2001", 2000, &p, &n, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "page range '1999-2001': 1999-2001 is outside the document's pages 1-2000 (it has 2000 pages)");
    TEST_CHECK(p == NULL && n == 0, "nothing selected on error");
    TEST_EQ_INT(media_parse_page_range("1,2-4", 3, &p, &n, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "2-4 is outside the document's pages 1-3 (it has 3 pages)");
    TEST_EQ_INT(media_parse_page_range("2001", 2000, &p, &n, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "page 2001 is outside the document's pages 1-2000 (it has 2000 pages)");
    TEST_EQ_INT(media_parse_page_range("1-2", 1, &p, &n, &err), NVL_ERR_INVALID_ARG);
    TEST_CONTAINS(err.msg, "(it has 1 page)");
    /* up to the last page, and the open range "N-", still work */
    TEST_EQ_INT(media_parse_page_range("1999-2000", 2000, &p, &n, &err), NVL_OK);
    TEST_CHECK(n == 2 && p[0] == 1998 && p[1] == 1999, "1999-2000 of 2000");
    nvl_free(p);
    TEST_EQ_INT(media_parse_page_range("1999-", 2000, &p, &n, &err), NVL_OK);
    TEST_EQ_INT(n, 2);
    nvl_free(p);
}

static void test_limits(void) {
    nvl_err err = {0};
    const char *jpg = test_shared_path("media/image/tokyo.jpg");
    const char *vid = test_shared_path("media/video/sample.mp4");
    if (!jpg || !vid) return;
    media_limits lim = media_limits_default();
    lim.max_pixels = 1000;
    uint8_t *buf = NULL;
    size_t len = 0;
    media_image *img = NULL;
    media_read_file(jpg, NULL, &buf, &len, &err);
    TEST_EQ_INT(media_decode_image(buf, len, "tokyo.jpg", &lim, &img, &err), NVL_ERR_LIMIT);
    TEST_CONTAINS(err.msg, "exceeds the limit");
    nvl_freep(&buf);
    lim = media_limits_default();
    lim.max_file_bytes = 1000;
    TEST_EQ_INT(media_read_file(jpg, &lim, &buf, &len, &err) == NVL_OK ? NVL_OK : NVL_ERR_LIMIT, NVL_ERR_LIMIT);
    nvl_free(buf);
    /* frames cap and fps */
    lim = media_limits_default();
    lim.max_frames = 3;
    media_video_params vp = media_video_params_default();
    vp.fps = 30;
    media_frames *f = NULL;
    TEST_EQ_INT(media_video_sample(vid, &vp, &lim, &f, &err), NVL_OK);
    TEST_CHECK(f && f->n == 3, "max_frames cap: %d frames", f ? f->n : -1);
    media_frames_free(f);
    TEST_EQ_INT(media_video_sample("/nonexistent/v.mp4", NULL, NULL, &f, &err), NVL_ERR_NOT_FOUND);
    /* page cap */
    const char *mp = test_shared_path("media/pdf/multi_page.pdf");
    if (mp) {
        lim = media_limits_default();
        lim.max_pages = 2;
        media_pdf *pdf = NULL;
        int *pages = NULL, n = 0;
        TEST_EQ_INT(media_pdf_open(&pdf, mp, NULL, &lim, &err), NVL_OK);
        TEST_EQ_INT(media_pdf_select_pages(pdf, NULL, &pages, &n, &err), NVL_ERR_LIMIT);
        TEST_CONTAINS(err.msg, "5 pages selected, above the limit of 2");
        TEST_EQ_INT(media_pdf_select_pages(pdf, "2,4", &pages, &n, &err), NVL_OK);
        TEST_EQ_INT(n, 2);
        nvl_free(pages);
        media_pdf_close(pdf);
    }
    TEST_EQ_INT(media_decode_image((const uint8_t *)"hello", 5, "text.txt", NULL, &img, &err), NVL_ERR_UNSUPPORTED);
    TEST_CONTAINS(err.msg, "text.txt: not a recognised image, PDF or video format");
}

/* Every cap at exactly its value (allowed) and one past it (NVL_ERR_LIMIT). The sizes are
 * Pillow's, stat's, pdfinfo's and ffprobe's, not ours: tokyo.jpg is 600x800 (480000 pixels) in
 * 162937 bytes; multi_page.pdf has 5 pages; sample.mp4 holds 30 frames over 1.001 s (30000/1001
 * fps), so fps 30 asks floor(1.001 * 30) = 30 frames. */
static void test_limits_exact(void) {
    nvl_err err = {0};
    const char *jpg = test_shared_path("media/image/tokyo.jpg");
    const char *vid = test_shared_path("media/video/sample.mp4");
    const char *mp = test_shared_path("media/pdf/multi_page.pdf");
    if (!jpg || !vid || !mp) return;
    uint8_t *buf = NULL;
    size_t len = 0;
    media_image *img = NULL;
    TEST_EQ_INT(media_read_file(jpg, NULL, &buf, &len, &err), NVL_OK);
    TEST_CHECK(len == 162937, "tokyo.jpg is %zu bytes, stat says 162937", len);
    /* pixels: 600 x 800 = 480000 */
    media_limits lim = media_limits_default();
    lim.max_pixels = 480000;
    TEST_EQ_INT(media_decode_image(buf, len, "tokyo.jpg", &lim, &img, &err), NVL_OK);
    TEST_CHECK(img && img->width == 600 && img->height == 800, "tokyo.jpg decoded at the pixel cap");
    media_image_free(img);
    img = NULL;
    lim.max_pixels = 479999;
    TEST_EQ_INT(media_decode_image(buf, len, "tokyo.jpg", &lim, &img, &err), NVL_ERR_LIMIT);
    TEST_CONTAINS(err.msg, "600x800 = 480000 pixels exceeds the limit of 479999");
    /* bytes: the in-memory decode, the file read and the file check */
    lim = media_limits_default();
    lim.max_file_bytes = 162937;
    TEST_EQ_INT(media_decode_image(buf, len, "tokyo.jpg", &lim, &img, &err), NVL_OK);
    media_image_free(img);
    img = NULL;
    uint8_t *b2 = NULL;
    size_t l2 = 0;
    TEST_EQ_INT(media_read_file(jpg, &lim, &b2, &l2, &err), NVL_OK);
    TEST_CHECK(l2 == 162937 && b2 && !memcmp(b2, buf, l2), "whole file read at the byte cap");
    nvl_freep(&b2);
    TEST_EQ_INT(media_check_file(jpg, &lim, &err), NVL_OK);
    lim.max_file_bytes = 162936;
    TEST_EQ_INT(media_decode_image(buf, len, "tokyo.jpg", &lim, &img, &err), NVL_ERR_LIMIT);
    TEST_CONTAINS(err.msg, "162937 bytes exceeds the limit of 162936");
    TEST_EQ_INT(media_read_file(jpg, &lim, &b2, &l2, &err), NVL_ERR_LIMIT);
    TEST_CONTAINS(err.msg, "file of 162937 bytes is larger than the limit of 162936 bytes");
    TEST_CHECK(b2 == NULL, "nothing returned past the byte cap");
    TEST_EQ_INT(media_check_file(jpg, &lim, &err), NVL_ERR_LIMIT);
    nvl_freep(&buf);
    /* pages: all 5 at a cap of 5, refused at 4 */
    lim = media_limits_default();
    lim.max_pages = 5;
    media_pdf *pdf = NULL;
    int *pages = NULL, n = 0;
    TEST_EQ_INT(media_pdf_open(&pdf, mp, NULL, &lim, &err), NVL_OK);
    TEST_EQ_INT(media_pdf_select_pages(pdf, NULL, &pages, &n, &err), NVL_OK);
    TEST_EQ_INT(n, 5);
    nvl_freep(&pages);
    TEST_EQ_INT(media_pdf_select_pages(pdf, "1-", &pages, &n, &err), NVL_OK);
    TEST_EQ_INT(n, 5);
    nvl_freep(&pages);
    media_pdf_close(pdf);
    lim.max_pages = 4;
    TEST_EQ_INT(media_pdf_open(&pdf, mp, NULL, &lim, &err), NVL_OK);
    TEST_EQ_INT(media_pdf_select_pages(pdf, NULL, &pages, &n, &err), NVL_ERR_LIMIT);
    TEST_CONTAINS(err.msg, "5 pages selected, above the limit of 4");
    TEST_EQ_INT(media_pdf_select_pages(pdf, "1-4", &pages, &n, &err), NVL_OK);
    TEST_EQ_INT(n, 4);
    nvl_freep(&pages);
    media_pdf_close(pdf);
    /* frames: the cap is a minimum, so at exactly the 30 frames fps 30 asks for all 30 come out,
     * one below it 29 (from the cap in media_limits and from the request's own max_frames) */
    media_video_params vp = media_video_params_default();
    vp.fps = 30;
    media_frames *f = NULL;
    lim = media_limits_default();
    lim.max_frames = 30;
    TEST_EQ_INT(media_video_sample(vid, &vp, &lim, &f, &err), NVL_OK);
    TEST_CHECK(f && f->n == 30, "frame cap 30 = frames asked: %d frames", f ? f->n : -1);
    media_frames_free(f);
    lim.max_frames = 29;
    TEST_EQ_INT(media_video_sample(vid, &vp, &lim, &f, &err), NVL_OK);
    TEST_CHECK(f && f->n == 29, "frame cap 29: %d frames", f ? f->n : -1);
    media_frames_free(f);
    lim = media_limits_default();
    vp.max_frames = 30;
    TEST_EQ_INT(media_video_sample(vid, &vp, &lim, &f, &err), NVL_OK);
    TEST_CHECK(f && f->n == 30, "max_frames 30: %d frames", f ? f->n : -1);
    media_frames_free(f);
    vp.max_frames = 29;
    TEST_EQ_INT(media_video_sample(vid, &vp, &lim, &f, &err), NVL_OK);
    TEST_CHECK(f && f->n == 29, "max_frames 29: %d frames", f ? f->n : -1);
    media_frames_free(f);
}

/* media_video_open / next / close give exactly media_video_sample's frames (pixels, index,
 * timestamp, in order) and its stream facts: B-frame reordering, seeking over a long AV1 file, a
 * variable-rate file with gaps, 30 frames of 1080x720; the end repeats; errors as sample's. */
static void test_video_stream(void) {
    static const char *const files[] = {"media/video/h265_bframes.mp4", "media/video/long_180p_av1.mp4",
                                        "media/field/vfr_gap.mp4", "media/video/sample.mp4"};
    nvl_err err = {0};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        const char *path = test_shared_path(files[k]);
        if (!path) {
            fprintf(stderr, "skip: ../shared/%s is absent\n", files[k]);
            continue;
        }
        char p[1024];
        snprintf(p, sizeof p, "%s", path);
        media_video_params vp = media_video_params_default();
        vp.fps = k == 3 ? 30 : 2;
        media_frames *f = NULL;
        media_video *v = NULL;
        TEST_EQ_INT(media_video_sample(p, &vp, NULL, &f, &err), NVL_OK);
        TEST_EQ_INT(media_video_open(p, &vp, NULL, &v, &err), NVL_OK);
        if (!f || !v) {
            media_frames_free(f);
            media_video_close(v);
            continue;
        }
        const media_video_info *in = media_video_get_info(v);
        TEST_CHECK(in->width == 0 && in->n_planned >= f->n && in->native_fps == f->native_fps &&
                       in->total_frames == f->total_frames && in->duration == f->duration,
                   "%s: planned %d >= %d sampled, the same stream facts", files[k], in->n_planned, f->n);
        int n = 0, same = 1;
        media_image *fr = NULL;
        while (media_video_next(v, &fr, &err) == NVL_OK && fr) {
            const media_image *g = n < f->n ? f->frames[n] : NULL;
            same = same && g && g->width == fr->width && g->height == fr->height && g->index == fr->index &&
                   g->timestamp == fr->timestamp;
            for (int y = 0; same && y < fr->height; y++)
                same = !memcmp(fr->rgb + (size_t)y * fr->stride, g->rgb + (size_t)y * g->stride, (size_t)fr->width * 3);
            n++;
            media_image_free(fr);
        }
        TEST_CHECK(same && n == f->n, "%s: %d streamed frames equal the %d sampled (pixels, index, time)", files[k], n, f->n);
        TEST_CHECK(in->width == f->width && in->height == f->height, "%s: display size known after the first frame", files[k]);
        fr = (media_image *)1;
        TEST_CHECK(media_video_next(v, &fr, &err) == NVL_OK && fr == NULL, "%s: the end repeats", files[k]);
        media_video_close(v);
        media_frames_free(f);
    }
    media_video *v = NULL;
    TEST_EQ_INT(media_video_open("/nonexistent/v.mp4", NULL, NULL, &v, &err), NVL_ERR_NOT_FOUND);
    TEST_CHECK(v == NULL, "no handle on error");
    const char *sp = test_shared_path("media/video/sample.mp4");
    if (sp) {
        char p[1024];
        snprintf(p, sizeof p, "%s", sp);
        media_video_params vp = media_video_params_default();
        vp.start = 50;
        TEST_EQ_INT(media_video_open(p, &vp, NULL, &v, &err), NVL_ERR_INVALID_ARG);
        TEST_CONTAINS(err.msg, "holds no frame");
    }
}

/* A cancel (media_video_params.cancelled) stops the packet scan of media_video_open and the
 * decoding inside media_video_next: NVL_ERR_CANCELLED naming the file, no frame, the video ended
 * (an interrupted read taken for the end of the file would end the sample early, silently). */
typedef struct {
    int calls, at; /* asked so far; cancelled once calls reaches at (0: never) */
} cancel_count;
static int count_cancel(void *ctx) {
    cancel_count *c = ctx;
    c->calls++;
    return c->at > 0 && c->calls >= c->at;
}

static void test_video_cancel(void) {
    const char *sp = test_shared_path("media/video/long_180p_av1.mp4");
    if (!sp) {
        fprintf(stderr, "skip: ../shared/media/video/long_180p_av1.mp4 is absent\n");
        return;
    }
    char p[1024];
    snprintf(p, sizeof p, "%s", sp);
    nvl_err err = {0};
    cancel_count c = {0};
    media_video_params vp = media_video_params_default();
    vp.max_frames = 2; /* frames 0 and 21765: the second ~320 frames past its keyframe */
    vp.cancelled = count_cancel;
    vp.cancel_ctx = &c;
    media_video *v = NULL;
    TEST_EQ_INT(media_video_open(p, &vp, NULL, &v, &err), NVL_OK);
    const int n_open = c.calls;
    /* 956635 bytes read through in 32 KiB refills, each asking */
    TEST_CHECK(n_open >= 20, "media_video_open asked the cancel %d times while reading the file", n_open);
    media_image *fr = NULL;
    TEST_EQ_INT(media_video_next(v, &fr, &err), NVL_OK);
    TEST_CHECK(fr && fr->index == 0, "the first frame (%lld)", fr ? (long long)fr->index : -1LL);
    media_image_free(fr);
    const int n1 = c.calls;
    TEST_EQ_INT(media_video_next(v, &fr, &err), NVL_OK);
    TEST_CHECK(fr && fr->index == 21765, "the last frame (%lld)", fr ? (long long)fr->index : -1LL);
    media_image_free(fr);
    const int n2 = c.calls - n1;
    TEST_CHECK(n2 >= 100, "decoding to the last frame asked %d times (once a frame at least)", n2);
    media_video_close(v);
    /* cancelled in the packet scan, and at its last question (the reopening after it) */
    const int ats[] = {n_open / 2, n_open};
    for (int i = 0; i < 2; i++) {
        c = (cancel_count){0, ats[i]};
        v = (media_video *)1;
        const nvl_status st = media_video_open(p, &vp, NULL, &v, &err);
        TEST_CHECK(st == NVL_ERR_CANCELLED && v == NULL && strstr(err.msg, "long_180p_av1.mp4: cancelled"),
                   "open cancelled at %d: %d %s", ats[i], (int)st, st == NVL_OK ? "" : err.msg);
        if (st == NVL_OK) media_video_close(v);
        TEST_CHECK(c.calls <= ats[i] + 1, "and asked no more (%d, cancelled at %d)", c.calls, ats[i]);
    }
    /* cancelled a few frames into the decoding of the last frame */
    c = (cancel_count){0};
    TEST_EQ_INT(media_video_open(p, &vp, NULL, &v, &err), NVL_OK);
    TEST_EQ_INT(media_video_next(v, &fr, &err), NVL_OK);
    media_image_free(fr);
    c.at = c.calls + 5;
    fr = (media_image *)1;
    const nvl_status st = media_video_next(v, &fr, &err);
    TEST_CHECK(st == NVL_ERR_CANCELLED && fr == NULL && strstr(err.msg, "long_180p_av1.mp4: cancelled"),
               "next cancelled mid-decoding: %d %s", (int)st, st == NVL_OK ? "" : err.msg);
    if (st == NVL_OK) media_image_free(fr);
    TEST_CHECK(c.calls - n1 < n2 / 2, "stopped after %d of the %d questions", c.calls - n1, n2);
    fr = (media_image *)1;
    TEST_CHECK(media_video_next(v, &fr, &err) == NVL_OK && fr == NULL, "the video has ended");
    media_video_close(v);
    /* media_video_sample: the error, no frames */
    c = (cancel_count){0, n1 + 5};
    media_frames *f = (media_frames *)1;
    const nvl_status sst = media_video_sample(p, &vp, NULL, &f, &err);
    TEST_CHECK(sst == NVL_ERR_CANCELLED && f == NULL, "a cancelled sample: %d, no frames", (int)sst);
    if (sst == NVL_OK) media_frames_free(f);
}

int main(void) {
    nvl_err err = {0};
    if (nvl_json_load_file(&g_gold, test_data_path("media/goldens.json"), 1 << 22, &err) != NVL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    if (nvl_json_load_file(&g_edges, test_data_path("media/edges_goldens.json"), 1 << 24, &err) != NVL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    if (nvl_json_load_file(&g_pdf_refs, test_data_path("media/pdf_ref/refs.json"), 1 << 20, &err) != NVL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    if (!test_shared_path("media/MANIFEST.tsv")) test_skip("../shared/media is absent");
    int64_t live0 = nvl_alloc_count();
    test_page_ranges();
    test_limits();
    test_limits_exact();
    test_video_stream();
    test_video_cancel();
    test_manifest("", 80);
    test_manifest("field/", 8);
    TEST_EQ_INT(nvl_alloc_count(), live0);
    cJSON_Delete(g_gold);
    cJSON_Delete(g_edges);
    cJSON_Delete(g_pdf_refs);
    return test_report();
}
