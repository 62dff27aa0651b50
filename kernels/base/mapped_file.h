/* Read-only mapped files: checkpoints are mmapped and tensors point into the mapping
 * (zero-copy, pages shared between processes and loaded on demand).
 *
 *   nvl_mapped_file *f = NULL;
 *   if (nvl_mapped_file_open(&f, path, &err) != NVL_OK) ...;
 *   const uint8_t *p = nvl_mapped_file_data(f); size_t n = nvl_mapped_file_size(f);
 *   nvl_mapped_file_close(f);
 *
 * Regular files only: a FIFO, a device (/dev/zero) or a socket is refused, neither waited on nor
 * read without end. When mmap fails the file's st_size bytes are read into memory instead.
 * A zero-length file opens with data() == NULL and size() == 0.
 */
#ifndef KERNELS_BASE_MAPPED_FILE_H
#define KERNELS_BASE_MAPPED_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nvl_mapped_file nvl_mapped_file;

/* @return NVL_OK; NVL_ERR_NOT_FOUND when path does not exist; NVL_ERR_IO otherwise (a directory,
 * FIFO, device or socket: "'PATH' is a KIND, expected a regular file"). */
nvl_status nvl_mapped_file_open(nvl_mapped_file **out, const char *path, nvl_err *err);
void nvl_mapped_file_close(nvl_mapped_file *f); /* NULL-tolerant */
/* Valid until nvl_mapped_file_close(). Do not free. */
const uint8_t *nvl_mapped_file_data(const nvl_mapped_file *f);
size_t nvl_mapped_file_size(const nvl_mapped_file *f);
const char *nvl_mapped_file_path(const nvl_mapped_file *f);

/* Reads a whole (small) file into a NUL-terminated nvl_malloc'ed buffer; *len gets the size
 * without the NUL. Refuses files above max_bytes with NVL_ERR_LIMIT. Free with nvl_free(). */
nvl_status nvl_read_file(const char *path, size_t max_bytes, char **out, size_t *len, nvl_err *err);

#ifdef __cplusplus
}
#endif

#endif // KERNELS_BASE_MAPPED_FILE_H
