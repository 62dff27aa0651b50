/* Minimal safetensors writer for tests (header-only): builds well-formed files and, through
 * the raw-header entry point, deliberately damaged ones.
 *
 *   st_writer w; st_writer_init(&w);
 *   st_writer_add(&w, "a", "F32", 2, (int64_t[]){2, 3}, data, 24);
 *   st_writer_save(&w, path, NULL);   // NULL metadata
 *   st_writer_free(&w);
 *
 *   st_write_raw(path, header_json, hlen_override, data, n);  // header length may lie
 */
#ifndef TESTS_ST_WRITER_H
#define TESTS_ST_WRITER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct st_writer_tensor {
    char name[256];
    char dtype[16];
    int n_dims;
    int64_t shape[8];
    void *data;
    size_t n;
} st_writer_tensor;

typedef struct st_writer {
    st_writer_tensor *t;
    int n, cap;
} st_writer;

static inline void st_writer_init(st_writer *w) { memset(w, 0, sizeof *w); }

static inline void st_writer_free(st_writer *w) {
    for (int i = 0; i < w->n; i++) free(w->t[i].data);
    free(w->t);
    memset(w, 0, sizeof *w);
}

/* Copies data (n bytes). */
static inline void st_writer_add(st_writer *w, const char *name, const char *dtype, int n_dims,
                                 const int64_t *shape, const void *data, size_t n) {
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 16;
        w->t = realloc(w->t, (size_t)w->cap * sizeof *w->t);
    }
    st_writer_tensor *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    t->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) t->shape[i] = shape[i];
    t->data = malloc(n ? n : 1);
    if (n) memcpy(t->data, data, n);
    t->n = n;
}

/* Writes u64 header length + header + data; header_len_override < 0 writes the true length. */
static inline int st_write_raw(const char *path, const char *header, long long header_len_override,
                               const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    uint64_t hl = header_len_override >= 0 ? (uint64_t)header_len_override : strlen(header);
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(hl >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
    return 1;
}

static inline int st_writer_save(const st_writer *w, const char *path, const char *metadata_json) {
    size_t cap = 4096 + (size_t)w->n * 512, o = 0;
    char *h = malloc(cap);
    o += (size_t)snprintf(h + o, cap - o, "{");
    if (metadata_json) o += (size_t)snprintf(h + o, cap - o, "\"__metadata__\":%s", metadata_json);
    size_t off = 0, total = 0;
    for (int i = 0; i < w->n; i++) total += w->t[i].n;
    for (int i = 0; i < w->n; i++) {
        const st_writer_tensor *t = &w->t[i];
        o += (size_t)snprintf(h + o, cap - o, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                              (i || metadata_json) ? "," : "", t->name, t->dtype);
        for (int d = 0; d < t->n_dims; d++)
            o += (size_t)snprintf(h + o, cap - o, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        o += (size_t)snprintf(h + o, cap - o, "],\"data_offsets\":[%zu,%zu]}", off, off + t->n);
        off += t->n;
    }
    o += (size_t)snprintf(h + o, cap - o, "}");
    /* pad header to a multiple of 8 with spaces, as the reference writer does */
    while (o % 8) h[o++] = ' ';
    h[o] = '\0';
    unsigned char *data = malloc(total ? total : 1);
    off = 0;
    for (int i = 0; i < w->n; i++) {
        memcpy(data + off, w->t[i].data, w->t[i].n);
        off += w->t[i].n;
    }
    int ok = st_write_raw(path, h, -1, data, total);
    free(h);
    free(data);
    return ok;
}

#endif // TESTS_ST_WRITER_H
