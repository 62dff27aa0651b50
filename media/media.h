/* media/: bytes in, RGB frames out. Nothing beyond this module sees a file format.
 *
 *   enum media_kind k = media_sniff(buf, len);        // from the bytes, never the file name
 *   if (!media_supports(k)) ... NVL_ERR_UNSUPPORTED ...
 *
 *   media_image *img = NULL;
 *   st = media_decode_image(buf, len, "photo.jpg", NULL, &img, &err);   // RGB8
 *   media_pdf *pdf; media_pdf_open(&pdf, "report.pdf", NULL, NULL, &err);
 *   media_pdf_render(pdf, 0, 0, 0, &img, &err);                          // default size
 *   media_frames *f; media_video_sample("clip.mp4", NULL, NULL, &f, &err);
 *
 * Each optional library can be compiled out; media_supports() tells at run time what this
 * build decodes, and the functions of a missing library return NVL_ERR_UNSUPPORTED. Library
 * errors are translated here into nvl_status codes with messages that name the input.
 */
#ifndef MEDIA_MEDIA_H
#define MEDIA_MEDIA_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum media_kind {
    MEDIA_KIND_UNKNOWN = 0,
    MEDIA_KIND_JPEG,
    MEDIA_KIND_PNG,
    MEDIA_KIND_PDF,
    MEDIA_KIND_GIF,
    MEDIA_KIND_WEBP,
    MEDIA_KIND_BMP,
    MEDIA_KIND_TIFF,
    MEDIA_KIND_VIDEO, /* a container FFmpeg opens: MP4/MOV, Matroska/WebM, AVI, MPEG-TS, ... */
    MEDIA_KIND_AVIF,  /* AVIF still image (ISO-BMFF brand avif; image sequences 'avis' are video) */
    MEDIA_KIND_HEIF,  /* HEIF/HEIC still image (brands heic, heix, mif1, ...): libheif (heif.c) */
    MEDIA_KIND_PNM,   /* Netpbm PBM/PGM/PPM, plain or binary (P1-P6; scanimage's default): FFmpeg */
};

/* Format from the first bytes (at least 16 should be given when the file has them; ISO-BMFF
 * files are classified by their ftyp box's major and compatible brands, so give the whole box:
 * media_sniff_file reads 1024 bytes). */
enum media_kind media_sniff(const uint8_t *buf, size_t len);
/* Sniffs the first bytes of a file. Only a regular file within the default size cap is opened
 * (a FIFO, socket, device or directory is refused unopened: NVL_ERR_IO; too large: NVL_ERR_LIMIT).
 * @return NVL_OK, or NVL_ERR_NOT_FOUND / NVL_ERR_IO / NVL_ERR_LIMIT / NVL_ERR_FORMAT (an empty
 * file) naming it. */
nvl_status media_sniff_file(const char *path, enum media_kind *kind, nvl_err *err);
const char *media_kind_name(enum media_kind k); /* "jpeg", "png", "pdf", ... "unknown" */
/* Whether this build can decode k (its library was found at configure time). */
int media_supports(enum media_kind k);
/* Frames an image file holds: an animated GIF's image descriptors, an APNG's acTL num_frames, an
 * animated WebP's ANMF chunks; 1 for every other file (and for one whose structure stops being
 * readable before a second frame). The decoders give the first frame only, as Pillow opens these
 * files for the reference processors, so callers say when more were left. */
int64_t media_image_frames(const uint8_t *buf, size_t len);
/* The error for a file of no kind media_sniff knows (NVL_ERR_UNSUPPORTED naming name), saying
 * where a PDF header lies when one is past the first 1024 bytes (looked for in buf[0..len), or
 * when buf is NULL in the first 64 MiB of the file at path). */
nvl_status media_err_unrecognised(const char *name, const uint8_t *buf, size_t len, const char *path, nvl_err *err);

// ---------------------------------------------------------------------------
// Images and limits

/* An RGB8 image, rows top to bottom, pixels R G B. */
typedef struct media_image {
    int width, height;
    size_t stride;       /* bytes per row (>= 3 * width) */
    uint8_t *rgb;        /* owned */
    double timestamp;    /* seconds (video frames), 0 otherwise */
    int64_t index;       /* source frame index or 0-based page */
    int orientation;     /* EXIF/TIFF orientation 2..8 that was applied to reach display
                          * orientation; 0 when none was (absent, 1, or not an image file) */
} media_image;

