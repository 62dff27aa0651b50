/* PDF through Poppler glib + cairo: open (password), page count, sizes after /Rotate, labels,
 * rendering on white at a DPI or to a long side, text layer. GError messages become the
 * nvl_err message; POPPLER_ERROR_ENCRYPTED becomes NVL_ERR_ENCRYPTED.
 * Files are opened with poppler_document_new_from_file: new_from_bytes crashes in poppler-glib
 * 22.12 when given a wrong password for some encrypted files (shared/media MANIFEST).
 *
 * Where Poppler runs. Without a sandbox (media_pdf_set_sandbox) in this process. With one, every
 * Poppler call for a document runs in a process of its own, "the renderer" (proc.c): opening,
 * sizes, labels, text and pages, each bounded by the sandbox's time and memory and by the
 * document's cancel callback. A renderer stopped (or crashed) is started again for the next call.
 * If it cannot start at all the document is opened in this process, with a warning. Renderers
 * are named nanovl-pdf, one is started ahead for the next document (g_spare), and at most
 * PDF_MAX_RENDERERS are kept between calls (g_live).
 * Protocol on the renderer's fd 3, host byte order (both ends are this executable): the renderer
 * says PDF_HELLO; the parent sends a pdf_req (PDF_OPEN is followed by the path and password bytes,
 * then one byte carrying the parent's open descriptor of the file, which the renderer opens as
 * /proc/self/fd/N); each is answered by a pdf_rep and its message bytes, then on success the op's
 * payload:
 *   PDF_OPEN   int32 page count
 *   PDF_SIZE   two doubles, width and height in points
 *   PDF_LABEL  uint32 length (PDF_NONE: no label) and the bytes
 *   PDF_TEXT   uint32 length and the bytes
 *   PDF_RENDER height * width * 3 RGB bytes */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "media_impl.h"
#include "base/clock.h"

#ifdef NVL_HAVE_PDF
#include <cairo.h>
#include <poppler.h>

static struct {
    media_pdf_sandbox sb;
    char exe[4096];
} g_sandbox = {.sb = {.exe = NULL, .timeout_s = 120, .max_mb = 2048}};

media_pdf_sandbox media_pdf_sandbox_default(void) {
    media_pdf_sandbox d = {.exe = NULL, .timeout_s = 120, .max_mb = 2048};
    return d;
}


/* One renderer started ahead, for the next document: its libraries load (about 75 ms for this
 * executable's 150 shared libraries on a 2-core VM) while the current document is read, so only
 * the first document of a process waits for a start. Each document gets a process of its own. */
static media_proc_spare g_spare = MEDIA_PROC_SPARE_INIT;

void media_pdf_set_sandbox(const media_pdf_sandbox *sb) {
    const char *exe = media_proc_set_exe(&g_spare, g_sandbox.exe, sizeof g_sandbox.exe, g_sandbox.sb.exe, sb->exe);
    g_sandbox.sb = *sb;
    g_sandbox.sb.exe = exe;
}

media_pdf_sandbox media_pdf_get_sandbox(void) { return g_sandbox.sb; }

struct media_pdf {
    PopplerDocument *doc; /* opened in this process; NULL: through the renderer */
    char *name;
    char *password; /* the renderer opens the file again after a stop; NULL: none */
    int n_pages;
    media_limits lim;
    pthread_mutex_t mu; /* one call at a time: Poppler's document, the renderer's socket */
    media_proc proc;
    int fd;             /* the file, opened here: the renderer reads it through this descriptor */
    struct media_pdf *lru_prev, *lru_next; /* among the documents with a renderer (g_live) */
    int listed;
    int (*cancelled)(void *ctx);
    void *cancel_ctx;
};

// ---------------------------------------------------------------------------
// Poppler, wherever it runs (this process or the renderer): the same calls, the same messages

/* Opens file (a path, or /proc/self/fd/N in the renderer); errors name path. */
static nvl_status doc_open(const char *file, const char *path, const char *password, PopplerDocument **out,
                           int *n_pages, nvl_err *err) {
    *out = NULL;
    GError *gerr = NULL;
    char *abs = g_canonicalize_filename(file, NULL);
    char *uri = g_filename_to_uri(abs, NULL, &gerr);
    g_free(abs);
    nvl_status st;
    if (!uri) {
        st = nvl_err_set(err, NVL_ERR_IO, "%s: %s", path, gerr ? gerr->message : "bad path");
        g_clear_error(&gerr);
        return st;
    }
    PopplerDocument *doc = poppler_document_new_from_file(uri, password, &gerr);
    if (!doc && password && *password && gerr && gerr->domain == POPPLER_ERROR && gerr->code == POPPLER_ERROR_ENCRYPTED) {
        /* a password that does not open it, for a file that needs none (an owner password only,
           its user password empty): opened without. One --password, or one request's, is given
           for every file of a run, and such a PDF beside the protected one failed as "wrong
           password" (a review) */
        GError *g2 = NULL;
        doc = poppler_document_new_from_file(uri, NULL, &g2);
        if (doc) g_clear_error(&gerr);
        g_clear_error(&g2);
    }
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
    *out = doc;
    *n_pages = n;
    return NVL_OK;
}

static nvl_status doc_page(PopplerDocument *doc, const char *name, int page, PopplerPage **out, nvl_err *err) {
    *out = poppler_document_get_page(doc, page);
    if (!*out) return nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged PDF: page %d cannot be read", name, page + 1);
    return NVL_OK;
}

