/* Helpers shared by the benchmark programs (header-only). */
#ifndef BENCH_BENCH_UTIL_H
#define BENCH_BENCH_UTIL_H

#include <stdio.h>
#include <time.h>

#include "cpu/cpu_ops.h"

/* "avx512f, bf16 oneDNN" style: the f32 matmul kernel and the path of a many-row (512) BF16
 * matmul, as NVL_CPU_KERNEL and the CPU choose them. */
static inline const char *bench_kernels(void) {
    static char buf[96];
    const kern_bf16_path p = kern_cpu_bf16_path(512);
    snprintf(buf, sizeof buf, "%s, bf16 %s", kern_cpu_matmul_kernel(),
             p == KERN_BF16_DNNL ? "oneDNN" : p == KERN_BF16_OWN ? "avx512bf16" : "via f32");
    return buf;
}

/* Monotonic wall time in seconds. */
static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* qsort comparator for doubles (medians). */
static inline int bench_cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#endif // BENCH_BENCH_UTIL_H
