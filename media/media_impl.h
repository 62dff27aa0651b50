/* Internal header: included only by media/ sources. Per-format decoders behind the dispatch. */
#ifndef MEDIA_MEDIA_IMPL_H
#define MEDIA_MEDIA_IMPL_H

#include "media.h"
#include "base/clock.h"

nvl_status media_check_pixels(const char *name, int64_t w, int64_t h, const media_limits *lim, nvl_err *err);
nvl_status media_decode_jpeg(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                             media_image **out, nvl_err *err);
nvl_status media_decode_png(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                            media_image **out, nvl_err *err);
/* A still through FFmpeg; opaque: the samples' 4th byte is not alpha (a 32-bit BI_RGB BMP:
 * Pillow and Windows ignore it, FFmpeg reads it as alpha); demuxer: FFmpeg's name of the one to
 * use (NULL: FFmpeg probes the bytes). */
nvl_status media_decode_ffmpeg_still(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                                     int opaque, const char *demuxer, media_image **out, nvl_err *err);
/* Orientation (1..8) of the EXIF/TIFF tag 274 in a TIFF structure (optionally "Exif\0\0"-prefixed);
 * 1 when absent or unreadable. */
/* GIF: the offset of b's first block (after the header and the global colour table; n if past it),
 * and where the block at b[i] ends: an extension (0x21: its label, then sub-blocks to the empty one)
 * or an image (0x2C: the 10-byte descriptor, local table, LZW code size, sub-blocks), at most n;
 * 0 for the trailer (0x3B), a descriptor cut short and a byte that begins no block (sniff.c). */
size_t media_gif_first_block(const uint8_t *b, size_t n);
size_t media_gif_block_end(const uint8_t *b, size_t n, size_t i);
int media_tiff_orientation(const uint8_t *tiff, size_t n);
/* The SHORT or LONG value of tag in a TIFF's (or EXIF block's) first IFD, -1 if absent or unreadable. */
long media_tiff_ifd0_value(const uint8_t *tiff, size_t n, unsigned tag);
/* Orientation the file of kind k declares (JPEG APP1, PNG eXIf, WebP EXIF, TIFF IFD0); 1 if none. */
int media_file_orientation(enum media_kind k, const uint8_t *buf, size_t len);
/* Applies orientation o (2..8, as Pillow's exif_transpose) to *img, replacing it; 1 is a no-op. */
nvl_status media_orient(media_image **img, int o, nvl_err *err);

/* AVIF still (one coded item; grid and alpha refused) through FFmpeg. */
nvl_status media_decode_avif(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                             media_image **out, nvl_err *err);
int media_ffmpeg_decodes_av1(void); /* 1 when FFmpeg has an AV1 decoder */
/* HEIF/HEIC stills through libheif (heif.c); media_heif_supported: 1 when built with it. */
nvl_status media_decode_heif(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                             media_image **out, nvl_err *err);
int media_heif_supported(void);

/* media_open_regular: in media.h */

// ---------------------------------------------------------------------------
// Helper processes (proc.c): the running executable started again as `exe arg`, talking over a
// socket pair that is its fd MEDIA_PROC_FD (stdin /dev/null, stdout joined to stderr).

#include <pthread.h>
#include <sys/types.h>

#define MEDIA_PROC_FD 3

typedef struct media_proc {
    pid_t pid; /* 0: none */
    int fd;    /* the parent's end; -1: none */
} media_proc;

/* What ended a wait. */
enum media_proc_end {
    MEDIA_PROC_OK = 0,
    MEDIA_PROC_GONE,      /* the helper closed its end or died (media_proc_death says how) */
    MEDIA_PROC_TIMEOUT,   /* bounds->deadline passed */
    MEDIA_PROC_CANCELLED, /* bounds->cancelled returned nonzero */
    MEDIA_PROC_MEMORY,    /* the helper's resident memory passed bounds->max_rss */
    MEDIA_PROC_BAD,       /* the helper broke the protocol (set by callers that check what it sent) */
};

