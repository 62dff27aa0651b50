/* tokenreduce/: fewer visual tokens, then into LLM space (pixel shuffle, mlp1 projector, EVS).
 *
 *   // X: (n_tiles, G, G, C) ViT grid, row-major; out: (n_tiles, G/2, G/2, 4C)
 *   tokred_pixel_shuffle_f32(out, X, n_tiles, G, C);
 */
#ifndef TOKENREDUCE_TOKENREDUCE_H
#define TOKENREDUCE_TOKENREDUCE_H

#include <stdint.h>

#include "base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Pixel shuffle, downsample ratio 0.5, ps_version "v2" (model.md §4.1):
 *   out[t][k][j] = concat(X[t][2k][2j], X[t][2k][2j+1], X[t][2k+1][2j], X[t][2k+1][2j+1])
 * X (n, g, g, c), out (n, g/2, g/2, 4c). g must be even. out must not alias X. */
nvl_status tokred_pixel_shuffle_f32(float *out, const float *x, int64_t n, int64_t g, int64_t c,
                                    nvl_err *err);

#ifdef __cplusplus
}
#endif

#endif // TOKENREDUCE_TOKENREDUCE_H
