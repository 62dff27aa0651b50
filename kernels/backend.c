/* Backend registry and selection (NVL_BACKEND env -> CUDA if built and a device exists -> CPU)
 * and the thin op entry points that dispatch through the vtable. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend_impl.h"
#include "base/alloc.h"
#include "base/log.h"
#include "cpu/cpu_ops.h"
#include "base/clock.h"

int kern_cuda_built(void) {
#ifdef NVL_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

#ifdef NVL_HAVE_CUDA
/* The CUDA backend lives in the module libnvl_cuda.so (kernels/CMakeLists.txt), loaded here with
 * dlopen only when a CUDA backend is asked for or a device is seen; nothing of CUDA is linked
 * into nanovl. Devices are counted through the driver (libcuda.so.1, cuInit + cuDeviceGetCount),
 * so a machine without a driver or a device never loads the CUDA runtime or cuBLAS. */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static pthread_once_t g_probe_once = PTHREAD_ONCE_INIT, g_module_once = PTHREAD_ONCE_INIT;
static int g_n_devices;
static char g_probe_why[512];
static nvl_status (*g_cuda_init)(kern_backend **, nvl_err *);
static char g_module_why[1024];

/* NVL_CUDA_MODULE: a CUDA backend module to load instead of libnvl_cuda.so, whose own
 * kern_cuda_probe_devices counts the devices (tests: the CUDA emulator's build of the backend,
 * tests/cuda_emu, which needs no driver). */
static const char *module_override(void) {
    const char *m = getenv("NVL_CUDA_MODULE");
    return m && *m ? m : NULL;
}

static void probe_driver(void) {
    const char *mod = module_override();
    if (mod) {
        void *hm = dlopen(mod, RTLD_NOW | RTLD_LOCAL);
        int (*probe)(const char **) = hm ? (int (*)(const char **))dlsym(hm, "kern_cuda_probe_devices") : NULL;
        const char *why = NULL;
        if (!probe) {
            const char *e = dlerror();
            snprintf(g_probe_why, sizeof g_probe_why, "NVL_CUDA_MODULE=%s: %s", mod, e ? e : "no kern_cuda_probe_devices");
            return;
        }
        g_n_devices = probe(&why);
        if (g_n_devices <= 0) snprintf(g_probe_why, sizeof g_probe_why, "%s", why ? why : "no device");
        return;
    }
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(g_probe_why, sizeof g_probe_why, "no CUDA driver (%s)", e ? e : "libcuda.so.1 not found");
        return;
    }
    int (*cu_init)(unsigned) = (int (*)(unsigned))dlsym(h, "cuInit");
    int (*cu_count)(int *) = (int (*)(int *))dlsym(h, "cuDeviceGetCount");
    int n = 0, rc;
    if (!cu_init || !cu_count)
        snprintf(g_probe_why, sizeof g_probe_why, "libcuda.so.1 lacks cuInit/cuDeviceGetCount");
    else if ((rc = cu_init(0)) != 0)
        snprintf(g_probe_why, sizeof g_probe_why, "cuInit failed with CUDA driver error %d%s", rc,
                 rc == 100 ? " (no CUDA-capable device)" : "");
    else if ((rc = cu_count(&n)) != 0)
        snprintf(g_probe_why, sizeof g_probe_why, "cuDeviceGetCount failed with CUDA driver error %d", rc);
    else if (n == 0)
        snprintf(g_probe_why, sizeof g_probe_why, "the driver reports 0 devices");
    g_n_devices = n > 0 ? n : 0;
    /* the driver stays loaded: the CUDA runtime of the module uses it */
}

