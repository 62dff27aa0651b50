/* FNV-1a, 64-bit (Fowler, Noll, Vo; the offset basis and prime of the published parameters): a
 * fast non-cryptographic hash for hash tables and identity keys, never for anything an attacker
 * must not collide.
 *
 *   uint64_t h = nvl_fnv1a(NVL_FNV1A_INIT, buf, n);   // continue over more bytes with h
 */
#ifndef NVL_BASE_HASH_H
#define NVL_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define NVL_FNV1A_INIT 1469598103934665603ULL

/* h continued over n bytes of data (the hash of a concatenation is the chained calls). */
static inline uint64_t nvl_fnv1a(uint64_t h, const void *data, size_t n) {
    const uint8_t *d = (const uint8_t *)data;
    for (size_t i = 0; i < n; i++) h = (h ^ d[i]) * 1099511628211ULL;
    return h;
}

/* h continued over the string s (NULL: none). */
static inline uint64_t nvl_fnv1a_str(uint64_t h, const char *s) { return s ? nvl_fnv1a(h, s, strlen(s)) : h; }

#endif // NVL_BASE_HASH_H
