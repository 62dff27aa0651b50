/* JPEG through libjpeg-turbo's TurboJPEG API: RGB out (gray, CMYK/YCCK converted), EXIF
 * orientation applied by the dispatch (orient.c), 12-bit refused, damaged data translated into nvl errors. A stream that
 * libjpeg-turbo can only decode with a warning (premature end of data) is accepted: the part
 * that was present is kept and the rest is what the decoder fills in, with a logged warning. */
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "media_impl.h"

#ifdef NVL_HAVE_JPEG
#include <turbojpeg.h>

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
