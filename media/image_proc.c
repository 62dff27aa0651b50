/* Still images decoded in a process of their own, "the image decoder" (media_image_sandbox).
 * libjpeg-turbo, libpng, libwebp, libheif/libde265 and FFmpeg's still decoders (GIF, TIFF, BMP,
 * AVIF) run on whatever bytes a request brings; a crash in one of them (FFmpeg 5.1 aborts on some
 * damaged lossless WebP: image.c) would end the caller, a server and every request in it. With the
 * sandbox set, media_decode_image hands each image's bytes to `exe --image-decode-worker`, bounded
 * in time and resident memory (proc.c), and takes back the RGB pixels; the decoder decodes one
 * image and ends. One decoder is started ahead for the next image (media_proc_take), so only the
 * first image of a process waits for a start (~65 ms).
 * Protocol on the decoder's fd 3, host byte order (both ends are this executable): it says
 * IMAGE_HELLO; the parent sends an img_req, the name's bytes and the image's bytes; it answers an
 * img_rep, its message bytes and its log messages (logged again here, through this process's log
 * callback and level), then on success an img_out and height rows of width * 3 RGB bytes. Its answers are checked (status, message, size within the pixel limit, orientation). */
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

/* media.h's defaults: in this process; 60 s an image; 4096 MiB besides its bytes */
#define IMAGE_SANDBOX_DEFAULT {.exe = NULL, .timeout_s = 60, .max_mb = 4096, .strict = 0}

media_image_sandbox media_image_sandbox_default(void) {
    const media_image_sandbox sb = IMAGE_SANDBOX_DEFAULT;
    return sb;
}

static struct {
    media_image_sandbox sb;
    char exe[4096];
} g_isandbox = {.sb = IMAGE_SANDBOX_DEFAULT};
static media_proc_spare g_ispare = MEDIA_PROC_SPARE_INIT;
static int g_n_working; /* decoders decoding now (atomic) */

void media_image_set_sandbox(const media_image_sandbox *sb) {
    const char *exe = media_proc_set_exe(&g_ispare, g_isandbox.exe, sizeof g_isandbox.exe, g_isandbox.sb.exe,
                                         sb ? sb->exe : NULL);
    g_isandbox.sb = sb ? *sb : media_image_sandbox_default();
    g_isandbox.sb.exe = exe;
}

media_image_sandbox media_image_get_sandbox(void) { return g_isandbox.sb; }

int media_image_decoders(void) {
    return __atomic_load_n(&g_n_working, __ATOMIC_RELAXED) + media_proc_spare_running(&g_ispare);
}

void media_image_sandbox_end_spare(void) { media_proc_spare_end(&g_ispare); }

/* A test's knob: the decoder aborts (as where a library crashes) or never answers (as one stuck
 * in a hostile file) when the image's name contains the variable's value. Read each time. */
static int knob_names(const char *var, const char *name) {
    const char *e = getenv(var);
    return e && *e && strstr(name, e);
}

/* The decoder's log messages (errors and warnings: "JPEG decoded with a warning: Premature end of
 * JPEG file"), sent with its answer and logged again by the caller, through its own log callback
 * and level; a message that would overflow IMAGE_WARN_MAX is dropped. */
typedef struct warn_buf {
    char text[IMAGE_WARN_MAX];
    size_t n;
} warn_buf;

static void collect_warning(enum nvl_log_level level, const char *msg, void *user) {
    warn_buf *w = user;
    const size_t n = strlen(msg);
    if (level > NVL_LOG_LEVEL_WARN || w->n + n + 2 > sizeof w->text) return;
    w->text[w->n++] = (char)level;
    memcpy(w->text + w->n, msg, n + 1);
    w->n += n + 1;
}

static int worker_image(void) {
    const int fd = MEDIA_PROC_FD;
    if (!media_proc_worker_begin("nanovl-image", IMAGE_HELLO)) return 0;
    img_req q;
    if (!media_proc_read_full(fd, &q, sizeof q) || !q.name_len || q.name_len > 65536 || !q.len ||
        q.len > q.max_file_bytes)
        return 0;
    char *name = malloc(q.name_len + 1);
    uint8_t *buf = malloc(q.len);
    if (!name || !buf || !media_proc_read_full(fd, name, q.name_len) || !media_proc_read_full(fd, buf, q.len)) return 0;
    name[q.name_len] = 0;
    if (knob_names("NVL_TEST_IMAGE_ABORT", name)) raise(SIGABRT);
    while (knob_names("NVL_TEST_IMAGE_HANG", name)) {
        const struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
    }
    media_limits lim = media_limits_default();
    lim.max_file_bytes = (size_t)q.max_file_bytes;
    lim.max_pixels = q.max_pixels;
    nvl_err e = {0};
    media_image *img = NULL;
    static warn_buf wb;
    nvl_log_set(collect_warning, &wb);
    const nvl_status st = media_decode_image_local(buf, q.len, name, &lim, &img, &e);
    free(buf);
    const img_rep r = {.status = st, .msg_len = st == NVL_OK ? 0 : (uint32_t)strlen(e.msg), .warn_len = (uint32_t)wb.n};
    if (!media_proc_write_full(fd, &r, sizeof r) || !media_proc_write_full(fd, e.msg, r.msg_len) ||
        !media_proc_write_full(fd, wb.text, wb.n) || st != NVL_OK)
        return 0;
    const img_out o = {.width = img->width, .height = img->height, .orientation = img->orientation};
    /* (one write: media_image_new's rows are contiguous) */
    return media_proc_write_full(fd, &o, sizeof o) &&
           media_proc_write_full(fd, img->rgb, img->stride * (size_t)img->height);
}

