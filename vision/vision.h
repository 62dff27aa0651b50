/* vision/: RADIO ViT-H/16 encoder. Frames in, patch embeddings out; never sees a file format.
 *
 * So far: the VL configuration (top-level config.json of a NemotronH_Nano_VL_V2 checkpoint:
 * image size, patch size, pixel-shuffle ratio and version, thumbnail, normalisation, EVS rate,
 * image token strings) and the ViT sizes read off the checkpoint's tensor shapes.
 *
 *   vision_vl_config vc;
 *   st = vision_vl_config_from_json(&vc, cfg_root, "config.json", &err);
 *   st = vision_vit_shape_from_checkpoint(&vc, ck, &err);   // width, depth, prefix tokens
 */
#ifndef VISION_VISION_H
#define VISION_VISION_H

#include <stdint.h>

#include "backend.h"
#include "base/safetensors.h"
#include "base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cJSON;

typedef struct vision_vl_config {
    int64_t image_size;        /* force_image_size (512): tile side in pixels */
    int64_t patch_size;        /* 16 */
    double downsample_ratio;   /* 0.5: pixel shuffle 2x2 */
    char ps_version[8];        /* "v2" */
    int use_thumbnail;         /* true */
    int64_t max_num_tiles;     /* 12 unless the config says otherwise */
    float norm_mean[3], norm_std[3];
    double video_pruning_rate; /* EVS q; 0 = off */
    int64_t vit_hidden_size;   /* 1280 (config) */
    int64_t projector_hidden_size; /* 20480 */
    char img_context_token[32], img_start_token[32], img_end_token[32];
    /* vision_config as declared (0 where absent), checked against the tensor shapes by
     * vision_vit_shape_from_checkpoint. Two spellings exist: transformers' RadioConfig
     * (hidden_size, num_hidden_layers, num_attention_heads, intermediate_size or mlp_ratio,
     * num_cls_tokens + num_registers, layer_norm_eps, hidden_act) and the RADIO remote code's
     * (args.model, a timm name such as "vit_huge_patch16_224": width, depth, heads, patch). */
    int64_t vit_heads;         /* num_attention_heads, else from args.model (16 for vit_huge) */
    int64_t cfg_width, cfg_depth, cfg_mlp_dim, cfg_prefix, cfg_patch;
    const char *cfg_width_key, *cfg_depth_key;  /* where cfg_width / cfg_depth came from (literals) */
    double vit_ln_eps;         /* vision_config.layer_norm_eps, 1e-6 (RADIO's timm LayerNorm) */
    /* From tensor shapes (vision_vit_shape_from_checkpoint): */
    int64_t vit_width;         /* embedder.weight rows */
    int64_t vit_depth;         /* number of blocks */
    int64_t vit_num_prefix;    /* cls_token.token rows: cls + register tokens */
    int64_t vit_pos_grid;      /* pos_embed side (128 for 2048/16) */
    int64_t vit_mlp_dim;       /* fc1 rows */
} vision_vl_config;

/* Reads the top-level VL fields and vision_config; every value the spec fixes is checked
 * (ps_version v2, ratio 0.5, hidden_act gelu, eps in (0, 1)) and a mismatch is NVL_ERR_CONFIG
 * naming the key, got and expected. */
nvl_status vision_vl_config_from_json(vision_vl_config *vc, const struct cJSON *root,
                                      const char *what, nvl_err *err);
/* Fills the vit_* fields from `vision_model.radio_model.model.*` tensor shapes and checks
 * them against what vision_config declares (and projector_hidden_size against mlp1.1.weight).
 * @return NVL_ERR_NOT_FOUND / NVL_ERR_SHAPE naming the tensor; NVL_ERR_CONFIG naming the
 *         config key whose value the tensors contradict. */
nvl_status vision_vit_shape_from_checkpoint(vision_vl_config *vc, const nvl_checkpoint *ck,
                                            nvl_err *err);

// ---------------------------------------------------------------------------
// Preprocessing (model.md §5.2-§5.3)

/* The tile grid of an image: cols x rows tiles (cols across the width), chosen among
 * 1 <= cols * rows <= max_tiles by closest aspect ratio, ties by the InternVL area rule. */
void vision_tile_grid(int width, int height, int max_tiles, int tile_size, int *cols, int *rows);

