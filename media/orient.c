/* Orientation as the file defines it, applied as Pillow's ImageOps.exif_transpose does:
 * the EXIF/TIFF Orientation tag (274, 0x0112) of IFD0, found in
 *   JPEG: APP1 "Exif\0\0" segment;  PNG: eXIf chunk;  WebP: RIFF "EXIF" chunk;
 *   TIFF: the file's own first IFD.
 * Where the EXIF has no Orientation, XMP's tiff:Orientation is read (JPEG APP1 XMP, PNG iTXt
 * "XML:com.adobe.xmp", WebP "XMP " chunk), as Pillow's getexif() does.
 * Values 2..8 are applied (2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise,
 * 7 transverse, 8 rotate 90 counter-clockwise); 1, absent or unreadable leaves the image as is.
 * Every read is bounds-checked: metadata is untrusted input. */
#include <string.h>

#include "media_impl.h"

static uint32_t rd16(const uint8_t *q, int le) {
    return le ? (uint32_t)(q[0] | (q[1] << 8)) : (uint32_t)((q[0] << 8) | q[1]);
}
static uint32_t rd32(const uint8_t *q, int le) {
    return le ? ((uint32_t)q[0] | ((uint32_t)q[1] << 8) | ((uint32_t)q[2] << 16) | ((uint32_t)q[3] << 24))
              : (((uint32_t)q[0] << 24) | ((uint32_t)q[1] << 16) | ((uint32_t)q[2] << 8) | (uint32_t)q[3]);
}

long media_tiff_ifd0_value(const uint8_t *t, size_t n, unsigned tag) {
    if (n >= 6 && !memcmp(t, "Exif\0\0", 6)) t += 6, n -= 6; /* some writers keep the APP1 prefix */
    if (n < 8) return -1;
    const int le = t[0] == 'I' && t[1] == 'I';
    if (!le && !(t[0] == 'M' && t[1] == 'M')) return -1;
    if (rd16(t + 2, le) != 42) return -1; /* classic TIFF only (BigTIFF: 43) */
    const uint32_t ifd = rd32(t + 4, le);
    if (ifd < 8 || (size_t)ifd + 2 > n) return -1;
    const uint32_t cnt = rd16(t + ifd, le);
    for (uint32_t e = 0; e < cnt; e++) {
        const size_t off = (size_t)ifd + 2 + (size_t)e * 12;
        if (off + 12 > n) return -1;
        if (rd16(t + off, le) != tag) continue;
        const uint32_t type = rd16(t + off + 2, le);
        return type == 3 ? (long)rd16(t + off + 8, le) : type == 4 ? (long)rd32(t + off + 8, le) : -1; /* SHORT or LONG */
    }
    return -1;
}

int media_tiff_orientation(const uint8_t *t, size_t n) {
    const long v = media_tiff_ifd0_value(t, n, 0x0112);
    return v >= 1 && v <= 8 ? (int)v : 1;
}

/* Orientation in XMP, as Pillow's getexif() reads it where the EXIF has none: the first
 * `tiff:Orientation="D` or `tiff:Orientation>D` (one digit); -1 if there is none. */
static long xmp_orientation(const uint8_t *x, size_t n) {
    static const char key[] = "tiff:Orientation";
    const size_t k = sizeof key - 1;
    for (size_t i = 0; i + k < n; i++) {
        if (x[i] != 't' || memcmp(x + i, key, k)) continue;
        const uint8_t *p = x + i + k;
        const size_t left = n - i - k;
        if (left >= 3 && p[0] == '=' && p[1] == '"' && p[2] >= '0' && p[2] <= '9') return p[2] - '0';
        if (left >= 2 && p[0] == '>' && p[1] >= '0' && p[1] <= '9') return p[1] - '0';
    }
    return -1;
}

/* The EXIF's Orientation when it has one (-1: none), else the XMP's (Pillow's getexif order) */
static int pick_orientation(long exif, long xmp) {
    const long v = exif >= 0 ? exif : xmp;
    return v >= 1 && v <= 8 ? (int)v : 1;
}