/* Allocates a zeroed image. *out is freed with media_image_free(). */
nvl_status media_image_new(media_image **out, int width, int height, nvl_err *err);
void media_image_free(media_image *img); /* NULL-tolerant */

/* Caps applied to every input; each exceeded cap is NVL_ERR_LIMIT naming the input. */
typedef struct media_limits {
    size_t max_file_bytes;  /* default 1 GiB */
    int64_t max_pixels;     /* per decoded image, rendered page or video frame, default 100 M
                               (media_set_default_max_pixels) */
    int max_pages;          /* pages rendered from one PDF per request, default 500 */
    int max_frames;         /* frames kept from one video, default 100000 (the request's
                               media_video_params.max_frames, default 128, is what limits) */
} media_limits;
media_limits media_limits_default(void);
#define MEDIA_DEFAULT_MAX_PIXELS 100000000 /* 100 megapixels: a decoded image is 3 bytes a pixel here */
/* Sets media_limits_default()'s max_pixels for this process (the CLI's --max-megapixels, for
 * every command, serve included); n <= 0 restores MEDIA_DEFAULT_MAX_PIXELS. The image and video
 * decoders' processes are sent the caller's limit with each request. Pillow, which the model's
 * reference preprocessing decodes with, refuses above 2 x 89,478,485 pixels. */
void media_set_default_max_pixels(int64_t n);

/* Reads a regular file into memory under lim->max_file_bytes (checked before reading; FIFOs,
 * sockets, devices and directories are refused unopened). *buf freed with nvl_free(). */
nvl_status media_read_file(const char *path, const media_limits *lim, uint8_t **buf, size_t *len,
                           nvl_err *err);

/* Opens path for reading when it is a regular file within lim->max_file_bytes (NULL: the
 * defaults): stat first, so that nothing else is ever opened (a FIFO's writer would be released,
 * a device's open has effects), then fstat on what was opened. *fd_out (close-on-exec, blocking)
 * and *size (may be NULL); else an error naming the file, nothing open. */
nvl_status media_open_regular(const char *path, const media_limits *lim, int *fd_out, size_t *size, nvl_err *err);

/* Checks that path is a readable regular file within lim->max_file_bytes, without reading it.
 * @return NVL_OK, NVL_ERR_NOT_FOUND, NVL_ERR_IO or NVL_ERR_LIMIT naming the file. */
nvl_status media_check_file(const char *path, const media_limits *lim, nvl_err *err);

/* Reads and decodes a still-image file (media_read_file + media_decode_image). */
nvl_status media_decode_image_file(const char *path, const media_limits *lim, media_image **out, nvl_err *err);

/* Decodes a still image (JPEG, PNG; GIF first frame, WebP, BMP, TIFF through FFmpeg), format
 * sniffed from the bytes. AVIF stills decode through FFmpeg's AV1 decoder when this build has
 * one (a single coded item; grid and alpha AVIF are refused as unsupported); HEIF/HEIC stills
 * through libheif when built with it (heif.c: its primary image with its irot/imir/clap applied,
 * as pillow-heif does; img->orientation stays 0), else refused as unsupported. The orientation
 * the file declares is applied as Pillow's exif_transpose does (EXIF in JPEG APP1, PNG eXIf, WebP
 * EXIF; the TIFF Orientation tag) and recorded in img->orientation; alpha is composited on white;
 * 16-bit samples keep their high byte; gray, palette and CMYK become RGB. name labels errors.
 * @return NVL_OK; NVL_ERR_FORMAT / NVL_ERR_TRUNCATED for damaged data; NVL_ERR_UNSUPPORTED for
 * an unknown format, a compiled-out library or 12-bit JPEG; NVL_ERR_LIMIT. */
nvl_status media_decode_image(const uint8_t *buf, size_t len, const char *name,
                              const media_limits *lim, media_image **out, nvl_err *err);