/* libnvl_cuda.so beside the executable, else where the build put it. */
static void load_module(void) {
    char path[PATH_MAX + 32];
    const char *tried[2];
    int n_tried = 0;
    ssize_t n = readlink("/proc/self/exe", path, PATH_MAX);
    void *h = NULL;
    char first[PATH_MAX + 32] = "";
    const char *mod = module_override();
    if (mod) {
        h = dlopen(mod, RTLD_NOW | RTLD_LOCAL);
        n = 0; /* nowhere else */
        snprintf(first, sizeof first, "%s", mod);
    }
    if (n > 0) {
        path[n] = '\0';
        char *slash = strrchr(path, '/');
        if (slash) {
            strcpy(slash + 1, "libnvl_cuda.so");
            if (access(path, F_OK) == 0) h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
            if (!h) snprintf(first, sizeof first, "%s", path);
        }
    }
    if (first[0]) tried[n_tried++] = first;
    if (!h && !mod) {
        h = dlopen(NVL_CUDA_MODULE_PATH, RTLD_NOW | RTLD_LOCAL);
        tried[n_tried++] = NVL_CUDA_MODULE_PATH;
    }
    if (!h) {
        const char *e = dlerror();
        snprintf(g_module_why, sizeof g_module_why, "cannot load the CUDA backend module (%s%s%s): %s", tried[0],
                 n_tried > 1 ? ", " : "", n_tried > 1 ? tried[1] : "", e ? e : "not found");
        return;
    }
    g_cuda_init = (nvl_status(*)(kern_backend **, nvl_err *))dlsym(h, "kern_cuda_backend_init");
    if (!g_cuda_init)
        snprintf(g_module_why, sizeof g_module_why, "the CUDA backend module lacks kern_cuda_backend_init");
}

static nvl_status cuda_backend_init(kern_backend **out, nvl_err *err) {
    const char *why = NULL;
    if (kern_cuda_device_count(&why) <= 0)
        return nvl_err_set(err, NVL_ERR_NO_DEVICE, "no CUDA device (%s)", why ? why : "none found");
    pthread_once(&g_module_once, load_module);
    if (!g_cuda_init) return nvl_err_set(err, NVL_ERR_NO_DEVICE, "%s", g_module_why);
    return g_cuda_init(out, err);
}
#endif

int kern_cuda_device_count(const char **why) {
#ifdef NVL_HAVE_CUDA
    pthread_once(&g_probe_once, probe_driver);
    if (why) *why = g_n_devices > 0 ? NULL : g_probe_why;
    return g_n_devices;
#else
    if (why) *why = "this nanovl was built without the CUDA backend";
    return 0;
#endif
}

static nvl_status backend_init(kern_backend **out, const char *name, nvl_err *err);
nvl_status kern_backend_init(kern_backend **out, const char *name, nvl_err *err) {
    const nvl_status st = backend_init(out, name, err);
    const char *p = getenv("NVL_PROFILE_OPS");
    if (st == NVL_OK && p && !strcmp(p, "1")) kern_backend_profile(*out, 1);
    return st;
}

