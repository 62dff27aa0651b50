/* `nanovl media-info FILE` and `nanovl render FILE [--pages R] [--dpi D | --long-side N] -o DIR`:
 * what the model will see. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "cli_util.h"
#include "commands.h"
#include "media.h"
#include "wire.h"

static const char *k_info_usage =
    "usage: nanovl media-info [--password PW] [--fps F] [--max-frames N] [--] FILE\n"
    "  format, PDF pages (sizes, labels, text layer), video frames sampled as ask samples them\n"
    "  (--fps, default 2; --max-frames, default 128), image size;\n"
    "  FILE must be a regular file (\"--\" ends the options)\n";

/* --fps F / --max-frames N (ask's ranges) into *vp: 1 taken (*i moved past the value), 0 not one
 * of them, -1 a bad value (said). */
static int video_option(const char *cmd, int argc, char **argv, int *i, media_video_params *vp) {
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    const int fps = !strcmp(a, "--fps");
    if (!fps && strcmp(a, "--max-frames")) return 0;
    double d;
    if (!cli_num_option(cmd, a, v, fps ? 0.01 : 1, fps ? 240 : 100000, !fps, &d)) return -1;
    if (fps) vp->fps = d;
    else vp->max_frames = (int)d;
    (*i)++;
    return 1;
}

/* The kind of the file at path into *k: 0, or the exit code having said why ("nanovl CMD: ..."):
 * 1 not a file of a kind nanovl reads, EXIT_USAGE video options (video_opts) for another kind. */
static int kind_or_say(const char *cmd, const char *path, int video_opts, enum media_kind *k) {
    nvl_err err = {0};
    if (media_sniff_file(path, k, &err) != NVL_OK) {
        fprintf(stderr, "nanovl %s: %s\n", cmd, err.msg);
        return 1;
    }
    if (video_opts && *k != MEDIA_KIND_VIDEO) {
        fprintf(stderr, "nanovl %s: --fps and --max-frames sample videos, and '%s' is not one\n", cmd, path);
        return EXIT_USAGE;
    }
    return 0;
}

/* s on stdout as one line of text (api_buf_line_text): a newline in a file name or a page label
 * would split the line, and a crafted label could forge "page N:" lines. */
static void put_escaped(const char *s) {
    api_buf b = {0};
    api_buf_line_text(&b, s, 1);
    if (b.n) fwrite(b.p, 1, b.n, stdout);
    api_buf_free(&b);
}

