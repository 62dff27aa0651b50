/* Safetensors header validation, name lookup and sharded checkpoints.
 *
 * File layout: u64 little-endian N, N bytes of JSON header, then the data section. The header
 * maps tensor names to {dtype, shape, data_offsets: [BEGIN, END)} relative to the data section,
 * plus an optional "__metadata__" object of strings. Nothing in the file is trusted until every
 * rule in safetensors.h holds.
 */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "hash.h"
#include "json_util.h"
#include "mapped_file.h"

// ---------------------------------------------------------------------------
// Name index: open addressing over entry indices (FNV-1a hash)

typedef struct name_index {
    int64_t *slots; /* -1 empty, else index into entries */
    size_t cap;     /* power of two */
} name_index;

static uint64_t fnv1a(const char *s) { return nvl_fnv1a_str(NVL_FNV1A_INIT, s); }

static int index_init(name_index *ix, int64_t n) {
    size_t cap = 16;
    while (cap < (size_t)n * 2 + 1) cap <<= 1;
    ix->slots = nvl_malloc(cap * sizeof *ix->slots);
    if (!ix->slots) return 0;
    for (size_t i = 0; i < cap; i++) ix->slots[i] = -1;
    ix->cap = cap;
    return 1;
}

/* Inserts entry i; returns the index of an existing entry with the same name, or -1. */
static int64_t index_insert(name_index *ix, const nvl_st_entry *entries, int64_t i) {
    size_t m = ix->cap - 1, h = (size_t)fnv1a(entries[i].name) & m;
    while (ix->slots[h] >= 0) {
        if (!strcmp(entries[ix->slots[h]].name, entries[i].name)) return ix->slots[h];
        h = (h + 1) & m;
    }
    ix->slots[h] = i;
    return -1;
}

static int64_t index_find(const name_index *ix, const nvl_st_entry *entries, const char *name) {
    if (!ix->cap) return -1;
    size_t m = ix->cap - 1, h = (size_t)fnv1a(name) & m;
    while (ix->slots[h] >= 0) {
        if (!strcmp(entries[ix->slots[h]].name, name)) return ix->slots[h];
        h = (h + 1) & m;
    }
    return -1;
}

// ---------------------------------------------------------------------------
// One safetensors file

struct nvl_safetensors {
    nvl_mapped_file *map; /* NULL when opened over memory */
    const uint8_t *bytes;
    size_t len;
    char *what;
    nvl_st_entry *entries;
    int64_t n;
    name_index ix;
    char **meta_keys, **meta_vals;
    int n_meta;
};

