/* PNG through libpng (low-level API over memory): palette, gray and tRNS expanded, 16-bit
 * samples reduced to their high byte, interlacing handled, alpha composited on white with
 * out = (c * a + 255 * (255 - a) + 127) / 255. libpng errors (CRC, truncation) become
 * NVL_ERR_FORMAT / NVL_ERR_TRUNCATED with libpng's message; its warnings go to the debug log. */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "media_impl.h"

#ifdef NVL_HAVE_PNG
#include <png.h>

typedef struct png_src {
    const uint8_t *buf;
    size_t len, pos;
    const char *name;
    char msg[256];
    int truncated;
    jmp_buf jb;
} png_src;

static void on_error(png_structp p, png_const_charp msg) {
    png_src *s = png_get_error_ptr(p);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    longjmp(s->jb, 1);
}
static void on_warning(png_structp p, png_const_charp msg) {
    png_src *s = png_get_error_ptr(p);
    NVL_LOG_DEBUG("%s: libpng warning: %s\n", s->name, msg);
}
static void on_read(png_structp p, png_bytep data, png_size_t n) {
    png_src *s = png_get_io_ptr(p);
    if (n > s->len - s->pos) {
        s->truncated = 1;
        png_error(p, "Read Error: the file ends early");
    }
    memcpy(data, s->buf + s->pos, n);
    s->pos += n;
}

nvl_status media_decode_png(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                            media_image **out, nvl_err *err) {
    *out = NULL;
    png_src src = {.buf = buf, .len = len, .name = name};
    png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, on_error, on_warning);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    if (!p || !info) {
        png_destroy_read_struct(&p, &info, NULL);
        return nvl_err_set(err, NVL_ERR_NOMEM, "%s: cannot start the PNG decoder", name);
    }
    /* volatile: these change between setjmp and a longjmp back */
    uint8_t *volatile rgba = NULL;
    png_bytep *volatile rows = NULL;
    media_image *volatile img = NULL;
    nvl_status st = NVL_OK;
    if (setjmp(src.jb)) {
        st = nvl_err_set(err, src.truncated ? NVL_ERR_TRUNCATED : NVL_ERR_FORMAT, "%s: PNG: %s", name, src.msg);
        goto done;
    }
    png_set_read_fn(p, &src, on_read);
    /* libpng allocates a text chunk at its declared length before reading it: a 726-byte file
     * declaring a 1.8 GB iTXt took 1.8 GB (found by fuzz_image). Size before reading: a chunk
     * before the image data that claims more bytes than the file has is refused here. */
    for (size_t at = 8; at + 8 <= len;) {
        const uint32_t n = (uint32_t)buf[at] << 24 | (uint32_t)buf[at + 1] << 16 | (uint32_t)buf[at + 2] << 8 | buf[at + 3];
        if ((uint64_t)n + 12 > (uint64_t)(len - at)) {
            st = nvl_err_set(err, NVL_ERR_TRUNCATED, "%s: PNG: chunk %.4s at byte %zu declares %u bytes of data and a 4-byte "
                             "CRC, the file has %zu bytes left after its header (truncated)", name, (const char *)buf + at + 4, at,
                             n, len - at - 8);
            goto done;
        }
        if (!memcmp(buf + at + 4, "IDAT", 4)) break;
        at += (size_t)n + 12;
    }
    png_read_info(p, info);
    png_uint_32 w = png_get_image_width(p, info), h = png_get_image_height(p, info);
    if ((st = media_check_pixels(name, w, h, lim, err)) != NVL_OK) goto done;
    png_set_expand(p);
    png_set_strip_16(p);
    png_set_gray_to_rgb(p);
    png_set_interlace_handling(p);
    png_read_update_info(p, info);
    const int ch = png_get_channels(p, info);
    const size_t rb = png_get_rowbytes(p, info);
    if ((ch != 3 && ch != 4) || rb != (size_t)w * (size_t)ch) {
        st = nvl_err_set(err, NVL_ERR_FORMAT, "%s: PNG: unexpected layout after expansion (%d channels)", name, ch);
        goto done;
    }
    rgba = nvl_malloc(rb * h);
    rows = nvl_malloc(h * sizeof *rows);
    if (!rgba || !rows) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", name);
        goto done;
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = rgba + y * rb;
    png_read_image(p, rows);
    png_read_end(p, NULL);
    media_image *im = NULL;
    if ((st = media_image_new(&im, (int)w, (int)h, err)) != NVL_OK) goto done;
    img = im;
    for (size_t i = 0; i < (size_t)w * h; i++) {
        const uint8_t *s = rgba + i * (size_t)ch;
        uint8_t *d = img->rgb + i * 3;
        if (ch == 3) {
            d[0] = s[0], d[1] = s[1], d[2] = s[2];
        } else {
            const unsigned a = s[3];
            for (int c = 0; c < 3; c++) d[c] = (uint8_t)((s[c] * a + 255u * (255u - a) + 127u) / 255u);
        }
    }
    *out = img;
    img = NULL;
done:
    media_image_free(img);
    nvl_free(rgba);
    nvl_free(rows);
    png_destroy_read_struct(&p, &info, NULL);
    return st;
}
static void on_write_error(png_structp p, png_const_charp msg) {
    png_src *s = png_get_error_ptr(p);
    const int e = errno; /* (libpng's "Write Error" after fwrite failed: say why) */
    snprintf(s->msg, sizeof s->msg, "%s%s%s", msg, e ? ": " : "", e ? strerror(e) : "");
    longjmp(s->jb, 1);
}

nvl_status media_image_write_png(const media_image *img, const char *path, nvl_err *err) {
    FILE *volatile fp = fopen(path, "wb");
    if (!fp) return nvl_err_set(err, NVL_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    png_src src = {.name = path};
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, &src, on_write_error, on_warning);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    nvl_status st = NVL_OK;
    if (!p || !info) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: cannot start the PNG encoder", path);
        goto done;
    }
    if (setjmp(src.jb)) {
        st = nvl_err_set(err, NVL_ERR_IO, "%s: writing PNG: %s", path, src.msg);
        goto done;
    }
    errno = 0;
    png_init_io(p, fp);
    png_set_IHDR(p, info, (png_uint_32)img->width, (png_uint_32)img->height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p, info);
    for (int y = 0; y < img->height; y++) png_write_row(p, img->rgb + (size_t)y * img->stride);
    png_write_end(p, NULL);
done:
    png_destroy_write_struct(&p, &info);
    if (fclose(fp) != 0 && st == NVL_OK) st = nvl_err_set(err, NVL_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    if (st != NVL_OK) { /* not a truncated PNG that looks real (a full disk: a review) */
        struct stat sb;
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) unlink(path);
    }
    return st;
}
#else
nvl_status media_image_write_png(const media_image *img, const char *path, nvl_err *err) {
    (void)img;
    return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: PNG support is not built into this nanovl", path);
}
nvl_status media_decode_png(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                            media_image **out, nvl_err *err) {
    (void)buf, (void)len, (void)lim;
    *out = NULL;
    return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: PNG support is not built into this nanovl", name);
}
#endif
