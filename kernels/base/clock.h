/* The monotonic clock (CLOCK_MONOTONIC) in seconds as a double: for time bounds, progress and
 * timings, never for wall-clock dates. Its origin is unspecified (boot, on Linux): use differences.
 *
 *   double t0 = nvl_now(); ...; double elapsed_s = nvl_now() - t0;
 */
#ifndef NVL_BASE_CLOCK_H
#define NVL_BASE_CLOCK_H

#include <time.h>

static inline double nvl_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif // NVL_BASE_CLOCK_H
