/* Internal header: included only by media/ sources. Per-format decoders behind the dispatch. */
#ifndef MEDIA_MEDIA_IMPL_H
#define MEDIA_MEDIA_IMPL_H

#include "media.h"

nvl_status media_check_pixels(const char *name, int64_t w, int64_t h, const media_limits *lim, nvl_err *err);
nvl_status media_decode_jpeg(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                             media_image **out, nvl_err *err);
nvl_status media_decode_png(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                            media_image **out, nvl_err *err);
nvl_status media_decode_ffmpeg_still(const uint8_t *buf, size_t len, const char *name,
                                     const media_limits *lim, media_image **out, nvl_err *err);

/* Opens path for reading only when it is a regular file (a FIFO, socket, device or directory is
 * refused before it is opened, so nothing blocks) within lim->max_file_bytes (checked before any
 * byte is read). *fd_out is blocking again; close it. *size: the size at open (may be NULL). */
nvl_status media_open_regular(const char *path, const media_limits *lim, int *fd_out, size_t *size, nvl_err *err);

#endif // MEDIA_MEDIA_IMPL_H