static nvl_status backend_init(kern_backend **out, const char *name, nvl_err *err) {
    *out = NULL;
    if (!name || !*name) name = getenv("NVL_BACKEND");
    if (!name || !*name) name = "auto";
    if (!strcmp(name, "cpu")) return kern_cpu_backend_init(out, err);
    if (!strcmp(name, "cuda")) {
#ifdef NVL_HAVE_CUDA
        return cuda_backend_init(out, err);
#else
        return nvl_err_set(err, NVL_ERR_NO_DEVICE,
                           "backend 'cuda': no CUDA device (this nanovl was built without CUDA)");
#endif
    }
    if (!strcmp(name, "auto")) {
#ifdef NVL_HAVE_CUDA
        const char *why = NULL;
        if (kern_cuda_device_count(&why) > 0) {
            nvl_err e2 = {0};
            if (cuda_backend_init(out, &e2) == NVL_OK) return NVL_OK;
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

static int one_of(const char *v, const char *const *set) {
    for (; *set; set++)
        if (!strcmp(v, *set)) return 1;
    return 0;
}

nvl_status kern_env_check(nvl_err *err) {
    static const char *const backends[] = {"cpu", "cuda", "auto", NULL};
    static const char *const kernels[] = {"scalar", "avx2", "avx512", "avx512bf16", "dnnl", NULL};
    static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
    static const char *const bools[] = {"0", "1", NULL};
    const char *v;
    if ((v = getenv("NVL_BACKEND")) && *v && !one_of(v, backends))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "NVL_BACKEND='%s': unknown backend (expected cpu, cuda or auto)", v);
    int n = 0;
    nvl_status st = kern_cpu_threads_env(&n, err);
    if (st != NVL_OK) return st;
    if ((v = getenv("NVL_CPU_KERNEL")) && *v) {
        if (!one_of(v, kernels))
            return nvl_err_set(err, NVL_ERR_INVALID_ARG, "NVL_CPU_KERNEL='%s': unknown kernel (expected scalar, avx2, "
                               "avx512, avx512bf16 or dnnl)", v);
        if (!strcmp(v, "dnnl") && !kern_cpu_has_dnnl())
            return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "NVL_CPU_KERNEL=dnnl: this build has no oneDNN (install "
                               "libdnnl-dev and rebuild) or oneDNN does not start here");
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        if (!strcmp(v, "avx512bf16") && !kern_cpu_has_bf16dp())
            return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "NVL_CPU_KERNEL=avx512bf16: this CPU (or this build) has no "
                               "AVX512-BF16 dot products");
        if (!strcmp(v, "avx512") && !__builtin_cpu_supports("avx512f"))
            return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "NVL_CPU_KERNEL=avx512: this CPU has no AVX-512F");
        if (!strcmp(v, "avx2") && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")))
            return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "NVL_CPU_KERNEL=avx2: this CPU has no AVX2/FMA");
#else
        if (strcmp(v, "scalar"))
            return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "NVL_CPU_KERNEL=%s: this build has only the scalar kernels", v);
#endif
    }
    if ((v = getenv("NVL_LOG_LEVEL")) && *v && !one_of(v, levels))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "NVL_LOG_LEVEL='%s': unknown level (expected error, warn, info or "
                           "debug)", v);
    if ((v = getenv("NVL_PROFILE_OPS")) && *v && !one_of(v, bools))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "NVL_PROFILE_OPS='%s': expected 0 or 1", v);
    if ((v = getenv("NVL_CUDA_SYNC")) && *v && !one_of(v, bools))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "NVL_CUDA_SYNC='%s': expected 0 or 1", v);
    /* the CUDA kernel switches (ops_cuda.cu reads exactly "0" / "1"): "true" or "on" would pass
       silently as the default */
    static const char *const switches[] = {"NVL_CUDA_FLASH", "NVL_CUDA_GEMV", "NVL_CUDA_GEMV_I8", "NVL_CUDA_FP8_LT",
                                           "NVL_CUDA_PDL", "NVL_CUDA_LT_BIAS", "NVL_CUDA_ATTN_MMA", NULL};
    for (int i = 0; switches[i]; i++)
        if ((v = getenv(switches[i])) && *v && !one_of(v, bools))
            return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s='%s': expected 0 or 1", switches[i], v);
    static const char *const mma[] = {"0", "1", "all", NULL};
    if ((v = getenv("NVL_CUDA_GEMV_MMA")) && *v && !one_of(v, mma))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "NVL_CUDA_GEMV_MMA='%s': expected 0, 1 or all", v);
    static const char *const ssd[] = {"0", "1", "seq", NULL};
    if ((v = getenv("NVL_CUDA_SSD")) && *v && !one_of(v, ssd))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "NVL_CUDA_SSD='%s': expected 0, 1 or seq", v);
    static const char *const depths[] = {"2", "4", "8", NULL};
    if ((v = getenv("NVL_CUDA_GEMV_DEPTH")) && *v && !one_of(v, depths))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "NVL_CUDA_GEMV_DEPTH='%s': expected 2, 4 or 8", v);
    if ((v = getenv("NVL_CUDA_SSD_WINDOW")) && *v) {
        char *end = NULL;
        errno = 0;
        long k = strtol(v, &end, 10);
        if (errno || *end || k < 1)
            return nvl_err_set(err, NVL_ERR_INVALID_ARG, "NVL_CUDA_SSD_WINDOW='%s': expected a number of chunks (1 or more)",
                               v);
    }
    static const char *const graphs[] = {"0", "1", "pad", NULL};
    if ((v = getenv("NVL_CUDA_GRAPHS")) && *v && !one_of(v, graphs))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "NVL_CUDA_GRAPHS='%s': expected 0, 1 or pad", v);
    if ((v = getenv("NVL_CUDA_DEVICE")) && *v) { /* (its range is checked where the backend starts) */
        char *end = NULL;
        errno = 0;
        long k = strtol(v, &end, 10);
        if (errno || *end || k < 0 || k > 1023)
            return nvl_err_set(err, NVL_ERR_INVALID_ARG, "NVL_CUDA_DEVICE='%s': expected a device index (0, 1, ...)", v);
    }
    if ((v = getenv("NVL_FAIL_ALLOC_AFTER")) && *v) {
        char *end = NULL;
        errno = 0;
        long long k = strtoll(v, &end, 10);
        if (errno || *end || k < -1)
            return nvl_err_set(err, NVL_ERR_INVALID_ARG, "NVL_FAIL_ALLOC_AFTER='%s': expected a whole number (-1 disables)",
                               v);
    }
    kern_threads_apply();
    return NVL_OK;
}