/* Where, and within what bounds, still images are decoded. The decoders (libjpeg-turbo, libpng,
 * libwebp, libheif with libde265, FFmpeg's GIF/TIFF/BMP/AVIF) run on whatever bytes a request
 * brings, and a crash in one would end the caller (a server and every request in it). With exe
 * set, media_decode_image (and media_decode_image_file) hands each image that passed the checks
 * made from its first bytes (size cap, format, built-in support) to a process of its own, "the
 * image decoder": exe started as `exe MEDIA_IMAGE_WORKER_ARG` (an executable whose main calls
 * media_image_worker_main first), which decodes that one image and ends; one is started ahead for
 * the next image. Past timeout_s or max_mb the decoder is killed and the image fails
 * (NVL_ERR_TIMEOUT, NVL_ERR_LIMIT); a crash: NVL_ERR_FORMAT "damaged image: the decoder crashed
 * (signal N, ...)". Pixels, orientation and the decoders' own errors are those of this process.
 * When no decoder can start, the image is decoded in this process with a warning (nvl_log), or
 * refused (strict: NVL_ERR_IO). */
typedef struct media_image_sandbox {
    const char *exe;  /* NULL: decoded in this process, unbounded (the default) */
    double timeout_s; /* wall-clock seconds an image may take; <= 0: none. Default 60 */
    double max_mb;    /* MiB the decoder may hold resident besides the image's bytes (sampled
                         every 50 ms; a 100-megapixel image takes about 700 MiB); <= 0: none.
                         Default 4096 */
    int strict;       /* 1: refused when no decoder can start. Default 0 */
} media_image_sandbox;
#define MEDIA_IMAGE_WORKER_ARG "--image-decode-worker"
media_image_sandbox media_image_sandbox_default(void);
/* Process-wide (copied, exe too); set it before images are decoded, from one thread. */
void media_image_set_sandbox(const media_image_sandbox *sb);
media_image_sandbox media_image_get_sandbox(void);
/* Decoder processes running now: those decoding and the one started ahead. */
int media_image_decoders(void);
/* Ends (kills and reaps) the decoder started ahead, if any. */
void media_image_sandbox_end_spare(void);
/* Reaps the helper processes (PDF renderers, video and image decoders) killed earlier that have
 * ended since; never waits. A killed helper is otherwise reaped by the next file's helper, so a
 * server idle after its last file would keep it a zombie: `serve` calls this on its tick. */
void media_helpers_reap(void);
/* The largest peak resident memory (VmHWM, bytes) of the helper processes (PDF renderers, video
 * and image decoders) ended so far, each read just before it is stopped; 0 when none was. (Not
 * getrusage's RUSAGE_CHILDREN: a helper started by posix_spawn is credited with this process's
 * peak at its start.) */
size_t media_helpers_peak_rss(void);
/* The decoder's entry: when argv[1] is MEDIA_IMAGE_WORKER_ARG, decodes the image the parent sends
 * on fd 3 and ends the process (never returns); otherwise returns at once. Call it first in main(). */
void media_image_worker_main(int argc, char **argv);

/* media_decode_image with a cancel callback (NULL: none), polled every 50 ms while the image
 * decoder process works (media_image_sandbox); once it returns nonzero the decoder is stopped and
 * the image fails with NVL_ERR_CANCELLED "NAME: cancelled". An image decoded in this process (no
 * sandbox) is not interrupted. */
nvl_status media_decode_image_cancellable(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                                          int (*cancelled)(void *ctx), void *ctx, media_image **out, nvl_err *err);

/* Writes img as an 8-bit RGB PNG (libpng). */
nvl_status media_image_write_png(const media_image *img, const char *path, nvl_err *err);

// ---------------------------------------------------------------------------
// PDF (Poppler glib + cairo)

typedef struct media_pdf media_pdf;

/* Default render size: the long side of a page becomes MEDIA_PDF_DEFAULT_LONG_SIDE pixels.
 * 2048 = 4 tiles of 512: a portrait letter/A4 page (aspect ~0.71-0.77) then lands on the 3x4
 * grid, the largest (12 tiles + thumbnail) the model uses, without upscaling the tiles. */
#define MEDIA_PDF_DEFAULT_LONG_SIDE 2048