static int cmp_begin(const void *a, const void *b) {
    const nvl_st_entry *x = *(const nvl_st_entry *const *)a, *y = *(const nvl_st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : (x->end > y->end);
}

/* Reads a JSON number that must be a non-negative integer below 2^53. */
static int json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (d < 0 || d > 9007199254740992.0 || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static nvl_status parse_entry(nvl_safetensors *f, const cJSON *item, nvl_st_entry *e,
                              uint64_t data_len, nvl_err *err) {
    const char *w = f->what, *name = item->string;
    if (!cJSON_IsObject(item))
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: header entry '%s' is not an object", w, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt))
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: tensor '%s' has no string 'dtype'", w, name);
    if (!cJSON_IsArray(sh))
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: tensor '%s' has no array 'shape'", w, name);
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2)
        return nvl_err_set(err, NVL_ERR_FORMAT,
                           "%s: tensor '%s' needs 'data_offsets' as [begin, end]", w, name);
    e->dtype = nvl_dtype_from_name(dt->valuestring);
    if (e->dtype == NVL_DTYPE_INVALID)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED,
                           "%s: tensor '%s' has unknown dtype '%s' (known: F32 F16 BF16 F8_E4M3 "
                           "U8 I8 I32 I64 BOOL F64 F8_E5M2 I16 U16 U32 U64)",
                           w, name, dt->valuestring);
    int nd = cJSON_GetArraySize(sh);
    if (nd > NVL_MAX_DIMS)
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: tensor '%s' has %d dimensions, at most %d", w,
                           name, nd, NVL_MAX_DIMS);
    e->n_dims = nd;
    /* numel * size, checked against overflow: extents are < 2^53, products checked per step. */
    uint64_t bytes = nvl_dtype_size(e->dtype);
    int k = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, sh) {
        uint64_t ext;
        if (!json_u64(d, &ext))
            return nvl_err_set(err, NVL_ERR_FORMAT,
                               "%s: tensor '%s' shape[%d] is not a non-negative integer", w, name, k);
        e->shape[k++] = (int64_t)ext;
        if (ext && bytes > UINT64_MAX / ext)
            return nvl_err_set(err, NVL_ERR_FORMAT, "%s: tensor '%s' shape overflows 64 bits", w,
                               name);
        bytes *= ext;
    }
    if (!json_u64(cJSON_GetArrayItem(of, 0), &e->begin) ||
        !json_u64(cJSON_GetArrayItem(of, 1), &e->end))
        return nvl_err_set(err, NVL_ERR_FORMAT,
                           "%s: tensor '%s' data_offsets are not non-negative integers", w, name);
    if (e->end < e->begin)
        return nvl_err_set(err, NVL_ERR_FORMAT,
                           "%s: tensor '%s' data_offsets [%llu, %llu) end before begin", w, name,
                           (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end - e->begin != bytes) {
        char s[160];
        nvl_shape_str(s, sizeof s, e->n_dims, e->shape);
        return nvl_err_set(err, NVL_ERR_FORMAT,
                           "%s: tensor '%s' (%s %s) spans %llu bytes, expected numel x %zu = %llu",
                           w, name, nvl_dtype_name(e->dtype), s,
                           (unsigned long long)(e->end - e->begin), nvl_dtype_size(e->dtype),
                           (unsigned long long)bytes);
    }
    if (e->end > data_len)
        return nvl_err_set(err, NVL_ERR_TRUNCATED,
                           "%s: tensor '%s' data_offsets [%llu, %llu) run past the data section "
                           "of %llu bytes",
                           w, name, (unsigned long long)e->begin, (unsigned long long)e->end,
                           (unsigned long long)data_len);
    return NVL_OK;
}

static nvl_status parse_metadata(nvl_safetensors *f, const cJSON *meta, nvl_err *err) {
    if (!cJSON_IsObject(meta))
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: __metadata__ is not an object", f->what);
    int n = cJSON_GetArraySize(meta);
    if (n == 0) return NVL_OK;
    if (f->meta_keys) /* a second "__metadata__" key (found by fuzz_safetensors: the first was leaked) */
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: __metadata__ appears more than once", f->what);
    f->meta_keys = nvl_calloc((size_t)n, sizeof(char *));
    f->meta_vals = nvl_calloc((size_t)n, sizeof(char *));
    if (!f->meta_keys || !f->meta_vals) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", f->what);
    const cJSON *m;
    cJSON_ArrayForEach(m, meta) {
        if (!cJSON_IsString(m))
            return nvl_err_set(err, NVL_ERR_FORMAT, "%s: __metadata__ value '%s' is not a string",
                               f->what, m->string);
        f->meta_keys[f->n_meta] = nvl_strdup(m->string);
        f->meta_vals[f->n_meta] = nvl_strdup(m->valuestring);
        f->n_meta++;
        if (!f->meta_keys[f->n_meta - 1] || !f->meta_vals[f->n_meta - 1])
            return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", f->what);
    }
    return NVL_OK;
}

