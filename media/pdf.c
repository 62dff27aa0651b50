/* PDF through Poppler glib + cairo: open (password), page count, sizes after /Rotate, labels,
 * rendering on white at a DPI or to a long side, text layer. GError messages become the
 * nvl_err message; POPPLER_ERROR_ENCRYPTED becomes NVL_ERR_ENCRYPTED.
 * Files are opened with poppler_document_new_from_file: new_from_bytes crashes in poppler-glib
 * 22.12 when given a wrong password for some encrypted files (shared/media MANIFEST).
 * Pages render in this process, or, with a sandbox set (media_pdf_set_sandbox), in a renderer
 * process per open document (one page at a time; proc.c), started on the first render and
 * started again after it was stopped. Protocol on the renderer's fd 3, host byte order (both ends
 * are this executable): it says PDF_HELLO; the parent sends pdf_req messages (PDF_OPEN followed by
 * the path and password bytes, PDF_RENDER); each is answered by a pdf_rep, its message bytes, and
 * for a rendered page H * W * 3 RGB bytes. */
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "media_impl.h"

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

static void spare_drop(void);

void media_pdf_set_sandbox(const media_pdf_sandbox *sb) {
    spare_drop(); /* started for the earlier executable and bounds */
    g_sandbox.sb = *sb;
    if (sb->exe && strlen(sb->exe) < sizeof g_sandbox.exe) {
        memcpy(g_sandbox.exe, sb->exe, strlen(sb->exe) + 1);
        g_sandbox.sb.exe = g_sandbox.exe;
    } else {
        g_sandbox.sb.exe = NULL;
    }
}

media_pdf_sandbox media_pdf_get_sandbox(void) { return g_sandbox.sb; }

struct media_pdf {
    PopplerDocument *doc;
    char *name;
    char *password; /* the renderer opens the file again */
    int has_password;
    int n_pages;
    media_limits lim;
    pthread_mutex_t mu; /* one page at a time through the renderer */
    media_proc proc;
    int (*cancelled)(void *ctx);
    void *cancel_ctx;
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
    if (pdf && password) pdf->password = nvl_strdup(password);
    if (!pdf || !pdf->name || (password && !pdf->password)) {
        g_object_unref(doc);
        if (pdf) nvl_free(pdf->name);
        nvl_free(pdf);
        return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
    }
    pdf->has_password = password != NULL;
    pthread_mutex_init(&pdf->mu, NULL);
    pdf->proc.fd = -1;
    pdf->doc = doc;
    pdf->n_pages = n;
    pdf->lim = *lim;
    *out = pdf;
    return NVL_OK;
}

