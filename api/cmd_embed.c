/* `nanovl embed --model DIR FILE`: runs only the vision path (media -> tiles -> RADIO -> pixel
 * shuffle -> mlp1, and EVS for videos) and writes every intermediate with an index.json, so a
 * run can be diffed against a reference. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/dump.h"
#include "cli_util.h"
#include "commands.h"
#include "media.h"
#include "tokenreduce.h"
#include "vision.h"

static const char *k_usage =
    "usage: nanovl embed --model DIR FILE [-o DIR] [--max-tiles N] [--page P] [--password PW]\n"
    "                    [--fps F] [--max-frames N] [--evs Q]\n"
    "  writes tiles, vit_features, pixel_shuffle, projector (and evs_keep for videos) as raw\n"
    "  little-endian files with index.json into -o DIR (default: $NANOVL_DUMP_DIR, else ./nanovl-embed)\n"
    "  --max-tiles for images and PDF pages, --page and --password for PDFs, --fps, --max-frames and\n"
    "  --evs for videos (an option the file has no use for is refused)\n";

int cmd_embed(int argc, char **argv) {
    const char *model = getenv("NANOVL_MODEL"), *file = NULL, *outdir = NULL, *password = NULL;
    int max_tiles = 0, page = 1;
    const char *given[5] = {NULL}; /* the sizing options given: --max-tiles, --page, --fps, --max-frames, --evs */
    double evs = -1;
    media_video_params vp = media_video_params_default();
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(k_usage, stdout);
            return 0;
        }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v) model = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && v) outdir = argv[++i];
        else if (!strcmp(a, "--password") && v) password = argv[++i];
        else if (!strcmp(a, "--max-tiles") || !strcmp(a, "--page") || !strcmp(a, "--fps") || !strcmp(a, "--max-frames") ||
                 !strcmp(a, "--evs")) {
            const int j = !strcmp(a, "--max-tiles") ? 0 : !strcmp(a, "--page") ? 1 : !strcmp(a, "--fps") ? 2 : !strcmp(a, "--max-frames") ? 3 : 4;
            static const double lo[] = {1, 1, 0.01, 1, 0}, hi[] = {12, 1e6, 240, 100000, 0.99};
            double d;
            if (!cli_num_option("embed", a, v, lo[j], hi[j], j != 2 && j != 4, &d)) return EXIT_USAGE;
            i++;
            given[j] = a;
            if (j == 0) max_tiles = (int)d;
            else if (j == 1) page = (int)d;
            else if (j == 2) vp.fps = d;
            else if (j == 3) vp.max_frames = (int)d;
            else evs = d;
        }
        else if (!file && a[0] != '-') file = a;
        else {
            fprintf(stderr, "nanovl embed: unknown argument '%s'\n%s", a, k_usage);
            return EXIT_USAGE;
        }
    }
    if (!model || !file) {
        fputs(k_usage, stderr);
        return EXIT_USAGE;
    }
    nvl_err err = {0};
    enum media_kind kind;
    if (media_sniff_file(file, &kind, &err) != NVL_OK) {
        fprintf(stderr, "nanovl embed: %s\n", err.msg);
        return 1;
    }
    { /* an option the file has no use for is refused (it was dropped without a word; render refuses them) */
        const int video = kind == MEDIA_KIND_VIDEO, pdf = kind == MEDIA_KIND_PDF;
        const char *bad = video ? (given[0] ? given[0] : given[1] ? given[1] : password ? "--password" : NULL)
                                : given[2] ? given[2] : given[3] ? given[3] : given[4] ? given[4]
                                : !pdf && given[1] ? given[1] : !pdf && password ? "--password" : NULL;
        if (bad) {
            fprintf(stderr, "nanovl embed: %s is not for '%s', %s\n", bad, file,
                    video ? "a video (its frames are one tile each, chosen by --fps and --max-frames)"
                    : pdf ? "a PDF (--fps, --max-frames and --evs sample videos)"
                          : "an image (--page and --password are for PDFs, --fps, --max-frames and --evs for videos)");
            return EXIT_USAGE;
        }
    }
    nvl_dump_set_dir(outdir ? outdir : nvl_dump_dir() ? nvl_dump_dir() : "nanovl-embed");
    int made = 0; /* this run made the folder (removed again if it fails before writing into it) */
    { /* the folder must be writable before the work starts */
        const char *d = nvl_dump_dir();
        struct stat sb;
        int e = 0;
        if (mkdir(d, 0755) == 0) made = 1;
        else if (errno != EEXIST) e = errno;
        else if (stat(d, &sb) != 0) e = errno;
        else if (!S_ISDIR(sb.st_mode)) e = ENOTDIR;
        else if (access(d, W_OK) != 0) e = errno;
        if (e) {
            errno = e;
            fprintf(stderr, "nanovl embed: cannot write the intermediates to '%s': %s\n", d, strerror(errno));
            return 1;
        }
    }
    vision_model *vm = NULL;
    nvl_checkpoint *ck = NULL;
    tokred_projector pr;
    media_image *img = NULL;
    media_frames *frames = NULL;
    float *tiles = NULL, *emb = NULL;
    int rc = 1, n = 0;
    if (vision_model_init(&vm, model, &err) != NVL_OK || nvl_checkpoint_open(&ck, model, &err) != NVL_OK ||
        tokred_projector_bind(&pr, ck, vision_model_backend(vm), 4 * vision_model_width(vm), 0, &err) != NVL_OK) {
        fprintf(stderr, "nanovl embed: %s: %s\n", model, err.msg);
        goto done;
    }
    const vision_vl_config *vc = vision_model_config(vm);
    if (max_tiles <= 0) max_tiles = (int)vc->max_num_tiles;
    const int64_t S = vc->image_size, G = vision_model_grid(vm), Q = (G / 2) * (G / 2);
    if (kind == MEDIA_KIND_VIDEO) {
        if (media_video_sample(file, &vp, NULL, &frames, &err) != NVL_OK) {
            fprintf(stderr, "nanovl embed: %s\n", err.msg);
            goto done;
        }
        n = frames->n;
        tiles = nvl_malloc((size_t)n * 3 * (size_t)(S * S) * sizeof(float));
        if (!tiles) goto done;
        for (int i = 0; i < n; i++) { /* one tile per frame, no thumbnail (model.md §6.2) */
            float *t = NULL;
            int nt = 0;
            if (vision_make_tiles(frames->frames[i]->rgb, frames->frames[i]->width, frames->frames[i]->height,
                                  frames->frames[i]->stride, vc, 1, &t, &nt, NULL, NULL, &err) != NVL_OK) {
                fprintf(stderr, "nanovl embed: %s\n", err.msg);
                goto done;
            }
            memcpy(tiles + (size_t)i * 3 * S * S, t, (size_t)(3 * S * S) * sizeof(float));
            nvl_free(t);
        }
    } else {
        if (kind == MEDIA_KIND_PDF) {
            media_pdf *pdf = NULL;
            if (media_pdf_open(&pdf, file, password, NULL, &err) != NVL_OK ||
                media_pdf_render(pdf, page - 1, 0, 0, &img, &err) != NVL_OK) {
                fprintf(stderr, "nanovl embed: %s%s\n", err.msg,
                        err.code == NVL_ERR_ENCRYPTED && !password ? " (give it with --password)" : "");
                media_pdf_close(pdf);
                goto done;
            }
            media_pdf_close(pdf);
        } else {
            if (media_decode_image_file(file, NULL, &img, &err) != NVL_OK) {
                fprintf(stderr, "nanovl embed: %s\n", err.msg);
                goto done;
            }
        }
        int cols = 0, rows = 0;
        if (vision_make_tiles(img->rgb, img->width, img->height, img->stride, vc, max_tiles, &tiles, &n, &cols, &rows, &err) != NVL_OK) {
            fprintf(stderr, "nanovl embed: %s\n", err.msg);
            goto done;
        }
        printf("image %dx%d -> grid %dx%d%s = %d tiles\n", img->width, img->height, cols, rows,
               n > cols * rows ? " + thumbnail" : "", n);
    }
    emb = nvl_malloc((size_t)(n * Q * pr.out) * sizeof(float));
    if (!emb || tokred_embed_tiles(vm, &pr, tiles, n, emb, &err) != NVL_OK) {
        fprintf(stderr, "nanovl embed: %s\n", err.msg[0] ? err.msg : "out of memory");
        goto done;
    }
    printf("%d %s -> %lld tokens of width %lld\n", n, frames ? "frames" : "tiles", (long long)(n * Q), (long long)pr.out);
    if (frames) {
        const double q = evs >= 0 ? evs : vc->video_pruning_rate;
        uint8_t *keep = nvl_malloc((size_t)(n * Q));
        int *per = nvl_malloc((size_t)n * sizeof *per);
        if (!keep || !per || tokred_evs_mask(vision_model_backend(vm), emb, n, Q, pr.out, q, 0, keep, per, &err) != NVL_OK) {
            fprintf(stderr, "nanovl embed: EVS: %s\n", err.msg);
            nvl_free(keep);
            nvl_free(per);
            goto done;
        }
        nvl_dump("evs_keep", NVL_DTYPE_U8, 2, (int64_t[]){n, Q}, keep);
        printf("EVS q=%.2f kept per frame:", q);
        for (int i = 0; i < n; i++) printf(" %d", per[i]);
        printf("\n");
        nvl_free(keep);
        nvl_free(per);
    }
    if (nvl_dump_failures()) {
        fprintf(stderr, "nanovl embed: cannot write the intermediates to '%s' (%d files failed)\n", nvl_dump_dir(),
                nvl_dump_failures());
        goto done;
    }
    const char *dd = nvl_dump_dir();
    const size_t dl = strlen(dd);
    printf("intermediates: %s%sindex.json\n", dd, dl && dd[dl - 1] == '/' ? "" : "/"); /* (-o out/: not out//) */
    rc = 0;
done:
    nvl_free(tiles);
    nvl_free(emb);
    media_image_free(img);
    media_frames_free(frames);
    nvl_checkpoint_close(ck);
    vision_model_free(vm);
    if (rc && made) rmdir(nvl_dump_dir()); /* (only when nothing was written into it) */
    return rc;
}
