/* CPU twins of every backend op, callable directly (tests, the CPU backend, fallbacks).
 * All take host pointers. Shapes outermost-first; see kernels/backend.h for each op's contract.
 *
 *   kern_cpu_matmul(y, x, &w, M, &err);          // fast path (OpenMP, vectorised)
 *   kern_cpu_matmul_ref(y, x, &w, M);            // naive oracle, double accumulation
 */
#ifndef KERNELS_CPU_CPU_OPS_H
#define KERNELS_CPU_CPU_OPS_H

#include <stdint.h>

#include "../base/status.h"
#include "../base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of OpenMP threads the CPU ops use (NVL_THREADS env or all cores). */
int kern_cpu_n_threads(void);
/* "avx512_bf16 avx512f avx2 fma" style list of the features the dispatch found. */
const char *kern_cpu_features(void);
int kern_cpu_has_avx512_bf16(void);
int kern_cpu_has_avx2(void);

/* y[M,N] = x[M,K] @ w[N,K]^T, f32 accumulate. w dtype F32, BF16 or F16. */
nvl_status kern_cpu_matmul(float *y, const float *x, const nvl_tensor *w, int64_t M, nvl_err *err);
/* Oracle: double accumulation, single thread. */
void kern_cpu_matmul_ref(float *y, const float *x, const nvl_tensor *w, int64_t M);

/* RMSNorm rows x cols, statistics in f32: y = w * (x * rsqrt(mean(x^2) + eps)). */
nvl_status kern_cpu_rmsnorm(float *y, const float *x, const nvl_tensor *w, int64_t rows,
                            int64_t cols, float eps, nvl_err *err);
void kern_cpu_rmsnorm_ref(float *y, const float *x, const nvl_tensor *w, int64_t rows,
                          int64_t cols, float eps);

#ifdef __cplusplus
}
#endif

#endif // KERNELS_CPU_CPU_OPS_H
