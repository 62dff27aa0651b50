/* Matrix multiply on the CPU: y[M,N] = x[M,K] @ w[N,K]^T with f32 activations and F32/BF16/F16
 * weights used as stored (never a full f32 copy of a weight matrix).
 *
 * Fast path: threads split N into blocks of MM_BLOCK_N weight rows; each block is widened to
 * f32 once into a per-thread buffer and then dotted with every row of x, so the weights are
 * read from memory exactly once per call (decode, M = 1, is bandwidth-bound on the weights).
 */
#include <math.h>
#include <string.h>

#include "../base/alloc.h"
#include "cpu_ops.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define MM_BLOCK_N 16 /* weight rows widened per step: 16 x K floats stay in L2 for K <= 16K */

void kern_cpu_matmul_ref(float *y, const float *x, const nvl_tensor *w, int64_t M) {
    const int64_t N = w->shape[0], K = w->shape[1];
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double acc = 0.0;
            for (int64_t k = 0; k < K; k++)
                acc += (double)x[m * K + k] * (double)nvl_tensor_get_f32(w, n * K + k);
            y[m * N + n] = (float)acc;
        }
}

static float dot_f32(const float *a, const float *b, int64_t K) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        s0 += a[k] * b[k];
        s1 += a[k + 1] * b[k + 1];
        s2 += a[k + 2] * b[k + 2];
        s3 += a[k + 3] * b[k + 3];
        s4 += a[k + 4] * b[k + 4];
        s5 += a[k + 5] * b[k + 5];
        s6 += a[k + 6] * b[k + 6];
        s7 += a[k + 7] * b[k + 7];
    }
    float s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
    for (; k < K; k++) s += a[k] * b[k];
    return s;
}

nvl_status kern_cpu_matmul(float *y, const float *x, const nvl_tensor *w, int64_t M, nvl_err *err) {
    if (w->n_dims != 2)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: weight must be 2-D", __func__);
    if (w->dtype != NVL_DTYPE_F32 && w->dtype != NVL_DTYPE_BF16 && w->dtype != NVL_DTYPE_F16)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: weight dtype %s is not F32, BF16 or F16",
                           __func__, nvl_dtype_name(w->dtype));
    const int64_t N = w->shape[0], K = w->shape[1];
    const size_t esz = nvl_dtype_size(w->dtype);
    const int64_t n_blocks = (N + MM_BLOCK_N - 1) / MM_BLOCK_N;
    int failed = 0;
#pragma omp parallel
    {
        float *wbuf = (w->dtype == NVL_DTYPE_F32) ? NULL : nvl_malloc((size_t)MM_BLOCK_N * (size_t)K * sizeof(float));
        if (w->dtype != NVL_DTYPE_F32 && !wbuf) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t b = 0; b < n_blocks; b++) {
            if (failed) continue;
            const int64_t n0 = b * MM_BLOCK_N;
            const int64_t nb = (N - n0) < MM_BLOCK_N ? (N - n0) : MM_BLOCK_N;
            const float *wf;
            if (w->dtype == NVL_DTYPE_F32) {
                wf = (const float *)w->data + n0 * K;
            } else {
                nvl_convert_to_f32(wbuf, (const unsigned char *)w->data + (size_t)(n0 * K) * esz,
                                   w->dtype, (size_t)(nb * K));
                wf = wbuf;
            }
            for (int64_t m = 0; m < M; m++) {
                const float *xr = x + m * K;
                float *yr = y + m * N + n0;
                for (int64_t j = 0; j < nb; j++) yr[j] = dot_f32(xr, wf + j * K, K);
            }
        }
        nvl_free(wbuf);
    }
    if (failed) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory for weight tiles", __func__);
    return NVL_OK;
}
