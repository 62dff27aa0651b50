/* VL configuration (top-level config.json of NemotronH_Nano_VL_V2) and ViT sizes from tensors.
 * Values and their sources: model.md §3, §4, §5.1, §12.5. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json_util.h"
#include "vision.h"

#define CHECK(expr)                    \
    do {                               \
        nvl_status st_ = (expr);       \
        if (st_ != NVL_OK) return st_; \
    } while (0)

static const float k_clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float k_clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

static nvl_status copy_str(char *dst, size_t cap, const cJSON *c, const char *key,
                           const char *def, const char *what, nvl_err *err) {
    const char *s = NULL;
    CHECK(nvl_json_opt_string(c, key, def, &s, what, err));
    if (strlen(s) >= cap)
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: %s '%s' is too long", what, key, s);
    snprintf(dst, cap, "%s", s);
    return NVL_OK;
}

static nvl_status read_triplet(float out[3], const cJSON *c, const char *key, const float def[3], int positive,
                               const char *what, nvl_err *err) {
    if (!cJSON_GetObjectItemCaseSensitive(c, key)) {
        memcpy(out, def, 3 * sizeof(float));
        return NVL_OK;
    }
    double v[3];
    int n = 0;
    CHECK(nvl_json_get_double_array(c, key, v, 3, &n, what, err));
    if (n != 3)
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: %s has %d values, expected 3", what, key, n);
    for (int i = 0; i < 3; i++) { /* (a NaN mean was reported by the kernel's name at the first image: a review) */
        if (!isfinite(v[i]) || (positive && !(v[i] > 0)))
            return nvl_err_set(err, NVL_ERR_CONFIG, "%s: %s[%d] is %g, expected a finite number%s", what, key, i, v[i],
                               positive ? " > 0" : "");
        out[i] = (float)v[i];
    }
    return NVL_OK;
}

/* timm's ViT sizes by name (timm vision_transformer.py: vit_base 768 x 12, 12 heads; vit_large
 * 1024 x 24, 16; vit_huge 1280 x 32, 16), the names RADIO's remote code builds from
 * (vision_config.args.model, "vit_huge_patch16_224" for C-RADIOv2-H, model.md §3) */
static const struct {
    const char *name;
    int64_t width, depth, heads;
} k_timm_vits[] = {{"vit_base_", 768, 12, 12}, {"vit_large_", 1024, 24, 16}, {"vit_huge_", 1280, 32, 16}};

/* obj[key] (in: the object's name and a dot, for messages): absent or null 0, else it must be > 0 */
static nvl_status opt_positive(const cJSON *obj, const char *in, const char *key, int64_t *out, const char *what,
                               nvl_err *err) {
    CHECK(nvl_json_opt_int(obj, key, 0, out, what, err)); /* (absent or null: 0, not checked) */
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (*out < 0 || (*out == 0 && v && !cJSON_IsNull(v)))
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: %s%s is %lld, expected > 0", what, in, key, (long long)*out);
    return NVL_OK;
}