/* password may be NULL. @return NVL_ERR_ENCRYPTED when a password is needed or wrong;
 * NVL_ERR_FORMAT for a damaged file or one without pages. */
nvl_status media_pdf_open(media_pdf **out, const char *path, const char *password,
                          const media_limits *lim, nvl_err *err);
/* The same, its opening (in the renderer: up to the sandbox's timeout_s) stopped once
 * cancelled(ctx) returns nonzero: NVL_ERR_CANCELLED "PATH: opening: cancelled". The callback
 * stays the document's, as media_pdf_set_cancel would set it. cancelled may be NULL. */
nvl_status media_pdf_open_cancellable(media_pdf **out, const char *path, const char *password, const media_limits *lim,
                                      int (*cancelled)(void *ctx), void *ctx, nvl_err *err);
void media_pdf_close(media_pdf *pdf);
int media_pdf_page_count(const media_pdf *pdf);
/* Page size in points after /Rotate. */
nvl_status media_pdf_page_size(const media_pdf *pdf, int page, double *w_pt, double *h_pt,
                               nvl_err *err);
/* Page label ("iii", "7") or NULL; nvl_malloc'ed. */
#define MEDIA_PDF_LABEL_MAX 200 /* bytes of a page label kept; a longer one ends in "..." */
char *media_pdf_page_label(const media_pdf *pdf, int page);
/* Renders 0-based page at dpi (> 0) or to long_side pixels (when dpi <= 0; 0 = default),
 * white background. @return NVL_ERR_LIMIT above media_limits.max_pixels or the sandbox's
 * memory; NVL_ERR_TIMEOUT past its time; NVL_ERR_CANCELLED; NVL_ERR_FORMAT for a damaged page
 * (or one that crashed the renderer), each naming the file and the page. */
nvl_status media_pdf_render(media_pdf *pdf, int page, double dpi, int long_side,
                            media_image **out, nvl_err *err);
/* The page's text layer (UTF-8, possibly empty). *text nvl_malloc'ed. */
nvl_status media_pdf_page_text(const media_pdf *pdf, int page, char **text, nvl_err *err);

/* Where, and within what bounds, pages render. Poppler can spend minutes or gigabytes on a
 * hostile page of a few KB (an image declared 30000x30000 is allocated whole; 50,000 clipped
 * glyphs), and a crash in it would end the caller (a server and every request in it). With exe
 * set, every Poppler call of an open document (opening, sizes, labels, text, pages; one at a
 * time) runs in a process of its own, "the renderer": exe started as `exe MEDIA_PDF_WORKER_ARG`
 * (an executable whose main calls media_pdf_worker_main first), started at open, killed when a
 * call passes timeout_s or max_mb or the document's cancel callback fires, started again for the
 * next call. When no renderer can start, the document is read in this process with a warning
 * (nvl_log), or refused (strict). */
typedef struct media_pdf_sandbox {
    const char *exe;  /* NULL: Poppler runs in this process, unbounded (the default) */
    double timeout_s; /* wall-clock seconds one call (a page, its text, the opening) may take;
                         <= 0: none. Default 120 */
    double max_mb;    /* MiB the renderer may hold resident besides the page's own pixels (7 bytes
                         a pixel: cairo's ARGB surface and the RGB copy); <= 0: none. Default 2048 */
    int strict;       /* 1: a document whose renderer cannot start is refused (NVL_ERR_IO naming the
                         cause) instead of read in this process without the bounds. Default 0 */
} media_pdf_sandbox;
#define MEDIA_PDF_WORKER_ARG "--pdf-render-worker"
media_pdf_sandbox media_pdf_sandbox_default(void);
/* Process-wide (copied, exe too); set it before documents open, from one thread. A renderer is
 * kept started ahead for the next document once one has opened (ended when another exe, or none,
 * is set, or by media_pdf_sandbox_end_spare). */
void media_pdf_set_sandbox(const media_pdf_sandbox *sb);
/* Ends (kills and reaps) the renderer started ahead, if any; the next document starts another. */
void media_pdf_sandbox_end_spare(void);
/* Renderer processes running now: the open documents', those opening one, and the one started ahead. */
int media_pdf_renderers(void);
media_pdf_sandbox media_pdf_get_sandbox(void);
/* The renderer's entry: when argv[1] is MEDIA_PDF_WORKER_ARG, serves the parent's calls on fd 3 and
 * ends the process (never returns); otherwise returns at once. Call it first in main(). */
