/* Intermediate tensors on request: with NANOVL_DUMP_DIR set, named tensors are written as raw
 * little-endian files <dir>/<name>.bin plus <dir>/index.json listing name, dtype and shape, so
 * a run can be diffed against a reference (numpy.fromfile(...).reshape(shape)).
 *
 *   nvl_dump("vit_features", NVL_DTYPE_F32, 3, (int64_t[]){n, 1024, 1280}, feats);
 *
 * Not thread-safe: call from one thread. Failures to write are logged, never fatal. */
#ifndef KERNELS_BASE_DUMP_H
#define KERNELS_BASE_DUMP_H

#include <stdint.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Directory from NANOVL_DUMP_DIR (or nvl_dump_set_dir), NULL when dumping is off. */
const char *nvl_dump_dir(void);
void nvl_dump_set_dir(const char *dir); /* NULL: back to the environment */
/* Files (tensors, the index) that could not be written since the directory was last set. */
int nvl_dump_failures(void);
void nvl_dump(const char *name, nvl_dtype dtype, int n_dims, const int64_t *shape, const void *data);

#ifdef __cplusplus
}
#endif

#endif // KERNELS_BASE_DUMP_H