/* vision_config: what it declares about the ViT (vision_vl_config's cfg_* fields) */
static nvl_status read_vision_config(vision_vl_config *vc, const cJSON *v, const char *what, nvl_err *err) {
    vc->vit_ln_eps = 1e-6;
    if (!v) return NVL_OK;
    if (!cJSON_IsObject(v)) return nvl_err_set(err, NVL_ERR_CONFIG, "%s: vision_config is not an object", what);
    int64_t inter = 0, ncls = 0, nreg = 0;
    double ratio = 0;
    CHECK(opt_positive(v, "vision_config.", "hidden_size", &vc->cfg_width, what, err));
    CHECK(opt_positive(v, "vision_config.", "num_hidden_layers", &vc->cfg_depth, what, err));
    CHECK(opt_positive(v, "vision_config.", "num_attention_heads", &vc->vit_heads, what, err));
    CHECK(opt_positive(v, "vision_config.", "intermediate_size", &inter, what, err));
    CHECK(opt_positive(v, "vision_config.", "patch_size", &vc->cfg_patch, what, err));
    CHECK(nvl_json_opt_int(v, "num_cls_tokens", -1, &ncls, what, err));
    CHECK(nvl_json_opt_int(v, "num_registers", -1, &nreg, what, err));
    CHECK(nvl_json_opt_double(v, "mlp_ratio", 0.0, &ratio, what, err));
    CHECK(nvl_json_opt_double(v, "layer_norm_eps", 1e-6, &vc->vit_ln_eps, what, err));
    vc->cfg_width_key = "vision_config.hidden_size";
    vc->cfg_depth_key = "vision_config.num_hidden_layers";
    if (!(vc->vit_ln_eps > 0 && vc->vit_ln_eps < 1)) /* (NaN too) */
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: vision_config.layer_norm_eps is %g, expected in (0, 1)", what,
                           vc->vit_ln_eps);
    if (ncls >= 0 && nreg >= 0) vc->cfg_prefix = ncls + nreg;
    if (ratio != 0 && !(ratio > 0 && ratio <= 64))
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: vision_config.mlp_ratio is %g, expected in (0, 64]", what, ratio);
    vc->cfg_mlp_dim = inter ? inter : (ratio > 0 && vc->cfg_width ? (int64_t)llround(ratio * (double)vc->cfg_width) : 0);
    /* the ops RADIO-H runs and nothing else: exact-erf GELU, a plain MLP */
    const char *act = NULL;
    CHECK(nvl_json_opt_string(v, "hidden_act", "gelu", &act, what, err));
    if (strcmp(act, "gelu"))
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: vision_config.hidden_act is '%s'; nanovl runs RADIO's 'gelu' (exact erf) only",
                           what, act);
    int swiglu = 0;
    CHECK(nvl_json_opt_bool(v, "use_swiglu_ffn", 0, &swiglu, what, err));
    if (swiglu)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: vision_config.use_swiglu_ffn is true; nanovl runs RADIO-H's plain MLP only", what);
    /* the remote code's spelling: a timm name; explicit fields above win where both are given */
    const cJSON *args = nvl_json_obj(v, "args");
    const cJSON *name = args ? cJSON_GetObjectItemCaseSensitive(args, "model") : NULL;
    if (!cJSON_IsString(name)) return NVL_OK;
    const char *n = name->valuestring, *pp = strstr(n, "_patch");
    if (pp && pp[6] >= '0' && pp[6] <= '9') {
        const long long patch = strtoll(pp + 6, NULL, 10);
        if (vc->cfg_patch && vc->cfg_patch != patch)
            return nvl_err_set(err, NVL_ERR_CONFIG, "%s: vision_config.patch_size is %lld but args.model '%s' says patch %lld",
                               what, (long long)vc->cfg_patch, n, patch);
        vc->cfg_patch = patch;
    }
    for (size_t i = 0; i < sizeof k_timm_vits / sizeof k_timm_vits[0]; i++) {
        if (!strstr(n, k_timm_vits[i].name)) continue;
        if (!vc->cfg_width) vc->cfg_width = k_timm_vits[i].width, vc->cfg_width_key = "vision_config.args.model";
        if (!vc->cfg_depth) vc->cfg_depth = k_timm_vits[i].depth, vc->cfg_depth_key = "vision_config.args.model";
        if (!vc->vit_heads) vc->vit_heads = k_timm_vits[i].heads;
        break;
    }
    return NVL_OK;
}

