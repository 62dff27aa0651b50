/* media_image lifetime, limits, file reading, still-image dispatch, page ranges. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "media.h"
#include "media_impl.h"

#ifdef NVL_HAVE_WEBP
#include <webp/decode.h>
#include <webp/demux.h>
#endif

static int64_t g_max_pixels = MEDIA_DEFAULT_MAX_PIXELS; /* media_set_default_max_pixels */

void media_set_default_max_pixels(int64_t n) {
    __atomic_store_n(&g_max_pixels, n > 0 ? n : MEDIA_DEFAULT_MAX_PIXELS, __ATOMIC_RELAXED);
}

media_limits media_limits_default(void) {
    /* max_frames: the API's own bound on a request's max_frames (whose default, 128, is the
       model's recipe), not a second, silent one: the LM's context refuses what does not fit */
    media_limits l = {.max_file_bytes = (size_t)1 << 30, .max_pixels = __atomic_load_n(&g_max_pixels, __ATOMIC_RELAXED),
                      .max_pages = 500, .max_frames = 100000};
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
    if (w > INT64_MAX / h || w * h > lim->max_pixels) /* (the CLI's --max-megapixels sets the default) */
        return nvl_err_set(err, NVL_ERR_LIMIT, "%s: %lldx%lld = %.0f pixels exceeds the limit of %lld (--max-megapixels)",
                           name, (long long)w, (long long)h, (double)w * (double)h, (long long)lim->max_pixels);
    return NVL_OK;
}

static const char *file_kind(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO (named pipe)";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    return "not a regular file";
}

static nvl_status refuse_irregular(const char *path, mode_t m, nvl_err *err) {
    return nvl_err_set(err, NVL_ERR_IO, "'%s' is %s; media must be regular files", path, file_kind(m));
}

nvl_status media_open_regular(const char *path, const media_limits *lim, int *fd_out, size_t *size, nvl_err *err) {
    *fd_out = -1;
    media_limits d = media_limits_default();
    if (!lim) lim = &d;
    /* stat first, so that nothing but a regular file is ever opened (a FIFO would block, a
     * device would read forever); then O_NONBLOCK + fstat on what was actually opened, in case
     * the path changed in between */
    struct stat sb;
    if (stat(path, &sb) != 0)
        return nvl_err_set(err, errno == ENOENT || errno == ENOTDIR ? NVL_ERR_NOT_FOUND : NVL_ERR_IO,
                           "cannot open '%s': %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return refuse_irregular(path, sb.st_mode, err);
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return nvl_err_set(err, errno == ENOENT ? NVL_ERR_NOT_FOUND : NVL_ERR_IO, "cannot open '%s': %s", path,
                           strerror(errno));
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return refuse_irregular(path, sb.st_mode, err);
    }
    if ((uint64_t)sb.st_size > lim->max_file_bytes) {
        close(fd);
        return nvl_err_set(err, NVL_ERR_LIMIT, "%s: file of %lld bytes is larger than the limit of %zu bytes", path,
                           (long long)sb.st_size, lim->max_file_bytes);
    }
    const int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *fd_out = fd;
    if (size) *size = (size_t)sb.st_size;
    return NVL_OK;
}

