/* Pixel shuffle v2: 2x2 neighbouring ViT patches become one token of 4x the channels.
 * PyTorch (InternVL / Nemotron VL, ps_version v2):
 *   x = x.view(n, w, h, c); x = x.view(n, w, h/2, 2c); x = x.permute(0,2,1,3)
 *   x = x.view(n, h/2, w/2, 4c); x = x.permute(0,2,1,3)
 * which leaves out[k][j] = [X[2k][2j], X[2k][2j+1], X[2k+1][2j], X[2k+1][2j+1]]. */
#include "ops.h"
#include "tokenreduce.h"

nvl_status tokred_pixel_shuffle_f32(kern_backend *be, float *out, const float *x, int64_t n, int64_t g, int64_t c,
                                    nvl_err *err) {
    if (g <= 0 || (g & 1))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: grid %lld is not a positive even size",
                           __func__, (long long)g);
    nvl_tensor xt = kern_act(be, NVL_DTYPE_F32, 4, (int64_t[]){n, g, g, c}, (void *)x);
    nvl_tensor yt = kern_act(be, NVL_DTYPE_F32, 4, (int64_t[]){n, g / 2, g / 2, 4 * c}, out);
    if (kern_backend_kind_of(be) == KERN_BACKEND_KIND_CPU) return kern_pixel_shuffle(be, &yt, &xt, err);
    /* host rows through the device: upload, shuffle, download */
    const size_t bytes = (size_t)(n * g * g * c) * sizeof(float);
    void *buf = NULL;
    nvl_status st = kern_buffer_alloc(be, 2 * bytes, &buf, err);
    if (st != NVL_OK) return st;
    nvl_tensor dx = xt, dy = yt;
    dx.data = buf;
    dy.data = (char *)buf + bytes;
    dx.device = dy.device = NVL_DEVICE_CUDA;
    if ((st = kern_copy_to_backend(be, dx.data, x, bytes, err)) == NVL_OK && (st = kern_pixel_shuffle(be, &dy, &dx, err)) == NVL_OK)
        st = kern_copy_to_host(be, out, dy.data, bytes, err);
    kern_buffer_free(be, buf);
    return st;
}