int kern_cpu_threads(void) { return kern_cpu_n_threads(); }

nvl_status kern_backend_init_models(kern_backend **out, nvl_err *err) {
    *out = NULL;
    const char *v = getenv("NVL_BACKEND");
    if (v && !strcmp(v, "cuda")) { /* asked for: the CUDA ops (first versions, see kernels/cuda/ops_cuda.cu) */
        const char *why = NULL;
        if (kern_cuda_device_count(&why) <= 0)
            return nvl_err_set(err, NVL_ERR_NO_DEVICE, "--backend cuda (NVL_BACKEND=cuda): no CUDA device (%s)", why ? why : "none found");
        return kern_backend_init(out, "cuda", err);
    }
    if (v && *v && strcmp(v, "cpu") && strcmp(v, "auto"))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "NVL_BACKEND='%s': unknown backend (expected cpu, cuda or auto)", v);
    if (v && !strcmp(v, "cpu")) return kern_backend_init(out, "cpu", err);
    /* auto: the device where the driver reports one (the count goes through libcuda alone: a
       machine without a driver loads no CUDA library) */
    if (kern_cuda_built() && kern_cuda_device_count(NULL) > 0) {
        nvl_err e2 = {0};
        if (kern_backend_init(out, "cuda", &e2) == NVL_OK) {
            (*out)->auto_device = 1;
            return NVL_OK;
        }
        NVL_LOG_WARN("a CUDA device is present but its backend did not start (%s): running on the CPU "
                     "(NVL_BACKEND=cuda makes this an error)\n", e2.msg);
    }
    return kern_backend_init(out, "cpu", err);
}

int kern_backend_auto_device(const kern_backend *be) { return be && be->auto_device; }

int kern_backend_fall_back_to_cpu(int auto_device, nvl_status st, const char *what, const nvl_err *err) {
    if (!auto_device || st != NVL_ERR_NOMEM) return 0;
    NVL_LOG_WARN("%s: %s; running on the CPU instead (NVL_BACKEND=cpu chooses it at once)\n", what, err->msg);
    return 1;
}

void kern_backend_free(kern_backend *be) {
    if (!be) return;
    kern_backend_profile(be, 0);
    be->iface->free(be);
}

// ---------------------------------------------------------------------------
// The per-op profile (backend.h)

#define PROF_KEYS 256    /* distinct keys kept (later ones are counted as not timed) */
#define PROF_PENDING 512 /* op marks waiting for the device before their times are read */
struct kern_prof {
    struct {
        char key[128];
        int64_t calls;
        double ms;
    } keys[PROF_KEYS];
    int n_keys;
    int64_t untimed; /* calls with no mark (captured into a graph) or past PROF_KEYS */
    struct {
        void *a, *b;
        int key;
    } pend[PROF_PENDING];
    int n_pend;
    double t0; /* the host clock at the open op's start (a backend without marks) */
};