nvl_status vision_vl_config_from_json(vision_vl_config *vc, const cJSON *root, const char *what,
                                      nvl_err *err) {
    memset(vc, 0, sizeof *vc);
    CHECK(read_vision_config(vc, nvl_json_obj(root, "vision_config"), what, err));
    CHECK(nvl_json_opt_int(root, "force_image_size", 512, &vc->image_size, what, err));
    CHECK(nvl_json_opt_int(root, "patch_size", 16, &vc->patch_size, what, err));
    CHECK(nvl_json_opt_double(root, "downsample_ratio", 0.5, &vc->downsample_ratio, what, err));
    CHECK(copy_str(vc->ps_version, sizeof vc->ps_version, root, "ps_version", "v2", what, err));
    CHECK(nvl_json_opt_bool(root, "use_thumbnail", 1, &vc->use_thumbnail, what, err));
    CHECK(nvl_json_opt_int(root, "max_num_tiles", 12, &vc->max_num_tiles, what, err));
    CHECK(read_triplet(vc->norm_mean, root, "norm_mean", k_clip_mean, 0, what, err));
    CHECK(read_triplet(vc->norm_std, root, "norm_std", k_clip_std, 1, what, err));
    CHECK(nvl_json_opt_double(root, "video_pruning_rate", 0.0, &vc->video_pruning_rate, what, err));
    /* (absent: 0, the sizes then the tensors' alone; given, they must be sizes: transformers builds
       its layers from them, and 0 or -5 would fail there) */
    CHECK(opt_positive(root, "", "vit_hidden_size", &vc->vit_hidden_size, what, err));
    CHECK(opt_positive(root, "", "projector_hidden_size", &vc->projector_hidden_size, what, err));
    CHECK(copy_str(vc->img_context_token, sizeof vc->img_context_token, root, "img_context_token",
                   "<image>", what, err));
    CHECK(copy_str(vc->img_start_token, sizeof vc->img_start_token, root, "img_start_token",
                   "<img>", what, err));
    CHECK(copy_str(vc->img_end_token, sizeof vc->img_end_token, root, "img_end_token", "</img>",
                   what, err));

    if (strcmp(vc->ps_version, "v2"))
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: ps_version is '%s', expected 'v2'", what,
                           vc->ps_version);
    if (vc->patch_size <= 0 || vc->image_size <= 0 || vc->image_size % vc->patch_size)
        return nvl_err_set(err, NVL_ERR_CONFIG,
                           "%s: force_image_size %lld is not a positive multiple of patch_size %lld",
                           what, (long long)vc->image_size, (long long)vc->patch_size);
    /* the pixel shuffle pairs patches: an even grid (48 / 16 = 3 failed deep in the vision stage
       naming no file); and a tile a ViT can take (1e9 tried to allocate) */
    if ((vc->image_size / vc->patch_size) % 2 || vc->image_size > 4096)
        return nvl_err_set(err, NVL_ERR_CONFIG,
                           "%s: force_image_size %lld / patch_size %lld = %lld patches a side: expected an even number, "
                           "and a tile of at most 4096 pixels",
                           what, (long long)vc->image_size, (long long)vc->patch_size,
                           (long long)(vc->image_size / vc->patch_size));
    if (!(fabs(vc->downsample_ratio - 0.5) <= 1e-9)) /* (NaN too) */
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: downsample_ratio is %g, expected 0.5", what,
                           vc->downsample_ratio);
    if (vc->max_num_tiles < 1 || vc->max_num_tiles > 64)
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: max_num_tiles is %lld, expected 1..64", what,
                           (long long)vc->max_num_tiles);
    if (!(vc->video_pruning_rate >= 0.0 && vc->video_pruning_rate < 1.0))
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: video_pruning_rate is %g, expected [0, 1)",
                           what, vc->video_pruning_rate);
    if (vc->cfg_patch && vc->cfg_patch != vc->patch_size)
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: vision_config says patch %lld but patch_size is %lld", what,
                           (long long)vc->cfg_patch, (long long)vc->patch_size);
    for (int i = 0; i < 3; i++)
        if (!(vc->norm_std[i] > 0))
            return nvl_err_set(err, NVL_ERR_CONFIG, "%s: norm_std[%d] is %g, expected > 0", what, i,
                               (double)vc->norm_std[i]);
    return NVL_OK;
}

#define VIT "vision_model.radio_model.model."

static nvl_status need(const nvl_checkpoint *ck, const char *name, int n_dims,
                       const nvl_st_entry **out, nvl_err *err) {
    const nvl_st_entry *e = nvl_checkpoint_find(ck, name);
    if (!e) return nvl_err_set(err, NVL_ERR_NOT_FOUND, "missing vision tensor '%s'", name);
    if (e->n_dims != n_dims)
        return nvl_err_set(err, NVL_ERR_SHAPE, "vision tensor '%s' has %d dimensions, expected %d",
                           name, e->n_dims, n_dims);
    *out = e;
    return NVL_OK;
}