static nvl_status doc_page_size(PopplerDocument *doc, const char *name, int page, double *w, double *h, nvl_err *err) {
    PopplerPage *p = NULL;
    nvl_status st = doc_page(doc, name, page, &p, err);
    if (st != NVL_OK) return st;
    poppler_page_get_size(p, w, h);
    g_object_unref(p);
    return NVL_OK;
}

/* The label, g_malloc'ed, or NULL. */
static gchar *doc_page_label(PopplerDocument *doc, int page) {
    PopplerPage *p = poppler_document_get_page(doc, page);
    if (!p) return NULL;
    gchar *l = poppler_page_get_label(p);
    g_object_unref(p);
    /* at most MEDIA_PDF_LABEL_MAX bytes, cut where a UTF-8 character begins, "..." after: a
       label of 100,000 characters (a prefix, or /S /a numbering past a million) was printed
       whole on one line (a review) */
    if (l && strlen(l) > MEDIA_PDF_LABEL_MAX) {
        size_t n = MEDIA_PDF_LABEL_MAX;
        while (n > 0 && ((unsigned char)l[n] & 0xC0) == 0x80) n--;
        memcpy(l + n, "...", 4);
    }
    return l;
}

/* The text layer, g_malloc'ed (possibly empty). */
static nvl_status doc_page_text(PopplerDocument *doc, const char *name, int page, gchar **text, nvl_err *err) {
    PopplerPage *p = NULL;
    nvl_status st = doc_page(doc, name, page, &p, err);
    if (st != NVL_OK) return st;
    *text = poppler_page_get_text(p);
    g_object_unref(p);
    if (!*text) *text = g_strdup("");
    return NVL_OK;
}

/* cairo's image surfaces are at most this many pixels a side (pixman's limit, cairo-image-surface.c
 * MAX_IMAGE_SIZE): a page past it is rendered in blocks (a 612 x 14400 pt page at 200 dpi, 1700 x
 * 40000, was refused as "cannot allocate" where pdftoppm renders it). A page within it is one
 * surface, as before: poppler scales embedded images for the surface it draws on, so blocks of a
 * page with images differ from one surface by a few levels near their seams (up to 81 on a CMYK
 * image page, in 0.2 % of its pixels, blocks of 3,947 rows) while vector fills and text match. */
#define PDF_CAIRO_MAX_SIDE 32767

/* Renders 0-based page of doc at scale into rgb (H rows of W * 3 bytes) on white: one surface, or
 * blocks of at most PDF_CAIRO_MAX_SIDE a side, each a surface translated to its place (the same
 * device-space geometry; poppler draws the whole page into each, clipped). */
static nvl_status render_rgb(PopplerDocument *doc, const char *name, int page, int W, int H, double scale,
                             uint8_t *rgb, nvl_err *err) {
    PopplerPage *p = NULL;
    nvl_status st = doc_page(doc, name, page, &p, err);
    if (st != NVL_OK) return st;
    const int bw = W < PDF_CAIRO_MAX_SIDE ? W : PDF_CAIRO_MAX_SIDE, bh = H < PDF_CAIRO_MAX_SIDE ? H : PDF_CAIRO_MAX_SIDE;
    for (int y0 = 0; y0 < H && st == NVL_OK; y0 += bh) {
        const int h = H - y0 < bh ? H - y0 : bh;
        for (int x0 = 0; x0 < W && st == NVL_OK; x0 += bw) {
            const int w = W - x0 < bw ? W - x0 : bw;
            cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, w, h);
            const cairo_status_t cs = cairo_surface_status(surf);
            if (cs != CAIRO_STATUS_SUCCESS) {
                st = cs == CAIRO_STATUS_NO_MEMORY
                         ? nvl_err_set(err, NVL_ERR_NOMEM, "%s: page %d: cannot allocate a %dx%d block of its %dx%d pixels",
                                       name, page + 1, w, h, W, H)
                         : nvl_err_set(err, NVL_ERR_INTERNAL, "%s: page %d: cairo cannot make a %dx%d surface (%s)", name,
                                       page + 1, w, h, cairo_status_to_string(cs));
                cairo_surface_destroy(surf);
                break;
            }
            cairo_t *cr = cairo_create(surf);
            cairo_set_source_rgb(cr, 1, 1, 1);
            cairo_paint(cr);
            cairo_translate(cr, -x0, -y0);
            cairo_scale(cr, scale, scale);
            poppler_page_render(p, cr);
            cairo_destroy(cr);
            cairo_surface_flush(surf);
            const uint8_t *src = cairo_image_surface_get_data(surf);
            const int sstride = cairo_image_surface_get_stride(surf);
            for (int y = 0; y < h; y++) {
                const uint32_t *row = (const uint32_t *)(src + (size_t)y * (size_t)sstride);
                uint8_t *d = rgb + ((size_t)(y0 + y) * (size_t)W + (size_t)x0) * 3;
                for (int x = 0; x < w; x++) { /* opaque after the white fill: no un-premultiply */
                    d[3 * x + 0] = (uint8_t)(row[x] >> 16);
                    d[3 * x + 1] = (uint8_t)(row[x] >> 8);
                    d[3 * x + 2] = (uint8_t)row[x];
                }
            }
            cairo_surface_destroy(surf);
        }
    }
    g_object_unref(p);
    return st;
}

