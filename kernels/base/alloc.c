/* Accounted host allocation with failure injection.
 *
 * Each block carries a small header just before the user pointer holding the requested size
 * and the offset back to the real malloc'ed start, so nvl_free needs no size and aligned blocks
 * are freed the same way (aligned requests over-allocate by the alignment and round up).
 */
#include "alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define HDR_SIZE 32 /* bytes before the user pointer: keeps 16-byte alignment of malloc */
#define HDR_MAGIC 0x6e766c6dU /* "nvlm" */

typedef struct hdr {
    size_t size;     /* user bytes */
    size_t offset;   /* user pointer - raw pointer */
    uint32_t magic;
    uint32_t align;  /* the alignment asked for (16 from nvl_malloc) */
} hdr;
_Static_assert(sizeof(hdr) <= HDR_SIZE, "the header fits before the user pointer");

static atomic_llong g_bytes;
static atomic_llong g_peak;
static atomic_llong g_count;
static atomic_llong g_total; /* allocations made since the start (successful ones) */
static atomic_llong g_fail_after = -2; /* -2: env not read yet; -1: disabled */

static atomic_llong g_fail_nth = -1; /* >= 0: allocations to let through before failing one */

static int should_fail(void) {
    if (atomic_load(&g_fail_nth) >= 0 && atomic_fetch_sub(&g_fail_nth, 1) == 0) return 1; /* this one, once */
    long long v = atomic_load(&g_fail_after);
    if (v == -2) {
        const char *s = getenv("NVL_FAIL_ALLOC_AFTER");
        long long want = s ? atoll(s) : -1;
        long long expected = -2;
        atomic_compare_exchange_strong(&g_fail_after, &expected, want);
        v = atomic_load(&g_fail_after);
    }
    if (v < 0) return 0;
    for (;;) {
        if (v == 0) return 1;
        if (atomic_compare_exchange_weak(&g_fail_after, &v, v - 1)) return 0;
        if (v < 0) return 0;
    }
}

static void account(long long delta) {
    long long now = atomic_fetch_add(&g_bytes, delta) + delta;
    atomic_fetch_add(&g_count, delta > 0 ? 1 : -1);
    long long peak = atomic_load(&g_peak);
    while (now > peak && !atomic_compare_exchange_weak(&g_peak, &peak, now)) {
    }
}

static void *alloc_impl(size_t alignment, size_t n) {
    if (should_fail()) return NULL;
    if (alignment < 16) alignment = 16;
    if (n > SIZE_MAX - HDR_SIZE - alignment) return NULL;
    unsigned char *raw = malloc(n + HDR_SIZE + alignment);
    if (!raw) return NULL;
    uintptr_t user = (uintptr_t)(raw + HDR_SIZE);
    user = (user + alignment - 1) & ~(uintptr_t)(alignment - 1);
    hdr *h = (hdr *)(user - sizeof(hdr));
    h->size = n;
    h->offset = (size_t)(user - (uintptr_t)raw);
    h->magic = HDR_MAGIC;
    h->align = (uint32_t)alignment;
    account((long long)n);
    atomic_fetch_add(&g_total, 1);
    return (void *)user;
}

void *nvl_malloc(size_t n) { return alloc_impl(16, n); }

void *nvl_aligned_alloc(size_t alignment, size_t n) {
    if (alignment == 0 || (alignment & (alignment - 1))) return NULL;
    return alloc_impl(alignment, n);
}

void *nvl_calloc(size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) return NULL;
    void *p = nvl_malloc(count * size);
    if (p) memset(p, 0, count * size);
    return p;
}

void nvl_free(void *p) {
    if (!p) return;
    hdr *h = (hdr *)((unsigned char *)p - sizeof(hdr));
    if (h->magic != HDR_MAGIC) abort(); /* not ours or double free: fail loudly */
    h->magic = 0;
    account(-(long long)h->size);
    free((unsigned char *)p - h->offset);
}

void *nvl_realloc(void *p, size_t n) {
    if (!p) return nvl_malloc(n);
    hdr *h = (hdr *)((unsigned char *)p - sizeof(hdr));
    if (n <= h->size && h->align == 16 && h->offset == HDR_SIZE) {
        /* a shrink of an nvl_malloc block: the C library's realloc (a big block is not copied; a
         * moved one keeps malloc's 16-byte alignment, so the header stays HDR_SIZE before it) */
        const size_t old = h->size;
        unsigned char *r2 = realloc((unsigned char *)p - HDR_SIZE, n + HDR_SIZE + 16);
        if (!r2) return NULL; /* (p untouched) */
        hdr *h2 = (hdr *)(r2 + HDR_SIZE - sizeof(hdr));
        h2->size = n;
        atomic_fetch_sub(&g_bytes, (long long)(old - n)); /* the same block: its count unchanged; a
                                                             shrink raises no peak */
        return r2 + HDR_SIZE;
    }
    void *q = alloc_impl(h->align, n); /* the block's own alignment */
    if (!q) return NULL;
    memcpy(q, p, h->size < n ? h->size : n);
    nvl_free(p);
    return q;
}

char *nvl_strndup(const char *s, size_t n) {
    size_t len = strnlen(s, n);
    char *d = nvl_malloc(len + 1);
    if (!d) return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *nvl_strdup(const char *s) { return nvl_strndup(s, SIZE_MAX); }

char *nvl_memdup0(const void *s, size_t n) {
    char *d = n < SIZE_MAX ? nvl_malloc(n + 1) : NULL;
    if (!d) return NULL;
    if (n) memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void nvl_freep(void *pp) {
    void **p = (void **)pp;
    nvl_free(*p);
    *p = NULL;
}

int64_t nvl_alloc_bytes(void) { return atomic_load(&g_bytes); }
int64_t nvl_alloc_peak_bytes(void) { return atomic_load(&g_peak); }
int64_t nvl_alloc_count(void) { return atomic_load(&g_count); }
int64_t nvl_alloc_total(void) { return atomic_load(&g_total); }
void nvl_alloc_fail_after(int64_t n) { atomic_store(&g_fail_after, n < 0 ? -1 : (long long)n); }
void nvl_alloc_fail_nth(int64_t n) { atomic_store(&g_fail_nth, n < 0 ? -1 : (long long)n); }