nvl_status media_read_file(const char *path, const media_limits *lim, uint8_t **buf, size_t *len,
                           nvl_err *err) {
    media_limits d = media_limits_default();
    if (!lim) lim = &d;
    *buf = NULL;
    if (len) *len = 0;
    int fd = -1;
    size_t size = 0;
    nvl_status st = media_open_regular(path, lim, &fd, &size, err);
    if (st != NVL_OK) return st;
    /* the file may grow while read: never more than the limit */
    size_t cap = size + 1, n = 0;
    uint8_t *b = nvl_malloc(cap);
    if (!b) {
        close(fd);
        return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory for %zu bytes", path, size);
    }
    for (;;) {
        if (n == cap) {
            if (cap > lim->max_file_bytes) {
                close(fd);
                nvl_free(b);
                return nvl_err_set(err, NVL_ERR_LIMIT, "%s: file is larger than the limit of %zu bytes", path,
                                   lim->max_file_bytes);
            }
            size_t nc = cap * 2 > lim->max_file_bytes + 1 ? lim->max_file_bytes + 1 : cap * 2;
            uint8_t *nb = nvl_realloc(b, nc);
            if (!nb) {
                close(fd);
                nvl_free(b);
                return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
            }
            b = nb;
            cap = nc;
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = nvl_err_set(err, NVL_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
            close(fd);
            nvl_free(b);
            return st;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (n > lim->max_file_bytes) {
        nvl_free(b);
        return nvl_err_set(err, NVL_ERR_LIMIT, "%s: file is larger than the limit of %zu bytes", path, lim->max_file_bytes);
    }
    *buf = b;
    if (len) *len = n;
    return NVL_OK;
}

nvl_status media_check_file(const char *path, const media_limits *lim, nvl_err *err) {
    int fd = -1;
    nvl_status st = media_open_regular(path, lim, &fd, NULL, err);
    if (fd >= 0) close(fd);
    return st;
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

/* The checks made from the first bytes (size cap, format, built-in support), before any decoder
 * runs (here or in the image decoder). NVL_OK: *kind is a still image this build decodes. */
static nvl_status image_precheck(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                                 enum media_kind *kind, nvl_err *err) {
    if (len > lim->max_file_bytes)
        return nvl_err_set(err, NVL_ERR_LIMIT, "%s: %zu bytes exceeds the limit of %zu", name, len,
                           lim->max_file_bytes);
    if (len == 0) return nvl_err_set(err, NVL_ERR_FORMAT, "%s: the file is empty", name);
    enum media_kind k = media_sniff(buf, len);
    if (k == MEDIA_KIND_UNKNOWN) return media_err_unrecognised(name, buf, len, NULL, err);
    if (k == MEDIA_KIND_PDF || k == MEDIA_KIND_VIDEO)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: is a %s, not a still image", name, media_kind_name(k));
    if (k == MEDIA_KIND_HEIF && !media_heif_supported()) /* (its words) */
        return media_decode_heif(buf, len, name, lim, &(media_image *){NULL}, err);
    if (k == MEDIA_KIND_AVIF && !media_supports(k))
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED,
                           "%s: unsupported image format: AVIF still image (this nanovl has no AV1 decoder; "
                           "convert it to JPEG or PNG)", name);
    if (!media_supports(k))
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: %s support is not built into this nanovl", name,
                           media_kind_name(k));
    *kind = k;
    return NVL_OK;
}

/* Where a GIF's first frame is smaller than its logical screen, what lies outside it. FFmpeg fills
 * it with the global palette's background colour (or transparent where the first frame declares a
 * transparent index); Pillow (the reference processors' decoder) ignores the background index: its
 * canvas starts as the transparent index when the first frame's graphic control extension declares
 * one, index 0 otherwise, so that area is the first frame's palette's (local, else global) colour 0,
 * black without a palette (a differential test against Pillow found it). Repaints img outside the
 * first frame with Pillow's colour; white (alpha composited on white) for the transparent index.
 * Left as FFmpeg made it when the header cannot be read or the frame reaches past the screen (Pillow
 * then grows the image, FFmpeg clips the frame: not matched). */
static void gif_fill_outside_first_frame(const uint8_t *b, size_t n, media_image *img) {
    if (n < 13) return;
    const int sw = b[6] | b[7] << 8, sh = b[8] | b[9] << 8;
    if (sw != img->width || sh != img->height) return;
    const uint8_t *global = b[10] & 0x80 ? b + 13 : NULL;
    size_t i = media_gif_first_block(b, n);
    int transparent = 0;
    while (i < n) {
        if (b[i] == 0x21 && i + 1 < n) { /* an extension: a graphic control one's transparency flag */
            if (b[i + 1] == 0xF9 && i + 6 < n && b[i + 2] >= 4) transparent |= b[i + 3] & 1; /* (Pillow: any before the frame) */
            i = media_gif_block_end(b, n, i);
        } else if (b[i] == 0x2C && i + 10 <= n) { /* the first image descriptor */
            const int x0 = b[i + 1] | b[i + 2] << 8, y0 = b[i + 3] | b[i + 4] << 8;
            const int x1 = x0 + (b[i + 5] | b[i + 6] << 8), y1 = y0 + (b[i + 7] | b[i + 8] << 8);
            const uint8_t *pal = b[i + 9] & 0x80 ? (i + 13 <= n ? b + i + 10 : NULL) : global;
            if (x1 > sw || y1 > sh || (b[i + 9] & 0x80 && !pal)) return;
            uint8_t c[3] = {0, 0, 0};
            if (transparent) memset(c, 255, 3);
            else if (pal) memcpy(c, pal, 3);
            for (int y = 0; y < sh; y++)
                for (int x = 0; x < sw; x++)
                    if (y < y0 || y >= y1 || x < x0 || x >= x1) memcpy(img->rgb + (size_t)y * img->stride + (size_t)x * 3, c, 3);
            return;
        } else {
            return; /* the trailer, or bytes that are not a block */
        }
    }
}

/* A GIF with bytes between its blocks that begin none (a writer's stray padding, a damaged
 * transfer): Pillow (the reference processors' decoder) skips such a byte, FFmpeg stops at it with
 * 'no image in the file' (a review). Returns a copy without them, NULL when there is none (or no
 * memory: FFmpeg then reads the file as it is). Walks the header, the global table, then the
 * extensions (label, sub-blocks), image descriptors (local table, LZW code size, sub-blocks) and the
 * trailer; a block cut short by the end of the bytes is kept as it is (FFmpeg says so). */
static uint8_t *gif_without_stray_bytes(const uint8_t *b, size_t n, size_t *out_n) {
    const size_t head = media_gif_first_block(b, n);
    uint8_t *o = NULL;
    size_t on = 0, stray = 0;
    for (int pass = 0; pass < 2; pass++) { /* 0: count the stray bytes; 1: copy the rest */
        if (pass == 1) {
            if (!stray || !(o = nvl_malloc(n - stray))) return NULL;
            memcpy(o, b, head);
            on = head;
        }
        for (size_t i = head; i < n;) {
            size_t e = media_gif_block_end(b, n, i);
            if (!e && (b[i] == 0x3B || b[i] == 0x2C)) e = n; /* the trailer or a descriptor cut short: kept with
                                                               what follows (not read, as Pillow and FFmpeg) */
            if (!e) { /* a stray byte */
                stray += pass == 0;
                i++;
                continue;
            }
            if (pass == 1) memcpy(o + on, b + i, e - i), on += e - i;
            i = e;
        }
    }
    *out_n = on;
    return o;
}

nvl_status media_decode_image(const uint8_t *buf, size_t len, const char *name,
                              const media_limits *lim, media_image **out, nvl_err *err) {
    return media_decode_image_cancellable(buf, len, name, lim, NULL, NULL, out, err);
}

nvl_status media_decode_image_cancellable(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                                          int (*cancelled)(void *ctx), void *ctx, media_image **out, nvl_err *err) {
    *out = NULL;
    if (!name || !*name) name = "<image>"; /* (an API request's "name": "" too) */
    media_limits d = media_limits_default();
    if (!lim) lim = &d;
    enum media_kind k = MEDIA_KIND_UNKNOWN;
    nvl_status st = image_precheck(buf, len, name, lim, &k, err);
    if (st != NVL_OK) return st;
    return media_decode_image_sandboxed(buf, len, name, lim, cancelled, ctx, out, err); /* (here when it is not set) */
}

/* FFmpeg's Netpbm demuxer for the magic P1..P6 (named: its probe of bytes without a file name
 * wants a newline right after the magic, and "P5 7 5 255\n", a valid header, was 'Invalid data') */
static const char *pnm_demuxer(uint8_t magic) {
    return magic == '1' || magic == '4' ? "pbm_pipe" : magic == '2' || magic == '5' ? "pgm_pipe" : "ppm_pipe";
}

/* A binary PGM/PPM (P5, P6) whose maxval is not 255 or 65535 has its samples scaled to the full
 * range by FFmpeg, whose 8-bit and 16-bit scale factors (rounded up) carry the brightest value past
 * the top for some maxvals (FFmpeg 5.1: 25 of 1..254, e.g. 254, and most of 32768..65534): white
 * came out black (a differential test against Pillow). So this FFmpeg is asked first: a 1 x 1
 * picture of the file's type and maxval holding the maxval must come out white, or the file is
 * refused. Plain (ASCII) files scale otherwise and are not affected.
 * The header's numbers are checked too: Pillow refuses a maxval of 0, 65536 or -5, which FFmpeg
 * took as 8-bit images. */
static nvl_status pnm_check_header(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                                   nvl_err *err) {
    if (len < 3 || buf[1] == '1' || buf[1] == '4') return NVL_OK; /* (bitmaps: no maxval) */
    long v[3] = {0};
    size_t i = 2;
    for (int f = 0; f < 3; f++) { /* width, height, maxval: each after whitespace and '#' comments */
        for (;;) {
            while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r')) i++;
            if (i < len && buf[i] == '#')
                while (i < len && buf[i] != '\n' && buf[i] != '\r') i++;
            else break;
        }
        if (i >= len || buf[i] < '0' || buf[i] > '9') /* (FFmpeg took a maxval of -5 as an 8-bit image) */
            return nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged Netpbm header: its %s is %s", name,
                               f == 0 ? "width" : f == 1 ? "height" : "maxval", i >= len ? "missing" : "not a number");
        while (i < len && buf[i] >= '0' && buf[i] <= '9' && v[f] < 1000000) v[f] = v[f] * 10 + (buf[i++] - '0');
    }
    const long maxval = v[2];
    if (maxval < 1 || maxval > 65535) /* (FFmpeg decoded 0 and 65536 as 8-bit images; Pillow refuses them) */
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged Netpbm header: maxval %ld (it must be 1..65535)", name,
                           maxval);
    if (maxval == 255 || maxval == 65535 || buf[1] == '2' || buf[1] == '3') return NVL_OK;
    const int ch = buf[1] == '6' ? 3 : 1, wide = maxval > 255;
    uint8_t probe[32];
    int n = snprintf((char *)probe, sizeof probe, "P%c\n1 1\n%ld\n", buf[1], maxval);
    for (int c = 0; c < ch; c++) {
        if (wide) probe[n++] = (uint8_t)(maxval >> 8);
        probe[n++] = (uint8_t)(maxval & 255);
    }
    media_image *im = NULL;
    nvl_err e2 = {0};
    int white = media_decode_ffmpeg_still(probe, (size_t)n, name, lim, 0, pnm_demuxer(buf[1]), &im, &e2) == NVL_OK &&
                im->width == 1 &&
                im->height == 1;
    for (int c = 0; white && c < 3; c++) white = im->rgb[c] == 255;
    media_image_free(im);
    if (!white)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: unsupported image format: binary P%c Netpbm with maxval %ld (this "
                           "nanovl's FFmpeg decodes its brightest samples wrong; convert it to PNG, or to maxval 255)",
                           name, buf[1], maxval);
    return NVL_OK;
}