// ---------------------------------------------------------------------------
// The renderer process

#define PDF_HELLO 0x6e766c70u /* "nvlp" */
enum { PDF_OPEN = 1, PDF_SIZE, PDF_LABEL, PDF_TEXT, PDF_RENDER };
#define PDF_NONE 0xffffffffu   /* no password; no label */
#define PDF_MAX_STRING (1u << 30) /* a text layer or label longer than this is refused */

typedef struct pdf_req {
    uint32_t op;
    int32_t page, width, height;
    double scale;
    uint32_t path_len, password_len; /* PDF_OPEN; password_len PDF_NONE: none */
} pdf_req;

typedef struct pdf_rep {
    int32_t status; /* nvl_status */
    uint32_t msg_len;
} pdf_rep;

static int reply(int fd, nvl_status st, const char *msg) {
    pdf_rep r = {.status = st, .msg_len = st == NVL_OK ? 0 : (uint32_t)strlen(msg)};
    return media_proc_write_full(fd, &r, sizeof r) && media_proc_write_full(fd, msg, r.msg_len);
}

static int reply_string(int fd, const char *s) {
    const uint32_t n = s ? (uint32_t)strlen(s) : PDF_NONE;
    return media_proc_write_full(fd, &n, sizeof n) && (!s || media_proc_write_full(fd, s, n));
}

/* One request; 0 ends the renderer (the parent gone, or a request not of this protocol). */
static int worker_request(int fd, const pdf_req *q, PopplerDocument **doc, int *n_pages, char **path) {
    nvl_err e = {0};
    nvl_status st = NVL_OK;
    if (q->op == PDF_OPEN) {
        if (*doc || !q->path_len || q->path_len > 65536 || (q->password_len != PDF_NONE && q->password_len > 65536))
            return 0;
        *path = malloc(q->path_len + 1);
        char *pw = q->password_len != PDF_NONE ? malloc(q->password_len + 1) : NULL;
        if (!*path || (q->password_len != PDF_NONE && !pw)) return 0;
        if (!media_proc_read_full(fd, *path, q->path_len) || (pw && !media_proc_read_full(fd, pw, q->password_len)))
            return 0;
        (*path)[q->path_len] = 0;
        if (pw) pw[q->password_len] = 0;
        const int file_fd = media_proc_recv_fd(fd); /* the parent's open file (it sends it after the path) */
        char file[64];
        snprintf(file, sizeof file, "/proc/self/fd/%d", file_fd);
        /* a test's knob (tests/api/test_serve_ocr_open.c): NVL_TEST_RENDERER_SLOW_OPEN="SUBSTRING:MS"
           makes opening a document whose path (or the file it was opened from: a server reads files
           through their descriptors) holds SUBSTRING take MS ms more, as Poppler
           rebuilding the cross-reference table of a large damaged file does */
        const char *slow = getenv("NVL_TEST_RENDERER_SLOW_OPEN"), *colon = slow ? strrchr(slow, ':') : NULL;
        if (colon && colon > slow) {
            char pat[256];
            snprintf(pat, sizeof pat, "%.*s", (int)(colon - slow), slow);
            const long ms = atol(colon + 1);
            const struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
            char real[4096] = "";
            const ssize_t rl = file_fd >= 0 ? readlink(file, real, sizeof real - 1) : -1;
            if (rl > 0) real[rl] = 0;
            if (ms > 0 && (strstr(*path, pat) || strstr(real, pat))) nanosleep(&ts, NULL);
        }
        st = file_fd >= 0 ? doc_open(file, *path, pw, doc, n_pages, &e)
                          : nvl_err_set(&e, NVL_ERR_IO, "%s: the renderer did not receive the file", *path);
        free(pw);
        const int32_t n = *n_pages;
        return reply(fd, st, e.msg) && (st != NVL_OK || media_proc_write_full(fd, &n, sizeof n));
    }
    if (!*doc || q->page < 0 || q->page >= *n_pages) return 0;
    /* a test's knob (tests/media/test_pdf_sandbox.c): the renderer dies on this 1-based page, as it
       would where Poppler crashes */
    const char *die = getenv("NVL_TEST_RENDERER_ABORT_PAGE");
    if (die && atoi(die) == q->page + 1) raise(SIGABRT);
    /* and this knob: it answers with a malformed length and waits for more, as a renderer taken
       over through a Poppler bug might */
    const char *bad = getenv("NVL_TEST_RENDERER_BAD_PAGE");
    if (bad && atoi(bad) == q->page + 1) {
        const pdf_rep r = {.status = NVL_ERR_FORMAT, .msg_len = 0xffffff00u};
        return media_proc_write_full(fd, &r, sizeof r);
    }
    switch (q->op) {
    case PDF_SIZE: {
        double wh[2] = {0, 0};
        st = doc_page_size(*doc, *path, q->page, &wh[0], &wh[1], &e);
        return reply(fd, st, e.msg) && (st != NVL_OK || media_proc_write_full(fd, wh, sizeof wh));
    }
    case PDF_LABEL: {
        gchar *l = doc_page_label(*doc, q->page);
        const int ok = reply(fd, NVL_OK, "") && reply_string(fd, l);
        g_free(l);
        return ok;
    }
    case PDF_TEXT: {
        gchar *t = NULL;
        st = doc_page_text(*doc, *path, q->page, &t, &e);
        if (st == NVL_OK && strlen(t) >= PDF_MAX_STRING)
            st = nvl_err_set(&e, NVL_ERR_LIMIT, "%s: page %d: its text layer is over 1 GiB", *path, q->page + 1);
        const int ok = reply(fd, st, e.msg) && (st != NVL_OK || reply_string(fd, t));
        g_free(t);
        return ok;
    }
    case PDF_RENDER: {
        if (q->width <= 0 || q->height <= 0) return 0;
        /* a third knob: the page's pixels trickle, a byte every 10 ms (the parent's time bound must
           hold while bytes keep coming) */
        const char *trickle = getenv("NVL_TEST_RENDERER_TRICKLE_PAGE");
        if (trickle && atoi(trickle) == q->page + 1) {
            if (!reply(fd, NVL_OK, "")) return 0;
            for (;;) {
                const struct timespec ts = {0, 10 * 1000000L};
                nanosleep(&ts, NULL);
                if (!media_proc_write_full(fd, "", 1)) return 0;
            }
        }
        const size_t n = (size_t)q->width * (size_t)q->height * 3;
        uint8_t *rgb = malloc(n);
        st = rgb ? render_rgb(*doc, *path, q->page, q->width, q->height, q->scale, rgb, &e)
                 : nvl_err_set(&e, NVL_ERR_NOMEM, "%s: cannot allocate a %dx%d page", *path, q->width, q->height);
        const int ok = reply(fd, st, e.msg) && (st != NVL_OK || media_proc_write_full(fd, rgb, n));
        free(rgb);
        return ok;
    }
    default:
        return 0;
    }
}

