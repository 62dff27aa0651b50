/* JPEG through libjpeg-turbo's TurboJPEG API (and libjpeg's own API, same library, for sampling
 * factors TurboJPEG's header call cannot classify, e.g. Y 3x1): RGB out (gray, CMYK/YCCK converted), EXIF
 * orientation applied by the dispatch (orient.c), 12-bit refused, damaged data translated into nvl errors. A stream that
 * libjpeg-turbo can only decode with a warning (premature end of data) is accepted: the part
 * that was present is kept and the rest is what the decoder fills in, with a logged warning. */
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "media_impl.h"

#ifdef NVL_HAVE_JPEG
#include <turbojpeg.h>

#ifdef NVL_HAVE_LIBJPEG
#include <setjmp.h>
#include <stdio.h>

#include <jpeglib.h>

/* libjpeg's own API: any sampling factors the standard allows (TurboJPEG's tj* calls refuse
 * those outside its TJSAMP list, e.g. Y 3x1 or Cb 1x2 with Cr 1x1). Same decoder, same defaults
 * as TurboJPEG's tjDecompress2 and Pillow (islow DCT, fancy upsampling), same CMYK rule. */
typedef struct ljerr {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int warnings;
    char first_warning[JMSG_LENGTH_MAX];
} ljerr;

static void lj_error_exit(j_common_ptr c) { longjmp(((ljerr *)c->err)->jb, 1); }
static void lj_emit(j_common_ptr c, int level) {
    ljerr *e = (ljerr *)c->err;
    if (level < 0) { /* a warning: corrupt or short data */
        if (!e->warnings++) c->err->format_message(c, e->first_warning);
    }
}

static nvl_status decode_libjpeg(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                                 media_image **out, nvl_err *err) {
    struct jpeg_decompress_struct cinfo;
    ljerr je;
    memset(&je, 0, sizeof je);
    memset(&cinfo, 0, sizeof cinfo); /* (cinfo.mem NULL: jpeg_destroy is a no-op until created) */
    media_image *volatile img = NULL;
    uint8_t *volatile row = NULL;
    volatile nvl_status st = NVL_OK;
    volatile int created = 0;
    cinfo.err = jpeg_std_error(&je.pub);
    je.pub.error_exit = lj_error_exit;
    je.pub.emit_message = lj_emit;
    /* setjmp before jpeg_create_decompress: creating fails through error_exit too, e.g. "Wrong JPEG
     * library version: library is 62, caller expects 80" when jpeglib.h / jconfig.h came from
     * another libjpeg than the one loaded (a device build picked the machine's jconfig.h): a
     * longjmp to a jmp_buf never set crashed the process */
    if (setjmp(je.jb)) {
        char msg[JMSG_LENGTH_MAX];
        je.pub.format_message((j_common_ptr)&cinfo, msg);
        if (!created)
            st = nvl_err_set(err, NVL_ERR_INTERNAL, "%s: the JPEG library refused to start: %s (nanovl was built with "
                             "another libjpeg's jpeglib.h / jconfig.h than the one it loaded)", name, msg);
        else if (st == NVL_OK)
            st = nvl_err_set(err, strstr(msg, "precision") ? NVL_ERR_UNSUPPORTED : NVL_ERR_FORMAT, "%s: JPEG data: %s%s",
                             name, msg, strstr(msg, "precision") ? " (only 8-bit JPEG is supported)" : "");
        goto done;
    }
    jpeg_create_decompress(&cinfo);
    created = 1;
    jpeg_mem_src(&cinfo, buf, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.data_precision != 8) {
        st = nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: %d-bit JPEG (only 8-bit JPEG is supported)", name,
                         cinfo.data_precision);
        goto done;
    }
    if ((st = media_check_pixels(name, cinfo.image_width, cinfo.image_height, lim, err)) != NVL_OK) goto done;
    const int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    media_image *im = NULL;
    if ((st = media_image_new(&im, (int)cinfo.output_width, (int)cinfo.output_height, err)) != NVL_OK) goto done;
    img = im;
    row = nvl_malloc((size_t)cinfo.output_width * 4);
    if (!row) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", name);
        goto done;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *d = img->rgb + (size_t)cinfo.output_scanline * img->stride;
        JSAMPROW r = cmyk ? row : d;
        jpeg_read_scanlines(&cinfo, &r, 1);
        if (cmyk) /* Adobe-style inverted CMYK, as stored in JPEG files: r = c * k / 255 */
            for (size_t x = 0; x < cinfo.output_width; x++)
                for (int c = 0; c < 3; c++) d[3 * x + (size_t)c] = (uint8_t)((row[4 * x + (size_t)c] * row[4 * x + 3] + 127) / 255);
    }
    jpeg_finish_decompress(&cinfo);
    if (je.warnings) NVL_LOG_WARN("%s: JPEG decoded with a warning: %s\n", name, je.first_warning);
    *out = img;
    img = NULL;
done:
    jpeg_destroy_decompress(&cinfo);
    media_image_free(img);
    nvl_free(row);
    return st;
}
#endif

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
#ifdef NVL_HAVE_LIBJPEG
        if (strstr(m, "subsampling")) { /* valid sampling factors TurboJPEG cannot classify */
            tjDestroy(h);
            return decode_libjpeg(buf, len, name, lim, out, err);
        }
#endif
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
