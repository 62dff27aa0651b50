/* The op entry points of kernels/ops.h: descriptor helpers, the checks every backend shares
 * (shapes, dtypes, row layout), then the backend's own entry. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend_impl.h"
#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"

/* The CPU holds narrower float activations widened to f32 (kernels/ops.h). */
static int widens(const kern_backend *be, nvl_dtype dtype) {
    return be->iface->kind == KERN_BACKEND_KIND_CPU && (dtype == NVL_DTYPE_BF16 || dtype == NVL_DTYPE_F16);
}

nvl_tensor kern_act(const kern_backend *be, nvl_dtype dtype, int n_dims, const int64_t *shape, void *data) {
    nvl_tensor t = nvl_tensor_make(dtype, n_dims, shape, data);
    t.widened = widens(be, dtype);
    t.device = be->iface->kind == KERN_BACKEND_KIND_CPU ? NVL_DEVICE_HOST : NVL_DEVICE_CUDA;
    return t;
}

size_t kern_act_bytes(const kern_backend *be, nvl_dtype dtype, int64_t numel) {
    return (size_t)numel * (widens(be, dtype) ? sizeof(float) : nvl_dtype_size(dtype));
}

/* rows x cols of t as a 2-D view (a 1-D tensor is one row). */
static void rows_cols(const nvl_tensor *t, int64_t *rows, int64_t *cols, int64_t *ld) {
    *cols = t->n_dims ? t->shape[t->n_dims - 1] : 1;
    *rows = *cols ? nvl_tensor_numel(t) / *cols : 0;
    *ld = t->n_dims >= 2 ? t->stride[t->n_dims - 2] : *cols;
}

nvl_status kern_from_host_f32(kern_backend *be, nvl_tensor *dst, const float *src, nvl_err *err) {
    int64_t R, C, ld;
    rows_cols(dst, &R, &C, &ld);
    const int f32 = dst->dtype == NVL_DTYPE_F32 || dst->widened;
    const size_t es = nvl_tensor_elem_size(dst);
    if (!f32 && dst->dtype != NVL_DTYPE_BF16 && dst->dtype != NVL_DTYPE_F16)
        return nvl_err_set(err, NVL_ERR_DTYPE, "%s: dtype %s", __func__, nvl_dtype_name(dst->dtype));
    /* rows back to back (ld == C): converted and copied in one go (one copy on a device) */
    const int64_t per = ld == C ? R : 1;
    void *buf = f32 ? NULL : nvl_malloc((size_t)(per * C) * es + 1);
    if (!f32 && !buf) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", __func__);
    nvl_status st = NVL_OK;
    for (int64_t r = 0; r < R && st == NVL_OK; r += per) {
        char *d = (char *)dst->data + (size_t)(r * ld) * es;
        const float *sr = src + r * C;
        const int64_t n = per * C;
        if (f32) {
            st = kern_copy_to_backend(be, d, sr, (size_t)n * sizeof(float), err);
            continue;
        }
        uint16_t *h = buf;
        if (dst->dtype == NVL_DTYPE_BF16)
            for (int64_t c = 0; c < n; c++) h[c] = nvl_f32_to_bf16(sr[c]);
        else
            for (int64_t c = 0; c < n; c++) h[c] = nvl_f32_to_f16(sr[c]);
        st = kern_copy_to_backend(be, d, h, (size_t)n * es, err);
    }
    nvl_free(buf);
    if (st == NVL_OK && dst->widened) { /* widened: round the f32 values to the dtype in place (the copy op) */
        nvl_tensor v = *dst;
        if (v.n_dims != 2) {
            v.n_dims = 2;
            v.shape[0] = R, v.shape[1] = C, v.stride[0] = ld, v.stride[1] = 1;
        }
        st = kern_copy(be, &v, &v, err);
    }
    return st;
}

