/* PDF through Poppler glib + cairo: open (password), page count, sizes after /Rotate, labels,
 * rendering on white at a DPI or to a long side, text layer. GError messages become the
 * nvl_err message; POPPLER_ERROR_ENCRYPTED becomes NVL_ERR_ENCRYPTED.
 * Files are opened with poppler_document_new_from_file: new_from_bytes crashes in poppler-glib
 * 22.12 when given a wrong password for some encrypted files (shared/media MANIFEST). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "media_impl.h"

#ifdef NVL_HAVE_PDF
#include <cairo.h>
#include <poppler.h>

struct media_pdf {
    PopplerDocument *doc;
    char *name;
    int n_pages;
    media_limits lim;
};

nvl_status media_pdf_open(media_pdf **out, const char *path, const char *password,
                          const media_limits *lim, nvl_err *err) {
    *out = NULL;
    media_limits d = media_limits_default();
    if (!lim) lim = &d;
    /* size cap and readability first, with our own messages */
    nvl_status st = media_check_file(path, lim, err);
    if (st != NVL_OK) return st;
    GError *gerr = NULL;
    char *abs = g_canonicalize_filename(path, NULL);
    char *uri = g_filename_to_uri(abs, NULL, &gerr);
    g_free(abs);
    if (!uri) {
        st = nvl_err_set(err, NVL_ERR_IO, "%s: %s", path, gerr ? gerr->message : "bad path");
        g_clear_error(&gerr);
        return st;
    }
    PopplerDocument *doc = poppler_document_new_from_file(uri, password, &gerr);
    g_free(uri);
    if (!doc) {
        int enc = gerr && gerr->domain == POPPLER_ERROR && gerr->code == POPPLER_ERROR_ENCRYPTED;
        if (enc)
            st = nvl_err_set(err, NVL_ERR_ENCRYPTED, "%s: PDF is encrypted: %s",
                             path, password ? "wrong password" : "a password is needed");
        else
            st = nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged PDF: %s", path,
                             gerr ? gerr->message : "cannot open");
        g_clear_error(&gerr);
        return st;
    }
    int n = poppler_document_get_n_pages(doc);
    if (n <= 0) {
        g_object_unref(doc);
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged PDF: it has no pages", path);
    }
    media_pdf *pdf = nvl_calloc(1, sizeof *pdf);
    if (pdf) pdf->name = nvl_strdup(path);
    if (!pdf || !pdf->name) {
        g_object_unref(doc);
        nvl_free(pdf);
        return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
    }
    pdf->doc = doc;
    pdf->n_pages = n;
    pdf->lim = *lim;
    *out = pdf;
    return NVL_OK;
}

void media_pdf_close(media_pdf *pdf) {
    if (!pdf) return;
    g_object_unref(pdf->doc);
    nvl_free(pdf->name);
    nvl_free(pdf);
}

int media_pdf_page_count(const media_pdf *pdf) { return pdf->n_pages; }

static nvl_status get_page(const media_pdf *pdf, int page, PopplerPage **out, nvl_err *err) {
    *out = NULL;
    if (page < 0 || page >= pdf->n_pages)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: page %d does not exist (the document has %d)",
                           pdf->name, page + 1, pdf->n_pages);
    *out = poppler_document_get_page(pdf->doc, page);
    if (!*out) return nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged PDF: page %d cannot be read", pdf->name, page + 1);
    return NVL_OK;
}

nvl_status media_pdf_page_size(const media_pdf *pdf, int page, double *w, double *h, nvl_err *err) {
    PopplerPage *p = NULL;
    nvl_status st = get_page(pdf, page, &p, err);
    if (st != NVL_OK) return st;
    poppler_page_get_size(p, w, h);
    g_object_unref(p);
    if (!(*w > 0 && *h > 0 && isfinite(*w) && isfinite(*h)))
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged PDF: page %d has size %g x %g pt", pdf->name,
                           page + 1, *w, *h);
    return NVL_OK;
}

char *media_pdf_page_label(const media_pdf *pdf, int page) {
    PopplerPage *p = NULL;
    if (get_page(pdf, page, &p, NULL) != NVL_OK) return NULL;
    gchar *l = poppler_page_get_label(p);
    g_object_unref(p);
    char *r = l ? nvl_strdup(l) : NULL;
    g_free(l);
    return r;
}