nvl_status media_decode_image_local(const uint8_t *buf, size_t len, const char *name,
                                    const media_limits *lim, media_image **out, nvl_err *err) {
    *out = NULL;
    enum media_kind k = MEDIA_KIND_UNKNOWN;
    nvl_status st = image_precheck(buf, len, name, lim, &k, err);
    if (st != NVL_OK) return st;
    if (k == MEDIA_KIND_HEIF) return media_decode_heif(buf, len, name, lim, out, err); /* (its own orientation) */
#ifdef NVL_HAVE_WEBP
    /* Still WebP is decoded by libwebp, as Pillow (the reference processors' decoder) does:
     * lossless (VP8L) pixels are exact ARGB; lossy ones are libwebp's own YUV->RGB (fancy
     * upsampling). FFmpeg's conversion of lossy WebP differed from Pillow's by up to 126 levels at
     * sharp chroma edges (a differential test against Pillow found it), and FFmpeg 5.1 aborts the
     * process (an assertion in avcodec) on some damaged lossless WebP that libwebp decodes. */
    if (k == MEDIA_KIND_WEBP) {
        WebPBitstreamFeatures f;
        if (WebPGetFeatures(buf, len, &f) != VP8_STATUS_OK)
            return nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged WebP (libwebp cannot read its header)", name);
        if ((st = media_check_pixels(name, f.width, f.height, lim, err)) != NVL_OK) return st;
        {
            /* an animated WebP is its first frame on the canvas, as Pillow opens it (libwebp's
               animation decoder: the canvas transparent outside the frame) */
            int w = 0, h = 0;
            uint8_t *px = NULL;
            WebPAnimDecoder *anim = NULL;
            if (f.has_animation) {
                WebPAnimDecoderOptions o;
                WebPAnimInfo info;
                int ts = 0;
                if (!WebPAnimDecoderOptionsInit(&o))
                    return nvl_err_set(err, NVL_ERR_INTERNAL, "%s: libwebp's animation decoder does not match its header", name);
                o.color_mode = MODE_RGBA;
                o.use_threads = 0;
                const WebPData data = {buf, len};
                if (!(anim = WebPAnimDecoderNew(&data, &o)) || !WebPAnimDecoderGetInfo(anim, &info)) {
                    WebPAnimDecoderDelete(anim);
                    return nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged animated WebP (libwebp cannot read its frames)", name);
                }
                w = (int)info.canvas_width, h = (int)info.canvas_height; /* (f's size, checked above) */
                if (!WebPAnimDecoderGetNext(anim, &px, &ts)) {
                    WebPAnimDecoderDelete(anim);
                    return nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged animated WebP (libwebp cannot decode its first frame)",
                                       name);
                }
            } else if (!(px = WebPDecodeRGBA(buf, len, &w, &h))) {
                return nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged WebP (libwebp cannot decode it)", name);
            }
            /* alpha composited on white, as for every format (lossless alpha was dropped) */
            media_image *im = NULL;
            st = media_image_new(&im, w, h, err);
            for (size_t i = 0; st == NVL_OK && i < (size_t)w * (size_t)h; i++) {
                const unsigned a = px[4 * i + 3];
                for (int c = 0; c < 3; c++)
                    im->rgb[3 * i + c] = (uint8_t)((px[4 * i + c] * a + 255u * (255u - a) + 127u) / 255u);
            }
            if (anim) WebPAnimDecoderDelete(anim); /* (px is its canvas) */
            else WebPFree(px);
            if (st != NVL_OK) return st;
            *out = im;
            goto decoded;
        }
    }