void media_image_worker_main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], MEDIA_IMAGE_WORKER_ARG)) return;
    _exit(worker_image()); /* _exit: no atexit handlers or leak reports in the decoder */
}

/* The error of a wait that did not end in MEDIA_PROC_OK (p is then stopped). */
static nvl_status image_failed(media_proc *p, const char *name, enum media_proc_end why, double timeout_s,
                               double max_mb, nvl_err *err) {
    char how[128];
    nvl_status st;
    switch (why) {
    case MEDIA_PROC_TIMEOUT:
        st = nvl_err_set(err, NVL_ERR_TIMEOUT, "%s: decoding the image took longer than %g s; stopped (the image time "
                         "limit, --image-timeout: a hostile or damaged file)", name, timeout_s);
        break;
    case MEDIA_PROC_MEMORY:
        st = nvl_err_set(err, NVL_ERR_LIMIT, "%s: decoding the image needed more than %g MiB of memory (the image memory limit, "
                         "--image-memory); stopped", name, max_mb);
        break;
    case MEDIA_PROC_CANCELLED:
        st = nvl_err_set(err, NVL_ERR_CANCELLED, "%s: cancelled", name);
        break;
    case MEDIA_PROC_BAD:
        st = nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged image: the decoder's answer was malformed", name);
        break;
    default:
        st = media_proc_death(p, how, sizeof how)
                 ? nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged image: the decoder %s", name, how)
                 : nvl_err_set(err, NVL_ERR_IO, "%s: the image decoder %s", name, how);
        break;
    }
    media_proc_kill(p);
    return st;
}

/* Logs the decoder's messages (warn_buf's records) here: each made to name the image, its control
 * characters shown as '?'. 0 when they are malformed (a level other than error or warn, a record
 * without its end). */
static int relog_warnings(const char *name, char *w, size_t n) {
    for (size_t i = 0; i < n;) {
        const int level = w[i++];
        char *text = w + i, *end = memchr(text, 0, n - i);
        if ((level != NVL_LOG_LEVEL_ERROR && level != NVL_LOG_LEVEL_WARN) || !end) return 0;
        for (char *c = text; c < end; c++)
            if ((unsigned char)*c < 0x20 && !(*c == '\n' && c + 1 == end)) *c = '?';
        if (media_proc_names(text, name)) nvl_log((enum nvl_log_level)level, "%s", text);
        else nvl_log((enum nvl_log_level)level, "%s: %s", name, text);
        i = (size_t)(end - w) + 1;
    }
    return 1;
}

/* An img_rep, its message and its warnings (logged here); a failed one becomes *st / *err (the
 * message made to name the image). */
static enum media_proc_end read_rep(media_proc *p, const char *name, const media_proc_bounds *b, nvl_status *st,
                                    nvl_err *err) {
    img_rep r;
    enum media_proc_end end = media_proc_read(p, &r, sizeof r, b);
    if (end != MEDIA_PROC_OK) return end;
    char msg[NVL_ERR_MSG_MAX], warn[IMAGE_WARN_MAX];
    if (r.msg_len >= sizeof msg || (r.status == NVL_OK) != (r.msg_len == 0) || r.warn_len > sizeof warn)
        return MEDIA_PROC_BAD;
    if ((end = media_proc_read(p, msg, r.msg_len, b)) != MEDIA_PROC_OK) return end;
    msg[r.msg_len] = 0;
    if ((end = media_proc_read(p, warn, r.warn_len, b)) != MEDIA_PROC_OK) return end;
    if (!relog_warnings(name, warn, r.warn_len)) return MEDIA_PROC_BAD;
    if (!media_proc_decoding_status(r.status)) return MEDIA_PROC_BAD;
    *st = (nvl_status)r.status;
    if (*st != NVL_OK && media_proc_names(msg, name)) nvl_err_set(err, *st, "%s", msg);
    else if (*st != NVL_OK) nvl_err_set(err, *st, "%s: %s", name, msg);
    return MEDIA_PROC_OK;
}

