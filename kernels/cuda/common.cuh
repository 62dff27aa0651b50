// Shared CUDA helpers: error-checking macros that log the statement, function, file and line,
// launch constants, reductions.
#ifndef KERNELS_CUDA_COMMON_CUH
#define KERNELS_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <cublas_v2.h>

#include "../base/log.h"
#include "../base/status.h"

#define WARP_SIZE 32

/* The CUDA emulator's check that a pointer handed to a kernel is device memory (tests/cuda_emu
 * defines it; on a device nothing). */
#ifndef EMU_CHECK_DEVICE_PTR
#define EMU_CHECK_DEVICE_PTR(op, what, p) ((void)0)
#endif
#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))

// Returns NVL_ERR_DEVICE from the enclosing function (filling `err` when it is in scope as a
// pointer named err, else logging) on any CUDA runtime error.
#define CUDA_CHECK_LOG(call)                                                                   \
    ([&]() -> cudaError_t {                                                                    \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess)                                                                 \
            NVL_LOG_ERROR("CUDA error %s in %s at %s:%d: %s\n", cudaGetErrorString(e_),        \
                          __func__, __FILE__, __LINE__, #call);                                \
        return e_;                                                                             \
    }())

/* On failure: the error returned (NVL_ERR_NOMEM for an allocation the device refused, else
 * NVL_ERR_DEVICE) and the runtime's last error cleared, so that the next launch's check
 * (kern_cuda_after_launch) does not report this one again (a sticky error, a fault, stays). */
#define CUDA_CHECK(call)                                                                       \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            (void)cudaGetLastError();                                                          \
            return nvl_err_set(err, e_ == cudaErrorMemoryAllocation ? NVL_ERR_NOMEM : NVL_ERR_DEVICE, \
                               "%s: %s (%s at %s:%d)", __func__, cudaGetErrorString(e_), #call, \
                               __FILE__, __LINE__);                                            \
        }                                                                                      \
    } while (0)

#define CUBLAS_CHECK(call)                                                                     \
    do {                                                                                       \
        cublasStatus_t s_ = (call);                                                            \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                       \
            return nvl_err_set(err, NVL_ERR_DEVICE, "%s: cuBLAS status %d (%s at %s:%d)",      \
                               __func__, (int)s_, #call, __FILE__, __LINE__);                  \
    } while (0)

__device__ __forceinline__ float warp_reduce_sum(float v) {
    for (int o = WARP_SIZE / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

#endif // KERNELS_CUDA_COMMON_CUH