#endif
    /* JPEG inside TIFF (Compression 6 or 7): FFmpeg 5.1 decoded one to a black image, without an
       error (a differential test against Pillow found it) */
    if (k == MEDIA_KIND_TIFF) {
        const long comp = media_tiff_ifd0_value(buf, len, 259);
        if (comp == 6 || comp == 7)
            return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: unsupported image format: JPEG-compressed TIFF (compression %ld; "
                               "convert it to JPEG or PNG)", name, comp);
        /* a tiled TIFF (TileWidth, tag 322) came out black, without an error, whatever its
           compression: FFmpeg 5.1 reads tiles only in DNG (a differential test against Pillow) */
        if (media_tiff_ifd0_value(buf, len, 322) >= 0)
            return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: unsupported image format: tiled TIFF (its pixels are stored in "
                               "tiles, which this nanovl's TIFF decoder does not read; convert it to PNG)", name);
    }
    if (k == MEDIA_KIND_PNM && (st = pnm_check_header(buf, len, name, lim, err)) != NVL_OK) return st;
    switch (k) {
    case MEDIA_KIND_JPEG: st = media_decode_jpeg(buf, len, name, lim, out, err); break;
    case MEDIA_KIND_PNG: st = media_decode_png(buf, len, name, lim, out, err); break;
    case MEDIA_KIND_AVIF: st = media_decode_avif(buf, len, name, lim, out, err); break;
    default: {
        /* a BMP's 32-bit BI_RGB pixels are BGRX (a BITMAPINFOHEADER or later, 40 bytes or more at
           14: biBitCount at 28, biCompression at 30) */
        const int bgrx = k == MEDIA_KIND_BMP && len >= 34 && buf[14] >= 40 && !(buf[15] | buf[16] | buf[17]) &&
                         (buf[28] | buf[29] << 8) == 32 && !(buf[30] | buf[31] | buf[32] | buf[33]);
        size_t gn = 0; /* (a GIF without its stray bytes, when it has any) */
        uint8_t *gif = k == MEDIA_KIND_GIF ? gif_without_stray_bytes(buf, len, &gn) : NULL;
        const uint8_t *fb = gif ? gif : buf;
        const size_t fn = gif ? gn : len;
        st = media_decode_ffmpeg_still(fb, fn, name, lim, bgrx, k == MEDIA_KIND_PNM ? pnm_demuxer(buf[1]) : NULL, out, err);
        if (st == NVL_OK && k == MEDIA_KIND_GIF) gif_fill_outside_first_frame(fb, fn, *out);
        nvl_free(gif);
        break;
    }
    }
    if (st != NVL_OK) return st;