static int worker_serve(void) {
    const int fd = MEDIA_PROC_FD;
    if (!media_proc_worker_begin("nanovl-pdf", PDF_HELLO)) return 0;
    PopplerDocument *doc = NULL;
    int n_pages = 0;
    char *path = NULL;
    for (;;) {
        pdf_req q;
        if (!media_proc_read_full(fd, &q, sizeof q) || !worker_request(fd, &q, &doc, &n_pages, &path)) return 0;
    }
}

void media_pdf_worker_main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], MEDIA_PDF_WORKER_ARG)) return;
    _exit(worker_serve()); /* _exit: no atexit handlers or leak reports in the renderer */
}

// ---------------------------------------------------------------------------
// The parent's side

/* What a call was for, in its errors. */
static void call_what(const pdf_req *q, char *buf, size_t cap) {
    if (q->op == PDF_OPEN) snprintf(buf, cap, "opening it");
    else snprintf(buf, cap, "%s page %d", q->op == PDF_RENDER ? "rendering" : "reading", q->page + 1);
}

/* Documents with a running renderer, least recently used first (g_live_mu). At most
 * PDF_MAX_RENDERERS are kept between calls: a request naming 60 PDFs held 60 renderers of about
 * 32 MB each until it ended, though its pages render one at a time. Starting one more stops the
 * least recently used idle ones (their documents start a renderer again if read again); renderers
 * in a call are not stopped, so while more than that many calls run at once (one per thread
 * reading PDFs) there is one per call. Lock order: a document's mu, then g_live_mu; other
 * documents' mu only by trylock. */
#define PDF_MAX_RENDERERS 8
static pthread_mutex_t g_live_mu = PTHREAD_MUTEX_INITIALIZER;
static media_pdf *g_live_head, *g_live_tail;
static int g_n_live;
static int g_n_opening; /* renderers opening a document, not yet listed (atomic) */

static void live_unlink(media_pdf *pdf) {
    if (!pdf->listed) return;
    if (pdf->lru_prev) pdf->lru_prev->lru_next = pdf->lru_next;
    else g_live_head = pdf->lru_next;
    if (pdf->lru_next) pdf->lru_next->lru_prev = pdf->lru_prev;
    else g_live_tail = pdf->lru_prev;
    pdf->lru_prev = pdf->lru_next = NULL;
    pdf->listed = 0;
    g_n_live--;
}

/* pdf (its mu held) was used now: the end of the list. */
static void live_touch(media_pdf *pdf) {
    pthread_mutex_lock(&g_live_mu);
    live_unlink(pdf);
    pdf->lru_prev = g_live_tail;
    if (g_live_tail) g_live_tail->lru_next = pdf;
    else g_live_head = pdf;
    g_live_tail = pdf;
    pdf->listed = 1;
    g_n_live++;
    pthread_mutex_unlock(&g_live_mu);
}

/* Stops pdf's renderer (its mu held). */
static void renderer_stop(media_pdf *pdf) {
    media_proc_kill(&pdf->proc);
    pthread_mutex_lock(&g_live_mu);
    live_unlink(pdf);
    pthread_mutex_unlock(&g_live_mu);
}

/* Before pdf (its mu held) starts a renderer: idle ones stopped down to PDF_MAX_RENDERERS - 1. */
static void live_make_room(media_pdf *pdf) {
    pthread_mutex_lock(&g_live_mu);
    for (media_pdf *q = g_live_head; q && g_n_live >= PDF_MAX_RENDERERS;) {
        media_pdf *next = q->lru_next;
        if (q != pdf && pthread_mutex_trylock(&q->mu) == 0) { /* idle: no call in flight */
            media_proc_kill(&q->proc);
            live_unlink(q);
            pthread_mutex_unlock(&q->mu);
        }
        q = next;
    }
    pthread_mutex_unlock(&g_live_mu);
}

