// The CUDA backend: device discovery, stream, cuBLAS handle, device buffers, op scratch and
// weight placement. The op table is kernels/cuda/ops_cuda.cu. None of this has run on a GPU yet.
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
// dlopen: only its two entry points are visible.
#define NVL_CUDA_EXPORT extern "C" __attribute__((visibility("default")))

extern "C" const struct kern_ops_i kern_cuda_ops;

struct placed { /* a weight uploaded by place_weight, freed with the backend */
    void *p;
    struct placed *next;
};

struct cuda_ctx {
    int device;
    cudaStream_t stream;
    cublasHandle_t cublas;
    int sync_each; /* NVL_CUDA_SYNC=1: synchronize after every launch so faults surface there */
    void *scratch; /* op scratch (sequence tables, ids), grown on demand */
    size_t scratch_cap;
    placed *weights;
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
// vtable

static cuda_ctx *ctx_of(const kern_backend *be) { return (cuda_ctx *)be->context; }

static void cuda_free_be(kern_backend *be) {
    cuda_ctx *c = ctx_of(be);
    if (c) {
        if (c->cublas) cublasDestroy(c->cublas);
        if (c->stream) cudaStreamDestroy(c->stream);
        if (c->scratch) cudaFree(c->scratch);
        for (placed *w = c->weights; w;) {
            placed *nx = w->next;
            cudaFree(w->p);
            nvl_free(w);
            w = nx;
        }
        nvl_free(c);
    }
    nvl_free(be);
}

static int cuda_supports(const kern_backend *, enum kern_op op, nvl_dtype dt) {
    return (op == KERN_OP_RMSNORM || op == KERN_OP_MATMUL) &&
           (dt == NVL_DTYPE_BF16 || dt == NVL_DTYPE_F32 || dt == NVL_DTYPE_F16);
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
static nvl_status cuda_d2d(kern_backend *be, void *dst, const void *src, size_t n, nvl_err *err) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, ctx_of(be)->stream));
    return NVL_OK;
}
static nvl_status cuda_zero(kern_backend *be, void *dst, size_t n, nvl_err *err) {
    CUDA_CHECK(cudaMemsetAsync(dst, 0, n, ctx_of(be)->stream));
    return NVL_OK;
}
static nvl_status cuda_sync(kern_backend *be, nvl_err *err) {
    CUDA_CHECK(cudaStreamSynchronize(ctx_of(be)->stream));
    return NVL_OK;
}

extern "C" cudaStream_t kern_cuda_stream(kern_backend *be) { return ctx_of(be)->stream; }
extern "C" cublasHandle_t kern_cuda_cublas(kern_backend *be) { return ctx_of(be)->cublas; }

extern "C" void *kern_cuda_scratch(kern_backend *be, size_t bytes, nvl_err *err) {
    cuda_ctx *c = ctx_of(be);
    if (bytes > c->scratch_cap) {
        size_t cap = c->scratch_cap ? c->scratch_cap : (size_t)1 << 20;
        while (cap < bytes) cap *= 2;
        void *p = NULL;
        /* the old block may still be read by queued work */
        if (cudaStreamSynchronize(c->stream) != cudaSuccess || cudaMalloc(&p, cap) != cudaSuccess) {
            nvl_err_set(err, NVL_ERR_NOMEM, "cuda backend: no %zu bytes of device scratch", cap);
            return NULL;
        }
        if (c->scratch) cudaFree(c->scratch);
        c->scratch = p;
        c->scratch_cap = cap;
    }
    return c->scratch;
}

extern "C" nvl_status kern_cuda_after_launch(kern_backend *be, const char *op, nvl_err *err) {
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && ctx_of(be)->sync_each) e = cudaStreamSynchronize(ctx_of(be)->stream);
    if (e != cudaSuccess) return nvl_err_set(err, NVL_ERR_DEVICE, "%s: %s", op, cudaGetErrorString(e));
    return NVL_OK;
}

/* Uploads a host tensor (a view into the mapped checkpoint) once; t then points at the copy. */
extern "C" nvl_status kern_cuda_place_weight(kern_backend *be, nvl_tensor *t, nvl_err *err) {
    if (!t->data || t->device == NVL_DEVICE_CUDA) return NVL_OK;
    cuda_ctx *c = ctx_of(be);
    const size_t n = nvl_tensor_nbytes(t);
    placed *w = (placed *)nvl_calloc(1, sizeof *w);
    if (!w) return nvl_err_set(err, NVL_ERR_NOMEM, "cuda backend: out of memory");
    if (cudaMalloc(&w->p, n ? n : 1) != cudaSuccess) {
        nvl_free(w);
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        return nvl_err_set(err, NVL_ERR_NOMEM, "cuda backend: cannot place a weight of %zu bytes (%zu of %zu free)", n, free_b,
                           total_b);
    }
    CUDA_CHECK(cudaMemcpy(w->p, t->data, n, cudaMemcpyHostToDevice));
    w->next = c->weights;
    c->weights = w;
    t->data = w->p;
    t->device = NVL_DEVICE_CUDA;
    return NVL_OK;
}

static nvl_status cuda_mem_info(kern_backend *be, size_t *free_b, size_t *total_b) {
    (void)be;
    return cudaMemGetInfo(free_b, total_b) == cudaSuccess ? NVL_OK : NVL_ERR_DEVICE;
}

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
    i.copy_within = cuda_d2d;
    i.set_zero = cuda_zero;
    i.synchronize = cuda_sync;
    i.ops = &kern_cuda_ops;
    i.mem_info = cuda_mem_info;
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