#ifdef NVL_HAVE_WEBP
decoded:; /* (a statement: C11 allows no declaration right after a label) */
#endif
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
            errno = 0;
            a = strtol(s, &end, 10);
            if (end == s) goto bad;
            if (errno == ERANGE) goto huge;
            s = end;
            b = a;
            int open_end = 0; /* "5-": to the last page */
            if (*s == '-') {
                s++;
                if (*s == ',' || *s == 0) b = n_pages, open_end = 1;
                else {
                    if (*s < '0' || *s > '9') goto bad; /* ("1--2" read -2: "runs backwards (write -2-1)") */
                    errno = 0;
                    b = strtol(s, &end, 10);
                    if (end == s) goto bad;
                    if (errno == ERANGE) goto huge;
                    s = end;
                }
            }
            while (*s == ' ') s++;
            if (*s == ',') s++;
            else if (*s) goto bad;
            /* a range reaching past the last page is refused, never clamped: the user asked for pages
               that do not exist, and silently using fewer would hide it */
            if (a >= 1 && b < 1 && !open_end) { /* ("1-0" said "write 0-1") */
                nvl_free(out);
                nvl_free(seen);
                return nvl_err_set(err, NVL_ERR_INVALID_ARG, "page range '%s': pages are numbered from 1 (%ld is none)",
                                   spec, b);
            }
            if (a >= 1 && b < a && !open_end) {
                nvl_free(out);
                nvl_free(seen);
                return nvl_err_set(err, NVL_ERR_INVALID_ARG, "page range '%s': %ld-%ld runs backwards (write %ld-%ld)", spec, a, b,
                                   b, a);
            }
            if (a < 1 || b > n_pages || a > n_pages) {
                nvl_free(out);
                nvl_free(seen);
                if (a < 1) /* (whatever the document: said without its page count) */
                    return nvl_err_set(err, NVL_ERR_INVALID_ARG, "page range '%s': pages are numbered from 1 (%ld is none)",
                                       spec, a);
                if (open_end)
                    return nvl_err_set(err, NVL_ERR_INVALID_ARG,
                                       "page range '%s': %ld- starts past the document's pages 1-%d (it has %d page%s)", spec,
                                       a, n_pages, n_pages, n_pages == 1 ? "" : "s");
                if (a == b)
                    return nvl_err_set(err, NVL_ERR_INVALID_ARG,
                                       "page range '%s': page %ld is outside the document's pages 1-%d (it has %d page%s)",
                                       spec, a, n_pages, n_pages, n_pages == 1 ? "" : "s");
                return nvl_err_set(err, NVL_ERR_INVALID_ARG,
                                   "page range '%s': %ld-%ld is outside the document's pages 1-%d (it has %d page%s)",
                                   spec, a, b, n_pages, n_pages, n_pages == 1 ? "" : "s");
            }
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
huge:
    nvl_free(out);
    nvl_free(seen);
    return nvl_err_set(err, NVL_ERR_INVALID_ARG, "page range '%s': a page number past any document (it has %d page%s)", spec,
                       n_pages, n_pages == 1 ? "" : "s");
}