void media_pdf_worker_main(int argc, char **argv);
/* A callback the renderer's wait polls (every 50 ms) to stop the page: media_pdf_render then
 * returns NVL_ERR_CANCELLED. Pages rendered in this process are not interruptible. */
void media_pdf_set_cancel(media_pdf *pdf, int (*cancelled)(void *ctx), void *ctx);

/* Pages of pdf selected by spec (see media_parse_page_range), refused with NVL_ERR_LIMIT when
 * more than the open's media_limits.max_pages. */
nvl_status media_pdf_select_pages(const media_pdf *pdf, const char *spec, int **pages, int *n,
                                  nvl_err *err);

/* "1-3,7,10-" (1-based, ascending or not, duplicates removed in order of appearance) over
 * n_pages pages into 0-based *pages (nvl_malloc'ed). NULL or "" = all pages. */
nvl_status media_parse_page_range(const char *spec, int n_pages, int **pages, int *n, nvl_err *err);

// ---------------------------------------------------------------------------
// Video (libavformat / libavcodec / libswscale)

typedef struct media_video_params {
    double fps;       /* sampling rate, default 2 */
    int max_frames;   /* default 128 (also capped by media_limits.max_frames) */
    double start, end;/* seconds; end <= 0 = to the end */
    /* NULL, or asked (from the calling thread) between decoded frames and while the file is read
     * (FFmpeg's interrupt callback); once it returns nonzero, media_video_open / media_video_next
     * / media_video_sample stop with NVL_ERR_CANCELLED "NAME: cancelled" and the video has ended */
    int (*cancelled)(void *ctx);
    void *cancel_ctx;
} media_video_params;
media_video_params media_video_params_default(void);

/* Where, and within what bounds, videos are decoded. A hostile stream of a few KB can declare
 * frames of 100 megapixels (a 22 KB H.264 file of 9984x9984 frames took 1.4 GB to decode), and a
 * crash in FFmpeg would end the caller (a server and every request in it). With exe set, each
 * video opened by media_video_open is read and decoded in a process of its own, "the decoder":
 * exe started as `exe MEDIA_VIDEO_WORKER_ARG` (an executable whose main calls
 * media_video_worker_main first), started at open (one is started ahead), ended with the video; each step (the open's
 * read of the frame times, then each media_video_next) is bounded by timeout_s, max_mb (its
 * resident memory, sampled every 50 ms) and the params' cancel callback, and one past a bound
 * stops the decoder and ends the video with its error (NVL_ERR_TIMEOUT, NVL_ERR_LIMIT, NVL_ERR_CANCELLED; a crash: NVL_ERR_FORMAT "damaged
 * video"). When no decoder can start, the video is decoded in this process with a warning
 * (nvl_log), or refused (strict). Frames are bit-equal either way. */
typedef struct media_video_sandbox {
    const char *exe;  /* NULL: decoded in this process, unbounded (the default) */
    double timeout_s; /* wall-clock seconds one step may take; <= 0: none. Default 120 */
    double max_mb;    /* MiB the decoder may hold resident; <= 0: none. Default 4096 */
    int strict;       /* 1: a video whose decoder cannot start is refused (NVL_ERR_IO). Default 0 */
} media_video_sandbox;
#define MEDIA_VIDEO_WORKER_ARG "--video-decode-worker"
media_video_sandbox media_video_sandbox_default(void);
/* Process-wide (copied, exe too); set it before videos open, from one thread. A decoder is kept
 * started ahead for the next video once one has opened (ended when another exe, or none, is set,
 * or by media_video_sandbox_end_spare; it is not counted by media_video_decoders). */
void media_video_set_sandbox(const media_video_sandbox *sb);
void media_video_sandbox_end_spare(void);
media_video_sandbox media_video_get_sandbox(void);
/* Decoder processes running now: one per open video with frames left, except that beyond 8 a
 * newly opened video's decoder (and its descriptor) is stopped once it has planned the frames and
 * started again, reading the frame times again, at its first media_video_next. */