static int jpeg_orientation(const uint8_t *b, size_t n) {
    static const char xmp_id[] = "http://ns.adobe.com/xap/1.0/"; /* (and its NUL) */
    size_t i = 2;
    long exif = -1, xmp = -1;
    int seen_exif = 0;
    while (i + 4 <= n && b[i] == 0xFF) {
        const uint8_t m = b[i + 1];
        if (m == 0xDA || m == 0xD9) break; /* start of scan: no more metadata */
        const size_t seg = ((size_t)b[i + 2] << 8) | b[i + 3];
        if (seg < 2 || i + 2 + seg > n) break;
        if (m == 0xE1 && !seen_exif && seg - 2 >= 14 && !memcmp(b + i + 4, "Exif\0\0", 6)) { /* the first one */
            exif = media_tiff_ifd0_value(b + i + 10, seg - 8, 0x0112);
            seen_exif = 1;
        } else if (m == 0xE1 && xmp < 0 && seg - 2 >= sizeof xmp_id && !memcmp(b + i + 4, xmp_id, sizeof xmp_id)) {
            xmp = xmp_orientation(b + i + 4 + sizeof xmp_id, seg - 2 - sizeof xmp_id);
        }
        i += 2 + seg;
    }
    return pick_orientation(exif, xmp);
}

static int png_orientation(const uint8_t *b, size_t n) {
    static const char xmp_key[] = "XML:com.adobe.xmp"; /* an iTXt keyword (and its NUL) */
    size_t i = 8;
    long exif = -1, xmp = -1;
    while (i + 12 <= n) {
        const size_t len = rd32(b + i, 0);
        if (len > n - i - 12) break;
        const uint8_t *d = b + i + 8;
        if (!memcmp(b + i + 4, "eXIf", 4) && exif < 0) exif = media_tiff_ifd0_value(d, len, 0x0112);
        /* iTXt: keyword NUL, compression flag (0: the text as is), method, language NUL, translated NUL, text */
        if (!memcmp(b + i + 4, "iTXt", 4) && xmp < 0 && len > sizeof xmp_key + 2 && !memcmp(d, xmp_key, sizeof xmp_key) &&
            d[sizeof xmp_key] == 0) {
            size_t p = sizeof xmp_key + 2;
            for (int z = 0; z < 2 && p < len; z++) p += strnlen((const char *)d + p, len - p) + 1;
            if (p <= len) xmp = xmp_orientation(d + p, len - p);
        }
        if (!memcmp(b + i + 4, "IEND", 4)) break;
        i += 12 + len;
    }
    return pick_orientation(exif, xmp);
}

static int webp_orientation(const uint8_t *b, size_t n) {
    size_t i = 12;
    long exif = -1, xmp = -1;
    while (i + 8 <= n) {
        const size_t len = rd32(b + i + 4, 1);
        if (len > n - i - 8) break;
        if (!memcmp(b + i, "EXIF", 4) && exif < 0) exif = media_tiff_ifd0_value(b + i + 8, len, 0x0112);
        if (!memcmp(b + i, "XMP ", 4) && xmp < 0) xmp = xmp_orientation(b + i + 8, len);
        i += 8 + len + (len & 1);
    }
    return pick_orientation(exif, xmp);
}

int media_file_orientation(enum media_kind k, const uint8_t *buf, size_t len) {
    switch (k) {
    case MEDIA_KIND_JPEG: return jpeg_orientation(buf, len);
    case MEDIA_KIND_PNG: return png_orientation(buf, len);
    case MEDIA_KIND_WEBP: return webp_orientation(buf, len);
    case MEDIA_KIND_TIFF: return media_tiff_orientation(buf, len);
    default: return 1;
    }
}

nvl_status media_orient(media_image **img, int o, nvl_err *err) {
    if (o < 2 || o > 8) return NVL_OK;
    media_image *s = *img, *d = NULL;
    const int W = s->width, H = s->height, swap = o >= 5;
    nvl_status st = media_image_new(&d, swap ? H : W, swap ? W : H, err);
    if (st != NVL_OK) return st;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int dx, dy;
            switch (o) {
            case 2: dx = W - 1 - x, dy = y; break;
            case 3: dx = W - 1 - x, dy = H - 1 - y; break;
            case 4: dx = x, dy = H - 1 - y; break;
            case 5: dx = y, dy = x; break;
            case 6: dx = H - 1 - y, dy = x; break;
            case 7: dx = H - 1 - y, dy = W - 1 - x; break;
            default: dx = y, dy = W - 1 - x; break; /* 8 */
            }
            memcpy(d->rgb + (size_t)dy * d->stride + (size_t)dx * 3, s->rgb + (size_t)y * s->stride + (size_t)x * 3, 3);
        }
    d->timestamp = s->timestamp;
    d->index = s->index;
    d->orientation = o;
    media_image_free(s);
    *img = d;
    return NVL_OK;
}
