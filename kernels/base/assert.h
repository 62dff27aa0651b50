/* Invariant checks. NVL_ASSERT is for conditions that validated input can never violate
 * (a bug if it fires); bad input returns an nvl_status instead. Always on, also in release. */
#ifndef KERNELS_BASE_ASSERT_H
#define KERNELS_BASE_ASSERT_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define NVL_NORETURN __attribute__((noreturn))
#else
#define NVL_NORETURN
#endif

NVL_NORETURN void nvl_abort(const char *file, int line, const char *msg);

#define NVL_ASSERT(cond)                                                   \
    do {                                                                   \
        if (!(cond)) nvl_abort(__FILE__, __LINE__, "assertion failed: " #cond); \
    } while (0)

#define NVL_ABORT(msg) nvl_abort(__FILE__, __LINE__, (msg))

#ifdef __cplusplus
}
#endif

#endif // KERNELS_BASE_ASSERT_H