/* Error for a call whose wait did not end in MEDIA_PROC_OK; the renderer is stopped (started
 * again by the next call). */
static nvl_status renderer_failed(media_pdf *pdf, const pdf_req *q, enum media_proc_end why, nvl_err *err) {
    char how[128], what[64];
    call_what(q, what, sizeof what);
    nvl_status st;
    const media_pdf_sandbox *sb = &g_sandbox.sb;
    switch (why) {
    case MEDIA_PROC_TIMEOUT:
        st = nvl_err_set(err, NVL_ERR_TIMEOUT, "%s: %s took longer than %g s; stopped (the page time limit, --page-timeout; a "
                         "hostile or extremely complex page)", pdf->name, what, sb->timeout_s);
        break;
    case MEDIA_PROC_MEMORY:
        st = nvl_err_set(err, NVL_ERR_LIMIT, "%s: %s needed more than %g MiB of memory besides the page's pixels (the "
                         "page memory limit, --page-memory); stopped (a PDF can declare images far larger than its page)", pdf->name,
                         what, sb->max_mb);
        break;
    case MEDIA_PROC_CANCELLED:
        st = nvl_err_set(err, NVL_ERR_CANCELLED, "%s: %s: cancelled", pdf->name, what);
        break;
    case MEDIA_PROC_BAD: /* a renderer Poppler's bug may control: its answer is not believed */
        st = nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged PDF: %s failed: the renderer's answer was malformed",
                         pdf->name, what);
        break;
    default:
        st = media_proc_death(&pdf->proc, how, sizeof how)
                 ? nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged PDF: %s failed: the renderer %s", pdf->name, what, how)
                 : nvl_err_set(err, NVL_ERR_IO, "%s: %s failed: the PDF renderer %s", pdf->name, what, how);
        break;
    }
    renderer_stop(pdf);
    return st;
}

void media_pdf_sandbox_end_spare(void) { media_proc_spare_end(&g_spare); }

int media_pdf_renderers(void) {
    pthread_mutex_lock(&g_live_mu);
    const int n = g_n_live;
    pthread_mutex_unlock(&g_live_mu);
    return n + __atomic_load_n(&g_n_opening, __ATOMIC_RELAXED) + media_proc_spare_running(&g_spare);
}

/* A renderer that said hello: the spare (when use_spare), else one started now; then a new spare.
 * b: the call's deadline and cancel bound the start too. */
static nvl_status renderer_take(media_proc *p, int use_spare, const media_proc_bounds *b, nvl_err *err) {
    return media_proc_take(&g_spare, g_sandbox.sb.exe, MEDIA_PDF_WORKER_ARG, PDF_HELLO, "PDF renderer", use_spare, NULL,
                           0, b, p, err);
}

/* The sandbox's bounds for one call; max_rss counts the page's pixels (W x H) on top. */
static media_proc_bounds call_bounds(const media_pdf *pdf, size_t pixels) {
    const media_pdf_sandbox *sb = &g_sandbox.sb;
    media_proc_bounds b = {.deadline = sb->timeout_s > 0 ? nvl_now() + sb->timeout_s : 0,
                           .max_rss = sb->max_mb > 0 ? (size_t)(sb->max_mb * 1048576.0) + 7 * pixels : 0,
                           .cancelled = pdf->cancelled, .ctx = pdf->cancel_ctx};
    return b;
}

/* Reads a pdf_rep and its message; a failed one becomes *st / *err (as the renderer worded it). */
static enum media_proc_end read_reply(media_pdf *pdf, const media_proc_bounds *b, nvl_status *st, nvl_err *err) {
    pdf_rep r;
    enum media_proc_end end = media_proc_read(&pdf->proc, &r, sizeof r, b);
    if (end != MEDIA_PROC_OK) return end;
    char msg[NVL_ERR_MSG_MAX];
    if (r.msg_len >= sizeof msg) return MEDIA_PROC_BAD;
    if ((end = media_proc_read(&pdf->proc, msg, r.msg_len, b)) != MEDIA_PROC_OK) return end;
    msg[r.msg_len] = 0;
    *st = (nvl_status)r.status;
    if (*st != NVL_OK) nvl_err_set(err, *st, "%s", msg);
    return MEDIA_PROC_OK;
}

/* Starts the document's renderer (pdf->mu held) and has it open the document (the path for its
 * messages, the password, then the open file itself); *n_pages its count. *no_renderer = 1 when
 * no renderer could start (may be NULL). A taken spare that turns out to have ended (it said hello
 * before it was killed) is replaced by a new renderer once. cb: the call's bounds (NULL: the
 * opening's own, call_bounds), which its start counts in too. */
static nvl_status renderer_open_call(media_pdf *pdf, int *n_pages, int *no_renderer, const pdf_req *qp, size_t pl,
                                     size_t wl, const media_proc_bounds *bp, nvl_err *err);