static nvl_status parse_file(nvl_safetensors *f, nvl_err *err) {
    const char *w = f->what;
    if (f->len < 8)
        return nvl_err_set(err, NVL_ERR_TRUNCATED,
                           "%s: file has %zu bytes, too short for the 8-byte header length", w,
                           f->len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->bytes[i];
    if (hlen > NVL_ST_MAX_HEADER_BYTES)
        return nvl_err_set(err, NVL_ERR_LIMIT,
                           "%s: header length %llu is above the cap of %llu bytes", w,
                           (unsigned long long)hlen, (unsigned long long)NVL_ST_MAX_HEADER_BYTES);
    if (hlen > f->len - 8)
        return nvl_err_set(err, NVL_ERR_TRUNCATED,
                           "%s: header length %llu runs past the end of the %zu-byte file", w,
                           (unsigned long long)hlen, f->len);
    if (hlen < 2)
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: header length %llu cannot hold a JSON object",
                           w, (unsigned long long)hlen);
    uint64_t data_len = f->len - 8 - hlen;
    const uint8_t *data = f->bytes + 8 + hlen;

    /* the format's header is UTF-8 JSON: a tensor named by other bytes was taken (a review) */
    const size_t bad = nvl_utf8_bad_at(f->bytes + 8, (size_t)hlen);
    if (bad < hlen)
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: header is not valid UTF-8 (byte %zu of its %llu)", w, bad,
                           (unsigned long long)hlen);
    cJSON *root = NULL;
    nvl_status st = nvl_json_parse(&root, (const char *)f->bytes + 8, (size_t)hlen, w, err);
    if (st == NVL_ERR_FORMAT) {
        char detail[NVL_ERR_MSG_MAX] = "";
        if (err) snprintf(detail, sizeof detail, "%s", err->msg);
        return nvl_err_set(err, NVL_ERR_FORMAT, "header is not valid JSON (%s)", detail);
    }
    if (st != NVL_OK) return st;
    nvl_st_entry **sorted = NULL;
    if (!cJSON_IsObject(root)) {
        st = nvl_err_set(err, NVL_ERR_FORMAT, "%s: header is not a JSON object", w);
        goto fail;
    }
    int64_t n = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, "__metadata__")) n++;
    }
    f->entries = nvl_calloc((size_t)(n ? n : 1), sizeof *f->entries);
    sorted = nvl_malloc((size_t)(n ? n : 1) * sizeof *sorted);
    if (!f->entries || !sorted || !index_init(&f->ix, n)) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory for %lld entries", w, (long long)n);
        goto fail;
    }
    cJSON_ArrayForEach(item, root) {
        if (!strcmp(item->string, "__metadata__")) {
            if ((st = parse_metadata(f, item, err)) != NVL_OK) goto fail;
            continue;
        }
        if (!item->string[0]) {
            st = nvl_err_set(err, NVL_ERR_FORMAT, "%s: a tensor has an empty name", w);
            goto fail;
        }
        nvl_st_entry *e = &f->entries[f->n];
        e->name = nvl_strdup(item->string);
        if (!e->name) {
            st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", w);
            goto fail;
        }
        f->n++;
        if ((st = parse_entry(f, item, e, data_len, err)) != NVL_OK) goto fail;
        e->data = data + e->begin;
        if (index_insert(&f->ix, f->entries, f->n - 1) >= 0) {
            st = nvl_err_set(err, NVL_ERR_FORMAT, "%s: tensor name '%s' appears twice", w, e->name);
            goto fail;
        }
        sorted[f->n - 1] = e;
    }
    qsort(sorted, (size_t)f->n, sizeof *sorted, cmp_begin);
    /* each non-empty tensor against the one ending last before it (not only its neighbour: an empty
       tensor between two overlapping ones hid the overlap; a review) */
    const nvl_st_entry *a = NULL;
    for (int64_t i = 0; i < f->n; i++) {
        const nvl_st_entry *b = sorted[i];
        if (b->end == b->begin) continue;
        if (a && b->begin < a->end) {
            st = nvl_err_set(err, NVL_ERR_FORMAT,
                             "%s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap", w,
                             a->name, (unsigned long long)a->begin, (unsigned long long)a->end,
                             b->name, (unsigned long long)b->begin, (unsigned long long)b->end);
            goto fail;
        }
        if (!a || b->end > a->end) a = b;
    }
    st = NVL_OK;
fail:
    nvl_free(sorted);
    cJSON_Delete(root);
    return st;
}

static nvl_status st_open_common(nvl_safetensors *f, nvl_safetensors **out, nvl_err *err) {
    nvl_status st = parse_file(f, err);
    if (st != NVL_OK) {
        nvl_safetensors_close(f);
        return st;
    }
    *out = f;
    return NVL_OK;
}

