/* The vision path for tiles: RADIO features -> pixel shuffle (v2) -> mlp1, with intermediates
 * dumped on request. */
#include "base/alloc.h"
#include "base/dump.h"
#include "tokenreduce.h"

/* RGB8 tiles -> rows (n * Q, out) in pr->act on the backend, with every intermediate in the
 * backend's memory: the ViT's features, the pixel shuffle and the projector's input never cross
 * to the host (on a device, ~4 transfers of n x 1024 x 1280 f32 saved per call; the same values:
 * the features are copied to f32 exactly where they were, and the shuffle is a permutation). */
static nvl_status embed_on_backend(const vision_model *vm, const tokred_projector *pr, const uint8_t *tiles8, int n,
                                   nvl_tensor *rows, nvl_err *err) {
    kern_backend *be = pr->be;
    const int64_t G = vision_model_grid(vm), W = vision_model_width(vm), P = G * G, Q = (G / 2) * (G / 2);
    const size_t bytes = kern_act_bytes(be, NVL_DTYPE_F32, n * P * W);
    void *buf = NULL;
    nvl_status st = kern_buffer_alloc(be, 2 * bytes, &buf, err);
    if (st != NVL_OK) return nvl_err_prefix(err, "vision path: %d tiles", n), st;
    nvl_tensor feat = kern_act(be, NVL_DTYPE_F32, 2, (int64_t[]){n * P, W}, buf);
    nvl_tensor feat4 = kern_act(be, NVL_DTYPE_F32, 4, (int64_t[]){n, G, G, W}, buf);
    nvl_tensor shuf4 = kern_act(be, NVL_DTYPE_F32, 4, (int64_t[]){n, G / 2, G / 2, 4 * W}, (char *)buf + bytes);
    nvl_tensor shuf = kern_act(be, NVL_DTYPE_F32, 2, (int64_t[]){n * Q, 4 * W}, (char *)buf + bytes);
    if ((st = vision_encode_rgb8_to(vm, tiles8, n, &feat, err)) == NVL_OK &&
        (st = kern_pixel_shuffle(be, &shuf4, &feat4, err)) == NVL_OK)
        st = tokred_projector_run_to(pr, rows, &shuf, err);
    kern_buffer_free(be, buf);
    return st;
}

/* The backend route, unless the intermediates are to be dumped (host copies) or the ViT and the
 * projector live on different backends. */
static int backend_route(const vision_model *vm, const tokred_projector *pr) {
    return !nvl_dump_dir() && pr->be && vision_model_backend(vm) == pr->be;
}

/* tiles (f32, normalised) or tiles8 (RGB8, normalised on the backend by vision_encode_rgb8) */
static nvl_status embed(const vision_model *vm, const tokred_projector *pr, const float *tiles, const uint8_t *tiles8,
                        int n, float *out, nvl_err *err) {
    const int64_t G = vision_model_grid(vm), W = vision_model_width(vm), S = vision_model_config(vm)->image_size;
    const int64_t P = G * G, Q = (G / 2) * (G / 2);
    if (pr->in != 4 * W)
        return nvl_err_set(err, NVL_ERR_SHAPE, "projector input %lld does not match 4 x ViT width %lld", (long long)pr->in,
                           (long long)W);
    if (tiles8 && backend_route(vm, pr)) { /* on the backend throughout; the rows come back */
        kern_backend *be = pr->be;
        const int64_t nq = (int64_t)n * Q;
        void *buf = NULL;
        nvl_status st = kern_buffer_alloc(be, kern_act_bytes(be, pr->act, nq * pr->out), &buf, err);
        if (st != NVL_OK) return nvl_err_prefix(err, "vision path: %d tiles", n), st;
        nvl_tensor rows = kern_act(be, pr->act, 2, (int64_t[]){nq, pr->out}, buf);
        if ((st = embed_on_backend(vm, pr, tiles8, n, &rows, err)) == NVL_OK) st = kern_to_host_f32(be, out, &rows, err);
        kern_buffer_free(be, buf);
        return st;
    }
    float *feat = nvl_malloc((size_t)(n * P * W) * sizeof(float));
    float *shuf = nvl_malloc((size_t)(n * P * W) * sizeof(float));
    nvl_status st = NVL_OK;
    if (!feat || !shuf) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "vision path: out of memory for %d tiles", n);
        goto done;
    }
    if (tiles8) {
        nvl_dump("tiles_rgb8", NVL_DTYPE_U8, 4, (int64_t[]){n, S, S, 3}, tiles8);
        st = vision_encode_rgb8(vm, tiles8, n, feat, err);
    } else {
        nvl_dump("tiles", NVL_DTYPE_F32, 4, (int64_t[]){n, 3, S, S}, tiles);
        st = vision_encode(vm, tiles, n, feat, err);
    }
    if (st != NVL_OK) goto done;
    nvl_dump("vit_features", NVL_DTYPE_F32, 3, (int64_t[]){n, P, W}, feat);
    if ((st = tokred_pixel_shuffle_f32(pr->be, shuf, feat, n, G, W, err)) != NVL_OK) goto done;
    nvl_dump("pixel_shuffle", NVL_DTYPE_F32, 3, (int64_t[]){n, Q, 4 * W}, shuf);
    if ((st = tokred_projector_run(pr, out, shuf, n * Q, err)) != NVL_OK) goto done;
    nvl_dump("projector", NVL_DTYPE_F32, 3, (int64_t[]){n, Q, pr->out}, out);
done:
    nvl_free(feat);
    nvl_free(shuf);
    return st;
}

nvl_status tokred_embed_tiles(const vision_model *vm, const tokred_projector *pr, const float *tiles, int n, float *out,
                              nvl_err *err) {
    return embed(vm, pr, tiles, NULL, n, out, err);
}

nvl_status tokred_embed_tiles_rgb8(const vision_model *vm, const tokred_projector *pr, const uint8_t *tiles, int n,
                                   float *out, nvl_err *err) {
    return embed(vm, pr, NULL, tiles, n, out, err);
}

nvl_status tokred_embed_tiles_rgb8_to(const vision_model *vm, const tokred_projector *pr, const uint8_t *tiles, int n,
                                      nvl_tensor *rows, nvl_err *err) {
    const int64_t G = vision_model_grid(vm), nq = (int64_t)n * (G / 2) * (G / 2);
    if (!pr->be) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "vision path: the projector was bound without a backend");
    if (rows->n_dims != 2 || rows->shape[0] != nq || rows->shape[1] != pr->out || rows->dtype != pr->act)
        return nvl_err_set(err, NVL_ERR_SHAPE, "vision path: rows must be (%lld, %lld) %s for %d tiles", (long long)nq,
                           (long long)pr->out, nvl_dtype_name(pr->act), n);
    if (pr->in != 4 * vision_model_width(vm))
        return nvl_err_set(err, NVL_ERR_SHAPE, "projector input %lld does not match 4 x ViT width %lld", (long long)pr->in,
                           (long long)vision_model_width(vm));
    if (backend_route(vm, pr)) return embed_on_backend(vm, pr, tiles, n, rows, err);
    /* through the host (dumps, or a ViT on another backend): the rows are values of pr->act
     * already (the projector rounded them), so uploading them rounds nothing */
    float *host = nvl_malloc((size_t)(nq * pr->out) * sizeof(float));
    if (!host) return nvl_err_set(err, NVL_ERR_NOMEM, "vision path: out of memory for %d tiles", n);
    nvl_status st = embed(vm, pr, NULL, tiles, n, host, err);
    if (st == NVL_OK) st = kern_from_host_f32(pr->be, rows, host, err);
    nvl_free(host);
    return st;
}