void media_pdf_close(media_pdf *pdf) {
    if (!pdf) return;
    media_proc_kill(&pdf->proc);
    pthread_mutex_destroy(&pdf->mu);
    g_object_unref(pdf->doc);
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

/* Renders 0-based page of doc at scale into rgb (H rows of W * 3 bytes) on white. */
static nvl_status render_rgb(PopplerDocument *doc, const char *name, int page, int W, int H, double scale,
                             uint8_t *rgb, nvl_err *err) {
    PopplerPage *p = poppler_document_get_page(doc, page);
    if (!p) return nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged PDF: page %d cannot be read", name, page + 1);
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, W, H);
    if (cairo_surface_status(surf) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(surf);
        g_object_unref(p);
        return nvl_err_set(err, NVL_ERR_NOMEM, "%s: cannot allocate a %dx%d page", name, W, H);
    }
    cairo_t *cr = cairo_create(surf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_scale(cr, scale, scale);
    poppler_page_render(p, cr);
    cairo_destroy(cr);
    cairo_surface_flush(surf);
    g_object_unref(p);
    const uint8_t *src = cairo_image_surface_get_data(surf);
    const int sstride = cairo_image_surface_get_stride(surf);
    for (int y = 0; y < H; y++) {
        const uint32_t *row = (const uint32_t *)(src + (size_t)y * (size_t)sstride);
        uint8_t *d = rgb + (size_t)y * (size_t)W * 3;
        for (int x = 0; x < W; x++) { /* opaque after the white fill: no un-premultiply */
            d[3 * x + 0] = (uint8_t)(row[x] >> 16);
            d[3 * x + 1] = (uint8_t)(row[x] >> 8);
            d[3 * x + 2] = (uint8_t)row[x];
        }
    }
    cairo_surface_destroy(surf);
    return NVL_OK;
}

// ---------------------------------------------------------------------------
// The renderer process

#define PDF_HELLO 0x6e766c70u /* "nvlp" */
enum { PDF_OPEN = 1, PDF_RENDER = 2 };
#define PDF_NO_PASSWORD 0xffffffffu
#define PDF_START_S 30.0 /* seconds the renderer may take to start and open the document */

typedef struct pdf_req {
    uint32_t op;
    int32_t page, width, height;
    double scale;
    uint32_t path_len, password_len; /* PDF_OPEN; password_len PDF_NO_PASSWORD: none */
} pdf_req;

typedef struct pdf_rep {
    int32_t status; /* nvl_status */
    uint32_t msg_len;
} pdf_rep;

static int reply(int fd, nvl_status st, const char *msg) {
    pdf_rep r = {.status = st, .msg_len = st == NVL_OK ? 0 : (uint32_t)strlen(msg)};
    return media_proc_write_full(fd, &r, sizeof r) && media_proc_write_full(fd, msg, r.msg_len);
}

/* Ends the renderer when the parent's end closes, even in the middle of a page. */
static void *watch_parent(void *arg) {
    (void)arg;
    for (;;) {
        struct pollfd pf = {.fd = MEDIA_PROC_FD, .events = POLLRDHUP};
        if (poll(&pf, 1, -1) > 0 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) _exit(0);
    }
    return NULL;
}

static int worker_serve(void) {
    const int fd = MEDIA_PROC_FD;
    /* the terminal's ^C reaches the whole process group: the parent decides when to stop a page */
    signal(SIGINT, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    const struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore);
    /* descriptors another thread of the parent opened without close-on-exec (client sockets) */
    if (close_range(MEDIA_PROC_FD + 1, ~0u, 0) != 0) {
        const long mx = sysconf(_SC_OPEN_MAX);
        for (long i = MEDIA_PROC_FD + 1; i < (mx > 0 && mx < 65536 ? mx : 65536); i++) close((int)i);
    }
    pthread_t th;
    if (pthread_create(&th, NULL, watch_parent, NULL) != 0) return 3;
    const uint32_t hello = PDF_HELLO;
    if (!media_proc_write_full(fd, &hello, sizeof hello)) return 0;
    PopplerDocument *doc = NULL;
    char *path = NULL;
    for (;;) {
        pdf_req q;
        if (!media_proc_read_full(fd, &q, sizeof q)) return 0;
        nvl_err e = {0};
        if (q.op == PDF_OPEN && !doc && q.path_len > 0 && q.path_len < 65536 &&
            (q.password_len == PDF_NO_PASSWORD || q.password_len < 65536)) {
            path = malloc(q.path_len + 1);
            char *pw = q.password_len != PDF_NO_PASSWORD ? malloc(q.password_len + 1) : NULL;
            if (!path || (q.password_len != PDF_NO_PASSWORD && !pw)) return 4;
            if (!media_proc_read_full(fd, path, q.path_len) || (pw && !media_proc_read_full(fd, pw, q.password_len)))
                return 0;
            path[q.path_len] = 0;
            if (pw) pw[q.password_len] = 0;
            GError *gerr = NULL;
            char *abs = g_canonicalize_filename(path, NULL);
            char *uri = g_filename_to_uri(abs, NULL, &gerr);
            g_free(abs);
            if (uri) doc = poppler_document_new_from_file(uri, pw, &gerr);
            g_free(uri);
            free(pw);
            nvl_status st = NVL_OK;
            if (!doc)
                st = nvl_err_set(&e, NVL_ERR_FORMAT, "%s: damaged PDF: the renderer cannot open it: %s", path,
                                 gerr ? gerr->message : "cannot open");
            g_clear_error(&gerr);
            if (!reply(fd, st, e.msg)) return 0;
        } else if (q.op == PDF_RENDER && doc && q.width > 0 && q.height > 0 && q.page >= 0) {
            /* a test's knob (tests/media/test_pdf_sandbox.c): the renderer dies on this 1-based page,
               as it would where Poppler crashes */
            const char *die = getenv("NVL_TEST_RENDERER_ABORT_PAGE");
            if (die && atoi(die) == q.page + 1) raise(SIGABRT);
            const size_t n = (size_t)q.width * (size_t)q.height * 3;
            uint8_t *rgb = malloc(n);
            nvl_status st = rgb ? render_rgb(doc, path, q.page, q.width, q.height, q.scale, rgb, &e)
                                : nvl_err_set(&e, NVL_ERR_NOMEM, "%s: cannot allocate a %dx%d page", path, q.width,
                                              q.height);
            if (!reply(fd, st, e.msg) || (st == NVL_OK && !media_proc_write_full(fd, rgb, n))) return 0;
            free(rgb);
        } else {
            return 5; /* not this protocol: the parent sees the renderer end */
        }
    }
}

void media_pdf_worker_main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], MEDIA_PDF_WORKER_ARG)) return;
    _exit(worker_serve()); /* _exit: no atexit handlers or leak reports in the renderer */
}