nvl_status nvl_safetensors_open(nvl_safetensors **out, const char *path, nvl_err *err) {
    *out = NULL;
    nvl_safetensors *f = nvl_calloc(1, sizeof *f);
    if (!f) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
    f->what = nvl_strdup(path);
    nvl_status st = f->what ? nvl_mapped_file_open(&f->map, path, err)
                            : nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
    if (st != NVL_OK) {
        nvl_safetensors_close(f);
        return st;
    }
    f->bytes = nvl_mapped_file_data(f->map);
    f->len = nvl_mapped_file_size(f->map);
    return st_open_common(f, out, err);
}

nvl_status nvl_safetensors_open_memory(nvl_safetensors **out, const uint8_t *data, size_t len,
                                       const char *what, nvl_err *err) {
    *out = NULL;
    nvl_safetensors *f = nvl_calloc(1, sizeof *f);
    if (!f) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", what);
    f->what = nvl_strdup(what ? what : "<memory>");
    if (!f->what) {
        nvl_safetensors_close(f);
        return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", what);
    }
    f->bytes = data;
    f->len = len;
    return st_open_common(f, out, err);
}

void nvl_safetensors_close(nvl_safetensors *f) {
    if (!f) return;
    for (int64_t i = 0; i < f->n; i++) nvl_free((void *)f->entries[i].name);
    nvl_free(f->entries);
    nvl_free(f->ix.slots);
    for (int i = 0; i < f->n_meta; i++) {
        nvl_free(f->meta_keys[i]);
        nvl_free(f->meta_vals[i]);
    }
    nvl_free(f->meta_keys);
    nvl_free(f->meta_vals);
    nvl_mapped_file_close(f->map);
    nvl_free(f->what);
    nvl_free(f);
}

int64_t nvl_safetensors_count(const nvl_safetensors *f) { return f->n; }
const nvl_st_entry *nvl_safetensors_entry(const nvl_safetensors *f, int64_t i) {
    return (i >= 0 && i < f->n) ? &f->entries[i] : NULL;
}
const nvl_st_entry *nvl_safetensors_find(const nvl_safetensors *f, const char *name) {
    int64_t i = index_find(&f->ix, f->entries, name);
    return i >= 0 ? &f->entries[i] : NULL;
}
const char *nvl_safetensors_metadata(const nvl_safetensors *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_vals[i];
    return NULL;
}

nvl_tensor nvl_st_entry_tensor(const nvl_st_entry *e) {
    return nvl_tensor_make(e->dtype, e->n_dims, e->shape, (void *)e->data);
}

// ---------------------------------------------------------------------------
// Checkpoints: one file or an index over shards

struct nvl_checkpoint {
    char *dir;
    nvl_safetensors **shards;
    char **shard_paths;
    int n_shards;
    nvl_st_entry *entries; /* copies of every shard's entries, shard set */
    int64_t n;
    name_index ix;
    uint64_t data_bytes;
};

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = nvl_malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t o = a;
    if (a && dir[a - 1] != '/') p[o++] = '/';
    memcpy(p + o, name, b + 1);
    return p;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return nvl_strdup(".");
    if (slash == path) return nvl_strdup("/");
    return nvl_strndup(path, (size_t)(slash - path));
}

static int is_dir(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISDIR(s.st_mode);
}
static int is_file(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISREG(s.st_mode);
}
static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* Adds a shard (opened) to ck. */
static nvl_status add_shard(nvl_checkpoint *ck, const char *path, nvl_err *err) {
    nvl_safetensors **ns = nvl_realloc(ck->shards, (size_t)(ck->n_shards + 1) * sizeof *ns);
    if (!ns) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
    ck->shards = ns;
    char **np = nvl_realloc(ck->shard_paths, (size_t)(ck->n_shards + 1) * sizeof *np);
    if (!np) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
    ck->shard_paths = np;
    ck->shards[ck->n_shards] = NULL;
    ck->shard_paths[ck->n_shards] = nvl_strdup(path);
    if (!ck->shard_paths[ck->n_shards]) return nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
    ck->n_shards++;
    return nvl_safetensors_open(&ck->shards[ck->n_shards - 1], path, err);
}