static nvl_status renderer_open(media_pdf *pdf, int *n_pages, int *no_renderer, const media_proc_bounds *cb,
                                nvl_err *err) {
    const size_t pl = strlen(pdf->name), wl = pdf->password ? strlen(pdf->password) : 0;
    const pdf_req q = {.op = PDF_OPEN, .path_len = (uint32_t)pl,
                       .password_len = pdf->password ? (uint32_t)wl : PDF_NONE};
    live_make_room(pdf);
    const media_proc_bounds own = call_bounds(pdf, 0), b = cb ? *cb : own;
    __atomic_add_fetch(&g_n_opening, 1, __ATOMIC_RELAXED); /* (counted by media_pdf_renderers) */
    const nvl_status st = renderer_open_call(pdf, n_pages, no_renderer, &q, pl, wl, &b, err);
    __atomic_sub_fetch(&g_n_opening, 1, __ATOMIC_RELAXED);
    return st;
}

/* renderer_open's attempts (the first with the spare, a second if it had ended). */
static nvl_status renderer_open_call(media_pdf *pdf, int *n_pages, int *no_renderer, const pdf_req *qp, size_t pl,
                                     size_t wl, const media_proc_bounds *bp, nvl_err *err) {
    const pdf_req q = *qp;
    const media_proc_bounds b = *bp;
    for (int attempt = 0;; attempt++) {
        nvl_status st = renderer_take(&pdf->proc, attempt == 0, &b, err);
        if (no_renderer) *no_renderer = media_proc_none_started(st);
        if (st != NVL_OK && !media_proc_none_started(st)) nvl_err_prefix(err, "%s", pdf->name);
        if (st != NVL_OK) return st;
        enum media_proc_end end = media_proc_write(&pdf->proc, &q, sizeof q);
        if (end == MEDIA_PROC_OK) end = media_proc_write(&pdf->proc, pdf->name, pl);
        if (end == MEDIA_PROC_OK && wl) end = media_proc_write(&pdf->proc, pdf->password, wl);
        if (end == MEDIA_PROC_OK) end = media_proc_send_fd(&pdf->proc, pdf->fd);
        int32_t n = 0;
        if (end == MEDIA_PROC_OK) end = read_reply(pdf, &b, &st, err);
        if (end == MEDIA_PROC_OK && st == NVL_OK) end = media_proc_read(&pdf->proc, &n, sizeof n, &b);
        if (end == MEDIA_PROC_OK && st == NVL_OK && n <= 0) end = MEDIA_PROC_BAD;
        if (end == MEDIA_PROC_GONE && attempt == 0) {
            media_proc_kill(&pdf->proc);
            continue;
        }
        if (end != MEDIA_PROC_OK) return renderer_failed(pdf, &q, end, err);
        if (st != NVL_OK) {
            media_proc_kill(&pdf->proc);
            return st;
        }
        live_touch(pdf);
        *n_pages = n;
        return NVL_OK;
    }
}

/* Sends q to the document's renderer (started again if it was stopped) and reads the reply's
 * header within b. pdf->mu held. A wait that ends otherwise stops the renderer; *err says why. */
static nvl_status renderer_call(media_pdf *pdf, const pdf_req *q, const media_proc_bounds *b, nvl_err *err) {
    for (int attempt = 0;; attempt++) {
        if (!pdf->proc.pid) {
            int n = 0;
            nvl_status st = renderer_open(pdf, &n, NULL, b, err);
            if (st != NVL_OK) return st;
            if (n != pdf->n_pages) {
                renderer_stop(pdf);
                return nvl_err_set(err, NVL_ERR_IO, "%s: the file changed while it was read (%d pages, now %d)",
                                   pdf->name, pdf->n_pages, n);
            }
        } else {
            live_touch(pdf);
        }
        if (media_proc_write(&pdf->proc, q, sizeof *q) == MEDIA_PROC_OK) break;
        if (attempt) return renderer_failed(pdf, q, MEDIA_PROC_GONE, err);
        renderer_stop(pdf); /* it ended while idle (killed from outside): once more */
    }
    nvl_status st = NVL_OK;
    const enum media_proc_end end = read_reply(pdf, b, &st, err);
    return end == MEDIA_PROC_OK ? st : renderer_failed(pdf, q, end, err);
}

/* A string payload (nvl_malloc'ed; NULL for PDF_NONE) after a successful reply. */
static nvl_status renderer_string(media_pdf *pdf, const pdf_req *q, const media_proc_bounds *b, char **out,
                                  nvl_err *err) {
    *out = NULL;
    uint32_t n = 0;
    enum media_proc_end end = media_proc_read(&pdf->proc, &n, sizeof n, b);
    if (end == MEDIA_PROC_OK && n == PDF_NONE) return NVL_OK;
    if (end == MEDIA_PROC_OK && n >= PDF_MAX_STRING) end = MEDIA_PROC_BAD;
    if (end == MEDIA_PROC_OK && !(*out = nvl_malloc((size_t)n + 1))) {
        renderer_stop(pdf);
        return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", pdf->name);
    }
    if (end == MEDIA_PROC_OK) end = media_proc_read(&pdf->proc, *out, n, b);
    if (end != MEDIA_PROC_OK) {
        nvl_freep(out);
        return renderer_failed(pdf, q, end, err);
    }
    (*out)[n] = 0;
    return NVL_OK;
}

nvl_status media_pdf_open(media_pdf **out, const char *path, const char *password,
                          const media_limits *lim, nvl_err *err) {
    return media_pdf_open_cancellable(out, path, password, lim, NULL, NULL, err);
}

