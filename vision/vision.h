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
    /* From tensor shapes (vision_vit_shape_from_checkpoint): */
    int64_t vit_width;         /* embedder.weight rows */
    int64_t vit_depth;         /* number of blocks */
    int64_t vit_num_prefix;    /* cls_token.token rows: cls + register tokens */
    int64_t vit_pos_grid;      /* pos_embed side (128 for 2048/16) */
    int64_t vit_mlp_dim;       /* fc1 rows */
} vision_vl_config;

/* Reads the top-level VL fields; every value the spec fixes is checked (ps_version v2, patch
 * 16, ratio 0.5) and a mismatch is NVL_ERR_CONFIG naming the key, got and expected. */
nvl_status vision_vl_config_from_json(vision_vl_config *vc, const struct cJSON *root,
                                      const char *what, nvl_err *err);
/* Fills the vit_* fields from `vision_model.radio_model.model.*` tensor shapes.
 * @return NVL_ERR_NOT_FOUND / NVL_ERR_SHAPE naming the tensor. */
nvl_status vision_vit_shape_from_checkpoint(vision_vl_config *vc, const nvl_checkpoint *ck,
                                            nvl_err *err);

#ifdef __cplusplus
}
#endif

#endif // VISION_VISION_H