nvl_status vision_vit_shape_from_checkpoint(vision_vl_config *vc, const nvl_checkpoint *ck,
                                            nvl_err *err) {
    const nvl_st_entry *emb = NULL, *cls = NULL, *pos = NULL, *fc1 = NULL;
    CHECK(need(ck, VIT "patch_generator.embedder.weight", 2, &emb, err));
    int64_t p = vc->patch_size;
    if (emb->shape[1] != 3 * p * p)
        return nvl_err_set(err, NVL_ERR_SHAPE,
                           "vision tensor '" VIT "patch_generator.embedder.weight' has %lld input "
                           "features, expected 3 x %lld x %lld = %lld",
                           (long long)emb->shape[1], (long long)p, (long long)p,
                           (long long)(3 * p * p));
    vc->vit_width = emb->shape[0];
    if (vc->vit_hidden_size && vc->vit_hidden_size != vc->vit_width)
        return nvl_err_set(err, NVL_ERR_CONFIG,
                           "config vit_hidden_size is %lld but the patch embedder has width %lld",
                           (long long)vc->vit_hidden_size, (long long)vc->vit_width);
    CHECK(need(ck, VIT "patch_generator.cls_token.token", 2, &cls, err));
    if (cls->shape[1] != vc->vit_width)
        return nvl_err_set(err, NVL_ERR_SHAPE, "vision cls_token.token has width %lld, expected %lld",
                           (long long)cls->shape[1], (long long)vc->vit_width);
    vc->vit_num_prefix = cls->shape[0];
    CHECK(need(ck, VIT "patch_generator.pos_embed", 3, &pos, err));
    int64_t g = (int64_t)llround(sqrt((double)pos->shape[1]));
    if (pos->shape[0] != 1 || g * g != pos->shape[1] || pos->shape[2] != vc->vit_width)
        return nvl_err_set(err, NVL_ERR_SHAPE,
                           "vision pos_embed has shape [%lld, %lld, %lld], expected [1, S*S, %lld]",
                           (long long)pos->shape[0], (long long)pos->shape[1],
                           (long long)pos->shape[2], (long long)vc->vit_width);
    vc->vit_pos_grid = g;
    int64_t depth = 0;
    char name[160];
    for (;; depth++) {
        snprintf(name, sizeof name, VIT "blocks.%lld.attn.qkv.weight", (long long)depth);
        if (!nvl_checkpoint_find(ck, name)) break;
    }
    if (depth == 0)
        return nvl_err_set(err, NVL_ERR_NOT_FOUND, "missing vision tensor '" VIT "blocks.0.attn.qkv.weight'");
    vc->vit_depth = depth;
    CHECK(need(ck, VIT "blocks.0.mlp.fc1.weight", 2, &fc1, err));
    vc->vit_mlp_dim = fc1->shape[0];
    /* what vision_config declares must be what the tensors hold (a config that names another
       ViT is another model, or a wrong file beside these weights) */
    if (vc->cfg_width && vc->cfg_width != vc->vit_width)
        return nvl_err_set(err, NVL_ERR_CONFIG, "config %s says width %lld but the patch embedder has width %lld",
                           vc->cfg_width_key, (long long)vc->cfg_width, (long long)vc->vit_width);
    if (vc->cfg_depth && vc->cfg_depth != depth)
        return nvl_err_set(err, NVL_ERR_CONFIG, "config %s says %lld blocks but the checkpoint has %lld (" VIT "blocks.N)",
                           vc->cfg_depth_key, (long long)vc->cfg_depth, (long long)depth);
    if (vc->cfg_mlp_dim && vc->cfg_mlp_dim != vc->vit_mlp_dim)
        return nvl_err_set(err, NVL_ERR_CONFIG,
                           "config vision_config.intermediate_size (or mlp_ratio x hidden_size) is %lld but " VIT
                           "blocks.0.mlp.fc1.weight has %lld rows",
                           (long long)vc->cfg_mlp_dim, (long long)vc->vit_mlp_dim);
    if (vc->cfg_prefix && vc->cfg_prefix != vc->vit_num_prefix)
        return nvl_err_set(err, NVL_ERR_CONFIG,
                           "config vision_config.num_cls_tokens + num_registers is %lld but " VIT
                           "patch_generator.cls_token.token has %lld rows",
                           (long long)vc->cfg_prefix, (long long)vc->vit_num_prefix);
    if (vc->vit_heads && vc->vit_width % vc->vit_heads)
        return nvl_err_set(err, NVL_ERR_CONFIG, "config vision_config: %lld attention heads do not divide the width %lld",
                           (long long)vc->vit_heads, (long long)vc->vit_width);
    const nvl_st_entry *fc = nvl_checkpoint_find(ck, "mlp1.1.weight");
    if (vc->projector_hidden_size && fc && fc->n_dims == 2 && fc->shape[0] != vc->projector_hidden_size)
        return nvl_err_set(err, NVL_ERR_CONFIG, "config projector_hidden_size is %lld but mlp1.1.weight has %lld rows",
                           (long long)vc->projector_hidden_size, (long long)fc->shape[0]);
    return NVL_OK;
}