int cmd_media_info(int argc, char **argv) {
    const char *path = NULL, *password = NULL;
    int opts_done = 0, video_opts = 0;
    media_video_params vp = media_video_params_default();
    for (int i = 0; i < argc; i++) {
        if (!opts_done && (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))) {
            fputs(k_info_usage, stdout);
            return 0;
        }
        const int vo = opts_done ? 0 : video_option("media-info", argc, argv, &i, &vp);
        if (vo < 0) return EXIT_USAGE;
        if (vo > 0) {
            video_opts = 1;
            continue;
        }
        if (!opts_done && !strcmp(argv[i], "--")) opts_done = 1;
        else if (!opts_done && !strcmp(argv[i], "--password") && i + 1 < argc) password = argv[++i];
        else if (!path && (opts_done || argv[i][0] != '-')) path = argv[i];
        else {
            if (!opts_done && !strcmp(argv[i], "--password")) fprintf(stderr, "nanovl media-info: --password needs a value\n");
            else if (!opts_done && argv[i][0] == '-') fprintf(stderr, "nanovl media-info: unknown option '%s'\n", argv[i]);
            else fprintf(stderr, "nanovl media-info: one file at a time ('%s' is a second)\n", argv[i]);
            fputs(k_info_usage, stderr);
            return EXIT_USAGE;
        }
    }
    if (!path) {
        fputs(k_info_usage, stderr);
        return EXIT_USAGE;
    }
    enum media_kind k;
    const int krc = kind_or_say("media-info", path, video_opts, &k);
    if (krc) return krc;
    nvl_err err = {0};
    fputs("file: ", stdout);
    put_escaped(path);
    printf("\nformat: %s\n", media_kind_name(k));
    if (k == MEDIA_KIND_PDF) {
        media_pdf *pdf = NULL;
        if (media_pdf_open(&pdf, path, password, NULL, &err) != NVL_OK) {
            fprintf(stderr, "nanovl media-info: %s\n", err.msg);
            return 1;
        }
        int n = media_pdf_page_count(pdf), bad = 0;
        printf("pages: %d\n", n);
        for (int i = 0; i < n; i++) {
            double w = 0, h = 0;
            char *label = media_pdf_page_label(pdf, i);
            if (media_pdf_page_size(pdf, i, &w, &h, &err) != NVL_OK) { /* listed, and the exit says it (was 0) */
                printf("page %d: unreadable\n", i + 1);
                fprintf(stderr, "nanovl media-info: %s\n", err.msg); /* (the message names the page) */
                bad++;
            } else {
                char *text = NULL;
                media_pdf_page_text(pdf, i, &text, NULL);
                printf("page %d: %.2f x %.2f pt, label ", i + 1, w, h);
                put_escaped(label ? label : "-"); /* (the document's own text) */
                printf(", text layer %s\n", text && text[strspn(text, " \t\r\n\f")] ? "yes" : "no");
                nvl_free(text);
            }
            nvl_free(label);
        }
        media_pdf_close(pdf);
        return bad ? 1 : 0;
    }
    if (k == MEDIA_KIND_VIDEO) { /* frame by frame, keeping only their indices and times (a sample of
                                    100000 frames held whole took gigabytes) */
        media_video *v = NULL;
        if (media_video_open(path, &vp, NULL, &v, &err) != NVL_OK) {
            fprintf(stderr, "nanovl media-info: %s\n", err.msg);
            return 1;
        }
        const media_video_info *vi = media_video_get_info(v);
        int64_t *idx = nvl_malloc((size_t)(vi->n_planned > 0 ? vi->n_planned : 1) * sizeof *idx);
        double *ts = nvl_malloc((size_t)(vi->n_planned > 0 ? vi->n_planned : 1) * sizeof *ts);
        int n = 0, w = 0, h = 0;
        nvl_status st = idx && ts ? NVL_OK : nvl_err_set(&err, NVL_ERR_NOMEM, "%s: out of memory", path);
        for (media_image *fr = NULL; st == NVL_OK && n < vi->n_planned && (st = media_video_next(v, &fr, &err)) == NVL_OK && fr;) {
            idx[n] = fr->index;
            ts[n++] = fr->timestamp;
            if (!w) w = fr->width, h = fr->height;
            media_image_free(fr);
            fr = NULL;
        }
        if (st == NVL_OK) {
            printf("video: %dx%d, %lld frame%s, %.3f fps, %.3f s\n", w, h, (long long)vi->total_frames,
                   vi->total_frames == 1 ? "" : "s", vi->native_fps, vi->duration);
            if (vi->listed_frames > 0)
                printf("cut short: the index lists %lld frames; %lld could be read\n", (long long)vi->listed_frames,
                       (long long)vi->total_frames);
            printf("sampled at %.1f fps: %d frame%s:", vp.fps, n, n == 1 ? "" : "s");
            for (int i = 0; i < n; i++) printf(" %lld@%.3fs", (long long)idx[i], ts[i]);
            printf("\n");
        } else {
            fprintf(stderr, "nanovl media-info: %s\n", err.msg);
        }
        nvl_free(idx);
        nvl_free(ts);
        media_video_close(v);
        return st == NVL_OK ? 0 : 1;
    }
    media_image *img = NULL;
    if (media_decode_image_file(path, NULL, &img, &err) != NVL_OK) {
        fprintf(stderr, "nanovl media-info: %s\n", err.msg);
        return 1;
    }
    if (img->orientation > 1)
        printf("image: %dx%d (after applying the file's orientation %d)\n", img->width, img->height, img->orientation);
    else
        printf("image: %dx%d\n", img->width, img->height);
    media_image_free(img);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (media_read_file(path, NULL, &buf, &len, &err) == NVL_OK) { /* (an animation was not said: its first frame is read) */
        const int64_t frames = media_image_frames(buf, len);
        if (frames > 1) printf("animated: %lld frames; the model sees the first, as Pillow opens the file\n", (long long)frames);
    }
    nvl_free(buf);
    return 0;
}