nvl_status media_pdf_open_cancellable(media_pdf **out, const char *path, const char *password, const media_limits *lim,
                                      int (*cancelled)(void *ctx), void *ctx, nvl_err *err) {
    *out = NULL;
    media_limits d = media_limits_default();
    if (!lim) lim = &d;
    /* size cap and readability first, with our own messages; the renderer reads this descriptor
       (so /dev/stdin and /dev/fd/N work, and it reads the file that was checked) */
    int fd = -1;
    nvl_status st = media_open_regular(path, lim, &fd, NULL, err);
    if (st != NVL_OK) return st;
    media_pdf *pdf = nvl_calloc(1, sizeof *pdf);
    if (pdf) pdf->name = nvl_strdup(path);
    if (pdf && password) pdf->password = nvl_strdup(password);
    if (!pdf || !pdf->name || (password && !pdf->password)) {
        close(fd);
        if (pdf) nvl_free(pdf->name);
        nvl_free(pdf);
        return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
    }
    pthread_mutex_init(&pdf->mu, NULL);
    pdf->cancelled = cancelled;
    pdf->cancel_ctx = ctx;
    pdf->proc.fd = -1;
    pdf->fd = fd;
    pdf->lim = *lim;
    int no_renderer = 1;
    if (g_sandbox.sb.exe) {
        nvl_err e = {0};
        pthread_mutex_lock(&pdf->mu);
        st = renderer_open(pdf, &pdf->n_pages, &no_renderer, NULL, &e);
        pthread_mutex_unlock(&pdf->mu);
        if (no_renderer && g_sandbox.sb.strict) {
            st = nvl_err_set(err, NVL_ERR_IO, "%s: the PDF renderer could not start (%s); not read without its "
                             "limits", path, e.msg);
            no_renderer = 0;
        } else if (no_renderer) {
            NVL_LOG_WARN("%s: PDF pages are read in this process, WITHOUT the page time and memory limits: the PDF "
                         "renderer could not start (%s)\n", path, e.msg);
        } else if (st != NVL_OK && err) {
            *err = e;
        }
    }
    if (no_renderer) st = doc_open(path, path, password, &pdf->doc, &pdf->n_pages, err);
    if (st != NVL_OK) {
        media_pdf_close(pdf);
        return st;
    }
    *out = pdf;
    return NVL_OK;
}

void media_pdf_close(media_pdf *pdf) {
    if (!pdf) return;
    pthread_mutex_lock(&pdf->mu); /* (another document's start may be stopping this renderer) */
    renderer_stop(pdf);
    pthread_mutex_unlock(&pdf->mu);
    pthread_mutex_destroy(&pdf->mu);
    if (pdf->doc) g_object_unref(pdf->doc);
    if (pdf->fd >= 0) close(pdf->fd);
    nvl_free(pdf->name);
    if (pdf->password) { /* not left in freed memory */
        volatile char *v = pdf->password;
        for (size_t i = 0; v[i]; i++) v[i] = 0;
        nvl_free(pdf->password);
    }
    nvl_free(pdf);
}

void media_pdf_set_cancel(media_pdf *pdf, int (*cancelled)(void *ctx), void *ctx) {
    pdf->cancelled = cancelled;
    pdf->cancel_ctx = ctx;
}

int media_pdf_page_count(const media_pdf *pdf) { return pdf->n_pages; }

static nvl_status check_page(const media_pdf *pdf, int page, nvl_err *err) {
    if (page < 0 || page >= pdf->n_pages)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: page %d does not exist (the document has %d)",
                           pdf->name, page + 1, pdf->n_pages);
    return NVL_OK;
}

/* The document's mutable state (lock, renderer) behind the const of the read-only calls */
static media_pdf *unconst(const media_pdf *pdf) { return (media_pdf *)pdf; }

nvl_status media_pdf_page_size(const media_pdf *cpdf, int page, double *w, double *h, nvl_err *err) {
    media_pdf *pdf = unconst(cpdf);
    nvl_status st = check_page(pdf, page, err);
    if (st != NVL_OK) return st;
    pthread_mutex_lock(&pdf->mu);
    if (pdf->doc) {
        st = doc_page_size(pdf->doc, pdf->name, page, w, h, err);
    } else {
        const pdf_req q = {.op = PDF_SIZE, .page = page};
        const media_proc_bounds b = call_bounds(pdf, 0);
        double wh[2] = {0, 0};
        if ((st = renderer_call(pdf, &q, &b, err)) == NVL_OK) {
            const enum media_proc_end end = media_proc_read(&pdf->proc, wh, sizeof wh, &b);
            if (end != MEDIA_PROC_OK) st = renderer_failed(pdf, &q, end, err);
        }
        *w = wh[0];
        *h = wh[1];
    }
    pthread_mutex_unlock(&pdf->mu);
    if (st != NVL_OK) return st;
    if (!(*w > 0 && *h > 0 && isfinite(*w) && isfinite(*h)))
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged PDF: page %d has size %g x %g pt", pdf->name,
                           page + 1, *w, *h);
    return NVL_OK;
}

char *media_pdf_page_label(const media_pdf *cpdf, int page) {
    media_pdf *pdf = unconst(cpdf);
    if (check_page(pdf, page, NULL) != NVL_OK) return NULL;
    char *r = NULL;
    pthread_mutex_lock(&pdf->mu);
    if (pdf->doc) {
        gchar *l = doc_page_label(pdf->doc, page);
        r = l ? nvl_strdup(l) : NULL;
        g_free(l);
    } else {
        const pdf_req q = {.op = PDF_LABEL, .page = page};
        const media_proc_bounds b = call_bounds(pdf, 0);
        nvl_err e = {0};
        if (renderer_call(pdf, &q, &b, &e) == NVL_OK) renderer_string(pdf, &q, &b, &r, &e);
    }
    pthread_mutex_unlock(&pdf->mu);
    return r;
}

