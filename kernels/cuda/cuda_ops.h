/* C-callable launchers of the CUDA backend (valid C: only <cuda_runtime_api.h> is included for
 * cudaStream_t), so the backend and the tests call the same entry points.
 *
 *   kern_cuda_rmsnorm(y, x, w, rows, cols, eps, stream);
 */
#ifndef KERNELS_CUDA_CUDA_OPS_H
#define KERNELS_CUDA_CUDA_OPS_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#include "../base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y[r,:] = w * x[r,:] * rsqrt(mean(x[r,:]^2) + eps); x, y f32 device pointers, w bf16 device. */
nvl_status kern_cuda_rmsnorm_f32_bf16w(float *y, const float *x, const uint16_t *w, int64_t rows,
                                       int64_t cols, float eps, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif // KERNELS_CUDA_CUDA_OPS_H