/* Resizes RGB8 src (sw x sh, stride sstride) to dst (dw x dh, tightly packed) with
 * antialiased bicubic (a = -0.5, align_corners=False) as torch.nn.functional.interpolate(...,
 * mode="bicubic", antialias=True) does on uint8: separable, horizontal pass first, fixed-point
 * weights, each pass rounded and clamped to uint8 (bit-exact against torch in the tests). */
nvl_status vision_resize_bicubic_aa(const uint8_t *src, int sw, int sh, size_t sstride, uint8_t *dst,
                                    int dw, int dh, nvl_err *err);

/* Cuts an RGB8 image into the model's tiles: resize to (tile*cols) x (tile*rows), tiles in
 * row-major order, plus a tile_size^2 thumbnail of the whole image last when use_thumbnail and
 * more than one tile; each tile as RGB8 pixels, *tiles (n, tile, tile, 3) nvl_malloc'ed (what
 * vision_encode_rgb8 takes: a quarter of the f32 tiles' bytes); *n_tiles counts the thumbnail. */
nvl_status vision_make_tiles_rgb8(const uint8_t *rgb, int width, int height, size_t stride,
                                  const vision_vl_config *vc, int max_tiles, uint8_t **tiles, int *n_tiles,
                                  int *cols, int *rows, nvl_err *err);
/* n RGB8 tiles (n, S, S, 3) -> out (n, 3, S, S) normalised: (x/255 - mean) / std in f32, the
 * formula of kern_normalize_rgb8 (the same bits). */
void vision_normalize_tiles(float *out, const uint8_t *tiles, int n, const vision_vl_config *vc);
/* vision_make_tiles_rgb8, then vision_normalize_tiles: *tiles (n, 3, tile, tile) f32. */
nvl_status vision_make_tiles(const uint8_t *rgb, int width, int height, size_t stride,
                             const vision_vl_config *vc, int max_tiles, float **tiles, int *n_tiles,
                             int *cols, int *rows, nvl_err *err);

// ---------------------------------------------------------------------------
// RADIO ViT forward (model.md §3): patch embedding (no bias) + position table resized
// bilinearly (align_corners=False) to the tile's patch grid, prefix (cls + register) tokens,
// pre-norm blocks (LayerNorm, fused qkv with bias, softmax attention without mask, exact-erf
// GELU MLP), no final norm; prefix tokens dropped at the end.

typedef struct vision_model vision_model;

/* dir: a VL checkpoint directory (config.json + safetensors with vision_model.radio_model.*).
 * The head count comes from vision_config.num_attention_heads, else from the timm model name
 * in vision_config.args.model (vit_huge / vit_large -> 16, vit_base -> 12). Every tensor of
 * every block is checked (presence, shape, float dtype) and refused by name. */
nvl_status vision_model_init(vision_model **out, const char *dir, nvl_err *err);
/* The same on a checkpoint the caller opened (one per engine; NULL: one of its own) and a backend
 * (not NULL: vision_model_init makes one, with the CPU fallback); ck and be must outlive the model. */
nvl_status vision_model_load(vision_model **out, nvl_checkpoint *ck, kern_backend *be, const char *dir, nvl_err *err);
kern_backend *vision_model_backend(const vision_model *m);
void vision_model_free(vision_model *m);
const vision_vl_config *vision_model_config(const vision_model *m);
/* Patch-grid side of one tile (image_size / patch_size) and ViT width. */
int64_t vision_model_grid(const vision_model *m);
int64_t vision_model_width(const vision_model *m);

/* tiles (n, 3, S, S) normalised -> features (n, G*G, width), row-major patch order. */
nvl_status vision_encode(const vision_model *m, const float *tiles, int n, float *features, nvl_err *err);
/* The same from RGB8 tiles (n, S, S, 3) (vision_make_tiles_rgb8), normalised on the model's
 * backend (kern_normalize_rgb8: the bits vision_normalize_tiles gives, so the features equal
 * vision_encode's on those tiles). A device receives a quarter of the bytes. */
nvl_status vision_encode_rgb8(const vision_model *m, const uint8_t *tiles, int n, float *features, nvl_err *err);
/* The same into features (n * G*G, width) F32 in the model's backend memory (kern_act on
 * vision_model_backend): on a device the features stay there for the pixel shuffle and the
 * projector (tokred_embed_tiles_rgb8_to) instead of crossing to the host and back. Same values. */
nvl_status vision_encode_rgb8_to(const vision_model *m, const uint8_t *tiles, int n, nvl_tensor *features, nvl_err *err);

#ifdef __cplusplus
}
#endif

#endif // VISION_VISION_H
