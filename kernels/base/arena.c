/* Bump arena implementation. */
#include "arena.h"

#include <stdint.h>
#include <string.h>

#include "alloc.h"

static size_t align_up(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); }

nvl_status nvl_arena_init(nvl_arena *a, size_t cap, size_t align, nvl_err *err) {
    memset(a, 0, sizeof *a);
    if (align == 0 || (align & (align - 1)))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: alignment %zu is not a power of two",
                           __func__, align);
    a->align = align;
    if (cap) {
        a->base = nvl_aligned_alloc(align, cap);
        if (!a->base)
            return nvl_err_set(err, NVL_ERR_NOMEM, "%s: cannot allocate %zu bytes", __func__, cap);
    }
    a->cap = cap;
    return NVL_OK;
}

void nvl_arena_init_measure(nvl_arena *a, size_t align) {
    memset(a, 0, sizeof *a);
    a->align = (align && !(align & (align - 1))) ? align : 16;
    a->measure = 1;
}

void nvl_arena_free(nvl_arena *a) {
    if (!a) return;
    nvl_free(a->base);
    memset(a, 0, sizeof *a);
}

void *nvl_arena_alloc(nvl_arena *a, size_t n) {
    size_t start = align_up(a->off, a->align);
    if (start < a->off || n > SIZE_MAX - start) return NULL;
    size_t end = start + n;
    if (a->measure) {
        a->off = end;
        if (end > a->high) a->high = end;
        return NULL;
    }
    if (end > a->cap) return NULL;
    a->off = end;
    if (end > a->high) a->high = end;
    return a->base + start;
}

void *nvl_arena_calloc(nvl_arena *a, size_t n) {
    void *p = nvl_arena_alloc(a, n);
    if (p) memset(p, 0, n);
    return p;
}

size_t nvl_arena_mark(const nvl_arena *a) { return a->off; }

void nvl_arena_rewind(nvl_arena *a, size_t mark) {
    if (mark <= a->off) a->off = mark;
}

void nvl_arena_reset(nvl_arena *a) { a->off = 0; }