/* Error for a wait that did not end in MEDIA_PROC_OK; the renderer is killed. */
static nvl_status renderer_failed(media_pdf *pdf, int page, enum media_proc_end why, size_t max_rss, nvl_err *err) {
    char how[128];
    nvl_status st;
    const media_pdf_sandbox *sb = &g_sandbox.sb;
    switch (why) {
    case MEDIA_PROC_TIMEOUT:
        st = nvl_err_set(err, NVL_ERR_TIMEOUT, "%s: page %d took longer than %g s to render; stopped (the page time "
                         "limit; a hostile or extremely complex page)", pdf->name, page + 1, sb->timeout_s);
        break;
    case MEDIA_PROC_MEMORY:
        st = nvl_err_set(err, NVL_ERR_LIMIT, "%s: page %d needed more than %.0f MiB of memory to render; stopped "
                         "(the page memory limit, %g MiB beside the page's pixels; a PDF can declare images far "
                         "larger than its page)", pdf->name, page + 1, (double)max_rss / 1048576.0, sb->max_mb);
        break;
    case MEDIA_PROC_CANCELLED:
        st = nvl_err_set(err, NVL_ERR_CANCELLED, "%s: page %d: rendering cancelled", pdf->name, page + 1);
        break;
    default:
        st = nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged PDF: page %d could not be rendered: the renderer %s",
                         pdf->name, page + 1, media_proc_death(&pdf->proc, how, sizeof how));
        break;
    }
    media_proc_kill(&pdf->proc);
    return st;
}

/* Reads a pdf_rep and its message; a failed one becomes *err (as the renderer worded it). */
static enum media_proc_end read_reply(media_pdf *pdf, const media_proc_bounds *b, nvl_status *st, nvl_err *err) {
    pdf_rep r;
    enum media_proc_end end = media_proc_read(&pdf->proc, &r, sizeof r, b);
    if (end != MEDIA_PROC_OK) return end;
    char msg[NVL_ERR_MSG_MAX];
    if (r.msg_len >= sizeof msg) return MEDIA_PROC_GONE;
    if ((end = media_proc_read(&pdf->proc, msg, r.msg_len, b)) != MEDIA_PROC_OK) return end;
    msg[r.msg_len] = 0;
    *st = (nvl_status)r.status;
    if (*st != NVL_OK) nvl_err_set(err, *st, "%s", msg);
    return MEDIA_PROC_OK;
}