nvl_status media_pdf_render(const media_pdf *pdf, int page, double dpi, int long_side,
                            media_image **out, nvl_err *err) {
    *out = NULL;
    double w = 0, h = 0;
    nvl_status st = media_pdf_page_size(pdf, page, &w, &h, err);
    if (st != NVL_OK) return st;
    double scale;
    if (dpi > 0) scale = dpi / 72.0;
    else scale = (double)(long_side > 0 ? long_side : MEDIA_PDF_DEFAULT_LONG_SIDE) / (w > h ? w : h);
    /* pdftoppm's size rule: ceil(points * dpi / 72) */
    double fw = ceil(w * scale - 1e-6), fh = ceil(h * scale - 1e-6);
    if (fw < 1) fw = 1;
    if (fh < 1) fh = 1;
    nvl_err e2 = {0};
    if (fw > 1e6 || fh > 1e6 || media_check_pixels(pdf->name, (int64_t)fw, (int64_t)fh, &pdf->lim, &e2) != NVL_OK) {
        const size_t nl = strlen(pdf->name); /* e2 says "name: WxH = N pixels exceeds ...": the page goes in */
        const char *why = !strncmp(e2.msg, pdf->name, nl) && !strncmp(e2.msg + nl, ": ", 2) ? e2.msg + nl + 2 : e2.msg;
        return nvl_err_set(err, NVL_ERR_LIMIT, "%s: page %d would render at %.0fx%.0f pixels%s%s (ask for %s)", pdf->name,
                           page + 1, fw, fh, *why ? ": " : "", why, dpi > 0 ? "a lower DPI" : "a smaller long side");
    }
    const int W = (int)fw, H = (int)fh;
    PopplerPage *p = NULL;
    if ((st = get_page(pdf, page, &p, err)) != NVL_OK) return st;
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, W, H);
    if (cairo_surface_status(surf) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(surf);
        g_object_unref(p);
        return nvl_err_set(err, NVL_ERR_NOMEM, "%s: cannot allocate a %dx%d page", pdf->name, W, H);
    }
    cairo_t *cr = cairo_create(surf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_scale(cr, scale, scale);
    poppler_page_render(p, cr);
    cairo_destroy(cr);
    cairo_surface_flush(surf);
    g_object_unref(p);
    media_image *img = NULL;
    if ((st = media_image_new(&img, W, H, err)) == NVL_OK) {
        const uint8_t *src = cairo_image_surface_get_data(surf);
        const int sstride = cairo_image_surface_get_stride(surf);
        for (int y = 0; y < H; y++) {
            const uint32_t *row = (const uint32_t *)(src + (size_t)y * (size_t)sstride);
            uint8_t *d = img->rgb + (size_t)y * img->stride;
            for (int x = 0; x < W; x++) { /* opaque after the white fill: no un-premultiply */
                d[3 * x + 0] = (uint8_t)(row[x] >> 16);
                d[3 * x + 1] = (uint8_t)(row[x] >> 8);
                d[3 * x + 2] = (uint8_t)row[x];
            }
        }
        img->index = page;
        *out = img;
    }
    cairo_surface_destroy(surf);
    return st;
}

nvl_status media_pdf_select_pages(const media_pdf *pdf, const char *spec, int **pages, int *n,
                                  nvl_err *err) {
    nvl_status st = media_parse_page_range(spec, pdf->n_pages, pages, n, err);
    if (st == NVL_OK && *n > pdf->lim.max_pages) {
        st = nvl_err_set(err, NVL_ERR_LIMIT, "%s: %d pages selected, above the limit of %d (choose pages with a range)",
                         pdf->name, *n, pdf->lim.max_pages);
        nvl_freep(pages);
        *n = 0;
    }
    if (st == NVL_ERR_INVALID_ARG && err) nvl_err_prefix(err, "%s", pdf->name);
    return st;
}

nvl_status media_pdf_page_text(const media_pdf *pdf, int page, char **text, nvl_err *err) {
    *text = NULL;
    PopplerPage *p = NULL;
    nvl_status st = get_page(pdf, page, &p, err);
    if (st != NVL_OK) return st;
    gchar *t = poppler_page_get_text(p);
    g_object_unref(p);
    *text = nvl_strdup(t ? t : "");
    g_free(t);
    return *text ? NVL_OK : nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", pdf->name);
}

#else
struct media_pdf {
    int unused;
};
nvl_status media_pdf_open(media_pdf **out, const char *path, const char *password,
                          const media_limits *lim, nvl_err *err) {
    (void)password, (void)lim;
    *out = NULL;
    return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: PDF support is not built into this nanovl", path);
}
void media_pdf_close(media_pdf *pdf) { (void)pdf; }
int media_pdf_page_count(const media_pdf *pdf) { (void)pdf; return 0; }
nvl_status media_pdf_page_size(const media_pdf *pdf, int page, double *w, double *h, nvl_err *err) {
    (void)pdf, (void)page, (void)w, (void)h;
    return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "PDF support is not built into this nanovl");
}
char *media_pdf_page_label(const media_pdf *pdf, int page) { (void)pdf, (void)page; return NULL; }
nvl_status media_pdf_select_pages(const media_pdf *pdf, const char *spec, int **pages, int *n, nvl_err *err) {
    (void)pdf, (void)spec;
    *pages = NULL;
    *n = 0;
    return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "PDF support is not built into this nanovl");
}
nvl_status media_pdf_render(const media_pdf *pdf, int page, double dpi, int long_side,
                            media_image **out, nvl_err *err) {
    (void)pdf, (void)page, (void)dpi, (void)long_side;
    *out = NULL;
    return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "PDF support is not built into this nanovl");
}
nvl_status media_pdf_page_text(const media_pdf *pdf, int page, char **text, nvl_err *err) {
    (void)pdf, (void)page;
    *text = NULL;
    return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "PDF support is not built into this nanovl");
}
#endif