static const char *k_render_usage =
    "usage: nanovl render -o DIR [--pages 1-3,7] [--dpi D | --long-side N] [--password PW]\n"
    "                     [--fps F] [--max-frames N] [--] FILE\n"
    "  writes DIR/page-N.png for PDFs (default long side %d px), DIR/image.png for images,\n"
    "  DIR/frame-I.png for the frames of a video, sampled as ask samples them (--fps, default 2;\n"
    "  --max-frames, default 128); files of those names in DIR are replaced, other files there\n"
    "  (an earlier run's pages or frames) are left as they are: each file written is listed\n"
    "  --page-timeout S --page-memory MIB   bounds on rendering one page (default 120 s, 2048 MiB\n"
    "  besides its pixels; 0 = none): a page past either is not written and the command exits 1\n";

/* The PNGs of path (of kind k) into outdir, which exists; 0, or 1 having said why (what was
 * written stays). */
static int render_into(const char *path, enum media_kind k, const char *outdir, const char *pages, const char *password,
                       const media_video_params *vp,
                       double dpi, int long_side) {
    /* "out/" and "out" name the same directory: no "out//page-2.png" */
    const char *sep = outdir[0] && outdir[strlen(outdir) - 1] == '/' ? "" : "/";
    nvl_err err = {0};
    char out[4096];
    int rc = 0;
    if (k == MEDIA_KIND_PDF) {
        media_pdf *pdf = NULL;
        int *list = NULL, n = 0;
        if (media_pdf_open(&pdf, path, password, NULL, &err) != NVL_OK ||
            media_pdf_select_pages(pdf, pages, &list, &n, &err) != NVL_OK) {
            fprintf(stderr, "nanovl render: %s\n", err.msg);
            media_pdf_close(pdf);
            return 1;
        }
        for (int i = 0; i < n; i++) {
            media_image *img = NULL;
            snprintf(out, sizeof out, "%s%spage-%d.png", outdir, sep, list[i] + 1);
            if (media_pdf_render(pdf, list[i], dpi, long_side, &img, &err) != NVL_OK ||
                media_image_write_png(img, out, &err) != NVL_OK) {
                fprintf(stderr, "nanovl render: %s\n", err.msg);
                rc = 1;
            } else {
                printf("%s %dx%d\n", out, img->width, img->height);
            }
            media_image_free(img);
        }
        nvl_free(list);
        media_pdf_close(pdf);
        return rc;
    }
    if (k == MEDIA_KIND_VIDEO) { /* each frame written as it is decoded (not the whole sample held) */
        media_video *v = NULL;
        if (media_video_open(path, vp, NULL, &v, &err) != NVL_OK) {
            fprintf(stderr, "nanovl render: %s\n", err.msg);
            return 1;
        }
        const int planned = media_video_get_info(v)->n_planned;
        for (int i = 0; i < planned && rc == 0; i++) {
            media_image *fr = NULL;
            if (media_video_next(v, &fr, &err) != NVL_OK) {
                fprintf(stderr, "nanovl render: %s\n", err.msg);
                rc = 1;
                break;
            }
            if (!fr) break;
            snprintf(out, sizeof out, "%s%sframe-%lld.png", outdir, sep, (long long)fr->index);
            if (media_image_write_png(fr, out, &err) != NVL_OK) {
                fprintf(stderr, "nanovl render: %s\n", err.msg);
                rc = 1;
            } else {
                printf("%s %.3fs\n", out, fr->timestamp);
            }
            media_image_free(fr);
        }
        media_video_close(v);
        return rc;
    }
    media_image *img = NULL;
    snprintf(out, sizeof out, "%s%simage.png", outdir, sep);
    if (media_decode_image_file(path, NULL, &img, &err) != NVL_OK || media_image_write_png(img, out, &err) != NVL_OK) {
        fprintf(stderr, "nanovl render: %s\n", err.msg);
        rc = 1;
    } else {
        printf("%s %dx%d\n", out, img->width, img->height);
    }
    media_image_free(img);
    return rc;
}