static int shard_of(const nvl_checkpoint *ck, const char *path) {
    for (int i = 0; i < ck->n_shards; i++)
        if (!strcmp(ck->shard_paths[i], path)) return i;
    return -1;
}

/* Merges every shard's entries into one table, rejecting names present in two shards. */
static nvl_status build_table(nvl_checkpoint *ck, nvl_err *err) {
    int64_t total = 0;
    for (int s = 0; s < ck->n_shards; s++) total += nvl_safetensors_count(ck->shards[s]);
    ck->entries = nvl_calloc((size_t)(total ? total : 1), sizeof *ck->entries);
    if (!ck->entries || !index_init(&ck->ix, total))
        return nvl_err_set(err, NVL_ERR_NOMEM, "checkpoint: out of memory");
    for (int s = 0; s < ck->n_shards; s++) {
        for (int64_t i = 0; i < nvl_safetensors_count(ck->shards[s]); i++) {
            nvl_st_entry e = *nvl_safetensors_entry(ck->shards[s], i);
            e.shard = s;
            ck->entries[ck->n] = e;
            int64_t dup = index_insert(&ck->ix, ck->entries, ck->n);
            if (dup >= 0)
                return nvl_err_set(err, NVL_ERR_FORMAT,
                                   "checkpoint: tensor '%s' appears in both '%s' and '%s'", e.name,
                                   ck->shard_paths[ck->entries[dup].shard], ck->shard_paths[s]);
            ck->data_bytes += e.end - e.begin;
            ck->n++;
        }
    }
    return NVL_OK;
}

static nvl_status open_index(nvl_checkpoint *ck, const char *index_path, nvl_err *err) {
    cJSON *root = NULL;
    nvl_status st = nvl_json_load_file(&root, index_path, NVL_JSON_MAX_BYTES, err);
    if (st != NVL_OK) return st;
    const cJSON *wm = nvl_json_obj(root, "weight_map");
    if (!wm) {
        st = nvl_err_set(err, NVL_ERR_FORMAT, "%s: no 'weight_map' object", index_path);
        goto done;
    }
    /* Open each distinct shard once, in order of first appearance. */
    const cJSON *it;
    cJSON_ArrayForEach(it, wm) {
        if (!cJSON_IsString(it)) {
            st = nvl_err_set(err, NVL_ERR_FORMAT, "%s: weight_map['%s'] is not a file name",
                             index_path, it->string);
            goto done;
        }
        const char *fn = it->valuestring;
        if (strchr(fn, '/') || !strcmp(fn, "..") || !fn[0]) {
            st = nvl_err_set(err, NVL_ERR_FORMAT,
                             "%s: weight_map['%s'] = '%s' is not a plain file name", index_path,
                             it->string, fn);
            goto done;
        }
        char *p = path_join(ck->dir, fn);
        if (!p) {
            st = nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
            goto done;
        }
        if (shard_of(ck, p) < 0) {
            if (!is_file(p)) {
                struct stat sb;
                const int there = stat(p, &sb) == 0, e = errno;
                st = there ? nvl_err_set(err, NVL_ERR_IO,
                                         "%s: shard '%s' named in the index (for tensor '%s') is a %s, not a regular file",
                                         index_path, fn, it->string,
                                         S_ISDIR(sb.st_mode) ? "directory" : S_ISFIFO(sb.st_mode) ? "FIFO"
                                         : S_ISCHR(sb.st_mode) ? "character device" : "special file")
                     : e == ENOENT ? nvl_err_set(err, NVL_ERR_NOT_FOUND,
                                                 "%s: shard '%s' named in the index (for tensor '%s') does not exist",
                                                 index_path, fn, it->string)
                                   : nvl_err_set(err, NVL_ERR_IO,
                                                 "%s: shard '%s' named in the index (for tensor '%s') cannot be read: %s",
                                                 index_path, fn, it->string, strerror(e));
                nvl_free(p);
                goto done;
            }
            st = add_shard(ck, p, err);
            if (st != NVL_OK) {
                nvl_free(p);
                goto done;
            }
        }
        nvl_free(p);
    }
    if (ck->n_shards == 0) {
        st = nvl_err_set(err, NVL_ERR_FORMAT, "%s: weight_map is empty", index_path);
        goto done;
    }
    if ((st = build_table(ck, err)) != NVL_OK) goto done;
    /* Every index entry must be found in the shard it names. */
    cJSON_ArrayForEach(it, wm) {
        const nvl_st_entry *e = nvl_checkpoint_find(ck, it->string);
        char *p = path_join(ck->dir, it->valuestring);
        if (!p) {
            st = nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
            goto done;
        }
        int want = shard_of(ck, p);
        nvl_free(p);
        if (!e) {
            st = nvl_err_set(err, NVL_ERR_NOT_FOUND,
                             "%s: tensor '%s' is listed for shard '%s' but is not in it",
                             index_path, it->string, it->valuestring);
            goto done;
        }
        if (e->shard != want) {
            st = nvl_err_set(err, NVL_ERR_FORMAT,
                             "%s: tensor '%s' is listed for shard '%s' but found in '%s'",
                             index_path, it->string, it->valuestring, ck->shard_paths[e->shard]);
            goto done;
        }
    }
    st = NVL_OK;
done:
    cJSON_Delete(root);
    return st;
}

