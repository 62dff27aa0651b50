/* Helpers shared by the benchmark programs (header-only). */
#ifndef BENCH_BENCH_UTIL_H
#define BENCH_BENCH_UTIL_H

#include "base/clock.h" /* nvl_now(): monotonic seconds */

/* qsort comparator for doubles (medians). */
static inline int bench_cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#endif // BENCH_BENCH_UTIL_H
