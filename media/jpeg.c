/* JPEG through libjpeg-turbo's TurboJPEG API: RGB out (gray, CMYK/YCCK converted), EXIF
 * orientation applied, 12-bit refused, damaged data translated into nvl errors. A stream that
 * libjpeg-turbo can only decode with a warning (premature end of data) is accepted: the part
 * that was present is kept and the rest is what the decoder fills in, with a logged warning. */
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "media_impl.h"

#ifdef NVL_HAVE_JPEG
#include <turbojpeg.h>

/* EXIF orientation (tag 0x0112) from an APP1 "Exif" segment; 1 when absent or unreadable. */
static int exif_orientation(const uint8_t *b, size_t n) {
    size_t i = 2;
    while (i + 4 <= n && b[i] == 0xFF) {
        uint8_t m = b[i + 1];
        if (m == 0xDA || m == 0xD9) break; /* start of scan: no more metadata */
        size_t seg = ((size_t)b[i + 2] << 8) | b[i + 3];
        if (seg < 2 || i + 2 + seg > n) break;
        const uint8_t *p = b + i + 4;
        size_t pl = seg - 2;
        if (m == 0xE1 && pl >= 14 && !memcmp(p, "Exif\0\0", 6)) {
            const uint8_t *t = p + 6;
            size_t tl = pl - 6;
            int le = t[0] == 'I' && t[1] == 'I';
            if (!le && !(t[0] == 'M' && t[1] == 'M')) return 1;
#define RD16(q) (le ? (uint32_t)((q)[0] | ((q)[1] << 8)) : (uint32_t)(((q)[0] << 8) | (q)[1]))
#define RD32(q) (le ? ((uint32_t)(q)[0] | ((uint32_t)(q)[1] << 8) | ((uint32_t)(q)[2] << 16) | ((uint32_t)(q)[3] << 24)) \
                    : (((uint32_t)(q)[0] << 24) | ((uint32_t)(q)[1] << 16) | ((uint32_t)(q)[2] << 8) | (uint32_t)(q)[3]))
            uint32_t ifd = RD32(t + 4);
            if (ifd + 2 > tl) return 1;
            uint32_t cnt = RD16(t + ifd);
            for (uint32_t e = 0; e < cnt; e++) {
                size_t off = ifd + 2 + (size_t)e * 12;
                if (off + 12 > tl) return 1;
                if (RD16(t + off) == 0x0112) {
                    uint32_t v = RD16(t + off + 8);
                    return (v >= 1 && v <= 8) ? (int)v : 1;
                }
            }
#undef RD16
#undef RD32
            return 1;
        }
        i += 2 + seg;
    }
    return 1;
}

/* Applies EXIF orientation o (2..8) to img, replacing its pixels. */
static nvl_status orient(media_image **img, int o, nvl_err *err) {
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
    media_image_free(s);
    *img = d;
    return NVL_OK;
}

nvl_status media_decode_jpeg(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                             media_image **out, nvl_err *err) {
    *out = NULL;
    tjhandle h = tjInitDecompress();
    if (!h) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: cannot start the JPEG decoder", name);
    int w = 0, hh = 0, sub = 0, cs = 0;
    nvl_status st = NVL_OK;
    uint8_t *cmyk = NULL;
    media_image *img = NULL;
    if (tjDecompressHeader3(h, buf, (unsigned long)len, &w, &hh, &sub, &cs) != 0) {
        const char *m = tjGetErrorStr2(h);
        st = nvl_err_set(err, strstr(m, "precision") ? NVL_ERR_UNSUPPORTED : NVL_ERR_FORMAT,
                         "%s: JPEG header: %s%s", name, m,
                         strstr(m, "precision") ? " (only 8-bit JPEG is supported)" : "");
        goto done;
    }
    if ((st = media_check_pixels(name, w, hh, lim, err)) != NVL_OK) goto done;
    if ((st = media_image_new(&img, w, hh, err)) != NVL_OK) goto done;
    int r;
    if (cs == TJCS_CMYK || cs == TJCS_YCCK) {
        cmyk = nvl_malloc((size_t)w * (size_t)hh * 4);
        if (!cmyk) {
            st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", name);
            goto done;
        }
        r = tjDecompress2(h, buf, (unsigned long)len, cmyk, w, 0, hh, TJPF_CMYK, 0);
    } else {
        r = tjDecompress2(h, buf, (unsigned long)len, img->rgb, w, 0, hh, TJPF_RGB, 0);
    }
    if (r != 0) {
        if (tjGetErrorCode(h) == TJERR_WARNING) {
            NVL_LOG_WARN("%s: JPEG decoded with a warning: %s\n", name, tjGetErrorStr2(h));
        } else {
            const char *m = tjGetErrorStr2(h);
            st = nvl_err_set(err, strstr(m, "precision") ? NVL_ERR_UNSUPPORTED : NVL_ERR_FORMAT,
                             "%s: JPEG data: %s", name, m);
            goto done;
        }
    }
    if (cmyk) /* Adobe-style inverted CMYK, as stored in JPEG files: r = c * k / 255 */
        for (size_t i = 0; i < (size_t)w * (size_t)hh; i++) {
            const uint8_t *p = cmyk + 4 * i;
            img->rgb[3 * i + 0] = (uint8_t)((p[0] * p[3] + 127) / 255);
            img->rgb[3 * i + 1] = (uint8_t)((p[1] * p[3] + 127) / 255);
            img->rgb[3 * i + 2] = (uint8_t)((p[2] * p[3] + 127) / 255);
        }
    int o = exif_orientation(buf, len);
    if (o > 1 && (st = orient(&img, o, err)) != NVL_OK) goto done;
    *out = img;
    img = NULL;
done:
    media_image_free(img);
    nvl_free(cmyk);
    tjDestroy(h);
    return st;
}
#else
nvl_status media_decode_jpeg(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                             media_image **out, nvl_err *err) {
    (void)buf, (void)len, (void)lim;
    *out = NULL;
    return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: JPEG support is not built into this nanovl", name);
}
#endif