nvl_status nvl_checkpoint_open(nvl_checkpoint **out, const char *path, nvl_err *err) {
    *out = NULL;
    nvl_checkpoint *ck = nvl_calloc(1, sizeof *ck);
    if (!ck) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
    nvl_status st = NVL_OK;
    char *tmp = NULL;
    if (is_dir(path)) {
        ck->dir = nvl_strdup(path);
        if (!ck->dir) { st = nvl_err_set(err, NVL_ERR_NOMEM, "out of memory"); goto fail; }
        tmp = path_join(path, "model.safetensors.index.json");
        if (!tmp) { st = nvl_err_set(err, NVL_ERR_NOMEM, "out of memory"); goto fail; }
        if (is_file(tmp)) {
            st = open_index(ck, tmp, err);
            goto done;
        }
        nvl_freep(&tmp);
        tmp = path_join(path, "model.safetensors");
        if (!tmp) { st = nvl_err_set(err, NVL_ERR_NOMEM, "out of memory"); goto fail; }
        if (is_file(tmp)) {
            st = add_shard(ck, tmp, err);
            if (st == NVL_OK) st = build_table(ck, err);
            goto done;
        }
        nvl_freep(&tmp);
        /* exactly one *.safetensors file, or one *.safetensors.index.json */
        DIR *d = opendir(path);
        if (!d) {
            st = nvl_err_set(err, NVL_ERR_IO, "%s: cannot list directory", path);
            goto fail;
        }
        char *found = NULL, *found_index = NULL;
        int n_found = 0, oom = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (ends_with(de->d_name, ".safetensors")) {
                n_found++;
                if (!found && !(found = nvl_strdup(de->d_name))) oom = 1;
            } else if (ends_with(de->d_name, ".safetensors.index.json") && !found_index) {
                if (!(found_index = nvl_strdup(de->d_name))) oom = 1;
            }
        }
        closedir(d);
        if (oom) {
            st = nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
        } else if (found_index) {
            tmp = path_join(path, found_index);
            st = tmp ? open_index(ck, tmp, err) : nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
        } else if (n_found == 1) {
            tmp = path_join(path, found);
            st = tmp ? add_shard(ck, tmp, err) : nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
            if (st == NVL_OK) st = build_table(ck, err);
        } else if (n_found == 0) {
            st = nvl_err_set(err, NVL_ERR_NOT_FOUND, "%s: no *.safetensors file in the directory",
                             path);
        } else {
            st = nvl_err_set(err, NVL_ERR_FORMAT,
                             "%s: %d *.safetensors files but no model.safetensors.index.json to "
                             "say how they go together",
                             path, n_found);
        }
        nvl_free(found);
        nvl_free(found_index);
        goto done;
    }
    ck->dir = dir_of(path);
    if (!ck->dir) { st = nvl_err_set(err, NVL_ERR_NOMEM, "out of memory"); goto fail; }
    if (ends_with(path, ".json")) {
        st = open_index(ck, path, err);
    } else {
        st = add_shard(ck, path, err);
        if (st == NVL_OK) st = build_table(ck, err);
    }