nvl_status media_pdf_page_text(const media_pdf *cpdf, int page, char **text, nvl_err *err) {
    media_pdf *pdf = unconst(cpdf);
    *text = NULL;
    nvl_status st = check_page(pdf, page, err);
    if (st != NVL_OK) return st;
    pthread_mutex_lock(&pdf->mu);
    if (pdf->doc) {
        gchar *t = NULL;
        if ((st = doc_page_text(pdf->doc, pdf->name, page, &t, err)) == NVL_OK) {
            *text = nvl_strdup(t);
            if (!*text) st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", pdf->name);
        }
        g_free(t);
    } else {
        const pdf_req q = {.op = PDF_TEXT, .page = page};
        const media_proc_bounds b = call_bounds(pdf, 0);
        if ((st = renderer_call(pdf, &q, &b, err)) == NVL_OK) st = renderer_string(pdf, &q, &b, text, err);
        if (st == NVL_OK && !*text) *text = nvl_strdup(""); /* (the renderer sends a string) */
        if (st == NVL_OK && !*text) st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", pdf->name);
    }
    pthread_mutex_unlock(&pdf->mu);
    return st;
}

nvl_status media_pdf_render(media_pdf *pdf, int page, double dpi, int long_side,
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
    const char *ask_for = dpi > 0 ? "a lower DPI" : "a smaller long side";
    if (fw > 1e6 || fh > 1e6)
        return nvl_err_set(err, NVL_ERR_LIMIT, "%s: page %d would render at %.0fx%.0f pixels, past a side of 1000000 (ask for %s)",
                           pdf->name, page + 1, fw, fh, ask_for);
    nvl_err e2 = {0}; /* (its "name: WxH = N pixels" said here once, with the page) */
    if (media_check_pixels(pdf->name, (int64_t)fw, (int64_t)fh, &pdf->lim, &e2) != NVL_OK)
        return nvl_err_set(err, NVL_ERR_LIMIT, "%s: page %d would render at %.0fx%.0f = %.0f pixels, which exceeds the limit "
                           "of %lld (--max-megapixels) (ask for %s)", pdf->name, page + 1, fw, fh, fw * fh,
                           (long long)pdf->lim.max_pixels, ask_for);
    const int W = (int)fw, H = (int)fh;
    media_image *img = NULL;
    if ((st = media_image_new(&img, W, H, err)) != NVL_OK) return st;
    pthread_mutex_lock(&pdf->mu);
    if (pdf->doc) {
        st = render_rgb(pdf->doc, pdf->name, page, W, H, scale, img->rgb, err);
    } else {
        const pdf_req q = {.op = PDF_RENDER, .page = page, .width = W, .height = H, .scale = scale};
        const media_proc_bounds b = call_bounds(pdf, (size_t)W * (size_t)H);
        if ((st = renderer_call(pdf, &q, &b, err)) == NVL_OK) {
            const enum media_proc_end end = media_proc_read(&pdf->proc, img->rgb, (size_t)W * (size_t)H * 3, &b);
            if (end != MEDIA_PROC_OK) st = renderer_failed(pdf, &q, end, err);
        }
    }
    pthread_mutex_unlock(&pdf->mu);
    if (st != NVL_OK) {
        media_image_free(img);
        return st;
    }
    img->index = page;
    *out = img;
    return NVL_OK;
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

#else
struct media_pdf {
    int unused;
};
static media_pdf_sandbox g_sb = {.exe = NULL, .timeout_s = 120, .max_mb = 2048};
media_pdf_sandbox media_pdf_sandbox_default(void) {
    media_pdf_sandbox d = {.exe = NULL, .timeout_s = 120, .max_mb = 2048};
    return d;
}
void media_pdf_set_sandbox(const media_pdf_sandbox *sb) {
    g_sb = *sb;
    g_sb.exe = NULL; /* nothing renders */
}
media_pdf_sandbox media_pdf_get_sandbox(void) { return g_sb; }
void media_pdf_worker_main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], MEDIA_PDF_WORKER_ARG)) _exit(5);
}
void media_pdf_set_cancel(media_pdf *pdf, int (*cancelled)(void *ctx), void *ctx) { (void)pdf, (void)cancelled, (void)ctx; }
void media_pdf_sandbox_end_spare(void) {}
int media_pdf_renderers(void) { return 0; }
nvl_status media_pdf_open(media_pdf **out, const char *path, const char *password,
                          const media_limits *lim, nvl_err *err) {
    (void)password, (void)lim;
    *out = NULL;
    return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: PDF support is not built into this nanovl", path);
}
nvl_status media_pdf_open_cancellable(media_pdf **out, const char *path, const char *password, const media_limits *lim,
                                      int (*cancelled)(void *ctx), void *ctx, nvl_err *err) {
    (void)cancelled, (void)ctx;
    return media_pdf_open(out, path, password, lim, err);
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
nvl_status media_pdf_render(media_pdf *pdf, int page, double dpi, int long_side,
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
