// The CUDA backend: device discovery, stream, cuBLAS handle, device buffers, and the ops that
// have CUDA kernels so far (rmsnorm with bf16 weights). Ops without a CUDA kernel report
// "unsupported" through kern_backend_supports(); they are never run silently on the host.
//
// Device discovery treats any CUDA error (no driver, no device, driver too old) as "no device",
// so a machine without a GPU gets a clean message, never a crash.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backend_impl.h"
#include "../base/alloc.h"
#include <cuda_bf16.h>

#include "common.cuh"
#include "cuda_ops.h"

// Built as the module libnvl_cuda.so (kernels/CMakeLists.txt), loaded by kernels/backend.c with
// dlopen: only these two entry points are visible.
#define NVL_CUDA_EXPORT extern "C" __attribute__((visibility("default")))

#define RMSNORM_BLOCK 256 /* threads per row: 8 warps cover 5120 columns in 20 strided steps */

struct cuda_ctx {
    int device;
    cudaStream_t stream;
    cublasHandle_t cublas;
    int sync_each; /* NVL_CUDA_SYNC=1: synchronize after every launch so faults surface there */
};

NVL_CUDA_EXPORT int kern_cuda_probe_devices(const char **why) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why) *why = cudaGetErrorString(e);
        cudaGetLastError(); // clear the sticky error state
        return 0;
    }
    if (n == 0 && why) *why = "the driver reports 0 devices";
    return n;
}

// ---------------------------------------------------------------------------
// RMSNorm: one block per row, f32 statistics, bf16 weight.

__global__ void rmsnorm_f32_bf16w_kernel(float *y, const float *x, const __nv_bfloat16 *w,
                                         int64_t cols, float eps) {
    const int64_t r = blockIdx.x;
    const float *xr = x + r * cols;
    float *yr = y + r * cols;
    float ss = 0.f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) ss += xr[c] * xr[c];
    ss = warp_reduce_sum(ss);
    __shared__ float partial[RMSNORM_BLOCK / WARP_SIZE];
    if ((threadIdx.x % WARP_SIZE) == 0) partial[threadIdx.x / WARP_SIZE] = ss;
    __syncthreads();
    if (threadIdx.x < WARP_SIZE) {
        float v = threadIdx.x < RMSNORM_BLOCK / WARP_SIZE ? partial[threadIdx.x] : 0.f;
        v = warp_reduce_sum(v);
        if (threadIdx.x == 0) partial[0] = v;
    }
    __syncthreads();
    const float inv = rsqrtf(partial[0] / (float)cols + eps);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
        yr[c] = __bfloat162float(w[c]) * (xr[c] * inv);
}

extern "C" nvl_status kern_cuda_rmsnorm_f32_bf16w(float *y, const float *x, const uint16_t *w,
                                                  int64_t rows, int64_t cols, float eps,
                                                  cudaStream_t stream) {
    nvl_err *err = NULL;
    if (rows <= 0) return NVL_OK;
    rmsnorm_f32_bf16w_kernel<<<(unsigned)rows, RMSNORM_BLOCK, 0, stream>>>(
        y, x, reinterpret_cast<const __nv_bfloat16 *>(w), cols, eps);
    CUDA_CHECK(cudaGetLastError());
    return NVL_OK;
}

// ---------------------------------------------------------------------------
// vtable

static cuda_ctx *ctx_of(const kern_backend *be) { return (cuda_ctx *)be->context; }

static void cuda_free_be(kern_backend *be) {
    cuda_ctx *c = ctx_of(be);
    if (c) {
        if (c->cublas) cublasDestroy(c->cublas);
        if (c->stream) cudaStreamDestroy(c->stream);
        nvl_free(c);
    }
    nvl_free(be);
}

static int cuda_supports(const kern_backend *, enum kern_op op, nvl_dtype dt) {
    return op == KERN_OP_RMSNORM && dt == NVL_DTYPE_BF16;
}

static nvl_status cuda_alloc(kern_backend *, size_t n, void **out, nvl_err *err) {
    *out = NULL;
    CUDA_CHECK(cudaMalloc(out, n ? n : 1));
    return NVL_OK;
}
static void cuda_buf_free(kern_backend *, void *p) { CUDA_CHECK_LOG(cudaFree(p)); }