typedef struct media_proc_bounds {
    double deadline;             /* nvl_now() seconds; <= 0: none */
    size_t max_rss;              /* bytes; 0: none */
    int (*cancelled)(void *ctx); /* polled every 50 ms (as the other bounds, bytes coming or not); NULL: none */
    void *ctx;
} media_proc_bounds;

/* Starts exe arg with the socket pair. NVL_ERR_IO naming exe when it cannot. */
nvl_status media_proc_spawn(media_proc *p, const char *exe, const char *arg, nvl_err *err);
/* SIGKILL (if still running), reap, close; p is then empty. Safe on an empty p. */
void media_proc_kill(media_proc *p);
/* media_proc_kill without the wait: SIGKILL, close, and the helper reaped later (by the next
 * media_proc_take or media_proc_reap; a process's teardown takes 5-12 ms). p is then empty. */
void media_proc_release(media_proc *p);
/* Reaps released helpers that have ended; all of them, waiting, when wait. */
void media_proc_reap(int wait);
enum media_proc_end media_proc_write(media_proc *p, const void *buf, size_t n);
/* Writes exactly n bytes, waiting within bounds (NULL: none) as media_proc_read does: a helper
 * that stops reading (stopped, wedged) cannot hold the caller past them. */
enum media_proc_end media_proc_send(media_proc *p, const void *buf, size_t n, const media_proc_bounds *bounds);
/* Reads exactly n bytes, waiting within bounds (NULL: none). On anything but MEDIA_PROC_OK the
 * helper's state is unknown: kill it. */
enum media_proc_end media_proc_read(media_proc *p, void *buf, size_t n, const media_proc_bounds *bounds);
/* After MEDIA_PROC_GONE: reaps the helper (waiting up to a second for it to end after closing its
 * end, then killing it) and describes its end in buf: "crashed (signal 11, Segmentation fault)"
 * for the signals a fault raises; "was killed (signal 9: ...)"; "was stopped from outside (signal
 * N, ...)" for other signals; "exited with status N"; "ended". */
int media_proc_death(media_proc *p, char *buf, size_t cap); /* 1: a fault signal ended it */
/* One helper started ahead for the next job (its libraries load, about 65-75 ms for this
 * executable, while the current job runs): MEDIA_PROC_SPARE_INIT. Whoever changes the executable
 * ends the spare (media_proc_spare_end). */
typedef struct media_proc_spare {
    pthread_mutex_t mu;
    media_proc p;
} media_proc_spare;
#define MEDIA_PROC_SPARE_INIT {PTHREAD_MUTEX_INITIALIZER, {0, -1}}
#define MEDIA_PROC_START_S 30.0 /* seconds a helper may take to start (say hello) */
/* A helper running `exe arg` that said hello within MEDIA_PROC_START_S and took first (first_n
 * bytes written; NULL: nothing): s's spare (when use_spare), else one started now (a spare that
 * ended unseen, before or after its hello, is replaced once); then a new spare is started.
 * b (NULL: none): the caller's deadline and cancel bound the wait for the hello too.
 * NVL_ERR_IO "EXE ARG did not start as the WHAT" / media_proc_spawn's; NVL_ERR_TIMEOUT or
 * NVL_ERR_CANCELLED when b's deadline or cancel ended the wait (the message does not name the
 * caller's input: prefix it). */
nvl_status media_proc_take(media_proc_spare *s, const char *exe, const char *arg, uint32_t hello, const char *what,
                           int use_spare, const void *first, size_t first_n, const media_proc_bounds *b,
                           media_proc *p, nvl_err *err);
/* After media_proc_take returned st: 1 when no helper could start (the caller may read the file
 * in this process, or refuse it); 0 when it started, or the caller's own bounds (deadline,
 * cancel) ended its start: the file's error then. */
static inline int media_proc_none_started(nvl_status st) {
    return st != NVL_OK && st != NVL_ERR_TIMEOUT && st != NVL_ERR_CANCELLED;
}
/* A sandbox's setter: exe (NULL: none) copied into buf (cap bytes) and returned, NULL when it is
 * NULL or does not fit; s's spare ended when the executable changes from cur or goes. */
