/* mlp1 projector: RMSNorm -> Linear -> relu^2 -> Linear, from ViT-width x 4 to the LM width.
 * PyTorch (V2 modeling copy / transformers Omni projector):
 *   h = (w.float() * (x * rsqrt(mean(x^2) + 1e-5))).to(dtype); h = fc2(relu(fc1(h)) ** 2) */
#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "cpu/cpu_ops.h"
#include "tokenreduce.h"

static nvl_status need(const nvl_checkpoint *ck, const char *name, int nd, nvl_tensor *t, nvl_err *err) {
    nvl_status st = nvl_checkpoint_get(ck, name, t, err);
    if (st != NVL_OK) return nvl_err_set(err, NVL_ERR_NOT_FOUND, "missing projector tensor '%s'", name);
    if (t->n_dims != nd)
        return nvl_err_set(err, NVL_ERR_SHAPE, "projector tensor '%s' has %d dimensions, expected %d", name, t->n_dims, nd);
    if (!nvl_dtype_is_float(t->dtype) || t->dtype == NVL_DTYPE_F8_E4M3)
        return nvl_err_set(err, NVL_ERR_DTYPE, "projector tensor '%s' has dtype %s, expected F32, BF16 or F16", name,
                           nvl_dtype_name(t->dtype));
    return NVL_OK;
}

nvl_status tokred_projector_bind(tokred_projector *p, const nvl_checkpoint *ck, int64_t in_expected,
                                 int64_t out_expected, nvl_err *err) {
    memset(p, 0, sizeof *p);
    nvl_status st;
    if ((st = need(ck, "mlp1.0.weight", 1, &p->norm, err)) != NVL_OK ||
        (st = need(ck, "mlp1.1.weight", 2, &p->fc1, err)) != NVL_OK ||
        (st = need(ck, "mlp1.3.weight", 2, &p->fc2, err)) != NVL_OK)
        return st;
    p->in = p->norm.shape[0];
    p->hidden = p->fc1.shape[0];
    p->out = p->fc2.shape[0];
    p->eps = 1e-5f;
    if (in_expected && p->in != in_expected)
        return nvl_err_set(err, NVL_ERR_SHAPE, "projector tensor 'mlp1.0.weight' has %lld elements, expected %lld (4 x ViT width)",
                           (long long)p->in, (long long)in_expected);
    if ((st = nvl_tensor_check_shape(&p->fc1, 2, (int64_t[]){p->hidden, p->in}, "projector tensor 'mlp1.1.weight'", err)) != NVL_OK)
        return st;
    if ((st = nvl_tensor_check_shape(&p->fc2, 2, (int64_t[]){p->out, p->hidden}, "projector tensor 'mlp1.3.weight'", err)) != NVL_OK)
        return st;
    if (out_expected && p->out != out_expected)
        return nvl_err_set(err, NVL_ERR_SHAPE, "projector tensor 'mlp1.3.weight' gives %lld outputs, expected the LM width %lld",
                           (long long)p->out, (long long)out_expected);
    return NVL_OK;
}

nvl_status tokred_projector_run(const tokred_projector *p, float *y, const float *x, int64_t n, nvl_err *err) {
    float *h = nvl_malloc((size_t)(n * (p->in > p->hidden ? p->in : p->hidden)) * sizeof(float));
    float *u = nvl_malloc((size_t)(n * p->hidden) * sizeof(float));
    if (!h || !u) {
        nvl_free(h);
        nvl_free(u);
        return nvl_err_set(err, NVL_ERR_NOMEM, "projector: out of memory for %lld tokens", (long long)n);
    }
    const int rnd = p->fc1.dtype == NVL_DTYPE_BF16; /* activations in the weights' dtype */
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * p->in;
        float ss = 0.0f;
        for (int64_t c = 0; c < p->in; c++) ss += xr[c] * xr[c];
        const float inv = 1.0f / sqrtf(ss / (float)p->in + p->eps);
        for (int64_t c = 0; c < p->in; c++) {
            float v = nvl_tensor_get_f32(&p->norm, c) * (xr[c] * inv);
            h[r * p->in + c] = rnd ? nvl_round_bf16(v) : v;
        }
    }
    nvl_status st = kern_cpu_matmul(u, h, &p->fc1, n, err);
    if (st == NVL_OK) {
        for (int64_t i = 0; i < n * p->hidden; i++) {
            float v = rnd ? nvl_round_bf16(u[i]) : u[i];
            v = v > 0 ? v * v : 0.0f;
            u[i] = rnd ? nvl_round_bf16(v) : v;
        }
        st = kern_cpu_matmul(y, u, &p->fc2, n, err);
        if (st == NVL_OK && rnd)
            for (int64_t i = 0; i < n * p->out; i++) y[i] = nvl_round_bf16(y[i]);
    }
    nvl_free(h);
    nvl_free(u);
    return st;
}
