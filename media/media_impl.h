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
/* AVIF still (one coded item; grid and alpha refused) through FFmpeg. */
nvl_status media_decode_avif(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                             media_image **out, nvl_err *err);
int media_ffmpeg_decodes_av1(void); /* 1 when FFmpeg has an AV1 decoder */

#endif // MEDIA_MEDIA_IMPL_H