nvl_status kern_to_host_f32(kern_backend *be, float *dst, const nvl_tensor *src, nvl_err *err) {
    int64_t R, C, ld;
    rows_cols(src, &R, &C, &ld);
    const int f32 = src->dtype == NVL_DTYPE_F32 || src->widened;
    const size_t es = nvl_tensor_elem_size(src);
    /* rows back to back (ld == C): one copy for all of them (one synchronisation on a device) */
    const int64_t per = ld == C ? R : 1;
    void *buf = f32 ? NULL : nvl_malloc((size_t)(per * C) * es + 1);
    if (!f32 && !buf) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", __func__);
    nvl_status st = NVL_OK;
    for (int64_t r = 0; r < R && st == NVL_OK; r += per) {
        const char *s = (const char *)src->data + (size_t)(r * ld) * es;
        if (f32) {
            st = kern_copy_to_host(be, dst + r * C, s, (size_t)(per * C) * sizeof(float), err);
            continue;
        }
        st = kern_copy_to_host(be, buf, s, (size_t)(per * C) * es, err);
        if (st == NVL_OK) nvl_convert_to_f32(dst + r * C, buf, src->dtype, (size_t)(per * C));
    }
    nvl_free(buf);
    return st;
}

nvl_tensor kern_rows(const nvl_tensor *t, int64_t r0, int64_t n) {
    nvl_tensor v = *t;
    v.shape[0] = n;
    v.data = !t->data || r0 < 0 || n < 0 || r0 + n > t->shape[0]
                 ? NULL /* outside the tensor: a view no op accepts */
                 : (char *)t->data + (size_t)(r0 * t->stride[0]) * nvl_tensor_elem_size(t);
    return v;
}

nvl_tensor kern_cols(const nvl_tensor *t, int64_t c0, int64_t n) {
    nvl_tensor v = *t;
    v.shape[1] = n;
    v.data = !t->data || t->n_dims < 2 || c0 < 0 || n < 0 || c0 + n > t->shape[1]
                 ? NULL
                 : (char *)t->data + (size_t)(c0 * t->stride[1]) * nvl_tensor_elem_size(t);
    return v;
}

kern_weight kern_weight_plain(const nvl_tensor *w, const char *name) {
    kern_weight k;
    memset(&k, 0, sizeof k);
    k.w = *w;
    k.quant = KERN_QUANT_NONE;
    k.weight_scale = 1.0f;
    k.input_scale = 1.0f;
    k.n_out = w->n_dims == 2 ? w->shape[0] : 0;
    k.n_in = w->n_dims == 2 ? w->shape[1] : 0;
    k.name = name;
    return k;
}

nvl_status kern_weights_place(kern_backend *be, nvl_tensor *const *tensors, int64_t n, nvl_err *err) {
    if (!be->iface->ops || !be->iface->ops->place_weight) return NVL_OK; /* stays where it is (the mmap) */
    /* refuse before uploading anything when the set does not fit */
    size_t need = 0, free_b = 0, total_b = 0;
    for (int64_t i = 0; i < n; i++)
        if (tensors[i]->data && tensors[i]->device == NVL_DEVICE_HOST) need += (nvl_tensor_nbytes(tensors[i]) + 255) & ~(size_t)255;
    if (be->iface->mem_info && be->iface->mem_info(be, &free_b, &total_b) == NVL_OK && need > free_b) {
        char a[32], f[32], t[32];
        return nvl_err_set(err, NVL_ERR_NOMEM, "the weights need %s on %s but %s of %s are free: nothing was uploaded",
                           nvl_human_bytes(a, sizeof a, (double)need), be->description,
                           nvl_human_bytes(f, sizeof f, (double)free_b), nvl_human_bytes(t, sizeof t, (double)total_b));
    }
    /* progress on a terminal for uploads that take a while (quiet in pipes) */
    const int show = need > ((size_t)1 << 30) && isatty(STDERR_FILENO);
    size_t done = 0;
    const double t0 = nvl_now();
    double tl = 0;
    for (int64_t i = 0; i < n; i++) {
        const size_t b = tensors[i]->data && tensors[i]->device == NVL_DEVICE_HOST ? nvl_tensor_nbytes(tensors[i]) : 0;
        nvl_status st = be->iface->ops->place_weight(be, tensors[i], err);
        if (st != NVL_OK) {
            if (show) fputs("\r\033[K", stderr);
            return nvl_err_prefix(err, "uploading the weights (%lld of %lld placed)", (long long)i, (long long)n), st;
        }
        done += b;
        const double now = nvl_now(), el = now - t0, since = now - tl;
        if (show && (since > 0.2 || i + 1 == n)) {
            fprintf(stderr, "\r\033[Kuploading weights to %s: %.1f / %.1f GiB, %.1f GB/s", be->description,
                    (double)done / (1 << 30), (double)need / (1 << 30), el > 0 ? (double)done / el / 1e9 : 0.0);
            tl = now;
        }
    }
    if (show) fputs("\r\033[K", stderr);
    return kern_synchronize(be, err); /* the staged copies have landed */
}

