/* bench_media: PDF pages rendered per second at the default size, and video frames sampled per
 * second (model.md §6.1 sampling at 2 fps, at most 128 frames) on a long file.
 *
 *   bench_media PDF VIDEO      (e.g. ../shared/media/pdf/multi_page.pdf
 *                                    ../shared/media/video/long_180p_av1.mp4)
 * Reports wall time of open + render of every page (median of 3), and of one full sampling
 * call (median of 3), plus peak RSS. */
#include "bench_util.h"
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "media.h"


int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: bench_media PDF VIDEO\n");
        return 2;
    }
    nvl_err err = {0};
    double tp[3], tv[3];
    int pages = 0, frames = 0, w = 0, h = 0;
    for (int r = 0; r < 3; r++) {
        double a = bench_now();
        media_pdf *pdf = NULL;
        if (media_pdf_open(&pdf, argv[1], NULL, NULL, &err) != NVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        pages = media_pdf_page_count(pdf);
        for (int i = 0; i < pages; i++) {
            media_image *img = NULL;
            if (media_pdf_render(pdf, i, 0, 0, &img, &err) != NVL_OK) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            w = img->width, h = img->height;
            media_image_free(img);
        }
        media_pdf_close(pdf);
        tp[r] = bench_now() - a;
        a = bench_now();
        media_frames *f = NULL;
        if (media_video_sample(argv[2], NULL, NULL, &f, &err) != NVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        frames = f->n;
        media_frames_free(f);
        tv[r] = bench_now() - a;
    }
    qsort(tp, 3, sizeof *tp, bench_cmp_double);
    qsort(tv, 3, sizeof *tv, bench_cmp_double);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("| PDF %s: %d pages at %dx%d (default long side %d) | %.3f s | %.1f pages/s |\n", argv[1], pages, w, h,
           MEDIA_PDF_DEFAULT_LONG_SIDE, tp[1], pages / tp[1]);
    printf("| video %s: %d frames sampled (2 fps, max 128) | %.3f s | %.1f frames/s |\n", argv[2], frames, tv[1],
           frames / tv[1]);
    printf("peak RSS %.0f MiB\n", (double)ru.ru_maxrss / 1024.0);
    return 0;
}