int media_video_decoders(void);
/* The decoder's entry: when argv[1] is MEDIA_VIDEO_WORKER_ARG, decodes the parent's video on fd 3
 * and ends the process (never returns); otherwise returns at once. Call it first in main(). */
void media_video_worker_main(int argc, char **argv);

typedef struct media_frames {
    media_image **frames;   /* n frames, each with timestamp (seconds) and source index */
    int n;
    double native_fps;      /* nominal frame rate of the stream (av_guess_frame_rate) */
    int64_t total_frames;   /* frames in the stream (its packets, counted) */
    int64_t listed_frames;  /* as media_video_info: nonzero when the file is cut short */
    double duration;        /* seconds, first frame's time to the end of the last frame */
    int width, height;      /* decoded size after rotation (the sample aspect ratio not applied) */
} media_frames;

/* Samples frames by presentation time over the true duration (from the first frame's time to
 * the end of the last frame, gaps of a variable frame rate included): n = max(1, min(max_frames,
 * frames, floor(duration * fps))) times at linspace(first, last frame's time, n), each taking
 * the frame on screen then (the last presented at or before it), a frame taken once, so a gap
 * can yield fewer than n frames. At a constant rate (every frame time within one time-base tick
 * of index / native_fps: millisecond containers round them) the times are index / native_fps, the
 * duration total / native_fps, and the frames model.md §6.1's (vLLM's loader): idx =
 * numpy.linspace(0, total-1, n) truncated, computed as numpy does. Restricted to frames
 * presented in [start, end).
 * Each frame's timestamp is its presentation time (seconds from the stream's start), its index
 * its position in presentation order. Rotation side data is honoured. Memory is bounded by the
 * kept frames (plus 8 bytes of time per frame of the stream). */
nvl_status media_video_sample(const char *path, const media_video_params *p,
                              const media_limits *lim, media_frames **out, nvl_err *err);
void media_frames_free(media_frames *f);

/* The same sampling one frame at a time, so that a consumer (the engine's vision stage) can
 * work on frame i while frame i+1 is decoded, holding only the frames it has not consumed:
 *   media_video *v; media_video_open(path, &p, NULL, &v, &err);   // opens, reads the packets' times, plans
 *   for (media_image *f; media_video_next(v, &f, &err) == NVL_OK && f; ) { ...; media_image_free(f); }
 *   media_video_close(v);
 * media_video_open fails as media_video_sample does before decoding (no stream, no frame rate,
 * no frames, empty window). media_video_next gives the sampled frames in presentation order with
 * index and timestamp set (the caller owns each), then *out NULL at the end; "no frame could be
 * decoded" (NVL_ERR_FORMAT) when the end comes before any frame, a decoding error as it comes.
 * A handle is used by one thread at a time (any thread). */
typedef struct media_video media_video;
typedef struct media_video_info {
    int n_planned;          /* frames the sample asks for: an upper bound of what next() gives (a
                               gap of a variable frame rate can yield fewer) */
    double native_fps;      /* as media_frames */
    int64_t total_frames;   /* frames that can be read */
    int64_t listed_frames;  /* frames the container's index lists where more than the packets
                               that could be read (the file cut short: a copy or download stopped,
                               the answer covers what is there); 0 otherwise */
    double duration;
    int width, height;      /* decoded size, rotated upright: 0 until the first frame is decoded
                               (the sample aspect ratio is not applied: the model's reference
                               pipelines, vLLM's and OpenCV's, do not either) */
} media_video_info;
nvl_status media_video_open(const char *path, const media_video_params *p, const media_limits *lim,
                            media_video **out, nvl_err *err);
const media_video_info *media_video_get_info(const media_video *v);
/* The k-th planned frame (k < n_planned): its index and presentation time (seconds), as
 * media_video_next will set them when it decodes that frame. 0 when k is out of range. */
int media_video_planned(const media_video *v, int k, int64_t *index, double *timestamp);
nvl_status media_video_next(media_video *v, media_image **out, nvl_err *err);
void media_video_close(media_video *v);

#ifdef __cplusplus
}
#endif

#endif // MEDIA_MEDIA_H