/* Reads the pending marks' times (waiting for the device) into their keys; keep = 0 drops them. */
static void prof_resolve(kern_backend *be, int keep) {
    struct kern_prof *p = be->prof;
    for (int i = 0; i < p->n_pend; i++) {
        const double ms = keep ? be->iface->mark_elapsed_ms(be, p->pend[i].a, p->pend[i].b) : -1.0;
        if (ms >= 0) {
            p->keys[p->pend[i].key].calls++;
            p->keys[p->pend[i].key].ms += ms;
        } else if (keep) {
            p->untimed++;
        }
        be->iface->mark_free(be, p->pend[i].a);
        be->iface->mark_free(be, p->pend[i].b);
    }
    p->n_pend = 0;
}

void kern_backend_profile(kern_backend *be, int on) {
    if (!be) return;
    if (on && !be->prof) be->prof = nvl_calloc(1, sizeof *be->prof); /* (out of memory: stays off) */
    if (!on && be->prof) {
        if (be->iface->mark) prof_resolve(be, 0);
        nvl_free(be->prof);
        be->prof = NULL;
    }
}

int kern_backend_profiling(const kern_backend *be) { return be && be->prof; }

void *kern_prof_begin(kern_backend *be) {
    if (be->iface->mark) return be->iface->mark(be);
    be->prof->t0 = 1e3 * nvl_now();
    return be->prof; /* (a token that is not NULL) */
}

void kern_prof_end(kern_backend *be, void *token, const char *op, const char *key) {
    struct kern_prof *p = be->prof;
    char k[128];
    size_t n = (size_t)snprintf(k, sizeof k, "%s%s", op, key ? " " : "");
    for (const char *s = key; s && *s && n + 1 < sizeof k; s++) { /* digits folded: one key for every layer */
        if (*s >= '0' && *s <= '9') {
            if (n == 0 || k[n - 1] != '#') k[n++] = '#';
        } else {
            k[n++] = *s;
        }
    }
    k[n < sizeof k ? n : sizeof k - 1] = 0;
    int ki = 0;
    while (ki < p->n_keys && strcmp(p->keys[ki].key, k)) ki++;
    if (ki == p->n_keys && p->n_keys < PROF_KEYS) {
        snprintf(p->keys[ki].key, sizeof p->keys[ki].key, "%s", k);
        p->keys[ki].calls = 0;
        p->keys[ki].ms = 0.0;
        p->n_keys++;
    }
    if (!be->iface->mark) {
        const double ms = 1e3 * nvl_now() - p->t0;
        if (ki < p->n_keys) {
            p->keys[ki].calls++;
            p->keys[ki].ms += ms;
        } else {
            p->untimed++;
        }
        return;
    }
    void *b = token ? be->iface->mark(be) : NULL;
    if (!token || !b || ki == p->n_keys) {
        if (token) be->iface->mark_free(be, token);
        if (b) be->iface->mark_free(be, b);
        p->untimed++;
        return;
    }
    p->pend[p->n_pend].a = token;
    p->pend[p->n_pend].b = b;
    p->pend[p->n_pend].key = ki;
    if (++p->n_pend == PROF_PENDING) prof_resolve(be, 1);
}