// ---------------------------------------------------------------------------
// Checks

/* A 2-D activation with a contiguous last dimension. */
static nvl_status chk2(const char *op, const char *what, const nvl_tensor *t, int64_t rows, int64_t cols, nvl_err *err) {
    if (!t || !t->data) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: %s is missing", op, what);
    if (t->n_dims != 2 || t->stride[1] != 1 || t->stride[0] < t->shape[1])
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: %s must be 2-D rows with a contiguous last dimension", op, what);
    if ((rows >= 0 && t->shape[0] != rows) || (cols >= 0 && t->shape[1] != cols))
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s: %s has shape [%lld, %lld], expected [%lld, %lld]", op, what,
                           (long long)t->shape[0], (long long)t->shape[1], (long long)(rows >= 0 ? rows : t->shape[0]),
                           (long long)(cols >= 0 ? cols : t->shape[1]));
    if (!nvl_dtype_is_float(t->dtype))
        return nvl_err_set(err, NVL_ERR_DTYPE, "%s: %s has dtype %s, expected a float type", op, what,
                           nvl_dtype_name(t->dtype));
    return NVL_OK;
}

static nvl_status chk_vec(const char *op, const char *what, const nvl_tensor *t, int64_t n, nvl_err *err) {
    if (!t || !t->data) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: %s is missing", op, what);
    if (nvl_tensor_numel(t) != n || !nvl_tensor_is_contiguous(t))
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s: %s has %lld elements, expected %lld contiguous", op, what,
                           (long long)nvl_tensor_numel(t), (long long)n);
    if (!nvl_dtype_is_float(t->dtype))
        return nvl_err_set(err, NVL_ERR_DTYPE, "%s: %s has dtype %s, expected a float type", op, what,
                           nvl_dtype_name(t->dtype));
    return NVL_OK;
}

static nvl_status chk_seqs(const char *op, const kern_seq *seqs, int n_seq, int64_t rows, int64_t slots,
                           nvl_err *err) {
    if (n_seq < 0 || (n_seq > 0 && !seqs)) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: no sequences", op);
    for (int i = 0; i < n_seq; i++) {
        const kern_seq *s = &seqs[i];
        if (s->row0 < 0 || s->n_rows < 0 || s->row0 + s->n_rows > rows)
            return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: sequence %d rows [%lld, %lld) outside the step's %lld rows",
                               op, i, (long long)s->row0, (long long)(s->row0 + s->n_rows), (long long)rows);
        /* in row order, none over another (a device's per-row tables give each row one sequence) */
        if (i > 0 && s->row0 < seqs[i - 1].row0 + seqs[i - 1].n_rows)
            return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: sequence %d starts at row %lld, inside or before sequence %d "
                               "(rows [%lld, %lld))", op, i, (long long)s->row0, i - 1, (long long)seqs[i - 1].row0,
                               (long long)(seqs[i - 1].row0 + seqs[i - 1].n_rows));
        if (slots >= 0 && s->slot != KERN_SLOT_NONE && (s->slot < 0 || s->slot >= slots))
            return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: sequence %d has slot %d, the cache has %lld", op, i,
                               s->slot, (long long)slots);
        if (s->pos0 < 0) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: sequence %d has position %lld", op, i,
                                            (long long)s->pos0);
    }
    return NVL_OK;
}

