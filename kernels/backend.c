/* Backend registry and selection (NVL_BACKEND env -> CUDA if built and a device exists -> CPU)
 * and the thin op entry points that dispatch through the vtable. */
#include <stdlib.h>
#include <string.h>

#include "backend_impl.h"
#include "base/log.h"
#include "cpu/cpu_ops.h"

int kern_cuda_built(void) {
#ifdef NVL_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

int kern_cuda_device_count(const char **why) {
#ifdef NVL_HAVE_CUDA
    return kern_cuda_probe_devices(why);
#else
    if (why) *why = "this nanovl was built without the CUDA backend";
    return 0;
#endif
}

nvl_status kern_backend_init(kern_backend **out, const char *name, nvl_err *err) {
    *out = NULL;
    if (!name || !*name) name = getenv("NVL_BACKEND");
    if (!name || !*name) name = "auto";
    if (!strcmp(name, "cpu")) return kern_cpu_backend_init(out, err);
    if (!strcmp(name, "cuda")) {
#ifdef NVL_HAVE_CUDA
        return kern_cuda_backend_init(out, err);
#else
        return nvl_err_set(err, NVL_ERR_NO_DEVICE,
                           "backend 'cuda': no CUDA device (this nanovl was built without CUDA)");
#endif
    }
    if (!strcmp(name, "auto")) {
#ifdef NVL_HAVE_CUDA
        const char *why = NULL;
        if (kern_cuda_probe_devices(&why) > 0) {
            nvl_err e2 = {0};
            if (kern_cuda_backend_init(out, &e2) == NVL_OK) return NVL_OK;
            NVL_LOG_WARN("CUDA device found but backend init failed (%s); using the CPU\n", e2.msg);
        } else {
            NVL_LOG_INFO("no CUDA device (%s); using the CPU backend\n", why ? why : "none");
        }
#endif
        return kern_cpu_backend_init(out, err);
    }
    return nvl_err_set(err, NVL_ERR_INVALID_ARG, "unknown backend '%s' (expected cpu, cuda or auto)",
                       name);
}

nvl_status kern_backend_init_model(kern_backend **out, nvl_err *err) {
    const char *b = getenv("NVL_BACKEND");
    return kern_backend_init(out, b && *b ? b : "cpu", err);
}

void kern_backend_free(kern_backend *be) {
    if (!be) return;
    be->iface->free(be);
}

enum kern_backend_kind kern_backend_kind_of(const kern_backend *be) { return be->iface->kind; }
const char *kern_backend_name(const kern_backend *be) { return be->iface->name; }
const char *kern_backend_description(const kern_backend *be) { return be->description; }

int kern_backend_supports(const kern_backend *be, enum kern_op op, nvl_dtype weight_dtype) {
    return be->iface->supports ? be->iface->supports(be, op, weight_dtype) : 0;
}

nvl_status kern_buffer_alloc(kern_backend *be, size_t bytes, void **out, nvl_err *err) {
    return be->iface->buffer_alloc(be, bytes, out, err);
}
void kern_buffer_free(kern_backend *be, void *p) {
    if (p) be->iface->buffer_free(be, p);
}
nvl_status kern_copy_to_backend(kern_backend *be, void *dst, const void *src, size_t n, nvl_err *err) {
    return be->iface->copy_to_backend(be, dst, src, n, err);
}
nvl_status kern_copy_to_host(kern_backend *be, void *dst, const void *src, size_t n, nvl_err *err) {
    return be->iface->copy_to_host(be, dst, src, n, err);
}
nvl_status kern_synchronize(kern_backend *be, nvl_err *err) {
    return be->iface->synchronize ? be->iface->synchronize(be, err) : NVL_OK;
}