int kern_backend_profile_report(kern_backend *be, FILE *out, const char *label) {
    if (!be || !be->prof) return 0;
    struct kern_prof *p = be->prof;
    if (be->iface->mark) prof_resolve(be, 1);
    int order[PROF_KEYS];
    double total = 0;
    int64_t calls = 0;
    for (int i = 0; i < p->n_keys; i++) {
        order[i] = i;
        total += p->keys[i].ms;
        calls += p->keys[i].calls;
    }
    for (int i = 1; i < p->n_keys; i++) /* by total time, the largest first */
        for (int j = i; j > 0 && p->keys[order[j]].ms > p->keys[order[j - 1]].ms; j--) {
            const int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    fprintf(out, "profile %s (%s): %.3f ms in %lld op calls%s", label ? label : "", be->description, total, (long long)calls,
            p->untimed ? "" : "\n");
    if (p->untimed) fprintf(out, ", %lld not timed (captured into a graph)\n", (long long)p->untimed);
    fprintf(out, "%12s %6s %8s %11s  %s\n", "ms", "share", "calls", "ms/call", "op [weight]");
    for (int i = 0; i < p->n_keys; i++) {
        const int k = order[i];
        fprintf(out, "%12.3f %5.1f%% %8lld %11.5f  %s\n", p->keys[k].ms, total > 0 ? 100.0 * p->keys[k].ms / total : 0.0,
                (long long)p->keys[k].calls, p->keys[k].calls ? p->keys[k].ms / (double)p->keys[k].calls : 0.0, p->keys[k].key);
    }
    const int n = p->n_keys;
    p->n_keys = 0;
    p->untimed = 0;
    return n;
}

enum kern_backend_kind kern_backend_kind_of(const kern_backend *be) { return be->iface->kind; }
const char *kern_backend_name(const kern_backend *be) { return be->iface->name; }
const char *kern_backend_description(const kern_backend *be) { return be->description; }

nvl_status kern_backend_mem_info(kern_backend *be, size_t *free_bytes, size_t *total_bytes, nvl_err *err) {
    *free_bytes = *total_bytes = 0;
    if (!be->iface->mem_info)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "the %s backend does not report its memory", be->iface->name);
    nvl_status st = be->iface->mem_info(be, free_bytes, total_bytes);
    return st == NVL_OK ? NVL_OK : nvl_err_set(err, st, "the %s backend could not report its memory", be->iface->name);
}

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
nvl_status kern_copy_within(kern_backend *be, void *dst, const void *src, size_t n, nvl_err *err) {
    return n ? be->iface->copy_within(be, dst, src, n, err) : NVL_OK;
}
nvl_status kern_set_zero(kern_backend *be, void *dst, size_t n, nvl_err *err) {
    return n ? be->iface->set_zero(be, dst, n, err) : NVL_OK;
}
nvl_status kern_synchronize(kern_backend *be, nvl_err *err) {
    return be->iface->synchronize ? be->iface->synchronize(be, err) : NVL_OK;
}


int kern_backend_can_capture(const kern_backend *be) { return be->iface->capture_begin != NULL; }
nvl_status kern_capture_begin(kern_backend *be, nvl_err *err) {
    if (!be->iface->capture_begin)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "the %s backend runs eagerly (no graph capture)", be->iface->name);
    return be->iface->capture_begin(be, err);
}
nvl_status kern_capture_end(kern_backend *be, kern_graph **out, nvl_err *err) {
    *out = NULL;
    if (!be->iface->capture_end)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "the %s backend runs eagerly (no graph capture)", be->iface->name);
    return be->iface->capture_end(be, out, err);
}
nvl_status kern_graph_launch(kern_backend *be, kern_graph *g, nvl_err *err) {
    if (!be->iface->graph_launch || !g)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: no graph to launch on the %s backend", __func__, be->iface->name);
    return be->iface->graph_launch(be, g, err);
}
int kern_graph_current(const kern_backend *be, const kern_graph *g) {
    return g && be->iface->graph_current && be->iface->graph_current(be, g);
}
void kern_graph_free(kern_backend *be, kern_graph *g) {
    if (g && be->iface->graph_free) be->iface->graph_free(be, g);
}

nvl_status kern_backend_measure(kern_backend *be, kern_device_rates *out, nvl_err *err) {
    out->copy_gbs = out->gemm_bf16_tflops = 0;
    if (!be->iface->measure)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "the %s backend has no device rates to measure", be->iface->name);
    return be->iface->measure(be, out, err);
}
