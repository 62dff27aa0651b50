/* tokenreduce/: fewer visual tokens, then into LLM space (pixel shuffle, mlp1 projector, EVS).
 *
 *   // X: (n_tiles, G, G, C) ViT grid, row-major; out: (n_tiles, G/2, G/2, 4C)
 *   tokred_pixel_shuffle_f32(be, out, X, n_tiles, G, C, &err);   // host memory on the CPU backend
 */
#ifndef TOKENREDUCE_TOKENREDUCE_H
#define TOKENREDUCE_TOKENREDUCE_H

#include <stdint.h>

#include "base/safetensors.h"
#include "base/status.h"
#include "base/tensor.h"
#include "ops.h"
#include "vision.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Pixel shuffle, downsample ratio 0.5, ps_version "v2" (model.md §4.1):
 *   out[t][k][j] = concat(X[t][2k][2j], X[t][2k][2j+1], X[t][2k+1][2j], X[t][2k+1][2j+1])
 * X (n, g, g, c), out (n, g/2, g/2, 4c). g must be even. out must not alias X. */
nvl_status tokred_pixel_shuffle_f32(kern_backend *be, float *out, const float *x, int64_t n, int64_t g, int64_t c,
                                    nvl_err *err);

// ---------------------------------------------------------------------------
// mlp1 projector (model.md §4.2): RMSNorm (eps 1e-5, weight multiplied in f32), Linear,
// squared ReLU, Linear. Weights `mlp1.0.weight` (4C), `mlp1.1.weight` (hidden, 4C),
// `mlp1.3.weight` (n_embd, hidden), used as stored.

typedef struct tokred_projector {
    nvl_tensor norm;   /* (in) */
    kern_weight fc1;   /* (hidden, in) */
    kern_weight fc2;   /* (out, hidden) */
    int64_t in, hidden, out;
    float eps;
    nvl_dtype act;     /* activation dtype: the weights' (BF16 or F32) */
    kern_backend *be;  /* where the weights are placed and the ops run */
} tokred_projector;

/* Binds the projector from a checkpoint (prefix "mlp1."), checking shapes against each other
 * and against in_expected (4 x ViT width; 0 = do not check) and out_expected (the LM's n_embd;
 * 0 = do not check). Views stay valid while ck is open. */
nvl_status tokred_projector_bind(tokred_projector *p, const nvl_checkpoint *ck, kern_backend *be, int64_t in_expected,
                                 int64_t out_expected, nvl_err *err);
/* y (n, out) host = mlp1(x (n, in) host) on the projector's backend; one workspace per call. */
nvl_status tokred_projector_run(const tokred_projector *p, float *y, const float *x, int64_t n,
                                nvl_err *err);
/* The same from x (n, in) F32 already in the projector's backend memory into y (n, out), a tensor
 * of dtype p->act there (kern_act's layout): nothing crosses to the host. NVL_ERR_SHAPE for
 * another shape or dtype. */
nvl_status tokred_projector_run_to(const tokred_projector *p, nvl_tensor *y, const nvl_tensor *x, nvl_err *err);

// ---------------------------------------------------------------------------
// EVS: efficient video sampling (model.md §6.4). E (F, T, D): F frames of T tokens of the
// projector output. dis[f, t] = 1 - cos(E[f, t], E[f-1, t]) for f >= 1, 255 for frame 0;
// keep_n = max(T, (int)(T * F * (1 - q))); the keep_n largest dis (stable: ties to the lower
// flat index) are kept, in original order. With round_bf16 the cosine and 1 - cos are rounded
// to bf16 as torch does for bf16 embeddings. keep (F*T) gets 1/0, kept_per_frame (F) counts.
nvl_status tokred_evs_mask(kern_backend *be, const float *E, int64_t F, int64_t T, int64_t D, double q, int round_bf16,
                           uint8_t *keep, int *kept_per_frame, nvl_err *err);
/* The same over rows already in be's memory: E (F*T, D), any float dtype the backend's
 * kern_evs_scores takes (a BF16 tensor is read as its values, the cosine in f32/double as
 * above), contiguous. Only the F*T scores cross to the host. */
nvl_status tokred_evs_mask_on(kern_backend *be, const nvl_tensor *E, int64_t F, int64_t T, double q, int round_bf16,
                              uint8_t *keep, int *kept_per_frame, nvl_err *err);

// ---------------------------------------------------------------------------
// The vision path for a batch of tiles: ViT -> pixel shuffle -> mlp1.

/* tiles (n, 3, S, S) normalised -> out (n * (G/2)^2, pr->out) LLM-space rows, tiles in order.
 * With NANOVL_DUMP_DIR set, writes tiles, vit_features, pixel_shuffle and projector
 * (kernels/base/dump.h). */
nvl_status tokred_embed_tiles(const vision_model *vm, const tokred_projector *pr, const float *tiles, int n,
                              float *out, nvl_err *err);
/* The same from RGB8 tiles (n, S, S, 3) (vision_make_tiles_rgb8), normalised on the vision
 * model's backend: the same rows (the normalisation is the same bits). Dumps tiles_rgb8 instead
 * of tiles. */
nvl_status tokred_embed_tiles_rgb8(const vision_model *vm, const tokred_projector *pr, const uint8_t *tiles, int n,
                                   float *out, nvl_err *err);
/* The same rows into rows (n * (G/2)^2, pr->out), a tensor of dtype pr->act in the projector
 * backend's memory (kern_act's layout): on a device they stay there for EVS and the LM's
 * embedding gather. With dumps on, or the ViT on another backend, the rows are made on the host
 * and uploaded (the same values: they are pr->act values already). NVL_ERR_SHAPE for rows of
 * another shape or dtype. */
nvl_status tokred_embed_tiles_rgb8_to(const vision_model *vm, const tokred_projector *pr, const uint8_t *tiles, int n,
                                      nvl_tensor *rows, nvl_err *err);

#ifdef __cplusplus
}
#endif

#endif // TOKENREDUCE_TOKENREDUCE_H
