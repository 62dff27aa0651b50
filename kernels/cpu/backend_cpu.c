/* The CPU backend: host memory, OpenMP threads, ops from the kernels/cpu sources. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backend_impl.h"
#include "../base/alloc.h"
#include "cpu_ops.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* NVL_THREADS: unset or empty = OpenMP's default (OMP_NUM_THREADS, else all cores); else a whole
 * number 1..4096. OpenMP keeps the thread count per thread, so every thread that runs ops applies
 * it (kern_threads_apply): the one that creates the backend, serve's worker, the CLI's main. */
nvl_status kern_cpu_threads_env(int *n, nvl_err *err) {
    const char *s = getenv("NVL_THREADS");
    *n = 0;
    if (!s || !*s) return NVL_OK;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > 4096)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "NVL_THREADS='%s': expected a whole number of threads from 1 to 4096",
                           s);
#ifndef _OPENMP
    if (v != 1)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "NVL_THREADS=%ld: this nanovl was built without OpenMP and runs on "
                           "one thread", v);
#endif
    *n = (int)v;
    return NVL_OK;
}

void kern_threads_apply(void) {
#ifdef _OPENMP
    static _Thread_local int applied;
    if (applied) return;
    applied = 1;
    int n = 0;
    if (kern_cpu_threads_env(&n, NULL) == NVL_OK && n > 0) omp_set_num_threads(n);
#endif
}

int kern_cpu_n_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int kern_cpu_has_avx512_bf16(void) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
    return __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

int kern_cpu_has_avx2(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* AMX BF16 tiles, from the kernel's flags (/proc/cpuinfo lists them only when the OS enables
 * the tile state); used for reporting: oneDNN decides on its own whether it runs on AMX. */
static int cpu_has_amx_bf16(void) {
    static int v = -1;
    if (v >= 0) return v;
    v = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return v;
    char line[4096];
    while (!v && fgets(line, sizeof line, f))
        if (!strncmp(line, "flags", 5) && strstr(line, " amx_bf16")) v = 1;
    fclose(f);
    return v;
}

const char *kern_cpu_kernels(void) {
    static char buf[320];
    const kern_bf16_path many = kern_cpu_bf16_path(KERN_DNNL_MIN_ROWS), one = kern_cpu_bf16_path(1);
    const char *dnnl = kern_cpu_dnnl_version() ? kern_cpu_dnnl_version() : "oneDNN";
    char bf16[96];
    if (many != KERN_BF16_DNNL) snprintf(bf16, sizeof bf16, "%s", many == KERN_BF16_OWN ? "avx512bf16" : "via f32");
    else if (one == KERN_BF16_DNNL) snprintf(bf16, sizeof bf16, "%s", dnnl);
    else snprintf(bf16, sizeof bf16, "avx512bf16 + %s >= %d rows", dnnl, KERN_DNNL_MIN_ROWS);
    snprintf(buf, sizeof buf, "%s; matmul %s; bf16 %s", kern_cpu_features(), kern_cpu_matmul_kernel(), bf16);
    return buf;
}

const char *kern_cpu_features(void) {
    static char buf[128];
    if (buf[0]) return buf;
    int avx512 = 0;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    avx512 = __builtin_cpu_supports("avx512f");
#endif
    snprintf(buf, sizeof buf, "%s%s%s%s", cpu_has_amx_bf16() ? "amx_bf16 " : "",
             kern_cpu_has_avx512_bf16() ? "avx512_bf16 " : "", avx512 ? "avx512f " : "",
             kern_cpu_has_avx2() ? "avx2 fma" : "scalar");
    return buf;
}

void *kern_cpu_context_new(void);
void kern_cpu_context_free(void *p);

static void cpu_free(kern_backend *be) {
    kern_cpu_context_free(be->context);
    nvl_free(be);
}

static int cpu_supports(const kern_backend *be, enum kern_op op, nvl_dtype dt) {
    (void)be;
    switch (op) {
    case KERN_OP_MATMUL:
        return dt == NVL_DTYPE_F32 || dt == NVL_DTYPE_BF16 || dt == NVL_DTYPE_F16;
    case KERN_OP_RMSNORM: return nvl_dtype_is_float(dt);
    default: return 0;
    }
}

static nvl_status cpu_alloc(kern_backend *be, size_t n, void **out, nvl_err *err) {
    (void)be;
    *out = nvl_aligned_alloc(64, n ? n : 1);
    if (!*out) return nvl_err_set(err, NVL_ERR_NOMEM, "cpu backend: cannot allocate %zu bytes", n);
    return NVL_OK;
}
static void cpu_buf_free(kern_backend *be, void *p) {
    (void)be;
    nvl_free(p);
}
static nvl_status cpu_copy(kern_backend *be, void *dst, const void *src, size_t n, nvl_err *err) {
    (void)be;
    (void)err;
    if (n) memmove(dst, src, n);
    return NVL_OK;
}
static nvl_status cpu_zero(kern_backend *be, void *dst, size_t n, nvl_err *err) {
    (void)be;
    (void)err;
    memset(dst, 0, n);
    return NVL_OK;
}
static const struct kern_backend_i g_cpu_iface = {
    .name = "cpu",
    .kind = KERN_BACKEND_KIND_CPU,
    .free = cpu_free,
    .supports = cpu_supports,
    .buffer_alloc = cpu_alloc,
    .buffer_free = cpu_buf_free,
    .copy_to_backend = cpu_copy,
    .copy_to_host = cpu_copy,
    .copy_within = cpu_copy,
    .set_zero = cpu_zero,
    .synchronize = NULL,
    .ops = &kern_cpu_ops,
};

nvl_status kern_cpu_backend_init(kern_backend **out, nvl_err *err) {
    kern_backend *be = nvl_calloc(1, sizeof *be);
    if (!be) return nvl_err_set(err, NVL_ERR_NOMEM, "cpu backend: out of memory");
    be->iface = &g_cpu_iface;
    if (!(be->context = kern_cpu_context_new())) {
        nvl_free(be);
        return nvl_err_set(err, NVL_ERR_NOMEM, "cpu backend: out of memory");
    }
    int nt = 0;
    nvl_status st = kern_cpu_threads_env(&nt, err);
    if (st != NVL_OK) {
        cpu_free(be);
        return st;
    }
    kern_threads_apply();
    snprintf(be->description, sizeof be->description, "CPU: %d threads, %s", kern_cpu_n_threads(), kern_cpu_kernels());
    *out = be;
    return NVL_OK;
}
