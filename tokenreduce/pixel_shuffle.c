/* Pixel shuffle v2: 2x2 neighbouring ViT patches become one token of 4x the channels.
 * PyTorch (InternVL / Nemotron VL, ps_version v2):
 *   x = x.view(n, w, h, c); x = x.view(n, w, h/2, 2c); x = x.permute(0,2,1,3)
 *   x = x.view(n, h/2, w/2, 4c); x = x.permute(0,2,1,3)
 * which leaves out[k][j] = [X[2k][2j], X[2k][2j+1], X[2k+1][2j], X[2k+1][2j+1]]. */
#include <string.h>

#include "tokenreduce.h"

nvl_status tokred_pixel_shuffle_f32(float *out, const float *x, int64_t n, int64_t g, int64_t c,
                                    nvl_err *err) {
    if (g <= 0 || (g & 1))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: grid %lld is not a positive even size",
                           __func__, (long long)g);
    const int64_t h = g / 2;
    const size_t row = (size_t)c * sizeof(float);
    for (int64_t t = 0; t < n; t++) {
        const float *X = x + t * g * g * c;
        float *O = out + t * h * h * 4 * c;
        for (int64_t k = 0; k < h; k++)
            for (int64_t j = 0; j < h; j++) {
                float *o = O + (k * h + j) * 4 * c;
                memcpy(o + 0 * c, X + ((2 * k) * g + 2 * j) * c, row);
                memcpy(o + 1 * c, X + ((2 * k) * g + 2 * j + 1) * c, row);
                memcpy(o + 2 * c, X + ((2 * k + 1) * g + 2 * j) * c, row);
                memcpy(o + 3 * c, X + ((2 * k + 1) * g + 2 * j + 1) * c, row);
            }
    }
    return NVL_OK;
}
