/* Internal header: included only by media/ sources. Per-format decoders behind the dispatch. */
#ifndef MEDIA_MEDIA_IMPL_H
#define MEDIA_MEDIA_IMPL_H

#include "media.h"

nvl_status media_check_pixels(const char *name, int64_t w, int64_t h, const media_limits *lim, nvl_err *err);
nvl_status media_decode_jpeg(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                             media_image **out, nvl_err *err);
nvl_status media_decode_png(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                            media_image **out, nvl_err *err);
/* A still through FFmpeg; opaque: the samples' 4th byte is not alpha (a 32-bit BI_RGB BMP:
 * Pillow and Windows ignore it, FFmpeg reads it as alpha). */
nvl_status media_decode_ffmpeg_still(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                                     int opaque, media_image **out, nvl_err *err);
/* Orientation (1..8) of the EXIF/TIFF tag 274 in a TIFF structure (optionally "Exif\0\0"-prefixed);
 * 1 when absent or unreadable. */
int media_tiff_orientation(const uint8_t *tiff, size_t n);
/* The SHORT or LONG value of tag in a TIFF's (or EXIF block's) first IFD, -1 if absent or unreadable. */
long media_tiff_ifd0_value(const uint8_t *tiff, size_t n, unsigned tag);
/* Orientation the file of kind k declares (JPEG APP1, PNG eXIf, WebP EXIF, TIFF IFD0); 1 if none. */
int media_file_orientation(enum media_kind k, const uint8_t *buf, size_t len);
/* Applies orientation o (2..8, as Pillow's exif_transpose) to *img, replacing it; 1 is a no-op. */
nvl_status media_orient(media_image **img, int o, nvl_err *err);

/* AVIF still (one coded item; grid and alpha refused) through FFmpeg. */
nvl_status media_decode_avif(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                             media_image **out, nvl_err *err);
int media_ffmpeg_decodes_av1(void); /* 1 when FFmpeg has an AV1 decoder */

/* Opens path for reading only when it is a regular file (a FIFO, socket, device or directory is
 * refused before it is opened, so nothing blocks) within lim->max_file_bytes (checked before any
 * byte is read). *fd_out is blocking again; close it. *size: the size at open (may be NULL). */
nvl_status media_open_regular(const char *path, const media_limits *lim, int *fd_out, size_t *size, nvl_err *err);

#endif // MEDIA_MEDIA_IMPL_H