/* One renderer started ahead, for the next document: its libraries load (about 75 ms for this
 * executable's 150 shared libraries on a 2-core VM) while the current page renders, so only the
 * first document of a process waits for a start. Each document still gets a process of its own. */
static pthread_mutex_t g_spare_mu = PTHREAD_MUTEX_INITIALIZER;
static media_proc g_spare = {.pid = 0, .fd = -1};

static void spare_drop(void) {
    pthread_mutex_lock(&g_spare_mu);
    media_proc_kill(&g_spare);
    pthread_mutex_unlock(&g_spare_mu);
}

/* A renderer for a document: the spare, or one started now; then a new spare. */
static nvl_status renderer_take(media_proc *p, nvl_err *err) {
    pthread_mutex_lock(&g_spare_mu);
    *p = g_spare;
    g_spare.pid = 0;
    g_spare.fd = -1;
    pthread_mutex_unlock(&g_spare_mu);
    if (!p->pid && media_proc_spawn(p, g_sandbox.sb.exe, MEDIA_PDF_WORKER_ARG, err) != NVL_OK) return NVL_ERR_IO;
    media_proc next;
    if (media_proc_spawn(&next, g_sandbox.sb.exe, MEDIA_PDF_WORKER_ARG, NULL) == NVL_OK) {
        pthread_mutex_lock(&g_spare_mu);
        if (!g_spare.pid) {
            g_spare = next;
            next.pid = 0;
            next.fd = -1;
        }
        pthread_mutex_unlock(&g_spare_mu);
        media_proc_kill(&next); /* another thread's spare came first */
    }
    return NVL_OK;
}

/* Starts the renderer and has it open the document. *fallback = 1 when it could not start (the
 * page then renders in this process, with a warning). */
static nvl_status renderer_start(media_pdf *pdf, int *fallback, nvl_err *err) {
    const media_pdf_sandbox *sb = &g_sandbox.sb;
    nvl_err e = {0};
    if (renderer_take(&pdf->proc, &e) != NVL_OK) {
        NVL_LOG_WARN("%s: pages render in this process: %s\n", pdf->name, e.msg);
        *fallback = 1;
        return NVL_OK;
    }
    const media_proc_bounds start = {.deadline = media_proc_now() + PDF_START_S};
    uint32_t hello = 0;
    if (media_proc_read(&pdf->proc, &hello, sizeof hello, &start) != MEDIA_PROC_OK || hello != PDF_HELLO) {
        media_proc_kill(&pdf->proc); /* the spare may have been ended from outside: a new one once */
        if (media_proc_spawn(&pdf->proc, sb->exe, MEDIA_PDF_WORKER_ARG, NULL) == NVL_OK &&
            media_proc_read(&pdf->proc, &hello, sizeof hello, &start) == MEDIA_PROC_OK && hello == PDF_HELLO)
            goto started;
        NVL_LOG_WARN("%s: pages render in this process: %s %s did not start as the PDF renderer\n", pdf->name,
                     sb->exe, MEDIA_PDF_WORKER_ARG);
        media_proc_kill(&pdf->proc);
        *fallback = 1;
        return NVL_OK;
    }
started:;
    const size_t pl = strlen(pdf->name), wl = pdf->has_password ? strlen(pdf->password) : 0;
    pdf_req q = {.op = PDF_OPEN, .path_len = (uint32_t)pl,
                 .password_len = pdf->has_password ? (uint32_t)wl : PDF_NO_PASSWORD};
    nvl_status st = NVL_OK;
    enum media_proc_end end = media_proc_write(&pdf->proc, &q, sizeof q);
    if (end == MEDIA_PROC_OK) end = media_proc_write(&pdf->proc, pdf->name, pl);
    if (end == MEDIA_PROC_OK && wl) end = media_proc_write(&pdf->proc, pdf->password, wl);
    const media_proc_bounds b = {.deadline = media_proc_now() + PDF_START_S, .cancelled = pdf->cancelled,
                                 .ctx = pdf->cancel_ctx};
    if (end == MEDIA_PROC_OK) end = read_reply(pdf, &b, &st, err);
    if (end != MEDIA_PROC_OK) {
        char how[128];
        st = end == MEDIA_PROC_CANCELLED
                 ? nvl_err_set(err, NVL_ERR_CANCELLED, "%s: rendering cancelled", pdf->name)
                 : nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged PDF: the renderer could not open it: it %s", pdf->name,
                               end == MEDIA_PROC_TIMEOUT ? "took too long" : media_proc_death(&pdf->proc, how, sizeof how));
    }
    if (st != NVL_OK) media_proc_kill(&pdf->proc);
    return st;
}

