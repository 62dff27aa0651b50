/* bench_media: PDF pages rendered per second at the default size, video frames sampled per
 * second (model.md §6.1 sampling at 2 fps, at most 128 frames) on a long file, and the tiling of
 * both (the antialiased bicubic resize to 512-pixel tiles, model.md §5.2: a page at 12 tiles +
 * thumbnail, each frame at one tile) with the threads OpenMP gives it (OMP_NUM_THREADS).
 *
 *   bench_media PDF VIDEO [IMAGE] (e.g. ../shared/media/pdf/multi_page.pdf
 *                                    ../shared/media/video/long_180p_av1.mp4
 *                                    ../shared/media/image/tokyo.jpg)
 * Reports wall time of open + render of every page (median of 3; in this process and through the
 * PDF renderer process, media.h media_pdf_sandbox), of one full sampling
 * call (median of 3; in this process and through the video decoder process, media_video_sandbox),
 * of tiling the first page and every sampled frame (median of 3), of opening VIDEO (median of 7,
 * both ways, 200 ms apart), of decoding IMAGE (median of 15;
 * in this process and through the image decoder process, media_image_sandbox: back to back, and
 * with 200 ms between images as the vision encoder's work would leave), plus peak RSS. */
#include "bench_util.h"
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "base/alloc.h"
#include "media.h"
#include "vision.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Tiles of img at max_tiles (the checkpoint's defaults: 512-pixel tiles, thumbnail); s. */
static double tile_time(const media_image *img, int max_tiles, int *n) {
    vision_vl_config vc = {.image_size = 512, .use_thumbnail = 1, .max_num_tiles = 12};
    nvl_err err = {0};
    uint8_t *t = NULL;
    const double a = nvl_now();
    if (vision_make_tiles_rgb8(img->rgb, img->width, img->height, img->stride, &vc, max_tiles, &t, n, NULL, NULL, &err) !=
        NVL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    const double s = nvl_now() - a;
    nvl_free(t);
    return s;
}


/* Open + render of every page of path (s); *tile_s the tiling of page 1 when tile_s. */
static double pdf_time(const char *path, int *pages, int *w, int *h, double *tile_s, int *page_tiles) {
    nvl_err err = {0};
    const double a = nvl_now();
    media_pdf *pdf = NULL;
    if (media_pdf_open(&pdf, path, NULL, NULL, &err) != NVL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    *pages = media_pdf_page_count(pdf);
    for (int i = 0; i < *pages; i++) {
        media_image *img = NULL;
        if (media_pdf_render(pdf, i, 0, 0, &img, &err) != NVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            exit(1);
        }
        *w = img->width, *h = img->height;
        if (i == 0 && tile_s) *tile_s = tile_time(img, 12, page_tiles);
        media_image_free(img);
    }
    media_pdf_close(pdf);
    return nvl_now() - a;
}

/* Median of runs (at most 15) timings by once (seconds of one run), pause_s apart (not timed). */
static double median_time(int runs, double pause_s, double (*once)(void *ctx), void *ctx) {
    double t[15];
    for (int r = 0; r < runs; r++) {
        if (pause_s > 0) {
            const struct timespec ts = {0, (long)(pause_s * 1e9)};
            nanosleep(&ts, NULL);
        }
        t[r] = once(ctx);
    }
    qsort(t, (size_t)runs, sizeof *t, bench_cmp_double);
    return t[runs / 2];
}

static void fail_exit(const nvl_err *err) {
    fprintf(stderr, "%s\n", err->msg);
    exit(1);
}

typedef struct image_job {
    const uint8_t *buf;
    size_t len;
    const char *name;
    int w, h;
} image_job;

/* One media_decode_image of the job's bytes (s). */
static double image_once(void *ctx) {
    image_job *j = ctx;
    nvl_err err = {0};
    media_image *img = NULL;
    const double a = nvl_now();
    if (media_decode_image(j->buf, j->len, j->name, NULL, &img, &err) != NVL_OK) fail_exit(&err);
    const double s = nvl_now() - a;
    j->w = img->width, j->h = img->height;
    media_image_free(img);
    return s;
}

/* One media_video_open + close of the path ctx (the frame times read, the plan made; s). */
static double video_open_once(void *ctx) {
    nvl_err err = {0};
    media_video *v = NULL;
    const double a = nvl_now();
    if (media_video_open(ctx, NULL, NULL, &v, &err) != NVL_OK) fail_exit(&err);
    const double s = nvl_now() - a;
    media_video_close(v);
    return s;
}

/* The still image both ways (media_image_sandbox). */
static void image_times(const char *path) {
    uint8_t *buf = NULL;
    size_t len = 0;
    nvl_err err = {0};
    if (media_read_file(path, NULL, &buf, &len, &err) != NVL_OK) fail_exit(&err);
    image_job j = {.buf = buf, .len = len, .name = path};
    media_image_sandbox sb = media_image_sandbox_default();
    media_image_set_sandbox(&sb); /* in this process */
    const double here = median_time(15, 0, image_once, &j);
    sb.exe = "/proc/self/exe"; /* through the decoder process, as nanovl decodes images */
    media_image_set_sandbox(&sb);
    const double b2b = median_time(15, 0, image_once, &j);
    const double paced = median_time(15, 0.2, image_once, &j);
    media_image_sandbox_end_spare();
    printf("| image %s (%dx%d, %zu bytes) decoded | %.1f ms | %.1f images/s |\n", path, j.w, j.h, len, here * 1e3,
           1 / here);
    printf("| the same through the image decoder process, back to back | %.1f ms | %.1f images/s |\n", b2b * 1e3,
           1 / b2b);
    printf("| the same, 200 ms between images (the decoder started ahead is ready) | %.1f ms | %.1f images/s |\n",
           paced * 1e3, 1 / paced);
    nvl_free(buf);
}

int main(int argc, char **argv) {
    media_pdf_worker_main(argc, argv); /* this binary is its own PDF renderer */
    media_video_worker_main(argc, argv); /* and video decoder */
    media_image_worker_main(argc, argv); /* and image decoder */
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: bench_media PDF VIDEO [IMAGE]\n");
        return 2;
    }
    nvl_err err = {0};
    double tp[3], ts[3], tv[3], tvd[3], tt[3], tf[3];
    int pages = 0, frames = 0, w = 0, h = 0, page_tiles = 0, fw = 0, fh = 0;
    for (int r = 0; r < 3; r++) {
        media_pdf_sandbox sb = media_pdf_sandbox_default();
        media_pdf_set_sandbox(&sb); /* in this process */
        tp[r] = pdf_time(argv[1], &pages, &w, &h, &tt[r], &page_tiles);
        sb.exe = "/proc/self/exe"; /* through the renderer process, as nanovl reads PDFs */
        media_pdf_set_sandbox(&sb);
        ts[r] = pdf_time(argv[1], &pages, &w, &h, NULL, NULL);
        media_video_sandbox vsb = media_video_sandbox_default();
        vsb.exe = "/proc/self/exe"; /* through the decoder process, as nanovl decodes videos */
        media_video_set_sandbox(&vsb);
        double a = nvl_now();
        media_frames *f = NULL;
        if (media_video_sample(argv[2], NULL, NULL, &f, &err) != NVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        tvd[r] = nvl_now() - a;
        media_frames_free(f);
        vsb.exe = NULL; /* in this process */
        media_video_set_sandbox(&vsb);
        a = nvl_now();
        if (media_video_sample(argv[2], NULL, NULL, &f, &err) != NVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        tv[r] = nvl_now() - a;
        frames = f->n;
        fw = f->width, fh = f->height;
        tf[r] = 0;
        for (int i = 0; i < f->n; i++) {
            int nt = 0;
            tf[r] += tile_time(f->frames[i], 1, &nt);
        }
        media_frames_free(f);
    }
    qsort(tp, 3, sizeof *tp, bench_cmp_double);
    qsort(ts, 3, sizeof *ts, bench_cmp_double);
    qsort(tv, 3, sizeof *tv, bench_cmp_double);
    qsort(tvd, 3, sizeof *tvd, bench_cmp_double);
    qsort(tt, 3, sizeof *tt, bench_cmp_double);
    qsort(tf, 3, sizeof *tf, bench_cmp_double);
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("| PDF %s: %d pages at %dx%d (default long side %d) | %.3f s | %.1f pages/s |\n", argv[1], pages, w, h,
           MEDIA_PDF_DEFAULT_LONG_SIDE, tp[1], pages / tp[1]);
    printf("| the same through the PDF renderer process (started ahead after the first run) | %.3f s | %.1f pages/s |\n",
           ts[1], pages / ts[1]);
    printf("| video %s: %d frames sampled (2 fps, max 128) | %.3f s | %.1f frames/s |\n", argv[2], frames, tv[1],
           frames / tv[1]);
    printf("| the same through the video decoder process | %.3f s | %.1f frames/s |\n", tvd[1], frames / tvd[1]);
    printf("| tiling page 1 (%dx%d) into %d tiles of 512, %d thread(s) | %.3f s | %.1f pages/s |\n", w, h, page_tiles,
           threads, tt[1], 1.0 / tt[1]);
    printf("| tiling %d frames (%dx%d) into one tile each, %d thread(s) | %.3f s | %.1f frames/s |\n", frames, fw, fh,
           threads, tf[1], frames / tf[1]);
    {
        media_video_sandbox vsb = media_video_sandbox_default();
        media_video_set_sandbox(&vsb); /* in this process */
        const double here = median_time(7, 0.2, video_open_once, argv[2]);
        vsb.exe = "/proc/self/exe";
        media_video_set_sandbox(&vsb);
        const double remote = median_time(7, 0.2, video_open_once, argv[2]);
        media_video_sandbox_end_spare();
        printf("| opening the video (its frame times read, the frames planned) | %.1f ms | |\n", here * 1e3);
        printf("| the same through the video decoder process (one started ahead, 200 ms between) | %.1f ms | |\n",
               remote * 1e3);
    }
    if (argc == 4) image_times(argv[3]);
    printf("peak RSS %.0f MiB\n", (double)ru.ru_maxrss / 1024.0);
    return 0;
}
