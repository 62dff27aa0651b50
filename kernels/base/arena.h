/* Bump arena for scratch memory sized once at init; nothing allocates in per-token loops.
 *
 *   nvl_arena a;
 *   nvl_arena_init(&a, scratch_bytes, 64);       // one nvl_malloc
 *   float *t = nvl_arena_alloc(&a, n * sizeof(float));   // NULL when full
 *   size_t m = nvl_arena_mark(&a); ... nvl_arena_rewind(&a, m);
 *   nvl_arena_reset(&a); nvl_arena_free(&a);
 *
 * Measure mode (nvl_arena_init_measure): no memory, allocations return NULL but advance the
 * offset, so a dry run of a forward pass finds the bytes it needs (ggml-alloc's "reserve").
 */
#ifndef KERNELS_BASE_ARENA_H
#define KERNELS_BASE_ARENA_H

#include <stddef.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nvl_arena {
    unsigned char *base; /* NULL in measure mode */
    size_t cap;          /* bytes usable from base */
    size_t off;          /* next free offset */
    size_t high;         /* high-water mark of off */
    size_t align;        /* default alignment of every block (power of two) */
    int measure;         /* 1: counting only */
} nvl_arena;

nvl_status nvl_arena_init(nvl_arena *a, size_t cap, size_t align, nvl_err *err);
void nvl_arena_init_measure(nvl_arena *a, size_t align);
void nvl_arena_free(nvl_arena *a); /* NULL-tolerant; leaves *a zeroed */

/* Returns a block of n bytes aligned to a->align, valid until rewind/reset/free. NULL when the
 * arena is full (and always in measure mode). */
void *nvl_arena_alloc(nvl_arena *a, size_t n);
void *nvl_arena_calloc(nvl_arena *a, size_t n);
size_t nvl_arena_mark(const nvl_arena *a);
void nvl_arena_rewind(nvl_arena *a, size_t mark);
void nvl_arena_reset(nvl_arena *a);

#ifdef __cplusplus
}
#endif

#endif // KERNELS_BASE_ARENA_H