#define DISPATCH_KEY(key, opname, ...)                                                                 \
    do {                                                                                              \
        if (!be->iface->ops || !be->iface->ops->opname)                                               \
            return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: backend '%s' has no " #opname " op",     \
                               __func__, be->iface->name);                                            \
        if (!be->prof) return be->iface->ops->opname(be, __VA_ARGS__);                                \
        void *tok_ = kern_prof_begin(be); /* (the per-op profile: kern_backend_profile) */            \
        const nvl_status pst_ = be->iface->ops->opname(be, __VA_ARGS__);                              \
        kern_prof_end(be, tok_, #opname, key);                                                        \
        return pst_;                                                                                  \
    } while (0)
#define DISPATCH(opname, ...) DISPATCH_KEY(NULL, opname, __VA_ARGS__)
#define CHECK(x)                                                                                      \
    do {                                                                                              \
        nvl_status st_ = (x);                                                                         \
        if (st_ != NVL_OK) return st_;                                                                \
    } while (0)

// ---------------------------------------------------------------------------
// Entry points

int64_t kern_matmul_invariant_rows(kern_backend *be, const kern_weight *w, nvl_dtype x_dtype) {
    if (!be || !be->iface->ops || !be->iface->ops->matmul_invariant_rows) return 0;
    return be->iface->ops->matmul_invariant_rows(be, w, x_dtype);
}

nvl_status kern_matmul(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const kern_weight *w, nvl_err *err) {
    if (w->w.n_dims != 2 || !nvl_tensor_is_contiguous(&w->w))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: weight %s must be a contiguous 2-D tensor", __func__,
                           w->name ? w->name : "");
    CHECK(chk2(__func__, "x", x, -1, w->n_in, err));
    CHECK(chk2(__func__, "y", y, x->shape[0], w->n_out, err));
    const char *wn = w->name ? w->name : "";
    switch (w->quant) {
    case KERN_QUANT_NONE:
        if (w->w.shape[0] != w->n_out || w->w.shape[1] != w->n_in)
            return nvl_err_set(err, NVL_ERR_SHAPE, "%s: weight %s is [%lld, %lld], its descriptor says [%lld, %lld]", __func__,
                               wn, (long long)w->w.shape[0], (long long)w->w.shape[1], (long long)w->n_out, (long long)w->n_in);
        break;
    case KERN_QUANT_FP8:
        if (w->w.dtype != NVL_DTYPE_F8_E4M3 || w->w.shape[0] != w->n_out || w->w.shape[1] != w->n_in)
            return nvl_err_set(err, NVL_ERR_SHAPE, "%s: FP8 weight %s must be F8_E4M3 [%lld, %lld]", __func__, wn,
                               (long long)w->n_out, (long long)w->n_in);
        break;
    case KERN_QUANT_NVFP4:
        if (w->w.dtype != NVL_DTYPE_U8 || w->n_in % 16 || w->w.shape[0] != w->n_out || w->w.shape[1] * 2 != w->n_in ||
            w->block_scale.dtype != NVL_DTYPE_F8_E4M3 || w->block_scale.n_dims != 2 ||
            w->block_scale.shape[0] != w->n_out || w->block_scale.shape[1] != w->n_in / 16)
            return nvl_err_set(err, NVL_ERR_SHAPE, "%s: NVFP4 weight %s must be U8 [%lld, %lld] with F8_E4M3 block scales "
                               "[%lld, %lld]", __func__, wn, (long long)w->n_out, (long long)(w->n_in / 2),
                               (long long)w->n_out, (long long)(w->n_in / 16));
        break;
    default: return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: weight %s has an unknown quantization", __func__, wn);
    }
    if (w->quant != KERN_QUANT_NONE && !(w->input_scale > 0.0f && w->weight_scale > 0.0f))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: weight %s has non-positive scales", __func__, wn);
    DISPATCH_KEY(w->name, matmul, y, x, w, err);
}

int kern_matmul_bias_fused(kern_backend *be, const nvl_tensor *y, const nvl_tensor *x, const kern_weight *w,
                           const nvl_tensor *bias) {
    if (!be || !be->iface->ops || !be->iface->ops->matmul_bias || !be->iface->ops->matmul_bias_fused) return 0;
    if (x->n_dims != 2 || y->n_dims != 2 || bias->n_dims != 1 || x->shape[1] != w->n_in || y->shape[0] != x->shape[0] ||
        y->shape[1] != w->n_out || bias->shape[0] != w->n_out || !nvl_tensor_is_contiguous(&w->w))
        return 0;
    return be->iface->ops->matmul_bias_fused(be, y, x, w, bias);
}

nvl_status kern_matmul_bias(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const kern_weight *w,
                            const nvl_tensor *bias, nvl_err *err) {
    CHECK(chk2(__func__, "x", x, -1, w->n_in, err));
    CHECK(chk2(__func__, "y", y, x->shape[0], w->n_out, err));
    CHECK(chk_vec(__func__, "bias", bias, w->n_out, err));
    if (kern_matmul_bias_fused(be, y, x, w, bias)) DISPATCH_KEY(w->name, matmul_bias, y, x, w, bias, err);
    if (y->dtype != NVL_DTYPE_F32 || y->widened)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: weight %s: a %s output without a fused bias on backend '%s' (the "
                           "product would round before the bias is added)", __func__, w->name ? w->name : "",
                           nvl_dtype_name(y->dtype), be->iface->name);
    CHECK(kern_matmul(be, y, x, w, err));
    return kern_bias_act(be, y, y, bias, KERN_ACT_NONE, err);
}