const char *media_proc_set_exe(media_proc_spare *s, char *buf, size_t cap, const char *cur, const char *exe);
/* 1 when a helper's answer may carry status (what decoding a file can fail with: a helper taken
 * over through a library bug must not answer "busy" or "internal error"). */
int media_proc_decoding_status(int32_t status);
/* 1 when msg begins "NAME:" (a helper's message that names the input already). */
int media_proc_names(const char *msg, const char *name);
void media_proc_spare_end(media_proc_spare *s);     /* kills and reaps the spare, if any (and
                                                       every released helper: media_proc_reap(1)) */
int media_proc_spare_running(media_proc_spare *s);  /* 1 when a spare is started */
/* Passes descriptor fd to the helper (one byte carrying it, SCM_RIGHTS). */
enum media_proc_end media_proc_send_fd(media_proc *p, int fd);
/* The helper's side: the descriptor of the next byte on sock (close-on-exec), or -1. */
int media_proc_recv_fd(int sock);
/* The helper's start (its main, before any work): ignores the signals a terminal or service
 * manager sends the process group, no core dumps, named `name` in ps/top, descriptors past fd 3
 * closed, a thread that _exits when the parent's end closes; then says hello on fd 3. 1, or 0 when
 * that failed (the helper should exit). */
int media_proc_worker_begin(const char *name, uint32_t hello);
/* The helper's blocking reads and writes of exactly n bytes on fd: 1, or 0 at end of file/error. */
int media_proc_read_full(int fd, void *buf, size_t n);
int media_proc_write_full(int fd, const void *buf, size_t n);

// ---------------------------------------------------------------------------
// Still images: media_decode_image's checks made, decoded here (image.c) or by the image decoder
// process when its sandbox is set (image_proc.c, which falls back to the former).

#define IMAGE_HELLO 0x6e766c69u /* "nvli" */
/* The image decoder's protocol (image_proc.c; tests/media/test_image_sandbox.c's lying decoder
 * speaks it too): IMAGE_HELLO; then an img_req, the name's bytes and the image's bytes; answered
 * by an img_rep, its message bytes and its warnings, then on success an img_out and the RGB rows. */
typedef struct img_req {
    uint32_t name_len, pad;
    uint64_t len; /* the image's bytes */
    uint64_t max_file_bytes;
    int64_t max_pixels;
} img_req;
typedef struct img_rep {
    int32_t status; /* nvl_status */
    uint32_t msg_len;
    uint32_t warn_len; /* after the message: the decoder's log messages, each a level byte (error or
                          warn) and its text with a NUL; at most IMAGE_WARN_MAX bytes */
} img_rep;
#define IMAGE_WARN_MAX 4096
typedef struct img_out {
    int32_t width, height, orientation;
} img_out;
nvl_status media_decode_image_local(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                                    media_image **out, nvl_err *err);
nvl_status media_decode_image_sandboxed(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                                        int (*cancelled)(void *ctx), void *ctx, media_image **out, nvl_err *err);

// ---------------------------------------------------------------------------
// The video decoder's protocol (video.c; tests/media/fake_video_decoder.c speaks it too)

#define VIDEO_HELLO 0x6e766c76u /* "nvlv" */
enum { VIDEO_OPEN = 1, VIDEO_NEXT = 2 };

typedef struct vid_open {
    uint32_t op, name_len;
    double fps, start, end;
    int32_t max_frames, lim_max_frames;
    uint64_t max_file_bytes;
    int64_t max_pixels;
} vid_open;

typedef struct vid_rep {
    int32_t status; /* nvl_status */
    uint32_t msg_len;
} vid_rep;

typedef struct vid_info {
    int32_t n_planned;
    double native_fps, duration;
    int64_t total_frames, listed_frames;
} vid_info;

typedef struct vid_frame {
    int32_t present, width, height;
    int64_t index;
    double timestamp;
} vid_frame;

#endif // MEDIA_MEDIA_IMPL_H
