/* UTF-8 handling for the tokenizer: decoding with U+FFFD replacement of invalid sequences
 * (maximal subparts, as Python's errors="replace"), and NFC normalization from the generated
 * tables in unicode_nfc.inc (tests/reference/gen_unicode_tables.py). */
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "tokenizer.h"
#include "unicode_impl.h"

#include "unicode_nfc.inc"

/* Length of the valid UTF-8 sequence at s (1..4), or 0 with *bad = bytes of the maximal
 * invalid subpart (>= 1). */
int nvl_utf8_next(const unsigned char *s, size_t n, uint32_t *cp, int *bad) {
    unsigned char c = s[0];
    *bad = 0;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    uint32_t v;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2, v = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *bad = 1;
        return 0;
    }
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) {
            *bad = i;
            return 0;
        }
        unsigned char d = s[i];
        unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (d < l || d > h) {
            *bad = i;
            return 0;
        }
        v = (v << 6) | (d & 0x3F);
    }
    *cp = v;
    return len;
}

int nvl_utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

nvl_status llm_utf8_sanitize(const char *s, size_t len, char **out, size_t *out_len) {
    char *o = nvl_malloc(len * 3 + 1); /* each bad byte -> 3-byte U+FFFD at worst */
    if (!o) return NVL_ERR_NOMEM;
    size_t i = 0, k = 0;
    while (i < len) {
        uint32_t cp;
        int bad;
        int l = nvl_utf8_next((const unsigned char *)s + i, len - i, &cp, &bad);
        if (l) {
            memcpy(o + k, s + i, (size_t)l);
            k += (size_t)l;
            i += (size_t)l;
        } else {
            k += (size_t)nvl_utf8_put(0xFFFD, o + k);
            i += (size_t)bad;
        }
    }
    o[k] = 0;
    *out = o;
    *out_len = k;
    return NVL_OK;
}

// ---------------------------------------------------------------------------
// NFC: full canonical decomposition, canonical ordering, canonical composition (UAX #15).

#define SBASE 0xAC00
#define LBASE 0x1100
#define VBASE 0x1161
#define TBASE 0x11A7
#define LCOUNT 19
#define VCOUNT 21
#define TCOUNT 28
#define NCOUNT (VCOUNT * TCOUNT)
#define SCOUNT (LCOUNT * NCOUNT)

static int ccc_of(uint32_t cp) {
    size_t lo = 0, hi = sizeof k_ccc / sizeof k_ccc[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (k_ccc[mid][0] == cp) return (int)k_ccc[mid][1];
        if (k_ccc[mid][0] < cp) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

static const uint32_t *decomp_of(uint32_t cp) {
    size_t lo = 0, hi = sizeof k_decomp / sizeof k_decomp[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (k_decomp[mid][0] == cp) return k_decomp[mid];
        if (k_decomp[mid][0] < cp) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT)
        return a + (b - TBASE);
    size_t lo = 0, hi = sizeof k_comp / sizeof k_comp[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (k_comp[mid][0] == a && k_comp[mid][1] == b) return k_comp[mid][2];
        if (k_comp[mid][0] < a || (k_comp[mid][0] == a && k_comp[mid][1] < b)) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

static size_t decompose(uint32_t cp, uint32_t *out) {
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        uint32_t s = cp - SBASE;
        out[0] = LBASE + s / NCOUNT;
        out[1] = VBASE + (s % NCOUNT) / TCOUNT;
        if (s % TCOUNT) {
            out[2] = TBASE + s % TCOUNT;
            return 3;
        }
        return 2;
    }
    const uint32_t *d = decomp_of(cp);
    if (!d) {
        out[0] = cp;
        return 1;
    }
    size_t n = decompose(d[1], out);
    if (d[2]) n += decompose(d[2], out + n);
    return n;
}

nvl_status llm_utf8_nfc(const char *s, size_t len, char **out, size_t *out_len) {
    /* fast path: pure ASCII is already NFC */
    size_t i = 0;
    while (i < len && (unsigned char)s[i] < 0x80) i++;
    if (i == len) {
        *out = nvl_memdup0(s, len); /* (NUL bytes included) */
        *out_len = len;
        return *out ? NVL_OK : NVL_ERR_NOMEM;
    }
    /* decompositions grow a code point to at most 4 (Hangul 3, table chains <= 4) */
    uint32_t *cps = nvl_malloc((len * 4 + 4) * sizeof *cps);
    int *cls = nvl_malloc((len * 4 + 4) * sizeof *cls);
    char *o = nvl_malloc(len * 3 + 4);
    if (!cps || !cls || !o) {
        nvl_free(cps);
        nvl_free(cls);
        nvl_free(o);
        return NVL_ERR_NOMEM;
    }
    size_t n = 0;
    for (i = 0; i < len;) {
        uint32_t cp;
        int bad;
        int l = nvl_utf8_next((const unsigned char *)s + i, len - i, &cp, &bad);
        if (!l) {
            cp = 0xFFFD;
            l = bad;
        }
        i += (size_t)l;
        n += decompose(cp, cps + n);
    }
    for (size_t k = 0; k < n; k++) cls[k] = ccc_of(cps[k]);
    /* canonical ordering: stable insertion sort inside runs of non-starters */
    for (size_t k = 1; k < n; k++) {
        if (!cls[k]) continue;
        size_t j = k;
        while (j > 0 && cls[j - 1] > cls[j]) {
            uint32_t tc = cps[j];
            cps[j] = cps[j - 1];
            cps[j - 1] = tc;
            int tl = cls[j];
            cls[j] = cls[j - 1];
            cls[j - 1] = tl;
            j--;
        }
    }
    /* composition */
    size_t comp_pos = 1, starter_pos = 0;
    if (n) {
        int last_class = cls[0] ? 256 : 0;
        uint32_t starter = cps[0];
        for (size_t k = 1; k < n; k++) {
            uint32_t ch = cps[k];
            int c = cls[k];
            uint32_t composite = (last_class < c || last_class == 0) ? compose(starter, ch) : 0;
            if (composite && (last_class < c || last_class == 0)) {
                cps[starter_pos] = composite;
                starter = composite;
                continue;
            }
            if (c == 0) {
                starter_pos = comp_pos;
                starter = ch;
            }
            last_class = c;
            cps[comp_pos] = ch;
            cls[comp_pos] = c;
            comp_pos++;
        }
    } else {
        comp_pos = 0;
    }
    size_t k = 0;
    for (size_t j = 0; j < comp_pos; j++) k += (size_t)nvl_utf8_put(cps[j], o + k);
    o[k] = 0;
    nvl_free(cps);
    nvl_free(cls);
    *out = o;
    *out_len = k;
    return NVL_OK;
}