nvl_status kern_rmsnorm(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *w, float eps,
                        nvl_err *err) {
    CHECK(chk2(__func__, "x", x, -1, -1, err));
    CHECK(chk2(__func__, "y", y, x->shape[0], x->shape[1], err));
    CHECK(chk_vec(__func__, "weight", w, x->shape[1], err));
    DISPATCH(rmsnorm, y, x, w, eps, err);
}

nvl_status kern_rmsnorm_gated(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *z,
                              const nvl_tensor *w, int64_t n_group, float eps, const kern_seq *seqs, int n_seq,
                              nvl_err *err) {
    CHECK(chk2(__func__, "x", x, -1, -1, err));
    CHECK(chk2(__func__, "z", z, x->shape[0], x->shape[1], err));
    CHECK(chk2(__func__, "y", y, x->shape[0], x->shape[1], err));
    CHECK(chk_vec(__func__, "weight", w, x->shape[1], err));
    if (n_group <= 0 || x->shape[1] % n_group)
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s: %lld groups do not divide %lld channels", __func__,
                           (long long)n_group, (long long)x->shape[1]);
    CHECK(chk_seqs(__func__, seqs, n_seq, x->shape[0], -1, err));
    DISPATCH(rmsnorm_gated, y, x, z, w, n_group, eps, seqs, n_seq, err);
}

nvl_status kern_layernorm(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *w,
                          const nvl_tensor *b, float eps, nvl_err *err) {
    CHECK(chk2(__func__, "x", x, -1, -1, err));
    CHECK(chk2(__func__, "y", y, x->shape[0], x->shape[1], err));
    CHECK(chk_vec(__func__, "weight", w, x->shape[1], err));
    CHECK(chk_vec(__func__, "bias", b, x->shape[1], err));
    DISPATCH(layernorm, y, x, w, b, eps, err);
}

nvl_status kern_add(kern_backend *be, nvl_tensor *y, const nvl_tensor *a, const nvl_tensor *b, nvl_err *err) {
    CHECK(chk2(__func__, "a", a, -1, -1, err));
    CHECK(chk2(__func__, "b", b, -1, a->shape[1], err));
    CHECK(chk2(__func__, "y", y, a->shape[0], a->shape[1], err));
    if (b->shape[0] <= 0 || a->shape[0] % b->shape[0])
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s: b's %lld rows do not divide a's %lld", __func__,
                           (long long)b->shape[0], (long long)a->shape[0]);
    DISPATCH(add, y, a, b, err);
}

nvl_status kern_bias_act(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *bias,
                         kern_act_fn act, nvl_err *err) {
    CHECK(chk2(__func__, "x", x, -1, -1, err));
    CHECK(chk2(__func__, "y", y, x->shape[0], x->shape[1], err));
    if (bias) CHECK(chk_vec(__func__, "bias", bias, x->shape[1], err));
    if (act < KERN_ACT_NONE || act > KERN_ACT_SILU)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: unknown activation %d", __func__, (int)act);
    DISPATCH(bias_act, y, x, bias, act, err);
}

nvl_status kern_copy(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, nvl_err *err) {
    CHECK(chk2(__func__, "x", x, -1, -1, err));
    CHECK(chk2(__func__, "y", y, x->shape[0], x->shape[1], err));
    DISPATCH(copy, y, x, err);
}

nvl_status kern_dt_softplus(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *bias,
                            float dt_min, float dt_max, nvl_err *err) {
    CHECK(chk2(__func__, "x", x, -1, -1, err));
    CHECK(chk2(__func__, "y", y, x->shape[0], x->shape[1], err));
    CHECK(chk_vec(__func__, "dt_bias", bias, x->shape[1], err));
    DISPATCH(dt_softplus, y, x, bias, dt_min, dt_max, err);
}

nvl_status kern_argmax_rows(kern_backend *be, int32_t *ids, const nvl_tensor *x, nvl_err *err) {
    CHECK(chk2(__func__, "x", x, -1, -1, err));
    if (!ids) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: no ids", __func__);
    if (x->shape[1] < 1 || x->shape[1] > INT32_MAX)
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s: rows of %lld values", __func__, (long long)x->shape[1]);
    DISPATCH(argmax_rows, ids, x, err);
}

