/* libFuzzer harness: PDF and video decoding, which read files: the input is written to a
 * temporary file, then opened as a PDF (pages rendered at 20 dpi) or sampled as a video. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "media.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[] = "/tmp/nvlfuzzXXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        unlink(path);
        return 0;
    }
    close(fd);
    media_limits lim = media_limits_default();
    lim.max_pixels = 1 << 20;
    lim.max_frames = 4;
    enum media_kind k = media_sniff(data, size);
    if (k == MEDIA_KIND_PDF) {
        media_pdf *pdf = NULL;
        if (media_pdf_open(&pdf, path, NULL, &lim, NULL) == NVL_OK) {
            for (int i = 0; i < media_pdf_page_count(pdf) && i < 3; i++) {
                media_image *img = NULL;
                if (media_pdf_render(pdf, i, 20, 0, &img, NULL) == NVL_OK) media_image_free(img);
            }
            media_pdf_close(pdf);
        }
    } else {
        media_video_params p = media_video_params_default();
        p.max_frames = 4;
        media_frames *f = NULL;
        if (media_video_sample(path, &p, &lim, &f, NULL) == NVL_OK) media_frames_free(f);
    }
    unlink(path);
    return 0;
}