static nvl_status cuda_h2d(kern_backend *be, void *dst, const void *src, size_t n, nvl_err *err) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, ctx_of(be)->stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx_of(be)->stream));
    return NVL_OK;
}
static nvl_status cuda_d2h(kern_backend *be, void *dst, const void *src, size_t n, nvl_err *err) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, ctx_of(be)->stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx_of(be)->stream));
    return NVL_OK;
}
static nvl_status cuda_sync(kern_backend *be, nvl_err *err) {
    CUDA_CHECK(cudaStreamSynchronize(ctx_of(be)->stream));
    return NVL_OK;
}

/* RMSNorm over descriptors: f32 rows held on the device (contiguous), bf16 weight; the other
 * dtype combinations and every other op are not written yet (NVL_ERR_UNSUPPORTED). */
static nvl_status cuda_rmsnorm(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *w, float eps,
                               nvl_err *err) {
    if (x->dtype != NVL_DTYPE_F32 || y->dtype != NVL_DTYPE_F32 || w->dtype != NVL_DTYPE_BF16 ||
        x->stride[0] != x->shape[1] || y->stride[0] != y->shape[1])
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: only contiguous f32 rows with a bf16 weight so far", __func__);
    nvl_status st = kern_cuda_rmsnorm_f32_bf16w((float *)y->data, (const float *)x->data, (const uint16_t *)w->data,
                                                x->shape[0], x->shape[1], eps, ctx_of(be)->stream);
    if (st != NVL_OK) return nvl_err_set(err, st, "%s: launch failed", __func__);
    if (ctx_of(be)->sync_each) return cuda_sync(be, err);
    return NVL_OK;
}

static struct kern_ops_i make_ops(void) {
    struct kern_ops_i o;
    memset(&o, 0, sizeof o);
    o.rmsnorm = cuda_rmsnorm;
    return o;
}
static const struct kern_ops_i g_cuda_ops = make_ops();

static struct kern_backend_i make_iface(void) {
    struct kern_backend_i i;
    memset(&i, 0, sizeof i);
    i.name = "cuda";
    i.kind = KERN_BACKEND_KIND_CUDA;
    i.free = cuda_free_be;
    i.supports = cuda_supports;
    i.buffer_alloc = cuda_alloc;
    i.buffer_free = cuda_buf_free;
    i.copy_to_backend = cuda_h2d;
    i.copy_to_host = cuda_d2h;
    i.synchronize = cuda_sync;
    i.ops = &g_cuda_ops;
    return i;
}
static const struct kern_backend_i g_cuda_iface = make_iface();

NVL_CUDA_EXPORT nvl_status kern_cuda_backend_init(kern_backend **out, nvl_err *err) {
    *out = NULL;
    const char *why = NULL;
    if (kern_cuda_probe_devices(&why) <= 0)
        return nvl_err_set(err, NVL_ERR_NO_DEVICE, "no CUDA device (%s)", why ? why : "none found");
    kern_backend *be = (kern_backend *)nvl_calloc(1, sizeof *be);
    cuda_ctx *c = (cuda_ctx *)nvl_calloc(1, sizeof *c);
    if (!be || !c) {
        nvl_free(be);
        nvl_free(c);
        return nvl_err_set(err, NVL_ERR_NOMEM, "cuda backend: out of memory");
    }
    be->iface = &g_cuda_iface;
    be->context = c;
    const char *dev_env = getenv("NVL_CUDA_DEVICE");
    c->device = dev_env ? atoi(dev_env) : 0;
    const char *sync_env = getenv("NVL_CUDA_SYNC");
    c->sync_each = sync_env && atoi(sync_env) != 0;
    nvl_status st = NVL_OK;
    cudaDeviceProp prop;
    cudaError_t e = cudaSetDevice(c->device);
    if (e == cudaSuccess) e = cudaGetDeviceProperties(&prop, c->device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        st = nvl_err_set(err, NVL_ERR_DEVICE, "cuda backend: device %d: %s", c->device,
                         cudaGetErrorString(e));
        goto fail;
    }
    if (cublasCreate(&c->cublas) != CUBLAS_STATUS_SUCCESS ||
        cublasSetStream(c->cublas, c->stream) != CUBLAS_STATUS_SUCCESS) {
        st = nvl_err_set(err, NVL_ERR_DEVICE, "cuda backend: cuBLAS initialisation failed");
        goto fail;
    }
    snprintf(be->description, sizeof be->description, "CUDA: %s, sm_%d%d, %.0f GiB", prop.name,
             prop.major, prop.minor, (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    *out = be;
    return NVL_OK;
fail:
    cuda_free_be(be);
    return st;
}