nvl_status kern_step_tables(kern_backend *be, const kern_seq *seqs, int n_seq, const int32_t *ids, const uint8_t *mask,
                            int64_t n_rows, nvl_err *err) {
    CHECK(chk_seqs(__func__, seqs, n_seq, n_rows, -1, err));
    if (n_rows < 0 || (n_rows > 0 && !ids))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: %lld rows without token ids", __func__, (long long)n_rows);
    return be->iface->ops && be->iface->ops->step_tables ? be->iface->ops->step_tables(be, seqs, n_seq, ids, mask, n_rows, err)
                                                          : NVL_OK;
}

nvl_status kern_get_rows(kern_backend *be, nvl_tensor *y, const nvl_tensor *table, const int32_t *ids,
                         const nvl_tensor *rows, const uint8_t *mask, nvl_err *err) {
    CHECK(chk2(__func__, "y", y, -1, -1, err));
    CHECK(chk2(__func__, "table", table, -1, y->shape[1], err));
    if (rows) CHECK(chk2(__func__, "rows", rows, y->shape[0], y->shape[1], err));
    if (!ids) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: no token ids", __func__);
    if (mask && !rows)
        for (int64_t t = 0; t < y->shape[0]; t++)
            if (mask[t]) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: row %lld is masked but no rows were given",
                                            __func__, (long long)t);
    DISPATCH(get_rows, y, table, ids, rows, mask, err);
}

/* A state tensor (S, ...) of f32. */
static nvl_status chk_state(const char *op, const char *what, const nvl_tensor *s, int n_dims, const int64_t *tail,
                            nvl_err *err) {
    if (!s || !s->data || s->n_dims != n_dims || !nvl_tensor_is_contiguous(s))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: %s must be a contiguous %d-D tensor", op, what, n_dims);
    for (int d = 1; d < n_dims; d++)
        if (s->shape[d] != tail[d - 1])
            return nvl_err_set(err, NVL_ERR_SHAPE, "%s: %s dimension %d is %lld, expected %lld", op, what, d,
                               (long long)s->shape[d], (long long)tail[d - 1]);
    return NVL_OK;
}

nvl_status kern_conv1d_causal(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *w,
                              const nvl_tensor *bias, nvl_tensor *state, const kern_seq *seqs, int n_seq,
                              nvl_err *err) {
    CHECK(chk2(__func__, "x", x, -1, -1, err));
    CHECK(chk2(__func__, "y", y, x->shape[0], x->shape[1], err));
    const int64_t Cc = x->shape[1];
    if (w->n_dims != 2 || w->shape[0] != Cc || w->dtype != NVL_DTYPE_F32 || !nvl_tensor_is_contiguous(w))
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s: weight must be f32 (%lld, Kc)", __func__, (long long)Cc);
    if (bias) CHECK(chk_vec(__func__, "bias", bias, Cc, err));
    CHECK(chk_state(__func__, "conv state", state, 3, (int64_t[]){Cc, w->shape[1]}, err));
    if (state->dtype != NVL_DTYPE_F32) return nvl_err_set(err, NVL_ERR_DTYPE, "%s: conv state must be F32", __func__);
    CHECK(chk_seqs(__func__, seqs, n_seq, x->shape[0], state->shape[0], err));
    DISPATCH(conv1d_causal, y, x, w, bias, state, seqs, n_seq, err);
}

