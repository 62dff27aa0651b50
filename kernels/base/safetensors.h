/* Safetensors files and Hugging Face checkpoints (single file or sharded with
 * model.safetensors.index.json), read as published: mmapped, validated, zero-copy.
 *
 *   nvl_checkpoint *ck = NULL;
 *   if (nvl_checkpoint_open(&ck, "NVIDIA-Nemotron-Nano-12B-v2-VL-BF16/", &err)) ...;
 *   nvl_tensor w;
 *   st = nvl_checkpoint_get(ck, "language_model.lm_head.weight", &w, &err); // view into the map
 *   nvl_checkpoint_close(ck);   // every view dies here
 *
 * Validation before any offset is trusted (architecture rule 32): the header length fits the
 * file and a cap, the header is a JSON object, every entry has a known dtype, a shape of
 * non-negative extents and data_offsets [BEGIN, END) with END - BEGIN == numel * dtype size,
 * inside the data section, no two ranges overlap, no name appears twice (also across shards),
 * and every shard the index names exists and holds the tensors the index assigns to it.
 */
#ifndef KERNELS_BASE_SAFETENSORS_H
#define KERNELS_BASE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NVL_ST_MAX_HEADER_BYTES ((uint64_t)100 << 20) /* 100 MB: far above any real header (~100 KB for 12B) */

typedef struct nvl_st_entry {
    const char *name;   /* owned by the file object */
    nvl_dtype dtype;
    int n_dims;
    int64_t shape[NVL_MAX_DIMS];
    uint64_t begin, end; /* byte range relative to the data section */
    const uint8_t *data; /* begin's address inside the mapping */
    int shard;           /* index of the file in its checkpoint (0 for a single file) */
} nvl_st_entry;

typedef struct nvl_safetensors nvl_safetensors;

/* Opens and validates one .safetensors file. @return NVL_OK; NVL_ERR_NOT_FOUND / NVL_ERR_IO for
 * the file; NVL_ERR_TRUNCATED when shorter than its header says; NVL_ERR_FORMAT for a bad
 * header; NVL_ERR_LIMIT for a header above the cap; NVL_ERR_UNSUPPORTED for an unknown dtype. */
nvl_status nvl_safetensors_open(nvl_safetensors **out, const char *path, nvl_err *err);
/* Same over a caller-owned buffer (kept, not copied; must outlive the object). what names it. */
nvl_status nvl_safetensors_open_memory(nvl_safetensors **out, const uint8_t *data, size_t len,
                                       const char *what, nvl_err *err);
void nvl_safetensors_close(nvl_safetensors *f);
int64_t nvl_safetensors_count(const nvl_safetensors *f);
/* Entries in header order. Valid until close. */
const nvl_st_entry *nvl_safetensors_entry(const nvl_safetensors *f, int64_t i);
const nvl_st_entry *nvl_safetensors_find(const nvl_safetensors *f, const char *name);
/* __metadata__ string value or NULL. */
const char *nvl_safetensors_metadata(const nvl_safetensors *f, const char *key);

typedef struct nvl_checkpoint nvl_checkpoint;

/* path: a directory (uses model.safetensors.index.json if present, else model.safetensors, else
 * the single *.safetensors file in it), a .safetensors file, or an index .json file. */
nvl_status nvl_checkpoint_open(nvl_checkpoint **out, const char *path, nvl_err *err);
void nvl_checkpoint_close(nvl_checkpoint *ck);
int64_t nvl_checkpoint_count(const nvl_checkpoint *ck);
const nvl_st_entry *nvl_checkpoint_entry(const nvl_checkpoint *ck, int64_t i);
const nvl_st_entry *nvl_checkpoint_find(const nvl_checkpoint *ck, const char *name);
int nvl_checkpoint_n_shards(const nvl_checkpoint *ck);
const char *nvl_checkpoint_shard_path(const nvl_checkpoint *ck, int shard);
/* Directory holding the checkpoint (config.json, tokenizer.json live there). */
const char *nvl_checkpoint_dir(const nvl_checkpoint *ck);
/* Total bytes of tensor data. */
uint64_t nvl_checkpoint_data_bytes(const nvl_checkpoint *ck);
/* Fills *out with a host view of the named tensor. NVL_ERR_NOT_FOUND names the tensor. */
nvl_status nvl_checkpoint_get(const nvl_checkpoint *ck, const char *name, nvl_tensor *out,
                              nvl_err *err);
/* View of an entry as a tensor. */
nvl_tensor nvl_st_entry_tensor(const nvl_st_entry *e);

/* The one binding idiom of the model parts (LM, ViT, projector): the tensor `name` as a view
 * into the mapping, checked against n_dims and shape (an extent < 0 matches any; n_dims < 0
 * checks nothing). Flags: NVL_BIND_OPTIONAL (absent -> NVL_OK with out->data NULL),
 * NVL_BIND_FLOAT (dtype must be F32, BF16 or F16). Errors name `what` and the tensor:
 * NVL_ERR_NOT_FOUND, NVL_ERR_SHAPE ("has shape [..], expected [..]"), NVL_ERR_DTYPE. */
enum { NVL_BIND_OPTIONAL = 1u, NVL_BIND_FLOAT = 2u };
nvl_status nvl_checkpoint_bind(const nvl_checkpoint *ck, const char *what, const char *name, int n_dims,
                               const int64_t *shape, unsigned flags, nvl_tensor *out, nvl_err *err);

#ifdef __cplusplus
}
#endif

#endif // KERNELS_BASE_SAFETENSORS_H
