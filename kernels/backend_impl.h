/* Internal header: included only by the kernels sources (backend.c, cpu/, cuda/).
 *
 * The vtable every backend fills. Entries marked (optional) may be NULL; kernels/backend.c then
 * runs the CPU twin on host memory (only valid for the CPU backend itself, or when the caller
 * passes host pointers), and kern_backend_supports() reports 0 for them.
 */
#ifndef KERNELS_BACKEND_IMPL_H
#define KERNELS_BACKEND_IMPL_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

struct kern_backend_i {
    const char *name;
    enum kern_backend_kind kind;
    void (*free)(kern_backend *be);
    int (*supports)(const kern_backend *be, enum kern_op op, nvl_dtype weight_dtype);

    nvl_status (*buffer_alloc)(kern_backend *be, size_t bytes, void **out, nvl_err *err);
    void (*buffer_free)(kern_backend *be, void *p);
    nvl_status (*copy_to_backend)(kern_backend *be, void *dst, const void *src, size_t n, nvl_err *err);
    nvl_status (*copy_to_host)(kern_backend *be, void *dst, const void *src, size_t n, nvl_err *err);
    nvl_status (*synchronize)(kern_backend *be, nvl_err *err);

    nvl_status (*matmul)(kern_backend *be, float *y, const float *x, const nvl_tensor *w,
                         int64_t M, nvl_err *err); /* (optional) */
    nvl_status (*rmsnorm)(kern_backend *be, float *y, const float *x, const nvl_tensor *w,
                          int64_t rows, int64_t cols, float eps, nvl_err *err); /* (optional) */
};

struct kern_backend {
    const struct kern_backend_i *iface;
    void *context;       /* backend-private */
    char description[256];
};

/* Constructors of the concrete backends. */
nvl_status kern_cpu_backend_init(kern_backend **out, nvl_err *err);
#ifdef NVL_HAVE_CUDA
nvl_status kern_cuda_backend_init(kern_backend **out, nvl_err *err);
int kern_cuda_probe_devices(const char **why);
#endif

#ifdef __cplusplus
}
#endif

#endif // KERNELS_BACKEND_IMPL_H