done:
    nvl_free(tmp);
    if (st != NVL_OK) goto fail;
    *out = ck;
    return NVL_OK;
fail:
    nvl_checkpoint_close(ck);
    return st;
}

void nvl_checkpoint_close(nvl_checkpoint *ck) {
    if (!ck) return;
    for (int i = 0; i < ck->n_shards; i++) {
        nvl_safetensors_close(ck->shards[i]);
        nvl_free(ck->shard_paths[i]);
    }
    nvl_free(ck->shards);
    nvl_free(ck->shard_paths);
    nvl_free(ck->entries);
    nvl_free(ck->ix.slots);
    nvl_free(ck->dir);
    nvl_free(ck);
}

int64_t nvl_checkpoint_count(const nvl_checkpoint *ck) { return ck->n; }
const nvl_st_entry *nvl_checkpoint_entry(const nvl_checkpoint *ck, int64_t i) {
    return (i >= 0 && i < ck->n) ? &ck->entries[i] : NULL;
}
const nvl_st_entry *nvl_checkpoint_find(const nvl_checkpoint *ck, const char *name) {
    int64_t i = index_find(&ck->ix, ck->entries, name);
    return i >= 0 ? &ck->entries[i] : NULL;
}
int nvl_checkpoint_n_shards(const nvl_checkpoint *ck) { return ck->n_shards; }
const char *nvl_checkpoint_shard_path(const nvl_checkpoint *ck, int shard) {
    return (shard >= 0 && shard < ck->n_shards) ? ck->shard_paths[shard] : NULL;
}
const char *nvl_checkpoint_dir(const nvl_checkpoint *ck) { return ck->dir; }
uint64_t nvl_checkpoint_data_bytes(const nvl_checkpoint *ck) { return ck->data_bytes; }

nvl_status nvl_checkpoint_get(const nvl_checkpoint *ck, const char *name, nvl_tensor *out,
                              nvl_err *err) {
    const nvl_st_entry *e = nvl_checkpoint_find(ck, name);
    if (!e) return nvl_err_set(err, NVL_ERR_NOT_FOUND, "checkpoint %s: missing tensor '%s'", ck->dir, name);
    *out = nvl_st_entry_tensor(e);
    return NVL_OK;
}

nvl_status nvl_checkpoint_bind(const nvl_checkpoint *ck, const char *what, const char *name, int n_dims,
                               const int64_t *shape, unsigned flags, nvl_tensor *out, nvl_err *err) {
    memset(out, 0, sizeof *out);
    const nvl_st_entry *e = nvl_checkpoint_find(ck, name);
    if (!e) {
        if (flags & NVL_BIND_OPTIONAL) return NVL_OK;
        return nvl_err_set(err, NVL_ERR_NOT_FOUND, "missing %s tensor '%s'", what, name);
    }
    nvl_tensor t = nvl_st_entry_tensor(e);
    if (flags & NVL_BIND_FLOAT) {
        if (t.dtype != NVL_DTYPE_F32 && t.dtype != NVL_DTYPE_BF16 && t.dtype != NVL_DTYPE_F16)
            return nvl_err_set(err, NVL_ERR_DTYPE, "%s tensor '%s' has dtype %s, expected F32, BF16 or F16", what, name,
                               nvl_dtype_name(t.dtype));
    }
    if (n_dims >= 0) {
        int ok = t.n_dims == n_dims;
        for (int d = 0; ok && d < n_dims; d++) ok = shape[d] < 0 || t.shape[d] == shape[d];
        if (!ok) {
            char got[128], want[128];
            int64_t w[NVL_MAX_DIMS];
            for (int d = 0; d < n_dims && d < NVL_MAX_DIMS; d++) w[d] = shape[d] < 0 ? t.shape[d] : shape[d];
            nvl_shape_str(got, sizeof got, t.n_dims, t.shape);
            nvl_shape_str(want, sizeof want, n_dims, w);
            return nvl_err_set(err, NVL_ERR_SHAPE, "%s tensor '%s' has shape %s, expected %s", what, name, got, want);
        }
    }
    *out = t;
    return NVL_OK;
}
