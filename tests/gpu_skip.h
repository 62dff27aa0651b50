/* Model tests that also run on the CUDA backend (ctest's *_cuda entries set NVL_BACKEND=cuda):
 * without a device they skip (exit 77) instead of failing on the backend they cannot create.
 *
 *   int main(void) { test_skip_without_device(); ... }
 */
#ifndef TESTS_GPU_SKIP_H
#define TESTS_GPU_SKIP_H

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "test_util.h"

static inline void test_skip_without_device(void) {
    const char *b = getenv("NVL_BACKEND");
    const char *why = NULL;
    if (b && !strcmp(b, "cuda") && kern_cuda_device_count(&why) <= 0)
        test_skip("NVL_BACKEND=cuda: no CUDA device (%s)", why ? why : "none found");
}

#endif // TESTS_GPU_SKIP_H
