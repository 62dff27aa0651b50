/* media_image lifetime, limits, file reading, still-image dispatch, page ranges. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/mapped_file.h"
#include "media.h"
#include "media_impl.h"

media_limits media_limits_default(void) {
    media_limits l = {.max_file_bytes = (size_t)1 << 30, .max_pixels = 100000000, .max_pages = 500,
                      .max_frames = 128};
    return l;
}

nvl_status media_image_new(media_image **out, int width, int height, nvl_err *err) {
    *out = NULL;
    if (width <= 0 || height <= 0)
        return nvl_err_set(err, NVL_ERR_FORMAT, "image size %dx%d is empty", width, height);
    media_image *im = nvl_calloc(1, sizeof *im);
    if (im) im->rgb = nvl_calloc((size_t)width * (size_t)height, 3);
    if (!im || !im->rgb) {
        media_image_free(im);
        return nvl_err_set(err, NVL_ERR_NOMEM, "cannot allocate a %dx%d image", width, height);
    }
    im->width = width;
    im->height = height;
    im->stride = (size_t)width * 3;
    *out = im;
    return NVL_OK;
}

void media_image_free(media_image *img) {
    if (!img) return;
    nvl_free(img->rgb);
    nvl_free(img);
}

nvl_status media_check_pixels(const char *name, int64_t w, int64_t h, const media_limits *lim,
                              nvl_err *err) {
    media_limits d = media_limits_default();
    if (!lim) lim = &d;
    if (w <= 0 || h <= 0)
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: image size %lldx%lld is empty", name, (long long)w,
                           (long long)h);
    if (w * h > lim->max_pixels)
        return nvl_err_set(err, NVL_ERR_LIMIT, "%s: %lldx%lld = %lld pixels exceeds the limit of %lld",
                           name, (long long)w, (long long)h, (long long)(w * h), (long long)lim->max_pixels);
    return NVL_OK;
}

nvl_status media_read_file(const char *path, const media_limits *lim, uint8_t **buf, size_t *len,
                           nvl_err *err) {
    media_limits d = media_limits_default();
    if (!lim) lim = &d;
    char *b = NULL;
    nvl_status st = nvl_read_file(path, lim->max_file_bytes, &b, len, err);
    if (st == NVL_ERR_LIMIT)
        nvl_err_set(err, st, "%s: file is larger than the limit of %zu bytes", path, lim->max_file_bytes);
    *buf = (uint8_t *)b;
    return st;
}

nvl_status media_check_file(const char *path, const media_limits *lim, nvl_err *err) {
    media_limits d = media_limits_default();
    if (!lim) lim = &d;
    struct stat st;
    if (stat(path, &st) != 0)
        return nvl_err_set(err, errno == ENOENT ? NVL_ERR_NOT_FOUND : NVL_ERR_IO, "cannot open '%s': %s", path,
                           strerror(errno));
    if (!S_ISREG(st.st_mode)) return nvl_err_set(err, NVL_ERR_IO, "'%s' is not a regular file", path);
    if ((uint64_t)st.st_size > lim->max_file_bytes)
        return nvl_err_set(err, NVL_ERR_LIMIT, "%s: file is larger than the limit of %zu bytes", path, lim->max_file_bytes);
    if (access(path, R_OK) != 0) return nvl_err_set(err, NVL_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    return NVL_OK;
}

nvl_status media_decode_image_file(const char *path, const media_limits *lim, media_image **out, nvl_err *err) {
    uint8_t *buf = NULL;
    size_t len = 0;
    *out = NULL;
    nvl_status st = media_read_file(path, lim, &buf, &len, err);
    if (st == NVL_OK) st = media_decode_image(buf, len, path, lim, out, err);
    nvl_free(buf);
    return st;
}

nvl_status media_decode_image(const uint8_t *buf, size_t len, const char *name,
                              const media_limits *lim, media_image **out, nvl_err *err) {
    *out = NULL;
    if (!name) name = "<image>";
    media_limits d = media_limits_default();
    if (!lim) lim = &d;
    if (len > lim->max_file_bytes)
        return nvl_err_set(err, NVL_ERR_LIMIT, "%s: %zu bytes exceeds the limit of %zu", name, len,
                           lim->max_file_bytes);
    enum media_kind k = media_sniff(buf, len);
    if (k == MEDIA_KIND_UNKNOWN)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: not a recognised image format", name);
    if (k == MEDIA_KIND_PDF || k == MEDIA_KIND_VIDEO)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: is a %s, not a still image", name, media_kind_name(k));
    if (k == MEDIA_KIND_HEIF)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED,
                           "%s: unsupported image format: HEIF/HEIC still image (this nanovl has no HEIF decoder; "
                           "convert it to JPEG or PNG)", name);
    if (k == MEDIA_KIND_AVIF && !media_supports(k))
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED,
                           "%s: unsupported image format: AVIF still image (this nanovl has no AV1 decoder; "
                           "convert it to JPEG or PNG)", name);
    if (!media_supports(k))
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: %s support is not built into this nanovl", name,
                           media_kind_name(k));
    nvl_status st;
    switch (k) {
    case MEDIA_KIND_JPEG: st = media_decode_jpeg(buf, len, name, lim, out, err); break;
    case MEDIA_KIND_PNG: st = media_decode_png(buf, len, name, lim, out, err); break;
    case MEDIA_KIND_AVIF: st = media_decode_avif(buf, len, name, lim, out, err); break;
    default: st = media_decode_ffmpeg_still(buf, len, name, lim, out, err); break;
    }
    if (st != NVL_OK) return st;
    const int o = media_file_orientation(k, buf, len);
    if (o > 1 && (st = media_orient(out, o, err)) != NVL_OK) {
        media_image_free(*out);
        *out = NULL;
    }
    return st;
}

nvl_status media_parse_page_range(const char *spec, int n_pages, int **pages, int *n, nvl_err *err) {
    *pages = NULL;
    *n = 0;
    if (n_pages <= 0) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "page range over a document without pages");
    int *out = nvl_malloc((size_t)n_pages * sizeof *out);
    uint8_t *seen = nvl_calloc((size_t)n_pages, 1);
    if (!out || !seen) {
        nvl_free(out);
        nvl_free(seen);
        return nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
    }
    int k = 0;
    if (!spec || !*spec) {
        for (int i = 0; i < n_pages; i++) out[k++] = i;
    } else {
        const char *s = spec;
        while (*s) {
            char *end = NULL;
            long a, b;
            while (*s == ' ') s++;
            a = strtol(s, &end, 10);
            if (end == s) goto bad;
            s = end;
            b = a;
            if (*s == '-') {
                s++;
                if (*s == ',' || *s == 0) b = n_pages;
                else {
                    b = strtol(s, &end, 10);
                    if (end == s) goto bad;
                    s = end;
                }
            }
            while (*s == ' ') s++;
            if (*s == ',') s++;
            else if (*s) goto bad;
            if (a < 1 || b < a || a > n_pages) {
                nvl_free(out);
                nvl_free(seen);
                return nvl_err_set(err, NVL_ERR_INVALID_ARG,
                                   "page range '%s': %ld-%ld is outside the document's pages 1-%d", spec, a, b, n_pages);
            }
            if (b > n_pages) b = n_pages;
            for (long p = a; p <= b; p++)
                if (!seen[p - 1]) {
                    seen[p - 1] = 1;
                    out[k++] = (int)(p - 1);
                }
        }
    }
    nvl_free(seen);
    *pages = out;
    *n = k;
    return NVL_OK;
bad:
    nvl_free(out);
    nvl_free(seen);
    return nvl_err_set(err, NVL_ERR_INVALID_ARG, "page range '%s' is not like '1-3,7,10-'", spec);
}
