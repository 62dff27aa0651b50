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

nvl_status tokred_evs_mask(kern_backend *be, const float *E, int64_t F, int64_t T, int64_t D, double q, int round_bf16,
                           uint8_t *keep, int *kept_per_frame, nvl_err *err) {
    if (F <= 0 || T <= 0 || D <= 0 || !(q >= 0 && q < 1))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "EVS: %lld frames x %lld tokens x %lld, rate %g (expected [0, 1))",
                           (long long)F, (long long)T, (long long)D, q);
    const int64_t n = F * T;
    scored *s = nvl_malloc((size_t)n * sizeof *s);
    if (!s) return nvl_err_set(err, NVL_ERR_NOMEM, "EVS: out of memory");
    float *dis = nvl_malloc((size_t)n * sizeof *dis);
    if (!dis) {
        nvl_free(s);
        return nvl_err_set(err, NVL_ERR_NOMEM, "EVS: out of memory");
    }
    nvl_tensor Et = kern_act(be, NVL_DTYPE_F32, 3, (int64_t[]){F, T, D}, (void *)E);
    nvl_tensor dt = nvl_tensor_make(NVL_DTYPE_F32, 2, (int64_t[]){F, T}, dis);
    nvl_status st;
    if (kern_backend_kind_of(be) == KERN_BACKEND_KIND_CPU) {
        st = kern_evs_scores(be, &dt, &Et, round_bf16, err);
    } else { /* host embeddings through the device */
        const size_t eb = (size_t)(F * T * D) * sizeof(float), db = (size_t)(F * T) * sizeof(float);
        void *buf = NULL;
        st = kern_buffer_alloc(be, eb + db, &buf, err);
        if (st == NVL_OK) {
            nvl_tensor de = Et, dd = dt;
            de.data = buf;
            dd.data = (char *)buf + eb;
            de.device = dd.device = NVL_DEVICE_CUDA;
            if ((st = kern_copy_to_backend(be, de.data, E, eb, err)) == NVL_OK &&
                (st = kern_evs_scores(be, &dd, &de, round_bf16, err)) == NVL_OK)
                st = kern_copy_to_host(be, dis, dd.data, db, err);
            kern_buffer_free(be, buf);
        }
    }
    for (int64_t i = 0; i < n; i++) s[i] = (scored){dis[i], i};
    nvl_free(dis);
    if (st != NVL_OK) {
        nvl_free(s);
        return st;
    }
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
