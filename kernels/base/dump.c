/* NANOVL_DUMP_DIR intermediates: raw files and a JSON index rewritten after every tensor. */
#include "dump.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define DUMP_MAX 256

static char g_dir[1024];
static int g_dir_set = 0;
static struct {
    char name[128];
    nvl_dtype dtype;
    int n_dims;
    int64_t shape[NVL_MAX_DIMS];
} g_index[DUMP_MAX];
static int g_n = 0;
static int g_failed = 0; /* files not written since the directory was set */

void nvl_dump_set_dir(const char *dir) {
    if (dir) snprintf(g_dir, sizeof g_dir, "%s", dir);
    g_dir_set = dir != NULL;
    g_n = 0;
    g_failed = 0;
}

int nvl_dump_failures(void) { return g_failed; }

const char *nvl_dump_dir(void) {
    if (g_dir_set) return g_dir;
    const char *e = getenv("NANOVL_DUMP_DIR");
    return e && *e ? e : NULL;
}

void nvl_dump(const char *name, nvl_dtype dtype, int n_dims, const int64_t *shape, const void *data) {
    const char *dir = nvl_dump_dir();
    if (!dir) return;
    mkdir(dir, 0755);
    char path[1400];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    size_t n = nvl_dtype_size(dtype);
    for (int i = 0; i < n_dims; i++) n *= (size_t)shape[i];
    /* a file that could not be written whole is removed and left out of index.json (a full disk
       left truncated .bin files and an empty index.json that looked real: a review) */
    FILE *f = fopen(path, "wb");
    int bad = !f || fwrite(data, 1, n, f) != n;
    int e = bad ? errno : 0;
    if (f && fclose(f) != 0 && !bad) bad = 1, e = errno;
    if (bad) {
        NVL_LOG_WARN("dump: cannot write %s: %s\n", path, e ? strerror(e) : "write error");
        if (f) unlink(path);
        g_failed++;
        return;
    }
    int k = 0;
    while (k < g_n && strcmp(g_index[k].name, name)) k++;
    if (k == g_n) {
        if (g_n == DUMP_MAX) return;
        g_n++;
    }
    snprintf(g_index[k].name, sizeof g_index[k].name, "%s", name);
    g_index[k].dtype = dtype;
    g_index[k].n_dims = n_dims;
    for (int i = 0; i < n_dims && i < NVL_MAX_DIMS; i++) g_index[k].shape[i] = shape[i];
    char tmp[1420]; /* (written beside, then renamed: a failed rewrite keeps the index before it) */
    snprintf(path, sizeof path, "%s/index.json", dir);
    snprintf(tmp, sizeof tmp, "%s/index.json.tmp", dir);
    f = fopen(tmp, "w");
    if (!f) {
        NVL_LOG_WARN("dump: cannot write %s: %s\n", tmp, strerror(errno));
        g_failed++;
        return;
    }
    fprintf(f, "{\"byte_order\": \"little\", \"tensors\": [\n");
    for (int i = 0; i < g_n; i++) {
        fprintf(f, "  {\"name\": \"%s\", \"file\": \"%s.bin\", \"dtype\": \"%s\", \"shape\": [", g_index[i].name,
                g_index[i].name, nvl_dtype_name(g_index[i].dtype));
        for (int d = 0; d < g_index[i].n_dims; d++) fprintf(f, "%s%lld", d ? ", " : "", (long long)g_index[i].shape[d]);
        fprintf(f, "]}%s\n", i + 1 < g_n ? "," : "");
    }
    fprintf(f, "]}\n");
    const int werr = ferror(f) | (fclose(f) != 0);
    if (werr || rename(tmp, path) != 0) {
        NVL_LOG_WARN("dump: cannot write %s: %s\n", path, errno ? strerror(errno) : "write error");
        unlink(tmp);
        g_failed++;
    }
}