/* One image through a decoder. *no_decoder = 1 when none could start (nothing was decoded). */
static nvl_status decode_remote(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                                const media_image_sandbox *sb, int (*cancelled)(void *ctx), void *ctx,
                                int *no_decoder, media_image **out, nvl_err *err) {
    media_proc p;
    const size_t nl = strlen(name) > 65536 ? 65536 : strlen(name);
    const img_req q = {.name_len = (uint32_t)nl, .len = len, .max_file_bytes = (uint64_t)lim->max_file_bytes,
                       .max_pixels = lim->max_pixels};
    /* the bounds, from the decoder's start: its time; its memory besides the image's bytes, which
       it holds whole; the cancel */
    const media_proc_bounds b = {.deadline = sb->timeout_s > 0 ? nvl_now() + sb->timeout_s : 0,
                                 .max_rss = sb->max_mb > 0 ? (size_t)(sb->max_mb * 1048576.0) + len : 0,
                                 .cancelled = cancelled, .ctx = ctx};
    nvl_err e = {0}; /* the decoder started ahead, or one started now, given q */
    nvl_status st = media_proc_take(&g_ispare, sb->exe, MEDIA_IMAGE_WORKER_ARG, IMAGE_HELLO, "image decoder", 1, &q, sizeof q, &b,
                         &p, &e);
    if (st == NVL_ERR_TIMEOUT) /* (its start took the time: a machine out of processes or memory) */
        return nvl_err_set(err, st, "%s: decoding the image took longer than %g s; stopped (the image time limit, --image-timeout: %s)",
                           name, sb->timeout_s, e.msg);
    if (st == NVL_ERR_CANCELLED) return nvl_err_set(err, st, "%s: cancelled", name);
    if (st != NVL_OK) {
        *no_decoder = 1;
        if (err) *err = e;
        return st;
    }
    __atomic_add_fetch(&g_n_working, 1, __ATOMIC_RELAXED);
    enum media_proc_end end = media_proc_send(&p, name, nl, &b);
    if (end == MEDIA_PROC_OK) end = media_proc_send(&p, buf, len, &b); /* (bounded: a decoder may stop reading) */
    if (end == MEDIA_PROC_OK) end = read_rep(&p, name, &b, &st, err);
    img_out o = {0};
    if (end == MEDIA_PROC_OK && st == NVL_OK) end = media_proc_read(&p, &o, sizeof o, &b);
    if (end == MEDIA_PROC_OK && st == NVL_OK &&
        (o.width <= 0 || o.height <= 0 || (int64_t)o.width * o.height > lim->max_pixels || o.orientation < 0 ||
         o.orientation == 1 || o.orientation > 8))
        end = MEDIA_PROC_BAD;
    media_image *img = NULL;
    if (end == MEDIA_PROC_OK && st == NVL_OK) {
        if ((st = media_image_new(&img, o.width, o.height, err)) == NVL_OK)
            end = media_proc_read(&p, img->rgb, img->stride * (size_t)img->height, &b); /* (contiguous rows) */
        else
            nvl_err_set(err, st, "%s: out of memory for its %dx%d pixels", name, o.width, o.height);
    }
    if (end != MEDIA_PROC_OK) st = image_failed(&p, name, end, sb->timeout_s, sb->max_mb, err);
    media_proc_release(&p); /* (its work is done: it ends with its image; reaped later) */
    __atomic_sub_fetch(&g_n_working, 1, __ATOMIC_RELAXED);
    if (st != NVL_OK) {
        media_image_free(img);
        return st;
    }
    img->orientation = o.orientation;
    *out = img;
    return NVL_OK;
}

nvl_status media_decode_image_sandboxed(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                                        int (*cancelled)(void *ctx), void *ctx, media_image **out, nvl_err *err) {
    const media_image_sandbox sb = g_isandbox.sb;
    if (!sb.exe) return media_decode_image_local(buf, len, name, lim, out, err);
    if (cancelled && cancelled(ctx)) return nvl_err_set(err, NVL_ERR_CANCELLED, "%s: cancelled", name); /* (no decoder
                                                                                                  for it) */
    nvl_err e = {0};
    int no_decoder = 0;
    const nvl_status st = decode_remote(buf, len, name, lim, &sb, cancelled, ctx, &no_decoder, out, &e);
    if (!no_decoder) {
        if (st != NVL_OK && err) *err = e;
        return st;
    }
    if (sb.strict)
        return nvl_err_set(err, NVL_ERR_IO, "%s: no image decoder process could start (%s); not decoded without its "
                           "limits", name, e.msg);
    NVL_LOG_WARN("%s: the image is decoded in this process, WITHOUT the image time and memory limits: no decoder "
                 "process could start (%s)\n", name, e.msg);
    return media_decode_image_local(buf, len, name, lim, out, err);
}