nvl_status kern_ssm_scan(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *dt,
                         const nvl_tensor *A, const nvl_tensor *B, const nvl_tensor *C, const nvl_tensor *D,
                         nvl_tensor *state, int64_t n_group, int64_t chunk, kern_scan_mode mode,
                         const kern_seq *seqs, int n_seq, nvl_err *err) {
    if (!state || state->n_dims != 4)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: state must be (S, H, P, N)", __func__);
    const int64_t H = state->shape[1], P = state->shape[2], N = state->shape[3];
    CHECK(chk2(__func__, "x", x, -1, H * P, err));
    const int64_t T = x->shape[0];
    CHECK(chk2(__func__, "y", y, T, H * P, err));
    CHECK(chk2(__func__, "dt", dt, T, H, err));
    CHECK(chk2(__func__, "B", B, T, n_group * N, err));
    CHECK(chk2(__func__, "C", C, T, n_group * N, err));
    CHECK(chk_vec(__func__, "A", A, H, err));
    CHECK(chk_vec(__func__, "D", D, H, err));
    CHECK(chk_state(__func__, "ssm state", state, 4, (int64_t[]){H, P, N}, err));
    if (y->dtype != NVL_DTYPE_F32 || state->dtype != NVL_DTYPE_F32 || A->dtype != NVL_DTYPE_F32 ||
        D->dtype != NVL_DTYPE_F32)
        return nvl_err_set(err, NVL_ERR_DTYPE, "%s: y, state, A and D must be F32", __func__);
    if (n_group <= 0 || H % n_group || chunk <= 0)
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s: %lld groups for %lld heads, chunk %lld", __func__,
                           (long long)n_group, (long long)H, (long long)chunk);
    CHECK(chk_seqs(__func__, seqs, n_seq, T, state->shape[0], err));
    DISPATCH(ssm_scan, y, x, dt, A, B, C, D, state, n_group, chunk, mode, seqs, n_seq, err);
}

static nvl_status chk_kv(const char *op, const nvl_tensor *kc, const nvl_tensor *vc, int64_t KD, nvl_err *err) {
    CHECK(chk_state(op, "k cache", kc, 3, (int64_t[]){kc ? kc->shape[1] : 0, KD}, err));
    CHECK(chk_state(op, "v cache", vc, 3, (int64_t[]){kc->shape[1], KD}, err));
    if (kc->shape[0] != vc->shape[0] || kc->dtype != vc->dtype || !nvl_dtype_is_float(kc->dtype))
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s: k and v caches differ in slots or dtype", op);
    return NVL_OK;
}

nvl_status kern_kv_write(kern_backend *be, nvl_tensor *k_cache, nvl_tensor *v_cache, const nvl_tensor *k,
                         const nvl_tensor *v, const kern_seq *seqs, int n_seq, nvl_err *err) {
    CHECK(chk2(__func__, "k", k, -1, -1, err));
    CHECK(chk2(__func__, "v", v, k->shape[0], k->shape[1], err));
    CHECK(chk_kv(__func__, k_cache, v_cache, k->shape[1], err));
    CHECK(chk_seqs(__func__, seqs, n_seq, k->shape[0], k_cache->shape[0], err));
    for (int i = 0; i < n_seq; i++)
        if (seqs[i].slot != KERN_SLOT_NONE && seqs[i].pos0 + seqs[i].n_rows > k_cache->shape[1])
            return nvl_err_set(err, NVL_ERR_LIMIT, "%s: slot %d would hold %lld positions, its KV rows are %lld",
                               __func__, seqs[i].slot, (long long)(seqs[i].pos0 + seqs[i].n_rows),
                               (long long)k_cache->shape[1]);
    DISPATCH(kv_write, k_cache, v_cache, k, v, seqs, n_seq, err);
}

nvl_status kern_attention_causal(kern_backend *be, nvl_tensor *o, const nvl_tensor *q, const nvl_tensor *k_cache,
                                 const nvl_tensor *v_cache, int64_t n_head, int64_t n_head_kv,
                                 const kern_seq *seqs, int n_seq, nvl_err *err) {
    if (n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv)
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s: %lld query heads over %lld KV heads", __func__,
                           (long long)n_head, (long long)n_head_kv);
    CHECK(chk2(__func__, "q", q, -1, -1, err));
    CHECK(chk2(__func__, "o", o, q->shape[0], q->shape[1], err));
    if (q->shape[1] % n_head) return nvl_err_set(err, NVL_ERR_SHAPE, "%s: %lld heads do not divide q's width %lld",
                                                 __func__, (long long)n_head, (long long)q->shape[1]);
    CHECK(chk_kv(__func__, k_cache, v_cache, n_head_kv * (q->shape[1] / n_head), err));
    CHECK(chk_seqs(__func__, seqs, n_seq, q->shape[0], k_cache->shape[0], err));
    for (int i = 0; i < n_seq; i++)
        if (seqs[i].slot != KERN_SLOT_NONE && seqs[i].pos0 + seqs[i].n_rows > k_cache->shape[1])
            return nvl_err_set(err, NVL_ERR_LIMIT, "%s: slot %d reads past its %lld KV rows", __func__, seqs[i].slot,
                               (long long)k_cache->shape[1]);
    DISPATCH(attention_causal, o, q, k_cache, v_cache, n_head, n_head_kv, seqs, n_seq, err);
}

