/* HEIF/HEIC still images (iPhone photos) through libheif (its HEVC decoder, libde265): the primary
 * image, with the file's transformations (irot, imir, clap) applied as libheif and pillow-heif (the
 * reference) apply them; an EXIF orientation inside a HEIF is not applied again (the HEIF spec:
 * the transformation properties govern). Converted to 8-bit RGB by libheif; alpha composited on
 * white as for every format (premultiplied alpha as such). The shown and the coded sizes are
 * checked against media_limits.max_pixels before decoding.
 * Errors: NVL_ERR_FORMAT "damaged HEIF" (libheif's words after it), NVL_ERR_UNSUPPORTED for what
 * libheif cannot decode (an AVIF-coded or other codec image, a feature it lacks), NVL_ERR_LIMIT. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "media_impl.h"

#ifdef NVL_HAVE_HEIF
#include <libheif/heif.h>

static pthread_once_t g_heif_once = PTHREAD_ONCE_INIT;
static void heif_start(void) { heif_init(NULL); } /* (never deinit: libheif counts its users) */

static nvl_status heif_fail(nvl_err *err, const char *name, const char *what, struct heif_error e) {
    const char *m = e.message && *e.message ? e.message : "no reason given";
    switch (e.code) {
    case heif_error_Unsupported_filetype:
    case heif_error_Unsupported_feature:
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: unsupported HEIF: %s: %s (convert it to JPEG or PNG)", name,
                           what, m);
    case heif_error_Memory_allocation_error:
        return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory %s", name, what);
    default:
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged HEIF: %s: %s", name, what, m);
    }
}

nvl_status media_decode_heif(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                             media_image **out, nvl_err *err) {
    *out = NULL;
    pthread_once(&g_heif_once, heif_start);
    struct heif_context *ctx = heif_context_alloc();
    struct heif_image_handle *h = NULL;
    struct heif_image *img = NULL;
    nvl_status st = NVL_OK;
    if (!ctx) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", name);
    struct heif_error e = heif_context_read_from_memory_without_copy(ctx, buf, len, NULL);
    if (e.code != heif_error_Ok) {
        st = heif_fail(err, name, "reading it", e);
        goto done;
    }
    if ((e = heif_context_get_primary_image_handle(ctx, &h)).code != heif_error_Ok) {
        st = heif_fail(err, name, "its primary image", e);
        goto done;
    }
    /* the size shown (after clap's cropping) and the size decoded (ispe: a grid or a coded image
       cropped small is decoded whole), both within the limit before anything is decoded */
    const int64_t w = heif_image_handle_get_width(h), hh = heif_image_handle_get_height(h),
                  iw = heif_image_handle_get_ispe_width(h), ih = heif_image_handle_get_ispe_height(h);
    if (w <= 0 || hh <= 0) {
        st = nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged HEIF: its primary image is %lldx%lld", name, (long long)w,
                         (long long)hh);
        goto done;
    }
    if ((st = media_check_pixels(name, w, hh, lim, err)) != NVL_OK) goto done;
    if ((iw > 0 || ih > 0) && (st = media_check_pixels(name, iw, ih, lim, err)) != NVL_OK) goto done;
    const int alpha = heif_image_handle_has_alpha_channel(h), premultiplied = alpha && heif_image_handle_is_premultiplied_alpha(h);
    e = heif_decode_image(h, &img, heif_colorspace_RGB, alpha ? heif_chroma_interleaved_RGBA : heif_chroma_interleaved_RGB,
                          NULL);
    if (e.code != heif_error_Ok) {
        st = heif_fail(err, name, "decoding it", e);
        goto done;
    }
    const int W = heif_image_get_width(img, heif_channel_interleaved), H = heif_image_get_height(img, heif_channel_interleaved);
    int stride = 0;
    const uint8_t *px = heif_image_get_plane_readonly(img, heif_channel_interleaved, &stride);
    if (!px || W <= 0 || H <= 0 || heif_image_get_bits_per_pixel_range(img, heif_channel_interleaved) != 8) {
        st = nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: unsupported HEIF: libheif gave no 8-bit RGB image", name);
        goto done;
    }
    if ((st = media_check_pixels(name, W, H, lim, err)) != NVL_OK) goto done;
    media_image *im = NULL;
    if ((st = media_image_new(&im, W, H, err)) != NVL_OK) goto done;
    const int n = alpha ? 4 : 3;
    for (int y = 0; y < H; y++) {
        const uint8_t *s = px + (size_t)y * (size_t)stride;
        uint8_t *d = im->rgb + (size_t)y * im->stride;
        if (!alpha) {
            memcpy(d, s, (size_t)W * 3);
            continue;
        }
        for (int x = 0; x < W; x++) { /* alpha composited on white, rounded as the other formats */
            const unsigned a = s[n * x + 3];
            for (int c = 0; c < 3; c++) {
                const unsigned v = s[n * x + c];
                /* premultiplied samples (libheif gives them as stored) already carry a: + 255 - a */
                d[3 * x + c] = premultiplied ? (uint8_t)(v + 255u - a > 255u ? 255u : v + 255u - a)
                                             : (uint8_t)((v * a + 255u * (255u - a) + 127u) / 255u);
            }
        }
    }
    *out = im;
done:
    heif_image_release(img);
    heif_image_handle_release(h);
    heif_context_free(ctx);
    return st;
}

int media_heif_supported(void) { return 1; }
#else
nvl_status media_decode_heif(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                             media_image **out, nvl_err *err) {
    (void)buf, (void)len, (void)lim;
    *out = NULL;
    return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: unsupported image format: HEIF/HEIC still image (this nanovl "
                       "has no HEIF decoder: libheif was not found when it was built; convert it to JPEG or PNG)", name);
}
int media_heif_supported(void) { return 0; }
#endif
