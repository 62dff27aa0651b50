/* Helpers shared by the subcommands: stdin, id lists. */
#include "cli_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/alloc.h"

char *cli_read_stdin(size_t *len) {
    size_t cap = 4096, n = 0;
    char *b = nvl_malloc(cap);
    if (!b) return NULL;
    size_t r;
    while ((r = fread(b + n, 1, cap - n - 1, stdin)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *nb = nvl_realloc(b, cap * 2);
            if (!nb) {
                nvl_free(b);
                return NULL;
            }
            b = nb;
            cap *= 2;
        }
    }
    b[n] = 0;
    if (len) *len = n;
    return b;
}

int cli_parse_ids(const char *s, int32_t **ids, int64_t *n) {
    int64_t cap = 64;
    *n = 0;
    *ids = nvl_malloc((size_t)cap * sizeof **ids);
    if (!*ids) return 0;
    while (*s) {
        while (*s == ' ' || *s == ',' || *s == '\n' || *s == '\t' || *s == '\r') s++;
        if (!*s) break;
        char *end = NULL;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX) return 0;
        if (*n == cap) {
            cap *= 2;
            int32_t *nb = nvl_realloc(*ids, (size_t)cap * sizeof **ids);
            if (!nb) return 0;
            *ids = nb;
        }
        (*ids)[(*n)++] = (int32_t)v;
        s = end;
    }
    return 1;
}