/* A page through the renderer (started if it is not running), within the sandbox's bounds. */
static nvl_status render_in_renderer(media_pdf *pdf, int page, int W, int H, double scale, media_image **out,
                                     int *fallback, nvl_err *err) {
    const media_pdf_sandbox *sb = &g_sandbox.sb;
    pthread_mutex_lock(&pdf->mu);
    nvl_status st = NVL_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!pdf->proc.pid && ((st = renderer_start(pdf, fallback, err)) != NVL_OK || *fallback)) break;
        const pdf_req q = {.op = PDF_RENDER, .page = page, .width = W, .height = H, .scale = scale};
        if (media_proc_write(&pdf->proc, &q, sizeof q) != MEDIA_PROC_OK) {
            media_proc_kill(&pdf->proc); /* it ended while idle (killed from outside): once more */
            continue;
        }
        const size_t pixels = (size_t)W * (size_t)H;
        const size_t max_rss = sb->max_mb > 0 ? (size_t)(sb->max_mb * 1048576.0) + 7 * pixels : 0;
        const media_proc_bounds b = {.deadline = sb->timeout_s > 0 ? media_proc_now() + sb->timeout_s : 0,
                                     .max_rss = max_rss, .cancelled = pdf->cancelled, .ctx = pdf->cancel_ctx};
        enum media_proc_end end = read_reply(pdf, &b, &st, err);
        media_image *img = NULL;
        if (end == MEDIA_PROC_OK && st == NVL_OK && (st = media_image_new(&img, W, H, err)) == NVL_OK)
            end = media_proc_read(&pdf->proc, img->rgb, pixels * 3, &b);
        if (end != MEDIA_PROC_OK) {
            media_image_free(img);
            st = renderer_failed(pdf, page, end, max_rss, err);
        } else if (st == NVL_OK) {
            img->index = page;
            *out = img;
        } else if (st == NVL_ERR_NOMEM) {
            media_proc_kill(&pdf->proc); /* the renderer's pixels would follow; start afresh */
        }
        break;
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
    nvl_err e2 = {0};
    if (fw > 1e6 || fh > 1e6 || media_check_pixels(pdf->name, (int64_t)fw, (int64_t)fh, &pdf->lim, &e2) != NVL_OK) {
        const size_t nl = strlen(pdf->name); /* e2 says "name: WxH = N pixels exceeds ...": the page goes in */
        const char *why = !strncmp(e2.msg, pdf->name, nl) && !strncmp(e2.msg + nl, ": ", 2) ? e2.msg + nl + 2 : e2.msg;
        return nvl_err_set(err, NVL_ERR_LIMIT, "%s: page %d would render at %.0fx%.0f pixels%s%s (ask for %s)", pdf->name,
                           page + 1, fw, fh, *why ? ": " : "", why, dpi > 0 ? "a lower DPI" : "a smaller long side");
    }
    const int W = (int)fw, H = (int)fh;
    if (g_sandbox.sb.exe) {
        int fallback = 0;
        st = render_in_renderer(pdf, page, W, H, scale, out, &fallback, err);
        if (!fallback) return st;
    }
    media_image *img = NULL;
    if ((st = media_image_new(&img, W, H, err)) != NVL_OK) return st;
    pthread_mutex_lock(&pdf->mu);
    st = render_rgb(pdf->doc, pdf->name, page, W, H, scale, img->rgb, err);
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