nvl_status kern_attention_full(kern_backend *be, nvl_tensor *o, const nvl_tensor *qkv, int64_t n_img,
                               int64_t n_head, nvl_err *err) {
    CHECK(chk2(__func__, "qkv", qkv, -1, -1, err));
    const int64_t W = qkv->shape[1] / 3;
    if (n_img <= 0 || qkv->shape[0] % n_img || qkv->shape[1] != 3 * W || n_head <= 0 || W % n_head)
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s: qkv [%lld, %lld] is not %lld images of 3 x %lld heads", __func__,
                           (long long)qkv->shape[0], (long long)qkv->shape[1], (long long)n_img, (long long)n_head);
    CHECK(chk2(__func__, "o", o, qkv->shape[0], W, err));
    DISPATCH(attention_full, o, qkv, n_img, n_head, err);
}

nvl_status kern_patchify(kern_backend *be, nvl_tensor *y, const nvl_tensor *tiles, int64_t patch, nvl_err *err) {
    if (!tiles || tiles->n_dims != 4 || tiles->shape[1] != 3 || tiles->shape[2] != tiles->shape[3] || patch <= 0 ||
        tiles->shape[2] % patch || !nvl_tensor_is_contiguous(tiles))
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s: tiles must be contiguous (n, 3, S, S) with S a multiple of %lld",
                           __func__, (long long)patch);
    const int64_t G = tiles->shape[2] / patch;
    CHECK(chk2(__func__, "y", y, tiles->shape[0] * G * G, 3 * patch * patch, err));
    DISPATCH(patchify, y, tiles, patch, err);
}

nvl_status kern_normalize_rgb8(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const float mean[3],
                               const float std[3], nvl_err *err) {
    if (!x || !x->data || x->dtype != NVL_DTYPE_U8 || x->n_dims != 4 || x->shape[3] != 3 || x->shape[1] != x->shape[2] ||
        !nvl_tensor_is_contiguous(x))
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s: x must be contiguous U8 (n, S, S, 3)", __func__);
    if (!y || !y->data || y->dtype != NVL_DTYPE_F32 || y->widened || y->n_dims != 4 || y->shape[0] != x->shape[0] ||
        y->shape[1] != 3 || y->shape[2] != x->shape[1] || y->shape[3] != x->shape[2] || !nvl_tensor_is_contiguous(y))
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s: y must be contiguous F32 (%lld, 3, %lld, %lld)", __func__,
                           (long long)x->shape[0], (long long)x->shape[1], (long long)x->shape[2]);
    for (int c = 0; c < 3; c++)
        if (!(std[c] != 0.0f) || !isfinite(std[c]) || !isfinite(mean[c]))
            return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: channel %d has mean %g, std %g", __func__, c, (double)mean[c],
                               (double)std[c]);
    DISPATCH(normalize_rgb8, y, x, mean, std, err);
}

nvl_status kern_pixel_shuffle(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, nvl_err *err) {
    if (!x || x->n_dims != 4 || x->shape[1] != x->shape[2] || x->shape[1] % 2 || !nvl_tensor_is_contiguous(x))
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s: x must be contiguous (n, g, g, c) with g even", __func__);
    const int64_t n = x->shape[0], g = x->shape[1], c = x->shape[3];
    if (!y || y->n_dims != 4 || y->shape[0] != n || y->shape[1] != g / 2 || y->shape[2] != g / 2 ||
        y->shape[3] != 4 * c || !nvl_tensor_is_contiguous(y))
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s: y must be contiguous (%lld, %lld, %lld, %lld)", __func__,
                           (long long)n, (long long)(g / 2), (long long)(g / 2), (long long)(4 * c));
    if (y->data == x->data) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: y must not alias x", __func__);
    DISPATCH(pixel_shuffle, y, x, err);
}

nvl_status kern_evs_scores(kern_backend *be, nvl_tensor *dis, const nvl_tensor *E, int round_bf16, nvl_err *err) {
    if (!E || E->n_dims != 3 || !nvl_tensor_is_contiguous(E))
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s: E must be contiguous (F, T, D)", __func__);
    if (!dis || nvl_tensor_numel(dis) != E->shape[0] * E->shape[1] || dis->dtype != NVL_DTYPE_F32)
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s: dis must be F32 with F*T elements", __func__);
    DISPATCH(evs_scores, dis, E, round_bf16, err);
}
