/* Host allocation: every heap allocation in nanovl goes through this one pair so that bytes
 * are accounted (nvl_alloc_bytes, nvl_alloc_peak_bytes) and tests can inject failure.
 *
 *   float *x = nvl_malloc(n * sizeof *x);   if (!x) return NVL_ERR_NOMEM;
 *   nvl_freep(&x);                           // frees and sets x = NULL
 *
 * Failure injection: nvl_alloc_fail_after(n) (or env NVL_FAIL_ALLOC_AFTER=n, read at the first
 * allocation) lets n more allocations succeed and fails every one after; -1 disables.
 * Thread-safe (atomic counters).
 */
#ifndef KERNELS_BASE_ALLOC_H
#define KERNELS_BASE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void *nvl_malloc(size_t n);
void *nvl_calloc(size_t count, size_t size); /* overflow-checked */
void *nvl_realloc(void *p, size_t n);
/* Alignment must be a power of two >= sizeof(void*). Free with nvl_free like any other block. */
void *nvl_aligned_alloc(size_t alignment, size_t n);
char *nvl_strdup(const char *s);
char *nvl_strndup(const char *s, size_t n);
/* n bytes of s exactly (NUL bytes included) and a terminating NUL: for text with a length,
 * where nvl_strndup would stop at an embedded NUL (the tokenizer read past its copy). */
char *nvl_memdup0(const void *s, size_t n);
void nvl_free(void *p);
/* Frees *pp and sets it to NULL. pp is a pointer to any object pointer (void ** by convention). */
void nvl_freep(void *pp);

/* Bytes currently allocated through this pair, and the high-water mark. */
int64_t nvl_alloc_bytes(void);
int64_t nvl_alloc_peak_bytes(void);
int64_t nvl_alloc_count(void); /* live blocks */
int64_t nvl_alloc_total(void); /* blocks allocated since the start (failure-injection sweeps size themselves by it) */

/* Lets n more allocations succeed, then fails all; n < 0 disables injection. */
void nvl_alloc_fail_after(int64_t n);
/* Lets n more allocations succeed, fails the next one only, then lets all through again (a
 * missing NULL check then shows as a crash or a wrong result, not as a later failure); n < 0
 * disables it. */
void nvl_alloc_fail_nth(int64_t n);

#ifdef __cplusplus
}
#endif

#endif // KERNELS_BASE_ALLOC_H
