/* libFuzzer harness: still-image decoding (JPEG, PNG, FFmpeg stills) from arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "media.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    media_limits lim = media_limits_default();
    lim.max_pixels = 4 * 1024 * 1024; /* keep each run fast; larger images are refused cleanly */
    media_image *img = NULL;
    if (media_decode_image(data, size, "fuzz", &lim, &img, NULL) == NVL_OK) media_image_free(img);
    return 0;
}