int cmd_render(int argc, char **argv) {
    const char *path = NULL, *outdir = NULL, *pages = NULL, *password = NULL;
    double dpi = 0;
    int long_side = 0;
    int opts_done = 0, video_opts = 0;
    media_video_params vp = media_video_params_default();
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const int vo = opts_done ? 0 : video_option("render", argc, argv, &i, &vp);
        if (vo < 0) return EXIT_USAGE;
        if (vo > 0) {
            video_opts = 1;
            continue;
        }
        if (opts_done) {
            if (path) { /* one file */
                fprintf(stderr, "nanovl render: one file at a time ('%s' is a second; after '--' every argument is a file)\n", a);
                return EXIT_USAGE;
            }
            path = a;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(k_render_usage, MEDIA_PDF_DEFAULT_LONG_SIDE);
            return 0;
        }
        if (!strcmp(a, "--")) opts_done = 1;
        else if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && i + 1 < argc) outdir = argv[++i];
        else if (!strcmp(a, "--pages") && i + 1 < argc) {
            if (!cli_check_pages("render", argv[i + 1], 0)) return EXIT_USAGE;
            pages = argv[++i];
        }
        else if (!strcmp(a, "--dpi") || !strcmp(a, "--long-side")) {
            const int is_dpi = !strcmp(a, "--dpi");
            double d;
            if (!cli_num_option("render", a, i + 1 < argc ? argv[i + 1] : NULL, is_dpi ? 1 : 16, is_dpi ? 1200 : 16384,
                                !is_dpi, &d))
                return EXIT_USAGE;
            i++;
            if (is_dpi) dpi = d;
            else long_side = (int)d;
            if (dpi > 0 && long_side > 0) { /* (one of the two was dropped without a word) */
                fprintf(stderr, "nanovl render: --dpi and --long-side both size the pages: give one\n");
                return EXIT_USAGE;
            }
        }
        else if (!strcmp(a, "--password") && i + 1 < argc) password = argv[++i];
        else if (!path && a[0] != '-') path = a;
        else {
            fprintf(stderr, a[0] == '-' ? "nanovl render: unknown or incomplete option '%s'\n"
                                        : "nanovl render: one file at a time ('%s' is a second)\n", a);
            path = NULL, i = argc;
        }
    }
    if (path && !outdir) fprintf(stderr, "nanovl render: -o DIR is needed (the folder the PNGs are written to)\n");
    if (!path || !outdir) {
        fprintf(stderr, k_render_usage, MEDIA_PDF_DEFAULT_LONG_SIDE);
        return EXIT_USAGE;
    }
    struct stat so;
    if (!*outdir || (stat(outdir, &so) == 0 && !S_ISDIR(so.st_mode))) {
        fprintf(stderr, "nanovl render: -o '%s' is not a folder\n", outdir);
        return EXIT_USAGE;
    }
    enum media_kind k;
    const int krc = kind_or_say("render", path, video_opts, &k);
    if (krc) return krc;
    if (pages && k != MEDIA_KIND_PDF) {
        fprintf(stderr, "nanovl render: --pages selects PDF pages, and '%s' is %s\n", path,
                k == MEDIA_KIND_VIDEO ? "a video (its frames are chosen by --fps and --max-frames)" : "an image");
        return EXIT_USAGE;
    }
    /* the folder is made once the input is known to give something (a failed run leaves none) */
    const int made = mkdir(outdir, 0755) == 0;
    if (!made && errno != EEXIST) { /* (each page was rendered, then failed to be written; a review) */
        fprintf(stderr, "nanovl render: cannot make the folder '%s': %s\n", outdir, strerror(errno));
        return 1;
    }
    if (strlen(outdir) > 4000) { /* (the names were cut short, each page written over the last; a review) */
        fprintf(stderr, "nanovl render: -o '%.40s...': the folder's name is too long (%zu bytes; at most 4000)\n",
                outdir, strlen(outdir));
        if (made) rmdir(outdir);
        return 1;
    }
    const int rc = render_into(path, k, outdir, pages, password, &vp, dpi, long_side);
    if (rc && made) rmdir(outdir); /* (only when nothing was written into it) */
    return rc;
}
