/* EVS token selection for video (model.md §6.4; transformers' compute_retention_mask, vLLM evs.py):
 * dissimilarity to the same position in the previous frame, first frame always kept, the
 * keep_n most changed tokens kept in their original order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "ops.h"
#include "tokenreduce.h"

typedef struct scored {
    float dis;
    int64_t idx;
} scored;

/* descending by dis, ties by ascending index (torch.argsort(descending=True, stable=True)) */
static int by_dis(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->dis != y->dis) return x->dis > y->dis ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

static nvl_status evs_args(int64_t F, int64_t T, int64_t D, double q, nvl_err *err) {
    if (F <= 0 || T <= 0 || D <= 0 || !(q >= 0 && q < 1))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "EVS: %lld frames x %lld tokens x %lld, rate %g (expected [0, 1))",
                           (long long)F, (long long)T, (long long)D, q);
    return NVL_OK;
}

/* The selection from the scores dis (F*T, host; freed here). */
static nvl_status evs_select(float *dis, int64_t F, int64_t T, double q, uint8_t *keep, int *kept_per_frame,
                             nvl_err *err) {
    const int64_t n = F * T;
    scored *s = nvl_malloc((size_t)n * sizeof *s);
    if (!s) {
        nvl_free(dis);
        return nvl_err_set(err, NVL_ERR_NOMEM, "EVS: out of memory");
    }
    for (int64_t i = 0; i < n; i++) s[i] = (scored){dis[i], i};
    nvl_free(dis);
    int64_t keep_n = (int64_t)((double)T * (double)F * (1.0 - q)); /* int() truncation */
    if (keep_n < T) keep_n = T;
    qsort(s, (size_t)n, sizeof *s, by_dis);
    memset(keep, 0, (size_t)n);
    for (int64_t i = 0; i < keep_n; i++) keep[s[i].idx] = 1;
    for (int64_t f = 0; f < F; f++) {
        int c = 0;
        for (int64_t t = 0; t < T; t++) c += keep[f * T + t];
        kept_per_frame[f] = c;
    }
    nvl_free(s);
    return NVL_OK;
}

nvl_status tokred_evs_mask_on(kern_backend *be, const nvl_tensor *E, int64_t F, int64_t T, double q, int round_bf16,
                              uint8_t *keep, int *kept_per_frame, nvl_err *err) {
    if (E->n_dims != 2) return nvl_err_set(err, NVL_ERR_SHAPE, "EVS: the rows must be 2-D (frames x tokens, width)");
    const int64_t D = E->shape[1];
    nvl_status st = evs_args(F, T, D, q, err);
    if (st != NVL_OK) return st;
    if (E->shape[0] != F * T || !E->data)
        return nvl_err_set(err, NVL_ERR_SHAPE, "EVS: %lld rows for %lld frames of %lld tokens", (long long)E->shape[0],
                           (long long)F, (long long)T);
    float *dis = nvl_malloc((size_t)(F * T) * sizeof *dis);
    if (!dis) return nvl_err_set(err, NVL_ERR_NOMEM, "EVS: out of memory");
    nvl_tensor E3 = *E; /* the same rows as (F, T, D) */
    E3.n_dims = 3;
    E3.shape[0] = F, E3.shape[1] = T, E3.shape[2] = D;
    E3.stride[2] = E->stride[1], E3.stride[1] = E->stride[0], E3.stride[0] = E->stride[0] * T;
    if (kern_backend_kind_of(be) == KERN_BACKEND_KIND_CPU) {
        nvl_tensor dt = nvl_tensor_make(NVL_DTYPE_F32, 2, (int64_t[]){F, T}, dis);
        st = kern_evs_scores(be, &dt, &E3, round_bf16, err);
    } else { /* the scores on the device, F*T floats to the host */
        void *buf = NULL;
        st = kern_buffer_alloc(be, (size_t)(F * T) * sizeof(float), &buf, err);
        if (st == NVL_OK) {
            nvl_tensor dd = kern_act(be, NVL_DTYPE_F32, 2, (int64_t[]){F, T}, buf);
            if ((st = kern_evs_scores(be, &dd, &E3, round_bf16, err)) == NVL_OK)
                st = kern_copy_to_host(be, dis, buf, (size_t)(F * T) * sizeof(float), err);
            kern_buffer_free(be, buf);
        }
    }
    if (st != NVL_OK) {
        nvl_free(dis);
        return st;
    }
    return evs_select(dis, F, T, q, keep, kept_per_frame, err);
}

nvl_status tokred_evs_mask(kern_backend *be, const float *E, int64_t F, int64_t T, int64_t D, double q, int round_bf16,
                           uint8_t *keep, int *kept_per_frame, nvl_err *err) {
    nvl_status st = evs_args(F, T, D, q, err);
    if (st != NVL_OK) return st;
    if (kern_backend_kind_of(be) == KERN_BACKEND_KIND_CPU) { /* host memory is the backend's */
        const nvl_tensor Et = kern_act(be, NVL_DTYPE_F32, 2, (int64_t[]){F * T, D}, (void *)E);
        return tokred_evs_mask_on(be, &Et, F, T, q, round_bf16, keep, kept_per_frame, err);
    }
    const size_t eb = (size_t)(F * T * D) * sizeof(float); /* host embeddings through the device */
    void *buf = NULL;
    if ((st = kern_buffer_alloc(be, eb, &buf, err)) != NVL_OK) return st;
    const nvl_tensor Et = kern_act(be, NVL_DTYPE_F32, 2, (int64_t[]){F * T, D}, buf);
    if ((st = kern_copy_to_backend(be, buf, E, eb, err)) == NVL_OK)
        st = tokred_evs_mask_on(be, &Et, F, T, q, round_bf16, keep, kept_per_frame, err);
    kern_buffer_free(be, buf);
    return st;
}
