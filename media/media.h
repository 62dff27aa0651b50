/* media/: bytes in, RGB frames out. Nothing beyond this module sees a file format.
 *
 *   enum media_kind k = media_sniff(buf, len);        // from the bytes, never the file name
 *   if (!media_supports(k)) ... NVL_ERR_UNSUPPORTED ...
 *
 * Decoders (PDF, JPEG, PNG, video) are added by the media work; each optional library can be
 * compiled out, and media_supports() tells at run time what this build can decode.
 */
#ifndef MEDIA_MEDIA_H
#define MEDIA_MEDIA_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum media_kind {
    MEDIA_KIND_UNKNOWN = 0,
    MEDIA_KIND_JPEG,
    MEDIA_KIND_PNG,
    MEDIA_KIND_PDF,
    MEDIA_KIND_GIF,
    MEDIA_KIND_WEBP,
    MEDIA_KIND_BMP,
    MEDIA_KIND_TIFF,
    MEDIA_KIND_VIDEO, /* a container FFmpeg opens: MP4/MOV, Matroska/WebM, AVI, MPEG-TS, ... */
};

/* Format from the first bytes (at least 16 should be given when the file has them). */
enum media_kind media_sniff(const uint8_t *buf, size_t len);
const char *media_kind_name(enum media_kind k); /* "jpeg", "png", "pdf", ... "unknown" */
/* Whether this build can decode k (its library was found at configure time). */
int media_supports(enum media_kind k);

#ifdef __cplusplus
}
#endif

#endif // MEDIA_MEDIA_H
