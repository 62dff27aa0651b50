/* mlp1 projector: RMSNorm -> Linear -> relu^2 -> Linear, from ViT-width x 4 to the LM width.
 * PyTorch (V2 modeling copy / transformers Omni projector):
 *   h = (w.float() * (x * rsqrt(mean(x^2) + 1e-5))).to(dtype); h = fc2(relu(fc1(h)) ** 2) */
#include <string.h>

#include "ops.h"
#include "tokenreduce.h"

nvl_status tokred_projector_bind(tokred_projector *p, const nvl_checkpoint *ck, kern_backend *be, int64_t in_expected,
                                 int64_t out_expected, nvl_err *err) {
    memset(p, 0, sizeof *p);
    p->be = be;
    nvl_status st;
    nvl_tensor fc1, fc2;
    const char *what = "projector";
    if ((st = nvl_checkpoint_bind(ck, what, "mlp1.0.weight", 1, (int64_t[]){in_expected ? in_expected : -1},
                                  NVL_BIND_FLOAT, &p->norm, err)) != NVL_OK ||
        (st = nvl_checkpoint_bind(ck, what, "mlp1.1.weight", 2, (int64_t[]){-1, p->norm.shape[0]}, NVL_BIND_FLOAT, &fc1,
                                  err)) != NVL_OK ||
        (st = nvl_checkpoint_bind(ck, what, "mlp1.3.weight", 2, (int64_t[]){out_expected ? out_expected : -1, fc1.shape[0]},
                                  NVL_BIND_FLOAT, &fc2, err)) != NVL_OK)
        return st;
    p->fc1 = kern_weight_plain(&fc1, "mlp1.1.weight");
    p->fc2 = kern_weight_plain(&fc2, "mlp1.3.weight");
    p->in = p->norm.shape[0];
    p->hidden = fc1.shape[0];
    p->out = fc2.shape[0];
    p->eps = 1e-5f;
    /* activations in the weights' dtype (the reference runs mlp1 in the model dtype) */
    p->act = fc1.dtype == NVL_DTYPE_BF16 ? NVL_DTYPE_BF16 : NVL_DTYPE_F32;
    if (be) {
        nvl_tensor *place[] = {&p->norm, &p->fc1.w, &p->fc2.w};
        if ((st = kern_weights_place(be, place, 3, err)) != NVL_OK) return st;
    }
    return NVL_OK;
}

/* x_host (n, in) uploaded, or x_dev already there; y to the host (y_host) or into y_dev */
static nvl_status run(const tokred_projector *p, float *y_host, nvl_tensor *y_dev, const float *x_host,
                      const nvl_tensor *x_dev, int64_t n, nvl_err *err) {
    kern_backend *be = p->be;
    if (!be) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "projector: bound without a backend");
    /* one workspace: x (n, in) f32, h (n, in) act, u (n, hidden) act, y (n, out) act */
    const size_t bx = x_dev ? 0 : kern_act_bytes(be, NVL_DTYPE_F32, n * p->in), bh = kern_act_bytes(be, p->act, n * p->in);
    const size_t bu = kern_act_bytes(be, p->act, n * p->hidden), by = y_dev ? 0 : kern_act_bytes(be, p->act, n * p->out);
    void *buf = NULL;
    nvl_status st = kern_buffer_alloc(be, bx + bh + bu + by, &buf, err);
    if (st != NVL_OK) return nvl_err_prefix(err, "projector: %lld tokens", (long long)n), st;
    char *b = buf;
    nvl_tensor xt = x_dev ? *x_dev : kern_act(be, NVL_DTYPE_F32, 2, (int64_t[]){n, p->in}, b);
    nvl_tensor h = kern_act(be, p->act, 2, (int64_t[]){n, p->in}, b + bx);
    nvl_tensor u = kern_act(be, p->act, 2, (int64_t[]){n, p->hidden}, b + bx + bh);
    nvl_tensor yt = y_dev ? *y_dev : kern_act(be, p->act, 2, (int64_t[]){n, p->out}, b + bx + bh + bu);
    /* h = (w.float() * (x * rsqrt(mean(x^2) + eps))).to(dtype); y = fc2(relu(fc1(h)) ** 2) */
    if ((x_dev || (st = kern_from_host_f32(be, &xt, x_host, err)) == NVL_OK) &&
        (st = kern_rmsnorm(be, &h, &xt, &p->norm, p->eps, err)) == NVL_OK &&
        (st = kern_matmul(be, &u, &h, &p->fc1, err)) == NVL_OK &&
        (st = kern_bias_act(be, &u, &u, NULL, KERN_ACT_RELU2, err)) == NVL_OK &&
        (st = kern_matmul(be, &yt, &u, &p->fc2, err)) == NVL_OK && y_host)
        st = kern_to_host_f32(be, y_host, &yt, err);
    kern_buffer_free(be, buf);
    return st;
}

nvl_status tokred_projector_run(const tokred_projector *p, float *y, const float *x, int64_t n, nvl_err *err) {
    return run(p, y, NULL, x, NULL, n, err);
}

nvl_status tokred_projector_run_to(const tokred_projector *p, nvl_tensor *y, const nvl_tensor *x, nvl_err *err) {
    if (x->dtype != NVL_DTYPE_F32 || x->n_dims != 2 || x->shape[1] != p->in)
        return nvl_err_set(err, NVL_ERR_SHAPE, "projector: input must be (n, %lld) f32", (long long)p->in);
    if (y->n_dims != 2 || y->shape[0] != x->shape[0] || y->shape[1] != p->out || y->dtype != p->act)
        return nvl_err_set(err, NVL_ERR_SHAPE, "projector: output must be (%lld, %lld) %s", (long long)x->shape[0],
                           (long long)p->out, nvl_dtype_name(p->act));
    return run(p, NULL, y, NULL, x, x->shape[0], err);
}
