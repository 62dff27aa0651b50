/* What the CUDA backend (backend_cuda.cu) gives its op table (ops_cuda.cu): the stream, the
 * cuBLAS handle, op scratch, the launch check and weight placement. C-callable (only
 * <cuda_runtime_api.h> and cuBLAS's handle type are needed).
 *
 *   k<<<grid, block, 0, kern_cuda_stream(be)>>>(...);  return kern_cuda_after_launch(be, "op", err);
 */
#ifndef KERNELS_CUDA_CUDA_OPS_H
#define KERNELS_CUDA_CUDA_OPS_H

#include <cuda_runtime_api.h>
#include <stddef.h>

#include "../backend.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cublasContext;
cudaStream_t kern_cuda_stream(kern_backend *be);
struct cublasContext *kern_cuda_cublas(kern_backend *be);
/* Device scratch of at least `bytes`, valid until the next call (it waits for queued work
 * before growing). NULL with err set when the device is out of memory. */
void *kern_cuda_scratch(kern_backend *be, size_t bytes, nvl_err *err);
/* After a launch: the launch error, and with NVL_CUDA_SYNC=1 the kernel's own. */
nvl_status kern_cuda_after_launch(kern_backend *be, const char *op, nvl_err *err);
/* Uploads a host weight tensor once; t then describes the device copy (freed with be). */
nvl_status kern_cuda_place_weight(kern_backend *be, nvl_tensor *t, nvl_err *err);

#ifdef __cplusplus
}
#endif

#endif // KERNELS_CUDA_CUDA_OPS_H
