/* Orientation as the file defines it, applied as Pillow's ImageOps.exif_transpose does:
 * the EXIF/TIFF Orientation tag (274, 0x0112) of IFD0, found in
 *   JPEG: APP1 "Exif\0\0" segment;  PNG: eXIf chunk, else a "Raw profile type exif" text chunk
 *   (ImageMagick's and exiftool's older form, as Pillow reads it);  WebP: RIFF "EXIF" chunk;
 *   TIFF: the file's own first IFD.
 * Where the EXIF has no Orientation, XMP's tiff:Orientation is read (JPEG APP1 XMP, PNG iTXt
 * "XML:com.adobe.xmp", WebP "XMP " chunk), as Pillow's getexif() does.
 * Values 2..8 are applied (2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise,
 * 7 transverse, 8 rotate 90 counter-clockwise); 1, absent or unreadable leaves the image as is.
 * Every read is bounds-checked: metadata is untrusted input. */
#include <stdint.h>
#include <string.h>

#ifdef NVL_HAVE_ZLIB
#include <zlib.h>
#endif

#include "base/alloc.h"
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

#define RAW_EXIF_MAX (64u << 10) /* bytes of a raw profile's EXIF read: IFD0 comes first */

/* The Orientation in ImageMagick's and exiftool's PNG text form of EXIF (before the eXIf chunk),
 * "Raw profile type exif": "\nexif\n<length>\n" then hex digits over lines. Pillow's getexif()
 * reads it where there is no eXIf chunk: bytes.fromhex of the lines after the third (whitespace
 * between bytes allowed, anything else is no EXIF). -1 when there is none. */
static long raw_profile_orientation(const uint8_t *t, size_t n) {
    size_t i = 0;
    for (int nl = 0; nl < 3 && i < n; i++) nl += t[i] == '\n';
    uint8_t *exif = nvl_malloc(RAW_EXIF_MAX);
    if (!exif) return -1;
    size_t m = 0;
    int bad = 0;
    for (int hi = -1; i < n && m < RAW_EXIF_MAX && !bad; i++) {
        const uint8_t c = t[i];
        const int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (v < 0) {
            bad = hi >= 0 || !(c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f');
            continue;
        }
        if (hi < 0) hi = v;
        else {
            exif[m++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    const long o = bad ? -1 : media_tiff_ifd0_value(exif, m, 0x0112);
    nvl_free(exif);
    return o;
}

/* The text of a zTXt or compressed iTXt (zlib), its first cap bytes at most, into out; its length
 * or 0 (damaged, or no zlib in this build). */
static size_t png_inflate(const uint8_t *z, size_t n, uint8_t *out, size_t cap) {
#ifdef NVL_HAVE_ZLIB
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK) return 0;
    zs.next_in = (Bytef *)(uintptr_t)z;
    zs.avail_in = n > UINT32_MAX ? UINT32_MAX : (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    const int r = inflate(&zs, Z_SYNC_FLUSH);
    const size_t got = r == Z_OK || r == Z_STREAM_END || r == Z_BUF_ERROR ? cap - zs.avail_out : 0;
    inflateEnd(&zs);
    return got;
#else
    (void)z, (void)n, (void)out, (void)cap;
    return 0;
#endif
}

/* A tEXt / zTXt / iTXt chunk keyed "Raw profile type exif": its orientation (-1: none), else -2
 * when the chunk is another. */
static long png_text_raw_exif(const uint8_t *type, const uint8_t *d, size_t len) {
    static const char key[] = "Raw profile type exif"; /* (and its NUL) */
    const int text = !memcmp(type, "tEXt", 4), ztxt = !memcmp(type, "zTXt", 4), itxt = !memcmp(type, "iTXt", 4);
    if (!(text || ztxt || itxt) || len < sizeof key || memcmp(d, key, sizeof key)) return -2;
    size_t p = sizeof key;
    int compressed = ztxt;
    if (ztxt) p++; /* the method byte (0: zlib) */
    if (itxt) { /* compression flag, method, language NUL, translated keyword NUL */
        if (p + 2 > len) return -1;
        compressed = d[p] != 0;
        p += 2;
        for (int z = 0; z < 2 && p < len; z++) p += strnlen((const char *)d + p, len - p) + 1;
    }
    if (p > len) return -1;
    if (!compressed) return raw_profile_orientation(d + p, len - p);
    const size_t cap = 2 * RAW_EXIF_MAX + 64; /* (the hex of RAW_EXIF_MAX bytes and the header) */
    uint8_t *txt = nvl_malloc(cap);
    if (!txt) return -1;
    const size_t m = png_inflate(d + p, len - p, txt, cap);
    const long o = m ? raw_profile_orientation(txt, m) : -1;
    nvl_free(txt);
    return o;
}

static int png_orientation(const uint8_t *b, size_t n) {
    static const char xmp_key[] = "XML:com.adobe.xmp"; /* an iTXt keyword (and its NUL) */
    size_t i = 8;
    long exif = -1, xmp = -1, raw = -1;
    int seen_exif = 0;
    while (i + 12 <= n) {
        const size_t len = rd32(b + i, 0);
        if (len > n - i - 12) break;
        const uint8_t *d = b + i + 8;
        if (!memcmp(b + i + 4, "eXIf", 4) && !seen_exif) {
            exif = media_tiff_ifd0_value(d, len, 0x0112);
            seen_exif = 1;
        }
        const long r = png_text_raw_exif(b + i + 4, d, len);
        if (r != -2) raw = r; /* (Pillow's info: the last chunk of a keyword wins) */
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
    return pick_orientation(seen_exif ? exif : raw, xmp);
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
